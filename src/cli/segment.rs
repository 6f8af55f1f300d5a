//! `wordmask segment`: label map, overlay, scores and a JSON summary for one image (a folder
//! of them: `folder`; the frames of a video: `video`).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;

use image::{ImageBuffer, Luma};

use super::files::model_paths;
use super::folder::{self, FolderArgs};
use super::outputs::{self, write_labels_png, write_npy, write_overlay};
use super::video;
use super::{ModelArgs, load, load_prompt_model, read_image};
use wordmask::files::check_outputs;
use wordmask::labels;
use wordmask::segment::objects::{counts, instance_map};
use wordmask::segment::point::PromptSession;
use wordmask::segment::refine::{RefineOptions, sharpen};
use wordmask::segment::temporal::{TemporalOptions, VIDEO_STRENGTH};
use wordmask::segment::{EmbeddingCache, Settings, segment};

#[derive(Args)]
pub struct SegmentArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The photo (PNG or JPEG).
    #[arg(long, required_unless_present_any = ["images", "video"])]
    image: Option<String>,
    /// A video: a .y4m file, a folder of frames (PNG or JPEG, in the order of their names), or
    /// a file ffmpeg on the PATH decodes (.mp4, .webm, ...). --out is then a folder that gets a
    /// label PNG a frame (000001.png, ...), the followed objects' ids (objects/) and
    /// video.json; --overlay, a folder of overlays. With --sam, sharp edges on every frame,
    /// Segment Anything prompted by the previous frame's objects.
    #[arg(long, conflicts_with_all = ["image", "images", "scores", "instances"])]
    pub video: Option<PathBuf>,
    /// --video: how much each frame's scores lean on the frames before, in [0, 1] (0: off;
    /// 0.7 when not given); reset where the picture changed and at scene cuts.
    #[arg(long, requires = "video", value_parser = |t: &str| strength(t))]
    pub smooth: Option<f32>,
    #[command(flatten)]
    pub folder: FolderArgs,
    /// Labels separated by commas or newlines; `person|people` are synonyms of one class.
    #[arg(long)]
    pub labels: String,
    #[command(flatten)]
    pub settings: Settings,
    /// Label map PNG (0 = unlabelled, i = i-th label; 8-bit up to 255 labels, 16-bit above);
    /// with --images, the folder the exports go to; with --video, the folder of label maps.
    #[arg(long)]
    pub out: PathBuf,
    /// The photo with coloured masks and a legend.
    #[arg(long)]
    overlay: Option<PathBuf>,
    /// Per-class scores, float32 [classes, H, W] (.npy): probabilities for the dense engine,
    /// GroupViT's group-class scores for groupvit.
    #[arg(long)]
    scores: Option<PathBuf>,
    /// Sharp edges and objects: a Segment Anything checkpoint (SAM, SlimSAM or Open-Vocabulary SAM folder) that
    /// turns each word's regions into object masks following the image's edges.
    #[arg(long)]
    pub sam: Option<String>,
    /// The objects as a 16-bit PNG of ids (0: none, i: the i-th object of --json's list); needs
    /// --sam.
    #[arg(long, requires = "sam")]
    instances: Option<PathBuf>,
    /// Print a JSON summary.
    #[arg(long)]
    json: bool,
}

/// A smoothing strength as typed, refused outside [0, 1] (so the CLI names the flag).
fn strength(text: &str) -> std::result::Result<f32, String> {
    let s: f32 = text.trim().parse().map_err(|e| format!("{e}"))?;
    TemporalOptions::with_strength(s).map(|o| o.strength).map_err(|e| e.to_string())
}

pub fn run(args: SegmentArgs) -> Result<()> {
    if let Some(input) = &args.video {
        let run = video::Run {
            input,
            model: &args.model,
            labels: &args.labels,
            settings: &args.settings,
            sam: args.sam.as_deref(),
            smooth: args.smooth.unwrap_or(VIDEO_STRENGTH),
            out: &args.out,
            overlay: args.overlay.as_deref(),
            json: args.json,
        };
        return video::run(&run);
    }
    if args.folder.images.is_some() {
        let run = folder::Run {
            folder: &args.folder,
            model: &args.model,
            labels: &args.labels,
            settings: &args.settings,
            sam: args.sam.as_deref(),
            out: &args.out,
        };
        return folder::run(&run);
    }
    let image = args.image.clone().context("--image or --images is needed")?;
    let user_labels = labels::parse(&args.labels)?;
    let mut outputs = vec![outputs::labels("--out", &args.out)];
    outputs.extend(args.overlay.as_deref().map(|p| outputs::overlay("--overlay", p)));
    outputs.extend(args.scores.as_deref().map(|p| outputs::scores("--scores", p)));
    outputs.extend(args.instances.as_deref().map(|p| outputs::labels("--instances", p)));
    let mut inputs = model_paths(&args.model.model);
    inputs.extend(args.sam.as_deref().map(model_paths).unwrap_or_default());
    inputs.push(image.clone().into());
    check_outputs(&outputs, &inputs.iter().map(PathBuf::as_path).collect::<Vec<_>>())?;
    let photo = read_image(&image)?;

    let start = Instant::now();
    let model = load(&args.model.model, args.model.runtime)?;
    let sam = args.sam.as_deref().map(|dir| load_prompt_model(dir, args.model.runtime)).transpose()?;
    let load_ms = start.elapsed().as_secs_f64() * 1e3;
    let mut out =
        wordmask::block_on(segment(&model, &photo, &user_labels, &args.settings, &mut EmbeddingCache::default()))?;
    let sharpened = match sam {
        Some(sam) => {
            let mut session = PromptSession::new(sam);
            let options = RefineOptions::default();
            Some(wordmask::block_on(sharpen(&mut out.segmentation, &photo, &mut session, &options))?)
        }
        None => None,
    };
    let (seg, plan, t) = (&out.segmentation, &out.plan, out.timings);
    if let (Some(path), Some((objects, _, _))) = (&args.instances, &sharpened) {
        let map = instance_map(objects, seg.width, seg.height);
        let png = ImageBuffer::<Luma<u16>, Vec<u16>>::from_raw(seg.width as u32, seg.height as u32, map)
            .context("instance map size")?;
        outputs::save(path, |out| png.write_to(out, image::ImageFormat::Png))?;
    }
    let objects = sharpened.as_ref().map(|(objects, encode, prompts)| {
        let counts: serde_json::Map<String, serde_json::Value> =
            counts(objects, &seg.labels).into_iter().map(|(w, n)| (w, json!(n))).collect();
        json!({"objects": objects, "counts": counts, "timings_ms": {"encode": encode, "prompts": prompts}})
    });

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
                "sharp_edges": objects,
            })
        );
    } else {
        let counts = sharpened.as_ref().map(|(objects, _, _)| counts(objects, &seg.labels));
        for (k, s) in shares.iter().enumerate() {
            let count = counts.as_ref().map(|c| format!("  x{}", c[k].1)).unwrap_or_default();
            println!("{:>6.1}%  {}{count}", s.share * 100.0, s.label);
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
