//! `wordmask train fusioner` end to end, as a user runs it: on the colour dataset
//! (tests/fixtures/colour-segmentation, tools/make_colour_dataset.py) with the hand-built colour
//! CLIP as the frozen backbone, a few minutes on the CPU take the val split's mIoU (through
//! `wordmask eval`) from chance, measured on the same pipeline with the learning rates at 0, to
//! at least 0.9. Also: resuming goes on where the state says, and bad arguments are refused
//! with the reason.

use crate::common;

use std::path::Path;

use common::{Cli, fixtures, scratch};

/// The head and schedule of the test (tools/make_colour_fusioner.sh trains the browser tests'
/// fixture with the same head, 40 epochs at 5e-3).
const EPOCHS: usize = 25;
const VIEWS: &str = "4";
const HEAD: [&str; 6] = ["--width", "16", "--layers", "2", "--heads", "4"];
const RATES: [&str; 4] = ["--fusion-lr", "8e-3", "--decoder-lr", "8e-3"];

/// `train fusioner` on the colour dataset with the colour CLIP and a small head.
fn train(out: &Path) -> Cli {
    train_on(out).arg("--backbone", fixtures().join("semantic-colours"))
}

/// `train fusioner` on the colour dataset with a small head; the encoders are the caller's.
fn train_on(out: &Path) -> Cli {
    let data = fixtures().join("colour-segmentation");
    Cli::new("train fusioner")
        .arg("--dataset", &data)
        .arg("--format", "folder")
        .arg("--classes", data.join("classes.txt"))
        .out(out)
        .args(["--batch-size", "8", "--micro-batch", "8", "--warmup-epochs", "1"])
        .args(HEAD)
}

/// mIoU of a checkpoint over the val split.
fn miou(model: &Path) -> f64 {
    let data = fixtures().join("colour-segmentation");
    let out = Cli::new("eval")
        .model(model)
        .arg("--dataset", &data)
        .arg("--format", "folder")
        .arg("--classes", data.join("classes.txt"))
        .json();
    out["miou"].as_f64().unwrap()
}

