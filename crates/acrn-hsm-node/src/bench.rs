//! The native path of `acrn-hsm bench`: the Rust ioreq client ([`acrn_hsm::client::IoreqClient`])
//! with native devices, against the emulator's guest, run entirely in Rust on the libuv pool. Only
//! the guest's latencies cross to JavaScript, once per case, as a `Float64Array`.
//!
//! The workload is the C reference client's (`benches/c/reference_client.c`), so that the two are
//! comparable request for request: per vCPU, `repeat k × [MMIO write of its 8-byte register,
//! MMIO read of it expecting the value, PIO read of a constant port]`.

use std::sync::Arc;
use std::time::Instant;

use acrn_hsm::client::{ClientConfig, Dispatcher, IoreqClient, PollConfig, WakeMode};
use acrn_hsm::devices::RegisterFile;
use acrn_hsm::{
    Access, Emulator, GUEST_FLAG_IO_COMPLETION_POLLING, Hsm, Op, RunResult, VmConfig, Workload,
};
use napi::bindgen_prelude::{AsyncTask, Float64Array};
use napi::{Env, Task};
use napi_derive::napi;

use crate::decode::coded_error;
use crate::hsm::hsm_error;

/// Base of the benchmark's register file (64 registers of 8 bytes), as in the C reference.
pub const BENCH_REGFILE_BASE: u64 = 0xfed0_0000;
/// The constant port.
pub const BENCH_CONST_PORT: u16 = 0x510;
/// What the constant port reads.
pub const BENCH_CONST_VALUE: u32 = 0x5a5a_1234;
/// vCPU `i` writes `BENCH_VALUE_BASE + i` to its register.
pub const BENCH_VALUE_BASE: u64 = 0x1122_3344_5566_7700;

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
    /// Poll mode: `true` keeps the library's default back-off ([`PollConfig::default`]: spin,
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

/// A native case's figures, before conversion to JavaScript.
#[derive(Debug)]
pub struct Measured {
    issued: u64,
    completed: u64,
    errors: u64,
    seconds: f64,
    latencies: Vec<u64>,
    notifies: u64,
}

/// The benchmark's guest workload: `rounds` rounds per vCPU.
pub fn bench_workload(vcpus: u16, rounds: u64) -> Workload {
    let vcpus = (0..vcpus)
        .map(|v| {
            let reg = BENCH_REGFILE_BASE + 8 * u64::from(v);
            let val = BENCH_VALUE_BASE + u64::from(v);
            vec![Op::Repeat {
                count: rounds,
                ops: vec![
                    Op::Mmio {
                        address: reg,
                        size: 8,
                        access: Access::Write(val),
                    },
                    Op::Mmio {
                        address: reg,
                        size: 8,
                        access: Access::Read { expect: Some(val) },
                    },
                    Op::Pio {
                        port: BENCH_CONST_PORT,
                        size: 4,
                        access: Access::Read {
                            expect: Some(u64::from(BENCH_CONST_VALUE)),
                        },
                    },
                ],
            }]
        })
        .collect();
    Workload { vcpus }
}

fn run_case(o: &NativeBenchOptions, poll: bool) -> napi::Result<Measured> {
    let vcpus = u16::try_from(o.vcpus).unwrap_or(u16::MAX);
    let emu = Emulator::new();
    let hsm = Hsm::emulated(&emu);
    let vm = Arc::new(
        hsm.create_vm(&VmConfig {
            vcpu_num: vcpus,
            vm_flag: if poll {
                GUEST_FLAG_IO_COMPLETION_POLLING
            } else {
                0
            },
            ..Default::default()
        })
        .map_err(hsm_error)?,
    );
    let bus_err = |e: acrn_hsm::client::BusError| coded_error("ERR_BENCH", &e.to_string());
    let mut d = Dispatcher::new();
    d.add_mmio(
        BENCH_REGFILE_BASE,
        64 * 8,
        Box::new(RegisterFile::new(64 * 8)),
    )
    .map_err(bus_err)?;
    d.add_pio(
        BENCH_CONST_PORT,
        4,
        Box::new(RegisterFile::with_contents(
            BENCH_CONST_VALUE.to_le_bytes().to_vec(),
        )),
    )
    .map_err(bus_err)?;
    let mode = if poll && o.poll_backoff == Some(true) {
        WakeMode::poll()
    } else if poll {
        WakeMode::Poll(PollConfig {
            spins: u32::MAX,
            yields: 0,
            ..PollConfig::default()
        })
    } else {
        WakeMode::Blocking
    };
    let mut client = IoreqClient::new(
        vm.clone(),
        d,
        ClientConfig {
            mode,
            ..Default::default()
        },
    )
    .map_err(hsm_error)?;
    let handle = client.handle();
    let thread = std::thread::Builder::new()
        .name("bench-client".into())
        .spawn(move || client.run())
        .map_err(|e| coded_error("ERR_BENCH", &format!("client thread: {e}")))?;
    let result = (|| {
        vm.start().map_err(hsm_error)?;
        let guest = hsm.guest(&vm).map_err(hsm_error)?;
        let run = |rounds: u64| -> napi::Result<RunResult> {
            guest
                .run(&bench_workload(vcpus, rounds))
                .map_err(|e| coded_error(e.name(), &format!("guest run: {e}")))
        };
        let warm = if o.warmup_rounds > 0 {
            run(u64::from(o.warmup_rounds))?.completed
        } else {
            0
        };
        let chunk = if o.chunk_rounds == 0 {
            o.rounds
        } else {
            o.chunk_rounds.min(o.rounds)
        };
        let mut m = Measured {
            issued: 0,
            completed: 0,
            errors: 0,
            seconds: 0.0,
            latencies: Vec::with_capacity(3 * o.rounds as usize * usize::from(vcpus)),
            notifies: 0,
        };
        let mut left = o.rounds;
        while left > 0 {
            let n = chunk.min(left).max(1);
            let t = Instant::now();
            let r = run(u64::from(n))?;
            m.seconds += t.elapsed().as_secs_f64();
            m.issued += r.issued;
            m.completed += r.completed;
            m.errors += (r.mismatches.len() + r.faults.len()) as u64;
            m.latencies.extend_from_slice(&r.latencies_ns);
            left = left.saturating_sub(n);
            if o.max_seconds > 0.0 && m.seconds >= o.max_seconds {
                break;
            }
        }
        Ok((m, warm))
    })();
    handle.stop();
    let joined = thread.join();
    // Counted after the client thread ended: a vCPU may see its completion before the client
    // has counted the NOTIFY that made it.
    let result = result.map(|(mut m, warm)| {
        m.notifies = handle.stats().notifies.saturating_sub(warm);
        m
    });
    let _ = vm.pause();
    match joined {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(hsm_error(e)),
        Err(_) => return Err(coded_error("ERR_BENCH", "the client thread panicked")),
    }
    result
}

/// A native benchmark case on the libuv pool.
pub struct NativeBenchTask {
    options: NativeBenchOptions,
    poll: bool,
}

impl Task for NativeBenchTask {
    type Output = Measured;
    type JsValue = NativeBenchResult;

    fn compute(&mut self) -> napi::Result<Measured> {
        run_case(&self.options, self.poll)
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

/// Runs one case of the native path (Rust client, native register file) on a fresh emulator;
/// resolves with the guest's latencies.
#[napi(ts_return_type = "Promise<NativeBenchResult>")]
pub fn bench_native(options: NativeBenchOptions) -> napi::Result<AsyncTask<NativeBenchTask>> {
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
    Ok(AsyncTask::new(NativeBenchTask { options, poll }))
}
