//! The emulator: the ACRN hypervisor's side of the I/O-request protocol and the HSM kernel
//! driver, in process, faithful to acrn-semantics.md (§3, §4, and the §8 checklist) errno for
//! errno.
//!
//! * [`Emulator`] is the machine: the hypervisor (VM table, VM and vCPU states, the latched
//!   per-vCPU I/O event, hypercall results `-1` → `EPERM`) plus HSM's global state (the VM list
//!   and the dispatcher). Cheap to clone (an `Arc`).
//! * [`EmulatedHsm`] is one open `/dev/acrn_hsm` of it ([`Emulator::open`]): the per-file
//!   `acrn_vm`, implementing [`crate::HsmBackend`].
//! * [`Guest`] runs a [`crate::Workload`] on a VM's vCPUs, one thread per vCPU, as the hypervisor
//!   does when the guest traps on PIO/MMIO: fill the slot, PENDING, upcall (the dispatcher runs
//!   inline on that vCPU thread), wait for COMPLETE (spinning then parking for polling VMs, on the
//!   latched event otherwise), post-work, FREE.
//!
//! Nothing here spins on its own: the only threads are the vCPU threads of running workloads
//! and, for VMs with irqfds, one poller blocked in `poll(2)`.

mod guest;
pub(crate) mod hsm;
pub(crate) mod hv;
mod irqfd;
pub mod kvm;
pub(crate) mod slot;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub use guest::{Guest, GuestRun};
/// The result types of a guest run.
pub mod guest_types {
    pub use super::guest::{Fault, FaultKind, Mismatch, RunResult, StopReason, VcpuOutcome};
}
pub use hsm::EmulatedHsm;
pub use kvm::{Engine, GuestExit, GuestExitKind, KvmProbe, KvmStats};

use crate::errno::Errno;
use hv::{Hv, lock};

/// The machine the emulator pretends to be.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// Physical CPUs of the hypervisor; a post-launched VM may use any subset (`cpu_affinity`),
    /// and gets one vCPU per pCPU in it (all of them when `cpu_affinity == 0`). Default 16.
    pub pcpu_num: u8,
    /// VM slots available to post-launched VMs (vmids `1..=max_vms`). Default 8.
    pub max_vms: u8,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            pcpu_num: 16,
            max_vms: 8,
        }
    }
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
    fn from_u8(v: u8) -> VmState {
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
    /// An MSI injected because an irqfd's eventfd was signalled.
    IrqfdMsi {
        /// Target VM.
        vmid: u16,
        /// `msi_addr`.
        addr: u64,
        /// `msi_data`.
        data: u64,
    },
}

/// A snapshot of one VM as the hypervisor sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmInfo {
    /// The vmid (relative to the Service VM).
    pub vmid: u16,
    /// Lifecycle state.
    pub state: VmState,
    /// Created vCPUs.
    pub vcpu_num: u16,
    /// Completion by polling (`GUEST_FLAG_IO_COMPLETION_POLLING`).
    pub polling: bool,
    /// `vm_flag` after masking with the DM-owned flags.
    pub vm_flag: u64,
    /// The 16 `name`/uuid bytes.
    pub name: [u8; 16],
    /// EPT mappings `(user_vm_pa, size)`.
    pub regions: Vec<(u64, u64)>,
}

/// The emulated hypervisor + HSM. Clones share the machine; when the last clone *and* every
/// [`EmulatedHsm`] and [`Guest`] of it are gone, the machine is gone.
#[derive(Clone)]
pub struct Emulator {
    pub(crate) hv: Arc<Hv>,
    /// Dropped with the last user-facing clone: stops every vCPU wait.
    _shutdown: Arc<ShutdownOnDrop>,
}

struct ShutdownOnDrop(Arc<Hv>);

impl Drop for ShutdownOnDrop {
    fn drop(&mut self) {
        self.0.shutdown();
    }
}

impl fmt::Debug for Emulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Emulator")
            .field("config", &self.hv.config)
            .finish()
    }
}

impl Default for Emulator {
    fn default() -> Self {
        Emulator::new()
    }
}

impl Emulator {
    /// A machine with the default [`EmulatorConfig`].
    pub fn new() -> Emulator {
        Emulator::with_config(EmulatorConfig::default())
    }

    /// A machine with `config`.
    pub fn with_config(config: EmulatorConfig) -> Emulator {
        let hv = Arc::new(Hv::new(config));
        Emulator {
            _shutdown: Arc::new(ShutdownOnDrop(hv.clone())),
            hv,
        }
    }

    /// `open("/dev/acrn_hsm")`: a new file with its own (empty) VM.
    pub fn open(&self) -> EmulatedHsm {
        EmulatedHsm::open(self)
    }

    /// The hypervisor's view of VM `vmid`, if it was ever created.
    pub fn vm_info(&self, vmid: u16) -> Option<VmInfo> {
        let vm = self.hv.vm(vmid)?;
        let regions = lock(&vm.regions).iter().map(|r| (r.0, r.1)).collect();
        Some(VmInfo {
            vmid,
            state: vm.state(),
            vcpu_num: vm.created_vcpus,
            polling: vm.polling,
            vm_flag: vm.vm_flag,
            name: vm.name,
            regions,
        })
    }

