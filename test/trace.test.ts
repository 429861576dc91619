// Traces: the native addon and the wasm module decode, report and export a generated trace
// identically; the report has the documented shape and counts; the CLI reports and exports
// files; bad files give one-line errors naming the offset.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { AcrnHsmError } from '../dist/errors.js';
import { native } from '../dist/native.js';
import { makeTraceApi, pciAddress, TRACE_STAMPS, type TraceBinding, type TraceRecordInit } from '../dist/trace.js';
import { traceCommand } from '../dist/cli-trace.js';
import '../dist/wasm/node.js';
import * as wasmPkg from '../wasm/pkg/acrn_hsm_wasm.js';
import { pickOne, randInt, rng } from './support/random.js';

const nat = makeTraceApi(() => native() as unknown as TraceBinding);
const wasm = makeTraceApi(() => wasmPkg as unknown as TraceBinding);

const header = {
  clock: { source: 'CLOCK_MONOTONIC', resolutionNs: 1, startNs: 5_000_000n, wallStartNs: 1_700_000_000_000_000_000n },
  vm: { vmid: 2, vcpuCount: 4, completion: 'notify' as const, name: 'vm-trace' },
  devices: [
    { id: 0, name: 'uart0', kind: 'pio' as const, base: 0x3f8, length: 8 },
    { id: 1, name: 'hpet', kind: 'mmio' as const, base: 0xfed00000n, length: 0x400 },
    { id: 2, name: 'lpc', kind: 'pci' as const, base: pciAddress(0, 0x1f, 0, 0), length: 0x1000 },
  ],
};

function records(seed: number, n: number): TraceRecordInit[] {
  const r = rng(seed);
  let t = 6_000_000n;
  const out: TraceRecordInit[] = [];
  for (let i = 0; i < n; i++) {
    const kind = randInt(r, 3);
    t += BigInt(100 + randInt(r, 1000));
    let s = t;
    const step = () => (s += BigInt(50 + randInt(r, 3000)));
    const unclaimed = r() < 0.1;
    const ts = {
      pending: t,
      processing: step(),
      handlerStart: step(),
      handlerEnd: step(),
      notify: step(),
      complete: step(),
      free: r() < 0.1 ? 0n : step(),
    };
    const address =
      kind === 0 ? BigInt(0x3f8 + randInt(r, 8)) : kind === 1 ? 0xfed00000n + BigInt(8 * randInt(r, 4)) : pciAddress(0, 0x1f, 0, 4 * randInt(r, 16));
    out.push({
      vcpu: randInt(r, 4),
      type: (['pio', 'mmio', 'pci'] as const)[kind] as 'pio',
      direction: pickOne(r, ['read', 'write'] as const),
      size: pickOne(r, [1, 2, 4]),
      outcome: unclaimed ? 'unclaimed' : 'ok',
      device: unclaimed ? null : kind,
      address,
      value: BigInt(randInt(r, 2 ** 32)) * BigInt(randInt(r, 2 ** 32)),
      timestamps: ts,
    });
  }
  return out;
}

