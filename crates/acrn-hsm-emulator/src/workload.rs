//! Guest workloads: what the emulated vCPUs execute, in one format shared by the CLI, the tests
//! and the benchmarks.
//!
//! ```json
//! {"vcpus": [
//!   [{"pio": 1016, "size": 1, "write": 65},
//!    {"pio": "0x3fd", "size": 1, "read": true, "expect": 96},
//!    {"mmio": "0xfed00000", "size": 8, "read": true},
//!    {"pci": {"bus": 0, "dev": 3, "func": 0, "reg": 0}, "size": 4, "read": true, "expect": "0x12348086"},
//!    {"ram": "0x100000", "size": 4, "write": "0xcafe"},
//!    {"ram": "0x100000", "size": 4, "read": true, "expect": "0xcafe"},
//!    {"wait_irq": {"vector": 65}, "timeout_ns": 1000000000},
//!    {"repeat": 1000, "ops": [{"pio": "0x80", "size": 1, "write": 0}]}],
//!   [...ops of vCPU 1...]
//! ]}
//! ```
//!
//! Numbers are JSON numbers or strings (`"0x..."` hex or decimal, for u64 values JSON numbers
//! cannot carry exactly). A `pci` access is made as a real guest makes it: a 4-byte write of the
//! CONFIG_ADDRESS (enable bit, bus, device, function, register) to port 0xCF8, then the access to
//! 0xCFC + (reg & 3). Every read with `expect` is checked by the guest (on the value masked to the
//! access size).

use std::fmt;

use serde::Deserialize;
use serde_json::Value;

/// One guest operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// An `IN`/`OUT` on a port (size 1, 2 or 4).
    Pio {
        /// The port.
        port: u16,
        /// Access size in bytes.
        size: u8,
        /// Read or write.
        access: Access,
    },
    /// A load/store to guest-physical MMIO (size 1, 2, 4 or 8).
    Mmio {
        /// The guest-physical address.
        address: u64,
        /// Access size in bytes.
        size: u8,
        /// Read or write.
        access: Access,
    },
    /// A PCI configuration access made through 0xCF8/0xCFC.
    Pci {
        /// Bus (0..=255).
        bus: u8,
        /// Device (0..=31).
        dev: u8,
        /// Function (0..=7).
        func: u8,
        /// Register offset (0..=0xfff, aligned to the size).
        reg: u16,
        /// Access size in bytes (1, 2, 4).
        size: u8,
        /// Read or write.
        access: Access,
    },
    /// The vCPU does no I/O for `ns` nanoseconds (a trace replay's pacing). JSON:
    /// `{"delay_ns": 1500}`.
    Delay {
        /// How long.
        ns: u64,
    },
    /// Waits until every vCPU of the workload reached the same barrier (or finished): what
    /// comes before it on any vCPU happens before what comes after it on any other (a trace
    /// replay's phases). Every vCPU list should hold the same number. JSON: `{"barrier": true}`.
    Barrier,
    /// A load/store of guest RAM (size 1, 2, 4 or 8): no exit, the vCPU reads or writes the
    /// memory the hypervisor maps there (SET_MEMSEG RAM) directly, as guest code does. An
    /// address without RAM is what it is on the hypervisor, an EPT violation handled as MMIO:
    /// the access becomes an MMIO request. JSON: `{"ram": gpa, "size": 4, "write": v}`.
    Ram {
        /// The guest-physical address.
        address: u64,
        /// Access size in bytes.
        size: u8,
        /// Read or write.
        access: Access,
    },
    /// Blocks the vCPU until an interrupt is delivered to it (a vector pending in its vLAPIC:
    /// an MSI), or a GSI's line had a rising edge (or is high), and takes it; after
    /// `timeout_ns` without one, a [`crate::FaultKind::IrqTimeout`] is recorded and the vCPU
    /// goes on. JSON: `{"wait_irq": {"vector": 65} | {"gsi": 4}, "timeout_ns": 1000000000}`
    /// (the timeout defaults to 1 s).
    WaitIrq {
        /// What to wait for.
        irq: crate::IrqWait,
        /// How long at most, in nanoseconds.
        timeout_ns: u64,
    },
    /// `ops` executed `count` times.
    Repeat {
        /// Repetitions.
        count: u64,
        /// The body.
        ops: Vec<Op>,
    },
}

