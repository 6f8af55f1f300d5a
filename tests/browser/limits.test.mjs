// WebGPU at its default limits, as some real adapters grant them: every device is requested
// with no `requiredLimits` (so 128 MiB per storage binding, 256 MiB per buffer, 16 KiB of
// workgroup memory), and every uncaptured GPU error (a validation error, an allocation past a
// limit) fails the test. On that device, in SwiftShader's WebGPU, the core runs each engine's
// tiny checkpoint, and random weights at real checkpoints' shapes where their buffers are
// largest (WordMask.loadRandom): Segment Anything ViT-B's encoder (a global block over 64x64
// tokens, whose scores for all 12 heads at once are 768 MiB), CLIP ViT-B/16's attention in one
// pass at a 672-pixel short side (143 MiB of scores) with a 768-wide text tower (a 145 MiB
// token table), and Open-Vocabulary SAM's neck and text tower. Fewer blocks than the
// checkpoints, to keep SwiftShader's time down; each case says what it keeps.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { startServer, withPage } from './harness.mjs';

let server;
before(async () => { server = await startServer(); });
after(() => server.close());

// Runs in the page before its scripts: requestDevice asks for WebGPU's defaults only, and
// keeps what the device was granted and every uncaptured error it raises.
function defaultLimitsOnly() {
  window.gpuErrors = [];
  window.grantedLimits = [];
  if (!self.GPUAdapter) return;
  const requestDevice = GPUAdapter.prototype.requestDevice;
  GPUAdapter.prototype.requestDevice = async function (descriptor = {}) {
    const { requiredLimits, ...rest } = descriptor;
    const device = await requestDevice.call(this, rest);
    window.grantedLimits.push({
      maxStorageBufferBindingSize: device.limits.maxStorageBufferBindingSize,
      maxBufferSize: device.limits.maxBufferSize,
      asked: requiredLimits?.maxStorageBufferBindingSize ?? null,
    });
    device.addEventListener('uncapturederror', (e) => window.gpuErrors.push(e.error.message));
    return device;
  };
}

// Runs in the page: the core (pkg/) on WebGPU in f32, as `window.wm`; gives what it recorded.
async function openCore() {
  const core = await import('/pkg/wordmask.js');
  await core.default();
  window.wm = await core.WordMask.create('webgpu', 'f32');
  return { backend: wm.backend, limits: wm.limits, granted: window.grantedLimits };
}

// Runs in the page: a `size` x `size` image of four colour quadrants as RGBA.
function quadrants(size) {
  const rgba = new Uint8Array(size * size * 4);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const i = (y * size + x) * 4;
      const q = (y < size / 2 ? 0 : 2) + (x < size / 2 ? 0 : 1);
      rgba.set([[220, 30, 30], [30, 200, 40], [40, 60, 220], [230, 220, 40]][q], i);
      rgba[i + 3] = 255;
    }
  }
  return rgba;
}

// Runs in the page: load a fixture folder's files (or random weights for `config`), then
// segment the quadrants with `labels` (a words model) or click one (a prompt model, naming
// the mask among `labels`). Gives a summary, the errors raised and the GPU's errors.
async function run({ folder, files, config, labels, options, size }) {
  const started = performance.now();
  try {
    let loaded;
    if (config) {
      loaded = wm.loadRandom(JSON.stringify(config));
    } else {
      const fetched = {};
      for (const name of files) fetched[name] = new Uint8Array(await (await fetch(folder + name)).arrayBuffer());
      const text = (name) => (fetched[name] ? new TextDecoder().decode(fetched[name]) : undefined);
      const weights = files.find((n) => /safetensors$|\.bin$/.test(n));
      loaded = wm.load(text('config.json'), fetched[weights], weights, text('preprocessor_config.json'));
    }
    const loadMs = performance.now() - started;
    const rgba = quadrants(size);
    let answer;
    if (loaded.role === 'words') {
      const r = await wm.segment(rgba, size, size, labels, options ?? {}, false);
      answer = { width: r.width, height: r.height, labels: r.labels.length };
    } else {
      const encodeMs = await wm.encode(rgba, size, size);
      const r = await wm.prompt({ points: [{ x: size / 4, y: size / 4, positive: true }] }, labels, {});
      answer = { width: r.width, height: r.height, area: r.area, label: r.naming?.label ?? null, encodeMs };
    }
    const ms = performance.now() - started;
    return { role: loaded.role, engine: loaded.engine, answer, gpuErrors: window.gpuErrors.splice(0), loadMs, ms };
  } catch (e) {
    return { error: String(e?.message ?? e), gpuErrors: window.gpuErrors.splice(0), ms: performance.now() - started };
  }
}

