// The page as a visitor meets it, at a phone's, a laptop's and a large screen's size, in light
// and dark: the first view already shows a sample photo and what will happen; an automated
// accessibility audit (axe-core) finds nothing on the first view, after loading and after
// segmenting; screenshots of each state land in tests/browser/artifacts/ to look at.
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { after, before, test } from 'node:test';

import { audit } from './axe.mjs';
import { dropSceneAndSegment, dropSceneAndType, pressSegment, startServer, withPage } from './harness.mjs';

const ARTIFACTS = new URL('./artifacts/product/', import.meta.url).pathname;
const SIZES = { phone: { width: 390, height: 844 }, laptop: { width: 1440, height: 900 }, large: { width: 2560, height: 1440 } };

let server;
before(async () => { server = await startServer(); mkdirSync(ARTIFACTS, { recursive: true }); });
after(() => server.close());

for (const [size, viewport] of Object.entries(SIZES)) {
  for (const colorScheme of ['light', 'dark']) {
    test(`${size} ${colorScheme}: first view, loading, results; no accessibility violations`, { timeout: 300_000 }, async () => {
      const context = { viewport, colorScheme, deviceScaleFactor: 1 };
      await withPage(server.url, { webgpu: false, context, path: '/?model=/tests/fixtures/semantic-colours/' }, async (page) => {
        const shot = (state) => page.screenshot({ path: `${ARTIFACTS}${size}-${colorScheme}-${state}.png` });

        await page.waitForFunction(() => /Load a model/.test(document.getElementById('status').textContent));
        // The first view: a sample photo already on the canvas, filling the stage's width.
        await page.waitForFunction(() => document.getElementById('view').width > 1);
        const first = await page.evaluate(() => {
          const view = document.getElementById('view').getBoundingClientRect();
          const stage = document.getElementById('canvas-box').getBoundingClientRect();
          return { tagline: document.querySelector('.tagline').textContent, view: view.width, stage: stage.width, top: view.top, labels: document.getElementById('labels').value };
        });
        assert.match(first.tagline, /Type words, get masks/);
        assert.match(first.tagline, /nothing is uploaded/);
        assert.ok(first.labels.length > 0, 'the sample comes with its words');
        assert.ok(first.view >= 0.6 * first.stage, `the photo spans the stage (${first.view} of ${first.stage} px)`);
        assert.ok(first.top < viewport.height, 'the photo is in the first screen');
        await shot('first');
        assert.deepEqual(await audit(page), [], 'first view');

        await page.click('#load');
        await shot('loading');
        await page.waitForFunction(() => /Model ready/.test(document.getElementById('status').textContent), null, { timeout: 60_000 });
        assert.deepEqual(await audit(page), [], 'after loading');

        // Layout shifts once the words are typed (the results arriving), as the browser scores them.
        await dropSceneAndType(page);
        await page.evaluate(() => {
          window.shifts = 0;
          new PerformanceObserver((list) => { for (const e of list.getEntries()) if (!e.hadRecentInput) window.shifts += e.value; })
            .observe({ type: 'layout-shift', buffered: false });
        });
        await pressSegment(page);
        const shifts = await page.evaluate(() => window.shifts);
        assert.ok(shifts < 0.05, `layout shift score ${shifts.toFixed(3)} while the results arrive`);
        const shift = await page.evaluate(() => document.getElementById('view').getBoundingClientRect().top);
        await shot('results');
        assert.ok(shift < viewport.height, 'the result is on screen');
        assert.deepEqual(await audit(page), [], 'after segmenting');
      });
    });
  }
}

test('the page is installable: a manifest with icons, served', { timeout: 60_000 }, async () => {
  await withPage(server.url, { webgpu: false }, async (page) => {
    const manifest = await page.evaluate(async () => {
      const link = document.querySelector('link[rel=manifest]');
      const m = await (await fetch(link.href)).json();
      const icons = await Promise.all(m.icons.map(async (i) => ({ ...i, ok: (await fetch(new URL(i.src, link.href))).ok })));
      return { ...m, icons };
    });
    assert.equal(manifest.display, 'standalone');
    assert.ok(manifest.icons.some((i) => i.sizes === '192x192') && manifest.icons.some((i) => i.sizes === '512x512'));
    assert.ok(manifest.icons.every((i) => i.ok), JSON.stringify(manifest.icons));
  });
});

test('the picker says what each model is and what the hub lists as its download', { timeout: 60_000 }, async () => {
  const asked = [];
  // The hub's file listing, as its API answers (no network here).
  const hub = (page) => page.route('https://huggingface.co/api/models/**', (route) => {
    asked.push(route.request().url());
    route.fulfill({ contentType: 'application/json', headers: { 'access-control-allow-origin': '*' },
      body: JSON.stringify([{ path: 'config.json', size: 4_000 }, { path: 'model.safetensors', size: 100, lfs: { size: 598_600_000 } }]) });
  });
  await withPage(server.url, { webgpu: false, before: hub }, async (page) => {
    assert.match(await page.textContent('#model-info'), /CLIP ViT-B\/16, dense engine/);
    assert.deepEqual(asked, [], 'nothing asked before the visitor looks at the picker');
    await page.selectOption('#model-pick', 'nvidia/groupvit-gcc-yfcc');
    await page.waitForFunction(() => /MB to download/.test(document.getElementById('model-info').textContent));
    assert.match(await page.textContent('#model-info'), /GroupViT, its own engine.*599 MB to download \(as the hub lists it\)/);
    assert.deepEqual(asked, ['https://huggingface.co/api/models/nvidia/groupvit-gcc-yfcc/tree/main']);
  });
});

test('a legend entry isolates its word; a chip dragged onto another moves there', { timeout: 120_000 }, async () => {
  await withPage(server.url, { webgpu: false, path: '/?model=/tests/fixtures/semantic-colours/' }, async (page) => {
    await page.waitForFunction(() => /Load a model/.test(document.getElementById('status').textContent));
    await page.click('#load');
    await page.waitForFunction(() => /Model ready/.test(document.getElementById('status').textContent), null, { timeout: 60_000 });
    await dropSceneAndSegment(page);
    // The scene's red region, before and after isolating "green": its mask goes away.
    const redPixel = () => page.evaluate(() => [...document.getElementById('view').getContext('2d').getImageData(50, 50, 1, 1).data].slice(0, 3));
    const before = await redPixel();
    await page.click('#legend li[data-label="green"] button');
    assert.equal(await page.getAttribute('#legend li[data-label="green"] button', 'aria-pressed'), 'true');
    const isolated = await redPixel();
    assert.deepEqual(isolated, [255, 0, 0], `the red region shows the bare image (was ${before})`);
    await page.click('#legend li[data-label="green"] button');
    assert.deepEqual(await redPixel(), before, 'pressed again: every mask is back');

    const order = () => page.$$eval('#chips .chip span', (s) => s.map((x) => x.textContent));
    const start = await order();
    await page.dragAndDrop('#chips .chip:nth-child(1)', '#chips .chip:nth-child(3)');
    const moved = await order();
    assert.deepEqual(moved, [start[1], start[2], start[0], start[3]], `dragged: ${moved}`);
    assert.equal(await page.inputValue('#labels'), moved.join(', '), 'the words field follows the chips');
  });
});
