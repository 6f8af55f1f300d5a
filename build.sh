#!/usr/bin/env bash
# wordmask build script.
#   ./build.sh          build the web package: wasm32 release -> wasm-bindgen -> pkg/ (and the
#                       CPU fallback's modules -> pkg/cpu-relaxed/, pkg/threads/, pkg/threads-relaxed/)
#   ./build.sh serve    build, then serve www/ and pkg/ on http://localhost:8080, cross-origin isolated
#   ./build.sh test     install what the tests need, run every test (native on both backends, the wasm
#                       build, and the browser tests in Chromium)
#   ./build.sh setup    only install the toolchain pieces and system packages
set -euo pipefail
cd "$(dirname "$0")"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
WASM_FEATURES="web,wgpu,cpu"
# The CPU fallback's threads module (pkg/threads/): the CPU backend alone, built with atomics.
THREADS_FEATURES="threads"
# The CPU fallback alone on one thread with relaxed SIMD (pkg/cpu-relaxed/), no atomics.
CPU_RELAXED_FEATURES="web,cpu,relaxed"
# The crate is an rlib for native builds (a native cdylib would only cost link time); the
# wasm build asks for a cdylib with `cargo rustc --crate-type cdylib`.

say() { printf '\n== %s\n' "$*"; }

lock_version() { # version of a crate in Cargo.lock
    awk -v name="$1" '$0 == "name = \"" name "\"" { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock
}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else "$@"; fi; }

