//! `acrn-hsm-emulator`: the ACRN hypervisor's side of the I/O-request protocol and the HSM kernel
//! driver, in process, faithful to acrn-semantics.md (§3, §4, and the §8 checklist) errno for
//! errno.
//!
//! * [`Emulator`] is the machine: the hypervisor (VM table, VM and vCPU states, the latched
//!   per-vCPU I/O event, hypercall results `-1` → `EPERM`) plus HSM's global state (the VM list
//!   and the dispatcher). Cheap to clone (an `Arc`).
//! * [`EmulatedHsm`] is one open `/dev/acrn_hsm` of it ([`Emulator::open`]): the per-file
//!   `acrn_vm`, implementing [`acrn_hsm::HsmBackend`]; [`Emulator::open_hsm`] wraps one in an
//!   [`acrn_hsm::Hsm`], so the typed API, the ioreq client and the devices work on it unchanged.
//! * [`Guest`] runs a [`Workload`] on a VM's vCPUs, one thread per vCPU, as the hypervisor
//!   does when the guest traps on PIO/MMIO: fill the slot, PENDING, upcall (the dispatcher runs
//!   inline on that vCPU thread), wait for COMPLETE (spinning then parking for polling VMs, on the
//!   latched event otherwise), post-work, FREE — unless the hypervisor handles the access itself
//!   (`hv_io.rs`, `vpci.rs`: vPCI's 0xCF8/0xCFC filtering, vPIC, vIOAPIC, vLAPIC), the filter any
//!   execution engine calls before it makes a request.
//! * The later ioctls (device pass-through, vdevs, PM, interrupt monitor) are checked by the
//!   hypervisor in `hv_dev.rs`; the ordering points of one slot are the functions of
//!   [`slot_protocol`], model-checked in `tests/emulator_loom.rs`.
//!
//! Nothing here spins on its own: the only threads are the vCPU threads of running workloads
//! and, for VMs with irqfds, one poller blocked in `epoll_wait(2)`.

//!
//! Serving a guest with the core's ioreq client and a native UART:
//!
//! ```
//! use std::sync::Arc;
//! use acrn_hsm::client::{ClientConfig, Dispatcher, IoreqClient, WakeMode};
//! use acrn_hsm::devices::Uart16550;
//! use acrn_hsm::VmConfig;
//! use acrn_hsm_emulator::{Access, Emulator, Op, Workload};
//!
//! let emu = Emulator::new();
//! let hsm = emu.open_hsm();
//! let vm = Arc::new(hsm.create_vm(&VmConfig { vcpu_num: 1, ..Default::default() })?);
//! let mut bus = Dispatcher::new();
//! let uart = Uart16550::new();
//! let out = uart.output();
//! bus.add_pio(0x3f8, 8, Box::new(uart)).expect("free range");
//! let mut client = IoreqClient::new(vm.clone(), bus, ClientConfig::default())?;
//! let handle = client.handle();
//! let thread = std::thread::spawn(move || client.run());
//! vm.start()?;
//! let w = Workload { vcpus: vec![vec![
//!     Op::Pio { port: 0x3fd, size: 1, access: Access::Read { expect: Some(0x60) } },
//!     Op::Pio { port: 0x3f8, size: 1, access: Access::Write(u64::from(b'A')) },
//! ]] };
//! let result = emu.guest(vm.vmid()).expect("guest").run(&w).expect("run");
//! handle.stop();
//! thread.join().expect("client thread")?;
//! assert!(result.is_clean());
//! assert_eq!(out.text(), "A");
//! # Ok::<(), acrn_hsm::Error>(())
//! ```
//!
//! Imports go one way: `acrn-uapi` → `acrn-hsm` (backend trait, user memory, recorder) → this
//! crate. Nothing below knows the emulator.

#![cfg(target_os = "linux")]
#![warn(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod guest;
mod hsm;
mod hv;
mod hv_dev;
mod hv_io;
mod hv_irq;
mod irqfd;
pub mod kvm;
mod slot;
pub mod slot_protocol;
mod vpci;
pub mod workload;

// The core's modules under the names the emulator's files use (`crate::errno::Errno`, ...).
use acrn_hsm::{backend, errno, memory, trace};
use acrn_uapi::wire as abi;

use std::fmt;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

pub use guest::{Guest, GuestRun};
pub use hsm::EmulatedHsm;
pub use hv_irq::{IrqCounters, IrqWait};
pub use kvm::{Engine, GuestExit, GuestExitKind, KvmProbe, KvmStats};
pub use workload::{Access, Op, RandomRange, Space, Workload, WorkloadError};

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

/// Every machine of the process, for [`shutdown_all`].
static LIVE: Mutex<Vec<Weak<Hv>>> = Mutex::new(Vec::new());

