// The kernel's own sample flow (linux samples/acrn/vm-sample.c) in TypeScript against the
// emulator: create with a 4K-aligned ioreq page, a RAM segment, vCPU registers, the ioreq
// client, start, the ATTACH/scan/NOTIFY loop serving a guest workload, pause, destroy.
import { describe, expect, it } from 'vitest';
import { AcrnHsmError, Hsm, abi, decodeIoRequest, type Vm } from '../dist/index.js';

/** A plain device model loop, as vm-sample.c and the ACRN DM write it. */
async function deviceModel(vm: Vm, handle: (req: ReturnType<typeof decodeIoRequest>) => bigint | undefined) {
  const page = vm.ioreqPage;
  const served = new Map<number, number>();
  for (;;) {
    try {
      await vm.attachIoreqClient();
    } catch (err) {
      if (err instanceof AcrnHsmError && err.code === 'ENODEV') return served;
      throw err;
    }
    for (let vcpu = 0; vcpu < vm.vcpuNum; vcpu++) {
      const req = decodeIoRequest(page.readSlot(vcpu));
      if (req.state !== 'processing' || req.kernelHandled) continue;
      const value = handle(req);
      if (req.direction === 'read') {
        const b = Buffer.alloc(8);
        b.writeBigUInt64LE(value ?? (1n << BigInt(req.size * 8)) - 1n);
        page.write(vcpu * 256 + abi.structs.acrn_io_request!.fields['reqs.pio_request.value']!, req.type === 'mmio' ? b : b.subarray(0, 4));
      }
      vm.notifyRequestFinish(vcpu);
      served.set(vcpu, (served.get(vcpu) ?? 0) + 1);
    }
  }
}

describe('vm-sample.c flow on the emulator', () => {
  for (const polling of [false, true]) {
    it(`serves a checked guest workload to the end (${polling ? 'polling' : 'notify'} completion)`, async () => {
      const hsm = Hsm.emulated();
      const ioreqPage = Hsm.allocPage();
      expect(ioreqPage.address % 4096n).toBe(0n);
      const vm = hsm.createVm({ vcpuNum: 2, ioreqPage, vmFlag: polling ? 1n << 2n : 0n });
      expect(vm.vmid).toBeGreaterThan(0);
      expect(vm.vcpuNum).toBe(2);
      // All 16 slots FREE after CREATE_VM.
      for (let i = 0; i < 16; i++) expect(decodeIoRequest(ioreqPage.readSlot(i)).state).toBe('free');

      const ram = Hsm.allocPages(0x10_0000);
      vm.setMemseg({ type: 0, attr: 7, userVmPa: 0n, vmaBase: ram.address, len: 0x10_0000n });
      vm.setVcpuRegs({ vcpuId: 0, rip: 0x1000n, cr0: 0x30n, rflags: 2n });
      vm.createIoreqClient();
      vm.start();

      // A register file at 0xfed00000 and a scratch port 0x80, in TS.
      const regs = new Map<bigint, bigint>();
      const handled: string[] = [];
      const served = deviceModel(vm, (req) => {
        if (req.type === 'mmio') {
          handled.push(`mmio ${req.direction}`);
          if (req.direction === 'write') regs.set(req.address, req.value);
          else return regs.get(req.address) ?? 0n;
        } else if (req.type === 'pio') {
          handled.push(`pio ${req.direction}`);
          if (req.address === 0x80n && req.direction === 'read') return 0x5an;
        }
        return undefined;
      });

      const guest = hsm.guest(vm);
      const n = 50;
      const ops = (base: bigint) => [
        { repeat: n, ops: [
          { mmio: base, size: 8, write: 0x1122_3344_5566_7788n },
          { mmio: base, size: 8, read: true, expect: 0x1122_3344_5566_7788n },
          { pio: 0x80, size: 1, read: true, expect: 0x5a },
          { pio: 0x3f8, size: 1, write: 0x41 },
        ] },
      ];
      const result = await guest.run({ vcpus: [ops(0xfed0_0000n), ops(0xfed0_0100n)] });
      vm.destroyIoreqClient();
      const perVcpu = await served;

      expect(result.mismatches).toEqual([]);
      expect(result.faults).toEqual([]);
      expect(result.issued).toBe(2 * n * 4);
      expect(result.completed).toBe(result.issued);
      expect(result.latenciesNs.length).toBe(result.issued);
      expect([...perVcpu.values()].reduce((a, b) => a + b, 0)).toBe(result.issued);
      expect(handled.filter((h) => h === 'mmio read')).toHaveLength(2 * n);

      vm.pause();
      vm.destroy();
      expect(() => vm.start()).toThrow(expect.objectContaining({ code: 'EINVAL', errno: 22 }));
    });
  }
});

