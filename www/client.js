// The one client of the model worker (worker.js), used by the page, <word-mask> and the tests.
// It opens the device, loads a model (hub id, folder URL or local files) with per-file
// progress, segments, cancels, parses labels with the core's grammar, hands out the loaded
// engine's defaults, and when the worker dies (a lost GPU device, a wasm trap) starts a fresh
// one and reloads the last model (from the browser's cache) before serving the next request.
//
//   const client = sharedClient();
//   client.on('progress', ({ file, loaded, total }) => ...);
//   const { engine, defaults } = await client.load('openai/clip-vit-base-patch16');
//   const result = await client.segment({ rgba, width, height, labels: 'cat, dog', options: {} });
//   const final = await client.segment(request, { onPreview: (quick) => draw(quick) });   // a quick look first
//   await client.load('nielsr/slimsam-77-uniform');            // Point mode, beside the words model
//   const sharp = await client.segment({ rgba, width, height, labels: 'cat, dog', sharp: true }); // + objects
//   const all = await client.everything({ rgba, width, height, labels: 'cat, dog' });
//   const coco = await result.toCOCO({ fileName: 'photo.jpg' });   // also toYOLO, toLabelMe, toVOC (exports.js)
//   const image = { rgba, width, height };
//   const object = await client.prompt({ image, prompt: { points: [{ x, y }] }, labels: 'cat, dog' });
//
// A words model (CLIP, GroupViT, ...: role 'words') and a prompt model (Segment Anything or
// Open-Vocabulary SAM: role 'prompts') can be loaded at once; loading another of the same role
// replaces it. The core says which role a checkpoint has. A prompt encodes its image first
// when it is not the image encoded last (prompts for an image being encoded wait for that one
// encoding), so each image is encoded once.
// Events: 'device' {backend, threads, precision, build ('main' for pkg/, 'cpu-relaxed', 'threads' or 'threads-relaxed')}, 'progress' {file, loaded, total, cached?, retrying?},
// 'progress' also carries `resumed` (bytes kept from an earlier try) and, while retrying, `of`,
// `connected` and `host` (download.js).
// 'stage' {stage: 'text' | 'image' | 'scores' | 'finish' | 'edges' (sharp edges), preview?} (a segmentation's stage as it begins; `preview`: of a quick look),
// or {stage: 'masks', done, total} (everything: the grid's prompts decoded so far),
// 'ready' {backend, role, engine, defaults (words), names (prompts: the model names its masks), files (local files: {used, ignored})}, 'restarting' {reason}, 'error' {message, code} (a restart failed).
// Every request rejects with a ModelError, whose `code` says what kind of failure it was.

import { withExports } from './exports.js';
import { chooseModelFiles } from './modelfiles.js';
import { previewPlan } from './progressive.js';

const HUB = (id) => `https://huggingface.co/${id}/resolve/main/`;

/** A folder URL for a hub id (`owner/name`) or a URL (absolute or relative to the page). */
export function modelUrl(model) {
  const base = /^(https?:|\/|\.)/.test(model) ? model : HUB(model);
  return new URL(base.replace(/\/?$/, '/'), location.href).href;
}

const WORKER = './worker.js';

// A blob: URL of a module that imports the module at `url` (a worker of this page's origin
// running a module of another).
const importerOf = (url) => URL.createObjectURL(new Blob([`import ${JSON.stringify(url)};\n`], { type: 'text/javascript' }));

// A wasm trap or a lost GPU device leaves the model unusable.
const FATAL = /unreachable|RuntimeError|device (was |is )?lost|DeviceLost/i;
const LOST = /device (was |is )?lost|DeviceLost/i;

