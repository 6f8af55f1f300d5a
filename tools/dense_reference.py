"""PyTorch reference of wordmask's dense segmentation pipeline, written from the papers and
their code on top of transformers' CLIPModel (tools/make_fixtures.py calls it):

- last blocks: MaskCLIP (volgachen/MaskCLIP @ 245d31f8, backbones/vit.py), SCLIP
  (wangf3014/SCLIP @ b56bd301, clip/model.py custom_attn csa), ClearCLIP (mc-lan/ClearCLIP
  @ ad68a404, open_clip/transformer.py), NACLIP (sinahmr/NACLIP @ 0cac3a65, clip/model.py,
  Gaussian window built by convolving one-hot maps as there);
- windows, stitching and postprocessing as SCLIP/NACLIP's forward_slide and
  postprocess_result (mmsegmentation slide_inference placement);
- the papers' protocol where it differs from transformers (`segment(..., paper=True)` and
  `paper_labels`): the position table resampled at DINO's scale factor `(g + 0.1) / n` (NACLIP
  and SCLIP clip/model.py `interpolate_pos_encoding`), the long side rounded half up (mmcv
  `rescale_size`, behind mmsegmentation's `Resize(keep_ratio=True)`), and the threshold read
  on the synonyms' maximum before renormalising (NACLIP naclip.py, SCLIP clip_segmentor.py,
  `postprocess_result`).
"""

import math
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from transformers import CLIPImageProcessor

import text_templates


def templates(name):
    """The prompt templates of one `--templates` set, read from src/segment/text.rs (as wordmask
    embeds them; see tools/text_templates.py)."""
    return text_templates.templates(name)


def naclip_bias(h, w, std=5.0):
    """NACLIP's attention addition: a (2h-1)x(2w-1) Gaussian window convolved with one-hot maps."""
    ky = torch.arange(-(h - 1), h, dtype=torch.float32)
    kx = torch.arange(-(w - 1), w, dtype=torch.float32)
    window = torch.exp(-(ky[:, None] ** 2 + kx[None, :] ** 2) / (2 * std**2))
    one_hot = torch.eye(h * w).reshape(h * w, 1, h, w)
    omega = F.conv2d(one_hot, window[None, None], padding="same").reshape(h * w, h * w)
    bias = torch.zeros(h * w + 1, h * w + 1)
    bias[1:, 1:] = omega
    return bias


def last_block(method, layer, x, grid):
    if method == "vanilla":
        out = layer(x, None)
        return out[0] if isinstance(out, tuple) else out
    attn = layer.self_attn
    b, n, c = x.shape
    heads = attn.num_heads
    hd = c // heads
    scale = hd**-0.5
    y = layer.layer_norm1(x)

    def split(t):
        return t.view(b, n, heads, hd).transpose(1, 2)

    q, k, v = split(attn.q_proj(y)), split(attn.k_proj(y)), split(attn.v_proj(y))

    def weights(a, bb, bias=None):
        s = a @ bb.transpose(-1, -2) * scale
        if bias is not None:
            s = s + bias
        return s.softmax(-1)

    def mix(wts):
        return attn.out_proj((wts @ v).transpose(1, 2).reshape(b, n, c))

    def with_mlp(t):
        return t + layer.mlp(layer.layer_norm2(t))

    if method == "maskclip":
        return with_mlp(x + attn.out_proj(attn.v_proj(y)))
    if method == "sclip":
        return with_mlp(x + mix(weights(q, q) + weights(k, k)))
    if method == "clearclip":
        return mix(weights(q, q))
    if method == "naclip":
        return mix(weights(k, k, naclip_bias(*grid)))
    raise ValueError(method)


