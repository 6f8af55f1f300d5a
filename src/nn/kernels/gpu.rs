//! The transformer block's kernels for the GPU backend (wgpu: WebGPU in the browser, Vulkan,
//! Metal or DX12 natively), written for it rather than composed from burn's ops.
//!
//! burn's matrix product on an adapter without cooperative matrices (WebGPU's) stages tiles
//! through workgroup memory between barriers. On a software adapter (SwiftShader, llvmpipe)
//! a barrier suspends and resumes every invocation of the workgroup: in Chromium on
//! SwiftShader, a product staged that way ran at 0.2 GFLOP/s on ViT shapes, one that keeps its
//! block in registers at 1.0-1.3 GFLOP/s (hand-written WGSL, side by side). Here each invocation computes a
//! block of `ROWS` rows by `COLS` four-wide column groups in registers, reading the left
//! operand a scalar at a time and the right one four columns at a time; no workgroup memory,
//! no barriers. The bias, quick GELU and the residual add run in the product's epilogue, a
//! layer norm is one pass per row, and attention reads its heads in place and writes them
//! straight into the merged layout, so a pre-norm block is nine dispatches, where burn's ops
//! take several for each layer norm, linear layer and activation and copy the heads apart.
//!
//! Operands are addressed by offsets and strides, so that a head of a `[n, d]` projection is
//! read in place: `index = offset + outer * stride_outer + inner * stride_inner + row * row_stride
//! + column`, where the batch index `z` is split as `outer = z / inner_count`,
//! `inner = z % inner_count` (images and heads).

use burn::backend::{Backend, backend_extension, tensor::FloatTensor};
use burn::tensor::{DType, Device, Tensor};
use burn_cubecl::CubeBackend;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::tensor::CubeTensor;
use cubecl::ir::{ElemType, FloatKind};
use cubecl::prelude::{CubeCount, CubeDim, SequenceArg};
use kernels::{layer_norm_kernel, product_kernel, scores_kernel, softmax_kernel};

/// Rows per invocation of the product.
const ROWS: usize = 4;
/// Four-wide column groups per invocation of the product.
const COLS: usize = 2;
/// Invocations of a workgroup along the columns and the rows.
const GROUP: (u32, u32) = (16, 4);
/// Invocations of a workgroup of the row-wise kernels (layer norm, softmax), one row each.
const NORM_GROUP: u32 = 64;

/// Where an operand's elements are: `offset + outer * outer_stride + inner * inner_stride +
/// row * row_stride + column`, in elements.
#[derive(Debug, Clone, Copy, Default)]
pub struct Layout {
    pub offset: usize,
    pub outer_stride: usize,
    pub inner_stride: usize,
    pub row_stride: usize,
}

impl Layout {
    /// Rows of `width` elements one after another, `rows` of them per batch entry.
    pub fn rows(width: usize, rows: usize) -> Self {
        Layout { offset: 0, outer_stride: width * rows, inner_stride: 0, row_stride: width }
    }
}

/// A batched product `out[z] = a[z] · b[z]` of `[m, k] x [k, n]` for `z < outer * inner`.
#[derive(Debug, Clone, Copy)]
pub struct Product {
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub outer: usize,
    pub inner: usize,
    pub a: Layout,
    pub b: Layout,
    pub out: Layout,
    /// Multiplies the product (before the bias).
    pub scale: f32,
    /// `x * sigmoid(1.702 x)` on the result (after the bias, before the residual).
    pub quick_gelu: bool,
}

/// The block's kernels on the cubecl backend; the other backends keep burn's ops.
#[backend_extension(Cube: cfg(feature = "wgpu"))]
pub trait BlockKernels: Backend {
    /// `quick_gelu?(scale * a · b + bias?) + residual?` into a fresh tensor of `outer * inner * m *
    /// n` elements, laid out as `spec.product.out` says (`[outer * inner * m, n]` rows, or
    /// heads side by side); `bias` `[n]` and `residual` (laid out as the output) are read
    /// where `spec` says so, and stand-ins otherwise.
    fn product(
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        residual: FloatTensor<Self>,
        spec: ProductCall,
    ) -> FloatTensor<Self>;

