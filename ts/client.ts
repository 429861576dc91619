/**
 * Device backends in TypeScript: the ioreq client of a VM, serving PIO, MMIO and PCI
 * configuration requests with devices written in TypeScript or native devices of the core.
 *
 * Native devices are served inside the Rust client as soon as their request is seen; requests
 * for TypeScript devices come to JavaScript in batches (at most one per vCPU), one native call
 * per batch that also completes the previous one. Two loops drive it:
 *
 * - `runSync()`: blocks its thread; meant for a `worker_thread`. No allocation per request
 *   (records arrive in a preallocated `BigUint64Array`), except the `bigint`s of MMIO values.
 * - `run()`: the asynchronous loop on the main thread; each wait runs on the libuv pool. Handlers
 *   may return promises here (awaited; slower).
 *
 * A handler that throws, or returns something that is not a number/bigint for a read, does not
 * stop the client: the read returns all ones, as real hardware and the ACRN device model do, and
 * the error goes to the `'error'` event with the request attached.
 *
 * virtio devices in TypeScript (`client.virtio`): the core's transport defers their descriptor
 * chains and wakes the loop; after each batch the chains go to `dev.request(queue, chain)` with
 * zero-copy views of guest memory, and complete when it returns or its promise settles (see
 * `ts/virtio/types.ts`).
 *
 * Time-out policy (`run()` only): a handler's promise that has not settled after
 * `handlerTimeoutMs` (option of `vm.createIoreqClient`, default 1000 ms; `Infinity` disables it)
 * no longer holds the guest's vCPU: the request is completed (a read with all ones) and an
 * `'error'` event with `code: 'ERR_HANDLER_TIMEOUT'` carries the request. Whatever the promise
 * settles to later is ignored. Requests of one batch are served one after the other, so a batch
 * of stuck handlers takes one time-out each. (`runSync()` does not await promises; a synchronous
 * handler that never returns can only be stopped by terminating its worker: see
 * docs/reliability.md for the recovery.)
 */
import { EventEmitter } from 'node:events';
import { checkInt, checkU64 } from './check.js';
import { AcrnHsmError, callBinding, fromBindingError } from './errors.js';
import type { NativeBinding } from './native.js';
import { native } from './native.js';
import type { GuestMemory } from './memory.js';
import type { VirtioChain, VirtioDevice } from './virtio/types.js';

type ClientHandle = InstanceType<NativeBinding['IoreqClientHandle']>;

/**
 * A PIO or MMIO device in TypeScript. `offset` is relative to the base of its range. `W` is the
 * type of a written value: `client.pio` passes a `number`, `client.mmio` a `bigint` (so a
 * handler written inline gets the narrow type).
 */
export interface Device<W extends number | bigint = number | bigint> {
  /** A guest read of `size` bytes (1, 2, 4, or 8 for MMIO): a number (u32 range) or a bigint. */
  read(offset: number, size: number): number | bigint | Promise<number | bigint>;
  /** A guest write; `value` is a number for PIO, a bigint for MMIO. */
  write(offset: number, size: number, value: W): void | Promise<void>;
}

/** The configuration space of one PCI function in TypeScript. */
export interface PciDevice {
  /** A configuration read of `size` bytes (1, 2, 4) at register `reg`. */
  read(reg: number, size: number): number | Promise<number>;
  /** A configuration write. */
  write(reg: number, size: number, value: number): void | Promise<void>;
}

/** The request a handler was serving, attached to errors. */
export interface ServedRequest {
  type: 'pio' | 'mmio' | 'pci';
  direction: 'read' | 'write';
  vcpu: number;
  /**
   * Port or guest-physical address; for PCI the packing traces use, `pciAddress(bus, device,
   * function, register)` (`bus << 24 | device << 19 | function << 16 | register`).
   */
  address: bigint;
  /** For PCI, the function and register (as `pciFields(address)` unpacks them). */
  pci?: { bus: number; device: number; function: number; register: number };
  /** Offset in the device's range (the register for PCI). */
  offset: number;
  size: number;
  /** The value written (writes). */
  value?: number | bigint;
  /** The device's name. */
  device: string;
}

/** A malformed request the client completed with all ones. */
export interface ClientFault {
  vcpu: number;
  reason: string;
  request: string;
}

/** The client's counters. */
export interface ClientCounters {
  js: number;
  native: number;
  unclaimed: number;
  faults: number;
  notifies: number;
  notifyErrors: number;
  batches: number;
  maxBatch: number;
  wakeups: number;
  /** Device-model style resets done (`requestVmAction('reset')`). */
  resets: number;
}

/** What a device may ask of the VM from a handler, as the ACRN device model does it. */
export type VmAction = 'reset' | 'suspend' | 'poweroff';

/** How the client waits: sleeping in ATTACH (`'blocking'`, default) or spinning on the page (`'poll'`). */
export type WakeMode = 'blocking' | 'poll';

/** The default of `handlerTimeoutMs`. */
export const DEFAULT_HANDLER_TIMEOUT_MS = 1000;

/**
 * Checks a `handlerTimeoutMs` option: `undefined` gives the default, `Infinity` disables the
 * time-out, anything else must be an integer in 1..2^31-1 (what `setTimeout` takes).
 * @internal
 */
export function checkHandlerTimeout(v: unknown): number {
  if (v === undefined) return DEFAULT_HANDLER_TIMEOUT_MS;
  if (v === Number.POSITIVE_INFINITY) return v;
  checkInt('handlerTimeoutMs', v, 1, 0x7fff_ffff);
  return v;
}

/** A native 16550 UART of the core (8 ports). */
export class Uart16550 {
  readonly name: string;
  /** @internal */ attached?: { handle: ClientHandle; index: number };
  constructor(options: { name?: string } = {}) {
    this.name = options.name ?? 'uart16550';
  }
  /** What the guest transmitted since the last call. */
  takeOutput(): string {
    const a = this.attachedOrThrow();
    return callBinding(() => a.handle.uartTakeOutput(a.index)).toString('latin1');
  }
  /** Bytes for the guest to receive. */
  pushInput(data: string | Uint8Array): void {
    const a = this.attachedOrThrow();
    const bytes = typeof data === 'string' ? Buffer.from(data, 'latin1') : Buffer.from(data);
    callBinding(() => a.handle.uartPushInput(a.index, bytes));
  }
  private attachedOrThrow() {
    if (!this.attached) throw new AcrnHsmError('ERR_NOT_ATTACHED', 'register the UART with client.pio(base, 8, uart) first');
    return this.attached;
  }
}

