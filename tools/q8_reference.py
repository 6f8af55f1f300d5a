#!/usr/bin/env python3
"""Reference for int8 weights: a checkpoint quantised by optimum-quanto, the way its users do it
(`quantize(model, weights=qint8)`, `freeze(model)`, the state dict saved with safetensors), and
what quanto's own model gives on it (tests/native/q8.rs reads both).

It quantises the random-weight `clip-p16-deep` fixture (12 vision blocks, so most of its
weights are linear layers) and writes `tests/fixtures/clip-q8-quanto/`:

- `model.safetensors`: quanto's state dict as saved (`<layer>.weight._data` int8,
  `<layer>.weight._scale` f32 `[out, 1]`, the activation scales `input_scale`/`output_scale`
  quanto keeps for every quantised layer, everything else f32), with `config.json`;
- `reference.safetensors`: the quantised model's text embeddings of the parity texts, and for
  two images their pixels and image embeddings and patch tokens (transformers' CLIPModel with
  quanto's modules, which dequantise each weight as int8 × scale), plus the f32 model's, to
  show how far quantisation moves them.

Versions are pinned in tools/requirements.txt; nothing here is random but the images, seeded.

    python3 tools/q8_reference.py   # writes tests/fixtures/clip-q8-quanto/
"""

import json
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_fixtures  # noqa: E402
from optimum.quanto import freeze, qint8, quantize  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
SOURCE = FIXTURES / "clip-p16-deep"
OUT = FIXTURES / "clip-q8-quanto"
IMAGES = ["shapes_50x90", "noise_75x75"]


@torch.no_grad()
def outputs(model, tokenizer, processor):
    ref = {}
    batch = tokenizer(make_fixtures.TEXTS, padding=True, truncation=True, max_length=77, return_tensors="pt")
    text = model.get_text_features(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
    text = text.pooler_output if hasattr(text, "pooler_output") else text
    ref["text_embeds"] = make_fixtures.normalize(text)
    for name in IMAGES:
        from PIL import Image

        image = Image.open(FIXTURES / "images" / f"{name}.png").convert("RGB")
        pixels = processor(images=image, return_tensors="pt").pixel_values
        ref[f"{name}.pixel_values"] = pixels
        out = make_fixtures.vision_reference(model, pixels, interpolate=False)
        ref[f"{name}.image_embeds"] = out["image_embeds"]
        ref[f"{name}.patch_tokens"] = out["patch_tokens"]
    return ref


def main():
    make_fixtures.check_versions()
    import optimum.quanto

    if optimum.quanto.__version__ != "0.2.7":
        sys.exit(f"optimum-quanto {optimum.quanto.__version__} is installed; the fixture is pinned to 0.2.7")
    tokenizer = CLIPTokenizer(
        str(make_fixtures.TOKENIZER_FILES / "vocab.json"), str(make_fixtures.TOKENIZER_FILES / "merges.txt")
    )
    model = CLIPModel.from_pretrained(SOURCE).eval()
    size = model.config.vision_config.image_size
    processor = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    full = outputs(model, tokenizer, processor)
    quantize(model, weights=qint8)
    freeze(model)
    quantised = outputs(model, tokenizer, processor)
    OUT.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items() if not k.endswith("position_ids")}
    save_file(state, OUT / "model.safetensors")
    shutil.copy(SOURCE / "config.json", OUT / "config.json")
    ref = dict(quantised)
    ref.update({f"f32.{k}": v for k, v in full.items() if not k.endswith("pixel_values")})
    save_file({k: v.contiguous() for k, v in ref.items()}, OUT / "reference.safetensors")
    (OUT / "texts.json").write_text(json.dumps(make_fixtures.TEXTS, ensure_ascii=False, indent=1) + "\n")
    q = [k for k in state if k.endswith("._data")]
    print(f"clip-q8-quanto: {len(q)} int8 weights of {len(state)} tensors")


if __name__ == "__main__":
    main()
