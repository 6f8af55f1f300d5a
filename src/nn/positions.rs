//! Learned position tables for a grid of patches, resampled for other grids as transformers'
//! `interpolate_pos_encoding` does (`CLIPVisionEmbeddings`, `GroupViTVisionEmbeddings`), or
//! as DINO's, which the dense-CLIP papers' code copies ([`Resampling`]): bicubic, computed on
//! the host exactly as PyTorch's `F.interpolate(mode="bicubic", align_corners=False)` — cubic
//! convolution with A = -0.75, half-pixel source coordinates, borders clamped. The table is
//! small, and doing it here keeps every backend bit-identical to the reference.

use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::loader::HeldBytes;

/// How a `g x g` table is resampled for a `gh x gw` grid of patches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum), value(rename_all = "kebab-case"))]
#[serde(rename_all = "kebab-case")]
pub enum Resampling {
    /// Bicubic to the target size: source step `g / gh` (transformers'
    /// `interpolate_pos_encoding`).
    #[default]
    Transformers,
    /// Bicubic at the scale factor `(gh + 0.1) / g`, so the source step is `g / (gh + 0.1)`
    /// (DINO's `interpolate_pos_encoding`, as NACLIP's and SCLIP's `clip/model.py` run it).
    ScaleFactor,
}

impl Resampling {
    /// The source step along an axis of `from` rows resampled to `to`, in PyTorch's float
    /// arithmetic: `(float)in / out` for a size, `(float)(1.0 / scale)` with the scale in
    /// double for a scale factor.
    fn step(self, from: usize, to: usize) -> f32 {
        match self {
            Resampling::Transformers => from as f32 / to as f32,
            Resampling::ScaleFactor => (1.0 / ((to as f64 + 0.1) / (from as f64))) as f32,
        }
    }
}

/// PyTorch's cubic convolution coefficient.
const A: f32 = -0.75;

fn cubic_weights(t: f32) -> [f32; 4] {
    let near = |x: f32| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let far = |x: f32| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
    [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)]
}

/// Source index and weights for each output position along one axis.
fn axis_taps(in_size: usize, out_size: usize, resampling: Resampling) -> Vec<(isize, [f32; 4])> {
    let scale = resampling.step(in_size, out_size);
    (0..out_size)
        .map(|o| {
            let real = scale * (o as f32 + 0.5) - 0.5;
            let base = real.floor();
            (base as isize, cubic_weights(real - base))
        })
        .collect()
}

/// Resample `grid` (`[in_h, in_w, dim]`, row-major) to `[out_h, out_w, dim]` as transformers
/// does.
pub fn bicubic(grid: &[f32], in_h: usize, in_w: usize, dim: usize, out_h: usize, out_w: usize) -> Vec<f32> {
    resample(grid, (in_h, in_w), dim, (out_h, out_w), Resampling::Transformers)
}

/// Resample `grid` (`[in_h, in_w, dim]`, row-major) to `[out_h, out_w, dim]` as `resampling`
/// says.
pub fn resample(
    grid: &[f32],
    (in_h, in_w): (usize, usize),
    dim: usize,
    (out_h, out_w): (usize, usize),
    resampling: Resampling,
) -> Vec<f32> {
    let ys = axis_taps(in_h, out_h, resampling);
    let xs = axis_taps(in_w, out_w, resampling);
    let clamp = |i: isize, n: usize| i.clamp(0, n as isize - 1) as usize;
    let mut out = vec![0f32; out_h * out_w * dim];
    for (oy, &(by, wy)) in ys.iter().enumerate() {
        for (ox, &(bx, wx)) in xs.iter().enumerate() {
            let dst = &mut out[(oy * out_w + ox) * dim..][..dim];
            // Rows first, then columns, as PyTorch's kernel accumulates.
            for (j, &wyj) in wy.iter().enumerate() {
                let y = clamp(by - 1 + j as isize, in_h);
                let mut row = vec![0f32; dim];
                for (i, &wxi) in wx.iter().enumerate() {
                    let x = clamp(bx - 1 + i as isize, in_w);
                    let src = &grid[(y * in_w + x) * dim..][..dim];
                    row.iter_mut().zip(src).for_each(|(r, s)| *r += wxi * s);
                }
                dst.iter_mut().zip(&row).for_each(|(d, r)| *d += wyj * r);
            }
        }
    }
    out
}

