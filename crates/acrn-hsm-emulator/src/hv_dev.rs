//! The hypervisor's side of the later ioctls: device pass-through (PCI and MMIO), INTx
//! remapping, hypervisor-emulated devices, PM state queries and the interrupt monitor.
//! HSM copies each argument and makes the hypercall; every check is the hypervisor's
//! (acrn-semantics.md, corrections 1 and 3). Sources: acrn-hypervisor
//! `hypervisor/common/hypercall.c` (`hcall_assign_pcidev`, `hcall_deassign_pcidev`,
//! `hcall_assign_mmiodev`, `hcall_deassign_mmiodev`, `hcall_set_ptdev_intr_info`,
//! `hcall_reset_ptdev_intr_info`, `hcall_add_vdev`, `hcall_remove_vdev`,
//! `hcall_get_cpu_pm_state`, `hcall_vm_intr_monitor`), `hypervisor/dm/vpci/vpci.c`
//! (`vpci_assign_pcidev`, `vpci_deassign_pcidev`), `hypervisor/dm/mmio_dev.c`
//! (`assign_mmio_dev`, `deassign_mmio_dev`), `hypervisor/arch/x86/guest/ept.c`
//! (`ept_is_valid_mr`), `hypervisor/common/ptdev.c` (`ptirq_get_intr_data`).
//!
//! Results are hypervisor codes: `-1` (`EPERM`), `-EINVAL`, `-ENODEV`.

use crate::abi::{self, le};
use crate::dev_state::{Intx, VDev};
use crate::hv::{HV_EINVAL, HV_ENOTTY, HV_EPERM, HV_OK, Hv, HvVm};
use crate::memory::Pinned;
use crate::types::{PhysPciKind, VIOAPIC_RTE_NUM, VmState, ept_del, ept_mapped, lock};

pub(crate) const HV_ENODEV: i64 = -19;

/// `IRQ_INTX` (acrn_hv_defs.h): the only type SET/RESET_PTDEV_INTR accept.
const IRQ_INTX: u32 = 0;
/// `NR_VPIC_PINS_TOTAL` (vpic.h).
const VPIC_PINS: u32 = 16;
/// Physical GSIs of the emulated board (`is_gsi_valid`): one 120-pin IOAPIC.
const PHYS_GSI_NUM: u32 = 120;
/// `MAX_PTDEV_NUM * 2` (acrn_common.h): the `buffer` of `struct acrn_intr_monitor`.
const INTR_MONITOR_BUF: u32 = 48;
/// `ACRN_PTDEV_QUIRK_ASSIGN`: the device model handles the device's config space.
const PTDEV_QUIRK_ASSIGN: u32 = 1;
/// `emul_dev_ops_tbl` (hypercall.c): ivshmem (1af4:1110), the vUART MCS9900 (9710:9900) and the
/// virtual root port (8086:9d14), as `vendor | device << 16` (`acrn_vdev.id.value`, whose
/// `legacy_id` half must be 0 to match).
const EMUL_DEV_IDS: [u64; 3] = [0x1110_1af4, 0x9900_9710, 0x9d14_8086];

fn aligned(v: u64) -> bool {
    v % 4096 == 0
}

impl Hv {
    fn target(&self, vmid: u16) -> Result<std::sync::Arc<HvVm>, i64> {
        self.vm(vmid).ok_or(HV_ENOTTY)
    }

    /// `hcall_assign_pcidev` + `vpci_assign_pcidev`: the VM must be CREATED (`-EINVAL`); the
    /// Service VM must own a device at `phys_bdf` that is not passed through already and is
    /// neither a host bridge nor a bridge (`-ENODEV`). `b` is `struct acrn_pcidev` (36 bytes).
    pub(crate) fn assign_pcidev(&self, vmid: u16, b: &[u8]) -> i64 {
        let vm = match self.target(vmid) {
            Ok(v) => v,
            Err(r) => return r,
        };
        if vm.state() != VmState::Created {
            return HV_EINVAL;
        }
        let ty = le::u32_at(b, abi::pcidev::TYPE);
        let virt_bdf = le::u16_at(b, abi::pcidev::VIRT_BDF);
        let phys_bdf = le::u16_at(b, abi::pcidev::PHYS_BDF);
        let mut p = lock(&self.platform);
        let Some(entry) = p.pdevs.iter_mut().find(|(d, owner)| {
            d.bdf == phys_bdf && owner.is_none() && d.kind == PhysPciKind::Endpoint
        }) else {
            return HV_ENODEV;
        };
        entry.1 = Some(vmid);
        let id = u32::from(entry.0.vendor) | (u32::from(entry.0.device) << 16);
        let mut dev = lock(&vm.dev);
        dev.vdevs.retain(|d| d.vbdf != virt_bdf);
        dev.vdevs.push(VDev {
            vbdf: virt_bdf,
            id,
            phys_bdf: Some(phys_bdf),
            quirk: ty & PTDEV_QUIRK_ASSIGN != 0,
        });
        HV_OK
    }

