//! Sharp edges end to end, with models of known behaviour on a scene whose edges lie off every
//! patch grid (tests/fixtures/images/round_scene.png: two red discs, a green band at 30°, a
//! 5-pixel yellow arc on a blue ground): the colour words model (semantic-colours, whose map
//! is as coarse as its 16-pixel patches) and the colour SAM that outlines a colour at pixel
//! precision (sam-colours-fine). The refined map must follow the scene's edges — mIoU and
//! boundary F-score (3-pixel tolerance) with and without the refiner are printed — and each
//! word must count as many objects as the scene has. On every backend.

use crate::common;

use burn::tensor::Device;
use common::{backends, fixtures, image, load_model, read};
use wordmask::segment::objects::Object;
use wordmask::segment::point::{PromptModel, PromptSession};
use wordmask::segment::refine::{RefineOptions, sharpen};
use wordmask::segment::{EmbeddingCache, Segmentation, Settings, segment};

/// The scene's words in its labels' order, and each word's number of objects.
fn scene() -> (Vec<String>, Vec<([u8; 3], usize)>) {
    let spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("images/round_scene.json")).unwrap()).unwrap();
    let labels: Vec<String> = spec["labels"].as_array().unwrap().iter().map(|l| l.as_str().unwrap().into()).collect();
    let regions = spec["regions"].as_array().unwrap();
    let of = |word: &str| {
        let r = regions.iter().find(|r| r["word"] == word).unwrap();
        let rgb = r["rgb"].as_array().unwrap();
        ([0, 1, 2].map(|k| rgb[k].as_u64().unwrap() as u8), r["objects"].as_u64().unwrap() as usize)
    };
    let words = labels.iter().map(|w| of(w)).collect();
    (labels, words)
}

/// The label (1-based, in `labels`' order) each pixel shows.
fn truth(image: &wordmask::preprocess::RgbImage, colours: &[([u8; 3], usize)]) -> Vec<usize> {
    image
        .data
        .chunks(3)
        .map(|px| 1 + colours.iter().position(|(rgb, _)| rgb == px).expect("only the scene's colours"))
        .collect()
}

fn miou(ours: &[usize], truth: &[usize], classes: usize) -> f64 {
    let ious: Vec<f64> = (1..=classes)
        .map(|c| {
            let inter = ours.iter().zip(truth).filter(|(a, b)| **a == c && **b == c).count();
            let union = ours.iter().zip(truth).filter(|(a, b)| **a == c || **b == c).count();
            inter as f64 / union.max(1) as f64
        })
        .collect();
    ious.iter().sum::<f64>() / classes as f64
}

/// Pixels with a 4-neighbour of another label.
fn boundary(map: &[usize], w: usize, h: usize) -> Vec<bool> {
    (0..w * h)
        .map(|i| {
            let (x, y) = (i % w, i / w);
            (x + 1 < w && map[i + 1] != map[i])
                || (y + 1 < h && map[i + w] != map[i])
                || (x > 0 && map[i - 1] != map[i])
                || (y > 0 && map[i - w] != map[i])
        })
        .collect()
}

/// Boundary F-score: a boundary pixel of one map counts if the other map has one within
/// `tolerance` pixels (a disc).
fn boundary_f(ours: &[usize], truth: &[usize], w: usize, h: usize, tolerance: isize) -> f64 {
    let (a, b) = (boundary(ours, w, h), boundary(truth, w, h));
    let near = |from: &[bool], to: &[bool]| {
        let hits = (0..w * h)
            .filter(|&i| from[i])
            .filter(|&i| {
                let (x, y) = ((i % w) as isize, (i / w) as isize);
                (-tolerance..=tolerance).any(|dy| {
                    (-tolerance..=tolerance).any(|dx| {
                        let (nx, ny) = (x + dx, y + dy);
                        dx * dx + dy * dy <= tolerance * tolerance
                            && (0..w as isize).contains(&nx)
                            && (0..h as isize).contains(&ny)
                            && to[ny as usize * w + nx as usize]
                    })
                })
            })
            .count();
        hits as f64 / from.iter().filter(|&&v| v).count().max(1) as f64
    };
    let (precision, recall) = (near(&a, &b), near(&b, &a));
    if precision + recall == 0.0 { 0.0 } else { 2.0 * precision * recall / (precision + recall) }
}

fn load_sam(device: &Device) -> PromptModel {
    let dir = fixtures().join("sam-colours-fine");
    let config = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let processor = std::fs::read_to_string(dir.join("preprocessor_config.json")).unwrap();
    let bytes = read(&dir.join("model.safetensors"));
    PromptModel::from_bytes(&config, &bytes, "model.safetensors", Some(&processor), device).unwrap()
}

fn labels_of(seg: &Segmentation) -> Vec<usize> {
    seg.label_map.to_vec()
}

#[test]
fn sharp_edges_follow_the_scene_and_count_its_objects() {
    let (words, colours) = scene();
    let photo = image("round_scene");
    let (w, h) = (photo.width, photo.height);
    let truth = truth(&photo, &colours);
    let labels = wordmask::labels::parse(&words.join(", ")).unwrap();
    // Every pixel gets a word: the scene has no unlabelled part.
    let settings = Settings { threshold: Some(0.0), background: Some("none".parse().unwrap()), ..Settings::default() };
    for (backend, device) in backends() {
        let words_model = load_model("semantic-colours", &device);
        let mut session = PromptSession::new(load_sam(&device));
        let mut seg =
            wordmask::block_on(segment(&words_model, &photo, &labels, &settings, &mut EmbeddingCache::default()))
                .unwrap()
                .segmentation;
        let coarse = labels_of(&seg);
        let (objects, _, _) =
            wordmask::block_on(sharpen(&mut seg, &photo, &mut session, &RefineOptions::default())).unwrap();
        let sharp = labels_of(&seg);
        let (miou_before, miou_after) = (miou(&coarse, &truth, words.len()), miou(&sharp, &truth, words.len()));
        let (f_before, f_after) = (boundary_f(&coarse, &truth, w, h, 3), boundary_f(&sharp, &truth, w, h, 3));
        eprintln!(
            "{backend:?}: mIoU {miou_before:.3} -> {miou_after:.3}, boundary F (3 px) {f_before:.3} -> {f_after:.3}, \
             {} objects",
            objects.len()
        );
        for (k, word) in words.iter().enumerate() {
            let c = k + 1;
            let iou = |m: &[usize]| {
                let inter = m.iter().zip(&truth).filter(|(a, b)| **a == c && **b == c).count();
                inter as f64 / m.iter().zip(&truth).filter(|(a, b)| **a == c || **b == c).count().max(1) as f64
            };
            let count = objects.iter().filter(|o| o.class == Some(k)).count();
            eprintln!("  {word}: IoU {:.3} -> {:.3}, {count} objects", iou(&coarse), iou(&sharp));
        }
        assert!(f_after >= 0.9 && f_after > f_before + 0.2, "{backend:?}: boundary F {f_before:.3} -> {f_after:.3}");
        assert!(
            miou_after >= 0.95 && miou_after > miou_before,
            "{backend:?}: mIoU {miou_before:.3} -> {miou_after:.3}"
        );
        for (k, word) in words.iter().enumerate() {
            let count = objects.iter().filter(|o: &&Object| o.class == Some(k)).count();
            assert_eq!(count, colours[k].1, "{backend:?}: {word} has {count} objects, the scene {}", colours[k].1);
        }
    }
}
