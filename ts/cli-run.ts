/** `acrn-hsm run`: a real guest on the emulated hypervisor's KVM engine (see ts/run.ts). */
import { parseArgs } from 'node:util';
import { UsageError } from './cli-args.js';

type Out = { stdout: (s: string) => void; stderr: (s: string) => void };

export const RUN_USAGE =
  '  run [--bios FILE|seabios | --raw FILE [--raw-addr A] | --kernel BZIMAGE [--initrd FILE] [--cmdline S]]\n' +
  '      [--mem MiB] [--vcpus N] [--mode notify|poll]\n' +
  '      [--debug-exit PORT] [--debugcon FILE] [--trace FILE] [--timeout S] [--until TEXT] [--json]\n' +
  '                          a real guest on KVM behind the ACRN ABI; COM1 on the terminal, Ctrl-A x quits\n';

function num(name: string, v: string | undefined, min: number, max: number, int = true): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n < min || n > max || (int && !Number.isInteger(n))) {
    throw new UsageError(`--${name} must be ${int ? 'an integer' : 'a number'} in ${min}..${max}, got '${v}'`);
  }
  return n;
}

/** `engines` for `acrn-hsm info`: which execution engines exist here. */
export async function engineInfo(): Promise<{ workload: { usable: boolean }; kvm: { usable: boolean; reason: string } } | { error: string }> {
  try {
    const { engines } = await import('./run.js');
    return engines();
  } catch (err) {
    return { error: err instanceof Error ? err.message : String(err) };
  }
}

/** The `engines` lines of `acrn-hsm info`. */
export function describeEngines(e: Awaited<ReturnType<typeof engineInfo>>): string {
  if ('error' in e) return `engines   unknown: ${e.error}\n`;
  return (
    `engines   workload: available (scripted guests, any machine)\n` +
    `          kvm: ${e.kvm.usable ? 'available' : 'unavailable'} (${e.kvm.reason})\n`
  );
}

/** Runs the command; returns the guest's exit status (1 when it cannot run, 2 usage). */
export async function runCommand(args: string[], out: Out): Promise<number> {
  if (args.includes('--help') || args.includes('-h')) {
    out.stdout(`usage: acrn-hsm run [options]\n${RUN_USAGE}`);
    return 0;
  }
  const { values } = parseArgs({
    args,
    options: {
      bios: { type: 'string' },
      raw: { type: 'string' },
      'raw-addr': { type: 'string' },
      kernel: { type: 'string' },
      initrd: { type: 'string' },
      cmdline: { type: 'string' },
      disk: { type: 'string' },
      mem: { type: 'string' },
      vcpus: { type: 'string' },
      mode: { type: 'string' },
      'debug-exit': { type: 'string' },
      debugcon: { type: 'string' },
      trace: { type: 'string' },
      timeout: { type: 'string' },
      until: { type: 'string' },
      json: { type: 'boolean' },
    },
    strict: true,
  });
  if (values.disk !== undefined) {
    throw new UsageError('--disk is not supported yet: this build has no virtio-blk device');
  }
  if ((values.initrd !== undefined || values.cmdline !== undefined) && values.kernel === undefined) {
    throw new UsageError('--initrd and --cmdline need --kernel');
  }
  if ([values.bios, values.raw, values.kernel].filter((v) => v !== undefined).length > 1) {
    throw new UsageError('give one of --bios, --raw, --kernel');
  }
  if (values.mode !== undefined && values.mode !== 'notify' && values.mode !== 'poll') {
    throw new UsageError(`--mode must be notify or poll, got '${values.mode}'`);
  }
  const { runGuest } = await import('./run.js');
  const json = values.json === true;
  const report = await runGuest({
    bios: values.bios,
    raw: values.raw,
    kernel: values.kernel,
    initrd: values.initrd,
    cmdline: values.cmdline,
    rawAddr: num('raw-addr', values['raw-addr'], 0, 0xfffff),
    memMib: num('mem', values.mem, 2, 65536),
    vcpus: num('vcpus', values.vcpus, 1, 16),
    mode: values.mode as 'notify' | 'poll' | undefined,
    debugExit: num('debug-exit', values['debug-exit'], 0, 0xffff),
    debugcon: values.debugcon,
    trace: values.trace,
    timeout: num('timeout', values.timeout, 0.001, 1e9, false),
    untilSerial: values.until,
    terminal: !json,
  });
  if (json) {
    out.stdout(JSON.stringify(report, null, 2) + '\n');
    return report.status;
  }
  const k = report.kvm;
  out.stderr(
    `\n[acrn-hsm run] ${report.reason}; exit status ${report.status}\n` +
      `[acrn-hsm run] ${k.exits} I/O exits, ${k.issued} ACRN requests issued, ${k.completed} completed, ${k.faults} faults; ` +
      `${report.resets} resets, ${k.irqs} interrupts injected, ${(report.elapsedMs / 1000).toFixed(2)} s\n` +
      (values.trace ? `[acrn-hsm run] trace: ${report.traceRecords ?? 0} requests in ${values.trace} (acrn-hsm trace report ${values.trace})\n` : ''),
  );
  return report.status;
}
