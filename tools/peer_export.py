#!/usr/bin/env python3
"""Shared inputs and native peer timings for wordmask's side-by-side speed benchmark.

One random-weight CLIP (or Segment Anything) checkpoint is run by wordmask (natively and in the browser), by PyTorch
and by onnxruntime natively, and by onnxruntime-web in the browser; the outputs are checked
equal and the times compared. This script builds that checkpoint, exports its image side to
ONNX, writes the input and PyTorch's output for it, and times PyTorch and onnxruntime on it.

    pip install -r tools/requirements.txt
    python3 tools/peer_export.py --preset tiny --out tests/fixtures/peer-tiny --iters 3
    python3 tools/peer_export.py --preset vit-b-16 --out /tmp/peer-b16 [--iters 10] [--threads 2] [--seed N]
    python3 tools/peer_export.py --preset sam-b --out /tmp/peer-sam-b --iters 3
    python3 tools/peer_export.py --time /tmp/peer-b16 [--iters 10] [--threads 2]

`--time DIR` builds nothing: it times PyTorch and onnxruntime again on DIR's checkpoint and
input and prints `{"torch": ..., "onnxruntime": ...}` as JSON (tools/peer_bench.mjs calls it
between its own native runs, so that both sides see the same minutes of a shared machine).

Presets (`CLIPConfig`, quick_gelu, image 224 and patch 16 unless said):
- `vit-b-16`: the shapes of openai/clip-vit-base-patch16 (vision 12 layers x 768, 12 heads,
  MLP 3072, projection 512; the default CLIP text tower).
- `small`: vision 4 layers x 256, 4 heads, MLP 1024, projection 256; text 2 layers x 256.
- `tiny`: image 32, patch 8, vision 2 layers x 32, 2 heads, MLP 64, projection 16; text 2 layers
  x 32. Saved as f16 (the 49408-token text table alone would be 6 MB in f32); the reference
  reloads it as f32, so every peer runs the same rounded weights.

Segment Anything presets (`SamConfig`, every parameter redrawn as tools/sam_fixtures.py does,
seeded by `--seed`; saved with `SamModel.save_pretrained` and the `SamProcessor` settings, so
wordmask loads the folder as it loads `facebook/sam-vit-base`); the network timed is the image
encoder (`vision_encoder`: patches, blocks with windowed and global attention, the neck):
- `sam-b`: the shapes of facebook/sam-vit-base (image 1024, patch 16, 12 layers x 768, 12 heads,
  MLP 3072, windows of 14, global attention in layers 2, 5, 8, 11, neck to 256 channels).
- `sam-tiny`: tools/sam_fixtures.py's `sam-tiny` (image 64, patch 8, 3 layers x 32, windows of 3,
  one global layer, neck to 16 channels).

Writes to DIR:
- `model/config.json`, `model/model.safetensors`: `CLIPModel.save_pretrained` (hub key layout).
- `vision.onnx`: `pixel_values` f32 [1,3,S,S] -> `image_embeds` f32 [1,P], the projected pooled
  CLS token, not normalised; static shapes, weights inside the file.
- `input.bin`: f32 little-endian [1,3,S,S] normalised pixels (smooth pattern plus seeded noise).
- `expected.bin`: f32 little-endian [P], PyTorch's `image_embeds` for `input.bin`.
- For Segment Anything, instead: `model/` also holds `preprocessor_config.json`; `vision.onnx`
  maps `pixel_values` f32 [1,3,S,S] to `image_embeddings` f32 [1,C,S/p,S/p]; `image.rgba` is
  the input as an S x S RGBA photo (what wordmask's `encode` takes; `image.png` the same for the
  CLI) and `input.bin` the
  processor's pixels of it; `expected.bin` PyTorch's image embeddings; `click.json` one click
  on it (x, y in pixels) with PyTorch's predicted IoU of the best of its three masks and that
  mask's area, and `mask.bin` that mask at S x S, one byte a pixel (the browser checks
  wordmask's answer to the same click against them: its `encode` returns no embeddings);
  `click.onnx` the click itself (`image_embeddings`, `input_points` [1,1,1,2] in input pixels,
  `input_labels` -> `iou_scores` [3] and `mask` u8 [S,S]: the prompt encoder and mask decoder,
  the best of three masks upsampled and thresholded), exported with the TorchScript exporter and
  checked against the processor's answer; `peer.json` then also holds the click and the
  `torch_click` and `onnxruntime_click` timings (as does `--time`'s JSON).
- `peer.json`: `model` ("clip" or "sam"), the shapes, versions, exporter, PyTorch and
  onnxruntime timings (first run, then median / p10 / p90 over `--iters` runs) and the
  onnxruntime-vs-PyTorch agreement.

Time on an otherwise idle machine. Versions are pinned in tools/requirements.txt; seeds are fixed.
"""

