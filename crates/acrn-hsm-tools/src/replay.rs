//! Replay: a trace run as a guest workload on the emulator ([`workload_from_trace`],
//! [`replay_trace`]).
//!
//! Every record becomes one access of its vCPU, in the trace's per-vCPU order: same type,
//! address, size, direction; writes write the recorded value; reads carry `expect` = the recorded
//! value when the recorded outcome was `ok` or `unclaimed` (all ones). A PCI record whose vCPU's
//! previous record is the 0xCF8 write of its CONFIG_ADDRESS (traces made with the emulator,
//! where the HSM completes 0xCF8 in the kernel) becomes the 0xCFC access alone; otherwise it
//! becomes a whole PCI access (0xCF8 then 0xCFC). Records that cannot be issued again
//! (malformed, a size the type does not allow) are skipped and counted. With `pace`, the idle
//! time of each vCPU between two requests (the end of one — free, else complete, else notify —
//! to the start of the next — pending, else processing) becomes an [`Op::Delay`].
//!
//! The backend [`replay_trace`] serves is built from the trace's device table: each device
//! answers reads with the values recorded for that device and offset, in order, and checks that
//! writes carry the recorded values in order. A replay that reproduces the request sequence
//! therefore has no mismatch; any reordering, loss or change shows up as one.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use acrn_trace::format::pci_fields;
use acrn_trace::{
    ByteSource, CompletionMode, Direction, IoType, NO_DEVICE, Outcome, TraceError, TraceHeader,
    TraceReader,
};
use serde::Serialize;

use acrn_hsm::VmConfig;
use acrn_hsm::client::{
    AddressSpace, Bdf, ClientConfig, Dispatcher, IoDevice, IoreqClient, PciDevice, PollConfig,
    WakeMode,
};
use acrn_hsm::trace::KERNEL_DEVICE;
use acrn_hsm_emulator::Emulator;
use acrn_hsm_emulator::workload::{Access, Op, Workload};

/// The backend a replay runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplayDevices {
    /// `Demo` for a trace of `acrn-hsm demo` (its VM name starts with "acrn-hsm demo"), else
    /// `Recorded`.
    #[default]
    Auto,
    /// The trace's devices playing their recorded parts (reads answered with the recorded
    /// values, writes checked against them).
    Recorded,
    /// The demo's real devices ([`crate::demo::devices`]); trace devices the demo does not have
    /// play their recorded parts.
    Demo,
}

impl std::str::FromStr for ReplayDevices {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(ReplayDevices::Auto),
            "recorded" => Ok(ReplayDevices::Recorded),
            "demo" => Ok(ReplayDevices::Demo),
            _ => Err(format!(
                "devices {s:?}: expected \"auto\", \"recorded\" or \"demo\""
            )),
        }
    }
}

/// How a trace is turned into a workload, and what it is replayed against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayOptions {
    /// Honour each vCPU's idle time between requests ([`Op::Delay`]).
    pub pace: bool,
    /// Longest idle time kept when pacing (longer gaps are shortened to it).
    pub max_gap: Duration,
    /// The backend ([`replay_trace`]).
    pub devices: ReplayDevices,
    /// An instant when no request of any vCPU was in flight, followed by this long without a
    /// request, separates two phases: the replay puts an [`Op::Barrier`] there, so that what
    /// ran before it (say vCPU 0 probing PCI alone) is not raced by what ran after.
    pub phase_gap: Duration,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            pace: false,
            max_gap: Duration::from_secs(1),
            devices: ReplayDevices::Auto,
            phase_gap: Duration::from_micros(20),
        }
    }
}

