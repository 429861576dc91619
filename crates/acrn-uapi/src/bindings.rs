//! Byte-exact Rust mirrors of every struct, union and constant of `<linux/acrn.h>`.
//!
//! Names follow the C header exactly (kvm-bindings style): `struct acrn_io_request` is
//! [`acrn_io_request`], `ACRN_IOREQ_STATE_PENDING` is [`ACRN_IOREQ_STATE_PENDING`]. A C member
//! whose name is a Rust keyword gets a trailing underscore (`type` is `type_`), as bindgen does.
//!
//! C has a few *anonymous* nested types. They get a Rust name built from the parent and the member
//! (`acrn_io_request.reqs` is [`acrn_io_request_reqs`], `acrn_mmiodev.res[]` is
//! [`acrn_mmiodev_res`], ...). Where C has an anonymous union with no member name, the Rust struct
//! holds it in a field with a descriptive name and offers accessors named after the C members
//! (see [`acrn_vm_memmap::vma_base`]).
//!
//! `__le16`/`__le32`/`__le64` members are plain `u16`/`u32`/`u64`: the ABI is x86-64, a
//! little-endian machine, and the byte order only matters if these structs are built on a
//! big-endian host, which this crate does not support for the ioctl structs (the
//! [`crate::ioreq`] codec is endian-independent).
//!
//! Every size, alignment and member offset is checked at compile time below, and the whole table
//! of [`crate::layout`] is checked against gcc by `tests/conformance.rs`.
//!
//! The ioctl request numbers are in [`crate::ioctl`].

#![allow(non_camel_case_types)]

use core::fmt;
use core::mem::{align_of, offset_of, size_of};

// ---------------------------------------------------------------------------------------------
// I/O request constants
// ---------------------------------------------------------------------------------------------

/// `ACRN_IO_REQUEST_MAX`: number of I/O request slots in the shared page (one per vCPU).
pub const ACRN_IO_REQUEST_MAX: usize = 16;

/// `ACRN_IOREQ_STATE_PENDING`: the hypervisor filled the slot; HSM has not dispatched it yet.
pub const ACRN_IOREQ_STATE_PENDING: u32 = 0;
/// `ACRN_IOREQ_STATE_COMPLETE`: the request has been handled; the hypervisor owns the slot.
pub const ACRN_IOREQ_STATE_COMPLETE: u32 = 1;
/// `ACRN_IOREQ_STATE_PROCESSING`: HSM dispatched the request to a client, which must handle it.
pub const ACRN_IOREQ_STATE_PROCESSING: u32 = 2;
/// `ACRN_IOREQ_STATE_FREE`: the slot is unused and owned by the hypervisor.
pub const ACRN_IOREQ_STATE_FREE: u32 = 3;

/// `ACRN_IOREQ_TYPE_PORTIO`: a port I/O request ([`acrn_pio_request`]).
pub const ACRN_IOREQ_TYPE_PORTIO: u32 = 0;
/// `ACRN_IOREQ_TYPE_MMIO`: a memory-mapped I/O request ([`acrn_mmio_request`]).
pub const ACRN_IOREQ_TYPE_MMIO: u32 = 1;
/// `ACRN_IOREQ_TYPE_PCICFG`: a PCI configuration space request ([`acrn_pci_request`]).
pub const ACRN_IOREQ_TYPE_PCICFG: u32 = 2;

/// `ACRN_IOREQ_DIR_READ`: the guest reads; the handler writes the `value` member.
pub const ACRN_IOREQ_DIR_READ: u32 = 0;
/// `ACRN_IOREQ_DIR_WRITE`: the guest writes `value`.
pub const ACRN_IOREQ_DIR_WRITE: u32 = 1;

// ---------------------------------------------------------------------------------------------
// I/O request structures
// ---------------------------------------------------------------------------------------------

/// `struct acrn_mmio_request`: a memory-mapped I/O access (32 bytes).
#[repr(C)]
#[derive(Debug, Default, Copy, Clone, PartialEq, Eq, Hash)]
pub struct acrn_mmio_request {
    /// Access direction ([`ACRN_IOREQ_DIR_READ`] or [`ACRN_IOREQ_DIR_WRITE`]).
    pub direction: u32,
    /// Reserved for alignment; should be 0.
    pub reserved: u32,
    /// Guest physical address of the access.
    pub address: u64,
    /// Access size in bytes.
    pub size: u64,
    /// Value written by the guest, or to be returned to it on a read.
    pub value: u64,
}

/// `struct acrn_pio_request`: a port I/O access (32 bytes; 4 bytes of tail padding).
#[repr(C)]
#[derive(Debug, Default, Copy, Clone, PartialEq, Eq, Hash)]
pub struct acrn_pio_request {
    /// Access direction ([`ACRN_IOREQ_DIR_READ`] or [`ACRN_IOREQ_DIR_WRITE`]).
    pub direction: u32,
    /// Reserved for alignment; should be 0.
    pub reserved: u32,
    /// I/O port of the access.
    pub address: u64,
    /// Access size in bytes.
    pub size: u64,
    /// Value written by the guest, or to be returned to it on a read.
    pub value: u32,
}

