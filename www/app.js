// Page logic. The worker owns the model (through client.js); this file only gathers input and
// draws results.
import { colourPng, greyPng, paintMasks, paletteColour } from './masks.js';
import { sharedClient } from './client.js';
import { FolderMode, droppedFiles } from './folder.js';
import { clearLoadProblem, filesText, progressText, showLoadProblem } from './loading.js';
import { Q8_WEIGHTS } from './modelfiles.js';
import { Legend } from './legend.js';
import { ObjectsList, everythingLayer, keepObject, outlineObject } from './objects.js';
import { PointMode } from './point.js';
import { grabFrame } from './frames.js';
import { VideoMode } from './video.js';
import { PerformanceReadout, totalMs } from './performance.js';
import { quickLookSize, quickLookText } from './progressive.js';
import { arrowTabs, keepingFocus, toolbar } from './keyboard.js';
import { Probe } from './probe.js';
import { ENGINES, PROMPT_ENGINES, SETTINGS } from './settings.js';
import { explainUnlabelled, showUnlabelled } from './unlabelled.js';
import { foldChips, keepTypedWords, putBackWords } from './words.js';

const $ = (id) => document.getElementById(id);
const client = sharedClient();
// Per-label colour (editable) and visibility, keyed by the label's name.
const chosenColours = new Map();
const hiddenLabels = new Set();
const state = { image: null, result: null, busy: false, modelReady: false, download: null, camera: null, engine: null, labels: [], isolated: null,
  prompts: null, sharpRun: false, object: null, highlight: null, quickLook: null };
const colour = (label) => {
  const name = state.result?.labels?.[label - 1]?.label ?? state.result?.counts?.[label - 1]?.label ?? state.labels[label - 1]?.name;
  return chosenColours.get(name) ?? paletteColour(label);
};
const hex = (rgb) => `#${rgb.map((v) => v.toString(16).padStart(2, '0')).join('')}`;
const status = (text) => { $('status').textContent = text; };
let folder = null; // the folder mode (folder.js), made at the end
let videoFile = null; // a video file's frames (video.js), made at the end

// ?model=<folder URL> (and ?sam=<folder URL> for the Point mode) pick custom checkpoints
// (self-hosted models).
const params = new URLSearchParams(location.search);
for (const [param, pick, url] of [['model', 'model-pick', 'model-url'], ['sam', 'sam-pick', 'sam-url']]) {
  if (params.get(param)) {
    $(pick).value = 'custom';
    $(url).value = params.get(param);
  }
}
const showCustom = () => {
  const c = $('model-pick').value === 'custom';
  $('model-url').hidden = !c;
  $('model-url-label').hidden = !c;
  $('sam-url').hidden = $('sam-pick').value !== 'custom';
};
$('model-pick').onchange = () => { showCustom(); describeModel(); };
$('model-pick').addEventListener('focus', () => describeModel(), { once: true });

// What the picked hub checkpoint costs to download, as the hub reports it (its file listing),
// asked for when the visitor looks at the picker; unknown when the hub cannot be reached.
const sizes = new Map();
async function describeModel() {
  const option = $('model-pick').selectedOptions[0];
  const id = option.value;
  $('model-info').textContent = option.dataset.about ?? '';
  if (id === 'custom') return;
  if (!sizes.has(id)) {
    sizes.set(id, fetch(`https://huggingface.co/api/models/${id}/tree/main`).then((r) => (r.ok ? r.json() : null)).then((files) => {
      if (!Array.isArray(files)) return null;
      const size = (name) => files.find((f) => f.path === name)?.lfs?.size ?? files.find((f) => f.path === name)?.size;
      const weights = size('model.safetensors') ?? size('pytorch_model.bin');
      return weights ? weights + (size('config.json') ?? 0) + (size('preprocessor_config.json') ?? 0) : null;
    }).catch(() => null));
  }
  const bytes = await sizes.get(id);
  if ($('model-pick').value !== id) return;
  const download = bytes ? `${(bytes / 1e6).toFixed(0)} MB to download (as the hub lists it)` : 'download size: ask the hub when online';
  $('model-info').textContent = [option.dataset.about, download].filter(Boolean).join(' · ');
}
$('sam-pick').onchange = showCustom;
showCustom();
$('model-info').textContent = $('model-pick').selectedOptions[0].dataset.about ?? '';

client.on('progress', showProgress);
client.on('restarting', ({ reason }) => {
  state.busy = false;
  state.modelReady = false;
  updateButtons();
  status(client.reloads ? `The model stopped (${reason}); restarting it…` : `The model stopped (${reason}); load it again.`);
});
client.on('error', ({ message }) => status(`Error: ${message}`));
client.on('ready', ({ backend, role, engine, defaults, names }) => {
  if (role === 'prompts') {
    state.prompts = { engine, names };
    showObjectsBar();
    const architecture = PROMPT_ENGINES.find((e) => e.name === engine)?.architecture ?? engine;
    const what = names ? `${architecture} (outlines and names objects)` : architecture;
    status(`${what} ready (${backend}). ${state.image ? 'Click an object in the image.' : 'Choose an image, then click an object.'}`);
    fitCanvas();
    updateButtons();
    return;
  }
  state.modelReady = true;
  applyEngine(engine, defaults);
  setTimeout(tickCamera, 0);
  $('cancel').hidden = true;
  $('progress').value = $('progress').max;
  status(`Model ready (${backend}). ${nextStep()}`);
  updateButtons();
});
// What the visitor still has to do before pressing Segment.
function nextStep() {
  const words = $('labels').value.trim();
  if (state.image && words) return 'Press Segment (or Enter in the words).';
  if (state.image) return 'Type words, then press Segment.';
  return words ? 'Choose an image.' : 'Choose an image and type words.';
}
// The stage a segmentation is in (the worker reports each as it begins; its time is in the
// timings line afterwards, under the same names).
const STAGE_TEXT = {
  text: 'the words through the text encoder (each new word once per template)',
  image: 'the image through the image encoder',
  scores: 'reading the scores back',
  finish: 'the label map',
  edges: 'Segment Anything redraws the edges (the image is encoded once)',
};
client.on('stage', ({ stage, done, total }) => {
  if (!state.busy) return;
  if (stage === 'masks') { status(`Naming everything: ${done} of ${total} prompts decoded…`); return; }
  // While a quick look shows, its line stays: a longer one would push the image down on a phone.
  if (state.camera || state.quickLook) return;
  const stages = Object.keys(STAGE_TEXT).slice(0, state.sharpRun ? 5 : 4);
  status(`Segmenting: ${stages.indexOf(stage) + 1} of ${stages.length}, ${STAGE_TEXT[stage]}…`);
});
client.openDevice().then(
  ({ backend, threads, precision, adapter, limits }) => {
    $('device-info').textContent = deviceText({ backend, threads, precision, adapter, limits });
    status(backend === 'webgpu'
      ? `WebGPU ready${precision === 'f16' ? ' (computing in f16)' : ''}. Load a model.`
      : `No WebGPU here: running on the CPU (slower${threads > 1 ? `, ${threads} threads` : ''}). Load a model.`);
  },
  (e) => status(`Error: ${e.message}`),
);

