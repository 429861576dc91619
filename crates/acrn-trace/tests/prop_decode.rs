//! Property tests of the trace decoder on random, truncated and corrupted inputs from a seeded
//! PRNG (reproducible: the failing seed and case are printed).
//!
//! For every input: no panic, no hang (every loop is bounded by the input length), and
//! * random bytes: an error with a stable `ERR_*` code and an offset inside the input;
//! * a valid trace: read back exactly (header and records), and the report, Chrome and CSV
//!   exports succeed and count every record;
//! * a valid trace cut anywhere: the records read before the error (or the end) are a prefix of
//!   those written, never more; a cut inside the header is an error;
//! * a valid trace with bytes flipped: a prefix of records equal to those written up to the first
//!   corrupted one, then anything but a panic; report/exports/flat forms likewise.
//!
//! `cargo test -p acrn-trace --test prop_decode` runs a fixed budget (a few seconds in debug).
//! Longer: `ACRN_FUZZ_SECS=300 cargo test --release -p acrn-trace --test prop_decode --
//! --nocapture` (optional `ACRN_FUZZ_SEED=<n>`).

use prop_harness::{Budget, Rng};

use acrn_trace::export::{export_chrome, export_csv};
use acrn_trace::flat;
use acrn_trace::{
    DeviceInfo, Direction, GroupBy, IoType, MAGIC, Outcome, RECORD_SIZE, Report, Timestamps,
    TraceHeader, TraceReader, TraceRecord, TraceWriter,
};

fn seed() -> u64 {
    prop_harness::seed(0x7ace_5eed)
}

fn random_record(rng: &mut Rng, vcpus: u16, devices: u16) -> TraceRecord {
    let kind = [IoType::Pio, IoType::Mmio, IoType::Pci][rng.below(3) as usize];
    let dir = if rng.below(2) == 0 {
        Direction::Read
    } else {
        Direction::Write
    };
    let size = [1u8, 2, 4, 8][rng.below(4) as usize];
    let mut r = TraceRecord::new(
        rng.below(u64::from(vcpus)) as u16,
        kind,
        dir,
        size,
        rng.next(),
    );
    r.outcome = Outcome::ALL[rng.below(Outcome::ALL.len() as u64) as usize];
    r.device = if rng.below(3) == 0 || devices == 0 {
        acrn_trace::NO_DEVICE
    } else {
        rng.below(u64::from(devices)) as u16
    };
    r.value = rng.next();
    let base = rng.below(1 << 40);
    let mut t = base;
    let mut stamp = |rng: &mut Rng| {
        if rng.below(5) == 0 {
            0
        } else {
            t += rng.below(10_000);
            t
        }
    };
    r.ts = Timestamps {
        pending: stamp(rng),
        processing: stamp(rng),
        handler_start: stamp(rng),
        handler_end: stamp(rng),
        notify: stamp(rng),
        complete: stamp(rng),
        free: stamp(rng),
    };
    r
}

fn random_trace(rng: &mut Rng) -> (Vec<u8>, TraceHeader, Vec<TraceRecord>, bool) {
    let vcpus = 1 + rng.below(16) as u16;
    let mut h = TraceHeader::new(&format!("vm-{}", rng.below(1000)), vcpus);
    let devices = rng.below(4) as u16;
    for id in 0..devices {
        h.devices.push(DeviceInfo {
            id,
            name: format!("dev{id}"),
            kind: [IoType::Pio, IoType::Mmio, IoType::Pci][rng.below(3) as usize],
            base: rng.next() >> 8,
            length: 1 + rng.below(0x1000),
        });
    }
    let n = rng.below(40) as usize;
    let recs: Vec<_> = (0..n).map(|_| random_record(rng, vcpus, devices)).collect();
    let mut w = TraceWriter::new(Vec::new(), &h).expect("header");
    for r in &recs {
        w.write_record(r).expect("record");
    }
    let finished = rng.below(4) != 0;
    let bytes = if finished {
        w.finish().expect("finish")
    } else {
        w.into_inner() // no footer: a trace cut by a crash of the recorder
    };
    (bytes, h, recs, finished)
}

/// Reads every record; returns the records and the error that ended the read, if any.
/// Bounded: at most one record per `RECORD_SIZE` bytes of input.
fn read_all(bytes: &[u8]) -> (Option<TraceHeader>, Vec<TraceRecord>, Option<String>) {
    let mut r = match TraceReader::new(bytes) {
        Ok(r) => r,
        Err(e) => {
            check_error(&e, bytes.len());
            return (None, Vec::new(), Some(e.code().to_string()));
        }
    };
    let header = r.header().clone();
    let mut out = Vec::new();
    loop {
        assert!(
            out.len() <= bytes.len() / RECORD_SIZE,
            "more records than the input can hold"
        );
        match r.next_record() {
            Ok(Some(rec)) => out.push(rec),
            Ok(None) => return (Some(header), out, None),
            Err(e) => {
                check_error(&e, bytes.len());
                return (Some(header), out, Some(e.code().to_string()));
            }
        }
    }
}

fn check_error(e: &acrn_trace::TraceError, len: usize) {
    assert!(e.code().starts_with("ERR_"), "{e:?}");
    assert!(!e.to_string().is_empty());
    assert!(
        e.offset <= len as u64 + RECORD_SIZE as u64,
        "{e:?} for {len} bytes"
    );
}

