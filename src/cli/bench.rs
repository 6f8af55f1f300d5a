//! `wordmask bench`: median and spread of the image and text encoders, as a table. Each
//! iteration gets fresh inputs and reads its result back, so no cached or lazy work is timed.

use std::time::Instant;

use anyhow::{Result, bail};
use burn::tensor::{Distribution, Tensor};
use clap::Args;

use super::RuntimeArgs;
use wordmask::clip::{ClipConfig, ClipModel};
use wordmask::device::{self, to_vec};
use wordmask::groupvit::{GroupVitConfig, GroupVitModel};
use wordmask::model::{Model, Network};

#[derive(Args)]
pub struct BenchArgs {
    /// Architecture preset: vit-b-16, vit-b-32, vit-l-14 (CLIP, dense engine) or
    /// groupvit-gcc-yfcc (GroupViT; the -redcaps checkpoint has the same shape).
    #[arg(long, default_value = "vit-b-16")]
    config: String,
    /// Use random weights of the preset's shapes (the only mode for now: no checkpoint needed).
    #[arg(long)]
    random_weights: bool,
    /// Square input size in pixels.
    #[arg(long, default_value_t = 224)]
    size: usize,
    /// Timed iterations per stage (after one warm-up).
    #[arg(long, default_value_t = 10)]
    iters: usize,
    /// Labels embedded per text-encoder iteration.
    #[arg(long, default_value_t = 5)]
    labels: usize,
    /// Also time segmentation of a random image of this size, WIDTHxHEIGHT (e.g. 448x336),
    /// with the text side for --labels labels, using the engine's defaults or the options below.
    #[arg(long)]
    segment: Option<String>,
    #[command(flatten)]
    method: super::segment::MethodArgs,
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
    if !args.random_weights {
        bail!("bench needs --random-weights (benchmarking a checkpoint from disk is not implemented yet)");
    }
    if args.iters == 0 || args.labels == 0 {
        bail!("--iters and --labels must be at least 1");
    }
    let backend = match args.runtime.backend {
        wordmask::Backend::Auto => device::resolve_auto(),
        b => b,
    };
    let device = device::open(backend)?;
    let load_start = Instant::now();
    let (network, patch) = match args.config.as_str() {
        "groupvit-gcc-yfcc" | "groupvit-gcc-redcaps" => {
            let config = GroupVitConfig::gcc_yfcc();
            let patch = config.vision_config.patch_size;
            (Network::GroupVit(GroupVitModel::random(config, &device)), patch)
        }
        name => {
            let config = ClipConfig::by_name(name).map_err(|_| {
                anyhow::anyhow!(
                    "unknown config preset {name}; choose vit-b-16, vit-b-32, vit-l-14 or groupvit-gcc-yfcc"
                )
            })?;
            let patch = config.vision_config.patch_size;
            (Network::Clip(ClipModel::random(config, &device)), patch)
        }
    };
    let model = Model::new(network, None)?;
    let model = &model;
    let load_ms = load_start.elapsed().as_secs_f64() * 1e3;
    let s = args.size;

    let image = Row {
        stage: format!("image encoder ({s}x{s}, {} patches)", (s / patch).pow(2)),
        times_ms: time(args.iters, |_| {
            let pixels = Tensor::<4>::random([1, 3, s, s], Distribution::Normal(0.0, 1.0), &device);
            match &model.network {
                Network::Clip(m) => {
                    let f = m.image_features(pixels)?;
                    to_vec(f.embeds)?;
                    to_vec(f.patch_tokens)?;
                }
                Network::GroupVit(m) => {
                    let f = m.image_features(pixels)?;
                    to_vec(f.embeds)?;
                    to_vec(f.group_embeds)?;
                }
            }
            Ok(())
        })?,
    };
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
        rows.extend(segment_rows(&args, size, model)?);
    }

    println!(
        "wordmask bench: {} (random weights), backend {}, {} iterations, weights created in {:.0} ms",
        args.config, backend, args.iters, load_ms
    );
    println!("| {:<36} | {:>10} | {:>10} | {:>10} | {:>10} |", "stage", "median ms", "p10 ms", "p90 ms", "max ms");
    println!("|{:-<38}|{:-<12}|{:-<12}|{:-<12}|{:-<12}|", "", "", "", "", "");
    for row in &rows {
        println!(
            "| {:<36} | {:>10.1} | {:>10.1} | {:>10.1} | {:>10.1} |",
            row.stage,
            row.quantile(0.5),
            row.quantile(0.1),
            row.quantile(0.9),
            row.quantile(1.0)
        );
    }
    Ok(())
}

/// Text side with templates, and the whole segmentation pipeline on a random image.
fn segment_rows(args: &BenchArgs, size: &str, model: &Model) -> Result<Vec<Row>> {
    use wordmask::dense::pipeline::ClassEmbeddings;
    use wordmask::labels::Label;
    use wordmask::preprocess::RgbImage;
    use wordmask::segment::{EngineOptions, scores};

    let Some((w, h)) =
        size.split_once('x').and_then(|(w, h)| Some((w.parse::<usize>().ok()?, h.parse::<usize>().ok()?)))
    else {
        bail!("--segment takes WIDTHxHEIGHT, e.g. 448x336; got {size}");
    };
    let engine = model.resolve_engine(args.method.requested_engine()?)?;
    let settings = args.method.settings();
    let opts = settings.options(engine, settings.default_threshold(engine)?)?;
    let templates = opts.templates();
    let labels: Vec<Label> =
        (0..args.labels).map(|i| Label { name: format!("thing {i}"), synonyms: vec![format!("thing {i}")] }).collect();
    let mut classes = None;
    let text = Row {
        stage: format!("text: {} labels x {} templates", args.labels, templates.len()),
        times_ms: time(args.iters, |_| {
            let c = ClassEmbeddings::new(model, &labels, templates)?;
            to_vec(c.names.clone())?;
            classes = Some(c);
            Ok(())
        })?,
    };
    let classes = classes.expect("timed at least once");
    let (short, slide) = match &opts {
        EngineOptions::Dense(o) => (o.short_side, o.slide),
        EngineOptions::GroupVit(o) => (o.short_side, o.slide),
    };
    let (rh, rw) = (h * short / h.min(w), w * short / h.min(w));
    let windows = slide
        .map(|(win, stride)| wordmask::dense::windows::slide(rh, rw, (win, win), (stride, stride)).len())
        .unwrap_or(1);
    let mut seed = 1u32;
    let row = Row {
        stage: format!("{} {w}x{h}: {rw}x{rh}, {windows} windows", opts.method_name()),
        times_ms: time(args.iters, |_| {
            // A fresh random image each iteration (LCG), so nothing is reused between runs.
            let data = (0..w * h * 3)
                .map(|_| {
                    seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    (seed >> 24) as u8
                })
                .collect();
            let image = RgbImage::new(w, h, data)?;
            to_vec(scores(model, &image, &classes, false, &opts)?)?;
            Ok(())
        })?,
    };
    Ok(vec![text, row])
}
