//! End to end with checkpoints of known behaviour (tests/fixtures/semantic-colours and
//! semantic-colours-groupvit, built by tools/make_fixtures.py; semantic-colours-segclip, by
//! tools/segclip_reference.py): colour words must land on the regions of that colour, with
//! every engine. Catches
//! flipped axes, swapped channels, off-by-one stitching and label-index mix-ups.

use crate::common;

use std::path::Path;

use common::{Cli, Scene};

fn segment(model: &str, image: &Path, labels: &str, out: &Path, backend: &str) {
    // SegCLIP's windows are its 224-pixel input: at the scene's own size (short side 336) the
    // regions' edges stay on the 16-pixel patch grid; its default 224 puts them mid-patch.
    let extra: &[&str] = if model.ends_with("segclip") { &["--short-side", "336"] } else { &[] };
    let status = Cli::new("segment")
        .fixture(model)
        .image(image)
        .labels(labels)
        .out(out)
        .arg("--backend", backend)
        .args(extra)
        .run();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
}

/// Every engine, each with its colour checkpoint and its own defaults: the dense engine with
/// semantic-colours (CLIP), the GroupViT engine with semantic-colours-groupvit, the SegCLIP
/// engine with semantic-colours-segclip (tools/segclip_reference.py --colours).
#[test]
fn colour_words_land_on_their_regions() {
    for model in ["semantic-colours", "semantic-colours-groupvit", "semantic-colours-segclip"] {
        colour_words_land_on_their_regions_with(model);
    }
}

