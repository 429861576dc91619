//! The trace form of what the client handled: the client builds each record itself (its request,
//! its outcome, its stamps) and hands it to the [`ClientRecorder`], so the recorder knows nothing
//! of the client.

use acrn_trace::{DeviceInfo, Direction, IoType, NO_DEVICE, Outcome, TraceRecord};

use super::dispatch::{Dispatcher, FaultReason, RangeSpace, Target};
use super::protocol::{Kind, Request};
use crate::trace::KERNEL_DEVICE;

/// The trace form of a request, its outcome and the value read (`value`) or written.
pub(crate) fn trace_record(req: &Request, target: Target, value: u64) -> TraceRecord {
    let (kind, address) = match req.kind {
        Kind::Pio => (IoType::Pio, req.address),
        Kind::Mmio | Kind::Unknown(_) => (IoType::Mmio, req.address),
        Kind::PciCfg => (
            IoType::Pci,
            acrn_trace::format::pci_address(
                req.bdf.bus,
                req.bdf.dev,
                req.bdf.func,
                (req.reg & 0xffff) as u16,
            ),
        ),
    };
    let (outcome, device) = match target {
        Target::Device(id) | Target::Deferred(id, _) => (
            Outcome::Ok,
            u16::try_from(id.0)
                .ok()
                .filter(|&i| i < KERNEL_DEVICE)
                .unwrap_or(NO_DEVICE),
        ),
        Target::Unclaimed => (Outcome::Unclaimed, NO_DEVICE),
        Target::Fault(FaultReason::DevicePanic) => (Outcome::HandlerError, NO_DEVICE),
        Target::Fault(_) => (Outcome::Malformed, NO_DEVICE),
    };
    let mut r = TraceRecord::new(
        req.vcpu,
        kind,
        if req.is_read {
            Direction::Read
        } else {
            Direction::Write
        },
        u8::try_from(req.size).unwrap_or(u8::MAX),
        address,
    );
    r.outcome = outcome;
    r.device = device;
    r.value = if req.is_read { value } else { req.value };
    r
}

/// One handled request as a record: `stamps` = processing, handler start, handler end, notify
/// (0: not observed); `withheld`: its NOTIFY was withheld (outcome `cleared`).
pub(crate) fn handled_record(
    req: &Request,
    target: Target,
    value: u64,
    stamps: [u64; 4],
    withheld: bool,
) -> TraceRecord {
    let mut r = trace_record(req, target, value);
    if withheld {
        r.outcome = Outcome::Cleared;
    }
    r.ts.processing = stamps[0];
    r.ts.handler_start = stamps[1];
    r.ts.handler_end = stamps[2];
    r.ts.notify = stamps[3];
    r
}

impl Dispatcher {
    /// The device table of a trace header ([`TraceSetup`](crate::trace::TraceSetup)): every
    /// registered device with its range (id = [`DeviceId`](super::DeviceId) index).
    pub fn trace_devices(&self) -> Vec<DeviceInfo> {
        self.ranges()
            .into_iter()
            .filter_map(|r| {
                Some(DeviceInfo {
                    id: u16::try_from(r.id.0).ok().filter(|&i| i < KERNEL_DEVICE)?,
                    name: r.name,
                    kind: match r.space {
                        RangeSpace::Pio => IoType::Pio,
                        RangeSpace::Mmio => IoType::Mmio,
                        RangeSpace::Pci => IoType::Pci,
                    },
                    base: r.base,
                    length: r.len,
                })
            })
            .collect()
    }
}
