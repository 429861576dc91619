// The viewer's pure parts, in Node: its per-record group keys equal the core's report keys
// (so a selected row selects exactly that group's requests), latency and lane derivation,
// sorting, hex parsing and number formatting.
import { describe, expect, it } from 'vitest';
import { decodeTrace, encodeTrace, pciAddress, traceReport } from '../dist/wasm/node.js';
import { HEADER, makeRecords } from './e2e/make-trace.js';
import { formatNs, formatShare, formatTick } from '../web/src/format.js';
import { asReported, exactPercentile, percentile } from '../web/src/histogram.js';
import { buildModel, groupKey, lowerBound, relativeColumn, selectGroup } from '../web/src/model.js';
import { parseHex } from '../web/src/pagedump.js';
import { sortGroups } from '../web/src/table.js';
import type { Trace } from '../dist/trace.js';

const records = makeRecords(3000, 5);
const bytes = encodeTrace(HEADER, records);
const trace = decodeTrace(bytes);
const model = buildModel(trace as unknown as Parameters<typeof buildModel>[0], bytes, 't');

describe('viewer model', () => {
  it('keys every record as the core report does, for every grouping', () => {
    for (const by of ['address', 'device', 'vcpu', 'type'] as const) {
      const report = traceReport(bytes, by);
      const counts = new Map<string, number>();
      for (let i = 0; i < trace.count; i++) {
        const k = groupKey(model, i, by);
        counts.set(k, (counts.get(k) ?? 0) + 1);
      }
      expect(counts).toEqual(new Map(report.groups.map((g) => [g.key, g.count])));
      const g = report.groups[1]!;
      const sel = selectGroup(model, by, g.key);
      expect(sel.count).toBe(g.count);
      expect(sel.mask.reduce((a, b) => a + b, 0)).toBe(g.count);
    }
  });

  it('keys PCI and unusual addresses like the core', () => {
    const t = encodeTrace({ vm: { vcpuCount: 2 } }, [
      { vcpu: 0, type: 'pci', direction: 'read', size: 4, address: pciAddress(0xab, 0x1f, 7, 0x104) },
      { vcpu: 1, type: 'mmio', direction: 'write', size: 8, address: 0xffff_ffff_ffff_fff8n },
      { vcpu: 1, type: 'pio', direction: 'read', size: 1, address: 0 },
    ]);
    const m = buildModel(decodeTrace(t) as unknown as Parameters<typeof buildModel>[0], t, 'x');
    const keys = [0, 1, 2].map((i) => groupKey(m, i, 'address'));
    expect(keys.sort()).toEqual(traceReport(t, 'address').groups.map((g) => g.key).sort());
    expect(keys).toContain('ab:1f.7@0x104:PCI-R');
  });

  it('derives start, end, total latency and sorted lanes', () => {
    const origin = trace.header.clock.startNs;
    for (const i of [0, 7, 2999]) {
      const ts = trace.record(i).timestamps;
      expect(model.start[i]).toBe(Number(ts.pending - origin));
      expect(model.end[i]).toBe(Number(ts.free - origin));
      expect(model.total[i]).toBe(Number(ts.free - ts.pending));
    }
    expect(model.lanes.map((l) => l.index.length).reduce((a, b) => a + b)).toBe(3000);
    for (const lane of model.lanes) {
      for (let k = 1; k < lane.start.length; k++) expect(lane.start[k]).toBeGreaterThanOrEqual(lane.start[k - 1] as number);
      for (let k = 0; k < lane.index.length; k++) expect(trace.records.vcpu[lane.index[k] as number]).toBe(lane.vcpu);
    }
    // Exact beyond 2^32 and across the halves of the u64.
    const col = new BigUint64Array([0n, 0x1_0000_0005n, 0x7_ffff_ffffn, 0x20_0000_0000_0000n + 3n]);
    expect(Array.from(relativeColumn(col, 0xffff_fffen))).toEqual([NaN, 7, 0x7_ffff_ffff - 0xffff_fffe, Number(0x20_0000_0000_0000n + 3n - 0xffff_fffen)]);
    expect(lowerBound(new Float64Array([1, 2, 2, 5]), 2)).toBe(1);
    expect(lowerBound(new Float64Array([1, 2, 2, 5]), 6)).toBe(4);
  });

  it('counts a trace without pending stamps as having no total latency', () => {
    const t = encodeTrace({ vm: { vcpuCount: 1 } }, [{ vcpu: 0, type: 'pio', direction: 'read', size: 1, address: 0x60, timestamps: { processing: 100, notify: 300 } }]);
    const m = buildModel(decodeTrace(t) as unknown as Trace as unknown as Parameters<typeof buildModel>[0], t, 'real');
    expect(Number.isNaN(m.total[0] as number)).toBe(true);
    expect(m.end[0]! - m.start[0]!).toBe(200);
  });
});

