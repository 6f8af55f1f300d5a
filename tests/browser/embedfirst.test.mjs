// <word-mask> before its first result: the `src` image shows at once, while the model is still
// downloading, with a loading status; a model or image that cannot be had gives an error that
// says which and what to check, in text of 14 px or more at a contrast of 4.5:1 or more, the
// image still shown, and fires `error` with the message and its `code`. embed.html passes axe-core (color-contrast, region, landmark-one-main
// among its rules) while loading, after the results and in the error states, light and dark.
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { after, before, test } from 'node:test';

import { audit, contrastRatio } from './audit.mjs';
import { startServer, withPage } from './harness.mjs';

const ARTIFACTS = new URL('./artifacts/embed/', import.meta.url).pathname;
const SRC = '/tests/fixtures/images/shapes_50x90.png';

let server;
before(async () => { server = await startServer(); mkdirSync(ARTIFACTS, { recursive: true }); });
after(() => server.close());

// Every component's results and errors, recorded from before the page's scripts run.
const record = (page) => page.addInitScript(() => {
  window.results = {};
  window.errors = [];
  window.codes = [];
  window.ready = 0;
  document.addEventListener('ready', () => { window.ready++; });
  document.addEventListener('result', (e) => { window.results[e.target.id] = e.detail.labels; });
  document.addEventListener('error', (e) => {
    if (e.detail?.message) { window.errors.push(e.detail.message); window.codes.push(e.detail.code); }
  });
});

// Each component as a reader sees it: its canvas size and the pixel at (x, y), and its status
// line's text, font size, colour and the background it is read on.
const components = (page, [x, y]) => page.evaluate(([x, y, ratio]) => {
  const contrast = new Function(`return ${ratio}`)();
  return [...document.querySelectorAll('word-mask')].map((el) => {
    const canvas = el.shadowRoot.querySelector('canvas');
    const line = el.shadowRoot.querySelector('[part=status]');
    const style = getComputedStyle(line);
    let background = 'rgb(255, 255, 255)';
    for (let node = line; node; node = node.parentElement ?? node.getRootNode().host) {
      const b = getComputedStyle(node).backgroundColor;
      if (!/rgba\(.*, 0\)|transparent/.test(b)) { background = b; break; }
    }
    const pixel = canvas.width > 1 ? Array.from(canvas.getContext('2d').getImageData(x, y, 1, 1).data.slice(0, 3)) : null;
    return { width: canvas.width, height: canvas.height, pixel, status: line.textContent, size: parseFloat(style.fontSize), contrast: contrast(style.color, background) };
  });
}, [x, y, contrastRatio.toString()]);

test('the src image shows at once while the model loads; results follow', { timeout: 180_000 }, async () => {
  const held = [];
  const hold = async (page) => {
    await record(page);
    // The weights wait until the first paint has been looked at.
    await page.route('**/semantic-colours/model.safetensors', (route) => { held.push(route); });
  };
  const path = `/embed.html?model=/tests/fixtures/semantic-colours/&src=${SRC}`;
  await withPage(server.url, { webgpu: false, path, before: hold, errors: 'console' }, async (page) => {
    await page.waitForFunction(() => [...document.querySelectorAll('word-mask')].every((el) => el.shadowRoot.querySelector('canvas').width === 50));
    while (!held.length) await new Promise((resolve) => setTimeout(resolve, 50));
    const loading = await components(page, [25, 30]);
    for (const c of loading) {
      assert.deepEqual([c.width, c.height], [50, 90], 'the image, before any result');
      assert.ok(c.pixel[0] > 200 && c.pixel[1] < 60 && c.pixel[2] < 60, `the red disc, unpainted: ${c.pixel}`);
      assert.match(c.status, /^Loading the model/);
      assert.ok(c.size >= 14, `status text ${c.size} px`);
      assert.ok(c.contrast >= 4.5, `status contrast ${c.contrast.toFixed(2)}`);
    }
    assert.deepEqual(await page.evaluate(() => window.results), {}, 'no result while the weights are held');
    await page.screenshot({ path: `${ARTIFACTS}loading.png`, fullPage: true });
    assert.deepEqual(await audit(page), [], 'embed.html while loading');

    assert.equal(held.length, 1, 'the weights were asked for once');
    await held[0].continue();
    await page.waitForFunction(() => Object.keys(window.results).length === 2 || window.errors.length, null, { timeout: 120_000 });
    assert.deepEqual(await page.evaluate(() => window.errors), []);
    const done = await components(page, [25, 30]);
    for (const c of done) {
      assert.equal(c.status, '', 'nothing left to say');
      assert.notDeepEqual(c.pixel, loading[0].pixel, 'the disc is painted now');
    }
    await page.screenshot({ path: `${ARTIFACTS}results.png`, fullPage: true });
    assert.deepEqual(await audit(page), [], 'embed.html with results');
  });
});

