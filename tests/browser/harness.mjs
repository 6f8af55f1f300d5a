// Shared set-up of the browser tests: the demo server (with the test fixtures mounted at
// /tests/fixtures/) on a free local port, Debian's Chromium with or without SwiftShader's WebGPU
// (withBrowser) and a page of it that must raise no error (withPage), and the scene, palette and
// probes the tests share.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { chromium } from 'playwright-core';

import { serve } from '../../tools/serve.mjs';
import { PALETTE } from '../../www/masks.js';

export async function startServer() {
  const server = await serve(0, { '/tests/fixtures/': 'tests/fixtures' });
  return { url: `http://127.0.0.1:${server.address().port}`, close: () => { server.closeAllConnections(); server.close(); } };
}

const BASE_FLAGS = ['--headless=new', '--no-sandbox', '--disable-background-networking', '--disable-component-update',
  '--disable-sync', '--no-first-run', '--disable-quic'];
const WEBGPU_FLAGS = ['--enable-unsafe-webgpu', '--enable-features=Vulkan', '--use-vulkan=swiftshader',
  '--use-webgpu-adapter=swiftshader'];

// Debian's Chromium (`webgpu`: with SwiftShader's WebGPU; `args`: more switches, e.g. a fake
// camera), for the caller to close.
export function launchBrowser({ webgpu, args = [] }) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: [...BASE_FLAGS, ...(webgpu ? WEBGPU_FLAGS : []), ...args],
  });
}

// Debian's Chromium (launchBrowser's `webgpu` and `args`) handed to `run` and closed however
// `run` ends; gives what `run` gives.
export async function withBrowser({ webgpu, args = [] }, run) {
  const browser = await launchBrowser({ webgpu, args });
  try {
    return await run(browser);
  } finally {
    await browser.close();
  }
}

// A page in a browser of its own (withBrowser's `webgpu` and `args`), in a context made with
// `context` (viewport, colorScheme, permissions, ...), handed to `run` once it has opened
// `origin` + `path`; `before(page)` runs before that, for what must be in place as the page
// loads (listeners, init scripts, routes). The page must raise no error and not crash;
// `errors: 'console'`: nor log one to the console; `errors: false`: nothing is checked. Gives
// what `run` gives.
export async function withPage(origin, { webgpu, args, context, path = '/', before, errors = 'page' }, run) {
  return withBrowser({ webgpu, args }, async (browser) => {
    const page = await (await browser.newContext(context)).newPage();
    const problems = [];
    if (errors) {
      page.on('pageerror', (e) => problems.push(e.message));
      page.on('crash', () => problems.push('the page crashed'));
    }
    if (errors === 'console') page.on('console', (m) => { if (m.type() === 'error') problems.push(m.text()); });
    await before?.(page);
    await page.goto(`${origin}${path}`);
    const result = await run(page);
    assert.deepEqual(problems, []);
    return result;
  });
}

// A page at `origin` + `path` (withPage's `run`, no WebGPU) in a Chromium whose fake camera
// plays the Y4M file `clip`, the camera allowed without asking.
export function withFakeCamera(origin, clip, path, run) {
  return withPage(origin, {
    webgpu: false,
    args: ['--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream', `--use-file-for-fake-video-capture=${clip}`],
    context: { permissions: ['camera'] },
    path,
  }, run);
}

// Runs in the page: a client of the page's worker (www/client.js) as `window.client`, and
// `ask(request)`, which answers as the worker's protocol does: `{status: 'device' | 'ready' |
// 'result', ...}` or `{status: 'error', message, code}` (code: the client's ModelError's).
export async function workerClient() {
  const { ModelClient } = await import('/client.js');
  window.client = new ModelClient();
  const calls = {
    init: ({ backend, precision, threads }) => {
      client.backend = backend ?? 'webgpu';
      client.precision = precision ?? 'auto';
      client.threads = threads;
      return client.openDevice().then((d) => ({ status: 'device', ...d }));
    },
    load: ({ url, files, q8 }) => client.load(url ?? files, { q8 }).then((r) => ({ status: 'ready', ...r })),
    segment: (request) => client.segment(request).then((r) => ({ status: 'result', ...r })),
  };
  window.ask = (request) => calls[request.type](request).catch((e) => ({ status: 'error', message: e.message, code: e.code, name: e.name }));
}

// The four-colour scene of the Rust tests (tests/fixtures/images/scene.json): regions painted in
// order, later ones on top, and a probe point inside each with the label it must get.
export const SCENE = JSON.parse(readFileSync(new URL('../fixtures/images/scene.json', import.meta.url)));

// The colour checkpoint the scene is segmented with: CLIP whose words light up their colours.
export const SCENE_MODEL = '/tests/fixtures/semantic-colours';

// Pixels well inside each painted region, and the label (1-based, in SCENE.labels order) each
// must get: `[x, y, label]`.
export const SCENE_PROBES = SCENE.regions.map(({ probe, word }) => [...probe, SCENE.labels.indexOf(word) + 1]);

