//! A loaded model, ready for the light and heavy passes: the entry point shared by the CLI and
//! the browser bindings. Everything comes from bytes (`config.json`, weights, optional
//! `preprocessor_config.json`), so native code and the page load the same way.

use burn::tensor::{Device, Tensor};

use crate::checkpoint::Checkpoint;
use crate::clip::{ClipModel, ImageFeatures};
use crate::error::Result;
use crate::labels::Label;
use crate::loader::ComputeDtype;
use crate::preprocess::{Preprocessor, RgbImage};
use crate::tokenizer::Tokenizer;

/// The single prompt template of the cheap mode (CLIP paper).
pub const SINGLE_TEMPLATE: &str = "a photo of a {}.";

pub struct Model {
    pub clip: ClipModel,
    pub tokenizer: Tokenizer,
    pub preprocessor: Preprocessor,
}

/// How to prepare an image for the vision tower.
#[derive(Debug, Clone, Copy, Default)]
pub struct ImageSize {
    /// Short side in pixels; `None` = the checkpoint's preprocessing.
    pub short_side: Option<usize>,
    /// Keep the whole resized image instead of the centre square.
    pub no_crop: bool,
}

impl Model {
    pub fn from_bytes(
        config_json: &str,
        weights: &[u8],
        weights_name: &str,
        preprocessor_json: Option<&str>,
        device: &Device,
        dtype: ComputeDtype,
    ) -> Result<Self> {
        let checkpoint = Checkpoint::from_bytes(weights, weights_name)?;
        let clip = ClipModel::load(config_json, &checkpoint, device, dtype)?;
        Ok(Self::from_clip(clip, preprocessor_json)?)
    }

    pub fn from_clip(clip: ClipModel, preprocessor_json: Option<&str>) -> Result<Self> {
        let size = clip.config.vision_config.image_size;
        let preprocessor = match preprocessor_json {
            Some(text) => Preprocessor::from_json(text, size)?,
            None => Preprocessor::clip(size),
        };
        Ok(Model { clip, tokenizer: Tokenizer::new(), preprocessor })
    }

    /// L2-normalised text embeddings, one row per text. `-> [texts, proj]`
    pub fn embed_texts(&self, texts: &[&str]) -> Result<Tensor<2>> {
        self.clip.embed_texts(&self.tokenizer, texts)
    }

    /// One embedding per label: the label put into `template` (`{}` is replaced); for labels with
    /// synonyms, the first synonym. `-> [labels, proj]`
    pub fn embed_labels(&self, labels: &[Label], template: &str) -> Result<Tensor<2>> {
        let prompts: Vec<String> = labels.iter().map(|l| template.replace("{}", &l.name)).collect();
        let refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
        self.embed_texts(&refs)
    }

    /// The preprocessing for `size`.
    pub fn preprocessor_for(&self, size: ImageSize) -> Preprocessor {
        let mut p = self.preprocessor.clone();
        if let Some(s) = size.short_side {
            p.short_side = s;
            p.crop = Some((s, s));
        }
        if size.no_crop {
            p.crop = None;
        }
        p
    }

    /// The heavy pass for one image.
    pub fn image_features(&self, image: &RgbImage, size: ImageSize) -> Result<ImageFeatures> {
        let (chw, (w, h)) = self.preprocessor_for(size).apply(image);
        self.clip.image_features(self.clip.pixels_tensor(chw, h, w))
    }
}
