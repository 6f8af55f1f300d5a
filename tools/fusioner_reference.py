#!/usr/bin/env python3
"""Reference fixtures for wordmask's Fusioner engine (tests/fixtures/fusioner-tiny/, fusioner-dino-tiny/).

Fusioner (Ma et al., BMVC 2022; repository chaofanma/Fusioner at 01985ed) segments with a frozen
CLIP: the image encoder's patch tokens (`ClipViT.forward`: ln_post on every token but the class
token, times `proj`, L2-normalised) and one text embedding per class (32 prompt templates, each
EOT-pooled and projected, normalised, averaged, renormalised) go through a small trainable
transformer (`Fusion`: LayerNorm/Linear/LayerNorm on the image tokens, LayerNorm/Linear plus a
learnt class embedding on the text, pre-LN blocks over the concatenation, a final LayerNorm and
two square projections), a convolutional decoder (`Decoder`: four 3x3 convolutions, each with
instance norm and ReLU, bilinear x2 after the first three, a 1x1 convolution, bilinear to the
crop size) and a cosine head (`Head`: cosine of pixel and class features over a temperature).
Whole images are scored by `FullModel.multi_scale_eval` (crop windows at stride 2/3 of the crop,
padded with -mean/std, averaged where they overlap) and labelled as `utils.get_preds` does
(sigmoid, a constant 0.5 background channel first, argmax).

This script re-implements those modules in plain torch (same parameter names as the
repository's, so the checkpoint's `fusion.*` and `decoder.*` keys are the repository's state
dict names), builds a tiny random model around a tiny random `transformers.CLIPModel`, and writes:

- `config.json`, `model.safetensors` (float16; CLIP under the hub's `CLIPModel` keys, the head
  under `fusion.*` / `decoder.*`; every weight is rounded through float16 first, so the stored
  checkpoint loses nothing against the references);
- `image_300x200.png`, `reference.safetensors` (float32) and `runs.json`: class embeddings, the
  first window's image tokens, fusion outputs, decoder map (before the final resize) and
  logits, the second window's logits, the stitched logits and the label map (subsampled).
  Each label runs through the fusion on its own, as the repository's `nclass = 1` model does:
  the fusion sees the image tokens and that one class token, the decoder and head give that
  class's logits [1, 1, 224, 224], and the labels' logits are stacked along the class axis
  ([1, 3, 224, 224] per window). The per-label tensors of window 0 are stacked along the first
  axis: `window0.fusion_patches` [3, 49, 16] (row k: label k alone), `window0.fusion_classes`
  [3, 1, 16], `window0.decoder_map` [3, 16, 56, 56]; `window0.visual` [1, 49, 16] is the same
  for every label. The stitched logits are `multi_scale_eval` run per label and stacked
  ([1, 3, 200, 300]);
- `train/` (a four-image dataset in `wordmask train --format folder`'s layout: `images/*.png`,
  `labels/*.png` with value k = line k of `classes.txt` (line 0 is `background`), 255 = ignore), `train.json` (a fixed schedule of 10 steps of
  two tasks) and `train_reference.safetensors` (float32): the losses, the learning-rate and
  weight-decay schedules and every trained parameter after the 10 steps, from the repository's
  training loop (train.py `run_one_batch`, model/__init__.py `get_learner`, utils/utils.py
  `cosine_scheduler`, `get_params_groups`, `Optimizers`, `loss_with_ignored_area`).

With `--dino`, the variant with a vision-only image encoder (a self-supervised ViT such as DINO,
in transformers' `ViTModel` layout as `facebook/dino-vitb16` is) goes to
`tests/fixtures/fusioner-dino-tiny/`: the image tokens are the ViT's last hidden state (after
ViTModel's final `layernorm`) without the class token, L2-normalised per token, so the fusion's
visual_dim is the ViT's width; the class embeddings come from the same tiny CLIP's text tower
(`get_text_features`, as above). It writes:

- `config.json`: `clip` (the tiny CLIPConfig), `vision` (the ViTConfig, model_type `vit`),
  `fusion_config` and the preprocessing keys as above;
- `model.safetensors` (float16): the CLIP's text side only under the hub's `CLIPModel` keys
  (`text_model.*`, `text_projection.weight`, `logit_scale`; no `vision_model.*` or
  `visual_projection.weight`), the ViT under `vision.` + the hub's ViTModel names
  (`vision.embeddings.cls_token`, `vision.encoder.layer.{i}.attention.attention.query.weight`,
  ..., `vision.layernorm.*`, as save_pretrained writes them: transformers 5 names the modules
  differently in memory, `layers.{i}.attention.q_proj`, and converts on saving), then `fusion.*`
  and `decoder.*`;
- `vit/`: the ViT alone, `save_pretrained` in float16 (config.json with model_type `vit`), for
  `wordmask train fusioner --backbone`; the tiny CLIP alone (`clip/`, for `--text`) only while
  the folder stays under 3 MB, which with its 1.8 MB (the 49,408 x 16 token table) it does not,
  so it is left out and the run says so;
- `image_300x200.png` (the same image), `reference.safetensors` and `runs.json`: the same
  tensors and the same evaluation as above (window0.visual is [1, 49, 24]); no training
  reference.

With `--bert`, the pairing of a vision-only image encoder with a language-only text encoder goes
to `tests/fixtures/fusioner-bert-tiny/`: the --dino variant's ViT (`fusioner-dino-tiny/vit`) and
the random BERT of `tests/fixtures/bert-tiny` (tools/bert_reference.py; float32, as a trained
checkpoint copies it). The repository has no BERT text encoder
(only `ClipText`); the class embedding is `ClipText.get_embed`'s averaging over BertModel's
pooled prompts: each of the 32 templates tokenised alone by `BertTokenizer` (`[CLS] ... [SEP]`,
token type 0, no padding), pooled (`cls`: `pooler_output`, tanh(W h[CLS] + b); `mean`: the last
hidden state averaged over every token), normalised, the 32 averaged and renormalised; no
projection (the fusion's `text_proj` maps BERT's width, 32). It writes no encoder weights (the
Rust test assembles the checkpoint from the two folders, as `wordmask train fusioner` does):

- `head.safetensors` (float16): the head's initial `fusion.*` and `decoder.*`;
- `encoders.json`: the two folders, the pooling the references use (mean, wordmask's default),
  the fusion config, the image statistics and the training images' folder;
- `reference.safetensors` and `runs.json`: the labels' class embeddings, the stitched logits,
  labels and margins of fusioner-tiny's test image (the per-window tensors are left out: they
  are the head's, which the other variants check);
- `train.json` and `train_reference.safetensors`: the same ten training steps as fusioner-tiny's
  on `fusioner-tiny/train`, with BERT's class embeddings, and the class embeddings of the
  training classes under both poolings (`class_text.cls`, `class_text.mean`).

    pip install -r tools/requirements.txt
    python3 tools/fusioner_reference.py                       # writes tests/fixtures/fusioner-tiny/
    python3 tools/fusioner_reference.py --dino                # writes tests/fixtures/fusioner-dino-tiny/
    python3 tools/fusioner_reference.py --bert                # writes tests/fixtures/fusioner-bert-tiny/
    python3 tools/fusioner_reference.py [--dino] --check-repository [GIT_DIR]
        # also loads the same weights into the repository's own Fusion, Decoder and Head
        # (model/{fusion,decoder,head,full_model}.py and utils/{model_utils,utils}.py, read
        # from a checkout or bare git directory of chaofanma/Fusioner at 01985ed; `configs`
        # stubbed with target_size [224, 224], OpenAI's `clip` package and the two CLIP encoder
        # modules with empty stand-ins), runs window 0 through them one label at a time, and
        # the whole image through the repository's FullModel (nclass = 1, its forward,
        # encoder_forward and multi_scale_eval; built without its __init__, which loads
        # ViT-L/14, its image and text encoders standing in for this file's) once per label,
        # compares its cosine_scheduler, get_params_groups,
        # loss_with_ignored_area and get_preds, asserts agreement (max abs diff <= 1e-5) and
        # prints the differences (all 0 with the pinned versions); with --dino, the head with
        # visual_dim 24 on the ViT's tokens, window 0 and multi_scale_eval only.

Tiny configuration: CLIP vision width 32, 2 layers, 4 heads, MLP 64, patch 32 at 224 (a 7x7
grid); text width 16, 2 layers, 2 heads, MLP 32, the full 49,408-token vocabulary; projection
16; quick_gelu. Fusion width 16, 2 blocks, 4 heads, MLP 32, temperature 0.07; the decoder works
at width 16 (7 -> 14 -> 28 -> 56 -> 224). The stock initialisations (transformers' for CLIP,
torch's for the head) under the seed, then every layer norm's weight and bias (CLIP's and the
fusion's), every CLIP bias and the class embedding get a small random offset, so that a missing
norm or bias shows up. The stock text tower gives every prompt nearly the same output (class
embeddings at cosine 0.996), so its token table and linear weights are drawn again (unit and
double gain); the text and head draws are chosen among the first few so that the labels'
embeddings differ (cosines 0.38-0.88) and each outcome covers part of the label map. The
stitched labels come with their margins (`labels_margin_sub`), so that a test can leave out
pixels where the top two logits are closer than its tolerance.

Tiny ViT (--dino): width 24, 2 layers, 4 heads, MLP 48, patch 32 at 224 (the same 7x7 grid),
exact gelu, layer-norm eps 1e-12, qkv bias; transformers' initialisation under its seed, then
every layer norm's weight and bias and every bias get an offset (0.1), the class token and the
position embeddings a larger one (0.5), and the blocks' linear weights are drawn again at unit
gain (at the stock 0.02 the attention and MLP branches barely move the tokens, and a missing
class token would change them by 6e-5). The head keeps the fusion configuration above with
visual_dim 24, a fresh draw with the same offsets; the ViT and head draws are chosen, as above,
so that each outcome covers part of the label map. The script checks that the hub names carry
what it expects (a plain-torch ViT forward over the saved `vit/` tensors matches ViTModel's) and
that `vit/` loads back to the same outputs.

Where this differs from the repository, on purpose:
1. Several labels per image. The repository asks one class per task (`FullModel.nclass = 1`,
   its score buffers have one channel); here every label is still run on its own, exactly as
   the repository would run it (its own forward pass through the fusion, decoder and head, its
   own `multi_scale_eval`), and the labels' logits are then stacked along the class axis and
   labelled together by `get_preds` (which the repository also applies over a class axis). The
   windowing, padding and averaging are `multi_scale_eval`'s (crop 224, stride
   int(224 * 2/3) = 149, scales [1.0], no flip, original resolution as with
   `--test_with_org_resolution`).
2. CLIP is `transformers.CLIPModel` (the hub layout wordmask loads) in place of OpenAI's `clip`
   package; the prompts are padded to 77 with the tokenizer's pad token rather than zeros, which
   the causal mask makes irrelevant to the EOT token's output.
3. Training data: a folder dataset of 224x224 images, no augmentation or random crop, and a
   fixed list of (image, class) tasks in place of the PASCAL/COCO episode sampler. Each task is
   the repository's: one image, the text of one class, target = (mask == class value), ignore =
   (mask == 255).

Versions are pinned in tools/requirements.txt; seeds are fixed; everything runs in float32 on
the CPU.
"""

