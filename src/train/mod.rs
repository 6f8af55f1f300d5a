//! Training a Fusioner head natively (burn's autodiff, on the CPU or the GPU backend): the
//! repository's `train.py` with its optimiser and schedule ([`optim`]), fed from a dataset the
//! caller reads ([`Samples`]) through augmented views whose frozen CLIP features are computed
//! once and cached on disk ([`cache`]), so every epoch after that skips the backbone.
//!
//! A task is one (image, class) pair, the class present in the image's label map, as the
//! repository's episodes are; its target is that class's pixels, its loss the binary
//! cross-entropy over the pixels that are not ignored (255). A step averages the loss over a
//! batch of tasks.

pub mod cache;
mod journal;
pub mod optim;

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

pub use cache::{CacheKey, FeatureCache, View};
pub use optim::{Hyper, Optimizer, Weights, cosine_schedule, task_losses};

use crate::checkpoint::{Checkpoint, write_safetensors_as};
use crate::error::{Error, Result};
use crate::fusioner::{Backbone, CLIP_TEXT, CLIP_VISION, FusionHead, FusionerConfig, FusionerModel, TextKind};
use crate::network::Network;
pub use crate::nn::Rng;
use crate::preprocess::RgbImage;
use crate::segment::text::{FUSIONER_32, name_embeddings};
use crate::tokenizer::Tokenizer;

/// Label value of pixels that no loss sees.
pub const IGNORE: u8 = 255;

/// A dataset as the trainer sees it: images with 8-bit label maps (value = class index,
/// [`IGNORE`] = not scored). The CLI reads the folder layouts.
pub trait Samples {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// A short name for messages (the file stem).
    fn name(&self, i: usize) -> String;
    /// What identifies sample `i`'s content for the feature cache (its files' sizes and
    /// modification times); the name by default.
    fn fingerprint(&self, i: usize) -> String {
        self.name(i)
    }
    /// The image and its label map, of the same size.
    fn load(&self, i: usize) -> Result<(RgbImage, Vec<u8>)>;
}

/// One task: a cached view and a class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub sample: usize,
    pub class: u8,
}

/// The tasks of a dataset: every class of `trained` present in each sample's full label map.
pub fn tasks(presence: &[Vec<u8>], trained: &[u8]) -> Vec<Task> {
    presence
        .iter()
        .enumerate()
        .flat_map(|(sample, present)| {
            present.iter().filter(|c| trained.contains(c)).map(move |&class| Task { sample, class })
        })
        .collect()
}

/// A batch ready for the head: tokens, class embeddings, targets and valid pixels.
pub struct Batch {
    /// `[b, gh*gw, proj]`
    pub visual: Tensor<3>,
    pub grid: (usize, usize),
    /// `[b, 1, proj]`
    pub text: Tensor<3>,
    /// `[b, 1, crop, crop]`
    pub target: Tensor<4>,
    pub valid: Tensor<4>,
}

impl Batch {
    /// From host views (tokens and label crops) and the class of each, against class embeddings
    /// `[classes, proj]` (row = class value).
    pub fn new(views: &[(View, u8)], classes: &Tensor<2>, grid: (usize, usize), crop: usize, device: &Device) -> Self {
        let b = views.len();
        let p = classes.dims()[1];
        let n = grid.0 * grid.1;
        // The image tokens' width (CLIP's projection, or a ViT's hidden size).
        let v = views.first().map_or(0, |(view, _)| view.tokens.len() / n.max(1));
        let tokens: Vec<f32> = views.iter().flat_map(|(v, _)| v.tokens.iter().copied()).collect();
        let mut target = Vec::with_capacity(b * crop * crop);
        let mut valid = Vec::with_capacity(b * crop * crop);
        for (view, class) in views {
            target.extend(view.label.iter().map(|&l| f32::from(l == *class)));
            valid.extend(view.label.iter().map(|&l| f32::from(l != IGNORE)));
        }
        let rows: Vec<i64> = views.iter().map(|(_, c)| i64::from(*c)).collect();
        let index = Tensor::<1, burn::tensor::Int>::from_data(TensorData::new(rows, [b]), device);
        Batch {
            visual: Tensor::from_data(TensorData::new(tokens, [b, n, v]), device),
            grid,
            text: classes.clone().select(0, index).reshape([b, 1, p]),
            target: Tensor::from_data(TensorData::new(target, [b, 1, crop, crop]), device),
            valid: Tensor::from_data(TensorData::new(valid, [b, 1, crop, crop]), device),
        }
    }
}

