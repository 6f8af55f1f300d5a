//! The episode benchmarks (`eval --protocol fss`) against the Fusioner repository's own code:
//! tools/fss_reference.py made the synthetic PASCAL-5i and COCO-20i folder in
//! tests/fixtures/fss and ran the repository's dataset classes and metric on it (chaofanma/
//! Fusioner @ 01985ed, unchanged, its model and albumentations stubbed); here the episode lists
//! must be the same (images, classes, order), and the CLI's mIoU and FB-IoU over the same saved
//! predictions the same numbers. Then the colour Fusioner segments the episodes and a built
//! Mosaic-4, and bad input is refused with the reason.

use crate::common;

use std::path::{Path, PathBuf};

use common::{Cli, fixtures, scratch};
use wordmask::dataset::fss::{Benchmark, Episode, MAX_EPISODES, episode_files, fold_episodes};
use wordmask::dataset::mosaic;

/// The repository keeps its counts in float32 and divides in float32; ours are f64.
const METRIC_TOLERANCE: f64 = 1e-6;

fn fss() -> PathBuf {
    fixtures().join("fss")
}

/// `<index> <name> <class>` lines the reference wrote.
fn expected(name: &str) -> Vec<Episode> {
    let text = std::fs::read_to_string(fss().join("expected").join(name)).unwrap();
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            let parts: Vec<&str> = line.split(' ').collect();
            assert_eq!(parts[0], i.to_string(), "{line}");
            Episode { query: parts[1].to_string(), class: parts[2].parse().unwrap() }
        })
        .collect()
}

/// Where two episode lists part, for the failure message.
fn first_difference(ours: &[Episode], reference: &[Episode]) -> String {
    match ours.iter().zip(reference).position(|(a, b)| a != b) {
        Some(i) => format!("episode {i}: ours {:?}, the repository's {:?}", ours[i], reference[i]),
        None => format!("ours has {} episodes, the repository's {}", ours.len(), reference.len()),
    }
}

#[test]
fn episode_lists_are_the_repositorys() {
    for (benchmark, file) in
        [(Benchmark::Pascal5i, "episodes-pascal-fold0.txt"), (Benchmark::Coco20i, "episodes-coco-fold0.txt")]
    {
        let ours = fold_episodes(benchmark, &fss().join("splits"), 0).unwrap();
        let reference = expected(file);
        assert!(ours == reference, "{benchmark:?}: {}", first_difference(&ours, &reference));
    }
    // The CLI lists the same episodes, with no model or image read.
    for (format, file) in [("pascal5i", "episodes-pascal-fold0.txt"), ("coco20i", "episodes-coco-fold0.txt")] {
        let out = Cli::new("eval")
            .model("no-model-needed")
            .args(["--protocol", "fss", "--format", format, "--fold", "0", "--list-episodes"])
            .arg("--dataset", "no-images-needed")
            .arg("--splits", fss().join("splits"))
            .ok();
        let listed = String::from_utf8(out.stdout).unwrap();
        assert!(listed == std::fs::read_to_string(fss().join("expected").join(file)).unwrap(), "{format}: {listed}");
    }
    // The order is the list's, not a sorted one; COCO's pickle holds more pairs than are scored,
    // with repeats, and its order is not the file's.
    let pascal = expected("episodes-pascal-fold0.txt");
    let mut sorted = pascal.clone();
    sorted.sort_by(|a, b| (&a.query, a.class).cmp(&(&b.query, b.class)));
    assert_ne!(pascal, sorted, "the PASCAL fixture's list is sorted: its order would prove nothing");
    assert_eq!(expected("episodes-coco-fold0.txt").len(), MAX_EPISODES);
    // The PASCAL images and labels are where the layout says.
    let files = episode_files(Benchmark::Pascal5i, &fss().join("pascal"), &pascal).unwrap();
    assert!(files[0].image.ends_with(format!("VOCdevkit/VOC2012/JPEGImages/{}.jpg", pascal[0].query)));
}

