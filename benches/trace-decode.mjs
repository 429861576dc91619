// Trace decode throughput, native addon vs wasm module (records/s), on a generated trace of
// 1M records (override with N=...). Run after `npm run build`: `node benches/trace-decode.mjs`.
// Measures: decodeTrace (columns into JS typed arrays), traceReport (streaming decode +
// histograms, --by address) and, native only, traceReportFile (streamed from disk).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { native } from '../dist/native.js';
import '../dist/wasm/node.js';
import * as wasm from '../wasm/pkg/acrn_hsm_wasm.js';

const N = Number(process.env.N ?? 1_000_000);
const nat = native();

function generate(n) {
  const words = new BigUint64Array(n * 15);
  let t = 1_000_000n;
  let seed = 12345;
  const rnd = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 8);
  for (let i = 0; i < n; i++) {
    const o = i * 15;
    const kind = rnd() % 3;
    t += BigInt(200 + (rnd() % 800));
    words[o] = BigInt(i % 4);
    words[o + 1] = BigInt(kind);
    words[o + 2] = BigInt(rnd() & 1);
    words[o + 3] = 4n;
    words[o + 4] = 0n;
    words[o + 5] = 0n;
    words[o + 6] = kind === 0 ? BigInt(0x3f8 + (rnd() % 8)) : kind === 1 ? 0xfed00000n + BigInt(8 * (rnd() % 64)) : BigInt((0x1f << 19) | (4 * (rnd() % 64)));
    words[o + 7] = BigInt(rnd());
    let s = t;
    for (let k = 0; k < 7; k++) {
      words[o + 8 + k] = s;
      s += BigInt(50 + (rnd() % 2000));
    }
  }
  return nat.encodeTrace(
    new BigUint64Array([0n, 4n, 0n, 1n, 0n, 0n]),
    ['CLOCK_MONOTONIC', 'bench', 'dev0'],
    new BigUint64Array([0n, 0n, 0n, 1n << 40n]),
    words,
    true,
  );
}

function time(label, fn, reps = 3) {
  let best = Infinity;
  let out;
  for (let i = 0; i < reps; i++) {
    const t0 = process.hrtime.bigint();
    out = fn();
    const dt = Number(process.hrtime.bigint() - t0) / 1e9;
    best = Math.min(best, dt);
  }
  const rate = N / best;
  console.log(`${label.padEnd(34)} ${(best * 1000).toFixed(1).padStart(8)} ms  ${(rate / 1e6).toFixed(2).padStart(7)} M records/s`);
  return { rate, out };
}

console.log(`generating a trace of ${N} records...`);
const bytes = generate(N);
console.log(`${(bytes.length / 1e6).toFixed(1)} MB\n`);
const dn = time('decodeTrace native', () => nat.decodeTrace(bytes));
const dw = time('decodeTrace wasm', () => wasm.decodeTrace(bytes));
if (dn.out.count !== N || dw.out.count !== N) throw new Error('record count mismatch');
const rn = time('traceReport --by address native', () => nat.traceReport(bytes, 'address'));
const rw = time('traceReport --by address wasm', () => wasm.traceReport(bytes, 'address'));
if (rn.out !== rw.out) throw new Error('native and wasm reports differ');
const dir = mkdtempSync(join(tmpdir(), 'trace-bench-'));
const file = join(dir, 'bench.trace');
writeFileSync(file, bytes);
time('traceReportFile native (streamed)', () => nat.traceReportFile(file, 'address'));
rmSync(dir, { recursive: true, force: true });
console.log(`\nwasm/native throughput: decode ${(dw.rate / dn.rate).toFixed(2)}x, report ${(rw.rate / rn.rate).toFixed(2)}x`);
