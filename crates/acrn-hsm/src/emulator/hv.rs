//! The hypervisor's side: the VM table, VM and vCPU states, the ioreq page, the latched per-vCPU
//! I/O event, and the hypercalls HSM makes. Sources: acrn-hypervisor `hypercall.c`, `vm.c`,
//! `io_req.c`, `event.c` (see acrn-semantics.md §3.2, §4.2, §4.4).
//!
//! Results are hypervisor codes: `0`, `-1` (most failures, `EPERM` in userspace), `-22` (`EINVAL`,
//! memory regions), `-25` (`ENOTTY`, the target VM cannot be resolved).

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::thread::Thread;

use crate::abi;
use crate::emulator::slot::Slot;
use crate::emulator::{EmulatorConfig, InterruptEvent, VmState};
use crate::memory::Pinned;
use crate::sync::{Ordering, fence};

/// HV result codes.
pub(crate) const HV_OK: i64 = 0;
pub(crate) const HV_EPERM: i64 = -1;
pub(crate) const HV_EINVAL: i64 = -22;
pub(crate) const HV_ENOTTY: i64 = -25;

/// `MAX_VCPUS_PER_VM` (one slot per vCPU).
pub(crate) const MAX_VCPUS_PER_VM: usize = abi::IO_REQUEST_MAX;

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One vCPU of a VM.
pub(crate) struct HvVcpu {
    /// `VCPU_EVENT_IOREQ`: latched (`signal_event` sets, a later `wait_event` returns at once and
    /// clears).
    event: Mutex<bool>,
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
        let mut set = lock(&self.event);
        loop {
            if *set {
                *set = false;
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
        *lock(&self.event) = false;
        lock(&self.regs).fill(0);
    }
}

/// One VM on the hypervisor.
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
    /// The KVM engine's side of this VM (unused on the workload engine).
    pub(crate) kvm: crate::emulator::kvm::KvmState,
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
}

/// The hypervisor: a table of VMs indexed by vmid (0 is the Service VM).
pub(crate) struct Hv {
    pub(crate) config: EmulatorConfig,
    vms: Mutex<Vec<Option<Arc<HvVm>>>>,
    pub(crate) interrupts: Mutex<Vec<InterruptEvent>>,
    pub(crate) shutdown: AtomicBool,
    /// The execution engine of VMs started from now on (`Engine as u8`).
    pub(crate) engine: AtomicU8,
    /// HSM's global state (the VM list, the dispatcher).
    pub(crate) hsm: crate::emulator::hsm::HsmGlobal,
}

impl Hv {
    pub(crate) fn new(config: EmulatorConfig) -> Hv {
        let n = usize::from(config.max_vms) + 1;
        Hv {
            config,
            vms: Mutex::new(vec![None; n]),
            interrupts: Mutex::new(Vec::new()),
            shutdown: AtomicBool::new(false),
            engine: AtomicU8::new(0),
            hsm: crate::emulator::hsm::HsmGlobal::new(),
        }
    }

    /// Resolves a (relative) vmid, as `parse_target_vm` does.
    pub(crate) fn vm(&self, vmid: u16) -> Option<Arc<HvVm>> {
        if vmid == 0 {
            return None;
        }
        lock(&self.vms).get(usize::from(vmid)).cloned().flatten()
    }

    pub(crate) fn all_vms(&self) -> Vec<Arc<HvVm>> {
        lock(&self.vms).iter().flatten().cloned().collect()
    }

    fn configured_affinity(&self) -> u64 {
        let n = u32::from(self.config.pcpu_num).min(64);
        if n == 64 { u64::MAX } else { (1u64 << n) - 1 }
    }

