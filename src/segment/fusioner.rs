//! The Fusioner engine: evaluation as the Fusioner repository runs it (chaofanma/Fusioner @
//! 01985ed, `FullModel.multi_scale_eval` with `--test_with_org_resolution`): the image at its
//! own resolution (or its short side resized first, when asked), normalised with the
//! checkpoint's statistics, padded to at least one crop with the repository's pad value, crops
//! every `stride` pixels from the top-left (edge crops padded, not shifted back), per-crop
//! logits averaged where crops overlap. Each typed word (each synonym) goes through the fusion
//! on its own, as in the repository's one-class model. A class holds a pixel when its sigmoid
//! passes the threshold (0.5, the repository's `get_preds`) and is the highest there.

use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Tensor, TensorData};
use serde::Serialize;

use super::engine::{DatasetProtocol, Engine, Plan, Scores};
use super::result::{PixelSteps, ThresholdOn};
use super::slide::{Window, Windows, check_score_size, check_window_count, stitch};
use super::text::{ClassEmbeddings, Templates};
use super::{BackgroundDataset, Settings};
use crate::error::{Error, Result};
use crate::fusioner::{FusionerConfig, FusionerModel};
use crate::loader::WeightLoader;
use crate::network::ConfigJson;
use crate::network::Network;
use crate::preprocess::{Preprocessor, RgbImage, Rounding, checked_short_side_size, normalize};

/// `pad_image`'s value: `-pad_mean / pad_std` with both 0.5, in normalised units.
pub const PAD_VALUE: f32 = -1.0;

pub struct Fusioner;

/// How to segment with Fusioner.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Options {
    pub templates: Templates,
    /// Resize the image's short side to this first; 0 keeps the original resolution (the
    /// repository's evaluation).
    pub short_side: usize,
    /// Crop step in pixels; 0 takes the checkpoint's (two thirds of a crop).
    pub stride: usize,
    /// A pixel's class needs a sigmoid above this; below, it is background.
    pub threshold: f32,
    pub background: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options { templates: Templates::Fusioner, short_side: 0, stride: 0, threshold: 0.5, background: Vec::new() }
    }
}

impl Options {
    fn with(settings: &Settings) -> Result<Self> {
        let d = Options::default();
        if settings.window.is_some_and(|w| w != 0) {
            return Err(Error::invalid(
                "Fusioner's crops are the checkpoint's crop size (config.json crop_size); set stride, not window",
            ));
        }
        if settings.rounding.is_some() {
            return Err(Error::invalid(
                "rounding applies to the windowed engines (dense, groupvit, segclip); Fusioner resizes as transformers does",
            ));
        }
        let options = Options {
            templates: settings.templates.unwrap_or(d.templates),
            short_side: settings.short_side.unwrap_or(d.short_side),
            stride: settings.stride.unwrap_or(d.stride),
            threshold: settings.threshold_or(d.threshold)?,
            background: settings.background_or(&d.background),
        };
        if options.short_side != 0 && !(16..=4096).contains(&options.short_side) {
            return Err(Error::invalid(format!(
                "short side must be 0 (the original resolution) or in [16, 4096] pixels, got {}",
                options.short_side
            )));
        }
        Ok(options)
    }

    /// The stride for `config`'s crops, refused when larger than a crop.
    fn stride_for(&self, config: &FusionerConfig) -> Result<usize> {
        let stride = if self.stride == 0 { config.stride } else { self.stride };
        if stride > config.crop_size {
            return Err(Error::invalid(format!(
                "stride must be in [1, crop size = {}], got {stride}",
                config.crop_size
            )));
        }
        Ok(stride)
    }
}

/// Crops along one side of `padded` pixels (at least `crop`).
fn crop_grid(padded: usize, crop: usize, stride: usize) -> usize {
    (padded - crop).div_ceil(stride.max(1)) + 1
}

/// The repository's crops over an `h x w` image padded to at least `crop` each way: origins
/// every `stride` from 0, `ceil((padded - crop) / stride) + 1` per axis, each cut at the padded
/// image's edge.
pub fn crop_windows(h: usize, w: usize, crop: usize, stride: usize) -> Vec<Window> {
    let (ph, pw) = (h.max(crop), w.max(crop));
    let mut out = Vec::new();
    for i in 0..crop_grid(ph, crop, stride) {
        for j in 0..crop_grid(pw, crop, stride) {
            let (y1, x1) = (i * stride, j * stride);
            out.push(Window { y1, y2: (y1 + crop).min(ph), x1, x2: (x1 + crop).min(pw) });
        }
    }
    out
}

/// `pixels` `[1, 3, h, w]` padded with [`PAD_VALUE`] to `ph x pw` (right and bottom).
fn pad(pixels: Tensor<4>, ph: usize, pw: usize) -> Tensor<4> {
    let [_, c, h, w] = pixels.dims();
    if (h, w) == (ph, pw) {
        return pixels;
    }
    let canvas = Tensor::<4>::full([1, c, ph, pw], PAD_VALUE, &pixels.device());
    canvas.slice_assign([0..1, 0..c, 0..h, 0..w], pixels)
}

