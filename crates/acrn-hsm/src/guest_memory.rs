//! [`GuestMemory`]: the device model's view of a VM's RAM, guest-physical ranges backed by
//! library memory ([`UserPages`](crate::UserPages)), as SET_MEMSEG of RAM builds it.
//!
//! The model is rust-vmm's `vm-memory` (a sorted list of regions, each a GPA range over host
//! memory, every access bounds-checked per region), reduced to what a device backend needs:
//! copies in and out ([`GuestMemory::read`], [`GuestMemory::write`], which may span adjacent
//! regions), little-endian integers, and zero-copy [`GuestMemory::view`]s of one region.
//!
//! The guest may change its memory at any time, so nothing here is a Rust reference into it:
//! copies go through the byte atomics of [`Pinned`], views are separate mappings handed out as
//! raw pointers ([`Alias`]).

use std::fmt;
use std::sync::RwLock;

use crate::errno::Errno;
use crate::memory::{Alias, Pinned};

/// One RAM region: `[gpa, gpa + len)` backed by `mem`.
#[derive(Debug, Clone)]
pub struct GuestRegion {
    /// First guest-physical address.
    pub gpa: u64,
    /// The library memory behind it (kept mapped while the region exists).
    pub mem: Pinned,
}

impl GuestRegion {
    /// The length in bytes.
    pub fn len(&self) -> u64 {
        self.mem.len() as u64
    }
    /// Whether the region is empty (never, for a mapped region).
    pub fn is_empty(&self) -> bool {
        self.mem.is_empty()
    }
    /// One past the last guest-physical address.
    pub fn end(&self) -> u64 {
        self.gpa + self.len()
    }
}

/// A guest-physical range that is not inside mapped RAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub struct RangeError {
    /// The first GPA asked for.
    pub gpa: u64,
    /// The length asked for.
    pub len: u64,
    /// The nearest RAM region `(gpa, len)`, if the VM has any.
    pub nearest: Option<(u64, u64)>,
    /// Why: outside RAM, or (for a view) across two regions.
    pub across: bool,
}

impl fmt::Display for RangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let end = self.gpa.saturating_add(self.len);
        if self.across {
            write!(
                f,
                "GPA range [{:#x}, {end:#x}) spans more than one RAM segment (a view lies inside one)",
                self.gpa
            )?;
        } else {
            write!(
                f,
                "GPA range [{:#x}, {end:#x}) is not inside mapped RAM",
                self.gpa
            )?;
        }
        match self.nearest {
            Some((g, l)) => write!(f, "; nearest segment [{g:#x}, {:#x})", g + l),
            None => f.write_str("; the VM has no RAM segment"),
        }
    }
}

/// The RAM map of one VM (regions sorted by GPA, never overlapping).
#[derive(Debug, Default)]
pub struct GuestMemory {
    regions: RwLock<Vec<GuestRegion>>,
}

impl GuestMemory {
    /// An empty map.
    pub fn new() -> GuestMemory {
        GuestMemory::default()
    }

    fn regions(&self) -> std::sync::RwLockReadGuard<'_, Vec<GuestRegion>> {
        self.regions.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds `mem` at `gpa`. Like the hypervisor's `ept_add_mr`, a new region replaces whatever
    /// it overlaps (an overlapped region is dropped whole). A range that overflows: `EINVAL`.
    pub fn insert(&self, gpa: u64, mem: Pinned) -> Result<(), Errno> {
        let end = gpa.checked_add(mem.len() as u64).ok_or(Errno::EINVAL)?;
        if mem.is_empty() {
            return Err(Errno::EINVAL);
        }
        let mut r = self.regions.write().unwrap_or_else(|e| e.into_inner());
        r.retain(|x| x.end() <= gpa || x.gpa >= end);
        let at = r.partition_point(|x| x.gpa < gpa);
        r.insert(at, GuestRegion { gpa, mem });
        Ok(())
    }

    /// Removes every region that overlaps `[gpa, gpa + len)`; returns how many.
    pub fn remove(&self, gpa: u64, len: u64) -> usize {
        let end = gpa.saturating_add(len);
        let mut r = self.regions.write().unwrap_or_else(|e| e.into_inner());
        let before = r.len();
        r.retain(|x| x.end() <= gpa || x.gpa >= end);
        before - r.len()
    }

