// The page's worker runs the wasm core in a real Chromium: WebGPU (SwiftShader) and the CPU
// fallback segment the colour scene correctly, errors are readable, and after the model is
// loaded nothing goes over the network.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { SCENE_MODEL as MODEL, segmentSceneInWorker, startServer, withBrowser, withPage, workerClient } from './harness.mjs';

let server;
before(async () => { server = await startServer(); });
after(() => server.close());

const segmentScene = async (webgpu) => (await segmentSceneInWorker(server.url, { webgpu })).device.backend;

test('WebGPU (SwiftShader) segments the colour scene, in f32 (the adapter has no shader-f16)', { timeout: 300_000 }, async () => {
  const { device } = await segmentSceneInWorker(server.url, { webgpu: true });
  assert.deepEqual([device.backend, device.precision], ['webgpu', 'f32'], JSON.stringify(device));
});

test('f16 compute asked of an adapter without shader-f16 is refused, not quietly moved to the CPU', { timeout: 300_000 }, async () => {
  await withPage(server.url, { webgpu: true }, async (page) => {
    await page.evaluate(workerClient);
    const refused = await page.evaluate(() => ask({ type: 'init', backend: 'webgpu', precision: 'f16' }));
    assert.equal(refused.status, 'error', JSON.stringify(refused));
    assert.match(refused.message, /cannot compute in f16 \(it lacks shader-f16\)/);
  });
});

test('without WebGPU the CPU backend takes over and still segments', { timeout: 300_000 }, async () => {
  assert.equal(await segmentScene(false), 'cpu');
});

// Each with its `code`: a ModelError that a program can act on.
test('a corrupt, truncated or foreign checkpoint gives a readable error with its code', { timeout: 300_000 }, async () => {
  await withPage(server.url, { webgpu: false }, async (page) => {
    await page.evaluate(workerClient);
    await page.evaluate(() => ask({ type: 'init', backend: 'cpu' }));
    const config = await (await fetch(`${server.url}${MODEL}/config.json`)).text();
    const files = (config, weights) => [new File([config], 'config.json'), new File([weights], 'model.safetensors')];
    await page.evaluate(`window.files = ${files}`);
    const corrupt = await page.evaluate((config) => ask({ type: 'load', files: files(config, new Uint8Array(1000).fill(7)) }), config);
    assert.equal(corrupt.status, 'error');
    assert.match(corrupt.message, /cannot read checkpoint .*unrecognised/);
    assert.deepEqual([corrupt.code, corrupt.name], ['not-a-checkpoint', 'ModelError']);
    const truncated = await page.evaluate(async ([m, config]) => {
      const weights = new Uint8Array(await (await fetch(`${m}/model.safetensors`)).arrayBuffer());
      return ask({ type: 'load', files: files(config, weights.subarray(0, weights.length / 2)) });
    }, [MODEL, config]);
    assert.match(truncated.message, /cannot read checkpoint/);
    assert.equal(truncated.code, 'not-a-checkpoint');
    const foreign = await page.evaluate(async (m) => {
      const weights = new Uint8Array(await (await fetch(`${m}/model.safetensors`)).arrayBuffer());
      return ask({ type: 'load', files: files('{"model_type": "bert"}', weights) });
    }, MODEL);
    assert.equal(foreign.status, 'error');
    assert.match(foreign.message, /model_type is 'bert'/);
    assert.equal(foreign.code, 'wrong-architecture');
    // A Segment Anything config over CLIP weights names what SAM misses.
    const mixed = await page.evaluate(async (m) => {
      const weights = new Uint8Array(await (await fetch(`${m}/model.safetensors`)).arrayBuffer());
      return ask({ type: 'load', files: files('{"model_type": "sam"}', weights) });
    }, MODEL);
    assert.match(mixed.message, /does not match the SamModel architecture.*\n.*missing tensor/s);
    assert.equal(mixed.code, 'wrong-architecture');
    // Local files without a config: no model among them.
    const none = await page.evaluate(() => ask({ type: 'load', files: [new File(['x'], 'photo.png')] }));
    assert.deepEqual([none.code, none.name], ['model-not-found', 'ModelError']);
  });
});

test('a second visit loads the model from the Cache Storage with its URLs blocked', { timeout: 300_000 }, async () => {
  await withBrowser({ webgpu: false }, async (browser) => {
    const context = await browser.newContext();
    const load = async (page) => {
      await page.goto(`${server.url}/`);
      await page.evaluate(workerClient);
      await page.evaluate(() => ask({ type: 'init', backend: 'cpu' }));
      return page.evaluate((m) => ask({ type: 'load', url: m }), MODEL);
    };
    const first = await context.newPage();
    assert.equal((await load(first)).status, 'ready');
    await first.close();
    const second = await context.newPage();
    const blocked = [];
    await second.route('**/tests/fixtures/**', (route) => { blocked.push(route.request().url()); return route.abort(); });
    const again = await load(second);
    assert.equal(again.status, 'ready', JSON.stringify(again));
    assert.deepEqual(blocked, [], 'the model came from the cache, not the network');
    // Blocking does bite: an uncached model fails to load.
    const missing = await second.evaluate(() => ask({ type: 'load', url: '/tests/fixtures/clip-p16-fp16/' }));
    assert.equal(missing.status, 'error');
    assert.ok(blocked.length > 0);
  });
});

test('a broken download is retried and a missing file is not', { timeout: 300_000 }, async () => {
  let failures = 1;
  const failOnce = (page) => page.route('**/semantic-colours/model.safetensors', (route) => (failures-- > 0 ? route.abort('connectionreset') : route.continue()));
  await withPage(server.url, { webgpu: false, before: failOnce }, async (page) => {
    await page.evaluate(workerClient);
    await page.evaluate(() => ask({ type: 'init', backend: 'cpu' }));
    const ready = await page.evaluate((m) => ask({ type: 'load', url: m }), MODEL);
    assert.equal(ready.status, 'ready', JSON.stringify(ready));
    assert.equal(failures, -1, 'the first attempt failed and a second one was made');
    const missing = await page.evaluate(() => ask({ type: 'load', url: '/nowhere/' }));
    assert.equal(missing.status, 'error');
    assert.match(missing.message, /HTTP 404/);
    assert.equal(missing.code, 'model-not-found', 'a folder without config.json holds no model');
    // A folder URL whose config.json is another architecture's is refused before its weights download.
    await page.route('**/elsewhere/config.json', (route) => route.fulfill({ body: '{"model_type": "bert"}', contentType: 'application/json' }));
    const weights = [];
    page.on('request', (r) => { if (/elsewhere\/(model|pytorch)/.test(r.url())) weights.push(r.url()); });
    const bert = await page.evaluate(() => ask({ type: 'load', url: '/elsewhere/' }));
    assert.deepEqual([bert.status, bert.code], ['error', 'wrong-architecture'], JSON.stringify(bert));
    assert.deepEqual(weights, []);
  });
});
