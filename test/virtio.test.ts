// Native virtio devices on a client from TypeScript: a VirtioBlk over a file at 00:03.0 of an
// emulated VM. A scripted guest (the workload engine) reads the modern virtio-pci header,
// programs BAR 4, negotiates VERSION_1 and sets up queue 0 like a driver; the test lays a read
// request out in guest RAM and the guest notifies; the sector lands in guest memory and the
// status byte says OK, and the guest takes the INTx interrupt. A broken ring (head out of range) puts the device in DEVICE_NEEDS_RESET.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Hsm, VirtioBlk, VirtioRng, type WorkloadOp } from '../dist/index.js';

const dir = mkdtempSync(join(tmpdir(), 'acrn-virtio-'));
const RAM = 0x10_0000n;
const BAR = 0xc100_0000n;
const DESC = RAM + 0x1000n;
const AVAIL = RAM + 0x2000n;
const USED = RAM + 0x3000n;
const at = (register: number) => ({ bus: 0, device: 3, function: 0, register });

function disk(): string {
  const f = join(dir, 'disk.img');
  const img = Buffer.alloc(64 * 512);
  for (let s = 0; s < 64; s++) img.write(`sector ${s}`.padEnd(16, '.'), s * 512);
  writeFileSync(f, img);
  return f;
}

/** The driver's initialisation (virtio 1.x §3.1.1) through BAR 4, queue 0 of 8 entries. */
function init(): WorkloadOp[] {
  const c = (off: number, size: number, write: number | bigint): WorkloadOp =>
    ({ mmio: BAR + BigInt(off), size, write: typeof write === 'bigint' ? write : BigInt(write) }) as WorkloadOp;
  return [
    { pci: at(0x00), size: 4, read: true, expect: 0x1042_1af4 },
    { pci: at(0x20), size: 4, write: Number(BAR) },
    { pci: at(0x04), size: 2, write: 0x2 },
    { pci: at(0x3c), size: 1, write: 10 },
    { mmio: BAR + 0x12n, size: 2, read: true, expect: 1 },
    { mmio: BAR + 0x2000n, size: 8, read: true, expect: 64 },
    c(0x14, 1, 0),
    c(0x14, 1, 3),
    c(0x08, 4, 1),
    c(0x0c, 4, 1),
    c(0x14, 1, 0xb),
    { mmio: BAR + 0x14n, size: 1, read: true, expect: 0xb },
    c(0x16, 2, 0),
    c(0x18, 2, 8),
    c(0x20, 8, DESC),
    c(0x28, 8, AVAIL),
    c(0x30, 8, USED),
    c(0x1c, 2, 1),
    c(0x14, 1, 0xf),
  ];
}

describe('native virtio devices', () => {
  it('VirtioBlk serves a read request a driver set up in guest memory', async () => {
    const hsm = Hsm.emulated();
    const vm = hsm.createVm({ vcpuNum: 1 });
    vm.mapRam(RAM, Hsm.allocPages(0x10000));
    const client = vm.createIoreqClient();
    const blk = new VirtioBlk(disk());
    client.pci(0, 3, 0, blk);
    vm.start();
    const serving = client.run();
    let r = await hsm.guest(vm).run({ vcpus: [init()] });
    expect(r.mismatches).toEqual([]);
    expect(blk.counters().status).toBe(0xf);
    expect(blk.counters().driverFeatures).toBe(1n << 32n);
    // IN, sector 7: header (readable), 512 bytes and the status byte (writable).
    const hdr = Buffer.alloc(16);
    hdr.writeUInt32LE(0, 0);
    hdr.writeBigUInt64LE(7n, 8);
    vm.memory.write(RAM + 0x4000n, hdr);
    const desc = (i: number, addr: bigint, len: number, flags: number, next: number) => {
      const d = Buffer.alloc(16);
      d.writeBigUInt64LE(addr, 0);
      d.writeUInt32LE(len, 8);
      d.writeUInt16LE(flags, 12);
      d.writeUInt16LE(next, 14);
      vm.memory.write(DESC + BigInt(16 * i), d);
    };
    desc(0, RAM + 0x4000n, 16, 1, 1);
    desc(1, RAM + 0x5000n, 512, 3, 2);
    desc(2, RAM + 0x6000n, 1, 2, 0);
    vm.memory.write(RAM + 0x6000n, Buffer.from([0xff]));
    vm.memory.write(AVAIL + 4n, Buffer.from([0, 0]));
    vm.memory.write(AVAIL + 2n, Buffer.from([1, 0]));
    // Notify queue 0; the completion raises INTx on GSI 10 (the interrupt line); reading the ISR
    // (1: queue) lowers it.
    r = await hsm.guest(vm).run({
      vcpus: [[
        { mmio: BAR + 0x3000n, size: 2, write: 0n },
        { wait_irq: { gsi: 10 }, timeout_ns: 5_000_000_000n },
        { mmio: BAR + 0x1000n, size: 1, read: true, expect: 1 },
        { mmio: BAR + 0x1000n, size: 1, read: true, expect: 0 },
      ]],
    });
    expect(r.faults).toEqual([]);
    expect(r.mismatches).toEqual([]);
    expect(vm.memory.read(RAM + 0x6000n, 1)[0]).toBe(0);
    expect(vm.memory.read(RAM + 0x5000n, 16).toString()).toBe('sector 7........');
    expect(vm.memory.readU32(USED + 8n)).toBe(513);
    expect(blk.counters()).toMatchObject({ notifies: 1, chains: 1, needsReset: 0, lastError: null });
    // A head outside the queue: DEVICE_NEEDS_RESET, ISR bit 1.
    vm.memory.write(AVAIL + 6n, Buffer.from([9, 0]));
    vm.memory.write(AVAIL + 2n, Buffer.from([2, 0]));
    r = await hsm.guest(vm).run({
      vcpus: [[
        { mmio: BAR + 0x3000n, size: 2, write: 0n },
        { mmio: BAR + 0x14n, size: 1, read: true, expect: 0x4f },
        { mmio: BAR + 0x1000n, size: 1, read: true, expect: 2 },
      ]],
    });
    expect(r.mismatches).toEqual([]);
    expect(blk.counters().needsReset).toBe(1);
    expect(blk.counters().lastError).toMatch(/descriptor index 9 outside a table of 8/);
    client.stop();
    await serving;
    vm.pause();
  });

  it('refuses a second registration, a missing file, and reads counters only once attached', () => {
    const hsm = Hsm.emulated();
    const vm = hsm.createVm({ vcpuNum: 1 });
    const client = vm.createIoreqClient();
    const rng = new VirtioRng();
    expect(() => rng.counters()).toThrow(/register the device/);
    client.pci(0, 4, 0, rng);
    expect(rng.counters().status).toBe(0);
    expect(() => client.pci(0, 5, 0, rng)).toThrow(/already registered/);
    expect(() => client.pci(0, 6, 0, new VirtioBlk(join(dir, 'missing.img')))).toThrow(/missing.img: No such file/);
    expect(() => new VirtioBlk('')).toThrow(TypeError);
  });
});
