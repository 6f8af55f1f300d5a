//! Point mode: a click or a box becomes one object's mask (Segment Anything), named by the typed
//! words — the Open-Vocabulary SAM paper's "SAM + CLIP" baseline. The image is encoded once
//! ([`PromptModel::encode`], the heavy pass); each prompt only runs the prompt encoder and the
//! mask decoder ([`PromptModel::decode`]). A mask is named by a CLIP checkpoint's dense
//! features (the dense engine's windows, NACLIP by default) pooled inside the mask and compared
//! with each word's embedding: `softmax(logit_scale * mean cosine)`, synonyms merged as in
//! segmentation ([`MaskNamer`]).

use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::dense::{self, Dense};
use super::{EmbeddingCache, Engine, Model, Settings, Words};
use crate::checkpoint::Checkpoint;
use crate::clip::ClipModel;
use crate::error::{Error, Result};
use crate::labels::Label;
use crate::loader;
use crate::network::model_type;
use crate::ovsam::{OvSamConfig, OvSamFeatures, OvSamModel};
use crate::preprocess::RgbImage;
use crate::sam::{Point, SamConfig, SamModel, SamProcessor};
use crate::tokenizer::Tokenizer;

/// One click: on the object (`positive`, the default) or not.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
pub struct Click {
    pub x: f64,
    pub y: f64,
    #[serde(default = "positive")]
    pub positive: bool,
}

fn positive() -> bool {
    true
}

/// What a person pointed at, in the image's own pixels: clicks, a box `[x0, y0, x1, y1]`, or
/// both.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Prompt {
    #[serde(default)]
    pub points: Vec<Click>,
    #[serde(default, rename = "box")]
    pub bbox: Option<[f64; 4]>,
}

impl Prompt {
    /// Refuse what cannot be a prompt on a `width x height` image, naming the problem.
    pub fn validate(&self, width: usize, height: usize) -> Result<()> {
        if self.points.is_empty() && self.bbox.is_none() {
            return Err(Error::invalid("the prompt is empty: give a point (a click) or a box"));
        }
        let inside = |x: f64, y: f64| {
            x.is_finite() && y.is_finite() && (0.0..width as f64).contains(&x) && (0.0..height as f64).contains(&y)
        };
        if let Some(p) = self.points.iter().find(|p| !inside(p.x, p.y)) {
            return Err(Error::invalid(format!(
                "the point ({}, {}) lies outside the {width}x{height} image",
                p.x, p.y
            )));
        }
        if let Some([x0, y0, x1, y1]) = self.bbox {
            if !(x1 > x0 && y1 > y0) {
                return Err(Error::invalid(format!(
                    "a box needs x1 > x0 and y1 > y0; got ({x0}, {y0}) to ({x1}, {y1})"
                )));
            }
            let within = |x: f64, y: f64| {
                x.is_finite()
                    && y.is_finite()
                    && (0.0..=width as f64).contains(&x)
                    && (0.0..=height as f64).contains(&y)
            };
            if !within(x0, y0) || !within(x1, y1) {
                return Err(Error::invalid(format!(
                    "the box ({x0}, {y0}) to ({x1}, {y1}) reaches outside the {width}x{height} image"
                )));
            }
        }
        Ok(())
    }

    /// SAM's advice: three candidate masks for a lone click (it is ambiguous), one otherwise.
    fn multimask(&self) -> bool {
        self.points.len() == 1 && self.bbox.is_none()
    }
}

/// The network behind the Point mode.
pub enum PromptNetwork {
    /// Segment Anything: masks only; the typed words name them through a CLIP checkpoint.
    Sam(Box<SamModel>),
    /// Open-Vocabulary SAM: the mask and its name from one model.
    OvSam(Box<OvSamModel>),
}

/// A loaded Segment Anything or Open-Vocabulary SAM checkpoint with its processor.
pub struct PromptModel {
    pub network: PromptNetwork,
    pub processor: SamProcessor,
    tokenizer: Tokenizer,
}

enum Features {
    Sam(Tensor<4>),
    OvSam(OvSamFeatures),
}

/// An image after the heavy pass, ready for any number of prompts.
pub struct EncodedImage {
    features: Features,
    /// `(width, height)` of the image and of its resized copy inside the padded input.
    pub original: (usize, usize),
    resized: (usize, usize),
}

