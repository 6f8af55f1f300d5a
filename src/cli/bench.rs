//! `wordmask bench`: median and spread of the image and text encoders (and optionally the
//! whole segmentation), as a table. Each iteration gets fresh inputs and reads its result
//! back, so no cached or lazy work is timed.

use std::time::Instant;

use anyhow::{Result, bail};
use burn::tensor::{Distribution, Tensor};
use clap::{Args, ValueEnum};

use super::RuntimeArgs;
use super::files::ModelFiles;
use wordmask::clip::{ClipConfig, ClipModel};
use wordmask::device::{self, to_vec};
use wordmask::groupvit::{GroupVitConfig, GroupVitModel};
use wordmask::labels::Label;
use wordmask::loader::WeightLoader;
use wordmask::network::{Network, model_type};
use wordmask::ovsam::{OvSamConfig, OvSamModel};
use wordmask::preprocess::RgbImage;
use wordmask::sam::{SamConfig, SamModel, SamProcessor};
use wordmask::segclip::{SegClipConfig, SegClipModel};
use wordmask::segment::point::{Click, Prompt, PromptModel, PromptNetwork, Vocabulary};
use wordmask::segment::{ClassEmbeddings, EmbeddingCache, Model, Settings, segment, slide};

/// Architectures of hub checkpoints, for timing without downloading them.
#[derive(Clone, Copy, ValueEnum)]
enum Preset {
    /// `openai/clip-vit-base-patch16`
    #[value(name = "vit-b-16")]
    VitB16,
    /// `openai/clip-vit-base-patch32`
    #[value(name = "vit-b-32")]
    VitB32,
    /// `openai/clip-vit-large-patch14`
    #[value(name = "vit-l-14")]
    VitL14,
    /// `nvidia/groupvit-gcc-yfcc` (and -redcaps, the same shape)
    #[value(name = "groupvit-gcc-yfcc", alias = "groupvit-gcc-redcaps")]
    GroupvitGccYfcc,
    /// The released SegCLIP (ViT-B/16, 10 + 2 blocks around 8 centres)
    #[value(name = "segclip")]
    Segclip,
    /// `facebook/sam-vit-base` (Segment Anything: encoder and per-click decoder)
    #[value(name = "sam-vit-base")]
    SamVitBase,
    /// `nielsr/slimsam-50-uniform`
    #[value(name = "slimsam-50")]
    Slimsam50,
    /// `nielsr/slimsam-77-uniform`
    #[value(name = "slimsam-77")]
    Slimsam77,
    /// Open-Vocabulary SAM as released (RN50x16, the SAM2CLIP neck, the FPN and the named
    /// decoder): encoder and per-click decode with its name among 5 typed words
    #[value(name = "ovsam")]
    Ovsam,
}

/// What was loaded: a words model, or a Segment Anything model.
enum Loaded {
    Words(Model),
    Point(Box<PromptModel>),
}