    /// The regions `(gpa, len)`, sorted by GPA.
    pub fn segments(&self) -> Vec<(u64, u64)> {
        self.regions().iter().map(|x| (x.gpa, x.len())).collect()
    }

    /// The total RAM in bytes.
    pub fn size(&self) -> u64 {
        self.regions().iter().map(GuestRegion::len).sum()
    }

    fn range_error(regions: &[GuestRegion], gpa: u64, len: u64, across: bool) -> RangeError {
        let end = gpa.saturating_add(len);
        let distance = |x: &GuestRegion| {
            if end <= x.gpa {
                x.gpa - end
            } else {
                gpa.saturating_sub(x.end())
            }
        };
        RangeError {
            gpa,
            len,
            nearest: regions
                .iter()
                .min_by_key(|x| distance(x))
                .map(|x| (x.gpa, x.len())),
            across,
        }
    }

    /// The pieces `(region index, offset in region, length)` covering `[gpa, gpa + len)` across
    /// adjacent regions, or the error.
    fn pieces(
        regions: &[GuestRegion],
        gpa: u64,
        len: usize,
    ) -> Result<Vec<(usize, usize, usize)>, RangeError> {
        let fail = || Self::range_error(regions, gpa, len as u64, false);
        let end = gpa.checked_add(len as u64).ok_or_else(fail)?;
        let mut out = Vec::with_capacity(1);
        let mut a = gpa;
        let mut i = regions.partition_point(|x| x.end() <= a);
        while a < end {
            let x = regions.get(i).filter(|x| x.gpa <= a).ok_or_else(fail)?;
            let n = (end.min(x.end()) - a) as usize;
            out.push((i, (a - x.gpa) as usize, n));
            a += n as u64;
            i += 1;
        }
        if len == 0 && !regions.iter().any(|x| gpa >= x.gpa && gpa < x.end()) {
            return Err(fail());
        }
        Ok(out)
    }

    /// Whether `[gpa, gpa + len)` lies inside mapped RAM (possibly across adjacent regions),
    /// without touching it. A device checks a guest-given buffer with this before it uses it.
    pub fn check(&self, gpa: u64, len: u64) -> Result<(), RangeError> {
        let r = self.regions();
        let n = usize::try_from(len).map_err(|_| Self::range_error(&r, gpa, len, false))?;
        Self::pieces(&r, gpa, n).map(drop)
    }

    /// Copies `out.len()` bytes at `gpa` (possibly across adjacent regions).
    pub fn read(&self, gpa: u64, out: &mut [u8]) -> Result<(), RangeError> {
        let r = self.regions();
        let mut done = 0;
        for (i, off, n) in Self::pieces(&r, gpa, out.len())? {
            // In range by construction (`pieces` checked it against the region).
            let _ = r[i].mem.read(off, &mut out[done..done + n]);
            done += n;
        }
        Ok(())
    }

    /// Writes `data` at `gpa` (possibly across adjacent regions).
    pub fn write(&self, gpa: u64, data: &[u8]) -> Result<(), RangeError> {
        let r = self.regions();
        let mut done = 0;
        for (i, off, n) in Self::pieces(&r, gpa, data.len())? {
            // In range by construction.
            let _ = r[i].mem.write(off, &data[done..done + n]);
            done += n;
        }
        Ok(())
    }

    /// The little-endian integer of `size` bytes (1, 2, 4, 8) at `gpa`.
    pub fn read_le(&self, gpa: u64, size: usize) -> Result<u64, RangeError> {
        let mut b = [0u8; 8];
        self.read(gpa, &mut b[..size.min(8)])?;
        Ok(u64::from_le_bytes(b))
    }

    /// Writes the low `size` bytes (1, 2, 4, 8) of `value` little-endian at `gpa`.
    pub fn write_le(&self, gpa: u64, size: usize, value: u64) -> Result<(), RangeError> {
        self.write(gpa, &value.to_le_bytes()[..size.min(8)])
    }

