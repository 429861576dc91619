//! The trace format, version 1 (specified in `docs/trace-format.md`): the types and their byte
//! layout. All integers are little-endian. The header's encoding and decoding, which can fail
//! with a [`TraceError`](crate::TraceError), are in `header.rs` (above the errors, whose
//! messages name the sizes defined here).
//!
//! ```text
//! header   (header_len bytes, a multiple of 8)
//!   0  [8]  magic b"ACRNTRC\0"        8  u16 version (1)      10 u16 flags (0)
//!   12 u32  header_len               16 u32 record_size (80)  20 u16 device_count
//!   22 u16  vmid                     24 u16 vcpu_count        26 u8  completion (0 notify, 1 polling)
//!   27 u8   reserved                 28 u32 clock resolution (ns)
//!   32 u64  clock start (ns, on the trace clock)               40 u64 wall clock at start (ns since the epoch)
//!   48 [16] reserved
//!   64 u16 len + UTF-8: clock source name; u16 len + UTF-8: VM name;
//!      device_count x { u16 id, u8 kind, u8 reserved, u16 name_len, u16 reserved, u64 base,
//!                       u64 length, name (UTF-8) }; zero padding to header_len
//! records  (record_size bytes each)
//!   0 u16 vcpu  2 u8 type  3 u8 direction  4 u8 size  5 u8 outcome  6 u16 device
//!   8 u64 address  16 u64 value  24 7 x u64 timestamps (pending, processing, handler_start,
//!   handler_end, notify, complete, free; 0 = not observed)
//! footer   (optional, record_size bytes): [8] b"ACRNEND\0", u64 record count, zeros
//! ```

use alloc::string::String;
use alloc::vec::Vec;

/// The first 8 bytes of every trace.
pub const MAGIC: [u8; 8] = *b"ACRNTRC\0";
/// The first 8 bytes of the footer (in place of a record).
pub const FOOTER_MAGIC: [u8; 8] = *b"ACRNEND\0";
/// The format version this crate writes and reads.
pub const FORMAT_VERSION: u16 = 1;
/// Size of the fixed part of the header.
pub const FIXED_HEADER_SIZE: usize = 64;
/// Largest header length accepted (bounds the reader's memory).
pub const MAX_HEADER_SIZE: u32 = 1 << 24;
/// Size of one record (and of the footer).
pub const RECORD_SIZE: usize = 80;
/// Device id of a request no device served.
pub const NO_DEVICE: u16 = 0xFFFF;
/// Number of timestamps in a record.
pub const STAMP_COUNT: usize = 7;

/// Offset of the timestamps in a record.
const REC_TS: usize = 24;

/// Request type, numbered as `ACRN_IOREQ_TYPE_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum IoType {
    /// Port I/O.
    Pio = 0,
    /// Memory-mapped I/O.
    Mmio = 1,
    /// PCI configuration space access.
    Pci = 2,
}

impl IoType {
    /// From the byte stored in the trace.
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(IoType::Pio),
            1 => Some(IoType::Mmio),
            2 => Some(IoType::Pci),
            _ => None,
        }
    }
    /// `"pio"`, `"mmio"` or `"pci"`.
    pub fn name(self) -> &'static str {
        match self {
            IoType::Pio => "pio",
            IoType::Mmio => "mmio",
            IoType::Pci => "pci",
        }
    }
    /// `"PIO"`, `"MMIO"` or `"PCI"`, as in report keys.
    pub fn label(self) -> &'static str {
        match self {
            IoType::Pio => "PIO",
            IoType::Mmio => "MMIO",
            IoType::Pci => "PCI",
        }
    }
}

/// Access direction, numbered as `ACRN_IOREQ_DIR_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Direction {
    /// The guest reads.
    Read = 0,
    /// The guest writes.
    Write = 1,
}

