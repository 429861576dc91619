// The CLI on random and truncated input: `decode FILE`, `trace report FILE`, `trace export FILE`
// with random bytes, truncated valid files and random argv. Every case ends with a one-line error
// on stderr (`acrn-hsm: ...`, optionally followed by the usage line) and a non-zero status, or
// succeeds; never a stack trace, never an "internal error" (an exception nobody anticipated).
//
// A few hundred cases run in process through the CLI's `main` (fast); a dozen through the real
// `bin/acrn-hsm.js` process check the exit status and stderr end to end.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { main } from '../dist/cli.js';
import { encodeIoRequest, encodeTrace } from '../dist/index.js';

const root = join(import.meta.dirname, '..');
const dir = mkdtempSync(join(tmpdir(), 'acrn-fuzz-cli-'));
const RUNS = Number(process.env.FUZZ_RUNS ?? 150);

function validPage(): Uint8Array {
  const p = new Uint8Array(4096);
  const dv = new DataView(p.buffer);
  for (let i = 0; i < 16; i++) dv.setUint32(i * 256 + 136, 3, true);
  p.set(encodeIoRequest({ type: 'pio', state: 'processing', direction: 'write', address: 0x3f8n, size: 1, value: 0x41, kernelHandled: false, completionPolling: false }), 0);
  return p;
}

function validTrace(): Uint8Array {
  return encodeTrace(
    { vm: { name: 'cli-fuzz', vcpuCount: 2 }, devices: [{ id: 0, name: 'uart', kind: 'pio', base: 0x3f8n, length: 8n }] },
    Array.from({ length: 30 }, (_, i) => ({
      vcpu: i & 1,
      type: 'pio' as const,
      direction: 'write' as const,
      size: 1,
      address: 0x3f8n,
      device: 0,
      value: BigInt(i),
      timestamps: { pending: BigInt(i * 1000), processing: BigInt(i * 1000 + 100), free: BigInt(i * 1000 + 900) },
    })),
  );
}

type Result = { status: number; stdout: string; stderr: string };

async function run(args: string[]): Promise<Result> {
  let stdout = '';
  let stderr = '';
  const status = await main(args, { stdout: (s) => (stdout += s), stderr: (s) => (stderr += s) });
  return { status, stdout, stderr };
}

/** The CLI's error contract. */
function expectCleanOutcome(r: Result, args: string[]): void {
  const ctx = JSON.stringify(args);
  expect(r.stderr, ctx).not.toMatch(/^\s+at /m); // no stack trace
  expect(r.stderr, ctx).not.toMatch(/internal error/);
  if (r.status === 0) return;
  expect(r.status === 1 || r.status === 2, ctx).toBe(true);
  if (r.stderr === '') {
    // No command at all (`acrn-hsm`, `acrn-hsm trace`): the usage, status 2.
    expect(r.status, ctx).toBe(2);
    expect(r.stdout, ctx).toMatch(/^usage: /);
    return;
  }
  const lines = r.stderr.split('\n').filter((l) => l.length > 0);
  // One error line...
  expect(lines[0], ctx).toMatch(/^acrn-hsm( trace)?: \S/);
  // ...then at most the usage text.
  for (const l of lines.slice(1)) expect(l, `${ctx}: ${r.stderr}`).toMatch(/^usage: |^\s+acrn-hsm /);
}

const page = validPage();
const trace = validTrace();
const outFile = join(dir, 'out.any');

/** A file made of random bytes, a truncated valid page or trace, or a corrupted one. */
const fileBytes = fc.oneof(
  fc.uint8Array({ maxLength: 5000 }),
  fc.nat(page.length).map((n) => page.slice(0, n)),
  fc.nat(trace.length).map((n) => trace.slice(0, n)),
  fc.tuple(fc.nat(trace.length - 1), fc.integer({ min: 0, max: 255 })).map(([i, b]) => {
    const t = trace.slice();
    t[i] = b;
    return t;
  }),
);

