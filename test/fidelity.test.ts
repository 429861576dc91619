// The later ioctls through the typed TypeScript API, validated by the emulated hypervisor as ACRN
// does (acrn-semantics.md corrections 1 and 3; the Rust tests in crates/acrn-hsm/tests/fidelity.rs
// cite the functions). Each expectation is an errno a pass-through device model must see.
import { describe, expect, it } from 'vitest';
import { AcrnHsmError, Hsm } from '../dist/index.js';

const code = (fn: () => unknown) => {
  try {
    fn();
    return 'ok';
  } catch (err) {
    return (err as AcrnHsmError).code ?? (err as Error).name;
  }
};

const bdf = (bus: number, dev: number, func: number) => (bus << 8) | (dev << 3) | func;
/** The default board's assignable endpoint, 00:14.0 (8086:a36d). */
const ENDPOINT = bdf(0, 0x14, 0);

describe('pass-through ioctls (hypercall.c, vpci.c, mmio_dev.c)', () => {
  it('ASSIGN/DEASSIGN_PCIDEV and SET/RESET_PTDEV_INTR', () => {
    const hsm = Hsm.emulated();
    const vm = hsm.createVm({ vcpuNum: 1 });
    const dev = { virtBdf: bdf(0, 5, 0), physBdf: ENDPOINT };
    expect(code(() => vm.assignPcidev({ ...dev, physBdf: bdf(0, 0, 0) }))).toBe('ENODEV'); // the host bridge
    expect(code(() => vm.setPtdevIntr({ ...dev, virtPin: 10, physPin: 16 }))).toBe('EPERM'); // nothing assigned
    expect(code(() => vm.assignPcidev(dev))).toBe('ok');
    expect(code(() => vm.setPtdevIntr({ ...dev, type: 1, virtPin: 10, physPin: 16 }))).toBe('EPERM'); // MSI
    expect(code(() => vm.setPtdevIntr({ ...dev, virtPin: 48, physPin: 16 }))).toBe('EPERM');
    expect(code(() => vm.setPtdevIntr({ ...dev, virtPin: 10, physPin: 16 }))).toBe('ok');
    expect(vm.intrMonitorData()).toEqual([{ irq: 16n, count: 0n }]);
    vm.start();
    expect(code(() => vm.deassignPcidev(dev))).toBe('EINVAL'); // running
    vm.pause();
    expect(code(() => vm.resetPtdevIntr({ ...dev, virtPin: 10, physPin: 16 }))).toBe('ok');
    expect(code(() => vm.deassignPcidev({ ...dev, physBdf: bdf(0, 0x1f, 6) }))).toBe('ENODEV');
    expect(code(() => vm.deassignPcidev(dev))).toBe('ok');
    expect(() => vm.assignPcidev({ ...dev, bar: [1, 2, 3, 4, 5, 6, 7] })).toThrow(TypeError);
    expect(() => vm.assignPcidev({ virtBdf: 0x1_0000, physBdf: 0 })).toThrow();
  });

  it('ASSIGN/DEASSIGN_MMIODEV and CREATE/DESTROY_VDEV', () => {
    const hsm = Hsm.emulated();
    const vm = hsm.createVm({ vcpuNum: 1 });
    expect(code(() => vm.assignMmiodev({ res: [] }))).toBe('ok'); // no resources: 0
    const res = { userVmPa: 0xfed4_0000n, hostPa: 0xfed4_0000n, size: 0x5000n };
    expect(code(() => vm.assignMmiodev({ name: 'tpm', res: [{ ...res, size: 0x5001n }] }))).toBe('EINVAL');
    expect(code(() => vm.assignMmiodev({ name: 'tpm', res: [res] }))).toBe('ok');
    expect(code(() => vm.deassignMmiodev({ name: 'tpm', res: [res] }))).toBe('ok');
    const ivshmem = { vendor: 0x1af4, device: 0x1110, slot: bdf(0, 6, 0) };
    expect(code(() => vm.createVdev({ ...ivshmem, device: 0x1111 }))).toBe('EINVAL');
    expect(code(() => vm.createVdev(ivshmem))).toBe('ok');
    expect(code(() => vm.createVdev(ivshmem))).toBe('EINVAL'); // slot taken
    expect(code(() => vm.destroyVdev(ivshmem))).toBe('ok');
    expect(code(() => vm.destroyVdev(ivshmem))).toBe('EINVAL');
    expect(() => vm.assignMmiodev({ name: 'too-long-name', res: [] })).toThrow();
  });

  it('PM_GET_CPU_STATE takes the VM from the command; unknown types answer none', () => {
    const hsm = Hsm.emulated();
    const vm = hsm.createVm({ vcpuNum: 1 });
    const cmd = (vmid: number, idx: number, type: number) => (BigInt(vmid) << 24n) | (BigInt(idx) << 8n) | BigInt(type);
    expect(vm.pmGetCpuState(cmd(vm.vmid, 0, 2))).toEqual({ kind: 'count', count: 0 });
    expect(code(() => vm.pmGetCpuState(cmd(vm.vmid, 0, 0)))).toBe('EPERM'); // no P-state passthrough
    expect(code(() => vm.pmGetCpuState(cmd(vm.vmid, 1, 3)))).toBe('EPERM'); // no C-states on this board
    expect(code(() => vm.pmGetCpuState(cmd(0, 0, 2)))).toBe('EPERM'); // the Service VM runs
    expect(vm.pmGetCpuState(cmd(vm.vmid, 0, 9))).toEqual({ kind: 'none' });
    vm.start();
    expect(code(() => vm.pmGetCpuState(cmd(vm.vmid, 0, 2)))).toBe('EPERM');
  });
});

describe('interrupt ioctls are validated by the hypervisor (vlapic.c, hcall_set_irqline)', () => {
  it('INJECT_MSI outside 0xFEExxxxx and SET_IRQLINE gsi >= 48 are EPERM', () => {
    const hsm = Hsm.emulated();
    const vm = hsm.createVm({ vcpuNum: 1 });
    expect(code(() => vm.injectMsi(0xfed0_0000n, 0x30n))).toBe('EPERM');
    expect(code(() => vm.injectMsi(0xfee0_1000n, 0x30n))).toBe('ok');
    expect(code(() => vm.setIrqline(47, 0))).toBe('ok');
    expect(code(() => vm.setIrqline(48, 0))).toBe('EPERM');
  });

  it('SET_VCPU_REGS: CR0.NE is fixed to 1, PG without PE passes', () => {
    const hsm = Hsm.emulated();
    const vm = hsm.createVm({ vcpuNum: 1 });
    expect(code(() => vm.setVcpuRegs({ vcpuId: 0, rip: 0xfff0n }))).toBe('EPERM');
    expect(code(() => vm.setVcpuRegs({ vcpuId: 0, rip: 0xfff0n, cr0: 0x30n }))).toBe('ok');
    expect(code(() => vm.setVcpuRegs({ vcpuId: 0, cr0: 0x8000_0020n }))).toBe('ok');
  });
});
