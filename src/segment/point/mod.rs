//! Point mode: a click or a box becomes one object's mask, named by the typed words. Prompt
//! engines are to pointing what word engines are to segmenting: each is one line of
//! [`PROMPT_ENGINES`], picked by the checkpoint's `model_type` — Segment Anything (`sam`,
//! masks only; a CLIP words model names them, the Open-Vocabulary SAM paper's "SAM + CLIP"
//! baseline, `namer`) and Open-Vocabulary SAM (`ovsam`, the mask and its name from one
//! model). The image is encoded once ([`PromptModel::encode`], the heavy pass); each prompt only
//! runs the prompt encoder and the mask decoder. [`PromptSession`] is what the CLI, the page's
//! worker and `<word-mask interactive>` call: it keeps the encoded image and decides how a
//! mask is named.

mod automatic;
mod namer;
mod ovsam;
mod sam;
mod session;

use std::any::Any;

use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

pub use automatic::{AutoMask, AutomaticOptions, nms, point_grid, remove_small_regions};
pub use namer::MaskNamer;
pub use ovsam::OvSam;
pub use sam::Sam;
pub use session::{Answer, NameRequest, PromptSession, PromptTimings, VocabularyChoice, WordsNamer};

use super::engine::{Preset, PresetName};
use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::labels::Label;
use crate::loader::{self, HeldBytes, WeightLoader};
use crate::network::ConfigJson;
use crate::preprocess::RgbImage;
use crate::sam::{Point, SamProcessor};
use crate::tokenizer::Tokenizer;

/// Every prompt engine, matched against a checkpoint's `model_type`. Adding one: a module here
/// (a [`PromptEngine`] implementation) and one entry.
pub static PROMPT_ENGINES: &[&dyn AnyPromptEngine] = &[&Sam, &OvSam];

/// The prompt engine of a `model_type`, if one reads it.
pub fn prompt_engine(model_type: &str) -> Option<&'static dyn AnyPromptEngine> {
    PROMPT_ENGINES.iter().copied().find(|e| e.model_type() == model_type)
}

/// One click: on the object (`positive`, the default) or not.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
pub struct Click {
    pub x: f64,
    pub y: f64,
    #[serde(default = "positive")]
    pub positive: bool,
}

fn positive() -> bool {
    true
}

/// What a person pointed at, in the image's own pixels: clicks, a box `[x0, y0, x1, y1]`, or
/// both.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Prompt {
    #[serde(default)]
    pub points: Vec<Click>,
    #[serde(default, rename = "box")]
    pub bbox: Option<[f64; 4]>,
}

impl Prompt {
    /// Refuse what cannot be a prompt on a `width x height` image, naming the problem.
    pub fn validate(&self, width: usize, height: usize) -> Result<()> {
        if self.points.is_empty() && self.bbox.is_none() {
            return Err(Error::invalid("the prompt is empty: give a point (a click) or a box"));
        }
        let inside = |x: f64, y: f64| {
            x.is_finite() && y.is_finite() && (0.0..width as f64).contains(&x) && (0.0..height as f64).contains(&y)
        };
        if let Some(p) = self.points.iter().find(|p| !inside(p.x, p.y)) {
            return Err(Error::invalid(format!(
                "the point ({}, {}) lies outside the {width}x{height} image",
                p.x, p.y
            )));
        }
        if let Some([x0, y0, x1, y1]) = self.bbox {
            if !(x1 > x0 && y1 > y0) {
                return Err(Error::invalid(format!(
                    "a box needs x1 > x0 and y1 > y0; got ({x0}, {y0}) to ({x1}, {y1})"
                )));
            }
            let within = |x: f64, y: f64| {
                x.is_finite()
                    && y.is_finite()
                    && (0.0..=width as f64).contains(&x)
                    && (0.0..=height as f64).contains(&y)
            };
            if !within(x0, y0) || !within(x1, y1) {
                return Err(Error::invalid(format!(
                    "the box ({x0}, {y0}) to ({x1}, {y1}) reaches outside the {width}x{height} image"
                )));
            }
        }
        Ok(())
    }

    /// SAM's advice: three candidate masks for a lone click (it is ambiguous), one otherwise.
    fn multimask(&self) -> bool {
        self.points.len() == 1 && self.bbox.is_none()
    }
}

