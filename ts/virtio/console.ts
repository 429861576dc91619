import type { VirtioChain, VirtioDevice } from './types.js';
import { scatter } from './types.js';

/**
 * virtio-console (device ID 3) in TypeScript, one port, no features: queue 0 (receiveq) takes
 * the input pushed with {@link pushInput}, queue 1 (transmitq) gives what the guest prints to
 * `output` (default: `process.stdout`). A receive chain waits (its promise pending) until input
 * is there; input that finds no chain waits for one.
 */
export class TsVirtioConsole implements VirtioDevice {
  readonly name = 'ts-console';
  readonly deviceId = 3;
  readonly features = 0n;
  /** cols, rows, max_nr_ports, emerg_wr: not offered (no feature bits), all 0. */
  readonly config = new Uint8Array(12);
  readonly queues = [64, 64];
  private readonly output: (data: Buffer) => void;
  private input: Buffer[] = [];
  private readers: { chain: VirtioChain; done: (n: number) => void }[] = [];

  constructor(options: { output?: (data: Buffer) => void } = {}) {
    this.output = options.output ?? ((d) => process.stdout.write(d));
  }

  request(queue: number, chain: VirtioChain): number | Promise<number> {
    if (queue === 1) {
      // The views are copied: the chain goes back to the driver when this returns.
      const data = Buffer.concat(chain.readable);
      if (data.length > 0) this.output(data);
      return 0;
    }
    if (queue !== 0) return 0;
    return new Promise<number>((done) => {
      this.readers.push({ chain, done });
      this.pump();
    });
  }

  /** Queues bytes for the guest to receive. */
  pushInput(data: string | Uint8Array): void {
    const b = typeof data === 'string' ? Buffer.from(data) : Buffer.from(data);
    if (b.length > 0) this.input.push(b);
    this.pump();
  }

  /** Receive chains waiting for input (after dropping those a reset made stale). */
  get waitingReaders(): number {
    this.readers = this.readers.filter((r) => r.chain.alive() || (r.done(0), false));
    return this.readers.length;
  }

  private pump(): void {
    while (this.input.length > 0 && this.readers.length > 0) {
      const r = this.readers.shift()!;
      // A chain from before a reset: its buffers are not the driver's any more.
      if (!r.chain.alive()) {
        r.done(0);
        continue;
      }
      let n = 0;
      while (this.input.length > 0) {
        const head = this.input[0]!;
        const k = scatter(r.chain.writable, n, head);
        n += k;
        if (k < head.length) {
          this.input[0] = head.subarray(k);
          break;
        }
        this.input.shift();
      }
      r.done(n);
    }
  }
}
