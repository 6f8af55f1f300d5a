//! Finding a model's files on disk and mapping the weights into memory (so a large checkpoint
//! is paged in, not copied).

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Weight file names, in the order they are looked for.
const WEIGHT_FILES: [&str; 2] = ["model.safetensors", "pytorch_model.bin"];

pub struct ModelFiles {
    pub config: String,
    pub preprocessor: Option<String>,
    pub weights_path: PathBuf,
    weights: memmap2::Mmap,
}

impl ModelFiles {
    /// `path` is a directory holding `config.json` and weights, or a weights file whose
    /// directory holds `config.json`.
    pub fn open(path: &str) -> Result<Self> {
        let p = Path::new(path);
        if !p.exists() {
            bail!("model path {path} does not exist");
        }
        let (dir, weights_path) = if p.is_dir() {
            let found = WEIGHT_FILES.iter().map(|f| p.join(f)).find(|f| f.exists());
            let Some(w) = found else {
                bail!("{path} holds neither {}", WEIGHT_FILES.join(" nor "));
            };
            (p.to_path_buf(), w)
        } else {
            (p.parent().unwrap_or(Path::new(".")).to_path_buf(), p.to_path_buf())
        };
        let config_path = dir.join("config.json");
        let config = std::fs::read_to_string(&config_path)
            .with_context(|| format!("cannot read {} (every model needs its config.json)", config_path.display()))?;
        let preprocessor = std::fs::read_to_string(dir.join("preprocessor_config.json")).ok();
        let file = File::open(&weights_path).with_context(|| format!("cannot open {}", weights_path.display()))?;
        // SAFETY: the map is read-only and lives as long as `ModelFiles`; a file changed by
        // another process while mapped can give wrong weights, never unsafety in our code.
        let weights = unsafe { memmap2::Mmap::map(&file) }
            .with_context(|| format!("cannot map {} into memory", weights_path.display()))?;
        Ok(ModelFiles { config, preprocessor, weights_path, weights })
    }

    pub fn weights(&self) -> &[u8] {
        &self.weights
    }
}
/// The files a model path names (its folder's `config.json`, `preprocessor_config.json` and
/// weights, or the weights file given): what no output may overwrite.
pub fn model_paths(path: &str) -> Vec<PathBuf> {
    let p = Path::new(path);
    let dir = if p.is_dir() { p } else { p.parent().unwrap_or(Path::new(".")) };
    let mut paths: Vec<PathBuf> = ["config.json", "preprocessor_config.json"].iter().map(|f| dir.join(f)).collect();
    paths.extend(WEIGHT_FILES.iter().map(|f| dir.join(f)));
    if !p.is_dir() {
        paths.push(p.to_path_buf());
    }
    paths
}
