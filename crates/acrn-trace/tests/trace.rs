//! Format round trips, truncation at every offset, corrupt input, reports against an oracle,
//! exports, and a seeded fuzz run: no input may make the decoder panic.
#![allow(clippy::unwrap_used)]

use acrn_trace::export::{
    CSV_HEADER, ChromeOptions, export_chrome, export_chrome_with, export_csv,
};
use acrn_trace::format::{FIXED_HEADER_SIZE, pci_address};
use acrn_trace::{
    ByteSource, CompletionMode, DeviceInfo, Direction, ErrorKind, GroupBy, IoType, NO_DEVICE,
    Outcome, RECORD_SIZE, Report, Stage, TraceError, TraceHeader, TraceReader, TraceRecord,
    TraceWriter,
};

/// xorshift64*: reproducible pseudo-random numbers.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn header() -> TraceHeader {
    let mut h = TraceHeader::new("vm-sample", 4);
    h.vm.vmid = 3;
    h.vm.completion = CompletionMode::Polling;
    h.clock.start_ns = 1_000_000;
    h.clock.wall_start_ns = 1_700_000_000_000_000_000;
    h.devices = vec![
        DeviceInfo {
            id: 0,
            name: "uart0".into(),
            kind: IoType::Pio,
            base: 0x3f8,
            length: 8,
        },
        DeviceInfo {
            id: 7,
            name: "hpet, \"timer\"".into(),
            kind: IoType::Mmio,
            base: 0xfed0_0000,
            length: 0x400,
        },
        DeviceInfo {
            id: 9,
            name: "lpc".into(),
            kind: IoType::Pci,
            base: pci_address(0, 0x1f, 0, 0),
            length: 0x1000,
        },
    ];
    h
}

fn random_record(r: &mut Rng, t: &mut u64) -> TraceRecord {
    let kind = [IoType::Pio, IoType::Mmio, IoType::Pci][r.below(3) as usize];
    let direction = if r.below(2) == 0 {
        Direction::Read
    } else {
        Direction::Write
    };
    let (address, device) = match kind {
        IoType::Pio => (0x3f8 + r.below(8), 0),
        IoType::Mmio => (0xfed0_0000 + 8 * r.below(4), 7),
        IoType::Pci => (pci_address(0, 0x1f, 0, (4 * r.below(16)) as u16), 9),
    };
    let mut rec = TraceRecord::new(r.below(4) as u16, kind, direction, 4, address);
    rec.device = if r.below(10) == 0 { NO_DEVICE } else { device };
    rec.outcome = if rec.device == NO_DEVICE {
        Outcome::Unclaimed
    } else {
        Outcome::Ok
    };
    rec.value = r.next();
    *t += 100 + r.below(1000);
    let mut s = *t;
    let mut step = |r: &mut Rng| {
        s += 50 + r.below(5000) * (1 + r.below(3) * r.below(3));
        s
    };
    rec.ts.pending = *t;
    rec.ts.processing = step(r);
    rec.ts.handler_start = step(r);
    rec.ts.handler_end = step(r);
    rec.ts.notify = step(r);
    rec.ts.complete = step(r);
    rec.ts.free = if r.below(8) == 0 { 0 } else { step(r) };
    rec
}

fn records(seed: u64, n: usize) -> Vec<TraceRecord> {
    let mut r = Rng(seed);
    let mut t = 2_000_000;
    (0..n).map(|_| random_record(&mut r, &mut t)).collect()
}

fn encode(h: &TraceHeader, recs: &[TraceRecord], footer: bool) -> Vec<u8> {
    let mut w = TraceWriter::new(Vec::new(), h).unwrap();
    for r in recs {
        w.write_record(r).unwrap();
    }
    if footer {
        w.finish().unwrap()
    } else {
        w.into_inner()
    }
}

/// Reads a whole trace: header, records, footer count.
fn read_all(bytes: &[u8]) -> Result<(TraceHeader, Vec<TraceRecord>, Option<u64>), TraceError> {
    let mut rd = TraceReader::new(bytes)?;
    let mut out = Vec::new();
    while let Some(r) = rd.next_record()? {
        out.push(r);
    }
    Ok((rd.header().clone(), out, rd.footer_count()))
}