#[test]
fn training_takes_held_out_miou_from_chance_to_090() {
    let dir = scratch("train-fusioner");
    // The untrained head: one epoch at learning rate 0 writes the initial weights.
    let untrained = dir.join("untrained");
    train(&untrained).args(["--epochs", "1", "--fusion-lr", "0", "--decoder-lr", "0", "--views", "0"]).ok();
    let before = miou(&untrained);

    let trained = dir.join("trained");
    let epochs = EPOCHS.to_string();
    let out = train(&trained).args(["--epochs", &epochs, "--views", VIEWS]).args(RATES).ok();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("caching frozen features") && log.contains("loss"), "progress is shown: {log}");
    let after = miou(&trained);
    eprintln!("held-out mIoU: {before:.3} untrained, {after:.3} trained");
    assert!(before < 0.5, "the untrained head already scores {before:.3}: the test would prove nothing");
    assert!(after >= 0.9, "trained head: mIoU {after:.3} < 0.9 (untrained {before:.3})");

    // The state says how far it got; resuming with one more epoch goes on from there (from the
    // saved head and optimiser), reusing the cached features.
    let state = |dir: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join("train_state.json")).unwrap()).unwrap()
    };
    assert_eq!(state(&trained)["epochs_done"], serde_json::json!(EPOCHS));
    let more = (EPOCHS + 1).to_string();
    let out = train(&trained).args(["--epochs", &more, "--views", VIEWS, "--resume"]).args(RATES).ok();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("found in the cache"), "{log}");
    let resumed = state(&trained);
    assert_eq!(resumed["epochs_done"], serde_json::json!(EPOCHS + 1));
    assert_eq!(resumed["options"]["hyper"]["epochs"], serde_json::json!(EPOCHS + 1), "the state records the new total");
    let losses = resumed["losses"].as_array().unwrap();
    let (last, next) = (losses[EPOCHS - 1].as_f64().unwrap(), losses[EPOCHS].as_f64().unwrap());
    assert!(next < 2.0 * last, "the resumed epoch starts from the trained head: loss {next} after {last}");
    // Resuming with other settings would train another run: refused, before any work.
    let more = (EPOCHS + 2).to_string();
    let err =
        train(&trained).args(["--epochs", &more, "--views", VIEWS, "--resume", "--seed", "9"]).args(RATES).fails();
    assert!(err.contains("--seed differ"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_training_arguments_are_refused_with_the_reason() {
    let dir = scratch("train-bad");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--fold", "1", "--epochs", "1"], "--fold applies to voc21"),
        (vec!["--batch-size", "0", "--epochs", "1"], "batch size"),
        (vec!["--heads", "3", "--epochs", "1"], "divisible"),
    ];
    for (extra, expected) in cases {
        let err = train(&dir.join("x")).args(&extra).fails();
        assert!(err.contains(expected), "{extra:?}: expected '{expected}' in: {err}");
    }
    // A checkpoint that is neither CLIP nor Fusioner.
    let err = train_on(&dir.join("y")).arg("--backbone", fixtures().join("sam-tiny")).arg("--epochs", "1").fails();
    assert!(err.contains("model_type 'sam'"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_vit_backbone_trains_with_a_clip_text_tower() {
    // The random ViT of the Fusioner fixture (DINO's layout) as the image encoder and the colour
    // CLIP's text tower: one epoch gives a checkpoint that holds both and segments through eval.
    let dir = scratch("train-vit");
    let vit = fixtures().join("fusioner-dino-tiny/vit");
    let text = fixtures().join("semantic-colours");
    let out = dir.join("vit-head");
    train_on(&out).arg("--backbone", &vit).arg("--text", &text).args(["--epochs", "1", "--views", "0"]).ok();
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["model_type"], "fusioner");
    assert_eq!(config["vision"]["model_type"], "vit");
    let bytes = std::fs::read(out.join("model.safetensors")).unwrap();
    let saved = wordmask::checkpoint::Checkpoint::from_bytes(&bytes, "model.safetensors").unwrap();
    assert!(
        saved.get("vision.embeddings.cls_token").is_some() && saved.get("text_model.final_layer_norm.weight").is_some()
    );
    assert!(saved.get("vision_model.pre_layrnorm.weight").is_none(), "the CLIP's vision tower is left out");
    // The checkpoint loads and segments through the one entry (eval's pipeline).
    miou(&out);
    std::fs::remove_dir_all(&dir).ok();
}

/// The colour CLIP's vision tower with a BERT for the words: the hand-built colour BERT of
/// tools/make_bert_colours.py, whose class embeddings are at cosine 0.2 to 0.3 under either
/// pooling. Trained with each pooling as the CLIP above, the held-out mIoU must go from the
/// untrained head's (under 0.5; 0.04 measured) to at least 0.8 (0.90 with [CLS], 0.88 with the
/// mean, measured on the CPU backend; the colour CLIP's own text tower reaches 0.9), and the
/// checkpoint must hold the BERT, its config and its vocabulary, so that `eval` (and `segment`,
/// and the page) load it from its one folder.
#[test]
fn a_bert_text_encoder_trains_from_chance_to_080_with_either_pooling() {
    let dir = scratch("train-bert");
    let bert = fixtures().join("bert-colours");
    let run = |out: &Path, pooling: &str| train(out).arg("--text", &bert).arg("--text-pooling", pooling);
    let untrained = dir.join("untrained");
    run(&untrained, "mean").args(["--epochs", "1", "--fusion-lr", "0", "--decoder-lr", "0", "--views", "0"]).ok();
    let before = miou(&untrained);
    let epochs = EPOCHS.to_string();
    let mut after = Vec::new();
    for pooling in ["cls", "mean"] {
        let out = dir.join(pooling);
        let log = run(&out, pooling).args(["--epochs", &epochs, "--views", VIEWS]).args(RATES).ok();
        let log = String::from_utf8_lossy(&log.stderr).to_string();
        assert!(log.contains(&format!("CLIP + BERT ({pooling} pooling)")), "the encoders are named: {log}");
        let config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
        assert_eq!(config["text"]["model_type"], "bert");
        assert_eq!(config["text"]["pooling"], pooling);
        let vocab = std::fs::read_to_string(bert.join("vocab.txt")).unwrap();
        let vocab: Vec<&str> = vocab.lines().collect();
        assert_eq!(config["text"]["vocab"], serde_json::json!(vocab), "the vocabulary travels with the head");
        let bytes = std::fs::read(out.join("model.safetensors")).unwrap();
        let saved = wordmask::checkpoint::Checkpoint::from_bytes(&bytes, "model.safetensors").unwrap();
        assert!(
            saved.get("text.embeddings.word_embeddings.weight").is_some()
                && saved.get("text.pooler.dense.weight").is_some()
        );
        assert!(saved.get("vision_model.post_layernorm.weight").is_some(), "the CLIP's vision tower is kept");
        assert!(saved.get("text_model.final_layer_norm.weight").is_none(), "the CLIP's text tower is left out");
        after.push((pooling, miou(&out)));
    }
    eprintln!("held-out mIoU with BERT: {before:.3} untrained, {after:?} trained");
    assert!(before < 0.5, "the untrained head already scores {before:.3}: the test would prove nothing");
    for (pooling, m) in after {
        assert!(m >= 0.8, "{pooling} pooling: mIoU {m:.3} < 0.8 (untrained {before:.3})");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_vit_backbone_trains_with_a_bert_text_encoder() {
    // The paper's pairing of a vision-only and a language-only model: the random ViT of the
    // Fusioner fixture and the random BERT of tests/fixtures/bert-tiny (whose folder has both
    // vocab.txt and tokenizer.json). One epoch gives a checkpoint that segments through eval.
    let dir = scratch("train-vit-bert");
    let out = dir.join("vit-bert");
    let log = train_on(&out)
        .arg("--backbone", fixtures().join("fusioner-dino-tiny/vit"))
        .arg("--text", fixtures().join("bert-tiny"))
        .args(["--epochs", "1", "--views", "0"])
        .ok();
    let log = String::from_utf8_lossy(&log.stderr).to_string();
    assert!(log.contains("ViT + BERT (mean pooling)"), "mean pooling is the default: {log}");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert!(config.get("clip").is_none(), "no CLIP in this pairing");
    assert_eq!(config["vision"]["model_type"], "vit");
    assert_eq!(config["text"]["config"]["model_type"], "bert");
    miou(&out);
    // --text-pooling is for a BERT; a CLIP text tower is refused with the reason.
    let err = train_on(&dir.join("x"))
        .arg("--backbone", fixtures().join("fusioner-dino-tiny/vit"))
        .arg("--text", fixtures().join("semantic-colours"))
        .args(["--epochs", "1", "--text-pooling", "cls"])
        .fails();
    assert!(err.contains("--text-pooling applies to a BERT text encoder"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}
