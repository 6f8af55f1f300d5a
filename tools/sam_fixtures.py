#!/usr/bin/env python3
"""Reference fixtures for wordmask's Segment Anything parity tests (tests/native/parity_sam.rs).

Builds random-weight `SamModel`s with transformers (the key layout of the hub checkpoints
`facebook/sam-vit-*` and `nielsr/slimsam-*`), with every parameter re-randomised (transformers
starts the relative-position tables and the absolute position table at zero, which would hide
a wrong index), saves them with their `SamProcessor` settings, and records for three images the
processor's pixels, the image embeddings, the prompt embeddings and the decoder's masks and IoU
scores for several prompts, and the post-processed masks at the image's own size.

    pip install -r tools/requirements.txt
    python3 tools/sam_fixtures.py            # writes tests/fixtures/sam-*/

- `sam-tiny`: image 64, patch 8 (an 8x8 grid), windows of 3 (padded to 9), one global layer.
- `sam-slim-shape`: SlimSAM-77's vision tower (`nielsr/slimsam-77-uniform`: width 168, 12 heads
  of 14, MLP 696, image 1024, windows of 14 on the 64x64 grid) with two of its twelve layers
  (one windowed, one global), and a small neck and mask decoder, to keep the fixture small.

Versions are pinned in tools/requirements.txt; seeds are fixed.
"""

import json

import numpy as np
import torch
from safetensors.torch import save_file
from transformers import SamConfig, SamImageProcessor, SamModel, SamProcessor

from make_fixtures import OUT, SEED, check_versions, synthetic_images

MODELS = {
    "sam-tiny": dict(
        vision=dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, image_size=64, patch_size=8,
                    window_size=3, global_attn_indexes=[1], output_channels=16, num_pos_feats=8, mlp_dim=48),
        prompt=dict(hidden_size=16, image_size=64, patch_size=8, mask_input_channels=8),
        decoder=dict(hidden_size=16, mlp_dim=24, num_attention_heads=2, iou_head_hidden_dim=16),
        longest_edge=64,
        images=["gradient_80x64", "shapes_50x90", "noise_75x75"],
        prompts=["point", "points", "box", "point_box", "mask"],
        save="safetensors",
    ),
    "sam-slim-shape": dict(
        vision=dict(hidden_size=168, mlp_dim=696, num_hidden_layers=2, global_attn_indexes=[1], output_channels=32,
                    num_pos_feats=16),
        prompt=dict(hidden_size=32),
        decoder=dict(hidden_size=32, mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=32),
        longest_edge=1024,
        images=["gradient_80x64"],
        prompts=["point", "box"],
        save="safetensors-f16",
    ),
}

# Prompts in the image's own pixel coordinates, as fractions of its width and height so that
# one list serves every image: (tag, points [(x, y, label)], box (x0, y0, x1, y1) or None,
# multimask, with the first low-resolution mask of the "point" prompt as a mask prompt).
PROMPTS = [
    ("point", [(0.3, 0.4, 1)], None, True, False),
    ("points", [(0.3, 0.4, 1), (0.7, 0.6, 0)], None, False, False),
    ("box", [], (0.1, 0.2, 0.6, 0.9), False, False),
    ("point_box", [(0.5, 0.5, 1)], (0.2, 0.1, 0.8, 0.7), False, False),
    ("mask", [(0.3, 0.4, 1)], None, False, True),
]


def build(name, spec, seed=SEED):
    config = SamConfig(vision_config=spec["vision"], prompt_encoder_config=spec["prompt"],
                       mask_decoder_config=spec["decoder"])
    torch.manual_seed(seed + sum(map(ord, name)))
    model = SamModel(config).eval()
    # transformers initialises the vision tower's linear layers with std 1e-10 (the tower would
    # be the identity), the position tables at zero and the norms at 1/0: draw every parameter
    # afresh, each at a scale that keeps activations of order 1.
    with torch.no_grad():
        for key, p in model.named_parameters():
            if key.endswith("positional_embedding"):
                continue  # already a Gaussian of the width's scale, as SAM's
            if "norm" in key and key.endswith("weight"):
                p.copy_(1 + torch.randn_like(p) * 0.1)
            elif key.endswith("bias") or "norm" in key:
                p.copy_(torch.randn_like(p) * 0.1)
            elif p.dim() >= 2 and ("proj" in key or "lin" in key or "conv" in key or "qkv" in key or "layers." in key):
                fan_in = p[0].numel() if "upscale_conv" not in key else p.shape[0]
                p.copy_(torch.randn_like(p) / fan_in**0.5)
            else:  # position tables, relative positions, point and mask tokens
                p.copy_(torch.randn_like(p) * 0.5)
    return model


