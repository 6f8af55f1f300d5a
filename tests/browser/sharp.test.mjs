// Sharp edges in Chromium, with models of known behaviour on a scene whose edges lie off every
// patch grid (tests/fixtures/images/round_scene.png: two red discs, a green band at 30°, a thin
// yellow arc on a blue ground): the colour words model (semantic-colours, whose map is as coarse
// as its 16-pixel patches) and the colour SAM that outlines a colour at pixel precision
// (sam-colours-fine), as tests/native/sharp_edges.rs runs them natively. Through the page's
// worker on the CPU fallback and on SwiftShader's WebGPU: mIoU and boundary F-score (3 pixels)
// with and without sharp edges, printed and held to the refined map following the scene, and
// each word's objects counted as the scene has them. Then the page as a person uses it (the
// switch, the objects list, hover and isolate, downloads, what it says without a Segment
// Anything model) and <word-mask sam=…>.
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { after, before, test } from 'node:test';

import { audit } from './audit.mjs';
import { SCENE, paintScene, startServer, withPage, workerClient } from './harness.mjs';

const ARTIFACTS = new URL('./artifacts/sharp/', import.meta.url).pathname;
const WORDS = '/tests/fixtures/semantic-colours/';
const SAM = '/tests/fixtures/sam-colours-fine/';
const IMAGE = '/tests/fixtures/images/round_scene.png';
const ROUND = JSON.parse(readFileSync(new URL('../fixtures/images/round_scene.json', import.meta.url)));
const LABELS = ROUND.labels.join(', ');
// As the native test: every pixel gets a word (the scene has no unlabelled part).
const OPTIONS = { threshold: 0, background: 'none' };
// Each word's number of objects in the scene.
const OBJECTS = Object.fromEntries(ROUND.regions.map((r) => [r.word, r.objects]));
// The refined map must follow the scene: boundary F at least this, and this much above the
// words' own map (the issue's "clearly better").
const SHARP_F = 0.9;
const GAIN_F = 0.2;

let server;
before(async () => { server = await startServer(); mkdirSync(ARTIFACTS, { recursive: true }); });
after(() => server.close());

// Runs in the page: the round scene's pixels, and the label (1-based, in `labels`' order) each
// shows, by its colour.
async function roundScene([url, regions, labels]) {
  const bitmap = await createImageBitmap(await (await fetch(url)).blob());
  const ctx = new OffscreenCanvas(bitmap.width, bitmap.height).getContext('2d');
  ctx.drawImage(bitmap, 0, 0);
  const rgba = new Uint8Array(ctx.getImageData(0, 0, bitmap.width, bitmap.height).data.buffer);
  const truth = [];
  for (let i = 0; i < rgba.length; i += 4) {
    const region = regions.find(({ rgb }) => rgb.every((v, k) => v === rgba[i + k]));
    truth.push(region ? labels.indexOf(region.word) + 1 : 0);
  }
  return { width: bitmap.width, height: bitmap.height, truth };
}

function miou(ours, truth, classes) {
  let sum = 0;
  for (let c = 1; c <= classes; c++) {
    let inter = 0;
    let union = 0;
    for (let i = 0; i < truth.length; i++) {
      inter += ours[i] === c && truth[i] === c ? 1 : 0;
      union += ours[i] === c || truth[i] === c ? 1 : 0;
    }
    sum += inter / Math.max(1, union);
  }
  return sum / classes;
}

// Pixels with a 4-neighbour of another label.
function boundary(map, w, h) {
  return Array.from(map, (v, i) => {
    const x = i % w;
    return (x + 1 < w && map[i + 1] !== v) || (i + w < w * h && map[i + w] !== v) || (x > 0 && map[i - 1] !== v) || (i >= w && map[i - w] !== v);
  });
}

