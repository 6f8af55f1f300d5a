//! SAM's image encoder (transformers `SamVisionEncoder`): a ViT over 16-pixel patches of the
//! padded 1024-pixel input, with an absolute position table, blocks that attend within
//! `window_size` windows (the grid padded to whole windows) except the global ones, decomposed
//! relative positions in every attention (Li et al., "MViTv2", as SAM uses them), and a neck of
//! a 1x1 and a 3x3 convolution, each followed by a channels-first layer norm.
//!
//! Memory: a global block of SAM-B attends over 64x64 = 4096 tokens; its scores for all 12
//! heads would be 768 MiB, and SAM-H's 16 heads 1 GiB, the largest buffer a browser allows.
//! Attention runs in chunks of heads sized so that no intermediate exceeds the device's budget
//! ([`attention_budget`]): on the GPU half the largest buffer the device was granted, read at
//! open (one head at a time for SAM-B's global blocks under WebGPU's default 128 MiB binding,
//! four with 1 GiB or more), on the CPU [`ATTENTION_BUDGET`].

use burn::tensor::activation::softmax;
use burn::tensor::{Int, Tensor, TensorData};

use super::config::SamVisionConfig;
use crate::error::Result;
use crate::loader::Scope;
use crate::nn::{Conv2d, LayerNorm, LayerNorm2d, Linear, Mlp, PatchEmbedding};

/// Largest attention intermediate (scores, relative-position bias), in `f32` elements: 64 MiB,
/// half of WebGPU's default `maxStorageBufferBindingSize` (128 MiB), so one head of a 64x64
/// grid's global attention (4096² scores) fits and no buffer nears the 1 GiB a browser allows.
pub const ATTENTION_BUDGET: usize = 16 << 20;
const _: () = assert!(ATTENTION_BUDGET * size_of::<f32>() <= 128 << 20, "within WebGPU's default binding size");

/// The attention budget on `device`, in elements: on the GPU one intermediate within
/// [`GpuLimits::intermediate_bytes`](crate::device::GpuLimits::intermediate_bytes) of the
/// device's limits, counted as `f32` whatever the precision (a kernel may widen on the way); on
/// the CPU backend, which has no buffer limit, [`ATTENTION_BUDGET`] as it always was.
pub fn attention_budget(device: &burn::tensor::Device) -> usize {
    crate::device::buffer_budget(device).map_or(ATTENTION_BUDGET, |bytes| (bytes / size_of::<f32>()).max(1))
}

/// How many heads of a `[batch, heads, n, n]` attention fit in `budget` elements at once.
pub fn heads_per_chunk(batch: usize, heads: usize, n: usize, budget: usize) -> usize {
    (budget / (batch * n * n).max(1)).clamp(1, heads)
}

/// The relative-position table of one axis gathered for every (query, key) pair of a side-`s`
/// grid: `R[i, k] = rel_pos[i - k + s - 1]`, transposed for a matmul. `[2s-1, hd] -> [s, hd, s]`
fn gather_relative(rel_pos: Tensor<2>, s: usize) -> Tensor<3> {
    let hd = rel_pos.dims()[1];
    let index: Vec<i32> = (0..s).flat_map(|i| (0..s).map(move |k| (i + s - 1 - k) as i32)).collect();
    let index = Tensor::<1, Int>::from_data(TensorData::new(index, [s * s]), &rel_pos.device());
    rel_pos.select(0, index).reshape([s, s, hd]).swap_dims(1, 2)
}

/// `SamVisionAttention`: fused qkv projection, decomposed relative positions.
#[derive(Debug, Clone)]
pub struct VisionAttention {
    pub qkv: Linear,
    pub proj: Linear,
    pub num_heads: usize,
    /// Gathered `rel_pos_h` and `rel_pos_w` for the attention's square side, `[s, hd, s]` each.
    pub rel_pos: Option<(Tensor<3>, Tensor<3>)>,
    /// Elements an intermediate may hold (tests lower it to force chunking).
    pub budget: usize,
}

