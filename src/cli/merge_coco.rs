//! `wordmask merge-coco`: COCO instances files of different images (the parts of a folder run
//! with `--shard`) joined into one, as the undivided run writes it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;

use wordmask::files::{Output, check_outputs, write_bytes};
use wordmask::segment::export::coco::{self, CocoFile};

pub fn read_coco(path: &Path) -> Result<CocoFile> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("{} is not a COCO instances file", path.display()))
}

pub fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    Ok(write_bytes(path, &serde_json::to_vec(value)?)?)
}

#[derive(Args)]
pub struct MergeArgs {
    /// COCO instances files of different images with the same categories (e.g. the
    /// coco.shard-I-of-N.json of each part).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// The merged file (.json).
    #[arg(long)]
    out: PathBuf,
    /// Also the merged annotations as a results file (.json), as COCO.loadRes reads it.
    #[arg(long)]
    results: Option<PathBuf>,
}

pub fn merge(args: MergeArgs) -> Result<()> {
    let json = |option, path| Output { option, path, extensions: &["json"], what: "a COCO file", why: "" };
    let mut targets = vec![json("--out", args.out.as_path())];
    targets.extend(args.results.as_deref().map(|p| json("--results", p)));
    check_outputs(&targets, &args.files.iter().map(PathBuf::as_path).collect::<Vec<_>>())?;
    let files: Vec<CocoFile> = args.files.iter().map(|f| read_coco(f)).collect::<Result<_>>()?;
    let merged = coco::merge(&files)?;
    write_json(&args.out, &merged)?;
    if let Some(path) = &args.results {
        write_json(path, &coco::results(&merged))?;
    }
    println!(
        "{} images, {} annotations, {} categories; wrote {}",
        merged.images.len(),
        merged.annotations.len(),
        merged.categories.len(),
        args.out.display()
    );
    Ok(())
}