// The device line under Advanced: the adapter as the browser names it, the precision, and the
// largest buffer the device was granted (the core sizes its chunks from it).
function deviceText({ backend, threads, precision, adapter, limits }) {
  if (backend !== 'webgpu') return `Device: the CPU (WebAssembly${threads > 1 ? `, ${threads} threads` : ', one thread'}), f32.`;
  const name = [adapter?.vendor, adapter?.architecture, adapter?.device, adapter?.description].filter(Boolean).join(' ');
  const f16 = precision === 'f16' ? 'computing in f16' : `f32${adapter?.f16 ? ' (the adapter offers shader-f16)' : ''}`;
  const binding = limits ? `, buffers up to ${Math.floor(limits.maxStorageBufferBindingSize / 2 ** 20)} MiB` : '';
  return `Device: WebGPU${name ? ` on ${name}` : ''}, ${f16}${binding}.`;
}
// After one visit the page and the wasm core open offline.
navigator.serviceWorker?.register('sw.js').catch((e) => console.warn(`offline support unavailable: ${e.message}`));

function showProgress(detail) {
  const d = state.download ?? (state.download = { start: performance.now() });
  $('progress').max = detail.total || 1;
  $('progress').value = detail.total ? detail.loaded : 0;
  status(progressText(detail, d.start));
}

function updateButtons() {
  $('segment').disabled = !(state.modelReady && state.image) || state.busy;
  // A quick look is not downloaded: the full result is.
  const results = pointMode.active ? pointMode.outlined.length > 0 : Boolean(state.result) && !state.result.preview;
  for (const id of ['download-labels', 'download-colours', 'download-overlay', 'download-json']) $(id).disabled = !results;
  const objects = !pointMode.active && Boolean(state.result?.instances);
  $('download-objects').hidden = !objects;
  $('objects-download-note').hidden = !objects;
  $('everything').disabled = !state.image || state.busy;
  $('point-undo').disabled = pointMode.history.length === 0;
  $('point-clear').disabled = pointMode.objects.length === 0;
  $('folder-add').hidden = !(pointMode.active && shownFromFolder() && folder.current.result && pointMode.outlined.length);
}

// Point mode: Segment Anything outlines what is clicked; the typed words name it.
const pointMode = new PointMode(client, $('view'), {
  status,
  changed: () => { draw(); showLegend(); updateButtons(); },
  image: () => state.image,
  request: () => ({ labels: $('labels').value, options: settingsChosen() }),
  unready: () => {
    if (client.has('prompts')) return null;
    if (state.samLoading) return 'The Segment Anything model is still loading: click again once it is ready.';
    return 'No Segment Anything model is loaded: choose one above and press Load, then click an object.';
  },
});

function setMode(mode) {
  pointMode.active = mode === 'point';
  for (const [id, on] of [['tab-words', !pointMode.active], ['tab-point', pointMode.active]]) {
    $(id).setAttribute('aria-selected', String(on));
    $(id).tabIndex = on ? 0 : -1;
  }
  $('point-panel').hidden = !pointMode.active;
  $('segment').hidden = pointMode.active;
  $('objects-bar').hidden = pointMode.active;
  $('view').classList.toggle('pointing', pointMode.active);
  fitCanvas(); // the Point panel takes room above the image
  if (pointMode.active && $('view').getBoundingClientRect().bottom > innerHeight) $('view').scrollIntoView({ block: 'end' });
  draw();
  showLegend();
  updateButtons();
}
$('tab-words').onclick = () => setMode('words');
$('tab-point').onclick = () => setMode('point');
arrowTabs(document.querySelector('[role=tablist]'));
$('point-undo').onclick = () => { pointMode.undo(); updateButtons(); };
$('point-clear').onclick = () => pointMode.clear();
$('sam-load').onclick = async () => {
  const pick = $('sam-pick').value;
  status('Loading the Segment Anything model…');
  state.samLoading = true;
  try {
    await client.load(pick === 'custom' ? $('sam-url').value : (pick === 'files' ? promptFiles : pick));
  } catch (e) {
    status(`Error: ${e.message}`);
  } finally {
    state.samLoading = false;
  }
};

// A Segment Anything or Open-Vocabulary SAM checkpoint loaded from the Model panel serves the
// Point mode: the page switches to it, its picker showing that checkpoint.
let promptFiles = null;
function showPromptModel(source, { files }) {
  const pick = $('sam-pick');
  pick.querySelector('option[value="files"]')?.remove();
  if (files) {
    promptFiles = source;
    pick.append(Object.assign(document.createElement('option'), { value: 'files', textContent: `${files.used.join(', ')} (local files)` }));
    pick.value = 'files';
  } else if ([...pick.options].some((o) => o.value === source)) {
    pick.value = source;
  } else {
    pick.value = 'custom';
    $('sam-url').value = source;
  }
  showCustom();
  setMode('point');
  $('load-note').textContent = [$('load-note').textContent, 'The page is in Point mode now: click an object in the image.'].filter(Boolean).join(' ');
}