/// `eval --protocol fss` on the synthetic PASCAL-5i fold 0.
fn pascal_eval() -> Cli {
    Cli::new("eval")
        .fixture("semantic-colours-fusioner")
        .args(["--protocol", "fss", "--format", "pascal5i", "--fold", "0"])
        .arg("--dataset", fss().join("pascal"))
        .arg("--splits", fss().join("splits"))
}

#[test]
fn miou_and_fb_iou_are_the_repositorys_on_saved_predictions() {
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fss().join("expected/metric-pascal-fold0.json")).unwrap())
            .unwrap();
    let score = |dir: &Path| pascal_eval().arg("--predictions", dir).json();
    let ours = score(&fss().join("predictions/pascal-fold0"));
    for key in ["miou", "fb_iou"] {
        let (a, b) = (ours[key].as_f64().unwrap(), reference[key].as_f64().unwrap());
        assert!((a - b).abs() < METRIC_TOLERANCE, "{key}: ours {a}, the repository's {b}");
    }
    // Each class's IoU from the repository's buffers (foreground row).
    for class in ours["classes"].as_array().unwrap() {
        let c = class["value"].as_u64().unwrap() as usize;
        let (i, u) = (reference["intersection"][1][c].as_f64().unwrap(), reference["union"][1][c].as_f64().unwrap());
        let ours = class["iou"].as_f64().unwrap();
        assert!((ours - i / u).abs() < METRIC_TOLERANCE, "class {c}: ours {ours}, the repository's {}", i / u);
    }
    assert_eq!(ours["episodes"], serde_json::json!(expected("episodes-pascal-fold0.txt").len()));
    assert_eq!(ours["skipped"], serde_json::json!(1), "the listed class missing from its image is not counted");

    // The comparison can fail: the predictions of one image (every class listed for it) turned
    // inside out change the numbers.
    let dir = scratch("fss-predictions");
    let first = expected("episodes-pascal-fold0.txt")[0].query.clone();
    for entry in std::fs::read_dir(fss().join("predictions/pascal-fold0")).unwrap() {
        let path = entry.unwrap().path();
        let to = dir.join(path.file_name().unwrap());
        let mut mask = image::open(&path).unwrap().into_luma8();
        if to.file_name().unwrap().to_string_lossy().starts_with(&format!("{first}__")) {
            mask.pixels_mut().for_each(|p| p.0[0] = 1 - p.0[0].min(1));
        }
        mask.save(&to).unwrap();
    }
    let changed = score(&dir);
    assert!((changed["miou"].as_f64().unwrap() - reference["miou"].as_f64().unwrap()).abs() > 1e-3);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn the_colour_fusioner_segments_the_episodes_it_has_words_for() {
    let classes = fss().join("classes.txt");
    let ours = pascal_eval().arg("--classes", &classes).json();
    let iou = |out: &serde_json::Value, c: usize| out["classes"][c - 1]["iou"].as_f64().unwrap_or(0.0);
    eprintln!("colour Fusioner on the synthetic fold 0: {ours}");
    for c in 1..=4 {
        assert!(iou(&ours, c) >= 0.7, "class {c}: IoU {:.3}", iou(&ours, c));
    }
    assert!(ours["fb_iou"].as_f64().unwrap() >= 0.7, "{ours}");
    // Negative control: the colour words swapped round, each class typed as another colour.
    let swapped = scratch("fss-swapped").join("classes.txt");
    let text = std::fs::read_to_string(&classes).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines[1..5].rotate_left(1);
    std::fs::write(&swapped, lines.join("\n") + "\n").unwrap();
    let wrong = pascal_eval().arg("--classes", &swapped).json();
    for c in 1..=4 {
        assert!(iou(&wrong, c) < 0.3, "class {c} typed as another colour: IoU {:.3}", iou(&wrong, c));
    }
    std::fs::remove_dir_all(swapped.parent().unwrap()).unwrap();
}

