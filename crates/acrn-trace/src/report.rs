//! Reports in the style of `perf kvm stat report`, with percentiles per stage.

use crate::error::TraceError;
use crate::format::{NO_DEVICE, Outcome, Timestamps, TraceHeader, TraceRecord};
use crate::hist::Histogram;
use crate::io::ByteSource;
use crate::reader::TraceReader;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

/// A latency measured between two timestamps of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// What the guest waits: PENDING to FREE (to COMPLETE if FREE was not observed).
    Total,
    /// PENDING to PROCESSING: until the client picks the request up (wake-up and scan).
    Dispatch,
    /// PROCESSING to handler start: the client's own work before the device runs.
    Queue,
    /// Handler start to end: the device.
    Handler,
    /// Handler end to NOTIFY: storing the result and asking for completion.
    Reply,
    /// NOTIFY to COMPLETE.
    Completion,
    /// COMPLETE to FREE: until the hypervisor consumes the result and resumes the vCPU.
    Release,
}

impl Stage {
    /// Every stage, `Total` first.
    pub const ALL: [Stage; 7] = [
        Stage::Total,
        Stage::Dispatch,
        Stage::Queue,
        Stage::Handler,
        Stage::Reply,
        Stage::Completion,
        Stage::Release,
    ];

    /// Lower-case name: `"total"`, `"dispatch"`, ...
    pub fn name(self) -> &'static str {
        match self {
            Stage::Total => "total",
            Stage::Dispatch => "dispatch",
            Stage::Queue => "queue",
            Stage::Handler => "handler",
            Stage::Reply => "reply",
            Stage::Completion => "completion",
            Stage::Release => "release",
        }
    }

    /// `(start, end)` of the stage in `ts` when both ends were observed (non-zero) and in order.
    pub fn span(self, ts: &Timestamps) -> Option<(u64, u64)> {
        let (a, b) = match self {
            Stage::Total => (ts.pending, if ts.free != 0 { ts.free } else { ts.complete }),
            Stage::Dispatch => (ts.pending, ts.processing),
            Stage::Queue => (ts.processing, ts.handler_start),
            Stage::Handler => (ts.handler_start, ts.handler_end),
            Stage::Reply => (ts.handler_end, ts.notify),
            Stage::Completion => (ts.notify, ts.complete),
            Stage::Release => (ts.complete, ts.free),
        };
        (a != 0 && b != 0 && b >= a).then_some((a, b))
    }

    /// Duration of the stage in ns, when observed.
    pub fn duration(self, ts: &Timestamps) -> Option<u64> {
        self.span(ts).map(|(a, b)| b - a)
    }
}

/// What the requests are grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    /// Address, type and direction: `0x3f8:PIO-W`.
    Address,
    /// The device that served the request (its name; `(none)` for none).
    Device,
    /// The vCPU: `vcpu0`.
    Vcpu,
    /// Type and direction: `PIO-R`.
    Type,
}

impl GroupBy {
    /// From `"address"`, `"device"`, `"vcpu"` or `"type"`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "address" => Some(GroupBy::Address),
            "device" => Some(GroupBy::Device),
            "vcpu" => Some(GroupBy::Vcpu),
            "type" => Some(GroupBy::Type),
            _ => None,
        }
    }
    /// The name [`parse`](Self::parse) takes.
    pub fn name(self) -> &'static str {
        match self {
            GroupBy::Address => "address",
            GroupBy::Device => "device",
            GroupBy::Vcpu => "vcpu",
            GroupBy::Type => "type",
        }
    }
}

/// One row of a report.
#[derive(Debug, Clone)]
pub struct GroupReport {
    /// The key: `0x3f8:PIO-W`, a device name, `vcpu0`, `PIO-R`.
    pub key: String,
    /// Requests in the group.
    pub count: u64,
    /// `count / requests`.
    pub share: f64,
    /// Requests per outcome, indexed by `Outcome as usize`.
    pub outcomes: [u64; 6],
    /// Latency per stage, indexed like [`Stage::ALL`].
    pub stages: [Histogram; 7],
}

impl GroupReport {
    /// The histogram of `stage`.
    pub fn stage(&self, stage: Stage) -> &Histogram {
        &self.stages[stage as usize]
    }
}

