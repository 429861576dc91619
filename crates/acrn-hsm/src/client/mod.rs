//! The ioreq client: the userspace half of the I/O-request protocol (acrn-semantics.md §4.4,
//! §4.7), over a [`Vm`] of the real device or of the emulator.
//!
//! [`IoreqClient::new`] creates the VM's default ioreq client (CREATE_IOREQ_CLIENT);
//! [`IoreqClient::run`] then serves requests until stopped:
//!
//! * **The scan** ([`protocol::claim`]): for each of the `vcpu_num` slots, an acquire load of
//!   `processed` first; slots that are not PROCESSING, or whose `kernel_handled` is set, are left
//!   alone; the payload is read through atomics after that load, never through references. One
//!   pass handles every PROCESSING slot it finds (a batch).
//! * **Dispatch** by address ([`Dispatcher`]), then the response: only `reqs.*.value`, only for
//!   reads ([`protocol::respond`]), then **exactly one NOTIFY** per claimed request. The
//!   [`protocol::Claim`] token is consumed by the NOTIFY, so a request cannot be notified twice and
//!   a slot that was not claimed cannot be notified at all. After NOTIFY the slot is not touched.
//! * **Wake modes** ([`WakeMode`]): `Blocking` sleeps in ATTACH_IOREQ_CLIENT, re-scans after every
//!   return (including spurious ones) and stops on `ENODEV`; `Poll` spins on the page with
//!   `spin_loop`, then yields, then sleeps with a growing back-off, so an idle client does not
//!   burn a core.
//! * **Stop** ([`ClientHandle::stop`]): a flag, plus (blocking mode) DESTROY_IOREQ_CLIENT, which
//!   makes a blocked ATTACH return `ENODEV`. Requests still PROCESSING at that moment stay so, as
//!   in the kernel (they are completed by CLEAR_VM_IOREQ or the VM's destruction).
//! * **Deferred devices** ([`Dispatcher::add_deferred`]): requests for them are not answered on the
//!   client thread but handed out in batches by [`IoreqClient::next_batch`], which completes the
//!   previous batch (the values of its reads, then exactly one NOTIFY per request) and waits for
//!   the next, serving native devices meanwhile. This is how the bindings serve JavaScript
//!   devices: one client, one scan, the same recorder and the same reset/suspend handling.
//! * **Devices added and removed while serving** ([`ClientHandle::bus`], a
//!   [`DispatcherHandle`]): each change is checked and answered at once on the calling thread,
//!   queued, and applied by the serving thread at the start of its next scan (one atomic load
//!   per scan when nothing is queued; no lock on the request path). A request already
//!   dispatched (or handed out in a batch) completes as it was, exactly once; a removed range
//!   is unclaimed from the next scan on.
//! * **Reset / suspend / power-off as the device model does them**: a device asks through
//!   [`VmControl`]; the client withholds the NOTIFY of the request being handled and runs
//!   [`reset_vm_like_dm`] (PAUSE, CLEAR_VM_IOREQ, reset devices, RESET, vCPU registers, START).
//!
//! ```no_run
//! use std::sync::Arc;
//! use acrn_hsm::client::{ClientConfig, Dispatcher, IoreqClient};
//! use acrn_hsm::devices::Uart16550;
//! use acrn_hsm::{Hsm, VmConfig};
//!
//! let hsm = Hsm::open("/dev/acrn_hsm")?; // or the emulator's `Emulator::open_hsm()`
//! let vm = Arc::new(hsm.create_vm(&VmConfig { vcpu_num: 1, ..Default::default() })?);
//! let mut bus = Dispatcher::new();
//! bus.add_pio(0x3f8, 8, Box::new(Uart16550::new())).expect("free range");
//! let mut client = IoreqClient::new(vm.clone(), bus, ClientConfig::default())?;
//! let handle = client.handle();
//! let thread = std::thread::spawn(move || client.run());
//! vm.start()?;
//! // ... the guest runs; its port and MMIO accesses are served on `thread` ...
//! handle.stop();
//! thread.join().expect("client thread")?;
//! # Ok::<(), acrn_hsm::Error>(())
//! ```
//!
//! A complete, runnable version against the emulator's guest is in the `acrn-hsm-emulator`
//! crate's documentation.
//!
//! Tests: `cargo test -p acrn-hsm --test client_e2e --test client_dispatch --test client_loom
//! --test client_stress` (the loom model and the stress test are documented in their files).

pub mod dispatch;
pub mod protocol;
mod record;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

pub use dispatch::{
    AddressSpace, BarHandler, BarWindow, BusError, DeferredAt, DeviceCounters, DeviceId,
    DeviceRange, Dispatcher, DispatcherHandle, FaultHook, FaultReason, FaultReport, IoDevice,
    Outcome, PciDevice, RangeSpace, Target, ones,
};
pub use protocol::{Bdf, Claim, Kind, Request, SlotMemory};

use crate::errno::Errno;
use crate::memory::UserPages;
use crate::vm::{Result, VcpuRegs, Vm};

/// The live ioreq page as [`SlotMemory`]: every access is an atomic on the page
/// ([`UserPages::atomic_u32`] / [`UserPages::atomic_u64`], bounds- and alignment-checked; an
/// impossible out-of-range access reads all ones and writes nothing).
#[derive(Debug, Clone)]
pub struct PageSlots {
    page: Arc<UserPages>,
}

impl PageSlots {
    /// The slots of `page` (the VM's ioreq page).
    pub fn new(page: Arc<UserPages>) -> PageSlots {
        PageSlots { page }
    }
}

const SLOT_SIZE: usize = acrn_uapi::ioreq::SLOT_SIZE;

