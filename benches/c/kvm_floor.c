/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * kvm_floor.c: the floor of a guest PIO exit answered in user space, for `acrn-hsm bench --guest`.
 *
 * A plain KVM VMM and nothing else: one VM, one vCPU, 1 MiB of RAM at 0 with the benchmark's
 * flat firmware image (crates/acrn-hsm-tools/src/guest_pio.rs, `bios_image`; the same file QEMU
 * gets as -bios) copied to 0xF0000, the vCPU at F000:FFF0 (the image's reset vector jumps to
 * F000:0000). The KVM_RUN loop answers every port itself, inline:
 *
 *   0x7e0 (the test port)  reads 0xff, writes ignored (as QEMU's unassigned ports);
 *   0x402 (results)        each byte written is appended to OUTPUT;
 *   0xf4  (debug exit)     ends the run; also on KVM_EXIT_HLT.
 *
 * Usage: kvm_floor IMAGE OUTPUT
 * Prints {"exits": N, "io_exits": N, "seconds": S} on stdout; exit status 0 when the guest
 * reached its debug exit, 1 otherwise (the reason on stderr).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define RAM_SIZE (1u << 20)
#define IMAGE_SIZE 0x10000u
#define IMAGE_GPA 0xf0000u
#define TEST_PORT 0x7e0
#define RESULT_PORT 0x402
#define EXIT_PORT 0xf4

static void die(const char *what) {
  fprintf(stderr, "kvm_floor: %s: %s\n", what, strerror(errno));
  exit(1);
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: kvm_floor IMAGE OUTPUT\n");
    return 2;
  }
  int img = open(argv[1], O_RDONLY);
  if (img < 0) die(argv[1]);
  uint8_t *ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (ram == MAP_FAILED) die("mmap RAM");
  ssize_t n = read(img, ram + IMAGE_GPA, IMAGE_SIZE);
  if (n != (ssize_t)IMAGE_SIZE) {
    fprintf(stderr, "kvm_floor: %s: expected a %u-byte image\n", argv[1], IMAGE_SIZE);
    return 1;
  }
  close(img);
  FILE *out = fopen(argv[2], "wb");
  if (!out) die(argv[2]);

  int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (kvm < 0) die("/dev/kvm");
  int vm = ioctl(kvm, KVM_CREATE_VM, 0);
  if (vm < 0) die("KVM_CREATE_VM");
  /* Needed by VMX for real mode; other implementations may refuse it, which does not matter. */
  (void)ioctl(vm, KVM_SET_TSS_ADDR, 0xfffbd000ul);
  struct kvm_userspace_memory_region region = {
      .slot = 0, .guest_phys_addr = 0, .memory_size = RAM_SIZE, .userspace_addr = (uintptr_t)ram};
  if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) die("KVM_SET_USER_MEMORY_REGION");
  int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
  if (vcpu < 0) die("KVM_CREATE_VCPU");
  int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
  if (run_size < (int)sizeof(struct kvm_run)) die("KVM_GET_VCPU_MMAP_SIZE");
  struct kvm_run *run = mmap(NULL, (size_t)run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
  if (run == MAP_FAILED) die("mmap kvm_run");

  struct kvm_sregs sregs;
  if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0) die("KVM_GET_SREGS");
  sregs.cs.selector = 0xf000;
  sregs.cs.base = 0xf0000;
  sregs.cr0 &= ~1ull; /* real mode */
  if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0) die("KVM_SET_SREGS");
  struct kvm_regs regs;
  memset(&regs, 0, sizeof regs);
  regs.rip = 0xfff0;
  regs.rflags = 2;
  if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0) die("KVM_SET_REGS");

  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  unsigned long exits = 0, io_exits = 0;
  int done = 0;
  while (!done) {
    if (ioctl(vcpu, KVM_RUN, 0) < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      die("KVM_RUN");
    }
    exits++;
    switch (run->exit_reason) {
    case KVM_EXIT_IO: {
      io_exits++;
      uint8_t *data = (uint8_t *)run + run->io.data_offset;
      size_t len = (size_t)run->io.size * run->io.count;
      if (run->io.direction == KVM_EXIT_IO_IN) {
        memset(data, 0xff, len);
      } else if (run->io.port == RESULT_PORT) {
        fwrite(data, 1, len, out);
      } else if (run->io.port == EXIT_PORT) {
        done = 1;
      }
      break;
    }
    case KVM_EXIT_HLT:
      fprintf(stderr, "kvm_floor: the guest halted before its debug exit\n");
      return 1;
    case KVM_EXIT_MMIO:
      if (!run->mmio.is_write) memset(run->mmio.data, 0xff, sizeof run->mmio.data);
      break;
    case KVM_EXIT_INTR:
      break;
    default:
      fprintf(stderr, "kvm_floor: exit reason %u (internal error suberror %u)\n", run->exit_reason,
              run->exit_reason == KVM_EXIT_INTERNAL_ERROR ? run->internal.suberror : 0);
      return 1;
    }
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  if (fclose(out) != 0) die(argv[2]);
  double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
  printf("{\"exits\": %lu, \"io_exits\": %lu, \"seconds\": %.6f}\n", exits, io_exits, secs);
  return 0;
}
