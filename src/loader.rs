//! Turns checkpoint tensors into device tensors for a model that asks for them by name.
//!
//! Models call [`WeightLoader::tensor`] with the checkpoint key and the shape the config
//! implies. Loading runs in two passes ([`load`]): the first only checks the checkpoint's index
//! — every name, shape and dtype the model asks for — and reads, converts and uploads nothing,
//! so a config that does not fit its weights (a ViT-L config over ViT-B weights) is reported
//! at once, without gigabytes of stand-in tensors. Problems do not stop a pass: every missing,
//! mis-shaped or non-float tensor is recorded, and [`WeightLoader::finish`] reports them all
//! together with the keys the model never asked for. The second pass converts each tensor
//! (f16/bf16 -> f32), uploads it and drops the host copy, so peak memory stays near one model
//! plus one tensor.
//!
//! A network walks its checkpoint's keys the way its modules nest: [`WeightLoader::pp`] gives a
//! [`Scope`] under a prefix (`loader.pp("vision_model")`), each module narrows it for its parts
//! (`.pp("encoder.layers").pp(3)`), and a layer names only its own tensors (`"weight"`); the
//! full key is what the checkpoint is asked for and what every problem names.

use std::collections::BTreeSet;
use std::fmt::Display;

use burn::tensor::{Device, Tensor, TensorData};

use crate::checkpoint::{Checkpoint, StoredDtype};
use crate::error::{Error, Result};

/// Build a model from `checkpoint` in two passes: `build` first runs on a loader that only
/// checks names, shapes and dtypes (and gets stand-ins that hold no data), then, if nothing was
/// wrong, on one that reads and uploads every tensor.
pub fn load<T>(
    checkpoint: &Checkpoint<'_>,
    device: &Device,
    architecture: &str,
    build: impl FnMut(&mut WeightLoader) -> Result<T>,
) -> Result<T> {
    Ok(load_held(checkpoint, device, architecture, build)?.0)
}

/// [`load`], with the bytes the model's weights hold (see [`HeldBytes`]).
pub fn load_held<T>(
    checkpoint: &Checkpoint<'_>,
    device: &Device,
    architecture: &str,
    mut build: impl FnMut(&mut WeightLoader) -> Result<T>,
) -> Result<(T, HeldBytes)> {
    let mut check = WeightLoader::new(checkpoint, device, architecture);
    check.checking = true;
    build(&mut check)?;
    check.finish()?;
    let mut loader = WeightLoader::new(checkpoint, device, architecture);
    let model = build(&mut loader)?;
    let held = loader.held;
    loader.finish()?;
    Ok((model, held))
}

/// The bytes a loaded model's weights hold in memory (on the device, or on the host where a
/// layer keeps them there), by the type they are held in, tallied as they load: what the model
/// keeps of its checkpoint, not what inference allocates on the way. Int8 weights' scales are
/// f32 and counted there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeldBytes {
    pub f32: usize,
    pub f16: usize,
    pub bf16: usize,
    pub int8: usize,
}

impl HeldBytes {
    /// `n` values in f32.
    pub fn f32s(n: usize) -> Self {
        HeldBytes { f32: n * size_of::<f32>(), ..HeldBytes::default() }
    }

    /// All of them.
    pub fn total(&self) -> usize {
        self.f32 + self.f16 + self.bf16 + self.int8
    }
}

impl std::ops::AddAssign for HeldBytes {
    fn add_assign(&mut self, other: HeldBytes) {
        self.f32 += other.f32;
        self.f16 += other.f16;
        self.bf16 += other.bf16;
        self.int8 += other.int8;
    }
}

impl std::fmt::Display for HeldBytes {
    /// "571.2 MiB (f32 571.2 MiB)", the types held listed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mib = |n: usize| n as f64 / (1 << 20) as f64;
        let parts: Vec<String> = [("f32", self.f32), ("f16", self.f16), ("bf16", self.bf16), ("int8", self.int8)]
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(name, n)| format!("{name} {:.1} MiB", mib(*n)))
            .collect();
        write!(f, "{:.1} MiB ({})", mib(self.total()), parts.join(", "))
    }
}

