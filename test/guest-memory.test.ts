// Guest memory, eventfds and interrupts from TypeScript: a device reads and writes guest RAM
// through vm.memory, views see the guest's later writes, out-of-range GPAs throw RangeError, and
// an MSI, a line interrupt and an irqfd signalled through an EventFd each wake a blocked vCPU.
import { describe, expect, it } from 'vitest';
import { EventFd, GuestMemoryRangeError, Hsm, type Device, type Vm } from '../dist/index.js';

const RAM = 0x10_0000n;

function ramVm(vcpuNum = 1): { hsm: Hsm; vm: Vm } {
  const hsm = Hsm.emulated();
  const vm = hsm.createVm({ vcpuNum });
  vm.mapRam(RAM, Hsm.allocPages(0x1000));
  vm.mapRam(RAM + 0x1000n, Hsm.allocPages(0x2000));
  return { hsm, vm };
}

describe('vm.memory', () => {
  it('reads and writes across adjacent segments; lists the segments', () => {
    const { vm } = ramVm();
    expect(vm.memory.segments()).toEqual([
      { gpa: RAM, length: 0x1000n },
      { gpa: RAM + 0x1000n, length: 0x2000n },
    ]);
    const bytes = Buffer.from([1, 2, 3, 4, 5, 6, 7, 8]);
    vm.memory.write(RAM + 0xffcn, bytes);
    expect(vm.memory.read(RAM + 0xffcn, 8)).toEqual(bytes);
    expect(vm.memory.readU32(RAM + 0x1000n)).toBe(0x0807_0605);
    vm.memory.writeU64(RAM + 0x2ff8n, 0x1122_3344_5566_7788n);
    expect(vm.memory.readU64(RAM + 0x2ff8n)).toBe(0x1122_3344_5566_7788n);
  });

  it('throws a RangeError naming the range and the nearest segment', () => {
    const { vm } = ramVm();
    const err = (() => {
      try {
        vm.memory.read(RAM + 0x2ffcn, 8);
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(RangeError);
    expect(err).toBeInstanceOf(GuestMemoryRangeError);
    expect((err as GuestMemoryRangeError).code).toBe('ERR_GPA_RANGE');
    expect((err as Error).message).toBe('GPA range [0x102ffc, 0x103004) is not inside mapped RAM; nearest segment [0x101000, 0x103000)');
    expect(() => vm.memory.write(0x1000n, Buffer.alloc(1))).toThrow(/nearest segment \[0x100000, 0x101000\)/);
    expect(() => vm.memory.view(RAM + 0xff0n, 0x20)).toThrow(/spans more than one RAM segment/);
    expect(() => Hsm.emulated().createVm({ vcpuNum: 1 }).memory.read(0n, 1)).toThrow(/no RAM segment/);
  });

  it('view() is zero-copy: it sees the guest\'s later writes, and its writes are guest memory', async () => {
    const { hsm, vm } = ramVm();
    const view = vm.memory.view(RAM + 0x800n, 16);
    const again = vm.memory.view(RAM + 0x800n, 16); // a second view of the same bytes is fine
    vm.start();
    const r = await hsm.guest(vm).run({ vcpus: [[
      { ram: RAM + 0x800n, size: 8, write: 0x0123_4567_89ab_cdefn },
      { ram: RAM + 0x808n, size: 4, read: true, expect: 0xdead_beef },
    ]] });
    // Nothing wrote +8 yet: the guest's check fails (reads 0); the view made before the run
    // sees the guest's write without a re-read.
    expect(r.mismatches.map((m) => m.actual)).toEqual([0n]);
    expect(view.readBigUInt64LE(0)).toBe(0x0123_4567_89ab_cdefn);
    expect(again.readBigUInt64LE(0)).toBe(0x0123_4567_89ab_cdefn);
    view.writeUInt32LE(0xdead_beef, 8);
    const r2 = await hsm.guest(vm).run({ vcpus: [[{ ram: RAM + 0x808n, size: 4, read: true, expect: 0xdead_beef }]] });
    expect(r2.mismatches).toEqual([]);
    expect(vm.memory.readU32(RAM + 0x808n)).toBe(0xdead_beef);
    vm.pause();
  });

  it('UserPage.bytes is the same memory without a copy', () => {
    const page = Hsm.allocPages(0x1000);
    const bytes = page.bytes;
    expect(bytes.length).toBe(0x1000);
    page.write(10, Buffer.from([7, 8]));
    expect([bytes[10], bytes[11]]).toEqual([7, 8]);
    bytes[12] = 9;
    expect(page.read(12, 1)[0]).toBe(9);
    expect(page.bytes).toBe(bytes);
  });
});

describe('EventFd', () => {
  it('write, read, wait and close', async () => {
    const e = new EventFd();
    expect(e.fd).toBeGreaterThan(2);
    expect(e.read()).toBeNull();
    e.write(2n);
    e.write();
    expect(e.read()).toBe(3n);
    const waiting = e.wait();
    setTimeout(() => e.write(5n), 10);
    expect(await waiting).toBe(5n);
    const cancelled = e.wait();
    e.close();
    expect(await cancelled).toBeNull();
    expect(e.fd).toBe(-1);
    expect(() => e.write(1n)).toThrow(/closed/);
    const s = new EventFd({ initial: 2, semaphore: true });
    expect([s.read(), s.read(), s.read()]).toEqual([1n, 1n, null]);
    s.close();
  });

  it('an ioeventfd doorbell notifies the device without a request to the client', async () => {
    const { hsm, vm } = ramVm();
    const client = vm.createIoreqClient();
    vm.start();
    const serving = client.run();
    const bell = new EventFd();
    vm.ioeventfd({ fd: bell, flags: 0, addr: 0xfed6_0000n, len: 4 });
    const rung = bell.wait();
    const r = await hsm.guest(vm).run({ vcpus: [[{ mmio: 0xfed6_0000n, size: 4, write: 1 }]] });
    expect(await rung).toBe(1n);
    expect(r.completed).toBe(1);
    expect(client.counters.js).toBe(0);
    client.stop();
    await serving;
    bell.close();
    vm.pause();
  });
});

describe('interrupts reach the guest', () => {
  it('an MSI and a line interrupt raised by a TS device, and an irqfd write, each wake wait_irq', async () => {
    const { hsm, vm } = ramVm();
    const client = vm.createIoreqClient();
    const efd = new EventFd();
    vm.irqfd({ fd: efd, flags: 0, msiAddr: 0xfee0_0000n, msiData: 0x52n });
    const device: Device = {
      read: () => 0n,
      write(offset, _size, value) {
        // The interrupt comes later than the request's completion, from a timer.
        setTimeout(() => {
          if (offset === 0) vm.injectMsi(0xfee0_0000n, BigInt(value));
          else if (offset === 8) vm.setIrqline(Number(value), 2);
          else efd.write(1n);
        }, 20);
      },
    };
    client.mmio(0xfed7_0000n, 0x100n, device);
    vm.start();
    const serving = client.run();
    const r = await hsm.guest(vm).run({ vcpus: [[
      { mmio: 0xfed7_0000n, size: 4, write: 0x51 },
      { wait_irq: { vector: 0x51 }, timeout_ns: 5_000_000_000n },
      { mmio: 0xfed7_0008n, size: 4, write: 9 },
      { wait_irq: { gsi: 9 }, timeout_ns: 5_000_000_000n },
      { mmio: 0xfed7_0010n, size: 4, write: 1 },
      { wait_irq: { vector: 0x52 }, timeout_ns: 5_000_000_000n },
      // Nothing more is raised: this one times out, and says so.
      { wait_irq: { vector: 0x52 }, timeout_ns: 1_000_000 },
    ]] });
    expect(r.mismatches).toEqual([]);
    expect(r.faults.map((f) => f.kind)).toEqual(['irq-timeout']);
    const c = vm.irqCounters();
    expect(c.msi).toBe(2);
    expect(c.edges[9]).toBe(1);
    expect(c.taken).toBe(3);
    expect(hsm.interrupts().map((i) => i.kind)).toEqual(['msi', 'irqline', 'irqfd']);
    client.stop();
    await serving;
    efd.close();
    vm.pause();
  });
});