import argparse
import json
import os
import platform
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import CLIPConfig, CLIPModel, SamModel

import sam_fixtures
from make_fixtures import SEED, check_versions

OPSET = 18

PRESETS = {
    "tiny": dict(
        image_size=32, patch_size=8, projection_dim=16, dtype="f16",
        vision=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64),
        text=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64),
    ),
    "small": dict(
        image_size=224, patch_size=16, projection_dim=256, dtype="f32",
        vision=dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024),
        text=dict(hidden_size=256, num_hidden_layers=2, num_attention_heads=4, intermediate_size=1024),
    ),
    "vit-b-16": dict(
        image_size=224, patch_size=16, projection_dim=512, dtype="f32",
        vision=dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
        text=dict(),  # CLIPTextConfig's defaults: 12 layers x 512, 8 heads, MLP 2048
    ),
}

# Segment Anything: `sam_fixtures.build`'s specs (vision, prompt encoder, mask decoder configs).
SAM_PRESETS = {
    "sam-b": dict(vision=dict(), prompt=dict(), decoder=dict(), longest_edge=1024),
    "sam-tiny": {k: v for k, v in sam_fixtures.MODELS["sam-tiny"].items()
                 if k in ("vision", "prompt", "decoder", "longest_edge")},
}
# The click of the browser's check, as fractions of the image's side.
CLICK = (0.3, 0.4)


class ImageSide(torch.nn.Module):
    """`visual_projection(post_layernorm(CLS))`: CLIP's image embedding before normalisation."""

    def __init__(self, model):
        super().__init__()
        self.vision_model = model.vision_model
        self.visual_projection = model.visual_projection

    def forward(self, pixel_values):
        pooled = self.vision_model(pixel_values=pixel_values).pooler_output
        return self.visual_projection(pooled)


class SamEncoder(torch.nn.Module):
    """Segment Anything's image encoder: pixels to the image embeddings the decoder reads."""

    def __init__(self, model):
        super().__init__()
        self.vision_encoder = model.vision_encoder

    def forward(self, pixel_values):
        return self.vision_encoder(pixel_values=pixel_values)[0]


class SamClick(torch.nn.Module):
    """One click on an encoded image: the prompt encoder and the mask decoder (three masks, as
    for a single point), the best-scored mask upsampled to the S x S image and thresholded at 0
    (what `post_process_masks` gives for a photo of the input size); returns the three predicted
    IoUs and that mask."""

    def __init__(self, model, size):
        super().__init__()
        self.model = model
        self.size = size

    def forward(self, image_embeddings, input_points, input_labels):
        out = self.model(image_embeddings=image_embeddings, input_points=input_points, input_labels=input_labels,
                         multimask_output=True)
        scores = out.iou_scores[0, 0]
        best = out.pred_masks[0, 0].index_select(0, scores.argmax().reshape(1))[None]
        mask = torch.nn.functional.interpolate(best, (self.size, self.size), mode="bilinear", align_corners=False)
        return scores, (mask[0, 0] > 0).to(torch.uint8)


