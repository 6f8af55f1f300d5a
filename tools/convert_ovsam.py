#!/usr/bin/env python3
"""Convert the released Open-Vocabulary SAM checkpoints into one wordmask model folder.

Interactive OVSAM (its demo's configuration: an RN50x16 CLIP ResNet, the SAM2CLIP neck, SAM
ViT-H's prompt encoder and the OVSAM head, which names a mask from FPN RoI features) is spread
over several files:

  --clip                RN50x16.pt: OpenAI's CLIP (a TorchScript archive) or an open_clip state
                        dict with the same keys (visual.*, transformer.*, token_embedding.weight,
                        positional_embedding, ln_final.*, text_projection)
  --sam2clip            sam2clip_vith_rn50.pth: the neck, under `neck_student.`
  --ovsam               ovsam_R50x16_lvisnorare.pth: the head, under `mask_decoder.`
  --fpn                 R50x16_fpn_lvis_norare_v3det.pth: `fpn_neck.*` and the RoI projection
                        `roi_conv.*`
  --sam-prompt-encoder  sam_vit_h_4b8939.pth (segment_anything) or facebook/sam-vit-huge's
                        model.safetensors, a path or its URL
                        (https://huggingface.co/facebook/sam-vit-huge/resolve/main/model.safetensors):
                        only the prompt encoder is taken, and from a URL only its bytes are
                        fetched, by HTTP range requests
  --classifier          RN50x16_LVISV1Dataset.pth (optional): the LVIS classifier [1203, 2, 768]
  --class-names         the classifier's names, in its row order (required with --classifier):
                        one per line, a JSON list, or the demo's ext/class_names/lvis_list.py
                        (read as data with `ast`, never run)

    python3 tools/convert_ovsam.py --clip RN50x16.pt --sam2clip sam2clip_vith_rn50.pth \\
        --ovsam ovsam_R50x16_lvisnorare.pth --fpn R50x16_fpn_lvis_norare_v3det.pth \\
        --sam-prompt-encoder sam_vit_h_4b8939.pth \\
        --classifier RN50x16_LVISV1Dataset.pth --class-names lvis_list.py \\
        --out models/ovsam [--dtype f16|f32]

Writes `config.json` and `model.safetensors` (tensor names: `backbone.*` as open_clip's
`visual.*` without the attention pool; `neck.*` with transformers' SamVisionLayer and
SamVisionNeck names; `fpn.*`; `shared_image_embedding.*`, `prompt_encoder.*` and `mask_decoder.*`
as transformers' SamModel names them, the mask decoder with `label_token` in place of
`iou_token`; `roi_conv.weight`; `text_model.*` and `text_projection.weight` as transformers'
CLIPTextModelWithProjection; `classifier` when given). Every size is read from the tensors;
what shapes cannot tell comes from --text-heads (default width / 64, as CLIP) and
--decoder-heads (default 8, as SAM).

Left out, and said so: the head's `label_mlp` (its output is multiplied by zero in the released
head, so it never changes a score), the head file's own `roi_conv` (the demo loads the FPN
file's over it), CLIP's attention pool and text-side `logit_scale`, batch-norm
`num_batches_tracked`, and SAM's image encoder and its own mask decoder.
"""

import argparse
import ast
import json
import pickle
import re
import sys
import types
import warnings
import zipfile
from collections import Counter
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

# The demo's classification constants (OVSAMHead, mmdet's SingleRoIExtractor and RoIAlign).
LOGIT_SCALE = 4.6052
FINEST_SCALE = 56
ROI_SIZE = 7
NECK_STRIDE = 16
SAM_MEAN = [123.675, 116.28, 103.53]
SAM_STD = [58.395, 57.12, 57.375]
# The 14 ViLD prompt templates the classifier's text embeddings are averaged over.
TEMPLATES = [
    "a photo of a {}.",
    "This is a photo of a {}",
    "There is a {} in the scene",
    "There is the {} in the scene",
    "a photo of a {} in the scene",
    "a photo of a small {}.",
    "a photo of a medium {}.",
    "a photo of a large {}.",
    "This is a photo of a small {}.",
    "This is a photo of a medium {}.",
    "This is a photo of a large {}.",
    "There is a small {} in the scene.",
    "There is a medium {} in the scene.",
    "There is a large {} in the scene.",
]


