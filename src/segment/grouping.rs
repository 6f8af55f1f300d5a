//! What the grouping engines share (GroupViT's and SegCLIP's evaluation, the latter built on
//! the former's `encode_decode`): their options, and how one batch of windows turns pixel
//! groups into class scores and a background row.

use burn::tensor::activation::softmax;
use burn::tensor::{Bool, Tensor};
use serde::Serialize;

use super::Settings;
use super::engine::Plan;
use super::result::{PixelSteps, ThresholdOn};
use super::slide::Windows;
use super::text::{ClassEmbeddings, Templates};
use crate::error::{Error, Result};

/// Names kept per window by the whole-window match (`topk(k=min(5, classes))`).
pub const TOP_K: usize = 5;
/// The evaluation clamps the exponentiated logit scale at this.
pub const MAX_LOGIT_SCALE: f32 = 100.0;
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
            threshold_on: ThresholdOn::Merged,
            fold_extra: classes.background && self.threshold().is_some(),
            area_threshold: None,
            dropped: Vec::new(),
        }
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
