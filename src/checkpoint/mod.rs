//! Checkpoints read from bytes: HF `model.safetensors` and PyTorch `pytorch_model.bin` (the
//! zip container `torch.save` writes). One reader serves native code (bytes from a memory map)
//! and the browser (bytes from `fetch`), so there is a single loading path everywhere.
//!
//! Reading is lazy: opening a checkpoint parses only its index; the bytes of a tensor are
//! converted to `f32` when [`Checkpoint::read_f32`] asks for them, one tensor at a time, so
//! loading never holds a second full copy of the weights. A safetensors file can also stay
//! outside the program's memory ([`Checkpoint::from_source`]): the page keeps the downloaded
//! file in JavaScript and the wasm heap receives one tensor at a time.

mod pickle;
mod pytorch;
mod safetensors;

pub use safetensors::write as write_safetensors_as;
pub use safetensors::write_f32 as write_safetensors;
pub use safetensors::{Values, write_values as write_safetensors_values};

/// `tensors` as `wordmask convert --dtype q8` writes them: the weights [`quantizable`] picks as
/// int8 with one f32 scale per output row (`<name>._data` `[out, ...]`, `<name>._scale` `[out,
/// 1, ...]`, as optimum-quanto saves a `qint8` weight), the others as f16.
pub fn write_safetensors_q8(tensors: &[(String, Vec<usize>, Vec<f32>)]) -> Result<Vec<u8>> {
    /// A weight quantised: its int8 values, scales, the scales' shape and the two keys.
    type Quantised = (Vec<i8>, Vec<f32>, Vec<usize>, [String; 2]);
    let quantised: Vec<Option<Quantised>> = tensors
        .iter()
        .map(|(name, shape, values)| {
            quantizable(name, shape).then(|| {
                let (q, scales) = quantize_rows(values, shape[0]);
                let mut scale_shape = vec![1; shape.len()];
                scale_shape[0] = shape[0];
                (q, scales, scale_shape, [format!("{name}{Q_DATA}"), format!("{name}{Q_SCALE}")])
            })
        })
        .collect();
    let mut stored: Vec<(&str, &[usize], Values<'_>)> = Vec::new();
    for ((name, shape, values), q) in tensors.iter().zip(&quantised) {
        match q {
            Some((q, scales, scale_shape, [data, scale])) => {
                stored.push((data, shape, Values::I8(q)));
                stored.push((scale, scale_shape, Values::F32(scales)));
            }
            None => stored.push((name, shape, Values::F16(values))),
        }
    }
    write_safetensors_values(&stored)
}

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::error::{Error, Result};

/// A pickled dict of integer keys to lists of strings, as HSNet's COCO-20i split files hold
/// (class -> image names), read with the checkpoint reader's bounded pickle machine (nothing
/// is executed); `source_name` names the file in errors.
pub fn read_string_lists(bytes: &[u8], source_name: &str) -> Result<Vec<(i64, Vec<String>)>> {
    pickle::int_keyed_string_lists(bytes).map_err(|e| Error::invalid(format!("cannot read {source_name}: {e}")))
}

/// Element type as stored in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredDtype {
    F64,
    F32,
    F16,
    BF16,
    I64,
    I32,
    I8,
    U8,
    Bool,
}

impl StoredDtype {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            StoredDtype::F64 | StoredDtype::I64 => 8,
            StoredDtype::F32 | StoredDtype::I32 => 4,
            StoredDtype::F16 | StoredDtype::BF16 => 2,
            StoredDtype::I8 | StoredDtype::U8 | StoredDtype::Bool => 1,
        }
    }

    /// A floating-point type (what weights are stored as, but for int8 ones).
    pub fn is_float(self) -> bool {
        matches!(self, StoredDtype::F64 | StoredDtype::F32 | StoredDtype::F16 | StoredDtype::BF16)
    }
}

