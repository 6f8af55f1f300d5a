// When the model worker dies (what a lost GPU device or a wasm trap leaves behind), the page
// starts a fresh one, reloads the model from the cache and segments again.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { dropSceneAndSegment, startServer, withPage } from './harness.mjs';

const MODEL_PAGE = '/?model=/tests/fixtures/semantic-colours/';

let server;
before(async () => { server = await startServer(); });
after(() => server.close());

test('the page recovers from a dead model worker', { timeout: 300_000 }, async () => {
  const workers = [];
  const listWorkers = (page) => page.on('worker', (w) => workers.push(w));
  await withPage(server.url, { webgpu: false, path: MODEL_PAGE, before: listWorkers }, async (page) => {
    await page.waitForFunction(() => /Load a model/.test(document.getElementById('status').textContent));
    await page.click('#load');
    await page.waitForFunction(() => /Model ready/.test(document.getElementById('status').textContent), null, { timeout: 60_000 });
    await dropSceneAndSegment(page);

    // Kill the worker from inside with an uncaught error.
    await workers[0].evaluate(() => setTimeout(() => { throw new Error('simulated: GPU device lost'); }));
    await page.waitForFunction(() => /restarting/.test(document.getElementById('status').textContent), null, { timeout: 30_000 });
    await page.waitForFunction(() => /Model ready/.test(document.getElementById('status').textContent), null, { timeout: 60_000 });
    assert.equal(workers.length, 2, 'a second worker was started');
    await page.click('#segment');
    await page.waitForFunction(() => document.getElementById('status').textContent === 'Done.', null, { timeout: 120_000 });
    assert.match(await page.textContent('#legend'), /red 18\.\d %/);
  });
});

test('a GPU device destroyed mid-segmentation is reported, re-created, and the model reloaded from the cache', { timeout: 400_000 }, async () => {
  const workers = [];
  const listWorkers = (page) => page.on('worker', (w) => workers.push(w));
  await withPage(server.url, { webgpu: true, path: MODEL_PAGE, before: listWorkers }, async (page) => {
    await page.waitForFunction(() => /Load a model/.test(document.getElementById('status').textContent));
    await page.click('#load');
    await page.waitForFunction(() => /Model ready.*webgpu/i.test(document.getElementById('status').textContent), null, { timeout: 60_000 });
    await dropSceneAndSegment(page);

    // Segment again and destroy the worker's real GPUDevice while it runs.
    const modelRequests = [];
    page.on('request', (r) => { if (r.url().includes('/semantic-colours/')) modelRequests.push(r.url()); });
    const statuses = [];
    await page.exposeFunction('noteStatus', (text) => statuses.push(text));
    await page.evaluate(() => new MutationObserver(() => noteStatus(document.getElementById('status').textContent))
      .observe(document.getElementById('status'), { childList: true, characterData: true, subtree: true }));
    await page.click('#segment');
    await workers[0].evaluate(() => self.wordmaskDevice.destroy());
    await page.waitForFunction(() => /Model ready/.test(document.getElementById('status').textContent), null, { timeout: 120_000 });
    assert.ok(statuses.some((t) => /GPU device was lost/.test(t) && /restarting/.test(t)), `the page said so: ${JSON.stringify(statuses)}`);
    assert.equal(workers.length, 2, 'a fresh worker with a fresh device');
    assert.match(await page.textContent('#status'), /webgpu/i, 'WebGPU again, not the CPU fallback');
    assert.deepEqual(modelRequests, [], 'the model came back from the Cache Storage');

    await page.click('#segment');
    await page.waitForFunction(() => document.getElementById('status').textContent === 'Done.', null, { timeout: 120_000 });
    assert.match(await page.textContent('#legend'), /red 18\.\d %/);
  });
});

test('<word-mask> recovers from a dead model worker on its next image', { timeout: 300_000 }, async () => {
  const workers = [];
  const listWorkersAndResults = async (page) => {
    page.on('worker', (w) => workers.push(w));
    await page.addInitScript(() => {
      window.results = 0;
      document.addEventListener('result', () => { window.results += 1; });
    });
  };
  const path = '/embed.html?model=/tests/fixtures/semantic-colours/&src=/tests/fixtures/images/shapes_50x90.png';
  await withPage(server.url, { webgpu: false, path, before: listWorkersAndResults }, async (page) => {
    await page.waitForFunction(() => window.results === 2, null, { timeout: 120_000 });
    await workers[0].evaluate(() => setTimeout(() => { throw new Error('simulated: GPU device lost'); }));
    const detail = await page.evaluate(async () => {
      const el = document.getElementById('first');
      for (let i = 0; i < 50; i++) {
        try {
          const r = await el.segment(await createImageBitmap(await (await fetch('/tests/fixtures/images/shapes_50x90.png')).blob()));
          return { ...r, labelMap: Array.from(r.labelMap) };
        } catch (e) {
          await new Promise((resolve) => setTimeout(resolve, 200)); // the first try may meet the dying worker
        }
      }
      return null;
    });
    assert.ok(detail, 'segment() worked again');
    assert.equal(detail.labels[detail.labelMap[30 * 50 + 25] - 1], 'red');
    assert.equal(workers.length, 2, 'a fresh worker was started');
  });
});
