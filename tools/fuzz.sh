#!/usr/bin/env bash
# Fuzz the parsers (needs nightly and cargo-fuzz: `rustup toolchain install nightly`,
# `cargo install cargo-fuzz`). Usage: tools/fuzz.sh [TARGET ...] [-- SECONDS]
# Targets: safetensors torch_checkpoint config labels tokenizer wordpiece cli_args y4m (all when none is named).
# Each runs SECONDS (default 600) from fuzz/seeds/<target>, growing fuzz/corpus/<target>;
# a crash lands in fuzz/artifacts/<target>/. Copy it to fuzz/regressions/<target>/ with the fix:
# `cargo test --release --test native fuzz_regressions` replays seeds and regressions on stable.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
targets=()
seconds=600
while [ $# -gt 0 ]; do
  if [ "$1" = "--" ]; then seconds=${2:?seconds}; break; fi
  targets+=("$1"); shift
done
[ ${#targets[@]} -gt 0 ] || targets=(safetensors torch_checkpoint config labels tokenizer wordpiece cli_args y4m)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo +nightly fuzz build --sanitizer none --fuzz-dir .
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  echo "== $t: ${seconds}s"
  cargo +nightly fuzz run --sanitizer none --fuzz-dir . "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=20 -print_final_stats=1
done
