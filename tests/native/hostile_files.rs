//! Files made to hurt, one test per kind: pickles that grow without bound, nest past the stack
//! or name a callable; tensors of the wrong rank or over each other's bytes; configs with
//! absurd numbers; weights holding NaN. Each case runs the command a user would and checks that
//! it stops with an error naming what was wrong, without a panic, in bounded memory.
//!
//! The pickles are written here the way `torch.save` writes a state dict (protocol 2, a zip of
//! `archive/data.pkl` and one stored entry per storage), so each hostile file differs from a
//! real checkpoint by the one thing it tests. `bad_input.rs` makes its rows' files with the
//! same helpers.

use crate::common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Cli, fixtures, scratch};
use wordmask::checkpoint::Checkpoint;

/// Peak resident memory a command may reach on these files (all under 1.2 MB). The CLI on the
/// CPU backend with the colour fixtures peaks near 60 MiB; a memo bomb left alone passes any
/// bound in seconds.
const PEAK_LIMIT_MB: f64 = 512.0;

/// A pickle program, protocol 2, as `torch.save` writes one.
pub struct Pickle(Vec<u8>);

impl Pickle {
    pub fn new() -> Self {
        Pickle(vec![0x80, 2])
    }

    /// Raw opcodes.
    pub fn op(mut self, bytes: &[u8]) -> Self {
        self.0.extend_from_slice(bytes);
        self
    }

    /// `BINUNICODE`.
    pub fn str(self, s: &str) -> Self {
        let len = (s.len() as u32).to_le_bytes();
        self.op(b"X").op(&len).op(s.as_bytes())
    }

    /// `BININT`.
    pub fn int(self, n: usize) -> Self {
        self.op(b"J").op(&(n as i32).to_le_bytes())
    }

    /// `GLOBAL module name`.
    pub fn global(self, module: &str, name: &str) -> Self {
        self.op(b"c").op(module.as_bytes()).op(b"\n").op(name.as_bytes()).op(b"\n")
    }

    /// `(` items `t`: a tuple of integers.
    pub fn ints(self, values: &[usize]) -> Self {
        values.iter().fold(self.op(b"("), |p, &v| p.int(v)).op(b"t")
    }

    /// `_rebuild_tensor_v2(storage, 0, shape, contiguous strides, False, OrderedDict())` of
    /// float storage `key`.
    pub fn tensor(self, key: &str, shape: &[usize]) -> Self {
        let numel = shape.iter().product();
        let mut strides = vec![1; shape.len()];
        for i in (0..shape.len().saturating_sub(1)).rev() {
            strides[i] = strides[i + 1] * shape[i + 1];
        }
        self.global("torch._utils", "_rebuild_tensor_v2")
            .op(b"((")
            .str("storage")
            .global("torch", "FloatStorage")
            .str(key)
            .str("cpu")
            .int(numel)
            .op(b"tQ")
            .int(0)
            .ints(shape)
            .ints(&strides)
            .op(b"\x89")
            .global("collections", "OrderedDict")
            .op(b")Rt")
            .op(b"R")
    }

    pub fn stop(self) -> Vec<u8> {
        self.op(b".").0
    }
}

/// A `torch.save` zip of `pickle` (as `archive/data.pkl`) and its storages.
pub fn torch_zip(pickle: &[u8], storages: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("archive/data.pkl", stored).unwrap();
    zip.write_all(pickle).unwrap();
    for (key, bytes) in storages {
        zip.start_file(format!("archive/data/{key}"), stored).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

/// A state dict of f32 tensors `(name, shape, values)` as `torch.save` writes it, with `extra`
/// (key and value opcodes) added to the dict after them.
pub fn torch_bin(tensors: &[(String, Vec<usize>, Vec<f32>)], extra: Option<Pickle>) -> Vec<u8> {
    let mut pickle = Pickle::new().global("collections", "OrderedDict").op(b")R(");
    let mut storages = Vec::new();
    for (i, (name, shape, values)) in tensors.iter().enumerate() {
        pickle = pickle.str(name).tensor(&i.to_string(), shape);
        storages.push((i.to_string(), values.iter().flat_map(|v| v.to_le_bytes()).collect()));
    }
    if let Some(extra) = extra {
        pickle = pickle.op(&extra.0[2..]);
    }
    torch_zip(&pickle.op(b"u").stop(), &storages)
}

/// Every tensor of a fixture's weights file, as f32.
pub fn tensors_of(path: &Path) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).unwrap();
    let checkpoint = Checkpoint::from_bytes(&bytes, "fixture").unwrap();
    checkpoint
        .names()
        .map(|n| (n.to_string(), checkpoint.get(n).unwrap().shape.clone(), checkpoint.read_f32(n).unwrap()))
        .collect()
}

