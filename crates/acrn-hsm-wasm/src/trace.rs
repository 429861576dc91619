//! I/O-request traces (`acrn-trace`) for the browser and for Node without the addon: the same
//! functions, with the same results, as the native addon's (`crates/acrn-hsm-node/src/trace.rs`);
//! both go through `acrn_trace::flat`. Errors are JS `Error`s whose message starts with
//! `[ERR_TRACE_...] `.

use crate::coded_error;
use acrn_trace::{TraceError, flat};
use js_sys::{BigUint64Array, Object, Reflect, Uint8Array, Uint16Array};
use wasm_bindgen::prelude::*;

fn trace_error(e: &TraceError) -> JsValue {
    coded_error(e.code(), &e.to_string())
}

fn set(obj: &Object, key: &str, value: impl Into<JsValue>) -> Result<(), JsValue> {
    Reflect::set(obj, &JsValue::from_str(key), &value.into()).map(|_| ())
}

/// Decodes a whole trace held in memory into `{headerJson, count, footer, vcpu, type,
/// direction, size, outcome, device, address, value, timestamps}` (typed-array columns;
/// `timestamps` stage-major, 7 x count), exactly as the native `decodeTrace`.
#[wasm_bindgen(js_name = decodeTrace)]
pub fn decode_trace(bytes: &[u8]) -> Result<Object, JsValue> {
    let (header, c, footer) = flat::decode_columns(bytes).map_err(|e| trace_error(&e))?;
    let obj = Object::new();
    set(&obj, "headerJson", flat::header_json(&header))?;
    set(&obj, "count", c.count as f64)?;
    set(&obj, "footer", footer.is_some())?;
    set(&obj, "vcpu", Uint16Array::from(&c.vcpu[..]))?;
    set(&obj, "type", Uint8Array::from(&c.kind[..]))?;
    set(&obj, "direction", Uint8Array::from(&c.direction[..]))?;
    set(&obj, "size", Uint8Array::from(&c.size[..]))?;
    set(&obj, "outcome", Uint8Array::from(&c.outcome[..]))?;
    set(&obj, "device", Uint16Array::from(&c.device[..]))?;
    set(&obj, "address", BigUint64Array::from(&c.address[..]))?;
    set(&obj, "value", BigUint64Array::from(&c.value[..]))?;
    set(&obj, "timestamps", BigUint64Array::from(&c.timestamps[..]))?;
    Ok(obj)
}

/// The report of a trace held in memory, grouped `by` `address|device|vcpu|type`, as JSON.
#[wasm_bindgen(js_name = traceReport)]
pub fn trace_report(bytes: &[u8], by: &str) -> Result<String, JsValue> {
    flat::report_json(bytes, by).map_err(|e| trace_error(&e))
}

/// [`trace_report`] over the requests of `vcpus` only.
#[wasm_bindgen(js_name = traceReportVcpus)]
pub fn trace_report_vcpus(bytes: &[u8], by: &str, vcpus: Vec<u16>) -> Result<String, JsValue> {
    flat::report_json_with(bytes, by, Some(vcpus)).map_err(|e| trace_error(&e))
}

/// [`trace_report`] over the requests whose first stamp is in `from_ns..to_ns` (the trace's
/// clock, ns): the viewer's report of its visible window.
#[wasm_bindgen(js_name = traceReportWindow)]
pub fn trace_report_window(
    bytes: &[u8],
    by: &str,
    from_ns: u64,
    to_ns: u64,
) -> Result<String, JsValue> {
    flat::report_json_window(bytes, by, from_ns, to_ns).map_err(|e| trace_error(&e))
}

/// The Chrome Trace Event JSON of a trace held in memory.
#[wasm_bindgen(js_name = traceExportChrome)]
pub fn trace_export_chrome(bytes: &[u8]) -> Result<String, JsValue> {
    flat::chrome_json(bytes).map_err(|e| trace_error(&e))
}

/// The Chrome Trace Event JSON of a trace held in memory, with the events and the subset the
/// arguments select (`acrn_trace::export::ChromeOptions`: offsets in ns from the clock start).
#[wasm_bindgen(js_name = traceExportChromeWith)]
pub fn trace_export_chrome_with(
    bytes: &[u8],
    stages: bool,
    no_counter: bool,
    from_ns: Option<u64>,
    to_ns: Option<u64>,
    vcpus: Option<Vec<u16>>,
) -> Result<String, JsValue> {
    let options = acrn_trace::export::ChromeOptions {
        stages,
        no_counter,
        from_ns,
        to_ns,
        vcpus,
    };
    flat::chrome_json_with(bytes, &options).map_err(|e| trace_error(&e))
}

/// The CSV of a trace held in memory.
#[wasm_bindgen(js_name = traceExportCsv)]
pub fn trace_export_csv(bytes: &[u8]) -> Result<String, JsValue> {
    flat::csv(bytes).map_err(|e| trace_error(&e))
}

/// Encodes a trace from its flat form (the same arguments as the native `encodeTrace`).
#[wasm_bindgen(js_name = encodeTrace)]
pub fn encode_trace(
    meta: &[u64],
    names: Vec<String>,
    devices: &[u64],
    records: &[u64],
    finish: bool,
) -> Result<Vec<u8>, JsValue> {
    flat::encode_flat(meta, &names, devices, records, finish).map_err(|e| trace_error(&e))
}
