#!/usr/bin/env bash
# Builds the trace viewer (web/) into dist-web/: type-checks it, then bundles it with Vite. It
# needs the wasm module (wasm/pkg/, from `npm run build:wasm`), which Vite copies beside the
# bundle. `acrn-hsm trace view` serves dist-web/; any static host can too.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f wasm/pkg/acrn_hsm_wasm_bg.wasm ]; then
  echo "build-web: wasm/pkg/ is missing; run npm run build:wasm first" >&2
  exit 1
fi
node_modules/.bin/tsc -p web/tsconfig.json
node_modules/.bin/vite build --config web/vite.config.ts --logLevel warn
ls -l dist-web/assets/*.wasm >&2
