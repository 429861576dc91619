// fast-check at the TypeScript boundary: every bad value is a TypeError, a RangeError or an
// AcrnHsmError (with a code), never a crash, another exception type, or a silent wrong result.
//
// * decodeIoRequest / decodeIoreqPage on arbitrary bytes; encodeIoRequest on arbitrary objects,
//   and decode(encode(x)) === x for valid requests;
// * decodeTrace / traceReport / traceExportChrome / traceExportCsv on arbitrary and truncated bytes;
// * IoreqClient.pio / mmio / pci and the device constructors with arbitrary arguments;
// * Hsm / Vm / UserPage methods and stopClient with arbitrary arguments.
//
// Runs FUZZ_RUNS cases per property (default 200; `FUZZ_RUNS=20000 npx vitest run
// test/fuzz.test.ts` for a longer run). fast-check prints the seed and the shrunk counterexample
// of a failure; FUZZ_SEED=<n> replays one.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  abi,
  AcrnHsmError,
  decodeIoRequest,
  decodeIoreqPage,
  decodeTrace,
  encodeIoRequest,
  encodeTrace,
  Hsm,
  PciFunction,
  RegisterFile,
  stopClient,
  traceExportChrome,
  traceExportCsv,
  traceReport,
  Uart16550,
  Vm,
  workloadJson,
} from '../dist/index.js';

const RUNS = Number(process.env.FUZZ_RUNS ?? 200);
const SEED = process.env.FUZZ_SEED === undefined ? undefined : Number(process.env.FUZZ_SEED);
const params = (numRuns = RUNS) => ({ numRuns, endOnFailure: process.env.FUZZ_NO_SHRINK !== undefined, ...(SEED === undefined ? {} : { seed: SEED }) });

/** Calls `f`; passes if it returns, or throws one of the documented error types. */
function cleanly(f: () => unknown): 'ok' | 'refused' {
  try {
    f();
    return 'ok';
  } catch (err) {
    if (err instanceof AcrnHsmError) {
      expect(err.code).toMatch(/^(ERR_[A-Z0-9_]+|E[A-Z]+)$/);
      expect(err.message.length).toBeGreaterThan(0);
      return 'refused';
    }
    if (err instanceof TypeError || err instanceof RangeError) return 'refused';
    throw err;
  }
}

/** Anything, including the values that break naive checks. */
const anything = fc.oneof(
  fc.anything(),
  fc.constantFrom(
    -1, 0, 1, 0.5, -0, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 32, 2 ** 53, -(2 ** 31),
    -1n, 0n, 1n, 1n << 64n, (1n << 64n) - 1n, 1n << 63n,
    '', '0', '0x10', null, undefined, true, [], {}, new Uint8Array(3), Symbol('s'),
  ),
  fc.integer(),
  fc.bigInt(),
);

const smallBytes = fc.uint8Array({ maxLength: 600 });

/**
 * An fd number no file of this process has. An IRQFD on an eventfd this process uses for
 * something else (libuv has some) would consume that eventfd's events, as the kernel's irqfd
 * does: the event loop would miss its wake-ups. The fuzzer must not do that to its own process.
 */
const FOREIGN_FD = 1_000_000;
function notOurs(fd: unknown): unknown {
  return typeof fd === 'number' && Number.isInteger(fd) && fd >= 0 && fd < FOREIGN_FD ? FOREIGN_FD + fd : fd;
}
const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });

