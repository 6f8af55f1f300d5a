#!/usr/bin/env python3
"""A tiny Segment Anything that is exact to the pixel: a positive click picks the colour of the
clicked pixel, and the mask is every pixel of that colour, whatever the shape of its edges. Its
weights are set by hand, not trained, so the end-to-end tests can click inside each region of the
round scene (tests/fixtures/images/round_scene.json: discs, a diagonal band, a thin arc) and
check that the mask is that region to the pixel. tools/build_colour_sam.py builds its sibling
sam-colours, exact only on its patch grid; this one has no grid.

    python3 tools/build_colour_sam_fine.py   # writes tests/fixtures/sam-colours-fine/ and the scene

It is a plain SamModel (transformers), saved with save_pretrained. The input is 448 pixels, so a
448 x 336 image is only padded; 4-pixel patches make a 112 x 112 embedding grid, and the mask
head's two stride-2 transposed convolutions bring it back to 448 x 448: one mask pixel per image
pixel. Colours are saturated (each channel 0 or 255) and written s = 2 rgb - 1, +-1 per channel.
How each part is used:

* Image encoder. The patch embedding writes the colour of each of a patch's 16 pixels separately
  (48 channels); the single windowed block passes tokens through (zero output projections), no
  absolute position table. The neck turns them into signed pairs [s, -s], 96 of the 128 channels,
  so every layer norm after it sees the same mean (0) and variance and keeps them at +-const.
* Prompt encoder. Random-Fourier columns: 7 octaves per axis (periods 2, 4, ..., 128 cells),
  whose dot product with the cells' encodings is largest at the click's own cell, by at least
  1.14 per axis wherever the click lies in it; and a "phase" column per axis with a period of one
  cell (4 pixels), whose sin and cos have the signs of the click's column (row) inside its cell:
  ++, +-, --, -+ for 0..3. A positive click carries a source flag; box corners and negative
  clicks carry nothing (so a prompt without a positive click has no colour, and its mask means
  nothing).
* Two-way transformer, one layer. Self-attention (no residual there in SAM's first layer): every
  token attends to the positive click and copies its position encoding, plus a constant channel.
  Token-to-image attention: with that copy as query every token (the mask tokens included)
  attends to the clicked cell and reads its 48 pixel colours. All else adds nothing; the layer
  norms keep their default weights, which scale each token but keep the differences between its
  channels, so later reads take differences with a channel that was zero (REF).
* Mask head. The first transposed convolution picks, for each of a cell's 2 x 2 quarters, the
  [s, -s] of its 4 pixels (kernel position = quarter); its layer norm and GELU give k per true
  sign and 0 per false one; the second picks the pixel within the quarter. Each mask pixel thus
  holds [k (s > 0), k (s < 0)] of its own image pixel, for the three channels. The hypernetwork
  selects the clicked pixel among the cell's 16 by the phase signs (a ReLU gate per pixel and
  channel: its colour bit minus a penalty wherever the signs disagree), saturates the bit, and
  weighs a pixel channel +1 where it agrees with the click and -5 where not: the mask logit is
  3k where all three channels agree and -3k or less elsewhere.
* IoU head: a constant (the multimask outputs are identical).

The margins (attention at most e^-25 on any cell but the clicked one, gate bits at least 14 times
their threshold, logits +-12 or beyond) leave room for half precision.

It also writes the scene, tests/fixtures/images/round_scene.png and .json: saturated colours drawn
by pixel centres, no anti-aliasing.
"""

import json
import math

import numpy as np
import torch
from PIL import Image
from transformers import SamConfig, SamImageProcessor, SamModel

from build_colour_sam import MEAN, STD, silence
from make_fixtures import OUT, SEED, check_versions

SIZE = 448
PATCH = 4
GRID = SIZE // PATCH  # 112
PIXELS = PATCH * PATCH  # pixels per cell
HIDDEN = 128
HALF = HIDDEN // 2  # sin channels [0, HALF), cos channels [HALF, HIDDEN)
OCTAVES = 7  # periods 2, 4, ..., 128 cells: enough to tell 112 cells apart
PHASE_X, PHASE_Y = 2 * OCTAVES, 2 * OCTAVES + 1  # Fourier columns with a period of one cell
COLUMNS = 2 * OCTAVES + 2

# Image embedding: [s, -s] of each (pixel, channel) of the cell, away from the channels where the
# token-to-image attention reads the octaves' position encoding.
OCTAVE_CHANNELS = [c for col in range(2 * OCTAVES) for c in (col, HALF + col)]
FREE = [c for c in range(HIDDEN) if c not in OCTAVE_CHANNELS]
PLUS, MINUS = FREE[:3 * PIXELS], FREE[3 * PIXELS:6 * PIXELS]

