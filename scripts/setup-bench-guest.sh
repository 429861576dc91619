#!/usr/bin/env bash
# Set-up of `acrn-hsm bench --guest` and `--virtio` (not part of `npm install`): Debian's QEMU,
# whose KVM accelerator (and virtio-blk-pci) is the reference, Debian's SeaBIOS (the --virtio
# guest's firmware) and the C programs (target/bench-c/kvm_floor, the plain C KVM loop).
# Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '[setup-bench-guest] %s\n' "$*" >&2; }
if ! command -v qemu-system-x86_64 >/dev/null 2>&1 || [ ! -e /usr/share/seabios/bios.bin ]; then
  command -v apt-get >/dev/null 2>&1 || { log "apt-get is not available; install qemu-system-x86_64 and SeaBIOS by hand"; exit 1; }
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  log "installing qemu-system-x86 and seabios (apt-get, no recommends)"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends qemu-system-x86 seabios >/dev/null
fi
log "$(qemu-system-x86_64 --version | head -1)"
[ -x target/bench-c/kvm_floor ] || bash scripts/build-bench-c.sh
[ -e /dev/kvm ] || log "warning: /dev/kvm is missing: bench --guest will skip"
