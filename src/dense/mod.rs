//! Training-free dense CLIP: one embedding per patch from a frozen CLIP by replacing the last
//! vision block, then the segmentation pipeline around it.
//!
//! Last-block variants, each matching its reference code (input: the hidden state before the
//! last block, CLS included; output: tokens before `post_layernorm`):
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

pub mod pamr;
pub mod pipeline;
pub mod result;
pub mod templates;
pub mod windows;

use std::fmt;
use std::str::FromStr;

use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor, TensorData};

use crate::clip::layers::{Attention, EncoderLayer};
use crate::error::{Error, Result};

/// NACLIP's neighbourhood standard deviation, in patches (`gaussian_std=5.`).
pub const NACLIP_SIGMA: f64 = 5.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    Vanilla,
    MaskClip,
    Sclip,
    ClearClip,
    #[default]
    Naclip,
}

impl Method {
    pub const ALL: [Method; 5] = [Method::Vanilla, Method::MaskClip, Method::Sclip, Method::ClearClip, Method::Naclip];
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Method::Vanilla => "vanilla",
            Method::MaskClip => "maskclip",
            Method::Sclip => "sclip",
            Method::ClearClip => "clearclip",
            Method::Naclip => "naclip",
        })
    }
}

impl FromStr for Method {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Method::ALL.into_iter().find(|m| m.to_string() == s).ok_or_else(|| {
            Error::invalid(format!("method must be one of vanilla, maskclip, sclip, clearclip, naclip; got {s}"))
        })
    }
}

/// NACLIP's attention bias `[1 + gh*gw, 1 + gh*gw]`: `exp(-|p - q|² / 2σ²)` between patch
/// positions on the `gh x gw` grid (row-major), zero in the CLS row and column.
pub fn neighbourhood_bias(gh: usize, gw: usize, sigma: f64, device: &Device) -> Tensor<2> {
    let n = gh * gw + 1;
    let mut values = vec![0f32; n * n];
    for p in 0..gh * gw {
        let (py, px) = ((p / gw) as f64, (p % gw) as f64);
        for q in 0..gh * gw {
            let (qy, qx) = ((q / gw) as f64, (q % gw) as f64);
            let d2 = (py - qy).powi(2) + (px - qx).powi(2);
            values[(p + 1) * n + q + 1] = (-d2 / (2.0 * sigma * sigma)).exp() as f32;
        }
    }
    Tensor::from_data(TensorData::new(values, [n, n]), device)
}

/// `softmax(a bᵀ s + bias)` per head. `[b, h, n, hd] x 2 -> [b, h, n, n]`
fn attention_weights(a: Tensor<4>, b: Tensor<4>, bias: Option<Tensor<2>>) -> Tensor<4> {
    let hd = a.dims()[3];
    let mut scores = a.matmul(b.swap_dims(2, 3)).mul_scalar((hd as f64).powf(-0.5));
    if let Some(bias) = bias {
        scores = scores.add(bias.unsqueeze::<4>());
    }
    softmax(scores, 3)
}

/// Run `method`'s version of `layer` on `x` (`[b, 1 + gh*gw, width]`).
/// `sigma`: NACLIP's neighbourhood width in patches ([`NACLIP_SIGMA`]); unused by the others.
pub fn last_block(method: Method, layer: &EncoderLayer, x: Tensor<3>, grid: (usize, usize), sigma: f64) -> Tensor<3> {
    let attn = &layer.self_attn;
    let with_mlp = |y: Tensor<3>| y.clone().add(layer.mlp.forward(layer.layer_norm2.forward(y)));
    let mix = |weights: Tensor<4>, v: Tensor<4>| attn.out_proj.forward(Attention::merge_heads(weights.matmul(v)));
    match method {
        Method::Vanilla => layer.forward(x, None),
        Method::MaskClip => {
            let v = attn.v_proj.forward(layer.layer_norm1.forward(x.clone()));
            with_mlp(x.add(attn.out_proj.forward(v)))
        }
        Method::Sclip => {
            let (q, k, v) = attn.qkv(layer.layer_norm1.forward(x.clone()));
            let weights = attention_weights(q.clone(), q, None).add(attention_weights(k.clone(), k, None));
            with_mlp(x.add(mix(weights, v)))
        }
        Method::ClearClip => {
            let (q, _, v) = attn.qkv(layer.layer_norm1.forward(x));
            mix(attention_weights(q.clone(), q, None), v)
        }
        Method::Naclip => {
            let device = x.device();
            let (_, k, v) = attn.qkv(layer.layer_norm1.forward(x));
            let bias = neighbourhood_bias(grid.0, grid.1, sigma, &device);
            mix(attention_weights(k.clone(), k, Some(bias)), v)
        }
    }
}
