/**
 * `acrn-hsm trace view FILE [--port P]`: serves the trace viewer (the static page built into
 * `dist-web/` by `npm run build:web`) and one trace, on 127.0.0.1 only, and prints the URL. It
 * opens nothing by itself and runs until Ctrl-C.
 *
 * The server answers GET/HEAD only, with the page's files and `/trace.bin`. Nothing outside the
 * page's directory is reachable: paths with `..` segments (raw or percent-encoded), `//`
 * prefixes and NUL bytes are refused, and a file whose real path (symlinks resolved) leaves the
 * directory is refused too. The Host header must name the loopback address, so a web page on
 * another origin cannot reach the server through DNS rebinding.
 */
import { closeSync, createReadStream, existsSync, openSync, readSync, realpathSync, statSync } from 'node:fs';
import { realpath, stat } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { basename, extname, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { UsageError, intOption, parseCommand, printHelp, usageLine, type CommandSpec } from './cli-args.js';
import { AcrnHsmError } from './errors.js';

type Out = { stdout: (s: string) => void; stderr: (s: string) => void };

/** Options of {@link startViewServer}. */
export interface ViewServerOptions {
  /** The trace file to serve as `/trace.bin`. */
  file: string;
  /** TCP port; 0 (default) picks a free one. */
  port?: number;
  /** Directory of the built page (default: the package's `dist-web/`). */
  webRoot?: string;
}

/** A running viewer server. */
export interface ViewServer {
  /** The page's URL, loading the trace (`http://127.0.0.1:PORT/?trace=trace.bin&name=...`). */
  url: string;
  port: number;
  /** Stops listening and closes open connections. */
  close(): Promise<void>;
}

const HOST = '127.0.0.1';
const TRACE_PATH = '/trace.bin';
const TRACE_MAGIC = Buffer.from('ACRNTRC\0', 'latin1');

const MIME: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.wasm': 'application/wasm',
  '.json': 'application/json',
  '.map': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.txt': 'text/plain; charset=utf-8',
};

/** Sent with every answer: the page may load only its own files and connect nowhere else. */
const HEADERS = {
  'Content-Security-Policy':
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'Cross-Origin-Resource-Policy': 'same-origin',
  'Cache-Control': 'no-store',
};

/** The built page shipped with the package. */
export function defaultWebRoot(): string {
  return fileURLToPath(new URL('../dist-web/', import.meta.url));
}

type Resolved = { status: 200; path: string; size: number } | { status: 400 | 403 | 404; reason: string };

/**
 * Maps a request path (raw, still percent-encoded, without the query) to a file under `root`
 * (a real path). Decides on the decoded text, so `%2e%2e` and `%2f` cannot sneak past.
 */
export async function resolveStatic(root: string, rawPath: string): Promise<Resolved> {
  if (!rawPath.startsWith('/')) return { status: 400, reason: 'not an origin-form path' };
  let path: string;
  try {
    path = decodeURIComponent(rawPath);
  } catch {
    return { status: 400, reason: 'bad percent-encoding' };
  }
  if (path.includes('\0')) return { status: 400, reason: 'NUL in path' };
  if (path.startsWith('//') || path.includes('\\')) return { status: 403, reason: 'absolute or backslash path' };
  const segments = path.split('/');
  if (segments.some((s) => s === '..')) return { status: 403, reason: 'path traversal' };
  const rel = path === '/' ? 'index.html' : path.slice(1);
  const full = resolve(root, rel);
  if (full !== root && !full.startsWith(root + sep)) return { status: 403, reason: 'outside the web root' };
  let real: string;
  try {
    real = await realpath(full);
  } catch {
    return { status: 404, reason: 'no such file' };
  }
  // A symlink inside the directory must not lead out of it.
  if (!real.startsWith(root + sep)) return { status: 403, reason: 'symlink out of the web root' };
  const st = await stat(real);
  if (!st.isFile()) return { status: 404, reason: 'not a file' };
  return { status: 200, path: real, size: st.size };
}

function send(res: ServerResponse, status: number, text: string, extra: Record<string, string> = {}): void {
  res.writeHead(status, { ...HEADERS, 'Content-Type': 'text/plain; charset=utf-8', ...extra });
  res.end(`${text}\n`);
}

function sendFile(req: IncomingMessage, res: ServerResponse, path: string, size: number, type: string): void {
  res.writeHead(200, { ...HEADERS, 'Content-Type': type, 'Content-Length': String(size) });
  if (req.method === 'HEAD') {
    res.end();
    return;
  }
  const stream = createReadStream(path);
  stream.on('error', () => res.destroy());
  stream.pipe(res);
}

/** Checks the file exists, is a regular file and starts with the trace magic. */
function checkTraceFile(file: string): void {
  if (!existsSync(file)) throw new AcrnHsmError('ERR_FILE', `cannot read ${file}: no such file`);
  if (!statSync(file).isFile()) throw new AcrnHsmError('ERR_FILE', `cannot read ${file}: not a regular file`);
  const head = Buffer.alloc(8);
  const fd = openSync(file, 'r');
  let n: number;
  try {
    n = readSync(fd, head, 0, 8, 0);
  } finally {
    closeSync(fd);
  }
  if (n < 8 || !head.equals(TRACE_MAGIC)) {
    throw new AcrnHsmError('ERR_TRACE_BAD_MAGIC', `${file}: not an acrn-hsm trace (bad magic at byte offset 0)`);
  }
}

