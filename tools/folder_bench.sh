#!/usr/bin/env bash
# Prints the folder-mode scale table of docs/performance.md: `wordmask segment --images` over
# folders of N small painted photos (the four-colour scene of the tests, 112x84, each moved along
# by a few pixels so that no two are alike), every format written, and for each N the wall time,
# images a second and the peak resident memory (`/usr/bin/time -v`), under the machine and the
# commit. Throughput and memory should stay flat in N: each image is read, labelled, written and
# let go, and only the merged COCO file at the end holds every image's objects.
#   tools/folder_bench.sh [N ...]          # default: 100 1000
# MODEL (default: the colour CLIP of the tests, tests/fixtures/semantic-colours) and
# BACKEND (default: cpu) choose what runs; BENCH_DIR keeps the folders (default: a temporary one).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(100 1000)
model="${MODEL:-tests/fixtures/semantic-colours}"
backend="${BACKEND:-cpu}"
[ -x /usr/bin/time ] || { echo "needs GNU time at /usr/bin/time (apt-get install time)" >&2; exit 1; }
cargo build --release --locked >&2
wordmask="$CARGO_TARGET_DIR/release/wordmask"
work="${BENCH_DIR:-$(mktemp -d)}"
[ -n "${BENCH_DIR:-}" ] || trap 'rm -rf "$work"' EXIT
mkdir -p "$work"

paint() { # paint N photos into DIR (standard library only: PNGs written with zlib)
    python3 - "$1" "$2" <<'EOF'
import json, struct, sys, zlib
from pathlib import Path
n, out = int(sys.argv[1]), Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
scene = json.loads(Path("tests/fixtures/images/scene.json").read_text())
w, h = scene["width"] // 4, scene["height"] // 4
base = [[(0, 0, 0)] * w for _ in range(h)]
for r in scene["regions"]:
    for y in range(r["y"][0] // 4, r["y"][1] // 4):
        for x in range(r["x"][0] // 4, r["x"][1] // 4):
            base[y][x] = tuple(r["rgb"])
def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
for k in range(n):
    shift = (k * 3) % w
    rows = b"".join(b"\0" + bytes(c for x in range(w) for c in base[y][(x + w - shift) % w]) for y in range(h))
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(rows, 6)) + chunk(b"IEND", b"")
    (out / f"photo-{k:05d}.png").write_bytes(png)
EOF
}

echo "machine: $(lscpu | sed -n 's/^Model name: *//p' | head -n 1), $(nproc) cores; backend $backend; model $model"
echo "commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src Cargo.toml Cargo.lock || echo ', with uncommitted changes to src/ or Cargo')"
echo
echo "| images | wall | images/s | peak RSS |"
echo "| ---: | ---: | ---: | ---: |"
for n in "${sizes[@]}"; do
    photos="$work/photos-$n" out="$work/labels-$n"
    [ -d "$photos" ] || paint "$n" "$photos"
    rm -rf "$out"
    /usr/bin/time -v -o "$work/time-$n.txt" "$wordmask" segment --model "$model" --images "$photos" --out "$out" \
        --labels "yellow, green, red, blue" --format coco,yolo,labelme,voc --backend "$backend" \
        --background none --threshold 0 --templates single 2> "$work/stderr-$n.txt" || {
        cat "$work/stderr-$n.txt" >&2
        exit 1
    }
    wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$work/time-$n.txt")
    rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$work/time-$n.txt")
    seconds=$(echo "$wall" | awk -F: '{ s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; print s }')
    done_images=$(python3 -c "import json,sys; print(len(json.load(open(sys.argv[1]))['images']))" "$out/coco.json")
    [ "$done_images" = "$n" ] || { echo "coco.json holds $done_images images, not $n" >&2; exit 1; }
    awk -v n="$n" -v s="$seconds" -v kb="$rss" -v wall="$wall" \
        'BEGIN { printf "| %d | %s | %.1f | %.0f MiB |\n", n, wall, n / s, kb / 1024 }'
done
