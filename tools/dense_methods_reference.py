#!/usr/bin/env python3
"""Reference for the dense engine's SC-CLIP and ResCLIP methods, from the authors' own code
(tests/native/parity_dense_methods.rs reads what this writes).

- SC-CLIP (Bai et al. 2024, SuleBai/SC-CLIP @ 0417ba9): `scclip_segmentor.py`
  `SCCLIPForSegmentation` and `clip/model.py` (LOF outliers, mean interpolation,
  self-adjusting, multi-level fusion);
- ResCLIP (Yang et al., CVPR 2025, yvhangyang/ResCLIP @ 0e085f7): `resclip_segmentor.py`
  `ResCLIPSegmentation` and `clip/model.py` (RCS and SFR over NACLIP's attention,
  `arch='wo_resi'`, `attn_strategy='resclip'`, `gaussian_std=5`, as `test_all.sh` runs it).

Each repository's segmentor runs unchanged. Stubbed or patched, all of it plumbing:
1. mmseg and mmengine (`BaseSegmentor` as a bare `nn.Module`, `SegDataPreProcessor`,
   `MODELS.register_module`, `PixelData`), matplotlib (imported, unused) and setuptools'
   `pkg_resources.packaging` (a version check in clip/clip.py); the segmentor is
   called as mmseg's test loop calls it, `predict(inputs, data_samples)`, with `ori_shape` in
   each sample's metainfo.
2. The weights: `clip.load` is given a state dict converted from the random-weight
   transformers checkpoint `tests/fixtures/clip-p16-deep` (which the Rust test loads with the
   real loader). That checkpoint is tiny (width 32, 2 heads, 12 vision layers, as both methods
   index layers up to 10), so the repositories' `width // 64` heads would be 0:
   `nn.MultiheadAttention` is built with 2 heads where asked for 0. Its weights are rounded to
   f16 values first, as `clip.load` rounds them (`convert_weights`) before `model.float()`.
3. CUDA: the ResCLIP code calls `.cuda()` and `.to(torch.device('cuda'))` in its SFR step;
   both are no-ops here (CPU).
4. The image: the resized, CLIP-normalised pixels come from transformers'
   `CLIPImageProcessor` at mmcv's rounded size (as tools/dense_reference.py `mmcv_size`), the
   engine's own preprocessing, instead of mmseg's pipeline (cv2 resize).

Recorded per run: the names' embeddings (`query_features`, 80 templates), the logits that
`postprocess_result` receives (each name's cosine at the image's size) and the label map it
gives (0 = under `prob_thd`, c = class c, as the repositories' `pred_sem_seg`).

    pip install -r tools/requirements.txt
    python3 tools/dense_methods_reference.py --scclip SC_CLIP_CHECKOUT --resclip RESCLIP_CHECKOUT
        # writes tests/fixtures/clip-p16-deep/ and tests/fixtures/dense-methods/
"""

import argparse
import contextlib
import json
import sys
import tempfile
import types
from pathlib import Path

import torch
import torch.nn as nn
from PIL import Image
from safetensors.torch import save_file
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dense_reference  # noqa: E402
import make_fixtures  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
MODEL = "clip-p16-deep"
OUT = FIXTURES / "dense-methods"
SEED = 20261207
IMAGE = "shapes_50x90"
HEADS = 2
COMMITS = {"scclip": "0417ba9", "resclip": "0e085f7"}
# Names and their classes (class 0 first, as the repositories' class files). On these random
# weights SC-CLIP's patches differ little, and of 90 words tried only "ceiling" and "navy" win
# anywhere; the thresholds below leave part of the image unlabelled, and the area run takes
# the smaller class's pixels away.
LABELS = [["background"], ["ceiling", "red"], ["navy"], ["blue"], ["green field"]]
# (tag, method, short side, (window, stride) or None, segmentor keywords beside the defaults).
RUNS = [
    ("scclip", "scclip", 112, (112, 56), dict(logit_scale=40, prob_thd=0.31)),
    ("scclip-area", "scclip", 112, (112, 56), dict(logit_scale=50, prob_thd=0.2, area_thd=0.15)),
    ("resclip", "resclip", 112, (112, 56),
     dict(logit_scale=40, prob_thd=0.36, temp_thd=0.4, delete_same_entity=True,
          attn_rcs_weights=[2.0, 0.3], attn_sfr_weights=[2.1, 0.7])),
    ("resclip-whole", "resclip", 112, None,
     dict(logit_scale=40, prob_thd=0.33, temp_thd=0.35, delete_same_entity=True,
          attn_rcs_weights=[2.0, 0.6], attn_sfr_weights=[2.1, 0.6])),
]


