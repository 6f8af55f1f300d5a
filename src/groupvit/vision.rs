//! The GroupViT vision tower (transformers `GroupViTVisionTransformer`; NVlabs/GroupViT
//! `models/group_vit.py`): patch embeddings without a class token, then stages of encoder
//! layers over image tokens and learnable group tokens; each grouping stage ends in a grouping
//! block that assigns every image token to one group (hard assignment, straight-through in
//! training; at inference the forward value is the one-hot argmax) and returns the groups as
//! the next stage's tokens.

use burn::tensor::Tensor;
use burn::tensor::activation::softmax;

use super::config::GroupVitVisionConfig;
use crate::error::Result;
use crate::loader::WeightLoader;
use crate::nn::{
    Attention, EncoderLayer, LayerNorm, Linear, Mlp, PatchEmbedding, PositionTable, load_layers, one_hot_max,
};

/// `GroupViTMixerMLP`: the MLP applied across tokens (`[b, n, d]` transposed to `[b, d, n]`).
#[derive(Debug, Clone)]
pub struct MixerMlp(pub Mlp);

impl MixerMlp {
    fn load(
        loader: &mut WeightLoader,
        prefix: &str,
        cfg: &GroupVitVisionConfig,
        n_in: usize,
        hidden: usize,
        n_out: usize,
    ) -> Self {
        MixerMlp(Mlp::load(loader, prefix, n_in, hidden, n_out, cfg.hidden_act))
    }

    /// `[b, n_in, d] -> [b, n_out, d]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.0.forward(x.swap_dims(1, 2)).swap_dims(1, 2)
    }
}

fn mlp(loader: &mut WeightLoader, prefix: &str, cfg: &GroupVitVisionConfig, hidden: usize) -> Mlp {
    Mlp::load(loader, prefix, cfg.hidden_size, hidden, cfg.hidden_size, cfg.hidden_act)
}

fn norm(loader: &mut WeightLoader, prefix: &str, cfg: &GroupVitVisionConfig) -> LayerNorm {
    LayerNorm::load(loader, prefix, cfg.hidden_size, cfg.layer_norm_eps)
}

/// `GroupViTCrossAttentionLayer`: the groups attend to the image tokens (no norm before the
/// attention: both inputs arrive normalised), then an MLP, then a closing layer norm.
#[derive(Debug, Clone)]
pub struct CrossAttentionLayer {
    pub attn: Attention,
    pub norm2: LayerNorm,
    pub mlp: Mlp,
    pub norm_post: LayerNorm,
}

impl CrossAttentionLayer {
    pub fn forward(&self, query: Tensor<3>, key: Tensor<3>) -> Tensor<3> {
        let x = query.clone().add(self.attn.cross(query, key, None));
        let x = x.clone().add(self.mlp.forward(self.norm2.forward(x)));
        self.norm_post.forward(x)
    }
}

/// `GroupViTAssignAttention`: single-head attention of groups over image tokens, normalised
/// over the groups; the forward value uses the one-hot (hard) assignment.
#[derive(Debug, Clone)]
pub struct AssignAttention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub proj: Linear,
    pub scale: f64,
    pub eps: f64,
}

impl AssignAttention {
    /// `query [b, g, d]`, `key [b, n, d]` -> (new groups `[b, g, d]`, soft assignment `[b, g, n]`).
    pub fn forward(&self, query: Tensor<3>, key: Tensor<3>) -> (Tensor<3>, Tensor<3>) {
        let q = self.q_proj.forward(query);
        let k = self.k_proj.forward(key.clone());
        let v = self.v_proj.forward(key);
        let raw = q.matmul(k.swap_dims(1, 2)).mul_scalar(self.scale);
        let soft = softmax(raw, 1);
        let hard = one_hot_max(soft.clone(), 1);
        let attn = hard.clone().div(hard.sum_dim(2).add_scalar(self.eps));
        (self.proj.forward(attn.matmul(v)), soft)
    }
}

/// `GroupViTTokenAssign`: the grouping block at the end of a grouping stage.
#[derive(Debug, Clone)]
pub struct TokenAssign {
    pub norm_tokens: LayerNorm,
    pub mlp_inter: MixerMlp,
    pub norm_post_tokens: LayerNorm,
    pub norm_x: LayerNorm,
    pub pre_assign_attn: CrossAttentionLayer,
    pub assign: AssignAttention,
    pub norm_new_x: LayerNorm,
    pub mlp_channels: Mlp,
}