def build(preset, spec, seed):
    config = CLIPConfig(
        text_config={**spec["text"], "vocab_size": 49408, "max_position_embeddings": 77, "hidden_act": "quick_gelu"},
        vision_config={**spec["vision"], "image_size": spec["image_size"], "patch_size": spec["patch_size"],
                       "hidden_act": "quick_gelu"},
        projection_dim=spec["projection_dim"],
    )
    torch.manual_seed(seed + sum(map(ord, preset)))
    model = CLIPModel(config).eval()
    # Draw every parameter afresh at a scale that keeps activations of order 1: matrices and the
    # patch convolution at 1/sqrt(fan-in), layer norms near 1, biases small, embeddings ~0.5.
    with torch.no_grad():
        for key, p in model.named_parameters():
            if key == "logit_scale":
                p.fill_(2.0)
            elif "norm" in key and key.endswith("weight"):
                p.copy_(1 + torch.randn_like(p) * 0.1)
            elif key.endswith("bias") or "norm" in key:
                p.copy_(torch.randn_like(p) * 0.1)
            elif "embedding" in key:  # class, patch-position, token and text-position tables
                if key.endswith("patch_embedding.weight"):
                    p.copy_(torch.randn_like(p) / p[0].numel() ** 0.5)
                else:
                    p.copy_(torch.randn_like(p) * 0.5)
            else:
                p.copy_(torch.randn_like(p) / p[0].numel() ** 0.5)
    return model


def save(model, spec, directory):
    """Saves as the hub does and reloads in f32, so the reference runs exactly the saved weights."""
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    (model.half() if spec["dtype"] == "f16" else model).save_pretrained(directory)
    return CLIPModel.from_pretrained(directory, dtype=torch.float32).eval()


def pixels(size, seed):
    """Normalised pixels [1,3,S,S], roughly N(0,1): a smooth per-channel pattern plus noise."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64) / size
    r = np.hypot(x - 0.4, y - 0.55)
    pattern = np.stack([
        np.sin(2 * np.pi * (1.5 * x + 0.5 * y)),
        np.cos(2 * np.pi * 1.2 * (x - y)),
        np.sin(2 * np.pi * 3 * r),
    ])
    noise = np.random.default_rng(seed).standard_normal(pattern.shape)
    return (1.2 * pattern + 0.5 * noise)[None].astype(np.float32)


def export(side, example, path, output="image_embeds"):
    """ONNX of the image side with PyTorch's dynamo exporter, else the TorchScript one."""
    kwargs = dict(input_names=["pixel_values"], output_names=[output], opset_version=OPSET,
                  external_data=False)
    try:
        torch.onnx.export(side, (example,), str(path), dynamo=True, verbose=False, **kwargs)
        exporter = "dynamo"
    except Exception as err:  # noqa: BLE001 - fall back and say so
        print(f"dynamo exporter failed ({type(err).__name__}: {err}); using the TorchScript exporter")
        torch.onnx.export(side, (example,), str(path), dynamo=False, **kwargs)
        exporter = "torchscript"
    import onnx

    # The exporter annotates every node with its Python stack trace and module path; drop them
    # (they name local files and double the size of a small model).
    graph = onnx.load(str(path))
    for entry in [*graph.graph.node, *graph.graph.value_info]:
        del entry.metadata_props[:]
    for node in graph.graph.node:
        node.doc_string = ""
    onnx.save(graph, str(path))
    onnx.checker.check_model(graph)
    for value, name in ((graph.graph.input, "pixel_values"), (graph.graph.output, output)):
        assert [v.name for v in value] == [name], [v.name for v in value]
        dims = value[0].type.tensor_type.shape.dim
        assert all(d.HasField("dim_value") for d in dims), f"{name} has a dynamic dimension"
    return exporter


def stats(first, runs):
    p10, median, p90 = np.percentile(np.array(runs) * 1e3, [10, 50, 90])
    return {"first_ms": round(first * 1e3, 3), "median_ms": round(float(median), 3),
            "p10_ms": round(float(p10), 3), "p90_ms": round(float(p90), 3)}


def time_torch(side, x, iters, threads):
    torch.set_num_threads(threads)
    with torch.inference_mode():
        start = time.perf_counter()
        out = side(x.clone())
        first = time.perf_counter() - start
        runs = []
        for _ in range(iters):
            fresh = x.clone()
            start = time.perf_counter()
            side(fresh)
            runs.append(time.perf_counter() - start)
    return stats(first, runs), out[0].numpy()


def time_onnxruntime(path, x, iters, threads, output="image_embeds"):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    start = time.perf_counter()
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    out = session.run([output], {"pixel_values": x.copy()})[0]
    first = time.perf_counter() - start
    runs = []
    for _ in range(iters):
        fresh = x.copy()
        start = time.perf_counter()
        session.run([output], {"pixel_values": fresh})
        runs.append(time.perf_counter() - start)
    return {**stats(first, runs), "threads": threads}, out[0]


