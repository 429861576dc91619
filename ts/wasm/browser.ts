/**
 * `acrn-hsm/wasm` for browsers: the decoder API on the wasm module. Call `await init()` once
 * (it fetches `acrn_hsm_wasm_bg.wasm` next to the glue, or takes the module/bytes you pass).
 */
import initWasm, * as wasm from '../../wasm/pkg/acrn_hsm_wasm.js';
import type { Abi } from '../abi.js';
import { makeDecoder, type DecoderBinding } from '../decoder.js';
import { makeEncoder, type EncoderBinding } from '../encode.js';
import { AcrnHsmError } from '../errors.js';

export { AcrnHsmError } from '../errors.js';
export type { Abi, AbiTables, StructLayout } from '../abi.js';
export type { Direction, IoRequest, IoreqSlot, IoreqState, MmioRequest, PciRequest, PioRequest } from '../ioreq.js';

let ready = false;

/** Instantiates the wasm module; `input` may be a URL, a Response, bytes or a compiled module. */
export async function init(input?: Parameters<typeof initWasm>[0]): Promise<void> {
  if (ready) return;
  await initWasm(input === undefined ? undefined : { module_or_path: input } as Parameters<typeof initWasm>[0]);
  ready = true;
}

function binding(): DecoderBinding & EncoderBinding {
  if (!ready) throw new AcrnHsmError('ERR_NOT_INITIALIZED', "call `await init()` from 'acrn-hsm/wasm' before decoding");
  return wasm as unknown as DecoderBinding & EncoderBinding;
}

const decoder = makeDecoder(binding);

/** The ABI of `<linux/acrn.h>` (after `init()`). */
export function getAbi(): Abi {
  return decoder.abi;
}
/** Decodes one 256-byte `struct acrn_io_request`. */
export const decodeIoRequest = decoder.decodeIoRequest;
/** Decodes a 4096-byte ioreq page into its 16 slots. */
export const decodeIoreqPage = decoder.decodeIoreqPage;
/** Encodes a request object into a fresh 256-byte slot image. */
export const encodeIoRequest = makeEncoder(binding);
