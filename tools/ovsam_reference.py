#!/usr/bin/env python3
"""Reference fixture for wordmask's Open-Vocabulary SAM parity tests (tests/fixtures/ovsam-tiny/).

Interactive OVSAM: a CLIP ResNet (RN50x16 at full size) gives four stages at strides 4-32; the
SAM2CLIP neck patch-embeds them onto one stride-16 grid, adds a level encoding and a position
table, and runs five SAM ViT blocks and SAM's convolutional neck, standing in for SAM's image
embeddings; SAM's prompt encoder and a one-mask-token SAM decoder turn clicks or a box into a
low-resolution mask. A label token sits where SAM's IoU token sits; the mask's box picks an FPN
level (mmdet's level mapping), RoIAlign pools 7x7 features there, a 1x1 convolution with ReLU
and a mean give one vector, and its cosine with each class's text prototypes (14 prompt
templates averaged, synonyms as prototypes, a zero background row) scaled by exp(4.6052)
and softmaxed names the mask.

This script builds a small random model of that shape from PyPI parts (open_clip's
`ModifiedResNet`; transformers' `SamVisionLayer`, `SamVisionNeck`, `SamPositionalEmbedding`,
`SamPromptEncoder`, `SamMaskDecoder` and `CLIPTextModelWithProjection`; torchvision's
`roi_align`) and the glue below, saves it in the layouts of the released checkpoint files,
converts them with tools/convert_ovsam.py into tests/fixtures/ovsam-tiny/ (so the committed
weights are the converter's output, checked here tensor by tensor), and records reference
outputs on a synthetic image.

    pip install -r tools/requirements.txt
    python3 tools/ovsam_reference.py            # writes tests/fixtures/ovsam-tiny/
    python3 tools/ovsam_reference.py --cross-check OVSAM_REPO --space OVSAM_SPACE
        # also runs the authors' modules on the same weights (ext/sam/* and
        # ext/open_clip/modified_resnet.py of the OVSAM repository, app/models/*.py of its demo
        # Space at --space-rev; checkouts or bare git directories), with stand-ins for the
        # mmdet/mmcv/mmengine pieces they import, and prints the largest differences.

Tiny configuration: input 512 (a 32x32 neck grid; windows of 14 pad it to 42), ResNet width 4
(stem 2) with blocks [1, 2, 2, 1] (stages of 16/32/64/128 channels), neck width 32 with 2 heads,
5 blocks (the last global), output 32 = prompt and decoder width; decoder of 2 layers, 2 heads,
MLP 64; FPN 8 channels (its finest level is the largest reference tensor, and each fixture file
stays under 5 MiB); class dimension 16; text tower of width 16, 2 layers, 2 heads.

Every parameter and buffer is drawn afresh (the stock initialisations leave position tables,
relative positions and level encodings at zero and the last batch norm of each block at zero,
which would hide a wrong index) at scales that keep activations of order 1, then rounded to
float16-representable values, so the f16 fixture loses nothing against the references. A random
model's masks are texture or one sign everywhere, their boxes always the whole frame; so the
transposed convolutions share most of their kernel across output positions (3% differs), the
neck's position table and residual branches are kept small, and the hypernetwork's last bias is
shifted so that 3% of a click's mask is positive. With the chosen draw the three prompt cases
give compact masks whose boxes map to RoI levels 2, 0 and 3.

Reference outputs (`reference.safetensors`, float32 except the final binary masks, stored as
uint8 0/1): the four stages, the neck, the FPN levels, the dense positional grid; per prompt
case the sparse prompt embeddings, the low-resolution mask, its box, RoI level, pooled RoI
feature, logits and probabilities for the fixture's classifier and for typed labels, and the
final mask at the resized image's size; the naming stage alone on given masks (empty, one
pixel, everything). `reference.json` describes the cases and the expected names.

Versions are pinned in tools/requirements.txt; seeds are fixed.
"""

import argparse
import json
import math
import contextlib
import http.server
import subprocess
import threading
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from open_clip.modified_resnet import ModifiedResNet
from PIL import Image
from safetensors.torch import load_file, save_file
from torch import nn
from torchvision.ops import roi_align
from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer, SamConfig
from transformers.models.sam.modeling_sam import (
    SamMaskDecoder,
    SamPositionalEmbedding,
    SamPromptEncoder,
    SamVisionLayer,
    SamVisionNeck,
)

import convert_ovsam
from make_fixtures import OUT, SEED, TOKENIZER_FILES, check_versions

PINNED_EXTRA = {"torchvision": "0.29.2", "open_clip_torch": "3.3.0"}
DIRECTORY = OUT / "ovsam-tiny"
STRIDES = [4, 8, 16, 32]
NECK_STRIDE = 16
TINY = dict(
    image_size=512, width=4, layers=[1, 2, 2, 1],
    neck=dict(hidden_size=32, num_hidden_layers=5, num_attention_heads=2, window_size=14, global_attn_indexes=[4],
              output_channels=32, num_pos_feats=16, mlp_ratio=4.0),
    prompt=dict(hidden_size=32, mask_input_channels=8),
    decoder=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_dim=64, attention_downsample_rate=2,
                 iou_head_hidden_dim=32),
    fpn_channels=8, class_dim=16,
    text=dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, projection_dim=16),
)
# The fixture's "LVIS" vocabulary: names in LVIS's style, with synonyms after '/' or '_or_'.
CLASS_NAMES = ["red_block", "bow_(weapon)", "cat/kitten", "trash_can", "sky_or_blue_sky", "grass"]
TYPED_LABELS = ["red block", "sky/blue sky", "grass"]
IMAGE_SIZE = (96, 72)
# Prompt cases in the resized image's pixels (what the demo passes to the prompt encoder).
PROMPTS = {
    "click": dict(points=[[133, 107]]),
    "clicks3": dict(points=[[133, 107], [489, 292], [340, 305]]),
    "box": dict(box=[242, 15, 391, 135]),
}
# Weight draw: chosen by a scan of the draws so that the click's mask is non-empty inside the
# image and maps to RoI level 2, and its top-1 names among the classes and among the typed words
# differ in text and index (so the tests tell the two vocabularies apart); then the other two
# clicks and the box were placed so that their masks map to levels 0 and 3, each box far from a
# threshold (box_margin) and every top-1 name clear of the runner-up. The draw is one stream in
# module order, so a change of any width moves every tensor drawn after it (the FPN's, the
# prompt encoder's and decoder's): then scan again.
WEIGHT_SEED = SEED + 1053
# Drawing scales that make a random model's masks depend on the image (see randomise and
# centre_masks).
DAMP, POS = 0.3, 0.02
MASK_QUANTILE = 0.97
CENTRE_CLICK = [133, 101]
NAMING_ONLY = ["empty", "tiny", "huge"]


def check_extra_versions():
    import importlib.metadata as md

    for name, want in PINNED_EXTRA.items():
        found = md.version(name).split("+")[0]
        if found != want:
            sys.exit(f"{name} {found} is installed; the OVSAM fixture is pinned to {want} "
                     "(pip install -r tools/requirements.txt)")


