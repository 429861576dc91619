//! `acrn-hsm demo`: the core's demo VM, with progress reported to JavaScript and, optionally, one
//! device implemented in JavaScript next to the native ones.
//!
//! The JavaScript device is called from the client's thread through a thread-safe function: the
//! client thread blocks until the main thread has run the handler. That costs an event-loop round
//! trip per access (tens of microseconds), which is why the demo gives it only a few accesses per
//! round; the fast path for JavaScript devices is the batch loop of `IoreqClient`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use acrn_hsm::client::{AddressSpace, IoDevice};
use acrn_hsm_emulator::{Access, Op};
use acrn_hsm_tools::demo::{self, DemoConfig, DemoMode, ExtraDevice};
use napi::bindgen_prelude::{AsyncTask, BigInt};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{Env, Status, Task};
use napi_derive::napi;

use crate::errors::{Failure, Result, coded_error};

/// Where the demo puts the JavaScript device (MMIO).
pub const JS_DEVICE_BASE: u64 = 0xfe00_0000;
/// Its length.
pub const JS_DEVICE_LEN: u64 = 0x100;
/// The value its ID register (offset 4) must return.
pub const JS_DEVICE_ID: u64 = 0x5453_4456; // "TSDV"

/// The demo's options.
#[napi(object)]
#[derive(Debug, Default)]
pub struct DemoOptions {
    /// vCPUs, 1 to 16 (default 4).
    pub vcpus: Option<u32>,
    /// Requests per vCPU in the random phase (default 10000).
    pub requests_per_vcpu: Option<f64>,
    /// Stop after this many seconds even if requests remain.
    pub seconds: Option<f64>,
    /// `'notify'` (default) or `'poll'`.
    pub mode: Option<String>,
    /// Workload seed (default 1).
    pub seed: Option<u32>,
    /// Milliseconds between progress reports (default 200).
    pub progress_ms: Option<u32>,
    /// Record every request into a trace file at this path.
    pub trace: Option<String>,
}

/// One access to the JavaScript device: `{ write, offset, size, value }`.
#[napi(object)]
#[derive(Debug)]
pub struct JsDeviceAccess {
    /// A write (else a read).
    pub write: bool,
    /// Offset in the device's range.
    pub offset: u32,
    /// 1, 2, 4 or 8.
    pub size: u32,
    /// The value written (0 for reads).
    pub value: BigInt,
}

type ProgressFn = ThreadsafeFunction<String, (), String, Status, false>;
type AccessFn = ThreadsafeFunction<JsDeviceAccess, BigInt, JsDeviceAccess, Status, false>;

/// Set at process exit: the main thread no longer runs JavaScript, so the device's calls fail.
static EXITING: AtomicBool = AtomicBool::new(false);

/// Process exit (`process.on('exit')`): every emulated machine shuts down (their vCPU and
/// client waits end) and the JavaScript device answers at once, so no thread of Node's pool
/// still runs a guest when `process.exit` joins the pool.
#[napi]
pub fn shutdown_emulators() {
    EXITING.store(true, Ordering::Release);
    acrn_hsm_emulator::shutdown_all();
}

/// An [`IoDevice`] whose accesses run a JavaScript function on the main thread.
struct JsDevice {
    access: AccessFn,
}

impl JsDevice {
    fn call(&self, write: bool, offset: u64, size: u8, value: u64) -> u64 {
        if EXITING.load(Ordering::Acquire) {
            return u64::MAX;
        }
        let (tx, rx) = mpsc::sync_channel::<u64>(1);
        let arg = JsDeviceAccess {
            write,
            offset: u32::try_from(offset).unwrap_or(u32::MAX),
            size: u32::from(size),
            value: BigInt::from(value),
        };
        let status = self.access.call_with_return_value(
            arg,
            ThreadsafeFunctionCallMode::Blocking,
            move |ret: napi::Result<BigInt>, _env| {
                // A handler that throws or returns garbage: all ones, as the DM answers failures.
                let v = ret.map(|b| b.get_u64().1).unwrap_or(u64::MAX);
                let _ = tx.send(v);
                Ok(())
            },
        );
        if status != Status::Ok {
            return u64::MAX;
        }
        // The main thread is free while the demo runs (it awaits the demo's promise); if the
        // environment is shutting down the call never runs: give up at exit, or after a while.
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            match rx.recv_timeout(Duration::from_millis(20)) {
                Ok(v) => return v,
                Err(mpsc::RecvTimeoutError::Timeout)
                    if !EXITING.load(Ordering::Acquire) && Instant::now() < until => {}
                Err(_) => return u64::MAX,
            }
        }
    }
}

impl IoDevice for JsDevice {
    fn name(&self) -> &str {
        "ts-scratch"
    }
    fn read(&mut self, offset: u64, size: u8) -> u64 {
        self.call(false, offset, size, 0)
    }
    fn write(&mut self, offset: u64, size: u8, value: u64) {
        self.call(true, offset, size, value);
    }
}

