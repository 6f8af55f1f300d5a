// Photos stored sideways or mirrored, with the EXIF orientation that says how to show them
// (tests/fixtures/images/exif/: the colour scene in JPEGs of orientation 1 to 8 and a PNG whose
// eXIf chunk says 6). The page and <word-mask> show and segment each one upright, as
// orientations.json describes it; tests/native/images.rs holds `wordmask segment` to the same
// file, so the command line and the page agree on every orientation.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';

import { SCENE, SCENE_MODEL, startServer, withPage } from './harness.mjs';

const EXIF = JSON.parse(readFileSync(new URL('../fixtures/images/exif/orientations.json', import.meta.url)));
const FOLDER = '/tests/fixtures/images/exif/';

let server;
before(async () => { server = await startServer(); });
after(() => server.close());

// One <word-mask> per file, on a page of their own, sharing the page's one worker and model.
const COMPONENTS = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>EXIF orientations</title></head><body>
${EXIF.files.map((f, i) => `<word-mask id="f${i}" src="${FOLDER}${f.file}" labels="${SCENE.labels.join(', ')}"></word-mask>`).join('\n')}
<script type="module">
  import '/word-mask.js';
  for (const el of document.querySelectorAll('word-mask')) el.setAttribute('model', '${SCENE_MODEL}');
</script></body></html>`;

test('<word-mask> segments each orientation as the browser shows it', { timeout: 300_000 }, async () => {
  const before = async (page) => {
    await page.route('**/exif-orientations.html', (route) => route.fulfill({ contentType: 'text/html', body: COMPONENTS }));
    await page.addInitScript(() => {
      window.results = {};
      window.errors = [];
      document.addEventListener('result', (e) => { window.results[e.target.id] = { ...e.detail, labelMap: Array.from(e.detail.labelMap) }; });
      document.addEventListener('error', (e) => { if (e.detail?.message) window.errors.push(e.detail.message); });
    });
  };
  await withPage(server.url, { webgpu: false, path: '/exif-orientations.html', before, errors: 'console' }, async (page) => {
    await page.waitForFunction((n) => Object.keys(window.results).length === n || window.errors.length > 0, EXIF.files.length, { timeout: 240_000 });
    assert.deepEqual(await page.evaluate(() => window.errors), []);
    const results = await page.evaluate(() => window.results);
    const wrong = [];
    EXIF.files.forEach((f, i) => {
      const r = results[`f${i}`];
      if (r.width !== f.width || r.height !== f.height) {
        wrong.push(`${f.file}: ${r.width}x${r.height}, shown ${f.width}x${f.height}`);
        return;
      }
      for (const [x, y, word] of f.probes) {
        const got = r.labels[r.labelMap[y * r.width + x] - 1] ?? '(unlabelled)';
        if (got !== word) wrong.push(`${f.file}: (${x}, ${y}) is ${got}, shown ${word}`);
      }
    });
    assert.deepEqual(wrong, []);
  });
});

test('the page shows each orientation upright when the file is dropped on it', { timeout: 120_000 }, async () => {
  await withPage(server.url, { webgpu: false, errors: 'console' }, async (page) => {
    // The first view's sample photo is on the canvas: a dropped file replaces it.
    await page.waitForFunction(() => document.getElementById('view').width > 1);
    const colours = Object.fromEntries(SCENE.regions.map(({ word, rgb }) => [word, rgb]));
    const wrong = [];
    for (const f of EXIF.files) {
      const shown = await page.evaluate(async ({ url, name, probes }) => {
        const view = document.getElementById('view');
        const ctx = view.getContext('2d');
        // Black, a colour the scene does not have, until the dropped file is drawn over it.
        ctx.fillStyle = '#000';
        ctx.fillRect(0, 0, view.width, view.height);
        const blob = await (await fetch(url)).blob();
        const drop = new DragEvent('drop', { dataTransfer: new DataTransfer(), bubbles: true, cancelable: true });
        drop.dataTransfer.items.add(new File([blob], name, { type: blob.type }));
        document.body.dispatchEvent(drop);
        const read = () => probes.map(([x, y]) => (x < view.width && y < view.height ? Array.from(ctx.getImageData(x, y, 1, 1).data.slice(0, 3)) : null));
        for (let i = 0; i < 400; i++) {
          const at = read();
          if (at.every((rgb) => rgb && rgb.some((v) => v > 0))) return { width: view.width, height: view.height, at };
          await new Promise((r) => setTimeout(r, 25));
        }
        return { width: view.width, height: view.height, at: read() };
      }, { url: `${FOLDER}${f.file}`, name: f.file, probes: f.probes });
      const nearest = (rgb) => rgb && Object.keys(colours).sort((a, b) => distance(colours[a], rgb) - distance(colours[b], rgb))[0];
      const words = shown.at.map(nearest);
      if (shown.width !== f.width || shown.height !== f.height) wrong.push(`${f.file}: ${shown.width}x${shown.height}, shown ${f.width}x${f.height}`);
      f.probes.forEach(([x, y, word], k) => { if (words[k] !== word) wrong.push(`${f.file}: (${x}, ${y}) shows ${words[k]}, should show ${word}`); });
    }
    assert.deepEqual(wrong, []);
  });
});

function distance(a, b) {
  return a.reduce((sum, v, k) => sum + (v - b[k]) ** 2, 0);
}