    /// Layer norm over rows of `width`.
    fn layer_norm(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        eps: f32,
    ) -> FloatTensor<Self>;

    /// Softmax of `scale * (q_i · k_j) (+ mask_ij)` over `j`, per head: `[outer * inner, m, n]`
    /// weights, `n` padded to whole vectors (with zero weights). `mask` `[m, n]` is read where
    /// `spec.residual` says there is one.
    fn attention_weights(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        mask: FloatTensor<Self>,
        spec: ProductCall,
    ) -> FloatTensor<Self>;
}

/// A [`Product`] with what its epilogue reads.
#[derive(Debug, Clone, Copy)]
pub struct ProductCall {
    pub product: Product,
    /// The product adds `bias`.
    pub bias: bool,
    /// The product adds `residual`; the attention scores add `mask`.
    pub residual: bool,
}

/// The kernels, in cubecl (compiled to WGSL, SPIR-V or MSL at run time). They read and write
/// the tensors' own float type `F` (f32, or f16 where the device computes in half precision)
/// and accumulate, normalise and exponentiate in f32.
mod kernels {
    use cubecl::prelude::*;

    #[cube(launch_unchecked)]
    pub fn product_kernel<F: Float, N: Size>(
        a: &Tensor<F>,
        b: &Tensor<Vector<F, N>>,
        bias: &Tensor<Vector<F, N>>,
        residual: &Tensor<Vector<F, N>>,
        out: &mut Tensor<Vector<F, N>>,
        sizes: Sequence<usize>,
        scale: f32,
        #[comptime] rows: usize,
        #[comptime] cols: usize,
        #[comptime] has_bias: bool,
        #[comptime] has_residual: bool,
        #[comptime] quick_gelu: bool,
        #[define(F)] _dtype: ElemType,
    ) {
        // sizes: m, k, n4, inner, then (offset, outer, inner, row) strides for a, b (in vectors)
        // and out (in vectors).
        let m = sizes[0];
        let k = sizes[1];
        let n4 = sizes[2];
        let inner_count = sizes[3];
        let col = ABSOLUTE_POS_X as usize * cols;
        let row = ABSOLUTE_POS_Y as usize * rows;
        if col >= n4 || row >= m {
            terminate!();
        }
        let z = ABSOLUTE_POS_Z as usize;
        let outer = z / inner_count;
        let inner = z % inner_count;
        let a_base = sizes[4] + outer * sizes[5] + inner * sizes[6];
        let a_row = sizes[7];
        let b_base = sizes[8] + outer * sizes[9] + inner * sizes[10] + col;
        let b_row = sizes[11];
        let o_base = sizes[12] + outer * sizes[13] + inner * sizes[14] + col;
        let o_row = sizes[15];

        let mut acc = Array::<Vector<f32, N>>::new(comptime!(rows * cols));
        #[unroll]
        for i in 0..rows * cols {
            acc[i] = Vector::cast_from(0.0f32);
        }
        // Rows past the end read the last row (their results are not written).
        let mut a_rows = Array::<usize>::new(rows);
        #[unroll]
        for i in 0..rows {
            a_rows[i] = a_base + (row + i).min(m - 1) * a_row;
        }
        for kk in 0..k {
            let mut bs = Array::<Vector<f32, N>>::new(cols);
            #[unroll]
            for j in 0..cols {
                bs[j] = Vector::cast_from(b[b_base + kk * b_row + j]);
            }
            #[unroll]
            for i in 0..rows {
                let av = Vector::<f32, N>::cast_from(f32::cast_from(a[a_rows[i] + kk]));
                #[unroll]
                for j in 0..cols {
                    acc[i * cols + j] = fma(av, bs[j], acc[i * cols + j]);
                }
            }
        }
        #[unroll]
        for i in 0..rows {
            if row + i < m {
                #[unroll]
                for j in 0..cols {
                    if col + j < n4 {
                        let mut v = acc[i * cols + j] * Vector::cast_from(scale);
                        if comptime!(has_bias) {
                            v += Vector::cast_from(bias[col + j]);
                        }
                        if comptime!(quick_gelu) {
                            v = v / (Vector::cast_from(1.0f32) + Vector::exp(v * Vector::cast_from(-1.702f32)));
                        }
                        let at = o_base + (row + i) * o_row + j;
                        if comptime!(has_residual) {
                            v += Vector::cast_from(residual[at]);
                        }
                        out[at] = Vector::cast_from(v);
                    }
                }
            }
        }
    }

