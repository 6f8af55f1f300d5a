// Progressive results: a new image's quick look (one pass at 224 px, no windows) is drawn before
// the full settings' result, the status line saying which shows; the downloads are the full
// result's; "Quick look first" turns it off; <word-mask> fires `preview` before `result`; a quick
// look overtaken by a newer request of its view is skipped; and the Performance readout names the
// run its stages' milliseconds are of, and the device.
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { after, before, test } from 'node:test';

import { audit } from './audit.mjs';
import { PALETTE } from '../../www/masks.js';
import { SCENE, SCENE_MODEL, SCENE_PROBES, dropSceneAndType, paintScene, pressSegment, startServer, withPage, workerClient } from './harness.mjs';

const ARTIFACTS = new URL('./artifacts/progressive/', import.meta.url).pathname;
const PATH = `/?model=${SCENE_MODEL}/`;

let server;
before(async () => { server = await startServer(); mkdirSync(ARTIFACTS, { recursive: true }); });
after(() => server.close());

// The scene's word at each pixel (1-based in SCENE.labels order), as painted.
const TRUTH = (() => {
  const truth = new Uint8Array(SCENE.width * SCENE.height);
  for (const { word, x, y } of SCENE.regions) {
    for (let j = y[0]; j < y[1]; j++) truth.fill(SCENE.labels.indexOf(word) + 1, j * SCENE.width + x[0], j * SCENE.width + x[1]);
  }
  return truth;
})();
const agreement = (map) => map.reduce((n, v, i) => n + (v === TRUTH[i]), 0) / map.length;

async function loadModel(page) {
  await page.waitForFunction(() => /Load a model/.test(document.getElementById('status').textContent));
  await page.click('#load');
  await page.waitForFunction(() => /Model ready/.test(document.getElementById('status').textContent), null, { timeout: 60_000 });
}

// Runs in the page: records what the page's client asks the worker to segment (`window.asked`:
// {preview, options}) and the results it gets back (`window.answers`: {labelMap, timings}), and
// every status line (`window.said`). When a quick look's status shows, `window.atQuickLook`
// holds what the page showed at that moment: the download buttons' states, the canvas at each
// probe and the readout's last-run line.
async function watchPage(probes) {
  const { sharedClient } = await import('/client.js');
  const client = sharedClient();
  Object.assign(window, { asked: [], answers: [], said: [], atQuickLook: null });
  const post = client.post.bind(client);
  client.post = (message, transfer) => {
    if (message.type === 'segment') window.asked.push({ preview: Boolean(message.preview), options: message.options });
    return post(message, transfer);
  };
  const receive = client.receive.bind(client);
  client.receive = (data) => {
    if (data.status === 'result') window.answers.push({ labelMap: Array.from(data.labelMap), timings: data.timings });
    receive(data);
  };
  const $ = (id) => document.getElementById(id);
  new MutationObserver(() => {
    const text = $('status').textContent;
    window.said.push(text);
    if (/^Quick look/.test(text) && !window.atQuickLook) {
      const ctx = $('view').getContext('2d');
      window.atQuickLook = {
        downloads: ['download-labels', 'download-colours', 'download-overlay', 'download-json'].map((id) => $(id).disabled),
        probes: probes.map(([x, y]) => Array.from(ctx.getImageData(x, y, 1, 1).data.slice(0, 3))),
        run: $('perf-run').textContent,
      };
    }
  }).observe($('status'), { childList: true });
}

// The label (1-based) whose mask colour blended over the scene (www/masks.js: 0.6 of the
// palette's) is nearest to each probe's pixel.
function nearestLabels(pixels) {
  const painted = Object.fromEntries(SCENE.regions.map(({ rgb, word }) => [SCENE.labels.indexOf(word) + 1, rgb]));
  return SCENE_PROBES.map(([, , label], i) => {
    const blend = (l) => painted[label].map((v, k) => Math.round(v * 0.4 + PALETTE[l - 1][k] * 0.6));
    const distance = (l) => blend(l).reduce((sum, v, k) => sum + (v - pixels[i][k]) ** 2, 0);
    return SCENE.labels.map((_, k) => k + 1).sort((a, b) => distance(a) - distance(b))[0];
  });
}

