/**
 * The `acrn-hsm` command line. Every command answers bad input with a one-line error on stderr
 * and a non-zero exit status, never a stack trace.
 */
import { existsSync, readFileSync, accessSync, constants as fsConstants } from 'node:fs';
import { AcrnHsmError } from './errors.js';
import { UsageError, parseCommand, printHelp, usageLine, type CommandSpec, type Out } from './cli-args.js';
import type { IoRequest, IoreqSlot } from './ioreq.js';

/** Exit statuses: 0 success, 1 runtime failure, 2 usage error, 141 stdout closed (128 + SIGPIPE). */
export const EXIT_PIPE = 141;

const defaultOut: Out = {
  stdout: (s) => process.stdout.write(s),
  stderr: (s) => process.stderr.write(s),
  write: (b) =>
    new Promise<void>((done) => {
      if (process.stdout.write(b)) done();
      else process.stdout.once('drain', () => done());
    }),
};

export const ABI_SPEC: CommandSpec = {
  name: 'abi',
  summary: 'Sizes, alignments, field offsets, ioctl numbers and constants of <linux/acrn.h>.',
  options: [{ name: 'json', type: 'boolean', help: 'print JSON (struct, field and macro names as in the C header)' }],
};

export const DECODE_SPEC: CommandSpec = {
  name: 'decode',
  summary: 'Decode a 4096-byte ioreq page dump (struct acrn_io_request_buffer) into its 16 slots.',
  positionals: 'FILE',
  positionalCount: [1, 1],
  options: [{ name: 'json', type: 'boolean', help: 'print JSON (u64 values exact)' }],
};

export const INFO_SPEC: CommandSpec = {
  name: 'info',
  summary: 'Is /dev/acrn_hsm here, is the emulator available, which engines, versions.',
  options: [{ name: 'json', type: 'boolean', help: 'print JSON' }],
};

/** The commands `acrn-hsm` lists, in order (summaries from each command's table). */
async function commandSpecs(): Promise<CommandSpec[]> {
  const [{ DEMO_SPEC }, { BENCH_SPEC }, trace, { VIEW_SPEC }, { RUN_SPEC }] = await Promise.all([
    import('./cli-demo.js'),
    import('./cli-bench.js'),
    import('./cli-trace.js'),
    import('./cli-view.js'),
    import('./cli-run.js'),
  ]);
  return [DEMO_SPEC, BENCH_SPEC, RUN_SPEC, ABI_SPEC, DECODE_SPEC, INFO_SPEC, trace.REPORT_SPEC, trace.EXPORT_SPEC, VIEW_SPEC, trace.REPLAY_SPEC];
}

/** The top-level help, made from every command's table. */
export async function usage(): Promise<string> {
  let out = 'usage: acrn-hsm <command> [options]     (acrn-hsm <command> --help: its options)\n\ncommands:\n';
  for (const s of await commandSpecs()) {
    const name = `${s.name}${s.positionals ? ` ${s.positionals}` : ''}`;
    out += `  ${name.padEnd(22)} ${s.summary.split('\n')[0]}\n`;
  }
  out += `  ${'help'.padEnd(22)} this text (also -h, --help)\n  ${'--version'.padEnd(22)} the version\n`;
  return out;
}

