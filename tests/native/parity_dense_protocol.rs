//! The dense engine under the papers' protocol against tools/dense_protocol_reference.py
//! (PyTorch, the papers' code's formulas on transformers' CLIP), in the three places where it
//! differs from transformers' way: the threshold read on a class's synonym maximum before
//! renormalising, the position table resampled at DINO's scale factor off the checkpoint's
//! grid, and the resized long side rounded half up (mmcv). Each is checked on every backend,
//! and each is shown to fail the other way.

use crate::common;

use common::{Reference, all_close, backends, fixtures, image, load_model, read, to_vec};
use wordmask::clip::ClipModel;
use wordmask::nn::Resampling;
use wordmask::preprocess::Rounding;
use wordmask::segment::dense::{Dense, Options};
use wordmask::segment::result::{ScoreMaps, Segmentation, full_scores};
use wordmask::segment::slide::Windows;
use wordmask::segment::{ClassEmbeddings, Engine, Model, Templates, ThresholdOn};

/// Probabilities after a temperature of 40: cosine errors of ~1e-6 grow by that factor (as
/// parity_dense's).
const TOP_TOL: f32 = 2e-4;
/// Resampled position tables are computed on the host in f32 as PyTorch's kernel does.
const POSITION_TOL: f32 = 1e-5;
/// A pixel whose merged maximum is this close to the threshold, or whose best two classes are
/// this close, may go either way by float rounding.
const TIE: f32 = 1e-4;

fn spec() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("dense-protocol/runs.json")).unwrap()).unwrap()
}

fn reference() -> Reference {
    Reference { bytes: read(&fixtures().join("dense-protocol/reference.safetensors")) }
}

/// The papers' protocol for a run of the spec: their threshold order always, their positions
/// and rounding where the run says `paper`.
fn options(run: &serde_json::Value) -> Options {
    let slide = run["slide"].as_array().map(|s| [0, 1].map(|k| s[k].as_u64().unwrap() as usize));
    let paper = run["paper"].as_bool().unwrap();
    Options {
        method: serde_json::from_value(run["method"].clone()).unwrap(),
        templates: Templates::Single,
        windows: Windows {
            short_side: run["short_side"].as_u64().unwrap() as usize,
            window: slide.map_or(0, |s| s[0]),
            stride: slide.map_or(0, |s| s[1]),
            rounding: if paper { Rounding::Mmcv } else { Rounding::Transformers },
        },
        logit_scale: run["logit_scale"].as_f64().unwrap() as f32,
        threshold_on: ThresholdOn::Merged,
        positions: if paper { Resampling::ScaleFactor } else { Resampling::Transformers },
        background: Vec::new(),
        ..Options::default()
    }
}

/// Our label map and merged maxima for `opts`, against the reference run `tag`: the maxima to
/// [`TOP_TOL`], the labels pixel for pixel away from ties. The error says how far apart.
fn check(model: &Model, spec: &serde_json::Value, opts: &Options, tag: &str) -> Result<(), String> {
    let labels = wordmask::labels::parse(spec["labels"].as_str().unwrap()).unwrap();
    let threshold = spec["threshold"].as_f64().unwrap() as f32;
    let classes = ClassEmbeddings::new(model, &labels, &[], opts.templates.prompts()).map_err(|e| e.to_string())?;
    let clip = model.network().downcast::<ClipModel>().expect("a CLIP checkpoint");
    let img = image(spec["image"].as_str().unwrap());
    let (w, h) = (img.width, img.height);
    let scores = Dense::scores(clip, &model.preprocessor, &img, &classes, opts).map_err(|e| e.to_string())?;
    let maps = wordmask::block_on(ScoreMaps::read(scores.maps)).map_err(|e| e.to_string())?;
    // The merged maxima before renormalising: the steps without the renormalisation.
    let merged_steps = wordmask::segment::PixelSteps { renormalise: false, ..scores.steps.clone() };
    let merged = full_scores(&maps, &merged_steps, w, h);
    let k = labels.len();
    let top: Vec<f32> = (0..w * h).map(|i| (0..k).map(|c| merged[c * w * h + i]).fold(f32::MIN, f32::max)).collect();
    let seg = Segmentation::new(w, h, &labels, false, maps, scores.steps, threshold);

    let reference = reference();
    let (want_top, _) = reference.get(&format!("{tag}.top"));
    let (want_labels, _) = reference.get(&format!("{tag}.labels"));
    let top_check = all_close(&format!("{tag} merged maxima"), &top, &want_top, TOP_TOL, false);
    let worst = top.iter().zip(&want_top).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    eprintln!("{tag}: merged maxima within {worst:.2e} of the reference");
    let mut differing = 0;
    let mut first = None;
    for i in 0..w * h {
        let mut sorted: Vec<f32> = (0..k).map(|c| merged[c * w * h + i]).collect();
        sorted.sort_by(|a, b| b.total_cmp(a));
        let tie = (want_top[i] - threshold).abs() < TIE || sorted[0] - sorted[1] < TIE;
        let (ours, theirs) = (seg.label_map.get(i), want_labels[i] as usize);
        if ours != theirs && !tie {
            differing += 1;
            first.get_or_insert((i % w, i / w, ours, theirs));
        }
    }
    match (top_check, first) {
        (Ok(()), None) => Ok(()),
        (top, first) => Err(format!(
            "{tag}: {}; labels differ at {differing} of {} pixels ({:.1} %){}",
            top.err().unwrap_or_else(|| "merged maxima agree".into()),
            w * h,
            100.0 * differing as f64 / (w * h) as f64,
            first.map(|(x, y, a, b)| format!(", first at ({x}, {y}): ours {a}, reference {b}")).unwrap_or_default()
        )),
    }
}

