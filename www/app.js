// Page logic. The worker owns the model; this file only gathers input and draws results.
import { paintMasks, paletteColour } from './masks.js';

const $ = (id) => document.getElementById(id);
let worker = null;
const HUB = (id) => `https://huggingface.co/${id}/resolve/main/`;
// Per-label colour (editable) and visibility, keyed by the label's text.
const chosenColours = new Map();
const hiddenLabels = new Set();
const labelList = () => $('labels').value.split(/[,\n;]/).map((l) => l.trim()).filter(Boolean);
const colour = (label) => {
  const name = state.result?.labels[label - 1]?.label ?? labelList()[label - 1]?.split('|')[0].trim();
  return chosenColours.get(name) ?? paletteColour(label);
};
const hex = (rgb) => `#${rgb.map((v) => v.toString(16).padStart(2, '0')).join('')}`;

const state = { image: null, result: null, busy: false, modelReady: false, download: null, camera: null, lastLoad: null, engine: 'dense' };
const status = (text) => { $('status').textContent = text; };

// ?model=<folder URL> picks a custom checkpoint (used by the tests and for self-hosted models).
const params = new URLSearchParams(location.search);
if (params.get('model')) {
  $('model-pick').value = 'custom';
  $('model-url').value = params.get('model');
}
const showCustom = () => { const c = $('model-pick').value === 'custom'; $('model-url').hidden = !c; $('model-url-label').hidden = !c; };
$('model-pick').onchange = showCustom;
showCustom();

// A wasm trap or a lost GPU device leaves the worker's model unusable: start a fresh worker,
// reload the model (from the cache) and carry on.
const FATAL = /unreachable|RuntimeError|device (was |is )?lost|DeviceLost/i;

function spawnWorker() {
  worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
  worker.onmessage = onWorkerMessage;
  worker.onerror = (e) => recover(e.message || 'the model worker stopped');
  worker.postMessage({ type: 'init', backend: 'webgpu' });
}

function recover(reason) {
  worker.terminate();
  state.busy = false;
  state.modelReady = false;
  updateButtons();
  spawnWorker();
  if (state.lastLoad) {
    status(`The model stopped (${reason}); restarting it…`);
    worker.postMessage(state.lastLoad);
  } else {
    status(`The model stopped (${reason}); load it again.`);
  }
}

function onWorkerMessage({ data }) {
  if (data.status === 'device' && !state.lastLoad) status(data.backend === 'webgpu' ? 'WebGPU ready. Load a model.' : 'No WebGPU here: running on the CPU (slower). Load a model.');
  if (data.status === 'loading') showProgress(data);
  if (data.status === 'ready') {
    state.modelReady = true;
    applyEngine(data.engine);
    setTimeout(tickCamera, 0);
    $('cancel').hidden = true;
    $('progress').value = $('progress').max;
    status(`Model ready (${data.backend}). Choose an image and type words.`);
    updateButtons();
  }
  if (data.status === 'error' && FATAL.test(data.message)) {
    recover(data.message);
    return;
  }
  if (data.status === 'error') {
    state.busy = false;
    $('cancel').hidden = true;
    status(`Error: ${data.message}`);
    updateButtons();
    if (state.camera) setTimeout(tickCamera, 1000);
  }
  if (data.status === 'result' && data.kind === 'segment') {
    state.busy = false;
    state.result = data;
    if (state.pending) state.image = state.pending;
    draw();
    showLegend();
    status(state.camera ? 'Live.' : 'Done.');
    updateButtons();
    if (state.camera) tickCamera(data);
  }
}
spawnWorker();
// After one visit the page and the wasm core open offline.
navigator.serviceWorker?.register('sw.js').catch((e) => console.warn(`offline support unavailable: ${e.message}`));

