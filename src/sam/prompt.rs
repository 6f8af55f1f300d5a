//! SAM's prompt encoder (transformers `SamPromptEncoder`, `SamPositionalEmbedding`,
//! `SamMaskEmbedding`): points and box corners become random-Fourier position features plus a
//! learned embedding of their kind (positive, negative, padding, top-left or bottom-right
//! corner), a mask prompt becomes a dense map through a small convolution stack, and without one
//! every position gets `no_mask_embed`.
//!
//! The sparse embeddings are computed on the host: they are a handful of vectors, and
//! `sin`/`cos` of the large Fourier arguments must match PyTorch's, which a GPU's fast `sin`
//! does not promise.

use burn::tensor::{Device, Tensor, TensorData};

use super::config::SamPromptEncoderConfig;
use crate::error::{Error, Result};
use crate::loader::Scope;
use crate::nn::{Activation, Conv2d, LayerNorm2d, activate};

/// `SamPositionalEmbedding`: `[sin(2π (2c - 1) G), cos(2π (2c - 1) G)]` for coordinates `c` in
/// [0, 1] and a fixed Gaussian matrix `G` (`[2, feats]`).
#[derive(Debug, Clone)]
pub struct PositionalEmbedding {
    gaussian: Vec<f32>,
    feats: usize,
}

impl PositionalEmbedding {
    /// `positional_embedding`, `[2, feats]`.
    pub fn load(mut p: Scope, feats: usize) -> Self {
        let gaussian = p.host_kept("positional_embedding", &[2, feats]).unwrap_or_else(|| vec![0.0; 2 * feats]);
        PositionalEmbedding { gaussian, feats }
    }

    /// Features of one point already mapped to [-1, 1] (`2c - 1`). `-> [2 feats]`
    fn features(&self, x: f32, y: f32) -> Vec<f32> {
        // As PyTorch computes `c @ G` for a 2-long inner axis (two rounded products, added, no
        // fused multiply-add: the arguments reach hundreds of radians, where one ulp shows),
        // then `2π *` in f32.
        let turns: Vec<f32> = (0..self.feats)
            .map(|f| (x * self.gaussian[f] + y * self.gaussian[self.feats + f]) * std::f32::consts::TAU)
            .collect();
        let sin = turns.iter().map(|&a| (a as f64).sin() as f32);
        let cos = turns.iter().map(|&a| (a as f64).cos() as f32);
        sin.chain(cos).collect()
    }

    /// A point in pixels of the model's `size`-pixel input, shifted to the pixel's centre; the
    /// normalisation runs in f64 as transformers does on the processor's float64 coordinates.
    fn point(&self, x: f64, y: f64, size: usize) -> Vec<f32> {
        let unit = |v: f64| (2.0 * ((v + 0.5) / size as f64) - 1.0) as f32;
        self.features(unit(x), unit(y))
    }

    /// The dense position features of the `e x e` embedding grid (each cell's centre).
    /// `-> [1, 2 feats, e, e]`
    pub fn grid(&self, e: usize, device: &Device) -> Tensor<4> {
        let c = 2 * self.feats;
        let mut values = vec![0f32; c * e * e];
        for i in 0..e {
            for j in 0..e {
                let unit = |k: usize| 2.0 * ((k as f32 + 0.5) / e as f32) - 1.0;
                for (ch, v) in self.features(unit(j), unit(i)).into_iter().enumerate() {
                    values[(ch * e + i) * e + j] = v;
                }
            }
        }
        Tensor::from_data(TensorData::new(values, [1, c, e, e]), device)
    }
}

/// A point prompt in pixels of the model's input (float64, as the processor hands them to the
/// model): on the object (`positive`) or not.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub x: f64,
    pub y: f64,
    pub positive: bool,
}

/// `SamMaskEmbedding`: `[1, 1, 4e, 4e]` mask logits to `[1, hidden, e, e]`.
#[derive(Debug, Clone)]
pub struct MaskEmbedding {
    pub conv1: Conv2d,
    pub layer_norm1: LayerNorm2d,
    pub conv2: Conv2d,
    pub layer_norm2: LayerNorm2d,
    pub conv3: Conv2d,
    pub act: Activation,
}

impl MaskEmbedding {
    fn load(mut p: Scope, cfg: &SamPromptEncoderConfig) -> Self {
        let (c, quarter, eps) = (cfg.mask_input_channels, cfg.mask_input_channels / 4, cfg.layer_norm_eps);
        MaskEmbedding {
            conv1: Conv2d::load(p.pp("conv1"), 1, quarter, 2, 2, 0, true),
            layer_norm1: LayerNorm2d::load(p.pp("layer_norm1"), quarter, eps),
            conv2: Conv2d::load(p.pp("conv2"), quarter, c, 2, 2, 0, true),
            layer_norm2: LayerNorm2d::load(p.pp("layer_norm2"), c, eps),
            conv3: Conv2d::load(p.pp("conv3"), c, cfg.hidden_size, 1, 1, 0, true),
            act: cfg.hidden_act,
        }
    }