class ConversionError(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# Reading checkpoints


class _Placeholder:
    """Stands in for classes of packages that are not installed (training metadata such as
    mmengine's message hub), so a checkpoint's tensors can be read without them."""

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        self.state = state


class _PermissiveUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        try:
            return super().find_class(module, name)
        except (ImportError, AttributeError):
            return _Placeholder


_permissive_pickle = types.ModuleType("permissive_pickle")
_permissive_pickle.Unpickler = _PermissiveUnpickler
_permissive_pickle.load = pickle.load
_permissive_pickle.__name__ = "pickle"


class _Tensors(dict):
    """{name: tensor}, remembering how many tensors the file had beyond those read."""

    def __init__(self, tensors, skipped=None):
        super().__init__(tensors)
        self.skipped = 0 if skipped is None else skipped - len(tensors)


def _is_torchscript(path):
    try:
        with zipfile.ZipFile(path) as archive:
            return any(n.endswith("constants.pkl") or "/code/" in n for n in archive.namelist())
    except zipfile.BadZipFile:
        return False


SAFETENSORS_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64,
                      "I64": torch.int64, "I32": torch.int32, "U8": torch.uint8, "BOOL": torch.bool}


def _range(url, start, end):
    """Bytes `start..end` (exclusive) of `url` by an HTTP range request."""
    import urllib.request
    request = urllib.request.Request(url, headers={"Range": f"bytes={start}-{end - 1}"})
    with urllib.request.urlopen(request, timeout=60) as response:
        if response.status != 206:
            raise ConversionError(f"{url}: the server answered {response.status} to a range request; "
                                  "download the file and give its path instead")
        data = response.read()
    if len(data) != end - start:
        raise ConversionError(f"{url}: asked for {end - start} bytes at {start}, got {len(data)}")
    return data


def read_remote_safetensors(url, flag, keep):
    """The tensors `keep` accepts of a safetensors file at `url`, read by HTTP range requests: the
    8-byte header length, the JSON header, then each kept tensor's bytes (SAM ViT-H's prompt
    encoder is a few hundred kilobytes of a 2.5 GB file)."""
    try:
        n = int.from_bytes(_range(url, 0, 8), "little")
        if not 0 < n < 100_000_000:
            raise ConversionError(f"{flag}: {url} is not a safetensors file (header length {n})")
        header = json.loads(_range(url, 8, 8 + n))
    except ConversionError:
        raise
    except Exception as e:
        raise ConversionError(f"{flag}: cannot read {url}: {e}") from e
    names = [k for k in header if k != "__metadata__"]
    tensors = {}
    for name in names:
        if not keep(name):
            continue
        entry = header[name]
        start, end = entry["data_offsets"]
        dtype = SAFETENSORS_DTYPES.get(entry["dtype"])
        if dtype is None:
            raise ConversionError(f"{flag}: {name} has dtype {entry['dtype']}")
        data = bytearray(_range(url, 8 + n + start, 8 + n + end))
        tensors[name] = torch.frombuffer(data, dtype=dtype).reshape(entry["shape"]).clone() if data else \
            torch.zeros(entry["shape"], dtype=dtype)
    return _Tensors(tensors, skipped=len(names))


def read_checkpoint(path, flag, keep=lambda key: True):
    """A flat {name: tensor} of one input file (only the names `keep` accepts are read from a
    safetensors file, local or at an http(s) URL, which is read by range requests); a top-level
    `state_dict` wrapper is unwrapped."""
    if str(path).startswith(("http://", "https://")):
        if not str(path).split("?")[0].endswith(".safetensors"):
            raise ConversionError(f"{flag}: only safetensors files can be read from a URL ({path})")
        return read_remote_safetensors(str(path), flag, keep)
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{flag}: {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            with safe_open(str(path), framework="pt") as f:
                names = list(f.keys())
                return _Tensors({k: f.get_tensor(k) for k in names if keep(k)}, skipped=len(names))
        if _is_torchscript(path):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                obj = torch.jit.load(str(path), map_location="cpu").state_dict()
        else:
            try:
                obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except Exception:
                # Training checkpoints carry metadata objects that the safe loader refuses.
                obj = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_permissive_pickle)
    except ConversionError:
        raise
    except Exception as e:
        raise ConversionError(f"{flag}: cannot read {path}: {e}") from e
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if isinstance(obj, torch.Tensor):
        return _Tensors({"": obj})
    if not isinstance(obj, dict):
        raise ConversionError(f"{flag}: {path} holds a {type(obj).__name__}, not a state dict")
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    return _Tensors({k: v for k, v in tensors.items() if keep(k)}, skipped=len(tensors))


def read_class_names(path):
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"--class-names: {path} does not exist")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        names = json.loads(text)
    elif path.suffix == ".py":
        names = None
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Assign) and isinstance(node.value, (ast.Tuple, ast.List)):
                names = list(ast.literal_eval(node.value))
                break
        if names is None:
            raise ConversionError(f"--class-names: {path} assigns no tuple or list of names")
    else:
        names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names or not all(isinstance(n, str) for n in names):
        raise ConversionError(f"--class-names: {path} holds no list of strings")
    return names


# ---------------------------------------------------------------------------------------------
# Renaming