/** Starts the viewer server on 127.0.0.1. */
export async function startViewServer(options: ViewServerOptions): Promise<ViewServer> {
  const file = resolve(options.file);
  checkTraceFile(file);
  const webRootIn = options.webRoot ?? defaultWebRoot();
  if (!existsSync(resolve(webRootIn, 'index.html'))) {
    throw new AcrnHsmError('ERR_FILE', `the viewer page is not built (no ${resolve(webRootIn, 'index.html')}): run npm run build:web`);
  }
  const root = realpathSync(webRootIn);
  const port = options.port ?? 0;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new AcrnHsmError('ERR_INVALID_ARG', `port must be 0..65535 (got ${port})`);
  const name = basename(file);
  const query = `?trace=${TRACE_PATH.slice(1)}&name=${encodeURIComponent(name)}`;
  let allowedHosts = new Set<string>();

  const server: Server = createServer((req, res) => {
    void handle(req, res).catch(() => {
      if (!res.headersSent) send(res, 500, 'internal error');
      else res.destroy();
    });
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (!allowedHosts.has(req.headers.host ?? '')) return send(res, 421, 'wrong Host: this server answers only to 127.0.0.1 / localhost');
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'method not allowed', { Allow: 'GET, HEAD' });
    const raw = req.url ?? '/';
    const q = raw.indexOf('?');
    const path = q < 0 ? raw : raw.slice(0, q);
    if (path === TRACE_PATH) {
      const st = statSync(file);
      return sendFile(req, res, file, st.size, 'application/octet-stream');
    }
    // The bare URL opens the page on the served trace.
    if (path === '/' && q < 0) {
      res.writeHead(302, { ...HEADERS, Location: `/${query}` });
      res.end();
      return;
    }
    const r = await resolveStatic(root, path);
    if (r.status !== 200) return send(res, r.status, r.status === 404 ? 'not found' : r.status === 403 ? 'forbidden' : 'bad request');
    return sendFile(req, res, r.path, r.size, MIME[extname(r.path)] ?? 'application/octet-stream');
  }

  await new Promise<void>((ok, fail) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      fail(new AcrnHsmError('ERR_LISTEN', `cannot listen on ${HOST}:${port}: ${err.code ?? err.message}`, { cause: err })),
    );
    server.listen({ host: HOST, port, exclusive: true }, ok);
  });
  const actual = (server.address() as AddressInfo).port;
  allowedHosts = new Set([`${HOST}:${actual}`, `localhost:${actual}`]);
  return {
    url: `http://${HOST}:${actual}/${query}`,
    port: actual,
    close: () =>
      new Promise<void>((ok) => {
        server.close(() => ok());
        server.closeAllConnections();
      }),
  };
}

/** `acrn-hsm trace view`'s options. */
export const VIEW_SPEC: CommandSpec = {
  name: 'trace view',
  summary: 'Open a trace in the browser viewer: serves it on 127.0.0.1 only and prints the URL (Ctrl-C stops).',
  positionals: 'FILE',
  positionalCount: [1, 1],
  options: [{ name: 'port', short: 'p', type: 'string', value: 'P', help: 'the port, 0..65535 (0: any free one)', default: '0' }],
};

/** Usage of `acrn-hsm trace view`. */
export const VIEW_USAGE = usageLine(VIEW_SPEC, Infinity) + '\n';

/**
 * `acrn-hsm trace view FILE [--port P]`: serves until SIGINT/SIGTERM (or `signal` aborts, for
 * tests); returns the exit status (0, or 2 on bad usage). Bad files throw `AcrnHsmError`.
 */
export async function traceViewCommand(args: string[], out: Out, opts: { signal?: AbortSignal } = {}): Promise<number> {
  let positionals: string[];
  let port: number;
  try {
    const parsed = parseCommand(VIEW_SPEC, args);
    if (parsed.help) return printHelp(VIEW_SPEC, out);
    positionals = parsed.positionals;
    port = intOption(VIEW_SPEC, 'port', parsed.values.port, 0, 65535) ?? 0;
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    out.stderr(`acrn-hsm: ${err.message}\n${VIEW_USAGE}`);
    return 2;
  }
  const server = await startViewServer({ file: positionals[0] as string, port });
  out.stdout(`${server.url}\n`);
  out.stderr(`serving ${positionals[0]} and the viewer on ${HOST}:${server.port} only (nothing is opened, nothing leaves this machine); Ctrl-C to stop\n`);
  await new Promise<void>((done) => {
    const stop = () => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      opts.signal?.removeEventListener('abort', stop);
      done();
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    if (opts.signal?.aborted) stop();
    else opts.signal?.addEventListener('abort', stop, { once: true });
  });
  await server.close();
  return 0;
}
