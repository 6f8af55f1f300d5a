//! The engine layer: every way of turning an image and typed words into a label map.
//!
//! [`segment`] is the one entry that the CLI, `eval`, `bench` and the web bindings call: the
//! user's [`Settings`] are resolved against the loaded checkpoint's engine once (its typed
//! options and their defaults), the labels are embedded (once per label set, through the
//! [`EmbeddingCache`]), the engine scores the image, and the scores become a [`Segmentation`],
//! with the plan followed and each stage's time.
//!
//! Engines: `dense` (training-free dense CLIP: NACLIP, SCLIP, ClearCLIP, MaskCLIP, PAMR) and
//! `groupvit` (GroupViT's learned grouping). [`point`] is the other way in: a click or box on an
//! object gives its mask (Segment Anything), named by the typed words. Each lives in its own module and is one line of
//! [`ENGINES`]; the shared steps are `text` (templates, class embeddings, cache), `slide`
//! (windows, stitching, resizing) and `result` (synonyms, label map, shares). A video's frames
//! go through [`segment_frame`], which carries a [`temporal::Video`] from frame to frame.

pub mod dense;
mod engine;
pub mod export;
pub mod fusioner;
pub mod grouping;
pub mod groupvit;
mod model;
pub mod objects;
pub mod point;
pub mod refine;
pub mod result;
pub mod segclip;
pub mod slide;
pub mod temporal;
pub mod text;

use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use engine::{AnyEngine, DatasetProtocol, Engine, NamingMaps, Plan, Preset, PresetName, Request, Scores};
pub use model::{ImageSize, Model};
pub use result::{LabelMap, LabelShare, PixelSteps, ScoreMaps, Segmentation, ThresholdOn};
pub use text::{ClassEmbeddings, EmbeddingCache, Templates, TextEncoder};

use crate::error::{Error, Result};
use crate::labels::Label;
use crate::network::ConfigJson;
use crate::preprocess::RgbImage;

/// Every engine, matched against a checkpoint's `model_type` in this order. Adding an engine:
/// its module in `segment/` (an [`Engine`] implementation) and one entry here.
pub static ENGINES: &[&dyn AnyEngine] = &[&dense::Dense, &groupvit::GroupVit, &segclip::SegClip, &fusioner::Fusioner];

/// What a checkpoint is for, by its `config.json`'s `model_type`: segmenting by words (a word
/// engine) or pointing at objects (a prompt engine).
#[derive(Clone, Copy)]
pub enum Kind {
    Words(&'static dyn AnyEngine),
    Prompts(&'static dyn point::AnyPromptEngine),
}

impl Kind {
    /// The kind of a `config.json` text, or an error naming every `model_type` either registry
    /// reads.
    pub fn of_config(config_json: &str) -> Result<Kind> {
        Self::of(&ConfigJson::parse(config_json)?)
    }

    /// [`Kind::of_config`] for a `config.json` parsed once.
    pub fn of(config: &ConfigJson) -> Result<Kind> {
        let found = config.model_type();
        if let Some(engine) = ENGINES.iter().copied().find(|e| e.model_type() == found) {
            return Ok(Kind::Words(engine));
        }
        point::prompt_engine(found).map(Kind::Prompts).ok_or_else(|| Error::Config(wrong_kind_for_words(found)))
    }

    /// `"words"` or `"prompts"`, as the page's worker reports it.
    pub fn role(self) -> &'static str {
        match self {
            Kind::Words(_) => "words",
            Kind::Prompts(_) => "prompts",
        }
    }

    /// The engine's name ("dense", "sam", ...).
    pub fn engine(self) -> &'static str {
        match self {
            Kind::Words(e) => e.name(),
            Kind::Prompts(e) => e.name(),
        }
    }

    /// Whether the engine reads a `preprocessor_config.json` beside the weights (CLIP
    /// checkpoints use CLIP's own preprocessing, which the core knows).
    pub fn reads_preprocessor(self) -> bool {
        match self {
            Kind::Words(e) => e.reads_preprocessor(),
            Kind::Prompts(_) => true,
        }
    }
}

/// A checkpoint of either kind, loaded.
pub enum Loaded {
    Words(Model),
    Prompts(point::PromptModel),
}