/// The demo run on the libuv pool.
pub struct DemoTask {
    config: Option<DemoConfig>,
    progress: ProgressFn,
    device: Option<AccessFn>,
    failure: Failure,
}

impl Task for DemoTask {
    type Output = String;
    type JsValue = String;

    fn compute(&mut self) -> napi::Result<String> {
        let r = self.compute_coded();
        self.failure.keep(r)
    }

    fn reject(&mut self, env: Env, err: napi::Error) -> napi::Result<Self::JsValue> {
        self.failure.reject(&env, err)
    }

    fn resolve(&mut self, _env: Env, output: String) -> napi::Result<String> {
        Ok(output)
    }
}

impl DemoTask {
    fn compute_coded(&mut self) -> Result<String> {
        let config = self
            .config
            .take()
            .ok_or_else(|| coded_error("ERR_INVALID_STATE", "demo started twice"))?;
        let extra = match self.device.take() {
            None => Vec::new(),
            Some(access) => vec![ExtraDevice {
                space: AddressSpace::Mmio,
                base: JS_DEVICE_BASE,
                len: JS_DEVICE_LEN,
                device: Box::new(JsDevice { access }),
                ops: vec![
                    Op::Mmio {
                        address: JS_DEVICE_BASE,
                        size: 4,
                        access: Access::Write(0x600d_cafe),
                    },
                    Op::Mmio {
                        address: JS_DEVICE_BASE,
                        size: 4,
                        access: Access::Read {
                            expect: Some(0x600d_cafe),
                        },
                    },
                    Op::Mmio {
                        address: JS_DEVICE_BASE + 4,
                        size: 4,
                        access: Access::Read {
                            expect: Some(JS_DEVICE_ID),
                        },
                    },
                ],
            }],
        };
        let progress = &self.progress;
        let summary = demo::run_with(config, extra, |p| {
            if let Ok(json) = serde_json::to_string(p) {
                progress.call(json, ThreadsafeFunctionCallMode::NonBlocking);
            }
        })
        .map_err(|e| coded_error("ERR_DEMO", &e.to_string()))?;
        serde_json::to_string(&summary).map_err(|e| coded_error("ERR_DEMO", &e.to_string()))
    }
}

/// Runs the demo VM on the emulator. `onProgress` receives JSON snapshots; `device`, when given,
/// serves an MMIO device at 0xfe000000 (a scratch register at +0, an ID register at +4 that must
/// read 0x54534456) and must return a bigint. Resolves to the summary's JSON text.
#[napi(ts_return_type = "Promise<string>")]
pub fn run_demo(
    options: DemoOptions,
    #[napi(ts_arg_type = "(progressJson: string) => void")] on_progress: ProgressFn,
    #[napi(ts_arg_type = "((access: JsDeviceAccess) => bigint) | undefined | null")] device: Option<
        AccessFn,
    >,
) -> Result<AsyncTask<DemoTask>> {
    let mut config = DemoConfig::default();
    if let Some(v) = options.vcpus {
        config.vcpus = u16::try_from(v)
            .ok()
            .filter(|v| (1..=16).contains(v))
            .ok_or_else(|| coded_error("ERR_OUT_OF_RANGE", "vcpus must be in 1..16"))?;
    }
    if let Some(n) = options.requests_per_vcpu {
        if !(n.is_finite() && n >= 1.0 && n.fract() == 0.0 && n <= 1e12) {
            return Err(coded_error(
                "ERR_OUT_OF_RANGE",
                "requestsPerVcpu must be an integer in 1..1e12",
            ));
        }
        config.requests_per_vcpu = n as u64;
    }
    if let Some(s) = options.seconds {
        if !(s.is_finite() && s > 0.0) {
            return Err(coded_error(
                "ERR_OUT_OF_RANGE",
                "seconds must be a positive number",
            ));
        }
        config.seconds = Some(s);
    }
    if let Some(m) = &options.mode {
        config.mode = m
            .parse::<DemoMode>()
            .map_err(|e| coded_error("ERR_INVALID_ARG", &e))?;
    }
    // Ten rounds or more: progress, `seconds` and the TypeScript device's accesses come per round.
    config.round_requests = (config.requests_per_vcpu / 10).clamp(1, 2_000);
    if let Some(seed) = options.seed {
        config.seed = u64::from(seed);
    }
    if let Some(ms) = options.progress_ms {
        config.progress_interval = Duration::from_millis(u64::from(ms.max(10)));
    }
    config.trace = options.trace.map(std::path::PathBuf::from);
    Ok(AsyncTask::new(DemoTask {
        failure: Failure::default(),
        config: Some(config),
        progress: on_progress,
        device,
    }))
}