// Boundary F-score: a boundary pixel of one map counts when the other has one within `tolerance`
// pixels (a disc), as tests/native/sharp_edges.rs measures it.
function boundaryF(ours, truth, w, h, tolerance = 3) {
  const [a, b] = [boundary(ours, w, h), boundary(truth, w, h)];
  const near = (from, to) => {
    let hits = 0;
    let all = 0;
    for (let i = 0; i < from.length; i++) {
      if (!from[i]) continue;
      all++;
      const [x, y] = [i % w, Math.floor(i / w)];
      search: for (let dy = -tolerance; dy <= tolerance; dy++) {
        for (let dx = -tolerance; dx <= tolerance; dx++) {
          const [nx, ny] = [x + dx, y + dy];
          if (dx * dx + dy * dy <= tolerance * tolerance && nx >= 0 && ny >= 0 && nx < w && ny < h && to[ny * w + nx]) { hits++; break search; }
        }
      }
    }
    return hits / Math.max(1, all);
  };
  const [precision, recall] = [near(a, b), near(b, a)];
  return precision + recall === 0 ? 0 : (2 * precision * recall) / (precision + recall);
}

/** mIoU and boundary F of `map` against the scene. */
function score(map, scene) {
  return { miou: miou(map, scene.truth, ROUND.labels.length), f: boundaryF(map, scene.truth, scene.width, scene.height) };
}

/** `{word: count}` from a result's counts. */
const countsOf = (counts) => Object.fromEntries(counts.map(({ label, count }) => [label, count]));