/// Every engine's presets (hub checkpoints' architectures for `bench --random-weights`), the
/// word engines' first.
pub fn presets() -> Vec<PresetName> {
    let words = ENGINES.iter().flat_map(|e| e.presets());
    words.chain(point::PROMPT_ENGINES.iter().flat_map(|e| e.presets())).collect()
}

impl Loaded {
    /// Load whatever `config.json` describes from the weights' bytes; the `model_type` is
    /// checked before the weights are parsed.
    pub fn from_bytes(
        config_json: &str,
        weights: &[u8],
        weights_name: &str,
        preprocessor_json: Option<&str>,
        device: &burn::tensor::Device,
    ) -> Result<Loaded> {
        let config = ConfigJson::parse(config_json)?;
        Kind::of(&config)?;
        let checkpoint = crate::checkpoint::Checkpoint::from_bytes(weights, weights_name)?;
        Self::from_config(&config, &checkpoint, preprocessor_json, device)
    }

    /// The preset `name` (see [`presets`]) with random weights, for timing.
    pub fn preset(name: &str, device: &burn::tensor::Device) -> Result<Loaded> {
        Self::preset_with(name, &mut crate::loader::WeightLoader::random(device))
    }

    /// The preset `name` built through `loader`, which tallies what it holds: random weights
    /// ([`crate::loader::WeightLoader::random`]), or a checkpoint of the preset's shapes, in one
    /// pass (the caller's [`crate::loader::WeightLoader::finish`] then reports what did not fit).
    pub fn preset_with(name: &str, loader: &mut crate::loader::WeightLoader) -> Result<Loaded> {
        for engine in ENGINES {
            if let Some(network) = engine.load_preset(name, loader) {
                return Ok(Loaded::Words(Model::new(network?, None)?.with_held(loader.held)));
            }
        }
        for &engine in point::PROMPT_ENGINES {
            if let Some(network) = engine.load_preset(name, loader) {
                return Ok(Loaded::Prompts(point::PromptModel::new(engine, network?)?.with_held(loader.held)));
            }
        }
        let names: Vec<&str> = presets().iter().map(|p| p.name).collect();
        Err(Error::invalid(format!("no preset is named {name}; the presets are {}", names.join(", "))))
    }

    /// Whatever `config.json` describes, with random weights (uniform in [-0.05, 0.05]) in
    /// place of a checkpoint's: a model at a real checkpoint's shapes without its download, for
    /// tests of what those shapes need of a device, and for timing.
    pub fn random(config_json: &str, device: &burn::tensor::Device) -> Result<Loaded> {
        let config = ConfigJson::parse(config_json)?;
        Ok(match Kind::of(&config)? {
            Kind::Words(_) => Loaded::Words(Model::random(&config, device)?),
            Kind::Prompts(_) => Loaded::Prompts(point::PromptModel::random(&config, device)?),
        })
    }

    /// The bytes the model's weights hold in memory, by type (see
    /// [`crate::loader::HeldBytes`]).
    pub fn held_bytes(&self) -> crate::loader::HeldBytes {
        match self {
            Loaded::Words(model) => model.held_bytes(),
            Loaded::Prompts(model) => model.held_bytes(),
        }
    }

    /// Load whatever `config.json` describes (parsed once, here).
    pub fn from_checkpoint(
        config_json: &str,
        checkpoint: &crate::checkpoint::Checkpoint<'_>,
        preprocessor_json: Option<&str>,
        device: &burn::tensor::Device,
    ) -> Result<Loaded> {
        Self::from_config(&ConfigJson::parse(config_json)?, checkpoint, preprocessor_json, device)
    }

    fn from_config(
        config: &ConfigJson,
        checkpoint: &crate::checkpoint::Checkpoint<'_>,
        preprocessor_json: Option<&str>,
        device: &burn::tensor::Device,
    ) -> Result<Loaded> {
        Ok(match Kind::of(config)? {
            Kind::Words(_) => Loaded::Words(Model::from_config(config, checkpoint, preprocessor_json, device)?),
            Kind::Prompts(_) => {
                Loaded::Prompts(point::PromptModel::from_config(config, checkpoint, preprocessor_json, device)?)
            }
        })
    }
}

/// "a, b and c".
fn listing(items: &[String]) -> String {
    match items.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => items.join(""),
    }
}

