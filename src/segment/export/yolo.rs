//! YOLO-seg labels (ultralytics' segmentation format): one `.txt` a image, one line an object,
//! `class x1 y1 x2 y2 ...` with the class counted from 0 in the typed words' order and the
//! outline's corners divided by the image's width and height; and `data.yaml`, the class list.
//! A line holds one ring, so an object's holes and parts are joined into it by zero-width
//! bridges ([`super::polygon`]).

use super::Labelled;
use super::polygon::{self, TOLERANCE};
use crate::labels::Label;

/// The image's label file.
pub fn label_file(image: &Labelled) -> String {
    let (w, h) = (image.width as f64, image.height as f64);
    let mut out = String::new();
    for (class, object) in image.named() {
        let rings: Vec<polygon::Ring> = polygon::parts(&object.mask, TOLERANCE).iter().map(polygon::keyhole).collect();
        let ring = polygon::joined(&rings);
        let open = if ring.len() > 1 && ring.first() == ring.last() { &ring[..ring.len() - 1] } else { &ring[..] };
        out.push_str(&class.to_string());
        for p in open {
            out.push_str(&format!(" {:.6} {:.6}", (p[0] / w).clamp(0.0, 1.0), (p[1] / h).clamp(0.0, 1.0)));
        }
        out.push('\n');
    }
    out
}

/// `data.yaml`: the dataset's folder (`path`, where `images/` and `labels/` are), and the class
/// names by index. Names are written as YAML's double-quoted scalars (JSON strings), so any
/// word reads back as typed.
pub fn data_yaml(labels: &[Label], path: &str) -> String {
    let quote = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let mut out = format!(
        "# YOLO segmentation labels written by wordmask: labels/<image>.txt beside images/<image>\n\
         path: {}\ntrain: images\nval: images\nnc: {}\nnames:\n",
        quote(path),
        labels.len()
    );
    for (i, label) in labels.iter().enumerate() {
        out.push_str(&format!("  {i}: {}\n", quote(&label.name)));
    }
    out
}
