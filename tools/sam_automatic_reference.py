#!/usr/bin/env python3
"""Reference for wordmask's automatic mask generation (tests/native/parity_automatic.rs).

Runs transformers' `mask-generation` pipeline (Segment Anything's automatic mask generator:
a grid of one-point prompts, predicted-IoU and stability filters, box NMS; no crop layers) on
the random-weight `tests/fixtures/sam-tiny` checkpoint (made by tools/sam_fixtures.py) and
records, for one image:

- every candidate mask's predicted IoU and stability score, before any filter (the stability
  score from transformers' own `_compute_stability_score` over `post_process_masks`' logits);
- the masks the pipeline keeps, in its order (best predicted IoU first), with their scores,
  boxes and run-length encodings (transformers' `_mask_to_rle`, column-major as COCO's).

The thresholds are chosen from the candidates' own values so that every filter drops some
candidates and keeps some (random weights predict no IoU near SAM's 0.88), and written down
with the outputs.

    pip install -r tools/requirements.txt
    python3 tools/sam_automatic_reference.py     # writes tests/fixtures/sam-tiny/automatic.json

It also writes tests/fixtures/small_regions.json: segment-anything's own `remove_small_regions`
(the `min_mask_region_area` step of `SamAutomaticMaskGenerator`, segment-anything 1.0 with
OpenCV's `connectedComponentsWithStats`) on random masks with holes, islands and specks, for
several areas, both modes.
"""

import json

import numpy as np
import torch
from transformers import SamModel, SamProcessor, pipeline
from transformers.models.sam.image_processing_sam import _build_point_grid, _compute_stability_score

from make_fixtures import OUT, check_versions, synthetic_images

IMAGE = "shapes_50x90"
POINTS_PER_SIDE = 8
POINTS_PER_BATCH = 24  # not a divisor of 64: the last batch is short
OFFSET = 0.01  # the random decoder's logits are of order 0.05, not SAM's tens
NMS = 0.99  # the random masks nearly all span the image: at SAM's 0.7 one would be left


@torch.no_grad()
def candidates(model, processor, image):
    """Predicted IoU and stability score of every grid point's three masks."""
    w, h = image.size
    grid = _build_point_grid(POINTS_PER_SIDE) * torch.tensor([w, h])
    enc = processor(images=image, input_points=[[[p.tolist()] for p in grid]], return_tensors="pt")
    out = model(pixel_values=enc.pixel_values, input_points=enc.input_points, multimask_output=True)
    logits = processor.image_processor.post_process_masks(
        out.pred_masks, enc.original_sizes, enc.reshaped_input_sizes, binarize=False)[0]
    stability = _compute_stability_score(logits.flatten(0, 1), 0.0, OFFSET)
    return out.iou_scores[0].flatten(), stability


def small_regions():
    """segment-anything's `remove_small_regions` on seeded random masks."""
    from segment_anything.utils.amg import remove_small_regions

    rng = np.random.default_rng(7)
    cases = []
    for k in range(6):
        h, w = 30, 40
        y, x = np.mgrid[0:h, 0:w]
        mask = np.zeros((h, w), bool)
        for _ in range(1 + k % 3):  # blobs
            cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(4, 12)
            mask |= (y - cy) ** 2 + (x - cx) ** 2 < r * r
        mask ^= rng.random((h, w)) < 0.04  # specks: one-pixel islands and holes
        for area in (3, 12, 60):
            for mode in ("holes", "islands"):
                out, changed = remove_small_regions(mask, area, mode)
                cases.append(dict(width=w, height=h, area=area, mode=mode, changed=bool(changed),
                                  mask=["".join("1" if v else "0" for v in row) for row in mask],
                                  out=["".join("1" if v else "0" for v in row) for row in out]))
    (OUT / "small_regions.json").write_text(json.dumps(dict(cases=cases)) + "\n")
    print(f"small regions: {len(cases)} cases, {sum(c['changed'] for c in cases)} changed")


def main():
    check_versions()
    directory = OUT / "sam-tiny"
    model = SamModel.from_pretrained(directory).eval()
    processor = SamProcessor.from_pretrained(directory)
    image = synthetic_images()[IMAGE]
    iou, stability = candidates(model, processor, image)
    # Thresholds between the candidates' own values, so that each filter drops some and keeps
    # some (a threshold of 0 or less turns the IoU filter off).
    pred_iou = round(float(torch.quantile(iou[iou > 0], 0.33)), 3)
    passing = stability[iou > pred_iou]
    stable = round(float(torch.quantile(passing[~passing.isnan()], 0.33)), 3)
    generator = pipeline("mask-generation", model=model, image_processor=processor.image_processor, device="cpu")
    out = generator(image, points_per_batch=POINTS_PER_BATCH, points_per_crop=POINTS_PER_SIDE,
                    pred_iou_thresh=pred_iou, stability_score_thresh=stable, stability_score_offset=OFFSET,
                    crops_nms_thresh=NMS, output_rle_mask=True, output_bboxes_mask=True)
    survivors = int(((iou > pred_iou) & (stability > stable)).sum())
    kept = len(out["scores"])
    assert 0 < kept < survivors, f"NMS must drop some of the {survivors} survivors and keep some; kept {kept}"
    reference = dict(
        image=IMAGE, width=image.size[0], height=image.size[1],
        options=dict(pointsPerSide=POINTS_PER_SIDE, pointsPerBatch=POINTS_PER_BATCH, predIouThresh=pred_iou,
                     stabilityScoreThresh=stable, stabilityScoreOffset=OFFSET, boxNmsThresh=NMS),
        candidates=dict(iou=iou.tolist(), stability=[None if np.isnan(s) else s for s in stability.tolist()]),
        survivors=survivors,
        masks=[dict(score=float(s), box=[int(v) for v in b], counts=r["counts"])
               for s, b, r in zip(out["scores"], out["bounding_boxes"], out["rle_mask"])],
    )
    (directory / "automatic.json").write_text(json.dumps(reference) + "\n")
    print(f"sam-tiny automatic: {len(iou)} candidates, thresholds {pred_iou} / {stable}, "
          f"{survivors} survive the filters, {kept} after NMS")


if __name__ == "__main__":
    main()
    small_regions()
