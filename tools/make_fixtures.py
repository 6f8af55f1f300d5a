#!/usr/bin/env python3
"""Reference fixtures for wordmask's parity tests.

Builds small random-weight `CLIPModel`s with transformers (the exact key layout of the hub
checkpoints), saves them the ways the hub does (safetensors f32 and f16 via `save_pretrained`,
a PyTorch zip `pytorch_model.bin` with the old `position_ids` buffers), runs them on
synthetic images and varied strings, and writes the reference outputs next to each model.
Also writes the tokenizer cases (ids of `CLIPTokenizer`) and the preprocessed pixels of
`CLIPImageProcessor`.

    pip install -r tools/requirements.txt
    python3 tools/make_fixtures.py          # writes tests/fixtures/
    python3 tools/make_fixtures.py dense    # only the dense-pipeline reference
    python3 tools/make_fixtures.py semantic # only the known-behaviour colour checkpoint
    python3 tools/make_fixtures.py groupvit # only the GroupViT checkpoints (random and colour) and references

Versions are pinned in tools/requirements.txt and checked below; seeds are fixed, so running
it again reproduces the committed files.
"""

import json
import random
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import transformers
from PIL import Image
from safetensors.torch import save_file
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer, GroupViTConfig, GroupViTModel

PINNED = {"torch": "2.15.0", "transformers": "5.23.0"}
ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures"
TOKENIZER_FILES = ROOT / "tools" / "clip_tokenizer"
SEED = 20261123

# Strings for the text-embedding parity (unicode, punctuation, numbers, > 77 tokens, empty).
TEXTS = [
    "a photo of a cat.",
    "A PHOTO OF A DOG!!!",
    "crème brûlée, naïve café",
    "東京タワーと富士山 🗻",
    "3.14159 and 42 apples; 1,000,000 grains",
    "   tabs\tand\nnewlines   ",
    "emoji 🐈‍⬛🚗💨 and symbols ©®™",
    " ".join(["long"] * 40 + ["sentence", "with", "many", "words"] * 10),
    "",
    "person|people, red car",
]


def check_versions():
    found = {"torch": torch.__version__.split("+")[0], "transformers": transformers.__version__}
    for name, want in PINNED.items():
        if found[name] != want:
            sys.exit(f"{name} {found[name]} is installed; fixtures are pinned to {want} (pip install -r tools/requirements.txt)")


def synthetic_images():
    """Three small RGB images with structure (gradients, shapes, noise); non-square sizes."""
    rng = np.random.default_rng(SEED)
    images = {}
    for name, (w, h) in {"gradient_80x64": (80, 64), "shapes_50x90": (50, 90), "noise_75x75": (75, 75)}.items():
        y, x = np.mgrid[0:h, 0:w].astype(np.float32)
        img = np.stack([x / w * 255, y / h * 255, (x + y) / (w + h) * 255], axis=-1)
        if "shapes" in name:
            img[(x - 25) ** 2 + (y - 30) ** 2 < 150] = [230, 30, 40]
            img[60:80, 5:30] = [20, 40, 220]
        if "noise" in name:
            img = img * 0.5 + rng.uniform(0, 127, size=img.shape)
        images[name] = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
    return images


MODELS = {
    # name: (text cfg, vision cfg, projection_dim, hidden_act, how it is saved)
    "clip-p16-quickgelu": (
        dict(hidden_size=8, intermediate_size=16, num_hidden_layers=2, num_attention_heads=2),
        dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, patch_size=16, image_size=64),
        16, "quick_gelu", "safetensors",
    ),
    "clip-p32-gelu-bin": (
        dict(hidden_size=8, intermediate_size=24, num_hidden_layers=2, num_attention_heads=2, eos_token_id=2),
        dict(hidden_size=32, intermediate_size=48, num_hidden_layers=3, num_attention_heads=2, patch_size=32, image_size=96),
        12, "gelu", "bin",
    ),
    "clip-p16-fp16": (
        dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=4),
        dict(hidden_size=24, intermediate_size=40, num_hidden_layers=2, num_attention_heads=3, patch_size=16, image_size=48),
        8, "quick_gelu", "safetensors-f16",
    ),
}