// In one page with the default-limits device: each case runs and must raise no GPU error.
async function runAll(cases) {
  const before = (page) => page.addInitScript(defaultLimitsOnly);
  return withPage(server.url, { webgpu: true, before }, async (page) => {
    const opened = await page.evaluate(openCore);
    assert.equal(opened.backend, 'webgpu', JSON.stringify(opened));
    // The device has WebGPU's defaults, though more was asked of the adapter, and the core
    // read them.
    assert.ok(opened.granted.length >= 1, 'the core asked for a device');
    assert.equal(opened.granted.at(-1).maxStorageBufferBindingSize, 134217728, JSON.stringify(opened.granted));
    assert.equal(opened.limits?.maxStorageBufferBindingSize, 134217728, JSON.stringify(opened.limits));
    assert.equal(opened.limits.maxBufferSize, 268435456, JSON.stringify(opened.limits));
    await page.evaluate(`window.quadrants = ${quadrants}`);
    await page.evaluate(`window.run = ${run}`);
    const results = {};
    for (const [name, spec] of Object.entries(cases)) {
      const result = await page.evaluate((s) => run(s), spec);
      console.log(`${name}: ${JSON.stringify(result)}`);
      assert.equal(result.error, undefined, `${name}: ${result.error}`);
      assert.deepEqual(result.gpuErrors, [], `${name}: GPU errors`);
      results[name] = result;
    }
    return results;
  });
}

const FIXTURES = '/tests/fixtures/';
const WORDS = 'red, green, blue, yellow';

test('every engine\'s tiny checkpoint runs on WebGPU at its default limits', { timeout: 600_000 }, async () => {
  const results = await runAll({
    clip: { folder: `${FIXTURES}semantic-colours/`, files: ['config.json', 'model.safetensors'], labels: WORDS, size: 96 },
    groupvit: {
      folder: `${FIXTURES}semantic-colours-groupvit/`,
      files: ['config.json', 'model.safetensors', 'preprocessor_config.json'],
      labels: WORDS,
      size: 96,
    },
    segclip: { folder: `${FIXTURES}semantic-colours-segclip/`, files: ['config.json', 'model.safetensors'], labels: WORDS, size: 96 },
    fusioner: { folder: `${FIXTURES}semantic-colours-fusioner/`, files: ['config.json', 'model.safetensors'], labels: WORDS, size: 96 },
    sam: {
      folder: `${FIXTURES}sam-tiny/`,
      files: ['config.json', 'model.safetensors', 'preprocessor_config.json'],
      labels: '',
      size: 64,
    },
    ovsam: { folder: `${FIXTURES}ovsam-tiny/`, files: ['config.json', 'model.safetensors'], labels: 'red block, grass', size: 96 },
  });
  assert.deepEqual(Object.values(results).map((r) => r.engine), ['dense', 'groupvit', 'segclip', 'fusioner', 'sam', 'ovsam']);
  for (const [name, r] of Object.entries(results)) assert.equal(r.answer.width, name === 'sam' ? 64 : 96, name);
});

