//! `wordmask sam --boxes boxes.json --images DIR --out results.json`: the Open-Vocabulary SAM
//! paper's annotation tool. Every box of a COCO file — a ground-truth instances file, or a
//! detector's results file with `--annotations` naming its images and categories — prompts the
//! model once; each image is encoded once and all its boxes are decoded against it. Each mask is
//! named among the file's categories (by Open-Vocabulary SAM's own classifier, or by a CLIP
//! checkpoint for a Segment Anything one), or keeps its box's category (`--names boxes`), and
//! the masks are written as a COCO results file (`COCO.loadRes`, `COCOeval(iouType='segm')`:
//! the paper's mask AP). With ground-truth boxes that carry masks, each instance's IoU with its
//! own mask is measured as the paper's repository measures it (`seg/evaluation/
//! ins_cls_iou_metric.py`: `intersection / (union + 1e-8)` per instance, averaged over the
//! instances) and given as 1 − IoU, with the share of instances named with their own category.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use serde_json::{Value, json};

use super::files::{ModelFiles, model_paths};
use super::merge_coco::write_json;
use super::{RuntimeArgs, load, read_image};
use wordmask::block_on;
use wordmask::files::{Output, check_outputs};
use wordmask::labels::{self, Label};
use wordmask::segment::export::rle::{self, Rle};
use wordmask::segment::objects::RunMask;
use wordmask::segment::point::{NameRequest, Prompt, PromptModel, PromptSession, VocabularyChoice, WordsNamer};
use wordmask::segment::{EmbeddingCache, Model, Settings, Templates};

/// How far, in pixels, a box may reach past the image's edge and be cut back to it (COCO's
/// boxes are floats, and a few end a hair past the border); further is refused.
const EDGE_TOLERANCE: f64 = 1.0;

/// What names each mask.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Names {
    /// The model, among the file's categories: Open-Vocabulary SAM's own head, or the CLIP
    /// checkpoint of --clip for a Segment Anything one.
    Model,
    /// Each box keeps its own category_id (the ground truth's, or the detector's).
    Boxes,
}

/// `sam`'s flags for a file of boxes.
#[derive(Args)]
pub struct BoxesArgs {
    /// A COCO file of boxes, each outlined and named: a ground-truth instances file (`images`,
    /// `annotations` with `bbox`, `categories`), or a detector's results file (a list of
    /// `{image_id, bbox, score, category_id}`, with --annotations). --out becomes a COCO results
    /// file.
    #[arg(long, requires = "images", conflicts_with_all = ["image", "points", "bbox", "everything", "vocabulary"])]
    pub boxes: Option<PathBuf>,
    /// --boxes: the folder the images' `file_name`s are in.
    #[arg(long, requires = "boxes")]
    pub images: Option<PathBuf>,
    /// --boxes with a detector's results file: the instances file it was made for, whose
    /// `images` and `categories` it refers to (COCOeval needs it as the ground truth too).
    #[arg(long, requires = "boxes")]
    pub annotations: Option<PathBuf>,
    /// --boxes: what names each mask [model when the checkpoint names masks or --clip is given,
    /// else boxes].
    #[arg(long, value_enum, requires = "boxes")]
    pub names: Option<Names>,
    /// --boxes with ground truth: each instance's IoU with its own mask, 1 − IoU, and the names
    /// given, as JSON.
    #[arg(long, requires = "boxes")]
    pub report: Option<PathBuf>,
    /// --boxes with a detector's results file: leave out boxes scored below this.
    #[arg(long, requires = "boxes", default_value_t = 0.0)]
    pub min_score: f64,
}

/// A `sam --boxes` run: its flags and `sam`'s.
pub struct Run<'a> {
    pub boxes: &'a BoxesArgs,
    pub model: &'a str,
    pub labels: Option<&'a str>,
    pub clip: Option<&'a str>,
    pub templates: Option<Templates>,
    pub out: &'a Path,
    pub json: bool,
    pub runtime: RuntimeArgs,
}

