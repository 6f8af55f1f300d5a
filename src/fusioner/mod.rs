//! Fusioner (Ma et al., BMVC 2022, "Open-vocabulary Semantic Segmentation with Frozen
//! Vision-Language Models"; chaofanma/Fusioner @ 01985ed): a frozen image encoder and a frozen
//! text encoder made into a segmenter by a light fusion transformer and a convolutional decoder
//! ([`head`]) trained on a little segmentation data.
//!
//! The frozen encoders are a CLIP checkpoint's towers (any size: the repository hard-codes
//! ViT-L/14, here it is the checkpoint's config): image tokens are `ln_post(patch tokens) @ proj`,
//! L2-normalised, per crop; class embeddings are the text tower's, per class the renormalised
//! mean of its normalised template embeddings.
//!
//! A Fusioner checkpoint is one folder: `config.json` (`model_type: fusioner`, the CLIP config
//! under `clip`, the head's sizes under `fusion_config`, the image statistics and the crop)
//! and one weights file with the CLIP weights under their hub keys plus `fusion.*` and
//! `decoder.*` under the repository's module names. `wordmask train fusioner` writes them.

pub mod head;

use std::any::Any;

use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

pub use head::{FusionConfig, FusionHead, HeadOutput, ParamVisitor};

use crate::clip::{ClipConfig, ClipModel};
use crate::error::{Error, Result};
use crate::loader::WeightLoader;
use crate::network::{ImageEmbedding, Network, field, read_config};
use crate::preprocess::Preprocessor;

/// The image statistics of the repository's PASCAL-5i preset (`dataset/augumenter.py`).
pub const PASCAL_MEAN: [f32; 3] = [0.4554, 0.4298, 0.3955];
pub const PASCAL_STD: [f32; 3] = [0.1181, 0.1189, 0.1338];
/// The COCO-20i preset.
pub const COCO_MEAN: [f32; 3] = [0.4650, 0.4357, 0.3973];
pub const COCO_STD: [f32; 3] = [0.1152, 0.1153, 0.1352];

/// A Fusioner checkpoint's `config.json`.
#[derive(Debug, Clone)]
pub struct FusionerConfig {
    pub clip: ClipConfig,
    /// `clip` as written, kept so that a trained checkpoint repeats it.
    pub clip_json: serde_json::Value,
    pub fusion: FusionConfig,
    pub image_mean: [f32; 3],
    pub image_std: [f32; 3],
    /// Square crops the head is trained and evaluated on (the repository's `target_size`).
    pub crop_size: usize,
    /// Sliding-window step at evaluation (`int(crop * 2/3)` in the repository).
    pub stride: usize,
}

/// The fields of `config.json` besides `clip`, as written.
#[derive(Serialize, Deserialize)]
struct Written {
    model_type: String,
    architectures: Vec<String>,
    clip: serde_json::Value,
    fusion_config: FusionConfig,
    image_mean: [f32; 3],
    image_std: [f32; 3],
    crop_size: usize,
    stride: usize,
}

impl FusionerConfig {
    pub fn from_json(text: &str) -> Result<Self> {
        let value = read_config(text, "fusioner", "Fusioner")?;
        let clip_json = value
            .get("clip")
            .filter(|v| v.is_object())
            .cloned()
            .ok_or_else(|| Error::Config("config.json has no `clip` object (the frozen CLIP's config)".into()))?;
        let clip = ClipConfig::from_value(&clip_json)?;
        let crop_size = field(&value, "crop_size", clip.vision_config.image_size)?;
        let config = FusionerConfig {
            fusion: field(&value, "fusion_config", FusionConfig::default())?,
            image_mean: field(&value, "image_mean", PASCAL_MEAN)?,
            image_std: field(&value, "image_std", PASCAL_STD)?,
            stride: field(&value, "stride", crop_size * 2 / 3)?,
            crop_size,
            clip,
            clip_json,
        };
        config.validate()?;
        Ok(config)
    }