    /// `out[z][i][j] = scale * q[z][i] · k[z][j] (+ mask[i][j])` for keys `j < n`, four keys to
    /// a vector; the row is padded to whole vectors with a very negative score (zero weight
    /// after the softmax). The scores are f32 whatever `F` is.
    #[cube(launch_unchecked)]
    pub fn scores_kernel<F: Float, N: Size>(
        q: &Tensor<Vector<F, N>>,
        k: &Tensor<Vector<F, N>>,
        mask: &Tensor<F>,
        out: &mut Tensor<Vector<f32, N>>,
        sizes: Sequence<usize>,
        scale: f32,
        #[comptime] rows: usize,
        #[comptime] has_mask: bool,
        #[define(F)] _dtype: ElemType,
    ) {
        // sizes: m, n, depth (vectors), inner, then (offset, outer, inner, row) for q, k (vectors),
        // and the output's row length in vectors.
        let m = sizes[0];
        let n = sizes[1];
        let depth = sizes[2];
        let inner_count = sizes[3];
        let n4 = sizes[12];
        let col = ABSOLUTE_POS_X as usize;
        let row = ABSOLUTE_POS_Y as usize * rows;
        if col >= n4 || row >= m {
            terminate!();
        }
        let z = ABSOLUTE_POS_Z as usize;
        let outer = z / inner_count;
        let inner = z % inner_count;
        let q_base = sizes[4] + outer * sizes[5] + inner * sizes[6];
        let q_row = sizes[7];
        let k_base = sizes[8] + outer * sizes[9] + inner * sizes[10];
        let k_row = sizes[11];

        let mut q_rows = Array::<usize>::new(rows);
        #[unroll]
        for i in 0..rows {
            q_rows[i] = q_base + (row + i).min(m - 1) * q_row;
        }
        let mut k_rows = Array::<usize>::new(4usize);
        #[unroll]
        for j in 0..4 {
            k_rows[j] = k_base + (col * 4 + j).min(n - 1) * k_row;
        }
        let mut acc = Array::<Vector<f32, N>>::new(comptime!(rows * 4));
        #[unroll]
        for i in 0..rows * 4 {
            acc[i] = Vector::cast_from(0.0f32);
        }
        for d in 0..depth {
            let mut ks = Array::<Vector<f32, N>>::new(4usize);
            #[unroll]
            for j in 0..4 {
                ks[j] = Vector::cast_from(k[k_rows[j] + d]);
            }
            #[unroll]
            for i in 0..rows {
                let qv = Vector::<f32, N>::cast_from(q[q_rows[i] + d]);
                #[unroll]
                for j in 0..4 {
                    acc[i * 4 + j] = fma(qv, ks[j], acc[i * 4 + j]);
                }
            }
        }
        let o_base = z * m * n4 + col;
        #[unroll]
        for i in 0..rows {
            if row + i < m {
                let mut v = Vector::<f32, N>::cast_from(0.0f32);
                #[unroll]
                for j in 0..4 {
                    let mut s = 0.0f32;
                    #[unroll]
                    for l in 0..N::value() {
                        s += acc[i * 4 + j].extract(l);
                    }
                    let key = col * 4 + j;
                    let mut s = if key < n { s * scale } else { -1.0e30f32 };
                    // A hidden key's very negative mask (or f16's -inf) still gives it zero
                    // weight. (`comptime!` must stay a condition of its own.)
                    #[allow(clippy::collapsible_if)]
                    if comptime!(has_mask) {
                        if key < n {
                            s += f32::cast_from(mask[(row + i) * n + key]).max(-1.0e30f32);
                        }
                    }
                    v.insert(j, s);
                }
                out[o_base + (row + i) * n4] = v;
            }
        }
    }

