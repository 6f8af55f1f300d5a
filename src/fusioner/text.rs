//! The frozen text encoder of a Fusioner head: a CLIP checkpoint's text tower, or a
//! language-only BERT (transformers' `BertModel`), as the paper pairs them.
//!
//! The repository (chaofanma/Fusioner @ 01985ed) ships only the CLIP text encoder
//! (`model/text_encoder.py`, `ClipText.get_embed`): each class name is put into 32 templates,
//! each prompt's embedding is L2-normalised, the 32 are averaged and the mean renormalised. The
//! fusion reads any width (`Fusion.text_proj` is a layer norm and a linear map from `text_dim`).
//! The paper names BERT among its language models but says nothing of how a prompt becomes
//! one vector, and the repository has no BERT code. Here a BERT prompt is embedded as
//! `BertModel` gives it (`[CLS] … [SEP]`, token type 0, no padding) and pooled by
//! [`Pooling`]: the pooler's `tanh(W h[CLS] + b)` (`pooler_output`, not the raw `[CLS]` state)
//! or the mean of the last layer over every token; then the same 32 templates, normalisation
//! and averaging as CLIP's, and no projection (the fusion's `text_proj` is the projection).
//! The pooling, the BERT config and its vocabulary are part of the Fusioner checkpoint's
//! `config.json` (`text`), its weights are under `text.`, so a trained head loads from its one
//! folder, natively and in the page.

use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::bert::{BertConfig, BertModel, Pooling, WordPiece};
use crate::clip::{ClipConfig, TextTransformer};
use crate::error::{Error, Result};
use crate::loader::WeightLoader;
use crate::nn::Linear;

/// How a BERT text encoder pools a prompt unless told: the mean of the last layer. A frozen
/// BERT's `[CLS]` state was trained only for next-sentence prediction and is known to embed
/// sentences poorly without fine-tuning (Reimers and Gurevych, 2019, "Sentence-BERT", Table 1:
/// averaged BERT embeddings above the `[CLS]` vector on every STS set). Measured on the colour
/// dataset (docs/engines.md#fusioner): with the random tests/fixtures/bert-tiny the pooler gives
/// every class name the same embedding and the trained head stays at chance (held-out mIoU
/// 0.10), the mean does not (0.25); with the hand-set colour BERT, where both carry the class,
/// both train alike (0.90 and 0.88).
pub const DEFAULT_POOLING: Pooling = Pooling::Mean;

/// Where the class names are embedded, as `config.json`'s `text` says (absent: CLIP's).
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // one per model, never in a collection
pub enum TextModel {
    /// The text tower of the checkpoint's `clip`.
    Clip,
    /// A language-only BERT.
    Bert(BertText),
}

/// A BERT text encoder's settings: its config, how prompts are pooled, its vocabulary.
#[derive(Debug, Clone)]
pub struct BertText {
    pub config: BertConfig,
    /// `config` as written (its `config.json`), kept so that a trained checkpoint repeats it.
    pub json: serde_json::Value,
    pub pooling: Pooling,
    pub vocabulary: WordPiece,
}

/// `config.json`'s `text` for a BERT text encoder, as written.
#[derive(Serialize, Deserialize)]
struct Written {
    model_type: String,
    config: serde_json::Value,
    pooling: Pooling,
    do_lower_case: bool,
    /// The WordPiece tokens in id order (`vocab.txt`'s lines).
    vocab: Vec<String>,
}

impl TextModel {
    /// `config.json`'s `text` (absent or null: CLIP's text tower).
    pub fn from_value(value: Option<&serde_json::Value>) -> Result<Self> {
        let Some(value) = value.filter(|v| !v.is_null()) else {
            return Ok(TextModel::Clip);
        };
        let kind = value.get("model_type").and_then(|v| v.as_str()).unwrap_or("");
        if kind != "bert" {
            return Err(Error::Config(format!(
                "text.model_type is '{kind}'; a Fusioner text encoder is CLIP's (no text object) or BERT ('bert')"
            )));
        }
        let written: Written =
            serde_json::from_value(value.clone()).map_err(|e| Error::Config(format!("config.json text: {e}")))?;
        let config = BertConfig::from_value(&written.config)?;
        let vocabulary = WordPiece::from_tokens(&written.vocab, written.do_lower_case)?;
        BertText::new(config, written.config, written.pooling, vocabulary).map(TextModel::Bert)
    }

