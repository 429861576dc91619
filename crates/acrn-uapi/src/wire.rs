//! The ABI as the raw interface sees it: argument *bytes*. Backends (the real device, the
//! emulator) and the typed API read and write ioctl arguments as byte arrays at the offsets
//! below, every one of them **derived from the structs of [`bindings`](crate::bindings)**
//! (`offset_of!`), and find how an ioctl takes its argument in the one ioctl table
//! ([`IOCTL_TABLE`]). Short names (`CREATE_VM`, `STATE_PENDING`) are re-exports of the C-named
//! constants, so every fact of the header has one source.

use core::mem::{offset_of, size_of};

use crate::bindings as b;
use crate::{ioctl, ioreq};

pub use crate::ioctl::{ioc_dir, ioc_size};

/// The ioctl type of ACRN (`ACRN_IOCTL_TYPE`).
pub const TYPE: u32 = ioctl::ACRN_IOCTL_TYPE;

pub use crate::ioctl::{
    ACRN_IOCTL_ASSIGN_MMIODEV as ASSIGN_MMIODEV, ACRN_IOCTL_ASSIGN_PCIDEV as ASSIGN_PCIDEV,
    ACRN_IOCTL_ATTACH_IOREQ_CLIENT as ATTACH_IOREQ_CLIENT,
    ACRN_IOCTL_CLEAR_VM_IOREQ as CLEAR_VM_IOREQ,
    ACRN_IOCTL_CREATE_IOREQ_CLIENT as CREATE_IOREQ_CLIENT, ACRN_IOCTL_CREATE_VDEV as CREATE_VDEV,
    ACRN_IOCTL_CREATE_VM as CREATE_VM, ACRN_IOCTL_DEASSIGN_MMIODEV as DEASSIGN_MMIODEV,
    ACRN_IOCTL_DEASSIGN_PCIDEV as DEASSIGN_PCIDEV,
    ACRN_IOCTL_DESTROY_IOREQ_CLIENT as DESTROY_IOREQ_CLIENT,
    ACRN_IOCTL_DESTROY_VDEV as DESTROY_VDEV, ACRN_IOCTL_DESTROY_VM as DESTROY_VM,
    ACRN_IOCTL_INJECT_MSI as INJECT_MSI, ACRN_IOCTL_IOEVENTFD as IOEVENTFD,
    ACRN_IOCTL_IRQFD as IRQFD, ACRN_IOCTL_NOTIFY_REQUEST_FINISH as NOTIFY_REQUEST_FINISH,
    ACRN_IOCTL_PAUSE_VM as PAUSE_VM, ACRN_IOCTL_PM_GET_CPU_STATE as PM_GET_CPU_STATE,
    ACRN_IOCTL_RESET_PTDEV_INTR as RESET_PTDEV_INTR, ACRN_IOCTL_RESET_VM as RESET_VM,
    ACRN_IOCTL_SET_IRQLINE as SET_IRQLINE, ACRN_IOCTL_SET_MEMSEG as SET_MEMSEG,
    ACRN_IOCTL_SET_PTDEV_INTR as SET_PTDEV_INTR, ACRN_IOCTL_SET_VCPU_REGS as SET_VCPU_REGS,
    ACRN_IOCTL_START_VM as START_VM, ACRN_IOCTL_UNSET_MEMSEG as UNSET_MEMSEG,
    ACRN_IOCTL_VM_INTR_MONITOR as VM_INTR_MONITOR,
};

/// How an ioctl takes its third argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoctlArgKind {
    /// `_IO`: none (ignored).
    None,
    /// The `unsigned long` itself (`SET_IRQLINE`, `VM_INTR_MONITOR`), although the number is
    /// encoded as `_IOW`.
    ByValue,
    /// A pointer to a struct of this size, read by the kernel (`_IOW`).
    In(usize),
    /// A pointer to a struct of this size, read and written back (`_IOWR`).
    InOut(usize),
}

/// One ioctl of `/dev/acrn_hsm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoctlInfo {
    /// The C macro's name without `ACRN_IOCTL_` (`"CREATE_VM"`).
    pub name: &'static str,
    /// The request number.
    pub request: u32,
    /// How it takes its argument.
    pub arg: IoctlArgKind,
}

