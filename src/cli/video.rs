//! `wordmask segment --video`: every frame of a video segmented with the typed words, its
//! scores smoothed over the frames before and its objects followed (`segment::temporal`), and
//! written as one label PNG a frame.
//!
//! Frames come from a `.y4m` file (`wordmask::video`, no codec), a folder of PNG and JPEG
//! frames (sorted by name, read as `--image` reads a photo), or any other file that `ffmpeg` on
//! the PATH decodes (`.mp4`, `.webm`, ...), piped through the same Y4M reader.
//!
//! With `--sam`, each frame gets sharp edges, Segment Anything prompted by the previous
//! frame's objects (`segment_frame_sharp`).

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};

use anyhow::{Context, Result, bail};
use image::{ImageBuffer, Luma};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use super::outputs::{self, write_labels_png, write_overlay};
use super::{ModelArgs, load_prompt_model, read_image};
use wordmask::labels;
use wordmask::preprocess::RgbImage;
use wordmask::segment::objects::instance_map;
use wordmask::segment::point::PromptSession;
use wordmask::segment::refine::RefineOptions;
use wordmask::segment::temporal::{TemporalOptions, Video};
use wordmask::segment::{EmbeddingCache, Settings, segment_frame, segment_frame_sharp};
use wordmask::video::Y4m;

/// Frame files a folder of frames holds, by extension (the photos `--image` reads).
const FRAME_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];
/// The summary written beside the frames.
pub const SUMMARY_FILE: &str = "video.json";
/// The folder of the objects' id maps, in `--out`.
pub const OBJECTS_DIR: &str = "objects";

/// Where frames come from.
enum Frames {
    Y4m(Y4m<BufReader<File>>),
    Folder(Vec<PathBuf>, usize),
    Ffmpeg(Child, Y4m<BufReader<ChildStdout>>),
}

/// ffmpeg's arguments: the first video stream as full-range BT.601 4:4:4 in a Y4M stream on
/// its output, which is what the Y4M reader converts exactly (ffmpeg tags full range
/// `XCOLORRANGE=FULL`).
const FFMPEG_ARGS: [&str; 9] = [
    "-map",
    "0:v:0",
    "-vf",
    "scale=out_color_matrix=bt601:out_range=full",
    "-pix_fmt",
    "yuv444p",
    "-f",
    "yuv4mpegpipe",
    "-",
];

impl Frames {
    fn open(input: &Path) -> Result<Frames> {
        let name = input.display().to_string();
        if input.is_dir() {
            return Ok(Frames::Folder(list_frames(input)?, 0));
        }
        let extension = input.extension().map(|e| e.to_string_lossy().to_lowercase()).unwrap_or_default();
        if extension == "y4m" {
            let file = File::open(input).with_context(|| format!("cannot read video {name}"))?;
            return Ok(Frames::Y4m(Y4m::new(BufReader::new(file), &name)?));
        }
        if !input.is_file() {
            bail!("--video {name}: no such file or folder");
        }
        let mut child = Command::new("ffmpeg")
            .args(["-v", "error", "-nostdin", "-i"])
            .arg(input)
            .args(FFMPEG_ARGS)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => anyhow::anyhow!(
                    "--video {name}: reading .{extension} files needs ffmpeg on the PATH, and there is none; install ffmpeg, or give a .y4m file or a folder of PNG frames"
                ),
                _ => anyhow::anyhow!("--video {name}: cannot start ffmpeg: {e}"),
            })?;
        let stdout = child.stdout.take().context("ffmpeg's output")?;
        match Y4m::new(BufReader::new(stdout), &name) {
            Ok(y4m) => Ok(Frames::Ffmpeg(child, y4m)),
            Err(e) => {
                let status = child.wait().ok();
                bail!("--video {name}: ffmpeg gave no video ({e}; ffmpeg {})", describe(status));
            }
        }
    }

    /// How many frames there are, where that is known before reading them.
    fn count(&self, input: &Path) -> Option<u64> {
        match self {
            Frames::Folder(paths, _) => Some(paths.len() as u64),
            Frames::Y4m(y4m) => {
                let bytes = std::fs::metadata(input).ok()?.len();
                let frame = y4m.header.frame_bytes().ok()? as u64 + 6;
                Some(bytes / frame)
            }
            Frames::Ffmpeg(..) => None,
        }
    }

    fn next(&mut self) -> Result<Option<RgbImage>> {
        match self {
            Frames::Y4m(y4m) => Ok(y4m.next_frame()?),
            Frames::Folder(paths, next) => {
                let Some(path) = paths.get(*next) else { return Ok(None) };
                *next += 1;
                Ok(Some(read_image(&path.display().to_string())?))
            }
            Frames::Ffmpeg(child, y4m) => match y4m.next_frame()? {
                Some(frame) => Ok(Some(frame)),
                None => {
                    let status = child.wait().context("waiting for ffmpeg")?;
                    if !status.success() {
                        bail!("ffmpeg stopped with {}", describe(Some(status)));
                    }
                    Ok(None)
                }
            },
        }
    }
}