impl SlotMemory for PageSlots {
    #[inline]
    fn load_u32(&self, slot: usize, offset: usize, order: Ordering) -> u32 {
        match self.page.atomic_u32(slot * SLOT_SIZE + offset) {
            Ok(a) => a.load(order),
            Err(_) => u32::MAX,
        }
    }
    #[inline]
    fn load_u64(&self, slot: usize, offset: usize, order: Ordering) -> u64 {
        match self.page.atomic_u64(slot * SLOT_SIZE + offset) {
            Ok(a) => a.load(order),
            Err(_) => u64::MAX,
        }
    }
    #[inline]
    fn store_u32(&self, slot: usize, offset: usize, value: u32, order: Ordering) {
        if let Ok(a) = self.page.atomic_u32(slot * SLOT_SIZE + offset) {
            a.store(value, order);
        }
    }
    #[inline]
    fn store_u64(&self, slot: usize, offset: usize, value: u64, order: Ordering) {
        if let Ok(a) = self.page.atomic_u64(slot * SLOT_SIZE + offset) {
            a.store(value, order);
        }
    }
}

/// The busy-poll back-off: `spins` idle passes with `spin_loop` and then on for `spin_time`,
/// then `yields` with `yield_now`, then sleeps starting at `sleep` and doubling up to
/// `max_sleep`. Any request found resets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollConfig {
    /// Idle passes spent spinning (counted: no clock read in short gaps).
    pub spins: u32,
    /// After `spins` passes, spin on until this long has passed: a gap between two requests
    /// is set by the guest, not by the pass count (a KVM exit takes ~10 µs here, 4096 passes
    /// far less), and sleeping in such gaps cost 20x the latency of spinning through them.
    pub spin_time: Duration,
    /// Idle passes spent yielding after that.
    pub yields: u32,
    /// First sleep.
    pub sleep: Duration,
    /// Longest sleep (bounds the latency of the first request after a long idle period).
    pub max_sleep: Duration,
}

impl Default for PollConfig {
    fn default() -> Self {
        PollConfig {
            spins: 4096,
            spin_time: Duration::from_micros(200),
            yields: 256,
            sleep: Duration::from_micros(20),
            max_sleep: Duration::from_millis(1),
        }
    }
}

/// The state of a [`PollConfig`] back-off between two requests.
#[derive(Debug)]
struct Backoff {
    config: PollConfig,
    idle: u64,
    sleep: Duration,
    /// The last idle pass of the spin phase (the counted spins, extended by the timed spin).
    spin_end: u64,
    /// When the timed spin started, and whether it is over.
    timed_since: Option<Instant>,
    timed_done: bool,
}

impl Backoff {
    fn new(config: PollConfig) -> Backoff {
        Backoff {
            config,
            idle: 0,
            sleep: config.sleep,
            spin_end: u64::from(config.spins),
            timed_since: None,
            timed_done: config.spin_time.is_zero(),
        }
    }
    /// A request was found: spin again.
    fn reset(&mut self) {
        *self = Backoff::new(self.config);
    }
    /// An idle pass: spin, yield, or sleep (doubling up to `max_sleep`).
    fn wait(&mut self) {
        let p = self.config;
        self.idle += 1;
        if self.idle <= self.spin_end {
            std::hint::spin_loop();
            return;
        }
        if !self.timed_done {
            // The clock is read once when the counted spin ends, then every 64 passes.
            // Every 64 passes it also yields: a vCPU thread the scheduler put on this CPU runs
            // then, instead of waiting for this spin to end (the two sides of a KVM exit).
            let since = *self.timed_since.get_or_insert_with(Instant::now);
            if self.idle % 64 != 0 {
                std::hint::spin_loop();
                return;
            }
            if since.elapsed() < p.spin_time {
                std::thread::yield_now();
                return;
            }
            self.timed_done = true;
            self.spin_end = self.idle;
        }
        if self.idle <= self.spin_end + u64::from(p.yields) {
            std::thread::yield_now();
        } else {
            std::thread::sleep(self.sleep);
            self.sleep = (self.sleep * 2).min(p.max_sleep.max(p.sleep));
        }
    }
}

/// How the client waits for requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WakeMode {
    /// ATTACH_IOREQ_CLIENT (the device model's way).
    #[default]
    Blocking,
    /// Spin on the page (lowest latency), with a back-off when idle.
    Poll(PollConfig),
}

impl WakeMode {
    /// `Poll` with the default back-off.
    pub fn poll() -> WakeMode {
        WakeMode::Poll(PollConfig::default())
    }
}

/// What a device may ask of the VM, from inside a request handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum VmAction {
    /// Reset: [`reset_vm_like_dm`], then keep serving.
    Reset = 1,
    /// Suspend: PAUSE, CLEAR_VM_IOREQ; [`IoreqClient::run`] returns [`RunExit::Suspended`].
    Suspend = 2,
    /// Power off: PAUSE, CLEAR_VM_IOREQ; `run` returns [`RunExit::PoweredOff`].
    PowerOff = 3,
}

/// A handle devices keep to ask for a [`VmAction`]. The client checks it after each request it
/// dispatches; the request being handled is the one whose NOTIFY is withheld.
#[derive(Debug, Clone, Default)]
pub struct VmControl(Arc<AtomicU8>);

impl VmControl {
    /// A new, idle control.
    pub fn new() -> VmControl {
        VmControl::default()
    }
    /// Asks for `action` (the latest request wins).
    pub fn request(&self, action: VmAction) {
        self.0.store(action as u8, Ordering::Release);
    }
    #[inline]
    fn take(&self) -> Option<VmAction> {
        // Checked after every request: a plain load on the fast path, the swap only when set.
        if self.0.load(Ordering::Relaxed) == 0 {
            return None;
        }
        match self.0.swap(0, Ordering::AcqRel) {
            1 => Some(VmAction::Reset),
            2 => Some(VmAction::Suspend),
            3 => Some(VmAction::PowerOff),
            _ => None,
        }
    }
}

