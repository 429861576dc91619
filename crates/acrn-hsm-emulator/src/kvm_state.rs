//! The KVM engine's per-VM state and its public result types, below `hv.rs` (each `HvVm` holds
//! a [`KvmState`]) and `kvm/` (the engine, which fills it in). Re-exported by `kvm`.

use std::fmt;
use std::os::fd::{AsRawFd, OwnedFd};
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
    /// The HSM ioeventfds mirrored as KVM_IOEVENTFDs (see [`KvmIoeventfd`]).
    pub(crate) ioeventfds: Mutex<Vec<KvmIoeventfd>>,
}

/// An HSM ioeventfd that KVM matches in the kernel (`KVM_IOEVENTFD`), so that a matching write
/// never leaves `KVM_RUN`: what the HSM's in-kernel ioeventfd client does with it
/// (`acrn_ioeventfd_handler`: signal the eventfd, complete the request, the vCPU goes on) without
/// the exit to the engine, the slot and the dispatcher. Only exact-length writes match (KVM
/// compares the length; HSM takes any write not longer than the registration): the others, and
/// every read, still take the request path, where the HSM's client handles them. Registered on
/// every KVM VM built for the hypervisor VM while it exists.
pub(crate) struct KvmIoeventfd {
    /// A dup of the eventfd (KVM takes its own reference; deassign names it again).
    pub(crate) fd: OwnedFd,
    /// The eventfd's identity (HSM's `key`).
    pub(crate) key: (u64, u64),
    pub(crate) pio: bool,
    pub(crate) addr: u64,
    pub(crate) len: u32,
    /// `None`: any value.
    pub(crate) datamatch: Option<u64>,
}

/// `KVM_IOEVENTFD` = `_IOW(KVMIO, 0x79, struct kvm_ioeventfd)`.
const KVM_IOEVENTFD: libc::c_ulong = (1 << 30)
    | ((std::mem::size_of::<kvm_bindings::kvm_ioeventfd>() as libc::c_ulong) << 16)
    | (0xae << 8)
    | 0x79;

impl KvmIoeventfd {
    /// Assigns (or deassigns) it on `vm`: 0 or the errno.
    pub(crate) fn apply(&self, vm: &VmFd, deassign: bool) -> i32 {
        use kvm_bindings::{
            kvm_ioeventfd_flag_nr_datamatch, kvm_ioeventfd_flag_nr_deassign,
            kvm_ioeventfd_flag_nr_pio,
        };
        let mut flags = 0u32;
        if self.datamatch.is_some() {
            flags |= 1 << kvm_ioeventfd_flag_nr_datamatch;
        }
        if self.pio {
            flags |= 1 << kvm_ioeventfd_flag_nr_pio;
        }
        if deassign {
            flags |= 1 << kvm_ioeventfd_flag_nr_deassign;
        }
        let arg = kvm_bindings::kvm_ioeventfd {
            datamatch: self.datamatch.unwrap_or(0),
            addr: self.addr,
            len: self.len,
            fd: self.fd.as_raw_fd(),
            flags,
            ..Default::default()
        };
        // SAFETY: KVM_IOEVENTFD on an open VM descriptor reads one `kvm_ioeventfd`, a live
        // local of exactly the size the request number encodes; `fd` is an open eventfd.
        let r = unsafe { libc::ioctl(vm.as_raw_fd(), KVM_IOEVENTFD as _, &raw const arg) };
        if r < 0 {
            std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO)
        } else {
            0
        }
    }
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

    /// Mirrors an HSM ioeventfd into KVM: kept for the KVM VMs built from now on, and assigned
    /// on the running one. Not while the VM's requests are recorded (a trace has every request).
    pub(crate) fn add_ioeventfd(&self, e: KvmIoeventfd) {
        let running = lock(&self.running);
        if let Some(k) = running.as_ref() {
            if lock(&self.recorder).is_none() {
                let _ = e.apply(&k.vm, false);
            }
        }
        lock(&self.ioeventfds).push(e);
    }

    /// Removes the mirror of HSM ioeventfd `key` at `addr` (deassigned from the running VM).
    pub(crate) fn remove_ioeventfd(&self, key: (u64, u64), pio: bool, addr: u64) {
        let running = lock(&self.running);
        let mut list = lock(&self.ioeventfds);
        if let Some(i) = list
            .iter()
            .position(|e| e.key == key && e.pio == pio && e.addr == addr)
        {
            let e = list.remove(i);
            if let Some(k) = running.as_ref() {
                let _ = e.apply(&k.vm, true);
            }
        }
    }

    /// Drops every mirror (`acrn_ioeventfd_deinit`), deassigned from the running VM.
    pub(crate) fn clear_ioeventfds(&self) {
        let running = lock(&self.running);
        let list = std::mem::take(&mut *lock(&self.ioeventfds));
        if let Some(k) = running.as_ref() {
            for e in &list {
                let _ = e.apply(&k.vm, true);
            }
        }
    }

    /// Assigns every mirror on a KVM VM being built (none while recording).
    pub(crate) fn assign_ioeventfds(&self, vm: &VmFd) {
        if lock(&self.recorder).is_some() {
            return;
        }
        for e in lock(&self.ioeventfds).iter() {
            let _ = e.apply(vm, false);
        }
    }

    /// The running KVM VM, for interrupt injection.
    pub(crate) fn vm_fd(&self) -> Option<Arc<VmFd>> {
        lock(&self.running).as_ref().map(|k| k.vm.clone())
    }
}
