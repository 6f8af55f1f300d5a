//! SAM configuration, read from the HF `config.json` of a `SamModel` (transformers `SamConfig`,
//! `SamVisionConfig`, `SamPromptEncoderConfig`, `SamMaskDecoderConfig`); missing keys take those
//! classes' defaults (`facebook/sam-vit-huge`'s prompt encoder and decoder, ViT-B's tower), so
//! partial hub files such as `nielsr/slimsam-77-uniform`'s (`vision_config: {hidden_size: 168,
//! mlp_dim: 696}`) behave as in transformers.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::network::{ConfigJson, Fields, limits, overlay, sub_config};
use crate::nn::Activation;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SamVisionConfig {
    pub hidden_size: usize,
    /// Channels of the neck's output (the image embeddings).
    pub output_channels: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_channels: usize,
    pub image_size: usize,
    pub patch_size: usize,
    pub hidden_act: Activation,
    pub layer_norm_eps: f64,
    pub qkv_bias: bool,
    pub mlp_ratio: f64,
    /// An absolute position table over the patch grid.
    pub use_abs_pos: bool,
    /// Decomposed relative positions in every attention.
    pub use_rel_pos: bool,
    /// Side of the attention windows, in patches; the global layers attend over the whole grid.
    pub window_size: usize,
    pub global_attn_indexes: Vec<usize>,
    /// Half the width of the random-Fourier position features.
    pub num_pos_feats: usize,
    /// The MLP's width; `mlp_ratio * hidden_size` when unset.
    pub mlp_dim: Option<usize>,
}

impl Default for SamVisionConfig {
    /// `SamVisionConfig()`: ViT-B's tower.
    fn default() -> Self {
        SamVisionConfig {
            hidden_size: 768,
            output_channels: 256,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            num_channels: 3,
            image_size: 1024,
            patch_size: 16,
            hidden_act: Activation::Gelu,
            layer_norm_eps: 1e-6,
            qkv_bias: true,
            mlp_ratio: 4.0,
            use_abs_pos: true,
            use_rel_pos: true,
            window_size: 14,
            global_attn_indexes: vec![2, 5, 8, 11],
            num_pos_feats: 128,
            mlp_dim: None,
        }
    }
}

impl SamVisionConfig {
    pub fn mlp_dim(&self) -> usize {
        self.mlp_dim.unwrap_or((self.hidden_size as f64 * self.mlp_ratio) as usize)
    }

