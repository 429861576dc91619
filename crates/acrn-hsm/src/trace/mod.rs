//! The I/O-request recorder: one [`acrn_trace`] record per request, with a timestamp for every
//! stage this process can see, on one clock (`CLOCK_MONOTONIC`, ns; [`now_ns`]). The threads
//! stamp with the TSC where the kernel keeps `CLOCK_MONOTONIC` on it (cheaper to read), and the
//! writer converts the ticks to `CLOCK_MONOTONIC` ns; elsewhere they read `CLOCK_MONOTONIC`.
//!
//! Who stamps what (docs/trace-format.md, "Recorder"):
//!
//! | stage | stamped by | where |
//! |-------|------------|-------|
//! | `pending` | the emulator's vCPU thread | right after its release store of PENDING |
//! | `processing` | the client ([`ClientRecorder`]) | right after it claimed the PROCESSING slot |
//! | `handler_start`, `handler_end` | the client | around the device call in the dispatcher (0 when no handler ran: unclaimed, malformed) |
//! | `notify` | the client | right before NOTIFY_REQUEST_FINISH |
//! | `complete` | the vCPU | when its wait saw COMPLETE |
//! | `free` | the vCPU | after its store of FREE (post-work done) |
//!
//! **No lock on the hot path**: the client thread and each vCPU thread append records to their
//! own `Vec` and hand full chunks ([`CHUNK`] records) to the writer thread over a bounded channel
//! without waiting: when the channel is full (a writer that cannot keep up) the chunk is dropped,
//! counted ([`TraceSummary::dropped`]) and marked in the next chunk, so the join stays aligned.
//! The writer thread sleeps and drains what came every [`WRITER_PERIOD`] (no wake-up per chunk),
//! runs pinned to a CPU of its own where the process may use 3 CPUs or more, and yields between
//! chunks elsewhere.
//!
//! **The join**: one vCPU has at most one request in flight, so the *n*-th request the client
//! claims on slot *i* is the *n*-th request of vCPU *i* that reached the client. The vCPU knows
//! which of its requests the HSM completed in the kernel (0xCF8, 0xCFC..0xCFF while CONFIG_ADDRESS
//! is disabled, the in-kernel ioeventfd client) from the slot after completion, so the writer
//! walks each vCPU's requests in order and pairs every request that went to the client with the
//! next client record of that vCPU; the in-kernel ones are written alone, with the device
//! [`KERNEL_DEVICE`] ("hsm (in kernel)"). A pair is checked (same direction and size, same
//! address, or PCICFG for a 0xCFC..0xCFF access; `processing` not before `pending`); a client
//! record that fails the check is written alone. On a real device there is no guest side: client
//! records are written as they come, with `pending`, `complete` and `free` 0.

mod clock;

pub use clock::{now_ns, stamp, stamp_after_load};

pub use acrn_trace;

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use acrn_trace::{
    CompletionMode, DeviceInfo, Direction, IoSink, IoType, NO_DEVICE, Outcome, TraceHeader,
    TraceRecord, TraceWriter,
};

/// Records a recorder thread buffers before handing them to the writer.
pub const CHUNK: usize = 1024;
/// Chunks the channel to the writer holds; more are dropped and counted (bounds memory: about
/// 25 MB, 0.17 s of records at 1.5 M requests/s).
const CHANNEL_CHUNKS: usize = 256;
/// How long the writer thread sleeps when it has drained everything: producers never wake it
/// (a wake-up per chunk would preempt a spinning thread each time), so it works in batches.
pub const WRITER_PERIOD: Duration = Duration::from_millis(5);
/// Device id, in traces made with the emulator, of requests the HSM completed in the kernel.
pub const KERNEL_DEVICE: u16 = 0xFFFE;

fn clock_resolution_ns() -> u32 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a live, writable timespec (CLOCK_MONOTONIC always exists on Linux; a
    // failure is seen in `r`).
    let r = unsafe { libc::clock_getres(libc::CLOCK_MONOTONIC, &raw mut ts) };
    if r != 0 || ts.tv_sec != 0 {
        return 1;
    }
    u32::try_from(ts.tv_nsec).unwrap_or(1).max(1)
}