impl TokenAssign {
    fn load(
        loader: &mut WeightLoader,
        prefix: &str,
        cfg: &GroupVitVisionConfig,
        groups: usize,
        outputs: usize,
    ) -> Self {
        let d = cfg.hidden_size;
        let (tokens_dim, channels_dim) = cfg.assign_dims();
        let linear = |loader: &mut WeightLoader, name: &str| {
            Linear::load(loader, &format!("{prefix}.assign.{name}"), d, d, true)
        };
        TokenAssign {
            norm_tokens: norm(loader, &format!("{prefix}.norm_tokens"), cfg),
            mlp_inter: MixerMlp::load(loader, &format!("{prefix}.mlp_inter"), cfg, groups, tokens_dim, outputs),
            norm_post_tokens: norm(loader, &format!("{prefix}.norm_post_tokens"), cfg),
            norm_x: norm(loader, &format!("{prefix}.norm_x"), cfg),
            pre_assign_attn: CrossAttentionLayer {
                attn: Attention::load(loader, &format!("{prefix}.pre_assign_attn.attn"), d, cfg.num_attention_heads),
                norm2: norm(loader, &format!("{prefix}.pre_assign_attn.norm2"), cfg),
                mlp: mlp(loader, &format!("{prefix}.pre_assign_attn.mlp"), cfg, cfg.intermediate_size),
                norm_post: norm(loader, &format!("{prefix}.pre_assign_attn.norm_post"), cfg),
            },
            assign: AssignAttention {
                q_proj: linear(loader, "q_proj"),
                k_proj: linear(loader, "k_proj"),
                v_proj: linear(loader, "v_proj"),
                proj: linear(loader, "proj"),
                scale: (d as f64).powf(-0.5),
                eps: cfg.assign_eps,
            },
            norm_new_x: norm(loader, &format!("{prefix}.norm_new_x"), cfg),
            mlp_channels: mlp(loader, &format!("{prefix}.mlp_channels"), cfg, channels_dim),
        }
    }

    /// `image [b, n, d]`, `groups [b, g, d]` -> (`[b, outputs, d]`, soft assignment `[b, outputs, n]`).
    pub fn forward(&self, image: Tensor<3>, groups: Tensor<3>) -> (Tensor<3>, Tensor<3>) {
        let groups = self.norm_tokens.forward(groups);
        let image = self.norm_x.forward(image);
        let projected = self.norm_post_tokens.forward(self.mlp_inter.forward(groups));
        let projected = self.pre_assign_attn.forward(projected, image.clone());
        let (assigned, soft) = self.assign.forward(projected.clone(), image);
        let x = assigned.add(projected);
        let x = x.clone().add(self.mlp_channels.forward(self.norm_new_x.forward(x)));
        (x, soft)
    }
}

/// `GroupViTStage`: encoder layers over `[image tokens; group tokens]`, then the grouping block.
#[derive(Debug, Clone)]
pub struct Stage {
    /// `group_token`, `[1, g, d]`; `None` for a stage without grouping.
    pub group_token: Option<Tensor<3>>,
    pub layers: Vec<EncoderLayer>,
    pub downsample: Option<TokenAssign>,
    /// Layer norm and token MLP mapping the previous stage's group tokens onto this stage's.
    pub group_projector: Option<(LayerNorm, MixerMlp)>,
}

/// What one stage hands on.
pub struct StageOutput {
    pub tokens: Tensor<3>,
    /// This stage's group tokens after its layers (the next stage's projector input).
    pub group_tokens: Option<Tensor<3>>,
    /// Soft assignment of the input tokens to the output groups, `[b, groups, n]`.
    pub assignment: Option<Tensor<3>>,
}

impl Stage {
    fn load(loader: &mut WeightLoader, prefix: &str, cfg: &GroupVitVisionConfig, i: usize) -> Self {
        let d = cfg.hidden_size;
        let groups = cfg.num_group_tokens[i];
        let prev = if i > 0 { cfg.num_output_groups[i - 1] } else { 0 };
        let layers = load_layers(loader, &format!("{prefix}.layers"), cfg.depths[i], cfg.dims());
        Stage {
            group_token: (groups > 0).then(|| loader.tensor(&format!("{prefix}.group_token"), [1, groups, d])),
            layers,
            downsample: (groups > 0).then(|| {
                TokenAssign::load(loader, &format!("{prefix}.downsample"), cfg, groups, cfg.num_output_groups[i])
            }),
            group_projector: (prev > 0 && groups > 0).then(|| {
                (
                    norm(loader, &format!("{prefix}.group_projector.0"), cfg),
                    MixerMlp::load(loader, &format!("{prefix}.group_projector.1"), cfg, prev, d / 2, groups),
                )
            }),
        }
    }

