//! ResCLIP (Yang et al., CVPR 2025, "ResCLIP: Residual Attention for Training-free Dense
//! Vision-language Inference"), as its authors' code runs it (yvhangyang/ResCLIP @ 0e085f7,
//! `clip/model.py` `VisionTransformer.forward`, with `arch='wo_resi'`,
//! `attn_strategy='resclip'`, `gaussian_std=5` as `test_all.sh` runs the paper's results):
//! NACLIP's last block (k-k attention plus a Gaussian over patch distance, no residual, no MLP)
//! with two additions.
//!
//! - **RCS**, residual cross-correlation self-attention: the mean of blocks 6 to 9's ordinary
//!   (q-k) attention maps is mixed into the last block's weights after their softmax:
//!   `τ ((1 - λ) softmax(..) + λ rcs)`, `(τ, λ)` = `attn_rcs_weights`.
//! - **SFR**, semantic feedback refinement: a first segmentation of the window (the last block
//!   with RCS, each name's cosine, upsampled, PAMR at 10 iterations and dilations 8 and 16, the
//!   softmax with the logit scale; pixels whose top probability is under `temp_thd` count as
//!   name 0) gives each patch its most frequent name (`torch.mode`, ties to the lower); patches
//!   of one name attend to each other, decayed by `exp(-steps / max_steps)` where the straight
//!   path between them leaves the name (`delete_same_entity`, `check_path`: positions at
//!   `t = s / max_steps` for `s` up to the pair's own Chebyshev distance, rounded half to even),
//!   each row blurred by a 1-D Gaussian (σ 5, over the flattened patch index as the authors'
//!   `conv1d` does) and normalised; divided by its maximum and rounded to half precision, it
//!   enters the last block's scores before the softmax: `τ ((1 - λ) k kᵀ/√hd + λ sfr)`,
//!   `(τ, λ)` = `attn_sfr_weights`.
//!
//! The half-precision rounding is emulated in f32 (Veltkamp's split to 11 significant bits,
//! and the subnormal range's fixed step), so no device needs f16. The path positions follow
//! `torch.linspace`'s scalar formula (what its CPU kernel computes for fewer than 16 steps, and
//! its CUDA kernel always).

use burn::tensor::activation::softmax;
use burn::tensor::{Int, Tensor, TensorData};

use super::Pamr;
use super::blocks::neighbourhood_bias;
use super::pamr;
use crate::clip::ClipModel;
use crate::error::{Error, Result};
use crate::nn::{Attention, EncoderLayer, Resampling, l2_normalize, resize_bilinear};

/// ResCLIP's settings (its configs' values; these defaults are its Context59 and COCO-Stuff
/// ones, see docs/engines.md). Serialised (camelCase) as the settings the page shows.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResClip {
    /// Pixels of the first segmentation whose top probability is under this count as name 0
    /// (`temp_thd`).
    #[serde(rename = "sfrThreshold")]
    pub temp_threshold: f32,
    /// `(τ, λ)` of the residual cross-correlation attention (`attn_rcs_weights`).
    pub rcs_weights: [f32; 2],
    /// `(τ, λ)` of the semantic feedback (`attn_sfr_weights`).
    pub sfr_weights: [f32; 2],
    /// Patches of one name that no straight path of that name joins are decayed
    /// (`delete_same_entity`).
    #[serde(skip)]
    pub delete_same_entity: bool,
    /// Blocks whose attention maps RCS averages, `start..end` over the blocks before the last
    /// (`range(5, 9)`).
    #[serde(skip)]
    pub rcs_blocks: (usize, usize),
    /// Whether the semantic feedback runs (`use_sfr`; off only to test its effect).
    #[serde(skip)]
    pub sfr: bool,
    /// PAMR's schedule in the first segmentation (`PAMR(10, dilations=(8, 16))`).
    #[serde(skip)]
    pub pamr: Pamr,
    /// Width of the blur over each row of the feedback, and of NACLIP's neighbourhood
    /// (`gaussian_std`).
    #[serde(skip)]
    pub sigma: f64,
}