    /// `hcall_create_vm`: `cv` is the 48-byte `acrn_vm_creation`, written back on success
    /// (vmid, vcpu_num) as the HV does.
    pub(crate) fn create_vm(&self, cv: &mut [u8]) -> i64 {
        use abi::le;
        use abi::vm_creation as o;
        let mut name = [0u8; 16];
        name.copy_from_slice(&cv[o::UUID..o::UUID + 16]);
        let vm_flag = le::u64_at(cv, o::VM_FLAG) & abi::DM_OWNED_GUEST_FLAG_MASK;
        let affinity = le::u64_at(cv, o::CPU_AFFINITY);
        let mut vms = lock(&self.vms);
        // parse_target_vm: by name (compared as a C string), else the first unused slot.
        let by_name =
            (1..vms.len()).find(|&i| vms[i].as_ref().is_some_and(|vm| cstr_eq(&vm.name, &name)));
        let vmid = match by_name.or_else(|| {
            (1..vms.len()).find(|&i| {
                vms[i]
                    .as_ref()
                    .is_none_or(|vm| vm.state() == VmState::PoweredOff)
            })
        }) {
            Some(i) => i,
            None => return HV_ENOTTY,
        };
        if let Some(vm) = &vms[vmid] {
            if vm.state() != VmState::PoweredOff {
                return HV_EPERM;
            }
        }
        let configured = self.configured_affinity();
        if affinity & !configured != 0 {
            return HV_EPERM;
        }
        if vm_flag & abi::GUEST_FLAG_LAPIC_PASSTHROUGH != 0 && vm_flag & abi::GUEST_FLAG_RT == 0 {
            return HV_EPERM;
        }
        let pcpus = if affinity != 0 { affinity } else { configured };
        let created = (pcpus.count_ones() as usize).min(MAX_VCPUS_PER_VM);
        let Ok(vmid16) = u16::try_from(vmid) else {
            return HV_ENOTTY;
        };
        let vm = Arc::new(HvVm {
            vmid: vmid16,
            name,
            vm_flag,
            polling: vm_flag & abi::GUEST_FLAG_IO_COMPLETION_POLLING != 0,
            created_vcpus: created as u16,
            state: AtomicU8::new(VmState::Created as u8),
            generation: AtomicU64::new(0),
            ioreq: RwLock::new(None),
            vcpus: (0..created).map(|_| HvVcpu::new()).collect(),
            regions: Mutex::new(Vec::new()),
            lifecycle: Mutex::new(()),
            kvm: Default::default(),
        });
        vms[vmid] = Some(vm);
        le::put_u16(cv, o::VMID, vmid16);
        le::put_u16(cv, o::VCPU_NUM, created as u16);
        HV_OK
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
        if self.kvm_engine() && crate::emulator::kvm::start(self, &vm).is_err() {
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
        crate::emulator::guest::wait_out_of_guest_mode(&vm);
        crate::emulator::kvm::pause(&vm);
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
        vm.set_state(VmState::Created);
        vm.kick_all();
        // The KVM engine's vCPU threads end (they saw the new generation) and are joined.
        crate::emulator::kvm::stop(&vm);
        HV_OK
    }

    /// `hcall_destroy_vm`: PAUSED, else -1. Powers the VM off and releases its ioreq page.
    pub(crate) fn destroy_vm(&self, vmid: u16) -> i64 {
        let Some(vm) = self.vm(vmid) else {
            return HV_ENOTTY;
        };
        let _l = lock(&vm.lifecycle);
        if vm.state() != VmState::Paused {
            return HV_EPERM;
        }
        vm.generation.fetch_add(1, Ordering::AcqRel);
        vm.set_state(VmState::PoweredOff);
        *vm.ioreq.write().unwrap_or_else(|e| e.into_inner()) = None;
        lock(&vm.regions).clear();
        vm.kick_all();
        crate::emulator::kvm::stop(&vm);
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
    /// where op 0 = ADD, 2 = DEL.
    pub(crate) fn set_memory_regions(&self, vmid: u16, ops: &[(u32, u64, u64, u64, u32)]) -> i64 {
        let Some(vm) = self.vm(vmid) else {
            return HV_ENOTTY;
        };
        if vm.state() == VmState::PoweredOff {
            return HV_EPERM;
        }
        let mut regions = lock(&vm.regions);
        for &(op, gpa, hpa, size, attr) in ops {
            if size == 0 || size % 4096 != 0 || gpa.checked_add(size).is_none() {
                return HV_EINVAL;
            }
            if op == 0 {
                regions.push((gpa, size, hpa, attr));
            } else {
                // DEL: must lie inside one existing mapping; split it.
                let Some(i) = regions
                    .iter()
                    .position(|&(g, s, _, _)| gpa >= g && gpa + size <= g + s)
                else {
                    return HV_EINVAL;
                };
                let (g, s, h, a) = regions.remove(i);
                if gpa > g {
                    regions.push((g, gpa - g, h, a));
                }
                if gpa + size < g + s {
                    regions.push((gpa + size, g + s - gpa - size, h + (gpa + size - g), a));
                }
            }
        }
        HV_OK
    }

    /// Records an interrupt event (INJECT_MSI, SET_IRQLINE, irqfd); not powered off, else -1.
    pub(crate) fn interrupt(&self, vmid: u16, ev: InterruptEvent) -> i64 {
        let Some(vm) = self.vm(vmid) else {
            return HV_ENOTTY;
        };
        if vm.state() == VmState::PoweredOff {
            return HV_EPERM;
        }
        if crate::emulator::kvm::inject(&vm, &ev) {
            return HV_OK;
        }
        lock(&self.interrupts).push(ev);
        HV_OK
    }

    /// Emulator teardown: every waiter stops.
    pub(crate) fn shutdown(&self) {
        self.shutdown.store(true, Ordering::Release);
        for vm in self.all_vms() {
            vm.generation.fetch_add(1, Ordering::AcqRel);
            vm.kick_all();
            crate::emulator::kvm::stop(&vm);
        }
    }
}

fn cstr_eq(a: &[u8; 16], b: &[u8; 16]) -> bool {
    let la = a.iter().position(|&c| c == 0).unwrap_or(16);
    let lb = b.iter().position(|&c| c == 0).unwrap_or(16);
    a[..la] == b[..lb]
}

/// An approximation of the HV's `is_valid_cr0_cr4`: no reserved CR0 bits, no PG without PE, no
/// NW without CD; no reserved CR4 bits, and VMXE/SMXE refused.
fn valid_cr0_cr4(cr0: u64, cr4: u64) -> bool {
    const CR0_VALID: u64 = 0x3f | (1 << 16) | (1 << 18) | (1 << 29) | (1 << 30) | (1 << 31);
    const CR4_VALID: u64 =
        0x0fff | (1 << 16) | (1 << 17) | (1 << 18) | (1 << 20) | (1 << 21) | (1 << 22);
    const PE: u64 = 1;
    const PG: u64 = 1 << 31;
    const NW: u64 = 1 << 29;
    const CD: u64 = 1 << 30;
    cr0 & !CR0_VALID == 0
        && !(cr0 & PG != 0 && cr0 & PE == 0)
        && !(cr0 & NW != 0 && cr0 & CD == 0)
        && cr4 & !CR4_VALID == 0
}