/// A prompt decoded on the device: candidate masks `[n, 4e, 4e]`, their predicted IoU (Segment
/// Anything), and the low-resolution mask a model names masks from (Open-Vocabulary SAM).
pub struct Decoded {
    pub masks: Tensor<3>,
    pub iou: Option<Tensor<1>>,
    pub low_res: Option<Tensor<3>>,
}

/// One prompt engine. Implement it in the engine's own module, then add it to
/// [`PROMPT_ENGINES`].
pub trait PromptEngine: Sync + 'static {
    /// Lower-case name, as summaries show it.
    const NAME: &'static str;
    /// The `model_type` of the checkpoints it runs.
    const MODEL_TYPE: &'static str;
    /// What people call those checkpoints, for messages.
    const ARCHITECTURE: &'static str;
    /// The class whose weights the checkpoint holds, for loader errors.
    const CLASS: &'static str;
    /// Whether the model names its own masks (else a CLIP words model names them).
    const NAMES_MASKS: bool;
    /// Whether images are resized to `int(side * scale)` (Open-Vocabulary SAM's demo) rather
    /// than transformers' rounding.
    const FLOOR_RESIZE: bool = false;
    type Network: Send + Sync + 'static;
    /// What the heavy pass leaves for the prompts.
    type Features: Send + Sync + 'static;
    /// Hub checkpoints' architectures, for timing with random weights.
    const PRESETS: &'static [Preset<Self::Network>] = &[];

    fn load(config: &ConfigJson, loader: &mut WeightLoader) -> Result<Self::Network>;
    fn device(network: &Self::Network) -> Device;
    fn input_size(network: &Self::Network) -> usize;
    /// The heavy pass on padded pixels `[1, 3, S, S]`.
    fn encode(network: &Self::Network, pixels: Tensor<4>) -> Result<Self::Features>;
    /// The image embeddings, whose readiness marks the end of the heavy pass.
    fn embeddings(features: &Self::Features) -> &Tensor<4>;
    /// Points and box are in the network's input pixels.
    fn decode(
        network: &Self::Network,
        features: &Self::Features,
        points: &[Point],
        bbox: Option<[f64; 4]>,
        multimask: bool,
    ) -> Result<Decoded>;
    /// Many one-point prompts decoded side by side (automatic masks): the candidate masks of
    /// each `[points, m, 4e, 4e]` (three for Segment Anything, one for Open-Vocabulary SAM) and
    /// their predicted IoU `[points, m]` when the model predicts it.
    fn decode_points(
        network: &Self::Network,
        features: &Self::Features,
        points: &[Point],
    ) -> Result<(Tensor<4>, Option<Tensor<2>>)>;
    /// The class names of the checkpoint's own classifier, when it carries one.
    fn released_vocabulary(_network: &Self::Network) -> Option<&[String]> {
        None
    }
    /// The names and class embeddings `[classes, prototypes, dim]` of a vocabulary, for a model
    /// that names its masks.
    fn classes(
        _network: &Self::Network,
        _tokenizer: &Tokenizer,
        _vocabulary: &Vocabulary,
    ) -> Result<(Vec<String>, Tensor<3>)> {
        Err(Error::invalid(format!(
            "a {} checkpoint does not name masks; give a CLIP checkpoint for the words",
            Self::ARCHITECTURE
        )))
    }
    /// The class logits `[classes]` of a mask, from its low-resolution logits (`side x side`,
    /// read back).
    fn name(
        _network: &Self::Network,
        _features: &Self::Features,
        _low_res: &[f32],
        _side: usize,
        _classes: &Tensor<3>,
    ) -> Result<Tensor<1>> {
        Err(Error::invalid(format!("a {} checkpoint does not name its masks", Self::ARCHITECTURE)))
    }
}

