/**
 * A 16550-style UART written in TypeScript, at the PC's COM1 (ports 0x3f8..0x3ff), printing what
 * the guest writes. The guest polls the line status register (LSR) before each byte, as a
 * real serial driver does.
 *
 *   npm run build && node dist-examples/uart-console.js
 */
import { Hsm, type Device } from 'acrn-hsm';

/** Just enough of a 16550 for a guest to print: THR, LSR, and a scratch register. */
class TsUart implements Device {
  readonly name = 'ts-uart';
  private line = '';
  private scratch = 0;
  constructor(private readonly print: (line: string) => void) {}

  read(offset: number): number {
    switch (offset) {
      case 5: return 0x60; // LSR: transmitter holding register empty, transmitter empty
      case 7: return this.scratch;
      default: return 0;
    }
  }

  write(offset: number, _size: number, value: number | bigint): void {
    const v = Number(value) & 0xff;
    if (offset === 0) {
      if (v === 0x0a) {
        this.print(this.line);
        this.line = '';
      } else if (v !== 0x0d) {
        this.line += String.fromCharCode(v);
      }
    } else if (offset === 7) {
      this.scratch = v;
    }
  }
}

/** The guest: for every byte, poll LSR until THRE, then write THR. */
function printOps(text: string) {
  return [...text].flatMap((ch) => [
    { pio: 0x3fd, size: 1, read: true, expect: 0x60 },
    { pio: 0x3f8, size: 1, write: ch.charCodeAt(0) },
  ]);
}

export async function main(print: (line: string) => void = console.log): Promise<string[]> {
  const hsm = Hsm.emulated();
  const vm = hsm.createVm({ vcpuNum: 1 });
  const client = vm.createIoreqClient();
  const lines: string[] = [];
  client.pio(0x3f8, 8, new TsUart((line) => {
    lines.push(line);
    print(`guest: ${line}`);
  }));
  vm.start();
  const serving = client.run();
  const result = await hsm.guest(vm).run({
    vcpus: [[...printOps('Hello from the guest, through a UART written in TypeScript!\n'), ...printOps('Bye.\n')]],
  });
  client.stop();
  await serving;
  vm.pause();
  vm.destroy();
  if (result.mismatches.length > 0 || result.completed !== result.issued) {
    throw new Error(`guest saw ${result.mismatches.length} wrong values, ${result.issued - result.completed} incomplete requests`);
  }
  return lines;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await main();
}
