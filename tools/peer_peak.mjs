// What tools/peer_bench.mjs divides its times by: the FLOPs of the exported image tower, and the
// machine's practical f32 peak in Chromium's wasm, measured by a loop that does nothing but
// SIMD128 multiply-adds (a hand-assembled module, its bytes built here). The native peak is
// numpy's sgemm, tools/gemm_peak.py.

// FLOPs of one pass of a CLIP ViT image tower at `size`² pixels, from the checkpoint's
// config.json (a CLIPModel's, with `vision_config`, or a vision tower's own; a SamModel's goes
// to samEncoderFlops): the matrix
// products only, a multiply-add counting two — per block 8·N·d² (query, key, value, output),
// 4·N·d·m (the MLP; 16·N·d² where m = 4d) and 4·N²·d (the two attention products), N the patches
// and the class token; the patch embedding 2·P·C·p²·d; the projection of the class token 2·d·e.
// Layer norms, softmax and activations are left out, as every GFLOP/s figure of a GEMM does.
// Null where the config is not such a tower or `size` is not a multiple of the patch.
export function towerFlops(config, size) {
  if (config?.model_type === 'sam' || config?.vision_config?.model_type === 'sam_vision_model') return samEncoderFlops(config, size);
  const v = config?.vision_config ?? config ?? {};
  const { hidden_size: d, intermediate_size: m, num_hidden_layers: layers, patch_size: p } = v;
  const channels = v.num_channels ?? 3;
  const projection = config?.projection_dim ?? v.projection_dim;
  if (![d, m, layers, p, channels, projection, size].every((x) => Number.isInteger(x) && x > 0) || size % p) return null;
  const patches = (size / p) ** 2;
  const n = patches + 1;
  const block = 8 * n * d * d + 4 * n * d * m + 4 * n * n * d;
  const patch = 2 * patches * channels * p * p * d;
  const head = 2 * d * projection;
  return { total: patch + layers * block + head, patch, block, layers, head, tokens: n };
}

// FLOPs of one pass of Segment Anything's image encoder (a SamModel's config.json) at `size`²
// pixels, counted as towerFlops counts: the patch embedding 2·N·C·p²·d (N = (size/p)² tokens, no
// class token); per block the MLP 4·N·d·m as in CLIP, and the projections 8·N·d² and attention
// 4·N²·d of a global layer, or of a windowed one 8·W·T·d² and 4·W·T²·d over the W windows of
// T = w² tokens the grid padded to a multiple of the window w holds (the padding runs the
// projections too); the decomposed relative
// positions (query against the height and the width tables, use_rel_pos) 2·Q·(kh + kw)·d for Q
// queries and a kh × kw key grid; the neck's 1×1 convolution 2·N·d·c and 3×3 one 2·N·9·c², c its
// channels. Null where the config is not such an encoder or `size` is not a multiple of the patch.
export function samEncoderFlops(config, size) {
  const v = config?.vision_config ?? {};
  const { hidden_size: d, num_hidden_layers: layers, patch_size: p, window_size: w, output_channels: c } = v;
  const m = v.mlp_dim ?? Math.round(d * (v.mlp_ratio ?? 4));
  const channels = v.num_channels ?? 3;
  const global = new Set(v.global_attn_indexes ?? []);
  if (![d, m, layers, p, c, channels, size].every((x) => Number.isInteger(x) && x > 0) || !Number.isInteger(w) || w < 0 || size % p) return null;
  const side = size / p;
  const n = side * side;
  const relative = v.use_rel_pos !== false;
  const attention = (i) => {
    if (global.has(i) || w === 0) return 8 * n * d * d + 4 * n * n * d + (relative ? 2 * n * 2 * side * d : 0);
    const padded = Math.ceil(side / w) * w;
    const windows = (padded / w) ** 2;
    const t = w * w;
    return 8 * windows * t * d * d + 4 * windows * t * t * d + (relative ? 2 * windows * t * 2 * w * d : 0);
  };
  const blocks = [...Array(layers).keys()].map((i) => attention(i) + 4 * n * d * m);
  const patch = 2 * n * channels * p * p * d;
  const head = 2 * n * d * c + 2 * n * 9 * c * c;
  const block = blocks.reduce((x, y) => x + y, 0) / layers;
  return { total: patch + blocks.reduce((x, y) => x + y, 0) + head, patch, block, layers, head, tokens: n };
}

// The loop's independent accumulators: enough to cover the latency of a multiply and an add
// (8 cycles or so) at two vector operations a cycle, and with the two constants within the 16
// vector registers V8 uses on x86-64.
export const ACCUMULATORS = 12;
// FLOPs of one iteration of the loop: each accumulator, 4 lanes, a multiply and an add.
export const FLOPS_PER_ITERATION = ACCUMULATORS * 4 * 2;

const leb = (n) => {
  const out = [];
  do {
    let byte = n & 0x7f;
    n >>>= 7;
    if (n) byte |= 0x80;
    out.push(byte);
  } while (n);
  return out;
};