/// Shuts down every emulated machine of the process, as dropping it does: every vCPU wait and
/// every client wait on it ends. For process exit: a thread that waits on a vCPU's request
/// (a guest run with no client) must not keep the process from exiting (Node's `process.exit`
/// joins its worker pool). The machines stay usable as objects; their VMs are stopped.
pub fn shutdown_all() {
    let live: Vec<Arc<Hv>> = lock(&LIVE).iter().filter_map(Weak::upgrade).collect();
    for hv in live {
        hv.shutdown();
    }
}

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
        let mut live = lock(&LIVE);
        live.retain(|w| w.strong_count() > 0);
        live.push(Arc::downgrade(&hv));
        drop(live);
        Emulator {
            _shutdown: Arc::new(ShutdownOnDrop(hv.clone())),
            hv,
        }
    }

    /// `open("/dev/acrn_hsm")`: a new file with its own (empty) VM.
    pub fn open(&self) -> EmulatedHsm {
        EmulatedHsm::open(self)
    }

    /// [`open`](Self::open) as an [`acrn_hsm::Hsm`] handle: the typed API over a new file.
    pub fn open_hsm(&self) -> acrn_hsm::Hsm {
        acrn_hsm::Hsm::from_backend(Arc::new(self.open()))
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

    /// The name slot `vmid` is configured with (`vm_config->name`): empty when the hypervisor
    /// may hand the slot out again (`get_unused_vmid`). `None` past the table.
    pub fn slot_name(&self, vmid: u16) -> Option<[u8; 16]> {
        self.hv.slot_name(vmid)
    }

    /// The vPCI devices the hypervisor emulates or passes through for VM `vmid`, as
    /// `(virtual bdf, vendor | device << 16, physical bdf)` (ASSIGN_PCIDEV, CREATE_VDEV).
    pub fn vpci_devices(&self, vmid: u16) -> Vec<(u16, u32, Option<u16>)> {
        self.hv.vm(vmid).map_or_else(Vec::new, |vm| {
            lock(&vm.dev)
                .vdevs
                .iter()
                .map(|d| (d.vbdf, d.id, d.phys_bdf))
                .collect()
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

    /// The interrupts that reached VM `vmid`'s guest (workload engine): MSIs delivered, line
    /// edges and levels, interrupts taken by `wait_irq`. `None` for an unknown vmid.
    pub fn irq_counters(&self, vmid: u16) -> Option<IrqCounters> {
        Some(self.hv.vm(vmid)?.irq.counters())
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
    /// [`Guest`] does, for tests of the HSM side. The request goes to HSM as given, as if the
    /// hypervisor had forwarded it: its own I/O filter (vPCI, vPIC, ...; `hv_io.rs`) is not
    /// consulted. Fails with `EFAULT` without an ioreq page and `EBUSY` (the guest would get
    /// #GP) when the slot is not FREE.
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
        self.hv
            .engine
            .store(v, std::sync::atomic::Ordering::Release);
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
    pub fn set_kvm_recorder(&self, vmid: u16, recorder: Option<acrn_hsm::trace::GuestRecorder>) {
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

/// The emulated file behind `hsm`, if it is one of an [`Emulator`]'s (`None` on the real device).
pub fn emulated_hsm(hsm: &acrn_hsm::Hsm) -> Option<&EmulatedHsm> {
    hsm.backend().as_any().downcast_ref::<EmulatedHsm>()
}

/// The emulated file holding `vm`, if emulated.
pub fn emulated_vm_hsm(vm: &acrn_hsm::Vm) -> Option<&EmulatedHsm> {
    vm.backend().as_any().downcast_ref::<EmulatedHsm>()
}

/// The emulator behind `hsm`, if emulated.
pub fn emulator_of(hsm: &acrn_hsm::Hsm) -> Option<Emulator> {
    emulated_hsm(hsm).map(|e| e.emulator().clone())
}

/// The emulator holding `vm`, if emulated.
pub fn emulator_of_vm(vm: &acrn_hsm::Vm) -> Option<Emulator> {
    emulated_vm_hsm(vm).map(|e| e.emulator().clone())
}

/// The result types of a guest run.
pub use guest::{Fault, FaultKind, Mismatch, RunResult, StopReason, VcpuOutcome};

/// The emulator's methods on the core's handles (`use acrn_hsm_emulator::EmulatedExt`): the
/// guest runner of a VM and the emulated file behind a handle. On the real device they fail with
/// `ENODEV` / return `None`.
pub trait EmulatedExt {
    /// The emulator behind this handle, if emulated.
    fn emulator(&self) -> Option<Emulator>;
    /// The emulated file behind this handle (its test hooks), if emulated.
    fn emulated_hsm(&self) -> Option<&EmulatedHsm>;
    /// The guest runner of `vm` (`ENODEV` on the real device).
    fn guest(&self, vm: &acrn_hsm::Vm) -> acrn_hsm::Result<Guest> {
        let emu = self.emulator().ok_or(acrn_hsm::Error {
            op: "guest",
            errno: Errno::ENODEV,
        })?;
        emu.guest(vm.vmid())
            .map_err(|errno| acrn_hsm::Error { op: "guest", errno })
    }
}

impl EmulatedExt for acrn_hsm::Hsm {
    fn emulator(&self) -> Option<Emulator> {
        emulator_of(self)
    }
    fn emulated_hsm(&self) -> Option<&EmulatedHsm> {
        emulated_hsm(self)
    }
}

impl EmulatedExt for acrn_hsm::Vm {
    fn emulator(&self) -> Option<Emulator> {
        emulator_of_vm(self)
    }
    fn emulated_hsm(&self) -> Option<&EmulatedHsm> {
        emulated_vm_hsm(self)
    }
}
