// SeaBIOS (Debian's bios.bin, unchanged) boots from a virtio-blk disk written in TypeScript: the
// VM is set up through the public API (vm.loadFirmware('seabios')), the PC around it is the
// core's PcPlatform (the same machine as `acrn-hsm run`), and the disk is a TsVirtioBlk behind
// the core's modern virtio-pci transport at 00:03.0. The firmware finds the function on the PCI
// bus, reads the boot sector through the virtqueue and boots it; the boot sector (bootTestDisk)
// reads sectors 1-3 through int 13h (AH=02h and AH=42h), prints them on COM1 and ends the run
// through isa-debug-exit (status 33). Both completion modes, synchronous and asynchronous file
// I/O, with client.run() on the main thread. Skipped, with the reason printed, where /dev/kvm
// cannot run the KVM engine or the seabios package is missing.
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { bootTestDisk, engines, Hsm, PcPlatform, SEABIOS_PATH, TsVirtioBlk } from '../dist/index.js';

const dir = mkdtempSync(join(tmpdir(), 'acrn-seabios-ts-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const kvm = engines().kvm;
const whyNot = !kvm.usable ? `KVM engine unusable here: ${kvm.reason}` : !existsSync(SEABIOS_PATH) ? `${SEABIOS_PATH} missing (apt-get install seabios)` : undefined;
if (whyNot) console.log(`SKIP seabios-ts-virtio.test.ts: ${whyNot}`);

const VM_FLAG_POLLING = 1n << 2n; // GUEST_FLAG_IO_COMPLETION_POLLING

/** Resolves with `p`, or rejects after `ms` naming `what`. */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: no end after ${ms} ms`)), ms)));
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

describe.skipIf(whyNot !== undefined)('SeaBIOS boots the TypeScript virtio-blk', () => {
  const cases = [
    { mode: 'notify', io: 'sync' },
    { mode: 'poll', io: 'sync' },
    { mode: 'notify', io: 'async' },
  ] as const;
  for (const { mode, io } of cases) {
    it(`reads the boot sector and three more sectors through the virtqueue (${mode}, ${io} I/O)`, async () => {
      const disk = bootTestDisk();
      const file = join(dir, `${mode}-${io}.img`);
      writeFileSync(file, disk.image);
      const hsm = Hsm.emulated({ engine: 'kvm' });
      const vm = hsm.createVm({ vcpuNum: 1, vmFlag: mode === 'poll' ? VM_FLAG_POLLING : 0n });
      const fw = vm.loadFirmware('seabios', { memMib: 64 });
      expect(fw.lowRamBytes).toBe(64n << 20n);
      expect(fw.romBase + BigInt(statSync(SEABIOS_PATH).size)).toBe(1n << 32n);
      const client = vm.createIoreqClient({ wake: mode === 'poll' ? 'poll' : 'blocking' });
      const pc = new PcPlatform();
      const blk = new TsVirtioBlk(file, { async: io === 'async' });
      client.pcPlatform(pc).virtio(0, 3, 0, blk);
      const errors: unknown[] = [];
      const faults: unknown[] = [];
      client.on('error', (e: unknown) => errors.push(e));
      client.on('fault', (f: unknown) => faults.push(f));
      try {
        const serving = client.run();
        vm.start();
        // isa-debug-exit powers the VM off: the client stops serving and run() resolves.
        await within(serving, 150_000, 'SeaBIOS with the TypeScript disk');
        const serial = pc.takeSerial();
        const log = pc.debugcon().toString('latin1');
        expect(pc.exitStatus(), `${serial}\n${log}`).toBe(disk.exitStatus);
        expect(log).toContain('found virtio-blk at 00:03.0');
        expect(serial).toContain('SeaBIOS (version');
        expect(serial).toContain('Booting from Hard Disk');
        // SeaBIOS's serial console buffers its own output (flushed on timer ticks), so the end
        // of "Booting from Hard Disk..." can land among the boot sector's bytes.
        const plain = serial.replace(/[.\r\n]/g, '');
        expect(plain).toContain(disk.texts.join(''));
        const c = client.virtioCounters(blk);
        expect(c.needsReset, c.lastError ?? '').toBe(0);
        expect(c.chains).toBeGreaterThanOrEqual(3);
        expect(c.status & 0x04).toBe(0x04); // DRIVER_OK
        // The boot sector (1 sector), the AH=02h pair and the AH=42h read, at least.
        expect(blk.stats.requests).toBeGreaterThanOrEqual(3);
        expect(blk.stats.readBytes).toBeGreaterThanOrEqual(4 * 512);
        expect(blk.stats.errors).toBe(0);
        expect(faults).toEqual([]);
        expect(errors).toEqual([]);
      } finally {
        try {
          vm.pause();
          vm.clearVmIoreq();
        } catch {
          // Already powered off.
        }
        client.stop();
        vm.destroy();
        blk.close();
      }
    }, 180_000);
  }

  it('pcPlatform() refuses a VM without RAM, a second registration, and bad options', () => {
    const hsm = Hsm.emulated({ engine: 'workload' });
    const vm = hsm.createVm({ vcpuNum: 1 });
    const client = vm.createIoreqClient();
    try {
      expect(() => client.pcPlatform(new PcPlatform())).toThrow(expect.objectContaining({ code: 'ERR_INVALID_STATE' }));
      expect(() => new PcPlatform({ debugExit: 0x10000 })).toThrow(RangeError);
      expect(() => vm.loadFirmware(new Uint8Array(1000))).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG' }));
      expect(() => vm.loadFirmware(join(dir, 'no-such-firmware.bin'))).toThrow(expect.objectContaining({ code: 'ERR_FIRMWARE' }));
      vm.loadFirmware(new Uint8Array(64 * 1024).fill(0xf4), { memMib: 4 });
      const pc = new PcPlatform({ debugExit: 0x501 });
      client.pcPlatform(pc);
      expect(() => client.pcPlatform(pc)).toThrow(expect.objectContaining({ code: 'ERR_ALREADY_ATTACHED' }));
      // A second PC on the same ports: the range is taken.
      expect(() => client.pcPlatform(new PcPlatform())).toThrow(expect.objectContaining({ code: 'ERR_RANGE' }));
      expect(pc.exitStatus()).toBe(null);
      client.remove(pc);
      expect(() => pc.takeSerial()).toThrow(expect.objectContaining({ code: 'ERR_NOT_ATTACHED' }));
      // Its ports are free again.
      client.pcPlatform(new PcPlatform());
    } finally {
      client.stop();
      vm.pause();
      vm.destroy();
    }
  });
});
