//! Linear layers' products on the host, against weights packed once at load: the web build's
//! CPU fallback. There the `gemm` crate's SIMD128 kernel was 85 % of CLIP's image tower, and it
//! packs the weight again on every call; this kernel reads panels packed at load, 4 rows by 8
//! columns with 8 accumulators (the register budget V8 keeps without spilling), and ran the
//! tower's product shapes in 0.66x to 0.85x of the `gemm` crate's time in V8.
//!
//! Natively the `flex` backend's own product (AVX, threads) stays faster; the scalar kernel
//! here is what the tests check the layout and the blocking with, and the SIMD128 kernel does
//! the same steps four lanes at a time.

use std::sync::Arc;

/// Columns per panel.
const PANEL: usize = 8;
/// Rows per tile.
const ROWS: usize = 4;
/// Depth per pass: a panel's slice (8 KiB) stays in L1 while every row block reads it.
const DEPTH: usize = 256;

/// A `[k, n]` weight (a linear layer's `[in, out]`) in panels of 8 columns: panel `p` holds
/// columns `8p..8p+8` of every row `0..k` contiguously, `[k][8]`, the last one zero-padded;
/// with the bias, kept on the host too.
#[derive(Debug, Clone)]
pub struct PackedWeight {
    k: usize,
    n: usize,
    panels: Arc<[f32]>,
    bias: Option<Arc<[f32]>>,
}

impl PackedWeight {
    /// A `[k, n]` matrix given by `value(row, col)`, without a bias: the attention's keys
    /// (`[hd, n_k]`, a head's columns of the key rows) and values (`[n_k, hd]`).
    fn from_fn(k: usize, n: usize, value: impl Fn(usize, usize) -> f32) -> Self {
        let mut panels = vec![0f32; n.div_ceil(PANEL) * k * PANEL];
        if k > 0 {
            for (p, panel) in panels.chunks_exact_mut(k * PANEL).enumerate() {
                for (kk, row) in panel.chunks_exact_mut(PANEL).enumerate() {
                    for (c, slot) in row.iter_mut().enumerate().take(n - p * PANEL) {
                        *slot = value(kk, p * PANEL + c);
                    }
                }
            }
        }
        PackedWeight { k, n, panels: panels.into(), bias: None }
    }

    /// From PyTorch's `[out, in]` = `[n, k]` layout (`values`), and a bias of `n`.
    pub fn from_out_in(values: &[f32], n: usize, k: usize, bias: Option<Vec<f32>>) -> Self {
        assert_eq!(values.len(), n * k, "a [{n}, {k}] weight");
        let count = n.div_ceil(PANEL);
        let mut panels = vec![0f32; count * k * PANEL];
        // A layer with no inputs (a config with a zero size, which the loader reports) has
        // nothing to pack; `chunks_exact` takes no zero.
        if k > 0 {
            for (col, row) in values.chunks_exact(k).enumerate() {
                let panel = &mut panels[(col / PANEL) * k * PANEL..][..k * PANEL];
                for (kk, &v) in row.iter().enumerate() {
                    panel[kk * PANEL + col % PANEL] = v;
                }
            }
        }
        PackedWeight { k, n, panels: panels.into(), bias: bias.map(Into::into) }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        (self.panels.len() + self.bias.as_ref().map_or(0, |b| b.len())) * size_of::<f32>()
    }

    /// `x [m, k] -> x W + bias [m, n]`, row-major.
    pub fn matmul(&self, x: &[f32], m: usize) -> Vec<f32> {
        let (k, n) = (self.k, self.n);
        assert_eq!(x.len(), m * k, "[{m}, {k}] rows");
        let mut out = match &self.bias {
            Some(bias) if n > 0 => bias.repeat(m),
            _ => vec![0f32; m * n],
        };
        self.accumulate(x, k, m, &mut out, n);
        out
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
        for k0 in (0..k).step_by(DEPTH) {
            let depth = k0..(k0 + DEPTH).min(k);
            for (p, panel) in self.panels.chunks_exact(k * PANEL).enumerate() {
                let cols = PANEL.min(n - p * PANEL);
                let mut r = 0;
                while r + ROWS <= m {
                    let (x, out) = (&x[r * x_stride..], &mut out[r * out_stride + p * PANEL..]);
                    tile::<ROWS>(x, x_stride, depth.clone(), panel, out, out_stride, cols);
                    r += ROWS;
                }
                for r in r..m {
                    let (x, out) = (&x[r * x_stride..], &mut out[r * out_stride + p * PANEL..]);
                    tile::<1>(x, x_stride, depth.clone(), panel, out, out_stride, cols);
                }
            }
        }
    }
}

