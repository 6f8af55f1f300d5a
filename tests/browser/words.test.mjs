// The words on the page: a sample's words replace the chips with the field (the visitor's own
// words kept one click away), the status says what is left to do, the stage a segmentation is
// in shows while it runs, and the label map downloads in colour beside its word numbers.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { mkdirSync } from 'node:fs';
import { after, before, test } from 'node:test';

import { audit } from './audit.mjs';
import { PALETTE } from '../../www/masks.js';
import { dropSceneAndSegment, dropSceneAndType, SCENE, SCENE_PROBES, startServer, withPage } from './harness.mjs';

const ARTIFACTS = new URL('./artifacts/words/', import.meta.url).pathname;
const PATH = '/?model=/tests/fixtures/semantic-colours/';

let server;
before(async () => { server = await startServer(); mkdirSync(ARTIFACTS, { recursive: true }); });
after(() => server.close());

async function loadModel(page) {
  await page.waitForFunction(() => /Load a model/.test(document.getElementById('status').textContent));
  await page.click('#load');
  await page.waitForFunction(() => /Model ready/.test(document.getElementById('status').textContent), null, { timeout: 60_000 });
}

const chips = (page) => page.$$eval('#chips .chip span', (s) => s.map((x) => x.textContent));
const waitForChips = (page, words) => page.waitForFunction((w) => JSON.stringify([...document.querySelectorAll('#chips .chip span')].map((s) => s.textContent)) === JSON.stringify(w), words);

test("a sample's words replace the chips too; the visitor's own words stay one click away", { timeout: 180_000 }, async () => {
  await withPage(server.url, { webgpu: false, path: PATH, errors: 'console' }, async (page) => {
    await loadModel(page);
    await page.fill('#labels', 'red, green, sky');
    await waitForChips(page, ['red', 'green', 'sky']);

    await page.click('text=Sample: coffee');
    await waitForChips(page, ['coffee cup', 'saucer', 'spoon', 'table']);
    assert.equal(await page.inputValue('#labels'), 'coffee cup, saucer, spoon, table');
    assert.match(await page.textContent('#words-back'), /Put back your words: red, green, sky/);
    assert.ok(await page.isVisible('#words-back'));
    await page.screenshot({ path: `${ARTIFACTS}sample-words.png`, fullPage: true });
    assert.deepEqual(await audit(page), [], 'a sample in place of typed words');

    // Segmenting names the sample's words, and the chips act on them.
    await page.waitForFunction(() => !document.getElementById('segment').disabled);
    await page.click('#segment');
    await page.waitForFunction(() => document.getElementById('status').textContent === 'Done.', null, { timeout: 120_000 });
    // (Words that got no pixel are folded in the legend: unfold them.)
    if (await page.isVisible('#legend-more')) await page.click('#legend-more');
    const legend = await page.$$eval('#legend li[data-label]', (items) => items.map((li) => li.dataset.label).sort());
    assert.deepEqual(legend, ['coffee cup', 'saucer', 'spoon', 'table']);
    assert.deepEqual(await chips(page), ['coffee cup', 'saucer', 'spoon', 'table']);
    assert.equal(await page.locator('[aria-label="hide red"]').count(), 0, 'no chip of the replaced words is left');
    await page.click('[aria-label="hide saucer"]');
    assert.equal(await page.getAttribute('[aria-label="show saucer"]', 'title'), 'show');

    // Another sample: what is offered back is still what the visitor typed.
    await page.click('text=Sample: rocket');
    await waitForChips(page, ['rocket', 'sky', 'tower', 'trees']);
    assert.match(await page.textContent('#words-back'), /red, green, sky/);
    await page.click('#words-back');
    await waitForChips(page, ['red', 'green', 'sky']);
    assert.equal(await page.inputValue('#labels'), 'red, green, sky');
    assert.ok(await page.isHidden('#words-back'));
    assert.equal(await page.evaluate(() => document.activeElement.id), 'labels', 'focus goes to the words field');
    assert.deepEqual(await audit(page), [], 'words put back');
  });
});

