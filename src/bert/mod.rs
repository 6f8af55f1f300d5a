//! BERT (Devlin et al., 2019) as transformers' `BertModel` holds it (`model_type: bert`; the
//! layout of `bert-base-uncased`): word, position and token-type embeddings, post-norm encoder
//! layers, and the pooler (`tanh` of a linear map of the `[CLS]` token). A language-only text
//! encoder: Fusioner's paper pairs it with vision-only backbones. Reference: transformers
//! 5.23 `models/bert/modeling_bert.py`; `tests/native/bert.rs` checks the tower against it.
//!
//! Checkpoints are read with or without the `bert.` prefix of the hub's pre-training
//! checkpoints (whose masked-language and next-sentence heads, `cls.*`, are not read), and
//! with layer norms named `weight`/`bias` or, as older files, `gamma`/`beta`.

pub mod wordpiece;

use burn::tensor::activation::tanh;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

pub use wordpiece::WordPiece;

use crate::error::{Error, Result};
use crate::loader::{Scope, WeightLoader};
use crate::network::{Fields, limits};
use crate::nn::{Activation, Attention, EmbeddingTable, LayerNorm, Linear, activate};

/// `BertConfig` (the fields the encoder reads; transformers' defaults).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub hidden_act: Activation,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
}

impl Default for BertConfig {
    fn default() -> Self {
        BertConfig {
            vocab_size: 30522,
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            hidden_act: Activation::Gelu,
            max_position_embeddings: 512,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
        }
    }
}

impl BertConfig {
    /// A `BertConfig` object (a `config.json` with `model_type: bert`).
    pub fn from_value(value: &serde_json::Value) -> Result<Self> {
        let found = value.get("model_type").and_then(|v| v.as_str()).unwrap_or("");
        if found != "bert" {
            return Err(Error::Config(format!(
                "the text encoder's model_type is '{found}'; expected 'bert' (BertModel)"
            )));
        }
        let config: BertConfig =
            serde_json::from_value(value.clone()).map_err(|e| Error::Config(format!("BERT config: {e}")))?;
        let f = Fields("");
        f.size("vocab_size", config.vocab_size, limits::VOCAB)?;
        f.size("hidden_size", config.hidden_size, limits::WIDTH)?;
        f.size("intermediate_size", config.intermediate_size, limits::INTERMEDIATE)?;
        f.size("num_hidden_layers", config.num_hidden_layers, limits::LAYERS)?;
        f.size("num_attention_heads", config.num_attention_heads, limits::WIDTH)?;
        f.size("max_position_embeddings", config.max_position_embeddings, limits::POSITIONS)?;
        f.size("type_vocab_size", config.type_vocab_size, limits::TOKENS)?;
        f.eps("layer_norm_eps", config.layer_norm_eps)?;
        let ok = config.hidden_size > 0
            && config.num_attention_heads > 0
            && config.hidden_size.is_multiple_of(config.num_attention_heads)
            && config.num_hidden_layers > 0
            && config.max_position_embeddings > 2
            && config.type_vocab_size > 0
            && config.vocab_size > 0;
        if !ok {
            return Err(Error::Config(format!(
                "BERT config needs positive sizes, hidden_size divisible by num_attention_heads and room for [CLS] and [SEP]; got {config:?}"
            )));
        }
        Ok(config)
    }
}

/// How a text's token features become one embedding (the engine that uses BERT chooses; see
/// `fusioner::text::DEFAULT_POOLING`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum), value(rename_all = "lower"))]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// The pooler's output: `tanh(W h[CLS] + b)`, as BERT's next-sentence head was trained on.
    Cls,
    /// The mean of the last layer's features over every token, `[CLS]` and `[SEP]` included.
    Mean,
}

impl std::fmt::Display for Pooling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Pooling::Cls => "cls",
            Pooling::Mean => "mean",
        })
    }
}

/// One post-norm encoder layer.
#[derive(Debug, Clone)]
struct BertLayer {
    attention: Attention,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
    act: Activation,
}

impl BertLayer {
    /// `[b, n, d] -> [b, n, d]`
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let x = self.attention_norm.forward(self.attention.forward(x.clone(), None).add(x));
        let h = self.output.forward(activate(self.act, self.intermediate.forward(x.clone())));
        self.output_norm.forward(h.add(x))
    }
}

/// `BertModel`.
#[derive(Debug, Clone)]
pub struct BertModel {
    pub config: BertConfig,
    /// On the CPU backend held as the file stores it (see [`EmbeddingTable`]).
    word_embeddings: EmbeddingTable,
    position_embeddings: Tensor<2>,
    /// Token type 0's row: every text here is one segment.
    token_type: Tensor<1>,
    embeddings_norm: LayerNorm,
    layers: Vec<BertLayer>,
    /// `pooler.dense`, where the checkpoint has a pooler.
    pooler: Option<Linear>,
}

/// A layer norm stored as `weight`/`bias` or, in older files, `gamma`/`beta`.
fn layer_norm(mut p: Scope, d: usize, eps: f64) -> LayerNorm {
    let legacy = p.host_shape("weight").is_none() && p.host_shape("gamma").is_some();
    if !legacy {
        return LayerNorm::load(p, d, eps);
    }
    LayerNorm::new(p.tensor("gamma", [d]), p.tensor("beta", [d]), eps)
}

impl BertModel {
    /// The hub keys, under `bert.` where the file has that prefix.
    pub fn load(loader: &mut WeightLoader, config: BertConfig) -> Self {
        Self::load_at(loader, "", config)
    }

