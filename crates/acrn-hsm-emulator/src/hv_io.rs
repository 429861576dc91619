//! What the hypervisor handles itself, before any I/O request reaches HSM: the filter every
//! execution engine calls on a trapped PIO or MMIO access of a post-launched VM
//! (acrn-semantics.md correction 8). Sources: acrn-hypervisor `hypervisor/dm/io_req.c`
//! (`emulate_io`, `hv_emulate_pio`, `hv_emulate_mmio`: only `-ENODEV` from the hypervisor's own
//! handlers makes a request for the Service VM), `hypervisor/arch/x86/guest/vm.c` (`create_vm`:
//! which handlers a post-launched VM gets), `hypervisor/dm/vpic.c`
//! (`vpic_register_io_handler`: 0x20–0x21, 0xA0–0xA1, 0x4D0–0x4D1), `hypervisor/dm/vioapic.c`
//! (`vioapic_init`: MMIO 0xFEC0_0000, 4 KiB), `hypervisor/dm/vrtc.c` (`vrtc_init`, RT VMs only),
//! `hypervisor/arch/x86/guest/vm_reset.c` (`register_reset_port_handler`: 0x64 and 0xCF9, RT VMs
//! only), and the vLAPIC page at 0xFEE0_0000 (APIC virtualisation: never an EPT violation the
//! device model sees). The vPCI ports and the MMCONFIG window are in [`super::vpci`].
//!
//! The emulator models the *routing*, not the devices: the vPIC, vIOAPIC, vLAPIC and vRTC read 0
//! and ignore writes, the keyboard-controller port reads all ones (`handle_kb_read`), and a reset
//! write does not reset the VM.

use crate::abi;
use crate::hv::{Hv, HvVm};
use crate::vpci;

/// vIOAPIC MMIO (`VIOAPIC_BASE`, `VIOAPIC_SIZE`).
const VIOAPIC: (u64, u64) = (0xfec0_0000, 0x1000);
/// The vLAPIC page (`DEFAULT_APIC_BASE`).
const VLAPIC: (u64, u64) = (0xfee0_0000, 0x1000);

impl Hv {
    /// A trapped port access of vCPU `vcpu` of `vm` (`dir`: `abi::DIR_READ`/`DIR_WRITE`,
    /// `value`: the written value, masked to `size`). `Some(read value)` when the hypervisor
    /// completed it itself (the value is meaningless for a write), `None` when it becomes a
    /// PORTIO request for HSM.
    pub(crate) fn hv_handles_pio(
        &self,
        vm: &HvVm,
        vcpu: usize,
        port: u16,
        size: u8,
        dir: u32,
        value: u32,
    ) -> Option<u32> {
        let _ = vcpu;
        let bytes = u32::from(size);
        let read = dir == abi::DIR_READ;
        let lapic_pt = vm.vm_flag & abi::GUEST_FLAG_LAPIC_PASSTHROUGH != 0;
        let rt = vm.vm_flag & abi::GUEST_FLAG_RT != 0;
        // hv_emulate_pio looks the handler up by the first port of the access.
        match port {
            vpci::CONFIG_ADDR => {
                if read {
                    Some(vpci::cfgaddr_read(vm, bytes))
                } else if vpci::cfgaddr_write(vm, bytes, value) {
                    Some(0)
                } else {
                    None
                }
            }
            0xcfc..=0xcff => vpci::cfgdata_access(vm, port, bytes, dir),
            0x20 | 0x21 | 0xa0 | 0xa1 | 0x4d0 | 0x4d1 if !lapic_pt => Some(0),
            0x70 | 0x71 if rt => Some(0),
            0x64 if rt => Some(if read { !0 } else { 0 }),
            0xcf9 if rt => Some(0),
            _ => None,
        }
    }

    /// A trapped MMIO access (EPT violation): `Some(read value)` when the hypervisor completed
    /// it, `None` when it becomes an MMIO request for HSM.
    pub(crate) fn hv_handles_mmio(
        &self,
        vm: &HvVm,
        vcpu: usize,
        addr: u64,
        size: u8,
        dir: u32,
    ) -> Option<u64> {
        let _ = vcpu;
        let inside = |(base, len): (u64, u64)| addr >= base && addr < base + len;
        if inside(VIOAPIC) || inside(VLAPIC) {
            return Some(0);
        }
        if inside((vpci::MMCFG_BASE, vpci::MMCFG_SIZE)) {
            return vpci::mmcfg_access(vm, addr, u32::from(size), dir);
        }
        None
    }

    /// Whether the hypervisor may complete some access to `addr..addr + len` of type `ty` itself
    /// (any of the ranges above, whatever the VM's flags): such a range must keep taking the
    /// exit path, where these handlers come first.
    pub(crate) fn hv_may_claim(ty: u32, addr: u64, len: u64) -> bool {
        let end = addr.saturating_add(len);
        let hits = |(base, size): (u64, u64)| addr < base + size && base < end;
        if ty == abi::TYPE_PORTIO {
            [
                (0x20, 2),
                (0xa0, 2),
                (0x4d0, 2),
                (0x70, 2),
                (0x64, 1),
                (u64::from(vpci::CONFIG_ADDR), 8),
                (0xcf9, 1),
            ]
            .into_iter()
            .any(hits)
        } else {
            [VIOAPIC, VLAPIC, (vpci::MMCFG_BASE, vpci::MMCFG_SIZE)]
                .into_iter()
                .any(hits)
        }
    }

    /// Either of the above for an access of type `ty` (`abi::TYPE_PORTIO`/`TYPE_MMIO`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn hv_handles(
        &self,
        vm: &HvVm,
        vcpu: usize,
        ty: u32,
        addr: u64,
        size: u8,
        dir: u32,
        value: u64,
    ) -> Option<u64> {
        if ty == abi::TYPE_PORTIO {
            let port = u16::try_from(addr).ok()?;
            self.hv_handles_pio(vm, vcpu, port, size, dir, value as u32)
                .map(u64::from)
        } else {
            self.hv_handles_mmio(vm, vcpu, addr, size, dir)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_the_hypervisor_may_claim_stay_on_the_exit_path() {
        let pio = |a, l| Hv::hv_may_claim(abi::TYPE_PORTIO, a, l);
        let mmio = |a, l| Hv::hv_may_claim(abi::TYPE_MMIO, a, l);
        assert!(pio(0xcf8, 4) && pio(0xcfc, 2) && pio(0xcff, 1) && pio(0xcf9, 1));
        assert!(pio(0x20, 1) && pio(0xa1, 1) && pio(0x4d0, 2) && pio(0x70, 1) && pio(0x64, 1));
        assert!(pio(0xcf4, 8), "straddles 0xcf8");
        assert!(!pio(0x3f8, 1) && !pio(0xcf0, 8) && !pio(0xf4, 1) && !pio(0x300, 2));
        assert!(mmio(0xfec0_0000, 4) && mmio(0xfee0_0ffc, 4) && mmio(0xe000_0000, 8));
        assert!(
            mmio(0xefff_fffc, 4) && mmio(0xfebf_fffc, 8),
            "MMCFG's end, the vIOAPIC's start"
        );
        assert!(!mmio(0xfebf_b000, 2) && !mmio(0xf000_0000, 4) && !mmio(0xdfff_fff8, 8));
    }
}