/// A report: every request of a trace, grouped.
#[derive(Debug, Clone)]
pub struct Report {
    /// The grouping.
    pub by: GroupBy,
    /// Number of requests (records) in the trace.
    pub requests: u64,
    /// Whether the trace ended with its footer (it was finished, not cut short).
    pub footer: bool,
    /// Groups, by decreasing count then key.
    pub groups: Vec<GroupReport>,
}

struct Acc {
    sample: TraceRecord,
    count: u64,
    outcomes: [u64; 6],
    stages: [Histogram; 7],
}

/// Builds a [`Report`] one record at a time; memory grows with the number of groups, not of
/// records.
#[derive(Debug)]
pub struct ReportBuilder {
    by: GroupBy,
    vcpus: Option<Vec<u16>>,
    window: Option<(u64, u64)>,
    index: BTreeMap<u128, usize>,
    groups: Vec<Acc>,
    requests: u64,
}

impl core::fmt::Debug for Acc {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Acc").field("count", &self.count).finish()
    }
}

impl ReportBuilder {
    /// An empty report grouped `by`.
    pub fn new(by: GroupBy) -> Self {
        ReportBuilder {
            by,
            vcpus: None,
            window: None,
            index: BTreeMap::new(),
            groups: Vec::new(),
            requests: 0,
        }
    }

    fn key(&self, r: &TraceRecord) -> u128 {
        let td = (u128::from(r.kind as u8) << 1) | u128::from(r.direction as u8);
        match self.by {
            GroupBy::Address => (td << 64) | u128::from(r.address),
            GroupBy::Device => u128::from(r.device),
            GroupBy::Vcpu => u128::from(r.vcpu),
            GroupBy::Type => td,
        }
    }

    /// Counts only the records of these vCPUs (the others are skipped, and `requests` counts
    /// the ones kept).
    pub fn only_vcpus(mut self, vcpus: Vec<u16>) -> Self {
        self.vcpus = Some(vcpus);
        self
    }

    /// Counts only the records whose first observed stamp is in `from_ns..to_ns` (ns on the
    /// trace's clock, as the records carry them): the requests that start in a time window.
    pub fn only_window(mut self, from_ns: u64, to_ns: u64) -> Self {
        self.window = Some((from_ns, to_ns));
        self
    }

    /// Counts one record.
    pub fn add(&mut self, r: &TraceRecord) {
        if self.vcpus.as_ref().is_some_and(|v| !v.contains(&r.vcpu)) {
            return;
        }
        if let Some((a, b)) = self.window {
            let first = r.ts.to_array().into_iter().filter(|&t| t != 0).min();
            if first.is_none_or(|t| t < a || t >= b) {
                return;
            }
        }
        let key = self.key(r);
        let i = match self.index.get(&key) {
            Some(&i) => i,
            None => {
                let i = self.groups.len();
                self.index.insert(key, i);
                self.groups.push(Acc {
                    sample: *r,
                    count: 0,
                    outcomes: [0; 6],
                    stages: core::array::from_fn(|_| Histogram::new()),
                });
                i
            }
        };
        let g = &mut self.groups[i];
        g.count += 1;
        g.outcomes[r.outcome as usize] += 1;
        for (s, h) in Stage::ALL.iter().zip(g.stages.iter_mut()) {
            if let Some(d) = s.duration(&r.ts) {
                h.record(d);
            }
        }
        self.requests += 1;
    }

    /// The report; `header` names the devices, `footer` says whether the trace was finished.
    pub fn finish(self, header: &TraceHeader, footer: bool) -> Report {
        let requests = self.requests;
        let by = self.by;
        let mut groups: Vec<GroupReport> = self
            .groups
            .into_iter()
            .map(|g| {
                let r = &g.sample;
                let key = match by {
                    GroupBy::Address => r.address_key(),
                    GroupBy::Type => r.type_key(),
                    GroupBy::Vcpu => format!("vcpu{}", r.vcpu),
                    GroupBy::Device if r.device == NO_DEVICE => String::from("(none)"),
                    GroupBy::Device => match header.device(r.device) {
                        Some(d) => d.name.clone(),
                        None => format!("device{}", r.device),
                    },
                };
                GroupReport {
                    key,
                    count: g.count,
                    share: if requests == 0 {
                        0.0
                    } else {
                        g.count as f64 / requests as f64
                    },
                    outcomes: g.outcomes,
                    stages: g.stages,
                }
            })
            .collect();
        groups.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
        Report {
            by,
            requests,
            footer,
            groups,
        }
    }
}

