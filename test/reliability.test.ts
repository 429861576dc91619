// Fault scenarios of TypeScript device backends, each with exactly-once accounting: every request
// a vCPU issued completed once with the value it expects, or all ones where the protocol says so,
// or was aborted by the device model's reset; no vCPU hangs (every wait is bounded).
//
// * handlers that throw or reject (sync and async loops): all ones + 'error', the client serves on;
// * an async handler that never settles: the time-out policy (handlerTimeoutMs, ERR_HANDLER_TIMEOUT);
// * the client destroyed while a handler is in flight: the request stays PROCESSING as in the
//   kernel; the device model's reset sequence aborts it and a new client serves the next boot;
// * the VM reset mid-run through the device model's sequence (stop, PAUSE, CLEAR_VM_IOREQ, RESET,
//   START) with 4 busy vCPUs;
// * a backend killed and restarted: a worker serving with runSync() terminated while a handler
//   is stuck; the VM is recovered as the device model's restart would, a new worker serves on;
// * NOTIFY for a slot the client did not claim: no such call in the client API.
import { Worker } from 'node:worker_threads';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { AcrnHsmError, Hsm, IoreqClient, stopClient, type RunResult, type ServedRequest, type Vm } from '../dist/index.js';

const DIST = pathToFileURL(join(import.meta.dirname, '../dist/index.js')).href;
const BASE = 0xfe10_0000n;

/** Resolves when `cond()` holds (checked on every macrotask turn), or fails after `ms`. */
async function until(what: string, cond: () => boolean, ms = 10_000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 1));
  }
}

