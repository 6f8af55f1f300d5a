#!/usr/bin/env python3
"""Reference fixture for the SegCLIP engine, from the SegCLIP repository's own model code.

SegCLIP (Luo et al., ICML 2023) ships its checkpoint as a PyTorch pickle with OpenAI-CLIP key
names (`clip.*`), built by `modules/module_clip.CLIP`. This script imports that class from a
checkout of the repository (ArrowLuo/SegCLIP at df09ba2; not vendored here), builds a tiny
random-weight model with every parameter re-randomised, saves its state dict exactly as the
release does (`torch.save(model.state_dict())`, plus a few `vis_mae_decoder.*` tensors that
inference ignores), and records what the repository computes:

- text embeddings of the prompts (`encode_text`);
- for each 224x224 window of a test photo: the patch tokens after the first stage, the soft
  and hard centre assignments, the image and group embeddings (`encode_image`), and the
  window's scores as `ViTSegInference.encode_decode` makes them (seg_segmentation/evaluation/
  vit_seg.py:202-256, rewritten here because that module imports mmseg), kept as each pixel's
  group, each group's class scores and the background limit;
- the final label map at the photo's size after mmseg's slide inference (224 windows at
  stride 224, averaged, resized bilinearly, argmax; 0 = background).

Changes to the repository's code, all small and written down:
1. `CrossAttentionBlock.forward` permutes the keys to sequence-first as it does the queries.
   As written it passes batch-first keys to a sequence-first `nn.MultiheadAttention`, which
   torch 1.8 accepted at batch 1 (same memory layout) and torch 2.x refuses ("shape '[1, 12,
   64]' is invalid"); the permute restores the torch-1.8 batch-1 result.
2. A tiny model: width 64 with 2 heads (the repository fixes heads = width / 64, so the heads of
   every attention are set to 2 and the grouped key/value convolutions rebuilt with 2 groups),
   2 first-stage blocks (`first_stage_layer=2`) and 1 block after the grouping (the repository
   hard-codes 12 - first_stage_layer; the extra blocks are dropped). Text: width 8, 2 heads,
   2 layers, the full 49,408-token vocabulary.
3. The image is resized with Pillow's bicubic filter to a short side of 224 (the engine's
   preprocessing, shared with the other engines) instead of the repository's cv2 bilinear;
   the windows, grouping and scores are the repository's.

    pip install -r tools/requirements.txt
    python3 tools/segclip_reference.py --repo /path/to/SegCLIP   # writes tests/fixtures/segclip/
    python3 tools/segclip_reference.py --colours   # the hand-built colour checkpoint
                                                   # (tests/fixtures/semantic-colours-segclip/)
"""

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "segclip"
SEED = 20261201
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
PROMPTS = ["red", "green grass", "a big blue sky", "yellow paint", "a small cat on a mat", "sky"]
TEMPLATE = "a photo of a {}."
THRESHOLD = 0.2
HEADS = 2
PINNED_TORCH = "2.15.0"


def fixed_cross_attention(self, q, k):
    q = q.permute(1, 0, 2)
    k = k.permute(1, 0, 2)  # the fix: keys sequence-first, as the queries
    q = q + self.attn(self.ln_x(q), self.ln_k(k), self.ln_k(k), need_weights=False)[0]
    q = q + self.mlp(self.ln_2(q))
    return q.permute(1, 0, 2)