def processor(spec):
    edge = spec["longest_edge"]
    mask_edge = 4 * (edge // spec["vision"].get("patch_size", 16))
    image_processor = SamImageProcessor(
        size={"longest_edge": edge}, pad_size={"height": edge, "width": edge},
        mask_size={"longest_edge": mask_edge}, mask_pad_size={"height": mask_edge, "width": mask_edge},
    )
    return SamProcessor(image_processor=image_processor)


def save(model, spec, directory):
    directory.mkdir(parents=True, exist_ok=True)
    processor(spec).image_processor.save_pretrained(directory)  # preprocessor_config.json, as on the hub
    if spec["save"] == "safetensors-f16":
        model.half().save_pretrained(directory)
        return SamModel.from_pretrained(directory, dtype=torch.float32).eval()
    model.save_pretrained(directory)
    return model


@torch.no_grad()
def fixture(name, spec, images):
    directory = OUT / name
    model = save(build(name, spec), spec, directory)
    proc = processor(spec)
    ref = {"image_positional_embeddings": model.get_image_wide_positional_embeddings()}
    runs = []
    for image_name in spec["images"]:
        image = images[image_name]
        w, h = image.size
        pixels = proc(images=image, return_tensors="pt").pixel_values
        tag = image_name
        if spec["longest_edge"] <= 64:  # 1024x1024 pixels would make the fixture too large
            ref[f"{tag}.pixel_values"] = pixels
        embeddings = model.get_image_embeddings(pixels)
        ref[f"{tag}.image_embeddings"] = embeddings
        low_res = {}
        for prompt, points, box, multimask, with_mask in (p for p in PROMPTS if p[0] in spec["prompts"]):
            kwargs = {}
            if points:
                kwargs["input_points"] = [[[[x * w, y * h] for x, y, _ in points]]]
                kwargs["input_labels"] = [[[label for _, _, label in points]]]
            if box:
                kwargs["input_boxes"] = [[[box[0] * w, box[1] * h, box[2] * w, box[3] * h]]]
            enc = proc(images=image, return_tensors="pt", **kwargs)
            masks_in = low_res["point"][:, 0, :1] if with_mask else None  # [1, 1, 4E, 4E]
            sparse, dense = model.get_prompt_embeddings(
                input_points=enc.get("input_points"), input_labels=enc.get("input_labels"),
                input_boxes=enc.get("input_boxes"), input_masks=masks_in)
            out = model(image_embeddings=embeddings, input_points=enc.get("input_points"),
                        input_labels=enc.get("input_labels"), input_boxes=enc.get("input_boxes"),
                        input_masks=masks_in, multimask_output=multimask)
            key = f"{tag}.{prompt}"
            if sparse is not None:
                ref[f"{key}.sparse"] = sparse
            if with_mask or spec["longest_edge"] <= 64:  # else `no_mask_embed` everywhere, and large
                ref[f"{key}.dense"] = dense
            ref[f"{key}.pred_masks"] = out.pred_masks
            ref[f"{key}.iou_scores"] = out.iou_scores
            logits = proc.image_processor.post_process_masks(
                out.pred_masks, enc.original_sizes, enc.reshaped_input_sizes, binarize=False)[0]
            ref[f"{key}.masks"] = logits  # [1, masks, h, w] at the image's size
            if with_mask:
                ref[f"{key}.input_masks"] = masks_in.clone()
            low_res[prompt] = out.pred_masks
            runs.append(dict(image=image_name, prompt=prompt, points=[[x * w, y * h, label] for x, y, label in points],
                             box=[box[0] * w, box[1] * h, box[2] * w, box[3] * h] if box else None,
                             multimask=multimask, mask_from=("point" if with_mask else None)))
    save_file({k: v.contiguous().float() for k, v in ref.items()}, directory / "reference.safetensors")
    (directory / "runs.json").write_text(json.dumps(dict(runs=runs), indent=1) + "\n")
    print(f"{name}: {sum(p.numel() for p in model.parameters())} parameters, saved as {spec['save']}")


def main():
    check_versions()
    images = synthetic_images()
    for name, spec in MODELS.items():
        fixture(name, spec, images)


if __name__ == "__main__":
    main()