/**
 * The core's PC platform, the machine `acrn-hsm run` gives a firmware: the i440FX host bridge
 * at 00:00.0, CMOS (with the VM's RAM sizes), fw_cfg (`etc/sercon-port` = COM1), the i8042,
 * ports 0x92 and 0xcf9 (resets, done the device model's way), COM1 on IRQ 4, debugcon (0x402),
 * isa-debug-exit (0xf4 by default; a write of `v` powers the VM off with status `(v << 1) | 1`,
 * which ends `run()`/`runSync()`) and the firmware's RAM shadow (restored on reset). Load the
 * firmware first (`vm.loadFirmware('seabios')`), then `client.pcPlatform(pc)`; other devices
 * (a TypeScript virtio disk...) go on the same client.
 */
export class PcPlatform {
  /** @internal */ attached?: { handle: ClientHandle; index: number };
  constructor(
    readonly options: {
      /** Tell SeaBIOS to use COM1 as its console (fw_cfg `etc/sercon-port`; default true). */
      sercon?: boolean;
      /** The isa-debug-exit port (default 0xf4; 0: none). */
      debugExit?: number;
      /** How long SeaBIOS waits after "No bootable device" before it retries (ms, default 5000). */
      bootFailWaitMs?: number;
    } = {},
  ) {
    if (options.sercon !== undefined && typeof options.sercon !== 'boolean') throw new TypeError('sercon must be a boolean');
    if (options.debugExit !== undefined) checkInt('debugExit', options.debugExit, 0, 0xffff);
    if (options.bootFailWaitMs !== undefined) checkInt('bootFailWaitMs', options.bootFailWaitMs, 0, 0x7fff_ffff);
  }
  /** What COM1 transmitted since the last call (latin1). */
  takeSerial(): string {
    const a = this.attachedOrThrow();
    return callBinding(() => a.handle.pcTakeSerial(a.index)).toString('latin1');
  }
  /** Bytes for COM1 to receive (its receive interrupt is raised). */
  sendSerial(data: string | Uint8Array): void {
    const a = this.attachedOrThrow();
    const bytes = typeof data === 'string' ? Buffer.from(data, 'latin1') : Buffer.from(data);
    callBinding(() => a.handle.pcSerialInput(a.index, bytes));
  }
  /** Everything the guest wrote to debugcon (0x402). */
  debugcon(): Buffer {
    const a = this.attachedOrThrow();
    return callBinding(() => a.handle.pcDebugcon(a.index));
  }
  /** `(v << 1) | 1` once the guest wrote `v` to isa-debug-exit, else `null`. */
  exitStatus(): number | null {
    const a = this.attachedOrThrow();
    return callBinding(() => a.handle.pcState(a.index)).exitStatus ?? null;
  }
  /** Resets the guest asked through the i8042, and COM1 interrupt pulses sent. */
  counters(): { kbcResets: number; uartIrqs: number } {
    const a = this.attachedOrThrow();
    const st = callBinding(() => a.handle.pcState(a.index));
    return { kbcResets: st.kbcResets, uartIrqs: st.uartIrqs };
  }
  private attachedOrThrow() {
    if (!this.attached) throw new AcrnHsmError('ERR_NOT_ATTACHED', 'register the platform with client.pcPlatform(pc) first');
    return this.attached;
  }
}

/** A native register file of the core: memory-backed, little-endian, any aligned access. */
export class RegisterFile {
  readonly name: string;
  readonly length: number;
  /** @internal */ attached?: { handle: ClientHandle; index: number };
  constructor(length: number, options: { name?: string } = {}) {
    checkInt('length', length, 1, 1 << 24);
    this.length = length;
    this.name = options.name ?? 'regfile';
  }
  /** A copy of the registers. */
  bytes(): Buffer {
    if (!this.attached) throw new AcrnHsmError('ERR_NOT_ATTACHED', 'register the register file with client.mmio/pio first');
    const a = this.attached;
    return callBinding(() => a.handle.registerBytes(a.index));
  }
}

/** What signalling an MSI or MSI-X vector did: sent, held pending (masked), dropped (not enabled by the guest), or no such vector. */
export type MsiSignal = 'delivered' | 'pending' | 'disabled' | 'no-such-vector';

/**
 * A native PCI function of the core: configuration space with IDs, class and sized BARs. A BAR
 * with a `device` is live: once the guest programs it and enables decoding (command register
 * memory / I/O bit), its range is served by that device (offsets relative to the BAR); when the
 * guest moves it or disables decoding, the route moves or goes away, as in the ACRN device
 * model's `pci_emul`.
 *
 * Capabilities (chained from 0x34, status bit 4 set): `msi` (id 0x05) and `msix` (id 0x11, its
 * table and PBA in a memory BAR the core serves, which has no `device`). The device raises
 * vector `n` with {@link signalMsi} / {@link signalMsix} once the function is registered: the
 * message goes to the VM (INJECT_MSI) when the guest enabled and unmasked the vector, otherwise
 * it is held in the pending bits / PBA and sent once when the guest unmasks it.
 */
