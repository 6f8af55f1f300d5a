//! `wordmask eval`: mIoU of either engine over a dataset in its mmsegmentation folder layout,
//! with a progress line and a final table.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use serde_json::json;

use super::{ModelArgs, load, read_image};
use wordmask::labels::{Label, parse_class_file};
use wordmask::metrics::{ConfusionMatrix, IGNORE_INDEX};
use wordmask::segment::{BackgroundDataset, EmbeddingCache, LabelMap, Model, Settings, Words, segment};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Voc21,
    Voc20,
    Context60,
    Context59,
    CocoObject,
    CocoStuff,
    Ade20k,
    Cityscapes,
    Camvid,
    /// DIR/images/* with DIR/labels/<stem>.png; needs --classes.
    Folder,
}

impl Format {
    /// The class list shipped for the format (classes/*.txt, from the NACLIP/SCLIP configs).
    pub(super) fn classes(self) -> Option<&'static str> {
        Some(match self {
            Format::Voc21 => include_str!("../../classes/voc21.txt"),
            Format::Voc20 => include_str!("../../classes/voc20.txt"),
            Format::Context60 => include_str!("../../classes/context60.txt"),
            Format::Context59 => include_str!("../../classes/context59.txt"),
            Format::CocoObject => include_str!("../../classes/coco-object.txt"),
            Format::CocoStuff => include_str!("../../classes/coco-stuff.txt"),
            Format::Ade20k => include_str!("../../classes/ade20k.txt"),
            Format::Cityscapes => include_str!("../../classes/cityscapes.txt"),
            Format::Camvid => include_str!("../../classes/camvid.txt"),
            Format::Folder => return None,
        })
    }

    /// The dataset family, for formats whose class 0 is background (each engine has its own
    /// threshold for those).
    fn background(self) -> Option<BackgroundDataset> {
        match self {
            Format::Voc21 => Some(BackgroundDataset::PascalVoc),
            Format::Context60 => Some(BackgroundDataset::PascalContext),
            Format::CocoObject => Some(BackgroundDataset::Coco),
            _ => None,
        }
    }

    /// Ground-truth value -> class index (or the ignore index).
    fn map_gt(self, v: u8) -> u8 {
        match self {
            // mmsegmentation's reduce_zero_label: 0 (background/other) is ignored, k -> k - 1.
            Format::Voc20 | Format::Context59 | Format::Ade20k => {
                if v == 0 || v == IGNORE_INDEX {
                    IGNORE_INDEX
                } else {
                    v - 1
                }
            }
            // SegNet CamVid: 11 is void.
            Format::Camvid if v >= 11 => IGNORE_INDEX,
            _ => v,
        }
    }
}

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
    /// format's own list.
    #[arg(long)]
    classes: Option<PathBuf>,
    /// Evaluate only the first N images.
    #[arg(long)]
    limit: Option<usize>,
    /// Score only the classes of this fold (PASCAL-5i for voc21, COCO-20i for coco-object; the
    /// classes `train fusioner --fold N` held out): only they are typed, the other classes
    /// count as background, and the mIoU is their mean (background's IoU shown apart).
    #[arg(long)]
    fold: Option<usize>,
    /// Datasets with a background class 0 (voc21, context60, coco-object) are evaluated as
    /// each engine's repository does: the dense engine embeds class 0's name and gives it the
    /// pixels under its threshold (0.1); GroupViT leaves the name out and its background
    /// threshold (0.95; 0.35 for context60) makes class 0. Other datasets label every pixel
    /// (threshold 0). --threshold overrides either.
    #[command(flatten)]
    settings: Settings,
    /// Score saved predictions instead of running a model: a folder of label PNGs named like
    /// the dataset's label files and encoded the same way.
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

pub(super) struct Sample {
    pub image: PathBuf,
    pub label: PathBuf,
}

fn files(dir: &Path, suffix: &str) -> Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    out.sort();
    Ok(out)
}

