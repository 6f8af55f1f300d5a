//! `wordmask bench`: median and spread of the image and text encoders (and optionally the
//! whole segmentation), as a table. Each iteration gets fresh inputs and reads its result
//! back, so no cached or lazy work is timed. Segmentation rows come from the stage timings the
//! one entry, `segment`, reports.

use std::time::Instant;

use anyhow::{Result, bail};
use burn::tensor::{Distribution, Tensor};
use clap::Args;

use super::RuntimeArgs;
use super::files::ModelFiles;
use wordmask::clip::ClipModel;
use wordmask::device::{self, read};
use wordmask::labels::Label;
use wordmask::preprocess::RgbImage;
use wordmask::segment::point::{AutomaticOptions, Click, NameRequest, Prompt, PromptModel, PromptSession};
use wordmask::segment::refine::{RefineOptions, sharpen};
use wordmask::segment::{EmbeddingCache, Loaded, Model, Settings, Timings, presets, segment, slide};
use wordmask::{Backend, block_on};

/// The presets' names and what they are, for `--config`'s help.
fn preset_names() -> Vec<clap::builder::PossibleValue> {
    presets()
        .into_iter()
        .map(|p| clap::builder::PossibleValue::new(p.name).aliases(p.aliases.iter().copied()).help(p.about))
        .collect()
}

#[derive(Args)]
pub struct BenchArgs {
    /// A checkpoint to time (folder or weights file, as for the other commands).
    #[arg(long, conflicts_with_all = ["config", "random_weights"])]
    model: Option<String>,
    /// Or the architecture of a hub checkpoint with random weights (needs --random-weights).
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(preset_names()))]
    config: Option<String>,
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
    /// With --segment: also time sharp edges (segment --sam) with random weights of this
    /// Segment Anything preset (sam-vit-base, slimsam-50, slimsam-77).
    #[arg(long, requires = "segment")]
    sam_config: Option<String>,
    /// A Segment Anything model: also time automatic masks (sam --everything) at these points
    /// per side, e.g. 16,32.
    #[arg(long, value_delimiter = ',')]
    everything: Vec<usize>,
    #[command(flatten)]
    settings: Settings,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

struct Row {
    stage: String,
    times_ms: Vec<f64>,
    /// FLOPs of one run, where counted (a CLIP tower's image pass): the table then shows the
    /// effective GFLOP/s of the median.
    flops: Option<f64>,
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
    let device = args.runtime.device()?;
    let load_start = Instant::now();
    let (loaded, what) = match (&args.model, &args.config) {
        (Some(path), _) => {
            let files = ModelFiles::open(path)?;
            let (name, pre) = (files.weights_path.display().to_string(), files.preprocessor.as_deref());
            (Loaded::from_bytes(&files.config, files.weights(), &name, pre, &device)?, path.clone())
        }
        (None, Some(name)) if args.random_weights => {
            (Loaded::preset(name, &device)?, format!("{name} (random weights)"))
        }
        (None, Some(_)) => bail!("--config times random weights of a preset: add --random-weights"),
        (None, None) => bail!("bench needs --model DIR, or --config PRESET --random-weights"),
    };
    let load_ms = load_start.elapsed().as_secs_f64() * 1e3;
    let held = loaded.held_bytes();
    let (rows, engine) = match loaded {
        Loaded::Words(model) => (words_rows(&args, &model)?, model.engine()),
        Loaded::Prompts(model) => {
            let engine = model.engine();
            (point_rows(&args, PromptSession::new(model))?, engine)
        }
    };
    let kernels = match backend {
        Backend::Cpu if device::avx512() => " (AVX-512 kernels)".to_string(),
        Backend::Wgpu => format!(" ({})", device::precision(&device)),
        _ => String::new(),
    };
    println!(
        "wordmask bench: {what}, engine {engine}, backend {backend}{kernels}, {} iterations, loaded in {load_ms:.0} ms, weights holding {held}",
        args.iters
    );
    print_table(&rows);
    Ok(())
}

