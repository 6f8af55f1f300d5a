#!/usr/bin/env python3
"""Checks the shape of the imports in src/: layers point down, engines stand alone, no cycles.

Three rules, each a way the code has gone wrong before:

1. **Layers point down.** docs/architecture.md ("How it is built") holds the layer order in a
   block after the line `<!-- layers -->`: one layer per line, top first, its modules before
   " — ". A module may import only modules of lower layers (and its own files); an import of its
   own layer or a higher one fails, and so would any cycle between modules. Modules missing
   from the list fail too, so the document keeps up with the code. `src/cli/` and
   `src/main.rs` are the `cli` module (they import `wordmask::`).
2. **Engines stand alone.** Inside `src/segment/`, an engine (each module named in the `ENGINES`
   registry of `src/segment/mod.rs`, and `point`) must not import another engine: what two
   engines share belongs in a shared module of its own (`text`, `slide`, `result`, ...), or
   one engine's change breaks the other.
3. **No cycles inside a module.** The files of one module (`segment/engine.rs`,
   `segment/model.rs`, ...) form a graph of their own imports; a cycle there is the knot the
   layer rule cannot see, since it only looks at top-level modules.

The README's short layer map (after `<!-- layer map -->`) must match the block too, so that the
short copy cannot drift from the checked one.

Every path is read, not only `use` lines: `crate::x`, `super::x`, `self::x` and `wordmask::x`
anywhere in code, grouped imports (`use crate::{a::b, c}`, nested, over several lines) name
each module inside the braces, and a name the parent module re-exports (`super::Model`, from
`pub use model::Model`) counts as an import of the file that defines it. Comments and string
literals are blanked first, so a doc comment or a message quoting `crate::web` is not an import.

    python3 tools/check_layers.py              # one line per problem (file:line), exit 1 on any
    python3 tools/check_layers.py --self-test  # prove each rule fails on a scratch tree
"""

import re
import sys
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYERS_DOC = Path("docs") / "architecture.md"

# ---------------------------------------------------------------------------------------------
# Reading Rust source


def blank_comments_and_literals(source):
    """The source with comments, string and char literals replaced by spaces, newlines kept.

    Offsets and line numbers stay those of the file, and nothing quoted or commented (a doc
    link to `super::result`, an error text naming `crate::web`, a `'{'`) can pass for code or
    unbalance the braces that grouped imports and inline modules are read by.
    """
    out = list(source)
    i, n = 0, len(source)

    def blank(start, end):
        for k in range(start, end):
            if out[k] != "\n":
                out[k] = " "

    while i < n:
        c = source[i]
        if source.startswith("//", i):
            end = source.find("\n", i)
            end = n if end < 0 else end
            blank(i, end)
            i = end
        elif source.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if source.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif source.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            blank(i, j)
            i = j
        elif c in "br" and (raw := re.match(r'b?r(#*)"', source[i : i + 300])):
            if i and (source[i - 1].isalnum() or source[i - 1] == "_"):
                i += 1  # an identifier ending in r/br, not a raw string
                continue
            close = '"' + raw.group(1)
            end = source.find(close, i + raw.end())
            end = n if end < 0 else end + len(close)
            blank(i, end)
            i = end
        elif c == '"':
            j = i + 1
            while j < n and source[j] != '"':
                j += 2 if source[j] == "\\" else 1
            blank(i, j + 1)
            i = j + 1
        elif c == "'":
            char = re.match(r"'(\\(x[0-9a-fA-F]{2}|u\{[0-9a-fA-F]+\}|.)|[^\\'])'", source[i : i + 16])
            if char:
                blank(i, i + char.end())
                i += char.end()
            else:
                i += 1  # a lifetime or a label
        else:
            i += 1
    return "".join(out)


TOKEN = re.compile(r"\s*(::|[A-Za-z_$][A-Za-z0-9_]*|[{},*;]|.)", re.S)


def tokens_from(code, pos):
    """Tokens (text, offset) from `pos` on: paths, braces, commas, anything else one char."""
    while pos < len(code):
        match = TOKEN.match(code, pos)
        if not match or not match.group(1):
            return
        yield match.group(1), match.start(1)
        pos = match.end()


def parse_use_tree(code, pos):
    """The paths a use tree starting at `pos` names, and where the tree ends.

    Grammar: `path ( "::" ( "{" tree, ... "}" | "*" ) )? ( "as" name )?`. Each path comes back
    as (segments, offset of its last segment, alias or None); `self` inside braces is the path
    before them, a glob `*` is the path it follows. The same reader serves a path in an
    expression (`crate::device::cpu()`), which simply stops at the `(`.
    """
    stream = list(_take_tree_tokens(code, pos))
    paths, end = _tree(stream, 0, [])
    end = min(end, len(stream))  # a group cut off by the end of the file
    last = stream[end - 1][1] + len(stream[end - 1][0]) if end else pos
    return paths, last


