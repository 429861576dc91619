//! Flat forms shared by the native and wasm bindings, so both give the same results by
//! construction: columnar decode, header as JSON, traces encoded from `u64` words, and the
//! report / exports of an in-memory trace.

use crate::error::{ErrorKind, TraceError};
use crate::export::{ChromeOptions, export_chrome_with, export_csv};
use crate::format::{
    CompletionMode, DeviceInfo, Direction, IoType, Outcome, RECORD_SIZE, STAMP_COUNT, Timestamps,
    TraceHeader, TraceRecord,
};
use crate::reader::TraceReader;
use crate::report::{GroupBy, Report, ReportBuilder, json_str};
use crate::writer::TraceWriter;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

/// Words per record in [`encode_flat`]: `vcpu, type, direction, size, outcome, device, address,
/// value`, then the seven timestamps (`pending` .. `free`).
pub const RECORD_WORDS: usize = 8 + STAMP_COUNT;
/// Words of the `meta` argument of [`encode_flat`]: `vmid, vcpu_count, completion (0 notify,
/// 1 polling), clock resolution ns, clock start ns, wall-clock start ns`.
pub const META_WORDS: usize = 6;
/// Words per device in [`encode_flat`]: `id, kind, base, length`.
pub const DEVICE_WORDS: usize = 4;

fn invalid(what: &'static str) -> TraceError {
    TraceError::new(0, ErrorKind::InvalidArgument(what))
}

/// The header as JSON, `u64` quantities as decimal strings (exact in JavaScript):
/// `{"version", "recordSize", "clock": {"source", "resolutionNs", "startNs", "wallStartNs"},
/// "vm": {"vmid", "vcpuCount", "completion", "name"}, "devices": [{"id", "name", "kind",
/// "base", "length"}]}`.
pub fn header_json(h: &TraceHeader) -> String {
    let mut s = String::with_capacity(256 + 64 * h.devices.len());
    let _ = write!(
        s,
        "{{\"version\":{},\"recordSize\":{RECORD_SIZE},\"clock\":{{\"source\":",
        h.version
    );
    json_str(&mut s, &h.clock.source);
    let _ = write!(
        s,
        ",\"resolutionNs\":{},\"startNs\":\"{}\",\"wallStartNs\":\"{}\"}},\"vm\":{{\"vmid\":{},\"vcpuCount\":{},\"completion\":\"{}\",\"name\":",
        h.clock.resolution_ns,
        h.clock.start_ns,
        h.clock.wall_start_ns,
        h.vm.vmid,
        h.vm.vcpu_count,
        h.vm.completion.name()
    );
    json_str(&mut s, &h.vm.name);
    s.push_str("},\"devices\":[");
    for (i, d) in h.devices.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{{\"id\":{},\"name\":", d.id);
        json_str(&mut s, &d.name);
        let _ = write!(
            s,
            ",\"kind\":\"{}\",\"base\":\"{}\",\"length\":\"{}\"}}",
            d.kind.name(),
            d.base,
            d.length
        );
    }
    s.push_str("]}");
    s
}

/// A decoded trace in columns (record `i` is element `i` of each column; timestamps are
/// stage-major: `timestamps[stage * count + i]`, stages in record order).
#[derive(Debug, Clone, Default)]
pub struct Columns {
    /// Number of records.
    pub count: usize,
    /// vCPU of each record.
    pub vcpu: Vec<u16>,
    /// Type (`0` pio, `1` mmio, `2` pci).
    pub kind: Vec<u8>,
    /// Direction (`0` read, `1` write).
    pub direction: Vec<u8>,
    /// Access size.
    pub size: Vec<u8>,
    /// Outcome (`Outcome as u8`).
    pub outcome: Vec<u8>,
    /// Device id (`0xFFFF` = none).
    pub device: Vec<u16>,
    /// Address (PCI: packed).
    pub address: Vec<u64>,
    /// Value.
    pub value: Vec<u64>,
    /// The seven timestamps, stage-major.
    pub timestamps: Vec<u64>,
}

