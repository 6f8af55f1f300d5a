// The core's one settings list (www/settings.js, printed by `wordmask settings --js` and checked
// against it by the native tests) makes the page's Advanced controls and <word-mask>'s
// attributes: every setting the loaded engine reads has a control holding the engine's default,
// and a setting set as an attribute reaches the core (`background`: the colour checkpoint's
// blue and yellow regions become background words' pixels, unlabelled).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { SCENE, SCENE_MODEL, SCENE_PROBES, paintScene, startServer, withPage } from './harness.mjs';
import { SETTINGS } from '../../www/settings.js';

let server;
before(async () => { server = await startServer(); });
after(() => server.close());

test('every setting of the loaded engine has a control with its default', { timeout: 300_000 }, async () => {
  await withPage(server.url, { webgpu: false, path: `/?model=${SCENE_MODEL}/` }, async (page) => {
    await page.waitForFunction(() => /Load a model/.test(document.getElementById('status').textContent));
    await page.click('#load');
    await page.waitForFunction(() => /Model ready/.test(document.getElementById('status').textContent), null, { timeout: 60_000 });
    const shown = await page.evaluate((keys) => Object.fromEntries(keys.map((key) => {
      const input = document.getElementById(key);
      return [key, input && { row: !document.getElementById(`${key}-row`).hidden, value: input.value }];
    })), SETTINGS.filter((s) => s.key !== 'engine').map((s) => s.key));
    for (const { key, engines } of SETTINGS) {
      if (key === 'engine') continue; // the checkpoint's own, named in #engine
      assert.ok(shown[key], `no control for ${key}`);
      assert.equal(shown[key].row, engines.includes('dense'), `${key} shown for the dense engine`);
    }
    // The dense engine's defaults (its Options::default()).
    assert.equal(shown.shortSide.value, '336');
    assert.equal(shown.window.value, '224');
    assert.equal(shown.background.value, 'background');
    assert.equal(shown.refine.value, 'none');
    assert.equal(shown.scoring.row, false, 'GroupViT scoring is not shown for a CLIP checkpoint');
  });
});

test('<word-mask> passes every setting attribute to the core', { timeout: 300_000 }, async () => {
  await withPage(server.url, { webgpu: false }, async (page) => {
    await page.evaluate(`window.paintScene = ${paintScene}`);
    const segment = (background) => page.evaluate(async ([model, scene, labels, background]) => {
      await import('/word-mask.js');
      const { rgba, width, height } = paintScene(scene);
      const canvas = new OffscreenCanvas(width, height);
      canvas.getContext('2d').putImageData(new ImageData(new Uint8ClampedArray(rgba.buffer), width, height), 0, 0);
      const el = document.createElement('word-mask');
      for (const [k, v] of [['model', model], ['labels', labels], ['templates', 'single'], ['threshold', '0']]) el.setAttribute(k, v);
      el.setAttribute('background', background);
      document.body.append(el);
      const result = await el.segment(canvas.transferToImageBitmap());
      el.remove();
      return { width: result.width, labelMap: Array.from(result.labelMap) };
    }, [`${SCENE_MODEL}/`, SCENE, 'red, green', background]);
    // The dense engine's default background word competes too: "none" leaves the two labels.
    const plain = await segment('none');
    const withBackground = await segment('blue; yellow');
    for (const [x, y, label] of SCENE_PROBES) {
      const word = SCENE.labels[label - 1];
      const at = (r) => r.labelMap[y * r.width + x];
      if (word === 'red' || word === 'green') {
        assert.equal(at(withBackground), word === 'red' ? 1 : 2, `${word} region keeps its label`);
      } else {
        assert.equal(at(withBackground), 0, `${word} region is background (unlabelled)`);
        assert.notEqual(at(plain), 0, `${word} region is labelled without background words`);
      }
    }
  });
});