class Section:
    """The tensors taken from one input file, and what was left out and why."""

    def __init__(self, flag, path, state):
        self.flag, self.path, self.state = flag, path, state
        self.out = {}
        self.dropped = Counter()

    def need(self, key):
        if key not in self.state:
            raise ConversionError(f"{self.flag}: {self.path} has no tensor {key!r}")
        return self.state[key]

    def take(self, source, target):
        self.out[target] = self.need(source)

    def drop(self, why, n=1):
        if n:
            self.dropped[why] += n


def _rename(key, rules):
    for pattern, repl in rules:
        new, n = re.subn(pattern, repl, key)
        if n:
            return new
    return None


def convert_clip(sec, text_heads):
    state = sec.state
    if "visual.layer1.0.conv1.weight" not in state:
        raise ConversionError(
            f"{sec.flag}: {sec.path} has no visual.layer1.0.conv1.weight: OVSAM needs a CLIP ResNet (RN50x16)")
    for key, value in state.items():
        if key.startswith("visual."):
            rest = key[len("visual."):]
            if rest.startswith("attnpool."):
                sec.drop("CLIP attention pool (the stages are used, not the pooled embedding)")
            elif rest.endswith("num_batches_tracked"):
                sec.drop("num_batches_tracked")
            else:
                sec.out["backbone." + rest] = value
    # Text tower -> transformers CLIPTextModelWithProjection.
    width = sec.need("token_embedding.weight").shape[1]
    layers = sorted({int(m.group(1)) for k in state if (m := re.match(r"transformer\.resblocks\.(\d+)\.", k))})
    if not layers:
        raise ConversionError(f"{sec.flag}: {sec.path} has no transformer.resblocks.*: no text tower")
    sec.take("token_embedding.weight", "text_model.embeddings.token_embedding.weight")
    sec.take("positional_embedding", "text_model.embeddings.position_embedding.weight")
    for i in layers:
        a, b = f"transformer.resblocks.{i}.", f"text_model.encoder.layers.{i}."
        for suffix, parts in (("weight", "in_proj_weight"), ("bias", "in_proj_bias")):
            q, k, v = sec.need(a + "attn." + parts).chunk(3, dim=0)
            for name, t in zip("qkv", (q, k, v)):
                sec.out[f"{b}self_attn.{name}_proj.{suffix}"] = t.contiguous()
        for src, dst in (("attn.out_proj", "self_attn.out_proj"), ("ln_1", "layer_norm1"), ("ln_2", "layer_norm2"),
                         ("mlp.c_fc", "mlp.fc1"), ("mlp.c_proj", "mlp.fc2")):
            for p in ("weight", "bias"):
                sec.take(f"{a}{src}.{p}", f"{b}{dst}.{p}")
    for p in ("weight", "bias"):
        sec.take(f"ln_final.{p}", f"text_model.final_layer_norm.{p}")
    projection = sec.need("text_projection")  # [width, embed], used as x @ P
    sec.out["text_projection.weight"] = projection.t().contiguous()
    used = {"token_embedding.weight", "positional_embedding", "text_projection"} | {
        k for k in state if k.startswith(("transformer.resblocks.", "ln_final."))}
    for key in state:
        if key.startswith("visual.") or key in used:
            continue
        if key == "logit_scale":
            sec.drop("CLIP logit_scale (OVSAM scores with its own)")
        elif key in ("input_resolution", "context_length", "vocab_size"):
            sec.drop("TorchScript metadata")
        elif key == "attn_mask":
            sec.drop("causal mask buffer")
        else:
            raise ConversionError(f"{sec.flag}: {sec.path} has an unexpected tensor {key!r}")
    heads = text_heads or width // 64
    if heads < 1 or width % heads:
        raise ConversionError(f"--text-heads: {heads} heads do not divide the text width {width}")
    return dict(
        vocab_size=sec.out["text_model.embeddings.token_embedding.weight"].shape[0],
        hidden_size=width,
        intermediate_size=sec.out["text_model.encoder.layers.0.mlp.fc1.weight"].shape[0],
        projection_dim=projection.shape[1],
        num_hidden_layers=len(layers),
        num_attention_heads=heads,
        max_position_embeddings=sec.out["text_model.embeddings.position_embedding.weight"].shape[0],
        hidden_act="quick_gelu",
        layer_norm_eps=1e-5,
        attention_dropout=0.0,
        pad_token_id=1,
        bos_token_id=49406,
        eos_token_id=49407,
        model_type="clip_text_model",
    )


