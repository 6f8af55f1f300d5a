//! The GroupViT engine: zero-shot segmentation as the GroupViT repository evaluates it
//! (NVlabs/GroupViT @ 13b7861, `GroupViTSegInference.encode_decode` with the datasets'
//! `test_cfg`): short side 448, 448-pixel windows at stride 224, and in each window
//! - pixel -> group: the stages' soft assignments multiplied, resized to the window, one-hot
//!   by argmax;
//! - group -> class: `softmax(masked) * softmax(all)` of the scaled cosine between each group
//!   and each name (scale clamped at 100), where `masked` keeps only the 5 names the whole
//!   window matches best;
//! - background: where a pixel's best score is under `min(threshold, best group affinity)`.
//!
//! Windows are averaged and resized to the image (mmsegmentation's slide inference), then each
//! class takes the max over its synonyms. Scores are not probabilities; the background row
//! holds the averaged background indicator. [`Scoring::Transformers`] puts transformers'
//! segmentation logits through the same windows instead.

use burn::tensor::activation::softmax;
use burn::tensor::{Bool, Tensor};
use serde::{Deserialize, Serialize};

use super::engine::{DatasetProtocol, Engine, Plan, Scores};
use super::result::PixelSteps;
use super::slide::Windows;
use super::text::{ClassEmbeddings, Templates};
use super::{BackgroundDataset, Settings};
use crate::error::{Error, Result};
use crate::groupvit::{GroupVitConfig, GroupVitModel};
use crate::loader::WeightLoader;
use crate::network::Network;
use crate::nn::one_hot_max;
use crate::preprocess::{Preprocessor, RgbImage};

/// Names kept per window by the whole-window match (`topk(k=min(5, classes))`).
pub const TOP_K: usize = 5;
/// The evaluation clamps the exponentiated logit scale at this.
pub const MAX_LOGIT_SCALE: f32 = 100.0;
/// The repository's background threshold for PASCAL Context (`bg_thresh=.35`); PASCAL VOC and
/// COCO use the engine's default.
const CONTEXT_THRESHOLD: f32 = 0.35;

/// GroupViT's learned grouping on `GroupViTModel` checkpoints.
pub struct GroupVit;

/// How each window's pixels get their label scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum), value(rename_all = "lower"))]
#[serde(rename_all = "lowercase")]
pub enum Scoring {
    /// The GroupViT repository's evaluation, with its background threshold.
    #[default]
    Repository,
    /// transformers' `output_segmentation=True` logits (the soft grouping weighted by the
    /// scaled group-label cosines); no background.
    Transformers,
}

/// What both grouping engines (GroupViT, SegCLIP) are set with. Serialised (camelCase) as the
/// settings the page shows.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupingOptions {
    /// Prompt templates; the repositories evaluate with one.
    pub templates: Templates,
    #[serde(flatten)]
    pub windows: Windows,
    /// Background where a pixel's best score is under `min(this, best group score)`; 0 labels
    /// every pixel.
    #[serde(rename = "threshold")]
    pub background_threshold: f32,
    /// Words of an extra background class (none by default: the threshold makes background).
    pub background: Vec<String>,
    #[serde(skip)]
    pub top_k: usize,
}

impl GroupingOptions {
    /// The repositories' defaults around `windows` and `threshold`: one template, no
    /// background words, the top 5 names per window.
    pub fn repository(windows: Windows, threshold: f32) -> Self {
        GroupingOptions {
            templates: Templates::Single,
            windows,
            background_threshold: threshold,
            background: Vec::new(),
            top_k: TOP_K,
        }
    }

    /// The user's settings over these, the threshold defaulting to `threshold`.
    pub fn with(&self, settings: &Settings, threshold: f32) -> Result<Self> {
        let options = GroupingOptions {
            templates: settings.templates.unwrap_or(self.templates),
            windows: self.windows.with(settings),
            background_threshold: settings.threshold_or(threshold)?,
            background: settings.background_or(&self.background),
            top_k: self.top_k,
        };
        options.validate()?;
        Ok(options)
    }

    /// The background threshold, `None` when off.
    pub fn threshold(&self) -> Option<f32> {
        (self.background_threshold > 0.0).then_some(self.background_threshold)
    }

    pub fn validate(&self) -> Result<()> {
        self.windows.validate()?;
        if !(0.0..=1.0).contains(&self.background_threshold) {
            return Err(Error::invalid(format!(
                "background threshold must be in [0, 1], got {}",
                self.background_threshold
            )));
        }
        if self.top_k == 0 {
            return Err(Error::invalid("top-k must be at least 1"));
        }
        Ok(())
    }