/// A recorder failure.
#[derive(Debug, thiserror::Error)]
pub enum RecorderError {
    /// The trace file could not be created or written.
    #[error("trace: {0}")]
    Io(#[from] std::io::Error),
    /// The encoder refused the header or a record.
    #[error("trace: {0}")]
    Trace(#[from] acrn_trace::TraceError),
    /// The writer thread panicked.
    #[error("trace: the writer thread panicked")]
    Panicked,
}

/// What goes into a trace's header: the VM and its devices.
#[derive(Debug, Clone)]
pub struct TraceSetup {
    /// The VM's name.
    pub name: String,
    /// Its vmid.
    pub vmid: u16,
    /// Its vCPUs.
    pub vcpus: u16,
    /// Polling completion (else notify).
    pub polling: bool,
    /// The device table (id = [`DeviceId`](crate::client::DeviceId) index).
    pub devices: Vec<DeviceInfo>,
    /// Add the [`KERNEL_DEVICE`] entry (traces recorded with the emulator).
    pub emulated: bool,
}

impl TraceSetup {
    /// The setup of VM `name` with `devices` (the client's
    /// [`Dispatcher::trace_devices`](crate::client::Dispatcher::trace_devices)).
    pub fn new(name: &str, vmid: u16, vcpus: u16, polling: bool, devices: Vec<DeviceInfo>) -> Self {
        TraceSetup {
            name: name.to_string(),
            vmid,
            vcpus,
            polling,
            devices,
            emulated: false,
        }
    }

    /// The header (clock start = now).
    pub fn header(&self) -> TraceHeader {
        let mut h = TraceHeader::new(&self.name, self.vcpus);
        h.vm.vmid = self.vmid;
        h.vm.completion = if self.polling {
            CompletionMode::Polling
        } else {
            CompletionMode::Notify
        };
        h.clock.resolution_ns = clock_resolution_ns();
        h.clock.start_ns = now_ns();
        h.clock.wall_start_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(0));
        h.devices = self.devices.clone();
        if self.emulated {
            h.devices.push(DeviceInfo {
                id: KERNEL_DEVICE,
                name: "hsm (in kernel)".into(),
                kind: IoType::Pio,
                base: 0xcf8,
                length: 8,
            });
        }
        h
    }
}

/// A request as the vCPU saw it.
#[derive(Debug, Clone, Copy)]
pub struct GuestEntry {
    /// The record, with the guest's stamps.
    pub rec: TraceRecord,
    /// It went to the userspace client (else the HSM completed it in the kernel).
    pub via_client: bool,
    /// The vCPU stopped (pause, reset, ...) before its completion: the client may or may not
    /// have claimed it.
    pub stopped: bool,
}

enum Msg {
    /// Client records; `lost`: (vCPU, records) of that vCPU dropped before these.
    Client(Vec<TraceRecord>, Vec<(u16, u64)>),
    /// A vCPU's requests; `lost`: requests that went to the client dropped before these.
    Guest(u16, Vec<GuestEntry>, u64),
    GuestAttached,
}

/// What producers and the writer share: the count of dropped records, and the chunks the writer
/// emptied, given back so the hot path reuses them (no allocation, no fresh pages to fault in).
#[derive(Debug, Default)]
struct Shared {
    dropped: AtomicU64,
    client_pool: Mutex<Vec<Vec<TraceRecord>>>,
    guest_pool: Mutex<Vec<Vec<GuestEntry>>>,
}

/// Emptied chunks kept for reuse, per kind.
const POOL_CHUNKS: usize = 16;

/// An empty chunk: a given-back one, else a new one.
fn fresh_chunk<T>(pool: &Mutex<Vec<Vec<T>>>) -> Vec<T> {
    pool.lock()
        .ok()
        .and_then(|mut p| p.pop())
        .unwrap_or_else(|| Vec::with_capacity(CHUNK))
}

/// Gives an emptied chunk back (dropped if the pool is full).
fn give_back<T>(pool: &Mutex<Vec<Vec<T>>>, mut chunk: Vec<T>) {
    chunk.clear();
    if let Ok(mut p) = pool.lock() {
        if p.len() < POOL_CHUNKS {
            p.push(chunk);
        }
    }
}

/// Hands `msg` to the writer. `wait`: block while the channel is full (not on the hot path);
/// else a full channel gives the message back. A writer gone (it failed) drops it: counted.
fn hand_over(tx: &SyncSender<Msg>, msg: Msg, wait: bool) -> Result<(), Msg> {
    if wait {
        return tx.send(msg).map_err(|e| e.0);
    }
    tx.try_send(msg).map_err(|e| match e {
        TrySendError::Full(m) | TrySendError::Disconnected(m) => m,
    })
}

/// The client thread's recorder (put it in [`ClientConfig::recorder`](crate::ClientConfig)).
/// Cloning gives a recorder with its own, empty buffer, feeding the same trace.
pub struct ClientRecorder {
    tx: SyncSender<Msg>,
    shared: Arc<Shared>,
    buf: Vec<TraceRecord>,
    /// Records dropped per vCPU since the last chunk the writer got.
    lost: Vec<u64>,
}

impl std::fmt::Debug for ClientRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientRecorder")
            .field("buffered", &self.buf.len())
            .finish()
    }
}