def build(name, spec):
    text, vision, proj, act, _ = spec
    config = CLIPConfig(
        text_config={**text, "vocab_size": 49408, "max_position_embeddings": 77, "hidden_act": act},
        vision_config={**vision, "hidden_act": act},
        projection_dim=proj,
    )
    torch.manual_seed(SEED + sum(map(ord, name)))
    model = CLIPModel(config).eval()
    # Random init leaves layer norms at 1/0 and biases at 0; perturb them so every tensor matters.
    with torch.no_grad():
        for key, p in model.named_parameters():
            if key.endswith("bias") or "norm" in key:
                p.add_(torch.randn_like(p) * 0.1)
        model.logit_scale.fill_(2.0)
    return model


def save(model, spec, directory):
    directory.mkdir(parents=True, exist_ok=True)
    how = spec[-1]
    if how == "safetensors":
        model.save_pretrained(directory)
    elif how == "safetensors-f16":
        model.half().save_pretrained(directory)
        model = CLIPModel.from_pretrained(directory, dtype=torch.float32).eval()
    elif how == "bin":
        model.config.save_pretrained(directory)
        state = model.state_dict()
        # Hub .bin files written by older transformers also carry the position_ids buffers.
        state["text_model.embeddings.position_ids"] = torch.arange(77).unsqueeze(0)
        grid = model.config.vision_config.image_size // model.config.vision_config.patch_size
        state["vision_model.embeddings.position_ids"] = torch.arange(grid * grid + 1).unsqueeze(0)
        torch.save(state, directory / "pytorch_model.bin")
    return model


def normalize(x):
    return x / x.norm(dim=-1, keepdim=True)


@torch.no_grad()
def vision_reference(model, pixels, interpolate):
    out = model.vision_model(pixel_values=pixels, interpolate_pos_encoding=interpolate, output_hidden_states=True)
    assert len(out.hidden_states) == model.config.vision_config.num_hidden_layers + 1
    patches = model.visual_projection(model.vision_model.post_layernorm(out.last_hidden_state[:, 1:]))
    return {
        "image_embeds": normalize(model.visual_projection(out.pooler_output)),
        "patch_tokens": normalize(patches),
        "penultimate": out.hidden_states[-2],
        "last_hidden": out.last_hidden_state,
    }


@torch.no_grad()
def make_model_fixture(name, spec, images, tokenizer):
    directory = OUT / name
    model = save(build(name, spec), spec, directory)
    size = model.config.vision_config.image_size
    ref = {}
    batch = tokenizer(TEXTS, padding=True, truncation=True, max_length=77, return_tensors="pt")
    text = model.get_text_features(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
    text = text.pooler_output if hasattr(text, "pooler_output") else text
    ref["text_embeds"] = normalize(text)
    ref["text_ids"] = batch.input_ids.to(torch.int64)
    ref["logit_scale"] = model.logit_scale.detach().reshape(1)
    for crop in (True, False):
        processor = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size}, do_center_crop=crop)
        for image_name, image in images.items():
            pixels = processor(images=image, return_tensors="pt").pixel_values
            tag = f"{'crop' if crop else 'nocrop'}.{image_name}"
            ref[f"{tag}.pixel_values"] = pixels
            for key, value in vision_reference(model, pixels, interpolate=not crop).items():
                ref[f"{tag}.{key}"] = value
    save_file({k: v.contiguous() for k, v in ref.items()}, directory / "reference.safetensors")
    (directory / "texts.json").write_text(json.dumps(TEXTS, ensure_ascii=False, indent=1) + "\n")
    print(f"{name}: {sum(p.numel() for p in model.parameters())} parameters, saved as {spec[-1]}")


