//! The safetensors container: an 8-byte little-endian header length, a JSON header
//! `{name: {dtype, shape, data_offsets}}`, then the data. Parsed here directly so every
//! problem can be reported with the tensor it concerns.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{ByteSource, Storage, StoredDtype, TensorEntry, contiguous_strides};
use crate::error::{Error, Result};

#[derive(Deserialize)]
struct HeaderEntry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [usize; 2],
}

/// Largest header we accept (the format's own limit is 100 MB).
const MAX_HEADER: usize = 100_000_000;

pub(super) fn read_index<'a>(bytes: &'a [u8], source: &str) -> Result<BTreeMap<String, TensorEntry<'a>>> {
    let header_len = header_len(&bytes[..8], bytes.len(), source)?;
    let data = &bytes[8 + header_len..];
    parse(&bytes[8..8 + header_len], data.len(), source, |start, end| Storage::Bytes(&data[start..end]))
}

/// [`read_index`] of a file behind a reader: only the header is read.
pub(super) fn read_index_from<'a>(file: &dyn ByteSource, source: &str) -> Result<BTreeMap<String, TensorEntry<'a>>> {
    let len = file.len();
    let header_len = header_len(&file.read(0, 8), len, source)?;
    let header = file.read(8, 8 + header_len);
    let base = 8 + header_len;
    parse(&header, len - base, source, |start, end| Storage::Range(base + start, base + end))
}

/// The header's length from the first 8 bytes, checked against the file's `len`.
fn header_len(first: &[u8], len: usize, source: &str) -> Result<usize> {
    let claimed = u64::from_le_bytes(first[..8].try_into().expect("8 bytes"));
    let header_len = usize::try_from(claimed).unwrap_or(usize::MAX);
    if header_len > MAX_HEADER || 8 + header_len > len {
        return Err(Error::format(
            source,
            format!(
                "safetensors header claims {claimed} bytes but the file has {len}; the file is truncated or not safetensors"
            ),
        ));
    }
    Ok(header_len)
}

/// The JSON header's entries, each tensor's data range checked against the `data_len` bytes
/// after the header and handed to `storage`.
fn parse<'a>(
    header: &[u8],
    data_len: usize,
    source: &str,
    storage: impl Fn(usize, usize) -> Storage<'a>,
) -> Result<BTreeMap<String, TensorEntry<'a>>> {
    let header: BTreeMap<String, serde_json::Value> = serde_json::from_slice(header)
        .map_err(|e| Error::format(source, format!("safetensors header is not valid JSON: {e}")))?;
    let mut entries = BTreeMap::new();
    let mut spans: Vec<(usize, usize, String)> = Vec::new();
    for (name, value) in header {
        if name == "__metadata__" {
            continue;
        }
        let entry: HeaderEntry = serde_json::from_value(value)
            .map_err(|e| Error::format(source, format!("tensor {name}: malformed header entry: {e}")))?;
        let dtype = match entry.dtype.as_str() {
            "F64" => StoredDtype::F64,
            "F32" => StoredDtype::F32,
            "F16" => StoredDtype::F16,
            "BF16" => StoredDtype::BF16,
            "I64" => StoredDtype::I64,
            "I32" => StoredDtype::I32,
            "I8" => StoredDtype::I8,
            "U8" => StoredDtype::U8,
            "BOOL" => StoredDtype::Bool,
            other => return Err(Error::format(source, format!("tensor {name}: unsupported dtype {other}"))),
        };
        let [start, end] = entry.data_offsets;
        let expected = super::elements(&entry.shape).and_then(|n| n.checked_mul(dtype.size()));
        if start > end || Some(end - start) != expected {
            return Err(Error::format(
                source,
                format!(
                    "tensor {name}: data_offsets [{start}, {end}] do not fit shape {:?} of {}",
                    entry.shape, entry.dtype
                ),
            ));
        }
        if end > data_len {
            return Err(Error::format(
                source,
                format!(
                    "tensor {name} ends at byte {end} of the data but the file holds {data_len}: the file is truncated"
                ),
            ));
        }
        let strides = contiguous_strides(&entry.shape);
        spans.push((start, end, name.clone()));
        entries.insert(name, TensorEntry { dtype, shape: entry.shape, strides, data: storage(start, end) });
    }
    // The format gives each tensor bytes of its own ("the byte buffer needs to be entirely
    // indexed, and cannot contain holes", which its reference reader checks by walking the
    // sorted offsets): two tensors over the same bytes are a crafted file. Empty tensors hold
    // no bytes; of the others, sorted by start, each must begin where every earlier one ended.
    spans.retain(|(start, end, _)| start < end);
    spans.sort_unstable();
    let mut furthest: Option<&(usize, usize, String)> = None;
    for span in &spans {
        if let Some((a_start, a_end, a)) = furthest.filter(|(_, end, _)| span.0 < *end) {
            let (b_start, b_end, b) = span;
            return Err(Error::format(
                source,
                format!(
                    "tensors {a} (bytes {a_start}..{a_end}) and {b} (bytes {b_start}..{b_end}) overlap; each tensor of a safetensors file has bytes of its own"
                ),
            ));
        }
        if furthest.is_none_or(|(_, end, _)| span.1 > *end) {
            furthest = Some(span);
        }
    }
    Ok(entries)
}

