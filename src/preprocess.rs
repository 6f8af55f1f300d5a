//! CLIP image preprocessing, matching transformers `CLIPImageProcessor` (PIL backend): resize
//! the short side with Pillow's bicubic filter (`Image.resize(..., BICUBIC)`, a = -0.5,
//! antialiased when shrinking, 8-bit fixed point between passes, as Pillow's `Resample.c`),
//! optional centre crop, rescale by 1/255, normalise with CLIP's mean and std.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// CLIP's per-channel mean and std (OpenAI CLIP `clip/clip.py`, `_transform`).
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
#[allow(clippy::excessive_precision)] // CLIP's published values, as written
pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];

/// Images larger than this on a side are refused (they would not fit a GPU buffer anyway).
pub const MAX_SIDE: usize = 16_384;
/// Most pixels an image may have in all: 8192 x 8192, the largest image the page takes, so a
/// 48- or 64-megapixel photo passes. As 8-bit RGB that is 192 MiB, and the widest layout a
/// decoder produces (16-bit RGBA) 512 MiB, which keeps every command under 1 GiB whatever
/// the file claims (docs/performance.md, "Hostile inputs"). A header is checked against it
/// before a pixel is decoded: a JPEG of a few hundred bytes may claim 16384 x 16384.
pub const MAX_PIXELS: usize = 1 << 26;
/// Longest side an image may have after the resize a network asks for. Every path that resizes
/// (`classify`, `embed-image`, segmentation's short-side resize) checks it before resizing;
/// past it the image is refused with the sizes in the error, never downscaled behind the user's
/// back (panoramas and strips: crop them, or lower `--short-side`).
pub const MAX_RESIZED_SIDE: usize = 8192;
/// Largest input side a model config or a `preprocessor_config.json` may ask for: SAM's 1024 is
/// the largest of the released checkpoints, and 4096 leaves room.
pub const MAX_INPUT_SIZE: usize = 4096;

/// A `preprocessor_config.json`'s statistics: means finite, deviations positive (a deviation of
/// 0 divides by zero, and every pixel becomes NaN).
pub fn check_statistics(mean: [f32; 3], std: [f32; 3]) -> Result<()> {
    if mean.iter().any(|m| !m.is_finite()) {
        return Err(Error::Config(format!(
            "preprocessor_config.json: image_mean is {mean:?}; each must be a finite number"
        )));
    }
    if std.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
        return Err(Error::Config(format!(
            "preprocessor_config.json: image_std is {std:?}; each must be a positive number (pixels are divided by it)"
        )));
    }
    Ok(())
}

/// A size a `preprocessor_config.json` gives, in `[1, MAX_INPUT_SIZE]`.
fn check_input_size(field: &str, value: usize) -> Result<()> {
    if value == 0 || value > MAX_INPUT_SIZE {
        return Err(Error::Config(format!(
            "preprocessor_config.json: {field} is {value}; it must be between 1 and {MAX_INPUT_SIZE}"
        )));
    }
    Ok(())
}

/// An image's size as every input path checks it, before or after decoding: at least one pixel,
/// at most [`MAX_SIDE`] a side and [`MAX_PIXELS`] in all.
pub fn check_image_size(width: usize, height: usize) -> Result<()> {
    if width == 0 || height == 0 {
        return Err(Error::invalid(format!("image has no pixels ({width}x{height})")));
    }
    if width > MAX_SIDE || height > MAX_SIDE {
        return Err(Error::invalid(format!(
            "image of {width}x{height} pixels is too large; the limit is {MAX_SIDE} pixels a side"
        )));
    }
    if width * height > MAX_PIXELS {
        return Err(Error::invalid(format!(
            "image of {width}x{height} pixels is too large; the limit is {MAX_PIXELS} pixels in all (8192x8192)"
        )));
    }
    Ok(())
}

/// An 8-bit RGB image, row-major, 3 bytes a pixel.
#[derive(Debug, Clone, PartialEq)]
pub struct RgbImage {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl RgbImage {
    pub fn new(width: usize, height: usize, data: Vec<u8>) -> Result<Self> {
        check_image_size(width, height)?;
        if data.len() != width * height * 3 {
            return Err(Error::invalid(format!(
                "RGB data has {} bytes, expected {} for {width}x{height}",
                data.len(),
                width * height * 3
            )));
        }
        Ok(RgbImage { width, height, data })
    }

