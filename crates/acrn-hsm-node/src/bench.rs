//! `benchNative`: the native path of `acrn-hsm bench` ([`acrn_hsm_tools::bench`]) on the libuv
//! pool; only the guest's latencies cross to JavaScript, once per case, as a `Float64Array`.

use acrn_hsm_tools::bench::{BenchError, Measured, NativeCase, run_native_case};
use acrn_hsm_tools::guest_pio::GuestWait;
use napi::bindgen_prelude::{AsyncTask, Buffer, Float64Array};
use napi::{Env, Task};
use napi_derive::napi;

use crate::errors::{Failure, Result, coded_error, errno_error};

/// One native benchmark case.
#[napi(object)]
pub struct NativeBenchOptions {
    /// vCPUs (1 to 16).
    pub vcpus: u32,
    /// `"poll"` (polling VM, busy-poll client) or `"notify"` (notification VM, ATTACH client).
    pub mode: String,
    /// Rounds of 3 requests per vCPU in the measured part.
    pub rounds: u32,
    /// Rounds per vCPU of the discarded warm-up run (0: none).
    pub warmup_rounds: u32,
    /// Rounds per vCPU per guest run: the measured part is split into runs of this many rounds,
    /// and stops early once `max_seconds` have passed (0: one run of `rounds`).
    pub chunk_rounds: u32,
    /// Upper bound on the measured part's wall time, in seconds (0: none).
    pub max_seconds: f64,
    /// Poll mode: `true` keeps the library's default back-off (`PollConfig::default`: spin,
    /// yield, then sleep when idle); `false`/absent spins without ever sleeping, as the C
    /// reference client's busy loop does (the same policy, so the two compare overheads).
    pub poll_backoff: Option<bool>,
}

/// The result of a native case.
#[napi(object)]
pub struct NativeBenchResult {
    /// Requests issued by the measured runs.
    pub issued: f64,
    /// Requests completed.
    pub completed: f64,
    /// Reads that returned another value than expected, plus guest faults.
    pub errors: f64,
    /// Wall time of the measured guest runs, seconds.
    pub seconds: f64,
    /// PENDING to FREE per completed request, ns.
    pub latencies_ns: Float64Array,
    /// NOTIFYs the client issued for the measured runs (should equal `completed`).
    pub notifies: f64,
}

/// A native benchmark case on the libuv pool.
pub struct NativeBenchTask {
    case: NativeCase,
    failure: Failure,
}

impl Task for NativeBenchTask {
    type Output = Measured;
    type JsValue = NativeBenchResult;

    fn compute(&mut self) -> napi::Result<Measured> {
        let r = self.compute_coded();
        self.failure.keep(r)
    }

    fn reject(&mut self, env: Env, err: napi::Error) -> napi::Result<Self::JsValue> {
        self.failure.reject(&env, err)
    }

    fn resolve(&mut self, _env: Env, m: Measured) -> napi::Result<NativeBenchResult> {
        Ok(NativeBenchResult {
            issued: m.issued as f64,
            completed: m.completed as f64,
            errors: m.errors as f64,
            seconds: m.seconds,
            latencies_ns: Float64Array::new(m.latencies.iter().map(|&l| l as f64).collect()),
            notifies: m.notifies as f64,
        })
    }
}

impl NativeBenchTask {
    fn compute_coded(&mut self) -> Result<Measured> {
        run_native_case(&self.case).map_err(|e: BenchError| match e.errno {
            Some(errno) => errno_error(&e.what, errno),
            None => coded_error("ERR_BENCH", &e.what),
        })
    }
}

