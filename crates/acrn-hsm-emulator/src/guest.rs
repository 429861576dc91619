//! The guest side: one thread per vCPU executing a [`Workload`], trapping on every access as the
//! hypervisor does (`acrn-hypervisor:hypervisor/dm/io_req.c`, acrn-semantics.md §4.2, §4.4).
//!
//! Per request: the slot must be FREE (else the guest gets #GP: a [`FaultKind::GeneralProtection`]
//! is recorded and the access is skipped); `type` and the 64-byte `reqs` are written (and
//! `completion_polling = 1` for polling VMs), a release fence, PENDING, and the upcall (the HSM
//! dispatcher runs inline on this thread). Then the wait: polling VMs spin on `processed` with
//! acquire loads and `spin_loop`, backing off to `yield_now` and then to parking (woken by the
//! completer) so that vCPUs beyond the machine's cores do not burn them; notification VMs wait on
//! the latched per-vCPU event. Post-work merges the value (PIO/PCICFG: `RAX = (RAX & !mask) |
//! (value & mask)`; MMIO: the destination register), then FREE (a plain store).
//!
//! Every wait observes the VM: paused (zombie vCPU: a completion then frees the slot without
//! post-work and the vCPU stops), reset, destroyed, or the emulator dropped — so no vCPU thread
//! hangs forever.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::abi;
use crate::errno::Errno;
use crate::hsm::{Emulator, HsmGlobal, upcall};
use crate::hv::{Hv, HvVm};
use crate::slot::{PageSlots, Slot};
use crate::slot_protocol;
use crate::trace::{GuestRecorder, VcpuRecorder, stamp};
use crate::types::{VmState, lock};
use crate::workload::{Access, Op, Workload, size_mask};
use std::sync::atomic::{Ordering, fence};

/// Why a vCPU stopped before the end of its operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The VM was not running when the vCPU needed to execute.
    NotRunning,
    /// PAUSE_VM (the vCPU became a zombie).
    Paused,
    /// RESET_VM.
    Reset,
    /// DESTROY_VM (powered off).
    Destroyed,
    /// The emulator was dropped.
    Shutdown,
}

/// What went wrong with one request, from the guest's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// The slot was not FREE when the vCPU needed it: the hypervisor injects `#GP(0)`.
    GeneralProtection,
    /// The vCPU was woken (a latched stray event) but the slot was not COMPLETE: no post-work;
    /// the access returns the register unchanged.
    StrayWakeup,
    /// A `wait_irq` saw no interrupt before its timeout (not a hypervisor fault: the guest's
    /// own check that an interrupt was delivered).
    IrqTimeout,
}

/// A fault recorded by a vCPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// The vCPU.
    pub vcpu: u16,
    /// Sequence number of the request on this vCPU (0-based).
    pub request: u64,
    /// Kind.
    pub kind: FaultKind,
    /// The slot state seen (`processed`).
    pub state: u32,
    /// The access.
    pub access: String,
}

/// A read whose value differed from `expect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The vCPU.
    pub vcpu: u16,
    /// Sequence number of the request on this vCPU.
    pub request: u64,
    /// The access.
    pub access: String,
    /// Expected value.
    pub expected: u64,
    /// Value read (masked to the size).
    pub actual: u64,
}

/// The outcome of one vCPU.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VcpuOutcome {
    /// Requests placed in the slot (PENDING).
    pub issued: u64,
    /// Requests whose completion ran post-work (seen COMPLETE, then freed).
    pub completed: u64,
    /// Why it stopped early, if it did.
    pub stopped: Option<StopReason>,
    /// Final RAX.
    pub rax: u64,
}

/// The result of a workload run.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RunResult {
    /// Requests placed in a slot (PENDING), all vCPUs.
    pub issued: u64,
    /// Requests completed with post-work, all vCPUs.
    pub completed: u64,
    /// Reads that differed from their `expect`.
    pub mismatches: Vec<Mismatch>,
    /// Faults (#GP, stray wake-ups).
    pub faults: Vec<Fault>,
    /// Round-trip latency of every completed request, PENDING to post-work done, in ns
    /// (in completion order per vCPU, vCPUs concatenated).
    pub latencies_ns: Vec<u64>,
    /// Per-vCPU outcome, index = vCPU.
    pub vcpus: Vec<VcpuOutcome>,
}

