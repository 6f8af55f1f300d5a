//! The released SegCLIP checkpoint (`segclip.bin`: a PyTorch state dict of `SegCLIP`, keys
//! `clip.*` in OpenAI CLIP's layout, plus the pretraining's `vis_mae_decoder.*`) as a folder the
//! loader reads: `config.json` (`model_type` `segclip`, sizes read from the tensors' shapes)
//! and `model.safetensors` in the CLIP hub layout.
//!
//! Renamed: OpenAI's packed `attn.in_proj_{weight,bias}` split into `q_proj`, `k_proj`,
//! `v_proj`; `ln_1`/`ln_2` → `layer_norm1`/`layer_norm2`; `mlp.c_fc`/`c_proj` → `mlp.fc1`/`fc2`;
//! `visual.proj` and `text_projection` transposed into linear weights; the grouped 1x1
//! convolutions `k_conv`, `v_conv` expanded into block-diagonal linear weights (exact: the
//! added entries are zeros). Dropped: `layers_mae2.*`, `reconstruct_layer2.*` (the repository
//! uses them only on its pretraining path) and `vis_mae_decoder.*` (not used in inference).

use crate::checkpoint::{Checkpoint, write_safetensors};
use crate::error::{Error, Result};

use super::SegClipConfig;

/// What a conversion made.
pub struct Converted {
    pub config_json: String,
    pub safetensors: Vec<u8>,
    pub config: SegClipConfig,
    /// Tensors written.
    pub written: usize,
    /// Names skipped (pretraining-only parts), counted by prefix.
    pub dropped: Vec<(String, usize)>,
}

/// Heads the repository gives a width (`width // 64`, `module_seg_vit.py:358`, `modeling.py:109`).
fn repository_heads(width: usize) -> usize {
    (width / 64).max(1)
}

struct Source<'c, 'a> {
    checkpoint: &'c Checkpoint<'a>,
    prefix: &'static str,
    out: Vec<(String, Vec<usize>, Vec<f32>)>,
    used: std::collections::BTreeSet<String>,
}

