#!/usr/bin/env bash
# Installs the pieces of the toolchain that a fresh machine lacks, and nothing else:
#  - a Rust toolchain that can build wasm32-unknown-unknown:
#      1. a rustup toolchain with the wasm32 target installed, if there is one;
#      2. otherwise Debian's rustc-web + cargo-web + rust-web-src + lld, used with
#         -Zbuild-std (the rustup toolchain here has no wasm32 target and cannot fetch one);
#  - wasm-bindgen-cli at exactly the version crates/acrn-hsm-wasm pins, into ~/.cache/acrn-hsm/tools
#    (override with ACRN_HSM_TOOLS);
#  - gcc (the ABI oracle) if it is missing.
# Idempotent: a second run only checks. Writes .toolchain/env for scripts/build-wasm.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
# wasm-bindgen-cli is shared by every clone on the machine (it takes minutes to compile).
tools="${ACRN_HSM_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/acrn-hsm/tools}"
mkdir -p .toolchain "$tools/bin"

log() { printf '[setup] %s\n' "$*" >&2; }

apt_updated=0
apt_install() {
  if ! command -v apt-get >/dev/null 2>&1; then
    log "apt-get is not available; install these packages by hand: $*"; exit 1
  fi
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  if [ $apt_updated -eq 0 ]; then $sudo apt-get -o DPkg::Lock::Timeout=600 update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=600 install -y -qq "$@" >/dev/null
}

command -v gcc >/dev/null 2>&1 && [ -f /usr/include/linux/acrn.h ] || { log "installing gcc and linux-libc-dev"; apt_install gcc linux-libc-dev; }
# Debian's SeaBIOS: the firmware `acrn-hsm run --bios seabios` and the KVM tests boot.
[ -f /usr/share/seabios/bios.bin ] || { log "installing seabios (firmware for acrn-hsm run --bios seabios)"; apt_install seabios; }
command -v cargo >/dev/null 2>&1 || { log "cargo is required (rustup) and was not found on PATH"; exit 1; }

# --- wasm32 toolchain -------------------------------------------------------------------------
wasm_mode=""
if rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  wasm_mode="rustup"
  log "wasm32: using the rustup toolchain's installed target"
else
  if ! { [ -x /usr/bin/rustc ] && [ -x /usr/bin/cargo ] && [ -d /usr/lib/rustlib/src/rust/library ] && command -v wasm-ld >/dev/null 2>&1; }; then
    log "wasm32: installing Debian's rustc-web, cargo-web, rust-web-src and lld"
    apt_install rustc-web cargo-web rust-web-src lld
  fi
  wasm_mode="debian-build-std"
  log "wasm32: using Debian's rustc-web with -Zbuild-std ($(/usr/bin/rustc --version))"
fi
printf 'WASM_MODE=%s\nWASM_BINDGEN=%s\n' "$wasm_mode" "$tools/bin/wasm-bindgen" > .toolchain/env

# --- wasm-bindgen-cli, pinned to the crate ---------------------------------------------------
want=$(sed -n 's/^wasm-bindgen = "=\([0-9.]*\)".*/\1/p' crates/acrn-hsm-wasm/Cargo.toml)
[ -n "$want" ] || { log "could not read the pinned wasm-bindgen version from crates/acrn-hsm-wasm/Cargo.toml"; exit 1; }
have=$("$tools/bin/wasm-bindgen" --version 2>/dev/null | awk '{print $2}' || true)
if [ "$have" != "$want" ]; then
  log "installing wasm-bindgen-cli $want into $tools (cargo install --locked; takes a few minutes)"
  cargo install --locked --quiet wasm-bindgen-cli --version "$want" --root "$tools"
fi
log "wasm-bindgen-cli $("$tools/bin/wasm-bindgen" --version | awk '{print $2}') ready"
