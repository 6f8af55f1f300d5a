//! CLIP (Radford et al., 2021, "Learning Transferable Visual Models From Natural Language
//! Supervision") in burn, matching transformers `CLIPModel`
//! (huggingface/transformers v5.23.0, `src/transformers/models/clip/modeling_clip.py`).
//!
//! Built from a HF `config.json`; weights come from the byte loader with the hub key layout
//! (`vision_model.*`, `text_model.*`, `visual_projection`, `text_projection`, `logit_scale`).

pub mod config;
pub mod interpolate;
pub mod layers;
pub mod text;
pub mod vision;

use burn::tensor::{Device, Tensor, TensorData};

pub use config::{Activation, ClipConfig, TextConfig, VisionConfig};
use layers::{Linear, l2_normalize};
pub use text::TextTransformer;
pub use vision::{VisionOutput, VisionTransformer};

use crate::checkpoint::Checkpoint;
use crate::error::Result;
use crate::loader::{ComputeDtype, WeightLoader};
use crate::tokenizer::Tokenizer;

/// Image-side outputs.
#[derive(Debug, Clone)]
pub struct ImageFeatures {
    /// Projected, L2-normalised pooled embeddings, `[b, proj]`.
    pub embeds: Tensor<2>,
    /// Projected, L2-normalised patch tokens of the last block (vanilla dense path),
    /// `[b, gh*gw, proj]`.
    pub patch_tokens: Tensor<3>,
    /// Raw tower outputs, for the dense methods.
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
    pub fn load_with(config: ClipConfig, loader: &mut WeightLoader) -> Self {
        let proj = config.projection_dim;
        let vision_model = VisionTransformer::load(loader, "vision_model", &config.vision_config);
        let text_model = TextTransformer::load(loader, "text_model", &config.text_config);
        let visual_projection =
            Linear::load(loader, "visual_projection", config.vision_config.hidden_size, proj, false);
        let text_projection = Linear::load(loader, "text_projection", config.text_config.hidden_size, proj, false);
        let logit_scale = loader.host("logit_scale", &[]).map(|v| v[0].exp()).unwrap_or(1.0);
        ClipModel { config, vision_model, text_model, visual_projection, text_projection, logit_scale }
    }

    /// Build from `config.json` text and a checkpoint, reporting every key problem at once.
    pub fn load(config_json: &str, checkpoint: &Checkpoint, device: &Device, dtype: ComputeDtype) -> Result<Self> {
        let config = ClipConfig::from_json(config_json)?;
        let mut loader = WeightLoader::new(checkpoint, device, dtype, "CLIPModel")?;
        let model = Self::load_with(config, &mut loader);
        loader.finish()?;
        Ok(model)
    }

    /// Random weights (for benchmarks only), the same shapes a checkpoint would have.
    pub fn random(config: ClipConfig, device: &Device) -> Self {
        Self::load_with(config, &mut WeightLoader::random(device))
    }

    pub fn device(&self) -> Device {
        self.text_projection.weight.device()
    }

    /// Embed token rows (all of one length). `-> [b, proj]`, L2-normalised.
    pub fn text_embeds_from_ids(&self, ids: &[Vec<u32>]) -> Result<Tensor<2>> {
        self.text_model.check_ids(ids)?;
        let pooled = self.text_model.forward(ids);
        Ok(l2_normalize(self.text_projection.forward(pooled)))
    }

    /// Tokenize and embed. `-> [texts, proj]`, L2-normalised.
    pub fn embed_texts(&self, tokenizer: &Tokenizer, texts: &[&str]) -> Result<Tensor<2>> {
        let ids = tokenizer.encode_batch(texts, self.text_model.context);
        self.text_embeds_from_ids(&ids)
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

    /// Convenience: pixels from host memory (`[3, h, w]`, CHW) as a batch of one.
    pub fn pixels_tensor(&self, chw: Vec<f32>, h: usize, w: usize) -> Tensor<4> {
        Tensor::from_data(TensorData::new(chw, [1, 3, h, w]), &self.device())
    }
}
