// Latency histogram of the `total` stage with logarithmic axes (latencies span decades: a
// fast PIO exit and a slow MMIO handler differ by 1000x) and p50 / p99 markers. Percentiles
// are nearest-rank over every request, reported as the core's report does (within 1/128 above
// the exact value: `asReported`), so a group's markers equal its row in the table.
import { fitCanvas } from './dom.js';
import { formatCount, formatNs } from './format.js';

const BINS_PER_DECADE = 16;

export interface LatencyStats {
  count: number;
  p50: number;
  p99: number;
  min: number;
  max: number;
}

/** Exact nearest-rank percentile `p` (0..100, in steps of 0.001) of sorted values. */
export function exactPercentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  // Integer arithmetic, as the core's report: rank = ceil(n * p/100) without rounding error.
  const rank = Math.max(1, Math.ceil((sorted.length * Math.round(p * 1000)) / 100_000));
  return sorted[rank - 1] as number;
}

/**
 * The value the core's report gives for a percentile whose exact value is `v` (crates/acrn-trace
 * `Histogram::percentile`): values below 256 exactly, larger ones as the highest value of their
 * log-linear bucket (128 per power of two), clamped to the data's `min..max`. The viewer's
 * markers and the report's table show the same numbers this way.
 */
export function asReported(v: number, min: number, max: number): number {
  if (v < 256) return Math.min(max, Math.max(min, v));
  let e = Math.floor(Math.log2(v));
  if (2 ** e > v) e--;
  else if (2 ** (e + 1) <= v) e++;
  const width = 2 ** (e - 7);
  const highest = Math.floor(v / width) * width + (width - 1);
  return Math.min(max, Math.max(min, highest));
}

/** Percentile `p` (0..100) of sorted values as the core's report computes it (see {@link asReported}). */
export function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  return asReported(exactPercentile(sorted, p), sorted[0] as number, sorted[sorted.length - 1] as number);
}

/** A decade of ns as an axis label: 100ns, 1µs, 10µs, ... */
function decade(d: number): string {
  const units = ['ns', 'µs', 'ms', 's'];
  const u = Math.min(3, Math.max(0, Math.floor(d / 3)));
  return `${10 ** (d - 3 * u)}${units[u]}`;
}

/** 1, 10, 100, 1k, 10k, 100k, 1M, ... */
function compact(n: number): string {
  if (n >= 1e9) return `${n / 1e9}G`;
  if (n >= 1e6) return `${n / 1e6}M`;
  if (n >= 1e3) return `${n / 1e3}k`;
  return String(n);
}

/** The observed latencies (of the records in `mask`, if given), sorted. */
function sortedLatencies(total: Float64Array, mask: Uint8Array | null): Float64Array {
  let n = 0;
  for (let i = 0; i < total.length; i++) if (!Number.isNaN(total[i] as number) && (!mask || mask[i])) n++;
  const v = new Float64Array(n);
  n = 0;
  for (let i = 0; i < total.length; i++) if (!Number.isNaN(total[i] as number) && (!mask || mask[i])) v[n++] = total[i] as number;
  return v.sort();
}

function statsOf(v: Float64Array): LatencyStats | null {
  const n = v.length;
  return n === 0 ? null : { count: n, p50: percentile(v, 50), p99: percentile(v, 99), min: v[0] as number, max: v[n - 1] as number };
}

export class Histogram {
  #sorted: Float64Array = new Float64Array(0);
  #stats: LatencyStats | null = null;
  #total: Float64Array = new Float64Array(0);
  /** The selected group's latencies (sorted) and stats, drawn over the others. */
  #sel: { sorted: Float64Array; stats: LatencyStats | null; label: string } | null = null;

  constructor(private readonly canvas: HTMLCanvasElement) {}

  /** Takes the per-request latencies (NaN = not observed). */
  #label = 'total';

  /** Takes the per-request latencies (NaN = not observed) and what they measure. */
  setData(total: Float64Array, label = 'total'): LatencyStats | null {
    this.#total = total;
    this.#label = label;
    this.#sel = null;
    const v = sortedLatencies(total, null);
    this.#sorted = v;
    this.#stats = statsOf(v);
    this.#publish();
    this.draw();
    return this.#stats;
  }