impl RunResult {
    /// Every request completed, no mismatch, no fault, no vCPU stopped early.
    pub fn is_clean(&self) -> bool {
        self.issued == self.completed
            && self.mismatches.is_empty()
            && self.faults.is_empty()
            && self.vcpus.iter().all(|v| v.stopped.is_none())
    }
}

/// Runs workloads on one VM's vCPUs.
#[derive(Debug, Clone)]
pub struct Guest {
    emulator: Emulator,
    vm: Arc<HvVm>,
    recorder: Option<GuestRecorder>,
}

impl std::fmt::Debug for HvVm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HvVm({})", self.vmid)
    }
}

/// A workload running in the background ([`Guest::spawn`]).
#[derive(Debug)]
pub struct GuestRun {
    threads: Vec<JoinHandle<VcpuResult>>,
}

#[derive(Debug, Default)]
struct VcpuResult {
    outcome: VcpuOutcome,
    mismatches: Vec<Mismatch>,
    faults: Vec<Fault>,
    latencies: Vec<u64>,
}

impl GuestRun {
    /// Waits for every vCPU and gathers the result.
    pub fn join(self) -> RunResult {
        let mut r = RunResult::default();
        for t in self.threads {
            let v = t.join().unwrap_or_default();
            r.issued += v.outcome.issued;
            r.completed += v.outcome.completed;
            r.mismatches.extend(v.mismatches);
            r.faults.extend(v.faults);
            r.latencies_ns.extend(v.latencies);
            r.vcpus.push(v.outcome);
        }
        r
    }

    /// Whether every vCPU thread has finished.
    pub fn is_finished(&self) -> bool {
        self.threads.iter().all(|t| t.is_finished())
    }
}

impl Guest {
    pub(crate) fn new(emulator: Emulator, vm: Arc<HvVm>) -> Guest {
        Guest {
            emulator,
            vm,
            recorder: None,
        }
    }

    /// Records every request the vCPUs issue (pending, complete and free stamps) into a trace
    /// ([`TraceRecorder::guest`](crate::trace::TraceRecorder::guest)).
    pub fn with_recorder(mut self, recorder: GuestRecorder) -> Guest {
        self.recorder = Some(recorder);
        self
    }

    /// The VM's id.
    pub fn vmid(&self) -> u16 {
        self.vm.vmid
    }

    /// The emulator.
    pub fn emulator(&self) -> &Emulator {
        &self.emulator
    }

    /// Runs `workload` to the end (or until the VM stops) and returns the result.
    pub fn run(&self, workload: &Workload) -> Result<RunResult, Errno> {
        Ok(self.spawn(workload)?.join())
    }

