// A TypeScript backend served by the core's client records what it serves (createIoreqClient
// ({ trace }) / client.record()) and asks for device-model resets (requestVmAction).
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeTrace, Hsm } from '../dist/index.js';

const dir = mkdtempSync(join(tmpdir(), 'acrn-hsm-record-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

class Scratch {
  readonly name = 'scratch';
  value = 0n;
  read(): bigint {
    return this.value;
  }
  write(_o: number, _s: number, v: number | bigint): void {
    this.value = BigInt(v);
  }
}

describe('TypeScript backends on the core client', () => {
  it('records every request a TypeScript device served', async () => {
    const path = join(dir, 'ts.trace');
    const hsm = Hsm.emulated();
    const vm = hsm.createVm({ vcpuNum: 2 });
    const client = vm.createIoreqClient({ trace: path });
    client.mmio(0xfe000000n, 0x100n, new Scratch());
    vm.start();
    const serving = client.run();
    const r = await hsm.guest(vm).run({
      vcpus: [0, 1].map(() => [
        { repeat: 25, ops: [
          { mmio: 0xfe000000n, size: 8, write: 7 },
          { mmio: 0xfe000000n, size: 8, read: true },
        ] },
      ]),
    });
    client.stop();
    await serving;
    expect(r.issued).toBe(100);
    expect(r.completed).toBe(100);
    const t = decodeTrace(readFileSync(path));
    expect(t.footer).toBe(true);
    expect(t.count).toBe(100);
    expect(t.header.devices.map((d) => d.name)).toContain('scratch');
    let reads = 0;
    for (let i = 0; i < t.count; i++) {
      const rec = t.record(i);
      if (rec.direction === 'read') {
        reads++;
        expect(rec.value).toBe(7n);
      }
      expect(rec.outcome).toBe('ok');
      expect(rec.deviceName).toBe('scratch');
    }
    expect(reads).toBe(50);
  });

  it('resets the VM as the device model does when a TypeScript handler asks for it', async () => {
    const hsm = Hsm.emulated();
    const vm = hsm.createVm({ vcpuNum: 1 });
    const client = vm.createIoreqClient();
    let resets = 0;
    client.mmio(0xfe000000n, 0x100n, {
      read: () => 0n,
      write: () => {
        resets++;
        client.requestVmAction('reset');
      },
    });
    vm.start();
    const serving = client.run();
    const r = await hsm.guest(vm).run({ vcpus: [[{ mmio: 0xfe000000n, size: 4, write: 1 }]] });
    client.stop();
    await serving;
    expect(resets).toBe(1);
    expect(client.counters.resets).toBe(1);
    // The write's NOTIFY was withheld: the reset (CLEAR_VM_IOREQ) ended the vCPU's request.
    expect(r.completed).toBe(0);
    expect(client.counters.notifies).toBe(0);
    expect(() => client.requestVmAction('explode' as never)).toThrow(/reset/);
  });
});
