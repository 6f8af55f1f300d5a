//! The CLIP vision tower (transformers `CLIPVisionModel`, `CLIPVisionEmbeddings`), with
//! position embeddings resampled for other input sizes as `interpolate_pos_encoding=True` does.

use burn::tensor::{Tensor, TensorData};

use super::config::VisionConfig;
use super::interpolate::bicubic;
use super::layers::{EncoderLayer, LayerNorm, TowerDims, load_layers};
use crate::error::{Error, Result};
use crate::loader::WeightLoader;

/// What the vision tower returns for a batch of images.
#[derive(Debug, Clone)]
pub struct VisionOutput {
    /// Input of the last encoder block, `[b, 1 + gh*gw, width]` (the dense methods replace
    /// that block).
    pub penultimate: Tensor<3>,
    /// Output of the last block, before `post_layernorm`, `[b, 1 + gh*gw, width]`.
    pub last_hidden: Tensor<3>,
    /// Patch grid `(gh, gw)`.
    pub grid: (usize, usize),
}

/// Non-overlapping `p x p` patches, flattened channel-major as a stride-`p` convolution's
/// weight is: `[b, c, H, W] -> ([b, gh*gw, c*p*p], (gh, gw))`. Rows and columns past the last
/// whole patch are dropped, as the convolution drops them; the convolution is then a matmul.
pub fn patchify(pixels: Tensor<4>, p: usize) -> Result<(Tensor<3>, (usize, usize))> {
    let [b, c, h, w] = pixels.dims();
    let (gh, gw) = (h / p, w / p);
    if gh == 0 || gw == 0 {
        return Err(Error::invalid(format!("image of {w}x{h} pixels is smaller than one {p}x{p} patch")));
    }
    let patches = pixels
        .slice([0..b, 0..c, 0..gh * p, 0..gw * p])
        .reshape([b, c, gh, p, gw, p])
        .permute([0, 2, 4, 1, 3, 5])
        .reshape([b, gh * gw, c * p * p]);
    Ok((patches, (gh, gw)))
}

#[derive(Debug, Clone)]
pub struct VisionTransformer {
    /// `embeddings.class_embedding`, `[width]`.
    pub class_embedding: Tensor<1>,
    /// `embeddings.patch_embedding.weight` (a stride-`patch` conv without bias), flattened to
    /// `[width, 3 * patch * patch]`.
    pub patch_embedding: Tensor<2>,
    /// `embeddings.position_embedding.weight`, `[1 + grid², width]`.
    pub position_embedding: Tensor<2>,
    /// Host copy of the patch rows of the position table, for resampling.
    position_grid_host: Vec<f32>,
    /// HF spells it `pre_layrnorm`.
    pub pre_layrnorm: LayerNorm,
    pub layers: Vec<EncoderLayer>,
    pub post_layernorm: LayerNorm,
    pub patch_size: usize,
    pub width: usize,
    pub trained_grid: usize,
}

impl VisionTransformer {
    pub fn load(loader: &mut WeightLoader, prefix: &str, cfg: &VisionConfig) -> Self {
        let (d, p) = (cfg.hidden_size, cfg.patch_size);
        let grid = cfg.image_size / p;
        let positions = 1 + grid * grid;
        let device = loader.device().clone();
        let patch_embedding = loader
            .tensor(&format!("{prefix}.embeddings.patch_embedding.weight"), [d, cfg.num_channels, p, p])
            .reshape([d, cfg.num_channels * p * p]);
        let pos_name = format!("{prefix}.embeddings.position_embedding.weight");
        let pos_host = loader.host(&pos_name, &[positions, d]).unwrap_or_else(|| vec![0.0; positions * d]);
        let position_embedding = Tensor::from_data(TensorData::new(pos_host.clone(), [positions, d]), &device);
        let dims =
            TowerDims::new(d, cfg.intermediate_size, cfg.num_attention_heads, cfg.layer_norm_eps, cfg.hidden_act);
        VisionTransformer {
            class_embedding: loader.tensor(&format!("{prefix}.embeddings.class_embedding"), [d]),
            patch_embedding,
            position_embedding,
            position_grid_host: pos_host[d..].to_vec(),
            pre_layrnorm: LayerNorm::load(loader, &format!("{prefix}.pre_layrnorm"), d, cfg.layer_norm_eps),
            layers: load_layers(loader, prefix, cfg.num_hidden_layers, dims),
            post_layernorm: LayerNorm::load(loader, &format!("{prefix}.post_layernorm"), d, cfg.layer_norm_eps),
            patch_size: p,
            width: d,
            trained_grid: grid,
        }
    }

    /// Position embeddings for a `gh x gw` grid, `[1 + gh*gw, width]`. The trained table when
    /// the grid is the trained square one; otherwise the patch rows resampled bicubically.
    pub fn positions(&self, gh: usize, gw: usize) -> Tensor<2> {
        let g = self.trained_grid;
        // transformers skips interpolation only for the same patch count on a square input.
        if gh * gw == g * g && gh == gw {
            return self.position_embedding.clone();
        }
        let d = self.width;
        let resampled = bicubic(&self.position_grid_host, g, g, d, gh, gw);
        let device = self.position_embedding.device();
        let patches = Tensor::from_data(TensorData::new(resampled, [gh * gw, d]), &device);
        let class = self.position_embedding.clone().slice([0..1, 0..d]);
        Tensor::cat(vec![class, patches], 0)
    }

    /// Patch + class + position embeddings. `[b, 3, H, W] -> [b, 1 + gh*gw, width]`
    pub fn embed(&self, pixels: Tensor<4>) -> Result<(Tensor<3>, (usize, usize))> {
        let b = pixels.dims()[0];
        let (patches, (gh, gw)) = patchify(pixels, self.patch_size)?;
        let tokens = patches.matmul(self.patch_embedding.clone().transpose().unsqueeze::<3>());
        let class = self.class_embedding.clone().reshape([1, 1, self.width]).repeat_dim(0, b);
        let x = Tensor::cat(vec![class, tokens], 1).add(self.positions(gh, gw).unsqueeze::<3>());
        Ok((x, (gh, gw)))
    }

    /// Everything but the last block: the input the dense methods replace it on.
    /// `[b, 3, H, W] -> ([b, 1 + gh*gw, width], (gh, gw))`
    pub fn hidden_before_last(&self, pixels: Tensor<4>) -> Result<(Tensor<3>, (usize, usize))> {
        let (x, grid) = self.embed(pixels)?;
        let mut x = self.pre_layrnorm.forward(x);
        for layer in &self.layers[..self.layers.len() - 1] {
            x = layer.forward(x, None);
        }
        Ok((x, grid))
    }

    /// Run the tower. `pixels`: `[b, 3, H, W]`, CLIP-normalised.
    pub fn forward(&self, pixels: Tensor<4>) -> Result<VisionOutput> {
        let (penultimate, grid) = self.hidden_before_last(pixels)?;
        let last = self.layers.last().expect("config guarantees one layer");
        let last_hidden = last.forward(penultimate.clone(), None);
        Ok(VisionOutput { penultimate, last_hidden, grid })
    }
}