fn shown(model_type: &str) -> String {
    if model_type.is_empty() { "none".to_string() } else { format!("'{model_type}'") }
}

/// The word engines' checkpoints, "CLIP (model_type 'clip'), ... and Fusioner (...)".
fn word_checkpoints() -> String {
    listing(
        &ENGINES.iter().map(|e| format!("{} (model_type '{}')", e.architecture(), e.model_type())).collect::<Vec<_>>(),
    )
}

/// The message for a `model_type` that no word engine reads.
pub(crate) fn wrong_kind_for_words(found: &str) -> String {
    let prompts = point::PROMPT_ENGINES;
    let names = listing(&prompts.iter().map(|e| e.architecture().to_string()).collect::<Vec<_>>());
    let types = listing(&prompts.iter().map(|e| format!("'{}'", e.model_type())).collect::<Vec<_>>());
    format!(
        "model_type is {}; segmenting by words reads {} checkpoints ({names} checkpoints, model_type {types}, are for pointing at objects: wordmask sam)",
        shown(found),
        word_checkpoints()
    )
}

/// The message for a `model_type` that no prompt engine reads.
pub(crate) fn wrong_kind_for_prompts(found: &str) -> String {
    let article = |name: &str| if name.starts_with(['A', 'E', 'I', 'O', 'U']) { "an" } else { "a" };
    let needed: Vec<String> = point::PROMPT_ENGINES
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let (name, what) = (e.architecture(), if i == 0 { "checkpoint" } else { "one" });
            format!("{} {name} {what} (model_type '{}', {})", article(name), e.model_type(), e.class())
        })
        .collect();
    format!(
        "model_type is {}; pointing at objects needs {} ({} checkpoints are for segmenting by words, and name masks: wordmask sam --clip)",
        shown(found),
        needed.join(" or "),
        word_checkpoints()
    )
}

/// The names `--engine` and the page accept: `auto` (the checkpoint's own) and each engine's.
pub fn engine_choices() -> Vec<&'static str> {
    std::iter::once("auto").chain(ENGINES.iter().map(|e| e.name())).collect()
}

/// Words of an extra background class, as typed: separated by `;`, `,` or `|`, or `none`
/// (from the page and `<word-mask>` also a list of words).
#[derive(Debug, Clone, PartialEq)]
pub struct Words(pub Vec<String>);

impl<'de> Deserialize<'de> for Words {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Given {
            Typed(String),
            List(Vec<String>),
        }
        match Given::deserialize(deserializer)? {
            Given::Typed(text) => text.parse().map_err(serde::de::Error::custom),
            Given::List(words) => Ok(Words(words)),
        }
    }
}

impl FromStr for Words {
    type Err = Error;
    fn from_str(text: &str) -> Result<Self> {
        if text.trim() == "none" {
            return Ok(Words(Vec::new()));
        }
        Ok(Words(text.split([';', ',', '|']).map(str::trim).filter(|w| !w.is_empty()).map(String::from).collect()))
    }
}

/// Two numbers, as typed ("2.0, 0.4": separated by ',', ';' or spaces) or as a list: ResCLIP's
/// `(τ, λ)` weights.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pair(pub [f32; 2]);

impl FromStr for Pair {
    type Err = Error;
    fn from_str(text: &str) -> Result<Self> {
        let numbers: Vec<f32> = text
            .split([',', ';', ' '])
            .filter(|t| !t.trim().is_empty())
            .map(|t| t.trim().parse::<f32>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| Error::invalid(format!("\"{text}\" is not two numbers: {e}")))?;
        match numbers[..] {
            [tau, lambda] if tau.is_finite() && tau > 0.0 && (0.0..=1.0).contains(&lambda) => Ok(Pair([tau, lambda])),
            _ => Err(Error::invalid(format!(
                "\"{text}\" is not a weight τ > 0 and a share λ in [0, 1], such as \"2, 0.4\""
            ))),
        }
    }
}

