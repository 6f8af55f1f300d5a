//! Dense segmentation of one image (../shared/METHODS.md §1): resize the short side, slide
//! windows as mmsegmentation does, per-window patch scores (cosine of patch and class
//! embeddings), bilinear upsampling to the window, stitching by averaging the overlaps, resize
//! to the input size, softmax over names with the logit scale, max over each class's synonyms
//! (renormalised, so every pixel's class probabilities sum to 1).
//! Follows the SCLIP/NACLIP `forward_slide` + `postprocess_result` order.

use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Tensor, TensorData};

use super::last_block;
use super::templates;
use super::windows::{Window, slide as slide_windows};
use crate::clip::ClipModel;
use crate::clip::layers::l2_normalize;
use crate::error::{Error, Result};
use crate::labels::Label;
use crate::model::Model;
use crate::preprocess::{Preprocessor, RgbImage};

/// NACLIP's and SCLIP's default temperature for the cosine scores (`logit_scale=40`).
pub const DEFAULT_LOGIT_SCALE: f32 = 40.0;
/// Longest side an image may have after the short-side resize (bounds time and memory for
/// panoramas and strips).
pub const MAX_RESIZED_SIDE: usize = 8192;
/// Windows run through the vision tower together, at most this many at once.
const WINDOW_BATCH: usize = 8;
/// Prompts embedded per text-encoder call.
const TEXT_BATCH: usize = 256;

/// How to segment.
#[derive(Debug, Clone)]
pub struct DenseOptions {
    pub method: super::Method,
    /// Prompt templates (`{}` is the class name).
    pub templates: &'static [&'static str],
    /// The image's short side is resized to this before windowing.
    pub short_side: usize,
    /// `(window, stride)` in pixels; `None` runs the whole resized image in one pass.
    pub slide: Option<(usize, usize)>,
    pub logit_scale: f32,
    /// NACLIP's Gaussian width in patches.
    pub naclip_sigma: f64,
    /// PAMR refinement of the scores at the output size (`None`: off).
    pub pamr: Option<Pamr>,
}

/// PAMR settings ([`super::pamr`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Pamr {
    pub iterations: usize,
    pub dilations: Vec<usize>,
}

impl Default for Pamr {
    fn default() -> Self {
        Pamr { iterations: super::pamr::ITERATIONS, dilations: super::pamr::DILATIONS.to_vec() }
    }
}

impl Default for DenseOptions {
    fn default() -> Self {
        DenseOptions {
            method: super::Method::Naclip,
            templates: &templates::IMAGENET_80,
            short_side: 336,
            slide: Some((224, 112)),
            logit_scale: DEFAULT_LOGIT_SCALE,
            naclip_sigma: super::NACLIP_SIGMA,
            pamr: None,
        }
    }
}

/// Bounds on the short-side resize and the sliding windows, shared by both engines.
pub(crate) fn validate_resize(short_side: usize, slide: Option<(usize, usize)>) -> Result<()> {
    if short_side < 16 || short_side > 4096 {
        return Err(Error::invalid(format!("short side must be in [16, 4096] pixels, got {short_side}")));
    }
    if let Some((window, stride)) = slide {
        if window < 16 || stride == 0 || stride > window {
            return Err(Error::invalid(format!(
                "window must be at least 16 pixels and stride in [1, window]; got window {window}, stride {stride}"
            )));
        }
    }
    Ok(())
}

impl DenseOptions {
    pub fn validate(&self) -> Result<()> {
        validate_resize(self.short_side, self.slide)?;
        if let Some(p) = &self.pamr {
            if p.iterations == 0
                || p.iterations > 100
                || p.dilations.is_empty()
                || p.dilations.iter().any(|&d| d == 0 || d > 64)
            {
                return Err(Error::invalid(format!(
                    "PAMR needs 1 to 100 iterations and dilations in [1, 64]; got {} iterations, dilations {:?}",
                    p.iterations, p.dilations
                )));
            }
        }
        if !(self.logit_scale.is_finite() && self.logit_scale > 0.0) {
            return Err(Error::invalid(format!("logit scale must be positive, got {}", self.logit_scale)));
        }
        Ok(())
    }
}

/// Text side of a label set: one embedding per name (synonym), and the class of each name.
#[derive(Debug, Clone)]
pub struct ClassEmbeddings {
    /// `[names, proj]`, each the renormalised mean of its L2-normalised template embeddings.
    pub names: Tensor<2>,
    /// Class index of each name row; names of one class are contiguous.
    pub class_of_name: Vec<usize>,
    pub num_classes: usize,
}

