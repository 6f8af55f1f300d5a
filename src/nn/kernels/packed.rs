//! Linear layers' products on the host, against weights packed once at load: the CPU backend
//! in the web build, and natively on processors with AVX-512. In the web build the `gemm`
//! crate's SIMD128 kernel was 85 % of CLIP's image tower, and it packs the weight again on every
//! call; this kernel reads panels packed at load, 4 rows by 8 columns with 8 accumulators (the
//! register budget V8 keeps without spilling), and ran the tower's product shapes in 0.66x to
//! 0.85x of the `gemm` crate's time in V8.
//!
//! Natively on x86-64 processors with AVX-512 the same scheme runs with panels of 64 columns
//! (four registers) and tiles of 6 rows: there the `gemm` crate under `flex` packed every weight
//! again on each call (14 % of ViT-B/16's image tower), and the tower went from about 130 to
//! 100 ms with this kernel. Elsewhere natively the backend's own product stays. The scalar
//! kernel is what the tests check the layout and the blocking with; the SIMD128 and AVX-512
//! kernels do the same steps several lanes at a time. Large products are cut into bands of
//! rows, one per thread, where the build has threads (natively, and the web build's `threads`
//! module).

use std::sync::Arc;

use super::host;
use crate::loader::HeldBytes;

/// Columns per panel: two SIMD128 vectors in the web build; natively on x86-64, four AVX-512
/// registers.
#[cfg(not(target_arch = "x86_64"))]
const PANEL: usize = 8;
#[cfg(target_arch = "x86_64")]
const PANEL: usize = 64;
/// Rows per tile: 8 accumulators in SIMD128; natively on x86-64, 24 of AVX-512's 32 registers,
/// so that a step's 24 multiply-adds outweigh its 10 loads (4 panel vectors, 6 broadcasts).
#[cfg(not(target_arch = "x86_64"))]
const ROWS: usize = 4;
#[cfg(target_arch = "x86_64")]
const ROWS: usize = 6;
/// Depth per pass: in the web build a panel's slice (8 KiB) stays in L1 while every row block
/// reads it; natively on x86-64 the slice (256 KiB) stays in L2: fewer passes over the output
/// were faster on CLIP's products than slices that fit L1 (ViT-B/16's tower took about 8 %
/// longer 256 deep, and 15 % longer 128 deep, than 1024 deep).
#[cfg(not(target_arch = "x86_64"))]
const DEPTH: usize = 256;
#[cfg(target_arch = "x86_64")]
const DEPTH: usize = 1024;
/// Multiply-adds below which a product stays on one thread (where the build has threads): a
/// piece handed to another thread should outweigh waking it.
const PARALLEL_WORK: usize = 1 << 18;

/// A `[k, n]` weight (a linear layer's `[in, out]`) in panels of 8 columns: panel `p` holds
/// columns `8p..8p+8` of every row `0..k` contiguously, `[k][8]`, the last one zero-padded;
/// with the bias, kept on the host too.
#[derive(Debug, Clone)]
pub struct PackedWeight {
    k: usize,
    n: usize,
    panels: Panels,
    bias: Option<Arc<[f32]>>,
}

/// The panels' values: f32, or int8 with one scale per column (per output of the layer), which
/// the product turns into f32 a depth slice of one panel at a time, just before its tiles read
/// it: the weight stays int8 in memory, and the slice (8 KiB in the web build, 256 KiB natively)
/// stays in cache for every row of the band.
#[derive(Debug, Clone)]
enum Panels {
    F32(Arc<[f32]>),
    Q8 {
        values: Arc<[i8]>,
        /// One per column, zero-padded to whole panels.
        scales: Arc<[f32]>,
    },
}

impl PackedWeight {
    /// A `[k, n]` matrix given by `value(row, col)`, without a bias, filled in panel order: the
    /// attention's keys (`[hd, n_k]`, a head's columns of the key rows) and values (`[n_k, hd]`),
    /// and the layers' weights.
    fn from_fn(k: usize, n: usize, value: impl Fn(usize, usize) -> f32) -> Self {
        let mut panels = vec![0f32; n.div_ceil(PANEL) * k * PANEL];
        // A matrix with no rows (a layer with no inputs, a config with a zero size, which the
        // loader reports) has nothing to pack; `chunks_exact_mut` takes no zero.
        if k > 0 {
            for (p, panel) in panels.chunks_exact_mut(k * PANEL).enumerate() {
                for (kk, row) in panel.chunks_exact_mut(PANEL).enumerate() {
                    for (c, slot) in row.iter_mut().enumerate().take(n - p * PANEL) {
                        *slot = value(kk, p * PANEL + c);
                    }
                }
            }
        }
        PackedWeight { k, n, panels: Panels::F32(panels.into()), bias: None }
    }