/// One optimiser step over `micro` batches that together hold `tasks` tasks (gradients are
/// accumulated, as the repository's per-task backward passes are). Returns the mean task loss.
pub fn train_step(
    head: &mut FusionHead,
    optimizer: &mut Optimizer,
    micro: &[Batch],
    tasks: usize,
    crop: usize,
) -> Result<f32> {
    let mut sums = BTreeMap::new();
    let mut total = 0.0f32;
    head.visit(&mut optim::Track);
    for batch in micro {
        let out = head.forward(batch.visual.clone(), batch.grid, batch.text.clone(), crop);
        let loss = task_losses(out.logits, batch.target.clone(), batch.valid.clone()).div_scalar(tasks as f32);
        let grads = loss.backward();
        total += host(loss.without_autodiff())?[0];
        head.visit(&mut optim::Collect { grads: &grads, sums: &mut sums });
    }
    head.visit(&mut optim::Untrack);
    if !total.is_finite() {
        return Err(Error::invalid(format!(
            "the loss became {total} at step {}: lower the learning rate",
            optimizer.step + 1
        )));
    }
    optimizer.apply(head, &sums)?;
    Ok(total)
}

/// What training reports as it goes.
pub enum Event<'a> {
    /// Frozen features of `done` of `total` views computed (or found in the cache).
    Caching {
        done: usize,
        total: usize,
        cached: bool,
    },
    Step {
        epoch: usize,
        epochs: usize,
        step: usize,
        steps: usize,
        loss: f32,
        lr: f64,
    },
    Epoch {
        epoch: usize,
        loss: f32,
        checkpoint: &'a Path,
    },
}

/// How `wordmask train fusioner` runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainOptions {
    pub hyper: Hyper,
    /// Tasks per optimiser step (the repository's `--batch_size`).
    pub batch_size: usize,
    /// Tasks per forward pass (gradients are accumulated over a step's micro-batches).
    pub micro_batch: usize,
    /// Augmented views cached per image (random resized crop and flip); 0 = one plain view
    /// (the image resized to the crop, no augmentation).
    pub views: usize,
    pub seed: u64,
    /// Class values that make tasks.
    pub trained: Vec<u8>,
    /// Class names by value (for the text embeddings; background and ignored values included).
    pub class_names: Vec<String>,
}

/// Training state written next to each checkpoint, for `--resume`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainState {
    pub epochs_done: usize,
    pub steps_per_epoch: usize,
    pub options: TrainOptions,
    /// The frozen encoders' weights files (and their sizes and times).
    pub backbone: String,
    /// Mean task loss of each epoch.
    pub losses: Vec<f32>,
    /// The checkpoint files of the last epoch, each with its length and hash: what this state
    /// commits (see `journal`).
    #[serde(default)]
    pub files: BTreeMap<String, journal::Stamp>,
}

/// Where the frozen encoders' weights of a trained checkpoint come from: a checkpoint's
/// tensors, `strip` taken off the front of their names (where they have it) and `prefix` put
/// on, except those under the `skip` prefixes (a head's own `fusion.*` and `decoder.*` are
/// never copied).
pub struct WeightSource<'a> {
    pub checkpoint: &'a Checkpoint<'a>,
    pub prefix: &'a str,
    pub strip: &'a str,
    pub skip: &'a [&'a str],
}

/// What a BERT checkpoint holds that the text encoder does not read: the hub's pre-training
/// heads.
const BERT_UNREAD: [&str; 2] = ["cls.", "bert.cls."];

