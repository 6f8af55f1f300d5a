//! `wordmask segment`: label map, overlay, scores and a JSON summary for one image.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::Args;
use serde_json::json;

use super::outputs::{write_labels_png, write_npy, write_overlay};
use super::{ModelArgs, load, read_image};
use wordmask::dense::pipeline::{ClassEmbeddings, DEFAULT_LOGIT_SCALE, DenseOptions, Pamr, segment};
use wordmask::dense::result::{Segmentation, with_background};
use wordmask::dense::{Method, templates};
use wordmask::device::to_vec;
use wordmask::labels;

/// Method options shared by `segment` and `eval`.
#[derive(Args, Clone)]
pub struct MethodArgs {
    /// Last-block variant: naclip, sclip, clearclip, maskclip, vanilla.
    #[arg(long, default_value = "naclip")]
    pub method: Method,
    /// Prompt templates: imagenet80 (80 CLIP templates) or single ("a photo of a {}.").
    #[arg(long, default_value = "imagenet80")]
    pub templates: String,
    /// Resize the image's short side to this many pixels first.
    #[arg(long, default_value_t = 336)]
    pub short_side: usize,
    /// Sliding-window size in pixels; 0 runs the whole image in one pass.
    #[arg(long, default_value_t = 224)]
    pub window: usize,
    /// Sliding-window stride in pixels.
    #[arg(long, default_value_t = 112)]
    pub stride: usize,
    /// Temperature of the cosine scores before the softmax.
    #[arg(long, default_value_t = DEFAULT_LOGIT_SCALE)]
    pub logit_scale: f32,
    /// Refinement of the score maps: none, or pamr (10 iterations, dilations 8 and 16).
    #[arg(long, default_value = "none", value_parser = ["none", "pamr"])]
    pub refine: String,
}

impl MethodArgs {
    pub fn options(&self) -> Result<DenseOptions> {
        Ok(DenseOptions {
            method: self.method,
            templates: templates::by_name(&self.templates)?,
            short_side: self.short_side,
            slide: (self.window > 0).then_some((self.window, self.stride)),
            logit_scale: self.logit_scale,
            pamr: (self.refine == "pamr").then(Pamr::default),
            ..DenseOptions::default()
        })
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
    /// Pixels whose top probability is under this are left unlabelled (0).
    #[arg(long, default_value_t = 0.1)]
    threshold: f32,
    /// Words that form an extra "background" class (separated by ';', ',' or '|'); its pixels
    /// are left unlabelled. "none" turns it off.
    #[arg(long, default_value = "background")]
    background: String,
    /// Label map PNG (8-bit: 0 = unlabelled, i = i-th label).
    #[arg(long)]
    out: PathBuf,
    /// The photo with coloured masks and a legend.
    #[arg(long)]
    overlay: Option<PathBuf>,
    /// Per-class probabilities, float32 [classes, H, W] (.npy).
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
    if !(0.0..=1.0).contains(&args.threshold) {
        anyhow::bail!("--threshold must be in [0, 1], got {}", args.threshold);
    }
    let user_labels = labels::parse(&args.labels)?;
    let background = background_words(&args.background);
    let opts = args.method.options()?;
    opts.validate()?;
    let photo = read_image(&args.image)?;

    let start = Instant::now();
    let model = load(&args.model)?;
    let load_ms = start.elapsed().as_secs_f64() * 1e3;

    let t = Instant::now();
    let classes = ClassEmbeddings::new(&model, &with_background(&user_labels, &background), opts.templates)?;
    to_vec(classes.names.clone())?;
    let text_ms = t.elapsed().as_secs_f64() * 1e3;

    let t = Instant::now();
    let probs = to_vec(segment(&model, &photo, &classes, &opts)?)?;
    let image_ms = t.elapsed().as_secs_f64() * 1e3;

    let seg = Segmentation::new(photo.width, photo.height, &user_labels, !background.is_empty(), probs, args.threshold);
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
                "width": seg.width, "height": seg.height, "method": opts.method.to_string(),
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
