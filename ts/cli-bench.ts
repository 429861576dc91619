/**
 * `acrn-hsm bench`: ioreq latency of every path (native Rust device, TS handler in the worker's
 * synchronous loop, TS handler on the main-thread async loop) × completion mode (poll, notify) ×
 * vCPUs, on the emulator, with the two C references (the floor and the C reference client)
 * measured in the same run; with `--guest`, a real guest on KVM against QEMU/KVM and a C KVM loop
 * (ts/bench/guest.ts). Method and figures: docs/performance.md.
 */
import { writeFileSync } from 'node:fs';
import { UsageError, parseCommand, printHelp, type CommandSpec, type Out } from './cli-args.js';
import type { BenchMode, BenchPath, CaseResult, CaseSize, FloorResult } from './bench/run.js';
import { MODES, PATHS } from './bench/run.js';
import type { GuestRun, GuestVariant } from './bench/guest.js';
import type { BlkRun, BlkVariant } from './bench/virtio.js';

/** `acrn-hsm bench`'s options. */
export const BENCH_SPEC: CommandSpec = {
  name: 'bench',
  summary: "ioreq latency by path and wake-up mode on the emulator, against the machine's floor and a C client; --guest: a real guest's PIO on KVM against QEMU; --virtio: a guest's virtio-blk reads against QEMU's (docs/performance.md).",
  options: [
    { name: 'quick', type: 'boolean', help: 'fewer requests and runs (a smoke run: 20000 requests, 2 runs)' },
    { name: 'json', type: 'boolean', help: 'print the results as JSON' },
    { name: 'vcpus', type: 'string', value: 'LIST', help: 'vCPU counts, 1..16, comma-separated', default: '1,2,4,16' },
    { name: 'paths', type: 'string', value: 'LIST', help: `paths, of ${PATHS.join(', ')}`, default: PATHS.join(',') },
    { name: 'modes', type: 'string', value: 'LIST', help: `completion modes, of ${MODES.join(', ')}`, default: MODES.join(',') },
    { name: 'requests', type: 'string', value: 'N', help: 'requests per case, 3..1e8', default: '100000, 20000 with --quick' },
    { name: 'seconds', type: 'string', value: 'S', help: 'a time cap per case, 0..3600 (0: none)', default: '0' },
    { name: 'runs', type: 'string', value: 'R', help: 'repetitions of the whole matrix, 1..100 (each figure is the median over them)', default: '3, 2 with --quick' },
    { name: 'expected-interval-ns', type: 'string', value: 'NS', help: "coordinated-omission correction: the expected interval between requests\n(HdrHistogram's recordCorrectedValue; 0: none)", default: '0' },
    { name: 'floor-requests', type: 'string', value: 'N', help: 'round trips of the floor measurement, 100..1e8' },
    { name: 'poll-backoff', type: 'boolean', help: 'let polling clients back off to sleeping (as a DM would when idle)' },
    { name: 'no-c', type: 'boolean', help: 'skip the C floor and the C reference client (no C compiler needed)' },
    { name: 'svg', type: 'string', value: 'FILE', help: 'also write the latency chart as SVG to FILE' },
    { name: 'guest', type: 'boolean', help: "instead: real-guest PIO latency on KVM (a real-mode guest timing out/in to a port\nserved by a native device, a TS device (sync, async), QEMU/KVM, a C KVM loop; --modes, --runs\n(default 5, 3 with --quick), --no-c and --json apply; needs /dev/kvm and\nqemu-system-x86_64: scripts/setup-bench-guest.sh)" },
    { name: 'guest-iterations', type: 'string', value: 'N', help: 'timed out/in pairs per guest run, 1..8000', default: '2000, 500 with --quick' },
    { name: 'virtio', type: 'boolean', help: "instead: virtio-blk read throughput and 4 KiB read latency from a guest (SeaBIOS + a\ntiming boot sector) on KVM with the native and the TypeScript virtio-blk against QEMU/KVM's\nvirtio-blk-pci on the same image; --modes, --runs (default 5, 3 with --quick) and --json apply;\nneeds /dev/kvm, seabios and qemu-system-x86_64: scripts/setup-bench-guest.sh)" },
    { name: 'virtio-reads', type: 'string', value: 'N', help: 'timed 32 KiB reads per --virtio run (throughput), 1..8000', default: '1920, 240 with --quick' },
    { name: 'virtio-latency-reads', type: 'string', value: 'N', help: 'timed 4 KiB reads per --virtio run (latency), 1..8000', default: '2000, 300 with --quick' },
  ],
};

/** What `--json` prints. */
export interface BenchJson {
  floor: Record<string, number | boolean | null>;
  c_reference: Record<string, Record<string, { loop: string; p50_ns: number; p99_ns: number; p999_ns: number; max_ns: number; throughput_rps: number }>>;
  results: { path: BenchPath; mode: BenchMode; vcpus: number; p50_ns: number; p99_ns: number; p999_ns: number; max_ns: number; throughput_rps: number }[];
  /** Each ratio measured pairwise: per run (its case and its reference measured next to each other), then the median. */
  ratios: Record<RatioName, number | null>;
  /** The lowest and highest per-run value of each ratio (how stable it is). */
  ratio_ranges: Record<RatioName, [number, number] | null>;
}

/** What `--guest --json` prints (docs/performance.md, "Real-guest PIO latency"). */
export interface GuestBenchJson {
  guest: {
    /** Why nothing was measured (KVM unusable), else null. */
    skipped: string | null;
    /** Variants left out, with why (QEMU missing, --no-c). */
    skipped_variants: Partial<Record<GuestVariant, string>>;
    /** The host TSC's rate the cycle counts are converted with. */
    tsc_hz: number;
    iterations: number;
    warmup: number;
    rounds: number;
    qemu: string | null;
    /** Per variant and completion mode (QEMU and the C loop: measured next to each mode's pair): medians over the rounds. */
    results: { variant: GuestVariant; mode: BenchMode; pair_cycles: number; pair_ns: number; exit_ns: number; pair_p99_ns: number; pair_ns_range: [number, number]; empty_cycles: number }[];
    /** Each ratio per round (its two variants measured next to each other), then the median. */
    ratios: Partial<Record<BenchMode, Record<GuestRatioName, number | null>>>;
    /** The lowest and highest per-round value of each ratio. */
    ratio_ranges: Partial<Record<BenchMode, Record<GuestRatioName, [number, number] | null>>>;
  };
}