impl Default for ResClip {
    fn default() -> Self {
        ResClip {
            temp_threshold: 0.25,
            rcs_weights: [2.0, 0.4],
            sfr_weights: [1.8, 0.7],
            delete_same_entity: true,
            rcs_blocks: (5, 9),
            sfr: true,
            pamr: Pamr::default(),
            sigma: 5.0,
        }
    }
}

impl ResClip {
    /// The tokens after the last block, class token first, before `post_layernorm`.
    /// `names`: `[k, proj]` in f32. `[b, 3, H, W] -> ([b, 1 + gh*gw, width], (gh, gw))`
    pub fn forward(
        &self,
        clip: &ClipModel,
        pixels: Tensor<4>,
        names: &Tensor<2>,
        logit_scale: f32,
        resampling: Resampling,
    ) -> Result<(Tensor<3>, (usize, usize))> {
        let vision = &clip.vision_model;
        let blocks = vision.layers.len() - 1;
        let (start, end) = self.rcs_blocks;
        if end > blocks || start >= end {
            return Err(Error::invalid(format!(
                "ResCLIP averages the attention of blocks {} to {end}: it needs at least {} vision blocks; this checkpoint has {}",
                start + 1,
                end + 1,
                blocks + 1
            )));
        }
        let [b, _, height, width] = pixels.dims();
        let (x, (gh, gw)) = vision.embed_with(pixels.clone(), resampling)?;
        let mut x = vision.pre_layrnorm.forward(x);
        let mut maps = Vec::with_capacity(end - start);
        for (i, layer) in vision.layers[..blocks].iter().enumerate() {
            if (start..end).contains(&i) {
                let attn = &layer.self_attn;
                let (q, k, v) = attn.qkv(layer.layer_norm1.forward(x.clone()));
                let weights = Attention::weights(q, k, None);
                x = layer.feed_forward(x.add(attn.mix(weights.clone(), v)));
                maps.push(weights);
            } else {
                x = layer.forward(x, None);
            }
        }
        let count = maps.len() as f64;
        let rcs = maps.into_iter().reduce(|a, m| a.add(m)).expect("a block").div_scalar(count);
        let omega = neighbourhood_bias(gh, gw, self.sigma, &x.device());
        let last = vision.last_layer();
        let feedback = if self.sfr {
            // The first segmentation: each name's cosine, upsampled, refined, softmaxed.
            let first = self.last_block(last, x.clone(), &omega, &rcs, None);
            let d = first.dims()[2];
            let tokens = vision.post_layernorm.forward(first.slice([0..b, 1..1 + gh * gw, 0..d]));
            let patches = l2_normalize(clip.visual_projection.forward(tokens)).cast(names.dtype());
            let k = names.dims()[0];
            let cosines = patches.matmul(names.clone().transpose().unsqueeze::<3>());
            let maps = resize_bilinear(cosines.reshape([b, gh, gw, k]).permute([0, 3, 1, 2]), height, width);
            let guide = pixels.cast(maps.dtype());
            let refined = pamr::refine(guide, maps, self.pamr.iterations, &self.pamr.dilations);
            let probabilities = softmax(refined.mul_scalar(logit_scale), 1);
            let patch = clip.config.vision_config.patch_size;
            let names_of = self.patch_names(probabilities, (gh, gw), patch);
            Some(self.feedback(names_of, (gh, gw)))
        } else {
            None
        };
        let out = self.last_block(last, x, &omega, &rcs, feedback);
        Ok((out, (gh, gw)))
    }

    /// NACLIP's last block with ResCLIP's two additions: `feedback` (`[b, n, n]` over the
    /// tokens, class token included) before the softmax, `rcs` after it.
    fn last_block(
        &self,
        layer: &EncoderLayer,
        x: Tensor<3>,
        omega: &Tensor<2>,
        rcs: &Tensor<4>,
        feedback: Option<Tensor<3>>,
    ) -> Tensor<3> {
        let attn = &layer.self_attn;
        let (_, k, v) = attn.qkv(layer.layer_norm1.forward(x));
        let scale = (k.dims()[3] as f64).powf(-0.5);
        let mut scores = k.clone().matmul(k.swap_dims(2, 3)).mul_scalar(scale);
        if let Some(feedback) = feedback {
            let [tau, lambda] = self.sfr_weights;
            let weighted = self.weighted_feedback(feedback).unsqueeze_dim::<4>(1);
            let blended = scores.mul_scalar(1.0 - lambda as f64).add(weighted);
            scores = blended.mul_scalar(tau);
        }
        let weights = softmax(scores.add(omega.clone().unsqueeze::<4>()), 3);
        let [tau, lambda] = self.rcs_weights;
        let weights = weights.mul_scalar(1.0 - lambda as f64).add(rcs.clone().mul_scalar(lambda)).mul_scalar(tau);
        attn.mix(weights, v)
    }

