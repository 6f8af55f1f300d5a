//! Command-line interface: `classify`, `embed-text`, `embed-image`, `segment` (one photo, a folder
//! exported for labelling tools, or a video's frames), `merge-coco`, `sam`, `eval`, `bench`, `train`, `convert`.

mod bench;
mod convert;
mod eval;
mod files;
mod folder;
mod images;
mod merge_coco;
mod outputs;
mod sam;
mod sam_boxes;
mod segment;
mod settings;
mod train;
mod video;

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use serde_json::json;

use images::read_image;
use wordmask::device::{self, read};
use wordmask::network::Tokens;
use wordmask::segment::point::PromptModel;
use wordmask::segment::text::SINGLE;
use wordmask::segment::{ENGINES, ImageSize, Model};
use wordmask::{Backend, Precision, block_on, labels};

#[derive(Parser)]
#[command(
    name = "wordmask",
    version,
    about = "Type words, get masks: open-vocabulary segmentation with CLIP and GroupViT"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Zero-shot classification: probability of each label for an image.
    Classify {
        #[command(flatten)]
        model: ModelArgs,
        /// Image file (PNG or JPEG).
        #[arg(long)]
        image: String,
        /// Labels separated by commas or newlines; `a|b` are synonyms (the first is used).
        #[arg(long)]
        labels: String,
        /// Prompt template; `{}` is replaced by the label.
        #[arg(long, default_value = SINGLE[0])]
        template: String,
        #[arg(long)]
        json: bool,
    },
    /// L2-normalised, projected text embeddings, one row per --text.
    EmbedText {
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long, required = true)]
        text: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Image embedding and the shape of its tokens (CLIP: patches; GroupViT: final groups).
    EmbedImage {
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long)]
        image: String,
        /// Resize the short side to S and crop S x S (default: the checkpoint's preprocessing).
        #[arg(long)]
        size: Option<usize>,
        /// Keep the whole resized image instead of the centre crop.
        #[arg(long)]
        no_crop: bool,
        #[arg(long)]
        json: bool,
    },
    /// Segmentation: a label for every pixel (the checkpoint's engine).
    Segment(segment::SegmentArgs),
    /// Join COCO files of different images (the shards of `segment --images --shard`) into one.
    MergeCoco(merge_coco::MergeArgs),
    /// Point at an object (clicks, a box): its mask (Segment Anything), named by the words; or
    /// every box of a COCO file, as a COCO results file (--boxes).
    Sam(sam::SamArgs),
    /// mIoU over a dataset in its mmsegmentation folder layout.
    Eval(eval::EvalArgs),
    /// Time the image and text encoders (and segmentation) and print a table.
    Bench(bench::BenchArgs),
    /// Train a head: `train fusioner` fits Fusioner's fusion and decoder on a frozen CLIP.
    #[command(subcommand)]
    Train(train::TrainCommand),
    /// Rewrite a checkpoint folder with its weights stored as f16 (half the size; what it computes
    /// in is --precision's choice) or f32.
    Convert(convert::ConvertArgs),
    /// The settings of `segment`, `eval` and `bench`, and the engines, as the page reads them.
    #[command(hide = true)]
    Settings(settings::SettingsArgs),
    /// Turn the released SegCLIP checkpoint (segclip.bin) into a folder the other commands and
    /// the page load: config.json + model.safetensors.
    ConvertSegclip {
        /// The release's `segclip.bin` (a PyTorch state dict of `SegCLIP`).
        #[arg(long)]
        checkpoint: std::path::PathBuf,
        /// Folder to write (created if missing; not one that holds another model unless
        /// --force).
        #[arg(long)]
        out: std::path::PathBuf,
        /// Replace the model the folder already holds.
        #[arg(long)]
        force: bool,
        /// Attention heads of the vision tower (default: the groups of its key convolution, as the
        /// repository builds it).
        #[arg(long)]
        vision_heads: Option<usize>,
        /// Attention heads of the text tower (default: width / 64).
        #[arg(long)]
        text_heads: Option<usize>,
    },
}

#[derive(Args)]
pub struct ModelArgs {
    /// Model directory (config.json + model.safetensors or pytorch_model.bin), or a weights
    /// file next to its config.json.
    #[arg(long)]
    pub model: String,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

#[derive(Args, Clone, Copy)]
pub struct RuntimeArgs {
    /// Compute backend: auto (wgpu on a hardware GPU, else cpu), wgpu (Vulkan/Metal/DX12) or cpu.
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    backend: Backend,
    /// What the GPU backend computes in: auto (f16 on a hardware GPU with shader-f16, else
    /// f32), f32, or f16 (half the GPU memory; results within about 1e-2 of f32's).
    #[arg(long, value_enum, default_value_t = Precision::Auto)]
    precision: Precision,
}

impl RuntimeArgs {
    /// `auto` resolved to what this machine has.
    pub fn backend(&self) -> Backend {
        match self.backend {
            Backend::Auto => device::resolve_auto(),
            b => b,
        }
    }

