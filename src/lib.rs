//! wordmask: open-vocabulary semantic segmentation that runs in a web page (WebGPU through
//! wgpu) and natively. This crate is the core, in layers that only import downwards
//! (docs/architecture.md lists them; `tools/check_layers.py` enforces the order):
//!
//! - `segment`: the engine layer, with the one entry [`segment::segment`] for words and the
//!   prompt engines' [`segment::point::PromptSession`] for clicks;
//! - `clip`, `groupvit`, `segclip`, `sam`, `ovsam`, `fusioner`, `vit`: the networks;
//! - `network`: what every network offers the engines;
//! - `nn`: the shared layers and their kernels;
//! - `video`: frames in (Y4M streams);
//! - `loader`, `checkpoint`, `preprocess`, `tokenizer`, `labels`, `metrics`, `device`,
//!   `clock`, `error`: loading, input and output.
//!
//! The core is written once, async: in the browser the page awaits it, natively (and in the
//! CPU-only web modules) [`block_on`] drives it.
//!
//! # Example
//!
//! Segment an image with typed words, natively (`examples/segment.rs` is the whole program,
//! `examples/point.rs` the same for a click):
//!
//! ```no_run
//! use wordmask::preprocess::RgbImage;
//! use wordmask::segment::{EmbeddingCache, Model, Settings, segment};
//! use wordmask::{Backend, block_on, device, labels};
//!
//! # fn main() -> wordmask::Result<()> {
//! // The GPU where there is one, else the CPU backend.
//! let device = device::open(Backend::Auto)?;
//! // A hub checkpoint folder: config.json and model.safetensors.
//! let model = Model::open("clip-vit-base-patch16", &device)?;
//! // Words separated by commas; synonyms of one word by `|`.
//! let labels = labels::parse("cat, sofa | couch, floor")?;
//! let (width, height) = (640, 480);
//! let image = RgbImage::new(width, height, vec![0; width * height * 3])?;
//! let mut cache = EmbeddingCache::default(); // the words' embeddings, reused across images
//! let out = block_on(segment(&model, &image, &labels, &Settings::default(), &mut cache))?;
//! // `label_map`: 0 for unlabelled, i + 1 for the i-th word, one per pixel.
//! let first = out.segmentation.label_map.get(0);
//! let (shares, unlabelled) = out.segmentation.shares();
//! for share in &shares {
//!     println!("{}: {:.1} %", share.label, 100.0 * share.share);
//! }
//! # let _ = (first, unlabelled);
//! # Ok(())
//! # }
//! ```
//!
//! # What is the API
//!
//! The entries above ([`segment::Model`], [`segment::segment`], [`segment::point`] and its
//! [`segment::point::PromptSession`], [`segment::export`]), their inputs ([`labels`],
//! [`preprocess::RgbImage`], [`device`], [`model_files`], [`checkpoint`]) and [`Error`] are
//! the API, and change only with the version as semver says. The networks (`clip`, `sam`, …)
//! and `loader` are public for those who build on a network directly and follow the
//! checkpoints' layouts. `nn` (the layers' kernels), `train` and `clock` serve the command
//! line and the tests: they are hidden from these docs and may change in any release.
//!
//! # Features
//!
//! - `wgpu` (default): the GPU backend (WebGPU in the browser; Vulkan, Metal or DX12
//!   natively);
//! - `cpu` (default): the pure-Rust CPU backend, which a user without a GPU needs alone:
//!   `wordmask = { version = "0.1", default-features = false, features = ["cpu"] }`;
//! - `cli` (default): the `wordmask` command line;
//! - `web`, `threads`, `relaxed`: the browser bindings and the web build's CPU modules
//!   (`./build.sh`).
// burn slices with arrays of ranges, one per axis: `[i..i + 1]` is a one-axis slice, not a
// vector of one range.
#![allow(clippy::single_range_in_vec_init)]

pub mod bert;
pub mod checkpoint;
pub mod clip;
#[doc(hidden)]
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
#[cfg(not(target_family = "wasm"))]
pub mod model_files;
pub mod network;
#[doc(hidden)]
pub mod nn;
pub mod ovsam;
pub mod preprocess;
pub mod sam;
pub mod segclip;
pub mod segment;
pub mod tokenizer;
#[cfg(not(target_family = "wasm"))]
#[doc(hidden)]
pub mod train;
pub mod video;
pub mod vit;

pub use device::{Backend, Precision, block_on};
pub use error::{Error, Result};

#[cfg(all(target_family = "wasm", feature = "web"))]
pub mod web;
