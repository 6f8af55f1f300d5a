#!/usr/bin/env bash
# tests/fixtures/semantic-colours-fusioner: a Fusioner head trained by `wordmask train fusioner`
# on tests/fixtures/colour-segmentation's train split, with the hand-built colour CLIP
# (tests/fixtures/semantic-colours) as the frozen backbone, stored as f16. The browser tests
# segment the dataset's held-out images with it; tests/native/train.rs runs the same training from
# scratch and checks the held-out mIoU.
# With `bert`: tests/fixtures/semantic-colours-fusioner-bert, the same with the hand-built colour
# BERT (tests/fixtures/bert-colours, mean pooling) for the words, which the page loads from the
# checkpoint's one folder.
#
#     cargo build --release && tools/make_colour_fusioner.sh [bert]
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${CARGO_TARGET_DIR:-target}/release/wordmask"
data=tests/fixtures/colour-segmentation
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
out=tests/fixtures/semantic-colours-fusioner
text=()
if [ "${1:-}" = bert ]; then
    out=tests/fixtures/semantic-colours-fusioner-bert
    text=(--text tests/fixtures/bert-colours --text-pooling mean)
fi
"$bin" train fusioner --backbone tests/fixtures/semantic-colours "${text[@]}" --dataset "$data" --format folder \
    --classes "$data/classes.txt" --out "$work/trained" --width 16 --layers 2 --heads 4 --epochs 40 \
    --warmup-epochs 1 --batch-size 8 --micro-batch 8 --views 4 --fusion-lr 5e-3 --decoder-lr 5e-3 \
    --backend cpu
rm -rf "$out"
"$bin" convert --model "$work/trained" --out "$out" --dtype f16
cp "$work/trained/train_state.json" "$out/"
"$bin" eval --model "$out" --dataset "$data" --format folder \
    --classes "$data/classes.txt" --backend cpu