/**
 * A failed request. `code` says what kind of failure it is, for a program to act on:
 * 'model-not-found' (no checkpoint at the URL: a 404 for its config.json or weights, or no
 * config.json or weights among local files), 'not-a-checkpoint' (the weights cannot be read:
 * truncated, corrupt, another format), 'wrong-architecture' (config.json names an
 * architecture the core does not read, or the weights do not fit it), 'network' (the host
 * could not be reached, or the connection broke), 'http' (the host answered with an error:
 * `status`), 'cancelled' (`cancel()`), 'invalid-input' (an argument, label or setting the core
 * refuses, or no model of the kind loaded yet), 'unsupported', 'no-webgpu', 'device-lost' (the
 * GPU device was lost: the client restarts the worker), 'crashed' (the worker stopped
 * otherwise: it is restarted too), 'out-of-memory', or 'internal' (anything else: a bug).
 * `host`: the host a failed download asked.
 */
export class ModelError extends Error {
  constructor(message, { code = 'internal', host, status } = {}) {
    super(message);
    this.name = 'ModelError';
    this.code = code;
    if (host) this.host = host;
    if (status) this.status = status;
  }
}

export class ModelClient {
  /**
   * `backend`: 'webgpu' (the CPU where WebGPU is missing) or 'cpu'. `threads`: the CPU
   * fallback's threads (default: one per core, up to 8), used where the page is cross-origin
   * isolated. `precision` (WebGPU): 'auto' (f16 where the adapter has `shader-f16`, else f32),
   * 'f32' or 'f16'.
   */
  constructor({ backend = 'webgpu', threads, precision = 'auto' } = {}) {
    this.backend = backend;
    this.threads = threads;
    this.precision = precision;
    this.listeners = new Map();
    this.pending = new Map();
    this.nextId = 1;
    this.worker = null;
    this.device = null; // promise of {backend}
    this.models = new Map(); // source -> promise of its ready message, in load order
    this.roles = new Map(); // source -> 'words' | 'prompts', once loaded
    this.encoding = null; // {image, promise} of the image the prompt model encoded last
    this.loading = Promise.resolve(); // the latest load, which requests wait for
    this.defaults = null; // the words model's engine defaults
    this.engine = null; // the words model's engine
    this.requests = 0; // segmentations asked for so far: the worker skips a quick look that a newer one of its view overtook
  }

