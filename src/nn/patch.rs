//! Patch embedding: a stride-`p` convolution over non-overlapping `p x p` patches, computed as
//! a matmul over the flattened patches.

use burn::tensor::Tensor;

use super::Linear;
use crate::error::{Error, Result};
use crate::loader::Scope;

/// Non-overlapping `p x p` patches, flattened channel-major as a stride-`p` convolution's
/// weight is: `[b, c, H, W] -> ([b, gh*gw, c*p*p], (gh, gw))`. Rows and columns past the last
/// whole patch are dropped, as the convolution drops them.
pub fn patchify(pixels: Tensor<4>, p: usize) -> Result<(Tensor<3>, (usize, usize))> {
    let [b, c, h, w] = pixels.dims();
    let (gh, gw) = (h / p, w / p);
    if gh == 0 || gw == 0 {
        return Err(Error::invalid(format!("image of {w}x{h} pixels is smaller than one {p}x{p} patch")));
    }
    let patches = pixels
        .slice([0..b, 0..c, 0..gh * p, 0..gw * p])
        .reshape([b, c, gh, p, gw, p])
        .permute([0, 2, 4, 1, 3, 5])
        .reshape([b, gh * gw, c * p * p]);
    Ok((patches, (gh, gw)))
}

/// `nn.Conv2d(c, width, kernel_size=p, stride=p)`: a linear layer over the flattened patches,
/// its weight `[width, c, p, p]` read as `[width, c*p*p]` (held as [`Linear`] holds it).
#[derive(Debug, Clone)]
pub struct PatchEmbedding {
    pub proj: Linear,
    pub patch_size: usize,
}

impl PatchEmbedding {
    /// `weight` `[width, channels, p, p]` (and `bias` `[width]`).
    pub fn load(scope: Scope, width: usize, channels: usize, p: usize, bias: bool) -> Self {
        PatchEmbedding { proj: Linear::load_shaped(scope, [width, channels, p, p], bias), patch_size: p }
    }

    /// `[b, c, H, W] -> ([b, gh*gw, width], (gh, gw))`
    pub fn forward(&self, pixels: Tensor<4>) -> Result<(Tensor<3>, (usize, usize))> {
        let (patches, grid) = patchify(pixels, self.patch_size)?;
        Ok((self.proj.forward(patches), grid))
    }

    pub fn width(&self) -> usize {
        self.proj.d_out()
    }
}