impl VisionAttention {
    fn load(mut p: Scope, cfg: &SamVisionConfig, side: usize) -> Self {
        let d = cfg.hidden_size;
        let hd = d / cfg.num_attention_heads;
        let rel_pos = cfg.use_rel_pos.then(|| {
            let h = p.tensor("rel_pos_h", [2 * side - 1, hd]);
            let w = p.tensor("rel_pos_w", [2 * side - 1, hd]);
            // The gathered tables are `side / 2` times the stored ones: none while checking,
            // whose model never runs.
            if p.checking() {
                let stand_in = Tensor::<3>::zeros([1, 1, 1], p.device()).expand([side, hd, side]);
                return (stand_in.clone(), stand_in);
            }
            (gather_relative(h, side), gather_relative(w, side))
        });
        VisionAttention {
            qkv: Linear::load(p.pp("qkv"), d, 3 * d, cfg.qkv_bias),
            proj: Linear::load(p.pp("proj"), d, d, true),
            num_heads: cfg.num_attention_heads,
            rel_pos,
            budget: attention_budget(p.device()),
        }
    }

    /// Decomposed relative positions for queries `q` (`[m, s, s, hd]`, unscaled) of a side-`s`
    /// grid: `bias[(i, j), (k, l)] = q(i, j) · Rh[i, k] + q(i, j) · Rw[j, l]`. `-> [m, s², s²]`
    fn relative_bias(&self, q: Tensor<4>) -> Option<Tensor<3>> {
        let (rh, rw) = self.rel_pos.as_ref()?;
        let [m, s, _, hd] = q.dims();
        // Rows of q by their row index i, then by their column index j.
        let by_row = q.clone().permute([1, 0, 2, 3]).reshape([s, m * s, hd]);
        let rel_h = by_row.matmul(rh.clone()).reshape([s, m, s, s]).permute([1, 0, 2, 3]); // [m, i, j, k]
        let by_col = q.permute([2, 0, 1, 3]).reshape([s, m * s, hd]);
        let rel_w = by_col.matmul(rw.clone()).reshape([s, m, s, s]).permute([1, 2, 0, 3]); // [m, i, j, l]
        let bias = rel_h.reshape([m, s, s, s, 1]).add(rel_w.reshape([m, s, s, 1, s]));
        Some(bias.reshape([m, s * s, s * s]))
    }

    /// `[b, s, s, d] -> [b, s, s, d]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, s, _, d] = x.dims();
        let (heads, n) = (self.num_heads, s * s);
        let hd = d / heads;
        let qkv = self.qkv.forward(x).reshape([b, n, 3, heads, hd]).permute([2, 0, 3, 1, 4]); // [3, b, h, n, hd]
        let part = |i: usize| qkv.clone().slice([i..i + 1]).reshape([b, heads, n, hd]);
        let (q, k, v) = (part(0), part(1), part(2));
        let step = heads_per_chunk(b, heads, n, self.budget);
        let mut outputs = Vec::with_capacity(heads.div_ceil(step));
        for h0 in (0..heads).step_by(step) {
            let h1 = (h0 + step).min(heads);
            let c = h1 - h0;
            let pick = |t: &Tensor<4>| t.clone().slice([0..b, h0..h1, 0..n, 0..hd]);
            let (q, k, v) = (pick(&q), pick(&k), pick(&v));
            let mut scores = q.clone().mul_scalar((hd as f64).powf(-0.5)).matmul(k.swap_dims(2, 3));
            if let Some(bias) = self.relative_bias(q.reshape([b * c, s, s, hd])) {
                scores = scores.add(bias.reshape([b, c, n, n]));
            }
            outputs.push(softmax(scores, 3).matmul(v));
        }
        let out = Tensor::cat(outputs, 1); // [b, heads, n, hd]
        let out = out.reshape([b, heads, s, s, hd]).permute([0, 2, 3, 1, 4]).reshape([b, s, s, d]);
        self.proj.forward(out)
    }
}

/// `SamVisionLayer`: pre-norm attention (in windows, or global) and MLP, each with a residual.
#[derive(Debug, Clone)]
pub struct VisionLayer {
    pub layer_norm1: LayerNorm,
    pub attn: VisionAttention,
    pub layer_norm2: LayerNorm,
    pub mlp: Mlp,
    /// Side of the attention windows; 0 = global.
    pub window_size: usize,
}