/// 1.2 KB that the reader of old copied 64 times a round: a list of 200 items memoised, then a
/// list of 64 copies of it, memoised, and so on (200 · 64⁶ items after six rounds).
pub fn memo_bomb() -> Vec<u8> {
    let mut program = Pickle::new().op(b"](").op(&b"N".repeat(200)).op(b"e");
    for round in 0..6u8 {
        program = program.op(&[b'q', round, b']', b'(']).op(&[b'h', round].repeat(64)).op(b"e");
    }
    torch_zip(&program.stop(), &[])
}

/// A megabyte of nested tuples (`EMPTY_TUPLE`, then `TUPLE1` a million times): a million levels,
/// which a reader that drops or copies a value by recursion overflows its stack on.
pub fn deep_tuples() -> Vec<u8> {
    torch_zip(&Pickle::new().op(b")").op(&vec![0x85; 1 << 20]).stop(), &[])
}

/// The colour CLIP's state dict with one more entry: `os.system("echo owned")`.
pub fn calls_os_system() -> Vec<u8> {
    let tensors = tensors_of(&fixtures().join("semantic-colours/model.safetensors"));
    let call = Pickle::new().str("hook").global("os", "system").op(b"(").str("echo owned").op(b"tR");
    torch_bin(&tensors, Some(call))
}

/// `tests/fixtures/segclip/segclip-release.bin` rewritten with `name` reshaped to `shape` (the
/// same values, another number of axes).
pub fn segclip_reshaped(name: &str, shape: Vec<usize>) -> Vec<u8> {
    let mut tensors = tensors_of(&fixtures().join("segclip/segclip-release.bin"));
    let tensor = tensors.iter_mut().find(|(n, ..)| n == name).unwrap_or_else(|| panic!("no {name}"));
    assert_eq!(tensor.1.iter().product::<usize>(), shape.iter().product::<usize>());
    tensor.1 = shape;
    torch_bin(&tensors, None)
}

/// A safetensors file's header and data, to edit one and write both back.
pub fn edit_safetensors(bytes: &[u8], edit: impl FnOnce(&mut serde_json::Value, &mut Vec<u8>)) -> Vec<u8> {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let mut data = bytes[8 + n..].to_vec();
    edit(&mut header, &mut data);
    let mut json = header.to_string().into_bytes();
    while !(8 + json.len()).is_multiple_of(8) {
        json.push(b' ');
    }
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend(json);
    out.extend(data);
    out
}

/// The colour CLIP's `model.safetensors` with `name`'s second tensor starting on `over`'s bytes.
pub fn overlapping_safetensors(name: &str, over: &str) -> Vec<u8> {
    let bytes = std::fs::read(fixtures().join("semantic-colours/model.safetensors")).unwrap();
    edit_safetensors(&bytes, |header, _| {
        let offsets = header[over]["data_offsets"].clone();
        assert_eq!(header[name]["shape"], header[over]["shape"], "{name} and {over} must have one shape");
        header[name]["data_offsets"] = offsets;
    })
}

