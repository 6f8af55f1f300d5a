//! Fusioner (Ma et al., BMVC 2022, "Open-vocabulary Semantic Segmentation with Frozen
//! Vision-Language Models"; chaofanma/Fusioner @ 01985ed): a frozen image encoder and a frozen
//! text encoder made into a segmenter by a light fusion transformer and a convolutional decoder
//! ([`head`]) trained on a little segmentation data.
//!
//! The frozen encoders are a CLIP checkpoint's towers (any size: the repository hard-codes
//! ViT-L/14, here it is the checkpoint's config): image tokens are `ln_post(patch tokens) @ proj`,
//! L2-normalised, per crop; class embeddings are the text tower's, per class the renormalised
//! mean of its normalised template embeddings. The image encoder may instead be a vision-only
//! ViT (DINO, in `ViTModel`'s layout): its final patch tokens, L2-normalised, with CLIP's text
//! tower, as the paper pairs them; the fusion learns the pairing.
//!
//! The text encoder may instead be a language-only BERT ([`text`]): its pooled prompt
//! embeddings, with the same templates and averaging; any image encoder pairs with it.
//!
//! A Fusioner checkpoint is one folder: `config.json` (`model_type: fusioner`; the CLIP config
//! under `clip` when a CLIP tower is used, a ViT's under `vision` when it is the image encoder,
//! a BERT's with its pooling and vocabulary under `text` when it is the text encoder; the
//! head's sizes under `fusion_config`, the image statistics and the crop) and one weights file:
//! the CLIP towers in use under their hub keys, a ViT under `vision.`, a BERT under `text.`,
//! and `fusion.*` and `decoder.*` under the repository's module names. `wordmask train
//! fusioner` writes them.

mod backbone;
pub mod head;
pub mod text;

use std::any::Any;

use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

pub use backbone::{Backbone, CLIP_TEXT, CLIP_VISION, Named, NewHead, TextKind};
pub use head::{FusionConfig, FusionHead, HeadOutput, ParamVisitor};
pub use text::{BertText, BertTower, ClipText, DEFAULT_POOLING, TextModel, TextTower};

use crate::clip::{ClipConfig, VisionTransformer};
use crate::error::{Error, Result};
use crate::loader::WeightLoader;
use crate::network::{ConfigJson, Fields, ImageEmbedding, Network, Tokens, field, limits};
use crate::nn::{Linear, l2_normalize};
use crate::preprocess::{Preprocessor, Rounding};
use crate::tokenizer::Tokenizer;
use crate::vit::{VitConfig, VitModel};

/// The image statistics of the repository's PASCAL-5i preset (`dataset/augumenter.py`).
pub const PASCAL_MEAN: [f32; 3] = [0.4554, 0.4298, 0.3955];
pub const PASCAL_STD: [f32; 3] = [0.1181, 0.1189, 0.1338];
/// The COCO-20i preset.
pub const COCO_MEAN: [f32; 3] = [0.4650, 0.4357, 0.3973];
pub const COCO_STD: [f32; 3] = [0.1152, 0.1153, 0.1352];

/// A Fusioner checkpoint's `config.json`.
#[derive(Debug, Clone)]
pub struct FusionerConfig {
    /// The CLIP whose towers are used (its vision tower unless `vision` is given, its text tower
    /// unless `text` is BERT), and its JSON as written, kept so that a trained checkpoint
    /// repeats it. `None` when neither tower is CLIP's.
    pub clip: Option<(ClipConfig, serde_json::Value)>,
    /// A vision-only image encoder (`vision`, a `ViTConfig`), and its JSON as written.
    pub vision: Option<(VitConfig, serde_json::Value)>,
    /// The text encoder (`text`; absent: the CLIP's text tower).
    pub text: TextModel,
    pub fusion: FusionConfig,
    pub image_mean: [f32; 3],
    pub image_std: [f32; 3],
    /// Square crops the head is trained and evaluated on (the repository's `target_size`).
    pub crop_size: usize,
    /// Sliding-window step at evaluation (`int(crop * 2/3)` in the repository).
    pub stride: usize,
    /// What the encoders make of each other, worked out once when the config is read.
    dims: Dims,
}

