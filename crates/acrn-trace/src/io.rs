//! The byte source and sink the reader and the writer work over (`no_std` stand-ins for
//! `std::io::Read` / `std::io::Write`).

use alloc::string::String;
use alloc::vec::Vec;

/// Something bytes can be read from, like `std::io::Read`.
pub trait ByteSource {
    /// Reads up to `buf.len()` bytes into `buf` and returns how many; `0` means the end of the
    /// input (for a non-empty `buf`).
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, String>;
}

impl ByteSource for &[u8] {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, String> {
        let n = buf.len().min(self.len());
        let (head, tail) = self.split_at(n);
        buf[..n].copy_from_slice(head);
        *self = tail;
        Ok(n)
    }
}

impl<S: ByteSource + ?Sized> ByteSource for &mut S {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, String> {
        (**self).read(buf)
    }
}

/// Something bytes can be written to, like `std::io::Write`.
pub trait ByteSink {
    /// Writes all of `buf`, or fails.
    fn write_all(&mut self, buf: &[u8]) -> Result<(), String>;
}

impl ByteSink for Vec<u8> {
    fn write_all(&mut self, buf: &[u8]) -> Result<(), String> {
        self.extend_from_slice(buf);
        Ok(())
    }
}

impl<W: ByteSink + ?Sized> ByteSink for &mut W {
    fn write_all(&mut self, buf: &[u8]) -> Result<(), String> {
        (**self).write_all(buf)
    }
}

/// A [`ByteSource`] over any `std::io::Read` (wrap files in a `BufReader` or not: the trace
/// reader buffers by itself).
#[cfg(feature = "std")]
#[derive(Debug)]
pub struct IoSource<R>(pub R);

#[cfg(feature = "std")]
impl<R: std::io::Read> ByteSource for IoSource<R> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, String> {
        use std::string::ToString;
        loop {
            match self.0.read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.to_string()),
            }
        }
    }
}

/// A [`ByteSink`] over any `std::io::Write` (wrap files in a `BufWriter`).
#[cfg(feature = "std")]
#[derive(Debug)]
pub struct IoSink<W>(pub W);

#[cfg(feature = "std")]
impl<W: std::io::Write> ByteSink for IoSink<W> {
    fn write_all(&mut self, buf: &[u8]) -> Result<(), String> {
        use std::string::ToString;
        self.0.write_all(buf).map_err(|e| e.to_string())
    }
}