/// A copy of fixture `from` in `dir/name` (its config, preprocessor config and weights), with
/// `edit` applied.
pub fn model_copy(dir: &Path, name: &str, from: &str, edit: impl FnOnce(&Path)) -> PathBuf {
    let to = dir.join(name);
    std::fs::create_dir_all(&to).unwrap();
    for entry in std::fs::read_dir(fixtures().join(from)).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_str().unwrap();
        if ["config.json", "preprocessor_config.json", "model.safetensors"].contains(&file) {
            std::fs::copy(&path, to.join(file)).unwrap();
        }
    }
    edit(&to);
    to
}

/// Set `pointer` (a JSON pointer, e.g. `/vision_config/image_size`) in `dir`'s `file`.
pub fn set_json(dir: &Path, file: &str, pointer: &str, value: serde_json::Value) {
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|_| "{}".into());
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let target = if parent.is_empty() { &mut json } else { json.pointer_mut(parent).unwrap() };
    target[key] = value;
    std::fs::write(path, json.to_string()).unwrap();
}

/// The colour CLIP's `model.safetensors` with element 0 of `name` set to `value` (in its dtype).
pub fn poisoned_safetensors(name: &str, value: f32) -> Vec<u8> {
    let bytes = std::fs::read(fixtures().join("semantic-colours/model.safetensors")).unwrap();
    edit_safetensors(&bytes, |header, data| {
        let start = header[name]["data_offsets"][0].as_u64().unwrap() as usize;
        let stored: Vec<u8> = match header[name]["dtype"].as_str().unwrap() {
            "F16" => half::f16::from_f32(value).to_le_bytes().to_vec(),
            "F32" => value.to_le_bytes().to_vec(),
            other => panic!("{other}"),
        };
        data[start..start + stored.len()].copy_from_slice(&stored);
    })
}

/// What [`watched`] saw.
pub struct Watched {
    pub success: bool,
    pub stderr: String,
    /// The largest resident size seen (`VmHWM`), in MiB.
    pub peak_mb: f64,
}

/// Run `cli`, reading its peak resident memory from `/proc/<pid>/status` until it exits, and
/// kill it past `limit_mb` or two minutes (a bomb that is not stopped grows past any bound).
pub fn watched(cli: Cli, limit_mb: f64) -> Watched {
    let line = cli.to_string();
    let mut child = cli.command().stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("run wordmask");
    let mut pipe = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        pipe.read_to_string(&mut text).ok();
        text
    });
    let status_file = format!("/proc/{}/status", child.id());
    let (start, mut peak_mb) = (Instant::now(), 0f64);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        let hwm = std::fs::read_to_string(&status_file).ok().and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmHWM:"))?.to_string();
            line.split_whitespace().nth(1)?.parse::<f64>().ok()
        });
        peak_mb = peak_mb.max(hwm.unwrap_or(0.0) / 1024.0);
        if peak_mb > limit_mb || start.elapsed() > Duration::from_secs(120) {
            child.kill().ok();
            child.wait().ok();
            panic!("{line}: killed at {peak_mb:.0} MiB after {:.1} s", start.elapsed().as_secs_f64());
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    Watched { success: status.success(), stderr: reader.join().unwrap(), peak_mb }
}

