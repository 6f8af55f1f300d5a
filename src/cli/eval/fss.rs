//! `wordmask eval --protocol fss`: the few-shot benchmarks scored zero-shot by episodes, as the
//! Fusioner repository's `test.py` does (chaofanma/Fusioner @ 01985ed): each episode types one
//! class name, the pixels the engine gives it are the prediction, and the repository's metric
//! (`metrics::EpisodeMetric`) reports mIoU over the fold's classes and FB-IoU. PASCAL-5i and
//! COCO-20i take their episodes from HSNet's split lists (`dataset::fss`), Mosaic-4 builds
//! them from an FSS-1000 folder (`dataset::mosaic`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::json;

use super::EvalArgs;
use crate::cli::images::read_label_png;
use crate::cli::{load, read_image};
use wordmask::dataset::fss::{self, Benchmark, Episode, episode_files, episode_truth, fold_episodes, prediction_name};
use wordmask::dataset::mosaic::{self, Tile};
use wordmask::dataset::{Format, Protocol};
use wordmask::labels::{Label, parse_class_file};
use wordmask::metrics::EpisodeMetric;
use wordmask::preprocess::RgbImage;
use wordmask::segment::{EmbeddingCache, LabelMap, Model, Settings, Words, segment};

/// Where the episodes come from.
enum Episodes {
    Listed(Vec<fss::EpisodeFiles>),
    /// Mosaics, the class folders' names and, per class, its image files.
    Mosaics {
        plan: Vec<[Tile; 4]>,
        images: Vec<Vec<PathBuf>>,
    },
}

/// One episode ready to score: the name its saved prediction has, the class value it is
/// scored under, the image and the truth (1, 0 or 255).
struct Ready {
    name: String,
    class: usize,
    image: RgbImage,
    truth: Vec<u8>,
}

/// The predictions' source: a model and its settings, or a folder of saved episode masks.
enum Source {
    Model(Box<Model>, Settings),
    Saved(PathBuf),
}

pub fn run(args: &EvalArgs) -> Result<()> {
    if let Some(p) = args.protocol.filter(|p| *p != Protocol::Fss) {
        bail!("{} is scored by episodes: --protocol fss, not {}", args.format.name(), format!("{p:?}").to_lowercase());
    }
    Protocol::Fss.settings(args.format)?;
    if args.limit == Some(0) {
        bail!("--limit 0 would evaluate no episode: give at least 1");
    }
    if args.list_episodes && args.format == Format::Mosaic4 {
        bail!("--list-episodes lists pascal5i's and coco20i's split lists; Mosaic-4's mosaics are drawn from --seed");
    }
    let (episodes, names, count) = episodes(args)?;
    if args.list_episodes {
        return Ok(());
    }
    let source = match &args.predictions {
        Some(dir) => Source::Saved(dir.clone()),
        None => {
            let model = load(&args.model.model, args.model.runtime)?;
            // The class is the vocabulary: no background words unless asked for.
            let given = args.settings.clone().or(Protocol::Fss.settings(args.format)?);
            let background = given.background.clone().or(Some(Words(Vec::new())));
            Source::Model(Box::new(model), Settings { background, ..given })
        }
    };
    let summary = match &source {
        Source::Model(model, settings) => {
            let plan = model.plan(settings)?;
            json!({"engine": plan.engine, "method": plan.method, "threshold": plan.threshold})
        }
        Source::Saved(_) => json!({"engine": null, "method": "saved predictions", "threshold": null}),
    };
    let mut metric = EpisodeMetric::new(names.len());
    let mut cache = EmbeddingCache::default();
    let start = Instant::now();
    let mut done = 0;
    let mut score = |ready: Ready| -> Result<()> {
        let foreground = predict(&source, &ready, &names, &mut cache)?;
        metric.add(ready.class, &foreground, &ready.truth)?;
        done += 1;
        let elapsed = start.elapsed().as_secs_f64();
        let miou = metric.scores().miou.unwrap_or(0.0);
        eprint!(
            "\r[{done}/{count}] mIoU so far {:.1}%  {:.2} s/episode  eta {:.0} s   ",
            miou * 100.0,
            elapsed / done as f64,
            elapsed / done as f64 * (count - done) as f64
        );
        std::io::stderr().flush().ok();
        Ok(())
    };
    match &episodes {
        Episodes::Listed(files) => {
            for f in files.iter().take(count) {
                score(listed(f)?)?;
            }
        }
        Episodes::Mosaics { plan, images } => {
            let mut left = count;
            for (i, m) in plan.iter().enumerate() {
                for ready in mosaic_episodes(i, m, images)? {
                    if left == 0 {
                        break;
                    }
                    left -= 1;
                    score(ready)?;
                }
            }
        }
    }
    eprintln!();
    report(args, &names, &metric, &summary);
    Ok(())
}

