/**
 * Everything the decoding side of the API offers, built over one binding: the native addon
 * (`index.ts`) or the wasm module (`wasm/node.ts`, `wasm/browser.ts`). Each entry point
 * re-exports these, so both bindings expose exactly the same functions.
 */
import { makeDecoder, type DecoderBinding } from './decoder.js';
import { makeEncoder, type EncoderBinding } from './encode.js';
import { makeTraceApi, type TraceBinding } from './trace.js';

/** What a binding must provide. */
export type ApiBinding = DecoderBinding & EncoderBinding & TraceBinding;

/** Builds the decoder, encoder and trace functions over `binding`. */
export function makeApi(binding: () => ApiBinding) {
  const decoder = makeDecoder(binding);
  return {
    decoder,
    /** Encodes a request object into a fresh 256-byte `struct acrn_io_request` image. */
    encodeIoRequest: makeEncoder(binding),
    ...makeTraceApi(binding),
  };
}
