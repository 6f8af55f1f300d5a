//! A loaded model, ready for the light and heavy passes: the entry point shared by the CLI and
//! the browser bindings. Everything comes from bytes (`config.json`, weights, optional
//! `preprocessor_config.json`), so native code and the page load the same way. The
//! checkpoint's `model_type` picks the architecture: `clip` (dense engine) or `groupvit`.

use std::fmt;
use std::str::FromStr;

use burn::tensor::{Device, Tensor, TensorData};

use crate::checkpoint::Checkpoint;
use crate::clip::ClipModel;
use crate::error::{Error, Result};
use crate::groupvit::GroupVitModel;
use crate::labels::Label;
use crate::loader::ComputeDtype;
use crate::preprocess::{Preprocessor, RgbImage};
use crate::tokenizer::Tokenizer;

/// The single prompt template of the cheap mode (CLIP paper).
pub const SINGLE_TEMPLATE: &str = "a photo of a {}.";

/// The GroupViT repository's pixel normalisation (ImageNet statistics), used when a GroupViT
/// checkpoint comes without `preprocessor_config.json`.
const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// The network behind a [`Model`].
#[derive(Debug, Clone)]
pub enum Network {
    Clip(ClipModel),
    GroupVit(GroupVitModel),
}

/// How a model segments: dense CLIP (the last block replaced, per-patch scores) or GroupViT's
/// learned grouping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    Dense,
    GroupVit,
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Engine::Dense => "dense",
            Engine::GroupVit => "groupvit",
        })
    }
}

impl FromStr for Engine {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "dense" => Ok(Engine::Dense),
            "groupvit" => Ok(Engine::GroupVit),
            other => Err(Error::invalid(format!("engine must be auto, dense or groupvit, got {other}"))),
        }
    }
}

/// `model_type` of a `config.json`, for choosing the loader before parsing the rest.
pub fn model_type(config_json: &str) -> Result<String> {
    let value: serde_json::Value =
        serde_json::from_str(config_json).map_err(|e| Error::Config(format!("config.json is not valid JSON: {e}")))?;
    Ok(value.get("model_type").and_then(|v| v.as_str()).unwrap_or("").to_string())
}

pub struct Model {
    pub network: Network,
    pub tokenizer: Tokenizer,
    pub preprocessor: Preprocessor,
}

