#!/usr/bin/env bash
# Builds crates/acrn-hsm-wasm for wasm32-unknown-unknown and runs wasm-bindgen on it, which is what
# wasm-pack does (wasm-pack itself needs a rustup wasm32 target, which this machine cannot fetch).
# Output: wasm/pkg/ (acrn_hsm_wasm.js, acrn_hsm_wasm_bg.wasm, typings) — generated, never edited.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f .toolchain/env ] || bash scripts/setup-toolchain.sh
. .toolchain/env
target_dir=target/wasm
case "$WASM_MODE" in
  rustup)
    cargo build --release -p acrn-hsm-wasm --target wasm32-unknown-unknown --target-dir "$target_dir" ;;
  debian-build-std)
    RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 \
    CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=wasm-ld \
      /usr/bin/cargo build --release -p acrn-hsm-wasm --target wasm32-unknown-unknown \
      --target-dir "$target_dir" -Zbuild-std=std,panic_abort ;;
  *) echo "unknown WASM_MODE '$WASM_MODE' in .toolchain/env; rerun scripts/setup-toolchain.sh" >&2; exit 1 ;;
esac
rm -rf wasm/pkg
"$WASM_BINDGEN" --target web --out-dir wasm/pkg \
  "$target_dir/wasm32-unknown-unknown/release/acrn_hsm_wasm.wasm"
if [ -x node_modules/.bin/wasm-opt ]; then
  node_modules/.bin/wasm-opt -O3 wasm/pkg/acrn_hsm_wasm_bg.wasm -o wasm/pkg/acrn_hsm_wasm_bg.wasm
fi
ls -l wasm/pkg/*.wasm >&2
