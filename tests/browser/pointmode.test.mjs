// Point mode as a visitor meets it: the Point panel and the whole image fit the first screen of a
// phone and of a laptop; a burst of clicks while the image is being encoded costs one encoding;
// a click with no Segment Anything model makes no object and says what to do; Undo and Clear
// say what they did. The colour checkpoints (tests/fixtures/semantic-colours names,
// tests/fixtures/sam-colours outlines every pixel of the colour clicked) on the CPU fallback.
// Screenshots of each state land in tests/browser/artifacts/point/; axe-core finds nothing in any.
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { after, before, test } from 'node:test';

import { audit } from './axe.mjs';
import { SCENE, dropSceneAndType, startServer, withPage } from './harness.mjs';

const ARTIFACTS = new URL('./artifacts/point/', import.meta.url).pathname;
const PATH = '/?model=/tests/fixtures/semantic-colours/&sam=/tests/fixtures/sam-colours/';
const region = (word) => SCENE.regions.find((r) => r.word === word);

let server;
before(async () => { server = await startServer(); mkdirSync(ARTIFACTS, { recursive: true }); });
after(() => server.close());

const text = (page, id) => page.evaluate((id) => document.getElementById(id).textContent, id);
const waitStatus = (page, pattern, timeout = 60_000) => page.waitForFunction(
  (source) => new RegExp(source).test(document.getElementById('status').textContent), pattern.source, { timeout },
);

// The words model loaded, the colour scene dropped and its words typed, back at the top of the
// page, then the Point tab pressed.
async function sceneInPointMode(page) {
  await waitStatus(page, /Load a model/);
  await page.click('#load');
  await waitStatus(page, /Model ready/);
  await dropSceneAndType(page);
  await page.evaluate(() => scrollTo(0, 0));
  await page.click('#tab-point');
}

// A click on the scene's pixel `[x, y]`, where the canvas shows it.
async function clickAt(page, [x, y]) {
  const box = await page.locator('#view').boundingBox();
  await page.mouse.click(box.x + box.width * ((x + 0.5) / SCENE.width), box.y + box.height * ((y + 0.5) / SCENE.height));
}

const disabled = (page) => page.evaluate(() => Object.fromEntries(
  ['point-undo', 'point-clear', 'download-labels', 'download-overlay', 'download-json'].map((id) => [id, document.getElementById(id).disabled]),
));
const ALL_DISABLED = { 'point-undo': true, 'point-clear': true, 'download-labels': true, 'download-overlay': true, 'download-json': true };

for (const viewport of [{ width: 390, height: 844 }, { width: 1440, height: 900 }]) {
  const size = `${viewport.width}x${viewport.height}`;
  test(`${size}: the Point panel and the whole image are on the first screen`, { timeout: 120_000 }, async () => {
    await withPage(server.url, { webgpu: false, path: PATH, context: { viewport, deviceScaleFactor: 1 }, errors: 'console' }, async (page) => {
      const fits = async (state) => {
        const boxes = await page.evaluate(() => ['point-panel', 'view'].map((id) => {
          const { top, bottom, left, right, height } = document.getElementById(id).getBoundingClientRect();
          return { id, top, bottom, left, right, height };
        }));
        for (const b of boxes) {
          assert.ok(b.top >= 0 && b.left >= 0 && b.bottom <= viewport.height && b.right <= viewport.width,
            `${state}: #${b.id} spans x ${b.left}..${b.right}, y ${b.top}..${b.bottom} of a ${size} viewport`);
        }
        assert.ok(boxes[1].height >= 150, `${state}: the image is ${boxes[1].height} px tall`);
        await page.screenshot({ path: `${ARTIFACTS}${size}-${state}.png` });
      };
      await sceneInPointMode(page);
      await fits('point-tab');
      await page.click('#sam-load');
      await waitStatus(page, /Segment Anything ready/);
      await fits('sam-ready');
      await clickAt(page, region('red').probe);
      await waitStatus(page, /Outlined red/);
      await fits('outlined');
      assert.deepEqual(await audit(page), [], 'an object outlined in Point mode');
      // Back on the Words tab the image takes its usual room again.
      await page.click('#tab-words');
      const height = await page.evaluate(() => document.getElementById('view').getBoundingClientRect().height);
      assert.ok(height >= 150, `words mode: the image is ${height} px tall`);
    });
  });
}