    pub fn forward(&self, mask: Tensor<4>) -> Tensor<4> {
        let x = activate(self.act, self.layer_norm1.forward(self.conv1.forward(mask)));
        let x = activate(self.act, self.layer_norm2.forward(self.conv2.forward(x)));
        self.conv3.forward(x)
    }
}

#[derive(Debug, Clone)]
pub struct PromptEncoder {
    /// `point_embed.{0..4}`: negative point, positive point, box top-left, box bottom-right.
    point_embed: Vec<Vec<f32>>,
    not_a_point_embed: Vec<f32>,
    pub no_mask_embed: Tensor<2>,
    pub mask_embed: MaskEmbedding,
    pub hidden: usize,
    /// Side of the model's square input, in pixels.
    pub input_size: usize,
    /// Side of the image embedding grid.
    pub embedding_size: usize,
}

impl PromptEncoder {
    /// `point_embed.*`, `not_a_point_embed`, `no_mask_embed`, `mask_embed.*`.
    pub fn load(mut p: Scope, cfg: &SamPromptEncoderConfig) -> Self {
        let h = cfg.hidden_size;
        let embedding = |mut p: Scope| p.host_kept("weight", &[1, h]).unwrap_or_else(|| vec![0.0; h]);
        let point_embed = (0..cfg.num_point_embeddings).map(|i| embedding(p.pp("point_embed").pp(i))).collect();
        let not_a_point_embed = embedding(p.pp("not_a_point_embed"));
        PromptEncoder {
            point_embed,
            not_a_point_embed,
            no_mask_embed: p.tensor("no_mask_embed.weight", [1, h]),
            mask_embed: MaskEmbedding::load(p.pp("mask_embed"), cfg),
            hidden: h,
            input_size: cfg.image_size,
            embedding_size: cfg.embedding_size(),
        }
    }

    /// The sparse embeddings of `points` and an optional `box` (x0, y0, x1, y1), in the order
    /// transformers gives them: the points (with one padding point when there is no box), then
    /// the box's two corners. `-> [1, n, hidden]`
    pub fn sparse(
        &self,
        positional: &PositionalEmbedding,
        points: &[Point],
        bbox: Option<[f64; 4]>,
        device: &Device,
    ) -> Result<Tensor<3>> {
        if points.is_empty() && bbox.is_none() {
            return Err(Error::invalid("a prompt needs at least one point or a box"));
        }
        let s = self.input_size;
        let mut rows: Vec<Vec<f32>> = Vec::new();
        for p in points {
            let kind = &self.point_embed[usize::from(p.positive)];
            rows.push(positional.point(p.x, p.y, s).iter().zip(kind).map(|(a, b)| a + b).collect());
        }
        if !points.is_empty() && bbox.is_none() {
            rows.push(self.not_a_point_embed.clone());
        }
        if let Some([x0, y0, x1, y1]) = bbox {
            for (corner, (x, y)) in [(x0, y0), (x1, y1)].into_iter().enumerate() {
                let kind = &self.point_embed[2 + corner];
                rows.push(positional.point(x, y, s).iter().zip(kind).map(|(a, b)| a + b).collect());
            }
        }
        let n = rows.len();
        Ok(Tensor::from_data(TensorData::new(rows.concat(), [1, n, self.hidden]), device))
    }

    /// The sparse embeddings of `points.len()` prompts of one point each (with its padding
    /// point), side by side: what automatic mask generation decodes in a batch.
    /// `-> [points, 2, hidden]`
    pub fn single_points(
        &self,
        positional: &PositionalEmbedding,
        points: &[Point],
        device: &Device,
    ) -> Result<Tensor<3>> {
        if points.is_empty() {
            return Err(Error::invalid("a batch of point prompts needs at least one point"));
        }
        let s = self.input_size;
        let mut values = Vec::with_capacity(points.len() * 2 * self.hidden);
        for p in points {
            let kind = &self.point_embed[usize::from(p.positive)];
            values.extend(positional.point(p.x, p.y, s).iter().zip(kind).map(|(a, b)| a + b));
            values.extend_from_slice(&self.not_a_point_embed);
        }
        Ok(Tensor::from_data(TensorData::new(values, [points.len(), 2, self.hidden]), device))
    }

    /// The dense embeddings: a mask prompt (`[1, 1, 4e, 4e]` logits) through the mask
    /// embedding, or `no_mask_embed` at every position. `-> [1, hidden, e, e]`
    pub fn dense(&self, mask: Option<Tensor<4>>) -> Result<Tensor<4>> {
        let e = self.embedding_size;
        match mask {
            Some(m) => {
                let dims = m.dims();
                if dims != [1, 1, 4 * e, 4 * e] {
                    return Err(Error::invalid(format!(
                        "a mask prompt must be 1 x 1 x {0} x {0} low-resolution logits, got {dims:?}",
                        4 * e
                    )));
                }
                Ok(self.mask_embed.forward(m))
            }
            None => Ok(self.no_mask_embed.clone().reshape([1, self.hidden, 1, 1]).expand([1, self.hidden, e, e])),
        }
    }
}
