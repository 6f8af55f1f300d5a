//! The engine layer: every way of turning an image and typed words into a label map.
//!
//! [`segment`] (and [`segment_async`] in the browser) is the one entry that the CLI, `eval`,
//! `bench` and the web bindings call: the user's [`Settings`] are resolved against the loaded
//! checkpoint's engine (its typed options and their defaults), the labels are embedded (once
//! per label set, through the [`EmbeddingCache`]), the engine scores the image, and the scores
//! become a [`Segmentation`].
//!
//! Engines: `dense` (training-free dense CLIP: NACLIP, SCLIP, ClearCLIP, MaskCLIP, PAMR) and
//! `groupvit` (GroupViT's learned grouping). [`point`] is the other way in: a click or box on an
//! object gives its mask (Segment Anything), named by the typed words. Each lives in its own module and is one line of
//! [`ENGINES`]; the shared steps are `text` (templates, class embeddings, cache), `slide`
//! (windows, stitching, resizing) and `result` (synonyms, label map, shares).

pub mod dense;
mod engine;
pub mod fusioner;
pub mod groupvit;
mod model;
pub mod point;
pub mod result;
pub mod segclip;
pub mod slide;
pub mod text;

use std::str::FromStr;

use serde::Deserialize;

pub use engine::{AnyEngine, DatasetProtocol, Engine, Plan, Scores};
pub use model::{ImageSize, Model};
pub use result::{LabelMap, LabelShare, PixelSteps, ScoreMaps, Segmentation};
pub use text::{ClassEmbeddings, EmbeddingCache, Templates};

use crate::error::{Error, Result};
use crate::labels::Label;
use crate::preprocess::RgbImage;

/// Every engine, matched against a checkpoint's `model_type` in this order. Adding an engine:
/// its module in `segment/` (an [`Engine`] implementation) and one entry here.
pub static ENGINES: &[&dyn AnyEngine] = &[&dense::Dense, &groupvit::GroupVit, &segclip::SegClip, &fusioner::Fusioner];

/// The names `--engine` and the page accept: `auto` (the checkpoint's own) and each engine's.
pub fn engine_choices() -> Vec<&'static str> {
    std::iter::once("auto").chain(ENGINES.iter().map(|e| e.name())).collect()
}

/// Words of an extra background class, as typed: separated by `;`, `,` or `|`, or `none`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct Words(pub Vec<String>);

impl FromStr for Words {
    type Err = Error;
    fn from_str(text: &str) -> Result<Self> {
        if text.trim() == "none" {
            return Ok(Words(Vec::new()));
        }
        Ok(Words(text.split([';', ',', '|']).map(str::trim).filter(|w| !w.is_empty()).map(String::from).collect()))
    }
}

/// What a user asks for, named as the CLI's flags (camelCase from the page). Unset settings
/// take the engine's defaults; a setting that another engine reads is refused.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct Settings {
    /// Segmentation engine: auto (the checkpoint's own) or one by name, which must match the
    /// checkpoint.
    #[cfg_attr(feature = "cli", arg(long, value_parser = clap::builder::PossibleValuesParser::new(engine_choices())))]
    pub engine: Option<String>,
    /// Dense engine: the last-block variant.
    #[cfg_attr(feature = "cli", arg(long, value_enum))]
    pub method: Option<dense::Method>,
    /// Prompt templates: imagenet7 (the 7 of CLIP's forward selection), imagenet80 (the CLIP
    /// paper's 80, as the dense-CLIP papers), single ("a photo of a {}."), bare (each label as
    /// typed) or fusioner (Fusioner's 32).
    #[cfg_attr(feature = "cli", arg(long, value_enum))]
    pub templates: Option<Templates>,
    /// Resize the image's short side to this many pixels first.
    #[cfg_attr(feature = "cli", arg(long))]
    pub short_side: Option<usize>,
    /// Sliding-window size in pixels; 0 runs the whole image in one pass.
    #[cfg_attr(feature = "cli", arg(long))]
    pub window: Option<usize>,
    /// Sliding-window stride in pixels.
    #[cfg_attr(feature = "cli", arg(long))]
    pub stride: Option<usize>,
    /// Dense engine: temperature of the cosine scores before the softmax.
    #[cfg_attr(feature = "cli", arg(long))]
    pub logit_scale: Option<f32>,
    /// Dense engine: refinement of the score maps (pamr: 10 iterations at dilations 8 and 16).
    #[cfg_attr(feature = "cli", arg(long, value_enum))]
    pub refine: Option<dense::Refine>,
    /// GroupViT engine: how pixels get label scores: repository (the GroupViT repository's
    /// evaluation) or transformers (its `output_segmentation=True` logits; no background
    /// threshold).
    #[cfg_attr(feature = "cli", arg(long, value_enum))]
    pub scoring: Option<groupvit::Scoring>,
    /// Dense engine: pixels whose top probability is under this stay unlabelled. GroupViT:
    /// its background threshold (0 turns it off).
    #[cfg_attr(feature = "cli", arg(long, value_parser = |t: &str| threshold(t)))]
    pub threshold: Option<f32>,
    /// Words that form an extra "background" class, separated by ';', ',' or '|'; its pixels
    /// stay unlabelled. "none" turns it off.
    #[cfg_attr(feature = "cli", arg(long))]
    pub background: Option<Words>,
}

