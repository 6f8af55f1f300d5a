//! The frozen encoders a Fusioner head trains on, assembled from the checkpoints a user names:
//! a CLIP checkpoint (its text tower embeds the class names), a vision-only ViT (`model_type:
//! vit`, e.g. DINO) with a CLIP checkpoint's text tower, or a Fusioner checkpoint to go on from
//! (its encoders and its head).

use burn::tensor::Device;

use super::{ClipText, FusionConfig, FusionHead, FusionerConfig, FusionerModel, ImageEncoder};
use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::loader;
use crate::network::model_type;
use crate::vit::VitModel;

/// The largest crop a head trains on, in patches a side: the frozen encoder's attention over
/// 48² tokens holds about 250 MB per crop at ViT-B's 12 heads (the paper's crops are 30 to 34
/// patches a side).
pub const MAX_CROP_PATCHES: usize = 48;

/// A checkpoint as named: its `config.json` text and opened weights.
pub struct Named<'a> {
    pub config: &'a str,
    pub checkpoint: &'a Checkpoint<'a>,
}

/// What the head trains on: the backbone and, for a vision-only one, the text encoder's
/// checkpoint.
pub struct Backbone<'a> {
    pub image: Named<'a>,
    pub text: Option<Named<'a>>,
}

/// How a new head is made and what it sees.
pub struct NewHead {
    pub fusion: FusionConfig,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// Square crops (default: the image encoder's input size).
    pub crop: Option<usize>,
    pub seed: u64,
}

impl Backbone<'_> {
    /// The backbone's `model_type`, checked against the text encoder given: a vision-only
    /// backbone needs one, the others bring their own.
    pub fn kind(&self) -> Result<String> {
        let kind = model_type(self.image.config)?;
        match (kind.as_str(), &self.text) {
            ("vit", None) => Err(Error::invalid("a vision-only backbone needs --text CLIP_DIR for the class names")),
            ("vit", Some(text)) => match model_type(text.config)?.as_str() {
                "clip" => Ok(kind),
                other => Err(Error::invalid(format!(
                    "the text encoder's model_type is '{other}'; it must be a CLIP checkpoint"
                ))),
            },
            (_, Some(_)) => Err(Error::invalid(format!(
                "--text goes with a vision-only (ViT) backbone; a {kind} backbone brings its own text tower"
            ))),
            ("clip" | "fusioner", None) => Ok(kind),
            (other, None) => Err(Error::invalid(format!(
                "model_type '{other}'; the backbone must be a CLIP (model_type 'clip'), ViT ('vit') or Fusioner checkpoint"
            ))),
        }
    }

    /// The frozen encoders with a new head (a CLIP or ViT backbone), or the Fusioner checkpoint
    /// as it is (its crop must then be the one asked for, if any).
    pub fn load(&self, head: &NewHead, device: &Device) -> Result<FusionerModel> {
        let mut model = match self.kind()?.as_str() {
            "clip" => {
                let clip_json: serde_json::Value = serde_json::from_str(self.image.config)
                    .map_err(|e| Error::Config(format!("config.json is not valid JSON: {e}")))?;
                let config = FusionerConfig::new(clip_json, None, head.fusion, head.mean, head.std)?;
                let (image, text) = loader::load(self.image.checkpoint, device, "CLIPModel", |l| {
                    Ok((ImageEncoder::load_clip(l, &config.clip), ClipText::load(l, &config.clip)))
                })?;
                let new =
                    FusionHead::init(head.fusion, config.visual_dim(), config.clip.projection_dim, head.seed, device);
                FusionerModel { config, image, text, head: new }
            }
            "vit" => self.load_vit(head, device)?,
            _ => {
                let config = FusionerConfig::from_json(self.image.config)?;
                let model = loader::load(self.image.checkpoint, device, "Fusioner", |l| {
                    Ok(FusionerModel::load(config.clone(), l))
                })?;
                check_crop(head.crop, model.config.crop_size)?;
                return Ok(model);
            }
        };
        if let Some(crop) = head.crop {
            let patch = model.config.patch_size();
            if crop > MAX_CROP_PATCHES * patch {
                return Err(Error::invalid(format!(
                    "--crop {crop} is {} patches a side; at most {MAX_CROP_PATCHES} ({} pixels with this encoder's {patch}-pixel patches) fit in memory",
                    crop / patch,
                    MAX_CROP_PATCHES * patch
                )));
            }
            model.config = model.config.clone().with_crop(crop)?;
        }
        Ok(model)
    }

    /// A vision-only ViT with a CLIP checkpoint's text tower (only the text tower is read).
    fn load_vit(&self, head: &NewHead, device: &Device) -> Result<FusionerModel> {
        let text = self.text.as_ref().ok_or_else(|| Error::invalid("a vision-only backbone needs a text encoder"))?;
        let parse = |text: &str| -> Result<serde_json::Value> {
            serde_json::from_str(text).map_err(|e| Error::Config(format!("config.json is not valid JSON: {e}")))
        };
        let config = FusionerConfig::new(
            parse(text.config)?,
            Some(parse(self.image.config)?),
            head.fusion,
            head.mean,
            head.std,
        )?;
        let vit_config =
            config.vision.as_ref().map(|(v, _)| v.clone()).ok_or_else(|| Error::invalid("no ViT config"))?;
        let vit =
            loader::load(self.image.checkpoint, device, "ViTModel", |l| Ok(VitModel::load(l, "", vit_config.clone())))?;
        let text = loader::load(text.checkpoint, device, "CLIPModel (text tower)", |l| {
            l.skip_prefix("vision_model.");
            l.skip_prefix("visual_projection.");
            Ok(ClipText::load(l, &config.clip))
        })?;
        let new = FusionHead::init(head.fusion, config.visual_dim(), config.clip.projection_dim, head.seed, device);
        Ok(FusionerModel { config, image: ImageEncoder::Vit(vit), text, head: new })
    }
}

/// A crop asked for a checkpoint already trained on another is refused.
fn check_crop(asked: Option<usize>, trained: usize) -> Result<()> {
    match asked {
        Some(crop) if crop != trained => {
            Err(Error::invalid(format!("--crop {crop}: this checkpoint was trained on {trained} crops")))
        }
        _ => Ok(()),
    }
}

impl FusionerModel {
    /// Go on from a checkpoint saved by training: its head and settings over these frozen
    /// encoders (which must be the ones it was trained on).
    pub fn resume(&mut self, saved_config: &str, saved: &Checkpoint<'_>, crop: Option<usize>) -> Result<()> {
        let config = FusionerConfig::from_json(saved_config)?;
        if config.visual_dim() != self.config.visual_dim() {
            return Err(Error::invalid("the checkpoint to resume was trained on another backbone"));
        }
        check_crop(crop, config.crop_size)?;
        // Only the head: the frozen encoders are the backbone's.
        let (visual, text) = (config.visual_dim(), config.clip.projection_dim);
        self.head = loader::load(saved, &self.image.device(), "Fusioner head", |l| {
            l.skip_where(|n| !(n.starts_with("fusion.") || n.starts_with("decoder.")));
            Ok(FusionHead::load(l, config.fusion, visual, text))
        })?;
        self.config = config;
        Ok(())
    }
}