// In a fresh Chromium (`webgpu`: SwiftShader's WebGPU or none) on the page at `url`: the page's
// worker opens `backend`, loads the colour checkpoint and segments the scene. Asserts that each
// probe gets its label, that nothing goes over the network after loading and that the page
// throws nothing; gives the worker's device reply and the page's `crossOriginIsolated` and
// `navigator.hardwareConcurrency`.
export async function segmentSceneInWorker(url, { webgpu, backend = 'webgpu' }) {
  return withPage(url, { webgpu }, async (page) => {
    // The page's own worker opens its device at start-up: let it finish (the status then asks
    // for a model), so that its downloads are not taken for the test worker's.
    await page.waitForFunction(() => /Load a model\.$/.test(document.getElementById('status').textContent));
    const [isolated, cores] = await page.evaluate(() => [crossOriginIsolated, navigator.hardwareConcurrency]);
    await page.evaluate(workerClient);
    const device = await page.evaluate((b) => ask({ type: 'init', backend: b }), backend);
    assert.equal(device.status, 'device', JSON.stringify(device));
    // WebGPU names its adapter (SwiftShader here) and the largest buffer its device was granted
    // (at least WebGPU's 128 MiB, at most the 512 MiB the core asks for), and the page shows them.
    if (device.backend === 'webgpu') {
      assert.ok(device.adapter && typeof device.adapter.f16 === 'boolean', JSON.stringify(device));
      const binding = device.limits?.maxStorageBufferBindingSize;
      assert.ok(binding >= 128 * 2 ** 20 && binding <= 512 * 2 ** 20, JSON.stringify(device.limits));
      assert.match(await page.textContent('#device-info'), /^Device: WebGPU.*, buffers up to \d+ MiB\.$/);
    } else {
      assert.equal(device.adapter, null);
      assert.equal(device.limits, null);
    }
    const ready = await page.evaluate((m) => ask({ type: 'load', url: m }), SCENE_MODEL);
    assert.equal(ready.status, 'ready', JSON.stringify(ready));
    const requests = [];
    page.on('request', (r) => requests.push(r.url()));
    await segmentSceneAsked(page);
    assert.deepEqual(requests, [], 'no network request after the model is loaded');
    return { device, isolated, cores };
  });
}

// In a page running workerClient with a words model loaded: the scene painted and segmented
// through `ask`; asserts that each probe gets its label.
export async function segmentSceneAsked(page) {
  await page.evaluate(`window.paintScene = ${paintScene}`);
  const result = await page.evaluate(async ([labels, scene]) => {
    const r = await ask({ type: 'segment', ...paintScene(scene), labels, options: {} });
    return { ...r, labelMap: r.labelMap ? Array.from(r.labelMap) : undefined };
  }, [SCENE.labels.join(', '), SCENE]);
  assert.equal(result.status, 'result', JSON.stringify(result).slice(0, 300));
  for (const [x, y, want] of SCENE_PROBES) {
    assert.equal(result.labelMap[y * result.width + x], want, `label at (${x}, ${y})`);
  }
}

// A page of one `<word-mask model=…>`, watched from before it loads (withPage's `before`):
// gives `{problems, requests, answers}`, filled as they come: the page's and its workers'
// errors with the worker's warnings that a CPU module did not start (it falls back to the
// next), and every request of the page's context and its answer ([url, status]). The
// component's `ready` and `error` events go to `window.events` ([kind, detail]).
export async function watchComponent(page) {
  const watch = { problems: [], requests: [], answers: [] };
  page.on('console', (m) => { if (m.type() === 'error' || / did not (start|load)/.test(m.text())) watch.problems.push(m.text()); });
  page.on('pageerror', (e) => watch.problems.push(e.message));
  page.context().on('request', (r) => watch.requests.push(r.url()));
  page.context().on('response', (r) => watch.answers.push([r.url(), r.status()]));
  await page.addInitScript(() => {
    window.events = [];
    document.addEventListener('ready', (e) => window.events.push(['ready', e.detail]));
    document.addEventListener('error', (e) => { if (e.detail?.message) window.events.push(['error', e.detail]); });
  });
  return watch;
}

