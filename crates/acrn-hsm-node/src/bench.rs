//! `benchNative`: the native path of `acrn-hsm bench` ([`acrn_hsm_tools::bench`]) on the libuv
//! pool; only the guest's latencies cross to JavaScript, once per case, as a `Float64Array`.

use acrn_hsm_tools::bench::{BenchError, Measured, NativeCase, run_native_case};
use napi::bindgen_prelude::{AsyncTask, Float64Array};
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
