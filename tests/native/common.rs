//! Shared test helpers: the `wordmask` command line, fixture paths and loaders (models, images,
//! the colour scene, `.npy` files), backends, and an `all_close` that says why it failed.
#![allow(dead_code)]

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use burn::tensor::Device;
use wordmask::Backend;
use wordmask::checkpoint::Checkpoint;
use wordmask::preprocess::RgbImage;
use wordmask::segment::Model;

/// Normalised embeddings: the issue's bound for f32 parity with transformers.
pub const EMBED_TOL: f32 = 1e-4;
/// Raw hidden states grow with depth; compare them relative to their magnitude.
pub const HIDDEN_REL_TOL: f32 = 1e-4;

pub const MODELS: [&str; 3] = ["clip-p16-quickgelu", "clip-p32-gelu-bin", "clip-p16-fp16"];
pub const IMAGES: [&str; 3] = ["gradient_80x64", "shapes_50x90", "noise_75x75"];

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A `wordmask` command line as a user types it: the command, then its flags in the order
/// given. Commands that run a model get `--backend cpu` unless the line names a backend or
/// [`Cli::without_backend`] leaves the choice to the command.
///
/// ```ignore
/// let summary = Cli::new("segment").fixture("semantic-colours").image(&photo).labels("red, green").out(&png).json();
/// let stderr = Cli::new("sam").fixture("sam-tiny").image(&photo).arg("--point", "60,10").out(&png).fails();
/// ```
pub struct Cli {
    args: Vec<OsString>,
    cpu: bool,
}

impl Cli {
    /// `wordmask COMMAND`, e.g. `segment` or `train fusioner`.
    pub fn new(command: &str) -> Self {
        let cpu = !matches!(command, "convert" | "convert-segclip" | "settings" | "merge-coco");
        Cli { args: command.split(' ').map(OsString::from).collect(), cpu }
    }

    /// `--model PATH`.
    pub fn model(self, path: impl AsRef<OsStr>) -> Self {
        self.arg("--model", path)
    }

    /// `--model tests/fixtures/NAME`.
    pub fn fixture(self, name: &str) -> Self {
        self.arg("--model", fixtures().join(name))
    }

    /// `--image PATH`.
    pub fn image(self, path: impl AsRef<OsStr>) -> Self {
        self.arg("--image", path)
    }

    /// `--labels TEXT`.
    pub fn labels(self, text: impl AsRef<OsStr>) -> Self {
        self.arg("--labels", text)
    }

    /// `--out PATH`.
    pub fn out(self, path: impl AsRef<OsStr>) -> Self {
        self.arg("--out", path)
    }

    /// `FLAG VALUE`.
    pub fn arg(mut self, flag: &str, value: impl AsRef<OsStr>) -> Self {
        self.args.extend([flag.into(), value.as_ref().into()]);
        self
    }

    /// `FLAG VALUE` for each value, e.g. `--text` once per text.
    pub fn each<V: AsRef<OsStr>>(self, flag: &str, values: impl IntoIterator<Item = V>) -> Self {
        values.into_iter().fold(self, |cli, value| cli.arg(flag, value))
    }

    /// Words as typed, e.g. `["--window", "64", "--stride", "32"]`.
    pub fn args<W: AsRef<OsStr>>(mut self, words: impl IntoIterator<Item = W>) -> Self {
        self.args.extend(words.into_iter().map(|w| w.as_ref().into()));
        self
    }

    /// A flag without a value, e.g. `--no-crop`.
    pub fn switch(mut self, flag: &str) -> Self {
        self.args.push(flag.into());
        self
    }

    /// No `--backend`: the command picks its default (auto).
    pub fn without_backend(mut self) -> Self {
        self.cpu = false;
        self
    }

    /// The whole argument list, `--backend cpu` included where it is added.
    fn argv(&self) -> Vec<OsString> {
        let mut argv = self.args.clone();
        if self.cpu && !argv.iter().any(|a| a == "--backend") {
            argv.extend(["--backend".into(), "cpu".into()]);
        }
        argv
    }

    /// The process, for what [`Cli::run`] does not cover (its environment).
    pub fn command(self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_wordmask"));
        command.args(self.argv());
        command
    }

    /// Run it, whatever the outcome.
    pub fn run(self) -> Output {
        self.command().output().expect("run wordmask")
    }