for (const colorScheme of ['light', 'dark']) {
  test(`a missing model or image, or a broken checkpoint, says which, and what to check (${colorScheme})`, { timeout: 180_000 }, async () => {
    const model = `/embed.html?model=/tests/fixtures/semantic-colours/&src=${SRC}`;
    const check = 'Check the model attribute: a hub id \\(owner\\/name\\) or a folder URL holding config\\.json and model\\.safetensors\\.$';
    const cases = [
      { name: 'model', path: `/embed.html?model=/tests/fixtures/no-such-model/&src=${SRC}`, image: true, ready: 0, code: 'model-not-found',
        says: new RegExp(`^The model "\\/tests\\/fixtures\\/no-such-model\\/" could not be loaded: .*HTTP 404 \\(no such file there\\)\\. ${check}`) },
      { name: 'image', path: '/embed.html?model=/tests/fixtures/semantic-colours/&src=/tests/fixtures/images/no-such-image.png', image: false, ready: 2, code: 'http',
        says: /^The image "\/tests\/fixtures\/images\/no-such-image\.png" could not be loaded: HTTP 404\. Check the src attribute: an image URL this page may fetch\.$/ },
      // Weights cut short, and a config.json of another architecture, served in the model's place.
      { name: 'checkpoint', path: model, image: true, ready: 0, code: 'not-a-checkpoint', says: new RegExp(`could not be loaded: cannot read checkpoint .*\\. ${check}`),
        route: ['**/semantic-colours/model.safetensors', { body: Buffer.from([16, 0, 0, 0, 0, 0, 0, 0, 123]) }] },
      { name: 'architecture', path: model, image: true, ready: 0, code: 'wrong-architecture', says: new RegExp(`could not be loaded: .*model_type is 'bert'.*\\. ${check}`),
        route: ['**/semantic-colours/config.json', { body: '{"model_type": "bert"}', contentType: 'application/json' }] },
    ];
    // `ready`: the components whose model loads (the error must outlast that).
    for (const { name, path, image, ready, says, code, route } of cases) {
      const before = async (page) => {
        await record(page);
        if (route) await page.route(route[0], (r) => r.fulfill(route[1]));
      };
      await withPage(server.url, { webgpu: false, path, before, context: { colorScheme } }, async (page) => {
        await page.waitForFunction((n) => window.errors.length >= 2 && window.ready >= n, ready, { timeout: 60_000 });
        const errors = await page.evaluate(() => window.errors);
        for (const message of errors) assert.match(message, says);
        assert.deepEqual(await page.evaluate(() => window.codes), [code, code], 'each error event carries its code');
        for (const c of await components(page, [25, 30])) {
          assert.match(c.status, says);
          assert.ok(c.size >= 14, `error text ${c.size} px`);
          assert.ok(c.contrast >= 4.5, `error contrast ${c.contrast.toFixed(2)}`);
          if (image) assert.ok(c.width === 50 && c.pixel[0] > 200, 'the image stays shown');
        }
        await page.screenshot({ path: `${ARTIFACTS}error-${name}-${colorScheme}.png`, fullPage: true });
        assert.deepEqual(await audit(page), [], `embed.html, ${name} missing`);
      });
    }
  });
}
