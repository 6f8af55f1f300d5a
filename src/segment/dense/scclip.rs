//! SC-CLIP, Self-Calibrated CLIP (Bai et al. 2024, "Self-Calibrated CLIP for Training-Free
//! Open-Vocabulary Segmentation"), as its authors' code runs it (SuleBai/SC-CLIP @ 0417ba9,
//! `clip/model.py` `VisionTransformer.forward` with `return_all=True`, and the defaults of
//! `configs/base_config.py`): one pass of CLIP's blocks but the last, then
//!
//! 1. **anomaly tokens resolved**: the local outlier factor of each patch after the
//!    second-to-last block (`lof_pytorch`: 30 neighbours by squared distance, the top 5 % by
//!    `quantile`) marks outliers, and each is replaced by the mean of its non-outlier 3x3
//!    neighbours (`mean_interpolation`);
//! 2. **self-adjusting**: the patches' cosine similarity at an intermediate block (index 8,
//!    outliers replaced the same way) aggregates the features (similarities under 0.4 dropped,
//!    rows normalised), and, shifted by its mean, scaled by 3 and cut at 0, replaces the query
//!    side of the last block's attention, averaged with k-k attention (`custom_attn`); the
//!    output gets 0.3 of the class token and is aggregated again by the similarity at block 3;
//! 3. **multi-level fusion**: the sum of blocks 4 to 10's outputs goes through the same last
//!    attention and aggregation and is added.
//!
//! The class token is dropped from the last stage on: the result is the patch tokens before
//! `ln_post`. Where the authors' code maps an outlier's index to its grid position it divides
//! by the grid's height (`index // feat_w`, `feat_w` the rows): the same as the width on the
//! square windows of every SC-CLIP config, and wrong (out of range or misplaced) on a
//! non-square whole image; here it is always the patch's own position.

use burn::tensor::activation::softmax;
use burn::tensor::{Int, Tensor};

use crate::clip::vision::VisionTransformer;
use crate::error::{Error, Result};
use crate::nn::{Attention, EncoderLayer, Resampling, l2_normalize};

/// SC-CLIP's constants (`configs/base_config.py` and `clip/model.py`).
#[derive(Debug, Clone, PartialEq)]
pub struct ScClip {
    /// Block whose output's similarity adjusts the last attention (`pre_adjust_idx`, 0-based
    /// over the blocks' outputs).
    pub pre_adjust: usize,
    /// Block whose output's similarity aggregates the result (`post_adjust_idx`).
    pub post_adjust: usize,
    /// Blocks whose outputs are summed for the multi-level fusion, `start..end`
    /// (`multi_start_idx`, `multi_end_idx`).
    pub multi: (usize, usize),
    /// Share of the class token added back (`res_cls`).
    pub res_cls: f32,
    /// Similarities under this are dropped from the aggregations (`beta`).
    pub beta: f32,
    /// Neighbours of the local outlier factor (`n_neighbors`).
    pub neighbours: usize,
    /// Share of patches taken as outliers (`contamination`).
    pub contamination: f64,
}

impl Default for ScClip {
    fn default() -> Self {
        ScClip {
            pre_adjust: 8,
            post_adjust: 3,
            multi: (3, 10),
            res_cls: 0.3,
            beta: 0.4,
            neighbours: 30,
            contamination: 0.05,
        }
    }
}

impl ScClip {
    /// The blocks a tower of `layers` blocks needs, and patches enough for the outlier factor.
    pub fn check(&self, layers: usize, patches: usize) -> Result<()> {
        let deepest = self.pre_adjust.max(self.post_adjust).max(self.multi.1.saturating_sub(1));
        if deepest + 2 > layers || self.multi.0 >= self.multi.1 {
            return Err(Error::invalid(format!(
                "SC-CLIP reads block outputs up to index {deepest} and replaces the last block: it needs at least {} vision blocks; this checkpoint has {layers}",
                deepest + 2
            )));
        }
        if patches <= self.neighbours {
            return Err(Error::invalid(format!(
                "SC-CLIP's outlier factor compares each patch with its {} nearest: a window needs more than {} patches, this one has {patches} (use a larger window or short side)",
                self.neighbours, self.neighbours
            )));
        }
        Ok(())
    }

