//! CLIP configuration, read from the HF `config.json` of a `CLIPModel`
//! (transformers `CLIPConfig`, `CLIPTextConfig`, `CLIPVisionConfig`); defaults are those
//! classes' defaults, so partial files behave as in transformers.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Activation of the MLP blocks (`hidden_act`).
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
}

fn quick_gelu() -> Activation {
    Activation::QuickGelu
}
fn eps() -> f64 {
    1e-5
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TextConfig {
    #[serde(default = "text_defaults::vocab_size")]
    pub vocab_size: usize,
    #[serde(default = "text_defaults::hidden_size")]
    pub hidden_size: usize,
    #[serde(default = "text_defaults::intermediate_size")]
    pub intermediate_size: usize,
    #[serde(default = "text_defaults::num_hidden_layers")]
    pub num_hidden_layers: usize,
    #[serde(default = "text_defaults::num_attention_heads")]
    pub num_attention_heads: usize,
    #[serde(default = "text_defaults::max_position_embeddings")]
    pub max_position_embeddings: usize,
    #[serde(default = "quick_gelu")]
    pub hidden_act: Activation,
    #[serde(default = "eps")]
    pub layer_norm_eps: f64,
    /// `2` in configs written before transformers PR #24773: pool at the largest token id.
    #[serde(default = "text_defaults::eos_token_id")]
    pub eos_token_id: i64,
}

mod text_defaults {
    pub fn vocab_size() -> usize {
        49408
    }
    pub fn hidden_size() -> usize {
        512
    }
    pub fn intermediate_size() -> usize {
        2048
    }
    pub fn num_hidden_layers() -> usize {
        12
    }
    pub fn num_attention_heads() -> usize {
        8
    }
    pub fn max_position_embeddings() -> usize {
        77
    }
    pub fn eos_token_id() -> i64 {
        49407
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VisionConfig {
    #[serde(default = "vision_defaults::hidden_size")]
    pub hidden_size: usize,
    #[serde(default = "vision_defaults::intermediate_size")]
    pub intermediate_size: usize,
    #[serde(default = "vision_defaults::num_hidden_layers")]
    pub num_hidden_layers: usize,
    #[serde(default = "vision_defaults::num_attention_heads")]
    pub num_attention_heads: usize,
    #[serde(default = "vision_defaults::num_channels")]
    pub num_channels: usize,
    #[serde(default = "vision_defaults::image_size")]
    pub image_size: usize,
    #[serde(default = "vision_defaults::patch_size")]
    pub patch_size: usize,
    #[serde(default = "quick_gelu")]
    pub hidden_act: Activation,
    #[serde(default = "eps")]
    pub layer_norm_eps: f64,
}

mod vision_defaults {
    pub fn hidden_size() -> usize {
        768
    }
    pub fn intermediate_size() -> usize {
        3072
    }
    pub fn num_hidden_layers() -> usize {
        12
    }
    pub fn num_attention_heads() -> usize {
        12
    }
    pub fn num_channels() -> usize {
        3
    }
    pub fn image_size() -> usize {
        224
    }
    pub fn patch_size() -> usize {
        32
    }
}

/// A `CLIPModel` configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClipConfig {
    pub text_config: TextConfig,
    pub vision_config: VisionConfig,
    #[serde(default = "projection_dim")]
    pub projection_dim: usize,
}

fn projection_dim() -> usize {
    512
}

impl ClipConfig {
    /// Parse a HF `config.json`. Refuses other architectures with a message naming them.
    pub fn from_json(text: &str) -> Result<Self> {
        let mut value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| Error::Config(format!("config.json is not valid JSON: {e}")))?;
        let model_type = value.get("model_type").and_then(|v| v.as_str()).unwrap_or("");
        if model_type != "clip" {
            let shown = if model_type.is_empty() { "none".to_string() } else { format!("'{model_type}'") };
            return Err(Error::Config(format!(
                "model_type is {shown}; this loader reads CLIP checkpoints (model_type 'clip', CLIPModel)"
            )));
        }
        // Old hub configs carry `*_config_dict` next to (or instead of) `*_config`.
        for side in ["text", "vision"] {
            let key = format!("{side}_config");
            if value.get(&key).is_none_or(|v| v.is_null()) {
                let legacy = value.get(format!("{side}_config_dict")).cloned().unwrap_or_else(|| serde_json::json!({}));
                value[key] = legacy;
            }
        }
        let config: ClipConfig =
            serde_json::from_value(value).map_err(|e| Error::Config(format!("config.json: {e}")))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<()> {
        let v = &self.vision_config;
        let t = &self.text_config;
        let check = |ok: bool, msg: String| if ok { Ok(()) } else { Err(Error::Config(msg)) };
        check(
            v.hidden_size % v.num_attention_heads == 0,
            format!(
                "vision hidden_size {} is not divisible by num_attention_heads {}",
                v.hidden_size, v.num_attention_heads
            ),
        )?;
        check(
            t.hidden_size % t.num_attention_heads == 0,
            format!(
                "text hidden_size {} is not divisible by num_attention_heads {}",
                t.hidden_size, t.num_attention_heads
            ),
        )?;
        check(
            v.patch_size > 0 && v.image_size >= v.patch_size,
            format!("vision patch_size {} must be positive and at most image_size {}", v.patch_size, v.image_size),
        )?;
        check(v.num_channels == 3, format!("vision num_channels must be 3 (RGB), got {}", v.num_channels))?;
        check(v.num_hidden_layers > 0 && t.num_hidden_layers > 0, "both towers need at least one layer".into())?;
        check(t.max_position_embeddings >= 2, "text max_position_embeddings must be at least 2".into())
    }

    /// Patches per side at the trained resolution.
    pub fn grid(&self) -> usize {
        self.vision_config.image_size / self.vision_config.patch_size
    }

    fn preset(text: (usize, usize, usize), vision: (usize, usize, usize, usize), projection_dim: usize) -> Self {
        let (t_width, t_layers, t_heads) = text;
        let (v_width, v_layers, v_heads, patch) = vision;
        ClipConfig {
            text_config: TextConfig {
                vocab_size: 49408,
                hidden_size: t_width,
                intermediate_size: 4 * t_width,
                num_hidden_layers: t_layers,
                num_attention_heads: t_heads,
                max_position_embeddings: 77,
                hidden_act: Activation::QuickGelu,
                layer_norm_eps: 1e-5,
                eos_token_id: 2,
            },
            vision_config: VisionConfig {
                hidden_size: v_width,
                intermediate_size: 4 * v_width,
                num_hidden_layers: v_layers,
                num_attention_heads: v_heads,
                num_channels: 3,
                image_size: 224,
                patch_size: patch,
                hidden_act: Activation::QuickGelu,
                layer_norm_eps: 1e-5,
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

    /// A preset by its short name, as `wordmask bench --config` takes it.
    pub fn by_name(name: &str) -> Result<Self> {
        match name {
            "vit-b-16" => Ok(Self::vit_b_16()),
            "vit-b-32" => Ok(Self::vit_b_32()),
            "vit-l-14" => Ok(Self::vit_l_14()),
            other => {
                Err(Error::invalid(format!("unknown config preset {other}; choose vit-b-16, vit-b-32 or vit-l-14")))
            }
        }
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

    #[test]
    fn inconsistent_sizes_are_refused() {
        let err = ClipConfig::from_json(
            r#"{"model_type": "clip", "vision_config": {"hidden_size": 50, "num_attention_heads": 4}}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("not divisible"), "{err}");
    }
}