    /// A zero-copy view of `[gpa, gpa + len)`, which must lie inside one region: a second
    /// mapping of the same pages (it sees every later write, by the guest or anyone, and keeps
    /// the memory alive while held).
    pub fn view(&self, gpa: u64, len: usize) -> Result<Alias, RangeError> {
        let r = self.regions();
        let pieces = Self::pieces(&r, gpa, len.max(1))?;
        if pieces.len() != 1 {
            return Err(Self::range_error(&r, gpa, len as u64, true));
        }
        let (i, off, _) = pieces[0];
        r[i].mem
            .alias(off, len.max(1))
            .map_err(|_| Self::range_error(&r, gpa, len as u64, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{PAGE_SIZE, UserPages};
    use std::sync::atomic::{AtomicU8, Ordering};

    fn ram(pages: usize) -> (UserPages, Pinned) {
        let p = UserPages::new(pages * PAGE_SIZE).unwrap();
        let pin = p.pin();
        (p, pin)
    }

    #[test]
    fn reads_and_writes_across_adjacent_regions() {
        let m = GuestMemory::new();
        let (a, pa) = ram(1);
        let (b, pb) = ram(2);
        m.insert(0x10_0000, pa).unwrap();
        m.insert(0x10_1000, pb).unwrap();
        assert_eq!(m.segments(), vec![(0x10_0000, 0x1000), (0x10_1000, 0x2000)]);
        m.write(0x10_0ffe, &[1, 2, 3, 4]).unwrap();
        let mut x = [0u8; 2];
        a.read_bytes(0xffe, &mut x).unwrap();
        assert_eq!(x, [1, 2]);
        b.read_bytes(0, &mut x).unwrap();
        assert_eq!(x, [3, 4]);
        assert_eq!(m.read_le(0x10_0ffe, 4).unwrap(), 0x0403_0201);
        m.write_le(0x10_2ff8, 8, 0x1122_3344_5566_7788).unwrap();
        assert_eq!(m.read_le(0x10_2ff8, 8).unwrap(), 0x1122_3344_5566_7788);
    }

    #[test]
    fn out_of_range_names_the_nearest_segment() {
        let m = GuestMemory::new();
        let (_a, pa) = ram(1);
        let (_b, pb) = ram(1);
        m.insert(0x1000, pa).unwrap();
        m.insert(0x8000, pb).unwrap();
        let e = m.read(0x1ffc, &mut [0u8; 8]).unwrap_err();
        assert_eq!(e.nearest, Some((0x1000, 0x1000)));
        assert_eq!(
            e.to_string(),
            "GPA range [0x1ffc, 0x2004) is not inside mapped RAM; nearest segment [0x1000, 0x2000)"
        );
        let e = m.write(0x7000, &[0; 4]).unwrap_err();
        assert_eq!(e.nearest, Some((0x8000, 0x1000)));
        assert!(m.read(u64::MAX - 1, &mut [0u8; 4]).is_err());
        assert!(
            GuestMemory::new()
                .read(0, &mut [0u8; 1])
                .unwrap_err()
                .to_string()
                .contains("no RAM")
        );
    }

    #[test]
    fn a_view_sees_later_writes_and_stays_in_one_region() {
        let m = GuestMemory::new();
        let (_a, pa) = ram(1);
        let (_b, pb) = ram(1);
        m.insert(0, pa).unwrap();
        m.insert(0x1000, pb).unwrap();
        let v = m.view(0x10, 4).unwrap();
        m.write(0x12, &[0xab]).unwrap();
        let p = v.as_ptr().wrapping_add(2);
        // SAFETY: `v` covers 4 bytes; read with a byte atomic.
        let seen = unsafe { AtomicU8::from_ptr(p) }.load(Ordering::Relaxed);
        assert_eq!(seen, 0xab);
        assert!(m.view(0xffe, 4).unwrap_err().across);
        assert!(!m.view(0x2000, 1).unwrap_err().across);
    }

    #[test]
    fn insert_replaces_what_it_overlaps() {
        let m = GuestMemory::new();
        let (_a, pa) = ram(2);
        let (_b, pb) = ram(1);
        m.insert(0, pa).unwrap();
        m.insert(0x1000, pb).unwrap();
        assert_eq!(m.segments(), vec![(0x1000, 0x1000)]);
        assert_eq!(m.remove(0, 0x10_0000), 1);
        assert_eq!(m.size(), 0);
    }
}
