#!/usr/bin/env node
// `acrn-hsm bench` without the CLI dispatcher: the same code (dist/cli-bench.js, after
// `npm run build`), the same options. Usage: node benches/run-bench.mjs --quick --json
const { benchCommand } = await import(new URL('../dist/cli-bench.js', import.meta.url).href);
process.exitCode = await benchCommand(process.argv.slice(2), {
  stdout: (s) => process.stdout.write(s),
  stderr: (s) => process.stderr.write(s),
});
