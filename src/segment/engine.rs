//! What an engine is: a network (picked by the checkpoint's `model_type`), typed options with
//! their defaults, and the scores it computes for a label set. [`Engine`] is implemented once
//! per engine with its own types; the registry in `segment/mod.rs` holds every engine as
//! `&dyn AnyEngine`, which the rest of the crate uses without knowing the concrete types.

use std::any::Any;

use burn::tensor::Tensor;
use serde::Serialize;

use super::result::PixelSteps;
use super::slide::Windows;
use super::text::{ClassEmbeddings, Templates};
use super::{BackgroundDataset, Settings};
use crate::error::{Error, Result};
use crate::loader::WeightLoader;
use crate::network::{ConfigJson, Network};
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
    pub async fn at(self, width: usize, height: usize) -> Result<Vec<f32>> {
        let maps = super::result::ScoreMaps::read(self.maps).await?;
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
    /// The engine in a few words, as the page names it ("dense CLIP").
    const DESCRIPTION: &'static str;
    /// What its threshold setting means, as the page labels it.
    const THRESHOLD_MEANS: &'static str;
    /// The transformers class whose weights the checkpoint holds ("CLIPModel"), for loader
    /// errors.
    const CLASS: &'static str;
    type Network: Network;
    /// Every setting the engine reads, typed; `Default` is the only source of its defaults.
    type Options: Default + Clone + Serialize + Send + Sync + 'static;

    /// Hub checkpoints' architectures, for timing with random weights.
    const PRESETS: &'static [Preset<Self::Network>] = &[];
    /// Whether the checkpoint's `preprocessor_config.json` is read (CLIP checkpoints use CLIP's
    /// own preprocessing, which the core knows, so the page need not fetch it).
    const READS_PREPROCESSOR: bool = true;

    /// Build the network from `config.json`, taking every tensor through `loader`.
    fn load(config: &ConfigJson, loader: &mut WeightLoader) -> Result<Self::Network>;
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
    /// Each name's score map at the engine's working resolution, for naming a mask by pooling
    /// them inside it (the Open-Vocabulary SAM paper's "SAM + CLIP"), or `None` where the
    /// engine has no such maps.
    fn naming_maps(
        _network: &Self::Network,
        _preprocessor: &Preprocessor,
        _image: &RgbImage,
        _classes: &ClassEmbeddings,
        _options: &Self::Options,
    ) -> Option<Result<NamingMaps>> {
        None
    }
}

/// A hub checkpoint's architecture, built with random weights (`wordmask bench --config NAME
/// --random-weights`), for timing without the checkpoint.
pub struct Preset<N> {
    pub name: &'static str,
    /// Other names it answers to.
    pub aliases: &'static [&'static str],
    /// The checkpoint whose shapes it has.
    pub about: &'static str,
    pub build: fn(&mut WeightLoader) -> Result<N>,
}

/// What a preset is called and what it stands for (a [`Preset`] without its builder).
#[derive(Debug, Clone, Copy)]
pub struct PresetName {
    pub name: &'static str,
    pub aliases: &'static [&'static str],
    pub about: &'static str,
}

impl<N> Preset<N> {
    pub fn answers_to(&self, name: &str) -> bool {
        self.name == name || self.aliases.contains(&name)
    }

    pub fn named(&self) -> PresetName {
        PresetName { name: self.name, aliases: self.aliases, about: self.about }
    }
}

/// Per-name score maps `[1, names, rh, rw]` for naming masks, and the temperature of their
/// softmax.
pub struct NamingMaps {
    pub maps: Tensor<4>,
    pub logit_scale: f32,
}

/// Settings resolved against one engine, once per request: the plan the shared steps read and
/// the engine's own typed options (erased; only that engine reads them).
pub struct Request {
    pub plan: Plan,
    options: Box<dyn Any + Send + Sync>,
}

