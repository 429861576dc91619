//! The hypervisor's device state, below `hv.rs` (which holds it) and `hv_dev.rs` (whose
//! hypercalls change it): each VM's vPCI devices, INTx remappings and interrupt-monitor
//! settings, and the board's physical PCI devices and Service-VM memory.

use std::sync::Mutex;

use crate::types::{CState, EmulatorConfig, PhysPciDevice, ept_del, lock};

/// The physical address width the Service VM's EPT covers in the emulator: every address the
/// process can pin lies below it.
const SERVICE_VM_PA_LIMIT: u64 = 1 << 48;

/// One device of a VM's vPCI.
#[derive(Debug, Clone)]
pub(crate) struct VDev {
    /// The bdf the guest sees.
    pub(crate) vbdf: u16,
    /// `vendor | device << 16`.
    pub(crate) id: u32,
    /// The physical device behind a passthrough vdev.
    pub(crate) phys_bdf: Option<u16>,
    /// `ACRN_PTDEV_QUIRK_ASSIGN`: config space left to the device model.
    pub(crate) quirk: bool,
}

/// An INTx remapping (`ptirq_add_intx_remapping`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Intx {
    pub(crate) virt_pin: u32,
    pub(crate) phys_pin: u32,
    pub(crate) pic: bool,
}

/// The per-VM device state of the hypervisor.
#[derive(Debug, Default)]
pub(crate) struct VmDevices {
    pub(crate) vdevs: Vec<VDev>,
    pub(crate) intx: Vec<Intx>,
    /// `intr_inject_delay_delta` in ms (INTR_CMD_DELAY_INT).
    pub(crate) intr_delay_ms: u64,
    /// MMIO ranges taken from the Service VM for this VM `(host_pa, size)`.
    pub(crate) mmio_from_service: Vec<(u64, u64)>,
}

impl VmDevices {
    /// The vdev the hypervisor handles at `bdf` (`find_available_vdev`, minus quirk devices,
    /// which go to the device model).
    pub(crate) fn owned(&self, bdf: u16) -> Option<&VDev> {
        self.vdevs.iter().find(|d| d.vbdf == bdf && !d.quirk)
    }
}

/// The board: physical PCI devices (and who uses them) and the Service VM's memory.
#[derive(Debug)]
pub(crate) struct Platform {
    /// `(device, vmid it is assigned to)`.
    pub(crate) pdevs: Vec<(PhysPciDevice, Option<u16>)>,
    /// Ranges removed from the Service VM's EPT by ASSIGN_MMIODEV `(host_pa, size)`.
    pub(crate) service_unmapped: Vec<(u64, u64, u64, u32)>,
    pub(crate) cstates: Vec<CState>,
}

impl Platform {
    pub(crate) fn new(config: &EmulatorConfig) -> Platform {
        Platform {
            pdevs: config.pci_devices.iter().map(|d| (*d, None)).collect(),
            service_unmapped: Vec::new(),
            cstates: config.cstates.clone(),
        }
    }

    /// `ept_is_valid_mr(service_vm, pa, size)`: below the address limit and not handed to a
    /// User VM by ASSIGN_MMIODEV.
    pub(crate) fn service_vm_mapped(&self, pa: u64, size: u64) -> bool {
        let Some(end) = pa.checked_add(size) else {
            return false;
        };
        end <= SERVICE_VM_PA_LIMIT
            && (size == 0
                || !self
                    .service_unmapped
                    .iter()
                    .any(|&(g, s, _, _)| pa < g + s && g < end))
    }
}

/// `shutdown_vm`: the passthrough PCI devices and MMIO ranges of VM `vmid` (its `dev`) go back
/// to the Service VM (`platform`).
pub(crate) fn release_vm_devices(vmid: u16, dev: &Mutex<VmDevices>, platform: &Mutex<Platform>) {
    let mut dev = lock(dev);
    let mut p = lock(platform);
    for (_, owner) in &mut p.pdevs {
        if *owner == Some(vmid) {
            *owner = None;
        }
    }
    for &(h, s) in &dev.mmio_from_service {
        ept_del(&mut p.service_unmapped, h, s);
    }
    dev.mmio_from_service.clear();
    dev.vdevs.clear();
    dev.intx.clear();
}