/// An `f32` as typed (0.7, not 0.699999988079071 as its `f64` value prints).
fn shown(value: f32) -> f64 {
    value.to_string().parse().unwrap_or(f64::from(value))
}

fn describe(status: Option<std::process::ExitStatus>) -> String {
    status.map_or_else(|| "gone".into(), |s| s.to_string())
}

/// The frames of a folder: its PNG and JPEG files (not its subfolders), sorted by name.
fn list_frames(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("--video {}: cannot read the folder", dir.display()))?;
    let mut paths = Vec::new();
    for entry in entries {
        let path = entry.with_context(|| format!("--video {}: cannot read the folder", dir.display()))?.path();
        let extension = path.extension().map(|e| e.to_string_lossy().to_lowercase()).unwrap_or_default();
        if path.is_file() && FRAME_EXTENSIONS.contains(&extension.as_str()) {
            paths.push(path);
        }
    }
    paths.sort();
    Ok(paths)
}

/// A frame's file name: its number from 1, six digits (more past 999,999 frames).
pub fn frame_name(number: usize) -> String {
    format!("{number:06}.png")
}

/// `segment --video`'s flags, with `segment`'s.
pub struct Run<'a> {
    pub input: &'a Path,
    pub model: &'a ModelArgs,
    pub labels: &'a str,
    pub settings: &'a Settings,
    /// Sharp edges: a Segment Anything checkpoint folder.
    pub sam: Option<&'a str>,
    pub smooth: f32,
    pub out: &'a Path,
    pub overlay: Option<&'a Path>,
    pub json: bool,
}

