#!/usr/bin/env python3
"""Checks wordmask's exports with the libraries that read them (versions in requirements.txt).

    python tools/check_exports.py record           # tests/fixtures/exports/pycocotools.json
    python tools/check_exports.py check OUT_DIR    # round trips on a folder of exports

`record` builds the edge-case masks (an empty mask, one pixel, masks on each border, a ring with
an island in its hole, diagonal neighbours, a full image, a random blob with long runs, 2,048
classes) with numpy (seed 0) and writes each with pycocotools' own RLE string, `toBbox` and
`area`. The Rust test `exports::` reads the masks back, encodes them and must give the same
strings. The same test writes its exports of these cases into
`WORDMASK_EXPORTS_DIR` when that is set, in the layout of `wordmask segment --images`, for
`check`.

`check` takes a folder of exports (`segment --images ... --out OUT_DIR`, or the test's) and
checks, printing one line per check:
- COCO: pycocotools decodes each annotation's RLE (or rasterises its polygons) to exactly the
  object's pixels in voc/SegmentationObject (same ids as the image's own coco/<image>.json);
  each category's masks together are its pixels in voc/SegmentationClass; `bbox` and `area`
  are pycocotools' `toBbox` and `area`; `COCO.loadRes` takes coco_results.json and `COCOeval`
  (segm) scores it against coco.json at AP 1.0.
- YOLO-seg: each line's polygon filled by pixel centres with the even-odd rule, against the
  object's mask: IoU at least 0.98 for objects of at least MIN_AREA pixels; the same filled by
  shapely (`make_valid`), pycocotools (`frPyObjects`) and OpenCV (`fillPoly`, as ultralytics
  rasterises) is reported. With `--polygons`, COCO's polygons rasterised by pycocotools: IoU at
  least 0.98 for objects of at least MIN_AREA pixels.
- LabelMe: the fields LabelFile reads, and each object's shapes (by group_id) filled back the
  same way.
"""

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "exports" / "pycocotools.json"
# COCO's own line between small and medium objects (32 x 32 pixels): below it an outline is a
# few dozen pixels round, and the simplification's half pixel is a large share of it (blobs 12
# pixels across come back at about 0.975); the 0.98 is for objects of size.
MIN_AREA = 32 * 32
MIN_IOU = 0.98


def edge_cases():
    """(name, height, width, classes, [(class, mask)]) — masks are uint8 0/1, row-major."""
    rng = np.random.default_rng(0)
    cases = []
    cases.append(("empty", 5, 7, 2, [(0, np.zeros((5, 7), np.uint8))]))
    one = np.zeros((6, 9), np.uint8)
    one[2, 3] = 1
    cases.append(("one-pixel", 6, 9, 2, [(1, one)]))
    top = np.zeros((10, 12), np.uint8)
    top[0, :] = 1
    top[1, 2:5] = 1
    left = np.zeros((10, 12), np.uint8)
    left[3:, 0] = 1
    corner = np.zeros((10, 12), np.uint8)
    corner[9, 11] = 1
    corner[8, 10:] = 1
    cases.append(("border", 10, 12, 3, [(0, top), (1, left), (2, corner)]))
    ring = np.zeros((24, 30), np.uint8)
    ring[2:22, 3:27] = 1
    ring[6:18, 8:22] = 0
    ring[10:14, 13:17] = 1  # an island in the hole: the same object, a second part
    cases.append(("holes", 24, 30, 1, [(0, ring)]))
    diagonal = np.zeros((8, 8), np.uint8)
    diagonal[1:4, 1:4] = 1
    diagonal[4:7, 4:7] = 1
    cases.append(("diagonal", 8, 8, 1, [(0, diagonal)]))
    cases.append(("full", 4, 6, 1, [(0, np.ones((4, 6), np.uint8))]))
    noise = rng.random((40, 56))
    for _ in range(3):  # smooth, so the blob has long runs and large falling counts
        noise = (noise + np.roll(noise, 1, 0) + np.roll(noise, 1, 1) + np.roll(noise, -1, 0) + np.roll(noise, -1, 1)) / 5
    blob = (noise > 0.5).astype(np.uint8)
    big = np.zeros((40, 56), np.uint8)
    big[5:35, 4:50] = 1
    big[15:20, 20:30] = 0
    cases.append(("random", 40, 56, 3, [(0, blob), (2, big & (1 - blob))]))
    last = np.zeros((6, 9), np.uint8)
    last[4, 7:] = 1
    last[5, 8] = 1
    many = [(0, one.copy()), (1000, np.pad(np.ones((2, 3), np.uint8), ((1, 3), (4, 2)))), (2047, last)]
    cases.append(("2048-classes", 6, 9, 2048, many))
    return cases


