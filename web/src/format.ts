// Number formatting shared by the table, the histogram, the timeline and the tests (the e2e test
// imports this file to compute what the page must display for the CLI's numbers).

/** A duration in ns, in the units `acrn-hsm trace report` prints (ns, us, ms, s). */
export function formatNs(ns: number | null | undefined): string {
  if (ns === null || ns === undefined || Number.isNaN(ns)) return '-';
  if (ns < 1_000) return `${Math.round(ns)}ns`;
  if (ns < 1_000_000) return `${(ns / 1_000).toFixed(2)}µs`;
  if (ns < 1_000_000_000) return `${(ns / 1_000_000).toFixed(2)}ms`;
  return `${(ns / 1_000_000_000).toFixed(2)}s`;
}

/** A share in [0, 1] as a percentage with two decimals, as the CLI prints it. */
export function formatShare(share: number): string {
  return `${(share * 100).toFixed(2)}%`;
}

/** An integer with thin grouping separators (1 234 567). */
export function formatCount(n: number): string {
  return n.toLocaleString('en-US').replace(/,/g, '\u202f');
}

/** `0x`-prefixed hex of a u64. */
export function hex(v: bigint | number, width = 0): string {
  return '0x' + v.toString(16).padStart(width, '0');
}

/** A short label for a time on an axis whose ticks are `step` ns apart (enough decimals to tell ticks apart). */
export function formatTick(ns: number, step: number): string {
  // The largest unit in which a step is at least 0.1 (so 500µs steps read 2.5ms, not 2500µs).
  const [unit, name] = step >= 1e8 ? [1e9, 's'] : step >= 1e5 ? [1e6, 'ms'] : step >= 100 ? [1e3, 'µs'] : [1, 'ns'];
  const decimals = Math.max(0, -Math.floor(Math.log10(step / unit) + 1e-9));
  return `${(ns / unit).toFixed(decimals)}${name}`;
}
