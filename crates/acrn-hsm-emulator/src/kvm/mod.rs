//! The KVM execution engine of the emulated hypervisor: where `/dev/kvm` exists, a VM's vCPUs
//! run real guest code in `KVM_RUN`, and every PIO/MMIO exit becomes an ACRN I/O request through
//! exactly the path the workload engine uses (`SlotIo::emulate` in `emulator/guest.rs`: fill the
//! slot, PENDING, upcall to the emulated HSM, client, NOTIFY, COMPLETE, post-work, FREE), in both
//! completion modes.
//!
//! The ACRN ABI is mapped onto KVM as the hypervisor implements it:
//!
//! * RAM segments (SET_MEMSEG, EPT mappings of library memory) → KVM memory slots, set at
//!   START_VM from the hypervisor's region list (`vma_base` resolved by `memory.rs`).
//! * SET_VCPU_REGS (`struct acrn_regs`) → `KVM_SET_SREGS`/`KVM_SET_REGS` at START_VM, as the
//!   hypervisor's `set_vcpu_regs` does (CS from the structure; SS/DS/ES/FS/GS base 0 with the
//!   real- or protected-mode data attributes; LDTR/TR selectors). A vCPU whose registers were
//!   never set starts at the architectural reset state (`F000:FFF0`, CS base `0xFFFF0000`).
//! * START/PAUSE/RESET/DESTROY: vCPU threads are kicked out of `KVM_RUN` (a real-time signal,
//!   repeated until each thread reports it left) and end; RESET_VM and DESTROY_VM join them and
//!   drop the KVM VM, so the next START_VM builds a fresh one with the registers then set.
//! * What the hypervisor emulates itself stays below the ABI: vLAPIC, vIOAPIC and vPIC are KVM's
//!   in-kernel irqchip (`KVM_CREATE_IRQCHIP`); SET_IRQLINE and INJECT_MSI drive them through
//!   `KVM_IRQ_LINE` and `KVM_SIGNAL_MSI`. 0xCF8/0xCFC reach the emulated HSM's cf8/cfc path.
//! * The PIT: ACRN provides it in the **device model** (`devicemodel/hw/platform/pit.c`, `vpit`,
//!   created by `vm_init_vdevs`), not the hypervisor. Here KVM's in-kernel PIT
//!   (`KVM_CREATE_PIT2`, speaker port 0x61 included) stands in for it, so ports 0x40–0x43 and
//!   0x61 do not become I/O requests: a timer that must raise IRQ 0 on time is beyond what a
//!   request/response client offers today.
//! * CPUID: KVM's supported CPUID with the hypervisor leaves replaced by ACRN's (0x40000000
//!   "ACRNACRNACRN", max leaf 0x40000010; 0x40000001 features 0, as a User VM sees them;
//!   0x40000010 the TSC frequency in kHz), the initial APIC id per vCPU.
//!
//! A guest that misbehaves ends its vCPU with a [`GuestExit`] (triple fault → `Shutdown`,
//! `KVM_EXIT_INTERNAL_ERROR`, `FAIL_ENTRY`, any exit the engine does not handle), reported by
//! [`crate::Emulator::wait_guest_exit`]; the vCPU thread ends, nothing hangs.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Once};
use std::time::Duration;

use kvm_bindings::{
    CpuId, KVM_MAX_CPUID_ENTRIES, KVM_PIT_SPEAKER_DUMMY, kvm_msi, kvm_pit_config, kvm_regs,
    kvm_segment, kvm_userspace_memory_region,
};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd};

use crate::abi;
use crate::guest::{IoOutcome, SlotIo};
use crate::hsm::HsmGlobal;
use crate::hv::{EngineHooks, Hv, HvVm};
use crate::kvm_state::{KvmVm, VcpuThread};
use crate::memory;
use crate::types::{InterruptEvent, VmState, lock};

pub use crate::kvm_state::{GuestExit, GuestExitKind, KvmStats};
use std::sync::atomic::{Ordering, fence};

