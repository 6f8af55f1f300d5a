//! PASCAL-5i and COCO-20i, the few-shot segmentation benchmarks, evaluated zero-shot as the
//! Fusioner repository does (chaofanma/Fusioner @ 01985ed, `dataset/pascal.py`,
//! `dataset/coco.py`, `dataset/custom_dataset.py`, `test.py`) on HSNet's split lists
//! (juhongm999/hsnet `data/splits/`, which the Fusioner repository carries as
//! `dataset/splits/`; the user points at their copy, none ships here):
//!
//! - An episode is one entry of the fold's `val` list: a query image and a class. There are no
//!   support images (the repository's datasets return none, so no random draw is made and no
//!   seed matters).
//! - PASCAL-5i: `pascal/val/fold<N>.txt`, lines `<image>__<class:02>` in file order,
//!   `f.read().split('\n')[:-1]` (the text after the last newline is dropped), class `NN`;
//!   `__len__` is `min(len(list), 1000)`, so every fold's list (346 to 725 lines) is scored
//!   whole, once.
//! - COCO-20i: `coco/val/fold<N>.pkl`, a pickled dict class (0-79) -> image names; the episodes
//!   are `sorted(set((name, class)))` (names by code point, then class), class value
//!   `class + 1`, the first 1,000 (`__len__` is 1000; the repository fails on a list shorter
//!   than that, here all of it is taken).
//! - The query's mask is its label map at the original resolution (`--test_with_org_resolution`,
//!   as the README's evaluation command runs), 1 where it holds the class, ignored where it is
//!   255, 0 elsewhere (`CustomDataset.__getitem__`).

use std::path::{Path, PathBuf};

use crate::checkpoint::read_string_lists;
use crate::error::{Error, Result};

/// Episodes per fold at most: the repository's `__len__` on the val split.
pub const MAX_EPISODES: usize = 1000;

/// Folds of each benchmark (`nfolds = 4`).
pub const FOLDS: usize = 4;

/// A few-shot benchmark split into folds of classes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Benchmark {
    /// PASCAL VOC 2012 with SBD's labels: 20 classes, fold f holds classes 5f+1..5f+5.
    Pascal5i,
    /// COCO 2014: 80 classes, fold f holds classes 4k+f+1.
    Coco20i,
}

/// One episode: the query image (its name as the split list gives it) and the class value its
/// label map marks the class with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Episode {
    pub query: String,
    pub class: u8,
}

/// An episode with its files.
#[derive(Clone, Debug)]
pub struct EpisodeFiles {
    pub episode: Episode,
    pub image: PathBuf,
    pub label: PathBuf,
}

impl Benchmark {
    /// Classes, background aside (`nclass`).
    pub fn classes(self) -> usize {
        match self {
            Benchmark::Pascal5i => 20,
            Benchmark::Coco20i => 80,
        }
    }

    /// The class values of `fold` (`build_class_ids` on the val split, plus one).
    pub fn fold_classes(self, fold: usize) -> Result<Vec<u8>> {
        check_fold(fold)?;
        Ok(match self {
            Benchmark::Pascal5i => (1..=5).map(|i| (fold * 5 + i) as u8).collect(),
            Benchmark::Coco20i => (0..20).map(|k| (4 * k + fold + 1) as u8).collect(),
        })
    }

    /// The fold's val list under a splits folder laid out as the repositories' are.
    pub fn split_file(self, splits: &Path, fold: usize) -> PathBuf {
        match self {
            Benchmark::Pascal5i => splits.join(format!("pascal/val/fold{fold}.txt")),
            Benchmark::Coco20i => splits.join(format!("coco/val/fold{fold}.pkl")),
        }
    }
}

fn check_fold(fold: usize) -> Result<()> {
    if fold >= FOLDS {
        return Err(Error::invalid(format!("--fold must be 0, 1, 2 or 3, got {fold}")));
    }
    Ok(())
}

