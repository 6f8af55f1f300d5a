#!/usr/bin/env python3
"""A small synthetic segmentation dataset whose classes are colours, in the `folder` layout of
`wordmask train` and `wordmask eval` (tests/fixtures/colour-segmentation/):

    images/<stem>.png   RGB, rectangles of four colours painted over a base colour, edges on
                        the 16-pixel patch grid
    labels/<stem>.png   8-bit, value k = line k of classes.txt
    classes.txt         red, green, blue, yellow
    train.txt, val.txt  the stems of each split (val images are wider than one crop, so
                        evaluation slides)

With the hand-built colour CLIP (tests/fixtures/semantic-colours) as the frozen backbone, a
Fusioner head trained on the train split must learn to segment the val split: the end-to-end
training test. Seeded; running it again reproduces the files.

    python3 tools/make_colour_dataset.py
"""

import random
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "colour-segmentation"
SEED = 20261201
COLOURS = [("red", (255, 0, 0)), ("green", (0, 255, 0)), ("blue", (0, 0, 255)), ("yellow", (255, 255, 0))]
GRID = 16


def scene(rng, width, height):
    label = np.full((height, width), rng.randrange(len(COLOURS)), dtype=np.uint8)
    for _ in range(rng.randint(2, 5)):
        w = rng.randint(3, width // GRID // 2 + 2) * GRID
        h = rng.randint(3, height // GRID // 2 + 2) * GRID
        x = rng.randrange(0, width - w + 1, GRID)
        y = rng.randrange(0, height - h + 1, GRID)
        label[y:y + h, x:x + w] = rng.randrange(len(COLOURS))
    palette = np.array([rgb for _, rgb in COLOURS], dtype=np.uint8)
    return palette[label], label


def main():
    rng = random.Random(SEED)
    for sub in ("images", "labels"):
        (OUT / sub).mkdir(parents=True, exist_ok=True)
    splits = {"train": [(224, 224)] * 24, "val": [(320, 224), (224, 288), (224, 224), (352, 256)] * 2}
    for split, sizes in splits.items():
        stems = []
        for i, (w, h) in enumerate(sizes):
            stem = f"{split}{i:02d}"
            pixels, label = scene(rng, w, h)
            Image.fromarray(pixels).save(OUT / "images" / f"{stem}.png", optimize=True)
            Image.fromarray(label, mode="L").save(OUT / "labels" / f"{stem}.png", optimize=True)
            stems.append(stem)
        (OUT / f"{split}.txt").write_text("\n".join(stems) + "\n")
    (OUT / "classes.txt").write_text("".join(f"{name}\n" for name, _ in COLOURS))
    print(f"wrote {OUT}: {sum(len(s) for s in splits.values())} images")


if __name__ == "__main__":
    main()