def build_checkpoint():
    """A random transformers CLIPModel deep enough for both methods, every weight an f16 value."""
    config = CLIPConfig(
        text_config=dict(hidden_size=8, intermediate_size=32, num_hidden_layers=2, num_attention_heads=HEADS,
                         vocab_size=49408, max_position_embeddings=77, hidden_act="quick_gelu"),
        vision_config=dict(hidden_size=32, intermediate_size=128, num_hidden_layers=12, num_attention_heads=HEADS,
                           patch_size=16, image_size=112, hidden_act="quick_gelu"),
        projection_dim=16,
    )
    torch.manual_seed(SEED)
    model = CLIPModel(config).eval()
    with torch.no_grad():
        for key, p in model.named_parameters():
            if key.endswith("bias") or "norm" in key:
                p.add_(torch.randn_like(p) * 0.1)
            p.copy_(p.half().float())
        model.logit_scale.fill_(2.0)
    directory = FIXTURES / MODEL
    directory.mkdir(exist_ok=True)
    model.save_pretrained(directory)
    return CLIPModel.from_pretrained(directory).eval()


def openai_state_dict(model):
    """transformers' CLIPModel keys to OpenAI CLIP's (what `clip.load` reads)."""
    s = {k: v.detach().clone() for k, v in model.state_dict().items()}
    out = {}

    def tower(prefix, dst, layers):
        for i in range(layers):
            p = f"{prefix}.encoder.layers.{i}."
            d = f"{dst}.resblocks.{i}."
            out[d + "attn.in_proj_weight"] = torch.cat([s[p + f"self_attn.{n}_proj.weight"] for n in "qkv"])
            out[d + "attn.in_proj_bias"] = torch.cat([s[p + f"self_attn.{n}_proj.bias"] for n in "qkv"])
            out[d + "attn.out_proj.weight"] = s[p + "self_attn.out_proj.weight"]
            out[d + "attn.out_proj.bias"] = s[p + "self_attn.out_proj.bias"]
            for a, b in [("ln_1", "layer_norm1"), ("ln_2", "layer_norm2")]:
                out[d + a + ".weight"] = s[p + b + ".weight"]
                out[d + a + ".bias"] = s[p + b + ".bias"]
            out[d + "mlp.c_fc.weight"] = s[p + "mlp.fc1.weight"]
            out[d + "mlp.c_fc.bias"] = s[p + "mlp.fc1.bias"]
            out[d + "mlp.c_proj.weight"] = s[p + "mlp.fc2.weight"]
            out[d + "mlp.c_proj.bias"] = s[p + "mlp.fc2.bias"]

    v, t = model.config.vision_config, model.config.text_config
    tower("vision_model", "visual.transformer", v.num_hidden_layers)
    tower("text_model", "transformer", t.num_hidden_layers)
    out["visual.conv1.weight"] = s["vision_model.embeddings.patch_embedding.weight"]
    out["visual.class_embedding"] = s["vision_model.embeddings.class_embedding"]
    out["visual.positional_embedding"] = s["vision_model.embeddings.position_embedding.weight"]
    for a, b in [("ln_pre", "pre_layrnorm"), ("ln_post", "post_layernorm")]:
        out[f"visual.{a}.weight"] = s[f"vision_model.{b}.weight"]
        out[f"visual.{a}.bias"] = s[f"vision_model.{b}.bias"]
    out["visual.proj"] = s["visual_projection.weight"].T.contiguous()
    out["token_embedding.weight"] = s["text_model.embeddings.token_embedding.weight"]
    out["positional_embedding"] = s["text_model.embeddings.position_embedding.weight"]
    out["ln_final.weight"] = s["text_model.final_layer_norm.weight"]
    out["ln_final.bias"] = s["text_model.final_layer_norm.bias"]
    out["text_projection"] = s["text_projection.weight"].T.contiguous()
    out["logit_scale"] = s["logit_scale"]
    return out


def stub_plumbing():
    """mmseg, mmengine and matplotlib as far as the segmentors touch them."""

    class BaseSegmentor(nn.Module):
        def __init__(self, data_preprocessor=None, init_cfg=None):
            super().__init__()

    class Registry:
        def register_module(self, *args, **kwargs):
            return lambda cls: cls

    class PixelData:
        def __init__(self, **kwargs):
            self.__dict__.update(kwargs)

    modules = {
        "mmseg": {},
        "mmseg.models": {},
        "mmseg.models.segmentors": {"BaseSegmentor": BaseSegmentor},
        "mmseg.models.data_preprocessor": {"SegDataPreProcessor": lambda **kwargs: None},
        "mmseg.registry": {"MODELS": Registry()},
        "mmengine": {},
        "mmengine.structures": {"PixelData": PixelData},
        "matplotlib": {},
        "matplotlib.pyplot": {},
        # clip/clip.py reads `pkg_resources.packaging` (setuptools), only for a version check.
        "pkg_resources": {"packaging": __import__("packaging.version")},
    }
    for name, attrs in modules.items():
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        sys.modules[name] = module


class Sample:
    """What mmseg's test loop hands `predict`: metainfo, and `set_data` for the results."""

    def __init__(self, height, width):
        self.metainfo = dict(ori_shape=(height, width), img_shape=None, pad_shape=None, padding_size=[0, 0, 0, 0])

    def set_data(self, data):
        self.__dict__.update(data)