    /// Each patch's most frequent name in the first segmentation (`create_patch_matrix`):
    /// pixels under `temp_threshold` count as name 0; ties go to the lower name. The pixels
    /// past the last whole patch are left out, as `unfold` leaves them.
    /// `[b, k, H, W] -> [b, gh * gw]`
    fn patch_names(&self, probabilities: Tensor<4>, (gh, gw): (usize, usize), patch: usize) -> Tensor<2, Int> {
        let [b, k, _, _] = probabilities.dims();
        let (h, w) = (gh * patch, gw * patch);
        let probabilities = probabilities.slice([0..b, 0..k, 0..h, 0..w]);
        let (top, best) = probabilities.max_dim_with_indices(1); // [b, 1, h, w]
        let under = top.lower_elem(self.temp_threshold);
        let best = best.mask_fill(under, 0);
        let device = best.device();
        let names = Tensor::<1, Int>::arange(0..k as i64, &device).reshape([1, k, 1, 1]);
        let one_hot = best.expand([b, k, h, w]).equal(names.expand([b, k, h, w])).float();
        let counts = one_hot.reshape([b * k * gh, patch, gw, patch]).sum_dim(3).sum_dim(1).reshape([b, k, gh * gw]);
        // The most frequent, the lower name on a tie: counts are whole numbers.
        let order = Tensor::<1, Int>::arange(0..k as i64, &device).float().reshape([1, k, 1]);
        let ranked = counts.mul_scalar((k + 1) as f64).sub(order);
        ranked.argmax(1).reshape([b, gh * gw])
    }

    /// The semantic feedback (`generate_attention_sfr`, then `attn_sfr / max`, rounded to
    /// half precision) from each patch's name: `[b, n] -> [b, 1 + n, 1 + n]`.
    fn feedback(&self, names: Tensor<2, Int>, (gh, gw): (usize, usize)) -> Tensor<3> {
        let [b, n] = names.dims();
        let device = names.device();
        let rows = names.clone().reshape([b, n, 1]).expand([b, n, n]);
        let cols = names.clone().reshape([b, 1, n]).expand([b, n, n]);
        let mut same = rows.clone().equal(cols).float();
        if self.delete_same_entity {
            let paths = Paths::new(gh, gw);
            let mut broken = same.zeros_like();
            for step in &paths.positions {
                let at = Tensor::<1, Int>::from_data(TensorData::new(step.clone(), [n * n]), &device);
                let along = names.clone().gather(1, at.reshape([1, n * n]).expand([b, n * n])).reshape([b, n, n]);
                broken = broken.add(along.not_equal(rows.clone()).float());
            }
            let decay = Tensor::<2>::from_data(TensorData::new(paths.decay, [n, n]), &device).unsqueeze::<3>();
            let kept = broken.clone().equal_elem(0.0).float();
            // Where the path holds: as it is; elsewhere decayed.
            same = same.clone().mul(kept.clone()).add(same.mul(decay).mul(kept.neg().add_scalar(1.0)));
        }
        let blur = Tensor::<2>::from_data(TensorData::new(row_blur(n, self.sigma), [n, n]), &device);
        let blurred = same.matmul(blur.unsqueeze::<3>()).clamp_min(0.0);
        let normalised = blurred.clone().div(blurred.sum_dim(2).add_scalar(1e-8));
        let full = Tensor::<3>::zeros([b, n + 1, n + 1], &device).slice_assign([0..b, 1..n + 1, 1..n + 1], normalised);
        let max = full.clone().max_dim(2).max_dim(1); // [b, 1, 1]
        round_to_half(full.div(max))
    }

    /// `λ · feedback` as the authors' code computes it: a half-precision tensor times a number
    /// is half precision again.
    fn weighted_feedback(&self, feedback: Tensor<3>) -> Tensor<3> {
        round_to_half(feedback.mul_scalar(self.sfr_weights[1]))
    }
}

