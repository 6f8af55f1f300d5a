//! int8 weights: `wordmask convert --dtype q8` and checkpoints quantised by optimum-quanto
//! (`tests/fixtures/clip-q8-quanto`, tools/q8_reference.py), read by the loader users get, the
//! CPU backend's packed products keeping the weights int8.

use std::path::{Path, PathBuf};

use crate::common;

use burn::tensor::{Tensor, TensorData};
use common::{
    Cli, EMBED_TOL, Reference, Scene, agreement, all_close, backends, fixtures, floats, load_model, read, to_vec,
};
use wordmask::checkpoint::{Checkpoint, lookup_table, write_safetensors, write_safetensors_q8};
use wordmask::clip::ClipConfig;
use wordmask::clip::ClipModel;
use wordmask::loader::{HeldBytes, WeightLoader};
use wordmask::network::Network;
use wordmask::segment::Loaded;

const QUANTO: &str = "clip-q8-quanto";
const IMAGES: [&str; 2] = ["shapes_50x90", "noise_75x75"];

fn skip_wgpu() -> bool {
    std::env::var("WORDMASK_SKIP_WGPU").as_deref() == Ok("1")
}

/// `model` (a fixture folder) converted with `--dtype q8` into `dir/<name>-q8`.
fn convert_q8(model: &Path, dir: &Path) -> PathBuf {
    let out = dir.join(format!("{}-q8", model.file_name().unwrap().to_string_lossy()));
    Cli::new("convert").model(model).arg("--out", &out).args(["--dtype", "q8", "--force"]).without_backend().ok();
    out
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

/// A checkpoint as optimum-quanto saves it loads as it is, and gives what quanto's own model
/// gives (which dequantises each weight as int8 × scale), on every backend; the f32 model's
/// outputs are further from it than that.
#[test]
fn a_quanto_checkpoint_gives_quantos_outputs_on_every_backend() {
    let reference = Reference::load(QUANTO);
    let texts: Vec<String> =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join(QUANTO).join("texts.json")).unwrap()).unwrap();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let mut failures = Vec::new();
    for (backend, device) in backends() {
        let model = load_model(QUANTO, &device);
        let clip = model.network().downcast::<ClipModel>().expect("a CLIP checkpoint");
        let text = to_vec(model.embed_texts(&texts).unwrap()).unwrap();
        let mut outputs = vec![("text_embeds".to_string(), text)];
        for image in IMAGES {
            let (pixels, s) = reference.get(&format!("{image}.pixel_values"));
            let x = Tensor::<4>::from_data(TensorData::new(pixels, [s[0], s[1], s[2], s[3]]), &clip.device());
            let f = clip.image_features(x).unwrap();
            outputs.push((format!("{image}.image_embeds"), to_vec(f.embeds).unwrap()));
            outputs.push((format!("{image}.patch_tokens"), to_vec(f.patch_tokens).unwrap()));
        }
        for (key, ours) in outputs {
            let (want, _) = reference.get(&key);
            if let Err(e) = all_close(&format!("[{backend}] {key}"), &ours, &want, EMBED_TOL, false) {
                failures.push(e);
            }
            // The quantisation is visible: the f32 model is further away than the tolerance.
            let (full, _) = reference.get(&format!("f32.{key}"));
            assert!(all_close(&key, &full, &want, EMBED_TOL, false).is_err(), "{key}: quantisation changed nothing");
            let c = cosine(&full, &want);
            assert!(c >= 0.999, "{key}: quanto's int8 model is at cosine {c:.5} from the f32 one");
        }
    }
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
}