    /// Starts `workload` on one thread per vCPU list. The VM must be RUNNING (`EPERM`), have at
    /// least as many vCPUs as lists (`EINVAL`), and no other workload on those vCPUs (`EBUSY`).
    pub fn spawn(&self, workload: &Workload) -> Result<GuestRun, Errno> {
        let vm = &self.vm;
        if workload.vcpus.len() > vm.vcpus.len() {
            return Err(Errno::EINVAL);
        }
        if vm.state() != VmState::Running {
            return Err(Errno::EPERM);
        }
        let n = workload.vcpus.len();
        for i in 0..n {
            if vm.vcpus[i].busy.swap(true, Ordering::AcqRel) {
                for v in &vm.vcpus[..i] {
                    v.busy.store(false, Ordering::Release);
                }
                return Err(Errno::EBUSY);
            }
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        // Leave a core for the device model: spin only while the spinners fit.
        let spin_limit = if n < cores { 20_000 } else { 64 };
        let mut threads = Vec::with_capacity(n);
        let barrier = Some(Arc::new(PhaseBarrier::new(n)));
        for (i, ops) in workload.vcpus.iter().enumerate() {
            let hv = self.emulator.hv.clone();
            let hsm = self.emulator.hsm.clone();
            let vm = vm.clone();
            let ops = ops.clone();
            let rec = self.recorder.as_ref().map(|r| r.vcpu(i as u16));
            let barrier = barrier.clone();
            let t = std::thread::Builder::new()
                .name(format!("vcpu{i}"))
                .spawn(move || {
                    let mut cpu = Vcpu::new(hv, hsm, vm.clone(), i, spin_limit);
                    cpu.path.rec = rec;
                    cpu.barrier = barrier.clone();
                    cpu.run(&ops);
                    if let Some(b) = barrier {
                        b.depart();
                    }
                    drop(cpu.path.rec.take());
                    *lock(&vm.vcpus[i].waiter) = None;
                    vm.vcpus[i].busy.store(false, Ordering::Release);
                    cpu.result
                })
                .map_err(Errno::from)?;
            threads.push(t);
        }
        Ok(GuestRun { threads })
    }
}

/// Places one request in slot `vcpu` and raises the upcall, without waiting.
pub(crate) fn insert_request(
    hv: &Hv,
    hsm: &HsmGlobal,
    vm: &HvVm,
    vcpu: usize,
    ty: u32,
    reqs: &[u64; 8],
) -> Result<(), Errno> {
    let page = vm.ioreq_page().ok_or(Errno::EFAULT)?;
    let slot = Slot::new(&page, vcpu);
    if slot.processed().load(Ordering::Acquire) != abi::STATE_FREE {
        return Err(Errno::EBUSY);
    }
    fill(&page, vcpu, vm.polling, ty, reqs);
    upcall(hv, hsm);
    Ok(())
}

/// `acrn_insert_request`'s fill and publish: `slot_protocol::hv_place` (its release store of
/// PENDING stands for the HV's `cpu_write_memory_barrier()` and plain store).
fn fill(page: &crate::memory::Pinned, vcpu: usize, polling: bool, ty: u32, reqs: &[u64; 8]) {
    slot_protocol::hv_place(&PageSlots(page), vcpu, ty, reqs, polling);
}

/// How long a polling vCPU spins on its slot before it yields (then parks), whatever its spin
/// count: long enough for any client on another CPU (a round trip here is 1 µs on the workload
/// engine, ~25 µs through KVM), short enough not to hold a CPU a client on the same CPU needs.
const SPIN_BUDGET: Duration = Duration::from_micros(50);

/// Idles for `d`: spins below 50 µs (sleeping is too coarse there), sleeps above.
fn pause_for(d: Duration) {
    let t = Instant::now();
    if d > Duration::from_micros(50) {
        std::thread::sleep(d - Duration::from_micros(20));
    }
    while t.elapsed() < d {
        std::hint::spin_loop();
    }
}

enum Wait {
    Done,
    Stop(StopReason),
}

struct Vcpu {
    /// The engine-independent access path through this vCPU's slot.
    path: SlotIo,
    id: usize,
    rax: u64,
    mmio_reg: u64,
    seq: u64,
    result: VcpuResult,
    barrier: Option<Arc<PhaseBarrier>>,
}

/// What became of one access emulated through the slot ([`SlotIo::emulate`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IoOutcome {
    /// The VM was not running (or is being reset/destroyed): nothing was placed.
    NotRunning(StopReason),
    /// The access was not emulated: #GP (slot not FREE, no ioreq page; `issued` false) or a
    /// stray wake-up (`issued` true, no post-work).
    Fault {
        /// Kind.
        kind: FaultKind,
        /// The slot state seen.
        state: u32,
        /// Whether the request had been placed (PENDING).
        issued: bool,
    },
    /// Placed, then the vCPU stopped instead of completing it (pause: freed without post-work).
    Stopped(StopReason),
    /// The hypervisor emulated it itself (vPCI, vPIC, ...): no request was made; `value` is the
    /// value read (masked to the size) or written.
    HvHandled {
        /// The value.
        value: u64,
    },
    /// Completed and freed: `value` is the value read (masked to the size) or written.
    Done {
        /// The value.
        value: u64,
        /// PENDING to FREE, in ns.
        latency_ns: u64,
    },
}

