//! GroupViT parity with transformers `GroupViTModel` (and tools/groupvit_reference.py for the
//! GroupViT repository's segmentation) on the random-weight fixtures of tools/make_fixtures.py,
//! loaded through the same byte loader users get, on every backend.

use crate::common;

use burn::tensor::{Device, Tensor, TensorData};
use common::{EMBED_TOL, Reference, all_close, backends, fixtures, image, load_model, to_vec};
use wordmask::groupvit::GroupVitModel;
use wordmask::labels;
use wordmask::network::Network;
use wordmask::segment::grouping::GroupingOptions;
use wordmask::segment::groupvit::{GroupVit, Options, TOP_K, window_scores};
use wordmask::segment::slide::Windows;
use wordmask::segment::{ClassEmbeddings, Engine, Model, Templates};

const MODELS: [&str; 2] = ["groupvit-3stage", "groupvit-2stage-bin"];
const IMAGES: [&str; 3] = ["gradient_80x64", "shapes_50x90", "noise_75x75"];
/// Logits carry the logit scale twice (up to ~200 here): compared relative to their size.
const LOGIT_REL_TOL: f32 = 1e-4;
/// The repository's scores (products of softmaxes, and a 0/1 background) after averaging.
const SCORE_TOL: f32 = 1e-4;

fn tolerance(scoring: &str) -> (f32, bool) {
    if scoring == "transformers" { (LOGIT_REL_TOL, true) } else { (SCORE_TOL, false) }
}

fn groupvit(model: &Model) -> &GroupVitModel {
    model.network().downcast::<GroupVitModel>().expect("a GroupViT checkpoint")
}

fn tensor4(values: Vec<f32>, shape: &[usize], device: &Device) -> Tensor<4> {
    Tensor::from_data(TensorData::new(values, [shape[0], shape[1], shape[2], shape[3]]), device)
}

fn spec(name: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join(name).join("runs.json")).unwrap()).unwrap()
}

/// The tower on one size's reference pixels: every output the reference holds for `tag`.
fn compare_images(model: &GroupVitModel, name: &str, names: &Tensor<2>, reference: &Reference, out: &mut Vec<String>) {
    let device = model.device();
    // (output, ours, tolerance, relative)
    let mut outputs: Vec<(String, Vec<f32>, f32, bool)> = Vec::new();
    for image in IMAGES {
        let tag = format!("native.{image}");
        let (pixels, shape) = reference.get(&format!("{tag}.pixel_values"));
        let f = model.image_features(tensor4(pixels, &shape, &device)).unwrap();
        let (h, w) = (shape[2], shape[3]);
        // logits_per_image = scale * cos(image, text).
        let cos = f.embeds.clone().matmul(names.clone().transpose()).mul_scalar(model.logit_scale);
        outputs.extend([
            (format!("{tag}.image_embeds"), to_vec(f.embeds.clone()).unwrap(), EMBED_TOL, false),
            (format!("{tag}.logits_per_image"), to_vec(cos).unwrap(), LOGIT_REL_TOL, true),
            (
                format!("{tag}.segmentation_logits"),
                to_vec(model.segmentation_logits(&f, names.clone(), (h, w))).unwrap(),
                LOGIT_REL_TOL,
                true,
            ),
        ]);

        let tag = format!("resized.{image}");
        let (pixels, shape) = reference.get(&format!("{tag}.pixel_values"));
        let (h, w) = (shape[2], shape[3]);
        let x = tensor4(pixels, &shape, &device);
        let f = model.image_features(x.clone()).unwrap();
        let window = window_scores(model, x, names, Some(0.5), TOP_K).unwrap();
        outputs.extend([
            (format!("{tag}.grouping"), to_vec(GroupVitModel::grouping(&f.vision, (h, w))).unwrap(), EMBED_TOL, false),
            (format!("{tag}.group_embeds"), to_vec(f.group_embeds.clone()).unwrap(), EMBED_TOL, false),
            (format!("{tag}.image_embeds"), to_vec(f.embeds.clone()).unwrap(), EMBED_TOL, false),
            (
                format!("{tag}.segmentation_logits"),
                to_vec(model.segmentation_logits(&f, names.clone(), (h, w))).unwrap(),
                LOGIT_REL_TOL,
                true,
            ),
            (format!("{tag}.window_scores"), to_vec(window).unwrap(), SCORE_TOL, false),
        ]);
    }
    for (key, ours, tol, relative) in outputs {
        out.extend(all_close(&format!("{name} {key}"), &ours, &reference.get(&key).0, tol, relative).err());
    }
}