/// A PASCAL-5i list's entries in file order, as `read_metadata` splits them: pieces between
/// newlines (the one after the last dropped), name before the first `__`, class the integer
/// after it (Python's `int`, which allows surrounding whitespace).
pub fn parse_pascal_list(text: &str, source: &str) -> Result<Vec<Episode>> {
    let mut pieces: Vec<&str> = text.split('\n').collect();
    pieces.pop();
    pieces
        .into_iter()
        .enumerate()
        .map(|(i, line)| {
            let mut parts = line.split("__");
            let (query, class) = (parts.next().unwrap_or_default(), parts.next());
            let class = class.and_then(|c| c.trim().parse::<u8>().ok()).filter(|c| (1..=20).contains(c));
            match class {
                Some(class) if !query.is_empty() => Ok(Episode { query: query.to_string(), class }),
                _ => Err(Error::invalid(format!(
                    "{source} line {}: expected <image>__<class 01-20>, got {line:?}",
                    i + 1
                ))),
            }
        })
        .collect()
}

/// A COCO-20i pickle's entries as the repository orders them: every (name, class) pair once,
/// sorted by name (code point by code point, as Python compares strings) and then class.
pub fn parse_coco_pickle(bytes: &[u8], source: &str) -> Result<Vec<Episode>> {
    let mut pairs = Vec::new();
    for (class, names) in read_string_lists(bytes, source)? {
        let Some(value) = u8::try_from(class).ok().filter(|c| *c < 80) else {
            return Err(Error::invalid(format!("{source}: class {class} is outside COCO's 0-79")));
        };
        pairs.extend(names.into_iter().map(|name| (name, value + 1)));
    }
    // Rust orders strings by their UTF-8 bytes, which is code-point order.
    pairs.sort();
    pairs.dedup();
    Ok(pairs.into_iter().map(|(query, class)| Episode { query, class }).collect())
}

/// The fold's episodes from the split list under `splits`, in the repository's order, at most
/// [`MAX_EPISODES`]; an error names a missing or malformed list, a fold out of range, or a
/// class that is not the fold's (a training list given for the val one).
pub fn fold_episodes(benchmark: Benchmark, splits: &Path, fold: usize) -> Result<Vec<Episode>> {
    let held = benchmark.fold_classes(fold)?;
    let path = benchmark.split_file(splits, fold);
    let source = path.display().to_string();
    let bytes = std::fs::read(&path).map_err(|e| {
        Error::invalid(format!(
            "cannot read the split list {source}: {e} (--splits names a folder holding pascal/val/fold<N>.txt or coco/val/fold<N>.pkl, as HSNet's data/splits does)"
        ))
    })?;
    let mut episodes = match benchmark {
        Benchmark::Pascal5i => {
            let text = String::from_utf8(bytes).map_err(|_| Error::invalid(format!("{source} is not UTF-8 text")))?;
            parse_pascal_list(&text, &source)?
        }
        Benchmark::Coco20i => parse_coco_pickle(&bytes, &source)?,
    };
    if episodes.is_empty() {
        return Err(Error::invalid(format!("{source} lists no episode")));
    }
    if let Some(e) = episodes.iter().find(|e| !held.contains(&e.class)) {
        return Err(Error::invalid(format!(
            "{source} lists {} with class {}, which is not one of fold {fold}'s classes {held:?}: is it the fold's val list?",
            e.query, e.class
        )));
    }
    episodes.truncate(MAX_EPISODES);
    Ok(episodes)
}

/// Where a benchmark's images and label maps are under `root`, tried in order: PASCAL as
/// Fusioner's README lays it out (`VOCdevkit/VOC2012/JPEGImages`, `SegmentationClassAug`), as
/// HSNet's does (`VOC2012/JPEGImages`, `VOC2012/SegmentationClassAug`), or a VOC2012 folder
/// holding both; COCO as HSNet's (`<name>` and `annotations/<name>.png` under the root, the
/// names starting `val2014/`), or with Fusioner README's `annotation/` folder.
fn layout(benchmark: Benchmark, root: &Path) -> Result<(PathBuf, PathBuf)> {
    let candidates: Vec<(PathBuf, PathBuf)> = match benchmark {
        Benchmark::Pascal5i => vec![
            (root.join("VOCdevkit/VOC2012/JPEGImages"), root.join("SegmentationClassAug")),
            (root.join("VOC2012/JPEGImages"), root.join("VOC2012/SegmentationClassAug")),
            (root.join("JPEGImages"), root.join("SegmentationClassAug")),
        ],
        Benchmark::Coco20i => {
            vec![(root.to_path_buf(), root.join("annotations")), (root.to_path_buf(), root.join("annotation"))]
        }
    };
    candidates.iter().find(|(images, labels)| images.is_dir() && labels.is_dir()).cloned().ok_or_else(|| {
        let tried: Vec<String> =
            candidates.iter().map(|(i, l)| format!("{} with {}", i.display(), l.display())).collect();
        Error::invalid(format!("no {benchmark:?} folders under {}: looked for {}", root.display(), tried.join("; ")))
    })
}

