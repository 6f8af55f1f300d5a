//! `wordmask bench`: median and spread of the image and text encoders, as a table. Each
//! iteration gets fresh inputs and reads its result back, so no cached or lazy work is timed.

use std::time::Instant;

use anyhow::{Result, bail};
use burn::tensor::{Distribution, Tensor};
use clap::Args;

use super::RuntimeArgs;
use wordmask::clip::{ClipConfig, ClipModel};
use wordmask::device::{self, to_vec};
use wordmask::tokenizer::Tokenizer;

#[derive(Args)]
pub struct BenchArgs {
    /// Architecture preset: vit-b-16, vit-b-32, vit-l-14.
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
    /// Also time dense segmentation of a random image of this size, WIDTHxHEIGHT (e.g.
    /// 448x336: 6 windows of 224 at stride 112), with the text side for --labels labels.
    #[arg(long)]
    segment: Option<String>,
    /// Last-block variant for --segment.
    #[arg(long, default_value = "naclip")]
    method: wordmask::dense::Method,
    /// Templates for --segment: single or imagenet80.
    #[arg(long, default_value = "imagenet80")]
    templates: String,
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
    let config = ClipConfig::by_name(&args.config)?;
    let backend = match args.runtime.backend {
        wordmask::Backend::Auto => device::resolve_auto(),
        b => b,
    };
    let device = device::open(backend)?;
    let load_start = Instant::now();
    let model = ClipModel::random(config.clone(), &device);
    let model = &model;
    let load_ms = load_start.elapsed().as_secs_f64() * 1e3;
    let tokenizer = Tokenizer::new();
    let s = args.size;

    let image = Row {
        stage: format!("image encoder ({s}x{s}, {} patches)", (s / config.vision_config.patch_size).pow(2)),
        times_ms: time(args.iters, |_| {
            let pixels = Tensor::<4>::random([1, 3, s, s], Distribution::Normal(0.0, 1.0), &device);
            let f = model.image_features(pixels)?;
            to_vec(f.embeds)?;
            to_vec(f.patch_tokens)?;
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
            to_vec(model.embed_texts(&tokenizer, &refs)?)?;
            Ok(())
        })?,
    };
    let per_label = Row {
        stage: "text encoder, per label".into(),
        times_ms: text.times_ms.iter().map(|t| t / args.labels as f64).collect(),
    };
    let mut rows = vec![image, text, per_label];
    if let Some(size) = &args.segment {
        rows.extend(dense_rows(&args, size, model)?);
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

/// Text side with templates, and the whole dense pipeline on a random image.
fn dense_rows(args: &BenchArgs, size: &str, clip: &ClipModel) -> Result<Vec<Row>> {
    use wordmask::dense::pipeline::{ClassEmbeddings, DenseOptions, segment};
    use wordmask::dense::templates;
    use wordmask::labels::Label;
    use wordmask::model::Model;
    use wordmask::preprocess::RgbImage;

    let Some((w, h)) =
        size.split_once('x').and_then(|(w, h)| Some((w.parse::<usize>().ok()?, h.parse::<usize>().ok()?)))
    else {
        bail!("--segment takes WIDTHxHEIGHT, e.g. 448x336; got {size}");
    };
    let model = Model::from_clip(clip.clone(), None)?;
    let opts = DenseOptions {
        method: args.method,
        templates: templates::by_name(&args.templates)?,
        ..DenseOptions::default()
    };
    let labels: Vec<Label> =
        (0..args.labels).map(|i| Label { name: format!("thing {i}"), synonyms: vec![format!("thing {i}")] }).collect();
    let mut classes = None;
    let text = Row {
        stage: format!("text: {} labels x {} templates", args.labels, opts.templates.len()),
        times_ms: time(args.iters, |_| {
            let c = ClassEmbeddings::new(&model, &labels, opts.templates)?;
            to_vec(c.names.clone())?;
            classes = Some(c);
            Ok(())
        })?,
    };
    let classes = classes.expect("timed at least once");
    let (gh, gw) = (h * opts.short_side / h.min(w), w * opts.short_side / h.min(w));
    let windows = opts
        .slide
        .map(|(win, stride)| wordmask::dense::windows::slide(gh, gw, (win, win), (stride, stride)).len())
        .unwrap_or(1);
    let mut seed = 1u32;
    let dense = Row {
        stage: format!("dense {}: {w}x{h}, {windows} windows", args.method),
        times_ms: time(args.iters, |_| {
            // A fresh random image each iteration (LCG), so nothing is reused between runs.
            let data = (0..w * h * 3)
                .map(|_| {
                    seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    (seed >> 24) as u8
                })
                .collect();
            let image = RgbImage::new(w, h, data)?;
            to_vec(segment(&model, &image, &classes, &opts)?)?;
            Ok(())
        })?,
    };
    Ok(vec![text, dense])
}
