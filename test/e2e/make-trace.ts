// A realistic generated trace for the viewer's browser tests: several vCPUs, each with one
// request in flight at a time (as on ACRN), PIO / MMIO / PCI devices with their own latency
// profiles and a slow tail, a few unclaimed requests and handler errors, records written in
// the order requests end (as the recorder writes them).
import { pciAddress, type TraceHeaderInit, type TraceRecordInit } from '../../dist/trace.js';
import { pickOne, randInt, rng } from '../support/random.js';

export const HEADER: TraceHeaderInit = {
  clock: { source: 'CLOCK_MONOTONIC', resolutionNs: 1, startNs: 1_000_000_000n, wallStartNs: 1_764_000_000_000_000_000n },
  vm: { vmid: 1, vcpuCount: 4, completion: 'notify', name: 'demo-vm' },
  devices: [
    { id: 0, name: 'uart0', kind: 'pio', base: 0x3f8, length: 8 },
    { id: 1, name: 'rtc', kind: 'pio', base: 0x70, length: 2 },
    { id: 2, name: 'hpet', kind: 'mmio', base: 0xfed00000n, length: 0x400 },
    { id: 3, name: 'virtio-blk', kind: 'mmio', base: 0xc0000000n, length: 0x1000 },
    { id: 4, name: 'lpc', kind: 'pci', base: pciAddress(0, 0x1f, 0, 0), length: 0x100 },
  ],
};

interface Profile {
  device: number;
  type: 'pio' | 'mmio' | 'pci';
  address: (r: () => number) => bigint;
  /** Handler time in ns (median-ish). */
  handler: number;
  weight: number;
}

const PROFILES: Profile[] = [
  { device: 0, type: 'pio', address: (r) => BigInt(0x3f8 + randInt(r, 8)), handler: 900, weight: 45 },
  { device: 1, type: 'pio', address: (r) => BigInt(0x70 + randInt(r, 2)), handler: 400, weight: 10 },
  { device: 2, type: 'mmio', address: (r) => 0xfed00000n + BigInt(8 * randInt(r, 4)), handler: 250, weight: 25 },
  { device: 3, type: 'mmio', address: (r) => 0xc0000000n + BigInt(4 * randInt(r, 16)), handler: 12_000, weight: 12 },
  { device: 4, type: 'pci', address: (r) => pciAddress(0, 0x1f, 0, 4 * randInt(r, 16)), handler: 1_500, weight: 8 },
];

/** A log-normal-ish positive duration around `median` with a slow tail. */
function dur(r: () => number, median: number): bigint {
  const g = (r() + r() + r() - 1.5) * 1.2; // roughly normal, sd ~0.6
  const tail = r() < 0.01 ? 20 : 1;
  return BigInt(Math.max(20, Math.round(median * Math.exp(g) * tail)));
}

export function makeRecords(n: number, seed = 7): TraceRecordInit[] {
  const r = rng(seed);
  const vcpus = 4;
  const clock = [1_000_500_000n, 1_000_520_000n, 1_000_540_000n, 1_000_560_000n];
  const total = PROFILES.reduce((s, p) => s + p.weight, 0);
  const out: (TraceRecordInit & { end: bigint })[] = [];
  for (let i = 0; i < n; i++) {
    const vcpu = randInt(r, vcpus);
    let w = randInt(r, total);
    const p = PROFILES.find((x) => (w -= x.weight) < 0) as Profile;
    const unclaimed = r() < 0.02;
    const failed = !unclaimed && r() < 0.01;
    // Guest run time between exits, then the request's stages.
    let t = (clock[vcpu] as bigint) + dur(r, 4_000);
    const pending = t;
    const processing = (t += dur(r, 1_200));
    const handlerStart = unclaimed ? 0n : (t += dur(r, 150));
    const handlerEnd = unclaimed ? 0n : (t += dur(r, p.handler));
    const notify = (t += dur(r, 200));
    const complete = (t += dur(r, 600));
    const free = (t += dur(r, 300));
    clock[vcpu] = t;
    const direction = pickOne(r, ['read', 'write'] as const);
    out.push({
      vcpu,
      type: p.type,
      direction,
      size: p.type === 'pio' ? 1 : 4,
      outcome: unclaimed ? 'unclaimed' : failed ? 'handler_error' : 'ok',
      device: unclaimed ? null : p.device,
      address: unclaimed ? BigInt(0x80 + randInt(r, 4)) : p.address(r),
      value: unclaimed && direction === 'read' ? 0xffn : BigInt(randInt(r, 256)),
      timestamps: { pending, processing, handlerStart, handlerEnd, notify, complete, free },
      end: free,
    });
    if (unclaimed) out[out.length - 1]!.type = 'pio';
  }
  // The recorder writes a record when its request ends.
  out.sort((a, b) => (a.end < b.end ? -1 : a.end > b.end ? 1 : 0));
  return out.map(({ end: _end, ...rec }) => rec);
}

/**
 * A big trace written directly in the format (docs/trace-format.md), without building a record
 * object per request: `n` PIO/MMIO requests round-robin over 4 vCPUs, one in flight per vCPU.
 * `header` comes from encodeTrace(HEADER, [], { finish: false }).
 */
export function makeBigTrace(header: Uint8Array, n: number): Uint8Array {
  const REC = 80;
  const out = new Uint8Array(header.length + (n + 1) * REC);
  out.set(header, 0);
  const view = new DataView(out.buffer);
  const r = rng(99);
  const clock = [0, 0, 0, 0].map((_, v) => 1_000_500_000 + v * 97);
  for (let i = 0; i < n; i++) {
    const o = header.length + i * REC;
    const vcpu = i % 4;
    const mmio = r() < 0.3;
    view.setUint16(o, vcpu, true);
    out[o + 2] = mmio ? 1 : 0;
    out[o + 3] = i & 1;
    out[o + 4] = mmio ? 4 : 1;
    out[o + 5] = 0;
    view.setUint16(o + 6, mmio ? 2 : 0, true);
    view.setBigUint64(o + 8, mmio ? 0xfed00000n : 0x3f8n, true);
    view.setBigUint64(o + 16, BigInt(i & 0xff), true);
    let t = (clock[vcpu] as number) + 500 + Math.floor(r() * 3000);
    for (let s = 0; s < 7; s++) {
      view.setBigUint64(o + 24 + 8 * s, BigInt(t), true);
      t += 50 + Math.floor(r() * (s === 3 && mmio ? 4000 : 400));
    }
    clock[vcpu] = t;
  }
  const f = header.length + n * REC;
  out.set(new TextEncoder().encode('ACRNEND\0'), f);
  view.setBigUint64(f + 8, BigInt(n), true);
  return out;
}
