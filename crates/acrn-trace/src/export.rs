//! Exports: Chrome Trace Event JSON (opens in the Perfetto UI and `chrome://tracing`) and CSV.
//! Both stream: they read one record at a time and hand the sink 64 KiB chunks.

use crate::error::{ErrorKind, TraceError};
use crate::format::{IoType, NO_DEVICE, TraceHeader, TraceRecord, pci_fields};
use crate::io::{ByteSink, ByteSource};
use crate::reader::TraceReader;
use crate::report::{Stage, json_str};
use alloc::string::String;
use core::fmt::Write;

const CHUNK: usize = 64 * 1024;

/// Buffers text and hands it to the sink in chunks.
struct Chunked<W> {
    sink: W,
    buf: String,
    written: u64,
}

impl<W: ByteSink> Chunked<W> {
    fn new(sink: W) -> Self {
        Chunked {
            sink,
            buf: String::with_capacity(CHUNK + 1024),
            written: 0,
        }
    }
    fn maybe_flush(&mut self) -> Result<(), TraceError> {
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(())
    }
    fn flush(&mut self) -> Result<(), TraceError> {
        self.sink
            .write_all(self.buf.as_bytes())
            .map_err(|e| TraceError::new(self.written, ErrorKind::Io(e)))?;
        self.written += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }
    fn finish(mut self) -> Result<W, TraceError> {
        self.flush()?;
        Ok(self.sink)
    }
}

/// Writes `ns` (a duration or an offset in ns) as µs with three decimals, exactly.
fn us(out: &mut String, ns: u64) {
    let _ = write!(out, "{}.{:03}", ns / 1000, ns % 1000);
}

/// Where the request went: `0x3f8`, or `00:1f.0@0x40` for PCI.
fn location(out: &mut String, r: &TraceRecord) {
    let _ = match r.kind {
        IoType::Pci => {
            let (bus, dev, func, reg) = pci_fields(r.address);
            write!(out, "{bus:02x}:{dev:02x}.{func}@{reg:#x}")
        }
        _ => write!(out, "{:#x}", r.address),
    };
}

fn device_name(header: &TraceHeader, id: u16) -> &str {
    if id == NO_DEVICE {
        return "";
    }
    header.device(id).map_or("", |d| d.name.as_str())
}

/// What [`export_chrome_with`] writes: which events, for which requests.
///
/// The default is the compact form: one slice per request and the latency counter, about 3.6
/// times the size of the binary trace (a 1M-request demo trace: 80 MB, 285 MB of JSON); the
/// per-stage slices add about 590 bytes a request (11 times in all, 873 MB). `from_ns`/`to_ns` and `vcpus` select a subset, so a long trace can be opened
/// a window at a time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChromeOptions {
    /// Also write one nested slice per observed stage of each request (`cat` `stage`).
    pub stages: bool,
    /// Leave out the `latency_us` counter events.
    pub no_counter: bool,
    /// Only requests whose first stamp is at or after this offset (ns from the trace's clock
    /// start).
    pub from_ns: Option<u64>,
    /// Only requests whose first stamp is before this offset (ns from the trace's clock start).
    pub to_ns: Option<u64>,
    /// Only requests of these vCPUs (`None`: all).
    pub vcpus: Option<alloc::vec::Vec<u16>>,
}

impl ChromeOptions {
    /// Every event of every request (the slices of every stage too).
    pub fn full() -> Self {
        ChromeOptions {
            stages: true,
            ..Default::default()
        }
    }

    /// Whether the request `r` (first stamp `first`, an offset from the clock start) is selected.
    fn selects(&self, r: &TraceRecord, first: u64) -> bool {
        self.from_ns.is_none_or(|f| first >= f)
            && self.to_ns.is_none_or(|t| first < t)
            && self.vcpus.as_ref().is_none_or(|v| v.contains(&r.vcpu))
    }
}

