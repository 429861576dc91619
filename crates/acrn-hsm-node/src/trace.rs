//! I/O-request traces (`acrn-trace`): decode, report, export and encode. The wasm binding
//! (`crates/acrn-hsm-wasm/src/trace.rs`) exposes the same functions with the same results: both
//! go through `acrn_trace::flat`. The `*File` functions are native only: they stream a trace
//! from disk in bounded memory, whatever its size.

use crate::errors::{CodedError, coded_error};
use acrn_hsm_tools::export::{ExportFormat, ExportStream};
use acrn_trace::export::{ChromeOptions, export_chrome_with, export_csv};
use acrn_trace::{IoSink, IoSource, Report, ReportBuilder, TraceError, TraceReader, flat};
use napi::bindgen_prelude::{BigInt, BigUint64Array, Buffer, Uint8Array, Uint16Array};
use napi_derive::napi;
use std::fs::File;
use std::io::{BufWriter, Write};

fn trace_error(e: &TraceError) -> CodedError {
    coded_error(e.code(), &e.to_string())
}

/// A decoded trace, in columns: record `i` is element `i` of every column. `timestamps` holds
/// the seven per-stage timestamps stage-major (`timestamps[stage * count + i]`, stages
/// pending, processing, handler_start, handler_end, notify, complete, free; 0 = not observed).
#[napi(object)]
pub struct RawTrace {
    /// The header as JSON (`u64` quantities as decimal strings).
    pub header_json: String,
    /// Number of records.
    pub count: u32,
    /// Whether the trace ends with its footer.
    pub footer: bool,
    /// vCPU per record.
    pub vcpu: Uint16Array,
    /// Type per record (0 pio, 1 mmio, 2 pci).
    pub r#type: Uint8Array,
    /// Direction per record (0 read, 1 write).
    pub direction: Uint8Array,
    /// Access size per record.
    pub size: Uint8Array,
    /// Outcome per record (0 ok, 1 unclaimed, 2 malformed, 3 handler_error, 4 cleared, 5 incomplete).
    pub outcome: Uint8Array,
    /// Device id per record (0xFFFF = none).
    pub device: Uint16Array,
    /// Address per record (PCI: `bdf << 16 | register`).
    pub address: BigUint64Array,
    /// Value per record.
    pub value: BigUint64Array,
    /// Timestamps, stage-major, 7 x count.
    pub timestamps: BigUint64Array,
}

/// Decodes a whole trace held in memory.
#[napi]
pub fn decode_trace(bytes: Uint8Array) -> crate::errors::Result<RawTrace> {
    let (header, c, footer) = flat::decode_columns(&bytes).map_err(|e| trace_error(&e))?;
    Ok(RawTrace {
        header_json: flat::header_json(&header),
        count: u32::try_from(c.count).unwrap_or(u32::MAX),
        footer: footer.is_some(),
        vcpu: Uint16Array::new(c.vcpu),
        r#type: Uint8Array::new(c.kind),
        direction: Uint8Array::new(c.direction),
        size: Uint8Array::new(c.size),
        outcome: Uint8Array::new(c.outcome),
        device: Uint16Array::new(c.device),
        address: BigUint64Array::new(c.address),
        value: BigUint64Array::new(c.value),
        timestamps: BigUint64Array::new(c.timestamps),
    })
}

/// The report of a trace held in memory, grouped `by` `address|device|vcpu|type`, as JSON.
#[napi]
pub fn trace_report(bytes: Uint8Array, by: String) -> crate::errors::Result<String> {
    flat::report_json(&bytes, &by).map_err(|e| trace_error(&e))
}

/// The Chrome Trace Event JSON of a trace held in memory.
#[napi]
pub fn trace_export_chrome(bytes: Uint8Array) -> crate::errors::Result<String> {
    flat::chrome_json(&bytes).map_err(|e| trace_error(&e))
}

/// The CSV of a trace held in memory.
#[napi]
pub fn trace_export_csv(bytes: Uint8Array) -> crate::errors::Result<String> {
    flat::csv(&bytes).map_err(|e| trace_error(&e))
}

/// Encodes a trace from its flat form: `meta` = `[vmid, vcpuCount, completion (0 notify,
/// 1 polling), clockResolutionNs, clockStartNs, wallStartNs]`, `names` = `[clockSource,
/// vmName, ...deviceNames]`, `devices` = 4 words per device `[id, kind, base, length]`,
/// `records` = 15 words per record `[vcpu, type, direction, size, outcome, device, address,
/// value, pending, processing, handlerStart, handlerEnd, notify, complete, free]`; `finish`
/// writes the footer.
#[napi]
pub fn encode_trace(
    meta: BigUint64Array,
    names: Vec<String>,
    devices: BigUint64Array,
    records: BigUint64Array,
    finish: bool,
) -> crate::errors::Result<Uint8Array> {
    flat::encode_flat(&meta, &names, &devices, &records, finish)
        .map(Uint8Array::from)
        .map_err(|e| trace_error(&e))
}