impl Settings {
    /// Refuse settings that only another engine reads.
    fn refuse_other_engines(&self, engine: &str) -> Result<()> {
        let specific = [
            ("method", self.method.is_some(), dense::Dense::NAME),
            ("logit scale", self.logit_scale.is_some(), dense::Dense::NAME),
            ("refine", self.refine.is_some(), dense::Dense::NAME),
            ("scoring", self.scoring.is_some(), groupvit::GroupVit::NAME),
        ];
        match specific.iter().find(|(_, set, owner)| *set && *owner != engine) {
            Some((name, _, owner)) => Err(Error::invalid(format!(
                "{name} applies to the {owner} engine only; this checkpoint runs the {engine} engine"
            ))),
            None => Ok(()),
        }
    }

    /// The threshold, refused outside [0, 1].
    fn threshold_or(&self, default: f32) -> Result<f32> {
        let t = self.threshold.unwrap_or(default);
        if !(0.0..=1.0).contains(&t) {
            return Err(Error::invalid(format!("threshold must be in [0, 1], got {t}")));
        }
        Ok(t)
    }

    fn background_or(&self, default: &[String]) -> Vec<String> {
        self.background.as_ref().map_or_else(|| default.to_vec(), |w| w.0.clone())
    }
}

/// The lower-case name a typed option has in settings and summaries (its serde name).
pub fn name_of<T: serde::Serialize>(value: T) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
}

/// A threshold as typed, refused outside [0, 1] (so the CLI names the flag).
#[cfg(feature = "cli")]
fn threshold(text: &str) -> std::result::Result<f32, String> {
    let t: f32 = text.trim().parse().map_err(|e| format!("{e}"))?;
    Settings { threshold: Some(t), ..Settings::default() }.threshold_or(0.0).map_err(|e| e.to_string())
}

/// Datasets whose class 0 is background, for which each engine's repository has its own
/// threshold (see [`DatasetProtocol`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackgroundDataset {
    PascalVoc,
    PascalContext,
    Coco,
}

/// Scores still on the device, and what turns them into a label map.
struct Pending {
    scores: Scores,
    plan: Plan,
}

fn start(
    model: &Model,
    image: &RgbImage,
    labels: &[Label],
    settings: &Settings,
    cache: &mut EmbeddingCache,
) -> Result<Pending> {
    let engine = model.engine_for(settings)?;
    let (scores, plan) = engine.scores(model, image, labels, settings, cache)?;
    Ok(Pending { scores, plan })
}

impl Pending {
    fn finish(self, image: &RgbImage, labels: &[Label], maps: ScoreMaps) -> Segmentation {
        let (background_row, min_score) = (self.plan.background_row(), self.plan.min_score);
        Segmentation::new(image.width, image.height, labels, background_row, maps, self.scores.steps, min_score)
    }
}

/// Segment `image` with `labels`: the one entry of every caller (native, and the web build's
/// `threads` module, which runs on the CPU alone; the browser's WebGPU build uses
/// [`segment_async`]).
#[cfg(any(not(target_family = "wasm"), feature = "threads"))]
pub fn segment(
    model: &Model,
    image: &RgbImage,
    labels: &[Label],
    settings: &Settings,
    cache: &mut EmbeddingCache,
) -> Result<Segmentation> {
    let pending = start(model, image, labels, settings, cache)?;
    let maps = ScoreMaps::read(pending.scores.maps.clone())?;
    Ok(pending.finish(image, labels, maps))
}

/// [`segment`], reading the scores back without blocking (the only way in a browser).
pub async fn segment_async(
    model: &Model,
    image: &RgbImage,
    labels: &[Label],
    settings: &Settings,
    cache: &mut EmbeddingCache,
) -> Result<Segmentation> {
    let pending = start(model, image, labels, settings, cache)?;
    let maps = ScoreMaps::read_async(pending.scores.maps.clone()).await?;
    Ok(pending.finish(image, labels, maps))
}
