//! MoCo v3's ViT (Chen, Xie and He, ICCV 2021; facebookresearch/moco-v3 @ c349e6e, `vits.py`)
//! rewritten in `ViTModel`'s layout, so that it loads as a vision-only image encoder. The
//! released checkpoints (`vit-b-300ep.pth.tar`, …) are the training state `main_moco.py`
//! saves: `state_dict` holds `module.base_encoder.*` (timm's `VisionTransformer` names), the
//! momentum encoder, the predictor and the projection head, beside the optimiser's state. The
//! base encoder's trunk is what the repository's `convert_to_deit.py` keeps; so here:
//!
//! | timm (`module.base_encoder.`)        | `ViTModel`                                           |
//! |--------------------------------------|------------------------------------------------------|
//! | `cls_token`, `pos_embed`              | `embeddings.cls_token`, `embeddings.position_embeddings` |
//! | `patch_embed.proj`                    | `embeddings.patch_embeddings.projection`              |
//! | `blocks.i.norm1`, `norm2`             | `encoder.layer.i.layernorm_before`, `layernorm_after` |
//! | `blocks.i.attn.qkv` (rows q, k, v)    | `encoder.layer.i.attention.attention.{query,key,value}` |
//! | `blocks.i.attn.proj`                  | `encoder.layer.i.attention.output.dense`              |
//! | `blocks.i.mlp.fc1`, `fc2`             | `encoder.layer.i.intermediate.dense`, `output.dense`  |
//! | `norm`                                | `layernorm`                                          |
//!
//! The fixed sin-cos position table is stored in the checkpoint and copied as it is. Layer
//! norms use timm's ε = 1e-6. The number of heads is not in the weights: MoCo v3's ViT-S (384
//! wide) and ViT-B (768) both have 12; other widths must say. The convolutional-stem variants
//! (`vit_conv_*`) are refused.

use serde_json::json;

use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};

/// One tensor: its name, shape and values.
pub type Named = (String, Vec<usize>, Vec<f32>);

