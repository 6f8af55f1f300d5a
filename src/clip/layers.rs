//! The transformer pieces shared by both CLIP towers, named after their checkpoint keys
//! (transformers `modeling_clip.py`: `CLIPAttention`, `CLIPMLP`, `CLIPEncoderLayer`).

use burn::tensor::Tensor;
use burn::tensor::activation::{gelu, gelu_approximate, sigmoid, softmax};
use burn::tensor::module::layer_norm;

use super::config::Activation;
use crate::loader::WeightLoader;

/// PyTorch `nn.Linear`: weight `[out, in]`, optional bias `[out]`.
#[derive(Debug, Clone)]
pub struct Linear {
    pub weight: Tensor<2>,
    pub bias: Option<Tensor<1>>,
}

impl Linear {
    pub fn load(loader: &mut WeightLoader, prefix: &str, d_in: usize, d_out: usize, bias: bool) -> Self {
        let weight = loader.tensor(&format!("{prefix}.weight"), [d_out, d_in]);
        let bias = bias.then(|| loader.tensor(&format!("{prefix}.bias"), [d_out]));
        Linear { weight, bias }
    }

    /// `[..., in] -> [..., out]`
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        burn::tensor::module::linear(x, self.weight.clone().transpose(), self.bias.clone())
    }
}

/// PyTorch `nn.LayerNorm` over the last axis.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    pub weight: Tensor<1>,
    pub bias: Tensor<1>,
    pub eps: f64,
}

impl LayerNorm {
    pub fn load(loader: &mut WeightLoader, prefix: &str, dim: usize, eps: f64) -> Self {
        LayerNorm {
            weight: loader.tensor(&format!("{prefix}.weight"), [dim]),
            bias: loader.tensor(&format!("{prefix}.bias"), [dim]),
            eps,
        }
    }

    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        layer_norm(x, self.weight.clone(), Some(self.bias.clone()), self.eps)
    }
}

pub fn activate<const D: usize>(act: Activation, x: Tensor<D>) -> Tensor<D> {
    match act {
        // CLIP paper's approximation: x * sigmoid(1.702 x).
        Activation::QuickGelu => x.clone().mul(sigmoid(x.mul_scalar(1.702))),
        Activation::Gelu => gelu(x),
        Activation::GeluTanh => gelu_approximate(x),
    }
}

/// `CLIPMLP`: fc1 -> activation -> fc2.
#[derive(Debug, Clone)]
pub struct Mlp {
    pub fc1: Linear,
    pub fc2: Linear,
    pub act: Activation,
}

impl Mlp {
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.fc2.forward(activate(self.act, self.fc1.forward(x)))
    }
}

/// `CLIPAttention`: multi-head self-attention with separate q/k/v projections.
#[derive(Debug, Clone)]
pub struct Attention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub out_proj: Linear,
    pub num_heads: usize,
}

impl Attention {
    /// `[b, n, d] -> [b, heads, n, d / heads]`
    pub fn split_heads(&self, x: Tensor<3>) -> Tensor<4> {
        let [b, n, d] = x.dims();
        x.reshape([b, n, self.num_heads, d / self.num_heads]).swap_dims(1, 2)
    }

    /// `[b, heads, n, hd] -> [b, n, heads * hd]`
    pub fn merge_heads(x: Tensor<4>) -> Tensor<3> {
        let [b, h, n, hd] = x.dims();
        x.swap_dims(1, 2).reshape([b, n, h * hd])
    }

    /// Queries, keys and values, each `[b, heads, n, hd]`.
    pub fn qkv(&self, x: Tensor<3>) -> (Tensor<4>, Tensor<4>, Tensor<4>) {
        (
            self.split_heads(self.q_proj.forward(x.clone())),
            self.split_heads(self.k_proj.forward(x.clone())),
            self.split_heads(self.v_proj.forward(x)),
        )
    }