def tokenizer_cases(tokenizer):
    """≥ 1,000 varied strings and CLIPTokenizer's ids (with start/end, truncated to 77)."""
    rng = random.Random(SEED)
    vocab = [t.replace("</w>", "") for t in json.loads((TOKENIZER_FILES / "vocab.json").read_text()) if t.isprintable()]
    pieces = [
        "café", "naïve", "Ångström", "straße", "ﬁne ﬂow", "東京", "北京大学", "한국어", "русский текст", "עברית",
        "العربية", "ελληνικά", "😀", "🐈‍⬛", "👍🏽", "🇫🇷", "&amp;", "&lt;b&gt;", "...", "!!!", "?!?", "---", "$100",
        "3.5%", "1,234", "2026-11-23", "\t", "\n", "  ", "e\u0301", "A\u0308", "ＦＵＬＬ", "½", "x²", "™", "©", "\u200b",
        "it's", "don't", "I'M", "'quoted'", "\"double\"", "(paren)", "[bracket]", "{brace}", "a/b", "a_b", "a-b",
        "<|endoftext|>", "hello", "WORLD", "dog", "cat", "person", "red car", "traffic light", "potted plant",
    ]
    strings = ["", " ", "a", "a photo of a cat.", " ".join(["word"] * 100), "x" * 300, "🙂" * 50]
    while len(strings) < 1100:
        kind = rng.random()
        if kind < 0.35:
            words = [rng.choice(vocab) for _ in range(rng.randint(1, 8))]
        elif kind < 0.7:
            words = [rng.choice(pieces) for _ in range(rng.randint(1, 6))]
        else:
            words = [rng.choice(pieces + vocab) for _ in range(rng.randint(1, 30))]
        sep = rng.choice([" ", " ", "", ", ", "  ", "\t"])
        text = sep.join(words)
        if rng.random() < 0.2:
            text = text.upper()
        strings.append(text)
    cases = []
    for s in strings:
        ids = tokenizer(s, truncation=True, max_length=77).input_ids
        cases.append({"text": s, "ids": ids})
    path = OUT / "tokenizer" / "cases.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in cases))
    print(f"tokenizer: {len(cases)} cases")


# Dense pipeline fixture: labels (synonyms with `|`), and the runs to record.
DENSE_MODEL = "clip-p16-quickgelu"
DENSE_IMAGE = "shapes_50x90"
DENSE_LABELS = [["red", "crimson"], ["blue"], ["green field"]]
# (tag, method, templates, short side, (window, stride) or None, logit scale, PAMR (iterations, dilations) or None)
DENSE_RUNS = [(m, m, "single", 80, (64, 40), 40.0, None) for m in ("vanilla", "maskclip", "sclip", "clearclip", "naclip")] + [
    ("naclip-imagenet80-whole", "naclip", "imagenet80", 72, None, 25.0, None),
    ("naclip-pamr", "naclip", "single", 80, (64, 40), 40.0, (10, (8, 16))),
]


def dense_fixture(tokenizer):
    import dense_reference

    model = CLIPModel.from_pretrained(OUT / DENSE_MODEL).eval()
    image = Image.open(OUT / "images" / f"{DENSE_IMAGE}.png").convert("RGB")
    names = [n for label in DENSE_LABELS for n in label]
    class_of_name = [c for c, label in enumerate(DENSE_LABELS) for _ in label]
    ref = {}
    for tag, method, template_set, short, slide, scale, refine in DENSE_RUNS:
        embeds = dense_reference.name_embeddings(model, tokenizer, names, template_set)
        ref[f"{tag}.names"] = embeds
        ref[f"{tag}.scores"] = dense_reference.segment(model, image, embeds, class_of_name, method, short, slide, scale, refine)
    (OUT / "dense").mkdir(exist_ok=True)
    save_file({k: v.contiguous() for k, v in ref.items()}, OUT / "dense" / "reference.safetensors")
    runs = [dict(tag=t, method=m, templates=ts, short_side=s, slide=sl, logit_scale=ls, pamr=r) for t, m, ts, s, sl, ls, r in DENSE_RUNS]
    spec = dict(model=DENSE_MODEL, image=DENSE_IMAGE, labels=" , ".join("|".join(l) for l in DENSE_LABELS), runs=runs)
    (OUT / "dense" / "runs.json").write_text(json.dumps(spec, indent=1) + "\n")
    print(f"dense: {len(DENSE_RUNS)} runs on {DENSE_IMAGE} with {DENSE_MODEL}")


