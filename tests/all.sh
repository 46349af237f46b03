#!/usr/bin/env bash
# Every test of the project, from a fresh Debian machine: installs what is missing, runs the
# native suite on lavapipe (each kernel test under the full and the minimum WebGPU profile),
# checks that the crate builds for wasm32, and runs the browser tests in headless Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/setup.sh

cargo test --all-targets

# The browser face (tests/browser, README "Tests"): the wasm package (pkg/build.sh: the crate's
# release wasm32 build, which is also the check that nothing native-only crept into the core),
# then headless Chromium on SwiftShader against it, the package, the demo and the native CLI
# (built by `cargo test` above).
bash pkg/build.sh
echo "wasm32 build: ok"
node tests/browser/run.mjs
