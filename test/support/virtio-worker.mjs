// A worker serving a TypeScript virtio-rng with the synchronous loop.
import { parentPort, workerData } from 'node:worker_threads';
import { TsVirtioRng, Vm } from '../../dist/index.js';

const vm = Vm.fromShared(workerData.token);
const client = vm.createIoreqClient();
const rng = new TsVirtioRng();
client.virtio(0, 4, 0, rng);
parentPort.postMessage({ stopToken: client.stopToken });
client.runSync();
parentPort.postMessage({ bytes: rng.bytes });