/// One tensor of a checkpoint, not yet converted.
#[derive(Debug, Clone)]
pub struct TensorEntry<'a> {
    pub dtype: StoredDtype,
    pub shape: Vec<usize>,
    /// Element strides (row-major contiguous for safetensors).
    strides: Vec<usize>,
    /// The storage the tensor views, starting at the tensor's first element.
    data: Storage<'a>,
}

/// Where a tensor's bytes are.
#[derive(Debug, Clone)]
enum Storage<'a> {
    /// In memory, starting at the tensor's first element.
    Bytes(&'a [u8]),
    /// A storage inflated from a compressed zip entry (once, whatever the number of tensors
    /// viewing it), the tensor starting at the given byte.
    Inflated(Arc<[u8]>, usize),
    /// Bytes `start..end` of the checkpoint's [`ByteSource`].
    Range(usize, usize),
}

/// A file read one range at a time (the page's downloaded weights, held by JavaScript).
pub trait ByteSource {
    /// Length of the file in bytes.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// A copy of bytes `start..end` (callers stay within `len`).
    fn read(&self, start: usize, end: usize) -> Vec<u8>;
}

/// Elements of a tensor of `shape`, or `None` when the count overflows (a crafted file).
pub(crate) fn elements(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
}

/// An opened checkpoint: names, dtypes and shapes of its tensors, bytes borrowed from the input.
///
/// Weights quantised to int8 as optimum-quanto stores them (`qint8`: `K._data`, int8 `[out,
/// ...]`, and `K._scale`, one float per output row, `[out, 1, ...]`; weight = data × scale) are
/// listed under their own name `K`, as an `I8` tensor of the data's shape:
/// [`Checkpoint::read_f32`] gives the dequantised values and [`Checkpoint::read_q8`] the int8
/// values and scales. The activation scales quanto saves beside them (`input_scale`,
/// `output_scale`) are not listed: only weights are quantised here.
pub struct Checkpoint<'a> {
    /// Where the bytes came from, for error messages (a path or a URL).
    pub source_name: String,
    entries: BTreeMap<String, TensorEntry<'a>>,
    /// Quantised weights by their own name: the data's entry, and the scale's key.
    quantized: BTreeMap<String, (TensorEntry<'a>, String)>,
    /// Keys listed under another name (`._data`, `._scale`) or not at all (activation scales).
    folded: std::collections::BTreeSet<String>,
    /// The file behind `Storage::Range` entries.
    source: Option<Box<dyn ByteSource + 'a>>,
}

/// The suffixes optimum-quanto gives a quantised weight's int8 values and its scales.
pub const Q_DATA: &str = "._data";
pub const Q_SCALE: &str = "._scale";

/// `values` (`rows` rows, row-major) quantised to int8 with one scale per row, as
/// optimum-quanto's `qint8` weights are (`absmax_scale` over all axes but the first, then
/// `round(value / scale)` clamped to int8, rounding half to even as torch does): scale = the
/// row's largest magnitude / 127. A row of zeros gets scale 0 (and values 0).
pub fn quantize_rows(values: &[f32], rows: usize) -> (Vec<i8>, Vec<f32>) {
    let per_row = values.len().checked_div(rows).unwrap_or(0);
    let mut q = Vec::with_capacity(values.len());
    let mut scales = Vec::with_capacity(rows);
    for row in values.chunks(per_row.max(1)).take(rows) {
        let absmax = row.iter().fold(0f32, |m, v| m.max(v.abs()));
        let scale = absmax / 127.0;
        scales.push(scale);
        q.extend(
            row.iter().map(|&v| if scale > 0.0 { (v / scale).round_ties_even().clamp(-128.0, 127.0) as i8 } else { 0 }),
        );
    }
    (q, scales)
}

