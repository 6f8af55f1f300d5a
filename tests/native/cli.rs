//! The `wordmask` command as a user runs it, against the fixtures' reference outputs.

use crate::common;

use std::path::Path;

use common::{Cli, EMBED_TOL, Reference, Scene, all_close, fixtures, floats, read_npy};

#[test]
fn embed_text_matches_transformers() {
    let model = fixtures().join("clip-p16-quickgelu");
    let texts: Vec<String> = serde_json::from_str(&std::fs::read_to_string(model.join("texts.json")).unwrap()).unwrap();
    let out = Cli::new("embed-text").model(&model).each("--text", &texts).json();
    let ours: Vec<f32> = out["embeddings"].as_array().unwrap().iter().flat_map(floats).collect();
    let want = Reference::load("clip-p16-quickgelu").get("text_embeds").0;
    all_close("embed-text", &ours, &want, EMBED_TOL, false).unwrap();
}

#[test]
fn embed_image_matches_transformers_from_the_png() {
    for name in ["clip-p32-gelu-bin", "clip-p16-fp16"] {
        // A weights file next to its config.json works as well as the directory.
        let weights = common::weights_file(name);
        let image = fixtures().join("images/shapes_50x90.png");
        let out = Cli::new("embed-image").model(&weights).image(&image).json();
        let want = Reference::load(name).get("crop.shapes_50x90.image_embeds").0;
        all_close(&format!("{name} embed-image"), &floats(&out["embedding"]), &want, EMBED_TOL, false).unwrap();
        let shape: Vec<u64> =
            out["patch_tokens_shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
        let cfg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(fixtures().join(name).join("config.json")).unwrap()).unwrap();
        let grid =
            cfg["vision_config"]["image_size"].as_u64().unwrap() / cfg["vision_config"]["patch_size"].as_u64().unwrap();
        assert_eq!(shape, vec![grid, grid, cfg["projection_dim"].as_u64().unwrap()]);
    }
}

#[test]
fn embed_image_without_crop_interpolates_positions() {
    let image = fixtures().join("images/gradient_80x64.png");
    let out = Cli::new("embed-image").fixture("clip-p16-quickgelu").image(&image).switch("--no-crop").json();
    let want = Reference::load("clip-p16-quickgelu").get("nocrop.gradient_80x64.image_embeds").0;
    all_close("embed-image --no-crop", &floats(&out["embedding"]), &want, EMBED_TOL, false).unwrap();
    // 80x64 resized to short side 64 -> 80x64 -> a 4 x 5 grid of 16-pixel patches.
    assert_eq!(out["patch_tokens_shape"], serde_json::json!([4, 5, 16]));
}

#[test]
fn classify_gives_a_distribution_over_the_labels() {
    let image = fixtures().join("images/noise_75x75.png");
    let out = Cli::new("classify").fixture("clip-p16-quickgelu").image(&image).labels("cat, dog|puppy, red car").json();
    let labels = out["labels"].as_array().unwrap();
    let names: Vec<&str> = labels.iter().map(|l| l["label"].as_str().unwrap()).collect();
    assert_eq!(names, ["cat", "dog", "red car"]);
    let sum: f64 = labels.iter().map(|l| l["probability"].as_f64().unwrap()).sum();
    assert!((sum - 1.0).abs() < 1e-4, "probabilities sum to {sum}");
}

#[test]
fn errors_name_the_file_and_exit_non_zero() {
    let image = fixtures().join("images/noise_75x75.png");
    let err = Cli::new("embed-image").model("/nonexistent/model").image(&image).fails();
    assert!(err.contains("/nonexistent/model"));

    let err = Cli::new("embed-image").fixture("clip-p16-quickgelu").image("/tmp/no-such-image.png").fails();
    assert!(err.contains("no-such-image.png"));

    let err = Cli::new("classify").fixture("clip-p16-quickgelu").image(&image).labels(" , ").fails();
    assert!(err.contains("no labels"), "{err}");
}

#[test]
fn bench_prints_its_table() {
    let out = Cli::new("bench")
        .arg("--config", "vit-b-32")
        .switch("--random-weights")
        .args(["--size", "64", "--iters", "2", "--labels", "2"])
        .run();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for row in ["image encoder (64x64, 4 patches)", "text encoder (2 labels)", "median ms"] {
        assert!(text.contains(row), "table lacks {row}:\n{text}");
    }
    // A CLIP tower's row ends with its effective GFLOP/s; the text rows leave that cell empty.
    let cell = |stage: &str| {
        let row = text.lines().find(|l| l.contains(stage)).unwrap_or_default();
        row.trim_end().trim_end_matches('|').rsplit('|').next().unwrap_or_default().trim().to_string()
    };
    let rate: f64 = cell("image encoder").parse().unwrap_or(0.0);
    assert!(text.contains("GFLOP/s") && rate > 0.0, "no GFLOP/s for the image encoder:\n{text}");
    assert_eq!(cell("text encoder (2 labels)"), "", "{text}");
}