/// Whose boxes they are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// A ground-truth instances file: each annotation's box.
    Truth,
    /// A detector's results file.
    Detections,
}

#[derive(Debug, Clone)]
pub struct ImageEntry {
    pub id: u64,
    pub file_name: String,
    pub width: usize,
    pub height: usize,
}

#[derive(Debug, Clone)]
pub struct CategoryEntry {
    pub id: u64,
    pub name: String,
}

/// One box to outline.
#[derive(Debug, Clone)]
pub struct BoxEntry {
    /// Its place in the file (from 1, as messages count).
    pub place: usize,
    pub image_id: u64,
    pub category_id: u64,
    /// `[x, y, width, height]`, cut back to the image where it reached past it by less than
    /// [`EDGE_TOLERANCE`].
    pub bbox: [f64; 4],
    /// The detector's score.
    pub score: Option<f64>,
    /// The annotation's id (ground truth).
    pub annotation_id: Option<u64>,
    /// The annotation's mask (ground truth with `segmentation`), as the file holds it.
    pub truth: Option<Value>,
}

/// A file of boxes, read and checked.
#[derive(Debug)]
pub struct BoxTask {
    pub source: Source,
    pub images: Vec<ImageEntry>,
    pub categories: Vec<CategoryEntry>,
    pub boxes: Vec<BoxEntry>,
    /// Crowd annotations passed over (they are regions of many objects, not prompts).
    pub crowds: usize,
    /// Detections under --min-score passed over.
    pub below_score: usize,
}

fn read_json(option: &str, path: &Path) -> Result<Value> {
    let bytes = std::fs::read(path).with_context(|| format!("{option} {}: cannot read the file", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        let text = String::from_utf8_lossy(&bytes);
        let hint = if text.contains("NaN") || text.contains("Infinity") {
            " (it holds NaN or Infinity, which Python's json writes for non-finite numbers but JSON has no \
             such number: a box needs four finite numbers)"
        } else if e.to_string().contains("out of range") {
            " (a number too large for a 64-bit float: a box needs four finite numbers)"
        } else {
            ""
        };
        anyhow::anyhow!("{option} {} is not JSON: {e}{hint}", path.display())
    })
}

fn as_id(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| v.as_f64().filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 9e15).map(|f| f as u64))
}

/// The `images` and `categories` of an instances file.
fn images_and_categories(option: &str, path: &Path, file: &Value) -> Result<(Vec<ImageEntry>, Vec<CategoryEntry>)> {
    let shown = path.display();
    let Some(list) = file.get("images").and_then(Value::as_array) else {
        bail!("{option} {shown} has no images list: a COCO instances file names its images there");
    };
    let mut images = Vec::with_capacity(list.len());
    let mut seen = HashMap::new();
    for (k, image) in list.iter().enumerate() {
        let id = image.get("id").and_then(as_id).with_context(|| {
            format!("{option} {shown}: image {} of images has no id (a whole number 0 or more)", k + 1)
        })?;
        // LVIS names its images by `coco_url` alone: the file is its last part.
        let file_name = image.get("file_name").and_then(Value::as_str).map(str::to_string).or_else(|| {
            image.get("coco_url").and_then(Value::as_str).and_then(|u| u.rsplit('/').next()).map(str::to_string)
        });
        let Some(file_name) = file_name.filter(|n| !n.is_empty()) else {
            bail!("{option} {shown}: image {id} has no file_name (nor a coco_url to take it from)");
        };
        let size = |key: &str| image.get(key).and_then(Value::as_u64).filter(|&v| v > 0);
        let (Some(width), Some(height)) = (size("width"), size("height")) else {
            bail!("{option} {shown}: image {id} ({file_name}) needs a width and height in pixels");
        };
        if let Some(other) = seen.insert(id, file_name.clone()) {
            bail!("{option} {shown}: image id {id} is given twice ({other} and {file_name})");
        }
        images.push(ImageEntry { id, file_name, width: width as usize, height: height as usize });
    }
    let Some(list) = file.get("categories").and_then(Value::as_array) else {
        bail!("{option} {shown} has no categories list: the masks are named among them");
    };
    let mut categories = Vec::with_capacity(list.len());
    for (k, category) in list.iter().enumerate() {
        let id = category.get("id").and_then(as_id);
        let name = category.get("name").and_then(Value::as_str).map(str::trim).filter(|n| !n.is_empty());
        let (Some(id), Some(name)) = (id, name) else {
            bail!("{option} {shown}: category {} needs an id (a whole number) and a name", k + 1);
        };
        if categories.iter().any(|c: &CategoryEntry| c.id == id) {
            bail!("{option} {shown}: category id {id} is given twice");
        }
        categories.push(CategoryEntry { id, name: name.to_string() });
    }
    if categories.is_empty() {
        bail!("{option} {shown} has no categories: the masks are named among them");
    }
    if categories.len() > u16::MAX as usize {
        bail!(
            "{option} {shown} has {} categories; at most {} (class indices are 16-bit in label maps)",
            categories.len(),
            u16::MAX
        );
    }
    Ok((images, categories))
}

