//! PyTorch's `nn.Embedding` read as a lookup table: a text tower's token embeddings, of which a
//! text reads a few dozen rows out of tens of thousands (CLIP's 49,408 x 512 table is ViT-B/16's
//! largest tensor).

use std::sync::Arc;

use burn::tensor::{Device, Int, Tensor, TensorData};
use half::{bf16, f16};

use super::kernels::Kernel;
use crate::checkpoint::StoredDtype;
use crate::error::{Error, Result};
use crate::loader::{HeldBytes, Scope};

/// A `[rows, width]` table read by row.
#[derive(Debug, Clone)]
pub struct EmbeddingTable {
    width: usize,
    held: Held,
}

#[derive(Debug, Clone)]
enum Held {
    /// On the CPU backend, whose memory is the host's: the rows as the file stores them, the
    /// rows a lookup asks for turned into f32 and uploaded (a few KB). A q8 file's table stays
    /// int8, an f16 file's f16.
    Host { rows: Rows, device: Device },
    /// On a GPU, in f32, in device tensors of at most `rows_per_block` rows: one block, unless
    /// the table is larger than one GPU buffer should be (a 768-wide tower's 49,408 rows are 145
    /// MiB, past WebGPU's default 128 MiB binding; see [`crate::device::buffer_budget`]).
    Device { blocks: Vec<Tensor<2>>, rows_per_block: usize },
}

/// A host table's values, row-major.
#[derive(Debug, Clone)]
enum Rows {
    F32(Arc<[f32]>),
    F16(Arc<[f16]>),
    BF16(Arc<[bf16]>),
    /// Int8 with one scale per row (row = values × scale, as `convert --dtype q8` stores it).
    Q8 {
        values: Arc<[i8]>,
        scales: Arc<[f32]>,
    },
}

impl Rows {
    fn len(&self) -> usize {
        match self {
            Rows::F32(v) => v.len(),
            Rows::F16(v) => v.len(),
            Rows::BF16(v) => v.len(),
            Rows::Q8 { values, .. } => values.len(),
        }
    }

    fn held(&self) -> HeldBytes {
        let none = HeldBytes::default();
        match self {
            Rows::F32(v) => HeldBytes { f32: v.len() * size_of::<f32>(), ..none },
            Rows::F16(v) => HeldBytes { f16: v.len() * size_of::<f16>(), ..none },
            Rows::BF16(v) => HeldBytes { bf16: v.len() * size_of::<bf16>(), ..none },
            Rows::Q8 { values, scales } => {
                HeldBytes { int8: values.len(), f32: scales.len() * size_of::<f32>(), ..none }
            }
        }
    }

    /// Row `r` (`width` values) appended to `out` in f32: a copy of f32 rows, an exact widening
    /// of half-precision ones.
    fn push_row(&self, r: usize, width: usize, out: &mut Vec<f32>) {
        let span = r * width..(r + 1) * width;
        match self {
            Rows::F32(v) => out.extend_from_slice(&v[span]),
            Rows::F16(v) => out.extend(v[span].iter().map(|x| x.to_f32())),
            Rows::BF16(v) => out.extend(v[span].iter().map(|x| x.to_f32())),
            Rows::Q8 { values, scales } => out.extend(values[span].iter().map(|&q| f32::from(q) * scales[r])),
        }
    }
}

