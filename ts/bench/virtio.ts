/**
 * The cases of `acrn-hsm bench --virtio`: virtio-blk read throughput and 4 KiB read latency as a
 * guest sees them. The guest is SeaBIOS (Debian's `bios.bin`) booting one disk image whose boot
 * sector (crates/acrn-hsm-tools/src/virtio_blk_bench.rs) reads that disk through int 13h AH=42h,
 * so through SeaBIOS's modern virtio-pci driver and the device under test, timing each read with
 * `rdtsc`: warm-up reads, throughput reads of 32 KiB, latency reads of 4 KiB. The TSC deltas
 * come back through debugcon (0x402). Every variant boots the same image file:
 *
 * - `native`: the KVM engine behind the ACRN ABI with the `acrn-hsm run` platform and the
 *   native Rust virtio-blk (`benchVirtioBlk`), per completion mode, each queue notification an
 *   I/O request to the ioreq client;
 * - `native-ioeventfd`: the same with the queue notifications through IOEVENTFD (the HSM's
 *   in-kernel ioeventfd client completes the notify write and signals an eventfd; the device's
 *   worker thread serves the queue): one VM exit per notification, no ioreq client;
 * - `native-kvm-ioeventfd`: IOEVENTFD matched by KVM itself as well (`KVM_IOEVENTFD`, what
 *   QEMU's ioeventfd is): a notification does not leave `KVM_RUN`. `acrn-hsm run --disk`'s
 *   default;
 * - `js`: the same VM set up through the public API (`Hsm.emulated({ engine: 'kvm' })`,
 *   `vm.loadFirmware('seabios')`), the core's PC platform (`client.pcPlatform`) and the
 *   TypeScript virtio-blk (`TsVirtioBlk`, ts/virtio/blk.ts) behind the core's virtio-pci
 *   transport, served by `client.runSync()` on a worker thread (ts/bench/virtio-worker.ts);
 * - `qemu`: Debian's `qemu-system-x86_64` with KVM and its own `virtio-blk-pci`
 *   (`disable-legacy=on`, `cache=writethrough`), measured next to each mode's other runs.
 *
 * Each variant is an entry of {@link BLK_RUNNERS}: a function that boots `files.image` and
 * returns the guest's deltas; the CLI's ratios take them alike.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { stopClient } from '../client.js';
import { Hsm } from '../hsm.js';
import { native } from '../native.js';
import type { BenchMode } from './run.js';
import { deadline, destroy, quiesce, VM_FLAG_POLLING, workerInbox } from './worker-run.js';

/** The variants: the native virtio-blk (three ways of taking its queue notifications), the TypeScript one, and QEMU's. */
export type BlkVariant = 'native' | 'native-ioeventfd' | 'native-kvm-ioeventfd' | 'qemu' | 'js';
export const BLK_VARIANTS: readonly BlkVariant[] = ['native', 'native-ioeventfd', 'native-kvm-ioeventfd', 'js', 'qemu'];

/** The variants on the KVM engine with the native virtio-blk. */
export type NativeBlkVariant = 'native' | 'native-ioeventfd' | 'native-kvm-ioeventfd';

/** How each native variant takes its queue notifications (`benchVirtioBlk`'s `ioeventfd`). */
const NOTIFY_PATH: Record<NativeBlkVariant, 'off' | 'hsm' | 'kvm'> = { native: 'off', 'native-ioeventfd': 'hsm', 'native-kvm-ioeventfd': 'kvm' };

/** The guest's sizes (absent fields: the defaults of the Rust core). */
export type BlkSizes = Parameters<ReturnType<typeof native>['virtioBlkWriteImage']>[1];

/** One run of the guest. */
export interface BlkRun {
  variant: BlkVariant;
  /** `null` for QEMU (no completion mode). */
  mode: BenchMode | null;
  /** TSC cycles of each throughput read. */
  big: number[];
  /** TSC cycles of each latency read. */
  small: number[];
  wallMs: number;
}

