/**
 * The HSM: the real `/dev/acrn_hsm` or the emulator, one handle per open file (which holds at
 * most one VM, as in the kernel), its {@link Vm}, and on the emulator the {@link Guest} that runs
 * workloads on emulated vCPUs. Every failure is an {@link AcrnHsmError} with the errno name as
 * `code` (`'EINVAL'`) and the number as `errno`.
 */
import { readFileSync, statSync } from 'node:fs';
import { checkInt, checkU32, checkU64 } from './check.js';
import { callBinding, fromBindingError, AcrnHsmError, withAdvice } from './errors.js';
import { IoreqClient, checkHandlerTimeout, type WakeMode } from './client.js';
import { native } from './native.js';
import { EventFd, GuestMemory } from './memory.js';
import type { NativeBinding } from './native.js';

/** Debian's SeaBIOS (`apt-get install seabios`). */
export const SEABIOS_PATH = '/usr/share/seabios/bios.bin';

type HsmHandle = InstanceType<NativeBinding['HsmHandle']>;
type VmHandle = InstanceType<NativeBinding['VmHandle']>;
type NativeUserPage = InstanceType<NativeBinding['UserPage']>;

/** Options of the emulated machine. */
export interface EmulatorOptions {
  /** Physical CPUs of the emulated hypervisor (default 16); a VM gets one vCPU per pCPU of its affinity. */
  pcpus?: number;
  /** VM slots for post-launched VMs (default 8). */
  maxVms?: number;
  /**
   * What runs the vCPUs: `'workload'` (scripted accesses, `hsm.guest(vm).run(...)`; the
   * default) or `'kvm'` (real guest code on `/dev/kvm`, the engine of `runGuest`: map RAM and
   * a firmware image below 4 GiB with `vm.mapRam` — the vCPU starts at the reset vector
   * F000:FFF0 — then `vm.start()`; ts/bench/guest.ts does this). `'kvm'` throws `ERR_RUN` where
   * KVM is unusable (`engines()` says why).
   */
  engine?: 'workload' | 'kvm';
}

/** The arguments of CREATE_VM. */
export interface CreateVmOptions {
  /** vCPUs (1..16). */
  vcpuNum: number;
  /** 16 bytes, the hypervisor's VM name; omitted: a unique name is generated. */
  uuid?: Uint8Array;
  /** `vm_flag`, e.g. `GUEST_FLAG_IO_COMPLETION_POLLING` (1n << 2n) for a polling VM. */
  vmFlag?: bigint;
  /** `cpu_affinity`; omitted: derived from `vcpuNum`. */
  cpuAffinity?: bigint;
  /** The ioreq page; omitted: one is allocated. */
  ioreqPage?: UserPage;
}

/** `struct acrn_vm_memmap`. */
export interface Memseg {
  /** `ACRN_MEMMAP_RAM` (0) or `ACRN_MEMMAP_MMIO` (1). */
  type: number;
  /** `ACRN_MEM_ACCESS_*` bits. */
  attr: number;
  userVmPa: bigint;
  /** RAM: the address of memory from `Hsm.allocPages`; MMIO: the Service VM physical address. */
  vmaBase: bigint;
  len: bigint;
}

/** The initial state of a vCPU (`struct acrn_vcpu_regs`), the fields a loader sets. */
export interface VcpuRegs {
  vcpuId: number;
  rip?: bigint;
  rsp?: bigint;
  cr0?: bigint;
  cr3?: bigint;
  cr4?: bigint;
  rflags?: bigint;
  csSel?: number;
}

/** A guest read whose value differed from its `expect`. */
/** `struct acrn_ptdev_irq`: an INTx remapping for a passed-through device (SET/RESET_PTDEV_INTR). */
export interface PtdevIrq {
  /** 0 = INTx (the only type the hypervisor accepts), 1 = MSI, 2 = MSI-X. Default 0. */
  type?: number;
  /** The bdf the guest sees (`bus << 8 | dev << 3 | func`). */
  virtBdf: number;
  /** The physical bdf. */
  physBdf: number;
  /** The guest GSI (or vPIC pin when `isPicPin`). */
  virtPin: number;
  /** The physical GSI. */
  physPin: number;
  isPicPin?: boolean;
}

/** `struct acrn_pcidev`: a physical PCI device to pass through (ASSIGN/DEASSIGN_PCIDEV). */
export interface PciDev {
  /** Flags: 1 = `ACRN_PTDEV_QUIRK_ASSIGN` (the device model keeps the config space). Default 0. */
  type?: number;
  virtBdf: number;
  physBdf: number;
  intrLine?: number;
  intrPin?: number;
  /** Up to six BARs as the guest sees them. */
  bar?: number[];
}