/// Which engine executes a VM's vCPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Engine {
    /// Scripted accesses replayed by threads ([`crate::Guest`]): benchmarks, fault injection,
    /// machines without KVM. The default.
    #[default]
    Workload,
    /// Real guest code in `KVM_RUN` (needs a usable `/dev/kvm`).
    Kvm,
}

/// What this machine's `/dev/kvm` offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvmProbe {
    /// The KVM engine can run here.
    pub usable: bool,
    /// Why not (or a summary when usable).
    pub reason: String,
    /// `KVM_GET_API_VERSION` (0 when not opened).
    pub api_version: i32,
    /// Recommended vCPUs per VM (`KVM_CAP_NR_VCPUS`).
    pub max_vcpus: usize,
}

/// Checks that `/dev/kvm` opens, speaks API 12, creates a VM with an in-kernel irqchip and a
/// vCPU.
pub fn probe() -> KvmProbe {
    let kvm = match Kvm::new() {
        Ok(k) => k,
        Err(e) => {
            return KvmProbe {
                usable: false,
                reason: format!("/dev/kvm: {e}"),
                api_version: 0,
                max_vcpus: 0,
            };
        }
    };
    let api = kvm.get_api_version();
    let max = kvm.get_nr_vcpus();
    let fail = |reason: String| KvmProbe {
        usable: false,
        reason,
        api_version: api,
        max_vcpus: max,
    };
    if api != 12 {
        return fail(format!("KVM API version {api}, 12 needed"));
    }
    let vm = match kvm.create_vm() {
        Ok(v) => v,
        Err(e) => return fail(format!("KVM_CREATE_VM: {e}")),
    };
    if let Err(e) = vm.create_irq_chip() {
        return fail(format!("KVM_CREATE_IRQCHIP: {e}"));
    }
    if let Err(e) = vm.create_vcpu(0) {
        return fail(format!("KVM_CREATE_VCPU: {e}"));
    }
    KvmProbe {
        usable: true,
        reason: format!("/dev/kvm usable (API {api}, {max} vCPUs recommended)"),
        api_version: api,
        max_vcpus: max,
    }
}

/// The kick signal: its handler does nothing, its delivery ends `KVM_RUN` with `EINTR`.
fn kick_signal() -> i32 {
    vmm_sys_util::signal::SIGRTMIN() + 3
}

extern "C" fn on_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

fn install_kick_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = vmm_sys_util::signal::register_signal_handler(kick_signal(), on_kick);
    });
}

/// The KVM engine in the hypervisor's lifecycle ([`EngineHooks`]), installed by the crate root
/// into every machine's `Hv`: START_VM on the KVM engine builds the KVM VM, PAUSE/RESET/DESTROY
/// (and teardown) end its vCPU threads, interrupts go to its irqchip. On the workload engine (no
/// KVM VM) each hook does nothing. Holds HSM's global state for the vCPU threads' upcalls.
pub(crate) struct KvmHooks {
    hsm: Arc<HsmGlobal>,
}

impl KvmHooks {
    pub(crate) fn new(hsm: Arc<HsmGlobal>) -> KvmHooks {
        KvmHooks { hsm }
    }
}

impl EngineHooks for KvmHooks {
    fn start(&self, hv: &Arc<Hv>, vm: &Arc<HvVm>) -> Result<(), String> {
        start(hv, &self.hsm, vm)
    }
    fn pause(&self, vm: &HvVm) {
        pause(vm);
    }
    fn stop(&self, vm: &HvVm) {
        stop(vm);
    }
    fn inject(&self, vm: &HvVm, ev: &InterruptEvent) -> bool {
        inject(vm, ev)
    }
}

