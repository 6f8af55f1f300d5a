//! PyTorch's `nn.Linear` and `nn.LayerNorm`, named after their checkpoint keys.

use burn::tensor::module::layer_norm;
use burn::tensor::{Device, Tensor, TensorData};

#[cfg(feature = "wgpu")]
use super::kernels::gpu;
use super::kernels::packed::PackedWeight;
use super::kernels::{Kernel, gpu_suits};
use crate::loader::Scope;

/// How a [`Linear`] multiplies, chosen when it is built.
#[derive(Debug, Clone)]
pub enum LinearKernel {
    /// The host product against the weight and bias packed at load (the CPU backend in the web
    /// build, and natively with AVX-512); the layer's `weight` is then a one-element stand-in of
    /// the same shape and its `bias` empty.
    Packed(PackedWeight),
    /// The GPU kernels' product (an `[in, out]` weight on the GPU backend, of widths that suit
    /// them), where the rows of the input do too.
    Gpu,
    /// burn's product: the CPU backend without packing, other backends, layers that train.
    Burn,
}

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
    pub kernel: LinearKernel,
}

impl Linear {
    /// `weight` `[d_out, d_in]` (and `bias` `[d_out]`), held `[d_in, d_out]`.
    pub fn load(p: Scope, d_in: usize, d_out: usize, bias: bool) -> Self {
        Self::load_shaped(p, [d_out, d_in], bias)
    }

    /// A weight stored with more axes, `[d_out, ...]` (a convolution over whole patches), read
    /// as `[d_out, d_in]` with `d_in` the product of the others. Where the loader packs weights
    /// and the device is the CPU backend, packed for the host product; on the GPU backend, the
    /// GPU kernels' product where the widths suit it; burn's product otherwise.
    pub fn load_shaped<const D: usize>(mut p: Scope, stored: [usize; D], bias: bool) -> Self {
        let (d_out, d_in) = (stored[0], stored[1..].iter().product::<usize>());
        if p.packs_linear() && Kernel::on(p.device()) == Kernel::Host {
            // An int8 weight stays int8 in its panels (the product dequantises a slice at a time).
            let q8 = if p.quantized("weight") { p.host_q8("weight", &stored) } else { None };
            let weight = match &q8 {
                Some(_) => Vec::new(),
                None if p.quantized("weight") => vec![0.0; d_out * d_in],
                None => p.host("weight", &stored).unwrap_or_else(|| vec![0.0; d_out * d_in]),
            };
            let bias_values = bias.then(|| p.host("bias", &[d_out]).unwrap_or_else(|| vec![0.0; d_out]));
            let packed = match q8 {
                Some((values, scales)) => PackedWeight::from_q8_out_in(&values, &scales, d_out, d_in, bias_values),
                None => PackedWeight::from_out_in(&weight, d_out, d_in, bias_values),
            };
            p.hold(packed.held());
            let weight = Tensor::<2>::zeros([1, 1], p.device()).expand([d_in, d_out]);
            return Linear { weight, bias: None, transposed: true, kernel: LinearKernel::Packed(packed) };
        }
        let weight = p.tensor_transposed("weight", stored);
        let bias = bias.then(|| p.tensor("bias", [d_out]));
        let kernel = if gpu_suits(p.device(), &[d_in, d_out]) { LinearKernel::Gpu } else { LinearKernel::Burn };
        Linear { weight, bias, transposed: true, kernel }
    }

    /// A layer that holds PyTorch's `[out, in]` weight as given and runs burn's product: a layer
    /// that trains (its gradients and checkpoints keep that layout).
    pub fn out_in(weight: Tensor<2>, bias: Option<Tensor<1>>) -> Self {
        Linear { weight, bias, transposed: false, kernel: LinearKernel::Burn }
    }

