//! Fusioner parity with the reference (tools/fusioner_reference.py: transformers' CLIP and the
//! repository's fusion, decoder and head, cross-checked against the repository's modules), on
//! every backend:
//! - inference: class embeddings, per crop the image tokens, fusion tokens, decoder map and
//!   logits, the stitched logits of a non-square image, and the labels through `segment`;
//! - training: ten optimiser steps (AdamW with the repository's warm-up and cosine schedules,
//!   Adam for the decoder) from the same weights in the same batch order: each step's loss and
//!   every final weight;
//! - the same for a vision-only image encoder with a language-only text encoder (a ViT in
//!   DINO's layout and a BERT, `fusioner-bert-tiny`): class embeddings under both poolings, the
//!   stitched logits and labels, and the ten training steps with BERT's class embeddings, on a
//!   checkpoint assembled from the two encoders' folders as `train fusioner` writes it and
//!   read back by the one loader.

use crate::common;

use std::collections::BTreeMap;

use burn::tensor::{Tensor, TensorData};
use common::{Reference, all_close, backends, fixtures, load_model, to_vec};
use wordmask::bert::{Pooling, WordPiece};
use wordmask::checkpoint::Checkpoint;
use wordmask::fusioner::{Backbone, FusionConfig, FusionHead, FusionerModel, Named, NewHead, TextTower};
use wordmask::labels;
use wordmask::model_files::ModelFiles;
use wordmask::preprocess::{RgbImage, normalize};
use wordmask::segment::Model;
use wordmask::segment::fusioner::{crop_windows, image_pixels, stitched_logits, window_crop};
use wordmask::segment::text::FUSIONER_32;
use wordmask::segment::{ClassEmbeddings, EmbeddingCache, LabelMap, Settings, segment};
use wordmask::train::{
    Batch, Hyper, Optimizer, View, WeightSource, Weights, checkpoint_bytes, class_embeddings, train_step,
};

const TOL: f32 = 1e-4;
const MODEL: &str = "fusioner-tiny";

fn png(path: &std::path::Path) -> RgbImage {
    let img = image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).to_rgb8();
    RgbImage::new(img.width() as usize, img.height() as usize, img.into_raw()).unwrap()
}

fn grey(path: &std::path::Path) -> Vec<u8> {
    image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).to_luma8().into_raw()
}

/// `[c, h, w]` values at every `step`-th row and column.
fn every(values: &[f32], c: usize, h: usize, w: usize, step: usize) -> Vec<f32> {
    let mut out = Vec::new();
    for k in 0..c {
        for y in (0..h).step_by(step) {
            for x in (0..w).step_by(step) {
                out.push(values[(k * h + y) * w + x]);
            }
        }
    }
    out
}

#[test]
fn inference_matches_the_reference() {
    inference_parity(MODEL);
}

/// The same with a vision-only image encoder (a ViT in `ViTModel`'s layout, as DINO) and CLIP's
/// text tower.
#[test]
fn inference_with_a_vit_image_encoder_matches_the_reference() {
    inference_parity("fusioner-dino-tiny");
}

