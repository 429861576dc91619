/**
 * I/O-request traces over either binding (native addon or wasm module): decode, report,
 * export, encode. `makeTraceApi` is bound to the addon by `index.ts` and to the wasm module by
 * `wasm/*.ts`, so both expose the same functions with the same results. The format is
 * specified in `docs/trace-format.md`.
 */
import { AcrnHsmError, callBinding } from './errors.js';

/** Request type. */
export type TraceIoType = 'pio' | 'mmio' | 'pci';
/** How a request ended. */
export type TraceOutcome = 'ok' | 'unclaimed' | 'malformed' | 'handler_error' | 'cleared' | 'incomplete';
/** The timestamps of a record, in record order. */
export const TRACE_STAMPS = ['pending', 'processing', 'handlerStart', 'handlerEnd', 'notify', 'complete', 'free'] as const;
/** One of the timestamps of a record. */
export type TraceStamp = (typeof TRACE_STAMPS)[number];
/** Report groupings. */
export type TraceGroupBy = 'address' | 'device' | 'vcpu' | 'type';
/** Latency stages of a report (see `docs/trace-format.md`). */
export const TRACE_STAGES = ['total', 'dispatch', 'queue', 'handler', 'reply', 'completion', 'release'] as const;
/** One latency stage. */
export type TraceStage = (typeof TRACE_STAGES)[number];

const IO_TYPES: readonly TraceIoType[] = ['pio', 'mmio', 'pci'];
const OUTCOMES: readonly TraceOutcome[] = ['ok', 'unclaimed', 'malformed', 'handler_error', 'cleared', 'incomplete'];
/** Device id of a request no device served. */
export const NO_DEVICE = 0xffff;

/** A device of the trace's device table. */
export interface TraceDevice {
  id: number;
  name: string;
  kind: TraceIoType;
  base: bigint;
  length: bigint;
}

/** The trace header. */
export interface TraceHeader {
  version: number;
  recordSize: number;
  clock: { source: string; resolutionNs: number; startNs: bigint; wallStartNs: bigint };
  vm: { vmid: number; vcpuCount: number; completion: 'notify' | 'polling'; name: string };
  devices: TraceDevice[];
}

/**
 * The records in columns: record `i` is element `i` of each array. `type`, `direction` and
 * `outcome` hold the numbers of the format (index into `'pio'|'mmio'|'pci'`, `'read'|'write'`
 * and the outcome list); u64 quantities (address, value, timestamps in ns) are `BigUint64Array`s
 * holding the file's values exactly (`0n` = not observed).
 */
export interface TraceColumns {
  count: number;
  vcpu: Uint16Array;
  type: Uint8Array;
  direction: Uint8Array;
  size: Uint8Array;
  outcome: Uint8Array;
  device: Uint16Array;
  address: BigUint64Array;
  value: BigUint64Array;
  pending: BigUint64Array;
  processing: BigUint64Array;
  handlerStart: BigUint64Array;
  handlerEnd: BigUint64Array;
  notify: BigUint64Array;
  complete: BigUint64Array;
  free: BigUint64Array;
}

/** One record as an object. */
export interface TraceRecord {
  index: number;
  vcpu: number;
  type: TraceIoType;
  direction: 'read' | 'write';
  size: number;
  outcome: TraceOutcome;
  /** Device id, or `null` when no device served it. */
  device: number | null;
  /** The device's name, or `null`. */
  deviceName: string | null;
  /** Port / guest-physical address; PCI: `bdf << 16 | register` (see {@link pciFields}). */
  address: bigint;
  value: bigint;
  /** ns on the trace clock; `0n` = not observed. */
  timestamps: Record<TraceStamp, bigint>;
}

/** A decoded trace. */
export class Trace {
  /** The header. */
  readonly header: TraceHeader;
  /** The records, in columns (fast to scan; see {@link record} for objects). */
  readonly records: TraceColumns;
  /** Whether the trace ends with its footer (false: its writer did not finish it). */
  readonly footer: boolean;
  readonly #names: Map<number, string>;

  /** @internal */
  constructor(header: TraceHeader, records: TraceColumns, footer: boolean) {
    this.header = header;
    this.records = records;
    this.footer = footer;
    this.#names = new Map(header.devices.map((d) => [d.id, d.name]));
  }

