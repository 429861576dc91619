// The TypeScript virtio-blk's own cost inside a real guest's reads: SeaBIOS (Debian's bios.bin)
// boots the `bench --virtio` image on the KVM engine, with the core's PC platform and a
// TsVirtioBlk (synchronous I/O) on `await client.run()`; `request` is wrapped and timed
// (process.hrtime.bigint). Prints the requests served, their mean time, the chains' shapes, and
// the guest's own p50 cycles per 32 KiB and 4 KiB read (its rdtsc deltas from debugcon).
// Needs /dev/kvm and seabios; run after `npm run build`:
//   node benches/virtio-blk-ts-request.mjs [notify|poll]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Hsm, PcPlatform, TsVirtioBlk } from '../dist/index.js';
import { native } from '../dist/native.js';

const mode = process.argv[2] ?? 'notify';
if (mode !== 'notify' && mode !== 'poll') throw new Error(`mode must be notify or poll, got ${mode}`);
const dir = mkdtempSync(join(tmpdir(), 'acrn-vblk-ts-'));
const image = join(dir, 'disk.img');
const sizes = { bigReads: 100, smallReads: 100, warmup: 10 };
native().virtioBlkWriteImage(image, sizes);
const vm = Hsm.emulated({ engine: 'kvm' }).createVm({ vcpuNum: 1, vmFlag: mode === 'poll' ? 1n << 2n : 0n });
vm.loadFirmware('seabios', { memMib: 128 });
const client = vm.createIoreqClient({ wake: mode === 'poll' ? 'poll' : 'blocking' });
const pc = new PcPlatform({ sercon: false });
const blk = new TsVirtioBlk(image, { readOnly: true });
let ns = 0n;
let n = 0;
const shapes = new Map();
const request = blk.request.bind(blk);
blk.request = (queue, chain) => {
  const t = process.hrtime.bigint();
  const r = request(queue, chain);
  ns += process.hrtime.bigint() - t;
  n++;
  const shape = `${chain.readable.length} readable / writable ${chain.writable.map((b) => b.length).join('+')}`;
  shapes.set(shape, (shapes.get(shape) ?? 0) + 1);
  return r;
};
client.pcPlatform(pc).virtio(0, 3, 0, blk);
try {
  const served = client.run();
  vm.start();
  await served; // isa-debug-exit powers the VM off
  const d = native().virtioBlkParseDump(pc.debugcon(), sizes);
  if (!d) throw new Error(`the guest's dump is missing (exit status ${pc.exitStatus()})`);
  const p50 = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
  console.log(`${mode}: ${n} requests, ${(Number(ns) / n / 1e3).toFixed(1)} µs each in request(); guest p50 cycles per 32 KiB read ${p50(d.big)}, per 4 KiB read ${p50(d.small)}`);
  for (const [shape, count] of shapes) console.log(`  ${count} chains: ${shape}`);
} finally {
  try {
    vm.pause();
    vm.destroy();
  } catch {
    // Already gone.
  }
  blk.close();
  rmSync(dir, { recursive: true, force: true });
}
