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

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::engine::{DatasetProtocol, Engine, Plan, Preset, Scores};
use super::grouping::{GroupScores, GroupingOptions};
use super::slide::Windows;
use super::text::ClassEmbeddings;
use super::{BackgroundDataset, Settings};
use crate::error::{Error, Result};
use crate::groupvit::{GroupVitConfig, GroupVitModel};
use crate::loader::WeightLoader;
use crate::network::ConfigJson;
use crate::network::Network;
use crate::nn::one_hot_max;
use crate::preprocess::{Preprocessor, RgbImage, Rounding};

/// The repository's background threshold for PASCAL Context (`bg_thresh=.35`); PASCAL VOC and
/// COCO use the engine's default.
const CONTEXT_THRESHOLD: f32 = 0.35;

pub use super::grouping::{MAX_LOGIT_SCALE, TOP_K};

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
        let windows = Windows { short_side: 448, window: 448, stride: 224, rounding: Rounding::Transformers };
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

impl Engine for GroupVit {
    const NAME: &'static str = "groupvit";
    const MODEL_TYPE: &'static str = "groupvit";
    const ARCHITECTURE: &'static str = "GroupViT";
    const DESCRIPTION: &'static str = "GroupViT (learned grouping)";
    const THRESHOLD_MEANS: &'static str = "Background where the best score is under";
    const CLASS: &'static str = "GroupViTModel";
    type Network = GroupVitModel;
    type Options = Options;
    const PRESETS: &'static [Preset<GroupVitModel>] = &[Preset {
        name: "groupvit-gcc-yfcc",
        aliases: &["groupvit-gcc-redcaps"],
        about: "nvidia/groupvit-gcc-yfcc (and -redcaps, the same shape)",
        build: |l| Ok(GroupVitModel::load(GroupVitConfig::gcc_yfcc(), l)),
    }];

    fn load(config: &ConfigJson, loader: &mut WeightLoader) -> Result<GroupVitModel> {
        Ok(GroupVitModel::load(GroupVitConfig::from_config(config)?, loader))
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
