//! Element-wise kernels run on the host for burn's `flex` CPU backend. Its `sigmoid` and its
//! attention's softmax call the scalar `expf` once per element (in WebAssembly a software `expf` at ~15 ns a call): that was
//! 8 % of CLIP's image tower in the browser's CPU fallback. Here `exp` is branch-free: natively
//! the compiler vectorises the loop, and the web build (optimised for size, which stops the
//! loop vectoriser) runs it written in SIMD128 four lanes at a time.
//!
//! Each kernel takes the tensor and gives it back unchanged as `Err` on any other device (the
//! GPU, or a tensor that records its graph for training), where the caller uses tensor ops.
// The `Err` is the caller's own tensor handed back, not an error value worth boxing.
#![allow(clippy::result_large_err)]

use burn::tensor::{DType, Device, Tensor};

/// `x * sigmoid(1.702 x)` (CLIP's quick GELU) in one pass over the host values.
pub fn quick_gelu<const D: usize>(x: Tensor<D>) -> Result<Tensor<D>, Tensor<D>> {
    map_in_place(x, 1, quick_gelu_slice)
}

/// `x * sigmoid(1.702 x) = x / (1 + e^(-1.702 x))` on every value.
pub(in crate::nn) fn quick_gelu_slice(values: &mut [f32]) {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    let values = simd128::quick_gelu(values);
    #[cfg(target_arch = "x86_64")]
    if crate::device::avx512() {
        // SAFETY: the processor has AVX-512 (checked).
        return unsafe { avx512::quick_gelu(values) };
    }
    quick_gelu_plain(values)
}

#[inline(always)]
fn quick_gelu_plain(values: &mut [f32]) {
    for v in values {
        *v /= 1.0 + exp(-1.702 * *v);
    }
}

/// Softmax over the last axis of `scale * x` (`scale > 0`), a row at a time in one buffer.
pub fn softmax<const D: usize>(x: Tensor<D>, scale: f32) -> Result<Tensor<D>, Tensor<D>> {
    let n = x.dims()[D - 1];
    if n == 0 {
        return Err(x);
    }
    map_in_place(x, n, |values| values.chunks_exact_mut(n).for_each(|row| softmax_row(row, scale)))
}

/// `e^(scale (x - max)) / sum` along one row; a row of `-inf` (all masked) becomes zeros, as in
/// the backends' fused attention.
pub(super) fn softmax_row(row: &mut [f32], scale: f32) {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return simd128::softmax_row(row, scale);
    #[cfg(target_arch = "x86_64")]
    if crate::device::avx512() {
        // SAFETY: the processor has AVX-512 (checked).
        return unsafe { avx512::softmax_row(row, scale) };
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    softmax_row_plain(row, scale)
}

#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
#[inline(always)]
fn softmax_row_plain(row: &mut [f32], scale: f32) {
    // Eight running maxima and sums, so that the loops vectorise without reassociating.
    const LANES: usize = 8;
    let (groups, rest) = row.as_chunks::<LANES>();
    let mut lanes = [f32::NEG_INFINITY; LANES];
    for group in groups {
        for (m, &v) in lanes.iter_mut().zip(group) {
            *m = if v > *m { v } else { *m };
        }
    }
    let max = lanes.into_iter().chain(rest.iter().copied()).fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        row.fill(0.0);
        return;
    }
    let shift = -scale * max;
    let (groups, rest) = row.as_chunks_mut::<LANES>();
    let mut sums = [0f32; LANES];
    for group in groups {
        for (s, v) in sums.iter_mut().zip(group) {
            *v = exp(*v * scale + shift);
            *s += *v;
        }
    }
    let mut sum: f32 = sums.iter().sum();
    for v in rest {
        *v = exp(*v * scale + shift);
        sum += *v;
    }
    let inv = 1.0 / sum;
    row.iter_mut().for_each(|v| *v *= inv);
}