/// `[b, h, w, c]` padded at the bottom and right to whole `ws x ws` windows, then cut into them.
/// `-> [b * windows, ws, ws, c]`
fn window_partition(x: Tensor<4>, ws: usize) -> Tensor<4> {
    let [b, h, w, c] = x.dims();
    let (ph, pw) = (h.div_ceil(ws) * ws, w.div_ceil(ws) * ws);
    let x = if (ph, pw) == (h, w) {
        x
    } else {
        Tensor::zeros([b, ph, pw, c], &x.device()).slice_assign([0..b, 0..h, 0..w, 0..c], x)
    };
    x.reshape([b, ph / ws, ws, pw / ws, ws, c]).permute([0, 1, 3, 2, 4, 5]).reshape([
        b * (ph / ws) * (pw / ws),
        ws,
        ws,
        c,
    ])
}

/// The inverse of [`window_partition`], the padding dropped. `-> [b, h, w, c]`
fn window_unpartition(windows: Tensor<4>, ws: usize, h: usize, w: usize) -> Tensor<4> {
    let c = windows.dims()[3];
    let (ph, pw) = (h.div_ceil(ws) * ws, w.div_ceil(ws) * ws);
    let b = windows.dims()[0] / ((ph / ws) * (pw / ws));
    let x = windows.reshape([b, ph / ws, pw / ws, ws, ws, c]).permute([0, 1, 3, 2, 4, 5]).reshape([b, ph, pw, c]);
    x.slice([0..b, 0..h, 0..w, 0..c])
}

impl VisionLayer {
    /// `layer_norm1`, `attn`, `layer_norm2`, `mlp.lin1`, `mlp.lin2`.
    pub(crate) fn load(mut p: Scope, cfg: &SamVisionConfig, i: usize) -> Self {
        let (d, eps) = (cfg.hidden_size, cfg.layer_norm_eps);
        let window_size = cfg.window_of(i);
        let side = if window_size > 0 { window_size } else { cfg.grid() };
        VisionLayer {
            layer_norm1: LayerNorm::load(p.pp("layer_norm1"), d, eps),
            attn: VisionAttention::load(p.pp("attn"), cfg, side),
            layer_norm2: LayerNorm::load(p.pp("layer_norm2"), d, eps),
            mlp: Mlp::load_named(p.pp("mlp"), "lin1", "lin2", [d, cfg.mlp_dim(), d], cfg.hidden_act),
            window_size,
        }
    }

    /// `[b, h, w, d] -> [b, h, w, d]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, h, w, d] = x.dims();
        let normed = self.layer_norm1.forward(x.clone());
        let attended = match self.window_size {
            0 => self.attn.forward(normed),
            ws => window_unpartition(self.attn.forward(window_partition(normed, ws)), ws, h, w),
        };
        let x = x.add(attended);
        let mlp = self.mlp.forward(self.layer_norm2.forward(x.clone()).reshape([b, h * w, d]));
        x.add(mlp.reshape([b, h, w, d]))
    }
}

/// `SamVisionNeck`: `[b, h, w, d] -> [b, output_channels, h, w]`.
#[derive(Debug, Clone)]
pub struct VisionNeck {
    pub conv1: Conv2d,
    pub layer_norm1: LayerNorm2d,
    pub conv2: Conv2d,
    pub layer_norm2: LayerNorm2d,
}

impl VisionNeck {
    /// `SamLayerNorm`'s own epsilon (1e-6), not the config's.
    const EPS: f64 = 1e-6;

