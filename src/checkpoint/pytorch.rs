//! The zip container of `torch.save` (PyTorch ≥ 1.6): `<root>/data.pkl` describes the state
//! dict, `<root>/data/<key>` holds each storage's raw little-endian bytes. `torch.save` stores
//! entries uncompressed, so each storage is borrowed straight from the input bytes.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::io::{Cursor, Read};

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
        "ByteStorage" => StoredDtype::U8,
        "BoolStorage" => StoredDtype::Bool,
        _ => return None,
    })
}

/// Flatten nested dicts into dotted names (a state dict is usually flat already).
fn collect(prefix: &str, value: Value, out: &mut Vec<(String, pickle::TensorRef)>) {
    match value {
        Value::Dict(items) => {
            for (k, v) in items {
                let key = match k {
                    Value::Str(s) => s,
                    Value::Int(i) => i.to_string(),
                    _ => continue,
                };
                let name = if prefix.is_empty() { key } else { format!("{prefix}.{key}") };
                collect(&name, v, out);
            }
        }
        Value::Tensor(t) => out.push((prefix.to_string(), t)),
        _ => {}
    }
}

pub(super) fn read_index<'a>(bytes: &'a [u8], source: &str) -> Result<BTreeMap<String, TensorEntry<'a>>> {
    let fail = |reason: String| Error::format(source, reason);
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| fail(format!("not a readable zip archive ({e}); the file may be truncated")))?;
    // Entry name -> (data start, size, compressed?) for every file in the archive.
    let mut files: HashMap<String, (u64, u64, bool)> = HashMap::new();
    for i in 0..archive.len() {
        let file = archive.by_index_raw(i).map_err(|e| fail(format!("zip entry {i}: {e}")))?;
        let name = file.name().map_err(|e| fail(format!("zip entry {i} has an unreadable name: {e}")))?.into_owned();
        let start = file.data_start().ok_or_else(|| fail(format!("zip entry {name} has no data offset")))?;
        files.insert(name, (start, file.compressed_size(), file.compression() != zip::CompressionMethod::Stored));
    }
    let pkl_name = files
        .keys()
        .find(|n| n.ends_with("data.pkl"))
        .cloned()
        .ok_or_else(|| fail("zip archive has no data.pkl: not a PyTorch checkpoint".into()))?;
    let root = pkl_name.trim_end_matches("data.pkl").to_string();
    let mut pkl = Vec::new();
    archive
        .by_name(&pkl_name)
        .and_then(|mut f| f.read_to_end(&mut pkl).map_err(Into::into))
        .map_err(|e| fail(format!("cannot read {pkl_name}: {e}")))?;
    let value = pickle::load(&pkl).map_err(|e| fail(format!("{pkl_name}: {e}")))?;
    let value = match value {
        // Checkpoints that nest the weights, e.g. {"state_dict": {...}}.
        Value::Dict(items) if items.len() == 1 && matches!(&items[0].1, Value::Dict(_)) => {
            items.into_iter().next().map(|(_, v)| v).unwrap_or(Value::None)
        }
        v => v,
    };
    let mut tensors = Vec::new();
    collect("", value, &mut tensors);
    if tensors.is_empty() {
        return Err(fail(format!("{pkl_name} holds no tensors")));
    }
    let mut entries = BTreeMap::new();
    for (name, t) in tensors {
        let dtype = storage_dtype(&t.storage_type)
            .ok_or_else(|| fail(format!("tensor {name}: unsupported storage type {}", t.storage_type)))?;
        let entry_name = format!("{root}data/{}", t.storage_key);
        let &(start, size, compressed) = files
            .get(&entry_name)
            .ok_or_else(|| fail(format!("tensor {name}: storage {entry_name} is missing from the archive")))?;
        let data: Cow<'a, [u8]> = if compressed {
            let mut buf = Vec::new();
            archive
                .by_name(&entry_name)
                .and_then(|mut f| f.read_to_end(&mut buf).map_err(Into::into))
                .map_err(|e| fail(format!("tensor {name}: {e}")))?;
            Cow::Owned(buf)
        } else {
            // Offsets from the file, checked: on wasm32 a u64 does not fit a usize, and sums wrap.
            let span = start
                .checked_add(size)
                .and_then(|end| Some((usize::try_from(start).ok()?, usize::try_from(end).ok()?)));
            match span {
                Some((start, end)) if end <= bytes.len() => Cow::Borrowed(&bytes[start..end]),
                _ => return Err(fail(format!("tensor {name}: storage runs past the end of the file (truncated)"))),
            }
        };
        let skip = t.offset.checked_mul(dtype.size()).filter(|&skip| skip <= data.len()).ok_or_else(|| {
            fail(format!("tensor {name}: storage offset {} lies past the end of its storage", t.offset))
        })?;
        let data = match data {
            Cow::Borrowed(b) => Cow::Borrowed(&b[skip..]),
            Cow::Owned(mut v) => {
                v.drain(..skip);
                Cow::Owned(v)
            }
        };
        entries.insert(name, TensorEntry { dtype, shape: t.shape, strides: t.strides, data: Storage::Bytes(data) });
    }
    Ok(entries)
}
