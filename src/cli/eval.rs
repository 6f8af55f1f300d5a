//! `wordmask eval`: mIoU of either engine over a dataset in its mmsegmentation folder layout,
//! with a progress line and a final table; the few-shot benchmarks' episodes in [`fss`].

mod fss;

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::json;

use super::images::read_label_png;
use super::{ModelArgs, load, read_image};
use wordmask::dataset::{Format, Protocol, Sample, Split, fold_classes, samples};
use wordmask::labels::{Label, parse_class_file};
use wordmask::metrics::{ConfusionMatrix, IGNORE_INDEX};
use wordmask::segment::{EmbeddingCache, LabelMap, Model, Settings, Words, segment};

#[derive(Args)]
pub struct EvalArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Dataset root in the format's folder layout (see README).
    #[arg(long)]
    dataset: PathBuf,
    #[arg(long, value_enum)]
    format: Format,
    /// Class-name file (one class per line, synonyms separated by commas); default: the
    /// protocol's list where its repository has its own, else the format's.
    #[arg(long)]
    classes: Option<PathBuf>,
    /// Evaluate only the first N images (with --protocol fss, episodes).
    #[arg(long)]
    limit: Option<usize>,
    /// With --protocol fss: the folder of HSNet's split lists (`pascal/val/fold<N>.txt`,
    /// `coco/val/fold<N>.pkl`; for mosaic4, optionally `fss/test.txt`), as HSNet's `data/splits`
    /// and Fusioner's `dataset/splits` hold them.
    #[arg(long)]
    splits: Option<PathBuf>,
    /// With --protocol fss on pascal5i or coco20i: print the fold's episodes (`<index> <image>
    /// <class>`, the order they are scored in) and stop; needs neither the model nor the images.
    #[arg(long)]
    list_episodes: bool,
    /// Mosaic-4: how many mosaics to build (four episodes each).
    #[arg(long, default_value_t = 1000)]
    mosaics: usize,
    /// Mosaic-4: the seed its mosaics are drawn from.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Score only the classes of this fold (PASCAL-5i for voc21, COCO-20i for coco-object; the
    /// classes `train fusioner --fold N` held out): only they are typed, the other classes
    /// count as background, and the mIoU is their mean (background's IoU shown apart). With
    /// pascal5i or coco20i, the fold whose episodes are scored.
    #[arg(long)]
    fold: Option<usize>,
    /// Datasets with a background class 0 (voc21, context60, coco-object) are evaluated as
    /// each engine's repository does: the dense engine embeds class 0's name and gives it the
    /// pixels under its threshold (0.1); GroupViT leaves the name out and its background
    /// threshold (0.95; 0.35 for context60) makes class 0. Other datasets label every pixel
    /// (threshold 0). --threshold overrides either.
    #[command(flatten)]
    settings: Settings,
    /// Evaluate as a paper's repository does on this dataset: its short side, rounding,
    /// window, stride, templates, logit scale, threshold and position resampling (see
    /// docs/cli.md); settings given beside it override its. `fss` scores pascal5i, coco20i and
    /// mosaic4 by episodes, as Fusioner's repository does.
    #[arg(long, value_enum)]
    protocol: Option<Protocol>,
    /// Score saved predictions instead of running a model: a folder of label PNGs named like
    /// the dataset's label files and encoded the same way (with --protocol fss, one mask per
    /// episode, `<image stem>__<class:02>.png`, non-zero the class).
    #[arg(long)]
    predictions: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

/// Where predictions come from.
enum Source {
    /// A model, the classes it embeds, and whether label 0 of its maps is class 0 (the
    /// engine's background) or "unlabelled" (then class i is label i + 1).
    Model {
        model: Box<Model>,
        classes: Vec<Label>,
        settings: Settings,
        zero_is_class_0: bool,
    },
    Saved(PathBuf),
}