impl Direction {
    /// From the byte stored in the trace.
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(Direction::Read),
            1 => Some(Direction::Write),
            _ => None,
        }
    }
    /// `"read"` or `"write"`.
    pub fn name(self) -> &'static str {
        match self {
            Direction::Read => "read",
            Direction::Write => "write",
        }
    }
    /// `"R"` or `"W"`, as in report keys.
    pub fn letter(self) -> &'static str {
        match self {
            Direction::Read => "R",
            Direction::Write => "W",
        }
    }
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Outcome {
    /// A device handled it.
    Ok = 0,
    /// No device claims the address; completed with the default (reads return all ones).
    Unclaimed = 1,
    /// The slot did not decode (bad type, size, ...); completed without a handler.
    Malformed = 2,
    /// The device's handler failed; completed with the default.
    HandlerError = 3,
    /// Cleared before completion (VM reset, `CLEAR_VM_IOREQ`).
    Cleared = 4,
    /// Still in flight when the trace ended.
    Incomplete = 5,
}

impl Outcome {
    /// All outcomes, in numeric order.
    pub const ALL: [Outcome; 6] = [
        Outcome::Ok,
        Outcome::Unclaimed,
        Outcome::Malformed,
        Outcome::HandlerError,
        Outcome::Cleared,
        Outcome::Incomplete,
    ];
    /// From the byte stored in the trace.
    pub fn from_u8(v: u8) -> Option<Self> {
        Outcome::ALL.get(usize::from(v)).copied()
    }
    /// `"ok"`, `"unclaimed"`, `"malformed"`, `"handler_error"`, `"cleared"` or `"incomplete"`.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Unclaimed => "unclaimed",
            Outcome::Malformed => "malformed",
            Outcome::HandlerError => "handler_error",
            Outcome::Cleared => "cleared",
            Outcome::Incomplete => "incomplete",
        }
    }
}

/// How the VM's requests are completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum CompletionMode {
    /// The device model notifies the hypervisor (`NOTIFY_REQUEST_FINISH`).
    Notify = 0,
    /// The hypervisor polls the slot's state.
    Polling = 1,
}

impl CompletionMode {
    /// `"notify"` or `"polling"`.
    pub fn name(self) -> &'static str {
        match self {
            CompletionMode::Notify => "notify",
            CompletionMode::Polling => "polling",
        }
    }
}

/// The clock the timestamps are on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClockInfo {
    /// Name of the clock source, e.g. `"CLOCK_MONOTONIC"`.
    pub source: String,
    /// Resolution of the clock in ns.
    pub resolution_ns: u32,
    /// Reading of the trace clock when the trace started (ns).
    pub start_ns: u64,
    /// Wall-clock time at `start_ns`, in ns since the Unix epoch (0 if unknown).
    pub wall_start_ns: u64,
}

/// The traced VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmInfo {
    /// The VM id the hypervisor gave it.
    pub vmid: u16,
    /// Number of vCPUs (every record's `vcpu` is below it, unless it is 0).
    pub vcpu_count: u16,
    /// Completion mode of its requests.
    pub completion: CompletionMode,
    /// Its name.
    pub name: String,
}

/// One device of the device table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Id used by records (any value but [`NO_DEVICE`], unique in the table).
    pub id: u16,
    /// Its name, e.g. `"uart0"`.
    pub name: String,
    /// The address space it is registered in.
    pub kind: IoType,
    /// First address (for PCI, the packed `bdf << 16` of its function).
    pub base: u64,
    /// Length of the range in bytes.
    pub length: u64,
}

/// The trace header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceHeader {
    /// Format version (read from the file; the writer always writes [`FORMAT_VERSION`]).
    pub version: u16,
    /// The clock.
    pub clock: ClockInfo,
    /// The VM.
    pub vm: VmInfo,
    /// The device table.
    pub devices: Vec<DeviceInfo>,
}

