//! Open-Vocabulary SAM parity with tools/ovsam_reference.py (open_clip's `ModifiedResNet`,
//! transformers' SAM modules, torchvision's `roi_align` and the demo's glue) on the random-weight
//! fixture `ovsam-tiny`, which tools/convert_ovsam.py wrote from the released files' layouts.
//! Loaded through the byte loader users get, on every backend, stage by stage: the demo's resize,
//! the four backbone stages, the neck, the FPN levels, the positional grid, prompt embeddings,
//! low-resolution masks, boxes and RoI levels (exact), RoI features, class logits and
//! probabilities for the released classifier and for typed words, the top-1 name, and the final
//! mask — for one click, three clicks and a box, and for the naming stage alone on an empty, a
//! one-pixel and an all-positive mask.

use crate::common;

use burn::tensor::{Device, Tensor, TensorData};
use common::{Reference, all_close, backends, fixtures, read, to_vec};
use wordmask::labels;
use wordmask::ovsam::{OvSamModel, class_probabilities};
use wordmask::preprocess::RgbImage;
use wordmask::sam::Point;
use wordmask::segment::point::{
    AutomaticOptions, Click, NameRequest, Prompt, PromptModel, PromptSession, Vocabulary, VocabularyChoice,
};

const NAME: &str = "ovsam-tiny";
/// Features of order 1 after many f32 operations, compared relative to their size.
const TOL: f32 = 1e-4;

fn png(name: &str) -> RgbImage {
    let img = image::open(fixtures().join(NAME).join(name)).unwrap().to_rgb8();
    RgbImage::new(img.width() as usize, img.height() as usize, img.into_raw()).unwrap()
}

fn load(device: &Device) -> PromptModel {
    let dir = fixtures().join(NAME);
    let config = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let bytes = read(&dir.join("model.safetensors"));
    PromptModel::from_bytes(&config, &bytes, "model.safetensors", None, device).unwrap()
}

fn ovsam(model: &PromptModel) -> &OvSamModel {
    model.network::<OvSamModel>().unwrap_or_else(|| panic!("{NAME} loaded as another model than Open-Vocabulary SAM"))
}

fn spec() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join(NAME).join("reference.json")).unwrap()).unwrap()
}

/// The demo resizes with Pillow's bilinear filter to `int(side * 512 / 96)`: ours matches the
/// stored resize within one level.
#[test]
fn the_resize_is_the_demos() {
    let device = wordmask::device::open(wordmask::Backend::Cpu).unwrap();
    let model = load(&device);
    let (image, resized) = (png("image.png"), png("resized.png"));
    let size = model.processor.resized_size(image.width, image.height);
    assert_eq!(size, (resized.width, resized.height));
    let ours = image.resize_bilinear(size.0, size.1);
    let worst = ours.data.iter().zip(&resized.data).map(|(a, b)| a.abs_diff(*b)).max().unwrap();
    assert!(worst <= 1, "resize differs by {worst} levels");
}

