#!/usr/bin/env python3
"""Writes the hostile seeds of the fuzz targets: small files in the shapes that once hurt.

    python3 tools/fuzz_seeds.py    # -> fuzz/seeds/{torch_checkpoint,safetensors,config,cli_args,wordpiece}/

The shapes (each a few kilobytes at most; standard library only):

- torch_checkpoint: memo bombs (a memoised list copied 64 times a round, by BINPUT/BINGET and
  by MEMOIZE/LONG_BINGET/APPEND), containers nested past the reader's depth limit (tuples,
  lists, dicts, marks), callables outside torch's weights-only allowlist (GLOBAL `os.system`,
  STACK_GLOBAL `builtins.eval`), a tensor name past the length limit, and a stride-0 tensor
  claiming a million elements of a one-element storage;
- safetensors: two tensors over the same bytes, and an overlap hidden behind an empty tensor;
- config: sizes past their bounds, a negative epsilon, zero heads, a zero `image_std`;
- cli_args: settings as typed, in range and out of it (NUL-separated words);
- wordpiece: BERT's tricky strings, and vocabularies of the input's own (one without [SEP], one
  token of 5,000 characters).

`cargo test --release --test native fuzz_regressions` replays them on stable.
"""

import io
import json
import struct
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "fuzz" / "seeds"


def s(text):
    """BINUNICODE."""
    data = text.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def i(n):
    """BININT."""
    return b"J" + struct.pack("<i", n)


def g(module, name):
    """GLOBAL."""
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def ints(values):
    return b"(" + b"".join(i(v) for v in values) + b"t"


def tensor(key, shape, strides=None, numel=None):
    """`_rebuild_tensor_v2` of float storage `key`, as torch.save writes it."""
    if strides is None:
        strides = [1] * len(shape)
        for k in range(len(shape) - 2, -1, -1):
            strides[k] = strides[k + 1] * shape[k + 1]
    if numel is None:
        numel = 1
        for d in shape:
            numel *= d
    pid = b"((" + s("storage") + g("torch", "FloatStorage") + s(key) + s("cpu") + i(numel) + b"tQ"
    args = pid + i(0) + ints(shape) + ints(strides) + b"\x89" + g("collections", "OrderedDict") + b")R"
    return g("torch._utils", "_rebuild_tensor_v2") + args + b"tR"


def state_dict(entries):
    """OrderedDict() of `entries` (key and value opcodes), SETITEMS, STOP."""
    return b"\x80\x02" + g("collections", "OrderedDict") + b")R(" + b"".join(entries) + b"u."


def torch_zip(pickle, storages=()):
    out = io.BytesIO()
    # A fixed date, so the seeds come out the same on every run.
    entry = lambda name: zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        z.writestr(entry("archive/data.pkl"), pickle)
        for key, data in storages:
            z.writestr(entry(f"archive/data/{key}"), data)
    return out.getvalue()


def floats(values):
    return struct.pack(f"<{len(values)}f", *values)


def torch_checkpoint():
    one = [s("w") + tensor("0", [2, 2])]
    storage = [("0", floats([1.0, 2.0, 3.0, 4.0]))]
    bomb = b"\x80\x02](" + b"N" * 200 + b"e"
    for r in range(6):
        bomb += bytes([ord("q"), r]) + b"](" + bytes([ord("h"), r]) * 64 + b"e"
    memoize = b"\x80\x02](" + b"N" * 200 + b"e\x94"
    for r in range(6):
        memoize += b"]" + (b"j" + struct.pack("<I", r) + b"a") * 64 + b"\x94"
    seeds = {
        "memo-bomb": torch_zip(bomb + b".", storage),
        "memo-bomb-memoize": torch_zip(memoize + b".", storage),
        "nested-tuples": torch_zip(b"\x80\x02)" + b"\x85" * 4096 + b".", storage),
        "nested-lists": torch_zip(b"\x80\x02" + b"]" * 2048 + b"a" * 2047 + b".", storage),
        "nested-dicts": torch_zip(b"\x80\x02" + b"}K\x01" * 1024 + b"}" + b"s" * 1024 + b".", storage),
        "nested-marks": torch_zip(b"\x80\x02" + b"(" * 1024 + b"t" * 1024 + b".", storage),
        "os-system": torch_zip(state_dict(one + [s("hook") + g("os", "system") + b"(" + s("echo owned") + b"tR"]), storage),
        "stack-global-eval": torch_zip(
            state_dict(one + [s("hook") + b"\x8c\x08builtins\x8c\x04eval\x93(" + s("1") + b"tR"]), storage
        ),
        "long-name": torch_zip(state_dict([s("n" * 1100) + tensor("0", [2, 2])]), storage),
        "repeated-storage": torch_zip(
            state_dict([s("w") + tensor("0", [1_000_000], strides=[0], numel=1)]), [("0", floats([1.0]))]
        ),
    }
    return seeds


