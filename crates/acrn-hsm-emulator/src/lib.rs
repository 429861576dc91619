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
//! crate. Nothing below knows the emulator. Inside it too (see the module list in `lib.rs`,
//! checked by `tests/module_layering.rs`): the hypervisor (`hv.rs`) knows neither HSM nor the
//! engines, whose lifecycle hooks it calls through a trait object the crate root installs.

#![cfg(target_os = "linux")]
#![warn(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

// The modules import one way (`tests/module_layering.rs` fails on a cycle). Bottom up, each
// naming only modules of the layers before it:
//   types (configuration, VmState, InterruptEvent, lock) · slot · slot_protocol
//   → hv_irq · dev_state · kvm_state (the state `HvVm` holds) · workload
//   → hv (VM table, lifecycle; engine hooks through `hv::EngineHooks`)
//   → hv_dev · vpci → hv_io · irqfd
//   → hsm (HSM driver, `Emulator`) → guest (`SlotIo`, workload engine) → kvm → this root.
mod dev_state;
mod guest;
mod hsm;
mod hv;
mod hv_dev;
mod hv_io;
mod hv_irq;
mod irqfd;
pub mod kvm;
mod kvm_state;
mod slot;
pub mod slot_protocol;
mod types;
mod vpci;
pub mod workload;

// The core's modules under the names the emulator's files use (`crate::errno::Errno`, ...).
use acrn_hsm::{backend, errno, memory, trace};
use acrn_uapi::wire as abi;

use std::fmt;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

pub use guest::{Guest, GuestRun};
pub use hsm::{EmulatedHsm, Emulator};
pub use hv_irq::{IrqCounters, IrqWait};
pub use kvm::{Engine, GuestExit, GuestExitKind, KvmProbe, KvmStats};
pub use workload::{Access, Op, RandomRange, Space, Workload, WorkloadError};

pub use types::{CState, EmulatorConfig, InterruptEvent, PhysPciDevice, PhysPciKind, VmState};

use crate::errno::Errno;
use hsm::{HsmGlobal, ShutdownOnDrop};
use hv::Hv;
use types::lock;

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
        // HSM's global state is the machine's, beside the hypervisor (which does not know it):
        // the KVM engine's hooks, installed here, hand it to their vCPU threads' upcalls.
        let hsm = Arc::new(HsmGlobal::new());
        let hooks = Box::new(kvm::KvmHooks::new(hsm.clone()));
        let hv = Arc::new(Hv::new(config, hooks));
        let mut live = lock(&LIVE);
        live.retain(|w| w.strong_count() > 0);
        live.push(Arc::downgrade(&hv));
        drop(live);
        Emulator {
            _shutdown: Arc::new(ShutdownOnDrop(hv.clone())),
            hv,
            hsm,
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
        guest::insert_request(&self.hv, &self.hsm, &vm, usize::from(vcpu), ty, reqs)
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

    /// Whether HSM ioeventfds of VMs on the KVM engine are matched by KVM itself
    /// (`KVM_IOEVENTFD`: a matching write never leaves `KVM_RUN`; the eventfd is signalled and
    /// the vCPU goes on, as after the HSM's in-kernel ioeventfd client completed the request,
    /// only without a request in the slot) or only by the HSM on the request path. Default on;
    /// it applies to ioeventfds assigned from now on. Off while a VM's requests are recorded
    /// ([`Emulator::set_kvm_recorder`]): a trace has every request.
    pub fn set_kvm_ioeventfd(&self, on: bool) {
        self.hv
            .kvm_ioeventfd
            .store(on, std::sync::atomic::Ordering::Release);
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