/// Direction of an access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Write this value.
    Write(u64),
    /// Read; check the value when `expect` is set.
    Read {
        /// The value the guest expects (masked to the size).
        expect: Option<u64>,
    },
}

impl Access {
    /// A read the guest checks against `value` (masked to the access size).
    pub const fn expect(value: u64) -> Access {
        Access::Read {
            expect: Some(value),
        }
    }
}

impl Op {
    /// An `IN`/`OUT` of `size` bytes on `port`.
    pub const fn pio(port: u16, size: u8, access: Access) -> Op {
        Op::Pio { port, size, access }
    }

    /// An MMIO access of `size` bytes at `address`.
    pub const fn mmio(address: u64, size: u8, access: Access) -> Op {
        Op::Mmio {
            address,
            size,
            access,
        }
    }

    /// A configuration access of function `bus:dev.func` at register `reg`, made through
    /// 0xCF8/0xCFC.
    pub const fn pci(bus: u8, dev: u8, func: u8, reg: u16, size: u8, access: Access) -> Op {
        Op::Pci {
            bus,
            dev,
            func,
            reg,
            size,
            access,
        }
    }
}

/// A parse or validation error, with the JSON path of the offending element.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct WorkloadError {
    /// Where (`vcpus[0][3].size`).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

fn err(path: &str, message: impl Into<String>) -> WorkloadError {
    WorkloadError {
        path: path.to_string(),
        message: message.into(),
    }
}

/// A workload: one list of operations per vCPU (list `i` runs on vCPU `i`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "Value")]
pub struct Workload {
    /// Per-vCPU operation lists.
    pub vcpus: Vec<Vec<Op>>,
}

impl TryFrom<Value> for Workload {
    type Error = WorkloadError;
    fn try_from(v: Value) -> Result<Workload, WorkloadError> {
        Workload::from_value(&v)
    }
}

/// The number of guest requests an op list issues (a PCI access is two).
pub fn request_count(ops: &[Op]) -> u64 {
    ops.iter()
        .map(|op| match op {
            Op::Pio { .. } | Op::Mmio { .. } => 1,
            Op::Pci { .. } => 2,
            Op::Delay { .. } | Op::Barrier | Op::Ram { .. } | Op::WaitIrq { .. } => 0,
            Op::Repeat { count, ops } => count.saturating_mul(request_count(ops)),
        })
        .fold(0u64, u64::saturating_add)
}

pub(crate) fn size_mask(size: u8) -> u64 {
    if size >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * u32::from(size))) - 1
    }
}

fn parse_u64(v: &Value, path: &str) -> Result<u64, WorkloadError> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| err(path, format!("{n} is not an unsigned 64-bit integer"))),
        Value::String(s) => {
            let t = s.trim();
            let r = if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
                u64::from_str_radix(&h.replace('_', ""), 16)
            } else {
                t.parse::<u64>()
            };
            r.map_err(|_| err(path, format!("{s:?} is not a number (decimal or 0x-hex)")))
        }
        other => Err(err(
            path,
            format!("expected a number or a \"0x...\" string, got {other}"),
        )),
    }
}