/// `convert --dtype q8` writes the int8 values and scales optimum-quanto writes for the same f32
/// checkpoint, for the same weights (its `Linear` and `Conv2d` layers), with the rest in f16 (the
/// token table too: its rows are 8 wide, too narrow for int8 to pay); the file is smaller than
/// the f16 one, and converting it again gives the same file.
#[test]
fn convert_q8_writes_what_quanto_writes() {
    let dir = common::scratch("q8-convert");
    let ours_dir = convert_q8(&fixtures().join("clip-p16-deep"), &dir);
    let ours_bytes = read(&ours_dir.join("model.safetensors"));
    let ours = Checkpoint::from_bytes(&ours_bytes, "ours").unwrap();
    let quanto_bytes = read(&fixtures().join(QUANTO).join("model.safetensors"));
    let quanto = Checkpoint::from_bytes(&quanto_bytes, "quanto").unwrap();
    let names = |c: &Checkpoint| c.names().filter(|n| c.is_quantized(n)).map(String::from).collect::<Vec<_>>();
    let quantised = names(&quanto);
    assert!(quantised.len() > 80, "{} quantised weights", quantised.len());
    assert_eq!(names(&ours), quantised, "the weights quantised");
    for name in &quantised {
        let ((a, sa), (b, sb)) = (ours.read_q8(name).unwrap(), quanto.read_q8(name).unwrap());
        let off = a.iter().zip(&b).filter(|(x, y)| x != y).count();
        assert_eq!(off, 0, "{name}: {off} int8 values differ from quanto's");
        all_close(name, &sa, &sb, 1e-7, true).unwrap();
    }
    // Everything else is kept (as f16), and the loader reports no unexpected tensor.
    assert_eq!(
        ours.names().count(),
        Checkpoint::from_bytes(&read(&common::weights_file("clip-p16-deep")), "f32").unwrap().names().count()
    );
    Cli::new("embed-text").model(&ours_dir).args(["--text", "a cat"]).ok();
    let f16 = dir.join("f16");
    Cli::new("convert").fixture("clip-p16-deep").arg("--out", &f16).args(["--dtype", "f16"]).without_backend().ok();
    let f16_len = std::fs::metadata(f16.join("model.safetensors")).unwrap().len();
    eprintln!("clip-p16-deep: q8 {} bytes, f16 {f16_len} bytes", ours_bytes.len());
    assert!((ours_bytes.len() as u64) < f16_len);
    let again = convert_q8(&ours_dir, &dir.join("again"));
    assert_eq!(read(&again.join("model.safetensors")), ours_bytes, "q8 -> q8 changed the file");
    std::fs::remove_dir_all(&dir).ok();
}

/// With int8 weights, every engine's label map (each colour checkpoint, and the dense engine
/// with PAMR on a random-weight CLIP), a click's mask with Segment Anything, and CLIP's text and
/// image embeddings stay close to the f32 model's: labels and masks agree on at least 99 % of
/// the pixels, embeddings at cosine 0.999 or more, on each backend.
#[test]
fn q8_outputs_stay_close_to_f32_on_every_engine() {
    let dir = common::scratch("q8-engines");
    let scene_png = dir.join("scene.png");
    let scene = Scene::load();
    scene.paint(&scene_png);
    let labels = scene.labels.join(", ");
    let noise = common::noise_photo(&dir);
    let backends: &[&str] = if skip_wgpu() { &["cpu"] } else { &["cpu", "wgpu"] };
    // (checkpoint, image, words, settings, the least agreement). The random-weight CLIP with an
    // 8-wide text tower on a noise photo is nearly all ties between its five words: there int8
    // weights move 1.4-1.9 % of the labels (f16 weights 0.1-0.15 %), most of it from the text
    // tower (its 8-value rows alone: 1.1 %), so it is held to 98 %.
    let cases: [(&str, &Path, &str, &[&str], f64); 6] = [
        ("semantic-colours", &scene_png, &labels, &[], 0.99),
        ("semantic-colours-groupvit", &scene_png, &labels, &[], 0.99),
        ("semantic-colours-segclip", &scene_png, &labels, &["--short-side", "336"], 0.99),
        ("semantic-colours-fusioner", &scene_png, &labels, &[], 0.99),
        (
            "clip-p16-quickgelu",
            &noise,
            "cat, dog, car, tree, sky",
            &["--templates", "single", "--refine", "pamr"],
            0.98,
        ),
        ("clip-p16-deep", &noise, "cat, dog, car, tree, sky", &["--templates", "single", "--method", "scclip"], 0.99),
    ];
    let mut report = Vec::new();
    let mut failures = Vec::new();
    for (model, image, labels, extra, least) in cases {
        let q8 = convert_q8(&fixtures().join(model), &dir);
        for backend in backends {
            let map = |path: &Path, tag: &str| {
                let png = dir.join(format!("{model}-{tag}-{backend}.png"));
                Cli::new("segment")
                    .model(path)
                    .image(image)
                    .labels(labels)
                    .out(&png)
                    .args(["--backend", backend])
                    .args(extra)
                    .ok();
                image::open(&png).unwrap().to_luma8().into_raw()
            };
            let agree = agreement(&map(&fixtures().join(model), "f32"), &map(&q8, "q8"));
            report.push(format!("{model} [{backend}] labels {agree:.4}"));
            if agree < least {
                failures
                    .push(format!("{model} [{backend}]: the q8 label map agrees with f32 on {agree:.4} of the pixels"));
            }
        }
    }
    // Segment Anything: a click on two regions of the colour scene.
    let sam = convert_q8(&fixtures().join("sam-colours"), &dir);
    for region in scene.regions.iter().take(2) {
        for backend in backends {
            let click = |path: &Path, tag: &str| {
                let out = dir.join(format!("mask-{tag}.png"));
                Cli::new("sam")
                    .model(path)
                    .image(&scene_png)
                    .arg("--point", format!("{},{}", region.probe.0, region.probe.1))
                    .out(&out)
                    .labels(&labels)
                    .arg("--clip", fixtures().join("semantic-colours"))
                    .args(["--templates", "single", "--backend", backend])
                    .ok();
                image::open(&out).unwrap().to_luma8().into_raw()
            };
            let agree = agreement(&click(&fixtures().join("sam-colours"), "f32"), &click(&sam, "q8"));
            report.push(format!("sam-colours [{backend}] click in {}: mask {agree:.4}", region.word));
            if agree < 0.99 {
                failures
                    .push(format!("[{backend}] click in {}: the q8 mask agrees with f32 on {agree:.4}", region.word));
            }
        }
    }
    // CLIP's embeddings.
    let clip = fixtures().join("clip-p16-deep");
    let q8 = convert_q8(&clip, &dir);
    let texts = ["a photo of a cat.", "red car", "東京タワー"];
    let image = fixtures().join("images/shapes_50x90.png");
    for backend in backends {
        let text = |m: &Path| {
            let out = Cli::new("embed-text").model(m).each("--text", texts).args(["--backend", backend]).json();
            out["embeddings"].as_array().unwrap().iter().map(floats).collect::<Vec<_>>()
        };
        for (a, b) in text(&clip).iter().zip(text(&q8)) {
            let c = cosine(a, &b);
            report.push(format!("text [{backend}] cosine {c:.6}"));
            if c < 0.999 {
                failures.push(format!("[{backend}] text embedding at cosine {c:.6}"));
            }
        }
        let embed = |m: &Path| {
            floats(&Cli::new("embed-image").model(m).image(&image).args(["--backend", backend]).json()["embedding"])
        };
        let (a, b) = (embed(&clip), embed(&q8));
        let c = cosine(&a, &b);
        report.push(format!("image [{backend}] cosine {c:.6}"));
        if c < 0.999 {
            failures.push(format!("[{backend}] image embedding at cosine {c:.6}"));
        }
        assert!(a != b, "[{backend}] the q8 weights changed nothing");
    }
    eprintln!("{}", report.join("\n"));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    std::fs::remove_dir_all(&dir).ok();
}

