//! `wordmask sam --boxes`: every box of a COCO file outlined and named, as a COCO results file.
//!
//! - The hand-built colour SAM (a box's top-left corner picks a colour, the mask is every pixel
//!   of that colour) with the colour CLIP naming the masks, on painted scenes whose ground truth
//!   is the painted rectangles: each mask is its rectangle, named with its own category, so
//!   COCOeval scores the results at AP 1.0 and every instance's 1 − IoU is near 0. Words given
//!   to the wrong categories, or masks drawn elsewhere, lower both (a run with the words swapped
//!   shows the check can fail). A detector's results file gives the same masks with its scores.
//! - The tiny Open-Vocabulary SAM: each box's mask, name and score are those `sam --box` gives
//!   for the same box on its own (one encoding an image for all its boxes changes nothing), and
//!   the reference box of `tools/ovsam_reference.py` keeps its mask and name; 2,500 categories
//!   with ids up to 65,535 name every box, each with the category whose name wins among a few.
//!
//! pycocotools reads the results back (`tools/check_sam_results.py`: `COCO.loadRes`, `COCOeval`
//! segm, and each instance's IoU recomputed) where a Python with it is found: `$WORDMASK_PYTHON`,
//! the reference stack's `/root/.venv-ovsam`, or `python3`. `./build.sh test` installs it
//! (tools/requirements-exports.txt) and sets `WORDMASK_PYTHON`, which must then import it;
//! elsewhere the Rust checks here (an RLE decoder written from `maskApi.c`, IoUs against the
//! painted rectangles) stand alone.

use crate::common;
use crate::exports::decode_rle;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Cli, fixtures};
use serde_json::{Value, json};
use wordmask::segment::export::rle::{self, Rle};
use wordmask::segment::objects::RunMask;

/// A Python that imports pycocotools, if there is one; the one `WORDMASK_PYTHON` names must.
fn pycocotools() -> Option<PathBuf> {
    let imports = |python: &Path| {
        Command::new(python).args(["-c", "import pycocotools.cocoeval"]).output().is_ok_and(|o| o.status.success())
    };
    if let Some(python) = std::env::var_os("WORDMASK_PYTHON").map(PathBuf::from) {
        assert!(imports(&python), "WORDMASK_PYTHON={} does not import pycocotools", python.display());
        return Some(python);
    }
    [PathBuf::from("/root/.venv-ovsam/bin/python"), PathBuf::from("python3")].into_iter().find(|p| imports(p))
}