/// Whether `wordmask convert --dtype q8` quantises a tensor: the weights optimum-quanto
/// quantises (its `Linear` and `Conv2d` modules, not norms: a `*.weight` of three or more axes,
/// a convolution's or a patch embedding's among them, or of two unless its name says it is an
/// embedding table or learned tokens), and besides them the text towers' token tables
/// ([`lookup_table`]) whose rows are at least [`Q8_TABLE_WIDTH`] wide, which quanto leaves
/// alone (it does not quantise `nn.Embedding`).
pub fn quantizable(name: &str, shape: &[usize]) -> bool {
    let lower = name.to_ascii_lowercase();
    let table = lower.contains("embed") || lower.contains("token");
    let wide_table = lookup_table(name) && shape.get(1).is_some_and(|&w| w >= Q8_TABLE_WIDTH);
    name.ends_with(".weight")
        && shape.iter().all(|&d| d > 0)
        && !lower.contains("norm")
        && (shape.len() >= 3 || (shape.len() == 2 && (!table || wide_table)))
}

/// The narrowest token table `convert --dtype q8` stores as int8: a row is then its values and
/// one f32 scale, `width + 4` bytes against f16's `2 width`, so a narrow row gains little (8
/// values: 12 bytes against 16) for int8's rounding. Every hub text tower's rows are 512 wide
/// or more.
pub const Q8_TABLE_WIDTH: usize = 64;

/// Whether `name` is a text tower's token table, which a text reads a few rows of by id (CLIP's
/// `token_embedding.weight`, BERT's `word_embeddings.weight`): the models hold it as stored on
/// the CPU backend (`nn::EmbeddingTable`), so a q8 file keeps it int8 in memory, one scale per
/// row, where it is the largest tensor of a CLIP (ViT-B/16's is 49,408 x 512).
pub fn lookup_table(name: &str) -> bool {
    name.ends_with("token_embedding.weight") || name.ends_with("word_embeddings.weight")
}

