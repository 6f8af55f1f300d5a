//! GroupViT (Xu et al., CVPR 2022, "GroupViT: Semantic Segmentation Emerges from Text
//! Supervision") in burn, matching transformers `GroupViTModel`
//! (huggingface/transformers v5.23.0, `src/transformers/models/groupvit/modeling_groupvit.py`).
//! Its segmentation engine (the GroupViT repository's evaluation) is `segment::groupvit`.
//!
//! Checkpoint keys are the hub layout of `nvidia/groupvit-gcc-yfcc`: `vision_model.*`,
//! `text_model.*` (CLIP's text tower), `visual_projection.{0,1,3}` and `text_projection.{0,1,3}`
//! (linear, batch norm, ReLU, linear), `logit_scale`.

pub mod config;
pub mod vision;

use std::any::Any;

use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor, TensorData};

pub use config::{GroupVitConfig, GroupVitVisionConfig};
pub use vision::{GroupVitVisionOutput, GroupVitVisionTower};

use crate::clip::TextTransformer;
use crate::error::Result;
use crate::loader::{Scope, WeightLoader};
use crate::network::{ImageEmbedding, Network, Tokens};
use crate::nn::{Linear, l2_normalize, resize_bilinear};
use crate::preprocess::Preprocessor;

/// `nn.BatchNorm1d` default epsilon.
const BATCH_NORM_EPS: f32 = 1e-5;
/// The GroupViT repository's pixel normalisation (ImageNet statistics), used when a checkpoint
/// comes without `preprocessor_config.json`.
const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// `Sequential(Linear, BatchNorm1d, ReLU, Linear)`, the batch norm in inference mode (running
/// statistics), folded into a per-channel scale and shift.
#[derive(Debug, Clone)]
pub struct ProjectionHead {
    pub fc1: Linear,
    pub bn_scale: Tensor<1>,
    pub bn_shift: Tensor<1>,
    pub fc2: Linear,
}

impl ProjectionHead {
    /// `0` (linear), `1` (batch norm), `3` (linear).
    fn load(mut p: Scope, d_in: usize, hidden: usize, d_out: usize) -> Self {
        let fc1 = Linear::load(p.pp(0), d_in, hidden, true);
        let mut bn = p.pp(1);
        let mut stat = |name: &str, fallback: f32| bn.host(name, &[hidden]).unwrap_or_else(|| vec![fallback; hidden]);
        let (weight, bias, mean, var) =
            (stat("weight", 1.0), stat("bias", 0.0), stat("running_mean", 0.0), stat("running_var", 1.0));
        let scale: Vec<f32> = weight.iter().zip(&var).map(|(w, v)| w / (v.max(0.0) + BATCH_NORM_EPS).sqrt()).collect();
        let shift: Vec<f32> = bias.iter().zip(&mean).zip(&scale).map(|((b, m), s)| b - m * s).collect();
        let device = p.device().clone();
        ProjectionHead {
            fc1,
            bn_scale: Tensor::from_data(TensorData::new(scale, [hidden]), &device),
            bn_shift: Tensor::from_data(TensorData::new(shift, [hidden]), &device),
            fc2: Linear::load(p.pp(3), hidden, d_out, true),
        }
    }

    /// `[..., d_in] -> [..., d_out]`
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let h = self.fc1.forward(x);
        let mut shape = [1usize; D];
        shape[D - 1] = self.bn_scale.dims()[0];
        let h = h.mul(self.bn_scale.clone().reshape(shape)).add(self.bn_shift.clone().reshape(shape));
        self.fc2.forward(relu(h))
    }
}

/// Image-side outputs of one batch.
#[derive(Debug, Clone)]
pub struct GroupVitFeatures {
    /// Projected, L2-normalised image embeddings (mean of the final groups), `[b, proj]`.
    pub embeds: Tensor<2>,
    /// Projected, L2-normalised final group embeddings, `[b, groups, proj]`.
    pub group_embeds: Tensor<3>,
    pub vision: GroupVitVisionOutput,
}

#[derive(Debug, Clone)]
pub struct GroupVitModel {
    pub config: GroupVitConfig,
    pub vision_model: GroupVitVisionTower,
    pub text_model: TextTransformer,
    pub visual_projection: ProjectionHead,
    pub text_projection: ProjectionHead,
    /// `exp(logit_scale)`.
    pub logit_scale: f32,
}

