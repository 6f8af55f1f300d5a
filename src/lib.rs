//! wordmask: open-vocabulary semantic segmentation that runs in a web page (WebGPU through
//! wgpu) and natively. This crate is the core, in layers that only import downwards
//! (docs/architecture.md lists them; `tools/check_layers.py` enforces the order):
//!
//! - `segment`: the engine layer, with the one entry [`segment::segment`] for words and the
//!   prompt engines' [`segment::point::PromptSession`] for clicks;
//! - `clip`, `groupvit`, `segclip`, `sam`, `ovsam`, `fusioner`, `vit`: the networks;
//! - `network`: what every network offers the engines;
//! - `nn`: the shared layers and their kernels;
//! - `loader`, `checkpoint`, `preprocess`, `tokenizer`, `labels`, `metrics`, `device`,
//!   `clock`, `error`: loading, input and output.
//!
//! The core is written once, async: in the browser the page awaits it, natively (and in the
//! CPU-only web modules) [`block_on`] drives it.
// burn slices with arrays of ranges, one per axis: `[i..i + 1]` is a one-axis slice, not a
// vector of one range.
#![allow(clippy::single_range_in_vec_init)]

pub mod checkpoint;
pub mod clip;
pub mod clock;
#[cfg(not(target_family = "wasm"))]
pub mod dataset;
pub mod device;
pub mod error;
#[cfg(not(target_family = "wasm"))]
pub mod files;
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

pub use device::{Backend, Precision, block_on};
pub use error::{Error, Result};

#[cfg(all(target_family = "wasm", feature = "web"))]
pub mod web;