    pub(crate) fn load(mut p: Scope, cfg: &SamVisionConfig) -> Self {
        let (d, c) = (cfg.hidden_size, cfg.output_channels);
        VisionNeck {
            conv1: Conv2d::load(p.pp("conv1"), d, c, 1, 1, 0, false),
            layer_norm1: LayerNorm2d::load(p.pp("layer_norm1"), c, Self::EPS),
            conv2: Conv2d::load(p.pp("conv2"), c, c, 3, 1, 1, false),
            layer_norm2: LayerNorm2d::load(p.pp("layer_norm2"), c, Self::EPS),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = self.layer_norm1.forward(self.conv1.forward(x.permute([0, 3, 1, 2])));
        self.layer_norm2.forward(self.conv2.forward(x))
    }
}

#[derive(Debug, Clone)]
pub struct SamVisionEncoder {
    pub patch_embed: PatchEmbedding,
    /// `pos_embed`, `[1, grid, grid, d]`.
    pub pos_embed: Option<Tensor<4>>,
    pub layers: Vec<VisionLayer>,
    pub neck: VisionNeck,
    pub image_size: usize,
}

impl SamVisionEncoder {
    /// `patch_embed.projection`, `pos_embed`, `layers.*`, `neck.*`.
    pub fn load(mut p: Scope, cfg: &SamVisionConfig) -> Self {
        let (d, g) = (cfg.hidden_size, cfg.grid());
        SamVisionEncoder {
            patch_embed: PatchEmbedding::load(
                p.pp("patch_embed.projection"),
                d,
                cfg.num_channels,
                cfg.patch_size,
                true,
            ),
            pos_embed: cfg.use_abs_pos.then(|| p.tensor("pos_embed", [1, g, g, d])),
            layers: (0..cfg.num_hidden_layers).map(|i| VisionLayer::load(p.pp("layers").pp(i), cfg, i)).collect(),
            neck: VisionNeck::load(p.pp("neck"), cfg),
            image_size: cfg.image_size,
        }
    }

    /// Image embeddings of padded, normalised pixels. `[b, 3, S, S] -> [b, c, S/p, S/p]`
    pub fn forward(&self, pixels: Tensor<4>) -> Result<Tensor<4>> {
        let b = pixels.dims()[0];
        let (tokens, (gh, gw)) = self.patch_embed.forward(pixels)?;
        let d = tokens.dims()[2];
        let mut x = tokens.reshape([b, gh, gw, d]);
        if let Some(pos) = &self.pos_embed {
            x = x.add(pos.clone());
        }
        for layer in &self.layers {
            x = layer.forward(x);
        }
        Ok(self.neck.forward(x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Chunks planned from a device's limits: under WebGPU's defaults every intermediate of
    /// SAM-B's, -L's and -H's global attention (scores, their relative-position bias, their
    /// softmax, each `heads x 4096²` in f32) fits in one 128 MiB binding, which all heads at
    /// once would not; a device granted 2 GiB bindings takes several heads a chunk.
    #[test]
    fn attention_chunks_follow_the_device_limits() {
        use crate::device::GpuLimits;
        let default = GpuLimits::WEBGPU_DEFAULT;
        let large = GpuLimits { max_storage_buffer_binding_size: 2 << 30, max_buffer_size: 2 << 30, ..default };
        let n = 64 * 64;
        for (name, heads) in [("B", 12), ("L", 16), ("H", 16)] {
            assert!(heads * n * n * 4 > default.largest_buffer() as usize, "{name}: unchunked it would not fit");
            let budget = default.intermediate_bytes() / 4;
            let step = heads_per_chunk(1, heads, n, budget);
            assert!(step * n * n * 4 <= default.largest_buffer() as usize, "{name}: {step} heads");
            let wide = heads_per_chunk(1, heads, n, large.intermediate_bytes() / 4);
            assert!(wide > step && wide * n * n * 4 <= large.largest_buffer() as usize, "{name}: {wide} heads");
        }
    }

    /// For every published SAM and SlimSAM tower, each attention chunk — windowed (25 windows
    /// of 14x14 over the padded 70x70 grid) or global (the 64x64 grid) — stays within the
    /// budget (itself within WebGPU's default binding size, checked at compile time).
    #[test]
    fn attention_chunks_stay_under_the_buffer_limits() {
        const BYTES: usize = 4;
        // (name, width, heads): facebook/sam-vit-base, -large, -huge; nielsr/slimsam-50, -77.
        for (name, width, heads) in
            [("B", 768, 12), ("L", 1024, 16), ("H", 1280, 16), ("S50", 384, 12), ("S77", 168, 12)]
        {
            assert_eq!(width % heads, 0, "{name}");
            for (batch, n) in [(25, 14 * 14), (1, 64 * 64)] {
                let step = heads_per_chunk(batch, heads, n, ATTENTION_BUDGET);
                let largest = batch * step * n * n;
                assert!(step >= 1 && largest <= ATTENTION_BUDGET, "{name}: {step} heads of {batch} x {n}² = {largest}");
                // All heads at once would have passed 1 GiB for the global layers of L and H.
                if n == 4096 && heads == 16 {
                    assert!(batch * heads * n * n * BYTES >= 1 << 30, "{name}");
                }
            }
        }
    }
}
