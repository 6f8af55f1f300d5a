//! CLIP configuration, read from the HF `config.json` of a `CLIPModel` (transformers
//! `CLIPConfig`, `CLIPTextConfig`, `CLIPVisionConfig`); missing keys take those classes'
//! defaults, so partial files behave as in transformers.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::network::{ConfigJson, Fields, field, limits, overlay, sub_config};
use crate::nn::{Activation, TowerDims};

/// A text tower (`CLIPTextConfig`; GroupViT's text tower has the same fields).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub max_position_embeddings: usize,
    pub hidden_act: Activation,
    pub layer_norm_eps: f64,
    /// `2` in configs written before transformers PR #24773: pool at the largest token id.
    pub eos_token_id: i64,
}

impl TextConfig {
    /// `CLIPTextConfig()`'s defaults.
    pub const CLIP: TextConfig = TextConfig {
        vocab_size: 49408,
        hidden_size: 512,
        intermediate_size: 2048,
        num_hidden_layers: 12,
        num_attention_heads: 8,
        max_position_embeddings: 77,
        hidden_act: Activation::QuickGelu,
        layer_norm_eps: 1e-5,
        eos_token_id: 49407,
    };

    pub fn dims(&self) -> TowerDims {
        TowerDims {
            width: self.hidden_size,
            intermediate: self.intermediate_size,
            heads: self.num_attention_heads,
            eps: self.layer_norm_eps,
            act: self.hidden_act,
        }
    }