    /// Run it, whatever the outcome; also its peak resident memory in MiB, the child's own
    /// high-water mark as `wait4` reports it when the child ends (`ru_maxrss`, KiB on Linux).
    pub fn run_measured(self) -> (Output, f64) {
        use std::io::Read;
        use std::os::unix::process::ExitStatusExt;
        use std::process::Stdio;

        #[allow(clippy::zombie_processes)] // reaped below by wait4, which also gives its usage
        let mut child = self.command().stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("run wordmask");
        let drain = |mut pipe: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                pipe.read_to_end(&mut bytes).map(|_| bytes).unwrap_or_default()
            })
        };
        let stdout = drain(Box::new(child.stdout.take().unwrap()));
        let stderr = drain(Box::new(child.stderr.take().unwrap()));
        let (mut status, mut usage) = (0, std::mem::MaybeUninit::<libc::rusage>::zeroed());
        // SAFETY: `child` is ours and not yet waited for; both pointers are valid for writes.
        let waited = unsafe { libc::wait4(child.id() as i32, &mut status, 0, usage.as_mut_ptr()) };
        assert_eq!(waited, child.id() as i32, "wait4: {}", std::io::Error::last_os_error());
        // SAFETY: wait4 filled it in.
        let peak_kib = unsafe { usage.assume_init() }.ru_maxrss;
        let output = Output {
            status: std::process::ExitStatus::from_raw(status),
            stdout: stdout.join().unwrap(),
            stderr: stderr.join().unwrap(),
        };
        (output, peak_kib as f64 / 1024.0)
    }

    /// Run it; it must succeed (its stderr in the failure).
    pub fn ok(self) -> Output {
        let line = self.to_string();
        let out = self.run();
        assert!(out.status.success(), "{line} failed: {}", String::from_utf8_lossy(&out.stderr));
        out
    }

    /// Run it with `--json`; it must succeed. Its output, parsed.
    pub fn json(self) -> serde_json::Value {
        let out = self.switch("--json").ok();
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
    }

    /// Run it; it must fail. Its stderr.
    pub fn fails(self) -> String {
        let line = self.to_string();
        let out = self.run();
        assert!(!out.status.success(), "{line} succeeded");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

impl fmt::Display for Cli {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("wordmask")?;
        self.argv().iter().try_for_each(|a| write!(f, " {}", a.to_string_lossy()))
    }
}

/// `wordmask sam` with the colour SAM clicking `region`'s probe of the scene painted in
/// `input`, the mask named among the scene's words by the colour CLIP ("single" templates).
pub fn colour_click(scene: &Scene, region: &Region, input: &Path, out: &Path) -> Cli {
    Cli::new("sam")
        .fixture("sam-colours")
        .image(input)
        .arg("--point", format!("{},{}", region.probe.0, region.probe.1))
        .out(out)
        .labels(scene.labels.join(", "))
        .arg("--clip", fixtures().join("semantic-colours"))
        .arg("--templates", "single")
}

/// A tensor's values on the host (the core's one read-back, driven to its end here).
pub fn to_vec<const D: usize>(t: burn::tensor::Tensor<D>) -> wordmask::Result<Vec<f32>> {
    wordmask::block_on(wordmask::device::read(t))
}

/// A JSON array of numbers.
pub fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

/// The share of equal values in two label maps (or masks) of one size.
pub fn agreement(a: &[u8], b: &[u8]) -> f64 {
    a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / a.len() as f64
}

/// `tests/fixtures/images/noise_75x75.png` stretched to 320x240, written as `dir/photo.png`: a
/// photo on which a random-weight checkpoint's words nearly tie.
pub fn noise_photo(dir: &Path) -> PathBuf {
    let photo = image::open(fixtures().join("images/noise_75x75.png")).unwrap().resize_exact(
        320,
        240,
        image::imageops::FilterType::Triangle,
    );
    let path = dir.join("photo.png");
    photo.save(&path).unwrap();
    path
}

/// A fresh scratch directory for one test (removed by the test when it passes).
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wordmask-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn weights_file(model: &str) -> PathBuf {
    let dir = fixtures().join(model);
    ["model.safetensors", "pytorch_model.bin"]
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.exists())
        .expect("fixture weights")
}

