//! CLIP (Radford et al., 2021, "Learning Transferable Visual Models From Natural Language
//! Supervision") in burn, matching transformers `CLIPModel`
//! (huggingface/transformers v5.23.0, `src/transformers/models/clip/modeling_clip.py`).
//!
//! Built from a HF `config.json`; weights come from the byte loader with the hub key layout
//! (`vision_model.*`, `text_model.*`, `visual_projection`, `text_projection`, `logit_scale`).

pub mod config;
pub mod text;
pub mod vision;

use std::any::Any;

use burn::tensor::{Device, Tensor};

pub use config::{ClipConfig, TextConfig, VisionConfig};
pub use text::TextTransformer;
pub use vision::{VisionOutput, VisionTransformer};

use crate::error::Result;
use crate::loader::WeightLoader;
use crate::network::{ImageEmbedding, Network, Tokens};
use crate::nn::{Linear, l2_normalize};

/// Image-side outputs.
#[derive(Debug, Clone)]
pub struct ImageFeatures {
    /// Projected, L2-normalised pooled embeddings, `[b, proj]`.
    pub embeds: Tensor<2>,
    /// Projected, L2-normalised patch tokens of the last block (vanilla dense path),
    /// `[b, gh*gw, proj]`.
    pub patch_tokens: Tensor<3>,
    /// Raw tower outputs, for the dense engine.
    pub vision: VisionOutput,
}

#[derive(Debug, Clone)]
pub struct ClipModel {
    pub config: ClipConfig,
    pub vision_model: VisionTransformer,
    pub text_model: TextTransformer,
    /// `visual_projection.weight`, `[proj, vision width]`, no bias.
    pub visual_projection: Linear,
    /// `text_projection.weight`, `[proj, text width]`, no bias.
    pub text_projection: Linear,
    /// `exp(logit_scale)`, the temperature of the image-text logits.
    pub logit_scale: f32,
}

impl ClipModel {
    /// Walk the checkpoint with `loader`, building every tensor the config implies.
    pub fn load(config: ClipConfig, loader: &mut WeightLoader) -> Self {
        let proj = config.projection_dim;
        let vision_model = VisionTransformer::load(loader.pp("vision_model"), &config.vision_config);
        let text_model = TextTransformer::load(loader.pp("text_model"), &config.text_config);
        let visual_projection =
            Linear::load(loader.pp("visual_projection"), config.vision_config.hidden_size, proj, false);
        let text_projection = Linear::load(loader.pp("text_projection"), config.text_config.hidden_size, proj, false);
        let logit_scale = loader.host("logit_scale", &[]).map(|v| v[0].exp()).unwrap_or(1.0);
        ClipModel { config, vision_model, text_model, visual_projection, text_projection, logit_scale }
    }

    /// Run the vision tower on CLIP-normalised pixels `[b, 3, H, W]`.
    pub fn image_features(&self, pixels: Tensor<4>) -> Result<ImageFeatures> {
        let vision = self.vision_model.forward(pixels)?;
        let [b, n, d] = vision.last_hidden.dims();
        let normed = self.vision_model.post_layernorm.forward(vision.last_hidden.clone());
        let pooled = normed.clone().slice([0..b, 0..1, 0..d]).reshape([b, d]);
        let embeds = l2_normalize(self.visual_projection.forward(pooled));
        let patches = normed.slice([0..b, 1..n, 0..d]);
        let patch_tokens = l2_normalize(self.visual_projection.forward(patches));
        Ok(ImageFeatures { embeds, patch_tokens, vision })
    }
}

impl Network for ClipModel {
    fn device(&self) -> Device {
        self.text_projection.weight.device()
    }

    fn image_size(&self) -> usize {
        self.config.vision_config.image_size
    }

    fn logit_scale(&self) -> f32 {
        self.logit_scale
    }

    fn text_context(&self) -> usize {
        self.text_model.context
    }

    fn text_width(&self) -> usize {
        self.text_projection.weight.dims()[0]
    }

    fn text_features(&self, ids: &[Vec<u32>]) -> Result<Tensor<2>> {
        Ok(self.text_projection.forward(self.text_model.forward(ids)?))
    }

    fn embed_image(&self, pixels: Tensor<4>) -> Result<ImageEmbedding> {
        let f = self.image_features(pixels)?;
        let (rows, cols) = f.vision.grid;
        Ok(ImageEmbedding { embeds: f.embeds, tokens: Tokens::Patches { rows, cols } })
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
