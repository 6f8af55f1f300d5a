// The worker owns the model: the page never blocks on loading or inference. Its only client is
// client.js. Every request carries an `id`, echoed in its reply; download progress is
// broadcast while a load runs.
// In:  {id, type: 'init', backend, threads?}              threads: the CPU fallback's (default: the cores, up to 8)
//      {id, type: 'frame', rgba, width, height, labels, options, smooth}   a camera's or video's frame
//      {id, type: 'reset-video'}                      the next frame starts a new stream
//      {id, type: 'load', url, q8?}                   a folder URL holding config.json and the weights
//                                                     (q8: model.q8.safetensors first, where it is)
//      {id, type: 'load', files: [{name, bytes}]}     config.json, the weights, preprocessor_config.json
//      {id, type: 'segment', rgba, width, height, labels, options, sharp?, view?, request?, preview?}   sharp: Segment Anything redraws the edges;
//                                                     preview: a quick look (progressive.js), skipped where a newer `request` of its `view` waits
//      {id, type: 'everything', rgba, width, height, labels, options, automatic?}   every object, no prompt
//      {id, type: 'encode', rgba, width, height}      Point mode: the image's heavy pass, once
//      {id, type: 'prompt', prompt, labels, options}  Point mode: {points: [{x, y, positive}], box}
//      {id, type: 'labels', text}                     the core's label parser (answered at once)
//      {id, type: 'export', request, labelMap?, confidence?, instances?, masks?}   one image's files (exports.js; at once)
//      {id, type: 'exportFolder', request, cocoParts}   a folder's class lists and merged COCO file (at once)
//      {id, type: 'wordObjects', labels, labelMap, confidence, width, height}   the words' regions as objects (at once)
//      {type: 'cancel'}                               stops a download
// Out: {id, status: 'device', backend, threads, precision, build, adapter}   build: 'main' (pkg/), 'cpu-relaxed', 'threads' or 'threads-relaxed';
//        adapter (WebGPU): {vendor, architecture, device, description, f16} as the browser gives them;
//        limits (WebGPU): what the device was granted, {maxStorageBufferBindingSize, maxBufferSize,
//        maxComputeWorkgroupStorageSize, shaderF16}, from which the core sizes its chunks
//      | {id, status: 'ready', backend, weights, role, engine, defaults?, names?}   weights: the file read
//      | {id, status: 'result', width, height, labels, unlabelled, labelMap, confidence, engine, method, timings}
//        (for a frame, also objects with ids kept from frame to frame, counts, instances, reset)
//        (with `sharp`, also objects, counts, instances, encodeMs, masksMs)
//      | {id, status: 'objects', width, height, objects, counts, instances, encodeMs, masksMs}   (everything)
//      | {id, status: 'skipped'}                      a quick look that a newer request of its view overtook
//      | {id, status: 'encoded', ms} | {id, status: 'mask', width, height, mask, iou, area, timings, label?, probability?, runnerUp?}
//      | {id, status: 'labels', labels} | {id, status: 'files', files: [{path, format, bytes}]}   (export, exportFolder)
//      | {id, status: 'objects', width, height, objects, counts, instances}   (wordObjects)
//      | {id, status: 'error', message, code, host?, httpStatus?}   code: see codeOf
//      | {status: 'progress', file, loaded, total, cached?, resumed?, retrying?, of?, connected?, host?}   (download.js)
//      | {status: 'stage', stage, preview?}           a segmentation's stage as it begins (stages.js; 'edges' with sharp; preview: a quick look's)
//      | {status: 'stage', stage: 'masks', done, total}   everything: the grid's prompts decoded so far
//      | {status: 'lost', reason}                     the GPU device was lost: this worker is done
// The core says what a checkpoint is for (`role`): a words model ('words', with its engine's
// `defaults`), or a prompt model for the Point mode ('prompts', loaded beside the words model;
// `names: true` when it names its own masks).

import { importCore, singleCore, threadsCore } from './cores.js';
import { download as downloadFile, forgetParts } from './download.js';
import { openStore } from './idb.js';
import { chooseModelFiles, weightsOrder } from './modelfiles.js';
import { SHARP_STAGES, STAGES, watchStages } from './stages.js';

