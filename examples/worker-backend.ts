/**
 * The fast path: a device served by the synchronous loop in a worker thread. The main thread
 * creates the VM and runs the guest; the worker opens the same VM (`Vm.fromShared`) and serves
 * its device with `client.runSync()`: one native call per batch, no allocation per request.
 *
 *   npm run build && node dist-examples/worker-backend.js
 */
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { Hsm, stopClient, Vm } from 'acrn-hsm';

const BASE = 0xfe10_0000n;

/** Worker side: a 4 KiB register file of u64 words, served synchronously. */
function serve(token: number): void {
  const vm = Vm.fromShared(token);
  const client = vm.createIoreqClient();
  const words = new BigUint64Array(512);
  let served = 0;
  client.mmio(BASE, 0x1000n, {
    read(offset) {
      served++;
      return words[offset >> 3]!;
    },
    write(offset, _size, value) {
      served++;
      words[offset >> 3] = BigInt(value);
    },
  });
  parentPort!.postMessage({ stopToken: client.stopToken });
  client.runSync(); // returns once the main thread stops the client
  parentPort!.postMessage({ served, counters: client.counters });
}

export async function main(log: (s: string) => void = console.log, requestsPerVcpu = 5000) {
  const hsm = Hsm.emulated();
  const vm = hsm.createVm({ vcpuNum: 2 });
  const worker = new Worker(fileURLToPath(import.meta.url), { workerData: { token: vm.share() } });
  const { stopToken } = await new Promise<{ stopToken: number }>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  vm.start();
  const ops = (i: number) => [{ repeat: requestsPerVcpu / 2, ops: [
    { mmio: BASE + BigInt(i * 8), size: 8, write: 0xabcd_0000_0000_0000n + BigInt(i) },
    { mmio: BASE + BigInt(i * 8), size: 8, read: true, expect: 0xabcd_0000_0000_0000n + BigInt(i) },
  ] }];
  const t0 = performance.now();
  const r = await hsm.guest(vm).run({ vcpus: [ops(0), ops(1)] });
  const ms = performance.now() - t0;
  const done = new Promise<{ served: number }>((resolve) => worker.once('message', resolve));
  stopClient(stopToken);
  const { served } = await done;
  await worker.terminate();
  const sorted = Array.from(r.latenciesNs).sort((a, b) => a - b);
  const p = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
  log(`${r.completed} requests served by the worker (${served} handler calls) in ${ms.toFixed(0)} ms, ${r.mismatches.length} wrong values`);
  log(`guest round trip: p50 ${(p(0.5) / 1000).toFixed(1)} µs, p99 ${(p(0.99) / 1000).toFixed(1)} µs`);
  return { result: r, served };
}

if (!isMainThread) {
  serve((workerData as { token: number }).token);
} else if (import.meta.url === `file://${process.argv[1]}`) {
  await main();
}
