//! The acrn-hsm I/O-request trace: format, streaming writer and reader, reports, exports.
//!
//! `#![no_std]` + `alloc`, no dependencies: the same decoder runs in the native addon and, compiled
//! to `wasm32-unknown-unknown`, in the browser. The format is specified in `docs/trace-format.md`;
//! in short, a versioned little-endian header (magic `b"ACRNTRC\0"`, clock, VM, device table)
//! followed by fixed-size 80-byte records, one per I/O request, and an optional footer holding
//! the record count.
//!
//! * [`format`]: the types ([`TraceHeader`], [`TraceRecord`], ...) and the byte layout.
//! * [`io`]: [`ByteSource`] / [`ByteSink`], the `Read`/`Write`-like traits the reader and the
//!   writer work over (with `std` adapters behind the `std` feature).
//! * [`TraceWriter`]: streaming writer. [`TraceReader`]: streaming reader with bounded memory;
//!   any truncated or corrupt input gives a [`TraceError`] naming the byte offset, never a panic.
//! * [`report`]: `perf kvm stat report`-style tables with percentiles per stage, on a bounded,
//!   log-linear [`Histogram`].
//! * [`export`]: Chrome Trace Event JSON (Perfetto) and CSV, written in chunks.
//! * [`flat`]: the flat forms the native and wasm bindings share (columns, JSON header, words).
//!
//! ```
//! use acrn_trace::{TraceHeader, TraceReader, TraceRecord, TraceWriter, IoType, Direction};
//!
//! let header = TraceHeader::new("demo", 1);
//! let mut writer = TraceWriter::new(Vec::new(), &header)?;
//! let mut rec = TraceRecord::new(0, IoType::Pio, Direction::Write, 1, 0x3f8);
//! rec.ts.pending = 1_000;
//! rec.ts.free = 3_500;
//! writer.write_record(&rec)?;
//! let bytes = writer.finish()?;
//!
//! let mut reader = TraceReader::new(&bytes[..])?;
//! assert_eq!(reader.next_record()?, Some(rec));
//! assert_eq!(reader.next_record()?, None);
//! assert_eq!(reader.footer_count(), Some(1));
//! # Ok::<(), acrn_trace::TraceError>(())
//! ```

#![no_std]
#![warn(missing_docs)]

extern crate alloc;
#[cfg(any(test, feature = "std"))]
extern crate std;

pub mod error;
pub mod export;
pub mod flat;
pub mod format;
mod header;
pub mod hist;
pub mod io;
pub mod reader;
pub mod report;
pub mod writer;

pub use error::{ErrorKind, TraceError};
pub use format::{
    ClockInfo, CompletionMode, DeviceInfo, Direction, FORMAT_VERSION, IoType, MAGIC, NO_DEVICE,
    Outcome, RECORD_SIZE, Timestamps, TraceHeader, TraceRecord, VmInfo,
};
pub use hist::Histogram;
pub use io::{ByteSink, ByteSource};
#[cfg(feature = "std")]
pub use io::{IoSink, IoSource};
pub use reader::TraceReader;
pub use report::{GroupBy, GroupReport, Report, ReportBuilder, Stage};
pub use writer::TraceWriter;
