// Point mode as a visitor meets it: the Point panel and the whole image fit the first screen of a
// phone and of a laptop. The colour checkpoints (tests/fixtures/semantic-colours names,
// tests/fixtures/sam-colours outlines every pixel of the colour clicked) on the CPU fallback.
// Screenshots of each state land in tests/browser/artifacts/point/; axe-core finds nothing in any.
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { after, before, test } from 'node:test';

import { audit } from './axe.mjs';
import { SCENE, dropSceneAndType, startServer, withPage } from './harness.mjs';

const ARTIFACTS = new URL('./artifacts/point/', import.meta.url).pathname;
const PATH = '/?model=/tests/fixtures/semantic-colours/&sam=/tests/fixtures/sam-colours/';
const region = (word) => SCENE.regions.find((r) => r.word === word);

let server;
before(async () => { server = await startServer(); mkdirSync(ARTIFACTS, { recursive: true }); });
after(() => server.close());

const waitStatus = (page, pattern, timeout = 60_000) => page.waitForFunction(
  (source) => new RegExp(source).test(document.getElementById('status').textContent), pattern.source, { timeout },
);

// The words model loaded, the colour scene dropped and its words typed, back at the top of the
// page, then the Point tab pressed.
async function sceneInPointMode(page) {
  await waitStatus(page, /Load a model/);
  await page.click('#load');
  await waitStatus(page, /Model ready/);
  await dropSceneAndType(page);
  await page.evaluate(() => scrollTo(0, 0));
  await page.click('#tab-point');
}

// A click on the scene's pixel `[x, y]`, where the canvas shows it.
async function clickAt(page, [x, y]) {
  const box = await page.locator('#view').boundingBox();
  await page.mouse.click(box.x + box.width * ((x + 0.5) / SCENE.width), box.y + box.height * ((y + 0.5) / SCENE.height));
}

for (const viewport of [{ width: 390, height: 844 }, { width: 1440, height: 900 }]) {
  const size = `${viewport.width}x${viewport.height}`;
  test(`${size}: the Point panel and the whole image are on the first screen`, { timeout: 120_000 }, async () => {
    await withPage(server.url, { webgpu: false, path: PATH, context: { viewport, deviceScaleFactor: 1 }, errors: 'console' }, async (page) => {
      const fits = async (state) => {
        const boxes = await page.evaluate(() => ['point-panel', 'view'].map((id) => {
          const { top, bottom, left, right, height } = document.getElementById(id).getBoundingClientRect();
          return { id, top, bottom, left, right, height };
        }));
        for (const b of boxes) {
          assert.ok(b.top >= 0 && b.left >= 0 && b.bottom <= viewport.height && b.right <= viewport.width,
            `${state}: #${b.id} spans x ${b.left}..${b.right}, y ${b.top}..${b.bottom} of a ${size} viewport`);
        }
        assert.ok(boxes[1].height >= 150, `${state}: the image is ${boxes[1].height} px tall`);
        await page.screenshot({ path: `${ARTIFACTS}${size}-${state}.png` });
      };
      await sceneInPointMode(page);
      await fits('point-tab');
      await page.click('#sam-load');
      await waitStatus(page, /Segment Anything ready/);
      await fits('sam-ready');
      await clickAt(page, region('red').probe);
      await waitStatus(page, /Outlined red/);
      await fits('outlined');
      assert.deepEqual(await audit(page), [], 'an object outlined in Point mode');
      // Back on the Words tab the image takes its usual room again.
      await page.click('#tab-words');
      const height = await page.evaluate(() => document.getElementById('view').getBoundingClientRect().height);
      assert.ok(height >= 150, `words mode: the image is ${height} px tall`);
    });
  });
}
