//! A small pickle reader: just the opcodes `torch.save` emits for a `state_dict` (protocol 2),
//! enough to recover each tensor's storage key, dtype, offset, shape and strides. Nothing is
//! executed: globals are checked against the names `torch.load(weights_only=True)` accepts
//! and recorded by name, and only the few torch rebuild functions are interpreted.
//!
//! The bytes may be hostile, so what they can make is bounded by what they are: a pickle can
//! reuse a value (`BINGET`) any number of times, and each reuse here is a copy, so every value
//! built or copied is charged to a budget proportional to the pickle's length ([`budget`]);
//! containers may nest [`MAX_DEPTH`] levels (dropping, copying and walking a value recurse);
//! each value's depth and cost ride beside it on the stack, so neither is ever recomputed.

use std::collections::HashMap;

/// A value on the pickle stack. Payloads we never interpret are kept for `Debug` output.
#[derive(Debug, Clone)]
#[allow(dead_code)]
pub(super) enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Global(String, String),
    /// A persistent id (torch: `('storage', StorageType, key, location, numel)`).
    PersId(Box<Value>),
    /// `callable(*args)` that we did not interpret.
    Call(Box<Value>, Vec<Value>),
    /// A tensor rebuilt by `torch._utils._rebuild_tensor_v2`.
    Tensor(Box<TensorRef>),
    Mark,
}

/// What a pickled tensor points to.
#[derive(Debug, Clone)]
pub(super) struct TensorRef {
    pub storage_key: String,
    pub storage_type: String,
    pub offset: usize,
    pub shape: Vec<usize>,
    pub strides: Vec<usize>,
}

/// How deep containers may nest. A state dict nests about six levels (a dict of tensors, each
/// the call of a rebuild function on a tuple holding the storage's persistent id, itself a
/// tuple); checkpoints that wrap it (`{"state_dict": ...}`, `_metadata`) add a few. Python's own
/// recursion limit (1000) is too deep for the browser's stack, where dropping or copying a
/// value recurses once per level.
pub(super) const MAX_DEPTH: u32 = 100;

/// Bytes of values (counted as `size_of::<Value>()` a value, plus the bytes of its text) that
/// a pickle of `len` bytes may build and copy in all. The fixtures' state dicts spend 23 to 31
/// a byte (each `BINGET` of a persistent id copies six values from two bytes, and each
/// `BINPUT` copies what it memoises); 48 a byte leaves half as much again for other writers,
/// and the megabyte covers tiny files. A state dict of a few thousand tensors (a pickle of
/// about a megabyte) may so take 48 MB, and any file under 10 MB (the bound for every
/// input) less than half a gigabyte, so that a command stays under 1 GiB.
pub(super) fn budget(len: usize) -> usize {
    len.saturating_mul(48).saturating_add(1 << 20)
}

/// What one value costs the budget on its own (its text aside).
const NODE: usize = size_of::<Value>();