impl Clone for ClientRecorder {
    fn clone(&self) -> Self {
        ClientRecorder {
            tx: self.tx.clone(),
            shared: Arc::clone(&self.shared),
            buf: Vec::new(),
            lost: Vec::new(),
        }
    }
}

impl ClientRecorder {
    /// Records one request the client handled (built by the client: its request, outcome and
    /// stamps processing, handler start and end, notify).
    #[inline]
    pub fn record(&mut self, r: TraceRecord) {
        if self.buf.capacity() == 0 {
            self.buf = fresh_chunk(&self.shared.client_pool);
        }
        self.buf.push(r);
        if self.buf.len() >= CHUNK {
            self.hand_over(false);
        }
    }

    /// Hands the buffered records to the writer (waiting for room: not for the hot path).
    pub fn flush(&mut self) {
        self.hand_over(true);
    }

    fn hand_over(&mut self, wait: bool) {
        if self.buf.is_empty() {
            return;
        }
        let chunk = std::mem::replace(&mut self.buf, fresh_chunk(&self.shared.client_pool));
        let lost: Vec<(u16, u64)> = (self.lost.iter().enumerate())
            .filter(|&(_, &n)| n != 0)
            .map(|(v, &n)| (u16::try_from(v).unwrap_or(u16::MAX), n))
            .collect();
        match hand_over(&self.tx, Msg::Client(chunk, lost), wait) {
            Ok(()) => self.lost.iter_mut().for_each(|n| *n = 0),
            Err(Msg::Client(mut chunk, _)) => {
                // The writer is behind (or gone: `TraceRecorder::finish` reports its error):
                // dropped, counted, and the next chunk tells the writer what is missing.
                self.shared
                    .dropped
                    .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                for r in &chunk {
                    let v = usize::from(r.vcpu);
                    if self.lost.len() <= v {
                        self.lost.resize(v + 1, 0);
                    }
                    self.lost[v] += 1;
                }
                chunk.clear();
                give_back(
                    &self.shared.client_pool,
                    std::mem::replace(&mut self.buf, chunk),
                );
            }
            Err(_) => {}
        }
    }
}

impl Drop for ClientRecorder {
    fn drop(&mut self) {
        self.flush();
    }
}

/// The guest's recorder (the emulator's `Guest::with_recorder` takes it):
/// gives each vCPU thread a buffer of its own.
#[derive(Clone)]
pub struct GuestRecorder {
    tx: SyncSender<Msg>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for GuestRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GuestRecorder")
    }
}

impl GuestRecorder {
    /// The recorder of vCPU `vcpu`'s thread.
    pub fn vcpu(&self, vcpu: u16) -> VcpuRecorder {
        VcpuRecorder {
            tx: self.tx.clone(),
            shared: Arc::clone(&self.shared),
            vcpu,
            buf: Vec::new(),
            lost: 0,
        }
    }
}

