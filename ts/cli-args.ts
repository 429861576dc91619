/**
 * The command line's option tables: each (sub)command declares its options once, as a
 * {@link CommandSpec}; parsing (Node's built-in `node:util` `parseArgs`, strict), `--help` and
 * the usage line of an error all come from that table. One error type, {@link UsageError},
 * carries the command it is about, so the message ends with that command's usage line.
 */
import { parseArgs } from 'node:util';

/** Where a command writes. */
export type Out = {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
  /** Bytes to stdout, resolving when they may be followed (backpressure); else `stdout` is used. */
  write?: (b: Uint8Array) => Promise<void>;
};

/** Prints the `--help` of `spec`; returns exit status 0. */
export function printHelp(spec: CommandSpec, out: Out): number {
  out.stdout(helpText(spec));
  return 0;
}

/** One option of a command. */
export interface OptionSpec {
  /** The long name, without `--`. */
  name: string;
  /** A one-letter alias, without `-`. */
  short?: string;
  /** `boolean` flags take no value; `string` options take one (named by `value`). */
  type: 'boolean' | 'string';
  /** The value's placeholder in the help (`N`, `FILE`, `notify|poll`). */
  value?: string;
  /** One line (or a few) of help. */
  help: string;
  /** The default, as the help shows it. */
  default?: string;
}

/** A command: its name as typed (`trace report`), its positionals, its options. */
export interface CommandSpec {
  name: string;
  /** What it does, one line. */
  summary: string;
  /** The positionals as the usage line shows them (`FILE`). */
  positionals?: string;
  /** How many positionals it takes (default 0); `[min, max]`. */
  positionalCount?: [number, number];
  options: OptionSpec[];
  /** Paragraphs after the option list. */
  notes?: string;
}

/** A usage error: exit status 2, the message and the usage line of `command`. */
export class UsageError extends Error {
  constructor(
    message: string,
    readonly command?: CommandSpec,
  ) {
    super(message);
    this.name = 'UsageError';
  }
}

const HELP: OptionSpec = { name: 'help', short: 'h', type: 'boolean', help: 'this help' };

function optionText(o: OptionSpec): string {
  const flag = `${o.short ? `-${o.short}, ` : ''}--${o.name}`;
  return o.type === 'string' ? `${flag} ${o.value ?? 'VALUE'}` : flag;
}

/** `usage: acrn-hsm demo [--vcpus N] ...`, wrapped at `width` columns. */
export function usageLine(spec: CommandSpec, width = 100): string {
  const opts = spec.options.map((o) => `[${optionText(o).replace(/^-\w, /, '')}]`);
  const head = `usage: acrn-hsm ${spec.name}${spec.positionals ? ` ${spec.positionals}` : ''}`;
  const lines: string[] = [];
  let line = head;
  for (const o of opts) {
    if (line.length + 1 + o.length > width) {
      lines.push(line);
      line = ' '.repeat(Math.min(head.length, 24));
    }
    line += ` ${o}`;
  }
  lines.push(line);
  return lines.join('\n');
}

/** The `--help` text: usage, summary, every option with its help and default. */
export function helpText(spec: CommandSpec): string {
  const all = [...spec.options, HELP];
  const width = Math.min(30, Math.max(...all.map((o) => optionText(o).length)));
  let out = `${usageLine(spec)}\n\n${spec.summary}\n\noptions:\n`;
  for (const o of all) {
    const t = optionText(o);
    const help = o.help + (o.default !== undefined ? ` (default ${o.default})` : '');
    const [first, ...rest] = help.split('\n');
    out += t.length > width ? `  ${t}\n  ${' '.repeat(width)}  ${first}\n` : `  ${t.padEnd(width)}  ${first}\n`;
    for (const r of rest) out += `  ${' '.repeat(width)}  ${r}\n`;
  }
  if (spec.notes) out += `\n${spec.notes.trimEnd()}\n`;
  return out;
}

