// The CPU fallback's threads module (pkg/threads/, and pkg/threads-relaxed/ where the browser has
// relaxed SIMD): in a cross-origin isolated page the worker takes it for the CPU backend, spreads
// the kernels over a pool of Web Workers and still segments the colour scene; where the page is
// not isolated, or the pool cannot start, it stays on one thread, on pkg/cpu-relaxed/ (pkg/ where
// that cannot load). Each build's image embedding,
// at a size where the products and attention are cut into bands of rows, is the single-threaded
// module's (to float rounding: sums split into bands, and the relaxed build's fused
// multiply-adds round once).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { serve } from '../../tools/serve.mjs';
import { SCENE_MODEL as MODEL, segmentSceneInWorker, withPage as withPageOf, workerClient } from './harness.mjs';

const mounts = { '/tests/fixtures/': 'tests/fixtures', '/peer/': 'tests/fixtures/peer-tiny', '/bench/': 'tools' };

let isolated;
let plain;
before(async () => {
  [isolated, plain] = await Promise.all([serve(0, mounts, { isolated: true }), serve(0, mounts)]);
});
after(() => {
  for (const server of [isolated, plain]) { server.closeAllConnections(); server.close(); }
});
const origin = (server) => `http://127.0.0.1:${server.address().port}`;

const withPage = (server, run) => withPageOf(origin(server), { webgpu: false }, run);

test('an isolated page runs the CPU fallback on threads and segments the scene', { timeout: 300_000 }, async () => {
  const { device, isolated: pageIsolated, cores } = await segmentSceneInWorker(origin(isolated), { webgpu: false, backend: 'cpu' });
  assert.equal(pageIsolated, true, 'the page is cross-origin isolated');
  assert.equal(device.backend, 'cpu');
  assert.equal(device.threads, Math.min(8, cores), 'one thread per core, up to 8');
  assert.equal(device.build, 'threads-relaxed', "Chromium validates relaxed SIMD: the threads module's relaxed build");
});

test('an isolated page asked for one thread runs the threads module on one', { timeout: 300_000 }, async () => {
  await withPage(isolated, async (page) => {
    await page.evaluate(workerClient);
    const device = await page.evaluate(() => ask({ type: 'init', backend: 'cpu', threads: 1 }));
    assert.deepEqual([device.status, device.backend, device.threads, device.build], ['device', 'cpu', 1, 'threads-relaxed'], JSON.stringify(device));
    assert.equal((await page.evaluate((m) => ask({ type: 'load', url: m }), MODEL)).status, 'ready');
  });
});