fn parse_access(
    o: &serde_json::Map<String, Value>,
    size: u8,
    path: &str,
) -> Result<Access, WorkloadError> {
    let mask = size_mask(size);
    match (o.get("write"), o.get("read")) {
        (Some(_), Some(_)) => Err(err(
            path,
            "an access is either \"write\" or \"read\", not both",
        )),
        (Some(w), None) => {
            if o.contains_key("expect") {
                return Err(err(path, "\"expect\" applies to reads only"));
            }
            let v = parse_u64(w, &format!("{path}.write"))?;
            if v & !mask != 0 {
                return Err(err(
                    &format!("{path}.write"),
                    format!("value {v:#x} does not fit in {size} byte(s)"),
                ));
            }
            Ok(Access::Write(v))
        }
        (None, Some(r)) => {
            if r != &Value::Bool(true) {
                return Err(err(&format!("{path}.read"), "must be true"));
            }
            let expect = match o.get("expect") {
                None | Some(Value::Null) => None,
                Some(e) => {
                    let v = parse_u64(e, &format!("{path}.expect"))?;
                    if v & !mask != 0 {
                        return Err(err(
                            &format!("{path}.expect"),
                            format!("value {v:#x} does not fit in {size} byte(s)"),
                        ));
                    }
                    Some(v)
                }
            };
            Ok(Access::Read { expect })
        }
        (None, None) => Err(err(path, "missing \"write\": value or \"read\": true")),
    }
}

fn parse_size(
    o: &serde_json::Map<String, Value>,
    allowed: &[u8],
    path: &str,
) -> Result<u8, WorkloadError> {
    let p = format!("{path}.size");
    let v = o.get("size").ok_or_else(|| err(path, "missing \"size\""))?;
    let s = parse_u64(v, &p)?;
    match u8::try_from(s) {
        Ok(s) if allowed.contains(&s) => Ok(s),
        _ => Err(err(&p, format!("size {s} is not one of {allowed:?}"))),
    }
}