/// The image encoder's patch size, input size and token width, and the text embedding's width.
#[derive(Debug, Clone, Copy)]
struct Dims {
    patch: usize,
    native: usize,
    visual: usize,
    text: usize,
}

/// The fields of `config.json`, as written.
#[derive(Serialize, Deserialize)]
struct Written {
    model_type: String,
    architectures: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    clip: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vision: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<serde_json::Value>,
    fusion_config: FusionConfig,
    image_mean: [f32; 3],
    image_std: [f32; 3],
    crop_size: usize,
    stride: usize,
}

/// The CLIP config is needed and absent.
fn no_clip() -> Error {
    Error::Config("config.json has no clip object (the frozen CLIP's config)".into())
}

/// The encoders' numbers, or the error that one of them is missing.
fn dims(clip: Option<&ClipConfig>, vision: Option<&VitConfig>, text: &TextModel) -> Result<Dims> {
    let (patch, native, visual) = match (vision, clip) {
        (Some(v), _) => (v.patch_size, v.image_size, v.hidden_size),
        (None, Some(c)) => (c.vision_config.patch_size, c.vision_config.image_size, c.projection_dim),
        (None, None) => return Err(no_clip()),
    };
    let text = text.width(clip).ok_or_else(no_clip)?;
    Ok(Dims { patch, native, visual, text })
}

impl FusionerConfig {
    pub fn from_json(text: &str) -> Result<Self> {
        Self::from_config(&ConfigJson::parse(text)?)
    }

    /// [`Self::from_json`] over a `config.json` parsed once.
    pub fn from_config(config: &ConfigJson) -> Result<Self> {
        let value = config.expect("fusioner", "Fusioner")?;
        let clip = match value.get("clip").filter(|v| !v.is_null()) {
            Some(v) if v.is_object() => Some((ClipConfig::from_value(v)?, v.clone())),
            Some(_) => return Err(no_clip()),
            None => None,
        };
        let vision = match value.get("vision").filter(|v| !v.is_null()) {
            Some(v) => Some((VitConfig::from_value(v)?, v.clone())),
            None => None,
        };
        let text = TextModel::from_value(value.get("text"))?;
        let dims = dims(clip.as_ref().map(|c| &c.0), vision.as_ref().map(|v| &v.0), &text)?;
        let crop_size = field(value, "crop_size", dims.native)?;
        let config = FusionerConfig {
            vision,
            text,
            fusion: field(value, "fusion_config", FusionConfig::default())?,
            image_mean: field(value, "image_mean", PASCAL_MEAN)?,
            image_std: field(value, "image_std", PASCAL_STD)?,
            stride: field(value, "stride", crop_size * 2 / 3)?,
            crop_size,
            clip,
            dims,
        };
        config.validate()?;
        Ok(config)
    }

