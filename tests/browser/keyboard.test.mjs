// The page from the keyboard alone, as WAI-ARIA's patterns have it: a skip link to the model
// picker; load, choose an image, type words, segment; each chip one tab stop whose controls the
// arrow keys reach, the focus staying on the control after a chip or legend action; arrow keys
// move a probe over the result and a live region reads out the word under it; download. The
// mode tabs answer arrow keys, and in Point mode Enter on the probe outlines the object there.
// The colour checkpoints on the CPU fallback; screenshots in tests/browser/artifacts/keyboard/;
// axe-core finds nothing in any state reached.
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { after, before, test } from 'node:test';

import { audit } from './axe.mjs';
import { SCENE, dropSceneAndType, paintScene, startServer, withPage } from './harness.mjs';

const ARTIFACTS = new URL('./artifacts/keyboard/', import.meta.url).pathname;
const CONTEXT = { viewport: { width: 1440, height: 900 }, deviceScaleFactor: 1 };

let server;
before(async () => { server = await startServer(); mkdirSync(ARTIFACTS, { recursive: true }); });
after(() => server.close());

/** The word painted at pixel (x, y) of the scene (later regions on top). */
const sceneWord = (x, y) => SCENE.regions.findLast((r) => x >= r.x[0] && x < r.x[1] && y >= r.y[0] && y < r.y[1]).word;

// The focused element, as a person would name it: its id, else its accessible label, else its text.
const focused = (page) => page.evaluate(() => {
  const a = document.activeElement;
  return a.id || a.getAttribute('aria-label') || a.textContent.trim();
});

// Tab (or Shift+Tab, `back`) until the focus is on `selector`; the presses it took. The element
// reached must show its focus (:focus-visible, with an outline).
async function tabTo(page, selector, { back = false, max = 40 } = {}) {
  for (let presses = 1; presses <= max; presses++) {
    await page.keyboard.press(back ? 'Shift+Tab' : 'Tab');
    const here = await page.evaluate((s) => {
      const a = document.activeElement;
      return a.matches(s) && { visible: a.matches(':focus-visible'), outline: parseFloat(getComputedStyle(a).outlineWidth) };
    }, selector);
    if (here) {
      assert.ok(here.visible && here.outline >= 2, `${selector} shows its focus: ${JSON.stringify(here)}`);
      return presses;
    }
  }
  return assert.fail(`${selector} is not reached in ${max} presses of ${back ? 'Shift+Tab' : 'Tab'}`);
}

const status = (page) => page.evaluate(() => document.getElementById('status').textContent);
const waitStatus = (page, pattern, timeout = 120_000) => page.waitForFunction(
  (source) => new RegExp(source).test(document.getElementById('status').textContent), pattern.source, { timeout },
);
const pixel = (page, [x, y]) => page.evaluate(([x, y]) => Array.from(document.getElementById('view').getContext('2d').getImageData(x, y, 1, 1).data.slice(0, 3)), [x, y]);

// The colour scene as a PNG file's bytes.
async function scenePng(page) {
  await page.evaluate(`window.paintScene = ${paintScene}`);
  return Buffer.from(await page.evaluate(async (scene) => {
    const { rgba, width, height } = paintScene(scene);
    const canvas = new OffscreenCanvas(width, height);
    canvas.getContext('2d').putImageData(new ImageData(new Uint8ClampedArray(rgba.buffer), width, height), 0, 0);
    return Array.from(new Uint8Array(await (await canvas.convertToBlob({ type: 'image/png' })).arrayBuffer()));
  }, SCENE));
}

// The probe's announcement, checked against the scene: the word painted where it says it is
// (with its score in Words mode).
async function probeSays(page) {
  const said = await page.evaluate(() => document.getElementById('probe-say').textContent);
  const [, word, x, y] = /^(\w+)(?: \((?:0\.\d\d|1\.00)\))? at (\d+), (\d+)$/.exec(said) ?? [];
  assert.ok(word, `the live region says "${said}"`);
  assert.equal(word, sceneWord(Number(x), Number(y)), `the probe at ${x}, ${y} names ${word}`);
  return { word, x: Number(x), y: Number(y) };
}