test('clicks while the image is encoded wait for that one encoding, then each outlines its object', { timeout: 120_000 }, async () => {
  // The worker's encode requests, counted and held back 1.5 s (a slow encoder), as they leave the page.
  const slowEncoder = (page) => page.addInitScript(() => {
    window.encodes = 0;
    const post = Worker.prototype.postMessage;
    Worker.prototype.postMessage = function postMessage(message, transfer) {
      if (message?.type !== 'encode') return post.call(this, message, transfer);
      window.encodes += 1;
      setTimeout(() => post.call(this, message, transfer), 1500);
      return undefined;
    };
  });
  await withPage(server.url, { webgpu: false, path: PATH, before: slowEncoder, errors: 'console' }, async (page) => {
    await sceneInPointMode(page);
    await page.click('#sam-load');
    await waitStatus(page, /Segment Anything ready/);
    for (const word of ['red', 'green', 'yellow']) await clickAt(page, region(word).probe);
    assert.match(await text(page, 'status'), /^Encoding the image \(once per image\)… 2 more clicks wait\.$/, 'the status says the clicks are queued');
    await page.screenshot({ path: `${ARTIFACTS}storm-waiting.png` });
    await page.waitForFunction(() => document.querySelectorAll('#legend li').length === 3, null, { timeout: 60_000 });
    await waitStatus(page, /Outlined yellow/);
    assert.equal(await page.evaluate(() => window.encodes), 1, 'one encoding for the three clicks');
    assert.deepEqual(await page.$$eval('#legend li', (items) => items.map((li) => li.textContent.replace(/ \d+ %.*/, ''))), ['1. red', '2. green', '3. yellow']);
    await page.screenshot({ path: `${ARTIFACTS}storm-done.png` });
    assert.deepEqual(await audit(page), [], 'three objects outlined');
  });
});

test('a click with no Segment Anything model makes no object; Undo and Clear say what they did', { timeout: 120_000 }, async () => {
  // The Segment Anything weights arrive 2 s late, so that a click can land while they load.
  const slowWeights = (page) => page.route('**/sam-colours/model.safetensors', async (route) => {
    await new Promise((resolve) => setTimeout(resolve, 2000));
    await route.continue();
  });
  await withPage(server.url, { webgpu: false, path: PATH, before: slowWeights, errors: 'console' }, async (page) => {
    await sceneInPointMode(page);
    await clickAt(page, region('red').probe);
    assert.match(await text(page, 'status'), /No Segment Anything model is loaded: choose one above and press Load, then click an object\./);
    assert.equal(await text(page, 'legend'), '', 'no object');
    assert.deepEqual(await disabled(page), ALL_DISABLED, 'nothing to undo, clear or download');
    await page.screenshot({ path: `${ARTIFACTS}no-model.png` });
    assert.deepEqual(await audit(page), [], 'a click with no model');

    await page.click('#sam-load');
    await clickAt(page, region('red').probe);
    assert.match(await text(page, 'status'), /still loading: click again once it is ready/);
    assert.equal(await text(page, 'legend'), '');
    await waitStatus(page, /Segment Anything ready/);
    assert.deepEqual(await disabled(page), ALL_DISABLED, 'the clicks while it loaded left nothing');

    await clickAt(page, region('green').probe);
    await waitStatus(page, /Outlined green/);
    assert.equal(await page.isDisabled('#point-undo'), false);
    assert.equal(await page.isDisabled('#download-labels'), false);
    await page.click('#point-undo');
    const undone = await text(page, 'status');
    assert.doesNotMatch(undone, /Outlined/);
    assert.match(undone, /Removed object 1 \(green\); none left\./);
    assert.deepEqual(await disabled(page), ALL_DISABLED, 'after Undo');
    await page.screenshot({ path: `${ARTIFACTS}undone.png` });

    await clickAt(page, region('red').probe);
    await waitStatus(page, /Outlined red/);
    await clickAt(page, region('blue').probe);
    await waitStatus(page, /Outlined blue/);
    await page.click('#point-clear');
    const cleared = await text(page, 'status');
    assert.doesNotMatch(cleared, /Outlined/);
    assert.match(cleared, /Objects cleared/);
    assert.equal(await text(page, 'legend'), '');
    assert.deepEqual(await disabled(page), ALL_DISABLED, 'after Clear');
    await page.screenshot({ path: `${ARTIFACTS}cleared.png` });
    assert.deepEqual(await audit(page), [], 'after Clear');
  });
});
