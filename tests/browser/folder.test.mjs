// Exports in the page, against the command line's: five known scenes (the colour scene of the
// Rust tests shifted sideways, as tests/native/exports.rs paints them) are written as PNGs into
// a folder with a text file and a subfolder beside them, and labelled by `wordmask segment
// --images` (the release binary) with the colour checkpoint. <word-mask>'s toCOCO(), toYOLO(),
// toLabelMe() and toVOC() on one scene must write the CLI's files for it; the page's folder mode
// (the folder picked, labelled, downloaded as a zip) must write the CLI's coco.json and the
// other formats' files; fixes (an object given another word, one removed, one added in Point
// mode) change the zip, and survive a reload. The fixes themselves (folder.js) are checked on a
// small result first.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import { unzipSync } from '../../www/vendor/fflate.js';
import { addObject, byName, listImages, reassign, removeObject } from '../../www/folder.js';
import { audit } from './axe.mjs';
import { SCENE, SCENE_MODEL, startServer, withPage } from './harness.mjs';

const ROOT = new URL('../../', import.meta.url).pathname;
const ARTIFACTS = new URL('./artifacts/', import.meta.url).pathname;
const LABELS = 'yellow, green|lime, red, blue';
const SCENES = 5;

// The CLI: the release binary `cargo build --release` (and `cargo test --release`) leave in the
// target folder, or WORDMASK_BIN.
function cli() {
  const target = process.env.CARGO_TARGET_DIR || join(ROOT, 'target');
  const bin = process.env.WORDMASK_BIN || join(target, 'release', 'wordmask');
  assert.ok(existsSync(bin), `the CLI is not built (${bin}): run cargo build --release, or set WORDMASK_BIN`);
  return bin;
}

// Runs in the page: the scene shifted right by `shift` pixels, wrapping round (paint_scenes), as
// PNG bytes.
async function scenePng([scene, shift]) {
  const { width, height } = scene;
  const plain = new OffscreenCanvas(width, height);
  const g = plain.getContext('2d');
  for (const { rgb, x, y } of scene.regions) {
    g.fillStyle = `rgb(${rgb.join(',')})`;
    g.fillRect(x[0], y[0], x[1] - x[0], y[1] - y[0]);
  }
  const shifted = new OffscreenCanvas(width, height);
  const s = shifted.getContext('2d');
  s.drawImage(plain, shift % width, 0);
  s.drawImage(plain, (shift % width) - width, 0);
  return Array.from(new Uint8Array(await (await shifted.convertToBlob({ type: 'image/png' })).arrayBuffer()));
}

let server;
let temp;
let photos;
let cliOut;
before(async () => {
  server = await startServer();
  temp = mkdtempSync(join(tmpdir(), 'wordmask-folder-'));
  photos = join(temp, 'photos');
  mkdirSync(join(photos, 'more'), { recursive: true });
  await withPage(server.url, { webgpu: false, path: '/', errors: false }, async (page) => {
    for (let k = 0; k < SCENES; k++) {
      writeFileSync(join(photos, `scene-${k}.png`), Buffer.from(await page.evaluate(scenePng, [SCENE, 16 * k])));
    }
  });
  // What both leave out: a file that is no image, and a subfolder's images.
  writeFileSync(join(photos, 'notes.txt'), 'not an image\n');
  writeFileSync(join(photos, 'more', 'scene-9.png'), readFileSync(join(photos, 'scene-0.png')));
  cliOut = join(temp, 'labels');
  execFileSync(cli(), ['segment', '--backend', 'cpu', '--model', join(ROOT, 'tests/fixtures/semantic-colours'), '--images', photos,
    '--labels', LABELS, '--background', 'none', '--threshold', '0', '--templates', 'single',
    '--format', 'coco,yolo,labelme,voc', '--out', cliOut], { stdio: ['ignore', 'ignore', 'pipe'] });
});
after(() => {
  server?.close();
  if (temp) rmSync(temp, { recursive: true, force: true });
});

