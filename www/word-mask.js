// <word-mask>: open-vocabulary segmentation as a custom element. Import this module, then
//   <word-mask model="openai/clip-vit-base-patch16" labels="person, dog, grass" src="photo.jpg"></word-mask>
// Attributes: model (hub id or folder URL with config.json + model.safetensors), labels (commas;
// `a|b` synonyms), src (image URL), camera (live camera; optional facing mode), method, templates, threshold, short-side, window, stride,
// scoring (same meanings as `wordmask segment`; unset ones take the defaults of the model's engine).
// Method: segment(image | ImageBitmap | HTMLVideoElement | VideoFrame | HTMLCanvasElement);
// segmentVideo(video element | File | Blob | URL, {smooth, onFrame, signal}): every frame of a
// video in order, each fired as `result` with `frame` (its index) and `time`.
// Property: labels (string or array). Events: progress {file, loaded, total}, ready {backend,
// engine, defaults}, result {width, height, labels, shares, labelMap (Uint8Array, or Uint16Array
// above 255 labels)}, preview (a quick look before `result`: its fields, with preview: true,
// shortSide, refines, and no exports), error {message, code} (code: client.js's ModelError codes,
// and 'camera'). CSS parts:
// canvas, legend, status. Every element on a page shares one worker, one GPU device and one model.
// Progressive results: a still image's first result is a quick look (one pass at up to 224 px,
// no refinement: progressive.js), drawn and fired as `preview`, then the full settings' `result`
// replaces it; `progressive="off"` turns it off (camera frames never have one).
// Sharp edges: `sam` (a Segment Anything checkpoint, hub id or folder URL) without `interactive`
// loads it beside the words model, and each segmentation follows its masks' edges (not the
// camera's frames, which go without); `result` then also carries objects ({id, label, class,
// score, box, area}), counts ({label, count} per word) and instances (Uint16Array of ids).
// Point mode: with `interactive` and `sam` (a Segment Anything checkpoint), a click on the
// canvas outlines the object under it (named by `labels`, with `model` a CLIP checkpoint);
// `prompt({points: [{x, y, positive}], box: [x0, y0, x1, y1]})` does the same from a script;
// each prompt fires `result` with {width, height, mask (Uint8Array, 1 inside), label,
// probability, iou, area}.
// Name everything: with `sam`, `everything(image?, {automatic})` finds every object without a
// prompt and names it (by `labels` through `model`, or by an Open-Vocabulary SAM itself); it
// fires `result` with {width, height, objects, counts, instances}.
// Exports: every `result` (the event's detail, and what the methods resolve with) has
// `toCOCO()`, `toYOLO()`, `toLabelMe()` and `toVOC()`, written by the core's writers as
// `wordmask segment --images` writes them (exports.js).
import { ModelError, sharedClient } from './client.js';
import { withExports } from './exports.js';
import { eachFrame, openVideo } from './frames.js';
import { paintMasks, paletteColour } from './masks.js';
import { quickLookText } from './progressive.js';
import { SETTINGS } from './settings.js';

const client = sharedClient();
let elements = 0; // each element is a view of its own: its newer request makes its quick look moot


// Before its image arrives the canvas is a 4:3 placeholder; while the model loads the `src`
// image shows, with the status (and a spinner) under it. Errors sit in a box of their own
// colours, readable on any page.
const TEMPLATE = `<style>
  :host { display: inline-block; position: relative; max-width: 100%; }
  canvas { width: 100%; height: auto; display: block; }
  canvas.empty { aspect-ratio: 4 / 3; background: rgb(128 128 128 / .15); }
  ul { list-style: none; padding: 0; margin: .25rem 0; display: flex; flex-wrap: wrap; gap: .2rem .8rem; font: max(14px, .875em)/1.4 system-ui, sans-serif; }
  li span { display: inline-block; width: .8em; height: .8em; margin-right: .3em; border-radius: .15em; }
  p { margin: .25rem 0; font: max(14px, .875em)/1.4 system-ui, sans-serif; }
  p:empty { display: none; }
  p.busy::before { content: ""; display: inline-block; width: .8em; height: .8em; margin-right: .4em; vertical-align: -.1em;
    border: 2px solid currentColor; border-right-color: transparent; border-radius: 50%; animation: spin 1s linear infinite; }
  @keyframes spin { to { transform: rotate(1turn); } }
  @media (prefers-reduced-motion: reduce) { p.busy::before { animation: none; } }
  p.error { color: #7a0a16; background: #fdecee; border: 1px solid #7a0a16; border-radius: .3rem; padding: .35rem .5rem; }
</style>
<canvas part="canvas" class="empty" width="1" height="1" role="img" aria-label="image with masks"></canvas>
<ul part="legend"></ul>
<p part="status" role="status" aria-live="polite"></p>`;

