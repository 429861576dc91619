//! Layout tables of `<linux/acrn.h>`: the single source for `acrn-hsm abi --json` and for the
//! gcc conformance test (`test/conformance/abi.c`, compared by `tests/conformance.rs`).
//!
//! Every value in these tables is computed by the compiler (`size_of`, `align_of`, `offset_of!`)
//! from the types of [`crate::bindings`], so the tables cannot drift from the Rust types; the
//! conformance test checks them, both ways, against what gcc computes from the installed
//! header, and checks against the header text that no struct, member, constant or ioctl is
//! missing.
//!
//! # Field naming rules
//!
//! [`StructLayout::fields`] lists every member of a C struct or union at every nesting level, in
//! declaration order (a member before its own members), as `(path, byte offset from the start of
//! the outermost struct)`:
//!
//! * A path is the C member names joined with `.`, as in C (`"reqs.pio_request.value"`).
//! * A member of a named struct type is followed by that struct's members (`acrn_regs` has
//!   `"gdt"`, `"gdt.limit"`, `"gdt.base"`, `"gdt.reserved"`).
//! * Members of an *anonymous* struct or union (one without a member name, e.g. the union of
//!   `acrn_vm_memmap`) are listed by their own names, as C accesses them
//!   (`"service_vm_pa"`, `"vma_base"`, both at 16); the anonymous member itself has no entry.
//! * An array is listed once, by its name, at the offset of its first element; its elements are
//!   not listed (`"reserved0"`, `"bar"`). If the element type is a struct, the members of
//!   element 0 follow as `name[].member`, the notation of the header's kernel-doc comments
//!   (`"res[].user_vm_pa"` of `acrn_mmiodev`, `"req_slot[].processed"` of
//!   `acrn_io_request_buffer`).
//! * `acrn_vm_creation.uuid` is listed as one opaque 16-byte member, without sub-members: it is a
//!   `guid_t` (a struct holding `__u8 b[16]`) up to Linux 6.1 and `__u8 uuid[16]` afterwards,
//!   with the same layout.
//!
//! Anonymous nested types (`acrn_io_request.reqs`, `acrn_mmiodev.res[]`, ...) have no entry of
//! their own in [`STRUCTS`]: C gives them no name. Their Rust mirrors are checked at compile time
//! in [`crate::bindings`].
//!
//! # Constants
//!
//! [`CONSTANTS`] holds every object-like macro of the header except the `ACRN_IOCTL_*` request
//! numbers (which are in [`IOCTLS`]; `ACRN_IOCTL_TYPE` is a constant), plus the enumerators of
//! `enum acrn_pm_cmd_type`. Values are `u64`: every constant of the header is a non-negative
//! value that fits in 32 bits, so none is lost (a negative or wider one would need a different
//! representation; there is none).

use core::fmt;
use core::mem::{align_of, offset_of, size_of};

use crate::bindings::*;
use crate::ioctl::*;

/// Size, alignment and member offsets of one C struct or union.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StructLayout {
    /// The C tag, e.g. `"acrn_io_request"`.
    pub name: &'static str,
    /// `sizeof`.
    pub size: usize,
    /// `_Alignof`.
    pub align: usize,
    /// `(member path, offsetof)` for every member; see the module documentation for the rules.
    pub fields: &'static [(&'static str, usize)],
}

impl StructLayout {
    /// The offset of the member with this path, if any.
    pub fn field(&self, path: &str) -> Option<usize> {
        self.fields
            .iter()
            .find(|(p, _)| *p == path)
            .map(|(_, off)| *off)
    }
}

/// The layout of the struct with this C tag, if any.
pub fn find_struct(name: &str) -> Option<&'static StructLayout> {
    STRUCTS.iter().find(|s| s.name == name)
}

