#!/usr/bin/env python3
"""The episode benchmarks' fixture (tests/fixtures/fss/) and its reference, from the Fusioner
repository's own code.

Fusioner (Ma et al., BMVC 2022; chaofanma/Fusioner at 01985ed) evaluates PASCAL-5i and COCO-20i
zero-shot on HSNet's split lists: `dataset/pascal.py` and `dataset/coco.py` make one episode per
(query image, class) entry of the fold's `val` list, `dataset/custom_dataset.py` turns the query's
label map into that class's binary mask (ignore where the label is 255), `test.py`
`run_one_batch` scores it with `utils/utils.py` `update_metric` (`get_preds`: sigmoid over 0.5)
and `utils/metric.py` `Metric` accumulates intersections and unions per class.

This script writes a small synthetic dataset laid out as the repository reads them (made here,
seeded; no file of either repository is copied) and runs the repository's code on it, unchanged,
with its training plumbing stubbed:

- `pascal/`: 24 images of 224-304 x 224-288 pixels, `VOCdevkit/VOC2012/JPEGImages/<id>.jpg` and
  `SegmentationClassAug/<id>.png` (values 1-20 as VOC's classes, 255 on some outlines, 0
  elsewhere), one to three rectangles on the 16-pixel grid; the first four classes are drawn in
  pure red, green, blue and yellow, and 16 images are painted whole (a colour class under the
  rectangles), as the colour Fusioner fixture's training images are, so that it segments them.
- `splits/pascal/val/fold{0,1,2,3}.txt`: `<id>__<class:02>` lines, shuffled (so file order is not
  sorted order), one repeated line, one class that is not in its image.
- `splits/coco/val/fold0.pkl`: the dict of class -> image names that HSNet's COCO pickles hold
  (every one of the 80 classes a key, the fold's with names, repeats inside a list), 1,2xx
  (name, class) pairs so that the repository's first 1,000 episodes are a strict subset.
- `classes.txt`: a class-name file (line k names value k) with the colour words for classes 1-4.
- `predictions/pascal-fold0/<id>__<class:02>.png`: a synthetic 0/1 prediction per episode.
- `expected/episodes-pascal-fold0.txt`, `expected/episodes-coco-fold0.txt`: each episode the
  repository builds, in its order, `<index> <query name> <class value>`.
- `expected/metric-pascal-fold0.json`: the repository's `Metric` over those predictions (mIoU,
  FB-IoU, and its intersection and union buffers).
- `expected/mosaic4-*.txt`: Mosaic-4 plans (`class:image` per quadrant, a mosaic a line) drawn by
  an implementation of the draw written here from docs/cli.md (the repository has none).

The repository's code runs from a copy of the commit (`git archive`, under a temporary folder,
never kept): `configs` parses this script's arguments for it (`--dataset_name`, `--fold`,
`--test_with_org_resolution`, `--device cpu`); `albumentations` is stubbed with the three
transforms the evaluation path applies (Normalize, ToFloat, ToTensorV2: the image's values do
not reach the metric); `model` (CLIP weights) is stubbed with a model whose `multi_scale_eval`
returns logits of +-10 from the episode's prediction file. The split files are read from
`dataset/splits/` under the working directory, as the repository does, so the script runs in a
folder holding the synthetic ones. COCO images are made in the temporary folder only (4x4 pixels
at the repository's own doubled path, `val2014/val2014/...`), so `__getitem__` runs whole there
too.

Pinned: Python 3, torch 2.15.0, numpy 2.4.6, pillow 13.0.0, einops 0.8.2 (tools/requirements.txt);
seed 41.

    python3 tools/fss_reference.py [--repo GIT_DIR]   # default: a mirror of chaofanma/Fusioner
"""

import argparse
import json
import os
import pickle
import random
import shutil
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
from PIL import Image

REVISION = "01985ed"
SEED = 41
HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "tests" / "fixtures" / "fss"
MIRROR = Path("/work/.mirror/chaofanma+Fusioner/repo")

# Colours of classes 1-4 are the colour fixture's words; the rest are distinct but unnamed.
COLOURS = {1: (255, 0, 0), 2: (0, 255, 0), 3: (0, 0, 255), 4: (255, 255, 0)}
NAMES = {1: "red", 2: "green", 3: "blue", 4: "yellow"}