/// `struct acrn_pci_request`: a PCI configuration space access (48 bytes).
///
/// Its first 28 bytes have the same layout as [`acrn_pio_request`] (`direction`, `size` and
/// `value` at the same offsets): HSM rewrites a port I/O request to 0xCFC-0xCFF into a PCI
/// request in place, and then `reserved[1..=2]` still holds the old port `address`.
#[repr(C)]
#[derive(Debug, Default, Copy, Clone, PartialEq, Eq, Hash)]
pub struct acrn_pci_request {
    /// Access direction ([`ACRN_IOREQ_DIR_READ`] or [`ACRN_IOREQ_DIR_WRITE`]).
    pub direction: u32,
    /// Reserved; should be 0 (see the type's documentation for the cf8/cfc rewrite).
    pub reserved: [u32; 3],
    /// Access size in bytes.
    pub size: u64,
    /// Value written by the guest, or to be returned to it on a read.
    pub value: u32,
    /// PCI bus number.
    pub bus: u32,
    /// PCI device number.
    pub dev: u32,
    /// PCI function number.
    pub func: u32,
    /// Offset in the configuration space.
    pub reg: u32,
}

/// The anonymous union `acrn_io_request.reqs` (64 bytes at offset 64 of the slot).
///
/// C declares it inline, without a tag; this is its Rust name. Which member is live is given by
/// [`acrn_io_request::type_`]. Every member is plain integers, so any bit pattern is a valid value
/// of every member, but reading a member still needs `unsafe` (the padding of a member written
/// through another one may be uninitialised). Prefer the safe codec in [`crate::ioreq`].
#[repr(C)]
#[derive(Copy, Clone)]
pub union acrn_io_request_reqs {
    /// `reqs.pio_request`: live when `type == ACRN_IOREQ_TYPE_PORTIO`.
    pub pio_request: acrn_pio_request,
    /// `reqs.pci_request`: live when `type == ACRN_IOREQ_TYPE_PCICFG`.
    pub pci_request: acrn_pci_request,
    /// `reqs.mmio_request`: live when `type == ACRN_IOREQ_TYPE_MMIO`.
    pub mmio_request: acrn_mmio_request,
    /// `reqs.data`: the raw 64 bytes.
    pub data: [u64; 8],
}

impl Default for acrn_io_request_reqs {
    /// All 64 bytes zero.
    fn default() -> Self {
        Self { data: [0; 8] }
    }
}

impl fmt::Debug for acrn_io_request_reqs {
    /// Opaque: which member is live depends on the enclosing request's `type`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("acrn_io_request_reqs")
            .finish_non_exhaustive()
    }
}

/// `struct acrn_io_request`: one 256-byte I/O request slot (`__attribute__((aligned(256)))`).
///
/// The slot lives in memory shared with the hypervisor, which writes it concurrently. Do not
/// create references to a live slot; access it through raw pointers and atomics at the offsets
/// in [`crate::ioreq`] (`SLOT_OFFSET_*`), or copy it and decode it with
/// [`crate::ioreq::decode_io_request`].
#[repr(C, align(256))]
#[derive(Debug, Default, Copy, Clone)]
pub struct acrn_io_request {
    /// `type`: the request type (`ACRN_IOREQ_TYPE_*`).
    pub type_: u32,
    /// Nonzero if the hypervisor polls for completion instead of waiting for a notification.
    pub completion_polling: u32,
    /// Reserved.
    pub reserved0: [u32; 14],
    /// The request payload; byte offset 64.
    pub reqs: acrn_io_request_reqs,
    /// Reserved.
    pub reserved1: u32,
    /// Nonzero if the request is handled by an in-kernel client (not userspace's).
    pub kernel_handled: u32,
    /// `processed`: the slot state (`ACRN_IOREQ_STATE_*`).
    pub processed: u32,
}

/// `struct acrn_io_request_buffer`: the 4096-byte shared I/O request page.
///
/// C declares a struct whose only member is an anonymous union of `req_slot` and `reserved`;
/// a struct with a single member has the layout of that member, so Rust declares the union
/// directly (size 4096, alignment 256, both members at offset 0).
///
/// Slot `i` belongs to vCPU `i`. The same warning as for [`acrn_io_request`] applies to a live
/// page: use raw pointers, not references.
#[repr(C, align(256))]
#[derive(Copy, Clone)]
pub union acrn_io_request_buffer {
    /// The 16 request slots, indexed by vCPU id.
    pub req_slot: [acrn_io_request; ACRN_IO_REQUEST_MAX],
    /// The raw page.
    pub reserved: [u8; 4096],
}

impl acrn_io_request_buffer {
    /// The 16 slots.
    pub fn req_slot(&self) -> &[acrn_io_request; ACRN_IO_REQUEST_MAX] {
        // SAFETY: both members are plain-integer aggregates without invalid bit patterns: every
        // initialised 4096-byte value is a valid `[acrn_io_request; 16]` (padding bytes of
        // `acrn_io_request` need not be initialised, and `reqs` is a union).
        unsafe { &self.req_slot }
    }

    /// The 16 slots, mutably.
    pub fn req_slot_mut(&mut self) -> &mut [acrn_io_request; ACRN_IO_REQUEST_MAX] {
        // SAFETY: as in `req_slot`; writes through this reference only store valid integers.
        unsafe { &mut self.req_slot }
    }
}

impl Default for acrn_io_request_buffer {
    /// A zeroed page: every slot is a PORTIO request in state PENDING (0), as the page is before
    /// the hypervisor marks every slot FREE at `ACRN_IOCTL_CREATE_VM`.
    fn default() -> Self {
        Self {
            reserved: [0; 4096],
        }
    }
}

