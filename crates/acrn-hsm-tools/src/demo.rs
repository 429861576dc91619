//! `acrn-hsm demo`: a User VM on the emulator served by the native ioreq client, with a guest that
//! checks every value it reads back.
//!
//! Devices:
//!
//! * a 16550 UART at port 0x3f8 ([`UART_PORT`]): vCPU 0 programs it (DLAB, divisor, 8N1) and
//!   prints a banner through THR, polling LSR before every byte;
//! * a PCI function at 00:03.0 ([`PCI_BDF`], vendor 0x8086, device 0x1234) probed through
//!   0xCF8/0xCFC: ids, class, BAR0 sizing (write all ones, read the mask), BAR0 programmed to the
//!   register file's address, memory decoding enabled;
//! * a register file of 16 × 256 bytes at [`REGFILE_BASE`] (BAR0's range): each vCPU owns a window
//!   and checks every read against what it wrote;
//! * an exactly-once sequencer at ports [`SEQ_PORT`]`..+0x40`: vCPU *i* writes 1, 2, 3... to its
//!   own port and reads the last value back; the device counts every value that is not the next
//!   one (a duplicated or lost request) — the device-side half of the accounting;
//! * unclaimed PIO and MMIO addresses (reads must be all ones).
//!
//! Callers can add their own devices ([`ExtraDevice`]) with the guest accesses that exercise them.
//! Requests run in rounds; [`DemoProgress`] snapshots are reported between and during rounds.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use acrn_hsm::Errno;
use acrn_hsm::GUEST_FLAG_IO_COMPLETION_POLLING;
use acrn_hsm::VmConfig;
use acrn_hsm::client::{
    AddressSpace, Bdf, BusError, ClientConfig, ClientStats, Dispatcher, IoDevice, IoreqClient,
    PollConfig, RunExit, WakeMode,
};
use acrn_hsm::devices::{Bar, PciFunction, RegisterFile, Uart16550, UartOutput};
use acrn_hsm::trace::{RecorderError, TraceRecorder, TraceSetup, TraceSummary};
use acrn_hsm_emulator::Emulator;
use acrn_hsm_emulator::RunResult;
use acrn_hsm_emulator::workload::{Access, Op, SplitMix64, Workload};

/// The UART's base port.
pub const UART_PORT: u16 = 0x3f8;
/// The PCI function's address.
pub const PCI_BDF: Bdf = Bdf::new(0, 3, 0);
/// The PCI function's vendor id.
pub const PCI_VENDOR: u16 = 0x8086;
/// The PCI function's device id.
pub const PCI_DEVICE: u16 = 0x1234;
/// The register file (and BAR0) address.
pub const REGFILE_BASE: u64 = 0xfebf_0000;
/// The register file's size (BAR0's size): 16 windows of 256 bytes.
pub const REGFILE_LEN: u64 = 0x1000;
/// The exactly-once sequencer's first port (4 bytes per vCPU).
pub const SEQ_PORT: u16 = 0x600;
/// An unclaimed port the guest reads.
pub const UNCLAIMED_PORT: u16 = 0x2f0;
/// An unclaimed MMIO address the guest reads.
pub const UNCLAIMED_MMIO: u64 = 0xd000_0000;
/// The banner vCPU 0 prints.
pub const BANNER: &str = "acrn-hsm demo: hello from the guest, through a native 16550 UART\r\n";

/// How requests complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DemoMode {
    /// A notification VM (the vCPU sleeps until NOTIFY) served by a blocking (ATTACH) client.
    Notify,
    /// A polling VM (`GUEST_FLAG_IO_COMPLETION_POLLING`, the vCPU spins) served by a busy-poll
    /// client.
    Poll,
}

impl std::str::FromStr for DemoMode {
    type Err = String;
    fn from_str(s: &str) -> Result<DemoMode, String> {
        match s {
            "notify" => Ok(DemoMode::Notify),
            "poll" => Ok(DemoMode::Poll),
            _ => Err(format!("mode {s:?}: expected \"notify\" or \"poll\"")),
        }
    }
}

impl fmt::Display for DemoMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DemoMode::Notify => "notify",
            DemoMode::Poll => "poll",
        })
    }
}

