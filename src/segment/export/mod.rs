//! Exports: a result's objects in the formats labelling tools read — COCO instances (RLE as
//! pycocotools encodes it, or polygons), YOLO-seg, LabelMe and Pascal VOC's palette PNGs. Each
//! writer turns one image's [`Labelled`] objects and the typed words into the bytes of its
//! file, so the command line and the page write the same files.
//!
//! Objects come from Segment Anything when it sharpened the words ([`super::refine`]), or are
//! the words' own 8-connected regions otherwise ([`super::refine::region_objects`]): one
//! function, [`image_objects`], decides for the command line's folder mode and the page alike.
//! Objects without a word or without pixels are left out of every format. [`Part`] names each
//! file of an image and where it goes in the folder layout both write ([`image_part`] gives its
//! bytes); [`folder_lists`] and [`folder_coco`] give the files of a whole folder.

pub mod coco;
pub mod labelme;
pub mod polygon;
pub mod rle;
pub mod voc;
pub mod yolo;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::labels::Label;
use crate::segment::LabelMap;
use crate::segment::objects::{Object, instance_map};
use crate::segment::refine::region_objects_of;

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

/// The objects one image's exports hold: `objects` when words → objects (sharp edges), Point
/// mode or automatic masks made them, else every 8-connected region of each word of
/// `label_map` ([`region_objects_of`], `names` the words); then those under `min_area` pixels
/// are dropped and their pixels unlabelled in `label_map` ([`drop_small`]). Objects of a class
/// beyond `names` (a classifier's own classes) keep no class: no export names them.
pub fn image_objects(
    label_map: &mut LabelMap,
    confidence: &[u8],
    names: &[String],
    (width, height): (usize, usize),
    objects: Option<Vec<Object>>,
    min_area: usize,
) -> Vec<Object> {
    let mut objects = objects.unwrap_or_else(|| region_objects_of(label_map, confidence, names, width, height));
    for object in &mut objects {
        if object.class.is_some_and(|c| c >= names.len()) {
            object.class = None;
        }
    }
    drop_small(objects, min_area, label_map)
}

/// A label map of the objects alone (each pixel its object's word, 1-based; 0 where no named
/// object is), for results that have no words' map (automatic masks, Point mode): smaller
/// objects on top where they overlap, as [`instance_map`] draws them.
pub fn objects_label_map(objects: &[Object], classes: usize, width: usize, height: usize) -> LabelMap {
    let ids = instance_map(objects, width, height);
    // The word of each id (ids are the objects' places, 1-based, but need not be).
    let mut lookup = vec![0usize; objects.iter().map(|o| o.id as usize).max().unwrap_or(0) + 1];
    for o in objects {
        lookup[o.id as usize] = o.class.map_or(0, |c| c + 1);
    }
    if classes <= u8::MAX as usize {
        LabelMap::Narrow(ids.iter().map(|&i| lookup[i as usize] as u8).collect())
    } else {
        LabelMap::Wide(ids.iter().map(|&i| lookup[i as usize] as u16).collect())
    }
}

/// One file of an image's exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The image's own COCO file (`coco/<image>.json`), merged into `coco.json` at the end.
    Coco,
    Yolo,
    Labelme,
    VocClass,
    VocObject,
}

impl Part {
    /// The files `formats` write for each image, in the formats' order.
    pub fn of(formats: &[Format]) -> Vec<Part> {
        let mut parts = Vec::new();
        for format in formats {
            match format {
                Format::Coco => parts.push(Part::Coco),
                Format::Yolo => parts.push(Part::Yolo),
                Format::Labelme => parts.push(Part::Labelme),
                Format::Voc => parts.extend([Part::VocClass, Part::VocObject]),
            }
        }
        parts
    }

    /// Where the file of the image named `stem` (its name without the extension) goes,
    /// relative to the output folder.
    pub fn path(self, stem: &str) -> String {
        match self {
            Part::Coco => format!("coco/{stem}.json"),
            Part::Yolo => format!("yolo/labels/{stem}.txt"),
            Part::Labelme => format!("labelme/{stem}.json"),
            Part::VocClass => format!("voc/SegmentationClass/{stem}.png"),
            Part::VocObject => format!("voc/SegmentationObject/{stem}.png"),
        }
    }

    pub fn format(self) -> Format {
        match self {
            Part::Coco => Format::Coco,
            Part::Yolo => Format::Yolo,
            Part::Labelme => Format::Labelme,
            Part::VocClass | Part::VocObject => Format::Voc,
        }
    }
}

/// What an image's files say beyond its objects.
pub struct ImageInfo<'a> {
    /// Its COCO image id: its place in the folder's sorted list, from 1.
    pub image_id: u64,
    pub labels: &'a [Label],
    /// COCO masks as polygons instead of RLE.
    pub polygons: bool,
    /// LabelMe's `imagePath`: the image as seen from the LabelMe file's folder.
    pub image_path: &'a str,
}

