//! COCO instances JSON (cocodataset/cocoapi's `PythonAPI/pycocotools/coco.py` reads it):
//! `images`, `categories` (one per typed word, its synonyms under `synonyms` as LVIS writes
//! them), `annotations` with the mask as compressed RLE ([`super::rle`]) or, on request,
//! polygons ([`super::polygon`]), `bbox` as `[x, y, width, height]`, `area` in pixels,
//! `iscrowd` 0 and the object's `score`. [`results`] gives the same objects as a results file
//! (`COCO.loadRes`, `COCOeval`), [`merge`] joins files of disjoint images (a folder's images,
//! or the shards of one).

use serde::{Deserialize, Serialize};

use super::Labelled;
use super::polygon::{self, TOLERANCE};
use super::rle::{Rle, encode};
use crate::error::{Error, Result};
use crate::labels::Label;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CocoFile {
    pub images: Vec<Image>,
    pub categories: Vec<Category>,
    pub annotations: Vec<Annotation>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Image {
    pub id: u64,
    pub file_name: String,
    pub width: usize,
    pub height: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Category {
    /// The word's place among the typed words, from 1.
    pub id: usize,
    pub name: String,
    pub supercategory: String,
    /// Every word typed for the class (`dog|puppy`), the name first.
    pub synonyms: Vec<String>,
}

/// A mask: compressed RLE, or polygons `[x0, y0, x1, y1, ...]` in pixels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Shape {
    Rle(Rle),
    Polygons(Vec<Vec<f64>>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Annotation {
    pub id: u64,
    pub image_id: u64,
    pub category_id: usize,
    pub segmentation: Shape,
    pub area: usize,
    /// `[x, y, width, height]`, the pixels' edges (pycocotools' `toBbox`).
    pub bbox: [usize; 4],
    pub iscrowd: u8,
    pub score: f32,
}

/// One object of a results file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    pub image_id: u64,
    pub category_id: usize,
    pub segmentation: Shape,
    pub bbox: [usize; 4],
    pub score: f32,
}

/// One category per typed word, ids from 1 in the words' order.
pub fn categories(labels: &[Label]) -> Vec<Category> {
    let category = |(i, l): (usize, &Label)| Category {
        id: i + 1,
        name: l.name.clone(),
        supercategory: String::new(),
        synonyms: l.synonyms.clone(),
    };
    labels.iter().enumerate().map(category).collect()
}

/// One image's COCO file: the image as `image_id`, annotation ids from 1 in the objects' order.
/// `polygons` writes outlines instead of RLE (holes joined by keyholes; RLE keeps them as they
/// are).
pub fn image_file(image: &Labelled, image_id: u64, labels: &[Label], polygons: bool) -> CocoFile {
    let annotations = image
        .named()
        .enumerate()
        .map(|(k, (class, object))| {
            let segmentation = if polygons {
                let parts = polygon::parts(&object.mask, TOLERANCE);
                Shape::Polygons(parts.iter().map(|p| polygon::flat(&polygon::keyhole(p))).collect())
            } else {
                Shape::Rle(encode(&object.mask))
            };
            let [x0, y0, x1, y1] = object.bbox;
            Annotation {
                id: k as u64 + 1,
                image_id,
                category_id: class + 1,
                segmentation,
                area: object.area,
                bbox: [x0, y0, x1 - x0 + 1, y1 - y0 + 1],
                iscrowd: 0,
                score: object.score,
            }
        })
        .collect();
    CocoFile {
        images: vec![Image {
            id: image_id,
            file_name: image.file_name.to_string(),
            width: image.width,
            height: image.height,
        }],
        categories: categories(labels),
        annotations,
    }
}

/// Files of disjoint images as one: the same categories in each, each image once; images in
/// the order of their ids, annotations in their images' order and numbered again from 1.
pub fn merge(files: &[CocoFile]) -> Result<CocoFile> {
    let Some(first) = files.first() else {
        return Err(Error::invalid("no COCO files to merge"));
    };
    if let Some(k) = files.iter().position(|f| f.categories != first.categories) {
        return Err(Error::invalid(format!(
            "file {} of the merge has other categories than the first: its words differ, so its ids would mean other classes",
            k + 1
        )));
    }
    let mut images: Vec<&Image> = files.iter().flat_map(|f| &f.images).collect();
    images.sort_by_key(|i| i.id);
    if let Some(pair) = images.windows(2).find(|p| p[0].id == p[1].id) {
        return Err(Error::invalid(format!(
            "image id {} is in two files ({} and {}): merged files must hold different images",
            pair[0].id, pair[0].file_name, pair[1].file_name
        )));
    }
    let mut annotations: Vec<&Annotation> = files.iter().flat_map(|f| &f.annotations).collect();
    // Stable: each image's annotations keep their order.
    annotations.sort_by_key(|a| a.image_id);
    let annotations =
        annotations.into_iter().enumerate().map(|(k, a)| Annotation { id: k as u64 + 1, ..a.clone() }).collect();
    Ok(CocoFile { images: images.into_iter().cloned().collect(), categories: first.categories.clone(), annotations })
}

/// The file's annotations as a results file (a list, as `COCO.loadRes` reads it).
pub fn results(file: &CocoFile) -> Vec<Detection> {
    let detection = |a: &Annotation| Detection {
        image_id: a.image_id,
        category_id: a.category_id,
        segmentation: a.segmentation.clone(),
        bbox: a.bbox,
        score: a.score,
    };
    file.annotations.iter().map(detection).collect()
}