/// Configuration of an [`IoreqClient`].
#[derive(Debug, Clone, Default)]
pub struct ClientConfig {
    /// Blocking (default) or busy-poll.
    pub mode: WakeMode,
    /// The vCPU registers set by an in-loop reset (one entry per vCPU to set; none: the registers
    /// RESET_VM leaves).
    pub reset_regs: Vec<VcpuRegs>,
    /// The control devices use to request a reset, suspend or power-off; `None`: a fresh one
    /// (see [`IoreqClient::control`]).
    pub control: Option<VmControl>,
    /// Records every request the client handles into a trace
    /// ([`TraceRecorder::client`](crate::trace::TraceRecorder::client)); `None`: no recording
    /// (one branch per request).
    pub recorder: Option<crate::trace::ClientRecorder>,
    /// Leave the VM's ioreq client in place when this client is dropped without
    /// [`ClientHandle::stop`] (the bindings: a JavaScript client object collected by the GC
    /// must not destroy a client the program drives itself). Default `false`: dropped means
    /// destroyed, as the device model does on exit.
    pub keep_on_drop: bool,
}

/// Why [`IoreqClient::run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunExit {
    /// [`ClientHandle::stop`], or the ioreq client was destroyed (`ENODEV`).
    Stopped,
    /// A device requested [`VmAction::Suspend`]; the VM is paused.
    Suspended,
    /// A device requested [`VmAction::PowerOff`]; the VM is paused.
    PoweredOff,
}

/// Counters of one client, as a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct ClientStats {
    /// PIO reads served by a device.
    pub pio_reads: u64,
    /// PIO writes served by a device.
    pub pio_writes: u64,
    /// MMIO reads served by a device.
    pub mmio_reads: u64,
    /// MMIO writes served by a device.
    pub mmio_writes: u64,
    /// PCI configuration reads served by a device.
    pub pci_reads: u64,
    /// PCI configuration writes served by a device.
    pub pci_writes: u64,
    /// Requests nobody claims (answered all ones / ignored).
    pub unclaimed: u64,
    /// Malformed requests and device panics (answered all ones / ignored).
    pub faults: u64,
    /// NOTIFY_REQUEST_FINISH issued.
    pub notifies: u64,
    /// NOTIFYs that returned an error.
    pub notify_errors: u64,
    /// NOTIFYs withheld (reset, suspend, power-off).
    pub withheld: u64,
    /// Scan passes.
    pub scans: u64,
    /// ATTACH returns (blocking mode).
    pub wakeups: u64,
    /// ATTACH returns after which the scan found nothing.
    pub spurious_wakeups: u64,
    /// Device-model style resets done.
    pub resets: u64,
    /// The most requests one pass handled.
    pub max_batch: u64,
    /// Requests handed to deferred devices ([`IoreqClient::next_batch`]).
    pub deferred: u64,
    /// Batches [`IoreqClient::next_batch`] handed out.
    pub batches: u64,
}

impl ClientStats {
    /// Requests claimed and completed (served + unclaimed + faults).
    pub fn handled(&self) -> u64 {
        self.pio_reads
            + self.pio_writes
            + self.mmio_reads
            + self.mmio_writes
            + self.pci_reads
            + self.pci_writes
            + self.unclaimed
            + self.faults
    }
}

#[derive(Debug, Default)]
struct Counters {
    v: [AtomicU64; 18],
}

// Indexes into `Counters::v`.
const C_PIO_R: usize = 0;
const C_PIO_W: usize = 1;
const C_MMIO_R: usize = 2;
const C_MMIO_W: usize = 3;
const C_PCI_R: usize = 4;
const C_PCI_W: usize = 5;
const C_UNCLAIMED: usize = 6;
const C_FAULTS: usize = 7;
const C_NOTIFIES: usize = 8;
const C_NOTIFY_ERR: usize = 9;
const C_WITHHELD: usize = 10;
const C_SCANS: usize = 11;
const C_WAKEUPS: usize = 12;
const C_SPURIOUS: usize = 13;
const C_RESETS: usize = 14;
const C_MAX_BATCH: usize = 15;
const C_DEFERRED: usize = 16;
const C_BATCHES: usize = 17;

impl Counters {
    #[inline]
    fn inc(&self, i: usize) {
        // Single writer (the client thread); readers only take snapshots. A load and a store,
        // not a read-modify-write: no locked instruction (a full barrier on x86) on the request
        // path or in every idle pass of a polling scan.
        let c = &self.v[i];
        c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
    }
    fn get(&self, i: usize) -> u64 {
        self.v[i].load(Ordering::Relaxed)
    }
    fn snapshot(&self) -> ClientStats {
        ClientStats {
            pio_reads: self.get(C_PIO_R),
            pio_writes: self.get(C_PIO_W),
            mmio_reads: self.get(C_MMIO_R),
            mmio_writes: self.get(C_MMIO_W),
            pci_reads: self.get(C_PCI_R),
            pci_writes: self.get(C_PCI_W),
            unclaimed: self.get(C_UNCLAIMED),
            faults: self.get(C_FAULTS),
            notifies: self.get(C_NOTIFIES),
            notify_errors: self.get(C_NOTIFY_ERR),
            withheld: self.get(C_WITHHELD),
            scans: self.get(C_SCANS),
            wakeups: self.get(C_WAKEUPS),
            spurious_wakeups: self.get(C_SPURIOUS),
            resets: self.get(C_RESETS),
            max_batch: self.get(C_MAX_BATCH),
            deferred: self.get(C_DEFERRED),
            batches: self.get(C_BATCHES),
        }
    }
}

#[derive(Debug)]
// On lines of its own (128 bytes: a cache-line pair): touched on every request by the serving
// thread or a vCPU, it must share no line with another allocation (docs/performance.md, "False
// sharing").
#[repr(align(128))]
struct Shared {
    stop: AtomicBool,
    /// Whether this client's DESTROY_IOREQ_CLIENT was issued (by a blocking-mode stop or the
    /// drop): issued at most once, so a client created later by someone else is never destroyed.
    destroyed: AtomicBool,
    running: AtomicBool,
    /// Set by [`ClientHandle::wake_batch`]: the next scan ends the batch wait.
    wake: AtomicBool,
    /// Set by [`ClientHandle::wake_batch_holding`]: the request being dispatched is held.
    hold: AtomicBool,
    counters: Counters,
    devices: std::sync::RwLock<Vec<Arc<DeviceCounters>>>,
}

