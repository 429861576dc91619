//! The header's encoding ([`TraceHeader::encode`]) and decoding (the reader's [`parse_fixed`] and
//! [`parse_header`]): the layout of `format.rs`, the failures of `error.rs`.

use crate::error::{ErrorKind, TraceError};
use crate::format::{
    ClockInfo, CompletionMode, DeviceInfo, FIXED_HEADER_SIZE, FORMAT_VERSION, IoType, MAGIC,
    MAX_HEADER_SIZE, NO_DEVICE, RECORD_SIZE, TraceHeader, VmInfo, u16_at, u32_at, u64_at,
};
use alloc::string::String;
use alloc::vec::Vec;

impl TraceHeader {
    /// Encodes the header (with its padding); errors if a name is longer than 65535 bytes,
    /// there are more than 65535 devices, or device ids are not unique or equal [`NO_DEVICE`].
    pub fn encode(&self) -> Result<Vec<u8>, TraceError> {
        let bad = |what| Err(TraceError::new(0, ErrorKind::BadHeader(what)));
        let Ok(device_count) = u16::try_from(self.devices.len()) else {
            return bad("more than 65535 devices");
        };
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes()); // header_len, patched below
        out.extend_from_slice(&(RECORD_SIZE as u32).to_le_bytes());
        out.extend_from_slice(&device_count.to_le_bytes());
        out.extend_from_slice(&self.vm.vmid.to_le_bytes());
        out.extend_from_slice(&self.vm.vcpu_count.to_le_bytes());
        out.push(self.vm.completion as u8);
        out.push(0);
        out.extend_from_slice(&self.clock.resolution_ns.to_le_bytes());
        out.extend_from_slice(&self.clock.start_ns.to_le_bytes());
        out.extend_from_slice(&self.clock.wall_start_ns.to_le_bytes());
        out.extend_from_slice(&[0u8; 16]);
        debug_assert_eq!(out.len(), FIXED_HEADER_SIZE);
        for s in [&self.clock.source, &self.vm.name] {
            let Ok(len) = u16::try_from(s.len()) else {
                return bad("a name is longer than 65535 bytes");
            };
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        for (i, d) in self.devices.iter().enumerate() {
            if d.id == NO_DEVICE {
                return bad("device id 0xffff is reserved for 'no device'");
            }
            if self.devices[..i].iter().any(|o| o.id == d.id) {
                return bad("duplicate device id");
            }
            let Ok(len) = u16::try_from(d.name.len()) else {
                return bad("a device name is longer than 65535 bytes");
            };
            out.extend_from_slice(&d.id.to_le_bytes());
            out.push(d.kind as u8);
            out.push(0);
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&0u16.to_le_bytes());
            out.extend_from_slice(&d.base.to_le_bytes());
            out.extend_from_slice(&d.length.to_le_bytes());
            out.extend_from_slice(d.name.as_bytes());
        }
        while out.len() % 8 != 0 {
            out.push(0);
        }
        let Ok(len) = u32::try_from(out.len()) else {
            return bad("header longer than 16 MiB");
        };
        if len > MAX_HEADER_SIZE {
            return bad("header longer than 16 MiB");
        }
        out[12..16].copy_from_slice(&len.to_le_bytes());
        Ok(out)
    }
}

/// The fields of the fixed header the reader needs before the rest of the header is read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FixedHeader {
    pub header_len: u32,
}

/// Checks magic, version, header length and record size of the first 64 bytes.
pub(crate) fn parse_fixed(b: &[u8; FIXED_HEADER_SIZE]) -> Result<FixedHeader, TraceError> {
    if b[..8] != MAGIC {
        return Err(TraceError::new(0, ErrorKind::BadMagic));
    }
    let version = u16_at(b, 8);
    if version != FORMAT_VERSION {
        return Err(TraceError::new(8, ErrorKind::UnsupportedVersion(version)));
    }
    let header_len = u32_at(b, 12);
    if (header_len as usize) < FIXED_HEADER_SIZE + 4
        || header_len > MAX_HEADER_SIZE
        || header_len % 8 != 0
    {
        return Err(TraceError::new(12, ErrorKind::BadHeaderLength(header_len)));
    }
    let record_size = u32_at(b, 16);
    if record_size as usize != RECORD_SIZE {
        return Err(TraceError::new(16, ErrorKind::BadRecordSize(record_size)));
    }
    Ok(FixedHeader { header_len })
}

/// A cursor over the header bytes that reports offsets on failure.
struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&[u8], TraceError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.b.len());
        match end {
            Some(end) => {
                let s = &self.b[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(TraceError::new(self.pos as u64, ErrorKind::BadHeader(what))),
        }
    }
    fn string(&mut self, what: &'static str) -> Result<String, TraceError> {
        let len = usize::from(u16_at(self.take(2, what)?, 0));
        let at = self.pos as u64;
        let bytes = self.take(len, what)?;
        match core::str::from_utf8(bytes) {
            Ok(s) => Ok(String::from(s)),
            Err(_) => Err(TraceError::new(
                at,
                ErrorKind::BadHeader("a name is not valid UTF-8"),
            )),
        }
    }
}

/// Parses a whole header (`b.len()` is the header length, already checked by [`parse_fixed`]).
pub(crate) fn parse_header(b: &[u8]) -> Result<TraceHeader, TraceError> {
    let bad = |off: usize, what| Err(TraceError::new(off as u64, ErrorKind::BadHeader(what)));
    let device_count = usize::from(u16_at(b, 20));
    let vmid = u16_at(b, 22);
    let vcpu_count = u16_at(b, 24);
    let completion = match b[26] {
        0 => CompletionMode::Notify,
        1 => CompletionMode::Polling,
        _ => return bad(26, "completion mode is neither 0 (notify) nor 1 (polling)"),
    };
    let resolution_ns = u32_at(b, 28);
    let start_ns = u64_at(b, 32);
    let wall_start_ns = u64_at(b, 40);
    let mut c = Cursor {
        b,
        pos: FIXED_HEADER_SIZE,
    };
    let source = c.string("the clock source name extends beyond the header length")?;
    let name = c.string("the VM name extends beyond the header length")?;
    let mut devices: Vec<DeviceInfo> = Vec::with_capacity(device_count.min(1024));
    for _ in 0..device_count {
        let at = c.pos;
        let e = c.take(24, "the device table extends beyond the header length")?;
        let id = u16_at(e, 0);
        let Some(kind) = IoType::from_u8(e[2]) else {
            return bad(at + 2, "device kind is not 0 (pio), 1 (mmio) or 2 (pci)");
        };
        let name_len = usize::from(u16_at(e, 4));
        let base = u64_at(e, 8);
        let length = u64_at(e, 16);
        if id == NO_DEVICE {
            return bad(at, "device id 0xffff is reserved for 'no device'");
        }
        if devices.iter().any(|d| d.id == id) {
            return bad(at, "duplicate device id");
        }
        let name_at = c.pos;
        let nb = c.take(name_len, "a device name extends beyond the header length")?;
        let Ok(dname) = core::str::from_utf8(nb) else {
            return bad(name_at, "a device name is not valid UTF-8");
        };
        devices.push(DeviceInfo {
            id,
            name: String::from(dname),
            kind,
            base,
            length,
        });
    }
    Ok(TraceHeader {
        version: FORMAT_VERSION,
        clock: ClockInfo {
            source,
            resolution_ns,
            start_ns,
            wall_start_ns,
        },
        vm: VmInfo {
            vmid,
            vcpu_count,
            completion,
            name,
        },
        devices,
    })
}
