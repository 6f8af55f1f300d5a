//! The pre-norm transformer block of CLIP's towers (transformers `CLIPMLP`,
//! `CLIPEncoderLayer`), also used by GroupViT's stages.

use burn::tensor::Tensor;

#[cfg(feature = "wgpu")]
use super::kernels::gpu;
use super::kernels::{Kernel, gpu_suits, host, packed};
use super::linear::{host_tensor, host_values};
use super::{Activation, Attention, LayerNorm, Linear, LinearKernel, activate};
use crate::loader::Scope;

/// fc1 -> activation -> fc2.
#[derive(Debug, Clone)]
pub struct Mlp {
    pub fc1: Linear,
    pub fc2: Linear,
    pub act: Activation,
    /// [`Kernel::Packed`] where both layers are packed (the CPU backend in the web build, and
    /// natively with AVX-512) and the activation is quick GELU: all of it on the host, a band of
    /// rows at a time (`packed::mlp`). [`Kernel::Burn`] otherwise: the layers one after the
    /// other, each on its own kernel.
    pub kernel: Kernel,
}

impl Mlp {
    /// `fc1`, `act`, `fc2`, on the kernel they allow (see [`Mlp::kernel`]).
    pub fn new(fc1: Linear, fc2: Linear, act: Activation) -> Self {
        let packed = fc1.packed().is_some() && fc2.packed().is_some() && act == Activation::QuickGelu;
        Mlp { fc1, fc2, act, kernel: if packed { Kernel::Packed } else { Kernel::Burn } }
    }

    /// `fc1` (`d_in -> hidden`) and `fc2` (`hidden -> d_out`), with biases.
    pub fn load(p: Scope, d_in: usize, hidden: usize, d_out: usize, act: Activation) -> Self {
        Self::load_named(p, "fc1", "fc2", [d_in, hidden, d_out], act)
    }

    /// The two linear layers under other names (SAM's `lin1`, `lin2`); `dims` = in, hidden, out.
    pub fn load_named(mut p: Scope, fc1: &str, fc2: &str, dims: [usize; 3], act: Activation) -> Self {
        let [d_in, hidden, d_out] = dims;
        let fc1 = Linear::load(p.pp(fc1), d_in, hidden, true);
        Mlp::new(fc1, Linear::load(p.pp(fc2), hidden, d_out, true), act)
    }

    /// `[b, n, d_in] -> [b, n, d_out]`, on the host where the kernel is [`Kernel::Packed`].
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        if self.kernel == Kernel::Packed
            && let (Some(fc1), Some(fc2)) = (self.fc1.packed(), self.fc2.packed())
        {
            let ([b, n, _], device, d) = (x.dims(), x.device(), self.fc2.d_out());
            let out = packed::mlp(fc1, fc2, &host_values(x), b * n, host::quick_gelu_slice);
            return host_tensor(out, [b, n, d], &device);
        }
        // On a GPU whose buffers cannot hold the hidden activations of every token at once (a
        // one-pass dense segmentation of a large image), a band of tokens at a time.
        let [b, n, d_in] = x.dims();
        let hidden = self.fc1.d_out();
        if let Some(budget) = crate::device::buffer_budget(&x.device()).map(|bytes| bytes / size_of::<f32>())
            && b * n * hidden > budget
        {
            let rows = (budget / (b * hidden).max(1)).clamp(1, n);
            let bands = (0..n).step_by(rows).map(|r0| {
                let band = x.clone().slice([0..b, r0..(r0 + rows).min(n), 0..d_in]);
                self.fc2.forward(activate(self.act, self.fc1.forward(band)))
            });
            return Tensor::cat(bands.collect(), 1);
        }
        self.fc2.forward(activate(self.act, self.fc1.forward(x)))
    }
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

/// Pre-norm attention and MLP, each with a residual.
#[derive(Debug, Clone)]
pub struct EncoderLayer {
    pub layer_norm1: LayerNorm,
    pub self_attn: Attention,
    pub layer_norm2: LayerNorm,
    pub mlp: Mlp,
    /// [`Kernel::Packed`] where attention and MLP run on the host whole (CLIP's towers on the
    /// CPU backend, see `packed`): without a mask, the block on the host in one read and one
    /// upload (`packed::Block`). [`Kernel::Gpu`] on the GPU backend where the activation is
    /// quick GELU, every layer runs on the GPU kernels with a bias and the widths suit them:
    /// the block on its own kernels (`gpu`), nine dispatches. [`Kernel::Burn`] otherwise: the
    /// layers one after the other, each on its own kernel.
    pub kernel: Kernel,
}

impl EncoderLayer {
    /// The block's layers, on the kernel they allow (see [`EncoderLayer::kernel`]).
    pub fn new(layer_norm1: LayerNorm, self_attn: Attention, layer_norm2: LayerNorm, mlp: Mlp) -> Self {
        let mut layer = EncoderLayer { layer_norm1, self_attn, layer_norm2, mlp, kernel: Kernel::Burn };
        if layer.self_attn.kernel == Kernel::Packed && layer.mlp.kernel == Kernel::Packed {
            layer.kernel = Kernel::Packed;
        } else if layer.suits_gpu() {
            layer.kernel = Kernel::Gpu;
        }
        layer
    }