/// One vCPU thread's buffer.
#[allow(missing_debug_implementations)]
pub struct VcpuRecorder {
    tx: SyncSender<Msg>,
    shared: Arc<Shared>,
    vcpu: u16,
    buf: Vec<GuestEntry>,
    /// Requests that went to the client dropped since the last chunk the writer got.
    lost: u64,
}

impl VcpuRecorder {
    /// Records a request of this vCPU: `ty` the `ACRN_IOREQ_TYPE_*` it issued, `value` written
    /// or read; stamps pending, complete, free.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub fn record(
        &mut self,
        mmio: bool,
        address: u64,
        size: u8,
        read: bool,
        value: u64,
        stamps: [u64; 3],
        via_client: bool,
        outcome: Option<Outcome>,
    ) {
        let mut rec = TraceRecord::new(
            self.vcpu,
            if mmio { IoType::Mmio } else { IoType::Pio },
            if read {
                Direction::Read
            } else {
                Direction::Write
            },
            size,
            address,
        );
        rec.value = value;
        rec.ts.pending = stamps[0];
        rec.ts.complete = stamps[1];
        rec.ts.free = stamps[2];
        let stopped = outcome.is_some();
        rec.outcome = outcome.unwrap_or(Outcome::Ok);
        if !via_client {
            rec.device = KERNEL_DEVICE;
        }
        if self.buf.capacity() == 0 {
            self.buf = fresh_chunk(&self.shared.guest_pool);
        }
        self.buf.push(GuestEntry {
            rec,
            via_client,
            stopped,
        });
        if self.buf.len() >= CHUNK {
            self.hand_over(false);
        }
    }

    fn hand_over(&mut self, wait: bool) {
        if self.buf.is_empty() {
            return;
        }
        let chunk = std::mem::replace(&mut self.buf, fresh_chunk(&self.shared.guest_pool));
        match hand_over(&self.tx, Msg::Guest(self.vcpu, chunk, self.lost), wait) {
            Ok(()) => self.lost = 0,
            Err(Msg::Guest(_, mut chunk, _)) => {
                self.shared
                    .dropped
                    .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                self.lost += chunk.iter().filter(|e| e.via_client).count() as u64;
                chunk.clear();
                give_back(
                    &self.shared.guest_pool,
                    std::mem::replace(&mut self.buf, chunk),
                );
            }
            Err(_) => {}
        }
    }
}

impl Drop for VcpuRecorder {
    fn drop(&mut self) {
        self.hand_over(true);
    }
}

/// What a finished trace holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct TraceSummary {
    /// Records written.
    pub records: u64,
    /// Records joining a client record and a guest request.
    pub joined: u64,
    /// Requests the HSM completed in the kernel (device [`KERNEL_DEVICE`]).
    pub in_kernel: u64,
    /// Client records written without a guest request (a real device, or unmatched).
    pub client_only: u64,
    /// Guest requests that went to the client but had no client record (stopped / cleared, or
    /// the client record was dropped).
    pub guest_only: u64,
    /// Records dropped, not written: the writer could not keep up and the channel to it was full
    /// (or the writer failed). 0 in a complete trace.
    pub dropped: u64,
    /// CPU time the writer thread used (ns): the recorder's work off the hot path.
    pub writer_cpu_ns: u64,
}

/// A trace being recorded: the writer thread, and the factories of the per-thread recorders.
///
/// ```no_run
/// # use acrn_hsm::trace::{TraceRecorder, TraceSetup};
/// # let dispatcher = acrn_hsm::Dispatcher::new();
/// let setup = TraceSetup::new("vm0", 1, 2, false, dispatcher.trace_devices());
/// let recorder = TraceRecorder::create("run.trace", &setup)?;
/// let client_rec = recorder.client(); // -> ClientConfig { recorder: Some(client_rec), .. }
/// let guest_rec = recorder.guest();   // -> guest.with_recorder(guest_rec)
/// // ... run, then drop the client and the guest runs ...
/// # drop((client_rec, guest_rec));
/// let summary = recorder.finish()?;
/// # Ok::<(), acrn_hsm::trace::RecorderError>(())
/// ```
pub struct TraceRecorder {
    tx: SyncSender<Msg>,
    shared: Arc<Shared>,
    thread: JoinHandle<Result<TraceSummary, RecorderError>>,
}

