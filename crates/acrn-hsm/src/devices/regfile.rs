//! A register file backed by memory: any 1/2/4/8-byte access at any offset inside it reads or
//! writes the bytes there, little-endian (aligned accesses are the common case; unaligned ones are
//! served byte by byte the same way). Reset restores the initial contents.
//!
//! The bytes live in 64-bit atomic words shared with the [`RegisterView`]s: the device (on the
//! serving thread) is their only writer and stores whole words, a view only loads them, so an
//! access takes no lock and no locked instruction (a mutex here cost two locked operations per
//! request on the benchmark's hot path). A view sees each word whole; an unaligned value that
//! spans two words may be seen half written while the device writes it.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::client::IoDevice;

/// The memory: `len` bytes in little-endian words (the bytes past `len` in the last word stay 0).
#[derive(Debug)]
struct Words {
    words: Box<[AtomicU64]>,
    len: usize,
}

impl Words {
    fn new(bytes: &[u8]) -> Words {
        let words = bytes
            .chunks(8)
            .map(|c| AtomicU64::new(le_word(c)))
            .collect();
        Words {
            words,
            len: bytes.len(),
        }
    }

    fn word(&self, i: usize) -> u64 {
        // Relaxed: a view needs no order with anything else the device does.
        self.words[i].load(Ordering::Relaxed)
    }

    /// The little-endian value of `size` (0..=8) bytes at `offset` (`None` out of range).
    fn read(&self, offset: usize, size: usize) -> Option<u64> {
        let end = offset.checked_add(size)?;
        if size > 8 || end > self.len {
            return None;
        }
        if size == 0 {
            return Some(0);
        }
        let (i, shift) = (offset / 8, 8 * (offset % 8));
        let lo = self.word(i) >> shift;
        let v = if shift + 8 * size <= 64 {
            lo
        } else {
            lo | self.word(i + 1) << (64 - shift)
        };
        Some(v & mask(size))
    }

    /// Stores `size` (1..=8) bytes of `value` at `offset`; out of range: ignored. Only the one
    /// writer calls it (the device, through `&mut`), so a load and a store replace a word.
    fn write(&self, offset: usize, size: usize, value: u64) {
        let Some(end) = offset.checked_add(size) else {
            return;
        };
        if size == 0 || size > 8 || end > self.len {
            return;
        }
        let (i, shift) = (offset / 8, 8 * (offset % 8));
        let m = mask(size);
        let v = value & m;
        self.merge(i, m << shift, v << shift);
        if shift + 8 * size > 64 {
            self.merge(i + 1, m >> (64 - shift), v >> (64 - shift));
        }
    }

    fn merge(&self, i: usize, keep_out: u64, bits: u64) {
        let w = &self.words[i];
        w.store(
            (w.load(Ordering::Relaxed) & !keep_out) | bits,
            Ordering::Relaxed,
        );
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out: Vec<u8> = (0..self.words.len())
            .flat_map(|i| self.word(i).to_le_bytes())
            .collect();
        out.truncate(self.len);
        out
    }

    fn fill(&self, bytes: &[u8]) {
        for (w, c) in self.words.iter().zip(bytes.chunks(8)) {
            w.store(le_word(c), Ordering::Relaxed);
        }
    }
}

/// Up to 8 bytes as a little-endian word (missing high bytes 0).
fn le_word(bytes: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w[..bytes.len()].copy_from_slice(bytes);
    u64::from_le_bytes(w)
}

/// The low `size` bytes (any size 1..=8: a device may be called with 3 bytes, unlike
/// `client::ones`, which knows only the sizes a request can have).
fn mask(size: usize) -> u64 {
    if size >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * size)) - 1
    }
}

/// A view of a [`RegisterFile`]'s memory, usable while the device is owned by a dispatcher.
#[derive(Debug, Clone)]
pub struct RegisterView(Arc<Words>);

impl RegisterView {
    /// A copy of the contents.
    pub fn bytes(&self) -> Vec<u8> {
        self.0.bytes()
    }
    /// The little-endian value of `size` bytes at `offset` (`None` out of range).
    pub fn read(&self, offset: usize, size: usize) -> Option<u64> {
        self.0.read(offset, size)
    }
}

/// The register file.
pub struct RegisterFile {
    name: String,
    mem: Arc<Words>,
    initial: Vec<u8>,
}

impl fmt::Debug for RegisterFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisterFile")
            .field("name", &self.name)
            .field("len", &self.initial.len())
            .finish()
    }
}

