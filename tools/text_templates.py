#!/usr/bin/env python3
"""The prompt-template sets of src/segment/text.rs, read from the Rust source.

The PyTorch references (tools/dense_reference.py) must embed labels with exactly the templates
wordmask embeds them with, so they read them from the one place wordmask keeps them instead of
a copy that could drift: `Templates::prompts` maps each `--templates` value to a constant
(`Templates::Imagenet80 => &IMAGENET_80`), and each constant is a Rust array of strings. Needs
no PyTorch, so it can be checked anywhere:

    python3 tools/text_templates.py     # each set's name and how many templates it holds
"""

import re
import sys
from pathlib import Path

TEXT_RS = Path(__file__).resolve().parent.parent / "src" / "segment" / "text.rs"

STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')


def unescape(literal):
    """A Rust string literal's text: `\\"` is `"`, `\\n` a newline (none of today's use any)."""
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), literal)


def template_sets(source=None):
    """Every set by its `--templates` value: {"imagenet80": [...80 strings], "single": [...], ...}.

    The value is the enum variant in lower case (clap's `value_enum` name for `Imagenet80`,
    `Single`, ...). Each array's declared length is checked against the strings read, so a
    template the parser missed cannot pass unnoticed.
    """
    text = TEXT_RS.read_text() if source is None else source
    sets = {}
    for variant, constant in re.findall(r"Templates::(\w+)\s*=>\s*&(\w+)", text):
        declared = re.search(rf"\bconst\s+{constant}\s*:\s*\[&str;\s*(\d+)\]\s*=\s*\[(.*?)\];", text, re.S)
        if not declared:
            raise ValueError(f"{TEXT_RS}: no `const {constant}: [&str; N] = [...]` for Templates::{variant}")
        prompts = [unescape(s) for s in STRING.findall(declared.group(2))]
        if len(prompts) != int(declared.group(1)):
            raise ValueError(f"{TEXT_RS}: {constant} declares {declared.group(1)} templates, {len(prompts)} read")
        sets[variant.lower()] = prompts
    if not sets:
        raise ValueError(f"{TEXT_RS}: no `Templates::X => &CONSTANT` lines found")
    return sets


def templates(name):
    """The templates of one set, by its `--templates` value (`imagenet80`, `single`, ...)."""
    sets = template_sets()
    if name not in sets:
        raise KeyError(f"no template set {name!r} in {TEXT_RS}; there are {', '.join(sets)}")
    return sets[name]


if __name__ == "__main__":
    for name, prompts in template_sets().items():
        print(f"{name}: {len(prompts)} template{'s' * (len(prompts) != 1)}, first {prompts[0]!r}")
    sys.exit(0)
