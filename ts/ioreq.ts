/**
 * The decoded form of one `struct acrn_io_request` (a 256-byte slot of the ioreq page), shared
 * by the native addon and the wasm module. u64 quantities are `bigint`; u32 ones are `number`.
 */
import { AcrnHsmError } from './errors.js';

/** Slot states, as in `ACRN_IOREQ_STATE_*`. */
export type IoreqState = 'pending' | 'complete' | 'processing' | 'free';
/** Access direction, as in `ACRN_IOREQ_DIR_*`. */
export type Direction = 'read' | 'write';

interface IoRequestCommon {
  state: IoreqState;
  direction: Direction;
  /** Access size in bytes: 1, 2, 4 or 8 (a FREE slot's stale payload may hold anything). */
  size: number;
  /** The slot belongs to an in-kernel ioreq client (`kernel_handled`). */
  kernelHandled: boolean;
  /** The hypervisor polls for completion instead of waiting for a notify (`completion_polling`). */
  completionPolling: boolean;
}

/** A port I/O request (`ACRN_IOREQ_TYPE_PORTIO`). */
export interface PioRequest extends IoRequestCommon {
  type: 'pio';
  address: bigint;
  /** The 32-bit `acrn_pio_request.value`. */
  value: number;
}

/** An MMIO request (`ACRN_IOREQ_TYPE_MMIO`). */
export interface MmioRequest extends IoRequestCommon {
  type: 'mmio';
  address: bigint;
  /** The 64-bit `acrn_mmio_request.value`. */
  value: bigint;
}

/** A PCI configuration request (`ACRN_IOREQ_TYPE_PCICFG`). */
export interface PciRequest extends IoRequestCommon {
  type: 'pci';
  bus: number;
  device: number;
  function: number;
  register: number;
  /** The 32-bit `acrn_pci_request.value`. */
  value: number;
}

/** One decoded I/O request. */
export type IoRequest = PioRequest | MmioRequest | PciRequest;

/** One slot of a decoded page: the request, or the reason it could not be decoded. */
export type IoreqSlot =
  | { slot: number; request: IoRequest; error?: undefined }
  | { slot: number; request?: undefined; error: AcrnHsmError };

/** The raw object both bindings return (optional members may be absent or undefined). */
export interface RawDecoded {
  type: string;
  state: string;
  direction: string;
  address?: bigint | null;
  size: number;
  value: bigint;
  bus?: number | null;
  device?: number | null;
  function?: number | null;
  register?: number | null;
  kernelHandled: boolean;
  completionPolling: boolean;
}

/** The raw per-slot object both bindings return. */
export interface RawSlot {
  slot: number;
  request?: RawDecoded | null;
  errorCode?: string | null;
  errorMessage?: string | null;
}

/** Builds the public, normalised object from a binding's raw output. */
export function normalizeRequest(raw: RawDecoded): IoRequest {
  const common: IoRequestCommon = {
    state: raw.state as IoreqState,
    direction: raw.direction as Direction,
    size: raw.size,
    kernelHandled: raw.kernelHandled,
    completionPolling: raw.completionPolling,
  };
  switch (raw.type) {
    case 'pio':
      return { type: 'pio', ...common, address: raw.address as bigint, value: Number(raw.value) };
    case 'mmio':
      return { type: 'mmio', ...common, address: raw.address as bigint, value: raw.value };
    case 'pci':
      return {
        type: 'pci',
        ...common,
        bus: raw.bus as number,
        device: raw.device as number,
        function: raw.function as number,
        register: raw.register as number,
        value: Number(raw.value),
      };
    default:
      throw new AcrnHsmError('ERR_UNKNOWN_TYPE', `binding returned unknown request type '${raw.type}'`);
  }
}

/** Normalises one raw slot entry. */
export function normalizeSlot(raw: RawSlot): IoreqSlot {
  if (raw.request) return { slot: raw.slot, request: normalizeRequest(raw.request) };
  return {
    slot: raw.slot,
    error: new AcrnHsmError(raw.errorCode ?? 'ERR_DECODE', raw.errorMessage ?? 'slot could not be decoded'),
  };
}

/** Checks that `bytes` is a byte view; the bindings take any `Uint8Array` (a `Buffer` is one). */
export function asBytes(bytes: unknown, what: string): Uint8Array {
  if (bytes instanceof Uint8Array) return bytes;
  if (bytes instanceof ArrayBuffer) return new Uint8Array(bytes);
  if (ArrayBuffer.isView(bytes)) return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  throw new TypeError(`${what} must be a Uint8Array, Buffer, ArrayBuffer or typed array`);
}