/// Quantised weights of `entries` (see [`Checkpoint`]): by name, the data's entry and the scale's
/// key; and the keys they fold away. A `._data` without its `._scale`, of another type than
/// int8, or whose scales are not one per output row (or one for all), is an error naming it.
#[allow(clippy::type_complexity)]
fn fold_quantized<'a>(
    entries: &BTreeMap<String, TensorEntry<'a>>,
    source: &str,
) -> Result<(BTreeMap<String, (TensorEntry<'a>, String)>, std::collections::BTreeSet<String>)> {
    let mut quantized = BTreeMap::new();
    let mut folded = std::collections::BTreeSet::new();
    for (name, data) in entries {
        let Some(base) = name.strip_suffix(Q_DATA) else { continue };
        let scale_name = format!("{base}{Q_SCALE}");
        let fail = |reason: String| Error::format(source, format!("quantised tensor {base}: {reason}"));
        let scale = entries.get(&scale_name).ok_or_else(|| fail(format!("{name} has no {scale_name} beside it")))?;
        if data.dtype != StoredDtype::I8 {
            return Err(fail(format!("{name} is stored as {:?}; int8 (qint8) weights are read", data.dtype)));
        }
        if !scale.dtype.is_float() {
            return Err(fail(format!("{scale_name} is stored as {:?}, expected floating point", scale.dtype)));
        }
        let rows = data.shape.first().copied().unwrap_or(1);
        let scales = elements(&scale.shape).unwrap_or(0);
        if scales != rows && scales != 1 {
            return Err(fail(format!(
                "{scale_name} has shape {:?}: one scale per output row ({rows}) or one for all is read",
                scale.shape
            )));
        }
        if entries.contains_key(base) {
            return Err(fail(format!("the file holds both {base} and its quantised {name}")));
        }
        quantized.insert(base.to_string(), (data.clone(), scale_name.clone()));
        folded.extend([name.clone(), scale_name]);
        // The layer's activation scales, saved by quanto whether or not activations are
        // quantised (weights only are, here).
        if let Some(layer) = base.strip_suffix(".weight") {
            for extra in ["input_scale", "output_scale"] {
                let key = format!("{layer}.{extra}");
                if entries.contains_key(&key) {
                    folded.insert(key);
                }
            }
        }
    }
    Ok((quantized, folded))
}

impl<'a> Checkpoint<'a> {
    /// Open a checkpoint, detecting the container from its first bytes.
    pub fn from_bytes(bytes: &'a [u8], source_name: &str) -> Result<Self> {
        if bytes.is_empty() {
            return Err(Error::format(source_name, "the file is empty"));
        }
        let entries = if bytes.starts_with(b"PK\x03\x04") {
            pytorch::read_index(bytes, source_name)?
        } else if bytes.len() >= 9 && bytes[8] == b'{' {
            safetensors::read_index(bytes, source_name)?
        } else {
            return Err(Error::format(
                source_name,
                "neither a safetensors file nor a PyTorch zip checkpoint (unrecognised first bytes)",
            ));
        };
        let (quantized, folded) = fold_quantized(&entries, source_name)?;
        Ok(Checkpoint { source_name: source_name.to_string(), entries, quantized, folded, source: None })
    }

    /// Open a safetensors file through `source` without copying it: only its header is read
    /// now, each tensor's bytes when it is converted. Other containers are refused (read them
    /// into memory and use [`Checkpoint::from_bytes`]).
    pub fn from_source(source: Box<dyn ByteSource + 'a>, source_name: &str) -> Result<Self> {
        let len = source.len();
        if len == 0 {
            return Err(Error::format(source_name, "the file is empty"));
        }
        let head = source.read(0, len.min(9));
        if head.len() < 9 || head[8] != b'{' {
            return Err(Error::format(source_name, "not a safetensors file (its header does not start with '{')"));
        }
        let entries = safetensors::read_index_from(&*source, source_name)?;
        let (quantized, folded) = fold_quantized(&entries, source_name)?;
        Ok(Checkpoint { source_name: source_name.to_string(), entries, quantized, folded, source: Some(source) })
    }

    /// Whether `bytes` start as a safetensors file does (what [`Checkpoint::from_source`] reads).
    pub fn is_safetensors(first_bytes: &[u8]) -> bool {
        first_bytes.len() >= 9 && first_bytes[8] == b'{'
    }

    /// Tensor names, sorted (a quantised weight under its own name).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        let mut names: Vec<&str> = self
            .entries
            .keys()
            .filter(|n| !self.folded.contains(*n))
            .chain(self.quantized.keys())
            .map(String::as_str)
            .collect();
        names.sort_unstable();
        names.into_iter()
    }

    /// A tensor's entry (a quantised weight's: `I8`, its data's shape).
    pub fn get(&self, name: &str) -> Option<&TensorEntry<'a>> {
        self.entries.get(name).or_else(|| self.quantized.get(name).map(|(data, _)| data))
    }

    /// Whether `name` is a quantised weight (read it with [`Self::read_q8`]).
    pub fn is_quantized(&self, name: &str) -> bool {
        self.quantized.contains_key(name)
    }

    pub fn len(&self) -> usize {
        self.names().count()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// A quantised weight's int8 values (row-major, its data's shape) and one scale per output
    /// row (a single scale repeated): weight = value × its row's scale. Scales that are not
    /// finite are refused.
    pub fn read_q8(&self, name: &str) -> Result<(Vec<i8>, Vec<f32>)> {
        let (data, scale_name) = self
            .quantized
            .get(name)
            .ok_or_else(|| Error::format(&self.source_name, format!("no quantised tensor named {name}")))?;
        let values: Vec<i8> = self.read(&format!("{name}{Q_DATA}"), false)?.into_iter().map(|v| v as i8).collect();
        let rows = data.shape.first().copied().unwrap_or(1);
        let mut scales = self.read(scale_name, true)?;
        if scales.len() == 1 {
            scales = vec![scales[0]; rows];
        }
        Ok((values, scales))
    }

    /// The first stored floating dtype, to report what a checkpoint holds.
    pub fn float_dtype(&self) -> Option<StoredDtype> {
        self.entries
            .values()
            .map(|e| e.dtype)
            .find(|d| matches!(d, StoredDtype::F32 | StoredDtype::F16 | StoredDtype::BF16 | StoredDtype::F64))
    }

    /// Convert one tensor to row-major `f32`.
    pub fn read_f32(&self, name: &str) -> Result<Vec<f32>> {
        self.read(name, false)
    }

    /// [`Self::read_f32`], refusing a floating tensor that holds NaN or an infinity (what a
    /// model loads: such a weight would turn every score into NaN, and every pixel unlabelled).
    /// The check runs as the values are converted, a cached block at a time.
    pub fn read_finite_f32(&self, name: &str) -> Result<Vec<f32>> {
        self.read(name, true)
    }

    fn read(&self, name: &str, finite: bool) -> Result<Vec<f32>> {
        if self.quantized.contains_key(name) {
            let (values, scales) = self.read_q8(name)?;
            let per_row = values.len().checked_div(scales.len()).unwrap_or(0);
            return Ok(values
                .iter()
                .enumerate()
                .map(|(i, &v)| f32::from(v) * scales[i.checked_div(per_row).unwrap_or(0)])
                .collect());
        }
        let fail = |reason: String| Error::format(&self.source_name, format!("tensor {name}: {reason}"));
        let entry = self
            .entries
            .get(name)
            .ok_or_else(|| Error::format(&self.source_name, format!("no tensor named {name}")))?;
        let bytes = match (&entry.data, &self.source) {
            (Storage::Bytes(bytes), _) => Cow::Borrowed(*bytes),
            (Storage::Inflated(bytes, start), _) => Cow::Borrowed(&bytes[*start..]),
            // Safetensors data is contiguous and its range was checked against the shape when
            // the index was read: decode it a chunk at a time, so that loading holds the values
            // and one chunk, never a second copy of the tensor in bytes.
            (Storage::Range(start, end), Some(source)) if entry.strides == contiguous_strides(&entry.shape) => {
                let size = entry.dtype.size();
                let step = (CHUNK / size) * size;
                let mut out = Vec::with_capacity((end - start) / size);
                for at in (*start..*end).step_by(step) {
                    let chunk = source.read(at, (at + step).min(*end));
                    decode_checked(&chunk, entry.dtype, &mut out, finite).map_err(fail)?;
                }
                return Ok(out);
            }
            (Storage::Range(start, end), Some(source)) => Cow::Owned(source.read(*start, *end)),
            (Storage::Range(..), None) => unreachable!("range entries come with their source"),
        };
        to_f32(entry, &bytes, finite).map_err(fail)
    }
}