#[test]
fn round_trip_with_and_without_footer() {
    let h = header();
    let recs = records(1, 500);
    let bytes = encode(&h, &recs, true);
    let (h2, r2, footer) = read_all(&bytes).unwrap();
    assert_eq!(h2, h);
    assert_eq!(r2, recs);
    assert_eq!(footer, Some(500));

    let bytes = encode(&h, &recs, false);
    let (_, r3, footer) = read_all(&bytes).unwrap();
    assert_eq!(r3, recs);
    assert_eq!(footer, None);

    // Empty traces too.
    let (_, r4, footer) = read_all(&encode(&h, &[], true)).unwrap();
    assert!(r4.is_empty());
    assert_eq!(footer, Some(0));
}

#[test]
fn layout_is_as_documented() {
    let h = header();
    let mut rec = TraceRecord::new(2, IoType::Mmio, Direction::Write, 8, 0xfed0_00f0);
    rec.device = 7;
    rec.outcome = Outcome::HandlerError;
    rec.value = 0x1122_3344_5566_7788;
    rec.ts.pending = 10;
    rec.ts.free = 70;
    let bytes = encode(&h, &[rec], true);
    assert_eq!(&bytes[..8], b"ACRNTRC\0");
    assert_eq!(u16::from_le_bytes([bytes[8], bytes[9]]), 1);
    let hl = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    assert_eq!(hl % 8, 0);
    assert_eq!(
        u32::from_le_bytes(bytes[16..20].try_into().unwrap()),
        RECORD_SIZE as u32
    );
    assert_eq!(u16::from_le_bytes([bytes[20], bytes[21]]), 3); // devices
    assert_eq!(u16::from_le_bytes([bytes[22], bytes[23]]), 3); // vmid
    assert_eq!(u16::from_le_bytes([bytes[24], bytes[25]]), 4); // vcpus
    assert_eq!(bytes[26], 1); // polling
    // clock source name right after the fixed header
    assert_eq!(
        &bytes[FIXED_HEADER_SIZE + 2..FIXED_HEADER_SIZE + 2 + 15],
        b"CLOCK_MONOTONIC"
    );
    let r = &bytes[hl..hl + RECORD_SIZE];
    assert_eq!(r[0..2], [2, 0]);
    assert_eq!(r[2..6], [1, 1, 8, 3]);
    assert_eq!(r[6..8], [7, 0]);
    assert_eq!(
        u64::from_le_bytes(r[8..16].try_into().unwrap()),
        0xfed0_00f0
    );
    assert_eq!(
        u64::from_le_bytes(r[16..24].try_into().unwrap()),
        0x1122_3344_5566_7788
    );
    assert_eq!(u64::from_le_bytes(r[24..32].try_into().unwrap()), 10);
    assert_eq!(u64::from_le_bytes(r[72..80].try_into().unwrap()), 70);
    let f = &bytes[hl + RECORD_SIZE..];
    assert_eq!(f.len(), RECORD_SIZE);
    assert_eq!(&f[..8], b"ACRNEND\0");
    assert_eq!(u64::from_le_bytes(f[8..16].try_into().unwrap()), 1);
}

#[test]
fn truncation_at_every_offset_is_an_error_naming_the_offset_or_a_clean_partial_read() {
    let h = header();
    let recs = records(2, 3);
    let bytes = encode(&h, &recs, true);
    let hl = TraceReader::new(&bytes[..]).unwrap().header_len() as usize;
    let footer_at = hl + 3 * RECORD_SIZE;
    assert_eq!(bytes.len(), footer_at + RECORD_SIZE);
    for k in 0..=bytes.len() {
        let res = read_all(&bytes[..k]);
        if k < hl {
            let e = res.unwrap_err();
            assert_eq!(e.code(), "ERR_TRACE_TRUNCATED", "k={k}: {e}");
            assert_eq!(e.offset, k as u64, "k={k}: {e}");
            assert!(e.to_string().contains(&format!("byte offset {k}")), "{e}");
        } else if k == bytes.len() {
            let (_, r, f) = res.unwrap();
            assert_eq!((r.len(), f), (3, Some(3)));
        } else if (k - hl) % RECORD_SIZE == 0 {
            // A trace cut at a record boundary reads as an unfinished trace.
            let (_, r, f) = res.unwrap();
            assert_eq!(r, recs[..(k - hl) / RECORD_SIZE]);
            assert_eq!(f, None);
        } else {
            let e = res.unwrap_err();
            let at = hl + (k - hl) / RECORD_SIZE * RECORD_SIZE;
            assert_eq!(e.code(), "ERR_TRACE_TRUNCATED", "k={k}: {e}");
            assert_eq!(e.offset, at as u64, "k={k}: {e}");
            assert!(
                matches!(e.kind, ErrorKind::TruncatedRecord { got, .. } if got == k - at),
                "k={k}: {e:?}"
            );
            assert!(e.to_string().contains(&format!("byte offset {at}")), "{e}");
        }
    }
}

