#!/usr/bin/env python3
"""Reads `wordmask sam --boxes` output back with pycocotools (version in requirements.txt).

    python tools/check_sam_results.py GROUND_TRUTH.json RESULTS.json [--report REPORT.json]

`COCO.loadRes` takes the results file and `COCOeval(iouType='segm')` scores it against the
ground truth (the Open-Vocabulary SAM paper's mask AP). With `--report` (the `--report` file of
the same run, whose boxes were GROUND_TRUTH's annotations), each instance's IoU is computed again
by pycocotools — `annToRLE` for the ground truth (polygons rasterised by `frPyObjects`), the
result's RLE decoded, `maskUtils.iou` — and compared with the report's (the report divides by
`union + 1e-8`, as the paper's repository does). The results are in the order of the
annotations, crowds left out, so the k-th result is the k-th such annotation's.

The last line printed is JSON: {"ap", "ap50", "ap75", "results", "instances_checked",
"max_iou_difference"}; the native test `sam_boxes::` reads it.
"""

import argparse
import contextlib
import io
import json

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ground_truth")
    parser.add_argument("results")
    parser.add_argument("--report")
    args = parser.parse_args()

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(args.ground_truth)
        with open(args.results) as f:
            results = json.load(f)
        dt = gt.loadRes(args.results)
        evaluation = COCOeval(gt, dt, iouType="segm")
        evaluation.evaluate()
        evaluation.accumulate()
    evaluation.summarize()
    ap, ap50, ap75 = (float(v) for v in evaluation.stats[:3])

    checked, worst = 0, 0.0
    if args.report:
        with open(args.report) as f:
            report = json.load(f)
        with open(args.ground_truth) as f:
            annotations = [a for a in json.load(f)["annotations"] if not a.get("iscrowd", 0)]
        assert len(annotations) == len(results), (len(annotations), len(results))
        measured = {i["annotation_id"]: i for i in report["instances"]}
        for annotation, result in zip(annotations, results):
            assert result["image_id"] == annotation["image_id"], (result, annotation["id"])
            instance = measured.get(annotation["id"])
            if instance is None or annotation.get("segmentation") is None:
                continue
            truth = gt.annToRLE(gt.anns[annotation["id"]])
            area_union = mask_utils.area(mask_utils.merge([truth, result["segmentation"]]))
            iou = float(mask_utils.iou([result["segmentation"]], [truth], [0])[0][0]) if area_union else 0.0
            worst = max(worst, abs(iou - instance["iou"]))
            decoded = mask_utils.decode(result["segmentation"])
            assert int(decoded.sum()) == instance["area"], (annotation["id"], int(decoded.sum()), instance["area"])
            checked += 1
        assert checked == len(report["instances"]), (checked, len(report["instances"]))
    print(json.dumps({
        "ap": ap, "ap50": ap50, "ap75": ap75, "results": len(results),
        "instances_checked": checked, "max_iou_difference": worst,
    }))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