impl std::fmt::Debug for TraceRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TraceRecorder")
    }
}

impl TraceRecorder {
    /// Records to a new file at `path` (buffered, streaming).
    pub fn create(path: impl AsRef<Path>, setup: &TraceSetup) -> Result<Self, RecorderError> {
        let f = File::create(path)?;
        Self::new(BufWriter::with_capacity(1 << 16, f), setup)
    }

    /// Records to `sink`: the header is written now, records as they are joined, the footer by
    /// [`finish`](Self::finish).
    pub fn new<W: Write + Send + 'static>(
        sink: W,
        setup: &TraceSetup,
    ) -> Result<Self, RecorderError> {
        Self::with_writer(sink, setup, false)
    }

    /// A recorder whose writer thread takes the chunks and drops them, without joining or
    /// encoding (summary: 0 records): for measuring what the hot path alone costs.
    #[doc(hidden)]
    pub fn discarding(setup: &TraceSetup) -> Result<Self, RecorderError> {
        Self::with_writer(std::io::sink(), setup, true)
    }

    fn with_writer<W: Write + Send + 'static>(
        sink: W,
        setup: &TraceSetup,
        discard: bool,
    ) -> Result<Self, RecorderError> {
        let calib = clock::init();
        let writer = TraceWriter::new(IoSink(sink), &setup.header())?;
        let (tx, rx) = sync_channel(CHANNEL_CHUNKS);
        let vcpus = usize::from(setup.vcpus.max(1));
        // Devices added after the header was written (while the client serves) are not in its
        // table: their records carry no device.
        let mut known = vec![0u64; 1024];
        for d in &setup.devices {
            known[usize::from(d.id / 64)] |= 1 << (d.id % 64);
        }
        let shared = Arc::new(Shared::default());
        let pools = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("trace-writer".into())
            .spawn(move || writer_thread(writer, rx, vcpus, calib, known, discard, &pools))?;
        Ok(TraceRecorder { tx, shared, thread })
    }

    /// A recorder for the client thread.
    pub fn client(&self) -> ClientRecorder {
        ClientRecorder {
            tx: self.tx.clone(),
            shared: Arc::clone(&self.shared),
            buf: Vec::new(),
            lost: Vec::new(),
        }
    }

    /// A recorder for the emulator's guest: from now on client records are joined with the
    /// guest's requests.
    pub fn guest(&self) -> GuestRecorder {
        let _ = self.tx.send(Msg::GuestAttached);
        GuestRecorder {
            tx: self.tx.clone(),
            shared: Arc::clone(&self.shared),
        }
    }

    /// Waits until every [`ClientRecorder`] and [`GuestRecorder`] is dropped (drop the client
    /// and the guest runs first), writes what is left and the footer, and flushes.
    pub fn finish(self) -> Result<TraceSummary, RecorderError> {
        drop(self.tx);
        let mut sum = self.thread.join().map_err(|_| RecorderError::Panicked)??;
        sum.dropped = self.shared.dropped.load(Ordering::Relaxed);
        Ok(sum)
    }
}

/// Client and guest queues of one vCPU; `None`: a dropped record (a client record, or a guest
/// request that went to the client), kept in place so the records around it pair as they should.
#[derive(Default)]
struct Lane {
    client: VecDeque<Option<TraceRecord>>,
    guest: VecDeque<Option<GuestEntry>>,
}

