//! `wordmask segment`: label map, overlay, scores and a JSON summary for one image.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, bail};
use clap::Args;
use serde_json::json;

use super::outputs::{write_labels_png, write_npy, write_overlay};
use super::{ModelArgs, load, read_image};
use wordmask::dense::pipeline::{ClassEmbeddings, DEFAULT_LOGIT_SCALE, DenseOptions, Pamr};
use wordmask::dense::result::{BACKGROUND, with_background};
use wordmask::dense::{Method, templates};
use wordmask::device::to_vec;
use wordmask::groupvit::segment::{DEFAULT_THRESHOLD, GroupVitOptions, Scoring};
use wordmask::labels;
use wordmask::model::Engine;
use wordmask::segment::{EngineOptions, finish, scores};

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
    #[arg(long)]
    pub scoring: Option<Scoring>,
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

    /// Options for `engine`. `threshold`: GroupViT's background threshold (`None` = off).
    pub fn options(&self, engine: Engine, threshold: Option<f32>) -> Result<EngineOptions> {
        let opts = match engine {
            Engine::Dense => {
                if self.scoring.is_some() {
                    bail!("--scoring applies to the groupvit engine only; this checkpoint runs the dense engine");
                }
                let d = DenseOptions::default();
                let window = self.window.unwrap_or(224);
                EngineOptions::Dense(DenseOptions {
                    method: self.method.unwrap_or(d.method),
                    templates: templates::by_name(self.templates.as_deref().unwrap_or("imagenet80"))?,
                    short_side: self.short_side.unwrap_or(d.short_side),
                    slide: (window > 0).then_some((window, self.stride.unwrap_or(112))),
                    logit_scale: self.logit_scale.unwrap_or(DEFAULT_LOGIT_SCALE),
                    pamr: (self.refine.as_deref() == Some("pamr")).then(Pamr::default),
                    ..d
                })
            }
            Engine::GroupVit => {
                for (set, flag) in [
                    (self.method.is_some(), "--method"),
                    (self.logit_scale.is_some(), "--logit-scale"),
                    (self.refine.is_some(), "--refine"),
                ] {
                    if set {
                        bail!("{flag} applies to the dense engine only; this checkpoint runs the groupvit engine");
                    }
                }
                let d = GroupVitOptions::default();
                let window = self.window.unwrap_or(448);
                EngineOptions::GroupVit(GroupVitOptions {
                    templates: templates::by_name(self.templates.as_deref().unwrap_or("single"))?,
                    short_side: self.short_side.unwrap_or(d.short_side),
                    slide: (window > 0).then_some((window, self.stride.unwrap_or(224))),
                    threshold,
                    scoring: self.scoring.unwrap_or_default(),
                    ..d
                })
            }
        };
        opts.validate()?;
        Ok(opts)
    }

    /// How `segment` and `eval` describe the method in their output.
    pub fn describe(opts: &EngineOptions) -> String {
        match opts {
            EngineOptions::Dense(o) => o.method.to_string(),
            EngineOptions::GroupVit(_) => "groupvit".into(),
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
    let (background, threshold) = match engine {
        Engine::Dense => (args.background.as_deref().unwrap_or(BACKGROUND), args.threshold.unwrap_or(0.1)),
        Engine::GroupVit => {
            let default = if args.method.scoring == Some(Scoring::Transformers) { 0.0 } else { DEFAULT_THRESHOLD };
            (args.background.as_deref().unwrap_or("none"), args.threshold.unwrap_or(default))
        }
    };
    let background = background_words(background);
    let opts = args.method.options(engine, (threshold > 0.0).then_some(threshold))?;

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
                "width": seg.width, "height": seg.height, "engine": engine, "method": MethodArgs::describe(&opts),
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
