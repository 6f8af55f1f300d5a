//! Segment Anything as a prompt engine: transformers' `SamModel` checkpoints (SAM ViT-B/L/H,
//! SlimSAM). It gives masks only; a CLIP words model names them ([`super::namer`]).

use burn::tensor::{Device, Tensor};

use super::super::engine::Preset;
use super::{Decoded, PromptEngine};
use crate::error::{Error, Result};
use crate::loader::WeightLoader;
use crate::network::ConfigJson;
use crate::sam::{Point, SamConfig, SamModel};

pub struct Sam;

impl PromptEngine for Sam {
    const NAME: &'static str = "sam";
    const MODEL_TYPE: &'static str = "sam";
    const ARCHITECTURE: &'static str = "Segment Anything";
    const CLASS: &'static str = "SamModel";
    const NAMES_MASKS: bool = false;
    type Network = SamModel;
    type Features = Tensor<4>;
    // The hub configs: the defaults (ViT-B), and SlimSAM's narrower towers.
    const PRESETS: &'static [Preset<SamModel>] = &[
        Preset { name: "sam-vit-base", aliases: &[], about: "facebook/sam-vit-base", build: |l| vision(l, "{}") },
        Preset {
            name: "slimsam-50",
            aliases: &[],
            about: "nielsr/slimsam-50-uniform",
            build: |l| vision(l, r#"{"hidden_size": 384, "mlp_dim": 1536}"#),
        },
        Preset {
            name: "slimsam-77",
            aliases: &[],
            about: "nielsr/slimsam-77-uniform",
            build: |l| vision(l, r#"{"hidden_size": 168, "mlp_dim": 696}"#),
        },
    ];

    fn load(config: &ConfigJson, loader: &mut WeightLoader) -> Result<SamModel> {
        Ok(SamModel::load(SamConfig::from_config(config)?, loader))
    }

    fn device(network: &SamModel) -> Device {
        network.device()
    }

    fn input_size(network: &SamModel) -> usize {
        network.input_size()
    }

    fn encode(network: &SamModel, pixels: Tensor<4>) -> Result<Tensor<4>> {
        network.image_embeddings(pixels)
    }

    fn embeddings(features: &Tensor<4>) -> &Tensor<4> {
        features
    }

    fn decode(
        network: &SamModel,
        embeddings: &Tensor<4>,
        points: &[Point],
        bbox: Option<[f64; 4]>,
        multimask: bool,
    ) -> Result<Decoded> {
        let sparse = network.sparse_embeddings(points, bbox)?;
        let dense = network.dense_embeddings(None)?;
        let out = network.decode(embeddings.clone(), sparse, dense, multimask);
        Ok(Decoded { masks: out.masks, iou: out.iou, low_res: None })
    }

    fn decode_points(
        network: &SamModel,
        embeddings: &Tensor<4>,
        points: &[Point],
    ) -> Result<(Tensor<4>, Option<Tensor<2>>)> {
        let out = network.decode_points(embeddings.clone(), points)?;
        let iou = out.iou.ok_or_else(|| Error::invalid("this Segment Anything checkpoint has no IoU head"))?;
        Ok((out.masks, Some(iou)))
    }
}

/// A `SamModel` with the hub's defaults but for its `vision_config`.
fn vision(loader: &mut WeightLoader, vision_config: &str) -> Result<SamModel> {
    let config = SamConfig::from_json(&format!(r#"{{"model_type": "sam", "vision_config": {vision_config}}}"#))?;
    Ok(SamModel::load(config, loader))
}