fn err(bytes: &[u8]) -> TraceError {
    read_all(bytes).unwrap_err()
}

#[test]
fn corrupt_traces_name_what_and_where() {
    let h = header();
    let good = encode(&h, &records(3, 4), true);
    let hl = TraceReader::new(&good[..]).unwrap().header_len() as usize;

    let mut b = good.clone();
    b[0] = b'X';
    let e = err(&b);
    assert_eq!((e.code(), e.offset), ("ERR_TRACE_BAD_MAGIC", 0));
    assert!(e.to_string().contains("not an acrn-hsm trace"));
    assert_eq!(err(b"hello").code(), "ERR_TRACE_BAD_MAGIC");
    assert_eq!(err(b"").code(), "ERR_TRACE_TRUNCATED");

    let mut b = good.clone();
    b[8] = 2;
    let e = err(&b);
    assert_eq!((e.code(), e.offset), ("ERR_TRACE_VERSION", 8));
    assert!(e.to_string().contains("version 2"), "{e}");

    let mut b = good.clone();
    b[12..16].copy_from_slice(&(1u32 << 30).to_le_bytes());
    let e = err(&b);
    assert_eq!((e.code(), e.offset), ("ERR_TRACE_CORRUPT", 12));

    // A header length beyond the file.
    let mut b = good.clone();
    b[12..16].copy_from_slice(&(good.len() as u32 + 64).to_le_bytes());
    let e = err(&b);
    assert_eq!(
        (e.code(), e.offset),
        ("ERR_TRACE_TRUNCATED", good.len() as u64)
    );

    let mut b = good.clone();
    b[16] = 64;
    assert_eq!(err(&b).offset, 16);

    // Device table longer than the header says.
    let mut b = good.clone();
    b[20] = 200;
    let e = err(&b);
    assert_eq!(e.code(), "ERR_TRACE_CORRUPT");
    assert!(e.to_string().contains("device table"), "{e}");

    // Record 2 with a bad type, a vCPU out of range, an unknown device.
    for (at, val, what) in [
        (2usize, 9u8, "type"),
        (3, 2, "direction"),
        (5, 77, "outcome"),
        (0, 4, "vcpu"),
        (6, 8, "device"),
    ] {
        let mut b = good.clone();
        let off = hl + 2 * RECORD_SIZE;
        b[off + at] = val;
        let e = err(&b);
        assert_eq!(
            (e.code(), e.offset),
            ("ERR_TRACE_CORRUPT", off as u64),
            "{e}"
        );
        assert!(
            e.to_string()
                .contains(&format!("record 2 at byte offset {off}")),
            "{e}"
        );
        assert!(e.to_string().contains(what), "{e}");
    }

    // Footer count disagreeing, and bytes after the footer.
    let mut b = good.clone();
    let foot = hl + 4 * RECORD_SIZE;
    b[foot + 8] = 5;
    let e = err(&b);
    assert!(matches!(
        e.kind,
        ErrorKind::CountMismatch {
            footer: 5,
            records: 4
        }
    ));
    assert_eq!(e.offset, foot as u64);
    let mut b = good.clone();
    b.push(0);
    let e = err(&b);
    assert_eq!(
        (e.kind.clone(), e.offset),
        (ErrorKind::TrailingData, good.len() as u64)
    );
}

