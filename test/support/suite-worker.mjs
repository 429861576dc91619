// The shared client suite's devices, served by the synchronous loop in a worker.
import { parentPort, workerData } from 'node:worker_threads';
import { Vm } from '../../dist/index.js';
import { register } from './suite-devices.mjs';

const vm = Vm.fromShared(workerData.token);
const client = vm.createIoreqClient({ wake: workerData.wake });
const { report } = register(client);
parentPort.postMessage({ stopToken: client.stopToken });
client.runSync();
parentPort.postMessage(report());
