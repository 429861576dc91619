/**
 * acrn-hsm: ACRN device backends in TypeScript over a Rust core.
 *
 * This entry uses the native addon. For browsers, or Node without the addon, import
 * `acrn-hsm/wasm`, which has the same decoder API.
 */
import { makeDecoder, type DecoderBinding } from './decoder.js';
import { makeEncoder, type EncoderBinding } from './encode.js';
import { native } from './native.js';

export { AcrnHsmError } from './errors.js';
export type { Abi, AbiTables, StructLayout } from './abi.js';
export type {
  Direction,
  IoRequest,
  IoreqSlot,
  IoreqState,
  MmioRequest,
  PciRequest,
  PioRequest,
} from './ioreq.js';

const decoder = makeDecoder(() => native() as unknown as DecoderBinding);

/** The ABI of `<linux/acrn.h>`: `abi.ioctl.CREATE_VM`, `abi.structs.acrn_io_request`, `abi.constants`. */
export const abi = decoder.abi;
/** Decodes one 256-byte `struct acrn_io_request`. */
export const decodeIoRequest = decoder.decodeIoRequest;
/** Decodes a 4096-byte ioreq page into its 16 slots. */
export const decodeIoreqPage = decoder.decodeIoreqPage;
/** Encodes a request object into a fresh 256-byte `struct acrn_io_request` image. */
export const encodeIoRequest = makeEncoder(() => native() as unknown as EncoderBinding);

export { Guest, Hsm, UserPage, Vm, workloadJson } from './hsm.js';
export type { CreateVmOptions, EmulatorOptions, Memseg, RunFault, RunMismatch, RunResult, VcpuRegs, Workload } from './hsm.js';
