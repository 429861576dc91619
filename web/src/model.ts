// What the views need from a decoded trace, computed once per file: per-request start, end and
// total latency as float ns since the clock start, and per-vCPU lanes sorted by start so the
// timeline can find the visible requests by binary search instead of scanning all of them.
import { NO_DEVICE, TRACE_STAMPS, type Trace } from './acrn.js';

/** One vCPU's requests, sorted by start. */
export interface Lane {
  vcpu: number;
  /** Record indices, by start time. */
  index: Uint32Array;
  /** Start (first observed stamp) of `index[k]`. */
  start: Float64Array;
  /** End (last observed stamp) of `index[k]`. */
  end: Float64Array;
  /** The longest request of the lane, for the search of requests overlapping a window. */
  maxSpan: number;
}

export interface Model {
  trace: Trace;
  bytes: Uint8Array;
  name: string;
  /** Per record: first / last observed stamp, ns since the clock start (NaN: none observed). */
  start: Float64Array;
  end: Float64Array;
  /** Per record: the report's `total` stage (pending → free, else → complete); NaN if unobserved. */
  total: Float64Array;
  /** Per record, per stamp (TRACE_STAMPS order, stride 7): relative ns, NaN = not observed. */
  stamps: Float64Array;
  lanes: Lane[];
  /** Extent of all observed stamps. */
  t0: number;
  t1: number;
  deviceNames: Map<number, string>;
}

/**
 * A u64 ns column as float ns since `origin`, exact while the difference stays below 2^53 ns
 * (104 days). Reads the two u32 halves instead of converting a BigInt per value, which is an
 * order of magnitude faster on a million records. `0` (not observed) becomes NaN.
 */
export function relativeColumn(col: BigUint64Array, origin: bigint): Float64Array {
  const words = new Uint32Array(col.buffer, col.byteOffset, col.length * 2);
  const oHi = Number(origin >> 32n);
  const oLo = Number(origin & 0xffff_ffffn);
  const out = new Float64Array(col.length);
  for (let i = 0; i < col.length; i++) {
    const lo = words[2 * i] as number;
    const hi = words[2 * i + 1] as number;
    out[i] = lo === 0 && hi === 0 ? NaN : (hi - oHi) * 4294967296 + (lo - oLo);
  }
  return out;
}

export function buildModel(trace: Trace, bytes: Uint8Array, name: string): Model {
  const n = trace.count;
  const origin = trace.header.clock.startNs;
  const cols = TRACE_STAMPS.map((s) => relativeColumn(trace.records[s], origin));
  const stamps = new Float64Array(n * 7);
  const start = new Float64Array(n).fill(NaN);
  const end = new Float64Array(n).fill(NaN);
  const total = new Float64Array(n).fill(NaN);
  let t0 = Infinity;
  let t1 = -Infinity;
  for (let i = 0; i < n; i++) {
    let s = NaN;
    let e = NaN;
    for (let k = 0; k < 7; k++) {
      const v = (cols[k] as Float64Array)[i] as number;
      stamps[i * 7 + k] = v;
      if (Number.isNaN(v)) continue;
      if (Number.isNaN(s) || v < s) s = v;
      if (Number.isNaN(e) || v > e) e = v;
    }
    start[i] = s;
    end[i] = e;
    if (s < t0) t0 = s;
    if (e > t1) t1 = e;
    // Same definition as the report's `total` stage (docs/trace-format.md).
    const pending = stamps[i * 7] as number;
    const stop = Number.isNaN(stamps[i * 7 + 6] as number) ? (stamps[i * 7 + 5] as number) : (stamps[i * 7 + 6] as number);
    if (!Number.isNaN(pending) && !Number.isNaN(stop) && stop >= pending) total[i] = stop - pending;
  }
  if (!Number.isFinite(t0)) {
    t0 = 0;
    t1 = 1;
  }
  if (t1 <= t0) t1 = t0 + 1;
  return {
    trace,
    bytes,
    name,
    start,
    end,
    total,
    stamps,
    lanes: buildLanes(trace, start, end),
    t0,
    t1,
    deviceNames: new Map(trace.header.devices.map((d) => [d.id, d.name])),
  };
}

