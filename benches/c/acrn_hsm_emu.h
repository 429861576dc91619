/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * acrn_hsm_emu.h: the C ABI of the acrn-hsm emulator (crate crates/acrn-hsm-capi, library
 * libacrn_hsm_capi.{a,so}).
 *
 * A plain C device model drives an emulated /dev/acrn_hsm with the structs and ACRN_IOCTL_*
 * numbers of <linux/acrn.h>, exactly as it drives the real device:
 *
 *     struct acrn_emu *emu = acrn_emu_new(16);
 *     struct acrn_emu_file *fd = acrn_emu_open(emu);      // open("/dev/acrn_hsm")
 *     void *page = acrn_emu_alloc_page();                 // the ioreq page
 *     struct acrn_vm_creation cv = { .ioreq_buf = (uintptr_t)page, .cpu_affinity = 1 };
 *     acrn_emu_ioctl(fd, ACRN_IOCTL_CREATE_VM, &cv);      // ioctl(fd, ..., &cv)
 *
 * Conventions: functions returning int return 0 (or a non-negative ioctl result) on success and
 * -errno on failure (the raw system-call convention); functions returning a pointer return NULL
 * on failure. NULL handles are -EINVAL (or NULL), never a crash. acrn_emu_last_error() gives a
 * message for the last failure on the calling thread.
 */
#ifndef ACRN_HSM_EMU_H
#define ACRN_HSM_EMU_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The emulated machine (hypervisor + HSM). */
struct acrn_emu;
/* One open emulated /dev/acrn_hsm (holds at most one VM). */
struct acrn_emu_file;
/* A guest workload running on a VM's vCPUs. */
struct acrn_emu_run;

/* The outcome of a guest run. */
struct acrn_emu_run_result {
	uint64_t issued;	/* requests placed in a slot (PENDING) */
	uint64_t completed;	/* requests completed with post-work (COMPLETE seen, then FREE) */
	uint64_t mismatches;	/* reads whose value differed from their "expect" */
	uint64_t faults;	/* #GP on a busy slot, stray wake-ups */
	uint64_t latencies;	/* latencies recorded (one per completed request) */
	uint32_t vcpus;		/* vCPUs of the run */
	uint32_t stopped_vcpus;	/* vCPUs that stopped early (paused, reset, destroyed) */
};

/* A machine with `pcpus` physical CPUs (1..64); a VM gets one vCPU per pCPU of its
 * cpu_affinity. NULL if out of range. */
struct acrn_emu *acrn_emu_new(uint32_t pcpus);
/* Frees the machine (files and runs keep it alive on their own). NULL is a no-op. */
void acrn_emu_free(struct acrn_emu *emu);

/* open("/dev/acrn_hsm"): a new file without a VM. NULL if emu is NULL. */
struct acrn_emu_file *acrn_emu_open(const struct acrn_emu *emu);
/* close(): destroys the file's VM if it still has one. No thread may be inside
 * acrn_emu_ioctl on it. NULL is a no-op. */
void acrn_emu_close(struct acrn_emu_file *file);

/* ioctl(fd, request, arg). Pointer commands: arg points to the struct (_IOC_SIZE bytes are
 * copied in, and back on success for _IOR/_IOWR; NULL is -EFAULT). By-value commands
 * (SET_IRQLINE, VM_INTR_MONITOR): the pointer's value is the integer. _IO commands: ignored.
 * Addresses inside structs (ioreq_buf, vma_base) must come from acrn_emu_alloc_page(s).
 * Thread-safe: one thread may block in ATTACH_IOREQ_CLIENT while another destroys the client
 * (the blocked ATTACH then returns -ENODEV). */
int acrn_emu_ioctl(const struct acrn_emu_file *file, unsigned long request, void *arg);

/* Zeroed, page-aligned memory the emulator resolves as user memory: one 4 KiB page, or len
 * bytes rounded up to pages. NULL on failure (or len == 0). */
void *acrn_emu_alloc_page(void);
void *acrn_emu_alloc_pages(size_t len);
/* Frees such memory; -EINVAL for NULL or an address that is not a live allocation. A VM that
 * still uses the page keeps it mapped until the VM lets it go. */
int acrn_emu_free_page(void *ptr);

/* Starts a guest workload (the JSON format of docs/workloads.md) on VM vmid, one thread per
 * vCPU list; *out receives the run. 0, or -EINVAL (bad JSON: see acrn_emu_last_error; more
 * lists than vCPUs), -ENOENT (no VM), -EPERM (VM not running), -EBUSY. */
int acrn_emu_guest_spawn(const struct acrn_emu *emu, uint16_t vmid, const char *workload_json,
			 struct acrn_emu_run **out);
/* 1 when every vCPU of the run has finished, 0 otherwise, -EINVAL for NULL. */
int acrn_emu_guest_finished(const struct acrn_emu_run *run);
/* Waits for the run, frees it, fills *out and copies min(cap, out->latencies) latencies
 * (PENDING to FREE as the guest saw it, ns; per vCPU in completion order, vCPUs concatenated).
 * -EINVAL for NULL run/out, or NULL latencies with cap > 0 (the run is then left alone). */
int acrn_emu_guest_join(struct acrn_emu_run *run, struct acrn_emu_run_result *out,
			uint64_t *latencies, size_t cap);

/* The message of the last failure on this thread ("" if none); valid until the next call. */
const char *acrn_emu_last_error(void);

#ifdef __cplusplus
}
#endif

#endif /* ACRN_HSM_EMU_H */
