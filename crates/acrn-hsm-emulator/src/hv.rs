//! The hypervisor's side: the VM table, VM and vCPU states, the ioreq page, the latched per-vCPU
//! I/O event, and the hypercalls HSM makes. Sources: acrn-hypervisor `hypercall.c`, `vm.c`,
//! `io_req.c`, `event.c` (see acrn-semantics.md §3.2, §4.2, §4.4).
//!
//! Results are hypervisor codes: `0`, `-1` (most failures, `EPERM` in userspace), `-22` (`EINVAL`,
//! memory regions), `-25` (`ENOTTY`, the target VM cannot be resolved).

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::Thread;

use crate::abi;
use crate::dev_state::{Platform, VmDevices, release_vm_devices};
use crate::hv_irq::VmIrq;
use crate::kvm_state::KvmState;
use crate::memory::Pinned;
use crate::slot::Slot;
use crate::types::{
    EmulatorConfig, InterruptEvent, VIOAPIC_RTE_NUM, VmState, ept_del, ept_mapped, lock,
};
use std::sync::atomic::{Ordering, fence};

/// How long a thread about to sleep for an event of the other side (a vCPU waiting for its
/// NOTIFY, a client in ATTACH) first spins for it. Each sleep costs two scheduler wake-ups, and
/// on a machine whose own CPUs are virtual an idle CPU halts to its hypervisor, so a wake-up can
/// take 15 µs; a spin this short catches the answer of a device that serves at once. The spin
/// yields every 64 passes so that a thread sharing the CPU (the other side) runs.
pub(crate) const HALT_POLL: std::time::Duration = std::time::Duration::from_micros(20);

