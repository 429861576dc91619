//! ioctl request numbers of `/dev/acrn_hsm`.
//!
//! [`io`], [`ior`], [`iow`] and [`iowr`] are the `_IO`, `_IOR`, `_IOW` and `_IOWR` macros of
//! `<asm-generic/ioctl.h>` (the encoding used by x86-64): `dir << 30 | size << 16 | type << 8 |
//! nr`, with `_IOC_WRITE = 1` and `_IOC_READ = 2`. They are `const fn`s that panic (at compile
//! time when used in a constant) if a field does not fit its bits.
//!
//! Every request of `<linux/acrn.h>` is a `u32` constant named as in C. HSM compares the whole
//! command word, so the size encoded in the number must match the kernel's struct exactly.

use core::mem::size_of;

use crate::bindings::{
    acrn_ioeventfd, acrn_ioreq_notify, acrn_irqfd, acrn_mmiodev, acrn_msi_entry, acrn_pcidev,
    acrn_ptdev_irq, acrn_vcpu_regs, acrn_vdev, acrn_vm_creation, acrn_vm_memmap,
};

/// `_IOC_NRBITS`: width of the command-number field.
pub const IOC_NRBITS: u32 = 8;
/// `_IOC_TYPEBITS`: width of the type field.
pub const IOC_TYPEBITS: u32 = 8;
/// `_IOC_SIZEBITS`: width of the argument-size field.
pub const IOC_SIZEBITS: u32 = 14;
/// `_IOC_DIRBITS`: width of the direction field.
pub const IOC_DIRBITS: u32 = 2;

/// `_IOC_NRSHIFT`.
pub const IOC_NRSHIFT: u32 = 0;
/// `_IOC_TYPESHIFT`.
pub const IOC_TYPESHIFT: u32 = IOC_NRSHIFT + IOC_NRBITS;
/// `_IOC_SIZESHIFT`.
pub const IOC_SIZESHIFT: u32 = IOC_TYPESHIFT + IOC_TYPEBITS;
/// `_IOC_DIRSHIFT`.
pub const IOC_DIRSHIFT: u32 = IOC_SIZESHIFT + IOC_SIZEBITS;

/// `_IOC_NONE`: no data transfer.
pub const IOC_NONE: u32 = 0;
/// `_IOC_WRITE`: userspace writes the argument (the kernel reads it).
pub const IOC_WRITE: u32 = 1;
/// `_IOC_READ`: userspace reads the argument (the kernel writes it).
pub const IOC_READ: u32 = 2;

/// `_IOC(dir, type, nr, size)`: builds a request number.
///
/// # Panics
///
/// If `dir`, `ty`, `nr` or `size` does not fit its field (2, 8, 8 and 14 bits). In a constant
/// this is a compile-time error.
pub const fn ioc(dir: u32, ty: u32, nr: u32, size: usize) -> u32 {
    assert!(
        dir < (1 << IOC_DIRBITS),
        "ioctl direction does not fit in 2 bits"
    );
    assert!(
        ty < (1 << IOC_TYPEBITS),
        "ioctl type does not fit in 8 bits"
    );
    assert!(
        nr < (1 << IOC_NRBITS),
        "ioctl number does not fit in 8 bits"
    );
    assert!(
        size < (1 << IOC_SIZEBITS),
        "ioctl argument size does not fit in 14 bits"
    );
    (dir << IOC_DIRSHIFT) | ((size as u32) << IOC_SIZESHIFT) | (ty << IOC_TYPESHIFT) | nr
}

/// `_IO(type, nr)`: a request without an argument.
pub const fn io(ty: u32, nr: u32) -> u32 {
    ioc(IOC_NONE, ty, nr, 0)
}

/// `_IOR(type, nr, T)` with `size = sizeof(T)`: the kernel writes the argument.
pub const fn ior(ty: u32, nr: u32, size: usize) -> u32 {
    ioc(IOC_READ, ty, nr, size)
}

/// `_IOW(type, nr, T)` with `size = sizeof(T)`: the kernel reads the argument.
pub const fn iow(ty: u32, nr: u32, size: usize) -> u32 {
    ioc(IOC_WRITE, ty, nr, size)
}

/// `_IOWR(type, nr, T)` with `size = sizeof(T)`: the kernel reads and writes the argument.
pub const fn iowr(ty: u32, nr: u32, size: usize) -> u32 {
    ioc(IOC_READ | IOC_WRITE, ty, nr, size)
}

