// The side-by-side speed benchmark: one checkpoint, its image tower timed in wordmask and in its
// peers, outputs checked equal, one table of ratios. The checkpoint is a CLIP model (its image
// tower) or a Segment Anything model (its image encoder), as tools/peer_export.py wrote it.
//
//   python3 tools/peer_export.py --preset small --out /tmp/peer-small   # checkpoint, ONNX, native peers
//   python3 tools/peer_export.py --preset sam-b --out /tmp/peer-sam-b    # or Segment Anything's encoder
//   ./build.sh build && cargo build --release --features cli
//   node tools/peer_bench.mjs /tmp/peer-small [--iters 10] [--rounds 3] [--no-cpu] [--no-webgpu] [--no-native] [--smoke] [--python PATH]
//
// Rows: native CPU (`wordmask bench --model DIR/model`, against PyTorch and onnxruntime timed
// by `peer_export.py --time`, in alternating rounds); Chromium's CPU (wordmask's wasm against
// onnxruntime-web's `wasm` backend on 1 and on 2 threads, the page cross-origin isolated so that
// threads are allowed: wordmask's side is its threads module in a worker, as the model worker
// runs it in an isolated page, and once more on one thread the module a page that is not
// isolated runs: pkg/cpu-relaxed/ where Chromium has relaxed SIMD, else pkg/); Chromium's WebGPU (wordmask against onnxruntime-web's `webgpu` backend).
// Each runtime's first run (module, session or model load, shader compilation) and memory are
// taken in a browser of its own; warm times in one page that holds both sides and runs them in
// alternation, the ratio being the median of the round-by-round ratios (this machine's speed
// drifts by tens of per cent between minutes). Every browser output is compared with PyTorch's
// (DIR/expected.bin): cosine ≥ 0.9999 or the run fails. `--smoke` (CI, the tiny fixture
// tests/fixtures/peer-tiny) runs one iteration of each and checks the agreement only.
//
// Segment Anything: wordmask's side is its `encode` of DIR/image.rgba (the processor's work on
// a photo of the model's input size, then the encoder), the peers' the encoder on the
// processor's pixels (DIR/input.bin); natively the `image encoder` row of `wordmask bench`
// (a random 4:3 photo padded to the square). `encode` gives no embeddings back, so wordmask's
// output is checked through one click on the encoded image (`prompt`; natively `wordmask sam
// --json`) against PyTorch's answer to it (DIR/click.json, DIR/mask.bin): predicted IoU within
// 1e-3 and, in the browser, mask IoU ≥ 0.99 (natively: the area within 1 %); onnxruntime-web's
// embeddings against PyTorch's as for CLIP. Natively, one click (prompt encoder, mask decoder, the
// best mask at the image's size) is timed too: `wordmask bench`'s click row against PyTorch and
// onnxruntime on DIR/click.onnx (`peer_export.py --time`); in the browser only the encoder.
//
// Each row also gets its effective GFLOP/s (the tower's FLOPs from DIR/model/config.json over
// the median time, tools/peer_peak.mjs) and its share of the machine's practical f32 peak, taken
// in the same run: natively numpy's sgemm at 2048³ (tools/gemm_peak.py, run by `--python` or
// $WORDMASK_PYTHON or python3) on 1 thread and on the native rows' threads, once per round; in
// Chromium a wasm SIMD128 multiply-add loop on 1 and 2 workers, before and after the CPU rows.
// WebGPU rows get no share: no peak of the adapter is measured.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

import { withBrowser } from '../tests/browser/harness.mjs';
import { ACCUMULATORS, FLOPS_PER_ITERATION, peakInPage, peakModule, towerFlops } from './peer_peak.mjs';
import { serve } from './serve.mjs';

