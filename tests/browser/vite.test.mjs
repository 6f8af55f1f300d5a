// The npm package in a real client: a fresh Vite app in a temp folder installs the package's
// tarball (tools/pack.mjs) from the file, offline, imports `wordmask/word-mask` in its main.js,
// and is built with `vite build` (the Vite of this folder's devDependencies), with no config and
// with `worker: { format: 'es' }`; each dist/, served as a static host serves it, segments the
// colour scene through `<word-mask>` in Chromium: on WebGPU (SwiftShader), on the CPU fallback's
// one-thread module, and on its threads module where the page is cross-origin isolated. Vite's
// dev server, with no config, does the same on the CPU. A file the package lacks fails a build,
// shows as a build warning, or as a 404 or a CPU module that did not start in the page.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { build, createLogger, createServer } from 'vite';

import { pack } from '../../tools/pack.mjs';
import { serve } from '../../tools/serve.mjs';
import { launchBrowser, segmentSceneWithComponent, watchComponent } from './harness.mjs';

const ROOT = new URL('../../', import.meta.url).pathname;
const ISOLATION = { 'cross-origin-opener-policy': 'same-origin', 'cross-origin-embedder-policy': 'require-corp' };

let temp; // the tarball, the app and its builds
let app;
let browser; // Chromium without WebGPU, for every CPU case
const WASM_SIZES = {}; // each build's .wasm size (pkg/ here): how the test tells which one a page took
before(async () => {
  temp = mkdtempSync(join(tmpdir(), 'wordmask-vite-'));
  const tarball = pack(temp);
  app = join(temp, 'app');
  mkdirSync(app);
  // What a person writes: a page with the element, and a main.js that imports the package.
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'wordmask-vite-app', private: true, type: 'module' }));
  writeFileSync(join(app, 'index.html'), `<!doctype html>
<html lang="en"><meta charset="utf-8"><link rel="icon" href="data:,"><title>wordmask in a Vite app</title>
<script type="module" src="/main.js"></script>
<word-mask model="/tests/fixtures/semantic-colours"></word-mask>
</html>`);
  writeFileSync(join(app, 'main.js'), "import 'wordmask/word-mask';\n");
  execFileSync('npm', ['install', '--offline', '--no-audit', '--no-fund', '--ignore-scripts', tarball], { cwd: app, stdio: 'pipe' });
  for (const build of ['main', 'cpu-relaxed', 'threads', 'threads-relaxed']) {
    const folder = build === 'main' ? 'pkg/' : `pkg/${build}/`;
    WASM_SIZES[build] = statSync(join(ROOT, folder, 'wordmask_bg.wasm')).size;
  }
  assert.equal(new Set(Object.values(WASM_SIZES)).size, 4, 'the four builds are told apart by size');
  browser = await launchBrowser({ webgpu: false });
});
after(async () => {
  await browser?.close();
  rmSync(temp, { recursive: true, force: true });
});

// A logger that also keeps what Vite warned of or logged as an error (in `logged`).
function keepingLogger() {
  const logger = createLogger('warn');
  logger.logged = [];
  for (const level of ['warn', 'warnOnce', 'error']) {
    const log = logger[level].bind(logger);
    logger[level] = (message, options) => { logger.logged.push(message); log(message, options); };
  }
  return logger;
}

// `vite build` of the app into `outDir` (`config`: vite.config.js's object, or none), as its CLI
// runs it. Asserts that Vite warned of nothing and that dist/ holds the four builds' .wasm.
async function viteBuild(outDir, config) {
  if (config) writeFileSync(join(app, 'vite.config.js'), `export default ${JSON.stringify(config)};\n`);
  else rmSync(join(app, 'vite.config.js'), { force: true });
  const logger = keepingLogger();
  await build({ root: app, logLevel: 'warn', customLogger: logger, build: { outDir, emptyOutDir: true } });
  assert.deepEqual(logger.logged, [], 'Vite warned');
  const assets = readdirSync(join(outDir, 'assets'));
  assert.equal(assets.filter((f) => /^wordmask_bg-.*\.wasm$/.test(f)).length, 4, `the four .wasm: ${assets}`);
}

// dist/ and the test fixtures (the model) on one origin, with the cross-origin isolation
// headers where `isolated`.
async function host(dist, isolated) {
  const server = await serve(0, { '/tests/fixtures/': 'tests/fixtures', '/': dist }, { isolated, demo: false });
  return { url: `http://127.0.0.1:${server.address().port}/`, close: () => { server.closeAllConnections(); server.close(); } };
}