const word = fc.oneof(
  fc.constantFrom('decode', 'trace', 'report', 'export', 'abi', 'info', 'help', '--json', '--by', 'vcpu', 'device', 'nonsense', '--format', 'chrome', 'csv', 'xml', '-o', '--port', '-', '--', ''),
  fc.string({ maxLength: 12 }),
);

describe('fuzz: the CLI on random and truncated input', () => {
  it('decode / trace report / trace export with random, truncated and corrupted files', async () => {
    let n = 0;
    let failures = 0;
    await fc.assert(
      fc.asyncProperty(fileBytes, fc.constantFrom(0, 1, 2, 3, 4), async (bytes, which) => {
        const f = join(dir, `in-${n++ % 8}.bin`);
        writeFileSync(f, bytes);
        const args = [
          ['decode', f],
          ['decode', f, '--json'],
          ['trace', 'report', f, '--by', 'vcpu'],
          ['trace', 'export', f, '--format', 'csv', '-o', outFile],
          ['trace', 'export', f, '--format', 'chrome', '-o', outFile],
        ][which] as string[];
        const r = await run(args);
        expectCleanOutcome(r, args);
        if (r.status !== 0) failures++;
      }),
      { numRuns: RUNS * 2 },
    );
    expect(failures).toBeGreaterThan(0);
  });

  it('random argv', async () => {
    const f = join(dir, 'page.bin');
    writeFileSync(f, page);
    await fc.assert(
      fc.asyncProperty(fc.array(fc.oneof(word, fc.constant(f), fc.constant(join(dir, 'missing'))), { maxLength: 6 }), async (argv) => {
        // Not `demo` (runs a VM for seconds) nor `trace view` (serves until Ctrl-C): their
        // argument errors are covered by cli.test.ts.
        if (argv[0] === 'demo' || argv.includes('view')) return;
        // Outputs go to the temporary directory only.
        const args = argv.map((a, i) => (argv[i - 1] === '-o' ? outFile : a));
        expectCleanOutcome(await run(args), args);
      }),
      { numRuns: RUNS },
    );
  });

  it('the real process: non-zero status and a one-line error on stderr', () => {
    const cases: [string, Uint8Array, string[]][] = [
      ['empty', new Uint8Array(0), ['decode']],
      ['short page', page.slice(0, 4095), ['decode']],
      ['random', Uint8Array.from({ length: 777 }, (_, i) => (i * 131 + 7) & 0xff), ['trace', 'report']],
      ['half a trace', trace.slice(0, trace.length >> 1), ['trace', 'report']],
      ['header only', trace.slice(0, 40), ['trace', 'export']],
      ['page as trace', page, ['trace', 'report']],
    ];
    for (const [name, bytes, cmd] of cases) {
      const f = join(dir, `${name.replace(/ /g, '-')}.bin`);
      writeFileSync(f, bytes);
      const args = cmd[1] === 'export' ? [...cmd, f, '--format', 'csv', '-o', outFile] : [...cmd, f];
      const r = spawnSync(process.execPath, [join(root, 'bin/acrn-hsm.js'), ...args], { encoding: 'utf8' });
      expect(r.status, name).not.toBe(0);
      expect(r.stderr, name).not.toMatch(/^\s+at /m);
      const lines = r.stderr.split('\n').filter((l) => l.length > 0);
      expect(lines.length, `${name}: ${r.stderr}`).toBe(1);
      expect(lines[0]).toMatch(/^acrn-hsm: /);
    }
    for (const argv of [['frobnicate'], ['decode'], ['trace', 'report'], ['decode', '--bogus', 'x'], ['abi', '--json', 'extra']]) {
      const r = spawnSync(process.execPath, [join(root, 'bin/acrn-hsm.js'), ...argv], { encoding: 'utf8' });
      expect(r.status, argv.join(' ')).toBe(2);
      expectCleanOutcome({ status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr }, argv);
    }
  });
});
