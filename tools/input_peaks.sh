#!/usr/bin/env bash
# Prints the hostile-input memory table of docs/performance.md: each image that
# tests/native/images.rs builds (headers claiming huge sizes, a PNG whose colour profile inflates
# to 4 GB, huge label maps, the largest images allowed in their widest layout) through the
# commands that read it, with what the command did and its peak resident memory (the child's
# own, from wait4), under the machine and the commit. The same test fails past 1 GiB.
#   tools/input_peaks.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
echo "machine: $(lscpu | sed -n 's/^Model name: *//p' | head -n 1), $(nproc) cores"
echo "commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src Cargo.toml Cargo.lock || echo ', with uncommitted changes to src/ or Cargo')"
echo "building and running the test (cargo test --release)..." >&2
cargo test --release --locked --test native images::hostile_images_are_refused_or_read_within_1_gib \
    -- --exact --nocapture 2>/dev/null | grep '^|'