/// The demo's parameters.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// vCPUs, 1 to 16.
    pub vcpus: u16,
    /// Requests each vCPU issues in the random phase (a PCI access counts two: 0xCF8 + 0xCFC).
    pub requests_per_vcpu: u64,
    /// Stop after this long even if requests remain (the round in progress finishes).
    pub seconds: Option<f64>,
    /// Completion and wake mode.
    pub mode: DemoMode,
    /// Overrides the client's wake mode implied by `mode`.
    pub wake: Option<WakeMode>,
    /// The workload's seed.
    pub seed: u64,
    /// Interval between progress snapshots.
    pub progress_interval: Duration,
    /// Requests per vCPU per round (progress and `seconds` are checked between rounds too).
    pub round_requests: u64,
    /// Records every request into a trace file there ([`acrn_hsm::trace`]).
    pub trace: Option<std::path::PathBuf>,
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig {
            vcpus: 4,
            requests_per_vcpu: 10_000,
            seconds: None,
            mode: DemoMode::Notify,
            wake: None,
            seed: 1,
            progress_interval: Duration::from_millis(200),
            round_requests: 20_000,
            trace: None,
        }
    }
}

/// A device the caller adds to the demo VM, with the guest accesses that exercise it (executed
/// by every vCPU at the start of every round; reads may carry an `expect`).
pub struct ExtraDevice {
    /// PIO or MMIO.
    pub space: AddressSpace,
    /// First address.
    pub base: u64,
    /// Length.
    pub len: u64,
    /// The device.
    pub device: Box<dyn IoDevice>,
    /// Accesses each vCPU makes per round.
    pub ops: Vec<Op>,
}

impl fmt::Debug for ExtraDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExtraDevice")
            .field("space", &self.space)
            .field("base", &self.base)
            .field("len", &self.len)
            .field("device", &self.device.name())
            .field("ops", &self.ops.len())
            .finish()
    }
}

/// One device's counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceProgress {
    /// Device name.
    pub name: String,
    /// Reads served.
    pub reads: u64,
    /// Writes served.
    pub writes: u64,
}

/// A progress snapshot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DemoProgress {
    /// Since the start.
    pub elapsed_ms: u64,
    /// Requests the client completed so far (0xCF8 accesses, completed in the kernel, excluded).
    pub handled: u64,
    /// Requests the client will have completed when every planned request ran.
    pub planned: u64,
    /// Per device.
    pub devices: Vec<DeviceProgress>,
    /// UART output since the previous snapshot.
    pub uart_new: String,
}

/// Latency percentiles of completed requests (guest round trip), in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Maximum.
    pub max: u64,
}

/// The result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DemoSummary {
    /// vCPUs.
    pub vcpus: u16,
    /// Mode.
    pub mode: DemoMode,
    /// Requests the guest placed in a slot.
    pub issued: u64,
    /// Requests completed with post-work.
    pub completed: u64,
    /// Reads whose value differed from the expected one.
    pub mismatches: u64,
    /// Requests issued and never completed, plus sequence numbers the sequencer never saw.
    pub lost: u64,
    /// Requests a device saw more than once (sequence numbers repeated).
    pub duplicated: u64,
    /// Guest faults (#GP, stray wake-ups) plus client faults.
    pub faults: u64,
    /// Wall time of the run, ms.
    pub elapsed_ms: u64,
    /// Completed requests per second.
    pub rate: f64,
    /// Round-trip latency percentiles.
    pub latency_ns: Latency,
    /// What the guest printed.
    pub uart_output: String,
    /// Per device.
    pub devices: Vec<DeviceProgress>,
    /// The client's counters.
    pub client: ClientStats,
    /// The first few mismatches and faults, for diagnosis.
    pub samples: Vec<String>,
    /// What the trace holds, when one was recorded (`records` = `issued`: the requests the HSM
    /// completed in the kernel are records of the device "hsm (in kernel)").
    pub trace: Option<TraceSummary>,
}

impl DemoSummary {
    /// Everything completed exactly once with the expected value.
    pub fn is_clean(&self) -> bool {
        self.issued == self.completed
            && self.mismatches == 0
            && self.lost == 0
            && self.duplicated == 0
            && self.faults == 0
    }
}

