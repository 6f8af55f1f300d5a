//! Open-Vocabulary SAM as a prompt engine (checkpoints converted by `tools/convert_ovsam.py`):
//! SAM's prompt encoder and a one-mask-token decoder give the mask, and the mask's box picks an
//! FPN level whose RoI features name it, among the typed words or the checkpoint's own
//! classifier (LVIS's 1,203 classes in the release).

use burn::tensor::{Device, Tensor};

use super::super::engine::Preset;
use super::{Decoded, PromptEngine, Vocabulary};
use crate::error::{Error, Result};
use crate::loader::WeightLoader;
use crate::network::ConfigJson;
use crate::ovsam::{OvSamConfig, OvSamFeatures, OvSamModel};
use crate::sam::Point;
use crate::tokenizer::Tokenizer;

pub struct OvSam;

impl PromptEngine for OvSam {
    const NAME: &'static str = "ovsam";
    const MODEL_TYPE: &'static str = "ovsam";
    const ARCHITECTURE: &'static str = "Open-Vocabulary SAM";
    const CLASS: &'static str = "OvSamModel";
    const NAMES_MASKS: bool = true;
    // The demo resizes to `int(side * scale)`, not transformers' rounding.
    const FLOOR_RESIZE: bool = true;
    type Network = OvSamModel;
    type Features = OvSamFeatures;
    const PRESETS: &'static [Preset<OvSamModel>] = &[Preset {
        name: "ovsam",
        aliases: &[],
        about: "Open-Vocabulary SAM as released (RN50x16, the SAM2CLIP neck, the FPN and the named decoder)",
        build: |l| Ok(OvSamModel::load(OvSamConfig::from_json(r#"{"model_type": "ovsam"}"#)?, l)),
    }];

    fn load(config: &ConfigJson, loader: &mut WeightLoader) -> Result<OvSamModel> {
        Ok(OvSamModel::load(OvSamConfig::from_config(config)?, loader))
    }

    fn device(network: &OvSamModel) -> Device {
        network.device()
    }

    fn input_size(network: &OvSamModel) -> usize {
        network.input_size()
    }

    fn encode(network: &OvSamModel, pixels: Tensor<4>) -> Result<OvSamFeatures> {
        network.encode(pixels)
    }

    fn embeddings(features: &OvSamFeatures) -> &Tensor<4> {
        &features.embeddings
    }

    fn decode(
        network: &OvSamModel,
        features: &OvSamFeatures,
        points: &[Point],
        bbox: Option<[f64; 4]>,
        _multimask: bool,
    ) -> Result<Decoded> {
        let masks = network.decode(features, network.sparse_embeddings(points, bbox)?)?;
        Ok(Decoded { masks: masks.clone(), iou: None, low_res: Some(masks) })
    }

    fn decode_points(
        network: &OvSamModel,
        features: &OvSamFeatures,
        points: &[Point],
    ) -> Result<(Tensor<4>, Option<Tensor<2>>)> {
        Ok((network.decode_points(features, points)?, None))
    }

    fn released_vocabulary(network: &OvSamModel) -> Option<&[String]> {
        network.config.vocabulary.as_deref()
    }

    fn classes(
        network: &OvSamModel,
        tokenizer: &Tokenizer,
        vocabulary: &Vocabulary,
    ) -> Result<(Vec<String>, Tensor<3>)> {
        match vocabulary {
            Vocabulary::Typed(labels) => {
                let synonyms: Vec<Vec<String>> = labels.iter().map(|l| l.synonyms.clone()).collect();
                let names = labels.iter().map(|l| l.name.clone()).collect();
                Ok((names, network.class_embeddings(tokenizer, &synonyms)?))
            }
            Vocabulary::Released => match (&network.classifier, &network.config.vocabulary) {
                (Some(classes), Some(names)) => {
                    Ok((names.iter().map(|n| n.replace('_', " ")).collect(), classes.clone()))
                }
                _ => Err(Error::invalid(
                    "this checkpoint carries no classifier: convert it with --classifier, or name masks with typed words",
                )),
            },
        }
    }

    /// The mask's box on the low-resolution grid picks the FPN level and the RoI.
    fn name(
        network: &OvSamModel,
        features: &OvSamFeatures,
        low_res: &[f32],
        side: usize,
        classes: &Tensor<3>,
    ) -> Result<Tensor<1>> {
        let (b, level) = network.mask_box(low_res, side);
        let roi = network.roi_features(features, b, level);
        Ok(network.logits(roi, classes.clone()))
    }
}
