//! The dense engine: training-free dense CLIP (../shared/METHODS.md §1). One embedding per
//! patch from a frozen CLIP whose last vision block is replaced ([`blocks`]), then: resize the
//! short side, slide windows as mmsegmentation does, per-window patch scores (cosine of patch
//! and class embeddings), bilinear upsampling to the window, stitching by averaging the
//! overlaps, resize to the input size, optional PAMR ([`pamr`]), softmax over names with the
//! logit scale, max over each class's synonyms (renormalised, so every pixel's class
//! probabilities sum to 1; the threshold reads the maximum before that by default, as
//! NACLIP's and SCLIP's `postprocess_result` do). Follows the SCLIP/NACLIP `forward_slide` +
//! `postprocess_result` order; the steps after the resize are per pixel, so the engine returns the stitched scores
//! and the shared code upsamples and finishes them a band at a time (PAMR, which looks at
//! neighbours, runs on the device first).

pub mod blocks;
pub mod pamr;
pub mod resclip;
pub mod scclip;

use burn::tensor::{FloatDType, Tensor};
use serde::{Deserialize, Serialize};

pub use blocks::{Method, NACLIP_SIGMA, last_block, neighbourhood_bias};
pub use resclip::ResClip;
pub use scclip::ScClip;

use super::engine::{DatasetProtocol, Engine, NamingMaps, Plan, Preset, Scores};
use super::result::{BACKGROUND, PixelSteps, ThresholdOn};
use super::slide::Windows;
use super::text::{ClassEmbeddings, Templates};
use super::{BackgroundDataset, Settings, name_of};
use crate::clip::{ClipConfig, ClipModel};
use crate::error::{Error, Result};
use crate::loader::WeightLoader;
use crate::network::ConfigJson;
use crate::network::Network;
use crate::nn::{Resampling, l2_normalize, resize_bilinear};
use crate::preprocess::{Preprocessor, RgbImage, Rounding};

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
    /// Whether the threshold reads a class's synonym maximum before or after renormalising.
    pub threshold_on: ThresholdOn,
    /// How the position table is resampled for windows off the checkpoint's grid.
    pub positions: Resampling,
    /// NACLIP's Gaussian width in patches.
    #[serde(skip)]
    pub naclip_sigma: f64,
    /// PAMR's schedule when `refine` is PAMR.
    #[serde(skip)]
    pub pamr: Pamr,
    /// Classes whose share of the labelled (not class 0) pixels is under this lose their pixels
    /// to the others (SCLIP's and SC-CLIP's `area_thd`); none by default.
    pub area_threshold: Option<f32>,
    /// SC-CLIP's constants (its configs' defaults).
    #[serde(skip)]
    pub scclip: ScClip,
    /// ResCLIP's settings (its threshold and weights shown; read by `resclip` only).
    #[serde(flatten)]
    pub resclip: ResClip,
}