fn open(path: &str) -> crate::errors::Result<TraceReader<IoSource<File>>> {
    let file = File::open(path)
        .map_err(|e| coded_error("ERR_TRACE_IO", &format!("cannot open {path}: {e}")))?;
    TraceReader::new(IoSource(file)).map_err(|e| trace_error(&e))
}

/// The report of the trace in file `path` (of the requests of `vcpus` only, if given),
/// streamed in bounded memory (native only).
#[napi]
pub fn trace_report_file(
    path: String,
    by: String,
    vcpus: Option<Vec<u32>>,
) -> crate::errors::Result<String> {
    let by = flat::group_by(&by).map_err(|e| trace_error(&e))?;
    let reader = open(&path)?;
    let mut b = ReportBuilder::new(by);
    if let Some(v) = vcpus {
        b = b.only_vcpus(
            v.into_iter()
                .map(|x| u16::try_from(x).unwrap_or(u16::MAX))
                .collect(),
        );
    }
    Report::from_builder(reader, b)
        .map(|r| r.to_json())
        .map_err(|e| trace_error(&e))
}

/// What the Chrome export writes (`acrn_trace::export::ChromeOptions`).
#[napi(object)]
#[derive(Debug, Default)]
pub struct ChromeExportOptions {
    /// Also one slice per stage of each request.
    pub stages: Option<bool>,
    /// Leave out the latency counter.
    pub no_counter: Option<bool>,
    /// Only requests from this offset on (ns from the trace's clock start).
    pub from_ns: Option<BigInt>,
    /// Only requests before this offset (ns from the trace's clock start).
    pub to_ns: Option<BigInt>,
    /// Only requests of these vCPUs.
    pub vcpus: Option<Vec<u32>>,
}

impl ChromeExportOptions {
    fn to_core(&self) -> ChromeOptions {
        ChromeOptions {
            stages: self.stages.unwrap_or(false),
            no_counter: self.no_counter.unwrap_or(false),
            from_ns: self.from_ns.as_ref().map(|b| b.get_u64().1),
            to_ns: self.to_ns.as_ref().map(|b| b.get_u64().1),
            vcpus: self.vcpus.as_ref().map(|v| {
                v.iter()
                    .map(|&x| u16::try_from(x).unwrap_or(u16::MAX))
                    .collect()
            }),
        }
    }
}

/// Exports the trace in file `path` to file `out` as `chrome` or `csv`, streaming in bounded
/// memory (native only). `options` apply to `chrome`.
#[napi]
pub fn trace_export_file(
    path: String,
    format: String,
    out: String,
    options: Option<ChromeExportOptions>,
) -> crate::errors::Result<()> {
    if format != "chrome" && format != "csv" {
        return Err(coded_error(
            "ERR_TRACE_INVALID",
            "invalid argument: format must be chrome or csv",
        ));
    }
    let reader = open(&path)?;
    let file = File::create(&out)
        .map_err(|e| coded_error("ERR_TRACE_IO", &format!("cannot create {out}: {e}")))?;
    let sink = IoSink(BufWriter::new(file));
    let sink = if format == "chrome" {
        export_chrome_with(reader, sink, &options.unwrap_or_default().to_core())
    } else {
        export_csv(reader, sink)
    }
    .map_err(|e| trace_error(&e))?;
    sink.0
        .into_inner()
        .map_err(|e| e.into_error())
        .and_then(|mut f| f.flush())
        .map_err(|e| coded_error("ERR_TRACE_IO", &format!("cannot write {out}: {e}")))
}

/// An export of a trace file read chunk by chunk (about 64 KiB each), made by a thread in
/// bounded memory ([`acrn_hsm_tools::export::ExportStream`]): for output that is not a file
/// (stdout), and with progress.
#[napi]
pub struct TraceExportStream {
    inner: ExportStream,
}

#[napi]
impl TraceExportStream {
    /// Starts exporting the trace in file `path` as `chrome` or `csv` (`options` apply to
    /// `chrome`).
    #[napi(factory)]
    pub fn open(
        path: String,
        format: String,
        options: Option<ChromeExportOptions>,
    ) -> crate::errors::Result<TraceExportStream> {
        let format = match format.as_str() {
            "chrome" => ExportFormat::Chrome(options.unwrap_or_default().to_core()),
            "csv" => ExportFormat::Csv,
            _ => {
                return Err(coded_error(
                    "ERR_TRACE_INVALID",
                    "invalid argument: format must be chrome or csv",
                ));
            }
        };
        ExportStream::open(&path, format)
            .map(|inner| TraceExportStream { inner })
            .map_err(|e| coded_error(&e.code, &e.message))
    }

    /// The next chunk, or `null` at the end; throws the export's error.
    #[napi]
    pub fn next(&self) -> crate::errors::Result<Option<Buffer>> {
        self.inner
            .next_chunk()
            .map(|c| c.map(Buffer::from))
            .map_err(|e| coded_error(&e.code, &e.message))
    }

    /// How far the export has read its file, 0 to 1.
    #[napi(getter)]
    pub fn progress(&self) -> f64 {
        self.inner.progress()
    }
}
