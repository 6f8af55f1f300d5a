//! One way in for both engines: the CLI, the evaluation and the page turn the user's
//! [`Settings`] into [`EngineOptions`] (every engine default lives here), call [`scores`], then
//! turn the scores into a [`Segmentation`] with [`finish`].

use burn::tensor::Tensor;

use crate::dense::pipeline::{ClassEmbeddings, DEFAULT_LOGIT_SCALE, DenseOptions, Pamr};
use crate::dense::result::{BACKGROUND, Segmentation};
use crate::dense::templates;
use crate::error::{Error, Result};
use crate::groupvit::segment::{DEFAULT_THRESHOLD, GroupVitOptions, Scoring};
use crate::labels::Label;
use crate::model::{Engine, Model};
use crate::preprocess::RgbImage;

/// A user's segmentation settings, named as the CLI's flags (camelCase from the page); `None`
/// takes the engine's default.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Settings {
    /// Dense: the last-block variant [naclip].
    pub method: Option<String>,
    /// imagenet80, single or bare [dense: imagenet80, groupvit: single].
    pub templates: Option<String>,
    /// [dense: 336, groupvit: 448]
    pub short_side: Option<usize>,
    /// 0 = the whole image in one pass [dense: 224, groupvit: 448].
    pub window: Option<usize>,
    /// [dense: 112, groupvit: 224]
    pub stride: Option<usize>,
    /// Dense: temperature before the softmax [40].
    pub logit_scale: Option<f32>,
    /// Dense: none or pamr [none].
    pub refine: Option<String>,
    /// GroupViT: repository or transformers [repository].
    pub scoring: Option<String>,
}

impl Settings {
    fn refuse(&self, engine: Engine, settings: &[(bool, &str)]) -> Result<()> {
        let other = match engine {
            Engine::Dense => "groupvit",
            Engine::GroupVit => "dense",
        };
        match settings.iter().find(|(set, _)| *set) {
            Some((_, name)) => Err(Error::invalid(format!(
                "{name} applies to the {other} engine only; this checkpoint runs the {engine} engine"
            ))),
            None => Ok(()),
        }
    }

    fn scoring(&self) -> Result<Scoring> {
        self.scoring.as_deref().map_or(Ok(Scoring::default()), str::parse)
    }

    /// The threshold when the user gives none: the dense engine's minimum probability (0.1), or
    /// GroupViT's background threshold (0.95; 0 for the transformers scoring, which has none).
    pub fn default_threshold(&self, engine: Engine) -> Result<f32> {
        Ok(match engine {
            Engine::Dense => 0.1,
            Engine::GroupVit if self.scoring()? == Scoring::Transformers => 0.0,
            Engine::GroupVit => DEFAULT_THRESHOLD,
        })
    }

    /// Background words when the user gives none: a "background" class for the dense engine,
    /// none for GroupViT (its threshold makes the background).
    pub fn default_background(engine: Engine) -> Vec<String> {
        match engine {
            Engine::Dense => vec![BACKGROUND.to_string()],
            Engine::GroupVit => Vec::new(),
        }
    }

    /// Options for `engine`. `threshold` is GroupViT's background threshold (0 = none); the
    /// dense engine applies its threshold to the label map instead ([`finish`]).
    pub fn options(&self, engine: Engine, threshold: f32) -> Result<EngineOptions> {
        let opts = match engine {
            Engine::Dense => {
                self.refuse(engine, &[(self.scoring.is_some(), "scoring")])?;
                let d = DenseOptions::default();
                let window = self.window.unwrap_or(224);
                EngineOptions::Dense(DenseOptions {
                    method: self.method.as_deref().map_or(Ok(d.method), str::parse)?,
                    templates: templates::by_name(self.templates.as_deref().unwrap_or("imagenet80"))?,
                    short_side: self.short_side.unwrap_or(d.short_side),
                    slide: (window > 0).then_some((window, self.stride.unwrap_or(112))),
                    logit_scale: self.logit_scale.unwrap_or(DEFAULT_LOGIT_SCALE),
                    pamr: match self.refine.as_deref() {
                        None | Some("none") | Some("") => None,
                        Some("pamr") => Some(Pamr::default()),
                        Some(other) => return Err(Error::invalid(format!("refine must be none or pamr, got {other}"))),
                    },
                    ..d
                })
            }
            Engine::GroupVit => {
                self.refuse(
                    engine,
                    &[
                        (self.method.is_some(), "method"),
                        (self.logit_scale.is_some(), "logit scale"),
                        (self.refine.is_some(), "refine"),
                    ],
                )?;
                let d = GroupVitOptions::default();
                let window = self.window.unwrap_or(448);
                EngineOptions::GroupVit(GroupVitOptions {
                    templates: templates::by_name(self.templates.as_deref().unwrap_or("single"))?,
                    short_side: self.short_side.unwrap_or(d.short_side),
                    slide: (window > 0).then_some((window, self.stride.unwrap_or(224))),
                    threshold: (threshold > 0.0).then_some(threshold),
                    scoring: self.scoring()?,
                    ..d
                })
            }
        };
        opts.validate()?;
        Ok(opts)
    }
}

#[derive(Debug, Clone)]
pub enum EngineOptions {
    Dense(DenseOptions),
    GroupVit(GroupVitOptions),
}

impl EngineOptions {
    /// The method's name in summaries: the dense variant, or "groupvit".
    pub fn method_name(&self) -> String {
        match self {
            EngineOptions::Dense(o) => o.method.to_string(),
            EngineOptions::GroupVit(_) => "groupvit".into(),
        }
    }

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