export class PciFunction {
  /** @internal */ attached?: { handle: ClientHandle; id: number };
  constructor(
    readonly options: {
      vendorId: number;
      deviceId: number;
      classCode?: number;
      bars?: { index: number; kind: 'mem32' | 'mem64' | 'io'; size: bigint; device?: Device }[];
      name?: string;
      /** Subsystem vendor ID and subsystem ID (0x2c, 0x2e; read-only; default 0). */
      subsystemVendorId?: number;
      subsystemId?: number;
      /** Interrupt pin (0x3d, read-only): 1 = INTA# .. 4 = INTD#, 0 none (default). The line (0x3c) is the guest's, read-write. */
      interruptPin?: number;
      /** An MSI capability: `vectors` 1, 2, 4 .. 32 (default 1), 64-bit address and per-vector masking (default true). */
      msi?: { vectors?: number; addr64?: boolean; perVectorMask?: boolean };
      /** An MSI-X capability: `tableSize` entries in BAR `bar` at `tableOffset` (default 0), the PBA in `pbaBar` (default `bar`) at `pbaOffset` (default right after the table). */
      msix?: { tableSize: number; bar: number; tableOffset?: number; pbaBar?: number; pbaOffset?: number };
    },
  ) {
    checkInt('vendorId', options.vendorId, 0, 0xffff);
    checkInt('deviceId', options.deviceId, 0, 0xffff);
    if (options.subsystemVendorId !== undefined) checkInt('subsystemVendorId', options.subsystemVendorId, 0, 0xffff);
    if (options.subsystemId !== undefined) checkInt('subsystemId', options.subsystemId, 0, 0xffff);
    if (options.interruptPin !== undefined) checkInt('interruptPin', options.interruptPin, 0, 4);
    if (options.msi !== undefined) {
      if (typeof options.msi !== 'object' || options.msi === null) throw new TypeError('msi must be { vectors?, addr64?, perVectorMask? }');
      if (options.msi.vectors !== undefined) checkInt('msi.vectors', options.msi.vectors, 1, 32);
    }
    if (options.msix !== undefined) {
      const m = options.msix;
      if (typeof m !== 'object' || m === null) throw new TypeError('msix must be { tableSize, bar, tableOffset?, pbaBar?, pbaOffset? }');
      checkInt('msix.tableSize', m.tableSize, 1, 2048);
      checkInt('msix.bar', m.bar, 0, 5);
      if (m.tableOffset !== undefined) checkInt('msix.tableOffset', m.tableOffset, 0, 0xffff_fff8);
      if (m.pbaBar !== undefined) checkInt('msix.pbaBar', m.pbaBar, 0, 5);
      if (m.pbaOffset !== undefined) checkInt('msix.pbaOffset', m.pbaOffset, 0, 0xffff_fff8);
    }
    if (options.bars !== undefined) {
      if (!Array.isArray(options.bars)) throw new TypeError('bars must be an array of { index, kind, size }');
      options.bars.forEach((b, i) => {
        if (typeof b !== 'object' || b === null) throw new TypeError(`bars[${i}] must be { index, kind, size }`);
        checkInt(`bars[${i}].index`, b.index, 0, 5);
        if (b.kind !== 'mem32' && b.kind !== 'mem64' && b.kind !== 'io') throw new TypeError(`bars[${i}].kind must be 'mem32', 'mem64' or 'io'`);
        checkU64(`bars[${i}].size`, b.size);
        if (b.device !== undefined && !isDevice(b.device)) throw new TypeError(`bars[${i}].device must be { read(offset, size), write(offset, size, value) }`);
      });
    }
  }

  /** Signals MSI vector `vector` (see the class). */
  signalMsi(vector: number): MsiSignal {
    checkInt('vector', vector, 0, 31);
    const a = this.attachedOrThrow();
    return callBinding(() => a.handle.signalMsi(a.id, vector)) as MsiSignal;
  }

  /** Signals MSI-X vector `vector`, a table entry (see the class). */
  signalMsix(vector: number): MsiSignal {
    checkInt('vector', vector, 0, 2047);
    const a = this.attachedOrThrow();
    return callBinding(() => a.handle.signalMsix(a.id, vector)) as MsiSignal;
  }

  private attachedOrThrow() {
    if (!this.attached) throw new AcrnHsmError('ERR_NOT_ATTACHED', 'register the function with client.pci(bus, device, fn, f) first');
    return this.attached;
  }
}

/** The state and counters of a native virtio device ({@link VirtioBlk}, {@link VirtioRng}). */
export interface VirtioCounters {
  /** The device status register (0x40: DEVICE_NEEDS_RESET). */
  status: number;
  /** The features the driver accepted (valid once FEATURES_OK is set). */
  driverFeatures: bigint;
  /** Queue notifications received. */
  notifies: number;
  /** Descriptor chains completed. */
  chains: number;
  /** Interrupts sent (MSI-X messages and INTx assertions). */
  interrupts: number;
  /** Times the device went to DEVICE_NEEDS_RESET (a broken ring). */
  needsReset: number;
  /** Why it went there last. */
  lastError: string | null;
}

/**
 * A native virtio device of the core behind the modern virtio-pci transport (vendor 0x1af4,
 * device 0x1040 + type, the virtio capabilities and MSI-X in BAR 4): it reads the rings in the
 * VM's guest memory and interrupts through INJECT_MSI or SET_IRQLINE. Register it with
 * `client.pci(bus, device, fn, dev)`.
 */
abstract class NativeVirtio {
  /** @internal */ attached?: { handle: ClientHandle; index: number };
  /** @internal */ abstract options(): { kind: 'blk' | 'rng'; path?: string; readOnly?: boolean };
  /** The transport's state and counters. */
  counters(): VirtioCounters {
    if (!this.attached) throw new AcrnHsmError('ERR_NOT_ATTACHED', 'register the device with client.pci first');
    const a = this.attached;
    const c = callBinding(() => a.handle.virtioCounters(a.index));
    return { ...c, lastError: c.lastError ?? null };
  }
}

/** virtio-blk backed by a file (pread/pwrite; FLUSH is fdatasync). */
export class VirtioBlk extends NativeVirtio {
  constructor(
    readonly path: string,
    readonly opts: { readOnly?: boolean } = {},
  ) {
    super();
    if (typeof path !== 'string' || path === '') throw new TypeError('path must be a file name');
  }
  /** @internal */ options() {
    return { kind: 'blk' as const, path: this.path, readOnly: this.opts.readOnly === true };
  }
}

/** virtio-rng: buffers filled from the host's getrandom. */
export class VirtioRng extends NativeVirtio {
  /** @internal */ options() {
    return { kind: 'rng' as const };
  }
}

type Registered = { name: string; kind: 'io' | 'pci'; device: Device | PciDevice; space: 'pio' | 'mmio' | 'pci' };

function isDevice(d: unknown): d is Device {
  return typeof d === 'object' && d !== null && typeof (d as Device).read === 'function' && typeof (d as Device).write === 'function';
}

const TYPES = ['pio', 'mmio', 'pci'] as const;
const NONE: readonly number[] = Object.freeze([]);
const ALL_ONES = 0xffff_ffff_ffff_ffffn;