// Builds of the core: pkg/ (WebGPU, and the CPU fallback on one thread), and the CPU fallback
// alone in two more (see cores.js): the threads module, its kernels spread over a pool of Web
// Workers that share its memory (pkg/threads-relaxed/ where the browser has relaxed SIMD, else
// pkg/threads/), and pkg/cpu-relaxed/ on one thread (a quarter of pkg/'s size, its matrix kernel
// on relaxed SIMD's fused multiply-add). The threads module needs a cross-origin isolated page
// (SharedArrayBuffer): it is taken there whenever the CPU runs the model, on as many threads as
// asked, one included; elsewhere pkg/cpu-relaxed/ where the browser has relaxed SIMD. Anything
// that stops one from starting falls back to the next: threads, cpu-relaxed, pkg/.
async function loadCore({ cpu, threads }) {
  if (cpu && threads) {
    try {
      const build = threadsCore();
      const core = await importCore(build);
      const wasm = await core.default();
      // A pool worker that fails to load never answers: give up on the pool after a while.
      let timer;
      const late = new Promise((_, fail) => { timer = setTimeout(() => fail(new Error(`the thread pool did not start in ${POOL_START_MS / 1000} s`)), POOL_START_MS); });
      await Promise.race([startPool(core, threads), late]).finally(() => clearTimeout(timer));
      return { ...core, wasm, build };
    } catch (e) {
      console.warn(`the CPU fallback's threads did not start (${e?.message ?? e}); using one thread`);
    }
  }
  const single = cpu && singleCore();
  if (single) {
    try {
      const core = await importCore(single);
      return { ...core, wasm: await core.default(), build: single };
    } catch (e) {
      console.warn(`the CPU fallback's relaxed-SIMD module did not load (${e?.message ?? e}); using pkg/`);
    }
  }
  const core = await importCore('main');
  return { ...core, wasm: await core.default(), build: 'main' };
}

// The threads module's pool of `threads` workers. wasm-bindgen-rayon starts each from a blob
// copy of its helper module, which works where that module stands alone as built; not where a
// bundler put it inside this worker's file (Vite's default worker format, 'iife') nor where a
// dev server adds imports to it (Vite's, by absolute paths that a blob cannot resolve). So each
// of the pool's workers starts from this worker's own script instead, which joins the pool when
// the helper's message comes (joinPool).
async function startPool(core, threads) {
  const Worker = self.Worker;
  const own = self.location.href;
  self.Worker = function PoolWorker(_helper, options) { return new Worker(own, options); };
  try {
    return await core.initThreadPool(threads);
  } finally {
    self.Worker = Worker;
  }
}

// How long the threads module's pool may take to start (its workers instantiate the module
// already compiled: well under a second where they load at all).
const POOL_START_MS = 10_000;

// The threads the CPU fallback may use here, where the page is isolated: as asked, else one per
// core up to DEFAULT_THREADS (each is a Web Worker with its own stack; the products are
// memory-bound well before that many).
const DEFAULT_THREADS = 8;
const threadsHere = (asked) => Math.max(1, Math.floor(asked ?? Math.min(DEFAULT_THREADS, navigator.hardwareConcurrency ?? 1)));

// The module `init` chose (its exports and `wasm`), and the promise of it from the moment `init`
// starts choosing, so that a label parse arriving meanwhile waits for it instead of loading
// the other module.
let core = null;
let choosing = null;
let labelsCore = null; // a single-threaded module for label parsing before any `init`

// The module for `init`'s backend and threads: pkg/ where WebGPU will run the model; for the CPU
// (asked for, or no WebGPU adapter) the threads module where the page is isolated, else the
// one-thread CPU module.
async function chooseCore({ backend, threads: asked }) {
  const cpu = backend === 'cpu' || !(await navigator.gpu?.requestAdapter().catch(() => null));
  return loadCore({ cpu, threads: self.crossOriginIsolated ? threadsHere(asked) : 0 });
}

// The GPU device wgpu opens, seen from here: when it is lost (a driver reset, the GPU process
// gone, `destroy()`), this worker's model is unusable, so the client is told at once and starts
// a fresh worker. `self.wordmaskDevice` is that device (the browser tests destroy it).
if (self.GPUAdapter) {
  const requestDevice = GPUAdapter.prototype.requestDevice;
  GPUAdapter.prototype.requestDevice = async function (...args) {
    const device = await requestDevice.apply(this, args);
    self.wordmaskDevice = device;
    device.lost.then((info) => {
      const why = [info.reason, info.message].filter(Boolean).join(': ') || 'no reason given';
      postMessage({ status: 'lost', reason: `the GPU device was lost (${why})` });
    });
    return device;
  };
}