# Token stream: the copied position encoding where no token's own encoding is ever non-zero (the
# unused sin channels), a reference channel that stays zero before each norm, a constant channel,
# and the clicked cell's 48 colours.
COPY = list(range(COLUMNS, 3 * COLUMNS))  # sin of each column, then cos
REF, SOURCE, ONE = 3 * COLUMNS, 3 * COLUMNS + 1, 3 * COLUMNS + 2
CONTENT = list(range(HALF, HALF + 3 * PIXELS))

SHARPNESS = 8.0  # logit per unit of the octave kernel and of the copy's size (about 3): margin 1.14 x 24
SOURCE_LOGIT = 40.0  # how much more a token attends to the positive click than to the others
CONTENT_GAIN = 2.55  # brings the read colours near the size of the copied channels (about 2.7-3.2)
THRESHOLD, PENALTY = 0.5, 2.0  # the gate: relu(s - THRESHOLD - PENALTY * (2 - matches))
SATURATION = 20.0  # turns the gated colour (at least about 0.3 here) into an exact bit
K = 4.0  # per-pixel feature size: GELU(4) = 4.0, GELU(-4) = -1e-4
AGREE, DISAGREE = 1.0, -5.0  # hypernetwork weights: logit 3k (all agree) or at most -3k

CONFIG = dict(
    vision_config=dict(hidden_size=3 * PIXELS, num_hidden_layers=1, num_attention_heads=1, image_size=SIZE,
                       patch_size=PATCH, window_size=8, global_attn_indexes=[], use_abs_pos=False,
                       output_channels=HIDDEN, num_pos_feats=HALF, mlp_dim=4),
    prompt_encoder_config=dict(hidden_size=HIDDEN, image_size=SIZE, patch_size=PATCH, mask_input_channels=4),
    mask_decoder_config=dict(hidden_size=HIDDEN, num_hidden_layers=1, num_attention_heads=1, mlp_dim=4,
                             attention_downsample_rate=2, iou_head_hidden_dim=8, iou_head_depth=3),
)

# The scene: 448 x 336, painted in order, each region one connected object apart from the others.
WIDTH, HEIGHT = 448, 336
BLUE, RED, GREEN, YELLOW = (0, 0, 255), (255, 0, 0), (0, 255, 0), (255, 255, 0)
SHAPES = [
    dict(word="red", rgb=RED, shape="disc", centre=[85, 85], radius=60),
    dict(word="red", rgb=RED, shape="disc", centre=[380, 255], radius=40),
    dict(word="green", rgb=GREEN, shape="band", centre=[200, 230], length=220, width=40, degrees=30),
    dict(word="yellow", rgb=YELLOW, shape="arc", centre=[320, 80], radius=50, width=12, degrees=[-45, 225]),
]


def sub_pixel(p):
    """The (row, column) inside the cell of pixel p = 4 row + column."""
    return divmod(p, PATCH)


def phase_signs(k):
    """Signs of (sin, cos) of the period-4 phase at offset k = 0..3 inside a cell: the phase of
    pixel k's centre is pi (k + 0.5) / 2, in the four quadrants in turn."""
    return [(1, 1), (1, -1), (-1, -1), (-1, 1)][k]