impl EmbeddingTable {
    /// `name`, `[rows, width]` (stored as any float type, or as int8 with one scale per row). On
    /// the CPU backend it is held on the host as stored; on a GPU, in f32 blocks of rows.
    pub fn load(p: &mut Scope, name: &str, shape: [usize; 2]) -> Self {
        let [rows, width] = shape;
        let device = p.device().clone();
        if Kernel::on(&device) != Kernel::Host {
            let rows_per_block = crate::device::buffer_budget(&device)
                .map_or(rows, |bytes| (bytes / (width.max(1) * size_of::<f32>())).clamp(1, rows.max(1)));
            let blocks = if rows_per_block >= rows {
                vec![p.tensor(name, shape)]
            } else {
                p.tensor_row_blocks(name, shape, rows_per_block)
            };
            return EmbeddingTable { width, held: Held::Device { blocks, rows_per_block } };
        }
        let stored = if p.quantized(name) {
            p.host_q8(name, &shape).map(|(values, scales)| Rows::Q8 { values: values.into(), scales: scales.into() })
        } else {
            let dtype = p.stored_dtype(name);
            // Half-precision values widen to f32 exactly, and narrow back the same.
            p.host(name, &shape).map(|values| match dtype {
                Some(StoredDtype::F16) => Rows::F16(values.iter().map(|&v| f16::from_f32(v)).collect()),
                Some(StoredDtype::BF16) => Rows::BF16(values.iter().map(|&v| bf16::from_f32(v)).collect()),
                _ => Rows::F32(values.into()),
            })
        };
        // A problem was recorded (the load fails at its end) or this is the check pass: an empty
        // table, which nothing reads.
        let rows = stored.unwrap_or_else(|| Rows::F32(Arc::from([])));
        p.hold(rows.held());
        EmbeddingTable { width, held: Held::Host { rows, device } }
    }

    /// The table of `blocks`, on their device, `rows_per_block` rows each (the last may have
    /// fewer): how a GPU holds a large one.
    pub fn from_blocks(blocks: Vec<Tensor<2>>, rows_per_block: usize) -> Self {
        let width = blocks.first().map_or(0, |b| b.dims()[1]);
        EmbeddingTable { width, held: Held::Device { blocks, rows_per_block } }
    }

    /// Values per row.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Rows held.
    pub fn rows(&self) -> usize {
        match &self.held {
            Held::Host { rows, .. } => rows.len().checked_div(self.width).unwrap_or(0),
            Held::Device { blocks, .. } => blocks.iter().map(|b| b.dims()[0]).sum(),
        }
    }

    /// The blocks a GPU holds the table in (none on the host).
    pub fn blocks(&self) -> usize {
        match &self.held {
            Held::Host { .. } => 0,
            Held::Device { blocks, .. } => blocks.len(),
        }
    }

    /// The rows of `ids`, in order, in f32 on the table's device; an id past the table is
    /// refused. `-> [ids, width]`
    pub fn lookup(&self, ids: &[u32]) -> Result<Tensor<2>> {
        let rows = self.rows();
        if let Some(bad) = ids.iter().find(|&&t| t as usize >= rows) {
            return Err(Error::invalid(format!("token id {bad} is outside the table of {rows} rows")));
        }
        let index = |values: Vec<i32>, device: &Device| {
            let len = values.len();
            Tensor::<1, Int>::from_data(TensorData::new(values, [len]), device)
        };
        match &self.held {
            Held::Host { rows, device } => {
                let mut out = Vec::with_capacity(ids.len() * self.width);
                for &t in ids {
                    rows.push_row(t as usize, self.width, &mut out);
                }
                Ok(Tensor::from_data(TensorData::new(out, [ids.len(), self.width]), device))
            }
            Held::Device { blocks, .. } if blocks.len() == 1 => {
                let device = blocks[0].device();
                Ok(blocks[0].clone().select(0, index(ids.iter().map(|&t| t as i32).collect(), &device)))
            }
            Held::Device { blocks, rows_per_block } => {
                // Each block gives the rows its ids fall in; one more gather puts them back in
                // order.
                let per = *rows_per_block;
                let device = blocks[0].device();
                let (mut parts, mut order) = (Vec::new(), Vec::with_capacity(ids.len()));
                for (k, block) in blocks.iter().enumerate() {
                    let (at, local): (Vec<usize>, Vec<i32>) = ids
                        .iter()
                        .enumerate()
                        .filter(|&(_, &t)| t as usize / per == k)
                        .map(|(i, &t)| (i, (t as usize % per) as i32))
                        .unzip();
                    if !local.is_empty() {
                        parts.push(block.clone().select(0, index(local, &device)));
                        order.extend(at);
                    }
                }
                let mut back = vec![0i32; order.len()];
                for (j, &i) in order.iter().enumerate() {
                    back[i] = j as i32;
                }
                Ok(Tensor::cat(parts, 0).select(0, index(back, &device)))
            }
        }
    }
}

