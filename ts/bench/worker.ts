/**
 * The `js-sync` path of `acrn-hsm bench`: a worker thread serving the benchmark VM (shared by the
 * main thread with `vm.share()`) with TypeScript devices in the synchronous loop (`runSync`).
 * Posts `{ stopToken }` once ready, `{ served }` when the loop returned.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Vm } from '../index.js';
import type { WakeMode } from '../client.js';
import { benchDevices } from './devices.js';

const data = workerData as { token: number; wake: WakeMode };
const vm = Vm.fromShared(data.token);
const client = vm.createIoreqClient({ wake: data.wake });
const served = benchDevices(client);
parentPort?.postMessage({ stopToken: client.stopToken });
client.runSync();
parentPort?.postMessage({ served: served.count });
