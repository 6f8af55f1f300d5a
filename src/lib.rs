//! wordmask: open-vocabulary semantic segmentation that runs in a web page (WebGPU through
//! wgpu) and natively. This crate is the model core: checkpoints read from bytes, CLIP in
//! burn, the exact CLIP tokenizer and image preprocessing.

pub mod checkpoint;
pub mod clip;
pub mod dense;
pub mod device;
pub mod error;
pub mod groupvit;
pub mod labels;
pub mod loader;
pub mod metrics;
pub mod model;
pub mod preprocess;
pub mod segment;
pub mod tokenizer;

pub use device::Backend;
pub use error::{Error, Result};
pub use loader::ComputeDtype;

#[cfg(all(target_family = "wasm", feature = "web"))]
pub mod web;
