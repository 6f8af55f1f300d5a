//! Naming a mask from its box: mmdet's `mask2bbox`, `SingleRoIExtractor`'s choice of pyramid
//! level, and RoIAlign (`aligned=True`, adaptive sampling, torchvision's `roi_align` rule) as a
//! sampling matrix over the box's footprint on its level, applied on the device.

/// `mask2bbox` of `logits > 0` (`sigmoid > 0.5`) on a `side x side` grid: `[x0, y0, x1 + 1, y1 + 1]`
/// of the positive cells, all zeros for an empty mask.
pub fn mask_box(logits: &[f32], side: usize) -> [f32; 4] {
    let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
    for (i, &v) in logits.iter().enumerate().take(side * side) {
        if v > 0.0 {
            let (x, y) = (i % side, i / side);
            x0 = x0.min(x);
            y0 = y0.min(y);
            x1 = x1.max(x + 1);
            y1 = y1.max(y + 1);
        }
    }
    if x0 == usize::MAX { [0.0; 4] } else { [x0 as f32, y0 as f32, x1 as f32, y1 as f32] }
}

/// `map_roi_levels`: `floor(log2(sqrt(w h) / finest + 1e-6))` clamped to the levels.
pub fn roi_level(b: [f32; 4], finest_scale: f32, levels: usize) -> usize {
    let scale = ((b[2] - b[0]) * (b[3] - b[1])).sqrt();
    let level = (scale / finest_scale + 1e-6).log2().floor();
    level.clamp(0.0, (levels - 1) as f32) as usize
}

/// RoIAlign weights of one box on an `h x w` map with `1 / spatial_scale = stride`: the rows
/// `y0..y1` and columns `x0..x1` the samples touch, and `[out * out, rows * cols]` weights, each
/// row averaging its bin's bilinear samples.
pub struct RoiSampling {
    pub rows: std::ops::Range<usize>,
    pub cols: std::ops::Range<usize>,
    pub weights: Vec<f32>,
}

pub fn roi_align_weights(b: [f32; 4], stride: usize, h: usize, w: usize, out: usize) -> RoiSampling {
    let scale = 1.0 / stride as f32;
    let start_x = b[0] * scale - 0.5;
    let start_y = b[1] * scale - 0.5;
    let roi_w = b[2] * scale - 0.5 - start_x;
    let roi_h = b[3] * scale - 0.5 - start_y;
    let (bin_h, bin_w) = (roi_h / out as f32, roi_w / out as f32);
    let (grid_h, grid_w) =
        ((roi_h / out as f32).ceil().max(0.0) as usize, (roi_w / out as f32).ceil().max(0.0) as usize);
    let count = (grid_h * grid_w).max(1) as f32;
    // (bin, y, x, weight) taps.
    let mut taps: Vec<(usize, usize, usize, f32)> = Vec::new();
    for ph in 0..out {
        for pw in 0..out {
            let bin = ph * out + pw;
            for iy in 0..grid_h {
                let y = start_y + ph as f32 * bin_h + (iy as f32 + 0.5) * bin_h / grid_h as f32;
                for ix in 0..grid_w {
                    let x = start_x + pw as f32 * bin_w + (ix as f32 + 0.5) * bin_w / grid_w as f32;
                    bilinear_taps(y, x, h, w, |yy, xx, wt| taps.push((bin, yy, xx, wt / count)));
                }
            }
        }
    }
    if taps.is_empty() {
        return RoiSampling { rows: 0..0, cols: 0..0, weights: Vec::new() };
    }
    let (r0, r1) = taps.iter().fold((usize::MAX, 0), |(a, b), t| (a.min(t.1), b.max(t.1 + 1)));
    let (c0, c1) = taps.iter().fold((usize::MAX, 0), |(a, b), t| (a.min(t.2), b.max(t.2 + 1)));
    let (rh, rw) = (r1 - r0, c1 - c0);
    let mut weights = vec![0f32; out * out * rh * rw];
    for (bin, y, x, wt) in taps {
        weights[bin * rh * rw + (y - r0) * rw + (x - c0)] += wt;
    }
    RoiSampling { rows: r0..r1, cols: c0..c1, weights }
}

/// torchvision's `bilinear_interpolate`: nothing outside `[-1, h] x [-1, w]`, clamped at the
/// borders; the four taps with their weights (zero-weight taps included, as they add nothing).
fn bilinear_taps(y: f32, x: f32, h: usize, w: usize, mut tap: impl FnMut(usize, usize, f32)) {
    if y < -1.0 || y > h as f32 || x < -1.0 || x > w as f32 {
        return;
    }
    let ((y_low, y_high, ly), (x_low, x_high, lx)) = (axis(y, h), axis(x, w));
    let (hy, hx) = (1.0 - ly, 1.0 - lx);
    tap(y_low, x_low, hy * hx);
    tap(y_low, x_high, hy * lx);
    tap(y_high, x_low, ly * hx);
    tap(y_high, x_high, ly * lx);
}

/// One axis of [`bilinear_taps`] on a side of `n` cells: the coordinate clamped at 0, the low
/// and high cells (both the last one past it) and the weight of the high one.
fn axis(v: f32, n: usize) -> (usize, usize, f32) {
    let v = v.max(0.0);
    let low = v as usize;
    if low >= n - 1 { (n - 1, n - 1, 0.0) } else { (low, low + 1, v - low as f32) }
}

/// Split a typed or LVIS class name into its prototypes, as the classifier was built
/// (`split_label`): `_or_` and `/` separate synonyms, `_` is a space, lower case.
pub fn split_label(name: &str) -> Vec<String> {
    name.replace("_or_", ",")
        .replace('/', ",")
        .replace('_', " ")
        .to_lowercase()
        .split(',')
        .map(|s| s.trim().to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxes_levels_and_labels() {
        let mut m = vec![-1.0f32; 16];
        m[4 + 1] = 2.0;
        m[8 + 2] = 0.5;
        assert_eq!(mask_box(&m, 4), [1.0, 1.0, 3.0, 3.0]);
        assert_eq!(mask_box(&[-1.0; 16], 4), [0.0; 4]);
        assert_eq!(roi_level([0.0; 4], 56.0, 4), 0);
        assert_eq!(roi_level([0.0, 0.0, 112.0, 112.0], 56.0, 4), 1);
        assert_eq!(roi_level([0.0, 0.0, 111.0, 112.0], 56.0, 4), 0);
        assert_eq!(roi_level([0.0, 0.0, 1024.0, 1024.0], 56.0, 4), 3);
        assert_eq!(split_label("bow_(weapon)"), ["bow (weapon)"]);
        assert_eq!(split_label("Cat/kitten"), ["cat", "kitten"]);
        assert_eq!(split_label("sofa_or_couch"), ["sofa", "couch"]);
    }

    #[test]
    fn an_empty_box_samples_nothing_and_weights_average() {
        assert!(roi_align_weights([0.0; 4], 4, 8, 8, 7).weights.is_empty());
        let s = roi_align_weights([0.0, 0.0, 32.0, 32.0], 4, 8, 8, 7);
        let per_bin = s.rows.len() * s.cols.len();
        for bin in 0..49 {
            let total: f32 = s.weights[bin * per_bin..(bin + 1) * per_bin].iter().sum();
            assert!((total - 1.0).abs() < 1e-5, "bin {bin}: {total}");
        }
    }
}
