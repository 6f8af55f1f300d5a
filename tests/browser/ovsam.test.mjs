// Open-Vocabulary SAM in real Chromium: the random-weight fixture tests/fixtures/ovsam-tiny
// (tools/ovsam_reference.py; its demo-exact outputs in reference.safetensors) loads in the
// worker; a click on its image gives the reference's mask and the reference's name, among the
// typed words and, with no words, among its own classifier's classes — on SwiftShader's WebGPU
// and on the CPU fallback, through the page's Point tab, and through <word-mask interactive>.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';

import { startServer, withPage, workerClient } from './harness.mjs';

const OVSAM = '/tests/fixtures/ovsam-tiny/';
const DIR = new URL('../fixtures/ovsam-tiny/', import.meta.url);
const SPEC = JSON.parse(readFileSync(new URL('reference.json', DIR)));
const CLICK = SPEC.cases.click;
const WORDS = SPEC.typed_labels.join(', ');

/** One uint8 tensor of a safetensors file. */
function tensor(file, name) {
  const bytes = readFileSync(file);
  const n = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString());
  const [start, end] = header[name].data_offsets;
  assert.equal(header[name].dtype, 'U8');
  return bytes.subarray(8 + n + start, 8 + n + end);
}
const WANT = tensor(new URL('reference.safetensors', DIR), 'click.mask');

function differing(mask) {
  let n = 0;
  for (let i = 0; i < WANT.length; i++) n += (mask[i] ? 1 : 0) !== WANT[i] ? 1 : 0;
  return n;
}

let server;
before(async () => { server = await startServer(); });
after(() => server.close());

// Runs in the page: the fixture's resized image (512x384, the demo's own resize) as RGBA.
async function resizedImage(url) {
  const bitmap = await createImageBitmap(await (await fetch(url)).blob());
  const g = new OffscreenCanvas(bitmap.width, bitmap.height).getContext('2d');
  g.drawImage(bitmap, 0, 0);
  return { rgba: new Uint8Array(g.getImageData(0, 0, bitmap.width, bitmap.height).data.buffer), width: bitmap.width, height: bitmap.height };
}

function clickAndName(webgpu) {
  return withPage(server.url, { webgpu }, async (page) => {
    await page.evaluate(workerClient);
    const device = await page.evaluate(() => ask({ type: 'init', backend: 'webgpu' }));
    const ready = await page.evaluate((url) => ask({ type: 'load', url }), OVSAM);
    assert.equal(ready.status, 'ready', JSON.stringify(ready));
    assert.equal(ready.names, true, 'the worker says the model names its masks');
    await page.evaluate(`window.resizedImage = ${resizedImage}`);
    await page.evaluate((url) => resizedImage(url).then((image) => client.encode(image)), `${OVSAM}resized.png`);
    const [x, y] = CLICK.points[0];
    const ask1 = (labels) => page.evaluate(async ([x, y, labels]) => {
      const r = await client.prompt({ prompt: { points: [{ x, y }] }, labels });
      return { ...r, mask: Array.from(r.mask) };
    }, [x, y, labels]);
    const typed = await ask1(WORDS);
    assert.equal(typed.width * typed.height, WANT.length);
    assert.ok(differing(typed.mask) <= 2, `${differing(typed.mask)} mask pixels differ from the demo's`);
    assert.equal(typed.label, CLICK.typed_top1.label);
    assert.ok(Math.abs(typed.probability - CLICK.typed_top1.score) < 1e-3, `${typed.probability} vs ${CLICK.typed_top1.score}`);
    assert.equal(typed.iou ?? null, null, 'Open-Vocabulary SAM predicts no IoU');
    assert.equal(typed.classIndex, CLICK.typed_top1.index);
    const released = await ask1('');
    assert.equal(released.label, CLICK.top1.name.replaceAll('_', ' '));
    assert.equal(released.classIndex, CLICK.top1.index);
    return device.backend;
  });
}

test('Open-Vocabulary SAM on WebGPU (SwiftShader): a click gives the demo\'s mask and name', { timeout: 300_000 }, async () => {
  assert.equal(await clickAndName(true), 'webgpu');
});

test('Open-Vocabulary SAM on the CPU fallback: a click gives the demo\'s mask and name', { timeout: 300_000 }, async () => {
  assert.equal(await clickAndName(false), 'cpu');
});