const fn info(name: &'static str, request: u32, by_value: bool) -> IoctlInfo {
    let size = ioc_size(request);
    let arg = if by_value {
        IoctlArgKind::ByValue
    } else if ioc_dir(request) == 0 || size == 0 {
        IoctlArgKind::None
    } else if ioc_dir(request) == 3 {
        IoctlArgKind::InOut(size)
    } else {
        IoctlArgKind::In(size)
    };
    IoctlInfo { name, request, arg }
}

/// Every ioctl of the header, in header order: the one table the backends, the bindings and the
/// CLI use (the C-named list [`layout::IOCTLS`](crate::layout::IOCTLS) is checked against it).
pub static IOCTL_TABLE: &[IoctlInfo] = &[
    info("CREATE_VM", CREATE_VM, false),
    info("DESTROY_VM", DESTROY_VM, false),
    info("START_VM", START_VM, false),
    info("PAUSE_VM", PAUSE_VM, false),
    info("RESET_VM", RESET_VM, false),
    info("SET_VCPU_REGS", SET_VCPU_REGS, false),
    info("INJECT_MSI", INJECT_MSI, false),
    info("VM_INTR_MONITOR", VM_INTR_MONITOR, true),
    info("SET_IRQLINE", SET_IRQLINE, true),
    info("NOTIFY_REQUEST_FINISH", NOTIFY_REQUEST_FINISH, false),
    info("CREATE_IOREQ_CLIENT", CREATE_IOREQ_CLIENT, false),
    info("ATTACH_IOREQ_CLIENT", ATTACH_IOREQ_CLIENT, false),
    info("DESTROY_IOREQ_CLIENT", DESTROY_IOREQ_CLIENT, false),
    info("CLEAR_VM_IOREQ", CLEAR_VM_IOREQ, false),
    info("SET_MEMSEG", SET_MEMSEG, false),
    info("UNSET_MEMSEG", UNSET_MEMSEG, false),
    info("SET_PTDEV_INTR", SET_PTDEV_INTR, false),
    info("RESET_PTDEV_INTR", RESET_PTDEV_INTR, false),
    info("ASSIGN_PCIDEV", ASSIGN_PCIDEV, false),
    info("DEASSIGN_PCIDEV", DEASSIGN_PCIDEV, false),
    info("ASSIGN_MMIODEV", ASSIGN_MMIODEV, false),
    info("DEASSIGN_MMIODEV", DEASSIGN_MMIODEV, false),
    info("CREATE_VDEV", CREATE_VDEV, false),
    info("DESTROY_VDEV", DESTROY_VDEV, false),
    info("PM_GET_CPU_STATE", PM_GET_CPU_STATE, false),
    info("IOEVENTFD", IOEVENTFD, false),
    info("IRQFD", IRQFD, false),
];

/// The table entry of `request`, if it is an ACRN ioctl.
pub fn ioctl_info(request: u32) -> Option<&'static IoctlInfo> {
    IOCTL_TABLE.iter().find(|i| i.request == request)
}

/// Requests whose argument is passed *by value* (the `unsigned long` itself), not as a pointer.
pub const fn is_by_value(request: u32) -> bool {
    matches!(request, SET_IRQLINE | VM_INTR_MONITOR)
}

/// What `pmcmd_ioctl` copies back over PM_GET_CPU_STATE's argument for the command in `cmd`
/// (its first 8 bytes): 8 for the counts, `acrn_pstate_data` (48) for PX_DATA,
/// `acrn_cstate_data` (32) for CX_DATA, nothing for an unknown type.
pub fn pm_write_back_len(cmd: &[u8]) -> usize {
    match cmd.first().copied().map(u32::from) {
        Some(b::ACRN_PMCMD_GET_PX_CNT) | Some(b::ACRN_PMCMD_GET_CX_CNT) => size_of::<u64>(),
        Some(b::ACRN_PMCMD_GET_PX_DATA) => size_of::<b::acrn_pstate_data>(),
        Some(b::ACRN_PMCMD_GET_CX_DATA) => size_of::<b::acrn_cstate_data>(),
        _ => 0,
    }
}

/// `ACRN_INVALID_VMID` (drivers/virt/acrn/acrn_drv.h; not in the uapi header).
pub const INVALID_VMID: u16 = 0xffff;
/// `ACRN_IO_REQUEST_MAX`.
pub const IO_REQUEST_MAX: usize = b::ACRN_IO_REQUEST_MAX;
/// `ACRN_MEM_MAPPING_MAX` (drivers/virt/acrn/acrn_drv.h; not in the uapi header).
pub const MEM_MAPPING_MAX: usize = 256;

