// The peer benchmark's runner for wordmask's CPU fallback on several threads: the threads
// module in a Web Worker, the build the page's model worker takes (www/cores.js: relaxed SIMD or
// not), as that worker runs it (rayon's blocking waits are allowed in a worker, not in the
// page). Driven by tools/peer_bench.mjs.
//   in:  {type: 'load', threads, core?}  ->  {threads, core, memory: {file, heapBefore, heapAfter}}
//        (`core`: the module's URL, to time a given build)
//        {type: 'run', pixels, size}  ->  {output}
//   any failure  ->  {error}
import { coreFolder, threadsCore } from '/cores.js';

let wm = null;

async function load(threads, url = `/${coreFolder(threadsCore())}wordmask.js`) {
  const core = await import(url);
  const wasm = await core.default();
  await core.initThreadPool(threads);
  wm = await core.WordMask.create('cpu');
  const config = await (await fetch('/peer/model/config.json')).text();
  const weights = new Uint8Array(await (await fetch('/peer/model/model.safetensors')).arrayBuffer());
  const before = wasm.memory.buffer.byteLength;
  wm.load(config, weights, 'model.safetensors', undefined);
  return { threads: core.threads(), core: url, memory: { file: weights.length, heapBefore: before, heapAfter: wasm.memory.buffer.byteLength } };
}

onmessage = async ({ data }) => {
  try {
    if (data.type === 'load') {
      postMessage(await load(data.threads, data.core));
    } else {
      const output = await wm.embedPixels(data.pixels, data.size);
      postMessage({ output }, [output.buffer]);
    }
  } catch (e) {
    postMessage({ error: String(e?.message ?? e) });
  }
};
