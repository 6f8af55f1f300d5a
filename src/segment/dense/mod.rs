//! The dense engine: training-free dense CLIP (../shared/METHODS.md §1). One embedding per
//! patch from a frozen CLIP whose last vision block is replaced ([`blocks`]), then: resize the
//! short side, slide windows as mmsegmentation does, per-window patch scores (cosine of patch
//! and class embeddings), bilinear upsampling to the window, stitching by averaging the
//! overlaps, resize to the input size, optional PAMR ([`pamr`]), softmax over names with the
//! logit scale, max over each class's synonyms (renormalised, so every pixel's class
//! probabilities sum to 1). Follows the SCLIP/NACLIP `forward_slide` + `postprocess_result`
//! order.

pub mod blocks;
pub mod pamr;

use burn::tensor::Tensor;
use burn::tensor::activation::softmax;
use serde::{Deserialize, Serialize};

pub use blocks::{Method, NACLIP_SIGMA, last_block, neighbourhood_bias};

use super::engine::{DatasetProtocol, Engine, Plan};
use super::result::{BACKGROUND, merge_synonyms};
use super::slide::Windows;
use super::text::{ClassEmbeddings, Templates};
use super::{BackgroundDataset, Settings, name_of};
use crate::clip::{ClipConfig, ClipModel};
use crate::error::{Error, Result};
use crate::loader::WeightLoader;
use crate::network::Network;
use crate::nn::{l2_normalize, resize_bilinear};
use crate::preprocess::{Preprocessor, RgbImage};

/// Dense CLIP on `CLIPModel` checkpoints.
pub struct Dense;

/// Refinement of the score maps at the output size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum), value(rename_all = "lower"))]
#[serde(rename_all = "lowercase")]
pub enum Refine {
    #[default]
    None,
    /// Pixel-adaptive mask refinement, guided by the image's colours.
    Pamr,
}

/// PAMR's schedule ([`pamr`]); NACLIP's by default.
#[derive(Debug, Clone, PartialEq)]
pub struct Pamr {
    pub iterations: usize,
    pub dilations: Vec<usize>,
}

impl Default for Pamr {
    fn default() -> Self {
        Pamr { iterations: pamr::ITERATIONS, dilations: pamr::DILATIONS.to_vec() }
    }
}

/// How the dense engine segments. Serialised (camelCase) as the settings the page shows.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Options {
    pub method: Method,
    pub templates: Templates,
    #[serde(flatten)]
    pub windows: Windows,
    /// Temperature of the cosine scores before the softmax.
    pub logit_scale: f32,
    pub refine: Refine,
    /// Pixels whose top probability is under this stay unlabelled.
    #[serde(rename = "threshold")]
    pub min_probability: f32,
    /// Words of an extra background class that competes with the labels.
    pub background: Vec<String>,
    /// NACLIP's Gaussian width in patches.
    #[serde(skip)]
    pub naclip_sigma: f64,
    /// PAMR's schedule when `refine` is PAMR.
    #[serde(skip)]
    pub pamr: Pamr,
}

impl Default for Options {
    /// NACLIP's evaluation settings (short side 336, windows of 224 at stride 112, logit scale
    /// 40, the 80 ImageNet templates), a "background" class and NACLIP's `prob_thd` of 0.1.
    fn default() -> Self {
        Options {
            method: Method::Naclip,
            templates: Templates::Imagenet80,
            windows: Windows { short_side: 336, window: 224, stride: 112 },
            logit_scale: 40.0,
            refine: Refine::None,
            min_probability: 0.1,
            background: vec![BACKGROUND.to_string()],
            naclip_sigma: NACLIP_SIGMA,
            pamr: Pamr::default(),
        }
    }
}

impl Options {
    pub fn validate(&self) -> Result<()> {
        self.windows.validate()?;
        let p = &self.pamr;
        if self.refine == Refine::Pamr
            && (p.iterations == 0
                || p.iterations > 100
                || p.dilations.is_empty()
                || p.dilations.iter().any(|&d| d == 0 || d > 64))
        {
            return Err(Error::invalid(format!(
                "PAMR needs 1 to 100 iterations and dilations in [1, 64]; got {} iterations, dilations {:?}",
                p.iterations, p.dilations
            )));
        }
        if !(self.logit_scale.is_finite() && self.logit_scale > 0.0) {
            return Err(Error::invalid(format!("logit scale must be positive, got {}", self.logit_scale)));
        }
        Ok(())
    }
}

