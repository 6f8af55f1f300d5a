//! What every network offers the layers above it: text and image embeddings for zero-shot
//! scores, the compute device, and the input size it was trained at. The networks themselves
//! (`clip`, `groupvit`, ...) implement [`Network`]; the engine layer picks one by the
//! checkpoint's `model_type` and reaches the concrete type through [`Network::as_any`].
//!
//! Also here: reading a HF `config.json` the way transformers does, shared by every network's
//! config.

use std::any::Any;

use burn::tensor::{Device, Tensor};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::nn::l2_normalize;
use crate::preprocess::Preprocessor;
use crate::tokenizer::Tokenizer;

/// What a network's image embedding is made of: a grid of patch tokens (CLIP) or a set of
/// group tokens (GroupViT).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tokens {
    Patches { rows: usize, cols: usize },
    Groups { count: usize },
}

impl std::fmt::Display for Tokens {
    /// "196 patches", "8 groups".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tokens::Patches { rows, cols } => write!(f, "{} patches", rows * cols),
            Tokens::Groups { count } => write!(f, "{count} groups"),
        }
    }
}

/// What `embed-image` reports.
#[derive(Debug, Clone)]
pub struct ImageEmbedding {
    /// L2-normalised, `[b, proj]`.
    pub embeds: Tensor<2>,
    pub tokens: Tokens,
}

/// A dual-encoder network: text and images into one embedding space.
pub trait Network: Any + Send + Sync {
    fn device(&self) -> Device;
    /// The square input size it was trained at (`vision_config.image_size`).
    fn image_size(&self) -> usize;
    /// The preprocessing used when the checkpoint comes without `preprocessor_config.json`.
    fn default_preprocessor(&self) -> Preprocessor {
        Preprocessor::clip(self.image_size())
    }
    /// `exp(logit_scale)`: the temperature of image-text logits.
    fn logit_scale(&self) -> f32;
    /// Longest token sequence of the text tower.
    fn text_context(&self) -> usize;
    /// Token ids of texts for this network's text tower: CLIP's BPE (`tokenizer`), padded to
    /// the context. A network with a tokenizer of its own (Fusioner's BERT: WordPiece, each
    /// text as long as it is) overrides it.
    fn tokenize(&self, tokenizer: &Tokenizer, texts: &[&str]) -> Vec<Vec<u32>> {
        tokenizer.encode_batch(texts, self.text_context())
    }
    /// Projected, not yet normalised, text features of token rows as [`Network::tokenize`]
    /// gives them. `-> [b, proj]`
    fn text_features(&self, ids: &[Vec<u32>]) -> Result<Tensor<2>>;
    /// Width of a text embedding (`proj`).
    fn text_width(&self) -> usize;
    /// The heavy pass on normalised pixels `[b, 3, H, W]`.
    fn embed_image(&self, pixels: Tensor<4>) -> Result<ImageEmbedding>;
    fn as_any(&self) -> &dyn Any;
}

impl dyn Network {
    /// L2-normalised text embeddings of token rows. `-> [b, proj]`
    pub fn embed_token_ids(&self, ids: &[Vec<u32>]) -> Result<Tensor<2>> {
        Ok(l2_normalize(self.text_features(ids)?))
    }

    /// Tokenize and embed. `-> [texts, proj]`, L2-normalised.
    pub fn embed_texts(&self, tokenizer: &Tokenizer, texts: &[&str]) -> Result<Tensor<2>> {
        self.embed_token_ids(&self.tokenize(tokenizer, texts))
    }

    /// The concrete network, when it is a `T`.
    pub fn downcast<T: Network>(&self) -> Option<&T> {
        self.as_any().downcast_ref::<T>()
    }
}

/// A `config.json`, parsed once and handed to everything that reads it (the registries pick
/// the engine by its `model_type`, the engine's network reads the rest).
#[derive(Debug, Clone)]
pub struct ConfigJson {
    value: serde_json::Value,
}