test('the page: an Open-Vocabulary SAM folder in the Point tab names the clicked object itself', { timeout: 300_000 }, async () => {
  await withPage(server.url, { webgpu: false, path: `/?sam=${OVSAM}`, errors: 'console' }, async (page) => {
    // As a person would: drop the photo, type the words, open the Point tab, load the model.
    await page.evaluate(async (url) => {
      const file = new File([await (await fetch(url)).blob()], 'resized.png', { type: 'image/png' });
      const data = new DataTransfer();
      data.items.add(file);
      document.getElementById('view').dispatchEvent(new DragEvent('drop', { dataTransfer: data, bubbles: true, cancelable: true }));
    }, `${OVSAM}resized.png`);
    await page.fill('#labels', WORDS);
    await page.click('#tab-point');
    await page.click('#sam-load');
    await page.waitForFunction(() => /Open-Vocabulary SAM .*ready/.test(document.getElementById('status').textContent), null, { timeout: 60_000 });
    const view = page.locator('#view');
    await view.scrollIntoViewIfNeeded();
    const box = await view.boundingBox();
    const [x, y] = CLICK.points[0];
    await view.click({ position: { x: box.width * ((x + 0.5) / 512), y: box.height * ((y + 0.5) / 384) } });
    await page.waitForFunction(() => /Outlined|Error/.test(document.getElementById('status').textContent), null, { timeout: 120_000 });
    const status = await page.textContent('#status');
    assert.ok(status.includes(`Outlined ${CLICK.typed_top1.label}`), status);
    const legend = await page.textContent('#legend');
    assert.match(legend, /1\. sky\/blue sky \d+ %/);
    assert.doesNotMatch(legend, /IoU/);
    // Name everything takes this model too, and says what it found.
    await page.click('#tab-words');
    assert.match(await page.textContent('#objects-note'), /Open-Vocabulary SAM redraws each word along the image's edges/);
    await page.click('#everything');
    await page.waitForFunction(() => /Named everything|Error/.test(document.getElementById('status').textContent), null, { timeout: 240_000 });
    assert.match(await page.textContent('#status'), /^Named everything: \d+ objects?/);
  });
});

test('Open-Vocabulary SAM, CPU fallback: Name everything names each object as a click on its grid point', { timeout: 300_000 }, async () => {
  await withPage(server.url, { webgpu: false }, async (page) => {
    await page.evaluate(workerClient);
    await page.evaluate(() => ask({ type: 'init', backend: 'cpu' }));
    const ready = await page.evaluate((url) => ask({ type: 'load', url }), OVSAM);
    assert.equal(ready.status, 'ready', JSON.stringify(ready));
    await page.evaluate(`window.resizedImage = ${resizedImage}`);
    // Every candidate kept (the random model's logits are small; it predicts no IoU to filter).
    const automatic = { pointsPerSide: 6, pointsPerBatch: 7, predIouThresh: 0.999, stabilityScoreThresh: 0, stabilityScoreOffset: 0.05, boxNmsThresh: 1 };
    const runs = await page.evaluate(async ([url, automatic, words]) => {
      const image = await resizedImage(url);
      const runs = [];
      for (const labels of ['', words]) {
        const r = await client.everything({ rgba: image.rgba.slice(), width: image.width, height: image.height, labels, automatic });
        const clicks = [];
        for (const o of r.objects) {
          const c = await client.prompt({ prompt: { points: [{ x: o.point[0], y: o.point[1] }] }, labels });
          clicks.push({ label: c.label ?? null, classIndex: c.classIndex ?? null });
        }
        runs.push({ labels, objects: r.objects, counts: r.counts, clicks });
      }
      return runs;
    }, [`${OVSAM}resized.png`, automatic, WORDS]);
    const classes = SPEC.class_names.map((n) => n.replaceAll('_', ' '));
    for (const { labels, objects, counts, clicks } of runs) {
      assert.equal(objects.length, 36, 'every candidate of the 6x6 grid');
      const named = objects.filter((o) => o.label);
      assert.ok(named.length >= 6, `${named.length} named objects: too few to show anything`);
      objects.forEach((o, i) => {
        assert.deepEqual({ label: o.label ?? null, classIndex: o.label ? o.class : null }, clicks[i], `object ${o.id} (words: "${labels}")`);
        if (o.label) assert.ok((labels ? SPEC.typed_labels : classes).includes(o.label), o.label);
      });
      assert.equal(counts.reduce((n, c) => n + c.count, 0), named.length, JSON.stringify(counts));
    }
  });
});

test('<word-mask interactive sam=…ovsam>: prompt() outlines and names with no words model', { timeout: 300_000 }, async () => {
  await withPage(server.url, { webgpu: false, path: '/embed.html' }, async (page) => {
    const [x, y] = CLICK.points[0];
    const detail = await page.evaluate(async ([sam, src, labels, x, y]) => {
      const el = document.createElement('word-mask');
      const ready = new Promise((resolve, reject) => {
        el.addEventListener('ready', resolve, { once: true });
        el.addEventListener('error', (e) => reject(new Error(e.detail?.message ?? 'error')), { once: true });
      });
      for (const [k, v] of [['interactive', ''], ['labels', labels], ['src', src], ['sam', sam]]) el.setAttribute(k, v);
      document.body.append(el);
      await ready;
      for (let i = 0; i < 100 && !el.image; i++) await new Promise((r) => setTimeout(r, 100)); // the image loads
      const r = await el.prompt({ points: [{ x, y }] });
      return { ...r, mask: Array.from(r.mask) };
    }, [OVSAM, `${OVSAM}resized.png`, WORDS, x, y]);
    assert.equal(detail.label, CLICK.typed_top1.label);
    assert.ok(differing(detail.mask) <= 2, `${differing(detail.mask)} mask pixels differ from the demo's`);
  });
});