fn colour_words_land_on_their_regions_with(model: &str) {
    let dir = common::scratch(&format!("semantic-{model}"));
    let input = dir.join("scene.png");
    let scene = Scene::load();
    let truth = scene.paint(&input);
    // The label order differs from the painting order, so an index mix-up cannot pass.
    let labels = &scene.labels;
    for backend in ["cpu", "wgpu"] {
        if backend == "wgpu" && std::env::var("WORDMASK_SKIP_WGPU").as_deref() == Ok("1") {
            continue;
        }
        let out = dir.join(format!("labels-{backend}.png"));
        segment(model, &input, &labels.join(", "), &out, backend);
        let map = image::open(&out).unwrap().to_luma8().into_raw();
        for (i, name) in labels.iter().enumerate() {
            let ours = |p: usize| map[p] as usize == i + 1;
            let theirs = |p: usize| truth[p] == *name;
            let inter = (0..map.len()).filter(|&p| ours(p) && theirs(p)).count();
            let union = (0..map.len()).filter(|&p| ours(p) || theirs(p)).count();
            let iou = inter as f64 / union as f64;
            assert!(iou >= 0.9, "[{model}, {backend}] {name}: IoU {iou:.3} with the painted region");
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// `eval --format camvid` over a small folder in the SegNet CamVid layout (val/, valannot/),
/// with the colour checkpoint standing in for CLIP and ids 0..3 painted, 11 = void.
#[test]
fn eval_over_a_camvid_folder_prints_the_table_and_an_oracle_scores_100() {
    let root = std::env::temp_dir().join(format!("wordmask-camvid-{}", std::process::id()));
    for sub in ["val", "valannot"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    let ids = ["red", "green", "blue", "yellow"];
    let scene = Scene::load();
    for n in 0..2 {
        let image = root.join("val").join(format!("frame{n}.png"));
        let truth = scene.paint(&image);
        let mut gt: Vec<u8> =
            truth.iter().map(|name| ids.iter().position(|i| *i == name.as_str()).unwrap() as u8).collect();
        gt[..448 * 4].fill(11); // a void strip along the top
        image::GrayImage::from_raw(448, 336, gt)
            .unwrap()
            .save(root.join("valannot").join(format!("frame{n}.png")))
            .unwrap();
    }
    // CamVid's eleven ids; the first four renamed to the colour words the checkpoint knows.
    let classes = root.join("classes.txt");
    std::fs::write(
        &classes,
        "red\ngreen\nblue\nyellow\nsidewalk\ntree\nsign symbol\nfence\ncar\npedestrian\nbicyclist\n",
    )
    .unwrap();
    let eval = |model: &str| {
        Cli::new("eval").fixture(model).arg("--dataset", &root).arg("--format", "camvid").arg("--classes", &classes)
    };
    let run = |extra: &[&str]| {
        let out = eval("semantic-colours").args(extra).run();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        out
    };
    let table = String::from_utf8_lossy(&run(&[]).stdout).into_owned();
    assert!(table.contains("| mIoU") && table.contains("| yellow") && table.contains("2 images"), "{table}");
    let json: serde_json::Value = serde_json::from_slice(&run(&["--json"]).stdout).unwrap();
    let miou = json["miou"].as_f64().unwrap();
    assert!(miou >= 0.9, "colour checkpoint mIoU {miou}");
    // Classes absent from the split have no IoU and stay out of the mean.
    assert!(json["classes"][4]["iou"].is_null());
    let oracle: serde_json::Value =
        serde_json::from_slice(&run(&["--predictions", root.join("valannot").to_str().unwrap(), "--json"]).stdout)
            .unwrap();
    assert_eq!(oracle["miou"].as_f64(), Some(1.0));
    // The GroupViT and SegCLIP colour checkpoints run the same evaluation through their own
    // engines (SegCLIP at the scene's size, where its patches meet the regions' edges).
    for (model, engine, extra) in [
        ("semantic-colours-groupvit", "groupvit", &[][..]),
        ("semantic-colours-segclip", "segclip", &["--short-side", "336"][..]),
    ] {
        let out = eval(model).switch("--json").args(extra).run();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!((json["engine"].as_str(), json["images"].as_u64()), (Some(engine), Some(2)), "{json}");
        let miou = json["miou"].as_f64().unwrap();
        assert!(miou >= 0.9, "{model} mIoU {miou}");
    }
    std::fs::remove_dir_all(&root).ok();
}

/// A PASCAL VOC folder of one image, the colour scene with its labels as VOC values (red 1,
/// green 2, blue 3, yellow 4), and a class file of those names with "background" first.
fn voc_scene(name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let root = std::env::temp_dir().join(format!("wordmask-{name}-{}", std::process::id()));
    for sub in ["JPEGImages", "SegmentationClass", "ImageSets/Segmentation"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    let ids = ["red", "green", "blue", "yellow"];
    let truth = Scene::load().paint(&root.join("JPEGImages/scene.jpg"));
    let gt: Vec<u8> =
        truth.iter().map(|name| ids.iter().position(|i| *i == name.as_str()).unwrap() as u8 + 1).collect();
    image::GrayImage::from_raw(448, 336, gt).unwrap().save(root.join("SegmentationClass/scene.png")).unwrap();
    std::fs::write(root.join("ImageSets/Segmentation/val.txt"), "scene\n").unwrap();
    let classes = root.join("classes.txt");
    std::fs::write(&classes, "background\nred\ngreen\nblue\nyellow\n").unwrap();
    (root, classes)
}

/// `eval --protocol` runs the paper's config for the dataset: the same scores as its settings
/// typed by hand, flags beside it overriding its, and each paper's own windows.
#[test]
fn eval_with_a_papers_protocol_uses_its_config_and_yields_to_flags() {
    let (root, classes) = voc_scene("voc");
    let run = |extra: &[&str]| {
        let out = Cli::new("eval")
            .fixture("semantic-colours")
            .arg("--dataset", &root)
            .args(["--format", "voc21", "--json"])
            .arg("--classes", &classes)
            .args(extra)
            .run();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let naclip = run(&["--protocol", "naclip"]);
    let windows = &naclip["windows"];
    assert_eq!(
        (naclip["method"].as_str(), windows["window"].as_u64(), windows["rounding"].as_str()),
        (Some("naclip"), Some(0), Some("mmcv")),
        "{naclip}"
    );
    let typed = run(&[
        "--method",
        "naclip",
        "--templates",
        "imagenet80",
        "--short-side",
        "336",
        "--rounding",
        "mmcv",
        "--window",
        "0",
        "--logit-scale",
        "40",
        "--positions",
        "scale-factor",
        "--threshold",
        "0.1",
        "--threshold-on",
        "merged",
    ]);
    assert_eq!(
        (naclip["miou"].as_f64(), naclip["classes"].clone()),
        (typed["miou"].as_f64(), typed["classes"].clone())
    );
    let windowed = run(&["--protocol", "naclip", "--window", "224"]);
    assert_eq!(windowed["windows"]["window"].as_u64(), Some(224), "a flag beside the protocol wins: {windowed}");
    let sclip = run(&["--protocol", "sclip"]);
    assert_eq!((sclip["method"].as_str(), sclip["windows"]["window"].as_u64()), (Some("sclip"), Some(224)), "{sclip}");
    std::fs::remove_dir_all(&root).ok();
}

/// The ClearCLIP, GroupViT and SegCLIP protocols: each runs its repository's config through its
/// own engine (the same scores as the settings typed by hand), prompts with the repository's own
/// class names unless a class file is given, and refuses a checkpoint of another engine or a
/// dataset its repository has no config for.
#[test]
fn eval_protocols_of_clearclip_groupvit_and_segclip() {
    let (root, classes) = voc_scene("voc-presets");
    let eval = |model: &str, extra: &[&str]| {
        Cli::new("eval").fixture(model).arg("--dataset", &root).args(["--format", "voc21", "--json"]).args(extra).run()
    };
    let run = |model: &str, extra: &[&str]| {
        let out = eval(model, extra);
        assert!(out.status.success(), "{model} {extra:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let file = classes.to_str().unwrap();
    // (protocol, checkpoint, engine, window, stride, threshold, the same settings typed)
    type Case<'a> = (&'a str, &'a str, &'a str, u64, u64, f64, &'a [&'a str]);
    let cases: [Case; 3] = [
        (
            "clearclip",
            "semantic-colours",
            "dense",
            448,
            224,
            0.5,
            &[
                "--method",
                "clearclip",
                "--templates",
                "imagenet80",
                "--short-side",
                "448",
                "--rounding",
                "mmcv",
                "--window",
                "448",
                "--stride",
                "224",
                "--logit-scale",
                "50",
                "--positions",
                "scale-factor",
                "--threshold",
                "0.5",
                "--threshold-on",
                "merged",
            ],
        ),
        (
            "groupvit",
            "semantic-colours-groupvit",
            "groupvit",
            448,
            224,
            0.95,
            &[
                "--templates",
                "single",
                "--short-side",
                "448",
                "--rounding",
                "mmcv",
                "--window",
                "448",
                "--stride",
                "224",
                "--threshold",
                "0.95",
            ],
        ),
        (
            "segclip",
            "semantic-colours-segclip",
            "segclip",
            224,
            224,
            0.8,
            &[
                "--templates",
                "single",
                "--short-side",
                "224",
                "--rounding",
                "mmcv",
                "--window",
                "224",
                "--stride",
                "224",
                "--threshold",
                "0.8",
            ],
        ),
    ];
    for (protocol, model, engine, window, stride, threshold, typed) in cases {
        let paper = run(model, &["--protocol", protocol, "--classes", file]);
        let w = &paper["windows"];
        assert_eq!(
            (paper["engine"].as_str(), w["window"].as_u64(), w["stride"].as_u64(), w["rounding"].as_str()),
            (Some(engine), Some(window), Some(stride), Some("mmcv")),
            "{protocol}: {paper}"
        );
        assert!((paper["threshold"].as_f64().unwrap() - threshold).abs() < 1e-6, "{protocol}: {paper}");
        let by_hand = run(model, &[&["--classes", file][..], typed].concat());
        assert_eq!(
            (paper["miou"].as_f64(), paper["classes"].clone()),
            (by_hand["miou"].as_f64(), by_hand["classes"].clone()),
            "{protocol}"
        );
        // Without a class file the repository's own names are scored: ClearCLIP's one
        // "background" word and "tvmonitor", GroupViT's and SegCLIP's mmseg names.
        let own = run(model, &["--protocol", protocol, "--limit", "1"]);
        let names: Vec<&str> =
            own["classes"].as_array().unwrap().iter().map(|c| c["class"].as_str().unwrap()).collect();
        let expected = if protocol == "clearclip" { ("background", "tvmonitor") } else { ("background", "monitor") };
        assert_eq!((names.len(), names[0], names[20]), (21, expected.0, expected.1), "{protocol}");
    }
    // A checkpoint of another engine, and a dataset the repository has no config for.
    let wrong = eval("semantic-colours", &["--protocol", "groupvit", "--classes", file]);
    let err = String::from_utf8_lossy(&wrong.stderr);
    assert!(!wrong.status.success() && err.contains("groupvit"), "{err}");
    let voc20 = Cli::new("eval")
        .fixture("semantic-colours-segclip")
        .arg("--dataset", &root)
        .args(["--format", "voc20", "--protocol", "segclip"])
        .run();
    let err = String::from_utf8_lossy(&voc20.stderr);
    assert!(
        !voc20.status.success() && err.contains("segclip protocol has configs for voc21, context60, coco-object"),
        "{err}"
    );
    std::fs::remove_dir_all(&root).ok();
}

/// `wordmask sam` with the hand-built colour SAM (tests/fixtures/sam-colours, tools/build_colour_sam.py):
/// a click inside each region of the scene gives that region (IoU ≥ 0.9), and the colour CLIP
/// names it with its colour word.
#[test]
fn a_click_outlines_its_region_and_names_it() {
    let dir = common::scratch("sam-regions");
    let input = dir.join("scene.png");
    let scene = Scene::load();
    let truth = scene.paint(&input);
    let out = dir.join("mask.png");
    for region in &scene.regions {
        let probe = format!("{},{}", region.probe.0, region.probe.1);
        let result = common::colour_click(&scene, region, &input, &out).switch("--json").run();
        assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
        let summary: serde_json::Value = serde_json::from_slice(&result.stdout).unwrap();
        let mask = image::open(&out).unwrap().to_luma8().into_raw();
        let inter = (0..mask.len()).filter(|&p| mask[p] == 255 && truth[p] == region.word).count();
        let union = (0..mask.len()).filter(|&p| mask[p] == 255 || truth[p] == region.word).count();
        let iou = inter as f64 / union as f64;
        assert!(iou >= 0.9, "click at {probe} in {}: IoU {iou:.3}", region.word);
        assert_eq!(summary["label"], region.word.as_str(), "{summary}");
    }
    std::fs::remove_dir_all(&dir).ok();
}