/// A source that yields its bytes a few at a time (the reader must not assume full reads).
struct Dribble<'a>(&'a [u8], u64);
impl ByteSource for Dribble<'_> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, String> {
        self.1 = self.1.wrapping_mul(6364136223846793005).wrapping_add(1);
        let n = buf.len().min(self.0.len()).min(1 + (self.1 >> 60) as usize);
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

#[test]
fn short_reads_and_failing_sources() {
    let h = header();
    let recs = records(4, 2000); // > the 64 KiB buffer
    let bytes = encode(&h, &recs, true);
    let mut rd = TraceReader::new(Dribble(&bytes, 1)).unwrap();
    let got: Result<Vec<_>, _> = rd.by_ref().collect();
    assert_eq!(got.unwrap(), recs);
    assert_eq!(rd.footer_count(), Some(2000));

    #[derive(Debug)]
    struct Failing(usize);
    impl ByteSource for Failing {
        fn read(&mut self, buf: &mut [u8]) -> Result<usize, String> {
            if self.0 == 0 {
                return Err("disk on fire".into());
            }
            let n = buf.len().min(self.0);
            buf[..n].fill(0);
            self.0 -= n;
            Ok(n)
        }
    }
    let e = TraceReader::new(Failing(0)).unwrap_err();
    assert_eq!(e.code(), "ERR_TRACE_IO");
    assert!(e.to_string().contains("disk on fire"));
}

fn oracle(sorted: &[u64], per_100k: u64) -> u64 {
    let rank = ((sorted.len() as u64 * per_100k).div_ceil(100_000)).max(1);
    sorted[rank as usize - 1]
}

#[test]
fn report_counts_groups_and_percentiles() {
    let h = header();
    let recs = records(5, 5000);
    let bytes = encode(&h, &recs, true);
    for by in [
        GroupBy::Address,
        GroupBy::Device,
        GroupBy::Vcpu,
        GroupBy::Type,
    ] {
        let rep = Report::from_reader(TraceReader::new(&bytes[..]).unwrap(), by).unwrap();
        assert_eq!(rep.requests, 5000);
        assert!(rep.footer);
        assert_eq!(rep.groups.iter().map(|g| g.count).sum::<u64>(), 5000);
        for w in rep.groups.windows(2) {
            assert!(w[0].count >= w[1].count);
        }
        for g in &rep.groups {
            // Oracle: the same records, grouped by hand.
            let members: Vec<&TraceRecord> = recs
                .iter()
                .filter(|r| match by {
                    GroupBy::Address => r.address_key() == g.key,
                    GroupBy::Type => r.type_key() == g.key,
                    GroupBy::Vcpu => format!("vcpu{}", r.vcpu) == g.key,
                    GroupBy::Device => {
                        let name = if r.device == NO_DEVICE {
                            "(none)".to_string()
                        } else {
                            h.device(r.device).unwrap().name.clone()
                        };
                        name == g.key
                    }
                })
                .collect();
            assert_eq!(members.len() as u64, g.count, "{}", g.key);
            assert!((g.share - g.count as f64 / 5000.0).abs() < 1e-12);
            for stage in Stage::ALL {
                let mut v: Vec<u64> = members
                    .iter()
                    .filter_map(|r| stage.duration(&r.ts))
                    .collect();
                v.sort_unstable();
                let hst = g.stage(stage);
                assert_eq!(hst.count(), v.len() as u64);
                if v.is_empty() {
                    continue;
                }
                assert_eq!(hst.min(), Some(v[0]));
                assert_eq!(hst.max(), v.last().copied());
                for q in [50_000, 99_000, 99_900] {
                    let exact = oracle(&v, q);
                    let got = hst.percentile(q as u32).unwrap();
                    assert!(
                        got >= exact && got - exact <= exact / 128,
                        "{stage:?} q={q}"
                    );
                }
            }
        }
    }
    // Keys look as documented.
    let rep = Report::from_reader(TraceReader::new(&bytes[..]).unwrap(), GroupBy::Address).unwrap();
    let keys: Vec<&str> = rep.groups.iter().map(|g| g.key.as_str()).collect();
    assert!(keys.contains(&"0x3f8:PIO-W"), "{keys:?}");
    assert!(keys.contains(&"0xfed00000:MMIO-R"), "{keys:?}");
    assert!(keys.contains(&"00:1f.0@0x4:PCI-R"), "{keys:?}");
}