    /// A head of `fusion` sizes on a CLIP whose `config.json` is `clip_json`.
    pub fn new(clip_json: serde_json::Value, fusion: FusionConfig, mean: [f32; 3], std: [f32; 3]) -> Result<Self> {
        let clip = ClipConfig::from_value(&clip_json)?;
        let crop_size = clip.vision_config.image_size;
        let config = FusionerConfig {
            clip,
            clip_json,
            fusion,
            image_mean: mean,
            image_std: std,
            crop_size,
            stride: crop_size * 2 / 3,
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<()> {
        self.fusion.validate()?;
        let patch = self.clip.vision_config.patch_size;
        if self.crop_size < patch || !self.crop_size.is_multiple_of(patch) {
            return Err(Error::Config(format!(
                "crop_size {} must be a positive multiple of the CLIP patch size {patch}",
                self.crop_size
            )));
        }
        if self.stride == 0 || self.stride > self.crop_size {
            return Err(Error::Config(format!(
                "stride {} must be in [1, crop_size = {}]",
                self.stride, self.crop_size
            )));
        }
        if self.image_std.iter().any(|s| !(*s > 0.0)) {
            return Err(Error::Config(format!("image_std must be positive, got {:?}", self.image_std)));
        }
        Ok(())
    }

    /// `config.json` as written next to trained weights.
    pub fn to_json(&self) -> String {
        let written = Written {
            model_type: "fusioner".into(),
            architectures: vec!["Fusioner".into()],
            clip: self.clip_json.clone(),
            fusion_config: self.fusion,
            image_mean: self.image_mean,
            image_std: self.image_std,
            crop_size: self.crop_size,
            stride: self.stride,
        };
        serde_json::to_string_pretty(&written).unwrap_or_default() + "\n"
    }

    /// Patches per side of a crop.
    pub fn grid(&self) -> usize {
        self.crop_size / self.clip.vision_config.patch_size
    }
}

/// A frozen CLIP and a Fusioner head.
#[derive(Debug, Clone)]
pub struct FusionerModel {
    pub config: FusionerConfig,
    pub clip: ClipModel,
    pub head: FusionHead,
}

impl FusionerModel {
    pub fn load(config: FusionerConfig, loader: &mut WeightLoader) -> Self {
        let clip = ClipModel::load(config.clip.clone(), loader);
        let proj = config.clip.projection_dim;
        let head = FusionHead::load(loader, config.fusion, proj, proj);
        FusionerModel { config, clip, head }
    }

    /// The frozen image encoder on normalised crops `[b, 3, crop, crop]`: L2-normalised
    /// projected patch tokens `[b, gh*gw, proj]` and the grid.
    pub fn image_tokens(&self, crops: Tensor<4>) -> Result<(Tensor<3>, (usize, usize))> {
        let f = self.clip.image_features(crops)?;
        Ok((f.patch_tokens, f.vision.grid))
    }

    /// Logits `[b, k, crop, crop]` (and the steps before) of crops against class embeddings
    /// `[k, proj]` (the same classes for every crop).
    pub fn crop_logits(&self, crops: Tensor<4>, classes: &Tensor<2>) -> Result<HeadOutput> {
        let b = crops.dims()[0];
        let (visual, grid) = self.image_tokens(crops)?;
        let text = classes.clone().unsqueeze::<3>().repeat_dim(0, b);
        Ok(self.head.forward(visual, grid, text, self.config.crop_size))
    }
}

impl Network for FusionerModel {
    fn device(&self) -> Device {
        self.clip.device()
    }

    fn image_size(&self) -> usize {
        self.config.crop_size
    }

    fn default_preprocessor(&self) -> Preprocessor {
        let size = self.config.crop_size;
        Preprocessor { short_side: size, crop: None, mean: self.config.image_mean, std: self.config.image_std }
    }

    fn logit_scale(&self) -> f32 {
        self.clip.logit_scale
    }

    fn text_context(&self) -> usize {
        self.clip.text_context()
    }

    fn text_features(&self, ids: &[Vec<u32>]) -> Result<Tensor<2>> {
        self.clip.text_features(ids)
    }

    fn embed_image(&self, pixels: Tensor<4>) -> Result<ImageEmbedding> {
        self.clip.embed_image(pixels)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
