//! The last-block variants of training-free dense CLIP, each matching its reference code
//! (input: the hidden state before the last vision block, CLS included; output: tokens
//! before `post_layernorm`):
//!
//! | method | last block | reference |
//! | --- | --- | --- |
//! | `vanilla` | unchanged | transformers `CLIPEncoderLayer` |
//! | `maskclip` | `y = x + out_proj(v)`, then `y + mlp(ln_2 y)`: attention replaced by the value path | volgachen/MaskCLIP @ 245d31f8 (Chong Zhou's history), `mmseg/models/backbones/vit.py` |
//! | `sclip` | `x + out_proj((softmax(q qᵀ s) + softmax(k kᵀ s)) v)`, then the MLP with its residual | wangf3014/SCLIP @ b56bd301, `clip/model.py` `custom_attn(csa=True)` |
//! | `clearclip` | `out_proj(softmax(q qᵀ s) v)`; no residual, no MLP | mc-lan/ClearCLIP @ ad68a404, `open_clip/transformer.py` |
//! | `naclip` | `out_proj(softmax(k kᵀ s + ω) v)`, ω a Gaussian (σ = 5) over patch-grid distance, zero for CLS; no residual, no MLP | sinahmr/NACLIP @ 0cac3a65, `clip/model.py` |
//!
//! `s = head_dim^-0.5`; `q, k, v` come from `ln_1(x)` (`layer_norm1` in transformers).
//!
//! Two methods change more than the last block, and have their own modules: `scclip`
//! ([`super::scclip`]: outlier patches resolved, intermediate blocks' similarity in the last
//! attention and multi-level fusion) and `resclip` ([`super::resclip`]: NACLIP's last block
//! with intermediate blocks' attention mixed in and a first segmentation fed back).

use std::ops::Range;

use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::nn::{Attention, EncoderLayer};

/// NACLIP's neighbourhood standard deviation, in patches (`gaussian_std=5.`).
pub const NACLIP_SIGMA: f64 = 5.0;

/// How the last vision block is changed to keep patches local.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum), value(rename_all = "lower"))]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Unchanged CLIP (a baseline).
    Vanilla,
    /// Attention replaced by the value path.
    MaskClip,
    /// Correlative self-attention (q-q plus k-k).
    Sclip,
    /// q-q attention, no residual, no MLP.
    ClearClip,
    /// Neighbourhood attention: k-k plus a Gaussian over patch distance.
    #[default]
    Naclip,
    /// SC-CLIP: outlier patches resolved, intermediate similarity and multi-level fusion.
    ScClip,
    /// ResCLIP: NACLIP with intermediate attention (RCS) and semantic feedback (SFR).
    ResClip,
}

impl Method {
    /// Whether the method replaces only the last block ([`last_block`]).
    pub fn last_block_only(self) -> bool {
        !matches!(self, Method::ScClip | Method::ResClip)
    }
}

/// NACLIP's attention bias `[1 + gh*gw, 1 + gh*gw]`: `exp(-|p - q|² / 2σ²)` between patch
/// positions on the `gh x gw` grid (row-major), zero in the CLS row and column.
pub fn neighbourhood_bias(gh: usize, gw: usize, sigma: f64, device: &Device) -> Tensor<2> {
    neighbourhood_bias_rows(gh, gw, sigma, 0..gh * gw + 1, device)
}

/// The `rows` of [`neighbourhood_bias`]. `-> [rows.len(), 1 + gh*gw]`
pub fn neighbourhood_bias_rows(gh: usize, gw: usize, sigma: f64, rows: Range<usize>, device: &Device) -> Tensor<2> {
    let n = gh * gw + 1;
    let mut values = vec![0f32; rows.len() * n];
    for (row, p) in rows.clone().enumerate().filter_map(|(row, token)| Some((row, token.checked_sub(1)?))) {
        let (py, px) = ((p / gw) as f64, (p % gw) as f64);
        for q in 0..gh * gw {
            let (qy, qx) = ((q / gw) as f64, (q % gw) as f64);
            let d2 = (py - qy).powi(2) + (px - qx).powi(2);
            values[row * n + q + 1] = (-d2 / (2.0 * sigma * sigma)).exp() as f32;
        }
    }
    Tensor::from_data(TensorData::new(values, [rows.len(), n]), device)
}

/// Heads `heads` and tokens `rows` of `[b, h, n, hd]`.
fn part(t: &Tensor<4>, heads: Range<usize>, rows: Range<usize>) -> Tensor<4> {
    let [b, _, _, hd] = t.dims();
    t.clone().slice([0..b, heads, rows, 0..hd])
}

/// Run `method`'s version of `layer` on `x` (`[b, 1 + gh*gw, width]`).
/// `sigma`: NACLIP's neighbourhood width in patches ([`NACLIP_SIGMA`]); unused by the others.
/// SC-CLIP and ResCLIP, which need more than the last block's input, run NACLIP's block here.
pub fn last_block(method: Method, layer: &EncoderLayer, x: Tensor<3>, grid: (usize, usize), sigma: f64) -> Tensor<3> {
    let attn = &layer.self_attn;
    let (device, n) = (x.device(), x.dims()[1]);
    // Weights a block at a time where one GPU buffer could not hold them all (see
    // `Attention::mix_in_blocks`), counted in f32 whatever the precision.
    let budget = crate::device::buffer_budget(&device).map(|bytes| bytes / size_of::<f32>());
    match method {
        Method::Vanilla => layer.forward(x, None),
        Method::MaskClip => {
            let v = attn.v_proj.forward(layer.layer_norm1.forward(x.clone()));
            layer.feed_forward(x.add(attn.out_proj.forward(v)))
        }
        Method::Sclip => {
            let (q, k, v) = attn.qkv(layer.layer_norm1.forward(x.clone()));
            let mixed = attn.mix_in_blocks(v, n, budget, |hs, rows| {
                let (qs, ks) = (part(&q, hs.clone(), 0..n), part(&k, hs.clone(), 0..n));
                let (qr, kr) = (part(&q, hs.clone(), rows.clone()), part(&k, hs, rows));
                Attention::weights(qr, qs, None).add(Attention::weights(kr, ks, None))
            });
            layer.feed_forward(x.add(mixed))
        }
        Method::ClearClip => {
            let (q, _, v) = attn.qkv(layer.layer_norm1.forward(x));
            attn.mix_in_blocks(v, n, budget, |hs, rows| {
                Attention::weights(part(&q, hs.clone(), rows), part(&q, hs, 0..n), None)
            })
        }
        Method::Naclip | Method::ScClip | Method::ResClip => {
            let (_, k, v) = attn.qkv(layer.layer_norm1.forward(x));
            attn.mix_in_blocks(v, n, budget, |hs, rows| {
                let bias = neighbourhood_bias_rows(grid.0, grid.1, sigma, rows.clone(), &device);
                Attention::weights(part(&k, hs.clone(), rows), part(&k, hs, 0..n), Some(bias))
            })
        }
    }
}