#[test]
fn report_json_has_the_documented_shape() {
    let h = header();
    let recs = records(6, 300);
    let bytes = encode(&h, &recs, false);
    let rep = Report::from_reader(TraceReader::new(&bytes[..]).unwrap(), GroupBy::Device).unwrap();
    let v: serde_json::Value = serde_json::from_str(&rep.to_json()).unwrap();
    assert_eq!(v["requests"], 300);
    assert_eq!(v["footer"], false);
    let groups = v["groups"].as_array().unwrap();
    assert_eq!(
        groups
            .iter()
            .map(|g| g["count"].as_u64().unwrap())
            .sum::<u64>(),
        300
    );
    for g in groups {
        for k in [
            "key", "count", "share", "min_ns", "p50_ns", "p99_ns", "p999_ns", "max_ns",
        ] {
            assert!(g.get(k).is_some(), "missing {k} in {g}");
        }
        assert!(g["min_ns"].as_u64().unwrap() <= g["p50_ns"].as_u64().unwrap());
        assert!(g["p50_ns"].as_u64().unwrap() <= g["p99_ns"].as_u64().unwrap());
        assert!(g["p999_ns"].as_u64().unwrap() <= g["max_ns"].as_u64().unwrap());
        assert_eq!(g["stages"]["total"]["p50_ns"], g["p50_ns"]);
    }
    // The device name with a quote and a comma survives JSON escaping.
    assert!(groups.iter().any(|g| g["key"] == "hpet, \"timer\""));
}

#[test]
fn chrome_export_parses_and_has_the_expected_events() {
    let h = header();
    let mut recs = records(7, 200);
    // One request seen only from PROCESSING on (as on a real system): no total event.
    recs[10].ts.pending = 0;
    let bytes = encode(&h, &recs, true);
    let out = export_chrome_with(
        TraceReader::new(&bytes[..]).unwrap(),
        Vec::new(),
        &ChromeOptions::full(),
    )
    .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let ev = v["traceEvents"].as_array().unwrap();
    let by_ph = |ph: &str| ev.iter().filter(|e| e["ph"] == ph).collect::<Vec<_>>();
    let meta = by_ph("M");
    // The UI shows the pid (the vmid) beside the name: the name does not repeat it.
    assert!(
        meta.iter()
            .any(|e| e["name"] == "process_name" && e["args"]["name"] == "VM vm-sample")
    );
    for v in 0..4 {
        assert!(meta.iter().any(|e| e["name"] == "thread_name"
            && e["tid"] == v
            && e["args"]["name"] == format!("vCPU {v}")));
    }
    let x = by_ph("X");
    let expected_stage_events: usize = recs
        .iter()
        .map(|r| {
            Stage::ALL[1..]
                .iter()
                .filter(|s| s.span(&r.ts).is_some())
                .count()
        })
        .sum();
    let totals = x.iter().filter(|e| e["cat"] == "ioreq").count();
    assert_eq!(totals, 199);
    assert_eq!(x.len(), 199 + expected_stage_events);
    for e in &x {
        assert!(e["ts"].as_f64().unwrap() >= 0.0);
        assert!(e["dur"].as_f64().unwrap() >= 0.0);
        assert_eq!(e["pid"], 3);
        assert!(e["tid"].as_u64().unwrap() < 4);
    }
    // The first request's total event: ts (µs from clock start) and dur exact.
    let r0 = &recs[0];
    let e0 = x.iter().find(|e| e["cat"] == "ioreq").unwrap();
    assert_eq!(e0["name"], r0.address_key());
    let ts = e0["ts"].as_f64().unwrap();
    assert!((ts - (r0.ts.pending - 1_000_000) as f64 / 1000.0).abs() < 1e-6);
    assert_eq!(e0["args"]["value"], format!("{:#x}", r0.value));
    let c = by_ph("C");
    assert_eq!(c.len(), 199);
    for e in &c {
        assert_eq!(e["args"].as_object().unwrap().len(), 1);
    }
    assert_eq!(v["otherData"]["requests"], 200);
}

