#!/usr/bin/env python3
"""Checks that every import in src/ points down the layer order written in the README.

The README's "How it is built" section holds the order in a block after the line
`<!-- layers -->`: one layer per line, top first, its modules before " — ". A module may import
only modules of lower layers (and its own files); an import of its own layer or a higher one
fails, and so would any cycle. Modules missing from the list fail too, so the README keeps up
with the code. `src/cli/` and `src/main.rs` are the `cli` module (they import `wordmask::`).

    python3 tools/check_layers.py        # exit 1 and one line per offending import
"""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def layers():
    text = (ROOT / "README.md").read_text()
    block = text.split("<!-- layers -->", 1)[1].split("```", 2)[1]
    rank = {}
    for depth, line in enumerate(l for l in block.splitlines()[1:] if l.strip()):
        for module in line.split(" — ")[0].replace(",", " ").split():
            rank[module] = depth
    return rank


def module_of(path):
    parts = path.relative_to(ROOT / "src").parts
    if parts == ("lib.rs",):
        return None
    if parts == ("main.rs",):
        return "cli"
    return parts[0].removesuffix(".rs")


def main():
    rank = layers()
    problems = []
    for path in sorted((ROOT / "src").rglob("*.rs")):
        here = module_of(path)
        if here is None:
            continue
        if here not in rank:
            problems.append(f"{path.relative_to(ROOT)}: module `{here}` is not in the README's layer list")
            continue
        prefix = "wordmask" if here == "cli" else "crate"
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("//", 1)[0]
            for target in re.findall(rf"\b{prefix}::(\w+)", code):
                if target in ("Error", "Result", "Backend") or target == here:
                    continue  # the crate root's re-exports of error and device, or the module itself
                if target not in rank:
                    problems.append(f"{path.relative_to(ROOT)}:{number}: `{target}` is not in the README's layer list")
                elif rank[target] <= rank[here]:
                    where = "the same layer as" if rank[target] == rank[here] else "a layer above"
                    problems.append(
                        f"{path.relative_to(ROOT)}:{number}: `{here}` imports `{target}`, {where} it: {line.strip()}"
                    )
    for p in problems:
        print(p)
    if problems:
        print(f"{len(problems)} imports break the layer order (README.md, 'How it is built')")
        return 1
    print(f"layer order holds: {len(rank)} modules, every import points down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