$('load').onclick = async () => {
  state.modelReady = false;
  state.download = null;
  updateButtons();
  clearLoadProblem($('load-problem'));
  $('load-note').textContent = '';
  const files = [...$('model-files').files];
  const pick = $('model-pick').value;
  const source = files.length ? files : (pick === 'custom' ? $('model-url').value : pick);
  $('cancel').hidden = Boolean(files.length);
  status('Loading…');
  try {
    const ready = await client.load(source, { q8: $('q8-weights').checked });
    $('cancel').hidden = true;
    if (ready.files) $('load-note').textContent = filesText(ready.files);
    if (ready.weights === Q8_WEIGHTS) $('load-note').textContent = `${$('load-note').textContent} int8 weights (${Q8_WEIGHTS}).`.trim();
    if (ready.role === 'prompts') {
      state.modelReady = client.has('words');
      showPromptModel(source, ready);
    }
  } catch (e) {
    $('cancel').hidden = true;
    state.modelReady = client.has('words');
    updateButtons();
    if (e.code === 'cancelled') {
      status('Download cancelled. Load model resumes it from where it stopped.');
      return;
    }
    status(showLoadProblem($('load-problem'), e, {
      retry: () => $('load').click(),
      files: () => $('model-files').click(),
      url: () => { $('model-pick').value = 'custom'; showCustom(); $('model-url').focus(); },
    }));
  }
};
$('cancel').onclick = () => client.cancel();
// The int8 choice is remembered across visits.
const Q8_KEY = 'wordmask-q8-weights';
$('q8-weights').checked = localStorage.getItem(Q8_KEY) === '1';
$('q8-weights').onchange = () => localStorage.setItem(Q8_KEY, $('q8-weights').checked ? '1' : '0');

// Sharp edges (Words mode): Segment Anything, loaded beside the words model under Point, redraws
// each word's regions along the image's edges and counts its objects. The switch shows once such
// a model is loaded and is remembered across visits (on until turned off). Name everything:
// every object Segment Anything finds without prompts, named by the typed words (Open-Vocabulary
// SAM names its own, among the words or its classifier's classes).
const SHARP_KEY = 'wordmask-sharp-edges';
try { $('sharp').checked = localStorage.getItem(SHARP_KEY) !== 'off'; } catch { $('sharp').checked = true; }
function canSharpen() {
  return Boolean(state.prompts);
}
function sharpEdges() {
  return canSharpen() && $('sharp').checked;
}
function showObjectsBar() {
  $('sharp-row').hidden = !canSharpen();
  $('objects-get').hidden = Boolean(state.prompts);
  let note = 'Sharp edges: Segment Anything redraws each word along the image\'s edges and counts its objects (camera frames go without).';
  if (!state.prompts) note = 'Sharp edges and Name everything need a Segment Anything model beside the words model: load one under Point.';
  else if (state.prompts.names) note = 'Sharp edges: Open-Vocabulary SAM redraws each word along the image\'s edges. Name everything: it names each object itself, among the typed words or its own classes.';
  $('objects-note').textContent = note;
}
showObjectsBar();
$('sharp').onchange = () => {
  try { localStorage.setItem(SHARP_KEY, $('sharp').checked ? 'on' : 'off'); } catch { /* not kept in a private window */ }
  // The same image again, with or without sharp edges, to compare.
  if (state.result?.labelMap && !state.camera && !state.busy) segmentImage(state.image);
};
$('objects-get').onclick = () => { setMode('point'); $('sam-pick').focus(); };
$('everything').onclick = () => nameEverything();

const NO_SAM = 'Error: Name everything needs a Segment Anything model: under Point, choose one '
  + '(nielsr/slimsam-77-uniform is the smallest) and press Load, then press Name everything again.';

async function nameEverything() {
  if (!state.image || state.busy) return;
  if (!state.prompts && !state.samLoading) { status(NO_SAM); return; }
  if (state.camera && !state.camera.frozen) { status('Freeze the frame first: Name everything works on one image.'); return; }
  const image = state.image;
  state.busy = true;
  updateButtons();
  $('unlabelled-help').replaceChildren();
  status('Naming everything: Segment Anything encodes the image, then outlines what a grid of points finds…');
  try {
    const { width, height } = image;
    const result = await client.everything({ rgba: new Uint8Array(image.rgba), width, height, labels: $('labels').value, options: settingsChosen() });
    if (state.image === image) {
      state.result = result;
      forgetObject();
      draw();
      showLegend();
      const { objects, counts } = result;
      const named = objects.filter((o) => o.label).length;
      const why = counts.length && !named && !client.has('words') ? ' (load a words model to name them)' : '';
      status(`Named everything: ${objects.length} ${objects.length === 1 ? 'object' : 'objects'}${named ? `, ${named} named` : ''}${why}.`);
      const ms = (v) => `${Math.round(v)} ms`;
      $('timings').textContent = `Name everything: ${ms(result.encodeMs + result.masksMs)} — encoding ${ms(result.encodeMs)}, masks and names ${ms(result.masksMs)}`;
      readout.show(result, 'everything');
    }
  } catch (e) {
    status(`Error: ${e.message}`);
  }
  state.busy = false;
  updateButtons();
}

let imageTicket = 0; // the latest image wins when two arrive together
async function takeImage(blob) {
  if (blob?.type.startsWith('video/')) { videoFile.take(blob); return; }
  if (!blob || !blob.type.startsWith('image/')) { status('That is not an image.'); return; }
  const ticket = ++imageTicket;
  videoFile?.close();
  let bitmap;
  // Upright by the file's EXIF orientation, as <img> shows it and as `wordmask` reads it.
  try { bitmap = await createImageBitmap(blob, { imageOrientation: 'from-image' }); } catch { status('This image could not be decoded.'); return; }
  if (ticket !== imageTicket) return;
  if (bitmap.width < 16 || bitmap.height < 16 || bitmap.width > 8192 || bitmap.height > 8192) {
    status(`Images must be 16 to 8192 pixels a side; this one is ${bitmap.width}x${bitmap.height}.`);
    return;
  }
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const ctx = canvas.getContext('2d');
  ctx.drawImage(bitmap, 0, 0);
  showImage({ bitmap, width: bitmap.width, height: bitmap.height, rgba: ctx.getImageData(0, 0, bitmap.width, bitmap.height).data });
}