/// Bytes read from a [`ByteSource`] at a time.
const CHUNK: usize = 1 << 20;

/// Decode whole elements of `bytes`, stored back to back, onto `out`: one loop per dtype, which
/// the compiler vectorises (f32 becomes a copy), where a per-element dispatch did not (loading
/// ViT-B/16 spent a sixth of its time there).
fn decode(bytes: &[u8], dtype: StoredDtype, out: &mut Vec<f32>) {
    fn each<const N: usize>(bytes: &[u8], out: &mut Vec<f32>, f: impl Fn([u8; N]) -> f32) {
        let (elements, _) = bytes.as_chunks::<N>();
        out.extend(elements.iter().map(|&b| f(b)));
    }
    match dtype {
        StoredDtype::F32 => each(bytes, out, f32::from_le_bytes),
        StoredDtype::F16 => each(bytes, out, |b| half::f16::from_le_bytes(b).to_f32()),
        StoredDtype::BF16 => each(bytes, out, |b| half::bf16::from_le_bytes(b).to_f32()),
        StoredDtype::F64 => each(bytes, out, |b| f64::from_le_bytes(b) as f32),
        StoredDtype::I64 => each(bytes, out, |b| i64::from_le_bytes(b) as f32),
        StoredDtype::I32 => each(bytes, out, |b| i32::from_le_bytes(b) as f32),
        StoredDtype::I8 => each(bytes, out, |[b]: [u8; 1]| f32::from(b as i8)),
        StoredDtype::U8 | StoredDtype::Bool => each(bytes, out, |[b]: [u8; 1]| b as f32),
    }
}

