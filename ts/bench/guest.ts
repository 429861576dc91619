/**
 * The real-guest cases of `acrn-hsm bench --guest`: one small real-mode guest
 * (crates/acrn-hsm-tools/src/guest_pio.rs; the same 64 KiB firmware image for every variant,
 * run from the reset vector) times `out`/`in` pairs to a test port with `rdtsc`, and dumps the
 * per-iteration TSC deltas to a result port. Variants:
 *
 * - `native`: the KVM engine behind the ACRN ABI, the port served by a native Rust device of the
 *   ioreq client (`benchGuestPio`);
 * - `js-sync`: the same VM set up through the public API (`Hsm.emulated({ engine: 'kvm' })`),
 *   the port served by a TypeScript device in `client.runSync()` on a worker thread;
 * - `js-async`: the same with the TypeScript device on `await client.run()` on the main thread;
 * - `qemu`: Debian's `qemu-system-x86_64` with KVM, the port left unassigned so that QEMU
 *   answers it itself in its vCPU thread;
 * - `kvm-c`: benches/c/kvm_floor.c, a plain C KVM_RUN loop answering the port inline (the floor).
 *
 * QEMU and the C loop have no completion mode; they are measured next to each mode's pair.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { stopClient, type IoreqClient } from '../client.js';
import { Hsm, type Vm } from '../hsm.js';
import { native } from '../native.js';
import type { BenchMode } from './run.js';
import { deadline, destroy, quiesce, VM_FLAG_POLLING, workerInbox } from './worker-run.js';

export type GuestVariant = 'native' | 'js-sync' | 'js-async' | 'qemu' | 'kvm-c';
export const GUEST_VARIANTS: readonly GuestVariant[] = ['native', 'js-sync', 'js-async', 'qemu', 'kvm-c'];

/** One run of the guest: per-iteration TSC deltas. */
export interface GuestRun {
  variant: GuestVariant;
  /** `null` for QEMU and the C loop (no completion mode). */
  mode: BenchMode | null;
  /** Empty iterations (rdtsc + the register moves), cycles. */
  empty: Uint32Array;
  /** Measured iterations (the same + `out` + `in`), cycles. */
  pio: Uint32Array;
  /** median(pio) − median(empty): one out/in pair (two exits), cycles. */
  pairCycles: number;
  /** p99(pio) − median(empty), cycles. */
  pairP99Cycles: number;
  wallMs: number;
}

function quantile(xs: Uint32Array, q: number): number {
  const s = Float64Array.from(xs).sort();
  if (s.length === 0) return 0;
  return s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? 0;
}

function median(xs: Uint32Array): number {
  const s = Float64Array.from(xs).sort();
  const n = s.length;
  if (n === 0) return 0;
  return n % 2 ? (s[(n - 1) >> 1] ?? 0) : ((s[n / 2 - 1] ?? 0) + (s[n / 2] ?? 0)) / 2;
}

/** Splits a result dump (`iterations` u32 LE empty deltas, then the measured ones). */
export function parseDump(variant: GuestVariant, mode: BenchMode | null, dump: Uint8Array, iterations: number, wallMs: number): GuestRun {
  if (dump.length !== 8 * iterations) throw new Error(`${variant}${mode ? ` ${mode}` : ''}: the guest dumped ${dump.length} bytes, expected ${8 * iterations}`);
  const dv = new DataView(dump.buffer, dump.byteOffset, dump.byteLength);
  const empty = new Uint32Array(iterations);
  const pio = new Uint32Array(iterations);
  for (let i = 0; i < iterations; i++) {
    empty[i] = dv.getUint32(4 * i, true);
    pio[i] = dv.getUint32(4 * (iterations + i), true);
  }
  const e = median(empty);
  return { variant, mode, empty, pio, pairCycles: median(pio) - e, pairP99Cycles: quantile(pio, 0.99) - e, wallMs };
}

/** The guest for these sizes (image and ports), from the Rust core. */
export function guestImage(iterations: number, warmup: number): ReturnType<ReturnType<typeof native>['guestPioGuest']> {
  return native().guestPioGuest(iterations, warmup);
}

