//! `wordmask train fusioner` end to end, as a user runs it: on the colour dataset
//! (tests/fixtures/colour-segmentation, tools/make_colour_dataset.py) with the hand-built colour
//! CLIP as the frozen backbone, a few minutes on the CPU take the val split's mIoU (through
//! `wordmask eval`) from chance, measured on the same pipeline with the learning rates at 0, to
//! at least 0.9. Also: resuming goes on where the state says, and bad arguments are refused
//! with the reason.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{fixtures, scratch};

fn wordmask(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wordmask")).args(args).output().expect("run wordmask")
}

fn ok(out: Output) -> Output {
    assert!(out.status.success(), "failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// `train fusioner` on the colour dataset with a small head; `extra` overrides.
fn train(out: &Path, extra: &[&str]) -> Output {
    let data = fixtures().join("colour-segmentation");
    let (backbone, classes) = (fixtures().join("semantic-colours"), data.join("classes.txt"));
    let mut args = vec![
        "train",
        "fusioner",
        "--backbone",
        backbone.to_str().unwrap(),
        "--dataset",
        data.to_str().unwrap(),
        "--format",
        "folder",
        "--classes",
        classes.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--width",
        "32",
        "--layers",
        "2",
        "--heads",
        "4",
        "--batch-size",
        "8",
        "--micro-batch",
        "8",
        "--warmup-epochs",
        "1",
        "--backend",
        "cpu",
    ];
    args.extend_from_slice(extra);
    wordmask(&args)
}

/// mIoU of a checkpoint over the val split.
fn miou(model: &Path) -> f64 {
    let data = fixtures().join("colour-segmentation");
    let classes = data.join("classes.txt");
    let out = ok(wordmask(&[
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--dataset",
        data.to_str().unwrap(),
        "--format",
        "folder",
        "--classes",
        classes.to_str().unwrap(),
        "--backend",
        "cpu",
        "--json",
    ]));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    json["miou"].as_f64().unwrap()
}

#[test]
fn training_takes_held_out_miou_from_chance_to_090() {
    let dir = scratch("train-fusioner");
    // The untrained head: one epoch at learning rate 0 writes the initial weights.
    let untrained = dir.join("untrained");
    ok(train(&untrained, &["--epochs", "1", "--fusion-lr", "0", "--decoder-lr", "0", "--views", "0"]));
    let before = miou(&untrained);

    let trained = dir.join("trained");
    let out = ok(train(&trained, &["--epochs", "EPOCHS_HERE", "--views", "0"]));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("caching frozen features") && log.contains("loss"), "progress is shown: {log}");
    let after = miou(&trained);
    eprintln!("held-out mIoU: {before:.3} untrained, {after:.3} trained");
    assert!(before < 0.5, "the untrained head already scores {before:.3}: the test would prove nothing");
    assert!(after >= 0.9, "trained head: mIoU {after:.3} < 0.9 (untrained {before:.3})");

    // The state says how far it got; resuming with more epochs goes on from there, reusing the
    // cached features.
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(trained.join("train_state.json")).unwrap()).unwrap();
    assert_eq!(state["epochs_done"], serde_json::json!(EPOCHS_NUM));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_training_arguments_are_refused_with_the_reason() {
    let dir = scratch("train-bad");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--fold", "1", "--epochs", "1"], "--fold applies to voc21"),
        (vec!["--batch-size", "0", "--epochs", "1"], "batch size"),
        (vec!["--width", "30", "--epochs", "1"], "divisible"),
    ];
    for (extra, expected) in cases {
        let out = train(&dir.join("x"), &extra);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(expected), "{extra:?}: expected '{expected}' in: {err}");
    }
    // A checkpoint that is neither CLIP nor Fusioner.
    let sam = fixtures().join("sam-tiny");
    let data = fixtures().join("colour-segmentation");
    let out = wordmask(&[
        "train",
        "fusioner",
        "--backbone",
        sam.to_str().unwrap(),
        "--dataset",
        data.to_str().unwrap(),
        "--format",
        "folder",
        "--classes",
        data.join("classes.txt").to_str().unwrap(),
        "--out",
        dir.join("y").to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("model_type 'sam'"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}
