/** `acrn-hsm demo`: the demo VM on the emulator, with live progress and a summary. */
import { parseArgs } from 'node:util';
import { AcrnHsmError } from './errors.js';
import { isClean, runDemo, type DemoProgress, type DemoSummary } from './demo.js';

type Out = { stdout: (s: string) => void; stderr: (s: string) => void };

function int(name: string, v: string | undefined, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new AcrnHsmError('ERR_USAGE', `--${name} must be an integer in ${min}..${max}, got '${v}'`);
  }
  return n;
}

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
  const { values } = parseArgs({
    args,
    options: {
      vcpus: { type: 'string' },
      requests: { type: 'string' },
      seconds: { type: 'string' },
      mode: { type: 'string' },
      seed: { type: 'string' },
      json: { type: 'boolean' },
      'no-ts-device': { type: 'boolean' },
      trace: { type: 'string' },
    },
    strict: true,
  });
  const mode = values.mode ?? 'notify';
  if (mode !== 'notify' && mode !== 'poll') throw new AcrnHsmError('ERR_USAGE', `--mode must be notify or poll, got '${mode}'`);
  let seconds: number | undefined;
  if (values.seconds !== undefined) {
    seconds = Number(values.seconds);
    if (!(seconds > 0 && Number.isFinite(seconds))) throw new AcrnHsmError('ERR_USAGE', `--seconds must be a positive number`);
  }
  const options = {
    vcpus: int('vcpus', values.vcpus, 1, 16) ?? 4,
    requestsPerVcpu: int('requests', values.requests, 1, 1e9) ?? 20_000,
    seconds,
    mode: mode as 'notify' | 'poll',
    seed: int('seed', values.seed, 0, 2 ** 32 - 1),
    tsDevice: !values['no-ts-device'],
    trace: values.trace,
  };
  if (options.trace === '') throw new AcrnHsmError('ERR_USAGE', '--trace needs a FILE');
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