impl GroupVitModel {
    pub fn load(config: GroupVitConfig, loader: &mut WeightLoader) -> Self {
        let (proj, hidden) = (config.projection_dim, config.projection_intermediate_dim);
        let vision_model = GroupVitVisionTower::load(loader.pp("vision_model"), &config.vision_config);
        let text_model = TextTransformer::load(loader.pp("text_model"), &config.text_config);
        let visual_projection =
            ProjectionHead::load(loader.pp("visual_projection"), config.vision_config.hidden_size, hidden, proj);
        let text_projection =
            ProjectionHead::load(loader.pp("text_projection"), config.text_config.hidden_size, hidden, proj);
        let logit_scale = loader.host("logit_scale", &[]).map(|v| v[0].exp()).unwrap_or(1.0);
        GroupVitModel { config, vision_model, text_model, visual_projection, text_projection, logit_scale }
    }

    /// Run the vision tower and both projections on normalised pixels `[b, 3, H, W]`.
    pub fn image_features(&self, pixels: Tensor<4>) -> Result<GroupVitFeatures> {
        let vision = self.vision_model.forward(pixels)?;
        let pooled = vision.groups.clone().mean_dim(1).squeeze_dim::<2>(1);
        let embeds = l2_normalize(self.visual_projection.forward(pooled));
        let group_embeds = l2_normalize(self.visual_projection.forward(vision.groups.clone()));
        Ok(GroupVitFeatures { embeds, group_embeds, vision })
    }

    /// Which final group each patch belongs to, softly: the stages' soft assignments
    /// multiplied (patch -> stage-1 group -> ... -> final group), resized bilinearly to
    /// `size` (transformers `get_grouping_from_attentions`). `-> [b, groups, h, w]`
    pub fn grouping(vision: &GroupVitVisionOutput, size: (usize, usize)) -> Tensor<4> {
        let mut product: Option<Tensor<3>> = None;
        for a in &vision.assignments {
            let a = a.clone().swap_dims(1, 2); // [b, tokens, groups]
            product = Some(match product {
                None => a,
                Some(p) => p.matmul(a),
            });
        }
        let product = product.expect("a GroupViT tower has a grouping stage").swap_dims(1, 2);
        let [b, g, _] = product.dims();
        let (gh, gw) = vision.grid;
        resize_bilinear(product.reshape([b, g, gh, gw]), size.0, size.1)
    }

    /// transformers' `segmentation_logits` (`output_segmentation=True`): each final group's
    /// scaled cosine with each text, spread over the pixels by the soft grouping and scaled
    /// again. `-> [b, texts, h, w]`
    pub fn segmentation_logits(
        &self,
        features: &GroupVitFeatures,
        texts: Tensor<2>,
        size: (usize, usize),
    ) -> Tensor<4> {
        let grouping = Self::grouping(&features.vision, size);
        let [b, g, h, w] = grouping.dims();
        let s = self.logit_scale as f64;
        let per_group = features.group_embeds.clone().matmul(texts.transpose().unsqueeze::<3>()).mul_scalar(s);
        let logits = per_group.swap_dims(1, 2).matmul(grouping.reshape([b, g, h * w])).mul_scalar(s);
        let k = logits.dims()[1];
        logits.reshape([b, k, h, w])
    }
}

impl Network for GroupVitModel {
    fn device(&self) -> Device {
        self.text_projection.fc2.weight.device()
    }

    fn image_size(&self) -> usize {
        self.config.vision_config.image_size
    }

    fn default_preprocessor(&self) -> Preprocessor {
        Preprocessor { mean: IMAGENET_MEAN, std: IMAGENET_STD, ..Preprocessor::clip(self.image_size()) }
    }

    fn logit_scale(&self) -> f32 {
        self.logit_scale
    }

    fn text_context(&self) -> usize {
        self.text_model.context
    }

    fn text_width(&self) -> usize {
        self.text_projection.fc2.d_out()
    }

    fn text_features(&self, ids: &[Vec<u32>]) -> Result<Tensor<2>> {
        Ok(self.text_projection.forward(self.text_model.forward(ids)?))
    }

    /// The image embedding, and the final group tokens.
    fn embed_image(&self, pixels: Tensor<4>) -> Result<ImageEmbedding> {
        let f = self.image_features(pixels)?;
        let count = f.group_embeds.dims()[1];
        Ok(ImageEmbedding { embeds: f.embeds, tokens: Tokens::Groups { count } })
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