def _take_tree_tokens(code, pos):
    """The tokens a use tree can span: stop at the first token no tree holds, or at `;`."""
    depth = 0
    for text, offset in tokens_from(code, pos):
        if text == "{":
            depth += 1
        elif text == "}":
            if depth == 0:
                return
            depth -= 1
        elif text == ";" or not (text in ("::", ",", "*") or re.fullmatch(r"[A-Za-z_$]\w*", text)):
            return
        elif text == "," and depth == 0:
            return
        yield text, offset


def _tree(stream, i, prefix):
    """One use tree from stream[i]: (paths, index after it)."""
    segments = list(prefix)
    last = None
    while i < len(stream) and re.fullmatch(r"[A-Za-z_$]\w*", stream[i][0]):
        name, last = stream[i]
        if name != "self" or not segments:
            segments.append(name)
        i += 1
        if i < len(stream) and stream[i][0] == "::":
            i += 1
            if i < len(stream) and stream[i][0] == "{":
                return _group(stream, i + 1, segments)
            if i < len(stream) and stream[i][0] == "*":
                return [(segments, stream[i][1], None)], i + 1
            continue
        break
    alias = None
    if i + 1 < len(stream) and stream[i][0] == "as" and re.fullmatch(r"\w+", stream[i + 1][0]):
        alias, i = stream[i + 1][0], i + 2
    return ([(segments, last, alias)] if last is not None else []), i


def _group(stream, i, prefix):
    """The trees inside `{ ... }` (stream[i] is just after the brace), each under `prefix`."""
    paths = []
    while i < len(stream) and stream[i][0] != "}":
        if stream[i][0] == ",":
            i += 1
            continue
        found, after = _tree(stream, i, prefix)
        paths += found
        i = after if after > i else i + 1
    return paths, i + 1


def inline_modules(code):
    """Spans (start, end, name, is_test) of `mod name { ... }` blocks: what `super` means inside,
    and whether the block only builds for tests (`#[cfg(test)]`, `#[cfg(all(test, ...))]`)."""
    spans = []
    pattern = r"((?:#\[[^\]]*\]\s*)*)(?:pub(?:\s*\([^)]*\))?\s+)?\bmod\s+(\w+)\s*\{"
    for match in re.finditer(pattern, code):
        depth, j = 1, match.end()
        while j < len(code) and depth:
            depth += {"{": 1, "}": -1}.get(code[j], 0)
            j += 1
        cfgs = re.findall(r"#\[\s*cfg\s*\(([^\]]*)\)\s*\]", match.group(1))
        is_test = any(re.search(r"\btest\b", c) and "not(test)" not in c.replace(" ", "") for c in cfgs)
        spans.append((match.start(), j, match.group(2), is_test))
    return spans


# ---------------------------------------------------------------------------------------------
# The module tree


@dataclass(frozen=True)
class Use:
    """One path a file names: where, and the module path it resolves to from the crate root."""

    file: Path
    line: int
    path: tuple
    text: str
    in_test: bool


def module_path(src, file):
    """The module path of a file: src/segment/dense/mod.rs -> ("segment", "dense").

    The binary's root (src/main.rs) is the root too: its one module, `cli`, shares no name with
    the library's, so both fit in one namespace.
    """
    parts = list(file.relative_to(src).with_suffix("").parts)
    if parts[-1] == "mod" or parts in (["lib"], ["main"]):
        parts.pop()
    return tuple(parts)