/// `_IOC_DIR(nr)`: the direction field of a request number.
pub const fn ioc_dir(request: u32) -> u32 {
    (request >> IOC_DIRSHIFT) & ((1 << IOC_DIRBITS) - 1)
}

/// `_IOC_TYPE(nr)`: the type field of a request number.
pub const fn ioc_type(request: u32) -> u32 {
    (request >> IOC_TYPESHIFT) & ((1 << IOC_TYPEBITS) - 1)
}

/// `_IOC_NR(nr)`: the command-number field of a request number.
pub const fn ioc_nr(request: u32) -> u32 {
    (request >> IOC_NRSHIFT) & ((1 << IOC_NRBITS) - 1)
}

/// `_IOC_SIZE(nr)`: the argument-size field of a request number.
pub const fn ioc_size(request: u32) -> usize {
    ((request >> IOC_SIZESHIFT) & ((1 << IOC_SIZEBITS) - 1)) as usize
}

/// `ACRN_IOCTL_TYPE`: the ioctl type of HSM (`0xA2`, reserved in `ioctl-number.rst`).
pub const ACRN_IOCTL_TYPE: u32 = 0xA2;

/// Size of the C `unsigned long` / `__u64` arguments, as on x86-64 (the only ACRN platform; HSM
/// has no `compat_ioctl`, so 32-bit callers are not supported). Fixed at 8 rather than taken from
/// the build target, so the numbers are the same when this crate is built for wasm32.
const U64_SIZE: usize = size_of::<u64>();

/// `ACRN_IOCTL_CREATE_VM`: `_IOWR(0xA2, 0x10, struct acrn_vm_creation)`.
pub const ACRN_IOCTL_CREATE_VM: u32 = iowr(ACRN_IOCTL_TYPE, 0x10, size_of::<acrn_vm_creation>());
/// `ACRN_IOCTL_DESTROY_VM`: `_IO(0xA2, 0x11)`.
pub const ACRN_IOCTL_DESTROY_VM: u32 = io(ACRN_IOCTL_TYPE, 0x11);
/// `ACRN_IOCTL_START_VM`: `_IO(0xA2, 0x12)`.
pub const ACRN_IOCTL_START_VM: u32 = io(ACRN_IOCTL_TYPE, 0x12);
/// `ACRN_IOCTL_PAUSE_VM`: `_IO(0xA2, 0x13)`.
pub const ACRN_IOCTL_PAUSE_VM: u32 = io(ACRN_IOCTL_TYPE, 0x13);
/// `ACRN_IOCTL_RESET_VM`: `_IO(0xA2, 0x15)`.
pub const ACRN_IOCTL_RESET_VM: u32 = io(ACRN_IOCTL_TYPE, 0x15);
/// `ACRN_IOCTL_SET_VCPU_REGS`: `_IOW(0xA2, 0x16, struct acrn_vcpu_regs)`.
pub const ACRN_IOCTL_SET_VCPU_REGS: u32 = iow(ACRN_IOCTL_TYPE, 0x16, size_of::<acrn_vcpu_regs>());

/// `ACRN_IOCTL_INJECT_MSI`: `_IOW(0xA2, 0x23, struct acrn_msi_entry)`.
pub const ACRN_IOCTL_INJECT_MSI: u32 = iow(ACRN_IOCTL_TYPE, 0x23, size_of::<acrn_msi_entry>());
/// `ACRN_IOCTL_VM_INTR_MONITOR`: `_IOW(0xA2, 0x24, unsigned long)`; the argument is a user
/// address passed by value.
pub const ACRN_IOCTL_VM_INTR_MONITOR: u32 = iow(ACRN_IOCTL_TYPE, 0x24, U64_SIZE);
/// `ACRN_IOCTL_SET_IRQLINE`: `_IOW(0xA2, 0x25, __u64)`; the argument is the value itself.
pub const ACRN_IOCTL_SET_IRQLINE: u32 = iow(ACRN_IOCTL_TYPE, 0x25, U64_SIZE);

/// `ACRN_IOCTL_NOTIFY_REQUEST_FINISH`: `_IOW(0xA2, 0x31, struct acrn_ioreq_notify)`.
pub const ACRN_IOCTL_NOTIFY_REQUEST_FINISH: u32 =
    iow(ACRN_IOCTL_TYPE, 0x31, size_of::<acrn_ioreq_notify>());