test('the status says what is left to do, and which stage a segmentation is in', { timeout: 240_000 }, async () => {
  await withPage(server.url, { webgpu: false, path: PATH, errors: 'console' }, async (page) => {
    // The first view brings a sample image and its words: loading the model leaves only Segment.
    await page.waitForFunction(() => document.getElementById('view').width > 1 && document.getElementById('labels').value);
    await loadModel(page);
    const ready = await page.textContent('#status');
    assert.match(ready, /^Model ready \(cpu\)\. Press Segment/);
    assert.doesNotMatch(ready, /Choose an image|type words/);

    // Many new words make the words stage last a few seconds.
    await dropSceneAndType(page);
    const words = [...Array.from({ length: 200 }, (_, i) => `thing ${i + 1}`), ...SCENE.labels];
    await page.fill('#labels', words.join(', '));
    await page.evaluate(() => {
      window.said = [];
      new MutationObserver((records) => {
        for (const r of records) for (const n of r.addedNodes) window.said.push(n.textContent);
      }).observe(document.getElementById('status'), { childList: true });
    });
    await page.waitForFunction(() => !document.getElementById('segment').disabled);
    await page.click('#segment');
    await page.waitForFunction(() => /Segmenting: 1 of 4/.test(document.getElementById('status').textContent), null, { timeout: 60_000 });
    await page.screenshot({ path: `${ARTIFACTS}stage-words.png` });
    assert.deepEqual(await audit(page), [], 'while segmenting');
    await page.waitForFunction(() => document.getElementById('status').textContent === 'Done.', null, { timeout: 120_000 });
    // The quick look's stages, then the quick look while the full settings refine it (progressive.js).
    const said = await page.evaluate(() => window.said);
    const steps = said.map((s) => s.replace(/^Segmenting: (\d) of 4.*/, 'stage $1').replace(/^Quick look \(.*\) — refining: .*…$/, 'quick look'));
    assert.deepEqual(steps, ['Segmenting…', 'stage 1', 'stage 2', 'stage 3', 'stage 4', 'quick look', 'Done.'], said.join(' / '));
    assert.match(said[1], /the words through the text encoder/);
    assert.match(said[2], /the image through the image encoder/);
  });
});

test('the label map downloads in colour beside its word numbers', { timeout: 180_000 }, async () => {
  await withPage(server.url, { webgpu: false, path: PATH, errors: 'console' }, async (page) => {
    await loadModel(page);
    await dropSceneAndSegment(page);
    assert.match(await page.textContent('#download-note'), /image viewer shows it nearly black/);
    const download = async (id) => {
      const [file] = await Promise.all([page.waitForEvent('download'), page.click(`#${id}`)]);
      return { name: file.suggestedFilename(), bytes: await readFile(await file.path()) };
    };
    const coloured = await download('download-colours');
    const numbers = await download('download-labels');
    assert.equal(coloured.name, 'labels-coloured.png');
    // Each file's pixels at the scene's probes, decoded as an image viewer would.
    const pixels = (png) => page.evaluate(async ([base64, probes]) => {
      const blob = await (await fetch(`data:image/png;base64,${base64}`)).blob();
      const bitmap = await createImageBitmap(blob, { premultiplyAlpha: 'none', colorSpaceConversion: 'none' });
      const ctx = new OffscreenCanvas(bitmap.width, bitmap.height).getContext('2d', { willReadFrequently: true });
      ctx.drawImage(bitmap, 0, 0);
      return { size: [bitmap.width, bitmap.height], at: probes.map(([x, y]) => Array.from(ctx.getImageData(x, y, 1, 1).data)) };
    }, [png.bytes.toString('base64'), SCENE_PROBES]);
    const inColour = await pixels(coloured);
    const asNumbers = await pixels(numbers);
    assert.deepEqual(inColour.size, [SCENE.width, SCENE.height]);
    SCENE_PROBES.forEach(([x, y, label], i) => {
      assert.deepEqual(inColour.at[i], [...PALETTE[label - 1], 255], `coloured PNG at (${x}, ${y}): label ${label}'s colour`);
      assert.deepEqual(asNumbers.at[i].slice(0, 3), [label, label, label], `label PNG at (${x}, ${y}): the word's number`);
    });
    await page.screenshot({ path: `${ARTIFACTS}downloads.png`, fullPage: true });
    assert.deepEqual(await audit(page), [], 'after segmenting, with the downloads');
  });
});