NECK_RULES = [
    (r"^blocks\.(\d+)\.norm1\.", r"neck.layers.\1.layer_norm1."),
    (r"^blocks\.(\d+)\.norm2\.", r"neck.layers.\1.layer_norm2."),
    (r"^blocks\.(\d+)\.(attn\.(qkv|proj)\.(weight|bias)|attn\.rel_pos_[hw]|mlp\.lin[12]\.(weight|bias))$",
     r"neck.layers.\1.\2"),
    (r"^neck\.0\.weight$", "neck.neck.conv1.weight"),
    (r"^neck\.1\.", "neck.neck.layer_norm1."),
    (r"^neck\.2\.weight$", "neck.neck.conv2.weight"),
    (r"^neck\.3\.", "neck.neck.layer_norm2."),
    (r"^patch_embeds\.(\d)\.projection\.(weight|bias)$", r"neck.patch_embeds.\1.projection.\2"),
    (r"^level_encoding\.weight$", "neck.level_encoding.weight"),
    (r"^pos_embed$", "neck.pos_embed"),
]


def convert_neck(sec):
    prefix = "neck_student."
    inside = [k for k in sec.state if k.startswith(prefix)]
    if not inside:
        raise ConversionError(f"{sec.flag}: {sec.path} has no tensors under {prefix!r}")
    sec.drop(f"outside {prefix!r}", len(sec.state) - len(inside))
    for key in inside:
        new = _rename(key[len(prefix):], NECK_RULES)
        if new is None:
            raise ConversionError(f"{sec.flag}: {sec.path} has an unexpected tensor {key!r}")
        sec.out[new] = sec.state[key]
    for key in ("neck.pos_embed", "neck.level_encoding.weight", "neck.neck.conv1.weight", "neck.neck.conv2.weight",
                *(f"neck.patch_embeds.{i}.projection.weight" for i in range(4)), "neck.layers.0.attn.rel_pos_h"):
        if key not in sec.out:
            raise ConversionError(f"{sec.flag}: {sec.path} lacks the tensor for {key!r}")
    pos = sec.out["neck.pos_embed"]
    e, grid = pos.shape[-1], pos.shape[1]
    n = 1 + max(int(k.split(".")[2]) for k in sec.out if k.startswith("neck.layers."))
    sizes = [(sec.out[f"neck.layers.{i}.attn.rel_pos_h"].shape[0] + 1) // 2 for i in range(n)]
    global_layers = [i for i, s in enumerate(sizes) if s == grid]
    windows = {s for s in sizes if s != grid}
    if len(windows) > 1:
        raise ConversionError(f"{sec.flag}: the neck's blocks have several window sizes {sorted(windows)}")
    head_dim = sec.out["neck.layers.0.attn.rel_pos_h"].shape[1]
    mlp_dim = sec.out["neck.layers.0.mlp.lin1.weight"].shape[0]
    return dict(
        hidden_size=e,
        num_hidden_layers=n,
        num_attention_heads=e // head_dim,
        image_size=grid * NECK_STRIDE,
        patch_size=NECK_STRIDE,
        window_size=windows.pop() if windows else 14,
        global_attn_indexes=global_layers,
        output_channels=sec.out["neck.neck.conv1.weight"].shape[0],
        mlp_ratio=mlp_dim / e,
        mlp_dim=mlp_dim,
        layer_norm_eps=1e-6,
        hidden_act="gelu",
        qkv_bias="neck.layers.0.attn.qkv.bias" in sec.out,
        use_rel_pos=True,
        use_abs_pos=True,
        num_channels=3,
    )


DECODER_RULES = [
    (r"^transformer\.layers\.(\d+)\.norm([1-4])\.", r"transformer.layers.\1.layer_norm\2."),
    (r"^transformer\.norm_final_attn\.", "transformer.layer_norm_final_attn."),
    (r"^(transformer\..*)$", r"\1"),
    (r"^mask_tokens\.weight$", "mask_tokens.weight"),
    (r"^output_upscaling\.0\.", "upscale_conv1."),
    (r"^output_upscaling\.1\.", "upscale_layer_norm."),
    (r"^output_upscaling\.3\.", "upscale_conv2."),
]


def convert_head(sec, decoder_heads):
    prefix = "mask_decoder."
    inside = [k for k in sec.state if k.startswith(prefix)]
    if not inside:
        raise ConversionError(f"{sec.flag}: {sec.path} has no tensors under {prefix!r}")
    sec.drop(f"outside {prefix!r}", len(sec.state) - len(inside))
    hyper = {}
    for key in inside:
        rest = key[len(prefix):]
        if rest == "label_token.weight":
            sec.out["mask_decoder.label_token.weight"] = sec.state[key]
        elif rest.startswith("label_mlp."):
            sec.drop("label_mlp (its output is multiplied by zero in the released head)")
        elif rest.startswith("roi_conv."):
            sec.drop("the head file's roi_conv (superseded by the FPN file's, as the demo loads it)")
        elif rest.startswith("mask_decoder.iou_token.") or rest.startswith("mask_decoder.iou_prediction_head."):
            sec.drop("IoU head (unused by OVSAM)")
        elif m := re.match(r"^mask_decoder\.output_hypernetworks_mlps\.(\d+)\.layers\.(\d+)\.(weight|bias)$", rest):
            hyper[(int(m.group(1)), int(m.group(2)), m.group(3))] = sec.state[key]
        elif rest.startswith("mask_decoder.") and (new := _rename(rest[len("mask_decoder."):], DECODER_RULES)):
            sec.out["mask_decoder." + new] = sec.state[key]
        else:
            raise ConversionError(f"{sec.flag}: {sec.path} has an unexpected tensor {key!r}")
    for key in ("mask_decoder.label_token.weight", "mask_decoder.mask_tokens.weight", "mask_decoder.upscale_conv1.weight",
                "mask_decoder.transformer.layers.0.mlp.lin1.weight",
                "mask_decoder.transformer.layers.0.cross_attn_token_to_image.q_proj.weight"):
        if key not in sec.out:
            raise ConversionError(f"{sec.flag}: {sec.path} lacks the tensor for {key!r}")
    tokens = sec.out["mask_decoder.mask_tokens.weight"]
    if tokens.shape[0] != 1 or {m for m, _, _ in hyper} != {0}:
        raise ConversionError(f"{sec.flag}: {sec.path} has {tokens.shape[0]} mask tokens; the OVSAM head has one")
    depth = 1 + max(j for _, j, _ in hyper)
    for (_, j, p), t in hyper.items():
        name = "proj_in" if j == 0 else "proj_out" if j == depth - 1 else f"layers.{j - 1}"
        sec.out[f"mask_decoder.output_hypernetworks_mlps.0.{name}.{p}"] = t
    d = tokens.shape[1]
    if d % decoder_heads:
        raise ConversionError(f"--decoder-heads: {decoder_heads} heads do not divide the decoder width {d}")
    layers = 1 + max(int(k.split(".")[3]) for k in sec.out if k.startswith("mask_decoder.transformer.layers."))
    internal = sec.out["mask_decoder.transformer.layers.0.cross_attn_token_to_image.q_proj.weight"].shape[0]
    return dict(
        hidden_size=d,
        hidden_act="relu",
        mlp_dim=sec.out["mask_decoder.transformer.layers.0.mlp.lin1.weight"].shape[0],
        num_hidden_layers=layers,
        num_attention_heads=decoder_heads,
        attention_downsample_rate=d // internal,
        num_multimask_outputs=0,
        iou_head_depth=3,
        iou_head_hidden_dim=256,
        # segment_anything's two-way blocks use nn.LayerNorm's default epsilon.
        layer_norm_eps=1e-5,
    )


def convert_fpn(sec):
    rules = [(r"^fpn_neck\.(lateral_convs|fpn_convs)\.(\d+)\.conv\.(weight|bias)$", r"fpn.\1.\2.conv.\3"),
             (r"^roi_conv\.0\.conv\.weight$", "roi_conv.weight")]
    for key, value in sec.state.items():
        new = _rename(key, rules)
        if new is None:
            if key.startswith(("fpn_neck.", "roi_conv.")):
                raise ConversionError(f"{sec.flag}: {sec.path} has an unexpected tensor {key!r}")
            sec.drop("outside fpn_neck./roi_conv.")
        else:
            sec.out[new] = value
    for i in range(4):
        for kind in ("lateral_convs", "fpn_convs"):
            for p in ("weight", "bias"):
                if f"fpn.{kind}.{i}.conv.{p}" not in sec.out:
                    raise ConversionError(f"{sec.flag}: {sec.path} has no tensor 'fpn_neck.{kind}.{i}.conv.{p}'")
    if "roi_conv.weight" not in sec.out:
        raise ConversionError(f"{sec.flag}: {sec.path} has no tensor 'roi_conv.0.conv.weight'")


SAM_PROMPT_RULES = [
    (r"^prompt_encoder\.pe_layer\.positional_encoding_gaussian_matrix$", "shared_image_embedding.positional_embedding"),
    (r"^prompt_encoder\.point_embeddings\.(\d)\.weight$", r"prompt_encoder.point_embed.\1.weight"),
    (r"^prompt_encoder\.(not_a_point_embed|no_mask_embed)\.weight$", r"prompt_encoder.\1.weight"),
    (r"^prompt_encoder\.mask_downscaling\.0\.", "prompt_encoder.mask_embed.conv1."),
    (r"^prompt_encoder\.mask_downscaling\.1\.", "prompt_encoder.mask_embed.layer_norm1."),
    (r"^prompt_encoder\.mask_downscaling\.3\.", "prompt_encoder.mask_embed.conv2."),
    (r"^prompt_encoder\.mask_downscaling\.4\.", "prompt_encoder.mask_embed.layer_norm2."),
    (r"^prompt_encoder\.mask_downscaling\.6\.", "prompt_encoder.mask_embed.conv3."),
]


def convert_prompt_encoder(sec):
    state = sec.state
    if "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix" in state:  # segment_anything
        for key, value in state.items():
            new = _rename(key, SAM_PROMPT_RULES)
            if new is not None:
                sec.out[new] = value
            elif key.startswith("prompt_encoder."):
                raise ConversionError(f"{sec.flag}: {sec.path} has an unexpected tensor {key!r}")
            else:
                sec.drop("SAM's image encoder and mask decoder")
    else:  # transformers SamModel
        shared = state.get("shared_image_embedding.positional_embedding",
                           state.get("prompt_encoder.shared_embedding.positional_embedding"))
        if shared is None:
            raise ConversionError(
                f"{sec.flag}: {sec.path} has neither prompt_encoder.pe_layer.positional_encoding_gaussian_matrix "
                "(segment_anything) nor shared_image_embedding.positional_embedding (transformers)")
        sec.out["shared_image_embedding.positional_embedding"] = shared
        for key, value in state.items():
            if key.startswith("prompt_encoder.shared_embedding.") or key.startswith("shared_image_embedding."):
                continue
            if key.startswith("prompt_encoder."):
                sec.out[key] = value
            else:
                sec.drop("SAM's image encoder and mask decoder")
    wanted = ["prompt_encoder.no_mask_embed.weight", "prompt_encoder.not_a_point_embed.weight",
              *(f"prompt_encoder.point_embed.{i}.weight" for i in range(4)),
              *(f"prompt_encoder.mask_embed.{m}.{p}" for m in ("conv1", "layer_norm1", "conv2", "layer_norm2", "conv3")
                for p in ("weight", "bias"))]
    for key in wanted:
        if key not in sec.out:
            raise ConversionError(f"{sec.flag}: {sec.path} lacks the prompt encoder tensor for {key!r}")
    extra = set(k for k in sec.out if k.startswith("prompt_encoder.")) - set(wanted)
    if extra:
        raise ConversionError(f"{sec.flag}: {sec.path} has unexpected prompt encoder tensors {sorted(extra)}")
    return dict(
        hidden_size=sec.out["prompt_encoder.no_mask_embed.weight"].shape[1],
        mask_input_channels=sec.out["prompt_encoder.mask_embed.conv2.weight"].shape[0],
        num_point_embeddings=4,
        hidden_act="gelu",
        layer_norm_eps=1e-6,
    )


def backbone_config(tensors):
    width = tensors["backbone.conv3.weight"].shape[0]
    layers = []
    for stage in range(1, 5):
        blocks = {int(m.group(1)) for k in tensors if (m := re.match(rf"backbone\.layer{stage}\.(\d+)\.conv1\.weight$", k))}
        if not blocks:
            raise ConversionError(f"--clip: no visual.layer{stage}.* in the CLIP file")
        layers.append(len(blocks))
    return dict(width=width, layers=layers)


def expected_names(config):
    """Every tensor name the converted model has, from its configuration."""
    wb = ("weight", "bias")
    bn = ("weight", "bias", "running_mean", "running_var")
    names = []
    for i in (1, 2, 3):
        names += [f"backbone.conv{i}.weight"] + [f"backbone.bn{i}.{p}" for p in bn]
    for stage, blocks in enumerate(config["backbone_config"]["layers"], start=1):
        for j in range(blocks):
            b = f"backbone.layer{stage}.{j}."
            for i in (1, 2, 3):
                names += [f"{b}conv{i}.weight"] + [f"{b}bn{i}.{p}" for p in bn]
            if j == 0:
                names += [f"{b}downsample.0.weight"] + [f"{b}downsample.1.{p}" for p in bn]
    names += [f"neck.patch_embeds.{i}.projection.{p}" for i in range(4) for p in wb]
    names += ["neck.level_encoding.weight", "neck.pos_embed", "neck.neck.conv1.weight", "neck.neck.conv2.weight"]
    names += [f"neck.neck.layer_norm{i}.{p}" for i in (1, 2) for p in wb]
    for i in range(config["vision_config"]["num_hidden_layers"]):
        b = f"neck.layers.{i}."
        names += [f"{b}{m}.{p}" for m in ("layer_norm1", "attn.qkv", "attn.proj", "layer_norm2", "mlp.lin1", "mlp.lin2")
                  for p in wb]
        names += [f"{b}attn.rel_pos_h", f"{b}attn.rel_pos_w"]
    names += [f"fpn.{kind}.{i}.conv.{p}" for kind in ("lateral_convs", "fpn_convs") for i in range(4) for p in wb]
    names += ["roi_conv.weight", "shared_image_embedding.positional_embedding", "prompt_encoder.no_mask_embed.weight",
              "prompt_encoder.not_a_point_embed.weight"]
    names += [f"prompt_encoder.point_embed.{i}.weight" for i in range(4)]
    names += [f"prompt_encoder.mask_embed.{m}.{p}" for m in ("conv1", "layer_norm1", "conv2", "layer_norm2", "conv3")
              for p in wb]
    attention = [f"{x}_proj.{p}" for x in ("q", "k", "v", "out") for p in wb]
    for i in range(config["mask_decoder_config"]["num_hidden_layers"]):
        b = f"mask_decoder.transformer.layers.{i}."
        names += [f"{b}{a}.{x}" for a in ("self_attn", "cross_attn_token_to_image", "cross_attn_image_to_token")
                  for x in attention]
        names += [f"{b}{m}.{p}" for m in ("layer_norm1", "layer_norm2", "layer_norm3", "layer_norm4", "mlp.lin1", "mlp.lin2")
                  for p in wb]
    names += [f"mask_decoder.transformer.final_attn_token_to_image.{x}" for x in attention]
    names += [f"mask_decoder.transformer.layer_norm_final_attn.{p}" for p in wb]
    names += ["mask_decoder.mask_tokens.weight", "mask_decoder.label_token.weight"]
    names += [f"mask_decoder.{m}.{p}" for m in ("upscale_conv1", "upscale_layer_norm", "upscale_conv2",
                                                "output_hypernetworks_mlps.0.proj_in", "output_hypernetworks_mlps.0.layers.0",
                                                "output_hypernetworks_mlps.0.proj_out") for p in wb]
    t = "text_model."
    names += [f"{t}embeddings.token_embedding.weight", f"{t}embeddings.position_embedding.weight", "text_projection.weight"]
    names += [f"{t}final_layer_norm.{p}" for p in wb]
    for i in range(config["text_config"]["num_hidden_layers"]):
        b = f"{t}encoder.layers.{i}."
        names += [f"{b}{m}.{p}" for m in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj",
                                          "layer_norm1", "layer_norm2", "mlp.fc1", "mlp.fc2") for p in wb]
    if "vocabulary" in config:
        names.append("classifier")
    return names


