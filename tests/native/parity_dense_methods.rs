//! The dense engine's SC-CLIP and ResCLIP against their authors' own code
//! (tools/dense_methods_reference.py runs SuleBai/SC-CLIP's and yvhangyang/ResCLIP's segmentors
//! unchanged, mmseg stubbed, on the random 12-block `clip-p16-deep`): the names' embeddings, each
//! name's cosine at the image's size (the logits their `postprocess_result` receives) to 1e-4,
//! and the label map pixel for pixel away from ties, on every backend. Each method's key steps,
//! switched off one at a time, fail the comparison.

use crate::common;

use common::{EMBED_TOL, Reference, all_close, backends, fixtures, image, load_model, read, to_vec};
use wordmask::clip::ClipModel;
use wordmask::nn::Resampling;
use wordmask::preprocess::Rounding;
use wordmask::segment::dense::{Dense, Method, Options};
use wordmask::segment::result::{ScoreMaps, Segmentation, full_scores};
use wordmask::segment::slide::Windows;
use wordmask::segment::{ClassEmbeddings, Engine, Model, PixelSteps, Templates, ThresholdOn};

/// Each name's cosine at the image's size: the bound of the issue.
const LOGIT_TOL: f32 = 1e-4;
/// A pixel whose merged maximum is this close to the threshold, or whose best two classes are
/// this close, may go either way by float rounding.
const TIE: f32 = 1e-4;

fn spec() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("dense-methods/runs.json")).unwrap()).unwrap()
}

fn reference() -> Reference {
    Reference { bytes: read(&fixtures().join("dense-methods/reference.safetensors")) }
}

fn run<'a>(spec: &'a serde_json::Value, tag: &str) -> &'a serde_json::Value {
    spec["runs"].as_array().unwrap().iter().find(|r| r["tag"] == tag).unwrap_or_else(|| panic!("no run {tag}"))
}

fn number(run: &serde_json::Value, key: &str) -> f32 {
    run[key].as_f64().unwrap_or_else(|| panic!("{} has no {key}", run["tag"])) as f32
}

/// The run's settings as the repositories' segmentors take them: 80 templates, mmcv's rounding,
/// positions at DINO's scale factor, the threshold on the synonyms' maximum.
fn options(run: &serde_json::Value) -> Options {
    let slide = run["slide"].as_array().map(|s| [0, 1].map(|k| s[k].as_u64().unwrap() as usize));
    let method: Method = serde_json::from_value(run["method"].clone()).unwrap();
    let mut opts = Options {
        method,
        templates: Templates::Imagenet80,
        windows: Windows {
            short_side: run["short_side"].as_u64().unwrap() as usize,
            window: slide.map_or(0, |s| s[0]),
            stride: slide.map_or(0, |s| s[1]),
            rounding: Rounding::Mmcv,
        },
        logit_scale: number(run, "logit_scale"),
        min_probability: number(run, "prob_thd"),
        threshold_on: ThresholdOn::Merged,
        positions: Resampling::ScaleFactor,
        background: Vec::new(),
        ..Options::default()
    };
    if !run["area_thd"].is_null() {
        opts.area_threshold = Some(number(run, "area_thd"));
    }
    if method == Method::ResClip {
        let pair = |key: &str| [0, 1].map(|i| run[key][i].as_f64().unwrap() as f32);
        let r = &mut opts.resclip;
        r.temp_threshold = number(run, "temp_thd");
        r.rcs_weights = pair("attn_rcs_weights");
        r.sfr_weights = pair("attn_sfr_weights");
        r.delete_same_entity = run["delete_same_entity"].as_bool().unwrap();
    }
    opts
}

