// The decoder: native addon and wasm module give identical results on a generated corpus of
// slots and pages; encode/decode round-trips; bad input gives typed errors, never a crash.
import { describe, expect, it } from 'vitest';
import * as native from '../dist/index.js';
import * as wasm from '../dist/wasm/node.js';
import type { IoRequest } from '../dist/index.js';
import { pickOne, randInt, randU64, rng } from './support/random.js';

const OFF = { type: 0, polling: 4, reqs: 64, direction: 64, address: 72, size: 80, value: 88, bus: 92, dev: 96, func: 100, reg: 104, kernel: 132, processed: 136 };

function u32(buf: Uint8Array, off: number, v: number) {
  new DataView(buf.buffer, buf.byteOffset).setUint32(off, v >>> 0, true);
}
function u64(buf: Uint8Array, off: number, v: bigint) {
  new DataView(buf.buffer, buf.byteOffset).setBigUint64(off, v, true);
}

function randomRequest(r: () => number): IoRequest {
  const state = pickOne(r, ['pending', 'complete', 'processing', 'free'] as const);
  const direction = pickOne(r, ['read', 'write'] as const);
  const common = { state, direction, kernelHandled: r() < 0.2, completionPolling: r() < 0.3 };
  const kind = randInt(r, 3);
  if (kind === 0) {
    const size = pickOne(r, [1, 2, 4]);
    return { type: 'pio', ...common, size, address: BigInt(randInt(r, 0x10000 - size)), value: randInt(r, 2 ** 32) };
  }
  if (kind === 1) {
    const size = pickOne(r, [1, 2, 4, 8]);
    let address = randU64(r);
    if (address > (1n << 64n) - 9n) address = 0xfed0_0000n;
    return { type: 'mmio', ...common, size, address, value: randU64(r) };
  }
  return {
    type: 'pci',
    ...common,
    size: pickOne(r, [1, 2, 4]),
    bus: randInt(r, 256),
    device: randInt(r, 32),
    function: randInt(r, 8),
    register: randInt(r, 4096),
    value: randInt(r, 2 ** 32),
  };
}

/** A corpus of raw slots: valid encodings, random bytes, and valid slots with one field broken. */
function corpus(seed: number, n: number): Uint8Array[] {
  const r = rng(seed);
  const out: Uint8Array[] = [];
  for (let i = 0; i < n; i++) {
    const kind = i % 4;
    if (kind === 0 || kind === 1) {
      out.push(native.encodeIoRequest(randomRequest(r)));
    } else if (kind === 2) {
      const b = new Uint8Array(256);
      for (let j = 0; j < 256; j++) b[j] = randInt(r, 256);
      // Keep a fair share of random slots with a plausible state/type so payload checks run too.
      if (r() < 0.5) u32(b, OFF.processed, randInt(r, 4));
      if (r() < 0.5) u32(b, OFF.type, randInt(r, 3));
      out.push(b);
    } else {
      const b = native.encodeIoRequest(randomRequest(r));
      switch (randInt(r, 4)) {
        case 0: u32(b, OFF.processed, 4 + randInt(r, 1000)); break;
        case 1: u32(b, OFF.type, 3 + randInt(r, 1000)); break;
        case 2: u32(b, OFF.processed, 0); u64(b, OFF.size, BigInt(pickOne(r, [0, 3, 5, 16, 4096]))); break;
        default: u32(b, OFF.processed, 2); u32(b, OFF.type, 1); u64(b, OFF.size, 8n); u64(b, OFF.address, (1n << 64n) - 4n); break;
      }
      out.push(b);
    }
  }
  return out;
}

function outcome(decode: (b: Uint8Array) => IoRequest, b: Uint8Array): unknown {
  try {
    return { ok: decode(b) };
  } catch (err) {
    const e = err as { code?: string; message: string; name: string };
    return { error: e.code, message: e.message, name: e.name };
  }
}

describe('native and wasm decoders agree', () => {
  const slots = corpus(0xacc0, 4000);

  it('on every slot of a generated corpus (values and errors)', () => {
    let ok = 0;
    let errors = 0;
    for (const b of slots) {
      const n = outcome(native.decodeIoRequest, b);
      const w = outcome(wasm.decodeIoRequest, b);
      expect(w).toEqual(n);
      if ('ok' in (n as object)) ok++;
      else errors++;
    }
    // The corpus exercises both outcomes substantially.
    expect(ok).toBeGreaterThan(1500);
    expect(errors).toBeGreaterThan(500);
  });

  it('on whole pages built from the corpus', () => {
    for (let p = 0; p + 16 <= 256; p += 16) {
      const page = new Uint8Array(4096);
      for (let i = 0; i < 16; i++) page.set(slots[p + i] as Uint8Array, i * 256);
      const n = native.decodeIoreqPage(page);
      const w = wasm.decodeIoreqPage(page);
      expect(n).toHaveLength(16);
      expect(w.map((s) => (s.request ? s : { slot: s.slot, code: s.error.code, message: s.error.message }))).toEqual(
        n.map((s) => (s.request ? s : { slot: s.slot, code: s.error.code, message: s.error.message })),
      );
    }
  });

  it('encoders agree and round-trip', () => {
    const r = rng(7);
    for (let i = 0; i < 2000; i++) {
      const req = randomRequest(r);
      const a = native.encodeIoRequest(req);
      const b = wasm.encodeIoRequest(req);
      expect(Buffer.from(b).equals(Buffer.from(a))).toBe(true);
      expect(native.decodeIoRequest(a)).toEqual(req);
      expect(wasm.decodeIoRequest(b)).toEqual(req);
    }
  });
});