impl fmt::Debug for acrn_io_request_buffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("acrn_io_request_buffer")
            .field("req_slot", self.req_slot())
            .finish()
    }
}

/// `struct acrn_ioreq_notify`: the argument of `ACRN_IOCTL_NOTIFY_REQUEST_FINISH` (8 bytes).
#[repr(C)]
#[derive(Debug, Default, Copy, Clone, PartialEq, Eq, Hash)]
pub struct acrn_ioreq_notify {
    /// User VM id (ignored by HSM, which uses the file's VM).
    pub vmid: u16,
    /// Reserved; must be 0 (`-EINVAL` otherwise).
    pub reserved: u16,
    /// The vCPU whose request is complete.
    pub vcpu: u32,
}

// ---------------------------------------------------------------------------------------------
// VM creation and vCPU registers
// ---------------------------------------------------------------------------------------------

/// `struct acrn_vm_creation`: the argument of `ACRN_IOCTL_CREATE_VM` (48 bytes).
#[repr(C)]
#[derive(Debug, Default, Copy, Clone, PartialEq, Eq, Hash)]
pub struct acrn_vm_creation {
    /// User VM id, returned by the hypervisor.
    pub vmid: u16,
    /// Reserved; must be 0.
    pub reserved0: u16,
    /// Number of vCPUs, returned by the hypervisor.
    pub vcpu_num: u16,
    /// Reserved; must be 0.
    pub reserved1: u16,
    /// The 16 bytes at offset 8.
    ///
    /// Linux 5.12-6.1 declare it `guid_t uuid` (a struct of 16 bytes, alignment 1), later
    /// headers `__u8 uuid[16]` ("empty space never to be used again"); the layout is the same.
    /// The hypervisor reads these bytes as the VM name.
    pub uuid: [u8; 16],
    /// VM flags, passed to the hypervisor.
    pub vm_flag: u64,
    /// Userspace virtual address of the 4 KiB I/O request page ([`acrn_io_request_buffer`]).
    pub ioreq_buf: u64,
    /// Bitmap of the physical CPUs the VM may use.
    pub cpu_affinity: u64,
}

/// `struct acrn_gp_regs`: the general-purpose registers of a vCPU (128 bytes).
#[repr(C)]
#[derive(Debug, Default, Copy, Clone, PartialEq, Eq, Hash)]
pub struct acrn_gp_regs {
    /// RAX.
    pub rax: u64,
    /// RCX.
    pub rcx: u64,
    /// RDX.
    pub rdx: u64,
    /// RBX.
    pub rbx: u64,
    /// RSP.
    pub rsp: u64,
    /// RBP.
    pub rbp: u64,
    /// RSI.
    pub rsi: u64,
    /// RDI.
    pub rdi: u64,
    /// R8.
    pub r8: u64,
    /// R9.
    pub r9: u64,
    /// R10.
    pub r10: u64,
    /// R11.
    pub r11: u64,
    /// R12.
    pub r12: u64,
    /// R13.
    pub r13: u64,
    /// R14.
    pub r14: u64,
    /// R15.
    pub r15: u64,
}

/// `struct acrn_descriptor_ptr`: a descriptor-table register (`__packed__`, 16 bytes, align 1).
#[repr(C, packed)]
#[derive(Debug, Default, Copy, Clone, PartialEq, Eq, Hash)]
pub struct acrn_descriptor_ptr {
    /// Limit.
    pub limit: u16,
    /// Base address (at offset 2: the struct is packed).
    pub base: u64,
    /// Reserved; must be 0.
    pub reserved: [u16; 3],
}

/// `struct acrn_regs`: the register state of a vCPU (288 bytes).
#[repr(C)]
#[derive(Debug, Default, Copy, Clone, PartialEq, Eq, Hash)]
pub struct acrn_regs {
    /// General-purpose registers.
    pub gprs: acrn_gp_regs,
    /// GDTR.
    pub gdt: acrn_descriptor_ptr,
    /// IDTR.
    pub idt: acrn_descriptor_ptr,
    /// RIP.
    pub rip: u64,
    /// Base of the code segment.
    pub cs_base: u64,
    /// CR0.
    pub cr0: u64,
    /// CR4.
    pub cr4: u64,
    /// CR3.
    pub cr3: u64,
    /// IA32_EFER.
    pub ia32_efer: u64,
    /// RFLAGS.
    pub rflags: u64,
    /// Reserved; must be 0.
    pub reserved_64: [u64; 4],
    /// Access rights of the code segment.
    pub cs_ar: u32,
    /// Limit of the code segment.
    pub cs_limit: u32,
    /// Reserved; must be 0.
    pub reserved_32: [u32; 3],
    /// CS selector.
    pub cs_sel: u16,
    /// SS selector.
    pub ss_sel: u16,
    /// DS selector.
    pub ds_sel: u16,
    /// ES selector.
    pub es_sel: u16,
    /// FS selector.
    pub fs_sel: u16,
    /// GS selector.
    pub gs_sel: u16,
    /// LDT selector.
    pub ldt_sel: u16,
    /// TSS selector.
    pub tr_sel: u16,
}

/// `struct acrn_vcpu_regs`: the argument of `ACRN_IOCTL_SET_VCPU_REGS` (296 bytes).
#[repr(C)]
#[derive(Debug, Default, Copy, Clone, PartialEq, Eq, Hash)]
pub struct acrn_vcpu_regs {
    /// vCPU id.
    pub vcpu_id: u16,
    /// Reserved; must be 0.
    pub reserved: [u16; 3],
    /// The register state.
    pub vcpu_regs: acrn_regs,
}