    /// Open the device: the backend, and on the GPU the precision asked for.
    pub fn device(&self) -> Result<burn::tensor::Device> {
        let backend = self.backend();
        // `auto` precision means f32 on the CPU backend, which has no other.
        Ok(device::open_with(backend, self.precision)?)
    }
}

/// Load the checkpoint at `path` on the device `runtime` asks for.
pub fn load(path: &str, runtime: RuntimeArgs) -> Result<Model> {
    Ok(Model::open(path, &runtime.device()?)?)
}

/// A Segment Anything checkpoint for sharp edges.
pub fn load_prompt_model(dir: &str, runtime: RuntimeArgs) -> Result<PromptModel> {
    let device = runtime.device()?;
    PromptModel::open(dir, &device).context("loading the Segment Anything checkpoint of --sam")
}

/// The process's peak resident memory in MiB (`VmHWM`), where the system reports it (Linux).
pub fn peak_memory_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Every engine's defaults as flags, for the help of the commands that take segmentation
/// settings.
fn engine_defaults() -> String {
    let flag = |key: &str| {
        key.chars().fold(String::from("--"), |mut f, c| {
            if c.is_uppercase() {
                f.push('-');
            }
            f.push(c.to_ascii_lowercase());
            f
        })
    };
    let value = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(words) if words.is_empty() => "none".into(),
        serde_json::Value::Null => "off".into(),
        serde_json::Value::Array(words) => {
            format!("\"{}\"", words.iter().filter_map(|w| w.as_str()).collect::<Vec<_>>().join("; "))
        }
        other => other.to_string(),
    };
    let mut text = String::from("Unset settings take the defaults of the checkpoint's engine:");
    for engine in ENGINES {
        let defaults = engine.defaults();
        let pairs: Vec<String> = defaults
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(key, _)| key.as_str() != "engine")
            .map(|(key, v)| format!("{} {}", flag(key), value(v)))
            .collect();
        text.push_str(&format!("\n  {} ({} checkpoints): {}", engine.name(), engine.architecture(), pairs.join(", ")));
    }
    text
}

fn execute(cli: Cli) -> Result<()> {
    match cli.command {
        Command::ConvertSegclip { checkpoint, out, force, vision_heads, text_heads } => {
            wordmask::files::check_model_folder("--out", &out, &[&checkpoint], force)?;
            let bytes = std::fs::read(&checkpoint).with_context(|| format!("cannot read {}", checkpoint.display()))?;
            let converted = wordmask::segclip::convert::convert(
                &bytes,
                &checkpoint.display().to_string(),
                vision_heads,
                text_heads,
            )?;
            let config = [("preprocessor_config.json", None), ("config.json", Some(converted.config_json.as_str()))];
            convert::write_model_folder(&out, &converted.safetensors, &config)?;
            let v = &converted.config.clip.vision_config;
            println!(
                "wrote {}: {} tensors; vision {} wide, {} + {} blocks around {} centres, {} heads",
                out.display(),
                converted.written,
                v.hidden_size,
                converted.config.first_stage_layers,
                v.num_hidden_layers - converted.config.first_stage_layers,
                converted.config.num_group_tokens,
                v.num_attention_heads
            );
            for (prefix, count) in &converted.dropped {
                println!("  left out {count} tensors under {prefix} (pretraining only)");
            }
        }
        Command::Classify { model, image, labels, template, json } => {
            let labels = labels::parse(&labels)?;
            let m = load(&model.model, model.runtime)?;
            let probs = block_on(read(m.classify(&read_image(&image)?, &labels, &template)?))?;
            if json {
                let out: Vec<_> =
                    labels.iter().zip(&probs).map(|(l, p)| json!({"label": l.name, "probability": p})).collect();
                println!("{}", json!({ "labels": out }));
            } else {
                let mut order: Vec<usize> = (0..labels.len()).collect();
                order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
                for i in order {
                    println!("{:>7.2}%  {}", probs[i] * 100.0, labels[i].name);
                }
            }
        }
        Command::EmbedText { model, text, json } => {
            let m = load(&model.model, model.runtime)?;
            let refs: Vec<&str> = text.iter().map(String::as_str).collect();
            let emb = m.embed_texts(&refs)?;
            let dim = emb.dims()[1];
            let values = block_on(read(emb))?;
            let rows: Vec<&[f32]> = values.chunks(dim).collect();
            if json {
                println!("{}", json!({ "embeddings": rows }));
            } else {
                for (t, r) in text.iter().zip(&rows) {
                    println!("{t}: [{} values] {:?}...", r.len(), &r[..r.len().min(4)]);
                }
            }
        }
        Command::EmbedImage { model, image, size, no_crop, json } => {
            let m = load(&model.model, model.runtime)?;
            let f = m.embed_image(&read_image(&image)?, ImageSize { short_side: size, no_crop })?;
            let dim = f.embeds.dims()[1];
            let embedding = block_on(read(f.embeds))?;
            let (key, shape, text) = match f.tokens {
                Tokens::Patches { rows, cols } => {
                    ("patch_tokens_shape", vec![rows, cols, dim], format!("patch tokens: {rows} x {cols} x {dim}"))
                }
                Tokens::Groups { count } => {
                    ("group_tokens_shape", vec![count, dim], format!("group tokens: {count} x {dim}"))
                }
            };
            if json {
                println!("{}", json!({ "embedding": embedding, key: shape, "engine": m.engine() }));
            } else {
                println!("embedding: {dim} values {:?}...", &embedding[..dim.min(4)]);
                println!("{text}");
            }
        }
        Command::Segment(args) => segment::run(args)?,
        Command::Sam(args) => sam::run(args)?,
        Command::MergeCoco(args) => merge_coco::merge(args)?,
        Command::Eval(args) => eval::run(args)?,
        Command::Bench(args) => bench::run(args)?,
        Command::Convert(args) => convert::run(args)?,
        Command::Train(command) => train::run(command)?,
        Command::Settings(args) => settings::run(args),
    }
    Ok(())
}

pub fn run() -> ExitCode {
    let defaults = engine_defaults();
    let command = ["segment", "eval", "bench"]
        .into_iter()
        .fold(Cli::command(), |c, name| c.mut_subcommand(name, |s| s.after_help(defaults.clone())));
    let cli = match Cli::from_arg_matches(&command.get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match execute(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
