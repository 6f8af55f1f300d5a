//! Open-Vocabulary SAM (Yuan et al., ECCV 2024), the interactive configuration of the authors'
//! demo (`SAMSegmentor` with `sam_r50x16_fpn`): a frozen CLIP ResNet (RN50x16) replaces SAM's
//! image encoder; a distilled neck ("SAM2CLIP") turns its four stages into SAM-shaped image
//! embeddings, and an FPN over the same stages gives the features that name the mask. Each
//! prompt runs SAM's prompt encoder (ViT-H's weights) and a mask decoder whose first output
//! token is a label token; the mask's box (`mask2bbox` of the low-resolution mask, times 4)
//! picks an FPN level, RoIAlign pools 7x7 features, a 1x1 convolution with ReLU and a mean give
//! one vector, and its cosine with each class embedding (the best of the class's prototypes,
//! times 100, with a zero background row) is softmaxed. The classes are the released LVIS
//! classifier's 1,203, or the typed words embedded with the RN50x16 text tower (14 ViLD
//! templates, synonyms as prototypes), as the classifier was built.
//!
//! The encode runs once per image ([`OvSamModel::encode`]); each prompt is light
//! ([`OvSamModel::decode`], then [`OvSamModel::roi_features`] and [`OvSamModel::logits`] once
//! its mask is read back).
//! Checkpoints come from `tools/convert_ovsam.py` (`model_type: ovsam`).

pub mod neck;
pub mod resnet;
pub mod roi;

use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::clip::TextConfig;
use crate::clip::text::TextTransformer;
use crate::error::{Error, Result};
use crate::loader::WeightLoader;
use crate::network::{ConfigJson, Fields, field, limits, overlay};
use crate::nn::{Linear, l2_normalize};
use crate::sam::config::{SamMaskDecoderConfig, SamPromptEncoderConfig, SamVisionConfig};
use crate::sam::{MaskDecoder, Point, PositionalEmbedding, PromptEncoder, SamConfig};
use crate::tokenizer::Tokenizer;
use neck::{Fpn, STRIDES, Sam2ClipNeck};
use resnet::ModifiedResNet;

/// The ResNet trunk's size (`ModifiedResNet(layers, width=...)`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackboneConfig {
    pub width: usize,
    pub layers: [usize; 4],
}

#[derive(Debug, Clone)]
pub struct OvSamConfig {
    pub backbone: BackboneConfig,
    /// The neck's transformer and convolutional neck (SAM's vision config), the prompt encoder
    /// and the mask decoder (one mask token).
    pub sam: SamConfig,
    pub fpn_channels: usize,
    /// Width of the class embeddings (CLIP's joint space).
    pub class_dim: usize,
    /// `log` of the cosine's temperature (`exp(4.6052)` = 100).
    pub logit_scale: f32,
    pub finest_scale: f32,
    pub roi_size: usize,
    pub text_config: TextConfig,
    pub templates: Vec<String>,
    /// The released classifier's class names, when the checkpoint carries it.
    pub vocabulary: Option<Vec<String>>,
}

/// The 14 ViLD templates the released classifier was built with.
pub const VILD_TEMPLATES: [&str; 14] = [
    "a photo of a {}.",
    "This is a photo of a {}",
    "There is a {} in the scene",
    "There is the {} in the scene",
    "a photo of a {} in the scene",
    "a photo of a small {}.",
    "a photo of a medium {}.",
    "a photo of a large {}.",
    "This is a photo of a small {}.",
    "This is a photo of a medium {}.",
    "This is a photo of a large {}.",
    "There is a small {} in the scene.",
    "There is a medium {} in the scene.",
    "There is a large {} in the scene.",
];

impl OvSamConfig {
    /// Parse a `config.json` with `model_type` `ovsam`; absent keys take RN50x16's values.
    pub fn from_json(text: &str) -> Result<Self> {
        Self::from_config(&ConfigJson::parse(text)?)
    }

