/**
 * The `js` variant of `acrn-hsm bench --virtio`: a worker thread serving the guest's VM (shared
 * by the main thread with `vm.share()`, its RAM and SeaBIOS already loaded) with the core's PC
 * platform and the TypeScript virtio-blk (`TsVirtioBlk`, read-only, synchronous file I/O) in the
 * synchronous loop (`runSync`). Posts `{ stopToken }` once ready and, when the loop returned
 * (the guest's debug exit powers the VM off), `{ exitStatus, debugcon, chains, requests }`.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { PcPlatform, TsVirtioBlk, Vm } from '../index.js';
import type { WakeMode } from '../client.js';

const data = workerData as { token: number; wake: WakeMode; image: string };
const vm = Vm.fromShared(data.token);
const client = vm.createIoreqClient({ wake: data.wake });
// No serial console, as under QEMU's `-nodefaults` and the native variant.
const pc = new PcPlatform({ sercon: false });
const blk = new TsVirtioBlk(data.image, { readOnly: true });
client.pcPlatform(pc).virtio(0, 3, 0, blk);
parentPort?.postMessage({ stopToken: client.stopToken });
try {
  client.runSync();
} finally {
  const chains = client.virtioCounters(blk).chains;
  parentPort?.postMessage({ exitStatus: pc.exitStatus(), debugcon: pc.debugcon(), chains, requests: blk.stats.requests });
  blk.close();
}