def build():
    torch.manual_seed(SEED)
    model = SamModel(SamConfig(**CONFIG))
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        # Layer norms at weight 1 (they then keep differences between channels), except the mask
        # embedding's, which no prompt here uses, and the mask head's, set below.
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm) and module.weight.shape[0] in (HIDDEN, 3 * PIXELS):
                module.weight.fill_(1.0)

        # Image encoder: s per (pixel, channel), then [s, -s] in the neck.
        encoder = model.vision_encoder
        patch = encoder.patch_embed.projection  # [48, 3, 4, 4]
        for p in range(PIXELS):
            i, j = sub_pixel(p)
            for c in range(3):
                # normalised x = (rgb - mean) / std, so s = 2 rgb - 1 = 2 std x + 2 mean - 1.
                patch.weight[3 * p + c, c, i, j] = 2 * STD[c]
                patch.bias[3 * p + c] = 2 * MEAN[c] - 1
        neck = encoder.neck
        for n in range(3 * PIXELS):
            neck.conv1.weight[PLUS[n], n, 0, 0] = 1.0
            neck.conv1.weight[MINUS[n], n, 0, 0] = -1.0
        for ch in PLUS + MINUS:
            neck.conv2.weight[ch, ch, 1, 1] = 1.0

        # Prompt encoder: octaves and phases (a column of frequency f has a period of 1 / (2 f) in
        # [0, 1] coordinates, so a period of P cells is f = GRID / (2 P)), and the source flag.
        fourier = model.shared_image_embedding.positional_embedding  # [2, HALF]
        for o in range(OCTAVES):
            fourier[0, o] = fourier[1, OCTAVES + o] = GRID / (2 * 2 ** (o + 1))
        fourier[0, PHASE_X] = fourier[1, PHASE_Y] = GRID / 2
        model.prompt_encoder.point_embed[1].weight[0, SOURCE] = 1.0  # a positive click

        decoder = model.mask_decoder
        layer = decoder.transformer.layers[0]

        # Self-attention: every token (a constant query) attends to the source and copies its
        # position encoding; the output projection's bias is the constant channel.
        attend = layer.self_attn
        attend.q_proj.bias[0] = SOURCE_LOGIT / attend.scaling
        attend.k_proj.weight[0, SOURCE] = 1.0
        for col in range(COLUMNS):
            for half in (0, 1):  # sin, cos
                row = half * COLUMNS + col
                attend.v_proj.weight[row, half * HALF + col] = 1.0
                attend.out_proj.weight[COPY[row], row] = 1.0
        attend.out_proj.bias[ONE] = 1.0

        # Token to image: the copied octaves against the cells' own, and the cell's colours.
        cross = layer.cross_attn_token_to_image
        for col in range(2 * OCTAVES):
            for half in (0, 1):
                row = half * 2 * OCTAVES + col
                cross.q_proj.weight[row, COPY[half * COLUMNS + col]] = SHARPNESS / cross.scaling
                cross.q_proj.weight[row, REF] = -SHARPNESS / cross.scaling
                cross.k_proj.weight[row, half * HALF + col] = 1.0
        for n in range(3 * PIXELS):
            cross.v_proj.weight[n, PLUS[n]] = 1.0
            cross.out_proj.weight[CONTENT[n], n] = CONTENT_GAIN

        silence(layer.cross_attn_image_to_token)
        silence(decoder.transformer.final_attn_token_to_image)

        # Mask head: quarter (a, b) of a cell (24 channels: its 4 pixels' [s, -s]), then pixel (i2, j2)
        # of the quarter (6 channels); the norm between gives each true sign k.
        quarter = HIDDEN // 4
        for a in range(2):
            for b in range(2):
                for q in range(4):
                    i2, j2 = divmod(q, 2)
                    p = PATCH * (2 * a + i2) + 2 * b + j2
                    for c in range(3):
                        for sign, source in enumerate((PLUS, MINUS)):
                            decoder.upscale_conv1.weight[source[3 * p + c], 6 * q + 2 * c + sign, a, b] = 1.0
                            decoder.upscale_conv2.weight[6 * q + 2 * c + sign, 2 * c + sign, i2, j2] = 1.0
        decoder.upscale_layer_norm.weight[:24] = K * math.sqrt(24 / quarter)

        # Hypernetwork: gate, saturate, weigh. Every read is a difference with REF.
        amplitude = math.sqrt(0.5)  # |sin| = |cos| of a phase at a pixel centre
        sin_x, cos_x = COPY[PHASE_X], COPY[COLUMNS + PHASE_X]
        sin_y, cos_y = COPY[PHASE_Y], COPY[COLUMNS + PHASE_Y]
        for mlp in decoder.output_hypernetworks_mlps:
            gate = mlp.proj_in.weight
            for p in range(PIXELS):
                i, j = sub_pixel(p)
                (sx, cx), (sy, cy) = phase_signs(j), phase_signs(i)
                for c in range(3):
                    unit = 3 * p + c
                    row = gate[unit]
                    row[CONTENT[unit]] += 1.0
                    row[ONE] += -THRESHOLD - 2 * PENALTY
                    # matches = (sx sin_x + cx cos_x + sy sin_y + cy cos_y) / (2 amplitude): 2 at the
                    # clicked pixel, at most 1 elsewhere.
                    for ch, sign in ((sin_x, sx), (cos_x, cx), (sin_y, sy), (cos_y, cy)):
                        row[ch] += PENALTY * sign / (2 * amplitude)
                    row[REF] -= row.sum()
                    for hidden in (c, 3 + c):
                        mlp.layers[0].weight[hidden, unit] = SATURATION
            mlp.layers[0].bias[3:6] = -1.0
            for c in range(3):
                # bit = relu(S g) - relu(S g - 1); w+ = DISAGREE + (AGREE - DISAGREE) bit, w- the other way.
                for out, sign, base in ((2 * c, 1, DISAGREE), (2 * c + 1, -1, AGREE)):
                    mlp.proj_out.weight[out, c] = sign * (AGREE - DISAGREE)
                    mlp.proj_out.weight[out, 3 + c] = -sign * (AGREE - DISAGREE)
                    mlp.proj_out.bias[out] = base
        decoder.iou_prediction_head.proj_out.bias.copy_(torch.tensor([0.9, 0.95, 0.9, 0.85]))
    return model.eval()


