//! `wordmask segment --images DIR --out DIR --format coco,yolo,labelme,voc`: every photo of a
//! folder segmented with the words (and sharpened into objects with `--sam`), and exported.
//!
//! Resumable: each image's files are written whole or not at all (`files::write_atomic`), and an
//! image whose files all exist is skipped on the next run, which therefore does no image twice
//! and leaves no partial file after a kill. The run's words, models and settings are recorded in
//! `wordmask-run.json` the first time, and a rerun with others is refused, so a folder never
//! mixes two vocabularies. `--shard I/N` takes every N-th image of the sorted list from the I-th,
//! so a job array spreads a folder over machines with no coordinator; image ids are places in
//! the whole sorted list, so the parts' COCO files merge (`wordmask merge-coco`, in
//! `merge_coco.rs`).
//!
//! The layout of `--out`:
//!
//! ```text
//! coco/<image>.json                       one image's COCO file (annotation ids from 1)
//! coco.json, coco_results.json            all images, written when every one is done
//! coco.shard-I-of-N.json                  the same for one part (--shard)
//! yolo/data.yaml, yolo/labels/<image>.txt YOLO-seg
//! labelme/<image>.json                    LabelMe, imagePath relative to it
//! voc/SegmentationClass/<image>.png       Pascal VOC's palette PNGs, and the class list
//! voc/SegmentationObject/<image>.png
//! voc/labelmap.txt
//! ```

use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use super::files::model_paths;
use super::merge_coco::{read_coco, write_json};
use super::{ModelArgs, load_prompt_model, read_image};
use wordmask::files::{check_model_folder, write_bytes};
use wordmask::labels::{self, Label};
use wordmask::segment::export::coco::{self, CocoFile};
use wordmask::segment::export::{
    COCO_FILE, COCO_RESULTS_FILE, Format, ImageInfo, Labelled, Part, folder_coco, folder_lists, image_objects,
    image_part,
};
use wordmask::segment::point::PromptSession;
use wordmask::segment::refine::{RefineOptions, sharpen};
use wordmask::segment::{EmbeddingCache, Model, Settings, segment};

/// Photos the folder mode reads, by extension.
const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];
/// What a run records about itself in `--out`.
const RUN_FILE: &str = "wordmask-run.json";

/// `I/N`: the I-th of N parts, from 0.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl FromStr for Shard {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("a shard is I/N with 0 <= I < N, e.g. 0/4 to 3/4; got '{text}'");
        let (i, n) = text.split_once('/').ok_or_else(bad)?;
        let (index, count) = (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

/// `segment`'s flags for a folder.
#[derive(Args)]
pub struct FolderArgs {
    /// A folder of photos (its PNG and JPEG files, not its subfolders), each segmented and
    /// exported in --format into the folder --out; a rerun skips the images already done.
    #[arg(long, conflicts_with_all = ["image", "overlay", "scores", "instances", "json"])]
    pub images: Option<PathBuf>,
    /// --images: the exports, any of coco,yolo,labelme,voc.
    #[arg(long, value_enum, value_delimiter = ',', requires = "images")]
    pub format: Vec<Format>,
    /// --images: this part only of the sorted images: I/N takes the images whose place in the
    /// sorted list, counted from 0, leaves I when divided by N (0 <= I < N); every part of one
    /// folder may share one --out.
    #[arg(long, requires = "images")]
    pub shard: Option<Shard>,
    /// --images: COCO masks as polygons instead of RLE.
    #[arg(long, requires = "images")]
    pub polygons: bool,
    /// --images: objects of fewer pixels are left out of every format, their pixels unlabelled
    /// in VOC's class map (0 keeps every region, however small).
    #[arg(long, requires = "images", default_value_t = 0)]
    pub min_area: usize,
}

/// A folder run: its flags and `segment`'s.
pub struct Run<'a> {
    pub folder: &'a FolderArgs,
    pub model: &'a ModelArgs,
    pub labels: &'a str,
    pub settings: &'a Settings,
    pub sam: Option<&'a str>,
    pub out: &'a Path,
}

/// One photo of the folder.
struct Photo {
    /// Its place in the folder's sorted list, from 1: its COCO image id.
    id: u64,
    file_name: String,
    /// The name without its extension, which names its label files.
    stem: String,
}

/// The folder's photos, sorted by name; two photos of one name but for the extension are
/// refused (their label files would be one file).
fn list_photos(dir: &Path) -> Result<Vec<Photo>> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("--images {}: cannot read the folder", dir.display()))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("--images {}: cannot read the folder", dir.display()))?;
        let path = entry.path();
        let extension = path.extension().map(|e| e.to_string_lossy().to_lowercase()).unwrap_or_default();
        if !path.is_file() || !IMAGE_EXTENSIONS.contains(&extension.as_str()) {
            continue;
        }
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            bail!("--images: {} has a name that is not UTF-8; rename it", path.display());
        };
        names.push(name);
    }
    if names.is_empty() {
        bail!("--images {} holds no PNG or JPEG file", dir.display());
    }
    names.sort();
    let photos: Vec<Photo> = names
        .into_iter()
        .enumerate()
        .map(|(k, file_name)| {
            let stem = Path::new(&file_name).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            Photo { id: k as u64 + 1, file_name, stem }
        })
        .collect();
    let mut stems: Vec<(&str, &str)> = photos.iter().map(|p| (p.stem.as_str(), p.file_name.as_str())).collect();
    stems.sort();
    if let Some(pair) = stems.windows(2).find(|p| p[0].0 == p[1].0) {
        bail!(
            "--images: {} and {} share the name {}, and so would their label files; rename one",
            pair[0].1,
            pair[1].1,
            pair[0].0
        );
    }
    Ok(photos)
}

