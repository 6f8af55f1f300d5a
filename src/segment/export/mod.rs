//! Exports: a result's objects in the formats labelling tools read — COCO instances (RLE as
//! pycocotools encodes it, or polygons), YOLO-seg, LabelMe and Pascal VOC's palette PNGs. Each
//! writer turns one image's [`Labelled`] objects and the typed words into the bytes of its
//! file, so the command line and the page write the same files.
//!
//! Objects come from Segment Anything when it sharpened the words ([`super::refine`]), or are
//! the words' own 8-connected regions otherwise ([`super::refine::region_objects`]). Objects
//! without a word or without pixels are left out of every format.

pub mod coco;
pub mod labelme;
pub mod polygon;
pub mod rle;
pub mod voc;
pub mod yolo;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::segment::LabelMap;
use crate::segment::objects::Object;

/// One image's objects, as the exports read them.
pub struct Labelled<'a> {
    /// The image's file name, as the exports refer to it.
    pub file_name: &'a str,
    pub width: usize,
    pub height: usize,
    pub objects: &'a [Object],
}

impl Labelled<'_> {
    /// The objects with a word and pixels, with their word's index.
    pub fn named(&self) -> impl Iterator<Item = (usize, &Object)> {
        self.objects.iter().filter(|o| o.area > 0).filter_map(|o| o.class.map(|c| (c, o)))
    }
}

/// The objects of at least `min_area` pixels, numbered again from 1; the others' pixels are
/// unlabelled in `map`, so that the label map and the objects still agree (the specks of a
/// pixel or two that a words model leaves at its regions' corners are objects too otherwise).
pub fn drop_small(objects: Vec<Object>, min_area: usize, map: &mut LabelMap) -> Vec<Object> {
    let (kept, dropped): (Vec<Object>, Vec<Object>) = objects.into_iter().partition(|o| o.area >= min_area);
    for object in dropped {
        for &(start, n) in object.mask.runs() {
            (start as usize..(start + n) as usize).for_each(|i| map.set(i, 0));
        }
    }
    kept.into_iter().enumerate().map(|(k, o)| Object { id: k as u32 + 1, ..o }).collect()
}

/// The formats the exports write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Coco,
    Yolo,
    Labelme,
    Voc,
}

impl Format {
    /// `coco,yolo` as typed: each named once, in the order given.
    pub fn parse_list(text: &str) -> Result<Vec<Format>> {
        let mut formats = Vec::new();
        for name in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let format = match name.to_lowercase().as_str() {
                "coco" => Format::Coco,
                "yolo" => Format::Yolo,
                "labelme" => Format::Labelme,
                "voc" => Format::Voc,
                _ => {
                    return Err(Error::invalid(format!(
                        "unknown export format \"{name}\": the formats are coco, yolo, labelme and voc"
                    )));
                }
            };
            if !formats.contains(&format) {
                formats.push(format);
            }
        }
        if formats.is_empty() {
            return Err(Error::invalid("no export format given: name one or more of coco, yolo, labelme, voc"));
        }
        Ok(formats)
    }
}
