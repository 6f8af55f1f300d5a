//! `wordmask convert`: a checkpoint folder rewritten with its weights stored in half precision
//! (half the download and the page's cache; the precision of the compute is `--precision`'s), in
//! f32, or as int8 (`q8`: linear and convolution weights and token tables in optimum-quanto's
//! `qint8` layout, the rest f16): `config.json` and
//! `preprocessor_config.json` copied, every floating tensor converted into one
//! `model.safetensors`, what inference never reads (integer buffers such as `position_ids`, batch
//! norm's step counters) left out and listed.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};

use super::files::{ModelFiles, model_paths};
use wordmask::checkpoint::{Checkpoint, write_safetensors_as, write_safetensors_q8};
use wordmask::files::{check_model_folder, write_bytes};

#[derive(Clone, Copy, Debug, PartialEq, ValueEnum)]
pub enum Dtype {
    F16,
    F32,
    /// The weights of linear layers and convolutions as int8 with one f32 scale per output, and
    /// the text towers' token tables with one per row (in optimum-quanto's `qint8` layout:
    /// `<name>._data`, `<name>._scale`), the rest as f16.
    Q8,
}

#[derive(Args)]
pub struct ConvertArgs {
    /// The checkpoint folder (config.json and model.safetensors or pytorch_model.bin), of any
    /// architecture wordmask loads.
    #[arg(long)]
    model: String,
    /// Folder to write (created if missing; not the model's own folder, nor one that holds
    /// another model unless --force).
    #[arg(long, required_unless_present = "beside", conflicts_with = "beside")]
    out: Option<PathBuf>,
    /// With --dtype q8: write `model.q8.safetensors` into the model's own folder, beside its
    /// weights, which the page offers in their place ("int8 weights where the folder has
    /// them"); nothing else in the folder changes.
    #[arg(long)]
    beside: bool,
    /// Replace the model a folder already holds.
    #[arg(long)]
    force: bool,
    /// How the weights are stored.
    #[arg(long, value_enum, default_value = "f16")]
    dtype: Dtype,
    /// What --model is: a wordmask checkpoint folder (the default), or a MoCo v3 training
    /// checkpoint (`vit-b-300ep.pth.tar`, a file), rewritten as a ViTModel folder whose
    /// encoder serves as a vision-only backbone (`train fusioner --vision`).
    #[arg(long, value_enum)]
    from: Option<Source>,
    /// --from moco-v3: the ViT's number of heads (12 for MoCo v3's ViT-S and ViT-B, which is
    /// the default for their widths, 384 and 768).
    #[arg(long)]
    heads: Option<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, ValueEnum)]
pub enum Source {
    MocoV3,
}

