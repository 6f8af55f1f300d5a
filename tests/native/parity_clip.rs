//! CLIP parity with transformers `CLIPModel` on the random-weight fixtures of
//! tools/make_fixtures.py, loaded through the same byte loader users get, on every backend.

use crate::common;

use burn::tensor::{Tensor, TensorData};
use common::{
    EMBED_TOL, HIDDEN_REL_TOL, IMAGES, MODELS, Reference, all_close, backends, load_model, read, to_vec, weights_file,
};
use wordmask::checkpoint::Checkpoint;
use wordmask::clip::ClipModel;
use wordmask::loader::WeightLoader;
use wordmask::network::Network;
use wordmask::segment::Model;

fn texts(model: &str) -> Vec<String> {
    let text = std::fs::read_to_string(common::fixtures().join(model).join("texts.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Compare one model's text and image outputs with the reference; collects every failure.
fn compare(model: &Model, name: &str, reference: &Reference) -> Vec<String> {
    let clip = model.network().downcast::<ClipModel>().expect("a CLIP checkpoint");
    let mut failures = Vec::new();
    let mut check = |r: Result<(), String>| {
        if let Err(e) = r {
            failures.push(e);
        }
    };
    // Text: our tokenizer's ids, then the embeddings.
    let texts = texts(name);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let (ref_ids, ids_shape) = reference.get("text_ids");
    let ours = model.tokenizer.encode_batch(&refs, 77);
    for (i, row) in ours.iter().enumerate() {
        let want: Vec<u32> = ref_ids[i * ids_shape[1]..(i + 1) * ids_shape[1]].iter().map(|&v| v as u32).collect();
        if row != &want {
            check(Err(format!("{name}: ids of {:?} differ: {row:?} vs {want:?}", texts[i])));
        }
    }
    let emb = to_vec(model.embed_texts(&refs).unwrap()).unwrap();
    check(all_close(&format!("{name} text_embeds"), &emb, &reference.get("text_embeds").0, EMBED_TOL, false));
    let (scale, _) = reference.get("logit_scale");
    check(all_close(&format!("{name} logit_scale"), &[clip.logit_scale.ln()], &scale, 1e-6, false));

    // Images: the reference's pixels through the vision tower, cropped (native size) and
    // uncropped (non-square, interpolated positions).
    for crop in ["crop", "nocrop"] {
        for image in IMAGES {
            let tag = format!("{crop}.{image}");
            let (pixels, shape) = reference.get(&format!("{tag}.pixel_values"));
            let device = clip.device();
            let x = Tensor::<4>::from_data(TensorData::new(pixels, [shape[0], shape[1], shape[2], shape[3]]), &device);
            let f = clip.image_features(x).unwrap();
            let outputs = [
                ("image_embeds", to_vec(f.embeds).unwrap(), false, EMBED_TOL),
                ("patch_tokens", to_vec(f.patch_tokens).unwrap(), false, EMBED_TOL),
                ("penultimate", to_vec(f.vision.penultimate).unwrap(), true, HIDDEN_REL_TOL),
                ("last_hidden", to_vec(f.vision.last_hidden).unwrap(), true, HIDDEN_REL_TOL),
            ];
            for (key, ours, relative, tol) in outputs {
                let (want, _) = reference.get(&format!("{tag}.{key}"));
                check(all_close(&format!("{name} {tag}.{key}"), &ours, &want, tol, relative));
            }
        }
    }
    failures
}

#[test]
fn clip_matches_transformers_on_every_fixture_and_backend() {
    let mut failures = Vec::new();
    for (backend, device) in backends() {
        for name in MODELS {
            let model = load_model(name, &device);
            for f in compare(&model, name, &Reference::load(name)) {
                failures.push(format!("[{backend}] {f}"));
            }
        }
    }
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
}

/// The parity check is sharp: moving a single weight by 1e-2 must break it.
#[test]
fn one_perturbed_weight_breaks_parity() {
    let name = "clip-p16-quickgelu";
    let dir = common::fixtures().join(name);
    let config = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let weights = read(&weights_file(name));
    let checkpoint = Checkpoint::from_bytes(&weights, name).unwrap();
    let device = wordmask::device::open(wordmask::Backend::Cpu).unwrap();
    for target in
        ["vision_model.encoder.layers.1.mlp.fc2.weight", "text_model.encoder.layers.0.self_attn.q_proj.weight"]
    {
        let mut loader = WeightLoader::new(&checkpoint, &device, "CLIPModel").with_hook(move |key, values| {
            if key == target {
                values[3] += 1e-2;
            }
        });
        let clip = ClipModel::load(wordmask::clip::ClipConfig::from_json(&config).unwrap(), &mut loader);
        loader.finish().unwrap();
        let model = Model::new(Box::new(clip), None).unwrap();
        let failures = compare(&model, name, &Reference::load(name));
        assert!(!failures.is_empty(), "perturbing {target} by 1e-2 went unnoticed");
        eprintln!("perturbing {target} by 1e-2:\n  {}", failures.join("\n  "));
    }
}
