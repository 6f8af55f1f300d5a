//! A plain vision transformer as transformers' `ViTModel` holds it (`model_type: vit`; the
//! layout of `facebook/dino-vitb16` and the other DINO checkpoints): patch embedding with bias,
//! a class token, learned positions, pre-norm blocks, a final layer norm. Used as a
//! vision-only image encoder (Fusioner's frozen DINO).

pub mod moco;

use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::loader::{HeldBytes, WeightLoader};
use crate::network::{Fields, limits};
use crate::nn::{Activation, Attention, EncoderLayer, LayerNorm, Linear, Mlp, PatchEmbedding, PositionTable};

/// `ViTConfig` (the fields the encoder reads; transformers' defaults).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct VitConfig {
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub hidden_act: Activation,
    pub layer_norm_eps: f64,
    pub image_size: usize,
    pub patch_size: usize,
    pub num_channels: usize,
    pub qkv_bias: bool,
}

impl Default for VitConfig {
    fn default() -> Self {
        VitConfig {
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            hidden_act: Activation::Gelu,
            layer_norm_eps: 1e-12,
            image_size: 224,
            patch_size: 16,
            num_channels: 3,
            qkv_bias: true,
        }
    }
}

impl VitConfig {
    /// A `ViTConfig` object (a `config.json` with `model_type: vit`, or the `vision` entry of a
    /// Fusioner config).
    pub fn from_value(value: &serde_json::Value) -> Result<Self> {
        let found = value.get("model_type").and_then(|v| v.as_str()).unwrap_or("");
        if found != "vit" {
            return Err(Error::Config(format!(
                "the vision encoder's model_type is '{found}'; expected 'vit' (ViTModel)"
            )));
        }
        let config: VitConfig =
            serde_json::from_value(value.clone()).map_err(|e| Error::Config(format!("ViT config: {e}")))?;
        // Its fields as a Fusioner config names them (the ViT's config.json under `vision`).
        let f = Fields("vision");
        f.size("hidden_size", config.hidden_size, limits::WIDTH)?;
        f.size("intermediate_size", config.intermediate_size, limits::INTERMEDIATE)?;
        f.size("num_hidden_layers", config.num_hidden_layers, limits::LAYERS)?;
        f.size("num_attention_heads", config.num_attention_heads, limits::WIDTH)?;
        f.size("image_size", config.image_size, limits::IMAGE_SIZE)?;
        f.size("patch_size", config.patch_size, config.image_size)?;
        f.grid(config.image_size, config.patch_size)?;
        f.eps("layer_norm_eps", config.layer_norm_eps)?;
        let ok = config.hidden_size > 0
            && config.num_attention_heads > 0
            && config.hidden_size.is_multiple_of(config.num_attention_heads)
            && config.num_hidden_layers > 0
            && config.patch_size > 0
            && config.image_size >= config.patch_size
            && config.num_channels == 3;
        if !ok {
            return Err(Error::Config(format!(
                "ViT config needs positive sizes, hidden_size divisible by num_attention_heads, image_size at least patch_size and 3 channels; got {config:?}"
            )));
        }
        Ok(config)
    }
}

/// `ViTModel` without its pooler.
#[derive(Debug, Clone)]
pub struct VitModel {
    pub config: VitConfig,
    pub cls_token: Tensor<1>,
    pub class_position: Tensor<2>,
    pub positions: PositionTable,
    pub patch_embedding: PatchEmbedding,
    pub layers: Vec<EncoderLayer>,
    pub layernorm: LayerNorm,
}

impl VitModel {
    /// The hub keys (`embeddings.*`, `encoder.layer.*`, `layernorm.*`) under `prefix` ("" for a
    /// `ViTModel` checkpoint itself). A pooler, when the file has one, is not read.
    pub fn load(loader: &mut WeightLoader, prefix: &str, config: VitConfig) -> Self {
        let mut scope = loader.pp(prefix);
        let (d, p, eps) = (config.hidden_size, config.patch_size, config.layer_norm_eps);
        let grid = config.image_size / p;
        let rows = 1 + grid * grid;
        let device = scope.device().clone();
        for pooler in ["pooler.dense.weight", "pooler.dense.bias"] {
            scope.tied(pooler);
        }
        let (class_position, positions) = match scope.host("embeddings.position_embeddings", &[1, rows, d]) {
            Some(table) => (
                Tensor::from_data(TensorData::new(table[..d].to_vec(), [1, d]), &device),
                PositionTable::new(table[d..].to_vec(), grid, d, &device),
            ),
            None => (Tensor::zeros([1, d], &device), PositionTable::stand_in(grid, d, &device)),
        };
        if !scope.checking() {
            scope.hold(positions.held());
            scope.hold(HeldBytes::f32s(d));
        }
        let cls = scope.tensor("embeddings.cls_token", [1, 1, d]).reshape([d]);
        let mut encoder = scope.pp("encoder.layer");
        let layers = (0..config.num_hidden_layers)
            .map(|i| {
                let mut layer = encoder.pp(i);
                let layer_norm1 = LayerNorm::load(layer.pp("layernorm_before"), d, eps);
                let mut attention = layer.pp("attention");
                let q_proj = Linear::load(attention.pp("attention.query"), d, d, config.qkv_bias);
                let k_proj = Linear::load(attention.pp("attention.key"), d, d, config.qkv_bias);
                let v_proj = Linear::load(attention.pp("attention.value"), d, d, config.qkv_bias);
                let out_proj = Linear::load(attention.pp("output.dense"), d, d, true);
                let self_attn = Attention::new(q_proj, k_proj, v_proj, out_proj, config.num_attention_heads);
                let layer_norm2 = LayerNorm::load(layer.pp("layernorm_after"), d, eps);
                let fc1 = Linear::load(layer.pp("intermediate.dense"), d, config.intermediate_size, true);
                let fc2 = Linear::load(layer.pp("output.dense"), config.intermediate_size, d, true);
                EncoderLayer::new(layer_norm1, self_attn, layer_norm2, Mlp::new(fc1, fc2, config.hidden_act))
            })
            .collect();
        VitModel {
            cls_token: cls,
            class_position,
            positions,
            patch_embedding: PatchEmbedding::load(
                scope.pp("embeddings.patch_embeddings.projection"),
                d,
                config.num_channels,
                p,
                true,
            ),
            layers,
            layernorm: LayerNorm::load(scope.pp("layernorm"), d, eps),
            config,
        }
    }

    pub fn device(&self) -> Device {
        self.cls_token.device()
    }

    /// `last_hidden_state` (after the final layer norm), `[b, 1 + gh*gw, d]`, and the grid.
    pub fn forward(&self, pixels: Tensor<4>) -> Result<(Tensor<3>, (usize, usize))> {
        let b = pixels.dims()[0];
        let d = self.config.hidden_size;
        let (tokens, (gh, gw)) = self.patch_embedding.forward(pixels)?;
        let class = self.cls_token.clone().reshape([1, 1, d]).repeat_dim(0, b);
        let positions = Tensor::cat(vec![self.class_position.clone(), self.positions.for_grid(gh, gw)], 0);
        let mut x = Tensor::cat(vec![class, tokens], 1).add(positions.unsqueeze::<3>());
        for layer in &self.layers {
            x = layer.forward(x, None);
        }
        Ok((self.layernorm.forward(x), (gh, gw)))
    }
}