    /// Softmax along rows of `n4` vectors of f32 scores, written as `F`.
    #[cube(launch_unchecked)]
    pub fn softmax_kernel<F: Float, N: Size>(
        x: &Tensor<Vector<f32, N>>,
        out: &mut Tensor<Vector<F, N>>,
        rows: usize,
        n4: usize,
        #[define(F)] _dtype: ElemType,
    ) {
        let row = ABSOLUTE_POS;
        if row >= rows {
            terminate!();
        }
        let base = row * n4;
        let mut high = x[base];
        for j in 1..n4 {
            high = high.max(x[base + j]);
        }
        let mut max = high.extract(0usize);
        #[unroll]
        for l in 1..N::value() {
            max = max.max(high.extract(l));
        }
        let maxv = Vector::<f32, N>::cast_from(max);
        let mut sum = Vector::<f32, N>::cast_from(0.0f32);
        for j in 0..n4 {
            sum += Vector::exp(x[base + j] - maxv);
        }
        let mut total = 0.0f32;
        #[unroll]
        for l in 0..N::value() {
            total += sum.extract(l);
        }
        let inv = Vector::<f32, N>::cast_from(1.0f32 / total);
        for j in 0..n4 {
            out[base + j] = Vector::cast_from(Vector::exp(x[base + j] - maxv) * inv);
        }
    }

    /// Layer norm along rows of `n4` vectors.
    #[cube(launch_unchecked)]
    pub fn layer_norm_kernel<F: Float, N: Size>(
        x: &Tensor<Vector<F, N>>,
        weight: &Tensor<Vector<F, N>>,
        bias: &Tensor<Vector<F, N>>,
        out: &mut Tensor<Vector<F, N>>,
        rows: usize,
        n4: usize,
        eps: f32,
        #[define(F)] _dtype: ElemType,
    ) {
        let row = ABSOLUTE_POS;
        if row >= rows {
            terminate!();
        }
        let base = row * n4;
        let width = (n4 * N::value()) as f32;
        let mut sum = Vector::<f32, N>::cast_from(0.0f32);
        for j in 0..n4 {
            sum += Vector::cast_from(x[base + j]);
        }
        let mut total = 0.0f32;
        #[unroll]
        for l in 0..N::value() {
            total += sum.extract(l);
        }
        let mean = Vector::<f32, N>::cast_from(total / width);
        let mut squares = Vector::<f32, N>::cast_from(0.0f32);
        for j in 0..n4 {
            let c = Vector::<f32, N>::cast_from(x[base + j]) - mean;
            squares += c * c;
        }
        let mut var = 0.0f32;
        #[unroll]
        for l in 0..N::value() {
            var += squares.extract(l);
        }
        let inv = Vector::<f32, N>::cast_from(1.0f32 / f32::sqrt(var / width + eps));
        for j in 0..n4 {
            let c = Vector::<f32, N>::cast_from(x[base + j]) - mean;
            out[base + j] = Vector::cast_from(c * inv * Vector::cast_from(weight[j]) + Vector::cast_from(bias[j]));
        }
    }
}

/// Four lanes: every width the block kernels see (CLIP's widths and head sizes) is a multiple.
const LANES: usize = 4;

fn sequence(values: &[usize]) -> SequenceArg<usize> {
    let mut seq = SequenceArg::<usize>::new();
    for &v in values {
        seq.push(v);
    }
    seq
}

/// The kernels' float type for a tensor's dtype: f32, or f16 where the device computes in half
/// precision (`runs_here` keeps other dtypes on burn's ops).
fn elem(dtype: DType) -> ElemType {
    match dtype {
        DType::F16 => ElemType::Float(FloatKind::F16),
        _ => ElemType::Float(FloatKind::F32),
    }
}