/** A new image on the canvas (a file, a sample or a camera frame), with no masks yet. */
function showImage(image) {
  state.image = image;
  state.result = null;
  forgetObject();
  $('unlabelled-help').replaceChildren();
  pointMode.reset();
  draw();
  showLegend();
  updateButtons();
}
$('image').onchange = () => takeImage($('image').files[0]);
// The first view shows what the page is for: a sample photo and its words, ready to segment
// once a model is loaded (unless the visitor has already brought an image).
(async () => {
  const first = document.querySelector('[data-sample]');
  try {
    const blob = await (await fetch(first.dataset.sample)).blob();
    if (state.image) return;
    $('labels').value = first.dataset.labels;
    parseField();
    await takeImage(blob);
  } catch { /* offline without the sample: the page still works */ }
})();
for (const button of document.querySelectorAll('[data-sample]')) {
  button.onclick = async () => {
    keepTypedWords($('labels'), $('words-back'));
    $('labels').value = button.dataset.labels;
    parseField();
    takeImage(await (await fetch(button.dataset.sample)).blob());
  };
}
$('words-back').onclick = () => {
  putBackWords($('labels'), $('words-back'));
  parseField();
  $('labels').focus();
};
document.addEventListener('dragover', (e) => e.preventDefault());
document.addEventListener('drop', (e) => {
  e.preventDefault();
  // A folder dropped: the folder mode; a file: the image.
  const entry = e.dataTransfer.items?.[0]?.webkitGetAsEntry?.();
  if (entry?.isDirectory) { droppedFiles(entry).then((files) => folder.take(files)); return; }
  if (e.dataTransfer.files.length) takeImage(e.dataTransfer.files[0]);
});
document.addEventListener('paste', (e) => takeImage([...e.clipboardData.files][0]));

// Chips mirror the text field (parsed by the core's label grammar): recolour, hide, move or
// remove a label. Moving or removing rewrites the field with one class per comma.
const classText = (label) => label.synonyms.join('|');
const foldLongChips = foldChips($('chips'), $('chips-more'));

async function parseField() {
  const text = $('labels').value;
  let labels = [];
  try {
    labels = await client.parseLabels(text);
  } catch (e) {
    if (text.trim()) status(`Words: ${e.message}`);
  }
  if ($('labels').value === text) renderChips(labels); // else a newer call draws
}

// Chip actions act on the labels as they are when clicked (the chips may be a moment behind).
function rewrite(edit) {
  const labels = [...state.labels];
  edit(labels);
  $('labels').value = labels.map(classText).join(', ');
  renderChips(labels);
}

function renderChips(labels) {
  state.labels = labels;
  keepingFocus($('chips'), () => $('chips').replaceChildren(...labels.map((label, i) => {
    const { name } = label;
    const at = () => state.labels.findIndex((l) => l.name === name);
    const li = document.createElement('li');
    li.className = `chip${hiddenLabels.has(name) ? ' hidden-label' : ''}`;
    const picker = Object.assign(document.createElement('input'), { type: 'color', value: hex(colour(i + 1)) });
    picker.setAttribute('aria-label', `colour of ${name}`);
    picker.oninput = () => { chosenColours.set(name, picker.value.match(/\w\w/g).map((h) => parseInt(h, 16))); draw(); showLegend(); };
    const words = Object.assign(document.createElement('span'), { textContent: classText(label) });
    const button = (symbol, title, action) => {
      const b = Object.assign(document.createElement('button'), { textContent: symbol, title });
      b.setAttribute('aria-label', `${title} ${name}`);
      b.onclick = action;
      return b;
    };
    const move = (delta) => () => rewrite((list) => {
      const [k, j] = [at(), at() + delta];
      if (k >= 0 && j >= 0 && j < list.length) [list[k], list[j]] = [list[j], list[k]];
    });
    const toggle = button(hiddenLabels.has(name) ? 'show' : 'hide', hiddenLabels.has(name) ? 'show' : 'hide', () => {
      if (hiddenLabels.has(name)) hiddenLabels.delete(name); else hiddenLabels.add(name);
      renderChips(state.labels);
      draw();
    });
    const remove = button('×', 'remove', () => rewrite((list) => { if (at() >= 0) list.splice(at(), 1); }));
    // The arrows (the keyboard's way to reorder) show when the chip is hovered or focused.
    const [left, right] = [button('←', 'move left', move(-1)), button('→', 'move right', move(1))];
    left.classList.add('move');
    right.classList.add('move');
    // One tab stop per chip; arrow keys reach its controls.
    const tools = document.createElement('div');
    tools.append(picker, words, left, right, toggle, remove);
    li.dataset.label = name;
    li.append(toolbar(tools, name));
    // Drag a chip onto another to move it there (the arrow buttons do the same from the keyboard).
    li.draggable = true;
    li.ondragstart = (e) => { e.dataTransfer.setData('application/x-wordmask-label', name); li.classList.add('dragging'); };
    li.ondragend = () => li.classList.remove('dragging');
    li.ondragover = (e) => { if (e.dataTransfer.types.includes('application/x-wordmask-label')) { e.preventDefault(); e.stopPropagation(); } };
    li.ondrop = (e) => {
      const from = e.dataTransfer.getData('application/x-wordmask-label');
      if (!from) return;
      e.preventDefault();
      e.stopPropagation();
      rewrite((list) => {
        const k = list.findIndex((l) => l.name === from);
        const j = list.findIndex((l) => l.name === name);
        if (k >= 0 && j >= 0 && k !== j) list.splice(j, 0, ...list.splice(k, 1));
      });
    };
    return li;
  })), $('labels'));
  foldLongChips();
  showLegend();
}
$('labels').oninput = parseField;
// Enter in the words segments (a comma already makes a chip).
$('labels').addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !$('segment').disabled) $('segment').click();
});
parseField();
$('outlines').onchange = () => draw();

