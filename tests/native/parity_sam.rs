//! Segment Anything parity with transformers `SamModel` and `SamProcessor` on the random-weight
//! fixtures of tools/sam_fixtures.py (a tiny model, and SlimSAM-77's vision shape at 1024
//! pixels), loaded through the byte loader users get, on every backend: processor pixels, image
//! embeddings, the grid's positional features, prompt embeddings (points of both labels, a box,
//! a point with a box, a mask prompt), decoder masks and IoU scores, and the masks at the
//! image's own size.

use crate::common;

use burn::tensor::{Device, Tensor};
use common::{Reference, all_close, backends, fixtures, image, read, to_vec, weights_file};
use wordmask::checkpoint::Checkpoint;
use wordmask::loader::WeightLoader;
use wordmask::sam::{Point, SamConfig, SamModel, SamProcessor};

const MODELS: [&str; 2] = ["sam-tiny", "sam-slim-shape"];
/// Embeddings and features of order 1, after many f32 operations.
const TOL: f32 = 1e-4;
/// Mask logits grow with the decoder's depth: compared relative to their size.
const LOGIT_REL_TOL: f32 = 1e-4;

fn load(name: &str, device: &Device, edit: impl FnOnce(&mut SamModel)) -> (SamModel, SamProcessor) {
    let dir = fixtures().join(name);
    let config = SamConfig::from_json(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let bytes = read(&weights_file(name));
    let checkpoint = Checkpoint::from_bytes(&bytes, name).unwrap();
    let mut loader = WeightLoader::new(&checkpoint, device, "SamModel");
    let mut model = SamModel::load(config, &mut loader);
    loader.finish().unwrap_or_else(|e| panic!("{name}: {e}"));
    edit(&mut model);
    let processor = SamProcessor::from_json(
        &std::fs::read_to_string(dir.join("preprocessor_config.json")).unwrap(),
        model.input_size(),
    )
    .unwrap();
    (model, processor)
}

fn runs(name: &str) -> Vec<serde_json::Value> {
    let spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join(name).join("runs.json")).unwrap()).unwrap();
    spec["runs"].as_array().unwrap().clone()
}

/// Every output for one checkpoint on one device; collects the failures.
fn compare(name: &str, model: &SamModel, processor: &SamProcessor) -> Vec<String> {
    let device = model.device();
    let reference = Reference::load(name);
    let has = |key: &str| Checkpoint::from_bytes(&reference.bytes, "reference").unwrap().get(key).is_some();
    let mut failures = Vec::new();
    let mut check = |key: &str, ours: Vec<f32>, tol: f32, relative: bool| {
        failures.extend(all_close(&format!("{name} {key}"), &ours, &reference.get(key).0, tol, relative).err());
    };
    check("image_positional_embeddings", to_vec(model.image_positional_embeddings()).unwrap(), TOL, false);
    let mut embeddings = std::collections::HashMap::new();
    let mut low_res = std::collections::HashMap::new();
    for run in runs(name) {
        let image_name = run["image"].as_str().unwrap();
        let img = image(image_name);
        let original = (img.width, img.height);
        let (pixels, resized) = processor.pixels(&img, &device);
        let emb = embeddings
            .entry(image_name.to_string())
            .or_insert_with(|| {
                if has(&format!("{image_name}.pixel_values")) {
                    check(&format!("{image_name}.pixel_values"), to_vec(pixels.clone()).unwrap(), 1e-5, false);
                }
                let emb = model.image_embeddings(pixels).unwrap();
                check(&format!("{image_name}.image_embeddings"), to_vec(emb.clone()).unwrap(), TOL, false);
                emb
            })
            .clone();
        let key = format!("{image_name}.{}", run["prompt"].as_str().unwrap());
        let points: Vec<Point> = run["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let (x, y) = processor.to_input(p[0].as_f64().unwrap(), p[1].as_f64().unwrap(), original);
                Point { x, y, positive: p[2].as_u64() == Some(1) }
            })
            .collect();
        let bbox = run["box"].as_array().map(|b| {
            let (x0, y0) = processor.to_input(b[0].as_f64().unwrap(), b[1].as_f64().unwrap(), original);
            let (x1, y1) = processor.to_input(b[2].as_f64().unwrap(), b[3].as_f64().unwrap(), original);
            [x0, y0, x1, y1]
        });
        let sparse = model.sparse_embeddings(&points, bbox).unwrap();
        check(&format!("{key}.sparse"), to_vec(sparse.clone()).unwrap(), TOL, false);
        let mask_prompt = run["mask_from"].as_str().map(|from| {
            let prior: &Tensor<3> =
                low_res.get(&format!("{image_name}.{from}")).expect("the mask prompt's source ran first");
            let [_, m, _] = prior.dims();
            prior.clone().slice([0..1, 0..m, 0..m]).reshape([1, 1, m, m])
        });
        if let Some(m) = &mask_prompt {
            check(&format!("{key}.input_masks"), to_vec(m.clone()).unwrap(), LOGIT_REL_TOL, true);
        }
        let dense = model.dense_embeddings(mask_prompt).unwrap();
        if has(&format!("{key}.dense")) {
            check(&format!("{key}.dense"), to_vec(dense.clone()).unwrap(), TOL, false);
        }
        let out = model.decode(emb, sparse, dense, run["multimask"].as_bool().unwrap());
        check(&format!("{key}.pred_masks"), to_vec(out.masks.clone()).unwrap(), LOGIT_REL_TOL, true);
        check(&format!("{key}.iou_scores"), to_vec(out.iou.clone().expect("SAM predicts IoU")).unwrap(), TOL, true);
        // The product's path: cropped on the device, upsampled on the host a row at a time.
        let cropped = to_vec(processor.cropped(out.masks.clone(), resized)).unwrap();
        let mut full = Vec::with_capacity(cropped.len() / (resized.0 * resized.1) * original.0 * original.1);
        for mask in cropped.chunks_exact(resized.0 * resized.1) {
            processor.upscale_rows(mask, resized, original, |_, row| full.extend_from_slice(row));
        }
        check(&format!("{key}.masks"), full, LOGIT_REL_TOL, true);
        low_res.insert(key, out.masks);
    }
    failures
}

