/**
 * A log-linear latency histogram in the style of HdrHistogram, with the same layout as the C
 * side's `benches/c/hist.h` so both report identical percentiles for identical samples: values
 * below 256 ns are exact, above that each power of two is split into 128 sub-buckets (a reported
 * value is within 0.8% of the true one). A percentile is the highest value equivalent to its
 * bucket (clamped to the maximum), as HdrHistogram reports it.
 */

const SUB_BITS = 7;
const SUB = 1 << SUB_BITS; // 128
/** Buckets up to 2^63 ns (same count as hist.h). */
export const HIST_BUCKETS = 2 * SUB + (63 - SUB_BITS) * SUB;

function bucketIndex(v: number): number {
  if (v < 2 * SUB) return v;
  const msb = Math.floor(Math.log2(v));
  // log2 of values just below a power of two may round up: correct it.
  const m = 2 ** msb > v ? msb - 1 : msb;
  const shift = m - SUB_BITS;
  return 2 * SUB + (shift - 1) * SUB + (Math.floor(v / 2 ** shift) - SUB);
}

function bucketHighest(i: number): number {
  if (i < 2 * SUB) return i;
  const k = i - 2 * SUB;
  const shift = Math.floor(k / SUB) + 1;
  const sub = (k % SUB) + SUB;
  return (sub + 1) * 2 ** shift - 1;
}

/** A latency histogram in integer nanoseconds. */
export class Histogram {
  readonly counts = new Float64Array(HIST_BUCKETS);
  total = 0;
  min = Number.POSITIVE_INFINITY;
  max = 0;
  private sum = 0;
  private sumSq = 0;

  /** Records `n` occurrences of `valueNs` (rounded to an integer, clamped at 0). */
  recordN(valueNs: number, n = 1): void {
    const v = Math.max(0, Math.round(valueNs));
    const i = Math.min(bucketIndex(v), HIST_BUCKETS - 1);
    this.counts[i] = (this.counts[i] ?? 0) + n;
    this.total += n;
    if (v < this.min) this.min = v;
    if (v > this.max) this.max = v;
    this.sum += v * n;
    this.sumSq += v * v * n;
  }

  /**
   * HdrHistogram's `recordValueWithExpectedInterval`: records `valueNs`, and, when it exceeds
   * `expectedIntervalNs`, the samples an open-loop issuer would have recorded meanwhile
   * (`valueNs - k·interval` for k = 1, 2, ... while above the interval). Interval 0: plain record.
   */
  recordCorrected(valueNs: number, expectedIntervalNs: number): void {
    this.recordN(valueNs);
    if (!(expectedIntervalNs > 0) || valueNs <= expectedIntervalNs) return;
    for (let missing = valueNs - expectedIntervalNs; missing >= expectedIntervalNs; missing -= expectedIntervalNs) {
      this.recordN(missing);
    }
  }

  /** Records every sample of `values` (with coordinated-omission correction if `expectedIntervalNs` > 0). */
  recordAll(values: ArrayLike<number>, expectedIntervalNs = 0): void {
    if (expectedIntervalNs > 0) {
      for (let k = 0; k < values.length; k++) this.recordCorrected(values[k] ?? 0, expectedIntervalNs);
    } else {
      for (let k = 0; k < values.length; k++) this.recordN(values[k] ?? 0);
    }
  }

  /** The value at percentile `p` (0..100). */
  valueAt(p: number): number {
    if (this.total === 0) return 0;
    const target = Math.max(1, Math.ceil((Math.min(p, 100) / 100) * this.total));
    let seen = 0;
    for (let i = 0; i < HIST_BUCKETS; i++) {
      seen += this.counts[i] ?? 0;
      if (seen >= target) return Math.min(bucketHighest(i), this.max);
    }
    return this.max;
  }

  /** Mean, ns. */
  mean(): number {
    return this.total ? this.sum / this.total : 0;
  }

  /** Standard deviation, ns. */
  stddev(): number {
    if (!this.total) return 0;
    const m = this.mean();
    return Math.sqrt(Math.max(0, this.sumSq / this.total - m * m));
  }

  /** Cumulative count up to and including the bucket of `v`. */
  private countUpTo(v: number): number {
    const vi = Math.min(bucketIndex(v), HIST_BUCKETS - 1);
    let cum = 0;
    for (let i = 0; i <= vi; i++) cum += this.counts[i] ?? 0;
    return cum;
  }

  /**
   * The percentile distribution as HdrHistogram's `outputPercentileDistribution` prints it
   * (5 ticks per half distance; values in microseconds), with the `#[Mean ...]` footer.
   */
  percentileTable(title: string): string {
    const lines: string[] = [`# ${title}`, `${'Value(us)'.padStart(12)} ${'Percentile'.padStart(14)} ${'TotalCount'.padStart(10)} ${'1/(1-Percentile)'.padStart(14)}`, ''];
    if (this.total === 0) return lines.concat(['#[empty]', '']).join('\n') + '\n';
    for (const pt of this.percentilePoints()) {
      const inv = pt.percentile >= 1 ? 'inf' : (1 / (1 - pt.percentile)).toFixed(2);
      lines.push(
        `${(pt.valueNs / 1000).toFixed(3).padStart(12)} ${pt.percentile.toFixed(12).padStart(14)} ${String(pt.count).padStart(10)} ${inv.padStart(14)}`,
      );
    }
    lines.push(`#[Mean    = ${(this.mean() / 1000).toFixed(3).padStart(12)}, StdDeviation   = ${(this.stddev() / 1000).toFixed(3).padStart(12)}]`);
    lines.push(`#[Max     = ${(this.max / 1000).toFixed(3).padStart(12)}, Total count    = ${String(this.total).padStart(12)}]`);
    lines.push(`#[Buckets = ${String(HIST_BUCKETS).padStart(12)}, SubBuckets     = ${String(SUB).padStart(12)}]`);
    return lines.join('\n') + '\n\n';
  }

  /** The rows of the percentile table: percentile as a fraction (0..1), value, cumulative count. */
  percentilePoints(): { percentile: number; valueNs: number; count: number }[] {
    const pts: { percentile: number; valueNs: number; count: number }[] = [];
    if (this.total === 0) return pts;
    let p = 0;
    for (;;) {
      const v = this.valueAt(p);
      const cum = this.countUpTo(v);
      if (cum >= this.total || p >= 100) {
        pts.push({ percentile: 1, valueNs: this.max, count: this.total });
        return pts;
      }
      pts.push({ percentile: p / 100, valueNs: v, count: cum });
      const halvings = Math.floor(Math.log2(100 / (100 - p))) + 1;
      p += 100 / (5 * 2 ** halvings);
    }
  }
}
