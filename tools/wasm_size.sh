#!/usr/bin/env bash
# Prints the size of each web module that is built (./build.sh), raw and gzipped (`gzip -9`, as
# docs/performance.md measures them), so a size is read off the build instead of copied by hand.
#   tools/wasm_size.sh           # the modules under pkg/
#   tools/wasm_size.sh DIR       # the modules under DIR instead (another build's pkg/)
set -euo pipefail
cd "$(dirname "$0")/.."
pkg="${1:-pkg}"

# Bytes -> "15,550,145 bytes (14.8 MiB)".
human() {
    local digits=$1 grouped=""
    while [ ${#digits} -gt 3 ]; do grouped=",${digits: -3}$grouped"; digits=${digits:0:${#digits}-3}; done
    printf '%s bytes (%s MiB)' "$digits$grouped" "$(awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }')"
}

printf '%-34s %-28s %s\n' module raw 'gzip -9'
for module in wordmask_bg.wasm cpu-relaxed/wordmask_bg.wasm threads/wordmask_bg.wasm threads-relaxed/wordmask_bg.wasm; do
    file="$pkg/$module"
    if [ -f "$file" ]; then
        printf '%-34s %-28s %s\n' "$file" "$(human "$(wc -c <"$file")")" "$(human "$(gzip -9c "$file" | wc -c)")"
    else
        printf '%-34s not built (./build.sh builds it)\n' "$file"
    fi
done
echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || echo ', with uncommitted changes to src/ or Cargo')"
