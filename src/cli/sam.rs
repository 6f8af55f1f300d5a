//! `wordmask sam`: the mask of the object under the points (or in the box), and its name: among
//! the typed words through a CLIP checkpoint (Segment Anything), or from the model itself
//! (Open-Vocabulary SAM: the typed words or its LVIS classifier). With `--boxes`, every box of a
//! COCO file, written as a COCO results file (`sam_boxes.rs`).

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use image::{GrayImage, ImageBuffer, Luma};
use serde_json::json;

use super::files::{ModelFiles, model_paths};
use super::outputs;
use super::sam_boxes::{self, BoxesArgs};
use super::{RuntimeArgs, load, read_image};
use wordmask::block_on;
use wordmask::files::check_outputs;
use wordmask::labels;
use wordmask::preprocess::RgbImage;
use wordmask::segment::Model;
use wordmask::segment::objects::instance_map;
use wordmask::segment::point::{
    AutomaticOptions, Click, NameRequest, Prompt, PromptModel, PromptSession, VocabularyChoice, WordsNamer,
};
use wordmask::segment::{EmbeddingCache, Settings, Templates};

/// `x,y` or `x,y,1` (on the object) or `x,y,0` (not on it), in the image's pixels.
#[derive(Clone, Copy, Debug)]
pub struct PointArg(Click);

impl FromStr for PointArg {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let parts: Vec<&str> = text.split(',').map(str::trim).collect();
        let number = |s: &str| s.parse::<f64>().map_err(|_| format!("'{s}' is not a number"));
        match parts[..] {
            [x, y] => Ok(PointArg(Click { x: number(x)?, y: number(y)?, positive: true })),
            [x, y, label @ ("0" | "1")] => Ok(PointArg(Click { x: number(x)?, y: number(y)?, positive: label == "1" })),
            _ => Err(format!("a point is x,y or x,y,1 (on the object) or x,y,0 (not on it); got '{text}'")),
        }
    }
}

/// `x0,y0,x1,y1` in the image's pixels.
#[derive(Clone, Copy, Debug)]
pub struct BoxArg([f64; 4]);

impl FromStr for BoxArg {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let values: Vec<f64> = text
            .split(',')
            .map(|s| s.trim().parse::<f64>())
            .collect::<Result<_, _>>()
            .map_err(|_| format!("a box is x0,y0,x1,y1 (four numbers); got '{text}'"))?;
        <[f64; 4]>::try_from(values)
            .map(BoxArg)
            .map_err(|_| format!("a box is x0,y0,x1,y1 (four numbers); got '{text}'"))
    }
}