/// The files `formats` write for a photo named `stem` (the layout the page's zip has too); the
/// photo is done when all exist.
fn files_of(out: &Path, stem: &str, formats: &[Format]) -> Vec<(Part, PathBuf)> {
    Part::of(formats).into_iter().map(|part| (part, out.join(part.path(stem)))).collect()
}

/// `target` as seen from the folder `from` (both existing), e.g. `../photos/a.jpg`.
fn relative(target: &Path, from: &Path) -> Result<String> {
    let (target, from) = (target.canonicalize()?, from.canonicalize()?);
    let common = target.components().zip(from.components()).take_while(|(a, b)| a == b).count();
    let mut path = PathBuf::new();
    for _ in from.components().skip(common) {
        path.push("..");
    }
    path.extend(target.components().skip(common));
    Ok(path.to_string_lossy().replace('\\', "/"))
}

/// What the run is: a rerun into the same folder must be the same.
fn run_record(args: &Run, labels: &[Label]) -> serde_json::Value {
    let canonical = |p: &str| Path::new(p).canonicalize().map(|p| p.display().to_string()).unwrap_or(p.to_string());
    json!({
        "labels": labels,
        "model": canonical(&args.model.model),
        "sam": args.sam.map(canonical),
        "settings": format!("{:?}", args.settings),
        "polygons": args.folder.polygons,
        "min_area": args.folder.min_area,
    })
}

pub fn run(args: &Run) -> Result<()> {
    let dir = args.folder.images.as_deref().context("--images")?;
    let labels = labels::parse(args.labels)?;
    if args.folder.format.is_empty() {
        bail!("--images needs --format: one or more of coco, yolo, labelme, voc (e.g. --format coco,yolo)");
    }
    if args.folder.polygons && !args.folder.format.contains(&Format::Coco) {
        bail!("--polygons is how COCO files hold masks: add coco to --format");
    }
    let mut formats = args.folder.format.clone();
    formats.sort();
    formats.dedup();
    let photos = list_photos(dir)?;
    let shard = args.folder.shard.unwrap_or(Shard { index: 0, count: 1 });
    let mine: Vec<&Photo> = photos.iter().filter(|p| (p.id as usize - 1) % shard.count == shard.index).collect();

    // The output folder, before any work: not the photos' folder nor a model's, and if it holds
    // an earlier run, one with the same words and settings.
    let out = args.out;
    let mut inputs: Vec<PathBuf> = photos.iter().map(|p| dir.join(&p.file_name)).collect();
    inputs.extend(model_paths(&args.model.model));
    inputs.extend(args.sam.map(model_paths).unwrap_or_default());
    check_model_folder("--out", out, &inputs.iter().map(PathBuf::as_path).collect::<Vec<_>>(), true)?;
    std::fs::create_dir_all(out).with_context(|| format!("--out {}: cannot create the folder", out.display()))?;
    let record = run_record(args, &labels);
    let record_path = out.join(RUN_FILE);
    if let Ok(text) = std::fs::read_to_string(&record_path) {
        let earlier: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        if earlier != record {
            bail!(
                "--out {} holds a run with other words, models or settings ({RUN_FILE}); name another folder, \
                 or remove it to start over",
                out.display()
            );
        }
    }
    for (_, file) in photos.first().map(|p| files_of(out, &p.stem, &formats)).unwrap_or_default() {
        let folder = file.parent().unwrap_or(out);
        std::fs::create_dir_all(folder).with_context(|| format!("cannot create {}", folder.display()))?;
    }
    if args.folder.shard.is_none() {
        remove_stale_partials(out);
    }
    write_bytes(&record_path, format!("{record:#}\n").as_bytes())?;
    let yolo_path = if formats.contains(&Format::Yolo) {
        out.join("yolo").canonicalize()?.display().to_string()
    } else {
        String::new()
    };
    for (path, bytes) in folder_lists(&formats, &labels, &yolo_path) {
        write_bytes(&out.join(path), &bytes)?;
    }

    let todo: Vec<&&Photo> =
        mine.iter().filter(|p| !files_of(out, &p.stem, &formats).iter().all(|(_, f)| f.is_file())).collect();
    let skipped = mine.len() - todo.len();
    let mut failed: Vec<String> = Vec::new();
    if !todo.is_empty() {
        let model = super::load(&args.model.model, args.model.runtime)?;
        let mut session =
            args.sam.map(|d| load_prompt_model(d, args.model.runtime).map(PromptSession::new)).transpose()?;
        let mut cache = EmbeddingCache::default();
        let bar = ProgressBar::new(todo.len() as u64);
        if let Ok(style) = ProgressStyle::with_template("{bar:30} {pos}/{len} images, {eta} left  {wide_msg}") {
            bar.set_style(style);
        }
        for photo in todo {
            bar.set_message(photo.file_name.clone());
            let worker = Worker { dir, out, labels: &labels, formats: &formats, args, model: &model };
            if let Err(e) = worker.label(photo, session.as_mut(), &mut cache) {
                bar.suspend(|| eprintln!("{}: {e:#}", photo.file_name));
                failed.push(photo.file_name.clone());
            }
            bar.inc(1);
        }
        bar.finish_and_clear();
    }
    let done = mine.len() - skipped - failed.len();
    eprintln!(
        "{} images{}: {done} labelled, {skipped} done before, {} failed; wrote {}",
        mine.len(),
        args.folder.shard.map(|s| format!(" (part {}/{} of {})", s.index, s.count, photos.len())).unwrap_or_default(),
        failed.len(),
        out.display()
    );
    if !failed.is_empty() {
        bail!("{} images failed ({}); a rerun tries them again and skips the rest", failed.len(), failed.join(", "));
    }
    if formats.contains(&Format::Coco) {
        // Each image takes its place in today's list: photos added to the folder since an image
        // was done move the ids of those after them.
        let part = |p: &&Photo| -> Result<CocoFile> {
            let mut file = read_coco(&out.join("coco").join(format!("{}.json", p.stem)))?;
            file.images.iter_mut().for_each(|i| i.id = p.id);
            file.annotations.iter_mut().for_each(|a| a.image_id = p.id);
            Ok(file)
        };
        let parts: Vec<CocoFile> = mine.iter().map(part).collect::<Result<_>>()?;
        // A part may hold no image (more parts than images): it writes a file without images.
        let merged = folder_coco(&parts, &labels)?;
        match args.folder.shard {
            Some(s) => write_json(&out.join(format!("coco.shard-{}-of-{}.json", s.index, s.count)), &merged)?,
            None => {
                write_json(&out.join(COCO_FILE), &merged)?;
                write_json(&out.join(COCO_RESULTS_FILE), &coco::results(&merged))?;
            }
        }
    }
    Ok(())
}