impl Source<'_, '_> {
    fn name(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn shape(&self, key: &str) -> Result<Vec<usize>> {
        let name = self.name(key);
        self.checkpoint.get(&name).map(|e| e.shape.clone()).ok_or_else(|| {
            Error::format(&self.checkpoint.source_name, format!("tensor {name} is missing: not a SegCLIP checkpoint?"))
        })
    }

    /// The shape of `key`, which must have `rank` axes (a crafted or foreign file may hold
    /// any shape under a SegCLIP name; the sizes read from it index what follows).
    fn shape_of(&self, key: &str, rank: usize) -> Result<Vec<usize>> {
        let shape = self.shape(key)?;
        if shape.len() != rank {
            return Err(Error::format(
                &self.checkpoint.source_name,
                format!(
                    "tensor {} has shape {shape:?}; a SegCLIP checkpoint holds it with {rank} axes",
                    self.name(key)
                ),
            ));
        }
        Ok(shape)
    }

    fn read(&mut self, key: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let shape = self.shape(key)?;
        self.read_shaped(key, shape)
    }

    /// [`Self::read`] of a tensor that must have `rank` axes.
    fn read_rank(&mut self, key: &str, rank: usize) -> Result<(Vec<usize>, Vec<f32>)> {
        let shape = self.shape_of(key, rank)?;
        self.read_shaped(key, shape)
    }

    fn read_shaped(&mut self, key: &str, shape: Vec<usize>) -> Result<(Vec<usize>, Vec<f32>)> {
        let name = self.name(key);
        self.used.insert(name.clone());
        Ok((shape, self.checkpoint.read_finite_f32(&name)?))
    }

    fn put(&mut self, name: String, shape: Vec<usize>, values: Vec<f32>) {
        self.out.push((name, shape, values));
    }

    fn copy(&mut self, key: &str, to: &str) -> Result<()> {
        let (shape, values) = self.read(key)?;
        self.put(to.to_string(), shape, values);
        Ok(())
    }

    /// `[rows, cols]` → `[cols, rows]` (a `x @ W` parameter as a linear weight).
    fn transposed(&mut self, key: &str, to: &str) -> Result<()> {
        let (shape, values) = self.read_rank(key, 2)?;
        let (rows, cols) = (shape[0], shape[1]);
        let mut out = vec![0f32; rows * cols];
        for r in 0..rows {
            for c in 0..cols {
                out[c * rows + r] = values[r * cols + c];
            }
        }
        self.put(to.to_string(), vec![cols, rows], out);
        Ok(())
    }

    /// A grouped `Conv1d(d, d, 1, groups)` weight `[d, d / groups, 1]` as a dense `[d, d]`
    /// (`d`, the vision width, was checked against the config's bounds before).
    fn grouped_conv(&mut self, key: &str, to: &str, d: usize, groups: usize) -> Result<()> {
        let (shape, values) = self.read_rank(key, 3)?;
        let per = shape[1];
        if shape[0] != d || per.checked_mul(groups) != Some(d) || shape[2] != 1 {
            return Err(Error::format(
                &self.checkpoint.source_name,
                format!(
                    "{} has shape {shape:?}; expected [{d}, {}, 1] for {groups} groups",
                    self.name(key),
                    d / groups.max(1)
                ),
            ));
        }
        let mut dense = vec![0f32; d * d];
        for o in 0..d {
            let group = o / per;
            for i in 0..per {
                dense[o * d + group * per + i] = values[o * per + i];
            }
        }
        self.put(to.to_string(), vec![d, d], dense);
        Ok(())
    }

    /// An OpenAI residual block (`attn` packed, `ln_1`, `mlp.c_fc`, `mlp.c_proj`, `ln_2`) as a
    /// transformers `CLIPEncoderLayer`.
    fn block(&mut self, from: &str, to: &str) -> Result<()> {
        self.attention(&format!("{from}.attn"), &format!("{to}.self_attn"))?;
        self.copy(&format!("{from}.ln_1.weight"), &format!("{to}.layer_norm1.weight"))?;
        self.copy(&format!("{from}.ln_1.bias"), &format!("{to}.layer_norm1.bias"))?;
        self.feed_forward(from, to, "layer_norm2")
    }

    fn feed_forward(&mut self, from: &str, to: &str, norm: &str) -> Result<()> {
        self.copy(&format!("{from}.ln_2.weight"), &format!("{to}.{norm}.weight"))?;
        self.copy(&format!("{from}.ln_2.bias"), &format!("{to}.{norm}.bias"))?;
        for (a, b) in [("c_fc", "fc1"), ("c_proj", "fc2")] {
            self.copy(&format!("{from}.mlp.{a}.weight"), &format!("{to}.mlp.{b}.weight"))?;
            self.copy(&format!("{from}.mlp.{a}.bias"), &format!("{to}.mlp.{b}.bias"))?;
        }
        Ok(())
    }

    /// `nn.MultiheadAttention`'s packed projection split into `q_proj`, `k_proj`, `v_proj`.
    fn attention(&mut self, from: &str, to: &str) -> Result<()> {
        let (shape, weight) = self.read_rank(&format!("{from}.in_proj_weight"), 2)?;
        let (_, bias) = self.read_rank(&format!("{from}.in_proj_bias"), 1)?;
        let d = shape[1];
        if Some(shape[0]) != d.checked_mul(3) || Some(bias.len()) != d.checked_mul(3) {
            return Err(Error::format(
                &self.checkpoint.source_name,
                format!("{}.in_proj_weight has shape {shape:?}; expected [3 * {d}, {d}]", self.name(from)),
            ));
        }
        for (i, p) in ["q_proj", "k_proj", "v_proj"].iter().enumerate() {
            self.put(format!("{to}.{p}.weight"), vec![d, d], weight[i * d * d..(i + 1) * d * d].to_vec());
            self.put(format!("{to}.{p}.bias"), vec![d], bias[i * d..(i + 1) * d].to_vec());
        }
        self.copy(&format!("{from}.out_proj.weight"), &format!("{to}.out_proj.weight"))?;
        self.copy(&format!("{from}.out_proj.bias"), &format!("{to}.out_proj.bias"))
    }

    fn norm(&mut self, from: &str, to: &str) -> Result<()> {
        self.copy(&format!("{from}.weight"), &format!("{to}.weight"))?;
        self.copy(&format!("{from}.bias"), &format!("{to}.bias"))
    }

    /// How many `{prefix}.{i}.` blocks there are.
    fn count(&self, prefix: &str) -> usize {
        (0..)
            .take_while(|i| self.checkpoint.get(&self.name(&format!("{prefix}.{i}.attn.in_proj_weight"))).is_some())
            .count()
    }
}

/// Convert the release's state dict. `vision_heads` defaults to the groups of the key
/// convolution (the repository makes them equal), `text_heads` to the repository's rule
/// (width / 64).
pub fn convert(
    bytes: &[u8],
    source_name: &str,
    vision_heads: Option<usize>,
    text_heads: Option<usize>,
) -> Result<Converted> {
    let checkpoint = Checkpoint::from_bytes(bytes, source_name)?;
    let prefix = if checkpoint.get("clip.visual.conv1.weight").is_some() {
        "clip."
    } else if checkpoint.get("visual.conv1.weight").is_some() {
        ""
    } else {
        return Err(Error::format(
            source_name,
            "no clip.visual.conv1.weight: not a SegCLIP checkpoint (the release's segclip.bin holds clip.* tensors)",
        ));
    };
    let mut s = Source { checkpoint: &checkpoint, prefix, out: Vec::new(), used: Default::default() };
    // Every size comes from a tensor's shape, each checked for its number of axes, and all of
    // them go through the config's checks (its bounds included) before anything is converted.
    let conv = s.shape_of("visual.conv1.weight", 4)?;
    let (width, patch) = (conv[0], conv[3]);
    let positions = s.shape_of("visual.positional_embedding", 2)?[0];
    let grid = ((positions.saturating_sub(1)) as f64).sqrt().round() as usize;
    let first = s.count("visual.transformer.layers0");
    let second = s.count("visual.transformer.layers2");
    let cross = s.count("visual.transformer.semantic_layer2.cross_att");
    let centres = s.shape_of("visual.transformer.semantic_layer2.semantic_center", 2)?[0];
    let projection = s.shape_of("visual.proj", 2)?[1];
    let token = s.shape_of("token_embedding.weight", 2)?;
    let (vocab, text_width) = (token[0], token[1]);
    let context = s.shape_of("positional_embedding", 2)?[0];
    let text_layers = s.count("transformer.resblocks");
    let text_mlp = s.shape_of("transformer.resblocks.0.mlp.c_fc.weight", 2)?[0];
    let vision_mlp = s.shape_of("visual.transformer.layers0.0.mlp.c_fc.weight", 2)?[0];
    // The repository groups the key and value convolutions by the vision heads.
    let per_group = s.shape_of("visual.transformer.semantic_layer2.k_conv.weight", 3)?[1];
    let vision_heads =
        vision_heads.unwrap_or_else(|| width.checked_div(per_group).unwrap_or_else(|| repository_heads(width)));
    let text_heads = text_heads.unwrap_or_else(|| repository_heads(text_width));
    for (tower, heads, width) in [("vision", vision_heads, width), ("text", text_heads, text_width)] {
        if heads == 0 || !width.is_multiple_of(heads) {
            return Err(Error::invalid(format!(
                "{tower} heads {heads}: the {tower} tower is {width} wide, and its heads must be at least 1 and divide that"
            )));
        }
    }
    if first == 0 || grid * grid + 1 != positions {
        return Err(Error::format(
            source_name,
            format!(
                "unexpected sizes: {first} first-stage blocks, {positions} positions (a square grid and a class token)"
            ),
        ));
    }
    let config_json = serde_json::json!({
        "model_type": "segclip",
        "architectures": ["SegCLIP"],
        "projection_dim": projection,
        "first_stage_layers": first,
        "num_group_tokens": centres,
        "num_cross_layers": cross,
        "text_config": {
            "vocab_size": vocab, "hidden_size": text_width, "intermediate_size": text_mlp,
            "num_hidden_layers": text_layers, "num_attention_heads": text_heads,
            "max_position_embeddings": context, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5,
            "eos_token_id": 49407,
        },
        "vision_config": {
            "hidden_size": width, "intermediate_size": vision_mlp, "num_hidden_layers": first + second,
            "num_attention_heads": vision_heads, "num_channels": 3, "image_size": grid * patch,
            "patch_size": patch, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5,
        },
    });
    let config_json = serde_json::to_string_pretty(&config_json).map_err(|e| Error::Config(e.to_string()))?;
    let config = SegClipConfig::from_json(&config_json)?;

    // Vision tower.
    s.copy("visual.conv1.weight", "vision_model.embeddings.patch_embedding.weight")?;
    s.copy("visual.class_embedding", "vision_model.embeddings.class_embedding")?;
    s.copy("visual.positional_embedding", "vision_model.embeddings.position_embedding.weight")?;
    s.norm("visual.ln_pre", "vision_model.pre_layrnorm")?;
    for i in 0..first {
        s.block(&format!("visual.transformer.layers0.{i}"), &format!("vision_model.encoder.layers.{i}"))?;
    }
    for i in 0..second {
        s.block(&format!("visual.transformer.layers2.{i}"), &format!("vision_model.encoder.layers.{}", first + i))?;
    }
    s.norm("visual.ln_post", "vision_model.post_layernorm")?;
    s.transposed("visual.proj", "visual_projection.weight")?;
    // The grouping.
    let (from, to) = ("visual.transformer.semantic_layer2", "vision_model.grouping");
    s.copy(&format!("{from}.semantic_center"), &format!("{to}.centres"))?;
    s.norm(&format!("{from}.norm"), &format!("{to}.norm"))?;
    for i in 0..cross {
        let (f, t) = (format!("{from}.cross_att.{i}"), format!("{to}.cross_attention.{i}"));
        s.attention(&format!("{f}.attn"), &format!("{t}.attn"))?;
        s.norm(&format!("{f}.ln_x"), &format!("{t}.query_norm"))?;
        s.norm(&format!("{f}.ln_k"), &format!("{t}.key_norm"))?;
        s.feed_forward(&f, &t, "layer_norm2")?;
    }
    s.norm(&format!("{from}.cross_ln"), &format!("{to}.cross_norm"))?;
    s.grouped_conv(&format!("{from}.k_conv.weight"), &format!("{to}.key_proj.weight"), width, vision_heads)?;
    s.norm(&format!("{from}.k_ln"), &format!("{to}.key_norm"))?;
    s.grouped_conv(&format!("{from}.v_conv.weight"), &format!("{to}.value_proj.weight"), width, vision_heads)?;
    s.norm(&format!("{from}.proj_o.ln"), &format!("{to}.out_norm"))?;
    for fc in ["fc1", "fc2"] {
        s.copy(&format!("{from}.proj_o.mlp.{fc}.weight"), &format!("{to}.out_mlp.{fc}.weight"))?;
        s.copy(&format!("{from}.proj_o.mlp.{fc}.bias"), &format!("{to}.out_mlp.{fc}.bias"))?;
    }
    // Text tower.
    s.copy("token_embedding.weight", "text_model.embeddings.token_embedding.weight")?;
    s.copy("positional_embedding", "text_model.embeddings.position_embedding.weight")?;
    for i in 0..text_layers {
        s.block(&format!("transformer.resblocks.{i}"), &format!("text_model.encoder.layers.{i}"))?;
    }
    s.norm("ln_final", "text_model.final_layer_norm")?;
    s.transposed("text_projection", "text_projection.weight")?;
    s.copy("logit_scale", "logit_scale")?;

    let mut dropped: std::collections::BTreeMap<String, usize> = Default::default();
    for name in checkpoint.names().filter(|n| !s.used.contains(*n)) {
        let parts: Vec<&str> = name.split('.').collect();
        let end = parts
            .iter()
            .position(|p| ["layers_mae2", "reconstruct_layer2", "vis_mae_decoder", "seq_mae_decoder"].contains(p))
            .map(|i| i + 1)
            .unwrap_or_else(|| parts.iter().position(|p| p.parse::<usize>().is_ok()).unwrap_or(parts.len()));
        let head = parts[..end].join(".");
        *dropped.entry(head).or_default() += 1;
    }
    let written = s.out.len();
    let safetensors = write_safetensors(&s.out)?;
    Ok(Converted { config_json, safetensors, config, written, dropped: dropped.into_iter().collect() })
}
