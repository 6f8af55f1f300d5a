//! LabelMe JSON (wkentaro/labelme's `LabelFile`, version 5 format): one polygon shape a part of
//! each object, labelled with its word, the parts of one object sharing its `group_id`; holes
//! joined into their part by zero-width bridges ([`super::polygon`]); `imagePath` relative to
//! the JSON file, `imageData` left out (null), the image's height and width.

use serde_json::{Value, json};

use super::Labelled;
use super::polygon::{self, TOLERANCE};
use crate::labels::Label;

/// The LabelMe format version whose fields these are.
pub const VERSION: &str = "5.5.0";

/// The image's LabelMe file; `image_path` is the image as seen from the JSON file's folder.
pub fn file(image: &Labelled, image_path: &str, labels: &[Label]) -> Value {
    let mut shapes = Vec::new();
    for (class, object) in image.named() {
        for part in polygon::parts(&object.mask, TOLERANCE) {
            let ring = polygon::keyhole(&part);
            let open = &ring[..ring.len().saturating_sub(1)];
            let points: Vec<[f64; 2]> = open.iter().map(|p| [polygon::round2(p[0]), polygon::round2(p[1])]).collect();
            shapes.push(json!({
                "label": labels[class].name, "points": points, "group_id": object.id,
                "description": "", "shape_type": "polygon", "flags": {}, "mask": null,
            }));
        }
    }
    json!({
        "version": VERSION, "flags": {}, "shapes": shapes, "imagePath": image_path, "imageData": null,
        "imageHeight": image.height, "imageWidth": image.width,
    })
}