fn parse_op(v: &Value, path: &str) -> Result<Op, WorkloadError> {
    let o = v
        .as_object()
        .ok_or_else(|| err(path, format!("an operation is an object, got {v}")))?;
    if o.get("barrier").is_some_and(|b| b == &Value::Bool(true)) {
        return Ok(Op::Barrier);
    }
    if let Some(d) = o.get("delay_ns") {
        let ns = parse_u64(d, &format!("{path}.delay_ns"))?;
        return Ok(Op::Delay { ns });
    }
    if let Some(c) = o.get("repeat") {
        let count = parse_u64(c, &format!("{path}.repeat"))?;
        let ops = o
            .get("ops")
            .and_then(Value::as_array)
            .ok_or_else(|| err(path, "\"repeat\" needs an \"ops\" array"))?;
        let ops = ops
            .iter()
            .enumerate()
            .map(|(i, v)| parse_op(v, &format!("{path}.ops[{i}]")))
            .collect::<Result<_, _>>()?;
        return Ok(Op::Repeat { count, ops });
    }
    if let Some(w) = o.get("wait_irq") {
        let wp = format!("{path}.wait_irq");
        let wo = w
            .as_object()
            .ok_or_else(|| err(&wp, "expected {\"vector\": n} or {\"gsi\": n}"))?;
        let irq = match (wo.get("vector"), wo.get("gsi")) {
            (Some(v), None) => {
                let v = parse_u64(v, &format!("{wp}.vector"))?;
                let v = u8::try_from(v)
                    .map_err(|_| err(&format!("{wp}.vector"), format!("{v} is above 255")))?;
                crate::IrqWait::Vector(v)
            }
            (None, Some(g)) => {
                let g = parse_u64(g, &format!("{wp}.gsi"))?;
                if g >= u64::from(crate::types::VIOAPIC_RTE_NUM) {
                    return Err(err(
                        &format!("{wp}.gsi"),
                        format!("GSI {g} is not below {}", crate::types::VIOAPIC_RTE_NUM),
                    ));
                }
                crate::IrqWait::Gsi(g as u32)
            }
            _ => return Err(err(&wp, "expected {\"vector\": n} or {\"gsi\": n}")),
        };
        let timeout_ns = match o.get("timeout_ns") {
            None => 1_000_000_000,
            Some(t) => parse_u64(t, &format!("{path}.timeout_ns"))?,
        };
        return Ok(Op::WaitIrq { irq, timeout_ns });
    }
    if let Some(a) = o.get("ram") {
        let address = parse_u64(a, &format!("{path}.ram"))?;
        let size = parse_size(o, &[1, 2, 4, 8], path)?;
        if address.checked_add(u64::from(size) - 1).is_none() {
            return Err(err(
                path,
                format!("a {size}-byte access at {address:#x} overflows the address space"),
            ));
        }
        let access = parse_access(o, size, path)?;
        return Ok(Op::Ram {
            address,
            size,
            access,
        });
    }
    if let Some(p) = o.get("pio") {
        let port = parse_u64(p, &format!("{path}.pio"))?;
        let size = parse_size(o, &[1, 2, 4], path)?;
        if port > 0xffff {
            return Err(err(
                &format!("{path}.pio"),
                format!("port {port:#x} is above 0xffff"),
            ));
        }
        if port + u64::from(size) > 0x1_0000 {
            return Err(err(
                path,
                format!("a {size}-byte access at port {port:#x} crosses the end of the port space"),
            ));
        }
        let access = parse_access(o, size, path)?;
        return Ok(Op::Pio {
            port: port as u16,
            size,
            access,
        });
    }
    if let Some(a) = o.get("mmio") {
        let address = parse_u64(a, &format!("{path}.mmio"))?;
        let size = parse_size(o, &[1, 2, 4, 8], path)?;
        if address.checked_add(u64::from(size) - 1).is_none() {
            return Err(err(
                path,
                format!("a {size}-byte access at {address:#x} overflows the address space"),
            ));
        }
        let access = parse_access(o, size, path)?;
        return Ok(Op::Mmio {
            address,
            size,
            access,
        });
    }
    if let Some(p) = o.get("pci") {
        let pp = format!("{path}.pci");
        let po = p.as_object().ok_or_else(|| {
            err(
                &pp,
                "expected {\"bus\", \"device\", \"function\", \"register\"}",
            )
        })?;
        // `device`/`function`/`register` as decoded slots name them; `dev`/`func`/`reg` too.
        let field = |name: &str, long: &str, max: u64| -> Result<u64, WorkloadError> {
            let (name, v) = match (po.get(long), po.get(name)) {
                (Some(v), _) => (long, v),
                (None, Some(v)) => (name, v),
                (None, None) => return Err(err(&pp, format!("missing \"{long}\""))),
            };
            let fp = format!("{pp}.{name}");
            let v = parse_u64(v, &fp)?;
            if v > max {
                return Err(err(&fp, format!("{v} is above {max}")));
            }
            Ok(v)
        };
        let (bus, dev, func, reg) = (
            field("bus", "bus", 255)?,
            field("dev", "device", 31)?,
            field("func", "function", 7)?,
            field("reg", "register", 0xfff)?,
        );
        let size = parse_size(o, &[1, 2, 4], path)?;
        if reg % u64::from(size) != 0 {
            return Err(err(
                &format!("{pp}.reg"),
                format!("register {reg:#x} is not aligned to the {size}-byte access"),
            ));
        }
        let access = parse_access(o, size, path)?;
        return Ok(Op::Pci {
            bus: bus as u8,
            dev: dev as u8,
            func: func as u8,
            reg: reg as u16,
            size,
            access,
        });
    }
    Err(err(
        path,
        "unknown operation: expected \"pio\", \"mmio\", \"pci\", \"ram\", \"wait_irq\", \"delay_ns\", \"barrier\" or \"repeat\"",
    ))
}

impl Workload {
    /// Parses and validates the JSON form.
    pub fn from_json(json: &str) -> Result<Workload, WorkloadError> {
        let v: Value =
            serde_json::from_str(json).map_err(|e| err("$", format!("invalid JSON: {e}")))?;
        Workload::from_value(&v)
    }