    /// `hcall_deassign_pcidev` + `vpci_deassign_pcidev`: PAUSED or CREATED (`-EINVAL`); the
    /// VM must have a passthrough vdev at `virt_bdf` backed by `phys_bdf` (`-ENODEV`).
    pub(crate) fn deassign_pcidev(&self, vmid: u16, b: &[u8]) -> i64 {
        let vm = match self.target(vmid) {
            Ok(v) => v,
            Err(r) => return r,
        };
        if !matches!(vm.state(), VmState::Created | VmState::Paused) {
            return HV_EINVAL;
        }
        let virt_bdf = le::u16_at(b, abi::pcidev::VIRT_BDF);
        let phys_bdf = le::u16_at(b, abi::pcidev::PHYS_BDF);
        let mut dev = lock(&vm.dev);
        let Some(i) = dev
            .vdevs
            .iter()
            .position(|d| d.vbdf == virt_bdf && d.phys_bdf == Some(phys_bdf))
        else {
            return HV_ENODEV;
        };
        dev.vdevs.remove(i);
        for (d, owner) in &mut lock(&self.platform).pdevs {
            if d.bdf == phys_bdf {
                *owner = None;
            }
        }
        HV_OK
    }

    /// `hcall_assign_mmiodev`: CREATED (`-EINVAL`); `deassign_mmio_dev(service_vm)` then
    /// `assign_mmio_dev(target)`: every resource must be page aligned (`-EINVAL`), a resource
    /// the Service VM maps is taken from it; a zero-size resource maps nothing, so a device
    /// with no resources is 0. `b` is `struct acrn_mmiodev` (104 bytes).
    pub(crate) fn assign_mmiodev(&self, vmid: u16, b: &[u8]) -> i64 {
        let vm = match self.target(vmid) {
            Ok(v) => v,
            Err(r) => return r,
        };
        if vm.state() != VmState::Created {
            return HV_EINVAL;
        }
        let res = mmio_res(b);
        let mut p = lock(&self.platform);
        // deassign_mmio_dev(service_vm): the Service VM's address is host_pa.
        for &(_, hpa, size) in &res {
            if p.service_vm_mapped(hpa, size) {
                if !aligned(hpa) || !aligned(size) {
                    return HV_EINVAL;
                }
                if size != 0 {
                    p.service_unmapped.push((hpa, size, hpa, 0));
                    lock(&vm.dev).mmio_from_service.push((hpa, size));
                }
            }
        }
        // assign_mmio_dev(target_vm).
        let mut regions = lock(&vm.regions);
        for &(gpa, hpa, size) in &res {
            if !aligned(gpa) || !aligned(hpa) || !aligned(size) {
                return HV_EINVAL;
            }
            if size != 0 {
                ept_del(&mut regions, gpa, size);
                regions.push((gpa, size, hpa, 0x100 | 7));
            }
        }
        HV_OK
    }

    /// `hcall_deassign_mmiodev`: PAUSED or CREATED (`-EINVAL`); `deassign_mmio_dev(target)`
    /// unmaps every resource the VM maps (page aligned, else `-EINVAL`), then
    /// `assign_mmio_dev(service_vm)` gives the ranges back.
    pub(crate) fn deassign_mmiodev(&self, vmid: u16, b: &[u8]) -> i64 {
        let vm = match self.target(vmid) {
            Ok(v) => v,
            Err(r) => return r,
        };
        if !matches!(vm.state(), VmState::Created | VmState::Paused) {
            return HV_EINVAL;
        }
        let res = mmio_res(b);
        {
            let mut regions = lock(&vm.regions);
            for &(gpa, _, size) in &res {
                if ept_mapped(&regions, gpa, size) {
                    if !aligned(gpa) || !aligned(size) {
                        return HV_EINVAL;
                    }
                    ept_del(&mut regions, gpa, size);
                }
            }
        }
        let mut p = lock(&self.platform);
        for &(_, hpa, size) in &res {
            if !aligned(hpa) || !aligned(size) {
                return HV_EINVAL;
            }
            ept_del(&mut p.service_unmapped, hpa, size);
            lock(&vm.dev)
                .mmio_from_service
                .retain(|&(h, s)| !(h == hpa && s == size));
        }
        HV_OK
    }

