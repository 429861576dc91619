/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * reference_client.c: the C reference client. The ioreq scan/complete loop written plainly, as
 * the ACRN device model writes it (devicemodel/core/main.c, vm_loop and handle_vmexit), driving
 * the acrn-hsm emulator through its C ABI (acrn_hsm_emu.h) with the structs and ioctl numbers
 * of <linux/acrn.h>.
 *
 *   main thread: open, CREATE_VM (our own ioreq page as ioreq_buf; vm_flag has
 *                GUEST_FLAG_IO_COMPLETION_POLLING in polling mode), CREATE_IOREQ_CLIENT,
 *                START_VM, start the loop thread, run a guest workload of N requests on V
 *                vCPUs, join it, DESTROY_IOREQ_CLIENT (the loop's ATTACH returns -ENODEV),
 *                join the loop, PAUSE_VM, DESTROY_VM, close.
 *   loop thread: while (ATTACH == 0) for each vCPU: if acquire-load(processed) == PROCESSING
 *                && !kernel_handled: emulate (MMIO: a register file; PIO: a port returning a
 *                constant), write the value of reads, NOTIFY_REQUEST_FINISH.
 *   --loop busy: the same scan, spinning on the page instead of blocking in ATTACH.
 *
 * The guest checks every read against its expected value, and the run must end with
 * issued == completed, no mismatch, no fault. Latencies are the guest's (PENDING to FREE).
 *
 * Output (stdout): {"mode", "loop", "vcpus", "requests", "p50_ns", "p99_ns", "p999_ns",
 *                   "max_ns", "mean_ns", "throughput_rps", "seconds"}
 * With --table, an HdrHistogram-style percentile table goes to stderr.
 *
 * Usage: reference_client [--mode polling|notify] [--vcpus V] [--requests N]
 *                         [--loop attach|busy] [--warmup W] [--table]
 *                         [--expected-interval-ns NS]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/acrn.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h> /* _IOW & co. for the ACRN_IOCTL_* numbers */
#include <time.h>

#include "acrn_hsm_emu.h"
#include "args.h"
#include "hist.h"

/* vm_flag bit of the hypervisor's public API (acrn_common.h), as the DM sets it for --rtvm. */
#define GUEST_FLAG_IO_COMPLETION_POLLING (1ull << 2)

#define REGFILE_BASE 0xfed00000ull
#define REGFILE_REGS 64
#define CONST_PORT 0x510
#define CONST_VALUE 0x5a5a1234u
#define VALUE_BASE 0x1122334455667700ull

struct dm {
	struct acrn_emu_file *fd;
	struct acrn_io_request *slots;	/* the ioreq page: one 256-byte slot per vCPU */
	uint16_t vmid;
	int vcpus;
	bool busy;			/* spin on the page instead of ATTACH */
	int stop;			/* busy loop: set by the main thread (atomic) */
	uint64_t regs[REGFILE_REGS];	/* the MMIO register file */
	uint64_t handled;
	int error;
};

static void die(const char *what, int r)
{
	fprintf(stderr, "reference_client: %s: %s (%s)\n", what, strerror(-r),
		acrn_emu_last_error());
	exit(1);
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

/* vmexit_mmio_emul: a register file of REGFILE_REGS u64 registers. */
static void emulate_mmio(struct dm *dm, struct acrn_mmio_request *m)
{
	uint64_t off = m->address - REGFILE_BASE;
	if (m->address < REGFILE_BASE || off / 8 >= REGFILE_REGS) {
		if (m->direction == ACRN_IOREQ_DIR_READ)
			m->value = ~0ull; /* unassigned: all ones */
		return;
	}
	uint64_t *r = &dm->regs[off / 8];
	if (m->direction == ACRN_IOREQ_DIR_READ)
		m->value = *r;
	else
		*r = m->value;
}

/* vmexit_inout: one port returning a constant; others read all ones. */
static void emulate_pio(struct acrn_pio_request *p)
{
	if (p->direction == ACRN_IOREQ_DIR_READ)
		p->value = p->address == CONST_PORT ? CONST_VALUE : 0xffffffffu;
}

/* handle_vmexit: dispatch by type, then vm_notify_request_done. */
static void handle_vmexit(struct dm *dm, int vcpu)
{
	struct acrn_io_request *req = &dm->slots[vcpu];
	switch (req->type) {
	case ACRN_IOREQ_TYPE_PORTIO:
		emulate_pio(&req->reqs.pio_request);
		break;
	case ACRN_IOREQ_TYPE_MMIO:
		emulate_mmio(dm, &req->reqs.mmio_request);
		break;
	case ACRN_IOREQ_TYPE_PCICFG:
		if (req->reqs.pci_request.direction == ACRN_IOREQ_DIR_READ)
			req->reqs.pci_request.value = -1;
		break;
	default:
		fprintf(stderr, "reference_client: unknown ioreq type %u\n", req->type);
		exit(1);
	}
	struct acrn_ioreq_notify notify = { .vmid = dm->vmid, .vcpu = (uint32_t)vcpu };
	int r = acrn_emu_ioctl(dm->fd, ACRN_IOCTL_NOTIFY_REQUEST_FINISH, &notify);
	if (r < 0)
		die("NOTIFY_REQUEST_FINISH", r);
	dm->handled++;
}

/* One scan of every vCPU's slot; returns how many requests were handled. */
static int scan(struct dm *dm)
{
	int n = 0;
	for (int vcpu = 0; vcpu < dm->vcpus; vcpu++) {
		struct acrn_io_request *req = &dm->slots[vcpu];
		if (__atomic_load_n(&req->processed, __ATOMIC_ACQUIRE) ==
			    ACRN_IOREQ_STATE_PROCESSING &&
		    !req->kernel_handled) {
			handle_vmexit(dm, vcpu);
			n++;
		}
	}
	return n;
}

/* vm_loop */
static void *vm_loop(void *arg)
{
	struct dm *dm = arg;
	if (dm->busy) {
		while (!__atomic_load_n(&dm->stop, __ATOMIC_ACQUIRE))
			if (scan(dm) == 0)
				cpu_relax();
		return NULL;
	}
	for (;;) {
		int r = acrn_emu_ioctl(dm->fd, ACRN_IOCTL_ATTACH_IOREQ_CLIENT, NULL);
		if (r == -ENODEV)
			break; /* the client was destroyed: the VM is going away */
		if (r < 0) {
			dm->error = r;
			break;
		}
		scan(dm);
	}
	return NULL;
}

/* N requests on V vCPUs: per vCPU, repeat k x [MMIO write of its register, MMIO read of it
 * expecting the value, PIO read of the constant port]. */
static char *workload_json(int vcpus, uint64_t per_vcpu_rounds)
{
	size_t cap = 256 + (size_t)vcpus * 512;
	char *s = malloc(cap);
	if (!s)
		return NULL;
	size_t len = 0;
	len += (size_t)snprintf(s + len, cap - len, "{\"vcpus\": [");
	for (int v = 0; v < vcpus; v++) {
		unsigned long long reg = REGFILE_BASE + 8ull * (unsigned)v;
		unsigned long long val = VALUE_BASE + (unsigned)v;
		len += (size_t)snprintf(
			s + len, cap - len,
			"%s[{\"repeat\": %llu, \"ops\": ["
			"{\"mmio\": \"0x%llx\", \"size\": 8, \"write\": \"0x%llx\"}, "
			"{\"mmio\": \"0x%llx\", \"size\": 8, \"read\": true, \"expect\": \"0x%llx\"}, "
			"{\"pio\": %d, \"size\": 4, \"read\": true, \"expect\": %u}]}]",
			v ? ", " : "", (unsigned long long)per_vcpu_rounds, reg, val, reg, val,
			CONST_PORT, CONST_VALUE);
	}
	snprintf(s + len, cap - len, "]}");
	return s;
}

struct run_out {
	struct acrn_emu_run_result res;
	uint64_t *lat;
	uint64_t ns;
};

static void guest_run(struct acrn_emu *emu, uint16_t vmid, int vcpus, uint64_t rounds,
		      struct run_out *out)
{
	char *json = workload_json(vcpus, rounds);
	if (!json)
		die("malloc", -ENOMEM);
	uint64_t cap = rounds * 3u * (uint64_t)vcpus;
	out->lat = calloc(cap ? cap : 1, sizeof(uint64_t));
	if (!out->lat)
		die("malloc", -ENOMEM);
	struct acrn_emu_run *run;
	uint64_t t0 = now_ns();
	int r = acrn_emu_guest_spawn(emu, vmid, json, &run);
	if (r < 0)
		die("guest spawn", r);
	r = acrn_emu_guest_join(run, &out->res, out->lat, cap);
	out->ns = now_ns() - t0;
	if (r < 0)
		die("guest join", r);
	free(json);
	if (out->res.issued != out->res.completed || out->res.mismatches || out->res.faults ||
	    out->res.stopped_vcpus || out->res.issued != cap) {
		fprintf(stderr,
			"reference_client: bad run: issued %llu completed %llu (expected %llu) "
			"mismatches %llu faults %llu stopped %u\n",
			(unsigned long long)out->res.issued,
			(unsigned long long)out->res.completed, (unsigned long long)cap,
			(unsigned long long)out->res.mismatches,
			(unsigned long long)out->res.faults, out->res.stopped_vcpus);
		exit(1);
	}
}

int main(int argc, char **argv)
{
	bool polling = true, busy = false, table = false;
	uint64_t vcpus = 1, requests = 100000, warmup = UINT64_MAX, interval = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--mode")) {
			if (v && !strcmp(v, "polling"))
				polling = true;
			else if (v && !strcmp(v, "notify"))
				polling = false;
			else {
				fprintf(stderr, "reference_client: --mode polling|notify\n");
				return 2;
			}
			i++;
		} else if (!strcmp(a, "--loop")) {
			if (v && !strcmp(v, "attach"))
				busy = false;
			else if (v && !strcmp(v, "busy"))
				busy = true;
			else {
				fprintf(stderr, "reference_client: --loop attach|busy\n");
				return 2;
			}
			i++;
		} else if (!strcmp(a, "--vcpus")) {
			vcpus = parse_u64("reference_client", a, v);
			i++;
		} else if (!strcmp(a, "--requests")) {
			requests = parse_u64("reference_client", a, v);
			i++;
		} else if (!strcmp(a, "--warmup")) {
			warmup = parse_u64("reference_client", a, v);
			i++;
		} else if (!strcmp(a, "--expected-interval-ns")) {
			interval = parse_u64("reference_client", a, v);
			i++;
		} else if (!strcmp(a, "--table")) {
			table = true;
		} else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			printf("usage: reference_client [--mode polling|notify] [--vcpus V] "
			       "[--requests N] [--loop attach|busy] [--warmup W] [--table] "
			       "[--expected-interval-ns NS]\n");
			return 0;
		} else {
			fprintf(stderr, "reference_client: unknown option %s\n", a);
			return 2;
		}
	}
	if (vcpus < 1 || vcpus > ACRN_IO_REQUEST_MAX) {
		fprintf(stderr, "reference_client: --vcpus must be 1..%d\n", ACRN_IO_REQUEST_MAX);
		return 2;
	}
	if (warmup == UINT64_MAX)
		warmup = requests / 10 < 10000 ? requests / 10 : 10000;
	/* Rounds of 3 requests per vCPU, at least one. */
	uint64_t rounds = (requests + 3 * vcpus - 1) / (3 * vcpus);
	if (rounds == 0)
		rounds = 1;
	uint64_t warm_rounds = (warmup + 3 * vcpus - 1) / (3 * vcpus);

	struct acrn_emu *emu = acrn_emu_new(ACRN_IO_REQUEST_MAX);
	if (!emu)
		die("acrn_emu_new", -EINVAL);
	struct dm *dm = calloc(1, sizeof(*dm));
	if (!dm)
		die("malloc", -ENOMEM);
	dm->fd = acrn_emu_open(emu);
	if (!dm->fd)
		die("open", -EINVAL);
	void *page = acrn_emu_alloc_page();
	if (!page)
		die("ioreq page", -ENOMEM);
	dm->slots = page;
	dm->vcpus = (int)vcpus;
	dm->busy = busy;

	struct acrn_vm_creation cv;
	memset(&cv, 0, sizeof(cv));
	memcpy(&cv.uuid, "acrn-ref-client", 16);
	cv.vm_flag = polling ? GUEST_FLAG_IO_COMPLETION_POLLING : 0;
	cv.ioreq_buf = (uint64_t)(uintptr_t)page;
	cv.cpu_affinity = (vcpus == 64 ? ~0ull : (1ull << vcpus) - 1);
	int r = acrn_emu_ioctl(dm->fd, ACRN_IOCTL_CREATE_VM, &cv);
	if (r < 0)
		die("CREATE_VM", r);
	if (cv.vcpu_num != vcpus) {
		fprintf(stderr, "reference_client: got %u vCPUs\n", cv.vcpu_num);
		return 1;
	}
	dm->vmid = cv.vmid;
	if ((r = acrn_emu_ioctl(dm->fd, ACRN_IOCTL_CREATE_IOREQ_CLIENT, NULL)) < 0)
		die("CREATE_IOREQ_CLIENT", r);
	if ((r = acrn_emu_ioctl(dm->fd, ACRN_IOCTL_START_VM, NULL)) < 0)
		die("START_VM", r);
	pthread_t loop;
	if (pthread_create(&loop, NULL, vm_loop, dm) != 0)
		die("pthread_create", -errno);

	struct run_out warm = { 0 }, meas = { 0 };
	if (warm_rounds)
		guest_run(emu, dm->vmid, (int)vcpus, warm_rounds, &warm);
	guest_run(emu, dm->vmid, (int)vcpus, rounds, &meas);

	/* Shutdown as the DM does it: the client goes, the blocked ATTACH returns -ENODEV. */
	__atomic_store_n(&dm->stop, 1, __ATOMIC_RELEASE);
	if ((r = acrn_emu_ioctl(dm->fd, ACRN_IOCTL_DESTROY_IOREQ_CLIENT, NULL)) < 0)
		die("DESTROY_IOREQ_CLIENT", r);
	pthread_join(loop, NULL);
	if (dm->error)
		die("ATTACH_IOREQ_CLIENT", dm->error);
	uint64_t expected_handled = 3 * vcpus * (rounds + warm_rounds);
	if (dm->handled != expected_handled) {
		fprintf(stderr, "reference_client: handled %llu requests, expected %llu\n",
			(unsigned long long)dm->handled, (unsigned long long)expected_handled);
		return 1;
	}
	if ((r = acrn_emu_ioctl(dm->fd, ACRN_IOCTL_PAUSE_VM, NULL)) < 0)
		die("PAUSE_VM", r);
	if ((r = acrn_emu_ioctl(dm->fd, ACRN_IOCTL_DESTROY_VM, NULL)) < 0)
		die("DESTROY_VM", r);
	acrn_emu_close(dm->fd);
	if ((r = acrn_emu_free_page(page)) < 0)
		die("free page", r);
	acrn_emu_free(emu);

	struct hist *h = malloc(sizeof(*h));
	if (!h)
		die("malloc", -ENOMEM);
	hist_init(h);
	for (uint64_t i = 0; i < meas.res.latencies; i++)
		hist_record_corrected(h, meas.lat[i], interval);
	const char *mode = polling ? "polling" : "notify";
	if (table) {
		char title[128];
		snprintf(title, sizeof(title), "reference client: %s, %s loop, %llu vCPU(s)", mode,
			 busy ? "busy" : "attach", (unsigned long long)vcpus);
		hist_print_table(stderr, h, title);
	}
	double secs = (double)meas.ns / 1e9;
	printf("{\"mode\": \"%s\", \"loop\": \"%s\", \"vcpus\": %llu, \"requests\": %llu, "
	       "\"p50_ns\": %llu, \"p99_ns\": %llu, \"p999_ns\": %llu, \"max_ns\": %llu, "
	       "\"mean_ns\": %.1f, \"throughput_rps\": %.0f, \"seconds\": %.3f, \"warmup\": %llu}\n",
	       mode, busy ? "busy" : "attach", (unsigned long long)vcpus,
	       (unsigned long long)meas.res.completed, (unsigned long long)hist_value_at(h, 50.0),
	       (unsigned long long)hist_value_at(h, 99.0),
	       (unsigned long long)hist_value_at(h, 99.9), (unsigned long long)h->max,
	       hist_mean(h), secs > 0 ? (double)meas.res.completed / secs : 0.0, secs,
	       (unsigned long long)(warm_rounds * 3 * vcpus));
	free(h);
	free(warm.lat);
	free(meas.lat);
	free(dm);
	return 0;
}