test('where the thread pool cannot start, the CPU fallback runs on one thread', { timeout: 300_000 }, async () => {
  await withPage(isolated, async (page) => {
    // The pool's workers load from the threads module's snippet: refuse it.
    await page.context().route(/\/pkg\/threads(-relaxed)?\/snippets\//, (route) => route.fulfill({ status: 404, body: 'gone' }));
    const warnings = [];
    page.on('console', (m) => m.type() === 'warning' && warnings.push(m.text()));
    await page.evaluate(workerClient);
    const device = await page.evaluate(() => ask({ type: 'init', backend: 'cpu' }));
    assert.deepEqual([device.status, device.backend, device.threads, device.build], ['device', 'cpu', 1, 'cpu-relaxed'], JSON.stringify(device));
    assert.ok(warnings.some((w) => /threads did not start/.test(w)), warnings.join('\n'));
    assert.equal((await page.evaluate((m) => ask({ type: 'load', url: m }), MODEL)).status, 'ready');
  });
});

test('a page that is not isolated keeps the CPU fallback on one thread, on its relaxed-SIMD module', { timeout: 300_000 }, async () => {
  await withPage(plain, async (page) => {
    await page.evaluate(workerClient);
    const device = await page.evaluate(() => ask({ type: 'init', backend: 'cpu' }));
    assert.deepEqual([device.status, device.backend, device.threads, device.build], ['device', 'cpu', 1, 'cpu-relaxed']);
    assert.equal((await page.evaluate((m) => ask({ type: 'load', url: m }), MODEL)).status, 'ready');
  });
});

test('where the relaxed-SIMD module cannot load, the CPU fallback runs pkg/', { timeout: 300_000 }, async () => {
  await withPage(plain, async (page) => {
    await page.context().route(/\/pkg\/cpu-relaxed\//, (route) => route.fulfill({ status: 404, body: 'gone' }));
    const warnings = [];
    page.on('console', (m) => m.type() === 'warning' && warnings.push(m.text()));
    await page.evaluate(workerClient);
    const device = await page.evaluate(() => ask({ type: 'init', backend: 'cpu' }));
    assert.deepEqual([device.status, device.backend, device.threads, device.build], ['device', 'cpu', 1, 'main'], JSON.stringify(device));
    assert.ok(warnings.some((w) => /relaxed-SIMD module did not load/.test(w)), warnings.join('\n'));
    assert.equal((await page.evaluate((m) => ask({ type: 'load', url: m }), MODEL)).status, 'ready');
  });
});

test('every CPU build (threads, threads-relaxed, cpu-relaxed) embeds an image as pkg/ does', { timeout: 300_000 }, async () => {
  await withPage(isolated, async (page) => {
    const got = await page.evaluate(async () => {
      // 160 x 160 pixels, 401 tokens of the tiny CLIP (positions interpolated): every product
      // and the attention are large enough to be cut into bands.
      const size = 160;
      const pixels = Float32Array.from({ length: 3 * size * size }, (_, i) => Math.sin(i * 0.37) * 1.5);
      const one = await import('/pkg/wordmask.js');
      await one.default();
      const wm = await one.WordMask.create('cpu');
      const [config, weights] = await Promise.all([fetch('/peer/model/config.json').then((r) => r.text()),
        fetch('/peer/model/model.safetensors').then((r) => r.arrayBuffer())]);
      wm.load(config, new Uint8Array(weights), 'model.safetensors', undefined);
      const single = Array.from(await wm.embedPixels(pixels.slice(), size));
      const builds = {};
      // The one-thread relaxed-SIMD module, in the page.
      const relaxed = await import('/pkg/cpu-relaxed/wordmask.js');
      await relaxed.default();
      const wr = await relaxed.WordMask.create('cpu');
      wr.load(config, new Uint8Array(weights), 'model.safetensors', undefined);
      builds['cpu-relaxed'] = { loaded: { threads: relaxed.threads() }, threaded: Array.from(await wr.embedPixels(pixels.slice(), size)) };
      // The build the worker takes here (unset `core`), and each build by name.
      for (const core of [undefined, '/pkg/threads/wordmask.js', '/pkg/threads-relaxed/wordmask.js']) {
        const worker = new Worker('/bench/peer_bench_worker.js', { type: 'module' });
        const call = (message) => new Promise((done) => { worker.onmessage = ({ data }) => done(data); worker.postMessage(message); });
        const loaded = await call({ type: 'load', threads: 2, core });
        const threaded = await call({ type: 'run', pixels: pixels.slice(), size });
        builds[core ?? 'default'] = { loaded, threaded: threaded.output ? Array.from(threaded.output) : threaded };
        worker.terminate();
      }
      return { single, builds };
    });
    assert.ok(got.single.length > 0 && got.single.some((v) => v !== 0));
    const scale = Math.max(...got.single.map(Math.abs));
    // Chromium has relaxed SIMD: the worker takes the build that uses it.
    assert.match(got.builds.default.loaded.core ?? '', /\/pkg\/threads-relaxed\/wordmask\.js$/, JSON.stringify(got.builds.default.loaded));
    for (const [name, { loaded, threaded }] of Object.entries(got.builds)) {
      assert.equal(loaded.threads, name === 'cpu-relaxed' ? 1 : 2, `${name}: ${JSON.stringify(loaded)}`);
      assert.ok(Array.isArray(threaded), `${name}: ${JSON.stringify(threaded)}`);
      assert.equal(threaded.length, got.single.length, name);
      threaded.forEach((v, i) => assert.ok(Math.abs(v - got.single[i]) <= 1e-5 * scale, `${name} value ${i}: ${v} threaded, ${got.single[i]} on one thread`));
    }
  });
});
