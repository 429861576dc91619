/*
 * ABI oracle for acrn-uapi: prints, as JSON, the size, alignment and member offsets of every
 * struct of <linux/acrn.h>, every ioctl request number and every other constant, as gcc
 * computes them from the installed header.
 *
 * The output has the exact shape and text of acrn_uapi::layout::write_json (and so of
 * `acrn-hsm abi --json`); crates/acrn-uapi/tests/conformance.rs compiles this file, runs it and
 * compares the two both ways. The member paths follow the rules documented in
 * crates/acrn-uapi/src/layout.rs: dotted C member paths, members of anonymous structs/unions by
 * their own names, arrays once by name, members of element 0 of an array of structs as
 * "name[].member", and acrn_vm_creation.uuid as one opaque member.
 *
 * Build and run:  gcc -std=c11 -Wall -Wextra -Werror -o abi abi.c && ./abi
 */
#include <stddef.h>
#include <stdio.h>

#include <linux/ioctl.h>	/* _IO*, which <linux/acrn.h> uses but does not include */
#include <linux/acrn.h>

static int first_struct = 1;
static int first_field;
static int first_entry;

static void begin_struct(const char *name, size_t size, size_t align)
{
	printf("%s    \"%s\": {\n      \"size\": %zu,\n      \"align\": %zu,\n      \"fields\": {\n",
	       first_struct ? "" : ",\n", name, size, align);
	first_struct = 0;
	first_field = 1;
}

static void field(const char *path, size_t offset)
{
	printf("%s        \"%s\": %zu", first_field ? "" : ",\n", path, offset);
	first_field = 0;
}

static void end_struct(void)
{
	printf("\n      }\n    }");
}

static void entry(const char *name, unsigned long long value)
{
	printf("%s    \"%s\": %llu", first_entry ? "" : ",\n", name, value);
	first_entry = 0;
}