impl<'de> Deserialize<'de> for Pair {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Given {
            Typed(String),
            List(Vec<f32>),
        }
        let text = match Given::deserialize(deserializer)? {
            Given::Typed(text) => text,
            Given::List(v) => v.iter().map(f32::to_string).collect::<Vec<_>>().join(","),
        };
        text.parse().map_err(serde::de::Error::custom)
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
    /// How the resized long side is rounded: transformers (truncated) or mmcv (half up, as the
    /// papers' mmsegmentation pipelines).
    #[cfg_attr(feature = "cli", arg(long, value_enum))]
    pub rounding: Option<crate::preprocess::Rounding>,
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
    /// Dense engine: how the position table is resampled for windows off the checkpoint's
    /// grid: transformers (bicubic to the grid) or scale-factor (bicubic at (g + 0.1) / n, as
    /// NACLIP's and SCLIP's code).
    #[cfg_attr(feature = "cli", arg(long, value_enum))]
    pub positions: Option<crate::nn::Resampling>,
    /// GroupViT engine: how pixels get label scores: repository (the GroupViT repository's
    /// evaluation) or transformers (its `output_segmentation=True` logits; no background
    /// threshold).
    #[cfg_attr(feature = "cli", arg(long, value_enum))]
    pub scoring: Option<groupvit::Scoring>,
    /// Dense engine: pixels whose top probability is under this stay unlabelled. GroupViT:
    /// its background threshold (0 turns it off).
    #[cfg_attr(feature = "cli", arg(long, value_parser = |t: &str| threshold(t)))]
    pub threshold: Option<f32>,
    /// Dense engine: with synonyms, whether the threshold reads a class's synonym maximum
    /// (merged, as the papers' code) or its renormalised probability (renormalised).
    #[cfg_attr(feature = "cli", arg(long, value_enum))]
    pub threshold_on: Option<ThresholdOn>,
    /// Dense engine: classes that win at most this share of the pixels the background class
    /// does not win lose them to the next best class (SCLIP's and SC-CLIP's area_thd; the
    /// background class is the background words', else the first label). Off by default.
    #[cfg_attr(feature = "cli", arg(long, value_parser = |t: &str| threshold(t)))]
    pub area_threshold: Option<f32>,
    /// Dense engine, ResCLIP: pixels of its first segmentation under this probability count as
    /// the first name (its configs' temp_thd).
    #[cfg_attr(feature = "cli", arg(long, value_parser = |t: &str| threshold(t)))]
    pub sfr_threshold: Option<f32>,
    /// Dense engine, ResCLIP: "τ, λ" of the intermediate blocks' attention mixed into the last
    /// (its configs' attn_rcs_weights).
    #[cfg_attr(feature = "cli", arg(long))]
    pub rcs_weights: Option<Pair>,
    /// Dense engine, ResCLIP: "τ, λ" of the first segmentation's feedback in the last attention
    /// (its configs' attn_sfr_weights).
    #[cfg_attr(feature = "cli", arg(long))]
    pub sfr_weights: Option<Pair>,
    /// Words that form an extra "background" class, separated by ';', ',' or '|'; its pixels
    /// stay unlabelled. "none" turns it off.
    #[cfg_attr(feature = "cli", arg(long))]
    pub background: Option<Words>,
}

impl Settings {
    /// These settings, each unset one taken from `base`.
    pub fn or(self, base: Settings) -> Settings {
        Settings {
            engine: self.engine.or(base.engine),
            method: self.method.or(base.method),
            templates: self.templates.or(base.templates),
            short_side: self.short_side.or(base.short_side),
            rounding: self.rounding.or(base.rounding),
            window: self.window.or(base.window),
            stride: self.stride.or(base.stride),
            logit_scale: self.logit_scale.or(base.logit_scale),
            refine: self.refine.or(base.refine),
            positions: self.positions.or(base.positions),
            scoring: self.scoring.or(base.scoring),
            threshold: self.threshold.or(base.threshold),
            threshold_on: self.threshold_on.or(base.threshold_on),
            area_threshold: self.area_threshold.or(base.area_threshold),
            sfr_threshold: self.sfr_threshold.or(base.sfr_threshold),
            rcs_weights: self.rcs_weights.or(base.rcs_weights),
            sfr_weights: self.sfr_weights.or(base.sfr_weights),
            background: self.background.or(base.background),
        }
    }