def build(repo):
    sys.path.insert(0, str(repo))
    from modules import module_seg_vit
    from modules.module_clip import CLIP

    module_seg_vit.CrossAttentionBlock.forward = fixed_cross_attention
    torch.manual_seed(SEED)
    model = CLIP(embed_dim=16, image_resolution=224, vision_layers=12, vision_width=64, vision_patch_size=16,
                 context_length=77, vocab_size=49408, transformer_width=8, transformer_heads=HEADS,
                 transformer_layers=2, first_stage_layer=2)
    seg = model.visual.transformer
    seg.layers2 = seg.layers2[:1]
    seg.layers_mae2 = seg.layers_mae2[:1]
    for m in model.visual.modules():
        if isinstance(m, nn.MultiheadAttention):
            m.num_heads, m.head_dim = HEADS, m.embed_dim // HEADS
    sem = seg.semantic_layer2
    sem.num_heads = HEADS
    sem.k_conv = nn.Conv1d(64, 64, kernel_size=1, groups=HEADS, bias=False)
    sem.v_conv = nn.Conv1d(64, 64, kernel_size=1, groups=HEADS, bias=False)
    # Every parameter re-randomised: zeros and ones from the initialisers hide bugs.
    g = torch.Generator().manual_seed(SEED + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "logit_scale":
                p.fill_(math.log(20.0))
            elif name.endswith("weight") and p.dim() == 1:  # layer norms
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            elif p.dim() == 1 or name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                fan_in = p.shape[-1] if p.dim() == 2 else p[0].numel()
                scale = 1.0 if "semantic_center" in name or "embedding" in name else fan_in ** -0.5
                p.copy_(scale * torch.randn(p.shape, generator=g))
    return model.eval()


def tokenize(repo, texts):
    from modules.tokenization_clip import SimpleTokenizer
    tok = SimpleTokenizer()
    sot, eot = tok.encoder["<|startoftext|>"], tok.encoder["<|endoftext|>"]
    out = torch.zeros(len(texts), 77, dtype=torch.long)
    for i, t in enumerate(texts):
        ids = [sot] + tok.encode(t)[:75] + [eot]
        out[i, : len(ids)] = torch.tensor(ids)
    return out


def photo():
    """A 300x240 photo: four colour quadrants with noise, so windows overlap."""
    rng = np.random.default_rng(SEED)
    w, h = 300, 240
    img = np.zeros((h, w, 3), np.float64)
    img[: h // 2, : w // 2] = (210, 40, 40)
    img[: h // 2, w // 2:] = (40, 190, 60)
    img[h // 2:, : w // 2] = (40, 60, 200)
    img[h // 2:, w // 2:] = (230, 210, 40)
    img += rng.normal(0, 25, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def preprocess(image):
    w, h = image.size
    s = 224
    size = (int(s * w / h), s) if w >= h else (s, int(s * h / w))
    x = np.asarray(image.resize(size, Image.BICUBIC), np.float32) / 255.0
    x = (x - np.array(CLIP_MEAN, np.float32)) / np.array(CLIP_STD, np.float32)
    return torch.from_numpy(x).permute(2, 0, 1)[None].contiguous()


def window_logits(model, crop, text, threshold):
    """`ViTSegInference.encode_decode` for one window (vit_seg.py:202-256), with its pieces."""
    captured = {}
    hook = model.visual.transformer.layers0.register_forward_hook(lambda m, i, o: captured.__setitem__("patches", o))
    image_x, hidden, mid = model.encode_image(crop, return_hidden=True)
    hook.remove()
    soft, hard = mid["attns"][-1]["soft_attn"], mid["attns"][-1]["hard_attn"]  # [1, G, L]
    h, w = crop.shape[-2:]
    gh, gw = h // 16, w // 16
    g = soft.shape[1]
    attn = F.interpolate(soft.reshape(1, g, gh, gw), size=(h, w), mode="bilinear", align_corners=False)
    attn = attn[0].permute(1, 2, 0)  # [H, W, G]
    onehot = F.one_hot(attn.argmax(dim=-1), num_classes=g).to(attn.dtype)
    groups = F.normalize(hidden[0, 1:], dim=-1)
    image = F.normalize(image_x, dim=-1)
    scale = torch.clamp(model.logit_scale.exp(), max=100)
    affinity = groups @ text.T * scale
    pre = F.softmax(affinity, dim=-1)
    avg = F.softmax(image @ text.T * scale, dim=-1)
    mask = torch.zeros_like(avg)
    top = avg.topk(dim=-1, k=min(5, text.shape[0]))
    mask.scatter_add_(dim=-1, index=top.indices, src=torch.ones_like(top.values))
    affinity = affinity.masked_fill(~mask.bool(), float("-inf"))
    affinity = F.softmax(affinity, dim=-1) * pre
    logits = torch.zeros(text.shape[0] + 1, h, w)
    logits[1:] = (onehot @ affinity).permute(2, 0, 1)
    bg = min(threshold, affinity.max().item())
    logits[0, (onehot @ affinity).max(dim=-1).values < bg] = 1
    parts = {
        # The window's scores, compactly: each pixel's group and each group's class scores
        # (`logits[1:, p] = affinity[group[p]]`), and the background's limit.
        "group": attn.argmax(dim=-1).float(),
        "affinity": affinity,
        "background_limit": torch.tensor([bg]),
        "patches": captured["patches"][0],
        "soft": soft[0],
        "hard": hard[0],
        "image_embeds": image_x[0],
        "group_embeds": hidden[0, 1:],
    }
    return logits, parts


COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "yellow": (255, 255, 0)}


@torch.no_grad()
def colour_fixture():
    """A SegCLIP checkpoint built by hand (no training), in the converted layout, whose centres
    are the four colours: the engine must label each region with its colour word.

    - vision (width 4, one block before the grouping, one after, both identity: attention
      values and MLP outputs zero): the patch embedding averages each CLIP-normalised channel
      over the patch into channels 0-2, and `ln_pre` turns that into a unit direction per colour.
    - grouping: the centres are those directions for red, green, blue and yellow; the
      cross-attention block is an identity; keys are 8 x the normalised patch (the key norm's
      weight), so each patch goes to the centre of its colour; the output MLP keeps its input
      (fc1 = fc2 = identity, shifted by +-10 into GELU's linear range, then +10 so QuickGELU is
      linear too; the final layer norm removes the shift).
    - text (as semantic-colours): each colour word embeds to its colour's normalised RGB, every
      other token to 0; uniform causal attention, so the end-of-text token is that direction.
    """
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(ROOT / "tools" / "clip_tokenizer")
    d, patch, groups, vocab = 4, 16, len(COLOURS), 49408
    eye = torch.eye(d)
    t = {}

    def zeros(name, *shape):
        t[name] = torch.zeros(*shape)

    def norm(name, weight=1.0):
        t[f"{name}.weight"] = torch.full((d,), weight)
        t[f"{name}.bias"] = torch.zeros(d)

    def block(prefix, hidden):
        for p in ["q_proj", "k_proj", "v_proj", "out_proj"]:
            zeros(f"{prefix}.self_attn.{p}.weight", d, d)
            zeros(f"{prefix}.self_attn.{p}.bias", d)
        norm(f"{prefix}.layer_norm1")
        norm(f"{prefix}.layer_norm2")
        zeros(f"{prefix}.mlp.fc1.weight", hidden, d)
        zeros(f"{prefix}.mlp.fc1.bias", hidden)
        zeros(f"{prefix}.mlp.fc2.weight", d, hidden)
        zeros(f"{prefix}.mlp.fc2.bias", d)

    normalised = {w: [(v / 255 - m) / s for v, m, s in zip(rgb, CLIP_MEAN, CLIP_STD)] + [0.0] for w, rgb in COLOURS.items()}
    directions = torch.stack([F.layer_norm(torch.tensor(v), (d,), eps=1e-5) for v in normalised.values()])
    weight = torch.zeros(d, 3, patch, patch)
    for c in range(3):
        weight[c, c] = 1.0 / patch**2
    t["vision_model.embeddings.patch_embedding.weight"] = weight
    zeros("vision_model.embeddings.class_embedding", d)
    zeros("vision_model.embeddings.position_embedding.weight", 197, d)
    norm("vision_model.pre_layrnorm")
    for i in range(2):
        block(f"vision_model.encoder.layers.{i}", 8)
    norm("vision_model.post_layernorm")
    t["visual_projection.weight"] = eye.clone()
    g = "vision_model.grouping"
    t[f"{g}.centres"] = directions
    norm(f"{g}.norm")
    c = f"{g}.cross_attention.0"
    for p in ["q_proj", "k_proj", "v_proj", "out_proj"]:
        zeros(f"{c}.attn.{p}.weight", d, d)
        zeros(f"{c}.attn.{p}.bias", d)
    norm(f"{c}.query_norm")
    norm(f"{c}.key_norm")
    norm(f"{c}.layer_norm2")
    zeros(f"{c}.mlp.fc1.weight", 4 * d, d)
    zeros(f"{c}.mlp.fc1.bias", 4 * d)
    zeros(f"{c}.mlp.fc2.weight", d, 4 * d)
    zeros(f"{c}.mlp.fc2.bias", d)
    norm(f"{g}.cross_norm")
    t[f"{g}.key_proj.weight"] = eye.clone()
    norm(f"{g}.key_norm", 8.0)
    t[f"{g}.value_proj.weight"] = eye.clone()
    norm(f"{g}.out_norm")
    fc1 = torch.zeros(4 * d, d)
    fc1[:d] = eye
    fc2 = torch.zeros(d, 4 * d)
    fc2[:, :d] = eye
    t[f"{g}.out_mlp.fc1.weight"] = fc1
    t[f"{g}.out_mlp.fc1.bias"] = torch.cat([torch.full((d,), 10.0), torch.zeros(3 * d)])
    t[f"{g}.out_mlp.fc2.weight"] = fc2
    # fc2 passes GELU(x + 10) = x + 10 on: QuickGELU is linear there too, and the final layer
    # norm removes the shift.
    zeros(f"{g}.out_mlp.fc2.bias", d)
    token = torch.zeros(vocab, d)
    for word, value in normalised.items():
        [token_id] = tokenizer(word, add_special_tokens=False).input_ids
        token[token_id] = torch.tensor(value)
    t["text_model.embeddings.token_embedding.weight"] = token
    zeros("text_model.embeddings.position_embedding.weight", 77, d)
    block("text_model.encoder.layers.0", 8)
    t["text_model.encoder.layers.0.self_attn.v_proj.weight"] = eye.clone()
    t["text_model.encoder.layers.0.self_attn.out_proj.weight"] = eye.clone()
    norm("text_model.final_layer_norm")
    t["text_projection.weight"] = eye.clone()
    t["logit_scale"] = torch.tensor(math.log(100.0))
    config = {
        "model_type": "segclip", "architectures": ["SegCLIP"], "projection_dim": d,
        "first_stage_layers": 1, "num_group_tokens": groups, "num_cross_layers": 1,
        "text_config": {"vocab_size": vocab, "hidden_size": d, "intermediate_size": 8, "num_hidden_layers": 1,
                        "num_attention_heads": 1, "max_position_embeddings": 77, "hidden_act": "quick_gelu",
                        "layer_norm_eps": 1e-5, "eos_token_id": 49407},
        "vision_config": {"hidden_size": d, "intermediate_size": 8, "num_hidden_layers": 2, "num_attention_heads": 1,
                          "num_channels": 3, "image_size": 224, "patch_size": patch, "hidden_act": "quick_gelu",
                          "layer_norm_eps": 1e-5},
    }
    out = ROOT / "tests" / "fixtures" / "semantic-colours-segclip"
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous().half() for k, v in t.items()}, out / "model.safetensors")
    (out / "config.json").write_text(json.dumps(config, indent=1) + "\n")
    print(f"wrote {out}: {len(t)} tensors")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repo", type=Path, help="a checkout of ArrowLuo/SegCLIP (df09ba2)")
    parser.add_argument("--colours", action="store_true", help="write the hand-built colour checkpoint instead")
    args = parser.parse_args()
    if torch.__version__.split("+")[0] != PINNED_TORCH:
        sys.exit(f"torch {torch.__version__} is installed; the fixtures are pinned to {PINNED_TORCH} (pip install -r tools/requirements.txt)")
    if args.colours:
        colour_fixture()
        return
    if args.repo is None:
        parser.error("--repo is needed for the reference")
    model = build(args.repo)
    OUT.mkdir(parents=True, exist_ok=True)

    state = {f"clip.{k}": v.contiguous() for k, v in model.state_dict().items()}
    # The release also holds the pretraining's MAE decoder, which inference ignores.
    state["vis_mae_decoder.decoder_embed.weight"] = torch.randn(8, 64)
    state["vis_mae_decoder.mask_token"] = torch.zeros(1, 1, 8)
    torch.save(state, OUT / "segclip-release.bin")

    ref = {}
    with torch.no_grad():
        ids = tokenize(args.repo, [TEMPLATE.format(p) for p in PROMPTS])
        text = model.encode_text(ids)
        ref["text_embeds"] = text
        text_n = F.normalize(text, dim=-1)
        image = photo()
        image.save(OUT / "photo.png")
        pixels = preprocess(image)
        ref["pixels"] = pixels[0]
        _, _, H, W = pixels.shape
        crop = 224
        hg = max(H - crop + crop - 1, 0) // crop + 1
        wg = max(W - crop + crop - 1, 0) // crop + 1
        preds = torch.zeros(len(PROMPTS) + 1, H, W)
        count = torch.zeros(1, H, W)
        windows = []
        for hi in range(hg):
            for wi in range(wg):
                y2, x2 = min(hi * crop + crop, H), min(wi * crop + crop, W)
                y1, x1 = max(y2 - crop, 0), max(x2 - crop, 0)
                logits, parts = window_logits(model, pixels[:, :, y1:y2, x1:x2], text_n, THRESHOLD)
                k = len(windows)
                for name, value in parts.items():
                    ref[f"window{k}.{name}"] = value
                windows.append([x1, y1, x2, y2])
                preds[:, y1:y2, x1:x2] += logits
                count[:, y1:y2, x1:x2] += 1
        preds = preds / count
        full = F.interpolate(preds[None], size=(image.size[1], image.size[0]), mode="bilinear", align_corners=False)[0]
        ref["label_map"] = full.argmax(dim=0).float()
    save_file({k: v.contiguous().float() for k, v in ref.items()}, OUT / "reference.safetensors")
    meta = {
        "prompts": PROMPTS, "template": TEMPLATE, "threshold": THRESHOLD, "windows": windows,
        "heads": HEADS, "text_heads": HEADS, "resized": [W, H],
        "repository": "ArrowLuo/SegCLIP df09ba2", "torch": torch.__version__,
    }
    (OUT / "reference.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"wrote {OUT}: {len(state)} tensors, {len(windows)} windows, label map {tuple(ref['label_map'].shape)}")


if __name__ == "__main__":
    main()