/// A replay failure (not a mismatch: those are in the report).
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The trace does not decode.
    #[error("{0}")]
    Trace(#[from] TraceError),
    /// The trace cannot be replayed as it is.
    #[error("replay: {0}")]
    Invalid(String),
    /// The emulator refused something.
    #[error("replay: {0}")]
    Hsm(#[from] acrn_hsm::Error),
    /// A device could not be registered.
    #[error("replay: {0}")]
    Bus(#[from] acrn_hsm::client::BusError),
    /// The client failed.
    #[error("replay: client: {0}")]
    Client(String),
}

/// What [`workload_from_trace`] makes of a trace.
#[derive(Debug, Clone)]
pub struct TraceWorkload {
    /// The workload.
    pub workload: Workload,
    /// The trace's header.
    pub header: TraceHeader,
    /// Records read.
    pub records: u64,
    /// Records that could not be issued again (malformed, bad size).
    pub skipped: u64,
    /// Requests of the workload with an `expect`.
    pub checked_reads: u64,
    /// Phase barriers put in each vCPU's list.
    pub phases: u64,
    /// Per device id: per (offset, size), the values of reads and writes in order.
    script: HashMap<u16, DeviceScript>,
}

#[derive(Debug, Clone, Default)]
struct DeviceScript {
    reads: HashMap<(u64, u8), VecDeque<u64>>,
    writes: HashMap<(u64, u8), VecDeque<u64>>,
}

/// Per-vCPU state of the conversion.
#[derive(Default)]
struct Lane {
    ops: Vec<Op>,
    /// The last record was a write of this CONFIG_ADDRESS to 0xCF8.
    cf8: Option<u64>,
    last_end: u64,
}

fn stamp_start(r: &acrn_trace::TraceRecord) -> u64 {
    if r.ts.pending != 0 {
        r.ts.pending
    } else {
        r.ts.processing
    }
}

fn stamp_end(r: &acrn_trace::TraceRecord) -> u64 {
    [r.ts.free, r.ts.complete, r.ts.notify, r.ts.handler_end]
        .into_iter()
        .find(|&t| t != 0)
        .unwrap_or(0)
}

/// Reads a trace and makes the workload that replays it (module docs). The whole workload is
/// in memory (about 40 bytes per request).
pub fn workload_from_trace<S: ByteSource>(
    source: S,
    options: &ReplayOptions,
) -> Result<TraceWorkload, ReplayError> {
    let mut reader = TraceReader::new(source)?;
    let header = reader.header().clone();
    let mut all = Vec::new();
    while let Some(r) = reader.next_record()? {
        all.push(r);
    }
    // Phase boundaries: instants with nothing in flight, then `phase_gap` of silence.
    let mut spans: Vec<(u64, u64)> = all
        .iter()
        .filter_map(|r| {
            let s = stamp_start(r);
            (s != 0).then(|| (s, stamp_end(r).max(s)))
        })
        .collect();
    spans.sort_unstable();
    let gap = u64::try_from(options.phase_gap.as_nanos()).unwrap_or(u64::MAX);
    let mut barriers: Vec<u64> = Vec::new();
    let mut max_end = 0u64;
    for &(s, e) in &spans {
        if max_end != 0 && s > max_end.saturating_add(gap) {
            barriers.push(s);
        }
        max_end = max_end.max(e);
    }
    let mut lanes: Vec<Lane> = Vec::new();
    let mut script: HashMap<u16, DeviceScript> = HashMap::new();
    let (mut records, mut skipped, mut checked) = (0u64, 0u64, 0u64);
    let mut passed: Vec<usize> = Vec::new();
    for r in all {
        records += 1;
        let v = usize::from(r.vcpu);
        if v >= acrn_uapi::wire::IO_REQUEST_MAX {
            return Err(ReplayError::Invalid(format!(
                "record {} is of vCPU {}: at most 16 vCPUs can be replayed",
                records - 1,
                r.vcpu
            )));
        }
        if lanes.len() <= v {
            lanes.resize_with(v + 1, Lane::default);
            passed.resize(v + 1, 0);
        }
        let lane = &mut lanes[v];
        let start = stamp_start(&r);
        while passed[v] < barriers.len() && start != 0 && barriers[passed[v]] <= start {
            if lane.cf8.is_some() && matches!(lane.ops.last(), Some(Op::Pio { port: 0xcf8, .. })) {
                // The machine went quiet while this vCPU was between the two halves of a
                // PCI access (its 0xCF8 write done, the 0xCFC access not yet issued): the
                // barrier goes before the 0xCF8 write, so the pair stays together and is
                // replayed as the same two requests.
                let at = lane.ops.len() - 1;
                lane.ops.insert(at, Op::Barrier);
            } else {
                lane.ops.push(Op::Barrier);
                lane.cf8 = None;
            }
            passed[v] += 1;
        }
        let size_ok = match r.kind {
            IoType::Mmio => matches!(r.size, 1 | 2 | 4 | 8),
            IoType::Pio | IoType::Pci => matches!(r.size, 1 | 2 | 4),
        };
        if r.outcome == Outcome::Malformed || !size_ok {
            skipped += 1;
            lane.cf8 = None;
            continue;
        }
        if options.pace {
            let start = stamp_start(&r);
            if lane.last_end != 0 && start > lane.last_end {
                let gap = Duration::from_nanos(start - lane.last_end).min(options.max_gap);
                if gap >= Duration::from_micros(1) {
                    lane.ops.push(Op::Delay {
                        ns: u64::try_from(gap.as_nanos()).unwrap_or(u64::MAX),
                    });
                }
            }
            let end = stamp_end(&r);
            if end != 0 {
                lane.last_end = end;
            }
        }
        let access = match r.direction {
            Direction::Write => Access::Write(r.value),
            Direction::Read => {
                let known = matches!(r.outcome, Outcome::Ok | Outcome::Unclaimed);
                if known {
                    checked += 1;
                }
                Access::Read {
                    expect: known.then_some(r.value),
                }
            }
        };
        // The device's script (what it answers, what it expects written).
        if r.device != NO_DEVICE && r.device != KERNEL_DEVICE && r.outcome == Outcome::Ok {
            if let Some(d) = header.device(r.device) {
                let offset = match r.kind {
                    IoType::Pci => u64::from(pci_fields(r.address).3),
                    _ => r.address.wrapping_sub(d.base),
                };
                let s = script.entry(r.device).or_default();
                let q = match r.direction {
                    Direction::Read => &mut s.reads,
                    Direction::Write => &mut s.writes,
                };
                q.entry((offset, r.size)).or_default().push_back(r.value);
            }
        }
        let op = match r.kind {
            IoType::Pio => Op::Pio {
                port: u16::try_from(r.address).map_err(|_| {
                    ReplayError::Invalid(format!(
                        "record {}: port {:#x} is above 0xffff",
                        records - 1,
                        r.address
                    ))
                })?,
                size: r.size,
                access,
            },
            IoType::Mmio => Op::Mmio {
                address: r.address,
                size: r.size,
                access,
            },
            IoType::Pci => {
                let (bus, dev, func, reg) = pci_fields(r.address);
                let want = 0x8000_0000u64
                    | (u64::from(bus) << 16)
                    | (u64::from(dev) << 11)
                    | (u64::from(func) << 8)
                    | (u64::from(reg) & 0xfc)
                    | ((u64::from(reg) & 0xf00) << 16);
                let cf8_write_last = matches!(
                    lane.ops.last(),
                    Some(Op::Pio {
                        port: 0xcf8,
                        size: 4,
                        access: Access::Write(v),
                    }) if *v == want
                );
                if lane.cf8 == Some(want) && cf8_write_last {
                    // The recorded 0xCF8 write and this access become one Op::Pci: the
                    // same two requests, issued under the guest's PCI config lock (the
                    // hypervisor's CONFIG_ADDRESS latch is per VM and each data access
                    // clears it, so another vCPU's pair must not come in between).
                    lane.ops.pop();
                    Op::Pci {
                        bus,
                        dev,
                        func,
                        reg,
                        size: r.size,
                        access,
                    }
                } else if lane.cf8 == Some(want) {
                    Op::Pio {
                        port: 0xcfc + (reg & 3),
                        size: r.size,
                        access,
                    }
                } else {
                    Op::Pci {
                        bus,
                        dev,
                        func,
                        reg,
                        size: r.size,
                        access,
                    }
                }
            }
        };
        lane.cf8 = match (&op, r.direction) {
            (
                Op::Pio {
                    port: 0xcf8,
                    size: 4,
                    ..
                },
                Direction::Write,
            ) => Some(r.value & 0xffff_ffff),
            (Op::Pio { port: 0xcf8, .. }, Direction::Read) => lane.cf8,
            (Op::Pci { .. }, _) => None,
            _ => lane.cf8,
        };
        lane.ops.push(op);
    }
    // Every vCPU passes every barrier.
    for (lane, p) in lanes.iter_mut().zip(&passed) {
        lane.ops
            .extend(std::iter::repeat_n(Op::Barrier, barriers.len() - p));
    }
    Ok(TraceWorkload {
        workload: Workload {
            vcpus: lanes.into_iter().map(|l| l.ops).collect(),
        },
        header,
        records,
        skipped,
        checked_reads: checked,
        phases: barriers.len() as u64,
        script,
    })
}

/// The result of a replay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplayReport {
    /// Records in the trace.
    pub records: u64,
    /// Records replayed (records - skipped).
    pub replayed: u64,
    /// Records skipped (malformed, bad size).
    pub skipped: u64,
    /// Requests the guest issued (a PCI access made whole counts two).
    pub issued: u64,
    /// Requests the guest completed.
    pub completed: u64,
    /// Reads with an expected value.
    pub checked_reads: u64,
    /// Reads whose value differed from the recorded one.
    pub read_mismatches: u64,
    /// Writes whose value or order differed from the recorded ones (seen by the devices).
    pub write_mismatches: u64,
    /// Accesses a device got beyond those recorded (the sequence changed).
    pub unexpected: u64,
    /// Guest faults.
    pub faults: u64,
    /// Whether pacing was on.
    pub paced: bool,
    /// Phase barriers the replay kept.
    pub phases: u64,
    /// The backend used (`recorded` or `demo`).
    pub devices: ReplayDevices,
    /// Wall time, ms.
    pub elapsed_ms: u64,
    /// The first mismatches, for diagnosis.
    pub samples: Vec<String>,
}

impl ReplayReport {
    /// Every request replayed and completed with its recorded values.
    pub fn is_clean(&self) -> bool {
        self.issued == self.completed
            && self.read_mismatches == 0
            && self.write_mismatches == 0
            && self.unexpected == 0
            && self.faults == 0
    }
}

#[derive(Default)]
struct Tally {
    write_mismatches: AtomicU64,
    unexpected: AtomicU64,
    samples: std::sync::Mutex<Vec<String>>,
}

impl Tally {
    fn sample(&self, s: String) {
        if let Ok(mut v) = self.samples.lock() {
            if v.len() < 8 {
                v.push(s);
            }
        }
    }
}

/// A device playing its part of a trace.
struct ScriptDevice {
    name: String,
    script: DeviceScript,
    tally: Arc<Tally>,
}

impl ScriptDevice {
    fn read(&mut self, offset: u64, size: u8) -> u64 {
        match self
            .script
            .reads
            .get_mut(&(offset, size))
            .and_then(VecDeque::pop_front)
        {
            Some(v) => v,
            None => {
                self.tally.unexpected.fetch_add(1, Ordering::Relaxed);
                self.tally.sample(format!(
                    "{}: unexpected read at offset {offset:#x}/{size}",
                    self.name
                ));
                0
            }
        }
    }
    fn write(&mut self, offset: u64, size: u8, value: u64) {
        match self
            .script
            .writes
            .get_mut(&(offset, size))
            .and_then(VecDeque::pop_front)
        {
            Some(v) if v == value => {}
            Some(v) => {
                self.tally.write_mismatches.fetch_add(1, Ordering::Relaxed);
                self.tally.sample(format!(
                    "{}: write at offset {offset:#x}/{size}: recorded {v:#x}, replayed {value:#x}",
                    self.name
                ));
            }
            None => {
                self.tally.unexpected.fetch_add(1, Ordering::Relaxed);
                self.tally.sample(format!(
                    "{}: unexpected write of {value:#x} at offset {offset:#x}/{size}",
                    self.name
                ));
            }
        }
    }
}

impl IoDevice for ScriptDevice {
    fn name(&self) -> &str {
        &self.name
    }
    fn read(&mut self, offset: u64, size: u8) -> u64 {
        ScriptDevice::read(self, offset, size)
    }
    fn write(&mut self, offset: u64, size: u8, value: u64) {
        ScriptDevice::write(self, offset, size, value)
    }
}

struct ScriptPci(ScriptDevice);

impl PciDevice for ScriptPci {
    fn name(&self) -> &str {
        &self.0.name
    }
    fn cfg_read(&mut self, reg: u32, size: u8) -> u32 {
        self.0.read(u64::from(reg), size) as u32
    }
    fn cfg_write(&mut self, reg: u32, size: u8, value: u32) {
        self.0.write(u64::from(reg), size, u64::from(value))
    }
}

/// Replays the trace read from `source` on a fresh emulator: a VM like the traced one (vCPUs,
/// completion mode), the trace's devices playing their recorded parts, the native client
/// (blocking for notify VMs, busy-poll for polling ones), and the guest running
/// [`workload_from_trace`].
pub fn replay_trace<S: ByteSource>(
    source: S,
    options: &ReplayOptions,
) -> Result<ReplayReport, ReplayError> {
    let tw = workload_from_trace(source, options)?;
    let tally = Arc::new(Tally::default());
    let vcpus = tw.workload.vcpus.len().max(1);
    let devices = match options.devices {
        ReplayDevices::Auto if tw.header.vm.name.starts_with("acrn-hsm demo") => {
            ReplayDevices::Demo
        }
        ReplayDevices::Auto => ReplayDevices::Recorded,
        x => x,
    };
    let mut d = if devices == ReplayDevices::Demo {
        crate::demo::devices(vcpus as u16).map_err(|e| ReplayError::Invalid(e.to_string()))?
    } else {
        Dispatcher::new()
    };
    let demo = devices == ReplayDevices::Demo;
    for dev in &tw.header.devices {
        if dev.id == KERNEL_DEVICE {
            continue;
        }
        let sd = ScriptDevice {
            name: dev.name.clone(),
            script: tw.script.get(&dev.id).cloned().unwrap_or_default(),
            tally: tally.clone(),
        };
        let r = match dev.kind {
            IoType::Pio => d
                .add_range(AddressSpace::Pio, dev.base, dev.length, Box::new(sd))
                .map(drop),
            IoType::Mmio => d
                .add_range(AddressSpace::Mmio, dev.base, dev.length, Box::new(sd))
                .map(drop),
            IoType::Pci => {
                let (bus, dv, func, _) = pci_fields(dev.base);
                d.add_pci(Bdf::new(bus, dv, func), Box::new(ScriptPci(sd)))
                    .map(drop)
            }
        };
        match r {
            Ok(()) => {}
            // The demo's own device serves that range.
            Err(_) if demo => {}
            Err(e) => return Err(e.into()),
        }
    }
    let polling = tw.header.vm.completion == CompletionMode::Polling;
    let emu = Emulator::new();
    let hsm = emu.open_hsm();
    let vm = Arc::new(hsm.create_vm(&VmConfig {
        vcpu_num: vcpus as u16,
        vm_flag: if polling {
            acrn_hsm::GUEST_FLAG_IO_COMPLETION_POLLING
        } else {
            0
        },
        ..Default::default()
    })?);
    let mut client = IoreqClient::new(
        vm.clone(),
        d,
        ClientConfig {
            mode: if polling {
                WakeMode::Poll(PollConfig::default())
            } else {
                WakeMode::Blocking
            },
            ..Default::default()
        },
    )?;
    let handle = client.handle();
    let thread = std::thread::Builder::new()
        .name("replay-client".into())
        .spawn(move || client.run())
        .map_err(|e| ReplayError::Client(e.to_string()))?;
    let t0 = Instant::now();
    let run = vm
        .start()
        .map_err(ReplayError::from)
        .and_then(|()| {
            emu.guest(vm.vmid())
                .map_err(|e| ReplayError::Client(format!("guest: {e}")))
        })
        .and_then(|g| {
            g.run(&tw.workload)
                .map_err(|e| ReplayError::Client(format!("guest: {e}")))
        });
    let elapsed = t0.elapsed();
    handle.stop();
    let joined = thread
        .join()
        .map_err(|_| ReplayError::Client("the client thread panicked".into()))?;
    let result = run?;
    joined.map_err(|e| ReplayError::Client(e.to_string()))?;
    let _ = vm.pause();
    let mut samples: Vec<String> = result
        .mismatches
        .iter()
        .take(8)
        .map(|m| {
            format!(
                "vcpu {} request {} {}: recorded {:#x}, replayed {:#x}",
                m.vcpu, m.request, m.access, m.expected, m.actual
            )
        })
        .collect();
    if let Ok(s) = tally.samples.lock() {
        samples.extend(s.iter().cloned());
    }
    for f in result.faults.iter().take(8) {
        samples.push(format!(
            "fault: vcpu {} request {} {}: {:?}",
            f.vcpu, f.request, f.access, f.kind
        ));
    }
    Ok(ReplayReport {
        records: tw.records,
        replayed: tw.records - tw.skipped,
        skipped: tw.skipped,
        issued: result.issued,
        completed: result.completed,
        checked_reads: tw.checked_reads,
        read_mismatches: result.mismatches.len() as u64,
        write_mismatches: tally.write_mismatches.load(Ordering::Relaxed),
        unexpected: tally.unexpected.load(Ordering::Relaxed),
        faults: result.faults.len() as u64,
        paced: options.pace,
        phases: tw.phases,
        devices,
        elapsed_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        samples,
    })
}