    /// [`Self::from_json`] over a `config.json` parsed once.
    pub fn from_config(config: &ConfigJson) -> Result<Self> {
        let value = config.expect("ovsam", "OvSamModel")?;
        let neck_defaults = SamVisionConfig {
            hidden_size: 1280,
            num_hidden_layers: 5,
            num_attention_heads: 16,
            global_attn_indexes: vec![4],
            ..SamVisionConfig::default()
        };
        let decoder_defaults = SamMaskDecoderConfig { num_multimask_outputs: 0, ..SamMaskDecoderConfig::default() };
        let sub = |key: &str| value.get(key).cloned().unwrap_or_else(|| serde_json::json!({}));
        let sam = SamConfig {
            vision_config: overlay(&neck_defaults, &sub("vision_config"), "vision_config")?,
            prompt_encoder_config: overlay(
                &SamPromptEncoderConfig::default(),
                &sub("prompt_encoder_config"),
                "prompt_encoder_config",
            )?,
            mask_decoder_config: overlay(&decoder_defaults, &sub("mask_decoder_config"), "mask_decoder_config")?,
        };
        sam.validate()?;
        let text_defaults =
            TextConfig { hidden_size: 768, intermediate_size: 3072, num_attention_heads: 12, ..TextConfig::CLIP };
        let config = OvSamConfig {
            backbone: overlay(
                &BackboneConfig { width: 96, layers: [6, 8, 18, 8] },
                &sub("backbone_config"),
                "backbone_config",
            )?,
            sam,
            fpn_channels: field(value, "fpn_channels", 256)?,
            class_dim: field(value, "class_dim", 768)?,
            logit_scale: field(value, "logit_scale", 4.6052)?,
            finest_scale: field(value, "finest_scale", 56.0)?,
            roi_size: field(value, "roi_size", 7)?,
            text_config: overlay(&text_defaults, &sub("text_config"), "text_config")?,
            templates: field(value, "templates", VILD_TEMPLATES.iter().map(|t| t.to_string()).collect())?,
            vocabulary: field(value, "vocabulary", None)?,
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<()> {
        let check = |ok: bool, msg: String| if ok { Ok(()) } else { Err(Error::Config(msg)) };
        let b = &self.backbone;
        // The trunk's last stage is 32 times its width wide.
        Fields("backbone_config").size("width", b.width, limits::WIDTH / 32)?;
        Fields("backbone_config").sizes("layers", &b.layers, 1, limits::LAYERS)?;
        let top = Fields("");
        top.size("fpn_channels", self.fpn_channels, limits::WIDTH)?;
        top.size("class_dim", self.class_dim, limits::WIDTH)?;
        // exp(logit_scale) multiplies cosines: CLIP clamps it at 100 (a log of 4.6); past a log
        // of 20 the logits would be meaningless, past 88 infinite.
        top.number("logit_scale", f64::from(self.logit_scale), -20.0, 20.0)?;
        top.number("finest_scale", f64::from(self.finest_scale), f64::MIN_POSITIVE, limits::IMAGE_SIZE as f64)?;
        // RoIAlign's output side: 7 in the demo.
        top.size("roi_size", self.roi_size, 64)?;
        top.size("templates", self.templates.len(), 1024)?;
        if let Some(vocabulary) = &self.vocabulary {
            top.size("vocabulary", vocabulary.len(), limits::TOKENS)?;
        }
        self.text_config.validate()?;
        check(
            b.width >= 2 && b.width.is_multiple_of(2) && b.layers.iter().all(|&n| n > 0),
            format!("backbone_config: width {} must be even and every stage needs a block ({:?})", b.width, b.layers),
        )?;
        let v = &self.sam.vision_config;
        check(
            v.patch_size == neck::NECK_STRIDE && v.image_size.is_multiple_of(32),
            format!(
                "vision_config: the neck works on the stride-16 grid of an input that is a multiple of 32 (patch_size {}, image_size {})",
                v.patch_size, v.image_size
            ),
        )?;
        check(
            self.sam.mask_decoder_config.num_multimask_outputs == 0,
            "mask_decoder_config: Open-Vocabulary SAM's head has one mask token (num_multimask_outputs 0)".into(),
        )?;
        check(
            self.fpn_channels > 0 && self.class_dim > 0 && self.roi_size > 0 && self.finest_scale > 0.0,
            "fpn_channels, class_dim, roi_size and finest_scale must be positive".into(),
        )?;
        let t = &self.text_config;
        check(
            t.num_attention_heads > 0 && t.hidden_size.is_multiple_of(t.num_attention_heads),
            format!("text_config: hidden_size {} is not divisible by {} heads", t.hidden_size, t.num_attention_heads),
        )?;
        check(
            self.templates.iter().all(|t| t.contains("{}")) && !self.templates.is_empty(),
            "templates: each needs a {} where the word goes".into(),
        )
    }

    pub fn input_size(&self) -> usize {
        self.sam.vision_config.image_size
    }
}

/// An image after the heavy pass.
#[derive(Debug, Clone)]
pub struct OvSamFeatures {
    /// The neck's output, SAM's image embeddings, `[1, d, e, e]`.
    pub embeddings: Tensor<4>,
    /// The FPN's four levels, `[1, c, S/s, S/s]` for strides 4, 8, 16, 32.
    pub fpn: Vec<Tensor<4>>,
}

#[derive(Debug, Clone)]
pub struct OvSamModel {
    pub config: OvSamConfig,
    pub backbone: ModifiedResNet,
    pub neck: Sam2ClipNeck,
    pub fpn: Fpn,
    pub shared_image_embedding: PositionalEmbedding,
    pub prompt_encoder: PromptEncoder,
    pub mask_decoder: MaskDecoder,
    /// `roi_conv.weight` as `[class_dim, fpn_channels]`.
    pub roi_conv: Tensor<2>,
    pub text_model: TextTransformer,
    pub text_projection: Linear,
    /// The released classifier `[classes, prototypes, class_dim]`, when present.
    pub classifier: Option<Tensor<3>>,
    image_pe: Tensor<4>,
}

impl OvSamModel {
    pub fn load(config: OvSamConfig, loader: &mut WeightLoader) -> Self {
        let channels = ModifiedResNet::channels(config.backbone.width);
        let v = &config.sam.vision_config;
        let backbone = ModifiedResNet::load(loader.pp("backbone"), config.backbone.width, config.backbone.layers);
        let neck = Sam2ClipNeck::load(loader.pp("neck"), channels, v);
        let fpn = Fpn::load(loader.pp("fpn"), channels, config.fpn_channels);
        let shared_image_embedding = PositionalEmbedding::load(loader.pp("shared_image_embedding"), v.num_pos_feats);
        let prompt_encoder = PromptEncoder::load(loader.pp("prompt_encoder"), &config.sam.prompt_encoder_config);
        let mask_decoder = MaskDecoder::load_labelled(loader.pp("mask_decoder"), &config.sam.mask_decoder_config);
        let (d, c) = (config.class_dim, config.fpn_channels);
        let roi_conv = loader.tensor_as("roi_conv.weight", [d, c, 1, 1], [d, c]);
        let text_model = TextTransformer::load(loader.pp("text_model"), &config.text_config);
        let text_projection = Linear::load(loader.pp("text_projection"), config.text_config.hidden_size, d, false);
        let classifier = config.vocabulary.as_ref().map(|names| {
            let k = names.len();
            let p = loader.host_shape("classifier").and_then(|s| s.get(1).copied()).unwrap_or(1);
            loader.tensor("classifier", [k, p, d])
        });
        let e = prompt_encoder.embedding_size;
        let image_pe = if loader.checking() {
            Tensor::<4>::zeros([1, 1, 1, 1], loader.device()).expand([1, 2 * v.num_pos_feats, e, e])
        } else {
            shared_image_embedding.grid(e, loader.device())
        };
        OvSamModel {
            config,
            backbone,
            neck,
            fpn,
            shared_image_embedding,
            prompt_encoder,
            mask_decoder,
            roi_conv,
            text_model,
            text_projection,
            classifier,
            image_pe,
        }
    }

    pub fn device(&self) -> Device {
        self.image_pe.device()
    }

    pub fn input_size(&self) -> usize {
        self.config.input_size()
    }

    /// The backbone's four stages (for the parity tests; [`OvSamModel::encode`] runs them).
    pub fn stages(&self, pixels: Tensor<4>) -> Vec<Tensor<4>> {
        self.backbone.forward(pixels)
    }

    /// The heavy pass on padded, normalised pixels `[1, 3, S, S]`.
    pub fn encode(&self, pixels: Tensor<4>) -> Result<OvSamFeatures> {
        let [b, c, h, w] = pixels.dims();
        let s = self.input_size();
        if (b, c, h, w) != (1, 3, s, s) {
            return Err(Error::invalid(format!(
                "Open-Vocabulary SAM takes one padded {s}x{s} RGB input, got {b}x{c}x{h}x{w}"
            )));
        }
        let stages = self.stages(pixels);
        Ok(OvSamFeatures { embeddings: self.neck.forward(&stages), fpn: self.fpn.forward(&stages) })
    }

    /// `[1, d, e, e]`.
    pub fn image_positional_embeddings(&self) -> Tensor<4> {
        self.image_pe.clone()
    }

    /// The prompt's sparse embeddings (points and box in the model's input pixels). `-> [1, n, d]`
    pub fn sparse_embeddings(&self, points: &[Point], bbox: Option<[f64; 4]>) -> Result<Tensor<3>> {
        self.prompt_encoder.sparse(&self.shared_image_embedding, points, bbox, &self.device())
    }

    /// The low-resolution mask logits of one prompt, `[1, 4e, 4e]`.
    pub fn decode(&self, features: &OvSamFeatures, sparse: Tensor<3>) -> Result<Tensor<3>> {
        let dense = self.prompt_encoder.dense(None)?;
        Ok(self.mask_decoder.forward(features.embeddings.clone(), self.image_pe.clone(), sparse, dense, false).masks)
    }

    /// Many one-point prompts decoded side by side (automatic masks): the low-resolution mask
    /// logits of each, `[points, 1, 4e, 4e]`.
    pub fn decode_points(&self, features: &OvSamFeatures, points: &[Point]) -> Result<Tensor<4>> {
        let sparse = self.prompt_encoder.single_points(&self.shared_image_embedding, points, &self.device())?;
        let dense = self.prompt_encoder.dense(None)?;
        let embeddings = features.embeddings.clone();
        Ok(self.mask_decoder.forward_batch(embeddings, self.image_pe.clone(), sparse, dense, false).masks)
    }

    /// The box of a low-resolution mask (read back, `side x side`) in input pixels, and its
    /// FPN level.
    pub fn mask_box(&self, low_res: &[f32], side: usize) -> ([f32; 4], usize) {
        let scale = (self.input_size() / side) as f32;
        let b = roi::mask_box(low_res, side).map(|v| v * scale);
        (b, roi::roi_level(b, self.config.finest_scale, STRIDES.len()))
    }

    /// The RoI's feature: RoIAlign on its level, `roi_conv` with ReLU, the 7x7 mean. `-> [class_dim]`
    pub fn roi_features(&self, features: &OvSamFeatures, b: [f32; 4], level: usize) -> Tensor<1> {
        let map = &features.fpn[level];
        let [_, c, h, w] = map.dims();
        let out = self.config.roi_size;
        let d = self.config.class_dim;
        let sampling = roi::roi_align_weights(b, STRIDES[level], h, w, out);
        if sampling.weights.is_empty() {
            return Tensor::zeros([d], &self.device());
        }
        let (rows, cols) = (sampling.rows.clone(), sampling.cols.clone());
        let n = rows.len() * cols.len();
        let region = map.clone().slice([0..1, 0..c, rows, cols]).reshape([c, n]);
        let weights = Tensor::<2>::from_data(TensorData::new(sampling.weights, [out * out, n]), &self.device());
        let pooled = region.matmul(weights.transpose()); // [c, bins]
        let conv = burn::tensor::activation::relu(self.roi_conv.clone().matmul(pooled)); // [d, bins]
        conv.mean_dim(1).reshape([d])
    }

    /// Class logits of a RoI feature against `classes` `[k, p, class_dim]`: the best prototype's
    /// cosine times `exp(logit_scale)`. The background's logit is 0. `-> [k]`
    pub fn logits(&self, roi: Tensor<1>, classes: Tensor<3>) -> Tensor<1> {
        let [k, p, d] = classes.dims();
        let roi = l2_normalize(roi.reshape([1, d]));
        let cos = classes.reshape([k * p, d]).matmul(roi.transpose()).reshape([k, p]);
        cos.max_dim(1).reshape([k]).mul_scalar(self.config.logit_scale.exp())
    }

    /// Class embeddings of `classes` (each a list of names, every name split into prototypes as
    /// the released classifier was: `/` and `_or_` separate synonyms), `[k, p, class_dim]`: each
    /// prototype's template embeddings normalised, averaged and renormalised; classes with
    /// fewer prototypes repeat their first.
    pub fn class_embeddings(&self, tokenizer: &Tokenizer, classes: &[Vec<String>]) -> Result<Tensor<3>> {
        let prototypes: Vec<Vec<String>> = classes
            .iter()
            .map(|names| names.iter().flat_map(|n| roi::split_label(n)).filter(|s| !s.is_empty()).collect::<Vec<_>>())
            .collect();
        if let Some(i) = prototypes.iter().position(|p| p.is_empty()) {
            return Err(Error::invalid(format!("class {} has no name to embed", i + 1)));
        }
        let t = self.config.templates.len();
        let texts: Vec<String> = prototypes
            .iter()
            .flatten()
            .flat_map(|p| self.config.templates.iter().map(move |tpl| tpl.replace("{}", p)))
            .collect();
        let context = self.config.text_config.max_position_embeddings;
        let mut embedded = Vec::new();
        for chunk in texts.chunks(64) {
            let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
            let pooled = self.text_model.forward(&tokenizer.encode_batch(&refs, context))?;
            embedded.push(l2_normalize(self.text_projection.forward(pooled)));
        }
        let d = self.config.class_dim;
        let all = Tensor::cat(embedded, 0); // [prototypes * t, d]
        let total: usize = prototypes.iter().map(Vec::len).sum();
        let per_prototype = l2_normalize(all.reshape([total, t, d]).mean_dim(1).reshape([total, d]));
        let most = prototypes.iter().map(Vec::len).max().unwrap_or(1);
        let mut rows = Vec::with_capacity(classes.len() * most);
        let mut start = 0;
        for p in &prototypes {
            for j in 0..most {
                let i = start + if j < p.len() { j } else { 0 };
                rows.push(per_prototype.clone().slice([i..i + 1, 0..d]));
            }
            start += p.len();
        }
        Ok(Tensor::cat(rows, 0).reshape([classes.len(), most, d]))
    }
}

/// Softmax over the classes and a zero-logit background, the background dropped
/// (`cls_pred.softmax(-1)[..., :-1]`).
pub fn class_probabilities(logits: &[f32]) -> Vec<f32> {
    let top = logits.iter().copied().fold(0f32, f32::max);
    let exp: Vec<f32> = logits.iter().map(|l| (l - top).exp()).collect();
    let sum: f32 = exp.iter().sum::<f32>() + (-top).exp();
    exp.iter().map(|e| e / sum).collect()
}