/// A handle on a client, usable from other threads: stop it, read its statistics.
#[derive(Clone)]
pub struct ClientHandle {
    shared: Arc<Shared>,
    vm: Arc<Vm>,
    blocking: bool,
    control: VmControl,
    bus: DispatcherHandle,
}

impl fmt::Debug for ClientHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientHandle")
            .field("vm", &self.vm)
            .field("blocking", &self.blocking)
            .finish()
    }
}

impl ClientHandle {
    /// Makes [`IoreqClient::run`] return promptly with [`RunExit::Stopped`]: sets the stop flag
    /// and, in blocking mode, destroys the ioreq client (a blocked ATTACH returns `ENODEV`).
    /// Idempotent. A `run` not started yet returns at once.
    pub fn stop(&self) {
        if self.shared.stop.swap(true, Ordering::AcqRel) {
            return;
        }
        if self.blocking && !self.shared.destroyed.swap(true, Ordering::AcqRel) {
            // ENODEV here means it is already gone: fine.
            let _ = self.vm.destroy_ioreq_client();
        }
    }
    /// [`stop`](Self::stop), and DESTROY_IOREQ_CLIENT in either wake mode (once): the VM's
    /// client is gone when this returns, so a new one can be created at once.
    pub fn stop_and_destroy(&self) {
        self.stop();
        if !self.shared.destroyed.swap(true, Ordering::AcqRel) {
            let _ = self.vm.destroy_ioreq_client();
        }
    }
    /// Makes [`IoreqClient::next_batch`] return after its current scan pass, with an empty
    /// batch if no deferred device has a request ([`Batch::Ready`]`(0)`): a native device that
    /// queued work for the server (deferred virtio chains) calls it from the serving thread.
    /// From another thread it takes effect at the next scan (the next request or poll).
    pub fn wake_batch(&self) {
        self.shared.wake.store(true, Ordering::Release);
    }

    /// [`wake_batch`](Self::wake_batch), called from a device while it handles a request in
    /// [`IoreqClient::next_batch`], and that request is held: its value goes into the slot now,
    /// but its NOTIFY only when the batch this wake ends is handed back (the next `next_batch`),
    /// so the vCPU resumes after the caller has handled the batch. A virtio queue notify whose
    /// chains go to JavaScript handlers uses it: the guest finds them in the used ring when its
    /// notify write returns, as with a native device (ACRN's device model may complete a request
    /// whenever it likes; the vCPU waits for it). Outside `next_batch`, as `wake_batch`.
    pub fn wake_batch_holding(&self) {
        self.shared.hold.store(true, Ordering::Release);
        self.shared.wake.store(true, Ordering::Release);
    }

    /// Whether [`stop`](Self::stop) was called.
    pub fn is_stopped(&self) -> bool {
        self.shared.stop.load(Ordering::Acquire)
    }
    /// Whether `run` is executing.
    pub fn is_running(&self) -> bool {
        self.shared.running.load(Ordering::Acquire)
    }
    /// A snapshot of the client's counters.
    pub fn stats(&self) -> ClientStats {
        self.shared.counters.snapshot()
    }
    /// The live counters of every device (registration order, index = [`DeviceId`]), as of
    /// [`IoreqClient::new`], the last `run` start, or the last change applied from
    /// [`bus`](Self::bus).
    pub fn device_counters(&self) -> Vec<Arc<DeviceCounters>> {
        self.shared
            .devices
            .read()
            .map(|d| d.clone())
            .unwrap_or_default()
    }
    /// The VM control devices use.
    pub fn control(&self) -> VmControl {
        self.control.clone()
    }
    /// Adds and removes devices while the client serves (see [`DispatcherHandle`]).
    pub fn bus(&self) -> &DispatcherHandle {
        &self.bus
    }
}

/// The userspace ioreq client of one VM.
pub struct IoreqClient {
    vm: Arc<Vm>,
    mem: PageSlots,
    vcpu_num: usize,
    dispatcher: Dispatcher,
    config: ClientConfig,
    control: VmControl,
    shared: Arc<Shared>,
    /// Slots whose request was claimed and whose NOTIFY is withheld: never claimed again until
    /// CLEAR_VM_IOREQ completed them.
    withheld: u32,
    /// Requests of deferred devices handed out by `next_batch`, awaiting their responses.
    pending: Vec<Pending>,
    /// The same requests, as they are handed out.
    batch: Vec<DeferredRequest>,
    /// Bit i: slot i is in `pending` or `held` (still PROCESSING: not to be claimed again).
    pending_mask: u32,
    /// Requests of native devices answered but held ([`ClientHandle::wake_batch_holding`]):
    /// completed (NOTIFY) with the batch, when the next `next_batch` hands it back.
    held: Vec<Held>,
    /// Inside `next_batch` (only there may a request be held).
    batching: bool,
    /// What [`complete`](IoreqClient::complete) ended serving with, for the next `next_batch`.
    exit_after_complete: Option<RunExit>,
}

/// A request a native device answered whose NOTIFY waits for the batch to be handed back.
#[derive(Debug)]
struct Held {
    claim: Claim,
    out: dispatch::Outcome,
    /// Processing, handler start, handler end.
    stamps: [u64; 3],
}

/// A request of a deferred device, as [`IoreqClient::next_batch`] hands it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeferredRequest {
    /// The request as claimed.
    pub request: Request,
    /// The deferred device it is for.
    pub device: DeviceId,
    /// The offset in the device's range (the register, for PCI).
    pub offset: u64,
}

/// A claimed request of a deferred device, with its recorder stamps so far.
#[derive(Debug)]
struct Pending {
    claim: Claim,
    target: Target,
    /// Processing, handed out (handler start).
    stamps: [u64; 2],
}

/// What [`IoreqClient::next_batch`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batch {
    /// This many requests of deferred devices ([`IoreqClient::batch`]), to be answered by the
    /// next call.
    Ready(usize),
    /// The client stopped (as [`IoreqClient::run`] would return).
    Exit(RunExit),
}

