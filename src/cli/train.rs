//! `wordmask train fusioner`: train Fusioner's fusion transformer and decoder on frozen encoders
//! (a CLIP, or a vision-only ViT, with a CLIP's text tower or a BERT) with a segmentation
//! dataset, writing a checkpoint folder after every epoch.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};

use super::files::{ModelFiles, model_paths};
use super::images::read_label_png;
use super::read_image;
use wordmask::bert::{Pooling, WordPiece};
use wordmask::checkpoint::Checkpoint;
use wordmask::dataset::{Format, Sample, Split, fold_classes, samples};
use wordmask::files::check_model_folder;
use wordmask::fusioner::{Backbone, COCO_MEAN, COCO_STD, FusionConfig, Named, NewHead, PASCAL_MEAN, PASCAL_STD};
use wordmask::labels::parse_class_file;
use wordmask::preprocess::RgbImage;
use wordmask::train::{Event, FeatureCache, Hyper, Samples, TrainOptions, WeightSource, fit};
use wordmask::{Backend, device};

#[derive(Subcommand)]
pub enum TrainCommand {
    /// Fusioner: a light fusion transformer and decoder on a frozen CLIP, trained on a
    /// segmentation dataset (no public Fusioner weights exist).
    #[command(args_override_self = true)]
    Fusioner(FusionerArgs),
}

/// Which dataset datasets the training layouts are (a subset of eval's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TrainFormat {
    /// PASCAL VOC 2012: JPEGImages, SegmentationClass(Aug), ImageSets/Segmentation/train.txt.
    Voc21,
    /// COCO-Object: images/train2017, annotations/train2017/*_instanceTrainIds.png.
    CocoObject,
    /// DIR/images/* with DIR/labels/<stem>.png (value = line of --classes, 255 ignored);
    /// DIR/train.txt (stems) picks the training images when present.
    Folder,
}

impl TrainFormat {
    fn eval_format(self) -> Format {
        match self {
            TrainFormat::Voc21 => Format::Voc21,
            TrainFormat::CocoObject => Format::CocoObject,
            TrainFormat::Folder => Format::Folder,
        }
    }
}

/// The image statistics the head is trained with (and evaluated with: they go into the
/// checkpoint's config).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Stats {
    /// The repository's PASCAL preset.
    Pascal,
    /// The repository's COCO preset.
    Coco,
    /// CLIP's own.
    Clip,
}