// facebook/sam-vit-base's sizes where its buffers are largest (the config's defaults: 1024²
// input, 16-pixel patches, 12 heads, 14-pixel windows) with two blocks, one in windows and one
// global: the global block's scores for all 12 heads at once are 768 MiB, with the relative
// positions' bias as large again. 96 wide instead of 768, so that SwiftShader finishes: the
// scores' size does not depend on the width, and at 768 wide the largest other buffer (the
// MLP's 4096 x 3072 activations, 48 MiB) is under the limit anyway.
const SAM_B = { model_type: 'sam', vision_config: { hidden_size: 96, num_hidden_layers: 2, global_attn_indexes: [1] } };

test('Segment Anything ViT-B-shaped random weights run on WebGPU at its default limits', { timeout: 900_000 }, async () => {
  const { sam } = await runAll({ sam: { config: SAM_B, labels: '', size: 128 } });
  assert.equal(sam.engine, 'sam');
  assert.equal(sam.answer.width, 128);
});

// CLIP ViT-B/16's attention (12 heads over 16-pixel patches; narrower, so that SwiftShader
// finishes: the scores' size does not depend on the width) in one pass at a 672-pixel short
// side: 1,765 tokens, so a plain block and NACLIP's last block each hold 12 x 1765² scores
// (143 MiB in f32, past the 128 MiB binding) unless cut; the cost grows with the tokens'
// square, and a 1024-pixel side (806 MiB) takes SwiftShader minutes. The text tower is 768
// wide (CLIP ViT-L/14's): its token table is 145 MiB in f32.
const CLIP_B16 = {
  model_type: 'clip',
  projection_dim: 64,
  vision_config: { hidden_size: 96, intermediate_size: 384, num_attention_heads: 12, num_hidden_layers: 2, patch_size: 16, image_size: 224 },
  text_config: { hidden_size: 768, intermediate_size: 3072, num_attention_heads: 12, num_hidden_layers: 1 },
};

test('CLIP ViT-B/16-shaped attention in one pass at a 672-pixel short side runs on WebGPU at its default limits', { timeout: 900_000 }, async () => {
  const { clip } = await runAll({
    clip: {
      config: CLIP_B16,
      labels: WORDS,
      options: { shortSide: 672, window: 0, method: 'naclip', refine: 'none', templates: 'single' },
      size: 128,
    },
  });
  assert.equal(clip.engine, 'dense');
  assert.equal(clip.answer.width, 128);
});

// Open-Vocabulary SAM as released where its buffers are largest (the config's defaults): the
// SAM2CLIP neck over the 64x64 grid of a 1024² input, in 14-pixel windows then globally, and
// the 768-wide text tower's token table (145 MiB in f32). Smaller than the release where the
// buffers do not depend on it, so that SwiftShader finishes: the neck is 64 wide (1280
// released) with 4 heads (16 released; each head's scores are one 64 MiB buffer either way,
// and 4 heads' are past the 128 MiB binding), one text block, a trunk of width 8 with one
// bottleneck a stage and a 32-wide FPN (RN50x16's width 96 and the 256-wide FPN give maps of
// at most 96 MiB, under the limit), one template. Its text tower's table is uploaded as it
// loads (in blocks of rows); the text tower runs in the CLIP case, which has the same one.
const OVSAM = {
  model_type: 'ovsam',
  backbone_config: { width: 8, layers: [1, 1, 1, 1] },
  fpn_channels: 32,
  vision_config: { hidden_size: 64, num_attention_heads: 4, num_hidden_layers: 2, global_attn_indexes: [1] },
  text_config: { num_hidden_layers: 1 },
  templates: ['a photo of a {}.'],
};

test('Open-Vocabulary SAM-shaped random weights run on WebGPU at its default limits', { timeout: 900_000 }, async () => {
  const { ovsam } = await runAll({ ovsam: { config: OVSAM, labels: 'cat, dog', size: 128 } });
  assert.equal(ovsam.engine, 'ovsam');
  // Random weights find nothing under the click here (an empty mask is not named); where
  // they do find something, it is named among the words.
  if (ovsam.answer.area > 0) assert.ok(['cat', 'dog'].includes(ovsam.answer.label), JSON.stringify(ovsam));
});