const N = 3000;
const recs = records(11, N);
const bytes = nat.encodeTrace(header, recs);
const dir = mkdtempSync(join(tmpdir(), 'acrn-trace-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function capture() {
  let stdout = '';
  let stderr = '';
  return { out: { stdout: (s: string) => void (stdout += s), stderr: (s: string) => void (stderr += s) }, get: () => ({ stdout, stderr }) };
}

describe('native and wasm', () => {
  it('encode the same bytes', () => {
    expect(Buffer.from(wasm.encodeTrace(header, recs)).equals(Buffer.from(bytes))).toBe(true);
    expect(bytes.length).toBeGreaterThan(N * 80);
  });

  it('decode a generated trace to the same header and records', () => {
    const a = nat.decodeTrace(bytes);
    const b = wasm.decodeTrace(bytes);
    expect(a.count).toBe(N);
    expect(a.footer).toBe(true);
    expect(b.header).toEqual(a.header);
    expect(b.records).toEqual(a.records);
    expect(a.header.vm).toEqual(header.vm);
    expect(a.header.clock.startNs).toBe(5_000_000n);
    expect(a.header.devices.map((d) => d.name)).toEqual(['uart0', 'hpet', 'lpc']);
    expect(a.records.vcpu).toBeInstanceOf(Uint16Array);
    expect(a.records.address).toBeInstanceOf(BigUint64Array);
    // Records come back as they were written.
    for (const i of [0, 1, 17, N - 1]) {
      const rec = a.record(i);
      const src = recs[i] as TraceRecordInit;
      expect(rec).toEqual(b.record(i));
      expect(rec.vcpu).toBe(src.vcpu);
      expect(rec.type).toBe(src.type);
      expect(rec.direction).toBe(src.direction);
      expect(rec.address).toBe(BigInt(src.address));
      expect(rec.value).toBe(src.value);
      expect(rec.device).toBe(src.device);
      for (const s of TRACE_STAMPS) expect(rec.timestamps[s]).toBe(src.timestamps?.[s]);
    }
    const rel = a.relative('pending');
    expect(rel[0]).toBe(Number(BigInt(recs[0]?.timestamps?.pending ?? 0) - 5_000_000n));
    expect([...a].length).toBe(N);
  });

  it('give the same report, Chrome and CSV exports', () => {
    for (const by of ['address', 'device', 'vcpu', 'type'] as const) {
      expect(wasm.traceReportJson(bytes, by)).toBe(nat.traceReportJson(bytes, by));
    }
    expect(wasm.traceExportChrome(bytes)).toBe(nat.traceExportChrome(bytes));
    expect(wasm.traceExportCsv(bytes)).toBe(nat.traceExportCsv(bytes));
  });

  it('reject a truncated trace with the same one-line error naming the offset', () => {
    const cut = bytes.subarray(0, bytes.length - 100);
    const errors = [nat, wasm].map((api) => {
      try {
        api.decodeTrace(cut);
      } catch (e) {
        return e as AcrnHsmError;
      }
      throw new Error('no error');
    });
    for (const e of errors) {
      expect(e).toBeInstanceOf(AcrnHsmError);
      expect(e.code).toBe('ERR_TRACE_TRUNCATED');
      expect(e.message).toMatch(/^truncated record \d+ at byte offset \d+: 60 of 80 bytes/);
      expect(e.message).not.toContain('\n');
    }
    expect(errors[1]?.message).toBe(errors[0]?.message);
    expect(() => wasm.decodeTrace(new TextEncoder().encode('not a trace at all, clearly'))).toThrow(/bad magic at byte offset 0/);
  });
});

describe('report', () => {
  it('has the documented shape and counts every request', () => {
    // The functions work detached, as the entry points export them.
    const { traceReport } = nat;
    const rep = traceReport(bytes, 'address');
    expect(rep.requests).toBe(N);
    expect(rep.footer).toBe(true);
    expect(rep.groups.reduce((n, g) => n + g.count, 0)).toBe(N);
    for (const g of rep.groups) {
      expect(Object.keys(g)).toEqual(expect.arrayContaining(['key', 'count', 'share', 'min_ns', 'p50_ns', 'p99_ns', 'p999_ns', 'max_ns']));
      expect(g.share).toBeCloseTo(g.count / N, 5);
      expect(g.min_ns as number).toBeLessThanOrEqual(g.p50_ns as number);
      expect(g.p99_ns as number).toBeLessThanOrEqual(g.max_ns as number);
    }
    expect(rep.groups.map((g) => g.key)).toContain('0x3f8:PIO-W');
    expect(rep.groups.map((g) => g.key)).toContain('0xfed00000:MMIO-R');
    const byDevice = nat.traceReport(bytes, 'device');
    expect(byDevice.groups.map((g) => g.key).sort()).toEqual(['(none)', 'hpet', 'lpc', 'uart0']);
    // Oracle for one group: the exact max of total latency of vCPU 0.
    const v0 = nat.traceReport(bytes, 'vcpu').groups.find((g) => g.key === 'vcpu0');
    const lat = recs
      .filter((r) => r.vcpu === 0)
      .map((r) => Number(BigInt(r.timestamps?.free || r.timestamps?.complete || 0) - BigInt(r.timestamps?.pending ?? 0)));
    expect(v0?.count).toBe(lat.length);
    expect(v0?.max_ns).toBe(Math.max(...lat));
    expect(v0?.min_ns).toBe(Math.min(...lat));
    expect(() => nat.traceReport(bytes, 'colour' as 'vcpu')).toThrow(AcrnHsmError);
  });
});

describe('CLI', () => {
  const file = join(dir, 'demo.trace');
  writeFileSync(file, bytes);

  it('trace report --json, with the addon and with wasm', async () => {
    const c = capture();
    expect(await traceCommand(['report', file, '--json', '--by', 'type'], c.out)).toBe(0);
    const rep = JSON.parse(c.get().stdout);
    expect(rep.requests).toBe(N);
    expect(rep.by).toBe('type');
    expect(rep.groups.reduce((n: number, g: { count: number }) => n + g.count, 0)).toBe(N);
    expect(c.get().stdout.trim()).toBe(nat.traceReportJson(bytes, 'type'));
    process.env.ACRN_HSM_TRACE_BACKEND = 'wasm';
    try {
      const w = capture();
      expect(await traceCommand(['report', file, '--json', '--by', 'type'], w.out)).toBe(0);
      expect(w.get().stdout).toBe(c.get().stdout);
    } finally {
      delete process.env.ACRN_HSM_TRACE_BACKEND;
    }
  });

  it('trace report prints a perf-kvm-stat-like table with percentiles', async () => {
    const c = capture();
    expect(await traceCommand(['report', file], c.out)).toBe(0);
    const text = c.get().stdout;
    expect(text).toMatch(/^key\s+Samples\s+Samples%\s+Time%\s+min\s+p50\s+p99\s+p99\.9\s+max$/m);
    expect(text).toMatch(/^0x3f8:PIO-W\s+\d+\s+\d+\.\d\d%\s+\d+\.\d\d%/m);
    expect(text).toMatch(/^ {2}handler\s+\d+/m);
    expect(text).toContain(`${N} requests`);
  });

  it('trace export --format chrome|csv -o OUT', async () => {
    const chrome = join(dir, 'out.json');
    const csv = join(dir, 'out.csv');
    const c = capture();
    expect(await traceCommand(['export', file, '--format', 'chrome', '-o', chrome], c.out)).toBe(0);
    const doc = JSON.parse(readFileSync(chrome, 'utf8'));
    const events = doc.traceEvents as { ph: string; name: string; args?: Record<string, unknown> }[];
    expect(events.filter((e) => e.ph === 'M' && e.name === 'thread_name')).toHaveLength(4);
    expect(events.filter((e) => e.ph === 'X' && (e as { cat?: string }).cat === 'ioreq')).toHaveLength(N);
    for (const e of events.filter((e) => e.ph === 'C')) expect(Object.keys(e.args ?? {})).toHaveLength(1);
    expect(readFileSync(chrome, 'utf8')).toBe(nat.traceExportChrome(bytes));
    expect(await traceCommand(['export', file, '--format', 'csv', '-o', csv], c.out)).toBe(0);
    const lines = readFileSync(csv, 'utf8').trimEnd().split('\n');
    expect(lines).toHaveLength(N + 1);
    expect(lines[0]).toMatch(/^index,vcpu,type,direction,size,outcome,device,address,value,pending_ns/);
  });

  it('bad files give one-line errors; bad usage exits 2', async () => {
    const cut = join(dir, 'cut.trace');
    writeFileSync(cut, bytes.subarray(0, 200));
    const junk = join(dir, 'junk.trace');
    writeFileSync(junk, 'hello world, this is not a trace file');
    const cases: [string[], string, RegExp][] = [
      [['report', cut], 'ERR_TRACE_TRUNCATED', /cut\.trace: truncated .* byte offset \d+/],
      [['report', junk, '--json'], 'ERR_TRACE_BAD_MAGIC', /junk\.trace: not an acrn-hsm trace/],
      [['export', cut, '--format', 'csv', '-o', join(dir, 'x.csv')], 'ERR_TRACE_TRUNCATED', /byte offset/],
      [['report', join(dir, 'missing.trace')], 'ERR_FILE', /cannot read .*missing\.trace/],
    ];
    for (const [args, code, msg] of cases) {
      const c = capture();
      const err = await traceCommand(args, c.out).then(
        () => null,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(AcrnHsmError);
      expect((err as AcrnHsmError).code).toBe(code);
      expect((err as AcrnHsmError).message).toMatch(msg);
      expect((err as AcrnHsmError).message).not.toContain('\n');
    }
    for (const args of [['view'], ['report'], ['report', file, '--by', 'colour'], ['export', file, '--format', 'svg', '-o', 'x'], ['frobnicate'], ['report', file, '--nope']]) {
      const c = capture();
      expect(await traceCommand(args, c.out)).toBe(2);
      expect(c.get().stderr.length).toBeGreaterThan(0);
    }
  });
});