/** The host TSC's rate (Hz; rdtsc against CLOCK_MONOTONIC). */
export function tscHz(ms = 50): number {
  return native().tscHz(ms);
}

/**
 * The KVM engine with a native Rust device; poll mode with the library's back-off (as a
 * TypeScript client and `acrn-hsm run` have), or with `pollSpin` a client that only spins.
 */
export async function runGuestNative(mode: BenchMode, iterations: number, warmup: number, pollSpin = false): Promise<GuestRun> {
  const t = performance.now();
  const r = await native().benchGuestPio({ mode, iterations, warmup, pollSpin });
  if (r.served !== 2 * (iterations + warmup)) throw new Error(`native ${mode}: the device served ${r.served} requests, expected ${2 * (iterations + warmup)}`);
  return parseDump('native', mode, r.dump, iterations, performance.now() - t);
}

/** The ports of the guest served by TypeScript devices; `exited` is called on the debug exit. */
export function guestDevices(
  client: IoreqClient,
  ports: { testPort: number; resultPort: number; exitPort: number },
  dumpBytes: number,
  exited: () => void,
): { served: number; dumped: number; dump: Uint8Array } {
  const st = { served: 0, dumped: 0, dump: new Uint8Array(dumpBytes) };
  client
    .pio(ports.testPort, 1, {
      read() {
        st.served++;
        return 0x5a;
      },
      write() {
        st.served++;
      },
    })
    .pio(ports.resultPort, 1, {
      read: () => 0xe9,
      write(_offset, _size, value) {
        if (st.dumped < st.dump.length) st.dump[st.dumped] = Number(value) & 0xff;
        st.dumped++;
      },
    })
    .pio(ports.exitPort, 1, {
      read: () => 0,
      write: () => exited(),
    });
  return st;
}

/**
 * The VM of `runGuestNative` set up through the public API: RAM at 0 with the image at 0xF0000,
 * the image read-only below 4 GiB, no registers set (the reset vector).
 */
function guestVm(mode: BenchMode, g: ReturnType<typeof guestImage>): Vm {
  const hsm = Hsm.emulated({ engine: 'kvm' });
  const vm = hsm.createVm({ vcpuNum: 1, vmFlag: mode === 'poll' ? VM_FLAG_POLLING : 0n });
  const ram = Hsm.allocPages(g.ramBytes);
  ram.write(g.imageGpa, g.image);
  vm.mapRam(0n, ram);
  const rom = Hsm.allocPages(g.image.length);
  rom.write(0, g.image);
  vm.mapRam(BigInt(g.romGpa), rom, 5);
  return vm;
}

function check(name: string, st: { served: number; dumped: number }, iterations: number, warmup: number): void {
  if (st.served !== 2 * (iterations + warmup)) throw new Error(`${name}: the device served ${st.served} requests, expected ${2 * (iterations + warmup)}`);
  if (st.dumped !== 8 * iterations) throw new Error(`${name}: the guest dumped ${st.dumped} bytes, expected ${8 * iterations}`);
}

/** Lets the exit's request complete (the guest then halts) before PAUSE. */
const settle = () => new Promise((resolve) => setTimeout(resolve, 20));

/** The KVM engine with a TypeScript device on `await client.run()` (main thread). */
export async function runGuestJsAsync(mode: BenchMode, iterations: number, warmup: number, timeoutMs = 120_000): Promise<GuestRun> {
  const name = `js-async ${mode}`;
  const g = guestImage(iterations, warmup);
  const vm = guestVm(mode, g);
  const client = vm.createIoreqClient({ wake: mode === 'poll' ? 'poll' : 'blocking' });
  let exited!: () => void;
  const exit = new Promise<void>((resolve) => (exited = resolve));
  const st = guestDevices(client, g, 8 * iterations, () => exited());
  const limit = deadline(name, timeoutMs);
  const t = performance.now();
  vm.start();
  const serving = client.run();
  try {
    await Promise.race([
      exit,
      serving.then(() => {
        throw new Error(`${name}: the client stopped before the guest's debug exit`);
      }),
      limit.promise,
    ]);
    const wallMs = performance.now() - t;
    await settle();
    check(name, st, iterations, warmup);
    return parseDump('js-async', mode, st.dump, iterations, wallMs);
  } finally {
    limit.clear();
    quiesce(vm);
    client.stop();
    await serving.catch(() => undefined);
    destroy(vm);
  }
}