/// The callables and classes a state dict may name: those `torch.load(weights_only=True)`
/// accepts by default (pytorch/pytorch `torch/_weights_only_unpickler.py`,
/// `_get_allowed_globals` and `_tensor_rebuild_functions`): the tensor and storage types,
/// dtypes, the rebuild functions, `OrderedDict` and a few builtins. Everything else (`os.system`,
/// `builtins.eval`, any class of a training script) is refused by name.
fn allowed(module: &str, name: &str) -> bool {
    const REBUILD: [&str; 11] = [
        "_rebuild_parameter",
        "_rebuild_parameter_with_state",
        "_rebuild_qtensor",
        "_rebuild_tensor",
        "_rebuild_tensor_v2",
        "_rebuild_tensor_v3",
        "_rebuild_sparse_tensor",
        "_rebuild_meta_tensor_no_storage",
        "_rebuild_wrapper_subclass",
        "_rebuild_device_tensor_from_numpy",
        "_rebuild_device_tensor_from_cpu_tensor",
    ];
    // `torch._storage_classes`: the legacy typed storages (their names are also the storage
    // types of persistent ids).
    const STORAGES: [&str; 17] = [
        "DoubleStorage",
        "FloatStorage",
        "HalfStorage",
        "BFloat16Storage",
        "LongStorage",
        "IntStorage",
        "ShortStorage",
        "CharStorage",
        "ByteStorage",
        "BoolStorage",
        "ComplexDoubleStorage",
        "ComplexFloatStorage",
        "QUInt8Storage",
        "QInt8Storage",
        "QInt32Storage",
        "QUInt4x2Storage",
        "QUInt2x4Storage",
    ];
    // `torch._tensor_classes`.
    const TENSORS: [&str; 10] = [
        "DoubleTensor",
        "FloatTensor",
        "HalfTensor",
        "BFloat16Tensor",
        "LongTensor",
        "IntTensor",
        "ShortTensor",
        "CharTensor",
        "ByteTensor",
        "BoolTensor",
    ];
    // dtypes by their `str()` names, and the quantisation schemes.
    const DTYPES: [&str; 28] = [
        "float64",
        "float32",
        "float16",
        "bfloat16",
        "complex32",
        "complex64",
        "complex128",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "int8",
        "int16",
        "int32",
        "int64",
        "bool",
        "quint8",
        "qint8",
        "qint32",
        "quint4x2",
        "quint2x4",
        "bits8",
        "bits16",
        "per_tensor_affine",
        "per_tensor_symmetric",
        "per_channel_affine",
        "per_channel_symmetric",
        "per_channel_affine_float_qparams",
    ];
    match module {
        "collections" => matches!(name, "OrderedDict" | "Counter"),
        // Python 2's name for the module, as torch maps it (`IMPORT_MAPPING`).
        "builtins" | "__builtin__" => matches!(name, "set" | "bytearray" | "complex"),
        "_codecs" => name == "encode",
        "torch._utils" => REBUILD.contains(&name),
        "torch._tensor" => name == "_rebuild_from_type_v2",
        "torch.nn.parameter" => name == "Parameter",
        "torch.serialization" => name == "_get_layout",
        "torch.storage" => matches!(name, "UntypedStorage" | "TypedStorage"),
        "torch.cuda" => STORAGES.contains(&name) || TENSORS.contains(&name),
        "torch" => {
            matches!(name, "Size" | "Tensor" | "device" | "UntypedStorage" | "TypedStorage")
                || STORAGES.contains(&name)
                || TENSORS.contains(&name)
                || DTYPES.contains(&name)
                || name.starts_with("float8_")
        }
        _ => false,
    }
}

/// A short account of a value for error messages (never the whole of a crafted container).
fn describe(v: &Value) -> String {
    match v {
        Value::Int(n) => n.to_string(),
        Value::Str(s) if s.len() <= 40 => format!("'{s}'"),
        Value::Str(s) => format!("a string of {} bytes", s.len()),
        Value::Tuple(items) => format!("a tuple of {}", items.len()),
        Value::List(items) => format!("a list of {}", items.len()),
        Value::Dict(items) => format!("a dict of {}", items.len()),
        Value::Global(m, n) => format!("{m}.{n}"),
        Value::None => "None".into(),
        Value::Bool(b) => b.to_string(),
        Value::Float(x) => x.to_string(),
        Value::Bytes(b) => format!("{} bytes", b.len()),
        Value::PersId(_) => "a persistent id".into(),
        Value::Call(..) => "the result of a call".into(),
        Value::Tensor(_) => "a tensor".into(),
        Value::Mark => "a MARK".into(),
    }
}

fn as_usizes(v: &Value) -> Result<Vec<usize>, String> {
    match v {
        Value::Tuple(items) | Value::List(items) => items
            .iter()
            .map(|i| match i {
                Value::Int(n) => usize::try_from(*n).map_err(|_| format!("expected a size, got {n}")),
                other => Err(format!("expected a non-negative integer, got {}", describe(other))),
            })
            .collect(),
        other => Err(format!("expected a tuple of integers, got {}", describe(other))),
    }
}