/// Whether client record `c` is the request `g` the vCPU issued.
fn compatible(g: &TraceRecord, c: &TraceRecord) -> bool {
    let addr_ok = match (c.kind, g.kind) {
        (IoType::Pci, IoType::Pio) => (0xcfc..=0xcff).contains(&g.address),
        (a, b) => a == b && c.address == g.address,
    };
    addr_ok
        && c.direction == g.direction
        && c.size == g.size
        && (c.ts.processing == 0 || g.ts.pending == 0 || c.ts.processing >= g.ts.pending)
}

struct Joiner<W: Write> {
    w: TraceWriter<IoSink<W>>,
    calib: clock::Calib,
    lanes: Vec<Lane>,
    guest_attached: bool,
    sum: TraceSummary,
}

impl<W: Write> Joiner<W> {
    fn write(&mut self, r: &TraceRecord) -> Result<(), RecorderError> {
        let mut r = *r;
        let ts = self.calib.ns_all(r.ts.to_array());
        r.ts = acrn_trace::Timestamps::from_array(ts);
        self.w.write_record(&r)?;
        self.sum.records += 1;
        Ok(())
    }

    fn lane(&mut self, vcpu: u16) -> &mut Lane {
        let i = usize::from(vcpu);
        if self.lanes.len() <= i {
            self.lanes.resize_with(i + 1, Lane::default);
        }
        &mut self.lanes[i]
    }

    /// Writes what can be joined on lane `i`; `end`: nothing more will come.
    fn drain(&mut self, i: usize, end: bool) -> Result<(), RecorderError> {
        loop {
            let lane = &mut self.lanes[i];
            let Some(g) = lane.guest.front().copied() else {
                if end || !self.guest_attached {
                    while let Some(c) = self.lanes[i].client.pop_front() {
                        if let Some(c) = c {
                            self.sum.client_only += 1;
                            self.write(&c)?;
                        }
                    }
                }
                return Ok(());
            };
            let Some(g) = g else {
                // A dropped request of the guest: its client record (if any) is written alone.
                match lane.client.front().copied() {
                    None if !end => return Ok(()),
                    c => {
                        lane.guest.pop_front();
                        lane.client.pop_front();
                        if let Some(Some(c)) = c {
                            self.sum.client_only += 1;
                            self.write(&c)?;
                        }
                    }
                }
                continue;
            };
            if !g.via_client {
                lane.guest.pop_front();
                self.sum.in_kernel += 1;
                self.write(&g.rec)?;
                continue;
            }
            match lane.client.front().copied() {
                Some(None) => {
                    // The client record of this request was dropped: the request alone.
                    lane.client.pop_front();
                    lane.guest.pop_front();
                    self.sum.guest_only += 1;
                    let mut r = g.rec;
                    r.device = NO_DEVICE;
                    self.write(&r)?;
                }
                Some(Some(c)) if c.ts.processing != 0 && c.ts.processing < g.rec.ts.pending => {
                    // A client record older than this request: its own request was taken for
                    // an in-kernel one. Written alone.
                    lane.client.pop_front();
                    self.sum.client_only += 1;
                    self.write(&c)?;
                }
                Some(Some(c)) if compatible(&g.rec, &c) => {
                    lane.client.pop_front();
                    lane.guest.pop_front();
                    let mut r = c;
                    r.ts.pending = g.rec.ts.pending;
                    r.ts.complete = g.rec.ts.complete;
                    r.ts.free = g.rec.ts.free;
                    // COMPLETE is stored by the NOTIFY the client stamped before, so the vCPU's
                    // `complete` cannot precede `notify`; two CPUs' TSCs may still disagree by a
                    // few ticks, which would drop the record's completion stage: clamped.
                    if r.ts.notify != 0 && r.ts.complete != 0 && r.ts.complete < r.ts.notify {
                        r.ts.complete = r.ts.notify;
                        r.ts.free = r.ts.free.max(r.ts.complete);
                    }
                    if g.stopped && r.outcome == Outcome::Ok {
                        r.outcome = g.rec.outcome;
                    }
                    self.sum.joined += 1;
                    self.write(&r)?;
                }
                Some(Some(_)) => {
                    // Not this request's: the guest request is written alone.
                    lane.guest.pop_front();
                    self.sum.guest_only += 1;
                    let mut r = g.rec;
                    r.device = NO_DEVICE;
                    self.write(&r)?;
                }
                None if end || (g.stopped && lane.guest.len() > 1) => {
                    lane.guest.pop_front();
                    self.sum.guest_only += 1;
                    let mut r = g.rec;
                    r.device = NO_DEVICE;
                    if r.outcome == Outcome::Ok {
                        r.outcome = Outcome::Incomplete;
                    }
                    self.write(&r)?;
                }
                None => return Ok(()),
            }
        }
    }
}