/**
 * The batch records the native client writes (`crates/acrn-hsm-node/src/client.rs`, which
 * exports their layout): word 0 packs device, vCPU, kind, direction and size, word 1 the offset,
 * word 2 the value written, word 3 the address. Read here, in one place, through a Uint32Array
 * view (two u32 per word, little-endian).
 */
interface Layout {
  words: number;
  maxBatch: number;
  vcpuShift: number;
  kindShift: number;
  readShift: number;
}
let layoutCache: Layout | undefined;
function layout(): Layout {
  if (!layoutCache) {
    const l = native().batchLayout();
    if (l.sizeShift !== 32) throw new Error(`acrn-hsm: unexpected batch layout (size shift ${l.sizeShift})`);
    layoutCache = { words: l.recordWords, maxBatch: l.maxBatch, vcpuShift: l.vcpuShift, kindShift: l.kindShift, readShift: l.readShift };
  }
  return layoutCache;
}

/** The fields of record `k`. */
function record(out: BigUint64Array, out32: Uint32Array, k: number) {
  const L = layout();
  const w = k * L.words;
  const lo = out32[2 * w] as number;
  const kind = (lo >>> L.kindShift) & 3;
  return {
    index: lo & 0xffff,
    vcpu: (lo >>> L.vcpuShift) & 0xff,
    kind,
    isRead: ((lo >>> L.readShift) & 1) === 1,
    size: out32[2 * w + 1] as number,
    offset: (out32[2 * w + 2] as number) + (out32[2 * w + 3] as number) * 0x1_0000_0000,
    value: kind === 1 ? (out[w + 2] as bigint) : (out32[2 * w + 4] as number),
    address: out[w + 3] as bigint,
  };
}

/**
 * The ioreq client of a VM. Events: `'error'` (a handler failed; `err.request` tells which, or `err.chain` for a
 * virtio device of {@link IoreqClient.virtio}), `'fault'` (a malformed request).
 *
 * Devices can be added ({@link pio}, {@link mmio}, {@link pci}) and removed ({@link remove})
 * at any time, also while `run()` / `runSync()` serves: the core checks each change at once
 * (an overlap throws `ERR_RANGE`) and applies it before it next looks for requests, so every
 * request the guest makes after the call returned sees it. Requests already handed to a
 * removed device complete as they were; later ones are unclaimed (reads all ones).
 */
export class IoreqClient extends EventEmitter {
  /** @internal */ readonly handle: ClientHandle;
  /** By the core's device id (the records' index). */
  private readonly devices: Registered[] = [];
  /** The core's device ids of each registered object, for {@link remove}. */
  private readonly ids = new Map<object, number[]>();
  /** The BAR device ids that go with a PCI function's id. */
  private readonly followers = new Map<number, number[]>();
  /** Ids removed while serving: forgotten once a batch asked for after the removal came. */
  private retired: number[] = [];
  private running = false;
  /** How long `run()` waits for a handler's promise (ms; `Infinity`: no limit). */
  readonly handlerTimeoutMs: number;

  private readonly vmDestroyed: () => boolean;

  /** @internal */
  private readonly tracePath?: string;

  /** The TypeScript virtio devices, by the core's transport handle. */
  private readonly virtioDevices = new Map<number, { dev: VirtioDevice; name: string }>();
  private readonly virtioHandles = new Map<VirtioDevice, number>();
  private readonly memory?: () => GuestMemory;

  constructor(handle: ClientHandle, options: { handlerTimeoutMs?: number; trace?: string; vmDestroyed?: () => boolean; memory?: () => GuestMemory } = {}) {
    super();
    this.handle = handle;
    this.memory = options.memory;
    this.handlerTimeoutMs = checkHandlerTimeout(options.handlerTimeoutMs);
    this.tracePath = options.trace;
    this.vmDestroyed = options.vmDestroyed ?? (() => false);
  }

  /** `createIoreqClient({ trace })`: the recording starts with the loop, once the devices are known. */
  private startTrace(): void {
    if (this.tracePath !== undefined) this.record(this.tracePath);
  }

  /** Refuses a second loop, and a loop on a destroyed VM, saying what to do. */
  private enterLoop(which: 'run()' | 'runSync()'): void {
    if (this.running) {
      throw new AcrnHsmError(
        'ERR_CLIENT_RUNNING',
        `${which}: this client is already serving (run() or runSync() is active): one loop per client; call client.stop() and wait for it first`,
      );
    }
    if (this.vmDestroyed()) {
      throw new AcrnHsmError('ERR_VM_DESTROYED', `${which}: the VM was destroyed, and its ioreq clients with it: create a new VM and client`);
    }
    this.running = true;
  }

  /** Serves ports `[base, base + length)` with `device` (a TS device, a `Uart16550` or a `RegisterFile`). */
  pio(base: number, length: number, device: Device<number> | Uart16550 | RegisterFile): this {
    checkInt('base', base, 0, 0xffff);
    checkInt('length', length, 1, 0x10000 - base);
    const last = base + length - 1;
    if ((base <= 0xcf8 && last >= 0xcf8) || (base <= 0xcff && last >= 0xcfc)) {
      // acrn-semantics.md, corrections 8: the hypervisor's vPCI takes 0xCF8 (CONFIG_ADDRESS) and
      // 0xCFC..0xCFF (CONFIG_DATA) before HSM sees them, and HSM completes the rest in the kernel.
      // 0xCF9 (the reset control register) is the device model's.
      throw new AcrnHsmError(
        'ERR_RESERVED_RANGE',
        `ports 0x${base.toString(16)}..0x${last.toString(16)} cover PCI configuration ports (0xcf8, 0xcfc..0xcff): ` +
          'the hypervisor and HSM handle them, and a device model never sees them as PIO. Serve a PCI function with client.pci(bus, device, fn, dev)',
      );
    }
    return this.addRange('pio', BigInt(base), BigInt(length), device);
  }

  /** Serves guest-physical `[base, base + length)` with `device` (a TS device or a `RegisterFile`). */
  mmio(base: bigint, length: bigint, device: Device<bigint> | RegisterFile): this {
    checkU64('base', base);
    checkU64('length', length);
    if (length === 0n) throw new RangeError('length must be at least 1');
    return this.addRange('mmio', base, length, device);
  }