/// One vCPU's way through its slot, shared by both execution engines (the workload engine's
/// `Vcpu` and the KVM engine's vCPU threads): fill the slot, PENDING, upcall, wait for COMPLETE
/// (polling or the notify event), post-work, FREE, exactly as described at the top of this file.
pub(crate) struct SlotIo {
    pub(crate) hv: Arc<Hv>,
    /// HSM's global state, for the upcall.
    pub(crate) hsm: Arc<HsmGlobal>,
    pub(crate) vm: Arc<HvVm>,
    pub(crate) id: usize,
    spin_limit: u32,
    pub(crate) generation: u64,
    pub(crate) rec: Option<VcpuRecorder>,
}

/// [`Op::Barrier`]: every vCPU thread of a run waits for the others; a thread that finished
/// (or stopped) counts as arrived at every later barrier, so none waits forever.
struct PhaseBarrier {
    n: usize,
    /// (arrived, generation, departed)
    state: std::sync::Mutex<(usize, u64, usize)>,
    cv: std::sync::Condvar,
}

impl PhaseBarrier {
    fn new(n: usize) -> PhaseBarrier {
        PhaseBarrier {
            n,
            state: std::sync::Mutex::new((0, 0, 0)),
            cv: std::sync::Condvar::new(),
        }
    }

    fn wait(&self, stop: impl Fn() -> bool) {
        let mut g = lock(&self.state);
        g.0 += 1;
        if g.0 + g.2 >= self.n {
            g.0 = 0;
            g.1 += 1;
            self.cv.notify_all();
            return;
        }
        let generation = g.1;
        while g.1 == generation {
            if stop() {
                g.0 -= 1;
                return;
            }
            g = match self.cv.wait_timeout(g, Duration::from_millis(5)) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }

    fn depart(&self) {
        let mut g = lock(&self.state);
        g.2 += 1;
        if g.0 > 0 && g.0 + g.2 >= self.n {
            g.0 = 0;
            g.1 += 1;
            self.cv.notify_all();
        }
    }
}

impl Vcpu {
    fn new(hv: Arc<Hv>, hsm: Arc<HsmGlobal>, vm: Arc<HvVm>, id: usize, spin_limit: u32) -> Vcpu {
        let regs = lock(&vm.vcpus[id].regs).clone();
        let mut rax = [0u8; 8];
        rax.copy_from_slice(&regs[0..8]);
        Vcpu {
            path: SlotIo::new(hv, hsm, vm, id, spin_limit),
            id,
            rax: u64::from_le_bytes(rax),
            mmio_reg: 0,
            seq: 0,
            result: VcpuResult::default(),
            barrier: None,
        }
    }

    fn run(&mut self, ops: &[Op]) {
        let _ = self.exec(ops);
        self.result.outcome.rax = self.rax;
    }