impl Engine for Dense {
    const NAME: &'static str = "dense";
    const MODEL_TYPE: &'static str = "clip";
    const ARCHITECTURE: &'static str = "CLIP";
    const CLASS: &'static str = "CLIPModel";
    type Network = ClipModel;
    type Options = Options;

    fn load(config_json: &str, loader: &mut WeightLoader) -> Result<ClipModel> {
        Ok(ClipModel::load(ClipConfig::from_json(config_json)?, loader))
    }

    fn options(settings: &Settings) -> Result<Options> {
        let d = Options::default();
        let options = Options {
            method: settings.method.unwrap_or(d.method),
            templates: settings.templates.unwrap_or(d.templates),
            windows: d.windows.with(settings),
            logit_scale: settings.logit_scale.unwrap_or(d.logit_scale),
            refine: settings.refine.unwrap_or(d.refine),
            min_probability: settings.threshold_or(d.min_probability)?,
            background: settings.background_or(&d.background),
            ..d
        };
        options.validate()?;
        Ok(options)
    }

    fn plan(options: &Options) -> Plan {
        Plan {
            engine: Self::NAME,
            method: name_of(options.method),
            templates: options.templates,
            windows: options.windows,
            background: options.background.clone(),
            threshold: options.min_probability,
            min_score: options.min_probability,
            engine_background: false,
        }
    }

    /// Per-class probabilities `[classes, H, W]` at the input image's resolution.
    fn scores(
        clip: &ClipModel,
        preprocessor: &Preprocessor,
        image: &RgbImage,
        classes: &ClassEmbeddings,
        options: &Options,
    ) -> Result<Tensor<3>> {
        let (averaged, pixels) = cosine_maps(clip, preprocessor, image, &classes.names, options)?;
        let mut logits = resize_bilinear(averaged, image.height, image.width);
        if options.refine == Refine::Pamr {
            // Guided by the normalised image at the output size, as NACLIP does.
            let guide = resize_bilinear(pixels, image.height, image.width);
            logits = pamr::refine(guide, logits, options.pamr.iterations, &options.pamr.dilations);
        }
        let probs = softmax(logits.mul_scalar(options.logit_scale), 1);
        Ok(merge_synonyms(probs, &classes.class_of_name, classes.num_classes, true).squeeze_dim(0))
    }

    /// NACLIP's protocol: class 0's name ("background") is embedded like any class, and pixels
    /// under `prob_thd` (0.1, the engine's default) become class 0.
    fn dataset_protocol(_: BackgroundDataset) -> DatasetProtocol {
        DatasetProtocol { threshold: Options::default().min_probability, embeds_background_name: true }
    }
}

/// Each name's cosine with the dense patch features, windows stitched, at the resized image's
/// resolution (before the resize to the input, PAMR and the softmax); also the resized pixels.
/// `names [k, proj] -> [1, k, rh, rw]`
pub fn cosine_maps(
    clip: &ClipModel,
    preprocessor: &Preprocessor,
    image: &RgbImage,
    names: &Tensor<2>,
    options: &Options,
) -> Result<(Tensor<4>, Tensor<4>)> {
    options.validate()?;
    let k = names.dims()[0];
    options.windows.run(preprocessor, image, &clip.device(), k, |crops| window_scores(clip, crops, names, options))
}

/// Cosine scores of each window's patches with each name, upsampled to the window.
/// `[n, 3, wh, ww] -> [n, names, wh, ww]`
fn window_scores(clip: &ClipModel, crops: Tensor<4>, names: &Tensor<2>, options: &Options) -> Result<Tensor<4>> {
    let [n, _, wh, ww] = crops.dims();
    let vision = &clip.vision_model;
    let (x, (gh, gw)) = vision.hidden_before_last(crops)?;
    let last = last_block(options.method, vision.last_layer(), x, (gh, gw), options.naclip_sigma);
    let tokens = vision.post_layernorm.forward(last);
    let d = tokens.dims()[2];
    let patches = l2_normalize(clip.visual_projection.forward(tokens.slice([0..n, 1..1 + gh * gw, 0..d])));
    let k = names.dims()[0];
    let scores = patches.matmul(names.clone().transpose().unsqueeze::<3>()); // [n, gh*gw, names]
    let grid = scores.reshape([n, gh, gw, k]).permute([0, 3, 1, 2]);
    Ok(resize_bilinear(grid, wh, ww))
}