fn writer_thread<W: Write>(
    w: TraceWriter<IoSink<W>>,
    rx: Receiver<Msg>,
    vcpus: usize,
    calib: clock::Calib,
    known: Vec<u64>,
    discard: bool,
    pools: &Shared,
) -> Result<TraceSummary, RecorderError> {
    let mut j = Joiner {
        w,
        calib,
        lanes: Vec::new(),
        guest_attached: false,
        sum: TraceSummary::default(),
    };
    j.lanes.resize_with(vcpus, Lane::default);
    let pinned = pin_writer();
    let mut since_refresh = 0u32;
    loop {
        let msg = match rx.try_recv() {
            Ok(m) => m,
            Err(TryRecvError::Empty) => {
                // Refreshed now, so the stamps of the chunks that come while it sleeps are in
                // the newest segment of the conversion (the quick case).
                j.calib.refresh();
                since_refresh = 0;
                std::thread::sleep(WRITER_PERIOD);
                continue;
            }
            Err(TryRecvError::Disconnected) => break,
        };
        if discard {
            match msg {
                Msg::Client(chunk, _) => give_back(&pools.client_pool, chunk),
                Msg::Guest(_, chunk, _) => give_back(&pools.guest_pool, chunk),
                Msg::GuestAttached => {}
            }
            continue;
        }
        since_refresh += 1;
        if since_refresh == 64 {
            j.calib.refresh();
            since_refresh = 0;
        }
        match msg {
            Msg::GuestAttached => j.guest_attached = true,
            Msg::Client(mut chunk, lost) => {
                let mut touched = 0u64;
                for (v, n) in lost {
                    let lane = j.lane(v);
                    lane.client.extend((0..n).map(|_| None));
                    touched |= 1 << (v % 64);
                }
                for mut r in chunk.drain(..) {
                    if r.device != NO_DEVICE
                        && known[usize::from(r.device / 64)] & (1 << (r.device % 64)) == 0
                    {
                        r.device = NO_DEVICE;
                    }
                    touched |= 1 << (r.vcpu % 64);
                    j.lane(r.vcpu).client.push_back(Some(r));
                }
                give_back(&pools.client_pool, chunk);
                for i in 0..j.lanes.len() {
                    if touched & (1 << (i % 64)) != 0 {
                        j.drain(i, false)?;
                    }
                }
            }
            Msg::Guest(vcpu, mut chunk, lost) => {
                let lane = j.lane(vcpu);
                lane.guest.extend((0..lost).map(|_| None));
                lane.guest.extend(chunk.drain(..).map(Some));
                give_back(&pools.guest_pool, chunk);
                j.drain(usize::from(vcpu), false)?;
            }
        }
        if !pinned {
            // Sharing the CPUs with the threads that spin: let one that waits run again.
            std::thread::yield_now();
        }
    }
    for i in 0..j.lanes.len() {
        j.drain(i, true)?;
    }
    let mut sum = j.sum;
    let IoSink(mut sink) = j.w.finish()?;
    sink.flush()?;
    sum.writer_cpu_ns = thread_cpu_ns();
    Ok(sum)
}

