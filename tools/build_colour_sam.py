#!/usr/bin/env python3
"""A tiny Segment Anything whose behaviour is known by construction: a click (or the top-left
corner of a box) picks a colour, and the mask is every pixel of that colour. Its weights are set
by hand, not trained, so the end-to-end tests (CLI and browser) can click inside each region of
the colour scene (tests/fixtures/images/scene.json) and check that the mask is that region.

    python3 tools/build_colour_sam.py        # writes tests/fixtures/sam-colours/

It is a plain SamModel (transformers), saved with save_pretrained, so it travels through the same
loader, processor and decoder as the hub checkpoints. How each part is used:

* Image encoder. 4-pixel patches on a 112-pixel input (a 28 x 28 grid). The patch embedding
  writes each patch's mean colour as s = 2 * rgb - 1 (so saturated colours are +-1 per channel)
  and its negation; the blocks pass tokens through (zero output projections); the neck moves
  [s, -s] into channels 32..37 of the 128-channel embedding and its layer norms keep them at +-1.
* Prompt encoder. The random-Fourier matrix is replaced by 16 x-frequencies and 16
  y-frequencies (0.25, 0.5, ... 4 cycles per unit), so the dot product of two position
  encodings is a sharp Dirichlet kernel of their distance, with one peak across the image. The
  other 32 frequencies are zero, which leaves channels 32..63 free of position: the content lives
  there. Positive clicks and the top-left box corner carry a "source" flag (channel 41); the mask
  tokens carry a "reader" flag (channel 40).
* Two-way transformer. Layer 0: each prompt token attends to the image with its position
  encoding (rotated 1.5 pixels down and right, so a box's top-left corner looks inside the box) and
  reads the colour there. Layer 1: the mask tokens attend to the source tokens and copy that
  colour. Every other attention and MLP adds nothing; the layer norms keep only channels 32..37.
* Mask head. The upscaling keeps [s, -s] per pixel and adds a constant channel; the hypernetwork
  turns the clicked colour s_q into weights so that the mask logit is 2k (s_q . s - 2): positive
  exactly where all three channels agree.
* IoU head: a constant (the multimask outputs are identical).

The scene (448 x 336, boundaries on a 16-pixel grid) becomes 112 x 84 at the model's input, its
boundaries on the 4-pixel patch grid, so the masks can match the regions.
"""

import math

import numpy as np
import torch
from transformers import SamConfig, SamImageProcessor, SamModel

from make_fixtures import OUT, SEED, check_versions

SIZE = 112
PATCH = 4
GRID = SIZE // PATCH
HIDDEN = 128
FREQUENCIES = 16  # per axis
CONTENT = 32  # first content channel: [s, -s] in 32..37
READER, SOURCE = 40, 41
SHIFT = 1.5  # pixels at the model's input, down and right
SHARPNESS = 12.0  # attention logit per unit of the Dirichlet kernel
MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]
SIGMA = math.sqrt(6 / HIDDEN)  # the standard deviation of [+-1 x 6, 0 x 122]: layer norms keep +-1