    /// From an int8 weight in PyTorch's `[out, in]` = `[n, k]` layout (`values`), one scale per
    /// output (`scales`, `n`: weight = value × scale, as optimum-quanto's `qint8` stores it),
    /// and a bias of `n`.
    pub fn from_q8_out_in(values: &[i8], scales: &[f32], n: usize, k: usize, bias: Option<Vec<f32>>) -> Self {
        assert_eq!((values.len(), scales.len()), (n * k, n), "a [{n}, {k}] int8 weight and {n} scales");
        let mut panels = vec![0i8; n.div_ceil(PANEL) * k * PANEL];
        if k > 0 {
            for (p, panel) in panels.chunks_exact_mut(k * PANEL).enumerate() {
                for (kk, row) in panel.chunks_exact_mut(PANEL).enumerate() {
                    for (c, slot) in row.iter_mut().enumerate().take(n - p * PANEL) {
                        *slot = values[(p * PANEL + c) * k + kk];
                    }
                }
            }
        }
        let mut padded = scales.to_vec();
        padded.resize(n.div_ceil(PANEL) * PANEL, 0.0);
        let panels = Panels::Q8 { values: panels.into(), scales: padded.into() };
        PackedWeight { k, n, panels, bias: bias.map(Into::into) }
    }

    /// Bytes the weight holds on the host (its panels, their scales and the bias).
    pub fn bytes(&self) -> usize {
        self.held().total()
    }

    /// [`Self::bytes`] by the type they are held in (the panels' padding included).
    pub fn held(&self) -> HeldBytes {
        let bias = self.bias.as_ref().map_or(0, |b| b.len() * size_of::<f32>());
        match &self.panels {
            Panels::F32(values) => HeldBytes { f32: values.len() * size_of::<f32>() + bias, ..HeldBytes::default() },
            Panels::Q8 { values, scales } => {
                HeldBytes { f32: scales.len() * size_of::<f32>() + bias, int8: values.len(), ..HeldBytes::default() }
            }
        }
    }

    /// From PyTorch's `[out, in]` = `[n, k]` layout (`values`), and a bias of `n`.
    pub fn from_out_in(values: &[f32], n: usize, k: usize, bias: Option<Vec<f32>>) -> Self {
        assert_eq!(values.len(), n * k, "a [{n}, {k}] weight");
        PackedWeight { bias: bias.map(Into::into), ..Self::from_fn(k, n, |kk, col| values[col * k + kk]) }
    }

    /// `x [m, k] -> x W + bias [m, n]`, row-major.
    pub fn matmul(&self, x: &[f32], m: usize) -> Vec<f32> {
        side_by_side(&[self], x, m)
    }

    /// `out[r][0..n] = x[r][0..k] W + bias` for `m` rows, strided as in [`Self::accumulate`].
    fn product_into(&self, x: &[f32], x_stride: usize, m: usize, out: &mut [f32], out_stride: usize) {
        for r in 0..m {
            let row = &mut out[r * out_stride..][..self.n];
            match &self.bias {
                Some(bias) => row.copy_from_slice(bias),
                None => row.fill(0.0),
            }
        }
        self.accumulate(x, x_stride, m, out, out_stride);
    }

    /// `out[r][0..n] += x[r][0..k] W + bias` for `m` rows, strided as in [`Self::accumulate`]
    /// (a residual added in place).
    fn add_product(&self, x: &[f32], x_stride: usize, m: usize, out: &mut [f32], out_stride: usize) {
        self.accumulate(x, x_stride, m, out, out_stride);
        if let Some(bias) = &self.bias {
            for r in 0..m {
                out[r * out_stride..][..self.n].iter_mut().zip(bias.iter()).for_each(|(o, b)| *o += b);
            }
        }
    }

    /// `out[r][0..n] += x[r][0..k] W` for `m` rows, the rows of `x` `x_stride` values apart and
    /// those of `out` `out_stride` apart (a head's columns of a wider matrix). The bias is not
    /// added.
    fn accumulate(&self, x: &[f32], x_stride: usize, m: usize, out: &mut [f32], out_stride: usize) {
        let (k, n) = (self.k, self.n);
        if k == 0 || m == 0 || n == 0 {
            return;
        }
        assert!(x_stride >= k && x.len() >= (m - 1) * x_stride + k, "[{m}, {k}] rows {x_stride} apart");
        assert!(out_stride >= n && out.len() >= (m - 1) * out_stride + n, "[{m}, {n}] rows {out_stride} apart");
        match &self.panels {
            Panels::F32(panels) => {
                for k0 in (0..k).step_by(DEPTH) {
                    let depth = k0..(k0 + DEPTH).min(k);
                    for (p, panel) in panels.chunks_exact(k * PANEL).enumerate() {
                        let cols = PANEL.min(n - p * PANEL);
                        tiles(x, x_stride, m, depth.clone(), panel, &mut out[p * PANEL..], out_stride, cols);
                    }
                }
            }
            Panels::Q8 { values, scales } => {
                // One panel's depth slice in f32 at a time; the tiles read it from depth 0, with
                // `x` from the slice's first column.
                let mut slice = vec![0f32; DEPTH.min(k) * PANEL];
                for k0 in (0..k).step_by(DEPTH) {
                    let len = DEPTH.min(k - k0);
                    for (p, panel) in values.chunks_exact(k * PANEL).enumerate() {
                        let cols = PANEL.min(n - p * PANEL);
                        let scale = &scales[p * PANEL..][..PANEL];
                        let stored = &panel[k0 * PANEL..][..len * PANEL];
                        for (row, q) in slice.chunks_exact_mut(PANEL).zip(stored.chunks_exact(PANEL)) {
                            for ((v, &q), &s) in row.iter_mut().zip(q).zip(scale) {
                                *v = f32::from(q) * s;
                            }
                        }
                        tiles(&x[k0..], x_stride, m, 0..len, &slice, &mut out[p * PANEL..], out_stride, cols);
                    }
                }
            }
        }
    }
}

