// The worker owns the model: the page never blocks on loading or inference.
// Every request may carry an `id`, echoed in its reply (progress messages are broadcast).
// Messages in:  {type: 'init', backend}
//               | {type: 'load', configUrl|config, weightsUrl|weights, weightsName, preprocessor?}
//               | {type: 'classify', id, rgba, width, height, labels}
//               | {type: 'segment', id, rgba, width, height, labels, options} | {type: 'cancel'}
// Messages out: {status: 'device', backend} | {status: 'loading', done, total} | {status: 'ready', backend, engine}
//               | {status: 'result', id, kind: 'segment', width, height, labels, unlabelled, labelMap}
//               | {status: 'result', id, scores} | {status: 'error', message}
import init, { WordMask } from '../pkg/wordmask.js';

let wm = null;
let download = null; // AbortController of the weights download in progress

const CACHE = 'wordmask-models-v1';

// Weights are kept in the Cache Storage API: the second visit loads them from disk, offline.
async function cachedBytes(url) {
  const cache = await caches.open(CACHE).catch(() => null);
  const hit = await cache?.match(url);
  if (hit) {
    const bytes = new Uint8Array(await hit.arrayBuffer());
    postMessage({ status: 'loading', done: bytes.length, total: bytes.length, cached: true });
    return bytes;
  }
  const bytes = await fetchBytes(url);
  // A full quota only costs the next visit a download.
  await cache?.put(url, new Response(bytes, { headers: { 'content-type': 'application/octet-stream' } })).catch(() => {});
  return bytes;
}

async function cachedText(url) {
  const cache = await caches.open(CACHE).catch(() => null);
  const hit = await cache?.match(url);
  if (hit) return hit.text();
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  const text = await response.text();
  await cache?.put(url, new Response(text, { headers: { 'content-type': 'application/json' } })).catch(() => {});
  return text;
}

/** Retries left after a broken download; each resumes where the last stopped (HTTP Range). */
const RETRIES = 3;

async function fetchBytes(url) {
  download = new AbortController();
  const chunks = [];
  let done = 0;
  let total = 0;
  for (let attempt = 0; ; attempt++) {
    try {
      const response = await fetch(url, { signal: download.signal, headers: done ? { Range: `bytes=${done}-` } : {} });
      if (!response.ok) throw Object.assign(new Error(`${url}: HTTP ${response.status}`), { final: true });
      if (done && response.status !== 206) {
        chunks.length = 0; // the server ignored the range: start again
        done = 0;
      }
      total = done + (Number(response.headers.get('content-length')) || 0);
      const reader = response.body.getReader();
      for (;;) {
        const { value, done: end } = await reader.read();
        if (end) break;
        chunks.push(value);
        done += value.length;
        postMessage({ status: 'loading', done, total });
      }
      break;
    } catch (e) {
      if (e.name === 'AbortError' || e.final || attempt >= RETRIES) throw e;
      postMessage({ status: 'loading', done, total, retrying: attempt + 1 });
      await new Promise((resolve) => setTimeout(resolve, 500 * (attempt + 1)));
    }
  }
  const bytes = new Uint8Array(done);
  let at = 0;
  for (const c of chunks) { bytes.set(c, at); at += c.length; }
  return bytes;
}

// Requests run one at a time (the model is one object); `cancel` acts at once.
let queue = Promise.resolve();
onmessage = ({ data }) => {
  if (data.type === 'cancel') {
    download?.abort();
    return;
  }
  queue = queue.then(() => handle(data));
};

// GroupViT checkpoints carry their pixel normalisation in preprocessor_config.json (CLIP
// checkpoints use CLIP's, the default). Without one the core uses GroupViT's training statistics.
async function preprocessorFor(config, configUrl) {
  if (!configUrl) return undefined;
  let type = '';
  try { type = JSON.parse(config).model_type ?? ''; } catch { return undefined; }
  if (type !== 'groupvit') return undefined;
  try {
    return await cachedText(configUrl.replace(/config\.json$/, 'preprocessor_config.json'));
  } catch {
    return undefined;
  }
}

async function handle(data) {
  try {
    if (data.type === 'init') {
      await init();
      wm = await WordMask.create(data.backend || 'webgpu');
      postMessage({ status: 'device', id: data.id, backend: wm.backend });
    } else if (data.type === 'load') {
      const config = data.config ?? await cachedText(data.configUrl);
      let weights = data.weights;
      if (!weights) {
        try {
          weights = await cachedBytes(data.weightsUrl);
        } catch (e) {
          // Older hub checkpoints have only pytorch_model.bin.
          if (!/HTTP 404/.test(e.message) || !data.weightsUrl.endsWith('/model.safetensors')) throw e;
          data.weightsName = data.weightsUrl.replace(/model\.safetensors$/, 'pytorch_model.bin');
          weights = await cachedBytes(data.weightsName);
        }
      }
      download = null;
      wm.load(config, weights, data.weightsName || 'weights', data.preprocessor ?? await preprocessorFor(config, data.configUrl));
      postMessage({ status: 'ready', id: data.id, backend: wm.backend, engine: wm.engine });
    } else if (data.type === 'segment') {
      const result = await wm.segment(data.rgba, data.width, data.height, data.labels, data.options);
      postMessage({ status: 'result', id: data.id, kind: 'segment', ...result }, [result.labelMap.buffer, result.confidence.buffer]);
    } else if (data.type === 'classify') {
      const scores = await wm.classify(data.rgba, data.width, data.height, data.labels);
      postMessage({ status: 'result', id: data.id, scores });
    }
  } catch (e) {
    const message = e?.name === 'AbortError' ? 'download cancelled' : String(e?.message ?? e);
    postMessage({ status: 'error', id: data.id, message });
  }
}