import argparse
import copy
import importlib
import json
import math
import shutil
import subprocess
import sys
import tempfile
import types
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import BertModel, BertTokenizer, CLIPConfig, CLIPModel, CLIPTokenizer, ViTConfig, ViTModel

from make_fixtures import OUT, TOKENIZER_FILES, check_versions

DIRECTORY = OUT / "fusioner-tiny"
SEED = 20261211
TEXT_GAIN = 2.0
# Draws of the text tower's weights and of the fusion head (see build_clip, build_head):
# chosen among the first few so that the three labels' embeddings are far apart and each of
# the four outcomes (background, cat, dog, tree) covers a fair share of the label map.
TEXT_DRAW = SEED + 1
HEAD_DRAW = SEED + 10
# The --dino variant (tests/fixtures/fusioner-dino-tiny/): the ViT's draw and the head's, chosen
# the same way (see build_vit).
DINO_DIRECTORY = OUT / "fusioner-dino-tiny"
VIT_DRAW = SEED + 20
DINO_HEAD_DRAW = SEED + 35
# The --bert variant (tests/fixtures/fusioner-bert-tiny/): the --dino variant's ViT and the BERT
# of tests/fixtures/bert-tiny (tools/bert_reference.py), a head of its own draw.
BERT_DIRECTORY = OUT / "fusioner-bert-tiny"
BERT_SOURCE = OUT / "bert-tiny"
BERT_HEAD_DRAW = SEED + 52  # chosen as the others: each outcome covers part of the label map
# The pooling the fixture trains with (wordmask's default); class embeddings are recorded for both.
BERT_POOLING = "mean"
MIRROR = Path("/work/.mirror/chaofanma+Fusioner/repo")
REVISION = "01985ed"

CLIP_TINY = dict(
    text=dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
              vocab_size=49408, max_position_embeddings=77),
    vision=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                patch_size=32, image_size=224),
    projection_dim=16,
    hidden_act="quick_gelu",
)
# The --dino variant's image encoder, in transformers' ViTModel layout (as facebook/dino-vitb16).
VIT_TINY = dict(hidden_size=24, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
                patch_size=32, image_size=224, hidden_act="gelu", layer_norm_eps=1e-12, qkv_bias=True)
FUSION = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=4, intermediate_size=32,
              layer_norm_eps=1e-05, temperature=0.07)
# dataset/augumenter.py's A.Normalize for PASCAL (the first of its two sets).
IMAGE_MEAN = [0.4554, 0.4298, 0.3955]
IMAGE_STD = [0.1181, 0.1189, 0.1338]
CROP = 224
STRIDE = int(CROP * 2.0 / 3.0)  # 149
# FullModel.pad_mean / pad_std: padding value -0.5 / 0.5 = -1 in every channel.
PAD_MEAN = [0.5, 0.5, 0.5]
PAD_STD = [0.5, 0.5, 0.5]

LABELS = ["cat", "dog", "tree"]
IMAGE_SIZE = (300, 200)  # width, height
WINDOW_STEP = 7  # window logits [..., ::7, ::7] -> 32x32
STITCHED_STEP = 5  # stitched logits and labels [:, ::5, ::5] -> 40x60

TRAIN_CLASSES = ["red", "green", "blue"]
TRAIN = dict(fusion_lr=1e-3, fusion_min_lr=2e-6, decoder_lr=1e-3, wd=0.01, wd_end=0.4, beta1=0.9,
             warmup_epochs=1, epochs=2, iters_per_epoch=5)
TRAIN_STEPS = 10
TASKS_PER_STEP = 2

# model/text_encoder.py, ClipText.template_list.
TEMPLATES = [
    "a bad photo of the {category}.",
    "a photo of the large {category}.",
    "a photo of the small {category}.",
    "a cropped photo of a {category}.",
    "This is a photo of a {category}",
    "This is a photo of a small {category}",
    "This is a photo of a medium {category}",
    "This is a photo of a large {category}",
    "This is a masked photo of a {category}",
    "This is a masked photo of a small {category}",
    "This is a masked photo of a medium {category}",
    "This is a masked photo of a large {category}",
    "This is a cropped photo of a {category}",
    "This is a cropped photo of a small {category}",
    "This is a cropped photo of a medium {category}",
    "This is a cropped photo of a large {category}",
    "A photo of a {category} in the scene",
    "a bad photo of the {category} in the scene",
    "a photo of the large {category} in the scene",
    "a photo of the small {category} in the scene",
    "a cropped photo of a {category} in the scene",
    "a photo of a masked {category} in the scene",
    "There is a {category} in the scene",
    "There is the {category} in the scene",
    "This is a {category} in the scene",
    "This is the {category} in the scene",
    "This is one {category} in the scene",
    "There is a masked {category} in the scene",
    "There is the masked {category} in the scene",
    "This is a masked {category} in the scene",
    "This is the masked {category} in the scene",
    "This is one masked {category} in the scene",
]


# ---------------------------------------------------------------------------------------------
# The fusion head (utils/model_utils.py, model/fusion.py, model/decoder.py, model/head.py)


class Attention(nn.Module):
    """Multi-head self-attention with one fused qkv projection (no dropout)."""

    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        weights = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return self.proj((weights @ v).transpose(1, 2).reshape(b, n, c))


