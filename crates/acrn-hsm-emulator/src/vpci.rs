//! The hypervisor's vPCI front end for a post-launched VM: ports 0xCF8 (CONFIG_ADDRESS) and
//! 0xCFC–0xCFF (CONFIG_DATA), and the PCI MMCONFIG window at 0xE000_0000, caught before any I/O
//! request is made (acrn-semantics.md correction 8). Sources: acrn-hypervisor
//! `hypervisor/dm/vpci/vpci.c` (`init_vpci`, `vpci_pio_cfgaddr_read`, `vpci_pio_cfgaddr_write`,
//! `vpci_pio_cfgdata_read`, `vpci_pio_cfgdata_write`, `vpci_mmio_cfg_access`,
//! `find_available_vdev`, `vpci_read_cfg`), `hypervisor/include/hw/pci.h`
//! (`pci_is_valid_access`), `hypervisor/include/dm/vacpi.h` (`USER_VM_VIRT_PCI_MMCFG_*`).
//!
//! * A read of 0xCF8 never leaves the hypervisor: 4 bytes read the latch, other sizes all ones.
//! * A 4-byte write to 0xCF8 latches `value & !0x7f00_0003`; it is forwarded to the device model
//!   (as PORTIO, which HSM's `handle_cf8cfc` latches in its turn) unless the addressed bdf is a
//!   device the hypervisor owns (passthrough or hypervisor-emulated, not a quirk device). A write
//!   of any other size is dropped.
//! * Every access to 0xCFC–0xCFF reads *and clears* the latch (`atomic_readandclear32`). With the
//!   enable bit clear, or an access that is not naturally aligned within the register
//!   (`pci_is_valid_access`), the hypervisor completes it: reads all ones, writes dropped. An
//!   access to a device the hypervisor owns is emulated there; any other is forwarded as PORTIO,
//!   and HSM rewrites it into a PCICFG request with its own latch.
//!
//! The config space of a device the hypervisor owns is reduced to its id dword at offset 0
//! (`vendor | device << 16`); every other offset reads 0 and writes are ignored.

use crate::abi;
use crate::hv::HvVm;
use crate::types::lock;
use std::sync::atomic::Ordering;

/// `PCI_CONFIG_ADDR`.
pub(crate) const CONFIG_ADDR: u16 = 0xcf8;
/// `PCI_CONFIG_DATA`.
pub(crate) const CONFIG_DATA: u16 = 0xcfc;
/// `USER_VM_VIRT_PCI_MMCFG_BASE`, buses 0–255 (`get_pci_mmcfg_size`: 1 MiB per bus).
pub(crate) const MMCFG_BASE: u64 = 0xe000_0000;
/// Size of the MMCONFIG window.
pub(crate) const MMCFG_SIZE: u64 = 256 << 20;

/// `CONFIG_ADDRESS` bit 31.
const ENABLE: u32 = 0x8000_0000;

/// `pci_is_valid_access`: 1, 2 or 4 bytes, naturally aligned.
fn valid_access(offset: u32, bytes: u32) -> bool {
    matches!(bytes, 1 | 2 | 4) && offset & (bytes - 1) == 0
}

/// The id dword a hypervisor-owned device answers at `offset`, shifted to the access.
fn owned_read(id: u32, offset: u32, bytes: u32) -> u32 {
    if offset >= 4 {
        return 0;
    }
    let v = id >> (8 * offset);
    if bytes >= 4 {
        v
    } else {
        v & ((1 << (8 * bytes)) - 1)
    }
}

/// `vpci_pio_cfgaddr_read`: always handled.
pub(crate) fn cfgaddr_read(vm: &HvVm, bytes: u32) -> u32 {
    if bytes == 4 {
        vm.vpci_addr.load(Ordering::Acquire)
    } else {
        !0
    }
}

/// `vpci_pio_cfgaddr_write`: true when the hypervisor completes the write itself.
pub(crate) fn cfgaddr_write(vm: &HvVm, bytes: u32, val: u32) -> bool {
    if bytes != 4 {
        return true;
    }
    let latched = val & !0x7f00_0003;
    vm.vpci_addr.store(latched, Ordering::Release);
    let bdf = (latched >> 8) as u16;
    lock(&vm.dev).owned(bdf).is_some()
}

/// `vpci_pio_cfgdata_read`/`_write`: `Some(read value)` when the hypervisor completes the
/// access (`0` for writes), `None` to forward it to the device model.
pub(crate) fn cfgdata_access(vm: &HvVm, port: u16, bytes: u32, dir: u32) -> Option<u32> {
    let a = vm.vpci_addr.swap(0, Ordering::AcqRel);
    if a & ENABLE == 0 {
        return Some(if dir == abi::DIR_READ { !0 } else { 0 });
    }
    let offset = (a & 0xff) + u32::from(port - CONFIG_DATA);
    if !valid_access(offset, bytes) {
        return Some(if dir == abi::DIR_READ { !0 } else { 0 });
    }
    let bdf = (a >> 8) as u16;
    let dev = lock(&vm.dev);
    let d = dev.owned(bdf)?;
    Some(if dir == abi::DIR_READ {
        owned_read(d.id, offset, bytes)
    } else {
        0
    })
}

/// `vpci_mmio_cfg_access` for an access inside the MMCONFIG window: `Some(read value)` when
/// the hypervisor completes it (invalid accesses and hypervisor-owned devices), `None` to
/// forward it as MMIO.
pub(crate) fn mmcfg_access(vm: &HvVm, addr: u64, bytes: u32, dir: u32) -> Option<u64> {
    let reg = (addr & 0xfff) as u32;
    let bdf = ((addr - MMCFG_BASE) >> 12) as u16;
    let read = |v: u32| {
        if dir == abi::DIR_READ {
            u64::from(v)
        } else {
            0
        }
    };
    if !valid_access(reg, bytes) {
        return Some(read(!0));
    }
    let dev = lock(&vm.dev);
    let d = dev.owned(bdf)?;
    Some(read(owned_read(d.id, reg, bytes)))
}