# ---------------------------------------------------------------------------------------------
# The model


def sam_config():
    n = TINY["neck"]
    grid = TINY["image_size"] // NECK_STRIDE
    cfg = SamConfig(
        vision_config=dict(n, image_size=TINY["image_size"], patch_size=NECK_STRIDE, layer_norm_eps=1e-6,
                           hidden_act="gelu", qkv_bias=True, use_rel_pos=True, use_abs_pos=True),
        prompt_encoder_config=dict(TINY["prompt"], image_size=TINY["image_size"], patch_size=NECK_STRIDE),
        # segment_anything's two-way blocks use nn.LayerNorm's default epsilon, 1e-5.
        mask_decoder_config=dict(TINY["decoder"], num_multimask_outputs=0, layer_norm_eps=1e-5),
    )
    cfg.vision_config._attn_implementation = "eager"
    cfg.mask_decoder_config._attn_implementation = "eager"
    assert cfg.prompt_encoder_config.image_embedding_size == grid
    return cfg


def text_config():
    return CLIPTextConfig(**TINY["text"], vocab_size=49408, max_position_embeddings=77, hidden_act="quick_gelu")


class OvSam(nn.Module):
    """The interactive OVSAM model; module names follow the converted checkpoint's."""

    def __init__(self):
        super().__init__()
        width, sam = TINY["width"], sam_config()
        self.sam_config = sam
        stages = [width * 4 * 2**i for i in range(4)]
        self.backbone = ModifiedResNet(TINY["layers"], output_dim=TINY["class_dim"], heads=width * 32 // 64,
                                       image_size=TINY["image_size"], width=width)
        v = sam.vision_config
        e, grid = v.hidden_size, TINY["image_size"] // NECK_STRIDE
        self.neck = nn.Module()
        self.neck.patch_embeds = nn.ModuleList(
            nn.ModuleDict({"projection": nn.ConvTranspose2d(c, e, s // NECK_STRIDE, s // NECK_STRIDE) if s > NECK_STRIDE
                           else nn.Conv2d(c, e, NECK_STRIDE // s, NECK_STRIDE // s)})
            for c, s in zip(stages, STRIDES))
        self.neck.level_encoding = nn.Embedding(4, e)
        self.neck.pos_embed = nn.Parameter(torch.zeros(1, grid, grid, e))
        self.neck.layers = nn.ModuleList(
            SamVisionLayer(v, window_size=0 if i in v.global_attn_indexes else v.window_size)
            for i in range(v.num_hidden_layers))
        self.neck.neck = SamVisionNeck(v)
        f = TINY["fpn_channels"]
        self.fpn = nn.Module()
        self.fpn.lateral_convs = nn.ModuleList(nn.ModuleDict({"conv": nn.Conv2d(c, f, 1)}) for c in stages)
        self.fpn.fpn_convs = nn.ModuleList(nn.ModuleDict({"conv": nn.Conv2d(f, f, 3, padding=1)}) for _ in stages)
        self.shared_image_embedding = SamPositionalEmbedding(v)
        self.prompt_encoder = SamPromptEncoder(sam)
        self.prompt_encoder.shared_embedding = self.shared_image_embedding  # tied, as in SamModel
        self.mask_decoder = SamMaskDecoder(sam.mask_decoder_config)  # its iou_token is the label token
        self.roi_conv = nn.Conv2d(f, TINY["class_dim"], 1, bias=False)
        text = CLIPTextModelWithProjection(text_config())
        self.text_model, self.text_projection = text.text_model, text.text_projection

    def weights(self):
        """The state in the converted checkpoint's names."""
        out = {}
        for key, value in self.state_dict().items():
            if (key.startswith(("backbone.attnpool.", "prompt_encoder.shared_embedding.", "mask_decoder.iou_prediction_head."))
                    or key.endswith("num_batches_tracked")):
                continue
            out[key.replace("mask_decoder.iou_token.", "mask_decoder.label_token.")] = value
        return out

    # -- image side

    def stages(self, pixels):
        x = self.backbone.stem(pixels)  # three convolutions and the average pool
        outs = []
        for layer in (self.backbone.layer1, self.backbone.layer2, self.backbone.layer3, self.backbone.layer4):
            x = layer(x)
            outs.append(x)
        return outs

    def sam2clip(self, stages):
        total = 0
        for i, (embed, x) in enumerate(zip(self.neck.patch_embeds, stages)):
            total = total + embed["projection"](x).permute(0, 2, 3, 1) + self.neck.level_encoding.weight[i]
        x = total + self.neck.pos_embed
        for layer in self.neck.layers:
            x = layer(x)
        return self.neck.neck(x)

    def fpn_levels(self, stages):
        laterals = [conv["conv"](x) for conv, x in zip(self.fpn.lateral_convs, stages)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(laterals[i], size=laterals[i - 1].shape[2:], mode="nearest")
        return [conv["conv"](x) for conv, x in zip(self.fpn.fpn_convs, laterals)]

    def dense_pe(self):
        size = self.sam_config.prompt_encoder_config.image_embedding_size
        grid = torch.ones(size, size)
        y, x = (grid.cumsum(0) - 0.5) / size, (grid.cumsum(1) - 0.5) / size
        return self.shared_image_embedding(torch.stack([x, y], dim=-1)).permute(2, 0, 1)[None]

    # -- prompts

    def prompt(self, points=None, box=None):
        """All clicks positive; without a box the points get the not-a-point padding."""
        pts = labels = boxes = None
        if points:
            pts = torch.tensor(points, dtype=torch.float32)[None, None]
            labels = torch.ones(pts.shape[:3], dtype=torch.long)
        if box:
            boxes = torch.tensor([box], dtype=torch.float32)[None]
        return self.prompt_encoder(pts, labels, boxes, None)

    def decode(self, embeddings, pe, sparse, dense):
        masks, _ = self.mask_decoder(embeddings, pe, sparse, dense, multimask_output=False)
        return masks[:, 0]  # [1, 1, 4g, 4g]

    # -- naming

    def name(self, low_res, fpn, classifier):
        box = mask_to_box(low_res.sigmoid()[:, 0] > 0.5) * 4
        level = roi_level(box)
        rois = torch.cat([torch.zeros(1, 1), box], dim=1)
        pooled = roi_align(fpn[level], rois, output_size=7, spatial_scale=1.0 / STRIDES[level], sampling_ratio=0,
                           aligned=True)
        feature = F.relu(self.roi_conv(pooled)).mean(dim=(-1, -2))[0]
        logits, probs = score(feature, classifier)
        return dict(boxes=box[0], level=torch.tensor(float(level)), roi_feats=feature, logits=logits, probs=probs)

    def embed_labels(self, tokenizer, labels):
        """A classifier as the authors' gen_cls.py builds one: each synonym's 14 template
        embeddings L2-normalised, averaged, renormalised; padded with the first synonym."""
        synonyms = [split_label(label) for label in labels]
        texts = [t.format(s) for group in synonyms for s in group for t in convert_ovsam.TEMPLATES]
        batch = tokenizer(texts, padding=True, truncation=True, max_length=77, return_tensors="pt")
        pooled = self.text_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).pooler_output
        feats = self.text_projection(pooled).reshape(-1, len(convert_ovsam.TEMPLATES), TINY["class_dim"])
        feats = F.normalize(F.normalize(feats, dim=-1).mean(dim=1), dim=-1)
        width = max(len(g) for g in synonyms)
        rows, at = [], 0
        for group in synonyms:
            own = feats[at:at + len(group)]
            rows.append(torch.cat([own, own[:1].repeat(width - len(group), 1)]))
            at += len(group)
        return torch.stack(rows)


def split_label(name):
    """A class name's synonyms: '_or_' and '/' separate them, '_' is a space."""
    name = name.replace("_or_", ",").replace("/", ",").replace("_", " ").lower()
    return [part.strip() for part in name.split(",")]


def mask_to_box(masks):
    """[n, h, w] bool -> [n, 4] (x first, y first, x last + 1, y last + 1); zeros when empty."""
    boxes = torch.zeros(masks.shape[0], 4)
    for i, m in enumerate(masks):
        xs, ys = torch.where(m.any(dim=0))[0], torch.where(m.any(dim=1))[0]
        if len(xs) and len(ys):
            boxes[i] = torch.tensor([xs[0], ys[0], xs[-1] + 1, ys[-1] + 1], dtype=torch.float32)
    return boxes


def box_margin(low_res):
    """The largest change of the low-resolution logits that leaves the mask's box as it is."""
    box = mask_to_box(low_res[:, 0] > 0)
    lo, hi = 0.0, float(low_res.abs().max())
    for _ in range(40):
        mid = (lo + hi) / 2
        same = all(torch.equal(mask_to_box(low_res[:, 0] > t), box) for t in (mid, -mid))
        lo, hi = (mid, hi) if same else (lo, mid)
    return lo


def roi_level(box):
    scale = torch.sqrt((box[0, 2] - box[0, 0]) * (box[0, 3] - box[0, 1]))
    return int(torch.floor(torch.log2(scale / convert_ovsam.FINEST_SCALE + 1e-6)).clamp(0, 3))


def score(feature, classifier):
    """Cosine with each prototype, the best per class, a zero background class, scaled and
    softmaxed; the background is dropped from the probabilities."""
    table = torch.cat([classifier, torch.zeros_like(classifier[:1])])  # [c + 1, p, d]
    cos = torch.einsum("d,cpd->cp", F.normalize(feature, dim=-1), table).max(dim=-1).values
    logits = torch.tensor(convert_ovsam.LOGIT_SCALE, dtype=torch.float32).exp() * cos
    return logits, logits.softmax(dim=-1)[:-1]


# ---------------------------------------------------------------------------------------------
# Weights


@torch.no_grad()
def randomise(model, seed):
    gen = torch.Generator().manual_seed(seed)

    def randn(t, std=1.0):
        return torch.randn(t.shape, generator=gen) * std

    norms = (nn.LayerNorm, nn.BatchNorm2d)
    for path, module in model.named_modules():
        for name, t in list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False)):
            if not t.is_floating_point():
                continue
            if isinstance(module, nn.BatchNorm2d) and name == "running_var":
                t.copy_(0.5 + torch.rand(t.shape, generator=gen))
            elif isinstance(module, nn.BatchNorm2d) and name == "running_mean":
                t.copy_(randn(t, 0.2))
            elif isinstance(module, norms) and name == "weight":
                t.copy_(1 + randn(t, 0.15))
            elif name == "bias":
                t.copy_(randn(t, 0.1))
            elif isinstance(module, nn.ConvTranspose2d):
                # Each output sees in_channels inputs. A kernel shared by the output positions
                # plus a smaller part of each's own keeps upsampled maps smooth, not a tiling of
                # unrelated kernels, so that masks follow the image.
                shared = torch.randn(t.shape[:2] + (1, 1), generator=gen)
                t.copy_((shared + 0.03 * randn(t)) / t.shape[0] ** 0.5)
            elif isinstance(module, (nn.Conv2d, nn.Linear)):
                # The neck blocks' residual branches are damped so that the image's content
                # survives the five blocks (and shapes the masks).
                damp = DAMP if path.startswith("neck.layers.") and path.endswith(("attn.proj", "mlp.lin2")) else 1.0
                t.copy_(randn(t) * damp / t[0].numel() ** 0.5)
            elif name == "pos_embed":  # small enough that the image, not the position, shapes the masks
                t.copy_(randn(t, POS))
            else:  # embeddings, tokens, relative positions, Gaussian frequencies
                t.copy_(randn(t, 0.5))
    for t in list(model.parameters()) + list(model.buffers()):
        if t.is_floating_point():
            t.copy_(t.half().float())


def released_files(model, classifier, directory, seed):
    """Save the model as the released files lay it out; returns their paths."""
    gen = torch.Generator().manual_seed(seed)
    w = model.weights()
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    files = {}

    # CLIP, as an open_clip state dict: the whole visual tower, and the text tower.
    clip = {"visual." + k: v for k, v in model.backbone.state_dict().items()}
    t = "text_model."
    clip["token_embedding.weight"] = w[t + "embeddings.token_embedding.weight"]
    clip["positional_embedding"] = w[t + "embeddings.position_embedding.weight"]
    for i in range(TINY["text"]["num_hidden_layers"]):
        a, b = f"{t}encoder.layers.{i}.", f"transformer.resblocks.{i}."
        for p, q in (("weight", "in_proj_weight"), ("bias", "in_proj_bias")):
            clip[b + "attn." + q] = torch.cat([w[f"{a}self_attn.{x}_proj.{p}"] for x in "qkv"])
        for ours, theirs in (("self_attn.out_proj", "attn.out_proj"), ("layer_norm1", "ln_1"), ("layer_norm2", "ln_2"),
                             ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj")):
            for p in ("weight", "bias"):
                clip[f"{b}{theirs}.{p}"] = w[f"{a}{ours}.{p}"]
    for p in ("weight", "bias"):
        clip[f"ln_final.{p}"] = w[f"{t}final_layer_norm.{p}"]
    clip["text_projection"] = w["text_projection.weight"].t().contiguous()
    clip["logit_scale"] = torch.tensor(math.log(1 / 0.07))
    files["clip"] = d / "RN50x16-open_clip.pt"
    torch.save(clip, files["clip"])

    # The neck (segment_anything block names), under neck_student., in an mmengine-style wrapper.
    neck = {}
    norms = {"layer_norm1": "norm1", "layer_norm2": "norm2"}
    convs = {"conv1": "0", "layer_norm1": "1", "conv2": "2", "layer_norm2": "3"}
    for key, value in w.items():
        if not key.startswith("neck."):
            continue
        k = key[len("neck."):]
        if k.startswith("layers."):
            _, i, part, rest = k.split(".", 3)
            k = f"blocks.{i}.{norms.get(part, part)}.{rest}"
        elif k.startswith("neck."):
            _, part, p = k.split(".")
            k = f"neck.{convs[part]}.{p}"
        neck["neck_student." + k] = value
    files["sam2clip"] = d / "sam2clip_vith_rn50.pth"
    torch.save({"meta": {"epoch": 12}, "state_dict": neck}, files["sam2clip"])

    # The head: segment_anything decoder names without the IoU head, the label token and MLP,
    # and a stale roi_conv (the FPN file's replaces it).
    head = {}
    hyper = {"proj_in": "layers.0", "layers.0": "layers.1", "proj_out": "layers.2"}
    for key, value in w.items():
        if not key.startswith("mask_decoder."):
            continue
        k = key[len("mask_decoder."):]
        if k.startswith("label_token."):
            head["mask_decoder." + k] = value
            continue
        if k.startswith("transformer."):
            k = k.replace(".layer_norm_final_attn.", ".norm_final_attn.")
            for j in "1234":
                k = k.replace(f".layer_norm{j}.", f".norm{j}.")
        elif k.startswith("upscale_"):
            k = {"upscale_conv1": "output_upscaling.0", "upscale_layer_norm": "output_upscaling.1",
                 "upscale_conv2": "output_upscaling.3"}[k.split(".")[0]] + "." + k.split(".")[-1]
        elif k.startswith("output_hypernetworks_mlps.0."):
            rest = k[len("output_hypernetworks_mlps.0."):]
            leaf = rest.rsplit(".", 1)
            k = "output_hypernetworks_mlps.0." + hyper[leaf[0]] + "." + leaf[1]
        head["mask_decoder.mask_decoder." + k] = value
    d_model, class_dim = TINY["decoder"]["hidden_size"], TINY["class_dim"]
    for j, (n_in, n_out) in enumerate([(d_model, d_model), (d_model, d_model), (d_model, class_dim)]):
        head[f"mask_decoder.label_mlp.layers.{j}.weight"] = (torch.randn(n_out, n_in, generator=gen) / n_in**0.5).half().float()
        head[f"mask_decoder.label_mlp.layers.{j}.bias"] = (torch.randn(n_out, generator=gen) * 0.1).half().float()
    head["mask_decoder.roi_conv.0.conv.weight"] = torch.randn(w["roi_conv.weight"].shape, generator=gen).half().float()
    files["ovsam"] = d / "ovsam_R50x16_lvisnorare.pth"
    torch.save({"meta": {"iter": 1}, "state_dict": head}, files["ovsam"])

    # FPN and the RoI projection, a plain dict.
    fpn = {"fpn_neck." + k[len("fpn."):]: v for k, v in w.items() if k.startswith("fpn.")}
    fpn["roi_conv.0.conv.weight"] = w["roi_conv.weight"]
    files["fpn"] = d / "R50x16_fpn_lvis_norare_v3det.pth"
    torch.save(fpn, files["fpn"])

    # SAM, segment_anything names (with some of its image encoder and decoder around).
    sam = {"prompt_encoder.pe_layer.positional_encoding_gaussian_matrix": w["shared_image_embedding.positional_embedding"]}
    pe_names = {"conv1": "mask_downscaling.0", "layer_norm1": "mask_downscaling.1", "conv2": "mask_downscaling.3",
                "layer_norm2": "mask_downscaling.4", "conv3": "mask_downscaling.6"}
    for key, value in w.items():
        if key.startswith("prompt_encoder."):
            k = key[len("prompt_encoder."):]
            if k.startswith("point_embed."):
                k = k.replace("point_embed.", "point_embeddings.")
            elif k.startswith("mask_embed."):
                _, part, p = k.split(".")
                k = f"{pe_names[part]}.{p}"
            sam["prompt_encoder." + k] = value
    sam["image_encoder.pos_embed"] = torch.randn(1, 4, 4, 8, generator=gen)
    sam["mask_decoder.iou_token.weight"] = torch.randn(1, 32, generator=gen)
    files["sam"] = d / "sam_vit_h.pth"
    torch.save(sam, files["sam"])
    # The same in transformers' SamModel names, as facebook/sam-vit-huge's safetensors.
    hf = {k: v.contiguous() for k, v in w.items() if k.startswith(("prompt_encoder.", "shared_image_embedding."))}
    hf["prompt_encoder.shared_embedding.positional_embedding"] = w["shared_image_embedding.positional_embedding"].clone()
    hf["vision_encoder.pos_embed"] = sam["image_encoder.pos_embed"]
    files["sam_hf"] = d / "sam-hf-model.safetensors"
    save_file(hf, str(files["sam_hf"]))

    files["classifier"] = d / "RN50x16_LVISV1Dataset.pth"
    torch.save(classifier.clone(), files["classifier"])
    files["class_names"] = d / "lvis_list.py"
    files["class_names"].write_text("NAMES = (\n" + "".join(f"    {n!r},\n" for n in CLASS_NAMES) + ")\n")
    return files


@contextlib.contextmanager
def range_server(path):
    """`path` served on a local port with HTTP range support; yields its URL and the requests."""
    data = Path(path).read_bytes()
    served = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            start, end = map(int, self.headers["Range"].removeprefix("bytes=").split("-"))
            served.append(end + 1 - start)
            self.send_response(206)
            self.send_header("Content-Length", str(end + 1 - start))
            self.end_headers()
            self.wfile.write(data[start:end + 1])

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/model.safetensors"
    finally:
        server.shutdown()
    print(f"range reads: {len(served)} requests, {sum(served)} of {len(data)} bytes")


def convert_args(files, out, dtype, sam_key="sam"):
    return ["--clip", str(files["clip"]), "--sam2clip", str(files["sam2clip"]), "--ovsam", str(files["ovsam"]),
            "--fpn", str(files["fpn"]), "--sam-prompt-encoder", str(files[sam_key]),
            "--classifier", str(files["classifier"]), "--class-names", str(files["class_names"]),
            "--text-heads", str(TINY["text"]["num_attention_heads"]),
            "--decoder-heads", str(TINY["decoder"]["num_attention_heads"]), "--out", str(out), "--dtype", dtype]


def check_converted(expected, directory, dtype):
    got = load_file(str(Path(directory) / "model.safetensors"))
    problems = [f"missing {k}" for k in sorted(set(expected) - set(got))]
    problems += [f"unexpected {k}" for k in sorted(set(got) - set(expected))]
    for k in sorted(set(expected) & set(got)):
        if got[k].dtype != dtype:
            problems.append(f"{k}: {got[k].dtype}, expected {dtype}")
        elif tuple(got[k].shape) != tuple(expected[k].shape) or not torch.equal(got[k].float(), expected[k].float()):
            problems.append(f"{k}: differs from the reference weights")
    if problems:
        sys.exit("converted checkpoint disagrees with the reference model:\n  " + "\n  ".join(problems))
    return len(got)


def check_config(config, model):
    sam = model.sam_config
    expect = {
        ("backbone_config", "width"): TINY["width"], ("backbone_config", "layers"): TINY["layers"],
        ("fpn_channels",): TINY["fpn_channels"], ("class_dim",): TINY["class_dim"],
        ("vocabulary",): CLASS_NAMES, ("templates",): convert_ovsam.TEMPLATES,
    }
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "image_size", "patch_size", "window_size",
                "global_attn_indexes", "output_channels", "num_pos_feats", "mlp_dim", "layer_norm_eps"):
        expect[("vision_config", key)] = getattr(sam.vision_config, key)
    for key in ("hidden_size", "image_size", "patch_size", "mask_input_channels", "layer_norm_eps"):
        expect[("prompt_encoder_config", key)] = getattr(sam.prompt_encoder_config, key)
    for key in ("hidden_size", "mlp_dim", "num_hidden_layers", "num_attention_heads", "attention_downsample_rate",
                "num_multimask_outputs", "layer_norm_eps"):
        expect[("mask_decoder_config", key)] = getattr(sam.mask_decoder_config, key)
    text = text_config()
    for key in ("vocab_size", "hidden_size", "intermediate_size", "projection_dim", "num_hidden_layers",
                "num_attention_heads", "max_position_embeddings", "hidden_act", "layer_norm_eps", "eos_token_id"):
        expect[("text_config", key)] = getattr(text, key)
    for path, want in expect.items():
        got = config
        for p in path:
            got = got[p]
        if list(got) != list(want) if isinstance(want, (list, tuple)) else got != want:
            sys.exit(f"config.json: {'.'.join(path)} is {got!r}, expected {want!r}")


# ---------------------------------------------------------------------------------------------
# Image and references


def synthetic_image():
    """96x72: colour gradients and a few filled rectangles of distinct colours."""
    w, h = IMAGE_SIZE
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([30 + x / w * 200, 40 + y / h * 180, 160 - (x + y) / (w + h) * 120], axis=-1)
    img[8:30, 10:40] = [220, 30, 40]
    img[40:66, 55:88] = [30, 60, 210]
    img[50:70, 4:30] = [40, 190, 60]
    img[4:20, 62:90] = [240, 220, 40]
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def resize_like_demo(image, size):
    w, h = image.size
    scale = size / max(w, h)
    return image.resize((int(w * scale), int(h * scale)), resample=Image.Resampling.BILINEAR)


def pixels_like_demo(resized, size):
    mean = torch.tensor(convert_ovsam.SAM_MEAN)[:, None, None]
    std = torch.tensor(convert_ovsam.SAM_STD)[:, None, None]
    x = torch.tensor(np.array(resized), dtype=torch.float32).permute(2, 0, 1)[None]
    x = (x - mean) / std
    return F.pad(x, (0, size - resized.size[0], 0, size - resized.size[1]), "constant", 0)


def given_masks(side):
    empty = torch.full((1, 1, side, side), -10.0)
    tiny = empty.clone()
    tiny[0, 0, 40, 70] = 10.0
    return {"empty": empty, "tiny": tiny, "huge": torch.full((1, 1, side, side), 10.0)}


@torch.no_grad()
def references(model, tokenizer, classifier, resized):
    size = TINY["image_size"]
    rw, rh = resized.size
    pixels = pixels_like_demo(resized, size)
    ref = {}
    stages = model.stages(pixels)
    for i, s in enumerate(stages):
        ref[f"stage{i}"] = s
    neck = model.sam2clip(stages)
    fpn = model.fpn_levels(stages)
    pe = model.dense_pe()
    ref["neck"] = neck
    for i, f in enumerate(fpn):
        ref[f"fpn{i}"] = f
    ref["image_pe"] = pe
    typed = model.embed_labels(tokenizer, TYPED_LABELS)
    ref["typed.classifier"] = typed
    cases = {}
    for case, prompt in PROMPTS.items():
        sparse, dense = model.prompt(**prompt)
        low = model.decode(neck, pe, sparse, dense)
        named = model.name(low, fpn, classifier)
        typed_named = model.name(low, fpn, typed)
        mask = F.interpolate(low, scale_factor=4.0, mode="bilinear", align_corners=False).sigmoid()[0, 0, :rh, :rw] > 0.5
        ref[f"{case}.sparse"] = sparse
        ref[f"{case}.low_res_masks"] = low
        for k, v in named.items():
            ref[f"{case}.{k}"] = v
        ref[f"{case}.typed_logits"] = typed_named["logits"]
        ref[f"{case}.typed_probs"] = typed_named["probs"]
        ref[f"{case}.mask"] = mask.to(torch.uint8)
        given = {"points": prompt["points"]} if "points" in prompt else {"prompt_box": prompt["box"]}
        cases[case] = dict(given, **summary(named, typed_named), mask_pixels=int(mask.sum()),
                           box_margin=box_margin(low))
    for case, low in given_masks(4 * (size // NECK_STRIDE)).items():
        named = model.name(low, fpn, classifier)
        ref[f"{case}.low_res_masks"] = low
        for k, v in named.items():
            ref[f"{case}.{k}"] = v
        cases[case] = summary(named, None)
    return ref, cases


def summary(named, typed):
    out = dict(mask_box=named["boxes"].tolist(), level=int(named["level"]))
    top = int(named["probs"].argmax())
    out["top1"] = dict(index=top, name=CLASS_NAMES[top], score=float(named["probs"][top]))
    if typed is not None:
        top = int(typed["probs"].argmax())
        out["typed_top1"] = dict(index=top, label=TYPED_LABELS[top], score=float(typed["probs"][top]))
    return out


@torch.no_grad()
def centre_masks(model, resized):
    """Shift the hypernetwork's last bias so that 3% of a click's mask logits over the image are
    positive: a random decoder's logits are otherwise one sign almost everywhere.
    The bias adds `bias . upscaled(x, y)` to each logit, so it moves along the upscaled
    features' mean."""
    size = TINY["image_size"]
    stages = model.stages(pixels_like_demo(resized, size))
    neck, pe = model.sam2clip(stages), model.dense_pe()
    captured = {}
    hook = model.mask_decoder.upscale_conv2.register_forward_hook(lambda m, i, o: captured.update(up=o))
    bias = model.mask_decoder.output_hypernetworks_mlps[0].proj_out.bias
    rows, cols = resized.size[1] * 4 * (size // NECK_STRIDE) // size, resized.size[0] * 4 * (size // NECK_STRIDE) // size
    for _ in range(3):
        low = model.decode(neck, pe, *model.prompt(points=[CENTRE_CLICK]))[0, 0, :rows, :cols]
        up = model.mask_decoder.activation(captured["up"])[0, :, :rows, :cols].flatten(1).mean(dim=1)
        bias -= low.flatten().quantile(MASK_QUANTILE) * up / up.square().sum()
    hook.remove()
    bias.copy_(bias.half().float())


# ---------------------------------------------------------------------------------------------
# Cross-check against the authors' modules


class _BaseModule(nn.Module):
    def __init__(self, init_cfg=None, data_preprocessor=None, **kwargs):
        super().__init__()


class _Registry:
    def register_module(self, *args, **kwargs):
        return lambda cls: cls

    def build(self, cfg):
        cfg = dict(cfg)
        return cfg.pop("type")(**cfg)


class _Logger:
    @staticmethod
    def get_current_instance():
        return _Logger()

    def info(self, *args, **kwargs):
        pass


class _InstanceData:
    def __init__(self, **fields):
        self.__dict__.update(fields)

    def __contains__(self, key):
        return key in self.__dict__

    def __len__(self):
        return len(next(iter(self.__dict__.values())))


class _PatchEmbed(nn.Module):
    """mmdet's PatchEmbed as the neck uses it: a (transposed) convolution, flattened; its
    'corner' adaptive padding adds nothing when the input divides evenly, as here."""

    def __init__(self, in_channels, embed_dims, kernel_size, stride, conv_type="Conv2d", input_size=None, **kwargs):
        super().__init__()
        conv = nn.Conv2d if conv_type == "Conv2d" else conv_type
        self.projection = conv(in_channels, embed_dims, kernel_size=kernel_size, stride=stride, bias=True)

    def forward(self, x):
        x = self.projection(x)
        return x.flatten(2).transpose(1, 2), (x.shape[2], x.shape[3])


class _ConvModule(nn.Module):
    """mmcv's ConvModule with its defaults as the head uses it: convolution, no norm, ReLU."""

    def __init__(self, in_channels, out_channels, kernel_size, bias=True, padding=0, act_cfg=dict(type="ReLU")):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, bias=bias)
        self.relu = act_cfg is not None

    def forward(self, x):
        x = self.conv(x)
        return F.relu(x) if self.relu else x


def _mask2bbox(masks):
    return mask_to_box(masks)


def _bbox2roi(boxes):
    return torch.cat([torch.cat([torch.full((len(b), 1), float(i)), b[:, :4]], dim=1) for i, b in enumerate(boxes)])


class _SingleRoIExtractor(nn.Module):
    """mmdet's SingleRoIExtractor with mmcv's RoIAlign (aligned, average)."""

    def __init__(self, roi_layer, out_channels, featmap_strides, finest_scale=56):
        super().__init__()
        self.out_channels, self.strides, self.finest_scale = out_channels, featmap_strides, finest_scale
        self.size, self.sampling_ratio = roi_layer["output_size"], roi_layer["sampling_ratio"]

    def forward(self, feats, rois):
        scale = torch.sqrt((rois[:, 3] - rois[:, 1]) * (rois[:, 4] - rois[:, 2]))
        levels = torch.floor(torch.log2(scale / self.finest_scale + 1e-6)).clamp(0, len(feats) - 1).long()
        out = feats[0].new_zeros(len(rois), self.out_channels, self.size, self.size)
        for i, stride in enumerate(self.strides):
            inds = levels == i
            if inds.any():
                out[inds] = roi_align(feats[i], rois[inds], self.size, 1.0 / stride, self.sampling_ratio, aligned=True)
        return out


def _load_checkpoint_with_prefix(filename, prefix=None, **kwargs):
    state = torch.load(filename, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state)
    if not prefix:
        return state
    prefix = prefix if prefix.endswith(".") else prefix + "."
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _authors_modules(repo, repo_rev, space, space_rev):
    """Load the authors' files as modules (ext.*, app.models.*), with stand-ins for mmengine,
    mmdet and mmcv."""
    import types

    def reader(root, rev):
        def read(path):
            if (Path(root) / path).is_file():
                return (Path(root) / path).read_text()
            return subprocess.run(["git", "-C", str(root), "show", f"{rev}:{path}"], check=True,
                                  capture_output=True, text=True).stdout
        return read

    def module(name, source=None, origin=None, package=False, **attrs):
        mod = types.ModuleType(name)
        if package:
            mod.__path__ = []
        mod.__package__ = name if package else name.rpartition(".")[0]
        mod.__dict__.update(attrs)
        sys.modules[name] = mod
        if source is not None:
            exec(compile(source, origin or name, "exec"), mod.__dict__)
        return mod

    any_type = object
    registry = _Registry()
    for name in ("mmengine", "mmdet", "mmdet.models", "mmdet.structures", "mmcv", "ext", "ext.meta", "app",
                 "app.models", "utils"):
        module(name, package=True)
    sys.modules["mmengine"].MMLogger = _Logger
    sys.modules["mmengine"].print_log = lambda *a, **k: None
    module("mmengine.model", BaseModule=_BaseModule, BaseModel=_BaseModule, normal_init=lambda *a, **k: None)
    module("mmengine.structures", InstanceData=_InstanceData)
    module("mmdet.registry", MODELS=registry)
    module("mmdet.utils", ConfigType=any_type, OptConfigType=any_type, OptMultiConfig=any_type)
    module("mmdet.models.layers", PatchEmbed=_PatchEmbed)
    module("mmdet.structures.bbox", bbox2roi=_bbox2roi)
    module("mmdet.structures.mask", mask2bbox=_mask2bbox)
    module("mmcv.cnn", ConvModule=_ConvModule)
    module("utils.load_checkpoint", load_checkpoint_with_prefix=_load_checkpoint_with_prefix)

    read = reader(repo, repo_rev)
    sam = module("ext.sam", package=True)
    for part in ("common", "transformer", "image_encoder", "prompt_encoder", "mask_decoder"):
        module(f"ext.sam.{part}", read(f"ext/sam/{part}.py"), f"{repo}/ext/sam/{part}.py")
    exec(compile(read("ext/sam/__init__.py"), f"{repo}/ext/sam/__init__.py", "exec"), sam.__dict__)
    module("ext.open_clip", package=True)
    module("ext.open_clip.utils", freeze_batch_norm_2d=lambda m: m)
    module("ext.open_clip.modified_resnet", read("ext/open_clip/modified_resnet.py"), f"{repo}/ext/open_clip/modified_resnet.py")
    module("ext.meta.sam_meta", read("ext/meta/sam_meta.py"), f"{repo}/ext/meta/sam_meta.py")

    read = reader(space, space_rev)
    for part in ("transformer_neck", "sam_pe", "ovsam_head", "model"):
        module(f"app.models.{part}", read(f"app/models/{part}.py"), f"{space}/app/models/{part}.py")
    return sys.modules


class _PromptFrame:
    """The demo's segmentor passes the full-size frame (1024) for boxes; the tiny model's is 512."""

    def __init__(self, pe, size):
        self.pe, self.size = pe, size

    def __call__(self, prompts, image_size, **kwargs):
        return self.pe(prompts, image_size=(self.size, self.size), **kwargs)

    def get_dense_pe(self):
        return self.pe.get_dense_pe()


@torch.no_grad()
def cross_check(model, files, args, ref, resized):
    import os
    from unittest import mock

    import open_clip

    if not args.space:
        sys.exit("--cross-check needs --space (the demo Space's checkout or git directory)")
    mods = _authors_modules(args.cross_check, args.repo_rev, args.space, args.space_rev)
    size, width = TINY["image_size"], TINY["width"]
    stages_c = [width * 4 * 2**i for i in range(4)]
    diffs = {}

    def diff(name, ours, theirs):
        d = float((ours.float() - theirs.float()).abs().max())
        diffs[name] = max(d, diffs.get(name, 0.0))

    folder = Path(files["ovsam"]).parent
    (folder / "models").mkdir(exist_ok=True)
    for key in ("sam2clip", "ovsam", "fpn", "classifier", "sam"):
        link = folder / "models" / Path(files[key]).name
        if not link.exists():
            link.symlink_to(Path(files[key]).resolve())
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        # Backbone: the authors' ModifiedResNet loaded from the CLIP file, run as their backbone does.
        clip_state = torch.load(files["clip"], weights_only=True)
        resnet = mods["ext.open_clip.modified_resnet"].ModifiedResNet(
            TINY["layers"], TINY["class_dim"], heads=width * 32 // 64, image_size=size, width=width).eval()
        resnet.load_state_dict({k[len("visual."):]: v for k, v in clip_state.items() if k.startswith("visual.")})
        stem = nn.Sequential(resnet.conv1, resnet.bn1, resnet.act1, resnet.conv2, resnet.bn2, resnet.act2,
                             resnet.conv3, resnet.bn3, resnet.act3)
        x = resnet.avgpool(stem(pixels_like_demo(resized, size)))
        stages = []
        for layer in (resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4):
            x = layer(x)
            stages.append(x)
        for i, s in enumerate(stages):
            diff(f"backbone stage{i}", ref[f"stage{i}"], s)

        # Neck: the demo's MultiLayerTransformerNeck with segment_anything blocks of the tiny width.
        neck_mod, image_encoder = mods["app.models.transformer_neck"], mods["ext.sam.image_encoder"]
        v = model.sam_config.vision_config
        neck = neck_mod.MultiLayerTransformerNeck(input_size=(size, size), in_channels=stages_c, embed_channels=v.hidden_size,
                                                  out_channels=v.output_channels, fix=True, init_cfg=None)
        neck.blocks = nn.ModuleList(image_encoder.Block(
            dim=v.hidden_size, num_heads=v.num_attention_heads, mlp_ratio=v.mlp_ratio, qkv_bias=True,
            norm_layer=lambda d: nn.LayerNorm(d, eps=1e-6), act_layer=nn.GELU, use_rel_pos=True,
            window_size=0 if i in v.global_attn_indexes else v.window_size, input_size=(size // 16, size // 16))
            for i in range(v.num_hidden_layers))
        neck.load_state_dict(_load_checkpoint_with_prefix("models/sam2clip_vith_rn50.pth", "neck_student"))
        neck_out = neck.eval()(stages)
        diff("neck", ref["neck"], neck_out)

        # Prompt encoder: the demo's SAMPromptEncoder over segment_anything's, at the tiny sizes.
        meta = mods["ext.meta.sam_meta"]
        meta.meta_dict["tiny"] = dict(prompt_embed_dim=v.output_channels, image_size=size, image_embedding_size=size // 16)
        meta.checkpoint_dict["tiny"] = "models/" + Path(files["sam"]).name
        sam_pe = mods["app.models.sam_pe"]
        real_pe = mods["ext.sam.prompt_encoder"].PromptEncoder
        p = TINY["prompt"]
        sam_pe.PromptEncoder = lambda embed_dim, image_embedding_size, input_image_size, mask_in_chans: real_pe(
            embed_dim=p["hidden_size"], image_embedding_size=image_embedding_size, input_image_size=input_image_size,
            mask_in_chans=p["mask_input_channels"])
        pe = sam_pe.SAMPromptEncoder(model_name="tiny", fix=True, init_cfg=dict(type="sam_pretrain", checkpoint="tiny"))
        diff("dense positional grid", ref["image_pe"], pe.get_dense_pe())

        # Head: the demo's OVSAMHead; segment_anything's decoder at the tiny MLP width and heads.
        dec = TINY["decoder"]
        real_twt = mods["ext.sam.transformer"].TwoWayTransformer
        mods["ext.sam.mask_decoder"].TwoWayTransformer = lambda depth, embedding_dim, mlp_dim, num_heads: real_twt(
            depth=dec["num_hidden_layers"], embedding_dim=embedding_dim, mlp_dim=dec["mlp_dim"],
            num_heads=dec["num_attention_heads"])
        head_mod = mods["app.models.ovsam_head"]
        # The released classifier has unit rows; the fixture's are unit rows rounded to f16.
        with mock.patch("torch.allclose", lambda *a, **k: True):
            head = head_mod.OVSAMHead(
                model_name="tiny", with_label_token=True, gen_box=True, ov_classifier_name=Path(files["classifier"]).stem,
                roi_extractor=dict(type=_SingleRoIExtractor, roi_layer=dict(type="RoIAlign", output_size=7, sampling_ratio=0),
                                   out_channels=TINY["fpn_channels"], featmap_strides=STRIDES),
                fix=True, init_cfg=dict(type="Pretrained", checkpoint="./models/" + Path(files["ovsam"]).name,
                                        prefix="mask_decoder"),
                load_roi_conv=dict(checkpoint="./models/" + Path(files["fpn"]).name, prefix="roi_conv"))
        head.eval()
        fpn = [ref[f"fpn{i}"] for i in range(4)]  # mmdet's FPN is not among the authors' files
        segmentor = mods["app.models.model"].SAMSegmentor.__new__(mods["app.models.model"].SAMSegmentor)
        nn.Module.__init__(segmentor)
        segmentor.pe, segmentor.mask_decoder, segmentor.enable_backbone, segmentor.backbone = (
            _PromptFrame(pe, size), head, True, None)
        cache = dict(backbone_feat=tuple(stages), neck_feat=neck_out, fpn_feat=fpn)
        typed = torch.cat([ref["typed.classifier"], torch.zeros_like(ref["typed.classifier"][:1])]).permute(2, 0, 1)
        vocab_embed = head.cls_embed.clone()
        rh, rw = resized.size[1], resized.size[0]
        for case, prompt in PROMPTS.items():
            if "points" in prompt:
                prompts = _InstanceData(point_coords=torch.tensor(prompt["points"], dtype=torch.float32)[None])
            else:
                prompts = _InstanceData(bboxes=torch.tensor(prompt["box"], dtype=torch.float32)[None])
            sparse, dense = pe(prompts, image_size=(size, size), with_points="point_coords" in prompts,
                               with_bboxes="bboxes" in prompts)
            diff("sparse prompt embeddings", ref[f"{case}.sparse"][0], sparse)
            for table, tag in ((vocab_embed, ""), (typed, "typed_")):
                head.cls_embed = table
                low, _, logits = head(image_embeddings=neck_out, image_pe=pe.get_dense_pe(), sparse_prompt_embeddings=sparse,
                                      dense_prompt_embeddings=dense, multi_mask_output=False, fpn_feats=fpn,
                                      backbone_feats=stages, backbone=None)
                diff(f"{tag}logits", ref[f"{case}.{tag}logits"], logits[0, 0])
                masks, probs = segmentor.extract_masks(cache, prompts)
                diff(f"{tag}probs", ref[f"{case}.{tag}probs"], probs[0, 0])
            diff("low-res masks", ref[f"{case}.low_res_masks"], low)
            ours = F.interpolate(ref[f"{case}.low_res_masks"], scale_factor=4.0, mode="bilinear", align_corners=False).sigmoid()
            diff("upsampled mask probabilities", ours, torch.from_numpy(masks))
            binary = torch.from_numpy(masks[0, 0, :rh, :rw] > 0.5)
            diffs["final mask pixels that differ"] = diffs.get("final mask pixels that differ", 0) + int(
                (binary != ref[f"{case}.mask"].bool()).sum())
            head.cls_embed = vocab_embed
    finally:
        os.chdir(cwd)

    # Text tower: open_clip's CLIP on the CLIP file against transformers' on the fixture weights.
    t = TINY["text"]
    clip = open_clip.model.CLIP(
        embed_dim=t["projection_dim"], quick_gelu=True,
        vision_cfg=open_clip.model.CLIPVisionCfg(layers=tuple(TINY["layers"]), width=width, image_size=size),
        text_cfg=open_clip.model.CLIPTextCfg(context_length=77, vocab_size=49408, width=t["hidden_size"],
                                             heads=t["num_attention_heads"], layers=t["num_hidden_layers"],
                                             mlp_ratio=t["intermediate_size"] / t["hidden_size"])).eval()
    clip.load_state_dict(clip_state, strict=True)
    tokenizer = CLIPTokenizer(str(TOKENIZER_FILES / "vocab.json"), str(TOKENIZER_FILES / "merges.txt"))
    texts = [tpl.format(s) for label in TYPED_LABELS + CLASS_NAMES for s in split_label(label)
             for tpl in convert_ovsam.TEMPLATES]
    ids = open_clip.tokenize(texts)
    batch = tokenizer(texts, padding="max_length", max_length=77, return_tensors="pt")
    diffs["token ids that differ"] = int((ids != batch.input_ids * batch.attention_mask).sum())
    ours = model.text_projection(model.text_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).pooler_output)
    diff("text embeddings", ours, clip.encode_text(ids))

    print("cross-check against the authors' modules (max |difference|):")
    for name, value in diffs.items():
        print(f"  {name}: {value:.3g}")



def build_model(resized):
    torch.manual_seed(SEED)
    model = OvSam().eval()
    randomise(model, WEIGHT_SEED)
    centre_masks(model, resized)
    return model


def main():
    parser = argparse.ArgumentParser(description="OVSAM reference fixture (tests/fixtures/ovsam-tiny/)")
    parser.add_argument("--cross-check", metavar="OVSAM_REPO",
                        help="also compare with the authors' modules (checkout or bare git directory)")
    parser.add_argument("--repo-rev", default="HEAD")
    parser.add_argument("--space", metavar="OVSAM_SPACE", help="the demo Space (checkout or bare git directory)")
    parser.add_argument("--space-rev", default="06306c0")
    args = parser.parse_args()
    check_versions()
    check_extra_versions()

    image = synthetic_image()
    resized = resize_like_demo(image, TINY["image_size"])
    model = build_model(resized)
    tokenizer = CLIPTokenizer(str(TOKENIZER_FILES / "vocab.json"), str(TOKENIZER_FILES / "merges.txt"))
    with torch.no_grad():
        classifier = model.embed_labels(tokenizer, CLASS_NAMES).half().float()
    expected = dict(model.weights(), classifier=classifier)

    with tempfile.TemporaryDirectory() as tmp:
        files = released_files(model, classifier, Path(tmp) / "released", SEED + 2)
        if DIRECTORY.exists():
            for stale in ("model.safetensors", "config.json"):
                (DIRECTORY / stale).unlink(missing_ok=True)
        convert_ovsam.main(convert_args(files, DIRECTORY, "f16"))
        n = check_converted(expected, DIRECTORY, torch.float16)
        config = json.loads((DIRECTORY / "config.json").read_text())
        check_config(config, model)
        # The transformers layout of SAM's prompt encoder converts to the same tensors, also when
        # read from a URL by range requests (a local server that honours them).
        with range_server(files["sam_hf"]) as url:
            convert_ovsam.main(convert_args(dict(files, sam_url=url), Path(tmp) / "hf", "f32", sam_key="sam_url"))
        check_converted(expected, Path(tmp) / "hf", torch.float32)
        print(f"converted checkpoint: {n} tensors, all equal to the reference model's")

        image.save(DIRECTORY / "image.png")
        resized.save(DIRECTORY / "resized.png")
        assert np.array_equal(np.array(Image.open(DIRECTORY / "resized.png")), np.array(resized))
        ref, cases = references(model, tokenizer, classifier, resized)

        if args.cross_check:
            cross_check(model, files, args, ref, resized)

    save_file({k: v.contiguous() if v.dtype == torch.uint8 else v.float().contiguous() for k, v in ref.items()},
              str(DIRECTORY / "reference.safetensors"))
    for case in PROMPTS:
        if cases[case]["mask_pixels"] == 0:
            sys.exit(f"prompt case {case} gives an empty mask; move its prompt")
    levels = [cases[c]["level"] for c in PROMPTS]
    if len(set(levels)) < len(levels):
        sys.exit(f"the prompt cases map to RoI levels {levels}, not three different ones; move their prompts")
    meta = dict(
        image="image.png", image_size=list(IMAGE_SIZE), resized="resized.png", resized_size=list(resized.size),
        input_size=TINY["image_size"], class_names=CLASS_NAMES, typed_labels=TYPED_LABELS,
        cases=cases, naming_only=NAMING_ONLY,
        notes=["points and prompt_box are in the resized image's pixels (x, y); boxes are (x0, y0, x1, y1)",
               "sparse embeddings are [1, 1, tokens, 32]; low_res_masks [1, 1, 128, 128]",
               "mask_box: the box of the low-resolution mask (x 4), in the same frame; zeros when empty",
               "logits include the background class last; probs drop it",
               "empty: every class scores 1/7 (a zero RoI feature); the top-1 is the first of the tie",
               "mask is the final binary mask at the resized size, stored as uint8 0/1",
               "box_margin: the largest change of the low-resolution logits that leaves a case's box unchanged"],
    )
    (DIRECTORY / "reference.json").write_text(json.dumps(meta, indent=1) + "\n")
    for case, info in cases.items():
        typed = f", typed {info['typed_top1']['label']} {info['typed_top1']['score']:.3f}" if "typed_top1" in info else ""
        top = info["top1"]
        print(f"{case}: mask box {info['mask_box']} level {info['level']}, {top['name']} {top['score']:.3f}{typed}")
    size = sum(f.stat().st_size for f in DIRECTORY.iterdir())
    print(f"ovsam-tiny: {size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
