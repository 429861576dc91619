/**
 * The `js-sync` variant of `acrn-hsm bench --guest`: a worker thread serving the guest's VM
 * (shared by the main thread with `vm.share()`) with TypeScript devices in the synchronous loop
 * (`runSync`). Posts `{ stopToken }` once ready, `{ exited: true }` on the guest's debug exit,
 * `{ served, dumped, dump }` when the loop returned.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Vm } from '../index.js';
import type { WakeMode } from '../client.js';
import { guestDevices } from './guest.js';

const data = workerData as { token: number; wake: WakeMode; testPort: number; resultPort: number; exitPort: number; dumpBytes: number };
const vm = Vm.fromShared(data.token);
const client = vm.createIoreqClient({ wake: data.wake });
const st = guestDevices(client, data, data.dumpBytes, () => parentPort?.postMessage({ exited: true }));
parentPort?.postMessage({ stopToken: client.stopToken });
client.runSync();
parentPort?.postMessage({ served: st.served, dumped: st.dumped, dump: st.dump });