impl Preset {
    /// The preset with random weights.
    fn load(self, device: &burn::tensor::Device) -> Result<Loaded> {
        let mut loader = WeightLoader::random(device);
        let clip = |config: ClipConfig, loader: &mut WeightLoader| -> Box<dyn Network> {
            Box::new(ClipModel::load(config, loader))
        };
        let sam = |vision: &str, loader: &mut WeightLoader| -> Result<Loaded> {
            let config = SamConfig::from_json(&format!(r#"{{"model_type": "sam", "vision_config": {vision}}}"#))?;
            let sam = SamModel::load(config, loader);
            let processor = SamProcessor::new(sam.input_size());
            Ok(Loaded::Point(Box::new(PromptModel::new(PromptNetwork::Sam(Box::new(sam)), processor))))
        };
        let network = match self {
            Preset::VitB16 => clip(ClipConfig::vit_b_16(), &mut loader),
            Preset::VitB32 => clip(ClipConfig::vit_b_32(), &mut loader),
            Preset::VitL14 => clip(ClipConfig::vit_l_14(), &mut loader),
            Preset::GroupvitGccYfcc => Box::new(GroupVitModel::load(GroupVitConfig::gcc_yfcc(), &mut loader)),
            Preset::Segclip => Box::new(SegClipModel::load(SegClipConfig::release(), &mut loader)),
            // The hub configs: the defaults (ViT-B), and SlimSAM's narrower towers.
            Preset::SamVitBase => return sam("{}", &mut loader),
            Preset::Slimsam50 => return sam(r#"{"hidden_size": 384, "mlp_dim": 1536}"#, &mut loader),
            Preset::Slimsam77 => return sam(r#"{"hidden_size": 168, "mlp_dim": 696}"#, &mut loader),
            Preset::Ovsam => {
                let model = OvSamModel::load(OvSamConfig::from_json(r#"{"model_type": "ovsam"}"#)?, &mut loader);
                let processor = SamProcessor::new(model.input_size());
                return Ok(Loaded::Point(Box::new(PromptModel::new(PromptNetwork::OvSam(Box::new(model)), processor))));
            }
        };
        Ok(Loaded::Words(Model::new(network, None)?))
    }
}

#[derive(Args)]
pub struct BenchArgs {
    /// A checkpoint to time (folder or weights file, as for the other commands).
    #[arg(long, conflicts_with_all = ["config", "random_weights"])]
    model: Option<String>,
    /// Or an architecture preset with random weights (needs --random-weights).
    #[arg(long, value_enum)]
    config: Option<Preset>,
    /// Use random weights of the preset's shapes (no checkpoint needed).
    #[arg(long, requires = "config")]
    random_weights: bool,
    /// Square input size of the image-encoder row, in pixels.
    #[arg(long, default_value_t = 224)]
    size: usize,
    /// Timed iterations per stage (after one warm-up).
    #[arg(long, default_value_t = 10)]
    iters: usize,
    /// Labels embedded per text-encoder iteration.
    #[arg(long, default_value_t = 5)]
    labels: usize,
    /// Also time segmentation of a random image of this size, WIDTHxHEIGHT (e.g. 448x336),
    /// with the text side for --labels labels, using the engine's defaults or the settings below.
    #[arg(long)]
    segment: Option<String>,
    #[command(flatten)]
    settings: Settings,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

struct Row {
    stage: String,
    times_ms: Vec<f64>,
}

impl Row {
    fn quantile(&self, q: f64) -> f64 {
        let mut t = self.times_ms.clone();
        t.sort_by(f64::total_cmp);
        let at = ((t.len() - 1) as f64 * q).round() as usize;
        t[at]
    }
}

fn time(iters: usize, mut f: impl FnMut(usize) -> Result<()>) -> Result<Vec<f64>> {
    f(usize::MAX)?; // warm-up: shader compilation, allocation
    (0..iters)
        .map(|i| {
            let start = Instant::now();
            f(i)?;
            Ok(start.elapsed().as_secs_f64() * 1e3)
        })
        .collect()
}

pub fn run(args: BenchArgs) -> Result<()> {
    if args.iters == 0 || args.labels == 0 {
        bail!("--iters and --labels must be at least 1");
    }
    let backend = args.runtime.backend();
    let load_start = Instant::now();
    let (loaded, what) = match (&args.model, args.config) {
        (Some(path), _) => {
            let files = ModelFiles::open(path)?;
            let loaded = if matches!(model_type(&files.config)?.as_str(), "sam" | "ovsam") {
                let device = args.runtime.device()?;
                let name = files.weights_path.display().to_string();
                let (config, pre) = (&files.config, files.preprocessor.as_deref());
                Loaded::Point(Box::new(PromptModel::from_bytes(config, files.weights(), &name, pre, &device)?))
            } else {
                Loaded::Words(super::load(path, args.runtime)?)
            };
            (loaded, path.clone())
        }
        (None, Some(preset)) if args.random_weights => {
            let name = preset.to_possible_value().map(|v| v.get_name().to_string()).unwrap_or_default();
            (preset.load(&args.runtime.device()?)?, format!("{name} (random weights)"))
        }
        (None, Some(_)) => bail!("--config times random weights of a preset: add --random-weights"),
        (None, None) => bail!("bench needs --model DIR, or --config PRESET --random-weights"),
    };
    let load_ms = load_start.elapsed().as_secs_f64() * 1e3;
    let (rows, engine) = match &loaded {
        Loaded::Words(model) => (words_rows(&args, model)?, model.engine()),
        Loaded::Point(model) => (point_rows(&args, model)?, "sam"),
    };
    let kernels = match backend {
        wordmask::Backend::Cpu if device::avx512() => " (AVX-512 kernels)".to_string(),
        wordmask::Backend::Wgpu => format!(" ({})", device::precision(&args.runtime.device()?)),
        _ => String::new(),
    };
    println!(
        "wordmask bench: {what}, engine {engine}, backend {backend}{kernels}, {} iterations, loaded in {load_ms:.0} ms",
        args.iters
    );
    let width = rows.iter().map(|r| r.stage.chars().count()).chain([44]).max().unwrap_or(44);
    println!("| {:<width$} | {:>10} | {:>10} | {:>10} | {:>10} |", "stage", "median ms", "p10 ms", "p90 ms", "max ms");
    println!("|{:-<w2$}|{:-<12}|{:-<12}|{:-<12}|{:-<12}|", "", "", "", "", "", w2 = width + 2);
    for row in &rows {
        println!(
            "| {:<width$} | {:>10.1} | {:>10.1} | {:>10.1} | {:>10.1} |",
            row.stage,
            row.quantile(0.5),
            row.quantile(0.1),
            row.quantile(0.9),
            row.quantile(1.0)
        );
    }
    Ok(())
}

/// A random photo-like image (LCG noise), fresh for every `seed`.
fn random_image(w: usize, h: usize, seed: &mut u32) -> Result<RgbImage> {
    let data = (0..w * h * 3)
        .map(|_| {
            *seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (*seed >> 24) as u8
        })
        .collect();
    Ok(RgbImage::new(w, h, data)?)
}

/// Segment Anything: the image encoder (the heavy pass, once per image) and one click (the
/// prompt encoder and mask decoder, the mask at the image's size, read back); Open-Vocabulary
/// SAM also names each mask among --labels typed words (embedded once, before timing).
fn point_rows(args: &BenchArgs, model: &PromptModel) -> Result<Vec<Row>> {
    let s = model.input_size();
    let (w, h) = (s, s * 3 / 4);
    let mut seed = 1u32;
    let what = if model.names_masks() { "Open-Vocabulary SAM" } else { "SAM" };
    let encoder = Row {
        stage: format!("{what} image encoder ({w}x{h}, padded to {s}x{s})"),
        times_ms: time(args.iters, |_| {
            model.encode(&random_image(w, h, &mut seed)?)?.wait()?;
            Ok(())
        })?,
    };
    let encoded = model.encode(&random_image(w, h, &mut seed)?)?;
    let mut classes = None;
    let mut rows = Vec::new();
    if model.names_masks() {
        let words = ["cat", "dog", "car", "tree", "sky", "road", "person", "grass", "boat", "house"];
        let labels: Vec<Label> = (0..args.labels)
            .map(|j| {
                let name = format!("{} {j}", words[j % words.len()]);
                Label { name: name.clone(), synonyms: vec![name] }
            })
            .collect();
        let t = Instant::now();
        to_vec(model.prepare_classes(&Vocabulary::Typed(labels), &mut classes)?.tensor())?;
        rows.push(Row {
            stage: format!("text: {} words x 14 templates (once per word list)", args.labels),
            times_ms: vec![t.elapsed().as_secs_f64() * 1e3],
        });
    }
    let decoder = Row {
        stage: format!("{what} prompt + mask decoder (one click{})", if model.names_masks() { ", named" } else { "" }),
        times_ms: time(args.iters, |i| {
            let k = i.wrapping_mul(7919) % 997;
            let click = Click { x: (k % w) as f64, y: (k * 13 % h) as f64, positive: true };
            let mask = model.segment(&encoded, &Prompt { points: vec![click], bbox: None })?;
            if let Some(classes) = &classes {
                model.name_now(&encoded, &mask, classes)?;
            }
            Ok(())
        })?,
    };
    let mut all = vec![encoder];
    all.extend(rows);
    all.push(decoder);
    Ok(all)
}

/// A words model: the image and text encoders, and with `--segment` the whole segmentation.
fn words_rows(args: &BenchArgs, model: &Model) -> Result<Vec<Row>> {
    let device = model.device();
    let s = args.size;

    let mut tokens = String::new();
    // A fresh input for every run, the warm-up's last, made before the clock starts: the
    // peers' timings (tools/peer_bench.mjs) do not count making their input either.
    let inputs: Vec<Tensor<4>> =
        (0..=args.iters).map(|_| Tensor::random([1, 3, s, s], Distribution::Normal(0.0, 1.0), &device)).collect();
    let image = time(args.iters, |i| {
        let embedding = model.network().embed_image(inputs[i.min(args.iters)].clone())?;
        tokens = embedding.tokens.to_string();
        to_vec(embedding.embeds)?;
        Ok(())
    })?;
    let image = Row { stage: format!("image encoder ({s}x{s}, {tokens})"), times_ms: image };
    let words = ["cat", "dog", "car", "tree", "sky", "road", "person", "grass", "boat", "house"];
    let text = Row {
        stage: format!("text encoder ({} labels)", args.labels),
        times_ms: time(args.iters, |i| {
            let prompts: Vec<String> = (0..args.labels)
                .map(|j| format!("a photo of a {} number {}.", words[j % words.len()], i.wrapping_add(j) % 1000))
                .collect();
            let refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
            to_vec(model.embed_texts(&refs)?)?;
            Ok(())
        })?,
    };
    let per_label = Row {
        stage: "text encoder, per label".into(),
        times_ms: text.times_ms.iter().map(|t| t / args.labels as f64).collect(),
    };
    let mut rows = vec![image, text, per_label];
    if let Some(size) = &args.segment {
        rows.extend(segment_rows(args, size, model)?);
    }
    Ok(rows)
}

/// Text side with templates, and the whole segmentation on a random image.
fn segment_rows(args: &BenchArgs, size: &str, model: &Model) -> Result<Vec<Row>> {
    let Some((w, h)) =
        size.split_once('x').and_then(|(w, h)| Some((w.parse::<usize>().ok()?, h.parse::<usize>().ok()?)))
    else {
        bail!("--segment takes WIDTHxHEIGHT, e.g. 448x336; got {size}");
    };
    let plan = model.plan(&args.settings)?;
    let templates = plan.templates.prompts();
    let labels: Vec<Label> =
        (0..args.labels).map(|i| Label { name: format!("thing {i}"), synonyms: vec![format!("thing {i}")] }).collect();
    let text = Row {
        stage: format!("text: {} labels x {} templates", args.labels, templates.len()),
        times_ms: time(args.iters, |_| {
            to_vec(ClassEmbeddings::new(model, &labels, &plan.background, templates)?.names)?;
            Ok(())
        })?,
    };
    let short = plan.windows.short_side;
    let (rh, rw) = (h * short / h.min(w), w * short / h.min(w));
    let windows = plan
        .windows
        .slide()
        .map(|(win, stride)| slide::windows(rh, rw, (win, win), (stride, stride)).len())
        .unwrap_or(1);
    // The labels' embeddings stay in the cache after the warm-up: the rows time the image side.
    let mut cache = EmbeddingCache::default();
    let mut seed = 1u32;
    let row = Row {
        stage: format!("{} {w}x{h}: {rw}x{rh}, {windows} windows", plan.method),
        times_ms: time(args.iters, |_| {
            // A fresh random image each iteration, so nothing is reused between runs.
            segment(model, &random_image(w, h, &mut seed)?, &labels, &args.settings, &mut cache)?;
            Ok(())
        })?,
    };
    // The first segmentation after typing new words: a fresh cache and new names each time.
    let mut round = 0usize;
    let first = Row {
        stage: format!("first segmentation, {} new labels (text + image)", args.labels),
        times_ms: time(args.iters, |_| {
            round += 1;
            let labels: Vec<Label> = (0..args.labels)
                .map(|i| Label { name: format!("new {round} {i}"), synonyms: vec![format!("new {round} {i}")] })
                .collect();
            segment(model, &random_image(w, h, &mut seed)?, &labels, &args.settings, &mut EmbeddingCache::default())?;
            Ok(())
        })?,
    };
    Ok(vec![text, row, first])
}
