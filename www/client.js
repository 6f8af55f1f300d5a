// One worker, one device and one model for the whole page, shared by every <word-mask>:
// requests carry ids so each caller gets its own reply.
const HUB = (id) => `https://huggingface.co/${id}/resolve/main/`;

let worker = null;
let nextId = 1;
const pending = new Map();
const progressListeners = new Set();

function getWorker() {
  if (worker) return worker;
  worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
  worker.onmessage = ({ data }) => {
    if (data.status === 'loading') {
      progressListeners.forEach((listener) => listener(data));
      return;
    }
    const waiter = pending.get(data.id);
    if (!waiter) return;
    pending.delete(data.id);
    if (data.status === 'error') {
      waiter.reject(new Error(data.message));
      if (FATAL.test(data.message)) reset(data.message);
    } else {
      waiter.resolve(data);
    }
  };
  worker.onerror = (e) => reset(e.message || 'the model worker stopped');
  return worker;
}

// A wasm trap or a lost GPU device leaves the model unusable: drop the worker, so the next
// request starts a fresh one and reloads the model (from the cache).
const FATAL = /unreachable|RuntimeError|device (was |is )?lost|DeviceLost/i;

function reset(reason) {
  worker?.terminate();
  worker = null;
  device = null;
  loaded = { key: null, promise: null };
  const error = new Error(`the model stopped (${reason}); it restarts with the next image`);
  pending.forEach((w) => w.reject(error));
  pending.clear();
}

export function request(message, transfer = []) {
  const id = nextId++;
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject });
    getWorker().postMessage({ ...message, id }, transfer);
  });
}

export function onProgress(listener) {
  progressListeners.add(listener);
  return () => progressListeners.delete(listener);
}

let device = null;
/** The page's compute device: WebGPU, or the CPU backend where WebGPU is missing. */
export function openDevice() {
  device ??= request({ type: 'init', backend: 'webgpu' });
  return device;
}

let loaded = { key: null, promise: null };
/** Load `model` (a hub id like `openai/clip-vit-base-patch16`, or a folder URL) once per page. */
export function loadModel(model) {
  const base = (/^(https?:|\/|\.)/.test(model) ? model : HUB(model)).replace(/\/?$/, '/');
  if (loaded.key !== base) {
    const weightsUrl = new URL('model.safetensors', new URL(base, location.href)).href;
    const configUrl = new URL('config.json', new URL(base, location.href)).href;
    loaded = { key: base, promise: openDevice().then(() => request({ type: 'load', configUrl, weightsUrl, weightsName: weightsUrl })) };
  }
  return loaded.promise;
}
