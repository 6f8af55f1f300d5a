//! Shared test helpers: fixture paths, backends, and an `all_close` that says why it failed.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use wordmask::Backend;
use wordmask::checkpoint::Checkpoint;

/// Normalised embeddings: the bound for f32 parity with transformers.
pub const EMBED_TOL: f32 = 1e-4;
/// Raw hidden states grow with depth; compare them relative to their magnitude.
pub const HIDDEN_REL_TOL: f32 = 1e-4;

pub const MODELS: [&str; 3] = ["clip-p16-quickgelu", "clip-p32-gelu-bin", "clip-p16-fp16"];
pub const IMAGES: [&str; 3] = ["gradient_80x64", "shapes_50x90", "noise_75x75"];

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A fresh scratch directory for one test (removed by the test when it passes).
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wordmask-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn weights_file(model: &str) -> PathBuf {
    let dir = fixtures().join(model);
    ["model.safetensors", "pytorch_model.bin"]
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.exists())
        .expect("fixture weights")
}

pub fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every backend the parity tests run on. wgpu is required (CI installs Mesa's llvmpipe
/// Vulkan driver); set WORDMASK_SKIP_WGPU=1 to run the CPU half alone on a machine without one.
pub fn backends() -> Vec<(Backend, Device)> {
    let mut out = vec![(Backend::Cpu, wordmask::device::open(Backend::Cpu).expect("cpu device"))];
    if std::env::var("WORDMASK_SKIP_WGPU").as_deref() != Ok("1") {
        let device = wordmask::device::open(Backend::Wgpu)
            .unwrap_or_else(|e| panic!("{e}\n(set WORDMASK_SKIP_WGPU=1 to skip the wgpu half of the tests)"));
        out.push((Backend::Wgpu, device));
    }
    out
}

/// Reference outputs written by tools/make_fixtures.py.
pub struct Reference {
    pub bytes: Vec<u8>,
}

impl Reference {
    pub fn load(model: &str) -> Self {
        Reference { bytes: read(&fixtures().join(model).join("reference.safetensors")) }
    }

    pub fn get(&self, name: &str) -> (Vec<f32>, Vec<usize>) {
        let ckpt = Checkpoint::from_bytes(&self.bytes, "reference.safetensors").unwrap();
        let shape = ckpt.get(name).unwrap_or_else(|| panic!("reference has no {name}")).shape.clone();
        (ckpt.read_f32(name).unwrap(), shape)
    }
}

/// `Ok` when every `|ours - reference| <= tol * max(1, |reference|)` (relative) or
/// `<= tol` (absolute); otherwise a message with the worst element, both values and where.
pub fn all_close(what: &str, ours: &[f32], reference: &[f32], tol: f32, relative: bool) -> Result<(), String> {
    if ours.len() != reference.len() {
        return Err(format!("{what}: {} values, reference has {}", ours.len(), reference.len()));
    }
    let mut worst = (0usize, 0f32);
    for (i, (a, b)) in ours.iter().zip(reference).enumerate() {
        let scale = if relative { b.abs().max(1.0) } else { 1.0 };
        let err = (a - b).abs() / scale;
        if !err.is_finite() || err > worst.1 {
            worst = (i, if err.is_finite() { err } else { f32::INFINITY });
        }
    }
    if worst.1 <= tol {
        return Ok(());
    }
    let i = worst.0;
    Err(format!(
        "{what}: max {} error {:.3e} > {tol:.0e} at flat index {i}: ours {} vs reference {}",
        if relative { "relative" } else { "absolute" },
        worst.1,
        ours[i],
        reference[i]
    ))
}
