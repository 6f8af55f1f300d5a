// The npm package as people install it: `npm pack`'s tarball, unpacked, holds every file its
// modules may ask for (followed from the package's entry points through their imports and
// `new URL(…, import.meta.url)`s, the CPU modules' glue and snippets included), its types,
// README and licences; and, served from one origin as a CDN serves it, `<word-mask>` on a page
// of another origin segments the colour scene on the CPU fallback, in the one-thread module on
// a plain page and in the threads module on a cross-origin isolated one.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { after, before, test } from 'node:test';

import { serve } from '../../tools/serve.mjs';
import { SETTINGS } from '../../www/settings.js';
import { SCENE, SCENE_PROBES, paintScene, withPage } from './harness.mjs';

const ROOT = new URL('../../', import.meta.url).pathname;

let temp; // the tarball, the unpacked package (package/) and the other origin's page (site/)
let unpacked;
before(() => {
  temp = mkdtempSync(join(tmpdir(), 'wordmask-package-'));
  const [{ filename }] = JSON.parse(execFileSync('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', temp], { cwd: ROOT, encoding: 'utf8' }));
  execFileSync('tar', ['-xzf', join(temp, filename), '-C', temp]);
  unpacked = join(temp, 'package');
});
after(() => rmSync(temp, { recursive: true, force: true }));

const readJson = (path) => JSON.parse(readFileSync(path, 'utf8'));

test('package.json and Cargo.toml carry the same version', () => {
  const cargo = readFileSync(join(ROOT, 'Cargo.toml'), 'utf8').match(/^\[package\][^[]*?^version\s*=\s*"([^"]+)"/m)[1];
  assert.equal(readJson(join(ROOT, 'package.json')).version, cargo);
});

