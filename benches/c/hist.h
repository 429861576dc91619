/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * hist.h: a small log-linear latency histogram in the style of HdrHistogram (header only).
 *
 * Values (nanoseconds) below 256 are counted exactly; above, each power-of-two range is split
 * into 128 equal sub-buckets, so a value is known to within 1/128 (< 0.8%) of itself. Reported
 * percentiles are the highest value equivalent to the bucket reached (as HdrHistogram's
 * valueAtPercentile), capped at the exact maximum recorded. The whole u64 range fits in
 * HIST_BUCKETS counters (about 58 KiB).
 *
 * hist_record_corrected() is HdrHistogram's recordValueWithExpectedInterval: when a value
 * exceeds the interval at which requests were meant to be issued, the requests that a stalled
 * closed loop did not issue are recorded too (value - interval, value - 2*interval, ...), which
 * corrects coordinated omission.
 */
#ifndef ACRN_BENCH_HIST_H
#define ACRN_BENCH_HIST_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define HIST_SUB_BITS 7u
#define HIST_SUB (1u << HIST_SUB_BITS)		/* 128 sub-buckets per power of two */
#define HIST_BUCKETS (2u * HIST_SUB + (63u - HIST_SUB_BITS) * HIST_SUB)

struct hist {
	uint64_t counts[HIST_BUCKETS];
	uint64_t total;
	uint64_t min;
	uint64_t max;
	double sum;
	double sum_sq;
};

static inline void hist_init(struct hist *h)
{
	memset(h, 0, sizeof(*h));
	h->min = UINT64_MAX;
}

static inline unsigned hist_index(uint64_t v)
{
	if (v < 2u * HIST_SUB)
		return (unsigned)v;
	unsigned msb = 63u - (unsigned)__builtin_clzll(v);	/* >= HIST_SUB_BITS + 1 */
	unsigned shift = msb - HIST_SUB_BITS;			/* >= 1 */
	return 2u * HIST_SUB + (shift - 1u) * HIST_SUB + (unsigned)((v >> shift) - HIST_SUB);
}

/* The lowest and highest value counted in bucket i. */
static inline uint64_t hist_lowest(unsigned i)
{
	if (i < 2u * HIST_SUB)
		return i;
	unsigned k = i - 2u * HIST_SUB;
	unsigned shift = k / HIST_SUB + 1u;
	uint64_t sub = (uint64_t)(k % HIST_SUB) + HIST_SUB;
	return sub << shift;
}

static inline uint64_t hist_highest(unsigned i)
{
	if (i < 2u * HIST_SUB)
		return i;
	unsigned k = i - 2u * HIST_SUB;
	unsigned shift = k / HIST_SUB + 1u;
	uint64_t sub = (uint64_t)(k % HIST_SUB) + HIST_SUB;
	return ((sub + 1u) << shift) - 1u;
}

static inline void hist_record_n(struct hist *h, uint64_t v, uint64_t n)
{
	h->counts[hist_index(v)] += n;
	h->total += n;
	if (v < h->min)
		h->min = v;
	if (v > h->max)
		h->max = v;
	h->sum += (double)v * (double)n;
	h->sum_sq += (double)v * (double)v * (double)n;
}

static inline void hist_record(struct hist *h, uint64_t v)
{
	hist_record_n(h, v, 1);
}

/* Coordinated-omission correction (HdrHistogram's recordValueWithExpectedInterval). */
static inline void hist_record_corrected(struct hist *h, uint64_t v, uint64_t expected_interval)
{
	hist_record(h, v);
	if (expected_interval == 0 || v <= expected_interval)
		return;
	for (uint64_t missing = v - expected_interval; missing >= expected_interval;
	     missing -= expected_interval)
		hist_record(h, missing);
}

/* The value at percentile p (0..100): the highest value equivalent to the bucket holding the
 * ceil(p% * total)-th smallest value, capped at the maximum. 0 for an empty histogram. */
static inline uint64_t hist_value_at(const struct hist *h, double p)
{
	if (h->total == 0)
		return 0;
	if (p > 100.0)
		p = 100.0;
	uint64_t target = (uint64_t)ceil(p / 100.0 * (double)h->total);
	if (target == 0)
		target = 1;
	uint64_t seen = 0;
	for (unsigned i = 0; i < HIST_BUCKETS; i++) {
		seen += h->counts[i];
		if (seen >= target) {
			uint64_t v = hist_highest(i);
			return v > h->max ? h->max : v;
		}
	}
	return h->max;
}

static inline double hist_mean(const struct hist *h)
{
	return h->total ? h->sum / (double)h->total : 0.0;
}

static inline double hist_stddev(const struct hist *h)
{
	if (h->total == 0)
		return 0.0;
	double m = hist_mean(h);
	double var = h->sum_sq / (double)h->total - m * m;
	return var > 0 ? sqrt(var) : 0.0;
}

/* {"p50_ns": .., "p99_ns": .., "p999_ns": .., "max_ns": .., "min_ns": .., "mean_ns": ..,
 *  "count": ..} (no trailing newline). */
static inline void hist_print_json(FILE *f, const struct hist *h)
{
	fprintf(f,
		"{\"p50_ns\": %llu, \"p99_ns\": %llu, \"p999_ns\": %llu, \"max_ns\": %llu, "
		"\"min_ns\": %llu, \"mean_ns\": %.1f, \"count\": %llu}",
		(unsigned long long)hist_value_at(h, 50.0),
		(unsigned long long)hist_value_at(h, 99.0),
		(unsigned long long)hist_value_at(h, 99.9),
		(unsigned long long)h->max, (unsigned long long)(h->total ? h->min : 0),
		hist_mean(h), (unsigned long long)h->total);
}

/* The percentile distribution as HdrHistogram's outputPercentileDistribution prints it (5 ticks
 * per half distance, values in microseconds). */
static inline void hist_print_table(FILE *f, const struct hist *h, const char *title)
{
	fprintf(f, "# %s\n", title);
	fprintf(f, "%12s %14s %10s %14s\n\n", "Value(us)", "Percentile", "TotalCount",
		"1/(1-Percentile)");
	if (h->total == 0) {
		fprintf(f, "#[empty]\n\n");
		return;
	}
	double p = 0.0;
	for (;;) {
		uint64_t v = hist_value_at(h, p);
		/* Cumulative count up to and including v's bucket. */
		uint64_t cum = 0;
		unsigned vi = hist_index(v);
		for (unsigned i = 0; i <= vi; i++)
			cum += h->counts[i];
		if (cum >= h->total || p >= 100.0) {
			fprintf(f, "%12.3f %14.12f %10llu %14s\n", (double)h->max / 1000.0, 1.0,
				(unsigned long long)h->total, "inf");
			break;
		}
		fprintf(f, "%12.3f %14.12f %10llu %14.2f\n", (double)v / 1000.0, p / 100.0,
			(unsigned long long)cum, 1.0 / (1.0 - p / 100.0));
		double halvings = floor(log2(100.0 / (100.0 - p))) + 1.0;
		double ticks = 5.0 * pow(2.0, halvings);
		p += 100.0 / ticks;
	}
	fprintf(f, "#[Mean    = %12.3f, StdDeviation   = %12.3f]\n", hist_mean(h) / 1000.0,
		hist_stddev(h) / 1000.0);
	fprintf(f, "#[Max     = %12.3f, Total count    = %12llu]\n", (double)h->max / 1000.0,
		(unsigned long long)h->total);
	fprintf(f, "#[Buckets = %12u, SubBuckets     = %12u]\n\n", HIST_BUCKETS, HIST_SUB);
}

#endif /* ACRN_BENCH_HIST_H */