fn stem(p: &Path) -> String {
    p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

/// The split of a dataset: `val` is what eval scores, `train` what `train` learns from.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Split {
    Train,
    Val,
}

/// Pairs of (image, label) files for `split`.
pub(super) fn samples(format: Format, root: &Path, split: Split) -> Result<Vec<Sample>> {
    let (list_name, coco, ade) = match split {
        Split::Train => ("train", "train2017", "training"),
        Split::Val => ("val", "val2017", "validation"),
    };
    let from_list = |list: &str, images: &str, labels: &str| -> Result<Vec<Sample>> {
        let list = root.join(list);
        let text =
            std::fs::read_to_string(&list).with_context(|| format!("cannot read the split list {}", list.display()))?;
        Ok(text
            .split_whitespace()
            .map(|n| Sample {
                image: root.join(images).join(format!("{n}.jpg")),
                label: root.join(labels).join(format!("{n}.png")),
            })
            .collect())
    };
    let paired = |images: &str, ext: &str, labels: &str, label_of: &dyn Fn(&str) -> String| -> Result<Vec<Sample>> {
        Ok(files(&root.join(images), ext)?
            .into_iter()
            .map(|image| {
                let label = root.join(labels).join(label_of(&stem(&image)));
                Sample { image, label }
            })
            .collect())
    };
    let samples = match format {
        Format::Voc21 | Format::Voc20 => {
            // With SBD's augmented labels (SegmentationClassAug, as HSNet's PASCAL-5i layout
            // has them), training reads the augmented list (mmsegmentation's aug.txt, or
            // trainaug.txt) when there is one.
            let aug = root.join("SegmentationClassAug").is_dir();
            let aug_list = ["aug.txt", "trainaug.txt"]
                .into_iter()
                .map(|f| format!("ImageSets/Segmentation/{f}"))
                .find(|f| root.join(f).is_file());
            match (split, aug, aug_list) {
                (Split::Train, true, Some(list)) => from_list(&list, "JPEGImages", "SegmentationClassAug")?,
                (Split::Train, true, None) => {
                    from_list("ImageSets/Segmentation/train.txt", "JPEGImages", "SegmentationClassAug")?
                }
                _ => from_list(&format!("ImageSets/Segmentation/{list_name}.txt"), "JPEGImages", "SegmentationClass")?,
            }
        }
        Format::Context60 | Format::Context59 => from_list(
            &format!("ImageSets/SegmentationContext/{list_name}.txt"),
            "JPEGImages",
            "SegmentationClassContext",
        )?,
        Format::CocoObject => paired(&format!("images/{coco}"), ".jpg", &format!("annotations/{coco}"), &|s| {
            format!("{s}_instanceTrainIds.png")
        })?,
        Format::CocoStuff => paired(&format!("images/{coco}"), ".jpg", &format!("annotations/{coco}"), &|s| {
            format!("{s}_labelTrainIds.png")
        })?,
        Format::Ade20k => {
            paired(&format!("images/{ade}"), ".jpg", &format!("annotations/{ade}"), &|s| format!("{s}.png"))?
        }
        Format::Camvid => paired("val", ".png", "valannot", &|s| format!("{s}.png"))?,
        Format::Folder => {
            // DIR/train.txt or DIR/val.txt (image stems), when present, picks the split.
            let all = paired("images", "", "labels", &|s| format!("{s}.png"))?;
            match std::fs::read_to_string(root.join(format!("{list_name}.txt"))) {
                Ok(list) => {
                    let keep: Vec<&str> = list.split_whitespace().collect();
                    all.into_iter().filter(|s| keep.contains(&stem(&s.image).as_str())).collect()
                }
                Err(_) => all,
            }
        }
        Format::Cityscapes => {
            let mut out = Vec::new();
            for city in files(&root.join("leftImg8bit/val"), "")? {
                for image in files(&city, "_leftImg8bit.png")? {
                    let name = stem(&image).trim_end_matches("_leftImg8bit").to_string();
                    let label = root
                        .join("gtFine/val")
                        .join(city.file_name().unwrap_or_default())
                        .join(format!("{name}_gtFine_labelTrainIds.png"));
                    out.push(Sample { image, label });
                }
            }
            out
        }
    };
    if samples.is_empty() {
        bail!(
            "no images found in {} for the {:?} layout (see the README for the folder layouts)",
            root.display(),
            format
        );
    }
    Ok(samples)
}