/// [`export_chrome_with`] with [`ChromeOptions::default`]: one slice per request and the
/// latency counter, for every request.
pub fn export_chrome<S: ByteSource, W: ByteSink>(
    reader: TraceReader<S>,
    sink: W,
) -> Result<W, TraceError> {
    export_chrome_with(reader, sink, &ChromeOptions::default())
}

/// Writes the trace as Chrome Trace Event JSON (`{"traceEvents": [...]}`), which the Perfetto
/// UI opens:
///
/// * `M` metadata: the process (the VM: `pid` = vmid, named `VM <name>`; the UI shows the pid
///   beside it) and one thread per vCPU (`tid` = vCPU), so each vCPU is a track.
/// * per request, on its vCPU's track, an `X` event named by its address key (`0x3f8:PIO-W`)
///   spanning the `total` stage, with `args` address, value, size, device, outcome and index;
///   with `options.stages`, one nested `X` event per observed stage (`dispatch`, `queue`,
///   `handler`, `reply`, `completion`, `release`; category `stage`). A request whose PENDING
///   time was not observed has only its stage events.
/// * unless `options.no_counter`, a `C` counter event per request, `latency_us` with one value
///   (`total`, µs), at its PENDING time: a latency-over-time track.
///
/// `ts`/`dur` are µs (with ns precision, three decimals) from the header's clock start (or
/// from the earliest timestamp if a timestamp precedes it). `index` is the request's index in
/// the whole trace, also when `options` selects a subset. Returns the sink.
pub fn export_chrome_with<S: ByteSource, W: ByteSink>(
    mut reader: TraceReader<S>,
    sink: W,
    options: &ChromeOptions,
) -> Result<W, TraceError> {
    let header = reader.header().clone();
    let base = header.clock.start_ns;
    let pid = header.vm.vmid;
    let mut out = Chunked::new(sink);
    out.buf.push_str("{\"traceEvents\":[\n");
    out.buf
        .push_str("{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":");
    let _ = write!(out.buf, "{pid},\"tid\":0,\"args\":{{\"name\":");
    let name = if header.vm.name.is_empty() {
        String::from("VM")
    } else {
        alloc::format!("VM {}", header.vm.name)
    };
    json_str(&mut out.buf, &name);
    out.buf.push_str("}}");
    for v in 0..header.vm.vcpu_count {
        let _ = write!(
            out.buf,
            ",\n{{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":{pid},\"tid\":{v},\"args\":{{\"name\":\"vCPU {v}\"}}}}\
             ,\n{{\"name\":\"thread_sort_index\",\"ph\":\"M\",\"pid\":{pid},\"tid\":{v},\"args\":{{\"sort_index\":{v}}}}}"
        );
    }
    let mut index = 0u64;
    let mut written = 0u64;
    while let Some(r) = reader.next_record()? {
        let rel = |t: u64| t.saturating_sub(base);
        let first = r.ts.to_array().into_iter().filter(|&t| t != 0).min();
        if !options.selects(&r, first.map_or(0, rel)) {
            index += 1;
            continue;
        }
        written += 1;
        if let Some((a, b)) = Stage::Total.span(&r.ts) {
            out.buf.push_str(",\n{\"name\":");
            json_str(&mut out.buf, &r.address_key());
            let _ = write!(
                out.buf,
                ",\"cat\":\"ioreq\",\"ph\":\"X\",\"pid\":{pid},\"tid\":{},\"ts\":",
                r.vcpu
            );
            us(&mut out.buf, rel(a));
            out.buf.push_str(",\"dur\":");
            us(&mut out.buf, b - a);
            out.buf.push_str(",\"args\":{\"address\":\"");
            location(&mut out.buf, &r);
            let _ = write!(
                out.buf,
                "\",\"value\":\"{:#x}\",\"size\":{},\"device\":",
                r.value, r.size
            );
            json_str(&mut out.buf, device_name(&header, r.device));
            let _ = write!(
                out.buf,
                ",\"outcome\":\"{}\",\"index\":{index}}}}}",
                r.outcome.name()
            );
            if !options.no_counter {
                let _ = write!(
                    out.buf,
                    ",\n{{\"name\":\"latency_us\",\"ph\":\"C\",\"pid\":{pid},\"ts\":"
                );
                us(&mut out.buf, rel(a));
                out.buf.push_str(",\"args\":{\"total\":");
                us(&mut out.buf, b - a);
                out.buf.push_str("}}");
            }
        }
        // Without the total slice (PENDING not observed) the stages are all there is to show.
        if options.stages || Stage::Total.span(&r.ts).is_none() {
            for s in &Stage::ALL[1..] {
                if let Some((a, b)) = s.span(&r.ts) {
                    let _ = write!(
                        out.buf,
                        ",\n{{\"name\":\"{}\",\"cat\":\"stage\",\"ph\":\"X\",\"pid\":{pid},\"tid\":{},\"ts\":",
                        s.name(),
                        r.vcpu
                    );
                    us(&mut out.buf, rel(a));
                    out.buf.push_str(",\"dur\":");
                    us(&mut out.buf, b - a);
                    let _ = write!(out.buf, ",\"args\":{{\"index\":{index}}}}}");
                }
            }
        }
        index += 1;
        out.maybe_flush()?;
    }
    out.buf
        .push_str("\n],\"displayTimeUnit\":\"ns\",\"otherData\":{\"clock\":");
    json_str(&mut out.buf, &header.clock.source);
    let _ = write!(
        out.buf,
        ",\"clock_start_ns\":\"{}\",\"wall_start_ns\":\"{}\",\"vm\":",
        header.clock.start_ns, header.clock.wall_start_ns
    );
    json_str(&mut out.buf, &header.vm.name);
    let _ = writeln!(
        out.buf,
        ",\"requests\":{index},\"exported\":{written},\"complete\":{}}}}}",
        reader.footer_count().is_some()
    );
    out.finish()
}

/// The CSV header row of [`export_csv`].
pub const CSV_HEADER: &str = "index,vcpu,type,direction,size,outcome,device,address,value,pending_ns,processing_ns,handler_start_ns,handler_end_ns,notify_ns,complete_ns,free_ns,total_ns\n";

/// Writes the trace as CSV: [`CSV_HEADER`], then one row per request. `address` is hex (PCI:
/// `bb:dd.f@0xreg`), `value` hex, `device` the device's name (quoted if needed), timestamps in
/// ns on the trace clock with empty cells for stages not observed, `total_ns` the `total`
/// stage. Returns the sink.
pub fn export_csv<S: ByteSource, W: ByteSink>(
    mut reader: TraceReader<S>,
    sink: W,
) -> Result<W, TraceError> {
    let header = reader.header().clone();
    let mut out = Chunked::new(sink);
    out.buf.push_str(CSV_HEADER);
    let mut index = 0u64;
    while let Some(r) = reader.next_record()? {
        let _ = write!(
            out.buf,
            "{index},{},{},{},{},{},",
            r.vcpu,
            r.kind.name(),
            r.direction.name(),
            r.size,
            r.outcome.name()
        );
        let name = device_name(&header, r.device);
        if name.contains([',', '"', '\n', '\r']) {
            out.buf.push('"');
            out.buf.push_str(&name.replace('"', "\"\""));
            out.buf.push('"');
        } else {
            out.buf.push_str(name);
        }
        out.buf.push(',');
        location(&mut out.buf, &r);
        let _ = write!(out.buf, ",{:#x}", r.value);
        for t in r.ts.to_array() {
            out.buf.push(',');
            if t != 0 {
                let _ = write!(out.buf, "{t}");
            }
        }
        out.buf.push(',');
        if let Some(d) = Stage::Total.duration(&r.ts) {
            let _ = write!(out.buf, "{d}");
        }
        out.buf.push('\n');
        index += 1;
        out.maybe_flush()?;
    }
    out.finish()
}
