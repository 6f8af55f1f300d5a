// Sizes nobody types by hand: a 24-megapixel photo segments in the page's worker on the CPU
// fallback and on WebGPU (the scores stay at the network's resolution; only the label map and
// the confidence are photo-sized), and more than 255 labels come back as a Uint16Array.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { startServer, withPage, workerClient } from './harness.mjs';

const MODEL = '/tests/fixtures/semantic-colours';

let server;
before(async () => { server = await startServer(); });
after(() => server.close());

// Runs in the page: a width x height RGBA photo, red on the left half, green on the right.
function halves(width, height) {
  const rgba = new Uint8Array(width * height * 4);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      rgba.set(x < width / 2 ? [220, 30, 30, 255] : [30, 200, 40, 255], (y * width + x) * 4);
    }
  }
  return { rgba, width, height };
}

function withWorker(webgpu, run) {
  const listWorkers = (page) => {
    page.workers = [];
    page.on('worker', (w) => page.workers.push(w));
  };
  return withPage(server.url, { webgpu, before: listWorkers }, async (page) => {
    await page.evaluate(workerClient);
    await page.evaluate(`window.halves = ${halves}`);
    const device = await page.evaluate(() => ask({ type: 'init', backend: 'webgpu' }));
    assert.equal(device.backend, webgpu ? 'webgpu' : 'cpu', JSON.stringify(device));
    const ready = await page.evaluate((m) => ask({ type: 'load', url: m }), MODEL);
    assert.equal(ready.status, 'ready', JSON.stringify(ready));
    await run(page);
  });
}

// 6000 x 4000, five labels: every pixel named by its half's colour (a row across the middle,
// outside the soft edge, and a column down each half are checked, and the shares).
async function segmentsA24MegapixelPhoto(page) {
  const result = await page.evaluate(async () => {
    const started = performance.now();
    const r = await ask({ type: 'segment', ...halves(6000, 4000), labels: 'red, green, blue, yellow, white', options: {} });
    if (r.status !== 'result') return r;
    const { width, height, labelMap } = r;
    const wrong = [];
    const expect = (x) => (x < width / 2 ? 1 : 2);
    // The edge itself is as soft as the network's patches (a patch spans 190 photo pixels here).
    const nearEdge = (x) => Math.abs(x - width / 2) < width / 20;
    for (let x = 0; x < width; x += 7) if (!nearEdge(x) && labelMap[(height >> 1) * width + x] !== expect(x)) wrong.push([x, height >> 1]);
    for (let y = 0; y < height; y += 7) {
      for (const x of [width >> 2, (3 * width) >> 2]) if (labelMap[y * width + x] !== expect(x)) wrong.push([x, y]);
    }
    return { status: r.status, width, height, kind: labelMap.constructor.name, length: labelMap.length, labels: r.labels, wrong: wrong.slice(0, 5), ms: performance.now() - started };
  });
  assert.equal(result.status, 'result', JSON.stringify(result).slice(0, 400));
  assert.deepEqual([result.width, result.height, result.kind, result.length], [6000, 4000, 'Uint8Array', 24_000_000]);
  assert.deepEqual(result.wrong, [], 'pixels named by the other half');
  const share = Object.fromEntries(result.labels.map((l) => [l.label, l.share]));
  assert.ok(share.red > 0.45 && share.green > 0.45, JSON.stringify(share));
  // The wasm heap after the photo: its bytes (RGBA in, RGB, label map, confidence) and the
  // model, far from wasm32's 4 GiB.
  // The test client's worker is the last one (the page's own app started the first).
  const heap = await page.workers.at(-1).evaluate(() => self.wordmaskHeap());
  assert.ok(heap < 1.5 * 2 ** 30, `wasm heap ${(heap / 2 ** 20).toFixed(0)} MiB`);
  console.log(`24 MP segmented in ${(result.ms / 1000).toFixed(1)} s; wasm heap ${(heap / 2 ** 20).toFixed(0)} MiB`);
}

test('a 24-megapixel photo segments on the CPU fallback', { timeout: 600_000 }, async () => {
  await withWorker(false, segmentsA24MegapixelPhoto);
});

test('a 24-megapixel photo segments on WebGPU', { timeout: 600_000 }, async () => {
  await withWorker(true, segmentsA24MegapixelPhoto);
});

test('more than 255 labels give a Uint16Array label map', { timeout: 300_000 }, async () => {
  await withWorker(false, async (page) => {
    const result = await page.evaluate(async () => {
      const words = [...Array.from({ length: 299 }, (_, i) => `thing ${i + 1}`), 'red', 'green'];
      const r = await ask({ type: 'segment', ...halves(64, 48), labels: words.join(', '), options: {} });
      if (r.status !== 'result') return r;
      return { status: r.status, kind: r.labelMap.constructor.name, left: r.labelMap[20 * 64 + 10], right: r.labelMap[20 * 64 + 50], count: r.labels.length };
    });
    assert.deepEqual(result, { status: 'result', kind: 'Uint16Array', left: 300, right: 301, count: 301 });
  });
});