/// A [`PromptEngine`] with its types erased, as the registry holds it: networks and features
/// travel as `Any` and are downcast back by the engine that made them.
pub trait AnyPromptEngine: Sync {
    fn name(&self) -> &'static str;
    fn model_type(&self) -> &'static str;
    fn architecture(&self) -> &'static str;
    fn class(&self) -> &'static str;
    fn names_masks(&self) -> bool;
    fn floor_resize(&self) -> bool;
    fn load(&self, config: &ConfigJson, loader: &mut WeightLoader) -> Result<Box<dyn Any + Send + Sync>>;
    fn presets(&self) -> Vec<PresetName>;
    /// The preset `name` built through `loader`, if this engine has it.
    fn load_preset(&self, name: &str, loader: &mut WeightLoader) -> Option<Result<Box<dyn Any + Send + Sync>>>;
    fn device(&self, network: &dyn Any) -> Result<Device>;
    fn input_size(&self, network: &dyn Any) -> Result<usize>;
    /// The features, and the tensor whose readiness ends the heavy pass.
    fn encode(&self, network: &dyn Any, pixels: Tensor<4>) -> Result<(Box<dyn Any + Send + Sync>, Tensor<4>)>;
    fn decode(
        &self,
        network: &dyn Any,
        features: &dyn Any,
        points: &[Point],
        bbox: Option<[f64; 4]>,
        multimask: bool,
    ) -> Result<Decoded>;
    fn decode_points(
        &self,
        network: &dyn Any,
        features: &dyn Any,
        points: &[Point],
    ) -> Result<(Tensor<4>, Option<Tensor<2>>)>;
    fn released_vocabulary<'n>(&self, network: &'n dyn Any) -> Option<&'n [String]>;
    fn classes(
        &self,
        network: &dyn Any,
        tokenizer: &Tokenizer,
        vocabulary: &Vocabulary,
    ) -> Result<(Vec<String>, Tensor<3>)>;
    fn name_mask(
        &self,
        network: &dyn Any,
        features: &dyn Any,
        low_res: &[f32],
        side: usize,
        classes: &Tensor<3>,
    ) -> Result<Tensor<1>>;
}

/// `value` as the engine's own type; the registry only hands an engine what it made.
fn own<'a, T: 'static>(value: &'a dyn Any, engine: &str) -> Result<&'a T> {
    value.downcast_ref::<T>().ok_or_else(|| {
        Error::invalid(format!("this was made by another model than the {engine} one: encode the image again"))
    })
}

impl<E: PromptEngine> AnyPromptEngine for E {
    fn name(&self) -> &'static str {
        E::NAME
    }

    fn model_type(&self) -> &'static str {
        E::MODEL_TYPE
    }

    fn architecture(&self) -> &'static str {
        E::ARCHITECTURE
    }

    fn class(&self) -> &'static str {
        E::CLASS
    }

    fn names_masks(&self) -> bool {
        E::NAMES_MASKS
    }

    fn floor_resize(&self) -> bool {
        E::FLOOR_RESIZE
    }

    fn load(&self, config: &ConfigJson, loader: &mut WeightLoader) -> Result<Box<dyn Any + Send + Sync>> {
        Ok(Box::new(E::load(config, loader)?))
    }

    fn presets(&self) -> Vec<PresetName> {
        E::PRESETS.iter().map(Preset::named).collect()
    }

    fn load_preset(&self, name: &str, loader: &mut WeightLoader) -> Option<Result<Box<dyn Any + Send + Sync>>> {
        let preset = E::PRESETS.iter().find(|p| p.answers_to(name))?;
        Some((preset.build)(loader).map(|n| Box::new(n) as Box<dyn Any + Send + Sync>))
    }

    fn device(&self, network: &dyn Any) -> Result<Device> {
        Ok(E::device(own(network, E::NAME)?))
    }

    fn input_size(&self, network: &dyn Any) -> Result<usize> {
        Ok(E::input_size(own(network, E::NAME)?))
    }

    fn encode(&self, network: &dyn Any, pixels: Tensor<4>) -> Result<(Box<dyn Any + Send + Sync>, Tensor<4>)> {
        let features = E::encode(own(network, E::NAME)?, pixels)?;
        let ready = E::embeddings(&features).clone();
        Ok((Box::new(features), ready))
    }

    fn decode(
        &self,
        network: &dyn Any,
        features: &dyn Any,
        points: &[Point],
        bbox: Option<[f64; 4]>,
        multimask: bool,
    ) -> Result<Decoded> {
        E::decode(own(network, E::NAME)?, own(features, E::NAME)?, points, bbox, multimask)
    }

    fn decode_points(
        &self,
        network: &dyn Any,
        features: &dyn Any,
        points: &[Point],
    ) -> Result<(Tensor<4>, Option<Tensor<2>>)> {
        E::decode_points(own(network, E::NAME)?, own(features, E::NAME)?, points)
    }

    fn released_vocabulary<'n>(&self, network: &'n dyn Any) -> Option<&'n [String]> {
        network.downcast_ref::<E::Network>().and_then(E::released_vocabulary)
    }

    fn classes(
        &self,
        network: &dyn Any,
        tokenizer: &Tokenizer,
        vocabulary: &Vocabulary,
    ) -> Result<(Vec<String>, Tensor<3>)> {
        E::classes(own(network, E::NAME)?, tokenizer, vocabulary)
    }

    fn name_mask(
        &self,
        network: &dyn Any,
        features: &dyn Any,
        low_res: &[f32],
        side: usize,
        classes: &Tensor<3>,
    ) -> Result<Tensor<1>> {
        E::name(own(network, E::NAME)?, own(features, E::NAME)?, low_res, side, classes)
    }
}

