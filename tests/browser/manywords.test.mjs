// Hundreds of words on a phone (390 x 844): the chips fold so that the image starts on the first
// screen, every word gets a colour of its own, a result that labels no pixel says why and fixes
// it in one click, and the legend puts the largest words first, folds the words with no
// pixels and filters by name. axe-core finds nothing in any of these states.
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { after, before, test } from 'node:test';

import { paletteColour } from '../../www/masks.js';
import { audit } from './audit.mjs';
import { dropSceneAndType, SCENE, SCENE_PROBES, startServer, withPage } from './harness.mjs';

const ARTIFACTS = new URL('./artifacts/many-words/', import.meta.url).pathname;
const PHONE = { viewport: { width: 390, height: 844 }, deviceScaleFactor: 1 };

let server;
before(async () => { server = await startServer(); mkdirSync(ARTIFACTS, { recursive: true }); });
after(() => server.close());

// CIELAB (D65) of an sRGB colour, from the CIE formulas.
function cielab(rgb) {
  const [r, g, b] = rgb.map((v) => v / 255).map((c) => (c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4));
  const xyz = [(0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047, 0.2126 * r + 0.7152 * g + 0.0722 * b, (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883];
  const [fx, fy, fz] = xyz.map((t) => (t > (6 / 29) ** 3 ? Math.cbrt(t) : t / (3 * (6 / 29) ** 2) + 4 / 29));
  return [116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)];
}

test('the first 300 label colours stay at least 10 ΔE*ab apart', () => {
  const colours = Array.from({ length: 300 }, (_, i) => cielab(paletteColour(i + 1)));
  let closest = { distance: Infinity };
  for (let i = 0; i < colours.length; i++) {
    for (let j = 0; j < i; j++) {
      const distance = Math.hypot(...colours[i].map((v, k) => v - colours[j][k]));
      if (distance < closest.distance) closest = { distance, pair: [j + 1, i + 1] };
    }
  }
  assert.ok(closest.distance >= 10, `labels ${closest.pair} are ${closest.distance.toFixed(1)} apart: ${paletteColour(closest.pair[0])} and ${paletteColour(closest.pair[1])}`);
});

// 300 words, 75 near-synonyms of each colour of the scene ("red 1" to "red 75", ...): the
// probability of each colour is split 75 ways, under the dense engine's threshold everywhere.
const WORDS = SCENE.labels.flatMap((colour) => Array.from({ length: 75 }, (_, i) => `${colour} ${i + 1}`));

test('300 words on a phone: folded chips, an all-unlabelled result fixed in one click, a sorted and filterable legend', { timeout: 300_000 }, async () => {
  await withPage(server.url, { webgpu: false, context: PHONE, path: '/?model=/tests/fixtures/semantic-colours/', errors: 'console' }, async (page) => {
    const shot = (state) => page.screenshot({ path: `${ARTIFACTS}${state}.png` });
    await page.waitForFunction(() => /Load a model/.test(document.getElementById('status').textContent));
    await page.click('#load');
    await page.waitForFunction(() => /Model ready/.test(document.getElementById('status').textContent), null, { timeout: 60_000 });
    await dropSceneAndType(page);
    await page.fill('#labels', WORDS.join(', '));
    await page.waitForFunction((n) => document.querySelectorAll('#chips .chip').length === n, WORDS.length);

    // The chip list is folded: a few chips, one button for the rest, and the image on the first screen.
    const folded = await page.evaluate(() => ({
      chips: [...document.querySelectorAll('#chips .chip')].filter((c) => c.getClientRects().length).length,
      more: document.getElementById('chips-more').textContent,
      expanded: document.getElementById('chips-more').getAttribute('aria-expanded'),
    }));
    assert.ok(folded.chips > 0 && folded.chips <= 12, `${folded.chips} chips shown`);
    assert.deepEqual([folded.more, folded.expanded], ['Show all 300 words', 'false']);
    await page.evaluate(() => scrollTo(0, 0));
    const top = await page.evaluate(() => document.getElementById('view').getBoundingClientRect().top);
    assert.ok(top < 844 - 200, `the image starts at y = ${top}, with room to see it on an 844-pixel screen`);
    await shot('chips-folded');
    assert.deepEqual(await audit(page), [], 'chips folded');
    await page.click('#chips-more');
    assert.equal(await page.evaluate(() => [...document.querySelectorAll('#chips .chip')].filter((c) => c.getClientRects().length).length), 300);
    assert.equal(await page.getAttribute('#chips-more', 'aria-expanded'), 'true');
    await page.click('#chips-more');

    // Every word's probability is split 75 ways: no pixel gets a word, and the page says why.
    await page.click('#segment');
    await page.waitForFunction(() => document.getElementById('status').textContent === 'Done.', null, { timeout: 120_000 });
    assert.match(await page.textContent('#legend'), /unlabelled 100\.0 %/);
    const why = await page.textContent('#unlabelled-help p');
    assert.match(why, /Every pixel stayed unlabelled: the best word's probability is about 0\.01 in most of the image, under the threshold of 0\.10/);
    assert.match(why, /words that mean nearly the same/);
    const fix = page.locator('#unlabelled-help button');
    assert.match(await fix.textContent(), /threshold/);
    const box = await page.evaluate(() => document.getElementById('unlabelled-help').getBoundingClientRect().toJSON());
    assert.ok(box.top >= 0 && box.bottom <= 844, `the explanation is on screen (y ${box.top} to ${box.bottom})`);
    await shot('all-unlabelled');
    assert.deepEqual(await audit(page), [], 'all unlabelled, explained');

    // One click: the threshold drops, the image is segmented again, and the regions get words
    // of their own colour.
    await fix.click();
    await page.waitForFunction(() => document.getElementById('status').textContent === 'Done.' && document.getElementById('legend').textContent.includes('%')
      && !/unlabelled 100/.test(document.getElementById('legend').textContent), null, { timeout: 120_000 });
    assert.equal(await page.textContent('#unlabelled-help'), '', 'nothing left to explain');
    assert.ok(Number(await page.inputValue('#threshold')) < 0.1);
    const named = await page.evaluate((probes) => {
      const help = document.getElementById('hover');
      const rect = document.getElementById('view').getBoundingClientRect();
      const { width, height } = document.getElementById('view');
      return probes.map(([x, y]) => {
        document.getElementById('view').dispatchEvent(new PointerEvent('pointermove', { clientX: rect.left + (x + 0.5) * rect.width / width, clientY: rect.top + (y + 0.5) * rect.height / height }));
        return help.textContent;
      });
    }, SCENE_PROBES);
    SCENE_PROBES.forEach(([x, y, label], i) => assert.match(named[i], new RegExp(`^${SCENE.labels[label - 1]} \\d+ `), `pixel (${x}, ${y})`));

    // The legend: largest share first, no "0.0 %" word until asked for, a filter by name.
    const legend = () => page.$$eval('#legend li', (items) => items.map((li) => li.textContent));
    const entries = (await legend()).filter((t) => !t.startsWith('unlabelled'));
    const shares = entries.map((t) => Number(/([\d.]+) %$/.exec(t)[1]));
    assert.deepEqual(shares, [...shares].sort((a, b) => b - a), `sorted by share: ${entries.slice(0, 5)}`);
    assert.ok(entries.length < 300 && shares.every((s) => s > 0), `${entries.length} entries, none at 0.0 %`);
    assert.match(await page.textContent('#legend-more'), new RegExp(`^Show ${300 - entries.length} more words with no pixels`));
    await page.evaluate(() => document.getElementById('legend').scrollIntoView());
    await shot('legend-sorted');
    assert.deepEqual(await audit(page), [], 'legend sorted, empty words folded');
    await page.fill('#legend-filter', 'green 7');
    const found = await legend();
    assert.deepEqual(found.filter((t) => !t.startsWith('unlabelled')).map((t) => t.replace(/ [\d.]+ %$/, '')).sort(),
      ['green 7', 'green 70', 'green 71', 'green 72', 'green 73', 'green 74', 'green 75'], found.join(' / '));
    await shot('legend-filtered');
    assert.deepEqual(await audit(page), [], 'legend filtered');
    await page.fill('#legend-filter', '');
    await page.click('#legend-more');
    assert.equal((await legend()).length, 301, 'unfolded: every word and the unlabelled line');
  });
});