impl EncodedImage {
    fn first(&self) -> Tensor<4> {
        let embeddings = match &self.features {
            Features::Sam(e) => e,
            Features::OvSam(f) => &f.embeddings,
        };
        embeddings.clone().slice([0..1, 0..1, 0..1, 0..1])
    }

    /// Block until the heavy pass has run (native; for timing it apart from the first prompt).
    #[cfg(not(target_family = "wasm"))]
    pub fn wait(&self) -> Result<()> {
        crate::device::to_vec(self.first()).map(drop)
    }

    /// Until the heavy pass has run, without blocking (the browser says "encoding" until then).
    pub async fn wait_async(&self) -> Result<()> {
        crate::device::to_vec_async(self.first()).await.map(drop)
    }
}

/// The decoder's masks for a prompt, still on the device, cropped to the resized image.
pub struct PendingMask {
    /// `[n, rh, rw]`.
    logits: Tensor<3>,
    iou: Option<Tensor<1>>,
    /// Open-Vocabulary SAM: the low-resolution mask `[1, 4e, 4e]`, whose box names it.
    low_res: Option<Tensor<3>>,
    width: usize,
    height: usize,
    resized: (usize, usize),
}

/// One object's mask at the image's size.
#[derive(Debug, Clone, Serialize)]
pub struct ObjectMask {
    pub width: usize,
    pub height: usize,
    /// `height * width` values, 1 inside the object.
    #[serde(skip)]
    pub mask: Vec<u8>,
    /// The decoder's predicted IoU of this mask (Segment Anything; Open-Vocabulary SAM predicts
    /// none).
    pub iou: Option<f32>,
    /// Pixels inside.
    pub area: usize,
    /// Open-Vocabulary SAM: the low-resolution mask, `side x side`, read back for naming.
    #[serde(skip)]
    low_res: Option<(Vec<f32>, usize)>,
}

impl PendingMask {
    /// The candidate with the highest predicted IoU, upsampled to the image row by row and
    /// thresholded at 0 (`post_process_masks`): only the one-byte mask is photo-sized.
    pub fn finish(
        &self,
        processor: &SamProcessor,
        logits: Vec<f32>,
        iou: Option<Vec<f32>>,
        low_res: Option<Vec<f32>>,
    ) -> ObjectMask {
        let best = iou.as_ref().map_or(0, |iou| (0..iou.len()).fold(0, |b, i| if iou[i] > iou[b] { i } else { b }));
        let plane = self.resized.0 * self.resized.1;
        let mut mask = vec![0u8; self.width * self.height];
        let original = (self.width, self.height);
        processor.upscale_rows(&logits[best * plane..(best + 1) * plane], self.resized, original, |y, row| {
            for (m, &v) in mask[y * self.width..(y + 1) * self.width].iter_mut().zip(row) {
                *m = u8::from(v > 0.0);
            }
        });
        let area = mask.iter().filter(|&&v| v == 1).count();
        let side = self.low_res.as_ref().map_or(0, |t| t.dims()[1]);
        ObjectMask {
            width: self.width,
            height: self.height,
            mask,
            iou: iou.map(|iou| iou[best]),
            area,
            low_res: low_res.map(|v| (v, side)),
        }
    }

    /// Read the mask back (native).
    #[cfg(not(target_family = "wasm"))]
    fn read(self, processor: &SamProcessor) -> Result<ObjectMask> {
        let logits = crate::device::to_vec(self.logits.clone())?;
        let iou = self.iou.clone().map(crate::device::to_vec).transpose()?;
        let low_res = self.low_res.clone().map(crate::device::to_vec).transpose()?;
        Ok(self.finish(processor, logits, iou, low_res))
    }

    async fn read_async(self, processor: &SamProcessor) -> Result<ObjectMask> {
        let logits = crate::device::to_vec_async(self.logits.clone()).await?;
        let iou = match self.iou.clone() {
            Some(t) => Some(crate::device::to_vec_async(t).await?),
            None => None,
        };
        let low_res = match self.low_res.clone() {
            Some(t) => Some(crate::device::to_vec_async(t).await?),
            None => None,
        };
        Ok(self.finish(processor, logits, iou, low_res))
    }
}

/// Which classes Open-Vocabulary SAM names a mask with.
#[derive(Debug, Clone, PartialEq)]
pub enum Vocabulary {
    /// The typed words, embedded with the checkpoint's text tower.
    Typed(Vec<Label>),
    /// The classifier the checkpoint carries (LVIS's 1,203 classes in the release).
    Released,
}