/// `out[r][0..cols] += x[r][depth] . panel[depth]` for all `m` rows of `x` (rows `k` apart; `out`
/// starts at the panel's first column, rows `n` apart), a tile of rows at a time.
#[allow(clippy::too_many_arguments)]
fn tiles(
    x: &[f32],
    k: usize,
    m: usize,
    depth: std::ops::Range<usize>,
    panel: &[f32],
    out: &mut [f32],
    n: usize,
    cols: usize,
) {
    #[cfg(target_arch = "x86_64")]
    if crate::device::avx512() {
        // SAFETY: the processor has AVX-512 (checked); the kernel asserts its bounds.
        return unsafe { avx512::tiles(x, k, m, depth, panel, out, n, cols) };
    }
    plain_tiles(x, k, m, depth, panel, out, n, cols)
}

/// [`tiles`] on the build's baseline instructions: SIMD128 in the web build, scalar code that
/// the compiler vectorises elsewhere.
#[allow(clippy::too_many_arguments)]
fn plain_tiles(
    x: &[f32],
    k: usize,
    m: usize,
    depth: std::ops::Range<usize>,
    panel: &[f32],
    out: &mut [f32],
    n: usize,
    cols: usize,
) {
    let mut r = 0;
    while r + ROWS <= m {
        tile::<ROWS>(&x[r * k..], k, depth.clone(), panel, &mut out[r * n..], n, cols);
        r += ROWS;
    }
    for r in r..m {
        tile::<1>(&x[r * k..], k, depth.clone(), panel, &mut out[r * n..], n, cols);
    }
}

/// Several layers' products of one input `x [m, k]` (all `k` wide), side by side in each output
/// row: `[x W_1 + b_1 | x W_2 + b_2 | ...]`, `[m, n_1 + n_2 + ...]` (one layer: its product).
/// Each band of rows runs all of them on one thread: self-attention's queries, keys and values
/// take one hand-over to the threads, not three.
pub fn side_by_side(layers: &[&PackedWeight], x: &[f32], m: usize) -> Vec<f32> {
    let k = layers.first().map_or(0, |w| w.k);
    assert!(layers.iter().all(|w| w.k == k) && x.len() == m * k, "[{m}, {k}] rows into layers of {k} inputs");
    let width: usize = layers.iter().map(|w| w.n).sum();
    let mut out = vec![0f32; m * width];
    if width == 0 {
        return out;
    }
    host::for_row_pieces(&mut out, width, PARALLEL_WORK / k.max(1), |first, band| {
        products_side_by_side(layers, &x[first * k..], k, band, width)
    });
    out
}

/// The band's share of [`side_by_side`]: the layers' products of `x`'s rows (`k` wide, as many as
/// `band` holds rows of `width`), each in its own columns of `band`.
fn products_side_by_side(layers: &[&PackedWeight], x: &[f32], k: usize, band: &mut [f32], width: usize) {
    let rows = band.len() / width;
    let mut col = 0;
    for w in layers {
        w.product_into(x, k, rows, &mut band[col..], width);
        col += w.n;
    }
}

/// `act(x W_1 + b_1) W_2 + b_2` for `m` rows of `x [m, k]` (a transformer's MLP): each band of
/// rows goes through both layers on one thread, the hidden rows never leaving it.
pub fn mlp(fc1: &PackedWeight, fc2: &PackedWeight, x: &[f32], m: usize, act: impl Fn(&mut [f32]) + Sync) -> Vec<f32> {
    let (k, hidden, n) = (fc1.k, fc1.n, fc2.n);
    assert!(fc2.k == hidden && x.len() == m * k, "[{m}, {k}] rows through [{k}, {hidden}] and [{}, {n}]", fc2.k);
    let mut out = vec![0f32; m * n];
    if n == 0 {
        return out;
    }
    let work_per_value = (k * hidden).div_ceil(n) + hidden;
    host::for_row_pieces(&mut out, n, PARALLEL_WORK / work_per_value.max(1), |first, band| {
        let rows = band.len() / n;
        let mut h = vec![0f32; rows * hidden];
        fc1.product_into(&x[first * k..], k, rows, &mut h, hidden);
        act(&mut h);
        fc2.product_into(&h, hidden, rows, band, n);
    });
    out
}