pub fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A fixture checkpoint loaded as users load it (with its `preprocessor_config.json`, if any).
pub fn load_model(name: &str, device: &Device) -> Model {
    let dir = fixtures().join(name);
    let config = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let preprocessor = std::fs::read_to_string(dir.join("preprocessor_config.json")).ok();
    let file = weights_file(name);
    Model::from_bytes(&config, &read(&file), &file.display().to_string(), preprocessor.as_deref(), device)
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// `tests/fixtures/images/{name}.png`.
pub fn image(name: &str) -> RgbImage {
    let img = image::open(fixtures().join("images").join(format!("{name}.png"))).unwrap().to_rgb8();
    RgbImage::new(img.width() as usize, img.height() as usize, img.into_raw()).unwrap()
}

/// The colour scene of the end-to-end tests (tests/fixtures/images/scene.json, shared with the
/// browser tests).
pub struct Scene {
    pub width: u32,
    pub height: u32,
    /// The words in the order they are typed.
    pub labels: Vec<String>,
    /// Painted in order, later ones on top.
    pub regions: Vec<Region>,
}

pub struct Region {
    pub word: String,
    pub rgb: [u8; 3],
    pub x: (u32, u32),
    pub y: (u32, u32),
    /// A point well inside the region.
    pub probe: (u32, u32),
}

impl Scene {
    pub fn load() -> Self {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(fixtures().join("images/scene.json")).unwrap()).unwrap();
        let n = |v: &serde_json::Value| v.as_u64().unwrap() as u32;
        let pair = |v: &serde_json::Value| (n(&v[0]), n(&v[1]));
        Scene {
            width: n(&v["width"]),
            height: n(&v["height"]),
            labels: v["labels"].as_array().unwrap().iter().map(|l| l.as_str().unwrap().to_string()).collect(),
            regions: v["regions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    let rgb = r["rgb"].as_array().unwrap();
                    let rgb = [0, 1, 2].map(|k| rgb[k].as_u64().unwrap() as u8);
                    Region {
                        word: r["word"].as_str().unwrap().to_string(),
                        rgb,
                        x: pair(&r["x"]),
                        y: pair(&r["y"]),
                        probe: pair(&r["probe"]),
                    }
                })
                .collect(),
        }
    }

    /// Paint the scene into `path`; returns the word each pixel shows.
    pub fn paint(&self, path: &Path) -> Vec<String> {
        let (img, truth) = self.picture();
        img.save(path).unwrap();
        truth
    }

    /// The scene's pixels, and the word each pixel shows.
    pub fn picture(&self) -> (image::RgbImage, Vec<String>) {
        let (w, h) = (self.width, self.height);
        let mut img = image::RgbImage::new(w, h);
        let mut truth = vec![String::new(); (w * h) as usize];
        for r in &self.regions {
            for y in r.y.0..r.y.1 {
                for x in r.x.0..r.x.1 {
                    img.put_pixel(x, y, image::Rgb(r.rgb));
                    truth[(y * w + x) as usize] = r.word.clone();
                }
            }
        }
        (img, truth)
    }
}

/// A float32 `.npy` file: its header and values.
pub fn read_npy(path: &Path) -> (String, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00", "{} is not a version 1.0 .npy file", path.display());
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap().to_string();
    let values = bytes[10 + header_len..].chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    (header, values)
}

/// Every backend the parity tests run on. wgpu is required (CI installs Mesa's llvmpipe
/// Vulkan driver); set WORDMASK_SKIP_WGPU=1 to run the CPU half alone on a machine without one.
pub fn backends() -> Vec<(Backend, Device)> {
    let mut out = vec![(Backend::Cpu, wordmask::device::open(Backend::Cpu).expect("cpu device"))];
    if std::env::var("WORDMASK_SKIP_WGPU").as_deref() != Ok("1") {
        let device = wordmask::device::open(Backend::Wgpu)
            .unwrap_or_else(|e| panic!("{e}\n(set WORDMASK_SKIP_WGPU=1 to skip the wgpu half of the tests)"));
        out.push((Backend::Wgpu, device));
    }
    out
}

/// Reference outputs written by tools/make_fixtures.py.
pub struct Reference {
    pub bytes: Vec<u8>,
}

impl Reference {
    pub fn load(model: &str) -> Self {
        Reference { bytes: read(&fixtures().join(model).join("reference.safetensors")) }
    }

    pub fn get(&self, name: &str) -> (Vec<f32>, Vec<usize>) {
        let ckpt = Checkpoint::from_bytes(&self.bytes, "reference.safetensors").unwrap();
        let shape = ckpt.get(name).unwrap_or_else(|| panic!("reference has no {name}")).shape.clone();
        (ckpt.read_f32(name).unwrap(), shape)
    }
}

/// `Ok` when every `|ours - reference| <= tol * max(1, |reference|)` (relative) or
/// `<= tol` (absolute); otherwise a message with the worst element, both values and where.
pub fn all_close(what: &str, ours: &[f32], reference: &[f32], tol: f32, relative: bool) -> Result<(), String> {
    if ours.len() != reference.len() {
        return Err(format!("{what}: {} values, reference has {}", ours.len(), reference.len()));
    }
    let mut worst = (0usize, 0f32);
    for (i, (a, b)) in ours.iter().zip(reference).enumerate() {
        let scale = if relative { b.abs().max(1.0) } else { 1.0 };
        let err = (a - b).abs() / scale;
        if !err.is_finite() || err > worst.1 {
            worst = (i, if err.is_finite() { err } else { f32::INFINITY });
        }
    }
    if worst.1 <= tol {
        return Ok(());
    }
    let i = worst.0;
    Err(format!(
        "{what}: max {} error {:.3e} > {tol:.0e} at flat index {i}: ours {} vs reference {}",
        if relative { "relative" } else { "absolute" },
        worst.1,
        ours[i],
        reference[i]
    ))
}