class Tree:
    """The crate's files, their module paths, their children and what each module re-exports."""

    def __init__(self, root):
        self.root = root
        self.src = root / "src"
        self.files = sorted(self.src.rglob("*.rs"))
        self.lines = {f: f.read_text().splitlines() for f in self.files}
        self.code = {f: blank_comments_and_literals(f.read_text()) for f in self.files}
        self.inline = {f: inline_modules(self.code[f]) for f in self.files}
        self._uses = {}
        self.module = {f: module_path(self.src, f) for f in self.files}
        self.children = defaultdict(set)
        for path in self.module.values():
            if path:
                self.children[path[:-1]].add(path[-1])
        self.reexports = defaultdict(dict)
        for f in self.files:
            self._read_reexports(f)

    def _read_reexports(self, file):
        """`pub use child::{A, B as C}` in a module's own file: A and C lead to `child`.

        Without this, `use super::Model` would be an import of the parent module's file and
        `model.rs <-> engine.rs` would hide behind the parent's re-exports.
        """
        code, here = self.code[file], self.module[file]
        for match in re.finditer(r"\bpub(\s*\([^)]*\))?\s+use\s", code):
            paths, _ = parse_use_tree(code, match.end())
            for segments, _, alias in paths:
                full = self.resolve(file, match.start(), segments, relative=True)
                if full and full[: len(here)] == here and len(full) > len(here) + 1:
                    name = alias or full[-1]
                    if full[len(here)] in self.children[here] and name != full[len(here)]:
                        self.reexports[here][name] = full[len(here)]

    def scope(self, file, offset):
        """The module path at an offset of a file, inline `mod tests { ... }` blocks included."""
        inner = [name for start, end, name, _ in self.inline[file] if start < offset < end]
        return self.module[file] + tuple(inner)

    def resolve(self, file, offset, segments, relative=False):
        """A path as written at `offset` -> its module path from the crate root, or None.

        `crate::`, `$crate::` and (in the binary) `wordmask::` start at the root; `self::` at
        the current module and each `super::` one level up. A path with none of these is an
        external crate's, unless `relative` (a `pub use child::...` line) says it is the
        current module's.
        """
        head, rest = segments[0], list(segments[1:])
        if head in ("crate", "$crate", "wordmask"):
            return tuple(rest)
        scope = self.scope(file, offset)
        if head == "self":
            return scope + tuple(rest)
        if head == "super":
            scope = scope[:-1]
            while rest and rest[0] == "super":
                scope, rest = scope[:-1], rest[1:]
            return scope + tuple(rest)
        if relative and head in self.children[scope]:
            return scope + tuple(segments)
        return None

    def child(self, parent, name):
        """Which child module of `parent` a name leads to: the child itself, or the one that
        defines a name `parent` re-exports; None for the parent's own items."""
        if name in self.children[parent]:
            return name
        return self.reexports[parent].get(name)

    def uses(self, file):
        """Every path a file names in code, resolved from the crate root (read once per file)."""
        if file in self._uses:
            return self._uses[file]
        code = self.code[file]
        found, pos = [], 0
        start = re.compile(r"(?<![\w:])(\$?crate|super|self|wordmask)\s*::")
        while match := start.search(code, pos):
            paths, pos = parse_use_tree(code, match.start())
            pos = max(pos, match.end())
            for segments, last, _ in paths:
                full = self.resolve(file, match.start(), segments)
                if full is not None:
                    line = code.count("\n", 0, last) + 1
                    in_test = any(t and a < match.start() < b for a, b, _, t in self.inline[file])
                    found.append(Use(file, line, full, self.lines[file][line - 1].strip(), in_test))
        self._uses[file] = found
        return found


# ---------------------------------------------------------------------------------------------
# The rules


def layer_rows(root):
    """The layers of docs/architecture.md's block, top first, each a list of its modules."""
    text = (root / LAYERS_DOC).read_text()
    block = text.split("<!-- layers -->", 1)[1].split("```", 2)[1]
    return [line.split(" — ")[0].replace(",", " ").split() for line in block.splitlines()[1:] if line.strip()]


def layer_ranks(root):
    """Module -> depth in the layer block of docs/architecture.md (0 = top)."""
    return {module: depth for depth, row in enumerate(layer_rows(root)) for module in row}


def check_readme_map(root):
    """The README's short layer map (`web, cli → train → ...` after `<!-- layer map -->`) must
    name the same layers in the same order as docs/architecture.md, so the short copy cannot
    drift from the checked one."""
    readme = root / "README.md"
    if not readme.exists() or "<!-- layer map -->" not in readme.read_text():
        return []
    text = readme.read_text()
    line = text[: text.index("<!-- layer map -->")].count("\n") + 1
    block = text.split("<!-- layer map -->", 1)[1].split("```", 2)[1]
    body = " ".join(block.splitlines()[1:])
    shown = [sorted(part.replace(",", " ").split()) for part in body.split("→")]
    listed = [sorted(row) for row in layer_rows(root)]
    if shown == listed:
        return []
    return [
        f"README.md:{line}: the layer map differs from {LAYERS_DOC}'s layer list: "
        f"README {' → '.join(', '.join(r) for r in shown)}; list {' → '.join(', '.join(r) for r in listed)}"
    ]


