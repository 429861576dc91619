/** `acrn-hsm run`: a real guest on the emulated hypervisor's KVM engine (see ts/run.ts). */
import { UsageError, intOption, numberOption, parseCommand, printHelp, type CommandSpec, type Out } from './cli-args.js';


/** `acrn-hsm run`'s options, declared once: parsing, `--help` and usage errors come from here. */
export const RUN_SPEC: CommandSpec = {
  name: 'run',
  summary: 'A real guest on KVM behind the ACRN ABI; COM1 on the terminal, Ctrl-A x quits.',
  options: [
    { name: 'bios', type: 'string', value: 'FILE|seabios', help: "firmware mapped below 4 GiB ('seabios': Debian's /usr/share/seabios/bios.bin)" },
    { name: 'raw', type: 'string', value: 'FILE', help: 'a raw binary loaded at --raw-addr, started in real mode there' },
    { name: 'raw-addr', type: 'string', value: 'ADDR', help: 'where --raw is loaded and started', default: '0x1000' },
    { name: 'kernel', type: 'string', value: 'BZIMAGE', help: 'a Linux bzImage (boot protocol >= 2.06, 64-bit entry)' },
    { name: 'initrd', type: 'string', value: 'FILE', help: 'an initrd for --kernel' },
    { name: 'cmdline', type: 'string', value: 'S', help: 'the kernel command line for --kernel' },
    { name: 'disk', type: 'string', value: 'FILE', help: 'a disk image attached as virtio-blk (modern virtio-pci, 00:03.0); SeaBIOS boots it' },
    { name: 'disk-ro', type: 'boolean', help: 'attach --disk read-only (writes answer IOERR)' },
    { name: 'disk-notify', type: 'string', value: 'kvm|hsm|ioreq', help: "how --disk's queue notifications arrive: kvm (IOEVENTFD matched by KVM, no exit; default), hsm (IOEVENTFD through the HSM's in-kernel client), ioreq (a request to the ioreq client)" },
    { name: 'rng', type: 'boolean', help: 'attach a virtio-rng device (00:04.0)' },
    { name: 'mem', type: 'string', value: 'MiB', help: 'guest RAM', default: '64' },
    { name: 'vcpus', type: 'string', value: 'N', help: 'vCPUs, 1 to 16', default: '1' },
    { name: 'mode', type: 'string', value: 'notify|poll', help: 'completion mode (poll: polling VM and busy-poll client)', default: 'notify' },
    { name: 'debug-exit', type: 'string', value: 'PORT', help: 'isa-debug-exit port: a write of v ends the run with status (v << 1) | 1', default: '0xf4' },
    { name: 'debugcon', type: 'string', value: 'FILE', help: 'collect what the guest writes to port 0x402 (SeaBIOS debug log)' },
    { name: 'trace', type: 'string', value: 'FILE', help: 'record every I/O request into a trace (acrn-hsm trace report FILE)' },
    { name: 'timeout', type: 'string', value: 'S', help: 'end the run after S seconds (exit status 124)' },
    { name: 'until', type: 'string', value: 'TEXT', help: 'end the run once COM1 has printed TEXT (exit status 0)' },
    { name: 'json', type: 'boolean', help: 'print the report as JSON (COM1 then goes into the report only)' },
  ],
  notes:
    'Exit status: the guest\'s ((v << 1) | 1 after isa-debug-exit), 124 at the time-out, 0 for Ctrl-A x or --until, ' +
    '2 when a vCPU ends on its own (triple fault, an instruction KVM cannot emulate) or for a usage error, 1 when KVM is missing.',
};

function num(name: string, v: unknown, min: number, max: number, int = true): number | undefined {
  return int ? intOption(RUN_SPEC, name, v, min, max) : numberOption(RUN_SPEC, name, v, min, max);
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
  const { values: v, help } = parseCommand(RUN_SPEC, args);
  if (help) return printHelp(RUN_SPEC, out);
  const values = v as Record<string, string | boolean | undefined> & { json?: boolean };
  if (values['disk-ro'] === true && values.disk === undefined) {
    throw new UsageError('--disk-ro needs --disk', RUN_SPEC);
  }
  const diskNotify = values['disk-notify'];
  if (diskNotify !== undefined && diskNotify !== 'kvm' && diskNotify !== 'hsm' && diskNotify !== 'ioreq') {
    throw new UsageError(`--disk-notify must be kvm, hsm or ioreq, got '${String(diskNotify)}'`, RUN_SPEC);
  }
  if (diskNotify !== undefined && values.disk === undefined) {
    throw new UsageError('--disk-notify needs --disk', RUN_SPEC);
  }
  if ((values.initrd !== undefined || values.cmdline !== undefined) && values.kernel === undefined) {
    throw new UsageError('--initrd and --cmdline need --kernel', RUN_SPEC);
  }
  if ([values.bios as string | undefined, values.raw as string | undefined, values.kernel].filter((v) => v !== undefined).length > 1) {
    throw new UsageError('give one of --bios, --raw, --kernel', RUN_SPEC);
  }
  if (values.mode !== undefined && values.mode !== 'notify' && values.mode !== 'poll') {
    throw new UsageError(`--mode must be notify or poll, got '${values.mode}'`, RUN_SPEC);
  }
  const { runGuest } = await import('./run.js');
  const json = values.json === true;
  const report = await runGuest({
    bios: values.bios as string | undefined,
    raw: values.raw as string | undefined,
    kernel: values.kernel as string | undefined,
    initrd: values.initrd as string | undefined,
    cmdline: values.cmdline as string | undefined,
    rawAddr: num('raw-addr', values['raw-addr'], 0, 0xfffff),
    memMib: num('mem', values.mem, 2, 65536),
    vcpus: num('vcpus', values.vcpus, 1, 16),
    mode: values.mode as 'notify' | 'poll' | undefined,
    debugExit: num('debug-exit', values['debug-exit'], 0, 0xffff),
    debugcon: values.debugcon as string | undefined,
    trace: values.trace as string | undefined,
    timeout: num('timeout', values.timeout, 0.001, 1e9, false),
    untilSerial: values.until as string | undefined,
    disk: values.disk as string | undefined,
    diskReadOnly: values['disk-ro'] === true,
    diskNotify: diskNotify as 'kvm' | 'hsm' | 'ioreq' | undefined,
    rng: values.rng === true,
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
      (report.virtioBlk
        ? `[acrn-hsm run] virtio-blk: ${report.virtioBlk.chains} requests, ${report.virtioBlk.notifies} notifications, ` +
          `${report.virtioBlk.interrupts} interrupts${report.virtioBlk.needsReset ? `, DEVICE_NEEDS_RESET ${report.virtioBlk.needsReset}x` : ''}\n`
        : '') +
      (values.trace ? `[acrn-hsm run] trace: ${report.traceRecords ?? 0} requests in ${values.trace} (acrn-hsm trace report ${values.trace})\n` : ''),
  );
  return report.status;
}