fn compare(model: &PromptModel) -> Vec<String> {
    let net = ovsam(model);
    let device = net.device();
    let reference = Reference::load(NAME);
    let spec = spec();
    let failures = std::cell::RefCell::new(Vec::new());
    let check = |key: &str, ours: Vec<f32>, reference: Vec<f32>| {
        failures.borrow_mut().extend(all_close(key, &ours, &reference, TOL, true).err());
    };
    let r = |key: &str| reference.get(key).0;

    // The heavy pass, on the stored resize (its own size: the processor only normalises and pads).
    let resized = png("resized.png");
    let (pixels, _) = model.processor.pixels(&resized, &device);
    let stages = net.stages(pixels.clone());
    for (i, stage) in stages.iter().enumerate() {
        check(&format!("stage{i}"), to_vec(stage.clone()).unwrap(), r(&format!("stage{i}")));
    }
    let features = net.encode(pixels).unwrap();
    check("neck", to_vec(features.embeddings.clone()).unwrap(), r("neck"));
    for (i, level) in features.fpn.iter().enumerate() {
        check(&format!("fpn{i}"), to_vec(level.clone()).unwrap(), r(&format!("fpn{i}")));
    }
    check("image_pe", to_vec(net.image_positional_embeddings()).unwrap(), r("image_pe"));

    // The classifiers: the released one as stored, the typed words through the text tower.
    let released = net.classifier.clone().expect("the fixture carries a classifier");
    let typed_labels: Vec<String> =
        spec["typed_labels"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    let typed =
        net.class_embeddings(&tokenizer(), &typed_labels.iter().map(|l| vec![l.clone()]).collect::<Vec<_>>()).unwrap();
    check("typed.classifier", to_vec(typed.clone()).unwrap(), r("typed.classifier"));

    let cases = spec["cases"].as_object().unwrap();
    let side = reference.get("click.low_res_masks").1[2];
    for (case, info) in cases {
        let key = |k: &str| format!("{case}.{k}");
        let naming_only = info.get("points").is_none() && info.get("prompt_box").is_none();
        let low_ref = r(&key("low_res_masks"));
        if !naming_only {
            let points: Vec<Point> = info
                .get("points")
                .and_then(|p| p.as_array())
                .map(|ps| {
                    ps.iter()
                        .map(|p| Point { x: p[0].as_f64().unwrap(), y: p[1].as_f64().unwrap(), positive: true })
                        .collect()
                })
                .unwrap_or_default();
            let bbox = info.get("prompt_box").map(|b| {
                let v: Vec<f64> = b.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
                [v[0], v[1], v[2], v[3]]
            });
            let sparse = net.sparse_embeddings(&points, bbox).unwrap();
            check(&key("sparse"), to_vec(sparse.clone()).unwrap(), r(&key("sparse")));
            let low = to_vec(net.decode(&features, sparse).unwrap()).unwrap();
            check(&key("low_res_masks"), low.clone(), low_ref.clone());
            // Our own mask's box is the reference's: each case's box survives changes of the
            // logits far above our error (`box_margin`).
            let (ours, _) = net.mask_box(&low, side);
            let (theirs, _) = net.mask_box(&low_ref, side);
            if ours != theirs {
                failures.borrow_mut().push(format!("{case}: box of our mask {ours:?}, of the reference's {theirs:?}"));
            }
        }
        // Boxes and levels exactly; then the RoI feature and the logits from the reference's box.
        let (b, level) = net.mask_box(&low_ref, side);
        let want_box = r(&key("boxes"));
        if b.to_vec() != want_box || level as f32 != r(&key("level"))[0] {
            failures
                .borrow_mut()
                .push(format!("{case}: box {b:?} level {level}, reference {want_box:?} level {}", r(&key("level"))[0]));
        }
        let roi = net.roi_features(&features, b, level);
        check(&key("roi_feats"), to_vec(roi.clone()).unwrap(), r(&key("roi_feats")));
        let logits = to_vec(net.logits(roi.clone(), released.clone())).unwrap();
        let mut with_background = logits.clone();
        with_background.push(0.0);
        check(&key("logits"), with_background, r(&key("logits")));
        let probs = class_probabilities(&logits);
        check(&key("probs"), probs.clone(), r(&key("probs")));
        let top = (0..probs.len()).fold(0, |b, i| if probs[i] > probs[b] { i } else { b });
        let want_top = info["top1"]["index"].as_u64().unwrap() as usize;
        if top != want_top {
            failures.borrow_mut().push(format!("{case}: top-1 class {top}, reference {want_top}"));
        }
        if !naming_only {
            let mut typed_logits = to_vec(net.logits(roi, typed.clone())).unwrap();
            let typed_probs = class_probabilities(&typed_logits);
            typed_logits.push(0.0);
            check(&key("typed_logits"), typed_logits, r(&key("typed_logits")));
            check(&key("typed_probs"), typed_probs, r(&key("typed_probs")));
        }
    }
    failures.into_inner()
}

fn tokenizer() -> wordmask::tokenizer::Tokenizer {
    wordmask::tokenizer::Tokenizer::new()
}

#[test]
fn every_stage_matches_the_reference_on_every_backend() {
    let mut failures = Vec::new();
    for (backend, device) in backends() {
        let model = load(&device);
        failures.extend(compare(&model).into_iter().map(|f| format!("{backend:?}: {f}")));
    }
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
}

/// The product's path — a prompt in the image's pixels through `PromptModel`, the mask read
/// back at the image's size and named — gives the demo's mask and top-1 names.
#[test]
fn prompts_give_the_demos_masks_and_names() {
    let device = wordmask::device::open(wordmask::Backend::Cpu).unwrap();
    let model = load(&device);
    let spec = spec();
    let reference = Reference::load(NAME);
    let resized = png("resized.png");
    let encoded = wordmask::block_on(model.encode(&resized)).unwrap();
    let typed = labels::parse(
        &spec["typed_labels"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect::<Vec<_>>().join(","),
    )
    .unwrap();
    let (mut released, mut words) = (None, None);
    model.prepare_classes(&Vocabulary::Released, &mut released).unwrap();
    model.prepare_classes(&Vocabulary::Typed(typed), &mut words).unwrap();
    let mut failures = Vec::new();
    for (case, info) in spec["cases"].as_object().unwrap() {
        let points: Vec<Click> = match info.get("points") {
            Some(p) => p
                .as_array()
                .unwrap()
                .iter()
                .map(|p| Click { x: p[0].as_f64().unwrap(), y: p[1].as_f64().unwrap(), positive: true })
                .collect(),
            None => Vec::new(),
        };
        let bbox = info.get("prompt_box").map(|b| {
            let v: Vec<f64> = b.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
            [v[0], v[1], v[2], v[3]]
        });
        if points.is_empty() && bbox.is_none() {
            continue;
        }
        let mask = wordmask::block_on(model.segment(&encoded, &Prompt { points, bbox })).unwrap();
        let want = reference.get(&format!("{case}.mask")).0;
        let differ = mask.mask.iter().zip(&want).filter(|(a, b)| f32::from(**a) != **b).count();
        // A pixel whose upsampled logit is within float error of 0 may fall either way.
        if differ > 2 {
            failures.push(format!("{case}: {differ} mask pixels differ from the demo's"));
        }
        let named = wordmask::block_on(model.name(&encoded, &mask, released.as_ref().unwrap())).unwrap();
        let want = info["top1"]["name"].as_str().unwrap().replace('_', " ");
        if named.best.label != want {
            failures.push(format!("{case}: named {}, the demo says {want}", named.best.label));
        }
        let named = wordmask::block_on(model.name(&encoded, &mask, words.as_ref().unwrap())).unwrap();
        let want = info["typed_top1"]["label"].as_str().unwrap();
        if named.best.label != want {
            failures.push(format!("{case}: typed name {}, the reference says {want}", named.best.label));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A wrong weight is caught: perturbing the FPN's last output convolution moves the RoI
/// features of the large box past the tolerance (the test can fail).
#[test]
fn a_perturbed_weight_is_caught() {
    let device = wordmask::device::open(wordmask::Backend::Cpu).unwrap();
    let mut model = load(&device);
    if let Some(net) = model.network_mut::<OvSamModel>() {
        let conv = &mut net.fpn.output[3];
        let dims = conv.weight.dims();
        let mut w = to_vec(conv.weight.clone()).unwrap();
        w[0] += 0.5;
        conv.weight = Tensor::from_data(TensorData::new(w, dims), &device);
    }
    let failures = compare(&model);
    assert!(failures.iter().any(|f| f.starts_with("fpn3")), "{failures:?}");
}

/// Name everything with Open-Vocabulary SAM: the grid decoded side by side gives each point the
/// mask a lone click there gives (the click path is the one checked against the reference
/// above); with no predicted IoU nothing is dropped for it and candidates rank by stability;
/// each object is named as Point mode names that click — among the checkpoint's classes when no
/// words are typed, among the words when they are.
#[test]
fn automatic_masks_are_the_clicks_masks_named_as_the_clicks_are() {
    let words = labels::parse("red, green, blue").unwrap();
    for (backend, device) in backends() {
        let model = load(&device);
        let image = png("image.png");
        // pred_iou_thresh would drop every candidate of a model that predicted IoU.
        // A small offset: the random model's logits are small.
        let open = AutomaticOptions {
            points_per_side: 6,
            points_per_batch: 7,
            pred_iou_thresh: 0.999,
            stability_score_thresh: 0.0,
            stability_score_offset: 0.05,
            box_nms_thresh: 1.0,
            ..AutomaticOptions::default()
        };
        let encoded = wordmask::block_on(model.encode(&image)).unwrap();
        let found = wordmask::block_on(model.automatic(&encoded, &open, |_, _| {})).unwrap();
        assert_eq!(found.len(), 36, "{backend:?}: every candidate of the 6x6 grid is kept");
        let filled = found.iter().filter(|a| a.mask.area() > 0).count();
        assert!(filled >= 6, "{backend:?}: only {filled} candidates have pixels: the test would show little");
        let mut failures = Vec::new();
        let mut clicks = PromptSession::new(load(&device));
        wordmask::block_on(clicks.encode(image.clone())).unwrap();
        for (k, auto) in found.iter().enumerate() {
            assert!(auto.iou.is_none(), "{backend:?}: Open-Vocabulary SAM predicts no IoU");
            if k > 0 && auto.score() > found[k - 1].score() {
                failures.push(format!("candidate {k} ranks above a more stable one"));
            }
            let click = Prompt { points: vec![Click { x: auto.point.0, y: auto.point.1, positive: true }], bbox: None };
            let mask = wordmask::block_on(clicks.prompt(&click, NameRequest::default())).unwrap().mask;
            let differ = mask.mask.iter().zip(auto.mask.to_plane()).filter(|(a, b)| **a != *b).count();
            if differ > 2 {
                failures.push(format!("candidate {k}: {differ} pixels differ from the click's mask"));
            }
        }
        let mut stabilities: Vec<f32> = found.iter().map(|a| a.stability).filter(|s| *s > 0.0).collect();
        stabilities.sort_by(f32::total_cmp);
        // A stability threshold keeps exactly the candidates above it.
        match stabilities.first() {
            Some(&cut) => {
                let stable = AutomaticOptions { stability_score_thresh: cut, ..open.clone() };
                let kept = wordmask::block_on(model.automatic(&encoded, &stable, |_, _| {})).unwrap();
                let above = found.iter().filter(|a| a.stability > cut).count();
                if kept.len() != above {
                    failures.push(format!("stability {cut}: {} kept, {above} candidates above it", kept.len()));
                }
            }
            None => failures.push("no candidate has a positive stability score".into()),
        }

        let mut session = PromptSession::new(model);
        wordmask::block_on(session.encode(image.clone())).unwrap();
        for (request_words, vocabulary) in
            [(None, None), (Some(words.clone()), None), (Some(words.clone()), Some(VocabularyChoice::Lvis))]
        {
            let request = NameRequest { labels: request_words.clone(), vocabulary, words: None };
            let objects = wordmask::block_on(session.everything(&open, request, |_, _| {})).unwrap();
            let what = format!("words {:?}, vocabulary {vocabulary:?}", request_words.is_some());
            for (object, auto) in objects.iter().zip(&found) {
                let click =
                    Prompt { points: vec![Click { x: auto.point.0, y: auto.point.1, positive: true }], bbox: None };
                let request = NameRequest { labels: request_words.clone(), vocabulary, words: None };
                let answer = wordmask::block_on(clicks.prompt(&click, request)).unwrap();
                let want = answer.naming.as_ref().map(|n| (n.best.label.clone(), n.class_index));
                let got = object.label.clone().map(|l| (l, object.class));
                if got != want {
                    failures.push(format!("{what}: object {} named {got:?}, its click {want:?}", object.id));
                }
            }
            let counts = session.counts(&objects, request_words.as_deref(), vocabulary);
            let named = objects.iter().filter(|o| o.label.is_some()).count();
            if counts.iter().map(|c| c.1).sum::<usize>() != named {
                failures.push(format!("{what}: counts {counts:?} for {named} named objects"));
            }
            let typed = request_words.is_some() && vocabulary.is_none();
            if typed && counts.len() != words.len() {
                failures.push(format!("{what}: counts {counts:?} leave out a typed word"));
            }
        }
        assert!(failures.is_empty(), "{backend:?}:\n{}", failures.join("\n"));
    }
}