/// The classes scored, and how ground-truth values map onto them: the format's values, or
/// with a fold class 0 and the fold's classes (every other value becomes 0).
fn scored_classes(args: &EvalArgs) -> Result<(Vec<Label>, Vec<u8>)> {
    // A protocol's repository may prompt with its own class list (GroupViT's mmseg names, say).
    let own = args.protocol.and_then(|p| p.classes(args.format)).or(args.format.classes());
    let classes: Vec<Label> = match (&args.classes, own) {
        (Some(path), _) => parse_class_file(
            &std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?,
        )?,
        (None, Some(text)) => parse_class_file(text)?,
        (None, None) => bail!("--format folder needs --classes FILE"),
    };
    let Some(fold) = args.fold else {
        return Ok((classes, (0..=255).collect()));
    };
    let held = fold_classes(args.format, fold)?;
    if let Some(&v) = held.iter().find(|&&v| v as usize >= classes.len()) {
        bail!("fold {fold} needs class {v}, but the class list has {} lines", classes.len());
    }
    let mut remap: Vec<u8> = (0..=255u16).map(|v| if v == IGNORE_INDEX as u16 { IGNORE_INDEX } else { 0 }).collect();
    for (i, &v) in held.iter().enumerate() {
        remap[v as usize] = i as u8 + 1;
    }
    let kept = std::iter::once(classes[0].clone()).chain(held.iter().map(|&v| classes[v as usize].clone())).collect();
    Ok((kept, remap))
}

impl Source {
    /// Saved predictions, or the model with the settings of the dataset's protocol: datasets
    /// with a background class 0 take each engine's own threshold for it (engines that leave
    /// class 0's name out make it with their threshold alone), the others label every pixel.
    fn new(args: &EvalArgs, classes: &[Label]) -> Result<Source> {
        if let Some(dir) = &args.predictions {
            return Ok(Source::Saved(dir.clone()));
        }
        let model = load(&args.model.model, args.model.runtime)?;
        let given = match args.protocol {
            Some(paper) => args.settings.clone().or(paper.settings(args.format)?),
            None => args.settings.clone(),
        };
        let protocol = args.format.background().map(|d| model.dataset_protocol(d));
        let threshold = given.threshold.unwrap_or(protocol.map_or(0.0, |p| p.threshold));
        // The class list is the vocabulary: no background words unless asked for.
        let background = given.background.clone().or(Some(Words(Vec::new())));
        let settings = Settings { threshold: Some(threshold), background, ..given };
        let leave_out = protocol.is_some_and(|p| !p.embeds_background_name) && threshold > 0.0;
        let embedded = if leave_out { classes[1..].to_vec() } else { classes.to_vec() };
        Ok(Source::Model { model: Box::new(model), classes: embedded, settings, zero_is_class_0: leave_out })
    }

    /// The engine, method and threshold, for the summary.
    fn summary(&self) -> Result<serde_json::Value> {
        Ok(match self {
            Source::Model { model, settings, .. } => {
                let plan = model.plan(settings)?;
                json!({"engine": plan.engine, "method": plan.method, "threshold": plan.threshold, "windows": plan.windows})
            }
            Source::Saved(_) => {
                json!({"engine": null, "method": "saved predictions", "threshold": null, "windows": null})
            }
        })
    }

    /// The predicted class of every pixel of `sample`, whose label map is `w x h`.
    fn predict(
        &self,
        sample: &Sample,
        (w, h): (usize, usize),
        remap: &dyn Fn(u8) -> u8,
        cache: &mut EmbeddingCache,
    ) -> Result<Vec<u8>> {
        match self {
            Source::Model { model, classes, settings, zero_is_class_0 } => {
                let image = read_image(&sample.image.to_string_lossy())?;
                if (w, h) != (image.width, image.height) {
                    bail!("{} is {w}x{h} but its image is {}x{}", sample.label.display(), image.width, image.height);
                }
                let segmented = wordmask::block_on(segment(model, &image, classes, settings, cache))?;
                let map = match segmented.segmentation.label_map {
                    LabelMap::Narrow(map) => map,
                    LabelMap::Wide(_) => bail!("eval compares 8-bit label PNGs: at most 255 classes"),
                };
                if *zero_is_class_0 {
                    Ok(map)
                } else {
                    // Unlabelled pixels (under the threshold) go to class 0, the background.
                    Ok(map.into_iter().map(|l| l.saturating_sub(1)).collect())
                }
            }
            Source::Saved(dir) => {
                let path = dir.join(sample.label.file_name().unwrap_or_default());
                let (pw, ph, pred) = read_label_png(&path)?;
                if (pw, ph) != (w, h) {
                    bail!("{} is {pw}x{ph} but the ground truth is {w}x{h}", path.display());
                }
                Ok(pred.into_iter().map(remap).collect())
            }
        }
    }
}

