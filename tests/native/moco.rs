//! MoCo v3's ViT as a vision-only backbone: `wordmask convert --from moco-v3` rewrites the
//! authors' training checkpoint (tests/fixtures/moco-v3-tiny, written by tools/moco_reference.py
//! with the repository's own `vits.py` and `moco/builder.py`) as a ViTModel folder, whose
//! features equal the base encoder's `forward_features` on both backends.

use std::path::Path;

use crate::common::{self, Cli, HIDDEN_REL_TOL, all_close, backends, to_vec};

use burn::tensor::{Tensor, TensorData};
use wordmask::checkpoint::Checkpoint;
use wordmask::loader;
use wordmask::vit::{VitConfig, VitModel};

fn checkpoint() -> std::path::PathBuf {
    common::fixtures().join("moco-v3-tiny/checkpoint.pth.tar")
}

/// The converted folder's features of the reference pixels on `device`.
fn features(dir: &Path, device: &burn::tensor::Device) -> Vec<f32> {
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let config = VitConfig::from_value(&config).unwrap();
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let weights = Checkpoint::from_bytes(&bytes, "model.safetensors").unwrap();
    let model = loader::load(&weights, device, "ViTModel", |l| Ok(VitModel::load(l, "", config.clone()))).unwrap();
    let (pixels, shape) = common::Reference::load("moco-v3-tiny").get("pixels");
    let pixels = Tensor::<4>::from_data(TensorData::new(pixels, [shape[0], shape[1], shape[2], shape[3]]), device);
    to_vec(model.forward(pixels).unwrap().0).unwrap()
}

#[test]
fn converted_moco_v3_matches_the_authors_encoder_on_both_backends() {
    let dir = common::scratch("moco");
    let (ours, wrong) = (dir.join("vit"), dir.join("two-heads"));
    Cli::new("convert")
        .model(checkpoint())
        .out(&ours)
        .args(["--from", "moco-v3", "--heads", "4", "--dtype", "f32"])
        .ok();
    // Negative control: the same weights read with the wrong number of heads.
    Cli::new("convert")
        .model(checkpoint())
        .out(&wrong)
        .args(["--from", "moco-v3", "--heads", "2", "--dtype", "f32"])
        .ok();
    let config = std::fs::read_to_string(ours.join("config.json")).unwrap();
    assert!(config.contains("\"layer_norm_eps\": 1e-6"), "{config}");
    let (reference, _) = common::Reference::load("moco-v3-tiny").get("last_hidden_state");
    for (backend, device) in backends() {
        all_close(
            &format!("{backend:?} last_hidden_state"),
            &features(&ours, &device),
            &reference,
            HIDDEN_REL_TOL,
            true,
        )
        .unwrap();
        let off = features(&wrong, &device);
        assert!(
            all_close("two heads", &off, &reference, HIDDEN_REL_TOL, true).is_err(),
            "{backend:?}: two heads passed"
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn moco_v3_conversion_says_what_it_cannot_do() {
    let dir = common::scratch("moco-errors");
    // The tiny ViT is 32 wide: its heads are not in the weights.
    let e = Cli::new("convert").model(checkpoint()).out(dir.join("a")).args(["--from", "moco-v3"]).fails();
    assert!(e.contains("give it (--heads)"), "{e}");
    let e =
        Cli::new("convert").model(checkpoint()).out(dir.join("b")).args(["--from", "moco-v3", "--heads", "5"]).fails();
    assert!(e.contains("5 heads do not divide the width 32"), "{e}");
    // A checkpoint of another kind.
    let bert = common::fixtures().join("bert-tiny/model.safetensors");
    let e = Cli::new("convert").model(&bert).out(dir.join("c")).args(["--from", "moco-v3", "--heads", "4"]).fails();
    assert!(e.contains("no cls_token"), "{e}");
    // A folder is not a MoCo v3 checkpoint.
    let e = Cli::new("convert").fixture("bert-tiny").out(dir.join("d")).args(["--from", "moco-v3"]).fails();
    assert!(e.contains("a MoCo v3 checkpoint is one file"), "{e}");
    let e = Cli::new("convert").fixture("bert-tiny").out(dir.join("e")).args(["--heads", "4"]).fails();
    assert!(e.contains("--heads is for --from moco-v3"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}