fn rebuild_tensor(args: &[Value]) -> Result<Value, String> {
    let [storage, offset, size, stride, ..] = args else {
        return Err("_rebuild_tensor_v2 with too few arguments".into());
    };
    let Value::PersId(pid) = storage else {
        return Err("tensor storage is not a persistent id".into());
    };
    let Value::Tuple(pid) = pid.as_ref() else {
        return Err("malformed storage persistent id".into());
    };
    let (storage_type, key) = match pid.as_slice() {
        [_, Value::Global(_, ty), Value::Str(key), ..] => (ty.clone(), key.clone()),
        _ => return Err(format!("malformed storage persistent id ({} items)", pid.len())),
    };
    let offset = match offset {
        Value::Int(n) => {
            usize::try_from(*n).map_err(|_| format!("tensor storage offset {n} is negative or too large"))?
        }
        _ => return Err("tensor storage offset is not an integer".into()),
    };
    Ok(Value::Tensor(Box::new(TensorRef {
        storage_key: key,
        storage_type,
        offset,
        shape: as_usizes(size)?,
        strides: as_usizes(stride)?,
    })))
}

fn call(func: Value, args: Vec<Value>) -> Result<Value, String> {
    if let Value::Global(module, name) = &func {
        match (module.as_str(), name.as_str()) {
            ("collections", "OrderedDict" | "Counter") => return Ok(Value::Dict(Vec::new())),
            ("torch._utils", "_rebuild_tensor_v2" | "_rebuild_tensor") => return rebuild_tensor(&args),
            // (tensor, requires_grad, backward_hooks)
            ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => {
                return args.into_iter().next().ok_or_else(|| "_rebuild_parameter without a tensor".into());
            }
            _ => {}
        }
    }
    Ok(Value::Call(Box::new(func), args))
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        // Lengths come from the file: on wasm32 an unchecked sum could wrap past the bound.
        let end = self.pos.checked_add(n).filter(|&end| end <= self.data.len()).ok_or("pickle data ends early")?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn line(&mut self) -> Result<String, String> {
        let rest = &self.data[self.pos..];
        let end = rest.iter().position(|&b| b == b'\n').ok_or("unterminated line in pickle")?;
        self.pos += end + 1;
        Ok(String::from_utf8_lossy(&rest[..end]).into_owned())
    }
    fn string(&mut self, n: usize) -> Result<String, String> {
        Ok(String::from_utf8_lossy(self.take(n)?).into_owned())
    }
}

/// A value with how deep its containers nest (0 for a scalar) and what it cost to build (what
/// a copy of it costs again).
#[derive(Debug)]
struct Item {
    value: Value,
    depth: u32,
    cost: usize,
}

/// The stack, the memo and the budget of one pickle program.
struct Machine {
    stack: Vec<Item>,
    memo: HashMap<u32, Item>,
    /// Budget left, in bytes of values.
    left: usize,
}

impl Machine {
    /// Charge `cost` to the budget.
    fn spend(&mut self, cost: usize) -> Result<(), String> {
        self.left = self
            .left
            .checked_sub(cost)
            .ok_or("the pickle builds more than its length can justify (a memo or nesting bomb?); refusing to go on")?;
        Ok(())
    }

    /// Push a new scalar (or empty container) holding `text` bytes of text.
    fn push(&mut self, value: Value, text: usize) -> Result<(), String> {
        let cost = NODE + text;
        self.spend(cost)?;
        self.stack.push(Item { value, depth: 0, cost });
        Ok(())
    }

    fn pop(&mut self) -> Result<Item, String> {
        self.stack.pop().ok_or_else(|| "pickle stack underflow".to_string())
    }

    /// Pop everything above the last mark.
    fn pop_mark(&mut self) -> Result<Vec<Item>, String> {
        let at = self.stack.iter().rposition(|i| matches!(i.value, Value::Mark)).ok_or("pickle MARK not found")?;
        let items = self.stack.split_off(at + 1);
        self.stack.pop();
        Ok(items)
    }

    /// A copy of the top of the stack into the memo.
    fn put(&mut self, key: u32) -> Result<(), String> {
        let top = self.stack.last().ok_or("memoising from an empty stack")?;
        let (depth, cost) = (top.depth, top.cost);
        self.spend(cost)?;
        let value = self.stack.last().expect("checked").value.clone();
        self.memo.insert(key, Item { value, depth, cost });
        Ok(())
    }

