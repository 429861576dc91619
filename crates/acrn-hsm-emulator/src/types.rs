//! The data below the hypervisor: the machine's configuration, the VM state, the interrupt
//! events, the EPT region helpers and the lock helper every module uses. Nothing here names
//! another module of the crate; the crate root re-exports the public types.

use std::sync::{Mutex, MutexGuard};

/// `VIOAPIC_RTE_NUM` (acrn_common.h): the GSIs of a post-launched VM (`get_vm_gsicount`).
pub(crate) const VIOAPIC_RTE_NUM: u32 = 48;

/// Locks `m`, ignoring poisoning (a panicked holder leaves the data as it was).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The machine the emulator pretends to be.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// Physical CPUs of the hypervisor; a post-launched VM may use any subset (`cpu_affinity`),
    /// and gets one vCPU per pCPU in it (all of them when `cpu_affinity == 0`). Default 16.
    pub pcpu_num: u8,
    /// VM slots available to post-launched VMs (vmids `1..=max_vms`). Default 8.
    pub max_vms: u8,
    /// The physical PCI devices the Service VM owns, that ASSIGN_PCIDEV can pass through.
    /// Default: a host bridge at 00:00.0, a root port at 00:1c.0 (neither assignable) and two
    /// endpoints, 00:14.0 and 00:1f.6.
    pub pci_devices: Vec<PhysPciDevice>,
    /// The C-states the hypervisor reports to PM_GET_CPU_STATE (`vm->pm.cx_data`, C1 first).
    /// Default: none (CX_CNT reads 0, CX_DATA fails). P-states are never reported (`is_pt_pstate`
    /// is false in the hypervisor).
    pub cstates: Vec<CState>,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            pcpu_num: 16,
            max_vms: 8,
            pci_devices: vec![
                PhysPciDevice::new(0x0000, 0x8086, 0x3e30, PhysPciKind::HostBridge),
                PhysPciDevice::new(0x00e0, 0x8086, 0xa338, PhysPciKind::Bridge),
                PhysPciDevice::new(0x00a0, 0x8086, 0xa36d, PhysPciKind::Endpoint),
                PhysPciDevice::new(0x00fe, 0x8086, 0x15bc, PhysPciKind::Endpoint),
            ],
            cstates: Vec::new(),
        }
    }
}

/// What a physical PCI device is, as far as ASSIGN_PCIDEV cares (`is_host_bridge`,
/// `is_bridge`: neither can be passed through).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhysPciKind {
    /// A host bridge (class 06/00).
    HostBridge,
    /// A PCI-to-PCI bridge or root port (header type 1).
    Bridge,
    /// Anything else.
    Endpoint,
}

/// One physical PCI device of the emulated board.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhysPciDevice {
    /// Bus/device/function as `bus << 8 | dev << 3 | func`.
    pub bdf: u16,
    /// Vendor id (config offset 0).
    pub vendor: u16,
    /// Device id (config offset 2).
    pub device: u16,
    /// Host bridge, bridge or endpoint.
    pub kind: PhysPciKind,
}

impl PhysPciDevice {
    /// A device at `bdf` (`bus << 8 | dev << 3 | func`).
    pub const fn new(bdf: u16, vendor: u16, device: u16, kind: PhysPciKind) -> PhysPciDevice {
        PhysPciDevice {
            bdf,
            vendor,
            device,
            kind,
        }
    }
}

/// One C-state as PM_GET_CPU_STATE's CX_DATA reports it (`struct acrn_cstate_data`; the
/// register is reported as system I/O at `0x414 + index`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CState {
    /// `type` (1 = C1, 2 = C2, ...).
    pub ty: u8,
    /// Worst-case latency.
    pub latency: u32,
    /// Average power.
    pub power: u64,
}

/// The hypervisor's VM state (`enum vm_state`, reduced to what the protocol observes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum VmState {
    /// `VM_CREATED`: after CREATE_VM or RESET_VM.
    Created = 0,
    /// `VM_RUNNING`: after START_VM.
    Running = 1,
    /// `VM_PAUSED`: after PAUSE_VM; every vCPU is a zombie.
    Paused = 2,
    /// `VM_POWERED_OFF`: destroyed.
    PoweredOff = 3,
}

impl VmState {
    pub(crate) fn from_u8(v: u8) -> VmState {
        match v {
            0 => VmState::Created,
            1 => VmState::Running,
            2 => VmState::Paused,
            _ => VmState::PoweredOff,
        }
    }
}

/// An interrupt the hypervisor was asked to inject, recorded for tests and tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InterruptEvent {
    /// INJECT_MSI.
    Msi {
        /// Target VM.
        vmid: u16,
        /// `msi_addr` (dest vCPU in bits 19:12).
        addr: u64,
        /// `msi_data` (vector in bits 7:0).
        data: u64,
    },
    /// SET_IRQLINE: the by-value argument split as `{u32 gsi; u32 op}`.
    IrqLine {
        /// Target VM.
        vmid: u16,
        /// The GSI.
        gsi: u32,
        /// The operation (assert, deassert, pulse).
        op: u32,
    },
    /// An MSI injected because an irqfd's eventfd was signalled (once per wake-up of the
    /// eventfd, as `hsm_irqfd_wakeup` does; the counter is never read).
    IrqfdMsi {
        /// Target VM.
        vmid: u16,
        /// `msi_addr`.
        addr: u64,
        /// `msi_data`.
        data: u64,
    },
}

/// `ept_is_valid_mr`: every page of `[gpa, gpa + size)` is mapped (true for size 0).
pub(crate) fn ept_mapped(regions: &[(u64, u64, u64, u32)], gpa: u64, size: u64) -> bool {
    let Some(end) = gpa.checked_add(size) else {
        return false;
    };
    let mut a = gpa;
    while a < end {
        match regions.iter().find(|&&(g, s, _, _)| a >= g && a < g + s) {
            Some(&(g, s, _, _)) => a = g + s,
            None => return false,
        }
    }
    true
}

/// `ept_del_mr`: unmaps `[gpa, gpa + size)`, splitting the mappings it cuts.
pub(crate) fn ept_del(regions: &mut Vec<(u64, u64, u64, u32)>, gpa: u64, size: u64) {
    let end = gpa.saturating_add(size);
    let mut out = Vec::with_capacity(regions.len() + 1);
    for &(g, s, h, a) in regions.iter() {
        let e = g + s;
        if e <= gpa || g >= end {
            out.push((g, s, h, a));
            continue;
        }
        if g < gpa {
            out.push((g, gpa - g, h, a));
        }
        if e > end {
            out.push((end, e - end, h + (end - g), a));
        }
    }
    *regions = out;
}
