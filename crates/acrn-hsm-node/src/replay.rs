//! `acrn-hsm trace replay`: a trace run again as a guest workload on the emulator
//! (`acrn_hsm_tools::replay::replay_trace`), and the workload of a trace for JavaScript to run
//! against its own devices (`workload_from_trace`); native only.

use std::fs::File;
use std::io::BufReader;

use std::time::Duration;

use acrn_hsm_tools::replay::{
    ReplayDevices, ReplayError, ReplayOptions, replay_trace, workload_from_trace,
};
use acrn_trace::IoSource;
use napi_derive::napi;

use crate::errors::{CodedError, Result, coded_error};

/// Options of [`trace_replay_file`].
#[napi(object)]
#[derive(Debug, Default)]
pub struct TraceReplayOptions {
    /// Keep each vCPU's idle time between requests (default false).
    pub pace: Option<bool>,
    /// `'auto'` (default), `'recorded'` or `'demo'`.
    pub devices: Option<String>,
}

/// The trace file at `path`, buffered.
fn open_trace(path: &str) -> Result<IoSource<BufReader<File>>> {
    let f = File::open(path)
        .map_err(|e| coded_error("ERR_TRACE_IO", &format!("cannot open {path}: {e}")))?;
    Ok(IoSource(BufReader::with_capacity(1 << 16, f)))
}

/// A replay failure as the JavaScript error: the trace's own code, or `ERR_REPLAY`.
fn replay_error(e: ReplayError) -> CodedError {
    match &e {
        ReplayError::Trace(t) => coded_error(t.code(), &t.to_string()),
        other => coded_error("ERR_REPLAY", &other.to_string()),
    }
}

/// Replays the trace in file `path`; returns the report as JSON (`ReplayReport`).
#[napi]
pub fn trace_replay_file(path: String, options: Option<TraceReplayOptions>) -> Result<String> {
    let options = options.unwrap_or_default();
    let devices = match options.devices.as_deref() {
        None => ReplayDevices::Auto,
        Some(s) => s
            .parse::<ReplayDevices>()
            .map_err(|e| coded_error("ERR_INVALID_ARG", &e))?,
    };
    let o = ReplayOptions {
        pace: options.pace.unwrap_or(false),
        devices,
        ..Default::default()
    };
    let report = replay_trace(open_trace(&path)?, &o).map_err(replay_error)?;
    let mut v =
        serde_json::to_value(&report).map_err(|e| coded_error("ERR_REPLAY", &e.to_string()))?;
    if let Some(m) = v.as_object_mut() {
        m.insert("clean".into(), serde_json::Value::Bool(report.is_clean()));
    }
    Ok(v.to_string())
}

/// Options of [`trace_workload_file`].
#[napi(object)]
#[derive(Debug, Default)]
pub struct TraceWorkloadOptions {
    /// Keep each vCPU's idle time between requests as `delay_ns` ops (default false).
    pub pace: Option<bool>,
    /// With `pace`: the longest idle time kept, in ms (default 1000).
    pub max_gap_ms: Option<f64>,
}

/// The workload of a trace, for a guest that runs it against the caller's devices.
#[napi(object)]
#[derive(Debug)]
pub struct TraceWorkloadInfo {
    /// The workload (docs/workloads.md) as JSON text.
    pub workload_json: String,
    /// vCPU lists in the workload (the trace's vCPU count).
    pub vcpus: u32,
    /// Whether the trace's VM used polling completion.
    pub polling: bool,
    /// Records read.
    pub records: f64,
    /// Records that could not be issued again.
    pub skipped: f64,
    /// Reads the guest checks against the recorded value.
    pub checked_reads: f64,
    /// Phase barriers put in each vCPU's list.
    pub phases: f64,
}

/// Reads the trace in file `path` and makes the workload that issues its requests again (reads
/// checked against the recorded values).
#[napi]
pub fn trace_workload_file(
    path: String,
    options: Option<TraceWorkloadOptions>,
) -> Result<TraceWorkloadInfo> {
    let options = options.unwrap_or_default();
    let max_gap = match options.max_gap_ms {
        None => Duration::from_secs(1),
        Some(ms) if ms.is_finite() && ms >= 0.0 => Duration::from_secs_f64(ms / 1000.0),
        Some(ms) => {
            return Err(coded_error(
                "ERR_INVALID_ARG",
                &format!("maxGapMs {ms} is not a non-negative number"),
            ));
        }
    };
    let o = ReplayOptions {
        pace: options.pace.unwrap_or(false),
        max_gap,
        ..Default::default()
    };
    let tw = workload_from_trace(open_trace(&path)?, &o).map_err(replay_error)?;
    Ok(TraceWorkloadInfo {
        workload_json: tw.workload.to_json().to_string(),
        vcpus: tw.workload.vcpus.len() as u32,
        polling: tw.header.vm.completion == acrn_trace::CompletionMode::Polling,
        records: tw.records as f64,
        skipped: tw.skipped as f64,
        checked_reads: tw.checked_reads as f64,
        phases: tw.phases as f64,
    })
}