class WordMask extends HTMLElement {
  // The component's own attributes, and one per setting of the core (settings.js).
  static observedAttributes = ['model', 'labels', 'src', 'camera', 'sam', 'interactive', 'q8', 'progressive', ...SETTINGS.map((s) => s.attribute)];

  constructor() {
    super();
    this.attachShadow({ mode: 'open' }).innerHTML = TEMPLATE;
    this.canvas = this.shadowRoot.querySelector('canvas');
    this.image = null;
    this.result = null;
    this.ready = false;
    this.busy = null;
    this.pixels = null; // {rgba, width, height} of `image`, for the Point mode's prompts
    this.view = `word-mask ${++elements}`;
    this.canvas.addEventListener('click', (e) => {
      if (!this.hasAttribute('interactive') || !this.image) return;
      const rect = this.canvas.getBoundingClientRect();
      const x = ((e.clientX - rect.left) / rect.width) * this.canvas.width;
      const y = ((e.clientY - rect.top) / rect.height) * this.canvas.height;
      this.prompt({ points: [{ x, y, positive: !e.altKey }] }).catch((err) => this.fail(err));
    });
  }

  connectedCallback() {
    this.unsubscribe = client.on('progress', (p) => {
      this.emit('progress', p);
      if (!this.ready && p.total && !this.showsError) this.status(`Loading the model: ${p.file} ${Math.floor((100 * p.loaded) / p.total)} %`, 'busy');
    });
    this.update();
  }

  disconnectedCallback() {
    this.unsubscribe?.();
    this.stopCamera();
  }

  attributeChangedCallback(name, before, after) {
    if (before === after || !this.isConnected) return;
    if (name === 'progressive') return; // for the next segmentation: nothing to redo
    if (name === 'model' || name === 'sam' || name === 'q8') this.ready = false;
    if (name === 'src') { this.image = null; this.pixels = null; this.source = null; }
    if (name === 'camera' && after === null) this.stopCamera();
    this.update();
  }

  get labels() {
    return this.getAttribute('labels') ?? '';
  }

