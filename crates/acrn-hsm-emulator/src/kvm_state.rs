//! The KVM engine's per-VM state and its public result types, below `hv.rs` (each `HvVm` holds
//! a [`KvmState`]) and `kvm/` (the engine, which fills it in). Re-exported by `kvm`.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kvm_ioctls::VmFd;

use crate::memory::Pinned;
use crate::trace::GuestRecorder;
use crate::types::lock;

/// Why a KVM vCPU stopped running guest code on its own (not because of PAUSE/RESET/DESTROY).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestExitKind {
    /// `KVM_EXIT_SHUTDOWN`: a triple fault (or a shutdown cycle).
    Shutdown,
    /// `KVM_EXIT_HLT` (only without interrupts to wake the vCPU).
    Halt,
    /// `KVM_EXIT_INTERNAL_ERROR` (e.g. an instruction KVM cannot emulate), with its suberror.
    InternalError(u32),
    /// `KVM_EXIT_FAIL_ENTRY` with the hardware reason.
    FailEntry(u64),
    /// `KVM_EXIT_SYSTEM_EVENT` (reset, shutdown, crash) with its type.
    SystemEvent(u32),
    /// Any other exit this engine does not handle, by name.
    Unhandled(String),
    /// The slot was not usable (the hypervisor would inject #GP): state seen.
    SlotFault(u32),
    /// `KVM_RUN` itself failed.
    RunError(String),
}

/// A vCPU's own end of the run, with where the guest was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestExit {
    /// The vCPU.
    pub vcpu: u16,
    /// Why.
    pub kind: GuestExitKind,
    /// RIP at the exit (0 if the registers could not be read).
    pub rip: u64,
    /// CS base at the exit.
    pub cs_base: u64,
}

impl fmt::Display for GuestExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match &self.kind {
            GuestExitKind::Shutdown => "triple fault (KVM_EXIT_SHUTDOWN)".to_string(),
            GuestExitKind::Halt => "halted with no interrupt to wake it".to_string(),
            GuestExitKind::InternalError(s) => {
                format!("KVM internal error, suberror {s} (1: instruction emulation failed)")
            }
            GuestExitKind::FailEntry(r) => format!("VM entry failed, reason {r:#x}"),
            GuestExitKind::SystemEvent(t) => format!("system event {t}"),
            GuestExitKind::Unhandled(n) => format!("unhandled exit {n}"),
            GuestExitKind::SlotFault(s) => format!("ioreq slot not usable (state {s}): #GP"),
            GuestExitKind::RunError(e) => format!("KVM_RUN failed: {e}"),
        };
        write!(
            f,
            "vCPU {}: {what} at rip {:#x} (cs base {:#x})",
            self.vcpu, self.rip, self.cs_base
        )
    }
}

/// Counters of the KVM engine for one VM (all vCPUs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KvmStats {
    /// PIO and MMIO exits (each element of a string instruction counts).
    pub exits: u64,
    /// Requests placed in a slot (PENDING).
    pub issued: u64,
    /// Accesses the hypervisor emulated itself (vPCI's 0xCF8, ...): no request.
    pub hv_handled: u64,
    /// Requests completed with post-work and freed.
    pub completed: u64,
    /// Accesses that were not emulated (#GP, stray wake-up).
    pub faults: u64,
    /// Times the engine (re)started the VM's vCPUs (START_VM).
    pub starts: u64,
    /// Interrupts injected into the in-kernel irqchip (SET_IRQLINE, INJECT_MSI, irqfd).
    pub irqs: u64,
    /// vCPU threads alive now (0 once the VM is reset, destroyed or every vCPU has stopped).
    pub live_threads: u64,
}

/// The KVM engine's counters of one VM ([`KvmStats`] is their snapshot).
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) exits: AtomicU64,
    pub(crate) issued: AtomicU64,
    pub(crate) hv_handled: AtomicU64,
    pub(crate) completed: AtomicU64,
    pub(crate) faults: AtomicU64,
    pub(crate) starts: AtomicU64,
    pub(crate) irqs: AtomicU64,
    pub(crate) live: AtomicU64,
}

/// The KVM side of one hypervisor VM: lives in `HvVm` for the VM's whole life.
#[derive(Default)]
pub(crate) struct KvmState {
    pub(crate) running: Mutex<Option<KvmVm>>,
    pub(crate) exits: Mutex<Vec<GuestExit>>,
    pub(crate) exits_cv: Condvar,
    pub(crate) counters: Counters,
    pub(crate) last_error: Mutex<Option<String>>,
    pub(crate) recorder: Mutex<Option<GuestRecorder>>,
}

/// One KVM VM and its vCPU threads, from START_VM to RESET_VM/DESTROY_VM.
pub(crate) struct KvmVm {
    pub(crate) vm: Arc<VmFd>,
    pub(crate) threads: Vec<VcpuThread>,
    /// The guest RAM stays mapped while KVM may touch it.
    pub(crate) _pins: Vec<Pinned>,
}

/// One vCPU's thread.
pub(crate) struct VcpuThread {
    pub(crate) handle: JoinHandle<()>,
    /// Set (SeqCst) before the thread checks the VM state and enters `KVM_RUN`, cleared after.
    pub(crate) in_run: Arc<AtomicBool>,
}

impl KvmState {
    pub(crate) fn stats(&self) -> KvmStats {
        let c = &self.counters;
        // First: a thread that ended did its counting before its decrement (AcqRel), so seeing
        // it gone here (Acquire) makes its counts visible below.
        let live_threads = c.live.load(Ordering::Acquire);
        KvmStats {
            exits: c.exits.load(Ordering::Relaxed),
            issued: c.issued.load(Ordering::Relaxed),
            completed: c.completed.load(Ordering::Relaxed),
            faults: c.faults.load(Ordering::Relaxed),
            starts: c.starts.load(Ordering::Relaxed),
            irqs: c.irqs.load(Ordering::Relaxed),
            hv_handled: c.hv_handled.load(Ordering::Relaxed),
            live_threads,
        }
    }

    pub(crate) fn exits(&self) -> Vec<GuestExit> {
        lock(&self.exits).clone()
    }

    pub(crate) fn last_error(&self) -> Option<String> {
        lock(&self.last_error).clone()
    }

    pub(crate) fn set_recorder(&self, rec: Option<GuestRecorder>) {
        *lock(&self.recorder) = rec;
    }

    /// Waits up to `timeout` for a vCPU's own exit ([`GuestExit`]), the first one not yet seen
    /// (`seen` of them were).
    pub(crate) fn wait_exit(&self, seen: usize, timeout: Duration) -> Option<GuestExit> {
        let deadline = Instant::now() + timeout;
        let mut g = lock(&self.exits);
        loop {
            if let Some(e) = g.get(seen) {
                return Some(e.clone());
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            g = match self.exits_cv.wait_timeout(g, left) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }

    pub(crate) fn report(&self, e: GuestExit) {
        lock(&self.exits).push(e);
        self.exits_cv.notify_all();
    }

    /// The running KVM VM, for interrupt injection.
    pub(crate) fn vm_fd(&self) -> Option<Arc<VmFd>> {
        lock(&self.running).as_ref().map(|k| k.vm.clone())
    }
}
