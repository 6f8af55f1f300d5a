//! What each fuzz target does with its input, shared with the stable regression test
//! (`tests/native/fuzz_regressions.rs` runs every file under `fuzz/regressions/<target>/` through the
//! same function). Each function may return early on input the project refuses; it must never
//! panic, hang or allocate without bound, and what it accepts must hold its invariants.
#![allow(dead_code)]

use wordmask::bert::WordPiece;
use wordmask::checkpoint::Checkpoint;
use wordmask::labels::{self, MAX_LABEL_CHARS, MAX_LABELS};
use wordmask::preprocess::{MAX_RESIZED_SIDE, RgbImage, checked_short_side_size};
use wordmask::segment::point::{Click, Prompt, PromptModel};
use wordmask::segment::slide::{MAX_SCORE_VALUES, check_score_values};
use wordmask::segment::{ENGINES, EmbeddingCache, Model, Settings, Words};
use wordmask::tokenizer::Tokenizer;
use wordmask::video::Y4m;

/// Tensors larger than this are not converted: the loader converts only tensors whose shape
/// the model's config asked for (checked first, from the index alone), so a crafted shape never
/// reaches the conversion.
const READ_LIMIT: usize = 1 << 22;

/// The safetensors reader and the torch zip + pickle reader: open, list, convert.
pub fn checkpoint(data: &[u8]) {
    let Ok(checkpoint) = Checkpoint::from_bytes(data, "fuzz input") else { return };
    let names: Vec<String> = checkpoint.names().map(str::to_string).collect();
    assert_eq!(names.len(), checkpoint.len());
    for name in names {
        let entry = checkpoint.get(&name).expect("a listed name is found");
        let Some(count) = entry.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d)) else { continue };
        if count > READ_LIMIT {
            continue;
        }
        if let Ok(values) = checkpoint.read_f32(&name) {
            assert_eq!(values.len(), count, "tensor {name} converted to the wrong length");
            // What a model loads: the same values, refused where one is NaN or infinite.
            match checkpoint.read_finite_f32(&name) {
                Ok(finite) => assert!(
                    finite.iter().zip(&values).all(|(a, b)| a.to_bits() == b.to_bits() && a.is_finite()),
                    "tensor {name}: the checked read differs or holds a non-finite value"
                ),
                Err(_) => assert!(values.iter().any(|v| !v.is_finite()), "tensor {name} refused while finite"),
            }
        }
    }
}

const CLIP_WEIGHTS: &[u8] = include_bytes!("../tests/fixtures/semantic-colours/model.safetensors");
const GROUPVIT_WEIGHTS: &[u8] = include_bytes!("../tests/fixtures/semantic-colours-groupvit/model.safetensors");
const SAM_WEIGHTS: &[u8] = include_bytes!("../tests/fixtures/sam-tiny/model.safetensors");
const SEGCLIP_WEIGHTS: &[u8] = include_bytes!("../tests/fixtures/semantic-colours-segclip/model.safetensors");

/// `config.json` (and, after a NUL byte, `preprocessor_config.json`) over fixed small weights:
/// parse, check against the weights, and when it loads, run it once on a small image.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (config, preprocessor) = match text.split_once('\0') {
        Some((config, preprocessor)) => (config, Some(preprocessor)),
        None => (text, None),
    };
    let device = wordmask::device::cpu().expect("the CPU backend");
    let Ok(kind) = wordmask::network::model_type(config) else { return };
    let image = RgbImage::new(20, 14, (0..20 * 14 * 3).map(|i| (i * 37 % 251) as u8).collect()).unwrap();
    if kind == "sam" {
        let Ok(model) = PromptModel::from_bytes(config, SAM_WEIGHTS, "model.safetensors", preprocessor, &device) else {
            return;
        };
        let Ok(encoded) = wordmask::block_on(model.encode(&image)) else { return };
        let prompt = Prompt { points: vec![Click { x: 3.0, y: 4.0, positive: true }], bbox: None };
        if let Ok(mask) = wordmask::block_on(model.segment(&encoded, &prompt)) {
            assert_eq!(mask.mask.len(), 20 * 14, "a mask of the image's size");
        }
        return;
    }
    let weights = match kind.as_str() {
        "groupvit" => GROUPVIT_WEIGHTS,
        "segclip" => SEGCLIP_WEIGHTS,
        _ => CLIP_WEIGHTS,
    };
    let Ok(model) = Model::from_bytes(config, weights, "model.safetensors", preprocessor, &device) else { return };
    let labels = labels::parse("red, green").unwrap();
    // Small, except for SegCLIP, whose windows are its input size.
    let short_side = if kind == "segclip" { 224 } else { 32 };
    let settings = Settings { short_side: Some(short_side), ..Settings::default() };
    let mut cache = EmbeddingCache::default();
    let segmented = wordmask::segment::segment(&model, &image, &labels, &settings, &mut cache);
    if let Ok(result) = wordmask::block_on(segmented).map(|s| s.segmentation) {
        assert_eq!(result.label_map.len(), 20 * 14, "a label map of the image's size");
    }
}

/// The label grammar (typed lists, class files, background words).
pub fn labels(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(labels) = labels::parse(&text) {
        assert!(!labels.is_empty() && labels.len() <= MAX_LABELS, "{} labels accepted", labels.len());
        for label in &labels {
            assert!(!label.synonyms.is_empty() && label.name == label.synonyms[0]);
            for s in &label.synonyms {
                assert!(!s.is_empty() && s.trim() == s && s.chars().count() <= MAX_LABEL_CHARS, "synonym {s:?}");
                assert!(!s.contains([',', '\n', ';', '|']), "synonym {s:?} holds a separator");
            }
        }
    }
    if let Ok(labels) = labels::parse_class_file(&text) {
        assert!(!labels.is_empty() && labels.len() <= MAX_LABELS);
    }
    if let Ok(words) = text.parse::<Words>() {
        assert!(words.0.iter().all(|w| !w.is_empty()));
    }
}