function showProgress({ done, total }) {
  const d = state.download ?? (state.download = { start: performance.now() });
  const seconds = (performance.now() - d.start) / 1000;
  const speed = done / Math.max(seconds, 1e-3);
  $('progress').max = total || 1;
  $('progress').value = total ? done : 0;
  const mb = (b) => (b / 1e6).toFixed(1);
  const eta = total ? ` · ${Math.max(0, (total - done) / speed).toFixed(0)} s left` : '';
  status(`Downloading weights: ${mb(done)}${total ? ` of ${mb(total)}` : ''} MB · ${mb(speed)} MB/s${eta}`);
}

function updateButtons() {
  $('segment').disabled = !(state.modelReady && state.image) || state.busy;
  $('download-labels').disabled = !state.result;
  $('download-overlay').disabled = !state.result;
  $('download-json').disabled = !state.result;
}

$('load').onclick = async () => {
  state.modelReady = false;
  state.download = null;
  updateButtons();
  const files = [...$('model-files').files];
  if (files.length) {
    const config = files.find((f) => f.name === 'config.json');
    const weights = files.find((f) => f.name !== 'config.json' && f.name !== 'preprocessor_config.json');
    if (!config || !weights) { status('Choose config.json and a weights file together.'); return; }
    const bytes = new Uint8Array(await weights.arrayBuffer());
    state.lastLoad = null; // local bytes are handed over, not kept: a restart asks for them again
    const pre = files.find((f) => f.name === 'preprocessor_config.json');
    const preprocessor = pre ? await pre.text() : undefined;
    worker.postMessage({ type: 'load', config: await config.text(), weights: bytes, weightsName: weights.name, preprocessor }, [bytes.buffer]);
  } else {
    const pick = $('model-pick').value;
    const base = (pick === 'custom' ? $('model-url').value : HUB(pick)).replace(/\/?$/, '/');
    state.lastLoad = { type: 'load', configUrl: `${base}config.json`, weightsUrl: `${base}model.safetensors`, weightsName: `${base}model.safetensors` };
    worker.postMessage(state.lastLoad);
    $('cancel').hidden = false;
  }
  status('Loading…');
};
$('cancel').onclick = () => worker.postMessage({ type: 'cancel' });

async function takeImage(blob) {
  if (!blob || !blob.type.startsWith('image/')) { status('That is not an image.'); return; }
  let bitmap;
  try { bitmap = await createImageBitmap(blob); } catch { status('This image could not be decoded.'); return; }
  if (bitmap.width < 16 || bitmap.height < 16 || bitmap.width > 8192 || bitmap.height > 8192) {
    status(`Images must be 16 to 8192 pixels a side; this one is ${bitmap.width}x${bitmap.height}.`);
    return;
  }
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const ctx = canvas.getContext('2d');
  ctx.drawImage(bitmap, 0, 0);
  state.image = { bitmap, width: bitmap.width, height: bitmap.height, rgba: ctx.getImageData(0, 0, bitmap.width, bitmap.height).data };
  state.result = null;
  draw();
  $('legend').replaceChildren();
  updateButtons();
}
$('image').onchange = () => takeImage($('image').files[0]);
for (const button of document.querySelectorAll('[data-sample]')) {
  button.onclick = async () => {
    $('labels').value = button.dataset.labels;
    takeImage(await (await fetch(button.dataset.sample)).blob());
  };
}
document.addEventListener('dragover', (e) => e.preventDefault());
document.addEventListener('drop', (e) => { e.preventDefault(); takeImage(e.dataTransfer.files[0]); });
document.addEventListener('paste', (e) => takeImage([...e.clipboardData.files][0]));