/// A whole in-memory trace, decoded: header, records in columns, footer count (`None` when
/// the trace has no footer).
pub fn decode_columns(bytes: &[u8]) -> Result<(TraceHeader, Columns, Option<u64>), TraceError> {
    let mut rd = TraceReader::new(bytes)?;
    let cap = bytes.len().saturating_sub(rd.header_len() as usize) / RECORD_SIZE;
    let mut c = Columns {
        count: 0,
        vcpu: Vec::with_capacity(cap),
        kind: Vec::with_capacity(cap),
        direction: Vec::with_capacity(cap),
        size: Vec::with_capacity(cap),
        outcome: Vec::with_capacity(cap),
        device: Vec::with_capacity(cap),
        address: Vec::with_capacity(cap),
        value: Vec::with_capacity(cap),
        timestamps: Vec::new(),
    };
    let mut ts: [Vec<u64>; STAMP_COUNT] = core::array::from_fn(|_| Vec::with_capacity(cap));
    while let Some(r) = rd.next_record()? {
        c.vcpu.push(r.vcpu);
        c.kind.push(r.kind as u8);
        c.direction.push(r.direction as u8);
        c.size.push(r.size);
        c.outcome.push(r.outcome as u8);
        c.device.push(r.device);
        c.address.push(r.address);
        c.value.push(r.value);
        for (col, t) in ts.iter_mut().zip(r.ts.to_array()) {
            col.push(t);
        }
    }
    c.count = c.vcpu.len();
    c.timestamps = ts.concat();
    let footer = rd.footer_count();
    Ok((rd.header().clone(), c, footer))
}

/// A header from its flat form: `meta` ([`META_WORDS`] words), `names` (clock source, VM
/// name, then one per device) and `devices` ([`DEVICE_WORDS`] words per device).
pub fn header_from_parts(
    meta: &[u64],
    names: &[String],
    devices: &[u64],
) -> Result<TraceHeader, TraceError> {
    let [vmid, vcpus, completion, resolution, start, wall] = meta else {
        return Err(invalid("meta must hold 6 words"));
    };
    if devices.len() % DEVICE_WORDS != 0 {
        return Err(invalid("devices must hold 4 words per device"));
    }
    let n = devices.len() / DEVICE_WORDS;
    if names.len() != 2 + n {
        return Err(invalid(
            "names must hold the clock source, the VM name and one name per device",
        ));
    }
    let u16w = |v: u64, what| u16::try_from(v).map_err(|_| invalid(what));
    let mut h = TraceHeader::new(&names[1], u16w(*vcpus, "vcpu count above 65535")?);
    h.vm.vmid = u16w(*vmid, "vmid above 65535")?;
    h.vm.completion = match completion {
        0 => CompletionMode::Notify,
        1 => CompletionMode::Polling,
        _ => return Err(invalid("completion must be 0 (notify) or 1 (polling)")),
    };
    h.clock.source.clone_from(&names[0]);
    h.clock.resolution_ns =
        u32::try_from(*resolution).map_err(|_| invalid("clock resolution above 2^32 ns"))?;
    h.clock.start_ns = *start;
    h.clock.wall_start_ns = *wall;
    for (d, name) in devices.chunks_exact(DEVICE_WORDS).zip(&names[2..]) {
        let kind = u8::try_from(d[1])
            .ok()
            .and_then(IoType::from_u8)
            .ok_or_else(|| invalid("device kind must be 0 (pio), 1 (mmio) or 2 (pci)"))?;
        h.devices.push(DeviceInfo {
            id: u16w(d[0], "device id above 65535")?,
            name: name.clone(),
            kind,
            base: d[2],
            length: d[3],
        });
    }
    Ok(h)
}

/// A record from its [`RECORD_WORDS`] words.
pub fn record_from_words(w: &[u64]) -> Result<TraceRecord, TraceError> {
    let [
        vcpu,
        kind,
        direction,
        size,
        outcome,
        device,
        address,
        value,
        ts @ ..,
    ] = w
    else {
        return Err(invalid("a record has 15 words"));
    };
    let small = |v: u64| u8::try_from(v).ok();
    let mut stamps = [0u64; STAMP_COUNT];
    if ts.len() != STAMP_COUNT {
        return Err(invalid("a record has 15 words"));
    }
    stamps.copy_from_slice(ts);
    Ok(TraceRecord {
        vcpu: u16::try_from(*vcpu).map_err(|_| invalid("vcpu above 65535"))?,
        kind: small(*kind)
            .and_then(IoType::from_u8)
            .ok_or_else(|| invalid("type must be 0 (pio), 1 (mmio) or 2 (pci)"))?,
        direction: small(*direction)
            .and_then(Direction::from_u8)
            .ok_or_else(|| invalid("direction must be 0 (read) or 1 (write)"))?,
        size: small(*size).ok_or_else(|| invalid("size above 255"))?,
        outcome: small(*outcome)
            .and_then(Outcome::from_u8)
            .ok_or_else(|| invalid("outcome must be 0..=5"))?,
        device: u16::try_from(*device).map_err(|_| invalid("device id above 65535"))?,
        address: *address,
        value: *value,
        ts: Timestamps::from_array(stamps),
    })
}