/** What `--virtio --json` prints (docs/performance.md, "virtio-blk throughput"). */
export interface VirtioBenchJson {
  virtio_blk: {
    /** Why nothing was measured (KVM or SeaBIOS unusable), else null. */
    skipped: string | null;
    /** Variants left out, with why (none so far: QEMU missing skips the whole bench). */
    skipped_variants: Partial<Record<BlkVariant, string>>;
    /** The host TSC's rate the cycle counts are converted with. */
    tsc_hz: number;
    /** Reads per run: warm-up, throughput (`big_bytes` each), latency (`small_bytes` each). */
    warmup_reads: number;
    big_reads: number;
    big_bytes: number;
    small_reads: number;
    small_bytes: number;
    /** The region read, bytes (sequential, wrapping). */
    region_bytes: number;
    rounds: number;
    qemu: string | null;
    /** QEMU's command line (the image and dump paths are per run). */
    qemu_command: string | null;
    /**
     * Per variant and completion mode (QEMU: measured next to each mode's native run): medians
     * over the rounds. Throughput: the throughput reads' bytes over the sum of their times.
     */
    results: { variant: BlkVariant; mode: BenchMode; throughput_mb_s: number; throughput_mb_s_range: [number, number]; read_big_p50_us: number; lat_4k_p50_us: number; lat_4k_p99_us: number; lat_4k_p50_us_range: [number, number] }[];
    /** Each ratio per round (its two variants measured next to each other), then the median. */
    ratios: Partial<Record<BenchMode, Record<VirtioRatioName, number | null>>>;
    /** The lowest and highest per-round value of each ratio. */
    ratio_ranges: Partial<Record<BenchMode, Record<VirtioRatioName, [number, number] | null>>>;
    /** Every run, in the order measured (round from 0): its throughput and median 4 KiB read. */
    per_round: { round: number; mode: BenchMode; variant: BlkVariant; throughput_mb_s: number; lat_4k_p50_us: number; wall_ms: number }[];
  };
}

/**
 * The ratios of `--virtio`, per completion mode: `*_read_*` is throughput, native (or js) MB/s
 * over QEMU's (higher is better; the targets: native >= 1.0, js >= 0.8); `*_4k_latency_*` is the
 * median 4 KiB read latency over QEMU's (lower is better).
 */
export type VirtioRatioName =
  | 'virtio_blk_read_native_vs_qemu'
  | 'virtio_blk_4k_latency_native_vs_qemu'
  | 'virtio_blk_read_native_ioeventfd_vs_qemu'
  | 'virtio_blk_4k_latency_native_ioeventfd_vs_qemu'
  | 'virtio_blk_read_native_kvm_ioeventfd_vs_qemu'
  | 'virtio_blk_4k_latency_native_kvm_ioeventfd_vs_qemu'
  | 'virtio_blk_read_js_vs_qemu'
  | 'virtio_blk_4k_latency_js_vs_qemu';

/**
 * The ratios of `--guest`: out/in pair latency of one variant over another's, per completion mode
 * (`js`: the TypeScript device in `runSync()` on a worker; `js_async`: on `client.run()`).
 */
export type GuestRatioName = 'guest_pio_native_vs_qemu' | 'guest_pio_js_vs_qemu' | 'guest_pio_js_async_vs_qemu' | 'guest_pio_native_vs_kvm_c' | 'guest_pio_js_vs_native';

/** The ratios `--json` reports. */
export type RatioName = 'native_vs_floor' | 'js_sync_vs_floor' | 'notify_vs_futex' | 'throughput_vs_c' | 'native_vs_c' | 'js_sync_vs_c' | 'js_async_vs_c';

function usage(msg: string): never {
  throw new UsageError(`bench: ${msg}`, BENCH_SPEC);
}

function list<T extends string>(what: string, v: string | undefined, allowed: readonly T[], dflt: readonly T[]): T[] {
  if (v === undefined) return [...dflt];
  const items = v.split(',').map((s) => s.trim()).filter(Boolean);
  for (const i of items) if (!allowed.includes(i as T)) usage(`--${what}: '${i}' is not one of ${allowed.join(', ')}`);
  if (items.length === 0) usage(`--${what} is empty`);
  return [...new Set(items)] as T[];
}

function num(what: string, v: string | undefined, dflt: number, min: number, max: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isFinite(n) || n < min || n > max) usage(`--${what} ${v}: expected a number in ${min}..${max}`);
  return n;
}

function fmtNs(ns: number | null | undefined): string {
  if (ns === null || ns === undefined || !Number.isFinite(ns)) return '-';
  if (ns >= 1e6) return `${(ns / 1e6).toFixed(2)} ms`;
  if (ns >= 1e4) return `${(ns / 1e3).toFixed(1)} µs`;
  if (ns >= 1e3) return `${(ns / 1e3).toFixed(2)} µs`;
  return `${Math.round(ns)} ns`;
}

function ratio(a: number | undefined, b: number | undefined): number | null {
  if (a === undefined || b === undefined || !(b > 0)) return null;
  return Math.round((a / b) * 1000) / 1000;
}

function table(header: string[], rows: string[][]): string {
  const w = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (c: string[]) => c.map((x, i) => (i < 3 ? x.padEnd(w[i] ?? 0) : x.padStart(w[i] ?? 0))).join('  ');
  return [line(header), w.map((n) => '-'.repeat(n)).join('  '), ...rows.map(line)].join('\n') + '\n';
}