setup_system() {
    # A Vulkan driver (Mesa's llvmpipe on machines without a GPU) for the wgpu backend tests.
    if ! ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1 && ! ls /usr/share/vulkan/icd.d/*.json >/dev/null 2>&1; then
        say "installing Mesa's Vulkan drivers (mesa-vulkan-drivers, libvulkan1)"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mesa-vulkan-drivers libvulkan1 >/dev/null
    fi
}

setup_python() {
    # The exports are read back by the libraries that read them (tools/requirements-exports.txt),
    # in a venv outside the clone; the tests find it through WORDMASK_PYTHON.
    local venv="${WORDMASK_PYENV:-$HOME/.cache/wordmask/pyenv}"
    if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
        say "installing Debian's python3-venv"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    fi
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    if ! "$venv/bin/python" -m pip freeze 2>/dev/null | sort | comm -13 - <(grep -v '^#' tools/requirements-exports.txt | sort) | grep -q .; then
        return 0
    fi
    say "installing the exports' reference readers (pycocotools, shapely, OpenCV) into $venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -r tools/requirements-exports.txt
    export WORDMASK_PYTHON="$venv/bin/python"
}

setup_lint() {
    local missing=()
    rustup component list --installed | grep -q '^rustfmt' || missing+=(rustfmt)
    rustup component list --installed | grep -q '^clippy' || missing+=(clippy)
    if [ ${#missing[@]} -gt 0 ]; then
        say "adding the ${missing[*]} component(s)"
        rustup component add "${missing[@]}"
    fi
}

setup_rust() {
    if ! rustup target list --installed | grep -q '^wasm32-unknown-unknown$'; then
        say "adding the wasm32-unknown-unknown target"
        rustup target add wasm32-unknown-unknown
    fi
    # The standard library's source, which the threads module rebuilds with atomics.
    if ! rustup component list --installed | grep -q '^rust-src$'; then
        say "adding the rust-src component"
        rustup component add rust-src
    fi
    local want have
    want="$(lock_version wasm-bindgen)"
    have="$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)"
    if [ "$have" != "$want" ]; then
        say "installing wasm-bindgen-cli $want (the version in Cargo.lock; found '${have:-none}')"
        # Its own lockfile pins a crate version the registry no longer serves, so resolve afresh.
        cargo install --version "$want" wasm-bindgen-cli
    fi
}

# Both wasm modules: getrandom's browser backend, and +simd128 (WebAssembly's 128-bit SIMD; every
# browser with WebGPU has it) for the CPU fallback's matrix products and kernels. The threads
# module adds its own target features to the list.
WASM_RUSTFLAGS='--cfg getrandom_backend="wasm_js" -C target-feature=+simd128'

build_web() {
    setup_rust
    local started=$SECONDS lane
    mkdir -p pkg
    # Two lanes at once: pkg/ here, and the CPU fallback's modules alongside (their lines marked
    # [cpu]). Each module ends in a whole-program link on one core; run one after another, the
    # other core sat idle through each of them. In its own process group, so that a failure here
    # stops it too.
    set -m
    (set +m; build_cpu_modules 2>&1 | sed -u 's/^/[cpu] /') &
    lane=$!
    set +m
    trap "kill -- -$lane 2>/dev/null || true" EXIT
    build_main
    if ! wait "$lane"; then
        echo "building the CPU fallback's modules failed (the lines marked [cpu] above say why)" >&2
        exit 1
    fi
    trap - EXIT
    ls -l pkg/wordmask_bg.wasm pkg/cpu-relaxed/wordmask_bg.wasm pkg/threads/wordmask_bg.wasm pkg/threads-relaxed/wordmask_bg.wasm
    say "the four web modules built in $((SECONDS - started)) s"
}

build_main() {
    say "building the wasm32 core (profile wasm, features $WASM_FEATURES)"
    # The `wasm` profile (Cargo.toml) optimises the whole program for size, except the CPU
    # kernels. What it saved, and the modules' sizes: docs/performance.md (tools/wasm_size.sh
    # prints them for this build).
    RUSTFLAGS="$WASM_RUSTFLAGS" \
        cargo rustc --profile wasm --locked --lib --crate-type cdylib --target wasm32-unknown-unknown \
        --no-default-features --features "$WASM_FEATURES"
    say "wasm-bindgen -> pkg/"
    # pkg/'s own files only: the other lane writes the folders inside it.
    find pkg -maxdepth 1 -type f -delete
    rm -rf pkg/snippets
    # --remove-name-section: function names are debug information the page does not need.
    wasm-bindgen --target web --remove-name-section --out-dir pkg "$CARGO_TARGET_DIR/wasm32-unknown-unknown/wasm/wordmask.wasm"
    # No wasm-opt pass: Debian's binaryen 108 (wasm-opt -Oz) broke the module, and a current
    # one (npm binaryen 132) made it smaller but no smaller gzipped, at minutes per build.
}

build_cpu_modules() {
    build_cpu_relaxed
    build_threads
}

build_cpu_relaxed() {
    # The CPU fallback alone on one thread, its matrix kernel on relaxed SIMD's fused multiply-add:
    # what a page that is not cross-origin isolated (no threads) runs where the browser validates
    # relaxed SIMD, instead of pkg/ (a quarter of its size; pkg/'s kernel multiplies and adds in
    # two instructions). Its own target folder, so that it builds while pkg/ does.
    say "building the CPU fallback's one-thread relaxed-SIMD module (profile wasm, features $CPU_RELAXED_FEATURES) -> pkg/cpu-relaxed/"
    CARGO_TARGET_DIR="$CARGO_TARGET_DIR/cpu-relaxed" RUSTFLAGS="$WASM_RUSTFLAGS" \
        cargo rustc --profile wasm --locked --lib --crate-type cdylib --target wasm32-unknown-unknown \
        --no-default-features --features "$CPU_RELAXED_FEATURES"
    rm -rf pkg/cpu-relaxed
    wasm-bindgen --target web --remove-name-section --out-dir pkg/cpu-relaxed "$CARGO_TARGET_DIR/cpu-relaxed/wasm32-unknown-unknown/wasm/wordmask.wasm"
}

build_threads() {
    # Web Workers share one memory only if every crate, the standard library included, is built
    # with atomics: -Z build-std, which this same stable compiler accepts under RUSTC_BOOTSTRAP=1
    # (no second toolchain to install). Its own target folder, since the flags differ. The link:
    # a shared memory the page creates, with a 4 GiB maximum (shared memory must declare one, and
    # ViT-B/16's weights alone are 0.6 GB), and the thread-local storage symbols wasm-bindgen
    # sets up each worker's thread with. Two builds: pkg/threads/, and pkg/threads-relaxed/ with
    # relaxed SIMD's fused multiply-add in the matrix kernel (feature `relaxed`: only the crate
    # itself is built again), which the worker takes where the browser validates relaxed SIMD.
    local link=(--shared-memory --import-memory --max-memory=4294967296
        --export=__wasm_init_tls --export=__tls_size --export=__tls_align --export=__tls_base)
    local features out
    for features in "$THREADS_FEATURES" "$THREADS_FEATURES,relaxed"; do
        out=pkg/threads
        [[ $features == *relaxed* ]] && out=pkg/threads-relaxed
        say "building the CPU fallback's threads module (profile wasm, features $features, atomics) -> $out/"
        RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR="$CARGO_TARGET_DIR/threads" \
        RUSTFLAGS="$WASM_RUSTFLAGS,+atomics,+bulk-memory,+mutable-globals" \
            cargo rustc --profile wasm --locked --lib --crate-type cdylib --target wasm32-unknown-unknown \
            --no-default-features --features "$features" -Z build-std=panic_abort,std \
            -- "${link[@]/#/-Clink-arg=}"
        rm -rf "$out"
        wasm-bindgen --target web --remove-name-section --out-dir "$out" "$CARGO_TARGET_DIR/threads/wasm32-unknown-unknown/wasm/wordmask.wasm"
    done
}

setup_browser() {
    # Debian's Chromium (never a downloaded browser) and playwright-core to drive it.
    if [ ! -x "${CHROMIUM:-/usr/bin/chromium}" ]; then
        say "installing Debian's chromium for the browser tests"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    fi
    say "installing playwright-core (tests/browser)"
    (cd tests/browser && npm ci --no-audit --no-fund --silent)
}

run_tests() {
    say "import structure (tools/check_layers.py: the layer order of docs/architecture.md, engines apart, no cycles)"
    python3 tools/check_layers.py
    # The checker itself: each fault it looks for, planted in a scratch tree, must be reported.
    python3 tools/check_layers.py --self-test
    setup_lint
    say "formatting (cargo fmt --check, rustfmt.toml)"
    cargo fmt --check
    setup_system
    say "lints (cargo clippy --all-targets, warnings are errors)"
    cargo clippy --locked --workspace --all-targets -- -D warnings
    say "API docs (cargo doc, warnings are errors; the crate example is compiled with the tests)"
    RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --locked
    say "native tests (release profile, shared with the CLI; CPU and wgpu backends)"
    setup_python
    export WORDMASK_PYTHON="${WORDMASK_PYTHON:-${WORDMASK_PYENV:-$HOME/.cache/wordmask/pyenv}/bin/python}"
    local exports
    exports="$(mktemp -d)"
    # With a user's crate (tests/downstream: wordmask by path, default features off) running the
    # examples' code; the exports' edge cases are kept for their read-back below.
    WORDMASK_EXPORTS_DIR="$exports" cargo test --release --locked --workspace
    say "exports read back by pycocotools, shapely and OpenCV (tools/check_exports.py)"
    "$WORDMASK_PYTHON" tools/check_exports.py check "$exports/edge"
    "$WORDMASK_PYTHON" tools/check_exports.py check "$exports/many-classes"
    rm -rf "$exports"
    build_web
    setup_browser
    say "browser tests (Chromium: SwiftShader WebGPU and the CPU fallback)"
    (cd tests/browser && node --test)
    say "peer benchmark, smoke run (tests/fixtures/peer-tiny: outputs of wordmask and onnxruntime-web agree)"
    node tools/peer_bench.mjs tests/fixtures/peer-tiny --smoke
}

case "${1:-build}" in
    build) build_web ;;
    # Cross-origin isolated, so that the CPU fallback may take its threads module.
    serve) build_web; say "serving on http://localhost:${PORT:-8080}"; exec node tools/serve.mjs "${PORT:-8080}" --isolated ;;
    test) run_tests ;;
    setup) setup_system; setup_rust ;;
    *) echo "usage: ./build.sh [build|serve|test|setup]" >&2; exit 2 ;;
esac
