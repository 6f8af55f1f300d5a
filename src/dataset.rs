//! Segmentation datasets in their folder layouts (mmsegmentation's, as the dense-CLIP papers
//! evaluate on them, and a plain folder): which image goes with which label map, each format's
//! class list and ground-truth values, and the class folds of PASCAL-5i and COCO-20i. What
//! `eval` scores and `train` learns from; reading the files is the caller's. The few-shot
//! benchmarks' episodes are in [`fss`], Mosaic-4's mosaics in [`mosaic`].

pub mod fss;
pub mod mosaic;

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::metrics::IGNORE_INDEX;
use crate::nn::Resampling;
use crate::preprocess::Rounding;
use crate::segment::dense::{Method, Refine};
use crate::segment::{BackgroundDataset, Pair, Settings, Templates, ThresholdOn, Words};

/// A dataset's folder layout (mmsegmentation's, as the dense-CLIP papers evaluate on them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
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
    /// DIR/images/* with `DIR/labels/<stem>.png`; needs --classes.
    Folder,
    /// PASCAL-5i's episodes (`--protocol fss`): HSNet's or Fusioner's PASCAL folder, with
    /// `--splits`.
    Pascal5i,
    /// COCO-20i's episodes (`--protocol fss`): HSNet's COCO 2014 folder, with `--splits`.
    Coco20i,
    /// Mosaic-4's episodes (`--protocol fss`), built from an FSS-1000 folder.
    Mosaic4,
}

impl Format {
    /// The class list shipped for the format (classes/*.txt, from the NACLIP/SCLIP configs).
    pub fn classes(self) -> Option<&'static str> {
        Some(match self {
            Format::Voc21 => include_str!("../classes/voc21.txt"),
            Format::Voc20 => include_str!("../classes/voc20.txt"),
            Format::Context60 => include_str!("../classes/context60.txt"),
            Format::Context59 => include_str!("../classes/context59.txt"),
            Format::CocoObject => include_str!("../classes/coco-object.txt"),
            Format::CocoStuff => include_str!("../classes/coco-stuff.txt"),
            Format::Ade20k => include_str!("../classes/ade20k.txt"),
            Format::Cityscapes => include_str!("../classes/cityscapes.txt"),
            Format::Camvid => include_str!("../classes/camvid.txt"),
            Format::Pascal5i => include_str!("../classes/pascal5i.txt"),
            Format::Coco20i => include_str!("../classes/coco-object.txt"),
            Format::Folder | Format::Mosaic4 => return None,
        })
    }

    /// The dataset family, for formats whose class 0 is background (each engine has its own
    /// threshold for those).
    pub fn background(self) -> Option<BackgroundDataset> {
        match self {
            Format::Voc21 => Some(BackgroundDataset::PascalVoc),
            Format::Context60 => Some(BackgroundDataset::PascalContext),
            Format::CocoObject => Some(BackgroundDataset::Coco),
            _ => None,
        }
    }

    /// The few-shot benchmark whose episodes the format holds (Mosaic-4's are built, not
    /// listed: `None`).
    pub fn benchmark(self) -> Option<fss::Benchmark> {
        match self {
            Format::Pascal5i => Some(fss::Benchmark::Pascal5i),
            Format::Coco20i => Some(fss::Benchmark::Coco20i),
            _ => None,
        }
    }

    /// Whether the format is scored by episodes (`--protocol fss`) rather than whole label maps.
    pub fn is_episodes(self) -> bool {
        matches!(self, Format::Pascal5i | Format::Coco20i | Format::Mosaic4)
    }

    /// Ground-truth value -> class index (or the ignore index).
    pub fn map_gt(self, v: u8) -> u8 {
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

/// A paper whose evaluation `eval --protocol` reproduces: its repository's config for each
/// dataset (`configs/cfg_<dataset>.py` over `configs/base_config.py` and the segmentor's
/// defaults), the fields cited in docs/cli.md.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Protocol {
    /// NACLIP (sinahmr/NACLIP @ 0cac3a6, `naclip.py` and `configs/`), without PAMR.
    Naclip,
    /// SCLIP (wangf3014/SCLIP @ b56bd30, `clip_segmentor.py` and `configs/`).
    Sclip,
    /// SC-CLIP (SuleBai/SC-CLIP @ 0417ba9, `scclip_segmentor.py` and `configs/`).
    Scclip,
    /// ResCLIP over NACLIP (yvhangyang/ResCLIP @ 0e085f7, `resclip_segmentor.py`, `configs/`
    /// and `test_all.sh wo_resi resclip 5`).
    Resclip,
    /// Fusioner's episodes (chaofanma/Fusioner @ 01985ed, `test.py`) on pascal5i, coco20i or
    /// mosaic4: one class typed per episode, the engine's own settings (Fusioner's are the
    /// repository's evaluation).
    Fss,
}

