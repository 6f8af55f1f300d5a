//! One person's Point mode: a prompt model, the image it encoded, and how masks get their
//! names. The CLI, the page's worker and `<word-mask interactive>` all go through
//! [`PromptSession`], so the decisions — encode once per image, which model names a mask and
//! among which words, what an empty mask gets — are made here only.

use serde::Serialize;

use super::{
    AutomaticOptions, ClassEmbeddings, Click, EncodedImage, MaskNamer, Naming, ObjectMask, Prompt, PromptModel,
    Vocabulary,
};
use crate::error::{Error, Result};
use crate::labels::Label;
use crate::preprocess::RgbImage;
use crate::segment::objects::{Object, counts};
use crate::segment::{EmbeddingCache, Model, Settings};

/// Among which classes a model that names its own masks names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum VocabularyChoice {
    /// The typed words.
    Typed,
    /// The checkpoint's own classifier (LVIS's 1,203 classes in the release).
    #[serde(alias = "released")]
    Lvis,
}

/// A words model that names masks of a model that does not name its own (its dense maps
/// pooled inside the mask), with the settings it segments with and its embedding cache.
pub struct WordsNamer<'a> {
    pub model: &'a Model,
    pub settings: &'a Settings,
    pub cache: &'a mut EmbeddingCache,
}

/// What a prompt's mask is named with. Whatever is missing means no name, not an error: a
/// model that names its masks ignores a words model; one that does not names masks only with
/// typed words and a words model.
#[derive(Default)]
pub struct NameRequest<'a> {
    /// The typed words, if any.
    pub labels: Option<Vec<Label>>,
    /// For a model that names its masks: the typed words or its own classifier (default: the
    /// typed words when there are some, else its classifier when it carries one).
    pub vocabulary: Option<VocabularyChoice>,
    /// For a model that does not: the words model that names them.
    pub words: Option<WordsNamer<'a>>,
}

/// Milliseconds of one prompt's stages.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct PromptTimings {
    /// The prompt encoder and mask decoder, the mask read back and upsampled.
    pub decode: f64,
    /// Naming it (the words' embeddings the first time, then pooling or the model's head).
    pub name: f64,
}

/// A prompt's answer: the mask and, when there was something to name it with, its name.
pub struct Answer {
    pub mask: ObjectMask,
    pub naming: Option<Naming>,
    pub timings: PromptTimings,
}

/// The image the prompts point into: its pixels (a words model names masks from them), its
/// encoding and its number (which keys the namer's maps).
struct Current {
    pixels: RgbImage,
    encoded: EncodedImage,
    id: u64,
}

/// A prompt model with the image it encoded and what naming keeps between prompts.
pub struct PromptSession {
    model: PromptModel,
    current: Option<Current>,
    images: u64,
    namer: MaskNamer,
    classes: Option<ClassEmbeddings>,
}

impl PromptSession {
    pub fn new(model: PromptModel) -> Self {
        PromptSession { model, current: None, images: 0, namer: MaskNamer::default(), classes: None }
    }

    pub fn model(&self) -> &PromptModel {
        &self.model
    }

    /// The heavy pass for a new image, once; every later prompt points into it. Returns its
    /// time in milliseconds.
    pub async fn encode(&mut self, image: RgbImage) -> Result<f64> {
        let mut clock = crate::clock::Stopwatch::start();
        // The old encoding goes first: two images' features need not fit at once.
        self.current = None;
        let encoded = self.model.encode(&image).await?;
        self.images += 1;
        self.current = Some(Current { pixels: image, encoded, id: self.images });
        Ok(clock.lap())
    }

    /// Whether the encoded image is `image` (the same pixels).
    pub fn holds(&self, image: &RgbImage) -> bool {
        self.current.as_ref().is_some_and(|c| c.pixels == *image)
    }

    /// The mask of `prompt` on the encoded image, unnamed.
    pub async fn mask(&self, prompt: &Prompt) -> Result<ObjectMask> {
        let current = self.current.as_ref().ok_or_else(|| Error::invalid("encode an image first"))?;
        self.model.segment(&current.encoded, prompt).await
    }

    /// The mask of `prompt` on the encoded image, and its name as `request` allows. An empty
    /// mask (nothing found there) gets no name.
    pub async fn prompt(&mut self, prompt: &Prompt, request: NameRequest<'_>) -> Result<Answer> {
        let current = self.current.as_ref().ok_or_else(|| Error::invalid("encode an image first"))?;
        let mut clock = crate::clock::Stopwatch::start();
        let mask = self.model.segment(&current.encoded, prompt).await?;
        let decode = clock.lap();
        let naming = if mask.area == 0 {
            None
        } else if self.model.names_masks() {
            match self.vocabulary(&request)? {
                Some(vocabulary) => {
                    let classes = self.model.prepare_classes(&vocabulary, &mut self.classes)?;
                    Some(self.model.name(&current.encoded, &mask, classes).await?)
                }
                None => None,
            }
        } else {
            match (request.labels.as_deref(), request.words) {
                (Some(labels), Some(words)) => {
                    let (image, id) = (&current.pixels, current.id);
                    Some(
                        self.namer
                            .name_mask(words.model, id, image, labels, words.settings, words.cache, &mask)
                            .await?,
                    )
                }
                _ => None,
            }
        };
        Ok(Answer { mask, naming, timings: PromptTimings { decode, name: clock.lap() } })
    }

