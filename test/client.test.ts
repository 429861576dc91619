// TypeScript device backends over the Rust client: the async loop, the synchronous loop in a
// worker, native devices beside TS ones, handler faults and boundary checks.
import { Worker } from 'node:worker_threads';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AcrnHsmError, Hsm, PciFunction, RegisterFile, Uart16550, type ServedRequest } from '../dist/index.js';

/** A TS register block: 32-bit scratch registers, an ID register at +0x10. */
class Regs {
  readonly name = 'ts-regs';
  private readonly r = new Map<number, bigint>();
  read(offset: number): bigint {
    return (offset & 0xff) === 0x10 ? 0xfeedn : (this.r.get(offset) ?? 0n);
  }
  write(offset: number, _size: number, value: number | bigint): void {
    this.r.set(offset, BigInt(value));
  }
}

function vmWithClient(vcpuNum: number, wake: 'blocking' | 'poll' = 'blocking') {
  const hsm = Hsm.emulated();
  const vm = hsm.createVm({ vcpuNum, vmFlag: wake === 'poll' ? 1n << 2n : 0n });
  const client = vm.createIoreqClient({ wake });
  return { hsm, vm, client };
}

const regOps = (base: bigint, n: number) => [
  { repeat: n, ops: [
    { mmio: base, size: 4, write: 0x1234_5678 },
    { mmio: base, size: 4, read: true, expect: 0x1234_5678 },
    { mmio: base + 0x10n, size: 2, read: true, expect: 0xfeed },
    { pio: 0x3fd, size: 1, read: true, expect: 0x60 }, // native UART: LSR THRE|TEMT
    { pio: 0x510, size: 4, read: true, expect: 0xabcd },
  ] },
];

/** Serves the shared suite's devices with the main-thread loop or the worker's synchronous loop. */
async function serveSuite(loop: 'async' | 'worker', wake: 'blocking' | 'poll', n: number) {
  const { register, workload } = await import('./support/suite-devices.mjs');
  const hsm = Hsm.emulated();
  const vm = hsm.createVm({ vcpuNum: 2, vmFlag: wake === 'poll' ? 1n << 2n : 0n });
  let finish: () => Promise<ReturnType<ReturnType<typeof register>['report']>>;
  if (loop === 'async') {
    const client = vm.createIoreqClient({ wake });
    const { report } = register(client);
    vm.start();
    const serving = client.run();
    finish = async () => {
      client.stop();
      await serving;
      return report();
    };
  } else {
    const worker = new Worker(join(import.meta.dirname, 'support/suite-worker.mjs'), { workerData: { token: vm.share(), wake } });
    const { stopToken } = await new Promise<{ stopToken: number }>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    vm.start();
    finish = async () => {
      const done = new Promise<ReturnType<ReturnType<typeof register>['report']>>((resolve) => worker.once('message', resolve));
      const { stopClient } = await import('../dist/index.js');
      stopClient(stopToken);
      const r = await done;
      await worker.terminate();
      return r;
    };
  }
  const result = await hsm.guest(vm).run(workload(n));
  return { result, served: await finish() };
}

describe('the same suite on both loops', () => {
  for (const loop of ['async', 'worker'] as const) {
    for (const wake of ['blocking', 'poll'] as const) {
      it(`${loop === 'async' ? 'main-thread async loop' : 'worker runSync'} (${wake}): values, faults, native and TS devices`, async () => {
        const n = 40;
        const { result: r, served } = await serveSuite(loop, wake, n);
        expect(r.mismatches).toEqual([]);
        expect(r.faults).toEqual([]);
        expect(r.completed).toBe(r.issued);
        expect(served.uart).toBe('Hi');
        expect(served.portReads).toBe(2 * n);
        expect(served.regfile8).toBe(0xdead_beef);
        expect(served.errors).toEqual([
          ['pio', 'read', 0x602n, 2],
          ['pio', 'write', 0x601n, 1],
          ['mmio', 'read', 0x9000_0000n, 0],
        ]);
        // Exactly one NOTIFY per request the client handled (0xCF8 writes complete in the kernel).
        const c = served.counters;
        expect(c.notifies).toBe(c.js + c.native + c.unclaimed + c.faults);
        expect(c.notifies).toBeGreaterThan(r.issued - 8);
        expect(c.notifies).toBeLessThan(r.issued);
        expect(c.notifyErrors).toBe(0);
      });
    }
  }
});

