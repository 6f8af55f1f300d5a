// The peer benchmark's yardsticks (tools/peer_peak.mjs), in Node, no browser: the FLOPs it
// divides the towers' times by, and the hand-assembled wasm loop whose speed is the peak the
// Chromium rows are a share of — the loop must do the arithmetic it claims, once an iteration,
// or the peak would be a wrong number. No timing here.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import { ACCUMULATORS, FLOPS_PER_ITERATION, peakModule, towerFlops } from '../../tools/peer_peak.mjs';

const f32 = Math.fround;
// The loop's result after `n` iterations, step by step in f32 as the module does it.
function expected(n, fused) {
  let sum = 0;
  for (let i = 0; i < ACCUMULATORS; i++) {
    let a = f32(1 + i / 64);
    for (let k = 0; k < n; k++) a = fused ? f32(a * f32(0.999) + f32(0.001)) : f32(f32(a * f32(0.999)) + f32(0.001));
    sum = i === 0 ? a : f32(sum + a);
  }
  return sum;
}

test('the SIMD128 loop validates and computes a·0.999 + 0.001 on every accumulator, once an iteration', async () => {
  const bytes = peakModule(false);
  assert.ok(WebAssembly.validate(bytes), 'the mul+add module does not validate');
  const { instance } = await WebAssembly.instantiate(bytes);
  for (const n of [1, 2, 7]) assert.equal(instance.exports.run(n), expected(n, false), `after ${n} iterations`);
  // Long runs settle at the fixed point, each accumulator 1.
  assert.ok(Math.abs(instance.exports.run(100000) - ACCUMULATORS) < 1e-3);
  assert.equal(FLOPS_PER_ITERATION, ACCUMULATORS * 4 * 2);
});

test('the relaxed_madd loop computes the same, fused or not', () => {
  // Node ships relaxed SIMD behind a flag in the versions the tests run on; a child with it.
  const script = `import { peakModule } from ${JSON.stringify(new URL('../../tools/peer_peak.mjs', import.meta.url).href)};
    const bytes = peakModule(true);
    if (!WebAssembly.validate(bytes)) { console.log('invalid'); process.exit(0); }
    const { instance } = await WebAssembly.instantiate(bytes);
    console.log(JSON.stringify([1, 2, 7, 100000].map((n) => instance.exports.run(n))));`;
  const flags = WebAssembly.validate(peakModule(true)) ? [] : ['--experimental-wasm-relaxed-simd'];
  const out = execFileSync(process.execPath, [...flags, '--input-type=module', '-e', script], { encoding: 'utf8' }).trim();
  assert.notEqual(out, 'invalid', 'the relaxed_madd module does not validate where relaxed SIMD is on');
  const [one, two, seven, long] = JSON.parse(out);
  for (const [n, got] of [[1, one], [2, two], [7, seven]]) {
    assert.ok(got === expected(n, true) || got === expected(n, false), `after ${n} iterations: ${got}`);
  }
  assert.ok(Math.abs(long - ACCUMULATORS) < 1e-3);
});

test("a ViT tower's FLOPs: ViT-B/16 at 224 is the textbook 24·N·d² + 4·N²·d per block", () => {
  const b16 = { projection_dim: 512, vision_config: { hidden_size: 768, intermediate_size: 3072, num_hidden_layers: 12, patch_size: 16 } };
  const n = 197;
  const block = 24 * n * 768 ** 2 + 4 * n ** 2 * 768;
  const patch = 2 * 196 * (3 * 16 * 16) * 768;
  assert.equal(towerFlops(b16, 224).total, 12 * block + patch + 2 * 768 * 512);
  // About 17.6 G multiply-adds, the count usually quoted for ViT-B/16.
  assert.ok(Math.abs(towerFlops(b16, 224).total / 2e9 - 17.56) < 0.01);
  // Another size: more patches, the attention quadratic in them.
  assert.equal(towerFlops(b16, 336).tokens, 442);
});

test("the FLOPs follow the config's own MLP width and patch (the peer fixture's tiny tower)", () => {
  const config = JSON.parse(readFileSync(new URL('../fixtures/peer-tiny/model/config.json', import.meta.url)));
  // 32² pixels, patch 8: 16 patches, 17 tokens; d = 32, MLP 64 (not 4d), 2 blocks, projection 16.
  const [n, d, m] = [17, 32, 64];
  assert.equal(towerFlops(config, 32).total, 2 * (8 * n * d * d + 4 * n * d * m + 4 * n * n * d) + 2 * 16 * 3 * 64 * d + 2 * d * 16);
});

test('no FLOPs for what is not a ViT tower, or a size off the patch grid', () => {
  const b16 = { projection_dim: 512, vision_config: { hidden_size: 768, intermediate_size: 3072, num_hidden_layers: 12, patch_size: 16 } };
  assert.equal(towerFlops(b16, 230), null);
  assert.equal(towerFlops({ model_type: 'resnet', hidden_sizes: [256, 512] }, 224), null);
  assert.equal(towerFlops(null, 224), null);
});

// facebook/sam-vit-base's vision config (SamVisionConfig's defaults), as its config.json holds it.
const samBase = {
  model_type: 'sam',
  vision_config: {
    model_type: 'sam_vision_model', hidden_size: 768, mlp_dim: 3072, num_hidden_layers: 12, patch_size: 16, window_size: 14,
    global_attn_indexes: [2, 5, 8, 11], output_channels: 256, num_channels: 3, use_rel_pos: true,
  },
};

test("Segment Anything's encoder: windowed and global attention, relative positions and the neck, as PyTorch counts them", () => {
  // torch.utils.flop_counter.FlopCounterMode over SamModel(SamConfig()).vision_encoder at 1024²
  // (transformers 5.23): convolutions, linear layers, the relative-position products and
  // scaled_dot_product_attention, a multiply-add counting two.
  assert.equal(towerFlops(samBase, 1024).total, 972077334528);
  assert.equal(towerFlops(samBase, 1024).tokens, 4096);
  // The same counter over tools/sam_fixtures.py's sam-tiny (64², patch 8, windows of 3 padded
  // from the 8×8 grid to 9×9, layer 1 global, neck to 16).
  const tiny = JSON.parse(readFileSync(new URL('../fixtures/sam-tiny/config.json', import.meta.url)));
  assert.equal(towerFlops(tiny, 64).total, 5016576);
  // Every layer global: attention over all 4096 tokens in each, more than windows of 196.
  const allGlobal = { ...samBase, vision_config: { ...samBase.vision_config, global_attn_indexes: [...Array(12).keys()] } };
  assert.ok(towerFlops(allGlobal, 1024).total > towerFlops(samBase, 1024).total);
  assert.equal(towerFlops(samBase, 1000), null);
  assert.equal(towerFlops({ model_type: 'sam', vision_config: { model_type: 'sam_vision_model' } }, 1024), null);
});
