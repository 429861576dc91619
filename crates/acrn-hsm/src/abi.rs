//! The pieces of `<linux/acrn.h>` this crate needs: ioctl numbers and constants (taken from
//! `acrn_uapi`), and byte offsets.
//!
//! The emulator and the typed API work on the argument *bytes* (the raw interface is bytes), so
//! they use offsets into each struct rather than the structs themselves. Every offset here is
//! checked against `acrn_uapi::bindings` (`offset_of!`) in the tests at the bottom of this file.

#![allow(dead_code)]

use acrn_uapi::{bindings as b, ioctl, ioreq};

/// `_IOC(dir, type, nr, size)` from `<asm-generic/ioctl.h>`.
pub(crate) const fn ioc(dir: u32, ty: u32, nr: u32, size: u32) -> u32 {
    (dir << 30) | (size << 16) | (ty << 8) | nr
}
const NONE: u32 = 0;
const WRITE: u32 = 1;
const READ: u32 = 2;
/// The ioctl type of ACRN (`ACRN_IOCTL_TYPE`).
pub(crate) const TYPE: u32 = 0xA2;

/// The direction bits of a request (`_IOC_DIR`): bit 0 = userspace writes (kernel reads), bit 1 =
/// kernel writes back.
pub(crate) const fn ioc_dir(request: u32) -> u32 {
    request >> 30
}
/// The argument size encoded in a request (`_IOC_SIZE`).
pub(crate) const fn ioc_size(request: u32) -> usize {
    ((request >> 16) & 0x3fff) as usize
}

pub(crate) const CREATE_VM: u32 = ioctl::ACRN_IOCTL_CREATE_VM;
pub(crate) const DESTROY_VM: u32 = ioctl::ACRN_IOCTL_DESTROY_VM;
pub(crate) const START_VM: u32 = ioctl::ACRN_IOCTL_START_VM;
pub(crate) const PAUSE_VM: u32 = ioctl::ACRN_IOCTL_PAUSE_VM;
pub(crate) const RESET_VM: u32 = ioctl::ACRN_IOCTL_RESET_VM;
pub(crate) const SET_VCPU_REGS: u32 = ioctl::ACRN_IOCTL_SET_VCPU_REGS;
pub(crate) const INJECT_MSI: u32 = ioctl::ACRN_IOCTL_INJECT_MSI;
pub(crate) const VM_INTR_MONITOR: u32 = ioctl::ACRN_IOCTL_VM_INTR_MONITOR;
pub(crate) const SET_IRQLINE: u32 = ioctl::ACRN_IOCTL_SET_IRQLINE;
pub(crate) const NOTIFY_REQUEST_FINISH: u32 = ioctl::ACRN_IOCTL_NOTIFY_REQUEST_FINISH;
pub(crate) const CREATE_IOREQ_CLIENT: u32 = ioctl::ACRN_IOCTL_CREATE_IOREQ_CLIENT;
pub(crate) const ATTACH_IOREQ_CLIENT: u32 = ioctl::ACRN_IOCTL_ATTACH_IOREQ_CLIENT;
pub(crate) const DESTROY_IOREQ_CLIENT: u32 = ioctl::ACRN_IOCTL_DESTROY_IOREQ_CLIENT;
pub(crate) const CLEAR_VM_IOREQ: u32 = ioctl::ACRN_IOCTL_CLEAR_VM_IOREQ;
pub(crate) const SET_MEMSEG: u32 = ioctl::ACRN_IOCTL_SET_MEMSEG;
pub(crate) const UNSET_MEMSEG: u32 = ioctl::ACRN_IOCTL_UNSET_MEMSEG;
pub(crate) const SET_PTDEV_INTR: u32 = ioctl::ACRN_IOCTL_SET_PTDEV_INTR;
pub(crate) const RESET_PTDEV_INTR: u32 = ioctl::ACRN_IOCTL_RESET_PTDEV_INTR;
pub(crate) const ASSIGN_PCIDEV: u32 = ioctl::ACRN_IOCTL_ASSIGN_PCIDEV;
pub(crate) const DEASSIGN_PCIDEV: u32 = ioctl::ACRN_IOCTL_DEASSIGN_PCIDEV;
pub(crate) const ASSIGN_MMIODEV: u32 = ioctl::ACRN_IOCTL_ASSIGN_MMIODEV;
pub(crate) const DEASSIGN_MMIODEV: u32 = ioctl::ACRN_IOCTL_DEASSIGN_MMIODEV;
pub(crate) const CREATE_VDEV: u32 = ioctl::ACRN_IOCTL_CREATE_VDEV;
pub(crate) const DESTROY_VDEV: u32 = ioctl::ACRN_IOCTL_DESTROY_VDEV;
pub(crate) const PM_GET_CPU_STATE: u32 = ioctl::ACRN_IOCTL_PM_GET_CPU_STATE;
pub(crate) const IOEVENTFD: u32 = ioctl::ACRN_IOCTL_IOEVENTFD;
pub(crate) const IRQFD: u32 = ioctl::ACRN_IOCTL_IRQFD;