@contextlib.contextmanager
def cpu_and_tiny_heads():
    """`nn.MultiheadAttention(width, 0)` built with 2 heads; `.cuda()` and `.to(cuda)` stay on the CPU."""
    mha_init, tensor_cuda, module_to = nn.MultiheadAttention.__init__, torch.Tensor.cuda, nn.Module.to

    def init(self, embed_dim, num_heads, *args, **kwargs):
        mha_init(self, embed_dim, num_heads or HEADS, *args, **kwargs)

    def to(self, *args, **kwargs):
        args = tuple(a for a in args if not (isinstance(a, torch.device) and a.type == "cuda"))
        return module_to(self, *args, **kwargs)

    nn.MultiheadAttention.__init__ = init
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    nn.Module.to = to
    try:
        yield
    finally:
        nn.MultiheadAttention.__init__, torch.Tensor.cuda, nn.Module.to = mha_init, tensor_cuda, module_to


def import_repository(checkout, module):
    """`module` from a checkout, its `clip`, `pamr` and `prompts` packages fresh (both
    repositories ship their own under the same names)."""
    for name in list(sys.modules):
        if name.split(".")[0] in ("clip", "pamr", "prompts", module):
            del sys.modules[name]
    sys.path.insert(0, str(checkout))
    try:
        return __import__(module)
    finally:
        sys.path.remove(str(checkout))


def run(segmentor_class, checkpoint, names_file, pixels, size, slide, keywords):
    with cpu_and_tiny_heads():
        segmentor = segmentor_class(clip_path=str(checkpoint), name_path=str(names_file), device=torch.device("cpu"),
                                    slide_crop=slide[0] if slide else 0, slide_stride=slide[1] if slide else 112,
                                    **keywords)
        seen = {}
        postprocess = segmentor.postprocess_result

        def record(seg_logits, data_samples):
            seen["logits"] = seg_logits.detach().clone()
            return postprocess(seg_logits, data_samples)

        segmentor.postprocess_result = record
        sample = Sample(*size)
        with torch.no_grad():
            segmentor.predict(pixels, [sample])
    return segmentor.query_features.detach().clone(), seen["logits"][0], sample.pred_sem_seg.data[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scclip", type=Path, required=True, help="a checkout of SuleBai/SC-CLIP @ 0417ba9")
    parser.add_argument("--resclip", type=Path, required=True, help="a checkout of yvhangyang/ResCLIP @ 0e085f7")
    args = parser.parse_args()
    make_fixtures.check_versions()
    model = build_checkpoint()
    stub_plumbing()
    image = Image.open(FIXTURES / "images" / f"{IMAGE}.png").convert("RGB")
    ref = {}
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(tmp) / "clip.pt"
        torch.save(openai_state_dict(model), checkpoint)
        names_file = Path(tmp) / "names.txt"
        names_file.write_text("\n".join(", ".join(label) for label in LABELS))
        segmentors = {
            "scclip": import_repository(args.scclip, "scclip_segmentor").SCCLIPForSegmentation,
            "resclip": None,
        }
        segmentors["resclip"] = import_repository(args.resclip, "resclip_segmentor").ResCLIPSegmentation
        for tag, method, short, slide, keywords in RUNS:
            width, height = dense_reference.mmcv_size(image.width, image.height, short)
            processor = CLIPImageProcessor(size={"height": height, "width": width}, do_center_crop=False)
            pixels = processor(images=image, return_tensors="pt").pixel_values
            names, logits, labels = run(segmentors[method], checkpoint, names_file, pixels,
                                        (image.height, image.width), slide, keywords)
            ref[f"{tag}.names"] = names
            ref[f"{tag}.logits"] = logits
            ref[f"{tag}.labels"] = labels.to(torch.uint8)
            counts = torch.bincount(labels.flatten().long(), minlength=len(LABELS)).tolist()
            probs = (logits * keywords["logit_scale"]).softmax(0)
            index = torch.tensor([c for c, label in enumerate(LABELS) for _ in label])
            top = torch.stack([probs[index == c].max(0).values for c in range(len(LABELS))]).max(0).values
            quantiles = torch.quantile(top.flatten(), torch.tensor([0.1, 0.3, 0.5, 0.7, 0.9])).tolist()
            print(f"{tag}: logits {tuple(logits.shape)} in [{logits.min():.3f}, {logits.max():.3f}], labels {counts}, "
                  f"top probability at 10/30/50/70/90 % {[round(q, 4) for q in quantiles]}")
    OUT.mkdir(exist_ok=True)
    save_file({k: v.contiguous() for k, v in ref.items()}, OUT / "reference.safetensors")
    runs = [dict(tag=t, method=m, short_side=s, slide=sl, **k) for t, m, s, sl, k in RUNS]
    spec = dict(model=MODEL, image=IMAGE, labels=" , ".join("|".join(l) for l in LABELS), templates="imagenet80",
                commits=COMMITS, runs=runs)
    (OUT / "runs.json").write_text(json.dumps(spec, indent=1) + "\n")


if __name__ == "__main__":
    main()