impl TraceHeader {
    /// A header for VM `name` with `vcpu_count` vCPUs, on `CLOCK_MONOTONIC` (1 ns), with no
    /// devices, vmid 0, notify completion.
    pub fn new(name: &str, vcpu_count: u16) -> Self {
        TraceHeader {
            version: FORMAT_VERSION,
            clock: ClockInfo {
                source: String::from("CLOCK_MONOTONIC"),
                resolution_ns: 1,
                start_ns: 0,
                wall_start_ns: 0,
            },
            vm: VmInfo {
                vmid: 0,
                vcpu_count,
                completion: CompletionMode::Notify,
                name: String::from(name),
            },
            devices: Vec::new(),
        }
    }

    /// The device with id `id`.
    pub fn device(&self, id: u16) -> Option<&DeviceInfo> {
        self.devices.iter().find(|d| d.id == id)
    }
}

pub(crate) fn u16_at(b: &[u8], off: usize) -> u16 {
    let mut a = [0u8; 2];
    a.copy_from_slice(&b[off..off + 2]);
    u16::from_le_bytes(a)
}
pub(crate) fn u32_at(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[off..off + 4]);
    u32::from_le_bytes(a)
}
pub(crate) fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}

/// The per-stage timestamps of a request, in ns on the trace clock; 0 = not observed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Timestamps {
    /// The hypervisor (emulator) made the slot PENDING.
    pub pending: u64,
    /// The client saw it and made it PROCESSING.
    pub processing: u64,
    /// The device handler was called.
    pub handler_start: u64,
    /// The device handler returned.
    pub handler_end: u64,
    /// The client asked for completion (`NOTIFY_REQUEST_FINISH`, or the state store when polling).
    pub notify: u64,
    /// The slot became COMPLETE.
    pub complete: u64,
    /// The hypervisor consumed the result and made the slot FREE (the vCPU resumes).
    pub free: u64,
}

impl Timestamps {
    /// The seven timestamps in record order.
    pub fn to_array(&self) -> [u64; STAMP_COUNT] {
        [
            self.pending,
            self.processing,
            self.handler_start,
            self.handler_end,
            self.notify,
            self.complete,
            self.free,
        ]
    }
    /// From the seven timestamps in record order.
    pub fn from_array(a: [u64; STAMP_COUNT]) -> Self {
        let [
            pending,
            processing,
            handler_start,
            handler_end,
            notify,
            complete,
            free,
        ] = a;
        Timestamps {
            pending,
            processing,
            handler_start,
            handler_end,
            notify,
            complete,
            free,
        }
    }
    /// Names of the timestamps in record order.
    pub const NAMES: [&'static str; STAMP_COUNT] = [
        "pending",
        "processing",
        "handler_start",
        "handler_end",
        "notify",
        "complete",
        "free",
    ];
}

/// One I/O request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceRecord {
    /// The vCPU that issued it (its slot).
    pub vcpu: u16,
    /// Request type.
    pub kind: IoType,
    /// Access direction.
    pub direction: Direction,
    /// Access size in bytes (as found in the slot; 1, 2, 4 or 8 unless malformed).
    pub size: u8,
    /// How it ended.
    pub outcome: Outcome,
    /// Id of the device that served it, or [`NO_DEVICE`].
    pub device: u16,
    /// Port or guest-physical address; for PCI, [`pci_address`] (`bdf << 16 | reg`).
    pub address: u64,
    /// Value written, or value returned to a read (0 if none).
    pub value: u64,
    /// Per-stage timestamps.
    pub ts: Timestamps,
}

/// Packs a PCI configuration access: `bus << 24 | device << 19 | function << 16 | register`
/// (that is `bdf << 16 | register`, `bdf` = `bus << 8 | device << 3 | function`).
pub fn pci_address(bus: u8, device: u8, function: u8, register: u16) -> u64 {
    (u64::from(bus) << 24)
        | (u64::from(device & 0x1f) << 19)
        | (u64::from(function & 7) << 16)
        | u64::from(register)
}

/// Unpacks [`pci_address`]: `(bus, device, function, register)`.
pub fn pci_fields(address: u64) -> (u8, u8, u8, u16) {
    (
        ((address >> 24) & 0xff) as u8,
        ((address >> 19) & 0x1f) as u8,
        ((address >> 16) & 7) as u8,
        (address & 0xffff) as u16,
    )
}

