// The decoder: the package's browser entry over the wasm module. The .wasm file is imported as
// a URL so Vite emits it as an asset beside the bundle and the page fetches it from its own
// origin; nothing else is loaded.
import wasmUrl from '../../wasm/pkg/acrn_hsm_wasm_bg.wasm?url';
import * as acrn from '../../ts/wasm/browser.js';

export type { Trace, TraceReport, TraceReportGroup, TraceGroupBy, TraceRecord, IoreqSlot } from '../../ts/wasm/browser.js';
export { AcrnHsmError, TRACE_STAGES, TRACE_STAMPS, pciFields, NO_DEVICE } from '../../ts/wasm/browser.js';

export type Acrn = typeof acrn;

let ready: Promise<Acrn> | undefined;

/** The decoder API once its wasm module is instantiated (instantiated once). */
export function loadAcrn(): Promise<Acrn> {
  ready ??= acrn.init(wasmUrl).then(() => acrn);
  return ready;
}