    /// The state of VM `vmid`.
    pub fn vm_state(&self, vmid: u16) -> Option<VmState> {
        self.hv.vm(vmid).map(|v| v.state())
    }

    /// Every VM the hypervisor knows (including orphaned and powered-off ones).
    pub fn vms(&self) -> Vec<VmInfo> {
        self.hv
            .all_vms()
            .iter()
            .filter_map(|v| self.vm_info(v.vmid))
            .collect()
    }

    /// The 288-byte `acrn_regs` last set for a vCPU with SET_VCPU_REGS (zero after reset).
    pub fn vcpu_regs(&self, vmid: u16, vcpu: u16) -> Option<Vec<u8>> {
        let vm = self.hv.vm(vmid)?;
        let v = vm.vcpus.get(usize::from(vcpu))?;
        Some(lock(&v.regs).clone())
    }

    /// Interrupts injected so far (INJECT_MSI, SET_IRQLINE, irqfd signals), oldest first.
    pub fn interrupts(&self) -> Vec<InterruptEvent> {
        lock(&self.hv.interrupts).clone()
    }

    /// Raw access to slot `vcpu` of VM `vmid`'s ioreq page as the hypervisor sees it: a copy of
    /// its 256 bytes. `None` without a page.
    pub fn slot_bytes(&self, vmid: u16, vcpu: usize) -> Option<Vec<u8>> {
        let vm = self.hv.vm(vmid)?;
        let page = vm.ioreq_page()?;
        let mut b = vec![0u8; 256];
        page.read(vcpu.checked_mul(256)?, &mut b).ok()?;
        Some(b)
    }

    /// Makes a vCPU of VM `vmid` raise one I/O request with the given raw slot contents (type and
    /// the 64-byte `reqs`), *without* waiting for its completion: the first half of what a
    /// [`Guest`] does, for tests of the HSM side. Fails with `EFAULT` without an ioreq page and
    /// `EBUSY` (the guest would get #GP) when the slot is not FREE.
    pub fn raise_request(
        &self,
        vmid: u16,
        vcpu: u16,
        ty: u32,
        reqs: &[u64; 8],
    ) -> Result<(), Errno> {
        let vm = self.hv.vm(vmid).ok_or(Errno::ENOENT)?;
        if usize::from(vcpu) >= vm.vcpus.len() {
            return Err(Errno::EINVAL);
        }
        guest::insert_request(&self.hv, &vm, usize::from(vcpu), ty, reqs)
    }

    /// Chooses the engine that runs the vCPUs of VMs started from now on (START_VM). The
    /// workload engine is the default; [`Engine::Kvm`] needs a usable `/dev/kvm`
    /// ([`kvm::probe`]), else START_VM fails with `EPERM` and [`Emulator::kvm_error`] says why.
    pub fn set_engine(&self, engine: Engine) {
        let v = match engine {
            Engine::Workload => 0,
            Engine::Kvm => 1,
        };
        self.hv.engine.store(v, crate::sync::Ordering::Release);
    }

    /// The engine VMs started now run on.
    pub fn engine(&self) -> Engine {
        if self.hv.kvm_engine() {
            Engine::Kvm
        } else {
            Engine::Workload
        }
    }

    /// The KVM engine's counters for VM `vmid` (zero on the workload engine).
    pub fn kvm_stats(&self, vmid: u16) -> Option<KvmStats> {
        self.hv.vm(vmid).map(|v| v.kvm.stats())
    }

    /// Why the last START_VM of `vmid` on the KVM engine failed, if it did.
    pub fn kvm_error(&self, vmid: u16) -> Option<String> {
        self.hv.vm(vmid).and_then(|v| v.kvm.last_error())
    }

    /// The vCPUs' own exits (triple fault, emulation failure, ...) of VM `vmid` so far.
    pub fn guest_exits(&self, vmid: u16) -> Vec<GuestExit> {
        self.hv.vm(vmid).map(|v| v.kvm.exits()).unwrap_or_default()
    }

    /// Waits up to `timeout` for the next vCPU exit of VM `vmid` after the first `seen`.
    pub fn wait_guest_exit(&self, vmid: u16, seen: usize, timeout: Duration) -> Option<GuestExit> {
        self.hv.vm(vmid)?.kvm.wait_exit(seen, timeout)
    }

    /// Records the requests of VM `vmid`'s KVM vCPUs (from its next START_VM on) into a trace,
    /// as [`Guest::with_recorder`] does for workloads; `None` stops recording.
    pub fn set_kvm_recorder(&self, vmid: u16, recorder: Option<crate::trace::GuestRecorder>) {
        if let Some(v) = self.hv.vm(vmid) {
            v.kvm.set_recorder(recorder);
        }
    }

    /// A guest runner for VM `vmid`.
    pub fn guest(&self, vmid: u16) -> Result<Guest, Errno> {
        let vm = self.hv.vm(vmid).ok_or(Errno::ENOENT)?;
        Ok(Guest::new(self.clone(), vm))
    }
}
