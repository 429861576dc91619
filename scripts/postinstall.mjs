// `npm install` in a clone of the repository sets everything up: the toolchain pieces that are
// missing (scripts/setup-toolchain.sh), Debian's Chromium for the viewer's browser tests
// (scripts/setup-browser.sh), the native addon, the wasm module, the TypeScript and the viewer page.
// In an installed copy of the package (no Cargo.toml beside it) there is nothing to build.
import { existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
if (!existsSync(join(root, 'Cargo.toml')) || process.env.ACRN_HSM_SKIP_BUILD === '1') {
  process.exit(0);
}
for (const [what, cmd, args] of [
  ['toolchain', 'bash', ['scripts/setup-toolchain.sh']],
  ['browser', 'bash', ['scripts/setup-browser.sh']],
  ['build', 'npm', ['run', 'build']],
]) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) {
    console.error(`acrn-hsm set-up failed at the ${what} step (exit ${r.status ?? r.signal}).`);
    process.exit(r.status ?? 1);
  }
}