/// The crop of `window` from the padded image, padded to `crop x crop`.
pub fn window_crop(padded: &Tensor<4>, window: &Window, crop: usize) -> Tensor<4> {
    let cut = padded.clone().slice([0..1, 0..3, window.y1..window.y2, window.x1..window.x2]);
    pad(cut, crop, crop)
}

/// Normalised pixels `[1, 3, h, w]`: the original image, or its short side resized.
pub fn image_pixels(
    preprocessor: &Preprocessor,
    image: &RgbImage,
    short_side: usize,
    device: &Device,
) -> Result<Tensor<4>> {
    let (chw, (w, h)) = if short_side == 0 {
        (normalize(image, preprocessor.mean, preprocessor.std), (image.width, image.height))
    } else {
        Preprocessor { short_side, crop: None, ..preprocessor.clone() }.apply(image)?
    };
    Ok(Tensor::from_data(TensorData::new(chw, [1, 3, h, w]), device))
}

/// Stitched logits `[1, k, h, w]` of normalised pixels `[1, 3, h, w]` against class embeddings
/// `[k, proj]`.
pub fn stitched_logits(
    model: &FusionerModel,
    pixels: Tensor<4>,
    classes: &Tensor<2>,
    stride: usize,
) -> Result<Tensor<4>> {
    let [_, _, h, w] = pixels.dims();
    let k = classes.dims()[0];
    let crop = model.config.crop_size;
    let (ph, pw) = (h.max(crop), w.max(crop));
    let device = pixels.device();
    let padded = pad(pixels, ph, pw);
    check_window_count(crop_grid(ph, crop, stride) * crop_grid(pw, crop, stride), (w, h), stride)?;
    let windows = crop_windows(h, w, crop, stride);
    // Edge crops are padded to a whole crop, so every crop batches; each window keeps the part
    // of its logits that lies on the image.
    let crop_of = |win: &Window| window_crop(&padded, win, crop);
    let stitched = stitch(&windows, (ph, pw), k, &device, crop_of, |crops| model.crop_logits(crops, classes))?;
    Ok(stitched.slice([0..1, 0..k, 0..h, 0..w]))
}

impl Engine for Fusioner {
    const NAME: &'static str = "fusioner";
    const MODEL_TYPE: &'static str = "fusioner";
    const ARCHITECTURE: &'static str = "Fusioner";
    const DESCRIPTION: &'static str = "Fusioner (trained fusion head)";
    const THRESHOLD_MEANS: &'static str = "Background where every probability is under";
    const CLASS: &'static str = "Fusioner";
    type Network = FusionerModel;
    type Options = Options;

    fn load(config: &ConfigJson, loader: &mut WeightLoader) -> Result<FusionerModel> {
        FusionerModel::load(FusionerConfig::from_config(config)?, loader)
    }

    fn options(settings: &Settings) -> Result<Options> {
        Options::with(settings)
    }

    fn plan(options: &Options) -> Plan {
        Plan {
            engine: Self::NAME,
            method: Self::NAME.into(),
            templates: options.templates,
            windows: Windows {
                short_side: options.short_side,
                window: 0,
                stride: options.stride,
                rounding: Rounding::Transformers,
            },
            background: options.background.clone(),
            threshold: options.threshold,
            min_score: 0.0,
            engine_background: true,
        }
    }

    fn scores(
        model: &FusionerModel,
        preprocessor: &Preprocessor,
        image: &RgbImage,
        classes: &ClassEmbeddings,
        options: &Options,
    ) -> Result<Scores> {
        let stride = options.stride_for(&model.config)?;
        let names = classes.names.dims()[0];
        let (w, h) = if options.short_side == 0 {
            (image.width, image.height)
        } else {
            checked_short_side_size(image.width, image.height, options.short_side)?
        };
        check_score_size(names + 1, w, h, options.short_side.max(w.min(h)), &model.device())?;
        let pixels = image_pixels(preprocessor, image, options.short_side, &model.device())?;
        let logits = stitched_logits(model, pixels, &classes.names, stride)?;
        let background = Tensor::<4>::full([1, 1, h, w], options.threshold, &model.device());
        let maps = Tensor::cat(vec![sigmoid(logits), background], 1).squeeze_dim(0);
        let steps = PixelSteps {
            softmax_scale: None,
            class_of_name: classes.class_of_name.clone(),
            classes: classes.num_classes,
            renormalise: false,
            threshold_on: ThresholdOn::Merged,
            fold_extra: classes.background,
            area_threshold: None,
            dropped: Vec::new(),
        };
        Ok(Scores { maps, steps })
    }

    /// The repository evaluates one class at a time against the threshold; a dataset's
    /// background name is not embedded.
    fn dataset_protocol(_dataset: BackgroundDataset) -> DatasetProtocol {
        DatasetProtocol { threshold: 0.5, embeds_background_name: false }
    }
}