test('keyboard only: load, image, words, segment, read a pixel\'s word, download', { timeout: 300_000 }, async () => {
  await withPage(server.url, { webgpu: false, context: CONTEXT, path: '/?model=/tests/fixtures/semantic-colours/', errors: 'console' }, async (page) => {
    await waitStatus(page, /Load a model/);
    // The first stop is the skip link, shown when focused; it lands on the model picker.
    await page.keyboard.press('Tab');
    assert.equal(await focused(page), 'Skip to the model picker');
    const skip = await page.locator('a.skip').boundingBox();
    assert.ok(skip.x >= 0 && skip.y >= 0, `the skip link shows at ${skip.x}, ${skip.y}`);
    await page.screenshot({ path: `${ARTIFACTS}skip-link.png` });
    await page.keyboard.press('Enter');
    assert.equal(await focused(page), 'model-pick');

    // Load.
    assert.ok(await tabTo(page, '#load') <= 4, 'Load model is a few stops after the picker');
    await page.keyboard.press('Enter');
    await waitStatus(page, /Model ready/);
    assert.equal(await focused(page), 'load', 'the focus stays on Load model');

    // The image, through the file picker opened with Space.
    await tabTo(page, '#image');
    const chooser = page.waitForEvent('filechooser');
    await page.keyboard.press('Space');
    await (await chooser).setFiles({ name: 'scene.png', mimeType: 'image/png', buffer: await scenePng(page) });
    await page.waitForFunction(([w, h]) => document.getElementById('view').width === w && document.getElementById('view').height === h, [SCENE.width, SCENE.height]);

    // The words, then Enter segments.
    await tabTo(page, '#labels', { back: true });
    await page.keyboard.press('ControlOrMeta+A');
    await page.keyboard.type(SCENE.labels.join(', '));
    await page.waitForFunction((n) => document.querySelectorAll('#chips .chip').length === n, SCENE.labels.length);
    await page.keyboard.press('Enter');
    await waitStatus(page, /^Done\.$/);
    assert.equal(await focused(page), 'labels', 'the focus stays in the words');

    // Each chip is one tab stop: Segment, then one stop per chip, Name everything and the way to
    // a Segment Anything model (none is loaded), then the image.
    const stops = [];
    for (let i = 0; i < SCENE.labels.length + 4; i++) {
      await page.keyboard.press('Tab');
      stops.push(await page.evaluate(() => document.activeElement.closest('#chips [data-label]')?.dataset.label ?? document.activeElement.id));
    }
    assert.deepEqual(stops, ['segment', ...SCENE.labels, 'everything', 'objects-get', 'view']);

    // In the "red" chip, the arrow keys reach its controls; hiding it keeps the focus there.
    await tabTo(page, '#chips [data-label="red"] [role=toolbar] *', { back: true });
    assert.equal(await focused(page), 'colour of red');
    const reached = [];
    for (let i = 0; i < 4; i++) {
      await page.keyboard.press('ArrowRight');
      reached.push(await focused(page));
    }
    assert.deepEqual(reached, ['move left red', 'move right red', 'hide red', 'remove red']);
    await page.keyboard.press('ArrowLeft');
    await page.keyboard.press('Enter');
    assert.equal(await focused(page), 'show red', 'the focus stays on the chip after hiding it');
    assert.deepEqual(await pixel(page, SCENE.regions.find((r) => r.word === 'red').probe), [255, 0, 0], 'red is hidden');
    await page.keyboard.press('Enter');
    assert.equal(await focused(page), 'hide red');
    // Moving a chip keeps the focus on it, at its new place.
    await page.keyboard.press('Home');
    await page.keyboard.press('ArrowRight');
    await page.keyboard.press('Enter');
    assert.equal(await page.inputValue('#labels'), 'yellow, red, green, blue');
    assert.equal(await focused(page), 'move left red');
    await page.keyboard.press('ArrowRight');
    await page.keyboard.press('Enter');
    assert.equal(await page.inputValue('#labels'), 'yellow, green, red, blue');
    assert.equal(await focused(page), 'move right red');
    await page.screenshot({ path: `${ARTIFACTS}chip-toolbar.png` });
    assert.deepEqual(await audit(page), [], 'a chip\'s controls focused');

    // The probe: arrow keys over the image, the word under it read out.
    await tabTo(page, '#view');
    const start = await probeSays(page);
    assert.deepEqual([start.x, start.y], [SCENE.width / 2, SCENE.height / 2], 'the probe starts in the middle');
    for (const key of ['ArrowUp', 'ArrowUp', 'ArrowUp', 'ArrowLeft', 'ArrowLeft', 'ArrowLeft', 'ArrowLeft', 'ArrowLeft']) await page.keyboard.press(key);
    const moved = await probeSays(page);
    assert.equal(moved.word, 'red', `the probe moved into the red region, at ${moved.x}, ${moved.y}`);
    for (let i = 0; i < 8; i++) await page.keyboard.press('ArrowDown');
    assert.equal((await probeSays(page)).word, 'green');
    await page.keyboard.press('Shift+ArrowRight');
    const fine = await probeSays(page);
    assert.equal(fine.x, moved.x + 1, 'Shift moves one pixel');
    assert.ok(await page.isVisible('.probe-marker'), 'the crosshair shows where the probe is');
    await page.screenshot({ path: `${ARTIFACTS}probe.png` });
    assert.deepEqual(await audit(page), [], 'the probe on the image');

    // A legend entry isolates its word; the focus stays on it.
    await tabTo(page, '#legend [data-label="green"] button');
    await page.keyboard.press('Enter');
    assert.equal(await page.evaluate(() => document.activeElement.closest('[data-label]')?.dataset.label), 'green', 'the focus stays on the legend entry');
    assert.equal(await page.getAttribute('#legend [data-label="green"] button', 'aria-pressed'), 'true');
    await page.keyboard.press('Enter');
    assert.equal(await page.getAttribute('#legend [data-label="green"] button', 'aria-pressed'), 'false');

    // Download the label map.
    await tabTo(page, '#download-labels');
    const download = page.waitForEvent('download');
    await page.keyboard.press('Enter');
    assert.equal((await download).suggestedFilename(), 'labels.png');
    assert.equal(await focused(page), 'download-labels');
    assert.equal(await status(page), 'Done.');
    await page.screenshot({ path: `${ARTIFACTS}downloaded.png` });
    assert.deepEqual(await audit(page), [], 'after the download');

    // Removing the last chip leaves the focus on the chip before it.
    await tabTo(page, '#chips [data-label="blue"] [role=toolbar] *', { back: true });
    await page.keyboard.press('End');
    assert.equal(await focused(page), 'remove blue');
    await page.keyboard.press('Enter');
    assert.equal(await page.inputValue('#labels'), 'yellow, green, red');
    assert.equal(await focused(page), 'colour of red');
  });
});

