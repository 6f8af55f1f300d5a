//! Bilinear upsampling on the host, as torch's `interpolate(..., mode="bilinear",
//! align_corners=False)`, for outputs too large to materialise on the device.

/// Where each output coordinate samples its input axis: torch's bilinear source index
/// (`align_corners=False`): `src = max(0, (dst + 0.5) * in / out - 0.5)`.
pub struct BilinearAxis {
    pub lo: Vec<usize>,
    pub hi: Vec<usize>,
    pub t: Vec<f32>,
}

impl BilinearAxis {
    pub fn new(input: usize, output: usize) -> Self {
        let scale = input as f32 / output as f32;
        let mut axis = BilinearAxis {
            lo: Vec::with_capacity(output),
            hi: Vec::with_capacity(output),
            t: Vec::with_capacity(output),
        };
        for dst in 0..output {
            let src = if input == output { dst as f32 } else { ((dst as f32 + 0.5) * scale - 0.5).max(0.0) };
            let lo = (src as usize).min(input - 1);
            axis.lo.push(lo);
            axis.hi.push((lo + 1).min(input - 1));
            axis.t.push(src - lo as f32);
        }
        axis
    }
}

/// One `in_w x in_h` plane upsampled bilinearly (torch, `align_corners=False`) to
/// `out_w x out_h` on the host, handed to `row` one output row at a time: memory stays at one
/// row whatever the output size.
pub fn bilinear_rows(plane: &[f32], input: (usize, usize), output: (usize, usize), mut row: impl FnMut(usize, &[f32])) {
    let ((in_w, in_h), (out_w, out_h)) = (input, output);
    assert_eq!(plane.len(), in_w * in_h, "plane of {in_w}x{in_h}");
    let (xs, ys) = (BilinearAxis::new(in_w, out_w), BilinearAxis::new(in_h, out_h));
    let mut line = vec![0f32; out_w];
    for y in 0..out_h {
        let (r0, r1, ty) = (&plane[ys.lo[y] * in_w..][..in_w], &plane[ys.hi[y] * in_w..][..in_w], ys.t[y]);
        for (x, out) in line.iter_mut().enumerate() {
            let (c0, c1, tx) = (xs.lo[x], xs.hi[x], xs.t[x]);
            let top = r0[c0] * (1.0 - tx) + r0[c1] * tx;
            let bottom = r1[c0] * (1.0 - tx) + r1[c1] * tx;
            *out = top * (1.0 - ty) + bottom * ty;
        }
        row(y, &line);
    }
}