#[test]
fn segment_writes_the_label_map_overlay_scores_and_summary() {
    let dir = common::scratch("segment");
    // A 640 x 427 photo-sized input (the fixture image scaled up).
    let photo = image::open(fixtures().join("images/noise_75x75.png")).unwrap().resize_exact(
        640,
        427,
        image::imageops::FilterType::Triangle,
    );
    let input = dir.join("photo.png");
    photo.save(&input).unwrap();
    let (labels, overlay, scores) = (dir.join("labels.png"), dir.join("overlay.png"), dir.join("scores.npy"));
    let out = Cli::new("segment")
        .fixture("clip-p16-quickgelu")
        .image(&input)
        .labels("cat, dog, car, tree, sky")
        .args(["--templates", "single", "--threshold", "0", "--background", "none"])
        .out(&labels)
        .arg("--overlay", &overlay)
        .arg("--scores", &scores)
        .json();
    assert_eq!((out["width"].as_u64(), out["height"].as_u64()), (Some(640), Some(427)));
    let map = image::open(&labels).unwrap();
    assert_eq!((map.width(), map.height(), map.color()), (640, 427, image::ColorType::L8));
    let overlay = image::open(&overlay).unwrap();
    assert!(overlay.width() >= 640 && overlay.height() > 427, "overlay has a legend strip below the photo");

    // scores.npy: NumPy header, float32 [5, 427, 640], summing to 1 over classes, argmax = label map.
    let (header, probs) = read_npy(&scores);
    assert!(header.contains("'descr': '<f4'") && header.contains("'shape': (5, 427, 640)"), "{header}");
    let n = 640 * 427;
    assert_eq!(probs.len(), 5 * n);
    let map = map.to_luma8().into_raw();
    for i in (0..n).step_by(97) {
        let column: Vec<f32> = (0..5).map(|c| probs[c * n + i]).collect();
        let sum: f32 = column.iter().sum();
        assert!((sum - 1.0).abs() < 1e-4, "pixel {i} sums to {sum}");
        let best = (0..5).max_by(|&a, &b| column[a].total_cmp(&column[b])).unwrap();
        assert_eq!(map[i] as usize, best + 1, "pixel {i}");
    }
    let shares: f64 = out["labels"].as_array().unwrap().iter().map(|l| l["share"].as_f64().unwrap()).sum();
    assert!((shares - 1.0).abs() < 1e-4, "shares sum to {shares}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn segment_threshold_and_background_leave_pixels_unlabelled() {
    let dir = common::scratch("threshold");
    let image = fixtures().join("images/gradient_80x64.png");
    let labels = dir.join("labels.png");
    let segment = || Cli::new("segment").fixture("clip-p16-quickgelu").image(&image).out(&labels);
    let run = |threshold: &str, background: &str| {
        segment()
            .labels("cat, dog")
            .args(["--templates", "single", "--short-side", "64", "--window", "64", "--stride", "32"])
            .args(["--threshold", threshold, "--background", background])
            .json()["unlabelled"]
            .as_f64()
            .unwrap()
    };
    assert_eq!(run("0", "none"), 0.0);
    // Two labels: the top probability is at least 0.5, so a threshold of 1 leaves everything unlabelled.
    assert_eq!(run("1", "none"), 1.0);
    let err = segment().labels("cat").arg("--threshold", "1.5").fails();
    assert!(err.contains("--threshold"));
    std::fs::remove_dir_all(&dir).ok();
}

/// Background words form a class of their own whose pixels stay unlabelled: with the colour
/// checkpoint, "blue; yellow" as background leaves the blue and yellow regions unlabelled and
/// labels the rest; without them every pixel gets a label.
#[test]
fn background_words_leave_their_regions_unlabelled() {
    let dir = common::scratch("background-words");
    let scene = Scene::load();
    let input = dir.join("scene.png");
    let truth = scene.paint(&input);
    let (labels, scores) = (dir.join("labels.png"), dir.join("scores.npy"));
    let run = |background: &str| {
        let out = Cli::new("segment")
            .fixture("semantic-colours")
            .image(&input)
            .labels("red, green")
            .args(["--background", background, "--threshold", "0", "--templates", "single"])
            .out(&labels)
            .arg("--scores", &scores)
            .json();
        (out, image::open(&labels).unwrap().to_luma8().into_raw())
    };
    let (out, map) = run("blue; yellow");
    let (header, _) = read_npy(&scores);
    assert!(header.contains("'shape': (3, 336, 448)"), "red, green and the background class: {header}");
    let want = |word: &str| match word {
        "red" => 1,
        "green" => 2,
        _ => 0,
    };
    let right = map.iter().zip(&truth).filter(|(l, word)| **l == want(word)).count();
    assert!(right as f64 >= 0.95 * map.len() as f64, "{right} of {} pixels as painted", map.len());
    let painted = truth.iter().filter(|w| want(w) == 0).count() as f64 / truth.len() as f64;
    let unlabelled = out["unlabelled"].as_f64().unwrap();
    assert!((unlabelled - painted).abs() < 0.05, "unlabelled {unlabelled}, blue and yellow cover {painted}");
    let (out, _) = run("none");
    assert_eq!(out["unlabelled"].as_f64(), Some(0.0), "without background words every pixel is labelled");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn segment_with_pamr_refinement_runs() {
    let dir = common::scratch("pamr");
    let image = fixtures().join("images/gradient_80x64.png");
    let scores = dir.join("s.npy");
    let segment = || Cli::new("segment").fixture("clip-p16-quickgelu").image(&image).out(dir.join("l.png"));
    let run = |refine: &str| {
        let out = segment()
            .labels("cat, dog, car")
            .args(["--templates", "single", "--refine", refine])
            .arg("--scores", &scores)
            .run();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        std::fs::read(&scores).unwrap()
    };
    assert_ne!(run("none"), run("pamr"), "PAMR left the scores unchanged");
    segment().labels("cat").arg("--refine", "crf").fails();
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn extreme_images_are_refused_with_a_reason() {
    let dir = common::scratch("extreme");
    let strip = dir.join("strip.png");
    image::RgbImage::from_pixel(4000, 4, image::Rgb([9, 9, 9])).save(&strip).unwrap();
    let segment = || Cli::new("segment").fixture("clip-p16-quickgelu").out(dir.join("l.png"));
    let err = segment().image(&strip).labels("cat").fails();
    assert!(err.contains("aspect ratio"), "{err}");
    // A one-pixel image is tiny but well-formed: it is resized up and segmented.
    let dot = dir.join("dot.png");
    image::RgbImage::from_pixel(1, 1, image::Rgb([200, 10, 10])).save(&dot).unwrap();
    let out = segment()
        .image(&dot)
        .labels("cat, dog")
        .args(["--short-side", "64", "--window", "64", "--stride", "32"])
        .switch("--json")
        .run();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::remove_dir_all(&dir).ok();
}

/// `model_type: groupvit` picks the GroupViT engine: its scores end with the background row of
/// the threshold, and the label map is their argmax with that row as 0.
#[test]
fn segment_with_a_groupvit_checkpoint_uses_the_groupvit_engine() {
    let dir = common::scratch("segment-groupvit");
    let (labels, scores) = (dir.join("labels.png"), dir.join("scores.npy"));
    let image = fixtures().join("images/shapes_50x90.png");
    for (name, engine) in [("groupvit-3stage", "auto"), ("groupvit-2stage-bin", "groupvit")] {
        let out = Cli::new("segment")
            .fixture(name)
            .image(&image)
            .arg("--engine", engine)
            .labels("cat, red car|automobile, grass")
            .args(["--short-side", "64", "--window", "48", "--stride", "16", "--threshold", "0.5"])
            .out(&labels)
            .arg("--scores", &scores)
            .json();
        assert_eq!(out["engine"], "groupvit", "{out}");
        let (header, values) = read_npy(&scores);
        assert!(header.contains("'shape': (4, 90, 50)"), "3 classes + background: {header}");
        let map = image::open(&labels).unwrap().to_luma8().into_raw();
        let n = 50 * 90;
        for i in 0..n {
            let column: Vec<f32> = (0..4).map(|c| values[c * n + i]).collect();
            let best = (0..4).fold(0, |b, c| if column[c] > column[b] { c } else { b });
            let want = if best == 3 { 0 } else { best as u8 + 1 };
            assert_eq!(map[i], want, "{name} pixel {i}: {column:?}");
        }
        let shares: f64 = out["labels"].as_array().unwrap().iter().map(|l| l["share"].as_f64().unwrap()).sum::<f64>()
            + out["unlabelled"].as_f64().unwrap();
        assert!((shares - 1.0).abs() < 1e-4, "shares sum to {shares}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// `--scoring transformers --templates bare` through the windows gives transformers'
/// `output_segmentation=True` logits, stitched and resized (tools/groupvit_reference.py).
#[test]
fn segment_with_transformers_scoring_matches_the_reference() {
    let dir = common::scratch("segment-groupvit-hf");
    let (labels, scores) = (dir.join("labels.png"), dir.join("scores.npy"));
    let name = "groupvit-3stage";
    let spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join(name).join("runs.json")).unwrap()).unwrap();
    let run = spec["runs"].as_array().unwrap().iter().find(|r| r["scoring"] == "transformers").unwrap();
    let image = fixtures().join(format!("images/{}.png", run["image"].as_str().unwrap()));
    let out = Cli::new("segment")
        .fixture(name)
        .image(&image)
        .labels(spec["labels"].as_str().unwrap())
        .args(["--scoring", "transformers", "--templates", "bare"])
        .arg("--short-side", run["short_side"].to_string())
        .arg("--window", run["slide"][0].to_string())
        .arg("--stride", run["slide"][1].to_string())
        .out(&labels)
        .arg("--scores", &scores)
        .json();
    assert_eq!(out["threshold"].as_f64(), Some(0.0), "no background threshold with this scoring");
    let (_, ours) = read_npy(&scores);
    let want = Reference::load(name).get(&format!("pipeline.{}", run["tag"].as_str().unwrap())).0;
    all_close("segment --scoring transformers", &ours, &want, 1e-4, true).unwrap();
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn classify_and_embed_image_work_for_groupvit() {
    let image = fixtures().join("images/gradient_80x64.png");
    let out = Cli::new("classify").fixture("groupvit-3stage").image(&image).labels("cat, dog").json();
    let total: f64 = out["labels"].as_array().unwrap().iter().map(|l| l["probability"].as_f64().unwrap()).sum();
    assert!((total - 1.0).abs() < 1e-5, "{out}");
    let out = Cli::new("embed-image").fixture("groupvit-3stage").image(&image).json();
    // transformers' image_embeds for the same PNG (the reference's native pixels are this
    // image through the checkpoint's preprocessor_config.json).
    let want = Reference::load("groupvit-3stage").get("native.gradient_80x64.image_embeds").0;
    all_close("groupvit embed-image", &floats(&out["embedding"]), &want, EMBED_TOL, false).unwrap();
    assert_eq!(out["group_tokens_shape"], serde_json::json!([4, 16]));
}

#[test]
fn engine_and_checkpoint_mismatches_are_explained() {
    let image = fixtures().join("images/gradient_80x64.png");
    let out = dir_segment("clip-p16-quickgelu", &image, &["--engine", "groupvit"]);
    assert!(out.contains("groupvit engine needs a GroupViT checkpoint"), "{out}");
    let out = dir_segment("groupvit-3stage", &image, &["--engine", "dense"]);
    assert!(out.contains("dense engine needs a CLIP checkpoint"), "{out}");
    let out = dir_segment("groupvit-3stage", &image, &["--method", "sclip"]);
    assert!(out.contains("method applies to the dense engine only"), "{out}");
}

/// Run `segment` expecting failure; the stderr.
fn dir_segment(model: &str, image: &Path, extra: &[&str]) -> String {
    let dir = common::scratch(&format!("mismatch-{model}"));
    let err = Cli::new("segment").fixture(model).image(image).labels("cat").out(dir.join("l.png")).args(extra).fails();
    std::fs::remove_dir_all(&dir).ok();
    err
}

/// `wordmask sam` writes the mask as a 0/255 PNG at the image's size; its JSON summary counts
/// the same pixels, and names the mask with the words when a CLIP checkpoint is given.
#[test]
fn sam_writes_the_mask_and_names_it() {
    let dir = common::scratch("sam");
    let out = dir.join("mask.png");
    let image = fixtures().join("images/shapes_50x90.png");
    let summary = Cli::new("sam")
        .fixture("sam-tiny")
        .image(&image)
        .each("--point", ["25,30", "40,80,0"])
        .labels("red, blue|navy, green")
        .arg("--clip", fixtures().join("semantic-colours"))
        .arg("--templates", "single")
        .out(&out)
        .json();
    let mask = image::open(&out).unwrap().to_luma8();
    assert_eq!(mask.dimensions(), (50, 90));
    assert!(mask.pixels().all(|p| p.0[0] == 0 || p.0[0] == 255));
    let inside = mask.pixels().filter(|p| p.0[0] == 255).count() as u64;
    assert_eq!(summary["area"].as_u64(), Some(inside), "{summary}");
    if inside > 0 {
        let label = summary["label"].as_str().unwrap();
        let runner = summary["runner_up"]["label"].as_str().unwrap();
        assert!(["red", "blue", "green"].contains(&label) && label != runner, "{summary}");
        let total = summary["probability"].as_f64().unwrap() + summary["runner_up"]["probability"].as_f64().unwrap();
        assert!(total <= 1.0 + 1e-5, "{summary}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// Bad prompts and checkpoints of the wrong kind are refused with the reason.
#[test]
fn sam_refuses_bad_prompts_and_wrong_checkpoints() {
    let dir = common::scratch("sam-errors");
    let out = dir.join("mask.png");
    let image = fixtures().join("images/shapes_50x90.png");
    let run = |model: &str, extra: &[&str]| Cli::new("sam").fixture(model).image(&image).args(extra).out(&out).fails();
    assert!(run("sam-tiny", &["--point", "60,10"]).contains("the point (60, 10) lies outside the 50x90 image"));
    assert!(run("sam-tiny", &[]).contains("the prompt is empty"));
    assert!(run("sam-tiny", &["--box", "40,10,20,50"]).contains("x1 > x0 and y1 > y0"));
    assert!(run("sam-tiny", &["--point", "1,2,7"]).contains("x,y,0"));
    assert!(run("clip-p16-quickgelu", &["--point", "10,10"]).contains("needs a Segment Anything checkpoint"));
    let groupvit = fixtures().join("groupvit-3stage");
    let text = run("sam-tiny", &["--point", "10,10", "--labels", "cat", "--clip", groupvit.to_str().unwrap()]);
    assert!(text.contains("naming masks needs a CLIP checkpoint"), "{text}");
    // And a SAM checkpoint where a words model is expected.
    let text = Cli::new("segment").fixture("sam-tiny").image(&image).labels("cat").out(&out).fails();
    assert!(text.contains("model_type is 'sam'") && text.contains("pointing at objects"), "{text}");
    std::fs::remove_dir_all(&dir).ok();
}

/// `--backend auto` (the default) probes for a GPU; a successful run prints nothing on stderr,
/// even on a machine without a display (no "error:" line from the graphics stack).
#[test]
fn the_gpu_probe_is_quiet() {
    let out = Cli::new("embed-text")
        .fixture("clip-p16-quickgelu")
        .arg("--text", "a cat")
        .switch("--json")
        .without_backend()
        .command()
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "stderr of a successful run");
}

/// An 8000x6000 photo: the scores stay at the network's resolution and are upsampled band by
/// band, so peak memory follows the photo's bytes (RGB, label map, overlay), not classes x
/// pixels. Red left, green right; both halves must come back named.
#[test]
fn a_48_megapixel_photo_segments_in_bounded_memory() {
    let dir = common::scratch("huge-photo");
    let photo = dir.join("huge.png");
    let (w, h) = (8000u32, 6000u32);
    image::RgbImage::from_fn(
        w,
        h,
        |x, _| if x < w / 2 { image::Rgb([220, 30, 30]) } else { image::Rgb([30, 200, 40]) },
    )
    .save(&photo)
    .unwrap();
    let labels = dir.join("labels.png");
    let out = Cli::new("segment")
        .fixture("semantic-colours")
        .image(&photo)
        .labels("red, green, blue, yellow, white")
        .out(&labels)
        .arg("--overlay", dir.join("overlay.png"))
        .json();
    let map = image::open(&labels).unwrap().to_luma8();
    assert_eq!(map.dimensions(), (w, h));
    let right = map.enumerate_pixels().filter(|(x, _, p)| p.0[0] == if *x < w / 2 { 1 } else { 2 }).count();
    assert!(right as f64 >= 0.99 * (w * h) as f64, "{right} of {} pixels named by their colour", w * h);
    if let Some(peak) = out["peak_memory_mb"].as_f64() {
        // Photo 144 MB, overlay 144 MB, label map 48 MB; classes x pixels in f32 would be 1.2 GB.
        assert!(peak < 1024.0, "peak memory {peak:.0} MiB for an 8000x6000 photo");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// Past 255 labels the label map is a 16-bit PNG holding the same label numbers.
#[test]
fn more_than_255_labels_write_a_16_bit_label_map() {
    let dir = common::scratch("wide-labels");
    let photo = dir.join("two.png");
    image::RgbImage::from_fn(64, 48, |x, _| if x < 32 { image::Rgb([220, 30, 30]) } else { image::Rgb([30, 200, 40]) })
        .save(&photo)
        .unwrap();
    let mut words: Vec<String> = (1..300).map(|i| format!("thing {i}")).collect();
    words.extend(["red".into(), "green".into()]);
    let labels = dir.join("labels.png");
    let run = |words: &[String]| {
        Cli::new("segment").fixture("semantic-colours").image(&photo).labels(words.join(", ")).out(&labels).json();
        image::open(&labels).unwrap()
    };
    let map = run(&words).to_luma16();
    assert!(matches!(image::open(&labels).unwrap(), image::DynamicImage::ImageLuma16(_)), "a 16-bit PNG");
    let (red, green) = (words.len() as u16 - 1, words.len() as u16);
    let right = map.enumerate_pixels().filter(|(x, _, p)| p.0[0] == if *x < 32 { red } else { green }).count();
    assert!(right >= 64 * 48 * 95 / 100, "{right} of {} pixels carry labels {red} and {green}", 64 * 48);
    // 255 labels still fit a byte.
    let narrow = run(&words[words.len() - 255..]);
    assert!(matches!(narrow, image::DynamicImage::ImageLuma8(_)), "an 8-bit PNG up to 255 labels");
    std::fs::remove_dir_all(&dir).ok();
}

/// `convert-segclip` turns the release-layout pickle into a folder every command loads: the
/// converted model embeds text and images (8 group tokens), classifies into a distribution and
/// segments with the SegCLIP engine.
#[test]
fn a_converted_segclip_checkpoint_works_in_every_command() {
    let dir = common::scratch("segclip-cli");
    let out = dir.join("segclip");
    let release = fixtures().join("segclip/segclip-release.bin");
    let convert = Cli::new("convert-segclip").arg("--checkpoint", &release).out(&out).arg("--text-heads", "2").run();
    assert!(convert.status.success(), "{}", String::from_utf8_lossy(&convert.stderr));
    let said = String::from_utf8_lossy(&convert.stdout);
    assert!(said.contains("2 + 1 blocks around 8 centres") && said.contains("layers_mae2"), "{said}");
    let photo = fixtures().join("segclip/photo.png");
    let embedded = Cli::new("embed-image").model(&out).image(&photo).json();
    assert_eq!(embedded["engine"], "segclip");
    assert_eq!(embedded["group_tokens_shape"], serde_json::json!([8, 16]));
    let norm: f32 = floats(&embedded["embedding"]).iter().map(|v| v * v).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4, "normalised embedding, norm {norm}");
    let classified = Cli::new("classify").model(&out).image(&photo).labels("red, sky, a cat").json();
    let total: f64 = classified["labels"].as_array().unwrap().iter().map(|l| l["probability"].as_f64().unwrap()).sum();
    assert!((total - 1.0).abs() < 1e-4, "{classified}");
    let labels = dir.join("labels.png");
    let seg = Cli::new("segment").model(&out).image(&photo).labels("red, green grass, sky").out(&labels).json();
    assert_eq!(
        (seg["engine"].as_str(), seg["threshold"].as_f64().map(|t| (t * 100.0).round())),
        (Some("segclip"), Some(80.0))
    );
    assert_eq!(image::open(&labels).unwrap().to_luma8().dimensions(), (300, 240));
    std::fs::remove_dir_all(&dir).ok();
}

/// `wordmask sam` with an Open-Vocabulary SAM folder: the click of tools/ovsam_reference.py's
/// "click" case (on the demo's own 512x384 resize, so image and model pixels coincide) gives the
/// demo's mask as a 0/255 PNG and the reference's names — among the typed words by default with
/// `--labels`, among the checkpoint's classifier with `--vocabulary lvis` (and without labels) —
/// with no IoU.
#[test]
fn sam_with_open_vocabulary_sam_names_the_mask_itself() {
    let dir = common::scratch("ovsam-cli");
    let out = dir.join("mask.png");
    let model = fixtures().join("ovsam-tiny");
    let spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(model.join("reference.json")).unwrap()).unwrap();
    let click = &spec["cases"]["click"];
    let point = format!("{},{}", click["points"][0][0], click["points"][0][1]);
    let words =
        spec["typed_labels"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect::<Vec<_>>().join(",");
    let image = model.join("resized.png");
    let sam = || Cli::new("sam").model(&model).image(&image).arg("--point", &point).out(&out);
    let run = |extra: &[&str]| sam().args(extra).json();
    let typed = run(&["--labels", &words]);
    assert_eq!(typed["label"], click["typed_top1"]["label"], "{typed}");
    assert_eq!(typed["model"], "ovsam");
    assert!(typed["iou"].is_null(), "{typed}");
    let mask = image::open(&out).unwrap().to_luma8();
    let want = Reference { bytes: std::fs::read(model.join("reference.safetensors")).unwrap() }.get("click.mask").0;
    let differ = mask.pixels().zip(&want).filter(|(p, w)| (p.0[0] == 255) != (**w == 1.0)).count();
    assert!(differ <= 2, "{differ} pixels differ from the demo's mask");
    assert_eq!(typed["area"].as_u64(), Some(mask.pixels().filter(|p| p.0[0] == 255).count() as u64));
    let lvis_name = click["top1"]["name"].as_str().unwrap().replace('_', " ");
    for extra in [&["--labels", words.as_str(), "--vocabulary", "lvis"][..], &[][..]] {
        let released = run(extra);
        assert_eq!(released["label"].as_str(), Some(lvis_name.as_str()), "{released}");
        assert_eq!(released["class_index"], click["top1"]["index"], "{released}");
    }
    let refused = sam().arg("--vocabulary", "typed").fails();
    assert!(refused.contains("--vocabulary typed names the mask among --labels"));
    std::fs::remove_dir_all(&dir).ok();
}

/// `wordmask convert --dtype f16` writes a folder of half the size that every command loads: its
/// text embeddings stay within 1e-2 (relative) of transformers' f32 ones, and on a random-weight
/// checkpoint (a photo, five words, one template) its label map agrees with the f32 model's on at
/// least 99 % of the pixels.
#[test]
fn an_f16_copy_is_half_the_size_and_segments_alike() {
    let dir = common::scratch("convert-f16");
    let model = fixtures().join("clip-p16-quickgelu");
    let half = dir.join("half");
    let out = Cli::new("convert").model(&model).out(&half).arg("--dtype", "f16").run();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let size = |p: &Path| std::fs::metadata(p).unwrap().len() as f64;
    let ratio = size(&half.join("model.safetensors")) / size(&common::weights_file("clip-p16-quickgelu"));
    assert!((0.45..0.55).contains(&ratio), "the f16 copy is {ratio:.3} of the f32 file");

    let texts: Vec<String> = serde_json::from_str(&std::fs::read_to_string(model.join("texts.json")).unwrap()).unwrap();
    let embedded = Cli::new("embed-text").model(&half).each("--text", &texts).json();
    let ours: Vec<f32> = embedded["embeddings"].as_array().unwrap().iter().flat_map(floats).collect();
    let want = Reference::load("clip-p16-quickgelu").get("text_embeds").0;
    all_close("f16 embed-text", &ours, &want, 1e-2, true).unwrap();
    assert!(all_close("f16 embed-text", &ours, &want, 1e-6, false).is_err(), "f16 storage changed nothing");

    let photo = image::open(fixtures().join("images/noise_75x75.png")).unwrap().resize_exact(
        320,
        240,
        image::imageops::FilterType::Triangle,
    );
    let input = dir.join("photo.png");
    photo.save(&input).unwrap();
    let map = |m: &Path, name: &str| {
        let png = dir.join(name);
        let out = Cli::new("segment")
            .model(m)
            .image(&input)
            .labels("cat, dog, car, tree, sky")
            .arg("--templates", "single")
            .out(&png)
            .run();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        image::open(&png).unwrap().to_luma8().into_raw()
    };
    let (full, halved) = (map(&model, "f32.png"), map(&half, "f16.png"));
    let agree = full.iter().zip(&halved).filter(|(a, b)| a == b).count() as f64 / full.len() as f64;
    assert!(agree >= 0.99, "label agreement {agree:.4}");
    std::fs::remove_dir_all(&dir).ok();
}

/// The page's Advanced controls and `<word-mask>`'s attributes are made from `www/settings.js`,
/// which must be what the core prints from the settings whose fields are these flags: a setting
/// added to the core and not to the page fails here.
#[test]
fn the_page_reads_the_core_settings() {
    let printed = String::from_utf8(Cli::new("settings").switch("--js").ok().stdout).unwrap();
    let committed = std::fs::read_to_string(fixtures().join("../../www/settings.js")).unwrap();
    assert!(
        printed == committed,
        "www/settings.js is not what the core prints: run `cargo run --release -- settings --js > www/settings.js`"
    );
    for flag in ["--short-side", "--background", "--scoring", "--refine", "--logit-scale"] {
        assert!(printed.contains(&format!("\"flag\":\"{flag}\"")), "{flag} missing from the page's settings");
    }
}

/// A mask with no pixel (the model found nothing there) gets no name, in the CLI as in the page
/// (one rule, `PromptSession`): the command writes the empty mask, says so, and succeeds. The
/// colour SAM with its hypernetworks' output layers zeroed gives logits of exactly 0 everywhere,
/// which `post_process_masks` thresholds to an empty mask.
#[test]
fn an_empty_mask_is_written_and_not_named() {
    let dir = common::scratch("sam-empty");
    let model = dir.join("sam-empty");
    std::fs::create_dir_all(&model).unwrap();
    for file in ["config.json", "preprocessor_config.json"] {
        std::fs::copy(fixtures().join("sam-colours").join(file), model.join(file)).unwrap();
    }
    let mut bytes = std::fs::read(fixtures().join("sam-colours/model.safetensors")).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    let mut zeroed = 0;
    for (name, tensor) in header.as_object().unwrap() {
        if name.contains("output_hypernetworks_mlps") && name.contains("proj_out") {
            let [start, end] = [0, 1].map(|i| tensor["data_offsets"][i].as_u64().unwrap() as usize + 8 + header_len);
            bytes[start..end].fill(0);
            zeroed += 1;
        }
    }
    assert_eq!(zeroed, 8, "four hypernetworks, a weight and a bias each");
    std::fs::write(model.join("model.safetensors"), &bytes).unwrap();
    let out = dir.join("mask.png");
    let image = fixtures().join("images/shapes_50x90.png");
    let line = Cli::new("sam")
        .model(&model)
        .image(&image)
        .arg("--point", "25,30")
        .labels("red, green")
        .arg("--clip", fixtures().join("semantic-colours"))
        .out(&out);
    let run = line.switch("--json").ok();
    let summary: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(summary["area"].as_u64(), Some(0), "{summary}");
    assert!(summary["label"].is_null() && summary["runner_up"].is_null(), "an empty mask has no name: {summary}");
    assert!(String::from_utf8_lossy(&run.stderr).contains("the mask is empty"));
    let mask = image::open(&out).unwrap().to_luma8();
    assert_eq!(mask.dimensions(), (50, 90));
    assert!(mask.pixels().all(|p| p.0[0] == 0), "the empty mask is written");
    std::fs::remove_dir_all(&dir).ok();
}

/// `sam --everything` on the colour scene with the colour SAM (a click's mask is every pixel of
/// its colour) and the colour words model: one object per painted region, each with its word,
/// its region's box and pixels, and an instance map whose ids paint the regions.
#[test]
fn everything_finds_each_region_once_and_names_it() {
    let dir = common::scratch("everything");
    let scene = Scene::load();
    let input = dir.join("scene.png");
    let truth = scene.paint(&input);
    let out = dir.join("instances.png");
    let summary = Cli::new("sam")
        .fixture("sam-colours")
        .image(&input)
        .switch("--everything")
        .args(["--points-per-side", "16"])
        .labels("yellow, green, red, blue")
        .arg("--clip", fixtures().join("semantic-colours"))
        .out(&out)
        .json();
    let objects = summary["objects"].as_array().unwrap();
    for word in ["yellow", "green", "red", "blue"] {
        assert_eq!(summary["counts"][word].as_u64(), Some(1), "{word}: {}", summary["counts"]);
    }
    assert_eq!(objects.len(), 4, "{summary}");
    let map = image::open(&out).unwrap().to_luma16().into_raw();
    assert_eq!(map.len(), truth.len());
    for object in objects {
        let (id, word) = (object["id"].as_u64().unwrap() as u16, object["label"].as_str().unwrap());
        let region = scene.regions.iter().find(|r| r.word == word).unwrap();
        let painted = truth.iter().filter(|w| *w == word).count();
        let both = map.iter().zip(&truth).filter(|(i, w)| **i == id && *w == word).count();
        let shown = map.iter().filter(|i| **i == id).count();
        assert!(
            both as f64 >= 0.95 * painted as f64 && both as f64 >= 0.95 * shown as f64,
            "{word}: {both} of {painted} painted, {shown} shown"
        );
        if word != "blue" {
            let bbox: Vec<u64> = object["box"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
            let want = [region.x.0, region.y.0, region.x.1 - 1, region.y.1 - 1].map(u64::from);
            assert!(bbox.iter().zip(want).all(|(a, b)| a.abs_diff(b) <= 4), "{word}: box {bbox:?}, painted {want:?}");
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// `sam --everything` with an Open-Vocabulary SAM: the model names each object among its own
/// classes (no words typed) and the counts list the classes found; each object carries the grid
/// point that prompted it, and the id map paints it.
#[test]
fn everything_with_open_vocabulary_sam_names_among_its_classes() {
    let dir = common::scratch("everything-ovsam");
    let out = dir.join("instances.png");
    let summary = Cli::new("sam")
        .fixture("ovsam-tiny")
        .image(fixtures().join("ovsam-tiny/resized.png"))
        .switch("--everything")
        .args(["--points-per-side", "6", "--stability-score-thresh", "0", "--stability-score-offset", "0.05"])
        .out(&out)
        .json();
    let objects = summary["objects"].as_array().unwrap();
    let classes = ["red block", "bow (weapon)", "cat/kitten", "trash can", "sky or blue sky", "grass"];
    let named: Vec<&str> = objects.iter().filter_map(|o| o["label"].as_str()).collect();
    assert!(!named.is_empty(), "{summary}");
    assert!(named.iter().all(|n| classes.contains(n)), "{named:?}");
    let counted: u64 = summary["counts"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(counted as usize, named.len(), "{}", summary["counts"]);
    let map = image::open(&out).unwrap().to_luma16().into_raw();
    for object in objects {
        assert_eq!(object["point"].as_array().map(Vec::len), Some(2), "{object}");
        let id = object["id"].as_u64().unwrap() as u16;
        assert!(object["area"].as_u64() == Some(0) || map.contains(&id), "object {id} is not in the map");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// `segment --sam` with an Open-Vocabulary SAM: its masks draw the edges and the words name
/// them; with no predicted IoU, a drawn object's score is its region's mean word confidence (a
/// region whose mask misses it stays as the words drew it, score 0).
#[test]
fn sharp_edges_take_an_open_vocabulary_sam() {
    let dir = common::scratch("sharp-ovsam");
    let (out, ids) = (dir.join("labels.png"), dir.join("ids.png"));
    let words = ["red", "green", "blue"];
    let summary = Cli::new("segment")
        .fixture("semantic-colours")
        .image(fixtures().join("ovsam-tiny/resized.png"))
        .labels(words.join(", "))
        .arg("--sam", fixtures().join("ovsam-tiny"))
        .arg("--instances", &ids)
        .out(&out)
        .json();
    let objects = summary["sharp_edges"]["objects"].as_array().unwrap();
    assert!(!objects.is_empty(), "{summary}");
    let map = image::open(&ids).unwrap().to_luma16().into_raw();
    for object in objects {
        let label = object["label"].as_str().unwrap();
        assert!(words.contains(&label), "{object}");
        let score = object["score"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&score), "{object}");
        let id = object["id"].as_u64().unwrap() as u16;
        assert!(map.contains(&id), "object {id} is not in the id map");
    }
    let drawn: Vec<f64> = objects.iter().map(|o| o["score"].as_f64().unwrap()).filter(|&s| s > 0.0).collect();
    assert!(!drawn.is_empty() && drawn.iter().all(|&s| s < 1.0), "mean confidences of drawn objects: {drawn:?}");
    std::fs::remove_dir_all(&dir).ok();
}

/// `--everything` refuses what it cannot run before any work: a CLIP checkpoint to name an
/// Open-Vocabulary SAM's masks (it names them itself), a point given with it, settings out of
/// range.
#[test]
fn everything_refuses_what_it_cannot_do() {
    let dir = common::scratch("everything-refused");
    let image = fixtures().join("images/shapes_50x90.png");
    let out = dir.join("instances.png");
    let sam = || Cli::new("sam").image(&image).switch("--everything").out(&out);
    let err = sam().fixture("ovsam-tiny").labels("red").arg("--clip", fixtures().join("semantic-colours")).fails();
    assert!(err.contains("names its masks itself"), "{err}");
    let err = sam().fixture("sam-tiny").arg("--point", "3,4").fails();
    assert!(err.contains("--point"), "{err}");
    let err = sam().fixture("sam-tiny").args(["--box-nms-thresh", "2"]).fails();
    assert!(err.contains("box NMS threshold"), "{err}");
    assert!(!out.exists(), "nothing is written");
    std::fs::remove_dir_all(&dir).ok();
}

/// `segment --sam`: the words' regions become objects. Two red squares apart, a green one and
/// the blue ground, with the colour words model and the colour SAM: red x2, green x1, blue x1,
/// each object on its own square, and the refined label map as painted.
#[test]
fn sharp_edges_count_each_words_objects() {
    let dir = common::scratch("sharp-edges");
    let (w, h) = (448u32, 336u32);
    let squares = [
        ("red", [255, 0, 0], [32, 32, 96, 96]),
        ("red", [255, 0, 0], [320, 32, 416, 128]),
        ("green", [0, 255, 0], [64, 192, 256, 320]),
    ];
    let mut img = image::RgbImage::from_pixel(w, h, image::Rgb([0, 0, 255]));
    let mut truth = vec![0usize; (w * h) as usize]; // 0: blue, k: the k-th square
    for (k, (_, rgb, [x0, y0, x1, y1])) in squares.iter().enumerate() {
        for y in *y0..*y1 {
            for x in *x0..*x1 {
                img.put_pixel(x, y, image::Rgb(*rgb));
                truth[(y * w + x) as usize] = k + 1;
            }
        }
    }
    let input = dir.join("squares.png");
    img.save(&input).unwrap();
    let (labels, instances) = (dir.join("labels.png"), dir.join("instances.png"));
    let summary = Cli::new("segment")
        .fixture("semantic-colours")
        .image(&input)
        .labels("red, green, blue, yellow")
        .args(["--background", "none", "--threshold", "0", "--templates", "single"])
        .arg("--sam", fixtures().join("sam-colours"))
        .arg("--instances", &instances)
        .out(&labels)
        .json();
    let edges = &summary["sharp_edges"];
    assert_eq!(edges["counts"]["red"].as_u64(), Some(2), "{edges}");
    assert_eq!(edges["counts"]["green"].as_u64(), Some(1), "{edges}");
    assert_eq!(edges["counts"]["blue"].as_u64(), Some(1), "{edges}");
    assert_eq!(edges["counts"]["yellow"].as_u64(), Some(0), "a word with no pixels has no object: {edges}");
    let ids = image::open(&instances).unwrap().to_luma16().into_raw();
    for object in edges["objects"].as_array().unwrap() {
        let id = object["id"].as_u64().unwrap() as u16;
        let shown: Vec<usize> = (0..ids.len()).filter(|&i| ids[i] == id).collect();
        let square =
            shown.iter().map(|&i| truth[i]).max_by_key(|&k| shown.iter().filter(|&&i| truth[i] == k).count()).unwrap();
        let on = shown.iter().filter(|&&i| truth[i] == square).count();
        let painted = truth.iter().filter(|&&k| k == square).count();
        assert!(
            on as f64 >= 0.95 * shown.len() as f64 && on as f64 >= 0.9 * painted as f64,
            "object {object}: {on} of {} shown on its square of {painted}",
            shown.len()
        );
    }
    let map = image::open(&labels).unwrap().to_luma8().into_raw();
    let word = |k: usize| {
        if k == 0 {
            3
        } else if squares[k - 1].0 == "red" {
            1
        } else {
            2
        }
    };
    let right = map.iter().zip(&truth).filter(|(l, k)| **l as usize == word(**k)).count();
    assert!(right as f64 >= 0.97 * map.len() as f64, "{right} of {} pixels as painted", map.len());
    std::fs::remove_dir_all(&dir).ok();
}

/// Sharp edges refuse a checkpoint of the wrong kind for --sam, before writing anything.
#[test]
fn sharp_edges_refuse_the_wrong_checkpoints() {
    let dir = common::scratch("sharp-edges-refused");
    let image = fixtures().join("images/shapes_50x90.png");
    let out = dir.join("labels.png");
    let segment = |sam: &str| {
        Cli::new("segment")
            .fixture("semantic-colours")
            .image(&image)
            .labels("red, green")
            .arg("--sam", fixtures().join(sam))
            .out(&out)
    };
    let err = segment("semantic-colours").fails();
    assert!(err.contains("--sam"), "a CLIP checkpoint as --sam: {err}");
    let err = Cli::new("segment")
        .fixture("semantic-colours")
        .image(&image)
        .labels("red")
        .arg("--instances", dir.join("ids.png"))
        .out(&out)
        .fails();
    assert!(err.contains("--sam"), "--instances without --sam: {err}");
    let err = Cli::new("segment").fixture("sam-colours").image(&image).labels("red").out(&out).fails();
    assert!(
        err.to_lowercase().contains("segment anything") || err.contains("sam"),
        "a SAM checkpoint as the words model: {err}"
    );
    assert!(!out.exists(), "nothing is written");
    std::fs::remove_dir_all(&dir).ok();
}
