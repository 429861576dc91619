// A worker serving a VM's MMIO register block with the synchronous loop (the fast path).
import { parentPort, workerData } from 'node:worker_threads';
import { Vm } from '../../dist/index.js';

const vm = Vm.fromShared(workerData.token);
const client = vm.createIoreqClient();
const regs = new BigUint64Array(512);
let served = 0;
client.mmio(0xfe00_0000n, 0x1000n, {
  read(offset) {
    served++;
    return regs[offset >> 3];
  },
  write(offset, _size, value) {
    served++;
    regs[offset >> 3] = value;
  },
});
parentPort.postMessage({ stopToken: client.stopToken });
client.runSync();
parentPort.postMessage({ served });