/// Rows of a matrix read in place: row `r` is `values[r * stride..][..width]` (queries, keys
/// or values in their own matrix, or side by side in one, as [`side_by_side`] gives them).
#[derive(Debug, Clone, Copy)]
pub struct Rows<'a> {
    pub values: &'a [f32],
    pub stride: usize,
}

impl<'a> Rows<'a> {
    /// From row `first` on.
    fn from(self, first: usize) -> Rows<'a> {
        Rows { values: &self.values[(first * self.stride).min(self.values.len())..], stride: self.stride }
    }
}

/// Multi-head attention on the host, without a mask: queries `q` (`[b, n_q, d]` rows), keys
/// `k` and values `v` (`[b, n_k, d]` rows), `d = heads * hd` with the heads side by side in each
/// row (as the projections give them) -> `softmax(q kᵀ / √hd) v`, heads side by side again,
/// through `out_proj` where given: `[b, n_q, d]`, or `[b, n_q, out_proj's n]`.
/// Each band of queries runs on one thread: per head, the keys and values are packed (a few KB:
/// cheap next to the products) and both products run on the packed kernel, reading the head's
/// columns in place; then the band's `out_proj`.
pub fn attention(
    q: Rows,
    k: Rows,
    v: Rows,
    [b, n_q, n_k, d]: [usize; 4],
    heads: usize,
    out_proj: Option<&PackedWeight>,
) -> Vec<f32> {
    let hd = d.checked_div(heads).unwrap_or(0);
    let fits = |r: Rows, n: usize| b * n == 0 || r.values.len() >= (b * n - 1) * r.stride + d;
    assert!(hd * heads == d && fits(q, n_q) && fits(k, n_k) && fits(v, n_k), "[{b}, {n_q}, {n_k}, {d}] attention");
    let d_out = out_proj.map_or(d, |w| {
        assert_eq!(w.k, d, "out_proj takes {d} inputs");
        w.n
    });
    let mut out = vec![0f32; b * n_q * d_out];
    if n_q == 0 || d_out == 0 {
        return out;
    }
    let work_per_value = (2 * n_k * d).div_ceil(d_out) + d;
    for bi in 0..b {
        let (q, k, v) = (q.from(bi * n_q), k.from(bi * n_k), v.from(bi * n_k));
        host::for_row_pieces(
            &mut out[bi * n_q * d_out..][..n_q * d_out],
            d_out,
            PARALLEL_WORK / work_per_value,
            |first, band| {
                let rows = band.len() / d_out;
                let mut mixed = vec![0f32; rows * d];
                attend_band(q.from(first), k, v, [rows, n_k, d], heads, &mut mixed);
                match out_proj {
                    Some(w) => w.product_into(&mixed, d, rows, band, d_out),
                    None => band.copy_from_slice(&mixed),
                }
            },
        );
    }
    out
}

/// `softmax(q kᵀ / √hd) v` for `rows` queries against `n_k` keys and values, the heads side by
/// side in `d` columns, into `mixed [rows, d]` (zeros on entry): per head, the keys and values
/// are packed and both products run on the packed kernel, reading the head's columns in place.
fn attend_band(q: Rows, k: Rows, v: Rows, [rows, n_k, d]: [usize; 3], heads: usize, mixed: &mut [f32]) {
    let hd = d.checked_div(heads).unwrap_or(0);
    let scale = (hd.max(1) as f32).powf(-0.5);
    let mut scores = vec![0f32; rows * n_k];
    for h in (0..d).step_by(hd.max(1)).take(if n_k > 0 { heads } else { 0 }) {
        let keys = PackedWeight::from_fn(hd, n_k, |kk, key| k.values[key * k.stride + h + kk]);
        scores.fill(0.0);
        keys.accumulate(&q.values[h..], q.stride, rows, &mut scores, n_k);
        scores.chunks_exact_mut(n_k).for_each(|row| host::softmax_row(row, scale));
        let values = PackedWeight::from_fn(n_k, hd, |key, c| v.values[key * v.stride + h + c]);
        values.accumulate(&scores, n_k, rows, &mut mixed[h..], d);
    }
}

/// A layer norm on the host: its weight and bias, and epsilon.
#[derive(Debug, Clone, Copy)]
pub struct Norm<'a> {
    pub weight: &'a [f32],
    pub bias: &'a [f32],
    pub eps: f32,
}

impl Norm<'_> {
    /// Each row of `x` (as wide as the weight) normalised into the same row of `out`:
    /// `(x - mean) / sqrt(var + eps) * weight + bias`, the variance the population's.
    fn rows(&self, x: &[f32], out: &mut [f32]) {
        let d = self.weight.len();
        if d == 0 {
            return;
        }
        for (x, out) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
            let mean = x.iter().sum::<f32>() / d as f32;
            let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / d as f32;
            let inv = 1.0 / (var + self.eps).sqrt();
            for (((o, &v), &w), &b) in out.iter_mut().zip(x).zip(self.weight).zip(self.bias) {
                *o = (v - mean) * inv * w + b;
            }
        }
    }
}

