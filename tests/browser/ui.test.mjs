// The page as a person uses it: load the colour checkpoint, drop an image, type words, press
// Segment, and see each region painted in its word's colour, with a legend and hover label.
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { after, before, test } from 'node:test';

import { dropSceneAndSegment, probeRegions, startServer, withPage } from './harness.mjs';

const ARTIFACTS = new URL('./artifacts/', import.meta.url).pathname;

let server;
before(async () => { server = await startServer(); mkdirSync(ARTIFACTS, { recursive: true }); });
after(() => server.close());

test('drop an image, type words, see the masks', { timeout: 300_000 }, async () => {
  await withPage(server.url, { webgpu: false, path: '/?model=/tests/fixtures/semantic-colours/', errors: 'console' }, async (page) => {
    await page.waitForFunction(() => /Load a model/.test(document.getElementById('status').textContent));
    await page.screenshot({ path: `${ARTIFACTS}start.png` });
    await page.click('#load');
    await page.waitForFunction(() => /Model ready/.test(document.getElementById('status').textContent), null, { timeout: 60_000 });
    const progress = await page.evaluate(() => [document.getElementById('progress').value, document.getElementById('progress').max]);
    assert.ok(progress[1] > 1 && progress[0] === progress[1], `progress bar at ${progress[0]} of ${progress[1]}`);

    await dropSceneAndSegment(page);
    await page.screenshot({ path: `${ARTIFACTS}segmented.png`, fullPage: true });

    // Each region shows the colour of its word (label i uses palette colour i).
    for (const p of await probeRegions(page)) assert.equal(p.nearest, p.label, `pixel (${p.x}, ${p.y}) shows ${p.seen}`);
    const legend = await page.textContent('#legend');
    for (const word of ['yellow', 'green', 'red', 'blue', 'unlabelled']) assert.ok(legend.includes(word), legend);

    // Hovering names the word under the cursor.
    const view = page.locator('#view');
    await view.scrollIntoViewIfNeeded();
    const box = await view.boundingBox();
    await view.hover({ position: { x: box.width * (50 / 448), y: box.height * (50 / 336) } });
    assert.match(await page.textContent('#hover'), /^red \((0\.\d\d|1\.00)\)$/);

    // Chips: hide "red" (its region shows the photo again), recolour "green", outlines on.
    const pixel = (x, y) => page.evaluate(([x, y]) => Array.from(document.getElementById('view').getContext('2d').getImageData(x, y, 1, 1).data.slice(0, 3)), [x, y]);
    await page.click('[aria-label="hide red"]');
    assert.deepEqual(await pixel(50, 50), [255, 0, 0]);
    await page.evaluate(() => {
      const picker = document.querySelector('[aria-label="colour of green"]');
      picker.value = '#000000';
      picker.dispatchEvent(new Event('input'));
    });
    assert.deepEqual(await pixel(50, 300), [0, 102, 0], 'green region blended 40/60 with black');
    await page.check('#outlines');
    const column = await page.evaluate(() => Array.from(document.getElementById('view').getContext('2d').getImageData(100, 180, 1, 24).data));
    const white = [...Array(24).keys()].filter((k) => column.slice(k * 4, k * 4 + 3).every((v) => v === 255));
    assert.ok(white.length >= 1 && white.length <= 3, `one thin outline between green and blue near y = 192, got rows ${white.map((k) => 180 + k)}`);
    await page.screenshot({ path: `${ARTIFACTS}chips.png`, fullPage: true });
    // Removing and moving chips edit the label text.
    await page.click('[aria-label="remove yellow"]');
    // The arrows show on a hovered or focused chip: reach them from the keyboard.
    await page.focus('[aria-label="colour of blue"]');
    await page.click('[aria-label="move left blue"]');
    assert.equal(await page.inputValue('#labels'), 'green, blue, red');
  });
});

test('broken and foreign checkpoints chosen as local files show a readable error', { timeout: 300_000 }, async () => {
  await withPage(server.url, { webgpu: false }, async (page) => {
    await page.waitForFunction(() => /Load a model/.test(document.getElementById('status').textContent));
    const config = await (await fetch(`${server.url}/tests/fixtures/semantic-colours/config.json`)).text();
    const weights = Buffer.from(await (await fetch(`${server.url}/tests/fixtures/semantic-colours/model.safetensors`)).arrayBuffer());
    const choose = async (configText, weightBytes) => {
      await page.setInputFiles('#model-files', [
        { name: 'config.json', mimeType: 'application/json', buffer: Buffer.from(configText) },
        { name: 'model.safetensors', mimeType: 'application/octet-stream', buffer: weightBytes },
      ]);
      await page.evaluate(() => { document.getElementById('status').textContent = ''; }); // forget the last answer
      await page.click('#load');
      await page.waitForFunction(() => /Error|Model ready/.test(document.getElementById('status').textContent), null, { timeout: 60_000 });
      return page.textContent('#status');
    };
    assert.match(await choose(config, weights.subarray(0, 5000)), /Error: cannot read checkpoint model\.safetensors: .*truncated/);
    assert.match(await choose('{"model_type": "bert"}', weights), /Error: invalid model config: model_type is 'bert'/);
    await page.screenshot({ path: `${ARTIFACTS}error.png` });
    assert.match(await choose(config, weights), /Model ready/);
  });
});
