/**
 * `acrn-hsm trace ...`: reports and exports of I/O-request traces (`docs/trace-format.md`).
 *
 * With the native addon, files are streamed in bounded memory whatever their size; without it,
 * the wasm decoder reads the file into memory. Usage errors print a one-line message and
 * return 2; a file that cannot be read or is not a valid trace throws an `AcrnHsmError` whose
 * message names the file and the byte offset.
 */
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { AcrnHsmError, callBinding } from './errors.js';
import { makeTraceApi, TRACE_STAGES, type TraceBinding, type TraceGroupBy, type TraceReport } from './trace.js';

type Out = { stdout: (s: string) => void; stderr: (s: string) => void };

/** Usage of `acrn-hsm trace`. */
export const TRACE_USAGE = `usage: acrn-hsm trace report FILE [--by address|device|vcpu|type] [--json]
       acrn-hsm trace export FILE --format chrome|csv -o OUT
       acrn-hsm trace view FILE [--port P]
       acrn-hsm trace replay FILE [--pace] [--devices auto|recorded|demo] [--json]
`;

class TraceUsageError extends Error {}

/** The native addon's streaming file functions, when the addon loads. */
interface FileBinding {
  traceReportFile(path: string, by: string): string;
  traceExportFile(path: string, format: string, out: string): void;
}

async function nativeFiles(): Promise<FileBinding | null> {
  if (process.env.ACRN_HSM_TRACE_BACKEND === 'wasm') return null;
  try {
    const { native } = await import('./native.js');
    const n = native() as unknown as Partial<FileBinding>;
    return typeof n.traceReportFile === 'function' && typeof n.traceExportFile === 'function' ? (n as FileBinding) : null;
  } catch {
    return null;
  }
}

async function wasmApi() {
  await import('./wasm/node.js'); // instantiates the module
  const pkg = (await import('../wasm/pkg/acrn_hsm_wasm.js')) as unknown as TraceBinding;
  return makeTraceApi(() => pkg);
}

function checkFile(file: string): void {
  if (!existsSync(file)) throw new AcrnHsmError('ERR_FILE', `cannot read ${file}: no such file`);
  if (!statSync(file).isFile()) throw new AcrnHsmError('ERR_FILE', `cannot read ${file}: not a regular file`);
}

/** Runs `fn`, prefixing binding errors with the file name. */
async function onFile<T>(file: string, fn: () => T | Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof AcrnHsmError) throw new AcrnHsmError(err.code, `${file}: ${err.message}`, { cause: err });
    throw err;
  }
}

function dur(ns: number | null): string {
  if (ns === null) return '-';
  if (ns < 1_000) return `${ns}ns`;
  if (ns < 1_000_000) return `${(ns / 1_000).toFixed(2)}us`;
  if (ns < 1_000_000_000) return `${(ns / 1_000_000).toFixed(2)}ms`;
  return `${(ns / 1_000_000_000).toFixed(2)}s`;
}

/** The report as a table in the style of `perf kvm stat report`, with percentiles per stage. */
export function formatReport(report: TraceReport): string {
  const head = ['key', 'count', 'share', 'min', 'p50', 'p99', 'p99.9', 'max'];
  const rows: string[][] = [];
  for (const g of report.groups) {
    rows.push([g.key, String(g.count), `${(g.share * 100).toFixed(2)}%`, dur(g.min_ns), dur(g.p50_ns), dur(g.p99_ns), dur(g.p999_ns), dur(g.max_ns)]);
    for (const s of TRACE_STAGES) {
      const st = g.stages[s];
      if (s === 'total' || st.count === 0) continue;
      rows.push([`  ${s}`, String(st.count), '', dur(st.min_ns), dur(st.p50_ns), dur(st.p99_ns), dur(st.p999_ns), dur(st.max_ns)]);
    }
  }
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === 0 ? c.padEnd(widths[0] ?? 0) : c.padStart(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  const total = report.groups.reduce((n, g) => n + g.count, 0);
  let out = `Analyze I/O requests: ${report.requests} requests, grouped by ${report.by}` +
    `${report.footer ? '' : ' (the trace has no footer: its writer did not finish it)'}\n\n`;
  out += `${line(head)}\n`;
  for (const r of rows) out += `${line(r)}\n`;
  out += `\nTotal requests: ${total}. Latencies: total = PENDING to FREE as the guest waits; indented rows are the stages observed.\n`;
  return out;
}

async function report(args: string[], out: Out): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: { by: { type: 'string', default: 'address' }, json: { type: 'boolean' } },
    allowPositionals: true,
    strict: true,
  });
  if (positionals.length !== 1) throw new TraceUsageError('trace report takes exactly one FILE');
  const by = values.by as string;
  if (!['address', 'device', 'vcpu', 'type'].includes(by)) {
    throw new TraceUsageError(`--by must be address, device, vcpu or type (got '${by}')`);
  }
  const file = positionals[0] as string;
  checkFile(file);
  const files = await nativeFiles();
  const json = await onFile(file, async () => {
    if (files) return callBinding(() => files.traceReportFile(file, by));
    return (await wasmApi()).traceReportJson(readFileSync(file), by as TraceGroupBy);
  });
  if (values.json) {
    out.stdout(json + '\n');
    return 0;
  }
  out.stdout(formatReport(JSON.parse(json) as TraceReport));
  return 0;
}