/// Decode one element at byte offset `at`.
fn element(bytes: &[u8], at: usize, dtype: StoredDtype) -> f32 {
    let b = &bytes[at..at + dtype.size()];
    match dtype {
        StoredDtype::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        StoredDtype::F16 => half::f16::from_le_bytes([b[0], b[1]]).to_f32(),
        StoredDtype::BF16 => half::bf16::from_le_bytes([b[0], b[1]]).to_f32(),
        StoredDtype::F64 => f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32,
        StoredDtype::I64 => i64::from_le_bytes(b.try_into().expect("8 bytes")) as f32,
        StoredDtype::I32 => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32,
        StoredDtype::I8 => f32::from(b[0] as i8),
        StoredDtype::U8 | StoredDtype::Bool => b[0] as f32,
    }
}

/// Elements a view of `shape` with `strides` reaches in its storage (the furthest one's index
/// plus one; 0 for an empty view), or `None` when that overflows (a crafted file).
pub(crate) fn extent(shape: &[usize], strides: &[usize]) -> Option<usize> {
    if shape.contains(&0) {
        return Some(0);
    }
    let last = shape
        .iter()
        .zip(strides)
        .try_fold(0usize, |sum, (&d, &s)| (d - 1).checked_mul(s).and_then(|x| sum.checked_add(x)))?;
    last.checked_add(1)
}

/// `entry`'s values from its storage `data`, row-major; with `finite`, refused at the first NaN
/// or infinity (checked a block at a time as it is decoded, while the block is in cache).
fn to_f32(entry: &TensorEntry<'_>, data: &[u8], finite: bool) -> std::result::Result<Vec<f32>, String> {
    let size = entry.dtype.size();
    if entry.shape.len() != entry.strides.len() {
        return Err(format!("shape {:?} and strides {:?} disagree", entry.shape, entry.strides));
    }
    let n = elements(&entry.shape).ok_or_else(|| format!("shape {:?} has too many elements", entry.shape))?;
    // The furthest element the strides reach must lie inside the storage (all sums checked: the
    // sizes come from the file).
    let needed = extent(&entry.shape, &entry.strides).and_then(|l| l.checked_mul(size));
    match needed {
        Some(bytes) if bytes <= data.len() => {}
        Some(bytes) => {
            return Err(format!("data is truncated: needs {bytes} bytes, the file holds {}", data.len()));
        }
        None => return Err(format!("shape {:?} with strides {:?} overflows", entry.shape, entry.strides)),
    }
    // A view may repeat its storage's elements (a stride of 0, as `expand` makes), but then a
    // few bytes would claim any number of values: no state dict of ours holds one.
    if n.checked_mul(size).is_none_or(|bytes| bytes > data.len()) {
        return Err(format!(
            "shape {:?} with strides {:?} repeats the {} elements of its storage",
            entry.shape,
            entry.strides,
            data.len() / size
        ));
    }
    let mut out = Vec::with_capacity(n);
    if contiguous_strides(&entry.shape) == entry.strides {
        decode_checked(&data[..n * size], entry.dtype, &mut out, finite)?;
    } else {
        let mut index = vec![0usize; entry.shape.len()];
        for _ in 0..n {
            let offset: usize = index.iter().zip(&entry.strides).map(|(i, s)| i * s).sum();
            out.push(element(data, offset * size, entry.dtype));
            for axis in (0..index.len()).rev() {
                index[axis] += 1;
                if index[axis] < entry.shape[axis] {
                    break;
                }
                index[axis] = 0;
            }
        }
        if finite {
            check_finite(&out, 0)?;
        }
    }
    Ok(out)
}

/// Elements decoded between two checks of [`decode_checked`]: 16 KiB of `f32`, which stays in
/// the first-level cache, so the check adds a pass over cached values, not over memory.
const CHECK_BLOCK: usize = 4096;