/// An FSS-1000-like folder: five classes (four colour words and one other), two images each:
/// the class's colour over the whole tile, as the colour Fusioner's training images are painted,
/// its mask the whole tile but for a corner square (which the metric then counts against it).
fn fss1000(dir: &Path) {
    let colours: [(&str, [u8; 3]); 5] = [
        ("red", [255, 0, 0]),
        ("green", [0, 255, 0]),
        ("blue", [0, 0, 255]),
        ("yellow", [255, 255, 0]),
        ("dark_grey", [40, 40, 40]),
    ];
    for (name, rgb) in colours {
        let class = dir.join(name);
        std::fs::create_dir_all(&class).unwrap();
        for k in 1..=2u32 {
            let corner = |x: u32, y: u32| x < 16 * k && y < 16 * k;
            image::RgbImage::from_pixel(224, 224, image::Rgb(rgb)).save(class.join(format!("{k}.jpg"))).unwrap();
            let mask = image::RgbImage::from_fn(224, 224, |x, y| image::Rgb([if corner(x, y) { 0 } else { 255 }; 3]));
            mask.save(class.join(format!("{k}.png"))).unwrap();
        }
    }
}

/// Mosaic-4's draw against tools/fss_reference.py's own implementation of it (written from the
/// description in docs/cli.md): the same mosaics, tile for tile.
#[test]
fn mosaic4_plans_are_the_python_drawings() {
    let cases: [(&str, Vec<usize>, usize, u64); 2] =
        [("fss1000-test", vec![10; 240], 100, 0), ("uneven", vec![3, 0, 7, 1, 12, 5, 0, 9], 50, 41)];
    for (name, counts, count, seed) in cases {
        let ours: Vec<String> = mosaic::plan(&counts, count, seed)
            .unwrap()
            .iter()
            .map(|m| m.iter().map(|t| format!("{}:{}", t.class, t.image)).collect::<Vec<_>>().join(" "))
            .collect();
        let text = std::fs::read_to_string(fss().join(format!("expected/mosaic4-{name}-seed{seed}.txt"))).unwrap();
        let reference: Vec<&str> = text.lines().collect();
        assert_eq!(ours.len(), reference.len(), "{name}");
        if let Some(i) = ours.iter().zip(&reference).position(|(a, b)| a != b) {
            panic!("{name}, mosaic {i}: ours {}, Python's {}", ours[i], reference[i]);
        }
    }
}

