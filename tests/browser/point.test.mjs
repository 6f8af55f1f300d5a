// The Point mode in real Chromium: Segment Anything (tests/fixtures/sam-colours, built by
// tools/build_colour_sam.py to return every pixel of the colour under a click) outlines each
// region of the colour scene, and the colour CLIP (semantic-colours) names it — through the
// worker on SwiftShader's WebGPU and on the CPU fallback, in the page as a person clicks, and
// through <word-mask interactive>.
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { after, before, test } from 'node:test';

import { SCENE, dropSceneAndType, paintScene, startServer, withPage, workerClient } from './harness.mjs';

const ARTIFACTS = new URL('./artifacts/', import.meta.url).pathname;
const WORDS = '/tests/fixtures/semantic-colours/';
const SAM = '/tests/fixtures/sam-colours/';
const LABELS = SCENE.labels.join(', ');

let server;
before(async () => { server = await startServer(); mkdirSync(ARTIFACTS, { recursive: true }); });
after(() => server.close());

/** Which pixels of the scene show `word` (later regions on top). */
function painted(word) {
  const { width, height, regions } = SCENE;
  const out = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const top = regions.findLast((r) => x >= r.x[0] && x < r.x[1] && y >= r.y[0] && y < r.y[1]);
      out[y * width + x] = top.word === word ? 1 : 0;
    }
  }
  return out;
}

function iou(mask, truth) {
  let inter = 0;
  let union = 0;
  for (let i = 0; i < truth.length; i++) {
    inter += mask[i] && truth[i] ? 1 : 0;
    union += mask[i] || truth[i] ? 1 : 0;
  }
  return inter / union;
}

function clickEveryRegion(webgpu) {
  return withPage(server.url, { webgpu }, async (page) => {
    await page.evaluate(workerClient);
    const device = await page.evaluate(() => ask({ type: 'init', backend: 'webgpu' }));
    for (const url of [WORDS, SAM]) {
      const ready = await page.evaluate((url) => ask({ type: 'load', url }), url);
      assert.equal(ready.status, 'ready', JSON.stringify(ready));
    }
    await page.evaluate(`window.paintScene = ${paintScene}`);
    await page.evaluate((scene) => client.encode(paintScene(scene)), SCENE);
    for (const { word, probe } of SCENE.regions) {
      const result = await page.evaluate(async ([x, y, labels]) => {
        const r = await client.prompt({ prompt: { points: [{ x, y }] }, labels });
        return { ...r, mask: Array.from(r.mask) };
      }, [probe[0], probe[1], LABELS]);
      const overlap = iou(result.mask, painted(word));
      assert.ok(overlap >= 0.9, `click in ${word} at ${probe}: IoU ${overlap.toFixed(3)} with the region`);
      assert.equal(result.label, word, `the mask at ${probe} is named ${result.label}`);
    }
    // A box around the yellow square gives the square.
    const yellow = SCENE.regions.find((r) => r.word === 'yellow');
    const boxed = await page.evaluate(async ([box, labels]) => {
      const r = await client.prompt({ prompt: { box }, labels });
      return { ...r, mask: Array.from(r.mask) };
    }, [[yellow.x[0], yellow.y[0], yellow.x[1], yellow.y[1]], LABELS]);
    assert.ok(iou(boxed.mask, painted('yellow')) >= 0.9, 'box around the yellow square');
    // Bad prompts are refused with the reason.
    const outside = await page.evaluate(() => client.prompt({ prompt: { points: [{ x: 900, y: 10 }] } }).catch((e) => e.message));
    assert.match(outside, /lies outside the 448x336 image/);
    const empty = await page.evaluate(() => client.prompt({ prompt: {} }).catch((e) => e.message));
    assert.match(empty, /the prompt is empty/);
    return device.backend;
  });
}

test('Point mode on WebGPU (SwiftShader): each click outlines and names its region', { timeout: 300_000 }, async () => {
  assert.equal(await clickEveryRegion(true), 'webgpu');
});

