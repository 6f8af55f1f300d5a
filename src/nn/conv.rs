//! PyTorch's `nn.Conv2d` and `nn.ConvTranspose2d`, and the channels-first layer norm of SAM
//! and ConvNeXt (`LayerNorm2d`: each pixel's channels normalised).

use burn::tensor::Tensor;
use burn::tensor::module::{conv_transpose2d, conv2d};
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};

use super::LayerNorm;
use crate::loader::Scope;

/// `nn.Conv2d(c_in, c_out, kernel, stride, padding)`: weight `[c_out, c_in, k, k]`.
#[derive(Debug, Clone)]
pub struct Conv2d {
    pub weight: Tensor<4>,
    pub bias: Option<Tensor<1>>,
    pub stride: usize,
    pub padding: usize,
}

impl Conv2d {
    /// `weight` (and `bias`).
    pub fn load(
        mut p: Scope,
        c_in: usize,
        c_out: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        bias: bool,
    ) -> Self {
        Conv2d {
            weight: p.tensor("weight", [c_out, c_in, kernel, kernel]),
            bias: bias.then(|| p.tensor("bias", [c_out])),
            stride,
            padding,
        }
    }

    /// `[b, c_in, h, w] -> [b, c_out, h', w']`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let (s, p) = (self.stride, self.padding);
        conv2d(x, self.weight.clone(), self.bias.clone(), ConvOptions::new([s, s], [p, p], [1, 1], 1))
    }
}

/// `nn.ConvTranspose2d(c_in, c_out, kernel_size=k, stride=k)`: weight `[c_in, c_out, k, k]`; each
/// pixel becomes a `k x k` block.
#[derive(Debug, Clone)]
pub struct ConvTranspose2d {
    pub weight: Tensor<4>,
    pub bias: Tensor<1>,
    pub stride: usize,
}

impl ConvTranspose2d {
    pub fn load(mut p: Scope, c_in: usize, c_out: usize, k: usize) -> Self {
        ConvTranspose2d { weight: p.tensor("weight", [c_in, c_out, k, k]), bias: p.tensor("bias", [c_out]), stride: k }
    }

    /// `[b, c_in, h, w] -> [b, c_out, k h, k w]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let s = self.stride;
        let options = ConvTransposeOptions::new([s, s], [0, 0], [0, 0], [1, 1], 1);
        conv_transpose2d(x, self.weight.clone(), Some(self.bias.clone()), options)
    }
}

/// Layer norm over the channels of `[b, c, h, w]` maps.
#[derive(Debug, Clone)]
pub struct LayerNorm2d(pub LayerNorm);

impl LayerNorm2d {
    pub fn load(p: Scope, channels: usize, eps: f64) -> Self {
        LayerNorm2d(LayerNorm::load(p, channels, eps))
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.0.forward(x.permute([0, 2, 3, 1])).permute([0, 3, 1, 2])
    }
}
