// Guest memory from a TypeScript device: a 4 KiB read through a view() made once (zero-copy)
// vs vm.memory.read() (a copy per access), plus the cost of making a view. The guest rings a
// doorbell N times (N=2000 by default); on each ring the device reads the guest's 4 KiB buffer
// and sums it as 32-bit words (so both paths touch every byte). Times are taken in the device
// handler around the access + sum (process.hrtime.bigint), p50/p99 over the rings.
// Run after `npm run build`: `node benches/guest-memory.mjs`.
import { Hsm } from '../dist/index.js';

const N = Number(process.env.N ?? 2000);
const RAM = 0x10_0000n;
const BUF = RAM + 0x1000n;
const DOORBELL = 0xfed8_0000n;

function pct(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

function sum32(b) {
  const w = new Uint32Array(b.buffer, b.byteOffset, b.length >>> 2);
  let s = 0;
  for (let i = 0; i < w.length; i++) s = (s + w[i]) >>> 0;
  return s;
}

async function run(mode) {
  const hsm = Hsm.emulated();
  const vm = hsm.createVm({ vcpuNum: 1 });
  vm.mapRam(RAM, Hsm.allocPages(0x4000));
  const client = vm.createIoreqClient();
  const view = vm.memory.view(BUF, 4096);
  const times = [];
  let check = 0;
  client.mmio(DOORBELL, 0x1000n, {
    read: () => 0n,
    write: () => {
      const t0 = process.hrtime.bigint();
      const b = mode === 'view' ? view : vm.memory.read(BUF, 4096);
      check = (check + sum32(b)) >>> 0;
      times.push(Number(process.hrtime.bigint() - t0));
    },
  });
  vm.start();
  const serving = client.run();
  const r = await hsm.guest(vm).run({ vcpus: [[
    { ram: BUF, size: 8, write: 0x0102_0304_0506_0708n },
    { repeat: N, ops: [{ mmio: DOORBELL, size: 4, write: 1 }] },
  ]] });
  client.stop();
  await serving;
  vm.pause();
  if (r.completed !== N) throw new Error(`${mode}: ${r.completed} of ${N} requests completed`);
  const expected = ((0x0506_0708 + 0x0102_0304) * N) >>> 0;
  if (check !== expected) throw new Error(`${mode}: checksum ${check} != ${expected}`);
  times.sort((a, b) => a - b);
  return { p50: pct(times, 50), p99: pct(times, 99) };
}

function viewCost() {
  const hsm = Hsm.emulated();
  const vm = hsm.createVm({ vcpuNum: 1 });
  vm.mapRam(RAM, Hsm.allocPages(0x4000));
  const times = [];
  for (let i = 0; i < 500; i++) {
    const t0 = process.hrtime.bigint();
    vm.memory.view(BUF, 4096);
    times.push(Number(process.hrtime.bigint() - t0));
  }
  times.sort((a, b) => a - b);
  return { p50: pct(times, 50), p99: pct(times, 99) };
}

const rows = [];
for (const mode of ['read', 'view']) rows.push([`4 KiB ${mode === 'view' ? 'view() (made once)' : 'read() (copy)'} + sum`, await run(mode)]);
rows.push(['making a 4 KiB view()', viewCost()]);
console.log(`guest memory from a TS device, ${N} doorbells per case (load ${(await import('node:os')).loadavg()[0].toFixed(2)})`);
console.log('| access | p50 | p99 |\n|---|---|---|');
for (const [name, t] of rows) console.log(`| ${name} | ${(t.p50 / 1000).toFixed(2)} µs | ${(t.p99 / 1000).toFixed(2)} µs |`);
