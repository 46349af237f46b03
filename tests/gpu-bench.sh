#!/usr/bin/env bash
# One command for a real-GPU measurement (issue 9): the kernel table (`kernel-bench`) and the
# end-to-end table (`qwen3-vl bench --synthetic 2b --profile`) on whatever Vulkan adapter wgpu
# picks (high performance first), from prebuilt release binaries, each table headed by the
# adapter's name. On an H100 it takes a few minutes (the synthetic 2B's load quantises ~4 GB of
# weights on the CPU); on lavapipe, much longer.
#
#   cargo build --release --bin kernel-bench --bin qwen3-vl      # once, where cargo is
#   bash tests/gpu-bench.sh [--only NAME] [--weights q4|f16]
#
# --only NAME keeps the kernel rows whose name contains NAME (e.g. gemv); --weights is bench's.
# Binaries come from $BIN_DIR, else $CARGO_TARGET_DIR/release, else target/release.
#
# Vulkan: wgpu needs the loader (libvulkan.so.1: Debian/Ubuntu `libvulkan1`) and a driver's ICD
# manifest (NVIDIA: the driver's nvidia_icd.json; Mesa: `mesa-vulkan-drivers`, whose lavapipe
# runs on the CPU). On a machine with neither apt nor the loader (a bare container holding the
# NVIDIA driver, like the lab's device machines), fetch the loader's .deb elsewhere and unpack
# it over /: in the repo root, `echo /.gl/ >>.git/info/exclude; mkdir -p .gl /tmp/amd64/partial;
# o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64';
# apt-get $o update; (cd .gl && apt-get $o download libvulkan1)`, then on the GPU machine
# `for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig` before this script. This script finds
# NVIDIA's manifest under /usr/local/nvidia (where such containers mount it) by itself; any
# other location goes in VK_DRIVER_FILES. Carry target/release/kernel-bench,
# target/release/qwen3-vl and .gl to that machine.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${BIN_DIR:-${CARGO_TARGET_DIR:-$root/target}/release}"
only=()
weights=()
while [ $# -gt 0 ]; do
    case "$1" in
        --only) only=(--only "${2:?--only needs a name}"); shift 2 ;;
        --weights) weights=(--weights "${2:?--weights needs q4 or f16}"); shift 2 ;;
        *) echo "usage: tests/gpu-bench.sh [--only NAME] [--weights q4|f16]" >&2; exit 2 ;;
    esac
done

fail() {
    echo "gpu-bench: $*" >&2
    exit 1
}

for b in kernel-bench qwen3-vl; do
    [ -x "$bin/$b" ] || fail "no $bin/$b: build it with \`cargo build --release --bin kernel-bench --bin qwen3-vl\` (or set BIN_DIR)"
done

# The Vulkan loader, then at least one driver manifest.
if [ "$(uname -s)" = Linux ]; then
    ldconfig=$(command -v ldconfig || echo /sbin/ldconfig)
    if ! "$ldconfig" -p 2>/dev/null | grep -q 'libvulkan\.so\.1'; then
        fail "no Vulkan loader (libvulkan.so.1): install it (\`apt-get install libvulkan1\`), or unpack its .deb over / as this script's header says"
    fi
    nvidia_icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
    if [ -z "${VK_DRIVER_FILES:-}${VK_ICD_FILENAMES:-}" ] && [ -f "$nvidia_icd" ]; then
        export VK_DRIVER_FILES="$nvidia_icd"
    fi
    manifests=$(ls /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json /usr/local/share/vulkan/icd.d/*.json 2>/dev/null || true)
    manifests+="${VK_DRIVER_FILES:-}${VK_ICD_FILENAMES:-}"
    [ -n "$manifests" ] || fail "no Vulkan driver manifest (ICD): install the GPU's Vulkan driver (NVIDIA's ships nvidia_icd.json; \`apt-get install mesa-vulkan-drivers\` gives lavapipe, a CPU) or point VK_DRIVER_FILES at its .json"
fi
export WGPU_BACKEND="${WGPU_BACKEND:-vulkan}"
# lavapipe warns without a private runtime dir.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/qwen3vl-xdg}"
mkdir -p -m 0700 "$XDG_RUNTIME_DIR"

# bench's --profile comes with the decode engine (issue 9): check for it before the long run.
# An unknown flag fails at parsing, before anything loads; with it, the bad size fails instead.
probe=$("$bin/qwen3-vl" bench --profile --synthetic none 2>&1 || true)
if echo "$probe" | grep -qiE '(unknown|unexpected|unrecognized).*--profile'; then
    fail "this qwen3-vl has no \`bench --profile\` (GPU time per kernel family; issue 9's decode engine adds it): rebuild from a tree that has it. It said: $probe"
fi

echo "## kernel-bench ($(date -u +%FT%TZ), $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo 'no git'))"
"$bin/kernel-bench" --reps 5 "${only[@]}"
echo
echo "## qwen3-vl bench --synthetic 2b --profile ${weights[*]}"
"$bin/qwen3-vl" bench --synthetic 2b --profile "${weights[@]}"