/// Stage slices per request in `recs` (what the full export adds to the compact one).
fn stage_events(recs: &[TraceRecord]) -> usize {
    recs.iter()
        .map(|r| {
            Stage::ALL[1..]
                .iter()
                .filter(|s| s.span(&r.ts).is_some())
                .count()
        })
        .sum()
}

#[test]
fn chrome_export_compact_by_default_within_4x_of_the_binary() {
    let h = header();
    let mut recs = records(11, 20_000);
    // Stamps 100 s into the run (longer `ts` strings than the start of a trace).
    for r in &mut recs {
        for t in [
            &mut r.ts.pending,
            &mut r.ts.processing,
            &mut r.ts.handler_start,
            &mut r.ts.handler_end,
            &mut r.ts.notify,
            &mut r.ts.complete,
            &mut r.ts.free,
        ] {
            if *t != 0 {
                *t += 100_000_000_000;
            }
        }
    }
    recs[3].ts.pending = 0;
    let bytes = encode(&h, &recs, true);
    let out = export_chrome(TraceReader::new(&bytes[..]).unwrap(), Vec::new()).unwrap();
    let ratio = out.len() as f64 / bytes.len() as f64;
    assert!(ratio <= 4.0, "compact export {ratio:.2}x the binary");
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let ev = v["traceEvents"].as_array().unwrap();
    let x: Vec<_> = ev.iter().filter(|e| e["ph"] == "X").collect();
    // One slice per request with a total; the request without PENDING keeps its stages.
    let totals = x.iter().filter(|e| e["cat"] == "ioreq").count();
    assert_eq!(totals, recs.len() - 1);
    assert_eq!(x.len(), totals + stage_events(&recs[3..4]));
    assert_eq!(v["otherData"]["exported"], 20_000);
    // The full form is the 12x one.
    let full = export_chrome_with(
        TraceReader::new(&bytes[..]).unwrap(),
        Vec::new(),
        &ChromeOptions::full(),
    )
    .unwrap();
    assert!(full.len() as f64 / bytes.len() as f64 > 6.0);
}

#[test]
fn chrome_export_subset_by_time_and_vcpu() {
    let h = header();
    let recs = records(12, 2000);
    let bytes = encode(&h, &recs, true);
    let base = h.clock.start_ns;
    let first = |r: &TraceRecord| {
        r.ts.to_array()
            .into_iter()
            .filter(|&t| t != 0)
            .min()
            .unwrap()
            - base
    };
    let mid = first(&recs[1000]);
    let o = ChromeOptions {
        from_ns: Some(first(&recs[500])),
        to_ns: Some(mid),
        vcpus: Some(vec![1, 2]),
        no_counter: true,
        ..Default::default()
    };
    let out = export_chrome_with(TraceReader::new(&bytes[..]).unwrap(), Vec::new(), &o).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let ev = v["traceEvents"].as_array().unwrap();
    let want: Vec<u64> = recs
        .iter()
        .enumerate()
        .filter(|(_, r)| {
            let f = first(r);
            f >= first(&recs[500]) && f < mid && (r.vcpu == 1 || r.vcpu == 2)
        })
        .map(|(i, _)| i as u64)
        .collect();
    assert!(want.len() > 100, "{}", want.len());
    let mut got: Vec<u64> = ev
        .iter()
        .filter(|e| e["ph"] == "X")
        .map(|e| e["args"]["index"].as_u64().unwrap())
        .collect();
    got.dedup();
    assert_eq!(got, want);
    assert!(ev.iter().all(|e| e["ph"] != "C"));
    assert_eq!(v["otherData"]["exported"], want.len());
    assert_eq!(v["otherData"]["requests"], 2000);
}

#[test]
fn csv_export_has_a_header_and_one_row_per_request() {
    let h = header();
    let recs = records(8, 50);
    let bytes = encode(&h, &recs, true);
    let out = export_csv(TraceReader::new(&bytes[..]).unwrap(), Vec::new()).unwrap();
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 51);
    assert_eq!(lines[0], CSV_HEADER.trim_end());
    let cols = CSV_HEADER.trim_end().split(',').count();
    for (i, (l, r)) in lines[1..].iter().zip(&recs).enumerate() {
        assert!(l.starts_with(&format!("{i},{},", r.vcpu)), "{l}");
        if !l.contains('"') {
            assert_eq!(l.split(',').count(), cols, "{l}");
        }
        assert!(l.contains(&format!("{:#x}", r.value)));
        let total = Stage::Total
            .duration(&r.ts)
            .map_or(String::new(), |d| d.to_string());
        assert!(l.ends_with(&format!(",{total}")), "{l}");
    }
}

