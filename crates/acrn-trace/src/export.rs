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

/// Writes the trace as Chrome Trace Event JSON (`{"traceEvents": [...]}`), which the Perfetto
/// UI opens:
///
/// * `M` metadata: the process (the VM: `pid` = vmid) and one thread per vCPU (`tid` = vCPU),
///   so each vCPU is a track.
/// * per request, on its vCPU's track, an `X` event named by its address key (`0x3f8:PIO-W`)
///   spanning the `total` stage, with `args` address, value, size, device, outcome and index;
///   and one nested `X` event per observed stage (`dispatch`, `queue`, `handler`, `reply`,
///   `completion`, `release`; category `stage`). A request whose PENDING time was not observed
///   has only its stage events.
/// * a `C` counter event per request, `latency_us` with one value (`total`, µs), at its
///   PENDING time: a latency-over-time track.
///
/// `ts`/`dur` are µs (with ns precision, three decimals) from the header's clock start (or
/// from the earliest timestamp if a timestamp precedes it). Returns the sink.
pub fn export_chrome<S: ByteSource, W: ByteSink>(
    mut reader: TraceReader<S>,
    sink: W,
) -> Result<W, TraceError> {
    let header = reader.header().clone();
    let base = header.clock.start_ns;
    let pid = header.vm.vmid;
    let mut out = Chunked::new(sink);
    out.buf.push_str("{\"traceEvents\":[\n");
    out.buf
        .push_str("{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":");
    let _ = write!(out.buf, "{pid},\"tid\":0,\"args\":{{\"name\":");
    json_str(
        &mut out.buf,
        &alloc::format!("VM {} (vmid {pid})", header.vm.name),
    );
    out.buf.push_str("}}");
    for v in 0..header.vm.vcpu_count {
        let _ = write!(
            out.buf,
            ",\n{{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":{pid},\"tid\":{v},\"args\":{{\"name\":\"vCPU {v}\"}}}}\
             ,\n{{\"name\":\"thread_sort_index\",\"ph\":\"M\",\"pid\":{pid},\"tid\":{v},\"args\":{{\"sort_index\":{v}}}}}"
        );
    }
    let mut index = 0u64;
    while let Some(r) = reader.next_record()? {
        let rel = |t: u64| t.saturating_sub(base);
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
            let _ = write!(
                out.buf,
                ",\n{{\"name\":\"latency_us\",\"ph\":\"C\",\"pid\":{pid},\"ts\":"
            );
            us(&mut out.buf, rel(a));
            out.buf.push_str(",\"args\":{\"total\":");
            us(&mut out.buf, b - a);
            out.buf.push_str("}}");
        }
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
        ",\"requests\":{index},\"complete\":{}}}}}",
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