pub use crate::bindings::{
    ACRN_IOEVENTFD_FLAG_DATAMATCH as IOEVENTFD_FLAG_DATAMATCH,
    ACRN_IOEVENTFD_FLAG_DEASSIGN as IOEVENTFD_FLAG_DEASSIGN,
    ACRN_IOEVENTFD_FLAG_PIO as IOEVENTFD_FLAG_PIO, ACRN_IOREQ_DIR_READ as DIR_READ,
    ACRN_IOREQ_DIR_WRITE as DIR_WRITE, ACRN_IOREQ_STATE_COMPLETE as STATE_COMPLETE,
    ACRN_IOREQ_STATE_FREE as STATE_FREE, ACRN_IOREQ_STATE_PENDING as STATE_PENDING,
    ACRN_IOREQ_STATE_PROCESSING as STATE_PROCESSING, ACRN_IOREQ_TYPE_MMIO as TYPE_MMIO,
    ACRN_IOREQ_TYPE_PCICFG as TYPE_PCICFG, ACRN_IOREQ_TYPE_PORTIO as TYPE_PORTIO,
    ACRN_IRQFD_FLAG_DEASSIGN as IRQFD_FLAG_DEASSIGN,
    ACRN_MEM_ACCESS_RIGHT_MASK as MEM_ACCESS_RIGHT_MASK, ACRN_MEMMAP_MMIO as MEMMAP_MMIO,
    ACRN_MEMMAP_RAM as MEMMAP_RAM,
};

/// `GUEST_FLAG_IO_COMPLETION_POLLING` of the hypervisor (`acrn_common.h`, `1UL << 2`). The uapi
/// header has no `ACRN_VM_FLAG_*` macros: `vm_flag` is passed to the hypervisor unchanged.
pub const GUEST_FLAG_IO_COMPLETION_POLLING: u64 = 1 << 2;
/// `GUEST_FLAG_RT` (`1UL << 4`).
pub const GUEST_FLAG_RT: u64 = 1 << 4;
/// `GUEST_FLAG_SECURE_WORLD_ENABLED` (`1UL << 0`).
pub const GUEST_FLAG_SECURE_WORLD_ENABLED: u64 = 1;
/// The `vm_flag` bits the hypervisor accepts from the device model (the emulator's
/// `DM_OWNED_GUEST_FLAG_MASK`): secure world, LAPIC passthrough, I/O completion polling, RT.
pub const DM_OWNED_GUEST_FLAG_MASK: u64 = GUEST_FLAG_SECURE_WORLD_ENABLED
    | GUEST_FLAG_LAPIC_PASSTHROUGH
    | GUEST_FLAG_IO_COMPLETION_POLLING
    | GUEST_FLAG_RT;
/// `GUEST_FLAG_LAPIC_PASSTHROUGH` (`1UL << 1`).
pub const GUEST_FLAG_LAPIC_PASSTHROUGH: u64 = 1 << 1;

/// Byte offsets of `struct acrn_io_request` (256 bytes, one slot).
pub mod slot {
    use super::ioreq as u;
    /// `sizeof(struct acrn_io_request)`.
    pub const SIZE: usize = u::SLOT_SIZE;
    /// `type`.
    pub const TYPE: usize = u::SLOT_OFFSET_TYPE;
    /// `completion_polling`.
    pub const COMPLETION_POLLING: usize = u::SLOT_OFFSET_COMPLETION_POLLING;
    /// `reqs`.
    pub const REQS: usize = u::SLOT_OFFSET_REQS;
    /// `kernel_handled`.
    pub const KERNEL_HANDLED: usize = u::SLOT_OFFSET_KERNEL_HANDLED;
    /// `processed`.
    pub const PROCESSED: usize = u::SLOT_OFFSET_PROCESSED;
    /// `reqs.*.direction` (pio, mmio and pci share direction, size and value).
    pub const DIRECTION: usize = u::SLOT_OFFSET_DIRECTION;
    /// `reqs.{pio,mmio}_request.address`.
    pub const ADDRESS: usize = u::SLOT_OFFSET_ADDRESS;
    /// `reqs.*.size`.
    pub const SIZE_FIELD: usize = u::SLOT_OFFSET_SIZE;
    /// `reqs.*.value`.
    pub const VALUE: usize = u::SLOT_OFFSET_VALUE;
    /// `reqs.pci_request.bus`.
    pub const PCI_BUS: usize = u::SLOT_OFFSET_PCI_BUS;
    /// `reqs.pci_request.dev`.
    pub const PCI_DEV: usize = u::SLOT_OFFSET_PCI_DEV;
    /// `reqs.pci_request.func`.
    pub const PCI_FUNC: usize = u::SLOT_OFFSET_PCI_FUNC;
    /// `reqs.pci_request.reg`.
    pub const PCI_REG: usize = u::SLOT_OFFSET_PCI_REG;
}