impl BlockKernels for CubeBackend {
    fn product(a: CubeTensor, b: CubeTensor, bias: CubeTensor, residual: CubeTensor, call: ProductCall) -> CubeTensor {
        let p = call.product;
        let (a, b, bias, residual) =
            (into_contiguous(a), into_contiguous(b), into_contiguous(bias), into_contiguous(residual));
        let n4 = p.n / LANES;
        let batches = p.outer * p.inner;
        let dtype = a.dtype;
        let out = empty_device_dtype(a.client.clone(), a.device.clone(), [batches * p.m, p.n].into(), dtype);
        if out.meta.shape().num_elements() == 0 {
            return out;
        }
        let v = |l: Layout| [l.offset / LANES, l.outer_stride / LANES, l.inner_stride / LANES, l.row_stride / LANES];
        let al = p.a;
        let mut sizes = vec![p.m, p.k, n4, p.inner, al.offset, al.outer_stride, al.inner_stride, al.row_stride];
        sizes.extend(v(p.b));
        sizes.extend(v(p.out));
        let dim = CubeDim::new_2d(GROUP.0, GROUP.1);
        let count = CubeCount::Static(
            n4.div_ceil(COLS * GROUP.0 as usize) as u32,
            p.m.div_ceil(ROWS * GROUP.1 as usize) as u32,
            batches as u32,
        );
        unsafe {
            product_kernel::launch_unchecked(
                &a.client,
                count,
                dim,
                LANES,
                a.clone().into_tensor_arg(),
                b.into_tensor_arg(),
                bias.into_tensor_arg(),
                residual.into_tensor_arg(),
                out.clone().into_tensor_arg(),
                sequence(&sizes),
                p.scale,
                ROWS,
                COLS,
                call.bias,
                call.residual,
                p.quick_gelu,
                elem(dtype),
            );
        }
        out
    }

    fn layer_norm(x: CubeTensor, weight: CubeTensor, bias: CubeTensor, eps: f32) -> CubeTensor {
        let x = into_contiguous(x);
        let shape = x.meta.shape().clone();
        let width = shape[shape.len() - 1];
        let rows = shape.num_elements() / width;
        let dtype = x.dtype;
        let out = empty_device_dtype(x.client.clone(), x.device.clone(), shape, dtype);
        if rows == 0 {
            return out;
        }
        let dim = CubeDim::new_1d(NORM_GROUP);
        let count = CubeCount::Static(rows.div_ceil(NORM_GROUP as usize) as u32, 1, 1);
        unsafe {
            layer_norm_kernel::launch_unchecked(
                &x.client,
                count,
                dim,
                LANES,
                x.clone().into_tensor_arg(),
                into_contiguous(weight).into_tensor_arg(),
                into_contiguous(bias).into_tensor_arg(),
                out.clone().into_tensor_arg(),
                rows,
                width / LANES,
                eps,
                elem(dtype),
            );
        }
        out
    }

    fn attention_weights(q: CubeTensor, k: CubeTensor, mask: CubeTensor, call: ProductCall) -> CubeTensor {
        let p = call.product;
        let (q, k, mask) = (into_contiguous(q), into_contiguous(k), into_contiguous(mask));
        let n4 = p.n.div_ceil(LANES);
        let batches = p.outer * p.inner;
        let dtype = q.dtype;
        let shape: burn::tensor::Shape = [batches, p.m, n4 * LANES].into();
        let out = empty_device_dtype(q.client.clone(), q.device.clone(), shape.clone(), dtype);
        if out.meta.shape().num_elements() == 0 {
            return out;
        }
        let scores = empty_device_dtype(q.client.clone(), q.device.clone(), shape, DType::F32);
        let v = |l: Layout| [l.offset / LANES, l.outer_stride / LANES, l.inner_stride / LANES, l.row_stride / LANES];
        let mut sizes = vec![p.m, p.n, p.k / LANES, p.inner];
        sizes.extend(v(p.a));
        sizes.extend(v(p.b));
        sizes.push(n4);
        let dim = CubeDim::new_2d(GROUP.0, GROUP.1);
        let count = CubeCount::Static(
            n4.div_ceil(GROUP.0 as usize) as u32,
            p.m.div_ceil(ROWS * GROUP.1 as usize) as u32,
            batches as u32,
        );
        unsafe {
            scores_kernel::launch_unchecked(
                &q.client,
                count,
                dim,
                LANES,
                q.clone().into_tensor_arg(),
                k.into_tensor_arg(),
                mask.into_tensor_arg(),
                scores.clone().into_tensor_arg(),
                sequence(&sizes),
                p.scale,
                ROWS,
                call.residual,
                elem(dtype),
            );
            let rows = batches * p.m;
            softmax_kernel::launch_unchecked(
                &q.client,
                CubeCount::Static(rows.div_ceil(NORM_GROUP as usize) as u32, 1, 1),
                CubeDim::new_1d(NORM_GROUP),
                LANES,
                scores.into_tensor_arg(),
                out.clone().into_tensor_arg(),
                rows,
                n4,
                elem(dtype),
            );
        }
        out
    }
}