/// A quantised weight whose pieces do not fit is refused by name: scales that are not one per
/// output row, a `._data` without its `._scale`, data that is not int8.
#[test]
fn broken_quantised_weights_are_refused_by_name() {
    use wordmask::checkpoint::{Values, write_safetensors_values};
    let data = [1i8, -2, 3, -4, 5, -6];
    let floats6 = [0.5f32; 6];
    type Tensors<'a> = Vec<(&'a str, &'a [usize], Values<'a>)>;
    let cases: Vec<(Tensors, &str)> = vec![
        (
            vec![
                ("fc.weight._data", &[2, 3], Values::I8(&data)),
                ("fc.weight._scale", &[3, 1], Values::F32(&floats6[..3])),
            ],
            "one scale per output row",
        ),
        (vec![("fc.weight._data", &[2, 3], Values::I8(&data))], "has no fc.weight._scale"),
        (
            vec![
                ("fc.weight._data", &[2, 3], Values::F32(&floats6)),
                ("fc.weight._scale", &[2, 1], Values::F32(&floats6[..2])),
            ],
            "int8 (qint8) weights are read",
        ),
    ];
    for (tensors, want) in cases {
        let bytes = write_safetensors_values(&tensors).unwrap();
        let err = Checkpoint::from_bytes(&bytes, "broken.safetensors").err().expect("refused").to_string();
        assert!(err.contains("fc.weight") && err.contains(want), "{err}");
    }
    // Well formed, it reads back dequantised, row by row.
    let bytes = write_safetensors_values(&[
        ("fc.weight._data", &[2, 3], Values::I8(&data)),
        ("fc.weight._scale", &[2, 1], Values::F32(&[0.5, 2.0])),
    ])
    .unwrap();
    let c = Checkpoint::from_bytes(&bytes, "ok").unwrap();
    assert_eq!(c.names().collect::<Vec<_>>(), ["fc.weight"]);
    assert_eq!(c.read_f32("fc.weight").unwrap(), [0.5, -1.0, 1.5, -8.0, 10.0, -12.0]);
}

