/**
 * The cases of `acrn-hsm bench`: this project's three paths on the emulator, and the two C
 * references (`benches/c/floor.c`, `benches/c/reference_client.c`) run as child processes.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { Hsm, stopClient } from '../index.js';
import type { WakeMode } from '../client.js';
import { native } from '../native.js';
import { Histogram } from './hist.js';
import { benchDevices, benchWorkload, REQUESTS_PER_ROUND } from './devices.js';
import { VM_FLAG_POLLING, workerInbox } from './worker-run.js';

export type BenchPath = 'native' | 'js-sync' | 'js-async';
export type BenchMode = 'poll' | 'notify';
export const PATHS: readonly BenchPath[] = ['native', 'js-sync', 'js-async'];
export const MODES: readonly BenchMode[] = ['poll', 'notify'];

/** Sizes of one case. */
export interface CaseSize {
  /** Requests in the measured part (all vCPUs; rounded up to whole rounds of 3 per vCPU). */
  requests: number;
  /** Upper bound on the measured part's wall time (0: none). */
  seconds: number;
  /** Coordinated-omission correction interval (0: off). */
  expectedIntervalNs: number;
  /** Native poll client: the library's default back-off instead of spinning like the C busy loop. */
  pollBackoff?: boolean;
}

/** A measured case. */
export interface CaseResult {
  path: BenchPath | 'c-reference';
  mode: BenchMode;
  vcpus: number;
  hist: Histogram;
  issued: number;
  completed: number;
  /** Mismatches, faults, lost or unaccounted requests. */
  errors: number;
  seconds: number;
  throughputRps: number;
  /** Percentile table text (C cases: as printed by the C program). */
  table?: string;
  /** (percentile, ns) points for the plot (C cases: parsed from the table). */
  points?: { percentile: number; valueNs: number }[];
  /** C cases: the loop (`busy` for poll, `attach` for notify). */
  loop?: string;
  p50: number;
  p99: number;
  p999: number;
  max: number;
  /** Runs aggregated (medians), and the min..max of p50 over them. */
  runs?: number;
  p50Range?: [number, number];
}


function rounds(size: CaseSize, vcpus: number): { rounds: number; warmup: number; chunk: number } {
  const per = REQUESTS_PER_ROUND * vcpus;
  const r = Math.max(1, Math.ceil(size.requests / per));
  // As the C reference: a discarded warm-up of min(N/10, 10000) requests.
  const warmup = Math.max(1, Math.ceil(Math.min(size.requests / 10, 10_000) / per));
  // A time cap needs several guest runs (each starts and joins its vCPU threads, which costs
  // throughput at many vCPUs): only when asked for, and then 4 of them.
  const chunk = size.seconds > 0 ? Math.max(1, Math.ceil(r / 4)) : r;
  return { rounds: r, warmup, chunk };
}

function finish(
  c: Omit<CaseResult, 'hist' | 'p50' | 'p99' | 'p999' | 'max' | 'throughputRps'>,
  latencies: ArrayLike<number>[],
  size: CaseSize,
): CaseResult {
  const hist = new Histogram();
  for (const l of latencies) hist.recordAll(l, size.expectedIntervalNs);
  return {
    ...c,
    hist,
    throughputRps: c.seconds > 0 ? c.completed / c.seconds : 0,
    p50: hist.valueAt(50),
    p99: hist.valueAt(99),
    p999: hist.valueAt(99.9),
    max: hist.max,
  };
}

/** The native path: the Rust client with native devices, guest and client in Rust. */
export async function runNative(mode: BenchMode, vcpus: number, size: CaseSize): Promise<CaseResult> {
  const r = rounds(size, vcpus);
  const out = await native().benchNative({
    vcpus,
    mode,
    rounds: r.rounds,
    warmupRounds: r.warmup,
    chunkRounds: r.chunk,
    maxSeconds: size.seconds,
    pollBackoff: size.pollBackoff === true,
  });
  const errors = out.errors + (out.issued - out.completed) + Math.abs(out.notifies - out.completed);
  return finish(
    { path: 'native', mode, vcpus, issued: out.issued, completed: out.completed, errors, seconds: out.seconds },
    [out.latenciesNs],
    size,
  );
}

