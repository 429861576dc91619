/**
 * A DMA device written in TypeScript. The guest puts a descriptor in its RAM, rings the
 * device's doorbell with the descriptor's address, and waits for the interrupt; the device
 * reads the descriptor and the buffer it points to from guest RAM (`vm.memory`), writes the
 * processed buffer (every 32-bit word byte-swapped, plus a checksum) back into guest RAM, and
 * raises an MSI. The guest then reads the result from its RAM and checks every value.
 *
 * The first rounds raise the MSI with INJECT_MSI; the last through an irqfd, by writing an
 * `EventFd`. The guest's RAM is two adjacent segments, and one buffer straddles them.
 *
 *   npm run build && node dist-examples/dma-device.js
 */
import { EventFd, Hsm, type Device, type Vm, type WorkloadOp } from 'acrn-hsm';

export const DOORBELL = 0xfed5_0000n;
export const RAM = 0x10_0000n;
const MSI_ADDR = 0xfee0_0000n; // vCPU 0, physical destination
const VECTOR = 0x41;

/** The descriptor the guest writes: `{ src: u64, dst: u64, len: u32, status: u32 }`. */
const DESC_SIZE = 24;

const bswap32 = (w: number) => (((w & 0xff) << 24) | ((w & 0xff00) << 8) | ((w >>> 8) & 0xff00) | (w >>> 24)) >>> 0;

class DmaEngine implements Device {
  readonly name = 'ts-dma';
  processed = 0;
  /** When set, the completion interrupt is raised by writing this eventfd (an irqfd). */
  irqfd: EventFd | undefined;
  readonly descBase: bigint;
  readonly #vm: Vm;
  /** A zero-copy view of the descriptor area: it sees what the guest wrote, without a read. */
  readonly #descriptors: Buffer;

  constructor(vm: Vm, descriptors: bigint) {
    this.#vm = vm;
    this.#descriptors = vm.memory.view(descriptors, 0x100);
    this.descBase = descriptors;
  }

  read(): bigint {
    return BigInt(this.processed);
  }

  write(_offset: number, _size: number, value: number | bigint): void {
    const at = Number(BigInt(value) - this.descBase);
    const d = this.#descriptors;
    const src = d.readBigUInt64LE(at);
    const dst = d.readBigUInt64LE(at + 8);
    const len = d.readUInt32LE(at + 16);
    const data = this.#vm.memory.read(src, len);
    let sum = 0;
    for (let i = 0; i < len; i += 4) {
      const w = data.readUInt32LE(i);
      sum = (sum + w) >>> 0;
      data.writeUInt32LE(bswap32(w), i);
    }
    this.#vm.memory.write(dst, data);
    d.writeUInt32LE(sum, at + 20); // status: the checksum, through the view
    this.processed++;
    if (this.irqfd) this.irqfd.write(1n);
    else this.#vm.injectMsi(MSI_ADDR, BigInt(VECTOR));
  }
}

/** The guest's side of one transfer of `words` 32-bit words from `src` to `dst`. */
function transfer(desc: bigint, src: bigint, dst: bigint, words: number[]): WorkloadOp[] {
  const sum = words.reduce((a, w) => (a + w) >>> 0, 0);
  return [
    ...words.map((w, i): WorkloadOp => ({ ram: src + BigInt(4 * i), size: 4, write: w })),
    { ram: desc, size: 8, write: src },
    { ram: desc + 8n, size: 8, write: dst },
    { ram: desc + 16n, size: 4, write: 4 * words.length },
    { mmio: DOORBELL, size: 8, write: desc },
    { wait_irq: { vector: VECTOR }, timeout_ns: 5_000_000_000 },
    ...words.map((w, i): WorkloadOp => ({ ram: dst + BigInt(4 * i), size: 4, read: true, expect: bswap32(w) })),
    { ram: desc + 20n, size: 4, read: true, expect: sum },
  ];
}

export async function main(log: (s: string) => void = console.log) {
  const hsm = Hsm.emulated();
  const vm = hsm.createVm({ vcpuNum: 1 });
  vm.mapRam(RAM, Hsm.allocPages(0x1000));
  vm.mapRam(RAM + 0x1000n, Hsm.allocPages(0x1000));
  const client = vm.createIoreqClient();
  const dma = new DmaEngine(vm, RAM);
  client.mmio(DOORBELL, 0x1000n, dma);
  vm.start();
  const serving = client.run();

  const rounds = 4;
  const ops: WorkloadOp[][] = [];
  let words = 0;
  for (let r = 0; r < rounds; r++) {
    const n = 16 * (r + 1);
    const data = Array.from({ length: n }, (_, i) => ((0x0102_0304 * (i + 1) + r * 0x1111) >>> 0));
    // Round 1's source straddles the two segments.
    const src = r === 1 ? RAM + 0x1000n - 32n : RAM + 0x200n;
    ops.push(transfer(RAM + BigInt(r * DESC_SIZE), src, RAM + 0x1400n + BigInt(r * 0x100), data));
    words += n;
  }
  const first = await hsm.guest(vm).run({ vcpus: [ops.slice(0, 3).flat()] });

  // The last round: the completion interrupt goes through an irqfd.
  const efd = new EventFd();
  vm.irqfd({ fd: efd, flags: 0, msiAddr: MSI_ADDR, msiData: BigInt(VECTOR) });
  dma.irqfd = efd;
  const last = await hsm.guest(vm).run({ vcpus: [ops[3]!] });
  client.stop();
  await serving;
  efd.close();

  const mismatches = first.mismatches.length + last.mismatches.length;
  const faults = first.faults.length + last.faults.length;
  const c = vm.irqCounters();
  log(`guest: ${rounds} DMA transfers (${words} words) checked, ${mismatches} wrong values, ${faults} faults`);
  log(`device: ${dma.processed} descriptors processed; interrupts delivered ${c.msi} (3 INJECT_MSI + 1 irqfd), taken by wait_irq ${c.taken}`);
  log(`requests: ${first.issued + last.issued} (the doorbells; RAM accesses make none)`);
  vm.pause();
  return { mismatches, faults, processed: dma.processed, counters: c };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await main();
}