# Known-behaviour checkpoint: colour words light up regions of that colour.
SEMANTIC_COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "yellow": (255, 255, 0)}
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@torch.no_grad()
def semantic_fixture(tokenizer):
    """A CLIPModel built by hand (no training) whose dense NACLIP output labels each pixel with
    the colour word nearest its colour:

    - vision (one block, width 4): the patch embedding averages each CLIP-normalised channel
      over the patch into channels 0-2; positions, class token and biases are zero; the last
      block's keys are 4 x its normalised input, so patches attend to patches of their own
      colour; values and out_proj are the identity; every layer norm is (1, 0).
    - text (one block, width 4): the token embedding of each colour word is that colour's
      normalised RGB (channel 3 = 0); every other token embeds to 0. Queries and keys are 0
      (uniform causal attention), values and out_proj the identity, the MLP's fc2 is 0, so the
      end-of-text token carries LN(colour) / length.
    Both towers end in the same direction for a colour and its word, so cosine picks the word.
    """
    width, patch = 4, 16
    config = CLIPConfig(
        text_config=dict(hidden_size=width, intermediate_size=8, num_hidden_layers=1, num_attention_heads=1,
                         vocab_size=49408, max_position_embeddings=77),
        vision_config=dict(hidden_size=width, intermediate_size=8, num_hidden_layers=1, num_attention_heads=1,
                           patch_size=patch, image_size=224),
        projection_dim=width,
    )
    model = CLIPModel(config).eval()
    for p in model.parameters():
        p.zero_()
    eye = torch.eye(width)
    for key, p in model.named_parameters():
        if "norm" in key and key.endswith("weight") or "layrnorm.weight" in key:
            p.fill_(1.0)
    vision = model.vision_model
    for c in range(3):
        vision.embeddings.patch_embedding.weight[c, c] = 1.0 / patch**2
    block = vision.encoder.layers[0].self_attn
    block.k_proj.weight.copy_(4 * eye)
    block.q_proj.weight.copy_(4 * eye)
    block.v_proj.weight.copy_(eye)
    block.out_proj.weight.copy_(eye)
    model.visual_projection.weight.copy_(eye)
    text = model.text_model
    text.encoder.layers[0].self_attn.v_proj.weight.copy_(eye)
    text.encoder.layers[0].self_attn.out_proj.weight.copy_(eye)
    for word, rgb in SEMANTIC_COLOURS.items():
        [token] = tokenizer(word, add_special_tokens=False).input_ids
        value = [(v / 255 - m) / s for v, m, s in zip(rgb, CLIP_MEAN, CLIP_STD)] + [0.0]
        text.embeddings.token_embedding.weight[token] = torch.tensor(value)
    model.text_projection.weight.copy_(eye)
    model.logit_scale.fill_(float(np.log(100.0)))
    directory = OUT / "semantic-colours"
    model.half().save_pretrained(directory)
    # The same weights as a PyTorch zip, so a test can check that both readers agree.
    torch.save(model.state_dict(), directory / "pytorch_model.bin")
    print(f"semantic-colours: {sum(p.numel() for p in model.parameters())} parameters (f16, safetensors and .bin)")