function sharpInWorker(webgpu, backend) {
  return withPage(server.url, { webgpu }, async (page) => {
    await page.evaluate(workerClient);
    const device = await page.evaluate((b) => ask({ type: 'init', backend: b }), backend);
    const scene = await page.evaluate(roundScene, [IMAGE, ROUND.regions, ROUND.labels]);
    assert.equal(scene.truth.filter((v) => v === 0).length, 0, 'every pixel of the scene is one of its colours');
    await page.evaluate(async (image) => { window.scene = await createImageBitmap(await (await fetch(image)).blob()); }, IMAGE);
    // A request as the client takes it, on the scene's pixels.
    const run = (request) => page.evaluate(async (request) => {
      const { width, height } = scene;
      const ctx = new OffscreenCanvas(width, height).getContext('2d');
      ctx.drawImage(scene, 0, 0);
      const rgba = new Uint8Array(ctx.getImageData(0, 0, width, height).data.buffer);
      try {
        const r = await client[request.call]({ rgba, width, height, ...request });
        return { ...r, labelMap: r.labelMap && Array.from(r.labelMap), instances: r.instances && Array.from(r.instances), confidence: undefined };
      } catch (e) {
        return { error: e.message };
      }
    }, request);

    assert.equal((await page.evaluate((url) => ask({ type: 'load', url }), WORDS)).status, 'ready');
    // Without a Segment Anything model both are refused, saying what to load.
    const refused = await run({ call: 'segment', labels: LABELS, options: OPTIONS, sharp: true });
    assert.match(refused.error ?? '', /sharp edges need a Segment Anything model.*load one/i, JSON.stringify(refused).slice(0, 200));
    const nothing = await run({ call: 'everything', labels: LABELS, options: OPTIONS });
    assert.match(nothing.error ?? '', /naming everything needs a Segment Anything model.*load one/i, JSON.stringify(nothing).slice(0, 200));

    assert.equal((await page.evaluate((url) => ask({ type: 'load', url }), SAM)).status, 'ready');
    // Point mode's image, encoded before the sharp segmentation below encodes the round scene.
    await page.evaluate(`window.paintScene = ${paintScene}`);
    await page.evaluate((scene) => { window.square = paintScene(scene); return client.encode(window.square); }, SCENE);
    const requests = [];
    page.on('request', (r) => requests.push(r.url()));
    const plain = await run({ call: 'segment', labels: LABELS, options: OPTIONS });
    const sharp = await run({ call: 'segment', labels: LABELS, options: OPTIONS, sharp: true });
    assert.ok(!sharp.error, sharp.error);
    assert.equal(plain.objects, undefined, 'no objects without sharp edges');
    const [without, withSharp] = [score(plain.labelMap, scene), score(sharp.labelMap, scene)];
    const counts = countsOf(sharp.counts);
    console.log(`sharp edges, Chromium ${device.backend}: mIoU ${without.miou.toFixed(3)} -> ${withSharp.miou.toFixed(3)}, `
      + `boundary F (3 px) ${without.f.toFixed(3)} -> ${withSharp.f.toFixed(3)}, objects ${JSON.stringify(counts)}, `
      + `encoding ${Math.round(sharp.encodeMs)} ms, masks ${Math.round(sharp.masksMs)} ms`);
    assert.ok(withSharp.f >= SHARP_F && withSharp.f > without.f + GAIN_F, `boundary F ${without.f.toFixed(3)} -> ${withSharp.f.toFixed(3)}`);
    assert.ok(withSharp.miou > without.miou, `mIoU ${without.miou.toFixed(3)} -> ${withSharp.miou.toFixed(3)}`);
    assert.deepEqual(counts, OBJECTS, 'each word has as many objects as the scene');
    assert.deepEqual(sharp.counts.map((c) => c.label), ROUND.labels, 'counts in the words\' order');
    // The instance map holds each object's pixels, and each object's pixels carry its word.
    for (const o of sharp.objects) {
      const pixels = sharp.instances.flatMap((id, i) => (id === o.id ? [i] : []));
      assert.equal(pixels.length, o.area, `object ${o.id}'s area`);
      assert.equal(o.label, ROUND.labels[o.class]);
      assert.ok(pixels.every((i) => sharp.labelMap[i] === o.class + 1), `object ${o.id} (${o.label}) lies on its word`);
      const xs = pixels.map((i) => i % scene.width);
      const ys = pixels.map((i) => Math.floor(i / scene.width));
      assert.deepEqual(o.box, [Math.min(...xs), Math.min(...ys), Math.max(...xs), Math.max(...ys)], `object ${o.id}'s box`);
    }
    // A click on Point mode's image afterwards outlines that image's region, not the round
    // scene's: the client knows the prompt model's image changed and encodes it again.
    const red = SCENE.regions.find((r) => r.word === 'red');
    const clicked = await page.evaluate(async (probe) => {
      const r = await client.prompt({ image: square, prompt: { points: [{ x: probe[0], y: probe[1] }] } });
      return Array.from(r.mask);
    }, red.probe);
    const inRed = (i) => { const [x, y] = [i % SCENE.width, Math.floor(i / SCENE.width)]; return x >= red.x[0] && x < red.x[1] && y >= red.y[0] && y < red.y[1]; };
    const wrong = clicked.filter((v, i) => Boolean(v) !== inRed(i)).length;
    assert.equal(wrong, 0, `the click outlines the square scene's red region (${wrong} pixels differ)`);
    assert.deepEqual(requests, [], 'no network request after the models are loaded');
    return device.backend;
  });
}

test('sharp edges on the CPU fallback: edges follow the round scene, objects counted', { timeout: 300_000 }, async () => {
  assert.equal(await sharpInWorker(false, 'cpu'), 'cpu');
});

// SwiftShader runs WebGPU's shaders on the CPU: Segment Anything's masks at 448 pixels take minutes.
test('sharp edges on WebGPU (SwiftShader): edges follow the round scene, objects counted', { timeout: 600_000 }, async () => {
  assert.equal(await sharpInWorker(true, 'webgpu'), 'webgpu');
});

// Runs in the page: of the pixels of the page's canvas, the share that shows its scene colour
// blended with its word's mask colour (opacity 0.6, www/masks.js), word by the scene's truth.
function shownAsTheScene([truth, palette]) {
  const view = document.getElementById('view');
  const { data } = view.getContext('2d').getImageData(0, 0, view.width, view.height);
  const scene = window.sceneRgba;
  let right = 0;
  for (let i = 0; i < truth.length; i++) {
    const c = palette[truth[i] - 1];
    if ([0, 1, 2].every((k) => data[i * 4 + k] === Math.round(scene[i * 4 + k] * 0.4 + c[k] * 0.6))) right++;
  }
  return right / truth.length;
}