describe('decoding real slot images', () => {
  it('reads each field at its ABI offset', () => {
    const b = new Uint8Array(256);
    u32(b, OFF.type, 1);
    u32(b, OFF.polling, 1);
    u32(b, OFF.direction, 0);
    u64(b, OFF.address, 0xfed0_0010n);
    u64(b, OFF.size, 8n);
    u64(b, OFF.value, 0x1122_3344_5566_7788n);
    u32(b, OFF.processed, 2);
    expect(native.decodeIoRequest(b)).toEqual({
      type: 'mmio', state: 'processing', direction: 'read', address: 0xfed0_0010n, size: 8,
      value: 0x1122_3344_5566_7788n, kernelHandled: false, completionPolling: true,
    });
  });

  it('a PCICFG slot as HSM rewrites it', () => {
    const b = new Uint8Array(256);
    u32(b, OFF.type, 2);
    u32(b, OFF.direction, 1);
    u64(b, OFF.size, 4n);
    u32(b, OFF.value, 0xdead_beef);
    u32(b, OFF.bus, 0);
    u32(b, OFF.dev, 3);
    u32(b, OFF.func, 1);
    u32(b, OFF.reg, 0x10);
    u32(b, OFF.kernel, 0);
    u32(b, OFF.processed, 0);
    expect(wasm.decodeIoRequest(b)).toEqual({
      type: 'pci', state: 'pending', direction: 'write', size: 4, value: 0xdead_beef,
      bus: 0, device: 3, function: 1, register: 0x10, kernelHandled: false, completionPolling: false,
    });
  });

  it('a fresh page (all FREE) decodes to 16 free slots', () => {
    const page = new Uint8Array(4096);
    for (let i = 0; i < 16; i++) u32(page, i * 256 + OFF.processed, 3);
    const slots = native.decodeIoreqPage(page);
    expect(slots.map((s) => s.request?.state)).toEqual(Array(16).fill('free'));
    expect(slots.map((s) => s.slot)).toEqual([...Array(16).keys()]);
  });
});

describe('bad input gives typed errors (native and wasm)', () => {
  const impls = { native, wasm } as const;
  for (const [name, m] of Object.entries(impls)) {
    describe(name, () => {
      const valid = () => {
        const b = new Uint8Array(256);
        u32(b, OFF.processed, 0);
        u64(b, OFF.size, 4n);
        return b;
      };
      it('short buffer', () => {
        expect(() => m.decodeIoRequest(new Uint8Array(255))).toThrow(expect.objectContaining({ code: 'ERR_SHORT_BUFFER' }));
        expect(() => m.decodeIoreqPage(new Uint8Array(4095))).toThrow(expect.objectContaining({ code: 'ERR_SHORT_BUFFER' }));
      });
      it('unknown request type', () => {
        const b = valid();
        u32(b, OFF.type, 7);
        expect(() => m.decodeIoRequest(b)).toThrow(expect.objectContaining({ code: 'ERR_UNKNOWN_TYPE', name: 'AcrnHsmError' }));
      });
      it('state outside 0..3', () => {
        const b = valid();
        u32(b, OFF.processed, 4);
        expect(() => m.decodeIoRequest(b)).toThrow(expect.objectContaining({ code: 'ERR_UNKNOWN_STATE' }));
        expect(() => m.decodeIoRequest(b)).toThrow(/4/);
      });
      it('size not 1/2/4/8', () => {
        for (const size of [0n, 3n, 16n, 1n << 40n]) {
          const b = valid();
          u64(b, OFF.size, size);
          expect(() => m.decodeIoRequest(b)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_SIZE' }));
        }
      });
      it('address range overflow', () => {
        const b = valid();
        u32(b, OFF.type, 1);
        u64(b, OFF.address, (1n << 64n) - 2n);
        expect(() => m.decodeIoRequest(b)).toThrow(expect.objectContaining({ code: 'ERR_ADDRESS_OVERFLOW' }));
      });
      it('a bad slot in a page is reported for that slot only', () => {
        const page = new Uint8Array(4096);
        for (let i = 0; i < 16; i++) u32(page, i * 256 + OFF.processed, 3);
        u32(page, 5 * 256 + OFF.processed, 9);
        const slots = m.decodeIoreqPage(page);
        expect(slots.filter((s) => s.error).map((s) => [s.slot, s.error?.code])).toEqual([[5, 'ERR_UNKNOWN_STATE']]);
      });
      it('JS type mistakes', () => {
        expect(() => m.decodeIoRequest('abc' as unknown as Uint8Array)).toThrow(TypeError);
        const req = { type: 'mmio', state: 'pending', direction: 'read', address: 0x1000, size: 4, value: 0n, kernelHandled: false, completionPolling: false };
        expect(() => m.encodeIoRequest(req as unknown as IoRequest)).toThrow(/bigint/);
        expect(() => m.encodeIoRequest({ ...req, address: -1n } as unknown as IoRequest)).toThrow(RangeError);
        expect(() => m.encodeIoRequest({ ...req, address: 1n, type: 'dma' } as unknown as IoRequest)).toThrow(
          expect.objectContaining({ code: 'ERR_UNKNOWN_TYPE' }),
        );
      });
      it('random garbage never crashes the module', () => {
        const r = rng(99);
        for (let i = 0; i < 3000; i++) {
          const len = randInt(r, 300);
          const b = new Uint8Array(len);
          for (let j = 0; j < len; j++) b[j] = randInt(r, 256);
          try {
            m.decodeIoRequest(b);
          } catch (err) {
            expect((err as { code?: string }).code).toMatch(/^ERR_/);
          }
        }
        // Still alive and correct afterwards.
        expect(m.decodeIoRequest(valid()).state).toBe('pending');
      });
    });
  }
});
