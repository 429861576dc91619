#!/usr/bin/env node
// The `acrn-hsm` command. The implementation is ts/cli.ts, compiled to dist/cli.js.
import { main } from '../dist/cli.js';

process.exitCode = await main(process.argv.slice(2));