    /// A copy of a memoised value onto the stack.
    fn get(&mut self, key: u32) -> Result<(), String> {
        let item = self.memo.get(&key).ok_or_else(|| format!("memo key {key} was never stored"))?;
        let (depth, cost) = (item.depth, item.cost);
        self.spend(cost)?;
        let value = self.memo[&key].value.clone();
        self.stack.push(Item { value, depth, cost });
        Ok(())
    }

    /// Add `parts` to the container on top of the stack (items to a list, pairs to a dict;
    /// anything else, e.g. state we do not model, is dropped).
    fn extend_top(&mut self, parts: Vec<Item>) -> Result<(), String> {
        let top = self.stack.last_mut().ok_or("adding items to an empty stack")?;
        let depth = 1 + parts.iter().map(|p| p.depth).max().unwrap_or(0);
        if depth > MAX_DEPTH {
            return Err(format!("pickle nests containers more than {MAX_DEPTH} deep"));
        }
        let added = parts.iter().fold(0usize, |sum, p| sum.saturating_add(p.cost));
        match &mut top.value {
            Value::List(items) => items.extend(parts.into_iter().map(|p| p.value)),
            Value::Dict(entries) => {
                let mut it = parts.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    entries.push((k.value, v.value));
                }
            }
            _ => return Ok(()),
        }
        top.depth = top.depth.max(depth);
        top.cost = top.cost.saturating_add(added);
        Ok(())
    }
}

