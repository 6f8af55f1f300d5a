//! The zip container of `torch.save` (PyTorch ≥ 1.6): `<root>/data.pkl` describes the state
//! dict, `<root>/data/<key>` holds each storage's raw little-endian bytes. `torch.save` stores
//! entries uncompressed, so each storage is borrowed straight from the input bytes.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::io::{Cursor, Read};
use std::sync::Arc;

use super::pickle::{self, Value};
use super::{Storage, StoredDtype, TensorEntry};
use crate::error::{Error, Result};

fn storage_dtype(storage_type: &str) -> Option<StoredDtype> {
    Some(match storage_type {
        "FloatStorage" => StoredDtype::F32,
        "HalfStorage" => StoredDtype::F16,
        "BFloat16Storage" => StoredDtype::BF16,
        "DoubleStorage" => StoredDtype::F64,
        "LongStorage" => StoredDtype::I64,
        "IntStorage" => StoredDtype::I32,
        "CharStorage" => StoredDtype::I8,
        "ByteStorage" => StoredDtype::U8,
        "BoolStorage" => StoredDtype::Bool,
        _ => return None,
    })
}

/// Longest tensor name accepted (the dotted path through nested dicts): hub keys are under
/// 200 bytes. A bound is needed because each tensor's name repeats its dicts' keys, so one long
/// key over many tensors would multiply the pickle's size.
const MAX_NAME: usize = 1024;

/// Bytes that deflated zip entries may inflate to, in all: 32 times the archive (`torch.save`
/// stores its entries, so only a re-zipped checkpoint deflates them, and float weights deflate by
/// a tenth or so; a thousandfold ratio is a run of zeros, which is what a zip bomb is made of),
/// and a megabyte for tiny files.
fn inflate_limit(archive_len: usize) -> usize {
    archive_len.saturating_mul(32).saturating_add(1 << 20)
}

/// Flatten nested dicts into dotted names (a state dict is usually flat already).
fn collect(prefix: &str, value: Value, out: &mut Vec<(String, pickle::TensorRef)>) -> std::result::Result<(), String> {
    match value {
        Value::Dict(items) => {
            for (k, v) in items {
                let key = match k {
                    Value::Str(s) => s,
                    Value::Int(i) => i.to_string(),
                    _ => continue,
                };
                if prefix.len() + 1 + key.len() > MAX_NAME {
                    return Err(format!("a tensor name is longer than {MAX_NAME} bytes"));
                }
                let name = if prefix.is_empty() { key } else { format!("{prefix}.{key}") };
                collect(&name, v, out)?;
            }
        }
        Value::Tensor(t) => out.push((prefix.to_string(), *t)),
        _ => {}
    }
    Ok(())
}

/// An archive entry: its data start, stored size and whether it is deflated.
#[derive(Clone, Copy)]
struct Entry {
    start: u64,
    size: u64,
    compressed: bool,
}

/// The archive's entries by name, and the budget of bytes deflated entries may still inflate to.
struct Archive<'a> {
    bytes: &'a [u8],
    zip: zip::ZipArchive<Cursor<&'a [u8]>>,
    entries: HashMap<String, Entry>,
    inflate_left: usize,
}

impl<'a> Archive<'a> {
    fn entry(&self, name: &str) -> std::result::Result<Entry, String> {
        self.entries.get(name).copied().ok_or_else(|| format!("{name} is missing from the archive"))
    }

    /// The bytes of a stored entry, borrowed from the file.
    fn stored(&self, name: &str) -> std::result::Result<&'a [u8], String> {
        let entry = self.entry(name)?;
        // Offsets from the file, checked: on wasm32 a u64 does not fit a usize, and sums wrap.
        let span = entry
            .start
            .checked_add(entry.size)
            .and_then(|end| Some((usize::try_from(entry.start).ok()?, usize::try_from(end).ok()?)));
        match span {
            Some((start, end)) if end <= self.bytes.len() => Ok(&self.bytes[start..end]),
            _ => Err(format!("{name} runs past the end of the file (truncated)")),
        }
    }

    /// At most the first `want` bytes of a deflated entry, charged to the inflation budget.
    fn inflate(&mut self, name: &str, want: usize) -> std::result::Result<Vec<u8>, String> {
        let limit = want.min(self.inflate_left);
        let file = self.zip.by_name(name).map_err(|e| format!("{name}: {e}"))?;
        let mut buf = Vec::new();
        file.take((limit as u64).saturating_add(1)).read_to_end(&mut buf).map_err(|e| format!("{name}: {e}"))?;
        if buf.len() > limit && limit < want {
            return Err(format!(
                "{name} inflates past {} bytes, 32 times the archive's size: refusing a zip bomb",
                inflate_limit(self.bytes.len())
            ));
        }
        buf.truncate(want);
        self.inflate_left -= buf.len();
        Ok(buf)
    }

    /// The whole of an entry, stored or deflated.
    fn read(&mut self, name: &str) -> std::result::Result<Cow<'a, [u8]>, String> {
        if self.entry(name)?.compressed {
            Ok(Cow::Owned(self.inflate(name, usize::MAX)?))
        } else {
            Ok(Cow::Borrowed(self.stored(name)?))
        }
    }
}

