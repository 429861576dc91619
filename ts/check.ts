/**
 * Argument checks shared by the API (hsm.ts, client.ts, encode.ts): one definition each, one
 * wording of each message. They throw `TypeError` for a wrong type and `RangeError` for a value
 * outside its range, as Node's own APIs do.
 */

/** An integer `number` in `min..max`. */
export function checkInt(name: string, v: unknown, min: number, max: number): asserts v is number {
  if (typeof v !== 'number' || !Number.isInteger(v)) {
    throw new TypeError(`${name} must be an integer, got ${typeof v === 'number' ? v : typeof v}`);
  }
  if (v < min || v > max) throw new RangeError(`${name} ${v} is outside ${min}..${max}`);
}

/** A u32 as a `number`. */
export function checkU32(name: string, v: unknown): asserts v is number {
  if (typeof v !== 'number' || !Number.isInteger(v)) {
    throw new TypeError(`${name} must be an integer, got ${typeof v === 'number' ? v : typeof v}`);
  }
  if (v < 0 || v > 0xffff_ffff) throw new RangeError(`${name} ${v} is outside 0..2^32-1`);
}

/** A u64 as a `bigint` (u64 values are always bigint in this API; a number says what to write). */
export function checkU64(name: string, v: unknown): asserts v is bigint {
  if (typeof v !== 'bigint') {
    const hint = typeof v === 'number' && Number.isInteger(v) && v >= 0 ? ` (write ${v}n or BigInt(${v}))` : '';
    throw new TypeError(`${name} must be a bigint (u64 values are bigint), got ${typeof v}${hint}`);
  }
  if (v < 0n || v >= 1n << 64n) throw new RangeError(`${name} ${v} is outside 0..2^64-1`);
}