/// A pre-norm transformer block's layers on the host (CLIP's `CLIPEncoderLayer`): self-attention
/// with its projections and `heads`, and an MLP, each after its layer norm.
#[derive(Debug, Clone, Copy)]
pub struct Block<'a> {
    pub norm1: Norm<'a>,
    pub q: &'a PackedWeight,
    pub k: &'a PackedWeight,
    pub v: &'a PackedWeight,
    pub out: &'a PackedWeight,
    pub heads: usize,
    pub norm2: Norm<'a>,
    pub fc1: &'a PackedWeight,
    pub fc2: &'a PackedWeight,
}

impl Block<'_> {
    /// `y = x + out(attention(norm1(x)))`, then `y + fc2(act(fc1(norm2(y))))`, on `x [b, n, d]`
    /// in place, with two hand-overs to the threads (where the build has them) and nothing in
    /// between on the backend: norm1 and the projections per band of rows; then per band of
    /// queries attention, out_proj and its residual, norm2, the MLP and its residual (all of
    /// which read only the band's own rows).
    pub fn forward(&self, x: &mut [f32], [b, n, d]: [usize; 3], act: impl Fn(&mut [f32]) + Sync) {
        let inner = self.q.n;
        let hidden = self.fc1.n;
        assert!(
            [
                self.q.k,
                self.k.k,
                self.v.k,
                self.fc1.k,
                self.out.n,
                self.fc2.n,
                self.norm1.weight.len(),
                self.norm2.weight.len()
            ]
            .iter()
            .all(|&w| w == d)
                && self.k.n == inner
                && self.v.n == inner
                && self.out.k == inner
                && self.fc2.k == hidden
                && inner.checked_rem(self.heads) == Some(0)
                && x.len() == b * n * d,
            "a [{b}, {n}, {d}] block"
        );
        if b * n * d == 0 {
            return;
        }
        let width = 3 * inner;
        let mut qkv = vec![0f32; b * n * width];
        let input: &[f32] = x;
        host::for_row_pieces(&mut qkv, width, PARALLEL_WORK / d, |first, band| {
            let rows = band.len() / width;
            let mut normed = vec![0f32; rows * d];
            self.norm1.rows(&input[first * d..][..rows * d], &mut normed);
            products_side_by_side(&[self.q, self.k, self.v], &normed, d, band, width);
        });
        let work_per_value = (2 * n * inner).div_ceil(d) + inner + 2 * hidden;
        for (x, qkv) in x.chunks_exact_mut(n * d).zip(qkv.chunks_exact(n * width)) {
            let rows_from = |first: usize| Rows { values: &qkv[first.min(qkv.len())..], stride: width };
            let (q, k, v) = (rows_from(0), rows_from(inner), rows_from(2 * inner));
            host::for_row_pieces(x, d, PARALLEL_WORK / work_per_value, |first, band| {
                let rows = band.len() / d;
                let mut mixed = vec![0f32; rows * inner];
                attend_band(q.from(first), k, v, [rows, n, inner], self.heads, &mut mixed);
                self.out.add_product(&mixed, inner, rows, band, d);
                let mut normed = vec![0f32; rows * d];
                self.norm2.rows(band, &mut normed);
                let mut h = vec![0f32; rows * hidden];
                self.fc1.product_into(&normed, d, rows, &mut h, hidden);
                act(&mut h);
                self.fc2.add_product(&h, hidden, rows, band, d);
            });
        }
    }
}

