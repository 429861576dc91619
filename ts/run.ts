/**
 * Real guests: firmware (SeaBIOS) or a raw payload on the emulated hypervisor's KVM engine,
 * behind the ACRN ABI. Every PIO/MMIO exit of the guest becomes an ACRN I/O request served by a
 * PC platform written with the public device API (host bridge, CMOS, fw_cfg, i8042, COM1 with
 * IRQ 4 through SET_IRQLINE, isa-debug-exit, debugcon; optionally a virtio-blk disk and
 * virtio-rng). The scenario is the Rust core's
 * `acrn_hsm::run`; this is its TypeScript face.
 */
import { callBinding, fromBindingError } from './errors.js';
import { native } from './native.js';

/** Options of {@link runGuest}. */
export interface RunGuestOptions {
  /** Firmware image path, or `'seabios'` (Debian's `/usr/share/seabios/bios.bin`, the default). */
  bios?: string;
  /** A raw binary loaded instead of firmware, run in real mode from {@link rawAddr}. */
  raw?: string;
  /** A Linux bzImage (boot protocol ≥ 2.06, 64-bit entry) loaded instead of firmware. */
  kernel?: string;
  /** Its initrd (an uncompressed cpio boots fastest under emulation). */
  initrd?: string;
  /** Its command line (default `console=ttyS0`). */
  cmdline?: string;
  /** Guest-physical load address of {@link raw} (default 0x1000, below 1 MiB). */
  rawAddr?: number;
  /** RAM in MiB (default 128). */
  memMib?: number;
  /** vCPUs (default 1). */
  vcpus?: number;
  /** `'notify'` (default): the vCPU sleeps until NOTIFY; `'poll'`: a polling VM and client. */
  mode?: 'notify' | 'poll';
  /** The isa-debug-exit port (default 0xf4; 0: none). */
  debugExit?: number;
  /** File receiving what the guest writes to debugcon (port 0x402). */
  debugcon?: string;
  /** Record every request into this trace file (`acrn-hsm trace report FILE`). */
  trace?: string;
  /** End the run after this many seconds. */
  timeout?: number;
  /** COM1 on the terminal: output to stdout, stdin to RX, Ctrl-A x quits (default true). */
  terminal?: boolean;
  /** End the run once COM1 has printed this text. */
  untilSerial?: string;
  /** A disk image attached as virtio-blk (modern virtio-pci at 00:03.0); SeaBIOS boots it. */
  disk?: string;
  /** Attach {@link disk} read-only (VIRTIO_BLK_F_RO: writes answer IOERR). */
  diskReadOnly?: boolean;
  /**
   * How the disk's queue notifications arrive: `'kvm'` (default: IOEVENTFD, matched by KVM
   * itself, no VM exit), `'hsm'` (IOEVENTFD through the HSM's in-kernel ioeventfd client, one
   * exit each), `'ioreq'` (an I/O request to the ioreq client each).
   */
  diskNotify?: 'kvm' | 'hsm' | 'ioreq';
  /** Attach a virtio-rng device (00:04.0). */
  rng?: boolean;
}

/** How a run went. */
export interface RunGuestReport {
  /** How it ended. */
  end: 'debug-exit' | 'guest-exit' | 'timeout' | 'quit' | 'serial-match' | 'client-stopped';
  /** The same, in words. */
  reason: string;
  /** For `'guest-exit'`: the vCPU's own exit (triple fault, emulation failure), with its RIP. */
  guestExit: string | null;
  /** `(v << 1) | 1` after a debug exit of v; 0 for Ctrl-A x or a serial match; 124 time-out; 2 guest exit or client failure. */
  status: number;
  /** Everything COM1 transmitted. */
  serial: string;
  /** Bytes written to debugcon. */
  debugconBytes: number;
  elapsedMs: number;
  /** The KVM engine: exits, requests issued and completed (exactly once), faults, starts, interrupts. */
  kvm: { exits: number; issued: number; hvHandled: number; completed: number; faults: number; starts: number; irqs: number };
  /** The ioreq client's counters. */
  client: Record<string, number>;
  /** Resets the guest asked for (each done the device model's way). */
  resets: number;
  /** COM1 interrupt pulses sent through SET_IRQLINE. */
  uartIrqs: number;
  /** Records in the trace, if one was written. */
  traceRecords: number | null;
  /** The virtio-blk transport's counters when a disk was attached: notifications, chains completed, interrupts sent, times it went to DEVICE_NEEDS_RESET, and the ioeventfd worker's wake-ups (`null` with `diskNotify: 'ioreq'`). */
  virtioBlk: { notifies: number; chains: number; interrupts: number; needsReset: number; ioeventfdWakeups: number | null } | null;
}

/** The execution engines of the emulated hypervisor on this machine. */
export interface EnginesInfo {
  workload: { usable: boolean; reason: string };
  kvm: { usable: boolean; reason: string; apiVersion: number; maxVcpus: number };
}

/** Which engines can run here (the KVM engine needs a usable `/dev/kvm`). */
export function engines(): EnginesInfo {
  return JSON.parse(callBinding(() => native().enginesInfo())) as EnginesInfo;
}

/**
 * Runs a real guest on the KVM engine to its end (debug exit, the guest stopping on its own,
 * Ctrl-A x, the time-out). Rejects with `ERR_RUN` when KVM is missing or refuses.
 */
export async function runGuest(options: RunGuestOptions = {}): Promise<RunGuestReport> {
  let json: string;
  try {
    json = await callBinding(() => native().runGuest(options));
  } catch (err) {
    throw fromBindingError(err);
  }
  return JSON.parse(json) as RunGuestReport;
}

/**
 * A disk for checking a virtio-blk backend end to end (1 MiB): booted by SeaBIOS, its boot
 * sector reads sectors 1–3 through the BIOS disk service (int 13h AH=02h and AH=42h, so through
 * the firmware's virtio-blk driver and the device under test), prints `texts` on COM1 one per
 * line and writes 0x10 to isa-debug-exit: `exitStatus` (33) when every read succeeded, 35 when
 * one failed.
 */
export function bootTestDisk(): { image: Buffer; texts: string[]; exitStatus: number } {
  return native().bootTestDisk();
}