// Runs in the page: how many pixels of the page's canvas are pure black (the hovered object's
// outline; the scene has none).
function blackPixels() {
  const view = document.getElementById('view');
  const { data } = view.getContext('2d').getImageData(0, 0, view.width, view.height);
  let n = 0;
  for (let i = 0; i < data.length; i += 4) if (data[i] === 0 && data[i + 1] === 0 && data[i + 2] === 0) n++;
  return n;
}

const statusIs = (page, pattern, timeout = 120_000) => page.waitForFunction((p) => new RegExp(p).test(document.getElementById('status').textContent), pattern.source, { timeout });
const pixel = (page, [x, y]) => page.evaluate(([x, y]) => Array.from(document.getElementById('view').getContext('2d').getImageData(x, y, 1, 1).data.slice(0, 3)), [x, y]);

test('the page: the Sharp edges switch, the objects list (hover, isolate by keyboard), downloads, remembered', { timeout: 300_000 }, async () => {
  const context = { viewport: { width: 1440, height: 900 }, deviceScaleFactor: 1, acceptDownloads: true };
  await withPage(server.url, { webgpu: false, context, path: `/?model=${WORDS}&sam=${SAM}`, errors: 'console' }, async (page) => {
    const { PALETTE } = await import('../../www/palette.js');
    await statusIs(page, /Load a model/);
    await page.click('#load');
    await statusIs(page, /Model ready/, 60_000);
    await page.setInputFiles('#image', new URL(`../..${IMAGE}`, import.meta.url).pathname);
    await page.waitForFunction(() => document.getElementById('view').width === 448);
    const scene = await page.evaluate(roundScene, [IMAGE, ROUND.regions, ROUND.labels]);
    await page.evaluate(async (image) => {
      const bitmap = await createImageBitmap(await (await fetch(image)).blob());
      const ctx = new OffscreenCanvas(bitmap.width, bitmap.height).getContext('2d');
      ctx.drawImage(bitmap, 0, 0);
      window.sceneRgba = ctx.getImageData(0, 0, bitmap.width, bitmap.height).data;
    }, IMAGE);
    await page.fill('#labels', LABELS);
    await page.click('summary:has-text("Advanced")');
    await page.selectOption('#templates', 'single');
    await page.fill('#background', 'none');
    await page.$eval('#threshold', (t) => { t.value = '0'; t.dispatchEvent(new Event('input')); });

    // No Segment Anything model yet: no switch, a way to get one, and Name everything says what to do.
    assert.equal(await page.isVisible('#sharp-row'), false);
    assert.equal(await page.isVisible('#objects-get'), true);
    assert.match(await page.textContent('#objects-note'), /need a Segment Anything model/);
    await page.click('#everything');
    assert.match(await page.textContent('#status'), /^Error: Name everything needs a Segment Anything model: under Point, choose one .* press Load/);
    await page.click('#segment');
    await statusIs(page, /^Done\.$/);
    assert.equal(await page.isVisible('#objects-box'), false, 'no objects without sharp edges');
    const coarse = await page.evaluate(shownAsTheScene, [scene.truth, PALETTE]);
    await page.screenshot({ path: `${ARTIFACTS}page-without.png`, fullPage: true });
    const withoutPicture = await page.evaluate(() => document.getElementById('view').toDataURL());
    assert.deepEqual(await audit(page), [], 'Words mode without a Segment Anything model');

    // "Load one under Point" leads to the picker; once loaded, the switch shows, on.
    await page.click('#objects-get');
    assert.equal(await page.getAttribute('#tab-point', 'aria-selected'), 'true');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'sam-pick');
    await page.click('#sam-load');
    await statusIs(page, /Segment Anything ready/, 60_000);
    await page.click('#tab-words');
    assert.equal(await page.isVisible('#sharp-row'), true);
    assert.equal(await page.isChecked('#sharp'), true, 'sharp edges are on at first');
    const requests = [];
    page.on('request', (r) => { if (!r.url().startsWith('blob:') && !r.url().startsWith('data:')) requests.push(r.url()); });
    await page.click('#segment');
    await statusIs(page, /^Done\.$/);
    assert.match(await page.textContent('#timings'), /sharp edges \d+ ms/);
    const sharp = await page.evaluate(shownAsTheScene, [scene.truth, PALETTE]);
    console.log(`the page (CPU): pixels shown in their scene word's colour ${coarse.toFixed(3)} without sharp edges, ${sharp.toFixed(3)} with`);
    // Without, the patch-sized blobs miss the disc's rims and most of the thin arc.
    assert.ok(sharp >= 0.99 && 1 - sharp <= (1 - coarse) / 10, `pixels shown as the scene: ${coarse.toFixed(3)} -> ${sharp.toFixed(3)}`);
    const counts = await page.textContent('#objects-counts');
    assert.match(counts, /^5 objects: yellow ×1, green ×1, red ×2, blue ×1$/);
    const entries = await page.$$eval('#objects button.legend-entry', (bs) => bs.map((b) => b.textContent));
    assert.equal(entries.length, 5);
    assert.equal(entries.filter((t) => /^red \d/.test(t)).length, 2, entries.join(' | '));
    await page.screenshot({ path: `${ARTIFACTS}page-with.png`, fullPage: true });
    const withPicture = await page.evaluate(() => document.getElementById('view').toDataURL());
    assert.deepEqual(await audit(page), [], 'Words mode with sharp edges and objects');

    // Hovering an entry outlines its object; leaving it takes the outline away.
    assert.equal(await page.evaluate(blackPixels), 0);
    await page.hover('#objects button:has-text("red 1")');
    assert.ok(await page.evaluate(blackPixels) > 100, 'the hovered object is outlined');
    await page.mouse.move(1, 1);
    assert.equal(await page.evaluate(blackPixels), 0);

    // From the keyboard: Tab reaches the entries; Enter shows the object alone, again shows all.
    const [disc1, disc2] = ROUND.shapes.filter((s) => s.word === 'red').map((s) => s.centre);
    await page.focus('#objects button:has-text("red 1")');
    await page.keyboard.press('Tab');
    assert.match(await page.evaluate(() => document.activeElement.textContent), /^red 2/);
    assert.ok(await page.evaluate(blackPixels) > 100, 'the focused object is outlined');
    await page.keyboard.press('Enter');
    assert.equal(await page.getAttribute('#objects button:has-text("red 2")', 'aria-pressed'), 'true');
    assert.match(await page.evaluate(() => document.activeElement.textContent), /^red 2/, 'the focus stays on the entry');
    assert.deepEqual(await pixel(page, disc1), [255, 0, 0], 'the other red disc is not painted');
    assert.notDeepEqual(await pixel(page, disc2), [255, 0, 0], 'the isolated disc is painted');
    assert.deepEqual(await pixel(page, ROUND.regions.find((r) => r.word === 'blue').probe), [0, 0, 255], 'the ground is not painted');
    assert.deepEqual(await audit(page), [], 'one object isolated');
    await page.keyboard.press('Enter');
    assert.equal(await page.getAttribute('#objects button:has-text("red 2")', 'aria-pressed'), 'false');
    assert.notDeepEqual(await pixel(page, disc1), [255, 0, 0], 'every object shows again');

    // Downloads: the JSON lists the objects and counts; the object PNG is 16-bit, ids per pixel.
    const take = async (button) => {
      const [download] = await Promise.all([page.waitForEvent('download'), page.click(button)]);
      return readFileSync(await download.path());
    };
    const json = JSON.parse(await take('#download-json'));
    assert.equal(json.objects.length, 5);
    assert.deepEqual(countsOf(json.counts), OBJECTS);
    const png = await take('#download-objects');
    assert.equal(png.readUInt32BE(16), 448, 'width');
    assert.equal(png.readUInt32BE(20), 336, 'height');
    assert.equal(png[24], 16, 'bit depth');
    assert.deepEqual(requests, [], 'no network request after the models are loaded');

    // The side by side picture: without | with sharp edges.
    const picture = await page.evaluate(async ([a, b]) => {
      const [left, right] = await Promise.all([a, b].map(async (url) => createImageBitmap(await (await fetch(url)).blob())));
      const gap = 8;
      const canvas = new OffscreenCanvas(left.width + gap + right.width, left.height);
      const ctx = canvas.getContext('2d');
      ctx.fillStyle = '#fff';
      ctx.fillRect(0, 0, canvas.width, canvas.height);
      ctx.drawImage(left, 0, 0);
      ctx.drawImage(right, left.width + gap, 0);
      const bytes = new Uint8Array(await (await canvas.convertToBlob({ type: 'image/png' })).arrayBuffer());
      return Array.from(bytes);
    }, [withoutPicture, withPicture]);
    writeFileSync(`${ARTIFACTS}sharp-edges.png`, Buffer.from(picture));
    // The README's picture is rewritten only when asked (its bytes depend on Chromium's encoder).
    if (process.env.WORDMASK_DOCS_IMAGES) writeFileSync(new URL('../../docs/images/sharp-edges.png', import.meta.url), Buffer.from(picture));

    // Turned off, the same image is segmented again without; the choice outlasts a reload.
    await page.click('#sharp');
    await statusIs(page, /^Done\.$/);
    assert.equal(await page.isVisible('#objects-box'), false);
    assert.equal(await page.isVisible('#download-objects'), false);
    await page.reload();
    await statusIs(page, /Load a model/);
    await page.click('#tab-point');
    await page.click('#sam-load');
    await statusIs(page, /Segment Anything ready/, 60_000);
    await page.click('#tab-words');
    assert.equal(await page.isVisible('#sharp-row'), true);
    assert.equal(await page.isChecked('#sharp'), false, 'sharp edges stay off after a reload');
  });
});