def cpu_busy(seconds=1.0):
    """Fraction of all CPUs busy over `seconds` (Linux), to flag timings taken on a loaded machine."""
    def sample():
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(fields), fields[3] + fields[4]  # total, idle + iowait

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return round(1 - (idle1 - idle0) / max(total1 - total0, 1), 3)


def machine():
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.platform()}, {cpu}"


def click_inputs(click, embeddings):
    """The click's inputs, as `SamProcessor` makes them for a photo of the input size."""
    points = np.array([[[[click["x"], click["y"]]]]], dtype=np.float32)
    return {"image_embeddings": embeddings, "input_points": points, "input_labels": np.ones((1, 1, 1), np.int64)}


def time_click(model, size, inputs, path, iters, threads):
    """PyTorch and onnxruntime on the click, `iters` clicks each after one warm-up."""
    import onnxruntime as ort

    click = SamClick(model, size).eval()
    torch.set_num_threads(threads)
    tensors = {k: torch.from_numpy(v) for k, v in inputs.items()}
    runs = []
    with torch.inference_mode():
        start = time.perf_counter()
        torch_out = click(**tensors)
        first = time.perf_counter() - start
        for _ in range(iters):
            start = time.perf_counter()
            click(**tensors)
            runs.append(time.perf_counter() - start)
    torch_times = stats(first, runs)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    start = time.perf_counter()
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    ort_out = session.run(None, inputs)
    first = time.perf_counter() - start
    runs = []
    for _ in range(iters):
        start = time.perf_counter()
        session.run(None, inputs)
        runs.append(time.perf_counter() - start)
    return torch_times, {**stats(first, runs), "threads": threads}, [t.numpy() for t in torch_out], ort_out


def time_again(directory, iters, threads):
    """PyTorch and onnxruntime timed on an earlier export, as JSON on stdout."""
    peer = json.loads((directory / "peer.json").read_text())
    sam = peer.get("model") == "sam"
    model = (SamModel if sam else CLIPModel).from_pretrained(directory / "model", dtype=torch.float32).eval()
    size = peer["image_size"]
    x = np.fromfile(directory / "input.bin", dtype="<f4").reshape(1, 3, size, size)
    side = (SamEncoder if sam else ImageSide)(model).eval()
    torch_times, _ = time_torch(side, torch.from_numpy(x.copy()), iters, threads)
    ort_times, _ = time_onnxruntime(directory / "vision.onnx", x, iters, threads,
                                    "image_embeddings" if sam else "image_embeds")
    clicks = {}
    if sam and (directory / "click.onnx").exists():
        vision = model.config.vision_config
        grid = size // vision.patch_size
        embeddings = np.fromfile(directory / "expected.bin", dtype="<f4").reshape(1, vision.output_channels, grid, grid)
        torch_click, ort_click, _, _ = time_click(model, size, click_inputs(peer["click"], embeddings),
                                                  directory / "click.onnx", iters, threads)
        clicks = {"torch_click": torch_click, "onnxruntime_click": ort_click}
    print(json.dumps({"torch": torch_times, "onnxruntime": ort_times, **clicks, "threads": threads}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=[*PRESETS, *SAM_PRESETS])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--time", type=Path, metavar="DIR", help="only time the peers on DIR's export")
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    check_versions()
    if args.time:
        return time_again(args.time, args.iters, args.threads)
    if not (args.preset and args.out):
        parser.error("--preset and --out are needed (or --time DIR)")
    # The export replaces what an earlier one wrote there (its model/ folder first of all), so a
    # folder of anything else is refused before any work.
    out = args.out
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "peer.json").exists())):
        parser.error(f"--out {out} holds something other than an earlier export (no peer.json there), "
                     "and it would be overwritten: name a new or empty folder")
    if args.preset in SAM_PRESETS:
        return export_sam(args)
    spec = PRESETS[args.preset]
    out = args.out
    model = save(build(args.preset, spec, args.seed), spec, out / "model")
    side = ImageSide(model).eval()
    size = spec["image_size"]
    x = pixels(size, args.seed)
    (out / "input.bin").write_bytes(x.astype("<f4").tobytes())

    with torch.no_grad():
        exporter = export(side, torch.from_numpy(x), out / "vision.onnx")

    timed, expected = time_encoder(side, x, out, args)
    vision = model.config.vision_config
    peer = {
        "model": "clip",
        "preset": args.preset,
        "image_size": size,
        "projection_dim": spec["projection_dim"],
        "vision": {"hidden": vision.hidden_size, "layers": vision.num_hidden_layers,
                   "heads": vision.num_attention_heads, "mlp": vision.intermediate_size, "patch": vision.patch_size},
    }
    write_peer(args, out, peer, exporter, spec["dtype"], timed, expected)