/// Runs one case of the native path (Rust client, native register file) on a fresh emulator;
/// resolves with the guest's latencies.
#[napi(ts_return_type = "Promise<NativeBenchResult>")]
pub fn bench_native(options: NativeBenchOptions) -> Result<AsyncTask<NativeBenchTask>> {
    let poll = match options.mode.as_str() {
        "poll" => true,
        "notify" => false,
        m => {
            return Err(coded_error(
                "ERR_INVALID_ARG",
                &format!("mode {m:?}: expected \"poll\" or \"notify\""),
            ));
        }
    };
    if !(1..=16).contains(&options.vcpus) {
        return Err(coded_error(
            "ERR_INVALID_ARG",
            &format!("{} vCPUs: expected 1 to 16", options.vcpus),
        ));
    }
    if options.rounds == 0 {
        return Err(coded_error("ERR_INVALID_ARG", "rounds must be at least 1"));
    }
    let case = NativeCase {
        vcpus: options.vcpus as u16,
        poll,
        rounds: options.rounds,
        warmup_rounds: options.warmup_rounds,
        chunk_rounds: options.chunk_rounds,
        max_seconds: options.max_seconds,
        poll_backoff: options.poll_backoff == Some(true),
    };
    Ok(AsyncTask::new(NativeBenchTask {
        case,
        failure: Failure::default(),
    }))
}

/// One run of the real-guest PIO benchmark on the KVM engine with a native device
/// (`acrn-hsm bench --guest`, [`acrn_hsm_tools::guest_pio::run_native`]).
#[napi(object)]
pub struct GuestPioOptions {
    /// `"poll"` or `"notify"`.
    pub mode: String,
    /// Measured (and empty) iterations, 1..8000.
    pub iterations: u32,
    /// Warm-up out/in pairs (at least 1).
    pub warmup: u32,
    /// Seconds before the run is abandoned (default 120).
    pub timeout: Option<f64>,
    /// Poll mode: a client that spins without ever yielding or sleeping (default: the library's
    /// back-off, as `acrn-hsm run` and a TypeScript client have).
    pub poll_spin: Option<bool>,
}

/// What [`bench_guest_pio`] returned.
#[napi(object)]
pub struct GuestPioResult {
    /// The guest's result dump (`iterations` u32 empty deltas, then the measured ones).
    pub dump: Buffer,
    /// Requests the test-port device served.
    pub served: f64,
    /// START_VM to the debug exit, ms.
    pub elapsed_ms: f64,
}

/// The run on the libuv pool.
pub struct GuestPioTask {
    args: (u16, u16, GuestWait, std::time::Duration),
    failure: Failure,
}

impl Task for GuestPioTask {
    type Output = acrn_hsm_tools::guest_pio::NativeRun;
    type JsValue = GuestPioResult;

    fn compute(&mut self) -> napi::Result<Self::Output> {
        let (n, w, wait, timeout) = self.args;
        let r = acrn_hsm_tools::guest_pio::run_native(n, w, wait, timeout)
            .map_err(|e| coded_error("ERR_RUN", &e));
        self.failure.keep(r)
    }

    fn reject(&mut self, env: Env, err: napi::Error) -> napi::Result<Self::JsValue> {
        self.failure.reject(&env, err)
    }

    fn resolve(&mut self, _env: Env, r: Self::Output) -> napi::Result<GuestPioResult> {
        Ok(GuestPioResult {
            dump: r.dump.into(),
            served: r.served as f64,
            elapsed_ms: r.elapsed.as_secs_f64() * 1e3,
        })
    }
}

fn guest_pio_sizes(iterations: u32, warmup: u32) -> Result<(u16, u16)> {
    let max = u32::from(acrn_hsm_tools::guest_pio::MAX_ITERATIONS);
    if !(1..=max).contains(&iterations) {
        return Err(coded_error(
            "ERR_OUT_OF_RANGE",
            &format!("iterations must be in 1..{max}"),
        ));
    }
    let w = u16::try_from(warmup)
        .ok()
        .filter(|w| *w >= 1)
        .ok_or_else(|| coded_error("ERR_OUT_OF_RANGE", "warmup must be in 1..65535"))?;
    Ok((iterations as u16, w))
}