def check_layers(tree, rank):
    """Rule 1: each import of another top-level module must point to a lower layer."""
    problems = []
    for file in tree.files:
        here = tree.module[file][0] if tree.module[file] else "cli" if file.name == "main.rs" else None
        if here is None:
            continue  # lib.rs only declares the modules
        rel = file.relative_to(tree.root)
        if here not in rank:
            problems.append(f"{rel}: module `{here}` is not in the layer list ({LAYERS_DOC})")
            continue
        for use in tree.uses(file):
            if not use.path:
                continue
            target = tree.child((), use.path[0]) or use.path[0]
            if target == here:
                continue
            if target not in rank:
                problems.append(f"{rel}:{use.line}: `{target}` is not in the layer list ({LAYERS_DOC})")
            elif rank[target] <= rank[here]:
                where = "the same layer as" if rank[target] == rank[here] else "a layer above"
                problems.append(f"{rel}:{use.line}: `{here}` imports `{target}`, {where} it: {use.text}")
    return problems


def engine_modules(tree):
    """The engines: each module in src/segment/mod.rs's ENGINES registry, and Point mode."""
    registry = tree.src / "segment" / "mod.rs"
    engines = {"point"}
    match = re.search(r"\bstatic\s+ENGINES\b[^=]*=\s*&\[(.*?)\]", tree.code.get(registry, ""), re.S)
    if match:
        engines |= set(re.findall(r"(\w+)::\w+", match.group(1)))
    return engines & tree.children[("segment",)]


def check_sibling_engines(tree):
    """Rule 2: an engine in src/segment/ imports no other engine (only shared modules)."""
    engines = engine_modules(tree)
    problems = []
    for file in tree.files:
        here = tree.module[file]
        if here[:1] != ("segment",) or len(here) < 2 or here[1] not in engines:
            continue
        for use in tree.uses(file):
            if use.path[:1] != ("segment",) or len(use.path) < 2:
                continue
            target = tree.child(("segment",), use.path[1])
            if target in engines and target != here[1]:
                problems.append(
                    f"{file.relative_to(tree.root)}:{use.line}: engine `{here[1]}` imports engine `{target}`; "
                    f"move what they share into a shared module of segment/: {use.text}"
                )
    return problems


def module_graphs(tree):
    """For each module with children: child -> child -> the first Use that makes that edge.

    Imports inside test-only modules are left out: a test may hold a kernel up against the
    layer that calls it, which is no knot in what gets built.
    """
    graphs = defaultdict(dict)
    for file in tree.files:
        here = tree.module[file]
        for depth in range(len(here)):
            parent, source = here[:depth], here[depth]
            if not parent or source not in tree.children[parent]:
                continue  # the crate root is rule 1's; inline modules are their file's
            for use in tree.uses(file):
                if use.in_test or use.path[:depth] != parent or len(use.path) <= depth:
                    continue
                target = tree.child(parent, use.path[depth])
                if target and target != source:
                    edges = graphs[parent].setdefault(source, {})
                    edges.setdefault(target, use)
    return graphs


def cycles(graph):
    """Every elementary cycle of a small graph, each once, starting from its least node."""
    found = []

    def walk(start, node, path):
        for nxt in sorted(graph.get(node, {})):
            if nxt == start:
                found.append(path + [start])
            elif nxt > start and nxt not in path:
                walk(start, nxt, path + [nxt])

    for start in sorted(graph):
        walk(start, start, [start])
    return found


def check_cycles(tree):
    """Rule 3: no cycle among the files (child modules) of one module."""
    problems = []
    for parent, graph in sorted(module_graphs(tree).items()):
        for cycle in cycles(graph):
            first = graph[cycle[0]][cycle[1]]
            steps = ", ".join(
                f"{graph[a][b].file.relative_to(tree.root)}:{graph[a][b].line} `{graph[a][b].text}`"
                for a, b in zip(cycle, cycle[1:])
            )
            problems.append(
                f"{first.file.relative_to(tree.root)}:{first.line}: cycle inside `{'::'.join(parent)}`: "
                f"{' -> '.join(cycle)} ({steps})"
            )
    return problems


def problems(root):
    """Every problem of the tree at `root`, one line each, in the rules' order."""
    tree = Tree(root)
    found = check_layers(tree, layer_ranks(root)) + check_sibling_engines(tree) + check_cycles(tree)
    found += check_readme_map(root)
    return list(dict.fromkeys(found))  # a grouped `super::dense::{self, Dense}` names one line twice


# ---------------------------------------------------------------------------------------------
# Self-test: CI's proof that the checker can fail

