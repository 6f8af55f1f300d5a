//! f16 compute on the GPU backend (`--precision f16`): weights and activations in half
//! precision, the kernels accumulating in f32. Each command runs in its own process, which opens
//! its own GPU device in the precision it asks for. On a machine without a GPU the device is
//! Mesa's llvmpipe, which has `shader-f16`; set WORDMASK_SKIP_WGPU=1 to skip these tests where
//! there is no wgpu device at all.

use crate::common;

use common::{Cli, Reference, Scene, agreement, all_close, fixtures, floats};

fn skip() -> bool {
    std::env::var("WORDMASK_SKIP_WGPU").as_deref() == Ok("1")
}

/// `--precision f16` on the GPU: text and image embeddings within 1e-2 of transformers' f32
/// ones, and not equal to them to 1e-6 (the half precision is really used).
#[test]
fn f16_embeddings_stay_within_1e_2_of_the_reference() {
    if skip() {
        return;
    }
    let name = "clip-p16-quickgelu";
    let model = fixtures().join(name);
    let texts: Vec<String> = serde_json::from_str(&std::fs::read_to_string(model.join("texts.json")).unwrap()).unwrap();
    let f16 = ["--backend", "wgpu", "--precision", "f16"];
    let out = Cli::new("embed-text").model(&model).args(f16).each("--text", &texts).json();
    let ours: Vec<f32> = out["embeddings"].as_array().unwrap().iter().flat_map(floats).collect();
    let reference = Reference::load(name);
    let want = reference.get("text_embeds").0;
    all_close("f16 text embeddings", &ours, &want, 1e-2, true).unwrap();
    assert!(all_close("f16 text embeddings", &ours, &want, 1e-6, false).is_err(), "f16 compute changed nothing");

    let image = fixtures().join("images/shapes_50x90.png");
    let out = Cli::new("embed-image").model(&model).image(&image).args(f16).json();
    let ours = floats(&out["embedding"]);
    let want = reference.get("crop.shapes_50x90.image_embeds").0;
    all_close("f16 image embedding", &ours, &want, 1e-2, true).unwrap();
    assert!(all_close("f16 image embedding", &ours, &want, 1e-6, false).is_err(), "f16 compute changed nothing");
}

/// The label map of every engine (each colour checkpoint, and the dense engine with PAMR on a
/// random-weight CLIP) computed in f16 on the GPU agrees with the f32 one of the CPU backend
/// on at least 99 % of the pixels.
#[test]
fn f16_label_maps_agree_with_f32_on_every_engine() {
    if skip() {
        return;
    }
    let dir = common::scratch("f16-engines");
    let scene = dir.join("scene.png");
    let labels = Scene::load().labels.join(", ");
    Scene::load().paint(&scene);
    let noise = common::noise_photo(&dir);
    let cases: [(&str, &std::path::Path, &str, &[&str]); 5] = [
        ("semantic-colours", &scene, &labels, &[]),
        ("semantic-colours-groupvit", &scene, &labels, &[]),
        ("semantic-colours-segclip", &scene, &labels, &["--short-side", "336"]),
        ("semantic-colours-fusioner", &scene, &labels, &[]),
        ("clip-p16-quickgelu", &noise, "cat, dog, car, tree, sky", &["--templates", "single", "--refine", "pamr"]),
    ];
    for (model, image, labels, extra) in cases {
        let map = |backend: &str, precision: &str| {
            let png = dir.join(format!("{model}-{precision}.png"));
            Cli::new("segment")
                .fixture(model)
                .image(image)
                .labels(labels)
                .out(&png)
                .args(["--backend", backend, "--precision", precision])
                .args(extra)
                .ok();
            image::open(&png).unwrap().to_luma8().into_raw()
        };
        let (full, half) = (map("cpu", "f32"), map("wgpu", "f16"));
        let agree = agreement(&full, &half);
        assert!(agree >= 0.99, "{model}: f16 label map agrees with f32 on {agree:.4} of the pixels");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// A click on each region of the colour scene with Segment Anything (sam-colours, named by
/// semantic-colours): the f16 mask agrees with the CPU's f32 one on at least 99 % of the pixels,
/// and the name is the same.
#[test]
fn f16_point_masks_agree_with_f32() {
    if skip() {
        return;
    }
    let dir = common::scratch("f16-sam");
    let input = dir.join("scene.png");
    let scene = Scene::load();
    scene.paint(&input);
    for region in &scene.regions {
        let probe = format!("{},{}", region.probe.0, region.probe.1);
        let click = |backend: &str, precision: &str| {
            let out = dir.join(format!("mask-{precision}.png"));
            let summary = common::colour_click(&scene, region, &input, &out)
                .args(["--backend", backend, "--precision", precision])
                .json();
            (image::open(&out).unwrap().to_luma8().into_raw(), summary["label"].clone())
        };
        let ((full, full_label), (half, half_label)) = (click("cpu", "f32"), click("wgpu", "f16"));
        let agree = agreement(&full, &half);
        assert!(agree >= 0.99, "click at {probe}: f16 mask agrees with f32 on {agree:.4} of the pixels");
        assert_eq!(half_label, full_label, "click at {probe}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// The bench names the precision, and f16 is refused where it cannot run.
#[test]
fn f16_is_named_where_used_and_refused_on_the_cpu() {
    if skip() {
        return;
    }
    let model = fixtures().join("clip-p16-quickgelu");
    for precision in ["f16", "f32"] {
        let out =
            Cli::new("bench").model(&model).args(["--iters", "1", "--backend", "wgpu", "--precision", precision]).ok();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(&format!("backend wgpu ({precision})")), "{text}");
    }
    let err =
        Cli::new("embed-text").model(&model).args(["--backend", "cpu", "--precision", "f16", "--text", "x"]).fails();
    assert!(err.contains("f16 compute is for the GPU backend"));
}