impl fmt::Debug for IoreqClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IoreqClient")
            .field("vm", &self.vm)
            .field("dispatcher", &self.dispatcher)
            .field("mode", &self.config.mode)
            .finish()
    }
}

impl IoreqClient {
    /// Creates the VM's default ioreq client (CREATE_IOREQ_CLIENT; `EEXIST` if there is one)
    /// and a client serving it with `dispatcher`.
    pub fn new(vm: Arc<Vm>, dispatcher: Dispatcher, config: ClientConfig) -> Result<IoreqClient> {
        vm.create_ioreq_client()?;
        Ok(Self::for_existing(vm, dispatcher, config))
    }

    /// A client for a VM whose default ioreq client already exists (created by the caller).
    pub fn for_existing(vm: Arc<Vm>, dispatcher: Dispatcher, config: ClientConfig) -> IoreqClient {
        let vcpu_num = usize::from(vm.vcpu_num()).min(acrn_uapi::ioreq::SLOT_COUNT);
        let control = config.control.clone().unwrap_or_default();
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            destroyed: AtomicBool::new(false),
            running: AtomicBool::new(false),
            wake: AtomicBool::new(false),
            hold: AtomicBool::new(false),
            counters: Counters::default(),
            devices: std::sync::RwLock::new(dispatcher.counters()),
        });
        IoreqClient {
            mem: PageSlots::new(vm.ioreq_page().clone()),
            vm,
            vcpu_num,
            dispatcher,
            config,
            control,
            shared,
            withheld: 0,
            pending: Vec::with_capacity(acrn_uapi::ioreq::SLOT_COUNT),
            batch: Vec::with_capacity(acrn_uapi::ioreq::SLOT_COUNT),
            pending_mask: 0,
            held: Vec::with_capacity(acrn_uapi::ioreq::SLOT_COUNT),
            batching: false,
            exit_after_complete: None,
        }
    }

    /// A handle to stop the client and read its statistics from another thread.
    pub fn handle(&self) -> ClientHandle {
        ClientHandle {
            shared: self.shared.clone(),
            vm: self.vm.clone(),
            blocking: matches!(self.config.mode, WakeMode::Blocking),
            control: self.control.clone(),
            bus: self.dispatcher.handle(),
        }
    }

    /// The control devices use to request a reset, suspend or power-off.
    pub fn control(&self) -> VmControl {
        self.control.clone()
    }

    /// The VM.
    pub fn vm(&self) -> &Arc<Vm> {
        &self.vm
    }

    /// The dispatcher (to register devices before `run`, or inspect them after), with the
    /// changes queued by [`ClientHandle::bus`] applied.
    pub fn dispatcher_mut(&mut self) -> &mut Dispatcher {
        self.apply_changes();
        &mut self.dispatcher
    }

    /// Applies the device changes queued through [`ClientHandle::bus`] (one atomic load when
    /// there are none) and publishes the new device counters.
    #[inline]
    fn apply_changes(&mut self) {
        if self.dispatcher.apply_changes() {
            if let Ok(mut d) = self.shared.devices.write() {
                *d = self.dispatcher.counters();
            }
        }
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> ClientStats {
        self.shared.counters.snapshot()
    }

    /// Serves requests until [`ClientHandle::stop`], the destruction of the ioreq client
    /// (`ENODEV`), or a suspend / power-off request. Errors: an ATTACH failing otherwise than
    /// with `ENODEV`/`EINTR`, or a failing step of a reset. A stopped client stays stopped (a
    /// later `run` returns at once); after a suspend or power-off `run` may be called again.
    pub fn run(&mut self) -> Result<RunExit> {
        if !self.dispatcher.serve_native_only(true) {
            // Nobody would answer their requests: serve them with `next_batch`.
            return Err(crate::Error {
                op: "IoreqClient::run with deferred devices (use next_batch)",
                errno: Errno::EINVAL,
            });
        }
        if let Ok(mut d) = self.shared.devices.write() {
            *d = self.dispatcher.counters();
        }
        self.shared.running.store(true, Ordering::Release);
        let r = match self.config.mode {
            WakeMode::Blocking => self.run_blocking(),
            WakeMode::Poll(p) => self.run_poll(p),
        };
        self.dispatcher.serve_native_only(false);
        self.shared.running.store(false, Ordering::Release);
        if let Some(rec) = self.config.recorder.as_mut() {
            rec.flush();
        }
        r
    }

    fn stopped(&self) -> bool {
        self.shared.stop.load(Ordering::Acquire)
    }

    fn run_blocking(&mut self) -> Result<RunExit> {
        loop {
            if self.stopped() {
                return Ok(RunExit::Stopped);
            }
            match self.vm.attach_ioreq_client() {
                Ok(()) => {}
                Err(e) if e.errno == Errno::ENODEV => return Ok(RunExit::Stopped),
                Err(e) if e.errno == Errno::EINTR => {}
                Err(e) => return Err(e),
            }
            self.shared.counters.inc(C_WAKEUPS);
            match self.scan()? {
                Pass::Handled(0) => self.shared.counters.inc(C_SPURIOUS),
                Pass::Handled(_) => {}
                Pass::Exit(x) => return Ok(x),
            }
        }
    }

    fn run_poll(&mut self, p: PollConfig) -> Result<RunExit> {
        let mut backoff = Backoff::new(p);
        loop {
            if self.stopped() {
                return Ok(RunExit::Stopped);
            }
            match self.scan()? {
                Pass::Handled(0) => backoff.wait(),
                Pass::Handled(_) => backoff.reset(),
                Pass::Exit(x) => return Ok(x),
            }
        }
    }

    /// One scan pass over the `vcpu_num` slots; returns how many requests it completed. For
    /// callers that drive the client themselves (their own wait): not needed with `run`.
    pub fn scan_once(&mut self) -> Result<usize> {
        match self.scan()? {
            Pass::Handled(n) => Ok(n),
            Pass::Exit(_) => Ok(0),
        }
    }

    fn scan(&mut self) -> Result<Pass> {
        self.apply_changes();
        self.shared.counters.inc(C_SCANS);
        let mut n = 0usize;
        let recording = self.config.recorder.is_some();
        for i in 0..self.vcpu_num {
            if (self.withheld | self.pending_mask) & (1 << i) != 0 {
                continue;
            }
            let Some(claim) = protocol::claim(&self.mem, i) else {
                continue;
            };
            n += 1;
            let exit = if recording {
                self.serve::<true>(claim)?
            } else {
                self.serve::<false>(claim)?
            };
            if let Some(exit) = exit {
                return Ok(exit.map_or(Pass::Handled(n), Pass::Exit));
            }
        }
        let c = &self.shared.counters;
        if n as u64 > c.get(C_MAX_BATCH) {
            c.v[C_MAX_BATCH].store(n as u64, Ordering::Relaxed);
        }
        Ok(Pass::Handled(n))
    }

    /// One claimed request: dispatched and completed, or (deferred device) put in the pending
    /// batch. With `RECORD`, stamps processing, handler start and end, notify. `Some(x)`: a VM
    /// action ended the pass (`x` as `vm_action`).
    #[inline]
    fn serve<const RECORD: bool>(&mut self, claim: Claim) -> Result<Option<Option<RunExit>>> {
        let processing = if RECORD {
            crate::trace::stamp_after_load()
        } else {
            0
        };
        let req = *claim.request();
        let (out, hs, he) = if RECORD {
            self.dispatcher.dispatch_timed(&req)
        } else {
            (self.dispatcher.dispatch(&req), 0, 0)
        };
        if let Target::Deferred(device, offset) = out.target {
            self.pending_mask |= 1 << claim.vcpu();
            self.shared.counters.inc(C_DEFERRED);
            self.batch.push(DeferredRequest {
                request: req,
                device,
                offset,
            });
            self.pending.push(Pending {
                claim,
                target: out.target,
                stamps: [processing, 0],
            });
            return Ok(None);
        }
        protocol::respond(&self.mem, &claim, out.value);
        self.count(&claim, out.target);
        if let Some(action) = self.control.take() {
            if RECORD {
                self.record(&req, out, [processing, hs, he, 0], true);
            }
            return self.vm_action(action, claim).map(Some);
        }
        if self.batching && self.shared.hold.load(Ordering::Relaxed) {
            self.shared.hold.store(false, Ordering::Relaxed);
            self.pending_mask |= 1 << claim.vcpu();
            self.held.push(Held {
                claim,
                out,
                stamps: [processing, hs, he],
            });
            return Ok(None);
        }
        let notify = if RECORD { crate::trace::stamp() } else { 0 };
        self.notify(claim);
        if RECORD {
            self.record(&req, out, [processing, hs, he, notify], false);
        }
        Ok(None)
    }

    fn record(&mut self, req: &Request, out: dispatch::Outcome, stamps: [u64; 4], withheld: bool) {
        if let Some(rec) = self.config.recorder.as_mut() {
            rec.record(record::handled_record(
                req, out.target, out.value, stamps, withheld,
            ));
        }
    }

    /// The requests of the batch the last [`next_batch`](Self::next_batch) handed out, in the
    /// order their responses are expected.
    pub fn batch(&self) -> &[DeferredRequest] {
        &self.batch
    }

    /// Completes the batch handed out by the previous call with `responses` (one value per
    /// request of [`batch`](Self::batch), in order; ignored for writes; a missing one reads as
    /// all ones): the values of the reads into their slots, then exactly one NOTIFY per request.
    /// Then serves requests until deferred devices have some ([`Batch::Ready`]) or the client
    /// stops ([`Batch::Exit`]): native devices are served meanwhile, exactly as by
    /// [`run`](Self::run), in either wake mode.
    ///
    /// A [`VmAction`] requested through the [`VmControl`] while the batch was handled applies
    /// to the whole batch: its reads get their values, its NOTIFYs are withheld, and the action
    /// runs as from a native device (reset: serving goes on; suspend, power-off:
    /// [`Batch::Exit`]).
    pub fn next_batch(&mut self, responses: &[u64]) -> Result<Batch> {
        if let Some(exit) = self.exit_after_complete.take() {
            return Ok(Batch::Exit(exit));
        }
        if let Some(exit) = self.complete_batch(responses)? {
            return Ok(Batch::Exit(exit));
        }
        let mut backoff = match self.config.mode {
            WakeMode::Poll(p) => Some(Backoff::new(p)),
            WakeMode::Blocking => None,
        };
        self.shared.running.store(true, Ordering::Release);
        self.batching = true;
        let r = loop {
            if self.stopped() {
                break Ok(Batch::Exit(RunExit::Stopped));
            }
            match self.scan() {
                Err(e) => break Err(e),
                Ok(Pass::Exit(x)) => break Ok(Batch::Exit(x)),
                Ok(Pass::Handled(n)) => {
                    // A plain load first: the swap (a locked instruction) only when woken.
                    if self.pending.is_empty()
                        && self.shared.wake.load(Ordering::Relaxed)
                        && self.shared.wake.swap(false, Ordering::AcqRel)
                    {
                        break Ok(Batch::Ready(0));
                    }
                    if !self.pending.is_empty() {
                        self.shared.counters.inc(C_BATCHES);
                        let now = if self.config.recorder.is_some() {
                            crate::trace::stamp()
                        } else {
                            0
                        };
                        for p in &mut self.pending {
                            p.stamps[1] = now;
                        }
                        break Ok(Batch::Ready(self.pending.len()));
                    }
                    if n > 0 {
                        if let Some(b) = backoff.as_mut() {
                            b.reset();
                        }
                        continue;
                    }
                }
            }
            match backoff.as_mut() {
                None => match self.vm.attach_ioreq_client() {
                    Ok(()) => self.shared.counters.inc(C_WAKEUPS),
                    Err(e) if e.errno == Errno::ENODEV => break Ok(Batch::Exit(RunExit::Stopped)),
                    Err(e) if e.errno == Errno::EINTR => {}
                    Err(e) => break Err(e),
                },
                Some(b) => b.wait(),
            }
        };
        self.batching = false;
        self.shared.running.store(false, Ordering::Release);
        if !matches!(r, Ok(Batch::Ready(_))) {
            if let Some(rec) = self.config.recorder.as_mut() {
                rec.flush();
            }
        }
        r
    }

    /// Completes the batch handed out by the last [`next_batch`](Self::next_batch) now, on the
    /// caller's thread, as `next_batch(responses)` would first do; the next `next_batch` (with
    /// no responses) then only waits. For a caller whose wait runs on another thread (the
    /// bindings' asynchronous loop): the vCPUs resume without waiting for that thread to wake.
    /// A VM action that ends serving (suspend, power-off) is returned by the next `next_batch`.
    pub fn complete(&mut self, responses: &[u64]) -> Result<()> {
        if let Some(exit) = self.complete_batch(responses)? {
            self.exit_after_complete = Some(exit);
        }
        Ok(())
    }

    fn complete_batch(&mut self, responses: &[u64]) -> Result<Option<RunExit>> {
        if self.pending.is_empty() && self.held.is_empty() {
            return Ok(None);
        }
        let action = self.control.take();
        let recording = self.config.recorder.is_some();
        let end = if recording { crate::trace::stamp() } else { 0 };
        // Drained and put back, so the next batch reuses the allocation.
        let mut pending = std::mem::take(&mut self.pending);
        for (k, p) in pending.drain(..).enumerate() {
            let req = *p.claim.request();
            let value = if req.is_read {
                let v = responses.get(k).copied().unwrap_or(u64::MAX) & ones(req.size);
                protocol::respond(&self.mem, &p.claim, v);
                v
            } else {
                0
            };
            let out = dispatch::Outcome {
                value,
                target: p.target,
            };
            self.finish(
                &req,
                p.claim,
                out,
                [p.stamps[0], p.stamps[1], end],
                action.is_some(),
            );
        }
        self.pending = pending;
        let mut held = std::mem::take(&mut self.held);
        for h in held.drain(..) {
            let req = *h.claim.request();
            self.finish(&req, h.claim, h.out, h.stamps, action.is_some());
        }
        self.held = held;
        self.batch.clear();
        self.pending_mask = 0;
        match action {
            None => Ok(None),
            Some(a) => self.apply_vm_action(a),
        }
    }

    /// Ends a request of the batch whose value is in its slot: withheld (a VM action is pending)
    /// or NOTIFYed, and recorded with its first three stamps (processing, handler start, end).
    fn finish(
        &mut self,
        req: &Request,
        claim: Claim,
        out: dispatch::Outcome,
        stamps: [u64; 3],
        withhold: bool,
    ) {
        let recording = self.config.recorder.is_some();
        let [processing, start, end] = stamps;
        if withhold {
            if recording {
                self.record(req, out, [processing, start, end, 0], true);
            }
            self.withhold(claim);
            return;
        }
        let notify = if recording { crate::trace::stamp() } else { 0 };
        self.notify(claim);
        if recording {
            self.record(req, out, [processing, start, end, notify], false);
        }
    }

    /// Drops the pending batch without NOTIFY (CLEAR_VM_IOREQ completes its requests).
    fn drop_batch(&mut self) {
        self.pending.clear();
        self.held.clear();
        self.batch.clear();
        self.pending_mask = 0;
    }

    /// Replaces the recorder (see [`ClientConfig::recorder`]); the old one is flushed and
    /// returned. For recording only part of a run, or starting once the devices are known.
    pub fn set_recorder(
        &mut self,
        recorder: Option<crate::trace::ClientRecorder>,
    ) -> Option<crate::trace::ClientRecorder> {
        let mut old = std::mem::replace(&mut self.config.recorder, recorder);
        if let Some(r) = old.as_mut() {
            r.flush();
        }
        old
    }

    #[inline]
    fn count(&self, claim: &Claim, target: Target) {
        let r = claim.request();
        let i = match target {
            Target::Device(_) => match (r.kind, r.is_read) {
                (Kind::Pio, true) => C_PIO_R,
                (Kind::Pio, false) => C_PIO_W,
                (Kind::Mmio, true) => C_MMIO_R,
                (Kind::Mmio, false) => C_MMIO_W,
                (Kind::PciCfg, true) => C_PCI_R,
                (Kind::PciCfg, false) => C_PCI_W,
                (Kind::Unknown(_), _) => C_FAULTS,
            },
            Target::Unclaimed => C_UNCLAIMED,
            Target::Fault(_) => C_FAULTS,
            // Counted when handed out.
            Target::Deferred(..) => return,
        };
        self.shared.counters.inc(i);
    }

    /// NOTIFY_REQUEST_FINISH for a claim (consumed: exactly once). The slot is not touched after.
    fn notify(&self, claim: Claim) {
        let vcpu = protocol::release_for_notify(claim);
        match self.vm.notify_request_finish(u32::from(vcpu)) {
            Ok(()) => self.shared.counters.inc(C_NOTIFIES),
            // The kernel has stored COMPLETE before the hypercall that failed: nothing to retry.
            Err(_) => self.shared.counters.inc(C_NOTIFY_ERR),
        }
    }

    fn vm_action(&mut self, action: VmAction, claim: Claim) -> Result<Option<RunExit>> {
        self.withhold(claim);
        self.apply_vm_action(action)
    }

    /// Runs `action` once the triggering NOTIFYs are withheld: a reset (serving goes on), or a
    /// suspend / power-off (PAUSE, CLEAR_VM_IOREQ; the client's loop ends with that exit).
    fn apply_vm_action(&mut self, action: VmAction) -> Result<Option<RunExit>> {
        match action {
            VmAction::Reset => {
                let regs = std::mem::take(&mut self.config.reset_regs);
                let r = self.reset_withheld(&regs);
                self.config.reset_regs = regs;
                r.map(|()| None)
            }
            VmAction::Suspend | VmAction::PowerOff => {
                self.vm.pause()?;
                self.vm.clear_vm_ioreq()?;
                self.withheld = 0;
                self.drop_batch();
                Ok(Some(if action == VmAction::Suspend {
                    RunExit::Suspended
                } else {
                    RunExit::PoweredOff
                }))
            }
        }
    }

    fn withhold(&mut self, claim: Claim) {
        self.withheld |= 1 << claim.vcpu();
        self.shared.counters.inc(C_WITHHELD);
        // Dropped: no NOTIFY for it; CLEAR_VM_IOREQ completes it.
        let _ = claim;
    }

    fn reset_withheld(&mut self, regs: &[VcpuRegs]) -> Result<()> {
        reset_vm_like_dm(&self.vm, None, &mut self.dispatcher, regs)?;
        self.withheld = 0;
        self.drop_batch();
        self.shared.counters.inc(C_RESETS);
        Ok(())
    }

    /// The device model's reset as one call, for a client that is not running: PAUSE_VM,
    /// CLEAR_VM_IOREQ, reset of every device, RESET_VM, SET_VCPU_REGS for each of `regs`,
    /// START_VM. (From inside a handler, use [`VmControl`] instead: the NOTIFY of the triggering
    /// request is then withheld.)
    pub fn reset_vm_like_dm(&mut self, regs: &[VcpuRegs]) -> Result<()> {
        self.reset_withheld(regs)
    }

    /// Gives the dispatcher (and its devices) back.
    pub fn into_dispatcher(mut self) -> Dispatcher {
        std::mem::take(&mut self.dispatcher)
    }
}