/** `p`, or a failure after `ms` (so a hung vCPU fails the test instead of hanging it). */
function bounded<T>(p: Promise<T>, what: string, ms = 10_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: not settled after ${ms} ms`)), ms);
    }),
  ]);
}

/** Whether `p` is still pending after the current macrotask turn. */
async function pending(p: Promise<unknown>): Promise<boolean> {
  let settled = false;
  p.then(
    () => (settled = true),
    () => (settled = true),
  );
  await new Promise((r) => setImmediate(r));
  return !settled;
}

/** Per vCPU `i`: `n` times { write a tag at its own register, read it back }. */
function rwOps(i: number, n: number) {
  const a = BASE + BigInt(i * 8);
  const v = 0x5a00_0000_0000_0000n | BigInt(i);
  return [{ repeat: n, ops: [{ mmio: a, size: 8, write: v }, { mmio: a, size: 8, read: true, expect: v }] }];
}

/** A TS register block counting every access (the device side of the accounting). */
class CountedRegs {
  readonly name = 'counted-regs';
  readonly regs = new BigUint64Array(512);
  served = 0;
  read(offset: number): bigint {
    this.served++;
    return this.regs[offset >> 3] as bigint;
  }
  write(offset: number, _size: number, value: number | bigint): void {
    this.served++;
    this.regs[offset >> 3] = BigInt(value);
  }
}

/** A new client on `vm` serving `vcpus` x `n` round trips with the async loop: clean, exactly once. */
async function serveClean(hsm: Hsm, vm: Vm, vcpus: number, n: number): Promise<void> {
  const client = vm.createIoreqClient();
  const dev = new CountedRegs();
  client.mmio(BASE, 0x1000n, dev);
  const serving = client.run();
  const r = await bounded(hsm.guest(vm).run({ vcpus: Array.from({ length: vcpus }, (_, i) => rwOps(i, n)) }), 'guest after recovery');
  client.stop();
  await serving;
  expectClean(r, vcpus * n * 2);
  expect(dev.served).toBe(r.completed);
  expect(client.counters.notifies).toBe(r.completed);
  expect(client.counters.notifyErrors).toBe(0);
}

function expectClean(r: RunResult, requests: number): void {
  expect(r.mismatches).toEqual([]);
  expect(r.faults).toEqual([]);
  expect(r.stopped.every((s) => s === null)).toBe(true);
  expect(r.issued).toBe(requests);
  expect(r.completed).toBe(requests);
}

/** The device model's recovery: PAUSE, CLEAR_VM_IOREQ, RESET, START (after its client is gone). */
function resetLikeDm(vm: Vm): void {
  vm.pause();
  vm.clearVmIoreq();
  vm.reset();
  vm.start();
}

describe('reliability: handler faults', () => {
  it('throwing and rejecting handlers: all ones, one error each, every request completed once', async () => {
    const hsm = Hsm.emulated();
    const vm = hsm.createVm({ vcpuNum: 2 });
    const client = vm.createIoreqClient();
    const errors: ServedRequest[] = [];
    client.on('error', (_e: Error, req: ServedRequest) => errors.push(req));
    let calls = 0;
    client.pio(0x600, 4, {
      read: (offset) => {
        calls++;
        if (offset === 1) throw new Error('sync throw');
        if (offset === 2) return Promise.reject(new Error('async reject'));
        if (offset === 3) return Promise.resolve(0x33);
        return 0x11;
      },
      write: async (offset) => {
        calls++;
        if (offset === 1) throw new Error('async write throw');
      },
    });
    vm.start();
    const serving = client.run();
    const ops = [{ repeat: 50, ops: [
      { pio: 0x600, size: 1, read: true, expect: 0x11 },
      { pio: 0x601, size: 1, read: true, expect: 0xff },
      { pio: 0x602, size: 2, read: true, expect: 0xffff },
      { pio: 0x603, size: 1, read: true, expect: 0x33 },
      { pio: 0x601, size: 1, write: 5 },
    ] }];
    const r = await bounded(hsm.guest(vm).run({ vcpus: [ops, ops] }), 'guest');
    client.stop();
    await serving;
    expectClean(r, 2 * 50 * 5);
    expect(calls).toBe(r.completed);
    expect(errors.length).toBe(2 * 50 * 3);
    expect(client.counters.notifies).toBe(r.completed);
  });

  it('an async handler that never settles: completed after handlerTimeoutMs with all ones and ERR_HANDLER_TIMEOUT', async () => {
    const hsm = Hsm.emulated();
    const vm = hsm.createVm({ vcpuNum: 1 });
    const client = vm.createIoreqClient({ handlerTimeoutMs: 50 });
    expect(client.handlerTimeoutMs).toBe(50);
    const errors: { code: string; req: ServedRequest }[] = [];
    client.on('error', (e: AcrnHsmError, req: ServedRequest) => errors.push({ code: e.code, req }));
    let late: ((v: number) => void) | undefined;
    let lateWrite: (() => void) | undefined;
    client.mmio(0x9000_0000n, 0x100n, {
      read: (offset) => {
        if (offset === 0x10) return new Promise<number>((resolve) => (late = resolve)); // never settles by itself
        return 0x42;
      },
      write: (offset) => {
        if (offset === 0x20) return new Promise<void>((resolve) => (lateWrite = resolve));
        return undefined;
      },
    });
    vm.start();
    const serving = client.run();
    const t0 = performance.now();
    const r = await bounded(hsm.guest(vm).run({ vcpus: [[
      { mmio: 0x9000_0010n, size: 4, read: true, expect: 0xffff_ffff },
      { mmio: 0x9000_0020n, size: 8, write: 7n },
      { mmio: 0x9000_0000n, size: 4, read: true, expect: 0x42 },
    ]] }), 'guest');
    expect(performance.now() - t0).toBeGreaterThanOrEqual(2 * 45);
    // The stuck handlers settle late: ignored (the value does not reach a later request).
    late?.(0x1234);
    lateWrite?.();
    const r2 = await bounded(hsm.guest(vm).run({ vcpus: [[{ mmio: 0x9000_0000n, size: 4, read: true, expect: 0x42 }]] }), 'guest');
    client.stop();
    await serving;
    expectClean(r, 3);
    expectClean(r2, 1);
    expect(errors.map((e) => [e.code, e.req.direction, e.req.offset])).toEqual([
      ['ERR_HANDLER_TIMEOUT', 'read', 0x10],
      ['ERR_HANDLER_TIMEOUT', 'write', 0x20],
    ]);
    expect(client.counters.notifies).toBe(4);
  });

  it('handlerTimeoutMs is validated before a client is created; Infinity disables it', () => {
    const hsm = Hsm.emulated();
    const vm = hsm.createVm({ vcpuNum: 1 });
    for (const bad of [0, -1, 2 ** 31]) {
      expect(() => vm.createIoreqClient({ handlerTimeoutMs: bad })).toThrow(RangeError);
    }
    for (const bad of ['100', 100n, null, 1.5, Number.NaN, Number.NEGATIVE_INFINITY]) {
      expect(() => vm.createIoreqClient({ handlerTimeoutMs: bad as unknown as number })).toThrow(TypeError);
    }
    // No client was left behind by the refused calls.
    const c = vm.createIoreqClient({ handlerTimeoutMs: Number.POSITIVE_INFINITY });
    expect(c.handlerTimeoutMs).toBe(Number.POSITIVE_INFINITY);
    c.stop();
    expect(vm.createIoreqClient().handlerTimeoutMs).toBe(1000);
  });
});

describe('reliability: the client or the VM goes away mid-flight', () => {
  it('client destroyed while a handler is in flight: PROCESSING until the DM reset, then a new client', async () => {
    const hsm = Hsm.emulated();
    const vm = hsm.createVm({ vcpuNum: 2 });
    const client = vm.createIoreqClient({ handlerTimeoutMs: Number.POSITIVE_INFINITY });
    let release: ((v: number) => void) | undefined;
    let calls = 0;
    client.mmio(BASE, 0x1000n, {
      read: (offset) => {
        calls++;
        return offset === 0x10 ? new Promise<number>((r) => (release = r)) : 0x42;
      },
      write: () => {},
    });
    vm.start();
    const serving = client.run();
    const run = hsm.guest(vm).run({ vcpus: [[
      { mmio: BASE, size: 4, read: true, expect: 0x42 },
      { mmio: BASE + 0x10n, size: 4, read: true, expect: 0x42 },
      { mmio: BASE, size: 4, read: true, expect: 0x42 },
    ]] });
    await until('the handler in flight', () => release !== undefined);
    client.stop(); // DESTROY_IOREQ_CLIENT while the request is PROCESSING
    release?.(0x42); // its NOTIFY now finds no client: nothing happens, as in the kernel
    await bounded(serving, 'run() after stop');
    expect(await pending(run)).toBe(true);
    expect(vm.ioreqPage.readSlot(0).readUInt32LE(136)).toBe(2); // PROCESSING
    resetLikeDm(vm);
    const r = await bounded(run, 'vCPU after the DM reset');
    expect(r.stopped[0]).toBe('reset');
    expect([r.issued, r.completed]).toEqual([2, 1]);
    expect(r.mismatches).toEqual([]);
    expect(calls).toBe(2);
    await serveClean(hsm, vm, 2, 200);
  });

  it('VM reset mid-run with 4 busy vCPUs through the DM sequence: each vCPU loses at most its request in flight', async () => {
    const hsm = Hsm.emulated();
    const vm = hsm.createVm({ vcpuNum: 4 });
    const client = vm.createIoreqClient();
    const dev = new CountedRegs();
    client.mmio(BASE, 0x1000n, dev);
    vm.start();
    const serving = client.run();
    const run = hsm.guest(vm).run({ vcpus: [0, 1, 2, 3].map((i) => rwOps(i, 1_000_000)) });
    await until('requests served', () => dev.served > 2000);
    client.stop();
    await bounded(serving, 'run() after stop');
    resetLikeDm(vm);
    const r = await bounded(run, 'vCPUs after the DM reset');
    expect(r.stopped.every((s) => s === 'reset' || s === 'paused')).toBe(true);
    expect(r.mismatches).toEqual([]);
    expect(r.faults).toEqual([]);
    const lost = r.issued - r.completed;
    expect(lost).toBeGreaterThanOrEqual(0);
    expect(lost).toBeLessThanOrEqual(4);
    // Device side: every request a handler served was notified once; none completed unserved.
    const c = client.counters;
    expect(dev.served).toBe(c.js);
    expect(c.notifies).toBeLessThanOrEqual(c.js);
    expect(r.completed).toBeLessThanOrEqual(c.notifies);
    expect(c.js).toBeLessThanOrEqual(r.issued);
    await serveClean(hsm, vm, 4, 300);
  });
});

/** Worker source: serves BASE with runSync(); counts handler calls in shared memory; can hang. */
const WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
(async () => {
  const { Vm } = await import(workerData.dist);
  const vm = Vm.fromShared(workerData.token);
  const client = vm.createIoreqClient();
  const served = new Int32Array(workerData.served);
  const regs = new BigUint64Array(512);
  client.mmio(${BASE}n, 0x1000n, {
    read(offset) {
      Atomics.add(served, 0, 1);
      if (workerData.hang && offset === 0xff8) {
        parentPort.postMessage({ stuck: true });
        const never = new Int32Array(new SharedArrayBuffer(4));
        for (;;) Atomics.wait(never, 0, 0, 20); // stuck until terminated
      }
      return regs[offset >> 3];
    },
    write(offset, _size, value) {
      Atomics.add(served, 0, 1);
      regs[offset >> 3] = value;
    },
  });
  parentPort.postMessage({ stopToken: client.stopToken });
  client.runSync();
  parentPort.postMessage({ done: true });
})();
`;

function startBackend(vm: Vm, hang: boolean) {
  const served = new Int32Array(new SharedArrayBuffer(4));
  const worker = new Worker(WORKER, { eval: true, workerData: { dist: DIST, token: vm.share(), served: served.buffer, hang } });
  const messages: Record<string, unknown>[] = [];
  worker.on('message', (m: Record<string, unknown>) => messages.push(m));
  const errors: unknown[] = [];
  worker.on('error', (e) => errors.push(e));
  const ready = (async () => {
    await until('the backend ready', () => messages.some((m) => 'stopToken' in m) || errors.length > 0);
    if (errors.length > 0) throw errors[0];
    return (messages.find((m) => 'stopToken' in m) as { stopToken: number }).stopToken;
  })();
  return { worker, served, messages, ready };
}

describe('reliability: a backend killed and restarted', () => {
  it('worker terminated while a handler is stuck; the VM recovered as the device model does; a new worker serves on', async () => {
    const hsm = Hsm.emulated();
    const vm = hsm.createVm({ vcpuNum: 4 });
    const b1 = startBackend(vm, true);
    await b1.ready;
    vm.start();
    const ops = (i: number) => (i === 0 ? [...rwOps(0, 300), { mmio: BASE + 0xff8n, size: 8, read: true }, ...rwOps(0, 1_000_000)] : rwOps(i, 1_000_000));
    const run = hsm.guest(vm).run({ vcpus: [0, 1, 2, 3].map(ops) });
    await until('the handler stuck', () => b1.messages.some((m) => m.stuck === true));
    // The backend dies. Its native wait, if any, is released by destroying its ioreq client.
    const exited = b1.worker.terminate();
    vm.destroyIoreqClient();
    await bounded(exited, 'worker exit');
    // Only then the recovery (no late NOTIFY of the dead backend can reach the new boot).
    resetLikeDm(vm);
    const r1 = await bounded(run, 'vCPUs after the recovery');
    expect(r1.stopped[0]).not.toBeNull();
    expect(r1.stopped.every((s) => s === 'reset' || s === 'paused')).toBe(true);
    expect(r1.mismatches).toEqual([]);
    expect(r1.faults).toEqual([]);
    const lost = r1.issued - r1.completed;
    expect(lost).toBeGreaterThanOrEqual(1); // at least the stuck read
    expect(lost).toBeLessThanOrEqual(4);
    const served1 = Atomics.load(b1.served, 0);
    expect(served1).toBeGreaterThanOrEqual(r1.completed);
    expect(served1).toBeLessThanOrEqual(r1.issued);
    // The restarted backend.
    const b2 = startBackend(vm, false);
    const stopToken = await b2.ready;
    const n = 500;
    const r2 = await bounded(hsm.guest(vm).run({ vcpus: [0, 1, 2, 3].map((i) => rwOps(i, n)) }), 'guest on the new backend');
    expect(stopClient(stopToken)).toBe(true);
    await until('the new backend done', () => b2.messages.some((m) => m.done === true));
    await b2.worker.terminate();
    expectClean(r2, 4 * n * 2);
    expect(Atomics.load(b2.served, 0)).toBe(r2.completed);
  });
});

describe('reliability: NOTIFY only for claimed requests', () => {
  it('the client API has no NOTIFY: the client notifies exactly the requests it handed out', () => {
    const names = (o: object) => {
      const out: string[] = [];
      for (let p = o; p && p !== Object.prototype; p = Object.getPrototypeOf(p)) out.push(...Object.getOwnPropertyNames(p));
      return out;
    };
    const hsm = Hsm.emulated();
    const vm = hsm.createVm({ vcpuNum: 1 });
    const client = vm.createIoreqClient();
    expect(client).toBeInstanceOf(IoreqClient);
    for (const n of [...names(client), ...names(client.handle)]) expect(n).not.toMatch(/notify|complete/i);
    // The raw ioctl stays on Vm (the kernel's interface; documented as raw).
    expect(typeof vm.notifyRequestFinish).toBe('function');
    client.stop();
  });
});