/// Whether tensors on `device` are on the GPU backend and record no graph for training: there
/// the layers run on these kernels (see `Kernel::on`).
pub fn runs_here(device: &Device) -> bool {
    matches!(device.as_dispatch(), burn::backend::DispatchDevice::Cube(_)) && !device.is_autodiff()
}

/// The most workgroups along one dimension of a dispatch that WebGPU guarantees.
const MOST_GROUPS: usize = 65_535;

/// Whether rows of these widths suit the kernels: every width splits into whole vectors, and
/// no dispatch needs more workgroups along the columns than WebGPU guarantees. A layer's
/// widths are known when it is built, so this is asked once, at load.
pub fn widths_fit(widths: &[usize]) -> bool {
    widths.iter().all(|w| *w > 0 && w % LANES == 0 && (w / LANES).div_ceil(COLS * GROUP.0 as usize) <= MOST_GROUPS)
}

/// Whether `rows` rows need no more workgroups along the rows than WebGPU guarantees: the one
/// condition on the input (the callers keep burn's ops otherwise).
pub fn rows_fit(rows: usize) -> bool {
    rows.div_ceil(ROWS * GROUP.1 as usize) <= MOST_GROUPS && rows.div_ceil(NORM_GROUP as usize) <= MOST_GROUPS
}

type Dispatch = burn::backend::Dispatch;

/// `quick_gelu?(x · weight + bias?) + residual?`: `x` `[rows, in]`, `weight` `[in, out]`,
/// `bias` `[out]`, `residual` `[rows, out]`.
pub fn linear(
    x: Tensor<2>,
    weight: Tensor<2>,
    bias: Option<Tensor<1>>,
    residual: Option<Tensor<2>>,
    quick_gelu: bool,
) -> Tensor<2> {
    let ([rows, d_in], d_out) = (x.dims(), weight.dims()[1]);
    let product = Product {
        m: rows,
        k: d_in,
        n: d_out,
        outer: 1,
        inner: 1,
        a: Layout::rows(d_in, rows),
        b: Layout::rows(d_out, d_in),
        out: Layout::rows(d_out, rows),
        scale: 1.0,
        quick_gelu,
    };
    let call = ProductCall { product, bias: bias.is_some(), residual: residual.is_some() };
    let stand_in = || x.clone().into_dispatch();
    let out = <Dispatch as BlockKernels>::product(
        x.clone().into_dispatch(),
        weight.into_dispatch(),
        bias.map_or_else(stand_in, Tensor::into_dispatch),
        residual.map_or_else(stand_in, Tensor::into_dispatch),
        call,
    );
    Tensor::from_dispatch(out)
}

/// Layer norm over the last axis.
pub fn layer_norm<const D: usize>(x: Tensor<D>, weight: Tensor<1>, bias: Tensor<1>, eps: f64) -> Tensor<D> {
    let dims = x.dims();
    let out = <Dispatch as BlockKernels>::layer_norm(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        eps as f32,
    );
    Tensor::<D>::from_dispatch(out).reshape(dims)
}