/// Each episode's image and label files under `root`; an error lists every one missing.
pub fn episode_files(benchmark: Benchmark, root: &Path, episodes: &[Episode]) -> Result<Vec<EpisodeFiles>> {
    let (images, labels) = layout(benchmark, root)?;
    let files: Vec<EpisodeFiles> = episodes
        .iter()
        .map(|e| {
            let (image, label) = match benchmark {
                Benchmark::Pascal5i => {
                    (images.join(format!("{}.jpg", e.query)), labels.join(format!("{}.png", e.query)))
                }
                Benchmark::Coco20i => (images.join(&e.query), labels.join(Path::new(&e.query).with_extension("png"))),
            };
            EpisodeFiles { episode: e.clone(), image, label }
        })
        .collect();
    let mut missing: Vec<String> = Vec::new();
    for f in &files {
        for p in [&f.image, &f.label] {
            if !p.is_file() && !missing.contains(&p.display().to_string()) {
                missing.push(p.display().to_string());
            }
        }
    }
    if !missing.is_empty() {
        let shown: Vec<&str> = missing.iter().take(5).map(String::as_str).collect();
        return Err(Error::invalid(format!(
            "{} files the split list names are missing under {}: {}{}",
            missing.len(),
            root.display(),
            shown.join(", "),
            if missing.len() > shown.len() { ", ..." } else { "" }
        )));
    }
    Ok(files)
}

/// The episode's truth: 1 where the label map holds the class, [`IGNORE_INDEX`] where it holds
/// 255, 0 elsewhere.
///
/// [`IGNORE_INDEX`]: crate::metrics::IGNORE_INDEX
pub fn episode_truth(labels: &[u8], class: u8) -> Vec<u8> {
    use crate::metrics::IGNORE_INDEX;
    labels.iter().map(|&v| if v == IGNORE_INDEX { IGNORE_INDEX } else { u8::from(v == class) }).collect()
}

/// The file name a saved episode prediction has: `<image stem>__<class:02>.png`.
pub fn prediction_name(episode: &Episode) -> String {
    let stem = Path::new(&episode.query).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    format!("{stem}__{:02}.png", episode.class)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pascal_lists_drop_what_follows_the_last_newline_and_keep_file_order() {
        let e = parse_pascal_list("b__02\na__01\r\nc__03", "x").unwrap();
        assert_eq!(e, vec![Episode { query: "b".into(), class: 2 }, Episode { query: "a".into(), class: 1 }]);
        assert!(parse_pascal_list("a__21\n", "x").is_err());
        assert!(parse_pascal_list("a_01\n", "x").is_err());
    }

    #[test]
    fn folds_hold_hsnets_classes() {
        assert_eq!(Benchmark::Pascal5i.fold_classes(1).unwrap(), vec![6, 7, 8, 9, 10]);
        let coco = Benchmark::Coco20i.fold_classes(3).unwrap();
        assert_eq!((coco[0], coco[19], coco.len()), (4, 80, 20));
        assert!(Benchmark::Coco20i.fold_classes(4).is_err());
    }

    #[test]
    fn truth_is_the_class_against_the_rest_with_255_ignored() {
        assert_eq!(episode_truth(&[0, 3, 255, 4, 3], 3), vec![0, 1, 255, 0, 1]);
        let e = Episode { query: "val2014/COCO_val2014_000000000139.jpg".into(), class: 5 };
        assert_eq!(prediction_name(&e), "COCO_val2014_000000000139__05.png");
    }
}