    pub fn forward(&self, x: Tensor<3>, prev_groups: Option<Tensor<3>>) -> StageOutput {
        let [b, n, d] = x.dims();
        let Some(token) = &self.group_token else {
            let tokens = self.layers.iter().fold(x, |x, layer| layer.forward(x, None));
            return StageOutput { tokens, group_tokens: None, assignment: None };
        };
        let mut groups = token.clone().repeat_dim(0, b);
        if let (Some((ln, mixer)), Some(prev)) = (&self.group_projector, prev_groups) {
            groups = groups.add(mixer.forward(ln.forward(prev)));
        }
        let g = groups.dims()[1];
        let cat = Tensor::cat(vec![x, groups], 1);
        let cat = self.layers.iter().fold(cat, |x, layer| layer.forward(x, None));
        let image = cat.clone().slice([0..b, 0..n, 0..d]);
        let groups = cat.slice([0..b, n..n + g, 0..d]);
        let block = self.downsample.as_ref().expect("a stage with group tokens has a grouping block");
        let (tokens, assignment) = block.forward(image, groups.clone());
        StageOutput { tokens, group_tokens: Some(groups), assignment: Some(assignment) }
    }
}

/// The tower's outputs for a batch of images.
#[derive(Debug, Clone)]
pub struct GroupVitVisionOutput {
    /// Final group tokens after the last layer norm, `[b, groups, width]`.
    pub groups: Tensor<3>,
    /// Each grouping stage's soft assignment, `[b, groups_i, tokens_i]` (tokens_0 = patches).
    pub assignments: Vec<Tensor<3>>,
    /// Patch grid `(gh, gw)`.
    pub grid: (usize, usize),
}

#[derive(Debug, Clone)]
pub struct GroupVitVisionTower {
    /// `embeddings.patch_embeddings.projection` (a stride-`patch` conv with bias).
    pub patch_embeddings: PatchEmbedding,
    /// `embeddings.position_embeddings`, `[1, grid², width]` (no class token).
    pub position_embeddings: PositionTable,
    pub embed_norm: LayerNorm,
    pub stages: Vec<Stage>,
    pub layernorm: LayerNorm,
}

impl GroupVitVisionTower {
    pub fn load(loader: &mut WeightLoader, prefix: &str, cfg: &GroupVitVisionConfig) -> Self {
        let (d, p) = (cfg.hidden_size, cfg.patch_size);
        let grid = cfg.image_size / p;
        let pos_name = format!("{prefix}.embeddings.position_embeddings");
        let table = loader.host(&pos_name, &[1, grid * grid, d]).unwrap_or_else(|| vec![0.0; grid * grid * d]);
        GroupVitVisionTower {
            patch_embeddings: PatchEmbedding::load(
                loader,
                &format!("{prefix}.embeddings.patch_embeddings.projection"),
                d,
                cfg.num_channels,
                p,
                true,
            ),
            position_embeddings: PositionTable::new(table, grid, d, loader.device()),
            embed_norm: norm(loader, &format!("{prefix}.embeddings.layernorm"), cfg),
            stages: (0..cfg.depths.len())
                .map(|i| Stage::load(loader, &format!("{prefix}.encoder.stages.{i}"), cfg, i))
                .collect(),
            layernorm: norm(loader, &format!("{prefix}.layernorm"), cfg),
        }
    }

    /// `[b, 3, H, W] -> [b, gh*gw, width]`: patches, layer norm, positions.
    fn embed(&self, pixels: Tensor<4>) -> Result<(Tensor<3>, (usize, usize))> {
        let (tokens, (gh, gw)) = self.patch_embeddings.forward(pixels)?;
        let x = self.embed_norm.forward(tokens).add(self.position_embeddings.for_grid(gh, gw).unsqueeze::<3>());
        Ok((x, (gh, gw)))
    }

    /// Run the tower on normalised pixels `[b, 3, H, W]`.
    pub fn forward(&self, pixels: Tensor<4>) -> Result<GroupVitVisionOutput> {
        let (mut x, grid) = self.embed(pixels)?;
        let mut groups = None;
        let mut assignments = Vec::new();
        for stage in &self.stages {
            let out = stage.forward(x, groups);
            x = out.tokens;
            groups = out.group_tokens;
            assignments.extend(out.assignment);
        }
        Ok(GroupVitVisionOutput { groups: self.layernorm.forward(x), assignments, grid })
    }
}