impl<'a> WeightSource<'a> {
    /// A backbone's weights as a trained checkpoint holds them: a vision-only image encoder's
    /// under `vision.` (its pooler left out), a BERT's under `text.` (without the hub's `bert.`
    /// and its pre-training heads), a CLIP's as they are (only the side in use when the other
    /// comes from elsewhere).
    pub fn of(backbone: &'a Backbone<'a>) -> Result<Vec<WeightSource<'a>>> {
        let (kind, text) = backbone.kinds()?;
        let image = backbone.image.checkpoint;
        let mut sources = vec![match (kind.as_str(), text) {
            ("vit", _) => WeightSource { checkpoint: image, prefix: "vision.", strip: "", skip: &["pooler."] },
            (_, TextKind::Own) => WeightSource { checkpoint: image, prefix: "", strip: "", skip: &[] },
            _ => WeightSource { checkpoint: image, prefix: "", strip: "", skip: &CLIP_TEXT },
        }];
        if let Some(named) = &backbone.text {
            sources.push(match text {
                TextKind::Bert => {
                    WeightSource { checkpoint: named.checkpoint, prefix: "text.", strip: "bert.", skip: &BERT_UNREAD }
                }
                _ => WeightSource { checkpoint: named.checkpoint, prefix: "", strip: "", skip: &CLIP_VISION },
            });
        }
        Ok(sources)
    }
}

/// A checkpoint the CLI, page and `<word-mask>` load: the weights (the frozen encoders' copied
/// from `sources`, then the head) as safetensors, and `config.json`.
pub fn checkpoint_bytes(
    config: &FusionerConfig,
    sources: &[WeightSource],
    head: &mut FusionHead,
) -> Result<(Vec<u8>, String)> {
    let mut tensors = Vec::new();
    for source in sources {
        let backbone = source.checkpoint;
        for name in backbone.names() {
            let skipped = source.skip.iter().any(|p| name.starts_with(p));
            // Buffers, not weights: position ids, and BERT's token type ids.
            let buffer = name.ends_with(".position_ids") || name.ends_with(".token_type_ids");
            if skipped || buffer || name.starts_with("fusion.") || name.starts_with("decoder.") {
                continue;
            }
            let shape = backbone.get(name).map(|e| e.shape.clone()).unwrap_or_default();
            let short = name.strip_prefix(source.strip).filter(|_| !source.strip.is_empty()).unwrap_or(name);
            tensors.push((format!("{}{short}", source.prefix), shape, backbone.read_f32(name)?));
        }
    }
    let mut weights = Weights(Vec::new(), None);
    head.visit(&mut weights);
    if let Some(e) = weights.1 {
        return Err(e);
    }
    tensors.extend(weights.0);
    Ok((write_safetensors_as(&tensors, false)?, config.to_json()))
}

/// Class embeddings `[classes, proj]` (row = class value) with Fusioner's 32 templates: each
/// prompt's normalised embedding, averaged, renormalised.
pub fn class_embeddings(model: &FusionerModel, names: &[String]) -> Result<Tensor<2>> {
    let words: Vec<&str> = names.iter().map(String::as_str).collect();
    name_embeddings(model, &Tokenizer::new(), &words, &FUSIONER_32)
}

/// A tensor's values on the host: training is native and waits for each result.
fn host<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    crate::device::block_on(crate::device::read(t))
}

/// Every label value is a class of the list or 255 (ignored): a value past the list would be
/// trained on as nothing, silently.
fn check_label_values(presence: &[Vec<u8>], samples: &dyn Samples, classes: usize) -> Result<()> {
    for (i, present) in presence.iter().enumerate() {
        if let Some(v) = present.iter().find(|&&v| v as usize >= classes) {
            return Err(Error::invalid(format!(
                "the label map of {} holds the value {v}, but the class list has {classes} classes (values 0 to {}; 255 marks pixels to ignore)",
                samples.name(i),
                classes - 1
            )));
        }
    }
    Ok(())
}

/// What `fit` refuses before any work.
fn check(samples: &dyn Samples, options: &TrainOptions) -> Result<()> {
    if samples.is_empty() {
        return Err(Error::invalid("the training set has no images"));
    }
    if options.class_names.len() > 255 {
        return Err(Error::invalid(format!(
            "{} classes: label maps are 8-bit with 255 meaning ignored, so at most 255 classes",
            options.class_names.len()
        )));
    }
    if options.batch_size == 0 || options.micro_batch == 0 {
        return Err(Error::invalid("batch size and micro-batch must be at least 1"));
    }
    if options.hyper.epochs == 0 {
        return Err(Error::invalid("--epochs must be at least 1"));
    }
    options.hyper.validate()
}

