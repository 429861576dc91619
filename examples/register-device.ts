/**
 * An MMIO register block written in TypeScript: an ID register, a scratch register, a counter
 * that increments on every read, and a 64-bit doorbell. Two vCPUs use it at once and check every
 * value they read back.
 *
 *   npm run build && node dist-examples/register-device.js
 */
import { Hsm, type Device, type ServedRequest } from 'acrn-hsm';

export const BASE = 0xfed4_0000n;

/** The registers, by offset. */
class RegisterBlock implements Device {
  readonly name = 'ts-registers';
  private scratch = [0n, 0n];
  private counter = 0;
  doorbells = 0n;

  read(offset: number, size: number): bigint {
    switch (offset & ~0x7) {
      case 0x00: return 0x4143_524e_5453_0001n; // "ACRNTS" + version 1
      case 0x08: return this.scratch[0]!;
      case 0x10: return this.scratch[1]!;
      case 0x18: return BigInt(++this.counter);
      default: throw new RangeError(`no register at +0x${offset.toString(16)} (size ${size})`);
    }
  }

  write(offset: number, _size: number, value: number | bigint): void {
    const v = BigInt(value);
    switch (offset) {
      case 0x08: this.scratch[0] = v; break;
      case 0x10: this.scratch[1] = v; break;
      case 0x20: this.doorbells += v; break;
      default: throw new RangeError(`register +0x${offset.toString(16)} is read-only or absent`);
    }
  }
}

export async function main(log: (s: string) => void = console.log) {
  const hsm = Hsm.emulated();
  const vm = hsm.createVm({ vcpuNum: 2 });
  const client = vm.createIoreqClient();
  const regs = new RegisterBlock();
  const errors: ServedRequest[] = [];
  client.on('error', (err: Error & { request: ServedRequest }) => errors.push(err.request));
  client.mmio(BASE, 0x100n, regs);
  vm.start();
  const serving = client.run();
  const vcpu = (i: number) => [
    { mmio: BASE, size: 8, read: true, expect: 0x4143_524e_5453_0001n },
    { repeat: 100, ops: [
      { mmio: BASE + 0x08n + BigInt(i * 8), size: 8, write: 0x1111_2222_3333_4444n * BigInt(i + 1) },
      { mmio: BASE + 0x08n + BigInt(i * 8), size: 8, read: true, expect: 0x1111_2222_3333_4444n * BigInt(i + 1) },
      { mmio: BASE + 0x20n, size: 4, write: 1 },
    ] },
    // An absent register: the handler throws, the guest reads all ones, the client goes on.
    { mmio: BASE + 0x80n, size: 4, read: true, expect: 0xffff_ffff },
  ];
  const r = await hsm.guest(vm).run({ vcpus: [vcpu(0), vcpu(1)] });
  client.stop();
  await serving;
  log(`guest: ${r.issued} requests, ${r.mismatches.length} wrong values; doorbells rung ${regs.doorbells} times`);
  log(`handler errors reported: ${errors.length} (${errors.map((e) => `${e.direction} +0x${e.offset.toString(16)}`).join(', ')})`);
  const c = client.counters;
  log(`client: ${c.js} requests to TypeScript in ${c.batches} batches (largest ${c.maxBatch})`);
  return { result: r, doorbells: regs.doorbells, errors };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await main();
}