// A module exporting `run(iterations: i32) -> f32`: `iterations` (at least 1) times, every
// accumulator a becomes a·0.999 + 0.001 (f32x4.mul then f32x4.add, or one f32x4.relaxed_madd
// where `relaxed`, which Chromium compiles to a fused multiply-add where the CPU has one); the
// result is the first lane of their sum, so nothing is dead. The accumulators start at 1 + i/64
// and tend to 1, so no value goes subnormal or infinite: a run returns about ACCUMULATORS.
export function peakModule(relaxed = false) {
  const simd = (op) => [0xfd, ...leb(op)];
  const get = (i) => [0x20, ...leb(i)];
  const set = (i) => [0x21, ...leb(i)];
  const splat = (x) => [...simd(0x0c), ...[0, 1, 2, 3].flatMap(() => [...new Uint8Array(new Float32Array([x]).buffer)])];
  const vec = (items) => [...leb(items.length), ...items.flat()];
  const section = (id, bytes) => [id, ...leb(bytes.length), ...bytes];
  // Locals: 0 the count (the parameter), 1..n the accumulators, then the factor and the term.
  const n = ACCUMULATORS;
  const [factor, term] = [n + 1, n + 2];
  const accs = [...Array(n).keys()].map((i) => i + 1);
  const step = (a) => [...get(a), ...get(factor), ...(relaxed
    ? [...get(term), ...simd(0x105)] // f32x4.relaxed_madd: a·factor + term
    : [...simd(0xe6), ...get(term), ...simd(0xe4)]), ...set(a)]; // f32x4.mul, f32x4.add
  const body = [
    ...vec([[...leb(n + 2), 0x7b]]), // n + 2 locals of v128
    ...accs.flatMap((a) => [...splat(1 + (a - 1) / 64), ...set(a)]),
    ...splat(0.999), ...set(factor), ...splat(0.001), ...set(term),
    0x03, 0x40, // loop
    ...accs.flatMap(step),
    ...get(0), 0x41, 1, 0x6b, 0x22, 0, 0x0d, 0, // local.tee 0 (count − 1); br_if 0 while not 0
    0x0b, // end of the loop
    ...get(1), ...accs.slice(1).flatMap((a) => [...get(a), ...simd(0xe4)]),
    ...simd(0x1f), 0, // f32x4.extract_lane 0
    0x0b,
  ];
  const name = [...'run'].map((c) => c.charCodeAt(0));
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, vec([[0x60, 1, 0x7f, 1, 0x7d]])), // type: (i32) -> f32
    ...section(3, vec([[0]])), // one function of that type
    ...section(7, vec([[...leb(name.length), ...name, 0x00, 0]])), // exported as `run`
    ...section(10, vec([[...leb(body.length), ...body]])),
  ]);
}

// Runs in the page (cross-origin isolated or not: it needs workers, not shared memory): for each
// module that validates and each worker count, starts that many workers, hands each the compiled
// module, and `repeats` times has them all run `iterations` loop iterations at once; the rate is
// the FLOPs of all of them over the page's wall time from the start message to the last reply
// (message latency included, so it errs low), best of the repeats, after 200 ms of warm-up in
// each worker (V8 runs a module's first calls on its baseline compiler). Returns
// {variant: {valid, gflops: {workers: best GFLOP/s}, result}}.
export async function peakInPage({ modules, workerCounts, iterations, repeats, flopsPerIteration }) {
  const source = `onmessage = ({ data }) => {
    const { run } = new WebAssembly.Instance(data).exports;
    // Long enough for V8 to move the loop from its baseline compiler to its optimising one.
    let warm;
    for (const t = performance.now(); performance.now() - t < 200;) warm = run(100000);
    postMessage(warm);
    onmessage = ({ data: n }) => postMessage(run(n));
  };`;
  const url = URL.createObjectURL(new Blob([source], { type: 'text/javascript' }));
  const out = {};
  for (const [variant, bytes] of Object.entries(modules)) {
    const code = new Uint8Array(bytes);
    if (!WebAssembly.validate(code)) {
      out[variant] = { valid: false, gflops: {} };
      continue;
    }
    const module = await WebAssembly.compile(code);
    out[variant] = { valid: true, gflops: {} };
    for (const count of workerCounts) {
      const workers = Array.from({ length: count }, () => new Worker(url));
      const reply = (w) => new Promise((done, fail) => {
        w.onmessage = ({ data }) => done(data);
        w.onerror = (e) => fail(new Error(e.message || 'a peak worker stopped'));
      });
      try {
        const ready = workers.map(reply);
        workers.forEach((w) => w.postMessage(module));
        out[variant].result = (await Promise.all(ready))[0];
        let best = 0;
        for (let r = 0; r < repeats; r++) {
          const done = workers.map(reply);
          const t = performance.now();
          workers.forEach((w) => w.postMessage(iterations));
          await Promise.all(done);
          const seconds = (performance.now() - t) / 1e3;
          best = Math.max(best, (count * iterations * flopsPerIteration) / seconds / 1e9);
        }
        out[variant].gflops[count] = best;
      } finally {
        workers.forEach((w) => w.terminate());
      }
    }
  }
  URL.revokeObjectURL(url);
  return out;
}