/// The episodes, the class names (line k names class value k) and how many episodes to score.
fn episodes(args: &EvalArgs) -> Result<(Episodes, Vec<Label>, usize)> {
    let listed = |benchmark: Benchmark| -> Result<(Episodes, Vec<Label>, usize)> {
        let Some(fold) = args.fold else {
            bail!("--format {} needs --fold 0, 1, 2 or 3", args.format.name());
        };
        let Some(splits) = &args.splits else {
            bail!(
                "--format {} needs --splits DIR: HSNet's split lists (pascal/val/fold<N>.txt, coco/val/fold<N>.pkl)",
                args.format.name()
            );
        };
        let list = fold_episodes(benchmark, splits, fold)?;
        if args.list_episodes {
            let mut out = std::io::stdout().lock();
            for (i, e) in list.iter().enumerate() {
                writeln!(out, "{i} {} {}", e.query, e.class)?;
            }
            return Ok((Episodes::Listed(Vec::new()), Vec::new(), 0));
        }
        let files = episode_files(benchmark, &args.dataset, &list)?;
        let names = class_names(args, splits, benchmark.classes() + 1)?;
        let count = args.limit.unwrap_or(files.len()).min(files.len());
        Ok((Episodes::Listed(files), names, count))
    };
    match args.format {
        Format::Pascal5i => listed(Benchmark::Pascal5i),
        Format::Coco20i => listed(Benchmark::Coco20i),
        Format::Mosaic4 => {
            if args.fold.is_some() {
                bail!("Mosaic-4 has no folds: leave out --fold");
            }
            let (classes, images) = fss1000(&args.dataset, args.splits.as_deref())?;
            let counts: Vec<usize> = images.iter().map(Vec::len).collect();
            let plan = mosaic::plan(&counts, args.mosaics, args.seed)?;
            // Class value k + 1 is folder k, its underscores read as spaces.
            let lines: Vec<String> =
                std::iter::once("background".to_string()).chain(classes.iter().map(|c| c.replace('_', " "))).collect();
            let names = parse_class_file(&lines.join("\n"))?;
            let all = 4 * plan.len();
            Ok((Episodes::Mosaics { plan, images }, names, args.limit.unwrap_or(all).min(all)))
        }
        other => bail!("--protocol fss scores pascal5i, coco20i or mosaic4, not {}", other.name()),
    }
}

/// Class names: `--classes`, else the splits folder's `coco/labels.txt` for COCO-20i (the
/// Fusioner repository's), else the format's list; `needed` lines at least.
fn class_names(args: &EvalArgs, splits: &Path, needed: usize) -> Result<Vec<Label>> {
    let labels_txt = splits.join("coco/labels.txt");
    let path = match &args.classes {
        Some(path) => Some(path.clone()),
        None if args.format == Format::Coco20i && labels_txt.is_file() => Some(labels_txt),
        None => None,
    };
    let names = match &path {
        Some(path) => parse_class_file(
            &std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?,
        )?,
        None => parse_class_file(args.format.classes().unwrap_or_default())?,
    };
    if names.len() < needed {
        bail!(
            "{} has {} lines; {} needs {needed} (background, then each class value's name)",
            path.map(|p| p.display().to_string()).unwrap_or_else(|| "the class list".into()),
            names.len(),
            args.format.name()
        );
    }
    Ok(names)
}

