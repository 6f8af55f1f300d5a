// After one visit the app works offline: the service worker serves the page and the wasm core,
// the model comes from the Cache Storage, and segmentation runs with the network off.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { dropSceneAndSegment, startServer, withPage } from './harness.mjs';

let server;
before(async () => { server = await startServer(); });
after(() => server.close());

test('a second visit works with the network off', { timeout: 300_000 }, async () => {
  await withPage(server.url, { webgpu: false, path: '/?model=/tests/fixtures/semantic-colours/' }, async (page) => {
    await page.waitForFunction(() => /Load a model/.test(document.getElementById('status').textContent));
    await page.click('#load');
    await page.waitForFunction(() => /Model ready/.test(document.getElementById('status').textContent), null, { timeout: 60_000 });
    await page.evaluate(() => navigator.serviceWorker.ready);

    await page.context().setOffline(true);
    await page.reload();
    await page.waitForFunction(() => /Load a model/.test(document.getElementById('status').textContent), null, { timeout: 60_000 });
    await page.click('#load');
    await page.waitForFunction(() => /Model ready|Error/.test(document.getElementById('status').textContent), null, { timeout: 60_000 });
    assert.match(await page.textContent('#status'), /Model ready/);
    await dropSceneAndSegment(page);
    assert.match(await page.textContent('#legend'), /red 18\.\d %/);
  });
});