    /// From RGBA bytes (what a browser canvas gives), dropping alpha.
    pub fn from_rgba(width: usize, height: usize, rgba: &[u8]) -> Result<Self> {
        if rgba.len() != width * height * 4 {
            return Err(Error::invalid(format!(
                "RGBA data has {} bytes, expected {} for {width}x{height}",
                rgba.len(),
                width * height * 4
            )));
        }
        let data = rgba.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect();
        Self::new(width, height, data)
    }

    /// Centre crop as transformers' `center_crop`: top = (h - ch) // 2, left = (w - cw) // 2.
    pub fn center_crop(&self, crop_w: usize, crop_h: usize) -> RgbImage {
        let top = self.height.saturating_sub(crop_h) / 2;
        let left = self.width.saturating_sub(crop_w) / 2;
        let (cw, ch) = (crop_w.min(self.width), crop_h.min(self.height));
        let mut data = Vec::with_capacity(cw * ch * 3);
        for y in top..top + ch {
            let row = (y * self.width + left) * 3;
            data.extend_from_slice(&self.data[row..row + cw * 3]);
        }
        RgbImage { width: cw, height: ch, data }
    }

    /// Pillow-exact bicubic resize (`Image.resize(..., BICUBIC)`).
    pub fn resize_bicubic(&self, width: usize, height: usize) -> RgbImage {
        pil::resize(self, width, height, pil::Filter::Bicubic)
    }

    /// Pillow-exact bilinear resize (`Image.resize(..., BILINEAR)`, antialiased when shrinking).
    pub fn resize_bilinear(&self, width: usize, height: usize) -> RgbImage {
        pil::resize(self, width, height, pil::Filter::Bilinear)
    }
}

/// How the long side's length is rounded when the short side is resized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum), value(rename_all = "lower"))]
#[serde(rename_all = "lowercase")]
pub enum Rounding {
    /// Truncated: `int(short * long / short_in)`, transformers' `get_resize_output_image_size`.
    #[default]
    Transformers,
    /// Half up: `int(long * (short / short_in) + 0.5)`, mmcv's `rescale_size` (the
    /// mmsegmentation `Resize(keep_ratio=True)` that NACLIP, SCLIP, GroupViT and SegCLIP
    /// evaluate with).
    Mmcv,
}

impl Rounding {
    /// `(width, height)` of a `width x height` image whose short side is resized to `short`.
    pub fn size(self, width: usize, height: usize, short: usize) -> (usize, usize) {
        let short = short.max(1);
        let (short_in, long_in) = (width.min(height) as f64, width.max(height) as f64);
        let long = match self {
            Rounding::Transformers => (short as f64 * long_in / short_in) as usize,
            // mmcv multiplies by the scale factor `short / short_in` first, then adds 0.5 and
            // truncates (`_scale_size`); the short side itself comes out as `short`.
            Rounding::Mmcv => (long_in * (short as f64 / short_in) + 0.5) as usize,
        };
        if width <= height { (short, long) } else { (long, short) }
    }
}

/// Size of the image after resizing its short side to `short` (transformers
/// `get_resize_output_image_size` with `default_to_square=False`).
pub fn short_side_size(width: usize, height: usize, short: usize) -> (usize, usize) {
    Rounding::Transformers.size(width, height, short)
}

/// [`short_side_size`], refused when the long side would pass [`MAX_RESIZED_SIDE`]: the one
/// size guard of every path that resizes.
pub fn checked_short_side_size(width: usize, height: usize, short: usize) -> Result<(usize, usize)> {
    checked_resized_size(width, height, short, Rounding::Transformers)
}

/// [`checked_short_side_size`] with the long side rounded as `rounding` says.
pub fn checked_resized_size(width: usize, height: usize, short: usize, rounding: Rounding) -> Result<(usize, usize)> {
    let (w, h) = rounding.size(width, height, short);
    if w.max(h) > MAX_RESIZED_SIDE {
        return Err(Error::invalid(format!(
            "a {width}x{height} image resized to a short side of {short} would be {w}x{h}; its aspect ratio is too extreme (the long side may reach {MAX_RESIZED_SIDE} pixels; crop it first)"
        )));
    }
    Ok((w, h))
}

/// The settings of a `preprocessor_config.json`, with CLIP's defaults for a given size.
#[derive(Debug, Clone)]
pub struct Preprocessor {
    /// Target short side (`size.shortest_edge`).
    pub short_side: usize,
    /// `(width, height)` of the centre crop, `None` to keep the whole resized image.
    pub crop: Option<(usize, usize)>,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// How the resized long side is rounded.
    pub rounding: Rounding,
}

#[derive(Deserialize)]
struct RawConfig {
    size: Option<serde_json::Value>,
    crop_size: Option<serde_json::Value>,
    do_center_crop: Option<bool>,
    image_mean: Option<[f32; 3]>,
    image_std: Option<[f32; 3]>,
}

impl Preprocessor {
    /// CLIP's standard: short side to `size`, centre crop `size x size`.
    pub fn clip(size: usize) -> Self {
        Preprocessor {
            short_side: size,
            crop: Some((size, size)),
            mean: CLIP_MEAN,
            std: CLIP_STD,
            rounding: Rounding::Transformers,
        }
    }

