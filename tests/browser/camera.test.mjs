// The camera path with Chromium's fake capture device playing a known clip (the colour scene
// as a .y4m file): live segmentation labels the regions and shows the frame rate; freezing
// stops new frames.
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { after, before, test } from 'node:test';

import { audit } from './axe.mjs';
import { SCENE, startServer, withFakeCamera } from './harness.mjs';

const ARTIFACTS = new URL('./artifacts/', import.meta.url).pathname;
const [W, H] = [SCENE.width, SCENE.height];
const SCENE_REGIONS = SCENE.regions.length;
const inside = ({ x, y }, i, j) => i >= x[0] && i < x[1] && j >= y[0] && j < y[1];

function regionAt(i, j) {
  return SCENE.regions.findLast((r) => inside(r, i, j));
}

// Each word's share of the frame as painted (later regions on top).
const PAINTED = Object.fromEntries(SCENE.regions.map(({ word }) => [word, 0]));
for (let j = 0; j < H; j++) for (let i = 0; i < W; i++) PAINTED[regionAt(i, j).word] += 1 / (W * H);

/** A two-frame 4:2:0 Y4M clip of the scene (full-range BT.601, as C420jpeg means). */
function writeClip(path) {
  const y = Buffer.alloc(W * H);
  const u = Buffer.alloc((W / 2) * (H / 2));
  const v = Buffer.alloc((W / 2) * (H / 2));
  const clamp = (x) => Math.max(0, Math.min(255, Math.round(x)));
  for (let j = 0; j < H; j++) {
    for (let i = 0; i < W; i++) {
      const [r, g, b] = regionAt(i, j).rgb;
      y[j * W + i] = clamp(0.299 * r + 0.587 * g + 0.114 * b);
      if (i % 2 === 0 && j % 2 === 0) {
        u[(j / 2) * (W / 2) + i / 2] = clamp(-0.168736 * r - 0.331264 * g + 0.5 * b + 128);
        v[(j / 2) * (W / 2) + i / 2] = clamp(0.5 * r - 0.418688 * g - 0.081312 * b + 128);
      }
    }
  }
  const frame = Buffer.concat([Buffer.from('FRAME\n'), y, u, v]);
  writeFileSync(path, Buffer.concat([Buffer.from(`YUV4MPEG2 W${W} H${H} F10:1 Ip A1:1 C420jpeg\n`), frame, frame]));
}

/** A page at `path` allowed the camera, in a Chromium whose fake camera plays the scene clip. */
function withCameraPage(path, run) {
  const clip = `${ARTIFACTS}scene.y4m`;
  writeClip(clip);
  return withFakeCamera(server.url, clip, path, run);
}

let server;
before(async () => { server = await startServer(); mkdirSync(ARTIFACTS, { recursive: true }); });
after(() => server.close());

test('live camera frames are segmented', { timeout: 300_000 }, async () => {
  await withCameraPage('/?model=/tests/fixtures/semantic-colours/', async (page) => {
    await page.waitForFunction(() => /Load a model/.test(document.getElementById('status').textContent));
    await page.fill('#labels', SCENE.labels.join(', '));
    await page.click('summary:has-text("Advanced")');
    await page.selectOption('#templates', 'single');
    await page.click('#load');
    await page.waitForFunction(() => /Model ready/.test(document.getElementById('status').textContent), null, { timeout: 60_000 });
    await page.click('#camera');
    // Two results at least, so the frame rate is shown.
    await page.waitForFunction(() => /fps/.test(document.getElementById('fps').textContent), null, { timeout: 120_000 });
    await page.screenshot({ path: `${ARTIFACTS}camera.png`, fullPage: true });
    // The Performance readout: the frame rate, and the stages of a camera frame (one pass as
    // set: no quick look before it).
    assert.match(await page.textContent('#perf-fps'), /^\d+\.\d frames per second \(camera\)$/);
    assert.match(await page.textContent('#perf-run'), /^camera frame, \d+ ms in all\.$/);
    const legend = await page.textContent('#legend');
    const share = (word) => Number(new RegExp(`${word} ([\\d.]+) %`).exec(legend)?.[1]);
    for (const [word, painted] of Object.entries(PAINTED)) {
      const want = painted * 100;
      assert.ok(Math.abs(share(word) - want) < 4, `${word}: ${share(word)} % of the frame, painted ${want.toFixed(1)} %; legend: ${legend}`);
    }
    // Frames carry over: the steadiness control shows, and the objects keep their ids from one
    // frame to the next (the clip repeats one picture).
    assert.equal(await page.isVisible('#smooth-row'), true);
    await page.waitForFunction((regions) => document.querySelectorAll('#objects li').length >= regions, SCENE_REGIONS, { timeout: 120_000 });
    const ids = () => page.$$eval('#objects li', (items) => items.map((li) => li.dataset.label).sort());
    const before = await ids();
    const fps = await page.textContent('#fps');
    await page.waitForFunction((shown) => document.getElementById('fps').textContent !== shown, fps, { timeout: 120_000 });
    assert.deepEqual(await ids(), before, 'the objects kept their ids');
    await page.click('#freeze');
    assert.equal(await page.getAttribute('#freeze', 'aria-pressed'), 'true');
  });
});

