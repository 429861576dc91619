/**
 * Errors raised by acrn-hsm. Every error has a stable `code`: an errno name (`'EINVAL'`) for
 * ioctl failures, with `errno` set, or an `ERR_*` code for bad input (`'ERR_UNKNOWN_TYPE'`).
 */
export class AcrnHsmError extends Error {
  readonly code: string;
  readonly errno?: number;

  constructor(code: string, message: string, options?: { errno?: number; cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'AcrnHsmError';
    this.code = code;
    if (options?.errno !== undefined) this.errno = options.errno;
  }
}

// The codes the Rust side sets on the errors it throws (`crates/acrn-hsm-node/src/errors.rs`,
// `crates/acrn-hsm-wasm/src/lib.rs`): an errno name or `ERR_*`. napi-rs's own failures carry its
// status names (`InvalidArg`, ...) and are passed through as they are.
const OUR_CODE = /^(E[A-Z0-9]+|ERR_[A-Z0-9_]+)$/;

let errnoOf: ReadonlyMap<string, number> = new Map();

/**
 * The errno numbers of the codes the core names (from the addon's `errnoTable()`, set when the
 * addon loads; the wasm module has no errnos).
 * @internal
 */
export function setErrnoTable(table: readonly { name: string; errno: number }[]): void {
  errnoOf = new Map(table.map((e) => [e.name, e.errno]));
}

/**
 * Converts an error thrown by the native addon or the wasm module, whose `code` the Rust side
 * set, into an {@link AcrnHsmError} (with `errno` for errno codes: set by the task that failed,
 * or from the core's table). Anything else is returned as it is.
 */
export function fromBindingError(err: unknown): unknown {
  if (!(err instanceof Error) || err instanceof AcrnHsmError) return err;
  const code = (err as Error & { code?: unknown }).code;
  if (typeof code !== 'string' || !OUR_CODE.test(code)) return err;
  const given = (err as Error & { errno?: unknown }).errno;
  const errno = typeof given === 'number' ? given : errnoOf.get(code);
  return new AcrnHsmError(code, err.message, { errno, cause: err });
}

/** Calls `fn`, rethrowing binding errors as {@link AcrnHsmError}. */
export function callBinding<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw fromBindingError(err);
  }
}

/**
 * `err` (an {@link AcrnHsmError} whose code is one of `advice`'s keys) with what to do appended
 * to its message: the code and errno stay. Anything else is returned as it is.
 */
export function withAdvice(err: unknown, advice: Partial<Record<string, string>>): unknown {
  if (!(err instanceof AcrnHsmError)) return err;
  const a = advice[err.code];
  if (a === undefined) return err;
  return new AcrnHsmError(err.code, `${err.message}: ${a}`, { errno: err.errno, cause: err });
}