/// Run every case; each must fail with all of its pieces on stderr, no panic, under the memory
/// limit. Reports every case that did not.
fn expect_refusals(cases: Vec<(&str, Cli, Vec<&str>)>) {
    let mut failures = Vec::new();
    for (what, cli, pieces) in cases {
        let line = cli.to_string();
        let run = watched(cli, PEAK_LIMIT_MB);
        let missing: Vec<&&str> = pieces.iter().filter(|p| !run.stderr.contains(**p)).collect();
        if run.success || !missing.is_empty() || run.stderr.contains("panicked") {
            failures.push(format!(
                "{what}: {line}\nexit ok: {}, missing {missing:?}, peak {:.0} MiB, stderr:\n{}",
                run.success, run.peak_mb, run.stderr
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// A folder holding the colour CLIP's config and `weights` as its `pytorch_model.bin`.
pub fn bin_model(dir: &Path, name: &str, weights: &[u8]) -> PathBuf {
    let to = dir.join(name);
    std::fs::create_dir_all(&to).unwrap();
    std::fs::copy(fixtures().join("semantic-colours/config.json"), to.join("config.json")).unwrap();
    std::fs::write(to.join("pytorch_model.bin"), weights).unwrap();
    to
}

fn photo(dir: &Path) -> PathBuf {
    let path = dir.join("photo.png");
    image::RgbImage::from_pixel(40, 30, image::Rgb([200, 40, 40])).save(&path).unwrap();
    path
}

fn segment(model: &Path, photo: &Path, dir: &Path) -> Cli {
    Cli::new("segment").model(model).image(photo).labels("red, green").out(dir.join("labels.png"))
}

/// Pickles: a memo bomb and a megabyte of nesting stop with an error in bounded memory (in
/// the reader the page's worker uses too), a callable outside torch's allowlist is refused by
/// name, and every real checkpoint of the fixtures still reads.
#[test]
fn hostile_pickles_are_refused_in_bounded_memory() {
    let dir = scratch("hostile-pickles");
    let photo = photo(&dir);
    let bomb = memo_bomb();
    assert!(bomb.len() < 1400, "the bomb is {} bytes", bomb.len());
    let cases = vec![
        (
            "memo bomb",
            segment(&bin_model(&dir, "bomb", &bomb), &photo, &dir),
            vec!["data.pkl", "more than its length can justify"],
        ),
        (
            "nested tuples",
            segment(&bin_model(&dir, "deep", &deep_tuples()), &photo, &dir),
            vec!["pickle nests containers more than 100 deep"],
        ),
        (
            "os.system",
            segment(&bin_model(&dir, "system", &calls_os_system()), &photo, &dir),
            vec!["refusing os.system: a checkpoint may only reference tensor storage"],
        ),
    ];
    expect_refusals(cases);
    // Real checkpoints, and the same tensors written here, still read.
    let bins = ["clip-p32-gelu-bin", "groupvit-2stage-bin", "semantic-colours"]
        .map(|m| fixtures().join(m).join("pytorch_model.bin"))
        .into_iter()
        .chain([fixtures().join("segclip/segclip-release.bin")]);
    for path in bins {
        let bytes = std::fs::read(&path).unwrap();
        let checkpoint =
            Checkpoint::from_bytes(&bytes, "fixture").unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for name in checkpoint.names() {
            checkpoint.read_f32(name).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
    }
    let written = bin_model(
        &dir,
        "written",
        &torch_bin(&tensors_of(&fixtures().join("semantic-colours/model.safetensors")), None),
    );
    segment(&written, &photo, &dir).ok();
    std::fs::remove_dir_all(&dir).ok();
}

/// Crafted tensors: a `.bin` whose tensors have the wrong number of axes, given to the SegCLIP
/// converter, is refused naming the tensor; two safetensors tensors over the same bytes are
/// refused as the format requires.
#[test]
fn crafted_tensors_are_refused_naming_the_tensor() {
    let dir = scratch("hostile-tensors");
    let photo = photo(&dir);
    let convert = |name: &str, bytes: Vec<u8>| {
        let path = dir.join(format!("{name}.bin"));
        std::fs::write(&path, bytes).unwrap();
        Cli::new("convert-segclip").arg("--checkpoint", &path).out(dir.join(format!("{name}-out")))
    };
    let overlapping = model_copy(&dir, "overlap", "semantic-colours", |m| {
        let bytes = overlapping_safetensors(
            "text_model.encoder.layers.0.layer_norm2.bias",
            "text_model.encoder.layers.0.layer_norm1.bias",
        );
        std::fs::write(m.join("model.safetensors"), bytes).unwrap();
    });
    let conv = "clip.visual.conv1.weight";
    let in_proj = "clip.visual.transformer.semantic_layer2.cross_att.0.attn.in_proj_weight";
    let flat = |name: &str| {
        let tensors = tensors_of(&fixtures().join("segclip/segclip-release.bin"));
        let shape = &tensors.iter().find(|(n, ..)| n == name).unwrap().1;
        vec![shape.iter().product()]
    };
    let cases = vec![
        (
            "a patch embedding of 2 axes",
            convert("conv", segclip_reshaped(conv, vec![64, 3 * 16 * 16])),
            vec!["tensor clip.visual.conv1.weight has shape [64, 768]; a SegCLIP checkpoint holds it with 4 axes"],
        ),
        (
            "a packed projection of 1 axis",
            convert("in-proj", segclip_reshaped(in_proj, flat(in_proj))),
            vec![in_proj, "a SegCLIP checkpoint holds it with 2 axes"],
        ),
        (
            "overlapping safetensors",
            segment(&overlapping, &photo, &dir),
            vec!["text_model.encoder.layers.0.layer_norm1.bias", "layer_norm2.bias", "overlap"],
        ),
    ];
    expect_refusals(cases);
    std::fs::remove_dir_all(&dir).ok();
}

/// Config numbers: sizes past their bounds, a negative epsilon, a zero deviation, zero heads —
/// each refused when the config is read, naming the field and the value, before anything is
/// sized by it.
#[test]
fn config_numbers_are_checked_before_use() {
    let dir = scratch("hostile-configs");
    let photo = photo(&dir);
    let edited = |name: &str, from: &str, file: &str, pointer: &str, value: serde_json::Value| {
        model_copy(&dir, name, from, |m| set_json(m, file, pointer, value))
    };
    let clip = |name: &str, pointer: &str, value: serde_json::Value| {
        segment(&edited(name, "semantic-colours", "config.json", pointer, value), &photo, &dir)
    };
    let sam = edited("sam", "sam-tiny", "config.json", "/mask_decoder_config/iou_head_depth", 100_000.into());
    let groupvit =
        edited("groupvit", "semantic-colours-groupvit", "config.json", "/vision_config/assign_eps", (-1).into());
    let std0 = serde_json::json!([0.0, 0.26, 0.27]);
    // Every size at its bound: accepted, then refused for not fitting the weights, and the
    // check pass sizes nothing by the config (SAM's gathered relative positions took 24 GB).
    let set_all = |m: &Path, pairs: &[(String, serde_json::Value)]| {
        pairs.iter().for_each(|(pointer, value)| set_json(m, "config.json", pointer, value.clone()))
    };
    let pairs = |section: &str, values: &[(&str, serde_json::Value)]| {
        values.iter().map(|(key, value)| (format!("/{section}/{key}"), value.clone())).collect::<Vec<_>>()
    };
    let widest = [
        ("hidden_size", 16_384.into()),
        ("intermediate_size", 65_536.into()),
        ("num_hidden_layers", 256.into()),
        ("num_attention_heads", 1.into()),
    ];
    let clip_at_bounds = model_copy(&dir, "clip-at-bounds", "semantic-colours", |m| {
        set_all(m, &pairs("text_config", &widest));
        set_all(m, &pairs("vision_config", &widest));
        set_all(m, &pairs("vision_config", &[("image_size", 2048.into()), ("patch_size", 16.into())]));
    });
    let sam_at_bounds = model_copy(&dir, "sam-at-bounds", "sam-tiny", |m| {
        let input = [("image_size", 2048.into()), ("patch_size", 16.into()), ("hidden_size", 16_384.into())];
        set_all(m, &pairs("vision_config", &input));
        set_all(m, &pairs("prompt_encoder_config", &input));
        let layers: Vec<usize> = (0..256).collect();
        let vision = [
            ("num_hidden_layers", 256.into()),
            ("num_attention_heads", 1.into()),
            ("output_channels", 16_384.into()),
            ("num_pos_feats", 8192.into()),
            ("mlp_dim", 65_536.into()),
            ("global_attn_indexes", layers.into()),
        ];
        set_all(m, &pairs("vision_config", &vision));
        let decoder = [("hidden_size", 16_384.into()), ("mlp_dim", 65_536.into()), ("num_hidden_layers", 256.into())];
        set_all(m, &pairs("mask_decoder_config", &decoder));
    });
    let fusioner =
        edited("fusioner", "fusioner-tiny", "config.json", "/fusion_config/temperature", serde_json::json!(0.0));
    let cases = vec![
        (
            "image_size 1e9",
            clip("image-size", "/vision_config/image_size", 1_000_000_000u64.into()),
            vec!["vision_config.image_size is 1000000000; it must be between 1 and 4096"],
        ),
        (
            "hidden_size 0",
            clip("hidden-size", "/text_config/hidden_size", 0.into()),
            vec!["text_config.hidden_size is 0; it must be between 1 and 16384"],
        ),
        (
            "a negative layer_norm_eps",
            clip("eps", "/vision_config/layer_norm_eps", serde_json::json!(-1e-5)),
            vec!["vision_config.layer_norm_eps is -0.00001; a layer norm's epsilon must be positive"],
        ),
        (
            "image_std 0",
            segment(&edited("std", "semantic-colours", "preprocessor_config.json", "/image_std", std0), &photo, &dir),
            vec!["image_std is [0.0, 0.26, 0.27]; each must be a positive number"],
        ),
        (
            "a SAM IoU head of 100,000 layers",
            Cli::new("sam").model(&sam).image(&photo).arg("--point", "3,4").out(dir.join("mask.png")),
            vec!["mask_decoder_config.iou_head_depth is 100000; it must be between 2 and 256"],
        ),
        (
            "a negative GroupViT assign_eps",
            segment(&groupvit, &photo, &dir),
            vec!["vision_config.assign_eps is -1; it must be a positive number"],
        ),
        (
            "a Fusioner temperature of 0",
            segment(&fusioner, &photo, &dir),
            vec!["fusion_config.temperature is 0; it must be a positive number"],
        ),
        (
            "a CLIP config at every bound",
            segment(&clip_at_bounds, &photo, &dir),
            vec!["does not match the CLIPModel architecture"],
        ),
        (
            "a SAM config at every bound",
            Cli::new("sam").model(&sam_at_bounds).image(&photo).arg("--point", "3,4").out(dir.join("mask.png")),
            vec!["does not match the SamModel architecture"],
        ),
        (
            "convert-segclip --vision-heads 0",
            Cli::new("convert-segclip")
                .arg("--checkpoint", fixtures().join("segclip/segclip-release.bin"))
                .out(dir.join("segclip-out"))
                .arg("--vision-heads", "0"),
            vec!["vision heads 0", "at least 1 and divide"],
        ),
    ];
    expect_refusals(cases);
    std::fs::remove_dir_all(&dir).ok();
}

/// NaN and infinite weights: refused when the tensor is converted, naming it and the element,
/// in both containers (the colour CLIP runs and labels its scene when they are not there).
#[test]
fn non_finite_weights_are_refused_naming_the_tensor() {
    let dir = scratch("hostile-weights");
    let photo = photo(&dir);
    let name = "text_model.final_layer_norm.weight";
    let nan = model_copy(&dir, "nan", "semantic-colours", |m| {
        std::fs::write(m.join("model.safetensors"), poisoned_safetensors(name, f32::NAN)).unwrap();
    });
    let mut tensors = tensors_of(&fixtures().join("semantic-colours/model.safetensors"));
    let poisoned = tensors.iter_mut().find(|(n, ..)| n == "vision_model.post_layernorm.bias").unwrap();
    poisoned.2[1] = f32::NEG_INFINITY;
    let inf = bin_model(&dir, "inf", &torch_bin(&tensors, None));
    let cases = vec![
        (
            "NaN in model.safetensors",
            segment(&nan, &photo, &dir),
            vec![
                "tensor text_model.final_layer_norm.weight: element 0 is NaN; weights holding NaN or infinities are damaged",
            ],
        ),
        (
            "-inf in pytorch_model.bin",
            segment(&inf, &photo, &dir),
            vec!["tensor vision_model.post_layernorm.bias: element 1 is -inf"],
        ),
    ];
    expect_refusals(cases);
    // The unpoisoned copy runs.
    let clean = model_copy(&dir, "clean", "semantic-colours", |_| {});
    segment(&clean, &photo, &dir).ok();
    std::fs::remove_dir_all(&dir).ok();
}