/// `x` (in [0, 1]) rounded to the nearest half-precision value, in f32: 11 significant bits
/// by Veltkamp's split, and below half precision's smallest normal (2^-14) its fixed step of
/// 2^-24 (what `x + 0.5` in f32 keeps).
fn round_to_half(x: Tensor<3>) -> Tensor<3> {
    let c = x.clone().mul_scalar(8193.0);
    let normal = c.clone().sub(c.sub(x.clone()));
    let subnormal = x.clone().add_scalar(0.5).sub_scalar(0.5);
    let small = x.lower_elem(2f32.powi(-14));
    normal.mask_where(small, subnormal)
}

/// The straight paths between every two patches of a `gh x gw` grid, as `check_path` walks
/// them, and each pair's decay.
struct Paths {
    /// For each step `s` in `1..=max_steps`: the patch at that step of the path from `i` to
    /// `j`, at `[i * n + j]` (the start itself past the pair's own distance).
    positions: Vec<Vec<i32>>,
    /// `exp(-steps / max_steps)` at `[i * n + j]`.
    decay: Vec<f32>,
}

impl Paths {
    fn new(gh: usize, gw: usize) -> Self {
        let n = gh * gw;
        let at = |p: usize| ((p / gw) as i64, (p % gw) as i64);
        let distance = |i: usize, j: usize| {
            let ((ay, ax), (by, bx)) = (at(i), at(j));
            (ay - by).abs().max((ax - bx).abs())
        };
        let max_steps = gh.max(gw).saturating_sub(1) as i64;
        let t = linspace(max_steps as usize + 1);
        let mut positions = vec![vec![0i32; n * n]; max_steps as usize];
        let mut decay = vec![1f32; n * n];
        for i in 0..n {
            let (sy, sx) = at(i);
            for j in 0..n {
                let (ey, ex) = at(j);
                let steps = distance(i, j);
                if max_steps > 0 {
                    decay[i * n + j] = (-(steps as f32) / max_steps as f32).exp();
                }
                for (s, row) in positions.iter_mut().enumerate() {
                    let s = s + 1;
                    row[i * n + j] = if s as i64 <= steps {
                        let t = t[s];
                        let coord = |a: i64, b: i64| (a as f32 * (1.0 - t) + b as f32 * t).round_ties_even() as i64;
                        (coord(sy, ey) * gw as i64 + coord(sx, ex)) as i32
                    } else {
                        i as i32
                    };
                }
            }
        }
        Paths { positions, decay }
    }
}

/// `torch.linspace(0, 1, steps)` in f32 by its scalar formula: `step * i` in the first half,
/// `1 - step * (steps - i - 1)` in the second.
fn linspace(steps: usize) -> Vec<f32> {
    if steps < 2 {
        return vec![0.0; steps];
    }
    let step = 1f32 / (steps - 1) as f32;
    let half = steps / 2;
    (0..steps).map(|i| if i < half { 0.0 + step * i as f32 } else { 1.0 - step * (steps - i - 1) as f32 }).collect()
}

/// The authors' blur of each row as a matrix: `rows @ B` is `conv1d(rows, g, padding=ks // 2)`
/// with `g` a normalised Gaussian of σ `sigma` over `ks = min(n, int(6σ + 1))` taps (made odd).
fn row_blur(n: usize, sigma: f64) -> Vec<f32> {
    let mut size = n.min((6.0 * sigma + 1.0) as usize);
    if size.is_multiple_of(2) {
        size += 1;
    }
    let half = size / 2;
    let two_var = (2.0 * sigma * sigma) as f32;
    let raw: Vec<f32> = (0..size).map(|t| (-(((t as i64 - half as i64).pow(2)) as f32) / two_var).exp()).collect();
    let total: f32 = raw.iter().sum();
    let taps: Vec<f32> = raw.iter().map(|g| g / total).collect();
    let mut matrix = vec![0f32; n * n];
    for j in 0..n {
        for m in 0..n {
            let t = j as i64 - m as i64 + half as i64;
            if (0..size as i64).contains(&t) {
                matrix[j * n + m] = taps[t as usize];
            }
        }
    }
    matrix
}