    /// `softmax(a·bᵀ·scale + mask) · v`, heads merged: the attention core that the dense
    /// variants reuse with other pairs than (q, k).
    pub fn attend(a: Tensor<4>, b: Tensor<4>, v: Tensor<4>, mask: Option<Tensor<2>>) -> Tensor<3> {
        let hd = a.dims()[3];
        let mut scores = a.matmul(b.swap_dims(2, 3)).mul_scalar((hd as f64).powf(-0.5));
        if let Some(mask) = mask {
            scores = scores.add(mask.unsqueeze::<4>());
        }
        Self::merge_heads(softmax(scores, 3).matmul(v))
    }

    /// `[b, n, d] -> [b, n, d]`; `mask` is added to the scores (`[n, n]`, 0 or very negative).
    pub fn forward(&self, x: Tensor<3>, mask: Option<Tensor<2>>) -> Tensor<3> {
        let (q, k, v) = self.qkv(x);
        self.out_proj.forward(Self::attend(q, k, v, mask))
    }
}

/// `CLIPEncoderLayer`: pre-norm attention and MLP, each with a residual.
#[derive(Debug, Clone)]
pub struct EncoderLayer {
    pub layer_norm1: LayerNorm,
    pub self_attn: Attention,
    pub layer_norm2: LayerNorm,
    pub mlp: Mlp,
}

/// Sizes shared by the layers of one tower.
#[derive(Debug, Clone, Copy)]
pub struct TowerDims {
    pub width: usize,
    pub intermediate: usize,
    pub heads: usize,
    pub eps: f64,
    pub act: Activation,
}

impl TowerDims {
    pub fn new(width: usize, intermediate: usize, heads: usize, eps: f64, act: Activation) -> Self {
        TowerDims { width, intermediate, heads, eps, act }
    }
}

impl EncoderLayer {
    pub fn load(loader: &mut WeightLoader, prefix: &str, dims: TowerDims) -> Self {
        let d = dims.width;
        let linear = |loader: &mut WeightLoader, name: &str, i: usize, o: usize| {
            Linear::load(loader, &format!("{prefix}.{name}"), i, o, true)
        };
        EncoderLayer {
            self_attn: Attention {
                k_proj: linear(loader, "self_attn.k_proj", d, d),
                v_proj: linear(loader, "self_attn.v_proj", d, d),
                q_proj: linear(loader, "self_attn.q_proj", d, d),
                out_proj: linear(loader, "self_attn.out_proj", d, d),
                num_heads: dims.heads,
            },
            layer_norm1: LayerNorm::load(loader, &format!("{prefix}.layer_norm1"), d, dims.eps),
            mlp: Mlp {
                fc1: linear(loader, "mlp.fc1", d, dims.intermediate),
                fc2: linear(loader, "mlp.fc2", dims.intermediate, d),
                act: dims.act,
            },
            layer_norm2: LayerNorm::load(loader, &format!("{prefix}.layer_norm2"), d, dims.eps),
        }
    }

    pub fn forward(&self, x: Tensor<3>, mask: Option<Tensor<2>>) -> Tensor<3> {
        let x = x.clone().add(self.self_attn.forward(self.layer_norm1.forward(x), mask));
        x.clone().add(self.mlp.forward(self.layer_norm2.forward(x)))
    }
}

/// Load `encoder.layers.{i}` for `i < count`.
pub fn load_layers(loader: &mut WeightLoader, prefix: &str, count: usize, dims: TowerDims) -> Vec<EncoderLayer> {
    (0..count).map(|i| EncoderLayer::load(loader, &format!("{prefix}.encoder.layers.{i}"), dims)).collect()
}

/// Divide each row by its L2 norm. `[n, d] -> [n, d]`
pub fn l2_normalize<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let norm = x.clone().powf_scalar(2.0).sum_dim(D - 1).sqrt().clamp_min(1e-12);
    x.div(norm)
}
