//! [`TraceReader`]: the streaming decoder.

use crate::error::{ErrorKind, TraceError};
use crate::format::{
    self, FIXED_HEADER_SIZE, NO_DEVICE, RECORD_SIZE, TraceHeader, TraceRecord, footer_count,
};
use crate::header;
use crate::io::ByteSource;
use alloc::vec;
use alloc::vec::Vec;

/// Size of the reader's input buffer (its memory does not grow with the trace).
const BUF_SIZE: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Records,
    /// Ended cleanly; `Some(count)` if there was a footer.
    Done(Option<u64>),
    /// An error was returned; nothing more is read.
    Failed,
}

/// Reads a trace one record at a time, in bounded memory (a 64 KiB buffer, the header and an
/// 8 KiB device-id set), whatever the number of records.
///
/// A trace written in full ends with a footer, and the reader checks its count. A trace whose
/// writer stopped without a footer (a crash, or a trace still being written) ends cleanly at a
/// record boundary: [`footer_count`](Self::footer_count) is then `None`. Everything else — bad
/// magic, unsupported version, a header or a record cut short, an impossible field, a footer
/// whose count disagrees, bytes after the footer — is a [`TraceError`] naming the byte offset.
/// No input makes it panic.
pub struct TraceReader<S> {
    src: S,
    header: TraceHeader,
    header_len: u32,
    /// Bit `id` set if device `id` is in the table.
    device_ids: Vec<u64>,
    buf: Vec<u8>,
    pos: usize,
    len: usize,
    eof: bool,
    /// Byte offset of the next record.
    offset: u64,
    index: u64,
    state: State,
}

impl<S> core::fmt::Debug for TraceReader<S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TraceReader")
            .field("header", &self.header)
            .field("offset", &self.offset)
            .field("records_read", &self.index)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// Reads from `src` into `out` until it is full or the source ends; returns the bytes read.
fn read_full<S: ByteSource>(src: &mut S, out: &mut [u8], offset: u64) -> Result<usize, TraceError> {
    let mut got = 0;
    while got < out.len() {
        let n = src
            .read(&mut out[got..])
            .map_err(|e| TraceError::new(offset + got as u64, ErrorKind::Io(e)))?;
        if n == 0 {
            break;
        }
        // A misbehaving source claiming more than it was given is treated as the end.
        got = got.saturating_add(n).min(out.len());
    }
    Ok(got)
}

impl<S: ByteSource> TraceReader<S> {
    /// Reads and checks the header.
    pub fn new(mut src: S) -> Result<Self, TraceError> {
        let mut fixed = [0u8; FIXED_HEADER_SIZE];
        let got = read_full(&mut src, &mut fixed, 0)?;
        if got >= 8 && fixed[..8] != format::MAGIC {
            return Err(TraceError::new(0, ErrorKind::BadMagic));
        }
        if got < 8 && fixed[..got] != format::MAGIC[..got] {
            return Err(TraceError::new(0, ErrorKind::BadMagic));
        }
        if got < FIXED_HEADER_SIZE {
            // Report what can be known from the bytes that are there (version, length).
            if got >= 10 {
                let version = u16::from_le_bytes([fixed[8], fixed[9]]);
                if version != format::FORMAT_VERSION {
                    return Err(TraceError::new(8, ErrorKind::UnsupportedVersion(version)));
                }
            }
            let header_len = if got >= 16 {
                u32::from_le_bytes([fixed[12], fixed[13], fixed[14], fixed[15]])
            } else {
                0
            };
            return Err(TraceError::new(
                got as u64,
                ErrorKind::TruncatedHeader { header_len },
            ));
        }
        let fh = header::parse_fixed(&fixed)?;
        let header_len = fh.header_len as usize;
        let mut hb = vec![0u8; header_len];
        hb[..FIXED_HEADER_SIZE].copy_from_slice(&fixed);
        let got = read_full(
            &mut src,
            &mut hb[FIXED_HEADER_SIZE..],
            FIXED_HEADER_SIZE as u64,
        )?;
        if FIXED_HEADER_SIZE + got < header_len {
            return Err(TraceError::new(
                (FIXED_HEADER_SIZE + got) as u64,
                ErrorKind::TruncatedHeader {
                    header_len: fh.header_len,
                },
            ));
        }
        let header = header::parse_header(&hb)?;
        let mut device_ids = vec![0u64; 65536 / 64];
        for d in &header.devices {
            device_ids[usize::from(d.id / 64)] |= 1 << (d.id % 64);
        }
        Ok(TraceReader {
            src,
            header,
            header_len: fh.header_len,
            device_ids,
            buf: vec![0u8; BUF_SIZE],
            pos: 0,
            len: 0,
            eof: false,
            offset: u64::from(fh.header_len),
            index: 0,
            state: State::Records,
        })
    }

