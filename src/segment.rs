//! One way in for both engines: the CLI, the evaluation and the page build [`EngineOptions`]
//! and call [`scores`], then turn the scores into a [`Segmentation`] with [`finish`].

use burn::tensor::Tensor;

use crate::dense::pipeline::{ClassEmbeddings, DenseOptions};
use crate::dense::result::Segmentation;
use crate::error::Result;
use crate::groupvit::segment::GroupVitOptions;
use crate::labels::Label;
use crate::model::{Engine, Model};
use crate::preprocess::RgbImage;

#[derive(Debug, Clone)]
pub enum EngineOptions {
    Dense(DenseOptions),
    GroupVit(GroupVitOptions),
}

impl EngineOptions {
    pub fn engine(&self) -> Engine {
        match self {
            EngineOptions::Dense(_) => Engine::Dense,
            EngineOptions::GroupVit(_) => Engine::GroupVit,
        }
    }

    pub fn templates(&self) -> &'static [&'static str] {
        match self {
            EngineOptions::Dense(o) => o.templates,
            EngineOptions::GroupVit(o) => o.templates,
        }
    }

    pub fn validate(&self) -> Result<()> {
        match self {
            EngineOptions::Dense(o) => o.validate(),
            EngineOptions::GroupVit(o) => o.validate(),
        }
    }

    /// Whether the scores end with a background row, given whether background words were added
    /// as a last class.
    pub fn has_background_row(&self, background_words: bool) -> bool {
        match self {
            EngineOptions::Dense(_) => background_words,
            EngineOptions::GroupVit(o) => background_words || o.threshold.is_some(),
        }
    }
}

/// Scores `[classes (+1 background), H, W]` for `image`. `classes` were embedded for the
/// user's labels plus, when `background_words`, a last background class.
pub fn scores(
    model: &Model,
    image: &RgbImage,
    classes: &ClassEmbeddings,
    background_words: bool,
    opts: &EngineOptions,
) -> Result<Tensor<3>> {
    match opts {
        EngineOptions::Dense(o) => crate::dense::pipeline::segment(model, image, classes, o),
        EngineOptions::GroupVit(o) => crate::groupvit::segment::segment(
            model.groupvit()?,
            &model.preprocessor,
            image,
            classes,
            background_words,
            o,
        ),
    }
}

/// Label map, shares and confidence from host scores. `threshold` is the dense engine's
/// minimum probability; GroupViT's threshold already made its background row.
pub fn finish(
    image: &RgbImage,
    labels: &[Label],
    background_words: bool,
    opts: &EngineOptions,
    scores: Vec<f32>,
    threshold: f32,
) -> Segmentation {
    let label_threshold = match opts {
        EngineOptions::Dense(_) => threshold,
        EngineOptions::GroupVit(_) => 0.0,
    };
    Segmentation::new(
        image.width,
        image.height,
        labels,
        opts.has_background_row(background_words),
        scores,
        label_threshold,
    )
}