/// A box `[x, y, width, height]` of four finite numbers with a positive size, inside `image`
/// (or within [`EDGE_TOLERANCE`] of it, then cut back).
fn check_box(what: &str, v: Option<&Value>, image: &ImageEntry) -> Result<[f64; 4]> {
    let numbers: Option<Vec<f64>> = v.and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_f64).collect());
    let count = v.and_then(Value::as_array).map(Vec::len);
    let bbox: [f64; 4] = match numbers {
        Some(n) if Some(n.len()) == count && n.len() == 4 => [n[0], n[1], n[2], n[3]],
        _ => bail!(
            "{what}: bbox must be four numbers [x, y, width, height]; got {}",
            v.map(Value::to_string).unwrap_or_else(|| "none".into())
        ),
    };
    let [x, y, w, h] = bbox;
    if bbox.iter().any(|v| !v.is_finite()) {
        bail!("{what}: bbox {bbox:?} holds a number that is not finite");
    }
    if w <= 0.0 || h <= 0.0 {
        bail!("{what}: bbox [{x}, {y}, {w}, {h}] has no area (width and height must be above 0)");
    }
    let (iw, ih) = (image.width as f64, image.height as f64);
    let t = EDGE_TOLERANCE;
    if x < -t || y < -t || x + w > iw + t || y + h > ih + t {
        bail!(
            "{what}: its bbox [{x}, {y}, {w}, {h}] reaches outside image {} ({}, {}x{} pixels)",
            image.id,
            image.file_name,
            image.width,
            image.height
        );
    }
    let (x0, y0) = (x.max(0.0), y.max(0.0));
    let (x1, y1) = ((x + w).min(iw), (y + h).min(ih));
    if x1 <= x0 || y1 <= y0 {
        bail!("{what}: bbox [{x}, {y}, {w}, {h}] has no area inside image {}", image.id);
    }
    Ok([x0, y0, x1 - x0, y1 - y0])
}

