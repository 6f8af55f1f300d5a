// The peer benchmark's runner for wordmask's CPU fallback on several threads: the threads
// module in a Web Worker, the build the page's model worker takes (www/cores.js: relaxed SIMD or
// not), as that worker runs it (rayon's blocking waits are allowed in a worker, not in the
// page). Driven by tools/peer_bench.mjs.
//   in:  {type: 'load', threads, core?, preprocessor?}  ->  {threads, core, memory: {file, heapBefore, heapAfter}}
//        (`core`: the module's URL, to time a given build; `preprocessor`: the text of a
//        Segment Anything checkpoint's preprocessor_config.json)
//        {type: 'run', pixels, size}  ->  {output}  (a CLIP tower's embedding)
//        {type: 'encode', rgba, size}  ->  {output}  (Segment Anything: the encoding's ms)
//        {type: 'prompt', prompt}  ->  {mask, iou, area}  (one prompt on the encoded image)
//   any failure  ->  {error}
import { coreFolder, threadsCore } from '/cores.js';

let wm = null;

async function load(threads, url = `/${coreFolder(threadsCore())}wordmask.js`, preprocessor = undefined) {
  const core = await import(url);
  const wasm = await core.default();
  await core.initThreadPool(threads);
  wm = await core.WordMask.create('cpu');
  const config = await (await fetch('/peer/model/config.json')).text();
  const weights = new Uint8Array(await (await fetch('/peer/model/model.safetensors')).arrayBuffer());
  const before = wasm.memory.buffer.byteLength;
  wm.load(config, weights, 'model.safetensors', preprocessor);
  return { threads: core.threads(), core: url, memory: { file: weights.length, heapBefore: before, heapAfter: wasm.memory.buffer.byteLength } };
}

onmessage = async ({ data }) => {
  try {
    if (data.type === 'load') {
      postMessage(await load(data.threads, data.core, data.preprocessor));
    } else if (data.type === 'encode') {
      postMessage({ output: await wm.encode(data.rgba, data.size, data.size) });
    } else if (data.type === 'prompt') {
      const { mask, iou, area } = await wm.prompt(data.prompt, '', undefined);
      postMessage({ mask, iou, area });
    } else {
      const output = await wm.embedPixels(data.pixels, data.size);
      postMessage({ output }, [output.buffer]);
    }
  } catch (e) {
    postMessage({ error: String(e?.message ?? e) });
  }
};
