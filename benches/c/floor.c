/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * floor.c: the floor of the ioreq round trip on this machine.
 *
 * Two threads, pinned to two different CPUs when the machine has two, hand one 256-byte aligned
 * slot (a struct acrn_io_request) back and forth exactly as a vCPU and a device model do, with
 * nothing else in the way:
 *
 *   "vCPU":   fill the payload, release-store PENDING, [wake], wait for COMPLETE (acquire),
 *             read the value, store FREE;
 *   "client": wait for PENDING (acquire), read the payload, write the value,
 *             release-store COMPLETE, [wake].
 *
 * The round trip (PENDING published to value read, clock_gettime(CLOCK_MONOTONIC) on the vCPU
 * side) is recorded per request after a warm-up. Two variants:
 *
 *   spin:  both waits spin on acquire loads (with the pause instruction);
 *   futex: both waits sleep in FUTEX_WAIT (private) on the state word, and every state store
 *          that the other side waits for is followed by FUTEX_WAKE: the cost of two wake-ups
 *          per request, the floor of notification-mode completion.
 *
 * Output (stdout): {"spin": {p50_ns, p99_ns, p999_ns, max_ns, min_ns, mean_ns, count},
 *                   "futex": {...}, "futex_unpinned": {...}, "pinned": bool, "cpus": [a, b],
 *                   "warmup": W}
 * ("futex_unpinned": the futex variant again with both threads left to the scheduler; only
 * when the main runs were pinned.)
 * With --table, HdrHistogram-style percentile tables go to stderr.
 *
 * Usage: floor [--requests N] [--futex-requests N] [--warmup W] [--only spin|futex]
 *              [--table] [--expected-interval-ns NS] [--no-pin]
 *
 * --no-pin leaves placement to the scheduler (the threads of the emulator are not pinned).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/acrn.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "args.h"
#include "hist.h"

#define STATE_PENDING ACRN_IOREQ_STATE_PENDING
#define STATE_COMPLETE ACRN_IOREQ_STATE_COMPLETE
#define STATE_FREE ACRN_IOREQ_STATE_FREE

enum variant { SPIN, FUTEX };

struct shared {
	struct acrn_io_request slot;	/* aligned(256) by its declaration */
	enum variant variant;
	uint64_t total;			/* warm-up + measured requests */
	uint64_t warmup;
	uint64_t expected_interval;
	int cpu_vcpu;
	int cpu_client;
	bool pinned;
	unsigned yield_spins;		/* one CPU only: yield every so many spins */
	struct hist hist __attribute__((aligned(128)));
};

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield" ::: "memory");
#endif
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void futex_wait(uint32_t *addr, uint32_t expected)
{
	/* EAGAIN (value changed) and EINTR are fine: the caller re-checks. */
	syscall(SYS_futex, addr, FUTEX_WAIT_PRIVATE, expected, NULL, NULL, 0);
}