/// Read and check the file of boxes (and, for detections, the instances file they refer to):
/// every box on a listed image, inside it, of a listed category.
pub fn read_boxes(boxes: &Path, annotations: Option<&Path>, min_score: f64) -> Result<BoxTask> {
    let mut file = read_json("--boxes", boxes)?;
    let shown = boxes.display();
    // The lists are taken out of the file, not copied: a dataset's file may hold hundreds of
    // megabytes of masks.
    let is_instances = file.get("annotations").is_some();
    let (source, images, categories, entries) = match (file.is_array(), is_instances, annotations) {
        (true, _, Some(annotations)) => {
            let truth = read_json("--annotations", annotations)?;
            let (images, categories) = images_and_categories("--annotations", annotations, &truth)?;
            drop(truth);
            (Source::Detections, images, categories, std::mem::take(&mut file))
        }
        (true, _, None) => bail!(
            "--boxes {shown} is a results file (a list of detections), which names no images: give \
             --annotations, the instances file the detections were made for"
        ),
        (false, true, None) => {
            let (images, categories) = images_and_categories("--boxes", boxes, &file)?;
            (Source::Truth, images, categories, file["annotations"].take())
        }
        (false, true, Some(_)) => bail!(
            "--boxes {shown} is an instances file, which names its own images and categories: \
             --annotations is for a detector's results file"
        ),
        _ => bail!(
            "--boxes {shown} is neither a COCO instances file (an object with images, annotations and \
             categories) nor a COCO results file (a list of {{image_id, bbox, score, category_id}})"
        ),
    };
    drop(file);
    let Value::Array(mut entries) = entries else {
        bail!("--boxes {shown}: annotations must be a list");
    };
    let by_id: HashMap<u64, &ImageEntry> = images.iter().map(|i| (i.id, i)).collect();
    let (mut list, mut crowds, mut below_score) = (Vec::new(), 0, 0);
    let total = entries.len();
    for (k, entry) in entries.iter_mut().enumerate() {
        let place = k + 1;
        let annotation_id = entry.get("id").and_then(as_id);
        let what = match (source, annotation_id) {
            (Source::Truth, Some(id)) => format!("--boxes {shown}: annotation {place} (id {id})"),
            _ => format!("--boxes {shown}: box {place}"),
        };
        if !entry.is_object() {
            bail!("{what} is not an object with image_id and bbox");
        }
        let image_id = entry.get("image_id").and_then(as_id).with_context(|| format!("{what} has no image_id"))?;
        let Some(image) = by_id.get(&image_id) else {
            let list = if source == Source::Truth { "--boxes" } else { "--annotations" };
            bail!("{what} is on image {image_id}, which the images of {list} do not hold");
        };
        let category_id =
            entry.get("category_id").and_then(as_id).with_context(|| format!("{what} has no category_id"))?;
        if !categories.iter().any(|c| c.id == category_id) {
            bail!("{what}: category_id {category_id} is not among the file's categories");
        }
        let score = match (source, entry.get("score")) {
            (Source::Detections, Some(v)) => match v.as_f64() {
                Some(s) if s.is_finite() => Some(s),
                _ => bail!("{what}: score must be a finite number; got {v}"),
            },
            (Source::Detections, None) => bail!("{what} has no score (a detector's results give each box one)"),
            _ => None,
        };
        if entry.get("iscrowd").and_then(Value::as_u64) == Some(1) {
            crowds += 1;
            continue;
        }
        let bbox = check_box(&what, entry.get("bbox"), image)?;
        if score.is_some_and(|s| s < min_score) {
            below_score += 1;
            continue;
        }
        let truth = match source {
            Source::Truth => entry.get_mut("segmentation").map(Value::take).filter(|s| !s.is_null()),
            Source::Detections => None,
        };
        list.push(BoxEntry { place, image_id, category_id, bbox, score, annotation_id, truth });
    }
    if list.is_empty() {
        let why = match (total, crowds, below_score) {
            (0, ..) => String::new(),
            (_, c, 0) if c > 0 => format!(" ({c} crowd annotations, which are not prompted)"),
            (_, _, b) => format!(" ({b} under --min-score {min_score})"),
        };
        bail!("--boxes {shown} holds no boxes to outline{why}");
    }
    Ok(BoxTask { source, images, categories, boxes: list, crowds, below_score })
}