pub fn run(args: ConvertArgs) -> Result<()> {
    if args.from == Some(Source::MocoV3) {
        return moco_v3(&args);
    }
    if args.heads.is_some() {
        bail!("--heads is for --from moco-v3");
    }
    if args.beside && args.dtype != Dtype::Q8 {
        bail!("--beside writes model.q8.safetensors: it goes with --dtype q8");
    }
    let files = ModelFiles::open(&args.model)?;
    let inputs = model_paths(&args.model);
    let beside = if args.beside {
        let folder = Path::new(&args.model);
        if !folder.is_dir() {
            bail!("--beside writes into the model's folder: --model {} is not a local folder", args.model);
        }
        let path = folder.join(Q8_BESIDE);
        if path.exists() && !args.force {
            bail!("{} exists: pass --force to replace it", path.display());
        }
        Some(path)
    } else {
        None
    };
    let out = args.out.clone().unwrap_or_default();
    if beside.is_none() {
        check_model_folder("--out", &out, &inputs.iter().map(PathBuf::as_path).collect::<Vec<_>>(), args.force)?;
    }
    let name = files.weights_path.display().to_string();
    let checkpoint = Checkpoint::from_bytes(files.weights(), &name)?;
    let mut names: Vec<&str> = checkpoint.names().collect();
    names.sort_unstable();
    let (mut tensors, mut left_out) = (Vec::new(), Vec::new());
    for name in names {
        let entry = checkpoint.get(name).expect("listed");
        // A quantised weight reads back dequantised (and is quantised again for q8).
        if entry.dtype.is_float() || checkpoint.is_quantized(name) {
            tensors.push((name.to_string(), entry.shape.clone(), checkpoint.read_finite_f32(name)?));
        } else {
            left_out.push(format!("{name} ({:?})", entry.dtype));
        }
    }
    let bytes = match args.dtype {
        Dtype::Q8 => write_safetensors_q8(&tensors)?,
        dtype => write_safetensors_as(&tensors, dtype == Dtype::F16)?,
    };
    // The written file reads back with the loader every command uses.
    Checkpoint::from_bytes(&bytes, "the converted model.safetensors").context("the written file does not read back")?;
    let written = match &beside {
        Some(path) => {
            write_bytes(path, &bytes)?;
            path.clone()
        }
        None => {
            let config =
                [("preprocessor_config.json", files.preprocessor.as_deref()), ("config.json", Some(&files.config))];
            write_model_folder(&out, &bytes, &config)?;
            out.clone()
        }
    };
    let mib = |n: usize| n as f64 / (1 << 20) as f64;
    println!(
        "wrote {}: {} tensors as {:?}, {:.1} MiB (from {:.1} MiB)",
        written.display(),
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

/// The name `--beside` gives int8 weights in the model's own folder (the page's choice).
pub const Q8_BESIDE: &str = "model.q8.safetensors";

/// A checkpoint folder written so that it never mixes two models: the weights first (the other
/// weights file removed), then each of `texts` in order (`None`: the file removed), config.json
/// last, each file whole or not at all.
pub fn write_model_folder(dir: &Path, weights: &[u8], texts: &[(&str, Option<&str>)]) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    write_bytes(&dir.join("model.safetensors"), weights)?;
    remove_if_present(&dir.join("pytorch_model.bin"))?;
    for (name, text) in texts {
        match text {
            Some(text) => write_bytes(&dir.join(name), text.as_bytes())?,
            None => remove_if_present(&dir.join(name))?,
        }
    }
    Ok(())
}

fn remove_if_present(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// `--from moco-v3`: the base encoder of a MoCo v3 checkpoint as a ViTModel folder.
fn moco_v3(args: &ConvertArgs) -> Result<()> {
    let path = Path::new(&args.model);
    if !path.is_file() {
        bail!("--model {}: a MoCo v3 checkpoint is one file (e.g. vit-b-300ep.pth.tar)", args.model);
    }
    if args.beside {
        bail!("--beside is for a checkpoint folder, not --from moco-v3");
    }
    let out = args.out.clone().unwrap_or_default();
    check_model_folder("--out", &out, &[path], args.force)?;
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", args.model))?;
    let checkpoint = Checkpoint::from_bytes(&bytes, &args.model)?;
    let (config, tensors) = wordmask::vit::moco::convert(&checkpoint, args.heads)?;
    let weights = match args.dtype {
        Dtype::Q8 => write_safetensors_q8(&tensors)?,
        dtype => write_safetensors_as(&tensors, dtype == Dtype::F16)?,
    };
    Checkpoint::from_bytes(&weights, "the converted model.safetensors")
        .context("the written file does not read back")?;
    let config = serde_json::to_string_pretty(&config)? + "\n";
    write_model_folder(&out, &weights, &[("preprocessor_config.json", None), ("config.json", Some(&config))])?;
    println!(
        "wrote {}: MoCo v3's base encoder as a ViTModel ({} tensors as {:?}; the momentum encoder, heads and optimiser state left out)",
        out.display(),
        tensors.len(),
        args.dtype
    );
    Ok(())
}