test('keyboard only: arrow keys select the Point tab; Enter on the probe outlines an object', { timeout: 300_000 }, async () => {
  const path = '/?model=/tests/fixtures/semantic-colours/&sam=/tests/fixtures/sam-colours/';
  await withPage(server.url, { webgpu: false, context: CONTEXT, path, errors: 'console' }, async (page) => {
    // The words model and the scene by mouse (the walk above does them by keyboard).
    await waitStatus(page, /Load a model/);
    await page.click('#load');
    await waitStatus(page, /Model ready/);
    await dropSceneAndType(page);
    await page.evaluate(() => scrollTo(0, 0));
    await page.focus('#labels');
    await tabTo(page, '#tab-words', { back: true });
    const selected = () => page.evaluate(() => [...document.querySelectorAll('[role=tab]')].map((t) => `${t.id}:${t.getAttribute('aria-selected')}:${t.tabIndex}`));
    await page.keyboard.press('ArrowRight');
    assert.equal(await focused(page), 'tab-point');
    assert.deepEqual(await selected(), ['tab-words:false:-1', 'tab-point:true:0']);
    assert.equal(await page.isVisible('#point-panel'), true);
    await page.keyboard.press('ArrowRight'); // wraps round
    assert.deepEqual(await selected(), ['tab-words:true:0', 'tab-point:false:-1']);
    assert.equal(await page.isVisible('#point-panel'), false);
    await page.keyboard.press('End');
    assert.deepEqual(await selected(), ['tab-words:false:-1', 'tab-point:true:0']);
    await page.screenshot({ path: `${ARTIFACTS}point-tab.png` });
    assert.deepEqual(await audit(page), [], 'the Point tab chosen with the keyboard');

    // Load Segment Anything from the panel, then Enter on the probe over the image.
    await tabTo(page, '#sam-load');
    await page.keyboard.press('Enter');
    await waitStatus(page, /Segment Anything ready/);
    assert.equal(await focused(page), 'sam-load');
    await tabTo(page, '#view');
    const say = () => page.evaluate(() => document.getElementById('probe-say').textContent);
    assert.equal(await say(), 'nothing at 224, 168', 'no object yet');
    await page.keyboard.press('Enter');
    await waitStatus(page, /Outlined blue/);
    await page.keyboard.press('Shift+ArrowRight');
    assert.equal((await probeSays(page)).word, 'blue', 'the probe is on the new object');
    assert.equal(await page.evaluate(() => document.querySelectorAll('#legend li').length), 1, 'one object');
    assert.equal(await focused(page), 'view', 'the focus stays on the image');
    await page.screenshot({ path: `${ARTIFACTS}point-probe.png` });
    assert.deepEqual(await audit(page), [], 'an object outlined from the keyboard');
  });
});
