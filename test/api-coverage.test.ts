// The public methods not exercised elsewhere, each with its error paths.
import { openSync, closeSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { AcrnHsmError, Hsm, Uart16550, decodeIoRequest } from '../dist/index.js';

const code = (fn: () => unknown) => {
  try {
    fn();
    return 'ok';
  } catch (err) {
    return (err as AcrnHsmError).code ?? (err as Error).name;
  }
};

describe('UserPage', () => {
  it('reads and writes in bounds, refuses out of bounds', () => {
    const p = Hsm.allocPages(8192);
    expect(p.length).toBe(8192);
    expect(p.address % 4096n).toBe(0n);
    p.write(4090, Buffer.from([1, 2, 3, 4, 5, 6]));
    expect([...p.read(4090, 6)]).toEqual([1, 2, 3, 4, 5, 6]);
    expect(code(() => p.read(8190, 4))).toBe('EFAULT');
    expect(code(() => p.write(8191, Buffer.from([1, 2])))).toBe('EFAULT');
    expect(() => p.read(-1, 1)).toThrow(RangeError);
    expect(() => p.write(0, 'x' as unknown as Uint8Array)).toThrow(TypeError);
    expect(code(() => p.readSlot(16))).toBe('ERR_OUT_OF_RANGE');
    expect(() => Hsm.allocPages(0)).toThrow(RangeError);
  });
});

describe('Vm', () => {
  it('memory segments: RAM by mapRam or setMemseg, MMIO set and unset, RAM unset refused', () => {
    const hsm = Hsm.emulated();
    const vm = hsm.createVm({ vcpuNum: 1 });
    vm.mapRam(0n, Hsm.allocPages(0x4000));
    const ram = Hsm.allocPages(0x2000);
    vm.setMemseg({ type: 0, attr: 7, userVmPa: 0x10_0000n, vmaBase: ram.address, len: 0x2000n });
    // Memory that is not the library's: pinning fails.
    expect(code(() => vm.setMemseg({ type: 0, attr: 7, userVmPa: 0x20_0000n, vmaBase: 0x1000n, len: 0x1000n }))).toBe('EFAULT');
    const mmio = { type: 1, attr: 3, userVmPa: 0xe000_0000n, vmaBase: 0xfe00_0000n, len: 0x1000n };
    vm.setMemseg(mmio);
    vm.unsetMemseg(mmio);
    expect(code(() => vm.unsetMemseg({ ...mmio, type: 0 }))).toBe('EINVAL');
    expect(code(() => vm.setMemseg({ ...mmio, type: 7 }))).toBe('EINVAL');
    expect(() => vm.setMemseg({ ...mmio, len: 4096 as unknown as bigint })).toThrow(TypeError);
  });

  it('interrupts: injectMsi and setIrqline reach the hypervisor; ioeventfd/irqfd check their fd', () => {
    const hsm = Hsm.emulated();
    const vm = hsm.createVm({ vcpuNum: 1 });
    vm.injectMsi(0xfee0_0000n, 0x31n);
    vm.setIrqline(4, 1);
    expect(hsm.interrupts()).toEqual([
      { kind: 'msi', vmid: vm.vmid, msiAddr: 0xfee0_0000n, msiData: 0x31n },
      { kind: 'irqline', vmid: vm.vmid, gsi: 4, op: 1 },
    ]);
    expect(() => vm.injectMsi(0xfee0_0000 as unknown as bigint, 0n)).toThrow(TypeError);
    expect(code(() => vm.ioeventfd({ fd: 9999, flags: 1, addr: 0x3f8n, len: 1 }))).toBe('EBADF');
    expect(code(() => vm.irqfd({ fd: 9999, flags: 0, msiAddr: 0xfee0_0000n, msiData: 0x31n }))).toBe('EBADF');
    const notAnEventfd = openSync('/dev/null', 'r');
    try {
      expect(code(() => vm.ioeventfd({ fd: notAnEventfd, flags: 1, addr: 0x3f8n, len: 1 }))).toBe('EINVAL');
    } finally {
      closeSync(notAnEventfd);
    }
  });

  it('attach (async and sync) and clearVmIoreq: an outstanding request is completed by CLEAR, ENODEV after destroy', async () => {
    const hsm = Hsm.emulated();
    const vm = hsm.createVm({ vcpuNum: 1 });
    vm.createIoreqClient();
    vm.start();
    const run = hsm.guest(vm).run({ vcpus: [[{ pio: 0x70, size: 1, read: true }]] });
    await vm.attachIoreqClient();
    expect(decodeIoRequest(vm.ioreqPage.readSlot(0)).state).toBe('processing');
    // Level-triggered: with the request still pending, the synchronous ATTACH returns at once.
    vm.attachIoreqClientSync();
    vm.pause();
    vm.clearVmIoreq();
    const r = await run;
    expect(r.issued).toBe(1);
    vm.destroyIoreqClient();
    await expect(vm.attachIoreqClient()).rejects.toMatchObject({ code: 'ENODEV', errno: 19 });
    expect(code(() => vm.attachIoreqClientSync())).toBe('ENODEV');
  });
});

describe('Uart16550.pushInput', () => {
  it('the guest sees data ready and reads the bytes', async () => {
    const hsm = Hsm.emulated();
    const vm = hsm.createVm({ vcpuNum: 1 });
    const client = vm.createIoreqClient();
    const uart = new Uart16550();
    client.pio(0x2f8, 8, uart);
    uart.pushInput('ok');
    vm.start();
    const serving = client.run();
    const r = await hsm.guest(vm).run({ vcpus: [[
      { pio: 0x2fd, size: 1, read: true, expect: 0x61 }, // LSR: DR | THRE | TEMT
      { pio: 0x2f8, size: 1, read: true, expect: 0x6f },
      { pio: 0x2f8, size: 1, read: true, expect: 0x6b },
      { pio: 0x2fd, size: 1, read: true, expect: 0x60 },
    ]] });
    client.stop();
    await serving;
    expect(r.mismatches).toEqual([]);
    expect(() => uart.pushInput(42 as unknown as string)).toThrow();
  });
});