impl RegisterFile {
    /// `len` zeroed bytes.
    pub fn new(len: usize) -> RegisterFile {
        RegisterFile::with_contents(vec![0; len])
    }

    /// Initial (and reset) contents `bytes`.
    pub fn with_contents(bytes: Vec<u8>) -> RegisterFile {
        RegisterFile {
            name: "regfile".into(),
            mem: Arc::new(Words::new(&bytes)),
            initial: bytes,
        }
    }

    /// Renames the device.
    pub fn with_name(mut self, name: impl Into<String>) -> RegisterFile {
        self.name = name.into();
        self
    }

    /// A shared view of the memory.
    pub fn view(&self) -> RegisterView {
        RegisterView(self.mem.clone())
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.initial.len()
    }

    /// Zero length.
    pub fn is_empty(&self) -> bool {
        self.initial.is_empty()
    }
}

impl IoDevice for RegisterFile {
    fn name(&self) -> &str {
        &self.name
    }

    fn read(&mut self, offset: u64, size: u8) -> u64 {
        usize::try_from(offset)
            .ok()
            .and_then(|o| self.mem.read(o, usize::from(size)))
            .unwrap_or(crate::client::ones(u64::from(size)))
    }

    fn write(&mut self, offset: u64, size: u8, value: u64) {
        if let Ok(o) = usize::try_from(offset) {
            self.mem.write(o, usize::from(size).min(8), value);
        }
    }

    fn reset(&mut self) {
        self.mem.fill(&self.initial);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn little_endian_at_every_size() {
        let mut r = RegisterFile::new(16);
        r.write(0, 8, 0x0807_0605_0403_0201);
        assert_eq!(r.read(0, 1), 0x01);
        assert_eq!(r.read(1, 1), 0x02);
        assert_eq!(r.read(2, 2), 0x0403);
        assert_eq!(r.read(4, 4), 0x0807_0605);
        assert_eq!(r.read(0, 8), 0x0807_0605_0403_0201);
        r.write(2, 2, 0xbbaa);
        assert_eq!(r.read(0, 4), 0xbbaa_0201);
        r.write(8, 4, 0xdead_beef);
        assert_eq!(r.view().read(8, 4), Some(0xdead_beef));
        assert_eq!(r.read(12, 4), 0);
        // Past the end (never reached through a dispatcher): all ones, write ignored.
        assert_eq!(r.read(14, 4), 0xffff_ffff);
        r.write(14, 4, 0);
        r.reset();
        assert_eq!(r.read(0, 8), 0);
        assert_eq!(r.view().bytes(), vec![0; 16]);
        // A view's empty read: in range up to the end, as an empty slice is.
        assert_eq!(r.view().read(16, 0), Some(0));
        assert_eq!(r.view().read(17, 0), None);
        assert_eq!(r.view().read(0, 9), None);
    }

    #[test]
    fn reset_restores_initial_contents() {
        let mut r = RegisterFile::with_contents(vec![1, 2, 3, 4]).with_name("id");
        assert_eq!(r.name(), "id");
        r.write(0, 4, 0);
        assert_eq!(r.read(0, 4), 0);
        r.reset();
        assert_eq!(r.read(0, 4), 0x0403_0201);
    }

    #[test]
    fn every_offset_and_size_matches_a_byte_array() {
        // Against the obvious model: a byte array, little-endian, across word boundaries.
        let len = 21;
        let mut r = RegisterFile::new(len);
        let mut model = vec![0u8; len];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let size = [1usize, 2, 4, 8][(x & 3) as usize];
            let offset = ((x >> 8) % (len as u64 + 2)) as usize;
            let in_range = offset + size <= len;
            if x & 0x100_0000 != 0 {
                r.write(offset as u64, size as u8, x);
                if in_range {
                    model[offset..offset + size].copy_from_slice(&x.to_le_bytes()[..size]);
                }
            } else {
                let mut v = [0u8; 8];
                let want = if in_range {
                    v[..size].copy_from_slice(&model[offset..offset + size]);
                    u64::from_le_bytes(v)
                } else {
                    crate::client::ones(size as u64)
                };
                assert_eq!(
                    r.read(offset as u64, size as u8),
                    want,
                    "read {size} at {offset}"
                );
                let view = r.view().read(offset, size);
                assert_eq!(
                    view,
                    in_range.then_some(want),
                    "view read {size} at {offset}"
                );
            }
            assert_eq!(r.view().bytes(), model);
        }
    }
}