  /** Number of records. */
  get count(): number {
    return this.records.count;
  }

  /** Record `i` as an object. */
  record(i: number): TraceRecord {
    const c = this.records;
    if (!Number.isInteger(i) || i < 0 || i >= c.count) {
      throw new AcrnHsmError('ERR_OUT_OF_RANGE', `record index ${i} is not in 0..${c.count - 1}`);
    }
    const dev = c.device[i] as number;
    const timestamps = {} as Record<TraceStamp, bigint>;
    for (const s of TRACE_STAMPS) timestamps[s] = c[s][i] as bigint;
    return {
      index: i,
      vcpu: c.vcpu[i] as number,
      type: IO_TYPES[c.type[i] as number] as TraceIoType,
      direction: c.direction[i] === 1 ? 'write' : 'read',
      size: c.size[i] as number,
      outcome: OUTCOMES[c.outcome[i] as number] as TraceOutcome,
      device: dev === NO_DEVICE ? null : dev,
      deviceName: dev === NO_DEVICE ? null : (this.#names.get(dev) ?? null),
      address: c.address[i] as bigint,
      value: c.value[i] as bigint,
      timestamps,
    };
  }

  /** Every record as an object. */
  *[Symbol.iterator](): IterableIterator<TraceRecord> {
    for (let i = 0; i < this.records.count; i++) yield this.record(i);
  }

