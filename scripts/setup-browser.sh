#!/usr/bin/env bash
# Installs the browser the viewer's end-to-end tests drive: Debian's `chromium` package at
# /usr/bin/chromium. Nothing is downloaded from anywhere but the Debian archive (no
# playwright-managed browser builds). Idempotent: does nothing when the browser is there.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=sudo
  else
    echo "setup-browser: /usr/bin/chromium is missing; install it as root: apt-get update && apt-get install -y chromium" >&2
    echo "setup-browser: (the viewer's browser tests are skipped until then)" >&2
    exit 0
  fi
else
  SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get -o DPkg::Lock::Timeout=600 update -q
$SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends chromium fonts-dejavu-core
/usr/bin/chromium --version >&2