/// Spins until `ready()` or [`HALT_POLL`] has passed; returns whether `ready()` became true.
pub(crate) fn halt_poll(ready: impl Fn() -> bool) -> bool {
    let start = std::time::Instant::now();
    let mut n: u32 = 0;
    loop {
        if ready() {
            return true;
        }
        n = n.wrapping_add(1);
        if n % 64 == 0 {
            if start.elapsed() >= HALT_POLL {
                return false;
            }
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
}

/// HV result codes.
pub(crate) const HV_OK: i64 = 0;
pub(crate) const HV_EPERM: i64 = -1;
pub(crate) const HV_EINVAL: i64 = -22;
pub(crate) const HV_ENOTTY: i64 = -25;

/// `MAX_VCPUS_PER_VM` (one slot per vCPU).
pub(crate) const MAX_VCPUS_PER_VM: usize = abi::IO_REQUEST_MAX;

/// What an execution engine does at the hypervisor's lifecycle points, called by [`Hv`] without
/// naming the engine (the crate root installs the KVM engine's, `kvm::KvmHooks`). Each hook is
/// called on every VM whatever its engine; an engine with nothing running for the VM does
/// nothing.
pub(crate) trait EngineHooks: Send + Sync {
    /// START_VM of a VM on this engine (state already RUNNING): start its vCPUs. An error is
    /// the reason START_VM fails (`-1`), kept for `Emulator::kvm_error`.
    fn start(&self, hv: &Arc<Hv>, vm: &Arc<HvVm>) -> Result<(), String>;
    /// PAUSE_VM (after the PAUSED store): every vCPU is out of guest mode when this returns.
    fn pause(&self, vm: &HvVm);
    /// RESET_VM, DESTROY_VM and teardown (after the generation bump): the vCPUs end, joined.
    fn stop(&self, vm: &HvVm);
    /// An interrupt for the VM: `true` when the engine delivered it (nothing else to do).
    fn inject(&self, vm: &HvVm, ev: &InterruptEvent) -> bool;
}

/// One vCPU of a VM.
// On lines of its own (128 bytes: a cache-line pair): touched on every request by the serving
// thread or a vCPU, it must share no line with another allocation (docs/performance.md, "False
// sharing").
#[repr(align(128))]
pub(crate) struct HvVcpu {
    /// `VCPU_EVENT_IOREQ`: latched (`signal_event` sets, a later `wait_event` returns at once and
    /// clears).
    event: Mutex<bool>,
    /// A copy of `event` readable without the lock, for the short spin of `wait_event`: set
    /// after `event` by `signal_event`, cleared with it.
    event_hint: AtomicBool,
    event_cv: Condvar,
    /// Threads blocked on `event_cv`, changed only under `event` (see `signal_event`).
    event_waiters: AtomicU32,
    /// Set while a polling waiter is parked (the doorbell below wakes it).
    pub(crate) parked: AtomicBool,
    pub(crate) waiter: Mutex<Option<Thread>>,
    /// `acrn_regs` as set by SET_VCPU_REGS (288 bytes), the initial register state.
    pub(crate) regs: Mutex<Vec<u8>>,
    /// A guest workload currently runs on this vCPU.
    pub(crate) busy: AtomicBool,
    /// Set while the vCPU is between its check that the VM runs and the upcall of the request
    /// it then places: PAUSE_VM waits for it to clear, so that (as on the real hypervisor, whose
    /// pause takes the vCPUs off their pCPUs) no request of the paused VM is placed afterwards.
    pub(crate) entering: AtomicBool,
}

impl HvVcpu {
    fn new() -> HvVcpu {
        HvVcpu {
            event: Mutex::new(false),
            event_hint: AtomicBool::new(false),
            event_cv: Condvar::new(),
            event_waiters: AtomicU32::new(0),
            parked: AtomicBool::new(false),
            waiter: Mutex::new(None),
            regs: Mutex::new(vec![0; 288]),
            busy: AtomicBool::new(false),
            entering: AtomicBool::new(false),
        }
    }

    /// `signal_event(&vcpu->events[VCPU_EVENT_IOREQ])`.
    pub(crate) fn signal_event(&self) {
        let mut set = lock(&self.event);
        *set = true;
        self.event_hint.store(true, Ordering::Release);
        // A notify is a system call even with nobody waiting; the count is read under the lock
        // the waiter holds until it sleeps, so no wake-up is lost.
        let waiting = self.event_waiters.load(Ordering::Relaxed) != 0;
        drop(set);
        if waiting {
            self.event_cv.notify_all();
        }
    }

    /// `wait_event`: returns once the event is set (and clears it), or when `stop()` says so
    /// (VM reset, destroyed, emulator dropped). Returns whether the event was consumed.
    pub(crate) fn wait_event(&self, stop: impl Fn() -> bool) -> bool {
        // Before sleeping, a short spin on the hint (as KVM polls a halted vCPU before it
        // schedules it out): a NOTIFY that comes within it wakes nobody. Timing only: the latch
        // under the lock below decides.
        halt_poll(|| self.event_hint.load(Ordering::Acquire) || stop());
        let mut set = lock(&self.event);
        loop {
            if *set {
                *set = false;
                self.event_hint.store(false, Ordering::Relaxed);
                return true;
            }
            if stop() {
                return false;
            }
            self.event_waiters.fetch_add(1, Ordering::Relaxed);
            set = self.event_cv.wait(set).unwrap_or_else(|e| e.into_inner());
            self.event_waiters.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Wakes every waiter so that it re-checks its stop condition.
    pub(crate) fn kick(&self) {
        drop(lock(&self.event));
        self.event_cv.notify_all();
        self.doorbell_force();
    }

    /// Emulator-internal wake-up of a parked *polling* waiter (not the HV event: nothing latches).
    pub(crate) fn doorbell(&self) {
        fence(Ordering::SeqCst);
        if self.parked.load(Ordering::Relaxed) {
            self.doorbell_force();
        }
    }

    fn doorbell_force(&self) {
        if let Some(t) = lock(&self.waiter).as_ref() {
            t.unpark();
        }
    }

    fn reset(&self) {
        let mut set = lock(&self.event);
        *set = false;
        self.event_hint.store(false, Ordering::Relaxed);
        drop(set);
        lock(&self.regs).fill(0);
    }
}

/// One VM on the hypervisor.
// On lines of its own (128 bytes: a cache-line pair): touched on every request by the serving
// thread or a vCPU, it must share no line with another allocation (docs/performance.md, "False
// sharing").
#[repr(align(128))]
pub(crate) struct HvVm {
    pub(crate) vmid: u16,
    pub(crate) name: [u8; 16],
    pub(crate) vm_flag: u64,
    /// `vm->sw.is_polling_ioreq` (GUEST_FLAG_IO_COMPLETION_POLLING).
    pub(crate) polling: bool,
    pub(crate) created_vcpus: u16,
    state: AtomicU8,
    /// Bumped by RESET_VM and DESTROY_VM: waits started before observe it and stop.
    pub(crate) generation: AtomicU64,
    pub(crate) ioreq: RwLock<Option<Pinned>>,
    pub(crate) vcpus: Vec<HvVcpu>,
    /// EPT regions `(user_vm_pa, size, service_vm_pa, attr)`.
    pub(crate) regions: Mutex<Vec<(u64, u64, u64, u32)>>,
    lifecycle: Mutex<()>,
    /// The VM's vPCI devices, INTx remappings and interrupt-monitor state (`dev_state.rs`,
    /// changed by the hypercalls of `hv_dev.rs`).
    pub(crate) dev: Mutex<VmDevices>,
    /// vPCI's CONFIG_ADDRESS latch (`vpci->addr`), see `vpci.rs`.
    pub(crate) vpci_addr: AtomicU32,
    /// Not the hypervisor's: the guest kernel's `pci_config_lock`, which makes a workload's
    /// [`crate::Op::Pci`] (a 0xCF8 write and its 0xCFC access) one critical section across the
    /// VM's vCPUs, as a guest's `pci_conf1_read`/`write` do. (The latch is per VM: without it
    /// two vCPUs' pairs interleave and one reads all ones, on the real hypervisor too.)
    pub(crate) guest_pci_lock: Mutex<()>,
    /// The KVM engine's side of this VM (unused on the workload engine).
    pub(crate) kvm: KvmState,
    /// vIOAPIC/vPIC lines and the vCPUs' pending vectors (workload engine, `hv_irq.rs`).
    pub(crate) irq: VmIrq,
}

/// The VM table: the VMs by vmid and each slot's configured name.
struct VmTable {
    vms: Vec<Option<Arc<HvVm>>>,
    names: Vec<[u8; 16]>,
}

impl HvVm {
    pub(crate) fn state(&self) -> VmState {
        VmState::from_u8(self.state.load(Ordering::Acquire))
    }
    fn set_state(&self, s: VmState) {
        self.state.store(s as u8, Ordering::Release);
    }
    pub(crate) fn ioreq_page(&self) -> Option<Pinned> {
        self.ioreq.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
    fn kick_all(&self) {
        for v in &self.vcpus {
            v.kick();
        }
    }

    /// PAUSE_VM's wait (after its store of PAUSED): returns once no vCPU of the VM is between
    /// its state check and its upcall (`SlotIo::emulate` in `guest.rs`, either engine), so every
    /// request placed by a vCPU that saw RUNNING is in its slot, dispatched, when PAUSE_VM
    /// returns. A Dekker pair: state store, full fence, flag load here; flag store (`entering`),
    /// full fence, state load in `SlotIo::emulate`.
    pub(crate) fn wait_out_of_guest_mode(&self) {
        fence(Ordering::SeqCst);
        for v in &self.vcpus {
            while v.entering.load(Ordering::Acquire) {
                std::thread::yield_now();
            }
        }
    }
}

/// The hypervisor: a table of VMs indexed by vmid (0 is the Service VM).
pub(crate) struct Hv {
    pub(crate) config: EmulatorConfig,
    /// The VM table and each slot's configured name (`vm_config->name`), under one lock.
    table: Mutex<VmTable>,
    /// The platform devices and the Service VM's memory (`dev_state.rs`, changed by
    /// `hv_dev.rs`).
    pub(crate) platform: Mutex<Platform>,
    pub(crate) interrupts: Mutex<Vec<InterruptEvent>>,
    pub(crate) shutdown: AtomicBool,
    /// The execution engine of VMs started from now on (`Engine as u8`).
    pub(crate) engine: AtomicU8,
    /// On the KVM engine, HSM ioeventfds are also matched by KVM (`KVM_IOEVENTFD`, see
    /// `kvm_state::KvmIoeventfd`); default on.
    pub(crate) kvm_ioeventfd: AtomicBool,
    /// The execution engines' lifecycle hooks (the KVM engine's).
    hooks: Box<dyn EngineHooks>,
}

impl Hv {
    /// A hypervisor for `config`, calling `hooks` at START/PAUSE/RESET/DESTROY and on interrupts.
    pub(crate) fn new(config: EmulatorConfig, hooks: Box<dyn EngineHooks>) -> Hv {
        let n = usize::from(config.max_vms) + 1;
        let mut names = vec![[0u8; 16]; n];
        // Slot 0 is the Service VM, statically configured (never handed out).
        names[0][..15].copy_from_slice(b"ACRN_Service_VM");
        let platform = Platform::new(&config);
        Hv {
            config,
            table: Mutex::new(VmTable {
                vms: vec![None; n],
                names,
            }),
            platform: Mutex::new(platform),
            interrupts: Mutex::new(Vec::new()),
            shutdown: AtomicBool::new(false),
            engine: AtomicU8::new(0),
            kvm_ioeventfd: AtomicBool::new(true),
            hooks,
        }
    }

    /// Resolves a (relative) vmid, as `parse_target_vm` does.
    pub(crate) fn vm(&self, vmid: u16) -> Option<Arc<HvVm>> {
        if vmid == 0 {
            return None;
        }
        lock(&self.table)
            .vms
            .get(usize::from(vmid))
            .cloned()
            .flatten()
    }

    pub(crate) fn all_vms(&self) -> Vec<Arc<HvVm>> {
        lock(&self.table).vms.iter().flatten().cloned().collect()
    }

    /// The configured name of slot `vmid` (`vm_config->name`; empty when free). For tests.
    pub(crate) fn slot_name(&self, vmid: u16) -> Option<[u8; 16]> {
        lock(&self.table).names.get(usize::from(vmid)).copied()
    }

    fn configured_affinity(&self) -> u64 {
        let n = u32::from(self.config.pcpu_num).min(64);
        if n == 64 { u64::MAX } else { (1u64 << n) - 1 }
    }

    /// `parse_target_vm` + `hcall_create_vm` (vmcall.c, hypercall.c, vm.c): `cv` is the 48-byte
    /// `acrn_vm_creation`, written back (vmid, vcpu_num) as the HV does.
    ///
    /// * The target slot is the one whose configured name matches (`get_vmid_by_name`: an
    ///   empty name never matches), else the lowest slot with an empty name
    ///   (`allocate_dynamical_vmid` / `get_unused_vmid`), which gets the name and
    ///   `cpu_affinity` copied into its configuration; no slot: `-ENOTTY` (no target VM).
    /// * The VM in that slot must be powered off, else `-1`.
    /// * `create_vm` names an unnamed VM "ACRN VM_<id>".
    /// * On any failure the slot's name is erased, even when the slot holds a live VM.
    pub(crate) fn create_vm(&self, cv: &mut [u8]) -> i64 {
        use abi::le;
        use abi::vm_creation as o;
        let mut name = [0u8; 16];
        name.copy_from_slice(&cv[o::UUID..o::UUID + 16]);
        let vm_flag = le::u64_at(cv, o::VM_FLAG) & abi::DM_OWNED_GUEST_FLAG_MASK;
        let affinity = le::u64_at(cv, o::CPU_AFFINITY);
        let mut t = lock(&self.table);
        let n = t.vms.len();
        let by_name = (name[0] != 0)
            .then(|| (0..n).find(|&i| cstr_eq(&t.names[i], &name)))
            .flatten();
        let vmid = match by_name {
            Some(i) => i,
            None => match (1..n).find(|&i| t.names[i][0] == 0) {
                Some(i) => {
                    t.names[i] = name;
                    i
                }
                None => return HV_ENOTTY,
            },
        };
        if vmid == 0 {
            // The Service VM's own name: it is not powered off.
            return HV_EPERM;
        }
        let ret = self.create_in_slot(&mut t, vmid, vm_flag, affinity);
        match ret {
            Ok((vmid16, created)) => {
                le::put_u16(cv, o::VMID, vmid16);
                le::put_u16(cv, o::VCPU_NUM, created);
                HV_OK
            }
            Err(r) => {
                t.names[vmid] = [0; 16];
                r
            }
        }
    }

    fn create_in_slot(
        &self,
        t: &mut VmTable,
        vmid: usize,
        vm_flag: u64,
        affinity: u64,
    ) -> Result<(u16, u16), i64> {
        if let Some(vm) = &t.vms[vmid] {
            if vm.state() != VmState::PoweredOff {
                return Err(HV_EPERM);
            }
        }
        // The slot's configured affinity is the one just copied in; beyond it, the board's
        // pCPUs bound what any VM can use.
        let configured = self.configured_affinity();
        if affinity & !configured != 0 {
            return Err(HV_EPERM);
        }
        if vm_flag & abi::GUEST_FLAG_LAPIC_PASSTHROUGH != 0 && vm_flag & abi::GUEST_FLAG_RT == 0 {
            return Err(HV_EPERM);
        }
        let pcpus = if affinity != 0 { affinity } else { configured };
        let created = (pcpus.count_ones() as usize).min(MAX_VCPUS_PER_VM);
        let vmid16 = u16::try_from(vmid).map_err(|_| HV_ENOTTY)?;
        if t.names[vmid][0] == 0 {
            let label = format!("ACRN VM_{vmid}");
            let l = label.len().min(15);
            t.names[vmid] = [0; 16];
            t.names[vmid][..l].copy_from_slice(&label.as_bytes()[..l]);
        }
        let vm = Arc::new(HvVm {
            vmid: vmid16,
            name: t.names[vmid],
            vm_flag,
            polling: vm_flag & abi::GUEST_FLAG_IO_COMPLETION_POLLING != 0,
            created_vcpus: created as u16,
            state: AtomicU8::new(VmState::Created as u8),
            generation: AtomicU64::new(0),
            ioreq: RwLock::new(None),
            vcpus: (0..created).map(|_| HvVcpu::new()).collect(),
            regions: Mutex::new(Vec::new()),
            lifecycle: Mutex::new(()),
            dev: Mutex::new(VmDevices::default()),
            vpci_addr: AtomicU32::new(0),
            guest_pci_lock: Mutex::new(()),
            kvm: Default::default(),
            irq: VmIrq::new(created),
        });
        t.vms[vmid] = Some(vm);
        Ok((vmid16, created as u16))
    }

    /// `hcall_set_ioreq_buffer`: the VM must be CREATED; sets `processed = FREE` in all 16 slots.
    pub(crate) fn set_ioreq_buffer(&self, vmid: u16, page: Pinned) -> i64 {
        let Some(vm) = self.vm(vmid) else {
            return HV_ENOTTY;
        };
        let _l = lock(&vm.lifecycle);
        if vm.state() != VmState::Created {
            return HV_EPERM;
        }
        for i in 0..abi::IO_REQUEST_MAX {
            Slot::new(&page, i)
                .processed()
                .store(abi::STATE_FREE, Ordering::Relaxed);
        }
        *vm.ioreq.write().unwrap_or_else(|e| e.into_inner()) = Some(page);
        HV_OK
    }

    /// Whether VMs started now run on KVM.
    pub(crate) fn kvm_engine(&self) -> bool {
        self.engine.load(Ordering::Acquire) == 1
    }

    /// `hcall_start_vm`: CREATED and an ioreq page, else -1. On the KVM engine the vCPUs start
    /// running guest code (a KVM failure is -1, its reason kept for `Emulator::kvm_error`).
    pub(crate) fn start_vm(self: &Arc<Self>, vmid: u16) -> i64 {
        let Some(vm) = self.vm(vmid) else {
            return HV_ENOTTY;
        };
        let _l = lock(&vm.lifecycle);
        if vm.state() != VmState::Created || vm.ioreq_page().is_none() {
            return HV_EPERM;
        }
        vm.set_state(VmState::Running);
        if self.kvm_engine() && self.hooks.start(self, &vm).is_err() {
            vm.set_state(VmState::Created);
            return HV_EPERM;
        }
        HV_OK
    }

    /// `hcall_pause_vm`: -1 only if powered off; otherwise PAUSED (vCPUs zombie), 0 even if it
    /// already was.
    pub(crate) fn pause_vm(&self, vmid: u16) -> i64 {
        let Some(vm) = self.vm(vmid) else {
            return HV_ENOTTY;
        };
        let _l = lock(&vm.lifecycle);
        if vm.state() == VmState::PoweredOff {
            return HV_EPERM;
        }
        vm.set_state(VmState::Paused);
        vm.kick_all();
        // Synchronous, as the hypervisor's pause is: a vCPU that saw RUNNING before the store
        // above finishes placing its request (and its upcall) before PAUSE_VM returns, so that
        // CLEAR_VM_IOREQ and RESET_VM that follow see it. (Without this a request placed after
        // RESET_VM's sweep stayed in the slot of a vCPU that had stopped: #GP on its next run.)
        vm.wait_out_of_guest_mode();
        self.hooks.pause(&vm);
        HV_OK
    }

    /// `hcall_reset_vm`: PAUSED, else -1; every slot FREE, vCPUs reset, then CREATED.
    pub(crate) fn reset_vm(&self, vmid: u16) -> i64 {
        let Some(vm) = self.vm(vmid) else {
            return HV_ENOTTY;
        };
        let _l = lock(&vm.lifecycle);
        if vm.state() != VmState::Paused {
            return HV_EPERM;
        }
        vm.generation.fetch_add(1, Ordering::AcqRel);
        if let Some(page) = vm.ioreq_page() {
            for i in 0..abi::IO_REQUEST_MAX {
                Slot::new(&page, i)
                    .processed()
                    .store(abi::STATE_FREE, Ordering::Relaxed);
            }
        }
        for v in &vm.vcpus {
            v.reset();
        }
        vm.irq.reset();
        vm.set_state(VmState::Created);
        vm.kick_all();
        // The KVM engine's vCPU threads end (they saw the new generation) and are joined.
        self.hooks.stop(&vm);
        HV_OK
    }

    /// `hcall_destroy_vm`: PAUSED, else -1. `shutdown_vm`: powers the VM off, releases its ioreq
    /// page, and erases the slot's name.
    pub(crate) fn destroy_vm(&self, vmid: u16) -> i64 {
        let Some(vm) = self.vm(vmid) else {
            return HV_ENOTTY;
        };
        let _l = lock(&vm.lifecycle);
        if vm.state() != VmState::Paused {
            return HV_EPERM;
        }
        // POWERED_OFF before the generation changes: a vCPU woken by the new generation reads
        // the state to tell a destroy from a reset.
        vm.set_state(VmState::PoweredOff);
        vm.generation.fetch_add(1, Ordering::AcqRel);
        *vm.ioreq.write().unwrap_or_else(|e| e.into_inner()) = None;
        lock(&vm.regions).clear();
        vm.kick_all();
        // The KVM engine's vCPU threads end (they saw the new generation) and are joined.
        self.hooks.stop(&vm);
        // shutdown_vm: the passed-through devices go back to the Service VM, and a dynamic
        // slot's name is erased (`get_unused_vmid` may hand the slot out again).
        release_vm_devices(vm.vmid, &vm.dev, &self.platform);
        lock(&self.table).names[usize::from(vmid)] = [0; 16];
        HV_OK
    }

    /// `hcall_set_vcpu_regs`: not powered off, not RUNNING, vcpu exists, cr0/cr4 valid; else -1.
    pub(crate) fn set_vcpu_regs(&self, vmid: u16, regs: &[u8]) -> i64 {
        use abi::le;
        use abi::vcpu_regs as o;
        let Some(vm) = self.vm(vmid) else {
            return HV_ENOTTY;
        };
        let st = vm.state();
        if st == VmState::PoweredOff || st == VmState::Running {
            return HV_EPERM;
        }
        let id = usize::from(le::u16_at(regs, o::VCPU_ID));
        if id >= MAX_VCPUS_PER_VM {
            return HV_EPERM;
        }
        let Some(vcpu) = vm.vcpus.get(id) else {
            // vcpu_from_vid of a vCPU that was not created: VCPU_OFFLINE.
            return HV_EPERM;
        };
        if !valid_cr0_cr4(le::u64_at(regs, o::CR0), le::u64_at(regs, o::CR4)) {
            return HV_EPERM;
        }
        lock(&vcpu.regs).copy_from_slice(&regs[o::REGS..o::REGS + 288]);
        HV_OK
    }

    /// `hcall_notify_ioreq_finish`: not powered off, has an ioreq page, `vcpu < created_vcpus`;
    /// signals the vCPU's I/O event unless the VM polls.
    pub(crate) fn notify_request_finish(&self, vm: &HvVm, vcpu: u16) -> i64 {
        if vm.state() == VmState::PoweredOff || vm.ioreq_page().is_none() {
            return HV_EPERM;
        }
        let Some(v) = vm.vcpus.get(usize::from(vcpu)) else {
            return HV_EPERM;
        };
        if !vm.polling {
            v.signal_event();
        }
        HV_OK
    }

    /// `hcall_set_vm_memory_regions` with one batch: `(op, user_vm_pa, service_vm_pa, size, attr)`
    /// where op 0 = ADD, 2 = DEL. Each region (`set_vm_memory_region`): a size that is not a
    /// multiple of 4 KiB is `-EINVAL`; ADD needs the Service-VM range mapped
    /// (`ept_is_valid_mr(service_vm, ...)`), DEL needs every page of the range mapped in the
    /// User VM, whatever segments it came from (`ept_is_valid_mr(target_vm, ...)`); a zero size
    /// passes both checks and maps nothing. The batch stops at the first failing region.
    pub(crate) fn set_memory_regions(&self, vmid: u16, ops: &[(u32, u64, u64, u64, u32)]) -> i64 {
        let Some(vm) = self.vm(vmid) else {
            return HV_ENOTTY;
        };
        if vm.state() == VmState::PoweredOff {
            return HV_EPERM;
        }
        let mut regions = lock(&vm.regions);
        for &(op, gpa, hpa, size, attr) in ops {
            if size % 4096 != 0 {
                return HV_EINVAL;
            }
            if op == 0 {
                if !lock(&self.platform).service_vm_mapped(hpa, size) {
                    return HV_EINVAL;
                }
                if size == 0 {
                    continue;
                }
                // ept_add_mr replaces whatever the range mapped before.
                ept_del(&mut regions, gpa, size);
                regions.push((gpa, size, hpa, attr));
            } else {
                if !ept_mapped(&regions, gpa, size) {
                    return HV_EINVAL;
                }
                ept_del(&mut regions, gpa, size);
            }
        }
        HV_OK
    }

    /// `hcall_inject_msi` → `vlapic_inject_msi` → `inject_msi_for_non_lapic_pt` (vlapic.c):
    /// not powered off, and the address's bits 31:20 must be 0xFEE (`MSI_ADDR_BASE`), else -1.
    /// `ev` is recorded on success. (An LAPIC-passthrough VM sends an IPI instead; the emulator
    /// applies the same address check to it.)
    pub(crate) fn inject_msi(&self, vmid: u16, addr: u64, ev: InterruptEvent) -> i64 {
        let Some(vm) = self.vm(vmid) else {
            return HV_ENOTTY;
        };
        if vm.state() == VmState::PoweredOff || (addr >> 20) & 0xfff != 0xfee {
            return HV_EPERM;
        }
        if self.hooks.inject(&vm, &ev) {
            return HV_OK;
        }
        if let InterruptEvent::Msi { data, .. } | InterruptEvent::IrqfdMsi { data, .. } = ev {
            vm.irq.msi(addr, data);
        }
        lock(&self.interrupts).push(ev);
        HV_OK
    }

    /// `hcall_set_irqline` (hypercall.c): not powered off and `gsi < get_vm_gsicount()` (48 vIOAPIC
    /// pins for a post-launched VM), else -1. An unknown `op` is ignored by the vPIC/vIOAPIC
    /// and still returns 0.
    pub(crate) fn set_irqline(&self, vmid: u16, gsi: u32, op: u32) -> i64 {
        let Some(vm) = self.vm(vmid) else {
            return HV_ENOTTY;
        };
        if vm.state() == VmState::PoweredOff || gsi >= VIOAPIC_RTE_NUM {
            return HV_EPERM;
        }
        let ev = InterruptEvent::IrqLine { vmid, gsi, op };
        // On the KVM engine the line goes to the in-kernel vPIC/vIOAPIC.
        if self.hooks.inject(&vm, &ev) {
            return HV_OK;
        }
        vm.irq.set_line(gsi, op);
        lock(&self.interrupts).push(ev);
        HV_OK
    }

    /// Emulator teardown: every waiter stops.
    pub(crate) fn shutdown(&self) {
        self.shutdown.store(true, Ordering::Release);
        for vm in self.all_vms() {
            vm.generation.fetch_add(1, Ordering::AcqRel);
            vm.kick_all();
            self.hooks.stop(&vm);
        }
    }
}

fn cstr_eq(a: &[u8; 16], b: &[u8; 16]) -> bool {
    let la = a.iter().position(|&c| c == 0).unwrap_or(16);
    let lb = b.iter().position(|&c| c == 0).unwrap_or(16);
    a[..la] == b[..lb]
}

/// `is_valid_cr0_cr4` (virtual_cr.c) on a board whose VMX fixed-bit MSRs are the usual ones
/// (CR0 FIXED0 = PE|NE|PG, FIXED1 = all ones; CR4 FIXED0 = VMXE): the bits outside the
/// passthrough, trap-and-passthrough and trap-and-emulate sets are reserved and must hold their
/// fixed value. For CR0 that makes NE a fixed 1 (`cr0_rsv_bits_guest_value`), so `cr0 = 0` is
/// refused, while PG without PE or NW without CD pass (the HV checks no combinations here).
/// For CR4, VMXE, SMXE and CET are reserved (emulated as 0) and so are bits 25 and up.
pub(crate) fn valid_cr0_cr4(cr0: u64, cr4: u64) -> bool {
    // PE MP EM TS ET NE | WP AM | NW CD PG
    const CR0_ALLOWED: u64 = 0x3f | (1 << 16) | (1 << 18) | (1 << 29) | (1 << 30) | (1 << 31);
    const CR0_NE: u64 = 1 << 5;
    // VME PVI TSD DE PSE PAE MCE PGE PCE OSFXSR OSXMMEXCPT UMIP LA57 | FSGSBASE PCIDE OSXSAVE
    // KL SMEP SMAP PKE | PKS
    const CR4_ALLOWED: u64 = 0x1fff
        | (1 << 16)
        | (1 << 17)
        | (1 << 18)
        | (1 << 19)
        | (1 << 20)
        | (1 << 21)
        | (1 << 22)
        | (1 << 24);
    let cr0_reserved = !CR0_ALLOWED | CR0_NE;
    cr0 & cr0_reserved == CR0_NE && cr4 & !CR4_ALLOWED == 0
}