impl TraceRecord {
    /// A record with outcome `Ok`, no device, value 0 and no timestamps.
    pub fn new(vcpu: u16, kind: IoType, direction: Direction, size: u8, address: u64) -> Self {
        TraceRecord {
            vcpu,
            kind,
            direction,
            size,
            outcome: Outcome::Ok,
            device: NO_DEVICE,
            address,
            value: 0,
            ts: Timestamps::default(),
        }
    }

    /// Encodes the record into `out`.
    pub fn encode(&self, out: &mut [u8; RECORD_SIZE]) {
        out[0..2].copy_from_slice(&self.vcpu.to_le_bytes());
        out[2] = self.kind as u8;
        out[3] = self.direction as u8;
        out[4] = self.size;
        out[5] = self.outcome as u8;
        out[6..8].copy_from_slice(&self.device.to_le_bytes());
        out[8..16].copy_from_slice(&self.address.to_le_bytes());
        out[16..24].copy_from_slice(&self.value.to_le_bytes());
        for (i, t) in self.ts.to_array().iter().enumerate() {
            let at = REC_TS + 8 * i;
            out[at..at + 8].copy_from_slice(&t.to_le_bytes());
        }
    }

    /// Decodes the record bytes `b` without checking them against a header (type, direction
    /// and outcome are checked; `Err((field, value))` names the first bad one).
    pub fn decode(b: &[u8; RECORD_SIZE]) -> Result<Self, (&'static str, u64)> {
        let kind = IoType::from_u8(b[2]).ok_or(("type", u64::from(b[2])))?;
        let direction = Direction::from_u8(b[3]).ok_or(("direction", u64::from(b[3])))?;
        let outcome = Outcome::from_u8(b[5]).ok_or(("outcome", u64::from(b[5])))?;
        let mut ts = [0u64; STAMP_COUNT];
        for (i, t) in ts.iter_mut().enumerate() {
            *t = u64_at(b, REC_TS + 8 * i);
        }
        Ok(TraceRecord {
            vcpu: u16_at(b, 0),
            kind,
            direction,
            size: b[4],
            outcome,
            device: u16_at(b, 6),
            address: u64_at(b, 8),
            value: u64_at(b, 16),
            ts: Timestamps::from_array(ts),
        })
    }

    /// The report key by address: `0x3f8:PIO-W`, `0xfed00000:MMIO-R`, `00:1f.0@0x40:PCI-R`.
    pub fn address_key(&self) -> String {
        use core::fmt::Write;
        let mut s = String::new();
        let _ = match self.kind {
            IoType::Pci => {
                let (bus, dev, func, reg) = pci_fields(self.address);
                write!(
                    s,
                    "{bus:02x}:{dev:02x}.{func}@{reg:#x}:PCI-{}",
                    self.direction.letter()
                )
            }
            _ => write!(
                s,
                "{:#x}:{}-{}",
                self.address,
                self.kind.label(),
                self.direction.letter()
            ),
        };
        s
    }

    /// The report key by type: `PIO-R`, `MMIO-W`, ...
    pub fn type_key(&self) -> String {
        let mut s = String::from(self.kind.label());
        s.push('-');
        s.push_str(self.direction.letter());
        s
    }
}

/// Encodes the footer that closes a trace of `count` records.
pub(crate) fn encode_footer(count: u64) -> [u8; RECORD_SIZE] {
    let mut out = [0u8; RECORD_SIZE];
    out[..8].copy_from_slice(&FOOTER_MAGIC);
    out[8..16].copy_from_slice(&count.to_le_bytes());
    out
}

/// If `b` is a footer, its record count.
pub(crate) fn footer_count(b: &[u8; RECORD_SIZE]) -> Option<u64> {
    (b[..8] == FOOTER_MAGIC).then(|| u64_at(b, 8))
}