/// Everything that consumes a whole trace: must return, never panic.
fn consume_everything(bytes: &[u8]) {
    for by in [
        GroupBy::Address,
        GroupBy::Device,
        GroupBy::Vcpu,
        GroupBy::Type,
    ] {
        if let Ok(r) = TraceReader::new(bytes) {
            let _ = Report::from_reader(r, by).map(|rep| rep.to_json());
        }
    }
    if let Ok(r) = TraceReader::new(bytes) {
        let _ = export_chrome(r, Vec::new());
    }
    if let Ok(r) = TraceReader::new(bytes) {
        let _ = export_csv(r, Vec::new());
    }
    let _ = flat::decode_columns(bytes);
    let _ = flat::report_json(bytes, "address");
    let _ = flat::report_json(bytes, "nonsense");
    let _ = flat::chrome_json(bytes);
    let _ = flat::csv(bytes);
}

#[test]
fn random_bytes_are_refused_cleanly() {
    let seed = seed();
    let mut rng = Rng(seed);
    let mut budget = Budget::new(20_000, 64);
    let mut buf = vec![0u8; 2048];
    while budget.more() {
        let len = rng.below(buf.len() as u64) as usize;
        for b in buf[..len].iter_mut() {
            *b = rng.next() as u8;
        }
        // Half of them start with the magic, to get past the first check.
        if len >= MAGIC.len() && rng.below(2) == 0 {
            buf[..MAGIC.len()].copy_from_slice(&MAGIC);
        }
        let (header, recs, err) = read_all(&buf[..len]);
        assert!(header.is_some() || err.is_some());
        assert!(recs.len() <= len / RECORD_SIZE);
        if budget.done() % 8 == 0 {
            consume_everything(&buf[..len]);
        }
    }
    println!("trace random bytes: {} cases, seed {seed}", budget.done());
}

#[test]
fn valid_traces_round_trip_and_export() {
    let seed = seed() ^ 1;
    let mut rng = Rng(seed);
    let mut budget = Budget::new(2_000, 64);
    while budget.more() {
        let (bytes, h, recs, finished) = random_trace(&mut rng);
        let (header, got, err) = read_all(&bytes);
        assert_eq!(err, None, "seed {seed} case {}", budget.done());
        assert_eq!(header.as_ref(), Some(&h));
        assert_eq!(got, recs, "seed {seed} case {}", budget.done());
        let mut r = TraceReader::new(&bytes[..]).expect("header");
        while r.next_record().expect("records").is_some() {}
        assert_eq!(
            r.footer_count(),
            finished.then_some(recs.len() as u64),
            "footer"
        );
        let rep = Report::from_reader(TraceReader::new(&bytes[..]).expect("h"), GroupBy::Vcpu)
            .expect("report");
        let json = rep.to_json();
        assert!(json.starts_with('{'));
        let csv = export_csv(TraceReader::new(&bytes[..]).expect("h"), Vec::new()).expect("csv");
        let lines = csv.iter().filter(|&&b| b == b'\n').count();
        assert_eq!(
            lines,
            recs.len() + 1,
            "a CSV line per record plus the header"
        );
        let chrome =
            export_chrome(TraceReader::new(&bytes[..]).expect("h"), Vec::new()).expect("chrome");
        let v: serde_json::Value = serde_json::from_slice(&chrome).expect("valid JSON");
        assert!(v["traceEvents"].is_array());
    }
    println!("trace valid: {} cases, seed {seed}", budget.done());
}

#[test]
fn truncated_and_corrupted_traces() {
    let seed = seed() ^ 2;
    let mut rng = Rng(seed);
    let mut budget = Budget::new(3_000, 64);
    let (mut cuts, mut flips) = (0u64, 0u64);
    while budget.more() {
        let (bytes, _h, recs, _) = random_trace(&mut rng);
        let header_len = TraceReader::new(&bytes[..]).expect("h").header_len() as usize;
        // A cut anywhere.
        let cut = rng.below(bytes.len() as u64 + 1) as usize;
        let (header, got, err) = read_all(&bytes[..cut]);
        cuts += 1;
        if cut < header_len {
            assert!(header.is_none() && err.is_some(), "cut {cut} in the header");
        }
        assert!(got.len() <= recs.len());
        assert_eq!(got[..], recs[..got.len()], "a prefix of the records");
        // At most the whole records before the cut.
        assert!(got.len() <= cut.saturating_sub(header_len) / RECORD_SIZE);
        if budget.done() % 4 == 0 {
            consume_everything(&bytes[..cut]);
        }
        // Flipped bytes.
        let mut bad = bytes.clone();
        let first = rng.below(bad.len() as u64) as usize;
        bad[first] ^= 1 << rng.below(8);
        for _ in 0..rng.below(4) {
            let i = rng.below(bad.len() as u64) as usize;
            bad[i] = rng.next() as u8;
        }
        let lowest = bad
            .iter()
            .zip(&bytes)
            .position(|(a, b)| a != b)
            .unwrap_or(bad.len());
        let (_, got, _) = read_all(&bad);
        flips += 1;
        // Records entirely before the first changed byte are read as written.
        if lowest >= header_len {
            let intact = (lowest - header_len) / RECORD_SIZE;
            let n = got.len().min(intact);
            assert_eq!(got[..n], recs[..n], "seed {seed} case {}", budget.done());
        }
        if budget.done() % 4 == 0 {
            consume_everything(&bad);
        }
    }
    println!(
        "trace truncated: {cuts}, corrupted: {flips}, seed {seed} ({} cases)",
        budget.done()
    );
}
