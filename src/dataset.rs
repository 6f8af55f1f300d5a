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
    /// The name `--format` takes.
    pub fn name(self) -> &'static str {
        match self {
            Format::Voc21 => "voc21",
            Format::Voc20 => "voc20",
            Format::Context60 => "context60",
            Format::Context59 => "context59",
            Format::CocoObject => "coco-object",
            Format::CocoStuff => "coco-stuff",
            Format::Ade20k => "ade20k",
            Format::Cityscapes => "cityscapes",
            Format::Camvid => "camvid",
            Format::Folder => "folder",
            Format::Pascal5i => "pascal5i",
            Format::Coco20i => "coco20i",
            Format::Mosaic4 => "mosaic4",
        }
    }

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
    /// ClearCLIP (mc-lan/ClearCLIP @ ad68a40, `clearclip_segmentor.py` and `configs/`), with
    /// the paper's `model_type='ClearCLIP'` (the committed `base_config.py` says `'vanilla'`).
    Clearclip,
    /// GroupViT (NVlabs/GroupViT @ 13b7861, `segmentation/configs/_base_/datasets/` and
    /// `configs/default.yml`); a GroupViT checkpoint.
    Groupvit,
    /// SegCLIP (ArrowLuo/SegCLIP @ df09ba2, `seg_segmentation/configs/_base_/datasets/` and
    /// `seg_segmentation/default.yml`); a SegCLIP checkpoint.
    Segclip,
    /// Fusioner's episodes (chaofanma/Fusioner @ 01985ed, `test.py`) on pascal5i, coco20i or
    /// mosaic4: one class typed per episode, the engine's own settings (Fusioner's are the
    /// repository's evaluation).
    Fss,
}

impl Protocol {
    /// The datasets the paper's repository has a config for.
    fn datasets(self) -> &'static [Format] {
        use Format::*;
        match self {
            Protocol::Groupvit | Protocol::Segclip => &[Voc21, Context60, CocoObject],
            _ => &[Voc21, Voc20, Context60, Context59, CocoObject, CocoStuff, Ade20k, Cityscapes],
        }
    }

    /// The repository's own class list for `format` where it differs from the format's
    /// (`classes/<protocol>/`, see classes/README.md); `None` keeps the format's.
    pub fn classes(self, format: Format) -> Option<&'static str> {
        use Format::*;
        match (self, format) {
            (Protocol::Clearclip, Voc21) => Some(include_str!("../classes/clearclip/voc21.txt")),
            (Protocol::Clearclip, Voc20) => Some(include_str!("../classes/clearclip/voc20.txt")),
            (Protocol::Clearclip, CocoObject) => Some(include_str!("../classes/clearclip/coco-object.txt")),
            (Protocol::Groupvit | Protocol::Segclip, Voc21) => Some(include_str!("../classes/groupvit/voc21.txt")),
            (Protocol::Groupvit | Protocol::Segclip, Context60) => {
                Some(include_str!("../classes/groupvit/context60.txt"))
            }
            (Protocol::Groupvit | Protocol::Segclip, CocoObject) => {
                Some(include_str!("../classes/groupvit/coco-object.txt"))
            }
            _ => None,
        }
    }

    /// The settings of the paper's config for `format`; an error for a dataset it has no config
    /// for.
    pub fn settings(self, format: Format) -> Result<Settings> {
        use Format::*;
        use Protocol::*;
        if self == Fss || format.is_episodes() {
            return match (self, format.is_episodes()) {
                // The engine's own defaults: Fusioner's are the repository's evaluation.
                (Fss, true) => Ok(Settings::default()),
                (Fss, false) => Err(Error::invalid(format!(
                    "--protocol fss scores pascal5i, coco20i or mosaic4, not {}",
                    format.name()
                ))),
                _ => Err(Error::invalid(format!(
                    "{} is scored by episodes: --protocol fss, not {}",
                    format.name(),
                    format!("{self:?}").to_lowercase()
                ))),
            };
        }
        if !self.datasets().contains(&format) {
            let names: Vec<&str> = self.datasets().iter().map(|f| f.name()).collect();
            return Err(Error::invalid(format!(
                "the {} protocol has configs for {}, not {}",
                format!("{self:?}").to_lowercase(),
                names.join(", "),
                format.name()
            )));
        }
        match self {
            Groupvit | Segclip => return Ok(self.grouping_settings(format)),
            Clearclip => return Ok(Self::clearclip_settings(format)),
            _ => {}
        }
        let short_side = match (self, format) {
            (_, Cityscapes) => 560,
            (Sclip, CocoStuff) => 448,
            _ => 336,
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
            method: Some(match self {
                Sclip => Method::Sclip,
                Scclip => Method::ScClip,
                Resclip => Method::ResClip,
                _ => Method::Naclip,
            }),
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

    /// ClearCLIP's `ClearCLIPSegmentation.__init__` defaults (`logit_scale=50, slide_stride=224,
    /// slide_crop=448`) under its configs: `Resize(scale=(2048, 448))` everywhere, Cityscapes'
    /// `slide_crop=224`, `prob_thd` 0.5 / 0.15 / 0.4 on VOC21 / Context60 / COCO-Object.
    fn clearclip_settings(format: Format) -> Settings {
        use Format::*;
        let threshold = match format {
            Voc21 => 0.5,
            Context60 => 0.15,
            CocoObject => 0.4,
            _ => 0.0,
        };
        Settings {
            engine: Some("dense".into()),
            method: Some(Method::ClearClip),
            templates: Some(Templates::Imagenet80),
            short_side: Some(448),
            rounding: Some(Rounding::Mmcv),
            window: Some(if format == Cityscapes { 224 } else { 448 }),
            stride: Some(224),
            logit_scale: Some(50.0),
            refine: Some(Refine::None),
            positions: Some(Resampling::ScaleFactor),
            threshold: Some(threshold),
            threshold_on: Some(ThresholdOn::Merged),
            background: Some(Words(Vec::new())),
            ..Settings::default()
        }
    }

    /// GroupViT's and SegCLIP's `test_cfg` and test pipeline: `MultiScaleFlipAug(img_scale=(2048,
    /// S))` over `Resize(keep_ratio=True)` (S 448 and 224), slide windows (448 at 224; 224 at
    /// 224), the "simple" template, `bg_thresh` per dataset.
    fn grouping_settings(self, format: Format) -> Settings {
        use Format::*;
        let (engine, side, window, stride) = match self {
            Protocol::Groupvit => ("groupvit", 448, 448, 224),
            _ => ("segclip", 224, 224, 224),
        };
        let threshold = match (self, format) {
            (Protocol::Groupvit, Context60) => 0.35,
            (Protocol::Groupvit, _) => 0.95,
            (_, Voc21) => 0.80,
            (_, Context60) => 0.25,
            _ => 0.65,
        };
        Settings {
            engine: Some(engine.into()),
            templates: Some(Templates::Single),
            short_side: Some(side),
            rounding: Some(Rounding::Mmcv),
            window: Some(window),
            stride: Some(stride),
            threshold: Some(threshold),
            background: Some(Words(Vec::new())),
            ..Settings::default()
        }
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
                "{} is scored by episodes, not whole label maps: eval --protocol fss",
                format.name()
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
        assert!(Protocol::Groupvit.settings(Format::Ade20k).is_err());
        let paper = Protocol::Naclip.settings(Format::Voc21).unwrap();
        let typed = Settings { window: Some(224), ..Settings::default() }.or(paper.clone());
        assert_eq!((typed.window, typed.short_side), (Some(224), paper.short_side));
    }
}