// The files a module asks for by a relative name: its imports (static and dynamic, literal
// names), and the string literals it hands to `new URL(…, import.meta.url)` (the worker, the
// CPU modules that www/cores.js picks among, a wasm-bindgen module's .wasm).
function references(source) {
  const found = new Set();
  for (const [, , name] of source.matchAll(/(?:\bfrom|\bimport\s*\(|\bimport)\s*(['"])(\.{1,2}\/[^'"]+)\1/g)) found.add(name);
  for (const [, args] of source.matchAll(/new URL\(((?:[^()]|\([^()]*\))*?),\s*import\.meta\.url\s*\)/g)) {
    for (const [, , name] of args.matchAll(/(['"])([^'"]+)\1/g)) found.add(name);
  }
  return [...found];
}

// Every file reachable from `entries` (paths in `dir`), and the references that are not there.
function reachable(dir, entries) {
  const seen = new Set();
  const missing = [];
  const queue = [...entries];
  while (queue.length) {
    const path = queue.shift();
    if (seen.has(path)) continue;
    seen.add(path);
    const file = join(dir, path);
    if (!existsSync(file)) { missing.push(path); continue; }
    if (!/\.m?js$/.test(path)) continue;
    for (const name of references(readFileSync(file, 'utf8'))) queue.push(relative(dir, resolve(dirname(file), name)));
  }
  return { files: [...seen], missing };
}

// The package's entry points: the targets of `exports`, types included, and `types`.
function entries(manifest) {
  const targets = [];
  const walk = (value) => (typeof value === 'string' ? targets.push(value.replace(/^\.\//, '')) : Object.values(value).forEach(walk));
  walk(manifest.exports);
  if (manifest.types) targets.push(manifest.types.replace(/^\.\//, ''));
  return targets;
}

test('the tarball holds every file the component, the worker and the CPU modules may load', () => {
  const manifest = readJson(join(unpacked, 'package.json'));
  const { files, missing } = reachable(unpacked, entries(manifest));
  assert.deepEqual(missing, [], 'files the package asks for that are not in it');
  // The scan must see what the worker picks among, or it proves nothing.
  for (const folder of ['pkg/', 'pkg/cpu-relaxed/', 'pkg/threads/', 'pkg/threads-relaxed/']) {
    assert.ok(files.includes(`${folder}wordmask_bg.wasm`), `${folder}wordmask_bg.wasm is reached`);
  }
  for (const folder of ['pkg/threads/', 'pkg/threads-relaxed/']) {
    assert.ok(files.some((f) => f.startsWith(`${folder}snippets/`)), `${folder}'s worker snippet is reached`);
  }
  assert.ok(files.includes('www/worker.js') && files.includes('www/download.js'), 'the worker and its imports are reached');
  for (const types of ['www/word-mask.d.ts', 'www/client.d.ts']) assert.ok(files.includes(types), `${types} is exported`);
  for (const file of ['README.md', 'LICENSE-MIT', 'LICENSE-APACHE']) assert.ok(existsSync(join(unpacked, file)), `${file} is in the package`);
});

test('the types name every setting: as an option of the client and as an attribute of <word-mask>', () => {
  const client = readFileSync(join(ROOT, 'www/client.d.ts'), 'utf8');
  const component = readFileSync(join(ROOT, 'www/word-mask.d.ts'), 'utf8');
  for (const { key, attribute } of SETTINGS) {
    assert.match(client, new RegExp(`^\\s*${key}\\?:`, 'm'), `SegmentOptions.${key}`);
    assert.ok(component.includes(`\`${attribute}\``), `the ${attribute} attribute`);
  }
});

// `<word-mask>` from the unpacked package, served with CORS on one origin, on a page of
// another (`isolated`: the page sends the cross-origin isolation headers): the scene segmented
// on the CPU fallback through the component's `segment`. Asserts each probe's label, that every
// request went to one of the two servers and was answered, and that the worker took the CPU
// module it should (`module`: its folder under pkg/, given whether the browser has relaxed SIMD).
async function segmentFromAnotherOrigin({ isolated, module }) {
  const cdn = await serve(0, { '/tests/fixtures/': 'tests/fixtures', '/': unpacked }, { cors: true, demo: false });
  const cdnUrl = `http://127.0.0.1:${cdn.address().port}`;
  const site = join(temp, 'site');
  mkdirSync(site, { recursive: true });
  writeFileSync(join(site, 'index.html'), `<!doctype html>
<html lang="en"><meta charset="utf-8"><link rel="icon" href="data:,"><title>wordmask from a CDN</title>
<script type="module" src="${cdnUrl}/www/word-mask.js"></script>
<word-mask model="${cdnUrl}/tests/fixtures/semantic-colours"></word-mask>
</html>`);
  // The page's origin: localhost, where the package's is 127.0.0.1 (two origins, one machine).
  const pageServer = await serve(0, { '/': site }, { isolated, demo: false });
  const pageUrl = `http://localhost:${pageServer.address().port}`;
  const requests = [];
  const answers = [];
  // The page's and its workers' errors, and the worker's warnings that a CPU module did not
  // start (it falls back to the next), as they come.
  const problems = [];
  const record = async (page) => {
    page.on('console', (m) => { if (m.type() === 'error' || / did not (start|load)/.test(m.text())) problems.push(m.text()); });
    page.on('pageerror', (e) => problems.push(e.message));
    page.context().on('request', (r) => requests.push(r.url()));
    page.context().on('response', (r) => answers.push([r.url(), r.status()]));
    await page.addInitScript(() => {
      window.events = [];
      document.addEventListener('ready', (e) => window.events.push(['ready', e.detail]));
      document.addEventListener('error', (e) => { if (e.detail?.message) window.events.push(['error', e.detail]); });
    });
  };
  try {
    await withPage(pageUrl, { webgpu: false, before: record, errors: 'console' }, async (page) => {
      assert.equal(await page.evaluate(() => crossOriginIsolated), isolated);
      // The model loads (a `ready` or `error` event), failing at once on a problem the page reports.
      for (const start = Date.now(); !(await page.evaluate(() => window.events.length));) {
        assert.deepEqual(problems, [], 'the page reports problems before the model is ready');
        assert.ok(Date.now() - start < 60_000, 'no ready or error event in 60 s');
        await new Promise((done) => setTimeout(done, 100));
      }
      const [[kind, detail]] = await page.evaluate(() => window.events);
      assert.equal(kind, 'ready', JSON.stringify(detail));
      assert.equal(detail.backend, 'cpu');
      const relaxed = await page.evaluate(() => WebAssembly.validate(new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123,
        3, 2, 1, 0, 10, 28, 1, 26, 0, 67, 0, 0, 0, 0, 253, 19, 67, 0, 0, 0, 0, 253, 19, 67, 0, 0, 0, 0, 253, 19, 253, 133, 2, 11])));
      await page.evaluate(`window.paintScene = ${paintScene}`);
      const result = await page.evaluate(async (scene) => {
        const { rgba, width, height } = paintScene(scene);
        const canvas = new OffscreenCanvas(width, height);
        canvas.getContext('2d').putImageData(new ImageData(new Uint8ClampedArray(rgba.buffer), width, height), 0, 0);
        const el = document.querySelector('word-mask');
        el.labels = scene.labels;
        const r = await el.segment(canvas);
        return { ...r, labelMap: Array.from(r.labelMap) };
      }, SCENE);
      for (const [x, y, want] of SCENE_PROBES) assert.equal(result.labelMap[y * result.width + x], want, `label at (${x}, ${y})`);
      const wasm = requests.filter((u) => u.endsWith('.wasm')).map((u) => u.slice(cdnUrl.length));
      const folder = module(relaxed);
      assert.deepEqual(wasm, [`/${folder}wordmask_bg.wasm`], `the worker takes ${folder}, and nothing else`);
    });
    assert.deepEqual(problems, [], 'errors on the page or in its workers, or a CPU module that did not start');
    const elsewhere = requests.filter((u) => !u.startsWith(cdnUrl) && !u.startsWith(pageUrl) && !/^(blob|data):/.test(u));
    assert.deepEqual(elsewhere, [], 'requests to neither server');
    assert.deepEqual(answers.filter(([, status]) => status !== 200), [], 'requests not answered with the file');
  } finally {
    for (const server of [cdn, pageServer]) { server.closeAllConnections(); server.close(); }
  }
}

test('<word-mask> from the package on another origin segments on one thread', { timeout: 120_000 }, () =>
  segmentFromAnotherOrigin({ isolated: false, module: (relaxed) => (relaxed ? 'pkg/cpu-relaxed/' : 'pkg/') }));

test('<word-mask> from the package on another, isolated origin segments on the threads module', { timeout: 120_000 }, () =>
  segmentFromAnotherOrigin({ isolated: true, module: (relaxed) => (relaxed ? 'pkg/threads-relaxed/' : 'pkg/threads/') }));