describe('raw and typed interfaces agree, errno for errno', () => {
  const vmCreation = (ioreqBuf: bigint, vcpuNum = 1, name = 'raw') => {
    const b = new Uint8Array(48);
    const dv = new DataView(b.buffer);
    dv.setUint16(4, vcpuNum, true);
    b.set(new TextEncoder().encode(name), 8);
    dv.setBigUint64(32, ioreqBuf, true);
    dv.setBigUint64(40, (1n << BigInt(vcpuNum)) - 1n, true);
    return b;
  };
  const errOf = (fn: () => unknown) => {
    try {
      fn();
      return 'ok';
    } catch (err) {
      return (err as AcrnHsmError).code;
    }
  };

  it('a fresh handle: EINVAL for everything but CREATE_VM, unknown commands included', () => {
    const hsm = Hsm.emulated();
    for (const request of [abi.ioctl.START_VM!, abi.ioctl.PAUSE_VM!, abi.ioctl.CREATE_IOREQ_CLIENT!, 0xa2ff, 0x1234]) {
      expect(errOf(() => hsm.ioctl(request))).toBe('EINVAL');
    }
  });

  it('CREATE_VM through raw bytes writes back vmid and vcpu_num, like the typed call', () => {
    const raw = Hsm.emulated();
    const page = Hsm.allocPage();
    const arg = vmCreation(page.address, 2, 'raw-vm');
    expect(raw.ioctl(abi.ioctl.CREATE_VM!, arg)).toBe(0);
    const dv = new DataView(arg.buffer);
    const typed = raw.reopen().createVm({ vcpuNum: 2, ioreqPage: Hsm.allocPage() });
    expect(dv.getUint16(0, true)).toBeGreaterThan(0);
    expect(dv.getUint16(0, true)).not.toBe(typed.vmid);
    expect(dv.getUint16(4, true)).toBe(typed.vcpuNum);
    // After a VM exists: unknown commands are ENOTTY; lifecycle preconditions are EPERM (-1 from the HV).
    expect(errOf(() => raw.ioctl(0xa2ff))).toBe('ENOTTY');
    expect(errOf(() => raw.ioctl(abi.ioctl.DESTROY_VM!))).toBe(errOf(() => typed.destroy()));
    expect(errOf(() => raw.ioctl(abi.ioctl.RESET_VM!))).toBe('EPERM');
    expect(errOf(() => typed.reset())).toBe('EPERM');
    expect(errOf(() => raw.ioctl(abi.ioctl.CREATE_IOREQ_CLIENT!))).toBe('ok');
    expect(errOf(() => raw.ioctl(abi.ioctl.CREATE_IOREQ_CLIENT!))).toBe('EEXIST');
    typed.createIoreqClient();
    expect(errOf(() => typed.createIoreqClient())).toBe('EEXIST');
    // A failed DESTROY (VM not paused: EPERM from the HV) tears nothing down (since Linux 5.14
    // vm.c acrn_vm_destroy calls the hypervisor first), so the ioreq page stays set: a second
    // CREATE_VM on this handle fails with EINVAL (acrn_ioreq_init: EEXIST), and so does every later one.
    expect(errOf(() => raw.ioctl(abi.ioctl.CREATE_VM!, vmCreation(Hsm.allocPage().address, 1, 'other')))).toBe('EINVAL');
    expect(errOf(() => raw.ioctl(abi.ioctl.CREATE_VM!, vmCreation(Hsm.allocPage().address, 1, 'third')))).toBe('EINVAL');
  });

  it('reserved fields and bad addresses are refused as the kernel does', () => {
    const hsm = Hsm.emulated();
    const page = Hsm.allocPage();
    const bad = vmCreation(page.address);
    bad[2] = 1; // reserved0
    expect(errOf(() => hsm.ioctl(abi.ioctl.CREATE_VM!, bad))).toBe('EINVAL');
    // An ioreq_buf that is not memory of ours: pinning fails, HSM reports EINVAL.
    expect(errOf(() => hsm.ioctl(abi.ioctl.CREATE_VM!, vmCreation(0xdead_0000n)))).toBe('EINVAL');
    // The address inside the page is rounded down to it: slots of that page become FREE.
    expect(hsm.ioctl(abi.ioctl.CREATE_VM!, vmCreation(page.address + 100n, 1, 'rounded'))).toBe(0);
    expect(decodeIoRequest(page.readSlot(15)).state).toBe('free');
    // NOTIFY with reserved != 0 → EINVAL; vcpu >= vcpu_num → EINVAL.
    const notify = new Uint8Array(8);
    notify[2] = 1;
    expect(errOf(() => hsm.ioctl(abi.ioctl.NOTIFY_REQUEST_FINISH!, notify))).toBe('EINVAL');
  });

  it('errors name the errno; the real device is absent here', () => {
    const hsm = Hsm.emulated();
    const vm = hsm.createVm({ vcpuNum: 1 });
    try {
      vm.reset();
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(AcrnHsmError);
      expect(err).toMatchObject({ code: 'EPERM', errno: 1 });
      expect((err as Error).message).toMatch(/RESET_VM/);
    }
    expect(() => hsm.createVm({ vcpuNum: 0 })).toThrow(RangeError);
    expect(() => hsm.createVm({ vcpuNum: 1, vmFlag: 4 as unknown as bigint })).toThrow(TypeError);
  });

  it.skipIf(require_exists('/dev/acrn_hsm'))('Hsm.open() names the path and the errno where there is no device', () => {
    expect(() => Hsm.open()).toThrow(expect.objectContaining({ code: 'ENOENT', errno: 2 }));
    expect(() => Hsm.open()).toThrow(/\/dev\/acrn_hsm/);
  });
});

function require_exists(path: string): boolean {
  try {
    return (process.getBuiltinModule?.('node:fs') as typeof import('node:fs') | undefined)?.existsSync(path) ?? false;
  } catch {
    return false;
  }
}
