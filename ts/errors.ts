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

// `E?` is what an older core names an errno it does not know (it becomes `EUNKNOWN`, errno kept).
const CODED = /^\[([A-Z0-9_]+|E\?)\] ([\s\S]*)$/;

/**
 * Converts an error thrown by the native addon or the wasm module (whose message starts with
 * `[CODE]`, optionally followed by `errno=N`) into an {@link AcrnHsmError}. Anything else is
 * returned as it is.
 */
export function fromBindingError(err: unknown): unknown {
  if (!(err instanceof Error)) return err;
  const m = CODED.exec(err.message);
  if (!m) return err;
  const code = m[1] === 'E?' ? 'EUNKNOWN' : (m[1] as string);
  let message = m[2] as string;
  let errno: number | undefined;
  const e = /^errno=(\d+) ([\s\S]*)$/.exec(message);
  if (e) {
    errno = Number(e[1]);
    message = e[2] as string;
  }
  return new AcrnHsmError(code, message, { errno, cause: err });
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