impl ConfigJson {
    pub fn parse(text: &str) -> Result<Self> {
        let value =
            serde_json::from_str(text).map_err(|e| Error::Config(format!("config.json is not valid JSON: {e}")))?;
        Ok(ConfigJson { value })
    }

    /// Its `model_type` ("" when it has none).
    pub fn model_type(&self) -> &str {
        self.value.get("model_type").and_then(|v| v.as_str()).unwrap_or("")
    }

    /// The JSON, refused with a message naming both when it is another architecture's.
    pub fn expect(&self, model_type: &str, class: &str) -> Result<&serde_json::Value> {
        let found = self.model_type();
        if found != model_type {
            let shown = if found.is_empty() { "none".to_string() } else { format!("'{found}'") };
            return Err(Error::Config(format!(
                "model_type is {shown}; this loader reads model_type '{model_type}' ({class}) checkpoints"
            )));
        }
        Ok(&self.value)
    }
}

/// `model_type` of a `config.json` text ("" when it has none).
pub fn model_type(config_json: &str) -> Result<String> {
    Ok(ConfigJson::parse(config_json)?.model_type().to_string())
}

/// `config.json` as JSON, refusing other architectures with a message naming them.
pub fn read_config(text: &str, model_type: &str, class: &str) -> Result<serde_json::Value> {
    ConfigJson::parse(text)?.expect(model_type, class).cloned()
}

/// A tower's sub-config (`side` = `text` or `vision`) as transformers builds it: `{side}_config`,
/// and where an old hub file also carries `{side}_config_dict`, that dict wins: transformers
/// builds the complete tower config from the dict alone (its defaults filling the gaps) and
/// lets it override every key of `{side}_config` (`CLIPConfig.__init__`,
/// `GroupViTConfig.__init__`).
pub fn sub_config(config: &serde_json::Value, side: &str) -> serde_json::Value {
    let legacy = config.get(format!("{side}_config_dict")).filter(|v| v.is_object());
    let current = config.get(format!("{side}_config")).filter(|v| v.is_object());
    legacy.or(current).cloned().unwrap_or_else(|| serde_json::json!({}))
}

/// `given` (a JSON object) over `defaults`: the keys it sets replace the defaults' values.
pub fn overlay<T: Serialize + DeserializeOwned>(defaults: &T, given: &serde_json::Value, what: &str) -> Result<T> {
    let mut merged = serde_json::to_value(defaults).map_err(|e| Error::Config(format!("{what}: {e}")))?;
    if let (serde_json::Value::Object(base), Some(extra)) = (&mut merged, given.as_object()) {
        for (key, value) in extra {
            if base.contains_key(key) {
                base.insert(key.clone(), value.clone());
            }
        }
    }
    serde_json::from_value(merged).map_err(|e| Error::Config(format!("config.json {what}: {e}")))
}

/// Bounds on the numbers a `config.json` gives. Each is finite and far above any released
/// checkpoint's, so that a typo or a crafted file is refused, naming the field and its value,
/// when the config is read: before the loader sizes anything by it (its check pass builds the
/// model's layers from the config before any weight is compared).
pub mod limits {
    /// An input side in pixels: SAM's 1024 is the largest of the released checkpoints.
    pub const IMAGE_SIZE: usize = crate::preprocess::MAX_INPUT_SIZE;
    /// Patches a side: 2048 pixels in patches of 16 (SAM's grid is 64). Global attention over
    /// more than its 16,384 tokens would need a score matrix of 1 GiB a head, and SAM's
    /// relative positions, gathered for the grid, grow with its side.
    pub const GRID: usize = 128;
    /// Widths (hidden sizes, projections, channels): ViT-22B is 6,144 wide, the widest released
    /// transformers 16,384.
    pub const WIDTH: usize = 16_384;
    /// MLP widths: four times the widest.
    pub const INTERMEDIATE: usize = 4 * WIDTH;
    /// Blocks in a tower (or a stage): ViT-22B has 48, the deepest released transformers 128.
    pub const LAYERS: usize = 256;
    /// Token vocabulary: CLIP's is 49,408, multilingual tokenizers' 250,000.
    pub const VOCAB: usize = 1 << 20;
    /// Text positions: CLIP's 77, Long-CLIP's 248.
    pub const POSITIONS: usize = 4096;
    /// Learned tokens of a grouping stage, SegCLIP's centres, masks per prompt, classes of a
    /// classifier: GroupViT's first stage has 64, LVIS 1,203 classes.
    pub const TOKENS: usize = 1 << 16;
}