    /// Patches per side of the (padded, square) input.
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }

    /// The window side of layer `i`: 0 for a global layer.
    pub fn window_of(&self, i: usize) -> usize {
        if self.global_attn_indexes.contains(&i) { 0 } else { self.window_size }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SamPromptEncoderConfig {
    pub hidden_size: usize,
    pub image_size: usize,
    pub patch_size: usize,
    pub mask_input_channels: usize,
    pub num_point_embeddings: usize,
    pub hidden_act: Activation,
    pub layer_norm_eps: f64,
}

impl Default for SamPromptEncoderConfig {
    fn default() -> Self {
        SamPromptEncoderConfig {
            hidden_size: 256,
            image_size: 1024,
            patch_size: 16,
            mask_input_channels: 16,
            num_point_embeddings: 4,
            hidden_act: Activation::Gelu,
            layer_norm_eps: 1e-6,
        }
    }
}

impl SamPromptEncoderConfig {
    /// Side of the image embedding grid.
    pub fn embedding_size(&self) -> usize {
        self.image_size / self.patch_size
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SamMaskDecoderConfig {
    pub hidden_size: usize,
    pub hidden_act: Activation,
    pub mlp_dim: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub attention_downsample_rate: usize,
    pub num_multimask_outputs: usize,
    pub iou_head_depth: usize,
    pub iou_head_hidden_dim: usize,
    pub layer_norm_eps: f64,
}

impl Default for SamMaskDecoderConfig {
    fn default() -> Self {
        SamMaskDecoderConfig {
            hidden_size: 256,
            hidden_act: Activation::Relu,
            mlp_dim: 2048,
            num_hidden_layers: 2,
            num_attention_heads: 8,
            attention_downsample_rate: 2,
            num_multimask_outputs: 3,
            iou_head_depth: 3,
            iou_head_hidden_dim: 256,
            layer_norm_eps: 1e-6,
        }
    }
}

/// A `SamModel` configuration.
#[derive(Debug, Clone)]
pub struct SamConfig {
    pub vision_config: SamVisionConfig,
    pub prompt_encoder_config: SamPromptEncoderConfig,
    pub mask_decoder_config: SamMaskDecoderConfig,
}

impl SamConfig {
    /// Parse a HF `config.json` with `model_type` `sam`.
    pub fn from_json(text: &str) -> Result<Self> {
        Self::from_config(&ConfigJson::parse(text)?)
    }

    /// [`Self::from_json`] over a `config.json` parsed once.
    pub fn from_config(config: &ConfigJson) -> Result<Self> {
        let value = config.expect("sam", "SamModel")?;
        let config = SamConfig {
            vision_config: overlay(&SamVisionConfig::default(), &sub_config(value, "vision"), "vision_config")?,
            prompt_encoder_config: overlay(
                &SamPromptEncoderConfig::default(),
                &sub_config(value, "prompt_encoder"),
                "prompt_encoder_config",
            )?,
            mask_decoder_config: overlay(
                &SamMaskDecoderConfig::default(),
                &sub_config(value, "mask_decoder"),
                "mask_decoder_config",
            )?,
        };
        config.validate()?;
        Ok(config)
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let (v, p, d) = (&self.vision_config, &self.prompt_encoder_config, &self.mask_decoder_config);
        let f = Fields("vision_config");
        f.size("hidden_size", v.hidden_size, limits::WIDTH)?;
        f.size("output_channels", v.output_channels, limits::WIDTH)?;
        f.size("num_hidden_layers", v.num_hidden_layers, limits::LAYERS)?;
        f.size("num_attention_heads", v.num_attention_heads, limits::WIDTH)?;
        f.size("image_size", v.image_size, limits::IMAGE_SIZE)?;
        f.size("patch_size", v.patch_size, v.image_size)?;
        f.grid(v.image_size, v.patch_size)?;
        f.eps("layer_norm_eps", v.layer_norm_eps)?;
        f.number("mlp_ratio", v.mlp_ratio, 0.0, (limits::INTERMEDIATE / v.hidden_size) as f64)?;
        f.size("mlp_dim", v.mlp_dim(), limits::INTERMEDIATE)?;
        f.range("window_size", v.window_size, 0, limits::GRID)?;
        f.size("num_pos_feats", v.num_pos_feats, limits::WIDTH)?;
        let f = Fields("prompt_encoder_config");
        f.size("hidden_size", p.hidden_size, limits::WIDTH)?;
        f.size("image_size", p.image_size, limits::IMAGE_SIZE)?;
        f.size("patch_size", p.patch_size, p.image_size)?;
        f.size("mask_input_channels", p.mask_input_channels, limits::WIDTH)?;
        f.eps("layer_norm_eps", p.layer_norm_eps)?;
        let f = Fields("mask_decoder_config");
        f.size("hidden_size", d.hidden_size, limits::WIDTH)?;
        f.size("mlp_dim", d.mlp_dim, limits::INTERMEDIATE)?;
        f.size("num_hidden_layers", d.num_hidden_layers, limits::LAYERS)?;
        f.size("num_attention_heads", d.num_attention_heads, limits::WIDTH)?;
        f.size("attention_downsample_rate", d.attention_downsample_rate, d.hidden_size)?;
        // Masks a prompt gives, each with its own hypernetwork: SAM's 3.
        f.range("num_multimask_outputs", d.num_multimask_outputs, 0, 64)?;
        f.range("iou_head_depth", d.iou_head_depth, 2, limits::LAYERS)?;
        f.size("iou_head_hidden_dim", d.iou_head_hidden_dim, limits::WIDTH)?;
        f.eps("layer_norm_eps", d.layer_norm_eps)?;
        let check = |ok: bool, msg: String| if ok { Ok(()) } else { Err(Error::Config(msg)) };
        check(
            v.num_attention_heads > 0 && v.hidden_size.is_multiple_of(v.num_attention_heads),
            format!(
                "vision hidden_size {} is not divisible by num_attention_heads {}",
                v.hidden_size, v.num_attention_heads
            ),
        )?;
        check(
            v.patch_size > 0 && v.image_size.is_multiple_of(v.patch_size) && v.num_channels == 3,
            format!(
                "vision image_size {} must be a multiple of patch_size {}, with 3 channels (got {})",
                v.image_size, v.patch_size, v.num_channels
            ),
        )?;
        check(v.num_hidden_layers > 0, "the vision tower needs at least one layer".into())?;
        check(
            v.global_attn_indexes.iter().all(|&i| i < v.num_hidden_layers),
            format!("global_attn_indexes {:?} name layers past {}", v.global_attn_indexes, v.num_hidden_layers),
        )?;
        let windowed = (0..v.num_hidden_layers).any(|i| v.window_of(i) > 0);
        check(!windowed || v.window_size > 0, "window_size must be positive when a layer is windowed".into())?;
        check(
            v.output_channels == p.hidden_size
                && p.hidden_size == d.hidden_size
                && 2 * v.num_pos_feats == p.hidden_size,
            format!(
                "the image embeddings ({} channels), the prompt encoder ({}), the mask decoder ({}) and twice num_pos_feats ({}) must have one width",
                v.output_channels,
                p.hidden_size,
                d.hidden_size,
                2 * v.num_pos_feats
            ),
        )?;
        check(
            p.image_size == v.image_size && p.embedding_size() == v.grid(),
            format!(
                "the prompt encoder's image {} / patch {} must match the vision tower's {} / {}",
                p.image_size, p.patch_size, v.image_size, v.patch_size
            ),
        )?;
        check(
            p.mask_input_channels >= 4 && p.mask_input_channels.is_multiple_of(4) && p.num_point_embeddings == 4,
            "the prompt encoder needs 4 point embeddings and mask_input_channels a multiple of 4".into(),
        )?;
        let inner = d.hidden_size / d.attention_downsample_rate.max(1);
        check(
            d.hidden_size.is_multiple_of(8)
                && d.attention_downsample_rate > 0
                && d.num_attention_heads > 0
                && inner.is_multiple_of(d.num_attention_heads)
                && d.iou_head_depth >= 2
                && d.num_hidden_layers > 0,
            format!(
                "mask decoder: hidden_size {} must be a multiple of 8 and its attention width {inner} of {} heads, with an IoU head of 2 or more layers",
                d.hidden_size, d.num_attention_heads
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slimsam_configs_take_the_rest_from_the_defaults() {
        // nielsr/slimsam-77-uniform's config.json, as on the hub.
        let c = SamConfig::from_json(
            r#"{"architectures": ["SamModel"], "model_type": "sam", "mask_decoder_config": {"model_type": ""},
                "prompt_encoder_config": {"model_type": ""},
                "vision_config": {"hidden_size": 168, "mlp_dim": 696, "model_type": ""}}"#,
        )
        .unwrap();
        let v = &c.vision_config;
        assert_eq!((v.hidden_size, v.mlp_dim(), v.num_attention_heads, v.grid()), (168, 696, 12, 64));
        assert_eq!((v.window_of(0), v.window_of(2)), (14, 0));
        assert_eq!(c.mask_decoder_config.hidden_size, 256);
    }

    #[test]
    fn inconsistent_widths_are_named() {
        let err = SamConfig::from_json(r#"{"model_type": "sam", "prompt_encoder_config": {"hidden_size": 128}}"#)
            .unwrap_err();
        assert!(err.to_string().contains("one width"), "{err}");
        let err = SamConfig::from_json(r#"{"model_type": "clip"}"#).unwrap_err();
        assert!(err.to_string().contains("'clip'"), "{err}");
    }
}