/// `f` applied to every element of a `flex` tensor, in its own buffer when the tensor holds it
/// alone (as it does after the op that made it), else on a copy. Large tensors are cut into
/// pieces of whole rows (`grain` values each) spread over the threads where the build has them.
fn map_in_place<const D: usize>(
    x: Tensor<D>,
    grain: usize,
    f: impl Fn(&mut [f32]) + Sync,
) -> Result<Tensor<D>, Tensor<D>> {
    let device = x.device();
    if !runs_here(&device) || x.dtype() != DType::F32 {
        return Err(x);
    }
    // `flex` reads back at once (its future is ready when made), in the browser too.
    let mut data = x.into_data();
    match data.as_mut_slice::<f32>() {
        Ok(values) => for_row_pieces(values, grain, PIECE_VALUES, |_, piece| f(piece)),
        Err(_) => return Err(Tensor::from_data(data, &device)),
    }
    Ok(Tensor::from_data(data, &device))
}

/// The fewest values in a piece of an element-wise kernel handed to another thread.
const PIECE_VALUES: usize = 1 << 15;

/// `f(first, piece)` on `values` cut into one piece of whole rows (`row` values each) per
/// thread, each piece at least `min_values` values, where the build has threads: natively, and
/// the web build made with `threads` (rayon over Web Workers); on the whole at once elsewhere,
/// or when there is too little work to share. `first` is the piece's first row; pieces start at
/// a multiple of 4 rows (the packed product's row tile).
pub(super) fn for_row_pieces(values: &mut [f32], row: usize, min_values: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    #[cfg(any(not(target_family = "wasm"), feature = "threads"))]
    if let Some(rows) = values.len().checked_div(row) {
        let pieces = rayon::current_num_threads().min(values.len() / min_values.max(1)).min(rows);
        if pieces > 1 {
            use rayon::prelude::*;
            let per = rows.div_ceil(pieces).next_multiple_of(4);
            values.par_chunks_mut(per * row).enumerate().for_each(|(i, piece)| f(i * per, piece));
            return;
        }
    }
    let _ = (row, min_values);
    f(0, values)
}

/// Whether tensors on `device` take the host kernels: `flex`, without autodiff.
pub fn runs_here(device: &Device) -> bool {
    on_flex(device) && !device.is_autodiff()
}

#[cfg(feature = "cpu")]
fn on_flex(device: &Device) -> bool {
    *device == Device::flex()
}

#[cfg(not(feature = "cpu"))]
fn on_flex(_: &Device) -> bool {
    false
}

/// `e^x` within 2 ulp of `f32::exp` on `[-87, 88]` (Cephes' `expf`: `x = n ln2 + r`, a degree-7
/// polynomial in `r`, `2^n` put into the exponent bits), and without branches. Inputs are
/// clamped to that range: below it the result is ~1e-38 instead of a subnormal, above it ~1e38
/// instead of infinity.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(EXP_MIN, EXP_MAX);
    let shifted = x * LOG2E + ROUND;
    let n = shifted - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = EXP_POLY[1..].iter().fold(EXP_POLY[0], |p, &c| p * r + c);
    let p = p * r * r + r + 1.0;
    let n = shifted.to_bits().wrapping_sub(ROUND.to_bits()) as i32;
    p * f32::from_bits(((n + 127) as u32) << 23)
}

/// The scalar loops above compiled for AVX-512 (natively on x86-64 processors that have it):
/// sixteen lanes where the baseline build vectorises them four at a time.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    /// # Safety
    /// The processor must have AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn quick_gelu(values: &mut [f32]) {
        super::quick_gelu_plain(values)
    }

    /// # Safety
    /// The processor must have AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn softmax_row(row: &mut [f32], scale: f32) {
        super::softmax_row_plain(row, scale)
    }
}

const EXP_MIN: f32 = -87.0;
const EXP_MAX: f32 = 88.0;
const LOG2E: f32 = std::f32::consts::LOG2_E;
/// ln 2 split in two so that `n * LN2_HI` is exact for the n that occur.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// 1.5 * 2^23: adding it rounds to an integer, which then sits in the low mantissa bits.
const ROUND: f32 = 12_582_912.0;
/// Cephes' minimax coefficients for `(e^r - 1 - r) / r^2` on `[-ln2/2, ln2/2]`, highest first.
#[allow(clippy::excessive_precision)] // as Cephes writes them
const EXP_POLY: [f32; 6] =
    [1.987_569_2e-4, 1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 5.000_000_1e-1];