    /// What `engine` runs with these.
    pub fn plan(&self, engine: &'static str) -> Plan {
        Plan {
            engine,
            method: engine.into(),
            templates: self.templates,
            windows: self.windows,
            background: self.background.clone(),
            threshold: self.background_threshold,
            min_score: 0.0,
            engine_background: self.threshold().is_some(),
        }
    }

    /// How stitched group scores become class scores: the max over synonyms, and the
    /// threshold's background row joined to the background words' class when there is one.
    pub fn steps(&self, classes: &ClassEmbeddings) -> PixelSteps {
        PixelSteps {
            softmax_scale: None,
            class_of_name: classes.class_of_name.clone(),
            classes: classes.num_classes,
            renormalise: false,
            fold_extra: classes.background && self.threshold().is_some(),
        }
    }
}

/// How to segment with GroupViT.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Options {
    #[serde(flatten)]
    pub grouping: GroupingOptions,
    pub scoring: Scoring,
}

impl std::ops::Deref for Options {
    type Target = GroupingOptions;

    fn deref(&self) -> &GroupingOptions {
        &self.grouping
    }
}

impl Default for Options {
    /// The repository's `test_cfg` for PASCAL VOC and COCO: short side 448, windows of 448 at
    /// stride 224, "a photo of a {}.", `bg_thresh=.95`.
    fn default() -> Self {
        let windows = Windows { short_side: 448, window: 448, stride: 224 };
        Options { grouping: GroupingOptions::repository(windows, 0.95), scoring: Scoring::Repository }
    }
}

impl Options {
    pub fn validate(&self) -> Result<()> {
        self.grouping.validate()?;
        if self.scoring == Scoring::Transformers && self.threshold().is_some() {
            return Err(Error::invalid(
                "the transformers scoring has no background threshold; set the threshold to 0 (or use the repository scoring)",
            ));
        }
        Ok(())
    }
}

/// A mask of the `k` largest entries of each row (`[rows, n]`), without a sort: `k` rounds of
/// "take the max, then hide it". Equal values are kept together.
fn top_k_mask(x: Tensor<2>, k: usize) -> Tensor<2, Bool> {
    let [rows, n] = x.dims();
    let mut keep = Tensor::<2>::zeros([rows, n], &x.device()).greater_elem(0.0);
    let mut rest = x;
    for _ in 0..k.min(n) {
        let top = rest.clone().max_dim(1).expand([rows, n]);
        let hit = rest.clone().equal(top);
        keep = keep.bool_or(hit.clone());
        rest = rest.mask_fill(hit, f32::NEG_INFINITY);
    }
    keep
}

/// The repository's per-window scores for normalised crops `[n, 3, h, w]` and names
/// `[names, proj]`: `[n, names (+1 background if threshold), h, w]`.
pub fn window_scores(
    model: &GroupVitModel,
    crops: Tensor<4>,
    names: &Tensor<2>,
    threshold: Option<f32>,
    top_k: usize,
) -> Result<Tensor<4>> {
    let [_, _, h, w] = crops.dims();
    let features = model.image_features(crops)?;
    let onehot = one_hot_max(GroupVitModel::grouping(&features.vision, (h, w)), 1); // [n, G, h, w]
    let groups = GroupScores { onehot, group_embeds: features.group_embeds, embeds: features.embeds };
    Ok(groups.scores(names, model.logit_scale, threshold, top_k))
}

/// One batch of windows as the grouping engines score them (GroupViT's and SegCLIP's
/// `encode_decode`): which group each pixel belongs to, and each group's and each window's
/// embedding.
pub struct GroupScores {
    /// Each pixel's group, one-hot, `[n, G, h, w]`.
    pub onehot: Tensor<4>,
    /// L2-normalised, `[n, G, proj]`.
    pub group_embeds: Tensor<3>,
    /// L2-normalised, `[n, proj]`.
    pub embeds: Tensor<2>,
}

