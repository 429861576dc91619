/** A small seeded PRNG (mulberry32) so generated corpora are reproducible. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function randInt(r: () => number, max: number): number {
  return Math.floor(r() * max);
}

export function randU64(r: () => number): bigint {
  return (BigInt(randInt(r, 2 ** 32)) << 32n) | BigInt(randInt(r, 2 ** 32));
}

export function pickOne<T>(r: () => number, items: readonly T[]): T {
  return items[randInt(r, items.length)] as T;
}