/// The state of the run in `out` to go on from, refused when anything but the number of epochs
/// differs (the schedules are then recomputed over the new total; anything else would silently
/// train another run).
fn saved_state(out: &Path, backbone_name: &str, options: &TrainOptions) -> Result<TrainState> {
    let text = std::fs::read_to_string(out.join("train_state.json")).map_err(|e| {
        Error::invalid(format!("--resume: cannot read {}: {e}", out.join("train_state.json").display()))
    })?;
    let saved: TrainState =
        serde_json::from_str(&text).map_err(|e| Error::invalid(format!("--resume: train_state.json: {e}")))?;
    let o = &saved.options;
    let differs = [
        ("the backbone", saved.backbone != backbone_name),
        (
            "the trained classes (--fold, --classes)",
            o.trained != options.trained || o.class_names != options.class_names,
        ),
        ("--views", o.views != options.views),
        ("--seed", o.seed != options.seed),
        ("--batch-size", o.batch_size != options.batch_size),
        ("the learning rates or weight decay", {
            let (a, b) = (o.hyper, options.hyper);
            (a.fusion_lr, a.fusion_min_lr, a.decoder_lr, a.wd, a.wd_end, a.warmup_epochs)
                != (b.fusion_lr, b.fusion_min_lr, b.decoder_lr, b.wd, b.wd_end, b.warmup_epochs)
        }),
    ];
    if let Some((what, _)) = differs.iter().find(|(_, d)| *d) {
        return Err(Error::invalid(format!(
            "--resume: {what} differ from the run in {}; resume with the same settings (only --epochs may change)",
            out.display()
        )));
    }
    if saved.epochs_done >= options.hyper.epochs {
        return Err(Error::invalid(format!(
            "--resume: {} epochs are done already; pass a larger --epochs",
            saved.epochs_done
        )));
    }
    Ok(saved)
}

/// The optimiser's moments as the run in `out` left them.
fn restore_optimizer(optimizer: &mut Optimizer, head: &mut FusionHead, out: &Path, device: &Device) -> Result<()> {
    let bytes = std::fs::read(out.join("optimizer.safetensors"))
        .map_err(|e| Error::invalid(format!("--resume: cannot read optimizer.safetensors: {e}")))?;
    let saved = Checkpoint::from_bytes(&bytes, "optimizer.safetensors")?;
    let values: Vec<(String, Vec<f32>)> =
        saved.names().map(|n| Ok((n.to_string(), saved.read_f32(n)?))).collect::<Result<_>>()?;
    optimizer
        .restore(&values, &optim::parameter_sizes(head), device)
        .map_err(|e| Error::invalid(format!("--resume: {e}")))
}

/// What one epoch works with: the cached features, the tasks, the class embeddings and the
/// optimiser.
struct Run<'a> {
    cache: FeatureCache,
    tasks: Vec<Task>,
    classes: Tensor<2>,
    optimizer: Optimizer,
    options: &'a TrainOptions,
    samples: usize,
    steps_per_epoch: usize,
    crop: usize,
}