describe('viewer helpers', () => {
  it('sorts report groups by any column, nulls last', () => {
    const groups = traceReport(bytes, 'address').groups;
    const byP99 = sortGroups(groups, { column: 'p99', dir: 'descending' });
    expect(byP99.map((g) => g.p99_ns)).toEqual(groups.map((g) => g.p99_ns).sort((a, b) => (b as number) - (a as number)));
    expect(sortGroups(groups, { column: 'key', dir: 'ascending' }).map((g) => g.key)).toEqual(groups.map((g) => g.key).sort());
    const withNull = [{ ...groups[0]!, key: 'z', p50_ns: null }, ...groups.slice(0, 3)];
    expect(sortGroups(withNull, { column: 'p50', dir: 'ascending' }).at(-1)?.key).toBe('z');
    expect(sortGroups(withNull, { column: 'p50', dir: 'descending' }).at(-1)?.key).toBe('z');
    expect(sortGroups(groups, null)).toBe(groups);
  });

  it('parses pasted hex in the usual dump formats', () => {
    expect(Array.from(parseHex('00 01 ff\n0x10,0x20'))).toEqual([0, 1, 255, 16, 32]);
    expect(Array.from(parseHex('00000000: 4142 4344 4546 4748  ABCDEFGH\n'))).toEqual([0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48]);
    expect(Array.from(parseHex('00000010  de ad be ef  |....|'))).toEqual([0xde, 0xad, 0xbe, 0xef]);
    expect(() => parseHex('abc')).toThrow(/odd number/);
    expect(() => parseHex('zz')).toThrow(/not hex/);
  });

  it('formats like the CLI and picks percentiles by nearest rank', () => {
    expect([formatNs(999), formatNs(1000), formatNs(1_234_567), formatNs(2e9), formatNs(null)]).toEqual(['999ns', '1.00µs', '1.23ms', '2.00s', '-']);
    expect(formatShare(0.12345)).toBe('12.35%');
    expect([formatTick(2_000_000, 1_000_000), formatTick(2_500_000, 500_000), formatTick(150, 50), formatTick(1200, 200)]).toEqual(['2ms', '2.5ms', '150ns', '1.2µs']);
    const v = new Float64Array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect([percentile(v, 50), percentile(v, 99), percentile(v, 10)]).toEqual([5, 10, 1]);
    expect([exactPercentile(v, 50), exactPercentile(v, 99.9)]).toEqual([5, 10]);
    // Above 256 the report's bucket: 1000 is in [1000, 1003] (width 4), 5000 in [4992, 5023].
    expect([asReported(1000, 0, 1e9), asReported(5000, 0, 1e9), asReported(5000, 0, 5010)]).toEqual([1003, 5023, 5010]);
  });

  it("the histogram's p50/p99 of a group equal the report's for that group", () => {
    let compared = 0;
    for (const by of ['type', 'vcpu', 'device'] as const) {
      const report = traceReport(bytes, by);
      for (const g of report.groups) {
        const { mask } = selectGroup(model, by, g.key);
        const lat: number[] = [];
        for (let i = 0; i < trace.count; i++) {
          const t = model.total[i] as number;
          if (mask[i] && !Number.isNaN(t)) lat.push(t);
        }
        expect(lat.length, `${by} ${g.key}`).toBe(g.stages.total.count);
        if (lat.length === 0) continue;
        compared++;
        const sorted = Float64Array.from(lat).sort();
        expect([percentile(sorted, 50), percentile(sorted, 99), percentile(sorted, 99.9)], `${by} ${g.key}`).toEqual([g.p50_ns, g.p99_ns, g.p999_ns]);
      }
    }
    expect(compared).toBeGreaterThan(5);
  });
});