  on(type, listener) {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set());
    this.listeners.get(type).add(listener);
    return () => this.listeners.get(type).delete(listener);
  }

  emit(type, detail) {
    this.listeners.get(type)?.forEach((listener) => listener(detail));
  }

  spawn() {
    // Served from the page's origin (or by a bundler, which sees the first line and bundles the
    // worker with its imports), the worker starts from its URL; from another origin (a CDN),
    // where a worker cannot start from its URL, a same-origin blob imports it. (WORKER by name
    // there: a bundler would copy a URL made of a literal name as a file, as it is.)
    this.worker = new URL(import.meta.url).origin === location.origin
      ? new Worker(new URL('./worker.js', import.meta.url), { type: 'module' })
      : new Worker(importerOf(new URL(WORKER, import.meta.url).href), { type: 'module' });
    this.worker.onmessage = ({ data }) => this.receive(data);
    this.worker.onerror = (e) => this.restart(e.message || 'the model worker stopped');
    return this.worker;
  }

  receive(data) {
    if (data.status === 'progress' || data.status === 'stage') {
      this.emit(data.status, data);
      return;
    }
    if (data.status === 'lost') {
      this.restart(data.reason);
      return;
    }
    const waiter = this.pending.get(data.id);
    if (!waiter) return;
    this.pending.delete(data.id);
    if (data.status !== 'error') {
      waiter.resolve(data);
      return;
    }
    waiter.reject(new ModelError(data.message, { code: data.code, host: data.host, status: data.httpStatus }));
    if (FATAL.test(data.message)) this.restart(data.message);
  }

  post(message, transfer = []) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      (this.worker ?? this.spawn()).postMessage({ ...message, id }, transfer);
    });
  }

  /** The compute device: WebGPU, or the CPU backend where WebGPU is missing. */
  openDevice() {
    this.device ??= this.post({ type: 'init', backend: this.backend, threads: this.threads, precision: this.precision }).then((d) => {
      this.emit('device', d);
      return d;
    });
    return this.device;
  }

  /**
   * Load a model: a hub id or folder URL (string), or local files (`File`s: config.json, the
   * weights, optionally preprocessor_config.json, chosen by name among any others: see
   * modelfiles.js; the ready reply's `files` says `{used, ignored}`). Loading the same URL
   * again is free. A failure rejects with a ModelError: its `code` says which ('model-not-found',
   * 'not-a-checkpoint', 'wrong-architecture', 'network', 'http', 'cancelled' after `cancel()`, ...).
   * With `{q8: true}`, int8 weights (`model.q8.safetensors`) are read where the folder has them
   * (about a quarter of the download; labels within 1 % of the full weights'); the ready reply's
   * `weights` names the file read.
   */
  load(source, { q8 = false } = {}) {
    const url = typeof source === 'string' ? modelUrl(source) : null;
    const key = url ? `${url}${q8 ? '#q8' : ''}` : source;
    if (this.models.has(key)) return this.models.get(key);
    const promise = this.openDevice().then(() => this.loadNow(url ?? source, q8));
    this.models.set(key, promise);
    this.loading = promise.catch(() => {});
    promise.then(({ role }) => {
      for (const [other, r] of this.roles) if (r === role && other !== key) { this.roles.delete(other); this.models.delete(other); }
      this.roles.set(key, role);
      if (role === 'prompts') this.encoding = null;
    }, () => this.models.delete(key));
    return promise;
  }

  /** Whether a model of `role` ('words' or 'prompts') is loaded. */
  has(role) {
    return [...this.roles.values()].includes(role);
  }

  async ready(role) {
    await this.loading;
    if (!this.has(role)) {
      throw new ModelError(role === 'prompts' ? 'no Segment Anything model is loaded' : 'no model is loaded yet', { code: 'invalid-input' });
    }
  }

  async loadNow(source, q8 = false) {
    let message;
    let files;
    const transfer = [];
    if (typeof source === 'string') {
      message = { type: 'load', url: source, q8 };
    } else {
      // Only the checkpoint's own files are read: a picked folder may hold much else.
      let picked;
      try {
        picked = chooseModelFiles([...source], { q8 });
      } catch (e) {
        throw new ModelError(e.message, { code: e.code });
      }
      const { config, weights, preprocessor, ignored } = picked;
      const chosen = [config, weights, preprocessor].filter(Boolean);
      files = { used: chosen.map((f) => f.name), ignored };
      const read = await Promise.all(chosen.map(async (f) => ({ name: f.name, bytes: new Uint8Array(await f.arrayBuffer()) })));
      read.forEach((f) => transfer.push(f.bytes.buffer));
      message = { type: 'load', files: read };
    }
    const ready = { ...(await this.post(message, transfer)), ...(files ? { files } : {}) };
    if (ready.role === 'words') {
      this.engine = ready.engine;
      this.defaults = ready.defaults;
    }
    this.emit('ready', ready);
    return ready;
  }

  /**
   * Segment RGBA pixels; `options` as `wordmask segment`'s settings (camelCase), unset = the
   * engine's defaults. `sharp`: the Segment Anything model loaded beside the words model redraws
   * the edges, and the result also has `objects` ({id, label, class, score, box, area}),
   * `counts` ({label, count} per word), `instances` (Uint16Array of object ids, 0 = none),
   * `encodeMs` and `masksMs`; without a Segment Anything model it rejects saying so. The
   * result's `toCOCO()`, `toYOLO()`, `toLabelMe()` and `toVOC()` write it in those formats
   * (exports.js).
   * `onPreview(quick)`: a quick look comes first where the full settings have something to refine
   * (progressive.js: one pass at a short side of at most 224 pixels, no PAMR, no sharp edges):
   * `quick` is its result, without exports, with `preview: true`, its `shortSide`, `onePass`,
   * `options` and what the full run `refines`. It is skipped where the full run is one cheap
   * pass already, and by the worker where a newer request of the same `view` (a name for what
   * shows the results: an element, the page) is waiting by the time its turn comes.
   */
  async segment({ rgba, width, height, labels, options = {}, sharp = false }, { onPreview, view = 'page' } = {}) {
    await this.ready('words');
    if (sharp) this.encoding = null; // the prompt model now holds this image, not the one encoded last
    const request = ++this.requests;
    const plan = onPreview ? previewPlan({ defaults: this.defaults, options, width, height, sharp }) : null;
    let quick = null;
    if (plan) {
      const copy = new Uint8Array(rgba); // the full request takes `rgba` itself
      quick = this.post({ type: 'segment', rgba: copy, width, height, labels, options: plan.options, preview: true, view, request }, [copy.buffer]);
    }
    const full = this.post({ type: 'segment', rgba, width, height, labels, options, sharp, view, request }, [rgba.buffer]);
    full.catch(() => {}); // awaited below, after the quick look
    // A quick look that fails is left out: the full run's answer says what went wrong.
    const coarse = quick && (await quick.catch(() => null));
    if (coarse?.status === 'result') {
      const { shortSide, onePass, refines } = plan;
      try {
        onPreview({ ...strip(coarse), preview: true, shortSide, onePass, refines, options: plan.options });
      } catch (e) {
        self.reportError?.(e);
      }
    }
    const result = strip(await full);
    return withExports(result, this, { ...result, labels });
  }

  /**
   * One frame of a camera or a video: `segment`'s result for it, with each pixel's scores
   * averaged over the frames before where the picture held still, by `smooth` in [0, 1] (0: the
   * frame alone), so labels do not flicker; `objects` keep their `id` from frame to frame (with
   * `counts` and `instances`), and `reset` says why a frame started afresh ('first', 'words',
   * 'size', 'cut') or is null. `resetVideo()` starts a new stream. `sharp`: sharp edges as
   * `segment`'s (a Segment Anything model loaded beside the words), prompted by the previous
   * frame's objects.
   */
  async segmentFrame({ rgba, width, height, labels, options = {}, smooth = 0.7, sharp = false }) {
    await this.ready('words');
    const result = strip(await this.post({ type: 'frame', rgba, width, height, labels, options, smooth, sharp }, [rgba.buffer]));
    return withExports(result, this, { ...result, labels });
  }

  /** Forget the frames `segmentFrame` has seen: the next one starts afresh. */
  async resetVideo() {
    await this.openDevice();
    await this.post({ type: 'reset-video' });
  }

  /**
   * Every object in RGBA pixels, without prompts (Segment Anything's automatic masks), each
   * named among `labels` by the words model when both are there: `{width, height, objects,
   * counts, instances, encodeMs, masksMs}` as `segment`'s with `sharp`. `automatic`: the
   * generator's settings (`pointsPerSide`, `pointsPerBatch`, `predIouThresh`,
   * `stabilityScoreThresh`, `stabilityScoreOffset`, `boxNmsThresh`), unset = Segment Anything's
   * defaults. Without a Segment Anything model it rejects saying so. The result has
   * `segment`'s export methods (its named objects; the typed `labels` are the categories).
   */
  async everything({ rgba, width, height, labels = '', options = {}, automatic }) {
    await this.openDevice();
    await this.loading;
    this.encoding = null;
    const result = strip(await this.post({ type: 'everything', rgba, width, height, labels, options, automatic }, [rgba.buffer]));
    return withExports(result, this, { ...result, labels });
  }

  /**
   * Point mode: the heavy pass for `image` ({rgba, width, height}; its pixels are copied), after
   * which each prompt is quick. The image encoded last, or being encoded, is not encoded again.
   * Resolves with the encoding's milliseconds.
   */
  async encode(image) {
    await this.ready('prompts');
    if (this.encoding?.image !== image) {
      const rgba = new Uint8Array(image.rgba);
      const promise = this.post({ type: 'encode', rgba, width: image.width, height: image.height }, [rgba.buffer]).then(({ ms }) => ms);
      this.encoding = { image, promise };
      promise.catch(() => { if (this.encoding?.promise === promise) this.encoding = null; });
    }
    return this.encoding.promise;
  }

  /**
   * Point mode: `{points: [{x, y, positive}], box: [x0, y0, x1, y1]}` in image pixels on `image`
   * (encoded first when it is not the image encoded last; without `image`, the image encoded
   * last): `{width, height, mask (Uint8Array, 1 inside), iou, area, timings}`, with `label`,
   * `probability` and `runnerUp` when the mask is named (Open-Vocabulary SAM names its own; a
   * Segment Anything mask is named among `labels` by a CLIP words model). `onEncode()` is called
   * when the image has to be encoded first.
   */
  async prompt({ image, prompt, labels = '', options = {}, onEncode }) {
    await this.ready('prompts');
    if (image && this.encoding?.image !== image) onEncode?.();
    if (image) await this.encode(image);
    return strip(await this.post({ type: 'prompt', prompt, labels, options }));
  }

  /**
   * One image's export files, written by the core (exports.js's `exportRequest` makes the
   * request): `{files: [{path, format, bytes}]}`, paths in `wordmask segment --images`' layout.
   */
  async exportImage({ request, labelMap, confidence, instances, masks }) {
    return strip(await this.post({ type: 'export', request, labelMap, confidence, instances, masks }));
  }

  /**
   * A folder's files beside its images': `yolo/data.yaml`, `voc/labelmap.txt`, and `coco.json`
   * and `coco_results.json` merged from each image's COCO file (`cocoParts`, as text).
   * `request`: `{labels, formats, yoloPath?}`. Resolves with `{files: [{path, format, bytes}]}`.
   */
  async exportFolder(request, cocoParts = []) {
    return strip(await this.post({ type: 'exportFolder', request, cocoParts }));
  }

  /**
   * The words' own objects of a segmentation (`{labels, labelMap, confidence, width, height}`):
   * every connected region of each word, as the exports take them without sharp edges.
   * Resolves with `{width, height, objects, counts, instances}`.
   */
  async wordObjects({ labels, labelMap, confidence, width, height }) {
    return strip(await this.post({ type: 'wordObjects', labels, labelMap, confidence, width, height }));
  }

  /** `[{name, synonyms}]` by the core's label grammar; rejects with the core's message. */
  async parseLabels(text) {
    return (await this.post({ type: 'labels', text })).labels;
  }

  /** Stop the download in progress (its load rejects with "download cancelled"). */
  cancel() {
    this.worker?.postMessage({ type: 'cancel' });
  }

  // A fresh worker, the device opened again and the last model reloaded; requests made in the
  // meantime wait for it.
  restart(reason) {
    this.worker?.terminate();
    this.worker = null;
    const error = new ModelError(`the model stopped (${reason}); restarting it`, { code: LOST.test(reason) ? 'device-lost' : 'crashed' });
    this.pending.forEach((w) => w.reject(error));
    this.pending.clear();
    this.device = null;
    this.emit('restarting', { reason });
    const sources = [...this.roles.keys()];
    this.models.clear();
    this.roles.clear();
    this.encoding = null;
    for (const source of sources) this.load(source).catch((e) => this.emit('error', { message: e.message, code: e.code ?? 'internal' }));
  }

  /** Whether a restart will reload a model. */
  get reloads() {
    return this.models.size > 0;
  }

  terminate() {
    this.worker?.terminate();
    this.worker = null;
  }
}

// A reply without the protocol's fields.
function strip({ status, id, ...rest }) {
  return rest;
}

let shared = null;
/** One worker, device and model for the whole page, shared by every <word-mask>. */
export function sharedClient() {
  shared ??= new ModelClient();
  return shared;
}