@torch.no_grad()
def semantic_groupvit_fixture(tokenizer):
    """A GroupViTModel built by hand (no training) whose groups are the four colours: the
    GroupViT engine must label each region with its colour word.

    - vision (width 4, one stage with one identity layer and 4 group tokens): the patch
      embedding averages each normalised channel into channels 0-2 and the embedding layer norm
      turns that into a unit direction per colour; the group tokens are those directions for
      red, green, blue and yellow. The grouping block keeps the group tokens as they are (token
      MLP = identity through GELU's linear range, cross-attention and MLPs zeroed) and assigns
      each patch to the group of its colour (queries 8 x the group token, keys the patch).
    - projection heads: [I; -I], batch norm at its initial statistics, ReLU, [I, -I]: the
      identity up to the batch norm's 1/sqrt(1 + eps).
    - text: as semantic-colours, with each colour word embedding to that colour's normalised
      RGB, so the pooled text is the same direction as the colour's group.
    """
    import groupvit_reference

    width, patch, groups = 4, 16, len(SEMANTIC_COLOURS)
    config = GroupViTConfig(
        text_config=dict(hidden_size=width, intermediate_size=8, num_hidden_layers=1, num_attention_heads=1,
                         vocab_size=49408, max_position_embeddings=77),
        vision_config=dict(hidden_size=width, intermediate_size=8, num_hidden_layers=1, num_attention_heads=1,
                           depths=[1], num_group_tokens=[groups], num_output_groups=[groups],
                           assign_mlp_ratio=[1, 2], patch_size=patch, image_size=224),
        projection_dim=width, projection_intermediate_dim=2 * width,
    )
    model = GroupViTModel(config).eval()
    for p in model.parameters():
        p.zero_()
    for key, p in model.named_parameters():
        if "norm" in key and key.endswith("weight") or key.endswith("layernorm.weight"):
            p.fill_(1.0)
    eye = torch.eye(width)
    mean, std = groupvit_reference.IMAGENET_MEAN, groupvit_reference.IMAGENET_STD
    normalised = {w: [(v / 255 - m) / s for v, m, s in zip(rgb, mean, std)] + [0.0] for w, rgb in SEMANTIC_COLOURS.items()}
    vision = model.vision_model
    for c in range(3):
        vision.embeddings.patch_embeddings.projection.weight[c, c] = 1.0 / patch**2
    directions = torch.stack([F.layer_norm(torch.tensor(v), (width,), eps=1e-5) for v in normalised.values()])
    stage = vision.encoder.stages[0]
    stage.group_token.copy_(directions[None])
    block = stage.downsample
    block.mlp_inter.fc1.weight.copy_(torch.eye(groups))
    block.mlp_inter.fc1.bias.fill_(10.0)
    block.mlp_inter.fc2.weight.copy_(torch.eye(groups))
    block.mlp_inter.fc2.bias.fill_(-10.0)
    block.assign.q_proj.weight.copy_(8 * eye)
    block.assign.k_proj.weight.copy_(eye)
    for head in (model.visual_projection, model.text_projection):
        head[0].weight.copy_(torch.cat([eye, -eye]))
        head[1].weight.fill_(1.0)
        head[3].weight.copy_(torch.cat([eye, -eye], dim=1))
    text = model.text_model
    text.encoder.layers[0].self_attn.v_proj.weight.copy_(eye)
    text.encoder.layers[0].self_attn.out_proj.weight.copy_(eye)
    for word, value in normalised.items():
        [token] = tokenizer(word, add_special_tokens=False).input_ids
        text.embeddings.token_embedding.weight[token] = torch.tensor(value)
    model.logit_scale.fill_(float(np.log(100.0)))
    directory = OUT / "semantic-colours-groupvit"
    save_groupvit(model, dict(save="safetensors"), directory)
    # Check the construction with transformers itself: each colour's word scores its region.
    image = Image.new("RGB", (224, 224), SEMANTIC_COLOURS["blue"])
    image.paste(SEMANTIC_COLOURS["red"], (0, 0, 112, 112))
    pixels = CLIPImageProcessor.from_pretrained(directory)(images=image, return_tensors="pt").pixel_values
    words = tokenizer([f"a photo of a {w}." for w in SEMANTIC_COLOURS], padding=True, return_tensors="pt")
    logits = model(input_ids=words.input_ids, pixel_values=pixels, output_segmentation=True).segmentation_logits[0]
    names = list(SEMANTIC_COLOURS)
    assert names[logits[:, 50, 50].argmax()] == "red" and names[logits[:, 180, 180].argmax()] == "blue", logits[:, 50, 50]
    print(f"semantic-colours-groupvit: {sum(p.numel() for p in model.parameters())} parameters")


# GroupViT checkpoints: two grouping stages with group counts other than the hub's 64/8.
GROUPVIT_MODELS = {
    # The hub's shape: a last stage without group tokens; stage 2 mixes 6 group tokens into 4 groups.
    "groupvit-3stage": dict(
        text=dict(hidden_size=8, intermediate_size=16, num_hidden_layers=2, num_attention_heads=2),
        vision=dict(
            hidden_size=32, intermediate_size=64, num_attention_heads=4, depths=[2, 1, 1], num_hidden_layers=4,
            num_group_tokens=[10, 6, 0], num_output_groups=[10, 4, 4], patch_size=8, image_size=48,
        ),
        projection_dim=16, projection_intermediate_dim=24, save="safetensors",
    ),
    # Two stages of equal shape (so a test can swap them), old eos_token_id, `.bin` with buffers.
    "groupvit-2stage-bin": dict(
        text=dict(hidden_size=8, intermediate_size=24, num_hidden_layers=1, num_attention_heads=2, eos_token_id=2),
        vision=dict(
            hidden_size=24, intermediate_size=48, num_attention_heads=3, depths=[1, 1], num_hidden_layers=2,
            num_group_tokens=[6, 6], num_output_groups=[6, 6], assign_mlp_ratio=[0.5, 2], patch_size=8,
            image_size=40, hidden_act="quick_gelu",
        ),
        projection_dim=12, projection_intermediate_dim=20, save="bin",
    ),
}
# Names for the segmentation references: (class, synonyms...).
ASSIGN_SHARPEN = 4.0
GROUPVIT_LABELS = [["a photo of a cat."], ["red car", "automobile"], ["grass"], ["sky"], ["person"], ["tree"]]
# Full-pipeline runs: tag, image, short side, (window, stride) or None, background threshold,
# scoring.
GROUPVIT_RUNS = [
    ("slide", "gradient_80x64", 40, (32, 16), 0.5, "repository"),
    ("whole", "shapes_50x90", 48, None, None, "repository"),
    ("transformers", "noise_75x75", 40, (32, 16), None, "transformers"),
]