static void futex_wake(uint32_t *addr)
{
	syscall(SYS_futex, addr, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

static inline uint32_t load_acquire(uint32_t *p)
{
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

/* Waits until *state == want. */
static inline void wait_for(struct shared *s, uint32_t want)
{
	uint32_t *state = &s->slot.processed;
	if (s->variant == SPIN) {
		unsigned spins = 0;
		while (load_acquire(state) != want) {
			cpu_relax();
			if (s->yield_spins && ++spins % s->yield_spins == 0)
				sched_yield();
		}
		return;
	}
	for (;;) {
		uint32_t v = load_acquire(state);
		if (v == want)
			return;
		futex_wait(state, v);
	}
}

static inline void publish(struct shared *s, uint32_t state)
{
	__atomic_store_n(&s->slot.processed, state, __ATOMIC_RELEASE);
	if (s->variant == FUTEX)
		futex_wake(&s->slot.processed);
}

static void pin(int cpu)
{
	if (cpu < 0)
		return;
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	sched_setaffinity(0, sizeof(set), &set);
}

static void *client_thread(void *arg)
{
	struct shared *s = arg;
	pin(s->cpu_client);
	struct acrn_mmio_request *mmio = &s->slot.reqs.mmio_request;
	for (uint64_t i = 0; i < s->total; i++) {
		wait_for(s, STATE_PENDING);
		/* The payload, read after the acquire load (as a device model does). */
		uint64_t addr = mmio->address;
		uint64_t size = mmio->size;
		if (mmio->direction == ACRN_IOREQ_DIR_READ)
			mmio->value = addr ^ size ^ i;
		publish(s, STATE_COMPLETE);
	}
	return NULL;
}

static void *vcpu_thread(void *arg)
{
	struct shared *s = arg;
	pin(s->cpu_vcpu);
	struct acrn_mmio_request *mmio = &s->slot.reqs.mmio_request;
	uint64_t bad = 0;
	for (uint64_t i = 0; i < s->total; i++) {
		s->slot.type = ACRN_IOREQ_TYPE_MMIO;
		mmio->direction = ACRN_IOREQ_DIR_READ;
		mmio->address = 0xfed00000ull + (i & 0xff) * 8;
		mmio->size = 8;
		mmio->value = 0;
		uint64_t t0 = now_ns();
		publish(s, STATE_PENDING);
		wait_for(s, STATE_COMPLETE);
		uint64_t value = mmio->value;
		uint64_t t1 = now_ns();
		if (value != (mmio->address ^ 8 ^ i))
			bad++;
		/* complete_ioreq: a plain store; the client does not wait for FREE. */
		__atomic_store_n(&s->slot.processed, STATE_FREE, __ATOMIC_RELAXED);
		if (i >= s->warmup)
			hist_record_corrected(&s->hist, t1 - t0, s->expected_interval);
	}
	if (bad) {
		fprintf(stderr, "floor: %llu wrong values\n", (unsigned long long)bad);
		exit(1);
	}
	return NULL;
}

/* The first two CPUs this process may run on; -1 when there is only one. */
static void pick_cpus(int *a, int *b)
{
	cpu_set_t set;
	*a = -1;
	*b = -1;
	if (sched_getaffinity(0, sizeof(set), &set) != 0)
		return;
	for (int c = 0; c < CPU_SETSIZE; c++) {
		if (!CPU_ISSET(c, &set))
			continue;
		if (*a < 0) {
			*a = c;
		} else {
			*b = c;
			return;
		}
	}
	*a = -1; /* a single CPU: do not pin, let the scheduler alternate the two threads */
}

static void run(struct shared *s)
{
	pthread_t tv, tc;
	s->slot.processed = STATE_FREE;
	hist_init(&s->hist);
	if (pthread_create(&tc, NULL, client_thread, s) != 0 ||
	    pthread_create(&tv, NULL, vcpu_thread, s) != 0) {
		perror("pthread_create");
		exit(1);
	}
	pthread_join(tv, NULL);
	pthread_join(tc, NULL);
}

int main(int argc, char **argv)
{
	uint64_t spin_n = 200000, futex_n = 50000, warmup = 5000, interval = 0;
	bool table = false, do_spin = true, do_futex = true, no_pin = false;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--requests")) {
			spin_n = parse_u64("floor", a, v);
			i++;
		} else if (!strcmp(a, "--futex-requests")) {
			futex_n = parse_u64("floor", a, v);
			i++;
		} else if (!strcmp(a, "--warmup")) {
			warmup = parse_u64("floor", a, v);
			i++;
		} else if (!strcmp(a, "--expected-interval-ns")) {
			interval = parse_u64("floor", a, v);
			i++;
		} else if (!strcmp(a, "--only")) {
			if (v && !strcmp(v, "spin")) {
				do_futex = false;
			} else if (v && !strcmp(v, "futex")) {
				do_spin = false;
			} else {
				fprintf(stderr, "floor: --only spin|futex\n");
				return 2;
			}
			i++;
		} else if (!strcmp(a, "--table")) {
			table = true;
		} else if (!strcmp(a, "--no-pin")) {
			no_pin = true;
		} else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			printf("usage: floor [--requests N] [--futex-requests N] [--warmup W] "
			       "[--only spin|futex] [--table] [--expected-interval-ns NS] [--no-pin]\n");
			return 0;
		} else {
			fprintf(stderr, "floor: unknown option %s\n", a);
			return 2;
		}
	}

	struct shared *s = aligned_alloc(256, sizeof(struct shared));
	if (!s) {
		perror("aligned_alloc");
		return 1;
	}
	memset(s, 0, sizeof(*s));
	if (no_pin) {
		s->cpu_vcpu = -1;
		s->cpu_client = -1;
	} else {
		pick_cpus(&s->cpu_vcpu, &s->cpu_client);
	}
	s->pinned = s->cpu_vcpu >= 0 && s->cpu_client >= 0;
	/* Unpinned spinning threads may share a CPU: yield now and then. */
	s->yield_spins = s->pinned ? 0 : 256;
	s->warmup = warmup;
	s->expected_interval = interval;

	printf("{");
	bool first = true;
	if (do_spin) {
		s->variant = SPIN;
		s->total = warmup + spin_n;
		run(s);
		if (table)
			hist_print_table(stderr, &s->hist, "floor: spin (acquire/release busy-poll)");
		printf("\"spin\": ");
		hist_print_json(stdout, &s->hist);
		first = false;
	}
	if (do_futex) {
		s->variant = FUTEX;
		s->total = warmup + futex_n;
		run(s);
		if (table)
			hist_print_table(stderr, &s->hist, "floor: futex (FUTEX_WAIT/FUTEX_WAKE)");
		printf("%s\"futex\": ", first ? "" : ", ");
		hist_print_json(stdout, &s->hist);
		first = false;
		if (s->pinned) {
			/* The same, placed by the scheduler (which tends to keep a sleeping pair on
			 * one CPU: two same-CPU switches instead of two cross-CPU wake-ups). */
			int a = s->cpu_vcpu, b = s->cpu_client;
			s->cpu_vcpu = s->cpu_client = -1;
			run(s);
			s->cpu_vcpu = a;
			s->cpu_client = b;
			if (table)
				hist_print_table(stderr, &s->hist,
						 "floor: futex, threads not pinned");
			printf(", \"futex_unpinned\": ");
			hist_print_json(stdout, &s->hist);
		}
	}
	printf(", \"pinned\": %s, \"cpus\": [%d, %d], \"warmup\": %llu}\n",
	       s->pinned ? "true" : "false", s->cpu_vcpu, s->cpu_client,
	       (unsigned long long)warmup);
	free(s);
	return 0;
}