#[derive(Args)]
pub struct SamArgs {
    /// A Segment Anything checkpoint (folder with config.json, model.safetensors and
    /// preprocessor_config.json), e.g. facebook/sam-vit-base or nielsr/slimsam-77-uniform, or an
    /// Open-Vocabulary SAM folder written by tools/convert_ovsam.py.
    #[arg(long)]
    model: String,
    #[arg(long, required_unless_present = "boxes")]
    image: Option<String>,
    #[command(flatten)]
    boxes: BoxesArgs,
    /// A point on the object (x,y or x,y,1) or off it (x,y,0), in pixels; repeat for more.
    #[arg(long = "point")]
    points: Vec<PointArg>,
    /// A box around the object: x0,y0,x1,y1.
    #[arg(long = "box")]
    bbox: Option<BoxArg>,
    /// Every object, no prompt: Segment Anything's automatic mask generation (a grid of point
    /// prompts, filtered by predicted IoU and stability, then box NMS). --out becomes a 16-bit
    /// instance map (0: none, i: the i-th object); --labels with --clip name each object.
    #[arg(long, conflicts_with_all = ["points", "bbox"])]
    everything: bool,
    #[command(flatten)]
    automatic: AutomaticArgs,
    /// Words to name the mask with (commas; `a|b` synonyms). Segment Anything needs --clip for
    /// them; Open-Vocabulary SAM embeds them itself.
    #[arg(long)]
    labels: Option<String>,
    /// The CLIP checkpoint that names a Segment Anything mask (its dense features pooled inside
    /// the mask; with --boxes, among the file's categories).
    #[arg(long)]
    clip: Option<String>,
    /// Open-Vocabulary SAM: name the mask among the typed --labels, or among the LVIS classes of
    /// the checkpoint's own classifier [typed when --labels are given, else lvis].
    #[arg(long, value_enum)]
    vocabulary: Option<VocabularyChoice>,
    /// Prompt templates for the words [the dense engine's default].
    #[arg(long, value_enum)]
    templates: Option<Templates>,
    /// The mask as an 8-bit PNG: 255 inside the object, 0 outside; with --boxes, the masks as a
    /// COCO results file (.json).
    #[arg(long)]
    out: PathBuf,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

/// Automatic mask generation's settings (segment-anything's names and defaults).
#[derive(Args)]
pub struct AutomaticArgs {
    /// --everything: points along each side of the prompt grid.
    #[arg(long, default_value_t = AutomaticOptions::default().points_per_side)]
    points_per_side: usize,
    /// --everything: prompts decoded side by side (more is faster, and takes more memory).
    #[arg(long, default_value_t = AutomaticOptions::default().points_per_batch)]
    points_per_batch: usize,
    /// --everything: keep masks whose predicted IoU is above this.
    #[arg(long, default_value_t = AutomaticOptions::default().pred_iou_thresh)]
    pred_iou_thresh: f32,
    /// --everything: keep masks whose stability score is above this.
    #[arg(long, default_value_t = AutomaticOptions::default().stability_score_thresh)]
    stability_score_thresh: f32,
    /// --everything: how far the logits' cut-off moves for the stability score.
    #[arg(long, default_value_t = AutomaticOptions::default().stability_score_offset)]
    stability_score_offset: f32,
    /// --everything: drop a mask whose box overlaps a better one's by more than this IoU.
    #[arg(long, default_value_t = AutomaticOptions::default().box_nms_thresh)]
    box_nms_thresh: f32,
    /// --everything: fill holes and remove islands of fewer pixels in each mask (0: off).
    #[arg(long, default_value_t = AutomaticOptions::default().min_mask_region_area)]
    min_mask_region_area: usize,
}

impl AutomaticArgs {
    fn options(&self) -> AutomaticOptions {
        AutomaticOptions {
            points_per_side: self.points_per_side,
            points_per_batch: self.points_per_batch,
            pred_iou_thresh: self.pred_iou_thresh,
            stability_score_thresh: self.stability_score_thresh,
            stability_score_offset: self.stability_score_offset,
            box_nms_thresh: self.box_nms_thresh,
            min_mask_region_area: self.min_mask_region_area,
        }
    }
}

pub fn run(args: SamArgs) -> Result<()> {
    if args.boxes.boxes.is_some() {
        return sam_boxes::run(&sam_boxes::Run {
            boxes: &args.boxes,
            model: &args.model,
            labels: args.labels.as_deref(),
            clip: args.clip.as_deref(),
            templates: args.templates,
            out: &args.out,
            json: args.json,
            runtime: args.runtime,
        });
    }
    let image = args.image.clone().context("--image, or --boxes with --images, is needed")?;
    let mut inputs = model_paths(&args.model);
    inputs.extend(args.clip.as_deref().map(model_paths).unwrap_or_default());
    inputs.push(image.clone().into());
    let out = if args.everything { outputs::labels("--out", &args.out) } else { outputs::mask("--out", &args.out) };
    check_outputs(&[out], &inputs.iter().map(PathBuf::as_path).collect::<Vec<_>>())?;
    if args.everything {
        args.automatic.options().validate()?;
    }
    let photo = read_image(&image)?;
    if args.everything {
        return everything(&args, photo);
    }
    let prompt = Prompt { points: args.points.iter().map(|p| p.0).collect(), bbox: args.bbox.map(|b| b.0) };
    prompt.validate(photo.width, photo.height)?;
    let labels = args.labels.as_deref().map(labels::parse).transpose()?;

    let t = Instant::now();
    let files = ModelFiles::open(&args.model)?;
    let name = files.weights_path.display().to_string();
    let device = args.runtime.device()?;
    let model = PromptModel::from_bytes(&files.config, files.weights(), &name, files.preprocessor.as_deref(), &device)?;
    let load_ms = t.elapsed().as_secs_f64() * 1e3;
    check_naming_flags(&args, &model, labels.is_some())?;
    let clip =
        args.clip.as_deref().map(|clip| load(clip, args.runtime).context("loading the CLIP checkpoint of --clip"));
    let clip: Option<Model> = clip.transpose()?;

    let mut session = PromptSession::new(model);
    let encode_ms = block_on(session.encode(photo))?;
    let (settings, mut cache) =
        (Settings { templates: args.templates, ..Settings::default() }, EmbeddingCache::default());
    let words = clip.as_ref().map(|model| WordsNamer { model, settings: &settings, cache: &mut cache });
    let answer = block_on(session.prompt(&prompt, NameRequest { labels, vocabulary: args.vocabulary, words }))?;
    let (mask, naming) = (&answer.mask, &answer.naming);

    let png = GrayImage::from_raw(mask.width as u32, mask.height as u32, mask.mask.iter().map(|&v| v * 255).collect())
        .context("mask size")?;
    outputs::save(&args.out, |out| png.write_to(out, image::ImageFormat::Png))?;
    let (decode_ms, name_ms) = (answer.timings.decode, answer.timings.name);
    if args.json {
        println!(
            "{}",
            json!({
                "width": mask.width, "height": mask.height, "iou": mask.iou, "area": mask.area,
                "model": session.model().engine(),
                "label": naming.as_ref().map(|n| &n.best.label), "probability": naming.as_ref().map(|n| n.best.probability),
                "runner_up": naming.as_ref().and_then(|n| n.runner_up.as_ref()),
                "class_index": naming.as_ref().and_then(|n| n.class_index),
                "timings_ms": {"load": load_ms, "encode": encode_ms, "decode": decode_ms, "name": name_ms},
            })
        );
    } else {
        let share = mask.area as f64 / (mask.width * mask.height) as f64 * 100.0;
        let iou = mask.iou.map(|v| format!(", predicted IoU {v:.3}")).unwrap_or_default();
        println!("mask: {} pixels ({share:.1}% of the image){iou}", mask.area);
        if let Some(n) = naming {
            let runner = n.runner_up.as_ref().map(|r| format!(", then {} {:.1}%", r.label, r.probability * 100.0));
            println!("name: {} {:.1}%{}", n.best.label, n.best.probability * 100.0, runner.unwrap_or_default());
        }
        println!("encode {encode_ms:.0} ms, decode {decode_ms:.0} ms; wrote {}", args.out.display());
    }
    if mask.area == 0 {
        eprintln!("note: the mask is empty (the model found no object there), so it has no name");
    }
    Ok(())
}

/// `--everything`: every object's mask, named when words and a words model are given, as one
/// instance map.
fn everything(args: &SamArgs, photo: RgbImage) -> Result<()> {
    let labels = args.labels.as_deref().map(labels::parse).transpose()?;
    let t = Instant::now();
    let files = ModelFiles::open(&args.model)?;
    let name = files.weights_path.display().to_string();
    let device = args.runtime.device()?;
    let model = PromptModel::from_bytes(&files.config, files.weights(), &name, files.preprocessor.as_deref(), &device)?;
    check_naming_flags(args, &model, labels.is_some())?;
    let clip =
        args.clip.as_deref().map(|clip| load(clip, args.runtime).context("loading the CLIP checkpoint of --clip"));
    let clip: Option<Model> = clip.transpose()?;
    let load_ms = t.elapsed().as_secs_f64() * 1e3;

    let (width, height) = (photo.width, photo.height);
    let mut session = PromptSession::new(model);
    let encode_ms = block_on(session.encode(photo))?;
    let (settings, mut cache) =
        (Settings { templates: args.templates, ..Settings::default() }, EmbeddingCache::default());
    let words = clip.as_ref().map(|model| WordsNamer { model, settings: &settings, cache: &mut cache });
    let request = NameRequest { labels: labels.clone(), vocabulary: args.vocabulary, words };
    let t = Instant::now();
    let quiet = args.json;
    let objects = block_on(session.everything(&args.automatic.options(), request, |done, total| {
        if !quiet {
            eprint!("\rprompts {done}/{total}");
        }
    }))?;
    if !quiet {
        eprintln!();
    }
    let generate_ms = t.elapsed().as_secs_f64() * 1e3;
    let map = instance_map(&objects, width, height);
    let png = ImageBuffer::<Luma<u16>, Vec<u16>>::from_raw(width as u32, height as u32, map).context("map size")?;
    outputs::save(&args.out, |out| png.write_to(out, image::ImageFormat::Png))?;
    let counts = session.counts(&objects, labels.as_deref(), args.vocabulary);
    if args.json {
        let counts: serde_json::Map<String, serde_json::Value> =
            counts.into_iter().map(|(w, n)| (w, json!(n))).collect();
        println!(
            "{}",
            json!({
                "width": width, "height": height, "model": session.model().engine(), "objects": objects,
                "counts": counts,
                "timings_ms": {"load": load_ms, "encode": encode_ms, "generate": generate_ms},
            })
        );
    } else {
        println!("{} objects", objects.len());
        for (word, n) in counts {
            println!("{word} x{n}");
        }
        println!("encode {encode_ms:.0} ms, masks {generate_ms:.0} ms; wrote {}", args.out.display());
    }
    Ok(())
}

/// The naming flags against what the model is: refused before any work when they ask for what
/// it cannot do.
fn check_naming_flags(args: &SamArgs, model: &PromptModel, labels: bool) -> Result<()> {
    if model.names_masks() && args.clip.is_some() {
        anyhow::bail!("an Open-Vocabulary SAM checkpoint names its masks itself: drop --clip");
    }
    if !model.names_masks() && labels && args.clip.is_none() {
        anyhow::bail!("a Segment Anything checkpoint names masks through a CLIP checkpoint: add --clip");
    }
    if !model.names_masks() && args.vocabulary.is_some() {
        anyhow::bail!("--vocabulary is for Open-Vocabulary SAM checkpoints; this one is Segment Anything");
    }
    if args.clip.is_some() && !labels {
        anyhow::bail!("--clip names the mask among --labels: give them, e.g. --labels \"cat, dog\"");
    }
    if args.vocabulary == Some(VocabularyChoice::Typed) && !labels {
        anyhow::bail!("--vocabulary typed names the mask among --labels: give them, e.g. --labels \"cat, dog\"");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_and_boxes_parse_with_reasons() {
        let p: PointArg = "10, 20.5".parse().unwrap();
        assert_eq!((p.0.x, p.0.y, p.0.positive), (10.0, 20.5, true));
        assert!(!"3,4,0".parse::<PointArg>().unwrap().0.positive);
        assert!("3,4,2".parse::<PointArg>().unwrap_err().contains("x,y,0"));
        assert!("1,2,3".parse::<BoxArg>().unwrap_err().contains("four numbers"));
    }
}