/// `out[r][0..cols] += x[r][depth] . panel[depth]` for `R` rows (`x` and `out` start at the
/// tile's first row, rows `k` and `n` apart).
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
#[inline(always)]
fn tile<const R: usize>(
    x: &[f32],
    k: usize,
    depth: std::ops::Range<usize>,
    panel: &[f32],
    out: &mut [f32],
    n: usize,
    cols: usize,
) {
    let mut acc = [[0f32; PANEL]; R];
    for kk in depth {
        let b = &panel[kk * PANEL..][..PANEL];
        for (r, acc) in acc.iter_mut().enumerate() {
            let a = x[r * k + kk];
            for (s, &b) in acc.iter_mut().zip(b) {
                *s += a * b;
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        for (o, s) in out[r * n..][..cols].iter_mut().zip(acc) {
            *o += s;
        }
    }
}

/// [`tile`] in SIMD128: each panel row is two vectors, each `x` value one splat. The rows are
/// written out one by one (not a loop over `R`): the web build is optimised for size, which
/// leaves such loops rolled and the accumulators in memory. The `relaxed` build multiplies and
/// adds in one instruction (a whole tile's function then carries the feature: one call per
/// tile, not inlined into a caller without it).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[cfg_attr(feature = "relaxed", target_feature(enable = "relaxed-simd"))]
#[cfg_attr(not(feature = "relaxed"), inline(always))]
fn tile<const R: usize>(
    x: &[f32],
    k: usize,
    depth: std::ops::Range<usize>,
    panel: &[f32],
    out: &mut [f32],
    n: usize,
    cols: usize,
) {
    use core::arch::wasm32::*;
    // The raw reads below stay inside these bounds.
    assert!(R == 1 || R == 4);
    assert!(panel.len() >= depth.end * PANEL && x.len() >= (R - 1) * k + depth.end);
    assert!(out.len() >= (R - 1) * n + cols && cols <= PANEL);
    // `c + a b`: one fused instruction in the relaxed-SIMD build (rounded once, not twice).
    #[inline(always)]
    fn madd(a: v128, b: v128, c: v128) -> v128 {
        #[cfg(feature = "relaxed")]
        return f32x4_relaxed_madd(a, b, c);
        #[cfg(not(feature = "relaxed"))]
        f32x4_add(c, f32x4_mul(a, b))
    }
    let (xp, pp) = (x.as_ptr(), panel.as_ptr());
    let zero = f32x4_splat(0.0);
    let (mut c00, mut c01, mut c10, mut c11, mut c20, mut c21, mut c30, mut c31) =
        (zero, zero, zero, zero, zero, zero, zero, zero);
    // SAFETY (every raw read): in bounds by the asserts; WebAssembly's loads need no alignment.
    if R == 4 {
        for kk in depth {
            let (b0, b1) = unsafe {
                (v128_load(pp.add(kk * PANEL) as *const v128), v128_load(pp.add(kk * PANEL + 4) as *const v128))
            };
            let a = unsafe { v128_load32_splat(xp.add(kk) as *const u32) };
            c00 = madd(a, b0, c00);
            c01 = madd(a, b1, c01);
            let a = unsafe { v128_load32_splat(xp.add(k + kk) as *const u32) };
            c10 = madd(a, b0, c10);
            c11 = madd(a, b1, c11);
            let a = unsafe { v128_load32_splat(xp.add(2 * k + kk) as *const u32) };
            c20 = madd(a, b0, c20);
            c21 = madd(a, b1, c21);
            let a = unsafe { v128_load32_splat(xp.add(3 * k + kk) as *const u32) };
            c30 = madd(a, b0, c30);
            c31 = madd(a, b1, c31);
        }
    } else {
        for kk in depth {
            let (b0, b1) = unsafe {
                (v128_load(pp.add(kk * PANEL) as *const v128), v128_load(pp.add(kk * PANEL + 4) as *const v128))
            };
            let a = unsafe { v128_load32_splat(xp.add(kk) as *const u32) };
            c00 = madd(a, b0, c00);
            c01 = madd(a, b1, c01);
        }
    }
    for (r, (lo, hi)) in [(c00, c01), (c10, c11), (c20, c21), (c30, c31)].into_iter().take(R).enumerate() {
        let row = &mut out[r * n..][..cols];
        if cols == PANEL {
            let op = row.as_mut_ptr();
            // SAFETY: `row` holds `PANEL` values.
            unsafe {
                v128_store(op as *mut v128, f32x4_add(v128_load(op as *const v128), lo));
                v128_store(op.add(4) as *mut v128, f32x4_add(v128_load(op.add(4) as *const v128), hi));
            }
        } else {
            let mut lanes = [0f32; PANEL];
            // SAFETY: `lanes` holds `PANEL` values.
            unsafe {
                v128_store(lanes.as_mut_ptr() as *mut v128, lo);
                v128_store(lanes.as_mut_ptr().add(4) as *mut v128, hi);
            }
            for (o, s) in row.iter_mut().zip(lanes) {
                *o += s;
            }
        }
    }
}

/// The native product on x86-64 processors with AVX-512: a tile of 6 rows by the panel's 64
/// columns keeps its 24 accumulators in registers, each step one load of the panel row per
/// register and one broadcast per row. The last rows of a band get a tile of their own height
/// rather than single rows.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use core::arch::x86_64::*;
    use std::ops::Range;

    use super::{PANEL, ROWS};

    /// [`super::tiles`] in AVX-512.
    ///
    /// # Safety
    /// The processor must have AVX-512F ([`crate::device::avx512`]).
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn tiles(
        x: &[f32],
        k: usize,
        m: usize,
        depth: Range<usize>,
        panel: &[f32],
        out: &mut [f32],
        n: usize,
        cols: usize,
    ) {
        if m == 0 || depth.is_empty() {
            return;
        }
        // The raw reads and writes below stay inside these bounds.
        assert!(panel.len() >= depth.end * PANEL && x.len() >= (m - 1) * k + depth.end);
        assert!(out.len() >= (m - 1) * n + cols && cols <= PANEL);
        let (x, out, panel) = (x.as_ptr(), out.as_mut_ptr(), panel.as_ptr());
        let mut r = 0;
        while r < m {
            let rows = ROWS.min(m - r);
            let (x, out) = (x.wrapping_add(r * k), out.wrapping_add(r * n));
            const { assert!(ROWS == 6) };
            // SAFETY: rows r..r + rows are below m, in bounds by the asserts.
            unsafe {
                match rows {
                    1 => tile::<1>(x, k, depth.clone(), panel, out, n, cols),
                    2 => tile::<2>(x, k, depth.clone(), panel, out, n, cols),
                    3 => tile::<3>(x, k, depth.clone(), panel, out, n, cols),
                    4 => tile::<4>(x, k, depth.clone(), panel, out, n, cols),
                    5 => tile::<5>(x, k, depth.clone(), panel, out, n, cols),
                    _ => tile::<6>(x, k, depth.clone(), panel, out, n, cols),
                }
            }
            r += rows;
        }
    }

    /// `out[r][0..cols] += x[r][depth] . panel[depth]` for `R` rows.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn tile<const R: usize>(
        x: *const f32,
        k: usize,
        depth: Range<usize>,
        panel: *const f32,
        out: *mut f32,
        n: usize,
        cols: usize,
    ) {
        const V: usize = PANEL / 16;
        const { assert!(V * 16 == PANEL) };
        let mut acc = [[_mm512_setzero_ps(); V]; R];
        // SAFETY (every raw access): in bounds as `tiles` asserts; the masked accesses touch
        // only the row's first `cols` values.
        for kk in depth {
            let b: [__m512; V] = std::array::from_fn(|v| unsafe { _mm512_loadu_ps(panel.add(kk * PANEL + 16 * v)) });
            for (r, acc) in acc.iter_mut().enumerate() {
                let a = _mm512_set1_ps(unsafe { *x.add(r * k + kk) });
                for (acc, &b) in acc.iter_mut().zip(&b) {
                    *acc = _mm512_fmadd_ps(a, b, *acc);
                }
            }
        }
        let masks: [__mmask16; V] = std::array::from_fn(|v| ((1u32 << cols.saturating_sub(16 * v).min(16)) - 1) as u16);
        for (r, acc) in acc.iter().enumerate() {
            for (v, (&acc, &mask)) in acc.iter().zip(&masks).enumerate() {
                let o = out.wrapping_add(r * n + 16 * v);
                unsafe { _mm512_mask_storeu_ps(o, mask, _mm512_add_ps(_mm512_maskz_loadu_ps(mask, o), acc)) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against a direct f64 computation, with several heads, a batch of two, fewer keys than
    /// queries, sizes that leave partial panels and row tiles, and one large enough to be cut
    /// into bands of queries where the build has threads.
    #[test]
    fn host_attention_matches_the_definition() {
        for ([b, n_q, n_k], heads, hd) in
            [([2, 7, 5], 3, 4), ([1, 9, 13], 2, 10), ([1, 1, 1], 1, 1), ([2, 0, 3], 2, 2), ([2, 45, 300], 4, 16)]
        {
            let d = heads * hd;
            let (q, k, v) = (values(b * n_q * d, 0.31), values(b * n_k * d, 0.53), values(b * n_k * d, 0.97));
            let [rq, rk, rv] = [&q, &k, &v].map(|values| Rows { values, stride: d });
            let got = attention(rq, rk, rv, [b, n_q, n_k, d], heads, None);
            assert_eq!(got.len(), b * n_q * d);
            for (bi, i, h) in (0..b).flat_map(|bi| (0..n_q).flat_map(move |i| (0..heads).map(move |h| (bi, i, h)))) {
                let row = |m: &[f32], n: usize, j: usize| m[(bi * n + j) * d + h * hd..][..hd].to_vec();
                let qi = row(&q, n_q, i);
                let logits: Vec<f64> = (0..n_k)
                    .map(|j| {
                        row(&k, n_k, j).iter().zip(&qi).map(|(&a, &b)| a as f64 * b as f64).sum::<f64>()
                            / (hd as f64).sqrt()
                    })
                    .collect();
                let max = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let weights: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
                let total: f64 = weights.iter().sum();
                for c in 0..hd {
                    let want: f64 = (0..n_k).map(|j| weights[j] / total * row(&v, n_k, j)[c] as f64).sum();
                    let g = got[(bi * n_q + i) * d + h * hd + c] as f64;
                    assert!(
                        (g - want).abs() <= 1e-5 * (1.0 + want.abs()),
                        "b {bi} query {i} head {h} col {c}: {g} vs {want}"
                    );
                }
            }
        }
    }

    fn values(len: usize, seed: f32) -> Vec<f32> {
        (0..len).map(|i| ((i as f32 * seed).sin() * 1000.0).fract()).collect()
    }

    /// Sizes with partial panels, partial row tiles and several depth passes, and no inputs; and
    /// one large enough to be cut into bands of rows where the build has threads.
    #[test]
    fn packed_product_matches_the_plain_one() {
        let deep = 2 * DEPTH + 88;
        for (m, k, n, bias) in [
            (7, deep, 19, true),
            (4, 8, 8, false),
            (1, 3, 1, true),
            (9, 257, 16, false),
            (2, 0, 3, true),
            (37, 300, 70, true),
        ] {
            let w = values(n * k, 0.7); // [n, k]
            let x = values(m * k, 1.3);
            let b = bias.then(|| values(n, 2.9));
            let got = PackedWeight::from_out_in(&w, n, k, b.clone()).matmul(&x, m);
            for r in 0..m {
                for c in 0..n {
                    let want: f64 = (0..k).map(|i| x[r * k + i] as f64 * w[c * k + i] as f64).sum::<f64>()
                        + b.as_ref().map_or(0.0, |b| b[c] as f64);
                    let g = got[r * n + c] as f64;
                    assert!((g - want).abs() <= 1e-4 * (1.0 + want.abs()), "{m}x{k}x{n} at ({r}, {c}): {g} vs {want}");
                }
            }
        }
    }

    /// Where the processor runs the AVX-512 kernel, it gives the plain kernel's sums: on every
    /// tile height up to a full one and past it, full and partial panels, and a depth range
    /// that starts inside the matrix, into an output that already holds values.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_avx512_kernel_gives_the_plain_kernels_sums() {
        if !crate::device::avx512() {
            eprintln!("this processor has no AVX-512: nothing to compare");
            return;
        }
        let (k, n) = (300, PANEL + 13);
        let w = PackedWeight::from_out_in(&values(n * k, 0.41), n, k, None);
        let Panels::F32(panels) = &w.panels else { unreachable!("an f32 weight") };
        for m in 1..=2 * ROWS + 1 {
            let x = values(m * k, 1.9);
            for (p, panel) in panels.chunks_exact(k * PANEL).enumerate() {
                let cols = PANEL.min(n - p * PANEL);
                let start = values(m * n, 3.7);
                let (mut plain, mut wide) = (start.clone(), start);
                plain_tiles(&x, k, m, 17..k, panel, &mut plain[p * PANEL..], n, cols);
                // SAFETY: checked above.
                unsafe { avx512::tiles(&x, k, m, 17..k, panel, &mut wide[p * PANEL..], n, cols) };
                for (i, (a, b)) in plain.iter().zip(&wide).enumerate() {
                    assert!((a - b).abs() <= 1e-4 * (1.0 + a.abs()), "{m} rows, panel {p}, value {i}: {a} vs {b}");
                }
            }
        }
    }

    /// An int8 weight multiplies as its dequantised f32 copy does (value × its column's scale),
    /// over depths longer than one slice and a partial last panel, with a bias; one scale moved
    /// to the wrong column fails it.
    #[test]
    fn int8_panels_multiply_as_their_dequantised_weight() {
        let (m, k, n) = (2 * ROWS + 3, DEPTH + 37, 2 * PANEL + 5);
        let q: Vec<i8> = (0..n * k).map(|i| ((i * 37 + 11) % 255) as i32 as i8).collect();
        let scales: Vec<f32> = (0..n).map(|o| 0.001 + 0.0005 * o as f32).collect();
        let bias = values(n, 0.9);
        let x = values(m * k, 1.3);
        let dequantised: Vec<f32> = q.iter().enumerate().map(|(i, &v)| f32::from(v) * scales[i / k]).collect();
        let want = PackedWeight::from_out_in(&dequantised, n, k, Some(bias.clone())).matmul(&x, m);
        let packed = PackedWeight::from_q8_out_in(&q, &scales, n, k, Some(bias.clone()));
        assert!(packed.bytes() < n * k * 2, "int8 panels: {} bytes", packed.bytes());
        let got = packed.matmul(&x, m);
        for (i, (a, b)) in want.iter().zip(&got).enumerate() {
            assert!((a - b).abs() <= 1e-5 * (1.0 + a.abs()), "value {i}: {a} vs {b}");
        }
        let mut swapped = scales.clone();
        swapped.swap(1, n - 1);
        let wrong = PackedWeight::from_q8_out_in(&q, &swapped, n, k, Some(bias)).matmul(&x, m);
        assert!(want.iter().zip(&wrong).any(|(a, b)| (a - b).abs() > 1e-3 * (1.0 + a.abs())));
    }

    /// Several layers side by side give each layer's product in its own columns.
    #[test]
    fn side_by_side_products_are_the_layers_products() {
        let (m, k) = (37, 300);
        let layers: Vec<PackedWeight> = [(70, true), (9, false), (33, true)]
            .iter()
            .enumerate()
            .map(|(i, &(n, bias))| {
                PackedWeight::from_out_in(&values(n * k, 0.3 + i as f32), n, k, bias.then(|| values(n, 1.7 + i as f32)))
            })
            .collect();
        let x = values(m * k, 2.3);
        let got = side_by_side(&layers.iter().collect::<Vec<_>>(), &x, m);
        let width = 70 + 9 + 33;
        assert_eq!(got.len(), m * width);
        let mut col = 0;
        for w in &layers {
            let alone = w.matmul(&x, m);
            for r in 0..m {
                assert_eq!(&got[r * width + col..][..w.n], &alone[r * w.n..][..w.n], "row {r}, columns from {col}");
            }
            col += w.n;
        }
    }
}
