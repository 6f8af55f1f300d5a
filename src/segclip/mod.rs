//! SegCLIP (Luo et al., ICML 2023, "SegCLIP: Patch Aggregation with Learnable Centers for
//! Open-Vocabulary Semantic Segmentation") in burn, following the repository's model code
//! (ArrowLuo/SegCLIP @ df09ba2, `modules/module_seg_vit.py`, `module_clip*.py`).
//!
//! CLIP ViT-B/16 whose class token is dropped after `ln_pre`; the first stage of blocks runs on
//! the patch tokens, a semantic-group module gathers them around learned centres (two
//! cross-attention blocks, then a hard assignment of every patch to its best centre), the
//! remaining blocks run on the group tokens, and the image token is their element-wise max.
//! Its segmentation engine (the repository's evaluation) is `segment::segclip`.
//!
//! Checkpoints come from `wordmask convert-segclip` ([`convert`]): the release's pickle
//! renamed to the CLIP hub layout (`vision_model.*`, `text_model.*`, `visual_projection`,
//! `text_projection`, `logit_scale`) plus `vision_model.grouping.*`, with a `config.json` of
//! `model_type` `segclip`.

pub mod convert;

use std::any::Any;

use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor};

use crate::clip::{ClipConfig, ClipModel};
use crate::error::{Error, Result};
use crate::loader::{Scope, WeightLoader};
use crate::network::{ConfigJson, Fields, ImageEmbedding, Network, Tokens, field, limits};
use crate::nn::{Activation, Attention, LayerNorm, Linear, Mlp, activate, l2_normalize, one_hot_max};

/// The `config.json` of a converted SegCLIP checkpoint: CLIP's towers and the grouping.
#[derive(Debug, Clone)]
pub struct SegClipConfig {
    pub clip: ClipConfig,
    /// Vision blocks before the grouping (10 in the release); the rest run on the groups.
    pub first_stage_layers: usize,
    /// Learned centres (8 in the release).
    pub num_group_tokens: usize,
    /// Cross-attention blocks refining the centres (2 in the release).
    pub num_cross_layers: usize,
}

impl SegClipConfig {
    pub fn from_json(text: &str) -> Result<Self> {
        Self::from_config(&ConfigJson::parse(text)?)
    }

    /// [`Self::from_json`] over a `config.json` parsed once.
    pub fn from_config(config: &ConfigJson) -> Result<Self> {
        let value = config.expect("segclip", "SegCLIP")?;
        let config = SegClipConfig {
            clip: ClipConfig::from_value(value)?,
            first_stage_layers: field(value, "first_stage_layers", 10)?,
            num_group_tokens: field(value, "num_group_tokens", 8)?,
            num_cross_layers: field(value, "num_cross_layers", 2)?,
        };
        let layers = config.clip.vision_config.num_hidden_layers;
        if config.first_stage_layers == 0 || config.first_stage_layers > layers {
            return Err(Error::Config(format!(
                "first_stage_layers {} must be in [1, num_hidden_layers = {layers}]",
                config.first_stage_layers
            )));
        }
        Fields("").size("num_group_tokens", config.num_group_tokens, limits::TOKENS)?;
        Fields("").range("num_cross_layers", config.num_cross_layers, 0, limits::LAYERS)?;
        Ok(config)
    }

    /// The released checkpoint's shape: CLIP ViT-B/16, 10 blocks, 8 centres, 2 cross blocks.
    pub fn release() -> Self {
        let mut clip = ClipConfig::vit_b_16();
        clip.text_config.eos_token_id = 49407;
        SegClipConfig { clip, first_stage_layers: 10, num_group_tokens: 8, num_cross_layers: 2 }
    }
}

/// `CrossAttentionBlock` (with the keys sequence-first, as the repository meant them): the
/// centres attend to `[centres; patches]`, then an MLP, each with a residual.
#[derive(Debug, Clone)]
pub struct CrossBlock {
    pub attn: Attention,
    /// `ln_x`, on the queries.
    pub query_norm: LayerNorm,
    /// `ln_k`, on the keys and values.
    pub key_norm: LayerNorm,
    pub layer_norm2: LayerNorm,
    pub mlp: Mlp,
}

