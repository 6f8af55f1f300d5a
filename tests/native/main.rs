//! The native tests, in one test binary: each file is a module (the parity tests, the CLI, the
//! README's bad-input table, training, ...), so the burn and wgpu code is linked once rather
//! than once per file, and the modules' tests share one pool of test threads.
//!
//! `cargo test --release --test native` runs them all; a module's name filters, e.g.
//! `cargo test --release --test native parity_sam::`.

mod common;

mod bad_input;
mod bert;
mod cli;
mod exports;
mod f16;
mod fss;
mod fuzz_regressions;
mod hostile_files;
mod images;
mod loading;
mod moco;
mod outputs;
mod parity_automatic;
mod parity_clip;
mod parity_dense;
mod parity_dense_methods;
mod parity_dense_protocol;
mod parity_fusioner;
mod parity_groupvit;
mod parity_ovsam;
mod parity_sam;
mod parity_segclip;
mod preprocess;
mod q8;
mod sam_boxes;
mod semantic;
mod sharp_edges;
mod tokenizer;
mod train;
mod video;