// On a page watched by watchComponent: the model loads (its `ready` event; a problem the page
// reports, or an `error` event, fails at once; `allow`: problems that are expected), then the
// colour scene is segmented through the component's `segment()` and each probe must get its
// label. Gives the `ready` event's detail, whether the browser validates relaxed SIMD, and the
// .wasm files the page's context asked for.
export async function segmentSceneWithComponent(page, watch, { allow = () => false } = {}) {
  const unexpected = () => watch.problems.filter((p) => !allow(p));
  for (const start = Date.now(); !(await page.evaluate(() => window.events.length));) {
    assert.deepEqual(unexpected(), [], 'the page reports problems before the model is ready');
    assert.ok(Date.now() - start < 60_000, 'no ready or error event in 60 s');
    await new Promise((done) => setTimeout(done, 100));
  }
  const [[kind, ready]] = await page.evaluate(() => window.events);
  assert.equal(kind, 'ready', JSON.stringify(ready));
  const relaxed = await page.evaluate(() => WebAssembly.validate(new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123,
    3, 2, 1, 0, 10, 28, 1, 26, 0, 67, 0, 0, 0, 0, 253, 19, 67, 0, 0, 0, 0, 253, 19, 67, 0, 0, 0, 0, 253, 19, 253, 133, 2, 11])));
  await page.evaluate(`window.paintScene = ${paintScene}`);
  const result = await page.evaluate(async (scene) => {
    const { rgba, width, height } = paintScene(scene);
    const canvas = new OffscreenCanvas(width, height);
    canvas.getContext('2d').putImageData(new ImageData(new Uint8ClampedArray(rgba.buffer), width, height), 0, 0);
    const el = document.querySelector('word-mask');
    el.labels = scene.labels;
    const r = await el.segment(canvas);
    return { ...r, labelMap: Array.from(r.labelMap) };
  }, SCENE);
  for (const [x, y, want] of SCENE_PROBES) assert.equal(result.labelMap[y * result.width + x], want, `label at (${x}, ${y})`);
  assert.deepEqual(unexpected(), [], 'errors on the page or in its workers, or a CPU module that did not start');
  return { ready, relaxed, wasm: watch.requests.filter((u) => new URL(u).pathname.endsWith('.wasm')) };
}

// Runs in the page: `scene` painted as RGBA.
export function paintScene(scene) {
  const g = new OffscreenCanvas(scene.width, scene.height).getContext('2d');
  for (const { rgb, x, y } of scene.regions) {
    g.fillStyle = `rgb(${rgb.join(',')})`;
    g.fillRect(x[0], y[0], x[1] - x[0], y[1] - y[0]);
  }
  return { rgba: new Uint8Array(g.getImageData(0, 0, scene.width, scene.height).data.buffer), width: scene.width, height: scene.height };
}

// As a person would: drop the colour scene onto the page (a file dragged from the desktop),
// type the colour words and pick the fast prompts.
export async function dropSceneAndType(page) {
  await page.evaluate(`window.paintScene = ${paintScene}`);
  await page.evaluate(async (scene) => {
    const { rgba, width, height } = paintScene(scene);
    const canvas = new OffscreenCanvas(width, height);
    canvas.getContext('2d').putImageData(new ImageData(new Uint8ClampedArray(rgba.buffer), width, height), 0, 0);
    const file = new File([await canvas.convertToBlob({ type: 'image/png' })], 'scene.png', { type: 'image/png' });
    const drop = new DragEvent('drop', { dataTransfer: new DataTransfer(), bubbles: true, cancelable: true });
    drop.dataTransfer.items.add(file);
    document.body.dispatchEvent(drop);
  }, SCENE);
  await page.fill('#labels', SCENE.labels.join(', '));
  await page.click('summary:has-text("Advanced")');
  await page.selectOption('#templates', 'single');
  await page.waitForFunction((n) => document.querySelectorAll('#chips .chip').length === n, SCENE.labels.length);
}

// Press Segment and wait for "Done.".
export async function pressSegment(page) {
  await page.waitForFunction(() => !document.getElementById('segment').disabled);
  await page.click('#segment');
  await page.waitForFunction(() => document.getElementById('status').textContent === 'Done.', null, { timeout: 120_000 });
}

// Both: the scene dropped, its words typed, segmented.
export async function dropSceneAndSegment(page) {
  await dropSceneAndType(page);
  await pressSegment(page);
}

// After dropSceneAndSegment: at the probe inside each colour region, the label (1-based, in the
// typed order of SCENE.labels) whose mask colour (www/masks.js) blended over the scene is
// nearest to the drawn pixel, next to the label that region should get.
export async function probeRegions(page) {
  const probes = SCENE_PROBES;
  const seen = await page.evaluate((probes) => {
    const ctx = document.getElementById('view').getContext('2d');
    return probes.map(([x, y]) => Array.from(ctx.getImageData(x, y, 1, 1).data.slice(0, 3)));
  }, probes);
  const painted = Object.fromEntries(SCENE.regions.map(({ rgb, word }) => [SCENE.labels.indexOf(word) + 1, rgb]));
  const labels = SCENE.labels.map((_, i) => i + 1);
  return probes.map(([x, y, label], i) => {
    const blend = (l) => painted[label].map((v, k) => Math.round(v * 0.4 + PALETTE[l - 1][k] * 0.6));
    const distance = (a, b) => a.reduce((sum, v, k) => sum + (v - b[k]) ** 2, 0);
    const nearest = [...labels].sort((a, b) => distance(seen[i], blend(a)) - distance(seen[i], blend(b)))[0];
    return { x, y, label, nearest, seen: seen[i] };
  });
}
