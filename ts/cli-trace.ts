/**
 * `acrn-hsm trace ...`: reports and exports of I/O-request traces (`docs/trace-format.md`).
 *
 * With the native addon, files are streamed in bounded memory whatever their size; without it,
 * the wasm decoder reads the file into memory. Usage errors print a one-line message and
 * return 2; a file that cannot be read or is not a valid trace throws an `AcrnHsmError` whose
 * message names the file and the byte offset.
 */
import { closeSync, existsSync, openSync, readFileSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { UsageError, choiceOption, durationOption, intOption, parseCommand, printHelp, type CommandSpec, type Out } from './cli-args.js';
import { AcrnHsmError, callBinding } from './errors.js';
import { makeTraceApi, TRACE_STAGES, type TraceBinding, type TraceGroupBy, type TraceReport } from './trace.js';

const VCPU_OPTION = { name: 'vcpu', type: 'string', value: 'LIST', help: 'only the requests of these vCPUs (comma-separated: 0,2)' } as const;

/** `acrn-hsm trace report`'s options. */
export const REPORT_SPEC: CommandSpec = {
  name: 'trace report',
  summary: 'Latency report of an I/O-request trace, perf kvm stat style, with percentiles per stage.',
  positionals: 'FILE',
  positionalCount: [1, 1],
  options: [
    { name: 'by', type: 'string', value: 'address|device|vcpu|type', help: 'what a row is', default: 'address' },
    { name: 'sort', type: 'string', value: 'count|time|p50|p99|max|key', help: 'row order (time: summed latency, the Time% column)', default: 'count' },
    { name: 'top', type: 'string', value: 'N', help: 'only the first N rows (the totals still count every request)' },
    VCPU_OPTION,
    { name: 'no-stages', type: 'boolean', help: 'leave out the indented row per observed stage under each row' },
    { name: 'json', type: 'boolean', help: 'print the report as JSON (every group, unsorted by --sort/--top)' },
  ],
  notes:
    'Columns: Samples and Samples% (count), Time% (share of the summed latency), min/p50/p99/p99.9/max of the\n' +
    'total latency (PENDING to FREE, as the guest waits). Stages: dispatch, queue, handler, reply, completion, release.',
};

/** `acrn-hsm trace export`'s options. */
export const EXPORT_SPEC: CommandSpec = {
  name: 'trace export',
  summary: 'Export a trace: Chrome Trace Event JSON (for the Perfetto UI) or CSV.',
  positionals: 'FILE',
  positionalCount: [1, 1],
  options: [
    { name: 'format', type: 'string', value: 'chrome|csv', help: 'the output format' },
    { name: 'output', short: 'o', type: 'string', value: 'OUT', help: 'the file to write; - for stdout' },
    { name: 'stages', type: 'boolean', help: 'chrome: also one nested slice per stage (about 3x larger)' },
    { name: 'no-counter', type: 'boolean', help: 'chrome: leave out the latency_us counter track' },
    { name: 'from', type: 'string', value: 'T', help: 'chrome: only requests from T on (from the trace start: 1.5s, 200ms, 50us; a bare number is µs)' },
    { name: 'to', type: 'string', value: 'T', help: 'chrome: only requests before T' },
    { ...VCPU_OPTION, help: 'chrome: only the requests of these vCPUs' },
  ],
  notes: 'The compact Chrome form (the default) is about 3.6 times the binary trace (--stages: 11 times); --from/--to/--vcpu cut a window out of a long one.',
};

/** `acrn-hsm trace replay`'s options. */
export const REPLAY_SPEC: CommandSpec = {
  name: 'trace replay',
  summary: 'Run a trace again on the emulator as a guest workload; report mismatches (exit 1 if any).',
  positionals: 'FILE',
  positionalCount: [1, 1],
  options: [
    { name: 'pace', type: 'boolean', help: "keep each vCPU's recorded idle time between requests" },
    { name: 'devices', type: 'string', value: 'auto|recorded|demo', help: "recorded: the trace's devices replay their parts; demo: the demo's devices", default: 'auto' },
    { name: 'json', type: 'boolean', help: 'print the replay report as JSON' },
  ],
};

/** The native addon's streaming file functions, when the addon loads. */
interface FileBinding {
  traceReportFile(path: string, by: string, vcpus?: number[] | null): string;
  traceExportFile(path: string, format: string, out: string, options?: ChromeExportOptions | null): void;
  TraceExportStream: { open(path: string, format: string, options?: ChromeExportOptions | null): ExportStream };
}

/** The native export read in chunks (`TraceExportStream`). */
interface ExportStream {
  next(): Uint8Array | null;
  readonly progress: number;
}

/** What the Chrome export writes (the native `ChromeExportOptions`). */
interface ChromeExportOptions {
  stages?: boolean;
  noCounter?: boolean;
  fromNs?: bigint;
  toNs?: bigint;
  vcpus?: number[];
}

/** The extra wasm functions (subset exports and reports). */
interface WasmExtra {
  traceReportVcpus(bytes: Uint8Array, by: string, vcpus: Uint16Array): string;
  traceExportChromeWith(bytes: Uint8Array, stages: boolean, noCounter: boolean, fromNs?: bigint, toNs?: bigint, vcpus?: Uint16Array): string;
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

async function wasmPkg(): Promise<TraceBinding & WasmExtra> {
  await import('./wasm/node.js'); // instantiates the module
  return (await import('../wasm/pkg/acrn_hsm_wasm.js')) as unknown as TraceBinding & WasmExtra;
}

async function wasmApi() {
  const pkg = await wasmPkg();
  return makeTraceApi(() => pkg);
}

function vcpuList(spec: CommandSpec, v: unknown): number[] | undefined {
  if (v === undefined) return undefined;
  const items = String(v).split(',').map((x) => x.trim());
  const out = items.map((x) => {
    const n = Number(x);
    if (x === '' || !Number.isInteger(n) || n < 0 || n > 65535) {
      throw new UsageError(`${spec.name}: --vcpu takes vCPU numbers separated by commas (got '${String(v)}')`, spec);
    }
    return n;
  });
  return [...new Set(out)];
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
  if (ns < 1_000_000) return `${(ns / 1_000).toFixed(2)}µs`;
  if (ns < 1_000_000_000) return `${(ns / 1_000_000).toFixed(2)}ms`;
  return `${(ns / 1_000_000_000).toFixed(2)}s`;
}

/** How `trace report` orders its rows. */
export type ReportSort = 'count' | 'time' | 'p50' | 'p99' | 'max' | 'key';

/** Options of {@link formatReport}. */
export interface FormatOptions {
  sort?: ReportSort;
  /** Only the first `top` rows. */
  top?: number;
  /** The per-stage rows under each row (default true). */
  stages?: boolean;
}

/**
 * The report as a table in the style of `perf kvm stat report`: Samples, Samples%, Time%, and
 * percentiles of the total latency; optionally one indented row per stage.
 */
export function formatReport(report: TraceReport, options: FormatOptions = {}): string {
  const head = ['key', 'Samples', 'Samples%', 'Time%', 'min', 'p50', 'p99', 'p99.9', 'max'];
  const by: Record<ReportSort, (g: TraceReport['groups'][number]) => number | string> = {
    count: (g) => -g.count,
    time: (g) => -(g.time_share ?? 0),
    p50: (g) => -(g.p50_ns ?? -1),
    p99: (g) => -(g.p99_ns ?? -1),
    max: (g) => -(g.max_ns ?? -1),
    key: (g) => g.key,
  };
  const f = by[options.sort ?? 'count'];
  const groups = [...report.groups].sort((a, b) => {
    const x = f(a);
    const y = f(b);
    return x < y ? -1 : x > y ? 1 : a.key < b.key ? -1 : a.key > b.key ? 1 : 0;
  });
  const shown = options.top === undefined ? groups : groups.slice(0, options.top);
  const pct = (x: number | undefined) => (x === undefined ? '-' : `${(x * 100).toFixed(2)}%`);
  const rows: string[][] = [];
  for (const g of shown) {
    rows.push([g.key, String(g.count), pct(g.share), pct(g.time_share), dur(g.min_ns), dur(g.p50_ns), dur(g.p99_ns), dur(g.p999_ns), dur(g.max_ns)]);
    if (options.stages === false) continue;
    for (const s of TRACE_STAGES) {
      const st = g.stages[s];
      if (s === 'total' || st.count === 0) continue;
      rows.push([`  ${s}`, String(st.count), '', '', dur(st.min_ns), dur(st.p50_ns), dur(st.p99_ns), dur(st.p999_ns), dur(st.max_ns)]);
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
  const more = shown.length < groups.length ? ` (${groups.length - shown.length} more rows not shown: --top)` : '';
  out += `\nTotal requests: ${total}${more}. Latencies: total = PENDING to FREE as the guest waits` +
    `${options.stages === false ? '' : '; indented rows are the stages observed'}.\n`;
  return out;
}

async function report(args: string[], out: Out): Promise<number> {
  const { values, positionals, help } = parseCommand(REPORT_SPEC, args);
  if (help) return printHelp(REPORT_SPEC, out);
  const by = choiceOption(REPORT_SPEC, 'by', values.by, ['address', 'device', 'vcpu', 'type'] as const, 'address');
  const sort = choiceOption(REPORT_SPEC, 'sort', values.sort, ['count', 'time', 'p50', 'p99', 'max', 'key'] as const, 'count');
  const top = intOption(REPORT_SPEC, 'top', values.top, 1, 1e9);
  const vcpus = vcpuList(REPORT_SPEC, values.vcpu);
  const file = positionals[0] as string;
  checkFile(file);
  const files = await nativeFiles();
  const json = await onFile(file, async () => {
    if (files) return callBinding(() => files.traceReportFile(file, by, vcpus ?? null));
    if (vcpus) {
      const pkg = await wasmPkg();
      return callBinding(() => pkg.traceReportVcpus(readFileSync(file), by, Uint16Array.from(vcpus)));
    }
    return (await wasmApi()).traceReportJson(readFileSync(file), by as TraceGroupBy);
  });
  if (values.json) {
    out.stdout(json + '\n');
    return 0;
  }
  out.stdout(formatReport(JSON.parse(json) as TraceReport, { sort, top, stages: values['no-stages'] !== true }));
  return 0;
}

/** Writes `b` to a file (created or truncated), in order. */
function fileWriter(path: string): { write(b: Uint8Array): void; close(): void } {
  let fd: number;
  try {
    fd = openSync(path, 'w');
  } catch (err) {
    throw new AcrnHsmError('ERR_TRACE_IO', `cannot create ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  return {
    write(b) {
      let off = 0;
      while (off < b.length) off += writeSync(fd, b, off);
    },
    close: () => closeSync(fd),
  };
}

/** Copies the stream's chunks to `dest`, with a progress line on `progress` (a terminal). */
async function writeChunks(stream: ExportStream, dest: { write?(b: Uint8Array): unknown; close?(): void; stdout?: (s: string) => void }, progress: ((s: string) => void) | null): Promise<void> {
  let last = 0;
  try {
    for (;;) {
      const b = callBinding(() => stream.next());
      if (b === null) break;
      if (dest.write) await dest.write(b);
      else dest.stdout?.(Buffer.from(b).toString('utf8'));
      if (progress && Date.now() - last > 250) {
        last = Date.now();
        progress(`\rexporting: ${(stream.progress * 100).toFixed(0).padStart(3)}% of the trace read`);
      }
    }
  } finally {
    dest.close?.();
    if (progress && last !== 0) progress('\r\x1b[K');
  }
}

async function exportCmd(args: string[], out: Out): Promise<number> {
  const { values, positionals, help } = parseCommand(EXPORT_SPEC, args);
  if (help) return printHelp(EXPORT_SPEC, out);
  const format = values.format;
  if (format !== 'chrome' && format !== 'csv') throw new UsageError('trace export needs --format chrome or --format csv', EXPORT_SPEC);
  const dest = values.output as string | undefined;
  if (!dest) throw new UsageError('trace export needs -o OUT (- for stdout)', EXPORT_SPEC);
  const chrome: ChromeExportOptions = {
    stages: values.stages === true,
    noCounter: values['no-counter'] === true,
    fromNs: durationOption(EXPORT_SPEC, 'from', values.from),
    toNs: durationOption(EXPORT_SPEC, 'to', values.to),
    vcpus: vcpuList(EXPORT_SPEC, values.vcpu),
  };
  if (format === 'csv' && (chrome.stages || chrome.noCounter || chrome.fromNs !== undefined || chrome.toNs !== undefined || chrome.vcpus)) {
    throw new UsageError('trace export: --stages, --no-counter, --from, --to and --vcpu apply to --format chrome', EXPORT_SPEC);
  }
  const file = positionals[0] as string;
  checkFile(file);
  const toStdout = dest === '-';
  const files = await nativeFiles();
  await onFile(file, async () => {
    const options = format === 'chrome' ? chrome : null;
    if (files && !toStdout && !process.stderr.isTTY) {
      callBinding(() => files.traceExportFile(file, format, dest, options));
      return;
    }
    if (files) {
      // In chunks from the exporting thread: to stdout (a pipe or a socket, not a file), or to a
      // file with progress on the terminal.
      const stream = callBinding(() => files.TraceExportStream.open(file, format, options));
      await writeChunks(stream, toStdout ? out : fileWriter(dest), toStdout || !process.stderr.isTTY ? null : out.stderr);
      return;
    }
    const pkg = await wasmPkg();
    const api = makeTraceApi(() => pkg);
    const bytes = readFileSync(file);
    const text =
      format === 'csv'
        ? api.traceExportCsv(bytes)
        : callBinding(() =>
            pkg.traceExportChromeWith(bytes, chrome.stages ?? false, chrome.noCounter ?? false, chrome.fromNs, chrome.toNs, chrome.vcpus ? Uint16Array.from(chrome.vcpus) : undefined),
          );
    if (toStdout) {
      await (out.write ?? ((b: Uint8Array) => out.stdout(Buffer.from(b).toString('utf8'))))(Buffer.from(text, 'utf8'));
      return;
    }
    try {
      writeFileSync(dest, text);
    } catch (err) {
      throw new AcrnHsmError('ERR_TRACE_IO', `cannot write ${dest}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
    }
  });
  if (!toStdout) out.stderr(`wrote ${dest} (${format === 'chrome' ? 'Chrome Trace Event JSON: open it in https://ui.perfetto.dev' : 'CSV'})\n`);
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
  const { values, positionals, help } = parseCommand(REPLAY_SPEC, args);
  if (help) return printHelp(REPLAY_SPEC, out);
  const devices = choiceOption(REPLAY_SPEC, 'devices', values.devices, ['auto', 'recorded', 'demo'] as const, 'auto');
  const file = positionals[0] as string;
  checkFile(file);
  const { native } = await import('./native.js');
  const n = native() as unknown as Partial<ReplayBinding>;
  if (typeof n.traceReplayFile !== 'function') {
    throw new AcrnHsmError('ERR_NO_NATIVE', 'trace replay needs the native addon (the emulator runs in it)');
  }
  const fn = n.traceReplayFile.bind(n);
  const json = await onFile(file, () => callBinding(() => fn(file, { pace: values.pace === true, devices })));
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

/** Usage of `acrn-hsm trace` (from the subcommands' tables). */
export async function traceUsage(): Promise<string> {
  const { VIEW_SPEC } = await import('./cli-view.js');
  const { usageLine } = await import('./cli-args.js');
  return [REPORT_SPEC, EXPORT_SPEC, VIEW_SPEC, REPLAY_SPEC].map((s) => usageLine(s, Infinity)).join('\n').replace(/\nusage: /g, '\n       ') + '\n';
}

/**
 * `acrn-hsm trace <report|export|view|replay> ...`; returns the exit status (0 ok, 2 usage). Errors
 * about the file are thrown as `AcrnHsmError` (one line, naming the file and the offset); usage
 * errors print one line and the subcommand's usage line.
 */
export async function traceCommand(args: string[], out: Out): Promise<number> {
  try {
    return await traceSub(args, out);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    const { usageLine } = await import('./cli-args.js');
    out.stderr(`acrn-hsm: ${err.message}\n${err.command ? usageLine(err.command, Infinity) : (await traceUsage()).trimEnd()}\n`);
    return 2;
  }
}

async function traceSub(args: string[], out: Out): Promise<number> {
  const [sub, ...rest] = args;
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
      out.stdout(await traceUsage());
      return sub === undefined ? 2 : 0;
    default:
      throw new UsageError(`unknown trace command '${sub}' (report, export, view or replay)`);
  }
}