impl Drop for IoreqClient {
    fn drop(&mut self) {
        // Stop handles from destroying a client that is no longer ours, then destroy it (the
        // device model destroys its client on exit), unless a blocking-mode stop already did.
        // A poll-mode stop does not destroy: without this, a stopped poll-mode client would
        // leave the VM's ioreq client behind (requests PROCESSING forever, EEXIST for the next
        // client). ENODEV: already destroyed.
        self.shared.stop.store(true, Ordering::Release);
        if self.config.keep_on_drop {
            return;
        }
        if !self.shared.destroyed.swap(true, Ordering::AcqRel) {
            let _ = self.vm.destroy_ioreq_client();
        }
    }
}

enum Pass {
    Handled(usize),
    Exit(RunExit),
}

/// Resets a VM the way the ACRN device model does (`devicemodel/core/main.c`, `vm_reset`;
/// acrn-semantics.md §4.7 rule 8), as one call:
///
/// 1. `withheld`, the claim of the request that triggered the reset, is dropped **without**
///    NOTIFY (its vCPU must not resume into the old VM);
/// 2. PAUSE_VM (every vCPU becomes a zombie);
/// 3. CLEAR_VM_IOREQ (HSM completes every request still pending or processing, including the
///    withheld one);
/// 4. every device of `dispatcher` is reset;
/// 5. RESET_VM;
/// 6. SET_VCPU_REGS for each entry of `regs`;
/// 7. START_VM.
///
/// The first failing step ends the call with its error (`Error::op` names it).
pub fn reset_vm_like_dm(
    vm: &Vm,
    withheld: Option<Claim>,
    dispatcher: &mut Dispatcher,
    regs: &[VcpuRegs],
) -> Result<()> {
    let _ = withheld;
    vm.pause()?;
    vm.clear_vm_ioreq()?;
    dispatcher.reset_devices();
    vm.reset()?;
    for r in regs {
        vm.set_vcpu_regs(r)?;
    }
    vm.start()
}

