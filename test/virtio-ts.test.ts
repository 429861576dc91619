// virtio devices written in TypeScript (client.virtio) behind the core's virtio-pci transport.
// A scripted guest (the workload engine) is the driver: it reads the header and capability
// list, programs BAR 4, negotiates features and sets up queues through the common
// configuration; the test lays requests out in guest RAM (vm.memory.write) and the guest rings
// the notify register, then takes the INTx interrupt. Chains reach the TypeScript devices with
// zero-copy views of guest memory; async handlers complete out of order.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { afterEach, describe, expect, it } from 'vitest';
import { Hsm, stopClient, TsVirtioBlk, TsVirtioConsole, TsVirtioRng, type IoreqClient, type VirtioChain, type VirtioDevice, type Vm, type WorkloadOp } from '../dist/index.js';

const dir = mkdtempSync(join(tmpdir(), 'acrn-virtio-ts-'));
const RAM = 0x10_0000n;
const F_VERSION_1 = 1n << 32n;

/** One driver of one virtio-pci function at 00:dev.0, BAR 4 at `bar`, rings and data in its 64 KiB of RAM. */
class Driver {
  readonly base: bigint;
  readonly bar: bigint;
  readonly gsi: number;
  private nextDesc: number[] = [];
  private availIdx: number[] = [];
  private usedSeen: number[] = [];
  private dataAt = 0x8000n;

