/**
 * `acrn-hsm/wasm` for Node: the decoding side of `acrn-hsm` (ABI, I/O requests, traces) on the
 * wasm module instead of the native addon. The module is instantiated synchronously on import.
 */
import { readFileSync } from 'node:fs';
import * as wasm from '../../wasm/pkg/acrn_hsm_wasm.js';
import { makeApi, type ApiBinding } from '../api.js';
import { callBinding } from '../errors.js';

wasm.initSync({ module: readFileSync(new URL('../../wasm/pkg/acrn_hsm_wasm_bg.wasm', import.meta.url)) });

export type * from '../public-types.js';
export { AcrnHsmError } from '../errors.js';
export { NO_DEVICE, pciAddress, pciFields, Trace, TRACE_STAGES, TRACE_STAMPS } from '../trace.js';

const api = makeApi(() => wasm as unknown as ApiBinding);

/** Resolves at once: on Node the module is ready on import (kept for parity with the browser entry). */
export async function init(): Promise<void> {}
/** The ABI of `<linux/acrn.h>`. */
export const abi = api.decoder.abi;
export const { decodeIoRequest, decodeIoreqPage } = api.decoder;
export const { encodeIoRequest, decodeTrace, traceReport, traceReportJson, traceExportChrome, traceExportCsv, encodeTrace } = api;

/**
 * The report's JSON over the requests whose first stamp is in `fromNs..toNs` (the trace's clock,
 * ns, as records carry them): the viewer's report of its visible window.
 */
export function traceReportWindowJson(bytes: Uint8Array, by: string, fromNs: bigint, toNs: bigint): string {
  return callBinding(() => wasm.traceReportWindow(bytes, by, fromNs, toNs));
}
