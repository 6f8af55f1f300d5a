//! Command-line interface: `classify`, `embed-text`, `embed-image`, `segment`, `eval`, `bench`.

mod bench;
mod eval;
mod files;
mod outputs;
mod segment;

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use serde_json::json;

use wordmask::device::{self, to_vec};
use wordmask::model::{ImageSize, Model, SINGLE_TEMPLATE};
use wordmask::{Backend, ComputeDtype, labels};

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
        #[arg(long, default_value = SINGLE_TEMPLATE)]
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
    /// Segmentation: a label for every pixel (dense CLIP or GroupViT engine).
    Segment(segment::SegmentArgs),
    /// mIoU over a dataset in its mmsegmentation folder layout.
    Eval(eval::EvalArgs),
    /// Time the image and text encoders and print a table.
    Bench(bench::BenchArgs),
}

#[derive(Args)]
pub struct ModelArgs {
    /// Model directory (config.json + model.safetensors or pytorch_model.bin), or a weights
    /// file next to its config.json.
    #[arg(long)]
    model: String,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

#[derive(Args, Clone, Copy)]
pub struct RuntimeArgs {
    /// Compute backend: auto (wgpu on a hardware GPU, else cpu), wgpu (Vulkan/Metal/DX12) or cpu.
    #[arg(long, default_value = "auto")]
    backend: Backend,
    /// Compute precision (weights are converted on load).
    #[arg(long, default_value = "f32")]
    dtype: ComputeDtype,
}

pub fn load(args: &ModelArgs) -> Result<Model> {
    let files = files::ModelFiles::open(&args.model)?;
    let device = device::open(args.runtime.backend)?;
    let model = Model::from_bytes(
        &files.config,
        files.weights(),
        &files.weights_path.display().to_string(),
        files.preprocessor.as_deref(),
        &device,
        args.runtime.dtype,
    )?;
    Ok(model)
}

pub fn read_image(path: &str) -> Result<wordmask::preprocess::RgbImage> {
    let img = image::open(path).with_context(|| format!("cannot read image {path}"))?.to_rgb8();
    let (w, h) = (img.width() as usize, img.height() as usize);
    Ok(wordmask::preprocess::RgbImage::new(w, h, img.into_raw()).with_context(|| format!("image {path}"))?)
}

fn rows(flat: Vec<f32>, width: usize) -> Vec<Vec<f32>> {
    flat.chunks(width).map(<[f32]>::to_vec).collect()
}

fn execute(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Classify { model, image, labels, template, json } => {
            let labels = labels::parse(&labels)?;
            let m = load(&model)?;
            let image = m.embed_image(&read_image(&image)?, ImageSize::default())?;
            let text = m.embed_labels(&labels, &template)?;
            let probs = to_vec(m.classify(image.embeds, text))?;
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
            let m = load(&model)?;
            let refs: Vec<&str> = text.iter().map(String::as_str).collect();
            let emb = m.embed_texts(&refs)?;
            let dim = emb.dims()[1];
            let rows = rows(to_vec(emb)?, dim);
            if json {
                println!("{}", json!({ "embeddings": rows }));
            } else {
                for (t, r) in text.iter().zip(&rows) {
                    println!("{t}: [{} values] {:?}...", r.len(), &r[..r.len().min(4)]);
                }
            }
        }
        Command::EmbedImage { model, image, size, no_crop, json } => {
            let m = load(&model)?;
            let f = m.embed_image(&read_image(&image)?, ImageSize { short_side: size, no_crop })?;
            let dim = f.embeds.dims()[1];
            let embedding = to_vec(f.embeds)?;
            let (kind, a, b) = f.tokens;
            if json {
                let shape = if kind == "patch" { vec![a, b, dim] } else { vec![a, dim] };
                println!(
                    "{}",
                    json!({ "embedding": embedding, format!("{kind}_tokens_shape"): shape, "engine": m.engine() })
                );
            } else {
                println!("embedding: {dim} values {:?}...", &embedding[..dim.min(4)]);
                if kind == "patch" {
                    println!("patch tokens: {a} x {b} x {dim}");
                } else {
                    println!("group tokens: {a} x {dim}");
                }
            }
        }
        Command::Segment(args) => segment::run(args)?,
        Command::Eval(args) => eval::run(args)?,
        Command::Bench(args) => bench::run(args)?,
    }
    Ok(())
}

pub fn run() -> ExitCode {
    let cli = Cli::parse();
    match execute(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