/// `config.json` (a `ViTConfig`) and the tensors of `ViTModel` for the base encoder of a MoCo
/// v3 checkpoint (or of a timm ViT state dict with the same names, with or without the
/// `module.` and `module.base_encoder.` prefixes).
pub fn convert(checkpoint: &Checkpoint<'_>, heads: Option<usize>) -> Result<(serde_json::Value, Vec<Named>)> {
    let prefix = encoder_prefix(checkpoint)?;
    let get = |name: &str| -> Result<(Vec<usize>, Vec<f32>)> {
        let key = format!("{prefix}{name}");
        let entry = checkpoint
            .get(&key)
            .ok_or_else(|| Error::format("the MoCo v3 checkpoint", format!("it has no {key}: not a MoCo v3 ViT")))?;
        Ok((entry.shape.clone(), checkpoint.read_finite_f32(&key)?))
    };
    if checkpoint.get(&format!("{prefix}patch_embed.proj.0.weight")).is_some() {
        return Err(Error::Unsupported(
            "the convolutional-stem MoCo v3 ViTs (vit_conv_small, vit_conv_base); the plain ViT-S and ViT-B convert"
                .into(),
        ));
    }
    let (cls_shape, cls) = get("cls_token")?;
    let d = match cls_shape[..] {
        [1, 1, d] if d > 0 => d,
        _ => {
            return Err(Error::format(
                "the MoCo v3 checkpoint",
                format!("cls_token has shape {cls_shape:?}, expected [1, 1, width]"),
            ));
        }
    };
    let (patch_shape, patch) = get("patch_embed.proj.weight")?;
    let p = match patch_shape[..] {
        [out, 3, p, q] if out == d && p == q && p > 0 => p,
        _ => {
            return Err(Error::format(
                "the MoCo v3 checkpoint",
                format!("patch_embed.proj.weight has shape {patch_shape:?}, expected [{d}, 3, p, p]"),
            ));
        }
    };
    let (pos_shape, pos) = get("pos_embed")?;
    let rows = match pos_shape[..] {
        [1, rows, w] if w == d => rows,
        _ => {
            return Err(Error::format(
                "the MoCo v3 checkpoint",
                format!("pos_embed has shape {pos_shape:?}, expected [1, 1 + patches, {d}]"),
            ));
        }
    };
    let grid = (rows.saturating_sub(1) as f64).sqrt().round() as usize;
    if grid == 0 || grid * grid + 1 != rows {
        return Err(Error::format(
            "the MoCo v3 checkpoint",
            format!("pos_embed has {rows} rows: not a class token and a square grid"),
        ));
    }
    let depth = (0..).take_while(|i| checkpoint.get(&format!("{prefix}blocks.{i}.norm1.weight")).is_some()).count();
    if depth == 0 {
        return Err(Error::format(
            "the MoCo v3 checkpoint",
            format!("it has no {prefix}blocks.0.*: not a MoCo v3 ViT"),
        ));
    }
    let heads = match heads {
        Some(h) => h,
        None if d == 384 || d == 768 => 12,
        None => {
            return Err(Error::invalid(format!(
                "a MoCo v3 ViT {d} wide: its number of heads is not in the weights, give it (--heads)"
            )));
        }
    };
    if heads == 0 || !d.is_multiple_of(heads) {
        return Err(Error::invalid(format!("{heads} heads do not divide the width {d}")));
    }
    let mut out: Vec<Named> = vec![
        ("embeddings.cls_token".into(), cls_shape, cls),
        ("embeddings.position_embeddings".into(), pos_shape, pos),
        ("embeddings.patch_embeddings.projection.weight".into(), patch_shape, patch),
    ];
    let copy = |out: &mut Vec<Named>, from: &str, to: &str| -> Result<()> {
        let (shape, values) = get(from)?;
        out.push((to.to_string(), shape, values));
        Ok(())
    };
    copy(&mut out, "patch_embed.proj.bias", "embeddings.patch_embeddings.projection.bias")?;
    copy(&mut out, "norm.weight", "layernorm.weight")?;
    copy(&mut out, "norm.bias", "layernorm.bias")?;
    let mut intermediate = 0;
    for i in 0..depth {
        let (b, l) = (format!("blocks.{i}."), format!("encoder.layer.{i}."));
        for (from, to) in [
            ("norm1", "layernorm_before"),
            ("norm2", "layernorm_after"),
            ("attn.proj", "attention.output.dense"),
            ("mlp.fc1", "intermediate.dense"),
            ("mlp.fc2", "output.dense"),
        ] {
            for part in ["weight", "bias"] {
                copy(&mut out, &format!("{b}{from}.{part}"), &format!("{l}{to}.{part}"))?;
            }
        }
        intermediate = get(&format!("{b}mlp.fc1.weight"))?.0[0];
        // q, k and v are the qkv product's rows, in that order (timm's `Attention`).
        for part in ["weight", "bias"] {
            let (shape, values) = get(&format!("{b}attn.qkv.{part}"))?;
            if shape.first() != Some(&(3 * d)) {
                return Err(Error::format(
                    "the MoCo v3 checkpoint",
                    format!("{b}attn.qkv.{part} has shape {shape:?}, expected {} rows", 3 * d),
                ));
            }
            let third = values.len() / 3;
            let mut rows = shape.clone();
            rows[0] = d;
            for (j, name) in ["query", "key", "value"].iter().enumerate() {
                out.push((
                    format!("{l}attention.attention.{name}.{part}"),
                    rows.clone(),
                    values[j * third..(j + 1) * third].to_vec(),
                ));
            }
        }
    }
    let config = json!({
        "model_type": "vit",
        "architectures": ["ViTModel"],
        "hidden_size": d,
        "num_hidden_layers": depth,
        "num_attention_heads": heads,
        "intermediate_size": intermediate,
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-6,
        "image_size": grid * p,
        "patch_size": p,
        "num_channels": 3,
        "qkv_bias": true,
    });
    Ok((config, out))
}

/// Where the base encoder's names start: before `cls_token`, preferring the base encoder over
/// the momentum encoder.
fn encoder_prefix(checkpoint: &Checkpoint<'_>) -> Result<String> {
    let mut found: Vec<&str> = checkpoint.names().filter(|n| *n == "cls_token" || n.ends_with(".cls_token")).collect();
    found.sort_unstable_by_key(|n| (!n.contains("base_encoder"), n.contains("momentum_encoder"), n.len()));
    found.first().map(|n| n.trim_end_matches("cls_token").to_string()).ok_or_else(|| {
        Error::format("the MoCo v3 checkpoint", "it has no cls_token: not a ViT (MoCo v3's ResNet-50 is not a ViT)")
    })
}