/** The KVM engine with a TypeScript device in `client.runSync()` on a worker (ts/bench/guest-worker.ts). */
export async function runGuestJsSync(mode: BenchMode, iterations: number, warmup: number, timeoutMs = 120_000): Promise<GuestRun> {
  const name = `js-sync ${mode}`;
  const g = guestImage(iterations, warmup);
  const vm = guestVm(mode, g);
  const worker = new Worker(new URL('./guest-worker.js', import.meta.url), {
    workerData: { token: vm.share(), wake: mode === 'poll' ? 'poll' : 'blocking', testPort: g.testPort, resultPort: g.resultPort, exitPort: g.exitPort, dumpBytes: 8 * iterations },
  });
  const next = workerInbox(worker, name);
  const limit = deadline(name, timeoutMs);
  let stopToken = 0;
  try {
    stopToken = Number((await next('it was ready')).stopToken ?? 0);
    const t = performance.now();
    vm.start();
    await Promise.race([next('the debug exit'), limit.promise]);
    const wallMs = performance.now() - t;
    await settle();
    quiesce(vm);
    stopClient(stopToken);
    const done = await Promise.race([next('its counts'), limit.promise]);
    const st = { served: Number(done.served), dumped: Number(done.dumped), dump: done.dump as Uint8Array };
    check(name, st, iterations, warmup);
    return parseDump('js-sync', mode, st.dump, iterations, wallMs);
  } finally {
    limit.clear();
    quiesce(vm);
    if (stopToken) stopClient(stopToken);
    await worker.terminate();
    destroy(vm);
  }
}

/** Files of one set of sizes (the image QEMU and the C loop load), in a private directory. */
export class GuestFiles {
  readonly dir = mkdtempSync(join(tmpdir(), 'acrn-hsm-guest-pio-'));
  readonly image = join(this.dir, 'guest.bin');
  constructor(
    readonly iterations: number,
    readonly warmup: number,
  ) {
    writeFileSync(this.image, guestImage(iterations, warmup).image);
  }
  dump(name: string): string {
    return join(this.dir, `${name}.bin`);
  }
  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** `qemu-system-x86_64 --version`'s first line, or `null` with why not. */
export function qemuVersion(qemu = 'qemu-system-x86_64'): { version: string | null; reason: string } {
  const r = spawnSync(qemu, ['--version'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) return { version: null, reason: `${qemu} not found (Debian: apt-get install qemu-system-x86, or scripts/setup-bench-guest.sh)` };
  return { version: (r.stdout.split('\n')[0] ?? '').trim(), reason: '' };
}

/** QEMU/KVM answering the port in its vCPU thread. */
export function runGuestQemu(files: GuestFiles, qemu = 'qemu-system-x86_64'): GuestRun {
  const out = files.dump('qemu');
  rmSync(out, { force: true });
  const g = guestImage(files.iterations, files.warmup);
  const t = performance.now();
  const r = spawnSync(qemu, native().guestPioQemuArgs(files.image, out), { encoding: 'utf8', timeout: 300_000 });
  const wallMs = performance.now() - t;
  const want = ((g.exitValue << 1) | 1) & 0xff;
  if (r.status !== want) throw new Error(`qemu: exit ${r.status ?? r.signal} (expected ${want}, the guest's debug exit): ${(r.stderr ?? '').trim().split('\n').slice(-2).join(' | ')}`);
  return parseDump('qemu', null, readFileSync(out), files.iterations, wallMs);
}

/** The plain C KVM loop. */
export function runGuestKvmC(bin: string, files: GuestFiles): GuestRun {
  const out = files.dump('kvm-c');
  const t = performance.now();
  const r = spawnSync(bin, [files.image, out], { encoding: 'utf8', timeout: 300_000 });
  const wallMs = performance.now() - t;
  if (r.status !== 0) throw new Error(`${bin}: exit ${r.status ?? r.signal}: ${(r.stderr ?? '').trim().split('\n').slice(-2).join(' | ')}`);
  return parseDump('kvm-c', null, readFileSync(out), files.iterations, wallMs);
}
