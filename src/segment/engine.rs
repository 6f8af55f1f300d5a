//! What an engine is: a network (picked by the checkpoint's `model_type`), typed options with
//! their defaults, and the scores it computes for a label set. [`Engine`] is implemented once
//! per engine with its own types; the registry in `segment/mod.rs` holds every engine as
//! `&dyn AnyEngine`, which the rest of the crate uses without knowing the concrete types.

use burn::tensor::Tensor;
use serde::Serialize;

use super::result::PixelSteps;
use super::slide::Windows;
use super::text::{ClassEmbeddings, EmbeddingCache, Templates};
use super::{BackgroundDataset, Model, Settings};
use crate::error::{Error, Result};
use crate::labels::Label;
use crate::loader::WeightLoader;
use crate::network::Network;
use crate::preprocess::{Preprocessor, RgbImage};

/// What the steps every engine shares (text, label map, summaries) need to know of an
/// engine's options.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub engine: &'static str,
    /// The engine's method ("naclip", "groupvit", ...), for summaries.
    pub method: String,
    pub templates: Templates,
    pub windows: Windows,
    /// Words of an extra background class (after the user's labels); empty for none.
    pub background: Vec<String>,
    /// The threshold as the user set it or the engine's default (its meaning is the engine's).
    pub threshold: f32,
    /// Pixels whose top score is under this stay unlabelled.
    pub min_score: f32,
    /// The engine appends a background row of its own (a threshold of GroupViT's kind).
    pub engine_background: bool,
}

impl Plan {
    /// Whether the scores end with a background row: the background words' class, or the
    /// engine's own.
    pub fn background_row(&self) -> bool {
        !self.background.is_empty() || self.engine_background
    }
}

/// An engine's scores `[rows, h, w]` on the device at its working resolution (at most the
/// image's), and how each pixel of the image gets its class scores from them: bilinear
/// upsampling, then [`PixelSteps`]. The shared code finishes them on the host a band at a time
/// ([`super::result`]), so no engine holds classes × image pixels.
pub struct Scores {
    pub maps: Tensor<3>,
    pub steps: PixelSteps,
}

impl Scores {
    /// The class scores at `width x height`, `[classes, height, width]` (tests and small
    /// images; segmentation itself never materialises them).
    #[cfg(not(target_family = "wasm"))]
    pub fn at(self, width: usize, height: usize) -> Result<Vec<f32>> {
        let maps = super::result::ScoreMaps::read(self.maps)?;
        Ok(super::result::full_scores(&maps, &self.steps, width, height))
    }
}

/// How an engine's own repository evaluates a dataset whose class 0 is background.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DatasetProtocol {
    /// The threshold that makes class 0.
    pub threshold: f32,
    /// Whether class 0's name is embedded as a class (dense CLIP) or left to the threshold
    /// alone (GroupViT).
    pub embeds_background_name: bool,
}

/// One engine. Implement it in the engine's own module, then add the type to `ENGINES`.
pub trait Engine: Sync + 'static {
    /// Lower-case name, as `--engine`, the page and summaries show it.
    const NAME: &'static str;
    /// The `model_type` of the checkpoints it runs.
    const MODEL_TYPE: &'static str;
    /// What people call those checkpoints ("CLIP"), for messages.
    const ARCHITECTURE: &'static str;
    /// The transformers class whose weights the checkpoint holds ("CLIPModel"), for loader
    /// errors.
    const CLASS: &'static str;
    type Network: Network;
    /// Every setting the engine reads, typed; `Default` is the only source of its defaults.
    type Options: Default + Clone + Serialize;

    /// Build the network from `config.json`, taking every tensor through `loader`.
    fn load(config_json: &str, loader: &mut WeightLoader) -> Result<Self::Network>;
    /// The user's settings over the defaults, validated (settings that belong to other engines
    /// are refused before this is called).
    fn options(settings: &Settings) -> Result<Self::Options>;
    fn plan(options: &Self::Options) -> Plan;
    /// Scores at the engine's working resolution and the per-pixel steps that make them one
    /// score per class of `classes` (then the engine's own background row when
    /// [`Plan::engine_background`], folded into the background words' class when there is one)
    /// once upsampled to the image: see [`Scores`].
    fn scores(
        network: &Self::Network,
        preprocessor: &Preprocessor,
        image: &RgbImage,
        classes: &ClassEmbeddings,
        options: &Self::Options,
    ) -> Result<Scores>;
    fn dataset_protocol(dataset: BackgroundDataset) -> DatasetProtocol;
}

/// An [`Engine`] with its types erased, as the registry holds it.
pub trait AnyEngine: Sync {
    fn name(&self) -> &'static str;
    fn model_type(&self) -> &'static str;
    fn architecture(&self) -> &'static str;
    fn class(&self) -> &'static str;
    fn load(&self, config_json: &str, loader: &mut WeightLoader) -> Result<Box<dyn Network>>;
    /// Whether `network` is this engine's kind.
    fn runs(&self, network: &dyn Network) -> bool;
    /// The options for empty settings, as the page and `<word-mask>` show them (camelCase,
    /// with the engine's name).
    fn defaults(&self) -> serde_json::Value;
    fn plan(&self, settings: &Settings) -> Result<Plan>;
    /// The text embeddings (through `cache`) and the scores tensor for `labels`.
    fn scores(
        &self,
        model: &Model,
        image: &RgbImage,
        labels: &[Label],
        settings: &Settings,
        cache: &mut EmbeddingCache,
    ) -> Result<(Scores, Plan)>;
    fn dataset_protocol(&self, dataset: BackgroundDataset) -> DatasetProtocol;
}

impl<E: Engine> AnyEngine for E {
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

    fn load(&self, config_json: &str, loader: &mut WeightLoader) -> Result<Box<dyn Network>> {
        Ok(Box::new(E::load(config_json, loader)?))
    }

    fn runs(&self, network: &dyn Network) -> bool {
        network.downcast::<E::Network>().is_some()
    }

    fn defaults(&self) -> serde_json::Value {
        // Through text, so an f32 of 0.1 reads 0.1 (`to_value` would widen it to 0.10000000149...).
        let text = serde_json::to_string(&E::Options::default()).unwrap_or_default();
        let mut value: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        if let Some(map) = value.as_object_mut() {
            map.insert("engine".into(), E::NAME.into());
        }
        value
    }

    fn plan(&self, settings: &Settings) -> Result<Plan> {
        settings.refuse_other_engines(E::NAME)?;
        Ok(E::plan(&E::options(settings)?))
    }

    fn scores(
        &self,
        model: &Model,
        image: &RgbImage,
        labels: &[Label],
        settings: &Settings,
        cache: &mut EmbeddingCache,
    ) -> Result<(Scores, Plan)> {
        settings.refuse_other_engines(E::NAME)?;
        let options = E::options(settings)?;
        let plan = E::plan(&options);
        let network = model
            .network()
            .downcast::<E::Network>()
            .ok_or_else(|| Error::invalid(format!("the {} engine needs a {} checkpoint", E::NAME, E::ARCHITECTURE)))?;
        let classes = cache.get(model, labels, &plan.background, plan.templates.prompts())?;
        let scores = E::scores(network, &model.preprocessor, image, &classes, &options)?;
        Ok((scores, plan))
    }

    fn dataset_protocol(&self, dataset: BackgroundDataset) -> DatasetProtocol {
        E::dataset_protocol(dataset)
    }
}