/// An FSS-1000 folder's classes (`fss/test.txt` of `splits`, sorted as HSNet's `data/fss.py`
/// sorts it, or every class folder) and each class's `.jpg` images, sorted by name.
fn fss1000(root: &Path, splits: Option<&Path>) -> Result<(Vec<String>, Vec<Vec<PathBuf>>)> {
    let mut classes: Vec<String> = match splits {
        Some(splits) => {
            let list = splits.join("fss/test.txt");
            let text = std::fs::read_to_string(&list).with_context(|| {
                format!(
                    "cannot read the split list {} (Mosaic-4 takes fss/test.txt, as HSNet's data/splits has it)",
                    list.display()
                )
            })?;
            let mut pieces: Vec<String> = text.split('\n').map(str::to_string).collect();
            pieces.pop();
            pieces
        }
        None => std::fs::read_dir(root)
            .with_context(|| format!("cannot list the FSS-1000 folder {}", root.display()))?
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
    };
    classes.sort();
    let mut images = Vec::with_capacity(classes.len());
    for class in &classes {
        let dir = root.join(class);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .with_context(|| format!("cannot list FSS-1000 class folder {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
            .collect();
        files.sort();
        images.push(files);
    }
    Ok((classes, images))
}

/// A listed episode's image and truth.
fn listed(f: &fss::EpisodeFiles) -> Result<Ready> {
    let image = read_image(&f.image.to_string_lossy())?;
    let (w, h, labels) = read_label_png(&f.label)?;
    if (w, h) != (image.width, image.height) {
        bail!("{} is {w}x{h} but its image is {}x{}", f.label.display(), image.width, image.height);
    }
    let episode: &Episode = &f.episode;
    Ok(Ready {
        name: prediction_name(episode),
        class: episode.class as usize,
        image,
        truth: episode_truth(&labels, episode.class),
    })
}

/// The four episodes of mosaic `i`: its image, and per quadrant that tile's class against the
/// rest.
fn mosaic_episodes(i: usize, tiles: &[Tile; 4], images: &[Vec<PathBuf>]) -> Result<Vec<Ready>> {
    let mut read = Vec::with_capacity(4);
    for t in tiles {
        let path = &images[t.class][t.image];
        let image = read_image(&path.to_string_lossy())?;
        let mask_path = path.with_extension("png");
        let mask =
            read_image(&mask_path.to_string_lossy()).with_context(|| format!("the mask of {}", path.display()))?;
        if (mask.width, mask.height) != (image.width, image.height) {
            bail!(
                "{} is {}x{} but its image is {}x{}",
                mask_path.display(),
                mask.width,
                mask.height,
                image.width,
                image.height
            );
        }
        let fg = mask.data.chunks_exact(3).map(|p| mosaic::grey(p[0], p[1], p[2]) >= 128).collect();
        read.push((image, fg));
    }
    let tiles_read: [(RgbImage, Vec<bool>); 4] = read.try_into().map_err(|_| anyhow::anyhow!("four tiles"))?;
    let (image, labels) = mosaic::compose(&tiles_read)?;
    Ok(tiles
        .iter()
        .enumerate()
        .map(|(q, t)| Ready {
            name: format!("mosaic{i:05}__{:02}.png", t.class + 1),
            class: t.class + 1,
            image: image.clone(),
            truth: labels.iter().map(|&v| u8::from(v as usize == q + 1)).collect(),
        })
        .collect())
}

/// The pixels predicted as the episode's class.
fn predict(source: &Source, ready: &Ready, names: &[Label], cache: &mut EmbeddingCache) -> Result<Vec<bool>> {
    let (w, h) = (ready.image.width, ready.image.height);
    match source {
        Source::Model(model, settings) => {
            let words = [names[ready.class].clone()];
            let segmented = wordmask::block_on(segment(model, &ready.image, &words, settings, cache))?;
            match segmented.segmentation.label_map {
                // Label 1 is the class; 0 is under the engine's threshold.
                LabelMap::Narrow(map) => Ok(map.into_iter().map(|l| l == 1).collect()),
                LabelMap::Wide(map) => Ok(map.into_iter().map(|l| l == 1).collect()),
            }
        }
        Source::Saved(dir) => {
            let path = dir.join(&ready.name);
            let (pw, ph, pred) = read_label_png(&path)?;
            if (pw, ph) != (w, h) {
                bail!("{} is {pw}x{ph} but the episode's image is {w}x{h}", path.display());
            }
            Ok(pred.into_iter().map(|v| v != 0).collect())
        }
    }
}

/// The scores as JSON or a table: each class's IoU, mIoU and FB-IoU.
fn report(args: &EvalArgs, names: &[Label], metric: &EpisodeMetric, summary: &serde_json::Value) {
    let scores = metric.scores();
    let shown: Vec<usize> = match args.format.benchmark().zip(args.fold) {
        Some((b, fold)) => b.fold_classes(fold).unwrap_or_default().into_iter().map(usize::from).collect(),
        None => (1..names.len()).filter(|&c| scores.iou[c].is_some()).collect(),
    };
    if args.json {
        let classes: Vec<_> =
            shown.iter().map(|&c| json!({"class": names[c].name, "value": c, "iou": scores.iou[c]})).collect();
        let out = json!({
            "protocol": "fss", "format": args.format.name(), "fold": args.fold,
            "episodes": metric.counted + metric.skipped, "counted": metric.counted, "skipped": metric.skipped,
            "miou": scores.miou, "fb_iou": scores.fb_iou, "classes": classes,
            "engine": summary["engine"], "method": summary["method"], "threshold": summary["threshold"]
        });
        println!("{out}");
        return;
    }
    println!("| {:<28} | {:>8} |", "class", "IoU %");
    println!("|{:-<30}|{:-<10}|", "", "");
    let pct = |v: Option<f64>| v.map(|v| format!("{:.2}", v * 100.0)).unwrap_or_else(|| "n/a".into());
    for &c in &shown {
        println!("| {:<28} | {:>8} |", names[c].name, pct(scores.iou[c]));
    }
    println!("|{:-<30}|{:-<10}|", "", "");
    println!("| {:<28} | {:>8} |", "mIoU", pct(scores.miou));
    println!("| {:<28} | {:>8} |", "FB-IoU", pct(scores.fb_iou));
    println!(
        "{} episodes ({} without the class in their truth, not counted), engine {}, threshold {}",
        metric.counted + metric.skipped,
        metric.skipped,
        summary["engine"].as_str().unwrap_or("none"),
        summary["threshold"]
    );
}
