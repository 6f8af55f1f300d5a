//! SAM's pre- and post-processing, as transformers' `SamProcessor` (PIL backend) does it: the
//! longest side resized to 1024 (Pillow's bilinear filter, rounding as `_get_preprocess_shape`),
//! ImageNet mean and std, zeros padded at the bottom and right to 1024 x 1024; prompt
//! coordinates scaled by the same factors; the low-resolution masks resized to the padded
//! input, cropped to the image's part and resized to the image's own size.

use burn::tensor::{Device, Tensor, TensorData};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::nn::{bilinear_rows, resize_bilinear};
use crate::preprocess::{RgbImage, check_statistics, normalize};

/// ImageNet statistics, `SamImageProcessor`'s defaults.
const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// PIL's resampling filters by their numbers in `preprocessor_config.json`.
const PIL_BILINEAR: u32 = 2;
const PIL_BICUBIC: u32 = 3;

#[derive(Debug, Clone)]
pub struct SamProcessor {
    /// The image's longer side becomes this.
    pub longest_edge: usize,
    /// `(height, width)` of the zero-padded input.
    pub pad: (usize, usize),
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// Pillow's bicubic filter instead of the bilinear one.
    pub bicubic: bool,
    /// Resized sides truncated (`int(side * scale)`, Open-Vocabulary SAM's demo) instead of
    /// rounded half up (transformers).
    pub floor_resize: bool,
}

#[derive(Deserialize)]
struct Raw {
    size: Option<serde_json::Value>,
    pad_size: Option<serde_json::Value>,
    image_mean: Option<[f32; 3]>,
    image_std: Option<[f32; 3]>,
    resample: Option<u32>,
}

impl SamProcessor {
    /// `SamImageProcessor()`'s settings for a model whose input is `input_size` pixels square.
    pub fn new(input_size: usize) -> Self {
        SamProcessor {
            longest_edge: input_size,
            pad: (input_size, input_size),
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
            bicubic: false,
            floor_resize: false,
        }
    }

    /// Read `preprocessor_config.json`; the pad must be the model's input size.
    pub fn from_json(text: &str, input_size: usize) -> Result<Self> {
        let raw: Raw =
            serde_json::from_str(text).map_err(|e| Error::Config(format!("preprocessor_config.json: {e}")))?;
        let int = |v: &Option<serde_json::Value>, key: &str| {
            // On wasm32 a u64 does not fit a usize: too large stays too large.
            v.as_ref()
                .and_then(|v| v.get(key))
                .and_then(|x| x.as_u64())
                .map(|x| usize::try_from(x).unwrap_or(usize::MAX))
        };
        let d = Self::new(input_size);
        let p = SamProcessor {
            longest_edge: int(&raw.size, "longest_edge").unwrap_or(d.longest_edge),
            pad: (int(&raw.pad_size, "height").unwrap_or(d.pad.0), int(&raw.pad_size, "width").unwrap_or(d.pad.1)),
            mean: raw.image_mean.unwrap_or(d.mean),
            std: raw.image_std.unwrap_or(d.std),
            bicubic: match raw.resample.unwrap_or(PIL_BILINEAR) {
                PIL_BILINEAR => false,
                PIL_BICUBIC => true,
                other => {
                    return Err(Error::Config(format!(
                        "preprocessor_config.json: resample {other} is not supported (2 = bilinear, 3 = bicubic)"
                    )));
                }
            },
            floor_resize: false,
        };
        check_statistics(p.mean, p.std)?;
        if p.pad != (input_size, input_size) || p.longest_edge == 0 || p.longest_edge > input_size {
            return Err(Error::Config(format!(
                "preprocessor_config.json: pad_size {:?} and longest_edge {} do not fit the model's {input_size}-pixel input",
                p.pad, p.longest_edge
            )));
        }
        Ok(p)
    }

    /// `(width, height)` after the resize (`_get_preprocess_shape`: scaled in f64, rounded half up, or truncated).
    pub fn resized_size(&self, width: usize, height: usize) -> (usize, usize) {
        let scale = self.longest_edge as f64 / width.max(height) as f64;
        let half = if self.floor_resize { 0.0 } else { 0.5 };
        let round = |v: usize| ((v as f64 * scale + half) as usize).max(1);
        (round(width), round(height))
    }

    /// The padded, normalised input `[1, 3, pad_h, pad_w]` and the resized size `(w, h)`.
    pub fn pixels(&self, image: &RgbImage, device: &Device) -> (Tensor<4>, (usize, usize)) {
        let (w, h) = self.resized_size(image.width, image.height);
        let resized = match ((w, h) == (image.width, image.height), self.bicubic) {
            (true, _) => image.clone(),
            (false, true) => image.resize_bicubic(w, h),
            (false, false) => image.resize_bilinear(w, h),
        };
        let chw = normalize(&resized, self.mean, self.std);
        let (ph, pw) = self.pad;
        let mut padded = vec![0f32; 3 * ph * pw];
        for c in 0..3 {
            for y in 0..h {
                padded[(c * ph + y) * pw..][..w].copy_from_slice(&chw[(c * h + y) * w..][..w]);
            }
        }
        (Tensor::from_data(TensorData::new(padded, [1, 3, ph, pw]), device), (w, h))
    }

    /// A coordinate pair of the original image in the model's input (`_normalize_coordinates`).
    pub fn to_input(&self, x: f64, y: f64, original: (usize, usize)) -> (f64, f64) {
        let (w, h) = self.resized_size(original.0, original.1);
        (x * (w as f64 / original.0 as f64), y * (h as f64 / original.1 as f64))
    }

    /// Low-resolution mask logits `[n, m, m]` brought to the padded input and cropped to the
    /// resized image, `[n, rh, rw]` (`post_process_masks`' first two steps, on the device; at
    /// most the input size, whatever the photo's).
    pub fn cropped(&self, masks: Tensor<3>, resized: (usize, usize)) -> Tensor<3> {
        let [n, m, _] = masks.dims();
        let (ph, pw) = self.pad;
        let padded = resize_bilinear(masks.reshape([1, n, m, m]), ph, pw);
        padded.slice([0..1, 0..n, 0..resized.1, 0..resized.0]).reshape([n, resized.1, resized.0])
    }

    /// One cropped mask `[rh, rw]` (host) at the original image's size, a row at a time
    /// (`post_process_masks`' last step): memory stays at one row of the photo.
    pub fn upscale_rows(
        &self,
        mask: &[f32],
        resized: (usize, usize),
        original: (usize, usize),
        row: impl FnMut(usize, &[f32]),
    ) {
        bilinear_rows(mask, resized, original, row);
    }
}