impl Protocol {
    /// The settings of the paper's config for `format`; an error for a dataset it has no config
    /// for.
    pub fn settings(self, format: Format) -> Result<Settings> {
        use Format::*;
        use Protocol::*;
        let method = match self {
            Naclip => Method::Naclip,
            Sclip => Method::Sclip,
            Scclip => Method::ScClip,
            Resclip => Method::ResClip,
            // The engine's own defaults: Fusioner's are the repository's evaluation.
            Fss if format.is_episodes() => return Ok(Settings::default()),
            Fss => {
                return Err(Error::invalid(format!(
                    "--protocol fss scores pascal5i, coco20i or mosaic4, not {format:?}"
                )));
            }
        };
        if format.is_episodes() {
            return Err(Error::invalid(format!("{format:?} is scored by episodes: --protocol fss, not {self:?}")));
        }
        let short_side = match (self, format) {
            (_, Cityscapes) => 560,
            (Sclip, CocoStuff) => 448,
            (_, Voc21 | Voc20 | Context60 | Context59 | CocoObject | CocoStuff | Ade20k) => 336,
            (_, Camvid | Folder | Pascal5i | Coco20i | Mosaic4) => {
                return Err(Error::invalid(format!(
                    "the {self:?} protocol has configs for voc21, voc20, context60, context59, coco-object, coco-stuff, ade20k and cityscapes, not {format:?}"
                )));
            }
        };
        // NACLIP and ResCLIP run PASCAL VOC whole (`slide_crop=0`); every other config slides
        // 224 / 112.
        let whole = matches!(self, Naclip | Resclip) && matches!(format, Voc21 | Voc20);
        let window = if whole { 0 } else { 224 };
        let logit_scale = match (self, format) {
            (Sclip, Voc21) => 65.0,
            (Sclip, Context60 | CocoObject) => 50.0,
            (Scclip, Voc21) => 50.0,
            (Scclip, CocoObject) => 55.0,
            _ => 40.0,
        };
        // `prob_thd` on the datasets with a background class (0, the default, elsewhere).
        let threshold = match (self, format) {
            (_, f) if f.background().is_none() => 0.0,
            (Scclip, Voc21 | Context60) => 0.15,
            (Scclip, CocoObject) => 0.35,
            _ => 0.1,
        };
        // `area_thd`: SCLIP's and SC-CLIP's VOC21 configs.
        let area_threshold = (matches!(self, Sclip | Scclip) && format == Voc21).then_some(0.1);
        // ResCLIP's `temp_thd`, `attn_rcs_weights` and `attn_sfr_weights`.
        let (sfr_threshold, rcs, sfr) = match format {
            Voc21 => (0.5, [2.0, 0.3], [2.2, 0.7]),
            Voc20 => (0.1, [2.0, 0.6], [2.1, 0.6]),
            Context60 => (0.3, [2.0, 0.3], [1.8, 0.7]),
            Context59 => (0.25, [2.0, 0.4], [1.8, 0.7]),
            CocoObject | CocoStuff => (0.11, [2.0, 0.4], [1.8, 0.7]),
            Ade20k => (0.25, [2.0, 0.3], [2.1, 0.7]),
            _ => (0.1, [2.0, 0.2], [2.1, 0.6]),
        };
        let resclip = self == Resclip;
        Ok(Settings {
            engine: Some("dense".into()),
            method: Some(method),
            templates: Some(Templates::Imagenet80),
            short_side: Some(short_side),
            rounding: Some(Rounding::Mmcv),
            window: Some(window),
            stride: Some(112),
            logit_scale: Some(logit_scale),
            refine: Some(Refine::None),
            positions: Some(Resampling::ScaleFactor),
            scoring: None,
            threshold: Some(threshold),
            threshold_on: Some(ThresholdOn::Merged),
            area_threshold,
            sfr_threshold: resclip.then_some(sfr_threshold),
            rcs_weights: resclip.then_some(Pair(rcs)),
            sfr_weights: resclip.then_some(Pair(sfr)),
            background: Some(Words(Vec::new())),
        })
    }
}

/// One image and its label map.
pub struct Sample {
    pub image: PathBuf,
    pub label: PathBuf,
}

fn files(dir: &Path, suffix: &str) -> Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::invalid(format!("cannot list {}: {e}", dir.display())))?
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
pub enum Split {
    Train,
    Val,
}

/// Pairs of (image, label) files for `split`.
pub fn samples(format: Format, root: &Path, split: Split) -> Result<Vec<Sample>> {
    let (list_name, coco, ade) = match split {
        Split::Train => ("train", "train2017", "training"),
        Split::Val => ("val", "val2017", "validation"),
    };
    let from_list = |list: &str, images: &str, labels: &str| -> Result<Vec<Sample>> {
        let list = root.join(list);
        let text = std::fs::read_to_string(&list)
            .map_err(|e| Error::invalid(format!("cannot read the split list {}: {e}", list.display())))?;
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
        Format::Pascal5i | Format::Coco20i | Format::Mosaic4 => {
            return Err(Error::invalid(format!(
                "{format:?} is scored by episodes, not whole label maps: eval --protocol fss"
            )));
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
        return Err(Error::invalid(format!(
            "no images found in {} for the {format:?} layout (docs/cli.md lists the folder layouts)",
            root.display()
        )));
    }
    Ok(samples)
}

/// The class values of fold `fold`: PASCAL-5i (voc21, values 1-20) or COCO-20i (coco-object,
/// values 1-80), as HSNet splits them.
pub fn fold_classes(format: Format, fold: usize) -> Result<Vec<u8>> {
    match format {
        Format::Voc21 if fold < 4 => Ok((1..=5).map(|i| (fold * 5 + i) as u8).collect()),
        Format::CocoObject if fold < 4 => Ok((0..20).map(|v| (4 * v + fold + 1) as u8).collect()),
        Format::Voc21 | Format::CocoObject => Err(Error::invalid(format!("--fold must be 0, 1, 2 or 3, got {fold}"))),
        _ => Err(Error::invalid("--fold applies to voc21 (PASCAL-5i) and coco-object (COCO-20i)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A protocol exists for the papers' datasets only, and settings typed beside it win.
    #[test]
    fn protocols_cover_the_papers_datasets_and_yield_to_typed_settings() {
        assert!(Protocol::Naclip.settings(Format::Folder).is_err());
        assert!(Protocol::Sclip.settings(Format::Camvid).is_err());
        let paper = Protocol::Naclip.settings(Format::Voc21).unwrap();
        let typed = Settings { window: Some(224), ..Settings::default() }.or(paper.clone());
        assert_eq!((typed.window, typed.short_side), (Some(224), paper.short_side));
    }
}
