//! GroupViT zero-shot segmentation of one image, as the GroupViT repository evaluates it
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

use super::GroupVitModel;
use super::vision::one_hot_max;
use crate::dense::pipeline::{
    ClassEmbeddings, bilinear, merge_synonyms, resized_pixels, slide_and_stitch, validate_resize,
};
use crate::dense::templates;
use crate::error::{Error, Result};
use crate::preprocess::{Preprocessor, RgbImage};

/// Names kept per window by the whole-window match (`topk(k=min(5, classes))`).
pub const TOP_K: usize = 5;
/// The repository's background threshold for PASCAL VOC and COCO (`bg_thresh=.95`).
pub const DEFAULT_THRESHOLD: f32 = 0.95;

/// How each window's pixels get their label scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scoring {
    /// The GroupViT repository's evaluation (module docs), with its background threshold.
    #[default]
    Repository,
    /// transformers' `output_segmentation=True` logits: the soft grouping weighted by the
    /// scaled group-label cosines, scaled again; no background.
    Transformers,
}

impl std::str::FromStr for Scoring {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "repository" => Ok(Scoring::Repository),
            "transformers" => Ok(Scoring::Transformers),
            other => Err(Error::invalid(format!("scoring must be repository or transformers, got {other}"))),
        }
    }
}

/// How to segment with GroupViT.
#[derive(Debug, Clone)]
pub struct GroupVitOptions {
    /// Prompt templates (`{}` is the class name); the repository evaluates with one.
    pub templates: &'static [&'static str],
    pub short_side: usize,
    /// `(window, stride)` in pixels; `None` runs the whole resized image in one pass.
    pub slide: Option<(usize, usize)>,
    /// Background threshold; `None` labels every pixel.
    pub threshold: Option<f32>,
    pub top_k: usize,
    pub scoring: Scoring,
}

impl Default for GroupVitOptions {
    fn default() -> Self {
        GroupVitOptions {
            templates: &templates::SINGLE,
            short_side: 448,
            slide: Some((448, 224)),
            threshold: Some(DEFAULT_THRESHOLD),
            top_k: TOP_K,
            scoring: Scoring::Repository,
        }
    }
}

impl GroupVitOptions {
    pub fn validate(&self) -> Result<()> {
        validate_resize(self.short_side, self.slide)?;
        if let Some(t) = self.threshold {
            if !(0.0..=1.0).contains(&t) {
                return Err(Error::invalid(format!("background threshold must be in [0, 1], got {t}")));
            }
        }
        if self.scoring == Scoring::Transformers && self.threshold.is_some() {
            return Err(Error::invalid(
                "the transformers scoring has no background threshold; set the threshold to 0 (or use the repository scoring)",
            ));
        }
        if self.top_k == 0 {
            return Err(Error::invalid("top-k must be at least 1"));
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

impl GroupVitModel {
    /// The repository's per-window scores for normalised crops `[n, 3, h, w]` and names
    /// `[names, proj]`: `[n, names (+1 background if threshold), h, w]`.
    pub fn window_scores(
        &self,
        crops: Tensor<4>,
        names: &Tensor<2>,
        threshold: Option<f32>,
        top_k: usize,
    ) -> Result<Tensor<4>> {
        let [n, _, h, w] = crops.dims();
        let features = self.image_features(crops)?;
        let onehot = one_hot_max(Self::grouping(&features.vision, (h, w)), 1); // [n, G, h, w]
        let g = onehot.dims()[1];
        let k = names.dims()[0];
        let scale = self.logit_scale.min(super::MAX_LOGIT_SCALE) as f64;
        let text = names.clone().transpose(); // [proj, names]
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let groups = features.group_embeds.clone().slice([i..i + 1]).squeeze_dim::<2>(0); // [G, proj]
            let image = features.embeds.clone().slice([i..i + 1]); // [1, proj]
            let affinity = groups.matmul(text.clone()).mul_scalar(scale); // [G, names]
            let prior = softmax(affinity.clone(), 1);
            let whole = softmax(image.matmul(text.clone()).mul_scalar(scale), 1);
            let keep = top_k_mask(whole, top_k).expand([g, k]);
            let affinity = softmax(affinity.mask_fill(keep.bool_not(), f32::NEG_INFINITY), 1).mul(prior);
            let pixels = onehot.clone().slice([i..i + 1]).reshape([g, h * w]);
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
        Ok(Tensor::cat(out, 0))
    }
}

/// Scores `[classes (+1 background), H, W]` at the input image's resolution. With
/// `background_class` the last class holds background words and the threshold's background
/// is merged into it (max); otherwise a threshold adds a last background row.
pub fn segment(
    model: &GroupVitModel,
    preprocessor: &Preprocessor,
    image: &RgbImage,
    classes: &ClassEmbeddings,
    background_class: bool,
    opts: &GroupVitOptions,
) -> Result<Tensor<3>> {
    opts.validate()?;
    let pixels = resized_pixels(preprocessor, image, opts.short_side, &model.device())?;
    let names = classes.names.dims()[0];
    let rows = names + usize::from(opts.threshold.is_some());
    let averaged = slide_and_stitch(&pixels, opts.slide, rows, |crops| match opts.scoring {
        Scoring::Repository => model.window_scores(crops, &classes.names, opts.threshold, opts.top_k),
        Scoring::Transformers => {
            let [_, _, h, w] = crops.dims();
            let features = model.image_features(crops)?;
            Ok(model.segmentation_logits(&features, classes.names.clone(), (h, w)))
        }
    })?;
    let scores = bilinear(averaged, image.height, image.width);
    let merged = merge_synonyms(scores, &classes.class_of_name, classes.num_classes, false).squeeze_dim::<3>(0);
    if !(background_class && opts.threshold.is_some()) {
        return Ok(merged);
    }
    // Fold the threshold's row into the background class (the last class).
    let [r, h, w] = merged.dims();
    let c = classes.num_classes;
    let bg = merged.clone().slice([c - 1..c, 0..h, 0..w]).max_pair(merged.clone().slice([r - 1..r, 0..h, 0..w]));
    Ok(Tensor::cat(vec![merged.slice([0..c - 1, 0..h, 0..w]), bg], 0))
}
