#!/usr/bin/env bash
# Builds the browser package's wasm: the crate for wasm32 (release), then wasm-bindgen's ES
# module glue (`--target web`) into pkg/dist/wasm/ (pkg/src/engine.js imports it from there),
# then `wasm-opt -Oz` with QWEN3VL_WASM_OPT=1. Prints the .wasm's raw and gzip sizes.
# tests/setup.sh installs wasm-bindgen-cli (pinned to the crate's wasm-bindgen) when missing.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
source tests/setup.sh

target=wasm32-unknown-unknown
if [ "${QWEN3VL_WASM_FALLBACK:-}" = 1 ]; then
    # Debian's rust-web toolchain: std built from source for the target (tests/setup.sh).
    RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 /usr/bin/cargo build --lib --release --target $target -Zbuild-std=std,panic_abort
else
    cargo build --lib --release --target $target
fi
wasm="${CARGO_TARGET_DIR:-target}/$target/release/qwen3_vl_webgpu.wasm"

out=pkg/dist/wasm
rm -rf "$out"
"$WASM_BINDGEN" --target web --out-dir "$out" "$wasm"
glue_wasm="$out/qwen3_vl_webgpu_bg.wasm"
if [ "${QWEN3VL_WASM_OPT:-}" = 1 ]; then
    # Opt-in: Debian 12's binaryen 108 shrinks the .wasm by 20% (1.07 MiB gzip instead of 1.18)
    # but breaks wasm-bindgen's externref table (init fails in Chromium); a newer one may not.
    wasm-opt -Oz --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext --enable-mutable-globals \
        --enable-reference-types --enable-multivalue "$glue_wasm" -o "$glue_wasm.opt" && mv "$glue_wasm.opt" "$glue_wasm"
fi
raw=$(stat -c %s "$glue_wasm")
gz=$(gzip -9 -c "$glue_wasm" | wc -c)
echo "$out: $(ls "$out" | tr '\n' ' ')"
awk -v f="$glue_wasm" -v r="$raw" -v g="$gz" 'BEGIN { printf "%s: %d bytes (%.2f MiB) raw, %d bytes (%.2f MiB) gzip -9\n", f, r, r / 1048576, g, g / 1048576 }'