const args = process.argv.slice(2);
const flag = (name) => args.includes(name);
const option = (name, fallback) => (args.includes(name) ? args[args.indexOf(name) + 1] : fallback);
const dir = args.find((a, i) => !a.startsWith('--') && !['--iters', '--rounds', '--wordmask', '--python'].includes(args[i - 1]));
if (!dir || !existsSync(resolve(dir, 'peer.json'))) {
  console.error('usage: node tools/peer_bench.mjs DIR [--iters 10] [--rounds 3] [--no-cpu] [--no-webgpu] [--no-native] [--smoke] [--wordmask PATH] [--python PATH]\n(DIR written by tools/peer_export.py)');
  process.exit(2);
}
const smoke = flag('--smoke');
// The native rows run the release binary: say so before minutes in the browser, not after.
const nativeRows = !flag('--no-native') && !smoke;
const nativeBin = option('--wordmask', resolve(process.env.CARGO_TARGET_DIR || 'target', 'release', 'wordmask'));
if (nativeRows && !existsSync(nativeBin)) {
  console.error(`no wordmask binary at ${nativeBin}: run cargo build --release (with the same CARGO_TARGET_DIR), or pass --wordmask PATH or --no-native`);
  process.exit(2);
}
const iters = smoke ? 1 : Number(option('--iters', 10));
const peer = JSON.parse(readFileSync(resolve(dir, 'peer.json')));
const size = peer.image_size;
const sam = peer.model === 'sam';
const click = sam ? JSON.parse(readFileSync(resolve(dir, 'click.json'))) : null;
// One pass of the tower, in FLOPs (null for a config that is not a ViT tower: no GFLOP/s then).
const flops = towerFlops(JSON.parse(readFileSync(resolve(dir, 'model', 'config.json'))), size);
// The Python of the native peers (PyTorch, onnxruntime) and of tools/gemm_peak.py (numpy only,
// so the exports' venv of ./build.sh test, $WORDMASK_PYTHON, does for it).
const peerPython = option('--python', 'python3');
const peakPython = option('--python', process.env.WORDMASK_PYTHON || 'python3');

// What a check of an output (made in the page, or natively) must meet; the failures, said.
function disagreement(check) {
  if ('cosine' in check) return check.cosine >= 0.9999 ? null : `cosine ${check.cosine} with PyTorch's output`;
  const bad = [];
  if (!(check.iouDiff <= 1e-3)) bad.push(`predicted IoU ${check.iou} against PyTorch's ${click.iou}`);
  if ('maskIou' in check && !(check.maskIou >= 0.99)) bad.push(`mask IoU ${check.maskIou} with PyTorch's mask`);
  if ('areaDiff' in check && !(check.areaDiff <= 0.01)) bad.push(`mask area ${check.area} px against PyTorch's ${click.area}`);
  return bad.length ? `the click: ${bad.join(', ')}` : null;
}
const checkText = (c) => ('cosine' in c ? `cosine ${c.cosine.toFixed(7)}` : `click IoU ${c.iou.toFixed(4)} (PyTorch ${click.iou.toFixed(4)})${'maskIou' in c ? `, mask IoU ${c.maskIou.toFixed(4)}` : ''}${'area' in c ? `, area ${c.area} px (PyTorch ${click.area})` : ''}`);