/// An 8-bit single-channel or palette PNG's raw values (class indices, not colours).
pub(super) fn read_label_png(path: &Path) -> Result<(usize, usize, Vec<u8>)> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot open label {}", path.display()))?;
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    decoder.set_transformations(png::Transformations::IDENTITY);
    let mut reader = decoder.read_info().with_context(|| format!("{} is not a readable PNG", path.display()))?;
    let mut buf = vec![0; reader.output_buffer_size().context("label PNG too large")?];
    let info = reader.next_frame(&mut buf).with_context(|| format!("cannot decode {}", path.display()))?;
    let ok = info.bit_depth == png::BitDepth::Eight
        && matches!(info.color_type, png::ColorType::Grayscale | png::ColorType::Indexed);
    if !ok {
        bail!(
            "{}: label maps must be 8-bit grey or palette PNGs, this one is {:?} {:?}",
            path.display(),
            info.color_type,
            info.bit_depth
        );
    }
    let (w, h) = (info.width as usize, info.height as usize);
    let data = (0..h).flat_map(|y| buf[y * info.line_size..y * info.line_size + w].to_vec()).collect();
    Ok((w, h, data))
}

/// The class values of fold `fold`: PASCAL-5i (voc21, values 1-20) or COCO-20i (coco-object,
/// values 1-80), as HSNet splits them.
pub(super) fn fold_classes(format: Format, fold: usize) -> Result<Vec<u8>> {
    match format {
        Format::Voc21 if fold < 4 => Ok((1..=5).map(|i| (fold * 5 + i) as u8).collect()),
        Format::CocoObject if fold < 4 => Ok((0..20).map(|v| (4 * v + fold + 1) as u8).collect()),
        Format::Voc21 | Format::CocoObject => bail!("--fold must be 0, 1, 2 or 3, got {fold}"),
        _ => bail!("--fold applies to voc21 (PASCAL-5i) and coco-object (COCO-20i)"),
    }
}