impl Default for Options {
    /// NACLIP's evaluation settings (short side 336, windows of 224 at stride 112, logit scale
    /// 40), a "background" class and NACLIP's `prob_thd` of 0.1, with CLIP's 7 selected
    /// templates instead of the papers' 80 (`Templates::Imagenet80` restores them): the text
    /// side then costs a fraction of the image side instead of three times it.
    fn default() -> Self {
        Options {
            method: Method::Naclip,
            templates: Templates::Imagenet7,
            windows: Windows { short_side: 336, window: 224, stride: 112, rounding: Rounding::Transformers },
            logit_scale: 40.0,
            refine: Refine::None,
            min_probability: 0.1,
            background: vec![BACKGROUND.to_string()],
            threshold_on: ThresholdOn::Merged,
            positions: Resampling::Transformers,
            naclip_sigma: NACLIP_SIGMA,
            pamr: Pamr::default(),
            area_threshold: None,
            scclip: ScClip::default(),
            resclip: ResClip::default(),
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
    const DESCRIPTION: &'static str = "dense CLIP";
    const THRESHOLD_MEANS: &'static str = "Leave pixels unlabelled under probability";
    const CLASS: &'static str = "CLIPModel";
    type Network = ClipModel;
    type Options = Options;
    const READS_PREPROCESSOR: bool = false;
    const PRESETS: &'static [Preset<ClipModel>] = &[
        Preset {
            name: "vit-b-16",
            aliases: &[],
            about: "openai/clip-vit-base-patch16",
            build: |l| Ok(ClipModel::load(ClipConfig::vit_b_16(), l)),
        },
        Preset {
            name: "vit-b-32",
            aliases: &[],
            about: "openai/clip-vit-base-patch32",
            build: |l| Ok(ClipModel::load(ClipConfig::vit_b_32(), l)),
        },
        Preset {
            name: "vit-l-14",
            aliases: &[],
            about: "openai/clip-vit-large-patch14",
            build: |l| Ok(ClipModel::load(ClipConfig::vit_l_14(), l)),
        },
    ];

    fn load(config: &ConfigJson, loader: &mut WeightLoader) -> Result<ClipModel> {
        Ok(ClipModel::load(ClipConfig::from_config(config)?, loader))
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
            threshold_on: settings.threshold_on.unwrap_or(d.threshold_on),
            positions: settings.positions.unwrap_or(d.positions),
            area_threshold: settings.area_threshold.or(d.area_threshold),
            resclip: ResClip {
                temp_threshold: settings.sfr_threshold.unwrap_or(d.resclip.temp_threshold),
                rcs_weights: settings.rcs_weights.map_or(d.resclip.rcs_weights, |p| p.0),
                sfr_weights: settings.sfr_weights.map_or(d.resclip.sfr_weights, |p| p.0),
                ..d.resclip.clone()
            },
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

    /// The cosine maps at the resized image's resolution (or, with PAMR, refined at the image's
    /// resolution, or at the largest size under [`PAMR_MAX_VALUES`] for a very large image);
    /// finished per pixel: softmax over names with the logit scale, max over each class's
    /// synonyms, renormalised (the threshold reading the maximum before or after, as
    /// `threshold_on` says).
    fn scores(
        clip: &ClipModel,
        preprocessor: &Preprocessor,
        image: &RgbImage,
        classes: &ClassEmbeddings,
        options: &Options,
    ) -> Result<Scores> {
        let (averaged, pixels) = cosine_maps(clip, preprocessor, image, &classes.names, options)?;
        let maps = if options.refine == Refine::Pamr {
            // Guided by the normalised image at the output size, as NACLIP does.
            let [_, k, rh, rw] = averaged.dims();
            let (h, w) = refine_size((image.height, image.width), (rh, rw), k);
            let logits = resize_bilinear(averaged, h, w);
            let guide = resize_bilinear(pixels.cast(FloatDType::F32), h, w);
            pamr::refine(guide, logits, options.pamr.iterations, &options.pamr.dilations)
        } else {
            averaged
        };
        let steps = PixelSteps {
            softmax_scale: Some(options.logit_scale),
            class_of_name: classes.class_of_name.clone(),
            classes: classes.num_classes,
            renormalise: true,
            threshold_on: options.threshold_on,
            fold_extra: false,
            area_threshold: options.area_threshold,
            dropped: Vec::new(),
        };
        Ok(Scores { maps: maps.squeeze_dim(0), steps })
    }

    /// NACLIP's protocol: class 0's name ("background") is embedded like any class, and pixels
    /// under `prob_thd` (0.1, the engine's default) become class 0.
    fn dataset_protocol(_: BackgroundDataset) -> DatasetProtocol {
        DatasetProtocol { threshold: Options::default().min_probability, embeds_background_name: true }
    }

    /// The cosine maps at the resized image's resolution, with the logit scale.
    fn naming_maps(
        clip: &ClipModel,
        preprocessor: &Preprocessor,
        image: &RgbImage,
        classes: &ClassEmbeddings,
        options: &Options,
    ) -> Option<Result<NamingMaps>> {
        let maps = cosine_maps(clip, preprocessor, image, &classes.names, options);
        Some(maps.map(|(maps, _)| NamingMaps { maps, logit_scale: options.logit_scale }))
    }
}

/// PAMR holds about 16 neighbours' worth of its scores at once; above this many score values
/// (names × pixels) it runs at a smaller size than the image's (never below the resized image's),
/// and the refined scores are upsampled from there like unrefined ones.
pub const PAMR_MAX_VALUES: usize = 1 << 22;

/// The size PAMR runs at for an image of `image` (h, w) whose scores are `resized` (h, w),
/// with `k` names.
fn refine_size(image: (usize, usize), resized: (usize, usize), k: usize) -> (usize, usize) {
    let values = image.0 * image.1 * (k + 1);
    if values <= PAMR_MAX_VALUES {
        return image;
    }
    let scale = (PAMR_MAX_VALUES as f64 / values as f64).sqrt();
    let fit = |full: usize, floor: usize| ((full as f64 * scale) as usize).clamp(floor.min(full), full);
    (fit(image.0, resized.0), fit(image.1, resized.1))
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
    // The cosines, and all that follows (stitching, PAMR), in f32 even where the network
    // computes in f16: near-ties between words are decided there.
    let names = names.clone().cast(FloatDType::F32);
    options.windows.run(preprocessor, image, &clip.device(), k, |crops| window_scores(clip, crops, &names, options))
}

/// Cosine scores of each window's patches with each name, upsampled to the window.
/// `[n, 3, wh, ww] -> [n, names, wh, ww]`
fn window_scores(clip: &ClipModel, crops: Tensor<4>, names: &Tensor<2>, options: &Options) -> Result<Tensor<4>> {
    let [n, _, wh, ww] = crops.dims();
    let vision = &clip.vision_model;
    let (tokens, (gh, gw)) = match options.method {
        Method::ScClip => options.scclip.forward(vision, crops, options.positions)?,
        Method::ResClip => {
            let (out, (gh, gw)) =
                options.resclip.forward(clip, crops, names, options.logit_scale, options.positions)?;
            let d = out.dims()[2];
            (out.slice([0..n, 1..1 + gh * gw, 0..d]), (gh, gw))
        }
        method => {
            let (x, (gh, gw)) = vision.hidden_before_last(crops, options.positions)?;
            let last = last_block(method, vision.last_layer(), x, (gh, gw), options.naclip_sigma);
            let d = last.dims()[2];
            (last.slice([0..n, 1..1 + gh * gw, 0..d]), (gh, gw))
        }
    };
    // Patch tokens only, `[n, gh*gw, width]`.
    let tokens = vision.post_layernorm.forward(tokens);
    let patches = l2_normalize(clip.visual_projection.forward(tokens));
    let k = names.dims()[0];
    // In f32, as `names` is (see `cosine_maps`).
    let scores = patches.cast(FloatDType::F32).matmul(names.clone().transpose().unsqueeze::<3>()); // [n, gh*gw, names]
    let grid = scores.reshape([n, gh, gw, k]).permute([0, 3, 1, 2]);
    Ok(resize_bilinear(grid, wh, ww))
}