@torch.no_grad()
def name_embeddings(model, tokenizer, names, template_set):
    rows = []
    for name in names:
        prompts = [t.replace("{}", name) for t in templates(template_set)]
        batch = tokenizer(prompts, padding=True, truncation=True, max_length=77, return_tensors="pt")
        feats = model.get_text_features(**batch)
        feats = feats.pooler_output if hasattr(feats, "pooler_output") else feats
        feats = feats / feats.norm(dim=-1, keepdim=True)
        mean = feats.mean(0)
        rows.append(mean / mean.norm())
    return torch.stack(rows)


def _dilated_conv(x, kernels, dilations):
    """x [B, K, H, W]; kernels [P, 1, 3, 3] -> [B, K, P * len(dilations), H, W] (replicate padding)."""
    b, k, h, w = x.shape
    flat = x.reshape(b * k, 1, h, w)
    outs = [F.conv2d(F.pad(flat, [d] * 4, mode="replicate"), kernels, dilation=d) for d in dilations]
    return torch.cat(outs, 1).reshape(b, k, -1, h, w)


def _neighbour_kernels(centre):
    """The 8 neighbour taps of a 3x3 window; with `centre`, minus the centre (differences)."""
    kernels = torch.zeros(8, 1, 3, 3)
    taps = [(i, j) for i in range(3) for j in range(3) if (i, j) != (1, 1)]
    for n, (i, j) in enumerate(taps):
        kernels[n, 0, i, j] = -1.0 if centre else 1.0
        if centre:
            kernels[n, 0, 1, 1] = 1.0
    return kernels


def pamr(image, mask, iterations, dilations):
    """PAMR (Araslanov & Roth 2020) as in NACLIP's pamr.py: conv-based local affinities."""
    all_taps = torch.eye(9).reshape(9, 1, 3, 3)
    std = _dilated_conv(image, all_taps, dilations).std(2, keepdim=True)
    aff = -_dilated_conv(image, _neighbour_kernels(True), dilations).abs() / (1e-8 + 0.1 * std)
    aff = aff.mean(1, keepdim=True).softmax(2)
    for _ in range(iterations):
        mask = (_dilated_conv(mask, _neighbour_kernels(False), dilations) * aff).sum(2)
    return mask


def slide_windows(h, w, crop, stride):
    h_grids = max(h - crop + stride - 1, 0) // stride + 1
    w_grids = max(w - crop + stride - 1, 0) // stride + 1
    for hi in range(h_grids):
        for wi in range(w_grids):
            y1, x1 = hi * stride, wi * stride
            y2, x2 = min(y1 + crop, h), min(x1 + crop, w)
            yield max(y2 - crop, 0), y2, max(x2 - crop, 0), x2


def scale_factor_positions(table, grid, gh, gw):
    """The patch rows of a position table `[g*g, dim]` resampled for a `gh x gw` grid as DINO's
    `interpolate_pos_encoding` does (the dense-CLIP papers' clip/model.py): bicubic with the
    scale factors `(gh + 0.1) / sqrt(N)` and `(gw + 0.1) / sqrt(N)`, not a target size."""
    dim = table.shape[-1]
    n = math.sqrt(grid * grid)
    out = F.interpolate(
        table.reshape(1, grid, grid, dim).permute(0, 3, 1, 2),
        scale_factor=((gh + 0.1) / n, (gw + 0.1) / n),
        mode="bicubic",
        align_corners=False,
        recompute_scale_factor=False,
    )
    assert out.shape[-2:] == (gh, gw), out.shape
    return out.permute(0, 2, 3, 1).reshape(gh * gw, dim)


@contextmanager
def paper_positions(model):
    """transformers' CLIP with its position table resampled as the papers' code does (off the
    trained grid only, as there)."""
    embeddings = model.vision_model.embeddings
    original = embeddings.interpolate_pos_encoding

    def interpolate(tokens, height, width):
        table = embeddings.position_embedding.weight
        grid = int(round(math.sqrt(table.shape[0] - 1)))
        gh, gw = height // embeddings.patch_size, width // embeddings.patch_size
        if (gh, gw) == (grid, grid):
            return table.unsqueeze(0)
        patches = scale_factor_positions(table[1:], grid, gh, gw)
        return torch.cat([table[:1], patches]).unsqueeze(0)

    embeddings.interpolate_pos_encoding = interpolate
    try:
        yield
    finally:
        embeddings.interpolate_pos_encoding = original