    /// `hcall_set_ptdev_intr_info`: CREATED, type INTX, a passthrough vdev at `virt_bdf`
    /// backed by `phys_bdf`, `virt_pin` below 48 (16 for a PIC pin) and a valid physical GSI;
    /// any failure is `-1`. `b` is `struct acrn_ptdev_irq` (20 bytes).
    pub(crate) fn set_ptdev_intr(&self, vmid: u16, b: &[u8]) -> i64 {
        self.ptdev_intr(vmid, b, true)
    }

    /// `hcall_reset_ptdev_intr_info`: as SET, but CREATED or PAUSED and no physical-pin check;
    /// removes the remapping.
    pub(crate) fn reset_ptdev_intr(&self, vmid: u16, b: &[u8]) -> i64 {
        self.ptdev_intr(vmid, b, false)
    }

    fn ptdev_intr(&self, vmid: u16, b: &[u8], set: bool) -> i64 {
        let vm = match self.target(vmid) {
            Ok(v) => v,
            Err(r) => return r,
        };
        let st = vm.state();
        if !(st == VmState::Created || (!set && st == VmState::Paused)) {
            return HV_EPERM;
        }
        use abi::ptdev_irq as o;
        if le::u32_at(b, o::TYPE) != IRQ_INTX {
            return HV_EPERM;
        }
        let virt_bdf = le::u16_at(b, o::VIRT_BDF);
        let phys_bdf = le::u16_at(b, o::PHYS_BDF);
        let virt_pin = le::u32_at(b, o::VIRT_PIN);
        let phys_pin = le::u32_at(b, o::PHYS_PIN);
        let pic = le::u32_at(b, o::IS_PIC_PIN) != 0;
        let mut dev = lock(&vm.dev);
        if !dev
            .vdevs
            .iter()
            .any(|d| d.vbdf == virt_bdf && d.phys_bdf == Some(phys_bdf))
        {
            return HV_EPERM;
        }
        let pin_ok = if pic {
            virt_pin < VPIC_PINS
        } else {
            virt_pin < VIOAPIC_RTE_NUM
        };
        if !pin_ok || (set && phys_pin >= PHYS_GSI_NUM) {
            return HV_EPERM;
        }
        dev.intx
            .retain(|e| !(e.virt_pin == virt_pin && e.pic == pic));
        if set {
            dev.intx.push(Intx {
                virt_pin,
                phys_pin,
                pic,
            });
        }
        HV_OK
    }

    /// `hcall_add_vdev`: CREATED (`-EINVAL`), an id of `emul_dev_ops_tbl` (`-EINVAL`); the
    /// device appears in the VM's vPCI at bdf `slot` (taken already: `-EINVAL`). `b` is
    /// `struct acrn_vdev` (192 bytes). The devices' own checks (an ivshmem region's name, a
    /// vUART's port) are not emulated.
    pub(crate) fn add_vdev(&self, vmid: u16, b: &[u8]) -> i64 {
        let vm = match self.target(vmid) {
            Ok(v) => v,
            Err(r) => return r,
        };
        if vm.state() != VmState::Created {
            return HV_EINVAL;
        }
        let id = le::u64_at(b, abi::vdev::ID);
        if !EMUL_DEV_IDS.contains(&id) {
            return HV_EINVAL;
        }
        let bdf = le::u64_at(b, abi::vdev::SLOT) as u16;
        let mut dev = lock(&vm.dev);
        if dev.vdevs.iter().any(|d| d.vbdf == bdf) {
            return HV_EINVAL;
        }
        dev.vdevs.push(VDev {
            vbdf: bdf,
            id: id as u32,
            phys_bdf: None,
            quirk: false,
        });
        HV_OK
    }

    /// `hcall_remove_vdev`: CREATED or PAUSED, a known id, and a vdev at bdf `slot` (whatever
    /// it is), else `-EINVAL`.
    pub(crate) fn remove_vdev(&self, vmid: u16, b: &[u8]) -> i64 {
        let vm = match self.target(vmid) {
            Ok(v) => v,
            Err(r) => return r,
        };
        if !matches!(vm.state(), VmState::Created | VmState::Paused) {
            return HV_EINVAL;
        }
        if !EMUL_DEV_IDS.contains(&le::u64_at(b, abi::vdev::ID)) {
            return HV_EINVAL;
        }
        let bdf = le::u64_at(b, abi::vdev::SLOT) as u16;
        let mut dev = lock(&vm.dev);
        let Some(i) = dev.vdevs.iter().position(|d| d.vbdf == bdf) else {
            return HV_EINVAL;
        };
        let d = dev.vdevs.remove(i);
        drop(dev);
        if let Some(pb) = d.phys_bdf {
            for (p, owner) in &mut lock(&self.platform).pdevs {
                if p.bdf == pb {
                    *owner = None;
                }
            }
        }
        HV_OK
    }