impl CrossBlock {
    fn load(mut p: Scope, d: usize, heads: usize) -> Self {
        CrossBlock {
            attn: Attention::load(p.pp("attn"), d, heads),
            query_norm: LayerNorm::load(p.pp("query_norm"), d, EPS),
            key_norm: LayerNorm::load(p.pp("key_norm"), d, EPS),
            layer_norm2: LayerNorm::load(p.pp("layer_norm2"), d, EPS),
            mlp: Mlp::load(p.pp("mlp"), d, 4 * d, d, Activation::QuickGelu),
        }
    }

    /// `[b, G, d]` centres over `[b, L, d]` patches.
    fn forward(&self, centres: Tensor<3>, patches: Tensor<3>) -> Tensor<3> {
        let kv = self.key_norm.forward(Tensor::cat(vec![centres.clone(), patches], 1));
        let q = centres.clone().add(self.attn.cross(self.query_norm.forward(centres), kv, None));
        q.clone().add(self.mlp.forward(self.layer_norm2.forward(q)))
    }
}

/// LayerNorm epsilon of every norm in the repository's model.
const EPS: f64 = 1e-5;

/// `SemanticLearnerModule`: learned centres gather the patch tokens.
#[derive(Debug, Clone)]
pub struct SemanticGrouping {
    /// `semantic_center`, `[G, d]`.
    pub centres: Tensor<2>,
    pub norm: LayerNorm,
    pub cross: Vec<CrossBlock>,
    pub cross_norm: LayerNorm,
    /// `k_conv` (a grouped 1x1 convolution without bias) as a dense block-diagonal linear.
    pub key_proj: Linear,
    pub key_norm: LayerNorm,
    pub value_proj: Linear,
    /// `proj_o`: layer norm, fc1, exact GELU, fc2, then QuickGELU.
    pub out_norm: LayerNorm,
    pub out_mlp: Mlp,
}

/// What the grouping gives for a batch.
#[derive(Debug, Clone)]
pub struct GroupingOutput {
    /// Group tokens, `[b, G, d]`.
    pub tokens: Tensor<3>,
    /// Each patch's softmax over the centres, `[b, G, L]` (the segmentation uses it).
    pub soft: Tensor<3>,
    /// Each patch's centre, one-hot, `[b, G, L]` (the tokens pool by it).
    pub hard: Tensor<3>,
}

impl SemanticGrouping {
    fn load(mut p: Scope, config: &SegClipConfig) -> Self {
        let v = &config.clip.vision_config;
        let (d, heads, g) = (v.hidden_size, v.num_attention_heads, config.num_group_tokens);
        let norm = |p: Scope| LayerNorm::load(p, d, EPS);
        SemanticGrouping {
            centres: p.tensor("centres", [g, d]),
            norm: norm(p.pp("norm")),
            cross: (0..config.num_cross_layers)
                .map(|i| CrossBlock::load(p.pp("cross_attention").pp(i), d, heads))
                .collect(),
            cross_norm: norm(p.pp("cross_norm")),
            key_proj: Linear::load(p.pp("key_proj"), d, d, false),
            key_norm: norm(p.pp("key_norm")),
            value_proj: Linear::load(p.pp("value_proj"), d, d, false),
            out_norm: norm(p.pp("out_norm")),
            out_mlp: Mlp::load(p.pp("out_mlp"), d, 4 * d, d, Activation::Gelu),
        }
    }

    /// `[b, L, d]` patch tokens (the first stage's output) into `G` group tokens.
    pub fn forward(&self, patches: Tensor<3>) -> GroupingOutput {
        let [b, _, d] = patches.dims();
        let g = self.centres.dims()[0];
        let features = self.norm.forward(patches.clone());
        let mut q = self.centres.clone().reshape([1, g, d]).repeat_dim(0, b);
        for block in &self.cross {
            q = block.forward(q, patches.clone());
        }
        let q = self.cross_norm.forward(q);
        let k = self.key_norm.forward(self.key_proj.forward(features.clone()));
        let v = self.value_proj.forward(features);
        // Plain dot products (no scaling), softmax over the centres for each patch.
        let logits = q.clone().matmul(k.swap_dims(1, 2)); // [b, G, L]
        let soft = softmax(logits.clone(), 1);
        let hard = one_hot_max(logits, 1);
        let count = hard.clone().sum_dim(2).clamp_min(1.0); // [b, G, 1]
        let pooled = hard.clone().matmul(v).div(count);
        let tokens = activate(Activation::QuickGelu, self.out_mlp.forward(self.out_norm.forward(q.add(pooled))));
        GroupingOutput { tokens, soft, hard }
    }
}

