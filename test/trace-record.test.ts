// Recording and replaying traces through the CLI, as a user does: `acrn-hsm demo --trace FILE`,
// then `acrn-hsm trace report FILE --json` (one record per request the guest issued, the
// requests the HSM completed in the kernel as the device "hsm (in kernel)", every device's
// count equal to the demo's own counters), then `acrn-hsm trace replay FILE` (clean), and a
// tampered copy (replay reports the mismatch, status 1).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeTrace } from '../dist/wasm/node.js';
import { decodeTrace as decodeTraceNative } from '../dist/index.js';

const root = join(import.meta.dirname, '..');
const cli = (...args: string[]) =>
  spawnSync(process.execPath, [join(root, 'bin/acrn-hsm.js'), ...args], { encoding: 'utf8', timeout: 120_000 });

interface Group {
  key: string;
  count: number;
  outcomes: Record<string, number>;
  stages: Record<string, { count: number }>;
}

describe('acrn-hsm demo --trace, trace report, trace replay', () => {
  const dir = mkdtempSync(join(tmpdir(), 'acrn-trace-record-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  for (const mode of ['notify', 'poll'] as const) {
    it(`${mode} mode: the report counts every request the demo issued; the replay is clean`, () => {
      const file = join(dir, `demo-${mode}.trace`);
      const d = cli('demo', '--trace', file, '--requests', '2000', '--vcpus', '3', '--mode', mode, '--json');
      expect(d.status, d.stderr).toBe(0);
      const s = JSON.parse(d.stdout);
      expect(s.clean).toBe(true);
      expect(s.trace.records).toBe(s.issued);

      const r = cli('trace', 'report', file, '--json', '--by', 'device');
      expect(r.status, r.stderr).toBe(0);
      const report = JSON.parse(r.stdout) as { requests: number; footer: boolean; groups: Group[] };
      // One record per issued request, including those the HSM completed in the kernel.
      expect(report.requests).toBe(s.issued);
      expect(report.footer).toBe(true);
      const group = (k: string) => report.groups.find((g) => g.key === k);
      const handled = s.client.pio_reads + s.client.pio_writes + s.client.mmio_reads + s.client.mmio_writes +
        s.client.pci_reads + s.client.pci_writes + s.client.unclaimed + s.client.faults;
      expect(group('hsm (in kernel)')?.count).toBe(s.issued - handled);
      expect(s.issued - handled).toBeGreaterThan(0);
      for (const dev of s.devices as { name: string; reads: number; writes: number }[]) {
        expect(group(dev.name)?.count, dev.name).toBe(dev.reads + dev.writes);
        // Every stage observed for requests a device served, the TypeScript one included.
        for (const st of ['dispatch', 'queue', 'handler', 'reply', 'completion', 'release']) {
          expect(group(dev.name)?.stages[st]?.count, `${dev.name} ${st}`).toBe(dev.reads + dev.writes);
        }
      }
      expect(group('(none)')?.outcomes.unclaimed).toBe(s.client.unclaimed);
      expect(group('ts-scratch')?.count).toBeGreaterThan(0);

      // The same file decodes in wasm to the same count, stamps ordered as the path goes.
      const t = decodeTrace(new Uint8Array(readFileSync(file)));
      expect(t.count).toBe(s.issued);
      // ... and natively to the same header and records, column for column.
      const n = decodeTraceNative(new Uint8Array(readFileSync(file)));
      expect(n.header).toEqual(t.header);
      expect(n.count).toBe(t.count);
      for (const [name, column] of Object.entries(t.records)) {
        expect(Array.from(n.records[name as keyof typeof n.records] as ArrayLike<unknown>), name).toEqual(Array.from(column as ArrayLike<unknown>));
      }
      expect(t.header.vm.completion).toBe(mode === 'poll' ? 'polling' : 'notify');
      for (let i = 0; i < t.count; i += 97) {
        const ts = t.record(i).timestamps;
        const seen = [ts.pending, ts.processing, ts.handlerStart, ts.handlerEnd, ts.notify, ts.complete, ts.free].filter((x) => x !== 0n);
        expect(seen.length).toBeGreaterThanOrEqual(3); // pending, complete, free at least
        expect([...seen].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))).toEqual(seen);
      }

      const p = cli('trace', 'replay', file, '--json');
      expect(p.status, p.stderr + p.stdout).toBe(0);
      const rep = JSON.parse(p.stdout);
      expect(rep).toMatchObject({ clean: true, issued: s.issued, completed: s.issued, read_mismatches: 0, devices: 'demo' });
      expect(rep.checked_reads).toBeGreaterThan(1000);

      // A value changed in the file is reported, with status 1.
      const bytes = new Uint8Array(readFileSync(file));
      const headerLen = new DataView(bytes.buffer).getUint32(12, true);
      let idx = -1;
      for (let i = 0; i < t.count; i++) {
        const rec = t.record(i);
        if (rec.type === 'mmio' && rec.direction === 'read' && rec.outcome === 'ok' && rec.address >= 0xfebf0000n) {
          idx = i;
          break;
        }
      }
      expect(idx).toBeGreaterThanOrEqual(0);
      bytes[headerLen + idx * 80 + 16]! ^= 0x5a;
      const bad = join(dir, `bad-${mode}.trace`);
      writeFileSync(bad, bytes);
      const q = cli('trace', 'replay', bad);
      expect(q.status).toBe(1);
      expect(q.stdout).toMatch(/read mismatches 1\b/);
      expect(q.stdout).toMatch(/MISMATCH/);
    });
  }

  it('replay: usage errors and a file that is not a trace', () => {
    const u = cli('trace', 'replay');
    expect(u.status).toBe(2);
    expect(u.stderr).toMatch(/exactly one FILE/);
    const v = cli('trace', 'replay', join(dir, 'x'), '--devices', 'nope');
    expect(v.status).toBe(2);
    const junk = join(dir, 'junk.trace');
    writeFileSync(junk, 'not a trace at all, long enough to have a header....................');
    const j = cli('trace', 'replay', junk);
    expect(j.status).not.toBe(0);
    expect(j.stderr).toMatch(/ERR_TRACE_BAD_MAGIC|magic/);
  });
});