/// `ACRN_IOCTL_CREATE_IOREQ_CLIENT`: `_IO(0xA2, 0x32)`.
pub const ACRN_IOCTL_CREATE_IOREQ_CLIENT: u32 = io(ACRN_IOCTL_TYPE, 0x32);
/// `ACRN_IOCTL_ATTACH_IOREQ_CLIENT`: `_IO(0xA2, 0x33)`.
pub const ACRN_IOCTL_ATTACH_IOREQ_CLIENT: u32 = io(ACRN_IOCTL_TYPE, 0x33);
/// `ACRN_IOCTL_DESTROY_IOREQ_CLIENT`: `_IO(0xA2, 0x34)`.
pub const ACRN_IOCTL_DESTROY_IOREQ_CLIENT: u32 = io(ACRN_IOCTL_TYPE, 0x34);
/// `ACRN_IOCTL_CLEAR_VM_IOREQ`: `_IO(0xA2, 0x35)`.
pub const ACRN_IOCTL_CLEAR_VM_IOREQ: u32 = io(ACRN_IOCTL_TYPE, 0x35);

/// `ACRN_IOCTL_SET_MEMSEG`: `_IOW(0xA2, 0x41, struct acrn_vm_memmap)`.
pub const ACRN_IOCTL_SET_MEMSEG: u32 = iow(ACRN_IOCTL_TYPE, 0x41, size_of::<acrn_vm_memmap>());
/// `ACRN_IOCTL_UNSET_MEMSEG`: `_IOW(0xA2, 0x42, struct acrn_vm_memmap)`.
pub const ACRN_IOCTL_UNSET_MEMSEG: u32 = iow(ACRN_IOCTL_TYPE, 0x42, size_of::<acrn_vm_memmap>());

/// `ACRN_IOCTL_SET_PTDEV_INTR`: `_IOW(0xA2, 0x53, struct acrn_ptdev_irq)`.
pub const ACRN_IOCTL_SET_PTDEV_INTR: u32 = iow(ACRN_IOCTL_TYPE, 0x53, size_of::<acrn_ptdev_irq>());
/// `ACRN_IOCTL_RESET_PTDEV_INTR`: `_IOW(0xA2, 0x54, struct acrn_ptdev_irq)`.
pub const ACRN_IOCTL_RESET_PTDEV_INTR: u32 =
    iow(ACRN_IOCTL_TYPE, 0x54, size_of::<acrn_ptdev_irq>());
/// `ACRN_IOCTL_ASSIGN_PCIDEV`: `_IOW(0xA2, 0x55, struct acrn_pcidev)`.
pub const ACRN_IOCTL_ASSIGN_PCIDEV: u32 = iow(ACRN_IOCTL_TYPE, 0x55, size_of::<acrn_pcidev>());
/// `ACRN_IOCTL_DEASSIGN_PCIDEV`: `_IOW(0xA2, 0x56, struct acrn_pcidev)`.
pub const ACRN_IOCTL_DEASSIGN_PCIDEV: u32 = iow(ACRN_IOCTL_TYPE, 0x56, size_of::<acrn_pcidev>());
/// `ACRN_IOCTL_ASSIGN_MMIODEV`: `_IOW(0xA2, 0x57, struct acrn_mmiodev)`.
pub const ACRN_IOCTL_ASSIGN_MMIODEV: u32 = iow(ACRN_IOCTL_TYPE, 0x57, size_of::<acrn_mmiodev>());
/// `ACRN_IOCTL_DEASSIGN_MMIODEV`: `_IOW(0xA2, 0x58, struct acrn_mmiodev)`.
pub const ACRN_IOCTL_DEASSIGN_MMIODEV: u32 = iow(ACRN_IOCTL_TYPE, 0x58, size_of::<acrn_mmiodev>());
/// `ACRN_IOCTL_CREATE_VDEV`: `_IOW(0xA2, 0x59, struct acrn_vdev)`.
pub const ACRN_IOCTL_CREATE_VDEV: u32 = iow(ACRN_IOCTL_TYPE, 0x59, size_of::<acrn_vdev>());
/// `ACRN_IOCTL_DESTROY_VDEV`: `_IOW(0xA2, 0x5A, struct acrn_vdev)`.
pub const ACRN_IOCTL_DESTROY_VDEV: u32 = iow(ACRN_IOCTL_TYPE, 0x5A, size_of::<acrn_vdev>());

/// `ACRN_IOCTL_PM_GET_CPU_STATE`: `_IOWR(0xA2, 0x60, __u64)`; the `u64` command is replaced by
/// the data in place.
pub const ACRN_IOCTL_PM_GET_CPU_STATE: u32 = iowr(ACRN_IOCTL_TYPE, 0x60, U64_SIZE);