/// [`decode`], and with `finite`, each block of values checked as it is decoded.
fn decode_checked(
    bytes: &[u8],
    dtype: StoredDtype,
    out: &mut Vec<f32>,
    finite: bool,
) -> std::result::Result<(), String> {
    let floats = matches!(dtype, StoredDtype::F64 | StoredDtype::F32 | StoredDtype::F16 | StoredDtype::BF16);
    if !(finite && floats) {
        decode(bytes, dtype, out);
        return Ok(());
    }
    for block in bytes.chunks(CHECK_BLOCK * dtype.size()) {
        let start = out.len();
        decode(block, dtype, out);
        check_finite(&out[start..], start)?;
    }
    Ok(())
}

/// Refuse NaN and infinities in `values` (element `first` of the tensor onwards).
fn check_finite(values: &[f32], first: usize) -> std::result::Result<(), String> {
    // An exponent of all ones is NaN or an infinity, so the largest exponent tells; the scan has
    // no early exit, so that it vectorises, and the position is looked for only when one is found.
    const EXPONENT: u32 = 0x7f80_0000;
    if values.iter().fold(0, |most, v| most.max(v.to_bits() & EXPONENT)) == EXPONENT {
        let at = values.iter().position(|v| !v.is_finite()).unwrap_or(0);
        let value = values[at];
        return Err(format!(
            "element {} is {value}; weights holding NaN or infinities are damaged (a training run that diverged, or a broken conversion)",
            first + at
        ));
    }
    Ok(())
}