/// Class embeddings of one vocabulary, kept while it stays the same.
pub struct ClassEmbeddings {
    key: Vocabulary,
    names: Vec<String>,
    classes: Tensor<3>,
}

impl ClassEmbeddings {
    /// `[classes, prototypes, dim]`, on the device.
    pub fn tensor(&self) -> Tensor<3> {
        self.classes.clone()
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }
}

/// A mask's class logits on the device, to be read back and [`PendingName::finish`]ed.
pub struct PendingName {
    pub logits: Tensor<1>,
    names: Vec<String>,
}

impl PendingName {
    /// `softmax` over the classes and the zero-logit background, the background dropped: the
    /// best class and the runner-up.
    pub fn finish(&self, logits: &[f32]) -> Naming {
        let probs = crate::ovsam::class_probabilities(logits);
        let mut order: Vec<usize> = (0..probs.len()).collect();
        order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
        let candidate = |i: usize| Candidate { label: self.names[i].clone(), probability: probs[i] };
        Naming {
            best: candidate(order[0]),
            runner_up: order.get(1).map(|&i| candidate(i)),
            class_index: Some(order[0]),
        }
    }
}

impl PromptModel {
    /// A model already built (benchmarks).
    pub fn new(network: PromptNetwork, processor: SamProcessor) -> Self {
        PromptModel { network, processor, tokenizer: Tokenizer::new() }
    }

    /// Load a `SamModel` (`model_type` `sam`) or Open-Vocabulary SAM (`ovsam`) checkpoint.
    pub fn from_bytes(
        config_json: &str,
        weights: &[u8],
        weights_name: &str,
        preprocessor_json: Option<&str>,
        device: &Device,
    ) -> Result<Self> {
        model_type(config_json)?;
        Self::from_checkpoint(config_json, &Checkpoint::from_bytes(weights, weights_name)?, preprocessor_json, device)
    }

    /// [`PromptModel::from_bytes`] over an opened checkpoint (one whose bytes stay in the page).
    pub fn from_checkpoint(
        config_json: &str,
        checkpoint: &Checkpoint<'_>,
        preprocessor_json: Option<&str>,
        device: &Device,
    ) -> Result<Self> {
        let found = model_type(config_json)?;
        let (network, input_size) = match found.as_str() {
            "sam" => {
                let config = SamConfig::from_json(config_json)?;
                let sam = loader::load(checkpoint, device, "SamModel", |l| Ok(SamModel::load(config.clone(), l)))?;
                let size = sam.input_size();
                (PromptNetwork::Sam(Box::new(sam)), size)
            }
            "ovsam" => {
                let config = OvSamConfig::from_json(config_json)?;
                let model =
                    loader::load(checkpoint, device, "OvSamModel", |l| Ok(OvSamModel::load(config.clone(), l)))?;
                let size = model.input_size();
                (PromptNetwork::OvSam(Box::new(model)), size)
            }
            _ => {
                return Err(Error::Config(format!(
                    "model_type is '{found}'; pointing at objects needs a Segment Anything checkpoint (model_type 'sam', SamModel) or an Open-Vocabulary SAM one ('ovsam', from tools/convert_ovsam.py); CLIP checkpoints name the masks"
                )));
            }
        };
        let mut processor = match preprocessor_json {
            Some(text) => SamProcessor::from_json(text, input_size)?,
            None => SamProcessor::new(input_size),
        };
        // The demo resizes to `int(side * scale)`, not transformers' rounding.
        processor.floor_resize = matches!(network, PromptNetwork::OvSam(_));
        Ok(PromptModel::new(network, processor))
    }

    pub fn device(&self) -> Device {
        match &self.network {
            PromptNetwork::Sam(m) => m.device(),
            PromptNetwork::OvSam(m) => m.device(),
        }
    }

    pub fn input_size(&self) -> usize {
        match &self.network {
            PromptNetwork::Sam(m) => m.input_size(),
            PromptNetwork::OvSam(m) => m.input_size(),
        }
    }

    /// Open-Vocabulary SAM names its own masks.
    pub fn names_masks(&self) -> bool {
        matches!(self.network, PromptNetwork::OvSam(_))
    }

    /// The class names of the checkpoint's own classifier, when it carries one.
    pub fn released_vocabulary(&self) -> Option<&[String]> {
        match &self.network {
            PromptNetwork::OvSam(m) => m.config.vocabulary.as_deref(),
            PromptNetwork::Sam(_) => None,
        }
    }