// Runs in the page: makes each runner in turn (its first run timed with the making: module,
// session or model load, shader compilation), then times `iters` rounds in which every runner
// runs once, the order alternating from round to round, so that a slow spell of this shared
// machine falls on both sides of a ratio. Each runner's output of its first run is checked in
// the page against PyTorch's (embeddings: cosine and the largest difference after
// normalising; a Segment Anything encoding: one click's predicted IoU and mask).
async function timeInPage({ specs, size, iters, sam }) {
  const bytes = async (file) => new Uint8Array(await (await fetch(`/peer/${file}`)).arrayBuffer());
  const pixels = new Float32Array((await bytes('input.bin')).buffer);
  const expected = new Float32Array((await bytes('expected.bin')).buffer);
  const rgba = sam ? await bytes('image.rgba') : null;
  const click = sam ? await (await fetch('/peer/click.json')).json() : null;
  const reference = sam ? await bytes('mask.bin') : null;
  const preprocessor = sam ? await (await fetch('/peer/model/preprocessor_config.json')).text() : undefined;
  function agreement(ours) {
    let dot = 0; let a = 0; let b = 0;
    for (let i = 0; i < ours.length; i++) { dot += ours[i] * expected[i]; a += ours[i] ** 2; b += expected[i] ** 2; }
    let maxAbs = 0;
    for (let i = 0; i < ours.length; i++) maxAbs = Math.max(maxAbs, Math.abs(ours[i] / Math.sqrt(a) - expected[i] / Math.sqrt(b)));
    return ours.length === expected.length ? { cosine: dot / Math.sqrt(a * b), maxAbs } : { cosine: NaN, maxAbs: NaN };
  }
  // wordmask's answer to the click (`{mask, iou, area}`) against PyTorch's.
  function clickAgreement({ mask, iou, area }) {
    let both = 0; let either = 0;
    for (let i = 0; i < reference.length; i++) {
      both += mask[i] && reference[i] ? 1 : 0;
      either += mask[i] || reference[i] ? 1 : 0;
    }
    return { iou, iouDiff: Math.abs(iou - click.iou), maskIou: mask.length === reference.length ? both / Math.max(either, 1) : NaN, area };
  }
  const prompt = { points: [{ x: click?.x, y: click?.y, positive: true }] };
  async function make({ kind, backend, threads, main }) {
    let memory = null;
    if (kind === 'ort') {
      const ort = await import(backend === 'webgpu' ? '/ort/ort.webgpu.min.mjs' : '/ort/ort.wasm.min.mjs');
      ort.env.wasm.wasmPaths = '/ort/';
      ort.env.wasm.numThreads = threads;
      const session = await ort.InferenceSession.create('/peer/vision.onnx', { executionProviders: [backend], graphOptimizationLevel: 'all' });
      const name = session.inputNames[0];
      const run = async () => {
        const out = await session.run({ [name]: new ort.Tensor('float32', pixels.slice(), [1, 3, size, size]) });
        const t = out[session.outputNames[0]];
        return t.location === 'gpu-buffer' ? await t.getData() : t.data;
      };
      return { run, check: async (output) => agreement(output), memory };
    }
    if (backend === 'cpu' && !main) {
      // The threads module, in a worker of its own (tools/peer_bench_worker.js).
      const worker = new Worker('/bench/peer_bench_worker.js', { type: 'module' });
      const call = (message, transfer) => new Promise((done, fail) => {
        worker.onmessage = ({ data }) => (data.error ? fail(new Error(data.error)) : done(data));
        worker.onerror = (e) => fail(new Error(e.message || 'the benchmark worker stopped'));
        worker.postMessage(message, transfer);
      });
      const loaded = await call({ type: 'load', threads, preprocessor });
      if (loaded.threads !== threads) throw new Error(`wordmask runs on ${loaded.threads} threads, not ${threads}`);
      const run = async () => {
        const copy = sam ? rgba.slice() : pixels.slice();
        return (await call(sam ? { type: 'encode', rgba: copy, size } : { type: 'run', pixels: copy, size }, [copy.buffer])).output;
      };
      const check = async (output) => (sam ? clickAgreement(await call({ type: 'prompt', prompt })) : agreement(output));
      return { run, check, memory: loaded.memory };
    }
    // WebGPU: pkg/; the CPU on one thread as a page that is not isolated runs it (www/cores.js).
    const { coreFolder, singleCore } = await import('/cores.js');
    const url = `/${coreFolder((backend === 'cpu' && singleCore()) || 'main')}wordmask.js`;
    const { default: init, WordMask } = await import(url);
    const wasm = await init();
    const wm = await WordMask.create(backend);
    if (wm.backend !== backend) throw new Error(`wordmask opened ${wm.backend}, not ${backend}`);
    const config = await (await fetch('/peer/model/config.json')).text();
    const weights = new Uint8Array(await (await fetch('/peer/model/model.safetensors')).arrayBuffer());
    const before = wasm.memory.buffer.byteLength;
    const loaded = wm.load(config, weights, 'model.safetensors', preprocessor);
    if (loaded.role !== (sam ? 'prompts' : 'words')) throw new Error(`wordmask loaded a ${loaded.role} model`);
    // The wasm heap never shrinks: its size after loading is its peak while loading.
    memory = { file: weights.length, heapBefore: before, heapAfter: wasm.memory.buffer.byteLength, module: new URL(url, location).pathname.replace(/^\/|wordmask\.js$/g, '') };
    if (sam) {
      const check = async () => {
        const { mask, iou, area } = await wm.prompt(prompt, '', undefined);
        return clickAgreement({ mask, iou, area });
      };
      return { run: () => wm.encode(rgba, size, size), check, memory };
    }
    return { run: () => wm.embedPixels(pixels.slice(), size), check: async (output) => agreement(output), memory };
  }
  const runners = [];
  for (const spec of specs) {
    const t0 = performance.now();
    const runner = await make(spec);
    const output = await runner.run();
    runner.first = performance.now() - t0;
    runner.agreement = await runner.check(output);
    runner.times = [];
    runners.push(runner);
  }
  for (let i = 0; i < iters; i++) {
    for (const runner of i % 2 ? [...runners].reverse() : runners) {
      const t = performance.now();
      await runner.run();
      runner.times.push(performance.now() - t);
    }
  }
  return { runners: runners.map(({ first, times, agreement: agree, memory }) => ({ first, times, agree, memory })), isolated: crossOriginIsolated };
}