def build_groupvit(name, spec):
    config = GroupViTConfig(
        text_config={**spec["text"], "vocab_size": 49408, "max_position_embeddings": 77},
        vision_config=spec["vision"],
        projection_dim=spec["projection_dim"],
        projection_intermediate_dim=spec["projection_intermediate_dim"],
    )
    torch.manual_seed(SEED + sum(map(ord, name)))
    model = GroupViTModel(config).eval()
    with torch.no_grad():
        for key, p in model.named_parameters():
            if key.endswith("bias") or "norm" in key:
                p.add_(torch.randn_like(p) * 0.1)
            if key.endswith("group_token") or key.endswith("position_embeddings"):
                p.copy_(torch.randn_like(p) * 0.5)
            # Sharpen the assignments: at the default init every token sits near all groups
            # equally, and one group takes the whole image.
            if ".assign.q_proj." in key or ".assign.k_proj." in key:
                p.mul_(ASSIGN_SHARPEN)
        # Batch-norm statistics are buffers, not parameters: give them values too.
        for key, b in model.named_buffers():
            if key.endswith("running_mean"):
                b.copy_(torch.randn_like(b) * 0.1)
            elif key.endswith("running_var"):
                b.copy_(torch.rand_like(b) + 0.5)
        model.logit_scale.fill_(3.5)
    return model


def save_groupvit(model, spec, directory):
    directory.mkdir(parents=True, exist_ok=True)
    import groupvit_reference

    CLIPImageProcessor(
        size={"shortest_edge": model.config.vision_config.image_size},
        crop_size={"height": model.config.vision_config.image_size, "width": model.config.vision_config.image_size},
        image_mean=list(groupvit_reference.IMAGENET_MEAN),
        image_std=list(groupvit_reference.IMAGENET_STD),
    ).save_pretrained(directory)
    if spec["save"] == "safetensors":
        model.save_pretrained(directory)
    else:
        model.config.save_pretrained(directory)
        state = model.state_dict()
        state["text_model.embeddings.position_ids"] = torch.arange(77).unsqueeze(0)
        torch.save(state, directory / "pytorch_model.bin")
    return model