/// START_VM on the KVM engine: a fresh KVM VM with the VM's RAM regions, irqchip and PIT, one
/// vCPU per created vCPU with its registers and CPUID, each on its thread in `KVM_RUN`. The VM
/// state is already RUNNING. Errors are the reason, kept for [`crate::Emulator::kvm_error`].
fn start(hv: &Arc<Hv>, hsm: &Arc<HsmGlobal>, vm: &Arc<HvVm>) -> Result<(), String> {
    let st = &vm.kvm;
    let mut running = lock(&st.running);
    if let Some(old) = running.take() {
        // A VM restarted without RESET (not reachable through the ABI): end the old threads.
        drop(running);
        stop_threads(old);
        running = lock(&st.running);
    }
    let r = build(hv, hsm, vm);
    match r {
        Ok(k) => {
            *running = Some(k);
            *lock(&st.last_error) = None;
            st.counters.starts.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        Err(e) => {
            *lock(&st.last_error) = Some(e.clone());
            Err(e)
        }
    }
}

fn build(hv: &Arc<Hv>, hsm: &Arc<HsmGlobal>, vm: &Arc<HvVm>) -> Result<KvmVm, String> {
    install_kick_handler();
    let kvm = Kvm::new().map_err(|e| format!("/dev/kvm: {e}"))?;
    let fd = kvm.create_vm().map_err(|e| format!("KVM_CREATE_VM: {e}"))?;
    // Intel needs a TSS and identity map below 4 GiB for real mode; above the firmware's
    // 128 KiB (0xFFFE0000) and below a 256 KiB BIOS (0xFFFC0000), as QEMU places them.
    let _ = fd.set_identity_map_address(0xfffb_c000);
    let _ = fd.set_tss_address(0xfffb_d000);
    fd.create_irq_chip()
        .map_err(|e| format!("KVM_CREATE_IRQCHIP: {e}"))?;
    let pit = kvm_pit_config {
        flags: KVM_PIT_SPEAKER_DUMMY,
        ..Default::default()
    };
    fd.create_pit2(pit)
        .map_err(|e| format!("KVM_CREATE_PIT2: {e}"))?;
    // RAM: the hypervisor's regions whose host address is library memory (MMIO regions map
    // host device memory, which the emulator does not have).
    let regions = lock(&vm.regions).clone();
    let mut pins = Vec::new();
    let mut slot = 0u32;
    for (gpa, size, hpa, attr) in regions {
        if attr & 0x40 == 0 {
            continue;
        }
        let Ok(len) = usize::try_from(size) else {
            continue;
        };
        let pin = memory::pin(hpa, len).map_err(|e| format!("RAM at {gpa:#x}: {e}"))?;
        let region = kvm_userspace_memory_region {
            slot,
            flags: 0,
            guest_phys_addr: gpa,
            memory_size: size,
            userspace_addr: pin.addr(),
        };
        // SAFETY: `userspace_addr..+memory_size` is a live library allocation, kept mapped by
        // `pin` (held in the returned `KvmVm`, dropped only after every vCPU thread has been
        // joined and the VM fd closed); the guest accessing it concurrently is the contract of
        // guest memory (volatile/atomic access only on the host side).
        unsafe { fd.set_user_memory_region(region) }
            .map_err(|e| format!("KVM_SET_USER_MEMORY_REGION {gpa:#x}+{size:#x}: {e}"))?;
        pins.push(pin);
        slot += 1;
    }
    // The HSM's ioeventfds, matched by KVM itself (`KvmIoeventfd`).
    vm.kvm.assign_ioeventfds(&fd);
    let supported = kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(|e| format!("KVM_GET_SUPPORTED_CPUID: {e}"))?;
    let mut tsc_khz = 0;
    let fd = Arc::new(fd);
    let mut threads = Vec::new();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let spin_limit = if vm.vcpus.len() < cores { 20_000 } else { 64 };
    for id in 0..vm.vcpus.len() {
        let vcpu = fd
            .create_vcpu(id as u64)
            .map_err(|e| format!("KVM_CREATE_VCPU {id}: {e}"))?;
        if id == 0 {
            tsc_khz = vcpu.get_tsc_khz().unwrap_or(0);
        }
        let cpuid = acrn_cpuid(&supported, id as u32, tsc_khz)?;
        vcpu.set_cpuid2(&cpuid)
            .map_err(|e| format!("KVM_SET_CPUID2: {e}"))?;
        if id == 0 {
            bsp_virtual_wire(&vcpu)?;
        }
        let regs = lock(&vm.vcpus[id].regs).clone();
        apply_regs(&vcpu, &regs)?;
        let in_run = Arc::new(AtomicBool::new(false));
        let (hv2, hsm2, vm2, flag) = (hv.clone(), hsm.clone(), vm.clone(), in_run.clone());
        let rec = lock(&vm.kvm.recorder).as_ref().map(|r| r.vcpu(id as u16));
        vm.vcpus[id].busy.store(true, Ordering::Release);
        vm.kvm.counters.live.fetch_add(1, Ordering::AcqRel);
        let handle = std::thread::Builder::new()
            .name(format!("kvm-vcpu{id}"))
            .spawn(move || {
                let mut path = SlotIo::new(hv2, hsm2, vm2.clone(), id, spin_limit);
                path.rec = rec;
                run_vcpu(&mut path, vcpu, &flag);
                drop(path.rec.take());
                *lock(&vm2.vcpus[id].waiter) = None;
                vm2.vcpus[id].busy.store(false, Ordering::Release);
                vm2.kvm.counters.live.fetch_sub(1, Ordering::AcqRel);
            })
            .map_err(|e| format!("vCPU thread: {e}"))?;
        threads.push(VcpuThread { handle, in_run });
    }
    Ok(KvmVm {
        vm: fd,
        threads,
        _pins: pins,
    })
}

/// PAUSE_VM (after the PAUSED store): every vCPU thread leaves `KVM_RUN` before this returns
/// (a thread in the middle of a request finishes it as a zombie, without post-work, and ends).
fn pause(vm: &HvVm) {
    let running = lock(&vm.kvm.running);
    if let Some(k) = running.as_ref() {
        kick_out(&k.threads);
    }
}

/// RESET_VM / DESTROY_VM (after the generation bump): the vCPU threads end and are joined, and
/// the KVM VM is dropped.
fn stop(vm: &HvVm) {
    let k = lock(&vm.kvm.running).take();
    if let Some(k) = k {
        stop_threads(k);
    }
}

fn stop_threads(k: KvmVm) {
    kick_out(&k.threads);
    for t in k.threads {
        let _ = t.handle.join();
    }
    drop(k.vm);
}

/// Kicks each thread until it is out of `KVM_RUN` (or finished). The state store that made it
/// leave precedes this call; the thread's `in_run` store precedes its state check (a Dekker
/// pair with SeqCst fences), so a thread that saw RUNNING is seen here as in `KVM_RUN`.
fn kick_out(threads: &[VcpuThread]) {
    use vmm_sys_util::signal::Killable;
    fence(Ordering::SeqCst);
    for t in threads {
        let mut n = 0u32;
        while t.in_run.load(Ordering::SeqCst) && !t.handle.is_finished() {
            let _ = t.handle.kill(kick_signal());
            n += 1;
            std::thread::sleep(Duration::from_micros(if n < 10 { 100 } else { 1000 }));
        }
    }
}

/// An interrupt for a VM running on KVM: SET_IRQLINE → `KVM_IRQ_LINE` (`op` as the device
/// model's `vm_set_gsi_irq`: GSI_SET_HIGH 0, GSI_SET_LOW 1, GSI_RAISING_PULSE 2,
/// GSI_FALLING_PULSE 3), INJECT_MSI and irqfd MSIs → `KVM_SIGNAL_MSI`. Returns false when the
/// VM has no running KVM VM (the event is then only recorded, as on the workload engine).
fn inject(vm: &HvVm, ev: &InterruptEvent) -> bool {
    let Some(fd) = vm.kvm.vm_fd() else {
        return false;
    };
    vm.kvm.counters.irqs.fetch_add(1, Ordering::Relaxed);
    match *ev {
        InterruptEvent::IrqLine { gsi, op, .. } => {
            let levels: &[bool] = match op {
                0 => &[true],
                1 => &[false],
                2 => &[true, false],
                3 => &[false, true],
                _ => &[],
            };
            for &l in levels {
                let _ = fd.set_irq_line(gsi, l);
            }
        }
        InterruptEvent::Msi { addr, data, .. } | InterruptEvent::IrqfdMsi { addr, data, .. } => {
            let m = kvm_msi {
                address_lo: addr as u32,
                address_hi: (addr >> 32) as u32,
                data: data as u32,
                ..Default::default()
            };
            let _ = fd.signal_msi(m);
        }
    }
    true
}

/// The CPUID a vCPU of an ACRN User VM sees: KVM's supported leaves, KVM's own hypervisor leaves
/// replaced by ACRN's, the hypervisor bit set, and the initial APIC id.
fn acrn_cpuid(supported: &CpuId, apic_id: u32, tsc_khz: u32) -> Result<CpuId, String> {
    use kvm_bindings::kvm_cpuid_entry2;
    let mut out: Vec<kvm_cpuid_entry2> = supported
        .as_slice()
        .iter()
        .filter(|e| !(0x4000_0000..0x4000_0100).contains(&e.function))
        .copied()
        .collect();
    for e in out.iter_mut() {
        match e.function {
            1 => {
                e.ecx |= 1 << 31;
                e.ebx = (e.ebx & 0x00ff_ffff) | (apic_id << 24);
            }
            0xb | 0x1f => e.edx = apic_id,
            _ => {}
        }
    }
    let sig = |s: &[u8; 4]| u32::from_le_bytes(*s);
    let leaf = |function, eax, ebx, ecx, edx| kvm_cpuid_entry2 {
        function,
        eax,
        ebx,
        ecx,
        edx,
        ..Default::default()
    };
    out.push(leaf(
        0x4000_0000,
        0x4000_0010,
        sig(b"ACRN"),
        sig(b"ACRN"),
        sig(b"ACRN"),
    ));
    // ACRN_CPUID_FEATURES: no ACRN_FEATURE_PRIVILEGED_VM for a User VM.
    out.push(leaf(0x4000_0001, 0, 0, 0, 0));
    // ACRN_CPUID_TIMING_INFO: the TSC frequency in kHz.
    out.push(leaf(0x4000_0010, tsc_khz, 0, 0, 0));
    CpuId::from_entries(&out).map_err(|e| format!("CPUID table: {e:?}"))
}

/// The BSP's LAPIC at power-on as a PC leaves it for the firmware: LINT0 in ExtINT mode and
/// LINT1 NMI ("virtual wire"), so that the 8259's interrupts reach the vCPU before the guest
/// programs its LAPIC (QEMU's `apic_reset_common` does the same for the BSP). Without it KVM
/// accepts no PIC interrupt while the LAPIC is hardware-enabled with LVT0 masked.
fn bsp_virtual_wire(vcpu: &VcpuFd) -> Result<(), String> {
    let mut l = vcpu
        .get_lapic()
        .map_err(|e| format!("KVM_GET_LAPIC: {e}"))?;
    let mut put = |off: usize, v: u32| {
        for (i, b) in v.to_le_bytes().iter().enumerate() {
            l.regs[off + i] = *b as _;
        }
    };
    put(0x350, 0x700); // LVT LINT0: ExtINT
    put(0x360, 0x400); // LVT LINT1: NMI
    vcpu.set_lapic(&l)
        .map_err(|e| format!("KVM_SET_LAPIC: {e}"))
}

/// A KVM segment from VMX-style access rights (type 3:0, S 4, DPL 6:5, P 7, AVL 12, L 13,
/// D/B 14, G 15, unusable 16).
fn segment(selector: u16, base: u64, limit: u32, ar: u32) -> kvm_segment {
    kvm_segment {
        base,
        limit,
        selector,
        type_: (ar & 0xf) as u8,
        s: ((ar >> 4) & 1) as u8,
        dpl: ((ar >> 5) & 3) as u8,
        present: ((ar >> 7) & 1) as u8,
        avl: ((ar >> 12) & 1) as u8,
        l: ((ar >> 13) & 1) as u8,
        db: ((ar >> 14) & 1) as u8,
        g: ((ar >> 15) & 1) as u8,
        unusable: ((ar >> 16) & 1) as u8,
        padding: 0,
    }
}

/// `set_vcpu_regs` of the hypervisor applied to a KVM vCPU; `regs` is the 288-byte
/// `acrn_regs`. All zero (never set; SET_VCPU_REGS refuses CR0 = 0) keeps KVM's reset state.
fn apply_regs(vcpu: &VcpuFd, regs: &[u8]) -> Result<(), String> {
    use abi::{le, regs as r};
    if regs.iter().all(|&b| b == 0) {
        return Ok(());
    }
    let mut s = vcpu
        .get_sregs()
        .map_err(|e| format!("KVM_GET_SREGS: {e}"))?;
    let cr0 = le::u64_at(regs, r::CR0);
    let pe = cr0 & 1 != 0;
    s.cr0 = cr0;
    s.cr4 = le::u64_at(regs, r::CR4);
    s.cr3 = le::u64_at(regs, r::CR3);
    s.efer = le::u64_at(regs, r::IA32_EFER);
    s.gdt.limit = le::u16_at(regs, r::GDT_LIMIT);
    s.gdt.base = le::u64_at(regs, r::GDT_BASE);
    s.idt.limit = le::u16_at(regs, r::IDT_LIMIT);
    s.idt.base = le::u64_at(regs, r::IDT_BASE);
    let sel = |i: usize| le::u16_at(regs, r::SELECTORS + 2 * i);
    s.cs = segment(
        sel(0),
        le::u64_at(regs, r::CS_BASE),
        le::u32_at(regs, r::CS_LIMIT),
        le::u32_at(regs, r::CS_AR),
    );
    // PROTECTED_MODE_DATA_SEG_AR 0xC093 / REAL_MODE_DATA_SEG_AR 0x0093, limits 4 GiB / 64 KiB.
    let (ar, limit) = if pe {
        (0xc093, 0xffff_ffff)
    } else {
        (0x0093, 0xffff)
    };
    s.ss = segment(sel(1), 0, limit, ar);
    s.ds = segment(sel(2), 0, limit, ar);
    s.es = segment(sel(3), 0, limit, ar);
    s.fs = segment(sel(4), 0, limit, ar);
    s.gs = segment(sel(5), 0, limit, ar);
    // LDTR_AR 0x0082 limit 0xffff, TR_AR 0x008b limit 0xff.
    s.ldt = segment(sel(6), 0, 0xffff, 0x0082);
    s.tr = segment(sel(7), 0, 0xff, 0x008b);
    vcpu.set_sregs(&s)
        .map_err(|e| format!("KVM_SET_SREGS: {e}"))?;
    let g = |i: usize| le::u64_at(regs, r::GPRS + 8 * i);
    let r = kvm_regs {
        rax: g(0),
        rcx: g(1),
        rdx: g(2),
        rbx: g(3),
        rsp: g(4),
        rbp: g(5),
        rsi: g(6),
        rdi: g(7),
        r8: g(8),
        r9: g(9),
        r10: g(10),
        r11: g(11),
        r12: g(12),
        r13: g(13),
        r14: g(14),
        r15: g(15),
        rip: le::u64_at(regs, r::RIP),
        rflags: le::u64_at(regs, r::RFLAGS) | 2,
    };
    vcpu.set_regs(&r).map_err(|e| format!("KVM_SET_REGS: {e}"))
}

/// One access of an exit, as the engine hands it to [`SlotIo::emulate`].
struct Access {
    ty: u32,
    addr: u64,
    size: u8,
    write: bool,
    value: u64,
}

enum Step {
    /// Emulate these accesses (a string PIO instruction has several), then run again.
    Io(Vec<Access>, IoData),
    /// Run again.
    Again,
    /// The vCPU ends on its own.
    Exit(GuestExitKind),
}

/// Where the read values go.
enum IoData {
    /// PIO: `data_offset` in `kvm_run`, `size` per element.
    Pio { offset: usize, size: usize },
    /// MMIO: `kvm_run.mmio.data`.
    Mmio,
}

fn run_vcpu(path: &mut SlotIo, mut vcpu: VcpuFd, in_run: &AtomicBool) {
    let vm = path.vm.clone();
    let kvm = &vm.kvm;
    let id = path.id;
    loop {
        in_run.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if path.stop_reason().is_some() || vm.state() != VmState::Running {
            in_run.store(false, Ordering::SeqCst);
            return;
        }
        let step = match vcpu.run() {
            Ok(VcpuExit::IoIn(..)) | Ok(VcpuExit::IoOut(..)) => pio_step(&mut vcpu),
            Ok(VcpuExit::MmioRead(addr, data)) => Step::Io(
                vec![Access {
                    ty: abi::TYPE_MMIO,
                    addr,
                    size: data.len() as u8,
                    write: false,
                    value: 0,
                }],
                IoData::Mmio,
            ),
            Ok(VcpuExit::MmioWrite(addr, data)) => {
                let mut v = [0u8; 8];
                let n = data.len().min(8);
                v[..n].copy_from_slice(&data[..n]);
                Step::Io(
                    vec![Access {
                        ty: abi::TYPE_MMIO,
                        addr,
                        size: n as u8,
                        write: true,
                        value: u64::from_le_bytes(v),
                    }],
                    IoData::Mmio,
                )
            }
            Ok(VcpuExit::Intr) | Ok(VcpuExit::IrqWindowOpen) => Step::Again,
            Ok(VcpuExit::Hlt) => Step::Exit(GuestExitKind::Halt),
            Ok(VcpuExit::Shutdown) => Step::Exit(GuestExitKind::Shutdown),
            Ok(VcpuExit::InternalError) => {
                // SAFETY: the exit reason says the `internal` member of the union is valid.
                let sub = unsafe { vcpu.get_kvm_run().__bindgen_anon_1.internal.suberror };
                Step::Exit(GuestExitKind::InternalError(sub))
            }
            Ok(VcpuExit::FailEntry(reason, _)) => Step::Exit(GuestExitKind::FailEntry(reason)),
            Ok(VcpuExit::SystemEvent(t, _)) => Step::Exit(GuestExitKind::SystemEvent(t)),
            Ok(other) => Step::Exit(GuestExitKind::Unhandled(exit_name(&other))),
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => Step::Again,
            Err(e) => Step::Exit(GuestExitKind::RunError(e.to_string())),
        };
        in_run.store(false, Ordering::SeqCst);
        match step {
            Step::Again => {}
            Step::Exit(kind) => {
                let (rip, cs_base) = match (vcpu.get_regs(), vcpu.get_sregs()) {
                    (Ok(r), Ok(s)) => (r.rip, s.cs.base),
                    _ => (0, 0),
                };
                kvm.report(GuestExit {
                    vcpu: id as u16,
                    kind,
                    rip,
                    cs_base,
                });
                return;
            }
            Step::Io(accesses, data) => {
                for (i, a) in accesses.iter().enumerate() {
                    kvm.counters.exits.fetch_add(1, Ordering::Relaxed);
                    let dir = if a.write {
                        abi::DIR_WRITE
                    } else {
                        abi::DIR_READ
                    };
                    match path.emulate(a.ty, a.addr, a.size, dir, a.value) {
                        IoOutcome::NotRunning(_) => return,
                        IoOutcome::Stopped(_) => {
                            kvm.counters.issued.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                        IoOutcome::Fault { state, issued, .. } => {
                            if issued {
                                kvm.counters.issued.fetch_add(1, Ordering::Relaxed);
                            }
                            kvm.counters.faults.fetch_add(1, Ordering::Relaxed);
                            kvm.report(GuestExit {
                                vcpu: id as u16,
                                kind: GuestExitKind::SlotFault(state),
                                rip: vcpu.get_regs().map_or(0, |r| r.rip),
                                cs_base: 0,
                            });
                            return;
                        }
                        // The hypervisor's own I/O (vPCI's 0xCF8, ...): no request was made.
                        IoOutcome::HvHandled { value } => {
                            kvm.counters.hv_handled.fetch_add(1, Ordering::Relaxed);
                            if !a.write {
                                store_read(&mut vcpu, &data, i, a.size, value);
                            }
                        }
                        IoOutcome::Done { value, .. } => {
                            kvm.counters.issued.fetch_add(1, Ordering::Relaxed);
                            kvm.counters.completed.fetch_add(1, Ordering::Relaxed);
                            if !a.write {
                                store_read(&mut vcpu, &data, i, a.size, value);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The PIO exit's accesses, read from `kvm_run.io` (size, count, data).
fn pio_step(vcpu: &mut VcpuFd) -> Step {
    let run = vcpu.get_kvm_run();
    // SAFETY: called only after an IO exit: the `io` member of the union is the valid one.
    let io = unsafe { run.__bindgen_anon_1.io };
    let size = usize::from(io.size);
    let count = io.count as usize;
    let offset = io.data_offset as usize;
    let write = u32::from(io.direction) == kvm_bindings::KVM_EXIT_IO_OUT;
    let base = std::ptr::from_mut(run).cast::<u8>();
    let mut accesses = Vec::with_capacity(count);
    for i in 0..count {
        let mut v = [0u8; 8];
        if write {
            // SAFETY: the kernel placed `count * size` bytes at `data_offset` inside the
            // mmapped `kvm_run` area (checked by the kernel: within the vCPU's mmap size);
            // `size <= 4`.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    base.wrapping_add(offset + i * size),
                    v.as_mut_ptr(),
                    size.min(8),
                )
            };
        }
        accesses.push(Access {
            ty: abi::TYPE_PORTIO,
            addr: u64::from(io.port),
            size: size as u8,
            write,
            value: u64::from_le_bytes(v),
        });
    }
    Step::Io(accesses, IoData::Pio { offset, size })
}

/// Post-work of a read: the value into the exit's data, which KVM merges into the guest's
/// register (or string destination) on the next `KVM_RUN`.
fn store_read(vcpu: &mut VcpuFd, data: &IoData, i: usize, size: u8, value: u64) {
    let run = vcpu.get_kvm_run();
    let bytes = value.to_le_bytes();
    match data {
        IoData::Pio {
            offset,
            size: esize,
        } => {
            let n = usize::from(size).min(*esize).min(8);
            let base = std::ptr::from_mut(run).cast::<u8>();
            // SAFETY: as in `pio_step`: element `i` of the data area the kernel reserved.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    bytes.as_ptr(),
                    base.wrapping_add(offset + i * esize),
                    n,
                )
            };
        }
        IoData::Mmio => {
            // SAFETY: called only after an MMIO exit: the `mmio` member is the valid one.
            let mmio = unsafe { &mut run.__bindgen_anon_1.mmio };
            let n = usize::from(size).min(8);
            mmio.data[..n].copy_from_slice(&bytes[..n]);
        }
    }
}

fn exit_name(e: &VcpuExit<'_>) -> String {
    let s = format!("{e:?}");
    s.split(['(', ' ', '{']).next().unwrap_or("?").to_string()
}