  /** Serves the configuration space of PCI function `bus:device.fn` (reached by the guest through 0xCF8/0xCFC). */
  pci(bus: number, device: number, fn: number, dev: PciDevice | PciFunction | VirtioBlk | VirtioRng): this {
    checkInt('bus', bus, 0, 255);
    checkInt('device', device, 0, 31);
    checkInt('function', fn, 0, 7);
    if (dev instanceof NativeVirtio) {
      if (dev.attached) throw new AcrnHsmError('ERR_ALREADY_ATTACHED', 'this virtio device is already registered');
      const index = callBinding(() => this.handle.addVirtio(bus, device, fn, dev.options()));
      dev.attached = { handle: this.handle, index };
    } else if (dev instanceof PciFunction) {
      const o = dev.options;
      const bars = o.bars?.map((b) => ({ index: b.index, kind: b.kind, size: b.size, js: b.device !== undefined }));
      // The function's id, then each live BAR's.
      const [fid, ...indices] = callBinding(() => this.handle.addPciFunction(bus, device, fn, { ...o, bars }));
      const live = (o.bars ?? []).filter((b) => b.device !== undefined);
      live.forEach((b, k) => {
        const name = `${o.name ?? 'pci-function'}.bar${b.index}`;
        this.devices[indices[k]!] = { name, kind: 'io', device: b.device!, space: b.kind === 'io' ? 'pio' : 'mmio' };
      });
      // Removing the function removes its BARs: their ids are forgotten with it.
      this.remember(dev, fid!, ...indices);
      dev.attached = { handle: this.handle, id: fid! };
    } else if (isDevice(dev)) {
      const name = deviceName(dev, `pci-${bus}:${device}.${fn}`);
      const index = callBinding(() => this.handle.addJsPci(bus, device, fn, name));
      this.devices[index] = { name, kind: 'pci', device: dev, space: 'pci' };
      this.remember(dev, index);
    } else {
      throw new TypeError('a PCI device is a PciFunction, a VirtioBlk, a VirtioRng or { read(reg, size), write(reg, size, value) }');
    }
    return this;
  }

  /**
   * Adds the core's PC platform (see {@link PcPlatform}) to this client, shaped after the VM's
   * RAM (map it first: `vm.loadFirmware(...)`). Serving or not.
   */
  pcPlatform(pc: PcPlatform): this {
    if (!(pc instanceof PcPlatform)) throw new TypeError('pc must be a PcPlatform');
    if (pc.attached) throw new AcrnHsmError('ERR_ALREADY_ATTACHED', 'this platform is already registered');
    const o = pc.options;
    const index = callBinding(() => this.handle.addPcPlatform({ sercon: o.sercon, debugExit: o.debugExit, bootFailWaitMs: o.bootFailWaitMs }));
    pc.attached = { handle: this.handle, index };
    for (const id of callBinding(() => this.handle.pcDeviceIds(index))) this.remember(pc, id);
    return this;
  }

  /**
   * Serves a virtio device written in TypeScript at PCI function `bus:device.fn`, behind the
   * core's modern virtio-pci transport (configuration space, BAR 4, MSI-X, negotiation and the
   * virtqueues are the core's). Each descriptor chain the driver makes available is handed to
   * `dev.request(queue, chain)` after the batch it arrived in, with its buffers as zero-copy
   * views of guest memory; see {@link VirtioDevice} for completion, errors and async handlers.
   */
  virtio(bus: number, device: number, fn: number, dev: VirtioDevice): this {
    checkInt('bus', bus, 0, 255);
    checkInt('device', device, 0, 31);
    checkInt('function', fn, 0, 7);
    if (typeof dev !== 'object' || dev === null || typeof dev.request !== 'function') {
      throw new TypeError('a virtio device is { deviceId, features, config, queues, request(queue, chain) }');
    }
    checkInt('deviceId', dev.deviceId, 1, 0xffbf);
    checkU64('features', dev.features);
    if (!(dev.config instanceof Uint8Array)) throw new TypeError('config must be a Uint8Array');
    if (!Array.isArray(dev.queues) || dev.queues.length === 0) throw new TypeError('queues must be a non-empty array of queue sizes');
    dev.queues.forEach((q, k) => checkInt(`queues[${k}]`, q, 1, 32768));
    if (this.memory === undefined) throw new AcrnHsmError('ERR_INVALID_ARG', 'this client has no VM memory to map the chains from');
    if (this.virtioHandles.has(dev)) throw new AcrnHsmError('ERR_ALREADY_ATTACHED', 'this virtio device is already registered');
    const name = deviceName(dev, `virtio-${dev.deviceId}`);
    const config = Buffer.from(dev.config.buffer, dev.config.byteOffset, dev.config.byteLength);
    const handle = callBinding(() =>
      this.handle.addJsVirtio(bus, device, fn, { name, deviceType: dev.deviceId, features: dev.features, config, queues: [...dev.queues] }),
    );
    this.virtioDevices.set(handle, { dev, name });
    this.virtioHandles.set(dev, handle);
    this.remember(dev, callBinding(() => this.handle.nativeDeviceId('virtio', handle)));
    return this;
  }

  /** The transport's state and counters of a device registered with {@link virtio}. */
  virtioCounters(dev: VirtioDevice): VirtioCounters {
    const h = this.virtioHandles.get(dev);
    if (h === undefined) throw new AcrnHsmError('ERR_NOT_ATTACHED', 'register the device with client.virtio first');
    const c = callBinding(() => this.handle.virtioCounters(h));
    return { ...c, lastError: c.lastError ?? null };
  }

  /**
   * Tells the driver the configuration of `dev` (registered with {@link virtio}) changed:
   * `config` (at most 4096 bytes) replaces the image the core serves (default: `dev.config`
   * again, e.g. after the device changed it in place); `config_generation` moves on and, once
   * the driver set DRIVER_OK, a configuration-change interrupt goes out (ISR bit 1, or the
   * configuration MSI-X vector).
   */
  virtioConfigChanged(dev: VirtioDevice, config: Uint8Array = dev.config): void {
    const h = this.virtioHandles.get(dev);
    if (h === undefined) throw new AcrnHsmError('ERR_NOT_ATTACHED', 'register the device with client.virtio first');
    if (!(config instanceof Uint8Array)) throw new TypeError('config must be a Uint8Array');
    const b = Buffer.from(config.buffer, config.byteOffset, config.byteLength);
    callBinding(() => this.handle.virtioConfigChanged(h, b));
  }