/// Image-side outputs of one batch.
#[derive(Debug, Clone)]
pub struct SegClipFeatures {
    /// Projected, L2-normalised image embeddings (the max over the group tokens), `[b, proj]`.
    pub embeds: Tensor<2>,
    /// Projected, L2-normalised group embeddings, `[b, G, proj]`.
    pub group_embeds: Tensor<3>,
    /// The first stage's output, `[b, L, width]`.
    pub patches: Tensor<3>,
    pub grouping: GroupingOutput,
    /// Patch grid `(gh, gw)`.
    pub grid: (usize, usize),
}

#[derive(Debug, Clone)]
pub struct SegClipModel {
    pub config: SegClipConfig,
    /// CLIP's towers and projections; the vision blocks split at `first_stage_layers`.
    pub clip: ClipModel,
    pub grouping: SemanticGrouping,
}

impl SegClipModel {
    pub fn load(config: SegClipConfig, loader: &mut WeightLoader) -> Self {
        let clip = ClipModel::load(config.clip.clone(), loader);
        let grouping = SemanticGrouping::load(loader.pp("vision_model.grouping"), &config);
        SegClipModel { config, clip, grouping }
    }

    /// The vision tower on normalised pixels `[b, 3, H, W]`.
    pub fn image_features(&self, pixels: Tensor<4>) -> Result<SegClipFeatures> {
        let vision = &self.clip.vision_model;
        let (x, grid) = vision.embed(pixels)?;
        let x = vision.pre_layrnorm.forward(x);
        let [b, n, d] = x.dims();
        // The class token is dropped: it never reaches a block.
        let mut patches = x.slice([0..b, 1..n, 0..d]);
        let first = self.config.first_stage_layers;
        for layer in &vision.layers[..first] {
            patches = layer.forward(patches, None);
        }
        let grouping = self.grouping.forward(patches.clone());
        let mut tokens = grouping.tokens.clone();
        for layer in &vision.layers[first..] {
            tokens = layer.forward(tokens, None);
        }
        let image = tokens.clone().max_dim(1); // [b, 1, d]
        let all = vision.post_layernorm.forward(Tensor::cat(vec![image, tokens], 1));
        let projected = self.clip.visual_projection.forward(all);
        let [_, t, p] = projected.dims();
        let embeds = l2_normalize(projected.clone().slice([0..b, 0..1, 0..p]).reshape([b, p]));
        let group_embeds = l2_normalize(projected.slice([0..b, 1..t, 0..p]));
        Ok(SegClipFeatures { embeds, group_embeds, patches, grouping, grid })
    }
}

impl Network for SegClipModel {
    fn device(&self) -> Device {
        self.clip.device()
    }

    fn image_size(&self) -> usize {
        self.clip.image_size()
    }

    fn logit_scale(&self) -> f32 {
        self.clip.logit_scale
    }

    fn text_context(&self) -> usize {
        self.clip.text_context()
    }

    fn text_width(&self) -> usize {
        self.clip.text_width()
    }

    fn text_features(&self, ids: &[Vec<u32>]) -> Result<Tensor<2>> {
        self.clip.text_features(ids)
    }

    /// The image embedding (max over the groups), and the group tokens.
    fn embed_image(&self, pixels: Tensor<4>) -> Result<ImageEmbedding> {
        let f = self.image_features(pixels)?;
        let count = f.group_embeds.dims()[1];
        Ok(ImageEmbedding { embeds: f.embeds, tokens: Tokens::Groups { count } })
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