/** `struct acrn_mmiodev`: a platform MMIO device to pass through (ASSIGN/DEASSIGN_MMIODEV). */
export interface MmioDev {
  /** At most 8 bytes. */
  name?: string;
  /** Up to three resources; sizes are multiples of 4 KiB. */
  res: { userVmPa: bigint; hostPa: bigint; size: bigint; memType?: bigint }[];
}

/** `struct acrn_vdev`: a device the hypervisor emulates (CREATE/DESTROY_VDEV): ivshmem 1af4:1110, vUART 9710:9900, root port 8086:9d14. */
export interface Vdev {
  vendor: number;
  device: number;
  legacyId?: number;
  /** The bdf the device appears at. */
  slot: number;
  /** Device-specific arguments (at most 128 bytes). */
  args?: Uint8Array;
}

/** What PM_GET_CPU_STATE answered. */
export type PmState =
  | { kind: 'none' }
  | { kind: 'count'; count: number }
  | { kind: 'pstate'; pstate: bigint[] }
  | { kind: 'cstate'; cstateType: number; latency: number; power: bigint; address: bigint };

export interface RunMismatch {
  vcpu: number;
  request: number;
  access: string;
  expected: bigint;
  actual: bigint;
}

/** A guest fault: #GP for a slot that was not FREE, or a stray wake-up. */
export interface RunFault {
  vcpu: number;
  request: number;
  kind: 'general-protection' | 'stray-wakeup' | 'irq-timeout';
  state: number;
  access: string;
}

/** The result of a guest workload run. */
export interface RunResult {
  issued: number;
  completed: number;
  mismatches: RunMismatch[];
  faults: RunFault[];
  /** Per request, PENDING to FREE as the guest saw it, in ns. */
  latenciesNs: Float64Array;
  /** Per vCPU: why it stopped early (`'paused'`, `'reset'`, `'destroyed'`...), or null. */
  stopped: (string | null)[];
}

/** A guest workload: `{ vcpus: [[op, ...], ...] }` (see docs/workloads.md). u64 values may be bigint. */
/** A u64 in a workload: a number, a bigint, or a string (`"0x..."` or decimal). */
export type WorkloadU64 = number | bigint | string;

/** A write of `write`, or a read (checked against `expect` when given, masked to the size). */
export type WorkloadAccess = { write: WorkloadU64; read?: never; expect?: never } | { read: boolean; expect?: WorkloadU64; write?: never };

/**
 * A PCI function's register, named as decoded slots name it (`IoRequest` of type `'pci'`). The
 * short `dev`/`func`/`reg` of older workload files are accepted too.
 */
export type WorkloadPciAddress =
  | { bus: number; device: number; function: number; register: number }
  | {
      bus: number;
      /** @deprecated `device` */ dev: number;
      /** @deprecated `function` */ func: number;
      /** @deprecated `register` */ reg: number;
    };

/** One operation of a vCPU (docs/workloads.md; `size` 1, 2, 4, or 8 for MMIO, checked by the core). */
export type WorkloadOp =
  | ({ pio: number | string; size: number } & WorkloadAccess)
  | ({ mmio: WorkloadU64; size: number } & WorkloadAccess)
  | ({ pci: WorkloadPciAddress; size: number } & WorkloadAccess)
  | { repeat: number; ops: WorkloadOp[] }
  | ({ ram: WorkloadU64; size: number } & WorkloadAccess)
  | { wait_irq: { vector: number } | { gsi: number }; timeout_ns?: WorkloadU64 }
  | { delay_ns: WorkloadU64 }
  | { barrier: true };

/** A guest workload: the operations of each vCPU, in order (docs/workloads.md). */
export interface Workload {
  vcpus: WorkloadOp[][];
}

/** Page-aligned memory owned by the library (an ioreq page, guest RAM). */
export class UserPage {
  /** @internal */
  readonly handle: NativeUserPage;

  /** @internal */
  constructor(handle: NativeUserPage) {
    this.handle = handle;
  }

  /** The user address, for raw ioctls (`ioreq_buf`, `vma_base`). */
  get address(): bigint {
    return this.handle.address;
  }

  get length(): number {
    return this.handle.length;
  }

  /** Copies `length` bytes at `offset` out. */
  read(offset: number, length: number): Buffer {
    checkU32('offset', offset);
    checkU32('length', length);
    return callBinding(() => this.handle.read(offset, length));
  }

  /** Copies `bytes` in at `offset`. */
  write(offset: number, bytes: Uint8Array): void {
    checkU32('offset', offset);
    if (!(bytes instanceof Uint8Array)) throw new TypeError('bytes must be a Uint8Array');
    callBinding(() => this.handle.write(offset, bytes));
  }