/// Everything for one checkpoint on one device; collects every failure.
fn compare(name: &str, device: &Device) -> Vec<String> {
    let model = load_model(name, device);
    assert_eq!(model.engine(), GroupVit::NAME, "model_type groupvit picks the groupvit engine");
    let reference = Reference::load(name);
    let gv = groupvit(&model);
    let mut failures = Vec::new();
    let mut check = |r: Result<(), String>| failures.extend(r.err());

    check(all_close(
        &format!("{name} logit_scale"),
        &[gv.logit_scale.ln()],
        &reference.get("logit_scale").0,
        1e-6,
        false,
    ));
    let (ids, shape) = reference.get("text_ids");
    let rows: Vec<Vec<u32>> = ids.chunks(shape[1]).map(|r| r.iter().map(|&v| v as u32).collect()).collect();
    let text = to_vec(model.network().embed_token_ids(&rows).unwrap()).unwrap();
    check(all_close(&format!("{name} text_embeds"), &text, &reference.get("text_embeds").0, EMBED_TOL, false));

    let spec = spec(name);
    let parsed = labels::parse(spec["labels"].as_str().unwrap()).unwrap();
    let classes = ClassEmbeddings::new(&model, &parsed, &[], Templates::Single.prompts()).unwrap();
    // The reference embeds each name as given (no template): do the same for the tower checks.
    let raw: Vec<String> = parsed.iter().flat_map(|l| l.synonyms.clone()).collect();
    let raw: Vec<&str> = raw.iter().map(String::as_str).collect();
    let names = model.embed_texts(&raw).unwrap();
    check(all_close(
        &format!("{name} names"),
        &to_vec(names.clone()).unwrap(),
        &reference.get("names").0,
        EMBED_TOL,
        false,
    ));

    // Our preprocessing from preprocessor_config.json matches the processor's pixels.
    for image_name in IMAGES {
        let (want, _) = reference.get(&format!("native.{image_name}.pixel_values"));
        let (chw, _) = model.preprocessor.apply(&image(image_name)).unwrap();
        check(all_close(&format!("{name} native.{image_name}.pixel_values"), &chw, &want, 1e-5, false));
    }
    compare_images(gv, name, &names, &reference, &mut failures);

    // The whole pipeline: resize, windows, stitching, synonyms, background.
    let classes = ClassEmbeddings { names: names.clone(), ..classes };
    for run in spec["runs"].as_array().unwrap() {
        let tag = run["tag"].as_str().unwrap();
        let slide = run["slide"].as_array().map(|s| [0, 1].map(|k| s[k].as_u64().unwrap() as usize));
        let d = Options::default();
        let opts = Options {
            grouping: GroupingOptions {
                windows: Windows {
                    short_side: run["short_side"].as_u64().unwrap() as usize,
                    window: slide.map_or(0, |s| s[0]),
                    stride: slide.map_or(0, |s| s[1]),
                    rounding: wordmask::preprocess::Rounding::Transformers,
                },
                background_threshold: run["threshold"].as_f64().unwrap_or(0.0) as f32,
                ..d.grouping
            },
            scoring: serde_json::from_value(run["scoring"].clone()).unwrap(),
        };
        let img = image(run["image"].as_str().unwrap());
        let scores = GroupVit::scores(gv, &model.preprocessor, &img, &classes, &opts).unwrap();
        let ours = wordmask::block_on(scores.at(img.width, img.height)).unwrap();
        let (tol, relative) = tolerance(run["scoring"].as_str().unwrap());
        let want = reference.get(&format!("pipeline.{tag}")).0;
        failures.extend(all_close(&format!("{name} pipeline.{tag}"), &ours, &want, tol, relative).err());
    }
    failures
}

#[test]
fn groupvit_matches_transformers_on_every_backend() {
    let mut failures = Vec::new();
    for (backend, device) in backends() {
        for name in MODELS {
            failures.extend(compare(name, &device).into_iter().map(|f| format!("[{backend}] {f}")));
        }
    }
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
}

/// The two grouping stages of `groupvit-2stage-bin` have the same shapes, so they can run in
/// the wrong order; the grouping and the logits must then miss the reference.
#[test]
fn swapped_stage_order_fails_parity() {
    let name = "groupvit-2stage-bin";
    let device = wordmask::device::open(wordmask::Backend::Cpu).unwrap();
    let model = load_model(name, &device);
    let mut gv = groupvit(&model).clone();
    let stages = &mut gv.vision_model.stages;
    let (first, second) = stages.split_at_mut(1);
    std::mem::swap(&mut first[0].group_token, &mut second[0].group_token);
    std::mem::swap(&mut first[0].layers, &mut second[0].layers);
    std::mem::swap(&mut first[0].downsample, &mut second[0].downsample);
    let reference = Reference::load(name);
    let raw: Vec<String> = labels::parse(spec(name)["labels"].as_str().unwrap())
        .unwrap()
        .iter()
        .flat_map(|l| l.synonyms.clone())
        .collect();
    let raw: Vec<&str> = raw.iter().map(String::as_str).collect();
    let names = model.embed_texts(&raw).unwrap();
    let mut failures = Vec::new();
    compare_images(&gv, name, &names, &reference, &mut failures);
    for key in ["grouping", "segmentation_logits", "image_embeds"] {
        assert!(
            failures.iter().any(|f| f.contains(&format!("resized.gradient_80x64.{key}"))),
            "swapped stages still match the reference's {key}; failures: {failures:#?}"
        );
    }
    // And the unswapped model matches, so the failures above come from the order alone.
    let mut clean = Vec::new();
    compare_images(groupvit(&model), name, &names, &reference, &mut clean);
    assert!(clean.is_empty(), "{clean:#?}");
}