// The Advanced controls: one per setting of the core (settings.js, generated from it), shown
// when the loaded engine reads it. The engine itself is the checkpoint's, named above them.
const words = (key) => key.replace(/[A-Z]/g, (c) => ` ${c.toLowerCase()}`).replace(/^./, (c) => c.toUpperCase());
const shownValue = (value) => (Array.isArray(value) ? (value.length ? value.join('; ') : 'none') : value);
for (const setting of SETTINGS.filter((s) => s.key !== 'engine')) {
  const row = Object.assign(document.createElement('div'), { id: `${setting.key}-row`, hidden: true });
  const label = Object.assign(document.createElement('label'), { htmlFor: setting.key });
  let input;
  if (setting.kind === 'choice') {
    input = document.createElement('select');
    input.append(...setting.choices.map(([value, help]) => Object.assign(document.createElement('option'), { value, textContent: value, title: help })));
  } else if (setting.key === 'threshold') {
    input = Object.assign(document.createElement('input'), { type: 'range', min: 0, max: 1, step: 0.01 });
  } else {
    const numeric = setting.kind === 'integer' || setting.kind === 'number';
    input = Object.assign(document.createElement('input'), { type: numeric ? 'number' : 'text', min: 0, step: setting.kind === 'integer' ? 1 : 'any' });
  }
  label.append(Object.assign(document.createElement('span'), { id: `${setting.key}-text`, textContent: words(setting.key) }));
  if (setting.key === 'threshold') label.append(' ', Object.assign(document.createElement('output'), { id: 'threshold-value' }));
  Object.assign(input, { id: setting.key, title: setting.help });
  // A control the user changed keeps its value when a model of the same engine loads, and only
  // changed controls are sent: the others are the engine's defaults.
  input.addEventListener('input', () => { input.dataset.touched = 'yes'; });
  row.append(label, input);
  $('settings').append(row);
}
$('threshold').addEventListener('input', () => { $('threshold-value').textContent = Number($('threshold').value).toFixed(2); });

// Before a model loads, the controls show the first engine's settings (the default checkpoint's).
applyEngine(ENGINES[0].name, ENGINES[0].defaults);
$('engine').textContent = '(load a model)';

/** The settings the user changed, for the loaded engine, as the core reads them. */
function settingsChosen() {
  const options = {};
  for (const { key, kind } of SETTINGS) {
    const input = $(key);
    if (!input?.dataset.touched || !(key in (state.defaults ?? {}))) continue;
    options[key] = kind === 'integer' || kind === 'number' ? Number(input.value) : input.value;
  }
  return options;
}

// The controls follow the loaded engine: the settings it reads, with its defaults (the core's).
function applyEngine(engine, defaults) {
  const changed = engine !== state.engine;
  state.engine = engine;
  state.defaults = defaults;
  for (const { key } of SETTINGS.filter((s) => s.key !== 'engine')) {
    $(`${key}-row`).hidden = !(key in defaults);
    $(key).disabled = !(key in defaults);
    if (changed) delete $(key).dataset.touched;
    if (key in defaults && !$(key).dataset.touched) $(key).value = shownValue(defaults[key]);
  }
  const about = ENGINES.find((e) => e.name === engine);
  $('threshold-text').textContent = about?.threshold ?? 'Threshold';
  $('threshold').dispatchEvent(new Event('input'));
  delete $('threshold').dataset.touched;
  $('engine').textContent = about?.description ?? engine;
}
$('opacity').oninput = () => draw();

// What the last segmentation spent its time on, stage by stage (the core's timings), and which
// run that was (`kind`: 'preview', 'final' or 'frame'; `quick`: the quick look before a final).
function showTimings({ engine, method, timings, encodeMs, masksMs, ...rest }, kind = 'final', quick = null) {
  const ms = (v) => `${Math.round(v)} ms`;
  const total = timings.text + timings.image + timings.scores + timings.finish;
  const sharp = encodeMs == null ? '' : `; sharp edges ${ms(encodeMs + masksMs)} (encoding ${ms(encodeMs)}, masks ${ms(masksMs)})`;
  $('timings').textContent = `${method ?? engine}${kind === 'preview' ? ' (quick look)' : ''}: ${ms(total)} — words ${ms(timings.text)}, image ${ms(timings.image)}, `
    + `read back ${ms(timings.scores)}, label map ${ms(timings.finish)}${sharp}`;
  const result = { timings, encodeMs, masksMs, ...rest };
  const about = kind === 'preview' ? `${quickLookSize(rest)}; refining: ${rest.refines.join(', ')}` : quick && `refined: ${quick.refines.join(', ')}`;
  readout.show(result, kind, { about, before: quick && totalMs(quick) });
}
const readout = new PerformanceReadout({ fps: $('perf-fps'), run: $('perf-run'), table: $('perf-stages') });

// The masks' frame rate (camera), or null, beside the camera's buttons and in the readout.
function showFps(fps) {
  $('fps').textContent = fps == null ? '' : `${fps.toFixed(1)} fps`;
  readout.frameRate(fps);
}

// A quick look drawn at once, while the full settings refine it (its downloads wait for them).
function showQuickLook(image, quick) {
  if (state.camera) return;
  state.image = image;
  state.result = quick;
  state.quickLook = quickLookText(quick);
  forgetObject();
  draw();
  showLegend();
  updateButtons();
  status(`${state.quickLook}…`);
  showTimings(quick, 'preview');
}

// Quick look first (progressive.js): remembered across visits, on until turned off.
const PROGRESSIVE_KEY = 'wordmask-progressive';
try { $('progressive').checked = localStorage.getItem(PROGRESSIVE_KEY) !== 'off'; } catch { $('progressive').checked = true; }
$('progressive').onchange = () => {
  try { localStorage.setItem(PROGRESSIVE_KEY, $('progressive').checked ? 'on' : 'off'); } catch { /* not kept in a private window */ }
};