function buildLanes(trace: Trace, start: Float64Array, end: Float64Array): Lane[] {
  const vcpu = trace.records.vcpu;
  let lanesCount = trace.header.vm.vcpuCount;
  for (let i = 0; i < vcpu.length; i++) lanesCount = Math.max(lanesCount, (vcpu[i] as number) + 1);
  const sizes = new Uint32Array(lanesCount);
  for (let i = 0; i < vcpu.length; i++) if (!Number.isNaN(start[i] as number)) sizes[vcpu[i] as number]! += 1;
  const lanes: Lane[] = [];
  for (let v = 0; v < lanesCount; v++) lanes.push({ vcpu: v, index: new Uint32Array(sizes[v] as number), start: new Float64Array(0), end: new Float64Array(0), maxSpan: 0 });
  const fill = new Uint32Array(lanesCount);
  for (let i = 0; i < vcpu.length; i++) {
    if (Number.isNaN(start[i] as number)) continue;
    const v = vcpu[i] as number;
    (lanes[v] as Lane).index[fill[v]!++] = i;
  }
  for (const lane of lanes) {
    // A vCPU has one request in flight at a time, so records written as requests end are
    // usually already in start order per lane: sort only when they are not.
    let sorted = true;
    for (let k = 1; k < lane.index.length && sorted; k++) sorted = (start[lane.index[k - 1] as number] as number) <= (start[lane.index[k] as number] as number);
    if (!sorted) lane.index.sort((a, b) => (start[a] as number) - (start[b] as number));
    lane.start = new Float64Array(lane.index.length);
    lane.end = new Float64Array(lane.index.length);
    for (let k = 0; k < lane.index.length; k++) {
      const i = lane.index[k] as number;
      lane.start[k] = start[i] as number;
      lane.end[k] = end[i] as number;
      lane.maxSpan = Math.max(lane.maxSpan, (end[i] as number) - (start[i] as number));
    }
  }
  return lanes;
}

/** First k with `sorted[k] >= x` (binary search). */
export function lowerBound(sorted: Float64Array, x: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((sorted[mid] as number) < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** The name of a record's device, or `(none)`. */
export function deviceName(model: Model, i: number): string {
  const d = model.trace.records.device[i] as number;
  return d === NO_DEVICE ? '(none)' : (model.deviceNames.get(d) ?? `device ${d}`);
}

const TYPE_LABELS = ['PIO', 'MMIO', 'PCI'];

/**
 * Record `i`'s key in a report grouped `by`, written exactly as the core writes it
 * (crates/acrn-trace: `address_key`, `type_key`), so a table row selects its requests.
 */
export function groupKey(model: Model, i: number, by: string): string {
  const c = model.trace.records;
  const type = `${TYPE_LABELS[c.type[i] as number] ?? '?'}-${c.direction[i] === 1 ? 'W' : 'R'}`;
  switch (by) {
    case 'type':
      return type;
    case 'vcpu':
      return `vcpu${c.vcpu[i] as number}`;
    case 'device': {
      const d = c.device[i] as number;
      return d === NO_DEVICE ? '(none)' : (model.deviceNames.get(d) ?? `device${d}`);
    }
    default: {
      const a = c.address[i] as bigint;
      if (c.type[i] !== 2) return `0x${a.toString(16)}:${type}`;
      const h2 = (n: bigint) => n.toString(16).padStart(2, '0');
      return `${h2((a >> 24n) & 0xffn)}:${h2((a >> 19n) & 0x1fn)}.${(a >> 16n) & 7n}@0x${(a & 0xffffn).toString(16)}:${type}`;
    }
  }
}

/** A mask of the records whose key (grouped `by`) is `key`, and how many there are. */
export function selectGroup(model: Model, by: string, key: string): { mask: Uint8Array; count: number } {
  const c = model.trace.records;
  const n = c.count;
  const mask = new Uint8Array(n);
  let count = 0;
  // Formatting a BigInt address per record is slow on a million records: memoise the match
  // per distinct address (BigInt map keys compare by value) and type/direction.
  const memo = new Map<bigint, (boolean | undefined)[]>();
  for (let i = 0; i < n; i++) {
    let hit: boolean;
    if (by === 'address') {
      const a = c.address[i] as bigint;
      let slots = memo.get(a);
      if (!slots) memo.set(a, (slots = []));
      const s = (c.type[i] as number) * 2 + (c.direction[i] as number);
      hit = slots[s] ??= groupKey(model, i, by) === key;
    } else {
      hit = groupKey(model, i, by) === key;
    }
    if (hit) {
      mask[i] = 1;
      count++;
    }
  }
  return { mask, count };
}
