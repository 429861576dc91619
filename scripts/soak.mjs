#!/usr/bin/env node
// Soak test: a 16-vCPU VM on the emulator at full rate for minutes, its MMIO device served in
// TypeScript, with exactly-once accounting, sampling this process's RSS and open file
// descriptors; fails if either grows beyond a bound after the warm-up.
//
//   node scripts/soak.mjs [--minutes 2 | --seconds S] [--vcpus 16] [--loop sync|async]
//                         [--sample-ms 2000] [--rss-growth-mb 48 (async: 96)] [--fd-growth 2]
//                         [--json [--samples]]
//
// --loop sync (default): a worker thread serves with client.runSync() (the fast path);
// --loop async: the main thread serves with client.run().
// Every round each vCPU writes a tag to its own register and reads it back (`expect`ed), so a
// lost, duplicated or wrong completion shows as a mismatch, a fault or a count that differs.
// The first quarter of the run (at least 2 s, at most 30 s) is warm-up; the baseline is the
// largest sample of the warm-up, and every later sample must stay within the bounds.
// Exit status: 0 pass, 1 fail (the reason is printed), 2 usage.
// --samples (with --json) adds the series of samples. Diagnostic: SOAK_GC=1 with
// `node --expose-gc` forces a full GC after every round (memory that only a major GC returns
// then stops showing as growth).
import { readdirSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';

const BASE = 0xfe20_0000n;
const DIST = new URL('../dist/index.js', import.meta.url).href;

function serveInWorker() {
  return (async () => {
    const { Vm } = await import(DIST);
    const vm = Vm.fromShared(workerData.token);
    const client = vm.createIoreqClient();
    const served = new BigInt64Array(workerData.served);
    const regs = new BigUint64Array(512);
    client.mmio(BASE, 0x1000n, {
      read(offset) {
        Atomics.add(served, 0, 1n);
        return regs[offset >> 3];
      },
      write(offset, _size, value) {
        Atomics.add(served, 0, 1n);
        regs[offset >> 3] = value;
      },
    });
    parentPort.postMessage({ stopToken: client.stopToken });
    client.runSync();
    parentPort.postMessage({ done: true });
  })();
}

function fdCount() {
  return readdirSync('/proc/self/fd').length;
}

async function main() {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        minutes: { type: 'string', default: '2' },
        seconds: { type: 'string' },
        vcpus: { type: 'string', default: '16' },
        loop: { type: 'string', default: 'sync' },
        'sample-ms': { type: 'string', default: '2000' },
        'rss-growth-mb': { type: 'string' },
        'fd-growth': { type: 'string', default: '2' },
        'round-requests': { type: 'string', default: '2000' },
        json: { type: 'boolean', default: false },
        samples: { type: 'boolean', default: false },
      },
      strict: true,
    }));
  } catch (err) {
    console.error(`soak: ${err.message}`);
    return 2;
  }
  // The async loop's per-batch native buffers are returned by V8's major GCs only, which start
  // once they add up to V8's external-memory limit: RSS climbs for ~2 minutes to a plateau about
  // 60-80 MB higher (docs/reliability.md), so its default bound is larger.
  values['rss-growth-mb'] ??= values.loop === 'async' ? '96' : '48';
  const seconds = values.seconds !== undefined ? Number(values.seconds) : Number(values.minutes) * 60;
  const vcpus = Number(values.vcpus);
  const sampleMs = Number(values['sample-ms']);
  const perVcpu = Number(values['round-requests']);
  if (!(seconds > 0) || !Number.isInteger(vcpus) || vcpus < 1 || vcpus > 16 || !(sampleMs > 0) || !['sync', 'async'].includes(values.loop) || !(perVcpu >= 2)) {
    console.error('soak: --seconds/--minutes > 0, --vcpus 1..16, --loop sync|async, --sample-ms > 0, --round-requests >= 2');
    return 2;
  }
  const { Hsm, stopClient } = await import(DIST);
  const hsm = Hsm.emulated();
  const vm = hsm.createVm({ vcpuNum: vcpus });
  const guest = hsm.guest(vm);
  const served = new BigInt64Array(new SharedArrayBuffer(8));
  let stop;
  let client;
  let worker;
  if (values.loop === 'sync') {
    worker = new Worker(fileURLToPath(import.meta.url), { workerData: { token: vm.share(), served: served.buffer } });
    const { stopToken } = await new Promise((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    stop = async () => {
      const done = new Promise((resolve) => worker.once('message', resolve));
      stopClient(stopToken);
      await done;
      await worker.terminate();
    };
  } else {
    client = vm.createIoreqClient();
    const regs = new BigUint64Array(512);
    client.mmio(BASE, 0x1000n, {
      read(offset) {
        served[0] += 1n;
        return regs[offset >> 3];
      },
      write(offset, _size, value) {
        served[0] += 1n;
        regs[offset >> 3] = value;
      },
    });
    const serving = client.run();
    stop = async () => {
      client.stop();
      await serving;
    };
  }
  vm.start();

  const ops = (i) => {
    const a = BASE + BigInt(i * 8);
    return [{ repeat: perVcpu / 2, ops: [{ mmio: a, size: 8, write: 0xa5a5_0000_0000_0000n | BigInt(i) }, { mmio: a, size: 8, read: true, expect: 0xa5a5_0000_0000_0000n | BigInt(i) }] }];
  };
  const workload = { vcpus: Array.from({ length: vcpus }, (_, i) => ops(i)) };

  const t0 = performance.now();
  const deadline = t0 + seconds * 1000;
  const warmupMs = Math.min(30_000, Math.max(2_000, (seconds * 1000) / 4));
  const samples = [];
  const sample = () => {
    const m = process.memoryUsage();
    samples.push({ t: Math.round(performance.now() - t0), rssMb: m.rss / 2 ** 20, heapMb: m.heapUsed / 2 ** 20, fds: fdCount(), requests: Number(served[0]) });
  };
  sample();
  const timer = setInterval(sample, sampleMs);
  let issued = 0;
  let completed = 0;
  let rounds = 0;
  const problems = [];
  while (performance.now() < deadline) {
    const r = await guest.run(workload);
    if (process.env.SOAK_GC && globalThis.gc) globalThis.gc();
    rounds++;
    issued += r.issued;
    completed += r.completed;
    if (r.mismatches.length > 0 || r.faults.length > 0 || r.completed !== r.issued || r.issued !== vcpus * perVcpu || r.stopped.some((s) => s !== null)) {
      problems.push(`round ${rounds}: issued ${r.issued}, completed ${r.completed}, ${r.mismatches.length} mismatches, ${r.faults.length} faults, stopped ${JSON.stringify(r.stopped)}`);
      break;
    }
  }
  clearInterval(timer);
  sample();
  const elapsed = (performance.now() - t0) / 1000;
  await stop();
  const handled = Number(served[0]);
  if (handled !== completed) problems.push(`device side: ${handled} handler calls for ${completed} completed requests`);

  const warm = samples.filter((s) => s.t <= warmupMs);
  const after = samples.filter((s) => s.t > warmupMs);
  const base = { rssMb: Math.max(...warm.map((s) => s.rssMb)), fds: Math.max(...warm.map((s) => s.fds)) };
  const peak = { rssMb: Math.max(base.rssMb, ...after.map((s) => s.rssMb)), fds: Math.max(base.fds, ...after.map((s) => s.fds)) };
  const rssGrowth = peak.rssMb - base.rssMb;
  const fdGrowth = peak.fds - base.fds;
  if (after.length < 2) problems.push(`only ${after.length} samples after the warm-up: run longer or sample more often`);
  if (rssGrowth > Number(values['rss-growth-mb'])) problems.push(`RSS grew ${rssGrowth.toFixed(1)} MB after the warm-up (bound ${values['rss-growth-mb']} MB)`);
  if (fdGrowth > Number(values['fd-growth'])) problems.push(`open fds grew by ${fdGrowth} after the warm-up (bound ${values['fd-growth']})`);

  const summary = {
    ok: problems.length === 0,
    loop: values.loop,
    vcpus,
    seconds: Number(elapsed.toFixed(1)),
    rounds,
    issued,
    completed,
    lost: issued - completed,
    handlerCalls: handled,
    requestsPerSecond: Math.round(completed / elapsed),
    warmupSeconds: warmupMs / 1000,
    rssMb: { baseline: Number(base.rssMb.toFixed(1)), peak: Number(peak.rssMb.toFixed(1)), growth: Number(rssGrowth.toFixed(1)), first: Number(samples[0].rssMb.toFixed(1)), last: Number(samples.at(-1).rssMb.toFixed(1)) },
    fds: { baseline: base.fds, peak: peak.fds, growth: fdGrowth, first: samples[0].fds, last: samples.at(-1).fds },
    samples: samples.length,
    problems,
  };
  if (values.samples) summary.series = samples.map((s) => ({ t: s.t, rssMb: Number(s.rssMb.toFixed(1)), heapMb: Number(s.heapMb.toFixed(1)), fds: s.fds, requests: s.requests }));
  if (values.json) {
    console.log(JSON.stringify(summary));
  } else {
    console.log(`soak (${values.loop} loop): ${vcpus} vCPUs, ${summary.seconds} s, ${rounds} rounds, ${completed} of ${issued} requests completed (${summary.requestsPerSecond}/s), ${handled} handler calls`);
    console.log(`RSS ${summary.rssMb.first} MB at start, ${summary.rssMb.baseline} MB after warm-up, peak ${summary.rssMb.peak} MB (+${summary.rssMb.growth} MB); fds ${summary.fds.first} -> ${summary.fds.last} (peak growth ${fdGrowth})`);
    console.log(problems.length === 0 ? 'PASS' : `FAIL: ${problems.join('; ')}`);
  }
  return problems.length === 0 ? 0 : 1;
}

if (!isMainThread) {
  await serveInWorker();
} else {
  process.exitCode = await main();
}