impl GroupScores {
    /// Each group's scores `softmax(masked) * softmax(all)` of the scaled cosines (`masked`
    /// keeps the `top_k` names the whole window matches best), spread over the group's pixels;
    /// with a threshold, a last row that is 1 where a pixel's best score is under
    /// `min(threshold, best group score)`. `-> [n, names (+1), h, w]`
    pub fn scores(self, names: &Tensor<2>, logit_scale: f32, threshold: Option<f32>, top_k: usize) -> Tensor<4> {
        let [n, g, h, w] = self.onehot.dims();
        let k = names.dims()[0];
        let scale = logit_scale.min(MAX_LOGIT_SCALE) as f64;
        let text = names.clone().transpose(); // [proj, names]
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let groups = self.group_embeds.clone().slice([i..i + 1]).squeeze_dim::<2>(0); // [G, proj]
            let image = self.embeds.clone().slice([i..i + 1]); // [1, proj]
            let affinity = groups.matmul(text.clone()).mul_scalar(scale); // [G, names]
            let prior = softmax(affinity.clone(), 1);
            let whole = softmax(image.matmul(text.clone()).mul_scalar(scale), 1);
            let keep = top_k_mask(whole, top_k).expand([g, k]);
            let affinity = softmax(affinity.mask_fill(keep.bool_not(), f32::NEG_INFINITY), 1).mul(prior);
            let pixels = self.onehot.clone().slice([i..i + 1]).reshape([g, h * w]);
            let scores = affinity.clone().transpose().matmul(pixels); // [names, h*w]
            let scores = match threshold {
                None => scores,
                Some(t) => {
                    let limit = affinity.max().clamp_max(t).reshape([1, 1]);
                    let background = scores.clone().max_dim(0).sub(limit).lower_elem(0.0).float();
                    Tensor::cat(vec![scores, background], 0)
                }
            };
            let rows = scores.dims()[0];
            out.push(scores.reshape([1, rows, h, w]));
        }
        Tensor::cat(out, 0)
    }
}

impl Engine for GroupVit {
    const NAME: &'static str = "groupvit";
    const MODEL_TYPE: &'static str = "groupvit";
    const ARCHITECTURE: &'static str = "GroupViT";
    const CLASS: &'static str = "GroupViTModel";
    type Network = GroupVitModel;
    type Options = Options;

    fn load(config_json: &str, loader: &mut WeightLoader) -> Result<GroupVitModel> {
        Ok(GroupVitModel::load(GroupVitConfig::from_json(config_json)?, loader))
    }

    fn options(settings: &Settings) -> Result<Options> {
        let d = Options::default();
        let scoring = settings.scoring.unwrap_or(d.scoring);
        // The transformers scoring has no background threshold, so none unless asked for.
        let threshold = if scoring == Scoring::Transformers { 0.0 } else { d.background_threshold };
        let options = Options { grouping: d.grouping.with(settings, threshold)?, scoring };
        options.validate()?;
        Ok(options)
    }

    fn plan(options: &Options) -> Plan {
        options.grouping.plan(Self::NAME)
    }

    /// Scores `[classes (+1 background), H, W]` at the input image's resolution. When the last
    /// class holds background words, the threshold's background is merged into it (max);
    /// otherwise a threshold adds a last background row.
    fn scores(
        model: &GroupVitModel,
        preprocessor: &Preprocessor,
        image: &RgbImage,
        classes: &ClassEmbeddings,
        options: &Options,
    ) -> Result<Scores> {
        options.validate()?;
        let threshold = options.threshold();
        let names = classes.names.dims()[0];
        let rows = names + usize::from(threshold.is_some());
        let (averaged, _) =
            options.windows.run(preprocessor, image, &model.device(), rows, |crops| match options.scoring {
                Scoring::Repository => window_scores(model, crops, &classes.names, threshold, options.top_k),
                Scoring::Transformers => {
                    let [_, _, h, w] = crops.dims();
                    let features = model.image_features(crops)?;
                    Ok(model.segmentation_logits(&features, classes.names.clone(), (h, w)))
                }
            })?;
        let steps = options.grouping.steps(classes);
        Ok(Scores { maps: averaged.squeeze_dim(0), steps })
    }

    /// The repository's `with_bg` evaluation: class 0's name is not embedded; the background
    /// threshold (`bg_thresh`: 0.95 for VOC and COCO, 0.35 for Context) makes class 0.
    fn dataset_protocol(dataset: BackgroundDataset) -> DatasetProtocol {
        let threshold = match dataset {
            BackgroundDataset::PascalContext => CONTEXT_THRESHOLD,
            BackgroundDataset::PascalVoc | BackgroundDataset::Coco => Options::default().background_threshold,
        };
        DatasetProtocol { threshold, embeds_background_name: false }
    }
}