async function exportCmd(args: string[], out: Out): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: { format: { type: 'string' }, output: { type: 'string', short: 'o' } },
    allowPositionals: true,
    strict: true,
  });
  if (positionals.length !== 1) throw new TraceUsageError('trace export takes exactly one FILE');
  const format = values.format;
  if (format !== 'chrome' && format !== 'csv') throw new TraceUsageError('trace export needs --format chrome or --format csv');
  const dest = values.output;
  if (!dest) throw new TraceUsageError('trace export needs -o OUT');
  const file = positionals[0] as string;
  checkFile(file);
  const files = await nativeFiles();
  await onFile(file, async () => {
    if (files) {
      callBinding(() => files.traceExportFile(file, format, dest));
      return;
    }
    const api = await wasmApi();
    const bytes = readFileSync(file);
    const text = format === 'chrome' ? api.traceExportChrome(bytes) : api.traceExportCsv(bytes);
    try {
      writeFileSync(dest, text);
    } catch (err) {
      throw new AcrnHsmError('ERR_TRACE_IO', `cannot write ${dest}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
    }
  });
  out.stderr(`wrote ${dest} (${format === 'chrome' ? 'Chrome Trace Event JSON: open it in https://ui.perfetto.dev' : 'CSV'})\n`);
  return 0;
}

/** The report of `trace replay` (`ReplayReport` in crates/acrn-hsm/src/trace/replay.rs). */
export interface ReplayReport {
  records: number;
  replayed: number;
  skipped: number;
  issued: number;
  completed: number;
  checked_reads: number;
  read_mismatches: number;
  write_mismatches: number;
  unexpected: number;
  faults: number;
  paced: boolean;
  phases: number;
  devices: 'recorded' | 'demo';
  elapsed_ms: number;
  samples: string[];
  clean: boolean;
}

interface ReplayBinding {
  traceReplayFile(path: string, options?: { pace?: boolean; devices?: string }): string;
}

/** `trace replay`: exit status 0 when the replay reproduced every request and value, 1 if not. */
async function replay(args: string[], out: Out): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: { pace: { type: 'boolean' }, devices: { type: 'string', default: 'auto' }, json: { type: 'boolean' } },
    allowPositionals: true,
    strict: true,
  });
  if (positionals.length !== 1) throw new TraceUsageError('trace replay takes exactly one FILE');
  const devices = values.devices as string;
  if (!['auto', 'recorded', 'demo'].includes(devices)) {
    throw new TraceUsageError(`--devices must be auto, recorded or demo (got '${devices}')`);
  }
  const file = positionals[0] as string;
  checkFile(file);
  const { native } = await import('./native.js');
  const n = native() as unknown as Partial<ReplayBinding>;
  if (typeof n.traceReplayFile !== 'function') {
    throw new AcrnHsmError('ERR_NO_NATIVE', 'trace replay needs the native addon (the emulator runs in it)');
  }
  const fn = n.traceReplayFile.bind(n);
  const json = await onFile(file, () => callBinding(() => fn(file, { pace: values.pace ?? false, devices })));
  const r = JSON.parse(json) as ReplayReport;
  if (values.json) {
    out.stdout(json + '\n');
  } else {
    out.stdout(
      `replayed ${file}: ${r.replayed} of ${r.records} requests (${r.skipped} skipped) against the ${r.devices} devices, ` +
        `${r.paced ? 'paced' : 'unpaced'}, ${r.phases} phase barrier(s), ${(r.elapsed_ms / 1000).toFixed(2)} s\n` +
        `  issued ${r.issued}, completed ${r.completed}, reads checked ${r.checked_reads}, read mismatches ${r.read_mismatches}, ` +
        `write mismatches ${r.write_mismatches}, unexpected accesses ${r.unexpected}, faults ${r.faults}\n`,
    );
    for (const line of r.samples) out.stdout(`  ! ${line}\n`);
    out.stdout(r.clean ? 'OK: the replay reproduced every request and value.\n' : 'MISMATCH: see above.\n');
  }
  return r.clean ? 0 : 1;
}

/**
 * `acrn-hsm trace <report|export|view|replay> ...`; returns the exit status (0 ok, 2 usage). Errors
 * about the file are thrown as `AcrnHsmError` (one line, naming the file and the offset).
 */
export async function traceCommand(args: string[], out: Out): Promise<number> {
  const [sub, ...rest] = args;
  try {
    switch (sub) {
      case 'report':
        return await report(rest, out);
      case 'export':
        return await exportCmd(rest, out);
      case 'replay':
        return await replay(rest, out);
      case 'view': {
        // Loaded on demand: the other subcommands do not need the HTTP server.
        const { traceViewCommand } = await import('./cli-view.js');
        return await traceViewCommand(rest, out);
      }
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        out.stdout(TRACE_USAGE);
        return sub === undefined ? 2 : 0;
      default:
        throw new TraceUsageError(`unknown trace command '${sub}'`);
    }
  } catch (err) {
    if (err instanceof TraceUsageError || (err instanceof TypeError && 'code' in err && String(err.code).startsWith('ERR_PARSE_ARGS'))) {
      out.stderr(`acrn-hsm trace: ${err.message}\n${TRACE_USAGE}`);
      return 2;
    }
    throw err;
  }
}
