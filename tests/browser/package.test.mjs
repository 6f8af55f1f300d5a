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

import { pack } from '../../tools/pack.mjs';
import { serve } from '../../tools/serve.mjs';
import { SETTINGS } from '../../www/settings.js';
import { segmentSceneWithComponent, watchComponent, withPage } from './harness.mjs';

const ROOT = new URL('../../', import.meta.url).pathname;

let temp; // the tarball, the unpacked package (package/) and the other origin's page (site/)
let unpacked;
before(() => {
  temp = mkdtempSync(join(tmpdir(), 'wordmask-package-'));
  execFileSync('tar', ['-xzf', pack(temp), '-C', temp]);
  unpacked = join(temp, 'package');
});
after(() => rmSync(temp, { recursive: true, force: true }));

const readJson = (path) => JSON.parse(readFileSync(path, 'utf8'));

test('package.json and Cargo.toml carry the same version', () => {
  const cargo = readFileSync(join(ROOT, 'Cargo.toml'), 'utf8').match(/^\[package\][^[]*?^version\s*=\s*"([^"]+)"/m)[1];
  assert.equal(readJson(join(ROOT, 'package.json')).version, cargo);
});

// The lines of code a README shows for one way in: those of the fenced blocks that follow the
// line that starts with `marker`, up to the next line of prose.
function snippetLines(readme, marker) {
  const lines = readme.split('\n');
  let at = lines.findIndex((l) => l.startsWith(marker));
  assert.ok(at >= 0, `a line "${marker}…"`);
  const code = [];
  for (at += 1; at < lines.length; at++) {
    if (!lines[at].trim()) continue;
    if (!lines[at].startsWith('```')) break;
    for (at += 1; at < lines.length && !lines[at].startsWith('```'); at++) code.push(lines[at]);
  }
  return code;
}

test("the package's README is the one for npm; it and the project's show the npm and the CDN path in 5 lines each", () => {
  const npm = readFileSync(join(unpacked, 'README.md'), 'utf8');
  assert.equal(npm, readFileSync(join(ROOT, 'www/README.md'), 'utf8'));
  assert.ok(!existsSync(join(unpacked, 'www/README.md')), 'not twice');
  for (const code of ['model-not-found', 'not-a-checkpoint', 'wrong-architecture', 'no-webgpu', 'out-of-memory', 'device-lost']) {
    assert.ok(npm.includes(`| \`${code}\` |`), `the error table names ${code}`);
  }
  assert.match(npm, /^## Vite$/m);
  const project = readFileSync(join(ROOT, 'README.md'), 'utf8');
  for (const [readme, npmFrom, cdnFrom] of [[npm, 'From npm', 'From a CDN'], [project, '## `<word-mask>` on your site', 'or, from a CDN']]) {
    const lines = { npm: snippetLines(readme, npmFrom), cdn: snippetLines(readme, cdnFrom) };
    assert.ok(lines.npm.some((l) => l.includes('npm install wordmask')) && lines.npm.length <= 5, JSON.stringify(lines.npm));
    assert.ok(lines.cdn.some((l) => l.includes('<script type="module"')) && lines.cdn.length <= 5, JSON.stringify(lines.cdn));
  }
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
  let watch;
  try {
    await withPage(pageUrl, { webgpu: false, before: async (page) => { watch = await watchComponent(page); }, errors: 'console' }, async (page) => {
      assert.equal(await page.evaluate(() => crossOriginIsolated), isolated);
      const { ready, relaxed, wasm } = await segmentSceneWithComponent(page, watch);
      assert.equal(ready.backend, 'cpu');
      const folder = module(relaxed);
      assert.deepEqual(wasm.map((u) => u.slice(cdnUrl.length)), [`/${folder}wordmask_bg.wasm`], `the worker takes ${folder}, and nothing else`);
    });
    const elsewhere = watch.requests.filter((u) => !u.startsWith(cdnUrl) && !u.startsWith(pageUrl) && !/^(blob|data):/.test(u));
    assert.deepEqual(elsewhere, [], 'requests to neither server');
    assert.deepEqual(watch.answers.filter(([, status]) => status !== 200), [], 'requests not answered with the file');
  } finally {
    for (const server of [cdn, pageServer]) { server.closeAllConnections(); server.close(); }
  }
}

test('<word-mask> from the package on another origin segments on one thread', { timeout: 120_000 }, () =>
  segmentFromAnotherOrigin({ isolated: false, module: (relaxed) => (relaxed ? 'pkg/cpu-relaxed/' : 'pkg/') }));

test('<word-mask> from the package on another, isolated origin segments on the threads module', { timeout: 120_000 }, () =>
  segmentFromAnotherOrigin({ isolated: true, module: (relaxed) => (relaxed ? 'pkg/threads-relaxed/' : 'pkg/threads/') }));