/// A loaded prompt checkpoint: its engine, network and processor.
pub struct PromptModel {
    engine: &'static dyn AnyPromptEngine,
    network: Box<dyn Any + Send + Sync>,
    device: Device,
    /// The square input the network was trained at.
    input_size: usize,
    pub processor: SamProcessor,
    tokenizer: Tokenizer,
    /// What its weights hold, where it was loaded here (zero for a network built elsewhere).
    held: HeldBytes,
}

/// An image after the heavy pass, ready for any number of prompts.
pub struct EncodedImage {
    features: Box<dyn Any + Send + Sync>,
    /// `(width, height)` of the image and of its resized copy inside the padded input.
    pub original: (usize, usize),
    resized: (usize, usize),
}

/// One object's mask at the image's size.
#[derive(Debug, Clone, Serialize)]
pub struct ObjectMask {
    pub width: usize,
    pub height: usize,
    /// `height * width` values, 1 inside the object.
    #[serde(skip)]
    pub mask: Vec<u8>,
    /// The decoder's predicted IoU of this mask (Segment Anything; Open-Vocabulary SAM predicts
    /// none).
    pub iou: Option<f32>,
    /// Pixels inside.
    pub area: usize,
    /// The low-resolution mask, `side x side`, read back for naming (Open-Vocabulary SAM).
    #[serde(skip)]
    low_res: Option<(Vec<f32>, usize)>,
}

/// Which classes a model that names its own masks names them among.
#[derive(Debug, Clone, PartialEq)]
pub enum Vocabulary {
    /// The typed words, embedded with the checkpoint's text tower.
    Typed(Vec<Label>),
    /// The classifier the checkpoint carries (LVIS's 1,203 classes in the release).
    Released,
}

/// Class embeddings of one vocabulary, kept while it stays the same.
pub struct ClassEmbeddings {
    key: Vocabulary,
    names: Vec<String>,
    classes: Tensor<3>,
}

impl ClassEmbeddings {
    /// `[classes, prototypes, dim]`, on the device.
    pub fn tensor(&self) -> Tensor<3> {
        self.classes.clone()
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }
}

/// A word and its probability.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    pub label: String,
    pub probability: f32,
}

/// A mask's name among the typed words, and the next best word.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Naming {
    #[serde(flatten)]
    pub best: Candidate,
    pub runner_up: Option<Candidate>,
    /// Open-Vocabulary SAM: the best class's index in the vocabulary it was named from (the
    /// typed words, or the checkpoint's classifier, 1,203 LVIS classes in the release), for
    /// label maps past 255 classes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class_index: Option<usize>,
}

impl PromptModel {
    /// A model around a network built elsewhere (random weights for benchmarks); `network`
    /// must be `engine`'s.
    pub fn new(engine: &'static dyn AnyPromptEngine, network: Box<dyn Any + Send + Sync>) -> Result<Self> {
        let (device, input_size) = (engine.device(network.as_ref())?, engine.input_size(network.as_ref())?);
        let mut processor = SamProcessor::new(input_size);
        processor.floor_resize = engine.floor_resize();
        let held = HeldBytes::default();
        Ok(PromptModel { engine, network, device, input_size, processor, tokenizer: Tokenizer::new(), held })
    }

    /// The bytes its weights hold in memory, by type (see [`HeldBytes`]).
    pub fn held_bytes(&self) -> HeldBytes {
        self.held
    }

    /// The model, its weights holding `held` (tallied by the loader that built it).
    pub(crate) fn with_held(self, held: HeldBytes) -> Self {
        PromptModel { held, ..self }
    }