  /** Hands the chains the core deferred to their devices (after each batch). */
  private serveVirtio(): void {
    if (this.virtioDevices.size === 0) return;
    const chains: (ReturnType<ClientHandle['virtioTake']>[number] & { done?: boolean })[] = this.handle.virtioTake();
    if (chains.length === 0) return;
    const mem = this.memory!();
    for (const c of chains) {
      const reg = this.virtioDevices.get(c.device);
      if (reg === undefined) continue;
      let r: number | Promise<number>;
      try {
        const view = (b: { gpa: bigint; len: number }) => (b.len === 0 ? Buffer.alloc(0) : mem.view(b.gpa, b.len));
        const handle = this.handle;
        const chain: VirtioChain = {
          head: c.head,
          readable: c.readable.map(view),
          writable: c.writable.map(view),
          alive: () => !c.done && handle.virtioEpoch(c.device) === c.epoch,
        };
        r = reg.dev.request(c.queue, chain);
      } catch (err) {
        this.returnChain(reg.name, c, 0, err);
        continue;
      }
      if (r !== null && typeof r === 'object' && typeof (r as Promise<number>).then === 'function') {
        (r as Promise<number>).then(
          (n) => this.returnChain(reg.name, c, n),
          (err: unknown) => this.returnChain(reg.name, c, 0, err),
        );
      } else {
        this.returnChain(reg.name, c, r);
      }
    }
  }

  private returnChain(name: string, c: { device: number; epoch: number; queue: number; head: number; done?: boolean }, n: unknown, err?: unknown): void {
    c.done = true;
    let written = 0;
    if (err === undefined) {
      if (typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= 0xffff_ffff) written = n;
      else err = new TypeError(`${name}.request returned ${String(n)}, not a byte count (u32)`);
    }
    try {
      this.handle.virtioReturnChain(c.device, c.epoch, c.queue, c.head, written);
    } catch (e) {
      err ??= fromBindingError(e);
    }
    if (err === undefined) return;
    const e = err instanceof Error ? err : new Error(String(err));
    const chain = { device: name, queue: c.queue, head: c.head };
    (e as Error & { chain?: typeof chain }).chain = chain;
    if (this.listenerCount('error') > 0) this.emit('error', e, chain);
    else process.emitWarning(`acrn-hsm: virtio device ${name} failed (${e.message}); the chain was completed with 0 bytes`);
  }

  private addRange(space: 'pio' | 'mmio', base: bigint, length: bigint, device: Device | Uart16550 | RegisterFile): this {
    if (device instanceof Uart16550) {
      if (space !== 'pio' || length !== 8n) throw new RangeError('a 16550 UART takes 8 ports: client.pio(base, 8, uart)');
      if (device.attached) throw new AcrnHsmError('ERR_ALREADY_ATTACHED', 'this UART is already registered');
      const index = callBinding(() => this.handle.addUart(Number(base), device.name));
      device.attached = { handle: this.handle, index };
      this.remember(device, callBinding(() => this.handle.nativeDeviceId('uart', index)));
    } else if (device instanceof RegisterFile) {
      if (BigInt(device.length) !== length) throw new RangeError(`the register file has ${device.length} bytes, the range ${length}`);
      if (device.attached) throw new AcrnHsmError('ERR_ALREADY_ATTACHED', 'this register file is already registered');
      const index = callBinding(() => this.handle.addRegisterFile(space, base, device.length, device.name));
      device.attached = { handle: this.handle, index };
      this.remember(device, callBinding(() => this.handle.nativeDeviceId('registers', index)));
    } else if (isDevice(device)) {
      const name = deviceName(device, `${space}-0x${base.toString(16)}`);
      const index = callBinding(() => this.handle.addJsRange(space, base, length, name));
      this.devices[index] = { name, kind: 'io', device, space };
      this.remember(device, index);
    } else {
      throw new TypeError('a device is { read(offset, size), write(offset, size, value) }, a Uart16550 or a RegisterFile');
    }
    return this;
  }

  /** Notes the core's ids of `device`'s registration (the first is the one to remove). */
  private remember(device: object, ...ids: number[]): void {
    const all = this.ids.get(device) ?? [];
    all.push(ids[0]!);
    this.ids.set(device, all);
    for (const id of ids.slice(1)) this.followers.set(ids[0]!, [...(this.followers.get(ids[0]!) ?? []), id]);
  }

  /**
   * Removes every registration of `device` (a TS device, a `Uart16550`, a `RegisterFile`, a
   * `PciFunction` with its BARs, or a {@link VirtioDevice} with its BAR), serving or not: from the client's next look for requests its
   * ranges are unclaimed (reads all ones, writes ignored); a request already handed to it is
   * completed as it was. Throws `ERR_NO_DEVICE` if it is not registered with this client.
   */
  remove(device: Device | PciDevice | PciFunction | Uart16550 | RegisterFile | VirtioDevice | PcPlatform): this {
    const ids = this.ids.get(device);
    if (ids === undefined) throw new AcrnHsmError('ERR_NO_DEVICE', `${deviceName(device, 'the device')} is not registered with this client`);
    for (const id of ids) callBinding(() => this.handle.removeDevice(id));
    this.ids.delete(device);
    const vh = this.virtioHandles.get(device as VirtioDevice);
    if (vh !== undefined) {
      // Chains already handed out still complete; those not taken yet are left in flight.
      this.virtioHandles.delete(device as VirtioDevice);
      this.virtioDevices.delete(vh);
    }
    if (device instanceof Uart16550 || device instanceof RegisterFile || device instanceof PciFunction || device instanceof PcPlatform) device.attached = undefined;
    const gone = ids.flatMap((id) => [id, ...(this.followers.get(id) ?? [])]);
    for (const id of ids) this.followers.delete(id);
    // A batch already handed out may still hold requests for it: forget it only once the
    // next batch (asked for after the removal, so without it) has come.
    if (this.running) this.retired.push(...gone);
    else for (const id of gone) delete this.devices[id];
    return this;
  }

