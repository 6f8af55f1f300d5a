//! Broken, truncated and mismatched checkpoints give errors that name the problem.

use crate::common;

use common::{fixtures, read, weights_file};
use wordmask::Error;
use wordmask::checkpoint::Checkpoint;
use wordmask::segment::Model;

fn config(model: &str) -> String {
    std::fs::read_to_string(fixtures().join(model).join("config.json")).unwrap()
}

fn try_load(config: &str, weights: &[u8]) -> Result<Model, Error> {
    let device = wordmask::device::open(wordmask::Backend::Cpu).unwrap();
    Model::from_bytes(config, weights, "test-weights", None, &device)
}

fn error_text(config: &str, weights: &[u8]) -> String {
    match try_load(config, weights) {
        Ok(_) => panic!("loading succeeded"),
        Err(e) => e.to_string(),
    }
}

/// The failure's `Error::code` (what the web build's errors carry as `code`) and its text.
fn error_code(config: &str, weights: &[u8]) -> (&'static str, String) {
    match try_load(config, weights) {
        Ok(_) => panic!("loading succeeded"),
        Err(e) => (e.code(), e.to_string()),
    }
}

/// Rewrite a safetensors file's header with `edit`, keeping its data.
fn edit_safetensors(bytes: &[u8], edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) -> Vec<u8> {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    edit(&mut header);
    let mut text = serde_json::to_vec(&header).unwrap();
    while !text.len().is_multiple_of(8) {
        text.push(b' ');
    }
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend(text);
    out.extend_from_slice(&bytes[8 + n..]);
    out
}

#[test]
fn every_missing_misshaped_and_unexpected_tensor_is_named_at_once() {
    let model = "clip-p16-quickgelu";
    let original = read(&weights_file(model));
    let data_len = original.len() - 8 - u64::from_le_bytes(original[..8].try_into().unwrap()) as usize;
    let mut extra_len = 0;
    let mut bytes = edit_safetensors(&original, |h| {
        h.remove("vision_model.post_layernorm.weight");
        h.remove("text_model.encoder.layers.1.mlp.fc1.bias");
        let proj = h.get_mut("text_projection.weight").unwrap();
        proj["shape"] = serde_json::json!([8, 16]);
        // A copy of logit_scale with bytes of its own, after the data (tensors may not overlap).
        let mut extra = h["logit_scale"].clone();
        let offsets = |i: usize| extra["data_offsets"][i].as_u64().unwrap() as usize;
        extra_len = offsets(1) - offsets(0);
        extra["data_offsets"] = serde_json::json!([data_len, data_len + extra_len]);
        h.insert("decoder.extra_head".into(), extra);
    });
    bytes.extend(vec![0; extra_len]);
    let text = error_text(&config(model), &bytes);
    for needle in [
        "missing tensor vision_model.post_layernorm.weight",
        "missing tensor text_model.encoder.layers.1.mlp.fc1.bias",
        "tensor text_projection.weight has shape [8, 16], expected [16, 8]",
        "unexpected tensors: decoder.extra_head",
        "test-weights",
    ] {
        assert!(text.contains(needle), "error lacks {needle:?}:\n{text}");
    }
}

#[test]
fn truncated_files_are_reported_as_truncated() {
    for model in ["clip-p16-quickgelu", "clip-p32-gelu-bin"] {
        let bytes = read(&weights_file(model));
        for keep in [bytes.len() * 2 / 3, 7, 100] {
            let text = error_text(&config(model), &bytes[..keep]);
            assert!(text.contains("test-weights"), "{model} cut at {keep}: {text}");
            assert!(
                text.contains("truncated") || text.contains("unrecognised") || text.contains("zip"),
                "{model} cut at {keep}: {text}"
            );
            assert_eq!(error_code(&config(model), &bytes[..keep]).0, "not-a-checkpoint", "{model} cut at {keep}");
        }
    }
}

