//! The layer kit every network is built from: PyTorch's `nn.Linear` and `nn.LayerNorm`,
//! multi-head attention with its projections exposed (the dense engine rewires them), the
//! pre-norm transformer block, patch embedding and position tables resampled for other input
//! sizes. Each layer is loaded by checkpoint key through [`crate::loader::WeightLoader`],
//! chooses when it is built which implementation it runs ([`Kernel`]: the host kernels, the GPU
//! kernels or burn's ops, under `kernels/`), and knows nothing of the network it serves.

mod attention;
mod bilinear;
mod conv;
mod embedding;
mod kernels;
mod linear;
mod patch;
mod positions;
mod rng;
mod transformer;

use burn::tensor::activation::{gelu, gelu_approximate, relu, sigmoid};
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Int, Tensor};
use kernels::host;
use serde::{Deserialize, Serialize};

pub use attention::Attention;
pub use bilinear::{BilinearGrid, Tap, bilinear_rows};
pub use conv::{Conv2d, ConvTranspose2d, LayerNorm2d};
pub use embedding::EmbeddingTable;
pub use kernels::Kernel;
pub use linear::{LayerNorm, Linear, LinearKernel};
pub use patch::{PatchEmbedding, patchify};
pub use positions::{PositionTable, Resampling, bicubic, resample};
pub use rng::Rng;
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
        Activation::QuickGelu => host::quick_gelu(x).unwrap_or_else(|x| x.clone().mul(sigmoid(x.mul_scalar(1.702)))),
        Activation::Gelu => gelu(x),
        Activation::GeluTanh => gelu_approximate(x),
        Activation::Relu => relu(x),
    }
}

/// Divide each row by its L2 norm (a zero row stays zero). `[..., d] -> [..., d]`
pub fn l2_normalize<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let norm = x.clone().powf_scalar(2.0).sum_dim(D - 1).sqrt().clamp_min(tiny(&x, 1e-12));
    x.div(norm)
}

/// A small positive `eps` guarding a division, raised to the smallest normal half-precision
/// value on a tensor in f16, where `eps` itself would round to 0 and `0 / eps` be NaN.
pub fn tiny<const D: usize>(x: &Tensor<D>, eps: f64) -> f64 {
    match x.dtype() {
        burn::tensor::DType::F16 => eps.max(f64::from(half::f16::MIN_POSITIVE)),
        _ => eps,
    }
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

/// [`resize_bilinear`] from operations that every backend can run backwards (the GPU backend
/// has no bilinear backward kernel), for training: an axis scaled by a whole factor `s` is `s`
/// weighted sums of the maps and their one-step shifts, interleaved (cheap, the output's size);
/// any other axis is a product with its interpolation matrix. Same taps and weights as torch.
pub fn resize_bilinear_trainable(x: Tensor<4>, h: usize, w: usize) -> Tensor<4> {
    let [_, _, xh, xw] = x.dims();
    let x = resize_axis(x, 3, xw, w);
    resize_axis(x, 2, xh, h)
}

fn resize_axis(x: Tensor<4>, dim: usize, input: usize, output: usize) -> Tensor<4> {
    if input == output {
        return x;
    }
    let device = x.device();
    let dims = x.dims();
    if output.is_multiple_of(input) {
        let s = output / input;
        let n = input;
        let cut = |t: &Tensor<4>, from: usize, to: usize| {
            let mut ranges = dims.map(|d| 0..d);
            ranges[dim] = from..to;
            t.clone().slice(ranges)
        };
        // x[i - 1] and x[i + 1], repeating the edge (torch's clamped source index).
        let prev = if n > 1 { Tensor::cat(vec![cut(&x, 0, 1), cut(&x, 0, n - 1)], dim) } else { x.clone() };
        let next = if n > 1 { Tensor::cat(vec![cut(&x, 1, n), cut(&x, n - 1, n)], dim) } else { x.clone() };
        let phases: Vec<Tensor<4>> = (0..s)
            .map(|j| {
                let offset = (j as f64 + 0.5) / s as f64 - 0.5;
                if offset < 0.0 {
                    x.clone().mul_scalar(1.0 + offset).add(prev.clone().mul_scalar(-offset))
                } else if offset > 0.0 {
                    x.clone().mul_scalar(1.0 - offset).add(next.clone().mul_scalar(offset))
                } else {
                    x.clone()
                }
            })
            .collect();
        let mut shape = dims;
        shape[dim] = output;
        return Tensor::stack::<5>(phases, dim + 1).reshape(shape);
    }
    let axis = bilinear::BilinearAxis::new(input, output);
    let mut m = vec![0f32; output * input];
    for dst in 0..output {
        m[dst * input + axis.lo[dst]] += 1.0 - axis.t[dst];
        m[dst * input + axis.hi[dst]] += axis.t[dst];
    }
    let m = Tensor::<2>::from_data(burn::tensor::TensorData::new(m, [output, input]), &device);
    match dim {
        3 => x.matmul(m.transpose().unsqueeze::<4>()),
        _ => m.unsqueeze::<4>().matmul(x),
    }
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

/// The host path's result `got` against the backend's `want`: the same shape, and every value
/// within `1e-5 * (1 + |want|)`; `what` names the case in a failure.
#[cfg(all(test, feature = "cpu"))]
fn assert_host_agrees<const D: usize>(got: Tensor<D>, want: Tensor<D>, what: &str) {
    assert_eq!(got.dims(), want.dims(), "{what}: shape");
    let (got, want) = (crate::nn::host_read(got).unwrap(), crate::nn::host_read(want).unwrap());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!((g - w).abs() <= 1e-5 * (1.0 + w.abs()), "{what} element {i}: host {g}, backend {w}");
    }
}

/// A tensor's values on the host, for the layers' unit tests.
#[cfg(test)]
pub(crate) fn host_read<const D: usize>(t: Tensor<D>) -> crate::error::Result<Vec<f32>> {
    crate::device::block_on(crate::device::read(t))
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Distribution, Tensor};

    use super::{resize_bilinear, resize_bilinear_trainable};

    #[test]
    fn trainable_resize_matches_torch_bilinear() {
        let device = crate::device::cpu().unwrap();
        // Whole-number factors (shifted copies) and others (the interpolation matrix), both axes.
        for (from, to) in [
            ((7, 7), (14, 14)),
            ((14, 14), (112, 112)),
            ((16, 16), (28, 28)),
            ((5, 9), (7, 20)),
            ((128, 56), (224, 224)),
        ] {
            let x = Tensor::<4>::random([2, 3, from.0, from.1], Distribution::Uniform(-1.0, 1.0), &device);
            let want = crate::nn::host_read(resize_bilinear(x.clone(), to.0, to.1)).unwrap();
            let ours = crate::nn::host_read(resize_bilinear_trainable(x, to.0, to.1)).unwrap();
            let worst = want.iter().zip(&ours).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            // Source coordinates and sums are rounded differently; a misplaced tap would be ~1e-1.
            assert!(worst < 1e-4, "{from:?} -> {to:?}: max difference {worst}");
        }
    }
}