    /// Read `preprocessor_config.json`; missing fields fall back to [`Preprocessor::clip`]
    /// with `default_size`.
    pub fn from_json(text: &str, default_size: usize) -> Result<Self> {
        let raw: RawConfig =
            serde_json::from_str(text).map_err(|e| Error::Config(format!("preprocessor_config.json: {e}")))?;
        let mut p = Self::clip(default_size);
        // On wasm32 a u64 does not fit a usize: too large stays too large.
        let fit = |x: u64| usize::try_from(x).unwrap_or(usize::MAX);
        let int = |v: &serde_json::Value, key: &str| v.get(key).and_then(|x| x.as_u64()).map(fit);
        match &raw.size {
            Some(v) if v.is_u64() => p.short_side = v.as_u64().map_or(0, fit),
            Some(v) => p.short_side = int(v, "shortest_edge").or(int(v, "height")).unwrap_or(default_size),
            None => {}
        }
        if let Some(v) = &raw.crop_size {
            p.crop = if v.is_u64() {
                let s = v.as_u64().map_or(0, fit);
                Some((s, s))
            } else {
                Some((int(v, "width").unwrap_or(default_size), int(v, "height").unwrap_or(default_size)))
            };
        }
        if raw.do_center_crop == Some(false) {
            p.crop = None;
        }
        p.mean = raw.image_mean.unwrap_or(p.mean);
        p.std = raw.image_std.unwrap_or(p.std);
        check_input_size("size", p.short_side)?;
        if let Some((w, h)) = p.crop {
            check_input_size("crop_size", w.min(h))?;
            check_input_size("crop_size", w.max(h))?;
        }
        check_statistics(p.mean, p.std)?;
        Ok(p)
    }

    /// Resize (and crop), then normalise. Returns CHW floats and `(width, height)`.
    pub fn apply(&self, image: &RgbImage) -> Result<(Vec<f32>, (usize, usize))> {
        let (w, h) = checked_resized_size(image.width, image.height, self.short_side, self.rounding)?;
        let resized = if (w, h) == (image.width, image.height) { image.clone() } else { image.resize_bicubic(w, h) };
        let out = match self.crop {
            Some((cw, ch)) => resized.center_crop(cw, ch),
            None => resized,
        };
        Ok((normalize(&out, self.mean, self.std), (out.width, out.height)))
    }
}

/// `(x / 255 - mean) / std` per channel, CHW.
pub fn normalize(image: &RgbImage, mean: [f32; 3], std: [f32; 3]) -> Vec<f32> {
    let n = image.width * image.height;
    let mut out = vec![0f32; 3 * n];
    for (i, px) in image.data.chunks_exact(3).enumerate() {
        for c in 0..3 {
            // transformers rescales in float64, then works in float32.
            let v = (px[c] as f64 * (1.0 / 255.0)) as f32;
            out[c * n + i] = (v - mean[c]) / std[c];
        }
    }
    out
}

/// Pillow's two-pass resampling (`libImaging/Resample.c`), bicubic or bilinear filter, 8 bits a
/// channel.
mod pil {
    use super::RgbImage;