test('<word-mask sam=…>: sharp edges on, the result event carries objects and counts', { timeout: 300_000 }, async () => {
  await withPage(server.url, { webgpu: false, path: '/embed.html?model=/tests/fixtures/semantic-colours/&src=/tests/fixtures/images/round_scene.png' }, async (page) => {
    const scene = await page.evaluate(roundScene, [IMAGE, ROUND.regions, ROUND.labels]);
    const detail = await page.evaluate(async ([words, sam, image, labels]) => {
      await import('/word-mask.js');
      const el = document.createElement('word-mask');
      for (const [k, v] of [['sam', sam], ['labels', labels], ['templates', 'single'], ['threshold', '0'], ['background', 'none'], ['src', image]]) el.setAttribute(k, v);
      const result = new Promise((resolve) => el.addEventListener('result', (e) => resolve(e.detail), { once: true }));
      el.addEventListener('error', (e) => console.error(e.detail.message));
      el.id = 'sharp';
      document.querySelector('main').append(el);
      el.setAttribute('model', words);
      const d = await result;
      return { ...d, labelMap: Array.from(d.labelMap), instances: Array.from(d.instances), legend: el.shadowRoot.querySelector('[part=legend]').textContent };
    }, [WORDS, SAM, IMAGE, LABELS]);
    const { miou: m, f } = score(detail.labelMap, scene);
    console.log(`<word-mask sam> (CPU): mIoU ${m.toFixed(3)}, boundary F (3 px) ${f.toFixed(3)}, objects ${JSON.stringify(countsOf(detail.counts))}`);
    assert.ok(f >= SHARP_F, `boundary F ${f.toFixed(3)}`);
    assert.deepEqual(countsOf(detail.counts), OBJECTS);
    assert.equal(detail.objects.length, 5);
    for (const key of ['id', 'label', 'class', 'score', 'box', 'area']) assert.ok(key in detail.objects[0], `objects have ${key}`);
    assert.equal(detail.instances.length, 448 * 336);
    assert.match(detail.legend, /red [\d.]+ % ×2/, 'the legend counts each word\'s objects');
    assert.deepEqual(await audit(page), [], 'embed.html with a sharp <word-mask>');
  });
});