    /// Refuse settings that only another engine reads.
    fn refuse_other_engines(&self, engine: &str) -> Result<()> {
        let specific = [
            ("method", self.method.is_some(), dense::Dense::NAME),
            ("logit scale", self.logit_scale.is_some(), dense::Dense::NAME),
            ("refine", self.refine.is_some(), dense::Dense::NAME),
            ("positions", self.positions.is_some(), dense::Dense::NAME),
            ("threshold on", self.threshold_on.is_some(), dense::Dense::NAME),
            ("area threshold", self.area_threshold.is_some(), dense::Dense::NAME),
            ("sfr threshold", self.sfr_threshold.is_some(), dense::Dense::NAME),
            ("rcs weights", self.rcs_weights.is_some(), dense::Dense::NAME),
            ("sfr weights", self.sfr_weights.is_some(), dense::Dense::NAME),
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

/// Milliseconds each stage of one segmentation took. Each stage ends when its work is done on
/// the device, so the stages add up to the whole.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Timings {
    /// The labels' text embeddings (nothing to do for words in the cache).
    pub text: f64,
    /// The engine's pass over the image, up to its scores on the device.
    pub image: f64,
    /// Reading the scores back to the host.
    pub scores: f64,
    /// The label map, confidences and shares at the image's size, on the host (for a video's
    /// frame, with its scores' smoothing and its objects' ids).
    pub finish: f64,
}

impl Timings {
    pub fn total(&self) -> f64 {
        self.text + self.image + self.scores + self.finish
    }
}

/// What [`segment`] gives: the label map, the plan it followed and how long each stage took.
pub struct Segmented {
    pub segmentation: Segmentation,
    pub plan: Plan,
    pub timings: Timings,
}

/// Segment `image` with `labels`: the one entry of every caller (the CLI's `segment`, `eval`
/// and `bench`, and the page's worker). Natively, and in the browser's CPU-only modules,
/// [`crate::device::block_on`] drives it; on WebGPU the page awaits it. A still image: nothing
/// of another image is carried over (a video's frames go through [`segment_frame`]).
pub async fn segment(
    model: &Model,
    image: &RgbImage,
    labels: &[Label],
    settings: &Settings,
    cache: &mut EmbeddingCache,
) -> Result<Segmented> {
    Ok(segment_with(model, image, labels, settings, cache, None, None).await?.0)
}

/// One frame of a video: [`segment`], with the engine's scores averaged over the frames before
/// where the picture stayed still, and the objects followed from frame to frame, by `video`'s
/// state ([`temporal`]). The CLI's `segment --video` and the page's camera call it.
pub async fn segment_frame(
    model: &Model,
    frame: &RgbImage,
    labels: &[Label],
    settings: &Settings,
    cache: &mut EmbeddingCache,
    video: &mut temporal::Video,
) -> Result<SegmentedFrame> {
    let (segmented, report) = segment_with(model, frame, labels, settings, cache, Some(video), None).await?;
    let report = report.ok_or_else(|| Error::invalid("a video frame was segmented without its video"))?;
    Ok(SegmentedFrame { segmented, report, sharp_ms: None })
}

/// [`segment_frame`] with sharp edges ([`refine`]): after smoothing, Segment Anything (the
/// `session`'s model) redraws the frame's regions, prompted where it can by the previous
/// frame's objects ([`refine::refine_following`]), and the objects are followed on the redrawn
/// map, so their ids and edges hold from frame to frame.
#[allow(clippy::too_many_arguments)]
pub async fn segment_frame_sharp(
    model: &Model,
    frame: &RgbImage,
    labels: &[Label],
    settings: &Settings,
    cache: &mut EmbeddingCache,
    video: &mut temporal::Video,
    session: &mut point::PromptSession,
    options: &refine::RefineOptions,
) -> Result<SegmentedFrame> {
    let mut sharp = Some((session, options, None));
    let (segmented, report) = segment_with(model, frame, labels, settings, cache, Some(video), sharp.as_mut()).await?;
    let report = report.ok_or_else(|| Error::invalid("a video frame was segmented without its video"))?;
    let sharp_ms = sharp.and_then(|(_, _, ms)| ms);
    Ok(SegmentedFrame { segmented, report, sharp_ms })
}

/// What [`segment_frame`] gives: the frame's segmentation (its scores smoothed) and what the
/// video's state made of it (resets, motion, the objects with their ids).
pub struct SegmentedFrame {
    pub segmented: Segmented,
    pub report: temporal::FrameReport,
    /// With sharp edges: the milliseconds of Segment Anything's encoding and of its prompts.
    pub sharp_ms: Option<(f64, f64)>,
}

/// Sharp edges for a video frame: the prompt session, its options, and the milliseconds it
/// took (encoding, prompts), filled in.
type SharpFrame<'a> = (&'a mut point::PromptSession, &'a refine::RefineOptions, Option<(f64, f64)>);

async fn segment_with(
    model: &Model,
    image: &RgbImage,
    labels: &[Label],
    settings: &Settings,
    cache: &mut EmbeddingCache,
    mut video: Option<&mut temporal::Video>,
    sharp: Option<&mut SharpFrame<'_>>,
) -> Result<(Segmented, Option<temporal::FrameReport>)> {
    let engine = model.engine_for(settings)?;
    let request = engine.request(settings)?;
    let plan = &request.plan;
    // A typed word that is also a background word would split its pixels between two classes.
    if let Some(word) = labels.iter().flat_map(|l| &l.synonyms).find(|w| plan.background.contains(w)) {
        return Err(Error::invalid(format!(
            "\"{word}\" is both a typed word and a background word: drop one (background \"none\" turns the background words off)"
        )));
    }
    let mut clock = crate::clock::Stopwatch::start();
    let classes = cache.get(model, labels, &plan.background, plan.templates.prompts())?;
    crate::device::settle(&classes.names).await?;
    let text = clock.lap();
    let scores = engine.scores(model.network(), &model.preprocessor, image, &classes, &request)?;
    crate::device::settle(&scores.maps).await?;
    let image_ms = clock.lap();
    let mut maps = ScoreMaps::read(scores.maps).await?;
    let read_ms = clock.lap();
    let step = video.as_mut().map(|v| v.smooth(image, labels, &format!("{settings:?}"), &mut maps));
    let sticky = video.as_mut().zip(step.as_ref()).and_then(|(v, s)| v.sticky(s));
    let (background_row, min_score) = (plan.background_row(), plan.min_score);
    // Only a video remembers each pixel's class for the next frame.
    let mut winners = video.is_some().then(|| vec![0u16; image.width * image.height]);
    let mut segmentation = Segmentation::with_past(
        image.width,
        image.height,
        labels,
        background_row,
        maps,
        scores.steps,
        min_score,
        sticky.as_ref(),
        winners.as_deref_mut(),
    );
    if let (Some(v), Some(winners)) = (video.as_mut(), winners) {
        v.remember(winners);
    }
    if let Some((session, options, ms)) = sharp {
        let encode = if session.holds(image) { 0.0 } else { session.encode(image.clone()).await? };
        let mut prompts = crate::clock::Stopwatch::start();
        let before = video.as_ref().zip(step.as_ref()).map(|(v, s)| v.objects_before(s)).unwrap_or_default();
        let objects = refine::refine_following(&mut segmentation, session, options, &before).await?;
        *ms = Some((encode, prompts.lap()));
        if let Some(v) = video.as_mut() {
            v.follow(objects);
        }
    }
    let report = video.zip(step).map(|(v, step)| v.track(&segmentation, step));
    let timings = Timings { text, image: image_ms, scores: read_ms, finish: clock.lap() };
    Ok((Segmented { segmentation, plan: request.plan, timings }, report))
}

/// The web build's threads module runs the core's calls on a pool thread, which needs their
/// futures to be `Send`: this only has to compile (its checks are the compiler's).
#[cfg(test)]
#[allow(dead_code)]
fn core_futures_can_move_to_a_pool_thread(
    model: &Model,
    image: &RgbImage,
    labels: &[Label],
    settings: &Settings,
    cache: &mut EmbeddingCache,
    session: &mut point::PromptSession,
    prompt: &point::Prompt,
) {
    fn send<T: Send>(_: T) {}
    send(segment(model, image, labels, settings, cache));
    let mut video = temporal::Video::new(temporal::TemporalOptions::default()).unwrap();
    send(segment_frame(model, image, labels, settings, cache, &mut video));
    let refine = refine::RefineOptions::default();
    send(segment_frame_sharp(model, image, labels, settings, cache, &mut video, session, &refine));
    send(session.encode(image.clone()));
    let words = Some(point::WordsNamer { model, settings, cache });
    send(session.prompt(prompt, point::NameRequest { labels: Some(labels.to_vec()), vocabulary: None, words }));
}