    /// The heavy pass, once per image.
    pub fn encode(&self, image: &RgbImage) -> Result<EncodedImage> {
        let (pixels, resized) = self.processor.pixels(image, &self.device());
        let features = match &self.network {
            PromptNetwork::Sam(m) => Features::Sam(m.image_embeddings(pixels)?),
            PromptNetwork::OvSam(m) => Features::OvSam(m.encode(pixels)?),
        };
        Ok(EncodedImage { features, original: (image.width, image.height), resized })
    }

    /// The light pass: the masks of one prompt at the image's size, to be read back and
    /// [`PendingMask::finish`]ed.
    pub fn decode(&self, encoded: &EncodedImage, prompt: &Prompt) -> Result<PendingMask> {
        let (w, h) = encoded.original;
        prompt.validate(w, h)?;
        let to_input = |x: f64, y: f64| self.processor.to_input(x, y, encoded.original);
        let points: Vec<Point> = prompt
            .points
            .iter()
            .map(|c| {
                let (x, y) = to_input(c.x, c.y);
                Point { x, y, positive: c.positive }
            })
            .collect();
        let bbox = prompt.bbox.map(|[x0, y0, x1, y1]| {
            let ((a, b), (c, d)) = (to_input(x0, y0), to_input(x1, y1));
            [a, b, c, d]
        });
        let (masks, iou, low_res) = match (&self.network, &encoded.features) {
            (PromptNetwork::Sam(sam), Features::Sam(embeddings)) => {
                let sparse = sam.sparse_embeddings(&points, bbox)?;
                let dense = sam.dense_embeddings(None)?;
                let out = sam.decode(embeddings.clone(), sparse, dense, prompt.multimask());
                (out.masks, out.iou, None)
            }
            (PromptNetwork::OvSam(model), Features::OvSam(features)) => {
                let masks = model.decode(features, model.sparse_embeddings(&points, bbox)?)?;
                (masks.clone(), None, Some(masks))
            }
            _ => return Err(Error::invalid("the image was encoded by another model: encode it again")),
        };
        let logits = self.processor.cropped(masks, encoded.resized);
        Ok(PendingMask { logits, iou, low_res, width: w, height: h, resized: encoded.resized })
    }

    /// Encode-free prompt, read back (native).
    #[cfg(not(target_family = "wasm"))]
    pub fn segment(&self, encoded: &EncodedImage, prompt: &Prompt) -> Result<ObjectMask> {
        self.decode(encoded, prompt)?.read(&self.processor)
    }

    /// [`PromptModel::segment`], reading back without blocking (the browser).
    pub async fn segment_async(&self, encoded: &EncodedImage, prompt: &Prompt) -> Result<ObjectMask> {
        self.decode(encoded, prompt)?.read_async(&self.processor).await
    }

    /// The class embeddings of `vocabulary`, from `cache` when it holds them, else embedded and
    /// kept there (Open-Vocabulary SAM).
    pub fn prepare_classes<'c>(
        &self,
        vocabulary: &Vocabulary,
        cache: &'c mut Option<ClassEmbeddings>,
    ) -> Result<&'c ClassEmbeddings> {
        let classes = match cache.take().filter(|c| &c.key == vocabulary) {
            Some(kept) => kept,
            None => self.embed_classes(vocabulary)?,
        };
        Ok(cache.insert(classes))
    }

    fn embed_classes(&self, vocabulary: &Vocabulary) -> Result<ClassEmbeddings> {
        let PromptNetwork::OvSam(model) = &self.network else {
            return Err(Error::invalid(
                "this Segment Anything checkpoint does not name masks; give a CLIP checkpoint for the words",
            ));
        };
        let (names, classes) = match vocabulary {
            Vocabulary::Typed(labels) => {
                let synonyms: Vec<Vec<String>> = labels.iter().map(|l| l.synonyms.clone()).collect();
                (labels.iter().map(|l| l.name.clone()).collect(), model.class_embeddings(&self.tokenizer, &synonyms)?)
            }
            Vocabulary::Released => match (&model.classifier, &model.config.vocabulary) {
                (Some(classes), Some(names)) => (names.iter().map(|n| n.replace('_', " ")).collect(), classes.clone()),
                _ => {
                    return Err(Error::invalid(
                        "this checkpoint carries no classifier: convert it with --classifier, or name masks with typed words",
                    ));
                }
            },
        };
        Ok(ClassEmbeddings { key: vocabulary.clone(), names, classes })
    }

    /// The class logits of a read-back mask against `classes` (Open-Vocabulary SAM): its box
    /// on the low-resolution grid picks the FPN level and the RoI.
    pub fn name(&self, encoded: &EncodedImage, mask: &ObjectMask, classes: &ClassEmbeddings) -> Result<PendingName> {
        let (PromptNetwork::OvSam(model), Features::OvSam(features)) = (&self.network, &encoded.features) else {
            return Err(Error::invalid("only Open-Vocabulary SAM names its masks"));
        };
        let (low_res, side) =
            mask.low_res.as_ref().ok_or_else(|| Error::invalid("the mask has no low-resolution logits"))?;
        let (b, level) = model.mask_box(low_res, *side);
        let roi = model.roi_features(features, b, level);
        Ok(PendingName { logits: model.logits(roi, classes.classes.clone()), names: classes.names.clone() })
    }

    /// [`PromptModel::name`], read back (native).
    #[cfg(not(target_family = "wasm"))]
    pub fn name_now(&self, encoded: &EncodedImage, mask: &ObjectMask, classes: &ClassEmbeddings) -> Result<Naming> {
        let pending = self.name(encoded, mask, classes)?;
        Ok(pending.finish(&crate::device::to_vec(pending.logits.clone())?))
    }

    /// [`PromptModel::name`], read back without blocking (the browser).
    pub async fn name_async(
        &self,
        encoded: &EncodedImage,
        mask: &ObjectMask,
        classes: &ClassEmbeddings,
    ) -> Result<Naming> {
        let pending = self.name(encoded, mask, classes)?;
        Ok(pending.finish(&crate::device::to_vec_async(pending.logits.clone()).await?))
    }
}

