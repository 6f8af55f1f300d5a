// Name everything in Chromium: Segment Anything's automatic masks (a grid of point prompts,
// quality and stability filtering, box NMS, in the core) on the four-colour scene with the colour
// SAM (tests/fixtures/sam-colours: a click's mask is every pixel of its colour) and the colour
// words model naming each mask, as `wordmask sam --everything` is checked natively
// (tests/native/cli.rs): one object per painted region, named by its word, through the worker
// and on the page (its objects list, the label and object downloads), and what the worker says
// when no Segment Anything model, or no words model, is there.
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';

import { audit } from './audit.mjs';
import { SCENE, dropSceneAndType, paintScene, startServer, withPage, workerClient } from './harness.mjs';

const WORDS = '/tests/fixtures/semantic-colours/';
const SAM = '/tests/fixtures/sam-colours/';
const LABELS = SCENE.labels.join(', ');
const ARTIFACTS = new URL('./artifacts/sharp/', import.meta.url).pathname;

let server;
before(async () => { server = await startServer(); mkdirSync(ARTIFACTS, { recursive: true }); });
after(() => server.close());

/** Which region's word each pixel of the scene shows (later regions on top). */
function painted() {
  const { width, height, regions } = SCENE;
  return Array.from({ length: width * height }, (_, i) => {
    const [x, y] = [i % width, Math.floor(i / width)];
    return regions.findLast((r) => x >= r.x[0] && x < r.x[1] && y >= r.y[0] && y < r.y[1]).word;
  });
}

/** Each region is one object of its word: its pixels (at least 95 % both ways) and its probe. */
function oneObjectPerRegion({ objects, instances }, truth) {
  assert.equal(objects.length, SCENE.regions.length, JSON.stringify(objects.map((o) => [o.label, o.area])));
  for (const { word, probe } of SCENE.regions) {
    const object = objects.find((o) => o.label === word);
    assert.ok(object, `an object named ${word}: ${objects.map((o) => o.label)}`);
    assert.equal(instances[probe[1] * SCENE.width + probe[0]], object.id, `the ${word} probe lies in its object`);
    const area = truth.filter((w) => w === word).length;
    const both = instances.filter((id, i) => id === object.id && truth[i] === word).length;
    assert.ok(both >= 0.95 * area && both >= 0.95 * object.area, `${word}: ${both} of ${area} painted, ${object.area} in the object`);
  }
}

test('the worker: every region found once and named, on the CPU fallback', { timeout: 300_000 }, async () => {
  await withPage(server.url, { webgpu: false }, async (page) => {
    await page.evaluate(workerClient);
    await page.evaluate(() => ask({ type: 'init', backend: 'cpu' }));
    await page.evaluate(`window.paintScene = ${paintScene}`);
    const everything = (labels, automatic) => page.evaluate(async ([scene, labels, automatic]) => {
      try {
        const r = await client.everything({ ...paintScene(scene), labels, automatic });
        return { ...r, instances: Array.from(r.instances) };
      } catch (e) {
        return { error: e.message };
      }
    }, [SCENE, labels, automatic]);
    // No Segment Anything model: refused, saying what to load.
    assert.match((await everything(LABELS)).error ?? '', /naming everything needs a Segment Anything model: load one in Point mode/);
    assert.equal((await page.evaluate((url) => ask({ type: 'load', url }), SAM)).status, 'ready');
    // No words model: the objects are found, unnamed.
    const unnamed = await everything(LABELS, { pointsPerSide: 16 });
    assert.ok(!unnamed.error, unnamed.error);
    assert.equal(unnamed.objects.length, SCENE.regions.length);
    assert.ok(unnamed.objects.every((o) => o.label == null), 'no words model, no names');
    // Settings out of range are refused by the core, naming the setting.
    assert.match((await everything(LABELS, { pointsPerSide: 0 })).error ?? '', /points per side/);
    assert.equal((await page.evaluate((url) => ask({ type: 'load', url }), WORDS)).status, 'ready');
    const named = await everything(LABELS);
    assert.ok(!named.error, named.error);
    console.log(`Name everything (CPU, 32 points a side): ${named.objects.length} objects ${JSON.stringify(named.counts)}, encoding ${Math.round(named.encodeMs)} ms, masks and names ${Math.round(named.masksMs)} ms`);
    oneObjectPerRegion(named, painted());
    assert.deepEqual(named.counts, SCENE.labels.map((label) => ({ label, count: 1 })));
  });
});