CONFIG = dict(
    vision_config=dict(hidden_size=12, num_hidden_layers=1, num_attention_heads=1, image_size=SIZE,
                       patch_size=PATCH, window_size=7, global_attn_indexes=[0], output_channels=HIDDEN,
                       num_pos_feats=HIDDEN // 2, mlp_dim=12),
    prompt_encoder_config=dict(hidden_size=HIDDEN, image_size=SIZE, patch_size=PATCH, mask_input_channels=16),
    mask_decoder_config=dict(hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=1, mlp_dim=32,
                             iou_head_hidden_dim=16, iou_head_depth=3),
)


def keep_content(norm):
    """A layer norm (token, image or channels-first) that keeps [s, -s] at +-1 and zeroes the rest."""
    norm.weight.zero_()
    norm.bias.zero_()
    norm.weight[CONTENT:CONTENT + 6] = SIGMA


def silence(attention):
    """An attention whose output is zero (its residual passes the stream through)."""
    attention.out_proj.weight.zero_()
    attention.out_proj.bias.zero_()


def build():
    torch.manual_seed(SEED)
    model = SamModel(SamConfig(**CONFIG))
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()

        # Image encoder.
        encoder = model.vision_encoder
        patch = encoder.patch_embed.projection
        for c in range(3):
            # normalised x = (rgb - mean) / std, so s = 2 rgb - 1 = 2 std x + 2 mean - 1, averaged.
            patch.weight[c, c] = 2 * STD[c] / PATCH ** 2
            patch.bias[c] = 2 * MEAN[c] - 1
            patch.weight[3 + c, c] = -patch.weight[c, c]
            patch.bias[3 + c] = -patch.bias[c]
        for layer in encoder.layers:
            layer.layer_norm1.weight.fill_(1.0)
            layer.layer_norm2.weight.fill_(1.0)
        neck = encoder.neck
        for j in range(6):
            neck.conv1.weight[CONTENT + j, j, 0, 0] = 1.0
            neck.conv2.weight[CONTENT + j, CONTENT + j, 1, 1] = 1.0
        keep_content(neck.layer_norm1)
        keep_content(neck.layer_norm2)

        # Prompt encoder: the Fourier matrix, and the flags.
        fourier = model.shared_image_embedding.positional_embedding  # [2, HIDDEN / 2]
        for k in range(FREQUENCIES):
            fourier[0, k] = 0.25 * (k + 1)
            fourier[1, FREQUENCIES + k] = 0.25 * (k + 1)
        prompt = model.prompt_encoder
        prompt.point_embed[1].weight[0, SOURCE] = 1.0  # a positive click
        prompt.point_embed[2].weight[0, SOURCE] = 1.0  # a box's top-left corner

        decoder = model.mask_decoder
        decoder.mask_tokens.weight[:, READER] = 1.0
        transformer = decoder.transformer
        first, second = transformer.layers

        # Layer 0, tokens to image: the query is the token's position encoding rotated by SHIFT,
        # the key the patch's; the value is the patch colour.
        cross = first.cross_attn_token_to_image
        active = 2 * FREQUENCIES  # frequencies in use: sin at [0, active), cos at [HIDDEN/2, HIDDEN/2 + active)
        scale = SHARPNESS * math.sqrt(cross.internal_dim)
        for k in range(active):
            along = fourier[:, k]
            delta = 2 * math.pi * float(along.sum()) * 2 * SHIFT / SIZE  # the phase of SHIFT pixels
            sin, cos = k, HIDDEN // 2 + k
            cross.q_proj.weight[k, sin] = scale * math.cos(delta)
            cross.q_proj.weight[k, cos] = scale * math.sin(delta)
            cross.q_proj.weight[active + k, cos] = scale * math.cos(delta)
            cross.q_proj.weight[active + k, sin] = -scale * math.sin(delta)
            cross.k_proj.weight[k, sin] = 1.0
            cross.k_proj.weight[active + k, cos] = 1.0
        for j in range(6):
            cross.v_proj.weight[j, CONTENT + j] = 1.0
            cross.out_proj.weight[CONTENT + j, j] = 1.0

        # Layer 1, self-attention: readers attend to sources and copy their colour, loudly enough
        # to drown what the readers read in layer 0 (the image's mean colour).
        attend = second.self_attn
        attend.q_proj.weight[0, READER] = 20.0 * math.sqrt(attend.internal_dim)
        attend.k_proj.weight[0, SOURCE] = 1.0
        for j in range(6):
            attend.v_proj.weight[j, CONTENT + j] = 1.0
            attend.out_proj.weight[CONTENT + j, j] = 10.0

        # Everything else adds nothing; every layer norm keeps the colour channels.
        for layer in (first, second):
            silence(layer.cross_attn_image_to_token)
            for norm in (layer.layer_norm1, layer.layer_norm2, layer.layer_norm3, layer.layer_norm4):
                keep_content(norm)
        silence(first.self_attn)
        silence(second.cross_attn_token_to_image)
        silence(transformer.final_attn_token_to_image)
        keep_content(transformer.layer_norm_final_attn)

        # Mask head: per pixel [k s, k (-s), k], k = 4; hypernetwork weights 2 [s_q, -s_q, -2].
        k = 4.0
        for j in range(6):
            decoder.upscale_conv1.weight[CONTENT + j, j] = 1.0
            decoder.upscale_conv2.weight[j, j] = 1.0
        decoder.upscale_conv2.weight[6, 6] = 1.0
        channels = HIDDEN // 4
        decoder.upscale_layer_norm.weight[:6] = k * math.sqrt(6 / channels)
        decoder.upscale_layer_norm.bias[6] = k
        for mlp in decoder.output_hypernetworks_mlps:
            for j in range(6):
                mlp.proj_in.weight[j, CONTENT + j] = 1.0
                mlp.layers[0].weight[j, j] = 1.0
            for c in range(3):
                # relu(s) - relu(-s) = s for s = +-1
                mlp.proj_out.weight[c, c], mlp.proj_out.weight[c, 3 + c] = 2.0, -2.0
                mlp.proj_out.weight[3 + c, c], mlp.proj_out.weight[3 + c, 3 + c] = -2.0, 2.0
            mlp.proj_out.bias[6] = -4.0
        decoder.iou_prediction_head.proj_out.bias.copy_(torch.tensor([0.9, 0.95, 0.9, 0.85]))
    return model.eval()


def main():
    check_versions()
    model = build()
    directory = OUT / "sam-colours"
    directory.mkdir(parents=True, exist_ok=True)
    mask = 4 * GRID  # SAM's mask input is 4x the embedding grid
    SamImageProcessor(size={"longest_edge": SIZE}, pad_size={"height": SIZE, "width": SIZE},
                      mask_size={"longest_edge": mask}, mask_pad_size={"height": mask, "width": mask}
                      ).save_pretrained(directory)
    model.save_pretrained(directory)
    (directory / "README.md").write_text(
        "A tiny SamModel built by tools/build_colour_sam.py (weights set by hand): a click, or the\n"
        "top-left corner of a box, picks a colour and the mask is every pixel of that colour\n"
        "(inputs up to 112 pixels). For tests only.\n")
    print(f"sam-colours: {sum(p.numel() for p in model.parameters())} parameters")


if __name__ == "__main__":
    main()