test('Point mode on the CPU fallback: each click outlines and names its region', { timeout: 300_000 }, async () => {
  assert.equal(await clickEveryRegion(false), 'cpu');
});

test('the page: Point tab, a click outlines the red region with its word, undo removes it', { timeout: 300_000 }, async () => {
  await withPage(server.url, { webgpu: false, path: `/?model=${WORDS}&sam=${SAM}`, errors: 'console' }, async (page) => {
    await page.waitForFunction(() => /Load a model/.test(document.getElementById('status').textContent));
    await page.click('#load');
    await page.waitForFunction(() => /Model ready/.test(document.getElementById('status').textContent), null, { timeout: 60_000 });
    await dropSceneAndType(page);
    await page.click('#tab-point');
    await page.click('#sam-load');
    await page.waitForFunction(() => /Segment Anything ready/.test(document.getElementById('status').textContent), null, { timeout: 60_000 });
    const view = page.locator('#view');
    await view.scrollIntoViewIfNeeded();
    const box = await view.boundingBox();
    const red = SCENE.regions.find((r) => r.word === 'red');
    await view.click({ position: { x: box.width * (red.probe[0] / SCENE.width), y: box.height * (red.probe[1] / SCENE.height) } });
    await page.waitForFunction(() => /Outlined|Error/.test(document.getElementById('status').textContent), null, { timeout: 120_000 });
    assert.match(await page.textContent('#status'), /Outlined red/);
    assert.match(await page.textContent('#legend'), /1\. red \d+ %/);
    await page.screenshot({ path: `${ARTIFACTS}point.png`, fullPage: true });
    // The red region is painted (red blended with the red word's colour); the blue one is not.
    const pixel = (x, y) => page.evaluate(([x, y]) => Array.from(document.getElementById('view').getContext('2d').getImageData(x, y, 1, 1).data.slice(0, 3)), [x, y]);
    assert.notDeepEqual(await pixel(...red.probe), [255, 0, 0], 'the red region carries a mask');
    const blue = SCENE.regions.find((r) => r.word === 'blue');
    assert.deepEqual(await pixel(...blue.probe), [0, 0, 255], 'the blue region is left as it is');
    await page.click('#point-undo');
    assert.equal((await page.textContent('#legend')).trim(), '');
    assert.deepEqual(await pixel(...red.probe), [255, 0, 0]);
  });
});

test('<word-mask interactive>: prompt() outlines and names the region', { timeout: 300_000 }, async () => {
  await withPage(server.url, { webgpu: false, path: `/embed.html?model=${WORDS}&src=/tests/fixtures/images/shapes_50x90.png` }, async (page) => {
    await page.evaluate(`window.paintScene = ${paintScene}`);
    const detail = await page.evaluate(async ([scene, words, sam, labels]) => {
      const { rgba, width, height } = paintScene(scene);
      const canvas = new OffscreenCanvas(width, height);
      canvas.getContext('2d').putImageData(new ImageData(new Uint8ClampedArray(rgba.buffer), width, height), 0, 0);
      const src = URL.createObjectURL(await canvas.convertToBlob({ type: 'image/png' }));
      const el = document.createElement('word-mask');
      for (const [k, v] of [['interactive', ''], ['sam', sam], ['labels', labels], ['templates', 'single'], ['src', src]]) el.setAttribute(k, v);
      document.body.append(el);
      const ready = new Promise((resolve) => el.addEventListener('ready', resolve, { once: true }));
      el.setAttribute('model', words);
      await ready;
      const green = scene.regions.find((r) => r.word === 'green');
      for (let i = 0; i < 100 && !el.image; i++) await new Promise((r) => setTimeout(r, 100)); // the image loads
      const r = await el.prompt({ points: [{ x: green.probe[0], y: green.probe[1] }] });
      return { ...r, mask: Array.from(r.mask) };
    }, [SCENE, WORDS, SAM, LABELS]);
    assert.equal(detail.label, 'green');
    assert.ok(iou(detail.mask, painted('green')) >= 0.9, 'the green region');
  });
});
