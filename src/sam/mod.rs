//! Segment Anything (Kirillov et al., ICCV 2023) in burn, matching transformers `SamModel`
//! (huggingface/transformers v5.23.0, `src/transformers/models/sam/modeling_sam.py`): a heavy
//! image encoder run once per image, and a light prompt encoder and mask decoder run per click
//! or box. Checkpoints in the hub layout (`facebook/sam-vit-base`, `-large`, `-huge`, and the
//! pruned `nielsr/slimsam-50-uniform`, `-77-uniform`, which are `SamModel` checkpoints with a
//! narrower tower) load through the same byte loader as every network.

pub mod config;
pub mod decoder;
pub mod processor;
pub mod prompt;
pub mod vision;

use burn::tensor::{Device, Tensor};

pub use config::SamConfig;
pub use decoder::{BatchMasks, DecodedMasks, MaskDecoder};
pub use processor::SamProcessor;
pub use prompt::{Point, PositionalEmbedding, PromptEncoder};
pub use vision::SamVisionEncoder;

use crate::error::Result;
use crate::loader::WeightLoader;

#[derive(Debug, Clone)]
pub struct SamModel {
    pub config: SamConfig,
    /// `shared_image_embedding`, also the prompt encoder's (`prompt_encoder.shared_embedding`,
    /// tied to it).
    pub shared_image_embedding: PositionalEmbedding,
    pub vision_encoder: SamVisionEncoder,
    pub prompt_encoder: PromptEncoder,
    pub mask_decoder: MaskDecoder,
    /// The positional features of the embedding grid (fixed per model), `[1, d, e, e]`.
    image_pe: Tensor<4>,
}

impl SamModel {
    pub fn load(config: SamConfig, loader: &mut WeightLoader) -> Self {
        let v = &config.vision_config;
        let shared_image_embedding = PositionalEmbedding::load(loader.pp("shared_image_embedding"), v.num_pos_feats);
        loader.tied("prompt_encoder.shared_embedding.positional_embedding");
        let vision_encoder = SamVisionEncoder::load(loader.pp("vision_encoder"), v);
        let prompt_encoder = PromptEncoder::load(loader.pp("prompt_encoder"), &config.prompt_encoder_config);
        let mask_decoder = MaskDecoder::load(loader.pp("mask_decoder"), &config.mask_decoder_config);
        let e = prompt_encoder.embedding_size;
        let image_pe = if loader.checking() {
            Tensor::<4>::zeros([1, 1, 1, 1], loader.device()).expand([1, 2 * v.num_pos_feats, e, e])
        } else {
            shared_image_embedding.grid(e, loader.device())
        };
        SamModel { config, shared_image_embedding, vision_encoder, prompt_encoder, mask_decoder, image_pe }
    }

    pub fn device(&self) -> Device {
        self.image_pe.device()
    }

    /// Side of the model's square input, in pixels.
    pub fn input_size(&self) -> usize {
        self.config.vision_config.image_size
    }

    /// The heavy pass: padded, normalised pixels `[1, 3, S, S]` -> `[1, d, e, e]`.
    pub fn image_embeddings(&self, pixels: Tensor<4>) -> Result<Tensor<4>> {
        self.vision_encoder.forward(pixels)
    }

    /// `get_image_wide_positional_embeddings`: `[1, d, e, e]`.
    pub fn image_positional_embeddings(&self) -> Tensor<4> {
        self.image_pe.clone()
    }

    /// The prompt's sparse embeddings (points in the model's input pixels). `-> [1, n, d]`
    pub fn sparse_embeddings(&self, points: &[Point], bbox: Option<[f64; 4]>) -> Result<Tensor<3>> {
        self.prompt_encoder.sparse(&self.shared_image_embedding, points, bbox, &self.device())
    }

    /// The prompt's dense embeddings from a low-resolution mask prompt, or `no_mask_embed`.
    pub fn dense_embeddings(&self, mask: Option<Tensor<4>>) -> Result<Tensor<4>> {
        self.prompt_encoder.dense(mask)
    }

    /// The light pass: masks and their predicted IoU for one prompt's embeddings.
    pub fn decode(
        &self,
        image_embeddings: Tensor<4>,
        sparse: Tensor<3>,
        dense: Tensor<4>,
        multimask: bool,
    ) -> DecodedMasks {
        self.mask_decoder.forward(image_embeddings, self.image_pe.clone(), sparse, dense, multimask)
    }

    /// Many one-point prompts decoded side by side (automatic mask generation): the three
    /// masks of each point, `[points, 3, 4e, 4e]`, and their predicted IoU, `[points, 3]`.
    pub fn decode_points(&self, image_embeddings: Tensor<4>, points: &[Point]) -> Result<BatchMasks> {
        let device = self.device();
        let sparse = self.prompt_encoder.single_points(&self.shared_image_embedding, points, &device)?;
        let dense = self.dense_embeddings(None)?;
        Ok(self.mask_decoder.forward_batch(image_embeddings, self.image_pe.clone(), sparse, dense, true))
    }
}