/** What {@link parseCommand} returns: the values by long name, the positionals. */
export interface Parsed {
  values: Record<string, string | boolean | undefined>;
  positionals: string[];
  /** `--help` was given: print {@link helpText} and exit 0. */
  help: boolean;
}

/**
 * Parses `args` against `spec` (strict: an unknown option, a missing value or a wrong number of
 * positionals is a {@link UsageError} naming `spec`).
 */
export function parseCommand(spec: CommandSpec, args: string[]): Parsed {
  const options: Record<string, { type: 'boolean' | 'string'; short?: string }> = {};
  for (const o of [...spec.options, HELP]) options[o.name] = o.short ? { type: o.type, short: o.short } : { type: o.type };
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    // Node's messages end with advice about '--' that does not apply here; keep the first sentence.
    throw new UsageError(`${spec.name}: ${msg.split('. ')[0]?.replace(/\.$/, '')}`, spec);
  }
  const values = parsed.values as Record<string, string | boolean | undefined>;
  if (values.help === true) return { values, positionals: parsed.positionals, help: true };
  const [min, max] = spec.positionalCount ?? [0, 0];
  const n = parsed.positionals.length;
  if (n < min || n > max) {
    const what = spec.positionals ?? 'no arguments';
    const takes = max === 0 ? 'takes no arguments' : min === max ? `takes exactly ${min === 1 ? 'one' : min} ${what}` : `takes ${what}`;
    throw new UsageError(n > max ? `${spec.name}: unexpected argument '${parsed.positionals[max]}' (${takes})` : `${spec.name} ${takes}`, spec);
  }
  for (const o of spec.options) {
    if (o.type === 'string' && values[o.name] === '') throw new UsageError(`${spec.name}: --${o.name} needs a ${o.value ?? 'value'}`, spec);
  }
  return { values, positionals: parsed.positionals, help: false };
}

/** An integer option in `min..max` (undefined when absent). */
export function intOption(spec: CommandSpec, name: string, v: unknown, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (typeof v !== 'string' || v.trim() === '' || !Number.isInteger(n) || n < min || n > max) {
    throw new UsageError(`${spec.name}: --${name} must be an integer in ${min}..${max}, got '${String(v)}'`, spec);
  }
  return n;
}

/** A number option in `min..max` (undefined when absent). */
export function numberOption(spec: CommandSpec, name: string, v: unknown, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (typeof v !== 'string' || v.trim() === '' || !Number.isFinite(n) || n < min || n > max) {
    throw new UsageError(`${spec.name}: --${name} must be a number in ${min}..${max}, got '${String(v)}'`, spec);
  }
  return n;
}

/** One of `allowed` (the default when absent). */
export function choiceOption<T extends string>(spec: CommandSpec, name: string, v: unknown, allowed: readonly T[], dflt: T): T {
  if (v === undefined) return dflt;
  if (typeof v !== 'string' || !allowed.includes(v as T)) {
    throw new UsageError(`${spec.name}: --${name} must be ${allowed.join(', ').replace(/, ([^,]*)$/, ' or $1')} (got '${String(v)}')`, spec);
  }
  return v as T;
}

/**
 * A duration: a number with a unit `ns`, `us` (or `µs`), `ms` or `s`; a bare number is µs (the
 * unit of Chrome traces). Returns ns.
 */
export function durationOption(spec: CommandSpec, name: string, v: unknown): bigint | undefined {
  if (v === undefined) return undefined;
  const m = typeof v === 'string' ? /^\s*(\d+(?:\.\d+)?)\s*(ns|us|µs|ms|s)?\s*$/.exec(v) : null;
  if (!m) throw new UsageError(`${spec.name}: --${name} must be a time like 1.5ms, 250us, 2s or 300ns (got '${String(v)}')`, spec);
  const scale = { ns: 1, us: 1e3, µs: 1e3, ms: 1e6, s: 1e9 }[(m[2] ?? 'us') as 'ns'];
  return BigInt(Math.round(Number(m[1]) * scale));
}
