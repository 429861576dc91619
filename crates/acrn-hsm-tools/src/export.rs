//! A trace export made by a thread and read chunk by chunk (about 64 KiB each), in bounded
//! memory: for output that is not a file (stdout), with the progress of the read.

use std::fs::File;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use acrn_trace::export::{ChromeOptions, export_chrome_with, export_csv};
use acrn_trace::{ByteSink, ByteSource, IoSource, TraceReader};

/// An export failure: the stable code (`ERR_TRACE_IO`, the decoder's `ERR_TRACE_*`) and the
/// message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ExportError {
    /// The stable code.
    pub code: String,
    /// What went wrong.
    pub message: String,
}

fn io_error(message: String) -> ExportError {
    ExportError {
        code: "ERR_TRACE_IO".into(),
        message,
    }
}

/// The format of an export.
#[derive(Debug, Clone, PartialEq)]
pub enum ExportFormat {
    /// Chrome Trace Event JSON, with its options.
    Chrome(ChromeOptions),
    /// CSV.
    Csv,
}

/// Counts the bytes read from a source (the progress of the export).
struct Counted<S> {
    inner: S,
    read: Arc<AtomicU64>,
}

impl<S: ByteSource> ByteSource for Counted<S> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, String> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

type Chunk = Result<Vec<u8>, ExportError>;

/// Hands the export's chunks to [`ExportStream::next`]; fails once the stream is dropped.
struct ChannelSink(SyncSender<Chunk>);

impl ByteSink for ChannelSink {
    fn write_all(&mut self, buf: &[u8]) -> Result<(), String> {
        self.0
            .send(Ok(buf.to_vec()))
            .map_err(|_| String::from("the reader of the export went away"))
    }
}

/// An export of the trace in a file, running on its own thread.
#[derive(Debug)]
pub struct ExportStream {
    rx: Mutex<Receiver<Chunk>>,
    read: Arc<AtomicU64>,
    size: u64,
}

impl ExportStream {
    /// Starts exporting the trace in file `path`.
    pub fn open(path: &str, format: ExportFormat) -> Result<ExportStream, ExportError> {
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let file = File::open(path).map_err(|e| io_error(format!("cannot open {path}: {e}")))?;
        let read = Arc::new(AtomicU64::new(0));
        let source = Counted {
            inner: IoSource(file),
            read: read.clone(),
        };
        let reader = TraceReader::new(source).map_err(|e| ExportError {
            code: e.code().to_string(),
            message: e.to_string(),
        })?;
        let (tx, rx) = sync_channel(8);
        std::thread::Builder::new()
            .name("trace-export".into())
            .spawn(move || {
                let sink = ChannelSink(tx.clone());
                let r = match &format {
                    ExportFormat::Chrome(o) => export_chrome_with(reader, sink, o).map(|_| ()),
                    ExportFormat::Csv => export_csv(reader, sink).map(|_| ()),
                };
                if let Err(e) = r {
                    let _ = tx.send(Err(ExportError {
                        code: e.code().to_string(),
                        message: e.to_string(),
                    }));
                }
            })
            .map_err(|e| io_error(format!("cannot start the export: {e}")))?;
        Ok(ExportStream {
            rx: Mutex::new(rx),
            read,
            size,
        })
    }

    /// The next chunk, `None` at the end, or the export's error.
    pub fn next_chunk(&self) -> Result<Option<Vec<u8>>, ExportError> {
        let rx = self.rx.lock().unwrap_or_else(|e| e.into_inner());
        match rx.recv() {
            Ok(Ok(b)) => Ok(Some(b)),
            Ok(Err(e)) => Err(e),
            Err(_) => Ok(None),
        }
    }

    /// How far the export has read its file, 0 to 1.
    pub fn progress(&self) -> f64 {
        if self.size == 0 {
            return 1.0;
        }
        (self.read.load(Ordering::Relaxed) as f64 / self.size as f64).min(1.0)
    }
}