  /** Takes the ids to forget once the next batch has come (see {@link remove}). */
  private takeRetired(): readonly number[] {
    // Never `this.retired` itself: a removal during the wait must not join what this wait forgets.
    if (this.retired.length === 0) return NONE;
    const r = this.retired;
    this.retired = [];
    return r;
  }

  private forget(ids: readonly number[]): void {
    for (const id of ids) delete this.devices[id];
  }

  /** The counters. */
  get counters(): ClientCounters {
    return this.handle.counters() as ClientCounters;
  }

  /**
   * Asks for a reset, suspend or power-off of the VM from inside a handler, as the device model
   * does them: the NOTIFYs of the batch being handled are withheld, then PAUSE_VM,
   * CLEAR_VM_IOREQ, (reset) every device reset, RESET_VM, START_VM. After a suspend or power-off
   * the loop ends.
   */
  requestVmAction(action: VmAction): void {
    callBinding(() => this.handle.requestVmAction(action));
  }

  /**
   * Records every request this client serves into a trace file (docs/trace-format.md), with the
   * devices registered so far in its header: open it with `acrn-hsm trace report|view`.
   * Client-side stamps (processing to notify), as on a real device. Ends with
   * {@link stopRecording} or when the client stops.
   */
  record(path: string, options: { name?: string } = {}): void {
    if (typeof path !== 'string' || path === '') throw new TypeError('record(path): path must be a non-empty string');
    callBinding(() => this.handle.startRecording(path, options.name));
  }

  /** Finishes the recording started by {@link record}; returns the number of records written. */
  stopRecording(): number {
    return callBinding(() => this.handle.stopRecording());
  }

  /** Stops serving; `run()` resolves and `runSync()` returns. */
  stop(): void {
    callBinding(() => this.handle.stop());
  }

  /** A token another thread can stop this client with: `stopClient(token)`. */
  get stopToken(): number {
    return this.handle.stopToken;
  }

  /**
   * The synchronous loop, for a worker thread: serves until the client is stopped or destroyed
   * (or the VM goes away). Blocks the calling thread.
   */
  runSync(): void {
    this.enterLoop('runSync()');
    const L = layout();
    const binding = native();
    // The loop's lane: the client and one buffer (the responses, then the records) bound once,
    // so each native call takes only the lane's id (no object unwrapped, no array converted);
    // the lane holds the client's server from here to its close.
    let lane: number;
    try {
      this.startTrace();
      lane = callBinding(() => binding.openSyncLane(this.handle));
    } catch (err) {
      this.running = false;
      throw err;
    }
    const mem = binding.syncLaneBuffer(lane);
    const buf = new BigUint64Array(mem.buffer, mem.byteOffset, L.maxBatch * (1 + L.words));
    const responses = buf.subarray(0, L.maxBatch);
    const resp32 = new Uint32Array(buf.buffer, buf.byteOffset, 2 * L.maxBatch);
    const out = buf.subarray(L.maxBatch);
    const out32 = new Uint32Array(buf.buffer, buf.byteOffset + 8 * L.maxBatch, 2 * L.maxBatch * L.words);
    let batches = 0;
    // The hot loop: one native call per batch, no closure or object made per request.
    try {
      for (;;) {
        const retired = this.takeRetired();
        let n: number;
        try {
          n = binding.syncLaneNext(lane);
        } catch (err) {
          throw fromBindingError(err);
        }
        if (retired.length > 0) this.forget(retired);
        if (n < 0) break;
        for (let k = 0; k < n; k++) this.serveOne(out, out32, k, responses, resp32, false, undefined);
        this.serveVirtio();
        if ((++batches & 255) === 0) this.drainFaults();
      }
    } finally {
      binding.closeSyncLane(lane);
      this.running = false;
      this.forget(this.takeRetired());
      this.drainFaults();
    }
  }

  /** The asynchronous loop on the main thread: resolves when the client is stopped or destroyed. */
  async run(): Promise<void> {
    this.enterLoop('run()');
    this.startTrace();
    const L = layout();
    const responses = new BigUint64Array(L.maxBatch);
    const resp32 = new Uint32Array(responses.buffer);
    // One records buffer for the whole run: the native side writes each batch into it.
    const out = new BigUint64Array(L.maxBatch * L.words);
    const out32 = new Uint32Array(out.buffer);
    const none = responses.subarray(0, 0);
    try {
      for (;;) {
        let n: number;
        const retired = this.takeRetired();
        try {
          n = await this.handle.nextAsync(none, out);
        } catch (err) {
          throw fromBindingError(err);
        }
        if (retired.length > 0) this.forget(retired);
        if (n < 0) break;
        for (let k = 0; k < n; k++) {
          const guard = { expired: false };
          const r = this.serveOne(out, out32, k, responses, resp32, true, guard);
          if (r !== undefined) await this.settleOrTimeOut(r, guard, out, out32, k, responses);
        }
        this.serveVirtio();
        // Completed here, on the main thread: the vCPUs resume now, not once a libuv thread
        // has woken for the next wait.
        try {
          this.handle.answerBatch(responses.subarray(0, n));
        } catch (err) {
          throw fromBindingError(err);
        }
        this.drainFaults();
      }
    } finally {
      this.running = false;
      this.forget(this.takeRetired());
      this.drainFaults();
    }
  }