// The wasm heap's size in bytes, for the memory tests (`self.wordmaskHeap()`).
self.wordmaskHeap = () => core?.wasm.memory.buffer.byteLength;
let wm = null;
let download = null; // AbortController of the download in progress
// Names the words model's text encoder embedded since it loaded (the text-cache tests).
self.wordmaskNamesEmbedded = () => wm?.namesEmbedded;

const CACHE = 'wordmask-models-v1';
const progress = (file, loaded, total, extra = {}) => postMessage({ status: 'progress', file, loaded, total, ...extra });

// Model files are kept in the Cache Storage API: the second visit loads them from disk, offline.
// A download that stopped (a dropped connection, Cancel, a closed tab) resumes from the bytes
// kept so far (download.js).
async function cached(url, read) {
  const cache = await caches.open(CACHE).catch(() => null);
  const hit = await cache?.match(url);
  if (hit) return read(hit, true);
  download = new AbortController();
  const response = await downloadFile(url, { signal: download.signal, progress });
  // A full quota only costs the next visit a download.
  await cache?.put(url, response.clone()).then(() => forgetParts(url)).catch(() => {});
  return read(response, false);
}

const bytesOf = (file) => async (response, fromCache) => {
  const bytes = new Uint8Array(await response.arrayBuffer());
  if (fromCache) progress(file, bytes.length, bytes.length, { cached: true });
  return bytes;
};
const textOf = async (response) => response.text();

// A folder URL: config.json, then model.safetensors (older hub checkpoints have only
// pytorch_model.bin), then preprocessor_config.json where the core says the engine reads one
// (GroupViT's and SAM's pixel processing; CLIP's is the core's default). The config is
// described first, so a checkpoint of no known kind fails before its weights download.
// With `q8`, model.q8.safetensors (int8 weights) is tried first.
async function fromUrl(base, q8) {
  const config = await cached(`${base}config.json`, textOf).catch(notFound);
  const { preprocessor: readsPreprocessor } = core.WordMask.describe(config);
  let weights;
  let weightsName;
  const names = weightsOrder(q8);
  for (const [i, name] of names.entries()) {
    weightsName = `${base}${name}`;
    try {
      weights = await cached(weightsName, bytesOf(name));
      break;
    } catch (e) {
      if (e.status !== 404) throw e;
      if (i === names.length - 1) notFound(e);
    }
  }
  let preprocessor;
  if (readsPreprocessor) {
    preprocessor = await cached(`${base}preprocessor_config.json`, textOf).catch(() => undefined);
  }
  return { config, weights, weightsName, preprocessor };
}

// A 404 for a file the checkpoint needs: there is no model there (`code` 'model-not-found').
const notFound = (e) => {
  if (e?.status === 404) e.code = 'model-not-found';
  throw e;
};

// Local files, by name and role (modelfiles.js).
function fromFiles(files) {
  const { config, weights, preprocessor } = chooseModelFiles(files);
  const text = (file) => file && new TextDecoder().decode(file.bytes);
  return { config: text(config), weights: weights.bytes, weightsName: weights.name, preprocessor: text(preprocessor) };
}

// Text embeddings kept across visits (IndexedDB), per words model and template set: words typed
// before with the same model skip the text encoder. A model is known by the hash of its
// config, its weight file's length and its first and last bytes (the safetensors header names
// every tensor). Without IndexedDB or WebCrypto (private windows, insecure origins) nothing is
// kept and everything else works.
const TEXT_DB = 'wordmask-text-v1';
const TEXT_KEPT = 4096; // embeddings read back per model
let textKey = null;

let textDb = null;

async function modelKey(config, weights) {
  if (!crypto?.subtle) return null;
  const edge = 1 << 20;
  const parts = [new TextEncoder().encode(`${config}\u0000${weights.length}\u0000`), weights.subarray(0, edge), weights.subarray(Math.max(0, weights.length - edge))];
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', await new Blob(parts).arrayBuffer()));
  return Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
}

