//! The SegCLIP engine: zero-shot segmentation as the SegCLIP repository evaluates it
//! (ArrowLuo/SegCLIP @ df09ba2, `ViTSegInference.encode_decode` with the datasets' `test_cfg`):
//! short side 224, 224-pixel windows at stride 224, and in each window
//! - pixel -> group: the centres' soft assignment of the 14x14 patches, resized bilinearly to
//!   the window, one-hot by argmax;
//! - group -> class and background: as GroupViT's evaluation ([`GroupScores`]):
//!   `softmax(top-5 masked) * softmax(all)`, background where a pixel's best score is under
//!   `min(threshold, best group score)`.
//!
//! Windows are always the network's input size: the repository takes its pretraining path for
//! any patch count but the trained one and four times it (`module_seg_vit.py` line 423); the
//! four-times case (448-pixel windows) is used by none of its evaluation configs and is not
//! checked against it here, so other windows (or a short side under the window) are refused.

use burn::tensor::Tensor;
use serde::Serialize;

use super::engine::{DatasetProtocol, Engine, Plan, Preset, Scores};
use super::grouping::{GroupScores, GroupingOptions};
use super::slide::Windows;
use super::text::ClassEmbeddings;
use super::{BackgroundDataset, Settings};
use crate::error::{Error, Result};
use crate::loader::WeightLoader;
use crate::network::ConfigJson;
use crate::network::Network;
use crate::nn::{one_hot_max, resize_bilinear};
use crate::preprocess::{Preprocessor, RgbImage, Rounding};
use crate::segclip::{SegClipConfig, SegClipModel};

/// The repository's background thresholds (`bg_thresh` of `configs/_base_/datasets/*.py`).
const VOC_THRESHOLD: f32 = 0.80;
const CONTEXT_THRESHOLD: f32 = 0.25;
const COCO_THRESHOLD: f32 = 0.65;

/// SegCLIP's learned centres on converted SegCLIP checkpoints.
pub struct SegClip;

/// How to segment with SegCLIP: the grouping engines' options, with SegCLIP's defaults.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct Options(pub GroupingOptions);

impl std::ops::Deref for Options {
    type Target = GroupingOptions;

    fn deref(&self) -> &GroupingOptions {
        &self.0
    }
}

impl Default for Options {
    /// The repository's `test_cfg` for PASCAL VOC: short side 224, windows of 224 at stride
    /// 224, "a photo of a {}.", `bg_thresh=.80`.
    fn default() -> Self {
        let windows = Windows { short_side: 224, window: 224, stride: 224, rounding: Rounding::Transformers };
        Options(GroupingOptions::repository(windows, VOC_THRESHOLD))
    }
}

impl Options {
    /// Windows of the network's input size, inside the resized image.
    fn check_windows(&self, input: usize) -> Result<()> {
        let w = &self.windows;
        if w.window != input || w.short_side < input {
            return Err(Error::invalid(format!(
                "SegCLIP runs {input}-pixel windows on a short side of at least {input} (its repository groups only {input}x{input} inputs); got window {}, short side {}",
                w.window, w.short_side
            )));
        }
        Ok(())
    }
}

/// The repository's per-window scores for normalised crops `[n, 3, h, w]` (each the network's
/// input size) and names `[names, proj]`: `[n, names (+1 background if threshold), h, w]`.
pub fn window_scores(
    model: &SegClipModel,
    crops: Tensor<4>,
    names: &Tensor<2>,
    threshold: Option<f32>,
    top_k: usize,
) -> Result<Tensor<4>> {
    let [n, _, h, w] = crops.dims();
    let f = model.image_features(crops)?;
    let (gh, gw) = f.grid;
    let g = f.grouping.soft.dims()[1];
    let soft = resize_bilinear(f.grouping.soft.reshape([n, g, gh, gw]), h, w);
    let groups = GroupScores { onehot: one_hot_max(soft, 1), group_embeds: f.group_embeds, embeds: f.embeds };
    Ok(groups.scores(names, model.logit_scale(), threshold, top_k))
}

impl Engine for SegClip {
    const NAME: &'static str = "segclip";
    const MODEL_TYPE: &'static str = "segclip";
    const ARCHITECTURE: &'static str = "SegCLIP";
    const DESCRIPTION: &'static str = "SegCLIP (learned centres)";
    const THRESHOLD_MEANS: &'static str = "Background where the best score is under";
    const CLASS: &'static str = "SegCLIP";
    type Network = SegClipModel;
    type Options = Options;
    const PRESETS: &'static [Preset<SegClipModel>] = &[Preset {
        name: "segclip",
        aliases: &[],
        about: "the released SegCLIP (ViT-B/16, 10 + 2 blocks around 8 centres)",
        build: |l| Ok(SegClipModel::load(SegClipConfig::release(), l)),
    }];

    fn load(config: &ConfigJson, loader: &mut WeightLoader) -> Result<SegClipModel> {
        Ok(SegClipModel::load(SegClipConfig::from_config(config)?, loader))
    }

    fn options(settings: &Settings) -> Result<Options> {
        let d = Options::default();
        Ok(Options(d.0.with(settings, d.background_threshold)?))
    }

    fn plan(options: &Options) -> Plan {
        options.0.plan(Self::NAME)
    }

    fn scores(
        model: &SegClipModel,
        preprocessor: &Preprocessor,
        image: &RgbImage,
        classes: &ClassEmbeddings,
        options: &Options,
    ) -> Result<Scores> {
        options.validate()?;
        options.check_windows(model.image_size())?;
        let threshold = options.threshold();
        let rows = classes.names.dims()[0] + usize::from(threshold.is_some());
        let (averaged, _) = options.windows.run(preprocessor, image, &model.device(), rows, |crops| {
            window_scores(model, crops, &classes.names, threshold, options.top_k)
        })?;
        let steps = options.steps(classes);
        Ok(Scores { maps: averaged.squeeze_dim(0), steps })
    }

    /// The repository's `with_bg` evaluation: class 0's name is not embedded; the threshold
    /// makes class 0 (VOC 0.80, Context 0.25, COCO 0.65).
    fn dataset_protocol(dataset: BackgroundDataset) -> DatasetProtocol {
        let threshold = match dataset {
            BackgroundDataset::PascalVoc => VOC_THRESHOLD,
            BackgroundDataset::PascalContext => CONTEXT_THRESHOLD,
            BackgroundDataset::Coco => COCO_THRESHOLD,
        };
        DatasetProtocol { threshold, embeds_background_name: false }
    }
}
