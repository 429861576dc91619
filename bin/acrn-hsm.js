#!/usr/bin/env node
// The `acrn-hsm` command. The implementation is ts/cli.ts, compiled to dist/cli.js.
import { exitQuietlyOnEpipe, main } from '../dist/cli.js';

// `acrn-hsm abi | head -1`: a closed stdout ends the command quietly (status 141).
exitQuietlyOnEpipe(process.stdout);
process.exitCode = await main(process.argv.slice(2));