pub fn run(args: EvalArgs) -> Result<()> {
    if args.format.is_episodes() || args.protocol == Some(Protocol::Fss) {
        return fss::run(&args);
    }
    let (classes, remap) = scored_classes(&args)?;
    let remap = |v: u8| remap[args.format.map_gt(v) as usize];
    if args.limit == Some(0) {
        bail!("--limit 0 would evaluate no image: give at least 1");
    }
    let mut samples = samples(args.format, &args.dataset, Split::Val)?;
    if let Some(n) = args.limit {
        samples.truncate(n);
    }
    let source = Source::new(&args, &classes)?;
    let summary = source.summary()?;
    let mut cache = EmbeddingCache::default();
    let mut matrix = ConfusionMatrix::new(classes.len());
    let start = Instant::now();
    for (i, sample) in samples.iter().enumerate() {
        let (w, h, gt) = read_label_png(&sample.label)?;
        let prediction = source.predict(sample, (w, h), &remap, &mut cache)?;
        let gt: Vec<u8> = gt.into_iter().map(remap).collect();
        matrix.add(&prediction, &gt)?;
        let elapsed = start.elapsed().as_secs_f64();
        let eta = elapsed / (i + 1) as f64 * (samples.len() - i - 1) as f64;
        eprint!(
            "\r[{}/{}] mIoU so far {:.1}%  {:.1} s/image  eta {:.0} s   ",
            i + 1,
            samples.len(),
            matrix.scores().miou * 100.0,
            elapsed / (i + 1) as f64,
            eta
        );
        std::io::stderr().flush().ok();
    }
    eprintln!();
    report(&args, &classes, samples.len(), &matrix, &summary);
    Ok(())
}

/// The scores as JSON or a table.
fn report(args: &EvalArgs, classes: &[Label], images: usize, matrix: &ConfusionMatrix, summary: &serde_json::Value) {
    let scores = matrix.scores();
    // With a fold, the mean is over the fold's classes (background's IoU is shown, not averaged).
    let fold_miou = args.fold.map(|_| {
        let ious: Vec<f64> = scores.iou[1..].iter().flatten().copied().collect();
        if ious.is_empty() { 0.0 } else { ious.iter().sum::<f64>() / ious.len() as f64 }
    });
    if args.json {
        let per_class: Vec<_> =
            classes.iter().zip(&scores.iou).map(|(c, iou)| json!({"class": c.name, "iou": iou})).collect();
        let mut out = json!({"images": images, "miou": fold_miou.unwrap_or(scores.miou), "pixel_accuracy": scores.pixel_accuracy, "classes": per_class, "engine": summary["engine"], "method": summary["method"], "threshold": summary["threshold"], "windows": summary["windows"]});
        if let Some(fold) = args.fold {
            out["fold"] = json!(fold);
            out["miou_with_background"] = json!(scores.miou);
        }
        println!("{out}");
    } else {
        println!("| {:<28} | {:>8} |", "class", "IoU %");
        println!("|{:-<30}|{:-<10}|", "", "");
        for (c, iou) in classes.iter().zip(&scores.iou) {
            let value = iou.map(|v| format!("{:.2}", v * 100.0)).unwrap_or_else(|| "n/a".into());
            println!("| {:<28} | {:>8} |", c.name, value);
        }
        println!("|{:-<30}|{:-<10}|", "", "");
        match (args.fold, fold_miou) {
            (Some(fold), Some(m)) => {
                println!("| {:<28} | {:>8.2} |", format!("mIoU, fold {fold} classes"), m * 100.0);
                println!("| {:<28} | {:>8.2} |", "mIoU with background", scores.miou * 100.0);
            }
            _ => println!("| {:<28} | {:>8.2} |", "mIoU", scores.miou * 100.0),
        }
        println!("| {:<28} | {:>8.2} |", "pixel accuracy", scores.pixel_accuracy * 100.0);
        println!(
            "{images} images, engine {}, method {}, threshold {}",
            summary["engine"].as_str().unwrap_or("none"),
            summary["method"].as_str().unwrap_or(""),
            summary["threshold"]
        );
    }
}