/// `ACRN_IOCTL_IOEVENTFD`: `_IOW(0xA2, 0x70, struct acrn_ioeventfd)`.
pub const ACRN_IOCTL_IOEVENTFD: u32 = iow(ACRN_IOCTL_TYPE, 0x70, size_of::<acrn_ioeventfd>());
/// `ACRN_IOCTL_IRQFD`: `_IOW(0xA2, 0x71, struct acrn_irqfd)`.
pub const ACRN_IOCTL_IRQFD: u32 = iow(ACRN_IOCTL_TYPE, 0x71, size_of::<acrn_irqfd>());

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_helpers() {
        assert_eq!(io(0xA2, 0x33), 0x0000_A233);
        assert_eq!(ior(0xA2, 0x01, 4), 0x8004_A201);
        assert_eq!(iow(0xA2, 0x01, 4), 0x4004_A201);
        assert_eq!(iowr(0xA2, 0x01, 0x3fff), 0xFFFF_A201);
        let r = ACRN_IOCTL_CREATE_VM;
        assert_eq!(ioc_dir(r), IOC_READ | IOC_WRITE);
        assert_eq!(ioc_type(r), 0xA2);
        assert_eq!(ioc_nr(r), 0x10);
        assert_eq!(ioc_size(r), 48);
    }

    #[test]
    #[should_panic(expected = "14 bits")]
    fn oversized_argument_panics() {
        let size = core::hint::black_box(1usize << 14);
        let _ = iow(ACRN_IOCTL_TYPE, 0x01, size);
    }

    #[test]
    #[should_panic(expected = "8 bits")]
    fn oversized_number_panics() {
        let nr = core::hint::black_box(0x100);
        let _ = io(ACRN_IOCTL_TYPE, nr);
    }

    /// Values from acrn-semantics.md §3 and §6 (computed with `<linux/ioctl.h>`).
    #[test]
    fn request_numbers() {
        let expected: &[(u32, u32)] = &[
            (ACRN_IOCTL_CREATE_VM, 0xC030_A210),
            (ACRN_IOCTL_DESTROY_VM, 0x0000_A211),
            (ACRN_IOCTL_START_VM, 0x0000_A212),
            (ACRN_IOCTL_PAUSE_VM, 0x0000_A213),
            (ACRN_IOCTL_RESET_VM, 0x0000_A215),
            (ACRN_IOCTL_SET_VCPU_REGS, 0x4128_A216),
            (ACRN_IOCTL_INJECT_MSI, 0x4010_A223),
            (ACRN_IOCTL_VM_INTR_MONITOR, 0x4008_A224),
            (ACRN_IOCTL_SET_IRQLINE, 0x4008_A225),
            (ACRN_IOCTL_NOTIFY_REQUEST_FINISH, 0x4008_A231),
            (ACRN_IOCTL_CREATE_IOREQ_CLIENT, 0x0000_A232),
            (ACRN_IOCTL_ATTACH_IOREQ_CLIENT, 0x0000_A233),
            (ACRN_IOCTL_DESTROY_IOREQ_CLIENT, 0x0000_A234),
            (ACRN_IOCTL_CLEAR_VM_IOREQ, 0x0000_A235),
            (ACRN_IOCTL_SET_MEMSEG, 0x4020_A241),
            (ACRN_IOCTL_UNSET_MEMSEG, 0x4020_A242),
            (ACRN_IOCTL_SET_PTDEV_INTR, 0x4014_A253),
            (ACRN_IOCTL_RESET_PTDEV_INTR, 0x4014_A254),
            (ACRN_IOCTL_ASSIGN_PCIDEV, 0x4024_A255),
            (ACRN_IOCTL_DEASSIGN_PCIDEV, 0x4024_A256),
            (ACRN_IOCTL_ASSIGN_MMIODEV, 0x4068_A257),
            (ACRN_IOCTL_DEASSIGN_MMIODEV, 0x4068_A258),
            (ACRN_IOCTL_CREATE_VDEV, 0x40C0_A259),
            (ACRN_IOCTL_DESTROY_VDEV, 0x40C0_A25A),
            (ACRN_IOCTL_PM_GET_CPU_STATE, 0xC008_A260),
            (ACRN_IOCTL_IOEVENTFD, 0x4020_A270),
            (ACRN_IOCTL_IRQFD, 0x4018_A271),
        ];
        for (i, (actual, want)) in expected.iter().enumerate() {
            assert_eq!(actual, want, "entry {i}: {actual:#010x} != {want:#010x}");
        }
        assert_eq!(expected.len(), crate::layout::IOCTLS.len());
    }
}