/// Requests whose argument is passed *by value* (the `unsigned long` itself), not as a pointer.
pub(crate) const fn is_by_value(request: u32) -> bool {
    matches!(request, SET_IRQLINE | VM_INTR_MONITOR)
}

/// What `pmcmd_ioctl` copies back over PM_GET_CPU_STATE's argument for the command in `cmd`
/// (its first 8 bytes): 8 for the counts, `acrn_pstate_data` (48) for PX_DATA,
/// `acrn_cstate_data` (32) for CX_DATA, nothing for an unknown type.
pub(crate) fn pm_write_back_len(cmd: &[u8]) -> usize {
    match cmd.first().copied().unwrap_or(0xff) {
        0 | 2 => 8,
        1 => 48,
        3 => 32,
        _ => 0,
    }
}

/// `ACRN_INVALID_VMID` (drivers/virt/acrn/acrn_drv.h).
pub(crate) const INVALID_VMID: u16 = 0xffff;
/// `ACRN_IO_REQUEST_MAX`.
pub(crate) const IO_REQUEST_MAX: usize = 16;
/// `ACRN_MEM_MAPPING_MAX` (acrn_drv.h).
pub(crate) const MEM_MAPPING_MAX: usize = 256;

pub(crate) const STATE_PENDING: u32 = b::ACRN_IOREQ_STATE_PENDING;
pub(crate) const STATE_COMPLETE: u32 = b::ACRN_IOREQ_STATE_COMPLETE;
pub(crate) const STATE_PROCESSING: u32 = b::ACRN_IOREQ_STATE_PROCESSING;
pub(crate) const STATE_FREE: u32 = b::ACRN_IOREQ_STATE_FREE;

pub(crate) const TYPE_PORTIO: u32 = b::ACRN_IOREQ_TYPE_PORTIO;
pub(crate) const TYPE_MMIO: u32 = b::ACRN_IOREQ_TYPE_MMIO;
pub(crate) const TYPE_PCICFG: u32 = b::ACRN_IOREQ_TYPE_PCICFG;

pub(crate) const DIR_READ: u32 = b::ACRN_IOREQ_DIR_READ;
pub(crate) const DIR_WRITE: u32 = b::ACRN_IOREQ_DIR_WRITE;

pub(crate) const MEMMAP_RAM: u32 = 0;
pub(crate) const MEMMAP_MMIO: u32 = 1;
pub(crate) const MEM_ACCESS_RIGHT_MASK: u32 = 7;