/// A ground-truth `segmentation` on a `height x width` image, as pycocotools' `annToMask`
/// reads it: polygons (their union), compressed RLE, or uncompressed RLE.
pub fn truth_plane(segmentation: &Value, height: usize, width: usize) -> Result<Vec<u8>> {
    match segmentation {
        Value::Array(polygons) => {
            let mut plane = vec![0u8; width * height];
            for polygon in polygons {
                let xy: Vec<f64> = polygon.as_array().into_iter().flatten().filter_map(Value::as_f64).collect();
                if polygon.as_array().map(Vec::len) != Some(xy.len()) || xy.len() < 6 || xy.len() % 2 == 1 {
                    bail!("a polygon must be a list of at least three x, y pairs of numbers");
                }
                let part = rle::counts_to_plane(&rle::polygon_counts(&xy, height, width), height, width)?;
                plane.iter_mut().zip(part).for_each(|(p, v)| *p |= v);
            }
            Ok(plane)
        }
        Value::Object(map) => {
            let size: Option<Vec<u64>> =
                map.get("size").and_then(Value::as_array).map(|s| s.iter().filter_map(Value::as_u64).collect());
            if size.as_deref() != Some(&[height as u64, width as u64]) {
                bail!(
                    "its RLE size is {}, not the image's [{height}, {width}]",
                    map.get("size").unwrap_or(&Value::Null)
                );
            }
            let counts = match map.get("counts") {
                Some(Value::String(text)) => rle::string_to_counts(text)?,
                Some(Value::Array(list)) => list
                    .iter()
                    .map(|c| c.as_u64().and_then(|c| u32::try_from(c).ok()))
                    .collect::<Option<Vec<u32>>>()
                    .context("uncompressed RLE counts must be whole numbers")?,
                _ => bail!("an RLE needs counts (a string, or a list of whole numbers)"),
            };
            Ok(rle::counts_to_plane(&counts, height, width)?)
        }
        _ => bail!("segmentation must be polygons or an RLE"),
    }
}

/// One mask of the results file.
#[derive(Debug, Serialize)]
struct Detection {
    image_id: u64,
    category_id: u64,
    /// The box that prompted it, `[x, y, width, height]`.
    bbox: [f64; 4],
    score: f64,
    segmentation: Rle,
}

/// One ground-truth instance, measured against its own mask.
#[derive(Debug, Serialize)]
struct Instance {
    annotation_id: Option<u64>,
    image_id: u64,
    category_id: u64,
    /// The category the mask was named (none for an empty mask, which gets no name).
    predicted_category_id: Option<u64>,
    score: f64,
    area: usize,
    iou: f64,
    one_minus_iou: f64,
}

/// The repository's per-instance IoU: `intersection / (union + 1e-8)` (two empty masks give 0).
fn instance_iou(truth: &[u8], mask: &[u8]) -> f64 {
    let (mut inter, mut union) = (0u64, 0u64);
    for (&t, &m) in truth.iter().zip(mask) {
        inter += u64::from(t & m);
        union += u64::from(t | m);
    }
    inter as f64 / (union as f64 + 1e-8)
}