    /// `self_attn`, `layer_norm1`, `mlp`, `layer_norm2`.
    pub fn load(mut p: Scope, dims: TowerDims) -> Self {
        let d = dims.width;
        let self_attn = Attention::load(p.pp("self_attn"), d, dims.heads);
        let layer_norm1 = LayerNorm::load(p.pp("layer_norm1"), d, dims.eps);
        let mlp = Mlp::load(p.pp("mlp"), d, dims.intermediate, d, dims.act);
        let layer_norm2 = LayerNorm::load(p.pp("layer_norm2"), d, dims.eps);
        EncoderLayer::new(layer_norm1, self_attn, layer_norm2, mlp)
    }

    /// Whether the whole block runs on the GPU kernels (see [`EncoderLayer::kernel`]).
    fn suits_gpu(&self) -> bool {
        let (attn, mlp) = (&self.self_attn, &self.mlp);
        let linears = [&attn.q_proj, &attn.k_proj, &attn.v_proj, &attn.out_proj, &mlp.fc1, &mlp.fc2];
        let (heads, inner) = (attn.num_heads, attn.q_proj.d_out());
        let d = self.layer_norm1.weight.dims()[0];
        self.layer_norm1.kernel == Kernel::Gpu
            && self.layer_norm2.kernel == Kernel::Gpu
            && mlp.act == Activation::QuickGelu
            && linears.iter().all(|l| matches!(l.kernel, LinearKernel::Gpu) && l.bias.is_some())
            && heads > 0
            && inner % heads == 0
            && gpu_suits(&self.layer_norm1.weight.device(), &[d, inner / heads, mlp.fc1.d_out()])
    }

    /// The MLP half with its residual: `y + mlp(layer_norm2(y))`.
    pub fn feed_forward(&self, y: Tensor<3>) -> Tensor<3> {
        y.clone().add(self.mlp.forward(self.layer_norm2.forward(y)))
    }

    pub fn forward(&self, x: Tensor<3>, mask: Option<Tensor<2>>) -> Tensor<3> {
        let whole = match self.kernel {
            Kernel::Packed if mask.is_none() => self.forward_packed(&x),
            #[cfg(feature = "wgpu")]
            Kernel::Gpu => self.forward_gpu(&x, mask.as_ref()),
            _ => None,
        };
        if let Some(y) = whole {
            return y;
        }
        let x = x.clone().add(self.self_attn.forward(self.layer_norm1.forward(x), mask));
        self.feed_forward(x)
    }

    /// [`EncoderLayer::forward`] without a mask on [`Kernel::Packed`]: the whole block on the
    /// host, one read and one upload (`packed::Block`). `None` where a layer is not packed.
    fn forward_packed(&self, x: &Tensor<3>) -> Option<Tensor<3>> {
        let (attn, mlp) = (&self.self_attn, &self.mlp);
        let (Some(q), Some(k), Some(v), Some(out), Some(fc1), Some(fc2)) = (
            attn.q_proj.packed(),
            attn.k_proj.packed(),
            attn.v_proj.packed(),
            attn.out_proj.packed(),
            mlp.fc1.packed(),
            mlp.fc2.packed(),
        ) else {
            return None;
        };
        let host =
            |norm: &LayerNorm| (host_values(norm.weight.clone()), host_values(norm.bias.clone()), norm.eps as f32);
        let ((w1, b1, eps1), (w2, b2, eps2)) = (host(&self.layer_norm1), host(&self.layer_norm2));
        let block = packed::Block {
            norm1: packed::Norm { weight: &w1, bias: &b1, eps: eps1 },
            q,
            k,
            v,
            out,
            heads: attn.num_heads,
            norm2: packed::Norm { weight: &w2, bias: &b2, eps: eps2 },
            fc1,
            fc2,
        };
        let (dims, device) = (x.dims(), x.device());
        let mut values = host_values(x.clone());
        block.forward(&mut values, dims, host::quick_gelu_slice);
        Some(host_tensor(values, dims, &device))
    }
}

