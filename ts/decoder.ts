/**
 * The decoder API over either binding. `index.ts` binds it to the native addon and
 * `wasm/*.ts` to the wasm module, so both expose exactly the same functions and results.
 */
import { buildAbi, type Abi } from './abi.js';
import { callBinding } from './errors.js';
import {
  asBytes,
  normalizeRequest,
  normalizeSlot,
  type IoRequest,
  type IoreqSlot,
  type RawDecoded,
  type RawSlot,
} from './ioreq.js';

/** What a binding (native addon or wasm module) provides to the decoder API. */
export interface DecoderBinding {
  abiJson(): string;
  decodeIoRequest(bytes: Uint8Array): unknown;
  decodeIoreqPage(bytes: Uint8Array): unknown;
}

/** The decoder API. */
export interface Decoder {
  /** The ABI tables of `<linux/acrn.h>`. */
  readonly abi: Abi;
  /** Decodes one 256-byte `struct acrn_io_request`; throws `AcrnHsmError` (`code`) on bad input. */
  decodeIoRequest(bytes: Uint8Array | ArrayBuffer): IoRequest;
  /** Decodes a 4096-byte ioreq page into its 16 slots; a bad slot gives that slot an `error`. */
  decodeIoreqPage(bytes: Uint8Array | ArrayBuffer): IoreqSlot[];
}

/** Builds the decoder API over one binding. */
export function makeDecoder(binding: () => DecoderBinding): Decoder {
  let abi: Abi | undefined;
  return {
    get abi() {
      abi ??= buildAbi(callBinding(() => binding().abiJson()));
      return abi;
    },
    decodeIoRequest(bytes) {
      const b = asBytes(bytes, 'decodeIoRequest(bytes)');
      return normalizeRequest(callBinding(() => binding().decodeIoRequest(b)) as RawDecoded);
    },
    decodeIoreqPage(bytes) {
      const b = asBytes(bytes, 'decodeIoreqPage(bytes)');
      return (callBinding(() => binding().decodeIoreqPage(b)) as RawSlot[]).map(normalizeSlot);
    },
  };
}
