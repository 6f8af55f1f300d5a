//! The pre-norm transformer block of CLIP's towers (transformers `CLIPMLP`,
//! `CLIPEncoderLayer`), also used by GroupViT's stages.

use burn::tensor::Tensor;

use super::linear::{host_tensor, host_values};
use super::{Activation, Attention, LayerNorm, Linear, activate, host, packed};
use crate::loader::WeightLoader;

/// fc1 -> activation -> fc2.
#[derive(Debug, Clone)]
pub struct Mlp {
    pub fc1: Linear,
    pub fc2: Linear,
    pub act: Activation,
}

impl Mlp {
    /// `{prefix}.fc1` (`d_in -> hidden`) and `{prefix}.fc2` (`hidden -> d_out`), with biases.
    pub fn load(
        loader: &mut WeightLoader,
        prefix: &str,
        d_in: usize,
        hidden: usize,
        d_out: usize,
        act: Activation,
    ) -> Self {
        Self::load_named(loader, &format!("{prefix}.fc1"), &format!("{prefix}.fc2"), [d_in, hidden, d_out], act)
    }

    /// The two linear layers under other names (SAM's `lin1`, `lin2`); `dims` = in, hidden, out.
    pub fn load_named(loader: &mut WeightLoader, fc1: &str, fc2: &str, dims: [usize; 3], act: Activation) -> Self {
        let [d_in, hidden, d_out] = dims;
        Mlp {
            fc1: Linear::load(loader, fc1, d_in, hidden, true),
            fc2: Linear::load(loader, fc2, hidden, d_out, true),
            act,
        }
    }

    /// Where both layers are packed (the web build's CPU fallback) and the activation is quick
    /// GELU, all of it on the host, a band of rows at a time (`packed::mlp`).
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        if let (Some(fc1), Some(fc2), Activation::QuickGelu) = (&self.fc1.packed, &self.fc2.packed, self.act) {
            let ([b, n, _], device, d) = (x.dims(), x.device(), self.fc2.d_out());
            let out = packed::mlp(fc1, fc2, &host_values(x), b * n, host::quick_gelu_slice);
            return host_tensor(out, [b, n, d], &device);
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
}

impl EncoderLayer {
    pub fn load(loader: &mut WeightLoader, prefix: &str, dims: TowerDims) -> Self {
        let d = dims.width;
        EncoderLayer {
            self_attn: Attention::load(loader, &format!("{prefix}.self_attn"), d, dims.heads),
            layer_norm1: LayerNorm::load(loader, &format!("{prefix}.layer_norm1"), d, dims.eps),
            mlp: Mlp::load(loader, &format!("{prefix}.mlp"), d, dims.intermediate, d, dims.act),
            layer_norm2: LayerNorm::load(loader, &format!("{prefix}.layer_norm2"), d, dims.eps),
        }
    }

    /// The MLP half with its residual: `y + mlp(layer_norm2(y))`.
    pub fn feed_forward(&self, y: Tensor<3>) -> Tensor<3> {
        y.clone().add(self.mlp.forward(self.layer_norm2.forward(y)))
    }

    pub fn forward(&self, x: Tensor<3>, mask: Option<Tensor<2>>) -> Tensor<3> {
        let x = x.clone().add(self.self_attn.forward(self.layer_norm1.forward(x), mask));
        self.feed_forward(x)
    }
}

/// `{prefix}.{i}` for `i < count`.
pub fn load_layers(loader: &mut WeightLoader, prefix: &str, count: usize, dims: TowerDims) -> Vec<EncoderLayer> {
    (0..count).map(|i| EncoderLayer::load(loader, &format!("{prefix}.{i}"), dims)).collect()
}

#[cfg(all(test, feature = "cpu"))]
mod tests {
    use burn::tensor::{Device, Distribution, Tensor};

    use super::{Activation, Mlp};
    use crate::loader::WeightLoader;

    /// The host MLP (packed layers, quick GELU) gives what the backend's layers give, on sizes
    /// large enough to be cut into bands where the build has threads.
    #[test]
    fn packed_and_plain_mlp_agree() {
        let device = Device::flex();
        let load = |pack| Mlp::load(&mut WeightLoader::random(&device).with_packed_linear(pack), "mlp", 48, 160, 40, Activation::QuickGelu);
        let (plain, packed) = (load(false), load(true));
        assert!(plain.fc1.packed.is_none() && packed.fc2.packed.is_some());
        let x = Tensor::<3>::random([2, 45, 48], Distribution::Normal(0.0, 1.0), &device);
        let got = packed.forward(x.clone());
        assert_eq!(got.dims(), [2, 45, 40]);
        crate::nn::assert_host_agrees(got, plain.forward(x), "mlp");
    }
}