/// `tools/check_sam_results.py`'s verdict on a run, or `None` without pycocotools.
fn pycocotools_check(truth: &Path, results: &Path, report: Option<&Path>) -> Option<Value> {
    let Some(python) = pycocotools() else {
        eprintln!("no Python with pycocotools (set WORDMASK_PYTHON): the pycocotools read-back is skipped");
        return None;
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/check_sam_results.py");
    let mut command = Command::new(python);
    command.arg(script).arg(truth).arg(results);
    if let Some(report) = report {
        command.arg("--report").arg(report);
    }
    let out = command.output().expect("run tools/check_sam_results.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "check_sam_results.py failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    Some(serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap())
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn write_json(path: &Path, value: &Value) {
    std::fs::write(path, serde_json::to_vec_pretty(value).unwrap()).unwrap();
}

/// The 0/1 plane of a result's RLE.
fn plane_of(result: &Value) -> Vec<u8> {
    let rle: Rle = serde_json::from_value(result["segmentation"].clone()).unwrap();
    decode_rle(&rle)
}

fn iou(a: &[u8], b: &[u8]) -> f64 {
    let both = a.iter().zip(b).filter(|(x, y)| **x == 1 && **y == 1).count();
    let either = a.iter().zip(b).filter(|(x, y)| **x == 1 || **y == 1).count();
    both as f64 / (either as f64 + 1e-8)
}

const W: usize = 448;
const H: usize = 336;

/// A colour rectangle `[x0, y0, x1, y1)` of a painted scene, with its category.
struct Painted {
    colour: &'static str,
    rgb: [u8; 3],
    rect: [usize; 4],
}

/// Two scenes of saturated rectangles on black, their sides on the colour SAM's 16-pixel grid,
/// each colour once an image (the colour SAM's mask is every pixel of the colour): `(file name,
/// image id, rectangles)`. The ids are not places, and the categories' ids are not in their
/// order, so a mix-up of places and ids cannot pass.
fn scenes() -> Vec<(&'static str, u64, Vec<Painted>)> {
    let p = |colour, rgb, rect| Painted { colour, rgb, rect };
    let (red, green, blue) = ([255, 0, 0], [0, 255, 0], [0, 0, 255]);
    vec![
        (
            "a.png",
            42,
            vec![
                p("red", red, [16, 32, 160, 144]),
                p("green", green, [224, 48, 400, 176]),
                p("blue", blue, [64, 208, 320, 320]),
            ],
        ),
        (
            "b.png",
            7,
            vec![
                p("blue", blue, [0, 0, 192, 96]),
                p("red", red, [240, 128, 448, 336]),
                p("green", green, [32, 160, 176, 304]),
            ],
        ),
    ]
}

const CATEGORIES: [(u64, &str); 4] = [(12, "green"), (3, "red"), (7, "blue"), (30, "yellow")];

fn category_id(colour: &str) -> u64 {
    CATEGORIES.iter().find(|c| c.1 == colour).unwrap().0
}

fn rect_plane([x0, y0, x1, y1]: [usize; 4]) -> Vec<u8> {
    (0..W * H).map(|i| u8::from((x0..x1).contains(&(i % W)) && (y0..y1).contains(&(i / W)))).collect()
}

/// Paint the scenes into `photos` and write their ground truth: each rectangle an annotation
/// (its mask as a polygon, a compressed RLE or an uncompressed one, in turn), a crowd region
/// that is no prompt, a category with no instance, and an image with no box (whose file is
/// missing, and need not be read).
fn paint(photos: &Path, truth: &Path) {
    std::fs::create_dir_all(photos).unwrap();
    let (mut images, mut annotations) = (Vec::new(), Vec::new());
    for (name, id, rects) in scenes() {
        let mut img = image::RgbImage::new(W as u32, H as u32);
        for r in &rects {
            let [x0, y0, x1, y1] = r.rect;
            for y in y0..y1 {
                for x in x0..x1 {
                    img.put_pixel(x as u32, y as u32, image::Rgb(r.rgb));
                }
            }
            let mask = RunMask::from_plane(&rect_plane(r.rect), W, H);
            let segmentation = match annotations.len() % 3 {
                0 => json!([[x0, y0, x1, y0, x1, y1, x0, y1]]),
                1 => json!(rle::encode(&mask)),
                _ => json!({"size": [H, W], "counts": rle::column_counts(&mask)}),
            };
            annotations.push(json!({
                "id": 100 + annotations.len(), "image_id": id, "category_id": category_id(r.colour),
                "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0), "iscrowd": 0,
                "segmentation": segmentation,
            }));
        }
        img.save(photos.join(name)).unwrap();
        images.push(json!({"id": id, "file_name": name, "width": W, "height": H}));
        if id == 42 {
            let crowd = RunMask::from_plane(&rect_plane([400, 300, 448, 336]), W, H);
            annotations.push(json!({
                "id": 999, "image_id": id, "category_id": 7, "bbox": [400, 300, 48, 36], "area": 48 * 36,
                "iscrowd": 1, "segmentation": {"size": [H, W], "counts": rle::column_counts(&crowd)},
            }));
        }
    }
    images.push(json!({"id": 99, "file_name": "absent.png", "width": 10, "height": 10}));
    let categories: Vec<Value> = CATEGORIES.iter().map(|(id, name)| json!({"id": id, "name": name})).collect();
    write_json(truth, &json!({"images": images, "annotations": annotations, "categories": categories}));
}

fn colour_run(truth: &Path, photos: &Path, out: &Path) -> Cli {
    Cli::new("sam")
        .fixture("sam-colours")
        .arg("--clip", fixtures().join("semantic-colours"))
        .arg("--templates", "single")
        .arg("--boxes", truth)
        .arg("--images", photos)
        .out(out)
}

/// Every ground-truth box of the painted scenes gives its rectangle, named with its category:
/// COCOeval's mask AP is 1.0 and every 1 − IoU under 0.05; the same words given to the wrong
/// categories are caught; a detector's results file gives the same masks with its scores.
#[test]
fn ground_truth_boxes_outline_and_name_painted_regions_at_ap_one() {
    let dir = common::scratch("sam-boxes-colours");
    let (photos, truth) = (dir.join("photos"), dir.join("truth.json"));
    paint(&photos, &truth);
    let (results_path, report_path) = (dir.join("results.json"), dir.join("report.json"));
    let summary = colour_run(&truth, &photos, &results_path).arg("--report", &report_path).json();
    assert_eq!(
        (summary["encoded"].as_u64(), summary["masks"].as_u64(), summary["crowds_skipped"].as_u64()),
        (Some(2), Some(6), Some(1)),
        "each image with boxes encoded once, one mask a box, the crowd passed over: {summary}"
    );
    assert_eq!(summary["accuracy"].as_f64(), Some(1.0), "{summary}");

    let results = read_json(&results_path);
    let results = results.as_array().unwrap();
    let report = read_json(&report_path);
    let instances = report["instances"].as_array().unwrap();
    let scenes = scenes();
    let painted: Vec<(u64, &Painted)> =
        scenes.iter().flat_map(|(_, id, rects)| rects.iter().map(move |r| (*id, r))).collect();
    assert_eq!(results.len(), painted.len());
    for (k, ((image_id, rect), result)) in painted.iter().zip(results).enumerate() {
        let [x0, y0, x1, y1] = rect.rect;
        assert_eq!(result["image_id"].as_u64(), Some(*image_id), "result {k}: {result}");
        assert_eq!(result["category_id"].as_u64(), Some(category_id(rect.colour)), "result {k} is {}", rect.colour);
        let bbox: Vec<f64> = result["bbox"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert_eq!(bbox, [x0, y0, x1 - x0, y1 - y0].map(|v| v as f64), "the prompt's box");
        let overlap = iou(&plane_of(result), &rect_plane(rect.rect));
        assert!(overlap >= 0.95, "result {k} ({} on image {image_id}): IoU {overlap}", rect.colour);
        let instance = &instances[k];
        assert_eq!(instance["annotation_id"].as_u64(), Some(100 + k as u64 + u64::from(k >= 3)));
        let (reported, error) = (instance["iou"].as_f64().unwrap(), instance["one_minus_iou"].as_f64().unwrap());
        assert!((reported - overlap).abs() < 1e-9, "result {k}: reported IoU {reported}, measured {overlap}");
        assert!((error - (1.0 - overlap)).abs() < 1e-12 && error < 0.05, "{instance}");
        assert_eq!(instance["predicted_category_id"], instance["category_id"]);
    }
    let mean: f64 = instances.iter().map(|i| i["one_minus_iou"].as_f64().unwrap()).sum::<f64>() / 6.0;
    assert!((report["mean_one_minus_iou"].as_f64().unwrap() - mean).abs() < 1e-12, "{report}");
    if let Some(check) = pycocotools_check(&truth, &results_path, Some(&report_path)) {
        assert_eq!(check["ap"].as_f64(), Some(1.0), "COCOeval segm: {check}");
        assert_eq!(check["instances_checked"].as_u64(), Some(6), "{check}");
        assert!(check["max_iou_difference"].as_f64().unwrap() < 1e-9, "pycocotools' IoUs: {check}");
    }

    // The colour words given to the wrong categories (green's to blue, blue's to green): the
    // masks are the same, their names wrong, and both measures say so.
    let swapped = dir.join("swapped.json");
    let summary = colour_run(&truth, &photos, &swapped).labels("blue, red, green, yellow").json();
    assert!((summary["accuracy"].as_f64().unwrap() - 2.0 / 6.0).abs() < 1e-9, "only red is right: {summary}");
    if let Some(check) = pycocotools_check(&truth, &swapped, None) {
        assert!(check["ap"].as_f64().unwrap() < 0.5, "COCOeval must see the wrong names: {check}");
    }

    // A detector's results file for the same images: the same masks, the detector's scores and
    // (with --names boxes) its categories, even a wrong one; boxes under --min-score left out.
    let detections: Vec<Value> = painted
        .iter()
        .enumerate()
        .map(|(k, (image_id, rect))| {
            let [x0, y0, x1, y1] = rect.rect;
            let category = if k == 0 { category_id("yellow") } else { category_id(rect.colour) };
            json!({"image_id": image_id, "bbox": [x0, y0, x1 - x0, y1 - y0], "score": 0.9 - 0.1 * k as f64,
                   "category_id": category})
        })
        .collect();
    let detections_path = dir.join("detections.json");
    write_json(&detections_path, &Value::Array(detections));
    let from_detector = dir.join("from-detector.json");
    let summary = Cli::new("sam")
        .fixture("sam-colours")
        .arg("--boxes", &detections_path)
        .arg("--annotations", &truth)
        .arg("--images", &photos)
        .args(["--min-score", "0.45"])
        .out(&from_detector)
        .json();
    assert_eq!((summary["names"].as_str(), summary["below_min_score"].as_u64()), (Some("boxes"), Some(1)), "{summary}");
    let kept = read_json(&from_detector);
    let kept = kept.as_array().unwrap();
    assert_eq!(kept.len(), 5, "the box scored 0.4 is left out");
    for (k, (mine, truth_run)) in kept.iter().zip(results).enumerate() {
        assert_eq!(mine["segmentation"], truth_run["segmentation"], "box {k}: the same mask");
        assert!((mine["score"].as_f64().unwrap() - (0.9 - 0.1 * k as f64)).abs() < 1e-9, "the detector's score");
        let category = if k == 0 { category_id("yellow") } else { truth_run["category_id"].as_u64().unwrap() };
        assert_eq!(mine["category_id"].as_u64(), Some(category), "the detector's category");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// The tiny Open-Vocabulary SAM's six class names as a file's categories.
const OVSAM_NAMES: [&str; 6] = ["red_block", "bow_(weapon)", "cat/kitten", "trash_can", "sky_or_blue_sky", "grass"];

/// Two photos of different sizes (the fixture's image and its resized copy) and three boxes:
/// `(photos folder, [(file, id, width, height)], [(image id, [x0, y0, x1, y1])])`.
/// A photo of a scene: `(file, id, width, height)`.
type Photo = (&'static str, u64, usize, usize);
/// A box on a photo: `(image id, [x0, y0, x1, y1])`.
type Boxed = (u64, [usize; 4]);

fn ovsam_scene(dir: &Path) -> (PathBuf, Vec<Photo>, Vec<Boxed>) {
    let photos = dir.join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    for name in ["resized.png", "image.png"] {
        std::fs::copy(fixtures().join("ovsam-tiny").join(name), photos.join(name)).unwrap();
    }
    let reference = read_json(&fixtures().join("ovsam-tiny/reference.json"));
    let b: Vec<usize> = reference["cases"]["box"]["prompt_box"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let images = vec![("resized.png", 4, 512, 384), ("image.png", 2, 96, 72)];
    let boxes = vec![(4, [b[0], b[1], b[2], b[3]]), (2, [10, 10, 50, 40]), (4, [300, 200, 450, 350])];
    (photos, images, boxes)
}

fn ovsam_truth(images: &[Photo], boxes: &[Boxed], categories: &[(u64, String)]) -> Value {
    let images: Vec<Value> =
        images.iter().map(|(name, id, w, h)| json!({"id": id, "file_name": name, "width": w, "height": h})).collect();
    let annotations: Vec<Value> = boxes
        .iter()
        .enumerate()
        .map(|(k, (image, [x0, y0, x1, y1]))| {
            json!({"id": k + 1, "image_id": image, "category_id": categories[k].0, "iscrowd": 0,
                   "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0),
                   "segmentation": [[x0, y0, x1, y0, x1, y1, x0, y1]]})
        })
        .collect();
    let categories: Vec<Value> = categories.iter().map(|(id, name)| json!({"id": id, "name": name})).collect();
    json!({"images": images, "annotations": annotations, "categories": categories})
}

/// `sam --box` on one photo with the same words: the mask PNG, the label and its probability.
fn single_box(photos: &Path, file: &str, [x0, y0, x1, y1]: [usize; 4], words: &str, out: &Path) -> (Vec<u8>, Value) {
    let summary = Cli::new("sam")
        .fixture("ovsam-tiny")
        .image(photos.join(file))
        .arg("--box", format!("{x0},{y0},{x1},{y1}"))
        .labels(words)
        .out(out)
        .json();
    let mask = image::open(out).unwrap().to_luma8().into_raw().iter().map(|&v| u8::from(v == 255)).collect();
    (mask, summary)
}

/// Each box's mask, name and score are what `sam --box` gives for it alone, and the reference
/// box keeps the reference's mask size and name; pycocotools loads and scores the results.
#[test]
fn open_vocabulary_sam_boxes_match_single_prompts() {
    let dir = common::scratch("sam-boxes-ovsam");
    let (photos, images, boxes) = ovsam_scene(&dir);
    let ids = [5u64, 9, 11, 13, 21, 33];
    let categories: Vec<(u64, String)> = ids.iter().zip(OVSAM_NAMES).map(|(id, n)| (*id, n.to_string())).collect();
    let truth = dir.join("truth.json");
    write_json(&truth, &ovsam_truth(&images, &boxes, &categories));
    let (results_path, report_path) = (dir.join("results.json"), dir.join("report.json"));
    let summary = Cli::new("sam")
        .fixture("ovsam-tiny")
        .arg("--boxes", &truth)
        .arg("--images", &photos)
        .arg("--report", &report_path)
        .out(&results_path)
        .json();
    assert_eq!((summary["encoded"].as_u64(), summary["masks"].as_u64()), (Some(2), Some(3)), "{summary}");
    let results = read_json(&results_path);
    let report = read_json(&report_path);
    let words = OVSAM_NAMES.join(", ");
    let reference = read_json(&fixtures().join("ovsam-tiny/reference.json"));
    for (k, ((image_id, bbox), result)) in boxes.iter().zip(results.as_array().unwrap()).enumerate() {
        let file = images.iter().find(|i| i.1 == *image_id).unwrap().0;
        let (mask, single) = single_box(&photos, file, *bbox, &words, &dir.join("mask.png"));
        assert_eq!(plane_of(result), mask, "box {k}: the same mask as `sam --box` alone");
        let instance = &report["instances"][k];
        match single["label"].as_str() {
            Some(label) => {
                let id = categories.iter().find(|c| c.1 == label).unwrap().0;
                assert_eq!(result["category_id"].as_u64(), Some(id), "box {k}: named {label} alone");
                assert_eq!(instance["predicted_category_id"].as_u64(), Some(id));
                let (ours, alone) = (result["score"].as_f64().unwrap(), single["probability"].as_f64().unwrap());
                assert!((ours - alone).abs() < 1e-6, "box {k}: score {ours}, alone {alone}");
            }
            None => {
                // An empty mask: no name, the box's own category, score 0.
                assert_eq!(single["area"].as_u64(), Some(0));
                assert_eq!(
                    (result["category_id"].as_u64(), result["score"].as_f64()),
                    (Some(categories[k].0), Some(0.0))
                );
                assert!(instance["predicted_category_id"].is_null(), "{instance}");
            }
        }
        let &(_, _, w, h) = images.iter().find(|i| i.1 == *image_id).unwrap();
        let truth_plane: Vec<u8> = (0..w * h)
            .map(|i| u8::from((bbox[0]..bbox[2]).contains(&(i % w)) && (bbox[1]..bbox[3]).contains(&(i / w))))
            .collect();
        let measured = iou(&mask, &truth_plane);
        assert!(
            (instance["iou"].as_f64().unwrap() - measured).abs() < 1e-9,
            "box {k}: {instance}, measured {measured}"
        );
    }
    let boxed = &results[0];
    let case = &reference["cases"]["box"];
    assert_eq!(plane_of(boxed).iter().filter(|&&v| v == 1).count() as u64, case["mask_pixels"].as_u64().unwrap());
    assert_eq!(boxed["category_id"].as_u64(), Some(5), "the reference names its box {}", case["top1"]["name"]);
    if let Some(check) = pycocotools_check(&truth, &results_path, Some(&report_path)) {
        assert_eq!((check["results"].as_u64(), check["instances_checked"].as_u64()), (Some(3), Some(3)), "{check}");
        assert!(check["ap"].as_f64().unwrap() >= 0.0, "COCOeval ran: {check}");
        assert!(check["max_iou_difference"].as_f64().unwrap() < 1e-9, "pycocotools' IoUs: {check}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// 2,500 categories with ids up to 65,535 (the six class names among made-up ones): every box
/// is named, with a category of the file, and the one each box gets wins again among the six
/// and itself alone (a class's logit does not depend on the others, so the best of many is the
/// best of any few that hold it).
#[test]
fn thousands_of_categories_name_every_box() {
    let dir = common::scratch("sam-boxes-vocabulary");
    let (photos, images, boxes) = ovsam_scene(&dir);
    let categories: Vec<(u64, String)> = (0..2500)
        .map(|k| (65_535 - 7 * k as u64, OVSAM_NAMES.get(k).map_or(format!("thing number {k}"), |n| n.to_string())))
        .collect();
    let truth = dir.join("truth.json");
    write_json(&truth, &ovsam_truth(&images, &boxes, &categories));
    let results_path = dir.join("results.json");
    let summary =
        Cli::new("sam").fixture("ovsam-tiny").arg("--boxes", &truth).arg("--images", &photos).out(&results_path).json();
    assert_eq!(summary["categories"].as_u64(), Some(2500), "{summary}");
    let results = read_json(&results_path);
    for (k, ((image_id, bbox), result)) in boxes.iter().zip(results.as_array().unwrap()).enumerate() {
        let id = result["category_id"].as_u64().unwrap();
        let name = &categories.iter().find(|c| c.0 == id).unwrap_or_else(|| panic!("box {k}: category {id}")).1;
        if result["score"].as_f64() == Some(0.0) {
            continue; // an empty mask, unnamed
        }
        let file = images.iter().find(|i| i.1 == *image_id).unwrap().0;
        let few = if OVSAM_NAMES.contains(&name.as_str()) {
            OVSAM_NAMES.join(", ")
        } else {
            format!("{}, {name}", OVSAM_NAMES.join(", "))
        };
        let (_, single) = single_box(&photos, file, *bbox, &few, &dir.join("mask.png"));
        assert_eq!(single["label"].as_str(), Some(name.as_str()), "box {k}: among 2,500 it is {name} (id {id})");
    }
    std::fs::remove_dir_all(&dir).ok();
}