const cliFile = (path) => readFileSync(join(cliOut, path));
const cliJson = (path) => JSON.parse(cliFile(path).toString('utf8'));

test('folder.js: names sort as the CLI sorts them, and fixes keep the label map and the objects in step', () => {
  assert.deepEqual(['b.png', 'B.png', 'a10.png', 'a2.png', 'é.png', 'z.png'].sort(byName), ['B.png', 'a10.png', 'a2.png', 'b.png', 'z.png', 'é.png']);
  const file = (name) => ({ file: { name }, path: name });
  const listed = listImages([file('p/b.JPG'), file('p/a.png'), file('p/sub/c.png'), file('p/n.txt')]);
  assert.deepEqual(listed.images.map((i) => [i.name, i.stem, i.id]), [['a.png', 'a', 1], ['b.JPG', 'b', 2]]);
  assert.deepEqual(listed.left, { subfolders: 1, others: 1 });
  assert.throws(() => listImages([file('p/a.png'), file('p/a.jpg')]), /share the name a/);

  // 4 x 2: object 1 (word 0) on the left half, object 2 (word 1) on the right.
  const result = {
    width: 4, height: 2,
    labels: [{ label: 'red', share: 0.5 }, { label: 'blue', share: 0.5 }], unlabelled: 0,
    labelMap: Uint8Array.from([1, 1, 2, 2, 1, 1, 2, 2]),
    instances: Uint16Array.from([1, 1, 2, 2, 1, 1, 2, 2]),
    objects: [{ id: 1, class: 0, label: 'red', score: 1, box: [0, 0, 1, 1], area: 4 }, { id: 2, class: 1, label: 'blue', score: 1, box: [2, 0, 3, 1], area: 4 }],
  };
  reassign(result, 2, 0);
  assert.deepEqual(Array.from(result.labelMap), [1, 1, 1, 1, 1, 1, 1, 1]);
  assert.deepEqual(result.counts, [{ label: 'red', count: 2 }, { label: 'blue', count: 0 }]);
  assert.deepEqual(result.labels.map((l) => l.share), [1, 0]);
  addObject(result, { mask: Uint8Array.from([0, 1, 1, 0, 0, 0, 0, 0]), label: 'blue', score: 0.9 });
  assert.deepEqual(Array.from(result.instances), [1, 3, 3, 2, 1, 1, 2, 2]);
  assert.deepEqual(Array.from(result.labelMap), [1, 2, 2, 1, 1, 1, 1, 1]);
  assert.deepEqual(result.objects.map((o) => [o.id, o.class, o.area, o.box]), [[1, 0, 3, [0, 0, 1, 1]], [2, 0, 3, [2, 0, 3, 1]], [3, 1, 2, [1, 0, 2, 0]]]);
  removeObject(result, 1);
  assert.deepEqual(Array.from(result.labelMap), [0, 2, 2, 1, 0, 0, 1, 1]);
  assert.deepEqual(result.objects.map((o) => o.id), [2, 3]);
  assert.equal(result.unlabelled, 3 / 8);
});