/// Multi-head attention of `[images * n, width]` queries, keys and values (heads side by side
/// along the width), heads merged: `[images * n, width]`. `mask` `[n, n]` is added to every
/// head's scores (0, or very negative where a key is hidden).
pub fn attention(
    q: Tensor<2>,
    k: Tensor<2>,
    v: Tensor<2>,
    mask: Option<Tensor<2>>,
    images: usize,
    heads: usize,
) -> Tensor<2> {
    let [rows, width] = q.dims();
    let n = rows / images;
    let depth = width / heads;
    let per_head = Layout { offset: 0, outer_stride: n * width, inner_stride: depth, row_stride: width };
    let scores = Product {
        m: n,
        k: depth,
        n,
        outer: images,
        inner: heads,
        a: per_head,
        b: per_head,
        out: Layout::default(),
        scale: (depth as f32).powf(-0.5),
        quick_gelu: false,
    };
    let call = ProductCall { product: scores, bias: false, residual: mask.is_some() };
    let mask = mask.map_or_else(|| q.clone().into_dispatch(), Tensor::into_dispatch);
    let weights = <Dispatch as BlockKernels>::attention_weights(q.into_dispatch(), k.into_dispatch(), mask, call);
    let padded = n.div_ceil(LANES) * LANES;
    let mix = Product {
        m: n,
        k: n,
        n: depth,
        outer: images,
        inner: heads,
        a: Layout { offset: 0, outer_stride: heads * n * padded, inner_stride: n * padded, row_stride: padded },
        b: per_head,
        out: per_head,
        scale: 1.0,
        quick_gelu: false,
    };
    let call = ProductCall { product: mix, bias: false, residual: false };
    let weights_again = weights.clone();
    let out =
        <Dispatch as BlockKernels>::product(weights, v.into_dispatch(), weights_again.clone(), weights_again, call);
    Tensor::<2>::from_dispatch(out).reshape([rows, width])
}

#[cfg(all(test, feature = "cpu"))]
mod tests {
    use burn::tensor::activation::{sigmoid, softmax};
    use burn::tensor::module::layer_norm as burn_layer_norm;
    use burn::tensor::{Device, Distribution, Tensor};

    use crate::Backend;
    use crate::loader::WeightLoader;
    use crate::nn::{Activation, EncoderLayer, TowerDims};

    /// The wgpu device (Mesa's llvmpipe on a machine without a GPU), unless
    /// `WORDMASK_SKIP_WGPU=1` asks to run the CPU half of the tests alone.
    fn gpu() -> Option<Device> {
        if std::env::var("WORDMASK_SKIP_WGPU").as_deref() == Ok("1") {
            return None;
        }
        Some(crate::device::open(Backend::Wgpu).expect("wgpu device (set WORDMASK_SKIP_WGPU=1 to skip)"))
    }

    fn random<const D: usize>(dims: [usize; D]) -> Tensor<D> {
        Tensor::random(dims, Distribution::Normal(0.0, 1.0), &Device::flex())
    }

    /// A copy of a CPU tensor on `device`.
    fn on<const D: usize>(x: &Tensor<D>, device: &Device) -> Tensor<D> {
        Tensor::from_data(x.to_data(), device)
    }

