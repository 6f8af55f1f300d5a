//! A model's files on disk (native only): a folder with `config.json`, the weights
//! (`model.safetensors` or `pytorch_model.bin`) and an optional `preprocessor_config.json`, as
//! the hub lays them out. The weights are mapped into memory, so a large checkpoint is paged
//! in, not copied; the loaders then read them as bytes, as the page does.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Weight file names, in the order they are looked for.
pub const WEIGHT_FILES: [&str; 2] = ["model.safetensors", "pytorch_model.bin"];

/// The files of one model, read.
pub struct ModelFiles {
    /// `config.json`'s text.
    pub config: String,
    /// `preprocessor_config.json`'s text, where the folder has one.
    pub preprocessor: Option<String>,
    /// The weights file that was opened.
    pub weights_path: PathBuf,
    weights: memmap2::Mmap,
}

impl ModelFiles {
    /// `path` is a folder holding `config.json` and weights, or a weights file whose folder
    /// holds `config.json`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let p = path.as_ref();
        if !p.exists() {
            return Err(Error::invalid(format!("model path {} does not exist", p.display())));
        }
        let (dir, weights_path) = if p.is_dir() {
            let found = WEIGHT_FILES.iter().map(|f| p.join(f)).find(|f| f.exists());
            let Some(w) = found else {
                return Err(Error::invalid(format!("{} holds neither {}", p.display(), WEIGHT_FILES.join(" nor "))));
            };
            (p.to_path_buf(), w)
        } else {
            (p.parent().unwrap_or(Path::new(".")).to_path_buf(), p.to_path_buf())
        };
        let config_path = dir.join("config.json");
        let config = std::fs::read_to_string(&config_path).map_err(|e| {
            Error::Io(format!("cannot read {} (every model needs its config.json): {e}", config_path.display()))
        })?;
        let preprocessor = std::fs::read_to_string(dir.join("preprocessor_config.json")).ok();
        let file =
            File::open(&weights_path).map_err(|e| Error::Io(format!("cannot open {}: {e}", weights_path.display())))?;
        // SAFETY: the map is read-only and lives as long as `ModelFiles`; a file changed by
        // another process while mapped can give wrong weights, never unsafety in our code.
        let weights = unsafe { memmap2::Mmap::map(&file) }
            .map_err(|e| Error::Io(format!("cannot map {} into memory: {e}", weights_path.display())))?;
        Ok(ModelFiles { config, preprocessor, weights_path, weights })
    }

    /// The weights file's bytes.
    pub fn weights(&self) -> &[u8] {
        &self.weights
    }

    /// The weights file's name as errors show it.
    pub fn weights_name(&self) -> String {
        self.weights_path.display().to_string()
    }
}

/// The files a model path names (its folder's `config.json`, `preprocessor_config.json` and
/// weights, or the weights file given): what no output may overwrite.
pub fn model_paths(path: impl AsRef<Path>) -> Vec<PathBuf> {
    let p = path.as_ref();
    let dir = if p.is_dir() { p } else { p.parent().unwrap_or(Path::new(".")) };
    let mut paths: Vec<PathBuf> = ["config.json", "preprocessor_config.json"].iter().map(|f| dir.join(f)).collect();
    paths.extend(WEIGHT_FILES.iter().map(|f| dir.join(f)));
    if !p.is_dir() {
        paths.push(p.to_path_buf());
    }
    paths
}