    /// The hub keys under `prefix` (a Fusioner checkpoint holds its BERT under `text`), with
    /// or without `bert.` after it.
    pub fn load_at(loader: &mut WeightLoader, prefix: &str, config: BertConfig) -> Self {
        let under = |name: &str| if prefix.is_empty() { name.to_string() } else { format!("{prefix}.{name}") };
        let hub = loader.host_shape(&under("bert.embeddings.word_embeddings.weight")).is_some();
        let root = if hub { under("bert") } else { prefix.to_string() };
        // Pre-training heads, and the buffers of older files.
        loader.skip_prefix(&under("cls."));
        loader.skip_where(|n| n.ends_with("embeddings.token_type_ids"));
        let mut scope = loader.pp(root);
        let (d, eps, heads) = (config.hidden_size, config.layer_norm_eps, config.num_attention_heads);
        let mut embeddings = scope.pp("embeddings");
        let word_embeddings = EmbeddingTable::load(&mut embeddings, "word_embeddings.weight", [config.vocab_size, d]);
        let position_embeddings = embeddings.tensor("position_embeddings.weight", [config.max_position_embeddings, d]);
        let token_types = embeddings.tensor("token_type_embeddings.weight", [config.type_vocab_size, d]);
        let token_type = token_types.slice([0..1, 0..d]).reshape([d]);
        let embeddings_norm = layer_norm(embeddings.pp("LayerNorm"), d, eps);
        let mut encoder = scope.pp("encoder.layer");
        let layers = (0..config.num_hidden_layers)
            .map(|i| {
                let mut layer = encoder.pp(i);
                let mut attention = layer.pp("attention");
                let q = Linear::load(attention.pp("self.query"), d, d, true);
                let k = Linear::load(attention.pp("self.key"), d, d, true);
                let v = Linear::load(attention.pp("self.value"), d, d, true);
                let out = Linear::load(attention.pp("output.dense"), d, d, true);
                let attention_norm = layer_norm(attention.pp("output.LayerNorm"), d, eps);
                BertLayer {
                    attention: Attention::new(q, k, v, out, heads),
                    attention_norm,
                    intermediate: Linear::load(layer.pp("intermediate.dense"), d, config.intermediate_size, true),
                    output: Linear::load(layer.pp("output.dense"), config.intermediate_size, d, true),
                    output_norm: layer_norm(layer.pp("output.LayerNorm"), d, eps),
                    act: config.hidden_act,
                }
            })
            .collect();
        let pooler = scope
            .host_shape("pooler.dense.weight")
            .is_some()
            .then(|| Linear::load(scope.pp("pooler.dense"), d, d, true));
        BertModel { config, word_embeddings, position_embeddings, token_type, embeddings_norm, layers, pooler }
    }

    pub fn device(&self) -> Device {
        self.position_embeddings.device()
    }

    /// Whether the checkpoint has the pooler that [`Pooling::Cls`] reads.
    pub fn has_pooler(&self) -> bool {
        self.pooler.is_some()
    }

    /// The last layer's features of one text's ids (`[CLS] … [SEP]`, at most
    /// `max_position_embeddings` of them). `-> [n, d]`
    pub fn forward(&self, ids: &[u32]) -> Result<Tensor<2>> {
        let (n, d) = (ids.len(), self.config.hidden_size);
        Ok(self.forward_rows(&[ids])?.reshape([n, d]))
    }

    /// The last layer's features of texts of one length, side by side (no padding, so no
    /// attention mask). `[b] x [n] ids -> [b, n, d]`
    pub fn forward_rows(&self, rows: &[&[u32]]) -> Result<Tensor<3>> {
        let (b, d) = (rows.len(), self.config.hidden_size);
        let n = rows.first().map_or(0, |r| r.len());
        if n == 0 || n > self.config.max_position_embeddings {
            return Err(Error::invalid(format!(
                "a BERT text has 1 to {} tokens; got {n}",
                self.config.max_position_embeddings
            )));
        }
        if let Some(other) = rows.iter().find(|r| r.len() != n) {
            return Err(Error::invalid(format!(
                "texts run side by side must have one length; got {n} and {} tokens",
                other.len()
            )));
        }
        if let Some(&bad) = rows.iter().flat_map(|r| r.iter()).find(|&&t| t as usize >= self.config.vocab_size) {
            return Err(Error::invalid(format!(
                "token id {bad} is outside the vocabulary of {}",
                self.config.vocab_size
            )));
        }
        let ids: Vec<u32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
        let x = self
            .word_embeddings
            .lookup(&ids)?
            .reshape([b, n, d])
            .add(self.position_embeddings.clone().slice([0..n, 0..d]).unsqueeze::<3>())
            .add(self.token_type.clone().unsqueeze::<3>());
        let mut x = self.embeddings_norm.forward(x);
        for layer in &self.layers {
            x = layer.forward(x);
        }
        Ok(x)
    }

    /// One embedding of a text's ids. `-> [d]`
    pub fn embed(&self, ids: &[u32], pooling: Pooling) -> Result<Tensor<1>> {
        let d = self.config.hidden_size;
        Ok(self.embed_rows(&[ids], pooling)?.reshape([d]))
    }

    /// One embedding per text, for texts of one length. `-> [b, d]`
    pub fn embed_rows(&self, rows: &[&[u32]], pooling: Pooling) -> Result<Tensor<2>> {
        let hidden = self.forward_rows(rows)?;
        let [b, _, d] = hidden.dims();
        match pooling {
            Pooling::Mean => Ok(hidden.mean_dim(1).reshape([b, d])),
            Pooling::Cls => {
                let pooler = self.pooler.as_ref().ok_or_else(|| {
                    Error::invalid("this BERT checkpoint has no pooler (pooler.dense): use mean pooling")
                })?;
                Ok(tanh(pooler.forward(hidden.slice([0..b, 0..1, 0..d]).reshape([b, d]))))
            }
        }
    }
}