// ---------------------------------------------------------------------------------------------
// Memory mapping
// ---------------------------------------------------------------------------------------------

/// `ACRN_MEM_ACCESS_RIGHT_MASK`: the access-right bits of [`acrn_vm_memmap::attr`].
pub const ACRN_MEM_ACCESS_RIGHT_MASK: u32 = 0x0000_0007;
/// `ACRN_MEM_ACCESS_READ`: readable.
pub const ACRN_MEM_ACCESS_READ: u32 = 0x0000_0001;
/// `ACRN_MEM_ACCESS_WRITE`: writable.
pub const ACRN_MEM_ACCESS_WRITE: u32 = 0x0000_0002;
/// `ACRN_MEM_ACCESS_EXEC`: executable.
pub const ACRN_MEM_ACCESS_EXEC: u32 = 0x0000_0004;
/// `ACRN_MEM_ACCESS_RWX`: readable, writable and executable.
pub const ACRN_MEM_ACCESS_RWX: u32 =
    ACRN_MEM_ACCESS_READ | ACRN_MEM_ACCESS_WRITE | ACRN_MEM_ACCESS_EXEC;

/// `ACRN_MEM_TYPE_MASK`: the memory-type bits of [`acrn_vm_memmap::attr`].
pub const ACRN_MEM_TYPE_MASK: u32 = 0x0000_07C0;
/// `ACRN_MEM_TYPE_WB`: write-back.
pub const ACRN_MEM_TYPE_WB: u32 = 0x0000_0040;
/// `ACRN_MEM_TYPE_WT`: write-through.
pub const ACRN_MEM_TYPE_WT: u32 = 0x0000_0080;
/// `ACRN_MEM_TYPE_UC`: uncached.
pub const ACRN_MEM_TYPE_UC: u32 = 0x0000_0100;
/// `ACRN_MEM_TYPE_WC`: write-combining.
pub const ACRN_MEM_TYPE_WC: u32 = 0x0000_0200;
/// `ACRN_MEM_TYPE_WP`: write-protected.
pub const ACRN_MEM_TYPE_WP: u32 = 0x0000_0400;

/// `ACRN_MEMMAP_RAM`: a RAM mapping ([`acrn_vm_memmap::vma_base`] is a user address).
pub const ACRN_MEMMAP_RAM: u32 = 0;
/// `ACRN_MEMMAP_MMIO`: an MMIO mapping ([`acrn_vm_memmap::service_vm_pa`] is a physical address).
pub const ACRN_MEMMAP_MMIO: u32 = 1;

/// The anonymous union `{ service_vm_pa; vma_base; }` of [`acrn_vm_memmap`] (offset 16).
///
/// C has no name for it. Both members are `u64`, so every value is valid for both; use the
/// accessors of [`acrn_vm_memmap`].
#[repr(C)]
#[derive(Copy, Clone)]
pub union acrn_vm_memmap_addr {
    /// Service VM physical address (MMIO mappings).
    pub service_vm_pa: u64,
    /// Service VM user virtual address (RAM mappings).
    pub vma_base: u64,
}

impl acrn_vm_memmap_addr {
    /// The value, whichever member was written.
    pub const fn get(&self) -> u64 {
        // SAFETY: both members are `u64` at offset 0 and every constructor initialises one of
        // them, so the 8 bytes are an initialised `u64`.
        unsafe { self.service_vm_pa }
    }
}

impl Default for acrn_vm_memmap_addr {
    /// Zero.
    fn default() -> Self {
        Self { service_vm_pa: 0 }
    }
}

impl PartialEq for acrn_vm_memmap_addr {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl Eq for acrn_vm_memmap_addr {}

impl fmt::Debug for acrn_vm_memmap_addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.get())
    }
}

/// `struct acrn_vm_memmap`: the argument of `ACRN_IOCTL_SET_MEMSEG`/`UNSET_MEMSEG` (32 bytes).
#[repr(C)]
#[derive(Debug, Default, Copy, Clone, PartialEq, Eq)]
pub struct acrn_vm_memmap {
    /// `type`: [`ACRN_MEMMAP_RAM`] or [`ACRN_MEMMAP_MMIO`].
    pub type_: u32,
    /// Attributes: `ACRN_MEM_ACCESS_*` | `ACRN_MEM_TYPE_*`.
    pub attr: u32,
    /// Guest (User VM) physical address.
    pub user_vm_pa: u64,
    /// The anonymous union `service_vm_pa`/`vma_base` (offset 16); see the accessors.
    pub addr: acrn_vm_memmap_addr,
    /// Length in bytes.
    pub len: u64,
}

impl acrn_vm_memmap {
    /// `service_vm_pa` (the anonymous union at offset 16, for MMIO mappings).
    pub const fn service_vm_pa(&self) -> u64 {
        self.addr.get()
    }

    /// `vma_base` (the anonymous union at offset 16, for RAM mappings).
    pub const fn vma_base(&self) -> u64 {
        self.addr.get()
    }

    /// Sets `service_vm_pa`.
    pub const fn set_service_vm_pa(&mut self, pa: u64) {
        self.addr = acrn_vm_memmap_addr { service_vm_pa: pa };
    }