  set labels(value) {
    this.setAttribute('labels', Array.isArray(value) ? value.join(', ') : String(value));
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail, bubbles: true, composed: true }));
  }

  /** The status line; `state`: 'busy' (a spinner beside it), 'error' (a box) or none. */
  status(text, state) {
    const line = this.shadowRoot.querySelector('[part=status]');
    line.textContent = text;
    line.className = state ?? '';
  }

  get showsError() {
    return this.shadowRoot.querySelector('[part=status]').className === 'error';
  }

  /**
   * Show `error` and fire `error` with its `code` (a ModelError's); `what` and `next` say what
   * failed and what to check.
   */
  fail(error, { what, next } = {}) {
    const message = error?.message ?? String(error);
    const text = what ? `${what}: ${message.replace(/\.$/, '')}. ${next}` : `Error: ${message}`;
    this.status(text, 'error');
    this.emit('error', { message: text, code: typeof error?.code === 'string' ? error.code : 'internal' });
  }

  /**
   * The `src` image, fetched and drawn at once (before the model is there), as a promise of its
   * bitmap; null when it cannot be had (the error is shown).
   */
  fetchSource() {
    const src = this.getAttribute('src');
    if (!src || this.hasAttribute('camera')) return Promise.resolve(null);
    if (this.source?.src === src) return this.source.promise;
    const promise = (async () => {
      const response = await fetch(src).catch((e) => { throw new ModelError(e.message, { code: 'network' }); });
      if (!response.ok) throw new ModelError(`HTTP ${response.status}`, { code: 'http', status: response.status });
      // Upright by the file's EXIF orientation, as <img> shows it and as `wordmask` reads it.
      return createImageBitmap(await response.blob(), { imageOrientation: 'from-image' })
        .catch((e) => { throw new ModelError(`not an image the browser reads (${e.message})`, { code: 'invalid-input' }); });
    })().then((bitmap) => {
      if (this.source?.promise !== promise) return null;
      this.image = bitmap;
      if (!this.result) this.show(bitmap);
      return bitmap;
    }, (e) => {
      if (this.source?.promise === promise) this.fail(e, { what: `The image "${src}" could not be loaded`, next: 'Check the src attribute: an image URL this page may fetch.' });
      return null;
    });
    this.source = { src, promise };
    return promise;
  }

  // Only the attributes that are set: the core fills in the defaults of the model's engine.
  options() {
    const out = {};
    for (const { attribute, key, kind } of SETTINGS) {
      if (!this.hasAttribute(attribute)) continue;
      const value = this.getAttribute(attribute);
      out[key] = kind === 'integer' || kind === 'number' ? Number(value) : value;
    }
    return out;
  }

  // The camera's smoothing: the `smooth` attribute, 0.7 when absent (a value outside [0, 1] is
  // the core's to refuse, naming it).
  smooth() {
    const value = this.getAttribute('smooth');
    return value === null || value.trim() === '' ? 0.7 : Number(value);
  }

  // Whether a still image gets a quick look first: unless `progressive` is "off" (or "false").
  get progressive() {
    return !/^(off|false)$/i.test(this.getAttribute('progressive')?.trim() ?? '');
  }

  // A model by id or URL; with the `q8` attribute, its int8 weights where the folder has them.
  load(source) {
    return client.load(source, { q8: this.hasAttribute('q8') });
  }

  async update() {
    const model = this.getAttribute('model');
    // An Open-Vocabulary SAM checkpoint in `sam` names its own masks: interactive needs no `model`.
    const pointOnly = !model && this.hasAttribute('interactive') && this.getAttribute('sam');
    const source = this.fetchSource();
    if (!model && !pointOnly) return;
    try {
      if (!this.ready) {
        const id = model || this.getAttribute('sam');
        this.status('Loading the model…', 'busy');
        let ready;
        try {
          ready = await this.load(id);
        } catch (e) {
          this.fail(e, { what: `The model "${id}" could not be loaded`,
            next: 'Check the model attribute: a hub id (owner/name) or a folder URL holding config.json and model.safetensors.' });
          return;
        }
        const sam = this.getAttribute('sam');
        try {
          if (model && sam) await this.load(sam);
        } catch (e) {
          this.fail(e, { what: `The Segment Anything model "${sam}" could not be loaded`,
            next: 'Check the sam attribute: a hub id (owner/name) or a folder URL of a Segment Anything checkpoint.' });
          return;
        }
        if (this.getAttribute('model') !== model) return;
        this.ready = true;
        if (!this.showsError) this.status(''); // an image that failed meanwhile stays explained
        this.emit('ready', { backend: ready.backend, engine: ready.engine, defaults: ready.defaults });
      }
      if (this.hasAttribute('camera')) {
        await this.startCamera();
        return;
      }
      if (!this.image && !(await source)) return;
      if (this.hasAttribute('interactive')) {
        if (this.image) this.show(this.image);
        this.status(this.image ? 'Click an object.' : '');
      } else if (this.image && this.labels.trim()) {
        await this.segment(this.image);
      }
    } catch (e) {
      this.fail(e);
    }
  }

  // Live camera: segment the newest frame whenever the previous one is done (frames in
  // between are dropped). The attribute's value may name a facing mode ("user").
  async startCamera() {
    if (this.video) return;
    const facingMode = this.getAttribute('camera') || 'environment';
    const stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode } })
      .catch((e) => { throw new ModelError(`the camera could not be opened (${e.message})`, { code: 'camera' }); });
    this.video = Object.assign(document.createElement('video'), { srcObject: stream, muted: true, playsInline: true });
    await this.video.play();
    await client.resetVideo().catch(() => {});
    const loop = async () => {
      if (!this.video) return;
      try {
        if (this.labels.trim()) await this.segment(this.video, { sharp: false, frame: true });
      } catch (e) {
        this.fail(e);
      }
      if (this.video) requestAnimationFrame(loop);
    };
    loop();
  }

  stopCamera() {
    this.video?.srcObject?.getTracks().forEach((t) => t.stop());
    this.video = null;
  }

  /**
   * Segment an image, bitmap, video frame or canvas with the current labels; resolves with the
   * result. `sharp` (default: with `sam` and without `interactive`): sharp edges and objects.
   * `frame`: one frame of a stream (the camera's), its scores averaged with the frames before
   * by `smooth` (default: the `smooth` attribute, 0 to 1, else 0.7) and its objects keeping
   * their ids. `progressive` (default: the attribute's, on): a still image's quick look is drawn
   * and fired as `preview` first, where the full settings have something to refine.
   */
  async segment(source, { sharp = this.hasAttribute('sam') && !this.hasAttribute('interactive'), frame = false, smooth = this.smooth(), progressive = this.progressive } = {}) {
    return this.segmentSource(source, { sharp, frame, smooth, progressive });
  }

  /**
   * Every frame of a video, from its start and in order, none dropped: `source` a <video>
   * element (left paused at its end) or a video File, Blob or URL. Each frame is segmented as
   * one of a stream (`smooth`, default the attribute's; objects keep their ids), drawn, and
   * fired as `result` with `frame` (its index from 0) and `time` (seconds); `onFrame(detail)` is
   * awaited with each. `signal` (an AbortSignal) stops after the frame in hand. Resolves with
   * `{frames, skipped}` (frames that went by too fast to be segmented; 0 as a rule). A file the
   * browser cannot decode rejects with code 'invalid-input', saying how to convert it.
   */
  async segmentVideo(source, { smooth = this.smooth(), onFrame, signal } = {}) {
    const own = !(source instanceof HTMLVideoElement);
    const video = own
      ? await openVideo(source).catch((e) => { throw new ModelError(e.message, { code: 'invalid-input' }); })
      : source;
    try {
      await this.load(this.getAttribute('model'));
      await client.resetVideo();
      return await eachFrame(video, async ({ index, time }) => {
        const detail = await this.segmentSource(video, { sharp: false, frame: true, smooth, at: { frame: index, time } });
        await onFrame?.(detail);
      }, { signal });
    } finally {
      if (own) URL.revokeObjectURL(video.src);
    }
  }

  async segmentSource(source, { sharp, frame, smooth, progressive = false, at = {} }) {
    const width = source.videoWidth ?? source.displayWidth ?? source.width;
    const height = source.videoHeight ?? source.displayHeight ?? source.height;
    if (!width || !height) throw new ModelError('the image has no pixels yet', { code: 'invalid-input' });
    const canvas = new OffscreenCanvas(width, height);
    const ctx = canvas.getContext('2d');
    ctx.drawImage(source, 0, 0, width, height);
    const rgba = new Uint8Array(ctx.getImageData(0, 0, width, height).data.buffer);
    this.status('Segmenting…', 'busy');
    await this.load(this.getAttribute('model'));
    if (sharp) await this.load(this.getAttribute('sam'));
    let result;
    const labels = this.labels;
    // The quick look: drawn at once, and fired as `preview` (no exports: those are the result's).
    const onPreview = progressive && !frame ? (quick) => {
      this.result = quick;
      this.draw(canvas);
      this.status(`${quickLookText(quick)}…`, 'busy');
      const { shortSide, refines } = quick;
      this.emit('preview', { ...this.detail(quick, width, height), preview: true, shortSide, refines });
    } : undefined;
    try {
      result = frame
        ? await client.segmentFrame({ rgba, width, height, labels, options: this.options(), smooth })
        : await client.segment({ rgba, width, height, labels, options: this.options(), sharp }, { onPreview, view: this.view });
    } catch (e) {
      const check = sharp ? 'Check the sam attribute (a Segment Anything checkpoint), the labels and setting attributes' : 'Check the labels and setting attributes';
      throw new ModelError(`the image could not be segmented: ${e.message.replace(/\.$/, '')}. ${check}`, { code: e.code });
    }
    this.result = result;
    this.draw(canvas);
    this.status('');
    const detail = withExports({ ...this.detail(result, width, height), ...at }, client, { ...result, labels });
    this.emit('result', detail);
    return detail;
  }

  // An event's detail for a segmentation's result.
  detail(result, width, height) {
    const objects = result.objects ? { objects: result.objects, counts: result.counts, instances: result.instances } : {};
    return { width, height, labels: result.labels.map((l) => l.label), shares: result.labels, labelMap: result.labelMap, ...objects };
  }

  /**
   * Name everything: every object in an image (default: the element's image) with no prompt —
   * Segment Anything's automatic masks from the `sam` checkpoint, each named among the labels by
   * the words model (`model`), or by an Open-Vocabulary SAM itself. `automatic` takes the
   * generator's settings (pointsPerSide, pointsPerBatch, predIouThresh, stabilityScoreThresh,
   * stabilityScoreOffset, boxNmsThresh). Fires and resolves with `result` {width, height,
   * objects, counts, instances}.
   */
  async everything(source = this.image, { automatic } = {}) {
    if (!source) throw new ModelError('no image yet: set src or pass one', { code: 'invalid-input' });
    if (!this.getAttribute('sam')) throw new ModelError('Name everything needs a Segment Anything checkpoint: set the sam attribute', { code: 'invalid-input' });
    const labels = this.labels;
    const width = source.videoWidth ?? source.displayWidth ?? source.width;
    const height = source.videoHeight ?? source.displayHeight ?? source.height;
    const canvas = new OffscreenCanvas(width, height);
    const ctx = canvas.getContext('2d');
    ctx.drawImage(source, 0, 0, width, height);
    const rgba = new Uint8Array(ctx.getImageData(0, 0, width, height).data.buffer);
    if (this.getAttribute('model')) await this.load(this.getAttribute('model'));
    await this.load(this.getAttribute('sam'));
    this.status('Naming everything…', 'busy');
    const counting = client.on('stage', ({ stage, done, total }) => {
      if (stage === 'masks') this.status(`Naming everything: ${done} of ${total} prompts decoded…`, 'busy');
    });
    let result;
    try {
      result = await client.everything({ rgba, width, height, labels, options: this.options(), automatic });
    } catch (e) {
      throw new ModelError(`could not name everything: ${e.message.replace(/\.$/, '')}. Check the sam attribute (a Segment Anything checkpoint) and the labels`, { code: e.code });
    } finally {
      counting();
    }
    const { objects, counts, instances } = result;
    // Each object in its word's colour (its class's), or its own when it has no name.
    this.show(canvas);
    const pixels = this.canvas.getContext('2d').getImageData(0, 0, width, height);
    const colours = objects.map((o) => paletteColour(o.class != null ? o.class + 1 : counts.length + o.id));
    paintMasks(pixels, instances, colours);
    this.canvas.getContext('2d').putImageData(pixels, 0, 0);
    const named = objects.filter((o) => o.label).length;
    const legend = this.shadowRoot.querySelector('[part=legend]');
    const classOf = new Map(objects.filter((o) => o.label).map((o) => [o.label, o.class]));
    legend.replaceChildren(...counts.filter((c) => c.count > 0).map((c) => {
      const li = document.createElement('li');
      const sw = document.createElement('span');
      sw.style.background = `rgb(${paletteColour(classOf.get(c.label) + 1).join(',')})`;
      li.append(sw, `${c.label} ×${c.count}`);
      return li;
    }), ...(objects.length > named ? [Object.assign(document.createElement('li'), { textContent: `${objects.length - named} unnamed` })] : []));
    this.status('');
    const detail = withExports({ width, height, objects, counts, instances }, client, { labels, width, height, objects, instances });
    this.emit('result', detail);
    return detail;
  }

  /** The current image on the canvas, without masks. */
  show(source) {
    this.canvas.classList.remove('empty');
    this.canvas.width = source.width;
    this.canvas.height = source.height;
    this.canvas.getContext('2d').drawImage(source, 0, 0);
  }

  /** Point mode: outline the object a prompt ({points, box}, image pixels) points at. */
  async prompt(prompt) {
    if (!this.image) throw new ModelError('no image to point at yet', { code: 'invalid-input' });
    if (this.getAttribute('model')) await this.load(this.getAttribute('model'));
    await this.load(this.getAttribute('sam'));
    const { width, height } = this.image;
    if (this.pixels?.source !== this.image) {
      const ctx = new OffscreenCanvas(width, height).getContext('2d');
      ctx.drawImage(this.image, 0, 0);
      this.pixels = { source: this.image, rgba: new Uint8Array(ctx.getImageData(0, 0, width, height).data.buffer), width, height };
    }
    this.status('Outlining…');
    const onEncode = () => this.status('Encoding the image…');
    const labels = this.labels;
    const result = await client.prompt({ image: this.pixels, prompt, labels, options: this.options(), onEncode });
    this.show(this.image);
    const ctx = this.canvas.getContext('2d');
    const pixels = ctx.getImageData(0, 0, width, height);
    paintMasks(pixels, result.mask, [paletteColour(1)], { outlines: true });
    ctx.putImageData(pixels, 0, 0);
    this.status(result.label ? `${result.label} (${(result.probability * 100).toFixed(0)} %)` : '');
    const detail = { width, height, mask: result.mask, label: result.label ?? null, probability: result.probability ?? null, iou: result.iou, area: result.area };
    // The one object, named by its word (an unnamed one is left out of the exports).
    const object = { label: detail.label, score: result.iou ?? detail.probability ?? 0 };
    withExports(detail, client, { labels, width, height, objects: [object], masks: [result.mask] });
    this.emit('result', detail);
    return detail;
  }

  draw(source) {
    const { width, height, labelMap, labels, unlabelled, counts } = this.result;
    this.canvas.classList.remove('empty');
    this.canvas.width = width;
    this.canvas.height = height;
    const ctx = this.canvas.getContext('2d');
    ctx.drawImage(source, 0, 0);
    const pixels = ctx.getImageData(0, 0, width, height);
    paintMasks(pixels, labelMap, labels.map((_, i) => paletteColour(i + 1)));
    ctx.putImageData(pixels, 0, 0);
    const legend = this.shadowRoot.querySelector('[part=legend]');
    legend.replaceChildren(...labels.map((l, i) => {
      const li = document.createElement('li');
      const sw = document.createElement('span');
      sw.style.background = `rgb(${paletteColour(i + 1).join(',')})`;
      // With sharp edges, the word's objects are counted too ("red 30.1 % ×2").
      const count = counts ? ` ×${counts[i].count}` : '';
      li.append(sw, `${l.label} ${(l.share * 100).toFixed(1)} %${count}`);
      return li;
    }), Object.assign(document.createElement('li'), { textContent: `unlabelled ${(unlabelled * 100).toFixed(1)} %` }));
  }
}

if (!customElements.get('word-mask')) customElements.define('word-mask', WordMask);
export { WordMask };
