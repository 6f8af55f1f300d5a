//! GroupViT configuration, read from the HF `config.json` of a `GroupViTModel` (transformers
//! `GroupViTConfig`, `GroupViTTextConfig`, `GroupViTVisionConfig`); missing keys take those
//! classes' defaults, which are the `nvidia/groupvit-gcc-yfcc` sizes.

use serde::{Deserialize, Serialize};

use crate::clip::TextConfig;
use crate::error::{Error, Result};
use crate::network::{ConfigJson, Fields, field, limits, overlay, sub_config};
use crate::nn::{Activation, TowerDims};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupVitVisionConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    /// Encoder layers of each stage.
    pub depths: Vec<usize>,
    /// Group tokens of each stage; 0 = a stage without grouping (only the last may be).
    pub num_group_tokens: Vec<usize>,
    /// Groups each grouping block outputs.
    pub num_output_groups: Vec<usize>,
    pub num_attention_heads: usize,
    pub image_size: usize,
    pub patch_size: usize,
    pub num_channels: usize,
    pub hidden_act: Activation,
    pub layer_norm_eps: f64,
    /// Added to each group's assignment count before normalising (`assign_eps`).
    pub assign_eps: f64,
    /// Hidden sizes of the grouping block's token and channel MLPs, as multiples of the width.
    pub assign_mlp_ratio: Vec<f64>,
}

impl Default for GroupVitVisionConfig {
    /// `GroupViTVisionConfig()`'s defaults.
    fn default() -> Self {
        GroupVitVisionConfig {
            hidden_size: 384,
            intermediate_size: 1536,
            depths: vec![6, 3, 3],
            num_group_tokens: vec![64, 8, 0],
            num_output_groups: vec![64, 8, 8],
            num_attention_heads: 6,
            image_size: 224,
            patch_size: 16,
            num_channels: 3,
            hidden_act: Activation::Gelu,
            layer_norm_eps: 1e-5,
            assign_eps: 1.0,
            assign_mlp_ratio: vec![0.5, 4.0],
        }
    }
}

impl GroupVitVisionConfig {
    /// `(tokens_dim, channels_dim)` of the grouping blocks' MLPs (`int(ratio * width)`); zeros
    /// when no ratio is given.
    pub fn assign_dims(&self) -> (usize, usize) {
        let (a, b) = match self.assign_mlp_ratio[..] {
            [] => (0.0, 0.0), // refused by `validate`
            [r] => (r, r),
            [a, b, ..] => (a, b),
        };
        ((a * self.hidden_size as f64) as usize, (b * self.hidden_size as f64) as usize)
    }

    pub fn dims(&self) -> TowerDims {
        TowerDims {
            width: self.hidden_size,
            intermediate: self.intermediate_size,
            heads: self.num_attention_heads,
            eps: self.layer_norm_eps,
            act: self.hidden_act,
        }
    }
}

/// `GroupViTTextConfig()`'s defaults: CLIP's text tower at width 256 with 4 heads.
pub const GROUPVIT_TEXT: TextConfig =
    TextConfig { hidden_size: 256, intermediate_size: 1024, num_attention_heads: 4, ..TextConfig::CLIP };

/// A `GroupViTModel` configuration.
#[derive(Debug, Clone)]
pub struct GroupVitConfig {
    pub text_config: TextConfig,
    pub vision_config: GroupVitVisionConfig,
    pub projection_dim: usize,
    pub projection_intermediate_dim: usize,
}

impl GroupVitConfig {
    /// Parse a HF `config.json` with `model_type` `groupvit`.
    pub fn from_json(text: &str) -> Result<Self> {
        Self::from_config(&ConfigJson::parse(text)?)
    }

    /// [`Self::from_json`] over a `config.json` parsed once.
    pub fn from_config(config: &ConfigJson) -> Result<Self> {
        let value = config.expect("groupvit", "GroupViTModel")?;
        let config = GroupVitConfig {
            text_config: overlay(&GROUPVIT_TEXT, &sub_config(value, "text"), "text_config")?,
            vision_config: overlay(&GroupVitVisionConfig::default(), &sub_config(value, "vision"), "vision_config")?,
            projection_dim: field(value, "projection_dim", 256)?,
            projection_intermediate_dim: field(value, "projection_intermediate_dim", 4096)?,
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<()> {
        let v = &self.vision_config;
        let f = Fields("vision_config");
        f.size("hidden_size", v.hidden_size, limits::WIDTH)?;
        f.size("intermediate_size", v.intermediate_size, limits::INTERMEDIATE)?;
        f.size("num_attention_heads", v.num_attention_heads, limits::WIDTH)?;
        f.size("image_size", v.image_size, limits::IMAGE_SIZE)?;
        f.size("patch_size", v.patch_size, v.image_size)?;
        f.grid(v.image_size, v.patch_size)?;
        f.eps("layer_norm_eps", v.layer_norm_eps)?;
        // `assign_eps` is added to each group's share before dividing by it.
        f.positive("assign_eps", v.assign_eps)?;
        f.sizes("depths", &v.depths, 1, limits::LAYERS)?;
        f.range("depths (in all)", v.depths.iter().sum(), 1, limits::LAYERS)?;
        f.sizes("num_group_tokens", &v.num_group_tokens, 0, limits::TOKENS)?;
        f.sizes("num_output_groups", &v.num_output_groups, 0, limits::TOKENS)?;
        for (i, r) in v.assign_mlp_ratio.iter().enumerate() {
            // Each ratio times the width is an MLP's width.
            f.number(&format!("assign_mlp_ratio[{i}]"), *r, 0.0, (limits::INTERMEDIATE / v.hidden_size) as f64)?;
        }
        let top = Fields("");
        top.size("projection_dim", self.projection_dim, limits::WIDTH)?;
        top.size("projection_intermediate_dim", self.projection_intermediate_dim, limits::INTERMEDIATE)?;
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
        if v.depths.contains(&0) {
            return fail(format!("every vision stage needs at least one layer; depths are {:?}", v.depths));
        }
        if !v.hidden_size.is_multiple_of(v.num_attention_heads) {
            return fail(format!(
                "vision hidden_size {} is not divisible by num_attention_heads {}",
                v.hidden_size, v.num_attention_heads
            ));
        }
        self.text_config.validate()?;
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

    /// As transformers (`GroupViTConfig.__init__`): a legacy dict builds the whole tower, so a
    /// key only `vision_config` sets falls back to the default (heads 4 become 6).
    #[test]
    fn legacy_dicts_override_and_bad_stages_are_named() {
        let c = GroupVitConfig::from_json(
            r#"{"model_type": "groupvit", "vision_config": {"hidden_size": 48, "num_attention_heads": 4},
                "vision_config_dict": {"hidden_size": 96}}"#,
        )
        .unwrap();
        assert_eq!((c.vision_config.hidden_size, c.vision_config.num_attention_heads), (96, 6));
        let err = GroupVitConfig::from_json(
            r#"{"model_type": "groupvit", "vision_config": {"depths": [1, 1], "num_group_tokens": [4, 2], "num_output_groups": [3, 2]}}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("must output as many groups"), "{err}");
        let err = GroupVitConfig::from_json(r#"{"model_type": "clip"}"#).unwrap_err();
        assert!(err.to_string().contains("'clip'"), "{err}");
    }
}