@torch.no_grad()
def groupvit_fixture(name, spec, images, tokenizer):
    import groupvit_reference as gr

    directory = OUT / name
    model = save_groupvit(build_groupvit(name, spec), spec, directory)
    size = model.config.vision_config.image_size
    ref = {"logit_scale": model.logit_scale.detach().reshape(1)}
    batch = tokenizer(TEXTS, padding=True, truncation=True, max_length=77, return_tensors="pt")
    ref["text_embeds"] = normalize(model.get_text_features(input_ids=batch.input_ids).pooler_output)
    ref["text_ids"] = batch.input_ids.to(torch.int64)
    names = [n for label in GROUPVIT_LABELS for n in label]
    class_of_name = [c for c, label in enumerate(GROUPVIT_LABELS) for _ in label]
    names_batch = tokenizer(names, padding=True, return_tensors="pt")
    name_embeds = normalize(model.get_text_features(input_ids=names_batch.input_ids).pooler_output)
    ref["names"] = name_embeds
    native = CLIPImageProcessor.from_pretrained(directory)
    for image_name, image in images.items():
        # transformers' own forward with output_segmentation=True, at the trained size.
        pixels = native(images=image, return_tensors="pt").pixel_values
        out = model(input_ids=names_batch.input_ids, pixel_values=pixels, output_segmentation=True)
        tag = f"native.{image_name}"
        ref[f"{tag}.pixel_values"] = pixels
        ref[f"{tag}.image_embeds"] = out.image_embeds
        ref[f"{tag}.logits_per_image"] = out.logits_per_image
        ref[f"{tag}.segmentation_logits"] = out.segmentation_logits[0]
        ours = gr.hf_segmentation(model, pixels, name_embeds)
        assert torch.allclose(ours[0], out.segmentation_logits[0], atol=1e-5), "reference composition drifted"
        # Another size (no crop, short side 32): resampled positions, non-square grid.
        pixels = gr.processor(32)(images=image, return_tensors="pt").pixel_values
        logits, grouping, group_embeds, image_embeds = gr.hf_segmentation(model, pixels, name_embeds)
        tag = f"resized.{image_name}"
        ref[f"{tag}.pixel_values"] = pixels
        ref[f"{tag}.segmentation_logits"] = logits
        ref[f"{tag}.grouping"] = grouping
        ref[f"{tag}.group_embeds"] = group_embeds
        ref[f"{tag}.image_embeds"] = image_embeds
        ref[f"{tag}.window_scores"] = gr.window_scores(model, pixels, name_embeds, bg_thresh=0.5)
    for tag, image_name, short, slide, bg, scoring in GROUPVIT_RUNS:
        ref[f"pipeline.{tag}"] = gr.segment(model, images[image_name], name_embeds, class_of_name, short, slide, bg, scoring)
    save_file({k: v.contiguous() for k, v in ref.items()}, directory / "reference.safetensors")
    (directory / "texts.json").write_text(json.dumps(TEXTS, ensure_ascii=False, indent=1) + "\n")
    runs = [dict(tag=t, image=i, short_side=s, slide=sl, threshold=b, scoring=sc) for t, i, s, sl, b, sc in GROUPVIT_RUNS]
    spec_out = dict(labels=" , ".join("|".join(l) for l in GROUPVIT_LABELS), runs=runs)
    (directory / "runs.json").write_text(json.dumps(spec_out, indent=1) + "\n")
    print(f"{name}: {sum(p.numel() for p in model.parameters())} parameters, saved as {spec['save']}")


def main():
    check_versions()
    if sys.argv[1:] == ["groupvit"]:
        tokenizer = CLIPTokenizer(str(TOKENIZER_FILES / "vocab.json"), str(TOKENIZER_FILES / "merges.txt"))
        for name, spec in GROUPVIT_MODELS.items():
            groupvit_fixture(name, spec, synthetic_images(), tokenizer)
        semantic_groupvit_fixture(tokenizer)
        return
    if sys.argv[1:] == ["semantic"]:
        tokenizer = CLIPTokenizer(str(TOKENIZER_FILES / "vocab.json"), str(TOKENIZER_FILES / "merges.txt"))
        semantic_fixture(tokenizer)
        return
    if sys.argv[1:] == ["dense"]:
        tokenizer = CLIPTokenizer(str(TOKENIZER_FILES / "vocab.json"), str(TOKENIZER_FILES / "merges.txt"))
        dense_fixture(tokenizer)
        return
    tokenizer = CLIPTokenizer(str(TOKENIZER_FILES / "vocab.json"), str(TOKENIZER_FILES / "merges.txt"))
    assert tokenizer("a photo of a cat.").input_ids == [49406, 320, 1125, 539, 320, 2368, 269, 49407]
    images = synthetic_images()
    (OUT / "images").mkdir(parents=True, exist_ok=True)
    for name, image in images.items():
        image.save(OUT / "images" / f"{name}.png")
    for name, spec in MODELS.items():
        make_model_fixture(name, spec, images, tokenizer)
    tokenizer_cases(tokenizer)
    dense_fixture(tokenizer)
    semantic_fixture(tokenizer)
    for name, spec in GROUPVIT_MODELS.items():
        groupvit_fixture(name, spec, images, tokenizer)
    semantic_groupvit_fixture(tokenizer)


if __name__ == "__main__":
    main()