/// Keys that checkpoints carry but inference does not read: the `position_ids` buffers of
/// older hub `.bin` files, and batch norm's training step counter.
fn ignorable(name: &str) -> bool {
    name.ends_with(".position_ids") || name.ends_with(".num_batches_tracked")
}

/// The web build's CPU fallback multiplies by weights packed at load (see `nn/kernels/packed.rs`), and
/// so does the native CPU backend where the processor has AVX-512; elsewhere natively the
/// backend's own product is faster.
fn pack_linear() -> bool {
    cfg!(all(target_arch = "wasm32", target_feature = "simd128")) || crate::device::avx512()
}

/// A random tensor a recording loader made: name, shape and values (see
/// [`WeightLoader::recording`]).
pub type Recorded = (String, Vec<usize>, Vec<f32>);

/// What [`WeightLoader::with_hook`] runs on each tensor after conversion.
type Hook<'c> = Box<dyn FnMut(&str, &mut [f32]) + 'c>;

pub struct WeightLoader<'c, 'a> {
    /// `None`: random weights (benchmarks only).
    checkpoint: Option<&'c Checkpoint<'a>>,
    seed: u64,
    device: Device,
    used: BTreeSet<String>,
    problems: Vec<String>,
    /// Tensors of the right name and shape whose values could not be used (truncated data,
    /// NaN or infinite weights): the checkpoint is damaged, not of another architecture.
    damaged: Vec<String>,
    architecture: String,
    /// Called on each tensor after conversion; tests use it to perturb one weight.
    hook: Option<Hook<'c>>,
    /// The first pass of [`load`]: check the index, read nothing.
    checking: bool,
    /// What the tensors loaded so far hold.
    pub held: HeldBytes,
    /// Linear layers keep their weights packed on the host for the host product.
    pack_linear: bool,
    /// With random weights, every tensor made so far (see [`Self::recording`]).
    recorded: Option<Vec<Recorded>>,
}

impl<'c, 'a> WeightLoader<'c, 'a> {
    /// A loader over `checkpoint` for a model of `architecture` (named in its errors).
    pub fn new(checkpoint: &'c Checkpoint<'a>, device: &Device, architecture: &str) -> Self {
        WeightLoader {
            checkpoint: Some(checkpoint),
            seed: 0,
            device: device.clone(),
            used: BTreeSet::new(),
            problems: Vec::new(),
            damaged: Vec::new(),
            architecture: architecture.to_string(),
            hook: None,
            checking: false,
            held: HeldBytes::default(),
            pack_linear: pack_linear(),
            recorded: None,
        }
    }

    /// A loader that invents uniform random weights in [-0.05, 0.05] of the requested shapes.
    /// For benchmarks of architectures whose checkpoints are not at hand; never for inference.
    pub fn random(device: &Device) -> Self {
        WeightLoader {
            checkpoint: None,
            seed: 0x9e37_79b9_7f4a_7c15,
            device: device.clone(),
            used: BTreeSet::new(),
            problems: Vec::new(),
            damaged: Vec::new(),
            architecture: "random".into(),
            hook: None,
            checking: false,
            held: HeldBytes::default(),
            pack_linear: pack_linear(),
            recorded: None,
        }
    }

    /// Keep a copy of every random tensor made, to write them as a checkpoint of the model's
    /// shapes ([`Self::take_recorded`]): a hub architecture's file without its download.
    pub fn recording(mut self) -> Self {
        self.recorded = Some(Vec::new());
        self
    }

    /// The random tensors made since [`Self::recording`], as `(name, shape, values)`, in the
    /// order they were asked for (what [`crate::checkpoint::write_safetensors`] writes).
    pub fn take_recorded(&mut self) -> Vec<Recorded> {
        self.recorded.take().unwrap_or_default()
    }