/// `convert --dtype q8 --beside` writes `model.q8.safetensors` into the model's own folder and
/// changes nothing else there; it goes with q8 only, and replaces an earlier one with --force.
#[test]
fn convert_beside_writes_the_int8_file_into_the_models_folder() {
    let dir = common::scratch("q8-beside");
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixtures().join("semantic-colours").join(f), dir.join(f)).unwrap();
    }
    let before = read(&dir.join("model.safetensors"));
    let beside = || Cli::new("convert").model(&dir).args(["--dtype", "q8", "--beside"]);
    beside().ok();
    let q8 = read(&dir.join("model.q8.safetensors"));
    assert!(Checkpoint::from_bytes(&q8, "q8").unwrap().names().any(|n| n.ends_with("fc1.weight")));
    assert_eq!(read(&dir.join("model.safetensors")), before, "the full weights were changed");
    let mut names: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["config.json", "model.q8.safetensors", "model.safetensors"]);
    assert!(beside().fails().contains("model.q8.safetensors exists"));
    beside().switch("--force").ok();
    let err = Cli::new("convert").model(&dir).args(["--dtype", "f16", "--beside"]).fails();
    assert!(err.contains("--beside writes model.q8.safetensors"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

/// A CLIP whose token table is most of its weights, as in the hub's CLIPs (ViT-B/16's is 49,408
/// x 512, 17 % of them): 128-wide text tower, narrow vision tower.
const TABLE_HEAVY_CLIP: &str = r#"{
  "model_type": "clip", "projection_dim": 64,
  "text_config": {"hidden_size": 128, "intermediate_size": 512, "num_attention_heads": 2,
    "num_hidden_layers": 2, "max_position_embeddings": 77, "vocab_size": 49408,
    "bos_token_id": 49406, "eos_token_id": 49407, "hidden_act": "quick_gelu"},
  "vision_config": {"hidden_size": 64, "intermediate_size": 256, "num_attention_heads": 2,
    "num_hidden_layers": 4, "image_size": 32, "patch_size": 16, "hidden_act": "quick_gelu"}
}"#;

/// A CLIP of `config` built from `weights` (safetensors bytes) on the CPU backend, its linear
/// layers packed as the web build's CPU fallback packs them (whatever this processor has), and
/// what its weights hold.
fn load_packed_clip(config: &ClipConfig, weights: &[u8], pack: bool) -> (ClipModel, HeldBytes) {
    let device = wordmask::device::cpu().unwrap();
    let checkpoint = Checkpoint::from_bytes(weights, "model.safetensors").unwrap();
    let mut loader = WeightLoader::new(&checkpoint, &device, "CLIPModel").with_packed_linear(pack);
    let model = ClipModel::load(config.clone(), &mut loader);
    let held = loader.held;
    loader.finish().unwrap();
    (model, held)
}

/// On the CPU backend a model converted with `--dtype q8` holds at most 0.3x the bytes of its
/// f32 weights, the token table included (int8 with a scale per row, as the file stores it), on
/// a CLIP where the table is most of the weights; its text embeddings stay at cosine 0.999 or
/// more from the f32 model's. The f32 model holds what its file stores, 4 bytes a value.
#[test]
fn a_q8_model_holds_under_three_tenths_of_its_f32_bytes() {
    let dir = common::scratch("q8-held");
    let f32_dir = dir.join("f32");
    std::fs::create_dir_all(&f32_dir).unwrap();
    let config = ClipConfig::from_json(TABLE_HEAVY_CLIP).unwrap();
    let device = wordmask::device::cpu().unwrap();
    let mut random = WeightLoader::random(&device).recording();
    ClipModel::load(config.clone(), &mut random);
    let tensors = random.take_recorded();
    let values: usize = tensors.iter().map(|(_, _, v)| v.len()).sum();
    std::fs::write(f32_dir.join("model.safetensors"), write_safetensors(&tensors).unwrap()).unwrap();
    std::fs::write(f32_dir.join("config.json"), TABLE_HEAVY_CLIP).unwrap();
    let q8_dir = convert_q8(&f32_dir, &dir);
    // The token table is int8, one scale per row, each value within half a step of f32's.
    let q8_file = read(&q8_dir.join("model.safetensors"));
    let table = "text_model.embeddings.token_embedding.weight";
    assert!(lookup_table(table));
    let (q, scales) = Checkpoint::from_bytes(&q8_file, "q8").unwrap().read_q8(table).unwrap();
    let rows = &tensors.iter().find(|(name, ..)| name == table).unwrap().2;
    assert_eq!((q.len(), scales.len()), (rows.len(), 49408));
    for (i, (&v, &x)) in q.iter().zip(rows).enumerate() {
        let s = scales[i / 128];
        assert!((f32::from(v) * s - x).abs() <= s / 2.0 + 1e-7, "{table} element {i}: {v} x {s} for {x}");
    }
    let (full, held_f32) = load_packed_clip(&config, &read(&f32_dir.join("model.safetensors")), true);
    let (q8, held_q8) = load_packed_clip(&config, &q8_file, true);
    let ratio = held_q8.total() as f64 / held_f32.total() as f64;
    eprintln!("f32 holds {held_f32}, q8 {held_q8}: {ratio:.3}x");
    assert_eq!((held_f32.int8, held_f32.f16), (0, 0), "{held_f32}");
    assert!(held_q8.int8 > held_q8.f32, "{held_q8}");
    assert!(ratio <= 0.3, "the q8 model holds {ratio:.3}x the f32 model's bytes ({held_q8} against {held_f32})");
    // Unpacked, the f32 model holds its file's values, 4 bytes each, but the logit scale (a
    // number) and the vision tower's position rows of patches, held twice (on the host too, to be
    // resampled).
    let (_, plain) = load_packed_clip(&config, &read(&f32_dir.join("model.safetensors")), false);
    let patches = (32 / 16) * (32 / 16) * 64;
    assert_eq!(plain, HeldBytes::f32s(values - 1 + patches));
    let ids = vec![vec![49406, 320, 1929, 539, 320, 2368, 49407], vec![49406, 1002, 49407, 0, 0, 0, 0]];
    let (a, b) = (
        to_vec(full.text_model.forward(&ids).unwrap()).unwrap(),
        to_vec(q8.text_model.forward(&ids).unwrap()).unwrap(),
    );
    let c = cosine(&a, &b);
    eprintln!("text features at cosine {c:.6}");
    assert!(c >= 0.999 && a != b, "text features at cosine {c:.6}");
    std::fs::remove_dir_all(&dir).ok();
}

/// The hub architectures' files (written from random weights of their shapes) and the bytes
/// their weights hold on the CPU backend with packed products, for the table in
/// docs/performance.md: `cargo test --release --test native -- --ignored --nocapture
/// q8::held_bytes` (about 5 GB of memory for ViT-L/14).
#[test]
#[ignore]
fn held_bytes_of_hub_architectures() {
    let device = wordmask::device::cpu().unwrap();
    let mib = |n: usize| format!("{:.0} MiB", n as f64 / (1 << 20) as f64);
    println!("| checkpoint | f32 | f16 | q8 | q8 / f32 | held: f32 | f16 | q8 | q8 / f32 |");
    for (preset, about) in [
        ("vit-b-16", "openai/clip-vit-base-patch16"),
        ("vit-l-14", "openai/clip-vit-large-patch14"),
        ("sam-vit-base", "facebook/sam-vit-base"),
    ] {
        let mut random = WeightLoader::random(&device).with_packed_linear(true).recording();
        Loaded::preset_with(preset, &mut random).unwrap();
        let tensors = random.take_recorded();
        let held = |file: &[u8]| {
            let checkpoint = Checkpoint::from_bytes(file, "model.safetensors").unwrap();
            let mut loader = WeightLoader::new(&checkpoint, &device, preset).with_packed_linear(true);
            let held = Loaded::preset_with(preset, &mut loader).unwrap().held_bytes();
            loader.finish().unwrap();
            held
        };
        let f32_file = write_safetensors(&tensors).unwrap();
        let held_f32 = held(&f32_file);
        let f16_file = wordmask::checkpoint::write_safetensors_as(&tensors, true).unwrap();
        let held_f16 = held(&f16_file);
        let q8_file = write_safetensors_q8(&tensors).unwrap();
        let held_q8 = held(&q8_file);
        println!(
            "| `{about}` | {} | {} | {} | {:.2} | {} | {} | {} | {:.2} |",
            mib(f32_file.len()),
            mib(f16_file.len()),
            mib(q8_file.len()),
            q8_file.len() as f64 / f32_file.len() as f64,
            mib(held_f32.total()),
            mib(held_f16.total()),
            mib(held_q8.total()),
            held_q8.total() as f64 / held_f32.total() as f64,
        );
        eprintln!("  held: f32 {held_f32}; f16 {held_f16}; q8 {held_q8}");
    }
}