pub fn run(args: EvalArgs) -> Result<()> {
    let mut classes: Vec<Label> = match (&args.classes, args.format.classes()) {
        (Some(path), _) => parse_class_file(
            &std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?,
        )?,
        (None, Some(text)) => parse_class_file(text)?,
        (None, None) => bail!("--format folder needs --classes FILE"),
    };
    // With a fold: class 0 and the fold's classes; every other class value becomes 0.
    let mut remap: Vec<u8> = (0..=255).collect();
    if let Some(fold) = args.fold {
        let held = fold_classes(args.format, fold)?;
        if let Some(&v) = held.iter().find(|&&v| v as usize >= classes.len()) {
            bail!("fold {fold} needs class {v}, but the class list has {} lines", classes.len());
        }
        remap = (0..=255u16).map(|v| if v == IGNORE_INDEX as u16 { IGNORE_INDEX } else { 0 }).collect();
        for (i, &v) in held.iter().enumerate() {
            remap[v as usize] = i as u8 + 1;
        }
        classes =
            std::iter::once(classes[0].clone()).chain(held.iter().map(|&v| classes[v as usize].clone())).collect();
    }
    let mut samples = samples(args.format, &args.dataset, Split::Val)?;
    if let Some(n) = args.limit {
        samples.truncate(n);
    }
    let source = match &args.predictions {
        Some(dir) => Source::Saved(dir.clone()),
        None => {
            let model = load(&args.model.model, args.model.runtime)?;
            let protocol = args.format.background().map(|d| model.dataset_protocol(d));
            let threshold = args.settings.threshold.unwrap_or(protocol.map_or(0.0, |p| p.threshold));
            // The class list is the vocabulary: no background words unless asked for.
            let background = args.settings.background.clone().or(Some(Words(Vec::new())));
            let settings = Settings { threshold: Some(threshold), background, ..args.settings.clone() };
            // Engines that leave class 0's name out make class 0 with their threshold.
            let leave_out = protocol.is_some_and(|p| !p.embeds_background_name) && threshold > 0.0;
            let embedded = if leave_out { classes[1..].to_vec() } else { classes.clone() };
            Source::Model { model: Box::new(model), classes: embedded, settings, zero_is_class_0: leave_out }
        }
    };
    let summary = match &source {
        Source::Model { model, settings, .. } => {
            let plan = model.plan(settings)?;
            json!({"engine": plan.engine, "method": plan.method, "threshold": plan.threshold})
        }
        Source::Saved(_) => json!({"engine": null, "method": "saved predictions", "threshold": null}),
    };
    let mut cache = EmbeddingCache::default();
    let mut matrix = ConfusionMatrix::new(classes.len());
    let start = Instant::now();
    for (i, sample) in samples.iter().enumerate() {
        let (w, h, gt) = read_label_png(&sample.label)?;
        let prediction: Vec<u8> = match &source {
            Source::Model { model, classes, settings, zero_is_class_0 } => {
                let image = read_image(&sample.image.to_string_lossy())?;
                if (w, h) != (image.width, image.height) {
                    bail!("{} is {w}x{h} but its image is {}x{}", sample.label.display(), image.width, image.height);
                }
                let map = match segment(model, &image, classes, settings, &mut cache)?.label_map {
                    LabelMap::Narrow(map) => map,
                    LabelMap::Wide(_) => bail!("eval compares 8-bit label PNGs: at most 255 classes"),
                };
                if *zero_is_class_0 {
                    map
                } else {
                    // Unlabelled pixels (under the threshold) go to class 0, the background.
                    map.into_iter().map(|l| l.saturating_sub(1)).collect()
                }
            }
            Source::Saved(dir) => {
                let path = dir.join(sample.label.file_name().unwrap_or_default());
                let (pw, ph, pred) = read_label_png(&path)?;
                if (pw, ph) != (w, h) {
                    bail!("{} is {pw}x{ph} but the ground truth is {w}x{h}", path.display());
                }
                pred.into_iter().map(|v| remap[args.format.map_gt(v) as usize]).collect()
            }
        };
        let gt: Vec<u8> = gt.into_iter().map(|v| remap[args.format.map_gt(v) as usize]).collect();
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
    let scores = matrix.scores();
    // With a fold, the mean is over the fold's classes (background's IoU is shown, not averaged).
    let fold_miou = args.fold.map(|_| {
        let ious: Vec<f64> = scores.iou[1..].iter().flatten().copied().collect();
        if ious.is_empty() { 0.0 } else { ious.iter().sum::<f64>() / ious.len() as f64 }
    });
    if args.json {
        let per_class: Vec<_> =
            classes.iter().zip(&scores.iou).map(|(c, iou)| json!({"class": c.name, "iou": iou})).collect();
        let mut out = json!({"images": samples.len(), "miou": fold_miou.unwrap_or(scores.miou), "pixel_accuracy": scores.pixel_accuracy, "classes": per_class, "engine": summary["engine"], "method": summary["method"], "threshold": summary["threshold"]});
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
            "{} images, engine {}, method {}, threshold {}",
            samples.len(),
            summary["engine"].as_str().unwrap_or("none"),
            summary["method"].as_str().unwrap_or(""),
            summary["threshold"]
        );
    }
    Ok(())
}