const ioRequest = fc.oneof(
  fc.record({
    type: fc.constant('pio' as const),
    state: fc.constantFrom('pending', 'complete', 'processing', 'free'),
    direction: fc.constantFrom('read', 'write'),
    address: fc.bigInt({ min: 0n, max: 0xffffn }),
    size: fc.constantFrom(1, 2, 4),
    value: fc.integer({ min: 0, max: 0xffff_ffff }),
    kernelHandled: fc.boolean(),
    completionPolling: fc.boolean(),
  }),
  fc.record({
    type: fc.constant('mmio' as const),
    state: fc.constantFrom('pending', 'complete', 'processing', 'free'),
    direction: fc.constantFrom('read', 'write'),
    address: fc.bigInt({ min: 0n, max: (1n << 64n) - 9n }),
    size: fc.constantFrom(1, 2, 4, 8),
    value: u64,
    kernelHandled: fc.boolean(),
    completionPolling: fc.boolean(),
  }),
  fc.record({
    type: fc.constant('pci' as const),
    state: fc.constantFrom('pending', 'complete', 'processing', 'free'),
    direction: fc.constantFrom('read', 'write'),
    size: fc.constantFrom(1, 2, 4),
    value: fc.integer({ min: 0, max: 0xffff_ffff }),
    bus: fc.integer({ min: 0, max: 0xffff_ffff }),
    device: fc.integer({ min: 0, max: 0xffff_ffff }),
    function: fc.integer({ min: 0, max: 0xffff_ffff }),
    register: fc.integer({ min: 0, max: 0xffff_ffff }),
    kernelHandled: fc.boolean(),
    completionPolling: fc.boolean(),
  }),
);

describe('fuzz: decoders and encoder', () => {
  it('decodeIoRequest / decodeIoreqPage on arbitrary bytes', () => {
    let decoded = 0;
    fc.assert(
      fc.property(fc.oneof(smallBytes, fc.uint8Array({ minLength: 256, maxLength: 4200 })), fc.nat(16), (bytes, slot) => {
        // Give half the inputs a plausible state and type so the success path is reached.
        if (bytes.length >= 256 && slot < 8) {
          const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
          dv.setUint32(136, slot & 3, true);
          dv.setUint32(0, (slot >> 2) % 3, true);
          dv.setBigUint64(64 + 16, 4n, true); // reqs.size
          dv.setBigUint64(64 + 8, 0x1000n, true); // reqs.address
        }
        if (cleanly(() => decodeIoRequest(bytes)) === 'ok') {
          decoded++;
          const req = decodeIoRequest(bytes);
          expect(decodeIoRequest(encodeIoRequest(req))).toEqual(req);
        }
        const page = new Uint8Array(4096);
        page.set(bytes.subarray(0, 4096));
        const slots = decodeIoreqPage(page);
        expect(slots.length).toBe(16);
        for (const s of slots) expect(s.request !== undefined || s.error instanceof AcrnHsmError).toBe(true);
        expect(cleanly(() => decodeIoreqPage(bytes))).toBe(bytes.length >= 4096 ? 'ok' : 'refused');
      }),
      params(RUNS * 5),
    );
    expect(decoded).toBeGreaterThan(0);
  });

  it('encodeIoRequest: valid requests round-trip; anything else is refused cleanly', () => {
    fc.assert(
      fc.property(ioRequest, (req) => {
        const bytes = encodeIoRequest(req);
        expect(bytes.length).toBe(256);
        expect(decodeIoRequest(bytes)).toEqual(req);
      }),
      params(),
    );
    fc.assert(
      fc.property(anything, ioRequest, fc.constantFrom('type', 'state', 'direction', 'address', 'size', 'value', 'bus', 'register'), (bad, req, key) => {
        cleanly(() => encodeIoRequest(bad as never));
        cleanly(() => encodeIoRequest({ ...req, [key]: bad } as never));
      }),
      params(),
    );
  });

  it('the decoders refuse non-bytes cleanly', () => {
    fc.assert(
      fc.property(anything, (bad) => {
        if (bad instanceof Uint8Array) return;
        expect(cleanly(() => decodeIoRequest(bad as never))).toBe('refused');
        expect(cleanly(() => decodeIoreqPage(bad as never))).toBe('refused');
        expect(cleanly(() => decodeTrace(bad as never))).toBe('refused');
      }),
      params(),
    );
  });

  it('the trace decoder, report and exports on arbitrary and truncated traces', () => {
    const valid = encodeTrace(
      { vm: { name: 'fuzz', vcpuCount: 2 } },
      Array.from({ length: 20 }, (_, i) => ({
        vcpu: i & 1,
        type: 'mmio' as const,
        direction: i & 2 ? ('write' as const) : ('read' as const),
        size: 4,
        address: 0xfed0_0000n + BigInt(i * 4),
        value: BigInt(i),
        timestamps: { pending: BigInt(1000 * i), free: BigInt(1000 * i + 500) },
      })),
    );
    fc.assert(
      fc.property(fc.oneof(smallBytes, fc.nat(valid.length).map((n) => valid.slice(0, n))), fc.nat(valid.length), fc.integer({ min: 0, max: 255 }), (raw, at, byte) => {
        const corrupt = valid.slice();
        corrupt[at % corrupt.length] = byte;
        for (const bytes of [raw, corrupt]) {
          cleanly(() => decodeTrace(bytes));
          cleanly(() => traceReport(bytes, 'vcpu'));
          cleanly(() => traceExportChrome(bytes));
          cleanly(() => traceExportCsv(bytes));
        }
      }),
      params(),
    );
    expect(decodeTrace(valid).count).toBe(20);
  });
});