  /** Highlights the requests in `mask` (null: none), with their own p50 / p99 markers. */
  setSelection(mask: Uint8Array | null, label = ''): void {
    if (!mask) this.#sel = null;
    else {
      const v = sortedLatencies(this.#total, mask);
      this.#sel = { sorted: v, stats: statsOf(v), label };
    }
    this.#publish();
    this.draw();
  }

  #publish(): void {
    // What the markers show, for tests and tools: the selection's when there is one.
    const shown = this.#sel ? this.#sel.stats : this.#stats;
    const d = this.canvas.dataset;
    d.count = String(this.#sorted.length);
    d.p50Ns = shown ? String(shown.p50) : '';
    d.p99Ns = shown ? String(shown.p99) : '';
    if (this.#sel) d.selectedCount = String(this.#sel.sorted.length);
    else delete d.selectedCount;
    const hint = document.getElementById('histogram-hint');
    if (hint) {
      hint.textContent = this.#sel
        ? `log–log · ${formatCount(this.#sel.sorted.length)} of ${formatCount(this.#sorted.length)} requests: ${this.#sel.label}`
        : `log–log · ${formatCount(this.#sorted.length)} requests · ${this.#label}`;
    }
  }

  draw(): void {
    const { ctx, width, height } = fitCanvas(this.canvas);
    ctx.clearRect(0, 0, width, height);
    const stats = this.#stats;
    ctx.font = '11px system-ui, sans-serif';
    if (!stats) {
      ctx.fillStyle = '#6a7587';
      ctx.fillText('No request has two observed timestamps.', 10, 20);
      this.canvas.dataset.bins = '0';
      return;
    }
    const pad = { l: 40, r: 16, t: 30, b: 24 };
    const lo = Math.floor(Math.log10(Math.max(1, stats.min)));
    const hi = Math.max(lo + 1, Math.ceil(Math.log10(Math.max(1, stats.max) * 1.0001)));
    const nb = (hi - lo) * BINS_PER_DECADE;
    const binOf = (v: Float64Array) => {
      const counts = new Float64Array(nb);
      for (let i = 0; i < v.length; i++) {
        const x = Math.log10(Math.max(1, v[i] as number));
        counts[Math.min(nb - 1, Math.max(0, Math.floor((x - lo) * BINS_PER_DECADE)))]! += 1;
      }
      return counts;
    };
    const counts = binOf(this.#sorted);
    const selCounts = this.#sel ? binOf(this.#sel.sorted) : null;
    let maxCount = 1;
    for (const c of counts) maxCount = Math.max(maxCount, c);
    const yTop = Math.ceil(Math.log10(maxCount + 1));
    const pw = width - pad.l - pad.r;
    const ph = height - pad.t - pad.b;
    const xOf = (ns: number) => pad.l + ((Math.log10(Math.max(1, ns)) - lo) / (hi - lo)) * pw;
    const yOf = (c: number) => pad.t + ph - (Math.log10(c + 1) / Math.max(1, yTop)) * ph;

    // Grid and axes: one line per decade on both axes.
    ctx.strokeStyle = '#eef1f6';
    ctx.fillStyle = '#6a7587';
    ctx.lineWidth = 1;
    ctx.textAlign = 'center';
    for (let d = lo; d <= hi; d++) {
      const x = Math.round(pad.l + ((d - lo) / (hi - lo)) * pw) + 0.5;
      ctx.beginPath();
      ctx.moveTo(x, pad.t);
      ctx.lineTo(x, pad.t + ph);
      ctx.stroke();
      ctx.textAlign = d === hi ? 'right' : d === lo ? 'left' : 'center';
      ctx.fillText(decade(d), d === hi ? x + 2 : d === lo ? x - 2 : x, height - 8);
    }
    ctx.textAlign = 'right';
    for (let d = 0; d <= yTop; d++) {
      const y = Math.round(yOf(10 ** d - 1)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(pad.l, y);
      ctx.lineTo(pad.l + pw, y);
      ctx.stroke();
      ctx.fillText(d === 0 ? '0' : compact(10 ** d), pad.l - 6, y + 4);
    }

    let bins = 0;
    const bw = pw / nb;
    const bars = (cs: Float64Array, colour: string) => {
      ctx.fillStyle = colour;
      for (let b = 0; b < nb; b++) {
        const c = cs[b] as number;
        if (c === 0) continue;
        bins++;
        const y = yOf(c);
        ctx.fillRect(pad.l + b * bw + 0.5, y, Math.max(1, bw - 1), pad.t + ph - y);
      }
    };
    bars(counts, selCounts ? '#cdd8ec' : '#5b8def');
    if (selCounts) bars(selCounts, '#2f6fde');
    this.canvas.dataset.bins = String(bins);
    const marked = this.#sel ? this.#sel.stats : stats;

    // Percentile markers.
    for (const [label, ns, colour] of marked
      ? ([
          ['p50', marked.p50, '#1d8f4e'],
          ['p99', marked.p99, '#d9480f'],
        ] as const)
      : []) {
      const x = Math.round(xOf(ns)) + 0.5;
      ctx.strokeStyle = colour;
      ctx.setLineDash([4, 3]);
      ctx.beginPath();
      ctx.moveTo(x, pad.t - 4);
      ctx.lineTo(x, pad.t + ph);
      ctx.stroke();
      ctx.setLineDash([]);
      ctx.fillStyle = colour;
      // Labels above the plot, p99 on the upper row so close markers do not collide.
      ctx.textAlign = x > width - 90 ? 'right' : 'left';
      ctx.fillText(`${label} ${formatNs(ns)}`, x + (ctx.textAlign === 'right' ? -4 : 4), label === 'p99' ? 11 : 24);
    }
  }
}
