/**
 * `acrn-hsm/wasm` for browsers: the decoding side of `acrn-hsm` on the wasm module. Call
 * `await init()` once (it fetches `acrn_hsm_wasm_bg.wasm` next to the glue, or takes the
 * module/bytes/URL you pass).
 */
import initWasm, * as wasm from '../../wasm/pkg/acrn_hsm_wasm.js';
import type { Abi } from '../abi.js';
import { makeApi, type ApiBinding } from '../api.js';
import { AcrnHsmError, callBinding } from '../errors.js';

export type * from '../public-types.js';
export { AcrnHsmError } from '../errors.js';
export { NO_DEVICE, pciAddress, pciFields, Trace, TRACE_STAGES, TRACE_STAMPS } from '../trace.js';

let ready = false;

/** Instantiates the wasm module; `input` may be a URL, a Response, bytes or a compiled module. */
export async function init(input?: Parameters<typeof initWasm>[0]): Promise<void> {
  if (ready) return;
  await initWasm(input === undefined ? undefined : ({ module_or_path: input } as Parameters<typeof initWasm>[0]));
  ready = true;
}

function binding(): ApiBinding {
  if (!ready) throw new AcrnHsmError('ERR_NOT_INITIALIZED', "call `await init()` from 'acrn-hsm/wasm' before decoding");
  return wasm as unknown as ApiBinding;
}

const api = makeApi(binding);

/** The ABI of `<linux/acrn.h>` (after `init()`). */
export function getAbi(): Abi {
  return api.decoder.abi;
}
export const { decodeIoRequest, decodeIoreqPage } = api.decoder;
export const { encodeIoRequest, decodeTrace, traceReport, traceReportJson, traceExportChrome, traceExportCsv, encodeTrace } = api;

/**
 * The report's JSON over the requests whose first stamp is in `fromNs..toNs` (the trace's clock,
 * ns, as records carry them): the viewer's report of its visible window.
 */
export function traceReportWindowJson(bytes: Uint8Array, by: string, fromNs: bigint, toNs: bigint): string {
  binding();
  return callBinding(() => wasm.traceReportWindow(bytes, by, fromNs, toNs));
}