pub fn run(args: &Run) -> Result<()> {
    let labels = labels::parse(args.labels)?;
    let options = TemporalOptions::with_strength(args.smooth)?;
    for (option, dir) in std::iter::once(("--out", args.out)).chain(args.overlay.map(|o| ("--overlay", o))) {
        if wordmask::files::same(dir, args.input) {
            bail!(
                "{option} {} is the video's own folder; the frames would be written among the frames read",
                dir.display()
            );
        }
        if dir.is_file() {
            bail!("{option} {}: with --video this is a folder, and a file of that name is there", dir.display());
        }
    }
    let mut frames = Frames::open(args.input)?;
    for dir in [Some(args.out.to_path_buf()), Some(args.out.join(OBJECTS_DIR)), args.overlay.map(Path::to_path_buf)]
        .into_iter()
        .flatten()
    {
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create the folder {}", dir.display()))?;
    }
    let model = super::load(&args.model.model, args.model.runtime)?;
    let mut session =
        args.sam.map(|dir| load_prompt_model(dir, args.model.runtime)).transpose()?.map(PromptSession::new);
    let refine = RefineOptions::default();
    let mut video = Video::new(options)?;
    let mut cache = EmbeddingCache::default();
    // A bar where the frames can be counted first; ffmpeg's stream counts as it goes.
    let (bar, template) = match frames.count(args.input) {
        Some(n) => (ProgressBar::new(n), "{bar:30} {pos}/{len} frames, {eta} left  {wide_msg}"),
        None => (ProgressBar::new_spinner(), "{spinner} {pos} frames, {per_sec}  {wide_msg}"),
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    let mut records = Vec::new();
    let mut size = None;
    while let Some(frame) = frames.next()? {
        let number = records.len() + 1;
        if *size.get_or_insert((frame.width, frame.height)) != (frame.width, frame.height) {
            bail!(
                "frame {number} is {}x{}, the frames before {}x{}: a video's frames are all of one size",
                frame.width,
                frame.height,
                size.map_or(0, |s| s.0),
                size.map_or(0, |s| s.1)
            );
        }
        let done = match session.as_mut() {
            Some(session) => wordmask::block_on(segment_frame_sharp(
                &model,
                &frame,
                &labels,
                args.settings,
                &mut cache,
                &mut video,
                session,
                &refine,
            )),
            None => wordmask::block_on(segment_frame(&model, &frame, &labels, args.settings, &mut cache, &mut video)),
        }
        .with_context(|| format!("frame {number}"))?;
        let (seg, report) = (&done.segmented.segmentation, &done.report);
        let name = frame_name(number);
        write_labels_png(seg, &args.out.join(&name))?;
        let ids = instance_map(&report.objects, seg.width, seg.height);
        let png = ImageBuffer::<Luma<u16>, Vec<u16>>::from_raw(seg.width as u32, seg.height as u32, ids)
            .context("object map size")?;
        outputs::save(&args.out.join(OBJECTS_DIR).join(&name), |out| png.write_to(out, image::ImageFormat::Png))?;
        if let Some(dir) = args.overlay {
            write_overlay(seg, &frame, 0.55, &dir.join(&name))?;
        }
        let (shares, unlabelled) = seg.shares();
        records.push(json!({
            "frame": number, "file": name, "reset": report.reset, "moving": report.moving,
            "histogram_change": report.histogram_change, "labels": shares, "unlabelled": unlabelled,
            "objects": report.objects, "timings_ms": done.segmented.timings,
            "sharp_ms": done.sharp_ms.map(|(encode, prompts)| json!({"encode": encode, "prompts": prompts})),
        }));
        bar.set_message(format!("{} objects", report.objects.len()));
        bar.inc(1);
    }
    bar.finish_and_clear();
    if records.is_empty() {
        bail!("--video {}: the video has no frames", args.input.display());
    }
    let cuts = records.iter().filter(|r| r["reset"] == "cut").count();
    let ids: std::collections::BTreeSet<u64> = records
        .iter()
        .flat_map(|r| r["objects"].as_array().into_iter().flatten())
        .filter_map(|o| o["id"].as_u64())
        .collect();
    let summary = json!({
        "video": args.input.display().to_string(), "frames": records.len(), "smooth": shown(args.smooth),
        "sharp": args.sam.is_some(),
        "width": size.map_or(0, |s| s.0), "height": size.map_or(0, |s| s.1),
        "labels": labels.iter().map(|l| &l.name).collect::<Vec<_>>(), "scene_cuts": cuts, "objects": ids.len(),
    });
    let mut file = summary.clone();
    file["per_frame"] = json!(records);
    let text = serde_json::to_vec_pretty(&file).context("the video summary")?;
    wordmask::files::write_bytes(&args.out.join(SUMMARY_FILE), &text)?;
    if args.json {
        println!("{summary}");
    } else {
        println!(
            "{} frames, {} scene cuts, {} objects followed (smoothing {}); wrote {}",
            records.len(),
            cuts,
            ids.len(),
            args.smooth,
            args.out.display()
        );
    }
    Ok(())
}