    /// Parses and validates an already parsed JSON value.
    pub fn from_value(v: &Value) -> Result<Workload, WorkloadError> {
        let vcpus = v
            .get("vcpus")
            .and_then(Value::as_array)
            .ok_or_else(|| err("$", "expected {\"vcpus\": [[op, ...], ...]}"))?;
        if vcpus.len() > crate::abi::IO_REQUEST_MAX {
            return Err(err("vcpus", format!("{} vCPUs: at most 16", vcpus.len())));
        }
        let vcpus = vcpus
            .iter()
            .enumerate()
            .map(|(i, ops)| {
                let p = format!("vcpus[{i}]");
                ops.as_array()
                    .ok_or_else(|| err(&p, "expected an array of operations"))?
                    .iter()
                    .enumerate()
                    .map(|(j, op)| parse_op(op, &format!("{p}[{j}]")))
                    .collect::<Result<Vec<_>, _>>()
            })
            .collect::<Result<_, _>>()?;
        Ok(Workload { vcpus })
    }

    /// The JSON form (numbers above 2^53 as "0x..." strings).
    pub fn to_json(&self) -> Value {
        fn num(v: u64) -> Value {
            if v < (1 << 53) {
                Value::from(v)
            } else {
                Value::String(format!("{v:#x}"))
            }
        }
        fn access(m: &mut serde_json::Map<String, Value>, a: &Access) {
            match a {
                Access::Write(v) => {
                    m.insert("write".into(), num(*v));
                }
                Access::Read { expect } => {
                    m.insert("read".into(), Value::Bool(true));
                    if let Some(e) = expect {
                        m.insert("expect".into(), num(*e));
                    }
                }
            }
        }
        fn op(o: &Op) -> Value {
            let mut m = serde_json::Map::new();
            match o {
                Op::Pio {
                    port,
                    size,
                    access: a,
                } => {
                    m.insert("pio".into(), num(u64::from(*port)));
                    m.insert("size".into(), num(u64::from(*size)));
                    access(&mut m, a);
                }
                Op::Mmio {
                    address,
                    size,
                    access: a,
                } => {
                    m.insert("mmio".into(), num(*address));
                    m.insert("size".into(), num(u64::from(*size)));
                    access(&mut m, a);
                }
                Op::Pci {
                    bus,
                    dev,
                    func,
                    reg,
                    size,
                    access: a,
                } => {
                    m.insert(
                        "pci".into(),
                        serde_json::json!({"bus": bus, "dev": dev, "func": func, "reg": reg}),
                    );
                    m.insert("size".into(), num(u64::from(*size)));
                    access(&mut m, a);
                }
                Op::Ram {
                    address,
                    size,
                    access: a,
                } => {
                    m.insert("ram".into(), num(*address));
                    m.insert("size".into(), num(u64::from(*size)));
                    access(&mut m, a);
                }
                Op::WaitIrq { irq, timeout_ns } => {
                    let w = match irq {
                        crate::IrqWait::Vector(v) => serde_json::json!({"vector": v}),
                        crate::IrqWait::Gsi(g) => serde_json::json!({"gsi": g}),
                    };
                    m.insert("wait_irq".into(), w);
                    m.insert("timeout_ns".into(), num(*timeout_ns));
                }
                Op::Delay { ns } => {
                    m.insert("delay_ns".into(), num(*ns));
                }
                Op::Barrier => {
                    m.insert("barrier".into(), Value::Bool(true));
                }
                Op::Repeat { count, ops } => {
                    m.insert("repeat".into(), num(*count));
                    m.insert("ops".into(), Value::Array(ops.iter().map(op).collect()));
                }
            }
            Value::Object(m)
        }
        serde_json::json!({"vcpus": self.vcpus.iter().map(|ops| ops.iter().map(op).collect::<Vec<_>>()).collect::<Vec<_>>()})
    }