#[derive(Args)]
pub struct FusionerArgs {
    /// The frozen image encoder: a CLIP checkpoint (config.json + weights; its text tower is
    /// the text encoder too unless --text names a BERT), a vision-only ViT (`model_type: vit`,
    /// e.g. DINO or MoCo v3; needs --text), or a Fusioner checkpoint to go on from (its
    /// encoders and its head).
    #[arg(long)]
    backbone: String,
    /// The text encoder that embeds the class names: a CLIP checkpoint (only its text tower is
    /// read; with a ViT backbone) or a BERT folder in transformers' BertModel layout
    /// (`model_type: bert`, with vocab.txt or tokenizer.json; with a ViT or CLIP backbone).
    #[arg(long)]
    text: Option<String>,
    /// How a BERT text encoder turns a prompt into one vector: cls (the pooler's output,
    /// tanh of a linear map of the [CLS] token) or mean (the last layer averaged over every
    /// token) [default: mean]
    #[arg(long, value_enum)]
    text_pooling: Option<Pooling>,
    /// Dataset root in the format's layout.
    #[arg(long)]
    dataset: PathBuf,
    #[arg(long, value_enum)]
    format: TrainFormat,
    /// Class-name file, one class per line (line k = label value k); default: the format's list.
    #[arg(long)]
    classes: Option<PathBuf>,
    /// Class names that are never trained, separated by commas (voc21 and coco-object never
    /// train class 0, their background, whatever this says).
    #[arg(long, default_value = "background")]
    background_class: String,
    /// Hold out the classes of this fold (PASCAL-5i for voc21, COCO-20i for coco-object):
    /// train on the others, then `wordmask eval --fold N` scores the held-out ones.
    #[arg(long)]
    fold: Option<usize>,
    /// Folder to write: config.json, model.safetensors, optimizer.safetensors,
    /// train_state.json, and the feature cache.
    #[arg(long)]
    out: PathBuf,
    /// Where the frozen features are cached (default OUT/cache).
    #[arg(long)]
    cache: Option<PathBuf>,
    /// Go on from the state in OUT.
    #[arg(long)]
    resume: bool,
    /// Start afresh in an OUT that already holds a model (its checkpoint is replaced).
    #[arg(long, conflicts_with = "resume")]
    force: bool,
    /// Image statistics (default: pascal, coco for coco-object).
    #[arg(long, value_enum)]
    stats: Option<Stats>,
    /// Square crops the head trains on and evaluates with (default: the image encoder's input
    /// size; a multiple of its patch size).
    #[arg(long)]
    crop: Option<usize>,
    /// Fusion transformer width.
    #[arg(long, default_value_t = 512)]
    width: usize,
    #[arg(long, default_value_t = 12)]
    layers: usize,
    #[arg(long, default_value_t = 8)]
    heads: usize,
    /// MLP width (default 4 x width).
    #[arg(long)]
    mlp: Option<usize>,
    /// Epochs in all, warm-up included (the repository: 10 + 500).
    #[arg(long, default_value_t = 510)]
    epochs: usize,
    #[arg(long, default_value_t = 10)]
    warmup_epochs: usize,
    /// Tasks (image, class) per optimiser step.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Tasks per forward pass; gradients are accumulated over a step.
    #[arg(long, default_value_t = 4)]
    micro_batch: usize,
    #[arg(long, default_value_t = 1e-3)]
    fusion_lr: f64,
    #[arg(long, default_value_t = 2e-6)]
    fusion_min_lr: f64,
    #[arg(long, default_value_t = 1e-3)]
    decoder_lr: f64,
    #[arg(long, default_value_t = 0.01)]
    wd: f64,
    #[arg(long, default_value_t = 0.4)]
    wd_end: f64,
    /// Augmented views cached per image (random resized crop, flip); 0 = the image resized
    /// to the crop, unaugmented.
    #[arg(long, default_value_t = 4)]
    views: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Train on the first N images only.
    #[arg(long)]
    limit: Option<usize>,
    /// Compute backend: auto, wgpu or cpu.
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    backend: Backend,
}

/// Image and label files, read when asked.
struct Files(Vec<Sample>);

impl Samples for Files {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn name(&self, i: usize) -> String {
        self.0[i].image.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
    }

    fn fingerprint(&self, i: usize) -> String {
        let s = &self.0[i];
        format!("{}|{}", file_fingerprint(&s.image), file_fingerprint(&s.label))
    }

    fn load(&self, i: usize) -> wordmask::Result<(RgbImage, Vec<u8>)> {
        let s = &self.0[i];
        let image =
            read_image(&s.image.to_string_lossy()).map_err(|e| wordmask::Error::InvalidInput(format!("{e:#}")))?;
        let (w, h, label) = read_label_png(&s.label).map_err(|e| wordmask::Error::InvalidInput(format!("{e:#}")))?;
        if (w, h) != (image.width, image.height) {
            return Err(wordmask::Error::InvalidInput(format!(
                "{} is {w}x{h} but its image is {}x{}",
                s.label.display(),
                image.width,
                image.height
            )));
        }
        Ok((image, label))
    }
}

/// The WordPiece vocabulary of a BERT folder (or of the folder of a BERT weights file).
fn bert_vocabulary(path: &str) -> Result<WordPiece> {
    let p = std::path::Path::new(path);
    let dir = if p.is_dir() { p } else { p.parent().unwrap_or(std::path::Path::new(".")) };
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).ok();
    let (vocab, json, config) = (read("vocab.txt"), read("tokenizer.json"), read("tokenizer_config.json"));
    Ok(WordPiece::from_folder_files(vocab.as_deref(), json.as_deref(), config.as_deref())?)
}

/// A file's absolute path, size and modification time, for the feature cache's key.
fn file_fingerprint(path: &std::path::Path) -> String {
    let meta = std::fs::metadata(path).ok();
    let modified = meta
        .as_ref()
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let absolute = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    format!("{}:{}:{modified}", absolute.display(), meta.map_or(0, |m| m.len()))
}

fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    if s >= 3600 { format!("{}h{:02}m", s / 3600, s / 60 % 60) } else { format!("{}m{:02}s", s / 60, s % 60) }
}

/// The class names, and the class values trained: every class but the format's background
/// (class 0 of voc21 and coco-object), the `--background-class` names and a held-out fold.
fn classes(args: &FusionerArgs, format: Format) -> Result<(Vec<String>, Vec<u8>)> {
    let classes = match (&args.classes, format.classes()) {
        (Some(path), _) => parse_class_file(
            &std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?,
        )?,
        (None, Some(text)) => parse_class_file(text)?,
        (None, None) => bail!("--format folder needs --classes FILE"),
    };
    let names: Vec<String> =
        classes.iter().map(|l| l.synonyms.first().cloned().unwrap_or_else(|| l.name.clone())).collect();
    let never: Vec<&str> = args.background_class.split(',').map(str::trim).collect();
    let mut trained: Vec<u8> = (0..names.len())
        .filter(|&v| {
            let background = v == 0 && format != Format::Folder;
            !background && !classes[v].synonyms.iter().any(|s| never.contains(&s.as_str()))
        })
        .map(|v| v as u8)
        .collect();
    if let Some(fold) = args.fold {
        let held = fold_classes(format, fold)?;
        trained.retain(|v| !held.contains(v));
        eprintln!("fold {fold}: {} classes held out, {} trained", held.len(), trained.len());
    }
    Ok((names, trained))
}

/// The image statistics asked for (default: PASCAL's, COCO's for coco-object).
fn stats(args: &FusionerArgs, format: Format) -> ([f32; 3], [f32; 3]) {
    match args.stats.unwrap_or(if format == Format::CocoObject { Stats::Coco } else { Stats::Pascal }) {
        Stats::Pascal => (PASCAL_MEAN, PASCAL_STD),
        Stats::Coco => (COCO_MEAN, COCO_STD),
        Stats::Clip => (wordmask::preprocess::CLIP_MEAN, wordmask::preprocess::CLIP_STD),
    }
}

fn options(args: &FusionerArgs, names: Vec<String>, trained: Vec<u8>) -> TrainOptions {
    TrainOptions {
        hyper: Hyper {
            fusion_lr: args.fusion_lr,
            fusion_min_lr: args.fusion_min_lr,
            decoder_lr: args.decoder_lr,
            wd: args.wd,
            wd_end: args.wd_end,
            warmup_epochs: args.warmup_epochs,
            epochs: args.epochs,
            ..Hyper::default()
        },
        batch_size: args.batch_size,
        micro_batch: args.micro_batch,
        views: args.views,
        seed: args.seed,
        trained,
        class_names: names,
    }
}

/// Training's events as progress lines on stderr (caching, steps with an ETA, epochs).
fn progress_printer() -> impl FnMut(Event) {
    let start = Instant::now();
    let mut step_start: Option<(Instant, usize)> = None;
    move |event: Event| {
        match event {
            Event::Caching { done, total, cached } => {
                if cached {
                    eprintln!("features of {total} views found in the cache");
                } else {
                    let rate = start.elapsed().as_secs_f64() / done as f64;
                    eprint!(
                        "\rcaching frozen features {done}/{total}  eta {}   ",
                        duration(rate * (total - done) as f64)
                    );
                    if done == total {
                        eprintln!();
                    }
                }
            }
            Event::Step { epoch, epochs, step, steps, loss, lr } => {
                let global = epoch * steps + step;
                let (t0, g0) = *step_start.get_or_insert((Instant::now(), global));
                let done = global + 1 - g0;
                let left = epochs * steps - global - 1;
                let eta = t0.elapsed().as_secs_f64() / done as f64 * left as f64;
                eprint!(
                    "\repoch {}/{epochs} step {}/{steps}  loss {loss:.4}  lr {lr:.2e}  eta {}   ",
                    epoch + 1,
                    step + 1,
                    duration(eta)
                );
            }
            Event::Epoch { epoch, loss, checkpoint } => {
                eprintln!("\repoch {} done: mean loss {loss:.4}, checkpoint in {}", epoch + 1, checkpoint.display());
            }
        }
        std::io::stderr().flush().ok();
    }
}

