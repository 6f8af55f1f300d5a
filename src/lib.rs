//! wordmask: open-vocabulary semantic segmentation that runs in a web page (WebGPU through
//! wgpu) and natively. This crate is the core, in layers that only import downwards (the
//! README's "How it is built" lists them; `tools/check_layers.py` enforces the order):
//!
//! - `segment`: the engine layer, with the one entry [`segment::segment`];
//! - `clip`, `groupvit`: the networks;
//! - `network`: what every network offers the engines;
//! - `nn`: the shared layers;
//! - `loader`, `checkpoint`, `preprocess`, `tokenizer`, `labels`, `metrics`, `device`,
//!   `error`: loading, input and output.

pub mod checkpoint;
pub mod clip;
pub mod device;
pub mod error;
pub mod fusioner;
pub mod groupvit;
pub mod labels;
pub mod loader;
pub mod metrics;
pub mod network;
pub mod nn;
pub mod ovsam;
pub mod preprocess;
pub mod sam;
pub mod segclip;
pub mod segment;
pub mod tokenizer;
#[cfg(not(target_family = "wasm"))]
pub mod train;
pub mod vit;

pub use device::{Backend, Precision};
pub use error::{Error, Result};

#[cfg(all(target_family = "wasm", feature = "web"))]
pub mod web;