    /// Every object in the encoded image (automatic mask generation), each named as `request`
    /// allows: by the typed words through a words model (Segment Anything), or by the model's
    /// own head among the typed words or its classifier (Open-Vocabulary SAM: the mask a click
    /// on its grid point gives, named as that click would be). Objects come best first
    /// ([`super::AutoMask::score`]); `progress(done, total)` counts the grid's prompts.
    pub async fn everything(
        &mut self,
        options: &AutomaticOptions,
        request: NameRequest<'_>,
        progress: impl FnMut(usize, usize),
    ) -> Result<Vec<Object>> {
        let vocabulary = if self.model.names_masks() { self.vocabulary(&request)? } else { None };
        let current = self.current.as_ref().ok_or_else(|| Error::invalid("encode an image first"))?;
        let found = self.model.automatic(&current.encoded, options, progress).await?;
        if let Some(vocabulary) = &vocabulary {
            self.model.prepare_classes(vocabulary, &mut self.classes)?;
        }
        let labels = request.labels.as_deref().filter(|l| !l.is_empty());
        let mut words = request.words;
        let mut objects = Vec::with_capacity(found.len());
        for (i, auto) in found.into_iter().enumerate() {
            let (label, class) = match (&self.classes, labels, words.as_mut()) {
                // An empty mask (nothing found there) gets no name, as in Point mode.
                _ if auto.mask.area() == 0 => (None, None),
                (Some(classes), ..) if vocabulary.is_some() => {
                    let (x, y) = auto.point;
                    let click = Prompt { points: vec![Click { x, y, positive: true }], bbox: None };
                    let mask = self.model.segment(&current.encoded, &click).await?;
                    let naming = self.model.name(&current.encoded, &mask, classes).await?;
                    (Some(naming.best.label), naming.class_index)
                }
                (_, Some(labels), Some(words)) if !self.model.names_masks() => {
                    let (width, height) = (auto.mask.width, auto.mask.height);
                    let mask = ObjectMask {
                        width,
                        height,
                        mask: auto.mask.to_plane(),
                        iou: auto.iou,
                        area: auto.mask.area(),
                        low_res: None,
                    };
                    let naming = self
                        .namer
                        .name_mask(words.model, current.id, &current.pixels, labels, words.settings, words.cache, &mask)
                        .await?;
                    let class = labels.iter().position(|l| l.name == naming.best.label);
                    (Some(naming.best.label), class)
                }
                _ => (None, None),
            };
            let area = auto.mask.area();
            objects.push(Object {
                id: i as u32 + 1,
                label,
                class,
                score: auto.score(),
                bbox: auto.bbox,
                area,
                point: Some([auto.point.0, auto.point.1]),
                mask: auto.mask,
            });
        }
        Ok(objects)
    }

    /// Objects per name after [`PromptSession::everything`] with `labels` and `vocabulary`:
    /// every typed word (zero included) when the objects were named among them, else the
    /// classes of the checkpoint's classifier that were found, most objects first.
    pub fn counts(
        &self,
        objects: &[Object],
        labels: Option<&[Label]>,
        vocabulary: Option<VocabularyChoice>,
    ) -> Vec<(String, usize)> {
        let typed = labels.filter(|l| !l.is_empty()).filter(|_| vocabulary != Some(VocabularyChoice::Lvis));
        match (typed, self.model.released_vocabulary()) {
            (Some(labels), _) => {
                let names: Vec<String> = labels.iter().map(|l| l.name.clone()).collect();
                counts(objects, &names)
            }
            (None, Some(classes)) if self.model.names_masks() => {
                let names: Vec<String> = classes.iter().map(|n| n.replace('_', " ")).collect();
                let mut found = counts(objects, &names);
                found.retain(|&(_, n)| n > 0);
                found.sort_by_key(|c| std::cmp::Reverse(c.1));
                found
            }
            _ => Vec::new(),
        }
    }

    /// The vocabulary a model that names its masks uses for `request`, if any.
    fn vocabulary(&self, request: &NameRequest<'_>) -> Result<Option<Vocabulary>> {
        let typed = request.labels.clone().filter(|l| !l.is_empty());
        Ok(match (request.vocabulary, typed) {
            (Some(VocabularyChoice::Lvis), _) => Some(Vocabulary::Released),
            (Some(VocabularyChoice::Typed), None) => {
                return Err(Error::invalid("naming among the typed words needs words: type some, e.g. \"cat, dog\""));
            }
            (_, Some(labels)) => Some(Vocabulary::Typed(labels)),
            (None, None) => self.model.released_vocabulary().map(|_| Vocabulary::Released),
        })
    }
}