pub(super) fn read_index<'a>(bytes: &'a [u8], source: &str) -> Result<BTreeMap<String, TensorEntry<'a>>> {
    let fail = |reason: String| Error::format(source, reason);
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| fail(format!("not a readable zip archive ({e}); the file may be truncated")))?;
    let mut entries: HashMap<String, Entry> = HashMap::new();
    let mut pkl_name = None;
    for i in 0..zip.len() {
        let file = zip.by_index_raw(i).map_err(|e| fail(format!("zip entry {i}: {e}")))?;
        let name = file.name().map_err(|e| fail(format!("zip entry {i} has an unreadable name: {e}")))?.into_owned();
        let start = file.data_start().ok_or_else(|| fail(format!("zip entry {name} has no data offset")))?;
        let compressed = file.compression() != zip::CompressionMethod::Stored;
        if pkl_name.is_none() && name.ends_with("data.pkl") {
            pkl_name = Some(name.clone());
        }
        entries.insert(name, Entry { start, size: file.compressed_size(), compressed });
    }
    let pkl_name = pkl_name.ok_or_else(|| fail("zip archive has no data.pkl: not a PyTorch checkpoint".into()))?;
    let root = pkl_name.trim_end_matches("data.pkl").to_string();
    let mut archive = Archive { bytes, zip, entries, inflate_left: inflate_limit(bytes.len()) };
    let pkl = archive.read(&pkl_name).map_err(|e| fail(format!("cannot read {e}")))?;
    let value = pickle::load(&pkl).map_err(|e| fail(format!("{pkl_name}: {e}")))?;
    drop(pkl);
    let value = match value {
        // Checkpoints that nest the weights, e.g. {"state_dict": {...}}.
        Value::Dict(items) if items.len() == 1 && matches!(&items[0].1, Value::Dict(_)) => {
            items.into_iter().next().map(|(_, v)| v).unwrap_or(Value::None)
        }
        v => v,
    };
    let mut tensors = Vec::new();
    collect("", value, &mut tensors).map_err(|e| fail(format!("{pkl_name}: {e}")))?;
    if tensors.is_empty() {
        return Err(fail(format!("{pkl_name} holds no tensors")));
    }
    // Each storage is inflated once, as far as its furthest tensor reaches.
    let mut reach: HashMap<&str, usize> = HashMap::new();
    for (_, t) in &tensors {
        let size = storage_dtype(&t.storage_type).map_or(1, StoredDtype::size);
        let end = super::extent(&t.shape, &t.strides)
            .and_then(|n| n.checked_add(t.offset))
            .and_then(|n| n.checked_mul(size))
            .unwrap_or(usize::MAX);
        let furthest = reach.entry(&t.storage_key).or_default();
        *furthest = (*furthest).max(end);
    }
    let mut inflated: HashMap<String, Arc<[u8]>> = HashMap::new();
    let mut out = BTreeMap::new();
    for (name, t) in &tensors {
        let dtype = storage_dtype(&t.storage_type)
            .ok_or_else(|| fail(format!("tensor {name}: unsupported storage type {}", t.storage_type)))?;
        let entry_name = format!("{root}data/{}", t.storage_key);
        let compressed = archive.entries.get(&entry_name).map(|e| e.compressed);
        let skip = t.offset.checked_mul(dtype.size());
        let past = || fail(format!("tensor {name}: storage offset {} lies past the end of its storage", t.offset));
        let data = match compressed {
            None => return Err(fail(format!("tensor {name}: storage {entry_name} is missing from the archive"))),
            Some(false) => {
                let all = archive.stored(&entry_name).map_err(|e| fail(format!("tensor {name}: {e}")))?;
                let skip = skip.filter(|&s| s <= all.len()).ok_or_else(past)?;
                Storage::Bytes(&all[skip..])
            }
            Some(true) => {
                let all = match inflated.get(&entry_name) {
                    Some(all) => all.clone(),
                    None => {
                        let want = reach[t.storage_key.as_str()];
                        let all: Arc<[u8]> =
                            archive.inflate(&entry_name, want).map_err(|e| fail(format!("tensor {name}: {e}")))?.into();
                        inflated.insert(entry_name.clone(), all.clone());
                        all
                    }
                };
                let skip = skip.filter(|&s| s <= all.len()).ok_or_else(past)?;
                Storage::Inflated(all, skip)
            }
        };
        out.insert(name.clone(), TensorEntry { dtype, shape: t.shape.clone(), strides: t.strides.clone(), data });
    }
    Ok(out)
}