/// The CLIP tokenizer: any text gives start, body and end within the context.
pub fn tokenizer(data: &[u8]) {
    // Built once: the vocabulary takes longer to read than most inputs take to encode.
    static TOKENIZER: std::sync::OnceLock<Tokenizer> = std::sync::OnceLock::new();
    let text = String::from_utf8_lossy(data);
    let tokenizer = TOKENIZER.get_or_init(Tokenizer::new);
    for context in [77, 2, 5] {
        let ids = tokenizer.encode(&text, context);
        assert!(ids.len() >= 2 && ids.len() <= context.max(2), "{} ids for a context of {context}", ids.len());
        assert_eq!(ids[0], tokenizer.start_of_text());
        assert_eq!(*ids.last().unwrap(), tokenizer.end_of_text());
    }
    let batch = tokenizer.encode_batch(&[&text, "a photo of a cat."], 77);
    assert_eq!(batch[0].len(), batch[1].len(), "a padded batch is rectangular");
}

/// BERT's WordPiece: text through the test vocabulary (tests/fixtures/bert-tiny), and, before a
/// NUL byte, a `vocab.txt` of the input's own (refused when it lacks the special tokens). Ids
/// stay inside the vocabulary, `[CLS]` first and `[SEP]` last, the same text gives the same ids.
pub fn wordpiece(data: &[u8]) {
    static VOCAB: std::sync::OnceLock<WordPiece> = std::sync::OnceLock::new();
    let text = String::from_utf8_lossy(data);
    let fixed = VOCAB.get_or_init(|| {
        WordPiece::from_vocab_txt(include_str!("../tests/fixtures/bert-tiny/vocab.txt"), true)
            .expect("the test vocabulary")
    });
    let (own, text) = match text.split_once('\0') {
        Some((vocab, text)) => (WordPiece::from_vocab_txt(vocab, true).ok(), text),
        None => (None, text.as_ref()),
    };
    for tokenizer in std::iter::once(fixed).chain(own.as_ref()) {
        let ids = tokenizer.encode(text);
        assert!(ids.len() >= 2, "{} ids", ids.len());
        assert!(ids.iter().all(|&id| (id as usize) < tokenizer.vocab_size()), "an id outside the vocabulary");
        assert_eq!(ids, tokenizer.encode(text), "the same text gave other ids");
    }
    let ids = fixed.encode(text);
    // [CLS] and [SEP] of tests/fixtures/bert-tiny/vocab.txt.
    assert_eq!((ids[0], ids[ids.len() - 1]), (5, 6), "[CLS] … [SEP]");
}

/// Argument vectors (words separated by NUL bytes) for the segmentation settings of `segment`,
/// `eval` and `bench`: the core's `Settings`, the very clap arguments the CLI flattens into
/// those commands, with `--labels`. Where clap accepts them, the checks the CLI runs before a
/// model is loaded: the labels, every engine's resolution of the settings, and the sizes they
/// give a 640x480 photo. Nothing loads a model.
pub fn cli_args(data: &[u8]) {
    use clap::{Args, FromArgMatches};
    let text = String::from_utf8_lossy(data);
    let argv = std::iter::once("segment").chain(text.split('\0'));
    let labels_arg = clap::Arg::new("labels").long("labels");
    let command = Settings::augment_args(clap::Command::new("segment").arg(labels_arg));
    let Ok(matches) = command.try_get_matches_from(argv) else { return };
    let settings = Settings::from_arg_matches(&matches).expect("what clap accepted converts to settings");
    let names = match matches.get_one::<String>("labels") {
        Some(typed) => {
            labels(typed.as_bytes());
            labels::parse(typed).map_or(1, |l| l.iter().map(|l| l.synonyms.len()).sum())
        }
        None => 1,
    };
    for engine in ENGINES {
        let Ok(request) = engine.request(&settings) else { continue };
        let plan = &request.plan;
        assert!((0.0..=1.0).contains(&plan.threshold), "{}: threshold {} accepted", engine.name(), plan.threshold);
        let w = plan.windows;
        // 0: the image as it is (Fusioner's setting).
        let sized = (16..=4096).contains(&w.short_side);
        assert!(sized || w.short_side == 0, "{}: short side {} accepted", engine.name(), w.short_side);
        if let Some((window, stride)) = w.slide() {
            assert!(window >= 16 && (1..=window).contains(&stride), "window {window}, stride {stride} accepted");
        }
        if sized && let Ok((rw, rh)) = checked_short_side_size(640, 480, w.short_side) {
            assert!(rw.max(rh) <= MAX_RESIZED_SIDE && rw.min(rh) == w.short_side, "{rw}x{rh} for {}", w.short_side);
            let rows = names + plan.background.len() + usize::from(plan.engine_background);
            let _ = check_score_values(rows, rw, rh, w.short_side, MAX_SCORE_VALUES);
        }
    }
}

/// The Y4M reader: a stream read frame by frame (the first few), each frame of the header's size
/// as RGB, or a refusal; never a panic.
pub fn y4m(data: &[u8]) {
    let Ok(mut video) = Y4m::new(data, "fuzz input") else { return };
    let (width, height) = (video.header.width, video.header.height);
    for _ in 0..4 {
        match video.next_frame() {
            Ok(Some(frame)) => {
                assert_eq!((frame.width, frame.height), (width, height), "a frame of another size than the header's");
                assert_eq!(frame.data.len(), width * height * 3);
            }
            Ok(None) | Err(_) => return,
        }
    }
}