  #bytes: Buffer | undefined;
  /**
   * The whole allocation as a `Buffer` without a copy (it sees every later write, the guest's
   * included, and keeps the memory mapped while referenced).
   */
  get bytes(): Buffer {
    this.#bytes ??= callBinding(() => this.handle.bytes);
    return this.#bytes;
  }

  /** Slot `vcpu` of an ioreq page, read with an acquire load of `processed` first. */
  readSlot(vcpu: number): Buffer {
    checkU32('vcpu', vcpu);
    return callBinding(() => this.handle.readSlot(vcpu));
  }
}

/** Adds to an open() failure who may open the device (EACCES/EPERM) or what is missing (ENOENT). */
function explainOpenError(err: unknown, path: string): unknown {
  if (!(err instanceof AcrnHsmError)) return err;
  let hint: string;
  if (err.code === 'EACCES' || err.code === 'EPERM') {
    let owner = '';
    try {
      const st = statSync(path);
      owner = ` (${path} is owned by uid ${st.uid}, gid ${st.gid}, mode ${(st.mode & 0o777).toString(8).padStart(4, '0')})`;
    } catch {
      // No stat: say nothing about the owner.
    }
    const uid = typeof process.getuid === 'function' ? process.getuid() : undefined;
    hint =
      `opening ${path} needs read and write permission${owner}; this process runs as uid ${uid ?? '?'}. ` +
      `The kernel creates /dev/acrn_hsm root-only (crw------- root root): run the device model as root, ` +
      `or let a group open it with a udev rule such as KERNEL=="acrn_hsm", GROUP="acrn", MODE="0660"`;
  } else if (err.code === 'ENOENT') {
    hint = `${path} does not exist: /dev/acrn_hsm is created by the ACRN HSM driver (CONFIG_ACRN_HSM) in an ACRN Service VM; elsewhere use Hsm.emulated()`;
  } else {
    return err;
  }
  return new AcrnHsmError(err.code, `${err.message}: ${hint}`, { errno: err.errno, cause: err });
}

/** A file descriptor: an integer in the C `int` range (the kernel answers EBADF for a bad one). */
function checkFd(v: unknown): asserts v is number {
  if (typeof v !== 'number' || !Number.isInteger(v)) throw new TypeError('fd must be an integer');
  if (v < -(2 ** 31) || v > 2 ** 31 - 1) throw new RangeError(`fd ${v} is outside the range of a C int`);
}

/** JSON text of a workload, with bigint values written as `"0x..."` strings (which the format accepts). */
export function workloadJson(workload: Workload): string {
  if (typeof workload !== 'object' || workload === null || !Array.isArray(workload.vcpus)) {
    throw new TypeError('a workload is { vcpus: [[op, ...], ...] }');
  }
  return JSON.stringify(workload, (_k, v) => (typeof v === 'bigint' ? `0x${v.toString(16)}` : v));
}

/** One open `/dev/acrn_hsm` (real or emulated). */
export class Hsm {
  /** @internal */
  readonly handle: HsmHandle;
  /** The VM this handle created last (for the advice of a second CREATE_VM). */
  private vm: Vm | undefined;

  private constructor(handle: HsmHandle) {
    this.handle = handle;
  }

  /**
   * Opens the real device. Throws an `AcrnHsmError` naming the path and the errno when it cannot
   * be opened (`ENOENT`: not an ACRN Service VM; `EACCES`: needs root or a udev rule).
   */
  static open(path = '/dev/acrn_hsm'): Hsm {
    if (typeof path !== 'string' || path.length === 0) throw new TypeError('path must be a non-empty string');
    try {
      return new Hsm(callBinding(() => native().HsmHandle.open(path)));
    } catch (err) {
      throw explainOpenError(err, path);
    }
  }

  /** A handle on a new emulated machine (the HSM driver and the hypervisor, in process). */
  static emulated(options: EmulatorOptions = {}): Hsm {
    if (options.pcpus !== undefined) checkU32('pcpus', options.pcpus);
    if (options.maxVms !== undefined) checkU32('maxVms', options.maxVms);
    if (options.engine !== undefined && options.engine !== 'workload' && options.engine !== 'kvm') throw new TypeError(`engine must be 'workload' or 'kvm', got ${String(options.engine)}`);
    return new Hsm(callBinding(() => native().HsmHandle.emulated(options)));
  }

  /** One page (4096 bytes) of page-aligned memory, e.g. for `ioreq_buf`. */
  static allocPage(): UserPage {
    return Hsm.allocPages(4096);
  }

  /** `length` bytes (rounded up to pages) of page-aligned memory, e.g. guest RAM. */
  static allocPages(length: number): UserPage {
    checkU32('length', length);
    if (length === 0) throw new RangeError('length must be at least 1');
    return new UserPage(callBinding(() => native().allocPages(length)));
  }