    fn random_values(&mut self, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| {
                // xorshift64*: cheap, deterministic, good enough for benchmark weights.
                self.seed ^= self.seed >> 12;
                self.seed ^= self.seed << 25;
                self.seed ^= self.seed >> 27;
                let bits = self.seed.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40;
                (bits as f32 / (1u64 << 24) as f32 - 0.5) * 0.1
            })
            .collect()
    }

    /// Run `hook(name, values)` on every tensor as it is loaded.
    pub fn with_hook(mut self, hook: impl FnMut(&str, &mut [f32]) + 'c) -> Self {
        self.hook = Some(Box::new(hook));
        self
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Whether this is the check pass of [`load`], which reads nothing and whose model never
    /// runs: what a model computes from its config at load (a grid of positions) is skipped.
    pub fn checking(&self) -> bool {
        self.checking
    }

    /// Whether linear layers should keep their weights packed on the host where the device
    /// runs host kernels (`nn::Linear`): in the web build, and not while checking.
    pub fn packs_linear(&self) -> bool {
        self.pack_linear && !self.checking
    }

    /// Pack linear layers' weights (or not) whatever the build; tests compare both ways.
    pub fn with_packed_linear(mut self, pack: bool) -> Self {
        self.pack_linear = pack;
        self
    }

    /// Host copy of a tensor, checked against `shape`. `None` (with the problem recorded) when
    /// it is missing or mis-shaped.
    pub fn host(&mut self, name: &str, shape: &[usize]) -> Option<Vec<f32>> {
        if shape.contains(&0) {
            self.problems.push(format!(
                "tensor {name} would have shape {shape:?}: the config sets a size to 0 (every size must be positive)"
            ));
            return None;
        }
        let Some(checkpoint) = self.checkpoint else {
            let mut values = self.random_values(shape.iter().product());
            if let Some(hook) = self.hook.as_mut() {
                hook(name, &mut values);
            }
            if let Some(recorded) = self.recorded.as_mut() {
                recorded.push((name.to_string(), shape.to_vec(), values.clone()));
            }
            return Some(values);
        };
        let dtype = self.located(checkpoint, name, shape)?;
        if !dtype.is_float() && !checkpoint.is_quantized(name) {
            self.problems.push(format!("tensor {name} is stored as {dtype:?}, expected floating point"));
            return None;
        }
        if self.checking {
            return None;
        }
        // NaN or infinite weights are refused here, as they are converted: they would run and
        // turn every score into NaN, which reads as "everything unlabelled".
        match checkpoint.read_finite_f32(name) {
            Ok(mut values) => {
                if let Some(hook) = self.hook.as_mut() {
                    hook(name, &mut values);
                }
                Some(values)
            }
            Err(e) => self.damage(e),
        }
    }

    /// `name`'s stored type, the tensor marked as used, when the checkpoint has it in `shape`;
    /// `None`, with the problem recorded, when it is missing or mis-shaped.
    fn located(&mut self, checkpoint: &Checkpoint<'_>, name: &str, shape: &[usize]) -> Option<StoredDtype> {
        let Some(entry) = checkpoint.get(name) else {
            self.problems.push(format!("missing tensor {name} (expected shape {shape:?})"));
            return None;
        };
        self.used.insert(name.to_string());
        if entry.shape != shape {
            self.problems.push(format!("tensor {name} has shape {:?}, expected {shape:?}", entry.shape));
            return None;
        }
        Some(entry.dtype)
    }

    /// Record a tensor whose values could not be used (the checkpoint is damaged): `None`.
    fn damage<T>(&mut self, e: Error) -> Option<T> {
        self.damaged.push(match e {
            Error::Format { reason, .. } => reason,
            e => e.to_string(),
        });
        None
    }

    /// Whether `name` is stored quantised to int8 (see [`Checkpoint`]).
    pub fn quantized(&self, name: &str) -> bool {
        self.checkpoint.is_some_and(|c| c.is_quantized(name))
    }

    /// A quantised weight's int8 values and one scale per output row (see
    /// [`Checkpoint::read_q8`]), checked against `shape` as [`Self::host`] checks; `None`, with
    /// the problem recorded, when it is missing, mis-shaped or damaged, and while checking.
    pub fn host_q8(&mut self, name: &str, shape: &[usize]) -> Option<(Vec<i8>, Vec<f32>)> {
        let checkpoint = self.checkpoint?;
        self.located(checkpoint, name, shape)?;
        if self.checking {
            return None;
        }
        match checkpoint.read_q8(name) {
            Ok(q) => Some(q),
            Err(e) => self.damage(e),
        }
    }

    /// The stored shape of `name`, for axes the config does not state.
    pub fn host_shape(&self, name: &str) -> Option<Vec<usize>> {
        self.checkpoint.and_then(|c| c.get(name)).map(|e| e.shape.clone())
    }

    /// The type `name` is stored as (`I8` for a quantised weight); `None` for random weights
    /// and a missing tensor.
    pub fn stored_dtype(&self, name: &str) -> Option<StoredDtype> {
        self.checkpoint.and_then(|c| c.get(name)).map(|e| e.dtype)
    }

    /// A tensor some files carry as a copy of another (weights the model ties together): it is
    /// not read, and not reported as unexpected when present.
    pub fn tied(&mut self, name: &str) {
        if self.checkpoint.is_some_and(|c| c.get(name).is_some()) {
            self.used.insert(name.to_string());
        }
    }

    /// Load `name` as a device tensor of `shape`. On a problem, records it and returns zeros so
    /// the walk can go on and report everything at once; while checking, returns a stand-in of
    /// that shape that holds one element.
    pub fn tensor<const D: usize>(&mut self, name: &str, shape: [usize; D]) -> Tensor<D> {
        let values = self.host(name, &shape);
        self.upload(values, shape)
    }

    /// `name`, `[rows, cols]`, as device tensors of at most `block` rows each, uploaded one at
    /// a time: a table larger than one GPU buffer may be (see [`crate::device::buffer_budget`]).
    pub fn tensor_row_blocks(&mut self, name: &str, shape: [usize; 2], block: usize) -> Vec<Tensor<2>> {
        let [rows, cols] = shape;
        let values = self.host(name, &shape);
        (0..rows)
            .step_by(block.max(1))
            .map(|r0| {
                let r1 = (r0 + block.max(1)).min(rows);
                self.upload(values.as_ref().map(|v| v[r0 * cols..r1 * cols].to_vec()), [r1 - r0, cols])
            })
            .collect()
    }

    /// `name`, stored as `stored`, as a device tensor of `shape` holding the same elements (a
    /// 1x1 convolution's weight as a matrix). While checking, the stand-in has `shape` itself: a
    /// broadcast stand-in reshaped afterwards would be copied out whole.
    pub fn tensor_as<const D: usize, const E: usize>(
        &mut self,
        name: &str,
        stored: [usize; D],
        shape: [usize; E],
    ) -> Tensor<E> {
        let values = self.host(name, &stored);
        self.upload(values, shape)
    }

    /// `name`, stored as `shape` = `[rows, ...]`, as a device tensor `[cols, rows]` where `cols`
    /// is the product of the other axes: flattened and transposed once on the host (a linear
    /// layer's or a patch embedding's weight, held the way its product reads it).
    pub fn tensor_transposed<const D: usize>(&mut self, name: &str, shape: [usize; D]) -> Tensor<2> {
        let rows = shape[0];
        let cols = shape[1..].iter().product::<usize>();
        let values = self.host(name, &shape).map(|values| transpose(&values, rows, cols));
        self.upload(values, [cols, rows])
    }

    /// Host values as a device tensor of `shape`, or the stand-in `host` left room for when
    /// there are none (see [`Self::tensor`]).
    fn upload<const D: usize>(&mut self, values: Option<Vec<f32>>, shape: [usize; D]) -> Tensor<D> {
        match values {
            Some(values) => {
                self.held.f32 += values.len() * size_of::<f32>();
                Tensor::from_data(TensorData::new(values, shape), &self.device)
            }
            // A config that asks for an empty axis was reported by `host`; nothing to allocate.
            None if shape.contains(&0) => Tensor::zeros(shape, &self.device),
            None if self.checking => Tensor::<D>::zeros([1; D], &self.device).expand(shape),
            None => Tensor::zeros(shape, &self.device),
        }
    }

    /// The tensors under `name` (a key prefix such as `"vision_model"`; an empty name is the
    /// checkpoint's root), whose keys the [`Scope`] completes.
    pub fn pp(&mut self, name: impl Display) -> Scope<'_, 'c, 'a> {
        Scope { loader: self, prefix: name.to_string() }
    }

    /// Count what a layer keeps of its weights itself (on the host: packed, or as stored).
    pub fn hold(&mut self, held: HeldBytes) {
        self.held += held;
    }

    /// Every tensor whose name starts with `prefix` is left unread without being reported as
    /// unexpected (a CLIP checkpoint's vision tower when only its text tower is wanted).
    pub fn skip_prefix(&mut self, prefix: &str) {
        self.skip_where(|n| n.starts_with(prefix));
    }

    /// Every tensor whose name passes `skip` is left unread without being reported as
    /// unexpected.
    pub fn skip_where(&mut self, skip: impl Fn(&str) -> bool) {
        if let Some(checkpoint) = self.checkpoint {
            self.used.extend(checkpoint.names().filter(|n| skip(n)).map(String::from));
        }
    }

    /// Report every problem seen, and every checkpoint key the model did not use.
    pub fn finish(self) -> Result<()> {
        let Some(checkpoint) = self.checkpoint else {
            return Ok(());
        };
        let mut problems = self.problems;
        let unexpected: Vec<&str> = checkpoint.names().filter(|n| !self.used.contains(*n) && !ignorable(n)).collect();
        if !unexpected.is_empty() {
            const SHOWN: usize = 20;
            let mut line = format!(
                "{} unexpected tensors: {}",
                unexpected.len(),
                unexpected[..unexpected.len().min(SHOWN)].join(", ")
            );
            if unexpected.len() > SHOWN {
                line.push_str(", ...");
            }
            problems.push(line);
        }
        if problems.is_empty() && self.damaged.is_empty() {
            return Ok(());
        }
        if problems.is_empty() {
            return Err(Error::format(&checkpoint.source_name, self.damaged.join("\n")));
        }
        problems.extend(self.damaged);
        Err(Error::Mismatch {
            source_name: checkpoint.source_name.clone(),
            architecture: self.architecture,
            count: problems.len(),
            problems,
        })
    }
}

