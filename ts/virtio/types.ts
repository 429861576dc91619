/**
 * virtio devices written in TypeScript over the core's modern virtio-pci transport: the core
 * owns the configuration space, BAR 4, negotiation, the split virtqueues (with their checks
 * against a malicious driver) and the interrupts; a device declares its identity and serves
 * descriptor chains, whose buffers it gets as zero-copy views of guest memory.
 */

/** One descriptor chain handed to {@link VirtioDevice.request}. */
export interface VirtioChain {
  /** The chain's head index (what the used element names). */
  readonly head: number;
  /** The device-readable buffers, in chain order: views of guest memory (read them). */
  readonly readable: Buffer[];
  /** The device-writable buffers, in chain order: views of guest memory (write into them). */
  readonly writable: Buffer[];
  /**
   * Whether the chain still belongs to the driver's current queue: false once it completed, or
   * once the device was reset since it was handed out (its views then point at memory the
   * driver may use for something else: a device holding chains checks before writing).
   */
  alive(): boolean;
}

/**
 * A virtio device served in TypeScript, registered with `client.virtio(bus, device, fn, dev)`.
 *
 * `request` returns the bytes written into the chain's writable buffers (the used element's
 * `len`), or a promise of it: promises may settle in any order, each chain completes when its
 * own does (with `client.run()`; `runSync()` never runs the event loop while serving). A
 * request that throws or rejects, or returns something other than a u32, completes its chain
 * with 0 bytes written and is reported on the client's `'error'` event (`err.chain` says which):
 * the driver sees a request that wrote nothing (its status byte untouched), the device stays up.
 *
 * The views are valid until the chain is completed: do not keep them. A device reset drops the
 * chains in flight (their completions are ignored); a device that holds chains for a while
 * (virtio-console's receive queue) checks `chain.alive()` before writing into their views.
 */
export interface VirtioDevice {
  /** A short name (`virtio-<name>` in errors and traces). */
  readonly name?: string;
  /** The virtio device ID (1 network, 2 block, 3 console, 4 entropy...): PCI device 0x1040 + it. */
  readonly deviceId: number;
  /** Device-type feature bits offered (the transport adds VERSION_1, INDIRECT_DESC, RING_EVENT_IDX). */
  readonly features: bigint;
  /** The device configuration space (at most 4096 bytes; driver writes land in the core's copy). */
  readonly config: Uint8Array;
  /** The maximum size of each queue (powers of two up to 32768), one entry per queue. */
  readonly queues: readonly number[];
  /** Serves one chain of `queue`; returns the bytes written into its writable buffers. */
  request(queue: number, chain: VirtioChain): number | Promise<number>;
}

/** Bytes `offset..offset + out.length` of the concatenated `bufs` into `out`; returns how many there were. */
export function gather(bufs: readonly Buffer[], offset: number, out: Uint8Array): number {
  let done = 0;
  let skip = offset;
  for (const b of bufs) {
    if (done === out.length) break;
    if (skip >= b.length) {
      skip -= b.length;
      continue;
    }
    const n = Math.min(b.length - skip, out.length - done);
    out.set(b.subarray(skip, skip + n), done);
    done += n;
    skip = 0;
  }
  return done;
}

/** Writes `data` into the concatenated `bufs` from `offset`; returns how many bytes fit. */
export function scatter(bufs: readonly Buffer[], offset: number, data: Uint8Array): number {
  let done = 0;
  let skip = offset;
  for (const b of bufs) {
    if (done === data.length) break;
    if (skip >= b.length) {
      skip -= b.length;
      continue;
    }
    const n = Math.min(b.length - skip, data.length - done);
    b.set(data.subarray(done, done + n), skip);
    done += n;
    skip = 0;
  }
  return done;
}

/** The total length of `bufs`. */
export function totalLength(bufs: readonly Uint8Array[]): number {
  let n = 0;
  for (const b of bufs) n += b.length;
  return n;
}
