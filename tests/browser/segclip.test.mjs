// The page with a SegCLIP checkpoint (the hand-built colour one, already in the converted
// layout): model_type picks the SegCLIP engine, the advanced options follow it (no dense
// method, its background threshold), and with the engine's defaults each colour region gets
// its word, on the CPU fallback and on WebGPU.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { dropSceneAndSegment, probeRegions, startServer, withPage } from './harness.mjs';

let server;
before(async () => { server = await startServer(); });
after(() => server.close());

for (const webgpu of [false, true]) {
  test(`a SegCLIP checkpoint segments through the SegCLIP engine (${webgpu ? 'WebGPU' : 'CPU'})`, { timeout: 300_000 }, async () => {
    await withPage(server.url, { webgpu, path: '/?model=/tests/fixtures/semantic-colours-segclip/', errors: 'console' }, async (page) => {
      await page.waitForFunction(() => /Load a model/.test(document.getElementById('status').textContent));
      await page.click('#load');
      await page.waitForFunction(() => /Model ready/.test(document.getElementById('status').textContent), null, { timeout: 60_000 });
      const advanced = await page.evaluate(() => ({
        engine: document.getElementById('engine').textContent,
        methodHidden: document.getElementById('method-row').hidden,
        threshold: document.getElementById('threshold').value,
      }));
      assert.match(advanced.engine, /SegCLIP/);
      assert.equal(advanced.methodHidden, true);
      assert.equal(advanced.threshold, '0.8');

      await dropSceneAndSegment(page);
      for (const p of await probeRegions(page)) assert.equal(p.nearest, p.label, `pixel (${p.x}, ${p.y}) shows ${p.seen}`);
      const legend = await page.textContent('#legend');
      for (const [word, share] of [['red', 18.4], ['green', 24.5], ['yellow', 10.9]]) {
        const shown = Number(legend.match(new RegExp(`${word} (\\d+\\.\\d) %`))?.[1]);
        assert.ok(Math.abs(shown - share) < 1.5, `${word}: ${shown} % shown, ${share} % painted (${legend})`);
      }
    });
  });
}