def record():
    from pycocotools import mask as mask_utils

    from importlib.metadata import version

    out = {"about": "Edge-case masks (rows of 0/1, row-major) and pycocotools' encoding of each; "
                    "written by tools/check_exports.py record.",
           "pycocotools": version("pycocotools"),
           "cases": []}
    for name, h, w, classes, objects in edge_cases():
        entries = []
        for cls, m in objects:
            rle = mask_utils.encode(np.asfortranarray(m))
            entries.append({
                "class": cls,
                "rows": ["".join(map(str, row)) for row in m],
                "counts": rle["counts"].decode("ascii"),
                "bbox": [int(v) for v in mask_utils.toBbox(rle)],
                "area": int(mask_utils.area(rle)),
            })
        out["cases"].append({"name": name, "height": h, "width": w, "classes": classes, "objects": entries})
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    # One line a mask: small, and a re-recording shows which masks changed.
    lines = [json.dumps({k: v for k, v in out.items() if k != "cases"})[:-1] + ', "cases": [']
    for k, case in enumerate(out["cases"]):
        head = json.dumps({k2: v for k2, v in case.items() if k2 != "objects"})[:-1] + ', "objects": ['
        objects = ",\n    ".join(json.dumps(o) for o in case["objects"])
        lines.append(f"  {head}\n    {objects}]}}" + ("," if k + 1 < len(out["cases"]) else ""))
    lines.append("]}")
    FIXTURE.write_text("\n".join(lines) + "\n")
    print(f"wrote {FIXTURE.relative_to(ROOT)}: {sum(len(c['objects']) for c in out['cases'])} masks")


class Checks:
    def __init__(self):
        self.failed = 0

    def __call__(self, ok, what):
        print(("ok    " if ok else "FAIL  ") + what)
        self.failed += not ok


def read_png(path):
    from PIL import Image

    return np.array(Image.open(path))


def fill_shapely(points, h, w):
    import shapely
    from shapely.validation import make_valid

    if len(points) < 3:
        return np.zeros((h, w), bool)
    shape = make_valid(shapely.Polygon(points))
    ys, xs = np.mgrid[0:h, 0:w]
    return shapely.contains_xy(shape, xs + 0.5, ys + 0.5)


def fill_even_odd(points, h, w):
    """The outline filled by pixel centres with the even-odd rule (the rule of OpenCV's,
    Pillow's and pycocotools' scanline fills, in COCO's frame where pixel x covers [x, x+1]):
    what the zero-width bridges are made for."""
    points = np.asarray(points, float)
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    odd = np.zeros((h, w), bool)
    for a, b in zip(points, np.roll(points, -1, axis=0)):
        if a[1] == b[1]:
            continue
        odd ^= ((a[1] > ys) != (b[1] > ys)) & (xs < a[0] + (ys - a[1]) / (b[1] - a[1]) * (b[0] - a[0]))
    return odd


def fill_pycocotools(points, h, w):
    from pycocotools import mask as mask_utils

    return mask_utils.decode(mask_utils.frPyObjects([np.asarray(points, float).ravel().tolist()], h, w))[:, :, 0] > 0


def fill_opencv(points, h, w):
    """ultralytics' `polygon2mask`: the points rounded to pixels, filled with `fillPoly`, which
    counts a vertex at x as the pixel centred there (a frame half a pixel off COCO's, where pixel
    x covers [x, x+1]), so objects gain about a pixel on their right and bottom edges; reported,
    not checked."""
    import cv2

    canvas = np.zeros((h, w), np.uint8)
    cv2.fillPoly(canvas, [np.asarray(points, np.float64).round().astype(np.int32)], 1)
    return canvas.astype(bool)


def iou(a, b):
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else np.logical_and(a, b).sum() / union