def colour_of(c):
    if c in COLOURS:
        return COLOURS[c]
    r = random.Random(c)
    return (r.randrange(40, 200), r.randrange(40, 200), r.randrange(40, 200))


def make_pascal(rng, root, splits):
    """24 images with one to three class rectangles each; fold lists of (image, class) pairs."""
    img_dir = root / "VOCdevkit" / "VOC2012" / "JPEGImages"
    ann_dir = root / "SegmentationClassAug"
    img_dir.mkdir(parents=True)
    ann_dir.mkdir(parents=True)
    lines = {f: [] for f in range(4)}
    for i in range(24):
        name = f"2099_{rng.randrange(10**6):06d}"
        # As the colour fixture's training images are: a crop (224) or more each way, painted
        # whole, rectangles on the 16-pixel patch grid.
        w, h = 16 * rng.randrange(14, 20), 16 * rng.randrange(14, 19)
        img = np.full((h, w, 3), 128, np.uint8)
        ann = np.zeros((h, w), np.uint8)
        # Fold 0 (classes 1-5) gets most images, a colour class under the whole image, so its
        # episodes cover every class; the rest have VOC's background (0) and any class.
        if i < 16:
            base = rng.randrange(1, 5)
            img[:] = colour_of(base)
            ann[:] = base
            pool = list(range(1, 6))
        else:
            pool = list(range(1, 21))
        classes = rng.sample(pool, rng.randrange(1, 4))
        for c in classes:
            x0, y0 = 16 * rng.randrange(0, w // 16 - 4), 16 * rng.randrange(0, h // 16 - 4)
            x1, y1 = 16 * rng.randrange(x0 // 16 + 3, w // 16 + 1), 16 * rng.randrange(y0 // 16 + 3, h // 16 + 1)
            img[y0:y1, x0:x1] = colour_of(c)
            ann[y0:y1, x0:x1] = c
            if rng.random() < 0.5:  # VOC's outline, ignored by the metric
                ann[y0, x0:x1] = 255
        # The layout's JPEG, at its finest (no chroma subsampling), so colours stay flat.
        Image.fromarray(img).save(img_dir / f"{name}.jpg", quality=100, subsampling=0)
        Image.fromarray(ann).save(ann_dir / f"{name}.png")
        present = sorted(set(np.unique(ann).tolist()) - {0, 255})
        for c in present:
            lines[(c - 1) // 5].append(f"{name}__{c:02d}")
        if i == 3:  # a listed class the image does not hold: the repository skips its episode
            absent = next(c for c in range(1, 6) if c not in present)
            lines[0].append(f"{name}__{absent:02d}")
    lines[0].append(lines[0][2])  # a repeated line is a second episode
    for f, ls in lines.items():
        rng.shuffle(ls)
        d = splits / "pascal" / "val"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"fold{f}.txt").write_text("".join(l + "\n" for l in ls))


def make_coco(rng, splits):
    """The fold-0 pickle: 80 keys, the fold's classes (0, 4, ..., 76) with image names."""
    names = [f"val2014/COCO_val2014_{rng.randrange(10**12):012d}.jpg" for _ in range(700)]
    names += ["val2014/Aa.jpg", "val2014/AB.jpg"]  # code-point order: "AB" before "Aa"
    d = {k: [] for k in range(80)}
    for k in range(0, 80, 4):
        d[k] = rng.sample(names, 60)
        d[k] += rng.sample(d[k], 3)  # repeats inside a list: the repository keeps one
    d[0].append("val2014/Aa.jpg")
    d[4].append("val2014/AB.jpg")
    out = splits / "coco" / "val"
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "fold0.pkl", "wb") as f:
        pickle.dump(d, f, protocol=3)  # HSNet's pickles are protocol 3


def make_predictions(rng, root, splits, out):
    """A 0/1 mask per fold-0 episode: the truth with rectangles flipped."""
    out.mkdir(parents=True)
    ann_dir = root / "SegmentationClassAug"
    for line in (splits / "pascal" / "val" / "fold0.txt").read_text().split("\n")[:-1]:
        name, c = line.split("__")
        ann = np.array(Image.open(ann_dir / f"{name}.png"))
        pred = (ann == int(c)).astype(np.uint8)
        h, w = pred.shape
        for _ in range(rng.randrange(0, 3)):
            x0, y0 = rng.randrange(w), rng.randrange(h)
            x1, y1 = rng.randrange(x0, w + 1), rng.randrange(y0, h + 1)
            pred[y0:y1, x0:x1] ^= 1
        Image.fromarray(pred).save(out / f"{line}.png")


class SplitMix64:
    """wordmask's `nn::Rng` (SplitMix64; `unit` from the top 53 bits, `below` by scaling)."""

    MASK = (1 << 64) - 1

    def __init__(self, seed):
        self.state = seed & self.MASK

    def next(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & self.MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & self.MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & self.MASK
        return z ^ (z >> 31)

    def below(self, n):
        return int((self.next() >> 11) / float(1 << 53) * n) % max(n, 1)


def mosaic_plan(images_per_class, count, seed):
    """Mosaic-4's draw as docs/cli.md states it: four distinct classes among those with images,
    uniformly, then one image of each; written here from the description, so that the Rust
    plan is checked against an independent implementation."""
    rng = SplitMix64(seed)
    eligible = [c for c, n in enumerate(images_per_class) if n > 0]
    plan = []
    for _ in range(count):
        classes = []
        while len(classes) < 4:
            c = eligible[rng.below(len(eligible))]
            if c not in classes:
                classes.append(c)
        plan.append([(c, rng.below(images_per_class[c])) for c in classes])
    return plan


# FSS-1000's test split as HSNet has it (240 classes of 10 images), and uneven counts.
MOSAIC_CASES = [("fss1000-test", [10] * 240, 100, 0), ("uneven", [3, 0, 7, 1, 12, 5, 0, 9], 50, 41)]


def stub_albumentations():
    """The evaluation path's transforms: Normalize, ToFloat, ToTensorV2 (mask HWC -> CHW)."""
    import torch

    a = types.ModuleType("albumentations")

    class Transform:
        def __init__(self, *args, **kwargs):
            self.args, self.kwargs = args, kwargs

    for name in ["ColorJitter", "GaussNoise", "HorizontalFlip", "ElasticTransform", "ShiftScaleRotate",
                 "Resize", "RandomResizedCrop", "SmallestMaxSize", "RandomCrop", "Sequential", "OneOf"]:
        setattr(a, name, type(name, (Transform,), {}))

    class Compose(Transform):
        def __call__(self, **data):
            for t in self.args[0]:
                data = t(**data)
            return data

    class Normalize(Transform):
        def __call__(self, image, mask):
            mean, std = np.array(self.kwargs["mean"]), np.array(self.kwargs["std"])
            return {"image": ((image / 255.0 - mean) / std).astype(np.float32), "mask": mask}

    class ToFloat(Transform):
        def __call__(self, image, mask):
            return {"image": image, "mask": mask}

    class ToTensorV2(Transform):
        def __call__(self, image, mask):
            assert self.kwargs.get("transpose_mask")
            return {"image": torch.from_numpy(image.transpose(2, 0, 1)),
                    "mask": torch.from_numpy(mask.transpose(2, 0, 1))}

    a.Compose, a.Normalize, a.ToFloat = Compose, Normalize, ToFloat
    p = types.ModuleType("albumentations.pytorch")
    p.ToTensorV2 = ToTensorV2
    a.pytorch = p
    sys.modules["albumentations"] = a
    sys.modules["albumentations.pytorch"] = p


class PredictionModel:
    """`FullModel` stubbed: `multi_scale_eval` returns +-10 logits of the current prediction."""

    def __init__(self):
        self.current = None

    def eval(self):
        return self

    def multi_scale_eval(self, image, text):
        import torch
        assert image.shape[-2:] == self.current.shape, (image.shape, self.current.shape)
        return torch.where(torch.from_numpy(self.current) > 0, 10.0, -10.0)[None, None]


def run_repository(repo_src, work, benchmark, root, predictions):
    """The repository's episodes (and, with predictions, its metric) on the synthetic split."""
    sys.argv = ["test.py", "--dataset_name", benchmark, "--dataset_root", str(root), "--fold", "0",
                "--test_with_org_resolution", "--device", "cpu"]
    for m in [m for m in sys.modules if m.split(".")[0] in ("configs", "dataset", "utils", "model", "test")]:
        del sys.modules[m]
    stub_albumentations()
    model = types.ModuleType("model")
    model.FullModel, model.get_learner = PredictionModel, None
    sys.modules["model"] = model
    sys.path.insert(0, str(repo_src))
    os.chdir(work)
    try:
        import test as repo_test
        from dataset.augumenter import Augumenter
        from dataset.custom_dataset import CustomDataset, collect_fn
        from utils.metric import Metric

        ds = CustomDataset("val", Augumenter())
        episodes, metric, stub = [], Metric(), PredictionModel()
        for i in range(len(ds)):
            sample = ds[i]
            cls = int(sample["class_id"])
            episodes.append((i, sample["query_name"], cls))
            if predictions is not None:
                stub.current = np.array(Image.open(predictions / f"{sample['query_name']}__{cls:02d}.png"))
                repo_test.run_one_batch(stub, collect_fn([sample]), metric, is_train=False)
        result = None
        if predictions is not None:
            miou, fbiou = metric.compute_iou()
            result = {"miou": float(miou), "fb_iou": float(fbiou),
                      "intersection": metric.intersection_buf.tolist(), "union": metric.union_buf.tolist()}
        return episodes, result
    finally:
        sys.path.remove(str(repo_src))
        os.chdir(HERE.parent)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, default=MIRROR,
                        help="a checkout or bare git directory of chaofanma/Fusioner holding " + REVISION)
    args = parser.parse_args()
    rng = random.Random(SEED)
    if OUT.exists():
        shutil.rmtree(OUT)
    splits = OUT / "splits"
    make_pascal(rng, OUT / "pascal", splits)
    make_coco(rng, splits)
    names = ["background"] + [NAMES.get(c, f"class {c}") for c in range(1, 81)]
    (OUT / "classes.txt").write_text("".join(n + "\n" for n in names))
    make_predictions(rng, OUT / "pascal", splits, OUT / "predictions" / "pascal-fold0")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = tmp / "fusioner"
        src.mkdir()
        archive = subprocess.run(["git", "-C", str(args.repo), "archive", REVISION], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
        work = tmp / "work"
        shutil.copytree(splits, work / "dataset" / "splits")
        # `DatasetCOCO` reads its class names from the splits folder (81 lines, background first).
        shutil.copy(OUT / "classes.txt", work / "dataset" / "splits" / "coco" / "labels.txt")
        expected = OUT / "expected"
        expected.mkdir()

        pascal, metric = run_repository(src, work, "pascal", OUT / "pascal", OUT / "predictions" / "pascal-fold0")
        # COCO's images and masks at the repository's own paths (`val2014/` + the listed name).
        coco = tmp / "coco"
        with open(splits / "coco" / "val" / "fold0.pkl", "rb") as f:
            lists = pickle.load(f)
        for k, ns in lists.items():
            for n in ns:
                for path, value in [(coco / "val2014" / n, None), (coco / "annotation" / "val2014" / n, k + 1)]:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    if value is None:
                        Image.new("RGB", (4, 4), (128, 128, 128)).save(path)
                    else:
                        Image.fromarray(np.full((4, 4), value, np.uint8)).save(path.with_suffix(".png"))
        coco_eps, _ = run_repository(src, work, "coco", coco, None)

    for name, eps in [("pascal", pascal), ("coco", coco_eps)]:
        (expected / f"episodes-{name}-fold0.txt").write_text("".join(f"{i} {n} {c}\n" for i, n, c in eps))
    for name, counts, count, seed in MOSAIC_CASES:
        lines = [" ".join(f"{c}:{i}" for c, i in m) for m in mosaic_plan(counts, count, seed)]
        (expected / f"mosaic4-{name}-seed{seed}.txt").write_text("".join(l + "\n" for l in lines))
    metric["revision"] = REVISION
    metric["seed"] = SEED
    (expected / "metric-pascal-fold0.json").write_text(json.dumps(metric) + "\n")
    print(f"pascal: {len(pascal)} episodes, mIoU {metric['miou']:.6f}, FB-IoU {metric['fb_iou']:.6f}")
    print(f"coco: {len(coco_eps)} episodes")


if __name__ == "__main__":
    main()