/// Encodes a whole trace from its flat form (see [`header_from_parts`], [`RECORD_WORDS`]);
/// with `finish`, the trace gets its footer.
pub fn encode_flat(
    meta: &[u64],
    names: &[String],
    devices: &[u64],
    records: &[u64],
    finish: bool,
) -> Result<Vec<u8>, TraceError> {
    let h = header_from_parts(meta, names, devices)?;
    if records.len() % RECORD_WORDS != 0 {
        return Err(invalid("records must hold 15 words per record"));
    }
    let mut w = TraceWriter::new(
        Vec::with_capacity(512 + records.len() / RECORD_WORDS * RECORD_SIZE),
        &h,
    )?;
    for words in records.chunks_exact(RECORD_WORDS) {
        w.write_record(&record_from_words(words)?)?;
    }
    if finish {
        w.finish()
    } else {
        Ok(w.into_inner())
    }
}

/// Parses a `--by` value.
pub fn group_by(by: &str) -> Result<GroupBy, TraceError> {
    GroupBy::parse(by).ok_or_else(|| invalid("group by must be address, device, vcpu or type"))
}

/// The JSON report (see [`Report::to_json`]) of an in-memory trace.
pub fn report_json(bytes: &[u8], by: &str) -> Result<String, TraceError> {
    report_json_with(bytes, by, None)
}

/// [`report_json`] over the requests of `vcpus` only (`None`: all).
pub fn report_json_with(
    bytes: &[u8],
    by: &str,
    vcpus: Option<Vec<u16>>,
) -> Result<String, TraceError> {
    let mut b = ReportBuilder::new(group_by(by)?);
    if let Some(v) = vcpus {
        b = b.only_vcpus(v);
    }
    Ok(Report::from_builder(TraceReader::new(bytes)?, b)?.to_json())
}

/// [`report_json`] over the requests whose first stamp is in `from_ns..to_ns` (trace clock ns).
pub fn report_json_window(
    bytes: &[u8],
    by: &str,
    from_ns: u64,
    to_ns: u64,
) -> Result<String, TraceError> {
    let b = ReportBuilder::new(group_by(by)?).only_window(from_ns, to_ns);
    Ok(Report::from_builder(TraceReader::new(bytes)?, b)?.to_json())
}

/// The Chrome Trace Event JSON of an in-memory trace (the compact form, every request).
pub fn chrome_json(bytes: &[u8]) -> Result<String, TraceError> {
    chrome_json_with(bytes, &ChromeOptions::default())
}

/// The Chrome Trace Event JSON of an in-memory trace, with the events and the subset `options`
/// selects.
pub fn chrome_json_with(bytes: &[u8], options: &ChromeOptions) -> Result<String, TraceError> {
    let out = export_chrome_with(TraceReader::new(bytes)?, Vec::new(), options)?;
    String::from_utf8(out).map_err(|_| invalid("export produced invalid UTF-8"))
}

/// The CSV of an in-memory trace.
pub fn csv(bytes: &[u8]) -> Result<String, TraceError> {
    let out = export_csv(TraceReader::new(bytes)?, Vec::new())?;
    String::from_utf8(out).map_err(|_| invalid("export produced invalid UTF-8"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    #[test]
    fn flat_encode_decode_round_trip() {
        let names = vec![
            "CLOCK_MONOTONIC".to_string(),
            "vm".to_string(),
            "uart\"0".to_string(),
        ];
        let meta = [2, 2, 1, 1, 100, 5];
        let devices = [4, 0, 0x3f8, 8];
        let mut recs = vec![
            1, 0, 1, 1, 0, 4, 0x3f8, 0x41, 110, 120, 130, 140, 150, 160, 170,
        ];
        recs.extend([
            0,
            1,
            0,
            4,
            1,
            0xffff,
            0xfed0_0000,
            u64::MAX,
            200,
            0,
            0,
            0,
            0,
            260,
            0,
        ]);
        let bytes = encode_flat(&meta, &names, &devices, &recs, true).unwrap();
        let (h, c, footer) = decode_columns(&bytes).unwrap();
        assert_eq!(footer, Some(2));
        assert_eq!(c.count, 2);
        assert_eq!(c.vcpu, [1, 0]);
        assert_eq!(c.device, [4, 0xffff]);
        assert_eq!(c.value, [0x41, u64::MAX]);
        assert_eq!(c.timestamps.len(), 14);
        assert_eq!(c.timestamps[0..2], [110, 200]); // pending column
        assert_eq!(c.timestamps[12..14], [170, 0]); // free column
        let j = header_json(&h);
        assert!(j.contains("\"completion\":\"polling\""), "{j}");
        assert!(j.contains("\"name\":\"uart\\\"0\""), "{j}");
        assert!(j.contains("\"startNs\":\"100\""), "{j}");
        assert_eq!(
            encode_flat(&meta, &names, &devices, &recs[..14], true)
                .map_err(|e| e.code())
                .err(),
            Some("ERR_TRACE_INVALID")
        );
        assert!(report_json(&bytes, "colour").is_err());
        assert!(report_json(&bytes, "vcpu").is_ok());
    }
}
