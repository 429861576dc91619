// Replay from TypeScript: a trace a TypeScript backend recorded is turned into a guest workload
// (traceWorkload) and run against the user's own devices (guest.replay); a device that answers
// differently from the recording is caught by the guest's checked reads.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Hsm, traceWorkload, type Device } from '../dist/index.js';

const dir = mkdtempSync(join(tmpdir(), 'acrn-hsm-replay-api-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A register with a state machine: a read returns `last write * 3 + reads so far` (u32). */
class Mixer implements Device<number> {
  constructor(
    readonly name: string,
    private readonly bugAtRead = -1,
  ) {}
  private last = 0;
  private reads = 0;
  read(): number {
    const v = (this.last * 3 + this.reads) >>> 0;
    this.reads++;
    return this.reads - 1 === this.bugAtRead ? (v + 1) >>> 0 : v;
  }
  write(_o: number, _s: number, value: number): void {
    this.last = value;
  }
}

const PORTS = [0x1000, 0x2000];

/** The guest of the recording: each vCPU drives its own port, values it cannot predict. */
function workload() {
  return {
    vcpus: PORTS.map((port, v) => [
      {
        repeat: 20,
        ops: [
          { pio: port, size: 4, write: 11 + v },
          { pio: port, size: 4, read: true },
          { pio: port, size: 2, read: true },
        ],
      },
    ]),
  };
}

async function serve<T>(devices: Mixer[], run: (hsm: Hsm, vm: ReturnType<Hsm['createVm']>) => Promise<T>, trace?: string): Promise<T> {
  const hsm = Hsm.emulated();
  const vm = hsm.createVm({ vcpuNum: 2 });
  const client = vm.createIoreqClient(trace === undefined ? {} : { trace });
  devices.forEach((d, i) => client.pio(PORTS[i] as number, 4, d));
  vm.start();
  const serving = client.run();
  try {
    return await run(hsm, vm);
  } finally {
    client.stop();
    await serving;
    vm.pause();
    vm.destroy();
  }
}

describe('replay from TypeScript', () => {
  const path = join(dir, 'mixer.trace');

  it('turns a recorded trace into the workload that issues it again', async () => {
    const rec = await serve([new Mixer('a'), new Mixer('b')], (hsm, vm) => hsm.guest(vm).run(workload()), path);
    expect(rec.issued).toBe(120);
    const tw = traceWorkload(path);
    expect(tw.vcpus).toBe(2);
    expect(tw.completion).toBe('notify');
    expect(tw.records).toBe(120);
    expect(tw.skipped).toBe(0);
    expect(tw.checkedReads).toBe(80);
    // vCPU 0's list: its 60 requests in order, the reads carrying the values the device gave.
    const ops = tw.workload.vcpus[0]?.filter((op) => 'pio' in op) ?? [];
    expect(ops).toHaveLength(60);
    expect(ops[0]).toMatchObject({ pio: 0x1000, size: 4, write: 11 });
    expect(ops[1]).toMatchObject({ pio: 0x1000, size: 4, read: true, expect: 33 });
    expect(ops[2]).toMatchObject({ pio: 0x1000, size: 2, read: true, expect: 34 });
  });

  it('replays it against fresh devices with every read matching', async () => {
    const r = await serve([new Mixer('a'), new Mixer('b')], (hsm, vm) => hsm.guest(vm).replay(path));
    expect(r.trace.records).toBe(120);
    expect(r.issued).toBe(120);
    expect(r.completed).toBe(120);
    expect(r.mismatches).toEqual([]);
    expect(r.faults).toEqual([]);
  });

  it('catches a device that answers one read differently', async () => {
    const r = await serve([new Mixer('a'), new Mixer('b', 7)], (hsm, vm) => hsm.guest(vm).replay(path));
    expect(r.completed).toBe(120);
    expect(r.mismatches).toHaveLength(1);
    const m = r.mismatches[0];
    expect(m?.vcpu).toBe(1);
    expect((m?.actual ?? 0n) - (m?.expected ?? 0n)).toBe(1n);
  });

  it('refuses a VM with fewer vCPUs than the trace, and bad files, with clear errors', async () => {
    const hsm = Hsm.emulated();
    const vm = hsm.createVm({ vcpuNum: 1 });
    vm.start();
    await expect(hsm.guest(vm).replay(path)).rejects.toMatchObject({ code: 'ERR_INVALID_ARG', message: expect.stringContaining('2 vCPU(s)') });
    vm.pause();
    vm.destroy();
    expect(() => traceWorkload(join(dir, 'missing.trace'))).toThrow(expect.objectContaining({ code: 'ERR_TRACE_IO' }));
    const junk = join(dir, 'junk.trace');
    writeFileSync(junk, Buffer.from('not a trace at all, just bytes'));
    expect(() => traceWorkload(junk)).toThrow(expect.objectContaining({ code: expect.stringMatching(/^ERR_TRACE/) }));
    expect(() => traceWorkload(path, { maxGapMs: -1 })).toThrow(RangeError);
  });
});