async function guestRuns(
  run: (rounds: number) => Promise<{ latenciesNs: Float64Array; issued: number; completed: number; mismatches: unknown[]; faults: unknown[] }>,
  r: { rounds: number; warmup: number; chunk: number },
  size: CaseSize,
): Promise<{ latencies: Float64Array[]; issued: number; completed: number; errors: number; seconds: number }> {
  await run(r.warmup);
  const acc = { latencies: [] as Float64Array[], issued: 0, completed: 0, errors: 0, seconds: 0 };
  let left = r.rounds;
  while (left > 0) {
    const n = Math.min(r.chunk, left);
    const t = process.hrtime.bigint();
    const res = await run(n);
    acc.seconds += Number(process.hrtime.bigint() - t) / 1e9;
    acc.latencies.push(res.latenciesNs);
    acc.issued += res.issued;
    acc.completed += res.completed;
    acc.errors += res.mismatches.length + res.faults.length;
    left -= n;
    if (size.seconds > 0 && acc.seconds >= size.seconds) break;
  }
  acc.errors += acc.issued - acc.completed;
  return acc;
}

/** Pauses and destroys a benchmark VM (errors ignored: it may already be gone). */
function teardown(vm: { pause(): void; destroy(): void }): void {
  try {
    vm.pause();
    vm.destroy();
  } catch {
    // Already destroyed, or the emulator is going away with it.
  }
}

function wakeOf(mode: BenchMode): WakeMode {
  return mode === 'poll' ? 'poll' : 'blocking';
}

/** The TS synchronous path: TS devices served by `runSync()` in a worker thread. */
export async function runJsSync(mode: BenchMode, vcpus: number, size: CaseSize): Promise<CaseResult> {
  const hsm = Hsm.emulated();
  const vm = hsm.createVm({ vcpuNum: vcpus, vmFlag: mode === 'poll' ? VM_FLAG_POLLING : 0n });
  const worker = new Worker(new URL('./worker.js', import.meta.url), { workerData: { token: vm.share(), wake: wakeOf(mode) } });
  try {
    // A worker that fails or exits without its message ends the case with an error, not a hang.
    const next = workerInbox(worker, 'bench js-sync');
    const ready = (await next('its stop token')) as { stopToken?: number };
    vm.start();
    const guest = hsm.guest(vm);
    const r = rounds(size, vcpus);
    const acc = await guestRuns((n) => guest.run(benchWorkload(vcpus, n)), r, size);
    stopClient(ready.stopToken ?? 0);
    const { served } = (await next('its count of served requests')) as { served?: number };
    const expected = (r.warmup * REQUESTS_PER_ROUND * vcpus) + acc.completed;
    const errors = acc.errors + Math.abs((served ?? 0) - expected);
    return finish({ path: 'js-sync', mode, vcpus, issued: acc.issued, completed: acc.completed, errors, seconds: acc.seconds }, acc.latencies, size);
  } finally {
    await worker.terminate();
    teardown(vm);
  }
}

/** The TS asynchronous path: TS devices served by `await client.run()` on the main thread. */
export async function runJsAsync(mode: BenchMode, vcpus: number, size: CaseSize): Promise<CaseResult> {
  const hsm = Hsm.emulated();
  const vm = hsm.createVm({ vcpuNum: vcpus, vmFlag: mode === 'poll' ? VM_FLAG_POLLING : 0n });
  const client = vm.createIoreqClient({ wake: wakeOf(mode) });
  const served = benchDevices(client);
  vm.start();
  const serving = client.run();
  try {
    const guest = hsm.guest(vm);
    const r = rounds(size, vcpus);
    const acc = await guestRuns((n) => guest.run(benchWorkload(vcpus, n)), r, size);
    client.stop();
    await serving;
    const expected = r.warmup * REQUESTS_PER_ROUND * vcpus + acc.completed;
    const errors = acc.errors + Math.abs(served.count - expected);
    return finish({ path: 'js-async', mode, vcpus, issued: acc.issued, completed: acc.completed, errors, seconds: acc.seconds }, acc.latencies, size);
  } finally {
    client.stop();
    await serving.catch(() => undefined);
    teardown(vm);
  }
}

/** Root of the package (dist/bench/ is two levels below). */
export const PACKAGE_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** The default build was brought up to date by this process (once: cargo and gcc take ~2 s). */
let cBuiltThisRun = false;

/**
 * The C programs, built by `scripts/build-bench-c.sh`. The default (release) build is rebuilt
 * once per process, so that the C reference client links the emulator of this checkout (it is
 * linked statically: a binary left from before a change to the emulator would measure the old
 * one); cargo and gcc do little when nothing changed. Throws if they cannot be built.
 * `ACRN_HSM_BENCH_C_DIR` points to another build (e.g. `target/bench-c/debug` for smoke tests;
 * built only if missing; measure with the default release build).
 */