    /// A head of `fusion` sizes on the encoders of these `config.json`s: a CLIP (`clip`) for
    /// the image, the text or both, a ViT (`vision`) for the image, and `text`.
    pub fn new(
        clip: Option<serde_json::Value>,
        vision: Option<serde_json::Value>,
        text: TextModel,
        fusion: FusionConfig,
        mean: [f32; 3],
        std: [f32; 3],
    ) -> Result<Self> {
        let clip = match clip {
            Some(v) => Some((ClipConfig::from_value(&v)?, v)),
            None => None,
        };
        let vision = match vision {
            Some(v) => Some((VitConfig::from_value(&v)?, v)),
            None => None,
        };
        let dims = dims(clip.as_ref().map(|c| &c.0), vision.as_ref().map(|v| &v.0), &text)?;
        let config = FusionerConfig {
            clip,
            vision,
            text,
            fusion,
            image_mean: mean,
            image_std: std,
            crop_size: dims.native,
            stride: dims.native * 2 / 3,
            dims,
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<()> {
        self.fusion.validate()?;
        Fields("").size("crop_size", self.crop_size, limits::IMAGE_SIZE)?;
        let patch = self.patch_size();
        if self.crop_size < patch || !self.crop_size.is_multiple_of(patch) {
            return Err(Error::Config(format!(
                "crop_size {} must be a positive multiple of the image encoder's patch size {patch}",
                self.crop_size
            )));
        }
        if self.stride == 0 || self.stride > self.crop_size {
            return Err(Error::Config(format!(
                "stride {} must be in [1, crop_size = {}]",
                self.stride, self.crop_size
            )));
        }
        if self.image_std.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(Error::Config(format!("image_std must be positive, got {:?}", self.image_std)));
        }
        if self.image_mean.iter().any(|m| !m.is_finite()) {
            return Err(Error::Config(format!("image_mean must be finite, got {:?}", self.image_mean)));
        }
        Ok(())
    }

    /// `config.json` as written next to trained weights.
    pub fn to_json(&self) -> String {
        let written = Written {
            model_type: "fusioner".into(),
            architectures: vec!["Fusioner".into()],
            clip: self.clip.as_ref().map(|(_, v)| v.clone()),
            vision: self.vision.as_ref().map(|(_, v)| v.clone()),
            text: self.text.to_value(),
            fusion_config: self.fusion,
            image_mean: self.image_mean,
            image_std: self.image_std,
            crop_size: self.crop_size,
            stride: self.stride,
        };
        serde_json::to_string_pretty(&written).unwrap_or_default() + "\n"
    }

    /// These settings with `crop`-pixel crops (the evaluation stride two thirds of that).
    pub fn with_crop(mut self, crop: usize) -> Result<Self> {
        self.crop_size = crop;
        self.stride = crop * 2 / 3;
        self.validate()?;
        Ok(self)
    }

    /// The image encoder's patch size.
    pub fn patch_size(&self) -> usize {
        self.dims.patch
    }

    /// Width of the image tokens: CLIP's projection, or the ViT's hidden size.
    pub fn visual_dim(&self) -> usize {
        self.dims.visual
    }

    /// Width of a class embedding: CLIP's projection, or BERT's hidden size.
    pub fn text_dim(&self) -> usize {
        self.dims.text
    }

    /// Patches per side of a crop.
    pub fn grid(&self) -> usize {
        self.crop_size / self.patch_size()
    }

    /// The CLIP config, refused when there is none.
    pub fn clip_config(&self) -> Result<&ClipConfig> {
        self.clip.as_ref().map(|(c, _)| c).ok_or_else(no_clip)
    }

    /// What the encoders are, for messages: "CLIP", "ViT + CLIP text", "ViT + BERT (mean pooling)".
    pub fn encoders(&self) -> String {
        let image = if self.vision.is_some() { "ViT" } else { "CLIP" };
        match &self.text {
            TextModel::Clip if self.vision.is_none() => "CLIP".into(),
            TextModel::Clip => format!("{image} + CLIP text"),
            TextModel::Bert(b) => format!("{image} + BERT ({} pooling)", b.pooling),
        }
    }
}

/// The frozen image encoder.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // one per model, never in a collection
pub enum ImageEncoder {
    /// CLIP's vision tower and projection.
    Clip { vision: VisionTransformer, projection: Linear },
    /// A vision-only ViT (DINO).
    Vit(VitModel),
}

impl ImageEncoder {
    /// CLIP's vision tower (`vision_model.*`, `visual_projection`).
    pub fn load_clip(loader: &mut WeightLoader, config: &ClipConfig) -> Self {
        ImageEncoder::Clip {
            vision: VisionTransformer::load(loader.pp("vision_model"), &config.vision_config),
            projection: Linear::load(
                loader.pp("visual_projection"),
                config.vision_config.hidden_size,
                config.projection_dim,
                false,
            ),
        }
    }

    /// L2-normalised patch tokens `[b, gh*gw, dim]` of normalised crops, and the grid.
    pub fn tokens(&self, crops: Tensor<4>) -> Result<(Tensor<3>, (usize, usize))> {
        let (patches, grid) = match self {
            ImageEncoder::Clip { vision, projection } => {
                let out = vision.forward(crops)?;
                let [b, n, d] = out.last_hidden.dims();
                let normed = vision.post_layernorm.forward(out.last_hidden);
                (projection.forward(normed.slice([0..b, 1..n, 0..d])), out.grid)
            }
            ImageEncoder::Vit(vit) => {
                let (hidden, grid) = vit.forward(crops)?;
                let [b, n, d] = hidden.dims();
                (hidden.slice([0..b, 1..n, 0..d]), grid)
            }
        };
        Ok((l2_normalize(patches), grid))
    }