const request = (r) => new Promise((resolve, reject) => { r.onsuccess = () => resolve(r.result); r.onerror = () => reject(r.error); });

// After loading a words model: its kept embeddings into the core's cache.
async function restoreText(config, weights) {
  textKey = null;
  try {
    textDb ??= await openStore(TEXT_DB, 'embeddings');
    const key = await modelKey(config, weights);
    if (!textDb || !key) return;
    textKey = key;
    const store = textDb.transaction('embeddings').objectStore('embeddings');
    const kept = await request(store.getAll(IDBKeyRange.bound(`${key}\u0001`, `${key}\u0002`, false, true), TEXT_KEPT));
    if (kept.length) wm.addTextEmbeddings(kept);
  } catch (e) {
    console.warn(`text embeddings from earlier visits are not available: ${e?.message ?? e}`);
  }
}

// After a segmentation or a named click: the embeddings it computed, kept for the next visit.
async function keepText() {
  if (!textKey || !textDb) return;
  try {
    const fresh = await wm.takeTextEmbeddings();
    if (!fresh.length) return;
    const store = textDb.transaction('embeddings', 'readwrite').objectStore('embeddings');
    for (const entry of fresh) store.put(entry, `${textKey}\u0001${entry.templates}\u0001${entry.name}`);
  } catch (e) {
    console.warn(`text embeddings not kept: ${e?.message ?? e}`);
  }
}

// What the browser says of its WebGPU adapter (`GPUAdapterInfo`: vendor, architecture, device,
// description, some of which a browser may leave empty), and whether it offers `shader-f16`.
async function adapterInfo() {
  try {
    const adapter = await navigator.gpu?.requestAdapter();
    if (!adapter) return null;
    const { vendor = '', architecture = '', device = '', description = '' } = adapter.info ?? {};
    return { vendor, architecture, device, description, f16: adapter.features.has('shader-f16') };
  } catch {
    return null;
  }
}

async function handle(data) {
  if (data.type === 'init') {
    const backend = data.backend || 'webgpu';
    choosing = chooseCore({ backend, threads: data.threads });
    core = await choosing;
    wm = await core.WordMask.create(backend, data.precision);
    const threads = wm.backend === 'cpu' ? core.threads() : 1;
    const adapter = wm.backend === 'webgpu' ? await adapterInfo() : null;
    const limits = wm.backend === 'webgpu' ? wm.limits ?? null : null;
    return { status: 'device', backend: wm.backend, threads, precision: wm.precision, build: core.build, adapter, limits };
  }
  if (data.type === 'load') {
    const { config, weights, weightsName, preprocessor } = data.files ? fromFiles(data.files) : await fromUrl(data.url, data.q8);
    download = null;
    const loaded = wm.load(config, weights, weightsName, preprocessor);
    if (loaded.role === 'words') await restoreText(config, weights);
    return { status: 'ready', backend: wm.backend, weights: weightsName.split('/').pop(), ...loaded };
  }
  if (data.type === 'encode') {
    const ms = await wm.encode(data.rgba, data.width, data.height);
    return { status: 'encoded', ms };
  }
  if (data.type === 'prompt') {
    const result = await wm.prompt(data.prompt, data.labels ?? '', data.options);
    await keepText();
    return [{ status: 'mask', ...result }, [result.mask.buffer]];
  }
  if (data.type === 'segment') {
    // A quick look whose image or words a newer request has replaced would only delay that one.
    // The messages that came while the last request ran are taken in first (the CPU backend runs
    // a request without yielding, so they wait in the event loop until a task ends).
    if (data.preview) await new Promise((resume) => { setTimeout(resume, 0); });
    if (data.preview && newest.get(data.view) > data.request) return { status: 'skipped' };
    const segment = () => wm.segment(data.rgba, data.width, data.height, data.labels, data.options, Boolean(data.sharp));
    const onStage = (stage) => postMessage({ status: 'stage', stage, ...(data.preview ? { preview: true } : {}) });
    const result = await watchStages(segment, onStage, data.sharp ? SHARP_STAGES : STAGES);
    await keepText();
    return [{ status: 'result', ...result }, [result.labelMap.buffer, result.confidence.buffer, ...(result.instances ? [result.instances.buffer] : [])]];
  }
  if (data.type === 'frame') {
    const result = await wm.segmentFrame(data.rgba, data.width, data.height, data.labels, data.options, data.smooth, Boolean(data.sharp));
    await keepText();
    return [{ status: 'result', ...result }, [result.labelMap.buffer, result.confidence.buffer, result.instances.buffer]];
  }
  if (data.type === 'reset-video') {
    wm.resetVideo();
    return { status: 'reset' };
  }
  if (data.type === 'everything') {
    const prompts = (done, total) => postMessage({ status: 'stage', stage: 'masks', done, total });
    const result = await wm.everything(data.rgba, data.width, data.height, data.labels ?? '', data.options, data.automatic, prompts);
    await keepText();
    return [{ status: 'objects', ...result }, [result.instances.buffer]];
  }
  throw new Error(`unknown request ${data.type}`);
}