    /// Total requests the workload issues.
    pub fn request_count(&self) -> u64 {
        self.vcpus
            .iter()
            .map(|o| request_count(o))
            .fold(0, u64::saturating_add)
    }

    /// A seeded pseudo-random workload: `count` accesses per vCPU over `ranges`, each of a size
    /// valid for its space that fits (aligned) in the range, half reads (without `expect`), half
    /// writes of random values. The same seed gives the same workload.
    pub fn random(
        seed: u64,
        vcpus: usize,
        ranges: &[RandomRange],
        count: usize,
    ) -> Result<Workload, WorkloadError> {
        if ranges.is_empty() {
            return Err(err("ranges", "at least one range is needed"));
        }
        if vcpus == 0 || vcpus > crate::abi::IO_REQUEST_MAX {
            return Err(err("vcpus", format!("{vcpus} vCPUs: 1 to 16")));
        }
        for (i, r) in ranges.iter().enumerate() {
            let p = format!("ranges[{i}]");
            if r.len == 0 {
                return Err(err(&p, "empty range"));
            }
            match r.space {
                Space::Pio if r.base + r.len > 0x1_0000 => {
                    return Err(err(&p, "beyond port 0xffff"));
                }
                Space::Mmio if r.base.checked_add(r.len).is_none() => {
                    return Err(err(&p, "overflows"));
                }
                _ => {}
            }
        }
        let mut rng = SplitMix64(seed);
        let mut out = Vec::with_capacity(vcpus);
        for _ in 0..vcpus {
            let mut ops = Vec::with_capacity(count);
            for _ in 0..count {
                let r = &ranges[(rng.next() % ranges.len() as u64) as usize];
                let sizes: &[u8] = match r.space {
                    Space::Pio => &[1, 2, 4],
                    Space::Mmio => &[1, 2, 4, 8],
                };
                let fitting: Vec<u8> = sizes
                    .iter()
                    .copied()
                    .filter(|&s| u64::from(s) <= r.len)
                    .collect();
                let size = fitting[(rng.next() % fitting.len() as u64) as usize];
                let slots = r.len / u64::from(size);
                let addr = r.base + (rng.next() % slots) * u64::from(size);
                let access = if rng.next() & 1 == 0 {
                    Access::Read { expect: None }
                } else {
                    Access::Write(rng.next() & size_mask(size))
                };
                ops.push(match r.space {
                    Space::Pio => Op::Pio {
                        port: addr as u16,
                        size,
                        access,
                    },
                    Space::Mmio => Op::Mmio {
                        address: addr,
                        size,
                        access,
                    },
                });
            }
            out.push(ops);
        }
        Ok(Workload { vcpus: out })
    }
}

/// An address space for [`Workload::random`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Space {
    /// Port I/O.
    Pio,
    /// Memory-mapped I/O.
    Mmio,
}

/// A range for [`Workload::random`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct RandomRange {
    /// PIO or MMIO.
    pub space: Space,
    /// First address.
    pub base: u64,
    /// Length in bytes.
    pub len: u64,
}

