// Live PCI BARs from TypeScript: a PciFunction whose BAR has a TS device. The guest sizes and
// programs the BAR, enables memory decoding and reaches the device; after it moves the BAR the
// old range is unclaimed (all ones) and the new one served; with decoding disabled nothing is.
// (Outside the MMCONFIG window at 0xE000_0000, which the hypervisor's vPCI takes.)
import { describe, expect, it } from 'vitest';
import { Hsm, PciFunction, type WorkloadOp } from '../dist/index.js';

const at = (register: number) => ({ bus: 0, device: 5, function: 0, register });

describe('live PCI BARs', () => {
  it('a TS BAR device follows the guest\'s programming of the BAR and the command register', async () => {
    const hsm = Hsm.emulated();
    const vm = hsm.createVm({ vcpuNum: 1 });
    const client = vm.createIoreqClient();
    const seen: string[] = [];
    client.pci(0, 5, 0, new PciFunction({
      vendorId: 0x1af4,
      deviceId: 0x1000,
      name: 'ts-nic',
      bars: [{ index: 0, kind: 'mem32', size: 0x1000n, device: {
        read: (offset) => { seen.push(`r${offset.toString(16)}`); return 0x7700_0000n | BigInt(offset); },
        write: (offset, _size, value) => { seen.push(`w${offset.toString(16)}=${value.toString(16)}`); },
      } }],
    }));
    vm.start();
    const serving = client.run();
    const ops: WorkloadOp[] = [
      { pci: at(0x10), size: 4, write: 0xffff_ffff },
      { pci: at(0x10), size: 4, read: true, expect: 0xffff_f000 },
      { pci: at(0x10), size: 4, write: 0xc100_0000 },
      { mmio: 0xc100_0020n, size: 4, read: true, expect: 0xffff_ffff },
      { pci: at(0x04), size: 2, write: 0x2 },
      { mmio: 0xc100_0020n, size: 4, read: true, expect: 0x7700_0020 },
      { mmio: 0xc100_0008n, size: 8, write: 0xabcdn },
      { pci: at(0x10), size: 4, write: 0xc200_0000 },
      { mmio: 0xc100_0020n, size: 4, read: true, expect: 0xffff_ffff },
      { mmio: 0xc200_0ff0n, size: 4, read: true, expect: 0x7700_0ff0 },
      { pci: at(0x04), size: 2, write: 0x0 },
      { mmio: 0xc200_0ff0n, size: 4, read: true, expect: 0xffff_ffff },
    ];
    const r = await hsm.guest(vm).run({ vcpus: [ops] });
    client.stop();
    await serving;
    expect(r.mismatches).toEqual([]);
    expect(r.faults).toEqual([]);
    expect(seen).toEqual(['r20', 'w8=abcd', 'rff0']);
    vm.pause();
  });
});