/// The mean IoU of the colour classes in an `eval --json` output.
fn colour_miou(out: &serde_json::Value) -> f64 {
    let colours: Vec<f64> = out["classes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| ["red", "green", "blue", "yellow"].contains(&c["class"].as_str().unwrap()))
        .map(|c| c["iou"].as_f64().unwrap())
        .collect();
    assert!(!colours.is_empty(), "{out}");
    colours.iter().sum::<f64>() / colours.len() as f64
}

#[test]
fn mosaic4_is_built_from_an_fss1000_folder_and_scored() {
    let dir = scratch("fss-mosaic4");
    fss1000(&dir.join("right"));
    let run = |folder: &str, seed: &str| {
        Cli::new("eval")
            .fixture("semantic-colours-fusioner")
            .args(["--protocol", "fss", "--format", "mosaic4", "--mosaics", "6", "--seed", seed])
            .arg("--dataset", dir.join(folder))
            .json()
    };
    let out = run("right", "0");
    eprintln!("colour Fusioner on 6 mosaics: {out}");
    assert_eq!(out["episodes"], serde_json::json!(24));
    assert_eq!(out, run("right", "0"), "the same seed builds the same mosaics");
    assert_ne!(out, run("right", "1"), "another seed builds others");
    // Negative control: the colour folders renamed round (red's tiles named green, ...).
    fss1000(&dir.join("wrong"));
    let names = ["red", "green", "blue", "yellow"];
    for (i, name) in names.iter().enumerate() {
        std::fs::rename(dir.join("wrong").join(name), dir.join("wrong").join(format!("tmp{i}"))).unwrap();
    }
    for i in 0..4 {
        std::fs::rename(dir.join("wrong").join(format!("tmp{i}")), dir.join("wrong").join(names[(i + 1) % 4])).unwrap();
    }
    let wrong = run("wrong", "0");
    let (right, wrong) = (colour_miou(&out), colour_miou(&wrong));
    eprintln!("colour classes' mIoU: {right:.3} with their names, {wrong:.3} renamed");
    assert!(right >= 0.4 && right > wrong + 0.25, "named {right:.3}, renamed {wrong:.3}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn bad_episode_input_is_refused_with_the_reason() {
    let stderr = Cli::new("eval")
        .fixture("semantic-colours-fusioner")
        .args(["--protocol", "fss", "--format", "pascal5i", "--fold", "4"])
        .arg("--dataset", fss().join("pascal"))
        .arg("--splits", fss().join("splits"))
        .fails();
    assert!(stderr.contains("--fold must be 0, 1, 2 or 3, got 4"), "{stderr}");
    let stderr = Cli::new("eval")
        .fixture("semantic-colours-fusioner")
        .args(["--protocol", "fss", "--format", "coco20i", "--fold", "1"])
        .arg("--dataset", fss())
        .arg("--splits", fss().join("splits"))
        .fails();
    assert!(stderr.contains("cannot read the split list") && stderr.contains("fold1.pkl"), "{stderr}");
    let stderr = Cli::new("eval")
        .fixture("semantic-colours-fusioner")
        .args(["--protocol", "fss", "--format", "pascal5i", "--fold", "0"])
        .arg("--dataset", fss().join("pascal"))
        .fails();
    assert!(stderr.contains("needs --splits"), "{stderr}");
    let stderr = Cli::new("eval")
        .fixture("semantic-colours-fusioner")
        .args(["--protocol", "naclip", "--format", "pascal5i", "--fold", "0"])
        .arg("--dataset", fss().join("pascal"))
        .fails();
    assert!(stderr.contains("scored by episodes"), "{stderr}");
    let stderr = Cli::new("eval")
        .fixture("semantic-colours-fusioner")
        .args(["--protocol", "fss", "--format", "voc21"])
        .arg("--dataset", fss().join("pascal"))
        .fails();
    assert!(stderr.contains("--protocol fss scores pascal5i, coco20i or mosaic4"), "{stderr}");

    // Images listed but absent: every missing file is named before any episode runs.
    let dir = scratch("fss-missing");
    let root = dir.join("pascal");
    copy_tree(&fss().join("pascal"), &root);
    let first = &expected("episodes-pascal-fold0.txt")[0];
    std::fs::remove_file(root.join(format!("VOCdevkit/VOC2012/JPEGImages/{}.jpg", first.query))).unwrap();
    let stderr = Cli::new("eval")
        .fixture("semantic-colours-fusioner")
        .args(["--protocol", "fss", "--format", "pascal5i", "--fold", "0"])
        .arg("--dataset", &root)
        .arg("--splits", fss().join("splits"))
        .fails();
    assert!(stderr.contains("missing") && stderr.contains(&format!("{}.jpg", first.query)), "{stderr}");
    // A training list where the val list belongs names classes outside the fold.
    let splits = dir.join("splits/pascal/val");
    std::fs::create_dir_all(&splits).unwrap();
    std::fs::write(splits.join("fold0.txt"), format!("{}__07\n", first.query)).unwrap();
    let err = fold_episodes(Benchmark::Pascal5i, &dir.join("splits"), 0).unwrap_err();
    assert_eq!(err.code(), "invalid-input");
    assert!(err.to_string().contains("not one of fold 0's classes"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_tree(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}