/// The seeded generator of random workloads (SplitMix64), shared with the demo.
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);
impl SplitMix64 {
    /// The next 64 random bits.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let acc = |a: &Access| match a {
            Access::Write(v) => format!("write {v:#x}"),
            Access::Read { expect: Some(e) } => format!("read (expect {e:#x})"),
            Access::Read { expect: None } => "read".to_string(),
        };
        match self {
            Op::Pio { port, size, access } => write!(f, "pio {port:#x}/{size} {}", acc(access)),
            Op::Mmio {
                address,
                size,
                access,
            } => write!(f, "mmio {address:#x}/{size} {}", acc(access)),
            Op::Pci {
                bus,
                dev,
                func,
                reg,
                size,
                access,
            } => {
                write!(
                    f,
                    "pci {bus:02x}:{dev:02x}.{func} reg {reg:#x}/{size} {}",
                    acc(access)
                )
            }
            Op::Ram {
                address,
                size,
                access,
            } => write!(f, "ram {address:#x}/{size} {}", acc(access)),
            Op::WaitIrq { irq, timeout_ns } => match irq {
                crate::IrqWait::Vector(v) => {
                    write!(f, "wait_irq vector {v:#x} (timeout {timeout_ns} ns)")
                }
                crate::IrqWait::Gsi(g) => write!(f, "wait_irq gsi {g} (timeout {timeout_ns} ns)"),
            },
            Op::Delay { ns } => write!(f, "delay {ns} ns"),
            Op::Barrier => f.write_str("barrier"),
            Op::Repeat { count, ops } => write!(f, "repeat {count} x {} op(s)", ops.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        let w = Workload::from_json(
            r#"{"vcpus": [[
                {"pio": 1016, "size": 1, "write": 65},
                {"pio": "0x3fd", "size": 1, "read": true, "expect": 96},
                {"mmio": "0xfed00000", "size": 8, "read": true},
                {"mmio": "0xffffffffffff0000", "size": 8, "write": "0xffffffffffffffff"},
                {"pci": {"bus": 0, "dev": 3, "func": 0, "reg": 0}, "size": 4, "read": true, "expect": "0x12348086"},
                {"repeat": 3, "ops": [{"pio": "0x80", "size": 1, "write": 0}]}
            ], []]}"#,
        )
        .unwrap();
        assert_eq!(w.vcpus.len(), 2);
        assert_eq!(
            w.vcpus[0][1],
            Op::Pio {
                port: 0x3fd,
                size: 1,
                access: Access::Read { expect: Some(96) }
            }
        );
        assert_eq!(
            w.vcpus[0][3],
            Op::Mmio {
                address: 0xffff_ffff_ffff_0000,
                size: 8,
                access: Access::Write(u64::MAX)
            }
        );
        assert_eq!(w.request_count(), 1 + 1 + 1 + 1 + 2 + 3);
        // Round trip through the JSON form.
        let again = Workload::from_value(&w.to_json()).unwrap();
        assert_eq!(again, w);
        // serde entry point.
        let s: Workload =
            serde_json::from_str(r#"{"vcpus": [[{"pio": 1, "size": 2, "read": true}]]}"#).unwrap();
        assert_eq!(s.vcpus[0].len(), 1);
    }

    #[test]
    fn delay_and_barrier_round_trip() {
        let w = Workload::from_json(
            r#"{"vcpus": [[{"delay_ns": 1500}, {"barrier": true}, {"pio": 128, "size": 1, "write": 0}]]}"#,
        )
        .unwrap();
        assert_eq!(w.vcpus[0][0], Op::Delay { ns: 1500 });
        assert_eq!(w.vcpus[0][1], Op::Barrier);
        assert_eq!(w.request_count(), 1);
        assert_eq!(Workload::from_value(&w.to_json()).unwrap(), w);
        assert_eq!(w.vcpus[0][1].to_string(), "barrier");
        assert!(
            Workload::from_json(r#"{"vcpus": [[{"barrier": false}]]}"#)
                .unwrap_err()
                .to_string()
                .contains("unknown operation")
        );
    }

    #[test]
    fn ram_and_wait_irq_round_trip() {
        let w = Workload::from_json(
            r#"{"vcpus": [[{"ram": "0x1000", "size": 8, "write": "0xffffffffffffffff"},
                {"ram": 4096, "size": 2, "read": true, "expect": 7},
                {"wait_irq": {"vector": 65}, "timeout_ns": 5},
                {"wait_irq": {"gsi": 4}}]]}"#,
        )
        .unwrap();
        assert_eq!(
            w.vcpus[0][1],
            Op::Ram {
                address: 0x1000,
                size: 2,
                access: Access::expect(7)
            }
        );
        assert_eq!(
            w.vcpus[0][3],
            Op::WaitIrq {
                irq: crate::IrqWait::Gsi(4),
                timeout_ns: 1_000_000_000
            }
        );
        assert_eq!(w.request_count(), 0);
        assert_eq!(Workload::from_value(&w.to_json()).unwrap(), w);
        let e = |j: &str| Workload::from_json(j).unwrap_err().to_string();
        assert!(e(r#"{"vcpus": [[{"wait_irq": {"gsi": 48}}]]}"#).contains("not below 48"));
        assert!(e(r#"{"vcpus": [[{"wait_irq": {"vector": 256}}]]}"#).contains("above 255"));
        assert!(e(r#"{"vcpus": [[{"wait_irq": {}}]]}"#).contains("expected"));
        assert!(e(r#"{"vcpus": [[{"ram": 0, "size": 3, "read": true}]]}"#).contains("size 3"));
    }

    #[test]
    fn validation_errors_are_clear() {
        let e = |j: &str| Workload::from_json(j).unwrap_err().to_string();
        assert_eq!(
            e(r#"{"vcpus": [[{"pio": 1, "size": 3, "read": true}]]}"#),
            "vcpus[0][0].size: size 3 is not one of [1, 2, 4]"
        );
        assert_eq!(
            e(r#"{"vcpus": [[{"pio": 65536, "size": 1, "read": true}]]}"#),
            "vcpus[0][0].pio: port 0x10000 is above 0xffff"
        );
        assert!(
            e(r#"{"vcpus": [[{"pio": 65535, "size": 2, "read": true}]]}"#)
                .contains("crosses the end")
        );
        assert!(
            e(r#"{"vcpus": [[{"mmio": 0, "size": 16, "read": true}]]}"#)
                .contains("size 16 is not one of [1, 2, 4, 8]")
        );
        assert!(
            e(r#"{"vcpus": [[{"pio": 1, "size": 1, "write": 256}]]}"#)
                .contains("does not fit in 1 byte")
        );
        assert!(e(r#"{"vcpus": [[{"pci": {"bus":0,"dev":32,"func":0,"reg":0}, "size": 4, "read": true}]]}"#).contains("dev: 32 is above 31"));
        assert!(e(r#"{"vcpus": [[{"pci": {"bus":0,"dev":1,"func":0,"reg":2}, "size": 4, "read": true}]]}"#).contains("not aligned"));
        assert!(e(r#"{"vcpus": [[{"bogus": 1}]]}"#).contains("unknown operation"));
        assert!(
            e(r#"{"vcpus": [[{"mmio": "0xzz", "size": 1, "read": true}]]}"#)
                .contains("not a number")
        );
        assert!(e(r#"{"vcpus": 3}"#).starts_with("$:"));
        assert!(e("{").contains("invalid JSON"));
    }

    #[test]
    fn random_is_seeded_and_valid() {
        let ranges = [
            RandomRange {
                space: Space::Pio,
                base: 0x3f8,
                len: 8,
            },
            RandomRange {
                space: Space::Mmio,
                base: 0xfed0_0000,
                len: 0x1000,
            },
        ];
        let a = Workload::random(7, 2, &ranges, 200).unwrap();
        let b = Workload::random(7, 2, &ranges, 200).unwrap();
        let c = Workload::random(8, 2, &ranges, 200).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.request_count(), 400);
        for op in a.vcpus.iter().flatten() {
            match op {
                Op::Pio { port, size, .. } => {
                    assert!(*port >= 0x3f8 && u32::from(*port) + u32::from(*size) <= 0x400);
                    assert_eq!(port % u16::from(*size), 0);
                }
                Op::Mmio { address, size, .. } => {
                    assert!(*address >= 0xfed0_0000 && address + u64::from(*size) <= 0xfed0_1000);
                }
                _ => panic!("unexpected op"),
            }
        }
        // Valid as JSON too.
        assert_eq!(Workload::from_value(&a.to_json()).unwrap(), a);
        assert!(Workload::random(1, 1, &[], 1).is_err());
    }
}