const quantiles = (t) => {
  const s = [...t].sort((x, y) => x - y);
  const q = (p) => s[Math.min(s.length - 1, Math.floor(p * s.length))];
  return { median: q(0.5), p10: q(0.1), p90: q(0.9) };
};

const server = await serve(0, { '/peer/': resolve(dir), '/ort/': 'tests/browser/node_modules/onnxruntime-web/dist', '/bench/': 'tools' }, { isolated: true });
const url = `http://127.0.0.1:${server.address().port}/bench/peer_bench.html`;
const results = {};
const failures = [];

// Peak resident memory (VmHWM) of the browser's renderer processes, MiB: the page's process
// (one browser runs at a time; Linux only).
function rendererPeak() {
  let peak = null;
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      if (!readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('--type=renderer')) continue;
      const kb = Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);
      peak = Math.max(peak ?? 0, kb / 1024);
    } catch { /* gone */ }
  }
  return peak;
}

// One browser per step. `specs` alone: the first run and memory of each, made on its own.
// Two specs: warm times of the pair, interleaved; `results.pairs[name]` holds each side's
// quantiles and the median of the round-by-round ratios.
async function inBrowser(names, specs, webgpu, iterations) {
  try {
    await withBrowser({ webgpu }, async (browser) => timePair(browser, names, specs, iterations));
  } catch (e) {
    failures.push(`${names.join(' / ')}: ${e.message.split('\n')[0]}`);
  }
}

// The pair's (or one spec's) times in one page of `browser`.
async function timePair(browser, names, specs, iterations) {
  const page = await browser.newPage();
  await page.goto(url);
  const r = await page.evaluate(timeInPage, { specs, size, iters: iterations, sam });
  for (const [i, name] of names.entries()) {
    const { agree, times, ...rest } = r.runners[i];
    const bad = disagreement(agree);
    if (bad) failures.push(`${name}: ${bad}`);
    if (specs[i].threads > 1 && !r.isolated) failures.push(`${name}: the page is not cross-origin isolated, so threads are off`);
    if (names.length === 1) {
      results[name] = { ...rest, agree, rendererPeak: rendererPeak() };
      process.stderr.write(`${name}: first ${rest.first.toFixed(0)} ms, ${checkText(agree)}\n`);
    }
  }
  if (names.length === 2 && iterations > 0) {
    const [a, b] = r.runners.map((x) => x.times);
    const pair = { ours: quantiles(a), theirs: quantiles(b), ratio: quantiles(a.map((t, i) => t / b[i])) };
    results.pairs[names.join(' / ')] = pair;
    process.stderr.write(`${names.join(' / ')}: ${pair.ours.median.toFixed(1)} / ${pair.theirs.median.toFixed(1)} ms, paired ratio ${pair.ratio.median.toFixed(2)}\n`);
  }
}