  /** Whether this handle is on the emulator. */
  get emulated(): boolean {
    return this.handle.emulatedBackend;
  }

  /**
   * The interrupts the emulated hypervisor was asked to inject so far, oldest first:
   * `{ kind: 'msi' | 'irqfd', vmid, msiAddr, msiData }` or `{ kind: 'irqline', vmid, gsi, op }`
   * (emulator only: `ENODEV` on the real device).
   */
  interrupts(): ReturnType<HsmHandle['interrupts']> {
    return callBinding(() => this.handle.interrupts());
  }

  /** Another open file on the same emulated machine. */
  reopen(): Hsm {
    return new Hsm(callBinding(() => this.handle.reopen()));
  }

  /**
   * The raw ioctl. `arg`: the argument struct's bytes (written back in place for `_IOWR`), a
   * bigint for by-value arguments, or nothing. Fails with the errno the kernel would give.
   */
  ioctl(request: number, arg?: Uint8Array | bigint): number {
    checkU32('request', request);
    if (arg === undefined) return Number(callBinding(() => this.handle.ioctl(request)));
    if (typeof arg === 'bigint') {
      checkU64('arg', arg);
      return Number(callBinding(() => this.handle.ioctlValue(request, arg)));
    }
    if (!(arg instanceof Uint8Array)) throw new TypeError('arg must be a Uint8Array, a bigint or absent');
    return Number(callBinding(() => this.handle.ioctl(request, arg)));
  }

  /** CREATE_VM. */
  createVm(options: CreateVmOptions): Vm {
    if (typeof options !== 'object' || options === null) throw new TypeError('createVm takes { vcpuNum, ... }');
    checkU32('vcpuNum', options.vcpuNum);
    if (options.vcpuNum < 1 || options.vcpuNum > 16) throw new RangeError(`vcpuNum ${options.vcpuNum} is outside 1..16 (the ioreq page has 16 slots)`);
    if (options.vmFlag !== undefined) checkU64('vmFlag', options.vmFlag);
    if (options.cpuAffinity !== undefined) checkU64('cpuAffinity', options.cpuAffinity);
    if (options.uuid !== undefined && !(options.uuid instanceof Uint8Array && options.uuid.length === 16)) {
      throw new TypeError('uuid must be a Uint8Array of 16 bytes');
    }
    const { ioreqPage, ...rest } = options;
    if (ioreqPage !== undefined && !(ioreqPage instanceof UserPage)) throw new TypeError('ioreqPage must come from Hsm.allocPage()');
    if (this.vm !== undefined && !this.vm.destroyed) {
      // HSM keeps one VM per open file: a second CREATE_VM re-initialises it in place and, its
      // ioreq page being set, fails with EINVAL, leaving the first VM orphaned. Refused before.
      throw new AcrnHsmError(
        'ERR_VM_EXISTS',
        `this handle already has VM ${this.vm.vmid} (HSM keeps one VM, and its ioreq page, per open file; a second CREATE_VM ` +
          'would orphan it): destroy it first, or open another handle (hsm.reopen(), Hsm.open()) for a second VM',
      );
    }
    const vm = new Vm(this, callBinding(() => this.handle.createVm(rest, ioreqPage?.handle)));
    this.vm = vm;
    return vm;
  }

  /** The guest side of an emulated VM: runs workloads on its vCPUs. */
  guest(vm: Vm): Guest {
    if (!this.emulated) throw new AcrnHsmError('ENODEV', 'a guest can only be driven on the emulator', { errno: 19 });
    return new Guest(vm);
  }
}

/** The VM of one {@link Hsm} handle. */
export class Vm {
  /** The handle that created it (undefined for a VM opened from a shared token). */
  readonly hsm: Hsm | undefined;
  /** @internal */
  readonly handle: VmHandle;

  /** @internal */
  constructor(hsm: Hsm | undefined, handle: VmHandle) {
    this.hsm = hsm;
    this.handle = handle;
  }

  get vmid(): number {
    return this.handle.vmid;
  }
  get vcpuNum(): number {
    return this.handle.vcpuNum;
  }
  /** The ioreq page shared with the hypervisor. */
  get ioreqPage(): UserPage {
    return new UserPage(this.handle.ioreqPage);
  }

  start(): void {
    callBinding(() => this.handle.start());
  }
  pause(): void {
    callBinding(() => this.handle.pause());
  }
  reset(): void {
    callBinding(() => this.handle.reset());
  }
  /** Set once DESTROY_VM succeeded through this object. */
  get destroyed(): boolean {
    return this.#destroyed;
  }
  #destroyed = false;