    /// Load a prompt model's folder (or weights file beside its `config.json`), natively:
    /// [`ModelFiles::open`] then [`PromptModel::from_bytes`].
    ///
    /// [`ModelFiles::open`]: crate::model_files::ModelFiles::open
    #[cfg(not(target_family = "wasm"))]
    pub fn open(path: impl AsRef<std::path::Path>, device: &Device) -> Result<Self> {
        let files = crate::model_files::ModelFiles::open(path)?;
        Self::from_bytes(&files.config, files.weights(), &files.weights_name(), files.preprocessor.as_deref(), device)
    }

    /// Load a checkpoint of any prompt engine (`config.json`'s `model_type` picks it).
    pub fn from_bytes(
        config_json: &str,
        weights: &[u8],
        weights_name: &str,
        preprocessor_json: Option<&str>,
        device: &Device,
    ) -> Result<Self> {
        let config = ConfigJson::parse(config_json)?;
        // The architecture is checked before the weights are parsed.
        Self::engine_of(&config)?;
        Self::from_config(&config, &Checkpoint::from_bytes(weights, weights_name)?, preprocessor_json, device)
    }

    /// [`PromptModel::from_bytes`] over an opened checkpoint (one whose bytes stay in the page).
    pub fn from_checkpoint(
        config_json: &str,
        checkpoint: &Checkpoint<'_>,
        preprocessor_json: Option<&str>,
        device: &Device,
    ) -> Result<Self> {
        Self::from_config(&ConfigJson::parse(config_json)?, checkpoint, preprocessor_json, device)
    }

    /// [`PromptModel::from_checkpoint`] with its `config.json` parsed once.
    pub fn from_config(
        config: &ConfigJson,
        checkpoint: &Checkpoint<'_>,
        preprocessor_json: Option<&str>,
        device: &Device,
    ) -> Result<Self> {
        let engine = Self::engine_of(config)?;
        let (network, held) = loader::load_held(checkpoint, device, engine.class(), |l| engine.load(config, l))?;
        let mut model = PromptModel { held, ..PromptModel::new(engine, network)? };
        if let Some(text) = preprocessor_json {
            model.processor = SamProcessor::from_json(text, model.input_size)?;
            model.processor.floor_resize = engine.floor_resize();
        }
        Ok(model)
    }

    /// What `config.json` describes with random weights in place of a checkpoint's (see
    /// [`WeightLoader::random`]): a real checkpoint's shapes without its download.
    pub fn random(config: &ConfigJson, device: &Device) -> Result<Self> {
        let engine = Self::engine_of(config)?;
        let mut loader = WeightLoader::random(device);
        let network = engine.load(config, &mut loader)?;
        Ok(PromptModel { held: loader.held, ..PromptModel::new(engine, network)? })
    }

