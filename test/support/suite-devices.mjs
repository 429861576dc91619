// The devices of the shared client suite, registered the same way by the main-thread loop and by
// the worker's synchronous loop (test/support/suite-worker.mjs), so both paths face one suite.
import { PciFunction, RegisterFile, Uart16550 } from '../../dist/index.js';

/** A register block: 32-bit scratch registers, an ID register at +0x10 of each 0x100 window. */
class Regs {
  name = 'ts-regs';
  r = new Map();
  read(offset) {
    return (offset & 0xff) === 0x10 ? 0xfeedn : (this.r.get(offset) ?? 0n);
  }
  write(offset, _size, value) {
    this.r.set(offset, BigInt(value));
  }
}

/** Registers every device of the suite on `client`; returns what the test reads back. */
export function register(client) {
  const state = { portReads: 0, errors: [] };
  const uart = new Uart16550();
  const regfile = new RegisterFile(0x100);
  client.on('error', (err) => state.errors.push({ ...err.request, message: err.message }));
  client
    .mmio(0xfed0_0000n, 0x1000n, new Regs())
    .pio(0x3f8, 8, uart)
    .pio(0x510, 4, { read: () => (state.portReads++, 0xabcd), write: () => {} })
    .pio(0x600, 4, {
      read: (offset) => {
        if (offset === 2) throw new Error('boom');
        return 7;
      },
      write: () => {
        throw new Error('write boom');
      },
    })
    .mmio(0x9000_0000n, 0x100n, { read: () => 'nope', write: () => {} })
    .mmio(0xc000_0000n, 0x100n, regfile)
    .pci(0, 5, 0, new PciFunction({ vendorId: 0x8086, deviceId: 0x1234, bars: [{ index: 0, kind: 'mem32', size: 0x1000n }] }))
    .pci(0, 6, 0, { read: (reg) => (reg === 0 ? 0x5678_1af4 : 0), write: () => {} });
  return {
    report: () => ({
      portReads: state.portReads,
      errors: state.errors.map((e) => [e.type, e.direction, e.address, e.offset]),
      uart: uart.takeOutput(),
      regfile8: regfile.bytes().readUInt32LE(8),
      counters: client.counters,
    }),
  };
}

/** The guest side of the suite: two vCPUs, every read with its expected value. */
export function workload(n) {
  const regOps = (base) => [{ repeat: n, ops: [
    { mmio: base, size: 4, write: 0x1234_5678 },
    { mmio: base, size: 4, read: true, expect: 0x1234_5678 },
    { mmio: base + 0x10n, size: 2, read: true, expect: 0xfeed },
    { pio: 0x3fd, size: 1, read: true, expect: 0x60 },
    { pio: 0x510, size: 4, read: true, expect: 0xabcd },
  ] }];
  return { vcpus: [
    [
      { pio: 0x3f8, size: 1, write: 0x48 }, { pio: 0x3f8, size: 1, write: 0x69 },
      // Handler faults: a throwing read, a throwing write, a read of the wrong type.
      { pio: 0x600, size: 1, read: true, expect: 7 },
      { pio: 0x602, size: 2, read: true, expect: 0xffff },
      { pio: 0x601, size: 1, write: 3 },
      { mmio: 0x9000_0000n, size: 8, read: true, expect: 0xffff_ffff_ffff_ffffn },
      // Native register file and PCI function, a TS PCI function, unclaimed accesses.
      { mmio: 0xc000_0008n, size: 4, write: 0xdead_beef },
      { mmio: 0xd000_0000n, size: 4, read: true, expect: 0xffff_ffff },
      { pci: { bus: 0, dev: 5, func: 0, reg: 0 }, size: 4, read: true, expect: 0x1234_8086 },
      { pci: { bus: 0, dev: 5, func: 0, reg: 0x10 }, size: 4, write: 0xffff_ffff },
      { pci: { bus: 0, dev: 5, func: 0, reg: 0x10 }, size: 4, read: true, expect: 0xffff_f000 },
      { pci: { bus: 0, dev: 6, func: 0, reg: 0 }, size: 4, read: true, expect: 0x5678_1af4 },
      { pci: { bus: 0, dev: 7, func: 0, reg: 0 }, size: 4, read: true, expect: 0xffff_ffff },
      ...regOps(0xfed0_0000n),
    ],
    regOps(0xfed0_0100n),
  ] };
}