describe('fuzz: client and HSM arguments', () => {
  const hsm = Hsm.emulated();
  const vm = hsm.createVm({ vcpuNum: 2 });
  const client = vm.createIoreqClient();
  const dev = { read: () => 0, write: () => {} };

  it('client.pio / mmio / pci and the native devices: bad arguments refused, good ones registered', () => {
    let registered = 0;
    fc.assert(
      fc.property(anything, anything, anything, fc.nat(3), (a, b, c, which) => {
        const device = [dev, new RegisterFile(16), a, new Uart16550()][which];
        const r = [
          cleanly(() => client.pio(a as never, b as never, device as never)),
          cleanly(() => client.mmio(a as never, b as never, device as never)),
          cleanly(() => client.pci(a as never, b as never, c as never, dev)),
          cleanly(() => client.pci(0, 1, 0, a as never)),
          cleanly(() => new RegisterFile(a as never)),
          cleanly(() => new PciFunction(a as never)),
          cleanly(() => new PciFunction({ vendorId: a, deviceId: b, bars: c } as never)),
          cleanly(() => stopClient(a as never)),
        ];
        registered += r.slice(0, 3).filter((x) => x === 'ok').length;
      }),
      params(),
    );
    // Valid ranges, which fast-check finds only rarely, are accepted (and overlapping ones not).
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xfff }), fc.bigInt({ min: 1n << 40n, max: 1n << 48n }), (port, gpa) => {
        const r1 = cleanly(() => client.pio(port * 16, 8, dev));
        const r2 = cleanly(() => client.mmio(gpa << 12n, 0x1000n, dev));
        registered += Number(r1 === 'ok') + Number(r2 === 'ok');
      }),
      params(50),
    );
    expect(registered).toBeGreaterThan(0);
  });

  it('Hsm / Vm / UserPage / Guest methods: bad arguments refused with a documented error', () => {
    const page = Hsm.allocPage();
    const other = Hsm.emulated();
    // Found by this property: an errno the core did not name (EISDIR) gave a plain Error.
    expect(cleanly(() => Hsm.open('.'))).toBe('refused');
    expect(cleanly(() => Hsm.open('/'))).toBe('refused');
    fc.assert(
      fc.property(anything, anything, anything, (a, b, c) => {
        cleanly(() => Hsm.emulated(a as never));
        cleanly(() => Hsm.emulated({ pcpus: a, maxVms: b } as never));
        cleanly(() => Hsm.allocPages(typeof a === 'number' ? a % (1 << 20) : (a as never)));
        cleanly(() => Hsm.open(a as never));
        cleanly(() => Vm.fromShared(a as never));
        cleanly(() => workloadJson(a as never));
        cleanly(() => page.read(a as never, b as never));
        cleanly(() => page.write(a as never, b as never));
        cleanly(() => page.readSlot(a as never));
        cleanly(() => hsm.guest(a as never));
        // A second handle: createVm may succeed there (one VM per handle); its VM is destroyed.
        const created = cleanly(() => {
          const v = other.reopen().createVm({ vcpuNum: a, vmFlag: b, cpuAffinity: c } as never);
          v.destroy();
        });
        expect(['ok', 'refused']).toContain(created);
        cleanly(() => hsm.createVm(a as never));
        cleanly(() => vm.setVcpuRegs(a as never));
        cleanly(() => vm.setVcpuRegs({ vcpuId: a, rip: b, cr0: c } as never));
        cleanly(() => vm.setMemseg(a as never));
        cleanly(() => vm.setMemseg({ type: a, attr: b, userVmPa: c, vmaBase: 0n, len: 0n } as never));
        cleanly(() => vm.unsetMemseg({ type: 1, attr: 0, userVmPa: a, vmaBase: b, len: c } as never));
        cleanly(() => vm.mapRam(a as never, b as never, c as never));
        cleanly(() => vm.notifyRequestFinish(typeof a === 'number' ? a + 2 : (a as never)));
        cleanly(() => vm.ioeventfd(a as never));
        cleanly(() => vm.ioeventfd({ fd: notOurs(a), flags: b, addr: c, len: 4 } as never));
        cleanly(() => vm.irqfd({ fd: notOurs(a), flags: b, msiAddr: c, msiData: 0n } as never));
        cleanly(() => vm.injectMsi(a as never, b as never));
        cleanly(() => vm.setIrqline(a as never, b as never));
        cleanly(() => vm.createIoreqClient(a as never));
        cleanly(() => vm.createIoreqClient({ wake: a, handlerTimeoutMs: b } as never));
      }),
      params(),
    );
  });

  it('the raw ioctl: arbitrary requests and arguments give a result or an errno, never a crash', () => {
    // ATTACH blocks by design while a client exists and nothing is pending (the Rust fuzzer runs
    // it on a helper thread and releases it); here it would block the event loop.
    const ATTACH = abi.ioctl.ATTACH_IOREQ_CLIENT as number;
    const fresh = Hsm.emulated();
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffff_ffff }), fc.oneof(fc.constant(undefined), u64, fc.uint8Array({ maxLength: 320 }), anything), (req, arg) => {
        if (req === ATTACH) return;
        const h = fresh.reopen();
        const r = cleanly(() => h.ioctl(req, arg as never));
        // A fresh handle has no VM: only CREATE_VM may do anything.
        if (r === 'ok') expect(req).toBe(abi.ioctl.CREATE_VM);
      }),
      params(RUNS * 5),
    );
    const errnos = new Set<string>();
    fc.assert(
      fc.property(fc.constantFrom(...Object.values(abi.ioctl)), fc.oneof(fc.constant(undefined), u64, fc.uint8Array({ maxLength: 320 })), (req, arg) => {
        if (req === ATTACH) return;
        if ((req === abi.ioctl.IRQFD || req === abi.ioctl.IOEVENTFD) && arg instanceof Uint8Array && arg.length >= 4) {
          new DataView(arg.buffer, arg.byteOffset).setInt32(0, FOREIGN_FD, true);
        }
        try {
          vm.hsm?.ioctl(req, arg as never);
        } catch (err) {
          if (!(err instanceof AcrnHsmError)) throw err;
          expect(err.errno).toBeGreaterThan(0);
          errnos.add(err.code);
        }
      }),
      params(),
    );
    for (const e of errnos) expect(['EPERM', 'ENOENT', 'EBADF', 'ENOMEM', 'EFAULT', 'EBUSY', 'EEXIST', 'ENODEV', 'EINVAL', 'ENOTTY', 'ENOSPC']).toContain(e);
  });
});