/// Run a pickle program and return its result.
pub(super) fn load(data: &[u8]) -> Result<Value, String> {
    let mut r = Reader { data, pos: 0 };
    let mut m = Machine { stack: Vec::new(), memo: HashMap::new(), left: budget(data.len()) };
    loop {
        let op = r.u8()?;
        match op {
            0x80 => {
                r.u8()?; // PROTO
            }
            0x95 => {
                r.take(8)?; // FRAME
            }
            b'.' => return Ok(m.pop()?.value), // STOP
            b'(' => m.push(Value::Mark, 0)?,
            b'}' => m.push(Value::Dict(Vec::new()), 0)?,
            b']' => m.push(Value::List(Vec::new()), 0)?,
            b')' => m.push(Value::Tuple(Vec::new()), 0)?,
            b'N' => m.push(Value::None, 0)?,
            0x88 => m.push(Value::Bool(true), 0)?,
            0x89 => m.push(Value::Bool(false), 0)?,
            b'J' => m.push(Value::Int(i32::from_le_bytes(r.take(4)?.try_into().unwrap()) as i64), 0)?,
            b'K' => m.push(Value::Int(r.u8()? as i64), 0)?,
            b'M' => m.push(Value::Int(r.u16()? as i64), 0)?,
            0x8a => {
                // LONG1: little-endian two's complement of n bytes
                let n = r.u8()? as usize;
                let bytes = r.take(n)?;
                if n > 8 {
                    return Err("integer too large in pickle".into());
                }
                let mut buf = if bytes.last().is_some_and(|b| b & 0x80 != 0) { [0xff; 8] } else { [0; 8] };
                buf[..n].copy_from_slice(bytes);
                m.push(Value::Int(i64::from_le_bytes(buf)), 0)?;
            }
            b'G' => m.push(Value::Float(f64::from_be_bytes(r.take(8)?.try_into().unwrap())), 0)?,
            b'X' | b'T' => {
                let n = r.u32()? as usize;
                let s = r.string(n)?;
                m.push(Value::Str(s), n)?;
            }
            0x8c | b'U' => {
                let n = r.u8()? as usize;
                let s = r.string(n)?;
                m.push(Value::Str(s), n)?;
            }
            0x8d => {
                let n = usize::try_from(u64::from_le_bytes(r.take(8)?.try_into().unwrap()))
                    .map_err(|_| "a pickled length does not fit this machine")?;
                let s = r.string(n)?;
                m.push(Value::Str(s), n)?;
            }
            b'C' => {
                let n = r.u8()? as usize;
                let b = r.take(n)?.to_vec();
                m.push(Value::Bytes(b), n)?;
            }
            b'B' => {
                let n = r.u32()? as usize;
                let b = r.take(n)?.to_vec();
                m.push(Value::Bytes(b), n)?;
            }
            b'c' => {
                let module = r.line()?;
                let name = r.line()?;
                global(&mut m, module, name)?;
            }
            0x93 => {
                let name = m.pop()?.value;
                let module = m.pop()?.value;
                match (module, name) {
                    (Value::Str(module), Value::Str(name)) => global(&mut m, module, name)?,
                    _ => return Err("STACK_GLOBAL needs two strings".into()),
                }
            }
            b'q' => {
                let k = r.u8()? as u32;
                m.put(k)?;
            }
            b'r' => {
                let k = r.u32()?;
                m.put(k)?;
            }
            0x94 => {
                let k = m.memo.len() as u32;
                m.put(k)?;
            }
            b'h' => {
                let k = r.u8()? as u32;
                m.get(k)?;
            }
            b'j' => {
                let k = r.u32()?;
                m.get(k)?;
            }
            b't' => {
                let items = m.pop_mark()?;
                made(&mut m, items, Value::Tuple)?;
            }
            0x85..=0x87 => {
                // TUPLE1, TUPLE2, TUPLE3
                let n = (op - 0x84) as usize;
                let at = m.stack.len().checked_sub(n).ok_or("pickle stack underflow")?;
                let items = m.stack.split_off(at);
                if items.iter().any(|i| matches!(i.value, Value::Mark)) {
                    return Err("a tuple of a MARK".into());
                }
                made(&mut m, items, Value::Tuple)?;
            }
            b'l' => {
                let items = m.pop_mark()?;
                made(&mut m, items, Value::List)?;
            }
            b'd' => {
                let items = m.pop_mark()?;
                m.push(Value::Dict(Vec::new()), 0)?;
                m.extend_top(items)?;
            }
            b'a' => {
                let v = m.pop()?;
                m.extend_top(vec![v])?;
            }
            b'e' => {
                let items = m.pop_mark()?;
                m.extend_top(items)?;
            }
            b's' => {
                let v = m.pop()?;
                let k = m.pop()?;
                m.extend_top(vec![k, v])?;
            }
            b'u' => {
                let items = m.pop_mark()?;
                m.extend_top(items)?;
            }
            b'Q' => {
                let pid = m.pop()?;
                made(&mut m, vec![pid], |mut v| Value::PersId(Box::new(v.pop().expect("one value"))))?;
            }
            b'R' | 0x81 => {
                // REDUCE: callable(*args); NEWOBJ: cls.__new__(cls, *args)
                let args = m.pop()?;
                let func = m.pop()?;
                if !matches!(args.value, Value::Tuple(_)) {
                    return Err("REDUCE or NEWOBJ arguments are not a tuple".into());
                }
                if !matches!(func.value, Value::Global(..)) {
                    return Err(format!("calling {}, which is not a global", describe(&func.value)));
                }
                let parts = vec![func, args];
                let (depth, cost) = made_meta(&parts)?;
                m.spend(NODE)?;
                let mut it = parts.into_iter();
                let (func, args) = (it.next().expect("two").value, it.next().expect("two").value);
                let Value::Tuple(args) = args else { unreachable!("checked") };
                let value = call(func, args)?;
                m.stack.push(Item { value, depth, cost });
            }
            b'b' => {
                // BUILD: set state on the object below; we keep the object as it is.
                m.pop()?;
            }
            other => return Err(format!("unsupported pickle opcode 0x{other:02x} at byte {}", r.pos - 1)),
        }
    }
}

/// Depth and cost of a value made of `parts`, refused past [`MAX_DEPTH`].
fn made_meta(parts: &[Item]) -> Result<(u32, usize), String> {
    let depth = 1 + parts.iter().map(|p| p.depth).max().unwrap_or(0);
    if depth > MAX_DEPTH {
        return Err(format!("pickle nests containers more than {MAX_DEPTH} deep"));
    }
    Ok((depth, parts.iter().fold(NODE, |sum, p| sum.saturating_add(p.cost))))
}