/// A word and its probability.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    pub label: String,
    pub probability: f32,
}

/// A mask's name among the typed words, and the next best word.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Naming {
    #[serde(flatten)]
    pub best: Candidate,
    pub runner_up: Option<Candidate>,
    /// Open-Vocabulary SAM: the best class's index in the vocabulary it was named from (the
    /// typed words, or the checkpoint's classifier, 1,203 LVIS classes in the release), for
    /// label maps past 255 classes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class_index: Option<usize>,
}

/// The dense engine's cosine maps of one image for one label set, kept while both stay the
/// same, so that each click only pools.
#[derive(Default)]
pub struct MaskNamer {
    key: Option<(u64, Vec<Vec<String>>, String)>,
    /// `[names, rh, rw]`, host.
    maps: Vec<f32>,
    dims: (usize, usize, usize),
    class_of_name: Vec<usize>,
    labels: Vec<String>,
    logit_scale: f32,
}

/// What [`MaskNamer`] needs computed for a new (image, labels, settings).
pub struct PendingMaps {
    key: (u64, Vec<Vec<String>>, String),
    maps: Tensor<4>,
    class_of_name: Vec<usize>,
    labels: Vec<String>,
    logit_scale: f32,
}

impl MaskNamer {
    /// The maps to compute for `image` (identified by `image_id`) and `labels`, or `None` when
    /// they are cached. `model` must be a CLIP checkpoint (the dense engine).
    pub fn prepare(
        &self,
        model: &Model,
        image_id: u64,
        image: &RgbImage,
        labels: &[Label],
        settings: &Settings,
        cache: &mut EmbeddingCache,
    ) -> Result<Option<PendingMaps>> {
        let key = (
            image_id,
            labels.iter().map(|l| l.synonyms.clone()).collect(),
            serde_json::to_string(&model.plan(settings)?).unwrap_or_default(),
        );
        if self.key.as_ref() == Some(&key) {
            return Ok(None);
        }
        let clip = model.network().downcast::<ClipModel>().ok_or_else(|| {
            Error::invalid(format!(
                "naming masks needs a CLIP checkpoint (the dense engine); this one runs the {} engine",
                model.engine()
            ))
        })?;
        // The words compete among themselves: the object was pointed at, so no background class.
        let settings = Settings { background: Some(Words(Vec::new())), threshold: None, ..settings.clone() };
        settings.refuse_other_engines(Dense::NAME)?;
        let options = Dense::options(&settings)?;
        let classes = cache.get(model, labels, &[], options.templates.prompts())?;
        let (maps, _) = dense::cosine_maps(clip, &model.preprocessor, image, &classes.names, &options)?;
        Ok(Some(PendingMaps {
            key,
            maps,
            class_of_name: classes.class_of_name,
            labels: labels.iter().map(|l| l.name.clone()).collect(),
            logit_scale: options.logit_scale,
        }))
    }