const reply = (id, message, transfer = []) => postMessage({ ...message, id }, transfer);

// What a failure's `code` is: 'cancelled'; a failed download's ('network', 'http' with its
// `httpStatus`, 'model-not-found'; with the `host` asked); the core's (its Error::code:
// 'not-a-checkpoint', 'wrong-architecture', 'invalid-input', 'device-lost', ...); or, for a
// failure of neither, 'out-of-memory' where memory ran out, else 'internal'.
const OUT_OF_MEMORY = /out of memory|allocation failed|could not allocate|maximum memory size/i;
function codeOf(e) {
  if (e?.name === 'AbortError') return 'cancelled';
  if (typeof e?.code === 'string') return e.code;
  return OUT_OF_MEMORY.test(String(e?.message ?? e)) ? 'out-of-memory' : 'internal';
}

const failed = (id, e) => {
  const code = codeOf(e);
  const message = code === 'cancelled' ? 'download cancelled' : String(e?.message ?? e);
  reply(id, { status: 'error', message, code, ...(e?.host ? { host: e.host } : {}), ...(e?.status ? { httpStatus: e.status } : {}) });
};

// This script as a worker of the threads module's pool (startPool): the helper sends it the
// module and the memory to join with, as it would send its own copy.
async function joinPool({ module, memory, receiver }) {
  const core = await importCore(threadsCore());
  await core.default({ module_or_path: module, memory });
  postMessage({ type: 'wasm_bindgen_worker_ready' });
  core.wbg_rayon_start_worker(receiver);
}

// Requests run one at a time (the model is one object); `cancel` and `labels` are answered at once.
// `newest`: per view (what shows the results: the page, an element), the client's number of the
// newest segmentation received, waiting or not.
let queue = Promise.resolve();
const newest = new Map();
onmessage = ({ data }) => {
  if (data.request > (newest.get(data.view) ?? 0)) newest.set(data.view, data.request);
  if (data.type === 'wasm_bindgen_worker_init') {
    joinPool(data);
  } else if (data.type === 'cancel') {
    download?.abort();
  } else if (data.type === 'labels') {
    const parser = choosing ?? (labelsCore ??= loadCore(1));
    parser.then(({ parseLabels }) => reply(data.id, { status: 'labels', labels: parseLabels(data.text) })).catch((e) => failed(data.id, e));
  } else if (['export', 'exportFolder', 'wordObjects'].includes(data.type)) {
    // The core's export writers need no model: answered at once, beside a segmentation.
    (choosing ?? (labelsCore ??= loadCore(1))).then(({ exportImage, exportFolder, wordObjects }) => {
      if (data.type === 'wordObjects') {
        const result = wordObjects(data.labels, data.labelMap, data.confidence, data.width, data.height);
        reply(data.id, { status: 'objects', ...result }, [result.instances.buffer]);
        return;
      }
      const files = data.type === 'export'
        ? exportImage(data.request, data.labelMap, data.confidence, data.instances, data.masks)
        : exportFolder(data.request, data.cocoParts ?? []);
      reply(data.id, { status: 'files', files }, files.map((f) => f.bytes.buffer));
    }).catch((e) => failed(data.id, e));
  } else {
    queue = queue.then(() => handle(data)).then((out) => {
      const [message, transfer] = Array.isArray(out) ? out : [out, []];
      reply(data.id, message, transfer);
    }, (e) => failed(data.id, e));
  }
};
