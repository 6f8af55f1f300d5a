//! A small pickle reader: just the opcodes `torch.save` emits for a `state_dict` (protocol 2),
//! enough to recover each tensor's storage key, dtype, offset, shape and strides. Nothing is
//! executed: globals are recorded by name and only the few torch rebuild functions are
//! interpreted.

use std::collections::HashMap;

/// A value on the pickle stack. Payloads we never interpret are kept for `Debug` output in
/// error messages.
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
    Tensor(TensorRef),
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

fn as_usizes(v: &Value) -> Result<Vec<usize>, String> {
    match v {
        Value::Tuple(items) | Value::List(items) => items
            .iter()
            .map(|i| match i {
                Value::Int(n) => usize::try_from(*n).map_err(|_| format!("expected a size, got {n}")),
                other => Err(format!("expected a non-negative integer, got {other:?}")),
            })
            .collect(),
        other => Err(format!("expected a tuple of integers, got {other:?}")),
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
        _ => return Err(format!("malformed storage persistent id {pid:?}")),
    };
    let offset = match offset {
        Value::Int(n) => {
            usize::try_from(*n).map_err(|_| format!("tensor storage offset {n} is negative or too large"))?
        }
        _ => return Err("tensor storage offset is not an integer".into()),
    };
    Ok(Value::Tensor(TensorRef {
        storage_key: key,
        storage_type,
        offset,
        shape: as_usizes(size)?,
        strides: as_usizes(stride)?,
    }))
}