test('<word-mask>: toCOCO(), toYOLO(), toLabelMe() and toVOC() write the CLI\'s files for the image', { timeout: 300_000 }, async () => {
  const png = Array.from(readFileSync(join(photos, 'scene-0.png')));
  await withPage(server.url, { webgpu: false, path: '/', errors: false }, async (page) => {
    const out = await page.evaluate(async ([model, labels, png]) => {
      await import('/word-mask.js');
      const el = document.createElement('word-mask');
      for (const [k, v] of [['model', model], ['labels', labels], ['templates', 'single'], ['threshold', '0'], ['background', 'none']]) el.setAttribute(k, v);
      document.body.append(el);
      const bitmap = await createImageBitmap(new Blob([Uint8Array.from(png)], { type: 'image/png' }));
      const result = await el.segment(bitmap);
      const fileName = 'scene-0.png';
      const text = (bytes) => new TextDecoder().decode(bytes);
      const voc = await result.toVOC({ fileName });
      // The ModelClient's own result has the same methods.
      const { sharedClient } = await import('/client.js');
      const ctx = new OffscreenCanvas(bitmap.width, bitmap.height).getContext('2d');
      ctx.drawImage(bitmap, 0, 0);
      const rgba = new Uint8Array(ctx.getImageData(0, 0, bitmap.width, bitmap.height).data.buffer);
      const plain = await sharedClient().segment({ rgba, width: bitmap.width, height: bitmap.height, labels, options: { templates: 'single', threshold: 0, background: 'none' } });
      return {
        keys: Object.keys(result).sort(),
        cloned: Object.keys(structuredClone(result)).length,
        coco: await result.toCOCO({ fileName }),
        polygons: await result.toCOCO({ fileName, polygons: true }),
        yolo: await result.toYOLO({ fileName }),
        labelme: await result.toLabelMe({ fileName, imagePath: '../../photos/scene-0.png' }),
        voc: { classPng: Array.from(voc.classPng), objectPng: Array.from(voc.objectPng), labelmap: voc.labelmap },
        client: await plain.toCOCO({ fileName }),
        noLabels: await el.segment(bitmap).then((r) => { el.setAttribute('labels', ''); return r.toCOCO({ fileName }); }),
        bad: await result.toCOCO({ fileName, minArea: -1 }).then(() => 'accepted', (e) => e.message),
      };
    }, [`${SCENE_MODEL}/`, LABELS, png]);
    // The methods are not part of the data: the result clones as before.
    assert.ok(!out.keys.includes('toCOCO'), out.keys.join());
    assert.equal(out.cloned, out.keys.length);
    assert.deepEqual(out.coco, cliJson('coco/scene-0.json'));
    assert.equal(out.coco.annotations.length >= 4, true, 'an annotation a painted region at least');
    assert.deepEqual(out.client, out.coco, 'the ModelClient result writes the same file');
    assert.deepEqual(out.noLabels, out.coco, 'the words of the segmentation, not those typed later');
    assert.ok(out.polygons.annotations.every((a) => Array.isArray(a.segmentation)), 'polygons on request');
    assert.equal(out.yolo.txt, cliFile('yolo/labels/scene-0.txt').toString('utf8'));
    assert.match(out.yolo.dataYaml, /names:\n {2}0: "yellow"\n {2}1: "green"\n {2}2: "red"\n {2}3: "blue"\n/);
    assert.deepEqual(out.labelme, cliJson('labelme/scene-0.json'));
    assert.deepEqual(Buffer.from(out.voc.classPng), cliFile('voc/SegmentationClass/scene-0.png'));
    assert.deepEqual(Buffer.from(out.voc.objectPng), cliFile('voc/SegmentationObject/scene-0.png'));
    assert.equal(out.voc.labelmap, cliFile('voc/labelmap.txt').toString('utf8'));
    assert.match(out.bad, /export/);
  });
});

// The page's zip, unpacked: path -> bytes.
async function downloadZip(page) {
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#folder-download')]);
  assert.equal(download.suggestedFilename(), 'photos-labels.zip');
  return unzipSync(new Uint8Array(readFileSync(await download.path())));
}

const json = (bytes) => JSON.parse(Buffer.from(bytes).toString('utf8'));
const statusIs = (page, pattern, timeout = 120_000) => page.waitForFunction((p) => new RegExp(p).test(document.getElementById('folder-status').textContent), pattern.source, { timeout });

