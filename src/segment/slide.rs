//! Sliding-window inference as mmsegmentation's `slide_inference` does it: the image's short
//! side resized first, a regular grid of `window` crops with step `stride` (the last row and
//! column shifted back inside the image, a single crop when the image is smaller than the
//! window), each crop scored, overlaps averaged. Shared by every engine that scores windows.

use burn::tensor::{Device, Tensor, TensorData};
use serde::Serialize;

use super::Settings;
use crate::error::{Error, Result};
use crate::preprocess::{Preprocessor, RgbImage, Rounding, checked_resized_size};

/// The most score values (names x resized pixels) one segmentation may stitch: 512 MiB of f32,
/// the largest buffer the core asks a GPU for, within the browser's 32-bit heap (a device that
/// grants less holds less: [`max_score_values`]).
pub const MAX_SCORE_VALUES: usize = crate::device::LARGEST_BUFFER_NEEDED as usize / size_of::<f32>();
/// Windows run through a network together, at most this many at once.
const WINDOW_BATCH: usize = 8;

/// The short-side resize and the sliding windows, as every windowed engine's options hold
/// them (serialised flat, as the settings name them).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Windows {
    /// The image's short side is resized to this before windowing.
    pub short_side: usize,
    /// Window size in pixels; 0 runs the whole resized image in one pass.
    pub window: usize,
    pub stride: usize,
    /// How the resized long side is rounded.
    pub rounding: Rounding,
}

impl Windows {
    /// `(window, stride)`, or `None` for the whole image in one pass.
    pub fn slide(&self) -> Option<(usize, usize)> {
        (self.window > 0).then_some((self.window, self.stride))
    }

    /// The user's settings over these.
    pub fn with(self, settings: &Settings) -> Self {
        Windows {
            short_side: settings.short_side.unwrap_or(self.short_side),
            window: settings.window.unwrap_or(self.window),
            stride: settings.stride.unwrap_or(self.stride),
            rounding: settings.rounding.unwrap_or(self.rounding),
        }
    }

    /// Bounds that keep time and memory sane.
    pub fn validate(&self) -> Result<()> {
        if !(16..=4096).contains(&self.short_side) {
            return Err(Error::invalid(format!("short side must be in [16, 4096] pixels, got {}", self.short_side)));
        }
        if let Some((window, stride)) = self.slide()
            && (!(16..=4096).contains(&window) || stride == 0 || stride > window)
        {
            return Err(Error::invalid(format!(
                "window must be 16 to 4096 pixels and stride in [1, window]; got window {window}, stride {stride}"
            )));
        }
        Ok(())
    }

    /// The image resized and normalised (`[1, 3, h, w]` on `device`), then `score`d window by
    /// window and stitched: [`resized_pixels`] and [`slide_and_stitch`]. Also returns the
    /// resized pixels. `-> [1, rows, h, w]`
    pub fn run(
        &self,
        preprocessor: &Preprocessor,
        image: &RgbImage,
        device: &Device,
        rows: usize,
        score: impl FnMut(Tensor<4>) -> Result<Tensor<4>>,
    ) -> Result<(Tensor<4>, Tensor<4>)> {
        let (w, h) = checked_resized_size(image.width, image.height, self.short_side, self.rounding)?;
        check_score_size(rows, w, h, self.short_side, device)?;
        let preprocessor = Preprocessor { rounding: self.rounding, ..preprocessor.clone() };
        let pixels = resized_pixels(&preprocessor, image, self.short_side, device)?;
        let stitched = slide_and_stitch(&pixels, self.slide(), rows, score)?;
        Ok((stitched, pixels))
    }
}

/// Refuse a segmentation whose stitched scores (`rows` names over the resized `w x h`) would
/// pass [`MAX_SCORE_VALUES`], before anything is allocated.
pub fn check_score_size(rows: usize, w: usize, h: usize, short_side: usize, device: &Device) -> Result<()> {
    check_score_values(rows, w, h, short_side, max_score_values(device))
}

/// The most score values one segmentation may stitch on `device`: [`MAX_SCORE_VALUES`], and
/// on the GPU no more than one buffer of the device holds in f32 (32 Mi values under WebGPU's
/// default 128 MiB binding).
pub fn max_score_values(device: &Device) -> usize {
    crate::device::largest_buffer(device)
        .map_or(MAX_SCORE_VALUES, |bytes| MAX_SCORE_VALUES.min(bytes / size_of::<f32>()))
}