/// Push the value `make` builds from the values of `parts`.
fn made(m: &mut Machine, parts: Vec<Item>, make: impl FnOnce(Vec<Value>) -> Value) -> Result<(), String> {
    let (depth, cost) = made_meta(&parts)?;
    m.spend(NODE)?;
    let value = make(parts.into_iter().map(|p| p.value).collect());
    m.stack.push(Item { value, depth, cost });
    Ok(())
}

/// GLOBAL and STACK_GLOBAL: a name, refused unless a state dict may hold it.
fn global(m: &mut Machine, module: String, name: String) -> Result<(), String> {
    if !allowed(&module, &name) {
        let shown: String = format!("{module}.{name}").chars().take(200).collect();
        return Err(format!(
            "refusing {shown}: a checkpoint may only reference tensor storage (torch.load(weights_only=True) refuses it too)"
        ));
    }
    let text = module.len() + name.len();
    m.push(Value::Global(module, name), text)
}

/// A pickled `dict` of integer keys to lists of strings (HSNet's COCO-20i split files, class ->
/// image names), as pairs in the file's order; anything else is refused, naming what it found.
pub(super) fn int_keyed_string_lists(data: &[u8]) -> Result<Vec<(i64, Vec<String>)>, String> {
    let Value::Dict(entries) = load(data)? else {
        return Err("expected a dict of class -> list of image names".into());
    };
    entries
        .into_iter()
        .map(|(key, value)| {
            let Value::Int(key) = key else {
                return Err(format!("expected integer keys, got {}", describe(&key)));
            };
            let Value::List(items) = value else {
                return Err(format!("key {key}: expected a list of names, got {}", describe(&value)));
            };
            let names = items
                .into_iter()
                .map(|item| match item {
                    Value::Str(s) => Ok(s),
                    other => Err(format!("key {key}: expected names, got {}", describe(&other))),
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok((key, names))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `PROTO 2`, `program`, `STOP`.
    fn run(program: &[u8]) -> Result<Value, String> {
        let mut data = vec![0x80, 2];
        data.extend_from_slice(program);
        data.push(b'.');
        load(&data)
    }

    #[test]
    fn globals_outside_the_allowlist_are_refused_by_name() {
        let err = run(b"cos\nsystem\n)R").unwrap_err();
        assert!(err.contains("refusing os.system: a checkpoint may only reference tensor storage"), "{err}");
        // STACK_GLOBAL, as protocol 4 writes it.
        let err = run(b"\x8c\x08builtins\x8c\x04eval\x93").unwrap_err();
        assert!(err.contains("refusing builtins.eval"), "{err}");
        assert!(run(b"ccollections\nOrderedDict\n)R").is_ok());
        assert!(run(b"ctorch\nFloatStorage\n").is_ok());
    }

    #[test]
    fn nesting_is_refused_past_the_limit() {
        let mut deep = b")".to_vec();
        deep.extend(std::iter::repeat_n(0x85u8, MAX_DEPTH as usize));
        assert!(run(&deep).is_ok());
        deep.push(0x85);
        let err = run(&deep).unwrap_err();
        assert!(err.contains("more than 100 deep"), "{err}");
        // Lists in lists, by APPEND.
        let mut lists = b"]".repeat(MAX_DEPTH as usize + 2);
        lists.extend(b"a".repeat(MAX_DEPTH as usize + 1));
        let err = run(&lists).unwrap_err();
        assert!(err.contains("deep"), "{err}");
    }

    #[test]
    fn copies_of_memoised_values_are_charged() {
        // A list of 200 items, memoised, then a list that appends 64 copies of it, memoised,
        // and so on: each round multiplies the size by 64.
        let mut bomb = b"](".to_vec();
        bomb.extend(b"N".repeat(200));
        bomb.extend(b"e");
        for round in 0..6u8 {
            bomb.extend([b'q', round, b']', b'(']);
            bomb.extend([b'h', round].repeat(64));
            bomb.extend(b"e");
        }
        assert!(bomb.len() < 1024);
        let err = run(&bomb).unwrap_err();
        assert!(err.contains("more than its length can justify"), "{err}");
    }
}
