//! The frozen encoders a Fusioner head trains on, assembled from the checkpoints a user names:
//! a CLIP checkpoint (its text tower embeds the class names, unless a BERT is named for the
//! text), a vision-only ViT (`model_type: vit`, e.g. DINO or MoCo v3) with a CLIP checkpoint's
//! text tower or a BERT, or a Fusioner checkpoint to go on from (its encoders and its head).

use burn::tensor::Device;

use super::{
    BertText, BertTower, ClipText, DEFAULT_POOLING, FusionConfig, FusionHead, FusionerConfig, FusionerModel,
    ImageEncoder, TextModel, TextTower,
};
use crate::bert::{BertConfig, Pooling, WordPiece};
use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::loader;
use crate::network::model_type;
use crate::vit::VitModel;

/// The largest crop a head trains on, in patches a side: the frozen encoder's attention over
/// 48² tokens holds about 250 MB per crop at ViT-B's 12 heads (the paper's crops are 30 to 34
/// patches a side).
pub const MAX_CROP_PATCHES: usize = 48;

/// The key prefixes of a CLIP checkpoint's text side, and of its vision side.
pub const CLIP_TEXT: [&str; 3] = ["text_model.", "text_projection.", "logit_scale"];
pub const CLIP_VISION: [&str; 2] = ["vision_model.", "visual_projection."];

/// A checkpoint as named: its `config.json` text and opened weights.
pub struct Named<'a> {
    pub config: &'a str,
    pub checkpoint: &'a Checkpoint<'a>,
}

/// What the head trains on: the image encoder's checkpoint and, where the class names are
/// embedded by another, the text encoder's, with its vocabulary when it is a BERT.
pub struct Backbone<'a> {
    pub image: Named<'a>,
    pub text: Option<Named<'a>>,
    /// A BERT text encoder's WordPiece vocabulary (its folder's `vocab.txt` or
    /// `tokenizer.json`, [`WordPiece::from_folder_files`]).
    pub vocabulary: Option<WordPiece>,
}

/// How a new head is made and what it sees.
pub struct NewHead {
    pub fusion: FusionConfig,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// Square crops (default: the image encoder's input size).
    pub crop: Option<usize>,
    pub seed: u64,
    /// How a BERT text encoder pools a prompt (`None`: [`DEFAULT_POOLING`]); refused with any
    /// other text encoder.
    pub pooling: Option<Pooling>,
}

/// Which text encoder a backbone pairs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextKind {
    /// The backbone's own (a CLIP's, or a Fusioner checkpoint's).
    Own,
    /// Another CLIP checkpoint's text tower.
    Clip,
    /// A BERT (`BertModel`).
    Bert,
}

