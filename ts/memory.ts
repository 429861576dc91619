/**
 * Guest memory seen from a device backend ({@link GuestMemory}, `vm.memory`) and eventfds
 * ({@link EventFd}). The map, the bounds checks and the zero-copy mappings are the Rust core's.
 */
import { checkU32, checkU64 } from './check.js';
import { AcrnHsmError, callBinding, fromBindingError } from './errors.js';
import { native } from './native.js';
import type { NativeBinding } from './native.js';

type VmHandle = InstanceType<NativeBinding['VmHandle']>;
type NativeEventFd = InstanceType<NativeBinding['EventFdHandle']>;

/** A guest-physical range outside mapped RAM (or, for `view()`, across two segments). */
export class GuestMemoryRangeError extends RangeError {
  readonly code = 'ERR_GPA_RANGE';
  /** The first GPA asked for. */
  readonly gpa: bigint;
  /** The length asked for. */
  readonly length: number;

  constructor(message: string, gpa: bigint, length: number, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'GuestMemoryRangeError';
    this.gpa = gpa;
    this.length = length;
  }
}

/** One RAM segment: `[gpa, gpa + length)`. */
export interface MemorySegment {
  gpa: bigint;
  length: bigint;
}

function checkBytes(bytes: unknown): asserts bytes is Uint8Array {
  if (!(bytes instanceof Uint8Array)) throw new TypeError('bytes must be a Uint8Array');
}

/**
 * The RAM of a VM as its device model sees it: every `vm.mapRam` (or `setMemseg` of RAM from
 * `Hsm.allocPages`) adds a segment. Reads and writes copy (and may cross adjacent segments);
 * `view()` maps the RAM into a `Buffer` without a copy. The guest may change its memory at any
 * time: a view shows it as it is now, a copy as it was.
 */
export class GuestMemory {
  /** @internal */
  readonly #vm: VmHandle;

  /** @internal */
  constructor(vm: VmHandle) {
    this.#vm = vm;
  }

  #call<T>(gpa: bigint, length: number, fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      const e = fromBindingError(err);
      if (e instanceof AcrnHsmError && e.code === 'ERR_GPA_RANGE') throw new GuestMemoryRangeError(e.message, gpa, length, { cause: e });
      throw e;
    }
  }

  /** A copy of `length` bytes at `gpa`. */
  read(gpa: bigint, length: number): Buffer {
    checkU64('gpa', gpa);
    checkU32('length', length);
    return this.#call(gpa, length, () => this.#vm.memoryRead(gpa, length));
  }

  /** Copies `bytes` to `gpa`. */
  write(gpa: bigint, bytes: Uint8Array): void {
    checkU64('gpa', gpa);
    checkBytes(bytes);
    this.#call(gpa, bytes.length, () => this.#vm.memoryWrite(gpa, bytes));
  }

  /**
   * A `Buffer` over `[gpa, gpa + length)` of one segment without a copy: it sees the guest's
   * later writes and what is written to it is the guest's memory. It keeps the memory mapped
   * while referenced. Make it once and keep it (each view is a new mapping).
   */
  view(gpa: bigint, length: number): Buffer {
    checkU64('gpa', gpa);
    checkU32('length', length);
    if (length === 0) throw new RangeError('a view is at least 1 byte');
    return this.#call(gpa, length, () => this.#vm.memoryView(gpa, length));
  }

  /** The little-endian u32 at `gpa`. */
  readU32(gpa: bigint): number {
    return this.read(gpa, 4).readUInt32LE(0);
  }
  /** The little-endian u64 at `gpa`. */
  readU64(gpa: bigint): bigint {
    return this.read(gpa, 8).readBigUInt64LE(0);
  }
  /** Writes `value` as a little-endian u32 at `gpa`. */
  writeU32(gpa: bigint, value: number): void {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(value);
    this.write(gpa, b);
  }
  /** Writes `value` as a little-endian u64 at `gpa`. */
  writeU64(gpa: bigint, value: bigint): void {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(value);
    this.write(gpa, b);
  }

  /** The RAM segments, sorted by GPA. */
  segments(): MemorySegment[] {
    return callBinding(() => this.#vm.memorySegments());
  }
}

/**
 * A Linux eventfd: a 64-bit counter behind a file descriptor, what `vm.ioeventfd` (a doorbell
 * the guest rings without a round trip through the ioreq client) and `vm.irqfd` (an interrupt
 * raised by a write) take.
 */
export class EventFd {
  /** @internal */
  readonly handle: NativeEventFd;

  /** A new eventfd with counter `initial` (`semaphore`: each read takes 1). */
  constructor(options: { initial?: number; semaphore?: boolean } = {}) {
    if (options.initial !== undefined) checkU32('initial', options.initial);
    this.handle = callBinding(() => new (native().EventFdHandle)(options.initial, options.semaphore));
  }

  /** The descriptor (-1 once closed). */
  get fd(): number {
    return this.handle.fd;
  }

  /** Adds `n` (default 1) to the counter. */
  write(n: bigint = 1n): void {
    checkU64('n', n);
    callBinding(() => this.handle.write(n));
  }

  /** Takes the counter; `null` when it is zero (never blocks). */
  read(): bigint | null {
    return callBinding(() => this.handle.read());
  }

  /** Resolves when the counter is nonzero, with its value (taken); `null` if closed first. */
  async wait(): Promise<bigint | null> {
    try {
      return await callBinding(() => this.handle.wait());
    } catch (err) {
      throw fromBindingError(err);
    }
  }

  /** Closes it; a pending `wait()` resolves with `null`. */
  close(): void {
    this.handle.close();
  }
}