    const PRECISION_BITS: u32 = 32 - 8 - 2;

    #[derive(Clone, Copy)]
    pub enum Filter {
        Bilinear,
        Bicubic,
    }

    impl Filter {
        /// Pillow's `support`: the filter's half-width at scale 1.
        fn support(self) -> f64 {
            match self {
                Filter::Bilinear => 1.0,
                Filter::Bicubic => 2.0,
            }
        }

        fn weight(self, x: f64) -> f64 {
            let x = x.abs();
            match self {
                Filter::Bilinear => (1.0 - x).max(0.0),
                // Pillow uses a = -0.5.
                Filter::Bicubic => {
                    let a = -0.5;
                    if x < 1.0 {
                        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
                    } else if x < 2.0 {
                        (((x - 5.0) * x + 8.0) * x - 4.0) * a
                    } else {
                        0.0
                    }
                }
            }
        }
    }

    /// For each output index: first input index, tap count, and fixed-point weights.
    struct Coeffs {
        ksize: usize,
        bounds: Vec<(usize, usize)>,
        weights: Vec<i32>,
    }

    fn precompute(in_size: usize, out_size: usize, filter: Filter) -> Coeffs {
        let scale = in_size as f64 / out_size as f64;
        let filterscale = scale.max(1.0);
        let support = filter.support() * filterscale;
        let ksize = support.ceil() as usize * 2 + 1;
        let mut bounds = Vec::with_capacity(out_size);
        let mut weights = vec![0i32; out_size * ksize];
        let mut k = vec![0f64; ksize];
        for xx in 0..out_size {
            let center = (xx as f64 + 0.5) * scale;
            let ss = 1.0 / filterscale;
            // C casts truncate toward zero.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize - xmin;
            let mut ww = 0.0;
            for (x, kx) in k.iter_mut().enumerate().take(xmax) {
                let w = filter.weight((x as f64 + xmin as f64 - center + 0.5) * ss);
                *kx = w;
                ww += w;
            }
            for x in 0..xmax {
                if ww != 0.0 {
                    k[x] /= ww;
                }
                let v = k[x] * (1u32 << PRECISION_BITS) as f64;
                weights[xx * ksize + x] = if v < 0.0 { (v - 0.5) as i32 } else { (v + 0.5) as i32 };
            }
            bounds.push((xmin, xmax));
        }
        Coeffs { ksize, bounds, weights }
    }

    fn clip8(v: i64) -> u8 {
        if v >= (1i64 << PRECISION_BITS) << 8 {
            255
        } else if v <= 0 {
            0
        } else {
            (v >> PRECISION_BITS) as u8
        }
    }

