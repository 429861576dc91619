// Live PCI BARs from TypeScript: a PciFunction whose BAR has a TS device. The guest sizes and
// programs the BAR, enables memory decoding and reaches the device; after it moves the BAR the
// old range is unclaimed (all ones) and the new one served; with decoding disabled nothing is.
// (Outside the MMCONFIG window at 0xE000_0000, which the hypervisor's vPCI takes.) And MSI-X:
// the guest programs the table through the BAR, a TS device's signal wakes its wait_irq.
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

  it('MSI-X from TypeScript: the guest programs the table through the BAR and a TS device signals a vector that wakes it', async () => {
    const hsm = Hsm.emulated();
    const vm = hsm.createVm({ vcpuNum: 1 });
    const client = vm.createIoreqClient();
    const signals: string[] = [];
    const fn: PciFunction = new PciFunction({
      vendorId: 0x1af4,
      deviceId: 0x1041,
      name: 'ts-msix',
      msix: { tableSize: 4, bar: 0, pbaOffset: 0x800 },
      msi: { vectors: 2 },
      subsystemVendorId: 0x1af4,
      subsystemId: 0x0011,
      interruptPin: 1,
      bars: [
        { index: 0, kind: 'mem32', size: 0x1000n },
        // The doorbell: a write of k signals vector k.
        { index: 1, kind: 'mem32', size: 0x1000n, device: {
          read: () => 0n,
          write: (_offset, _size, value) => { signals.push(fn.signalMsix(Number(value))); },
        } },
      ],
    });
    expect(() => fn.signalMsix(0)).toThrow(expect.objectContaining({ code: 'ERR_NOT_ATTACHED' }));
    client.pci(0, 5, 0, fn);
    vm.start();
    const serving = client.run();
    const entry = 0xc100_0000n + 16n;
    const ops: WorkloadOp[] = [
      // The capability list: status bit 4, the pointer, MSI-X with 4 entries, table in BAR0 at 0, PBA at 0x800.
      { pci: at(0x06), size: 2, read: true, expect: 0x10 },
      { pci: at(0x34), size: 1, read: true, expect: 0x40 },
      // MSI (id 5) first at 0x40 (64-bit, masking, 2 vectors: 0x40..0x58), then MSI-X at 0x58.
      { pci: at(0x40), size: 4, read: true, expect: 0x0182_5805 },
      { pci: at(0x58), size: 4, read: true, expect: 0x0003_0011 },
      { pci: at(0x60), size: 4, read: true, expect: 0x800 },
      // Subsystem ids and the interrupt pin read back; the line is the guest's.
      { pci: at(0x2c), size: 4, read: true, expect: 0x0011_1af4 },
      { pci: at(0x3c), size: 2, write: 0xffff },
      { pci: at(0x3c), size: 2, read: true, expect: 0x01ff },
      { pci: at(0x10), size: 4, write: 0xc100_0000 },
      { pci: at(0x14), size: 4, write: 0xc200_0000 },
      { pci: at(0x04), size: 2, write: 0x6 },
      { pci: at(0x5a), size: 2, write: 0x8000 },
      { mmio: entry, size: 4, write: 0xfee0_0000n },
      { mmio: entry + 8n, size: 4, write: 0x46n },
      { mmio: entry + 12n, size: 4, write: 0n },
      { mmio: 0xc200_0000n, size: 4, write: 1n },
      { wait_irq: { vector: 0x46 }, timeout_ns: 5_000_000_000 },
      // Masked: pending in the PBA, delivered on unmask.
      { mmio: entry + 12n, size: 4, write: 1n },
      { mmio: 0xc200_0000n, size: 4, write: 1n },
      { mmio: 0xc100_0800n, size: 8, read: true, expect: 0b10n },
      { mmio: entry + 12n, size: 4, write: 0n },
      { wait_irq: { vector: 0x46 }, timeout_ns: 5_000_000_000 },
      { mmio: 0xc100_0800n, size: 8, read: true, expect: 0n },
    ];
    const r = await hsm.guest(vm).run({ vcpus: [ops] });
    client.stop();
    await serving;
    expect(r.mismatches).toEqual([]);
    expect(r.faults).toEqual([]);
    expect(signals).toEqual(['delivered', 'pending']);
    expect(fn.signalMsi(0)).toBe('disabled');
    expect(fn.signalMsix(4)).toBe('no-such-vector');
    expect(vm.irqCounters()).toMatchObject({ msi: 2, taken: 2 });
    vm.pause();
  });
});
