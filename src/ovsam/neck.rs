//! The two heads on the ResNet's stages. `Sam2ClipNeck` ("SAM2CLIP", distilled from SAM's image
//! encoder): each stage patch-embedded to the stride-16 grid (a stride-`16/s` convolution, or a
//! transposed convolution for the stride-32 stage), a learned encoding per level, all summed
//! with a position table, five SAM ViT blocks and SAM's convolutional neck; its output stands in
//! for SAM's image embeddings. `Fpn` (mmdet's `FPN`): lateral 1x1 convolutions, a top-down path
//! by nearest upsampling, and 3x3 output convolutions; its levels feed the RoI features that
//! name a mask.

use burn::tensor::Tensor;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};

use crate::loader::Scope;
use crate::nn::{Conv2d, ConvTranspose2d};
use crate::sam::config::SamVisionConfig;
use crate::sam::vision::{VisionLayer, VisionNeck};

/// The stride of the neck's grid.
pub const NECK_STRIDE: usize = 16;
/// The strides of the backbone's four stages.
pub const STRIDES: [usize; 4] = [4, 8, 16, 32];

#[derive(Debug, Clone)]
pub enum PatchEmbed {
    Down(Conv2d),
    Up(ConvTranspose2d),
}

#[derive(Debug, Clone)]
pub struct Sam2ClipNeck {
    pub patch_embeds: Vec<PatchEmbed>,
    /// `level_encoding.weight`, one row per stage, `[4, 1, 1, 1, e]` slices.
    pub level_encoding: Vec<Tensor<4>>,
    /// `[1, g, g, e]`.
    pub pos_embed: Tensor<4>,
    pub layers: Vec<VisionLayer>,
    pub neck: VisionNeck,
}

impl Sam2ClipNeck {
    /// `patch_embeds.*`, `level_encoding`, `pos_embed`, `layers.*`, `neck.*`.
    pub fn load(mut p: Scope, channels: [usize; 4], cfg: &SamVisionConfig) -> Self {
        let (e, g) = (cfg.hidden_size, cfg.grid());
        let mut embeds = p.pp("patch_embeds");
        let patch_embeds = channels
            .iter()
            .zip(STRIDES)
            .enumerate()
            .map(|(i, (&c, s))| {
                let mut embed = embeds.pp(i);
                let projection = embed.pp("projection");
                if s > NECK_STRIDE {
                    PatchEmbed::Up(ConvTranspose2d::load(projection, c, e, s / NECK_STRIDE))
                } else {
                    let k = NECK_STRIDE / s;
                    PatchEmbed::Down(Conv2d::load(projection, c, e, k, k, 0, true))
                }
            })
            .collect();
        let levels: Tensor<2> = p.tensor("level_encoding.weight", [4, e]);
        let level_encoding = (0..4).map(|i| levels.clone().slice([i..i + 1, 0..e]).reshape([1, 1, 1, e])).collect();
        Sam2ClipNeck {
            patch_embeds,
            level_encoding,
            pos_embed: p.tensor("pos_embed", [1, g, g, e]),
            layers: (0..cfg.num_hidden_layers).map(|i| VisionLayer::load(p.pp("layers").pp(i), cfg, i)).collect(),
            neck: VisionNeck::load(p.pp("neck"), cfg),
        }
    }

    /// The four stages -> image embeddings `[b, out, g, g]`.
    pub fn forward(&self, stages: &[Tensor<4>]) -> Tensor<4> {
        let mut sum: Option<Tensor<4>> = None;
        for ((embed, level), x) in self.patch_embeds.iter().zip(&self.level_encoding).zip(stages) {
            let y = match embed {
                PatchEmbed::Down(conv) => conv.forward(x.clone()),
                PatchEmbed::Up(conv) => conv.forward(x.clone()),
            };
            let y = y.permute([0, 2, 3, 1]).add(level.clone()); // [b, g, g, e]
            sum = Some(match sum {
                Some(s) => s.add(y),
                None => y,
            });
        }
        let mut x = sum.expect("four stages").add(self.pos_embed.clone());
        for layer in &self.layers {
            x = layer.forward(x);
        }
        self.neck.forward(x)
    }
}

#[derive(Debug, Clone)]
pub struct Fpn {
    pub lateral: Vec<Conv2d>,
    pub output: Vec<Conv2d>,
}

impl Fpn {
    /// `lateral_convs.*.conv`, `fpn_convs.*.conv`.
    pub fn load(mut p: Scope, channels: [usize; 4], out: usize) -> Self {
        Fpn {
            lateral: (0..4)
                .map(|i| Conv2d::load(p.pp("lateral_convs").pp(i).pp("conv"), channels[i], out, 1, 1, 0, true))
                .collect(),
            output: (0..4).map(|i| Conv2d::load(p.pp("fpn_convs").pp(i).pp("conv"), out, out, 3, 1, 1, true)).collect(),
        }
    }

    /// Four levels `[b, out, h_i, w_i]` at the stages' strides.
    pub fn forward(&self, stages: &[Tensor<4>]) -> Vec<Tensor<4>> {
        let mut laterals: Vec<Tensor<4>> = self.lateral.iter().zip(stages).map(|(c, x)| c.forward(x.clone())).collect();
        for i in (1..laterals.len()).rev() {
            let [_, _, h, w] = laterals[i - 1].dims();
            let up = interpolate(
                laterals[i].clone(),
                InterpolateOptions::new(InterpolateMode::Nearest).with_output_size([h, w]),
            );
            laterals[i - 1] = laterals[i - 1].clone().add(up);
        }
        laterals.into_iter().zip(&self.output).map(|(x, c)| c.forward(x)).collect()
    }
}