/// [`check_score_size`] against `max` values (on any device: [`MAX_SCORE_VALUES`]).
pub fn check_score_values(rows: usize, w: usize, h: usize, short_side: usize, max: usize) -> Result<()> {
    let values = rows.saturating_mul(w).saturating_mul(h);
    if values > max {
        let per_name = w * h;
        return Err(Error::invalid(format!(
            "{rows} names (labels, synonyms and background words) over a {w}x{h} resized image need {} MiB of scores, more than the {} MiB allowed; use at most {} names at this size, or a smaller short side than {short_side}",
            (values * 4) >> 20,
            (max * 4) >> 20,
            max / per_name.max(1)
        )));
    }
    Ok(())
}

/// At most this many windows per image: a stride of a few pixels over a large short side plans
/// millions of passes (`--short-side 4096 --window 16 --stride 1`: 33 million).
pub const MAX_WINDOWS: usize = 4096;

/// Windows along one side of `size` pixels, `window` wide, every `stride` (mmsegmentation's
/// count; the last is shifted inside the image).
pub fn grid_count(size: usize, window: usize, stride: usize) -> usize {
    (size + stride).saturating_sub(window + 1) / stride.max(1) + 1
}

/// Refuse `count` windows over a `w x h` (resized) image past [`MAX_WINDOWS`], before any is
/// cut.
pub fn check_window_count(count: usize, (w, h): (usize, usize), stride: usize) -> Result<()> {
    if count > MAX_WINDOWS {
        return Err(Error::invalid(format!(
            "a {w}x{h} resized image at stride {stride} is {count} windows; at most {MAX_WINDOWS}: raise the stride"
        )));
    }
    Ok(())
}

/// One crop: `[y1, y2) x [x1, x2)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub y1: usize,
    pub y2: usize,
    pub x1: usize,
    pub x2: usize,
}

/// Windows over an `h x w` image.
pub fn windows(h: usize, w: usize, window: (usize, usize), stride: (usize, usize)) -> Vec<Window> {
    let (wh, ww) = window;
    let (sh, sw) = stride;
    let (hg, wg) = (grid_count(h, wh, sh), grid_count(w, ww, sw));
    let mut out = Vec::with_capacity(hg * wg);
    for hi in 0..hg {
        for wi in 0..wg {
            let y2 = (hi * sh + wh).min(h);
            let x2 = (wi * sw + ww).min(w);
            out.push(Window { y1: y2.saturating_sub(wh), y2, x1: x2.saturating_sub(ww), x2 });
        }
    }
    out
}

/// The image resized to `short_side` (bicubic, as the checkpoint's preprocessing, the long
/// side rounded as `preprocessor` says) and normalised, as `[1, 3, h, w]` on `device`.
pub fn resized_pixels(
    preprocessor: &Preprocessor,
    image: &RgbImage,
    short_side: usize,
    device: &Device,
) -> Result<Tensor<4>> {
    let preprocessor = Preprocessor { short_side, crop: None, ..preprocessor.clone() };
    let (chw, (w, h)) = preprocessor.apply(image)?;
    Ok(Tensor::<4>::from_data(TensorData::new(chw, [1, 3, h, w]), device))
}

/// Slide inference: `score` maps a batch of equal-sized windows `[n, 3, wh, ww]` to
/// `[n, rows, wh, ww]`; overlaps are averaged. `slide = None` runs the whole image once.
/// `-> [1, rows, h, w]`
pub fn slide_and_stitch(
    pixels: &Tensor<4>,
    slide: Option<(usize, usize)>,
    rows: usize,
    score: impl FnMut(Tensor<4>) -> Result<Tensor<4>>,
) -> Result<Tensor<4>> {
    let [_, _, h, w] = pixels.dims();
    let windows = match slide {
        Some((window, stride)) => {
            check_window_count(grid_count(h, window, stride) * grid_count(w, window, stride), (w, h), stride)?;
            windows(h, w, (window, window), (stride, stride))
        }
        None => vec![Window { y1: 0, y2: h, x1: 0, x2: w }],
    };
    // All windows have one size (the last ones are shifted inside), so they batch.
    let crop = |win: &Window| pixels.clone().slice([0..1, 0..3, win.y1..win.y2, win.x1..win.x2]);
    stitch(&windows, (h, w), rows, &pixels.device(), crop, score)
}