    /// Every number in its bounds ([`limits`]) and the sizes consistent.
    pub fn validate(&self) -> Result<()> {
        let f = Fields("text_config");
        f.size("vocab_size", self.vocab_size, limits::VOCAB)?;
        f.size("hidden_size", self.hidden_size, limits::WIDTH)?;
        f.size("intermediate_size", self.intermediate_size, limits::INTERMEDIATE)?;
        f.size("num_hidden_layers", self.num_hidden_layers, limits::LAYERS)?;
        f.size("num_attention_heads", self.num_attention_heads, limits::WIDTH)?;
        f.range("max_position_embeddings", self.max_position_embeddings, 2, limits::POSITIONS)?;
        f.eps("layer_norm_eps", self.layer_norm_eps)?;
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(Error::Config(format!(
                "text hidden_size {} is not divisible by num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            )));
        }
        if self.num_hidden_layers == 0 || self.max_position_embeddings < 2 {
            return Err(Error::Config("the text tower needs a layer and at least 2 positions".into()));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VisionConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_channels: usize,
    pub image_size: usize,
    pub patch_size: usize,
    pub hidden_act: Activation,
    pub layer_norm_eps: f64,
}

impl VisionConfig {
    /// `CLIPVisionConfig()`'s defaults.
    pub const CLIP: VisionConfig = VisionConfig {
        hidden_size: 768,
        intermediate_size: 3072,
        num_hidden_layers: 12,
        num_attention_heads: 12,
        num_channels: 3,
        image_size: 224,
        patch_size: 32,
        hidden_act: Activation::QuickGelu,
        layer_norm_eps: 1e-5,
    };

    pub fn dims(&self) -> TowerDims {
        TowerDims {
            width: self.hidden_size,
            intermediate: self.intermediate_size,
            heads: self.num_attention_heads,
            eps: self.layer_norm_eps,
            act: self.hidden_act,
        }
    }

    /// Every number in its bounds ([`limits`]), under `section`'s name (`vision_config`, or
    /// `vision` in a Fusioner config).
    pub fn check_bounds(&self, section: &str) -> Result<()> {
        let f = Fields(section);
        f.size("hidden_size", self.hidden_size, limits::WIDTH)?;
        f.size("intermediate_size", self.intermediate_size, limits::INTERMEDIATE)?;
        f.size("num_hidden_layers", self.num_hidden_layers, limits::LAYERS)?;
        f.size("num_attention_heads", self.num_attention_heads, limits::WIDTH)?;
        f.size("image_size", self.image_size, limits::IMAGE_SIZE)?;
        f.size("patch_size", self.patch_size, self.image_size)?;
        f.grid(self.image_size, self.patch_size)?;
        f.eps("layer_norm_eps", self.layer_norm_eps)
    }
}

/// A `CLIPModel` configuration.
#[derive(Debug, Clone)]
pub struct ClipConfig {
    pub text_config: TextConfig,
    pub vision_config: VisionConfig,
    pub projection_dim: usize,
}

impl ClipConfig {
    /// Parse a HF `config.json`. Refuses other architectures with a message naming them.
    pub fn from_json(text: &str) -> Result<Self> {
        Self::from_config(&ConfigJson::parse(text)?)
    }

    /// [`Self::from_json`] over a `config.json` parsed once.
    pub fn from_config(config: &ConfigJson) -> Result<Self> {
        Self::from_value(config.expect("clip", "CLIPModel")?)
    }

    /// The towers and projection of a parsed `config.json` in `CLIPConfig`'s layout, whatever
    /// its `model_type` (SegCLIP's config extends this one).
    pub fn from_value(value: &serde_json::Value) -> Result<Self> {
        let value = value.clone();
        let config = ClipConfig {
            text_config: overlay(&TextConfig::CLIP, &sub_config(&value, "text"), "text_config")?,
            vision_config: overlay(&VisionConfig::CLIP, &sub_config(&value, "vision"), "vision_config")?,
            projection_dim: field(&value, "projection_dim", 512)?,
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<()> {
        let v = &self.vision_config;
        v.check_bounds("vision_config")?;
        Fields("").size("projection_dim", self.projection_dim, limits::WIDTH)?;
        let check = |ok: bool, msg: String| if ok { Ok(()) } else { Err(Error::Config(msg)) };
        check(
            v.hidden_size.is_multiple_of(v.num_attention_heads),
            format!(
                "vision hidden_size {} is not divisible by num_attention_heads {}",
                v.hidden_size, v.num_attention_heads
            ),
        )?;
        self.text_config.validate()?;
        check(
            v.patch_size > 0 && v.image_size >= v.patch_size,
            format!("vision patch_size {} must be positive and at most image_size {}", v.patch_size, v.image_size),
        )?;
        check(v.num_channels == 3, format!("vision num_channels must be 3 (RGB), got {}", v.num_channels))?;
        check(v.num_hidden_layers > 0, "the vision tower needs at least one layer".into())
    }

    /// Patches per side at the trained resolution.
    pub fn grid(&self) -> usize {
        self.vision_config.image_size / self.vision_config.patch_size
    }

    /// FLOPs of the image tower's pass on one `size`² image up to its projected class token,
    /// as `tools/peer_peak.mjs` counts them for the speed benchmark: the matrix products only, a
    /// multiply-add counting two — per block 8·N·d² (query, key, value, output), 4·N·d·m (the
    /// MLP) and 4·N²·d (the two attention products), with N the patches and the class token;
    /// the patch embedding 2·P·C·p²·d; the projection 2·d·e. Layer norms, softmax and
    /// activations are left out. `None` when `size` is off the patch grid.
    pub fn image_flops(&self, size: usize) -> Option<f64> {
        let v = &self.vision_config;
        if size == 0 || !size.is_multiple_of(v.patch_size) {
            return None;
        }
        let (d, m) = (v.hidden_size as f64, v.intermediate_size as f64);
        let patches = ((size / v.patch_size) as f64).powi(2);
        let n = patches + 1.0;
        let block = 8.0 * n * d * d + 4.0 * n * d * m + 4.0 * n * n * d;
        let patch = 2.0 * patches * (v.num_channels * v.patch_size * v.patch_size) as f64 * d;
        Some(patch + v.num_hidden_layers as f64 * block + 2.0 * d * self.projection_dim as f64)
    }

    fn preset(text: (usize, usize, usize), vision: (usize, usize, usize, usize), projection_dim: usize) -> Self {
        let (t_width, t_layers, t_heads) = text;
        let (v_width, v_layers, v_heads, patch) = vision;
        ClipConfig {
            text_config: TextConfig {
                hidden_size: t_width,
                intermediate_size: 4 * t_width,
                num_hidden_layers: t_layers,
                num_attention_heads: t_heads,
                eos_token_id: 2,
                ..TextConfig::CLIP
            },
            vision_config: VisionConfig {
                hidden_size: v_width,
                intermediate_size: 4 * v_width,
                num_hidden_layers: v_layers,
                num_attention_heads: v_heads,
                patch_size: patch,
                ..VisionConfig::CLIP
            },
            projection_dim,
        }
    }

    /// `openai/clip-vit-base-patch16` (<https://huggingface.co/openai/clip-vit-base-patch16/blob/main/config.json>).
    pub fn vit_b_16() -> Self {
        Self::preset((512, 12, 8), (768, 12, 12, 16), 512)
    }

    /// `openai/clip-vit-base-patch32` (<https://huggingface.co/openai/clip-vit-base-patch32/blob/main/config.json>).
    pub fn vit_b_32() -> Self {
        Self::preset((512, 12, 8), (768, 12, 12, 32), 512)
    }

    /// `openai/clip-vit-large-patch14` (<https://huggingface.co/openai/clip-vit-large-patch14/blob/main/config.json>).
    pub fn vit_l_14() -> Self {
        Self::preset((768, 12, 12), (1024, 24, 16, 14), 768)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_architectures_are_named_in_the_error() {
        let err = ClipConfig::from_json(r#"{"model_type": "sam", "vision_config": {}}"#).unwrap_err();
        assert!(err.to_string().contains("'sam'"), "{err}");
    }

    #[test]
    fn legacy_config_dicts_and_defaults_are_read() {
        let cfg = ClipConfig::from_json(
            r#"{"model_type": "clip", "projection_dim": 64,
                "text_config_dict": {"hidden_size": 32, "num_attention_heads": 4, "hidden_act": "gelu"},
                "vision_config": {"patch_size": 16, "hidden_size": 48, "num_attention_heads": 4}}"#,
        )
        .unwrap();
        assert_eq!(cfg.text_config.hidden_size, 32);
        assert_eq!(cfg.text_config.hidden_act, Activation::Gelu);
        assert_eq!(cfg.vision_config.patch_size, 16);
        assert_eq!(cfg.vision_config.intermediate_size, 3072);
        assert_eq!(cfg.projection_dim, 64);
        assert_eq!(cfg.grid(), 14);
    }

    /// transformers (`CLIPConfig.__init__`) builds the tower from `text_config_dict` alone when a
    /// file carries both: the dict's keys win, and keys only `text_config` sets fall back to the
    /// defaults (checked against transformers 5.23: heads 4 in `text_config` become 8).
    #[test]
    fn a_legacy_dict_overrides_the_whole_tower_config() {
        let cfg = ClipConfig::from_json(
            r#"{"model_type": "clip",
                "text_config": {"hidden_size": 48, "num_attention_heads": 4, "intermediate_size": 100},
                "text_config_dict": {"hidden_size": 96}}"#,
        )
        .unwrap();
        assert_eq!(
            (cfg.text_config.hidden_size, cfg.text_config.num_attention_heads, cfg.text_config.intermediate_size),
            (96, 8, 2048)
        );
    }

    /// ViT-B/16 at 224: the textbook 24·N·d² + 4·N²·d a block (about 17.6 G multiply-adds in
    /// all), the same count as the speed benchmark's (tests/browser/peak.test.mjs).
    #[test]
    fn image_flops_count_the_matrix_products() {
        let cfg = ClipConfig::vit_b_16();
        let (n, d) = (197.0, 768.0);
        let block = 24.0 * n * d * d + 4.0 * n * n * d;
        let expected = 12.0 * block + 2.0 * 196.0 * 768.0 * d + 2.0 * d * 512.0;
        assert_eq!(cfg.image_flops(224), Some(expected));
        assert!((expected / 2e9 - 17.56).abs() < 0.01);
        // The MLP's own width, not 4·d.
        let mut narrow = cfg.clone();
        narrow.vision_config.intermediate_size = 1536;
        assert_eq!(cfg.image_flops(224).unwrap() - narrow.image_flops(224).unwrap(), 12.0 * 4.0 * n * d * 1536.0);
        assert_eq!(cfg.image_flops(230), None);
        assert_eq!(cfg.image_flops(0), None);
    }

    #[test]
    fn inconsistent_sizes_are_refused() {
        let err = ClipConfig::from_json(
            r#"{"model_type": "clip", "vision_config": {"hidden_size": 50, "num_attention_heads": 4}}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("not divisible"), "{err}");
    }
}