  /**
   * Waits for an async handler at most `handlerTimeoutMs`; past it, marks `guard` expired (the
   * handler's late result is then ignored), answers a read with all ones and reports
   * `ERR_HANDLER_TIMEOUT`.
   */
  private async settleOrTimeOut(
    r: Promise<void>,
    guard: { expired: boolean },
    out: BigUint64Array,
    out32: Uint32Array,
    k: number,
    responses: BigUint64Array,
  ): Promise<void> {
    const ms = this.handlerTimeoutMs;
    if (!Number.isFinite(ms)) return r;
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        guard.expired = true;
        resolve();
      }, ms);
    });
    try {
      await Promise.race([r, expired]);
    } finally {
      clearTimeout(timer);
    }
    if (!guard.expired) return;
    const { index, isRead } = record(out, out32, k);
    const reg = this.devices[index];
    const name = reg?.name ?? `#${index}`;
    if (isRead) responses[k] = ALL_ONES;
    const what = isRead ? 'read' : 'write';
    this.reportError(
      new AcrnHsmError(
        'ERR_HANDLER_TIMEOUT',
        `${name}.${what} did not settle within ${ms} ms; the ${what} was completed${isRead ? ' with all ones' : ''} (handlerTimeoutMs)`,
      ),
      out,
      out32,
      k,
      name,
    );
  }

  /**
   * Runs the handler of record `k`; returns a promise only for async handlers in the async loop.
   * The fields are read straight from the record words (the layout of {@link record}): the hot
   * path allocates nothing for a PIO request or a read of a number.
   */
  private serveOne(
    out: BigUint64Array,
    out32: Uint32Array,
    k: number,
    responses: BigUint64Array,
    resp32: Uint32Array,
    allowAsync: boolean,
    guard: { expired: boolean } | undefined,
  ): Promise<void> | undefined {
    const L = layoutCache ?? layout();
    const w2 = 2 * k * L.words;
    const lo = out32[w2] as number;
    const index = lo & 0xffff;
    const kind = (lo >>> L.kindShift) & 3;
    const isRead = ((lo >>> L.readShift) & 1) === 1;
    const size = out32[w2 + 1] as number;
    const offset = (out32[w2 + 2] as number) + (out32[w2 + 3] as number) * 0x1_0000_0000;
    const reg = this.devices[index];
    if (!reg) {
      this.failRequest(new AcrnHsmError('ERR_NO_DEVICE', `no TypeScript device #${index}`), out, out32, k, responses, isRead, `#${index}`);
      return undefined;
    }
    try {
      if (isRead) {
        const v = reg.device.read(offset, size);
        if (allowAsync && v instanceof Promise) {
          return v.then(
            (value) => {
              if (!guard?.expired) this.storeRead(value, kind, responses, resp32, k, out, out32, reg.name);
            },
            (err) => {
              if (!guard?.expired) this.failRequest(err, out, out32, k, responses, true, reg.name);
            },
          );
        }
        if (typeof v === 'number' && v >>> 0 === v) {
          resp32[2 * k] = v;
          resp32[2 * k + 1] = 0;
        } else {
          this.storeRead(v, kind, responses, resp32, k, out, out32, reg.name);
        }
      } else {
        const value = kind === 1 ? (out[k * L.words + 2] as bigint) : (out32[w2 + 4] as number);
        const r = (reg.device as Device).write(offset, size, value);
        if (r instanceof Promise) {
          if (allowAsync) {
            return r.then(undefined, (err) => {
              if (!guard?.expired) this.failRequest(err, out, out32, k, responses, false, reg.name);
            });
          }
          this.failRequest(new TypeError(`${reg.name}.write returned a promise: async handlers need client.run(), not runSync()`), out, out32, k, responses, false, reg.name);
        }
      }
    } catch (err) {
      this.failRequest(err, out, out32, k, responses, isRead, reg.name);
    }
    return undefined;
  }

  /** A handler failed: a read is answered with all ones, and the error reported. */
  private failRequest(err: unknown, out: BigUint64Array, out32: Uint32Array, k: number, responses: BigUint64Array, isRead: boolean, device: string): void {
    if (isRead) responses[k] = ALL_ONES;
    this.reportError(err, out, out32, k, device);
  }

  private storeRead(
    v: unknown,
    kind: number,
    responses: BigUint64Array,
    resp32: Uint32Array,
    k: number,
    out: BigUint64Array,
    out32: Uint32Array,
    name: string,
  ): void {
    if (typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xffff_ffff) {
      resp32[k * 2] = v;
      resp32[k * 2 + 1] = 0;
    } else if (typeof v === 'bigint' && BigInt.asUintN(64, v) === v) {
      // In 0..2^64-1 (asUintN(64) is optimized where two BigInt comparisons are builtin calls:
      // 2-4 ns per 64-bit read, benches/bigint-range-check.mjs).
      responses[k] = v;
    } else {
      responses[k] = ALL_ONES;
      const expected = kind === 1 ? 'a bigint in 0..2^64-1 (or a number in 0..2^32-1)' : 'a number in 0..2^32-1';
      this.reportError(
        new TypeError(`${name}.read returned ${v instanceof Promise ? 'a promise (async handlers need client.run())' : typeof v === 'number' || typeof v === 'bigint' ? String(v) : typeof v}; expected ${expected}`),
        out,
        out32,
        k,
        name,
      );
    }
  }

  private reportError(err: unknown, out: BigUint64Array, out32: Uint32Array, k: number, device: string): void {
    const r = record(out, out32, k);
    const request: ServedRequest = {
      type: TYPES[r.kind] ?? 'pio',
      direction: r.isRead ? 'read' : 'write',
      vcpu: r.vcpu,
      address: r.address,
      offset: r.offset,
      size: r.size,
      device,
    };
    const isRead = r.isRead;
    if (!isRead) request.value = r.value;
    if (request.type === 'pci') {
      // The core's BDF packing (bus << 16 | device << 11 | function << 8) to the traces' one.
      const bdf = request.address;
      request.address = (bdf << 8n) | BigInt(request.offset & 0xfff);
      request.pci = { bus: Number((bdf >> 16n) & 0xffn), device: Number((bdf >> 11n) & 0x1fn), function: Number((bdf >> 8n) & 7n), register: request.offset };
    }
    const e = err instanceof Error ? err : new Error(String(err));
    (e as Error & { request?: ServedRequest }).request = request;
    if (this.listenerCount('error') > 0) this.emit('error', e, request);
    else process.emitWarning(`acrn-hsm: device ${device} failed (${e.message}); the ${request.direction} was completed${isRead ? ' with all ones' : ''}`);
  }

  private drainFaults(): void {
    if (this.counters.faults === 0) return;
    for (const f of this.handle.takeFaults()) {
      if (this.listenerCount('fault') > 0) this.emit('fault', f as ClientFault);
    }
  }
}

function deviceName(d: object, fallback: string): string {
  const n = (d as { name?: unknown }).name;
  return typeof n === 'string' && n.length > 0 ? n : (d.constructor?.name && d.constructor.name !== 'Object' ? d.constructor.name : fallback);
}

/** Stops a client from another thread (see `IoreqClient.stopToken`). */
export function stopClient(token: number): boolean {
  checkInt('token', token, 1, 0xffff_ffff);
  return native().stopClient(token);
}