// Chips mirror the text field: recolour, hide, move or remove a label.
function renderChips() {
  const labels = labelList();
  $('chips').replaceChildren(...labels.map((text, i) => {
    const name = text.split('|')[0].trim();
    const li = document.createElement('li');
    li.className = `chip${hiddenLabels.has(name) ? ' hidden-label' : ''}`;
    const picker = Object.assign(document.createElement('input'), { type: 'color', value: hex(colour(i + 1)) });
    picker.setAttribute('aria-label', `colour of ${name}`);
    picker.oninput = () => { chosenColours.set(name, picker.value.match(/\w\w/g).map((h) => parseInt(h, 16))); draw(); showLegend(); };
    const label = Object.assign(document.createElement('span'), { textContent: text });
    const button = (symbol, title, action) => {
      const b = Object.assign(document.createElement('button'), { textContent: symbol, title });
      b.setAttribute('aria-label', `${title} ${name}`);
      b.onclick = action;
      return b;
    };
    const move = (delta) => () => {
      const j = i + delta;
      if (j < 0 || j >= labels.length) return;
      [labels[i], labels[j]] = [labels[j], labels[i]];
      $('labels').value = labels.join(', ');
      renderChips();
    };
    const toggle = button(hiddenLabels.has(name) ? 'show' : 'hide', hiddenLabels.has(name) ? 'show' : 'hide', () => {
      if (hiddenLabels.has(name)) hiddenLabels.delete(name); else hiddenLabels.add(name);
      renderChips();
      draw();
    });
    const remove = button('×', 'remove', () => { labels.splice(i, 1); $('labels').value = labels.join(', '); renderChips(); });
    li.append(picker, label, button('←', 'move left', move(-1)), button('→', 'move right', move(1)), toggle, remove);
    return li;
  }));
}
$('labels').oninput = renderChips;
renderChips();
$('outlines').onchange = () => draw();

$('threshold').oninput = () => { $('threshold-value').textContent = Number($('threshold').value).toFixed(2); };

// The engine comes with the model: GroupViT has no dense method, evaluates with one template,
// and its threshold marks background where a pixel's best group-class score is low.
function applyEngine(engine) {
  if (engine === state.engine) return;
  state.engine = engine;
  const groupvit = engine === 'groupvit';
  $('method').disabled = groupvit;
  $('method-row').hidden = groupvit;
  $('templates').value = groupvit ? 'single' : 'imagenet80';
  $('threshold').value = groupvit ? 0.95 : 0.1;
  $('threshold-text').textContent = groupvit ? 'Background where the best score is under' : 'Leave pixels unlabelled under probability';
  $('threshold').oninput();
  $('engine').textContent = groupvit ? 'GroupViT (learned grouping)' : 'dense CLIP';
}
$('opacity').oninput = () => draw();

function segmentImage(image) {
  state.busy = true;
  state.pending = image;
  updateButtons();
  if (!state.camera) status('Segmenting…');
  const rgba = new Uint8Array(image.rgba);
  worker.postMessage({
    type: 'segment', id: Date.now(), rgba, width: image.width, height: image.height, labels: $('labels').value,
    options: {
      ...(state.engine === 'groupvit' ? {} : { method: $('method').value }),
      templates: $('templates').value,
      threshold: Number($('threshold').value),
    },
  }, [rgba.buffer]);
}

$('segment').onclick = () => {
  if (!state.image || state.busy) return;
  segmentImage(state.image);
};

// Camera: segment the newest frame whenever the worker is free (frames in between are dropped).
async function grabFrame() {
  const video = $('video');
  const bitmap = await createImageBitmap(video);
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const ctx = canvas.getContext('2d');
  ctx.drawImage(bitmap, 0, 0);
  return { bitmap, width: bitmap.width, height: bitmap.height, rgba: ctx.getImageData(0, 0, bitmap.width, bitmap.height).data };
}

async function tickCamera() {
  const cam = state.camera;
  if (!cam) return;
  const now = performance.now();
  if (cam.last) $('fps').textContent = `${(1000 / (now - cam.last)).toFixed(1)} fps`;
  cam.last = now;
  if (cam.frozen || !state.modelReady || state.busy) return;
  const video = $('video');
  if (video.readyState < 2) { setTimeout(tickCamera, 100); return; }
  segmentImage(await grabFrame());
}

async function startCamera(deviceId) {
  stopCamera();
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ video: deviceId ? { deviceId: { exact: deviceId } } : { facingMode: 'environment' } });
    const video = $('video');
    video.srcObject = stream;
    await video.play();
    const devices = (await navigator.mediaDevices.enumerateDevices()).filter((d) => d.kind === 'videoinput');
    state.camera = { stream, devices, deviceId: stream.getVideoTracks()[0]?.getSettings().deviceId, frozen: false };
    $('camera').textContent = 'Stop camera';
    $('switch-camera').hidden = devices.length < 2;
    $('freeze').hidden = false;
    status(state.modelReady ? 'Live.' : 'Camera on: load a model to see masks.');
    tickCamera();
  } catch (e) {
    status(`The camera is not available: ${e.message}`);
  }
}