#[test]
fn writer_refuses_records_the_reader_would_reject() {
    let h = header();
    let mut w = TraceWriter::new(Vec::new(), &h).unwrap();
    let mut r = TraceRecord::new(4, IoType::Pio, Direction::Read, 1, 0x60);
    assert_eq!(w.write_record(&r).unwrap_err().code(), "ERR_TRACE_CORRUPT");
    r.vcpu = 0;
    r.device = 1;
    assert!(w.write_record(&r).is_err());
    r.device = 0;
    w.write_record(&r).unwrap();
    assert_eq!(w.records_written(), 1);
    let mut dup = header();
    dup.devices[1].id = 0;
    assert!(TraceWriter::new(Vec::new(), &dup).is_err());
}

/// Decodes, reports and exports any bytes; returns whether decoding succeeded.
fn exercise(bytes: &[u8]) -> bool {
    let ok = read_all(bytes).is_ok();
    if let Ok(rd) = TraceReader::new(bytes) {
        let _ = Report::from_reader(rd, GroupBy::Address).map(|r| r.to_json());
    }
    if let Ok(rd) = TraceReader::new(bytes) {
        let _ = export_chrome(rd, Vec::new());
    }
    if let Ok(rd) = TraceReader::new(bytes) {
        let _ = export_csv(rd, Vec::new());
    }
    ok
}

#[test]
fn fuzz_random_and_mutated_input_never_panics() {
    let h = header();
    let good = encode(&h, &records(9, 20), true);
    let mut r = Rng(0x5eed);
    let (mut ok, mut bad) = (0, 0);
    for i in 0..4000 {
        let bytes: Vec<u8> = match i % 4 {
            0 => (0..r.below(400)).map(|_| r.next() as u8).collect(),
            1 => {
                // A valid fixed header, random rest.
                let mut b = good[..FIXED_HEADER_SIZE].to_vec();
                b.extend((0..r.below(600)).map(|_| r.next() as u8));
                b
            }
            _ => {
                let mut b = good.clone();
                for _ in 0..1 + r.below(4) {
                    let at = r.below(b.len() as u64) as usize;
                    match r.below(4) {
                        0 => b[at] = r.next() as u8,
                        1 => b[at] ^= 1 << r.below(8),
                        2 => b.truncate(at),
                        _ => b.insert(at, r.next() as u8),
                    }
                    if b.is_empty() {
                        break;
                    }
                }
                b
            }
        };
        if exercise(&bytes) {
            ok += 1;
        } else {
            bad += 1;
        }
    }
    // Both paths were exercised.
    assert!(ok > 100 && bad > 1000, "ok={ok} bad={bad}");
}

/// A source that generates a finished trace of `n` records on the fly, in constant memory.
struct Synthetic {
    head: Vec<u8>,
    pos: usize,
    n: u64,
    i: u64,
    rec: [u8; RECORD_SIZE],
    rec_pos: usize,
    footer_done: bool,
}

impl ByteSource for Synthetic {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, String> {
        if self.pos < self.head.len() {
            let n = buf.len().min(self.head.len() - self.pos);
            buf[..n].copy_from_slice(&self.head[self.pos..self.pos + n]);
            self.pos += n;
            return Ok(n);
        }
        if self.rec_pos == RECORD_SIZE {
            if self.i < self.n {
                let mut r = TraceRecord::new(
                    (self.i % 4) as u16,
                    IoType::Pio,
                    Direction::Write,
                    1,
                    0x3f8 + self.i % 2,
                );
                r.device = 0;
                r.ts.pending = 1_000 + self.i * 1000;
                r.ts.free = r.ts.pending + 100 + self.i % 1000;
                r.encode(&mut self.rec);
                self.i += 1;
            } else if !self.footer_done {
                self.rec = [0; RECORD_SIZE];
                self.rec[..8].copy_from_slice(b"ACRNEND\0");
                self.rec[8..16].copy_from_slice(&self.n.to_le_bytes());
                self.footer_done = true;
            } else {
                return Ok(0);
            }
            self.rec_pos = 0;
        }
        let n = buf.len().min(RECORD_SIZE - self.rec_pos);
        buf[..n].copy_from_slice(&self.rec[self.rec_pos..self.rec_pos + n]);
        self.rec_pos += n;
        Ok(n)
    }
}