/// The same kernels four lanes at a time in WebAssembly's SIMD128, step for step as the scalar
/// code above. The unit tests below run natively, on the scalar code; this one is checked in the
/// browser, where the peer benchmark's smoke run compares the CPU fallback's image embedding of
/// a quick-GELU CLIP with PyTorch's (`tools/peer_bench.mjs --smoke`, in `./build.sh test`).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd128 {
    use core::arch::wasm32::*;

    use super::{EXP_MAX, EXP_MIN, EXP_POLY, LN2_HI, LN2_LO, LOG2E, ROUND};

    #[inline(always)]
    fn exp(x: v128) -> v128 {
        let x = f32x4_pmax(f32x4_pmin(x, f32x4_splat(EXP_MAX)), f32x4_splat(EXP_MIN));
        let shifted = f32x4_add(f32x4_mul(x, f32x4_splat(LOG2E)), f32x4_splat(ROUND));
        let n = f32x4_sub(shifted, f32x4_splat(ROUND));
        let r = f32x4_sub(f32x4_sub(x, f32x4_mul(n, f32x4_splat(LN2_HI))), f32x4_mul(n, f32x4_splat(LN2_LO)));
        let mut p = f32x4_splat(EXP_POLY[0]);
        for &c in &EXP_POLY[1..] {
            p = f32x4_add(f32x4_mul(p, r), f32x4_splat(c));
        }
        let p = f32x4_add(f32x4_add(f32x4_mul(f32x4_mul(p, r), r), r), f32x4_splat(1.0));
        let n = i32x4_sub(shifted, i32x4_splat(ROUND.to_bits() as i32));
        f32x4_mul(p, i32x4_shl(i32x4_add(n, i32x4_splat(127)), 23))
    }

    /// Quick GELU on the whole groups of four; returns the values left over.
    pub fn quick_gelu(values: &mut [f32]) -> &mut [f32] {
        let (groups, rest) = values.as_chunks_mut::<4>();
        for group in groups {
            let ptr = group.as_mut_ptr() as *mut v128;
            // SAFETY: `group` is 16 valid, exclusively borrowed bytes; WebAssembly's vector
            // loads and stores need no alignment.
            let x = unsafe { v128_load(ptr) };
            let y = f32x4_div(x, f32x4_add(f32x4_splat(1.0), exp(f32x4_mul(x, f32x4_splat(-1.702)))));
            unsafe { v128_store(ptr, y) };
        }
        rest
    }

    /// [`super::softmax_row`] on whole groups of four, the leftovers through the scalar `exp`.
    pub fn softmax_row(row: &mut [f32], scale: f32) {
        let (groups, rest) = row.as_chunks_mut::<4>();
        let mut lanes = f32x4_splat(f32::NEG_INFINITY);
        for group in groups.iter() {
            // SAFETY: as in `quick_gelu`.
            lanes = f32x4_pmax(lanes, unsafe { v128_load(group.as_ptr() as *const v128) });
        }
        let max = [
            f32x4_extract_lane::<0>(lanes),
            f32x4_extract_lane::<1>(lanes),
            f32x4_extract_lane::<2>(lanes),
            f32x4_extract_lane::<3>(lanes),
        ]
        .into_iter()
        .chain(rest.iter().copied())
        .fold(f32::NEG_INFINITY, f32::max);
        if max == f32::NEG_INFINITY {
            row.fill(0.0);
            return;
        }
        let shift = -scale * max;
        let (scale4, shift4) = (f32x4_splat(scale), f32x4_splat(shift));
        let mut sums = f32x4_splat(0.0);
        for group in groups.iter_mut() {
            let ptr = group.as_mut_ptr() as *mut v128;
            // SAFETY: as in `quick_gelu`.
            let e = exp(f32x4_add(f32x4_mul(unsafe { v128_load(ptr) }, scale4), shift4));
            unsafe { v128_store(ptr, e) };
            sums = f32x4_add(sums, e);
        }
        let mut sum = f32x4_extract_lane::<0>(sums)
            + f32x4_extract_lane::<1>(sums)
            + f32x4_extract_lane::<2>(sums)
            + f32x4_extract_lane::<3>(sums);
        for v in rest.iter_mut() {
            *v = super::exp(*v * scale + shift);
            sum += *v;
        }
        let inv = f32x4_splat(1.0 / sum);
        for group in groups.iter_mut() {
            let ptr = group.as_mut_ptr() as *mut v128;
            // SAFETY: as in `quick_gelu`.
            unsafe { v128_store(ptr, f32x4_mul(v128_load(ptr), inv)) };
        }
        for v in rest.iter_mut() {
            *v *= 1.0 / sum;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two units in the last place: Cephes' bound for its `expf` is ~1 ulp; our clamped range
    /// reduction adds at most one more.
    const EXP_ULPS: f32 = 2.0 * f32::EPSILON;

    #[test]
    fn exp_matches_the_library_across_its_range() {
        let mut worst = 0f32;
        let mut at = 0f32;
        for i in 0..=200_000 {
            let x = -87.0 + 175.0 * i as f32 / 200_000.0;
            let want = (x as f64).exp() as f32;
            let rel = ((exp(x) - want) / want).abs();
            if rel > worst {
                worst = rel;
                at = x;
            }
        }
        assert!(worst <= EXP_ULPS, "exp({at}) is off by {worst:e} relative (allowed {EXP_ULPS:e})");
    }

    #[test]
    fn exp_clamps_instead_of_overflowing() {
        assert!(exp(1000.0).is_finite() && exp(1000.0) > 1e38);
        assert!(exp(-1000.0) >= 0.0 && exp(-1000.0) < 1e-37);
        assert_eq!(exp(0.0), 1.0);
    }

    #[cfg(feature = "cpu")]
    #[test]
    fn quick_gelu_on_the_host_matches_tensor_ops() {
        use burn::tensor::Distribution;
        use burn::tensor::activation::sigmoid;
        let device = Device::flex();
        // Small, and large enough to be cut into pieces over the cores natively.
        for shape in [[2, 7, 33], [3, 301, 97]] {
            let x = Tensor::<3>::random(shape, Distribution::Normal(0.0, 4.0), &device);
            let want = crate::nn::host_read(x.clone().mul(sigmoid(x.clone().mul_scalar(1.702)))).unwrap();
            let got = crate::nn::host_read(quick_gelu(x).expect("a flex tensor runs on the host")).unwrap();
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!((g - w).abs() <= 1e-6 * w.abs().max(1.0), "{shape:?} element {i}: host {g}, tensor ops {w}");
            }
        }
    }

    #[cfg(feature = "cpu")]
    #[test]
    fn softmax_on_the_host_matches_tensor_ops() {
        use burn::tensor::Distribution;
        use burn::tensor::activation::softmax as reference;
        let device = Device::flex();
        // Rows of 37: whole groups of eight and four plus leftovers; one row fully masked. The
        // second size is cut into pieces over the cores natively, which must keep rows whole.
        for rows in [5, 601] {
            let x = Tensor::<3>::random([3, rows, 37], Distribution::Normal(0.0, 3.0), &device);
            let masked = Tensor::<3>::full([1, 1, 37], f32::NEG_INFINITY, &device);
            let x = x.slice_assign([1..2, 4..5, 0..37], masked);
            let scale = 0.125;
            let mut want = crate::nn::host_read(reference(x.clone().mul_scalar(scale), 2)).unwrap();
            want[(rows + 4) * 37..(rows + 5) * 37].fill(0.0);
            let got = crate::nn::host_read(softmax(x, scale).expect("a flex tensor runs on the host")).unwrap();
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!((g - w).abs() <= 1e-6, "{rows} rows, element {i}: host {g}, tensor ops {w}");
            }
        }
    }

    #[cfg(all(feature = "cpu", not(target_family = "wasm")))]
    #[test]
    fn a_tensor_that_records_its_graph_is_given_back() {
        let device = Device::flex().autodiff();
        let x = Tensor::<2>::ones([2, 3], &device);
        assert!(quick_gelu(x).is_err());
    }
}
