/**
 * `acrn-hsm/wasm` for Node: the same decoder API as `acrn-hsm`, running on the wasm module
 * instead of the native addon. The module is instantiated synchronously on import.
 */
import { readFileSync } from 'node:fs';
import { initSync } from '../../wasm/pkg/acrn_hsm_wasm.js';
import * as wasm from '../../wasm/pkg/acrn_hsm_wasm.js';
import { makeDecoder, type DecoderBinding } from '../decoder.js';
import { makeEncoder, type EncoderBinding } from '../encode.js';

initSync({ module: readFileSync(new URL('../../wasm/pkg/acrn_hsm_wasm_bg.wasm', import.meta.url)) });

export { AcrnHsmError } from '../errors.js';
export type { Abi, AbiTables, StructLayout } from '../abi.js';
export type { Direction, IoRequest, IoreqSlot, IoreqState, MmioRequest, PciRequest, PioRequest } from '../ioreq.js';

const decoder = makeDecoder(() => wasm as unknown as DecoderBinding);

/** Resolves at once: on Node the module is ready on import (kept for parity with the browser entry). */
export async function init(): Promise<void> {}
/** The ABI of `<linux/acrn.h>`. */
export const abi = decoder.abi;
/** Decodes one 256-byte `struct acrn_io_request`. */
export const decodeIoRequest = decoder.decodeIoRequest;
/** Decodes a 4096-byte ioreq page into its 16 slots. */
export const decodeIoreqPage = decoder.decodeIoreqPage;
/** Encodes a request object into a fresh 256-byte slot image. */
export const encodeIoRequest = makeEncoder(() => wasm as unknown as EncoderBinding);