/// Multi-head attention on the host, without a mask: `q [b, n_q, d]`, `k` and `v` `[b, n_k, d]`,
/// `d = heads * hd`, row-major with the heads side by side in each row (as the projections give
/// them) -> `softmax(q kᵀ / √hd) v`, `[b, n_q, d]`, heads side by side again.
/// Per head, the keys and values are packed (a few KB: cheap next to the products) and
/// both products run on the packed kernel, reading the head's columns in place; the scores of
/// one head at a time are held.
pub fn attention(q: &[f32], k: &[f32], v: &[f32], [b, n_q, n_k, d]: [usize; 4], heads: usize) -> Vec<f32> {
    let hd = if heads > 0 { d / heads } else { 0 };
    assert!(q.len() == b * n_q * d && k.len() == b * n_k * d && v.len() == k.len() && hd * heads == d);
    let mut out = vec![0f32; b * n_q * d];
    if n_q == 0 || n_k == 0 || hd == 0 {
        return out;
    }
    let scale = (hd as f32).powf(-0.5);
    let mut scores = vec![0f32; n_q * n_k];
    for bi in 0..b {
        let (q, k, v) = (&q[bi * n_q * d..][..n_q * d], &k[bi * n_k * d..][..n_k * d], &v[bi * n_k * d..][..n_k * d]);
        let out = &mut out[bi * n_q * d..][..n_q * d];
        for h in (0..d).step_by(hd) {
            let keys = PackedWeight::from_fn(hd, n_k, |kk, key| k[key * d + h + kk]);
            scores.fill(0.0);
            keys.accumulate(&q[h..], d, n_q, &mut scores, n_k);
            scores.chunks_exact_mut(n_k).for_each(|row| super::host::softmax_row(row, scale));
            let values = PackedWeight::from_fn(n_k, hd, |key, c| v[key * d + h + c]);
            values.accumulate(&scores, n_k, n_q, &mut out[h..], d);
        }
    }
    out
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
/// leaves such loops rolled and the accumulators in memory.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
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
    use core::arch::wasm32::*;
    // The raw reads below stay inside these bounds.
    assert!(R == 1 || R == 4);
    assert!(panel.len() >= depth.end * PANEL && x.len() >= (R - 1) * k + depth.end);
    assert!(out.len() >= (R - 1) * n + cols && cols <= PANEL);
    let (xp, pp) = (x.as_ptr(), panel.as_ptr());
    let zero = f32x4_splat(0.0);
    let (mut c00, mut c01, mut c10, mut c11, mut c20, mut c21, mut c30, mut c31) =
        (zero, zero, zero, zero, zero, zero, zero, zero);
    // SAFETY (every raw read): in bounds by the asserts; WebAssembly's loads need no alignment.
    if R == 4 {
        for kk in depth {
            let (b0, b1) =
                unsafe { (v128_load(pp.add(kk * PANEL) as *const v128), v128_load(pp.add(kk * PANEL + 4) as *const v128)) };
            let a = unsafe { v128_load32_splat(xp.add(kk) as *const u32) };
            c00 = f32x4_add(c00, f32x4_mul(a, b0));
            c01 = f32x4_add(c01, f32x4_mul(a, b1));
            let a = unsafe { v128_load32_splat(xp.add(k + kk) as *const u32) };
            c10 = f32x4_add(c10, f32x4_mul(a, b0));
            c11 = f32x4_add(c11, f32x4_mul(a, b1));
            let a = unsafe { v128_load32_splat(xp.add(2 * k + kk) as *const u32) };
            c20 = f32x4_add(c20, f32x4_mul(a, b0));
            c21 = f32x4_add(c21, f32x4_mul(a, b1));
            let a = unsafe { v128_load32_splat(xp.add(3 * k + kk) as *const u32) };
            c30 = f32x4_add(c30, f32x4_mul(a, b0));
            c31 = f32x4_add(c31, f32x4_mul(a, b1));
        }
    } else {
        for kk in depth {
            let (b0, b1) =
                unsafe { (v128_load(pp.add(kk * PANEL) as *const v128), v128_load(pp.add(kk * PANEL + 4) as *const v128)) };
            let a = unsafe { v128_load32_splat(xp.add(kk) as *const u32) };
            c00 = f32x4_add(c00, f32x4_mul(a, b0));
            c01 = f32x4_add(c01, f32x4_mul(a, b1));
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Against a direct f64 computation, with several heads, a batch of two, fewer keys than
    /// queries and sizes that leave partial panels and row tiles.
    #[test]
    fn host_attention_matches_the_definition() {
        for ([b, n_q, n_k], heads, hd) in [([2, 7, 5], 3, 4), ([1, 9, 13], 2, 10), ([1, 1, 1], 1, 1), ([2, 0, 3], 2, 2)] {
            let d = heads * hd;
            let (q, k, v) = (values(b * n_q * d, 0.31), values(b * n_k * d, 0.53), values(b * n_k * d, 0.97));
            let got = attention(&q, &k, &v, [b, n_q, n_k, d], heads);
            assert_eq!(got.len(), b * n_q * d);
            for (bi, i, h) in (0..b).flat_map(|bi| (0..n_q).flat_map(move |i| (0..heads).map(move |h| (bi, i, h)))) {
                let row = |m: &[f32], n: usize, j: usize| m[(bi * n + j) * d + h * hd..][..hd].to_vec();
                let qi = row(&q, n_q, i);
                let logits: Vec<f64> = (0..n_k)
                    .map(|j| row(&k, n_k, j).iter().zip(&qi).map(|(&a, &b)| a as f64 * b as f64).sum::<f64>() / (hd as f64).sqrt())
                    .collect();
                let max = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let weights: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
                let total: f64 = weights.iter().sum();
                for c in 0..hd {
                    let want: f64 = (0..n_k).map(|j| weights[j] / total * row(&v, n_k, j)[c] as f64).sum();
                    let g = got[(bi * n_q + i) * d + h * hd + c] as f64;
                    assert!((g - want).abs() <= 1e-5 * (1.0 + want.abs()), "b {bi} query {i} head {h} col {c}: {g} vs {want}");
                }
            }
        }
    }

    fn values(len: usize, seed: f32) -> Vec<f32> {
        (0..len).map(|i| ((i as f32 * seed).sin() * 1000.0).fract()).collect()
    }

    /// Sizes with partial panels, partial row tiles and several depth passes, and no inputs.
    #[test]
    fn packed_product_matches_the_plain_one() {
        for (m, k, n, bias) in [(7, 600, 19, true), (4, 8, 8, false), (1, 3, 1, true), (9, 257, 16, false), (2, 0, 3, true)] {
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
}