pub(crate) const IOEVENTFD_FLAG_PIO: u32 = 0x01;
pub(crate) const IOEVENTFD_FLAG_DATAMATCH: u32 = 0x02;
pub(crate) const IOEVENTFD_FLAG_DEASSIGN: u32 = 0x04;
pub(crate) const IRQFD_FLAG_DEASSIGN: u32 = 0x01;

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
pub(crate) mod slot {
    use super::ioreq as u;
    pub const SIZE: usize = u::SLOT_SIZE;
    pub const TYPE: usize = u::SLOT_OFFSET_TYPE;
    pub const COMPLETION_POLLING: usize = u::SLOT_OFFSET_COMPLETION_POLLING;
    pub const REQS: usize = u::SLOT_OFFSET_REQS;
    pub const KERNEL_HANDLED: usize = u::SLOT_OFFSET_KERNEL_HANDLED;
    pub const PROCESSED: usize = u::SLOT_OFFSET_PROCESSED;
    // pio/mmio/pci share direction@0, size@16, value@24 of `reqs`.
    pub const DIRECTION: usize = u::SLOT_OFFSET_DIRECTION;
    pub const ADDRESS: usize = u::SLOT_OFFSET_ADDRESS;
    pub const SIZE_FIELD: usize = u::SLOT_OFFSET_SIZE;
    pub const VALUE: usize = u::SLOT_OFFSET_VALUE;
    pub const PCI_BUS: usize = u::SLOT_OFFSET_PCI_BUS;
    pub const PCI_DEV: usize = u::SLOT_OFFSET_PCI_DEV;
    pub const PCI_FUNC: usize = u::SLOT_OFFSET_PCI_FUNC;
    pub const PCI_REG: usize = u::SLOT_OFFSET_PCI_REG;
}

/// Byte offsets of `struct acrn_vm_creation` (48 bytes).
pub(crate) mod vm_creation {
    pub const SIZE: usize = 48;
    pub const VMID: usize = 0;
    pub const RESERVED0: usize = 2;
    pub const VCPU_NUM: usize = 4;
    pub const RESERVED1: usize = 6;
    pub const UUID: usize = 8;
    pub const VM_FLAG: usize = 24;
    pub const IOREQ_BUF: usize = 32;
    pub const CPU_AFFINITY: usize = 40;
}

/// Byte offsets of `struct acrn_vcpu_regs` (296 bytes; `acrn_regs` at 8).
pub(crate) mod vcpu_regs {
    pub const SIZE: usize = 296;
    pub const VCPU_ID: usize = 0;
    pub const RESERVED: usize = 2; // u16[3]
    pub const REGS: usize = 8;
    pub const RAX: usize = REGS;
    pub const GDT_RESERVED: usize = REGS + 128 + 10; // u16[3]
    pub const IDT_RESERVED: usize = REGS + 144 + 10; // u16[3]
    pub const RIP: usize = REGS + 160;
    pub const CR0: usize = REGS + 176;
    pub const CR4: usize = REGS + 184;
    pub const RESERVED_64: usize = REGS + 216; // u64[4]
    pub const RESERVED_32: usize = REGS + 256; // u32[3]
}

/// Byte offsets of `struct acrn_vm_memmap` (32 bytes).
pub(crate) mod memmap {
    pub const SIZE: usize = 32;
    pub const TYPE: usize = 0;
    pub const ATTR: usize = 4;
    pub const USER_VM_PA: usize = 8;
    pub const VMA_BASE: usize = 16; // union with service_vm_pa
    pub const LEN: usize = 24;
}

/// `struct acrn_ioreq_notify` (8 bytes).
pub(crate) mod notify {
    pub const SIZE: usize = 8;
    pub const VMID: usize = 0;
    pub const RESERVED: usize = 2;
    pub const VCPU: usize = 4;
}

/// `struct acrn_msi_entry` (16 bytes).
pub(crate) mod msi {
    pub const SIZE: usize = 16;
    pub const ADDR: usize = 0;
    pub const DATA: usize = 8;
}

/// `struct acrn_ptdev_irq` (20 bytes).
pub(crate) mod ptdev_irq {
    pub const SIZE: usize = 20;
    pub const TYPE: usize = 0;
    pub const VIRT_BDF: usize = 4;
    pub const PHYS_BDF: usize = 6;
    pub const VIRT_PIN: usize = 8;
    pub const PHYS_PIN: usize = 12;
    pub const IS_PIC_PIN: usize = 16;
}