    /// The header.
    pub fn header(&self) -> &TraceHeader {
        &self.header
    }

    /// Length of the header in bytes (the offset of the first record).
    pub fn header_len(&self) -> u32 {
        self.header_len
    }

    /// Records read so far.
    pub fn records_read(&self) -> u64 {
        self.index
    }

    /// After the last record: the footer's record count, or `None` if the trace has no footer
    /// (its writer did not finish it) or has not been read to the end yet.
    pub fn footer_count(&self) -> Option<u64> {
        match self.state {
            State::Done(c) => c,
            _ => None,
        }
    }

    /// True once the end of the trace has been reached without error.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done(_))
    }

    /// Copies up to `out.len()` buffered bytes into `out`, refilling; returns the count.
    fn take(&mut self, out: &mut [u8]) -> Result<usize, TraceError> {
        let mut got = 0;
        while got < out.len() {
            if self.pos == self.len {
                if self.eof {
                    break;
                }
                let at = self.offset + got as u64;
                let n = read_full(&mut self.src, &mut self.buf, at)?;
                self.pos = 0;
                self.len = n;
                if n < self.buf.len() {
                    self.eof = true;
                }
                if n == 0 {
                    break;
                }
            }
            let n = (self.len - self.pos).min(out.len() - got);
            out[got..got + n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
            self.pos += n;
            got += n;
        }
        Ok(got)
    }

    fn fail(&mut self, err: TraceError) -> Result<Option<TraceRecord>, TraceError> {
        self.state = State::Failed;
        Err(err)
    }

    /// The next record, `Ok(None)` at the end of the trace, or the error that stops reading
    /// (after an error, every call returns `Ok(None)`).
    pub fn next_record(&mut self) -> Result<Option<TraceRecord>, TraceError> {
        if self.state != State::Records {
            return Ok(None);
        }
        let mut rb = [0u8; RECORD_SIZE];
        let got = match self.take(&mut rb) {
            Ok(n) => n,
            Err(e) => return self.fail(e),
        };
        let at = self.offset;
        if got == 0 {
            self.state = State::Done(None);
            return Ok(None);
        }
        if got < RECORD_SIZE {
            return self.fail(TraceError::new(
                at,
                ErrorKind::TruncatedRecord {
                    index: self.index,
                    got,
                    size: RECORD_SIZE,
                },
            ));
        }
        if let Some(count) = footer_count(&rb) {
            if count != self.index {
                return self.fail(TraceError::new(
                    at,
                    ErrorKind::CountMismatch {
                        footer: count,
                        records: self.index,
                    },
                ));
            }
            let mut extra = [0u8; 1];
            match self.take(&mut extra) {
                Ok(0) => {}
                Ok(_) => {
                    return self.fail(TraceError::new(
                        at + RECORD_SIZE as u64,
                        ErrorKind::TrailingData,
                    ));
                }
                Err(e) => return self.fail(e),
            }
            self.state = State::Done(Some(count));
            return Ok(None);
        }
        let bad = |field: &'static str, value: u64, index: u64| {
            TraceError::new(
                at,
                ErrorKind::BadRecord {
                    index,
                    field,
                    value,
                },
            )
        };
        let rec = match TraceRecord::decode(&rb) {
            Ok(r) => r,
            Err((field, value)) => return self.fail(bad(field, value, self.index)),
        };
        if self.header.vm.vcpu_count != 0 && rec.vcpu >= self.header.vm.vcpu_count {
            return self.fail(bad("vcpu", u64::from(rec.vcpu), self.index));
        }
        if rec.device != NO_DEVICE
            && self.device_ids[usize::from(rec.device / 64)] & (1 << (rec.device % 64)) == 0
        {
            return self.fail(bad(
                "device (not in the device table)",
                u64::from(rec.device),
                self.index,
            ));
        }
        self.offset += RECORD_SIZE as u64;
        self.index += 1;
        Ok(Some(rec))
    }
}

impl<S: ByteSource> Iterator for TraceReader<S> {
    type Item = Result<TraceRecord, TraceError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_record().transpose()
    }
}