    /// The patch tokens before `post_layernorm`. `[b, 3, H, W] -> ([b, gh*gw, width], (gh, gw))`
    pub fn forward(
        &self,
        vision: &VisionTransformer,
        pixels: Tensor<4>,
        resampling: Resampling,
    ) -> Result<(Tensor<3>, (usize, usize))> {
        let (x, (gh, gw)) = vision.embed_with(pixels, resampling)?;
        let [b, _, d] = x.dims();
        let n = gh * gw;
        self.check(vision.layers.len(), n)?;
        let mut x = vision.pre_layrnorm.forward(x);
        let blocks = &vision.layers[..vision.layers.len() - 1];
        let mut outputs = Vec::with_capacity(blocks.len());
        for layer in blocks {
            x = layer.forward(x, None);
            outputs.push(x.clone());
        }
        let patches = |t: &Tensor<3>| t.clone().slice([0..b, 1..1 + n, 0..d]);
        let class = |t: &Tensor<3>| t.clone().slice([0..b, 0..1, 0..d]);
        let outliers = self.outliers(patches(&x));
        let x = mean_interpolation(patches(&x), &outliers, (gh, gw));
        let cls = class(&outputs[outputs.len() - 1]);

        let adjust = l2_normalize(mean_interpolation(patches(&outputs[self.pre_adjust]), &outliers, (gh, gw)));
        let mid = adjust.clone().matmul(adjust.transpose()); // [b, n, n]
        let x = aggregate(x, self.cut(mid.clone()));
        let last = vision.last_layer();
        let x = self.attend(last, x, mid.clone()).add(cls.mul_scalar(self.res_cls));
        let post = l2_normalize(patches(&outputs[self.post_adjust]));
        let after = self.cut(post.clone().matmul(post.transpose()));
        let x = aggregate(x, after.clone());

        let (start, end) = self.multi;
        let fused = outputs[start + 1..end].iter().fold(outputs[start].clone(), |sum, o| sum.add(o.clone()));
        let fused = self.attend(last, patches(&fused), mid).add(class(&fused).mul_scalar(self.res_cls));
        Ok((x.add(aggregate(fused, after)), (gh, gw)))
    }

    /// Similarities under `beta` set to 0.
    fn cut(&self, similarity: Tensor<3>) -> Tensor<3> {
        let low = similarity.clone().lower_elem(self.beta);
        similarity.mask_fill(low, 0.0)
    }

    /// `custom_attn`: `out_proj(((softmax(3 (s - mean s), cut at 0) + softmax(k kᵀ / √hd)) / 2) v)`
    /// with `q, k, v` from `ln_1(x)`; `s` is the window's similarity `[b, n, n]`, the same for
    /// every head. No residual, no MLP.
    fn attend(&self, layer: &EncoderLayer, x: Tensor<3>, similarity: Tensor<3>) -> Tensor<3> {
        let attn = &layer.self_attn;
        let (_, k, v) = attn.qkv(layer.layer_norm1.forward(x));
        let [b, heads, n, _] = k.dims();
        let mean = similarity.clone().mean_dim(2).mean_dim(1); // [b, 1, 1]
        let shifted = similarity.sub(mean).mul_scalar(3.0);
        let below = shifted.clone().lower_elem(0.0);
        let adjusted = softmax(shifted.mask_fill(below, f32::NEG_INFINITY), 2);
        let adjusted = adjusted.unsqueeze_dim::<4>(1).expand([b, heads, n, n]);
        let weights = adjusted.add(Attention::weights(k.clone(), k, None)).div_scalar(2.0);
        attn.mix(weights, v)
    }