/// `struct acrn_pcidev` (36 bytes).
pub(crate) mod pcidev {
    pub const SIZE: usize = 36;
    pub const TYPE: usize = 0;
    pub const VIRT_BDF: usize = 4;
    pub const PHYS_BDF: usize = 6;
    pub const INTR_LINE: usize = 8;
    pub const INTR_PIN: usize = 9;
    pub const BAR: usize = 12;
}

/// `struct acrn_mmiodev` (104 bytes): `name[8]`, then three 32-byte resources
/// `{user_vm_pa, host_pa, size, mem_type}`.
pub(crate) mod mmiodev {
    pub const SIZE: usize = 104;
    pub const NAME: usize = 0;
    pub const RES: usize = 8;
    pub const RES_SIZE: usize = 32;
}

/// `struct acrn_vdev` (192 bytes).
pub(crate) mod vdev {
    pub const SIZE: usize = 192;
    pub const ID: usize = 0;
    pub const SLOT: usize = 8;
    pub const IO_ADDR: usize = 16;
    pub const IO_SIZE: usize = 40;
    pub const ARGS: usize = 64;
}

/// `struct acrn_ioeventfd` (32 bytes).
pub(crate) mod ioeventfd {
    pub const SIZE: usize = 32;
    pub const FD: usize = 0;
    pub const FLAGS: usize = 4;
    pub const ADDR: usize = 8;
    pub const LEN: usize = 16;
    pub const RESERVED: usize = 20;
    pub const DATA: usize = 24;
}

/// `struct acrn_irqfd` (24 bytes).
pub(crate) mod irqfd {
    pub const SIZE: usize = 24;
    pub const FD: usize = 0;
    pub const FLAGS: usize = 4;
    pub const MSI_ADDR: usize = 8;
    pub const MSI_DATA: usize = 16;
}

