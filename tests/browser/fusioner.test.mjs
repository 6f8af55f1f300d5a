// A Fusioner head trained with `wordmask train fusioner` (tests/fixtures/semantic-colours-fusioner:
// the colour CLIP frozen, the head trained on tests/fixtures/colour-segmentation's train split;
// and semantic-colours-fusioner-bert: the same with the hand-set colour BERT for the words, its
// tokenizer's vocabulary in the checkpoint's config) segments that dataset's held-out images in
// the page's worker, on the CPU fallback and on WebGPU, as well as it does natively; and the page
// names the engine and takes its options.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';

import { startServer, withPage, workerClient } from './harness.mjs';

const MODEL = '/tests/fixtures/semantic-colours-fusioner';
const BERT_MODEL = '/tests/fixtures/semantic-colours-fusioner-bert';
const DATA = '/tests/fixtures/colour-segmentation';
const CLASSES = readFileSync(new URL(`..${DATA.slice(6)}/classes.txt`, import.meta.url), 'utf8').trim().split('\n');
const IMAGES = readFileSync(new URL(`..${DATA.slice(6)}/val.txt`, import.meta.url), 'utf8').trim().split('\n').slice(0, 3);

let server;
before(async () => { server = await startServer(); });
after(() => server.close());

// Confusion-matrix mIoU of predicted class indices (-1: unlabelled, counted as wrong) against the
// ground truth (255 ignored).
function miou(pairs, classes) {
  const m = Array.from({ length: classes }, () => new Array(classes + 1).fill(0));
  for (const [pred, gt] of pairs) {
    for (let i = 0; i < gt.length; i++) if (gt[i] !== 255) m[gt[i]][pred[i] >= 0 && pred[i] < classes ? pred[i] : classes] += 1;
  }
  const ious = m.map((row, c) => {
    const tp = row[c];
    const union = row.reduce((a, b) => a + b, 0) + m.reduce((a, r) => a + r[c], 0) - tp;
    return union ? tp / union : null;
  }).filter((v) => v !== null);
  return ious.reduce((a, b) => a + b, 0) / ious.length;
}

// (model, what its words come from, the least mIoU: the BERT head reaches 0.88 natively)
const HEADS = [[MODEL, 'CLIP', 0.85], [BERT_MODEL, 'BERT', 0.8]];
for (const webgpu of [false, true]) for (const [model, words, least] of HEADS) {
  test(`a trained Fusioner head (${words} words) segments held-out images in the worker (${webgpu ? 'WebGPU' : 'CPU'})`, { timeout: 300_000 }, async (t) => {
    await withPage(server.url, { webgpu }, async (page) => {
      await page.evaluate(workerClient);
      const device = await page.evaluate((b) => ask({ type: 'init', backend: b }), webgpu ? 'webgpu' : 'cpu');
      assert.equal(device.status, 'device', JSON.stringify(device));
      const ready = await page.evaluate((m) => ask({ type: 'load', url: m }), model);
      assert.equal(ready.status, 'ready', JSON.stringify(ready));
      assert.equal(ready.engine, 'fusioner');
      const pairs = [];
      for (const stem of IMAGES) {
        const out = await page.evaluate(async ([data, stem, labels]) => {
          const pixels = async (url) => {
            const bitmap = await createImageBitmap(await (await fetch(url)).blob(), { colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
            const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
            const ctx = canvas.getContext('2d');
            ctx.drawImage(bitmap, 0, 0);
            return { width: bitmap.width, height: bitmap.height, rgba: ctx.getImageData(0, 0, bitmap.width, bitmap.height).data };
          };
          const image = await pixels(`${data}/images/${stem}.png`);
          const truth = await pixels(`${data}/labels/${stem}.png`);
          const r = await ask({ type: 'segment', rgba: new Uint8Array(image.rgba), width: image.width, height: image.height, labels, options: {} });
          if (r.status !== 'result') return { error: JSON.stringify(r).slice(0, 300) };
          const gt = Array.from({ length: truth.width * truth.height }, (_, i) => truth.rgba[4 * i]);
          return { pred: Array.from(r.labelMap, (l) => l - 1), gt };
        }, [DATA, stem, CLASSES.join(', ')]);
        assert.equal(out.error, undefined, out.error);
        pairs.push([out.pred, out.gt]);
      }
      const score = miou(pairs, CLASSES.length);
      t.diagnostic(`mIoU ${score.toFixed(4)} over ${IMAGES.join(', ')}`);
      assert.ok(score >= least, `mIoU ${score.toFixed(3)} over ${IMAGES.join(', ')}`);
    });
  });
}

test('the page names the Fusioner engine and shows its options', { timeout: 300_000 }, async () => {
  await withPage(server.url, { webgpu: false, path: `/?model=${MODEL}/` }, async (page) => {
    await page.waitForFunction(() => /Load a model/.test(document.getElementById('status').textContent));
    await page.click('#load');
    await page.waitForFunction(() => /Model ready/.test(document.getElementById('status').textContent), null, { timeout: 60_000 });
    const shown = await page.evaluate(() => ({
      engine: document.getElementById('engine').textContent,
      methodHidden: document.getElementById('method-row').hidden,
      templates: document.getElementById('templates').value,
      threshold: document.getElementById('threshold').value,
    }));
    assert.match(shown.engine, /Fusioner/);
    assert.equal(shown.methodHidden, true);
    assert.equal(shown.templates, 'fusioner');
    assert.equal(shown.threshold, '0.5');
  });
});