test('the page labels a folder, and its zip holds the CLI\'s files; fixes change it and survive a reload', { timeout: 600_000 }, async () => {
  const context = { viewport: { width: 1440, height: 900 }, acceptDownloads: true };
  const path = `/?model=${SCENE_MODEL}/&sam=/tests/fixtures/sam-colours/`;
  await withPage(server.url, { webgpu: false, context, path, errors: 'console' }, async (page) => {
    await page.waitForFunction(() => /Load a model/.test(document.getElementById('status').textContent));
    await page.click('#load');
    await page.waitForFunction(() => /Model ready/.test(document.getElementById('status').textContent), null, { timeout: 60_000 });
    await page.fill('#labels', LABELS);
    await page.click('summary:has-text("Advanced")');
    await page.selectOption('#templates', 'single');
    await page.fill('#background', 'none');
    await page.$eval('#threshold', (t) => { t.value = '0'; t.dispatchEvent(new Event('input')); });

    await page.setInputFiles('#folder', photos);
    await statusIs(page, /^photos: 5 images \(left out: 1 in subfolders, 1 not PNG or JPEG, as the CLI does\)\. /);
    assert.deepEqual(await page.$$eval('#folder-strip .thumb', (b) => b.map((x) => x.dataset.name)), [0, 1, 2, 3, 4].map((k) => `scene-${k}.png`));
    await page.click('#folder-run');
    await statusIs(page, /^Done: 5 labelled now, 5 of 5 in all\./, 300_000);
    assert.equal(await page.$$eval('#folder-strip .thumb.done', (b) => b.length), SCENES);
    await page.screenshot({ path: `${ARTIFACTS}folder.png`, fullPage: true });
    assert.deepEqual(await audit(page), [], 'the folder labelled');

    const zip = await downloadZip(page);
    const names = Object.keys(zip).sort();
    const stems = [0, 1, 2, 3, 4].map((k) => `scene-${k}`);
    assert.deepEqual(names, [
      'photos-labels/coco.json', 'photos-labels/coco_results.json',
      ...stems.map((s) => `photos-labels/labelme/${s}.json`),
      ...stems.map((s) => `photos-labels/voc/SegmentationClass/${s}.png`),
      ...stems.map((s) => `photos-labels/voc/SegmentationObject/${s}.png`),
      'photos-labels/voc/labelmap.txt', 'photos-labels/yolo/data.yaml',
      ...stems.map((s) => `photos-labels/yolo/labels/${s}.txt`),
    ].sort());
    // The CLI's merged COCO file, the same: images, categories, every annotation.
    const coco = json(zip['photos-labels/coco.json']);
    assert.deepEqual(coco, cliJson('coco.json'));
    assert.deepEqual(json(zip['photos-labels/coco_results.json']), cliJson('coco_results.json'));
    for (const stem of stems) {
      assert.deepEqual(json(zip[`photos-labels/labelme/${stem}.json`]), cliJson(`labelme/${stem}.json`), `${stem}: LabelMe`);
      assert.equal(Buffer.from(zip[`photos-labels/yolo/labels/${stem}.txt`]).toString('utf8'), cliFile(`yolo/labels/${stem}.txt`).toString('utf8'), `${stem}: YOLO`);
      for (const part of ['SegmentationClass', 'SegmentationObject']) {
        assert.deepEqual(Buffer.from(zip[`photos-labels/voc/${part}/${stem}.png`]), cliFile(`voc/${part}/${stem}.png`), `${stem}: VOC ${part}`);
      }
    }

    // Fixes on the second image: its largest object given another word, the next one removed.
    await page.click('#folder-strip .thumb[data-name="scene-1.png"]');
    await page.waitForFunction(() => document.querySelector('#folder-strip .thumb[aria-current=true]')?.dataset.name === 'scene-1.png');
    const ofImage = (file) => file.annotations.filter((a) => a.image_id === 2).sort((a, b) => b.area - a.area);
    const [largest, next] = ofImage(coco);
    const word = (id) => coco.categories[id - 1].name;
    const press = async (annotation) => {
      // The object list names an object by its word and its place among that word's objects.
      const area = `${annotation.area.toLocaleString('en')} px`;
      await page.click(`#objects li button:has-text("${area}")`);
      await page.waitForFunction(() => !document.getElementById('folder-fix').hidden);
    };
    await press(largest);
    assert.deepEqual(await audit(page), [], 'an object being fixed');
    const other = coco.categories.find((c) => c.id !== largest.category_id);
    await page.selectOption('#folder-fix-word', String(other.id - 1));
    await page.click('#folder-fix-apply');
    await statusIs(page, new RegExp(`is ${other.name} now\\.$`));
    await press(next);
    await page.click('#folder-fix-remove');
    await statusIs(page, /^Removed object \d+ from scene-1\.png\.$/);
    const fixed = json((await downloadZip(page))['photos-labels/coco.json']);
    const after = ofImage(fixed);
    assert.equal(after.length, ofImage(coco).length - 1, 'one object fewer');
    assert.equal(after[0].category_id, other.id, `the largest object (${word(largest.category_id)}) is ${other.name} now`);
    assert.deepEqual(after[0].segmentation, largest.segmentation);
    assert.ok(!after.some((a) => a.area === next.area && a.category_id === next.category_id && a.bbox.join() === next.bbox.join()), 'the removed one is gone');
    assert.deepEqual(fixed.annotations.filter((a) => a.image_id !== 2).map(({ id, ...a }) => a), coco.annotations.filter((a) => a.image_id !== 2).map(({ id, ...a }) => a), 'the other images as they were');

    // Point mode on the third image (shifted 32 px): the colour SAM outlines the yellow square,
    // the words name it, and it is added to the image on top of the region it covers.
    await page.click('#tab-point');
    await page.click('#sam-load');
    await page.waitForFunction(() => /ready/.test(document.getElementById('status').textContent), null, { timeout: 60_000 });
    await page.click('#folder-strip .thumb[data-name="scene-2.png"]');
    await page.waitForFunction(() => document.querySelector('#folder-strip .thumb[aria-current=true]')?.dataset.name === 'scene-2.png');
    const yellow = SCENE.regions.find((r) => r.word === 'yellow');
    const box = await page.locator('#view').boundingBox();
    await page.mouse.click(box.x + ((yellow.probe[0] + 32) * box.width) / SCENE.width, box.y + (yellow.probe[1] * box.height) / SCENE.height);
    await page.waitForFunction(() => /^Outlined yellow/.test(document.getElementById('status').textContent), null, { timeout: 120_000 });
    await page.click('#folder-add');
    await statusIs(page, /^Added 1 object to scene-2\.png\.$/);
    const added = json((await downloadZip(page))['photos-labels/coco.json']);
    const third = (file) => file.annotations.filter((a) => a.image_id === 3);
    const yellowArea = (file) => third(file).filter((a) => a.category_id === 1).reduce((sum, a) => sum + a.area, 0);
    const last = third(added).at(-1);
    assert.equal(last.category_id, 1, 'the added object is the image\'s last, named yellow');
    assert.ok(last.area > 0.95 * yellowArea(fixed), `it covers the yellow region (${last.area} of ${yellowArea(fixed)} pixels)`);
    assert.ok(Math.abs(yellowArea(added) - yellowArea(fixed)) < 0.05 * yellowArea(fixed), 'the region it covers gave its pixels up');
    assert.deepEqual(added.annotations.filter((a) => a.image_id !== 3).map(({ id, ...a }) => a), fixed.annotations.filter((a) => a.image_id !== 3).map(({ id, ...a }) => a));

    // After a reload the folder, picked again, comes back labelled and fixed.
    await page.reload();
    await page.waitForFunction(() => /Load a model/.test(document.getElementById('status').textContent));
    await page.setInputFiles('#folder', photos);
    await statusIs(page, /; 5 labelled before, kept from the last visit\./);
    assert.deepEqual(json((await downloadZip(page))['photos-labels/coco.json']), added);
  });
});
