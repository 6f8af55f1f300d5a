// The page with a GroupViT checkpoint (the hand-built colour one): model_type picks the GroupViT
// engine, the advanced options follow it (no dense method, its background threshold), its
// preprocessor_config.json is read, and with the engine's defaults each colour region gets its
// word.
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { after, before, test } from 'node:test';

import { dropSceneAndSegment, probeRegions, startServer, withPage } from './harness.mjs';

const ARTIFACTS = new URL('./artifacts/', import.meta.url).pathname;

let server;
before(async () => { server = await startServer(); mkdirSync(ARTIFACTS, { recursive: true }); });
after(() => server.close());

test('a GroupViT checkpoint segments through the GroupViT engine', { timeout: 300_000 }, async () => {
  const requests = [];
  const record = (page) => page.on('request', (r) => requests.push(new URL(r.url()).pathname));
  const path = '/?model=/tests/fixtures/semantic-colours-groupvit/';
  await withPage(server.url, { webgpu: false, path, before: record, errors: 'console' }, async (page) => {
    await page.waitForFunction(() => /Load a model/.test(document.getElementById('status').textContent));
    await page.click('#load');
    await page.waitForFunction(() => /Model ready/.test(document.getElementById('status').textContent), null, { timeout: 60_000 });
    assert.ok(requests.includes('/tests/fixtures/semantic-colours-groupvit/preprocessor_config.json'), 'its preprocessing is read');

    const advanced = await page.evaluate(() => ({
      engine: document.getElementById('engine').textContent,
      methodHidden: document.getElementById('method-row').hidden,
      threshold: document.getElementById('threshold').value,
    }));
    assert.match(advanced.engine, /GroupViT/);
    assert.equal(advanced.methodHidden, true);
    assert.equal(advanced.threshold, '0.95');

    await dropSceneAndSegment(page);
    await page.screenshot({ path: `${ARTIFACTS}groupvit.png`, fullPage: true });

    // The colour checkpoint's groups are the colours: each region shows its word's mask colour
    // (label i uses palette colour i, blended over the scene).
    for (const p of await probeRegions(page)) assert.equal(p.nearest, p.label, `pixel (${p.x}, ${p.y}) shows ${p.seen}`);
    const legend = await page.textContent('#legend');
    const shares = [...legend.matchAll(/(\d+(?:\.\d+)?)\s*%/g)].map((m) => Number(m[1]));
    assert.ok(Math.abs(shares.reduce((a, b) => a + b, 0) - 100) < 1, legend);
  });
});