/// Temporary files that a killed run left (`files::write_atomic` names them
/// `.<name>.<pid>.partial`), where their process is gone. Only runs without `--shard` clean up:
/// parts of one folder may run on other machines, whose processes this one cannot see.
fn remove_stale_partials(out: &Path) {
    let proc = Path::new("/proc");
    if !proc.is_dir() {
        return;
    }
    let mut folders = vec![out.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).into_iter().flatten().flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                folders.push(path);
            } else if let Some(rest) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".partial")) {
                let pid = rest.rsplit('.').next().unwrap_or_default();
                if pid.parse::<u32>().is_ok() && !proc.join(pid).exists() {
                    std::fs::remove_file(&path).ok();
                }
            }
        }
    }
}

/// What every image of a run shares.
struct Worker<'a> {
    dir: &'a Path,
    out: &'a Path,
    labels: &'a [Label],
    formats: &'a [Format],
    args: &'a Run<'a>,
    model: &'a Model,
}

impl Worker<'_> {
    /// Segment one photo and write its files.
    fn label(&self, photo: &Photo, session: Option<&mut PromptSession>, cache: &mut EmbeddingCache) -> Result<()> {
        let path = self.dir.join(&photo.file_name);
        let image = read_image(&path.to_string_lossy())?;
        let mut result = wordmask::block_on(segment(self.model, &image, self.labels, self.args.settings, cache))?;
        let sharpened = match session {
            Some(session) => {
                let options = RefineOptions::default();
                Some(wordmask::block_on(sharpen(&mut result.segmentation, &image, session, &options))?.0)
            }
            None => None,
        };
        let seg = &mut result.segmentation;
        let size = (seg.width, seg.height);
        let objects =
            image_objects(&mut seg.label_map, &seg.confidence, &seg.labels, size, sharpened, self.args.folder.min_area);
        let labelled =
            Labelled { file_name: &photo.file_name, width: seg.width, height: seg.height, objects: &objects };
        for (part, file) in files_of(self.out, &photo.stem, self.formats) {
            let image_path =
                if part == Part::Labelme { relative(&path, file.parent().unwrap_or(self.out))? } else { String::new() };
            let info = ImageInfo {
                image_id: photo.id,
                labels: self.labels,
                polygons: self.args.folder.polygons,
                image_path: &image_path,
            };
            write_bytes(&file, &image_part(part, &labelled, &seg.label_map, &info)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_parse_with_reasons() {
        assert_eq!("1/4".parse::<Shard>(), Ok(Shard { index: 1, count: 4 }));
        assert!("4/4".parse::<Shard>().unwrap_err().contains("0 <= I < N"));
        assert!("1".parse::<Shard>().is_err());
    }
}