    /// Keep computed maps (read back as `host`).
    pub fn store(&mut self, pending: PendingMaps, host: Vec<f32>) {
        let [_, k, rh, rw] = pending.maps.dims();
        *self = MaskNamer {
            key: Some(pending.key),
            maps: host,
            dims: (k, rh, rw),
            class_of_name: pending.class_of_name,
            labels: pending.labels,
            logit_scale: pending.logit_scale,
        };
    }

    /// The best word for `mask` and the runner-up: each name's cosine averaged over the mask
    /// (its footprint on the resized grid, area-weighted), scaled, softmaxed, synonyms merged by
    /// their maximum and renormalised.
    pub fn name(&self, mask: &ObjectMask) -> Result<Naming> {
        let (k, rh, rw) = self.dims;
        if self.key.is_none() || k == 0 {
            return Err(Error::invalid("no words to name the mask with"));
        }
        let weights = footprint(mask, rw, rh);
        let total: f32 = weights.iter().sum();
        if total <= 0.0 {
            return Err(Error::invalid("the mask is empty: nothing to name"));
        }
        let logits: Vec<f32> = (0..k)
            .map(|c| {
                let map = &self.maps[c * rh * rw..(c + 1) * rh * rw];
                map.iter().zip(&weights).map(|(v, w)| v * w).sum::<f32>() / total * self.logit_scale
            })
            .collect();
        let top = logits.iter().copied().fold(f32::MIN, f32::max);
        let exp: Vec<f32> = logits.iter().map(|l| (l - top).exp()).collect();
        let sum: f32 = exp.iter().sum();
        let mut per_class = vec![0f32; self.labels.len()];
        for (name, &class) in self.class_of_name.iter().enumerate() {
            per_class[class] = per_class[class].max(exp[name] / sum);
        }
        let norm: f32 = per_class.iter().sum();
        let mut order: Vec<usize> = (0..per_class.len()).collect();
        order.sort_by(|&a, &b| per_class[b].total_cmp(&per_class[a]));
        let candidate = |i: usize| Candidate { label: self.labels[i].clone(), probability: per_class[i] / norm };
        Ok(Naming { best: candidate(order[0]), runner_up: order.get(1).map(|&i| candidate(i)), class_index: None })
    }

    /// Name `mask` on `image`, computing the maps when needed (native).
    #[cfg(not(target_family = "wasm"))]
    #[allow(clippy::too_many_arguments)]
    pub fn name_mask(
        &mut self,
        model: &Model,
        image_id: u64,
        image: &RgbImage,
        labels: &[Label],
        settings: &Settings,
        cache: &mut EmbeddingCache,
        mask: &ObjectMask,
    ) -> Result<Naming> {
        if let Some(pending) = self.prepare(model, image_id, image, labels, settings, cache)? {
            let host = crate::device::to_vec(pending.maps.clone())?;
            self.store(pending, host);
        }
        self.name(mask)
    }

    /// [`MaskNamer::name_mask`], reading back without blocking (the browser).
    #[allow(clippy::too_many_arguments)]
    pub async fn name_mask_async(
        &mut self,
        model: &Model,
        image_id: u64,
        image: &RgbImage,
        labels: &[Label],
        settings: &Settings,
        cache: &mut EmbeddingCache,
        mask: &ObjectMask,
    ) -> Result<Naming> {
        if let Some(pending) = self.prepare(model, image_id, image, labels, settings, cache)? {
            let host = crate::device::to_vec_async(pending.maps.clone()).await?;
            self.store(pending, host);
        }
        self.name(mask)
    }
}

/// The share of each cell of a `w x h` grid that `mask` covers (the grid laid over the whole
/// image).
fn footprint(mask: &ObjectMask, w: usize, h: usize) -> Vec<f32> {
    let (mw, mh) = (mask.width, mask.height);
    let mut sums = vec![0f32; w * h];
    let mut counts = vec![0f32; w * h];
    for y in 0..mh {
        let gy = (y * h / mh).min(h - 1);
        for x in 0..mw {
            let gx = (x * w / mw).min(w - 1);
            counts[gy * w + gx] += 1.0;
            sums[gy * w + gx] += f32::from(mask.mask[y * mw + x]);
        }
    }
    sums.iter().zip(&counts).map(|(s, c)| if *c > 0.0 { s / c } else { 0.0 }).collect()
}