#[cfg(all(test, feature = "cpu"))]
mod tests {
    use burn::tensor::Device;

    use super::EmbeddingTable;
    use crate::checkpoint::{Checkpoint, Values, quantize_rows, write_safetensors_values};
    use crate::loader::{HeldBytes, WeightLoader};

    fn values(t: EmbeddingTable, ids: &[u32]) -> Vec<f32> {
        t.lookup(ids).unwrap().into_data().try_to_vec::<f32>().unwrap()
    }

    /// A table held on the host as its file stores it gives, for f32, the very rows the file
    /// holds, and for f16 and int8 rows their exact widening; it holds the stored bytes. A
    /// table in blocks of rows (as a GPU with small buffers holds it) gives the whole table's
    /// rows, ids from every block, in any order; an id past the table is refused.
    #[test]
    fn tables_give_their_rows_as_stored() {
        let device = Device::flex();
        let (rows, width) = (40, 6);
        let table: Vec<f32> = (0..rows * width).map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0).collect();
        let half: Vec<half::f16> = table.iter().map(|&v| half::f16::from_f32(v)).collect();
        let (q, scales) = quantize_rows(&table, rows);
        let shape = [rows, width];
        let file = write_safetensors_values(&[
            ("f32.weight", &shape, Values::F32(&table)),
            ("f16.weight", &shape, Values::F16(&table)),
            ("q8.weight._data", &shape, Values::I8(&q)),
            ("q8.weight._scale", &[rows, 1], Values::F32(&scales)),
        ])
        .unwrap();
        let checkpoint = Checkpoint::from_bytes(&file, "tables.safetensors").unwrap();
        let ids = [38u32, 0, 7, 6, 21, 39, 13, 7];
        let row = |r: u32, f: &dyn Fn(usize) -> f32| (0..width).map(|c| f(r as usize * width + c)).collect::<Vec<_>>();
        let want = |f: &dyn Fn(usize) -> f32| ids.iter().flat_map(|&r| row(r, f)).collect::<Vec<f32>>();
        let mut loader = WeightLoader::new(&checkpoint, &device, "tables");
        let mut p = loader.pp("");
        let f32_table = EmbeddingTable::load(&mut p, "f32.weight", shape);
        let f16_table = EmbeddingTable::load(&mut p, "f16.weight", shape);
        let q8_table = EmbeddingTable::load(&mut p, "q8.weight", shape);
        assert_eq!(f32_table.blocks(), 0, "held on the host on the CPU backend");
        assert_eq!(values(f32_table.clone(), &ids), want(&|i| table[i]));
        assert_eq!(values(f16_table, &ids), want(&|i| half[i].to_f32()));
        assert_eq!(values(q8_table, &ids), want(&|i| f32::from(q[i]) * scales[i / width]));
        let n = rows * width;
        assert_eq!(loader.held, HeldBytes { f32: n * 4 + rows * 4, f16: n * 2, int8: n, bf16: 0 });
        loader.finish().unwrap();
        let err = f32_table.lookup(&[3, 40]).unwrap_err().to_string();
        assert!(err.contains("token id 40 is outside the table of 40 rows"), "{err}");
        // In blocks of 7 rows on the device.
        let whole = burn::tensor::Tensor::<2>::from_data(burn::tensor::TensorData::new(table.clone(), shape), &device);
        let blocks = (0..rows).step_by(7).map(|r| whole.clone().slice([r..(r + 7).min(rows), 0..width])).collect();
        let blocked = EmbeddingTable::from_blocks(blocks, 7);
        assert_eq!((blocked.blocks(), blocked.rows()), (6, rows));
        assert_eq!(values(blocked, &ids), want(&|i| table[i]));
    }
}
