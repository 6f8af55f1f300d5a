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

/// Both axes of one upsampling: each output pixel's four source pixels and weights.
pub struct BilinearGrid {
    pub xs: BilinearAxis,
    pub ys: BilinearAxis,
    /// Columns of the input.
    in_w: usize,
}

impl BilinearGrid {
    /// `input` and `output` as `(width, height)`.
    pub fn new(input: (usize, usize), output: (usize, usize)) -> Self {
        BilinearGrid {
            xs: BilinearAxis::new(input.0, output.0),
            ys: BilinearAxis::new(input.1, output.1),
            in_w: input.0,
        }
    }

    /// Where output pixel `(x, y)` reads its input (the same for every plane of that size).
    #[inline]
    pub fn tap(&self, x: usize, y: usize) -> Tap {
        let (r0, r1) = (self.ys.lo[y] * self.in_w, self.ys.hi[y] * self.in_w);
        let (c0, c1) = (self.xs.lo[x], self.xs.hi[x]);
        Tap { at: [r0 + c0, r0 + c1, r1 + c0, r1 + c1], tx: self.xs.t[x], ty: self.ys.t[y] }
    }
}

/// One output pixel's four source offsets and its weights.
#[derive(Debug, Clone, Copy)]
pub struct Tap {
    at: [usize; 4],
    tx: f32,
    ty: f32,
}

impl Tap {
    /// The pixel's value in `plane` (the input, row-major).
    #[inline]
    pub fn sample(&self, plane: &[f32]) -> f32 {
        let [a, b, c, d] = self.at;
        let top = plane[a] * (1.0 - self.tx) + plane[b] * self.tx;
        let bottom = plane[c] * (1.0 - self.tx) + plane[d] * self.tx;
        top * (1.0 - self.ty) + bottom * self.ty
    }
}

/// One `in_w x in_h` plane upsampled bilinearly (torch, `align_corners=False`) to
/// `out_w x out_h` on the host, handed to `row` one output row at a time: memory stays at one
/// row whatever the output size.
pub fn bilinear_rows(plane: &[f32], input: (usize, usize), output: (usize, usize), mut row: impl FnMut(usize, &[f32])) {
    let ((in_w, in_h), (out_w, out_h)) = (input, output);
    assert_eq!(plane.len(), in_w * in_h, "plane of {in_w}x{in_h}");
    let grid = BilinearGrid::new(input, output);
    let mut line = vec![0f32; out_w];
    for y in 0..out_h {
        for (x, out) in line.iter_mut().enumerate() {
            *out = grid.tap(x, y).sample(plane);
        }
        row(y, &line);
    }
}