def time_encoder(side, x, out, args, output="image_embeds"):
    """PyTorch (`side`) and onnxruntime (out/vision.onnx) timed on the pixels `x`, after a warning
    if the CPUs were busy; PyTorch's output written as out/expected.bin. -> the run's timings,
    agreement and load (for `write_peer`) and PyTorch's output."""
    busy = cpu_busy()
    if busy is not None and busy > 0.2:
        print(f"warning: the CPUs were {busy:.0%} busy before timing; the numbers are not from an idle machine")
    torch_times, expected = time_torch(side, torch.from_numpy(x), args.iters, args.threads)
    ort_times, got = time_onnxruntime(out / "vision.onnx", x, args.iters, args.threads, output)
    (out / "expected.bin").write_bytes(expected.astype("<f4").tobytes())
    timed = {"torch": torch_times, "onnxruntime": ort_times, "agreement": cosine(got, expected), "busy": busy}
    return timed, expected


def write_peer(args, out, model, exporter, weights, timed, expected, extra=None):
    """out/peer.json: the `model`'s description, the libraries, the run's settings, `timed`'s
    timings and agreement (`time_encoder`), `extra` rows and the machine; then the summary."""
    import onnx
    import onnxruntime

    peer = {
        **model,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__},
        "exporter": exporter,
        "opset": OPSET,
        "weights": weights,
        "seed": args.seed,
        "threads": args.threads,
        "iters": args.iters,
        "torch": timed["torch"],
        "onnxruntime": timed["onnxruntime"],
        **(extra or {}),
        "agreement": {"onnxruntime_vs_torch": timed["agreement"]},
        "machine": machine(),
        "cpu_count": os.cpu_count(),
        "cpu_busy_before": timed["busy"],
    }
    (out / "peer.json").write_text(json.dumps(peer, indent=1) + "\n")
    report(args, out, exporter, timed["torch"], timed["onnxruntime"], timed["agreement"], expected)


def report(args, out, exporter, torch_times, ort_times, agreement, expected):
    total = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"{args.preset}: {out} ({total / 1e6:.2f} MB), exporter {exporter}, opset {OPSET}, {args.threads} threads")
    print(f"  torch        median {torch_times['median_ms']:.2f} ms  (first {torch_times['first_ms']:.1f} ms)")
    print(f"  onnxruntime  median {ort_times['median_ms']:.2f} ms  (first incl. session {ort_times['first_ms']:.1f} ms)")
    print(f"  agreement    cosine {agreement['cosine']:.7f}, max |diff| {agreement['max_abs']:.2e}"
          f"  (|expected| max {np.abs(expected).max():.2f})")


def photo(size, seed):
    """An S x S RGB photo (uint8): `pixels`' pattern and noise mapped to 0..255."""
    x = pixels(size, seed)[0]
    return np.clip(128 + 50 * x, 0, 255).round().astype(np.uint8).transpose(1, 2, 0)


def cosine(a, b):
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return {"cosine": float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))), "max_abs": float(np.abs(a - b).max())}


