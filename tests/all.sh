#!/usr/bin/env bash
# Every test of the project, from a fresh Debian machine: installs what is missing, runs the
# native suite on lavapipe (each kernel test under the full and the minimum WebGPU profile),
# checks that the crate builds for wasm32, and runs the browser tests in headless Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/setup.sh

cargo test --all-targets

if [ "${QWEN3VL_WASM_FALLBACK:-}" = 1 ]; then
    RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 /usr/bin/cargo build --lib --target wasm32-unknown-unknown -Zbuild-std=std,panic_abort
else
    cargo build --lib --target wasm32-unknown-unknown
fi
echo "wasm32 build: ok"

# The browser face (tests/browser, README "Tests"): the wasm package, then headless Chromium on
# SwiftShader against it, the package, the demo and the native CLI (built by `cargo test` above).
bash pkg/build.sh
node tests/browser/run.mjs