class Progress {
  private done = 0;
  constructor(
    private readonly total: number,
    private readonly write: ((s: string) => void) | null,
  ) {}
  step(label: string): void {
    if (!this.write) return;
    const width = 30;
    const filled = Math.round((this.done / this.total) * width);
    this.write(`\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${this.done}/${this.total} ${label.padEnd(34)}`);
  }
  next(): void {
    this.done++;
  }
  end(): void {
    if (this.write) this.write(`\r${' '.repeat(80)}\r`);
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  if (n === 0) return 0;
  return n % 2 ? (s[(n - 1) >> 1] ?? 0) : ((s[n / 2 - 1] ?? 0) + (s[n / 2] ?? 0)) / 2;
}

/**
 * One result per (path, mode, vCPUs): the median over the runs of each figure (p50, p99, p99.9,
 * max, throughput; errors summed), with the table and plot of the run whose p50 is the median.
 */
function aggregate(rs: CaseResult[]): CaseResult[] {
  const groups = new Map<string, CaseResult[]>();
  for (const r of rs) {
    const key = `${r.path}|${r.mode}|${r.vcpus}`;
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  return [...groups.values()].map((g) => {
    const byP50 = [...g].sort((a, b) => a.p50 - b.p50);
    const mid = byP50[(byP50.length - 1) >> 1] ?? (g[0] as CaseResult);
    return {
      ...mid,
      p50: median(g.map((r) => r.p50)),
      p99: median(g.map((r) => r.p99)),
      p999: median(g.map((r) => r.p999)),
      max: median(g.map((r) => r.max)),
      throughputRps: median(g.map((r) => r.throughputRps)),
      errors: g.reduce((n, r) => n + r.errors, 0),
      runs: g.length,
      p50Range: [byP50[0]?.p50 ?? 0, byP50[byP50.length - 1]?.p50 ?? 0],
    };
  });
}

function aggregateFloor(fs: FloorResult[]): FloorResult | null {
  const first = fs[0];
  if (!first) return null;
  const byP50 = [...fs].sort((a, b) => a.spin.p50_ns - b.spin.p50_ns);
  const mid = byP50[(byP50.length - 1) >> 1] ?? first;
  const agg = (pick: (f: FloorResult) => FloorResult['spin'] | undefined): FloorResult['spin'] | undefined => {
    const xs = fs.map(pick).filter((x): x is FloorResult['spin'] => x !== undefined);
    const x0 = xs[0];
    if (!x0) return undefined;
    return {
      ...x0,
      p50_ns: median(xs.map((x) => x.p50_ns)),
      p99_ns: median(xs.map((x) => x.p99_ns)),
      p999_ns: median(xs.map((x) => x.p999_ns)),
      max_ns: median(xs.map((x) => x.max_ns)),
    };
  };
  return {
    ...mid,
    spin: agg((f) => f.spin) ?? first.spin,
    futex: agg((f) => f.futex) ?? first.futex,
    futex_unpinned: agg((f) => f.futex_unpinned),
  };
}

/** Runs `acrn-hsm bench`; returns the exit status. */
export async function benchCommand(args: string[], out: Out): Promise<number> {
  const { values: v, help } = parseCommand(BENCH_SPEC, args);
  if (help) return printHelp(BENCH_SPEC, out);
  const values = v as Record<string, string | undefined> & { quick?: boolean; 'no-c'?: boolean; 'poll-backoff'?: boolean; json?: boolean; guest?: boolean; virtio?: boolean };
  const quick = values.quick === true;
  if (values.virtio === true) return virtioBench(values, out);
  if (values.guest === true) return guestBench(values, out);
  const vcpuList = (values.vcpus ?? '1,2,4,16').split(',').map((s) => {
    const n = Number(s.trim());
    if (!Number.isInteger(n) || n < 1 || n > 16) usage(`--vcpus: '${s}' is not an integer in 1..16`);
    return n;
  });
  const vcpus = [...new Set(vcpuList)].sort((a, b) => a - b);
  const paths = list('paths', values.paths, PATHS, PATHS);
  const modes = list('modes', values.modes, MODES, MODES);
  const size: CaseSize = {
    requests: Math.round(num('requests', values.requests, quick ? 20_000 : 100_000, 3, 1e8)),
    seconds: num('seconds', values.seconds, 0, 0, 3600),
    expectedIntervalNs: Math.round(num('expected-interval-ns', values['expected-interval-ns'], 0, 0, 1e9)),
    pollBackoff: values['poll-backoff'] === true,
  };
  const withC = values['no-c'] !== true;

  const run = await import('./bench/run.js');
  const isTty = process.stderr.isTTY === true;
  const runs = Math.round(num('runs', values.runs, quick ? 2 : 3, 1, 100));
  const progress = new Progress(runs * (modes.length * vcpus.length * (paths.length + (withC ? 1 : 0)) + (withC ? 1 : 0)), isTty ? out.stderr : null);
  const floorRequests = values['floor-requests'] === undefined ? undefined : Math.round(num('floor-requests', values['floor-requests'], 0, 100, 1e8));

  let bins: { floor: string; reference: string } | null = null;
  if (withC) bins = run.ensureCPrograms(out.stderr);
  const floors: FloorResult[] = [];
  const allResults: CaseResult[] = [];
  const allCref: CaseResult[] = [];
  // What each run measured, for the pairwise ratios.
  // `spinNear`: spin-floor p50s taken right before the paths the floor ratios divide (poll, the
  // smallest vCPU count), so those ratios divide by the median of three samples of the run, not
  // by one moment (the spin floor follows where the host puts this VM's CPUs: docs/performance.md).
  const perRun: { floor?: FloorResult; spinNear: number[]; results: CaseResult[]; cref: CaseResult[] }[] = [];
  // `runs` repetitions of the whole matrix (the machine is shared: one run's figures can be off
  // by a scheduler time slice); within a run, cases are grouped by (mode, vCPUs), the reference
  // next to the paths it is compared with, so drifting load affects a comparison least.
  for (let k = 0; k < runs; k++) {
    const tag = runs > 1 ? ` (run ${k + 1}/${runs})` : '';
    const thisRun: (typeof perRun)[number] = { spinNear: [], results: [], cref: [] };
    perRun.push(thisRun);
    if (bins) {
      progress.step(`floor${tag}`);
      thisRun.floor = run.runFloor(bins.floor, quick, size.expectedIntervalNs, floorRequests);
      floors.push(thisRun.floor);
      progress.next();
    }
    for (const mode of modes) {
      for (const v of vcpus) {
        if (bins) {
          progress.step(`c-reference ${mode} ${v} vCPU${tag}`);
          const c = run.runCReference(bins.reference, mode, v, size);
          allCref.push(c);
          thisRun.cref.push(c);
          progress.next();
        }
        for (const path of paths) {
          // Right before each path a floor ratio divides (not after a JS case: its worker or
          // loop may still be winding down on one of the floor's pinned CPUs).
          if (bins && mode === 'poll' && v === vcpus[0] && (path === 'native' || path === 'js-sync')) {
            thisRun.spinNear.push(run.runSpinFloor(bins.floor, size.expectedIntervalNs));
          }
          progress.step(`${path} ${mode} ${v} vCPU${tag}`);
          const r =
            path === 'native'
              ? await run.runNative(mode, v, size)
              : path === 'js-sync'
                ? await run.runJsSync(mode, v, size)
                : await run.runJsAsync(mode, v, size);
          allResults.push(r);
          thisRun.results.push(r);
          progress.next();
        }
      }
    }
  }
  progress.end();
  const results = aggregate(allResults);
  const cref = aggregate(allCref);
  const floor = aggregateFloor(floors);

  const find = (rs: CaseResult[], path: string, mode: BenchMode, v: number) => rs.find((r) => r.path === path && r.mode === mode && r.vcpus === v);
  const v1 = vcpus[0] ?? 1;
  const vTop = vcpus.includes(16) ? 16 : (vcpus[vcpus.length - 1] ?? 1);
  // The notify reference is the pinned futex round trip: two wake-ups across CPUs, as in ACRN,
  // where a vCPU has its own pCPU and the device model runs elsewhere. The unpinned figure is
  // bimodal (the scheduler may put both threads on one CPU: two same-CPU switches) and is shown
  // beside it (docs/performance.md).
  const futexRef = floor?.futex;
  // Pairwise: each run's case over the same run's reference, then the median and the range of
  // those per-run ratios (a noisy moment moves one pair, not the median).
  const pairs = (f: (r: (typeof perRun)[number]) => number | null): { median: number | null; range: [number, number] | null } => {
    const xs = perRun.map(f).filter((x): x is number => x !== null);
    if (!xs.length) return { median: null, range: null };
    const m = median(xs);
    return { median: Math.round(m * 1000) / 1000, range: [Math.min(...xs), Math.max(...xs)].map((x) => Math.round(x * 1000) / 1000) as [number, number] };
  };
  const p50 = (rs: CaseResult[], path: string, mode: BenchMode, v: number) => find(rs, path, mode, v)?.p50;
  const thrOf = (r: (typeof perRun)[number]) => {
    const t = modes
      .map((m) => ratio(find(r.results, 'native', m, vTop)?.throughputRps, find(r.cref, 'c-reference', m, vTop)?.throughputRps))
      .filter((x): x is number => x !== null);
    return t.length ? Math.min(...t) : null;
  };
  const spinOfRun = (r: (typeof perRun)[number]) => (r.floor ? median([r.floor.spin.p50_ns, ...r.spinNear]) : undefined);
  const measured: Record<RatioName, ReturnType<typeof pairs>> = {
    native_vs_floor: pairs((r) => ratio(p50(r.results, 'native', 'poll', v1), spinOfRun(r))),
    js_sync_vs_floor: pairs((r) => ratio(p50(r.results, 'js-sync', 'poll', v1), spinOfRun(r))),
    notify_vs_futex: pairs((r) => ratio(p50(r.results, 'native', 'notify', v1), r.floor?.futex.p50_ns)),
    throughput_vs_c: pairs(thrOf),
    native_vs_c: pairs((r) => ratio(p50(r.results, 'native', 'poll', v1), p50(r.cref, 'c-reference', 'poll', v1))),
    js_sync_vs_c: pairs((r) => ratio(p50(r.results, 'js-sync', 'poll', v1), p50(r.cref, 'c-reference', 'poll', v1))),
    js_async_vs_c: pairs((r) => ratio(p50(r.results, 'js-async', 'poll', v1), p50(r.cref, 'c-reference', 'poll', v1))),
  };
  const names = Object.keys(measured) as RatioName[];
  const json: BenchJson = {
    floor: floor
      ? {
          spin_p50_ns: floor.spin.p50_ns,
          // What the floor ratios divide by: each run's median of its three spin p50s, the
          // median over the runs.
          spin_ref_p50_ns: median(perRun.map(spinOfRun).filter((x): x is number => x !== undefined)),
          futex_p50_ns: floor.futex.p50_ns,
          futex_unpinned_p50_ns: floor.futex_unpinned?.p50_ns ?? null,
          spin_p99_ns: floor.spin.p99_ns,
          futex_p99_ns: floor.futex.p99_ns,
          futex_unpinned_p99_ns: floor.futex_unpinned?.p99_ns ?? null,
          pinned: floor.pinned,
        }
      : {},
    c_reference: {},
    results: results.map((r) => ({
      path: r.path as BenchPath,
      mode: r.mode,
      vcpus: r.vcpus,
      p50_ns: r.p50,
      p99_ns: r.p99,
      p999_ns: r.p999,
      max_ns: r.max,
      throughput_rps: Math.round(r.throughputRps),
    })),
    ratios: Object.fromEntries(names.map((n) => [n, measured[n].median])) as Record<RatioName, number | null>,
    ratio_ranges: Object.fromEntries(names.map((n) => [n, measured[n].range])) as Record<RatioName, [number, number] | null>,
  };
  for (const c of cref) {
    const m = (json.c_reference[c.mode] ??= {});
    m[String(c.vcpus)] = {
      loop: c.loop ?? '',
      p50_ns: c.p50,
      p99_ns: c.p99,
      p999_ns: c.p999,
      max_ns: c.max,
      throughput_rps: Math.round(c.throughputRps),
    };
  }

  const bad = results.filter((r) => r.errors !== 0);
  for (const r of bad) {
    out.stderr(`acrn-hsm bench: ${r.path} ${r.mode} ${r.vcpus} vCPU: ${r.errors} errors (mismatches, faults, lost or duplicated requests); issued ${r.issued}, completed ${r.completed}\n`);
  }

  if (values.svg) {
    const panels = [];
    for (const mode of modes) {
      for (const v of vcpus) {
        const series = [...paths.map((p) => find(results, p, mode, v)), find(cref, 'c-reference', mode, v)]
          .filter((r): r is CaseResult => r !== undefined)
          .map((r) => ({ label: r.path, points: r.points ?? r.hist.percentilePoints() }));
        const f = mode === 'poll' ? floor?.spin.p50_ns : futexRef?.p50_ns;
        panels.push({ title: `${mode}, ${v} vCPU${v > 1 ? 's' : ''}`, series, floor: f ? { label: `floor ${mode === 'poll' ? 'spin' : 'futex'} p50`, valueNs: f } : undefined });
      }
    }
    const { renderSvg } = await import('./bench/svg.js');
    writeFileSync(values.svg, renderSvg(panels, vcpus.length, 'acrn-hsm bench: guest-side ioreq latency (PENDING to FREE)'));
  }

  if (values.json) {
    out.stdout(JSON.stringify(json, null, 2) + '\n');
    return bad.length ? 1 : 0;
  }

  // Percentile tables, then the summary.
  if (floor) out.stdout(floor.table.trimEnd() + '\n\n');
  for (const r of [...cref, ...results]) {
    const title = `${r.path} ${r.mode} ${r.vcpus} vCPU${r.loop ? ` (loop ${r.loop})` : ''}`;
    if (r.path === 'c-reference') out.stdout(`${(r.table ?? '').trimEnd().replace(/^# .*/, `# ${title}`)}\n\n`);
    else out.stdout(r.hist.percentileTable(title));
  }
  if (floor) {
    out.stdout('floor\n');
    out.stdout(
      table(
        ['variant', '', '', 'p50', 'p99', 'p99.9', 'max'],
        (['spin', 'futex', 'futex_unpinned'] as const).flatMap((k) => {
          const f = floor[k];
          return f ? [[k === 'futex' ? 'futex (pinned)' : k, '', '', fmtNs(f.p50_ns), fmtNs(f.p99_ns), fmtNs(f.p999_ns), fmtNs(f.max_ns)]] : [];
        }),
      ) + '\n',
    );
  }
  const rows = [...cref, ...results]
    .sort((a, b) => (a.mode === b.mode ? a.vcpus - b.vcpus : a.mode < b.mode ? 1 : -1))
    .map((r) => {
      const f = r.mode === 'poll' ? floor?.spin.p50_ns : futexRef?.p50_ns;
      const c = find(cref, 'c-reference', r.mode, r.vcpus);
      return [
        r.path,
        r.mode,
        String(r.vcpus),
        fmtNs(r.p50),
        r.p50Range && (r.runs ?? 1) > 1 ? `${fmtNs(r.p50Range[0])}..${fmtNs(r.p50Range[1])}` : '-',
        fmtNs(r.p99),
        fmtNs(r.p999),
        fmtNs(r.max),
        String(Math.round(r.throughputRps)),
        f ? `${(r.p50 / f).toFixed(2)}x` : '-',
        c && r.path !== 'c-reference' ? `${(r.throughputRps / c.throughputRps).toFixed(2)}x` : '-',
      ];
    });
  out.stdout(`medians over ${runs} run${runs > 1 ? 's' : ''}\n`);
  out.stdout(table(['path', 'mode', 'vCPUs', 'p50', 'p50 range', 'p99', 'p99.9', 'max', 'req/s', 'p50/floor', 'thr/C'], rows) + '\n');
  const rt = json.ratios;
  const target = (x: number | null, ok: (x: number) => boolean) => (x === null ? 'n/a' : ok(x) ? 'met' : 'missed');
  out.stdout('ratios (targets: DESIGN.md "Performance")\n');
  out.stdout(`  native_vs_floor   ${rt.native_vs_floor ?? '-'}  native poll ${v1} vCPU p50 / spin floor p50, median of 3 samples per run (target <= 1.5: ${target(rt.native_vs_floor, (x) => x <= 1.5)})\n`);
  out.stdout(`  js_sync_vs_floor  ${rt.js_sync_vs_floor ?? '-'}  js-sync poll ${v1} vCPU p50 / spin floor p50 (target <= 2: ${target(rt.js_sync_vs_floor, (x) => x <= 2)})\n`);
  out.stdout(`  notify_vs_futex   ${rt.notify_vs_futex ?? '-'}  native notify ${v1} vCPU p50 / pinned futex floor p50 (target <= 1.2: ${target(rt.notify_vs_futex, (x) => x <= 1.2)})\n`);
  const nn = find(results, 'native', 'notify', v1)?.p50;
  out.stdout(`                    ${ratio(nn, floor?.futex_unpinned?.p50_ns) ?? '-'}  the same / unpinned futex floor p50 (bimodal: same-CPU or cross-CPU switches)\n`);
  out.stdout(`                    ${ratio(nn, find(cref, 'c-reference', 'notify', v1)?.p50) ?? '-'}  the same / C reference notify ${v1} vCPU p50\n`);
  const pn = find(results, 'native', 'poll', v1)?.p50;
  out.stdout(`  (native poll ${v1} vCPU p50 / C reference busy-loop p50: ${ratio(pn, find(cref, 'c-reference', 'poll', v1)?.p50) ?? '-'}; js-sync: ${ratio(find(results, 'js-sync', 'poll', v1)?.p50, find(cref, 'c-reference', 'poll', v1)?.p50) ?? '-'})\n`);
  out.stdout(`  throughput_vs_c   ${rt.throughput_vs_c ?? '-'}  native / C reference throughput at ${vTop} vCPUs, lower of the modes (target >= 0.9: ${target(rt.throughput_vs_c, (x) => x >= 0.9)})\n`);
  out.stdout(`  native_vs_c ${rt.native_vs_c ?? '-'}, js_sync_vs_c ${rt.js_sync_vs_c ?? '-'}, js_async_vs_c ${rt.js_async_vs_c ?? '-'}  poll ${v1} vCPU p50 / C reference busy-loop p50\n`);
  const ranges = names.map((n) => `${n} ${json.ratio_ranges[n]?.join('..') ?? '-'}`).join(', ');
  out.stdout(`  per-run ranges (pairwise, ${runs} run${runs > 1 ? 's' : ''}): ${ranges}\n`);
  if (values.svg) out.stdout(`plot: ${values.svg}\n`);
  return bad.length ? 1 : 0;
}

/** `acrn-hsm bench --guest`: the real-guest PIO latency cases (ts/bench/guest.ts). */
async function guestBench(values: Record<string, string | undefined> & { quick?: boolean; 'no-c'?: boolean; json?: boolean }, out: Out): Promise<number> {
  const quick = values.quick === true;
  const modes = list('modes', values.modes, MODES, MODES);
  const rounds = Math.round(num('runs', values.runs, quick ? 3 : 5, 1, 100));
  const iterations = Math.round(num('guest-iterations', values['guest-iterations'], quick ? 500 : 2000, 1, 8000));
  const warmup = Math.max(50, Math.round(iterations / 10));
  const json: GuestBenchJson = { guest: { skipped: null, skipped_variants: {}, tsc_hz: 0, iterations, warmup, rounds, qemu: null, results: [], ratios: {}, ratio_ranges: {} } };
  const g = json.guest;
  const { engines } = await import('./run.js');
  const kvm = engines().kvm;
  if (!kvm.usable) {
    g.skipped = `the KVM engine cannot run here: ${kvm.reason}`;
    if (values.json) out.stdout(JSON.stringify(json, null, 2) + '\n');
    else out.stdout(`bench --guest: skipped: ${g.skipped}\n`);
    return 0;
  }
  const guest = await import('./bench/guest.js');
  const run = await import('./bench/run.js');
  const qv = guest.qemuVersion();
  g.qemu = qv.version;
  if (!qv.version) g.skipped_variants.qemu = qv.reason;
  let kvmC: string | null = null;
  if (values['no-c'] === true) g.skipped_variants['kvm-c'] = '--no-c';
  else kvmC = run.ensureCPrograms(out.stderr).kvmFloor;
  g.tsc_hz = Math.round(guest.tscHz(50));
  const files = new guest.GuestFiles(iterations, warmup);
  const isTty = process.stderr.isTTY === true;
  const perMode = 3 + (qv.version ? 1 : 0) + (kvmC ? 1 : 0);
  const progress = new Progress(rounds * modes.length * perMode, isTty ? out.stderr : null);
  // runs[round][mode][variant]: A B A B ... within a round and mode, so that each ratio's two
  // variants are measured next to each other.
  const perRound: Record<string, Partial<Record<GuestVariant, GuestRun>>>[] = [];
  try {
    for (let k = 0; k < rounds; k++) {
      const tag = rounds > 1 ? ` (round ${k + 1}/${rounds})` : '';
      const round: (typeof perRound)[number] = {};
      perRound.push(round);
      for (const mode of modes) {
        const m: Partial<Record<GuestVariant, GuestRun>> = (round[mode] = {});
        const step = async (variant: GuestVariant, f: () => GuestRun | Promise<GuestRun>) => {
          progress.step(`${variant} ${mode}${tag}`);
          m[variant] = await f();
          progress.next();
        };
        if (qv.version) await step('qemu', () => guest.runGuestQemu(files));
        await step('native', () => guest.runGuestNative(mode, iterations, warmup));
        await step('js-sync', () => guest.runGuestJsSync(mode, iterations, warmup));
        await step('js-async', () => guest.runGuestJsAsync(mode, iterations, warmup));
        if (kvmC) {
          const bin = kvmC;
          await step('kvm-c', () => guest.runGuestKvmC(bin, files));
        }
      }
    }
  } finally {
    progress.end();
    files.remove();
  }
  const ns = (cycles: number) => Math.round((cycles / g.tsc_hz) * 1e9);
  const variants = guest.GUEST_VARIANTS.filter((x) => !g.skipped_variants[x]);
  for (const mode of modes) {
    for (const variant of variants) {
      const rs = perRound.map((r) => r[mode]?.[variant]).filter((x): x is GuestRun => x !== undefined);
      if (!rs.length) continue;
      const pair = median(rs.map((r) => r.pairCycles));
      g.results.push({
        variant,
        mode,
        pair_cycles: Math.round(pair),
        pair_ns: ns(pair),
        exit_ns: ns(pair / 2),
        pair_p99_ns: ns(median(rs.map((r) => r.pairP99Cycles))),
        pair_ns_range: [ns(Math.min(...rs.map((r) => r.pairCycles))), ns(Math.max(...rs.map((r) => r.pairCycles)))],
        empty_cycles: Math.round(median(rs.map((r) => median([...r.empty])))),
      });
    }
    const pairs = (a: GuestVariant, b: GuestVariant): { median: number | null; range: [number, number] | null } => {
      const xs = perRound.map((r) => ratio(r[mode]?.[a]?.pairCycles, r[mode]?.[b]?.pairCycles)).filter((x): x is number => x !== null);
      if (!xs.length) return { median: null, range: null };
      const r3 = (x: number) => Math.round(x * 1000) / 1000;
      return { median: r3(median(xs)), range: [r3(Math.min(...xs)), r3(Math.max(...xs))] };
    };
    const measured: Record<GuestRatioName, ReturnType<typeof pairs>> = {
      guest_pio_native_vs_qemu: pairs('native', 'qemu'),
      guest_pio_js_vs_qemu: pairs('js-sync', 'qemu'),
      guest_pio_js_async_vs_qemu: pairs('js-async', 'qemu'),
      guest_pio_native_vs_kvm_c: pairs('native', 'kvm-c'),
      guest_pio_js_vs_native: pairs('js-sync', 'native'),
    };
    const names = Object.keys(measured) as GuestRatioName[];
    g.ratios[mode] = Object.fromEntries(names.map((n) => [n, measured[n].median])) as Record<GuestRatioName, number | null>;
    g.ratio_ranges[mode] = Object.fromEntries(names.map((n) => [n, measured[n].range])) as Record<GuestRatioName, [number, number] | null>;
  }
  if (values.json) {
    out.stdout(JSON.stringify(json, null, 2) + '\n');
    return 0;
  }
  out.stdout(`real-guest PIO latency: ${iterations} timed out/in pairs per run (after ${warmup}), ${rounds} round${rounds > 1 ? 's' : ''}, TSC ${(g.tsc_hz / 1e9).toFixed(3)} GHz${g.qemu ? `, ${g.qemu}` : ''}\n`);
  for (const [vname, why] of Object.entries(g.skipped_variants)) out.stdout(`  ${vname}: skipped (${why})\n`);
  out.stdout('\n');
  out.stdout(
    table(
      ['variant', 'mode', '', 'out+in p50', 'range', 'per exit', 'p99', 'cycles'],
      g.results.map((r) => [r.variant, r.variant === 'qemu' || r.variant === 'kvm-c' ? `(${r.mode})` : r.mode, '', fmtNs(r.pair_ns), `${fmtNs(r.pair_ns_range[0])}..${fmtNs(r.pair_ns_range[1])}`, fmtNs(r.exit_ns), fmtNs(r.pair_p99_ns), String(r.pair_cycles)]),
    ) + '\n',
  );
  out.stdout(`ratios (per round, median [min, max])\n`);
  for (const mode of modes) {
    const rt = g.ratios[mode];
    const rr = g.ratio_ranges[mode];
    if (!rt || !rr) continue;
    const show = (n: GuestRatioName) => `${n} ${rt[n] ?? '-'}${rr[n] ? ` [${rr[n]?.map((x) => x.toFixed(3)).join(', ')}]` : ''}`;
    out.stdout(`  ${mode.padEnd(6)} ${(['guest_pio_native_vs_qemu', 'guest_pio_js_vs_qemu', 'guest_pio_js_async_vs_qemu', 'guest_pio_native_vs_kvm_c', 'guest_pio_js_vs_native'] as const).map(show).join(', ')}\n`);
  }
  return 0;
}

/** `acrn-hsm bench --virtio`: virtio-blk reads from a guest, against QEMU's (ts/bench/virtio.ts). */
async function virtioBench(values: Record<string, string | undefined> & { quick?: boolean; json?: boolean }, out: Out): Promise<number> {
  const quick = values.quick === true;
  const modes = list('modes', values.modes, MODES, MODES);
  const rounds = Math.round(num('runs', values.runs, quick ? 3 : 5, 1, 100));
  const bigReads = Math.round(num('virtio-reads', values['virtio-reads'], quick ? 240 : 1920, 1, 8000));
  const smallReads = Math.round(num('virtio-latency-reads', values['virtio-latency-reads'], quick ? 300 : 2000, 1, 8000));
  const sizes = { warmup: 16, bigReads, bigSectors: 64, smallReads, smallSectors: 8, lba0: 2048, lbaEnd: 32768 };
  const json: VirtioBenchJson = {
    virtio_blk: {
      skipped: null,
      skipped_variants: {},
      tsc_hz: 0,
      warmup_reads: sizes.warmup,
      big_reads: bigReads,
      big_bytes: sizes.bigSectors * 512,
      small_reads: smallReads,
      small_bytes: sizes.smallSectors * 512,
      region_bytes: (sizes.lbaEnd - sizes.lba0) * 512,
      rounds,
      qemu: null,
      qemu_command: null,
      results: [],
      ratios: {},
      ratio_ranges: {},
      per_round: [],
    },
  };
  const g = json.virtio_blk;
  const skipped = (why: string): number => {
    g.skipped = why;
    if (values.json) out.stdout(JSON.stringify(json, null, 2) + '\n');
    else out.stdout(`bench --virtio: skipped: ${why}\n`);
    return 0;
  };
  const { engines } = await import('./run.js');
  const kvm = engines().kvm;
  if (!kvm.usable) return skipped(`the KVM engine cannot run here: ${kvm.reason}`);
  const { existsSync } = await import('node:fs');
  const { SEABIOS_PATH } = await import('./hsm.js');
  if (!existsSync(SEABIOS_PATH)) return skipped(`${SEABIOS_PATH} missing (apt-get install seabios, or scripts/setup-bench-guest.sh)`);
  const guest = await import('./bench/guest.js');
  const vb = await import('./bench/virtio.js');
  const qv = guest.qemuVersion();
  if (!qv.version) return skipped(qv.reason);
  g.qemu = qv.version;
  g.tsc_hz = Math.round(guest.tscHz(50));
  const files = new vb.BlkFiles(sizes);
  g.qemu_command = vb.qemuCommand(files).join(' ');
  const variants = vb.BLK_VARIANTS.filter((x) => !g.skipped_variants[x] && vb.BLK_RUNNERS[x]);
  const progress = new Progress(rounds * modes.length * variants.length, process.stderr.isTTY === true ? out.stderr : null);
  const perRound: Record<string, Partial<Record<BlkVariant, BlkRun>>>[] = [];
  try {
    for (let k = 0; k < rounds; k++) {
      const tag = rounds > 1 ? ` (round ${k + 1}/${rounds})` : '';
      const round: (typeof perRound)[number] = {};
      perRound.push(round);
      for (const mode of modes) {
        const m: Partial<Record<BlkVariant, BlkRun>> = (round[mode] = {});
        // QEMU first, then the others: each ratio's two runs are next to each other.
        for (const variant of ['qemu', ...variants.filter((x) => x !== 'qemu')] as BlkVariant[]) {
          const runner = vb.BLK_RUNNERS[variant];
          if (!runner || !variants.includes(variant)) continue;
          progress.step(`${variant} ${mode}${tag}`);
          m[variant] = await runner(files, mode);
          progress.next();
        }
      }
    }
  } finally {
    progress.end();
    files.remove();
  }
  const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
  const q = (xs: number[], p: number) => {
    const s = [...xs].sort((a, b) => a - b);
    return s[Math.min(s.length - 1, Math.floor(p * s.length))] ?? 0;
  };
  const us = (cycles: number) => Math.round((cycles / g.tsc_hz) * 1e7) / 10;
  // MB/s (10^6 bytes) of a run's throughput reads: their bytes over the sum of their times.
  const mbs = (r: BlkRun) => Math.round(((r.big.length * g.big_bytes) / (sum(r.big) / g.tsc_hz) / 1e6) * 10) / 10;
  const r3 = (x: number) => Math.round(x * 1000) / 1000;
  perRound.forEach((round, k) => {
    for (const mode of modes) {
      for (const variant of variants) {
        const r = round[mode]?.[variant];
        if (r) g.per_round.push({ round: k, mode, variant, throughput_mb_s: mbs(r), lat_4k_p50_us: us(median(r.small)), wall_ms: Math.round(r.wallMs) });
      }
    }
  });
  for (const mode of modes) {
    for (const variant of variants) {
      const rs = perRound.map((r) => r[mode]?.[variant]).filter((x): x is BlkRun => x !== undefined);
      if (!rs.length) continue;
      const thr = rs.map(mbs);
      const lat = rs.map((r) => us(median(r.small)));
      g.results.push({
        variant,
        mode,
        throughput_mb_s: median(thr),
        throughput_mb_s_range: [Math.min(...thr), Math.max(...thr)],
        read_big_p50_us: median(rs.map((r) => us(median(r.big)))),
        lat_4k_p50_us: median(lat),
        lat_4k_p99_us: median(rs.map((r) => us(q(r.small, 0.99)))),
        lat_4k_p50_us_range: [Math.min(...lat), Math.max(...lat)],
      });
    }
    const pairs = (f: (r: Partial<Record<BlkVariant, BlkRun>>) => number | null): { median: number | null; range: [number, number] | null } => {
      const xs = perRound.map((r) => f(r[mode] ?? {})).filter((x): x is number => x !== null);
      if (!xs.length) return { median: null, range: null };
      return { median: r3(median(xs)), range: [r3(Math.min(...xs)), r3(Math.max(...xs))] };
    };
    // Throughput: the same bytes each, so MB/s(a) / MB/s(b) = time(b) / time(a).
    const thrRatio = (a: BlkVariant) => pairs((r) => (r[a] && r.qemu ? ratio(sum(r.qemu.big), sum(r[a].big)) : null));
    const latRatio = (a: BlkVariant) => pairs((r) => (r[a] && r.qemu ? ratio(median(r[a].small), median(r.qemu.small)) : null));
    const measured: Record<VirtioRatioName, ReturnType<typeof pairs>> = {
      virtio_blk_read_native_vs_qemu: thrRatio('native'),
      virtio_blk_4k_latency_native_vs_qemu: latRatio('native'),
      virtio_blk_read_native_ioeventfd_vs_qemu: thrRatio('native-ioeventfd'),
      virtio_blk_4k_latency_native_ioeventfd_vs_qemu: latRatio('native-ioeventfd'),
      virtio_blk_read_native_kvm_ioeventfd_vs_qemu: thrRatio('native-kvm-ioeventfd'),
      virtio_blk_4k_latency_native_kvm_ioeventfd_vs_qemu: latRatio('native-kvm-ioeventfd'),
      virtio_blk_read_js_vs_qemu: thrRatio('js'),
      virtio_blk_4k_latency_js_vs_qemu: latRatio('js'),
    };
    const names = Object.keys(measured) as VirtioRatioName[];
    g.ratios[mode] = Object.fromEntries(names.map((n) => [n, measured[n].median])) as Record<VirtioRatioName, number | null>;
    g.ratio_ranges[mode] = Object.fromEntries(names.map((n) => [n, measured[n].range])) as Record<VirtioRatioName, [number, number] | null>;
  }
  if (values.json) {
    out.stdout(JSON.stringify(json, null, 2) + '\n');
    return 0;
  }
  out.stdout(
    `virtio-blk reads from a guest (SeaBIOS int 13h AH=42h): ${bigReads} x ${g.big_bytes / 1024} KiB (throughput), ${smallReads} x ${g.small_bytes / 1024} KiB (latency) per run after ${sizes.warmup}, over ${g.region_bytes >> 20} MiB; ${rounds} round${rounds > 1 ? 's' : ''}, TSC ${(g.tsc_hz / 1e9).toFixed(3)} GHz, ${g.qemu}\n`,
  );
  for (const [vname, why] of Object.entries(g.skipped_variants)) out.stdout(`  ${vname}: skipped (${why})\n`);
  out.stdout('\n');
  out.stdout(
    table(
      ['variant', 'mode', '', 'MB/s', 'range', '32K p50', '4K p50', 'range', '4K p99'],
      g.results.map((r) => [
        r.variant,
        r.variant === 'qemu' ? `(${r.mode})` : r.mode,
        '',
        r.throughput_mb_s.toFixed(1),
        `${r.throughput_mb_s_range[0].toFixed(1)}..${r.throughput_mb_s_range[1].toFixed(1)}`,
        `${r.read_big_p50_us} µs`,
        `${r.lat_4k_p50_us} µs`,
        `${r.lat_4k_p50_us_range[0]}..${r.lat_4k_p50_us_range[1]}`,
        `${r.lat_4k_p99_us} µs`,
      ]),
    ) + '\n',
  );
  out.stdout('ratios (per round, median [min, max]; read: throughput over QEMU\'s, higher is better, target native >= 1.0, js >= 0.8; 4k_latency: median over QEMU\'s, lower is better)\n');
  for (const mode of modes) {
    const rt = g.ratios[mode];
    const rr = g.ratio_ranges[mode];
    if (!rt || !rr) continue;
    const show = (n: VirtioRatioName) => `${n} ${rt[n] ?? '-'}${rr[n] ? ` [${rr[n]?.map((x) => x.toFixed(3)).join(', ')}]` : ''}`;
    out.stdout(`  ${mode.padEnd(6)} ${(Object.keys(rt) as VirtioRatioName[]).filter((n) => rt[n] !== null).map(show).join(', ')}\n`);
  }
  return 0;
}