// The wasm peak (tools/peer_peak.mjs), in a browser of its own: each variant's best GFLOP/s on
// 1 and on 2 workers over every measurement of the run.
const wasmPeak = {};
async function measureWasmPeak() {
  try {
    await withBrowser({ webgpu: false }, async (browser) => {
      const page = await browser.newPage();
      await page.goto(url);
      const modules = { 'mul+add': Array.from(peakModule(false)), relaxed_madd: Array.from(peakModule(true)) };
      const got = await page.evaluate(peakInPage, {
        modules, workerCounts: [1, 2], iterations: smoke ? 1e5 : 1e8, repeats: smoke ? 1 : 5, flopsPerIteration: FLOPS_PER_ITERATION,
      });
      if (!got['mul+add'].valid) throw new Error('Chromium does not validate the SIMD128 loop');
      for (const [variant, { valid, gflops, result }] of Object.entries(got)) {
        // The accumulators tend to 1: anything else means the loop did not run as written.
        if (valid && !(Math.abs(result - ACCUMULATORS) < 0.1)) throw new Error(`the ${variant} loop returned ${result}, not ${ACCUMULATORS}`);
        const best = (wasmPeak[variant] ??= { valid, gflops: {} });
        for (const [n, g] of Object.entries(gflops)) best.gflops[n] = Math.max(best.gflops[n] ?? 0, g);
      }
      process.stderr.write(`wasm peak: ${Object.entries(got).map(([v, { valid, gflops }]) => `${v} ${valid ? Object.values(gflops).map((g) => g.toFixed(1)).join(' / ') : 'not valid'}`).join(', ')} GFLOP/s on 1 / 2 workers\n`);
    });
  } catch (e) {
    failures.push(`wasm peak: ${e.message.split('\n')[0]}`);
  }
}
// The best of the validated variants: the practical peak of the wasm CPU path on `workers`.
const wasmBest = (workers) => Math.max(0, ...Object.values(wasmPeak).filter((v) => v.valid).map((v) => v.gflops[workers] ?? 0)) || null;

const cpu = (threads) => ({ kind: 'wordmask', backend: 'cpu', threads });
const cpuSingle = { kind: 'wordmask', backend: 'cpu', threads: 1, main: true };
const ortWasm = (threads) => ({ kind: 'ort', backend: 'wasm', threads });
const gpu = { kind: 'wordmask', backend: 'webgpu', threads: 1 };
const ortGpu = { kind: 'ort', backend: 'webgpu', threads: 1 };
results.pairs = {};
if (!flag('--no-cpu')) await measureWasmPeak();
for (const threads of flag('--no-cpu') ? [] : [1, 2]) {
  const ours = `wordmask cpu${threads > 1 ? ` ${threads}` : ''}`;
  await inBrowser([ours], [cpu(threads)], false, 0);
  await inBrowser([`ort wasm ${threads}`], [ortWasm(threads)], false, 0);
  await inBrowser([ours, `ort wasm ${threads}`], [cpu(threads), ortWasm(threads)], false, iters);
  if (threads === 1) {
    await inBrowser(['wordmask single'], [cpuSingle], false, 0);
    await inBrowser(['wordmask single', 'ort wasm 1'], [cpuSingle, ortWasm(1)], false, iters);
  }
}
// Again after the CPU rows, with smoke's one pass enough: the best of the two stands.
if (!flag('--no-cpu') && !smoke) await measureWasmPeak();
if (!flag('--no-webgpu')) {
  await inBrowser(['wordmask webgpu'], [gpu], true, 0);
  await inBrowser(['ort webgpu'], [ortGpu], true, 0);
  await inBrowser(['wordmask webgpu', 'ort webgpu'], [gpu, ortGpu], true, iters);
}
server.closeAllConnections();
server.close();

