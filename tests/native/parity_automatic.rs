//! Automatic mask generation against transformers' `mask-generation` pipeline
//! (tools/sam_automatic_reference.py) on the random-weight `sam-tiny`, on every backend: each
//! grid candidate's predicted IoU and stability score, and the masks kept after the filters and
//! box NMS — their order, scores, boxes and pixels.

use crate::common;

use burn::tensor::Device;
use common::{backends, fixtures, image, read};
use wordmask::segment::point::{AutoMask, AutomaticOptions, PromptModel, remove_small_regions};

const NAME: &str = "sam-tiny";

fn load(device: &Device) -> PromptModel {
    let dir = fixtures().join(NAME);
    let config = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let processor = std::fs::read_to_string(dir.join("preprocessor_config.json")).unwrap();
    let bytes = read(&dir.join("model.safetensors"));
    PromptModel::from_bytes(&config, &bytes, "model.safetensors", Some(&processor), device).unwrap()
}

fn reference() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join(NAME).join("automatic.json")).unwrap()).unwrap()
}

fn generate(model: &PromptModel, options: &AutomaticOptions) -> Vec<AutoMask> {
    let spec = reference();
    let img = image(spec["image"].as_str().unwrap());
    let encoded = wordmask::block_on(model.encode(&img)).unwrap();
    wordmask::block_on(model.automatic(&encoded, options, |_, _| {})).unwrap()
}

/// A run-length encoding in transformers' (COCO's) column-major order, as a row-major plane.
fn decode_rle(counts: &[serde_json::Value], width: usize, height: usize) -> Vec<u8> {
    let mut plane = vec![0u8; width * height];
    let (mut at, mut on) = (0usize, false);
    for count in counts.iter().map(|c| c.as_u64().unwrap() as usize) {
        if on {
            for i in at..at + count {
                let (x, y) = (i / height, i % height);
                plane[y * width + x] = 1;
            }
        }
        at += count;
        on = !on;
    }
    plane
}

fn options(spec: &serde_json::Value) -> AutomaticOptions {
    serde_json::from_value(spec["options"].clone()).unwrap()
}

/// With every filter open, each of the grid's candidates comes back, best predicted IoU first,
/// with the pipeline's IoU and stability score.
fn compare_candidates(model: &PromptModel) -> Vec<String> {
    let spec = reference();
    let open =
        AutomaticOptions { pred_iou_thresh: 0.0, stability_score_thresh: 0.0, box_nms_thresh: 1.0, ..options(&spec) };
    let ours = generate(model, &open);
    let iou: Vec<f64> = spec["candidates"]["iou"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    let stability: Vec<f64> =
        spec["candidates"]["stability"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap_or(f64::NAN)).collect();
    let mut order: Vec<usize> = (0..iou.len()).collect();
    order.sort_by(|&a, &b| iou[b].total_cmp(&iou[a]).then(a.cmp(&b)));
    let mut failures = Vec::new();
    if ours.len() != iou.len() {
        failures.push(format!("{} candidates, the pipeline has {}", ours.len(), iou.len()));
        return failures;
    }
    for (rank, (mask, &i)) in ours.iter().zip(&order).enumerate() {
        if (f64::from(mask.score()) - iou[i]).abs() > 1e-4 {
            failures.push(format!("candidate {rank}: IoU {:?} vs the pipeline's {}", mask.iou, iou[i]));
        }
        let (a, b) = (f64::from(mask.stability), stability[i]);
        if !(a.is_nan() && b.is_nan()) && (a - b).abs() > 2e-3 {
            failures.push(format!("candidate {rank} (grid point {}): stability {a} vs the pipeline's {b}", i / 3));
        }
    }
    failures
}

/// The pipeline's own thresholds: the same masks survive, in the same order.
fn compare_kept(model: &PromptModel) -> Vec<String> {
    let spec = reference();
    let (width, height) = (spec["width"].as_u64().unwrap() as usize, spec["height"].as_u64().unwrap() as usize);
    let ours = generate(model, &options(&spec));
    let theirs = spec["masks"].as_array().unwrap();
    let mut failures = Vec::new();
    if ours.len() != theirs.len() {
        failures.push(format!("{} masks kept, the pipeline keeps {}", ours.len(), theirs.len()));
        return failures;
    }
    for (k, (mask, want)) in ours.iter().zip(theirs).enumerate() {
        let score = want["score"].as_f64().unwrap();
        if (f64::from(mask.score()) - score).abs() > 1e-4 {
            failures.push(format!("mask {k}: score {:?} vs {score}", mask.iou));
        }
        let bbox: Vec<usize> = want["box"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        if mask.bbox.to_vec() != bbox {
            failures.push(format!("mask {k}: box {:?} vs {bbox:?}", mask.bbox));
        }
        let plane = decode_rle(want["counts"].as_array().unwrap(), width, height);
        let differ = mask.mask.to_plane().iter().zip(&plane).filter(|(a, b)| a != b).count();
        if differ > 2 {
            failures.push(format!("mask {k}: {differ} of {} pixels differ", plane.len()));
        }
    }
    failures
}

#[test]
fn automatic_masks_match_the_mask_generation_pipeline_on_every_backend() {
    for (backend, device) in backends() {
        let model = load(&device);
        let mut failures = compare_candidates(&model);
        failures.extend(compare_kept(&model));
        assert!(failures.is_empty(), "{backend:?}:\n{}", failures.join("\n"));
    }
}

/// SAM's default offset (1, for logits in the tens) or NMS threshold (0.7) in place of the
/// reference's is seen.
#[test]
fn a_wrong_offset_or_nms_threshold_fails_parity() {
    let device = wordmask::device::open(wordmask::Backend::Cpu).unwrap();
    let model = load(&device);
    let spec = reference();
    let expected = spec["masks"].as_array().unwrap().len();
    for wrong in [
        AutomaticOptions { stability_score_offset: 1.0, ..options(&spec) },
        AutomaticOptions { box_nms_thresh: 0.7, ..options(&spec) },
    ] {
        let kept = generate(&model, &wrong).len();
        assert_ne!(kept, expected, "{wrong:?} keeps as many masks as the pipeline's settings");
    }
}

/// `min_mask_region_area`'s step against segment-anything's own `remove_small_regions`
/// (OpenCV's 8-connected components), on random masks with holes, islands and specks: every
/// pixel and the "changed" flag, both modes, three areas.
#[test]
fn small_regions_go_as_segment_anything_removes_them() {
    let spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("small_regions.json")).unwrap()).unwrap();
    let plane = |rows: &serde_json::Value| -> Vec<u8> {
        rows.as_array().unwrap().iter().flat_map(|r| r.as_str().unwrap().bytes().map(|b| b - b'0')).collect()
    };
    let cases = spec["cases"].as_array().unwrap();
    for (k, case) in cases.iter().enumerate() {
        let (w, h) = (case["width"].as_u64().unwrap() as usize, case["height"].as_u64().unwrap() as usize);
        let (area, holes) = (case["area"].as_u64().unwrap() as usize, case["mode"] == "holes");
        let (out, changed) = remove_small_regions(&plane(&case["mask"]), w, h, area, holes);
        assert_eq!(changed, case["changed"].as_bool().unwrap(), "case {k} ({} at {area})", case["mode"]);
        let want = plane(&case["out"]);
        let differ = out.iter().zip(&want).filter(|(a, b)| a != b).count();
        assert_eq!(differ, 0, "case {k} ({} at {area}): {differ} pixels differ", case["mode"]);
    }
}