  /**
   * One timestamp column as `number`s of ns since the header's clock start (exact for traces
   * shorter than 104 days), `NaN` where not observed: convenient for plotting.
   */
  relative(stamp: TraceStamp): Float64Array {
    const col = this.records[stamp];
    const start = this.header.clock.startNs;
    const out = new Float64Array(col.length);
    for (let i = 0; i < col.length; i++) {
      const t = col[i] as bigint;
      out[i] = t === 0n ? NaN : Number(t - start);
    }
    return out;
  }
}

/** One row of a report; `min_ns`..`max_ns` are those of the `total` stage (`null`: not observed). */
export interface TraceReportGroup {
  key: string;
  count: number;
  share: number;
  /** The group's part of the summed total latency (perf kvm stat's Time%). */
  time_share: number;
  min_ns: number | null;
  p50_ns: number | null;
  p99_ns: number | null;
  p999_ns: number | null;
  max_ns: number | null;
  outcomes: Partial<Record<TraceOutcome, number>>;
  stages: Record<
    TraceStage,
    { count: number; mean_ns: number | null; min_ns: number | null; p50_ns: number | null; p99_ns: number | null; p999_ns: number | null; max_ns: number | null }
  >;
}

/** A report: `{requests, by, footer, groups}`, the JSON of `acrn-hsm trace report --json`. */
export interface TraceReport {
  requests: number;
  by: TraceGroupBy;
  footer: boolean;
  groups: TraceReportGroup[];
}

/** Header fields for {@link TraceApi.encodeTrace}; everything has a default. */
export interface TraceHeaderInit {
  clock?: { source?: string; resolutionNs?: number; startNs?: bigint | number; wallStartNs?: bigint | number };
  vm?: { vmid?: number; vcpuCount?: number; completion?: 'notify' | 'polling'; name?: string };
  devices?: { id: number; name: string; kind: TraceIoType; base: bigint | number; length: bigint | number }[];
}

/** A record for {@link TraceApi.encodeTrace}; missing timestamps are "not observed". */
export interface TraceRecordInit {
  vcpu: number;
  type: TraceIoType;
  direction: 'read' | 'write';
  size: number;
  outcome?: TraceOutcome;
  /** Device id; `null`/absent for none. */
  device?: number | null;
  address: bigint | number;
  value?: bigint | number;
  timestamps?: Partial<Record<TraceStamp, bigint | number>>;
}

/** The raw decode result of a binding (both bindings return this shape). */
export interface RawTrace {
  headerJson: string;
  count: number;
  footer: boolean;
  vcpu: Uint16Array;
  type: Uint8Array;
  direction: Uint8Array;
  size: Uint8Array;
  outcome: Uint8Array;
  device: Uint16Array;
  address: BigUint64Array;
  value: BigUint64Array;
  timestamps: BigUint64Array;
}

/** What a binding (native addon or wasm module) provides to the trace API. */
export interface TraceBinding {
  decodeTrace(bytes: Uint8Array): RawTrace;
  traceReport(bytes: Uint8Array, by: string): string;
  traceExportChrome(bytes: Uint8Array): string;
  traceExportCsv(bytes: Uint8Array): string;
  encodeTrace(meta: BigUint64Array, names: string[], devices: BigUint64Array, records: BigUint64Array, finish: boolean): Uint8Array;
}

/** The trace API. */
export interface TraceApi {
  /** Decodes a trace held in memory; throws `AcrnHsmError` (`ERR_TRACE_*`, offset in the message). */
  decodeTrace(bytes: Uint8Array | ArrayBuffer): Trace;
  /** The report of a trace, grouped `by` (default `'address'`). */
  traceReport(bytes: Uint8Array | ArrayBuffer, by?: TraceGroupBy): TraceReport;
  /** The report's JSON text, exactly as the core writes it. */
  traceReportJson(bytes: Uint8Array | ArrayBuffer, by?: TraceGroupBy): string;
  /** Chrome Trace Event JSON (opens in the Perfetto UI). */
  traceExportChrome(bytes: Uint8Array | ArrayBuffer): string;
  /** CSV with a header row. */
  traceExportCsv(bytes: Uint8Array | ArrayBuffer): string;
  /** Encodes a trace (for tests and tools); `finish: false` leaves out the footer. */
  encodeTrace(header: TraceHeaderInit, records: Iterable<TraceRecordInit>, options?: { finish?: boolean }): Uint8Array;
}

function bytesOf(bytes: Uint8Array | ArrayBuffer, what: string): Uint8Array {
  if (bytes instanceof Uint8Array) return bytes;
  if (bytes instanceof ArrayBuffer) return new Uint8Array(bytes);
  throw new AcrnHsmError('ERR_INVALID_ARG', `${what} must be a Uint8Array or an ArrayBuffer`);
}

interface HeaderJson {
  version: number;
  recordSize: number;
  clock: { source: string; resolutionNs: number; startNs: string; wallStartNs: string };
  vm: TraceHeader['vm'];
  devices: { id: number; name: string; kind: TraceIoType; base: string; length: string }[];
}

function parseHeader(json: string): TraceHeader {
  const h = JSON.parse(json) as HeaderJson;
  return {
    version: h.version,
    recordSize: h.recordSize,
    clock: { ...h.clock, startNs: BigInt(h.clock.startNs), wallStartNs: BigInt(h.clock.wallStartNs) },
    vm: h.vm,
    devices: h.devices.map((d) => ({ ...d, base: BigInt(d.base), length: BigInt(d.length) })),
  };
}

function fromRaw(raw: RawTrace): Trace {
  const n = raw.count;
  const ts = raw.timestamps;
  const col = (s: number) => ts.subarray(s * n, (s + 1) * n);
  const records: TraceColumns = {
    count: n,
    vcpu: raw.vcpu,
    type: raw.type,
    direction: raw.direction,
    size: raw.size,
    outcome: raw.outcome,
    device: raw.device,
    address: raw.address,
    value: raw.value,
    pending: col(0),
    processing: col(1),
    handlerStart: col(2),
    handlerEnd: col(3),
    notify: col(4),
    complete: col(5),
    free: col(6),
  };
  return new Trace(parseHeader(raw.headerJson), records, raw.footer);
}

const GROUPS: readonly string[] = ['address', 'device', 'vcpu', 'type'];

function checkBy(by: string): string {
  if (!GROUPS.includes(by)) {
    throw new AcrnHsmError('ERR_TRACE_INVALID', `cannot group by '${by}': use address, device, vcpu or type`);
  }
  return by;
}

function u64(v: bigint | number | undefined, what: string): bigint {
  if (v === undefined) return 0n;
  if (typeof v === 'number' && (!Number.isSafeInteger(v) || v < 0)) {
    throw new AcrnHsmError('ERR_TRACE_INVALID', `${what} must be a non-negative integer (got ${v})`);
  }
  const b = BigInt(v);
  if (b < 0n || b >= 1n << 64n) throw new AcrnHsmError('ERR_TRACE_INVALID', `${what} is out of the u64 range`);
  return b;
}

function indexOf<T>(list: readonly T[], v: T, what: string): bigint {
  const i = list.indexOf(v);
  if (i < 0) throw new AcrnHsmError('ERR_TRACE_INVALID', `invalid ${what} '${String(v)}'`);
  return BigInt(i);
}

/** Packs a PCI configuration access into a trace address: `bus << 24 | device << 19 | function << 16 | register`. */
export function pciAddress(bus: number, device: number, fn: number, register: number): bigint {
  return (BigInt(bus & 0xff) << 24n) | (BigInt(device & 0x1f) << 19n) | (BigInt(fn & 7) << 16n) | BigInt(register & 0xffff);
}

/** Unpacks {@link pciAddress}. */
export function pciFields(address: bigint): { bus: number; device: number; function: number; register: number } {
  return {
    bus: Number((address >> 24n) & 0xffn),
    device: Number((address >> 19n) & 0x1fn),
    function: Number((address >> 16n) & 7n),
    register: Number(address & 0xffffn),
  };
}

/** Builds the trace API over one binding. */
export function makeTraceApi(binding: () => TraceBinding): TraceApi {
  // Plain closures (no `this`): the functions are exported detached.
  const traceReportJson = (bytes: Uint8Array | ArrayBuffer, by: TraceGroupBy = 'address'): string => {
    const b = bytesOf(bytes, 'traceReport(bytes)');
    const g = checkBy(by);
    return callBinding(() => binding().traceReport(b, g));
  };
  return {
    decodeTrace(bytes) {
      const b = bytesOf(bytes, 'decodeTrace(bytes)');
      return fromRaw(callBinding(() => binding().decodeTrace(b)));
    },
    traceReport(bytes, by = 'address') {
      return JSON.parse(traceReportJson(bytes, by)) as TraceReport;
    },
    traceReportJson,
    traceExportChrome(bytes) {
      const b = bytesOf(bytes, 'traceExportChrome(bytes)');
      return callBinding(() => binding().traceExportChrome(b));
    },
    traceExportCsv(bytes) {
      const b = bytesOf(bytes, 'traceExportCsv(bytes)');
      return callBinding(() => binding().traceExportCsv(b));
    },
    encodeTrace(header, records, options) {
      const vm = header.vm ?? {};
      const clock = header.clock ?? {};
      const devices = header.devices ?? [];
      const meta = new BigUint64Array([
        u64(vm.vmid ?? 0, 'vm.vmid'),
        u64(vm.vcpuCount ?? 1, 'vm.vcpuCount'),
        vm.completion === 'polling' ? 1n : 0n,
        u64(clock.resolutionNs ?? 1, 'clock.resolutionNs'),
        u64(clock.startNs ?? 0, 'clock.startNs'),
        u64(clock.wallStartNs ?? 0, 'clock.wallStartNs'),
      ]);
      const names = [clock.source ?? 'CLOCK_MONOTONIC', vm.name ?? '', ...devices.map((d) => d.name)];
      const dev = new BigUint64Array(devices.length * 4);
      devices.forEach((d, i) => {
        dev.set([u64(d.id, 'device id'), indexOf(IO_TYPES, d.kind, 'device kind'), u64(d.base, 'device base'), u64(d.length, 'device length')], i * 4);
      });
      const list = [...records];
      const words = new BigUint64Array(list.length * 15);
      list.forEach((r, i) => {
        const ts = r.timestamps ?? {};
        words.set(
          [
            u64(r.vcpu, 'vcpu'),
            indexOf(IO_TYPES, r.type, 'type'),
            r.direction === 'write' ? 1n : r.direction === 'read' ? 0n : indexOf(['read', 'write'], r.direction, 'direction'),
            u64(r.size, 'size'),
            indexOf(OUTCOMES, r.outcome ?? 'ok', 'outcome'),
            r.device === undefined || r.device === null ? BigInt(NO_DEVICE) : u64(r.device, 'device'),
            u64(r.address, 'address'),
            u64(r.value ?? 0, 'value'),
            ...TRACE_STAMPS.map((s) => u64(ts[s], `timestamps.${s}`)),
          ],
          i * 15,
        );
      });
      return callBinding(() => binding().encodeTrace(meta, names, dev, words, options?.finish ?? true));
    },
  };
}