impl Backbone<'_> {
    /// The backbone's `model_type`, checked against the text encoder given: a vision-only
    /// backbone needs one (a CLIP's text tower or a BERT), a CLIP backbone may take a BERT for
    /// the text, and a Fusioner checkpoint brings its own.
    pub fn kind(&self) -> Result<String> {
        Ok(self.kinds()?.0)
    }

    /// [`Backbone::kind`] and the text encoder's kind.
    pub fn kinds(&self) -> Result<(String, TextKind)> {
        let kind = model_type(self.image.config)?;
        let named = match &self.text {
            None => None,
            Some(text) => Some(match model_type(text.config)?.as_str() {
                "clip" => TextKind::Clip,
                "bert" => TextKind::Bert,
                other => {
                    let shown = if other.is_empty() { "none".to_string() } else { format!("'{other}'") };
                    return Err(Error::Config(format!(
                        "the text encoder's model_type is {shown}; --text takes a CLIP (model_type 'clip') or a BERT ('bert', transformers' BertModel) checkpoint"
                    )));
                }
            }),
        };
        let text = match (kind.as_str(), named) {
            ("vit", None) => {
                return Err(Error::invalid(
                    "a vision-only backbone needs --text DIR (a CLIP or BERT checkpoint) for the class names",
                ));
            }
            ("vit", Some(t)) | ("clip", Some(t @ TextKind::Bert)) => t,
            ("clip", Some(_)) => {
                return Err(Error::invalid(
                    "--text with a CLIP backbone takes a BERT checkpoint; the CLIP brings its own CLIP text tower",
                ));
            }
            ("fusioner", Some(_)) => {
                return Err(Error::invalid(
                    "--text goes with a new head; a Fusioner checkpoint brings its own text encoder",
                ));
            }
            ("clip" | "fusioner", None) => TextKind::Own,
            (other, _) => {
                return Err(Error::invalid(format!(
                    "model_type '{other}'; the backbone must be a CLIP (model_type 'clip'), ViT ('vit') or Fusioner checkpoint"
                )));
            }
        };
        if text == TextKind::Bert && self.vocabulary.is_none() {
            return Err(Error::Config(
                "the BERT text encoder has no vocabulary: its folder holds neither vocab.txt nor tokenizer.json".into(),
            ));
        }
        Ok((kind, text))
    }

    /// The frozen encoders with a new head (a CLIP or ViT backbone), or the Fusioner checkpoint
    /// as it is (its crop must then be the one asked for, if any).
    pub fn load(&self, head: &NewHead, device: &Device) -> Result<FusionerModel> {
        let (kind, text_kind) = self.kinds()?;
        if head.pooling.is_some() && text_kind != TextKind::Bert {
            return Err(Error::invalid(
                "--text-pooling applies to a BERT text encoder (--text with a BertModel checkpoint)",
            ));
        }
        if kind == "fusioner" {
            let config = FusionerConfig::from_json(self.image.config)?;
            let model =
                loader::load(self.image.checkpoint, device, "Fusioner", |l| FusionerModel::load(config.clone(), l))?;
            check_crop(head.crop, model.config.crop_size)?;
            return Ok(model);
        }
        let config = self.config(&kind, text_kind, head)?;
        let (image, text) = match text_kind {
            // Both towers from the one checkpoint, in one pass.
            TextKind::Own => {
                let clip = config.clip_config()?;
                loader::load(self.image.checkpoint, device, "CLIPModel", |l| {
                    Ok((ImageEncoder::load_clip(l, clip), TextTower::Clip(ClipText::load(l, clip))))
                })?
            }
            _ => (self.load_image(&config, device)?, self.load_text(&config, device)?),
        };
        let new = FusionHead::init(head.fusion, config.visual_dim(), config.text_dim(), head.seed, device);
        let mut model = FusionerModel { config, image, text, head: new };
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

    /// The new head's config from the encoders' `config.json`s.
    fn config(&self, kind: &str, text_kind: TextKind, head: &NewHead) -> Result<FusionerConfig> {
        let parse = |text: &str| -> Result<serde_json::Value> {
            serde_json::from_str(text).map_err(|e| Error::Config(format!("config.json is not valid JSON: {e}")))
        };
        let image = parse(self.image.config)?;
        let text_json = self.text.as_ref().map(|t| parse(t.config)).transpose()?;
        let (mut clip, vision) = if kind == "vit" { (None, Some(image)) } else { (Some(image), None) };
        let text = match (text_kind, text_json) {
            (TextKind::Bert, Some(json)) => {
                let vocabulary = self.vocabulary.clone().ok_or_else(|| Error::invalid("no BERT vocabulary"))?;
                let bert = BertConfig::from_value(&json)?;
                TextModel::Bert(BertText::new(bert, json, head.pooling.unwrap_or(DEFAULT_POOLING), vocabulary)?)
            }
            (TextKind::Clip, Some(json)) => {
                clip = Some(json);
                TextModel::Clip
            }
            _ => TextModel::Clip,
        };
        FusionerConfig::new(clip, vision, text, head.fusion, head.mean, head.std)
    }

    /// The image encoder alone: a ViT, or a CLIP's vision tower (its text side left unread).
    fn load_image(&self, config: &FusionerConfig, device: &Device) -> Result<ImageEncoder> {
        match &config.vision {
            Some((vit, _)) => loader::load(self.image.checkpoint, device, "ViTModel", |l| {
                Ok(ImageEncoder::Vit(VitModel::load(l, "", vit.clone())))
            }),
            None => {
                let clip = config.clip_config()?;
                loader::load(self.image.checkpoint, device, "CLIPModel (vision tower)", |l| {
                    CLIP_TEXT.iter().for_each(|p| l.skip_prefix(p));
                    Ok(ImageEncoder::load_clip(l, clip))
                })
            }
        }
    }

    /// The text encoder of `--text`: a CLIP's text tower (its vision side left unread), or a
    /// BERT.
    fn load_text(&self, config: &FusionerConfig, device: &Device) -> Result<TextTower> {
        let text = self.text.as_ref().ok_or_else(|| Error::invalid("no text encoder was named"))?;
        match &config.text {
            TextModel::Bert(bert) => loader::load(text.checkpoint, device, "BertModel", |l| {
                BertTower::load(l, "", bert).map(TextTower::Bert)
            }),
            TextModel::Clip => {
                let clip = config.clip_config()?;
                loader::load(text.checkpoint, device, "CLIPModel (text tower)", |l| {
                    CLIP_VISION.iter().for_each(|p| l.skip_prefix(p));
                    Ok(TextTower::Clip(ClipText::load(l, clip)))
                })
            }
        }
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
    /// encoders (which must be the ones it was trained on, the text encoder pooling as it did).
    pub fn resume(&mut self, saved_config: &str, saved: &Checkpoint<'_>, crop: Option<usize>) -> Result<()> {
        let config = FusionerConfig::from_json(saved_config)?;
        if config.visual_dim() != self.config.visual_dim() || config.text_dim() != self.config.text_dim() {
            return Err(Error::invalid("the checkpoint to resume was trained on another backbone"));
        }
        if config.encoders() != self.config.encoders() {
            return Err(Error::invalid(format!(
                "the checkpoint to resume was trained with {}; these encoders are {}",
                config.encoders(),
                self.config.encoders()
            )));
        }
        check_crop(crop, config.crop_size)?;
        // Only the head: the frozen encoders are the backbone's.
        let (visual, text) = (config.visual_dim(), config.text_dim());
        self.head = loader::load(saved, &self.image.device(), "Fusioner head", |l| {
            l.skip_where(|n| !(n.starts_with("fusion.") || n.starts_with("decoder.")));
            Ok(FusionHead::load(l, config.fusion, visual, text))
        })?;
        self.config = config;
        Ok(())
    }
}