test('the page: Name everything lists each region as a named object; downloads hold them', { timeout: 300_000 }, async () => {
  const context = { viewport: { width: 1440, height: 900 }, deviceScaleFactor: 1, acceptDownloads: true };
  await withPage(server.url, { webgpu: false, context, path: `/?model=${WORDS}&sam=${SAM}`, errors: 'console' }, async (page) => {
    await page.waitForFunction(() => /Load a model/.test(document.getElementById('status').textContent));
    await page.click('#load');
    await page.waitForFunction(() => /Model ready/.test(document.getElementById('status').textContent), null, { timeout: 60_000 });
    await dropSceneAndType(page);
    await page.click('#tab-point');
    await page.click('#sam-load');
    await page.waitForFunction(() => /Segment Anything ready/.test(document.getElementById('status').textContent), null, { timeout: 60_000 });
    await page.click('#tab-words');
    // Every status line shown while it runs, to see the prompts counted.
    await page.evaluate(() => {
      window.seen = [];
      const line = document.getElementById('status');
      new MutationObserver(() => window.seen.push(line.textContent)).observe(line, { childList: true, characterData: true, subtree: true });
    });
    await page.click('#everything');
    await page.waitForFunction(() => /Named everything|Error/.test(document.getElementById('status').textContent), null, { timeout: 240_000 });
    assert.equal(await page.textContent('#status'), 'Named everything: 4 objects, 4 named.');
    const counted = (await page.evaluate(() => window.seen)).filter((t) => /^Naming everything: \d+ of 1024 prompts decoded…$/.test(t));
    assert.ok(counted.length >= 2, `the prompts are counted as they go: ${JSON.stringify(counted)}`);
    assert.ok(counted.some((t) => t.startsWith('Naming everything: 1024 of')), JSON.stringify(counted));
    assert.equal(await page.textContent('#objects-counts'), '4 objects: yellow ×1, green ×1, red ×1, blue ×1');
    assert.deepEqual(await page.$$eval('#objects button', (bs) => bs.map((b) => b.textContent.split(' ')[0])), SCENE.labels);
    // Each region is painted in its word's colour; hovering names its object.
    const view = page.locator('#view');
    const box = await view.boundingBox();
    for (const { word, probe } of SCENE.regions) {
      await view.hover({ position: { x: (box.width * probe[0]) / SCENE.width, y: (box.height * probe[1]) / SCENE.height } });
      assert.equal(await page.textContent('#hover'), `${word} 1`);
    }
    await page.screenshot({ path: `${ARTIFACTS}everything.png`, fullPage: true });
    assert.deepEqual(await audit(page), [], 'after Name everything');
    const take = async (button) => {
      const [download] = await Promise.all([page.waitForEvent('download'), page.click(button)]);
      return readFileSync(await download.path());
    };
    const json = JSON.parse(await take('#download-json'));
    assert.deepEqual(json.counts, SCENE.labels.map((label) => ({ label, count: 1 })));
    assert.equal(json.objects.length, 4);
    const png = await take('#download-objects');
    assert.equal(png[24], 16, 'the object PNG is 16-bit');
  });
});

test('<word-mask sam=…>: everything() finds each region once, names it and draws it', { timeout: 300_000 }, async () => {
  await withPage(server.url, { webgpu: false, path: '/embed.html' }, async (page) => {
    await page.evaluate(`window.paintScene = ${paintScene}`);
    const detail = await page.evaluate(async ([words, sam, labels, scene]) => {
      await import('/word-mask.js');
      const el = document.createElement('word-mask');
      const ready = new Promise((resolve, reject) => {
        el.addEventListener('ready', resolve, { once: true });
        el.addEventListener('error', (e) => reject(new Error(e.detail?.message ?? 'error')), { once: true });
      });
      for (const [k, v] of [['sam', sam], ['labels', labels], ['model', words]]) el.setAttribute(k, v);
      document.querySelector('main').append(el);
      await ready;
      const { rgba, width, height } = paintScene(scene);
      const bitmap = await createImageBitmap(new ImageData(new Uint8ClampedArray(rgba.buffer), width, height));
      const fired = new Promise((resolve) => el.addEventListener('result', (e) => resolve(e.detail), { once: true }));
      const d = await el.everything(bitmap, { automatic: { pointsPerSide: 16 } });
      return { ...d, instances: Array.from(d.instances), fired: (await fired) === d, legend: el.shadowRoot.querySelector('[part=legend]').textContent };
    }, [WORDS, SAM, LABELS, SCENE]);
    oneObjectPerRegion(detail, painted());
    assert.ok(detail.fired, 'the result event carries the same detail');
    for (const word of SCENE.labels) assert.match(detail.legend, new RegExp(`${word} ×1`));
  });
});