    /// Sets `vma_base`.
    pub const fn set_vma_base(&mut self, va: u64) {
        self.addr = acrn_vm_memmap_addr { vma_base: va };
    }
}

// ---------------------------------------------------------------------------------------------
// Passthrough devices
// ---------------------------------------------------------------------------------------------

/// `ACRN_PTDEV_IRQ_INTX`: legacy INTx interrupt.
pub const ACRN_PTDEV_IRQ_INTX: u32 = 0;
/// `ACRN_PTDEV_IRQ_MSI`: MSI.
pub const ACRN_PTDEV_IRQ_MSI: u32 = 1;
/// `ACRN_PTDEV_IRQ_MSIX`: MSI-X.
pub const ACRN_PTDEV_IRQ_MSIX: u32 = 2;

/// The anonymous struct `acrn_ptdev_irq.intx` (12 bytes).
#[repr(C)]
#[derive(Debug, Default, Copy, Clone, PartialEq, Eq, Hash)]
pub struct acrn_ptdev_irq_intx {
    /// Virtual IOAPIC pin.
    pub virt_pin: u32,
    /// Physical IOAPIC pin.
    pub phys_pin: u32,
    /// Nonzero if the pin is a PIC pin.
    pub is_pic_pin: u32,
}

/// `struct acrn_ptdev_irq`: the argument of `ACRN_IOCTL_SET_PTDEV_INTR`/`RESET_PTDEV_INTR`
/// (20 bytes).
#[repr(C)]
#[derive(Debug, Default, Copy, Clone, PartialEq, Eq, Hash)]
pub struct acrn_ptdev_irq {
    /// `type`: `ACRN_PTDEV_IRQ_*`.
    pub type_: u32,
    /// Virtual bus/device/function.
    pub virt_bdf: u16,
    /// Physical bus/device/function.
    pub phys_bdf: u16,
    /// INTx routing.
    pub intx: acrn_ptdev_irq_intx,
}

/// `ACRN_PTDEV_QUIRK_ASSIGN`: [`acrn_pcidev::type_`] flag for a quirky device assignment.
pub const ACRN_PTDEV_QUIRK_ASSIGN: u32 = 1 << 0;

/// `ACRN_MMIODEV_RES_NUM`: number of resources in [`acrn_mmiodev::res`].
pub const ACRN_MMIODEV_RES_NUM: usize = 3;
/// `ACRN_PCI_NUM_BARS`: number of BARs of a PCI device.
pub const ACRN_PCI_NUM_BARS: usize = 6;

/// `struct acrn_pcidev`: the argument of `ACRN_IOCTL_ASSIGN_PCIDEV`/`DEASSIGN_PCIDEV`
/// (36 bytes).
#[repr(C)]
#[derive(Debug, Default, Copy, Clone, PartialEq, Eq, Hash)]
pub struct acrn_pcidev {
    /// `type`: assignment flags ([`ACRN_PTDEV_QUIRK_ASSIGN`]).
    pub type_: u32,
    /// Virtual bus/device/function.
    pub virt_bdf: u16,
    /// Physical bus/device/function.
    pub phys_bdf: u16,
    /// PCI interrupt line.
    pub intr_line: u8,
    /// PCI interrupt pin.
    pub intr_pin: u8,
    /// The BARs.
    pub bar: [u32; ACRN_PCI_NUM_BARS],
}

/// The anonymous struct of the array `acrn_mmiodev.res[]` (32 bytes).
#[repr(C)]
#[derive(Debug, Default, Copy, Clone, PartialEq, Eq, Hash)]
pub struct acrn_mmiodev_res {
    /// User VM physical address of the region.
    pub user_vm_pa: u64,
    /// Service VM physical address of the region.
    pub service_vm_pa: u64,
    /// Size of the region.
    pub size: u64,
    /// Memory type of the region.
    pub mem_type: u64,
}

/// `struct acrn_mmiodev`: the argument of `ACRN_IOCTL_ASSIGN_MMIODEV`/`DEASSIGN_MMIODEV`
/// (104 bytes).
#[repr(C)]
#[derive(Debug, Default, Copy, Clone, PartialEq, Eq, Hash)]
pub struct acrn_mmiodev {
    /// Device name.
    pub name: [u8; 8],
    /// MMIO resources.
    pub res: [acrn_mmiodev_res; ACRN_MMIODEV_RES_NUM],
}

/// The anonymous struct `acrn_vdev.id.fields` (8 bytes).
#[repr(C)]
#[derive(Debug, Default, Copy, Clone, PartialEq, Eq, Hash)]
pub struct acrn_vdev_id_fields {
    /// PCI vendor id.
    pub vendor: u16,
    /// PCI device id.
    pub device: u16,
    /// Id of a non-PCI (legacy) device.
    pub legacy_id: u32,
}

/// The anonymous union `acrn_vdev.id` (8 bytes).
#[repr(C)]
#[derive(Copy, Clone)]
pub union acrn_vdev_id {
    /// The raw identifier.
    pub value: u64,
    /// The identifier's fields.
    pub fields: acrn_vdev_id_fields,
}

impl acrn_vdev_id {
    /// The raw identifier (`id.value`).
    pub const fn value(&self) -> u64 {
        // SAFETY: both members are 8 bytes of integers without padding, so whichever was written
        // initialised all 8 bytes, and every bit pattern is a valid `u64`.
        unsafe { self.value }
    }

