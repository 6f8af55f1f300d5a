//! `wordmask segment`: label map, overlay, scores and a JSON summary for one image.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::Args;
use serde_json::json;

use super::files::model_paths;
use super::outputs::{self, write_labels_png, write_npy, write_overlay};
use super::{ModelArgs, load, read_image};
use wordmask::files::check_outputs;
use wordmask::labels;
use wordmask::segment::{EmbeddingCache, Settings, segment};

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
    settings: Settings,
    /// Label map PNG (0 = unlabelled, i = i-th label; 8-bit up to 255 labels, 16-bit above).
    #[arg(long)]
    out: PathBuf,
    /// The photo with coloured masks and a legend.
    #[arg(long)]
    overlay: Option<PathBuf>,
    /// Per-class scores, float32 [classes, H, W] (.npy): probabilities for the dense engine,
    /// GroupViT's group-class scores for groupvit.
    #[arg(long)]
    scores: Option<PathBuf>,
    /// Print a JSON summary.
    #[arg(long)]
    json: bool,
}

pub fn run(args: SegmentArgs) -> Result<()> {
    let user_labels = labels::parse(&args.labels)?;
    let mut outputs = vec![outputs::labels("--out", &args.out)];
    outputs.extend(args.overlay.as_deref().map(|p| outputs::overlay("--overlay", p)));
    outputs.extend(args.scores.as_deref().map(|p| outputs::scores("--scores", p)));
    let mut inputs = model_paths(&args.model.model);
    inputs.push(args.image.clone().into());
    check_outputs(&outputs, &inputs.iter().map(PathBuf::as_path).collect::<Vec<_>>())?;
    let photo = read_image(&args.image)?;

    let start = Instant::now();
    let model = load(&args.model.model, args.model.runtime)?;
    let load_ms = start.elapsed().as_secs_f64() * 1e3;
    let out =
        wordmask::block_on(segment(&model, &photo, &user_labels, &args.settings, &mut EmbeddingCache::default()))?;
    let (seg, plan, t) = (&out.segmentation, &out.plan, out.timings);

    write_labels_png(seg, &args.out)?;
    if let Some(path) = &args.overlay {
        write_overlay(seg, &photo, 0.55, path)?;
    }
    if let Some(path) = &args.scores {
        write_npy(seg, path)?;
    }
    let (shares, unlabelled) = seg.shares();
    if args.json {
        println!(
            "{}",
            json!({
                "width": seg.width, "height": seg.height, "engine": plan.engine, "method": plan.method,
                "threshold": plan.threshold,
                "labels": shares, "unlabelled": unlabelled, "background": plan.background,
                "scores_shape": [seg.num_classes(), seg.height, seg.width],
                "timings_ms": {"load": load_ms, "text": t.text, "image": t.image + t.scores + t.finish,
                               "stages": t},
                "peak_memory_mb": super::peak_memory_mb(),
            })
        );
    } else {
        for s in &shares {
            println!("{:>6.1}%  {}", s.share * 100.0, s.label);
        }
        println!("{:>6.1}%  (unlabelled)", unlabelled * 100.0);
        println!(
            "text {:.0} ms, image {:.0} ms (network {:.0}, scores {:.0}, label map {:.0}); wrote {}",
            t.text,
            t.image + t.scores + t.finish,
            t.image,
            t.scores,
            t.finish,
            args.out.display()
        );
    }
    Ok(())
}
