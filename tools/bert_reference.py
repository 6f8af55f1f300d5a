"""The BERT fixtures (tests/fixtures/bert-tiny): a WordPiece vocabulary, the ids transformers'
`BertTokenizer` gives for a few hundred strings, and a random-weight `BertModel` with its outputs.

The vocabulary is built here, deterministically, from the strings of the CLIP tokenizer's cases
and the class lists in classes/ (no hub download): special tokens, every character seen (bare
and as a `##` continuation), the most frequent lower-cased words and word pieces. The ids then
come from transformers' own `BertTokenizer(vocab_file=...)`, so the Rust tokenizer is checked
against the reference algorithm (normaliser, pre-tokeniser, WordPiece) on a vocabulary of the
same layout as `bert-base-uncased`'s `vocab.txt`.

    /root/.venv-ovsam/bin/python tools/bert_reference.py

Versions: torch 2.15.0, transformers 5.23.0, tokenizers 0.23.3 (tools/requirements.txt); seed 0.
"""

import collections
import json
import pathlib
import unicodedata

import torch
from safetensors.torch import save_file
from transformers import BertConfig, BertModel, BertTokenizer

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "bert-tiny"
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

# Strings chosen to reach each rule: accents (stripped with lower-casing), CJK (split per
# character), punctuation (split off, Unicode's too), control and zero-width characters
# (dropped), other whitespace, ligatures and case mappings that change length, words over 100
# characters ([UNK]), special tokens typed in the text, unknown characters.
TRICKY = [
    "Café au lait", "naïve façade", "Ångström", "crème brûlée", "ŞİŞLİ", "İstanbul", "ΟΔΟΣ", "straße",
    "ﬁsh ﬂower", "Ǆemal", "東京タワー and 北京", "한국어 문장", "𠀀𪜀 rare CJK", "ｆｕｌｌｗｉｄｔｈ",
    "don't", "e.g. U.S.A.", "well-known — “quoted” «text» ¿qué? ¡sí!", "a\u200bb zero\u200dwidth",
    "tab\there\nnew\rline", "nbsp\u00a0space\u2003em\u3000ideographic", "ctrl\u0001\u0007chars\u007f",
    "\ufffdreplacement", "emoji 🐶🐱 dog", "a" * 100, "b" * 101, "pneumonoultramicroscopicsilicovolcanoconiosis",
    "[UNK] is typed", "a [MASK] cat", "[CLS] start [SEP] end", "[mask] lower", "x" + "\u0301" * 3,
    "Ｏｈ！", "1,234.56 €", "#hashtag @user", "snake_case and kebab-case", "", "   ", "\u0000null",
    "ǅ title ǆ", "ÆØÅ æøå", "Ω Ωmega", "ﬃ office", "ß ẞ", "ﬀ", "Ⅻ roman", "①②", "\u2028line sep",
]


def corpus():
    texts = [json.loads(line)["text"] for line in (ROOT / "tests/fixtures/tokenizer/cases.jsonl").read_text().splitlines()]
    for path in sorted((ROOT / "classes").glob("*.txt")):
        texts += [line for line in path.read_text().splitlines() if line.strip()]
    return texts


def build_vocab(texts):
    """Special tokens, [unused] padding as in bert-base-uncased, every character and its
    continuation, then frequent words and frequent word endings."""
    chars, words, endings = set(), collections.Counter(), collections.Counter()
    for text in texts:
        folded = "".join(c for c in unicodedata.normalize("NFD", text.lower()) if unicodedata.category(c) != "Mn")
        chars.update(c for c in folded if not c.isspace())
        for word in folded.split():
            word = "".join(c for c in word if c.isalnum())
            if len(word) > 1:
                words[word] += 1
                for k in (2, 3, 4):
                    if len(word) > k + 1:
                        endings[word[-k:]] += 1
    # A few characters are left out on purpose, so that some words become [UNK].
    chars = sorted(c for c in chars if c not in "🐱ǆ")
    vocab = SPECIAL[:1] + [f"[unused{i}]" for i in range(3)] + SPECIAL[1:]
    vocab += chars + ["##" + c for c in chars]
    vocab += [w for w, _ in words.most_common(1500) if w not in vocab]
    vocab += ["##" + e for e, _ in endings.most_common(300)]
    seen, out = set(), []
    for token in vocab:
        if token not in seen:
            seen.add(token)
            out.append(token)
    return out


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    texts = corpus()
    vocab = build_vocab(texts)
    (OUT / "vocab.txt").write_text("".join(t + "\n" for t in vocab))
    # transformers 5's BertTokenizer takes the vocabulary itself (`vocab`); `from_pretrained`
    # on a folder with only vocab.txt does the same.
    tokenizer = BertTokenizer(vocab={token: i for i, token in enumerate(vocab)})
    cases = []
    for text in TRICKY + texts[: 400]:
        ids = tokenizer(text)["input_ids"]
        cases.append({"text": text, "ids": ids})
    with open(OUT / "tokenizer_cases.jsonl", "w") as f:
        for case in cases:
            f.write(json.dumps(case, ensure_ascii=False) + "\n")

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=64, type_vocab_size=2,
    )
    model = BertModel(config).eval()
    # Random weights are small; widen the layer norms' and biases' spread so each term matters.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" in name or name.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.2)
    model.save_pretrained(OUT)
    tokenizer.save_pretrained(OUT)
    names = ["cat", "a photo of a dog.", "naïve façade", "traffic light", "東京", "[MASK] gone"]
    outputs = {}
    with torch.no_grad():
        for i, name in enumerate(names):
            enc = tokenizer(name, return_tensors="pt")
            out = model(**enc)
            outputs[f"ids.{i}"] = enc["input_ids"][0].to(torch.int64)
            outputs[f"last_hidden_state.{i}"] = out.last_hidden_state[0].contiguous()
            outputs[f"pooler_output.{i}"] = out.pooler_output[0].contiguous()
    save_file(outputs, OUT / "reference.safetensors")
    (OUT / "reference.json").write_text(json.dumps({"names": names}, ensure_ascii=False, indent=1) + "\n")
    print(f"{len(vocab)} tokens, {len(cases)} tokenizer cases, {len(names)} model cases -> {OUT}")


if __name__ == "__main__":
    main()