    /// The identifier's fields (`id.fields`).
    pub const fn fields(&self) -> acrn_vdev_id_fields {
        // SAFETY: as in `value`; every bit pattern is a valid `acrn_vdev_id_fields`.
        unsafe { self.fields }
    }
}

impl Default for acrn_vdev_id {
    /// Zero.
    fn default() -> Self {
        Self { value: 0 }
    }
}

impl PartialEq for acrn_vdev_id {
    fn eq(&self, other: &Self) -> bool {
        self.value() == other.value()
    }
}

impl Eq for acrn_vdev_id {}

impl fmt::Debug for acrn_vdev_id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("acrn_vdev_id")
            .field("value", &format_args!("{:#x}", self.value()))
            .field("fields", &self.fields())
            .finish()
    }
}

/// `struct acrn_vdev`: the argument of `ACRN_IOCTL_CREATE_VDEV`/`DESTROY_VDEV` (192 bytes).
#[repr(C)]
#[derive(Debug, Copy, Clone, PartialEq, Eq)]
pub struct acrn_vdev {
    /// Device identifier: the low 32 bits are the PCI vendor/device ids, the high 32 bits the
    /// legacy device id.
    pub id: acrn_vdev_id,
    /// Virtual bus/device/function.
    pub slot: u64,
    /// I/O resource base addresses.
    pub io_addr: [u32; ACRN_PCI_NUM_BARS],
    /// I/O resource sizes.
    pub io_size: [u32; ACRN_PCI_NUM_BARS],
    /// Device-specific creation arguments.
    pub args: [u8; 128],
}

