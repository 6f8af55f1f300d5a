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
            Some(bias) => bias.iter().copied().cycle().take(m * n).collect(),
            None => vec![0f32; m * n],
        };
        if k == 0 {
            return out;
        }
        for k0 in (0..k).step_by(DEPTH) {
            let depth = k0..(k0 + DEPTH).min(k);
            for (p, panel) in self.panels.chunks_exact(k * PANEL).enumerate() {
                let cols = PANEL.min(n - p * PANEL);
                let mut r = 0;
                while r + ROWS <= m {
                    tile::<ROWS>(&x[r * k..], k, depth.clone(), panel, &mut out[r * n + p * PANEL..], n, cols);
                    r += ROWS;
                }
                for r in r..m {
                    tile::<1>(&x[r * k..], k, depth.clone(), panel, &mut out[r * n + p * PANEL..], n, cols);
                }
            }
        }
        out
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