def mmcv_size(width, height, short_side):
    """(width, height) after mmcv's `rescale_size` to a short side (no long-side cap reached):
    the scale factor `short / min(w, h)`, then `int(x * scale + 0.5)` per side."""
    scale = short_side / min(width, height)
    return int(width * scale + 0.5), int(height * scale + 0.5)


def paper_labels(probs_per_name, class_of_name, threshold):
    """Label map as NACLIP's and SCLIP's `postprocess_result`: synonyms merged by their maximum,
    argmax, and pixels whose merged maximum (not renormalised) is under the threshold left out.
    Labels: 0 = left out, c + 1 = class c. Also returns the merged maximum."""
    index = torch.tensor(class_of_name)
    classes = max(class_of_name) + 1
    merged = torch.stack([probs_per_name[index == c].max(0).values for c in range(classes)])
    top, best = merged.max(0)
    labels = best + 1
    labels[top < threshold] = 0
    return labels, top


@torch.no_grad()
def segment(model, image, names, class_of_name, method, short_side, slide, logit_scale, refine=None, paper=False, per_name=False):
    """Per-class probabilities [classes, H, W] at the image's own size (per name, before the
    synonyms are merged, with `per_name`). `paper`: the position table and the resize as the
    papers' code (see the module's header)."""
    if paper:
        width, height = mmcv_size(image.width, image.height, short_side)
        processor = CLIPImageProcessor(size={"height": height, "width": width}, do_center_crop=False)
        with paper_positions(model):
            return _segment(model, image, processor, names, class_of_name, method, slide, logit_scale, refine, per_name)
    processor = CLIPImageProcessor(size={"shortest_edge": short_side}, do_center_crop=False)
    return _segment(model, image, processor, names, class_of_name, method, slide, logit_scale, refine, per_name)


def _segment(model, image, processor, names, class_of_name, method, slide, logit_scale, refine, per_name):
    pixels = processor(images=image, return_tensors="pt").pixel_values
    h, w = pixels.shape[2:]
    patch = model.config.vision_config.patch_size
    windows = list(slide_windows(h, w, *slide)) if slide else [(0, h, 0, w)]
    preds = torch.zeros(1, names.shape[0], h, w)
    count = torch.zeros(1, 1, h, w)
    for y1, y2, x1, x2 in windows:
        crop = pixels[:, :, y1:y2, x1:x2]
        grid = (crop.shape[2] // patch, crop.shape[3] // patch)
        out = model.vision_model(pixel_values=crop, interpolate_pos_encoding=True, output_hidden_states=True)
        tokens = model.vision_model.post_layernorm(last_block(method, model.vision_model.encoder.layers[-1], out.hidden_states[-2], grid))
        feats = model.visual_projection(tokens[:, 1:])
        feats = feats / feats.norm(dim=-1, keepdim=True)
        logits = (feats[0] @ names.T).T.reshape(1, -1, *grid)
        logits = F.interpolate(logits, size=crop.shape[2:], mode="bilinear", align_corners=False)
        preds += F.pad(logits, (x1, w - x2, y1, h - y2))
        count[:, :, y1:y2, x1:x2] += 1
    logits = F.interpolate(preds / count, size=(image.height, image.width), mode="bilinear", align_corners=False)
    if refine:
        guide = F.interpolate(pixels, size=(image.height, image.width), mode="bilinear", align_corners=False)
        logits = pamr(guide, logits, *refine)
    probs = (logits * logit_scale).softmax(1)[0]
    if per_name:
        return probs
    classes = max(class_of_name) + 1
    index = torch.tensor(class_of_name)
    merged = torch.stack([probs[index == c].max(0).values for c in range(classes)])
    return merged / merged.sum(0)