describe('IoreqClient', () => {
  for (const wake of ['blocking', 'poll'] as const) {
    it(`async loop (${wake}): TS and native devices, every value checked`, async () => {
      const { hsm, vm, client } = vmWithClient(2, wake);
      const uart = new Uart16550();
      let portReads = 0;
      client
        .mmio(0xfed0_0000n, 0x1000n, new Regs())
        .pio(0x3f8, 8, uart)
        .pio(0x510, 4, { read: () => (portReads++, 0xabcd), write: () => {} });
      vm.start();
      const serving = client.run();
      const r = await hsm.guest(vm).run({
        vcpus: [[{ pio: 0x3f8, size: 1, write: 0x48 }, { pio: 0x3f8, size: 1, write: 0x69 }, ...regOps(0xfed0_0000n, 40)], regOps(0xfed0_0100n, 40)],
      });
      client.stop();
      await serving;
      expect(r.mismatches).toEqual([]);
      expect(r.faults).toEqual([]);
      expect(r.completed).toBe(r.issued);
      expect(r.issued).toBe(2 + 2 * 40 * 5);
      expect(uart.takeOutput()).toBe('Hi');
      expect(portReads).toBe(80);
      const c = client.counters;
      expect(c.js).toBe(2 * 40 * 4);
      expect(c.native).toBe(2 + 2 * 40);
      expect(c.notifies).toBe(r.issued);
    });
  }

  it('the synchronous loop in a worker (the fast path)', async () => {
    const hsm = Hsm.emulated();
    const vm = hsm.createVm({ vcpuNum: 4 });
    const worker = new Worker(join(import.meta.dirname, 'support/serve-worker.mjs'), { workerData: { token: vm.share() } });
    const ready = await new Promise<{ stopToken: number }>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    vm.start();
    const n = 500;
    const ops = (i: number) => [{ repeat: n, ops: [
      { mmio: 0xfe00_0000n + BigInt(i * 8), size: 8, write: 0x0102_0304_0506_0708n + BigInt(i) },
      { mmio: 0xfe00_0000n + BigInt(i * 8), size: 8, read: true, expect: 0x0102_0304_0506_0708n + BigInt(i) },
    ] }];
    const r = await hsm.guest(vm).run({ vcpus: [ops(0), ops(1), ops(2), ops(3)] });
    const done = new Promise<{ served: number }>((resolve) => worker.once('message', resolve));
    const { stopClient } = await import('../dist/index.js');
    expect(stopClient(ready.stopToken)).toBe(true);
    const { served } = await done;
    await worker.terminate();
    expect(r.mismatches).toEqual([]);
    expect(r.completed).toBe(4 * n * 2);
    expect(served).toBe(4 * n * 2);
  });

  it('a handler that throws: the read returns all ones, the error event carries the request', async () => {
    const { hsm, vm, client } = vmWithClient(1);
    const errors: ServedRequest[] = [];
    client.on('error', (err: Error & { request: ServedRequest }) => errors.push(err.request));
    client.pio(0x600, 4, {
      read: (offset) => {
        if (offset === 2) throw new Error('boom');
        return 7;
      },
      write: () => {
        throw new Error('write boom');
      },
    });
    client.mmio(0x9000_0000n, 0x100n, { read: () => 'nope' as unknown as number, write: () => {} });
    vm.start();
    const serving = client.run();
    const r = await hsm.guest(vm).run({ vcpus: [[
      { pio: 0x600, size: 1, read: true, expect: 7 },
      { pio: 0x602, size: 2, read: true, expect: 0xffff },
      { pio: 0x601, size: 1, write: 3 },
      { mmio: 0x9000_0000n, size: 8, read: true, expect: 0xffff_ffff_ffff_ffffn },
      { pio: 0x600, size: 4, read: true, expect: 7 },
    ]] });
    client.stop();
    await serving;
    expect(r.mismatches).toEqual([]);
    expect(r.completed).toBe(5);
    expect(errors.map((e) => [e.type, e.direction, e.address, e.offset])).toEqual([
      ['pio', 'read', 0x602n, 2],
      ['pio', 'write', 0x601n, 1],
      ['mmio', 'read', 0x9000_0000n, 0],
    ]);
  });

  it('unclaimed accesses read all ones; native PCI function and register file', async () => {
    const { hsm, vm, client } = vmWithClient(1);
    const regs = new RegisterFile(0x100);
    client.mmio(0xc000_0000n, 0x100n, regs);
    client.pci(0, 5, 0, new PciFunction({ vendorId: 0x8086, deviceId: 0x1234, bars: [{ index: 0, kind: 'mem32', size: 0x1000n }] }));
    client.pci(0, 6, 0, { read: (reg) => (reg === 0 ? 0x5678_1af4 : 0), write: () => {} });
    vm.start();
    const serving = client.run();
    const r = await hsm.guest(vm).run({ vcpus: [[
      { mmio: 0xc000_0008n, size: 4, write: 0xdead_beef },
      { mmio: 0xd000_0000n, size: 4, read: true, expect: 0xffff_ffff },
      { pio: 0x1234, size: 2, read: true, expect: 0xffff },
      { pci: { bus: 0, dev: 5, func: 0, reg: 0 }, size: 4, read: true, expect: 0x1234_8086 },
      { pci: { bus: 0, dev: 5, func: 0, reg: 0x10 }, size: 4, write: 0xffff_ffff },
      { pci: { bus: 0, dev: 5, func: 0, reg: 0x10 }, size: 4, read: true, expect: 0xffff_f000 },
      { pci: { bus: 0, dev: 6, func: 0, reg: 0 }, size: 4, read: true, expect: 0x5678_1af4 },
      { pci: { bus: 0, dev: 7, func: 0, reg: 0 }, size: 4, read: true, expect: 0xffff_ffff },
    ]] });
    client.stop();
    await serving;
    expect(r.mismatches).toEqual([]);
    expect(regs.bytes().readUInt32LE(8)).toBe(0xdead_beef);
    expect(client.counters.unclaimed).toBeGreaterThanOrEqual(3);
  });

  it('boundary checks: overlapping and empty ranges, lossy numbers, wrong types', () => {
    const { client } = vmWithClient(1);
    client.mmio(0x1000n, 0x100n, new Regs());
    expect(() => client.mmio(0x1080n, 0x100n, new Regs())).toThrow(expect.objectContaining({ code: 'ERR_RANGE' }));
    expect(() => client.mmio(0x5000n, 0n, new Regs())).toThrow(RangeError);
    expect(() => client.mmio(0x5000 as unknown as bigint, 1n, new Regs())).toThrow(TypeError);
    expect(() => client.mmio(1n << 64n, 1n, new Regs())).toThrow(RangeError);
    expect(() => client.pio(0xffff, 2, new Regs())).toThrow(RangeError);
    expect(() => client.pio(0x3f8, 8, {} as never)).toThrow(TypeError);
    expect(() => client.pci(0, 32, 0, new Regs())).toThrow(RangeError);
    expect(() => client.pio(0x2f8, 4, new Uart16550())).toThrow(RangeError);
    expect(() => new Uart16550().takeOutput()).toThrow(AcrnHsmError);
  });

  it('a second client on the same VM is EEXIST', () => {
    const { vm } = vmWithClient(1);
    expect(() => vm.createIoreqClient()).toThrow(expect.objectContaining({ code: 'EEXIST', errno: 17 }));
  });
});