#[test]
fn a_million_requests_stream_through_in_bounded_memory() {
    let n = 1_000_000;
    let src = Synthetic {
        head: header().encode().unwrap(),
        pos: 0,
        n,
        i: 0,
        rec: [0; RECORD_SIZE],
        rec_pos: RECORD_SIZE,
        footer_done: false,
    };
    let rep = Report::from_reader(TraceReader::new(src).unwrap(), GroupBy::Address).unwrap();
    assert_eq!(rep.requests, n);
    assert!(rep.footer);
    assert_eq!(rep.groups.len(), 2);
    let g = &rep.groups[0];
    assert_eq!(g.count, n / 2);
    assert_eq!(g.stage(Stage::Total).min(), Some(100));
    // Group 0x3f8 holds the even requests: latencies 100 + (even numbers below 1000).
    assert_eq!(g.key, "0x3f8:PIO-W");
    assert_eq!(g.stage(Stage::Total).max(), Some(1098));
}

#[cfg(feature = "std")]
#[test]
fn std_adapters_stream_files() {
    use acrn_trace::{IoSink, IoSource};
    let dir = std::env::temp_dir().join(format!("acrn-trace-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("t.trace");
    let recs = records(10, 100);
    let file = std::fs::File::create(&path).unwrap();
    let mut w = TraceWriter::new(IoSink(std::io::BufWriter::new(file)), &header()).unwrap();
    for r in &recs {
        w.write_record(r).unwrap();
    }
    let sink = w.finish().unwrap();
    drop(sink);
    let rd = TraceReader::new(IoSource(std::fs::File::open(&path).unwrap())).unwrap();
    let got: Vec<_> = rd.collect::<Result<_, _>>().unwrap();
    assert_eq!(got, recs);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn report_time_share_and_vcpu_filter() {
    let h = header();
    let recs = records(13, 3000);
    let bytes = encode(&h, &recs, true);
    let total = |r: &TraceRecord| Stage::Total.duration(&r.ts).unwrap_or(0) as f64;
    let all: f64 = recs.iter().map(total).sum();
    let v: serde_json::Value =
        serde_json::from_str(&acrn_trace::flat::report_json(&bytes, "vcpu").unwrap()).unwrap();
    for g in v["groups"].as_array().unwrap() {
        let vcpu: u16 = g["key"].as_str().unwrap()[4..].parse().unwrap();
        let mine: f64 = recs.iter().filter(|r| r.vcpu == vcpu).map(total).sum();
        let got = g["time_share"].as_f64().unwrap();
        assert!((got - mine / all).abs() < 1e-5, "{got} vs {}", mine / all);
    }
    let f: serde_json::Value = serde_json::from_str(
        &acrn_trace::flat::report_json_with(&bytes, "address", Some(vec![2])).unwrap(),
    )
    .unwrap();
    let want = recs.iter().filter(|r| r.vcpu == 2).count();
    assert!(want > 100);
    assert_eq!(f["requests"], want);
    let counted: u64 = f["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["count"].as_u64().unwrap())
        .sum();
    assert_eq!(counted, want as u64);
}

#[test]
fn report_over_a_time_window() {
    let h = header();
    let recs = records(14, 2000);
    let bytes = encode(&h, &recs, true);
    let first = |r: &TraceRecord| {
        r.ts.to_array()
            .into_iter()
            .filter(|&t| t != 0)
            .min()
            .unwrap()
    };
    let (a, b) = (first(&recs[400]), first(&recs[900]));
    let want = recs.iter().filter(|r| (a..b).contains(&first(r))).count();
    assert!(want >= 400, "{want}");
    let v: serde_json::Value = serde_json::from_str(
        &acrn_trace::flat::report_json_window(&bytes, "device", a, b).unwrap(),
    )
    .unwrap();
    assert_eq!(v["requests"], want);
}