/// Suspends a VM the way the device model does: the triggering request's NOTIFY withheld,
/// PAUSE_VM, CLEAR_VM_IOREQ. Devices keep their state.
pub fn suspend_vm_like_dm(vm: &Vm, withheld: Option<Claim>) -> Result<()> {
    let _ = withheld;
    vm.pause()?;
    vm.clear_vm_ioreq()
}

// The client runs on its own thread.
const _: fn() = || {
    fn is_send<T: Send>() {}
    is_send::<IoreqClient>();
    is_send::<ClientHandle>();
};

#[cfg(test)]
mod tests {
    use super::{Backoff, PollConfig};
    use std::time::{Duration, Instant};

    /// Passes of `b` in `d` of wall time.
    fn passes_in(b: &mut Backoff, d: Duration) -> u64 {
        let t = Instant::now();
        let mut n = 0;
        while t.elapsed() < d {
            b.wait();
            n += 1;
        }
        n
    }

    #[test]
    fn the_timed_spin_spins_through_a_gap_longer_than_the_counted_spins() {
        let config = PollConfig {
            spins: 16,
            spin_time: Duration::from_millis(20),
            yields: 0,
            sleep: Duration::from_millis(2),
            max_sleep: Duration::from_millis(2),
        };
        // Within the timed spin: no 2 ms sleeps. Sleeping would allow at most 3 passes in 5 ms;
        // spinning makes 63 of every 64 passes without yielding, so at least that many even
        // when the yields lose the CPU to a loaded machine (a count, not a speed).
        let mut b = Backoff::new(config);
        assert!(passes_in(&mut b, Duration::from_millis(5)) > 50);
        // Past it: sleeps of 2 ms, so a handful of passes in 20 ms.
        std::thread::sleep(Duration::from_millis(20));
        let _ = passes_in(&mut b, Duration::from_millis(1));
        assert!(passes_in(&mut b, Duration::from_millis(20)) < 20);
        // A request resets it: spinning again.
        b.reset();
        assert!(passes_in(&mut b, Duration::from_millis(5)) > 50);
        // Without a timed spin, the counted spins end it at once.
        let mut b = Backoff::new(PollConfig {
            spin_time: Duration::ZERO,
            ..config
        });
        let _ = passes_in(&mut b, Duration::from_millis(1));
        assert!(passes_in(&mut b, Duration::from_millis(20)) < 20);
    }
}