  constructor(
    readonly vm: Vm,
    readonly dev: number,
    readonly queues: number,
    readonly qsize = 8,
  ) {
    this.base = RAM + BigInt(dev) * 0x1_0000n;
    this.bar = 0xc100_0000n + BigInt(dev) * 0x10_0000n;
    this.gsi = 8 + dev;
    for (let q = 0; q < queues; q++) {
      this.nextDesc.push(0);
      this.availIdx.push(0);
      this.usedSeen.push(0);
    }
  }
  at(register: number) {
    return { bus: 0, device: this.dev, function: 0, register };
  }
  desc(q: number) {
    return this.base + BigInt(q) * 0x3000n;
  }
  avail(q: number) {
    return this.desc(q) + 0x1000n;
  }
  used(q: number) {
    return this.desc(q) + 0x2000n;
  }
  c(off: number, size: number, write: number | bigint): WorkloadOp {
    return { mmio: this.bar + BigInt(off), size, write: BigInt(write) } as WorkloadOp;
  }
  /** §3.1.1: reset, ACKNOWLEDGE | DRIVER, features, FEATURES_OK, the queues, DRIVER_OK. */
  init(deviceId: number, offered: bigint, accept: bigint): WorkloadOp[] {
    const ops: WorkloadOp[] = [
      { pci: this.at(0x00), size: 4, read: true, expect: ((0x1040 + deviceId) << 16) | 0x1af4 },
      // Capabilities: the list bit, the pointer, the common configuration's vendor cap in BAR 4.
      { pci: this.at(0x06), size: 2, read: true, expect: 0x10 },
      { pci: this.at(0x34), size: 1, read: true, expect: 0x40 },
      { pci: this.at(0x40), size: 4, read: true, expect: 0x0110_5009 },
      { pci: this.at(0x44), size: 1, read: true, expect: 4 },
      { pci: this.at(0x20), size: 4, write: Number(this.bar) },
      { pci: this.at(0x04), size: 2, write: 0x2 },
      { pci: this.at(0x3c), size: 1, write: this.gsi },
      { mmio: this.bar + 0x12n, size: 2, read: true, expect: this.queues },
      this.c(0x14, 1, 0),
      this.c(0x14, 1, 3),
      this.c(0x00, 4, 0),
      { mmio: this.bar + 0x04n, size: 4, read: true, expect: Number(offered & 0xffff_ffffn) },
      this.c(0x00, 4, 1),
      { mmio: this.bar + 0x04n, size: 4, read: true, expect: Number(offered >> 32n) },
      this.c(0x08, 4, 0),
      this.c(0x0c, 4, accept & 0xffff_ffffn),
      this.c(0x08, 4, 1),
      this.c(0x0c, 4, accept >> 32n),
      this.c(0x14, 1, 0xb),
      { mmio: this.bar + 0x14n, size: 1, read: true, expect: 0xb },
    ];
    for (let q = 0; q < this.queues; q++) {
      ops.push(this.c(0x16, 2, q), this.c(0x18, 2, this.qsize), this.c(0x20, 8, this.desc(q)), this.c(0x28, 8, this.avail(q)), this.c(0x30, 8, this.used(q)), this.c(0x1c, 2, 1));
    }
    ops.push(this.c(0x14, 1, 0xf));
    return ops;
  }
  /** A buffer in the device's data area, with `data` (or zeros) in it. */
  buf(data: Buffer | number): { gpa: bigint; len: number } {
    const b = typeof data === 'number' ? Buffer.alloc(data, 0xee) : data;
    const gpa = this.base + this.dataAt;
    this.dataAt += BigInt((b.length + 15) & ~15);
    this.vm.memory.write(gpa, b);
    return { gpa, len: b.length };
  }
  /** A chain of `[buffer, writable]` in queue `q`'s descriptor table, published; returns its head. */
  post(q: number, bufs: [{ gpa: bigint; len: number }, boolean][]): number {
    const head = this.nextDesc[q]!;
    bufs.forEach(([b, w], k) => {
      const i = (head + k) % this.qsize;
      const last = k + 1 === bufs.length;
      const d = Buffer.alloc(16);
      d.writeBigUInt64LE(b.gpa, 0);
      d.writeUInt32LE(b.len, 8);
      d.writeUInt16LE((last ? 0 : 1) | (w ? 2 : 0), 12);
      d.writeUInt16LE((i + 1) % this.qsize, 14);
      this.vm.memory.write(this.desc(q) + BigInt(16 * i), d);
    });
    this.nextDesc[q] = (head + bufs.length) % this.qsize;
    this.publish(q, head);
    return head;
  }
  publish(q: number, head: number): void {
    const slot = this.availIdx[q]! % this.qsize;
    const h = Buffer.alloc(2);
    h.writeUInt16LE(head);
    this.vm.memory.write(this.avail(q) + 4n + BigInt(2 * slot), h);
    this.availIdx[q] = (this.availIdx[q]! + 1) & 0xffff;
    h.writeUInt16LE(this.availIdx[q]!);
    this.vm.memory.write(this.avail(q) + 2n, h);
  }
  /** The used elements `[id, len]` added since the last call. */
  takeUsed(q: number): [number, number][] {
    const idx = this.vm.memory.read(this.used(q) + 2n, 2).readUInt16LE(0);
    const out: [number, number][] = [];
    while (this.usedSeen[q] !== idx) {
      const slot = this.usedSeen[q]! % this.qsize;
      const e = this.vm.memory.read(this.used(q) + 4n + BigInt(8 * slot), 8);
      out.push([e.readUInt32LE(0), e.readUInt32LE(4)]);
      this.usedSeen[q] = (this.usedSeen[q]! + 1) & 0xffff;
    }
    return out;
  }
  notify(q: number): WorkloadOp {
    return { mmio: this.bar + 0x3000n + BigInt(4 * q), size: 2, write: BigInt(q) };
  }
  /** Notify, take the INTx interrupt, acknowledge it (ISR: 1, queue). */
  kickAndWait(...qs: number[]): WorkloadOp[] {
    return [...qs.map((q) => this.notify(q)), ...this.waitIrq()];
  }
  waitIrq(): WorkloadOp[] {
    return [
      { wait_irq: { gsi: this.gsi }, timeout_ns: 5_000_000_000n },
      { mmio: this.bar + 0x1000n, size: 1, read: true, expect: 1 },
    ];
  }
}

type Setup = { hsm: Hsm; vm: Vm; client: IoreqClient; serving: Promise<void>; errors: Error[] };
let current: Setup | undefined;

function setup(register: (client: IoreqClient) => void): Setup {
  const hsm = Hsm.emulated();
  const vm = hsm.createVm({ vcpuNum: 1 });
  vm.mapRam(RAM, Hsm.allocPages(0x8_0000));
  const client = vm.createIoreqClient();
  const errors: Error[] = [];
  client.on('error', (e: Error) => errors.push(e));
  register(client);
  vm.start();
  const serving = client.run();
  current = { hsm, vm, client, serving, errors };
  return current;
}