/// A demo failure (not a guest-visible error: those are counted in the summary).
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A bad configuration.
    #[error("demo configuration: {0}")]
    Config(String),
    /// An ioctl failed.
    #[error(transparent)]
    Hsm(#[from] acrn_hsm::Error),
    /// A device could not be registered.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// The guest could not be started.
    #[error("guest: {0}")]
    Guest(Errno),
    /// The client stopped with an error or panicked.
    #[error("client: {0}")]
    Client(String),
    /// The trace could not be written.
    #[error(transparent)]
    Trace(#[from] RecorderError),
}

/// The device-side exactly-once check: vCPU *i* writes 1, 2, 3... to port `SEQ_PORT + 4i`;
/// anything else than the next number is a duplicate (not above the last) or a gap (above).
#[derive(Debug)]
struct Sequencer {
    last: Vec<u32>,
    stats: Arc<SeqStats>,
}

#[derive(Debug, Default)]
struct SeqStats {
    duplicated: AtomicU64,
    lost: AtomicU64,
    last: Mutex<Vec<u32>>,
}

impl IoDevice for Sequencer {
    fn name(&self) -> &str {
        "sequencer"
    }
    fn read(&mut self, offset: u64, _size: u8) -> u64 {
        let i = (offset / 4) as usize;
        self.last.get(i).copied().map_or(u64::MAX, u64::from)
    }
    fn write(&mut self, offset: u64, _size: u8, value: u64) {
        let i = (offset / 4) as usize;
        let Some(last) = self.last.get_mut(i) else {
            return;
        };
        let v = value as u32;
        if v <= *last {
            self.stats.duplicated.fetch_add(1, Ordering::Relaxed);
        } else {
            if v > *last + 1 {
                self.stats
                    .lost
                    .fetch_add(u64::from(v - *last - 1), Ordering::Relaxed);
            }
            *last = v;
        }
        if let Ok(mut l) = self.stats.last.lock() {
            if let Some(x) = l.get_mut(i) {
                *x = *last;
            }
        }
    }
}

fn mask(size: u8) -> u64 {
    acrn_hsm::client::ones(u64::from(size))
}

fn pci(reg: u16, size: u8, access: Access) -> Op {
    Op::pci(PCI_BDF.bus, PCI_BDF.dev, PCI_BDF.func, reg, size, access)
}

/// vCPU 0's boot: program the UART and print the banner (LSR polled before each byte), then
/// probe the PCI function and map BAR0 at the register file.
fn boot_ops() -> Vec<Op> {
    let lsr_idle = u64::from(acrn_hsm::devices::LSR_THRE | acrn_hsm::devices::LSR_TEMT);
    let mut ops = vec![
        Op::pio(UART_PORT + 1, 1, Access::Write(0)),
        Op::pio(UART_PORT + 3, 1, Access::Write(0x83)),
        Op::pio(UART_PORT, 1, Access::Write(1)),
        Op::pio(UART_PORT + 1, 1, Access::Write(0)),
        Op::pio(UART_PORT, 1, Access::expect(1)),
        Op::pio(UART_PORT + 3, 1, Access::Write(0x03)),
        Op::pio(UART_PORT + 3, 1, Access::expect(0x03)),
        Op::pio(UART_PORT + 2, 1, Access::Write(0x07)),
        Op::pio(UART_PORT + 4, 1, Access::Write(0x03)),
        Op::pio(UART_PORT + 7, 1, Access::Write(0x5a)),
        Op::pio(UART_PORT + 7, 1, Access::expect(0x5a)),
    ];
    for b in BANNER.bytes() {
        ops.push(Op::pio(UART_PORT + 5, 1, Access::expect(lsr_idle)));
        ops.push(Op::pio(UART_PORT, 1, Access::Write(u64::from(b))));
    }
    let ids = u64::from(PCI_VENDOR) | (u64::from(PCI_DEVICE) << 16);
    ops.extend([
        pci(0, 4, Access::expect(ids)),
        pci(0, 2, Access::expect(u64::from(PCI_VENDOR))),
        pci(2, 2, Access::expect(u64::from(PCI_DEVICE))),
        pci(0x08, 4, Access::expect(0x0580_0001)),
        pci(0x0e, 1, Access::expect(0)),
        pci(0x10, 4, Access::Write(0xffff_ffff)),
        pci(0x10, 4, Access::expect(!(REGFILE_LEN - 1) & 0xffff_ffff)),
        pci(0x10, 4, Access::Write(REGFILE_BASE)),
        pci(0x10, 4, Access::expect(REGFILE_BASE)),
        pci(0x14, 4, Access::Write(0xffff_ffff)),
        pci(0x14, 4, Access::expect(0)),
        pci(0x04, 2, Access::Write(0x0006)),
        pci(0x04, 2, Access::expect(0x0006)),
    ]);
    ops
}

/// Per-vCPU generator state (persists across rounds so expectations stay right).
struct VcpuGen {
    vcpu: u16,
    rng: SplitMix64,
    shadow: [u8; 256],
    seq: u32,
}

impl VcpuGen {
    fn new(seed: u64, vcpu: u16) -> VcpuGen {
        VcpuGen {
            vcpu,
            rng: SplitMix64(seed ^ (u64::from(vcpu) + 1).wrapping_mul(0x2545_f491_4f6c_dd1d)),
            shadow: [0; 256],
            seq: 0,
        }
    }

    /// About `requests` requests; returns (ops, requests, 0xCF8 writes among them).
    fn round(&mut self, requests: u64) -> (Vec<Op>, u64, u64) {
        let mut ops = Vec::with_capacity(requests as usize);
        let (mut n, mut cf8) = (0u64, 0u64);
        let win = REGFILE_BASE + u64::from(self.vcpu) * 0x100;
        let seq_port = SEQ_PORT + 4 * self.vcpu;
        let lsr_idle = u64::from(acrn_hsm::devices::LSR_THRE | acrn_hsm::devices::LSR_TEMT);
        while n < requests {
            let pick = self.rng.below(100);
            match pick {
                0..=44 => {
                    let size = [1u8, 2, 4, 8][self.rng.below(4) as usize];
                    let off = self.rng.below(256 / u64::from(size)) * u64::from(size);
                    let o = off as usize;
                    let s = usize::from(size);
                    if self.rng.below(2) == 0 {
                        let v = self.rng.next() & mask(size);
                        self.shadow[o..o + s].copy_from_slice(&v.to_le_bytes()[..s]);
                        ops.push(Op::mmio(win + off, size, Access::Write(v)));
                    } else {
                        let mut b = [0u8; 8];
                        b[..s].copy_from_slice(&self.shadow[o..o + s]);
                        ops.push(Op::mmio(
                            win + off,
                            size,
                            Access::expect(u64::from_le_bytes(b)),
                        ));
                    }
                    n += 1;
                }
                45..=69 => {
                    if self.rng.below(3) == 0 {
                        ops.push(Op::pio(seq_port, 4, Access::expect(u64::from(self.seq))));
                    } else {
                        self.seq += 1;
                        ops.push(Op::pio(seq_port, 4, Access::Write(u64::from(self.seq))));
                    }
                    n += 1;
                }
                70..=79 => {
                    ops.push(Op::pio(UART_PORT + 5, 1, Access::expect(lsr_idle)));
                    n += 1;
                }
                80..=91 => {
                    // Every vCPU uses the same CONFIG_ADDRESS (reg 0..3 of 00:03.0), so the
                    // shared 0xCF8 latch cannot be raced into another register.
                    let ids = u64::from(PCI_VENDOR) | (u64::from(PCI_DEVICE) << 16);
                    let (reg, size) =
                        [(0u16, 4u8), (0, 2), (2, 2), (1, 1), (3, 1)][self.rng.below(5) as usize];
                    let v = (ids >> (8 * reg)) & mask(size);
                    ops.push(pci(reg, size, Access::expect(v)));
                    n += 2;
                    cf8 += 1;
                }
                92..=95 => {
                    let size = [1u8, 2, 4][self.rng.below(3) as usize];
                    ops.push(Op::pio(UNCLAIMED_PORT, size, Access::expect(mask(size))));
                    n += 1;
                }
                _ => {
                    let size = [1u8, 2, 4, 8][self.rng.below(4) as usize];
                    ops.push(Op::mmio(UNCLAIMED_MMIO, size, Access::expect(mask(size))));
                    n += 1;
                }
            }
        }
        (ops, n, cf8)
    }
}

fn ops_requests(ops: &[Op]) -> (u64, u64) {
    let mut n = 0;
    let mut cf8 = 0;
    for op in ops {
        match op {
            Op::Pci { .. } => {
                n += 2;
                cf8 += 1;
            }
            Op::Repeat { count, ops } => {
                let (a, b) = ops_requests(ops);
                n += a * count;
                cf8 += b * count;
            }
            Op::Delay { .. } | Op::Barrier | Op::Ram { .. } | Op::WaitIrq { .. } => {}
            _ => n += 1,
        }
    }
    (n, cf8)
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The demo's devices (UART, register file, PCI function, sequencer), as [`run`] registers them:
/// what `acrn-hsm trace replay` serves a demo trace with.
pub fn devices(vcpus: u16) -> Result<Dispatcher, DemoError> {
    Ok(demo_devices(vcpus)?.0)
}

fn demo_devices(vcpus: u16) -> Result<(Dispatcher, UartOutput, Arc<SeqStats>), DemoError> {
    let mut d = Dispatcher::new();
    let uart = Uart16550::new();
    let uart_out: UartOutput = uart.output();
    d.add_pio(UART_PORT, 8, Box::new(uart))?;
    d.add_mmio(
        REGFILE_BASE,
        REGFILE_LEN,
        Box::new(RegisterFile::new(REGFILE_LEN as usize)),
    )?;
    let function = PciFunction::new(PCI_VENDOR, PCI_DEVICE)
        .with_name("pci-00:03.0")
        .with_class(0x05, 0x80, 0x00, 0x01)
        .with_interrupt_pin(1)
        .with_bar(
            0,
            Bar::Mem32 {
                size: REGFILE_LEN as u32,
                prefetchable: false,
            },
        )
        .map_err(|e| DemoError::Config(e.to_string()))?;
    d.add_pci(PCI_BDF, Box::new(function))?;
    let seq_stats = Arc::new(SeqStats {
        last: Mutex::new(vec![0; usize::from(vcpus)]),
        ..Default::default()
    });
    d.add_pio(
        SEQ_PORT,
        0x40,
        Box::new(Sequencer {
            last: vec![0; 16],
            stats: seq_stats.clone(),
        }),
    )?;
    Ok((d, uart_out, seq_stats))
}

/// Runs the demo with the built-in devices only.
pub fn run(
    config: DemoConfig,
    progress: impl FnMut(&DemoProgress),
) -> Result<DemoSummary, DemoError> {
    run_with(config, Vec::new(), progress)
}

/// Runs the demo with `extra` devices added to the VM.
pub fn run_with(
    config: DemoConfig,
    extra: Vec<ExtraDevice>,
    mut progress: impl FnMut(&DemoProgress),
) -> Result<DemoSummary, DemoError> {
    if !(1..=16).contains(&config.vcpus) {
        return Err(DemoError::Config(format!(
            "{} vCPUs: expected 1 to 16",
            config.vcpus
        )));
    }
    if config.round_requests == 0 {
        return Err(DemoError::Config("round_requests must be above 0".into()));
    }
    let emu = Emulator::new();
    let hsm = emu.open_hsm();
    let polling = config.mode == DemoMode::Poll;
    let vm = Arc::new(hsm.create_vm(&VmConfig {
        vcpu_num: config.vcpus,
        vm_flag: if polling {
            GUEST_FLAG_IO_COMPLETION_POLLING
        } else {
            0
        },
        ..Default::default()
    })?);
    if vm.vcpu_num() < config.vcpus {
        return Err(DemoError::Config(format!(
            "the hypervisor created {} vCPUs, {} asked",
            vm.vcpu_num(),
            config.vcpus
        )));
    }

    let (mut d, uart_out, seq_stats) = demo_devices(config.vcpus)?;
    let mut extra_ops = Vec::new();
    for x in extra {
        d.add_range(x.space, x.base, x.len, x.device)?;
        extra_ops.extend(x.ops);
    }
    let client_faults = Arc::new(AtomicU64::new(0));
    let samples = Arc::new(Mutex::new(Vec::<String>::new()));
    {
        let (f, s) = (client_faults.clone(), samples.clone());
        d.set_fault_hook(move |r| {
            f.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut s) = s.lock() {
                if s.len() < 8 {
                    s.push(format!("client fault: {} ({:?})", r.reason, r.request));
                }
            }
        });
    }

    let recorder = match &config.trace {
        Some(path) => {
            let mut setup = TraceSetup::new(
                &format!("acrn-hsm demo (vmid {})", vm.vmid()),
                vm.vmid(),
                config.vcpus,
                polling,
                d.trace_devices(),
            );
            setup.emulated = true;
            Some(TraceRecorder::create(path, &setup)?)
        }
        None => None,
    };
    let wake = config.wake.unwrap_or(match config.mode {
        DemoMode::Notify => WakeMode::Blocking,
        DemoMode::Poll => WakeMode::Poll(PollConfig::default()),
    });
    let mut client = IoreqClient::new(
        vm.clone(),
        d,
        ClientConfig {
            mode: wake,
            recorder: recorder.as_ref().map(TraceRecorder::client),
            ..Default::default()
        },
    )?;
    let handle = client.handle();
    let client_thread = std::thread::Builder::new()
        .name("ioreq-client".into())
        .spawn(move || client.run())
        .map_err(|e| DemoError::Client(e.to_string()))?;

    let guard = StopOnDrop(handle.clone());
    vm.start()?;
    let mut guest = emu.guest(vm.vmid()).map_err(DemoError::Guest)?;
    if let Some(r) = &recorder {
        guest = guest.with_recorder(r.guest());
    }
    let t0 = Instant::now();
    let deadline = config
        .seconds
        .map(|s| t0 + Duration::from_secs_f64(s.max(0.0)));

    let boot = boot_ops();
    let (boot_n, boot_cf8) = ops_requests(&boot);
    let (extra_n, extra_cf8) = ops_requests(&extra_ops);
    let rounds_total = config.requests_per_vcpu.div_ceil(config.round_requests);
    let vcpus = u64::from(config.vcpus);
    // Planned client-visible requests (approximate for the random part: rounds may overshoot
    // by one PCI access).
    // Each round's estimate is replaced by its exact count once its ops exist.
    let round_estimate = |n: u64| vcpus * n * 11 / 12 + vcpus * (extra_n - extra_cf8);
    let planned = std::cell::Cell::new(
        (boot_n - boot_cf8)
            + vcpus * config.requests_per_vcpu * 11 / 12
            + vcpus * rounds_total * (extra_n - extra_cf8),
    );

    let mut total = RunResult::default();
    let mut last_report = Instant::now();
    let mut uart_seen = 0usize;
    let mut report = |force: bool, progress: &mut dyn FnMut(&DemoProgress)| {
        if !force && last_report.elapsed() < config.progress_interval {
            return;
        }
        last_report = Instant::now();
        let text = uart_out.bytes();
        let new = String::from_utf8_lossy(text.get(uart_seen..).unwrap_or(&[])).into_owned();
        uart_seen = text.len();
        progress(&DemoProgress {
            elapsed_ms: t0.elapsed().as_millis() as u64,
            handled: handle.stats().handled(),
            planned: planned.get(),
            devices: device_progress(&handle),
            uart_new: new,
        });
    };

    let mut run_phase = |w: &Workload,
                         total: &mut RunResult,
                         progress: &mut dyn FnMut(&DemoProgress)|
     -> Result<(), DemoError> {
        let r = guest.spawn(w).map_err(DemoError::Guest)?;
        while !r.is_finished() {
            std::thread::sleep(config.progress_interval.min(Duration::from_millis(20)));
            report(false, progress);
        }
        let res = r.join();
        total.issued += res.issued;
        total.completed += res.completed;
        total.mismatches.extend(res.mismatches);
        total.faults.extend(res.faults);
        total.latencies_ns.extend(res.latencies_ns);
        report(true, progress);
        Ok(())
    };

    // Boot on vCPU 0 alone (the PCI probe uses several CONFIG_ADDRESS values).
    run_phase(&Workload { vcpus: vec![boot] }, &mut total, &mut progress)?;

    let mut gens: Vec<VcpuGen> = (0..config.vcpus)
        .map(|v| VcpuGen::new(config.seed, v))
        .collect();
    let mut remaining = config.requests_per_vcpu;
    while remaining > 0 {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let n = remaining.min(config.round_requests);
        remaining -= n;
        let lists = gens
            .iter_mut()
            .map(|g| {
                let mut ops = extra_ops.clone();
                ops.extend(g.round(n).0);
                ops
            })
            .collect::<Vec<_>>();
        let exact: u64 = lists
            .iter()
            .map(|ops| {
                let (n, cf8) = ops_requests(ops);
                n - cf8
            })
            .sum();
        planned.set(planned.get().saturating_sub(round_estimate(n)) + exact);
        run_phase(&Workload { vcpus: lists }, &mut total, &mut progress)?;
        if total.completed != total.issued || !total.faults.is_empty() {
            break;
        }
    }
    let elapsed = t0.elapsed();

    // Device-side exactly-once: every sequence number arrived once, and the last one is the
    // guest's last.
    let mut lost_seq = seq_stats.lost.load(Ordering::Relaxed);
    if let Ok(last) = seq_stats.last.lock() {
        for (g, l) in gens.iter().zip(last.iter()) {
            lost_seq += u64::from(g.seq.saturating_sub(*l));
        }
    }
    let duplicated = seq_stats.duplicated.load(Ordering::Relaxed);

    drop(guard);
    let exit = client_thread
        .join()
        .map_err(|_| DemoError::Client("the client thread panicked".into()))?;
    match exit {
        Ok(RunExit::Stopped) => {}
        Ok(other) => return Err(DemoError::Client(format!("client exited: {other:?}"))),
        Err(e) => return Err(DemoError::Client(e.to_string())),
    }
    // Leave the VM as the DM would at exit (paused); errors here do not change the result.
    let _ = vm.pause();
    // The client (and its recorder) is gone with its thread; the guest's recorder goes now.
    drop(guest);
    let trace = recorder.map(TraceRecorder::finish).transpose()?;

    let mut lat = std::mem::take(&mut total.latencies_ns);
    lat.sort_unstable();
    let latency_ns = Latency {
        p50: percentile(&lat, 0.50),
        p99: percentile(&lat, 0.99),
        p999: percentile(&lat, 0.999),
        max: lat.last().copied().unwrap_or(0),
    };
    let mut samples = samples.lock().map(|s| s.clone()).unwrap_or_default();
    for m in total.mismatches.iter().take(8) {
        samples.push(format!(
            "mismatch: vcpu {} request {} {}: expected {:#x}, got {:#x}",
            m.vcpu, m.request, m.access, m.expected, m.actual
        ));
    }
    for f in total.faults.iter().take(8) {
        samples.push(format!(
            "fault: vcpu {} request {} {}: {:?} (state {})",
            f.vcpu, f.request, f.access, f.kind, f.state
        ));
    }
    let client_stats = handle.stats();
    let secs = elapsed.as_secs_f64();
    Ok(DemoSummary {
        vcpus: config.vcpus,
        mode: config.mode,
        issued: total.issued,
        completed: total.completed,
        mismatches: total.mismatches.len() as u64,
        lost: total.issued.saturating_sub(total.completed) + lost_seq,
        duplicated,
        faults: total.faults.len() as u64 + client_faults.load(Ordering::Relaxed),
        elapsed_ms: elapsed.as_millis() as u64,
        rate: if secs > 0.0 {
            total.completed as f64 / secs
        } else {
            0.0
        },
        latency_ns,
        uart_output: uart_out.text(),
        devices: device_progress(&handle),
        client: client_stats,
        samples,
        trace,
    })
}

fn device_progress(h: &acrn_hsm::client::ClientHandle) -> Vec<DeviceProgress> {
    h.device_counters()
        .iter()
        .map(|c| DeviceProgress {
            name: c.name().to_string(),
            reads: c.reads(),
            writes: c.writes(),
        })
        .collect()
}

/// Stops the client however `run_with` returns.
struct StopOnDrop(acrn_hsm::client::ClientHandle);
impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_demo_is_clean_in_both_modes() {
        for mode in [DemoMode::Notify, DemoMode::Poll] {
            let mut snapshots = 0;
            let s = run(
                DemoConfig {
                    vcpus: 4,
                    requests_per_vcpu: 2_000,
                    mode,
                    round_requests: 700,
                    progress_interval: Duration::from_millis(1),
                    ..Default::default()
                },
                |_| snapshots += 1,
            )
            .expect("demo");
            assert!(s.is_clean(), "{mode}: {s:#?}");
            assert!(s.uart_output.starts_with(BANNER), "{:?}", s.uart_output);
            assert!(s.issued >= 4 * 2_000);
            assert!(snapshots >= 4, "one per phase at least");
            let seq = s
                .devices
                .iter()
                .find(|d| d.name == "sequencer")
                .expect("seq");
            assert!(seq.writes > 0 && seq.reads > 0);
            assert!(s.latency_ns.p50 > 0 && s.latency_ns.p50 <= s.latency_ns.p99);
        }
    }

    #[test]
    fn bad_config_is_refused() {
        let e = run(
            DemoConfig {
                vcpus: 17,
                ..Default::default()
            },
            |_| {},
        )
        .expect_err("17");
        assert!(e.to_string().contains("1 to 16"), "{e}");
    }
}