/// A `grid x grid` table of position embeddings (one row per patch, row-major), kept on the
/// device for the trained grid and on the host for resampling.
#[derive(Debug, Clone)]
pub struct PositionTable {
    trained: Tensor<2>,
    host: Vec<f32>,
    grid: usize,
    width: usize,
}

impl PositionTable {
    /// `host`: `[grid * grid, width]`, row-major.
    pub fn new(host: Vec<f32>, grid: usize, width: usize, device: &Device) -> Self {
        let trained = Tensor::from_data(TensorData::new(host.clone(), [grid * grid, width]), device);
        PositionTable { trained, host, grid, width }
    }

    /// What the table holds: the trained table on the device and its host copy, which
    /// resampling reads.
    pub fn held(&self) -> HeldBytes {
        HeldBytes::f32s(self.host.len() + if self.host.is_empty() { 0 } else { self.trained.shape().num_elements() })
    }

    /// A table that holds nothing, for a model that will not run (the loader's check pass, or a
    /// table it reports missing, which fails the load): one zero broadcast to `[grid * grid,
    /// width]`, so that a config's sizes allocate nothing before its weights are compared.
    pub fn stand_in(grid: usize, width: usize, device: &Device) -> Self {
        let trained = Tensor::<2>::zeros([1, 1], device).expand([grid * grid, width]);
        PositionTable { trained, host: Vec::new(), grid, width }
    }

    /// Rows for a `gh x gw` grid, `[gh*gw, width]`: the trained table on its own square grid
    /// (where both ways skip interpolation), otherwise resampled as transformers does.
    pub fn for_grid(&self, gh: usize, gw: usize) -> Tensor<2> {
        self.resampled(gh, gw, Resampling::Transformers)
    }

    /// [`Self::for_grid`], resampled as `resampling` says off the trained grid.
    pub fn resampled(&self, gh: usize, gw: usize, resampling: Resampling) -> Tensor<2> {
        if (gh, gw) == (self.grid, self.grid) {
            return self.trained.clone();
        }
        let resampled = resample(&self.host, (self.grid, self.grid), self.width, (gh, gw), resampling);
        Tensor::from_data(TensorData::new(resampled, [gh * gw, self.width]), &self.trained.device())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_size_is_identity() {
        let grid: Vec<f32> = (0..3 * 4 * 2).map(|v| v as f32 * 0.5).collect();
        let out = bicubic(&grid, 3, 4, 2, 3, 4);
        for (a, b) in grid.iter().zip(&out) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }

    /// DINO's scale factor `(g + 0.1) / n` moves every source tap: at 2 -> 3 the first
    /// output row samples `2 / 3.1 * 0.5 - 0.5` instead of `2 / 3 * 0.5 - 0.5`.
    #[test]
    fn scale_factor_steps_differ_from_size_steps() {
        assert_eq!(Resampling::Transformers.step(14, 21), 14.0 / 21.0);
        assert_eq!(Resampling::ScaleFactor.step(14, 21), (14.0 / 21.1f64) as f32);
        let grid: Vec<f32> = (0..4).map(|v| v as f32).collect();
        let size = resample(&grid, (2, 2), 1, (3, 3), Resampling::Transformers);
        let scale = resample(&grid, (2, 2), 1, (3, 3), Resampling::ScaleFactor);
        assert!(size.iter().zip(&scale).any(|(a, b)| (a - b).abs() > 1e-3), "{size:?} vs {scale:?}");
    }

    #[test]
    fn constant_grid_stays_constant_when_upsampled() {
        let grid = vec![2.5f32; 2 * 2 * 3];
        let out = bicubic(&grid, 2, 2, 3, 5, 3);
        assert_eq!(out.len(), 5 * 3 * 3);
        assert!(out.iter().all(|v| (v - 2.5).abs() < 1e-5), "{out:?}");
    }
}