#define BEGIN(s)	begin_struct(#s, sizeof(struct s), _Alignof(struct s))
/* A member whose JSON path is its C member designator. */
#define F(s, path)	field(#path, offsetof(struct s, path))
/* A member whose JSON path differs from the designator (elements of arrays: "res[].size"). */
#define FN(s, name, path)	field(name, offsetof(struct s, path))
#define END()		end_struct()
#define I(name)		entry(#name, (unsigned long long)(name))
#define C(name)								\
	do {								\
		_Static_assert((name) >= 0, #name " is negative");	\
		entry(#name, (unsigned long long)(name));		\
	} while (0)

int main(void)
{
	printf("{\n  \"structs\": {\n");
	BEGIN(acrn_mmio_request);
	F(acrn_mmio_request, direction);
	F(acrn_mmio_request, reserved);
	F(acrn_mmio_request, address);
	F(acrn_mmio_request, size);
	F(acrn_mmio_request, value);
	END();
	BEGIN(acrn_pio_request);
	F(acrn_pio_request, direction);
	F(acrn_pio_request, reserved);
	F(acrn_pio_request, address);
	F(acrn_pio_request, size);
	F(acrn_pio_request, value);
	END();
	BEGIN(acrn_pci_request);
	F(acrn_pci_request, direction);
	F(acrn_pci_request, reserved);
	F(acrn_pci_request, size);
	F(acrn_pci_request, value);
	F(acrn_pci_request, bus);
	F(acrn_pci_request, dev);
	F(acrn_pci_request, func);
	F(acrn_pci_request, reg);
	END();
	BEGIN(acrn_io_request);
	F(acrn_io_request, type);
	F(acrn_io_request, completion_polling);
	F(acrn_io_request, reserved0);
	F(acrn_io_request, reqs);
	F(acrn_io_request, reqs.pio_request);
	F(acrn_io_request, reqs.pio_request.direction);
	F(acrn_io_request, reqs.pio_request.reserved);
	F(acrn_io_request, reqs.pio_request.address);
	F(acrn_io_request, reqs.pio_request.size);
	F(acrn_io_request, reqs.pio_request.value);
	F(acrn_io_request, reqs.pci_request);
	F(acrn_io_request, reqs.pci_request.direction);
	F(acrn_io_request, reqs.pci_request.reserved);
	F(acrn_io_request, reqs.pci_request.size);
	F(acrn_io_request, reqs.pci_request.value);
	F(acrn_io_request, reqs.pci_request.bus);
	F(acrn_io_request, reqs.pci_request.dev);
	F(acrn_io_request, reqs.pci_request.func);
	F(acrn_io_request, reqs.pci_request.reg);
	F(acrn_io_request, reqs.mmio_request);
	F(acrn_io_request, reqs.mmio_request.direction);
	F(acrn_io_request, reqs.mmio_request.reserved);
	F(acrn_io_request, reqs.mmio_request.address);
	F(acrn_io_request, reqs.mmio_request.size);
	F(acrn_io_request, reqs.mmio_request.value);
	F(acrn_io_request, reqs.data);
	F(acrn_io_request, reserved1);
	F(acrn_io_request, kernel_handled);
	F(acrn_io_request, processed);
	END();
	BEGIN(acrn_io_request_buffer);
	F(acrn_io_request_buffer, req_slot);
	FN(acrn_io_request_buffer, "req_slot[].type", req_slot[0].type);
	FN(acrn_io_request_buffer, "req_slot[].completion_polling", req_slot[0].completion_polling);
	FN(acrn_io_request_buffer, "req_slot[].reserved0", req_slot[0].reserved0);
	FN(acrn_io_request_buffer, "req_slot[].reqs", req_slot[0].reqs);
	FN(acrn_io_request_buffer, "req_slot[].reqs.pio_request", req_slot[0].reqs.pio_request);
	FN(acrn_io_request_buffer, "req_slot[].reqs.pio_request.direction", req_slot[0].reqs.pio_request.direction);
	FN(acrn_io_request_buffer, "req_slot[].reqs.pio_request.reserved", req_slot[0].reqs.pio_request.reserved);
	FN(acrn_io_request_buffer, "req_slot[].reqs.pio_request.address", req_slot[0].reqs.pio_request.address);
	FN(acrn_io_request_buffer, "req_slot[].reqs.pio_request.size", req_slot[0].reqs.pio_request.size);
	FN(acrn_io_request_buffer, "req_slot[].reqs.pio_request.value", req_slot[0].reqs.pio_request.value);
	FN(acrn_io_request_buffer, "req_slot[].reqs.pci_request", req_slot[0].reqs.pci_request);
	FN(acrn_io_request_buffer, "req_slot[].reqs.pci_request.direction", req_slot[0].reqs.pci_request.direction);
	FN(acrn_io_request_buffer, "req_slot[].reqs.pci_request.reserved", req_slot[0].reqs.pci_request.reserved);
	FN(acrn_io_request_buffer, "req_slot[].reqs.pci_request.size", req_slot[0].reqs.pci_request.size);
	FN(acrn_io_request_buffer, "req_slot[].reqs.pci_request.value", req_slot[0].reqs.pci_request.value);
	FN(acrn_io_request_buffer, "req_slot[].reqs.pci_request.bus", req_slot[0].reqs.pci_request.bus);
	FN(acrn_io_request_buffer, "req_slot[].reqs.pci_request.dev", req_slot[0].reqs.pci_request.dev);
	FN(acrn_io_request_buffer, "req_slot[].reqs.pci_request.func", req_slot[0].reqs.pci_request.func);
	FN(acrn_io_request_buffer, "req_slot[].reqs.pci_request.reg", req_slot[0].reqs.pci_request.reg);
	FN(acrn_io_request_buffer, "req_slot[].reqs.mmio_request", req_slot[0].reqs.mmio_request);
	FN(acrn_io_request_buffer, "req_slot[].reqs.mmio_request.direction", req_slot[0].reqs.mmio_request.direction);
	FN(acrn_io_request_buffer, "req_slot[].reqs.mmio_request.reserved", req_slot[0].reqs.mmio_request.reserved);
	FN(acrn_io_request_buffer, "req_slot[].reqs.mmio_request.address", req_slot[0].reqs.mmio_request.address);
	FN(acrn_io_request_buffer, "req_slot[].reqs.mmio_request.size", req_slot[0].reqs.mmio_request.size);
	FN(acrn_io_request_buffer, "req_slot[].reqs.mmio_request.value", req_slot[0].reqs.mmio_request.value);
	FN(acrn_io_request_buffer, "req_slot[].reqs.data", req_slot[0].reqs.data);
	FN(acrn_io_request_buffer, "req_slot[].reserved1", req_slot[0].reserved1);
	FN(acrn_io_request_buffer, "req_slot[].kernel_handled", req_slot[0].kernel_handled);
	FN(acrn_io_request_buffer, "req_slot[].processed", req_slot[0].processed);
	F(acrn_io_request_buffer, reserved);
	END();
	BEGIN(acrn_ioreq_notify);
	F(acrn_ioreq_notify, vmid);
	F(acrn_ioreq_notify, reserved);
	F(acrn_ioreq_notify, vcpu);
	END();
	BEGIN(acrn_vm_creation);
	F(acrn_vm_creation, vmid);
	F(acrn_vm_creation, reserved0);
	F(acrn_vm_creation, vcpu_num);
	F(acrn_vm_creation, reserved1);
	F(acrn_vm_creation, uuid);
	F(acrn_vm_creation, vm_flag);
	F(acrn_vm_creation, ioreq_buf);
	F(acrn_vm_creation, cpu_affinity);
	END();
	BEGIN(acrn_gp_regs);
	F(acrn_gp_regs, rax);
	F(acrn_gp_regs, rcx);
	F(acrn_gp_regs, rdx);
	F(acrn_gp_regs, rbx);
	F(acrn_gp_regs, rsp);
	F(acrn_gp_regs, rbp);
	F(acrn_gp_regs, rsi);
	F(acrn_gp_regs, rdi);
	F(acrn_gp_regs, r8);
	F(acrn_gp_regs, r9);
	F(acrn_gp_regs, r10);
	F(acrn_gp_regs, r11);
	F(acrn_gp_regs, r12);
	F(acrn_gp_regs, r13);
	F(acrn_gp_regs, r14);
	F(acrn_gp_regs, r15);
	END();
	BEGIN(acrn_descriptor_ptr);
	F(acrn_descriptor_ptr, limit);
	F(acrn_descriptor_ptr, base);
	F(acrn_descriptor_ptr, reserved);
	END();
	BEGIN(acrn_regs);
	F(acrn_regs, gprs);
	F(acrn_regs, gprs.rax);
	F(acrn_regs, gprs.rcx);
	F(acrn_regs, gprs.rdx);
	F(acrn_regs, gprs.rbx);
	F(acrn_regs, gprs.rsp);
	F(acrn_regs, gprs.rbp);
	F(acrn_regs, gprs.rsi);
	F(acrn_regs, gprs.rdi);
	F(acrn_regs, gprs.r8);
	F(acrn_regs, gprs.r9);
	F(acrn_regs, gprs.r10);
	F(acrn_regs, gprs.r11);
	F(acrn_regs, gprs.r12);
	F(acrn_regs, gprs.r13);
	F(acrn_regs, gprs.r14);
	F(acrn_regs, gprs.r15);
	F(acrn_regs, gdt);
	F(acrn_regs, gdt.limit);
	F(acrn_regs, gdt.base);
	F(acrn_regs, gdt.reserved);
	F(acrn_regs, idt);
	F(acrn_regs, idt.limit);
	F(acrn_regs, idt.base);
	F(acrn_regs, idt.reserved);
	F(acrn_regs, rip);
	F(acrn_regs, cs_base);
	F(acrn_regs, cr0);
	F(acrn_regs, cr4);
	F(acrn_regs, cr3);
	F(acrn_regs, ia32_efer);
	F(acrn_regs, rflags);
	F(acrn_regs, reserved_64);
	F(acrn_regs, cs_ar);
	F(acrn_regs, cs_limit);
	F(acrn_regs, reserved_32);
	F(acrn_regs, cs_sel);
	F(acrn_regs, ss_sel);
	F(acrn_regs, ds_sel);
	F(acrn_regs, es_sel);
	F(acrn_regs, fs_sel);
	F(acrn_regs, gs_sel);
	F(acrn_regs, ldt_sel);
	F(acrn_regs, tr_sel);
	END();
	BEGIN(acrn_vcpu_regs);
	F(acrn_vcpu_regs, vcpu_id);
	F(acrn_vcpu_regs, reserved);
	F(acrn_vcpu_regs, vcpu_regs);
	F(acrn_vcpu_regs, vcpu_regs.gprs);
	F(acrn_vcpu_regs, vcpu_regs.gprs.rax);
	F(acrn_vcpu_regs, vcpu_regs.gprs.rcx);
	F(acrn_vcpu_regs, vcpu_regs.gprs.rdx);
	F(acrn_vcpu_regs, vcpu_regs.gprs.rbx);
	F(acrn_vcpu_regs, vcpu_regs.gprs.rsp);
	F(acrn_vcpu_regs, vcpu_regs.gprs.rbp);
	F(acrn_vcpu_regs, vcpu_regs.gprs.rsi);
	F(acrn_vcpu_regs, vcpu_regs.gprs.rdi);
	F(acrn_vcpu_regs, vcpu_regs.gprs.r8);
	F(acrn_vcpu_regs, vcpu_regs.gprs.r9);
	F(acrn_vcpu_regs, vcpu_regs.gprs.r10);
	F(acrn_vcpu_regs, vcpu_regs.gprs.r11);
	F(acrn_vcpu_regs, vcpu_regs.gprs.r12);
	F(acrn_vcpu_regs, vcpu_regs.gprs.r13);
	F(acrn_vcpu_regs, vcpu_regs.gprs.r14);
	F(acrn_vcpu_regs, vcpu_regs.gprs.r15);
	F(acrn_vcpu_regs, vcpu_regs.gdt);
	F(acrn_vcpu_regs, vcpu_regs.gdt.limit);
	F(acrn_vcpu_regs, vcpu_regs.gdt.base);
	F(acrn_vcpu_regs, vcpu_regs.gdt.reserved);
	F(acrn_vcpu_regs, vcpu_regs.idt);
	F(acrn_vcpu_regs, vcpu_regs.idt.limit);
	F(acrn_vcpu_regs, vcpu_regs.idt.base);
	F(acrn_vcpu_regs, vcpu_regs.idt.reserved);
	F(acrn_vcpu_regs, vcpu_regs.rip);
	F(acrn_vcpu_regs, vcpu_regs.cs_base);
	F(acrn_vcpu_regs, vcpu_regs.cr0);
	F(acrn_vcpu_regs, vcpu_regs.cr4);
	F(acrn_vcpu_regs, vcpu_regs.cr3);
	F(acrn_vcpu_regs, vcpu_regs.ia32_efer);
	F(acrn_vcpu_regs, vcpu_regs.rflags);
	F(acrn_vcpu_regs, vcpu_regs.reserved_64);
	F(acrn_vcpu_regs, vcpu_regs.cs_ar);
	F(acrn_vcpu_regs, vcpu_regs.cs_limit);
	F(acrn_vcpu_regs, vcpu_regs.reserved_32);
	F(acrn_vcpu_regs, vcpu_regs.cs_sel);
	F(acrn_vcpu_regs, vcpu_regs.ss_sel);
	F(acrn_vcpu_regs, vcpu_regs.ds_sel);
	F(acrn_vcpu_regs, vcpu_regs.es_sel);
	F(acrn_vcpu_regs, vcpu_regs.fs_sel);
	F(acrn_vcpu_regs, vcpu_regs.gs_sel);
	F(acrn_vcpu_regs, vcpu_regs.ldt_sel);
	F(acrn_vcpu_regs, vcpu_regs.tr_sel);
	END();
	BEGIN(acrn_vm_memmap);
	F(acrn_vm_memmap, type);
	F(acrn_vm_memmap, attr);
	F(acrn_vm_memmap, user_vm_pa);
	F(acrn_vm_memmap, service_vm_pa);
	F(acrn_vm_memmap, vma_base);
	F(acrn_vm_memmap, len);
	END();
	BEGIN(acrn_ptdev_irq);
	F(acrn_ptdev_irq, type);
	F(acrn_ptdev_irq, virt_bdf);
	F(acrn_ptdev_irq, phys_bdf);
	F(acrn_ptdev_irq, intx);
	F(acrn_ptdev_irq, intx.virt_pin);
	F(acrn_ptdev_irq, intx.phys_pin);
	F(acrn_ptdev_irq, intx.is_pic_pin);
	END();
	BEGIN(acrn_pcidev);
	F(acrn_pcidev, type);
	F(acrn_pcidev, virt_bdf);
	F(acrn_pcidev, phys_bdf);
	F(acrn_pcidev, intr_line);
	F(acrn_pcidev, intr_pin);
	F(acrn_pcidev, bar);
	END();
	BEGIN(acrn_mmiodev);
	F(acrn_mmiodev, name);
	F(acrn_mmiodev, res);
	FN(acrn_mmiodev, "res[].user_vm_pa", res[0].user_vm_pa);
	FN(acrn_mmiodev, "res[].service_vm_pa", res[0].service_vm_pa);
	FN(acrn_mmiodev, "res[].size", res[0].size);
	FN(acrn_mmiodev, "res[].mem_type", res[0].mem_type);
	END();
	BEGIN(acrn_vdev);
	F(acrn_vdev, id);
	F(acrn_vdev, id.value);
	F(acrn_vdev, id.fields);
	F(acrn_vdev, id.fields.vendor);
	F(acrn_vdev, id.fields.device);
	F(acrn_vdev, id.fields.legacy_id);
	F(acrn_vdev, slot);
	F(acrn_vdev, io_addr);
	F(acrn_vdev, io_size);
	F(acrn_vdev, args);
	END();
	BEGIN(acrn_msi_entry);
	F(acrn_msi_entry, msi_addr);
	F(acrn_msi_entry, msi_data);
	END();
	BEGIN(acrn_acpi_generic_address);
	F(acrn_acpi_generic_address, space_id);
	F(acrn_acpi_generic_address, bit_width);
	F(acrn_acpi_generic_address, bit_offset);
	F(acrn_acpi_generic_address, access_size);
	F(acrn_acpi_generic_address, address);
	END();
	BEGIN(acrn_cstate_data);
	F(acrn_cstate_data, cx_reg);
	F(acrn_cstate_data, cx_reg.space_id);
	F(acrn_cstate_data, cx_reg.bit_width);
	F(acrn_cstate_data, cx_reg.bit_offset);
	F(acrn_cstate_data, cx_reg.access_size);
	F(acrn_cstate_data, cx_reg.address);
	F(acrn_cstate_data, type);
	F(acrn_cstate_data, latency);
	F(acrn_cstate_data, power);
	END();
	BEGIN(acrn_pstate_data);
	F(acrn_pstate_data, core_frequency);
	F(acrn_pstate_data, power);
	F(acrn_pstate_data, transition_latency);
	F(acrn_pstate_data, bus_master_latency);
	F(acrn_pstate_data, control);
	F(acrn_pstate_data, status);
	END();
	BEGIN(acrn_ioeventfd);
	F(acrn_ioeventfd, fd);
	F(acrn_ioeventfd, flags);
	F(acrn_ioeventfd, addr);
	F(acrn_ioeventfd, len);
	F(acrn_ioeventfd, reserved);
	F(acrn_ioeventfd, data);
	END();
	BEGIN(acrn_irqfd);
	F(acrn_irqfd, fd);
	F(acrn_irqfd, flags);
	F(acrn_irqfd, msi);
	F(acrn_irqfd, msi.msi_addr);
	F(acrn_irqfd, msi.msi_data);
	END();
	printf("\n  },\n  \"ioctls\": {\n");
	first_entry = 1;
	I(ACRN_IOCTL_CREATE_VM);
	I(ACRN_IOCTL_DESTROY_VM);
	I(ACRN_IOCTL_START_VM);
	I(ACRN_IOCTL_PAUSE_VM);
	I(ACRN_IOCTL_RESET_VM);
	I(ACRN_IOCTL_SET_VCPU_REGS);
	I(ACRN_IOCTL_INJECT_MSI);
	I(ACRN_IOCTL_VM_INTR_MONITOR);
	I(ACRN_IOCTL_SET_IRQLINE);
	I(ACRN_IOCTL_NOTIFY_REQUEST_FINISH);
	I(ACRN_IOCTL_CREATE_IOREQ_CLIENT);
	I(ACRN_IOCTL_ATTACH_IOREQ_CLIENT);
	I(ACRN_IOCTL_DESTROY_IOREQ_CLIENT);
	I(ACRN_IOCTL_CLEAR_VM_IOREQ);
	I(ACRN_IOCTL_SET_MEMSEG);
	I(ACRN_IOCTL_UNSET_MEMSEG);
	I(ACRN_IOCTL_SET_PTDEV_INTR);
	I(ACRN_IOCTL_RESET_PTDEV_INTR);
	I(ACRN_IOCTL_ASSIGN_PCIDEV);
	I(ACRN_IOCTL_DEASSIGN_PCIDEV);
	I(ACRN_IOCTL_ASSIGN_MMIODEV);
	I(ACRN_IOCTL_DEASSIGN_MMIODEV);
	I(ACRN_IOCTL_CREATE_VDEV);
	I(ACRN_IOCTL_DESTROY_VDEV);
	I(ACRN_IOCTL_PM_GET_CPU_STATE);
	I(ACRN_IOCTL_IOEVENTFD);
	I(ACRN_IOCTL_IRQFD);
	printf("\n  },\n  \"constants\": {\n");
	first_entry = 1;
	C(ACRN_IO_REQUEST_MAX);
	C(ACRN_IOREQ_STATE_PENDING);
	C(ACRN_IOREQ_STATE_COMPLETE);
	C(ACRN_IOREQ_STATE_PROCESSING);
	C(ACRN_IOREQ_STATE_FREE);
	C(ACRN_IOREQ_TYPE_PORTIO);
	C(ACRN_IOREQ_TYPE_MMIO);
	C(ACRN_IOREQ_TYPE_PCICFG);
	C(ACRN_IOREQ_DIR_READ);
	C(ACRN_IOREQ_DIR_WRITE);
	C(ACRN_MEM_ACCESS_RIGHT_MASK);
	C(ACRN_MEM_ACCESS_READ);
	C(ACRN_MEM_ACCESS_WRITE);
	C(ACRN_MEM_ACCESS_EXEC);
	C(ACRN_MEM_ACCESS_RWX);
	C(ACRN_MEM_TYPE_MASK);
	C(ACRN_MEM_TYPE_WB);
	C(ACRN_MEM_TYPE_WT);
	C(ACRN_MEM_TYPE_UC);
	C(ACRN_MEM_TYPE_WC);
	C(ACRN_MEM_TYPE_WP);
	C(ACRN_MEMMAP_RAM);
	C(ACRN_MEMMAP_MMIO);
	C(ACRN_PTDEV_IRQ_INTX);
	C(ACRN_PTDEV_IRQ_MSI);
	C(ACRN_PTDEV_IRQ_MSIX);
	C(ACRN_PTDEV_QUIRK_ASSIGN);
	C(ACRN_MMIODEV_RES_NUM);
	C(ACRN_PCI_NUM_BARS);
	C(PMCMD_TYPE_MASK);
	C(ACRN_PMCMD_GET_PX_CNT);
	C(ACRN_PMCMD_GET_PX_DATA);
	C(ACRN_PMCMD_GET_CX_CNT);
	C(ACRN_PMCMD_GET_CX_DATA);
	C(ACRN_IOEVENTFD_FLAG_PIO);
	C(ACRN_IOEVENTFD_FLAG_DATAMATCH);
	C(ACRN_IOEVENTFD_FLAG_DEASSIGN);
	C(ACRN_IRQFD_FLAG_DEASSIGN);
	C(ACRN_IOCTL_TYPE);
	printf("\n  }\n}\n");
	return ferror(stdout) ? 1 : 0;
}