/// The bytes of `part` for one image; `label_map` (its words' labels, after [`image_objects`])
/// is VOC's class PNG.
pub fn image_part(part: Part, image: &Labelled, label_map: &LabelMap, info: &ImageInfo) -> Result<Vec<u8>> {
    let json = |e: serde_json::Error| Error::invalid(format!("cannot write JSON: {e}"));
    Ok(match part {
        Part::Coco => {
            serde_json::to_vec(&coco::image_file(image, info.image_id, info.labels, info.polygons)).map_err(json)?
        }
        Part::Yolo => yolo::label_file(image).into_bytes(),
        Part::Labelme => {
            serde_json::to_vec_pretty(&labelme::file(image, info.image_path, info.labels)).map_err(json)?
        }
        Part::VocClass => voc::class_png(label_map, image.width, image.height)?,
        Part::VocObject => voc::object_png(image)?,
    })
}

/// The merged COCO file of a folder.
pub const COCO_FILE: &str = "coco.json";
/// Its annotations as a results file.
pub const COCO_RESULTS_FILE: &str = "coco_results.json";

/// The class lists of a folder's exports, as `(path, bytes)`: YOLO's `yolo/data.yaml`
/// (`yolo_path`: the dataset's folder, as it names it) and VOC's `voc/labelmap.txt`, for the
/// formats that have one.
pub fn folder_lists(formats: &[Format], labels: &[Label], yolo_path: &str) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    if formats.contains(&Format::Yolo) {
        files.push(("yolo/data.yaml".to_string(), yolo::data_yaml(labels, yolo_path).into_bytes()));
    }
    if formats.contains(&Format::Voc) {
        files.push(("voc/labelmap.txt".to_string(), voc::labelmap(labels).into_bytes()));
    }
    files
}

/// A folder's images' COCO files (each with its image id) as one; no file gives a file without
/// images, with the words' categories.
pub fn folder_coco(parts: &[coco::CocoFile], labels: &[Label]) -> Result<coco::CocoFile> {
    if parts.is_empty() {
        return Ok(coco::CocoFile {
            images: Vec::new(),
            categories: coco::categories(labels),
            annotations: Vec::new(),
        });
    }
    coco::merge(parts)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        vec!["red".into(), "blue".into()]
    }

    #[test]
    fn without_objects_the_words_regions_are_the_objects_and_small_ones_go() {
        // 4 x 2: red on the left (6 pixels, one region), blue one pixel at (3, 0).
        let mut map = LabelMap::Narrow(vec![1, 1, 1, 2, 1, 1, 1, 0]);
        let confidence = vec![255; 8];
        let objects = image_objects(&mut map, &confidence, &names(), (4, 2), None, 0);
        let found: Vec<(u32, Option<usize>, usize)> = objects.iter().map(|o| (o.id, o.class, o.area)).collect();
        assert_eq!(found, [(1, Some(0), 6), (2, Some(1), 1)]);
        assert_eq!(objects[0].score, 1.0);
        let objects = image_objects(&mut map, &confidence, &names(), (4, 2), None, 2);
        assert_eq!(objects.len(), 1);
        assert_eq!(map.to_vec(), [1, 1, 1, 0, 1, 1, 1, 0], "the speck's pixel is unlabelled");
    }

    #[test]
    fn given_objects_are_kept_and_classes_past_the_words_name_nothing() {
        let mut map = LabelMap::Narrow(vec![0; 8]);
        let mask = crate::segment::objects::RunMask::from_plane(&[0, 1, 1, 0, 0, 1, 1, 0], 4, 2);
        let given = vec![
            Object::of_mask(1, Some(1), Some("blue".into()), 0.5, mask.clone()),
            Object::of_mask(2, Some(7), Some("lvis".into()), 0.5, mask),
        ];
        let objects = image_objects(&mut map, &[], &names(), (4, 2), Some(given), 0);
        assert_eq!(objects.iter().map(|o| o.class).collect::<Vec<_>>(), [Some(1), None]);
        let labelled = Labelled { file_name: "a.png", width: 4, height: 2, objects: &objects };
        assert_eq!(labelled.named().count(), 1);
        // Their own label map: the smaller (here the later, on a tie) object on top.
        assert_eq!(objects_label_map(&objects[..1], 2, 4, 2).to_vec(), [0, 2, 2, 0, 0, 2, 2, 0]);
    }

    #[test]
    fn each_format_has_its_files_in_the_folder_layout() {
        let parts = Part::of(&[Format::Coco, Format::Voc]);
        assert_eq!(parts, [Part::Coco, Part::VocClass, Part::VocObject]);
        let paths: Vec<String> = parts.iter().map(|p| p.path("a.b")).collect();
        assert_eq!(paths, ["coco/a.b.json", "voc/SegmentationClass/a.b.png", "voc/SegmentationObject/a.b.png"]);
        let labels = crate::labels::parse("red, blue|navy").unwrap();
        let lists: Vec<String> =
            folder_lists(&[Format::Yolo, Format::Voc], &labels, ".").into_iter().map(|(p, _)| p).collect();
        assert_eq!(lists, ["yolo/data.yaml", "voc/labelmap.txt"]);
        let empty = folder_coco(&[], &labels).unwrap();
        assert_eq!((empty.images.len(), empty.categories.len()), (0, 2));
    }
}