pub fn run(command: TrainCommand) -> Result<()> {
    let TrainCommand::Fusioner(args) = command;
    let format = args.format.eval_format();
    let (names, trained) = classes(&args, format)?;
    if args.limit == Some(0) {
        bail!("--limit 0 would train on no image: give at least 1");
    }
    let mut files = samples(format, &args.dataset, Split::Train)?;
    if let Some(n) = args.limit {
        files.truncate(n);
    }
    let (mean, std) = stats(&args, format);
    let mut inputs = model_paths(&args.backbone);
    inputs.extend(args.text.as_deref().map(model_paths).unwrap_or_default());
    let inputs: Vec<&std::path::Path> = inputs.iter().map(PathBuf::as_path).collect();
    check_model_folder("--out", &args.out, &inputs, args.force || args.resume)?;
    let image_files = ModelFiles::open(&args.backbone)?;
    let text_files = args.text.as_deref().map(ModelFiles::open).transpose()?;
    let weights_name = image_files.weights_path.display().to_string();
    let text_name = text_files.as_ref().map(|f| f.weights_path.display().to_string()).unwrap_or_default();
    let checkpoint = Checkpoint::from_bytes(image_files.weights(), &weights_name)?;
    let text_checkpoint = text_files.as_ref().map(|f| Checkpoint::from_bytes(f.weights(), &text_name)).transpose()?;
    let text_kind = text_files.as_ref().map(|f| wordmask::network::model_type(&f.config)).transpose()?;
    let vocabulary = match (&args.text, text_kind.as_deref()) {
        (Some(dir), Some("bert")) => Some(bert_vocabulary(dir).with_context(|| format!("--text {dir}"))?),
        _ => None,
    };
    let backbone = Backbone {
        image: Named { config: &image_files.config, checkpoint: &checkpoint },
        text: text_files
            .as_ref()
            .zip(text_checkpoint.as_ref())
            .map(|(f, c)| Named { config: &f.config, checkpoint: c }),
        vocabulary,
    };
    backbone.kind().with_context(|| match &args.text {
        Some(text) => format!("--backbone {} --text {text}", args.backbone),
        None => format!("--backbone {}", args.backbone),
    })?;
    let device = device::open(args.backend)?;
    let fusion = FusionConfig {
        hidden_size: args.width,
        num_hidden_layers: args.layers,
        num_attention_heads: args.heads,
        intermediate_size: args.mlp.unwrap_or(4 * args.width),
        ..FusionConfig::default()
    };
    let crop = if args.resume { None } else { args.crop };
    let head = NewHead { fusion, mean, std, crop, seed: args.seed, pooling: args.text_pooling };
    let mut model = backbone.load(&head, &device)?;
    if args.resume {
        let saved = ModelFiles::open(&args.out)
            .with_context(|| format!("--resume: no checkpoint in {}", args.out.display()))?;
        let bytes = Checkpoint::from_bytes(saved.weights(), &saved.weights_path.display().to_string())?;
        model.resume(&saved.config, &bytes, args.crop).with_context(|| format!("--resume {}", args.out.display()))?;
    }
    let options = options(&args, names, trained);
    let cache = args.cache.clone().unwrap_or_else(|| FeatureCache::default_dir(&args.out));
    eprintln!(
        "training Fusioner ({} wide, {} blocks; {}) on {} images of {}, {} classes, {} epochs, on {}",
        model.config.fusion.hidden_size,
        model.config.fusion.num_hidden_layers,
        model.config.encoders(),
        files.len(),
        args.dataset.display(),
        options.trained.len(),
        options.hyper.epochs,
        args.backend
    );
    let start = Instant::now();
    let backbone_name =
        if text_name.is_empty() { weights_name.clone() } else { format!("{weights_name} + {text_name}") };
    let sources = WeightSource::of(&backbone)?;
    let mut progress = progress_printer();
    let files = Files(files);
    let state =
        fit(&mut model, &sources, &backbone_name, &files, &options, &args.out, &cache, args.resume, &mut progress)?;
    eprintln!(
        "trained {} epochs in {}; the checkpoint is {} (wordmask segment --model {})",
        state.epochs_done,
        duration(start.elapsed().as_secs_f64()),
        args.out.display(),
        args.out.display()
    );
    Ok(())
}