/// Writes `s` as a JSON string literal.
pub(crate) fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn opt(out: &mut String, v: Option<u64>) {
    match v {
        Some(v) => {
            let _ = write!(out, "{v}");
        }
        None => out.push_str("null"),
    }
}

/// The percentile fields of a histogram: `"min_ns":..,"p50_ns":..,"p99_ns":..,"p999_ns":..,"max_ns":..`.
fn percentiles(out: &mut String, h: &Histogram) {
    out.push_str("\"min_ns\":");
    opt(out, h.min());
    out.push_str(",\"p50_ns\":");
    opt(out, h.percentile(50_000));
    out.push_str(",\"p99_ns\":");
    opt(out, h.percentile(99_000));
    out.push_str(",\"p999_ns\":");
    opt(out, h.percentile(99_900));
    out.push_str(",\"max_ns\":");
    opt(out, h.max());
}

impl Report {
    /// Reads every record of `reader` into a report grouped `by`.
    pub fn from_reader<S: ByteSource>(
        reader: TraceReader<S>,
        by: GroupBy,
    ) -> Result<Report, TraceError> {
        Self::from_builder(reader, ReportBuilder::new(by))
    }

    /// Reads every record of `reader` into `b` (a builder that may filter, see
    /// [`ReportBuilder::only_vcpus`]).
    pub fn from_builder<S: ByteSource>(
        mut reader: TraceReader<S>,
        mut b: ReportBuilder,
    ) -> Result<Report, TraceError> {
        while let Some(r) = reader.next_record()? {
            b.add(&r);
        }
        let footer = reader.footer_count().is_some();
        Ok(b.finish(reader.header(), footer))
    }

    /// The report as JSON:
    /// `{"requests": N, "by": "...", "footer": bool, "groups": [{"key", "count", "share",
    /// "min_ns", "p50_ns", "p99_ns", "p999_ns", "max_ns", "outcomes": {...}, "stages": {...}}]}`.
    /// The top-level percentiles of a group are those of the `total` stage; `stages` holds
    /// every stage as `{"count", "mean_ns", "min_ns", "p50_ns", ...}`; `outcomes` counts
    /// each outcome that occurred. Percentiles of a stage never observed are `null`.
    /// `time_share` is the group's part of the summed `total` latency of all groups (perf kvm
    /// stat's Time%), from exact sums.
    pub fn to_json(&self) -> String {
        let all_time: u128 = self
            .groups
            .iter()
            .map(|g| g.stage(Stage::Total).sum())
            .sum();
        let mut out = String::with_capacity(256 + self.groups.len() * 900);
        let _ = write!(
            out,
            "{{\"requests\":{},\"by\":\"{}\",\"footer\":{},\"groups\":[",
            self.requests,
            self.by.name(),
            self.footer
        );
        for (i, g) in self.groups.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str("{\"key\":");
            json_str(&mut out, &g.key);
            let time_share = if all_time == 0 {
                0.0
            } else {
                g.stage(Stage::Total).sum() as f64 / all_time as f64
            };
            let _ = write!(
                out,
                ",\"count\":{},\"share\":{:.6},\"time_share\":{time_share:.6},",
                g.count, g.share
            );
            percentiles(&mut out, g.stage(Stage::Total));
            out.push_str(",\"outcomes\":{");
            let mut first = true;
            for o in Outcome::ALL {
                let n = g.outcomes[o as usize];
                if n > 0 {
                    if !first {
                        out.push(',');
                    }
                    first = false;
                    let _ = write!(out, "\"{}\":{n}", o.name());
                }
            }
            out.push_str("},\"stages\":{");
            for (j, s) in Stage::ALL.iter().enumerate() {
                if j > 0 {
                    out.push(',');
                }
                let h = g.stage(*s);
                let _ = write!(
                    out,
                    "\"{}\":{{\"count\":{},\"mean_ns\":",
                    s.name(),
                    h.count()
                );
                opt(&mut out, h.mean());
                out.push(',');
                percentiles(&mut out, h);
                out.push('}');
            }
            out.push_str("}}");
        }
        out.push_str("]}");
        out
    }
}