pub fn run(args: &Run) -> Result<()> {
    let boxes_path = args.boxes.boxes.as_deref().context("--boxes")?;
    let dir = args.boxes.images.as_deref().context("--boxes needs --images, the folder of the images")?;
    let json_file = |option, path| Output { option, path, extensions: &["json"], what: "a COCO results file", why: "" };
    let mut outputs = vec![json_file("--out", args.out)];
    outputs.extend(args.boxes.report.as_deref().map(|p| Output { what: "the report", ..json_file("--report", p) }));
    let mut inputs = model_paths(args.model);
    inputs.extend(args.clip.map(model_paths).unwrap_or_default());
    inputs.push(boxes_path.to_path_buf());
    inputs.extend(args.boxes.annotations.clone());
    check_outputs(&outputs, &inputs.iter().map(PathBuf::as_path).collect::<Vec<_>>())?;
    if !dir.is_dir() {
        bail!("--images {} is not a folder", dir.display());
    }

    let task = read_boxes(boxes_path, args.boxes.annotations.as_deref(), args.boxes.min_score)?;
    if args.boxes.report.is_some() && task.source != Source::Truth {
        bail!("--report measures each ground-truth instance against its own mask: --boxes must be an instances file");
    }
    let labels: Vec<Label> = match args.labels {
        Some(text) => {
            let typed = labels::parse(text)?;
            if typed.len() != task.categories.len() {
                bail!(
                    "--labels gives {} words for the {} categories of the file: give one per category, in the \
                     file's order ({}, ...)",
                    typed.len(),
                    task.categories.len(),
                    task.categories.iter().take(3).map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
                );
            }
            typed
        }
        None => {
            task.categories.iter().map(|c| Label { name: c.name.clone(), synonyms: vec![c.name.clone()] }).collect()
        }
    };

    // The photos, before the model: each on the disk, of the size the file gives it (either
    // way round: a photo's EXIF orientation is applied when it is read, and checked then).
    let mut order: Vec<&ImageEntry> = Vec::new();
    let mut per_image: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for (k, b) in task.boxes.iter().enumerate() {
        per_image.entry(b.image_id).or_default().push(k);
    }
    for image in &task.images {
        if !per_image.contains_key(&image.id) {
            continue;
        }
        let path = dir.join(&image.file_name);
        let (w, h) = image::image_dimensions(&path)
            .with_context(|| format!("image {} ({}): cannot read {}", image.id, image.file_name, path.display()))?;
        let (w, h) = (w as usize, h as usize);
        if (w, h) != (image.width, image.height) && (h, w) != (image.width, image.height) {
            bail!(
                "image {} ({}) is {w}x{h} pixels, but the file gives {}x{}: its boxes would land elsewhere",
                image.id,
                path.display(),
                image.width,
                image.height
            );
        }
        order.push(image);
    }

    let t = Instant::now();
    let files = ModelFiles::open(args.model)?;
    let device = args.runtime.device()?;
    let name = files.weights_path.display().to_string();
    let model = PromptModel::from_bytes(&files.config, files.weights(), &name, files.preprocessor.as_deref(), &device)?;
    let names = args.boxes.names.unwrap_or(if model.names_masks() || args.clip.is_some() {
        Names::Model
    } else {
        Names::Boxes
    });
    if model.names_masks() && args.clip.is_some() {
        bail!("an Open-Vocabulary SAM checkpoint names its masks itself: drop --clip");
    }
    if names == Names::Model && !model.names_masks() && args.clip.is_none() {
        bail!(
            "a Segment Anything checkpoint names masks through a CLIP checkpoint: add --clip, or --names boxes to \
             keep each box's category"
        );
    }
    if names == Names::Boxes && (args.clip.is_some() || args.labels.is_some()) {
        bail!("--names boxes keeps each box's category: --clip and --labels would name nothing");
    }
    // The words as the namer reads them: Open-Vocabulary SAM splits LVIS's `a_b` itself, a CLIP
    // text tower reads spaces.
    let labels: Vec<Label> = if model.names_masks() || args.labels.is_some() {
        labels
    } else {
        labels
            .into_iter()
            .map(|l| Label { synonyms: l.synonyms.iter().map(|s| s.replace('_', " ")).collect(), ..l })
            .collect()
    };
    let clip: Option<Model> =
        args.clip.map(|clip| load(clip, args.runtime).context("loading the CLIP checkpoint of --clip")).transpose()?;
    let load_ms = t.elapsed().as_secs_f64() * 1e3;

    let mut session = PromptSession::new(model);
    let (settings, mut cache) =
        (Settings { templates: args.templates, ..Settings::default() }, EmbeddingCache::default());
    let mut results: Vec<Option<Detection>> = (0..task.boxes.len()).map(|_| None).collect();
    let mut instances: Vec<Option<Instance>> = (0..task.boxes.len()).map(|_| None).collect();
    let (mut encode_ms, mut decode_ms, mut name_ms, mut empty, mut encoded) = (0.0, 0.0, 0.0, 0usize, 0usize);
    let mut unmeasured = 0usize;
    let bar = ProgressBar::new(order.len() as u64);
    if let Ok(style) = ProgressStyle::with_template("{bar:30} {pos}/{len} images, {eta} left  {wide_msg}") {
        bar.set_style(style);
    }
    for image in &order {
        let mine = &per_image[&image.id];
        bar.set_message(format!("{} ({} boxes)", image.file_name, mine.len()));
        let path = dir.join(&image.file_name);
        let photo = read_image(&path.to_string_lossy())?;
        if (photo.width, photo.height) != (image.width, image.height) {
            bail!(
                "image {} ({}) is {}x{} pixels upright (its EXIF orientation applied), but the file gives {}x{}",
                image.id,
                path.display(),
                photo.width,
                photo.height,
                image.width,
                image.height
            );
        }
        encode_ms += block_on(session.encode(photo))?;
        encoded += 1;
        for &k in mine {
            let entry = &task.boxes[k];
            let [x, y, w, h] = entry.bbox;
            let prompt = Prompt { points: Vec::new(), bbox: Some([x, y, x + w, y + h]) };
            let request = match names {
                Names::Boxes => NameRequest::default(),
                Names::Model => NameRequest {
                    labels: Some(labels.clone()),
                    vocabulary: session.model().names_masks().then_some(VocabularyChoice::Typed),
                    words: clip.as_ref().map(|model| WordsNamer { model, settings: &settings, cache: &mut cache }),
                },
            };
            let answer = block_on(session.prompt(&prompt, request))
                .with_context(|| format!("image {} ({}), box {}", image.id, image.file_name, entry.place))?;
            decode_ms += answer.timings.decode;
            name_ms += answer.timings.name;
            let mask = &answer.mask;
            if mask.area == 0 {
                empty += 1;
            }
            // The named category: the class's place among the file's categories.
            let named = answer.naming.as_ref().and_then(|n| {
                n.class_index.or_else(|| labels.iter().position(|l| l.name == n.best.label)).map(|i| (i, n))
            });
            let (category_id, probability) = match named {
                Some((i, n)) => (task.categories[i].id, Some(n.best.probability as f64)),
                // Named by their boxes, or an empty mask (which gets no name, keeps its box's
                // category, and, with no pixel, matches no object).
                None => (entry.category_id, None),
            };
            let predicted = match names {
                Names::Model => named.map(|_| category_id),
                Names::Boxes => Some(category_id),
            };
            // The detector's score, as the paper's repository keeps it; else the name's
            // probability; else 1, and 0 for an empty mask.
            let score = entry.score.or(probability).unwrap_or(if mask.area == 0 { 0.0 } else { 1.0 });
            let run_mask = RunMask::from_plane(&mask.mask, mask.width, mask.height);
            if let Some(truth) = &entry.truth {
                let plane = truth_plane(truth, image.height, image.width).with_context(|| {
                    format!("--boxes: annotation {} (image {}): its segmentation", entry.place, image.id)
                })?;
                let iou = instance_iou(&plane, &mask.mask);
                instances[k] = Some(Instance {
                    annotation_id: entry.annotation_id,
                    image_id: image.id,
                    category_id: entry.category_id,
                    predicted_category_id: predicted,
                    score,
                    area: mask.area,
                    iou,
                    one_minus_iou: 1.0 - iou,
                });
            } else if task.source == Source::Truth {
                unmeasured += 1;
            }
            results[k] = Some(Detection {
                image_id: image.id,
                category_id,
                bbox: entry.bbox,
                score,
                segmentation: rle::encode(&run_mask),
            });
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    // Both in the order of the boxes in the file.
    let results: Vec<Detection> = results.into_iter().flatten().collect();
    let instances: Vec<Instance> = instances.into_iter().flatten().collect();
    write_json(args.out, &results)?;

    let measured = instances.len();
    let mean =
        |f: &dyn Fn(&Instance) -> f64| (measured > 0).then(|| instances.iter().map(f).sum::<f64>() / measured as f64);
    let mean_iou = mean(&|i| i.iou);
    let mean_error = mean(&|i| i.one_minus_iou);
    let accuracy = (names == Names::Model)
        .then(|| mean(&|i| f64::from(u8::from(i.predicted_category_id == Some(i.category_id)))))
        .flatten();
    let summary = json!({
        "boxes": task.source, "images": order.len(), "encoded": encoded, "masks": results.len(),
        "empty_masks": empty, "crowds_skipped": task.crowds, "below_min_score": task.below_score,
        "names": if names == Names::Model { "model" } else { "boxes" }, "categories": task.categories.len(),
        "model": session.model().engine(),
        "instances_measured": measured, "instances_without_mask": unmeasured,
        "mean_iou": mean_iou, "mean_one_minus_iou": mean_error, "accuracy": accuracy,
        "timings_ms": {"load": load_ms, "encode": encode_ms, "decode": decode_ms, "name": name_ms},
        "out": args.out.display().to_string(),
    });
    if let Some(path) = &args.boxes.report {
        let mut report = summary.clone();
        report["instances"] = json!(instances);
        write_json(path, &report)?;
    }
    if args.json {
        println!("{summary}");
    } else {
        println!(
            "{} masks for {} boxes on {} images ({} empty); named by {}",
            results.len(),
            task.boxes.len(),
            encoded,
            empty,
            if names == Names::Model { "the model among the file's categories" } else { "their boxes" }
        );
        if let (Some(iou), Some(error)) = (mean_iou, mean_error) {
            let acc = accuracy.map(|a| format!(", named right {:.1}%", a * 100.0)).unwrap_or_default();
            println!("ground truth: {measured} instances, mean IoU {iou:.4}, mean 1-IoU {error:.4}{acc}");
        }
        println!(
            "encode {encode_ms:.0} ms ({:.0} ms an image), decode {decode_ms:.0} ms, name {name_ms:.0} ms; wrote {}",
            encode_ms / encoded.max(1) as f64,
            args.out.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> ImageEntry {
        ImageEntry { id: 1, file_name: "a.png".into(), width: 100, height: 50 }
    }

    #[test]
    fn boxes_are_checked_and_cut_back_at_the_edge() {
        let b = |v: Value| check_box("box 1", Some(&v), &image());
        assert_eq!(b(json!([10, 5, 20, 10])).unwrap(), [10.0, 5.0, 20.0, 10.0]);
        assert_eq!(b(json!([-0.5, 0, 100.9, 50])).unwrap(), [0.0, 0.0, 100.0, 50.0]);
        assert!(b(json!([90, 5, 20, 10])).unwrap_err().to_string().contains("reaches outside image 1"));
        assert!(b(json!([10, 5, 0, 10])).unwrap_err().to_string().contains("has no area"));
        assert!(b(json!([10, 5, 20])).unwrap_err().to_string().contains("four numbers"));
        assert!(b(json!([10, "5", 20, 4])).unwrap_err().to_string().contains("four numbers"));
    }

    #[test]
    fn truth_masks_read_polygons_and_both_rles() {
        let polygon = truth_plane(&json!([[1, 1, 3, 1, 3, 2, 1, 2]]), 3, 4).unwrap();
        assert_eq!(polygon, [0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0]);
        let mask = RunMask::from_plane(&polygon, 4, 3);
        let compressed = truth_plane(&json!({"size": [3, 4], "counts": rle::encode(&mask).counts}), 3, 4).unwrap();
        assert_eq!(compressed, polygon);
        let counts = rle::column_counts(&mask);
        assert_eq!(truth_plane(&json!({"size": [3, 4], "counts": counts}), 3, 4).unwrap(), polygon);
        let err = truth_plane(&json!({"size": [4, 3], "counts": "3"}), 3, 4).unwrap_err().to_string();
        assert!(err.contains("not the image's [3, 4]"), "{err}");
        assert!(truth_plane(&json!([[1, 1, 3, 1]]), 3, 4).unwrap_err().to_string().contains("three x, y pairs"));
        assert_eq!(instance_iou(&[0, 0], &[0, 0]), 0.0);
        assert!((instance_iou(&[1, 1, 0], &[1, 0, 1]) - 1.0 / 3.0).abs() < 1e-6);
    }
}