async function segmentImage(image) {
  state.busy = true;
  updateButtons();
  if (!state.camera) status('Segmenting…');
  if (!state.camera) $('unlabelled-help').replaceChildren();
  const options = settingsChosen();
  // Live camera frames go without sharp edges: Segment Anything's encoder per frame would hold
  // the masks back by seconds (a frozen frame may have them).
  state.sharpRun = sharpEdges() && !(state.camera && !state.camera.frozen);
  let wait = 0;
  try {
    const request = { rgba: new Uint8Array(image.rgba), width: image.width, height: image.height, labels: $('labels').value, options };
    // Live frames carry over from one to the next (steadier labels, objects that keep their ids).
    const live = state.camera && !state.camera.frozen;
    // A still image: a quick look first, where the full settings have something to refine.
    let quick = null;
    const onPreview = $('progressive').checked && !state.camera ? (p) => { quick = p; showQuickLook(image, p); } : undefined;
    const result = live
      ? await client.segmentFrame({ ...request, smooth: Number($('smooth').value) })
      : await client.segment({ ...request, sharp: state.sharpRun }, { onPreview });
    state.quickLook = null;
    // An image of the folder keeps what it was segmented with now.
    if (image.folderImage) await folder.store(image.folderImage, result, { words: $('labels').value, key: folder.runKey() });
    state.result = result;
    state.image = image;
    forgetObject();
    draw();
    showLegend();
    status(state.camera ? (state.camera.frozen ? FROZEN : 'Live.') : 'Done.');
    showTimings(result, live ? 'frame' : 'final', quick);
    if (!state.camera) explainResult();
  } catch (e) {
    state.quickLook = null;
    status(`Error: ${e.message}`);
    wait = 1000;
  }
  state.busy = false;
  updateButtons();
  if (state.camera) state.camera.timer = setTimeout(tickCamera, wait);
}

// A result that labelled no pixel: why, and a button that changes the setting to blame and
// segments again.
function explainResult() {
  const reads = (key) => key in (state.defaults ?? {});
  const help = explainUnlabelled(state.result, { threshold: reads('threshold') ? Number($('threshold').value) : 0, background: reads('background') ? $('background').value : 'none' });
  showUnlabelled($('unlabelled-help'), help, ({ setting, value }) => {
    $(setting).value = value;
    $(setting).dispatchEvent(new Event('input')); // as if typed: sent from now on
    $('labels').focus();
    $('segment').click();
  });
}

$('segment').onclick = () => {
  if (!state.image || state.busy) return;
  segmentImage(state.image);
};

// Camera: segment the newest frame whenever the worker is free (frames in between are dropped).
// Before a model is loaded the frames are shown as they come (a preview, PREVIEW_MS apart), so
// the visitor can aim the camera; each becomes the image, ready for Segment or Point mode.
const PREVIEW_MS = 1000 / 15;
const FROZEN = 'Frozen: the last frame stays. Press Resume to go on.';

async function tickCamera() {
  const cam = state.camera;
  if (!cam || cam.frozen || cam.grabbing || state.busy) return;
  const video = $('video');
  clearTimeout(cam.timer);
  if (video.readyState < 2) { cam.timer = setTimeout(tickCamera, 100); return; }
  // A frame is segmented once: a camera slower than the masks would weigh it twice in the
  // average (and repeat the work). Where the browser counts the frames it presents.
  if (state.modelReady && cam.presented !== undefined && cam.presented === cam.used) { cam.timer = setTimeout(tickCamera, 10); return; }
  cam.used = cam.presented;
  cam.grabbing = true;
  const frame = await grabFrame(video).finally(() => { cam.grabbing = false; });
  if (state.camera !== cam || cam.frozen) return;
  if (!state.modelReady) {
    showImage(frame);
    cam.timer = setTimeout(tickCamera, PREVIEW_MS);
    return;
  }
  // The frame rate of masks: from one segmented frame to the next.
  const now = performance.now();
  if (cam.last) showFps(1000 / (now - cam.last));
  cam.last = now;
  segmentImage(frame);
}

async function startCamera(deviceId) {
  stopCamera();
  videoFile.close();
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ video: deviceId ? { deviceId: { exact: deviceId } } : { facingMode: 'environment' } });
    const video = $('video');
    video.srcObject = stream;
    await video.play();
    const devices = (await navigator.mediaDevices.enumerateDevices()).filter((d) => d.kind === 'videoinput');
    const cam = { stream, devices, deviceId: stream.getVideoTracks()[0]?.getSettings().deviceId, frozen: false };
    state.camera = cam;
    const count = (now, { presentedFrames }) => {
      cam.presented = presentedFrames;
      if (state.camera === cam) video.requestVideoFrameCallback(count);
    };
    video.requestVideoFrameCallback?.(count);
    // A new stream: the first frame starts afresh.
    await client.resetVideo().catch(() => {});
    $('smooth-row').hidden = false;
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
  clearTimeout(state.camera?.timer);
  state.camera?.stream.getTracks().forEach((t) => t.stop());
  state.camera = null;
  $('camera').textContent = 'Start camera';
  $('switch-camera').hidden = true;
  $('freeze').hidden = true;
  $('smooth-row').hidden = true;
  showFps(null);
}

// How steady the camera's labels are, remembered across visits.
const SMOOTH_KEY = 'wordmask-smooth';
if (localStorage.getItem(SMOOTH_KEY) !== null) $('smooth').value = localStorage.getItem(SMOOTH_KEY);
$('smooth-value').textContent = $('smooth').value;
$('smooth').oninput = () => {
  $('smooth-value').textContent = $('smooth').value;
  localStorage.setItem(SMOOTH_KEY, $('smooth').value);
};

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
  // No frame rate while frozen, and none measured across the pause after it.
  cam.last = null;
  showFps(null);
  if (cam.frozen) {
    clearTimeout(cam.timer);
    status(FROZEN);
  } else {
    status(state.modelReady ? 'Live.' : 'Camera on: load a model to see masks.');
    tickCamera();
  }
};

