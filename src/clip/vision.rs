//! The CLIP vision tower (transformers `CLIPVisionModel`, `CLIPVisionEmbeddings`), with
//! position embeddings resampled for other input sizes as `interpolate_pos_encoding=True` does
//! (or, for the dense engine, as the dense-CLIP papers' code does: [`Resampling`]).

use burn::tensor::Tensor;

use super::config::VisionConfig;
use crate::error::Result;
use crate::loader::{HeldBytes, Scope};
use crate::nn::{EncoderLayer, LayerNorm, PatchEmbedding, PositionTable, Resampling, load_layers};

/// What the vision tower returns for a batch of images.
#[derive(Debug, Clone)]
pub struct VisionOutput {
    /// Input of the last encoder block, `[b, 1 + gh*gw, width]` (the dense engine replaces
    /// that block).
    pub penultimate: Tensor<3>,
    /// Output of the last block, before `post_layernorm`, `[b, 1 + gh*gw, width]`.
    pub last_hidden: Tensor<3>,
    /// Patch grid `(gh, gw)`.
    pub grid: (usize, usize),
}

#[derive(Debug, Clone)]
pub struct VisionTransformer {
    /// `embeddings.class_embedding`, `[width]`.
    pub class_embedding: Tensor<1>,
    /// `embeddings.patch_embedding` (a stride-`patch` conv without bias).
    pub patch_embedding: PatchEmbedding,
    /// Row 0 of `embeddings.position_embedding.weight` (the class token's), `[1, width]`.
    pub class_position: Tensor<2>,
    /// The other rows of `embeddings.position_embedding.weight`, one per patch.
    pub positions: PositionTable,
    /// HF spells it `pre_layrnorm`.
    pub pre_layrnorm: LayerNorm,
    pub layers: Vec<EncoderLayer>,
    pub post_layernorm: LayerNorm,
    pub width: usize,
}

impl VisionTransformer {
    /// `embeddings.*`, `pre_layrnorm`, `encoder.layers.*`, `post_layernorm`.
    pub fn load(mut scope: Scope, cfg: &VisionConfig) -> Self {
        let (d, p) = (cfg.hidden_size, cfg.patch_size);
        let grid = cfg.image_size / p;
        let rows = 1 + grid * grid;
        let device = scope.device().clone();
        let mut embeddings = scope.pp("embeddings");
        let (class_position, positions) = match embeddings.host("position_embedding.weight", &[rows, d]) {
            Some(table) => (
                Tensor::from_data(burn::tensor::TensorData::new(table[..d].to_vec(), [1, d]), &device),
                PositionTable::new(table[d..].to_vec(), grid, d, &device),
            ),
            None => (Tensor::zeros([1, d], &device), PositionTable::stand_in(grid, d, &device)),
        };
        if !embeddings.checking() {
            embeddings.hold(positions.held());
            embeddings.hold(HeldBytes::f32s(d));
        }
        let class_embedding = embeddings.tensor("class_embedding", [d]);
        let patch_embedding = PatchEmbedding::load(embeddings.pp("patch_embedding"), d, cfg.num_channels, p, false);
        VisionTransformer {
            class_embedding,
            patch_embedding,
            class_position,
            positions,
            pre_layrnorm: LayerNorm::load(scope.pp("pre_layrnorm"), d, cfg.layer_norm_eps),
            layers: load_layers(scope.pp("encoder.layers"), cfg.num_hidden_layers, cfg.dims()),
            post_layernorm: LayerNorm::load(scope.pp("post_layernorm"), d, cfg.layer_norm_eps),
            width: d,
        }
    }

    /// Patch + class + position embeddings (the table resampled as transformers does off its
    /// grid). `[b, 3, H, W] -> [b, 1 + gh*gw, width]`
    pub fn embed(&self, pixels: Tensor<4>) -> Result<(Tensor<3>, (usize, usize))> {
        self.embed_with(pixels, Resampling::Transformers)
    }

    /// [`Self::embed`] with the position table resampled as `resampling` says.
    pub fn embed_with(&self, pixels: Tensor<4>, resampling: Resampling) -> Result<(Tensor<3>, (usize, usize))> {
        let b = pixels.dims()[0];
        let (tokens, (gh, gw)) = self.patch_embedding.forward(pixels)?;
        let class = self.class_embedding.clone().reshape([1, 1, self.width]).repeat_dim(0, b);
        let table = self.positions.resampled(gh, gw, resampling);
        let positions = Tensor::cat(vec![self.class_position.clone(), table], 0);
        let x = Tensor::cat(vec![class, tokens], 1).add(positions.unsqueeze::<3>());
        Ok((x, (gh, gw)))
    }

    /// Everything but the last block: the input the dense engine replaces it on, the position
    /// table resampled as `resampling` says. `[b, 3, H, W] -> ([b, 1 + gh*gw, width], (gh, gw))`
    pub fn hidden_before_last(&self, pixels: Tensor<4>, resampling: Resampling) -> Result<(Tensor<3>, (usize, usize))> {
        let (x, grid) = self.embed_with(pixels, resampling)?;
        let mut x = self.pre_layrnorm.forward(x);
        for layer in &self.layers[..self.layers.len() - 1] {
            x = layer.forward(x, None);
        }
        Ok((x, grid))
    }

    /// The last encoder block (a config has at least one).
    pub fn last_layer(&self) -> &EncoderLayer {
        &self.layers[self.layers.len() - 1]
    }

    /// Run the tower. `pixels`: `[b, 3, H, W]`, CLIP-normalised.
    pub fn forward(&self, pixels: Tensor<4>) -> Result<VisionOutput> {
        let (penultimate, grid) = self.hidden_before_last(pixels, Resampling::Transformers)?;
        let last_hidden = self.last_layer().forward(penultimate.clone(), None);
        Ok(VisionOutput { penultimate, last_hidden, grid })
    }
}