    /// `got` (from the GPU) within `1e-4` of the largest value of `want` (from burn's ops on the
    /// CPU) everywhere.
    fn agree<const D: usize>(got: Tensor<D>, want: Tensor<D>, what: &str) {
        assert_eq!(got.dims(), want.dims(), "{what}: shape");
        let (got, want) = (crate::nn::host_read(got).unwrap(), crate::nn::host_read(want).unwrap());
        let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!((g - w).abs() <= 1e-4 * scale, "{what} element {i}: kernel {g}, burn {w} (largest {scale})");
        }
    }

    /// The product with each epilogue (bias, quick GELU, residual) against burn's ops, on sizes
    /// that leave partial blocks of rows and of column groups.
    #[test]
    fn linear_matches_burn() {
        let Some(device) = gpu() else { return };
        for (rows, d_in, d_out) in [(1, 4, 4), (5, 12, 8), (37, 64, 36), (197, 32, 96)] {
            let (x, w, b, r) = (random([rows, d_in]), random([d_in, d_out]), random([d_out]), random([rows, d_out]));
            for (bias, residual, gelu) in [(false, false, false), (true, false, true), (true, true, false)] {
                let mut want = x.clone().matmul(w.clone());
                if bias {
                    want = want.add(b.clone().unsqueeze::<2>());
                }
                if gelu {
                    want = want.clone().mul(sigmoid(want.mul_scalar(1.702)));
                }
                if residual {
                    want = want.add(r.clone());
                }
                let got = super::linear(
                    on(&x, &device),
                    on(&w, &device),
                    bias.then(|| on(&b, &device)),
                    residual.then(|| on(&r, &device)),
                    gelu,
                );
                agree(got, want, &format!("linear {rows}x{d_in}x{d_out} bias {bias} residual {residual} gelu {gelu}"));
            }
        }
    }

    #[test]
    fn layer_norm_matches_burn() {
        let Some(device) = gpu() else { return };
        for (rows, width) in [(1, 4), (3, 20), (70, 64)] {
            let x = random([2, rows, width]).mul_scalar(3.0).add_scalar(1.0);
            let (w, b) = (random([width]), random([width]));
            let want = burn_layer_norm(x.clone(), w.clone(), Some(b.clone()), 1e-5);
            agree(
                super::layer_norm(on(&x, &device), on(&w, &device), on(&b, &device), 1e-5),
                want,
                &format!("layer norm {rows}x{width}"),
            );
        }
    }

    /// Attention of two images with heads side by side, against burn's ops per head: token
    /// counts that do and do not fill whole vectors of keys, one head and several.
    #[test]
    fn attention_matches_burn() {
        let Some(device) = gpu() else { return };
        for (n, heads, depth) in [(1, 1, 4), (7, 3, 8), (50, 2, 16)] {
            let width = heads * depth;
            let (q, k, v) = (random([2 * n, width]), random([2 * n, width]), random([2 * n, width]));
            let split = |x: &Tensor<2>| x.clone().reshape([2, n, heads, depth]).swap_dims(1, 2);
            let scores = split(&q).matmul(split(&k).swap_dims(2, 3)).mul_scalar((depth as f32).powf(-0.5));
            let want = softmax(scores, 3).matmul(split(&v)).swap_dims(1, 2).reshape([2 * n, width]);
            let got = super::attention(on(&q, &device), on(&k, &device), on(&v, &device), None, 2, heads);
            agree(got, want, &format!("attention n {n} heads {heads} depth {depth}"));
            // With a causal mask (the text tower's): each query sees itself and the keys before it.
            let causal: Vec<f32> = (0..n * n).map(|i| if i % n > i / n { f32::MIN } else { 0.0 }).collect();
            let mask = Tensor::<2>::from_data(burn::tensor::TensorData::new(causal, [n, n]), &Device::flex());
            let scores = split(&q).matmul(split(&k).swap_dims(2, 3)).mul_scalar((depth as f32).powf(-0.5));
            let want = softmax(scores.add(mask.clone().unsqueeze::<4>()), 3)
                .matmul(split(&v))
                .swap_dims(1, 2)
                .reshape([2 * n, width]);
            let got =
                super::attention(on(&q, &device), on(&k, &device), on(&v, &device), Some(on(&mask, &device)), 2, heads);
            agree(got, want, &format!("masked attention n {n} heads {heads} depth {depth}"));
        }
    }

    /// The whole block on the GPU kernels against burn's ops on the CPU, the same weights
    /// (scaled up, layer norms around 1) on both; its own part (output less input) compared.
    #[test]
    fn block_matches_burn() {
        let Some(device) = gpu() else { return };
        let dims = TowerDims { width: 64, intermediate: 128, heads: 4, eps: 1e-5, act: Activation::QuickGelu };
        let load = |device: &Device| {
            let scale = |name: &str, values: &mut [f32]| {
                let norm = name.contains("layer_norm") && name.ends_with(".weight");
                values.iter_mut().for_each(|v| *v = if norm { 1.0 + 10.0 * *v } else { 10.0 * *v });
            };
            EncoderLayer::load(
                WeightLoader::random(device).with_packed_linear(false).with_hook(scale).pp("layer"),
                dims,
            )
        };
        let (cpu, gpu) = (load(&Device::flex()), load(&device));
        let x = random([2, 61, 64]);
        let want = cpu.forward(x.clone(), None).sub(x.clone());
        let got =
            gpu.forward_gpu(&on(&x, &device), None).expect("the block runs on the GPU kernels").sub(on(&x, &device));
        agree(got, want, "block");
    }
}