pub(crate) fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1];
    }
    strides
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The per-dtype loops decode what the per-element reader decodes, and leave a partial
    /// trailing element alone.
    #[test]
    fn whole_buffers_decode_as_single_elements_do() {
        let bytes: Vec<u8> = (0..67u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        use StoredDtype::*;
        for dtype in [F64, F32, F16, BF16, I64, I32, I8, U8, Bool] {
            let size = dtype.size();
            let mut got = vec![-1.0];
            decode(&bytes, dtype, &mut got);
            let want: Vec<f32> = std::iter::once(-1.0)
                .chain((0..bytes.len() / size).map(|i| element(&bytes, i * size, dtype)))
                .collect();
            assert_eq!(got.len(), want.len(), "{dtype:?}");
            for (g, w) in got.iter().zip(&want) {
                assert!(g == w || (g.is_nan() && w.is_nan()), "{dtype:?}: {g} vs {w}");
            }
        }
    }

    #[test]
    fn strided_tensors_are_gathered_in_row_major_order() {
        // A 2x3 matrix stored transposed (column-major): strides [1, 2].
        let values: Vec<u8> = [1f32, 4., 2., 5., 3., 6.].iter().flat_map(|v| v.to_le_bytes()).collect();
        let entry =
            TensorEntry { dtype: StoredDtype::F32, shape: vec![2, 3], strides: vec![1, 2], data: Storage::Range(0, 0) };
        assert_eq!(to_f32(&entry, &values, true).unwrap(), vec![1., 2., 3., 4., 5., 6.]);
    }

    #[test]
    fn half_precision_converts_exactly() {
        let values = [1.5f32, -2.25, 65504.0];
        let f16: Vec<u8> = values.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect();
        let bf16: Vec<u8> = values.iter().flat_map(|v| half::bf16::from_f32(*v).to_le_bytes()).collect();
        for (dtype, data) in [(StoredDtype::F16, f16), (StoredDtype::BF16, bf16)] {
            let entry = TensorEntry { dtype, shape: vec![3], strides: vec![1], data: Storage::Range(0, 0) };
            let got = to_f32(&entry, &data, true).unwrap();
            assert_eq!(got[0], 1.5);
            assert_eq!(got[1], -2.25);
            assert!((got[2] - 65504.0).abs() <= 256.0, "{dtype:?}: {}", got[2]);
        }
    }

    #[test]
    fn a_tensor_reaching_past_its_storage_is_an_error() {
        let entry =
            TensorEntry { dtype: StoredDtype::F32, shape: vec![4], strides: vec![1], data: Storage::Range(0, 0) };
        let err = to_f32(&entry, &[0; 12], true).unwrap_err();
        assert!(err.contains("truncated"), "{err}");
    }

    #[test]
    fn non_finite_weights_are_refused_with_their_place() {
        let mut values = vec![0.5f32; 10_000];
        values[9_000] = f32::NAN;
        let file = write_safetensors(&[("w".into(), vec![10_000], values)]).unwrap();
        let c = Checkpoint::from_bytes(&file, "m.safetensors").unwrap();
        let err = c.read_finite_f32("w").unwrap_err().to_string();
        assert!(err.contains("tensor w: element 9000 is NaN"), "{err}");
        assert_eq!(c.read_f32("w").unwrap().len(), 10_000, "read as it is when not asked to check");
        let inf = half::f16::INFINITY.to_le_bytes().repeat(3);
        let entry =
            TensorEntry { dtype: StoredDtype::F16, shape: vec![3], strides: vec![1], data: Storage::Range(0, 0) };
        let err = to_f32(&entry, &inf, true).unwrap_err();
        assert!(err.contains("element 0 is inf"), "{err}");
    }

    /// A file behind a reader that counts the bytes it hands out.
    struct Counted(Vec<u8>, std::cell::Cell<usize>);

    impl ByteSource for &Counted {
        fn len(&self) -> usize {
            self.0.len()
        }
        fn read(&self, start: usize, end: usize) -> Vec<u8> {
            self.1.set(self.1.get() + end - start);
            self.0[start..end].to_vec()
        }
    }

    #[test]
    fn a_source_is_read_one_tensor_at_a_time_and_agrees_with_bytes() {
        let tensors = vec![
            ("a".to_string(), vec![2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
            ("b".to_string(), vec![256], (0..256).map(|i| i as f32 * 0.25 - 3.0).collect()),
        ];
        let file = Counted(write_safetensors(&tensors).unwrap(), Default::default());
        let in_memory = Checkpoint::from_bytes(&file.0, "m.safetensors").unwrap();
        let lazy = Checkpoint::from_source(Box::new(&file), "m.safetensors").unwrap();
        let header = file.1.get();
        // The header and the first bytes (to tell the container), none of the 1,048 data bytes.
        assert!(header + 1048 <= file.0.len() + 9, "opening read {header} of {} bytes", file.0.len());
        assert_eq!(lazy.names().collect::<Vec<_>>(), vec!["a", "b"]);
        assert_eq!(lazy.read_f32("b").unwrap(), in_memory.read_f32("b").unwrap());
        assert_eq!(file.1.get() - header, 1024, "tensor b is 1,024 bytes");
        assert_eq!(lazy.read_f32("a").unwrap(), tensors[0].2);
        // A tensor of several chunks comes back whole, in order.
        let long: Vec<f32> = (0..(CHUNK / 4) * 2 + 5).map(|i| i as f32).collect();
        let big =
            Counted(write_safetensors(&[("c".into(), vec![long.len()], long.clone())]).unwrap(), Default::default());
        assert_eq!(Checkpoint::from_source(Box::new(&big), "c.safetensors").unwrap().read_f32("c").unwrap(), long);
        // A file cut inside tensor b is reported as truncated before anything is read.
        let cut = Counted(file.0[..file.0.len() - 4].to_vec(), Default::default());
        let err = Checkpoint::from_source(Box::new(&cut), "cut.safetensors").err().unwrap().to_string();
        assert!(err.contains("truncated"), "{err}");
        let zip = Counted(b"PK\x03\x04 and more bytes".to_vec(), Default::default());
        let err = Checkpoint::from_source(Box::new(&zip), "pytorch_model.bin").err().unwrap().to_string();
        assert!(err.contains("not a safetensors file"), "{err}");
    }

    #[test]
    fn unknown_bytes_are_refused_with_the_source_name() {
        let err = Checkpoint::from_bytes(b"hello world, not a model", "weights.bin").err().unwrap();
        let text = err.to_string();
        assert!(text.contains("weights.bin") && text.contains("unrecognised"), "{text}");
        let err = Checkpoint::from_bytes(b"", "empty.safetensors").err().unwrap();
        assert!(err.to_string().contains("empty"), "{err}");
    }
}