macro_rules! offsets {
    ($(#[$doc:meta])* $m:ident : $ty:ty { $($(#[$fdoc:meta])* $name:ident = $($field:ident).+ $(+ $extra:expr)?;)* }) => {
        $(#[$doc])*
        pub mod $m {
            use super::*;
            /// The struct's size.
            pub const SIZE: usize = size_of::<$ty>();
            $($(#[$fdoc])* pub const $name: usize = offset_of!($ty, $($field).+) $(+ $extra)?;)*
        }
    };
}

offsets!(
    /// Byte offsets of `struct acrn_vm_creation`.
    vm_creation: b::acrn_vm_creation {
        /// `vmid`.
        VMID = vmid;
        /// `reserved0`.
        RESERVED0 = reserved0;
        /// `vcpu_num`.
        VCPU_NUM = vcpu_num;
        /// `reserved1`.
        RESERVED1 = reserved1;
        /// `uuid`.
        UUID = uuid;
        /// `vm_flag`.
        VM_FLAG = vm_flag;
        /// `ioreq_buf`.
        IOREQ_BUF = ioreq_buf;
        /// `cpu_affinity`.
        CPU_AFFINITY = cpu_affinity;
    }
);

offsets!(
    /// Byte offsets of `struct acrn_vcpu_regs` (`struct acrn_regs` at `REGS`).
    vcpu_regs: b::acrn_vcpu_regs {
        /// `vcpu_id`.
        VCPU_ID = vcpu_id;
        /// `reserved` (`u16[3]`).
        RESERVED = reserved;
        /// `vcpu_regs`.
        REGS = vcpu_regs;
        /// `vcpu_regs.gprs.rax`.
        RAX = vcpu_regs.gprs.rax;
        /// `vcpu_regs.gdt.reserved` (`u16[3]`).
        GDT_RESERVED = vcpu_regs.gdt.reserved;
        /// `vcpu_regs.idt.reserved` (`u16[3]`).
        IDT_RESERVED = vcpu_regs.idt.reserved;
        /// `vcpu_regs.rip`.
        RIP = vcpu_regs.rip;
        /// `vcpu_regs.cr0`.
        CR0 = vcpu_regs.cr0;
        /// `vcpu_regs.cr4`.
        CR4 = vcpu_regs.cr4;
        /// `vcpu_regs.reserved_64` (`u64[4]`).
        RESERVED_64 = vcpu_regs.reserved_64;
        /// `vcpu_regs.reserved_32` (`u32[3]`).
        RESERVED_32 = vcpu_regs.reserved_32;
    }
);

offsets!(
    /// Byte offsets inside `struct acrn_regs` (the 288 bytes SET_VCPU_REGS carries at
    /// [`vcpu_regs::REGS`]).
    regs: b::acrn_regs {
        /// `gprs` (rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8..r15: 16 × u64).
        GPRS = gprs;
        /// `gdt.limit`.
        GDT_LIMIT = gdt.limit;
        /// `gdt.base`.
        GDT_BASE = gdt.base;
        /// `idt.limit`.
        IDT_LIMIT = idt.limit;
        /// `idt.base`.
        IDT_BASE = idt.base;
        /// `rip`.
        RIP = rip;
        /// `cs_base`.
        CS_BASE = cs_base;
        /// `cr0`.
        CR0 = cr0;
        /// `cr4`.
        CR4 = cr4;
        /// `cr3`.
        CR3 = cr3;
        /// `ia32_efer`.
        IA32_EFER = ia32_efer;
        /// `rflags`.
        RFLAGS = rflags;
        /// `cs_ar`.
        CS_AR = cs_ar;
        /// `cs_limit`.
        CS_LIMIT = cs_limit;
        /// `cs_sel`, followed by ss, ds, es, fs, gs, ldt and tr (8 × u16).
        SELECTORS = cs_sel;
    }
);

offsets!(
    /// Byte offsets of `struct acrn_vm_memmap`.
    memmap: b::acrn_vm_memmap {
        /// `type`.
        TYPE = type_;
        /// `attr`.
        ATTR = attr;
        /// `user_vm_pa`.
        USER_VM_PA = user_vm_pa;
        /// `vma_base` (a union with `service_vm_pa`).
        VMA_BASE = addr;
        /// `len`.
        LEN = len;
    }
);

offsets!(
    /// Byte offsets of `struct acrn_ioreq_notify`.
    notify: b::acrn_ioreq_notify {
        /// `vmid`.
        VMID = vmid;
        /// `reserved`.
        RESERVED = reserved;
        /// `vcpu`.
        VCPU = vcpu;
    }
);

offsets!(
    /// Byte offsets of `struct acrn_msi_entry`.
    msi: b::acrn_msi_entry {
        /// `msi_addr`.
        ADDR = msi_addr;
        /// `msi_data`.
        DATA = msi_data;
    }
);

offsets!(
    /// Byte offsets of `struct acrn_ptdev_irq`.
    ptdev_irq: b::acrn_ptdev_irq {
        /// `type`.
        TYPE = type_;
        /// `virt_bdf`.
        VIRT_BDF = virt_bdf;
        /// `phys_bdf`.
        PHYS_BDF = phys_bdf;
        /// `intx.virt_pin`.
        VIRT_PIN = intx.virt_pin;
        /// `intx.phys_pin`.
        PHYS_PIN = intx.phys_pin;
        /// `intx.is_pic_pin`.
        IS_PIC_PIN = intx.is_pic_pin;
    }
);

offsets!(
    /// Byte offsets of `struct acrn_pcidev`.
    pcidev: b::acrn_pcidev {
        /// `type`.
        TYPE = type_;
        /// `virt_bdf`.
        VIRT_BDF = virt_bdf;
        /// `phys_bdf`.
        PHYS_BDF = phys_bdf;
        /// `intr_line`.
        INTR_LINE = intr_line;
        /// `intr_pin`.
        INTR_PIN = intr_pin;
        /// `bar` (`u32[6]`).
        BAR = bar;
    }
);

offsets!(
    /// Byte offsets of `struct acrn_mmiodev`: `name[8]`, then the resources
    /// `{user_vm_pa, service_vm_pa, size, mem_type}` of `RES_SIZE` bytes each.
    mmiodev: b::acrn_mmiodev {
        /// `name`.
        NAME = name;
        /// `res`.
        RES = res;
        /// The size of one `struct acrn_mmiodev_res`.
        RES_SIZE = name + size_of::<b::acrn_mmiodev_res>();
    }
);

offsets!(
    /// Byte offsets of `struct acrn_vdev`.
    vdev: b::acrn_vdev {
        /// `id`.
        ID = id;
        /// `slot`.
        SLOT = slot;
        /// `io_addr` (`u32[6]`).
        IO_ADDR = io_addr;
        /// `io_size` (`u32[6]`).
        IO_SIZE = io_size;
        /// `args`.
        ARGS = args;
    }
);

offsets!(
    /// Byte offsets of `struct acrn_ioeventfd`.
    ioeventfd: b::acrn_ioeventfd {
        /// `fd`.
        FD = fd;
        /// `flags`.
        FLAGS = flags;
        /// `addr`.
        ADDR = addr;
        /// `len`.
        LEN = len;
        /// `reserved`.
        RESERVED = reserved;
        /// `data`.
        DATA = data;
    }
);

offsets!(
    /// Byte offsets of `struct acrn_irqfd`.
    irqfd: b::acrn_irqfd {
        /// `fd`.
        FD = fd;
        /// `flags`.
        FLAGS = flags;
        /// `msi.msi_addr`.
        MSI_ADDR = msi.msi_addr;
        /// `msi.msi_data`.
        MSI_DATA = msi.msi_data;
    }
);

/// Little-endian field access on argument bytes. The caller checked the length: an offset past
/// the end panics (a bug of the caller, never of the input).
pub mod le {
    /// The `u16` at `off`.
    pub fn u16_at(b: &[u8], off: usize) -> u16 {
        let mut a = [0u8; 2];
        a.copy_from_slice(&b[off..off + 2]);
        u16::from_le_bytes(a)
    }
    /// The `u32` at `off`.
    pub fn u32_at(b: &[u8], off: usize) -> u32 {
        let mut a = [0u8; 4];
        a.copy_from_slice(&b[off..off + 4]);
        u32::from_le_bytes(a)
    }
    /// The `u64` at `off`.
    pub fn u64_at(b: &[u8], off: usize) -> u64 {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[off..off + 8]);
        u64::from_le_bytes(a)
    }
    /// Stores `v` at `off`.
    pub fn put_u16(b: &mut [u8], off: usize, v: u16) {
        b[off..off + 2].copy_from_slice(&v.to_le_bytes());
    }
    /// Stores `v` at `off`.
    pub fn put_u32(b: &mut [u8], off: usize, v: u32) {
        b[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }
    /// Stores `v` at `off`.
    pub fn put_u64(b: &mut [u8], off: usize, v: u64) {
        b[off..off + 8].copy_from_slice(&v.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_offsets_agree_with_the_semantics_table() {
        // acrn-semantics.md §2 and §3, independent of the derivation above.
        assert_eq!(CREATE_VM, 0xC030_A210);
        assert_eq!(SET_VCPU_REGS, 0x4128_A216);
        assert_eq!(NOTIFY_REQUEST_FINISH, 0x4008_A231);
        assert_eq!(SET_MEMSEG, 0x4020_A241);
        assert_eq!(slot::PROCESSED, 136);
        assert_eq!(slot::KERNEL_HANDLED, 132);
        assert_eq!(slot::VALUE, 88);
        assert_eq!(vm_creation::SIZE, 48);
        assert_eq!(vm_creation::IOREQ_BUF, 32);
        assert_eq!(vm_creation::CPU_AFFINITY, 40);
        assert_eq!(vcpu_regs::SIZE, 296);
        assert_eq!(vcpu_regs::RIP, 8 + 160);
        assert_eq!(vcpu_regs::GDT_RESERVED, 8 + 128 + 10);
        assert_eq!(vcpu_regs::RESERVED_32, 8 + 256);
        assert_eq!(regs::SIZE, 288);
        assert_eq!(
            (regs::GDT_LIMIT, regs::GDT_BASE, regs::IDT_BASE),
            (128, 130, 146)
        );
        assert_eq!(
            (regs::RIP, regs::CS_BASE, regs::CR3, regs::RFLAGS),
            (160, 168, 192, 208)
        );
        assert_eq!(
            (regs::CS_AR, regs::CS_LIMIT, regs::SELECTORS),
            (248, 252, 268)
        );
        assert_eq!(memmap::VMA_BASE, 16);
        assert_eq!(notify::VCPU, 4);
        assert_eq!(ioeventfd::DATA, 24);
        assert_eq!(irqfd::MSI_DATA, 16);
        assert_eq!(
            (ptdev_irq::SIZE, ptdev_irq::VIRT_PIN, ptdev_irq::IS_PIC_PIN),
            (20, 8, 16)
        );
        assert_eq!((pcidev::SIZE, pcidev::INTR_PIN, pcidev::BAR), (36, 9, 12));
        assert_eq!(
            (mmiodev::SIZE, mmiodev::RES, mmiodev::RES_SIZE),
            (104, 8, 32)
        );
        assert_eq!(
            (vdev::SIZE, vdev::SLOT, vdev::IO_SIZE, vdev::ARGS),
            (192, 8, 40, 64)
        );
    }

    #[test]
    fn the_ioctl_table_covers_the_header_once() {
        assert_eq!(IOCTL_TABLE.len(), crate::layout::IOCTLS.len());
        for (c_name, request) in crate::layout::IOCTLS {
            let i = ioctl_info(*request).expect("in the table");
            assert_eq!(alloc_free_concat(i.name), *c_name);
            assert_eq!(is_by_value(*request), i.arg == IoctlArgKind::ByValue);
        }
        assert_eq!(
            ioctl_info(CREATE_VM).map(|i| i.arg),
            Some(IoctlArgKind::InOut(48))
        );
        assert_eq!(
            ioctl_info(START_VM).map(|i| i.arg),
            Some(IoctlArgKind::None)
        );
        assert_eq!(ioctl_info(0xdead), None);
    }

    fn alloc_free_concat(name: &str) -> std::string::String {
        std::format!("ACRN_IOCTL_{name}")
    }
}