def export_sam(args):
    """The Segment Anything preset: checkpoint, encoder ONNX, photo, pixels, embeddings, click."""
    from PIL import Image

    spec = SAM_PRESETS[args.preset]
    out = args.out
    if out.exists():
        shutil.rmtree(out)
    (out / "model").mkdir(parents=True)
    model = sam_fixtures.build(args.preset, spec, args.seed)
    model.save_pretrained(out / "model")
    processor = sam_fixtures.processor(spec)
    processor.image_processor.save_pretrained(out / "model")
    model = SamModel.from_pretrained(out / "model", dtype=torch.float32).eval()
    size = spec["longest_edge"]
    if model.config.vision_config.image_size != size:
        raise SystemExit(f"{args.preset}: the processor's edge {size} is not the encoder's input size")

    rgb = photo(size, args.seed)
    rgba = np.concatenate([rgb, np.full((size, size, 1), 255, np.uint8)], axis=2)
    (out / "image.rgba").write_bytes(rgba.tobytes())
    image = Image.fromarray(rgb)
    image.save(out / "image.png")  # the same photo, for `wordmask sam --image`
    x = processor(images=image, return_tensors="np").pixel_values.astype(np.float32)
    assert x.shape == (1, 3, size, size), x.shape
    (out / "input.bin").write_bytes(x.astype("<f4").tobytes())

    side = SamEncoder(model).eval()
    with torch.no_grad():
        exporter = export(side, torch.from_numpy(x), out / "vision.onnx", "image_embeddings")

    timed, expected = time_encoder(side, x, out, args, "image_embeddings")

    # One click, multimask as Segment Anything answers a single point: the best-scored mask at
    # the image's size, thresholded at 0 (`post_process_masks`), as wordmask's `prompt` gives it.
    point = [round(CLICK[0] * size, 1), round(CLICK[1] * size, 1)]
    with torch.no_grad():
        enc = processor(images=image, input_points=[[[point]]], input_labels=[[[1]]], return_tensors="pt")
        answer = model(image_embeddings=torch.from_numpy(expected[None]), input_points=enc.input_points,
                       input_labels=enc.input_labels,
                       multimask_output=True)
        masks = processor.image_processor.post_process_masks(
            answer.pred_masks, enc.original_sizes, enc.reshaped_input_sizes)[0][0]
    scores = answer.iou_scores[0, 0]
    best = int(scores.argmax())
    mask = masks[best].numpy().astype(np.uint8)
    (out / "mask.bin").write_bytes(mask.tobytes())
    click = {"x": point[0], "y": point[1], "iou_scores": [float(v) for v in scores], "best": best,
             "iou": float(scores[best]), "area": int(mask.sum())}
    (out / "click.json").write_text(json.dumps(click, indent=1) + "\n")

    # The click as a network of its own, for its peers: ONNX of `SamClick`, checked against the
    # processor's answer above, then timed.
    inputs = click_inputs(click, expected[None])
    assert np.allclose(inputs["input_points"], enc.input_points.numpy()), (inputs["input_points"], enc.input_points)
    with torch.no_grad():
        torch.onnx.export(SamClick(model, size).eval(), tuple(torch.from_numpy(v) for v in inputs.values()),
                          str(out / "click.onnx"), input_names=list(inputs), output_names=["iou_scores", "mask"],
                          opset_version=OPSET, dynamo=False)
    torch_click, ort_click, torch_answer, ort_answer = time_click(model, size, inputs, out / "click.onnx",
                                                                  args.iters, args.threads)
    for name, (got_scores, got_mask) in (("torch", torch_answer), ("onnxruntime", ort_answer)):
        both, either = (got_mask & mask).sum(), (got_mask | mask).sum()
        if not (np.allclose(got_scores, scores.numpy(), atol=1e-4) and both >= 0.99 * max(either, 1)):
            raise SystemExit(f"{name}'s click.onnx answer differs from the processor's: IoUs {got_scores}, "
                             f"mask IoU {both / max(either, 1):.4f}")

    vision = model.config.vision_config
    peer = {
        "model": "sam",
        "preset": args.preset,
        "image_size": size,
        "vision": {"hidden": vision.hidden_size, "layers": vision.num_hidden_layers,
                   "heads": vision.num_attention_heads, "mlp": vision.mlp_dim, "patch": vision.patch_size,
                   "window": vision.window_size, "global": list(vision.global_attn_indexes),
                   "neck": vision.output_channels},
    }
    write_peer(args, out, peer, exporter, "f32", timed, expected,
               {"torch_click": torch_click, "onnxruntime_click": ort_click, "click": click})
    print(f"  click        ({point[0]}, {point[1]}): IoU {click['iou']:.4f}, area {click['area']} px; torch median "
          f"{torch_click['median_ms']:.2f} ms, onnxruntime {ort_click['median_ms']:.2f} ms")


if __name__ == "__main__":
    main()