/// A safetensors file of f32 tensors `(name, shape, values)`, in the order given (the header
/// lists them by name, as the format's writers do; offsets follow the given order).
pub fn write_f32(tensors: &[(String, Vec<usize>, Vec<f32>)]) -> Result<Vec<u8>> {
    write(tensors, false)
}

/// [`write_f32`], each value stored as IEEE half (`F16`) when `half`: values beyond its range
/// (65504) are refused, naming the tensor, rather than stored as infinities.
pub fn write(tensors: &[(String, Vec<usize>, Vec<f32>)], half: bool) -> Result<Vec<u8>> {
    let values: Vec<(&str, &[usize], Values<'_>)> = tensors
        .iter()
        .map(|(name, shape, v)| (name.as_str(), shape.as_slice(), if half { Values::F16(v) } else { Values::F32(v) }))
        .collect();
    write_values(&values)
}

/// A tensor's values as [`write_values`] stores them.
#[derive(Debug, Clone, Copy)]
pub enum Values<'v> {
    F32(&'v [f32]),
    /// Stored as IEEE half; values beyond its range (65504) are refused.
    F16(&'v [f32]),
    I8(&'v [i8]),
}

impl Values<'_> {
    fn len(&self) -> usize {
        match self {
            Values::F32(v) | Values::F16(v) => v.len(),
            Values::I8(v) => v.len(),
        }
    }

    fn dtype(&self) -> (&'static str, usize) {
        match self {
            Values::F32(_) => ("F32", 4),
            Values::F16(_) => ("F16", 2),
            Values::I8(_) => ("I8", 1),
        }
    }
}

/// A safetensors file of `(name, shape, values)`, each tensor stored as its [`Values`] say, in
/// the order given.
pub fn write_values(tensors: &[(&str, &[usize], Values<'_>)]) -> Result<Vec<u8>> {
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    for (name, shape, values) in tensors {
        let count: usize = shape.iter().product();
        if count != values.len() {
            return Err(Error::invalid(format!("tensor {name}: {} values for shape {shape:?}", values.len())));
        }
        if let Values::F16(v) = values
            && let Some(v) = v.iter().find(|v| v.is_finite() && v.abs() > f32::from(half::f16::MAX))
        {
            return Err(Error::invalid(format!("tensor {name} holds {v}, beyond half precision's range (65504)")));
        }
        let (dtype, size) = values.dtype();
        let end = offset + size * count;
        header.insert(
            name.to_string(),
            serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [offset, end]}),
        );
        offset = end;
    }
    let mut json = serde_json::Value::Object(header).to_string().into_bytes();
    // The data starts 8-byte aligned.
    while !(8 + json.len()).is_multiple_of(8) {
        json.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + json.len() + offset);
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&json);
    for (_, _, values) in tensors {
        match values {
            Values::F32(v) => v.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
            Values::F16(v) => v.iter().for_each(|&v| out.extend_from_slice(&half::f16::from_f32(v).to_le_bytes())),
            Values::I8(v) => out.extend(v.iter().map(|&v| v as u8)),
        }
    }
    Ok(out)
}