test('<word-mask camera> segments live frames', { timeout: 300_000 }, async () => {
  await withCameraPage('/embed.html?model=/tests/fixtures/semantic-colours/&src=/tests/fixtures/images/shapes_50x90.png', async (page) => {
    const result = await page.evaluate((labels) => new Promise((resolve, reject) => {
      const el = document.createElement('word-mask');
      el.setAttribute('labels', labels);
      el.setAttribute('templates', 'single');
      el.setAttribute('camera', '');
      // Four frames: objects are followed from the second on, and keep their ids.
      const seen = [];
      el.addEventListener('result', (e) => {
        seen.push(e.detail.objects.map((o) => o.id).sort((a, b) => a - b).join(','));
        if (seen.length === 4) { el.remove(); resolve({ shares: e.detail.shares, seen }); }
      });
      el.addEventListener('error', (e) => reject(new Error(e.detail.message)));
      document.body.append(el);
      el.setAttribute('model', new URLSearchParams(location.search).get('model'));
    }), SCENE.labels.join(', '));
    const { shares, seen } = result;
    assert.ok(seen[3] !== '' && seen[3] === seen[2], `object ids frame by frame: ${JSON.stringify(seen)}`);
    const red = shares.find((s) => s.label === 'red').share;
    assert.ok(Math.abs(red - PAINTED.red) < 0.04, `red covers ${red} of the frame, painted ${PAINTED.red}`);
  });
});

test('the camera shows its frames before a model is loaded; Freeze says so, with no frame rate', { timeout: 300_000 }, async () => {
  await withCameraPage('/?model=/tests/fixtures/semantic-colours/', async (page) => {
    const status = () => page.textContent('#status');
    await page.waitForFunction(() => /Load a model/.test(document.getElementById('status').textContent));
    await page.click('#camera');
    // The preview: the clip's frame on the canvas, its red region red, no masks yet.
    await page.waitForFunction(() => {
      const [video, view] = [document.getElementById('video'), document.getElementById('view')];
      return video.videoWidth > 0 && view.width === video.videoWidth && view.height === video.videoHeight;
    }, null, { timeout: 30_000 });
    const red = SCENE.regions.find((r) => r.word === 'red');
    const seen = await page.evaluate(([fx, fy]) => {
      const view = document.getElementById('view');
      return Array.from(view.getContext('2d').getImageData(Math.floor(fx * view.width), Math.floor(fy * view.height), 1, 1).data.slice(0, 3));
    }, [red.probe[0] / W, red.probe[1] / H]);
    assert.ok(seen[0] > 200 && seen[1] < 60 && seen[2] < 60, `the red region of the frame shows ${seen}`);
    assert.match(await status(), /Camera on: load a model to see masks/);
    assert.equal(await page.textContent('#legend').then((t) => /%/.test(t)), false, 'no masks before a model');
    await page.screenshot({ path: `${ARTIFACTS}camera-preview.png`, fullPage: true });
    assert.deepEqual(await audit(page), [], 'the camera preview');

    // Live masks, then Freeze: a frozen status and no frame rate, also after the frame in flight.
    await page.fill('#labels', SCENE.labels.join(', '));
    await page.click('summary:has-text("Advanced")');
    await page.selectOption('#templates', 'single');
    await page.click('#load');
    await page.waitForFunction(() => /fps/.test(document.getElementById('fps').textContent), null, { timeout: 120_000 });
    assert.equal(await status(), 'Live.');
    await page.click('#freeze');
    await page.waitForTimeout(1500);
    assert.match(await status(), /^Frozen: the last frame stays\. Press Resume to go on\.$/);
    assert.equal(await page.textContent('#fps'), '', 'no frame rate while frozen');
    assert.equal(await page.textContent('#perf-fps'), 'no live camera');
    await page.screenshot({ path: `${ARTIFACTS}camera-frozen.png`, fullPage: true });
    assert.deepEqual(await audit(page), [], 'the camera frozen');
    await page.click('#freeze');
    await page.waitForFunction(() => /fps/.test(document.getElementById('fps').textContent), null, { timeout: 120_000 });
    assert.equal(await status(), 'Live.');
  });
});