/// Our logits and label map for `opts` against the reference run `tag`. The error says how far
/// apart they are.
fn check(model: &Model, spec: &serde_json::Value, opts: &Options, tag: &str) -> Result<(), String> {
    let reference = reference();
    let labels = wordmask::labels::parse(spec["labels"].as_str().unwrap()).unwrap();
    let classes = ClassEmbeddings::new(model, &labels, &[], opts.templates.prompts()).map_err(|e| e.to_string())?;
    let (want_names, _) = reference.get(&format!("{tag}.names"));
    all_close(&format!("{tag} names"), &to_vec(classes.names.clone()).unwrap(), &want_names, EMBED_TOL, false)?;
    let clip = model.network().downcast::<ClipModel>().expect("a CLIP checkpoint");
    let img = image(spec["image"].as_str().unwrap());
    let (w, h) = (img.width, img.height);
    let scores = Dense::scores(clip, &model.preprocessor, &img, &classes, opts).map_err(|e| e.to_string())?;
    let maps = wordmask::block_on(ScoreMaps::read(scores.maps)).map_err(|e| e.to_string())?;
    let names = classes.class_of_name.len();
    let raw = PixelSteps {
        softmax_scale: None,
        class_of_name: (0..names).collect(),
        classes: names,
        renormalise: false,
        threshold_on: ThresholdOn::Merged,
        fold_extra: false,
        area_threshold: None,
        dropped: Vec::new(),
    };
    let logits = full_scores(&maps, &raw, w, h);
    let (want_logits, _) = reference.get(&format!("{tag}.logits"));
    let logit_check = all_close(&format!("{tag} logits"), &logits, &want_logits, LOGIT_TOL, false);
    let worst = logits.iter().zip(&want_logits).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    eprintln!("{tag}: logits within {worst:.2e} of the reference");

    let merged_steps = PixelSteps { renormalise: false, ..scores.steps.clone() };
    let merged = full_scores(&maps, &merged_steps, w, h);
    let k = labels.len();
    let threshold = opts.min_probability;
    let seg = Segmentation::new(w, h, &labels, false, maps, scores.steps, threshold);
    let (want_labels, _) = reference.get(&format!("{tag}.labels"));
    let (mut differing, mut first) = (0, None);
    for i in 0..w * h {
        let mut sorted: Vec<f32> = (0..k).map(|c| merged[c * w * h + i]).collect();
        sorted.sort_by(|a, b| b.total_cmp(a));
        let tie = (sorted[0] - threshold).abs() < TIE || sorted[0] - sorted[1] < TIE;
        // Ours: 0 unlabelled, c + 1 class c; theirs: 0 class 0 or under the threshold, c class c.
        let (ours, theirs) = (seg.label_map.get(i).saturating_sub(1), want_labels[i] as usize);
        if ours != theirs && !tie {
            differing += 1;
            first.get_or_insert((i % w, i / w, ours, theirs));
        }
    }
    match (logit_check, first) {
        (Ok(()), None) => Ok(()),
        (logits, first) => Err(format!(
            "{tag}: {}; labels differ at {differing} of {} pixels{}",
            logits.err().unwrap_or_else(|| "logits agree".into()),
            w * h,
            first.map(|(x, y, a, b)| format!(", first at ({x}, {y}): ours {a}, reference {b}")).unwrap_or_default()
        )),
    }
}

fn check_all(tags: &[&str]) {
    let spec = spec();
    let mut failures = Vec::new();
    for (backend, device) in backends() {
        let model = load_model(spec["model"].as_str().unwrap(), &device);
        for &tag in tags {
            if let Err(e) = check(&model, &spec, &options(run(&spec, tag)), tag) {
                failures.push(format!("[{backend}] {e}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn scclip_matches_its_authors_code_on_every_backend() {
    check_all(&["scclip", "scclip-area"]);
}

/// SC-CLIP's steps, each switched off or moved, miss its reference: no outlier resolved, no
/// class token added back, another block's similarity, the fusion over other blocks; NACLIP's
/// scores miss it; and without `area_thd` the area run's labels differ.
#[test]
fn scclip_without_a_step_misses_its_authors_code() {
    let spec = spec();
    let device = wordmask::device::open(wordmask::Backend::Cpu).unwrap();
    let model = load_model(spec["model"].as_str().unwrap(), &device);
    let base = options(run(&spec, "scclip"));
    type Change = fn(&mut Options);
    let changes: [(&str, Change); 5] = [
        ("no outliers", |o| o.scclip.contamination = 0.0),
        ("no class token", |o| o.scclip.res_cls = 0.0),
        ("similarity at block 7", |o| o.scclip.pre_adjust = 7),
        ("fusion over blocks 2 to 9", |o| o.scclip.multi = (2, 9)),
        ("NACLIP", |o| o.method = Method::Naclip),
    ];
    for (what, change) in changes {
        let mut opts = base.clone();
        change(&mut opts);
        let err = check(&model, &spec, &opts, "scclip").expect_err(what);
        eprintln!("{what}: {err}");
    }
    // Without the area threshold the smaller class keeps its pixels.
    let area = Options { area_threshold: None, ..options(run(&spec, "scclip-area")) };
    let err = check(&model, &spec, &area, "scclip-area").expect_err("no area threshold");
    eprintln!("no area threshold: {err}");
}

#[test]
fn resclip_matches_its_authors_code_on_every_backend() {
    check_all(&["resclip", "resclip-whole"]);
}

/// ResCLIP's steps, each switched off, miss its reference: no semantic feedback, no residual
/// attention (λ 0), no path check, other blocks' attention; and NACLIP's scores miss it.
#[test]
fn resclip_without_a_step_misses_its_authors_code() {
    let spec = spec();
    let device = wordmask::device::open(wordmask::Backend::Cpu).unwrap();
    let model = load_model(spec["model"].as_str().unwrap(), &device);
    type Change = fn(&mut Options);
    let changes: [(&str, &str, Change); 5] = [
        ("no feedback", "resclip", |o| o.resclip.sfr = false),
        ("no residual attention", "resclip", |o| o.resclip.rcs_weights = [1.0, 0.0]),
        ("no path check", "resclip-whole", |o| o.resclip.delete_same_entity = false),
        ("attention of blocks 5 to 8", "resclip", |o| o.resclip.rcs_blocks = (4, 8)),
        ("NACLIP", "resclip", |o| o.method = Method::Naclip),
    ];
    for (what, tag, change) in changes {
        let mut opts = options(run(&spec, tag));
        change(&mut opts);
        let err = check(&model, &spec, &opts, tag).expect_err(what);
        eprintln!("{what}: {err}");
    }
}