/// Runs the real-guest PIO benchmark's guest once on the KVM engine, the test port served by a
/// native Rust device.
#[napi(ts_return_type = "Promise<GuestPioResult>")]
pub fn bench_guest_pio(options: GuestPioOptions) -> Result<AsyncTask<GuestPioTask>> {
    let (n, w) = guest_pio_sizes(options.iterations, options.warmup)?;
    let wait = match options.mode.as_str() {
        "poll" if options.poll_spin == Some(true) => GuestWait::PollSpin,
        "poll" => GuestWait::Poll,
        "notify" => GuestWait::Notify,
        m => {
            return Err(coded_error(
                "ERR_INVALID_ARG",
                &format!("mode must be 'poll' or 'notify', got '{m}'"),
            ));
        }
    };
    let t = options.timeout.unwrap_or(120.0);
    if !(t.is_finite() && t > 0.0) {
        return Err(coded_error("ERR_OUT_OF_RANGE", "timeout must be positive"));
    }
    Ok(AsyncTask::new(GuestPioTask {
        args: (n, w, wait, std::time::Duration::from_secs_f64(t)),
        failure: Failure::default(),
    }))
}

/// The real-guest PIO benchmark's guest: the 64 KiB flat firmware image every variant runs from
/// its reset vector (QEMU's `-bios`, benches/c/kvm_floor.c, the KVM engine with the image in RAM
/// at `imageGpa` and read-only at `romGpa`), and its ports.
#[napi(object)]
pub struct GuestPioGuest {
    /// The 64 KiB firmware image (reset vector → the code at F000:0000).
    pub image: Buffer,
    /// RAM the KVM-engine variants map at 0.
    pub ram_bytes: u32,
    /// Where the image is copied in RAM (0xF0000).
    pub image_gpa: u32,
    /// Where the image is mapped read-only (0xFFFF0000).
    pub rom_gpa: u32,
    /// The port the guest times.
    pub test_port: u32,
    /// The port the guest dumps its results to (a byte per write).
    pub result_port: u32,
    /// The isa-debug-exit port.
    pub exit_port: u32,
    /// The value written to it at the end.
    pub exit_value: u32,
}

/// The guest of the real-guest PIO benchmark for `iterations` and `warmup`.
#[napi]
pub fn guest_pio_guest(iterations: u32, warmup: u32) -> Result<GuestPioGuest> {
    use acrn_hsm_tools::guest_pio as g;
    let (n, w) = guest_pio_sizes(iterations, warmup)?;
    Ok(GuestPioGuest {
        image: g::bios_image(&g::guest_code(n, w)).into(),
        ram_bytes: g::RAM_BYTES as u32,
        image_gpa: g::IMAGE_GPA as u32,
        rom_gpa: g::ROM_GPA as u32,
        test_port: u32::from(g::TEST_PORT),
        result_port: u32::from(g::RESULT_PORT),
        exit_port: u32::from(g::EXIT_PORT),
        exit_value: u32::from(g::EXIT_VALUE),
    })
}

/// QEMU's arguments for the benchmark's image at `image`, results into `dump`.
#[napi]
pub fn guest_pio_qemu_args(image: String, dump: String) -> Vec<String> {
    acrn_hsm_tools::guest_pio::qemu_args(std::path::Path::new(&image), std::path::Path::new(&dump))
}

/// The host TSC's rate (Hz), measured against CLOCK_MONOTONIC over `ms` (default 50) ms.
#[napi]
pub fn tsc_hz(ms: Option<u32>) -> f64 {
    acrn_hsm_tools::guest_pio::tsc_hz(u64::from(ms.unwrap_or(50)))
}

/// The sizes of the virtio-blk benchmark's guest (`acrn-hsm bench --virtio`,
/// [`acrn_hsm_tools::virtio_blk_bench::BlkSizes`]); absent fields take the defaults.
#[napi(object)]
pub struct VirtioBlkSizes {
    /// Warm-up reads of `bigSectors` (default 8).
    pub warmup: Option<u32>,
    /// Throughput reads (default 480).
    pub big_reads: Option<u32>,
    /// Sectors per throughput read, 1..127 (default 64: 32 KiB).
    pub big_sectors: Option<u32>,
    /// Latency reads (default 1000).
    pub small_reads: Option<u32>,
    /// Sectors per latency read, 1..127 (default 8: 4 KiB).
    pub small_sectors: Option<u32>,
    /// First LBA read (default 2048).
    pub lba0: Option<u32>,
    /// End of the region read, exclusive: the disk's size in sectors (default 32768: 16 MiB).
    pub lba_end: Option<u32>,
}