test('a quick look is drawn first, then the full settings refine it; downloads are the full result', { timeout: 300_000 }, async () => {
  await withPage(server.url, { webgpu: false, path: PATH, errors: 'console' }, async (page) => {
    await loadModel(page);
    await page.evaluate(watchPage, SCENE_PROBES);
    await dropSceneAndType(page);
    await pressSegment(page);

    // Two runs: the quick look (one pass at 224 px, no refinement), then the full settings
    // (the engine's defaults: 336 px, 224-pixel windows).
    const asked = await page.evaluate(() => window.asked);
    assert.deepEqual(asked, [
      { preview: true, options: { templates: 'single', shortSide: 224, window: 0, refine: 'none' } },
      { preview: false, options: { templates: 'single' } },
    ]);
    const said = await page.evaluate(() => window.said);
    const quickLook = 'Quick look (one pass at 224 px) — refining: 336 px, windows…';
    const shown = said.indexOf(quickLook);
    assert.ok(shown > 0 && said.indexOf('Done.') > shown, said.join(' / '));
    assert.ok(said.slice(0, shown).every((s) => /^Segmenting/.test(s)), said.join(' / '));
    // The quick look's line stays until the full result is there.
    assert.deepEqual(said.slice(shown), [quickLook, 'Done.'], said.join(' / '));

    // The quick look was on the canvas at once, each region in its word's colour, with the
    // downloads off and the readout saying it is the quick look.
    const atQuickLook = await page.evaluate(() => window.atQuickLook);
    assert.deepEqual(nearestLabels(atQuickLook.probes), SCENE_PROBES.map(([, , label]) => label), JSON.stringify(atQuickLook.probes));
    assert.deepEqual(atQuickLook.downloads, [true, true, true, true], 'no download of a quick look');
    assert.match(atQuickLook.run, /^quick look \(one pass at 224 px; refining: 336 px, windows\), \d+ ms in all\.$/);

    // The quick look puts the regions right at its coarse level; the full run follows the
    // scene's edges more closely (its patches fall on the scene's 16-pixel grid).
    const [quick, full] = await page.evaluate(() => window.answers);
    for (const [x, y, want] of SCENE_PROBES) assert.equal(quick.labelMap[y * SCENE.width + x], want, `quick look at (${x}, ${y})`);
    const [quickRight, fullRight] = [agreement(quick.labelMap), agreement(full.labelMap)];
    const ms = ({ timings }) => Math.round(Object.values(timings).reduce((a, b) => a + b, 0));
    console.log(`quick look ${ms(quick)} ms, ${quickRight.toFixed(3)} of the pixels as painted; full result ${ms(full)} ms, ${fullRight.toFixed(3)}`);
    assert.ok(quick.labelMap.some((v, i) => v !== full.labelMap[i]), 'the full result is not the quick look again');
    assert.ok(fullRight >= quickRight, `full ${fullRight} vs quick ${quickRight}`);

    // The label PNG is the full result's label map, pixel for pixel.
    assert.equal(await page.isEnabled('#download-labels'), true);
    const [file] = await Promise.all([page.waitForEvent('download'), page.click('#download-labels')]);
    const bytes = await readFile(await file.path());
    const png = await page.evaluate(async (base64) => {
      const blob = await (await fetch(`data:image/png;base64,${base64}`)).blob();
      const bitmap = await createImageBitmap(blob, { premultiplyAlpha: 'none', colorSpaceConversion: 'none' });
      const ctx = new OffscreenCanvas(bitmap.width, bitmap.height).getContext('2d', { willReadFrequently: true });
      ctx.drawImage(bitmap, 0, 0);
      return Array.from(ctx.getImageData(0, 0, bitmap.width, bitmap.height).data.filter((_, i) => i % 4 === 0));
    }, bytes.toString('base64'));
    assert.deepEqual(png, full.labelMap, 'the downloaded labels are the full result');

    // The readout: the full result's stages, after the quick look, and the device.
    await page.click('#performance summary');
    assert.match(await page.textContent('#perf-run'), /^full result \(refined: 336 px, windows\), \d+ ms in all, after a \d+ ms quick look\.$/);
    assert.equal(await page.textContent('#perf-stages caption'), 'Milliseconds per stage of the full result');
    const rows = await page.$$eval('#perf-stages tbody tr', (trs) => trs.map((tr) => [tr.cells[0].textContent, tr.cells[1].textContent]));
    assert.deepEqual(rows.map(([stage]) => stage), ['words (text encoder)', 'image (image encoder)', 'reading the scores back', 'label map', 'total']);
    for (const [stage, ms] of rows) assert.match(ms, /^\d+ ms$/, stage);
    const total = Number(rows.at(-1)[1].split(' ')[0]);
    const sum = Object.values(full.timings).reduce((a, b) => a + b, 0);
    assert.ok(Math.abs(total - sum) <= 1, `total ${total} ms, the core's stages ${sum} ms`);
    assert.match(await page.textContent('#device-info'), /^Device: the CPU \(WebAssembly, (one thread|\d+ threads)\), f32\.$/);
    assert.equal(await page.textContent('#perf-fps'), 'no live camera');
    await page.screenshot({ path: `${ARTIFACTS}readout.png`, fullPage: true });
    assert.deepEqual(await audit(page), [], 'the page with the Performance readout open');
  });
});