def safetensors(header, data):
    text = json.dumps(header).encode()
    text += b" " * (-(8 + len(text)) % 8)
    return struct.pack("<Q", len(text)) + text + data


def safetensors_seeds():
    four = floats([1.0, 2.0, 3.0, 4.0])
    return {
        "overlap": safetensors(
            {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
             "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}},
            four,
        ),
        "overlap-behind-empty": safetensors(
            {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
             "b": {"dtype": "F32", "shape": [0], "data_offsets": [4, 4]},
             "c": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}},
            four,
        ),
    }


def config_seeds():
    def edited(fixture, edit, preprocessor=None):
        config = json.loads((ROOT / "tests" / "fixtures" / fixture / "config.json").read_text())
        edit(config)
        text = json.dumps(config, indent=1)
        return (text + ("\0" + json.dumps(preprocessor) if preprocessor is not None else "")).encode()

    def setting(path, value):
        def edit(config):
            node = config
            for key in path[:-1]:
                node = node.setdefault(key, {})
            node[path[-1]] = value

        return edit

    return {
        "huge-image-size": edited("semantic-colours", setting(["vision_config", "image_size"], 1_000_000_000)),
        "negative-eps": edited("semantic-colours", setting(["text_config", "layer_norm_eps"], -1e-5)),
        "zero-heads": edited("semantic-colours", setting(["vision_config", "num_attention_heads"], 0)),
        "image-std-zero": edited("semantic-colours", lambda c: None, {"image_std": [0.0, 0.26, 0.27]}),
        "groupvit-negative-assign-eps": edited(
            "semantic-colours-groupvit", setting(["vision_config", "assign_eps"], -1.0)
        ),
        "sam-deep-iou-head": edited("sam-tiny", setting(["mask_decoder_config", "iou_head_depth"], 100_000)),
    }


def cli_args_seeds():
    argvs = [
        ["--labels", "red, green|lime; sky"],
        ["--threshold", "0.5", "--window", "448", "--stride", "224"],
        ["--engine", "groupvit", "--scoring", "transformers", "--threshold", "0"],
        ["--short-side", "4096", "--window", "16", "--stride", "1"],
        ["--background", "sky;wall", "--templates", "imagenet80"],
        ["--method", "naclip", "--refine", "pamr", "--logit-scale", "50"],
        ["--threshold", "NaN"],
        ["--logit-scale", "inf"],
        ["--window", "18446744073709551615", "--stride", "18446744073709551615"],
        ["--short-side", "0"],
        ["--engine", "segclip", "--window", "448"],
        ["--labels", "", "--background", "none"],
    ]
    return {f"{n}": "\0".join(argv).encode() for n, argv in enumerate(argvs)}


def wordpiece_seeds():
    """The BERT tokenizer's tricky strings (tests/fixtures/bert-tiny), and vocabularies of the
    input's own before a NUL byte: a good one, one without [SEP], one of a single huge token."""
    cases = (ROOT / "tests/fixtures/bert-tiny/tokenizer_cases.jsonl").read_text().split("\n")
    texts = [json.loads(line)["text"] for line in cases[:48]]
    seeds = {f"{n}": text.encode() for n, text in enumerate(texts)}
    special = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n"
    seeds["vocab-good"] = (special + "un\n##aff\n##able\n\0Unaffable, cat").encode()
    seeds["vocab-no-sep"] = "[PAD]\n[UNK]\n[CLS]\n\0text".encode()
    seeds["vocab-huge-token"] = (special + "a" * 5000 + "\n\0" + "a" * 5000).encode()
    return seeds


def main():
    for target, seeds in [
        ("torch_checkpoint", torch_checkpoint()),
        ("safetensors", safetensors_seeds()),
        ("config", config_seeds()),
        ("cli_args", cli_args_seeds()),
        ("wordpiece", wordpiece_seeds()),
    ]:
        folder = SEEDS / target
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in seeds.items():
            (folder / name).write_bytes(data)
            print(f"{folder.relative_to(ROOT)}/{name}: {len(data)} bytes")


if __name__ == "__main__":
    main()
