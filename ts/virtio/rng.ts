import { randomFillSync } from 'node:crypto';
import type { VirtioChain, VirtioDevice } from './types.js';

/** virtio-rng (device ID 4) in TypeScript: each writable buffer filled from `node:crypto`. */
export class TsVirtioRng implements VirtioDevice {
  readonly name = 'ts-rng';
  readonly deviceId = 4;
  readonly features = 0n;
  readonly config = new Uint8Array(0);
  readonly queues = [64];
  /** Bytes handed out. */
  bytes = 0;

  request(_queue: number, chain: VirtioChain): number {
    let n = 0;
    for (const b of chain.writable) {
      randomFillSync(b);
      n += b.length;
    }
    this.bytes += n;
    return n;
  }
}
