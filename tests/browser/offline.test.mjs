// After one visit the app works offline: the service worker serves the page and the wasm core,
// the model comes from the Cache Storage, and segmentation runs with the network off.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { colourScene, launch, startServer } from './harness.mjs';

let server;
before(async () => { server = await startServer(); });
after(() => server.close());

test('a second visit works with the network off', { timeout: 300_000 }, async () => {
  const browser = await launch({ webgpu: false });
  try {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${server.url}/?model=/tests/fixtures/semantic-colours/`);
    await page.waitForFunction(() => /Load a model/.test(document.getElementById('status').textContent));
    await page.click('#load');
    await page.waitForFunction(() => /Model ready/.test(document.getElementById('status').textContent), null, { timeout: 60_000 });
    await page.evaluate(() => navigator.serviceWorker.ready);

    await context.setOffline(true);
    await page.reload();
    await page.waitForFunction(() => /Load a model/.test(document.getElementById('status').textContent), null, { timeout: 60_000 });
    await page.click('#load');
    await page.waitForFunction(() => /Model ready|Error/.test(document.getElementById('status').textContent), null, { timeout: 60_000 });
    assert.match(await page.textContent('#status'), /Model ready/);
    await page.evaluate(`window.colourScene = ${colourScene}`);
    await page.evaluate(async () => {
      const { rgba, width, height } = colourScene();
      const canvas = new OffscreenCanvas(width, height);
      canvas.getContext('2d').putImageData(new ImageData(new Uint8ClampedArray(rgba.buffer), width, height), 0, 0);
      const file = new File([await canvas.convertToBlob({ type: 'image/png' })], 'scene.png', { type: 'image/png' });
      const drop = new DragEvent('drop', { dataTransfer: new DataTransfer(), bubbles: true, cancelable: true });
      drop.dataTransfer.items.add(file);
      document.body.dispatchEvent(drop);
    });
    await page.fill('#labels', 'yellow, green, red, blue');
    await page.click('summary');
    await page.selectOption('#templates', 'single');
    await page.waitForFunction(() => !document.getElementById('segment').disabled);
    await page.click('#segment');
    await page.waitForFunction(() => document.getElementById('status').textContent === 'Done.', null, { timeout: 120_000 });
    assert.match(await page.textContent('#legend'), /red 18\.\d %/);
  } finally {
    await browser.close();
  }
});
