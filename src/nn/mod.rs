//! The layer kit every network is built from: PyTorch's `nn.Linear` and `nn.LayerNorm`,
//! multi-head attention with its projections exposed (the dense engine rewires them), the
//! pre-norm transformer block, patch embedding and position tables resampled for other input
//! sizes. Each layer is loaded by checkpoint key through [`crate::loader::WeightLoader`] and
//! knows nothing of the network it serves.

mod attention;
mod bilinear;
mod conv;
mod linear;
mod patch;
mod positions;
mod transformer;

use burn::tensor::activation::{gelu, gelu_approximate, relu, sigmoid};
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Int, Tensor};
use serde::{Deserialize, Serialize};

pub use attention::Attention;
pub use bilinear::{BilinearGrid, Tap, bilinear_matrix, bilinear_rows};
pub use conv::{Conv2d, ConvTranspose2d, LayerNorm2d};
pub use linear::{LayerNorm, Linear};
pub use patch::{PatchEmbedding, patchify};
pub use positions::{PositionTable, bicubic};
pub use transformer::{EncoderLayer, Mlp, TowerDims, load_layers};

/// Activation of the MLP blocks (`hidden_act` in a HF config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Activation {
    /// `x * sigmoid(1.702 x)`, the OpenAI checkpoints.
    #[serde(rename = "quick_gelu")]
    QuickGelu,
    /// Exact (erf) GELU, e.g. the LAION checkpoints.
    #[serde(rename = "gelu")]
    Gelu,
    /// tanh-approximated GELU.
    #[serde(alias = "gelu_new", alias = "gelu_pytorch_tanh", rename = "gelu_tanh")]
    GeluTanh,
    #[serde(rename = "relu")]
    Relu,
}

pub fn activate<const D: usize>(act: Activation, x: Tensor<D>) -> Tensor<D> {
    match act {
        // CLIP paper's approximation: x * sigmoid(1.702 x).
        Activation::QuickGelu => x.clone().mul(sigmoid(x.mul_scalar(1.702))),
        Activation::Gelu => gelu(x),
        Activation::GeluTanh => gelu_approximate(x),
        Activation::Relu => relu(x),
    }
}

/// Divide each row by its L2 norm. `[..., d] -> [..., d]`
pub fn l2_normalize<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let norm = x.clone().powf_scalar(2.0).sum_dim(D - 1).sqrt().clamp_min(1e-12);
    x.div(norm)
}

/// Bilinear resize of `[b, c, h, w]` maps to `h x w` (PyTorch's `F.interpolate(mode="bilinear",
/// align_corners=False)`); the maps themselves when they already have that size.
pub fn resize_bilinear(x: Tensor<4>, h: usize, w: usize) -> Tensor<4> {
    let [_, _, xh, xw] = x.dims();
    if (xh, xw) == (h, w) {
        return x;
    }
    interpolate(
        x,
        InterpolateOptions::new(InterpolateMode::Bilinear).with_align_corners(false).with_output_size([h, w]),
    )
}

/// [`resize_bilinear`] as two matrix products (`R_h · x · R_wᵀ`): the same weights, and a
/// backward pass on every backend (training; the GPU backend has no bilinear backward kernel).
pub fn resize_bilinear_matmul(x: Tensor<4>, h: usize, w: usize) -> Tensor<4> {
    let [_, _, xh, xw] = x.dims();
    if (xh, xw) == (h, w) {
        return x;
    }
    let device = x.device();
    let rows = Tensor::<2>::from_data(burn::tensor::TensorData::new(bilinear_matrix(xh, h), [h, xh]), &device);
    let cols = Tensor::<2>::from_data(burn::tensor::TensorData::new(bilinear_matrix(xw, w), [w, xw]), &device);
    rows.unsqueeze::<4>().matmul(x.matmul(cols.transpose().unsqueeze::<4>()))
}

/// One-hot of the argmax along `dim` (the first maximum, as PyTorch's `max`), as floats.
pub fn one_hot_max<const D: usize>(x: Tensor<D>, dim: usize) -> Tensor<D> {
    let dims = x.dims();
    let index = x.argmax(dim);
    let mut shape = [1usize; D];
    shape[dim] = dims[dim];
    let range = Tensor::<1, Int>::arange(0..dims[dim] as i64, &index.device()).reshape(shape).expand(dims);
    range.equal(index.expand(dims)).float()
}