/// A [`WeightLoader`] under a key prefix, as candle's `VarBuilder::pp`: `loader.pp("text_model")
/// .pp("encoder.layers").pp(3)` is the scope of `text_model.encoder.layers.3`, and its methods
/// take the rest of a key (`scope.tensor("weight", shape)` asks for
/// `text_model.encoder.layers.3.weight`). It borrows the loader, so a module hands each part a
/// narrower scope of its own in turn. Each `pp` borrows the scope it narrows: a chain is for one
/// expression (`Linear::load(p.pp("layers").pp(i), ...)`), and a scope kept in a variable is
/// narrowed from one that outlives it.
pub struct Scope<'l, 'c, 'a> {
    loader: &'l mut WeightLoader<'c, 'a>,
    prefix: String,
}

impl<'c, 'a> Scope<'_, 'c, 'a> {
    /// The scope of `name` under this one (a key segment, several joined by dots, or an index);
    /// an empty name is this scope itself.
    pub fn pp(&mut self, name: impl Display) -> Scope<'_, 'c, 'a> {
        let prefix = self.key(name);
        Scope { loader: &mut *self.loader, prefix }
    }

    /// The full checkpoint key of `name` in this scope.
    pub fn key(&self, name: impl Display) -> String {
        let name = name.to_string();
        if self.prefix.is_empty() {
            name
        } else if name.is_empty() {
            self.prefix.clone()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    /// [`WeightLoader::device`].
    pub fn device(&self) -> &Device {
        self.loader.device()
    }

    /// [`WeightLoader::packs_linear`].
    pub fn packs_linear(&self) -> bool {
        self.loader.packs_linear()
    }

    /// [`WeightLoader::checking`].
    pub fn checking(&self) -> bool {
        self.loader.checking()
    }

    /// [`WeightLoader::host`] of `name` in this scope.
    pub fn host(&mut self, name: &str, shape: &[usize]) -> Option<Vec<f32>> {
        let key = self.key(name);
        self.loader.host(&key, shape)
    }

    /// [`Self::host`] for values the layer keeps on the host as they are: counted as held.
    pub fn host_kept(&mut self, name: &str, shape: &[usize]) -> Option<Vec<f32>> {
        let values = self.host(name, shape);
        self.hold(HeldBytes::f32s(values.as_ref().map_or(0, Vec::len)));
        values
    }

    /// [`WeightLoader::tensor_row_blocks`] of `name` in this scope.
    pub fn tensor_row_blocks(&mut self, name: &str, shape: [usize; 2], block: usize) -> Vec<Tensor<2>> {
        let key = self.key(name);
        self.loader.tensor_row_blocks(&key, shape, block)
    }

    /// [`WeightLoader::host_shape`] of `name` in this scope.
    pub fn host_shape(&self, name: &str) -> Option<Vec<usize>> {
        self.loader.host_shape(&self.key(name))
    }

    /// [`WeightLoader::stored_dtype`] of `name` in this scope.
    pub fn stored_dtype(&self, name: &str) -> Option<StoredDtype> {
        self.loader.stored_dtype(&self.key(name))
    }

    /// [`WeightLoader::quantized`] of `name` in this scope.
    pub fn quantized(&self, name: &str) -> bool {
        self.loader.quantized(&self.key(name))
    }

    /// [`WeightLoader::host_q8`] of `name` in this scope.
    pub fn host_q8(&mut self, name: &str, shape: &[usize]) -> Option<(Vec<i8>, Vec<f32>)> {
        let key = self.key(name);
        self.loader.host_q8(&key, shape)
    }

    /// [`WeightLoader::tied`] for `name` in this scope.
    pub fn tied(&mut self, name: &str) {
        let key = self.key(name);
        self.loader.tied(&key);
    }

    /// [`WeightLoader::tensor`] of `name` in this scope.
    pub fn tensor<const D: usize>(&mut self, name: &str, shape: [usize; D]) -> Tensor<D> {
        let key = self.key(name);
        self.loader.tensor(&key, shape)
    }

    /// [`WeightLoader::tensor_transposed`] of `name` in this scope.
    pub fn tensor_transposed<const D: usize>(&mut self, name: &str, shape: [usize; D]) -> Tensor<2> {
        let key = self.key(name);
        self.loader.tensor_transposed(&key, shape)
    }

    /// [`WeightLoader::hold`].
    pub fn hold(&mut self, held: HeldBytes) {
        self.loader.hold(held);
    }
}

/// A row-major `rows x cols` matrix as its `cols x rows` transpose, a tile at a time so that
/// both the reads and the writes stay in cache (a plain loop's strided writes made this most of
/// the time spent loading a checkpoint).
fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    const TILE: usize = 32;
    let mut t = vec![0f32; values.len()];
    for r0 in (0..rows).step_by(TILE) {
        for c0 in (0..cols).step_by(TILE) {
            for r in r0..(r0 + TILE).min(rows) {
                let row = &values[r * cols..(r + 1) * cols];
                for c in c0..(c0 + TILE).min(cols) {
                    t[c * rows + r] = row[c];
                }
            }
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::{WeightLoader, transpose};

    /// A scope's methods ask for the full key: prefixes joined by dots, indices as segments, an
    /// empty name adding nothing.
    #[cfg(feature = "cpu")]
    #[test]
    fn scopes_ask_for_full_keys() {
        let device = crate::device::cpu().unwrap();
        let mut names = Vec::new();
        {
            let mut loader = WeightLoader::random(&device).with_hook(|name, _| names.push(name.to_string()));
            let mut vision = loader.pp("vision_model");
            vision.pp("encoder.layers").pp(3).pp("mlp.fc1").tensor::<1>("bias", [2]);
            vision.pp("").tensor::<1>("class_embedding", [2]);
            assert_eq!(vision.key(""), "vision_model");
            loader.pp("").host("logit_scale", &[]);
        }
        assert_eq!(
            names,
            ["vision_model.encoder.layers.3.mlp.fc1.bias", "vision_model.class_embedding", "logit_scale"]
        );
    }

    #[test]
    fn transpose_covers_partial_tiles() {
        // Sizes that are not multiples of the tile, on both axes.
        let (rows, cols) = (45, 70);
        let values: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
        let t = transpose(&values, rows, cols);
        for r in 0..rows {
            for c in 0..cols {
                assert_eq!(t[c * rows + r], values[r * cols + c], "element ({r}, {c})");
            }
        }
    }
}