/// The table; a last column with the effective GFLOP/s (FLOPs over the median) when a row
/// knows its FLOPs.
fn print_table(rows: &[Row]) {
    let width = rows.iter().map(|r| r.stage.chars().count()).chain([44]).max().unwrap_or(44);
    let rates = rows.iter().any(|r| r.flops.is_some());
    let (head, rule) =
        if rates { (format!(" {:>10} |", "GFLOP/s"), format!("{:-<12}|", "")) } else { Default::default() };
    println!(
        "| {:<width$} | {:>10} | {:>10} | {:>10} | {:>10} |{head}",
        "stage", "median ms", "p10 ms", "p90 ms", "max ms"
    );
    println!("|{:-<w2$}|{:-<12}|{:-<12}|{:-<12}|{:-<12}|{rule}", "", "", "", "", "", w2 = width + 2);
    for row in rows {
        let median = row.quantile(0.5);
        let rate = match row.flops {
            Some(flops) if rates => format!(" {:>10.1} |", flops / median / 1e6),
            _ if rates => format!(" {:>10} |", ""),
            _ => String::new(),
        };
        println!(
            "| {:<width$} | {:>10.1} | {:>10.1} | {:>10.1} | {:>10.1} |{rate}",
            row.stage,
            median,
            row.quantile(0.1),
            row.quantile(0.9),
            row.quantile(1.0)
        );
    }
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

/// `count` labels named `{prefix} {i}`.
fn labels(prefix: &str, count: usize) -> Vec<Label> {
    (0..count).map(|i| Label { name: format!("{prefix} {i}"), synonyms: vec![format!("{prefix} {i}")] }).collect()
}

/// A prompt model: the image encoder (the heavy pass, once per image) and one click (the
/// prompt encoder and mask decoder, the mask at the image's size, read back); a model that
/// names its masks also names each among --labels typed words (embedded at the first click,
/// a row of its own).
fn point_rows(args: &BenchArgs, mut session: PromptSession) -> Result<Vec<Row>> {
    let s = session.model().input_size();
    let (w, h) = (s, s * 3 / 4);
    let mut seed = 1u32;
    let model: &PromptModel = session.model();
    let (what, names) = (model.engine(), model.names_masks());
    let encoder = Row {
        stage: format!("{what} image encoder ({w}x{h}, padded to {s}x{s})"),
        times_ms: time(args.iters, |_| {
            block_on(session.encode(random_image(w, h, &mut seed)?))?;
            Ok(())
        })?,
        flops: None,
    };
    let typed = names.then(|| labels("word", args.labels));
    let click = |i: usize| {
        let k = i.wrapping_mul(7919) % 997;
        Prompt { points: vec![Click { x: (k % w) as f64, y: (k * 13 % h) as f64, positive: true }], bbox: None }
    };
    let mut rows = vec![encoder];
    if names {
        let first =
            block_on(session.prompt(&click(0), NameRequest { labels: typed.clone(), ..NameRequest::default() }))?;
        rows.push(Row {
            stage: format!("text: {} words (once per word list) + first click", args.labels),
            times_ms: vec![first.timings.decode + first.timings.name],
            flops: None,
        });
    }
    let decoder = Row {
        stage: format!("{what} prompt + mask decoder (one click{})", if names { ", named" } else { "" }),
        times_ms: time(args.iters, |i| {
            block_on(session.prompt(&click(i), NameRequest { labels: typed.clone(), ..NameRequest::default() }))?;
            Ok(())
        })?,
        flops: None,
    };
    rows.push(decoder);
    for &side in &args.everything {
        let options = AutomaticOptions { points_per_side: side, ..AutomaticOptions::default() };
        options.validate()?;
        let mut kept = 0;
        let times = time(args.iters, |_| {
            kept = block_on(session.everything(&options, NameRequest::default(), |_, _| {}))?.len();
            Ok(())
        })?;
        rows.push(Row {
            stage: format!("{what} automatic masks, {side}x{side} points ({kept} kept, image encoded)"),
            times_ms: times,
            flops: None,
        });
    }
    Ok(rows)
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
        block_on(read(embedding.embeds))?;
        Ok(())
    })?;
    // A CLIP tower's FLOPs are counted (ClipConfig::image_flops); other networks show no rate.
    let flops = model.network().downcast::<ClipModel>().and_then(|clip| clip.config.image_flops(s));
    let image = Row { stage: format!("image encoder ({s}x{s}, {tokens})"), times_ms: image, flops };
    let words = ["cat", "dog", "car", "tree", "sky", "road", "person", "grass", "boat", "house"];
    let text = Row {
        stage: format!("text encoder ({} labels)", args.labels),
        times_ms: time(args.iters, |i| {
            let prompts: Vec<String> = (0..args.labels)
                .map(|j| format!("a photo of a {} number {}.", words[j % words.len()], i.wrapping_add(j) % 1000))
                .collect();
            let refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
            block_on(read(model.embed_texts(&refs)?))?;
            Ok(())
        })?,
        flops: None,
    };
    let per_label = Row {
        stage: "text encoder, per label".into(),
        times_ms: text.times_ms.iter().map(|t| t / args.labels as f64).collect(),
        flops: None,
    };
    let mut rows = vec![image, text, per_label];
    if let Some(size) = &args.segment {
        rows.extend(segment_rows(args, size, model)?);
    }
    Ok(rows)
}

