//! `acrn-hsm trace replay`: a trace run again as a guest workload on the emulator
//! (`acrn_hsm::trace::replay_trace`), native only.

use std::fs::File;
use std::io::BufReader;

use acrn_hsm_tools::replay::{ReplayDevices, ReplayError, ReplayOptions, replay_trace};
use acrn_trace::IoSource;
use napi_derive::napi;

use crate::errors::{Result, coded_error};

/// Options of [`trace_replay_file`].
#[napi(object)]
#[derive(Debug, Default)]
pub struct TraceReplayOptions {
    /// Keep each vCPU's idle time between requests (default false).
    pub pace: Option<bool>,
    /// `'auto'` (default), `'recorded'` or `'demo'`.
    pub devices: Option<String>,
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
    let f = File::open(&path)
        .map_err(|e| coded_error("ERR_TRACE_IO", &format!("cannot open {path}: {e}")))?;
    let o = ReplayOptions {
        pace: options.pace.unwrap_or(false),
        devices,
        ..Default::default()
    };
    let report =
        replay_trace(IoSource(BufReader::with_capacity(1 << 16, f)), &o).map_err(|e| match &e {
            ReplayError::Trace(t) => coded_error(t.code(), &t.to_string()),
            other => coded_error("ERR_REPLAY", &other.to_string()),
        })?;
    let mut v =
        serde_json::to_value(&report).map_err(|e| coded_error("ERR_REPLAY", &e.to_string()))?;
    if let Some(m) = v.as_object_mut() {
        m.insert("clean".into(), serde_json::Value::Bool(report.is_clean()));
    }
    Ok(v.to_string())
}