    pub fn resize(image: &RgbImage, out_w: usize, out_h: usize, filter: Filter) -> RgbImage {
        let (in_w, in_h) = (image.width, image.height);
        let horiz = precompute(in_w, out_w, filter);
        let vert = precompute(in_h, out_h, filter);
        // Horizontal pass over the rows the vertical pass will read.
        let y_first = vert.bounds[0].0;
        let y_last = vert.bounds[out_h - 1].0 + vert.bounds[out_h - 1].1;
        let (mut src, mut src_w, mut row0) = (image.data.clone(), in_w, 0usize);
        if out_w != in_w {
            let rows = y_last - y_first;
            let mut tmp = vec![0u8; rows * out_w * 3];
            for y in 0..rows {
                for (xx, &(xmin, xmax)) in horiz.bounds.iter().enumerate() {
                    let k = &horiz.weights[xx * horiz.ksize..];
                    for c in 0..3 {
                        let mut ss: i64 = 1 << (PRECISION_BITS - 1);
                        for (x, &kx) in k.iter().enumerate().take(xmax) {
                            ss += image.data[((y + y_first) * in_w + x + xmin) * 3 + c] as i64 * kx as i64;
                        }
                        tmp[(y * out_w + xx) * 3 + c] = clip8(ss);
                    }
                }
            }
            src = tmp;
            src_w = out_w;
            row0 = y_first;
        }
        if out_h == in_h {
            // Pillow skips the vertical pass when the height does not change.
            return RgbImage { width: src_w, height: out_h, data: src };
        }
        let mut out = vec![0u8; out_w * out_h * 3];
        for (yy, &(ymin, ymax)) in vert.bounds.iter().enumerate() {
            let k = &vert.weights[yy * vert.ksize..];
            for x in 0..src_w {
                for c in 0..3 {
                    let mut ss: i64 = 1 << (PRECISION_BITS - 1);
                    for y in 0..ymax {
                        ss += src[((y + ymin - row0) * src_w + x) * 3 + c] as i64 * k[y] as i64;
                    }
                    out[(yy * src_w + x) * 3 + c] = clip8(ss);
                }
            }
        }
        RgbImage { width: src_w, height: out_h, data: out }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_side_follows_transformers_rounding() {
        assert_eq!(short_side_size(640, 427, 224), (335, 224));
        assert_eq!(short_side_size(100, 300, 64), (64, 192));
    }

    /// mmcv's `rescale_size` rounds the long side half up where transformers truncates: a
    /// 330x256 image at a short side of 224 is 289x224 in the papers' mmsegmentation pipelines
    /// (330 * 0.875 = 288.75).
    #[test]
    fn mmcv_rounds_the_long_side_half_up() {
        assert_eq!(Rounding::Mmcv.size(330, 256, 224), (289, 224));
        assert_eq!(Rounding::Transformers.size(330, 256, 224), (288, 224));
        assert_eq!(Rounding::Mmcv.size(256, 330, 224), (224, 289));
        // 640x427 to 224: 335.74 either way down, half up 336.
        assert_eq!(Rounding::Mmcv.size(640, 427, 224), (336, 224));
        // Under one half both agree: 500 * 224 / 333 = 336.3.
        assert_eq!(Rounding::Mmcv.size(500, 333, 224), (336, 224));
        assert_eq!(Rounding::Transformers.size(500, 333, 224), (336, 224));
        let pre = Preprocessor { crop: None, rounding: Rounding::Mmcv, ..Preprocessor::clip(224) };
        let image = RgbImage::new(330, 256, vec![128; 330 * 256 * 3]).unwrap();
        assert_eq!(pre.apply(&image).unwrap().1, (289, 224));
    }

    #[test]
    fn every_resize_refuses_a_strip_before_resizing() {
        // A 16384x1 strip at CLIP's 224 would be 3.7 M pixels long: refused, naming the sizes.
        let strip = RgbImage::new(16_384, 1, vec![0; 16_384 * 3]).unwrap();
        let err = Preprocessor::clip(224).apply(&strip).unwrap_err().to_string();
        assert!(err.contains("16384x1") && err.contains("3670016x224"), "{err}");
        // The same ratio at the limit passes.
        assert_eq!(checked_short_side_size(8192, 224, 224).unwrap(), (8192, 224));
        assert!(checked_short_side_size(8193, 224, 224).is_err());
    }

    #[test]
    fn resizing_a_flat_image_keeps_its_colour() {
        let img = RgbImage::new(37, 23, [10u8, 200, 90].repeat(37 * 23)).unwrap();
        let out = img.resize_bicubic(11, 64);
        assert_eq!((out.width, out.height), (11, 64));
        assert!(out.data.chunks(3).all(|p| p == [10, 200, 90]), "{:?}", &out.data[..9]);
    }

    #[test]
    fn bad_sizes_are_refused() {
        assert!(RgbImage::new(0, 5, vec![]).is_err());
        assert!(RgbImage::new(2, 2, vec![0; 5]).unwrap_err().to_string().contains("expected 12"));
        assert!(RgbImage::new(MAX_SIDE + 1, 1, vec![]).unwrap_err().to_string().contains("too large"));
    }
}
