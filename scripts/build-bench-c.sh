#!/usr/bin/env bash
# Builds the C side of the benchmark into target/bench-c/:
#   floor             the two-thread slot hand-off floor (spin and futex), no Rust needed
#   reference_client  the C reference device model over the emulator's C ABI
#   kvm_floor         a plain C KVM loop answering the real-guest benchmark's ports (bench --guest)
# The C ABI is crates/acrn-hsm-capi, built with cargo and linked statically.
#
# Usage: scripts/build-bench-c.sh [--debug]
#   --debug   build the capi crate with the dev profile (fast to build, slow to run; for smoke
#             tests). Default: release (the profile to measure with).
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
cargo_flags=(--release)
if [[ "${1:-}" == "--debug" ]]; then
  profile=debug
  cargo_flags=()
fi

out=target/bench-c
[[ $profile == debug ]] && out=target/bench-c/debug
mkdir -p "$out"

CC=${CC:-gcc}
CFLAGS=(-O2 -pthread -Wall -Wextra -Werror -std=gnu11)

"$CC" "${CFLAGS[@]}" -o "$out/floor" benches/c/floor.c -lm
"$CC" "${CFLAGS[@]}" -o "$out/kvm_floor" benches/c/kvm_floor.c

cargo build "${cargo_flags[@]}" -p acrn-hsm-capi --quiet
lib="target/$profile/libacrn_hsm_capi.a"
[[ -f $lib ]] || { echo "build-bench-c: $lib missing" >&2; exit 1; }
"$CC" "${CFLAGS[@]}" -Ibenches/c -o "$out/reference_client" benches/c/reference_client.c \
  "$lib" -lpthread -ldl -lm -lrt

echo "build-bench-c: $out/floor $out/kvm_floor $out/reference_client ($profile)"