    /// `hcall_get_cpu_pm_state`: the target VM is the one in the command's bits 31:24
    /// (relative vmid, `parse_target_vm`), not the file's; it must be CREATED or PAUSED. PX_CNT
    /// and PX_DATA fail (no P-state passthrough, `is_pt_pstate`); CX_CNT writes one byte; CX_DATA
    /// needs `1 <= index <= cx_cnt`. Returns the result and the bytes written into `out`.
    pub(crate) fn get_cpu_pm_state(&self, cmd: u64, out: &mut [u8; 48]) -> (i64, usize) {
        let vmid = ((cmd >> 24) & 0xff) as u16;
        if usize::from(vmid) > usize::from(self.config.max_vms) {
            return (HV_ENOTTY, 0);
        }
        // The Service VM (vmid 0) is running; a slot never created is powered off.
        let Some(vm) = self.vm(vmid) else {
            return (HV_EPERM, 0);
        };
        if !matches!(vm.state(), VmState::Created | VmState::Paused) {
            return (HV_EPERM, 0);
        }
        let p = lock(&self.platform);
        let cx_cnt = p.cstates.len().min(255) as u8;
        match cmd & 0xff {
            // ACRN_PMCMD_GET_CX_CNT
            2 => {
                out[0] = cx_cnt;
                (HV_OK, 1)
            }
            // ACRN_PMCMD_GET_CX_DATA
            3 => {
                let idx = ((cmd >> 8) & 0xff) as u8;
                if cx_cnt == 0 || idx == 0 || idx > cx_cnt {
                    return (HV_EPERM, 0);
                }
                let c = p.cstates[usize::from(idx) - 1];
                out[..32].fill(0);
                out[0] = 1; // SPACE_SYSTEM_IO
                out[1] = 8; // bit width
                le::put_u64(out, 4, 0x414 + u64::from(idx));
                out[12] = c.ty;
                le::put_u32(out, 16, c.latency);
                le::put_u64(out, 24, c.power);
                (HV_OK, 32)
            }
            // PX_CNT, PX_DATA and unknown types
            _ => (HV_EPERM, 0),
        }
    }

    /// `hcall_vm_intr_monitor`: the page holds `struct acrn_intr_monitor` at its start. Not
    /// powered off, `buf_cnt <= 48`, `cmd` GET_DATA (0) or DELAY_INT (1), else `-EINVAL`.
    /// GET_DATA writes `(physical irq, count)` pairs of the VM's INTx remappings and the number
    /// of u64 written back into `buf_cnt` (`ptirq_get_intr_data`); DELAY_INT stores
    /// `buffer[0]` ms.
    pub(crate) fn vm_intr_monitor(&self, vmid: u16, page: &Pinned) -> i64 {
        let vm = match self.target(vmid) {
            Ok(v) => v,
            Err(r) => return r,
        };
        if vm.state() == VmState::PoweredOff {
            return HV_EINVAL;
        }
        let mut hdr = [0u8; 16];
        if page.read(0, &mut hdr).is_err() {
            return HV_EINVAL;
        }
        let cmd = le::u32_at(&hdr, 0);
        let buf_cnt = le::u32_at(&hdr, 4);
        if buf_cnt > INTR_MONITOR_BUF {
            return HV_EINVAL;
        }
        let mut dev = lock(&vm.dev);
        match cmd {
            0 => {
                let mut index: u32 = 0;
                for e in &dev.intx {
                    let base = 8 + 8 * index as usize;
                    let mut pair = [0u8; 16];
                    le::put_u64(&mut pair, 0, u64::from(e.phys_pin));
                    if page.write(base, &pair).is_err() {
                        break;
                    }
                    index += 2;
                    // `index > buffer_cnt - 2` in u32 arithmetic, as in ptdev.c.
                    if index > buf_cnt.wrapping_sub(2) {
                        break;
                    }
                }
                let _ = page.write(4, &index.to_le_bytes());
                HV_OK
            }
            1 => {
                dev.intr_delay_ms = le::u64_at(&hdr, 8);
                HV_OK
            }
            _ => HV_EINVAL,
        }
    }
}

/// The three `(user_vm_pa, host_pa, size)` resources of `struct acrn_mmiodev`.
fn mmio_res(b: &[u8]) -> [(u64, u64, u64); 3] {
    let r = |i: usize| {
        let o = 8 + 32 * i;
        (
            le::u64_at(b, o),
            le::u64_at(b, o + 8),
            le::u64_at(b, o + 16),
        )
    };
    [r(0), r(1), r(2)]
}