/// What `embed-image` reports.
#[derive(Debug, Clone)]
pub struct ImageEmbedding {
    /// L2-normalised, `[1, proj]`.
    pub embeds: Tensor<2>,
    /// `"patch"` tokens `(gh, gw)` for CLIP, `"group"` tokens `(groups, 1)` for GroupViT.
    pub tokens: (&'static str, usize, usize),
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
    /// Load any supported checkpoint; `config.json`'s `model_type` picks the architecture.
    pub fn from_bytes(
        config_json: &str,
        weights: &[u8],
        weights_name: &str,
        preprocessor_json: Option<&str>,
        device: &Device,
        dtype: ComputeDtype,
    ) -> Result<Self> {
        let kind = model_type(config_json)?;
        if kind != "clip" && kind != "groupvit" {
            let shown = if kind.is_empty() { "none".to_string() } else { format!("'{kind}'") };
            return Err(Error::Config(format!(
                "model_type is {shown}; wordmask reads CLIP (model_type 'clip', CLIPModel) and GroupViT (model_type 'groupvit', GroupViTModel) checkpoints"
            )));
        }
        let checkpoint = Checkpoint::from_bytes(weights, weights_name)?;
        let network = if kind == "groupvit" {
            Network::GroupVit(GroupVitModel::load(config_json, &checkpoint, device, dtype)?)
        } else {
            Network::Clip(ClipModel::load(config_json, &checkpoint, device, dtype)?)
        };
        Self::new(network, preprocessor_json)
    }

    pub fn from_clip(clip: ClipModel, preprocessor_json: Option<&str>) -> Result<Self> {
        Self::new(Network::Clip(clip), preprocessor_json)
    }

    pub fn new(network: Network, preprocessor_json: Option<&str>) -> Result<Self> {
        let size = match &network {
            Network::Clip(m) => m.config.vision_config.image_size,
            Network::GroupVit(m) => m.config.vision_config.image_size,
        };
        let preprocessor = match (preprocessor_json, &network) {
            (Some(text), _) => Preprocessor::from_json(text, size)?,
            (None, Network::Clip(_)) => Preprocessor::clip(size),
            (None, Network::GroupVit(_)) => {
                Preprocessor { mean: IMAGENET_MEAN, std: IMAGENET_STD, ..Preprocessor::clip(size) }
            }
        };
        Ok(Model { network, tokenizer: Tokenizer::new(), preprocessor })
    }

    /// The engine this checkpoint segments with.
    pub fn engine(&self) -> Engine {
        match self.network {
            Network::Clip(_) => Engine::Dense,
            Network::GroupVit(_) => Engine::GroupVit,
        }
    }

    /// The CLIP network, for the dense engine.
    pub fn clip(&self) -> Result<&ClipModel> {
        match &self.network {
            Network::Clip(m) => Ok(m),
            Network::GroupVit(_) => Err(Error::invalid(
                "the dense engine needs a CLIP checkpoint; this is a GroupViT checkpoint (use the groupvit engine)",
            )),
        }
    }

    /// The GroupViT network, for the groupvit engine.
    pub fn groupvit(&self) -> Result<&GroupVitModel> {
        match &self.network {
            Network::GroupVit(m) => Ok(m),
            Network::Clip(_) => Err(Error::invalid(
                "the groupvit engine needs a GroupViT checkpoint (model_type 'groupvit'); this is a CLIP checkpoint (use the dense engine)",
            )),
        }
    }

    /// Check that `engine` (`None` = the checkpoint's own) can run this model.
    pub fn resolve_engine(&self, engine: Option<Engine>) -> Result<Engine> {
        match engine {
            None => Ok(self.engine()),
            Some(Engine::Dense) => self.clip().map(|_| Engine::Dense),
            Some(Engine::GroupVit) => self.groupvit().map(|_| Engine::GroupVit),
        }
    }

    pub fn device(&self) -> Device {
        match &self.network {
            Network::Clip(m) => m.device(),
            Network::GroupVit(m) => m.device(),
        }
    }

    /// L2-normalised text embeddings, one row per text. `-> [texts, proj]`
    pub fn embed_texts(&self, texts: &[&str]) -> Result<Tensor<2>> {
        match &self.network {
            Network::Clip(m) => m.embed_texts(&self.tokenizer, texts),
            Network::GroupVit(m) => m.embed_texts(&self.tokenizer, texts),
        }
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

    /// Preprocessed pixels `[1, 3, h, w]` on the model's device.
    pub fn pixels(&self, image: &RgbImage, size: ImageSize) -> Tensor<4> {
        let (chw, (w, h)) = self.preprocessor_for(size).apply(image);
        Tensor::from_data(TensorData::new(chw, [1, 3, h, w]), &self.device())
    }

    /// The heavy pass for one image: its embedding and the shape of its tokens.
    pub fn embed_image(&self, image: &RgbImage, size: ImageSize) -> Result<ImageEmbedding> {
        let pixels = self.pixels(image, size);
        match &self.network {
            Network::Clip(m) => {
                let f = m.image_features(pixels)?;
                Ok(ImageEmbedding { embeds: f.embeds, tokens: ("patch", f.vision.grid.0, f.vision.grid.1) })
            }
            Network::GroupVit(m) => {
                let f = m.image_features(pixels)?;
                let groups = f.group_embeds.dims()[1];
                Ok(ImageEmbedding { embeds: f.embeds, tokens: ("group", groups, 1) })
            }
        }
    }

    /// Label probabilities: `softmax(logit_scale * cos(image, text))`. `-> [images, texts]`
    pub fn classify(&self, image_embeds: Tensor<2>, text_embeds: Tensor<2>) -> Tensor<2> {
        let scale = match &self.network {
            Network::Clip(m) => m.logit_scale,
            Network::GroupVit(m) => m.logit_scale,
        };
        burn::tensor::activation::softmax(image_embeds.matmul(text_embeds.transpose()).mul_scalar(scale), 1)
    }
}