/// The checks of the numbers of one section of a config (`Fields("vision_config")`, or
/// `Fields("")` for the top level), each error naming the field and the value it refuses.
#[derive(Debug, Clone, Copy)]
pub struct Fields<'a>(pub &'a str);

impl Fields<'_> {
    /// `field`'s full name, e.g. `vision_config.image_size`.
    pub fn name(&self, field: &str) -> String {
        if self.0.is_empty() { field.to_string() } else { format!("{}.{field}", self.0) }
    }

    /// A count in `[min, max]`.
    pub fn range(&self, field: &str, value: usize, min: usize, max: usize) -> Result<()> {
        if value < min || value > max {
            return Err(Error::Config(format!("{} is {value}; it must be between {min} and {max}", self.name(field))));
        }
        Ok(())
    }

    /// A size: at least 1, at most `max`.
    pub fn size(&self, field: &str, value: usize, max: usize) -> Result<()> {
        self.range(field, value, 1, max)
    }

    /// Each of several sizes.
    pub fn sizes(&self, field: &str, values: &[usize], min: usize, max: usize) -> Result<()> {
        match values.iter().find(|&&v| v < min || v > max) {
            Some(v) => Err(Error::Config(format!(
                "{} holds {v} ({values:?}); each must be between {min} and {max}",
                self.name(field)
            ))),
            None => Ok(()),
        }
    }

    /// A layer norm's epsilon: positive (a negative one can make the variance negative, and its
    /// square root NaN) and at most 1.
    pub fn eps(&self, field: &str, value: f64) -> Result<()> {
        if !(value > 0.0 && value <= 1.0) {
            return Err(Error::Config(format!(
                "{} is {value}; a layer norm's epsilon must be positive and at most 1",
                self.name(field)
            )));
        }
        Ok(())
    }

    /// A finite number in `[min, max]`.
    pub fn number(&self, field: &str, value: f64, min: f64, max: f64) -> Result<()> {
        if !(value >= min && value <= max) {
            return Err(Error::Config(format!("{} is {value}; it must be between {min} and {max}", self.name(field))));
        }
        Ok(())
    }

    /// A finite number above 0 (a divisor, a temperature).
    pub fn positive(&self, field: &str, value: f64) -> Result<()> {
        if !(value > 0.0 && value.is_finite()) {
            return Err(Error::Config(format!("{} is {value}; it must be a positive number", self.name(field))));
        }
        Ok(())
    }

    /// A patch grid: `image_size / patch_size` patches a side, at most [`limits::GRID`].
    pub fn grid(&self, image_size: usize, patch_size: usize) -> Result<()> {
        let grid = image_size.checked_div(patch_size).unwrap_or(0);
        if grid > limits::GRID {
            return Err(Error::Config(format!(
                "{} {image_size} in patches of {patch_size} is {grid} patches a side; at most {} are supported",
                self.name("image_size"),
                limits::GRID
            )));
        }
        Ok(())
    }
}

/// A top-level key of `config.json`, or `default` when it is absent.
pub fn field<T: DeserializeOwned>(config: &serde_json::Value, key: &str, default: T) -> Result<T> {
    match config.get(key) {
        None | Some(serde_json::Value::Null) => Ok(default),
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| Error::Config(format!("config.json {key}: {e}"))),
    }
}