/// An [`Engine`] with its types erased, as the registry holds it.
pub trait AnyEngine: Sync {
    fn name(&self) -> &'static str;
    fn model_type(&self) -> &'static str;
    fn architecture(&self) -> &'static str;
    fn description(&self) -> &'static str;
    fn threshold_means(&self) -> &'static str;
    fn class(&self) -> &'static str;
    fn load(&self, config: &ConfigJson, loader: &mut WeightLoader) -> Result<Box<dyn Network>>;
    fn presets(&self) -> Vec<PresetName>;
    /// The preset `name` built through `loader`, if this engine has it.
    fn load_preset(&self, name: &str, loader: &mut WeightLoader) -> Option<Result<Box<dyn Network>>>;
    fn reads_preprocessor(&self) -> bool;
    /// Whether `network` is this engine's kind.
    fn runs(&self, network: &dyn Network) -> bool;
    /// The options for empty settings, as the page and `<word-mask>` show them (camelCase,
    /// with the engine's name).
    fn defaults(&self) -> serde_json::Value;
    /// The user's settings resolved against this engine: refused when they name another
    /// engine's settings or a value out of range.
    fn request(&self, settings: &Settings) -> Result<Request>;
    /// The scores of `image` for `classes` (embedded with the request's templates and
    /// background words).
    fn scores(
        &self,
        network: &dyn Network,
        preprocessor: &Preprocessor,
        image: &RgbImage,
        classes: &ClassEmbeddings,
        request: &Request,
    ) -> Result<Scores>;
    /// [`Engine::naming_maps`], or an error naming what can name masks.
    fn naming_maps(
        &self,
        network: &dyn Network,
        preprocessor: &Preprocessor,
        image: &RgbImage,
        classes: &ClassEmbeddings,
        request: &Request,
    ) -> Result<NamingMaps>;
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

    fn description(&self) -> &'static str {
        E::DESCRIPTION
    }

    fn threshold_means(&self) -> &'static str {
        E::THRESHOLD_MEANS
    }

    fn class(&self) -> &'static str {
        E::CLASS
    }

    fn load(&self, config: &ConfigJson, loader: &mut WeightLoader) -> Result<Box<dyn Network>> {
        Ok(Box::new(E::load(config, loader)?))
    }

    fn presets(&self) -> Vec<PresetName> {
        E::PRESETS.iter().map(Preset::named).collect()
    }

    fn load_preset(&self, name: &str, loader: &mut WeightLoader) -> Option<Result<Box<dyn Network>>> {
        let preset = E::PRESETS.iter().find(|p| p.answers_to(name))?;
        Some((preset.build)(loader).map(|n| Box::new(n) as Box<dyn Network>))
    }

    fn reads_preprocessor(&self) -> bool {
        E::READS_PREPROCESSOR
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

    fn request(&self, settings: &Settings) -> Result<Request> {
        settings.refuse_other_engines(E::NAME)?;
        let options = E::options(settings)?;
        Ok(Request { plan: E::plan(&options), options: Box::new(options) })
    }

    fn scores(
        &self,
        network: &dyn Network,
        preprocessor: &Preprocessor,
        image: &RgbImage,
        classes: &ClassEmbeddings,
        request: &Request,
    ) -> Result<Scores> {
        let (network, options) = parts::<E>(network, request)?;
        E::scores(network, preprocessor, image, classes, options)
    }

    fn naming_maps(
        &self,
        network: &dyn Network,
        preprocessor: &Preprocessor,
        image: &RgbImage,
        classes: &ClassEmbeddings,
        request: &Request,
    ) -> Result<NamingMaps> {
        let (network, options) = parts::<E>(network, request)?;
        E::naming_maps(network, preprocessor, image, classes, options).unwrap_or_else(|| {
            Err(Error::invalid(format!(
                "naming masks needs a CLIP checkpoint (the dense engine); this one runs the {} engine",
                E::NAME
            )))
        })
    }

    fn dataset_protocol(&self, dataset: BackgroundDataset) -> DatasetProtocol {
        E::dataset_protocol(dataset)
    }
}

/// The concrete network and options of a request made by engine `E`.
fn parts<'a, E: Engine>(network: &'a dyn Network, request: &'a Request) -> Result<(&'a E::Network, &'a E::Options)> {
    let network = network
        .downcast::<E::Network>()
        .ok_or_else(|| Error::invalid(format!("the {} engine needs a {} checkpoint", E::NAME, E::ARCHITECTURE)))?;
    let options = request
        .options
        .downcast_ref::<E::Options>()
        .ok_or_else(|| Error::invalid(format!("these settings were resolved for another engine than {}", E::NAME)))?;
    Ok((network, options))
}