#[test]
fn the_papers_protocol_matches_the_reference_on_every_backend() {
    let spec = spec();
    let mut failures = Vec::new();
    for (backend, device) in backends() {
        let model = load_model(spec["model"].as_str().unwrap(), &device);
        for run in spec["runs"].as_array().unwrap() {
            if let Err(e) = check(&model, &spec, &options(run), run["tag"].as_str().unwrap()) {
                failures.push(format!("[{backend}] {e}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The tables themselves: ours at DINO's scale factor equal PyTorch's `interpolate` with
/// `scale_factor=((gh + 0.1) / n, (gw + 0.1) / n)`, and transformers' way does not.
#[test]
fn position_tables_resample_at_the_papers_scale_factor_on_every_backend() {
    let spec = spec();
    let reference = reference();
    let mut failures = Vec::new();
    for (backend, device) in backends() {
        let model = load_model(spec["model"].as_str().unwrap(), &device);
        let clip = model.network().downcast::<ClipModel>().expect("a CLIP checkpoint");
        for grid in spec["grids"].as_array().unwrap() {
            let [gh, gw] = [0, 1].map(|k| grid[k].as_u64().unwrap() as usize);
            let (want, _) = reference.get(&format!("positions.{gh}x{gw}"));
            let table = |r| to_vec(clip.vision_model.positions.resampled(gh, gw, r)).unwrap();
            let what = format!("[{backend}] positions {gh}x{gw}");
            if let Err(e) = all_close(&what, &table(Resampling::ScaleFactor), &want, POSITION_TOL, false) {
                failures.push(e);
            }
            let size = all_close(&what, &table(Resampling::Transformers), &want, POSITION_TOL, false);
            assert!(size.is_err(), "{what}: transformers' resampling meets the scale factor's");
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Each difference, undone on its own, fails its run: the threshold read after renormalising,
/// the table resampled to size, the long side truncated.
#[test]
fn each_of_the_papers_ways_is_needed() {
    let spec = spec();
    let device = wordmask::device::open(wordmask::Backend::Cpu).unwrap();
    let model = load_model(spec["model"].as_str().unwrap(), &device);
    let run = |tag: &str| spec["runs"].as_array().unwrap().iter().find(|r| r["tag"] == tag).unwrap().clone();
    type Undo = fn(Options) -> Options;
    let undone: [(&str, Undo); 4] = [
        ("threshold", |o| Options { threshold_on: ThresholdOn::Renormalised, ..o }),
        ("positions-whole", |o| Options { positions: Resampling::Transformers, ..o }),
        ("positions-window", |o| Options { positions: Resampling::Transformers, ..o }),
        ("rounding-whole", |o| Options { windows: Windows { rounding: Rounding::Transformers, ..o.windows }, ..o }),
    ];
    for (tag, undo) in undone {
        let err = check(&model, &spec, &undo(options(&run(tag))), tag).expect_err(tag);
        eprintln!("undone: {err}");
    }
}
