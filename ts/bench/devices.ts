/**
 * The benchmark's devices and workload, the same as the C reference client's
 * (`benches/c/reference_client.c`) and the native path's (`crates/acrn-hsm-node/src/bench.rs`):
 * 64 registers of 8 bytes at 0xfed00000 and a constant port at 0x510; per vCPU,
 * `repeat k × [MMIO write of its register, MMIO read of it expecting the value, PIO read of the
 * constant port expecting the constant]`.
 */
import type { IoreqClient } from '../client.js';
import type { Workload } from '../hsm.js';

export const REGFILE_BASE = 0xfed0_0000n;
export const CONST_PORT = 0x510;
export const CONST_VALUE = 0x5a5a_1234;
export const VALUE_BASE = 0x1122_3344_5566_7700n;
/** Requests per round per vCPU. */
export const REQUESTS_PER_ROUND = 3;

/** Registers the TypeScript devices on `client`; `count` counts the requests they served. */
export function benchDevices(client: IoreqClient): { count: number } {
  const served = { count: 0 };
  const regs = new BigUint64Array(64);
  client
    .mmio(REGFILE_BASE, 64n * 8n, {
      read(offset) {
        served.count++;
        return regs[offset >> 3] ?? 0n;
      },
      write(offset, _size, value) {
        served.count++;
        regs[offset >> 3] = BigInt(value);
      },
    })
    .pio(CONST_PORT, 4, {
      read() {
        served.count++;
        return CONST_VALUE;
      },
      write() {
        served.count++;
      },
    });
  return served;
}

/** `rounds` rounds on each of `vcpus` vCPUs. */
export function benchWorkload(vcpus: number, rounds: number): Workload {
  const list = [];
  for (let v = 0; v < vcpus; v++) {
    const reg = REGFILE_BASE + 8n * BigInt(v);
    const val = VALUE_BASE + BigInt(v);
    list.push([
      {
        repeat: rounds,
        ops: [
          { mmio: reg, size: 8, write: val },
          { mmio: reg, size: 8, read: true, expect: val },
          { pio: CONST_PORT, size: 4, read: true, expect: CONST_VALUE },
        ],
      },
    ]);
  }
  return { vcpus: list } as Workload;
}
