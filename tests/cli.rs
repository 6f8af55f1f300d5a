//! The `wordmask` command as a user runs it, against the fixtures' reference outputs.

mod common;

use std::process::{Command, Output};

use common::{all_close, fixtures, Reference, EMBED_TOL};

fn wordmask(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wordmask")).args(args).output().expect("run wordmask")
}

fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

#[test]
fn embed_text_matches_transformers() {
    let model = fixtures().join("clip-p16-quickgelu");
    let texts: Vec<String> = serde_json::from_str(&std::fs::read_to_string(model.join("texts.json")).unwrap()).unwrap();
    let mut args = vec!["embed-text", "--model", model.to_str().unwrap(), "--backend", "cpu", "--json"];
    for t in &texts {
        args.extend(["--text", t.as_str()]);
    }
    let out = json(&wordmask(&args));
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
        let out = json(&wordmask(&[
            "embed-image", "--model", weights.to_str().unwrap(), "--image", image.to_str().unwrap(), "--backend", "cpu", "--json",
        ]));
        let want = Reference::load(name).get("crop.shapes_50x90.image_embeds").0;
        all_close(&format!("{name} embed-image"), &floats(&out["embedding"]), &want, EMBED_TOL, false).unwrap();
        let shape: Vec<u64> = out["patch_tokens_shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
        let cfg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(fixtures().join(name).join("config.json")).unwrap()).unwrap();
        let grid = cfg["vision_config"]["image_size"].as_u64().unwrap() / cfg["vision_config"]["patch_size"].as_u64().unwrap();
        assert_eq!(shape, vec![grid, grid, cfg["projection_dim"].as_u64().unwrap()]);
    }
}

#[test]
fn embed_image_without_crop_interpolates_positions() {
    let model = fixtures().join("clip-p16-quickgelu");
    let image = fixtures().join("images/gradient_80x64.png");
    let out = json(&wordmask(&[
        "embed-image", "--model", model.to_str().unwrap(), "--image", image.to_str().unwrap(), "--no-crop", "--backend", "cpu", "--json",
    ]));
    let want = Reference::load("clip-p16-quickgelu").get("nocrop.gradient_80x64.image_embeds").0;
    all_close("embed-image --no-crop", &floats(&out["embedding"]), &want, EMBED_TOL, false).unwrap();
    // 80x64 resized to short side 64 -> 80x64 -> a 4 x 5 grid of 16-pixel patches.
    assert_eq!(out["patch_tokens_shape"], serde_json::json!([4, 5, 16]));
}

#[test]
fn classify_gives_a_distribution_over_the_labels() {
    let model = fixtures().join("clip-p16-quickgelu");
    let image = fixtures().join("images/noise_75x75.png");
    let out = json(&wordmask(&[
        "classify", "--model", model.to_str().unwrap(), "--image", image.to_str().unwrap(), "--labels", "cat, dog|puppy, red car",
        "--backend", "cpu", "--json",
    ]));
    let labels = out["labels"].as_array().unwrap();
    let names: Vec<&str> = labels.iter().map(|l| l["label"].as_str().unwrap()).collect();
    assert_eq!(names, ["cat", "dog", "red car"]);
    let sum: f64 = labels.iter().map(|l| l["probability"].as_f64().unwrap()).sum();
    assert!((sum - 1.0).abs() < 1e-4, "probabilities sum to {sum}");
}

#[test]
fn errors_name_the_file_and_exit_non_zero() {
    let image = fixtures().join("images/noise_75x75.png");
    let out = wordmask(&["embed-image", "--model", "/nonexistent/model", "--image", image.to_str().unwrap(), "--backend", "cpu"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/model"));

    let model = fixtures().join("clip-p16-quickgelu");
    let out = wordmask(&["embed-image", "--model", model.to_str().unwrap(), "--image", "/tmp/no-such-image.png", "--backend", "cpu"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-image.png"));

    let out = wordmask(&["classify", "--model", model.to_str().unwrap(), "--image", image.to_str().unwrap(), "--labels", " , ", "--backend", "cpu"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no labels"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn bench_prints_its_table() {
    let out = wordmask(&["bench", "--config", "vit-b-32", "--random-weights", "--size", "64", "--iters", "2", "--labels", "2", "--backend", "cpu"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for row in ["image encoder (64x64, 4 patches)", "text encoder (2 labels)", "median ms"] {
        assert!(text.contains(row), "table lacks {row}:\n{text}");
    }
}
