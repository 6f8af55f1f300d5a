// The page with a GroupViT checkpoint: model_type picks the GroupViT engine, the advanced
// options follow it (no dense method, its background threshold), its preprocessor_config.json
// is read, and segmenting paints a mask.
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { after, before, test } from 'node:test';

import { dropSceneAndSegment, launch, startServer } from './harness.mjs';

const ARTIFACTS = new URL('./artifacts/', import.meta.url).pathname;

let server;
before(async () => { server = await startServer(); mkdirSync(ARTIFACTS, { recursive: true }); });
after(() => server.close());

test('a GroupViT checkpoint segments through the GroupViT engine', { timeout: 300_000 }, async () => {
  const browser = await launch({ webgpu: false });
  try {
    const page = await browser.newPage();
    const problems = [];
    const requests = [];
    page.on('console', (m) => { if (m.type() === 'error') problems.push(m.text()); });
    page.on('pageerror', (e) => problems.push(e.message));
    page.on('request', (r) => requests.push(new URL(r.url()).pathname));
    await page.goto(`${server.url}/?model=/tests/fixtures/groupvit-3stage/`);
    await page.waitForFunction(() => /Load a model/.test(document.getElementById('status').textContent));
    await page.click('#load');
    await page.waitForFunction(() => /Model ready/.test(document.getElementById('status').textContent), null, { timeout: 60_000 });
    assert.ok(requests.includes('/tests/fixtures/groupvit-3stage/preprocessor_config.json'), 'its preprocessing is read');

    const advanced = await page.evaluate(() => ({
      engine: document.getElementById('engine').textContent,
      methodHidden: document.getElementById('method-row').hidden,
      threshold: document.getElementById('threshold').value,
    }));
    assert.match(advanced.engine, /GroupViT/);
    assert.equal(advanced.methodHidden, true);
    assert.equal(advanced.threshold, '0.95');

    // Random weights: turn the background threshold off so every pixel gets a word.
    await page.click('summary');
    await page.evaluate(() => { const t = document.getElementById('threshold'); t.value = '0'; t.dispatchEvent(new Event('input')); });
    await page.click('summary');
    await dropSceneAndSegment(page);
    await page.screenshot({ path: `${ARTIFACTS}groupvit.png`, fullPage: true });

    // The mask is painted: the view differs from the plain scene, and the legend's shares cover
    // the image.
    const painted = await page.evaluate(() => {
      const ctx = document.getElementById('view').getContext('2d');
      const pixels = [[50, 50, [255, 0, 0]], [50, 300, [0, 255, 0]], [430, 300, [0, 0, 255]]];
      return pixels.filter(([x, y, plain]) => {
        const seen = Array.from(ctx.getImageData(x, y, 1, 1).data.slice(0, 3));
        return seen.some((v, k) => Math.abs(v - plain[k]) > 20);
      }).length;
    });
    // (Not the yellow square: the palette's fourth colour blended on yellow stays close to it.)
    assert.equal(painted, 3, `every probe shows a mask colour over the scene; legend: ${await page.textContent("#legend")}`);
    const legend = await page.textContent('#legend');
    const shares = [...legend.matchAll(/(\d+(?:\.\d+)?)\s*%/g)].map((m) => Number(m[1]));
    const total = shares.reduce((a, b) => a + b, 0);
    assert.ok(Math.abs(total - 100) < 1, `legend shares sum to ${total}: ${legend}`);
    assert.deepEqual(problems, []);
  } finally {
    await browser.close();
  }
});