#[test]
fn garbage_and_empty_files_are_refused() {
    let cfg = config("clip-p16-quickgelu");
    assert!(error_text(&cfg, b"").contains("empty"));
    assert!(error_text(&cfg, &[0x42; 4096]).contains("unrecognised"));
    for garbage in [&b""[..], &[0x42; 4096]] {
        assert_eq!(error_code(&cfg, garbage).0, "not-a-checkpoint");
    }
    // A zip that is not a PyTorch checkpoint.
    let bin = read(&weights_file("clip-p32-gelu-bin"));
    let mut broken = bin.clone();
    // Rename data.pkl in the local header and in the central directory.
    while let Some(at) = broken.windows(8).position(|w| w == b"data.pkl") {
        broken[at..at + 8].copy_from_slice(b"data.xxx");
    }
    let text = error_text(&config("clip-p32-gelu-bin"), &broken);
    assert!(text.contains("data.pkl") || text.contains("zip"), "{text}");
}

#[test]
fn a_wrong_architecture_is_named() {
    let weights = read(&weights_file("clip-p16-quickgelu"));
    let sam = r#"{"model_type": "sam", "architectures": ["SamModel"]}"#;
    let text = error_text(sam, &weights);
    assert!(text.contains("'sam'") && text.contains("CLIP") && text.contains("GroupViT"), "{text}");
    // Another architecture's config, or weights that do not fit the config's: both codes alike.
    assert_eq!(
        error_code(r#"{"model_type": "bert"}"#, &weights),
        ("wrong-architecture", error_text(r#"{"model_type": "bert"}"#, &weights))
    );
    assert_eq!(error_code(&config("groupvit-3stage"), &weights).0, "wrong-architecture");
    // A CLIP config whose sizes disagree with the weights: every layer is reported.
    let mut cfg: serde_json::Value = serde_json::from_str(&config("clip-p16-quickgelu")).unwrap();
    cfg["vision_config"]["hidden_size"] = 64.into();
    let text = error_text(&cfg.to_string(), &weights);
    assert!(
        text.contains("vision_model.encoder.layers.0.self_attn.q_proj.weight has shape [32, 32], expected [64, 64]"),
        "{text}"
    );
}

/// A config and weights of different architectures, either way round: the GroupViT loader names
/// the grouping tensors it misses, the CLIP loader the projection heads it does not know.
#[test]
fn groupvit_and_clip_files_mixed_up_are_named() {
    let clip_weights = read(&weights_file("clip-p16-quickgelu"));
    let text = error_text(&config("groupvit-3stage"), &clip_weights);
    assert!(
        text.contains("GroupViTModel") && text.contains("missing tensor vision_model.encoder.stages.0.group_token"),
        "{text}"
    );
    let groupvit_weights = read(&weights_file("groupvit-3stage"));
    let text = error_text(&config("clip-p16-quickgelu"), &groupvit_weights);
    assert!(text.contains("CLIPModel") && text.contains("unexpected tensors"), "{text}");
    // Stage lists of different lengths are a config error before any tensor is read.
    let mut cfg: serde_json::Value = serde_json::from_str(&config("groupvit-3stage")).unwrap();
    cfg["vision_config"]["num_group_tokens"] = serde_json::json!([10, 6]);
    let text = error_text(&cfg.to_string(), &groupvit_weights);
    assert!(text.contains("one entry per stage"), "{text}");
}

/// `semantic-colours` holds one model written both ways by tools/make_fixtures.py
/// (`save_file` and `torch.save` of the same state dict): both readers give the same tensors,
/// and the models they load embed alike.
#[test]
fn the_bin_and_safetensors_loaders_agree_on_the_same_weights() {
    let dir = fixtures().join("semantic-colours");
    let (st, bin) = (read(&dir.join("model.safetensors")), read(&dir.join("pytorch_model.bin")));
    let (a, b) = (Checkpoint::from_bytes(&st, "safetensors").unwrap(), Checkpoint::from_bytes(&bin, "bin").unwrap());
    let names: Vec<&str> = a.names().collect();
    assert_eq!(names, b.names().collect::<Vec<_>>(), "the same tensor names");
    assert!(names.len() > 10, "{} tensors", names.len());
    for name in &names {
        assert_eq!(a.get(name).unwrap().shape, b.get(name).unwrap().shape, "{name}");
        assert_eq!(a.read_f32(name).unwrap(), b.read_f32(name).unwrap(), "{name}");
    }
    let colours = config("semantic-colours");
    let texts = ["red", "a photo of a blue car."];
    let embed = |weights: &[u8]| {
        let model = try_load(&colours, weights).unwrap();
        common::to_vec(model.embed_texts(&texts).unwrap()).unwrap()
    };
    assert_eq!(embed(&st), embed(&bin));
    // The .bin fixtures carry the position_ids buffers of older hub files: ignored, not unexpected.
    let old = read(&weights_file("clip-p32-gelu-bin"));
    assert!(Checkpoint::from_bytes(&old, "bin").unwrap().names().any(|n| n == "text_model.embeddings.position_ids"));
    assert!(try_load(&config("clip-p32-gelu-bin"), &old).is_ok());
    // f16 weights convert exactly: every value is representable.
    let f16 = read(&weights_file("clip-p16-fp16"));
    let ckpt = Checkpoint::from_bytes(&f16, "f16").unwrap();
    assert_eq!(ckpt.float_dtype(), Some(wordmask::checkpoint::StoredDtype::F16));
    let w = ckpt.read_f32("visual_projection.weight").unwrap();
    assert!(w.iter().all(|v| half::f16::from_f32(*v).to_f32() == *v));
}

/// Loading checks the whole index first and reads nothing while doing so: a config that does not
/// fit its weights (here a ViT-L-sized one over the tiny fixture) fails after the checking pass
/// alone, with nothing uploaded; a fitting one is built a second time, for real.
#[test]
fn a_config_that_does_not_fit_is_refused_before_anything_is_uploaded() {
    use wordmask::clip::{ClipConfig, ClipModel};
    let device = wordmask::device::open(wordmask::Backend::Cpu).unwrap();
    let weights = read(&weights_file("clip-p16-quickgelu"));
    let checkpoint = Checkpoint::from_bytes(&weights, "tiny").unwrap();
    let passes = |config: &str| {
        let mut uploaded = Vec::new();
        let result = wordmask::loader::load(&checkpoint, &device, "CLIPModel", |loader| {
            let model = ClipModel::load(ClipConfig::from_json(config)?, loader);
            uploaded.push(loader.held.total());
            Ok(model)
        });
        (result.map(drop), uploaded)
    };
    let mut large: serde_json::Value = serde_json::from_str(&config("clip-p16-quickgelu")).unwrap();
    large["vision_config"] = serde_json::json!({"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24,
        "num_attention_heads": 16, "patch_size": 14, "image_size": 224});
    let (result, uploaded) = passes(&large.to_string());
    let err = result.unwrap_err().to_string();
    assert!(
        err.contains("vision_model.encoder.layers.0.mlp.fc1.weight has shape")
            && err.contains("missing tensor vision_model.encoder.layers.23"),
        "{err}"
    );
    assert_eq!(uploaded, vec![0], "one checking pass, nothing uploaded");
    let (result, uploaded) = passes(&config("clip-p16-quickgelu"));
    result.unwrap();
    assert_eq!(uploaded.len(), 2);
    assert_eq!(uploaded[0], 0, "the checking pass uploads nothing");
    // Every tensor once, in f32, but the logit scale (a number) and the position table's patch
    // rows, held twice (on the device, and on the host to be resampled).
    let size = |n: &str| checkpoint.get(n).unwrap().shape.iter().product::<usize>();
    let floats: usize =
        checkpoint.names().filter(|n| !n.ends_with("position_ids") && *n != "logit_scale").map(size).sum();
    let positions = size("vision_model.embeddings.position_embedding.weight");
    let class_row = size("vision_model.embeddings.class_embedding");
    let want = 4 * (floats + positions - class_row);
    if wordmask::device::avx512() {
        // Linear layers packed in panels of 64 columns, this fixture's narrow ones zero-padded.
        assert!(uploaded[1] > want && uploaded[1] < 2 * want, "{} bytes held for {want}", uploaded[1]);
    } else {
        assert_eq!(uploaded[1], want);
    }
}