function version(): string {
  return (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
}

function hex(n: number | bigint, width = 0): string {
  return '0x' + n.toString(16).padStart(width, '0');
}

/** JSON.stringify with bigint written as decimal numbers (u64 values stay exact). */
export function toJson(value: unknown): string {
  return JSON.stringify(value, (_k, v) => (typeof v === 'bigint' ? `__BIGINT__${v}` : v), 2).replace(
    /"__BIGINT__(\d+)"/g,
    '$1',
  );
}

async function cmdAbi(args: string[], out: Out): Promise<number> {
  const { values, help } = parseCommand(ABI_SPEC, args);
  if (help) return printHelp(ABI_SPEC, out);
  const { abi } = await import('./index.js');
  if (values.json) {
    out.stdout(JSON.stringify({ structs: abi.structs, ioctls: abi.ioctls, constants: abi.constants }, null, 2) + '\n');
    return 0;
  }
  out.stdout('structs (x86-64)\n');
  for (const [name, s] of Object.entries(abi.structs)) {
    out.stdout(`  ${name.padEnd(34)} size ${String(s.size).padStart(4)}  align ${String(s.align).padStart(3)}\n`);
    for (const [field, off] of Object.entries(s.fields)) {
      out.stdout(`      +${String(off).padStart(4)}  ${field}\n`);
    }
  }
  out.stdout('\nioctls\n');
  for (const [name, n] of Object.entries(abi.ioctls)) out.stdout(`  ${name.padEnd(36)} ${hex(n, 8)}\n`);
  out.stdout('\nconstants\n');
  for (const [name, n] of Object.entries(abi.constants)) out.stdout(`  ${name.padEnd(36)} ${n} (${hex(n)})\n`);
  return 0;
}

function describe(r: IoRequest): string[] {
  const where =
    r.type === 'pci'
      ? `${r.bus.toString(16).padStart(2, '0')}:${r.device.toString(16).padStart(2, '0')}.${r.function} reg ${hex(r.register, 3)}`
      : hex(r.address);
  const flags = [r.kernelHandled ? 'kernel' : '', r.completionPolling ? 'polling' : ''].filter(Boolean).join(',');
  return [r.state.toUpperCase(), r.type.toUpperCase(), r.direction, where, String(r.size), hex(r.value), flags || '-'];
}

async function cmdDecode(args: string[], out: Out): Promise<number> {
  const { values, positionals, help } = parseCommand(DECODE_SPEC, args);
  if (help) return printHelp(DECODE_SPEC, out);
  const file = positionals[0] as string;
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (err) {
    throw new AcrnHsmError('ERR_FILE', `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  if (bytes.length !== 4096) {
    throw new AcrnHsmError(
      'ERR_SHORT_BUFFER',
      `${file} is ${bytes.length} bytes; an ioreq page (struct acrn_io_request_buffer) is exactly 4096 bytes`,
    );
  }
  const { decodeIoreqPage } = await import('./index.js');
  const slots: IoreqSlot[] = decodeIoreqPage(bytes);
  if (values.json) {
    out.stdout(
      toJson(
        slots.map((s) =>
          s.request ? { slot: s.slot, request: s.request } : { slot: s.slot, error: { code: s.error.code, message: s.error.message } },
        ),
      ) + '\n',
    );
    return 0;
  }
  const header = ['slot', 'state', 'type', 'dir', 'address', 'size', 'value', 'flags'];
  const rows = slots.map((s) =>
    s.request ? [String(s.slot), ...describe(s.request)] : [String(s.slot), `ERROR ${s.error.code}: ${s.error.message}`],
  );
  const widths = header.map((h, i) => Math.max(h.length, ...rows.filter((r) => r.length > 2).map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells.length === 2 ? `${(cells[0] ?? '').padEnd(widths[0] ?? 4)}  ${cells[1]}` : cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
  out.stdout(line(header) + '\n');
  for (const r of rows) out.stdout(line(r) + '\n');
  return 0;
}

async function cmdInfo(args: string[], out: Out): Promise<number> {
  const { values, help } = parseCommand(INFO_SPEC, args);
  if (help) return printHelp(INFO_SPEC, out);
  const path = '/dev/acrn_hsm';
  let device: { path: string; present: boolean; accessible: boolean; reason?: string };
  if (!existsSync(path)) {
    device = { path, present: false, accessible: false, reason: 'not present (no ACRN Service VM here)' };
  } else {
    try {
      accessSync(path, fsConstants.R_OK | fsConstants.W_OK);
      device = { path, present: true, accessible: true };
    } catch (err) {
      device = {
        path,
        present: true,
        accessible: false,
        reason: `${(err as NodeJS.ErrnoException).code}: opening it needs read/write permission (root, or a udev rule granting your group)`,
      };
    }
  }
  let nativeInfo: { available: boolean; error?: string } = { available: true };
  try {
    const { native } = await import('./native.js');
    native();
  } catch (err) {
    nativeInfo = { available: false, error: err instanceof Error ? err.message : String(err) };
  }
  const info = {
    version: version(),
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    device,
    nativeAddon: nativeInfo,
    emulator: { available: nativeInfo.available },
    backend: device.accessible ? 'device' : 'emulator',
    engines: await (await import('./cli-run.js')).engineInfo(),
  };
  if (values.json) {
    out.stdout(JSON.stringify(info, null, 2) + '\n');
    return 0;
  }
  out.stdout(`acrn-hsm ${info.version} (node ${info.node}, ${info.platform})\n`);
  out.stdout(`device    ${path}: ${device.present ? (device.accessible ? 'present, accessible' : `present, ${device.reason}`) : device.reason}\n`);
  out.stdout(`addon     ${nativeInfo.available ? 'loaded' : `unavailable: ${nativeInfo.error}`}\n`);
  out.stdout(`emulator  ${info.emulator.available ? 'available' : 'unavailable (needs the native addon)'}\n`);
  out.stdout(`backend   ${info.backend} (what demo and bench use)\n`);
  out.stdout((await import('./cli-run.js')).describeEngines(info.engines));
  return 0;
}

/**
 * A closed stdout (`acrn-hsm abi | head -1`) ends the command quietly with status 141, as a
 * C tool killed by SIGPIPE reports it (Node ignores SIGPIPE, so the write fails with EPIPE).
 * The bin installs this; `process.exit` is safe because every emulated machine shuts down at
 * exit (ts/native.ts).
 */
export function exitQuietlyOnEpipe(stream: NodeJS.WriteStream = process.stdout): void {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(EXIT_PIPE);
    throw err;
  });
}

/** Runs the CLI; returns the exit status. */
export async function main(argv: string[], out: Out = defaultOut): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'abi':
        return await cmdAbi(rest, out);
      case 'decode':
        return await cmdDecode(rest, out);
      case 'info':
        return await cmdInfo(rest, out);
      case 'bench': {
        const { benchCommand } = await import('./cli-bench.js');
        return await benchCommand(rest, out);
      }
      case 'demo': {
        const { demoCommand } = await import('./cli-demo.js');
        return await demoCommand(rest, out);
      }
      case 'run': {
        const { runCommand } = await import('./cli-run.js');
        return await runCommand(rest, out);
      }
      case 'trace': {
        const { traceCommand } = await import('./cli-trace.js');
        return await traceCommand(rest, out);
      }
      case '--version':
      case '-V':
      case 'version':
        out.stdout(`acrn-hsm ${version()}\n`);
        return 0;
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        out.stdout(await usage());
        return command === undefined ? 2 : 0;
      default:
        throw new UsageError(`unknown command '${command}' (acrn-hsm --help lists them)`);
    }
  } catch (err) {
    if (err instanceof UsageError) {
      const line = err.command ? usageLine(err.command, Infinity) : 'usage: acrn-hsm <command> [options]   (acrn-hsm --help lists the commands)';
      out.stderr(`acrn-hsm: ${err.message}\n${line}\n`);
      return 2;
    }
    if (err instanceof AcrnHsmError) {
      out.stderr(`acrn-hsm: ${err.message} [${err.code}]\n`);
      return 1;
    }
    const msg = err instanceof Error ? err.message : String(err);
    out.stderr(`acrn-hsm: internal error: ${msg.split('\n')[0]}\n`);
    return 1;
  }
}
