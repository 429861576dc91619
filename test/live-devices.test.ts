// Devices added and removed while the client serves: a guest polls a port nobody serves (all
// ones) until a TS device added while `run()` serves answers it; removed, the port reads all
// ones again. Every poll is completed exactly once; an overlapping add is refused at once.
import { describe, expect, it } from 'vitest';
import { Hsm, PciFunction, RegisterFile } from '../dist/index.js';

const PORT = 0x510;
const POLLS = 20_000;

async function until(what: string, ok: () => boolean): Promise<void> {
  const t0 = Date.now();
  while (!ok()) {
    if (Date.now() - t0 > 20_000) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 1));
  }
}

describe('devices added and removed while the client serves', () => {
  it('a TS device added during run() answers the polling guest; removed, the port is unclaimed', async () => {
    const hsm = Hsm.emulated();
    const vm = hsm.createVm({ vcpuNum: 1 });
    const client = vm.createIoreqClient();
    vm.start();
    const serving = client.run();
    const guest = hsm.guest(vm).run({ vcpus: [[{ repeat: POLLS, ops: [{ pio: PORT, size: 1, read: true, expect: 0x42 }, { delay_ns: 20_000 }] }]] });
    await until('unclaimed polls', () => client.counters.unclaimed >= 100);
    let reads = 0;
    const dev = { name: 'late', read: () => { reads++; return 0x42; }, write: () => {} };
    client.pio(PORT, 1, dev);
    // Checked at once against what is registered, while serving.
    expect(() => client.pio(PORT, 2, { read: () => 0, write: () => {} })).toThrow(expect.objectContaining({ code: 'ERR_RANGE' }));
    await until('answered polls', () => reads >= 100);
    client.remove(dev);
    expect(() => client.remove(dev)).toThrow(expect.objectContaining({ code: 'ERR_NO_DEVICE' }));
    const r = await guest;
    client.stop();
    await serving;
    expect(r.faults).toEqual([]);
    expect(r.issued).toBe(POLLS);
    expect(r.completed).toBe(POLLS);
    // Unclaimed before the add and after the removal, served in between: one contiguous run.
    expect(r.mismatches.length).toBe(POLLS - reads);
    expect(r.mismatches.every((m) => m.actual === 0xffn)).toBe(true);
    const seq = r.mismatches.map((m) => m.request);
    const gap = seq.findIndex((n, i) => i > 0 && n !== seq[i - 1]! + 1);
    expect(gap).toBeGreaterThan(0);
    expect(seq[gap]! - seq[gap - 1]! - 1).toBe(reads);
    const c = client.counters;
    expect(c.js).toBe(reads);
    expect(c.unclaimed).toBe(POLLS - reads);
    expect(c.notifies).toBe(POLLS);
    vm.pause();
  });

  it('native devices and PCI functions come and go while serving too', async () => {
    const hsm = Hsm.emulated();
    const vm = hsm.createVm({ vcpuNum: 1 });
    const client = vm.createIoreqClient();
    vm.start();
    const serving = client.run();
    const regs = new RegisterFile(8, { name: 'late-regs' });
    client.mmio(0xd000_0000n, 8n, regs);
    const fn = new PciFunction({ vendorId: 0x1af4, deviceId: 0x1041, name: 'late-fn' });
    client.pci(0, 6, 0, fn);
    const at = { bus: 0, device: 6, function: 0, register: 0 };
    let r = await hsm.guest(vm).run({ vcpus: [[
      { mmio: 0xd000_0000n, size: 4, write: 0xcafe },
      { mmio: 0xd000_0000n, size: 4, read: true, expect: 0xcafe },
      { pci: at, size: 4, read: true, expect: 0x1041_1af4 },
    ]] });
    expect(r.mismatches).toEqual([]);
    client.remove(regs).remove(fn);
    r = await hsm.guest(vm).run({ vcpus: [[
      { mmio: 0xd000_0000n, size: 4, read: true, expect: 0xffff_ffff },
      { pci: at, size: 4, read: true, expect: 0xffff_ffff },
    ]] });
    expect(r.mismatches).toEqual([]);
    // Removed, the register file can be registered again.
    client.mmio(0xd000_0000n, 8n, regs);
    client.stop();
    await serving;
    vm.pause();
  });
});