class FeedForward(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """Pre-LN transformer block (drop path 0)."""

    def __init__(self, dim, heads, hidden, eps):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, heads)
        self.mlp = FeedForward(dim, hidden)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class Fusion(nn.Module):
    def __init__(self, visual_dim, text_dim, d, layers, heads, d_ff, eps):
        super().__init__()
        self.blocks = nn.ModuleList([Block(d, heads, d_ff, eps) for _ in range(layers)])
        self.cls_emb = nn.Parameter(torch.randn(1, d))  # nn.Embedding(1, d).weight in the repository
        self.visual_proj = nn.Sequential(nn.LayerNorm(visual_dim, eps=eps), nn.Linear(visual_dim, d), nn.LayerNorm(d, eps=eps))
        self.text_proj = nn.Sequential(nn.LayerNorm(text_dim, eps=eps), nn.Linear(text_dim, d))
        self.proj_patch = nn.Parameter(d ** -0.5 * torch.randn(d, d))
        self.proj_classes = nn.Parameter(d ** -0.5 * torch.randn(d, d))
        self.norm = nn.LayerNorm(d, eps=eps)

    def forward(self, visual, text):
        """visual [b, n_patch, visual_dim] (normalised), text [b, n_cls, text_dim]."""
        n_cls = text.shape[1]
        x = torch.cat([self.visual_proj(visual), self.text_proj(text) + self.cls_emb], dim=1)
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        return x[:, :-n_cls] @ self.proj_patch, x[:, -n_cls:] @ self.proj_classes


class Decoder(nn.Module):
    def __init__(self, channels):
        super().__init__()
        for i in range(4):
            setattr(self, f"conv_{i}", nn.Conv2d(channels, channels, kernel_size=3, stride=1, padding=1))
        self.conv_4 = nn.Conv2d(channels, channels, kernel_size=1, stride=1)

    def forward(self, patches, grid):
        """patches [b, grid*grid, c] (row-major) -> the map after conv_4, [b, c, 8*grid, 8*grid]."""
        b, n, c = patches.shape
        # A view, not a copy, as einops' rearrange gives: the convolution then sums in the same
        # order as the repository's.
        x = patches.reshape(b, grid, grid, c).permute(0, 3, 1, 2)
        for i in range(4):
            x = F.relu(F.instance_norm(getattr(self, f"conv_{i}")(x), eps=1e-5))
            if i < 3:
                x = F.interpolate(x, size=(grid * 2 ** (i + 1),) * 2, mode="bilinear", align_corners=False)
        return self.conv_4(x)


def head(features, classes, temperature):
    """Cosine of every pixel feature with every class feature, over the temperature."""
    b, c, h, w = features.shape
    pixels = features.flatten(2).transpose(1, 2)
    pixels = pixels / pixels.norm(dim=-1, keepdim=True)
    classes = classes / classes.norm(dim=-1, keepdim=True)
    return (pixels @ classes.transpose(1, 2)).transpose(1, 2).reshape(b, -1, h, w) / temperature


# ---------------------------------------------------------------------------------------------
# The model


def round_f16_(module):
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(p.half().float())


def build_clip(text_draw):
    act = CLIP_TINY["hidden_act"]
    config = CLIPConfig(
        text_config={**CLIP_TINY["text"], "hidden_act": act},
        vision_config={**CLIP_TINY["vision"], "hidden_act": act},
        projection_dim=CLIP_TINY["projection_dim"],
    )
    torch.manual_seed(SEED)
    model = CLIPModel(config).eval()
    with torch.no_grad():
        for key, p in model.named_parameters():
            if key.endswith("bias") or "norm" in key:
                p.add_(torch.randn_like(p) * 0.1)
        # The stock text initialisation gives every prompt nearly the same EOT output (class
        # embeddings at cosine 0.996), which would leave the classes indistinguishable; the text
        # tower's token table and linear weights are drawn again at unit and double gain.
        g = torch.Generator().manual_seed(text_draw)
        model.text_model.embeddings.token_embedding.weight.normal_(0, 1.0, generator=g)
        for m in model.text_model.modules():
            if isinstance(m, nn.Linear):
                m.weight.normal_(0, TEXT_GAIN / m.in_features ** 0.5, generator=g)
    round_f16_(model)
    model.requires_grad_(False)
    return model


def build_head(head_draw, visual_dim=CLIP_TINY["projection_dim"], dim=CLIP_TINY["projection_dim"]):
    f = FUSION
    torch.manual_seed(head_draw)
    fusion = Fusion(visual_dim, dim, f["hidden_size"], f["num_hidden_layers"], f["num_attention_heads"],
                    f["intermediate_size"], f["layer_norm_eps"])
    decoder = Decoder(f["hidden_size"])
    with torch.no_grad():
        for module in fusion.modules():
            if isinstance(module, nn.LayerNorm):
                module.weight.add_(torch.randn_like(module.weight) * 0.1)
                module.bias.add_(torch.randn_like(module.bias) * 0.1)
        fusion.cls_emb.add_(torch.randn_like(fusion.cls_emb) * 0.1)
    round_f16_(fusion)
    round_f16_(decoder)
    return fusion, decoder


def build_vit(draw):
    """The --dino variant's image encoder: a random ViTModel without pooler, under the draw; every
    layer norm's weight and bias and every bias get a random offset (0.1), the class token and the
    position embeddings a larger one (0.5, over the stock 0.02), so that a missing norm, bias,
    class token or position embedding shows up. The stock 0.02 of the blocks' linear weights
    leaves the attention and MLP branches next to nothing (a missing class token would move the
    tokens by 6e-5), so those weights are drawn again at unit gain."""
    torch.manual_seed(draw)
    model = ViTModel(ViTConfig(**VIT_TINY), add_pooling_layer=False).eval()
    with torch.no_grad():
        for key, p in model.named_parameters():
            if key.endswith("bias") or "layernorm" in key:
                p.add_(torch.randn_like(p) * 0.1)
        model.embeddings.cls_token.add_(torch.randn_like(model.embeddings.cls_token) * 0.5)
        model.embeddings.position_embeddings.add_(torch.randn_like(model.embeddings.position_embeddings) * 0.5)
        for m in model.modules():  # the blocks' linear layers (no pooler; the patch embedding is a conv)
            if isinstance(m, nn.Linear):
                m.weight.normal_(0, 1.0 / m.in_features ** 0.5)
    round_f16_(model)
    model.requires_grad_(False)
    return model


