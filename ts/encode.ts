/**
 * Encoding of a request object into a 256-byte slot image. TypeScript checks the JavaScript
 * shape (types, bigint vs number); the Rust codec checks the values and writes the bytes.
 */
import { checkU64 } from './check.js';
import { AcrnHsmError, callBinding } from './errors.js';
import type { IoRequest } from './ioreq.js';

/** What a binding provides for encoding: the request as 12 u64 words (see `toFields`). */
export interface EncoderBinding {
  encodeIoRequestFields(fields: BigUint64Array): Uint8Array;
}

const TYPES = { pio: 0n, mmio: 1n, pci: 2n } as const;
const STATES = { pending: 0n, complete: 1n, processing: 2n, free: 3n } as const;
const DIRECTIONS = { read: 0n, write: 1n } as const;

function u64(name: string, v: unknown): bigint {
  checkU64(name, v);
  return v;
}

function u32(name: string, v: unknown): bigint {
  if (typeof v !== 'number' || !Number.isInteger(v)) {
    throw new TypeError(`${name} must be an integer number, got ${typeof v === 'number' ? v : typeof v}`);
  }
  if (v < 0 || v > 0xffff_ffff) throw new RangeError(`${name} ${v} is outside 0..2^32-1`);
  return BigInt(v);
}

function pick<T extends Record<string, bigint>>(name: string, table: T, v: unknown): bigint {
  if (typeof v !== 'string' || !Object.hasOwn(table, v)) {
    throw new AcrnHsmError(
      name === 'type' ? 'ERR_UNKNOWN_TYPE' : name === 'state' ? 'ERR_UNKNOWN_STATE' : 'ERR_INVALID_ARG',
      `${name} must be one of ${Object.keys(table).map((k) => `'${k}'`).join(', ')}, got ${String(v)}`,
    );
  }
  return table[v] as bigint;
}

/**
 * The request as the 12 words the bindings take:
 * `[type, state, direction, address, size, value, bus, device, function, register,
 *   kernelHandled, completionPolling]`.
 */
export function toFields(req: IoRequest): BigUint64Array {
  if (typeof req !== 'object' || req === null) throw new TypeError('request must be an object');
  const type = pick('type', TYPES, req.type);
  const fields = new BigUint64Array(12);
  fields[0] = type;
  fields[1] = pick('state', STATES, req.state);
  fields[2] = pick('direction', DIRECTIONS, req.direction);
  fields[4] = u32('size', req.size);
  if (req.type === 'mmio') {
    fields[3] = u64('address', req.address);
    fields[5] = u64('value', req.value);
  } else if (req.type === 'pio') {
    fields[3] = u64('address', req.address);
    fields[5] = u32('value', req.value);
  } else {
    fields[5] = u32('value', req.value);
    fields[6] = u32('bus', req.bus);
    fields[7] = u32('device', req.device);
    fields[8] = u32('function', req.function);
    fields[9] = u32('register', req.register);
  }
  fields[10] = req.kernelHandled ? 1n : 0n;
  fields[11] = req.completionPolling ? 1n : 0n;
  return fields;
}

/** Builds `encodeIoRequest` over one binding. */
export function makeEncoder(binding: () => EncoderBinding): (req: IoRequest) => Uint8Array {
  return (req) => {
    const fields = toFields(req);
    return callBinding(() => binding().encodeIoRequestFields(fields));
  };
}