fn inference_parity(name: &str) {
    let reference = Reference::load(name);
    let runs: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join(name).join("runs.json")).unwrap()).unwrap();
    let words: Vec<String> =
        runs["labels"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    let image = png(&fixtures().join(name).join(runs["image"].as_str().unwrap()));
    let (h, w) = (image.height, image.width);
    let mut failures = Vec::new();
    for (backend, device) in backends() {
        let model = load_model(name, &device);
        let network = model.network().downcast::<FusionerModel>().expect("a Fusioner network");
        let mut check = |what: &str, ours: Vec<f32>, name: &str| {
            if let Err(e) = all_close(&format!("{backend} {what}"), &ours, &reference.get(name).0, TOL, true) {
                failures.push(e);
            }
        };
        let labels = labels::parse(&words.join(", ")).unwrap();
        let classes = ClassEmbeddings::new(&model, &labels, &[], &FUSIONER_32).unwrap();
        check("class embeddings", to_vec(classes.names.clone()).unwrap(), "text");

        let crop = network.config.crop_size;
        let stride = network.config.stride;
        let pixels = image_pixels(&model.preprocessor, &image, 0, &device).unwrap();
        let padded = {
            let canvas = Tensor::<4>::full([1, 3, h.max(crop), w.max(crop)], -1.0, &device);
            canvas.slice_assign([0..1, 0..3, 0..h, 0..w], pixels.clone())
        };
        let windows = crop_windows(h, w, crop, stride);
        let expected: Vec<(u64, u64)> = runs["windows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| (v["x0"].as_u64().unwrap(), v["y0"].as_u64().unwrap()))
            .collect();
        let ours: Vec<(u64, u64)> = windows.iter().map(|w| (w.x1 as u64, w.y1 as u64)).collect();
        assert_eq!(ours, expected, "window origins");
        for (i, window) in windows.iter().enumerate() {
            let crop_pixels = window_crop(&padded, window, crop);
            if i == 0 {
                // One pass per class: every intermediate of each class's own pass.
                let (visual, _) = network.image_tokens(crop_pixels.clone()).unwrap();
                check("window 0 image tokens", to_vec(visual).unwrap(), "window0.visual");
                let out = network.crop_outputs(crop_pixels.clone(), &classes.names).unwrap();
                check("window 0 fusion patches", to_vec(out.patches).unwrap(), "window0.fusion_patches");
                check("window 0 fusion classes", to_vec(out.classes).unwrap(), "window0.fusion_classes");
                check("window 0 decoder maps", to_vec(out.decoder_map).unwrap(), "window0.decoder_map");
            }
            let logits = to_vec(network.crop_logits(crop_pixels, &classes.names).unwrap()).unwrap();
            check(&format!("window {i} logits"), every(&logits, 3, crop, crop, 7), &format!("window{i}.logits_sub"));
        }
        let stitched = to_vec(stitched_logits(network, pixels, &classes.names, stride).unwrap()).unwrap();
        check("stitched logits", every(&stitched, 3, h, w, 5), "stitched_sub");

        // Labels through the one entry, with the engine's defaults.
        let seg =
            wordmask::block_on(segment(&model, &image, &labels, &Settings::default(), &mut EmbeddingCache::default()))
                .unwrap()
                .segmentation;
        let LabelMap::Narrow(map) = seg.label_map else { panic!("an 8-bit label map") };
        let (want, _) = reference.get("labels_sub");
        let ours: Vec<f32> = (0..h)
            .step_by(5)
            .flat_map(|y| (0..w).step_by(5).map(move |x| (y, x)))
            .map(|(y, x)| map[y * w + x] as f32 - 1.0)
            .collect();
        let differ = ours.iter().zip(&want).filter(|(a, b)| a != b).count();
        // A pixel whose best logit is within rounding of 0 (the 0.5 threshold) may go either way.
        if differ * 200 > want.len() {
            failures.push(format!("{backend} labels: {differ} of {} sampled pixels differ", want.len()));
        }
        assert!(differ < want.len(), "{backend}: the labels must not all differ");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn ten_training_steps_match_the_reference() {
    training_parity(MODEL, &fixtures().join(MODEL).join("train"), |device| {
        load_model(MODEL, device).network().downcast::<FusionerModel>().expect("a Fusioner network").clone()
    });
}

const BERT_MODEL: &str = "fusioner-bert-tiny";

fn json(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

/// The ViT + BERT pairing of `fusioner-bert-tiny/encoders.json` with the reference's initial
/// head, written as `train fusioner` writes a checkpoint (the two encoders' weights under
/// `vision.` and `text.`, the BERT config, pooling and vocabulary in `config.json`) and loaded
/// back by the one loader the CLI and the page use.
fn bert_pairing(device: &burn::tensor::Device, pooling: Pooling) -> Model {
    let encoders = json(&fixtures().join(BERT_MODEL).join("encoders.json"));
    let open = |key: &str| ModelFiles::open(fixtures().join(encoders[key].as_str().unwrap())).unwrap();
    let (vit, bert) = (open("image"), open("text"));
    let image = Checkpoint::from_bytes(vit.weights(), "vit").unwrap();
    let text = Checkpoint::from_bytes(bert.weights(), "bert").unwrap();
    let vocab = std::fs::read_to_string(fixtures().join(encoders["text"].as_str().unwrap()).join("vocab.txt")).unwrap();
    let backbone = Backbone {
        image: Named { config: &vit.config, checkpoint: &image },
        text: Some(Named { config: &bert.config, checkpoint: &text }),
        vocabulary: Some(WordPiece::from_vocab_txt(&vocab, true).unwrap()),
    };
    let fusion: FusionConfig = serde_json::from_value(encoders["fusion_config"].clone()).unwrap();
    let stats = |key: &str| -> [f32; 3] { serde_json::from_value(encoders[key].clone()).unwrap() };
    let new = NewHead {
        fusion,
        mean: stats("image_mean"),
        std: stats("image_std"),
        crop: None,
        seed: 0,
        pooling: Some(pooling),
    };
    let mut model = backbone.load(&new, device).unwrap();
    let bytes = common::read(&fixtures().join(BERT_MODEL).join("head.safetensors"));
    let head = Checkpoint::from_bytes(&bytes, "head.safetensors").unwrap();
    let (visual, width) = (model.config.visual_dim(), model.config.text_dim());
    model.head =
        wordmask::loader::load(&head, device, "Fusioner head", |l| Ok(FusionHead::load(l, fusion, visual, width)))
            .unwrap();
    let sources = WeightSource::of(&backbone).unwrap();
    let (weights, config) = checkpoint_bytes(&model.config, &sources, &mut model.head).unwrap();
    Model::from_bytes(&config, &weights, "model.safetensors", None, device).unwrap()
}

fn bert_network(model: &Model) -> FusionerModel {
    model.network().downcast::<FusionerModel>().expect("a Fusioner network").clone()
}

#[test]
fn a_vit_with_bert_matches_the_reference() {
    let reference = Reference::load(BERT_MODEL);
    let training = Reference { bytes: common::read(&fixtures().join(BERT_MODEL).join("train_reference.safetensors")) };
    let runs = json(&fixtures().join(BERT_MODEL).join("runs.json"));
    let words: Vec<String> =
        runs["labels"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    // The image is fusioner-tiny's.
    let image = png(&fixtures().join(MODEL).join(runs["image"].as_str().unwrap()));
    let (h, w) = (image.height, image.width);
    let names: Vec<String> = ["background", "red", "green", "blue"].map(String::from).to_vec();
    let mut failures = Vec::new();
    for (backend, device) in backends() {
        for pooling in [Pooling::Cls, Pooling::Mean] {
            let mut check = |what: &str, ours: &[f32], want: &[f32]| {
                eprintln!("{backend} {what}: max abs difference {:.1e}", max_difference(ours, want));
                if let Err(e) = all_close(&format!("{backend} {what}"), ours, want, TOL, true) {
                    failures.push(e);
                }
            };
            let model = bert_pairing(&device, pooling);
            let network = bert_network(&model);
            let TextTower::Bert(bert) = &network.text else { panic!("the checkpoint's text encoder is BERT") };
            assert_eq!(bert.pooling, pooling, "the pooling is the checkpoint's");
            let classes = class_embeddings(&network, &names).unwrap();
            let [rows, p] = classes.dims();
            let ours = to_vec(classes.slice([1..rows, 0..p])).unwrap();
            check(&format!("{pooling} class embeddings"), &ours, &training.get(&format!("class_text.{pooling}")).0);
            // Negative control: the other pooling's embeddings must not pass.
            let other = if pooling == Pooling::Cls { "mean" } else { "cls" };
            assert!(
                all_close("other pooling", &ours, &training.get(&format!("class_text.{other}")).0, TOL, false).is_err(),
                "{backend}: {pooling} pooling matches the {other} reference"
            );
            if pooling != Pooling::Mean {
                continue;
            }
            // The fixture's pooling: the labels' embeddings, stitched logits and labels.
            let labels = labels::parse(&words.join(", ")).unwrap();
            let text = ClassEmbeddings::new(&model, &labels, &[], &FUSIONER_32).unwrap();
            check("label embeddings", &to_vec(text.names.clone()).unwrap(), &reference.get("text").0);
            let pixels = image_pixels(&model.preprocessor, &image, 0, &device).unwrap();
            let stitched =
                to_vec(stitched_logits(&network, pixels, &text.names, network.config.stride).unwrap()).unwrap();
            check("stitched logits", &every(&stitched, 3, h, w, 5), &reference.get("stitched_sub").0);
            let seg = wordmask::block_on(segment(
                &model,
                &image,
                &labels,
                &Settings::default(),
                &mut EmbeddingCache::default(),
            ))
            .unwrap()
            .segmentation;
            let LabelMap::Narrow(map) = seg.label_map else { panic!("an 8-bit label map") };
            let (want, _) = reference.get("labels_sub");
            let (margin, _) = reference.get("labels_margin_sub");
            let ours: Vec<f32> = (0..h)
                .step_by(5)
                .flat_map(|y| (0..w).step_by(5).map(move |x| (y, x)))
                .map(|(y, x)| map[y * w + x] as f32 - 1.0)
                .collect();
            // Pixels whose two best logits are within the tolerance may go either way.
            let differ = (0..want.len()).filter(|&i| ours[i] != want[i] && margin[i] > 1e-3).count();
            if differ > 0 {
                failures.push(format!("{backend} labels: {differ} of {} sampled pixels differ", want.len()));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn ten_training_steps_with_bert_match_the_reference() {
    let encoders = json(&fixtures().join(BERT_MODEL).join("encoders.json"));
    let pooling: Pooling = serde_json::from_value(encoders["pooling"].clone()).unwrap();
    let train = fixtures().join(encoders["train"].as_str().unwrap());
    training_parity(BERT_MODEL, &train, |device| bert_network(&bert_pairing(device, pooling)));
}

/// Ten optimiser steps of `fixture`'s training reference (`train.json`,
/// `train_reference.safetensors`) on the images of `dir`, from the head of `build`'s model.
fn training_parity(fixture: &str, dir: &std::path::Path, build: impl Fn(&burn::tensor::Device) -> FusionerModel) {
    let reference = Reference { bytes: common::read(&fixtures().join(fixture).join("train_reference.safetensors")) };
    let plan = json(&fixtures().join(fixture).join("train.json"));
    let hyper = Hyper {
        fusion_lr: plan["fusion_lr"].as_f64().unwrap(),
        fusion_min_lr: plan["fusion_min_lr"].as_f64().unwrap(),
        decoder_lr: plan["decoder_lr"].as_f64().unwrap(),
        wd: plan["wd"].as_f64().unwrap(),
        wd_end: plan["wd_end"].as_f64().unwrap(),
        beta1: plan["beta1"].as_f64().unwrap(),
        warmup_epochs: plan["warmup_epochs"].as_u64().unwrap() as usize,
        epochs: plan["epochs"].as_u64().unwrap() as usize,
        ..Hyper::default()
    };
    let per_epoch = plan["iters_per_epoch"].as_u64().unwrap() as usize;
    let names: Vec<String> =
        std::fs::read_to_string(dir.join("classes.txt")).unwrap().lines().map(String::from).collect();
    let mut failures = Vec::new();
    // Every backend with each step's tasks in one forward pass, and the CPU again with one task
    // per pass (gradients accumulated over the step's micro-batches).
    let mut runs: Vec<(String, burn::tensor::Device, usize)> =
        backends().into_iter().map(|(b, d)| (b.to_string(), d, usize::MAX)).collect();
    runs.push(("cpu, micro-batches of 1".into(), wordmask::device::open(wordmask::Backend::Cpu).unwrap(), 1));
    for (backend, device, micro_size) in runs {
        let network = build(&device);
        let crop = network.config.crop_size;
        let classes = class_embeddings(&network, &names).unwrap();
        // Rows of the trained classes (values 1..) against the reference's.
        let [rows, p] = classes.dims();
        let text = to_vec(classes.clone().slice([1..rows, 0..p])).unwrap();
        if let Err(e) =
            all_close(&format!("{backend} class embeddings"), &text, &reference.get("class_text").0, TOL, true)
        {
            failures.push(e);
        }
        let mut views = BTreeMap::new();
        let mut grid = (0, 0);
        for stem in ["0", "1", "2", "3"] {
            let image = png(&dir.join("images").join(format!("{stem}.png")));
            let pixels = normalize(&image, network.config.image_mean, network.config.image_std);
            let pixels = Tensor::<4>::from_data(TensorData::new(pixels, [1, 3, crop, crop]), &device);
            let (tokens, g) = network.image_tokens(pixels).unwrap();
            grid = g;
            let label = grey(&dir.join("labels").join(format!("{stem}.png")));
            views.insert(stem.to_string(), View { tokens: to_vec(tokens).unwrap(), label });
        }
        let mut head = network.head.clone();
        let mut optimizer = Optimizer::new(hyper, per_epoch);
        let (want_losses, _) = reference.get("losses");
        let mut losses = Vec::new();
        for batch in plan["batches"].as_array().unwrap() {
            let tasks: Vec<(View, u8)> = batch
                .as_array()
                .unwrap()
                .iter()
                .map(|t| (views[t[0].as_str().unwrap()].clone(), t[1].as_u64().unwrap() as u8))
                .collect();
            let micro: Vec<Batch> = tasks
                .chunks(micro_size.min(tasks.len()))
                .map(|part| Batch::new(part, &classes, grid, crop, &device))
                .collect();
            losses.push(train_step(&mut head, &mut optimizer, &micro, tasks.len(), crop).unwrap());
        }
        eprintln!("{fixture} {backend} losses: max abs difference {:.1e}", max_difference(&losses, &want_losses));
        if let Err(e) = all_close(&format!("{backend} losses"), &losses, &want_losses, TOL, true) {
            failures.push(e);
        }
        let mut weights = Weights(Vec::new(), None);
        head.visit(&mut weights);
        assert_eq!(weights.0.len(), reference_names(&reference).len(), "every trained parameter has a reference");
        // Two kinds of parameter have a gradient of exactly zero in exact arithmetic: the
        // biases of the decoder convolutions that an instance norm follows (it removes any
        // per-channel constant) and the key part of `qkv.bias` (a constant added to every key
        // shifts each query's scores alike, and softmax ignores it). Their computed gradients
        // are rounding noise, which Adam normalises into steps of up to the learning rate, in
        // either implementation; they are held to the steps' total instead of to 1e-4.
        let fusion_steps: f64 = (0..10)
            .map(|i| {
                wordmask::train::cosine_schedule(
                    hyper.fusion_lr,
                    hyper.fusion_min_lr,
                    hyper.epochs,
                    per_epoch,
                    hyper.warmup_epochs,
                )[i]
            })
            .sum();
        let decoder_steps = 10.0 * hyper.decoder_lr;
        let d = network.config.fusion.hidden_size;
        let mut worst = 0f32;
        for (name, _, values) in weights.0 {
            let (want, _) = reference.get(&format!("final.{name}"));
            let noise_only: Option<(std::ops::Range<usize>, f64)> = if name.starts_with("decoder.conv_")
                && name.ends_with(".bias")
                && !name.starts_with("decoder.conv_4")
            {
                Some((0..values.len(), decoder_steps))
            } else if name.ends_with("attn.qkv.bias") {
                Some((d..2 * d, fusion_steps))
            } else {
                None
            };
            let (exact, loose): (Vec<usize>, Vec<usize>) = match &noise_only {
                Some((range, _)) => (0..values.len()).partition(|i| !range.contains(i)),
                None => ((0..values.len()).collect(), Vec::new()),
            };
            let pick = |v: &[f32], at: &[usize]| at.iter().map(|&i| v[i]).collect::<Vec<f32>>();
            worst = worst.max(max_difference(&pick(&values, &exact), &pick(&want, &exact)));
            if let Err(e) =
                all_close(&format!("{backend} final {name}"), &pick(&values, &exact), &pick(&want, &exact), TOL, true)
            {
                failures.push(e);
            }
            if let Some((_, steps)) = noise_only {
                let bound = 2.0 * steps as f32 + TOL;
                if let Err(e) = all_close(
                    &format!("{backend} final {name} (zero-gradient part)"),
                    &pick(&values, &loose),
                    &pick(&want, &loose),
                    bound,
                    false,
                ) {
                    failures.push(e);
                }
            }
        }
        eprintln!("{fixture} {backend} final weights: max abs difference {worst:.1e}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The largest absolute difference, shown beside each check's tolerance.
fn max_difference(ours: &[f32], want: &[f32]) -> f32 {
    ours.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max)
}

fn reference_names(reference: &Reference) -> Vec<String> {
    let ckpt = wordmask::checkpoint::Checkpoint::from_bytes(&reference.bytes, "train_reference.safetensors").unwrap();
    ckpt.names().filter(|n| n.starts_with("final.")).map(String::from).collect()
}
