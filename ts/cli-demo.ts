/** `acrn-hsm demo`: the demo VM on the emulator, with live progress and a summary. */
import { UsageError, choiceOption, intOption, numberOption, parseCommand, printHelp, type CommandSpec, type Out } from './cli-args.js';
import { isClean, runDemo, type DemoProgress, type DemoSummary } from './demo.js';

/** `acrn-hsm demo`'s options. */
export const DEMO_SPEC: CommandSpec = {
  name: 'demo',
  summary:
    'A User VM on the emulator with devices in Rust and TypeScript; the guest checks every value it reads back.\n' +
    'The guest boots on vCPU 0, then every vCPU issues --requests random PIO/MMIO/PCI accesses in rounds.',
  options: [
    { name: 'vcpus', type: 'string', value: 'N', help: 'vCPUs, 1..16', default: '4' },
    { name: 'requests', type: 'string', value: 'N', help: 'requests per vCPU (the total is N x vCPUs, plus the boot)', default: '20000' },
    { name: 'seconds', type: 'string', value: 'S', help: 'a cap: stop after S seconds even if requests remain (the summary says how many ran)' },
    { name: 'mode', type: 'string', value: 'notify|poll', help: 'completion: notify (the vCPU sleeps until NOTIFY) or poll (completion polling)', default: 'notify' },
    { name: 'seed', type: 'string', value: 'N', help: 'workload seed, 0..2^32-1', default: '1' },
    { name: 'trace', type: 'string', value: 'FILE', help: "record every request into FILE (see 'acrn-hsm trace report FILE')" },
    { name: 'no-ts-device', type: 'boolean', help: 'leave out the TypeScript device (Rust devices only)' },
    { name: 'json', type: 'boolean', help: 'print the summary as JSON, no progress' },
  ],
  notes: 'Exit status: 0 when every request completed exactly once with the expected value, 1 if not, 2 for a usage error.',
};

function bar(fraction: number, width = 30): string {
  const f = Math.max(0, Math.min(1, fraction));
  const full = Math.round(f * width);
  return '[' + '#'.repeat(full) + '.'.repeat(width - full) + ']';
}

function us(ns: number): string {
  return ns >= 1e6 ? `${(ns / 1e6).toFixed(2)} ms` : `${(ns / 1e3).toFixed(1)} µs`;
}

function printSummary(s: DemoSummary, tsReads: number, tsWrites: number, out: Out, trace?: string): void {
  const ok = isClean(s);
  out.stdout(`\nguest UART output:\n  ${s.uart_output.replace(/\r?\n/g, '\n  ').trimEnd()}\n\n`);
  out.stdout(`devices (requests served):\n`);
  for (const d of s.devices) {
    out.stdout(`  ${d.name.padEnd(16)} ${String(d.reads).padStart(9)} reads ${String(d.writes).padStart(9)} writes\n`);
  }
  if (tsReads + tsWrites > 0) out.stdout(`  (the TypeScript device counted ${tsReads} reads and ${tsWrites} writes itself)\n`);
  out.stdout(`\n${s.vcpus} vCPUs, ${s.mode} mode, ${(s.elapsed_ms / 1000).toFixed(2)} s\n`);
  out.stdout(`  issued ${s.issued}, completed ${s.completed}, mismatches ${s.mismatches}, lost ${s.lost}, duplicated ${s.duplicated}, faults ${s.faults}\n`);
  out.stdout(`  ${Math.round(s.rate).toLocaleString('en-US')} requests/s; round trip p50 ${us(s.latency_ns.p50)}, p99 ${us(s.latency_ns.p99)}, p99.9 ${us(s.latency_ns.p999)}, max ${us(s.latency_ns.max)}\n`);
  for (const line of s.samples) out.stdout(`  ! ${line}\n`);
  if (s.trace && trace) {
    out.stdout(`  trace: ${s.trace.records} requests recorded in ${trace} (${s.trace.in_kernel} completed in the kernel); see 'acrn-hsm trace report ${trace}'\n`);
  }
  out.stdout(ok ? 'OK: every request completed exactly once with the expected value.\n' : 'FAILED: see the counts above.\n');
}

/** Runs the command; returns the exit status (0 clean, 1 not clean or failed, 2 usage). */
export async function demoCommand(args: string[], out: Out): Promise<number> {
  const { values, help } = parseCommand(DEMO_SPEC, args);
  if (help) return printHelp(DEMO_SPEC, out);
  const mode = choiceOption(DEMO_SPEC, 'mode', values.mode, ['notify', 'poll'] as const, 'notify');
  const seconds = numberOption(DEMO_SPEC, 'seconds', values.seconds, 0, 1e7);
  if (seconds === 0) throw new UsageError('demo: --seconds must be a positive number', DEMO_SPEC);
  const options = {
    vcpus: intOption(DEMO_SPEC, 'vcpus', values.vcpus, 1, 16) ?? 4,
    requestsPerVcpu: intOption(DEMO_SPEC, 'requests', values.requests, 1, 1e9) ?? 20_000,
    seconds,
    mode,
    seed: intOption(DEMO_SPEC, 'seed', values.seed, 0, 2 ** 32 - 1),
    tsDevice: values['no-ts-device'] !== true,
    trace: values.trace as string | undefined,
  };
  const tty = !values.json && process.stderr.isTTY;
  if (!values.json) {
    out.stdout(`acrn-hsm demo: a User VM on the emulated HSM (${options.vcpus} vCPUs, ${options.mode} mode), devices in Rust and TypeScript\n`);
  }
  let lastLine = 0;
  const progress = (p: DemoProgress) => {
    if (values.json) return;
    const frac = p.planned > 0 ? p.handled / p.planned : 0;
    const line = `${bar(frac)} ${String(Math.round(frac * 100)).padStart(3)}%  ${p.handled.toLocaleString('en-US')} / ${p.planned.toLocaleString('en-US')} requests  ${(p.elapsed_ms / 1000).toFixed(1)} s`;
    if (p.uart_new) {
      if (tty) out.stderr('\r\x1b[K');
      out.stdout(`guest> ${p.uart_new.replace(/\r?\n$/, '').replace(/\r?\n/g, '\nguest> ')}\n`);
    }
    if (tty) out.stderr(`\r\x1b[K${line}`);
    else if (p.elapsed_ms - lastLine >= 1000) {
      out.stdout(line + '\n');
      lastLine = p.elapsed_ms;
    }
  };
  const { ScratchDevice } = await import('./demo.js');
  const device = options.tsDevice ? new ScratchDevice() : undefined;
  const summary = await runDemo(options, progress, device);
  if (tty) out.stderr('\r\x1b[K');
  if (values.json) out.stdout(JSON.stringify({ ...summary, clean: isClean(summary) }, null, 2) + '\n');
  else printSummary(summary, device?.reads ?? 0, device?.writes ?? 0, out, options.trace);
  return isClean(summary) ? 0 : 1;
}
