// int8 weights in the page: a checkpoint folder with `model.q8.safetensors` beside its weights
// (written by `wordmask convert --dtype q8 --beside`, the release binary) is read from those
// when asked (`client.load(url, {q8: true})`, the page's box, `<word-mask q8>`), on WebGPU and
// on the CPU fallback (whose packed products keep the panels int8); the colour scene still gets
// its words, and the full weights are not downloaded. Without the ask, or where the folder has
// no int8 file, the full weights are read. Local files are chosen by the same rule.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import { serve } from '../../tools/serve.mjs';
import { chooseModelFiles } from '../../www/modelfiles.js';
import { segmentSceneAsked, withPage, workerClient } from './harness.mjs';

const ROOT = new URL('../../', import.meta.url).pathname;

function cli() {
  const target = process.env.CARGO_TARGET_DIR || join(ROOT, 'target');
  const bin = process.env.WORDMASK_BIN || join(target, 'release', 'wordmask');
  assert.ok(existsSync(bin), `the CLI is not built (${bin}): run cargo build --release, or set WORDMASK_BIN`);
  return bin;
}

let server;
let url;
let temp;
before(async () => {
  temp = mkdtempSync(join(tmpdir(), 'wordmask-q8-'));
  const folder = join(temp, 'colours');
  mkdirSync(folder);
  for (const f of ['config.json', 'model.safetensors']) copyFileSync(join(ROOT, 'tests/fixtures/semantic-colours', f), join(folder, f));
  execFileSync(cli(), ['convert', '--model', folder, '--dtype', 'q8', '--beside'], { stdio: 'pipe' });
  assert.ok(existsSync(join(folder, 'model.q8.safetensors')));
  server = await serve(0, { '/tests/fixtures/': 'tests/fixtures', '/q8/': temp });
  url = `http://127.0.0.1:${server.address().port}`;
});
after(() => {
  server?.closeAllConnections();
  server?.close();
  if (temp) rmSync(temp, { recursive: true, force: true });
});

test('local files: the int8 weights are chosen only when asked for', () => {
  const files = ['config.json', 'model.safetensors', 'model.q8.safetensors'].map((name) => ({ name }));
  assert.equal(chooseModelFiles(files, { q8: true }).weights.name, 'model.q8.safetensors');
  const full = chooseModelFiles(files);
  assert.equal(full.weights.name, 'model.safetensors');
  assert.deepEqual(full.ignored, ['model.q8.safetensors']);
  assert.equal(chooseModelFiles(files.slice(0, 2), { q8: true }).weights.name, 'model.safetensors');
});

for (const backend of ['webgpu', 'cpu']) {
  test(`${backend}: a folder URL with model.q8.safetensors is read from it when asked, and the scene gets its words`, { timeout: 300_000 }, async () => {
    await withPage(url, { webgpu: backend === 'webgpu' }, async (page) => {
      await page.waitForFunction(() => /Load a model\.$/.test(document.getElementById('status').textContent));
      await page.evaluate(workerClient);
      const device = await page.evaluate((b) => ask({ type: 'init', backend: b }), backend);
      assert.equal(device.status, 'device', JSON.stringify(device));
      const requests = [];
      page.on('request', (r) => requests.push(new URL(r.url()).pathname));
      const ready = await page.evaluate(() => ask({ type: 'load', url: '/q8/colours/', q8: true }));
      assert.equal(ready.status, 'ready', JSON.stringify(ready));
      assert.equal(ready.weights, 'model.q8.safetensors');
      assert.ok(requests.includes('/q8/colours/model.q8.safetensors'), requests.join(' '));
      assert.ok(!requests.includes('/q8/colours/model.safetensors'), 'the full weights were downloaded too');
      await segmentSceneAsked(page);
      // Not asked for: the full weights; asked for where there are none: the full weights.
      const full = await page.evaluate(() => ask({ type: 'load', url: '/q8/colours/' }));
      assert.equal(full.weights, 'model.safetensors', JSON.stringify(full));
      const none = await page.evaluate(() => ask({ type: 'load', url: '/tests/fixtures/semantic-colours/', q8: true }));
      assert.equal(none.weights, 'model.safetensors', JSON.stringify(none));
    });
  });
}

test('the page\'s box reads the int8 weights, says so, and is remembered', { timeout: 300_000 }, async () => {
  await withPage(url, { webgpu: true }, async (page) => {
    await page.waitForFunction(() => /Load a model\.$/.test(document.getElementById('status').textContent));
    await page.check('#q8-weights');
    await page.selectOption('#model-pick', 'custom');
    await page.fill('#model-url', `${url}/q8/colours/`);
    await page.click('#load');
    await page.waitForFunction(() => /Model ready/.test(document.getElementById('status').textContent), null, { timeout: 120_000 });
    assert.match(await page.textContent('#load-note'), /int8 weights \(model\.q8\.safetensors\)/);
    await page.reload();
    assert.equal(await page.isChecked('#q8-weights'), true);
  });
});