#[cfg(feature = "wgpu")]
impl EncoderLayer {
    /// [`EncoderLayer::forward`] on [`Kernel::Gpu`], where the input has rows and not too many
    /// for the kernels' dispatches, and a mask is `[n, n]`: the block on its own kernels
    /// (`gpu`), nine dispatches. `None` elsewhere.
    pub(super) fn forward_gpu(&self, x: &Tensor<3>, mask: Option<&Tensor<2>>) -> Option<Tensor<3>> {
        let (attn, mlp) = (&self.self_attn, &self.mlp);
        let [b, n, d] = x.dims();
        // The kernels hold every head's scores (f32, rows padded to whole vectors) and every
        // token's MLP activations in one buffer each: past the device's largest (a one-pass
        // dense segmentation of a large image), the layers one by one, in blocks.
        let held = (b * attn.num_heads * n * n.next_multiple_of(4)).max(b * n * mlp.fc1.d_out());
        let within = crate::device::largest_buffer(&x.device()).is_none_or(|bytes| held * size_of::<f32>() <= bytes);
        let ready = self.kernel == Kernel::Gpu
            && b * n > 0
            && within
            && gpu::rows_fit(b * n * attn.num_heads)
            && b * attn.num_heads <= 65_535
            && mask.is_none_or(|m| m.dims() == [n, n]);
        if !ready {
            return None;
        }
        let linear = |l: &Linear, x: Tensor<2>, residual: Option<Tensor<2>>, gelu: bool| {
            gpu::linear(x, l.weight.clone(), l.bias.clone(), residual, gelu)
        };
        let norm = |ln: &LayerNorm, x: Tensor<2>| gpu::layer_norm(x, ln.weight.clone(), ln.bias.clone(), ln.eps);
        let x = x.clone().reshape([b * n, d]);
        let h = norm(&self.layer_norm1, x.clone());
        let (q, k, v) = (
            linear(&attn.q_proj, h.clone(), None, false),
            linear(&attn.k_proj, h.clone(), None, false),
            linear(&attn.v_proj, h, None, false),
        );
        let mixed = gpu::attention(q, k, v, mask.cloned(), b, attn.num_heads);
        let x = linear(&attn.out_proj, mixed, Some(x), false);
        let h = linear(&mlp.fc1, norm(&self.layer_norm2, x.clone()), None, true);
        let x = linear(&mlp.fc2, h, Some(x), false);
        Some(x.reshape([b, n, d]))
    }
}

/// Layers `0..count` of the scope.
pub fn load_layers(mut p: Scope, count: usize, dims: TowerDims) -> Vec<EncoderLayer> {
    (0..count).map(|i| EncoderLayer::load(p.pp(i), dims)).collect()
}

#[cfg(all(test, feature = "cpu"))]
mod tests {
    use burn::tensor::{Device, Distribution, Tensor};

    use super::{Activation, EncoderLayer, Mlp, TowerDims};
    use crate::loader::WeightLoader;

    /// The host block (`packed::Block`: packed layers, quick GELU, two passes) gives what the
    /// backend's layer norms, attention and MLP give, on a batch of two, with sizes that get cut
    /// into bands where the build has threads. The weights are scaled up (layer norms around 1)
    /// and the block's own part, its output less its input, is compared, not the residual.
    #[test]
    fn packed_and_plain_blocks_agree() {
        let device = Device::flex();
        let dims = TowerDims { width: 64, intermediate: 128, heads: 4, eps: 1e-5, act: Activation::QuickGelu };
        let load = |pack| {
            let scale = |name: &str, values: &mut [f32]| {
                let norm = name.contains("layer_norm") && name.ends_with(".weight");
                values.iter_mut().for_each(|v| *v = if norm { 1.0 + 10.0 * *v } else { 10.0 * *v });
            };
            EncoderLayer::load(
                WeightLoader::random(&device).with_packed_linear(pack).with_hook(scale).pp("layer"),
                dims,
            )
        };
        let (plain, packed) = (load(false), load(true));
        assert!(plain.mlp.fc1.packed().is_none() && packed.self_attn.q_proj.packed().is_some());
        let x = Tensor::<3>::random([2, 90, 64], Distribution::Normal(0.0, 1.0), &device);
        let got = packed.forward(x.clone(), None).sub(x.clone());
        let want = plain.forward(x.clone(), None).sub(x);
        // Rounding grows with the values (up to ~30 here): the bound is relative to the largest.
        let (got, want) = (crate::nn::host_read(got).unwrap(), crate::nn::host_read(want).unwrap());
        let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!((g - w).abs() <= 1e-5 * scale, "block element {i}: host {g}, backend {w} (largest {scale})");
        }
    }

    /// The host MLP (packed layers, quick GELU) gives what the backend's layers give, on sizes
    /// large enough to be cut into bands where the build has threads.
    #[test]
    fn packed_and_plain_mlp_agree() {
        let device = Device::flex();
        let load = |pack| {
            Mlp::load(
                WeightLoader::random(&device).with_packed_linear(pack).pp("mlp"),
                48,
                160,
                40,
                Activation::QuickGelu,
            )
        };
        let (plain, packed) = (load(false), load(true));
        assert!(plain.fc1.packed().is_none() && packed.fc2.packed().is_some());
        let x = Tensor::<3>::random([2, 45, 48], Distribution::Normal(0.0, 1.0), &device);
        let got = packed.forward(x.clone());
        assert_eq!(got.dims(), [2, 45, 40]);
        crate::nn::assert_host_agrees(got, plain.forward(x), "mlp");
    }
}