export function ensureCPrograms(log: (s: string) => void): { floor: string; reference: string; kvmFloor: string } {
  const override = process.env.ACRN_HSM_BENCH_C_DIR;
  const dir = override || `${PACKAGE_ROOT}target/bench-c`;
  const floor = `${dir}/floor`;
  const reference = `${dir}/reference_client`;
  const kvmFloor = `${dir}/kvm_floor`;
  const all = () => existsSync(floor) && existsSync(reference) && existsSync(kvmFloor);
  if (!all() || (!override && !cBuiltThisRun)) {
    cBuiltThisRun = !override;
    if (!all()) log('bench: building the C references (scripts/build-bench-c.sh)...\n');
    const r = spawnSync('bash', [`${PACKAGE_ROOT}scripts/build-bench-c.sh`], { cwd: PACKAGE_ROOT, encoding: 'utf8' });
    if (r.status !== 0 || !all()) {
      throw new Error(`scripts/build-bench-c.sh failed (status ${r.status}): ${(r.stderr || r.stdout || String(r.error)).trim().split('\n').slice(-3).join(' | ')}`);
    }
  }
  return { floor, reference, kvmFloor };
}

/** Parses the rows of an HdrHistogram-style table (µs) into (fraction, ns) points. */
export function parseTable(text: string): { percentile: number; valueNs: number }[] {
  const pts: { percentile: number; valueNs: number }[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*([\d.]+)\s+([\d.]+)\s+(\d+)\s+(\S+)\s*$/.exec(line);
    if (m) pts.push({ percentile: Number(m[2]), valueNs: Number(m[1]) * 1000 });
  }
  return pts;
}

function runChild(cmd: string, args: string[]): { json: Record<string, unknown>; table: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: exit ${r.status ?? r.signal}: ${(r.stderr ?? '').trim().split('\n').slice(-2).join(' | ')}`);
  return { json: JSON.parse(r.stdout) as Record<string, unknown>, table: r.stderr ?? '' };
}

type CFigures = { p50_ns: number; p99_ns: number; p999_ns: number; max_ns: number; count: number; mean_ns: number };

/** The floor: spin, futex (pinned), futex unpinned. */
export interface FloorResult {
  spin: CFigures;
  futex: CFigures;
  futex_unpinned?: CFigures;
  pinned: boolean;
  table: string;
  points: Record<string, { percentile: number; valueNs: number }[]>;
}

/** Runs `floor`: its default sizes, fewer in quick mode, or `requests` spin (a tenth futex). */
export function runFloor(bin: string, quick: boolean, expectedIntervalNs: number, requests?: number): FloorResult {
  const args = ['--table'];
  if (requests !== undefined) args.push('--requests', String(requests), '--futex-requests', String(Math.max(100, Math.round(requests / 10))), '--warmup', String(Math.min(5000, requests)));
  else if (quick) args.push('--requests', '50000', '--futex-requests', '10000');
  if (expectedIntervalNs > 0) args.push('--expected-interval-ns', String(expectedIntervalNs));
  const { json, table } = runChild(bin, args);
  const points: FloorResult['points'] = {};
  for (const part of table.split(/^# /m).slice(1)) {
    const title = part.split('\n')[0] ?? '';
    points[title] = parseTable(part);
  }
  return { ...(json as unknown as Omit<FloorResult, 'table' | 'points'>), table, points };
}

/**
 * The spin floor alone (`floor --only spin`: 50,000 round trips, ~10 ms), its p50 in ns: the extra
 * samples the floor ratios take next to the paths they divide (`spinNear` in ts/cli-bench.ts).
 */
export function runSpinFloor(bin: string, expectedIntervalNs: number): number {
  const args = ['--only', 'spin', '--requests', '50000'];
  if (expectedIntervalNs > 0) args.push('--expected-interval-ns', String(expectedIntervalNs));
  const { json } = runChild(bin, args);
  return (json.spin as CFigures).p50_ns;
}

/** Runs the C reference client for one (mode, vCPUs): poll = polling VM + busy loop, notify = notification VM + ATTACH. */
export function runCReference(bin: string, mode: BenchMode, vcpus: number, size: CaseSize): CaseResult {
  const loop = mode === 'poll' ? 'busy' : 'attach';
  const args = ['--mode', mode === 'poll' ? 'polling' : 'notify', '--loop', loop, '--vcpus', String(vcpus), '--requests', String(size.requests), '--table'];
  if (size.expectedIntervalNs > 0) args.push('--expected-interval-ns', String(size.expectedIntervalNs));
  const { json, table } = runChild(bin, args);
  const j = json as { p50_ns: number; p99_ns: number; p999_ns: number; max_ns: number; throughput_rps: number; requests: number; seconds: number };
  return {
    path: 'c-reference',
    mode,
    vcpus,
    loop,
    hist: new Histogram(),
    issued: j.requests,
    completed: j.requests,
    errors: 0,
    seconds: j.seconds,
    throughputRps: j.throughput_rps,
    table,
    points: parseTable(table),
    p50: j.p50_ns,
    p99: j.p99_ns,
    p999: j.p999_ns,
    max: j.max_ns,
  };
}
