// embed.html: two <word-mask> components on one page share one worker and one model download,
// and both label the fixture image's red disc and blue bar.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { startServer, withPage } from './harness.mjs';

const ARTIFACTS = new URL('./artifacts/', import.meta.url).pathname;

let server;
before(async () => { server = await startServer(); });
after(() => server.close());

test('two components share the worker and both segment', { timeout: 300_000 }, async () => {
  const workers = [];
  const weightRequests = [];
  // Recorded from before the page's own scripts run: its workers, its weight downloads, and
  // every component's result and error.
  const record = async (page) => {
    page.on('worker', (w) => workers.push(w.url()));
    page.on('request', (r) => { if (r.url().endsWith('model.safetensors')) weightRequests.push(r.url()); });
    await page.addInitScript(() => {
      window.results = {};
      window.errors = [];
      document.addEventListener('result', (e) => { window.results[e.target.id] = { ...e.detail, labelMap: Array.from(e.detail.labelMap) }; });
      document.addEventListener('error', (e) => { if (e.detail?.message) window.errors.push(e.detail.message); });
    });
  };
  const path = '/embed.html?model=/tests/fixtures/semantic-colours/&src=/tests/fixtures/images/shapes_50x90.png';
  await withPage(server.url, { webgpu: false, path, before: record, errors: 'console' }, async (page) => {
    await page.waitForFunction(() => Object.keys(window.results).length === 2 || window.errors.length > 0, null, { timeout: 120_000 });
    assert.deepEqual(await page.evaluate(() => window.errors), []);
    const results = await page.evaluate(() => window.results);
    await page.screenshot({ path: `${ARTIFACTS}embed.png`, fullPage: true });
    // shapes_50x90: red disc around (25, 30), blue bar over x 5..30, y 60..80.
    for (const id of ['first', 'second']) {
      const r = results[id];
      assert.equal(r.width, 50);
      const at = (x, y) => r.labels[r.labelMap[y * r.width + x] - 1];
      assert.equal(at(25, 30), 'red', `${id}: disc centre`);
      assert.equal(at(17, 70), 'blue', `${id}: bar centre`);
    }
    assert.equal(workers.length, 1, `workers: ${workers}`);
    assert.equal(weightRequests.length, 1, 'the weights are downloaded once for both components');
  });
});
