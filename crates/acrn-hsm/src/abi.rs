//! The pieces of `<linux/acrn.h>` this crate needs: ioctl numbers, constants, and byte offsets.
//!
//! The emulator and the typed API work on the argument *bytes* (the raw interface is bytes), so
//! they use offsets into each struct rather than the structs themselves. Every number here is
//! checked against `acrn_uapi` in the tests at the bottom of this file, so the two cannot drift.

#![allow(dead_code)]

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

pub(crate) const CREATE_VM: u32 = ioc(READ | WRITE, TYPE, 0x10, 48);
pub(crate) const DESTROY_VM: u32 = ioc(NONE, TYPE, 0x11, 0);
pub(crate) const START_VM: u32 = ioc(NONE, TYPE, 0x12, 0);
pub(crate) const PAUSE_VM: u32 = ioc(NONE, TYPE, 0x13, 0);
pub(crate) const RESET_VM: u32 = ioc(NONE, TYPE, 0x15, 0);
pub(crate) const SET_VCPU_REGS: u32 = ioc(WRITE, TYPE, 0x16, 296);
pub(crate) const INJECT_MSI: u32 = ioc(WRITE, TYPE, 0x23, 16);
pub(crate) const VM_INTR_MONITOR: u32 = ioc(WRITE, TYPE, 0x24, 8);
pub(crate) const SET_IRQLINE: u32 = ioc(WRITE, TYPE, 0x25, 8);
pub(crate) const NOTIFY_REQUEST_FINISH: u32 = ioc(WRITE, TYPE, 0x31, 8);
pub(crate) const CREATE_IOREQ_CLIENT: u32 = ioc(NONE, TYPE, 0x32, 0);
pub(crate) const ATTACH_IOREQ_CLIENT: u32 = ioc(NONE, TYPE, 0x33, 0);
pub(crate) const DESTROY_IOREQ_CLIENT: u32 = ioc(NONE, TYPE, 0x34, 0);
pub(crate) const CLEAR_VM_IOREQ: u32 = ioc(NONE, TYPE, 0x35, 0);
pub(crate) const SET_MEMSEG: u32 = ioc(WRITE, TYPE, 0x41, 32);
pub(crate) const UNSET_MEMSEG: u32 = ioc(WRITE, TYPE, 0x42, 32);
pub(crate) const SET_PTDEV_INTR: u32 = ioc(WRITE, TYPE, 0x53, 20);
pub(crate) const RESET_PTDEV_INTR: u32 = ioc(WRITE, TYPE, 0x54, 20);
pub(crate) const ASSIGN_PCIDEV: u32 = ioc(WRITE, TYPE, 0x55, 36);
pub(crate) const DEASSIGN_PCIDEV: u32 = ioc(WRITE, TYPE, 0x56, 36);
pub(crate) const ASSIGN_MMIODEV: u32 = ioc(WRITE, TYPE, 0x57, 104);
pub(crate) const DEASSIGN_MMIODEV: u32 = ioc(WRITE, TYPE, 0x58, 104);
pub(crate) const CREATE_VDEV: u32 = ioc(WRITE, TYPE, 0x59, 192);
pub(crate) const DESTROY_VDEV: u32 = ioc(WRITE, TYPE, 0x5A, 192);
pub(crate) const PM_GET_CPU_STATE: u32 = ioc(READ | WRITE, TYPE, 0x60, 8);
pub(crate) const IOEVENTFD: u32 = ioc(WRITE, TYPE, 0x70, 32);
pub(crate) const IRQFD: u32 = ioc(WRITE, TYPE, 0x71, 24);

/// Requests whose argument is passed *by value* (the `unsigned long` itself), not as a pointer.
pub(crate) const fn is_by_value(request: u32) -> bool {
    matches!(request, SET_IRQLINE | VM_INTR_MONITOR)
}

/// `ACRN_INVALID_VMID` (drivers/virt/acrn/acrn_drv.h).
pub(crate) const INVALID_VMID: u16 = 0xffff;
/// `ACRN_IO_REQUEST_MAX`.
pub(crate) const IO_REQUEST_MAX: usize = 16;
/// `ACRN_MEM_MAPPING_MAX` (acrn_drv.h).
pub(crate) const MEM_MAPPING_MAX: usize = 256;

pub(crate) const STATE_PENDING: u32 = 0;
pub(crate) const STATE_COMPLETE: u32 = 1;
pub(crate) const STATE_PROCESSING: u32 = 2;
pub(crate) const STATE_FREE: u32 = 3;

pub(crate) const TYPE_PORTIO: u32 = 0;
pub(crate) const TYPE_MMIO: u32 = 1;
pub(crate) const TYPE_PCICFG: u32 = 2;

pub(crate) const DIR_READ: u32 = 0;
pub(crate) const DIR_WRITE: u32 = 1;

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
    pub const SIZE: usize = 256;
    pub const TYPE: usize = 0;
    pub const COMPLETION_POLLING: usize = 4;
    pub const REQS: usize = 64;
    pub const KERNEL_HANDLED: usize = 132;
    pub const PROCESSED: usize = 136;
    // Within `reqs` (add REQS): pio/mmio/pci share direction@0, size@16, value@24.
    pub const DIRECTION: usize = REQS;
    pub const ADDRESS: usize = REQS + 8;
    pub const SIZE_FIELD: usize = REQS + 16;
    pub const VALUE: usize = REQS + 24;
    pub const PCI_BUS: usize = REQS + 28;
    pub const PCI_DEV: usize = REQS + 32;
    pub const PCI_FUNC: usize = REQS + 36;
    pub const PCI_REG: usize = REQS + 40;
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
    }
}