#[test]
fn sam_matches_transformers_on_every_backend() {
    let mut failures = Vec::new();
    for (backend, device) in backends() {
        for name in MODELS {
            let (model, processor) = load(name, &device, |_| ());
            failures.extend(compare(name, &model, &processor).into_iter().map(|f| format!("[{backend}] {f}")));
        }
    }
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
}

/// Attention split into one head at a time gives the same embeddings (the memory bound's
/// chunking is exact).
#[test]
fn chunked_attention_matches() {
    let device = wordmask::device::open(wordmask::Backend::Cpu).unwrap();
    let (model, processor) = load("sam-tiny", &device, |m| {
        for layer in &mut m.vision_encoder.layers {
            layer.attn.budget = 1;
        }
    });
    let failures = compare("sam-tiny", &model, &processor);
    assert!(failures.is_empty(), "{failures:#?}");
}

/// A windowed layer run over the whole grid, or the two relative-position tables swapped, must
/// miss the reference: the comparison is sharp enough to see them.
#[test]
fn a_wrong_window_or_relative_position_fails_parity() {
    let device = wordmask::device::open(wordmask::Backend::Cpu).unwrap();
    let embeddings_fail = |failures: &[String]| failures.iter().any(|f| f.contains(".image_embeddings"));
    let (model, processor) = load("sam-tiny", &device, |m| {
        // Its relative positions are sized for 3-patch windows, so they go too.
        let layer = &mut m.vision_encoder.layers[0];
        layer.window_size = 0;
        layer.attn.rel_pos = None;
    });
    let failures = compare("sam-tiny", &model, &processor);
    assert!(embeddings_fail(&failures), "a windowed layer run globally passed");
    eprintln!("layer 0 global instead of windows of 3: {}", failures[0]);
    let (model, processor) = load("sam-tiny", &device, |m| {
        let attn = &mut m.vision_encoder.layers[2].attn;
        let (h, w) = attn.rel_pos.take().unwrap();
        attn.rel_pos = Some((w, h));
    });
    let failures = compare("sam-tiny", &model, &processor);
    assert!(embeddings_fail(&failures), "swapped relative-position tables passed");
    eprintln!("swapped rel_pos_h and rel_pos_w: {}", failures[0]);
}