/// Little-endian field access on argument bytes (the caller checked the length).
pub(crate) mod le {
    pub fn u16_at(b: &[u8], off: usize) -> u16 {
        let mut a = [0u8; 2];
        a.copy_from_slice(&b[off..off + 2]);
        u16::from_le_bytes(a)
    }
    pub fn u32_at(b: &[u8], off: usize) -> u32 {
        let mut a = [0u8; 4];
        a.copy_from_slice(&b[off..off + 4]);
        u32::from_le_bytes(a)
    }
    pub fn u64_at(b: &[u8], off: usize) -> u64 {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[off..off + 8]);
        u64::from_le_bytes(a)
    }
    pub fn put_u16(b: &mut [u8], off: usize, v: u16) {
        b[off..off + 2].copy_from_slice(&v.to_le_bytes());
    }
    pub fn put_u32(b: &mut [u8], off: usize, v: u32) {
        b[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }
    pub fn put_u64(b: &mut [u8], off: usize, v: u64) {
        b[off..off + 8].copy_from_slice(&v.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_the_semantics_table() {
        assert_eq!(CREATE_VM, 0xC030_A210);
        assert_eq!(DESTROY_VM, 0xA211);
        assert_eq!(SET_VCPU_REGS, 0x4128_A216);
        assert_eq!(NOTIFY_REQUEST_FINISH, 0x4008_A231);
        assert_eq!(SET_MEMSEG, 0x4020_A241);
        assert_eq!(UNSET_MEMSEG, 0x4020_A242);
        assert_eq!(INJECT_MSI, 0x4010_A223);
        assert_eq!(SET_IRQLINE, 0x4008_A225);
        assert_eq!(IOEVENTFD, 0x4020_A270);
        assert_eq!(IRQFD, 0x4018_A271);
        assert_eq!(PM_GET_CPU_STATE, 0xC008_A260);
        assert_eq!(ioc_size(CREATE_VM), 48);
        assert_eq!(ioc_dir(CREATE_VM), 3);
        assert_eq!(ioc(READ | WRITE, TYPE, 0x10, 48), CREATE_VM);
        assert_eq!(ioc(NONE, TYPE, 0x35, 0), CLEAR_VM_IOREQ);
    }

    #[test]
    fn offsets_match_the_uapi_structs() {
        use core::mem::{offset_of, size_of};
        assert_eq!(slot::PROCESSED, 136);
        assert_eq!(slot::KERNEL_HANDLED, 132);
        assert_eq!(slot::VALUE, 88);
        assert_eq!(size_of::<b::acrn_vm_creation>(), vm_creation::SIZE);
        assert_eq!(
            offset_of!(b::acrn_vm_creation, reserved0),
            vm_creation::RESERVED0
        );
        assert_eq!(
            offset_of!(b::acrn_vm_creation, vcpu_num),
            vm_creation::VCPU_NUM
        );
        assert_eq!(
            offset_of!(b::acrn_vm_creation, reserved1),
            vm_creation::RESERVED1
        );
        assert_eq!(offset_of!(b::acrn_vm_creation, uuid), vm_creation::UUID);
        assert_eq!(
            offset_of!(b::acrn_vm_creation, vm_flag),
            vm_creation::VM_FLAG
        );
        assert_eq!(
            offset_of!(b::acrn_vm_creation, ioreq_buf),
            vm_creation::IOREQ_BUF
        );
        assert_eq!(
            offset_of!(b::acrn_vm_creation, cpu_affinity),
            vm_creation::CPU_AFFINITY
        );
        assert_eq!(size_of::<b::acrn_vcpu_regs>(), vcpu_regs::SIZE);
        assert_eq!(offset_of!(b::acrn_vcpu_regs, reserved), vcpu_regs::RESERVED);
        assert_eq!(offset_of!(b::acrn_vcpu_regs, vcpu_regs), vcpu_regs::REGS);
        let r = vcpu_regs::REGS;
        assert_eq!(
            r + offset_of!(b::acrn_regs, gdt) + offset_of!(b::acrn_descriptor_ptr, reserved),
            vcpu_regs::GDT_RESERVED
        );
        assert_eq!(
            r + offset_of!(b::acrn_regs, idt) + offset_of!(b::acrn_descriptor_ptr, reserved),
            vcpu_regs::IDT_RESERVED
        );
        assert_eq!(r + offset_of!(b::acrn_regs, rip), vcpu_regs::RIP);
        assert_eq!(r + offset_of!(b::acrn_regs, cr0), vcpu_regs::CR0);
        assert_eq!(r + offset_of!(b::acrn_regs, cr4), vcpu_regs::CR4);
        assert_eq!(
            r + offset_of!(b::acrn_regs, reserved_64),
            vcpu_regs::RESERVED_64
        );
        assert_eq!(
            r + offset_of!(b::acrn_regs, reserved_32),
            vcpu_regs::RESERVED_32
        );
        assert_eq!(r + offset_of!(b::acrn_regs, cs_sel), r + 268);
        assert_eq!(size_of::<b::acrn_vm_memmap>(), memmap::SIZE);
        assert_eq!(offset_of!(b::acrn_vm_memmap, attr), memmap::ATTR);
        assert_eq!(
            offset_of!(b::acrn_vm_memmap, user_vm_pa),
            memmap::USER_VM_PA
        );
        assert_eq!(offset_of!(b::acrn_vm_memmap, addr), memmap::VMA_BASE);
        assert_eq!(offset_of!(b::acrn_vm_memmap, len), memmap::LEN);
        assert_eq!(size_of::<b::acrn_ioreq_notify>(), notify::SIZE);
        assert_eq!(offset_of!(b::acrn_ioreq_notify, reserved), notify::RESERVED);
        assert_eq!(offset_of!(b::acrn_ioreq_notify, vcpu), notify::VCPU);
        assert_eq!(size_of::<b::acrn_msi_entry>(), msi::SIZE);
        assert_eq!(offset_of!(b::acrn_msi_entry, msi_data), msi::DATA);
        assert_eq!(size_of::<b::acrn_ioeventfd>(), ioeventfd::SIZE);
        assert_eq!(offset_of!(b::acrn_ioeventfd, flags), ioeventfd::FLAGS);
        assert_eq!(offset_of!(b::acrn_ioeventfd, addr), ioeventfd::ADDR);
        assert_eq!(offset_of!(b::acrn_ioeventfd, len), ioeventfd::LEN);
        assert_eq!(offset_of!(b::acrn_ioeventfd, reserved), ioeventfd::RESERVED);
        assert_eq!(offset_of!(b::acrn_ioeventfd, data), ioeventfd::DATA);
        assert_eq!(size_of::<b::acrn_irqfd>(), irqfd::SIZE);
        assert_eq!(offset_of!(b::acrn_irqfd, msi), irqfd::MSI_ADDR);
        assert_eq!(size_of::<b::acrn_ptdev_irq>(), ptdev_irq::SIZE);
        assert_eq!(offset_of!(b::acrn_ptdev_irq, virt_bdf), ptdev_irq::VIRT_BDF);
        assert_eq!(offset_of!(b::acrn_ptdev_irq, phys_bdf), ptdev_irq::PHYS_BDF);
        assert_eq!(offset_of!(b::acrn_ptdev_irq, intx), ptdev_irq::VIRT_PIN);
        assert_eq!(
            ptdev_irq::VIRT_PIN + offset_of!(b::acrn_ptdev_irq_intx, phys_pin),
            ptdev_irq::PHYS_PIN
        );
        assert_eq!(
            ptdev_irq::VIRT_PIN + offset_of!(b::acrn_ptdev_irq_intx, is_pic_pin),
            ptdev_irq::IS_PIC_PIN
        );
        assert_eq!(size_of::<b::acrn_pcidev>(), pcidev::SIZE);
        assert_eq!(offset_of!(b::acrn_pcidev, virt_bdf), pcidev::VIRT_BDF);
        assert_eq!(offset_of!(b::acrn_pcidev, phys_bdf), pcidev::PHYS_BDF);
        assert_eq!(offset_of!(b::acrn_pcidev, intr_line), pcidev::INTR_LINE);
        assert_eq!(offset_of!(b::acrn_pcidev, intr_pin), pcidev::INTR_PIN);
        assert_eq!(offset_of!(b::acrn_pcidev, bar), pcidev::BAR);
        assert_eq!(size_of::<b::acrn_mmiodev>(), mmiodev::SIZE);
        assert_eq!(offset_of!(b::acrn_mmiodev, res), mmiodev::RES);
        assert_eq!(size_of::<b::acrn_mmiodev_res>(), mmiodev::RES_SIZE);
        assert_eq!(size_of::<b::acrn_vdev>(), vdev::SIZE);
        assert_eq!(offset_of!(b::acrn_vdev, slot), vdev::SLOT);
        assert_eq!(offset_of!(b::acrn_vdev, io_addr), vdev::IO_ADDR);
        assert_eq!(offset_of!(b::acrn_vdev, io_size), vdev::IO_SIZE);
        assert_eq!(offset_of!(b::acrn_vdev, args), vdev::ARGS);
        assert_eq!(size_of::<b::acrn_cstate_data>(), 32);
        assert_eq!(offset_of!(b::acrn_cstate_data, type_), 12);
        assert_eq!(offset_of!(b::acrn_cstate_data, latency), 16);
        assert_eq!(offset_of!(b::acrn_cstate_data, power), 24);
        assert_eq!(size_of::<b::acrn_pstate_data>(), 48);
        assert_eq!(b::ACRN_IO_REQUEST_MAX, IO_REQUEST_MAX);
        assert_eq!(b::ACRN_MEMMAP_MMIO, MEMMAP_MMIO);
        assert_eq!(b::ACRN_IOEVENTFD_FLAG_DEASSIGN, IOEVENTFD_FLAG_DEASSIGN);
        assert_eq!(b::ACRN_IRQFD_FLAG_DEASSIGN, IRQFD_FLAG_DEASSIGN);
    }
}