fn blk_sizes(s: &VirtioBlkSizes) -> Result<acrn_hsm_tools::virtio_blk_bench::BlkSizes> {
    let d = acrn_hsm_tools::virtio_blk_bench::BlkSizes::default();
    let w16 = |what: &str, v: Option<u32>, dflt: u16| -> Result<u16> {
        match v {
            None => Ok(dflt),
            Some(v) => u16::try_from(v)
                .map_err(|_| coded_error("ERR_OUT_OF_RANGE", &format!("{what} {v}: too large"))),
        }
    };
    let sizes = acrn_hsm_tools::virtio_blk_bench::BlkSizes {
        warmup: w16("warmup", s.warmup, d.warmup)?,
        big_reads: w16("bigReads", s.big_reads, d.big_reads)?,
        big_sectors: w16("bigSectors", s.big_sectors, d.big_sectors)?,
        small_reads: w16("smallReads", s.small_reads, d.small_reads)?,
        small_sectors: w16("smallSectors", s.small_sectors, d.small_sectors)?,
        lba0: s.lba0.unwrap_or(d.lba0),
        lba_end: s.lba_end.unwrap_or(d.lba_end),
    };
    sizes
        .validate()
        .map_err(|e| coded_error("ERR_OUT_OF_RANGE", &e))?;
    Ok(sizes)
}

/// The TSC deltas of one run of the virtio-blk guest, per phase, in cycles.
#[napi(object)]
pub struct VirtioBlkDeltas {
    /// The warm-up reads.
    pub warmup: Vec<u32>,
    /// The throughput reads.
    pub big: Vec<u32>,
    /// The latency reads.
    pub small: Vec<u32>,
}

impl From<acrn_hsm_tools::virtio_blk_bench::BlkDeltas> for VirtioBlkDeltas {
    fn from(d: acrn_hsm_tools::virtio_blk_bench::BlkDeltas) -> Self {
        VirtioBlkDeltas {
            warmup: d.warmup,
            big: d.big,
            small: d.small,
        }
    }
}

/// Writes the virtio-blk benchmark's disk image (the timing boot sector, then a pattern) to
/// `path`: every variant boots the same file.
#[napi]
pub fn virtio_blk_write_image(path: String, sizes: VirtioBlkSizes) -> Result<()> {
    let s = blk_sizes(&sizes)?;
    acrn_hsm_tools::virtio_blk_bench::write_disk_image(std::path::Path::new(&path), &s)
        .map_err(|e| coded_error("ERR_IO", &e))
}

/// QEMU's arguments (after the program) for the virtio-blk benchmark's image, the debugcon
/// output into `dump`.
#[napi]
pub fn virtio_blk_qemu_args(image: String, dump: String) -> Vec<String> {
    acrn_hsm_tools::virtio_blk_bench::qemu_args(
        std::path::Path::new(&image),
        std::path::Path::new(&dump),
    )
}

/// The deltas in a debugcon output (after the guest's marker); `null` when missing or short.
#[napi]
pub fn virtio_blk_parse_dump(
    dump: Buffer,
    sizes: VirtioBlkSizes,
) -> Result<Option<VirtioBlkDeltas>> {
    let s = blk_sizes(&sizes)?;
    Ok(acrn_hsm_tools::virtio_blk_bench::parse_dump(&dump, &s).map(Into::into))
}

/// One run of the virtio-blk guest on the KVM engine with the native virtio-blk.
#[napi(object)]
pub struct VirtioBlkRunOptions {
    /// The image ([`virtio_blk_write_image`]).
    pub image: String,
    /// `"poll"` or `"notify"`.
    pub mode: String,
    /// The sizes the image was written with.
    pub sizes: VirtioBlkSizes,
    /// Seconds before the run is abandoned (default 300).
    pub timeout: Option<f64>,
    /// How queue notifications reach the device: `"kvm"` (default: IOEVENTFD, matched by KVM
    /// itself, no VM exit), `"hsm"` (IOEVENTFD through the HSM's in-kernel client, one exit
    /// each), `"off"` (an I/O request to the ioreq client each).
    pub ioeventfd: Option<String>,
}

