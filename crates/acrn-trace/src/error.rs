//! [`TraceError`]: what went wrong, and at which byte offset of the trace.

use alloc::string::String;
use core::fmt;

/// An error reading or writing a trace. `offset` is the byte offset in the trace where the
/// problem is (the start of the bad field or record, or where the input ended).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceError {
    /// Byte offset in the trace.
    pub offset: u64,
    /// What was wrong.
    pub kind: ErrorKind,
}

/// The kinds of [`TraceError`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The first 8 bytes are not `b"ACRNTRC\0"`: not an acrn-hsm trace.
    BadMagic,
    /// The format version is not one this decoder reads.
    UnsupportedVersion(u16),
    /// The input ends inside the header (`header_len` bytes were announced).
    TruncatedHeader {
        /// The header length announced by the file (0 when the input ends before it).
        header_len: u32,
    },
    /// The header length field is impossible (smaller than the fixed header or above 16 MiB).
    BadHeaderLength(u32),
    /// The record size field is not the one of this version.
    BadRecordSize(u32),
    /// A field of the header is invalid.
    BadHeader(&'static str),
    /// The input ends inside record `index`: `got` of `size` bytes are there.
    TruncatedRecord {
        /// Index of the record (0-based).
        index: u64,
        /// Bytes present.
        got: usize,
        /// Bytes a record has.
        size: usize,
    },
    /// A field of record `index` holds a value that cannot be.
    BadRecord {
        /// Index of the record (0-based).
        index: u64,
        /// The field.
        field: &'static str,
        /// The value found.
        value: u64,
    },
    /// The footer's record count is not the number of records before it.
    CountMismatch {
        /// Count in the footer.
        footer: u64,
        /// Records actually present.
        records: u64,
    },
    /// Bytes follow the footer.
    TrailingData,
    /// The byte source or sink failed.
    Io(String),
    /// An argument given to an encoder or a report is invalid (not about the trace bytes).
    InvalidArgument(&'static str),
}

impl TraceError {
    /// An error of `kind` at `offset`.
    pub fn new(offset: u64, kind: ErrorKind) -> Self {
        TraceError { offset, kind }
    }

    /// Stable error code, used by the bindings as `error.code`: `ERR_TRACE_BAD_MAGIC`,
    /// `ERR_TRACE_VERSION`, `ERR_TRACE_TRUNCATED`, `ERR_TRACE_CORRUPT`, `ERR_TRACE_IO` or
    /// `ERR_TRACE_INVALID` (a bad argument, not bad trace bytes).
    pub fn code(&self) -> &'static str {
        match self.kind {
            ErrorKind::BadMagic => "ERR_TRACE_BAD_MAGIC",
            ErrorKind::UnsupportedVersion(_) => "ERR_TRACE_VERSION",
            ErrorKind::TruncatedHeader { .. } | ErrorKind::TruncatedRecord { .. } => {
                "ERR_TRACE_TRUNCATED"
            }
            ErrorKind::BadHeaderLength(_)
            | ErrorKind::BadRecordSize(_)
            | ErrorKind::BadHeader(_)
            | ErrorKind::BadRecord { .. }
            | ErrorKind::CountMismatch { .. }
            | ErrorKind::TrailingData => "ERR_TRACE_CORRUPT",
            ErrorKind::Io(_) => "ERR_TRACE_IO",
            ErrorKind::InvalidArgument(_) => "ERR_TRACE_INVALID",
        }
    }
}

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let off = self.offset;
        match &self.kind {
            ErrorKind::BadMagic => write!(
                f,
                "not an acrn-hsm trace: bad magic at byte offset {off} (expected \"ACRNTRC\\0\")"
            ),
            ErrorKind::UnsupportedVersion(v) => write!(
                f,
                "unsupported trace format version {v} at byte offset {off} (this decoder reads version {})",
                crate::format::FORMAT_VERSION
            ),
            ErrorKind::TruncatedHeader { header_len: 0 } => write!(
                f,
                "truncated trace: the input ends at byte offset {off}, inside the fixed header ({} bytes)",
                crate::format::FIXED_HEADER_SIZE
            ),
            ErrorKind::TruncatedHeader { header_len } => write!(
                f,
                "truncated trace: the header is {header_len} bytes but the input ends at byte offset {off}"
            ),
            ErrorKind::BadHeaderLength(n) => write!(
                f,
                "corrupt trace: header length {n} at byte offset {off} is impossible (must be {}..={} and a multiple of 8)",
                crate::format::FIXED_HEADER_SIZE,
                crate::format::MAX_HEADER_SIZE
            ),
            ErrorKind::BadRecordSize(n) => write!(
                f,
                "corrupt trace: record size {n} at byte offset {off} (format version {} records are {} bytes)",
                crate::format::FORMAT_VERSION,
                crate::format::RECORD_SIZE
            ),
            ErrorKind::BadHeader(what) => {
                write!(f, "corrupt trace header at byte offset {off}: {what}")
            }
            ErrorKind::TruncatedRecord { index, got, size } => write!(
                f,
                "truncated record {index} at byte offset {off}: {got} of {size} bytes (the input ends mid-record)"
            ),
            ErrorKind::BadRecord {
                index,
                field,
                value,
            } => write!(
                f,
                "corrupt record {index} at byte offset {off}: invalid {field} {value}"
            ),
            ErrorKind::CountMismatch { footer, records } => write!(
                f,
                "corrupt trace: the footer at byte offset {off} counts {footer} records but {records} precede it"
            ),
            ErrorKind::TrailingData => write!(
                f,
                "corrupt trace: unexpected bytes after the footer, at byte offset {off}"
            ),
            ErrorKind::Io(msg) => write!(f, "I/O error at byte offset {off}: {msg}"),
            ErrorKind::InvalidArgument(what) => write!(f, "invalid argument: {what}"),
        }
    }
}

impl core::error::Error for TraceError {}
