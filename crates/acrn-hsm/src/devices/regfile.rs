//! A register file backed by memory: any 1/2/4/8-byte access at any offset inside it reads or
//! writes the bytes there, little-endian (aligned accesses are the common case; unaligned ones are
//! served byte by byte the same way). Reset restores the initial contents.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::client::IoDevice;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A view of a [`RegisterFile`]'s memory, usable while the device is owned by a dispatcher.
#[derive(Debug, Clone)]
pub struct RegisterView(Arc<Mutex<Vec<u8>>>);

impl RegisterView {
    /// A copy of the contents.
    pub fn bytes(&self) -> Vec<u8> {
        lock(&self.0).clone()
    }
    /// The little-endian value of `size` bytes at `offset` (`None` out of range).
    pub fn read(&self, offset: usize, size: usize) -> Option<u64> {
        let m = lock(&self.0);
        read_le(&m, offset, size)
    }
}

fn read_le(m: &[u8], offset: usize, size: usize) -> Option<u64> {
    let end = offset.checked_add(size)?;
    let b = m.get(offset..end)?;
    let mut v = [0u8; 8];
    v.get_mut(..size)?.copy_from_slice(b);
    Some(u64::from_le_bytes(v))
}

/// The register file.
pub struct RegisterFile {
    name: String,
    mem: Arc<Mutex<Vec<u8>>>,
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
            mem: Arc::new(Mutex::new(bytes.clone())),
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
        let m = lock(&self.mem);
        usize::try_from(offset)
            .ok()
            .and_then(|o| read_le(&m, o, usize::from(size)))
            .unwrap_or(crate::client::ones(u64::from(size)))
    }

    fn write(&mut self, offset: u64, size: u8, value: u64) {
        let mut m = lock(&self.mem);
        let Ok(o) = usize::try_from(offset) else {
            return;
        };
        let n = usize::from(size).min(8);
        if let Some(dst) = o.checked_add(n).and_then(|end| m.get_mut(o..end)) {
            dst.copy_from_slice(&value.to_le_bytes()[..n]);
        }
    }

    fn reset(&mut self) {
        lock(&self.mem).clone_from(&self.initial);
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
}
