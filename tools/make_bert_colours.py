#!/usr/bin/env python3
"""tests/fixtures/bert-colours: a tiny language-only text encoder in transformers' `BertModel`
layout whose class embeddings tell the colour dataset's class names apart, for the
known-behaviour run of a Fusioner head on a BERT (tests/native/train.rs: the colour CLIP's
vision tower, this BERT for the words, `wordmask train fusioner` on
tests/fixtures/colour-segmentation).

The vocabulary is every word of Fusioner's 32 templates, the four colours and a few other
words, lower-cased (an uncased `vocab.txt`, special tokens first as in `bert-base-uncased`).

The weights are set by hand (random draws do not do it: averaged over the 32 templates, the
words the prompts share dominate, and the classes of a random BERT stay at cosine 0.97 or more
under either pooling; on tests/fixtures/bert-tiny the `[CLS]` pooler gives every class the same
embedding). Width 8, one head, two layers, every layer norm plain (weight 1, bias 0):

- word embeddings: 0 for every word but the colours; colour c is `A u + B v_c`, with
  `u = (1, 1, 1, 1, -1, -1, -1, -1)` shared by the colours and `v_c` the pair `(1, -1)` at
  dimensions 2c and 2c + 1; position and token type embeddings 0. So after the embeddings'
  layer norm the colour word is a unit-variance vector and every other token is 0.
- layer 0's attention: queries constant (`S u / |u|`), keys the projection onto `u`, values
  and output the identity, so every token attends to the colour word (its score about 22, the
  others' 0) and takes its vector; its MLP is 0, so the layer norms leave the vectors as they
  are. Layer 1 is 0 (its attention adds nothing, its layer norms keep the vectors).
- pooler: the identity, so `[CLS]` pooling gives `tanh` of the colour's vector and mean pooling
  the vector itself: the classes are at cosine 0.2 (`A^2 |u|^2 / (A^2 |u|^2 + 2 B^2)`) with
  either.

The script checks both poolings' class embeddings (32 templates, pooled, normalised, averaged,
renormalised, as wordmask embeds them) with transformers and prints their cosines.

    /root/.venv-ovsam/bin/python tools/make_bert_colours.py

Versions: torch 2.15.0, transformers 5.23.0 (tools/requirements.txt); nothing random.
"""

import json
import pathlib

import torch
import torch.nn as nn
from transformers import BertConfig, BertModel, BertTokenizer

from fusioner_reference import TEMPLATES, encode_text_bert

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "bert-colours"
CLASSES = ["red", "green", "blue", "yellow"]
OTHER = ["background", "cat", "dog", "tree", "purple"]
WIDTH = 8
A, B = 0.5, 2.0
# The constant query's length: the colour word's attention score is about 0.45 S.
S = 50.0
MAX_COSINE = 0.5


def vocabulary():
    words = set(OTHER + CLASSES)
    for template in TEMPLATES:
        words.update(template.replace("{category}", " ").replace(".", " . ").lower().split())
    return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(words)


def build(vocab):
    config = BertConfig(vocab_size=len(vocab), hidden_size=WIDTH, num_hidden_layers=2, num_attention_heads=1,
                        intermediate_size=2 * WIDTH, max_position_embeddings=32, type_vocab_size=2)
    model = BertModel(config).eval()
    u = torch.tensor([1.0, 1, 1, 1, -1, -1, -1, -1])
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        for name, m in model.named_modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.fill_(1.0)
        for c, word in enumerate(CLASSES):
            v = torch.zeros(WIDTH)
            v[2 * c], v[2 * c + 1] = 1.0, -1.0
            model.embeddings.word_embeddings.weight[vocab.index(word)] = A * u + B * v
        attention = model.encoder.layer[0].attention
        attention.self.query.bias.copy_(S * u / u.norm())
        attention.self.key.weight.copy_(torch.outer(u, u) / u.dot(u))
        attention.self.value.weight.copy_(torch.eye(WIDTH))
        attention.output.dense.weight.copy_(torch.eye(WIDTH))
        model.pooler.dense.weight.copy_(torch.eye(WIDTH))
    model.requires_grad_(False)
    return model


def worst_cosine(embeddings):
    c = embeddings @ embeddings.T
    return c[~torch.eye(len(c), dtype=torch.bool)].max().item()


def main():
    torch.set_num_threads(1)
    vocab = vocabulary()
    tokenizer = BertTokenizer(vocab={t: i for i, t in enumerate(vocab)})
    for prompt in (t.format(category=c) for t in TEMPLATES for c in CLASSES):
        assert tokenizer.unk_token_id not in tokenizer(prompt)["input_ids"], prompt
    model = build(vocab)
    cosines = {p: worst_cosine(encode_text_bert(model, tokenizer, CLASSES, p)) for p in ("cls", "mean")}
    print("largest cosine between classes: " + ", ".join(f"{p} {c:.3f}" for p, c in cosines.items()))
    assert max(cosines.values()) < MAX_COSINE, cosines
    OUT.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(OUT)
    (OUT / "vocab.txt").write_text("".join(t + "\n" for t in vocab))
    (OUT / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True, "tokenizer_class": "BertTokenizer"}) + "\n")
    total = sum(p.stat().st_size for p in OUT.iterdir())
    print(f"wrote {OUT}: {len(vocab)} tokens, {total / 1e3:.0f} KB")


if __name__ == "__main__":
    main()