// The native peak: numpy's sgemm (tools/gemm_peak.py) on `threads`, or null where that Python
// has no numpy (said once). `nativePeak[threads]` gathers every measurement of the run.
const nativePeak = {};
let peakMissing = false;
function measureNativePeak(threads) {
  if (peakMissing) return;
  try {
    const out = execFileSync(peakPython, ['tools/gemm_peak.py', '--threads', String(threads), ...(smoke ? ['--size', '256', '--repeats', '1'] : [])], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    const got = JSON.parse(out.trim().split('\n').pop());
    (nativePeak[threads] ??= []).push(got);
  } catch (e) {
    peakMissing = true;
    process.stderr.write(`native peak not measured (${peakPython}: ${(e.stderr || e.message).trim().split('\n').pop()}); pass --python with numpy\n`);
  }
}
const peakThreads = [...new Set([1, peer.threads])];
const nativeBest = (threads) => (nativePeak[threads] ? Math.max(...nativePeak[threads].map((p) => p.gflops)) : null);

// Native: wordmask's bench and PyTorch / onnxruntime (peer_export.py --time) take turns for
// `--rounds` rounds; each ratio is the median of the per-round ratios of medians. Without
// Python's stack the peers' times recorded in DIR/peer.json at export stand in.
// The sgemm peak is measured in every round too (in smoke and without native rows, once).
let native = null;
if (!nativeRows) peakThreads.forEach(measureNativePeak);
// Segment Anything natively: wordmask's answer to the click (`wordmask sam --json`), checked
// against PyTorch's; the mask goes to a PNG that is not read back, so its area stands for it.
if (nativeRows && sam) {
  const scratch = mkdtempSync(join(tmpdir(), 'peer-sam-'));
  try {
    const out = execFileSync(nativeBin, ['sam', '--model', resolve(dir, 'model'), '--image', resolve(dir, 'image.png'), '--point', `${click.x},${click.y}`, '--out', join(scratch, 'mask.png'), '--json', '--backend', 'cpu'], { encoding: 'utf8' });
    const got = JSON.parse(out.trim().split('\n').pop());
    const agree = { iou: got.iou, iouDiff: Math.abs(got.iou - click.iou), area: got.area, areaDiff: Math.abs(got.area - click.area) / (size * size) };
    results['wordmask native'] = { agree };
    const bad = disagreement(agree);
    if (bad) failures.push(`wordmask native: ${bad}`);
  } catch (e) {
    failures.push(`wordmask native: the click failed (${e.message.split('\n')[0]})`);
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}
// A row of `wordmask bench`'s table: its median milliseconds.
const benchRow = (table, stage) => Number(table.split('\n').find((l) => l.includes(stage))?.split('|').map((c) => c.trim()).filter(Boolean)[1]);
if (nativeRows) {
  const rounds = Number(option('--rounds', 3));
  const median = (v) => quantiles(v).median;
  const ours = [];
  const clicks = [];
  const theirs = { torch: [], onnxruntime: [], torch_click: [], onnxruntime_click: [] };
  for (let i = 0; i < rounds; i++) {
    const table = execFileSync(nativeBin, ['bench', '--model', resolve(dir, 'model'), '--size', String(size), '--iters', String(iters), '--backend', 'cpu'], { encoding: 'utf8' });
    ours.push(benchRow(table, 'image encoder'));
    if (sam) clicks.push(benchRow(table, 'prompt + mask decoder'));
    if (!Number.isFinite(ours.at(-1))) throw new Error(`no image encoder row in wordmask bench's table:\n${table}`);
    let timed = null;
    try {
      const out = execFileSync(peerPython, ['tools/peer_export.py', '--time', dir, '--iters', String(iters), '--threads', String(peer.threads)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
      timed = JSON.parse(out.trim().split('\n').pop());
    } catch (e) {
      process.stderr.write(`native peers not timed again (${e.message.split('\n')[0]}); using DIR/peer.json\n`);
    }
    for (const k of ['torch', 'onnxruntime']) theirs[k].push((timed ?? peer)[k].median_ms);
    if (sam) for (const k of ['torch_click', 'onnxruntime_click']) theirs[k].push((timed ?? peer)[k]?.median_ms);
    peakThreads.forEach(measureNativePeak);
    const peaks = peakThreads.map((t) => `${nativePeak[t]?.at(-1)?.gflops ?? '—'} on ${t}`).join(', ');
    const clickTimes = sam ? `; one click: wordmask ${clicks[i]} ms, PyTorch ${theirs.torch_click[i]} ms, onnxruntime ${theirs.onnxruntime_click[i]} ms` : '';
    process.stderr.write(`native round ${i + 1}: wordmask ${ours[i]} ms, PyTorch ${theirs.torch[i]} ms, onnxruntime ${theirs.onnxruntime[i]} ms${clickTimes}; sgemm peak ${peaks} GFLOP/s\n`);
  }
  const side = (v) => ({ median: median(v), p10: Math.min(...v), p90: Math.max(...v) });
  native = { ours: side(ours), click: clicks.length ? side(clicks) : null };
  for (const k of ['torch', 'onnxruntime']) native[k] = { ...side(theirs[k]), ratio: side(ours.map((t, i) => t / theirs[k][i])) };
  for (const k of ['torch_click', 'onnxruntime_click']) {
    if (theirs[k].length && theirs[k].every(Number.isFinite)) native[k] = { ...side(theirs[k]), ratio: side(clicks.map((t, i) => t / theirs[k][i])) };
  }
}

const ms = (v) => (v == null ? '—' : v >= 100 ? v.toFixed(0) : v.toFixed(1));
const ratio = (a, b) => (a == null || b == null ? '—' : `${(a / b).toFixed(2)}×`);
const spread = (r) => (r ? ` (${ms(r.p10)}–${ms(r.p90)})` : '');
// Effective GFLOP/s of a median time, and its share of `peak` (GFLOP/s; none for WebGPU).
const gflops = (t) => (flops && t ? flops.total / t / 1e6 : null);
const rate = (g) => (g == null ? '—' : g >= 100 ? g.toFixed(0) : g.toFixed(1));
const share = (t, peak) => (gflops(t) != null && peak ? `${((100 * gflops(t)) / peak).toFixed(0)} %` : '—');
const perf = (a, b, peak) => `${rate(gflops(a))} / ${rate(gflops(b))} | ${share(a, peak)} / ${share(b, peak)}`;
const r = results;
const peakRange = (threads) => {
  const all = (nativePeak[threads] ?? []).map((p) => p.gflops);
  return all.length ? `${rate(Math.max(...all))}${all.length > 1 ? ` (lowest ${rate(Math.min(...all))})` : ''} on ${threads} thread${threads > 1 ? 's' : ''}` : null;
};
const nativeLine = peakThreads.map(peakRange).filter(Boolean);
const firstPeak = Object.values(nativePeak)[0]?.[0];
const wasmLine = Object.entries(wasmPeak).map(([v, { valid, gflops: g }]) => (valid ? `${v} ${rate(g[1])} / ${rate(g[2])}` : `${v} not validated`));
const shape = peer.vision;
const what = sam
  ? `Segment Anything image encoder of ${peer.preset} (${shape.layers} × ${shape.hidden}, windows of ${shape.window}, global attention in layers ${shape.global.join(', ')}, neck to ${shape.neck}, ${size}², ${peer.exporter} ONNX export; wordmask's times include its preprocessing of the photo)`
  : `Image tower of ${peer.preset} (${shape.layers} × ${shape.hidden}, ${size}², ${peer.exporter} ONNX export)`;
const lines = [
  `${what}, ${iters} warm runs, median (p10–p90) ms; browser ratios are medians of ${iters} paired rounds (p10–p90); native rows: medians of ${option('--rounds', 3)} alternating rounds (lowest–highest).`,
  `Machine: ${peer.machine || cpus()[0]?.model}, ${cpus().length} cores; onnxruntime-web ${JSON.parse(readFileSync('tests/browser/node_modules/onnxruntime-web/package.json')).version}.`,
  `FLOPs: ${flops ? `${(flops.total / 1e9).toFixed(3)} GFLOP a pass (matrix products, a multiply-add counted as two; ${flops.tokens} tokens)` : 'unknown (not a ViT config): no GFLOP/s'}.`,
  `Peak f32, this run, GFLOP/s: native numpy sgemm ${firstPeak ? `${firstPeak.size}³ (${firstPeak.blas ?? 'BLAS'})` : ''}: ${nativeLine.length ? nativeLine.join(', ') : 'not measured'}; Chromium wasm SIMD128 loop on 1 / 2 workers: ${wasmLine.length ? wasmLine.join(', ') : 'not measured'}. Shares: native rows against sgemm on their threads, Chromium CPU rows against the best wasm loop on theirs; WebGPU rows none (no peak of the adapter measured).`,
  '',
  '| where | wordmask | peer | ratio (wordmask / peer) | GFLOP/s (wordmask / peer) | share of peak (wordmask / peer) |',
  '| --- | ---: | ---: | ---: | ---: | ---: |',
];
if (native) {
  for (const [k, name] of [['torch', 'PyTorch'], ['onnxruntime', 'onnxruntime']]) {
    const p = native[k];
    lines.push(`| native CPU vs ${name} (${peer.threads} threads) | ${ms(native.ours.median)}${spread(native.ours)} | ${ms(p.median)}${spread(p)} | ${p.ratio.median.toFixed(2)}× (${p.ratio.p10.toFixed(2)}–${p.ratio.p90.toFixed(2)}) | ${perf(native.ours.median, p.median, nativeBest(peer.threads))} |`);
  }
  for (const [k, name] of [['torch_click', 'PyTorch'], ['onnxruntime_click', 'onnxruntime']]) {
    const p = native[k];
    if (p) lines.push(`| native CPU, one click (prompt encoder, mask decoder, mask at the image's size) vs ${name} | ${ms(native.click.median)}${spread(native.click)} | ${ms(p.median)}${spread(p)} | ${p.ratio.median.toFixed(2)}× (${p.ratio.p10.toFixed(2)}–${p.ratio.p90.toFixed(2)}) | | |`);
  }
  if (native.click && !native.torch_click) lines.push(`| native CPU, one click (prompt encoder, mask decoder, mask at the image's size) | ${ms(native.click.median)}${spread(native.click)} | — | no click.onnx in DIR | | |`);
}
const paired = (where, key, peak) => {
  const p = r.pairs[key];
  if (p) lines.push(`| ${where} | ${ms(p.ours.median)}${spread(p.ours)} | ${ms(p.theirs.median)}${spread(p.theirs)} | ${p.ratio.median.toFixed(2)}× (${p.ratio.p10.toFixed(2)}–${p.ratio.p90.toFixed(2)}) | ${perf(p.ours.median, p.theirs.median, peak)} |`);
};
paired('Chromium CPU (wasm), 1 thread', 'wordmask cpu / ort wasm 1', wasmBest(1));
paired('Chromium CPU (wasm), 2 threads', 'wordmask cpu 2 / ort wasm 2', wasmBest(2));
const single = `\`${r['wordmask single']?.memory?.module ?? 'pkg/'}\``;
paired(`Chromium CPU (wasm), 1 thread, page not isolated: ${single}`, 'wordmask single / ort wasm 1', wasmBest(1));
for (const [ours, theirs, t] of [['wordmask cpu', 'ort wasm 1', '1 thread'], ['wordmask cpu 2', 'ort wasm 2', '2 threads'], ['wordmask single', 'ort wasm 1', `1 thread, ${single}`]]) {
  if (r[ours] || r[theirs]) lines.push(`| Chromium CPU, ${t}, first run | ${ms(r[ours]?.first)} | ${ms(r[theirs]?.first)} | ${ratio(r[ours]?.first, r[theirs]?.first)} | | |`);
}
if (r['wordmask webgpu'] || r['ort webgpu']) {
  paired('Chromium WebGPU', 'wordmask webgpu / ort webgpu', null);
  lines.push(`| Chromium WebGPU, first run | ${ms(r['wordmask webgpu']?.first)} | ${ms(r['ort webgpu']?.first)} | ${ratio(r['wordmask webgpu']?.first, r['ort webgpu']?.first)} | | |`);
}
const mib = (b) => (b / 2 ** 20).toFixed(1);
for (const [name, where] of [['wordmask cpu', 'CPU, threads module'], ['wordmask cpu 2', 'CPU, 2 threads'], ['wordmask single', `CPU, ${single}`], ['wordmask webgpu', 'WebGPU']]) {
  const m = r[name]?.memory;
  if (m) lines.push(`| Chromium ${where}: wasm heap after loading / weight file (${mib(m.file)} MiB) | ${mib(m.heapAfter)} MiB (${mib(m.heapBefore)} before) | | ${(m.heapAfter / m.file).toFixed(2)}× the file | | |`);
}
for (const [ours, theirs, where] of [['wordmask cpu', 'ort wasm 1', 'CPU, 1 thread'], ['wordmask webgpu', 'ort webgpu', 'WebGPU']]) {
  const [a, b] = [r[ours]?.rendererPeak, r[theirs]?.rendererPeak];
  if (a && b) lines.push(`| Chromium ${where}: renderer peak memory, MiB | ${a.toFixed(0)} | ${b.toFixed(0)} | ${ratio(a, b)} | | |`);
}
lines.push('', `Agreement with PyTorch: ${Object.entries(r).filter(([k]) => k !== 'pairs').map(([k, x]) => `${k} ${checkText(x.agree)}`).join('; ')}.`);
console.log(lines.join('\n'));
if (failures.length) {
  console.error(`\n${failures.length} problem(s):\n${failures.join('\n')}`);
  process.exit(1);
}