/// The windows' scores added into an `h x w` canvas and divided by each pixel's count of
/// windows. `crop` gives each window's input (all of one size, so they batch); `score` maps a
/// batch `[n, 3, ..]` to `[n, rows, ..]`, of which each window keeps its top-left
/// `(y2 - y1) x (x2 - x1)`. `-> [1, rows, h, w]`
pub fn stitch(
    windows: &[Window],
    (h, w): (usize, usize),
    rows: usize,
    device: &Device,
    crop: impl Fn(&Window) -> Tensor<4>,
    mut score: impl FnMut(Tensor<4>) -> Result<Tensor<4>>,
) -> Result<Tensor<4>> {
    // In the scores' own float type (an engine may score in f32 on a device that computes in f16).
    let mut canvas: Option<Tensor<4>> = None;
    let mut count = vec![0f32; h * w];
    for group in windows.chunks(WINDOW_BATCH) {
        let scores = score(Tensor::cat(group.iter().map(&crop).collect(), 0))?;
        let canvas = canvas.get_or_insert_with(|| Tensor::zeros([1, rows, h, w], (device, scores.dtype())));
        for (i, win) in group.iter().enumerate() {
            let (wh, ww) = (win.y2 - win.y1, win.x2 - win.x1);
            let ranges = [0..1, 0..rows, win.y1..win.y2, win.x1..win.x2];
            let part = scores.clone().slice([i..i + 1, 0..rows, 0..wh, 0..ww]);
            *canvas = canvas.clone().slice_assign(ranges.clone(), canvas.clone().slice(ranges).add(part));
            for y in win.y1..win.y2 {
                count[y * w + win.x1..y * w + win.x2].iter_mut().for_each(|c| *c += 1.0);
            }
        }
    }
    let canvas = canvas.ok_or_else(|| Error::invalid("no windows to score"))?;
    let count = Tensor::<4>::from_data(TensorData::new(count, [1, 1, h, w]), (device, canvas.dtype()));
    Ok(canvas.div(count))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stitched_scores_are_bounded_before_allocation() {
        // 2,048 names at a 448 short side of a 4:3 photo: 1.2 G values, refused with a way out.
        let err = check_score_values(2048, 597, 448, 448, MAX_SCORE_VALUES).unwrap_err().to_string();
        assert!(err.contains("2048 names") && err.contains("use at most 501 names"), "{err}");
        check_score_values(501, 597, 448, 448, MAX_SCORE_VALUES).unwrap();
        // Under WebGPU's default 128 MiB binding a quarter as many fit.
        let default = crate::device::GpuLimits::WEBGPU_DEFAULT.largest_buffer() as usize / 4;
        let err = check_score_values(501, 597, 448, 448, default).unwrap_err().to_string();
        assert!(err.contains("use at most 125 names"), "{err}");
    }

    #[test]
    fn grid_matches_mmsegmentation() {
        // 336 x 504 with 224/112: max(336-224+111,0)//112+1 = 2 rows, (504-224+111)//112+1 = 4 cols.
        let w = windows(336, 504, (224, 224), (112, 112));
        assert_eq!(w.len(), 8);
        assert_eq!(w[0], Window { y1: 0, y2: 224, x1: 0, x2: 224 });
        assert_eq!(w[3], Window { y1: 0, y2: 224, x1: 280, x2: 504 });
        assert_eq!(w[7], Window { y1: 112, y2: 336, x1: 280, x2: 504 });
        // Every pixel is covered.
        let mut covered = vec![false; 336 * 504];
        for win in &w {
            for y in win.y1..win.y2 {
                for x in win.x1..win.x2 {
                    covered[y * 504 + x] = true;
                }
            }
        }
        assert!(covered.iter().all(|&c| c));
    }

    #[test]
    fn small_images_get_one_window() {
        assert_eq!(windows(100, 150, (224, 224), (112, 112)), vec![Window { y1: 0, y2: 100, x1: 0, x2: 150 }]);
    }
}
