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
use crate::loader::Scope;
use crate::nn::{
    Attention, EncoderLayer, LayerNorm, Linear, Mlp, PatchEmbedding, PositionTable, load_layers, one_hot_max,
};

/// `GroupViTMixerMLP`: the MLP applied across tokens (`[b, n, d]` transposed to `[b, d, n]`).
#[derive(Debug, Clone)]
pub struct MixerMlp(pub Mlp);

impl MixerMlp {
    fn load(p: Scope, cfg: &GroupVitVisionConfig, n_in: usize, hidden: usize, n_out: usize) -> Self {
        MixerMlp(Mlp::load(p, n_in, hidden, n_out, cfg.hidden_act))
    }

    /// `[b, n_in, d] -> [b, n_out, d]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.0.forward(x.swap_dims(1, 2)).swap_dims(1, 2)
    }
}

fn mlp(p: Scope, cfg: &GroupVitVisionConfig, hidden: usize) -> Mlp {
    Mlp::load(p, cfg.hidden_size, hidden, cfg.hidden_size, cfg.hidden_act)
}

fn norm(p: Scope, cfg: &GroupVitVisionConfig) -> LayerNorm {
    LayerNorm::load(p, cfg.hidden_size, cfg.layer_norm_eps)
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
    /// `attn`, `norm2`, `mlp`, `norm_post`.
    fn load(mut p: Scope, cfg: &GroupVitVisionConfig) -> Self {
        CrossAttentionLayer {
            attn: Attention::load(p.pp("attn"), cfg.hidden_size, cfg.num_attention_heads),
            norm2: norm(p.pp("norm2"), cfg),
            mlp: mlp(p.pp("mlp"), cfg, cfg.intermediate_size),
            norm_post: norm(p.pp("norm_post"), cfg),
        }
    }

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
    /// `q_proj`, `k_proj`, `v_proj`, `proj`, each `d -> d` with bias.
    fn load(mut p: Scope, cfg: &GroupVitVisionConfig) -> Self {
        let d = cfg.hidden_size;
        let mut linear = |name: &str| Linear::load(p.pp(name), d, d, true);
        AssignAttention {
            q_proj: linear("q_proj"),
            k_proj: linear("k_proj"),
            v_proj: linear("v_proj"),
            proj: linear("proj"),
            scale: (d as f64).powf(-0.5),
            eps: cfg.assign_eps,
        }
    }

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
    fn load(mut p: Scope, cfg: &GroupVitVisionConfig, groups: usize, outputs: usize) -> Self {
        let (tokens_dim, channels_dim) = cfg.assign_dims();
        TokenAssign {
            norm_tokens: norm(p.pp("norm_tokens"), cfg),
            mlp_inter: MixerMlp::load(p.pp("mlp_inter"), cfg, groups, tokens_dim, outputs),
            norm_post_tokens: norm(p.pp("norm_post_tokens"), cfg),
            norm_x: norm(p.pp("norm_x"), cfg),
            pre_assign_attn: CrossAttentionLayer::load(p.pp("pre_assign_attn"), cfg),
            assign: AssignAttention::load(p.pp("assign"), cfg),
            norm_new_x: norm(p.pp("norm_new_x"), cfg),
            mlp_channels: mlp(p.pp("mlp_channels"), cfg, channels_dim),
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
    fn load(mut p: Scope, cfg: &GroupVitVisionConfig, i: usize) -> Self {
        let d = cfg.hidden_size;
        let groups = cfg.num_group_tokens[i];
        let prev = if i > 0 { cfg.num_output_groups[i - 1] } else { 0 };
        let layers = load_layers(p.pp("layers"), cfg.depths[i], cfg.dims());
        Stage {
            group_token: (groups > 0).then(|| p.tensor("group_token", [1, groups, d])),
            layers,
            downsample: (groups > 0)
                .then(|| TokenAssign::load(p.pp("downsample"), cfg, groups, cfg.num_output_groups[i])),
            group_projector: (prev > 0 && groups > 0).then(|| {
                let mut projector = p.pp("group_projector");
                (norm(projector.pp(0), cfg), MixerMlp::load(projector.pp(1), cfg, prev, d / 2, groups))
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
    /// `embeddings.*`, `encoder.stages.*`, `layernorm`.
    pub fn load(mut scope: Scope, cfg: &GroupVitVisionConfig) -> Self {
        let (d, p) = (cfg.hidden_size, cfg.patch_size);
        let grid = cfg.image_size / p;
        let mut embeddings = scope.pp("embeddings");
        let position_embeddings = match embeddings.host("position_embeddings", &[1, grid * grid, d]) {
            Some(table) => PositionTable::new(table, grid, d, embeddings.device()),
            None => PositionTable::stand_in(grid, d, embeddings.device()),
        };
        embeddings.hold(position_embeddings.held());
        let patch_embeddings =
            PatchEmbedding::load(embeddings.pp("patch_embeddings.projection"), d, cfg.num_channels, p, true);
        let embed_norm = norm(embeddings.pp("layernorm"), cfg);
        let mut stages = scope.pp("encoder.stages");
        let stages = (0..cfg.depths.len()).map(|i| Stage::load(stages.pp(i), cfg, i)).collect();
        GroupVitVisionTower {
            patch_embeddings,
            position_embeddings,
            embed_norm,
            stages,
            layernorm: norm(scope.pp("layernorm"), cfg),
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
