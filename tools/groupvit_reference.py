"""GroupViT zero-shot segmentation in PyTorch, on transformers' `GroupViTModel`: the reference
that wordmask's GroupViT engine is checked against (tools/make_fixtures.py groupvit).

- The tower is transformers' own modules; for inputs other than the trained size the position
  embeddings are resampled with the module's `interpolate_pos_encoding=True` (the model's
  `forward` does not expose it).
- Per window, the segmentation follows NVlabs/GroupViT @ 13b7861,
  `segmentation/evaluation/group_vit_seg.py` `GroupViTSegInference.encode_decode`: the stages'
  soft assignment maps multiplied, resized bilinearly to the window, one-hot by argmax; group
  affinities `softmax(top-5 masked) * softmax(all)` with the logit scale clamped at 100; the
  background channel where a pixel's best score is under `min(bg_thresh, max affinity)`.
- Windows and stitching as mmsegmentation's slide inference (the repo's `test_cfg`), then a
  bilinear resize to the image and the max over each class's synonyms.
"""

import torch
import torch.nn.functional as F
from transformers import CLIPImageProcessor
from transformers.models.groupvit.modeling_groupvit import get_grouping_from_attentions

from dense_reference import slide_windows

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize(x):
    return x / x.norm(dim=-1, keepdim=True)


@torch.no_grad()
def vision(model, pixels):
    """Final group tokens (after the last layer norm), pooled image features and the stages'
    soft assignment maps, at any input size."""
    vm = model.vision_model
    hidden = vm.embeddings(pixels, interpolate_pos_encoding=True)
    out = vm.encoder(hidden_states=hidden, output_hidden_states=False, output_attentions=True, return_dict=True)
    groups = vm.layernorm(out.last_hidden_state)
    return groups, groups.mean(dim=1), out.attentions


def project(model, x):
    """`visual_projection` on `[..., d]` (its batch norm wants 2-D input)."""
    shape = x.shape
    return model.visual_projection(x.reshape(-1, shape[-1])).reshape(*shape[:-1], -1)


@torch.no_grad()
def hf_segmentation(model, pixels, text_embeds):
    """transformers' `output_segmentation=True` computation at any input size:
    `[names, H, W]` logits, the grouping `[groups, H, W]` and the normalised group embeddings."""
    groups, pooled, attentions = vision(model, pixels)
    group_embeds = normalize(project(model, groups))[0]
    grouping = get_grouping_from_attentions(attentions, pixels.shape[2:])[0]
    scale = model.logit_scale.exp()
    per_group = (group_embeds @ text_embeds.T) * scale  # [groups, names]
    logits = (per_group.T @ grouping.reshape(grouping.shape[0], -1)) * scale
    image_embeds = normalize(project(model, pooled))
    return logits.reshape(-1, *grouping.shape[1:]), grouping, group_embeds, image_embeds


@torch.no_grad()
def window_scores(model, crop, text_embeds, bg_thresh, top_k=5):
    """GroupViTSegInference.encode_decode for one window: `[names (+1 background), h, w]`, the
    background channel last (the repo puts it first)."""
    groups, pooled, attentions = vision(model, crop)
    grouping = get_grouping_from_attentions(attentions, crop.shape[2:])[0]  # [G, h, w]
    onehot = F.one_hot(grouping.argmax(0), num_classes=grouping.shape[0]).to(grouping.dtype)  # [h, w, G]
    group_embeds = normalize(project(model, groups))[0]
    image_embed = normalize(project(model, pooled))[0]
    scale = torch.clamp(model.logit_scale.exp(), max=100)
    affinity = (group_embeds @ text_embeds.T) * scale
    pre = affinity.softmax(-1)
    avg = ((image_embed @ text_embeds.T) * scale).softmax(-1)
    keep = torch.zeros_like(avg, dtype=torch.bool)
    keep[avg.topk(k=min(top_k, text_embeds.shape[0])).indices] = True
    affinity = affinity.masked_fill(~keep, float("-inf")).softmax(-1) * pre
    scores = (onehot @ affinity).permute(2, 0, 1)  # [names, h, w]
    if bg_thresh is None:
        return scores
    thresh = min(bg_thresh, affinity.max().item())
    background = (scores.max(0).values < thresh).to(scores.dtype)
    return torch.cat([scores, background[None]])


def processor(short_side):
    return CLIPImageProcessor(
        size={"shortest_edge": short_side}, do_center_crop=False, image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD
    )


@torch.no_grad()
def segment(model, image, text_embeds, class_of_name, short_side, slide, bg_thresh, scoring="repository"):
    """Scores `[classes (+1 background), H, W]` at the image's own size. `scoring`:
    "repository" (GroupViTSegInference per window) or "transformers" (the
    `output_segmentation=True` logits per window, no background)."""
    pixels = processor(short_side)(images=image, return_tensors="pt").pixel_values
    h, w = pixels.shape[2:]
    windows = list(slide_windows(h, w, *slide)) if slide else [(0, h, 0, w)]
    rows = text_embeds.shape[0] + (bg_thresh is not None)
    preds = torch.zeros(1, rows, h, w)
    count = torch.zeros(1, 1, h, w)
    for y1, y2, x1, x2 in windows:
        crop = pixels[:, :, y1:y2, x1:x2]
        if scoring == "transformers":
            scores = hf_segmentation(model, crop, text_embeds)[0]
        else:
            scores = window_scores(model, crop, text_embeds, bg_thresh)
        preds += F.pad(scores[None], (x1, w - x2, y1, h - y2))
        count[:, :, y1:y2, x1:x2] += 1
    scores = F.interpolate(preds / count, size=(image.height, image.width), mode="bilinear", align_corners=False)[0]
    index = torch.tensor(class_of_name)
    merged = [scores[: len(class_of_name)][index == c].max(0).values for c in range(max(class_of_name) + 1)]
    if bg_thresh is not None:
        merged.append(scores[-1])
    return torch.stack(merged)