  destroy(): void {
    try {
      callBinding(() => this.handle.destroy());
    } catch (err) {
      throw withAdvice(err, {
        EPERM: 'the hypervisor destroys only a paused VM: call vm.pause() first (the device model\'s order: pause, then destroy)',
      });
    }
    this.#destroyed = true;
  }
  setVcpuRegs(regs: VcpuRegs): void {
    checkU32('vcpuId', regs?.vcpuId);
    for (const k of ['rip', 'rsp', 'cr0', 'cr3', 'cr4', 'rflags'] as const) {
      if (regs[k] !== undefined) checkU64(k, regs[k]);
    }
    callBinding(() => this.handle.setVcpuRegs(regs));
  }
  setMemseg(map: Memseg): void {
    checkMemseg(map);
    callBinding(() => this.handle.setMemseg(map));
  }
  unsetMemseg(map: Memseg): void {
    checkMemseg(map);
    callBinding(() => this.handle.unsetMemseg(map));
  }
  /** Maps `memory` (from `Hsm.allocPages`) as guest RAM at `userVmPa`; it stays alive while mapped. */
  mapRam(userVmPa: bigint, memory: UserPage, attr = 7): void {
    checkU64('userVmPa', userVmPa);
    if (!(memory instanceof UserPage)) throw new TypeError('memory must come from Hsm.allocPages()');
    checkU32('attr', attr);
    callBinding(() => this.handle.mapRam(userVmPa, memory.handle, attr));
  }
  /**
   * Maps `memMib` MiB of RAM (default 128; from guest-physical 0, the part past 3.5 GiB from
   * 4 GiB) and a firmware image so that it ends at 4 GiB, its last 128 KiB copied to the shadow
   * below 1 MiB, as `acrn-hsm run` does: the vCPU starts at the reset vector. `firmware` is a
   * file, `'seabios'` (Debian's `/usr/share/seabios/bios.bin`) or the image's bytes (a multiple
   * of 4 KiB, at most 16 MiB). Then `client.pcPlatform(new PcPlatform())` gives it a PC.
   */
  loadFirmware(firmware: string | Uint8Array, options: { memMib?: number } = {}): { lowRamBytes: bigint; highRamBytes: bigint; romBase: bigint } {
    const memMib = options.memMib ?? 128;
    checkInt('memMib', memMib, 2, 65536);
    let image: Buffer;
    if (typeof firmware === 'string') {
      const path = firmware === 'seabios' ? SEABIOS_PATH : firmware;
      try {
        image = readFileSync(path);
      } catch (e) {
        const why = (e as NodeJS.ErrnoException).code ?? String(e);
        throw new AcrnHsmError('ERR_FIRMWARE', `${path}: ${why}${path === SEABIOS_PATH ? " (install Debian's seabios package: apt-get install seabios)" : ''}`);
      }
    } else if (firmware instanceof Uint8Array) {
      image = Buffer.from(firmware.buffer, firmware.byteOffset, firmware.byteLength);
    } else {
      throw new TypeError("firmware must be a file name, 'seabios' or a Uint8Array");
    }
    return callBinding(() => this.handle.loadFirmware(image, BigInt(memMib) << 20n));
  }
  /**
   * CREATE_IOREQ_CLIENT: the VM's (default) ioreq client, to which devices are added
   * (`client.pio/mmio/pci`) and which serves them (`client.run()` / `client.runSync()`).
   * `wake: 'poll'` busy-polls the ioreq page instead of sleeping in ATTACH.
   * `handlerTimeoutMs` (default 1000, `Infinity`: none): how long `run()` waits for a handler's
   * promise before completing the request (reads: all ones) with an `ERR_HANDLER_TIMEOUT` error.
   */
  createIoreqClient(options: { wake?: WakeMode; handlerTimeoutMs?: number; trace?: string } = {}): IoreqClient {
    const wake = options.wake ?? 'blocking';
    if (wake !== 'blocking' && wake !== 'poll') throw new TypeError(`wake must be 'blocking' or 'poll', got ${String(wake)}`);
    const handlerTimeoutMs = checkHandlerTimeout(options.handlerTimeoutMs);
    if (options.trace !== undefined && (typeof options.trace !== 'string' || options.trace === '')) {
      throw new TypeError('trace must be a non-empty file path');
    }
    return new IoreqClient(callBinding(() => this.handle.createClient(wake === 'poll')), { handlerTimeoutMs, trace: options.trace, vmDestroyed: () => this.#destroyed, memory: () => this.memory });
  }

  /** A token with which a worker thread opens this same VM: `Vm.fromShared(token)`. */
  share(): number {
    return this.handle.share();
  }

  /** The VM another thread shared with `vm.share()` (e.g. in a worker serving its devices). */
  static fromShared(token: number): Vm {
    checkU32('token', token);
    const handle = callBinding(() => native().VmHandle.fromShared(token));
    return new Vm(undefined, handle);
  }
  /** ATTACH_IOREQ_CLIENT: resolves when requests may be pending; rejects with ENODEV when the client is destroyed. */
  async attachIoreqClient(): Promise<void> {
    try {
      await this.handle.attachIoreqClient();
    } catch (err) {
      throw fromBindingError(err);
    }
  }
  /** ATTACH_IOREQ_CLIENT, blocking this thread (for a worker's synchronous loop). */
  attachIoreqClientSync(): void {
    callBinding(() => this.handle.attachIoreqClientSync());
  }
  destroyIoreqClient(): void {
    callBinding(() => this.handle.destroyIoreqClient());
  }
  notifyRequestFinish(vcpu: number): void {
    checkU32('vcpu', vcpu);
    callBinding(() => this.handle.notifyRequestFinish(vcpu));
  }
  clearVmIoreq(): void {
    callBinding(() => this.handle.clearVmIoreq());
  }
  /** IOEVENTFD: `fd` is an {@link EventFd} or a descriptor number. */
  ioeventfd(args: { fd: number | EventFd; flags: number; addr: bigint; len: number; data?: bigint }): void {
    if (typeof args !== 'object' || args === null) throw new TypeError('ioeventfd takes { fd, flags, addr, len, data? }');
    const fd = args.fd instanceof EventFd ? args.fd.fd : args.fd;
    checkFd(fd);
    checkU32('flags', args.flags);
    checkU64('addr', args.addr);
    checkU32('len', args.len);
    if (args.data !== undefined) checkU64('data', args.data);
    callBinding(() => this.handle.ioeventfd(fd, args.flags, args.addr, args.len, args.data ?? 0n));
  }
  /** IRQFD: `fd` is an {@link EventFd} or a descriptor number; each write injects the MSI. */
  irqfd(args: { fd: number | EventFd; flags: number; msiAddr: bigint; msiData: bigint }): void {
    if (typeof args !== 'object' || args === null) throw new TypeError('irqfd takes { fd, flags, msiAddr, msiData }');
    const fd = args.fd instanceof EventFd ? args.fd.fd : args.fd;
    checkFd(fd);
    checkU32('flags', args.flags);
    checkU64('msiAddr', args.msiAddr);
    checkU64('msiData', args.msiData);
    callBinding(() => this.handle.irqfd(fd, args.flags, args.msiAddr, args.msiData));
  }
  #memory: GuestMemory | undefined;
  /** The VM's RAM: the segments mapped with `mapRam` (see {@link GuestMemory}). */
  get memory(): GuestMemory {
    this.#memory ??= new GuestMemory(this.handle);
    return this.#memory;
  }
  /**
   * The interrupts that reached the guest (emulator): MSIs delivered (`msi`, per vCPU in
   * `delivered`), rising edges and levels per GSI, and those a `wait_irq` took (`taken`).
   */
  irqCounters(): ReturnType<VmHandle['irqCounters']> {
    return callBinding(() => this.handle.irqCounters());
  }
  injectMsi(msiAddr: bigint, msiData: bigint): void {
    checkU64('msiAddr', msiAddr);
    checkU64('msiData', msiData);
    callBinding(() => this.handle.injectMsi(msiAddr, msiData));
  }
  /**
   * SET_IRQLINE: `op` is 0 (set high), 1 (set low), 2 (raising pulse) or 3 (falling pulse), the
   * device model's GSI_SET_HIGH..GSI_FALLING_PULSE; the hypervisor ignores other values, so they
   * are refused here.
   */
  setIrqline(gsi: number, op: number): void {
    checkU32('gsi', gsi);
    checkU32('op', op);
    if (op > 3) {
      throw new RangeError(`setIrqline op ${op} is not 0 (set high), 1 (set low), 2 (raising pulse) or 3 (falling pulse): the hypervisor would ignore it`);
    }
    callBinding(() => this.handle.setIrqline(gsi, op));
  }
  /** SET_PTDEV_INTR: the hypervisor needs the VM created (not started), type INTx, a passed-through device at `virtBdf` backed by `physBdf`, and valid pins (else EPERM). */
  setPtdevIntr(irq: PtdevIrq): void {
    checkPtdevIrq(irq);
    callBinding(() => this.handle.setPtdevIntr(irq));
  }
  /** RESET_PTDEV_INTR (created or paused VM). */
  resetPtdevIntr(irq: PtdevIrq): void {
    checkPtdevIrq(irq);
    callBinding(() => this.handle.resetPtdevIntr(irq));
  }
  /** ASSIGN_PCIDEV: EINVAL unless the VM is created and not started; ENODEV for a device the hypervisor does not have, has passed through already, or cannot pass through (a bridge). */
  assignPcidev(dev: PciDev): void {
    checkPciDev(dev);
    callBinding(() => this.handle.assignPcidev(dev));
  }
  /** DEASSIGN_PCIDEV (created or paused VM; ENODEV when the VM has no such device). */
  deassignPcidev(dev: PciDev): void {
    checkPciDev(dev);
    callBinding(() => this.handle.deassignPcidev(dev));
  }
  /** ASSIGN_MMIODEV: EINVAL unless the VM is created and every resource is page aligned; a device with no resources is accepted. */
  assignMmiodev(dev: MmioDev): void {
    checkMmioDev(dev);
    callBinding(() => this.handle.assignMmiodev(dev));
  }
  /** DEASSIGN_MMIODEV (created or paused VM). */
  deassignMmiodev(dev: MmioDev): void {
    checkMmioDev(dev);
    callBinding(() => this.handle.deassignMmiodev(dev));
  }
  /** CREATE_VDEV: EINVAL unless the VM is created, the id is one the hypervisor emulates, and the slot is free. */
  createVdev(dev: Vdev): void {
    checkVdev(dev);
    callBinding(() => this.handle.createVdev(dev));
  }
  /** DESTROY_VDEV (created or paused VM; EINVAL when nothing is at the slot). */
  destroyVdev(dev: Vdev): void {
    checkVdev(dev);
    callBinding(() => this.handle.destroyVdev(dev));
  }
  /**
   * PM_GET_CPU_STATE with the raw command `vmid << 24 | vcpu << 16 | index << 8 | type`
   * (type 0 PX_CNT, 1 PX_DATA, 2 CX_CNT, 3 CX_DATA). The hypervisor takes the VM from the
   * command, not from this handle; an unknown type answers `{ kind: 'none' }`.
   */
  pmGetCpuState(cmd: bigint): PmState {
    checkU64('cmd', cmd);
    const r = callBinding(() => this.handle.pmGetCpuState(cmd));
    switch (r.kind) {
      case 'count':
        return { kind: 'count', count: r.count ?? 0 };
      case 'pstate':
        return { kind: 'pstate', pstate: r.pstate ?? [] };
      case 'cstate':
        return { kind: 'cstate', cstateType: r.cstateType ?? 0, latency: r.latency ?? 0, power: r.power ?? 0n, address: r.address ?? 0n };
      default:
        return { kind: 'none' };
    }
  }
  /** VM_INTR_MONITOR (GET_DATA): the `(irq, count)` pairs of the VM's passed-through interrupts. */
  intrMonitorData(): { irq: bigint; count: bigint }[] {
    return callBinding(() => this.handle.intrMonitorData());
  }
}

function checkObject(what: string, v: unknown): asserts v is object {
  if (typeof v !== 'object' || v === null) throw new TypeError(`${what} must be an object`);
}

function checkPtdevIrq(irq: PtdevIrq): void {
  checkObject('a ptdev irq', irq);
  if (irq.type !== undefined) checkU32('type', irq.type);
  checkU32('virtBdf', irq.virtBdf);
  checkU32('physBdf', irq.physBdf);
  checkU32('virtPin', irq.virtPin);
  checkU32('physPin', irq.physPin);
}

function checkPciDev(dev: PciDev): void {
  checkObject('a PCI device', dev);
  if (dev.type !== undefined) checkU32('type', dev.type);
  checkU32('virtBdf', dev.virtBdf);
  checkU32('physBdf', dev.physBdf);
  if (dev.bar !== undefined) {
    if (!Array.isArray(dev.bar) || dev.bar.length > 6) throw new TypeError('bar must be an array of at most 6 numbers');
    dev.bar.forEach((b, i) => checkU32(`bar[${i}]`, b));
  }
}

function checkMmioDev(dev: MmioDev): void {
  checkObject('an MMIO device', dev);
  if (!Array.isArray(dev.res) || dev.res.length > 3) throw new TypeError('res must be an array of at most 3 resources');
  for (const r of dev.res) {
    checkObject('a resource', r);
    checkU64('userVmPa', r.userVmPa);
    checkU64('hostPa', r.hostPa);
    checkU64('size', r.size);
    if (r.memType !== undefined) checkU64('memType', r.memType);
  }
}

function checkVdev(dev: Vdev): void {
  checkObject('a vdev', dev);
  checkU32('vendor', dev.vendor);
  checkU32('device', dev.device);
  checkU32('slot', dev.slot);
  if (dev.legacyId !== undefined) checkU32('legacyId', dev.legacyId);
  if (dev.args !== undefined && !(dev.args instanceof Uint8Array)) throw new TypeError('args must be a Uint8Array');
}

function checkMemseg(map: Memseg): void {
  if (typeof map !== 'object' || map === null) throw new TypeError('a memseg is { type, attr, userVmPa, vmaBase, len }');
  checkU32('type', map.type);
  checkU32('attr', map.attr);
  checkU64('userVmPa', map.userVmPa);
  checkU64('vmaBase', map.vmaBase);
  checkU64('len', map.len);
}

/** What {@link traceWorkload} makes of a trace file. */
export interface TraceWorkload {
  /** The workload: every recorded request of each vCPU, in order; reads carry `expect`. */
  workload: Workload;
  /** The trace's vCPU count (the workload's lists): create the VM with at least this many. */
  vcpus: number;
  /** The trace VM's completion mode (create the replaying VM the same way to compare timing). */
  completion: 'polling' | 'notify';
  /** Records read. */
  records: number;
  /** Records that could not be issued again (malformed, a size the type does not allow). */
  skipped: number;
  /** Reads the guest checks against the recorded value. */
  checkedReads: number;
  /** Phase barriers (instants with nothing in flight followed by silence) put in each list. */
  phases: number;
}

/** Options of {@link traceWorkload}. */
export interface TraceWorkloadOptions {
  /** Keep each vCPU's idle time between requests (`delay_ns` ops); default false. */
  pace?: boolean;
  /** With `pace`, the longest idle time kept, in ms (default 1000). */
  maxGapMs?: number;
}

/**
 * Reads a trace file (`client.record(...)`, `acrn-hsm demo --trace`, `acrn-hsm run --trace`) and
 * makes the guest workload that issues its requests again: same vCPU, type, address, size and
 * direction, writes with the recorded value, reads checked against the recorded value (the
 * rules of `acrn-hsm trace replay`). Run it with `hsm.guest(vm).run(tw.workload)` (or
 * {@link Guest.replay}) against your own devices: a read your device answers differently is a
 * `mismatches` entry of the result. Native only (the file is read by the addon).
 */
export function traceWorkload(path: string, options: TraceWorkloadOptions = {}): TraceWorkload {
  if (typeof path !== 'string' || path === '') throw new TypeError('traceWorkload(path): path must be a non-empty string');
  if (options.pace !== undefined && typeof options.pace !== 'boolean') throw new TypeError('pace must be a boolean');
  if (options.maxGapMs !== undefined && (typeof options.maxGapMs !== 'number' || !(options.maxGapMs >= 0))) {
    throw new RangeError(`maxGapMs must be a non-negative number of milliseconds, got ${String(options.maxGapMs)}`);
  }
  const info = callBinding(() => native().traceWorkloadFile(path, options));
  return {
    workload: JSON.parse(info.workloadJson) as Workload,
    vcpus: info.vcpus,
    completion: info.polling ? 'polling' : 'notify',
    records: info.records,
    skipped: info.skipped,
    checkedReads: info.checkedReads,
    phases: info.phases,
  };
}

/** The guest of an emulated VM. */
export class Guest {
  readonly vm: Vm;

  /** @internal */
  constructor(vm: Vm) {
    this.vm = vm;
  }

  /**
   * Replays a trace file against the devices this VM's client serves now: the requests of
   * {@link traceWorkload}, each read checked against the recorded value (a device that answers
   * otherwise shows up in `mismatches`). The VM needs at least the trace's vCPU count.
   */
  async replay(path: string, options: TraceWorkloadOptions = {}): Promise<RunResult & { trace: Omit<TraceWorkload, 'workload'> }> {
    const { workload, ...trace } = traceWorkload(path, options);
    if (trace.vcpus > this.vm.vcpuNum) {
      throw new AcrnHsmError('ERR_INVALID_ARG', `the trace has ${trace.vcpus} vCPU(s), the VM ${this.vm.vcpuNum}: create the VM with vcpuNum >= ${trace.vcpus}`);
    }
    const result = await this.run(workload);
    return { ...result, trace };
  }

  /** Runs a workload on the vCPUs; resolves when every vCPU has finished or stopped. */
  async run(workload: Workload): Promise<RunResult> {
    const json = workloadJson(workload);
    try {
      return (await callBinding(() => this.vm.handle.runGuest(json))) as RunResult;
    } catch (err) {
      const lists = workload.vcpus.length;
      throw withAdvice(fromBindingError(err), {
        EPERM: this.vm.destroyed
          ? 'the VM was destroyed: create a new one'
          : 'the VM is not running: call vm.start() first (after setMemseg/setVcpuRegs and creating the ioreq client)',
        EINVAL:
          lists > this.vm.vcpuNum
            ? `the workload has ${lists} vCPU lists but the VM ${this.vm.vcpuNum} vCPU(s) (createVm's vcpuNum)`
            : 'the workload does not fit the VM (see the message)',
      });
    }
  }
}