    /// `config.json`'s `text`, `None` for CLIP's text tower.
    pub fn to_value(&self) -> Option<serde_json::Value> {
        let TextModel::Bert(bert) = self else {
            return None;
        };
        let written = Written {
            model_type: "bert".into(),
            config: bert.json.clone(),
            pooling: bert.pooling,
            do_lower_case: bert.vocabulary.lowercase,
            vocab: bert.vocabulary.tokens(),
        };
        serde_json::to_value(written).ok()
    }

    /// The width of a class embedding: CLIP's projection, or BERT's hidden size.
    pub fn width(&self, clip: Option<&ClipConfig>) -> Option<usize> {
        match self {
            TextModel::Clip => clip.map(|c| c.projection_dim),
            TextModel::Bert(bert) => Some(bert.config.hidden_size),
        }
    }
}

impl BertText {
    /// Refused when the vocabulary holds ids the embedding table has no row for.
    pub fn new(config: BertConfig, json: serde_json::Value, pooling: Pooling, vocabulary: WordPiece) -> Result<Self> {
        if vocabulary.vocab_size() > config.vocab_size {
            return Err(Error::Config(format!(
                "the BERT vocabulary has {} tokens but its config.json vocab_size is {}",
                vocabulary.vocab_size(),
                config.vocab_size
            )));
        }
        Ok(BertText { config, json, pooling, vocabulary })
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

/// BERT, its tokenizer and its pooling.
#[derive(Debug, Clone)]
pub struct BertTower {
    pub model: BertModel,
    pub tokenizer: WordPiece,
    pub pooling: Pooling,
}

impl BertTower {
    /// The BERT under `prefix` (`text` in a Fusioner checkpoint, the root in a `BertModel`
    /// folder); refused when [`Pooling::Cls`] is asked of a checkpoint without a pooler.
    pub fn load(loader: &mut WeightLoader, prefix: &str, text: &BertText) -> Result<Self> {
        let model = BertModel::load_at(loader, prefix, text.config.clone());
        if text.pooling == Pooling::Cls && !model.has_pooler() {
            return Err(Error::Config(
                "this BERT checkpoint has no pooler (pooler.dense), which [CLS] pooling reads: use mean pooling".into(),
            ));
        }
        Ok(BertTower { model, tokenizer: text.vocabulary.clone(), pooling: text.pooling })
    }

    /// Pooled features of texts of any lengths, in their order: texts of one length run side
    /// by side. `-> [b, hidden]`
    pub fn features(&self, ids: &[Vec<u32>]) -> Result<Tensor<2>> {
        let mut lengths: Vec<usize> = ids.iter().map(Vec::len).collect();
        lengths.sort_unstable();
        lengths.dedup();
        let mut parts = Vec::new();
        let mut order = Vec::with_capacity(ids.len());
        for n in lengths {
            let rows: Vec<usize> = (0..ids.len()).filter(|&i| ids[i].len() == n).collect();
            let texts: Vec<&[u32]> = rows.iter().map(|&i| ids[i].as_slice()).collect();
            parts.push(self.model.embed_rows(&texts, self.pooling)?);
            order.extend(rows);
        }
        if parts.is_empty() {
            return Err(Error::invalid("no texts to embed"));
        }
        let all = Tensor::cat(parts, 0);
        // Row `order[j]` of the input is row `j` here: gather them back into the input's order.
        let mut back = vec![0i64; order.len()];
        for (j, &i) in order.iter().enumerate() {
            back[i] = j as i64;
        }
        let device: Device = all.device();
        let index = Tensor::<1, Int>::from_data(TensorData::new(back, [order.len()]), &device);
        Ok(all.select(0, index))
    }
}

/// The frozen text encoder.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // one per model, never in a collection
pub enum TextTower {
    Clip(ClipText),
    Bert(BertTower),
}