afterEach(async () => {
  if (current) {
    current.client.stop();
    await current.serving;
    current.vm.pause();
    current = undefined;
  }
});

async function guest(s: Setup, ops: WorkloadOp[]) {
  const r = await s.hsm.guest(s.vm).run({ vcpus: [ops] });
  expect(r.faults).toEqual([]);
  expect(r.mismatches).toEqual([]);
  return r;
}

async function until(cond: () => boolean, what: string) {
  for (let i = 0; i < 500 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
  if (!cond()) throw new Error(`timed out waiting for ${what}`);
}

describe('TypeScript virtio devices (client.virtio)', () => {
  it.each([false, true])('TsVirtioBlk (async I/O: %s): write, read, flush and get-id over a file, data in guest memory and on disk', async (async) => {
    const file = join(dir, `disk-${async}.img`);
    const img = Buffer.alloc(32 * 512);
    for (let s = 0; s < 32; s++) img.write(`sector ${s}`.padEnd(16, '.'), s * 512);
    writeFileSync(file, img);
    const blk = new TsVirtioBlk(file, { id: 'ts-disk-1', async });
    const s = setup((c) => c.virtio(0, 3, 0, blk));
    const d = new Driver(s.vm, 3, 1, 32);
    // Offered: BLK_SIZE | FLUSH | INDIRECT_DESC | RING_EVENT_IDX, VERSION_1.
    const offered = (1n << 6n) | (1n << 9n) | (1n << 28n) | (1n << 29n) | F_VERSION_1;
    await guest(s, [...d.init(2, offered, F_VERSION_1 | (1n << 9n)), { mmio: d.bar + 0x2000n, size: 8, read: true, expect: 32 }]);
    expect(s.client.virtioCounters(blk)).toMatchObject({ status: 0xf, driverFeatures: F_VERSION_1 | (1n << 9n) });

    const hdr = (type: number, sector: bigint) => {
      const h = Buffer.alloc(16);
      h.writeUInt32LE(type, 0);
      h.writeBigUInt64LE(sector, 8);
      return d.buf(h);
    };
    const payload = Buffer.alloc(512, 0x57);
    payload.write('written by the guest');
    // Each round: notify, wait for every completion (async I/O completes in any order), take
    // the level interrupt. A driver orders dependent requests itself: the write completes
    // before the flush and the read are made available.
    const round = async (n: number) => {
      await guest(s, [d.notify(0)]);
      await until(() => s.vm.memory.read(d.used(0) + 2n, 2).readUInt16LE(0) === n, `${n} used entries`);
      await guest(s, d.waitIrq());
      return d.takeUsed(0).sort((x, y) => x[0] - y[0]);
    };
    const byHead = (e: [number, number][]) => e.sort((x, y) => x[0] - y[0]);
    const wStatus = d.buf(1);
    const hw = d.post(0, [[hdr(1, 5n), false], [d.buf(payload), false], [wStatus, true]]);
    expect(await round(1)).toEqual([[hw, 1]]);
    const rData = d.buf(512);
    const rStatus = d.buf(1);
    const hr = d.post(0, [[hdr(0, 5n), false], [rData, true], [rStatus, true]]);
    const fStatus = d.buf(1);
    const hf = d.post(0, [[hdr(4, 0n), false], [fStatus, true]]);
    const id = d.buf(20);
    const idStatus = d.buf(1);
    const hi = d.post(0, [[hdr(8, 0n), false], [id, true], [idStatus, true]]);
    // Out of the disk.
    const eStatus = d.buf(1);
    const he = d.post(0, [[hdr(0, 40n), false], [d.buf(512), true], [eStatus, true]]);
    expect(await round(5)).toEqual(
      byHead([
        [hr, 513],
        [hf, 1],
        [hi, 21],
        [he, 1],
      ]),
    );
    const st = (b: { gpa: bigint }) => s.vm.memory.read(b.gpa, 1)[0];
    expect([st(wStatus), st(rStatus), st(fStatus), st(idStatus), st(eStatus)]).toEqual([0, 0, 0, 0, 1]);
    expect(s.vm.memory.read(rData.gpa, 512).equals(payload)).toBe(true);
    expect(s.vm.memory.read(id.gpa, 20).toString('latin1').replace(/\0+$/, '')).toBe('ts-disk-1');
    expect(readFileSync(file).subarray(5 * 512, 6 * 512).equals(payload)).toBe(true);
    expect(readFileSync(file).subarray(4 * 512, 4 * 512 + 16).toString()).toBe('sector 4........');
    expect(blk.stats).toMatchObject({ requests: 5, readBytes: 512, writtenBytes: 512, flushes: 1, errors: 1 });
    const uns = d.buf(1);
    const hu = d.post(0, [[hdr(99, 0n), false], [uns, true]]);
    expect(await round(6)).toEqual([[hu, 1]]);
    expect(st(uns)).toBe(2);
    expect(s.client.virtioCounters(blk)).toMatchObject({ chains: 6, needsReset: 0, lastError: null });
    expect(s.errors).toEqual([]);
    blk.close();
  });

  it('TsVirtioRng fills the writable buffers; TsVirtioConsole prints and receives', async () => {
    const rng = new TsVirtioRng();
    const printed: Buffer[] = [];
    const con = new TsVirtioConsole({ output: (b) => printed.push(Buffer.from(b)) });
    const s = setup((c) => c.virtio(0, 4, 0, rng).virtio(0, 5, 0, con));
    const r = new Driver(s.vm, 4, 1);
    const k = new Driver(s.vm, 5, 2);
    const base = (1n << 28n) | (1n << 29n) | F_VERSION_1;
    await guest(s, [...r.init(4, base, F_VERSION_1), ...k.init(3, base, F_VERSION_1)]);
    const a = r.buf(64);
    const b = r.buf(32);
    const h = r.post(0, [[a, true], [b, true]]);
    await guest(s, r.kickAndWait(0));
    expect(r.takeUsed(0)).toEqual([[h, 96]]);
    const bytes = Buffer.concat([s.vm.memory.read(a.gpa, 64), s.vm.memory.read(b.gpa, 32)]);
    expect(bytes.equals(Buffer.alloc(96, 0xee))).toBe(false);
    expect(new Set(bytes).size).toBeGreaterThan(8);
    expect(rng.bytes).toBe(96);

    // Console: a receive buffer waits for input; the guest prints on the transmit queue.
    const rx = k.buf(16);
    const hrx = k.post(0, [[rx, true]]);
    const htx = k.post(1, [[k.buf(Buffer.from('hello, ')), false], [k.buf(Buffer.from('console\n')), false]]);
    await guest(s, [k.notify(0), ...k.kickAndWait(1)]);
    expect(Buffer.concat(printed).toString()).toBe('hello, console\n');
    expect(k.takeUsed(1)).toEqual([[htx, 0]]);
    expect(k.takeUsed(0)).toEqual([]);
    await until(() => con.waitingReaders === 1, 'the receive chain');
    con.pushInput('ls\n');
    await guest(s, k.waitIrq());
    expect(k.takeUsed(0)).toEqual([[hrx, 3]]);
    expect(s.vm.memory.read(rx.gpa, 3).toString()).toBe('ls\n');
    expect(s.errors).toEqual([]);
  });

  it('async handlers complete out of order, each used element right', async () => {
    const held: { queue: number; chain: VirtioChain; done: (n: number) => void }[] = [];
    const dev: VirtioDevice = {
      name: 'held',
      deviceId: 0x20,
      features: 1n,
      config: Uint8Array.from([0xa5, 0x5a]),
      queues: [16],
      request(queue, chain) {
        return new Promise<number>((done) => held.push({ queue, chain, done }));
      },
    };
    const s = setup((c) => c.virtio(0, 6, 0, dev));
    const d = new Driver(s.vm, 6, 1);
    await guest(s, [...d.init(0x20, 1n | (1n << 28n) | (1n << 29n) | F_VERSION_1, F_VERSION_1 | 1n), { mmio: d.bar + 0x2000n, size: 2, read: true, expect: 0x5aa5 }]);
    const first = d.buf(8);
    const second = d.buf(8);
    const h1 = d.post(0, [[d.buf(Buffer.from('one')), false], [first, true]]);
    const h2 = d.post(0, [[d.buf(Buffer.from('two')), false], [second, true]]);
    await guest(s, [d.notify(0)]);
    await until(() => held.length === 2, 'both chains');
    expect(held.map((h) => [h.chain.head, h.chain.readable[0]!.toString()])).toEqual([
      [h1, 'one'],
      [h2, 'two'],
    ]);
    expect(d.takeUsed(0)).toEqual([]);
    expect(held.every((h) => h.chain.alive())).toBe(true);
    // The second completes first; the views write guest memory in place.
    held[1]!.chain.writable[0]!.write('SECOND');
    held[1]!.done(6);
    await guest(s, d.waitIrq());
    expect(d.takeUsed(0)).toEqual([[h2, 6]]);
    held[0]!.chain.writable[0]!.write('FIRST');
    held[0]!.done(5);
    await guest(s, d.waitIrq());
    expect(d.takeUsed(0)).toEqual([[h1, 5]]);
    expect(held.some((h) => h.chain.alive())).toBe(false);
    expect(s.vm.memory.read(first.gpa, 5).toString()).toBe('FIRST');
    expect(s.vm.memory.read(second.gpa, 6).toString()).toBe('SECOND');
    expect(s.client.virtioCounters(dev)).toMatchObject({ chains: 2, needsReset: 0 });
    // A configuration change: the new image, the generation, a configuration interrupt.
    await guest(s, [{ mmio: d.bar + 0x15n, size: 1, read: true, expect: 0 }]);
    s.client.virtioConfigChanged(dev, Uint8Array.from([0x11, 0x22]));
    await guest(s, [
      { wait_irq: { gsi: d.gsi }, timeout_ns: 5_000_000_000n },
      { mmio: d.bar + 0x1000n, size: 1, read: true, expect: 2 },
      { mmio: d.bar + 0x2000n, size: 2, read: true, expect: 0x2211 },
      { mmio: d.bar + 0x15n, size: 1, read: true, expect: 1 },
    ]);
    expect(s.errors).toEqual([]);
  });

  it('a reset drops the chains in flight: a held console read is never completed into the new queue', async () => {
    const con = new TsVirtioConsole({ output: () => {} });
    const s = setup((c) => c.virtio(0, 5, 0, con));
    const k = new Driver(s.vm, 5, 2);
    const base = (1n << 28n) | (1n << 29n) | F_VERSION_1;
    await guest(s, k.init(3, base, F_VERSION_1));
    const rx = k.buf(16);
    k.post(0, [[rx, true]]);
    await guest(s, [k.notify(0)]);
    await until(() => con.waitingReaders === 1, 'the receive chain');
    await guest(s, [k.c(0x14, 1, 0), { mmio: k.bar + 0x14n, size: 1, read: true, expect: 0 }]);
    expect(con.waitingReaders).toBe(0);
    con.pushInput('late');
    await new Promise((r) => setTimeout(r, 20));
    expect(s.vm.memory.read(rx.gpa, 4).equals(Buffer.alloc(4, 0xee))).toBe(true);
    expect(s.vm.memory.read(k.used(0) + 2n, 2).readUInt16LE(0)).toBe(0);
    expect(s.client.virtioCounters(con)).toMatchObject({ chains: 0, status: 0 });
    expect(s.errors).toEqual([]);
  });

  it('a throwing handler completes its chain with 0 bytes; a broken ring sets NEEDS_RESET', async () => {
    let calls = 0;
    const dev: VirtioDevice = {
      deviceId: 4,
      features: 0n,
      config: new Uint8Array(0),
      queues: [8],
      request() {
        calls++;
        throw new Error('device bug');
      },
    };
    const s = setup((c) => c.virtio(0, 7, 0, dev));
    const d = new Driver(s.vm, 7, 1);
    await guest(s, d.init(4, (1n << 28n) | (1n << 29n) | F_VERSION_1, F_VERSION_1));
    const h = d.post(0, [[d.buf(8), true]]);
    await guest(s, d.kickAndWait(0));
    expect(d.takeUsed(0)).toEqual([[h, 0]]);
    expect(calls).toBe(1);
    expect(s.errors.map((e) => e.message)).toEqual(['device bug']);
    expect((s.errors[0] as Error & { chain?: unknown }).chain).toEqual({ device: 'virtio-4', queue: 0, head: h });
    // A head outside the table: DEVICE_NEEDS_RESET (0x40) and a configuration interrupt (ISR 2).
    d.publish(0, 9);
    await guest(s, [
      d.notify(0),
      { mmio: d.bar + 0x14n, size: 1, read: true, expect: 0x4f },
      { mmio: d.bar + 0x1000n, size: 1, read: true, expect: 2 },
    ]);
    expect(s.client.virtioCounters(dev)).toMatchObject({ status: 0x4f, needsReset: 1 });
    expect(s.client.virtioCounters(dev).lastError).toMatch(/descriptor index 9 outside a table of 8/);
    expect(calls).toBe(1);
    // The driver resets; the device comes back.
    await guest(s, [d.c(0x14, 1, 0), { mmio: d.bar + 0x14n, size: 1, read: true, expect: 0 }]);
    expect(s.client.virtioCounters(dev).status).toBe(0);
  });

  it('runSync() in a worker serves a TypeScript device too', async () => {
    const hsm = Hsm.emulated();
    const vm = hsm.createVm({ vcpuNum: 1 });
    vm.mapRam(RAM, Hsm.allocPages(0x8_0000));
    const worker = new Worker(join(import.meta.dirname, 'support/virtio-worker.mjs'), { workerData: { token: vm.share() } });
    try {
      const ready = await new Promise<{ stopToken: number }>((resolve, reject) => {
        worker.once('message', resolve);
        worker.once('error', reject);
      });
      vm.start();
      const d = new Driver(vm, 4, 1);
      const run = async (ops: WorkloadOp[]) => {
        const r = await hsm.guest(vm).run({ vcpus: [ops] });
        expect(r.faults).toEqual([]);
        expect(r.mismatches).toEqual([]);
      };
      await run(d.init(4, (1n << 28n) | (1n << 29n) | F_VERSION_1, F_VERSION_1));
      const b = d.buf(48);
      const h = d.post(0, [[b, true]]);
      await run(d.kickAndWait(0));
      expect(d.takeUsed(0)).toEqual([[h, 48]]);
      const done = new Promise<{ bytes: number }>((resolve) => worker.once('message', resolve));
      expect(stopClient(ready.stopToken)).toBe(true);
      expect((await done).bytes).toBe(48);
    } finally {
      await worker.terminate();
      vm.pause();
    }
  });

  it('checks what it registers', () => {
    const hsm = Hsm.emulated();
    const vm = hsm.createVm({ vcpuNum: 1 });
    const client = vm.createIoreqClient();
    const ok: VirtioDevice = { deviceId: 4, features: 0n, config: new Uint8Array(0), queues: [8], request: () => 0 };
    client.virtio(0, 3, 0, ok);
    expect(() => client.virtio(0, 4, 0, ok)).toThrow(/already registered/);
    expect(() => client.virtio(0, 5, 0, { ...ok, queues: [3] })).toThrow(/powers of two/);
    expect(() => client.virtio(0, 5, 0, { ...ok, queues: [] })).toThrow(/queues/);
    expect(() => client.virtio(0, 5, 0, { ...ok, deviceId: 0 })).toThrow(RangeError);
    expect(() => client.virtio(0, 5, 0, { ...ok, features: -1n })).toThrow(RangeError);
    expect(() => client.virtio(0, 3, 0, { ...ok })).toThrow();
    expect(() => client.virtioCounters({ ...ok })).toThrow(/register the device/);
    // Removed: the function is free again, the same device can come back.
    client.remove(ok);
    expect(() => client.virtioCounters(ok)).toThrow(/register the device/);
    client.virtio(0, 3, 0, ok);
    expect(client.virtioCounters(ok).status).toBe(0);
    expect(() => client.remove({ ...ok })).toThrow(/not registered/);
    expect(() => new TsVirtioBlk(join(dir, 'missing.img'))).toThrow(/ENOENT/);
  });
});