    fn engine_of(config: &ConfigJson) -> Result<&'static dyn AnyPromptEngine> {
        let kind = config.model_type();
        prompt_engine(kind).ok_or_else(|| Error::Config(super::wrong_kind_for_prompts(kind)))
    }

    /// The engine's name ("sam", "ovsam").
    pub fn engine(&self) -> &'static str {
        self.engine.name()
    }

    /// The concrete network, when it is a `T`.
    pub fn network<T: 'static>(&self) -> Option<&T> {
        self.network.downcast_ref::<T>()
    }

    /// The concrete network, to change (tests perturb a weight).
    pub fn network_mut<T: 'static>(&mut self) -> Option<&mut T> {
        self.network.downcast_mut::<T>()
    }

    pub fn device(&self) -> Device {
        self.device.clone()
    }

    pub fn input_size(&self) -> usize {
        self.input_size
    }

    /// Whether the model names its own masks (Open-Vocabulary SAM).
    pub fn names_masks(&self) -> bool {
        self.engine.names_masks()
    }

    /// The class names of the checkpoint's own classifier, when it carries one.
    pub fn released_vocabulary(&self) -> Option<&[String]> {
        self.engine.released_vocabulary(self.network.as_ref())
    }

    /// The heavy pass, once per image; done when it returns.
    pub async fn encode(&self, image: &RgbImage) -> Result<EncodedImage> {
        let (pixels, resized) = self.processor.pixels(image, &self.device);
        let (features, ready) = self.engine.encode(self.network.as_ref(), pixels)?;
        crate::device::settle(&ready).await?;
        Ok(EncodedImage { features, original: (image.width, image.height), resized })
    }

    /// The light pass: the mask of one prompt at the image's size (the candidate with the
    /// highest predicted IoU, upsampled and thresholded at 0 as `post_process_masks` does).
    pub async fn segment(&self, encoded: &EncodedImage, prompt: &Prompt) -> Result<ObjectMask> {
        let (w, h) = encoded.original;
        prompt.validate(w, h)?;
        let to_input = |x: f64, y: f64| self.processor.to_input(x, y, encoded.original);
        let points: Vec<Point> = prompt
            .points
            .iter()
            .map(|c| {
                let (x, y) = to_input(c.x, c.y);
                Point { x, y, positive: c.positive }
            })
            .collect();
        let bbox = prompt.bbox.map(|[x0, y0, x1, y1]| {
            let ((a, b), (c, d)) = (to_input(x0, y0), to_input(x1, y1));
            [a, b, c, d]
        });
        let network = self.network.as_ref();
        let decoded = self.engine.decode(network, encoded.features.as_ref(), &points, bbox, prompt.multimask())?;
        let logits = crate::device::read(self.processor.cropped(decoded.masks, encoded.resized)).await?;
        let iou = match decoded.iou {
            Some(t) => Some(crate::device::read(t).await?),
            None => None,
        };
        let low_res = match decoded.low_res {
            Some(t) => {
                let side = t.dims()[1];
                Some((crate::device::read(t).await?, side))
            }
            None => None,
        };
        Ok(self.upscaled(encoded, &logits, iou, low_res))
    }

    /// The candidate with the highest predicted IoU, upsampled to the image row by row and
    /// thresholded at 0: only the one-byte mask is photo-sized.
    fn upscaled(
        &self,
        encoded: &EncodedImage,
        logits: &[f32],
        iou: Option<Vec<f32>>,
        low_res: Option<(Vec<f32>, usize)>,
    ) -> ObjectMask {
        let (width, height) = encoded.original;
        let best = iou.as_ref().map_or(0, |iou| (0..iou.len()).fold(0, |b, i| if iou[i] > iou[b] { i } else { b }));
        let plane = encoded.resized.0 * encoded.resized.1;
        let mut mask = vec![0u8; width * height];
        let candidate = &logits[best * plane..(best + 1) * plane];
        self.processor.upscale_rows(candidate, encoded.resized, encoded.original, |y, row| {
            for (m, &v) in mask[y * width..(y + 1) * width].iter_mut().zip(row) {
                *m = u8::from(v > 0.0);
            }
        });
        let area = mask.iter().filter(|&&v| v == 1).count();
        ObjectMask { width, height, mask, iou: iou.map(|iou| iou[best]), area, low_res }
    }

    /// The class embeddings of `vocabulary`, from `cache` when it holds them, else embedded and
    /// kept there (a model that names its masks).
    pub fn prepare_classes<'c>(
        &self,
        vocabulary: &Vocabulary,
        cache: &'c mut Option<ClassEmbeddings>,
    ) -> Result<&'c ClassEmbeddings> {
        let classes = match cache.take().filter(|c| &c.key == vocabulary) {
            Some(kept) => kept,
            None => {
                let (names, classes) = self.engine.classes(self.network.as_ref(), &self.tokenizer, vocabulary)?;
                ClassEmbeddings { key: vocabulary.clone(), names, classes }
            }
        };
        Ok(cache.insert(classes))
    }

    /// The name of a mask among `classes` (a model that names its masks): `softmax` over the
    /// classes and the zero-logit background, the background dropped; the best class and the
    /// runner-up.
    pub async fn name(&self, encoded: &EncodedImage, mask: &ObjectMask, classes: &ClassEmbeddings) -> Result<Naming> {
        let (low_res, side) =
            mask.low_res.as_ref().ok_or_else(|| Error::invalid("the mask has no low-resolution logits"))?;
        let network = self.network.as_ref();
        let logits = self.engine.name_mask(network, encoded.features.as_ref(), low_res, *side, &classes.classes)?;
        let probs = crate::ovsam::class_probabilities(&crate::device::read(logits).await?);
        let mut order: Vec<usize> = (0..probs.len()).collect();
        order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
        let candidate = |i: usize| Candidate { label: classes.names[i].clone(), probability: probs[i] };
        Ok(Naming {
            best: candidate(order[0]),
            runner_up: order.get(1).map(|&i| candidate(i)),
            class_index: Some(order[0]),
        })
    }
}