    /// The pooled image embedding: CLIP's projected class token (in the text space), or the
    /// ViT's class token (not in the text space), L2-normalised. `[b, dim]`
    pub fn pooled(&self, crops: Tensor<4>) -> Result<(Tensor<2>, (usize, usize))> {
        let (hidden, grid) = match self {
            ImageEncoder::Clip { vision, projection } => {
                let out = vision.forward(crops)?;
                let [b, _, d] = out.last_hidden.dims();
                let class = vision.post_layernorm.forward(out.last_hidden).slice([0..b, 0..1, 0..d]).reshape([b, d]);
                (projection.forward(class), out.grid)
            }
            ImageEncoder::Vit(vit) => {
                let (hidden, grid) = vit.forward(crops)?;
                let [b, _, d] = hidden.dims();
                (hidden.slice([0..b, 0..1, 0..d]).reshape([b, d]), grid)
            }
        };
        Ok((l2_normalize(hidden), grid))
    }

    pub fn device(&self) -> Device {
        match self {
            ImageEncoder::Clip { projection, .. } => projection.weight.device(),
            ImageEncoder::Vit(vit) => vit.device(),
        }
    }
}

/// Frozen encoders and a Fusioner head.
#[derive(Debug, Clone)]
pub struct FusionerModel {
    pub config: FusionerConfig,
    pub image: ImageEncoder,
    pub text: TextTower,
    pub head: FusionHead,
}

impl FusionerModel {
    /// A Fusioner checkpoint: the image encoder (a ViT under `vision.`, or CLIP's vision
    /// tower), the text encoder (a BERT under `text.`, or CLIP's text tower) and the head.
    pub fn load(config: FusionerConfig, loader: &mut WeightLoader) -> Result<Self> {
        let image = match &config.vision {
            Some((vit, _)) => ImageEncoder::Vit(VitModel::load(loader, "vision", vit.clone())),
            None => ImageEncoder::load_clip(loader, config.clip_config()?),
        };
        let text = match &config.text {
            TextModel::Clip => TextTower::Clip(ClipText::load(loader, config.clip_config()?)),
            TextModel::Bert(bert) => TextTower::Bert(BertTower::load(loader, "text", bert)?),
        };
        let head = FusionHead::load(loader, config.fusion, config.visual_dim(), config.text_dim());
        Ok(FusionerModel { config, image, text, head })
    }

    /// The frozen image encoder on normalised crops `[b, 3, crop, crop]`: L2-normalised patch
    /// tokens `[b, gh*gw, dim]` and the grid.
    pub fn image_tokens(&self, crops: Tensor<4>) -> Result<(Tensor<3>, (usize, usize))> {
        self.image.tokens(crops)
    }

    /// Logits `[b, k, crop, crop]` of crops against class embeddings `[k, proj]`. Each class
    /// runs through the fusion and decoder on its own, as the repository's one-class model does
    /// (and as it is trained): a class's logits do not depend on the other words typed. The
    /// frozen encoder runs once per crop; (crop, class) pairs go through the head
    /// [`PAIR_BATCH`] at a time.
    pub fn crop_logits(&self, crops: Tensor<4>, classes: &Tensor<2>) -> Result<Tensor<4>> {
        let b = crops.dims()[0];
        let k = classes.dims()[0];
        let crop = self.config.crop_size;
        let (visual, grid) = self.image_tokens(crops)?;
        let pairs: Vec<(usize, usize)> = (0..b).flat_map(|i| (0..k).map(move |j| (i, j))).collect();
        let mut parts = Vec::new();
        for chunk in pairs.chunks(PAIR_BATCH) {
            let (v, t) = self.pair_inputs(&visual, classes, chunk);
            parts.push(self.head.forward(v, grid, t, crop).logits);
        }
        Ok(Tensor::cat(parts, 0).reshape([b, k, crop, crop]))
    }