// In a fresh context of `browser`: the app at `url` segments the scene through <word-mask>.
// Asserts what segmentSceneWithComponent does, the page's isolation, that every request went to
// its host and was answered, and that the worker took the build `module` names (given whether
// the browser has relaxed SIMD: 'main', 'cpu-relaxed', 'threads' or 'threads-relaxed'), by the
// .wasm it fetched (hashed names in dist/: told by size), and that the threads module started
// its pool (a worker per core besides the model's). Gives the `ready` event's detail.
async function segmentInApp(url, { isolated, module, on = browser }) {
  const context = await on.newContext();
  try {
    const page = await context.newPage();
    const watch = await watchComponent(page);
    const workers = [];
    page.on('worker', (w) => workers.push(w.url()));
    await page.goto(url);
    assert.equal(await page.evaluate(() => crossOriginIsolated), isolated);
    const { ready, relaxed, wasm } = await segmentSceneWithComponent(page, watch);
    assert.equal(wasm.length, 1, `one module: ${wasm}`);
    const served = (await (await context.request.get(wasm[0])).body()).length;
    assert.equal(served, WASM_SIZES[module(relaxed)], `the worker takes the ${module(relaxed)} build (${wasm[0]})`);
    const cores = await page.evaluate(() => Math.min(8, navigator.hardwareConcurrency));
    assert.equal(workers.length, /threads/.test(module(relaxed)) ? 1 + cores : 1, `workers: ${workers}`);
    assert.deepEqual(watch.requests.filter((u) => !u.startsWith(url) && !/^(blob|data):/.test(u)), [], 'requests elsewhere');
    assert.deepEqual(watch.answers.filter(([, status]) => status >= 400), [], 'requests answered with an error');
    return ready;
  } finally {
    await context.close();
  }
}

const single = (relaxed) => (relaxed ? 'cpu-relaxed' : 'main');
const threads = (relaxed) => (relaxed ? 'threads-relaxed' : 'threads');

describe('vite build with no config', () => {
  let plain;
  let isolated;
  before(async () => {
    const dist = join(temp, 'dist');
    await viteBuild(dist, null);
    [plain, isolated] = await Promise.all([host(dist, false), host(dist, true)]);
  });
  after(() => { plain?.close(); isolated?.close(); });

  test('segments on WebGPU (SwiftShader)', { timeout: 120_000 }, async () => {
    const gpu = await launchBrowser({ webgpu: true });
    try {
      assert.equal((await segmentInApp(plain.url, { isolated: false, module: () => 'main', on: gpu })).backend, 'webgpu');
    } finally {
      await gpu.close();
    }
  });

  test('segments on the CPU fallback: one thread, and the threads module on an isolated page', { timeout: 60_000 }, async () => {
    assert.equal((await segmentInApp(plain.url, { isolated: false, module: single })).backend, 'cpu');
    assert.equal((await segmentInApp(isolated.url, { isolated: true, module: threads })).backend, 'cpu');
  });
});

describe("vite build with worker: { format: 'es' }", () => {
  let plain;
  let isolated;
  before(async () => {
    const dist = join(temp, 'dist-es');
    await viteBuild(dist, { worker: { format: 'es' } });
    [plain, isolated] = await Promise.all([host(dist, false), host(dist, true)]);
  });
  after(() => { plain?.close(); isolated?.close(); });

  test('segments on the CPU fallback: one thread, and the threads module on an isolated page', { timeout: 60_000 }, async () => {
    assert.equal((await segmentInApp(plain.url, { isolated: false, module: single })).backend, 'cpu');
    assert.equal((await segmentInApp(isolated.url, { isolated: true, module: threads })).backend, 'cpu');
  });
});

describe("Vite's dev server with no config", () => {
  // The model beside the app, as a folder of the site would be.
  const fixtures = {
    name: 'fixtures',
    configureServer(server) {
      server.middlewares.use('/tests/fixtures/', (req, res) => {
        const file = join(ROOT, 'tests/fixtures', decodeURIComponent(new URL(req.url, 'http://x').pathname));
        try {
          res.setHeader('content-type', 'application/octet-stream');
          res.end(readFileSync(file));
        } catch {
          res.statusCode = 404;
          res.end();
        }
      });
    },
  };
  // `headers`: what the server sends with every file (the isolation headers, or none).
  const dev = async (headers) => {
    const logger = keepingLogger();
    const server = await createServer({
      root: app, configFile: false, logLevel: 'warn', customLogger: logger, plugins: [fixtures],
      server: { host: '127.0.0.1', port: 0, headers, hmr: false },
    });
    await server.listen();
    return { url: server.resolvedUrls.local[0], logger, close: () => server.close() };
  };
  let plain;
  let isolated;
  before(async () => { [plain, isolated] = await Promise.all([dev({}), dev(ISOLATION)]); });
  after(async () => { await plain?.close(); await isolated?.close(); });

  test('segments on the CPU fallback: one thread, and the threads module on an isolated page', { timeout: 60_000 }, async () => {
    assert.equal((await segmentInApp(plain.url, { isolated: false, module: single })).backend, 'cpu');
    assert.equal((await segmentInApp(isolated.url, { isolated: true, module: threads })).backend, 'cpu');
    assert.deepEqual([...plain.logger.logged, ...isolated.logger.logged], [], 'Vite warned');
  });
});