def vit_reference_forward(state, config, pixels):
    """ViTModel's forward written out over the hub's key names (`state`, as save_pretrained
    writes them): the check that those names carry what a loader expects. [b, 1 + grid*grid, dim]."""
    def p(key):
        return state[key].float()

    def ln(x, key):
        return F.layer_norm(x, x.shape[-1:], p(f"{key}.weight"), p(f"{key}.bias"), config.layer_norm_eps)

    def lin(x, key):
        return F.linear(x, p(f"{key}.weight"), p(f"{key}.bias"))

    x = F.conv2d(pixels, p("embeddings.patch_embeddings.projection.weight"),
                 p("embeddings.patch_embeddings.projection.bias"), stride=config.patch_size).flatten(2).transpose(1, 2)
    x = torch.cat([p("embeddings.cls_token").expand(x.shape[0], -1, -1), x], dim=1) + p("embeddings.position_embeddings")
    heads = config.num_attention_heads
    for i in range(config.num_hidden_layers):
        layer = f"encoder.layer.{i}"
        h = ln(x, f"{layer}.layernorm_before")
        b, n, c = h.shape
        q, k, v = (lin(h, f"{layer}.attention.attention.{t}").reshape(b, n, heads, c // heads).transpose(1, 2)
                   for t in ("query", "key", "value"))
        a = ((q @ k.transpose(-2, -1)) * (c // heads) ** -0.5).softmax(dim=-1) @ v
        x = x + lin(a.transpose(1, 2).reshape(b, n, c), f"{layer}.attention.output.dense")
        h = ln(x, f"{layer}.layernorm_after")
        x = x + lin(F.gelu(lin(h, f"{layer}.intermediate.dense")), f"{layer}.output.dense")
    return ln(x, "layernorm")


def normalise(x):
    return x / x.norm(dim=-1, keepdim=True)


@torch.no_grad()
def image_tokens(encoder, pixels):
    """The image encoder's patch tokens before FullModel.encoder_forward's normalisation.
    CLIP: ClipViT.forward, [b, grid*grid, proj]. ViT (--dino): the last hidden state (after
    ViTModel's final layernorm) without the class token, [b, grid*grid, hidden]."""
    if isinstance(encoder, ViTModel):
        return encoder(pixel_values=pixels).last_hidden_state[:, 1:]
    hidden = encoder.vision_model(pixel_values=pixels).last_hidden_state[:, 1:]
    return encoder.visual_projection(encoder.vision_model.post_layernorm(hidden))


@torch.no_grad()
def encode_image(encoder, pixels):
    """image_tokens, normalised per token as FullModel.encoder_forward does."""
    return normalise(image_tokens(encoder, pixels))


@torch.no_grad()
def encode_text(clip, tokenizer, names):
    """ClipText.forward: the 32 templates per name, normalised, averaged, renormalised."""
    rows = []
    for name in names:
        prompts = [t.format(category=name) for t in TEMPLATES]
        batch = tokenizer(prompts, padding="max_length", truncation=True, max_length=77, return_tensors="pt")
        feats = clip.get_text_features(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
        feats = feats.pooler_output if hasattr(feats, "pooler_output") else feats
        eot = batch.input_ids.argmax(dim=-1)
        direct = clip.text_projection(clip.text_model(input_ids=batch.input_ids).last_hidden_state[torch.arange(len(prompts)), eot])
        assert torch.allclose(feats, direct, atol=1e-6), "get_text_features is not the EOT-pooled projection"
        feats = normalise(feats)
        mean = feats.mean(dim=0)
        rows.append(mean / mean.norm())
    return torch.stack(rows)


def bert_vocabulary():
    """bert-tiny's vocab.txt, one token a line (split at newlines only, as `vocab.txt` is read),
    and transformers' BertTokenizer over it."""
    vocab = (BERT_SOURCE / "vocab.txt").read_text(encoding="utf-8").split("\n")[:-1]
    return vocab, BertTokenizer(vocab={token: i for i, token in enumerate(vocab)})


@torch.no_grad()
def encode_text_bert(bert, tokenizer, names, pooling):
    """ClipText.get_embed's averaging over BertModel's pooled prompts: each of the 32 templates
    tokenised alone (`[CLS] ... [SEP]`, token type 0, no padding), pooled (`cls`: the pooler's
    output, tanh(W h[CLS] + b); `mean`: the last layer averaged over every token), normalised;
    the 32 averaged and renormalised."""
    rows = []
    for name in names:
        feats = []
        for template in TEMPLATES:
            out = bert(**tokenizer(template.format(category=name), return_tensors="pt"))
            feats.append(out.pooler_output[0] if pooling == "cls" else out.last_hidden_state[0].mean(dim=0))
        feats = normalise(torch.stack(feats))
        mean = feats.mean(dim=0)
        rows.append(mean / mean.norm())
    return torch.stack(rows)


def grid_of(encoder):
    v = encoder.config if isinstance(encoder, ViTModel) else encoder.config.vision_config
    return v.image_size // v.patch_size


def forward(encoder, fusion, decoder, pixels, text, record=None):
    """FullModel.forward on one 224x224 crop: logits [b, n_cls, 224, 224]. text [b, n_cls, dim]."""
    visual = encode_image(encoder, pixels)
    patches, classes = fusion(visual, text)
    features = decoder(patches, grid_of(encoder))
    logits = head(F.interpolate(features, size=(CROP, CROP), mode="bilinear", align_corners=False), classes,
                  FUSION["temperature"])
    if record is not None:
        record.update(visual=visual, fusion_patches=patches, fusion_classes=classes, decoder_map=features, logits=logits)
    return logits


def to_pixels(array):
    """A.Normalize(mean, std) of an HxWx3 uint8 array: [1, 3, H, W] float32."""
    x = torch.from_numpy(np.asarray(array, dtype=np.float32) / 255.0)
    x = (x - torch.tensor(IMAGE_MEAN)) / torch.tensor(IMAGE_STD)
    return x.permute(2, 0, 1)[None].contiguous()


def pad_image(img, crop):
    """full_model.pad_image: pad right/bottom to at least crop with -pad_mean/pad_std per channel."""
    b, c, h, w = img.shape
    padh, padw = max(crop - h, 0), max(crop - w, 0)
    values = -np.array(PAD_MEAN) / np.array(PAD_STD)
    return torch.cat([F.pad(img[:, i:i + 1], (0, padw, 0, padh), value=float(values[i])) for i in range(c)], dim=1)


def windows_of(ph, pw):
    h_grids = int(math.ceil(1.0 * (ph - CROP) / STRIDE)) + 1
    w_grids = int(math.ceil(1.0 * (pw - CROP) / STRIDE)) + 1
    out = []
    for idh in range(h_grids):
        for idw in range(w_grids):
            h0, w0 = idh * STRIDE, idw * STRIDE
            out.append((h0, min(h0 + CROP, ph), w0, min(w0 + CROP, pw)))
    return out


@torch.no_grad()
def multi_scale_eval(encoder, fusion, decoder, image, text):
    """FullModel.multi_scale_eval (nclass = 1, scales [1.0], no flip) for an image longer than
    the crop on one side, for one label (text [1, 1, dim]): returns the stitched logits
    [1, 1, h, w] and each window's record."""
    _, _, h, w = image.shape
    n_cls = text.shape[1]
    assert n_cls == 1, "the repository's model scores one class per pass (nclass = 1)"
    assert max(h, w) > CROP
    pad = pad_image(image, CROP) if min(h, w) < CROP else image
    _, _, ph, pw = pad.shape
    outputs = torch.zeros(1, n_cls, ph, pw)
    count = torch.zeros(1, 1, ph, pw)
    records = []
    for h0, h1, w0, w1 in windows_of(ph, pw):
        crop = pad_image(pad[:, :, h0:h1, w0:w1], CROP)
        record = {"origin": (h0, w0), "extent": (h1, w1)}
        logits = forward(encoder, fusion, decoder, crop, text, record)
        outputs[:, :, h0:h1, w0:w1] += logits[:, :, :h1 - h0, :w1 - w0]
        count[:, :, h0:h1, w0:w1] += 1
        records.append(record)
    assert (count == 0).sum() == 0
    return (outputs / count)[:, :, :h, :w], records


@torch.no_grad()
def evaluate_labels(encoder, fusion, decoder, image, text):
    """Every label on its own, as the repository's nclass = 1 model runs it: multi_scale_eval once
    per label (text [n_labels, dim]), the stitched logits stacked along the class axis
    ([1, n_labels, h, w]); each window's record holds the per-label module outputs stacked
    (fusion_patches [n_labels, grid*grid, d], fusion_classes [n_labels, 1, d], decoder_map
    [n_labels, d, 8*grid, 8*grid] along the first axis, logits [1, n_labels, 224, 224] along the
    class axis; visual [1, grid*grid, visual_dim], the same for every label)."""
    runs = [multi_scale_eval(encoder, fusion, decoder, image, text[None, k:k + 1]) for k in range(text.shape[0])]
    stitched = torch.cat([s for s, _ in runs], dim=1)
    records = []
    for i, first in enumerate(runs[0][1]):
        per_label = [r[i] for _, r in runs]
        for r in per_label:
            assert (r["origin"], r["extent"]) == (first["origin"], first["extent"])
            assert torch.equal(r["visual"], first["visual"])
        records.append({
            "origin": first["origin"], "extent": first["extent"], "visual": first["visual"],
            **{key: torch.cat([r[key] for r in per_label], dim=0) for key in ("fusion_patches", "fusion_classes", "decoder_map")},
            "logits": torch.cat([r["logits"] for r in per_label], dim=1),
        })
    return stitched, records


def predictions(logits, thres=0.5):
    """utils.get_preds as a label map: sigmoid, a constant background channel first, argmax;
    class index with -1 for background. Also each pixel's margin in logits (the winner's logit
    over the runner-up's, background counting as logit 0), set to 0 where float32 sigmoids tie
    and so pick another winner than the logits would."""
    probs = torch.sigmoid(logits)
    b, c, h, w = probs.shape
    labels = torch.cat([torch.full((b, 1, h, w), thres), probs], dim=1).argmax(dim=1) - 1
    with_bg = torch.cat([torch.zeros(b, 1, h, w), logits], dim=1)
    top2 = with_bg.topk(2, dim=1).values
    margin = torch.where(with_bg.argmax(dim=1) - 1 == labels, top2[:, 0] - top2[:, 1], torch.zeros(()))
    return labels, margin


# ---------------------------------------------------------------------------------------------
# Images


def gradient(w, h, top, bottom, left_right=0.0):
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    t = (y / (h - 1))[..., None]
    img = np.array(top, np.float32) * (1 - t) + np.array(bottom, np.float32) * t
    return img + left_right * (x / (w - 1) - 0.5)[..., None]


def disc(w, h, cx, cy, r):
    y, x = np.mgrid[0:h, 0:w]
    return (x - cx) ** 2 + (y - cy) ** 2 < r * r


def test_image():
    w, h = IMAGE_SIZE
    img = gradient(w, h, [120, 170, 230], [70, 120, 60], left_right=30)
    img[disc(w, h, 70, 60, 35)] = [240, 200, 60]
    img[120:185, 150:260] = [90, 60, 50]
    y, x = np.mgrid[0:h, 0:w]
    img[(y > 40) & (y < 150) & (np.abs(x - 225) < (y - 40) * 0.4)] = [40, 140, 60]
    img[disc(w, h, 20, 170, 22)] = [200, 80, 160]
    return Image.fromarray(np.clip(np.round(img), 0, 255).astype(np.uint8), "RGB")


COLOURS = {1: [205, 45, 40], 2: [50, 170, 60], 3: [45, 70, 200]}


def train_pair(index):
    """A 224x224 image and its mask (0 background, 1..3 the classes, 255 ignore)."""
    s = CROP
    backgrounds = [([200, 200, 190], [120, 110, 100]), ([90, 90, 100], [180, 180, 170]),
                   ([170, 160, 140], [220, 215, 200]), ([110, 120, 110], [60, 60, 70])]
    img = gradient(s, s, *backgrounds[index], left_right=20)
    mask = np.zeros((s, s), np.uint8)
    y, x = np.mgrid[0:s, 0:s]
    shapes = {
        0: [(1, disc(s, s, 70, 80, 40)), (2, (y >= 120) & (y < 190) & (x >= 130) & (x < 200))],
        1: [(3, ((x - 150) / 55.0) ** 2 + ((y - 70) / 35.0) ** 2 < 1), (1, (y >= 130) & (y < 200) & (x >= 30) & (x < 100))],
        2: [(2, disc(s, s, 160, 150, 45)), (3, (y >= 20) & (y < 80) & (x >= 20) & (x < 130))],
        3: [(1, disc(s, s, 60, 60, 30)), (2, (y >= 110) & (y < 200) & (x >= 40) & (x < 110)),
            (3, (y >= 40) & (y < 170) & (np.abs(x - 170) < (y - 40) * 0.35))],
    }[index]
    for value, region in shapes:
        shade = 1.0 - 0.15 * (y / (s - 1))[..., None]
        img = np.where(region[..., None], np.array(COLOURS[value], np.float32) * shade, img)
        mask[region] = value
    if index in (0, 2):  # a thin band of ignored pixels along the border
        band = 3 if index == 0 else 4
        mask[:band], mask[-band:], mask[:, :band], mask[:, -band:] = 255, 255, 255, 255
    if index == 3:  # an ignored ring around the green shape
        value, region = shapes[1]
        grown = F.max_pool2d(torch.from_numpy(region.astype(np.float32))[None, None], 5, 1, 2)[0, 0].numpy() > 0
        shrunk = -F.max_pool2d(-torch.from_numpy(region.astype(np.float32))[None, None], 5, 1, 2)[0, 0].numpy() > 0
        mask[grown & ~shrunk] = 255
    image = Image.fromarray(np.clip(np.round(img), 0, 255).astype(np.uint8), "RGB")
    return image, Image.fromarray(mask, "L")


def write_train_set(directory):
    (directory / "images").mkdir(parents=True, exist_ok=True)
    (directory / "labels").mkdir(parents=True, exist_ok=True)
    for i in range(4):
        image, mask = train_pair(i)
        image.save(directory / "images" / f"{i}.png", optimize=True)
        mask.save(directory / "labels" / f"{i}.png", optimize=True)
    (directory / "classes.txt").write_text("".join(f"{c}\n" for c in ["background"] + TRAIN_CLASSES))


def load_train_set(directory):
    stems = sorted(p.stem for p in (directory / "images").glob("*.png"))
    images = {s: to_pixels(np.array(Image.open(directory / "images" / f"{s}.png").convert("RGB"))) for s in stems}
    masks = {s: torch.from_numpy(np.array(Image.open(directory / "labels" / f"{s}.png"))) for s in stems}
    return images, masks


def schedule_tasks(masks):
    """Every (image, class) pair present, in a seeded order, cycled into the fixed batches."""
    pairs = [(s, v) for s in sorted(masks) for v in range(1, len(TRAIN_CLASSES) + 1) if (masks[s] == v).any()]
    rng = np.random.default_rng(SEED)
    order = []
    while len(order) < TRAIN_STEPS * TASKS_PER_STEP:
        order += [pairs[i] for i in rng.permutation(len(pairs))]
    order = order[:TRAIN_STEPS * TASKS_PER_STEP]
    return [[list(t) for t in order[i:i + TASKS_PER_STEP]] for i in range(0, len(order), TASKS_PER_STEP)]


# ---------------------------------------------------------------------------------------------
# Training (train.py, model/__init__.py get_learner, utils/utils.py)


def cosine_scheduler(base_value, final_value, epochs, niter_per_ep, warmup_epochs=0, start_warmup_value=0):
    warmup_iters = warmup_epochs * niter_per_ep
    warmup = np.linspace(start_warmup_value, base_value, warmup_iters) if warmup_epochs > 0 else np.array([])
    iters = np.arange(epochs * niter_per_ep - warmup_iters)
    cosine = final_value + 0.5 * (base_value - final_value) * (1 + np.cos(np.pi * iters / len(iters)))
    schedule = np.concatenate((warmup, cosine))
    assert len(schedule) == epochs * niter_per_ep
    return schedule


def get_params_groups(module):
    """Biases and 1-D parameters without weight decay, the rest with it."""
    regularised, plain = [], []
    for name, p in module.named_parameters():
        (plain if name.endswith(".bias") or p.ndim == 1 else regularised).append(p)
    return [{"params": regularised}, {"params": plain, "weight_decay": 0.0}]


def loss_with_ignored_area(logits, target, ignore):
    """BCEWithLogitsLoss(reduction='none') averaged over the pixels that are not ignored."""
    loss = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    keep = ignore != True  # noqa: E712 (the repository's test)
    if keep.sum() > 0:
        return (loss * keep).sum() / keep.sum()
    return loss.mean()


def train(clip, fusion, decoder, text, images, masks, batches):
    t = TRAIN
    lr_schedule = cosine_scheduler(t["fusion_lr"], t["fusion_min_lr"], t["epochs"], t["iters_per_epoch"], t["warmup_epochs"])
    wd_schedule = cosine_scheduler(t["wd"], t["wd_end"], t["epochs"], t["iters_per_epoch"])
    fusion_opt = torch.optim.AdamW(get_params_groups(fusion), betas=(t["beta1"], 0.999))
    decoder_opt = torch.optim.Adam(get_params_groups(decoder), lr=t["decoder_lr"])
    losses, task_losses, lrs, wds = [], [], [], []
    fusion.train()
    decoder.train()
    for step, batch in enumerate(batches):
        i = step if step < len(lr_schedule) else -1
        for g, group in enumerate(fusion_opt.param_groups):  # Optimizers.schedule(['fusion'], step)
            group["lr"] = lr_schedule[i]
            if g == 0:
                group["weight_decay"] = wd_schedule[i]
        lrs.append(lr_schedule[i])
        wds.append(wd_schedule[i])
        fusion_opt.zero_grad()
        decoder_opt.zero_grad()
        outer = []
        for stem, value in batch:
            logits = forward(clip, fusion, decoder, images[stem], text[value - 1][None, None])
            target = (masks[stem] == value).float()[None, None]
            ignore = (masks[stem] == 255)[None]
            loss_ = loss_with_ignored_area(logits, target, ignore)
            (loss_ / len(batch)).backward()
            outer.append(loss_.detach())
        fusion_opt.step()
        decoder_opt.step()
        losses.append(sum(outer) / len(outer))
        task_losses.append(torch.stack(outer))
        print(f"step {step}: lr {lrs[-1]:.3e} wd {wds[-1]:.4f} loss {losses[-1].item():.6f}")
    fusion.eval()
    decoder.eval()
    return dict(losses=torch.stack(losses), task_losses=torch.stack(task_losses),
                lr=torch.tensor(lrs, dtype=torch.float64), wd=torch.tensor(wds, dtype=torch.float64))


# ---------------------------------------------------------------------------------------------
# Cross-check against the repository's modules


def git_show(repo, path):
    return subprocess.run(["git", "-C", str(repo), "show", f"{REVISION}:{path}"], check=True,
                          capture_output=True, text=True).stdout


PINNED_CHECK = {"einops": "0.8.2", "timm": "1.0.31", "torchvision": "0.29.2"}


def check_extra_versions():
    import importlib.metadata as md

    for name, want in PINNED_CHECK.items():
        found = md.version(name).split("+")[0]
        if found != want:
            sys.exit(f"{name} {found} is installed; the repository check is pinned to {want} "
                     "(pip install -r tools/requirements.txt)")


def import_repository(repo, tmp):
    """The repository's model and utils packages from `repo` at REVISION, with stand-ins for what
    they import that is not installed here (`configs`, OpenAI's `clip`, the CLIP encoders)."""
    for clash in ("configs", "model", "utils", "clip"):
        if clash in sys.modules:
            sys.exit(f"a module named {clash!r} is already imported; cannot import the repository's")
    root = Path(tmp)
    for path in ["model/fusion.py", "model/decoder.py", "model/head.py", "model/full_model.py",
                 "utils/model_utils.py", "utils/utils.py"]:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(git_show(repo, path))
    # model/__init__.py builds the learner (imports OpenAI's clip); only the modules are needed.
    (root / "model" / "__init__.py").write_text("")
    (root / "utils" / "__init__.py").write_text(git_show(repo, "utils/__init__.py"))
    (root / "model" / "image_encoder.py").write_text("class ClipViT:\n    pass\n")
    (root / "model" / "text_encoder.py").write_text("class ClipText:\n    pass\n")
    (root / "clip.py").write_text("")
    configs = types.ModuleType("configs")
    configs.args = types.SimpleNamespace(target_size=[CROP, CROP], device="cpu")
    sys.modules["configs"] = configs
    sys.path.insert(0, str(root))
    names = ["model.fusion", "model.decoder", "model.head", "model.full_model", "utils.utils"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # timm.models.layers is deprecated
        return {n: importlib.import_module(n) for n in names}


@torch.no_grad()
def check_repository(repo, encoder, fusion, decoder, text, image, ref, trained=None, train_state=None):
    """`encoder`: the CLIP, or the ViT of the --dino variant (which has no training reference:
    trained and train_state None)."""
    f = FUSION
    dim = fusion.text_proj[0].normalized_shape[0]
    visual_dim = fusion.visual_proj[0].normalized_shape[0]
    grid = grid_of(encoder)
    with tempfile.TemporaryDirectory() as tmp:
        mods = import_repository(repo, tmp)
        rfusion = mods["model.fusion"].Fusion(
            n_visual_token=grid * grid, n_cls=1, visual_dim=visual_dim, text_dim=dim, n_layers=f["num_hidden_layers"],
            n_heads=f["num_attention_heads"], d_model=f["hidden_size"], d_ff=f["intermediate_size"],
            drop_path_rate=0.0, dropout=0.0).eval()
        rdecoder = mods["model.decoder"].Decoder(f["hidden_size"], grid).eval()
        rhead = mods["model.head"].Head(temperature=f["temperature"])
        rfusion.load_state_dict(fusion.state_dict(), strict=True)
        rdecoder.load_state_dict(decoder.state_dict(), strict=True)
        maps = []
        rdecoder.conv_4.register_forward_hook(lambda m, i, o: maps.append(o.clone()))
        diffs = {}

        # The repository's FullModel with its nclass = 1, built without its __init__ (which
        # loads OpenAI's ViT-L/14): this file's image encoder (tokens before encoder_forward's
        # normalisation) and class embeddings stand in for ClipViT and ClipText.
        full_model = mods["model.full_model"].FullModel
        model = full_model.__new__(full_model)
        nn.Module.__init__(model)
        model.nclass, model.base_size, model.crop_size, model.scales, model.flip = 1, 500, CROP, [1.0], False
        model.pad_mean, model.pad_std = PAD_MEAN, PAD_STD
        model.dtype = torch.float32
        model.img_model = lambda img: image_tokens(encoder, img)
        model.text_model = lambda names: text[[LABELS.index(n) for n in names]]
        model.fusion, model.decoder, model.head = rfusion, rdecoder, rhead
        model.eval()

        # Window 0 through the repository's Fusion -> Decoder -> Head, one label at a time.
        image_pad = pad_image(image, CROP)
        crop = pad_image(image_pad[:, :, :CROP, :CROP], CROP)
        visual = encode_image(encoder, crop)
        diffs["window0.visual"] = (visual - ref["window0.visual"]).abs().max().item()
        for key in ("window0.fusion_patches", "window0.fusion_classes", "window0.decoder_map", "window0.logits",
                    "window0.logits (FullModel.forward)"):
            diffs[key] = 0.0
        for k, name in enumerate(LABELS):
            def worst(key, value):
                diffs[key] = max(diffs[key], value.abs().max().item())

            x = rfusion((visual, text[None, k:k + 1]))
            worst("window0.fusion_patches", x[0] - ref["window0.fusion_patches"][k:k + 1])
            worst("window0.fusion_classes", x[1] - ref["window0.fusion_classes"][k:k + 1])
            logits = rhead(rdecoder(x))
            worst("window0.decoder_map", maps[-1] - ref["window0.decoder_map"][k:k + 1])
            worst("window0.logits", logits - ref["window0.logits"][:, k:k + 1])
            worst("window0.logits (FullModel.forward)", model(crop, [name]) - ref["window0.logits"][:, k:k + 1])

        # The repository's multi_scale_eval over its pad_image / crop_image, once per label, the
        # labels' scores stacked along the class axis.
        per_label = [model.multi_scale_eval(image, [name]) for name in LABELS]
        assert all(s.shape == (1, 1) + image.shape[2:] for s in per_label)
        stitched = torch.cat(per_label, dim=1)
        diffs["stitched"] = (stitched - ref["stitched"]).abs().max().item()
        utils = mods["utils.utils"]
        preds = utils.get_preds(stitched)  # one-hot over the classes, all zero for background
        labels = torch.where(preds.any(dim=1), preds.argmax(dim=1), torch.full_like(preds[:, 0], -1))
        diffs["labels (pixels that differ)"] = float((labels[0] != ref["labels"]).sum().item())

        # Schedules, parameter groups and the masked loss of utils/utils.py.
        if trained is not None:
            t = TRAIN
            lr = utils.cosine_scheduler(t["fusion_lr"], t["fusion_min_lr"], t["epochs"], t["iters_per_epoch"], t["warmup_epochs"])
            wd = utils.cosine_scheduler(t["wd"], t["wd_end"], t["epochs"], t["iters_per_epoch"])
            diffs["lr schedule"] = float(np.abs(lr[:TRAIN_STEPS] - trained["lr"].double().numpy()).max())
            diffs["wd schedule"] = float(np.abs(wd[:TRAIN_STEPS] - trained["wd"].double().numpy()).max())
            for name, module in (("fusion", fusion), ("decoder", decoder)):
                ours = [[id(p) for p in g["params"]] for g in get_params_groups(module)]
                theirs = [[id(p) for p in g["params"]] for g in utils.get_params_groups(module)]
                assert ours == theirs, f"{name}: parameter groups differ"
            images, masks, batches = train_state
            stem, value = batches[0][0]
            logits = forward(encoder, fusion, decoder, images[stem], text[value - 1][None, None])
            target = (masks[stem] == value).float()[None, None]
            ignore = (masks[stem] == 255)[None]
            theirs = utils.loss_with_ignored_area(nn.BCEWithLogitsLoss(reduction="none"), logits, target, ignore)
            diffs["masked BCE loss"] = (theirs - loss_with_ignored_area(logits, target, ignore)).abs().item()
        for n in [k for k in list(sys.modules) if k.split(".")[0] in ("configs", "model", "utils", "clip")]:
            del sys.modules[n]
        sys.path.remove(tmp)
    print(f"repository check ({REVISION}):")
    for key, value in diffs.items():
        print(f"  {key}: {value:.3g}")
    bad = {k: v for k, v in diffs.items() if v > 1e-5}
    assert not bad, f"the repository's modules disagree: {bad}"


# ---------------------------------------------------------------------------------------------


def sub(x, step):
    return x[..., ::step, ::step].contiguous()


def write_inference_reference(directory, encoder, fusion, decoder, text, keep=None):
    """The test image, reference.safetensors and runs.json of one variant; returns the reference
    tensors (plus the full-size window-0 logits, stitched logits and labels), the image and the
    window records. `keep`: the keys reference.safetensors holds (all when None)."""
    test_image().save(directory / "image_300x200.png", optimize=True)
    image = to_pixels(np.array(Image.open(directory / "image_300x200.png").convert("RGB")))
    stitched, records = evaluate_labels(encoder, fusion, decoder, image, text)
    labels, margin = predictions(stitched)
    full = {"window0.logits": records[0]["logits"], "stitched": stitched, "labels": labels[0]}
    ref = {"text": text}
    for key in ("visual", "fusion_patches", "fusion_classes", "decoder_map"):
        ref[f"window0.{key}"] = records[0][key]
    for i, r in enumerate(records):
        ref[f"window{i}.logits_sub"] = sub(r["logits"], WINDOW_STEP)
    ref["stitched_sub"] = sub(stitched[0], STITCHED_STEP)
    ref["labels_sub"] = sub(labels[0], STITCHED_STEP).float()
    ref["labels_margin_sub"] = sub(margin[0], STITCHED_STEP)
    ref["stitched_full_stats"] = torch.stack([stitched.mean(), stitched.std(correction=0)])
    saved = {k: v for k, v in ref.items() if keep is None or k in keep}
    save_file({k: v.contiguous().float() for k, v in saved.items()}, directory / "reference.safetensors")
    counts = {int(c): int((ref["labels_sub"] == c).sum()) for c in range(-1, len(LABELS))}
    print(f"stitched logits: mean {ref['stitched_full_stats'][0]:.4f} std {ref['stitched_full_stats'][1]:.4f} "
          f"range [{stitched.min():.3f}, {stitched.max():.3f}]")
    print(f"labels_sub counts (-1 = background): {counts}; margins below 1e-3 there: "
          f"{int((ref['labels_margin_sub'] < 1e-3).sum())} (smallest {ref['labels_margin_sub'].min():.2e})")
    assert min(counts.values()) > 0, f"a label never wins: {counts}"
    h, w = IMAGE_SIZE[1], IMAGE_SIZE[0]
    runs = {
        "image": "image_300x200.png", "size": {"width": w, "height": h}, "labels": LABELS,
        "templates": len(TEMPLATES),
        "per_label": "each label runs through the fusion on its own, as the repository's nclass = 1 model does; "
                     "the labels' logits are stacked along the class axis; window0.fusion_patches, "
                     "window0.fusion_classes and window0.decoder_map hold label k's outputs in row k",
        "crop_size": CROP, "stride": STRIDE, "pad_value": -1.0,
        "padded_size": {"width": max(w, CROP), "height": max(h, CROP)},
        "windows": [{"x0": r["origin"][1], "y0": r["origin"][0], "x1": r["extent"][1], "y1": r["extent"][0]} for r in records],
        "window_logits_step": WINDOW_STEP, "stitched_step": STITCHED_STEP, "labels_step": STITCHED_STEP,
        "background_label": -1,
        "labels_margin": "labels_margin_sub: the winning logit over the runner-up (background = logit 0); "
                         "0 where float32 sigmoids tie; pixels with a margin under the test's tolerance may differ",
        "stitched_full_stats": "mean and population std (correction 0) of stitched logits [3, 200, 300]",
        "tensors": {k: list(v.shape) for k, v in saved.items()},
    }
    (directory / "runs.json").write_text(json.dumps(runs, indent=1) + "\n")
    return {**ref, **full}, image, records


def check_f16_exact(state):
    for k, v in state.items():
        assert torch.equal(v.half().float(), v), f"{k} is not float16-exact"


def write_tiny(args, tokenizer):
    """tests/fixtures/fusioner-tiny/: CLIP image and text encoders, inference and training references."""
    clip = build_clip(TEXT_DRAW)
    fusion, decoder = build_head(HEAD_DRAW)
    fusion.eval()
    decoder.eval()
    DIRECTORY.mkdir(parents=True, exist_ok=True)

    # Checkpoint.
    state = {k: v for k, v in clip.state_dict().items() if not k.endswith("position_ids")}
    state.update({f"fusion.{k}": v for k, v in fusion.state_dict().items()})
    state.update({f"decoder.{k}": v for k, v in decoder.state_dict().items()})
    check_f16_exact(state)
    save_file({k: v.contiguous().half() for k, v in state.items()}, DIRECTORY / "model.safetensors")
    config = {
        "model_type": "fusioner", "architectures": ["Fusioner"], "clip": clip.config.to_dict(),
        "fusion_config": FUSION, "image_mean": IMAGE_MEAN, "image_std": IMAGE_STD, "crop_size": CROP, "stride": STRIDE,
    }
    (DIRECTORY / "config.json").write_text(json.dumps(config, indent=1) + "\n")

    # Inference reference.
    text = encode_text(clip, tokenizer, LABELS)
    ref, image, records = write_inference_reference(DIRECTORY, clip, fusion, decoder, text)

    # Training reference.
    train_dir = DIRECTORY / "train"
    write_train_set(train_dir)
    images, masks = load_train_set(train_dir)
    batches = schedule_tasks(masks)
    train_text = encode_text(clip, tokenizer, TRAIN_CLASSES)
    (DIRECTORY / "train.json").write_text(json.dumps({"batches": batches, **{k: v for k, v in TRAIN.items()}}) + "\n")
    fusion_t, decoder_t = build_head(HEAD_DRAW)  # the checkpoint's weights, rebuilt
    assert all(torch.equal(a, b) for a, b in zip(fusion_t.state_dict().values(), fusion.state_dict().values()))
    trained = train(clip, fusion_t, decoder_t, train_text, images, masks, [[(s, v) for s, v in b] for b in batches])
    out = {"losses": trained["losses"], "task_losses": trained["task_losses"], "lr": trained["lr"], "wd": trained["wd"],
           "class_text": train_text}
    out.update({f"final.fusion.{k}": v.detach() for k, v in fusion_t.named_parameters()})
    out.update({f"final.decoder.{k}": v.detach() for k, v in decoder_t.named_parameters()})
    save_file({k: v.contiguous().float() for k, v in out.items()}, DIRECTORY / "train_reference.safetensors")

    if args.check_repository is not None:
        check_repository(args.check_repository, clip, fusion, decoder, text, image, ref, trained,
                         (images, masks, [[(s, v) for s, v in b] for b in batches]))
    total = sum(p.stat().st_size for p in DIRECTORY.rglob("*") if p.is_file())
    print(f"wrote {DIRECTORY}: {len(state)} checkpoint tensors, {len(records)} windows, {total / 1e6:.2f} MB")


CLIP_TEXT_KEYS = ("text_model.", "text_projection.weight", "logit_scale")
# The whole fixture folder stays under this; vit/ and clip/ are written only while it does.
DINO_SIZE_LIMIT = 3_000_000


@torch.no_grad()
def write_dino(args, tokenizer):
    """tests/fixtures/fusioner-dino-tiny/: a ViTModel image encoder (DINO's layout), the tiny
    CLIP's text tower, a head with visual_dim = the ViT's width; inference reference only."""
    directory = DINO_DIRECTORY
    clip = build_clip(TEXT_DRAW)
    vit = build_vit(VIT_DRAW)
    fusion, decoder = build_head(DINO_HEAD_DRAW, visual_dim=VIT_TINY["hidden_size"])
    fusion.eval()
    decoder.eval()
    directory.mkdir(parents=True, exist_ok=True)

    # The ViT alone, as the hub has it (f16 save_pretrained); its safetensors keys are the hub's
    # ViTModel names, which the combined checkpoint takes over under `vision.`.
    vit_dir = directory / "vit"
    copy.deepcopy(vit).half().save_pretrained(vit_dir)
    with safe_open(vit_dir / "model.safetensors", "pt") as f:
        vit_state = {k: f.get_tensor(k).float() for k in f.keys()}
    pixels = to_pixels(np.array(test_image().convert("RGB"))[:CROP, :CROP])
    pixels = pad_image(pixels, CROP)
    hf = vit(pixel_values=pixels).last_hidden_state
    assert (vit_reference_forward(vit_state, vit.config, pixels) - hf).abs().max() < 1e-5, "ViT keys"
    reloaded = ViTModel.from_pretrained(vit_dir, dtype=torch.float32, add_pooling_layer=False).eval()
    assert torch.equal(reloaded(pixel_values=pixels).last_hidden_state, hf), "ViT save_pretrained round trip"

    # Checkpoint: CLIP's text side under the hub's CLIPModel keys, the ViT under `vision.`, the head.
    state = {k: v for k, v in clip.state_dict().items() if k.startswith(CLIP_TEXT_KEYS) and not k.endswith("position_ids")}
    assert "text_projection.weight" in state and "logit_scale" in state
    state.update({f"vision.{k}": v for k, v in vit_state.items()})
    state.update({f"fusion.{k}": v for k, v in fusion.state_dict().items()})
    state.update({f"decoder.{k}": v for k, v in decoder.state_dict().items()})
    check_f16_exact(state)
    save_file({k: v.contiguous().half() for k, v in state.items()}, directory / "model.safetensors")
    config = {
        "model_type": "fusioner", "architectures": ["Fusioner"], "clip": clip.config.to_dict(),
        "vision": vit.config.to_dict(), "fusion_config": FUSION, "image_mean": IMAGE_MEAN, "image_std": IMAGE_STD,
        "crop_size": CROP, "stride": STRIDE,
    }
    assert config["vision"]["model_type"] == "vit"
    (directory / "config.json").write_text(json.dumps(config, indent=1) + "\n")

    # Inference reference.
    text = encode_text(clip, tokenizer, LABELS)
    ref, image, records = write_inference_reference(directory, vit, fusion, decoder, text)

    # The tiny CLIP alone (f16 save_pretrained), for `wordmask train fusioner --text`, while the
    # folder stays under the limit.
    def size():
        return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())

    with tempfile.TemporaryDirectory() as tmp:
        copy.deepcopy(clip).half().save_pretrained(tmp)
        clip_size = sum(p.stat().st_size for p in Path(tmp).rglob("*") if p.is_file())
    clip_dir = directory / "clip"
    shutil.rmtree(clip_dir, ignore_errors=True)
    if size() + clip_size < DINO_SIZE_LIMIT:
        copy.deepcopy(clip).half().save_pretrained(clip_dir)
    else:
        print(f"clip/ not written: its {clip_size / 1e6:.2f} MB would take the folder over "
              f"{DINO_SIZE_LIMIT / 1e6:.0f} MB")

    if args.check_repository is not None:
        check_repository(args.check_repository, vit, fusion, decoder, text, image, ref)
    total = size()
    print(f"wrote {directory}: {len(state)} checkpoint tensors, {len(records)} windows, {total / 1e6:.2f} MB")
    assert total < DINO_SIZE_LIMIT


@torch.no_grad()
def write_bert(args):
    """tests/fixtures/fusioner-bert-tiny/: the pairing of a vision-only image encoder and a
    language-only text encoder (the --dino variant's ViT, tests/fixtures/bert-tiny's BERT), a
    head of its own draw with text_dim = BERT's width. It holds no encoder weights (the test
    assembles the checkpoint from those two folders as `wordmask train fusioner` does): the
    head's initial weights (`head.safetensors`, float16), `encoders.json`, a trimmed inference
    reference (class embeddings, stitched logits and labels of the test image) and the training
    reference (ten steps, as for fusioner-tiny, on fusioner-tiny/train)."""
    directory = BERT_DIRECTORY
    directory.mkdir(parents=True, exist_ok=True)
    vocab, tokenizer = bert_vocabulary()
    # float32, as stored: a trained checkpoint copies the encoders' weights as they are.
    bert = BertModel.from_pretrained(BERT_SOURCE, dtype=torch.float32).eval()
    bert.requires_grad_(False)
    with safe_open(BERT_SOURCE / "model.safetensors", "pt") as f:
        stored = f.get_tensor("embeddings.word_embeddings.weight")
    assert torch.equal(bert.embeddings.word_embeddings.weight, stored), "BERT weights"
    vit = ViTModel.from_pretrained(DINO_DIRECTORY / "vit", dtype=torch.float32, add_pooling_layer=False).eval()
    vit.requires_grad_(False)
    fusion, decoder = build_head(BERT_HEAD_DRAW, visual_dim=VIT_TINY["hidden_size"], dim=bert.config.hidden_size)
    fusion.eval()
    decoder.eval()
    head = {f"fusion.{k}": v for k, v in fusion.state_dict().items()}
    head.update({f"decoder.{k}": v for k, v in decoder.state_dict().items()})
    check_f16_exact(head)
    save_file({k: v.contiguous().half() for k, v in head.items()}, directory / "head.safetensors")
    encoders = {"image": "fusioner-dino-tiny/vit", "text": "bert-tiny", "pooling": BERT_POOLING,
                "fusion_config": FUSION, "image_mean": IMAGE_MEAN, "image_std": IMAGE_STD, "train": "fusioner-tiny/train"}
    (directory / "encoders.json").write_text(json.dumps(encoders, indent=1) + "\n")

    # Inference: class embeddings, stitched logits and labels only (the per-window tensors are
    # the head's, checked by the other variants).
    text = encode_text_bert(bert, tokenizer, LABELS, BERT_POOLING)
    keep = {"text", "stitched_sub", "labels_sub", "labels_margin_sub", "stitched_full_stats"}
    ref, image, records = write_inference_reference(directory, vit, fusion, decoder, text, keep)
    (directory / "image_300x200.png").unlink()  # the same image as fusioner-tiny's

    # Training, as write_tiny's.
    images, masks = load_train_set(DIRECTORY / "train")
    batches = schedule_tasks(masks)
    texts = {p: encode_text_bert(bert, tokenizer, TRAIN_CLASSES, p) for p in ("cls", "mean")}
    cosines = {p: (t @ t.T)[~torch.eye(len(t), dtype=torch.bool)] for p, t in texts.items()}
    print("train class embeddings, pairwise cosines: " + ", ".join(
        f"{p} {c.min():.3f}..{c.max():.3f}" for p, c in cosines.items()))
    train_text = texts[BERT_POOLING]
    (directory / "train.json").write_text(json.dumps({"batches": batches, **{k: v for k, v in TRAIN.items()}}) + "\n")
    fusion_t, decoder_t = build_head(BERT_HEAD_DRAW, visual_dim=VIT_TINY["hidden_size"], dim=bert.config.hidden_size)
    with torch.enable_grad():
        trained = train(vit, fusion_t, decoder_t, train_text, images, masks, [[(s, v) for s, v in b] for b in batches])
    out = {"losses": trained["losses"], "task_losses": trained["task_losses"], "lr": trained["lr"], "wd": trained["wd"],
           "class_text": train_text.clone(), "class_text.cls": texts["cls"], "class_text.mean": texts["mean"]}
    out.update({f"final.fusion.{k}": v.detach() for k, v in fusion_t.named_parameters()})
    out.update({f"final.decoder.{k}": v.detach() for k, v in decoder_t.named_parameters()})
    save_file({k: v.contiguous().float() for k, v in out.items()}, directory / "train_reference.safetensors")
    if args.check_repository is not None:
        check_repository(args.check_repository, vit, fusion, decoder, text, image, ref, trained,
                         (images, masks, [[(s, v) for s, v in b] for b in batches]))
    total = sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())
    print(f"wrote {directory}: {len(head)} head tensors, {len(records)} windows, {total / 1e6:.2f} MB")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dino", action="store_true",
                        help=f"write the ViT-image-encoder variant ({DINO_DIRECTORY.name}) instead")
    parser.add_argument("--bert", action="store_true",
                        help=f"write the ViT + BERT variant ({BERT_DIRECTORY.name}) instead")
    parser.add_argument("--check-repository", nargs="?", const=MIRROR, type=Path, metavar="GIT_DIR",
                        help=f"cross-check against chaofanma/Fusioner at {REVISION} (default {MIRROR})")
    args = parser.parse_args()
    check_versions()
    if args.check_repository is not None:
        check_extra_versions()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    tokenizer = CLIPTokenizer(str(TOKENIZER_FILES / "vocab.json"), str(TOKENIZER_FILES / "merges.txt"))
    assert tokenizer("a photo of a cat.").input_ids == [49406, 320, 1125, 539, 320, 2368, 269, 49407]
    if args.bert:
        write_bert(args)
    elif args.dino:
        write_dino(args, tokenizer)
    else:
        write_tiny(args, tokenizer)


if __name__ == "__main__":
    main()