    /// The packed weight, where the layer multiplies on the host.
    pub fn packed(&self) -> Option<&PackedWeight> {
        match &self.kernel {
            LinearKernel::Packed(packed) => Some(packed),
            _ => None,
        }
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
        let y = match &self.kernel {
            LinearKernel::Packed(packed) => {
                let device = x.device();
                dims[D - 1] = self.d_out();
                return host_tensor(packed.matmul(&host_values(x), rows), dims, &device);
            }
            #[cfg(feature = "wgpu")]
            LinearKernel::Gpu if gpu::rows_fit(rows) => {
                gpu::linear(x.reshape([rows, d_in]), self.weight.clone(), self.bias.clone(), None, false)
            }
            _ => burn::tensor::module::linear(x.reshape([rows, d_in]), self.weight_in_out(), self.bias.clone()),
        };
        dims[D - 1] = y.dims()[1];
        y.reshape(dims)
    }
}

/// A CPU-backend tensor's values, row-major. The backend reads back at once; its tensors are
/// f32, so the conversion is a no-op.
pub(super) fn host_values<const D: usize>(x: Tensor<D>) -> Vec<f32> {
    let len = x.shape().num_elements();
    x.into_data().convert::<f32>().try_into_vec::<f32>().unwrap_or_else(|_| vec![0.0; len])
}

/// Row-major host values as a tensor of `dims` on `device` (the way back of [`host_values`]).
pub(super) fn host_tensor<const D: usize>(values: Vec<f32>, dims: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values, dims), device)
}

/// PyTorch `nn.LayerNorm` over the last axis.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    pub weight: Tensor<1>,
    pub bias: Tensor<1>,
    pub eps: f64,
    /// [`Kernel::Gpu`] on the GPU backend where the width suits its kernel; [`Kernel::Burn`]
    /// (burn's layer norm) otherwise.
    pub kernel: Kernel,
}

impl LayerNorm {
    /// A layer norm over `weight` and `bias` `[dim]`, on the kernel their device has.
    pub fn new(weight: Tensor<1>, bias: Tensor<1>, eps: f64) -> Self {
        let kernel = if gpu_suits(&weight.device(), &weight.dims()) { Kernel::Gpu } else { Kernel::Burn };
        LayerNorm { weight, bias, eps, kernel }
    }

    /// `weight` and `bias` `[dim]`.
    pub fn load(mut p: Scope, dim: usize, eps: f64) -> Self {
        let weight = p.tensor("weight", [dim]);
        Self::new(weight, p.tensor("bias", [dim]), eps)
    }

    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        // A layer that trains has its parameters swapped for tracked ones during a step
        // (`train::optim::Track`), and the kernel has no backward pass: whether this call
        // records its graph is known only now.
        #[cfg(feature = "wgpu")]
        if self.kernel == Kernel::Gpu
            && gpu::rows_fit(x.shape().num_elements() / x.dims()[D - 1].max(1))
            && !x.device().is_autodiff()
            && !self.weight.device().is_autodiff()
        {
            return gpu::layer_norm(x, self.weight.clone(), self.bias.clone(), self.eps);
        }
        layer_norm(x, self.weight.clone(), Some(self.bias.clone()), self.eps)
    }
}

#[cfg(all(test, feature = "cpu"))]
mod tests {
    use burn::tensor::{Device, Distribution, Tensor};

    use super::Linear;
    use crate::loader::WeightLoader;

    /// The packed host product gives what the backend's product gives, on a 3-D input.
    #[test]
    fn packed_and_plain_layers_agree() {
        let device = Device::flex();
        let load = |pack| Linear::load(WeightLoader::random(&device).with_packed_linear(pack).pp("fc"), 40, 21, true);
        let (plain, packed) = (load(false), load(true));
        assert!(plain.packed().is_none() && packed.packed().is_some());
        assert_eq!(packed.d_out(), 21);
        let x = Tensor::<3>::random([2, 5, 40], Distribution::Normal(0.0, 1.0), &device);
        let got = packed.forward(x.clone());
        assert_eq!(got.dims(), [2, 5, 21]);
        crate::nn::assert_host_agrees(got, plain.forward(x), "linear");
    }
}
