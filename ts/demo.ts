/**
 * The demo: a User VM on the emulator whose devices are a native 16550 UART, a native register
 * file, a native PCI function probed through 0xCF8/0xCFC and — served from TypeScript — a small
 * MMIO device; a guest workload on every vCPU checks each value it reads back, and a sequencer
 * checks that every request reached its device exactly once.
 */
import { callBinding, fromBindingError } from './errors.js';
import { native } from './native.js';

/** Options of {@link runDemo}. */
export interface DemoOptions {
  /** vCPUs, 1 to 16 (default 4). */
  vcpus?: number;
  /** Requests per vCPU in the random phase (default 10000). */
  requestsPerVcpu?: number;
  /** Stop after this many seconds even if requests remain. */
  seconds?: number;
  /** `'notify'`: the vCPU sleeps until NOTIFY, the client blocks in ATTACH (default);
   *  `'poll'`: a polling VM served by a busy-polling client. */
  mode?: 'notify' | 'poll';
  /** Workload seed (default 1). */
  seed?: number;
  /** Milliseconds between progress reports (default 200). */
  progressMs?: number;
  /** Serve the TypeScript device (default true). */
  tsDevice?: boolean;
  /** Record every request into a trace file at this path (`docs/trace-format.md`). */
  trace?: string;
}

/** What a recorded trace holds ({@link DemoSummary.trace}). */
export interface DemoTraceSummary {
  /** Records written: one per issued request. */
  records: number;
  /** Records joining the client's stages with the guest's. */
  joined: number;
  /** Requests the HSM completed in the kernel (device "hsm (in kernel)"). */
  in_kernel: number;
  /** Client records without a guest request. */
  client_only: number;
  /** Guest requests without a client record (stopped, cleared, or its client record dropped). */
  guest_only: number;
  /** Records dropped, not written (the trace writer fell behind); 0 in a complete trace. */
  dropped: number;
  /** CPU time the trace writer thread used, in ns. */
  writer_cpu_ns: number;
}

/** Per-device counters. */
export interface DeviceProgress {
  name: string;
  reads: number;
  writes: number;
}

/** A progress snapshot. */
export interface DemoProgress {
  elapsed_ms: number;
  handled: number;
  planned: number;
  devices: DeviceProgress[];
  /** UART output since the previous snapshot. */
  uart_new: string;
}

/** The demo's result. */
export interface DemoSummary {
  vcpus: number;
  mode: 'notify' | 'poll';
  issued: number;
  completed: number;
  mismatches: number;
  lost: number;
  duplicated: number;
  faults: number;
  elapsed_ms: number;
  rate: number;
  latency_ns: { p50: number; p99: number; p999: number; max: number };
  uart_output: string;
  devices: DeviceProgress[];
  client: Record<string, number>;
  samples: string[];
  /** Present when the run was recorded (`trace` option). */
  trace: DemoTraceSummary | null;
}

/** The TypeScript device of the demo: a scratch register at +0 and an ID register at +4. */
export class ScratchDevice {
  static readonly ID = 0x5453_4456n; // "TSDV"
  private readonly regs = new Map<number, bigint>();
  reads = 0;
  writes = 0;

  read(offset: number, _size: number): bigint {
    this.reads++;
    return offset === 4 ? ScratchDevice.ID : (this.regs.get(offset) ?? 0n);
  }

  write(offset: number, _size: number, value: bigint): void {
    this.writes++;
    if (offset !== 4) this.regs.set(offset, value);
  }
}

/** Whether a summary shows every request completed exactly once with the expected value. */
export function isClean(s: DemoSummary): boolean {
  return s.issued === s.completed && s.mismatches === 0 && s.lost === 0 && s.duplicated === 0 && s.faults === 0;
}

/** Runs the demo; `onProgress` is called with snapshots while it runs. */
export async function runDemo(
  options: DemoOptions = {},
  onProgress: (p: DemoProgress) => void = () => {},
  device: ScratchDevice | undefined = options.tsDevice === false ? undefined : new ScratchDevice(),
): Promise<DemoSummary> {
  const { tsDevice: _ignored, ...rest } = options;
  const serve = device
    ? (a: { write: boolean; offset: number; size: number; value: bigint }): bigint => {
        if (a.write) {
          device.write(a.offset, a.size, a.value);
          return 0n;
        }
        return device.read(a.offset, a.size);
      }
    : undefined;
  try {
    const json = await callBinding(() =>
      native().runDemo(rest, (p: string) => onProgress(JSON.parse(p) as DemoProgress), serve),
    );
    return JSON.parse(json) as DemoSummary;
  } catch (err) {
    throw fromBindingError(err);
  }
}