impl Run<'_> {
    /// One pass over every task in a seeded order, one view of each image; the mean loss.
    fn epoch(&mut self, head: &mut FusionHead, epoch: usize, progress: &mut dyn FnMut(Event)) -> Result<f32> {
        let options = self.options;
        let (crop, grid, device) = (self.crop, self.cache.grid(), self.classes.device());
        let mut rng = Rng::new(options.seed ^ (epoch as u64 + 1).wrapping_mul(0x9e37_79b9));
        let chosen: Vec<usize> = (0..self.samples).map(|_| rng.below(self.cache.views())).collect();
        let mut order = self.tasks.clone();
        rng.shuffle(&mut order);
        let mut epoch_loss = 0.0;
        for (s, chunk) in order.chunks(options.batch_size).enumerate() {
            let mut micro = Vec::new();
            for part in chunk.chunks(options.micro_batch) {
                let views: Vec<(View, u8)> = part
                    .iter()
                    .map(|t| Ok((self.cache.get(t.sample, chosen[t.sample])?, t.class)))
                    .collect::<Result<_>>()?;
                micro.push(Batch::new(&views, &self.classes, grid, crop, &device));
            }
            let lr = self.optimizer.rates().0;
            let loss = train_step(head, &mut self.optimizer, &micro, chunk.len(), crop)?;
            epoch_loss += loss / self.steps_per_epoch as f32;
            let (epochs, steps) = (options.hyper.epochs, self.steps_per_epoch);
            progress(Event::Step { epoch, epochs, step: s, steps, loss, lr });
        }
        Ok(epoch_loss)
    }
}

/// Train `model.head` on `samples` (the head as given is the starting point), writing a
/// checkpoint to `out` after every epoch. With `resume`, the state in `out` (weights, optimiser,
/// epochs done) continues.
#[allow(clippy::too_many_arguments)]
pub fn fit(
    model: &mut FusionerModel,
    sources: &[WeightSource],
    backbone_name: &str,
    samples: &dyn Samples,
    options: &TrainOptions,
    out: &Path,
    cache_dir: &Path,
    resume: bool,
    progress: &mut dyn FnMut(Event),
) -> Result<TrainState> {
    check(samples, options)?;
    let device = Network::device(&*model);
    let config = model.config.clone();
    let key = CacheKey {
        version: cache::FORMAT,
        backbone: backbone_name.to_string(),
        samples: (0..samples.len()).map(|i| samples.fingerprint(i)).collect(),
        views: options.views,
        seed: options.seed,
        crop: config.crop_size,
        mean: config.image_mean,
        std: config.image_std,
    };
    // An epoch cut off while it was saved is finished (committed) or dropped (not) first.
    journal::recover(out)?;
    let saved = if resume { Some(saved_state(out, backbone_name, options)?) } else { None };
    let cache = FeatureCache::open_or_build(cache_dir, key, model, samples, progress)?;
    check_label_values(cache.presence(), samples, options.class_names.len())?;
    let all = tasks(cache.presence(), &options.trained);
    if all.is_empty() {
        let names: Vec<String> =
            options.trained.iter().map(|c| options.class_names.get(*c as usize).cloned().unwrap_or_default()).collect();
        return Err(Error::invalid(format!("no image holds any of the trained classes ({})", names.join(", "))));
    }
    let steps_per_epoch = all.len().div_ceil(options.batch_size);
    let mut state = TrainState {
        epochs_done: 0,
        steps_per_epoch,
        options: options.clone(),
        backbone: backbone_name.to_string(),
        losses: Vec::new(),
        files: BTreeMap::new(),
    };
    let mut run = Run {
        classes: class_embeddings(model, &options.class_names)?,
        optimizer: Optimizer::new(options.hyper, steps_per_epoch),
        cache,
        tasks: all,
        options,
        samples: samples.len(),
        steps_per_epoch,
        crop: config.crop_size,
    };
    if let Some(saved) = saved {
        restore_optimizer(&mut run.optimizer, &mut model.head, out, &device)?;
        state.epochs_done = saved.epochs_done;
        state.losses = saved.losses;
    }
    for epoch in state.epochs_done..options.hyper.epochs {
        let epoch_loss = run.epoch(&mut model.head, epoch, progress)?;
        state.epochs_done = epoch + 1;
        state.losses.push(epoch_loss);
        let optimizer = write_safetensors_as(&run.optimizer.state()?, false)?;
        let (weights, config_json) = checkpoint_bytes(&config, sources, &mut model.head)?;
        let files = [
            ("optimizer.safetensors", optimizer.as_slice()),
            ("model.safetensors", weights.as_slice()),
            ("config.json", config_json.as_bytes()),
        ];
        journal::save_epoch(out, &mut state, &files)?;
        progress(Event::Epoch { epoch, loss: epoch_loss, checkpoint: out });
    }
    Ok(state)
}