test('"Quick look first" off: one segmentation, and the switch is remembered', { timeout: 300_000 }, async () => {
  await withPage(server.url, { webgpu: false, path: PATH, errors: 'console' }, async (page) => {
    await loadModel(page);
    await page.evaluate(watchPage, SCENE_PROBES);
    await dropSceneAndType(page); // opens Advanced
    assert.equal(await page.isChecked('#progressive'), true, 'on at first');
    await page.uncheck('#progressive');
    await pressSegment(page);
    assert.deepEqual(await page.evaluate(() => window.asked), [{ preview: false, options: { templates: 'single' } }]);
    const said = await page.evaluate(() => window.said);
    assert.ok(!said.some((s) => /Quick look/.test(s)), said.join(' / '));
    await page.click('#performance summary');
    assert.match(await page.textContent('#perf-run'), /^full result, \d+ ms in all\.$/);

    await page.reload();
    await page.waitForFunction(() => /Load a model/.test(document.getElementById('status').textContent));
    assert.equal(await page.isChecked('#progressive'), false, 'still off after a reload');
  });
});

test('<word-mask> fires preview, then result; progressive="off" fires result alone', { timeout: 300_000 }, async () => {
  const record = (page) => page.addInitScript(() => {
    window.events = [];
    for (const type of ['preview', 'result', 'error']) {
      document.addEventListener(type, (e) => {
        if (!e.detail?.labelMap && type !== 'error') return;
        const { labels, labelMap, width, shortSide, refines, preview } = e.detail;
        const at = (x, y) => labels[labelMap[y * width + x] - 1];
        window.events.push({ id: e.target.id, type, preview, shortSide, refines, exports: typeof e.detail.toCOCO,
          disc: labelMap && at(25, 30), bar: labelMap && at(17, 70), message: e.detail.message });
      });
    }
  });
  const path = `/embed.html?model=${SCENE_MODEL}/&src=/tests/fixtures/images/shapes_50x90.png`;
  await withPage(server.url, { webgpu: false, path, before: record, errors: 'console' }, async (page) => {
    const results = () => page.evaluate(() => window.events.filter((e) => e.type !== 'preview').length);
    await page.waitForFunction(() => window.events.filter((e) => e.type !== 'preview').length === 2, null, { timeout: 120_000 });
    const events = await page.evaluate(() => window.events);
    for (const id of ['first', 'second']) {
      const mine = events.filter((e) => e.id === id);
      assert.deepEqual(mine.map((e) => e.type), ['preview', 'result'], JSON.stringify(events));
      const [preview, result] = mine;
      // A 50x90 image at the dense engine's 336 px: one pass at 224 px first.
      assert.deepEqual([preview.preview, preview.shortSide, preview.refines, preview.exports], [true, 224, ['336 px', 'windows'], 'undefined']);
      assert.deepEqual([preview.disc, preview.bar], ['red', 'blue'], `${id}'s quick look`);
      assert.deepEqual([result.preview, result.exports], [undefined, 'function']);
      assert.deepEqual([result.disc, result.bar], ['red', 'blue'], `${id}'s result`);
    }
    // Off: new labels segment again, with no quick look.
    await page.evaluate(() => {
      window.events.length = 0;
      const el = document.getElementById('first');
      el.setAttribute('progressive', 'off');
      el.labels = 'blue, red';
    });
    await page.waitForFunction(() => window.events.length > 0, null, { timeout: 120_000 });
    await new Promise((done) => setTimeout(done, 500)); // a preview after it would show here
    assert.deepEqual((await page.evaluate(() => window.events)).map((e) => [e.id, e.type]), [['first', 'result']]);
    assert.equal(await results(), 1);
  });
});

test('a quick look that a newer request of its view overtook is skipped; another view keeps its own', { timeout: 300_000 }, async () => {
  await withPage(server.url, { webgpu: false }, async (page) => {
    await page.evaluate(workerClient);
    await page.evaluate(() => ask({ type: 'init', backend: 'cpu' }));
    assert.equal((await page.evaluate((m) => ask({ type: 'load', url: m }), SCENE_MODEL)).status, 'ready');
    await page.evaluate(`window.paintScene = ${paintScene}`);
    const previews = await page.evaluate(async ([scene, labels]) => {
      const seen = [];
      const segment = (name, view) => {
        const image = paintScene(scene);
        return client.segment({ ...image, labels }, { view, onPreview: () => seen.push(name) }).then(() => seen.push(`${name} done`));
      };
      // The worker is busy with a first segmentation while the others arrive: by the turn of A's
      // quick look, B (the same view) waits behind it; C is another view's.
      const busy = client.segment({ ...paintScene(scene), labels });
      await Promise.all([busy, segment('A', 'one'), segment('B', 'one'), segment('C', 'two')]);
      return seen;
    }, [SCENE, SCENE.labels.join(', ')]);
    assert.deepEqual(previews, ['A done', 'B', 'B done', 'C', 'C done']);
  });
});
