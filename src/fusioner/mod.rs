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
//! A Fusioner checkpoint is one folder: `config.json` (`model_type: fusioner`, the CLIP config
//! under `clip`, a ViT's under `vision` when it is the image encoder, the head's sizes under
//! `fusion_config`, the image statistics and the crop) and one weights file with the CLIP
//! weights under their hub keys (the text side only with a ViT, whose weights are under
//! `vision.`) plus `fusion.*` and `decoder.*` under the repository's module names.
//! `wordmask train fusioner` writes them.

mod backbone;
pub mod head;

use std::any::Any;

use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

pub use backbone::{Backbone, Named, NewHead};
pub use head::{FusionConfig, FusionHead, HeadOutput, ParamVisitor};

use crate::clip::{ClipConfig, TextTransformer, VisionTransformer};
use crate::error::{Error, Result};
use crate::loader::WeightLoader;
use crate::network::{ConfigJson, Fields, ImageEmbedding, Network, Tokens, field, limits};
use crate::nn::{Linear, l2_normalize};
use crate::preprocess::{Preprocessor, Rounding};
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
    pub clip: ClipConfig,
    /// `clip` as written, kept so that a trained checkpoint repeats it.
    pub clip_json: serde_json::Value,
    /// A vision-only image encoder (`vision`, a `ViTConfig`), and its JSON as written.
    pub vision: Option<(VitConfig, serde_json::Value)>,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    vision: Option<serde_json::Value>,
    fusion_config: FusionConfig,
    image_mean: [f32; 3],
    image_std: [f32; 3],
    crop_size: usize,
    stride: usize,
}

impl FusionerConfig {
    pub fn from_json(text: &str) -> Result<Self> {
        Self::from_config(&ConfigJson::parse(text)?)
    }

    /// [`Self::from_json`] over a `config.json` parsed once.
    pub fn from_config(config: &ConfigJson) -> Result<Self> {
        let value = config.expect("fusioner", "Fusioner")?;
        let clip_json = value
            .get("clip")
            .filter(|v| v.is_object())
            .cloned()
            .ok_or_else(|| Error::Config("config.json has no clip object (the frozen CLIP's config)".into()))?;
        let clip = ClipConfig::from_value(&clip_json)?;
        let vision = match value.get("vision").filter(|v| !v.is_null()) {
            Some(v) => Some((VitConfig::from_value(v)?, v.clone())),
            None => None,
        };
        let native = vision.as_ref().map_or(clip.vision_config.image_size, |(v, _)| v.image_size);
        let crop_size = field(value, "crop_size", native)?;
        let config = FusionerConfig {
            vision,
            fusion: field(value, "fusion_config", FusionConfig::default())?,
            image_mean: field(value, "image_mean", PASCAL_MEAN)?,
            image_std: field(value, "image_std", PASCAL_STD)?,
            stride: field(value, "stride", crop_size * 2 / 3)?,
            crop_size,
            clip,
            clip_json,
        };
        config.validate()?;
        Ok(config)
    }

    /// A head of `fusion` sizes on a CLIP whose `config.json` is `clip_json` (and a ViT image
    /// encoder whose `config.json` is `vision`, when given).
    pub fn new(
        clip_json: serde_json::Value,
        vision: Option<serde_json::Value>,
        fusion: FusionConfig,
        mean: [f32; 3],
        std: [f32; 3],
    ) -> Result<Self> {
        let clip = ClipConfig::from_value(&clip_json)?;
        let vision = match vision {
            Some(v) => Some((VitConfig::from_value(&v)?, v)),
            None => None,
        };
        let crop_size = vision.as_ref().map_or(clip.vision_config.image_size, |(v, _)| v.image_size);
        let config = FusionerConfig {
            clip,
            clip_json,
            vision,
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
        Fields("").size("crop_size", self.crop_size, limits::IMAGE_SIZE)?;
        let patch = self.patch_size();
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
            clip: self.clip_json.clone(),
            vision: self.vision.as_ref().map(|(_, v)| v.clone()),
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
        self.vision.as_ref().map_or(self.clip.vision_config.patch_size, |(v, _)| v.patch_size)
    }

    /// Width of the image tokens: CLIP's projection, or the ViT's hidden size.
    pub fn visual_dim(&self) -> usize {
        self.vision.as_ref().map_or(self.clip.projection_dim, |(v, _)| v.hidden_size)
    }

    /// Patches per side of a crop.
    pub fn grid(&self) -> usize {
        self.crop_size / self.patch_size()
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

/// CLIP's text tower and projection.
#[derive(Debug, Clone)]
pub struct ClipText {
    pub model: TextTransformer,
    pub projection: Linear,
    /// `exp(logit_scale)`.
    pub logit_scale: f32,
}

impl ClipText {
    /// `text_model.*`, `text_projection`, `logit_scale`.
    pub fn load(loader: &mut WeightLoader, config: &ClipConfig) -> Self {
        ClipText {
            model: TextTransformer::load(loader.pp("text_model"), &config.text_config),
            projection: Linear::load(
                loader.pp("text_projection"),
                config.text_config.hidden_size,
                config.projection_dim,
                false,
            ),
            logit_scale: loader.host("logit_scale", &[]).map(|v| v[0].exp()).unwrap_or(1.0),
        }
    }
}

/// Frozen encoders and a Fusioner head.
#[derive(Debug, Clone)]
pub struct FusionerModel {
    pub config: FusionerConfig,
    pub image: ImageEncoder,
    pub text: ClipText,
    pub head: FusionHead,
}

impl FusionerModel {
    pub fn load(config: FusionerConfig, loader: &mut WeightLoader) -> Self {
        let image = match &config.vision {
            Some((vit, _)) => ImageEncoder::Vit(VitModel::load(loader, "vision", vit.clone())),
            None => ImageEncoder::load_clip(loader, &config.clip),
        };
        let text = ClipText::load(loader, &config.clip);
        let head = FusionHead::load(loader, config.fusion, config.visual_dim(), config.clip.projection_dim);
        FusionerModel { config, image, text, head }
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

    fn logit_scale(&self) -> f32 {
        self.text.logit_scale
    }

    fn text_context(&self) -> usize {
        self.text.model.context
    }

    fn text_width(&self) -> usize {
        self.text.projection.weight.dims()[0]
    }

    fn text_features(&self, ids: &[Vec<u32>]) -> Result<Tensor<2>> {
        Ok(self.text.projection.forward(self.text.model.forward(ids)?))
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