    fn exec(&mut self, ops: &[Op]) -> Result<(), StopReason> {
        for op in ops {
            match op {
                Op::Repeat { count, ops } => {
                    for _ in 0..*count {
                        self.exec(ops)?;
                    }
                }
                Op::Delay { ns } => pause_for(Duration::from_nanos(*ns)),
                Op::Barrier => {
                    if let Some(b) = self.barrier.clone() {
                        b.wait(|| self.path.stop_reason().is_some())
                    }
                }
                Op::Pio { port, size, access } => {
                    self.io(abi::TYPE_PORTIO, u64::from(*port), *size, *access, op)?;
                }
                Op::Ram {
                    address,
                    size,
                    access,
                } => {
                    if !self.ram(*address, *size, *access, op) {
                        // No RAM there: an EPT violation, emulated as MMIO.
                        self.io(abi::TYPE_MMIO, *address, *size, *access, op)?;
                    }
                }
                Op::WaitIrq { irq, timeout_ns } => {
                    let vm = self.path.vm.clone();
                    let r = vm
                        .irq
                        .wait(self.id, *irq, Duration::from_nanos(*timeout_ns), || {
                            self.path.stop_reason().is_some() || vm.state() == VmState::Paused
                        });
                    match r {
                        Ok(()) => {}
                        Err(true) => self.fault(self.seq, FaultKind::IrqTimeout, 0, op),
                        Err(false) => {
                            let reason = self.path.stop_reason().unwrap_or(StopReason::Paused);
                            return self.stop(reason);
                        }
                    }
                }
                Op::Mmio {
                    address,
                    size,
                    access,
                } => {
                    self.io(abi::TYPE_MMIO, *address, *size, *access, op)?;
                }
                Op::Pci {
                    bus,
                    dev,
                    func,
                    reg,
                    size,
                    access,
                } => {
                    // The guest's PCI config lock (see `HvVm::guest_pci_lock`).
                    let vm = self.path.vm.clone();
                    let _pci = lock(&vm.guest_pci_lock);
                    let addr = 0x8000_0000u64
                        | (u64::from(*bus) << 16)
                        | (u64::from(*dev) << 11)
                        | (u64::from(*func) << 8)
                        | (u64::from(*reg) & 0xfc)
                        | ((u64::from(*reg) & 0xf00) << 16);
                    self.io(abi::TYPE_PORTIO, 0xcf8, 4, Access::Write(addr), op)?;
                    self.io(
                        abi::TYPE_PORTIO,
                        0xcfc + (u64::from(*reg) & 3),
                        *size,
                        *access,
                        op,
                    )?;
                }
            }
        }
        Ok(())
    }

    fn stop(&mut self, r: StopReason) -> Result<(), StopReason> {
        self.result.outcome.stopped = Some(r);
        Err(r)
    }

    fn io(
        &mut self,
        ty: u32,
        addr: u64,
        size: u8,
        access: Access,
        op: &Op,
    ) -> Result<(), StopReason> {
        let (dir, value) = match access {
            Access::Write(v) => (abi::DIR_WRITE, v),
            Access::Read { .. } => (abi::DIR_READ, 0),
        };
        let outcome = self.path.emulate(ty, addr, size, dir, value);
        if let IoOutcome::NotRunning(r) = outcome {
            return self.stop(r);
        }
        if let IoOutcome::HvHandled { value } = outcome {
            if dir == abi::DIR_READ {
                self.merge_read(ty, size, value, access, op, self.seq);
            }
            return Ok(());
        }
        let seq = self.seq;
        self.seq += 1;
        match outcome {
            IoOutcome::NotRunning(r) => self.stop(r),
            // Answered above.
            IoOutcome::HvHandled { .. } => Ok(()),
            IoOutcome::Fault {
                kind,
                state,
                issued,
            } => {
                if issued {
                    self.result.outcome.issued += 1;
                }
                self.fault(seq, kind, state, op);
                Ok(())
            }
            IoOutcome::Stopped(r) => {
                self.result.outcome.issued += 1;
                self.stop(r)
            }
            IoOutcome::Done { value, latency_ns } => {
                self.result.outcome.issued += 1;
                if dir == abi::DIR_READ {
                    self.merge_read(ty, size, value, access, op, seq);
                }
                self.result.outcome.completed += 1;
                self.result.latencies.push(latency_ns);
                Ok(())
            }
        }
    }

    /// A read's post-work: the value into the MMIO destination or RAX (by size), checked against
    /// the op's `expect`.
    fn merge_read(&mut self, ty: u32, size: u8, value: u64, access: Access, op: &Op, seq: u64) {
        if ty == abi::TYPE_MMIO {
            self.mmio_reg = value;
        } else {
            // PORTIO, or PCICFG after the cf8/cfc rewrite: merge into RAX by size.
            let mask = size_mask(size);
            self.rax = (self.rax & !mask) | value;
        }
        if let Access::Read { expect: Some(e) } = access {
            if e != value {
                self.result.mismatches.push(Mismatch {
                    vcpu: self.id as u16,
                    request: seq,
                    access: op.to_string(),
                    expected: e,
                    actual: value,
                });
            }
        }
    }