/// The value of the ioctl with this C name, if any.
pub fn find_ioctl(name: &str) -> Option<u32> {
    IOCTLS.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

/// The value of the constant with this C name, if any.
pub fn find_constant(name: &str) -> Option<u64> {
    CONSTANTS.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

/// Every struct of `<linux/acrn.h>`, in header order.
pub static STRUCTS: &[StructLayout] = &[
    StructLayout {
        name: "acrn_mmio_request",
        size: size_of::<acrn_mmio_request>(),
        align: align_of::<acrn_mmio_request>(),
        fields: &[
            ("direction", offset_of!(acrn_mmio_request, direction)),
            ("reserved", offset_of!(acrn_mmio_request, reserved)),
            ("address", offset_of!(acrn_mmio_request, address)),
            ("size", offset_of!(acrn_mmio_request, size)),
            ("value", offset_of!(acrn_mmio_request, value)),
        ],
    },
    StructLayout {
        name: "acrn_pio_request",
        size: size_of::<acrn_pio_request>(),
        align: align_of::<acrn_pio_request>(),
        fields: &[
            ("direction", offset_of!(acrn_pio_request, direction)),
            ("reserved", offset_of!(acrn_pio_request, reserved)),
            ("address", offset_of!(acrn_pio_request, address)),
            ("size", offset_of!(acrn_pio_request, size)),
            ("value", offset_of!(acrn_pio_request, value)),
        ],
    },
    StructLayout {
        name: "acrn_pci_request",
        size: size_of::<acrn_pci_request>(),
        align: align_of::<acrn_pci_request>(),
        fields: &[
            ("direction", offset_of!(acrn_pci_request, direction)),
            ("reserved", offset_of!(acrn_pci_request, reserved)),
            ("size", offset_of!(acrn_pci_request, size)),
            ("value", offset_of!(acrn_pci_request, value)),
            ("bus", offset_of!(acrn_pci_request, bus)),
            ("dev", offset_of!(acrn_pci_request, dev)),
            ("func", offset_of!(acrn_pci_request, func)),
            ("reg", offset_of!(acrn_pci_request, reg)),
        ],
    },
    StructLayout {
        name: "acrn_io_request",
        size: size_of::<acrn_io_request>(),
        align: align_of::<acrn_io_request>(),
        fields: &[
            ("type", offset_of!(acrn_io_request, type_)),
            (
                "completion_polling",
                offset_of!(acrn_io_request, completion_polling),
            ),
            ("reserved0", offset_of!(acrn_io_request, reserved0)),
            ("reqs", offset_of!(acrn_io_request, reqs)),
            (
                "reqs.pio_request",
                offset_of!(acrn_io_request, reqs.pio_request),
            ),
            (
                "reqs.pio_request.direction",
                offset_of!(acrn_io_request, reqs.pio_request.direction),
            ),
            (
                "reqs.pio_request.reserved",
                offset_of!(acrn_io_request, reqs.pio_request.reserved),
            ),
            (
                "reqs.pio_request.address",
                offset_of!(acrn_io_request, reqs.pio_request.address),
            ),
            (
                "reqs.pio_request.size",
                offset_of!(acrn_io_request, reqs.pio_request.size),
            ),
            (
                "reqs.pio_request.value",
                offset_of!(acrn_io_request, reqs.pio_request.value),
            ),
            (
                "reqs.pci_request",
                offset_of!(acrn_io_request, reqs.pci_request),
            ),
            (
                "reqs.pci_request.direction",
                offset_of!(acrn_io_request, reqs.pci_request.direction),
            ),
            (
                "reqs.pci_request.reserved",
                offset_of!(acrn_io_request, reqs.pci_request.reserved),
            ),
            (
                "reqs.pci_request.size",
                offset_of!(acrn_io_request, reqs.pci_request.size),
            ),
            (
                "reqs.pci_request.value",
                offset_of!(acrn_io_request, reqs.pci_request.value),
            ),
            (
                "reqs.pci_request.bus",
                offset_of!(acrn_io_request, reqs.pci_request.bus),
            ),
            (
                "reqs.pci_request.dev",
                offset_of!(acrn_io_request, reqs.pci_request.dev),
            ),
            (
                "reqs.pci_request.func",
                offset_of!(acrn_io_request, reqs.pci_request.func),
            ),
            (
                "reqs.pci_request.reg",
                offset_of!(acrn_io_request, reqs.pci_request.reg),
            ),
            (
                "reqs.mmio_request",
                offset_of!(acrn_io_request, reqs.mmio_request),
            ),
            (
                "reqs.mmio_request.direction",
                offset_of!(acrn_io_request, reqs.mmio_request.direction),
            ),
            (
                "reqs.mmio_request.reserved",
                offset_of!(acrn_io_request, reqs.mmio_request.reserved),
            ),
            (
                "reqs.mmio_request.address",
                offset_of!(acrn_io_request, reqs.mmio_request.address),
            ),
            (
                "reqs.mmio_request.size",
                offset_of!(acrn_io_request, reqs.mmio_request.size),
            ),
            (
                "reqs.mmio_request.value",
                offset_of!(acrn_io_request, reqs.mmio_request.value),
            ),
            ("reqs.data", offset_of!(acrn_io_request, reqs.data)),
            ("reserved1", offset_of!(acrn_io_request, reserved1)),
            (
                "kernel_handled",
                offset_of!(acrn_io_request, kernel_handled),
            ),
            ("processed", offset_of!(acrn_io_request, processed)),
        ],
    },
    StructLayout {
        name: "acrn_io_request_buffer",
        size: size_of::<acrn_io_request_buffer>(),
        align: align_of::<acrn_io_request_buffer>(),
        fields: &[
            ("req_slot", offset_of!(acrn_io_request_buffer, req_slot)),
            (
                "req_slot[].type",
                offset_of!(acrn_io_request_buffer, req_slot) + offset_of!(acrn_io_request, type_),
            ),
            (
                "req_slot[].completion_polling",
                offset_of!(acrn_io_request_buffer, req_slot)
                    + offset_of!(acrn_io_request, completion_polling),
            ),
            (
                "req_slot[].reserved0",
                offset_of!(acrn_io_request_buffer, req_slot)
                    + offset_of!(acrn_io_request, reserved0),
            ),
            (
                "req_slot[].reqs",
                offset_of!(acrn_io_request_buffer, req_slot) + offset_of!(acrn_io_request, reqs),
            ),
            (
                "req_slot[].reqs.pio_request",
                offset_of!(acrn_io_request_buffer, req_slot)
                    + offset_of!(acrn_io_request, reqs.pio_request),
            ),
            (
                "req_slot[].reqs.pio_request.direction",
                offset_of!(acrn_io_request_buffer, req_slot)
                    + offset_of!(acrn_io_request, reqs.pio_request.direction),
            ),
            (
                "req_slot[].reqs.pio_request.reserved",
                offset_of!(acrn_io_request_buffer, req_slot)
                    + offset_of!(acrn_io_request, reqs.pio_request.reserved),
            ),
            (
                "req_slot[].reqs.pio_request.address",
                offset_of!(acrn_io_request_buffer, req_slot)
                    + offset_of!(acrn_io_request, reqs.pio_request.address),
            ),
            (
                "req_slot[].reqs.pio_request.size",
                offset_of!(acrn_io_request_buffer, req_slot)
                    + offset_of!(acrn_io_request, reqs.pio_request.size),
            ),
            (
                "req_slot[].reqs.pio_request.value",
                offset_of!(acrn_io_request_buffer, req_slot)
                    + offset_of!(acrn_io_request, reqs.pio_request.value),
            ),
            (
                "req_slot[].reqs.pci_request",
                offset_of!(acrn_io_request_buffer, req_slot)
                    + offset_of!(acrn_io_request, reqs.pci_request),
            ),
            (
                "req_slot[].reqs.pci_request.direction",
                offset_of!(acrn_io_request_buffer, req_slot)
                    + offset_of!(acrn_io_request, reqs.pci_request.direction),
            ),
            (
                "req_slot[].reqs.pci_request.reserved",
                offset_of!(acrn_io_request_buffer, req_slot)
                    + offset_of!(acrn_io_request, reqs.pci_request.reserved),
            ),
            (
                "req_slot[].reqs.pci_request.size",
                offset_of!(acrn_io_request_buffer, req_slot)
                    + offset_of!(acrn_io_request, reqs.pci_request.size),
            ),
            (
                "req_slot[].reqs.pci_request.value",
                offset_of!(acrn_io_request_buffer, req_slot)
                    + offset_of!(acrn_io_request, reqs.pci_request.value),
            ),
            (
                "req_slot[].reqs.pci_request.bus",
                offset_of!(acrn_io_request_buffer, req_slot)
                    + offset_of!(acrn_io_request, reqs.pci_request.bus),
            ),
            (
                "req_slot[].reqs.pci_request.dev",
                offset_of!(acrn_io_request_buffer, req_slot)
                    + offset_of!(acrn_io_request, reqs.pci_request.dev),
            ),
            (
                "req_slot[].reqs.pci_request.func",
                offset_of!(acrn_io_request_buffer, req_slot)
                    + offset_of!(acrn_io_request, reqs.pci_request.func),
            ),
            (
                "req_slot[].reqs.pci_request.reg",
                offset_of!(acrn_io_request_buffer, req_slot)
                    + offset_of!(acrn_io_request, reqs.pci_request.reg),
            ),
            (
                "req_slot[].reqs.mmio_request",
                offset_of!(acrn_io_request_buffer, req_slot)
                    + offset_of!(acrn_io_request, reqs.mmio_request),
            ),
            (
                "req_slot[].reqs.mmio_request.direction",
                offset_of!(acrn_io_request_buffer, req_slot)
                    + offset_of!(acrn_io_request, reqs.mmio_request.direction),
            ),
            (
                "req_slot[].reqs.mmio_request.reserved",
                offset_of!(acrn_io_request_buffer, req_slot)
                    + offset_of!(acrn_io_request, reqs.mmio_request.reserved),
            ),
            (
                "req_slot[].reqs.mmio_request.address",
                offset_of!(acrn_io_request_buffer, req_slot)
                    + offset_of!(acrn_io_request, reqs.mmio_request.address),
            ),
            (
                "req_slot[].reqs.mmio_request.size",
                offset_of!(acrn_io_request_buffer, req_slot)
                    + offset_of!(acrn_io_request, reqs.mmio_request.size),
            ),
            (
                "req_slot[].reqs.mmio_request.value",
                offset_of!(acrn_io_request_buffer, req_slot)
                    + offset_of!(acrn_io_request, reqs.mmio_request.value),
            ),
            (
                "req_slot[].reqs.data",
                offset_of!(acrn_io_request_buffer, req_slot)
                    + offset_of!(acrn_io_request, reqs.data),
            ),
            (
                "req_slot[].reserved1",
                offset_of!(acrn_io_request_buffer, req_slot)
                    + offset_of!(acrn_io_request, reserved1),
            ),
            (
                "req_slot[].kernel_handled",
                offset_of!(acrn_io_request_buffer, req_slot)
                    + offset_of!(acrn_io_request, kernel_handled),
            ),
            (
                "req_slot[].processed",
                offset_of!(acrn_io_request_buffer, req_slot)
                    + offset_of!(acrn_io_request, processed),
            ),
            ("reserved", offset_of!(acrn_io_request_buffer, reserved)),
        ],
    },
    StructLayout {
        name: "acrn_ioreq_notify",
        size: size_of::<acrn_ioreq_notify>(),
        align: align_of::<acrn_ioreq_notify>(),
        fields: &[
            ("vmid", offset_of!(acrn_ioreq_notify, vmid)),
            ("reserved", offset_of!(acrn_ioreq_notify, reserved)),
            ("vcpu", offset_of!(acrn_ioreq_notify, vcpu)),
        ],
    },
    StructLayout {
        name: "acrn_vm_creation",
        size: size_of::<acrn_vm_creation>(),
        align: align_of::<acrn_vm_creation>(),
        fields: &[
            ("vmid", offset_of!(acrn_vm_creation, vmid)),
            ("reserved0", offset_of!(acrn_vm_creation, reserved0)),
            ("vcpu_num", offset_of!(acrn_vm_creation, vcpu_num)),
            ("reserved1", offset_of!(acrn_vm_creation, reserved1)),
            ("uuid", offset_of!(acrn_vm_creation, uuid)),
            ("vm_flag", offset_of!(acrn_vm_creation, vm_flag)),
            ("ioreq_buf", offset_of!(acrn_vm_creation, ioreq_buf)),
            ("cpu_affinity", offset_of!(acrn_vm_creation, cpu_affinity)),
        ],
    },
    StructLayout {
        name: "acrn_gp_regs",
        size: size_of::<acrn_gp_regs>(),
        align: align_of::<acrn_gp_regs>(),
        fields: &[
            ("rax", offset_of!(acrn_gp_regs, rax)),
            ("rcx", offset_of!(acrn_gp_regs, rcx)),
            ("rdx", offset_of!(acrn_gp_regs, rdx)),
            ("rbx", offset_of!(acrn_gp_regs, rbx)),
            ("rsp", offset_of!(acrn_gp_regs, rsp)),
            ("rbp", offset_of!(acrn_gp_regs, rbp)),
            ("rsi", offset_of!(acrn_gp_regs, rsi)),
            ("rdi", offset_of!(acrn_gp_regs, rdi)),
            ("r8", offset_of!(acrn_gp_regs, r8)),
            ("r9", offset_of!(acrn_gp_regs, r9)),
            ("r10", offset_of!(acrn_gp_regs, r10)),
            ("r11", offset_of!(acrn_gp_regs, r11)),
            ("r12", offset_of!(acrn_gp_regs, r12)),
            ("r13", offset_of!(acrn_gp_regs, r13)),
            ("r14", offset_of!(acrn_gp_regs, r14)),
            ("r15", offset_of!(acrn_gp_regs, r15)),
        ],
    },
    StructLayout {
        name: "acrn_descriptor_ptr",
        size: size_of::<acrn_descriptor_ptr>(),
        align: align_of::<acrn_descriptor_ptr>(),
        fields: &[
            ("limit", offset_of!(acrn_descriptor_ptr, limit)),
            ("base", offset_of!(acrn_descriptor_ptr, base)),
            ("reserved", offset_of!(acrn_descriptor_ptr, reserved)),
        ],
    },
    StructLayout {
        name: "acrn_regs",
        size: size_of::<acrn_regs>(),
        align: align_of::<acrn_regs>(),
        fields: &[
            ("gprs", offset_of!(acrn_regs, gprs)),
            ("gprs.rax", offset_of!(acrn_regs, gprs.rax)),
            ("gprs.rcx", offset_of!(acrn_regs, gprs.rcx)),
            ("gprs.rdx", offset_of!(acrn_regs, gprs.rdx)),
            ("gprs.rbx", offset_of!(acrn_regs, gprs.rbx)),
            ("gprs.rsp", offset_of!(acrn_regs, gprs.rsp)),
            ("gprs.rbp", offset_of!(acrn_regs, gprs.rbp)),
            ("gprs.rsi", offset_of!(acrn_regs, gprs.rsi)),
            ("gprs.rdi", offset_of!(acrn_regs, gprs.rdi)),
            ("gprs.r8", offset_of!(acrn_regs, gprs.r8)),
            ("gprs.r9", offset_of!(acrn_regs, gprs.r9)),
            ("gprs.r10", offset_of!(acrn_regs, gprs.r10)),
            ("gprs.r11", offset_of!(acrn_regs, gprs.r11)),
            ("gprs.r12", offset_of!(acrn_regs, gprs.r12)),
            ("gprs.r13", offset_of!(acrn_regs, gprs.r13)),
            ("gprs.r14", offset_of!(acrn_regs, gprs.r14)),
            ("gprs.r15", offset_of!(acrn_regs, gprs.r15)),
            ("gdt", offset_of!(acrn_regs, gdt)),
            ("gdt.limit", offset_of!(acrn_regs, gdt.limit)),
            ("gdt.base", offset_of!(acrn_regs, gdt.base)),
            ("gdt.reserved", offset_of!(acrn_regs, gdt.reserved)),
            ("idt", offset_of!(acrn_regs, idt)),
            ("idt.limit", offset_of!(acrn_regs, idt.limit)),
            ("idt.base", offset_of!(acrn_regs, idt.base)),
            ("idt.reserved", offset_of!(acrn_regs, idt.reserved)),
            ("rip", offset_of!(acrn_regs, rip)),
            ("cs_base", offset_of!(acrn_regs, cs_base)),
            ("cr0", offset_of!(acrn_regs, cr0)),
            ("cr4", offset_of!(acrn_regs, cr4)),
            ("cr3", offset_of!(acrn_regs, cr3)),
            ("ia32_efer", offset_of!(acrn_regs, ia32_efer)),
            ("rflags", offset_of!(acrn_regs, rflags)),
            ("reserved_64", offset_of!(acrn_regs, reserved_64)),
            ("cs_ar", offset_of!(acrn_regs, cs_ar)),
            ("cs_limit", offset_of!(acrn_regs, cs_limit)),
            ("reserved_32", offset_of!(acrn_regs, reserved_32)),
            ("cs_sel", offset_of!(acrn_regs, cs_sel)),
            ("ss_sel", offset_of!(acrn_regs, ss_sel)),
            ("ds_sel", offset_of!(acrn_regs, ds_sel)),
            ("es_sel", offset_of!(acrn_regs, es_sel)),
            ("fs_sel", offset_of!(acrn_regs, fs_sel)),
            ("gs_sel", offset_of!(acrn_regs, gs_sel)),
            ("ldt_sel", offset_of!(acrn_regs, ldt_sel)),
            ("tr_sel", offset_of!(acrn_regs, tr_sel)),
        ],
    },
    StructLayout {
        name: "acrn_vcpu_regs",
        size: size_of::<acrn_vcpu_regs>(),
        align: align_of::<acrn_vcpu_regs>(),
        fields: &[
            ("vcpu_id", offset_of!(acrn_vcpu_regs, vcpu_id)),
            ("reserved", offset_of!(acrn_vcpu_regs, reserved)),
            ("vcpu_regs", offset_of!(acrn_vcpu_regs, vcpu_regs)),
            ("vcpu_regs.gprs", offset_of!(acrn_vcpu_regs, vcpu_regs.gprs)),
            (
                "vcpu_regs.gprs.rax",
                offset_of!(acrn_vcpu_regs, vcpu_regs.gprs.rax),
            ),
            (
                "vcpu_regs.gprs.rcx",
                offset_of!(acrn_vcpu_regs, vcpu_regs.gprs.rcx),
            ),
            (
                "vcpu_regs.gprs.rdx",
                offset_of!(acrn_vcpu_regs, vcpu_regs.gprs.rdx),
            ),
            (
                "vcpu_regs.gprs.rbx",
                offset_of!(acrn_vcpu_regs, vcpu_regs.gprs.rbx),
            ),
            (
                "vcpu_regs.gprs.rsp",
                offset_of!(acrn_vcpu_regs, vcpu_regs.gprs.rsp),
            ),
            (
                "vcpu_regs.gprs.rbp",
                offset_of!(acrn_vcpu_regs, vcpu_regs.gprs.rbp),
            ),
            (
                "vcpu_regs.gprs.rsi",
                offset_of!(acrn_vcpu_regs, vcpu_regs.gprs.rsi),
            ),
            (
                "vcpu_regs.gprs.rdi",
                offset_of!(acrn_vcpu_regs, vcpu_regs.gprs.rdi),
            ),
            (
                "vcpu_regs.gprs.r8",
                offset_of!(acrn_vcpu_regs, vcpu_regs.gprs.r8),
            ),
            (
                "vcpu_regs.gprs.r9",
                offset_of!(acrn_vcpu_regs, vcpu_regs.gprs.r9),
            ),
            (
                "vcpu_regs.gprs.r10",
                offset_of!(acrn_vcpu_regs, vcpu_regs.gprs.r10),
            ),
            (
                "vcpu_regs.gprs.r11",
                offset_of!(acrn_vcpu_regs, vcpu_regs.gprs.r11),
            ),
            (
                "vcpu_regs.gprs.r12",
                offset_of!(acrn_vcpu_regs, vcpu_regs.gprs.r12),
            ),
            (
                "vcpu_regs.gprs.r13",
                offset_of!(acrn_vcpu_regs, vcpu_regs.gprs.r13),
            ),
            (
                "vcpu_regs.gprs.r14",
                offset_of!(acrn_vcpu_regs, vcpu_regs.gprs.r14),
            ),
            (
                "vcpu_regs.gprs.r15",
                offset_of!(acrn_vcpu_regs, vcpu_regs.gprs.r15),
            ),
            ("vcpu_regs.gdt", offset_of!(acrn_vcpu_regs, vcpu_regs.gdt)),
            (
                "vcpu_regs.gdt.limit",
                offset_of!(acrn_vcpu_regs, vcpu_regs.gdt.limit),
            ),
            (
                "vcpu_regs.gdt.base",
                offset_of!(acrn_vcpu_regs, vcpu_regs.gdt.base),
            ),
            (
                "vcpu_regs.gdt.reserved",
                offset_of!(acrn_vcpu_regs, vcpu_regs.gdt.reserved),
            ),
            ("vcpu_regs.idt", offset_of!(acrn_vcpu_regs, vcpu_regs.idt)),
            (
                "vcpu_regs.idt.limit",
                offset_of!(acrn_vcpu_regs, vcpu_regs.idt.limit),
            ),
            (
                "vcpu_regs.idt.base",
                offset_of!(acrn_vcpu_regs, vcpu_regs.idt.base),
            ),
            (
                "vcpu_regs.idt.reserved",
                offset_of!(acrn_vcpu_regs, vcpu_regs.idt.reserved),
            ),
            ("vcpu_regs.rip", offset_of!(acrn_vcpu_regs, vcpu_regs.rip)),
            (
                "vcpu_regs.cs_base",
                offset_of!(acrn_vcpu_regs, vcpu_regs.cs_base),
            ),
            ("vcpu_regs.cr0", offset_of!(acrn_vcpu_regs, vcpu_regs.cr0)),
            ("vcpu_regs.cr4", offset_of!(acrn_vcpu_regs, vcpu_regs.cr4)),
            ("vcpu_regs.cr3", offset_of!(acrn_vcpu_regs, vcpu_regs.cr3)),
            (
                "vcpu_regs.ia32_efer",
                offset_of!(acrn_vcpu_regs, vcpu_regs.ia32_efer),
            ),
            (
                "vcpu_regs.rflags",
                offset_of!(acrn_vcpu_regs, vcpu_regs.rflags),
            ),
            (
                "vcpu_regs.reserved_64",
                offset_of!(acrn_vcpu_regs, vcpu_regs.reserved_64),
            ),
            (
                "vcpu_regs.cs_ar",
                offset_of!(acrn_vcpu_regs, vcpu_regs.cs_ar),
            ),
            (
                "vcpu_regs.cs_limit",
                offset_of!(acrn_vcpu_regs, vcpu_regs.cs_limit),
            ),
            (
                "vcpu_regs.reserved_32",
                offset_of!(acrn_vcpu_regs, vcpu_regs.reserved_32),
            ),
            (
                "vcpu_regs.cs_sel",
                offset_of!(acrn_vcpu_regs, vcpu_regs.cs_sel),
            ),
            (
                "vcpu_regs.ss_sel",
                offset_of!(acrn_vcpu_regs, vcpu_regs.ss_sel),
            ),
            (
                "vcpu_regs.ds_sel",
                offset_of!(acrn_vcpu_regs, vcpu_regs.ds_sel),
            ),
            (
                "vcpu_regs.es_sel",
                offset_of!(acrn_vcpu_regs, vcpu_regs.es_sel),
            ),
            (
                "vcpu_regs.fs_sel",
                offset_of!(acrn_vcpu_regs, vcpu_regs.fs_sel),
            ),
            (
                "vcpu_regs.gs_sel",
                offset_of!(acrn_vcpu_regs, vcpu_regs.gs_sel),
            ),
            (
                "vcpu_regs.ldt_sel",
                offset_of!(acrn_vcpu_regs, vcpu_regs.ldt_sel),
            ),
            (
                "vcpu_regs.tr_sel",
                offset_of!(acrn_vcpu_regs, vcpu_regs.tr_sel),
            ),
        ],
    },
    StructLayout {
        name: "acrn_vm_memmap",
        size: size_of::<acrn_vm_memmap>(),
        align: align_of::<acrn_vm_memmap>(),
        fields: &[
            ("type", offset_of!(acrn_vm_memmap, type_)),
            ("attr", offset_of!(acrn_vm_memmap, attr)),
            ("user_vm_pa", offset_of!(acrn_vm_memmap, user_vm_pa)),
            (
                "service_vm_pa",
                offset_of!(acrn_vm_memmap, addr.service_vm_pa),
            ),
            ("vma_base", offset_of!(acrn_vm_memmap, addr.vma_base)),
            ("len", offset_of!(acrn_vm_memmap, len)),
        ],
    },
    StructLayout {
        name: "acrn_ptdev_irq",
        size: size_of::<acrn_ptdev_irq>(),
        align: align_of::<acrn_ptdev_irq>(),
        fields: &[
            ("type", offset_of!(acrn_ptdev_irq, type_)),
            ("virt_bdf", offset_of!(acrn_ptdev_irq, virt_bdf)),
            ("phys_bdf", offset_of!(acrn_ptdev_irq, phys_bdf)),
            ("intx", offset_of!(acrn_ptdev_irq, intx)),
            ("intx.virt_pin", offset_of!(acrn_ptdev_irq, intx.virt_pin)),
            ("intx.phys_pin", offset_of!(acrn_ptdev_irq, intx.phys_pin)),
            (
                "intx.is_pic_pin",
                offset_of!(acrn_ptdev_irq, intx.is_pic_pin),
            ),
        ],
    },
    StructLayout {
        name: "acrn_pcidev",
        size: size_of::<acrn_pcidev>(),
        align: align_of::<acrn_pcidev>(),
        fields: &[
            ("type", offset_of!(acrn_pcidev, type_)),
            ("virt_bdf", offset_of!(acrn_pcidev, virt_bdf)),
            ("phys_bdf", offset_of!(acrn_pcidev, phys_bdf)),
            ("intr_line", offset_of!(acrn_pcidev, intr_line)),
            ("intr_pin", offset_of!(acrn_pcidev, intr_pin)),
            ("bar", offset_of!(acrn_pcidev, bar)),
        ],
    },
    StructLayout {
        name: "acrn_mmiodev",
        size: size_of::<acrn_mmiodev>(),
        align: align_of::<acrn_mmiodev>(),
        fields: &[
            ("name", offset_of!(acrn_mmiodev, name)),
            ("res", offset_of!(acrn_mmiodev, res)),
            (
                "res[].user_vm_pa",
                offset_of!(acrn_mmiodev, res) + offset_of!(acrn_mmiodev_res, user_vm_pa),
            ),
            (
                "res[].service_vm_pa",
                offset_of!(acrn_mmiodev, res) + offset_of!(acrn_mmiodev_res, service_vm_pa),
            ),
            (
                "res[].size",
                offset_of!(acrn_mmiodev, res) + offset_of!(acrn_mmiodev_res, size),
            ),
            (
                "res[].mem_type",
                offset_of!(acrn_mmiodev, res) + offset_of!(acrn_mmiodev_res, mem_type),
            ),
        ],
    },
    StructLayout {
        name: "acrn_vdev",
        size: size_of::<acrn_vdev>(),
        align: align_of::<acrn_vdev>(),
        fields: &[
            ("id", offset_of!(acrn_vdev, id)),
            ("id.value", offset_of!(acrn_vdev, id.value)),
            ("id.fields", offset_of!(acrn_vdev, id.fields)),
            ("id.fields.vendor", offset_of!(acrn_vdev, id.fields.vendor)),
            ("id.fields.device", offset_of!(acrn_vdev, id.fields.device)),
            (
                "id.fields.legacy_id",
                offset_of!(acrn_vdev, id.fields.legacy_id),
            ),
            ("slot", offset_of!(acrn_vdev, slot)),
            ("io_addr", offset_of!(acrn_vdev, io_addr)),
            ("io_size", offset_of!(acrn_vdev, io_size)),
            ("args", offset_of!(acrn_vdev, args)),
        ],
    },
    StructLayout {
        name: "acrn_msi_entry",
        size: size_of::<acrn_msi_entry>(),
        align: align_of::<acrn_msi_entry>(),
        fields: &[
            ("msi_addr", offset_of!(acrn_msi_entry, msi_addr)),
            ("msi_data", offset_of!(acrn_msi_entry, msi_data)),
        ],
    },
    StructLayout {
        name: "acrn_acpi_generic_address",
        size: size_of::<acrn_acpi_generic_address>(),
        align: align_of::<acrn_acpi_generic_address>(),
        fields: &[
            ("space_id", offset_of!(acrn_acpi_generic_address, space_id)),
            (
                "bit_width",
                offset_of!(acrn_acpi_generic_address, bit_width),
            ),
            (
                "bit_offset",
                offset_of!(acrn_acpi_generic_address, bit_offset),
            ),
            (
                "access_size",
                offset_of!(acrn_acpi_generic_address, access_size),
            ),
            ("address", offset_of!(acrn_acpi_generic_address, address)),
        ],
    },
    StructLayout {
        name: "acrn_cstate_data",
        size: size_of::<acrn_cstate_data>(),
        align: align_of::<acrn_cstate_data>(),
        fields: &[
            ("cx_reg", offset_of!(acrn_cstate_data, cx_reg)),
            (
                "cx_reg.space_id",
                offset_of!(acrn_cstate_data, cx_reg.space_id),
            ),
            (
                "cx_reg.bit_width",
                offset_of!(acrn_cstate_data, cx_reg.bit_width),
            ),
            (
                "cx_reg.bit_offset",
                offset_of!(acrn_cstate_data, cx_reg.bit_offset),
            ),
            (
                "cx_reg.access_size",
                offset_of!(acrn_cstate_data, cx_reg.access_size),
            ),
            (
                "cx_reg.address",
                offset_of!(acrn_cstate_data, cx_reg.address),
            ),
            ("type", offset_of!(acrn_cstate_data, type_)),
            ("latency", offset_of!(acrn_cstate_data, latency)),
            ("power", offset_of!(acrn_cstate_data, power)),
        ],
    },
    StructLayout {
        name: "acrn_pstate_data",
        size: size_of::<acrn_pstate_data>(),
        align: align_of::<acrn_pstate_data>(),
        fields: &[
            (
                "core_frequency",
                offset_of!(acrn_pstate_data, core_frequency),
            ),
            ("power", offset_of!(acrn_pstate_data, power)),
            (
                "transition_latency",
                offset_of!(acrn_pstate_data, transition_latency),
            ),
            (
                "bus_master_latency",
                offset_of!(acrn_pstate_data, bus_master_latency),
            ),
            ("control", offset_of!(acrn_pstate_data, control)),
            ("status", offset_of!(acrn_pstate_data, status)),
        ],
    },
    StructLayout {
        name: "acrn_ioeventfd",
        size: size_of::<acrn_ioeventfd>(),
        align: align_of::<acrn_ioeventfd>(),
        fields: &[
            ("fd", offset_of!(acrn_ioeventfd, fd)),
            ("flags", offset_of!(acrn_ioeventfd, flags)),
            ("addr", offset_of!(acrn_ioeventfd, addr)),
            ("len", offset_of!(acrn_ioeventfd, len)),
            ("reserved", offset_of!(acrn_ioeventfd, reserved)),
            ("data", offset_of!(acrn_ioeventfd, data)),
        ],
    },
    StructLayout {
        name: "acrn_irqfd",
        size: size_of::<acrn_irqfd>(),
        align: align_of::<acrn_irqfd>(),
        fields: &[
            ("fd", offset_of!(acrn_irqfd, fd)),
            ("flags", offset_of!(acrn_irqfd, flags)),
            ("msi", offset_of!(acrn_irqfd, msi)),
            ("msi.msi_addr", offset_of!(acrn_irqfd, msi.msi_addr)),
            ("msi.msi_data", offset_of!(acrn_irqfd, msi.msi_data)),
        ],
    },
];

/// Every ioctl request of `<linux/acrn.h>`, in header order.
pub static IOCTLS: &[(&str, u32)] = &[
    ("ACRN_IOCTL_CREATE_VM", ACRN_IOCTL_CREATE_VM),
    ("ACRN_IOCTL_DESTROY_VM", ACRN_IOCTL_DESTROY_VM),
    ("ACRN_IOCTL_START_VM", ACRN_IOCTL_START_VM),
    ("ACRN_IOCTL_PAUSE_VM", ACRN_IOCTL_PAUSE_VM),
    ("ACRN_IOCTL_RESET_VM", ACRN_IOCTL_RESET_VM),
    ("ACRN_IOCTL_SET_VCPU_REGS", ACRN_IOCTL_SET_VCPU_REGS),
    ("ACRN_IOCTL_INJECT_MSI", ACRN_IOCTL_INJECT_MSI),
    ("ACRN_IOCTL_VM_INTR_MONITOR", ACRN_IOCTL_VM_INTR_MONITOR),
    ("ACRN_IOCTL_SET_IRQLINE", ACRN_IOCTL_SET_IRQLINE),
    (
        "ACRN_IOCTL_NOTIFY_REQUEST_FINISH",
        ACRN_IOCTL_NOTIFY_REQUEST_FINISH,
    ),
    (
        "ACRN_IOCTL_CREATE_IOREQ_CLIENT",
        ACRN_IOCTL_CREATE_IOREQ_CLIENT,
    ),
    (
        "ACRN_IOCTL_ATTACH_IOREQ_CLIENT",
        ACRN_IOCTL_ATTACH_IOREQ_CLIENT,
    ),
    (
        "ACRN_IOCTL_DESTROY_IOREQ_CLIENT",
        ACRN_IOCTL_DESTROY_IOREQ_CLIENT,
    ),
    ("ACRN_IOCTL_CLEAR_VM_IOREQ", ACRN_IOCTL_CLEAR_VM_IOREQ),
    ("ACRN_IOCTL_SET_MEMSEG", ACRN_IOCTL_SET_MEMSEG),
    ("ACRN_IOCTL_UNSET_MEMSEG", ACRN_IOCTL_UNSET_MEMSEG),
    ("ACRN_IOCTL_SET_PTDEV_INTR", ACRN_IOCTL_SET_PTDEV_INTR),
    ("ACRN_IOCTL_RESET_PTDEV_INTR", ACRN_IOCTL_RESET_PTDEV_INTR),
    ("ACRN_IOCTL_ASSIGN_PCIDEV", ACRN_IOCTL_ASSIGN_PCIDEV),
    ("ACRN_IOCTL_DEASSIGN_PCIDEV", ACRN_IOCTL_DEASSIGN_PCIDEV),
    ("ACRN_IOCTL_ASSIGN_MMIODEV", ACRN_IOCTL_ASSIGN_MMIODEV),
    ("ACRN_IOCTL_DEASSIGN_MMIODEV", ACRN_IOCTL_DEASSIGN_MMIODEV),
    ("ACRN_IOCTL_CREATE_VDEV", ACRN_IOCTL_CREATE_VDEV),
    ("ACRN_IOCTL_DESTROY_VDEV", ACRN_IOCTL_DESTROY_VDEV),
    ("ACRN_IOCTL_PM_GET_CPU_STATE", ACRN_IOCTL_PM_GET_CPU_STATE),
    ("ACRN_IOCTL_IOEVENTFD", ACRN_IOCTL_IOEVENTFD),
    ("ACRN_IOCTL_IRQFD", ACRN_IOCTL_IRQFD),
];

/// Every other constant of `<linux/acrn.h>` (macros and enumerators), in header order.
pub static CONSTANTS: &[(&str, u64)] = &[
    ("ACRN_IO_REQUEST_MAX", ACRN_IO_REQUEST_MAX as u64),
    ("ACRN_IOREQ_STATE_PENDING", ACRN_IOREQ_STATE_PENDING as u64),
    (
        "ACRN_IOREQ_STATE_COMPLETE",
        ACRN_IOREQ_STATE_COMPLETE as u64,
    ),
    (
        "ACRN_IOREQ_STATE_PROCESSING",
        ACRN_IOREQ_STATE_PROCESSING as u64,
    ),
    ("ACRN_IOREQ_STATE_FREE", ACRN_IOREQ_STATE_FREE as u64),
    ("ACRN_IOREQ_TYPE_PORTIO", ACRN_IOREQ_TYPE_PORTIO as u64),
    ("ACRN_IOREQ_TYPE_MMIO", ACRN_IOREQ_TYPE_MMIO as u64),
    ("ACRN_IOREQ_TYPE_PCICFG", ACRN_IOREQ_TYPE_PCICFG as u64),
    ("ACRN_IOREQ_DIR_READ", ACRN_IOREQ_DIR_READ as u64),
    ("ACRN_IOREQ_DIR_WRITE", ACRN_IOREQ_DIR_WRITE as u64),
    (
        "ACRN_MEM_ACCESS_RIGHT_MASK",
        ACRN_MEM_ACCESS_RIGHT_MASK as u64,
    ),
    ("ACRN_MEM_ACCESS_READ", ACRN_MEM_ACCESS_READ as u64),
    ("ACRN_MEM_ACCESS_WRITE", ACRN_MEM_ACCESS_WRITE as u64),
    ("ACRN_MEM_ACCESS_EXEC", ACRN_MEM_ACCESS_EXEC as u64),
    ("ACRN_MEM_ACCESS_RWX", ACRN_MEM_ACCESS_RWX as u64),
    ("ACRN_MEM_TYPE_MASK", ACRN_MEM_TYPE_MASK as u64),
    ("ACRN_MEM_TYPE_WB", ACRN_MEM_TYPE_WB as u64),
    ("ACRN_MEM_TYPE_WT", ACRN_MEM_TYPE_WT as u64),
    ("ACRN_MEM_TYPE_UC", ACRN_MEM_TYPE_UC as u64),
    ("ACRN_MEM_TYPE_WC", ACRN_MEM_TYPE_WC as u64),
    ("ACRN_MEM_TYPE_WP", ACRN_MEM_TYPE_WP as u64),
    ("ACRN_MEMMAP_RAM", ACRN_MEMMAP_RAM as u64),
    ("ACRN_MEMMAP_MMIO", ACRN_MEMMAP_MMIO as u64),
    ("ACRN_PTDEV_IRQ_INTX", ACRN_PTDEV_IRQ_INTX as u64),
    ("ACRN_PTDEV_IRQ_MSI", ACRN_PTDEV_IRQ_MSI as u64),
    ("ACRN_PTDEV_IRQ_MSIX", ACRN_PTDEV_IRQ_MSIX as u64),
    ("ACRN_PTDEV_QUIRK_ASSIGN", ACRN_PTDEV_QUIRK_ASSIGN as u64),
    ("ACRN_MMIODEV_RES_NUM", ACRN_MMIODEV_RES_NUM as u64),
    ("ACRN_PCI_NUM_BARS", ACRN_PCI_NUM_BARS as u64),
    ("PMCMD_TYPE_MASK", PMCMD_TYPE_MASK as u64),
    ("ACRN_PMCMD_GET_PX_CNT", ACRN_PMCMD_GET_PX_CNT as u64),
    ("ACRN_PMCMD_GET_PX_DATA", ACRN_PMCMD_GET_PX_DATA as u64),
    ("ACRN_PMCMD_GET_CX_CNT", ACRN_PMCMD_GET_CX_CNT as u64),
    ("ACRN_PMCMD_GET_CX_DATA", ACRN_PMCMD_GET_CX_DATA as u64),
    ("ACRN_IOEVENTFD_FLAG_PIO", ACRN_IOEVENTFD_FLAG_PIO as u64),
    (
        "ACRN_IOEVENTFD_FLAG_DATAMATCH",
        ACRN_IOEVENTFD_FLAG_DATAMATCH as u64,
    ),
    (
        "ACRN_IOEVENTFD_FLAG_DEASSIGN",
        ACRN_IOEVENTFD_FLAG_DEASSIGN as u64,
    ),
    ("ACRN_IRQFD_FLAG_DEASSIGN", ACRN_IRQFD_FLAG_DEASSIGN as u64),
    ("ACRN_IOCTL_TYPE", ACRN_IOCTL_TYPE as u64),
];

/// Writes the tables as JSON, byte for byte as `test/conformance/abi.c` prints them:
///
/// ```text
/// {
///   "structs": {
///     "acrn_mmio_request": {
///       "size": 32,
///       "align": 8,
///       "fields": {
///         "direction": 0,
///         ...
///       }
///     },
///     ...
///   },
///   "ioctls": {
///     "ACRN_IOCTL_CREATE_VM": 3224412688,
///     ...
///   },
///   "constants": {
///     "ACRN_IO_REQUEST_MAX": 16,
///     ...
///   }
/// }
/// ```
///
/// Keys appear in table order (header order), numbers in decimal, two-space indentation, and the
/// text ends with a newline. No name needs escaping (they are C identifiers, `.` and `[]`).
pub fn write_json<W: fmt::Write>(out: &mut W) -> fmt::Result {
    out.write_str("{\n  \"structs\": {\n")?;
    for (i, s) in STRUCTS.iter().enumerate() {
        write!(
            out,
            "    \"{}\": {{\n      \"size\": {},\n      \"align\": {},\n      \"fields\": {{\n",
            s.name, s.size, s.align
        )?;
        for (j, (path, off)) in s.fields.iter().enumerate() {
            let comma = if j + 1 < s.fields.len() { "," } else { "" };
            writeln!(out, "        \"{path}\": {off}{comma}")?;
        }
        let comma = if i + 1 < STRUCTS.len() { "," } else { "" };
        writeln!(out, "      }}\n    }}{comma}")?;
    }
    out.write_str("  },\n  \"ioctls\": {\n")?;
    for (i, (name, value)) in IOCTLS.iter().enumerate() {
        let comma = if i + 1 < IOCTLS.len() { "," } else { "" };
        writeln!(out, "    \"{name}\": {value}{comma}")?;
    }
    out.write_str("  },\n  \"constants\": {\n")?;
    for (i, (name, value)) in CONSTANTS.iter().enumerate() {
        let comma = if i + 1 < CONSTANTS.len() { "," } else { "" };
        writeln!(out, "    \"{name}\": {value}{comma}")?;
    }
    out.write_str("  }\n}\n")
}

/// [`write_json`] as a [`fmt::Display`] value: `format!("{}", AbiJson)` is the JSON text.
#[derive(Debug, Clone, Copy, Default)]
pub struct AbiJson;

impl fmt::Display for AbiJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_json(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts bytes and checks a few properties of the JSON text without allocating.
    struct Sink {
        len: usize,
        braces: i64,
        quotes: usize,
    }

    impl fmt::Write for Sink {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            for c in s.chars() {
                match c {
                    '{' => self.braces += 1,
                    '}' => self.braces -= 1,
                    '"' => self.quotes += 1,
                    _ => {}
                }
            }
            self.len += s.len();
            Ok(())
        }
    }

    #[test]
    fn names_are_unique_and_json_safe() {
        let ok = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.[]".contains(c))
        };
        for (i, s) in STRUCTS.iter().enumerate() {
            assert!(ok(s.name));
            assert!(
                STRUCTS[..i].iter().all(|o| o.name != s.name),
                "duplicate {}",
                s.name
            );
            for (j, (p, off)) in s.fields.iter().enumerate() {
                assert!(ok(p), "{}: bad path {p}", s.name);
                assert!(
                    s.fields[..j].iter().all(|(q, _)| q != p),
                    "{}: duplicate {p}",
                    s.name
                );
                assert!(
                    *off < s.size,
                    "{}.{p} at {off} outside size {}",
                    s.name,
                    s.size
                );
            }
        }
        for (i, (n, _)) in IOCTLS.iter().enumerate() {
            assert!(ok(n) && n.starts_with("ACRN_IOCTL_"));
            assert!(IOCTLS[..i].iter().all(|(m, _)| m != n));
        }
        for (i, (n, _)) in CONSTANTS.iter().enumerate() {
            assert!(ok(n));
            assert!(CONSTANTS[..i].iter().all(|(m, _)| m != n));
            assert!(IOCTLS.iter().all(|(m, _)| m != n));
        }
    }

    #[test]
    fn spot_checks() {
        let io = find_struct("acrn_io_request");
        assert!(io.is_some());
        let io = io.map_or(
            StructLayout {
                name: "",
                size: 0,
                align: 0,
                fields: &[],
            },
            |s| *s,
        );
        assert_eq!((io.size, io.align), (256, 256));
        assert_eq!(io.field("type"), Some(0));
        assert_eq!(io.field("reqs"), Some(64));
        assert_eq!(io.field("reqs.mmio_request.value"), Some(88));
        assert_eq!(io.field("reqs.pci_request.bus"), Some(92));
        assert_eq!(io.field("kernel_handled"), Some(132));
        assert_eq!(io.field("processed"), Some(136));
        let memmap =
            find_struct("acrn_vm_memmap").map(|s| (s.field("service_vm_pa"), s.field("vma_base")));
        assert_eq!(memmap, Some((Some(16), Some(16))));
        let mmio = find_struct("acrn_mmiodev").and_then(|s| s.field("res[].mem_type"));
        assert_eq!(mmio, Some(32));
        let slot =
            find_struct("acrn_io_request_buffer").and_then(|s| s.field("req_slot[].processed"));
        assert_eq!(slot, Some(136));
        let gdt = find_struct("acrn_vcpu_regs").and_then(|s| s.field("vcpu_regs.idt.base"));
        assert_eq!(gdt, Some(8 + 144 + 2));
        assert_eq!(find_ioctl("ACRN_IOCTL_CREATE_VM"), Some(0xC030_A210));
        assert_eq!(find_constant("ACRN_MEM_TYPE_WP"), Some(0x400));
        assert_eq!(find_constant("ACRN_IOCTL_TYPE"), Some(0xA2));
        assert_eq!(find_constant("ACRN_PMCMD_GET_CX_DATA"), Some(3));
        assert_eq!(find_struct("nope"), None);
        assert_eq!(STRUCTS.len(), 22);
    }

    #[test]
    fn json_is_balanced() {
        let mut sink = Sink {
            len: 0,
            braces: 0,
            quotes: 0,
        };
        assert!(write_json(&mut sink).is_ok());
        assert_eq!(sink.braces, 0);
        let fields: usize = STRUCTS.iter().map(|s| s.fields.len() + 4).sum();
        let keys = 3 + fields + IOCTLS.len() + CONSTANTS.len();
        assert_eq!(sink.quotes, 2 * keys);
        assert!(sink.len > 1000);
    }
}