SCRATCH = {
    "README.md": "# Scratch\n\n<!-- layer map -->\n```text\nweb, cli → segment → error → nn\n```\n",
    "docs/architecture.md": """# Architecture\n\n<!-- layers -->\n```text
web, cli — bindings
segment — engines
nn — layers
error — the error type
```
""",
    "src/lib.rs": "pub mod error;\npub mod nn;\npub mod segment;\npub mod web;\npub use error::{Error, Result};\n",
    "src/main.rs": "mod cli;\nfn main() { cli::run() }\n",
    "src/cli/mod.rs": "use wordmask::{segment::Model, Error};\npub fn run() {}\n",
    "src/error.rs": "pub struct Error;\npub type Result<T> = std::result::Result<T, Error>;\n",
    "src/web.rs": "use crate::segment::Model;\n",
    "src/nn/mod.rs": "mod x;\nmod y;\nmod z;\n",
    "src/nn/x.rs": """use crate::nn::y::Y;
pub struct X;
#[cfg(all(test, feature = "cpu"))]
mod tests {
    use super::super::z::Z; // a test's import: with z.rs's own, no cycle in what gets built
}
""",
    "src/nn/z.rs": "use super::x::X;\npub struct Z;\n",
    "src/nn/y.rs": "use super::x::X;\npub struct Y;\n",
    "src/segment/mod.rs": """mod a;\nmod b;\npub mod dense;\npub mod groupvit;\nmod model;\nmod text;
pub use model::Model;
pub static ENGINES: &[&dyn Engine] = &[&dense::Dense, &groupvit::GroupVit];
""",
    "src/segment/model.rs": "use crate::error::Result;\npub struct Model;\n",
    "src/segment/text.rs": """use super::Model;
// use crate::web::Page; — a comment, not an import
const NOTE: &str = "crate::cli::run";
const BRACE: char = '{';
""",
    "src/segment/a.rs": "use super::b::B;\npub struct A;\n",
    "src/segment/b.rs": "use super::{a::A, text};\npub struct B;\n",
    "src/segment/dense/mod.rs": """mod blocks;
use crate::{
    error::{Error, Result},
    nn,
    web,
};
pub struct Dense;
""",
    "src/segment/dense/blocks.rs": "use super::super::text;\n",
    "src/segment/groupvit.rs": """use crate::{segment::model::Model, cli};
use super::dense::Dense;
pub struct GroupVit;
mod dense {
    pub struct Local; // its own `dense`, not the engine: `super` in `tests` means groupvit
}
#[cfg(test)]
mod tests {
    use super::dense::Local;
}
""",
}

EXPECTED = [
    ("src/segment/dense/mod.rs:5: `segment` imports `web`, a layer above it", "an engine importing web, grouped"),
    ("src/segment/groupvit.rs:1: `segment` imports `cli`, a layer above it", "an engine importing cli, grouped"),
    ("src/segment/groupvit.rs:2: engine `groupvit` imports engine `dense`", "a sibling-engine import"),
    ("src/segment/a.rs:1: cycle inside `segment`: a -> b -> a", "a two-file cycle"),
    ("src/nn/x.rs:1: cycle inside `nn`: x -> y -> x", "a cycle through crate::nn::y"),
    ("README.md:3: the layer map differs", "a README layer map out of order"),
]


def self_test():
    """Builds a scratch tree with one of each fault and checks that each is reported, and that
    the clean lines (comments, strings, shared modules, a test module's `super`) are not."""
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        for name, text in SCRATCH.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(text)
        found = problems(root)
    failures = [f"not reported: {what} ({line})" for line, what in EXPECTED if not any(p.startswith(line) for p in found)]
    unexpected = [p for p in found if not any(p.startswith(line) for line, _ in EXPECTED)]
    failures += [f"reported, but should not be: {p}" for p in unexpected]
    for p in found:
        print(f"  {p}")
    for f in failures:
        print(f"self-test: {f}")
    if failures:
        return 1
    print(f"self-test: the checker reports all {len(EXPECTED)} planted faults and nothing else")
    return 0


def main(argv):
    if argv[1:] == ["--self-test"]:
        return self_test()
    if argv[1:]:
        print("usage: python3 tools/check_layers.py [--self-test]", file=sys.stderr)
        return 2
    found = problems(ROOT)
    for p in found:
        print(p)
    if found:
        print(f"{len(found)} problems in the import structure ({LAYERS_DOC}, 'How it is built')")
        return 1
    print(f"import structure holds: {len(layer_ranks(ROOT))} modules in layers, engines apart, no cycles")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
