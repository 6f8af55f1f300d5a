//! A loaded checkpoint: its network, the engine that runs it, the tokenizer and the image
//! preprocessing. Everything comes from bytes (`config.json`, weights, optional
//! `preprocessor_config.json`), so native code and the page load the same way; the
//! checkpoint's `model_type` picks the engine from [`super::ENGINES`].

use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor, TensorData};

use super::engine::Request;
use super::text::TextEncoder;
use super::{AnyEngine, BackgroundDataset, DatasetProtocol, ENGINES, Plan, Settings};
use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::labels::Label;
use crate::loader;
use crate::network::{ConfigJson, ImageEmbedding, Network};
use crate::preprocess::{Preprocessor, RgbImage};
use crate::tokenizer::Tokenizer;

pub struct Model {
    network: Box<dyn Network>,
    engine: &'static dyn AnyEngine,
    pub tokenizer: Tokenizer,
    pub preprocessor: Preprocessor,
    /// What its weights hold, where it was loaded here (zero for a network built elsewhere).
    held: loader::HeldBytes,
}

impl TextEncoder for Model {
    fn text_network(&self) -> &dyn Network {
        self.network.as_ref()
    }

    fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }
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
    /// Load a model folder (`config.json`, weights, an optional `preprocessor_config.json`)
    /// or a weights file beside its `config.json`, natively: [`ModelFiles::open`] then
    /// [`Model::from_bytes`].
    ///
    /// [`ModelFiles::open`]: crate::model_files::ModelFiles::open
    #[cfg(not(target_family = "wasm"))]
    pub fn open(path: impl AsRef<std::path::Path>, device: &Device) -> Result<Self> {
        let files = crate::model_files::ModelFiles::open(path)?;
        Self::from_bytes(&files.config, files.weights(), &files.weights_name(), files.preprocessor.as_deref(), device)
    }

    /// Load any supported checkpoint; `config.json`'s `model_type` picks the engine.
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

    /// [`Model::from_bytes`] over an opened checkpoint (one whose bytes stay outside memory, in
    /// the page).
    pub fn from_checkpoint(
        config_json: &str,
        checkpoint: &Checkpoint<'_>,
        preprocessor_json: Option<&str>,
        device: &Device,
    ) -> Result<Self> {
        Self::from_config(&ConfigJson::parse(config_json)?, checkpoint, preprocessor_json, device)
    }

    /// [`Model::from_checkpoint`] with its `config.json` parsed once (by whoever asked what it
    /// is for).
    pub fn from_config(
        config: &ConfigJson,
        checkpoint: &Checkpoint<'_>,
        preprocessor_json: Option<&str>,
        device: &Device,
    ) -> Result<Self> {
        let engine = Self::engine_of(config)?;
        let (network, held) = loader::load_held(checkpoint, device, engine.class(), |l| engine.load(config, l))?;
        Ok(Model { held, ..Self::with_engine(network, engine, preprocessor_json)? })
    }

    /// What `config.json` describes with random weights in place of a checkpoint's (see
    /// [`crate::loader::WeightLoader::random`]): a real checkpoint's shapes without its download.
    pub fn random(config: &ConfigJson, device: &Device) -> Result<Self> {
        let engine = Self::engine_of(config)?;
        let mut loader = loader::WeightLoader::random(device);
        let network = engine.load(config, &mut loader)?;
        Ok(Model { held: loader.held, ..Self::with_engine(network, engine, None)? })
    }

    /// The engine of a `config.json`'s `model_type`, or an error naming the known ones.
    fn engine_of(config: &ConfigJson) -> Result<&'static dyn AnyEngine> {
        let kind = config.model_type();
        ENGINES
            .iter()
            .copied()
            .find(|e| e.model_type() == kind)
            .ok_or_else(|| Error::Config(super::wrong_kind_for_words(kind)))
    }

    /// A model around a network built elsewhere (random weights for benchmarks, a perturbed
    /// loader in tests).
    pub fn new(network: Box<dyn Network>, preprocessor_json: Option<&str>) -> Result<Self> {
        let engine = ENGINES
            .iter()
            .copied()
            .find(|e| e.runs(network.as_ref()))
            .ok_or_else(|| Error::invalid("no engine runs this network"))?;
        Self::with_engine(network, engine, preprocessor_json)
    }

    fn with_engine(
        network: Box<dyn Network>,
        engine: &'static dyn AnyEngine,
        preprocessor_json: Option<&str>,
    ) -> Result<Self> {
        let preprocessor = match preprocessor_json {
            Some(text) => Preprocessor::from_json(text, network.image_size())?,
            None => network.default_preprocessor(),
        };
        Ok(Model { network, engine, tokenizer: Tokenizer::new(), preprocessor, held: loader::HeldBytes::default() })
    }

    /// The bytes its weights hold in memory, by type (see [`loader::HeldBytes`]).
    pub fn held_bytes(&self) -> loader::HeldBytes {
        self.held
    }

    /// The model, its weights holding `held` (tallied by the loader that built it).
    pub(crate) fn with_held(self, held: loader::HeldBytes) -> Self {
        Model { held, ..self }
    }

    pub fn network(&self) -> &dyn Network {
        self.network.as_ref()
    }

    /// The engine's name ("dense", "groupvit").
    pub fn engine(&self) -> &'static str {
        self.engine.name()
    }

    /// The engine's options for empty settings, as the page shows them.
    pub fn defaults(&self) -> serde_json::Value {
        self.engine.defaults()
    }

    /// `settings` resolved against this model's engine (what `segment` does first).
    pub fn request(&self, settings: &Settings) -> Result<Request> {
        self.engine_for(settings)?.request(settings)
    }

    /// What the engine will do with `settings`.
    pub fn plan(&self, settings: &Settings) -> Result<Plan> {
        Ok(self.request(settings)?.plan)
    }

    /// How this model's engine evaluates a dataset whose class 0 is background.
    pub fn dataset_protocol(&self, dataset: BackgroundDataset) -> DatasetProtocol {
        self.engine.dataset_protocol(dataset)
    }

    /// The engine, after checking that the one `settings` name (if any) is this checkpoint's.
    pub(super) fn engine_for(&self, settings: &Settings) -> Result<&'static dyn AnyEngine> {
        let own = self.engine;
        match settings.engine.as_deref() {
            None | Some("auto") => Ok(own),
            Some(name) if name == own.name() => Ok(own),
            Some(name) => match ENGINES.iter().find(|e| e.name() == name) {
                Some(asked) => Err(Error::invalid(format!(
                    "the {name} engine needs a {} checkpoint (model_type '{}'); this is a {} checkpoint (use the {} engine)",
                    asked.architecture(),
                    asked.model_type(),
                    own.architecture(),
                    own.name()
                ))),
                None => Err(Error::invalid(format!(
                    "engine must be one of {}; got {name}",
                    super::engine_choices().join(", ")
                ))),
            },
        }
    }

    pub fn device(&self) -> Device {
        self.network.device()
    }

    /// L2-normalised text embeddings, one row per text. `-> [texts, proj]`
    pub fn embed_texts(&self, texts: &[&str]) -> Result<Tensor<2>> {
        self.network.embed_texts(&self.tokenizer, texts)
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

    /// The heavy pass for one image: its embedding and the shape of its tokens.
    pub fn embed_image(&self, image: &RgbImage, size: ImageSize) -> Result<ImageEmbedding> {
        let (chw, (w, h)) = self.preprocessor_for(size).apply(image)?;
        self.network.embed_image(Tensor::from_data(TensorData::new(chw, [1, 3, h, w]), &self.device()))
    }

    /// Zero-shot label probabilities for `image`: `softmax(logit_scale * cos(image, text))`,
    /// each label put into `template` (`{}` is replaced by its first synonym). `-> [1, labels]`
    pub fn classify(&self, image: &RgbImage, labels: &[Label], template: &str) -> Result<Tensor<2>> {
        let prompts: Vec<String> = labels.iter().map(|l| template.replace("{}", &l.name)).collect();
        let refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
        let text = self.embed_texts(&refs)?;
        let image = self.embed_image(image, ImageSize::default())?.embeds;
        Ok(softmax(image.matmul(text.transpose()).mul_scalar(self.network.logit_scale()), 1))
    }
}