def check(cond, message):
    if not cond:
        raise ConversionError(message)


def convert(args):
    clip = Section("--clip", args.clip, read_checkpoint(args.clip, "--clip"))
    neck = Section("--sam2clip", args.sam2clip, read_checkpoint(args.sam2clip, "--sam2clip"))
    head = Section("--ovsam", args.ovsam, read_checkpoint(args.ovsam, "--ovsam"))
    fpn = Section("--fpn", args.fpn, read_checkpoint(args.fpn, "--fpn"))
    sam = Section("--sam-prompt-encoder", args.sam_prompt_encoder, read_checkpoint(
        args.sam_prompt_encoder, "--sam-prompt-encoder",
        keep=lambda k: k.startswith(("prompt_encoder.", "shared_image_embedding."))))
    sam.drop("SAM's image encoder and mask decoder (not read)", sam.state.skipped)
    text_cfg = convert_clip(clip, args.text_heads)
    vision_cfg = convert_neck(neck)
    decoder_cfg = convert_head(head, args.decoder_heads)
    convert_fpn(fpn)
    prompt_cfg = convert_prompt_encoder(sam)
    tensors = {}
    for sec in (clip, neck, fpn, sam, head):
        tensors.update(sec.out)
    backbone_cfg = backbone_config(tensors)

    # Sizes that must agree across the files.
    stages = [backbone_cfg["width"] * 4 * 2**i for i in range(4)]
    for i, c in enumerate(stages):
        check(tensors[f"backbone.layer{i + 1}.0.conv3.weight"].shape[0] == c, f"--clip: stage {i} is not {c} wide")
        embed = tensors[f"neck.patch_embeds.{i}.projection.weight"]
        check(embed.shape[0 if i == 3 else 1] == c,
              f"--sam2clip: patch embedding {i} takes {tuple(embed.shape)}, the backbone's stage {i} has {c} channels")
        check(tensors[f"fpn.lateral_convs.{i}.conv.weight"].shape[1] == c,
              f"--fpn: lateral conv {i} takes {tensors[f'fpn.lateral_convs.{i}.conv.weight'].shape[1]} channels, "
              f"the backbone's stage {i} has {c}")
    d = decoder_cfg["hidden_size"]
    num_pos_feats = tensors["shared_image_embedding.positional_embedding"].shape[1]
    check(prompt_cfg["hidden_size"] == d == vision_cfg["output_channels"] == 2 * num_pos_feats,
          f"widths disagree: prompt encoder {prompt_cfg['hidden_size']}, mask decoder {d}, neck output "
          f"{vision_cfg['output_channels']}, positional features 2 x {num_pos_feats}")
    fpn_channels = tensors["fpn.lateral_convs.0.conv.weight"].shape[0]
    roi = tensors["roi_conv.weight"]
    class_dim = roi.shape[0]
    check(roi.shape[1] == fpn_channels, f"--fpn: roi_conv takes {roi.shape[1]} channels, the FPN gives {fpn_channels}")
    check(text_cfg["projection_dim"] == class_dim,
          f"--clip: the text projection gives {text_cfg['projection_dim']}, roi_conv gives {class_dim}")
    vision_cfg["num_pos_feats"] = num_pos_feats
    prompt_cfg["image_size"] = vision_cfg["image_size"]
    prompt_cfg["patch_size"] = NECK_STRIDE

    config = {
        "model_type": "ovsam",
        "architectures": ["OvSamModel"],
        "backbone_config": backbone_cfg,
        "vision_config": vision_cfg,
        "prompt_encoder_config": prompt_cfg,
        "mask_decoder_config": decoder_cfg,
        "fpn_channels": fpn_channels,
        "class_dim": class_dim,
        "logit_scale": LOGIT_SCALE,
        "finest_scale": FINEST_SCALE,
        "roi_size": ROI_SIZE,
        "text_config": text_cfg,
        "templates": TEMPLATES,
    }
    notes = []
    if args.classifier:
        if not args.class_names:
            raise ConversionError("--classifier needs --class-names (the names of its rows)")
        cls = read_checkpoint(args.classifier, "--classifier")
        check(len(cls) == 1, f"--classifier: {args.classifier} holds {len(cls)} tensors, expected one")
        classifier = next(iter(cls.values()))
        if classifier.dim() == 2:
            classifier = classifier[:, None]
        check(classifier.dim() == 3 and classifier.shape[2] == class_dim,
              f"--classifier: {args.classifier} is {tuple(classifier.shape)}, expected [classes, prototypes, {class_dim}]")
        names = read_class_names(args.class_names)
        check(len(names) == classifier.shape[0],
              f"--class-names: {len(names)} names for a classifier of {classifier.shape[0]} rows")
        tensors["classifier"] = classifier
        config["vocabulary"] = names
        notes.append(f"classifier: {classifier.shape[0]} classes x {classifier.shape[1]} prototypes x {class_dim}")
    config["image_mean"] = SAM_MEAN
    config["image_std"] = SAM_STD

    # Every tensor the model needs, and no other.
    source = {"backbone": clip, "text_model": clip, "text_projection": clip, "neck": neck, "fpn": fpn,
              "roi_conv": fpn, "shared_image_embedding": sam, "prompt_encoder": sam, "mask_decoder": head}
    expected = expected_names(config)
    for name in expected:
        if name not in tensors:
            sec = source[name.split(".")[0]]
            raise ConversionError(f"{sec.flag}: {sec.path} lacks the tensor that becomes {name!r}")
    extra = sorted(set(tensors) - set(expected))
    if extra:
        raise ConversionError(f"unexpected tensors after renaming: {extra[:8]}{' ...' if len(extra) > 8 else ''}")

    dtype = {"f16": torch.float16, "f32": torch.float32}[args.dtype]
    tensors = {k: (v.to(dtype) if v.is_floating_point() else v).contiguous() for k, v in sorted(tensors.items())}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(config, indent=1) + "\n")

    groups = Counter(k.split(".")[0] for k in tensors)
    print(f"kept {len(tensors)} tensors: " + ", ".join(f"{g} {n}" for g, n in sorted(groups.items())))
    for sec in (clip, neck, head, fpn, sam):
        for why, n in sorted(sec.dropped.items()):
            print(f"dropped from {sec.flag} ({Path(sec.path).name}): {n} x {why}")
    for note in notes:
        print(note)
    print(f"{sum(v.numel() for v in tensors.values()):,} parameters ({args.dtype}) -> {out}")
    return tensors, config


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clip", required=True, help="RN50x16.pt (TorchScript) or an open_clip state dict")
    parser.add_argument("--sam2clip", required=True, help="sam2clip_vith_rn50.pth")
    parser.add_argument("--ovsam", required=True, help="ovsam_R50x16_lvisnorare.pth")
    parser.add_argument("--fpn", required=True, help="R50x16_fpn_lvis_norare_v3det.pth")
    parser.add_argument("--sam-prompt-encoder", required=True, help="sam_vit_h_4b8939.pth or sam-vit-huge model.safetensors")
    parser.add_argument("--classifier", help="RN50x16_LVISV1Dataset.pth")
    parser.add_argument("--class-names", help="the classifier's names: text (one a line), .json or lvis_list.py")
    parser.add_argument("--text-heads", type=int, default=0, help="text attention heads (default: width / 64)")
    parser.add_argument("--decoder-heads", type=int, default=8, help="mask decoder attention heads (default: 8)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--dtype", choices=["f16", "f32"], default="f16")
    args = parser.parse_args(argv)
    try:
        return convert(args)
    except ConversionError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