// What the canvas shows over the image, in either mode: a map of 1-based entries (0 = none), each
// entry's word, colour, legend text, and its value in the downloaded label map (the word's
// index in the typed words; in Point mode an unnamed object takes its own number).
function layer() {
  if (!state.image) return null;
  const { width, height } = state.image;
  if (pointMode.active) {
    const { map, objects } = pointMode.layer(width, height);
    const wordIndex = (label) => state.labels.findIndex((l) => l.name === label) + 1;
    return {
      map,
      entries: objects.map((o, k) => ({
        word: o.label,
        colour: o.label && wordIndex(o.label) ? colour(wordIndex(o.label)) : paletteColour(k + 1),
        text: `${k + 1}. ${o.label ? `${o.label} ${(o.probability * 100).toFixed(0)} %` : 'object'}${o.iou == null ? '' : ` (IoU ${o.iou.toFixed(2)})`}`,
        // A typed word's index; a class of Open-Vocabulary SAM's own classifier (no words typed:
        // LVIS's 1,203 in the release, so the label PNG turns 16-bit) by its index; else the
        // object's number.
        value: (o.label && wordIndex(o.label)) || (o.classIndex != null ? o.classIndex + 1 : k + 1),
      })),
      summary: { width, height, objects: objects.map((o) => ({ label: o.label, probability: o.probability, iou: o.iou, area: o.area, prompt: o.prompt })) },
    };
  }
  const r = state.result;
  if (!r || r.width !== width || r.height !== height) return null;
  // Name everything: the objects themselves are the map.
  if (!r.labelMap) return everythingLayer(r, { wordColour: colour, ownColour: (id) => paletteColour(r.counts.length + id) });
  const objects = r.objects ? { objects: r.objects, counts: r.counts } : {};
  return {
    map: r.labelMap,
    confidence: r.confidence,
    entries: r.labels.map((l, i) => ({ word: l.label, colour: colour(i + 1), text: `${l.label} ${(l.share * 100).toFixed(1)} %`, value: i + 1, share: l.share })),
    rest: `unlabelled ${(r.unlabelled * 100).toFixed(1)} %`,
    summary: { width, height, labels: r.labels, unlabelled: r.unlabelled, ...objects },
  };
}

// The image fills the stage: as wide as it is, as tall as the viewport leaves room for (small
// images are scaled up), its aspect kept so that pointer positions map straight to pixels.
function fitCanvas() {
  if (!state.image) return;
  const { width, height } = state.image;
  const box = $('canvas-box').clientWidth;
  // On a wide screen the whole stage fits the viewport (legend and downloads under the image);
  // on a phone the image takes most of the screen's height.
  const wide = matchMedia('(min-width: 60rem)').matches;
  const top = $('canvas-box').getBoundingClientRect().top + scrollY;
  // In Point mode the image is what the visitor points at: all of it stays on the first screen,
  // under the Point panel (with a line to spare for a longer status), on a phone too.
  const tall = pointMode.active
    ? Math.max(160, innerHeight - top - (wide ? 120 : 32))
    : Math.max(240, wide ? innerHeight - top - 120 : innerHeight * 0.7);
  const scale = Math.min(box / width, tall / height);
  $('view').style.width = `${Math.floor(width * scale)}px`;
  $('view').style.height = `${Math.floor(height * scale)}px`;
}
addEventListener('resize', fitCanvas);

function draw() {
  const view = $('view');
  if (!state.image) return;
  const { width, height, bitmap } = state.image;
  if (view.width !== width || view.height !== height) {
    view.width = width;
    view.height = height;
    fitCanvas();
  }
  const ctx = view.getContext('2d');
  ctx.drawImage(bitmap, 0, 0);
  const shown = layer();
  if (!shown) return;
  const pixels = ctx.getImageData(0, 0, width, height);
  const off = (word) => hiddenLabels.has(word) || (state.isolated && word !== state.isolated);
  const colours = shown.entries.map((e) => (off(e.word) ? null : e.colour));
  const { instances } = state.result ?? {};
  const objects = !pointMode.active && instances?.length === shown.map.length ? instances : null;
  // An object pressed in the list shows alone; the one under the pointer (or focused) is outlined.
  const map = objects && state.object ? keepObject(shown.map, objects, state.object) : shown.map;
  paintMasks(pixels, map, colours, { opacity: Number($('opacity').value), outlines: $('outlines').checked });
  if (objects && state.highlight) outlineObject(pixels, objects, state.highlight);
  ctx.putImageData(pixels, 0, 0);
}

// Before the masks arrive the legend lists the typed words in their colours, so the shares fill
// in without moving anything.
function wordsLegend() {
  if (pointMode.active || !state.labels.length) return null;
  return { entries: state.labels.map((l, i) => ({ word: l.name, colour: colour(i + 1), text: l.name })), rest: null };
}

const legend = new Legend({ list: $('legend'), find: $('legend-find'), filter: $('legend-filter'), more: $('legend-more') });

// Sharp edges and Name everything: the objects under the legend.
const objectsList = new ObjectsList({ box: $('objects-box'), counts: $('objects-counts'), list: $('objects'), more: $('objects-more') }, {
  highlight: (id) => { state.highlight = id; draw(); },
  isolate: (id) => { state.object = id; draw(); showObjects(); if (shownFromFolder()) folder.showFix(id); },
});

function showObjects() {
  const r = pointMode.active ? null : state.result;
  if (!r?.objects || !state.image || r.width !== state.image.width || r.height !== state.image.height) {
    objectsList.show();
    return;
  }
  // An object takes its word's colour (the typed words' order, as `class` counts them).
  objectsList.show(r.objects, r.counts, (o) => (o.class == null ? paletteColour(r.counts.length + o.id) : colour(o.class + 1)), state.object);
}

function forgetObject() {
  state.object = null;
  state.highlight = null;
  folder?.showFix(null);
}

function showLegend() {
  showObjects();
  const shown = layer() ?? wordsLegend();
  if (!shown) { legend.show([], null, null); return; }
  if (state.isolated && !shown.entries.some((e) => e.word === state.isolated)) state.isolated = null;
  const item = (e) => {
    const li = document.createElement('li');
    const sw = document.createElement('span');
    sw.className = 'swatch';
    sw.style.background = `rgb(${e.colour.join(',')})`;
    if (!e.word) {
      li.append(sw, e.text);
      return li;
    }
    // A word's entry isolates it (every other mask hidden); pressing it again shows all.
    const b = document.createElement('button');
    b.className = 'legend-entry';
    b.setAttribute('aria-pressed', String(state.isolated === e.word));
    b.title = state.isolated === e.word ? 'show every word' : `show only ${e.word}`;
    b.append(sw, e.text);
    b.onclick = () => {
      state.isolated = state.isolated === e.word ? null : e.word;
      draw();
      showLegend();
    };
    li.dataset.label = e.word;
    li.append(b);
    return li;
  };
  keepingFocus($('legend'), () => legend.show(shown.legend ?? shown.entries, item, shown.rest), $('view'));
}