fn call(func: Value, args: Vec<Value>) -> Result<Value, String> {
    if let Value::Global(module, name) = &func {
        match (module.as_str(), name.as_str()) {
            ("collections", "OrderedDict") | ("builtins", "dict") => return Ok(Value::Dict(Vec::new())),
            ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => {
                return rebuild_tensor(&args);
            }
            // (tensor, requires_grad, backward_hooks)
            ("torch._utils", "_rebuild_parameter") | ("torch._utils", "_rebuild_parameter_with_state") => {
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

/// Pop everything above the last mark.
fn pop_mark(stack: &mut Vec<Value>) -> Result<Vec<Value>, String> {
    let at = stack.iter().rposition(|v| matches!(v, Value::Mark)).ok_or("pickle MARK not found")?;
    let items = stack.split_off(at + 1);
    stack.pop();
    Ok(items)
}

fn set_items(target: &mut Value, items: Vec<Value>) -> Result<(), String> {
    let Value::Dict(entries) = target else {
        // Items set on an object we do not model (e.g. `_metadata`): ignore.
        return Ok(());
    };
    let mut it = items.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        entries.push((k, v));
    }
    Ok(())
}

/// Run a pickle program and return its result.
pub(super) fn load(data: &[u8]) -> Result<Value, String> {
    let mut r = Reader { data, pos: 0 };
    let mut stack: Vec<Value> = Vec::new();
    let mut memo: HashMap<u32, Value> = HashMap::new();
    let pop = |stack: &mut Vec<Value>| stack.pop().ok_or_else(|| "pickle stack underflow".to_string());
    loop {
        let op = r.u8()?;
        match op {
            0x80 => {
                r.u8()?; // PROTO
            }
            0x95 => {
                r.take(8)?; // FRAME
            }
            b'.' => return pop(&mut stack), // STOP
            b'(' => stack.push(Value::Mark),
            b'}' => stack.push(Value::Dict(Vec::new())),
            b']' => stack.push(Value::List(Vec::new())),
            b')' => stack.push(Value::Tuple(Vec::new())),
            b'N' => stack.push(Value::None),
            0x88 => stack.push(Value::Bool(true)),
            0x89 => stack.push(Value::Bool(false)),
            b'J' => stack.push(Value::Int(i32::from_le_bytes(r.take(4)?.try_into().unwrap()) as i64)),
            b'K' => stack.push(Value::Int(r.u8()? as i64)),
            b'M' => stack.push(Value::Int(r.u16()? as i64)),
            0x8a => {
                // LONG1: little-endian two's complement of n bytes
                let n = r.u8()? as usize;
                let bytes = r.take(n)?;
                if n > 8 {
                    return Err("integer too large in pickle".into());
                }
                let mut buf = if bytes.last().is_some_and(|b| b & 0x80 != 0) { [0xff; 8] } else { [0; 8] };
                buf[..n].copy_from_slice(bytes);
                stack.push(Value::Int(i64::from_le_bytes(buf)));
            }
            b'G' => stack.push(Value::Float(f64::from_be_bytes(r.take(8)?.try_into().unwrap()))),
            b'X' => {
                let n = r.u32()? as usize;
                stack.push(Value::Str(r.string(n)?));
            }
            0x8c => {
                let n = r.u8()? as usize;
                stack.push(Value::Str(r.string(n)?));
            }
            0x8d => {
                let n = usize::try_from(u64::from_le_bytes(r.take(8)?.try_into().unwrap()))
                    .map_err(|_| "a pickled length does not fit this machine")?;
                stack.push(Value::Str(r.string(n)?));
            }
            b'U' => {
                let n = r.u8()? as usize;
                stack.push(Value::Str(r.string(n)?));
            }
            b'T' => {
                let n = r.u32()? as usize;
                stack.push(Value::Str(r.string(n)?));
            }
            b'C' => {
                let n = r.u8()? as usize;
                stack.push(Value::Bytes(r.take(n)?.to_vec()));
            }
            b'B' => {
                let n = r.u32()? as usize;
                stack.push(Value::Bytes(r.take(n)?.to_vec()));
            }
            b'c' => {
                let module = r.line()?;
                let name = r.line()?;
                stack.push(Value::Global(module, name));
            }
            0x93 => {
                let name = pop(&mut stack)?;
                let module = pop(&mut stack)?;
                match (module, name) {
                    (Value::Str(m), Value::Str(n)) => stack.push(Value::Global(m, n)),
                    _ => return Err("STACK_GLOBAL needs two strings".into()),
                }
            }
            b'q' => {
                let k = r.u8()? as u32;
                memo.insert(k, stack.last().cloned().ok_or("BINPUT on empty stack")?);
            }
            b'r' => {
                let k = r.u32()?;
                memo.insert(k, stack.last().cloned().ok_or("LONG_BINPUT on empty stack")?);
            }
            0x94 => {
                let k = memo.len() as u32;
                memo.insert(k, stack.last().cloned().ok_or("MEMOIZE on empty stack")?);
            }
            b'h' => {
                let k = r.u8()? as u32;
                stack.push(memo.get(&k).cloned().ok_or("BINGET of unknown memo key")?);
            }
            b'j' => {
                let k = r.u32()?;
                stack.push(memo.get(&k).cloned().ok_or("LONG_BINGET of unknown memo key")?);
            }
            b't' => {
                let items = pop_mark(&mut stack)?;
                stack.push(Value::Tuple(items));
            }
            0x85 => {
                let a = pop(&mut stack)?;
                stack.push(Value::Tuple(vec![a]));
            }
            0x86 => {
                let b = pop(&mut stack)?;
                let a = pop(&mut stack)?;
                stack.push(Value::Tuple(vec![a, b]));
            }
            0x87 => {
                let c = pop(&mut stack)?;
                let b = pop(&mut stack)?;
                let a = pop(&mut stack)?;
                stack.push(Value::Tuple(vec![a, b, c]));
            }
            b'l' => {
                let items = pop_mark(&mut stack)?;
                stack.push(Value::List(items));
            }
            b'd' => {
                let items = pop_mark(&mut stack)?;
                let mut dict = Value::Dict(Vec::new());
                set_items(&mut dict, items)?;
                stack.push(dict);
            }
            b'a' => {
                let v = pop(&mut stack)?;
                if let Some(Value::List(items)) = stack.last_mut() {
                    items.push(v);
                }
            }
            b'e' => {
                let items = pop_mark(&mut stack)?;
                if let Some(Value::List(list)) = stack.last_mut() {
                    list.extend(items);
                }
            }
            b's' => {
                let v = pop(&mut stack)?;
                let k = pop(&mut stack)?;
                set_items(stack.last_mut().ok_or("SETITEM on empty stack")?, vec![k, v])?;
            }
            b'u' => {
                let items = pop_mark(&mut stack)?;
                set_items(stack.last_mut().ok_or("SETITEMS on empty stack")?, items)?;
            }
            b'Q' => {
                let pid = pop(&mut stack)?;
                stack.push(Value::PersId(Box::new(pid)));
            }
            b'R' => {
                let args = pop(&mut stack)?;
                let func = pop(&mut stack)?;
                let Value::Tuple(args) = args else {
                    return Err("REDUCE arguments are not a tuple".into());
                };
                stack.push(call(func, args)?);
            }
            0x81 => {
                // NEWOBJ: cls.__new__(cls, *args)
                let args = pop(&mut stack)?;
                let cls = pop(&mut stack)?;
                let Value::Tuple(args) = args else {
                    return Err("NEWOBJ arguments are not a tuple".into());
                };
                stack.push(call(cls, args)?);
            }
            b'b' => {
                // BUILD: set state on the object below; we keep the object as it is.
                pop(&mut stack)?;
            }
            other => return Err(format!("unsupported pickle opcode 0x{other:02x} at byte {}", r.pos - 1)),
        }
    }
}
