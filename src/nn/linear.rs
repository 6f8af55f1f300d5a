//! PyTorch's `nn.Linear` and `nn.LayerNorm`, named after their checkpoint keys.

use burn::tensor::Tensor;
use burn::tensor::module::layer_norm;

use crate::loader::WeightLoader;

/// PyTorch `nn.Linear`: weight `[out, in]` (or `[in, out]` when `transposed`), optional bias
/// `[out]`.
#[derive(Debug, Clone)]
pub struct Linear {
    pub weight: Tensor<2>,
    pub bias: Option<Tensor<1>>,
    /// The weight is held `[in, out]`, the way the product reads it: layers loaded for
    /// inference are transposed once on the host, so no backend multiplies by a strided view
    /// (WebGPU's matrix kernels read a row-major operand faster). Layers that train keep
    /// PyTorch's `[out, in]`, the layout their checkpoints store.
    pub transposed: bool,
}

impl Linear {
    /// `{prefix}.weight` `[d_out, d_in]` (and `{prefix}.bias` `[d_out]`), held `[d_in, d_out]`.
    pub fn load(loader: &mut WeightLoader, prefix: &str, d_in: usize, d_out: usize, bias: bool) -> Self {
        let weight = loader.tensor_transposed(&format!("{prefix}.weight"), [d_out, d_in]);
        let bias = bias.then(|| loader.tensor(&format!("{prefix}.bias"), [d_out]));
        Linear { weight, bias, transposed: true }
    }

    /// Output width.
    pub fn d_out(&self) -> usize {
        self.weight.dims()[if self.transposed { 1 } else { 0 }]
    }

    /// The weight as the product reads it, `[in, out]`.
    fn weight_in_out(&self) -> Tensor<2> {
        if self.transposed { self.weight.clone() } else { self.weight.clone().transpose() }
    }

    /// `[..., in] -> [..., out]`
    ///
    /// The product runs on rows `[n, in]`: giving a strided weight a leading batch axis (as a
    /// 3-D input would) makes the backends copy the whole weight on every call.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let mut dims = x.dims();
        let d_in = dims[D - 1];
        let rows = dims[..D - 1].iter().product::<usize>();
        let y = burn::tensor::module::linear(x.reshape([rows, d_in]), self.weight_in_out(), self.bias.clone());
        dims[D - 1] = y.dims()[1];
        y.reshape(dims)
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