impl ClassEmbeddings {
    /// Embed every synonym of every label with every template.
    pub fn new(model: &Model, labels: &[Label], templates: &[&str]) -> Result<Self> {
        if templates.is_empty() {
            return Err(Error::invalid("no prompt templates"));
        }
        // Every (name, template) prompt, batched across names: one short prompt per call would
        // leave the text encoder mostly idle.
        let names: Vec<(usize, &String)> =
            labels.iter().enumerate().flat_map(|(c, l)| l.synonyms.iter().map(move |n| (c, n))).collect();
        if names.is_empty() {
            return Err(Error::invalid("no labels to embed"));
        }
        let prompts: Vec<String> =
            names.iter().flat_map(|(_, name)| templates.iter().map(move |t| t.replace("{}", name))).collect();
        let mut parts = Vec::new();
        for chunk in prompts.chunks(TEXT_BATCH) {
            let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
            parts.push(model.embed_texts(&refs)?);
        }
        let all = Tensor::cat(parts, 0);
        let (n, t, d) = (names.len(), templates.len(), all.dims()[1]);
        let rows = vec![l2_normalize(all.reshape([n, t, d]).sum_dim(1).reshape([n, d]))];
        let class_of_name = names.iter().map(|(c, _)| *c).collect();
        Ok(ClassEmbeddings { names: Tensor::cat(rows, 0), class_of_name, num_classes: labels.len() })
    }
}

pub(crate) fn bilinear(x: Tensor<4>, h: usize, w: usize) -> Tensor<4> {
    let [_, _, xh, xw] = x.dims();
    if (xh, xw) == (h, w) {
        return x;
    }
    interpolate(
        x,
        InterpolateOptions::new(InterpolateMode::Bilinear).with_align_corners(false).with_output_size([h, w]),
    )
}

/// Cosine scores of each window's patches with each name, upsampled to the window.
/// `[n, 3, wh, ww] -> [n, names, wh, ww]`
fn window_scores(clip: &ClipModel, crops: Tensor<4>, names: &Tensor<2>, opts: &DenseOptions) -> Result<Tensor<4>> {
    let [n, _, wh, ww] = crops.dims();
    let (x, (gh, gw)) = clip.vision_model.hidden_before_last(crops)?;
    let last = clip.vision_model.layers.last().expect("config guarantees one layer");
    let tokens =
        clip.vision_model.post_layernorm.forward(last_block(opts.method, last, x, (gh, gw), opts.naclip_sigma));
    let d = tokens.dims()[2];
    let patches = l2_normalize(clip.visual_projection.forward(tokens.slice([0..n, 1..1 + gh * gw, 0..d])));
    let k = names.dims()[0];
    let scores = patches.matmul(names.clone().transpose().unsqueeze::<3>()); // [n, gh*gw, names]
    let grid = scores.reshape([n, gh, gw, k]).permute([0, 3, 1, 2]);
    Ok(bilinear(grid, wh, ww))
}

/// The image resized to `short_side` (bicubic, as the checkpoint's preprocessing) and
/// normalised, as `[1, 3, h, w]` on the model's device.
pub(crate) fn resized_pixels(
    preprocessor: &Preprocessor,
    image: &RgbImage,
    short_side: usize,
    device: &burn::tensor::Device,
) -> Result<Tensor<4>> {
    let (rw, rh) = crate::preprocess::short_side_size(image.width, image.height, short_side);
    if rw.max(rh) > MAX_RESIZED_SIDE {
        return Err(Error::invalid(format!(
            "a {}x{} image resized to a short side of {short_side} would be {rw}x{rh}; its aspect ratio is too extreme (the long side may reach {MAX_RESIZED_SIDE} pixels)",
            image.width, image.height
        )));
    }
    let preprocessor = Preprocessor { short_side, crop: None, ..preprocessor.clone() };
    let (chw, (w, h)) = preprocessor.apply(image);
    Ok(Tensor::<4>::from_data(TensorData::new(chw, [1, 3, h, w]), device))
}

/// mmsegmentation's slide inference: `score` maps a batch of equal-sized windows
/// `[n, 3, wh, ww]` to `[n, rows, wh, ww]`; overlaps are averaged. `slide = None` runs the
/// whole image once. `-> [1, rows, h, w]`
pub(crate) fn slide_and_stitch(
    pixels: &Tensor<4>,
    slide: Option<(usize, usize)>,
    rows: usize,
    mut score: impl FnMut(Tensor<4>) -> Result<Tensor<4>>,
) -> Result<Tensor<4>> {
    let [_, _, h, w] = pixels.dims();
    let device = pixels.device();
    let windows = match slide {
        Some((window, stride)) => slide_windows(h, w, (window, window), (stride, stride)),
        None => vec![Window { y1: 0, y2: h, x1: 0, x2: w }],
    };
    let mut canvas = Tensor::<4>::zeros([1, rows, h, w], &device);
    let mut count = vec![0f32; h * w];
    // All windows have one size (mmsegmentation shifts the last ones inside), so they batch.
    for group in windows.chunks(WINDOW_BATCH) {
        let crops: Vec<Tensor<4>> =
            group.iter().map(|win| pixels.clone().slice([0..1, 0..3, win.y1..win.y2, win.x1..win.x2])).collect();
        let scores = score(Tensor::cat(crops, 0))?;
        let [_, _, wh, ww] = scores.dims();
        for (i, win) in group.iter().enumerate() {
            let ranges = [0..1, 0..rows, win.y1..win.y2, win.x1..win.x2];
            let crop = scores.clone().slice([i..i + 1, 0..rows, 0..wh, 0..ww]);
            canvas = canvas.clone().slice_assign(ranges.clone(), canvas.slice(ranges).add(crop));
            for y in win.y1..win.y2 {
                count[y * w + win.x1..y * w + win.x2].iter_mut().for_each(|c| *c += 1.0);
            }
        }
    }
    let count = Tensor::<4>::from_data(TensorData::new(count, [1, 1, h, w]), &device);
    Ok(canvas.div(count))
}