    /// Each window's outliers by their local outlier factor (`lof_pytorch`), as a mask
    /// `[b, n]` (1 = outlier).
    pub fn outliers(&self, x: Tensor<3>) -> Tensor<2> {
        let [b, n, _] = x.dims();
        let k = self.neighbours;
        // Squared distances, |a|² + |b|² - 2 a·b of the features less their mean (smaller norms,
        // less cancellation), the diagonal exactly 0.
        let x = x.clone().sub(x.mean_dim(1));
        let norms = x.clone().powf_scalar(2.0).sum_dim(2); // [b, n, 1]
        let dot = x.clone().matmul(x.transpose());
        let eye = Tensor::<2, Int>::eye(n, &dot.device()).equal_elem(1).unsqueeze_dim::<3>(0).expand([b, n, n]);
        let distances =
            norms.clone().add(norms.transpose()).sub(dot.mul_scalar(2.0)).clamp_min(0.0).mask_fill(eye, 0.0);
        // The k + 1 nearest, the point itself first; then its k neighbours.
        let (nearest, index) = distances.neg().topk_with_indices(k + 1, 2);
        let nearest = nearest.neg().slice([0..b, 0..n, 1..k + 1]);
        let index = index.slice([0..b, 0..n, 1..k + 1]);
        // Every reach distance is the point's own k-distance (the authors' reach), so its local
        // reachability density is k / k-distance.
        let k_distance = nearest.slice([0..b, 0..n, k - 1..k]); // [b, n, 1]
        let density = k_distance.clone().recip().mul_scalar(k as f64); // [b, n, 1]
        let neighbour_density = density.clone().reshape([b, 1, n]).expand([b, n, n]).gather(2, index);
        let factor = neighbour_density.div(density).mean_dim(2).reshape([b, n]);
        // `quantile(1 - contamination)` with linear interpolation, then `>`: the patches ranked
        // above floor((1 - c)(n - 1)), ranked as torch computes the position (in f32).
        let position = ((1.0 - self.contamination) as f32 * (n - 1) as f32).floor() as usize;
        let count = (n - 1).saturating_sub(position.min(n - 1));
        if count == 0 {
            return factor.zeros_like();
        }
        let lowest_outlier = factor.clone().topk(count, 1).slice([0..b, count - 1..count]); // [b, 1]
        factor.greater_equal(lowest_outlier.expand([b, n])).float()
    }
}

/// `mean_interpolation`: each outlier (`mask` 1) replaced by the mean of its non-outlier 3x3
/// neighbours (zero padding), where it has one. `[b, n, d]` on a `gh x gw` grid.
pub fn mean_interpolation(x: Tensor<3>, mask: &Tensor<2>, (gh, gw): (usize, usize)) -> Tensor<3> {
    let [b, n, d] = x.dims();
    let outlier = mask.clone().reshape([b, gh, gw, 1]);
    let valid = outlier.clone().neg().add_scalar(1.0);
    let grid = x.clone().reshape([b, gh, gw, d]);
    let kept = grid.clone().mul(valid.clone());
    let (mut sum, mut count) = (kept.zeros_like(), valid.zeros_like());
    for (dy, dx) in [(-1i32, -1i32), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)] {
        sum = sum.add(shifted(&kept, dy, dx));
        count = count.add(shifted(&valid, dy, dx));
    }
    let update = outlier.mul(count.clone().greater_elem(0.0).float()); // [b, gh, gw, 1]
    let mean = sum.div(count.clamp_min(1.0));
    let keep = update.clone().neg().add_scalar(1.0);
    let grid = grid.mul(keep).add(mean.mul(update));
    grid.reshape([b, n, d])
}

/// `x` (`[b, h, w, c]`) moved so that each position holds its neighbour at `(dy, dx)`, zero
/// beyond the edges.
fn shifted(x: &Tensor<4>, dy: i32, dx: i32) -> Tensor<4> {
    let [b, h, w, c] = x.dims();
    let (ys, yd) = span(h, dy);
    let (xs, xd) = span(w, dx);
    let out = x.zeros_like();
    if ys.is_empty() || xs.is_empty() {
        return out;
    }
    out.slice_assign([0..b, yd, xd, 0..c], x.clone().slice([0..b, ys, xs, 0..c]))
}

/// The source and destination ranges along a side of `len` for an offset `by` (-1, 0, 1).
fn span(len: usize, by: i32) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
    match by {
        -1 => (0..len.saturating_sub(1), 1.min(len)..len),
        1 => (1.min(len)..len, 0..len.saturating_sub(1)),
        _ => (0..len, 0..len),
    }
}

/// `adaptively_aggregate`: `(s / (Σ s + 1e-6)) x`, rows of `s` (`[b, n, n]`) normalised.
fn aggregate(x: Tensor<3>, similarity: Tensor<3>) -> Tensor<3> {
    let sum = similarity.clone().sum_dim(2).add_scalar(1e-6);
    similarity.div(sum).matmul(x)
}