    /// A RAM access without an exit: the bytes of the hypervisor's RAM regions (library memory
    /// pinned by SET_MEMSEG) at `address`, possibly across adjacent regions. `false` (nothing
    /// done) when some byte is not RAM.
    fn ram(&mut self, address: u64, size: u8, access: Access, op: &Op) -> bool {
        let n = usize::from(size);
        let mut pieces = Vec::with_capacity(1);
        {
            let regions = lock(&self.path.vm.regions);
            let mut a = address;
            let end = address + u64::from(size);
            while a < end {
                // RAM regions carry the write-back memory type (0x40); MMIO ones are UC.
                let Some(&(g, len, hpa, _)) = regions
                    .iter()
                    .find(|&&(g, len, _, attr)| attr & 0x40 != 0 && a >= g && a < g + len)
                else {
                    return false;
                };
                let k = end.min(g + len) - a;
                pieces.push((hpa + (a - g), k as usize));
                a += k;
            }
        }
        let mut bytes = [0u8; 8];
        if let Access::Write(v) = access {
            bytes = v.to_le_bytes();
        }
        let mut done = 0;
        for (host, k) in pieces {
            let r = match access {
                Access::Write(_) => crate::memory::copy_to_user(host, &bytes[done..done + k]),
                Access::Read { .. } => {
                    crate::memory::copy_from_user(host, &mut bytes[done..done + k])
                }
            };
            if r.is_err() {
                return false;
            }
            done += k;
        }
        if let Access::Read { expect } = access {
            let value = u64::from_le_bytes(bytes) & size_mask(size);
            debug_assert!(n <= 8);
            self.mmio_reg = value;
            if let Some(e) = expect {
                if e != value {
                    self.result.mismatches.push(Mismatch {
                        vcpu: self.id as u16,
                        request: self.seq,
                        access: op.to_string(),
                        expected: e,
                        actual: value,
                    });
                }
            }
        }
        true
    }

    fn fault(&mut self, seq: u64, kind: FaultKind, state: u32, op: &Op) {
        self.result.faults.push(Fault {
            vcpu: self.id as u16,
            request: seq,
            kind,
            state,
            access: op.to_string(),
        });
    }
}

impl SlotIo {
    /// The path of vCPU `id` of `vm`; the calling thread becomes the vCPU's waiter (the
    /// completer's doorbell unparks it).
    pub(crate) fn new(
        hv: Arc<Hv>,
        hsm: Arc<HsmGlobal>,
        vm: Arc<HvVm>,
        id: usize,
        spin_limit: u32,
    ) -> SlotIo {
        *lock(&vm.vcpus[id].waiter) = Some(std::thread::current());
        let generation = vm.generation.load(Ordering::Acquire);
        SlotIo {
            hv,
            hsm,
            vm,
            id,
            spin_limit,
            generation,
            rec: None,
        }
    }

    /// Why this vCPU must stop now: the emulator was dropped, or the VM was reset or destroyed
    /// since the path was made.
    pub(crate) fn stop_reason(&self) -> Option<StopReason> {
        if self.hv.shutdown.load(Ordering::Acquire) {
            return Some(StopReason::Shutdown);
        }
        if self.vm.generation.load(Ordering::Acquire) != self.generation {
            // Teardown stores `shutdown` before it bumps the generation: having seen the new
            // generation, this load sees the flag if that is why it changed.
            if self.hv.shutdown.load(Ordering::Acquire) {
                return Some(StopReason::Shutdown);
            }
            return Some(match self.vm.state() {
                VmState::PoweredOff => StopReason::Destroyed,
                _ => StopReason::Reset,
            });
        }
        None
    }

