//! `wordmask convert`: a checkpoint folder rewritten with its weights stored in half precision
//! (half the download and the page's cache; the precision of the compute is `--precision`'s) or in f32: `config.json` and
//! `preprocessor_config.json` copied, every floating tensor converted into one
//! `model.safetensors`, what inference never reads (integer buffers such as `position_ids`, batch
//! norm's step counters) left out and listed.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};

use super::files::ModelFiles;
use wordmask::checkpoint::{Checkpoint, StoredDtype, write_safetensors_as};

#[derive(Clone, Copy, Debug, PartialEq, ValueEnum)]
pub enum Dtype {
    F16,
    F32,
}

#[derive(Args)]
pub struct ConvertArgs {
    /// The checkpoint folder (config.json and model.safetensors or pytorch_model.bin), of any
    /// architecture wordmask loads.
    #[arg(long)]
    model: String,
    /// Folder to write (created if missing; not the model's own folder).
    #[arg(long)]
    out: PathBuf,
    /// How the weights are stored.
    #[arg(long, value_enum, default_value = "f16")]
    dtype: Dtype,
}

pub fn run(args: ConvertArgs) -> Result<()> {
    let files = ModelFiles::open(&args.model)?;
    let source = files.weights_path.parent().map(std::path::Path::to_path_buf).unwrap_or_default();
    if args.out.canonicalize().ok().is_some_and(|out| source.canonicalize().ok() == Some(out)) {
        bail!("--out {} is the model's own folder: write the converted copy elsewhere", args.out.display());
    }
    let name = files.weights_path.display().to_string();
    let checkpoint = Checkpoint::from_bytes(files.weights(), &name)?;
    let mut names: Vec<&str> = checkpoint.names().collect();
    names.sort_unstable();
    let (mut tensors, mut left_out) = (Vec::new(), Vec::new());
    for name in names {
        let entry = checkpoint.get(name).expect("listed");
        if matches!(entry.dtype, StoredDtype::F32 | StoredDtype::F16 | StoredDtype::BF16 | StoredDtype::F64) {
            tensors.push((name.to_string(), entry.shape.clone(), checkpoint.read_f32(name)?));
        } else {
            left_out.push(format!("{name} ({:?})", entry.dtype));
        }
    }
    let bytes = write_safetensors_as(&tensors, args.dtype == Dtype::F16)?;
    // The written file reads back with the loader every command uses.
    Checkpoint::from_bytes(&bytes, "the converted model.safetensors").context("the written file does not read back")?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    std::fs::write(args.out.join("config.json"), &files.config)?;
    if let Some(pre) = &files.preprocessor {
        std::fs::write(args.out.join("preprocessor_config.json"), pre)?;
    }
    std::fs::write(args.out.join("model.safetensors"), &bytes)
        .with_context(|| format!("cannot write {}", args.out.join("model.safetensors").display()))?;
    let mib = |n: usize| n as f64 / (1 << 20) as f64;
    println!(
        "wrote {}: {} tensors as {:?}, {:.1} MiB (from {:.1} MiB)",
        args.out.display(),
        tensors.len(),
        args.dtype,
        mib(bytes.len()),
        mib(files.weights().len())
    );
    if !left_out.is_empty() {
        println!("  left out (not read by inference): {}", left_out.join(", "));
    }
    Ok(())
}