/// What [`bench_virtio_blk`] returned.
#[napi(object)]
pub struct VirtioBlkRunResult {
    /// The guest's deltas.
    pub deltas: VirtioBlkDeltas,
    /// Descriptor chains the device completed.
    pub chains: f64,
    /// VM exits the KVM engine handled.
    pub exits: f64,
    /// Queue notifications the device served.
    pub notifies: f64,
    /// Worker wake-ups by a queue's ioeventfd (0 without `ioeventfd`).
    pub ioeventfd_wakeups: f64,
    /// START_VM to the debug exit, ms.
    pub elapsed_ms: f64,
}

/// The run on the libuv pool.
pub struct VirtioBlkTask {
    image: std::path::PathBuf,
    sizes: acrn_hsm_tools::virtio_blk_bench::BlkSizes,
    polling: bool,
    notify: acrn_hsm_tools::virtio_blk_bench::NotifyPath,
    timeout: std::time::Duration,
    failure: Failure,
}

impl Task for VirtioBlkTask {
    type Output = acrn_hsm_tools::virtio_blk_bench::NativeBlkRun;
    type JsValue = VirtioBlkRunResult;

    fn compute(&mut self) -> napi::Result<Self::Output> {
        let r = acrn_hsm_tools::virtio_blk_bench::run_native(
            &self.image,
            &self.sizes,
            self.polling,
            self.notify,
            self.timeout,
        )
        .map_err(|e| coded_error("ERR_RUN", &e));
        self.failure.keep(r)
    }

    fn reject(&mut self, env: Env, err: napi::Error) -> napi::Result<Self::JsValue> {
        self.failure.reject(&env, err)
    }

    fn resolve(&mut self, _env: Env, r: Self::Output) -> napi::Result<VirtioBlkRunResult> {
        Ok(VirtioBlkRunResult {
            deltas: r.deltas.into(),
            chains: r.chains as f64,
            exits: r.exits as f64,
            notifies: r.notifies as f64,
            ioeventfd_wakeups: r.ioeventfd_wakeups as f64,
            elapsed_ms: r.elapsed.as_secs_f64() * 1e3,
        })
    }
}

/// Boots the virtio-blk benchmark's image on the KVM engine (SeaBIOS, the `acrn-hsm run`
/// platform, the native virtio-blk read-only at 00:03.0) and returns the guest's deltas.
#[napi(ts_return_type = "Promise<VirtioBlkRunResult>")]
pub fn bench_virtio_blk(options: VirtioBlkRunOptions) -> Result<AsyncTask<VirtioBlkTask>> {
    let polling = match options.mode.as_str() {
        "poll" => true,
        "notify" => false,
        m => {
            return Err(coded_error(
                "ERR_INVALID_ARG",
                &format!("mode must be 'poll' or 'notify', got '{m}'"),
            ));
        }
    };
    use acrn_hsm_tools::virtio_blk_bench::NotifyPath;
    let notify = match options.ioeventfd.as_deref().unwrap_or("kvm") {
        "kvm" => NotifyPath::KvmIoeventfd,
        "hsm" => NotifyPath::Ioeventfd,
        "off" => NotifyPath::Ioreq,
        m => {
            return Err(coded_error(
                "ERR_INVALID_ARG",
                &format!("ioeventfd must be 'kvm', 'hsm' or 'off', got '{m}'"),
            ));
        }
    };
    let sizes = blk_sizes(&options.sizes)?;
    let t = options.timeout.unwrap_or(300.0);
    if !(t.is_finite() && t > 0.0) {
        return Err(coded_error("ERR_OUT_OF_RANGE", "timeout must be positive"));
    }
    Ok(AsyncTask::new(VirtioBlkTask {
        image: options.image.into(),
        sizes,
        polling,
        notify,
        timeout: std::time::Duration::from_secs_f64(t),
        failure: Failure::default(),
    }))
}