    /// Emulates one access of `size` bytes at `addr` (`ty`: PORTIO or MMIO; `dir`: READ or
    /// WRITE with `value`) through the slot, as the hypervisor does on a PIO/MMIO exit. The
    /// caller does the engine's own part of the post-work with the returned value (the
    /// workload engine merges it into its registers, the KVM engine into the exit's data).
    pub(crate) fn emulate(
        &mut self,
        ty: u32,
        addr: u64,
        size: u8,
        dir: u32,
        value: u64,
    ) -> IoOutcome {
        // From the state check to the upcall the vCPU is "in guest mode": PAUSE_VM waits for
        // it to leave (see `Hv::pause_vm`).
        self.vm.vcpus[self.id]
            .entering
            .store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        let stop = self.stop_reason().or(match self.vm.state() {
            VmState::Running => None,
            VmState::Paused => Some(StopReason::Paused),
            VmState::PoweredOff => Some(StopReason::Destroyed),
            VmState::Created => Some(StopReason::NotRunning),
        });
        if let Some(r) = stop {
            self.leave_guest_mode();
            return IoOutcome::NotRunning(r);
        }
        // The hypervisor's own devices (vPCI, vPIC, vIOAPIC, ...) never make a request.
        {
            let mask = size_mask(size);
            let written = if dir == abi::DIR_WRITE {
                value & mask
            } else {
                0
            };
            if let Some(v) = self
                .hv
                .hv_handles(&self.vm, self.id, ty, addr, size, dir, written)
            {
                self.leave_guest_mode();
                return IoOutcome::HvHandled {
                    value: if dir == abi::DIR_READ {
                        v & mask
                    } else {
                        written
                    },
                };
            }
        }
        let Some(page) = self.vm.ioreq_page() else {
            self.leave_guest_mode();
            return IoOutcome::Fault {
                kind: FaultKind::GeneralProtection,
                state: u32::MAX,
                issued: false,
            };
        };
        let slot = Slot::new(&page, self.id);
        let st = slot.processed().load(Ordering::Acquire);
        if st != abi::STATE_FREE {
            self.leave_guest_mode();
            return IoOutcome::Fault {
                kind: FaultKind::GeneralProtection,
                state: st,
                issued: false,
            };
        }
        let mask = size_mask(size);
        let value = if dir == abi::DIR_WRITE {
            value & mask
        } else {
            0
        };
        // The 64-byte reqs: direction@0, reserved@4, address@8, size@16, value@24.
        let reqs = [u64::from(dir), addr, u64::from(size), value, 0, 0, 0, 0];
        // Stamped before the PENDING store: another vCPU's upcall may dispatch the slot at once.
        let pending_ns = if self.rec.is_some() { stamp() } else { 0 };
        fill(&page, self.id, self.vm.polling, ty, &reqs);
        let t0 = Instant::now();
        upcall(&self.hv, &self.hsm);
        self.leave_guest_mode();
        let waited = if self.vm.polling {
            self.wait_polling(&slot)
        } else {
            self.wait_event()
        };
        if let Wait::Stop(r) = waited {
            self.record(
                ty,
                addr,
                size,
                dir,
                value,
                [pending_ns, 0, 0],
                &slot,
                Some(r),
            );
            return IoOutcome::Stopped(r);
        }
        // A plain TSC read (no LFENCE): it may read the counter a few ticks before the load that
        // saw COMPLETE, but the recorder's join raises `complete` to the client's `notify`.
        let complete_ns = if self.rec.is_some() { stamp() } else { 0 };
        // dm_emulate_io_complete
        if self.vm.state() == VmState::Paused {
            // Zombie vCPU: FREE without post-work, and the vCPU no longer runs.
            if slot.processed().load(Ordering::Acquire) == abi::STATE_COMPLETE {
                slot.processed().store(abi::STATE_FREE, Ordering::Relaxed);
            }
            let free_ns = if self.rec.is_some() { stamp() } else { 0 };
            let stamps = [pending_ns, complete_ns, free_ns];
            let r = StopReason::Paused;
            self.record(ty, addr, size, dir, value, stamps, &slot, Some(r));
            return IoOutcome::Stopped(r);
        }
        if !slot_protocol::hv_completed(&PageSlots(&page), self.id) {
            let st = slot.processed().load(Ordering::Relaxed);
            return IoOutcome::Fault {
                kind: FaultKind::StrayWakeup,
                state: st,
                issued: true,
            };
        }
        let mut value = value;
        if dir == abi::DIR_READ {
            value = if ty == abi::TYPE_MMIO {
                slot.value64() & mask
            } else {
                u64::from(slot.value32()) & mask
            };
        }
        slot_protocol::hv_free(&PageSlots(&page), self.id);
        if self.rec.is_some() {
            let stamps = [pending_ns, complete_ns, stamp()];
            self.record(ty, addr, size, dir, value, stamps, &slot, None);
        }
        IoOutcome::Done {
            value,
            latency_ns: u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX),
        }
    }