/// `WIDTHxHEIGHT`, both at least 1.
fn parse_size(size: &str) -> Result<(usize, usize)> {
    match size.split_once('x').and_then(|(w, h)| Some((w.parse::<usize>().ok()?, h.parse::<usize>().ok()?))) {
        Some((w, h)) if w > 0 && h > 0 => {
            // The size rule of every image the tool reads, before the random image is made.
            wordmask::preprocess::check_image_size(w, h).map_err(|e| anyhow::anyhow!("--segment {size}: {e}"))?;
            Ok((w, h))
        }
        _ => bail!("--segment takes WIDTHxHEIGHT, both at least 1, e.g. 448x336; got {size}"),
    }
}

/// The whole segmentation of random images, stage by stage as `segment` reports them: with
/// the labels' embeddings cached (what each later frame costs), and the first segmentation
/// after typing new words (a fresh cache and new names each time: the text side included).
fn segment_rows(args: &BenchArgs, size: &str, model: &Model) -> Result<Vec<Row>> {
    let (w, h) = parse_size(size)?;
    let plan = model.plan(&args.settings)?;
    let short = plan.windows.short_side;
    let (rh, rw) = (h * short / h.min(w), w * short / h.min(w));
    let windows = plan
        .windows
        .slide()
        .map(|(win, stride)| slide::windows(rh, rw, (win, win), (stride, stride)).len())
        .unwrap_or(1);
    let mut seed = 1u32;
    let mut run = |labels: &[Label], cache: &mut EmbeddingCache| -> Result<Timings> {
        // A fresh random image each iteration, so nothing is reused between runs.
        let image = random_image(w, h, &mut seed)?;
        Ok(block_on(segment(model, &image, labels, &args.settings, cache))?.timings)
    };
    let (cached_labels, mut cache) = (labels("thing", args.labels), EmbeddingCache::default());
    let mut cached = Vec::new();
    time(args.iters, |_| {
        cached.push(run(&cached_labels, &mut cache)?);
        Ok(())
    })?;
    let mut round = 0usize;
    let mut first = Vec::new();
    time(args.iters, |_| {
        round += 1;
        first.push(run(&labels(&format!("new {round}"), args.labels), &mut EmbeddingCache::default())?);
        Ok(())
    })?;
    // The warm-up's timings are the first of each list.
    let (cached, first) = (&cached[1..], &first[1..]);
    let row = |stage: String, times: &[Timings], pick: fn(&Timings) -> f64| Row {
        stage,
        times_ms: times.iter().map(pick).collect(),
        flops: None,
    };
    let templates = plan.templates.prompts().len();
    Ok(vec![
        row(format!("text: {} new labels x {templates} templates", args.labels), first, |t| t.text),
        row(format!("{} {w}x{h}: {rw}x{rh}, {windows} windows", plan.method), cached, |t| t.total()),
        row("  of which the network's pass".into(), cached, |t| t.image),
        row("  of which reading the scores back".into(), cached, |t| t.scores),
        row("  of which the label map".into(), cached, |t| t.finish),
        row(format!("first segmentation, {} new labels (text + image)", args.labels), first, |t| t.total()),
    ]
    .into_iter()
    .chain(sharp_rows(args, (w, h), model)?)
    .collect())
}

/// With `--sam-config`: sharp edges on the segmentation of random images — Segment Anything's
/// encoding of each image, and the prompts of its words' regions.
fn sharp_rows(args: &BenchArgs, (w, h): (usize, usize), model: &Model) -> Result<Vec<Row>> {
    let Some(name) = &args.sam_config else { return Ok(Vec::new()) };
    let Loaded::Prompts(sam) = Loaded::preset(name, &model.device())? else {
        bail!("--sam-config {name} is not a Segment Anything preset: give sam-vit-base, slimsam-50 or slimsam-77");
    };
    let mut session = PromptSession::new(sam);
    let (labels, mut cache) = (labels("thing", args.labels), EmbeddingCache::default());
    let mut seed = 7u32;
    let (mut encode, mut prompts, mut objects) = (Vec::new(), Vec::new(), 0);
    time(args.iters, |_| {
        let image = random_image(w, h, &mut seed)?;
        let mut seg = block_on(segment(model, &image, &labels, &args.settings, &mut cache))?.segmentation;
        let (found, e, p) = block_on(sharpen(&mut seg, &image, &mut session, &RefineOptions::default()))?;
        objects = found.len();
        encode.push(e);
        prompts.push(p);
        Ok(())
    })?;
    Ok(vec![
        Row { stage: format!("sharp edges: {name} encoder ({w}x{h})"), times_ms: encode[1..].to_vec(), flops: None },
        Row {
            stage: format!("sharp edges: prompts of the regions ({objects} objects)"),
            times_ms: prompts[1..].to_vec(),
            flops: None,
        },
    ])
}
