//! GroupViT configuration, read from the HF `config.json` of a `GroupViTModel` (transformers
//! `GroupViTConfig`, `GroupViTTextConfig`, `GroupViTVisionConfig`); defaults are those classes'
//! defaults, which are the `nvidia/groupvit-gcc-yfcc` sizes.

use serde::Deserialize;

use crate::clip::{Activation, TextConfig};
use crate::error::{Error, Result};

/// The text tower is CLIP's; only the defaults differ (width 256, 4 heads).
#[derive(Debug, Clone, Deserialize)]
struct GroupVitTextConfig {
    #[serde(default = "d::vocab_size")]
    vocab_size: usize,
    #[serde(default = "d::text_hidden")]
    hidden_size: usize,
    #[serde(default = "d::text_intermediate")]
    intermediate_size: usize,
    #[serde(default = "d::layers")]
    num_hidden_layers: usize,
    #[serde(default = "d::text_heads")]
    num_attention_heads: usize,
    #[serde(default = "d::context")]
    max_position_embeddings: usize,
    #[serde(default = "d::quick_gelu")]
    hidden_act: Activation,
    #[serde(default = "d::eps")]
    layer_norm_eps: f64,
    #[serde(default = "d::eos")]
    eos_token_id: i64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct GroupVitVisionConfig {
    #[serde(default = "d::vision_hidden")]
    pub hidden_size: usize,
    #[serde(default = "d::vision_intermediate")]
    pub intermediate_size: usize,
    /// Encoder layers of each stage.
    #[serde(default = "d::depths")]
    pub depths: Vec<usize>,
    /// Group tokens of each stage; 0 = a stage without grouping (only the last may be).
    #[serde(default = "d::group_tokens")]
    pub num_group_tokens: Vec<usize>,
    /// Groups each grouping block outputs.
    #[serde(default = "d::output_groups")]
    pub num_output_groups: Vec<usize>,
    #[serde(default = "d::vision_heads")]
    pub num_attention_heads: usize,
    #[serde(default = "d::image_size")]
    pub image_size: usize,
    #[serde(default = "d::patch_size")]
    pub patch_size: usize,
    #[serde(default = "d::channels")]
    pub num_channels: usize,
    #[serde(default = "d::gelu")]
    pub hidden_act: Activation,
    #[serde(default = "d::eps")]
    pub layer_norm_eps: f64,
    /// Added to each group's assignment count before normalising (`assign_eps`).
    #[serde(default = "d::assign_eps")]
    pub assign_eps: f64,
    /// Hidden sizes of the grouping block's token and channel MLPs, as multiples of the width.
    #[serde(default = "d::assign_mlp_ratio")]
    pub assign_mlp_ratio: Vec<f64>,
}

impl GroupVitVisionConfig {
    /// `(tokens_dim, channels_dim)` of the grouping blocks' MLPs (`int(ratio * width)`).
    pub fn assign_dims(&self) -> (usize, usize) {
        let r = &self.assign_mlp_ratio;
        let (a, b) = if r.len() == 1 { (r[0], r[0]) } else { (r[0], r[1]) };
        ((a * self.hidden_size as f64) as usize, (b * self.hidden_size as f64) as usize)
    }
}

/// A `GroupViTModel` configuration.
#[derive(Debug, Clone)]
pub struct GroupVitConfig {
    pub text_config: TextConfig,
    pub vision_config: GroupVitVisionConfig,
    pub projection_dim: usize,
    pub projection_intermediate_dim: usize,
}

#[derive(Deserialize)]
struct Raw {
    text_config: GroupVitTextConfig,
    vision_config: GroupVitVisionConfig,
    #[serde(default = "d::projection_dim")]
    projection_dim: usize,
    #[serde(default = "d::projection_intermediate_dim")]
    projection_intermediate_dim: usize,
}

mod d {
    use crate::clip::Activation;
    pub fn vocab_size() -> usize {
        49408
    }
    pub fn text_hidden() -> usize {
        256
    }
    pub fn text_intermediate() -> usize {
        1024
    }
    pub fn layers() -> usize {
        12
    }
    pub fn text_heads() -> usize {
        4
    }
    pub fn context() -> usize {
        77
    }
    pub fn quick_gelu() -> Activation {
        Activation::QuickGelu
    }
    pub fn gelu() -> Activation {
        Activation::Gelu
    }
    pub fn eps() -> f64 {
        1e-5
    }
    pub fn eos() -> i64 {
        49407
    }
    pub fn vision_hidden() -> usize {
        384
    }
    pub fn vision_intermediate() -> usize {
        1536
    }
    pub fn depths() -> Vec<usize> {
        vec![6, 3, 3]
    }
    pub fn group_tokens() -> Vec<usize> {
        vec![64, 8, 0]
    }
    pub fn output_groups() -> Vec<usize> {
        vec![64, 8, 8]
    }
    pub fn vision_heads() -> usize {
        6
    }
    pub fn image_size() -> usize {
        224
    }
    pub fn patch_size() -> usize {
        16
    }
    pub fn channels() -> usize {
        3
    }
    pub fn assign_eps() -> f64 {
        1.0
    }
    pub fn assign_mlp_ratio() -> Vec<f64> {
        vec![0.5, 4.0]
    }
    pub fn projection_dim() -> usize {
        256
    }
    pub fn projection_intermediate_dim() -> usize {
        4096
    }
}

impl GroupVitConfig {
    /// Parse a HF `config.json` with `model_type` `groupvit`.
    pub fn from_json(text: &str) -> Result<Self> {
        let mut value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| Error::Config(format!("config.json is not valid JSON: {e}")))?;
        let model_type = value.get("model_type").and_then(|v| v.as_str()).unwrap_or("");
        if model_type != "groupvit" {
            return Err(Error::Config(format!(
                "model_type is '{model_type}'; the GroupViT loader reads model_type 'groupvit' (GroupViTModel)"
            )));
        }
        // Hub configs written by older transformers carry `*_config_dict`, which transformers
        // prefers over `*_config`.
        for side in ["text", "vision"] {
            let legacy = value.get(format!("{side}_config_dict")).filter(|v| v.is_object()).cloned();
            let key = format!("{side}_config");
            let mut merged =
                value.get(&key).filter(|v| v.is_object()).cloned().unwrap_or_else(|| serde_json::json!({}));
            if let (Some(serde_json::Value::Object(extra)), serde_json::Value::Object(base)) = (legacy, &mut merged) {
                base.extend(extra);
            }
            value[key] = merged;
        }
        let raw: Raw = serde_json::from_value(value).map_err(|e| Error::Config(format!("config.json: {e}")))?;
        let t = raw.text_config;
        let config = GroupVitConfig {
            text_config: TextConfig {
                vocab_size: t.vocab_size,
                hidden_size: t.hidden_size,
                intermediate_size: t.intermediate_size,
                num_hidden_layers: t.num_hidden_layers,
                num_attention_heads: t.num_attention_heads,
                max_position_embeddings: t.max_position_embeddings,
                hidden_act: t.hidden_act,
                layer_norm_eps: t.layer_norm_eps,
                eos_token_id: t.eos_token_id,
            },
            vision_config: raw.vision_config,
            projection_dim: raw.projection_dim,
            projection_intermediate_dim: raw.projection_intermediate_dim,
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<()> {
        let v = &self.vision_config;
        let t = &self.text_config;
        let fail = |msg: String| Err(Error::Config(msg));
        let stages = v.depths.len();
        if stages == 0 || v.num_group_tokens.len() != stages || v.num_output_groups.len() != stages {
            return fail(format!(
                "vision depths, num_group_tokens and num_output_groups must have one entry per stage; got {:?}, {:?}, {:?}",
                v.depths, v.num_group_tokens, v.num_output_groups
            ));
        }
        if v.num_group_tokens[0] == 0 {
            return fail("the first vision stage must have group tokens".into());
        }
        for i in 1..stages {
            if v.num_group_tokens[i] > 0 && v.num_group_tokens[i - 1] == 0 {
                return fail(format!(
                    "stage {i} groups after a stage without group tokens; only the last may have none"
                ));
            }
            // The next stage's group projector reads the previous stage's group tokens with
            // `num_output_groups[i-1]` inputs.
            if v.num_group_tokens[i] > 0 && v.num_group_tokens[i - 1] != v.num_output_groups[i - 1] {
                return fail(format!(
                    "stage {} has {} group tokens but outputs {} groups; a stage followed by another grouping stage must output as many groups as it has tokens",
                    i - 1,
                    v.num_group_tokens[i - 1],
                    v.num_output_groups[i - 1]
                ));
            }
        }
        if v.num_output_groups.iter().zip(&v.num_group_tokens).any(|(&o, &g)| g > 0 && o == 0) {
            return fail("a grouping stage must output at least one group".into());
        }
        if v.depths.iter().any(|&d| d == 0) {
            return fail(format!("every vision stage needs at least one layer; depths are {:?}", v.depths));
        }
        if v.hidden_size % v.num_attention_heads != 0 || t.hidden_size % t.num_attention_heads != 0 {
            return fail(format!(
                "hidden sizes must be divisible by the head counts (vision {}/{}, text {}/{})",
                v.hidden_size, v.num_attention_heads, t.hidden_size, t.num_attention_heads
            ));
        }
        if v.patch_size == 0 || v.image_size < v.patch_size {
            return fail(format!(
                "vision patch_size {} must be positive and at most image_size {}",
                v.patch_size, v.image_size
            ));
        }
        if v.num_channels != 3 {
            return fail(format!("vision num_channels must be 3 (RGB), got {}", v.num_channels));
        }
        let (tokens, channels) = v.assign_dims();
        if v.assign_mlp_ratio.is_empty() || tokens == 0 || channels == 0 {
            return fail(format!("assign_mlp_ratio {:?} gives an empty MLP", v.assign_mlp_ratio));
        }
        if t.num_hidden_layers == 0 || t.max_position_embeddings < 2 {
            return fail("the text tower needs a layer and at least 2 positions".into());
        }
        Ok(())
    }

    /// Groups the vision tower ends with (the last grouping stage's output).
    pub fn final_groups(&self) -> usize {
        let v = &self.vision_config;
        let last = v.num_group_tokens.iter().rposition(|&g| g > 0).expect("validated: stage 0 groups");
        v.num_output_groups[last]
    }

    /// `nvidia/groupvit-gcc-yfcc` (and `-redcaps`, the same shape): the classes' defaults.
    pub fn gcc_yfcc() -> Self {
        Self::from_json(r#"{"model_type": "groupvit"}"#).expect("defaults are valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_hub_sizes() {
        let c = GroupVitConfig::gcc_yfcc();
        assert_eq!(c.vision_config.depths, vec![6, 3, 3]);
        assert_eq!(c.vision_config.assign_dims(), (192, 1536));
        assert_eq!(c.text_config.hidden_size, 256);
        assert_eq!(c.final_groups(), 8);
        assert_eq!(c.projection_intermediate_dim, 4096);
    }

    #[test]
    fn legacy_dicts_override_and_bad_stages_are_named() {
        let c = GroupVitConfig::from_json(
            r#"{"model_type": "groupvit", "vision_config": {"hidden_size": 48, "num_attention_heads": 4},
                "vision_config_dict": {"hidden_size": 96}}"#,
        );
        assert_eq!(c.unwrap().vision_config.hidden_size, 96);
        let err = GroupVitConfig::from_json(
            r#"{"model_type": "groupvit", "vision_config": {"depths": [1, 1], "num_group_tokens": [4, 2], "num_output_groups": [3, 2]}}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("must output as many groups"), "{err}");
        let err = GroupVitConfig::from_json(r#"{"model_type": "clip"}"#).unwrap_err();
        assert!(err.to_string().contains("'clip'"), "{err}");
    }
}