    fn leave_guest_mode(&self) {
        self.vm.vcpus[self.id]
            .entering
            .store(false, Ordering::Release);
    }
    /// Records a request into the trace (no-op without a recorder). Whether it went to the
    /// userspace client is read from the slot the HSM handled: 0xCF8, and 0xCFC..0xCFF left as
    /// PORTIO (CONFIG_ADDRESS disabled), were completed in the kernel, as were requests of the
    /// in-kernel ioeventfd client (`kernel_handled`). `stop`: the vCPU stopped instead of
    /// completing it.
    #[allow(clippy::too_many_arguments)]
    fn record(
        &mut self,
        ty: u32,
        addr: u64,
        size: u8,
        dir: u32,
        value: u64,
        stamps: [u64; 3],
        slot: &Slot<'_>,
        stop: Option<StopReason>,
    ) {
        let Some(rec) = self.rec.as_mut() else {
            return;
        };
        let pio = ty == abi::TYPE_PORTIO;
        let in_kernel = (pio && addr == 0xcf8)
            || (pio && (0xcfc..=0xcff).contains(&addr) && slot.ty() == abi::TYPE_PORTIO)
            || (stop.is_none() && slot.kernel_handled() != 0);
        let outcome = stop.map(|r| match r {
            StopReason::Paused | StopReason::Reset => acrn_trace::Outcome::Cleared,
            _ => acrn_trace::Outcome::Incomplete,
        });
        rec.record(
            ty == abi::TYPE_MMIO,
            addr,
            size,
            dir == abi::DIR_READ,
            value,
            stamps,
            !in_kernel,
            outcome,
        );
    }

    /// Polling completion: spin, then yield, then park (the completer rings the doorbell).
    fn wait_polling(&self, slot: &Slot<'_>) -> Wait {
        let v = &self.vm.vcpus[self.id];
        let mut spins: u32 = 0;
        // The spin is bounded in time too: a client that shares this CPU (the scheduler put
        // both here) runs only once this thread yields, so a long spin is all latency.
        let mut spin_start: Option<Instant> = None;
        loop {
            if slot_protocol::hv_completed(&PageSlots(slot.page()), self.id) {
                return Wait::Done;
            }
            if let Some(r) = self.stop_reason() {
                return Wait::Stop(r);
            }
            spins = spins.saturating_add(1);
            if spins < self.spin_limit {
                if spins % 1024 == 0 {
                    if spin_start.get_or_insert_with(Instant::now).elapsed() > SPIN_BUDGET {
                        spins = self.spin_limit;
                    }
                    // Lets a client the scheduler put on this CPU run now.
                    std::thread::yield_now();
                } else {
                    std::hint::spin_loop();
                }
            } else if spins < self.spin_limit + 32 {
                std::thread::yield_now();
            } else {
                v.parked.store(true, Ordering::SeqCst);
                fence(Ordering::SeqCst);
                if slot.processed().load(Ordering::Acquire) != abi::STATE_COMPLETE
                    && self.stop_reason().is_none()
                {
                    std::thread::park_timeout(Duration::from_millis(2));
                }
                v.parked.store(false, Ordering::Relaxed);
            }
        }
    }

    /// Notification completion: the latched event.
    fn wait_event(&self) -> Wait {
        let v = &self.vm.vcpus[self.id];
        if v.wait_event(|| self.stop_reason().is_some()) {
            Wait::Done
        } else {
            Wait::Stop(self.stop_reason().unwrap_or(StopReason::Shutdown))
        }
    }
}
