//! [`TraceWriter`]: the streaming encoder.

use crate::error::{ErrorKind, TraceError};
use crate::format::{NO_DEVICE, RECORD_SIZE, TraceHeader, TraceRecord, encode_footer};
use crate::io::ByteSink;
use alloc::vec;
use alloc::vec::Vec;

/// Writes a trace: the header at once, then each record as it comes, then (on
/// [`finish`](Self::finish)) the footer. Buffering is the sink's business (wrap a file in a
/// `BufWriter`). A trace whose writer never finishes is still readable up to its last whole
/// record.
#[derive(Debug)]
pub struct TraceWriter<W> {
    sink: W,
    vcpu_count: u16,
    device_ids: Vec<u64>,
    offset: u64,
    records: u64,
}

impl<W: ByteSink> TraceWriter<W> {
    /// Writes `header` (its `version` is ignored: the writer writes the current version).
    pub fn new(mut sink: W, header: &TraceHeader) -> Result<Self, TraceError> {
        let bytes = header.encode()?;
        sink.write_all(&bytes)
            .map_err(|e| TraceError::new(0, ErrorKind::Io(e)))?;
        let mut device_ids = vec![0u64; 65536 / 64];
        for d in &header.devices {
            device_ids[usize::from(d.id / 64)] |= 1 << (d.id % 64);
        }
        Ok(TraceWriter {
            sink,
            vcpu_count: header.vm.vcpu_count,
            device_ids,
            offset: bytes.len() as u64,
            records: 0,
        })
    }

    /// Appends one record. Records the reader would reject (a `vcpu` not below the header's
    /// vCPU count, a device not in the table) are refused.
    pub fn write_record(&mut self, rec: &TraceRecord) -> Result<(), TraceError> {
        let bad = |field, value| {
            TraceError::new(
                self.offset,
                ErrorKind::BadRecord {
                    index: self.records,
                    field,
                    value,
                },
            )
        };
        if self.vcpu_count != 0 && rec.vcpu >= self.vcpu_count {
            return Err(bad("vcpu", u64::from(rec.vcpu)));
        }
        if rec.device != NO_DEVICE
            && self.device_ids[usize::from(rec.device / 64)] & (1 << (rec.device % 64)) == 0
        {
            return Err(bad(
                "device (not in the device table)",
                u64::from(rec.device),
            ));
        }
        let mut b = [0u8; RECORD_SIZE];
        rec.encode(&mut b);
        self.sink
            .write_all(&b)
            .map_err(|e| TraceError::new(self.offset, ErrorKind::Io(e)))?;
        self.offset += RECORD_SIZE as u64;
        self.records += 1;
        Ok(())
    }

    /// Records written so far.
    pub fn records_written(&self) -> u64 {
        self.records
    }

    /// Writes the footer and returns the sink.
    pub fn finish(mut self) -> Result<W, TraceError> {
        self.sink
            .write_all(&encode_footer(self.records))
            .map_err(|e| TraceError::new(self.offset, ErrorKind::Io(e)))?;
        Ok(self.sink)
    }

    /// Returns the sink without writing the footer (the trace reads as unfinished).
    pub fn into_inner(self) -> W {
        self.sink
    }
}