/// Per-class probabilities `[classes, H, W]` at the input image's resolution.
pub fn segment(model: &Model, image: &RgbImage, classes: &ClassEmbeddings, opts: &DenseOptions) -> Result<Tensor<3>> {
    opts.validate()?;
    let clip = model.clip()?;
    let pixels = resized_pixels(&model.preprocessor, image, opts.short_side, &clip.device())?;
    let k = classes.names.dims()[0];
    let averaged = slide_and_stitch(&pixels, opts.slide, k, |crops| window_scores(clip, crops, &classes.names, opts))?;
    let mut logits = bilinear(averaged, image.height, image.width);
    if let Some(pamr) = &opts.pamr {
        // Guided by the normalised image at the output size, as NACLIP does.
        let guide = bilinear(pixels, image.height, image.width);
        logits = super::pamr::refine(guide, logits, pamr.iterations, &pamr.dilations);
    }
    let logits = logits.mul_scalar(opts.logit_scale);
    let probs = burn::tensor::activation::softmax(logits, 1);
    Ok(merge_synonyms(probs, &classes.class_of_name, classes.num_classes, true).squeeze_dim(0))
}

/// Max over each class's names (SCLIP's merge); with `renormalise`, divided so the classes'
/// probabilities sum to 1 again. Extra rows after the names are kept as they are.
/// `[1, names (+extra), H, W] -> [1, classes (+extra), H, W]`
pub(crate) fn merge_synonyms(
    probs: Tensor<4>,
    class_of_name: &[usize],
    classes: usize,
    renormalise: bool,
) -> Tensor<4> {
    if class_of_name.len() == classes {
        return probs;
    }
    let [_, _, h, w] = probs.dims();
    let per_class = (0..classes)
        .map(|c| {
            let first = class_of_name.iter().position(|&x| x == c).expect("every class has a name");
            let last = class_of_name.iter().rposition(|&x| x == c).expect("every class has a name");
            probs.clone().slice([0..1, first..last + 1, 0..h, 0..w]).max_dim(1)
        })
        .collect();
    let merged = Tensor::cat(per_class, 1);
    let merged = if renormalise { merged.clone().div(merged.sum_dim(1)) } else { merged };
    let (names, rows) = (class_of_name.len(), probs.dims()[1]);
    if rows == names {
        return merged;
    }
    Tensor::cat(vec![merged, probs.slice([0..1, names..rows, 0..h, 0..w])], 1)
}

/// Label map from probabilities `[classes, H, W]` (host, row-major): `1 + argmax`, or 0 where
/// the top probability is under `threshold` or the top class is one of `background`.
pub fn label_map(probs: &[f32], classes: usize, threshold: f32, background: &[usize]) -> Vec<u8> {
    let n = probs.len() / classes.max(1);
    (0..n)
        .map(|i| {
            let (best, p) =
                (0..classes).map(|c| (c, probs[c * n + i])).fold((0, f32::MIN), |a, b| if b.1 > a.1 { b } else { a });
            if p < threshold || background.contains(&best) { 0 } else { (best + 1) as u8 }
        })
        .collect()
}

/// Text embeddings computed once per (label set, templates) and reused while the labels stay
/// the same: the light pass of interactive use. Belongs to one model.
#[derive(Default)]
pub struct EmbeddingCache {
    entries: Vec<(CacheKey, ClassEmbeddings)>,
    /// How many times the text encoder actually ran (tests and diagnostics).
    pub computed: usize,
}

type CacheKey = (Vec<Vec<String>>, Vec<String>);

impl EmbeddingCache {
    /// Label sets remembered at once.
    const CAPACITY: usize = 8;

    pub fn get(&mut self, model: &Model, labels: &[Label], templates: &[&str]) -> Result<ClassEmbeddings> {
        let key: CacheKey =
            (labels.iter().map(|l| l.synonyms.clone()).collect(), templates.iter().map(|t| t.to_string()).collect());
        if let Some(at) = self.entries.iter().position(|(k, _)| *k == key) {
            let entry = self.entries.remove(at);
            let value = entry.1.clone();
            self.entries.push(entry);
            return Ok(value);
        }
        let value = ClassEmbeddings::new(model, labels, templates)?;
        self.computed += 1;
        if self.entries.len() == Self::CAPACITY {
            self.entries.remove(0);
        }
        self.entries.push((key, value.clone()));
        Ok(value)
    }
}
