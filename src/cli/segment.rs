//! `wordmask segment`: label map, overlay, scores and a JSON summary for one image.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, bail};
use clap::Args;
use serde_json::json;

use super::outputs::{write_labels_png, write_npy, write_overlay};
use super::{ModelArgs, load, read_image};
use wordmask::dense::Method;
use wordmask::dense::pipeline::ClassEmbeddings;
use wordmask::dense::result::with_background;
use wordmask::device::to_vec;
use wordmask::labels;
use wordmask::model::Engine;
use wordmask::segment::{Settings, finish, scores};

/// Engine and method options shared by `segment` and `eval`. Unset values take the engine's
/// defaults (dense: NACLIP's; groupvit: the GroupViT repository's evaluation).
#[derive(Args, Clone)]
pub struct MethodArgs {
    /// Segmentation engine: auto (from the checkpoint: dense for CLIP, groupvit for GroupViT),
    /// dense or groupvit.
    #[arg(long, default_value = "auto")]
    pub engine: String,
    /// Dense engine: last-block variant: naclip (default), sclip, clearclip, maskclip, vanilla.
    #[arg(long)]
    pub method: Option<Method>,
    /// Prompt templates: imagenet80 (80 CLIP templates; dense default), single
    /// ("a photo of a {}."; groupvit default) or bare (each label as typed).
    #[arg(long)]
    pub templates: Option<String>,
    /// Resize the image's short side to this many pixels first [dense: 336, groupvit: 448].
    #[arg(long)]
    pub short_side: Option<usize>,
    /// Sliding-window size in pixels; 0 runs the whole image in one pass [dense: 224, groupvit: 448].
    #[arg(long)]
    pub window: Option<usize>,
    /// Sliding-window stride in pixels [dense: 112, groupvit: 224].
    #[arg(long)]
    pub stride: Option<usize>,
    /// Dense engine: temperature of the cosine scores before the softmax [40].
    #[arg(long)]
    pub logit_scale: Option<f32>,
    /// GroupViT engine: how pixels get label scores: repository (the GroupViT repository's
    /// evaluation, default) or transformers (its `output_segmentation=True` logits; no background
    /// threshold, so the threshold defaults to 0).
    #[arg(long, value_parser = ["repository", "transformers"])]
    pub scoring: Option<String>,
    /// Dense engine: refinement of the score maps: none (default), or pamr (10 iterations,
    /// dilations 8 and 16).
    #[arg(long, value_parser = ["none", "pamr"])]
    pub refine: Option<String>,
}

impl MethodArgs {
    /// The engine asked for; `None` = the checkpoint's own.
    pub fn requested_engine(&self) -> Result<Option<Engine>> {
        match self.engine.as_str() {
            "auto" => Ok(None),
            other => Ok(Some(other.parse()?)),
        }
    }

    /// The flags as the core's settings.
    pub fn settings(&self) -> Settings {
        Settings {
            method: self.method.map(|m| m.to_string()),
            templates: self.templates.clone(),
            short_side: self.short_side,
            window: self.window,
            stride: self.stride,
            logit_scale: self.logit_scale,
            refine: self.refine.clone(),
            scoring: self.scoring.clone(),
        }
    }
}

#[derive(Args)]
pub struct SegmentArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[arg(long)]
    image: String,
    /// Labels separated by commas or newlines; `person|people` are synonyms of one class.
    #[arg(long)]
    labels: String,
    #[command(flatten)]
    method: MethodArgs,
    /// Dense: pixels whose top probability is under this are left unlabelled [0.1].
    /// GroupViT: the background threshold of its evaluation; 0 turns it off [0.95].
    #[arg(long)]
    threshold: Option<f32>,
    /// Words that form an extra "background" class (separated by ';', ',' or '|'); its pixels
    /// are left unlabelled. "none" turns it off [dense: background, groupvit: none].
    #[arg(long)]
    background: Option<String>,
    /// Label map PNG (8-bit: 0 = unlabelled, i = i-th label).
    #[arg(long)]
    out: PathBuf,
    /// The photo with coloured masks and a legend.
    #[arg(long)]
    overlay: Option<PathBuf>,
    /// Per-class scores, float32 [classes, H, W] (.npy): probabilities for the dense engine,
    /// GroupViT's group-class affinities for groupvit.
    #[arg(long)]
    scores: Option<PathBuf>,
    /// Print a JSON summary.
    #[arg(long)]
    json: bool,
}

fn background_words(text: &str) -> Vec<String> {
    if text.trim() == "none" {
        return Vec::new();
    }
    text.split([';', ',', '|']).map(str::trim).filter(|w| !w.is_empty()).map(String::from).collect()
}

pub fn run(args: SegmentArgs) -> Result<()> {
    if let Some(t) = args.threshold.filter(|t| !(0.0..=1.0).contains(t)) {
        bail!("--threshold must be in [0, 1], got {t}");
    }
    let user_labels = labels::parse(&args.labels)?;
    let requested = args.method.requested_engine()?;
    let photo = read_image(&args.image)?;

    let start = Instant::now();
    let model = load(&args.model)?;
    let load_ms = start.elapsed().as_secs_f64() * 1e3;
    let engine = model.resolve_engine(requested)?;
    let settings = args.method.settings();
    let threshold = args.threshold.map_or_else(|| settings.default_threshold(engine), Ok)?;
    let background = match &args.background {
        Some(words) => background_words(words),
        None => Settings::default_background(engine),
    };
    let opts = settings.options(engine, threshold)?;

    let t = Instant::now();
    let classes = ClassEmbeddings::new(&model, &with_background(&user_labels, &background), opts.templates())?;
    to_vec(classes.names.clone())?;
    let text_ms = t.elapsed().as_secs_f64() * 1e3;

    let t = Instant::now();
    let probs = to_vec(scores(&model, &photo, &classes, !background.is_empty(), &opts)?)?;
    let image_ms = t.elapsed().as_secs_f64() * 1e3;

    let seg = finish(&photo, &user_labels, !background.is_empty(), &opts, probs, threshold);
    write_labels_png(&seg, &args.out)?;
    if let Some(path) = &args.overlay {
        write_overlay(&seg, &photo, 0.55, path)?;
    }
    if let Some(path) = &args.scores {
        write_npy(&seg, path)?;
    }
    let (shares, unlabelled) = seg.shares();
    if args.json {
        println!(
            "{}",
            json!({
                "width": seg.width, "height": seg.height, "engine": engine, "method": opts.method_name(),
                "threshold": threshold,
                "labels": shares, "unlabelled": unlabelled, "background": background,
                "scores_shape": [seg.num_classes(), seg.height, seg.width],
                "timings_ms": {"load": load_ms, "text": text_ms, "image": image_ms},
            })
        );
    } else {
        for s in &shares {
            println!("{:>6.1}%  {}", s.share * 100.0, s.label);
        }
        println!("{:>6.1}%  (unlabelled)", unlabelled * 100.0);
        println!("text {text_ms:.0} ms, image {image_ms:.0} ms; wrote {}", args.out.display());
    }
    Ok(())
}