/** The image every variant boots, in a private directory. */
export class BlkFiles {
  readonly dir = mkdtempSync(join(tmpdir(), 'acrn-hsm-virtio-blk-'));
  readonly image = join(this.dir, 'disk.img');
  constructor(readonly sizes: BlkSizes) {
    native().virtioBlkWriteImage(this.image, sizes);
  }
  dump(name: string): string {
    return join(this.dir, `${name}.dcon`);
  }
  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** The KVM engine with the native virtio-blk, its queue notifications as `variant` says. */
export async function runBlkNative(files: BlkFiles, mode: BenchMode, variant: NativeBlkVariant = 'native'): Promise<BlkRun> {
  const t = performance.now();
  const r = await native().benchVirtioBlk({ image: files.image, mode, sizes: files.sizes, ioeventfd: NOTIFY_PATH[variant] });
  return { variant, mode, big: r.deltas.big, small: r.deltas.small, wallMs: performance.now() - t };
}

/** The KVM engine through the public API with the TypeScript virtio-blk on a worker thread. */
export async function runBlkJs(files: BlkFiles, mode: BenchMode, timeoutMs = 300_000): Promise<BlkRun> {
  const hsm = Hsm.emulated({ engine: 'kvm' });
  const vm = hsm.createVm({ vcpuNum: 1, vmFlag: mode === 'poll' ? VM_FLAG_POLLING : 0n });
  vm.loadFirmware('seabios', { memMib: 128 });
  const worker = new Worker(new URL('./virtio-worker.js', import.meta.url), {
    workerData: { token: vm.share(), wake: mode === 'poll' ? 'poll' : 'blocking', image: files.image },
  });
  const name = `js ${mode}`;
  const next = workerInbox(worker, name);
  const limit = deadline(name, timeoutMs);
  let stopToken = 0;
  try {
    stopToken = Number((await Promise.race([next('it was ready'), limit.promise])).stopToken ?? 0);
    const t = performance.now();
    vm.start();
    const done = await Promise.race([next('the debug exit'), limit.promise]);
    const wallMs = performance.now() - t;
    if (done.exitStatus !== 33) throw new Error(`${name}: the guest ended with ${String(done.exitStatus)} (expected 33, its debug exit)`);
    const d = native().virtioBlkParseDump(Buffer.from(done.debugcon as Uint8Array), files.sizes);
    if (!d) throw new Error(`${name}: the guest's dump is missing or short`);
    return { variant: 'js', mode, big: d.big, small: d.small, wallMs };
  } finally {
    limit.clear();
    quiesce(vm);
    if (stopToken) stopClient(stopToken);
    await worker.terminate();
    destroy(vm);
  }
}

/** QEMU's command line for `files` (the program, then its arguments). */
export function qemuCommand(files: BlkFiles, qemu = 'qemu-system-x86_64'): string[] {
  return [qemu, ...native().virtioBlkQemuArgs(files.image, files.dump('qemu'))];
}

/** QEMU/KVM with its virtio-blk-pci on the same image. */
export function runBlkQemu(files: BlkFiles, qemu = 'qemu-system-x86_64'): BlkRun {
  const out = files.dump('qemu');
  rmSync(out, { force: true });
  const [prog, ...args] = qemuCommand(files, qemu);
  const t = performance.now();
  const r = spawnSync(prog ?? qemu, args, { encoding: 'utf8', timeout: 300_000 });
  const wallMs = performance.now() - t;
  if (r.status !== 33) throw new Error(`qemu: exit ${r.status ?? r.signal} (expected 33, the guest's debug exit): ${(r.stderr ?? '').trim().split('\n').slice(-2).join(' | ')}`);
  const d = native().virtioBlkParseDump(readFileSync(out), files.sizes);
  if (!d) throw new Error(`qemu: the guest's dump is missing or short in ${out}`);
  return { variant: 'qemu', mode: null, big: d.big, small: d.small, wallMs };
}

/** How each variant runs (per completion mode; QEMU ignores it). */
export const BLK_RUNNERS: Partial<Record<BlkVariant, (files: BlkFiles, mode: BenchMode) => BlkRun | Promise<BlkRun>>> = {
  qemu: (files) => runBlkQemu(files),
  native: (files, mode) => runBlkNative(files, mode),
  'native-ioeventfd': (files, mode) => runBlkNative(files, mode, 'native-ioeventfd'),
  'native-kvm-ioeventfd': (files, mode) => runBlkNative(files, mode, 'native-kvm-ioeventfd'),
  js: (files, mode) => runBlkJs(files, mode),
};
