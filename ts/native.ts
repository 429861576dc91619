/**
 * Loads the native addon built by `napi build` (native/binding.cjs, generated: never edit it).
 */
import { createRequire } from 'node:module';
import { isMainThread } from 'node:worker_threads';
import { AcrnHsmError, setErrnoTable } from './errors.js';

// The generated typings of the addon (native/binding.d.cts) describe this object.
export type NativeBinding = typeof import('../native/binding.cjs');

let cached: NativeBinding | undefined;

/** The native addon, loaded on first use; throws a clear error when it has not been built. */
export function native(): NativeBinding {
  if (cached) return cached;
  const require = createRequire(import.meta.url);
  try {
    cached = require('../native/binding.cjs') as NativeBinding;
    // `process.exit` joins Node's worker pool: a guest run waiting on a request no client will
    // complete would hang it. At the process's exit every emulated machine shuts down, so those
    // runs end. (Only the main thread's: a worker's 'exit' is the end of that worker alone.)
    const binding = cached;
    if (isMainThread) process.once('exit', () => binding.shutdownEmulators());
  } catch (err) {
    throw new AcrnHsmError(
      'ERR_NATIVE_UNAVAILABLE',
      'the acrn-hsm native addon could not be loaded (run `npm run build:native` in the repository, ' +
        "or use 'acrn-hsm/wasm' for decoding without it): " +
        (err instanceof Error ? err.message : String(err)),
      { cause: err },
    );
  }
  setErrnoTable(cached.errnoTable());
  return cached;
}