// Hover (or a tap, on a touch screen) names the word under the pointer; from the keyboard, the
// probe (arrow keys on the focused image) does, read out as well.
function nameAt(x, y) {
  const shown = layer();
  if (!shown) return null;
  const i = y * state.image.width + x;
  const entry = shown.map[i] ? shown.entries[shown.map[i] - 1] : null;
  const score = shown.confidence ? ` (${(shown.confidence[i] / 255).toFixed(2)})` : '';
  const text = entry ? `${entry.object ? entry.text : entry.word ?? `object ${shown.map[i]}`}${score}` : `${pointMode.active ? 'nothing' : 'unlabelled'}${score}`;
  $('hover').textContent = text;
  return text;
}
function nameUnderPointer(e) {
  if (!state.image) return;
  const rect = $('view').getBoundingClientRect();
  const { width, height } = state.image;
  const within = (v, side) => Math.min(side - 1, Math.max(0, Math.floor(v * side)));
  nameAt(within((e.clientX - rect.left) / rect.width, width), within((e.clientY - rect.top) / rect.height, height));
}
$('view').addEventListener('pointermove', nameUnderPointer);
$('view').addEventListener('pointerdown', nameUnderPointer);
new Probe($('view'), {
  nameAt: (x, y) => (state.image ? nameAt(x, y) : null),
  press: (x, y, how) => { if (pointMode.active) pointMode.point({ x, y }, how); },
});

function save(blob, name) {
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}
$('download-labels').onclick = async () => {
  const shown = layer();
  const { width, height } = state.image;
  const values = new Uint16Array(width * height);
  shown.map.forEach((k, i) => { values[i] = k ? shown.entries[k - 1].value : 0; });
  save(await greyPng(values, width, height), 'labels.png');
};
$('download-colours').onclick = async () => {
  const shown = layer();
  const { width, height } = state.image;
  save(await colourPng(shown.map, shown.entries.map((e) => e.colour), width, height), 'labels-coloured.png');
};
$('download-overlay').onclick = () => $('view').toBlob((blob) => save(blob, 'overlay.png'), 'image/png');
// The objects' ids (as the JSON lists them) as a 16-bit PNG, as `wordmask segment --instances` writes it.
$('download-objects').onclick = async () => {
  const { width, height, instances } = state.result;
  save(await greyPng(instances, width, height, { depth: 16 }), 'objects.png');
};
$('download-json').onclick = () => {
  save(new Blob([JSON.stringify(layer().summary, null, 1)], { type: 'application/json' }), 'wordmask.json');
};

// Folder mode (folder.js): a whole folder labelled image by image, fixed, and downloaded as one
// zip in the CLI's layout.
function shownFromFolder() {
  return Boolean(folder?.current && state.image?.folderImage === folder.current);
}
folder = new FolderMode(client, {
  panels: [$('folder-panel'), $('folder-export')], strip: $('folder-strip'), progress: $('folder-progress'), status: $('folder-status'),
  run: $('folder-run'), stop: $('folder-stop'), download: $('folder-download'), prev: $('folder-prev'), next: $('folder-next'),
  formats: document.querySelectorAll('#folder-formats input[name=format]'), polygons: $('folder-polygons'), minArea: $('folder-min-area'),
  fix: $('folder-fix'), fixAbout: $('folder-fix-about'), fixWord: $('folder-fix-word'), fixApply: $('folder-fix-apply'), fixRemove: $('folder-fix-remove'),
}, {
  words: () => $('labels').value,
  options: () => settingsChosen(),
  sharp: () => sharpEdges(),
  sharp: () => sharpEdges(),
  ready: () => {
    if (!state.modelReady) return 'Load a words model first (Model, then Load model), then press Label the folder.';
    if (!$('labels').value.trim()) return 'Type the words first, then press Label the folder.';
    return null;
  },
  // The folder's image (pixels: a new one; null: the same, its result changed) in the main view.
  show: (pixels, result) => {
    if (pixels) {
      state.image = pixels;
      pointMode.reset();
      $('unlabelled-help').replaceChildren();
    }
    state.result = result;
    forgetObject();
    draw();
    showLegend();
    updateButtons();
  },
  save,
  busy: (on, text) => { state.busy = on; status(text); updateButtons(); },
});
$('folder').onchange = () => folder.take([...$('folder').files].map((file) => ({ file, path: file.webkitRelativePath || file.name })));
$('folder-add').onclick = async () => {
  const objects = pointMode.outlined.map((o) => ({ mask: o.mask, label: o.label, score: o.iou ?? o.probability ?? 0 }));
  if (await folder.addObjects(objects)) {
    pointMode.reset();
    setMode('words');
  }
};

// Video files (video.js): played with masks on the newest frame, or labelled frame by frame,
// through the camera's path (segmentFrame, the Steady labels slider).
videoFile = new VideoMode(client, {
  video: $('video-player'), panel: $('video-panel'), status: $('video-status'), play: $('video-play'), seek: $('video-seek'),
  time: $('video-time'), label: $('video-label'), stop: $('video-stop'), record: $('video-record'), recordRow: $('video-record-row'),
  progress: $('video-progress'), downloadLabels: $('video-download-labels'), downloadOverlay: $('video-download-overlay'),
  close: $('video-close'), smoothRow: $('smooth-row'), smooth: $('smooth'), canvas: $('view'),
}, {
  words: () => $('labels').value,
  options: () => settingsChosen(),
  sharp: () => sharpEdges(),
  ready: () => {
    if (!state.modelReady) return 'Load a words model first (Model, then Load model) to see masks.';
    if (!$('labels').value.trim()) return 'Type the words first.';
    return null;
  },
  show: (image, result) => {
    state.image = image;
    state.result = result;
    pointMode.reset();
    forgetObject();
    draw();
    showLegend();
    updateButtons();
  },
  busy: () => state.busy,
  setBusy: (on) => { state.busy = on; updateButtons(); },
  status,
  stopCamera: () => { if (state.camera) stopCamera(); },
  save,
});
$('video-file').onchange = () => { if ($('video-file').files[0]) videoFile.take($('video-file').files[0]); };
