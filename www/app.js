// Page logic: forwards user input to the worker that owns the model and shows its answers.
const $ = (id) => document.getElementById(id);
const worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
const status = (text) => { $('status').textContent = text; };
let pixels = null;

worker.onmessage = ({ data }) => {
  if (data.status === 'device') status(`Device ready (${data.backend}). Load a model.`);
  if (data.status === 'loading') {
    $('progress').max = data.total || 1;
    $('progress').value = data.done;
    status(`Downloading weights: ${(data.done / 1e6).toFixed(1)} MB`);
  }
  if (data.status === 'ready') { status(`Model ready on ${data.backend}.`); $('classify').disabled = false; }
  if (data.status === 'error') status(`Error: ${data.message}`);
  if (data.status === 'result') {
    $('scores').replaceChildren(...[...data.scores].sort((a, b) => b.probability - a.probability).map((s) => {
      const li = document.createElement('li');
      li.textContent = `${s.label}: ${(s.probability * 100).toFixed(1)} %`;
      return li;
    }));
    status('Done.');
  }
};
worker.postMessage({ type: 'init', backend: 'webgpu' });

$('load').onclick = async () => {
  const files = [...$('model-files').files];
  if (files.length) {
    const config = files.find((f) => f.name === 'config.json');
    const weights = files.find((f) => f.name !== 'config.json');
    if (!config || !weights) { status('Choose config.json and a weights file together.'); return; }
    worker.postMessage({ type: 'load', config: await config.text(), weights: new Uint8Array(await weights.arrayBuffer()), weightsName: weights.name });
  } else {
    const base = $('model-url').value.replace(/\/?$/, '/');
    worker.postMessage({ type: 'load', configUrl: base + 'config.json', weightsUrl: base + 'model.safetensors', weightsName: base + 'model.safetensors' });
  }
  status('Loading…');
};

$('image').onchange = async () => {
  const file = $('image').files[0];
  if (!file) return;
  const bitmap = await createImageBitmap(file);
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const ctx = canvas.getContext('2d');
  ctx.drawImage(bitmap, 0, 0);
  pixels = { rgba: new Uint8Array(ctx.getImageData(0, 0, bitmap.width, bitmap.height).data.buffer), width: bitmap.width, height: bitmap.height };
  $('preview').src = URL.createObjectURL(file);
};

$('classify').onclick = () => {
  if (!pixels) { status('Choose an image first.'); return; }
  status('Classifying…');
  worker.postMessage({ type: 'classify', id: 1, ...pixels, labels: $('labels').value });
};