def check(folder):
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    folder = Path(folder)
    ok = Checks()
    merged = json.loads((folder / "coco.json").read_text())
    images = {i["id"]: i for i in merged["images"]}
    fills = {"even-odd": fill_even_odd, "shapely": fill_shapely, "pycocotools": fill_pycocotools, "opencv": fill_opencv}
    ious = {f"{fmt}, {fill}": [] for fmt in ("yolo", "labelme") for fill in fills}
    ious["coco polygons, pycocotools"] = []
    for image in merged["images"]:
        stem = Path(image["file_name"]).stem
        h, w = image["height"], image["width"]
        own = json.loads((folder / "coco" / f"{stem}.json").read_text())
        objects = read_png(folder / "voc" / "SegmentationObject" / f"{stem}.png")
        classes = read_png(folder / "voc" / "SegmentationClass" / f"{stem}.png")
        masks = []
        exact = True
        for ann in own["annotations"]:
            seg = ann["segmentation"]
            rle = seg if isinstance(seg, dict) else mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
            decoded = mask_utils.decode(rle).astype(bool)
            want = objects == ann["id"]
            if isinstance(seg, dict):
                exact &= bool((decoded == want).all())
                exact &= [round(v) for v in mask_utils.toBbox(rle)] == ann["bbox"]
                exact &= int(mask_utils.area(rle)) == ann["area"]
            else:
                ious["coco polygons, pycocotools"].append((ann["area"], iou(decoded, want)))
            masks.append((ann["category_id"], want))
        ok(exact, f"{stem}: {len(own['annotations'])} annotations decode to their objects' pixels, bbox and area")
        union_ok = all(
            (np.logical_or.reduce([m for c, m in masks if c == cat["id"]] or [np.zeros((h, w), bool)]) == (classes == cat["id"])).all()
            for cat in own["categories"])
        ok(union_ok, f"{stem}: each category's masks are its pixels in SegmentationClass")
        yolo = (folder / "yolo" / "labels" / f"{stem}.txt").read_text().splitlines()
        ok(len(yolo) == len(masks), f"{stem}: one YOLO line an object ({len(yolo)})")
        classes_ok = True
        for line, (cat, want) in zip(yolo, masks):
            values = line.split()
            classes_ok &= int(values[0]) == cat - 1
            xy = np.array(values[1:], float).reshape(-1, 2) * [w, h]
            area = int(want.sum())
            for fill, rasterise in fills.items():
                ious[f"yolo, {fill}"].append((area, iou(rasterise(xy, h, w), want)))
        ok(classes_ok, f"{stem}: each YOLO line's class is its category id - 1")
        labelme = json.loads((folder / "labelme" / f"{stem}.json").read_text())
        fields = {"version", "flags", "shapes", "imagePath", "imageData", "imageHeight", "imageWidth"}
        ok(fields <= labelme.keys() and (labelme["imageHeight"], labelme["imageWidth"]) == (h, w),
           f"{stem}: LabelMe has LabelFile's fields and the image's size")
        for k, (cat, want) in enumerate(masks, start=1):
            shapes = [s for s in labelme["shapes"] if s["group_id"] == k]
            for fill, rasterise in fills.items():
                filled = np.logical_or.reduce([rasterise(s["points"], h, w) for s in shapes] or [np.zeros((h, w), bool)])
                ious[f"labelme, {fill}"].append((int(want.sum()), iou(filled, want)))

    gt = COCO(str(folder / "coco.json"))
    results = json.loads((folder / "coco_results.json").read_text())
    ok(isinstance(results, list) and len(results) == len(merged["annotations"]), "coco_results.json is a list, one entry an annotation")
    dt = gt.loadRes(str(folder / "coco_results.json"))
    ok(len(dt.getAnnIds()) == len(results), "COCO.loadRes takes the results file")
    if results:
        evaluation = COCOeval(gt, dt, "segm")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
        ok(abs(evaluation.stats[0] - 1.0) < 1e-9, f"COCOeval segm AP = {evaluation.stats[0]:.4f} against the same ground truth")
    for name, pairs in ious.items():
        if not pairs:
            continue
        sized = [v for a, v in pairs if a >= MIN_AREA]
        lowest = min(v for _, v in pairs)
        print(f"      {name}: {len(pairs)} objects, IoU min {lowest:.4f}; {len(sized)} of at least {MIN_AREA} px, "
              f"min {min(sized) if sized else float('nan'):.4f}")
        if "even-odd" in name or name.startswith("coco"):  # the others are reported: see their fills
            ok(all(v >= MIN_IOU for v in sized), f"{name}: IoU >= {MIN_IOU} for every object of at least {MIN_AREA} px")
    print(f"{len(images)} images; {ok.failed} checks failed")
    return ok.failed == 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["record"]:
        record()
    elif sys.argv[1:2] == ["check"] and len(sys.argv) == 3:
        sys.exit(0 if check(sys.argv[2]) else 1)
    else:
        sys.exit(__doc__)