function stopCamera() {
  state.camera?.stream.getTracks().forEach((t) => t.stop());
  state.camera = null;
  $('camera').textContent = 'Start camera';
  $('switch-camera').hidden = true;
  $('freeze').hidden = true;
  $('fps').textContent = '';
}

$('camera').onclick = () => (state.camera ? stopCamera() : startCamera());
$('switch-camera').onclick = () => {
  const { devices, deviceId } = state.camera;
  const next = devices[(devices.findIndex((d) => d.deviceId === deviceId) + 1) % devices.length];
  startCamera(next.deviceId);
};
$('freeze').onclick = () => {
  const cam = state.camera;
  cam.frozen = !cam.frozen;
  $('freeze').setAttribute('aria-pressed', String(cam.frozen));
  $('freeze').textContent = cam.frozen ? 'Resume' : 'Freeze frame';
  if (!cam.frozen) tickCamera();
};

function draw() {
  const view = $('view');
  if (!state.image) return;
  const { width, height, bitmap } = state.image;
  view.width = width;
  view.height = height;
  const ctx = view.getContext('2d');
  ctx.drawImage(bitmap, 0, 0);
  const r = state.result;
  if (!r || r.width !== width || r.height !== height) return;
  const pixels = ctx.getImageData(0, 0, width, height);
  const colours = r.labels.map((l, i) => (hiddenLabels.has(l.label) ? null : colour(i + 1)));
  paintMasks(pixels, r.labelMap, colours, { opacity: Number($('opacity').value), outlines: $('outlines').checked });
  ctx.putImageData(pixels, 0, 0);
}

function showLegend() {
  if (!state.result) return;
  const items = state.result.labels.map((l, i) => {
    const li = document.createElement('li');
    const sw = document.createElement('span');
    sw.className = 'swatch';
    sw.style.background = `rgb(${colour(i + 1).join(',')})`;
    li.append(sw, `${l.label} ${(l.share * 100).toFixed(1)} %`);
    li.dataset.label = l.label;
    return li;
  });
  const none = document.createElement('li');
  none.textContent = `unlabelled ${(state.result.unlabelled * 100).toFixed(1)} %`;
  $('legend').replaceChildren(...items, none);
}

$('view').onmousemove = (e) => {
  const r = state.result;
  if (!r) return;
  const rect = $('view').getBoundingClientRect();
  const x = Math.floor((e.clientX - rect.left) / rect.width * r.width);
  const y = Math.floor((e.clientY - rect.top) / rect.height * r.height);
  const i = y * r.width + x;
  const label = r.labelMap[i];
  const score = r.confidence ? ` (${(r.confidence[i] / 255).toFixed(2)})` : '';
  $('hover').textContent = `${label ? r.labels[label - 1].label : 'unlabelled'}${score}`;
};

function save(blob, name) {
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}
$('download-labels').onclick = async () => {
  const r = state.result;
  const canvas = new OffscreenCanvas(r.width, r.height);
  const ctx = canvas.getContext('2d');
  const img = ctx.createImageData(r.width, r.height);
  r.labelMap.forEach((v, i) => { img.data.set([v, v, v, 255], i * 4); });
  ctx.putImageData(img, 0, 0);
  save(await canvas.convertToBlob({ type: 'image/png' }), 'labels.png');
};
$('download-overlay').onclick = () => $('view').toBlob((blob) => save(blob, 'overlay.png'), 'image/png');
$('download-json').onclick = () => {
  const { width, height, labels, unlabelled } = state.result;
  save(new Blob([JSON.stringify({ width, height, labels, unlabelled }, null, 1)], { type: 'application/json' }), 'wordmask.json');
};
