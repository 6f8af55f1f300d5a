#!/usr/bin/env python3
"""The machine's practical f32 matrix-product peak: numpy's `sgemm` (OpenBLAS in numpy's wheels).

    python3 tools/gemm_peak.py [--threads N] [--size 2048] [--repeats 5]

Multiplies two random f32 matrices of SIZE x SIZE on N threads (all cores by default), `--repeats`
times after one warm-up product, and prints one line of JSON:
`{"threads": N, "size": SIZE, "gflops": best, "median_gflops": ..., "times_ms": [...], "blas": ...}`
with GFLOP/s = 2 * SIZE^3 / time (a multiply-add counts two). `tools/peer_bench.mjs` runs it on
1 thread and on the native rows' thread count, in the same run as the rows it compares with it.

The thread count has to be set before numpy loads its BLAS, so the variables are set here first.
Needs numpy only (tools/requirements.txt, or the exports' venv of `./build.sh test`).
"""

import argparse
import json
import os
import sys
import time


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.threads < 1 or args.size < 1 or args.repeats < 1:
        parser.error("--threads, --size and --repeats must be at least 1")
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(args.threads)
    try:
        import numpy as np
    except ImportError:
        sys.exit("numpy is not installed here (pip install numpy, or the venv of tools/requirements.txt)")

    rng = np.random.default_rng(0)
    a = rng.standard_normal((args.size, args.size), dtype=np.float32)
    b = rng.standard_normal((args.size, args.size), dtype=np.float32)
    out = np.empty_like(a)
    np.matmul(a, b, out=out)  # warm-up: threads started, pages touched
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        np.matmul(a, b, out=out)
        times.append(time.perf_counter() - start)
    flops = 2 * args.size**3
    blas = None
    try:
        config = np.show_config(mode="dicts")
        blas = config.get("Build Dependencies", {}).get("blas", {}).get("name")
    except (TypeError, AttributeError):
        pass
    print(json.dumps({
        "threads": args.threads,
        "size": args.size,
        "gflops": round(flops / min(times) / 1e9, 2),
        "median_gflops": round(flops / sorted(times)[len(times) // 2] / 1e9, 2),
        "times_ms": [round(t * 1e3, 3) for t in times],
        "numpy": np.__version__,
        "blas": blas,
    }))


if __name__ == "__main__":
    main()