def paint_scene():
    """The round scene as an array, and its description."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH] + 0.5  # pixel centres
    image = np.empty((HEIGHT, WIDTH, 3), np.uint8)
    image[:] = BLUE
    for s in SHAPES:
        cx, cy = s["centre"]
        if s["shape"] == "disc":
            inside = (x - cx) ** 2 + (y - cy) ** 2 < s["radius"] ** 2
        elif s["shape"] == "band":
            t = math.radians(s["degrees"])
            along = (x - cx) * math.cos(t) - (y - cy) * math.sin(t)  # rising to the right
            across = (x - cx) * math.sin(t) + (y - cy) * math.cos(t)
            inside = (abs(along) < s["length"] / 2) & (abs(across) < s["width"] / 2)
        else:
            r = np.hypot(x - cx, y - cy)
            angle = np.degrees(np.arctan2(cy - y, x - cx))  # counter-clockwise from +x, y up
            start, end = s["degrees"]
            on = ((angle - start) % 360) <= (end - start)
            inside = (abs(r - s["radius"]) < s["width"] / 2) & on
        image[inside] = s["rgb"]
    return image


def write_scene():
    image = paint_scene()
    images = OUT / "images"
    Image.fromarray(image).save(images / "round_scene.png")
    probes = {"blue": [21, 318], "red": [86, 87], "green": [201, 229], "yellow": [320, 30]}
    regions = []
    for word, rgb in (("blue", BLUE), ("red", RED), ("green", GREEN), ("yellow", YELLOW)):
        px, py = probes[word]
        assert tuple(image[py, px]) == rgb, (word, image[py, px])
        regions.append(dict(word=word, rgb=list(rgb), objects=1 + (word == "red"), probe=probes[word]))
    about = ("The round scene of the pixel-exact Segment Anything tests (sam-colours-fine): saturated colours "
             "drawn by pixel centres with no anti-aliasing, edges off any patch grid (discs, a band at 30 degrees, "
             "a 12-pixel arc, under one 16-pixel patch). Each word's pixels are its mask; objects counts its separate connected parts; the "
             "probe is a pixel well inside (the first red disc for red). Shapes are painted in order over the blue "
             "ground and do not touch.")
    description = dict(about=about, width=WIDTH, height=HEIGHT, labels=["yellow", "green", "red", "blue"],
                       regions=regions, shapes=[{k: v for k, v in s.items() if k != "rgb"} for s in SHAPES])
    # One line per region and shape, as scene.json.
    lines = ",\n".join(f'  "{key}": ' + (json.dumps(value) if not isinstance(value, list) or key == "labels" else
                                           "[\n" + ",\n".join(f"    {json.dumps(v)}" for v in value) + "\n  ]")
                       for key, value in description.items())
    (images / "round_scene.json").write_text("{\n" + lines + "\n}\n")


def main():
    check_versions()
    model = build()
    directory = OUT / "sam-colours-fine"
    directory.mkdir(parents=True, exist_ok=True)
    SamImageProcessor(size={"longest_edge": SIZE}, pad_size={"height": SIZE, "width": SIZE},
                      mask_size={"longest_edge": SIZE}, mask_pad_size={"height": SIZE, "width": SIZE}
                      ).save_pretrained(directory)
    model.save_pretrained(directory)
    (directory / "README.md").write_text(
        "A tiny SamModel built by tools/build_colour_sam_fine.py (weights set by hand): a positive click\n"
        "picks the colour of the clicked pixel and the mask is every pixel of that colour, exact to the\n"
        "pixel for saturated colours (inputs up to 448 pixels, one mask pixel per image pixel). Box\n"
        "corners and negative clicks pick nothing. For tests only; its scene is\n"
        "tests/fixtures/images/round_scene.png.\n")
    write_scene()
    print(f"sam-colours-fine: {sum(p.numel() for p in model.parameters())} parameters")


if __name__ == "__main__":
    main()
