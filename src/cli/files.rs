//! A model's files on disk: the core's [`wordmask::model_files`], which the CLI's commands
//! share with every native user of the crate.

pub use wordmask::model_files::{ModelFiles, model_paths};