    /// Every step of the head for one crop `[1, 3, crop, crop]`, one pass per class: patch and
    /// class features `[k, n, d]`, `[k, 1, d]`, decoder maps `[k, d, h, w]`, logits
    /// `[k, 1, crop, crop]` (parity tests).
    pub fn crop_outputs(&self, crop: Tensor<4>, classes: &Tensor<2>) -> Result<HeadOutput> {
        let k = classes.dims()[0];
        let (visual, grid) = self.image_tokens(crop)?;
        let pairs: Vec<(usize, usize)> = (0..k).map(|j| (0, j)).collect();
        let (v, t) = self.pair_inputs(&visual, classes, &pairs);
        Ok(self.head.forward(v, grid, t, self.config.crop_size))
    }

    /// The image tokens and the one class embedding of each (crop, class) pair:
    /// `[m, n, dim]`, `[m, 1, proj]`.
    fn pair_inputs(&self, visual: &Tensor<3>, classes: &Tensor<2>, pairs: &[(usize, usize)]) -> (Tensor<3>, Tensor<3>) {
        let device = visual.device();
        let index = |f: fn(&(usize, usize)) -> usize| {
            let rows: Vec<i64> = pairs.iter().map(|p| f(p) as i64).collect();
            Tensor::<1, burn::tensor::Int>::from_data(burn::tensor::TensorData::new(rows, [pairs.len()]), &device)
        };
        let p = classes.dims()[1];
        let v = visual.clone().select(0, index(|p| p.0));
        let t = classes.clone().select(0, index(|p| p.1)).reshape([pairs.len(), 1, p]);
        (v, t)
    }
}

/// (crop, class) pairs run through the head together, at most.
pub const PAIR_BATCH: usize = 8;

impl Network for FusionerModel {
    fn device(&self) -> Device {
        self.image.device()
    }

    fn image_size(&self) -> usize {
        self.config.crop_size
    }

    fn default_preprocessor(&self) -> Preprocessor {
        let size = self.config.crop_size;
        Preprocessor {
            short_side: size,
            crop: None,
            mean: self.config.image_mean,
            std: self.config.image_std,
            rounding: Rounding::Transformers,
        }
    }

    /// CLIP's; 1 with BERT (Fusioner's logits come from its head, not from this scale).
    fn logit_scale(&self) -> f32 {
        match &self.text {
            TextTower::Clip(clip) => clip.logit_scale,
            TextTower::Bert(_) => 1.0,
        }
    }

    fn text_context(&self) -> usize {
        match &self.text {
            TextTower::Clip(clip) => clip.model.context,
            TextTower::Bert(bert) => bert.model.config.max_position_embeddings,
        }
    }

    fn text_width(&self) -> usize {
        self.config.text_dim()
    }

    /// BERT's own WordPiece ids (each text as long as it is, cut to the positions BERT has);
    /// CLIP's BPE otherwise.
    fn tokenize(&self, tokenizer: &Tokenizer, texts: &[&str]) -> Vec<Vec<u32>> {
        match &self.text {
            TextTower::Clip(_) => tokenizer.encode_batch(texts, self.text_context()),
            TextTower::Bert(bert) => {
                texts.iter().map(|t| bert.tokenizer.encode_within(t, self.text_context())).collect()
            }
        }
    }

    fn text_features(&self, ids: &[Vec<u32>]) -> Result<Tensor<2>> {
        match &self.text {
            TextTower::Clip(clip) => Ok(clip.projection.forward(clip.model.forward(ids)?)),
            TextTower::Bert(bert) => bert.features(ids),
        }
    }

    /// CLIP's pooled embedding; with a ViT image encoder, its class token (which is not in the
    /// text space: Fusioner never compares the two directly).
    fn embed_image(&self, pixels: Tensor<4>) -> Result<ImageEmbedding> {
        let (embeds, (rows, cols)) = self.image.pooled(pixels)?;
        Ok(ImageEmbedding { embeds, tokens: Tokens::Patches { rows, cols } })
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