impl Default for acrn_vdev {
    /// All zero.
    fn default() -> Self {
        Self {
            id: acrn_vdev_id::default(),
            slot: 0,
            io_addr: [0; ACRN_PCI_NUM_BARS],
            io_size: [0; ACRN_PCI_NUM_BARS],
            args: [0; 128],
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Interrupts, power management, eventfds
// ---------------------------------------------------------------------------------------------

/// `struct acrn_msi_entry`: the argument of `ACRN_IOCTL_INJECT_MSI` (16 bytes).
#[repr(C)]
#[derive(Debug, Default, Copy, Clone, PartialEq, Eq, Hash)]
pub struct acrn_msi_entry {
    /// MSI address; bits 19:12 hold the destination vCPU id.
    pub msi_addr: u64,
    /// MSI data; bits 7:0 hold the vector.
    pub msi_data: u64,
}

/// `struct acrn_acpi_generic_address`: an ACPI Generic Address Structure (`__packed__`,
/// 12 bytes, align 1).
#[repr(C, packed)]
#[derive(Debug, Default, Copy, Clone, PartialEq, Eq, Hash)]
pub struct acrn_acpi_generic_address {
    /// Address space id.
    pub space_id: u8,
    /// Register width in bits.
    pub bit_width: u8,
    /// Register bit offset.
    pub bit_offset: u8,
    /// Access size.
    pub access_size: u8,
    /// Register address (at offset 4: the struct is packed).
    pub address: u64,
}

/// `struct acrn_cstate_data`: an ACPI C-state package (32 bytes).
#[repr(C)]
#[derive(Debug, Default, Copy, Clone, PartialEq, Eq, Hash)]
pub struct acrn_cstate_data {
    /// Register of the C-state.
    pub cx_reg: acrn_acpi_generic_address,
    /// `type`: the C-state type.
    pub type_: u8,
    /// Worst-case entry/exit latency.
    pub latency: u32,
    /// Average power consumption in this state.
    pub power: u64,
}

/// `struct acrn_pstate_data`: an ACPI P-state package (48 bytes).
#[repr(C)]
#[derive(Debug, Default, Copy, Clone, PartialEq, Eq, Hash)]
pub struct acrn_pstate_data {
    /// Core frequency in MHz.
    pub core_frequency: u64,
    /// Power dissipation in milliwatts.
    pub power: u64,
    /// Worst-case transition latency in microseconds.
    pub transition_latency: u64,
    /// Worst-case bus-master latency in microseconds.
    pub bus_master_latency: u64,
    /// Value to write to the performance control register.
    pub control: u64,
    /// Transition status.
    pub status: u64,
}

/// `PMCMD_TYPE_MASK`: the command-type bits of the `ACRN_IOCTL_PM_GET_CPU_STATE` argument.
pub const PMCMD_TYPE_MASK: u32 = 0x0000_00ff;

/// `enum acrn_pm_cmd_type` (an `unsigned int` in C, since all its values are non-negative).
pub type acrn_pm_cmd_type = u32;
/// `ACRN_PMCMD_GET_PX_CNT`: query the number of P-states.
pub const ACRN_PMCMD_GET_PX_CNT: acrn_pm_cmd_type = 0;
/// `ACRN_PMCMD_GET_PX_DATA`: query one P-state ([`acrn_pstate_data`]).
pub const ACRN_PMCMD_GET_PX_DATA: acrn_pm_cmd_type = 1;
/// `ACRN_PMCMD_GET_CX_CNT`: query the number of C-states.
pub const ACRN_PMCMD_GET_CX_CNT: acrn_pm_cmd_type = 2;
/// `ACRN_PMCMD_GET_CX_DATA`: query one C-state ([`acrn_cstate_data`]).
pub const ACRN_PMCMD_GET_CX_DATA: acrn_pm_cmd_type = 3;

/// `ACRN_IOEVENTFD_FLAG_PIO`: the range is port I/O (MMIO otherwise).
pub const ACRN_IOEVENTFD_FLAG_PIO: u32 = 0x01;
/// `ACRN_IOEVENTFD_FLAG_DATAMATCH`: signal only when the written value equals `data`.
pub const ACRN_IOEVENTFD_FLAG_DATAMATCH: u32 = 0x02;
/// `ACRN_IOEVENTFD_FLAG_DEASSIGN`: remove the ioeventfd instead of adding it.
pub const ACRN_IOEVENTFD_FLAG_DEASSIGN: u32 = 0x04;

/// `struct acrn_ioeventfd`: the argument of `ACRN_IOCTL_IOEVENTFD` (32 bytes).
#[repr(C)]
#[derive(Debug, Default, Copy, Clone, PartialEq, Eq, Hash)]
pub struct acrn_ioeventfd {
    /// The eventfd.
    pub fd: u32,
    /// `ACRN_IOEVENTFD_FLAG_*`.
    pub flags: u32,
    /// Start address of the I/O range.
    pub addr: u64,
    /// Length of the I/O range (1, 2, 4 or 8).
    pub len: u32,
    /// Reserved; must be 0.
    pub reserved: u32,
    /// Value to match with [`ACRN_IOEVENTFD_FLAG_DATAMATCH`].
    pub data: u64,
}

/// `ACRN_IRQFD_FLAG_DEASSIGN`: remove the irqfd instead of adding it.
pub const ACRN_IRQFD_FLAG_DEASSIGN: u32 = 0x01;

/// `struct acrn_irqfd`: the argument of `ACRN_IOCTL_IRQFD` (24 bytes).
#[repr(C)]
#[derive(Debug, Default, Copy, Clone, PartialEq, Eq, Hash)]
pub struct acrn_irqfd {
    /// The eventfd.
    pub fd: i32,
    /// `ACRN_IRQFD_FLAG_*`.
    pub flags: u32,
    /// The MSI to inject when the eventfd is signalled.
    pub msi: acrn_msi_entry,
}

// ---------------------------------------------------------------------------------------------
// Compile-time layout checks (x86-64 values, as printed by gcc; they hold on wasm32 too, where
// u64 is 8-aligned as well).
// ---------------------------------------------------------------------------------------------

macro_rules! check_layout {
    ($t:ty, size = $size:expr, align = $align:expr $(, $($field:ident).+ = $off:expr)* $(,)?) => {
        const _: () = assert!(size_of::<$t>() == $size);
        const _: () = assert!(align_of::<$t>() == $align);
        $(const _: () = assert!(offset_of!($t, $($field).+) == $off);)*
    };
}

check_layout!(
    acrn_mmio_request,
    size = 32,
    align = 8,
    direction = 0,
    reserved = 4,
    address = 8,
    size = 16,
    value = 24
);
check_layout!(
    acrn_pio_request,
    size = 32,
    align = 8,
    direction = 0,
    reserved = 4,
    address = 8,
    size = 16,
    value = 24
);
check_layout!(
    acrn_pci_request,
    size = 48,
    align = 8,
    direction = 0,
    reserved = 4,
    size = 16,
    value = 24,
    bus = 28,
    dev = 32,
    func = 36,
    reg = 40
);
check_layout!(
    acrn_io_request_reqs,
    size = 64,
    align = 8,
    pio_request = 0,
    pci_request = 0,
    mmio_request = 0,
    data = 0
);
check_layout!(
    acrn_io_request,
    size = 256,
    align = 256,
    type_ = 0,
    completion_polling = 4,
    reserved0 = 8,
    reqs = 64,
    reqs.pio_request.value = 88,
    reqs.mmio_request.value = 88,
    reqs.pci_request.value = 88,
    reqs.pci_request.bus = 92,
    reqs.pci_request.reg = 104,
    reserved1 = 128,
    kernel_handled = 132,
    processed = 136
);
check_layout!(
    acrn_io_request_buffer,
    size = 4096,
    align = 256,
    req_slot = 0,
    reserved = 0
);
check_layout!(
    acrn_ioreq_notify,
    size = 8,
    align = 4,
    vmid = 0,
    reserved = 2,
    vcpu = 4
);
check_layout!(
    acrn_vm_creation,
    size = 48,
    align = 8,
    vmid = 0,
    reserved0 = 2,
    vcpu_num = 4,
    reserved1 = 6,
    uuid = 8,
    vm_flag = 24,
    ioreq_buf = 32,
    cpu_affinity = 40
);
check_layout!(
    acrn_gp_regs,
    size = 128,
    align = 8,
    rax = 0,
    rcx = 8,
    rdx = 16,
    rbx = 24,
    rsp = 32,
    rbp = 40,
    rsi = 48,
    rdi = 56,
    r8 = 64,
    r9 = 72,
    r10 = 80,
    r11 = 88,
    r12 = 96,
    r13 = 104,
    r14 = 112,
    r15 = 120
);
check_layout!(
    acrn_descriptor_ptr,
    size = 16,
    align = 1,
    limit = 0,
    base = 2,
    reserved = 10
);
check_layout!(
    acrn_regs,
    size = 288,
    align = 8,
    gprs = 0,
    gdt = 128,
    idt = 144,
    rip = 160,
    cs_base = 168,
    cr0 = 176,
    cr4 = 184,
    cr3 = 192,
    ia32_efer = 200,
    rflags = 208,
    reserved_64 = 216,
    cs_ar = 248,
    cs_limit = 252,
    reserved_32 = 256,
    cs_sel = 268,
    ss_sel = 270,
    ds_sel = 272,
    es_sel = 274,
    fs_sel = 276,
    gs_sel = 278,
    ldt_sel = 280,
    tr_sel = 282
);
check_layout!(
    acrn_vcpu_regs,
    size = 296,
    align = 8,
    vcpu_id = 0,
    reserved = 2,
    vcpu_regs = 8
);
check_layout!(
    acrn_vm_memmap_addr,
    size = 8,
    align = 8,
    service_vm_pa = 0,
    vma_base = 0
);
check_layout!(
    acrn_vm_memmap,
    size = 32,
    align = 8,
    type_ = 0,
    attr = 4,
    user_vm_pa = 8,
    addr = 16,
    addr.service_vm_pa = 16,
    addr.vma_base = 16,
    len = 24
);
check_layout!(
    acrn_ptdev_irq_intx,
    size = 12,
    align = 4,
    virt_pin = 0,
    phys_pin = 4,
    is_pic_pin = 8
);
check_layout!(
    acrn_ptdev_irq,
    size = 20,
    align = 4,
    type_ = 0,
    virt_bdf = 4,
    phys_bdf = 6,
    intx = 8,
    intx.virt_pin = 8,
    intx.phys_pin = 12,
    intx.is_pic_pin = 16
);
check_layout!(
    acrn_pcidev,
    size = 36,
    align = 4,
    type_ = 0,
    virt_bdf = 4,
    phys_bdf = 6,
    intr_line = 8,
    intr_pin = 9,
    bar = 12
);
check_layout!(
    acrn_mmiodev_res,
    size = 32,
    align = 8,
    user_vm_pa = 0,
    service_vm_pa = 8,
    size = 16,
    mem_type = 24
);
check_layout!(acrn_mmiodev, size = 104, align = 8, name = 0, res = 8);
check_layout!(
    acrn_vdev_id_fields,
    size = 8,
    align = 4,
    vendor = 0,
    device = 2,
    legacy_id = 4
);
check_layout!(acrn_vdev_id, size = 8, align = 8, value = 0, fields = 0);
check_layout!(
    acrn_vdev,
    size = 192,
    align = 8,
    id = 0,
    id.fields.legacy_id = 4,
    slot = 8,
    io_addr = 16,
    io_size = 40,
    args = 64
);
check_layout!(
    acrn_msi_entry,
    size = 16,
    align = 8,
    msi_addr = 0,
    msi_data = 8
);
check_layout!(
    acrn_acpi_generic_address,
    size = 12,
    align = 1,
    space_id = 0,
    bit_width = 1,
    bit_offset = 2,
    access_size = 3,
    address = 4
);
check_layout!(
    acrn_cstate_data,
    size = 32,
    align = 8,
    cx_reg = 0,
    type_ = 12,
    latency = 16,
    power = 24
);
check_layout!(
    acrn_pstate_data,
    size = 48,
    align = 8,
    core_frequency = 0,
    power = 8,
    transition_latency = 16,
    bus_master_latency = 24,
    control = 32,
    status = 40
);
check_layout!(
    acrn_ioeventfd,
    size = 32,
    align = 8,
    fd = 0,
    flags = 4,
    addr = 8,
    len = 16,
    reserved = 20,
    data = 24
);
check_layout!(
    acrn_irqfd,
    size = 24,
    align = 8,
    fd = 0,
    flags = 4,
    msi = 8,
    msi.msi_data = 16
);

const _: () = assert!(ACRN_MEM_ACCESS_RWX == 7);
const _: () = assert!(size_of::<acrn_io_request_buffer>() == 256 * ACRN_IO_REQUEST_MAX);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_zero() {
        let page = acrn_io_request_buffer::default();
        for slot in page.req_slot() {
            assert_eq!(slot.type_, 0);
            assert_eq!(slot.processed, 0);
            assert_eq!(slot.kernel_handled, 0);
        }
        let vdev = acrn_vdev::default();
        assert_eq!(vdev.id.value(), 0);
        assert!(vdev.args.iter().all(|b| *b == 0));
    }

    #[test]
    fn memmap_union_accessors() {
        let mut m = acrn_vm_memmap::default();
        m.set_vma_base(0x7f00_0000_1000);
        assert_eq!(m.vma_base(), 0x7f00_0000_1000);
        assert_eq!(m.service_vm_pa(), 0x7f00_0000_1000);
        m.set_service_vm_pa(0xfe00_0000);
        assert_eq!(m.vma_base(), 0xfe00_0000);
    }

    #[test]
    fn vdev_id_fields_alias_value_little_endian() {
        let id = acrn_vdev_id {
            fields: acrn_vdev_id_fields {
                vendor: 0x8086,
                device: 0x1234,
                legacy_id: 7,
            },
        };
        // On a little-endian host (x86-64, wasm32) vendor is the low 16 bits.
        if cfg!(target_endian = "little") {
            assert_eq!(id.value(), 0x0000_0007_1234_8086);
        }
        assert_eq!(id.fields().device, 0x1234);
    }

    #[test]
    fn req_slot_mut_writes_are_visible() {
        let mut page = acrn_io_request_buffer::default();
        page.req_slot_mut()[5].processed = ACRN_IOREQ_STATE_FREE;
        assert_eq!(page.req_slot()[5].processed, 3);
        assert_eq!(page.req_slot()[4].processed, 0);
    }
}