/// CPU time of the calling thread (ns).
fn thread_cpu_ns() -> u64 {
    clock::clock_ns(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// Pins the calling (writer) thread to the last CPU the process may use when it may use 3 or
/// more: the client and a vCPU that spin keep the others (the scheduler moves them off a CPU
/// that is busy). With 2 CPUs or fewer, or `ACRN_HSM_TRACE_NO_PIN` set, nothing is changed.
fn pin_writer() -> bool {
    if std::env::var_os("ACRN_HSM_TRACE_NO_PIN").is_some() {
        return false;
    }
    // SAFETY: an all-zero cpu_set_t is a valid (empty) set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: `set` is a live, writable cpu_set_t of `size` bytes; pid 0 is this thread.
    if unsafe { libc::sched_getaffinity(0, size, &raw mut set) } != 0 {
        return false;
    }
    let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
        .filter(|&c| {
            // SAFETY: `set` is a valid cpu_set_t and `c` is below CPU_SETSIZE.
            unsafe { libc::CPU_ISSET(c, &set) }
        })
        .collect();
    let Some(&last) = cpus.last().filter(|_| cpus.len() >= 3) else {
        return false;
    };
    // SAFETY: `set` is a valid cpu_set_t.
    unsafe { libc::CPU_ZERO(&mut set) };
    // SAFETY: `set` is a valid cpu_set_t and `last` is below CPU_SETSIZE.
    unsafe { libc::CPU_SET(last, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of `size` bytes; pid 0 is this thread.
    unsafe { libc::sched_setaffinity(0, size, &raw const set) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joiner() -> Joiner<Vec<u8>> {
        let setup = TraceSetup {
            emulated: true,
            ..TraceSetup::new("t", 1, 1, true, Vec::new())
        };
        let w = TraceWriter::new(IoSink(Vec::new()), &setup.header()).expect("header");
        let mut j = Joiner {
            w,
            calib: clock::init(),
            lanes: Vec::new(),
            guest_attached: true,
            sum: TraceSummary::default(),
        };
        j.lanes.resize_with(1, Lane::default);
        j
    }

    fn guest(pending: u64) -> Option<GuestEntry> {
        let mut rec = TraceRecord::new(0, IoType::Mmio, Direction::Write, 4, 0x1000);
        rec.ts.pending = pending;
        Some(GuestEntry {
            rec,
            via_client: true,
            stopped: false,
        })
    }

    fn client(processing: u64) -> Option<TraceRecord> {
        let mut r = TraceRecord::new(0, IoType::Mmio, Direction::Write, 4, 0x1000);
        r.ts.processing = processing;
        Some(r)
    }

    #[test]
    fn a_dropped_guest_request_leaves_its_client_record_alone() {
        let mut j = joiner();
        j.lanes[0].guest.extend([guest(10), None, guest(30)]);
        j.lanes[0]
            .client
            .extend([client(11), client(21), client(31)]);
        j.drain(0, true).expect("drain");
        assert_eq!((j.sum.joined, j.sum.client_only, j.sum.records), (2, 1, 3));
    }

    #[test]
    fn a_dropped_client_record_leaves_its_request_alone() {
        let mut j = joiner();
        j.lanes[0].guest.extend([guest(10), guest(20), guest(30)]);
        j.lanes[0].client.extend([client(11), None, client(31)]);
        j.drain(0, false).expect("drain");
        assert_eq!((j.sum.joined, j.sum.guest_only, j.sum.records), (2, 1, 3));
        // Both sides of one request dropped: nothing written for it.
        j.lanes[0].guest.extend([None, guest(50)]);
        j.lanes[0].client.extend([None, client(51)]);
        j.drain(0, true).expect("drain");
        assert_eq!((j.sum.joined, j.sum.records), (3, 4));
    }

    #[test]
    fn records_a_full_channel_cannot_take_are_counted() {
        let setup = TraceSetup::new("t", 1, 1, true, Vec::new());
        let rec = TraceRecorder::new(std::io::sink(), &setup).expect("recorder");
        let mut c = rec.client();
        // More than the channel holds, faster than the writer (asleep between drains) takes it.
        let n = (CHANNEL_CHUNKS as u64 + 64) * CHUNK as u64;
        for i in 0..n {
            c.record(client(i + 1).expect("record"));
        }
        drop(c);
        let sum = rec.finish().expect("finish");
        assert_eq!(sum.records + sum.dropped, n, "{sum:?}");
        assert_eq!(sum.client_only, sum.records);
    }
}
