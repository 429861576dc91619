//! [`UserPages`]: page-aligned memory owned by the library, and the registry the emulator uses to
//! resolve "user virtual addresses".
//!
//! The kernel driver receives plain user addresses (`acrn_vm_creation.ioreq_buf`,
//! `acrn_vm_memmap.vma_base`, the `VM_INTR_MONITOR` argument, a pointer argument given as a
//! number) and pins the pages behind them with `pin_user_pages_fast`. The emulator does the same
//! *only inside allocations made through this module*: every live [`UserPages`] is recorded in a
//! process-wide registry, and any other address fails with `EFAULT`, as `pin_user_pages` would
//! for an unmapped or unwritable address.
//!
//! Pinning keeps the mapping alive: the registry hands out `Pinned` references holding an `Arc`
//! of the mapping, so dropping the [`UserPages`] while the emulator still uses the page removes
//! the address from the registry (it no longer resolves) but unmaps the memory only once the last
//! pin is released, exactly like a pinned page outlives `munmap` in the kernel.
//!
//! The memory may be written concurrently by another thread acting as the hypervisor, so it is
//! never exposed as `&[u8]`/`&mut [u8]`: access goes through copies made with relaxed atomic byte
//! operations, or through the atomics returned by [`UserPages::atomic_u32`] and
//! [`UserPages::atomic_u64`].

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use crate::errno::Errno;

/// The page size the ABI assumes (4 KiB).
pub const PAGE_SIZE: usize = 4096;

/// One anonymous private mapping. Unmapped when the last `Arc` goes away.
// On lines of its own (128 bytes: a cache-line pair): touched on every request by the serving
// thread or a vCPU, it must share no line with another allocation (docs/performance.md, "False
// sharing").
#[repr(align(128))]
pub(crate) struct Mapping {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: `Mapping` owns its mapping exclusively; all accesses to the memory go through atomics
// (or the kernel, for the real device), so sharing the pointer across threads is sound.
unsafe impl Send for Mapping {}
// SAFETY: see `Send`; no method hands out non-atomic references into the memory.
unsafe impl Sync for Mapping {}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly what `mmap` returned in `UserPages::new`, and this is the
        // last owner (the Arc count reached zero), so nobody can access the memory afterwards.
        let rc = unsafe { libc::munmap(self.ptr.cast::<libc::c_void>(), self.len) };
        debug_assert_eq!(rc, 0, "munmap failed");
    }
}

impl Mapping {
    fn addr(&self) -> u64 {
        self.ptr as u64
    }

    fn check(&self, offset: usize, len: usize) -> Result<(), Errno> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(Errno::EFAULT),
        }
    }

    fn byte(&self, offset: usize) -> &AtomicU8 {
        debug_assert!(offset < self.len);
        let p = self.ptr.wrapping_add(offset);
        // SAFETY: `offset < len` (checked by every caller through `check`), so `p` is inside the
        // mapping, which lives as long as `&self`; `AtomicU8` has the size and alignment of `u8`.
        unsafe { AtomicU8::from_ptr(p) }
    }

    /// The 8-byte-aligned word at `offset` (a multiple of 8, in bounds: the caller checked).
    fn word(&self, offset: usize) -> &AtomicU64 {
        debug_assert!(offset % 8 == 0 && offset + 8 <= self.len);
        let p = self.ptr.wrapping_add(offset).cast::<u64>();
        // SAFETY: in bounds and 8-byte aligned (page-aligned base, offset multiple of 8, both
        // checked by the caller), valid for the lifetime of `&self`.
        unsafe { AtomicU64::from_ptr(p) }
    }

    /// Copies with relaxed atomics: bytes up to an 8-byte boundary, then whole words (one
    /// load each instead of eight), then the tail bytes.
    fn read(&self, offset: usize, out: &mut [u8]) -> Result<(), Errno> {
        self.check(offset, out.len())?;
        let mut i = 0;
        while i < out.len() && (offset + i) % 8 != 0 {
            out[i] = self.byte(offset + i).load(Ordering::Relaxed);
            i += 1;
        }
        while i + 8 <= out.len() {
            let w = self.word(offset + i).load(Ordering::Relaxed);
            out[i..i + 8].copy_from_slice(&w.to_le_bytes());
            i += 8;
        }
        while i < out.len() {
            out[i] = self.byte(offset + i).load(Ordering::Relaxed);
            i += 1;
        }
        Ok(())
    }

    /// The counterpart of [`read`](Self::read).
    fn write(&self, offset: usize, data: &[u8]) -> Result<(), Errno> {
        self.check(offset, data.len())?;
        let mut i = 0;
        while i < data.len() && (offset + i) % 8 != 0 {
            self.byte(offset + i).store(data[i], Ordering::Relaxed);
            i += 1;
        }
        while i + 8 <= data.len() {
            let mut w = [0u8; 8];
            w.copy_from_slice(&data[i..i + 8]);
            self.word(offset + i)
                .store(u64::from_le_bytes(w), Ordering::Relaxed);
            i += 8;
        }
        while i < data.len() {
            self.byte(offset + i).store(data[i], Ordering::Relaxed);
            i += 1;
        }
        Ok(())
    }

    /// A second mapping of the pages holding `[offset, offset + len)` (see [`Alias`]).
    fn alias(&self, offset: usize, len: usize) -> Result<Alias, Errno> {
        self.check(offset, len)?;
        if len == 0 {
            return Err(Errno::EINVAL);
        }
        let first = offset & !(PAGE_SIZE - 1);
        let map_len = (offset + len - first).next_multiple_of(PAGE_SIZE);
        // SAFETY: `first` is page-aligned and `[first, first + map_len)` lies inside this shared
        // anonymous mapping (checked above; `len` is a multiple of the page size), which is
        // alive for `&self`. An old size of 0 with MREMAP_MAYMOVE creates a new mapping of the
        // same pages at an address of the kernel's choosing and leaves this one untouched.
        let ptr = unsafe {
            libc::mremap(
                self.ptr.wrapping_add(first).cast::<libc::c_void>(),
                0,
                map_len,
                libc::MREMAP_MAYMOVE,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(Errno::last());
        }
        Ok(Alias {
            base: ptr.cast::<u8>(),
            map_len,
            start: offset - first,
            len,
        })
    }

    fn atomic_u32(&self, offset: usize) -> Result<&AtomicU32, Errno> {
        self.check(offset, 4)?;
        if offset % 4 != 0 {
            return Err(Errno::EINVAL);
        }
        let p = self.ptr.wrapping_add(offset).cast::<u32>();
        // SAFETY: in bounds (checked), 4-byte aligned (the mapping is page-aligned and `offset` is
        // a multiple of 4), and valid for the lifetime of `&self`.
        Ok(unsafe { AtomicU32::from_ptr(p) })
    }

    fn atomic_u64(&self, offset: usize) -> Result<&AtomicU64, Errno> {
        self.check(offset, 8)?;
        if offset % 8 != 0 {
            return Err(Errno::EINVAL);
        }
        let p = self.ptr.wrapping_add(offset).cast::<u64>();
        // SAFETY: in bounds (checked), 8-byte aligned (page-aligned base, offset multiple of 8),
        // valid for the lifetime of `&self`.
        Ok(unsafe { AtomicU64::from_ptr(p) })
    }
}

/// A second virtual mapping of pages of a [`UserPages`] allocation: the same memory at another
/// address, for handing to a runtime that must own a distinct pointer per buffer (a Node.js
/// external `Buffer`: two live external buffers over one pointer are not allowed). It keeps the
/// pages alive on its own (the kernel frees shared pages when their last mapping goes), and
/// unmaps itself on drop.
///
/// Nothing here hands out a Rust reference into the memory: the guest or another thread may
/// write it at any time, so only the raw pointer is given, for code that accesses it as shared
/// memory (JavaScript, or volatile/atomic accesses).
pub struct Alias {
    base: *mut u8,
    map_len: usize,
    start: usize,
    len: usize,
}

// SAFETY: `Alias` owns its mapping exclusively (unmapped only in `drop`) and hands out no
// reference into it, only a raw pointer.
unsafe impl Send for Alias {}
// SAFETY: see `Send`.
unsafe impl Sync for Alias {}

impl fmt::Debug for Alias {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Alias({:p}+{:#x})", self.as_ptr(), self.len)
    }
}

impl Alias {
    /// The first byte of the aliased range.
    pub fn as_ptr(&self) -> *mut u8 {
        self.base.wrapping_add(self.start)
    }
    /// The length of the aliased range in bytes.
    pub fn len(&self) -> usize {
        self.len
    }
    /// Always `false`: an alias covers at least one byte.
    pub fn is_empty(&self) -> bool {
        false
    }
}

impl Drop for Alias {
    fn drop(&mut self) {
        // SAFETY: `base`/`map_len` are exactly what `mremap` returned, owned by this value only.
        let rc = unsafe { libc::munmap(self.base.cast::<libc::c_void>(), self.map_len) };
        debug_assert_eq!(rc, 0, "munmap failed");
    }
}

/// Live allocations by start address. Holds weak references: registration does not keep memory
/// alive, pins do.
static REGISTRY: Mutex<BTreeMap<u64, Weak<Mapping>>> = Mutex::new(BTreeMap::new());

fn registry() -> MutexGuard<'static, BTreeMap<u64, Weak<Mapping>>> {
    // A panic while holding the lock cannot leave the map inconsistent (single inserts/removes).
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Page-aligned, zero-initialised anonymous memory owned by the library, with a stable user
/// address: the ioreq page (`alloc_page()`), guest RAM for `SET_MEMSEG`, any buffer passed to an
/// ioctl by address. `Drop` unmaps it (once the emulator released its pins).
pub struct UserPages {
    map: Arc<Mapping>,
}

impl fmt::Debug for UserPages {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserPages")
            .field("addr", &format_args!("{:#x}", self.addr()))
            .field("len", &self.len())
            .finish()
    }
}

/// Allocates one 4 KiB page (for `acrn_vm_creation.ioreq_buf`).
pub fn alloc_page() -> Result<UserPages, Errno> {
    UserPages::new(PAGE_SIZE)
}

impl UserPages {
    /// Maps `len` bytes rounded up to whole pages. `len == 0` is `EINVAL`; an `mmap` failure
    /// returns its errno.
    pub fn new(len: usize) -> Result<UserPages, Errno> {
        if len == 0 {
            return Err(Errno::EINVAL);
        }
        let len = len
            .checked_next_multiple_of(PAGE_SIZE)
            .ok_or(Errno::ENOMEM)?;
        // SAFETY: an anonymous private mapping at an address of the kernel's choosing; no existing
        // memory is affected. The result is checked against MAP_FAILED.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                // Shared (not private) anonymous memory, so that [`Alias`] can map the same pages
                // a second time (`mremap` with an old size of 0 needs a shared mapping).
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(Errno::last());
        }
        let map = Arc::new(Mapping {
            ptr: ptr.cast::<u8>(),
            len,
        });
        registry().insert(map.addr(), Arc::downgrade(&map));
        Ok(UserPages { map })
    }

    /// The user virtual address of the first byte (page-aligned).
    pub fn addr(&self) -> u64 {
        self.map.addr()
    }

    /// The length in bytes (a multiple of [`PAGE_SIZE`]).
    pub fn len(&self) -> usize {
        self.map.len
    }

    /// Always `false`: an allocation has at least one page.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Copies `out.len()` bytes starting at `offset`. Out of range: `EFAULT`.
    pub fn read_bytes(&self, offset: usize, out: &mut [u8]) -> Result<(), Errno> {
        self.map.read(offset, out)
    }

    /// Writes `data` at `offset`. Out of range: `EFAULT`.
    pub fn write_bytes(&self, offset: usize, data: &[u8]) -> Result<(), Errno> {
        self.map.write(offset, data)
    }

    /// A copy of the whole allocation.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = vec![0u8; self.len()];
        // In range by construction.
        let _ = self.map.read(0, &mut v);
        v
    }

    /// The 32-bit word at `offset` as an atomic (for `processed` and the other slot fields).
    /// Out of range: `EFAULT`; not 4-byte aligned: `EINVAL`.
    pub fn atomic_u32(&self, offset: usize) -> Result<&AtomicU32, Errno> {
        self.map.atomic_u32(offset)
    }

    /// The 64-bit word at `offset` as an atomic. Out of range: `EFAULT`; misaligned: `EINVAL`.
    pub fn atomic_u64(&self, offset: usize) -> Result<&AtomicU64, Errno> {
        self.map.atomic_u64(offset)
    }

    /// The raw pointer to the first byte, for handing the memory to the real kernel.
    pub fn as_ptr(&self) -> *mut u8 {
        self.map.ptr
    }

    /// A second mapping of `[offset, offset + len)` (out of range: `EFAULT`; empty: `EINVAL`).
    pub fn alias(&self, offset: usize, len: usize) -> Result<Alias, Errno> {
        self.map.alias(offset, len)
    }

    /// A pin of the whole allocation (keeps it mapped while held, like a pinned page).
    pub fn pin(&self) -> Pinned {
        Pinned {
            map: self.map.clone(),
            base: 0,
            len: self.map.len,
        }
    }
}

impl Drop for UserPages {
    fn drop(&mut self) {
        let mut reg = registry();
        if let Some(w) = reg.get(&self.map.addr()) {
            if std::ptr::eq(w.as_ptr(), Arc::as_ptr(&self.map)) {
                reg.remove(&self.map.addr());
            }
        }
        // The Arc drop below unmaps unless the emulator still holds a pin.
    }
}

/// A pinned range inside a registered allocation (what `pin_user_pages` returns): keeps the
/// memory mapped while held.
#[derive(Clone)]
pub struct Pinned {
    map: Arc<Mapping>,
    /// Offset of the pinned range inside the mapping.
    base: usize,
    len: usize,
}

impl fmt::Debug for Pinned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pinned({:#x}+{:#x})", self.addr(), self.len)
    }
}

impl Pinned {
    /// The user address of the first pinned byte.
    pub fn addr(&self) -> u64 {
        self.map.addr() + self.base as u64
    }
    /// The length of the pinned range.
    pub fn len(&self) -> usize {
        self.len
    }
    /// Whether the pinned range is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    fn check(&self, offset: usize, len: usize) -> Result<usize, Errno> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(self.base + offset),
            _ => Err(Errno::EFAULT),
        }
    }
    /// Copies `out.len()` bytes at `offset` of the pinned range (`EFAULT` outside it).
    pub fn read(&self, offset: usize, out: &mut [u8]) -> Result<(), Errno> {
        let o = self.check(offset, out.len())?;
        self.map.read(o, out)
    }
    /// Copies `data` to `offset` of the pinned range (`EFAULT` outside it).
    pub fn write(&self, offset: usize, data: &[u8]) -> Result<(), Errno> {
        let o = self.check(offset, data.len())?;
        self.map.write(o, data)
    }
    /// The aligned `u32` at `offset` as an atomic (`EFAULT` outside the range or misaligned).
    pub fn atomic_u32(&self, offset: usize) -> Result<&AtomicU32, Errno> {
        let o = self.check(offset, 4)?;
        self.map.atomic_u32(o)
    }
    /// The aligned `u64` at `offset` as an atomic (`EFAULT` outside the range or misaligned).
    pub fn atomic_u64(&self, offset: usize) -> Result<&AtomicU64, Errno> {
        let o = self.check(offset, 8)?;
        self.map.atomic_u64(o)
    }
    /// A second mapping of `[offset, offset + len)` of the pinned range (see [`Alias`]).
    pub fn alias(&self, offset: usize, len: usize) -> Result<Alias, Errno> {
        let o = self.check(offset, len)?;
        self.map.alias(o, len)
    }
}

/// Pins `[addr, addr + len)`: it must lie inside one live registered allocation, else `EFAULT`.
pub fn pin(addr: u64, len: usize) -> Result<Pinned, Errno> {
    let end = addr.checked_add(len as u64).ok_or(Errno::EFAULT)?;
    let reg = registry();
    let (&start, weak) = reg.range(..=addr).next_back().ok_or(Errno::EFAULT)?;
    let map = weak.upgrade().ok_or(Errno::EFAULT)?;
    if end > start + map.len as u64 {
        return Err(Errno::EFAULT);
    }
    Ok(Pinned {
        base: (addr - start) as usize,
        map,
        len,
    })
}

/// `copy_from_user`: reads `out.len()` bytes at user address `addr`.
pub fn copy_from_user(addr: u64, out: &mut [u8]) -> Result<(), Errno> {
    pin(addr, out.len())?.read(0, out)
}

/// `copy_to_user`: writes `data` at user address `addr`.
pub fn copy_to_user(addr: u64, data: &[u8]) -> Result<(), Errno> {
    pin(addr, data.len())?.write(0, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alloc_is_page_aligned_and_zeroed() {
        let p = UserPages::new(100).unwrap();
        assert_eq!(p.len(), PAGE_SIZE);
        assert_eq!(p.addr() % PAGE_SIZE as u64, 0);
        assert!(p.to_vec().iter().all(|b| *b == 0));
        assert_eq!(UserPages::new(0).err(), Some(Errno::EINVAL));
    }

    #[test]
    fn bytes_and_atomics() {
        let p = UserPages::new(2 * PAGE_SIZE).unwrap();
        p.write_bytes(4094, &[1, 2, 3, 4]).unwrap();
        let mut b = [0u8; 4];
        p.read_bytes(4094, &mut b).unwrap();
        assert_eq!(b, [1, 2, 3, 4]);
        assert_eq!(
            p.write_bytes(2 * PAGE_SIZE - 1, &[0, 0]),
            Err(Errno::EFAULT)
        );
        p.atomic_u32(136).unwrap().store(3, Ordering::Release);
        let mut w = [0u8; 4];
        p.read_bytes(136, &mut w).unwrap();
        assert_eq!(u32::from_le_bytes(w), 3);
        assert_eq!(p.atomic_u32(2).err(), Some(Errno::EINVAL));
        assert_eq!(p.atomic_u64(2 * PAGE_SIZE).err(), Some(Errno::EFAULT));
    }

    #[test]
    fn registry_resolves_only_live_allocations() {
        let p = UserPages::new(2 * PAGE_SIZE).unwrap();
        let a = p.addr();
        assert!(pin(a + 100, 200).is_ok());
        assert!(pin(a + PAGE_SIZE as u64, PAGE_SIZE).is_ok());
        assert_eq!(
            pin(a + PAGE_SIZE as u64, PAGE_SIZE + 1).err(),
            Some(Errno::EFAULT)
        );
        assert_eq!(pin(0x1000, 8).err(), Some(Errno::EFAULT));
        let stack = [0u8; 64];
        assert_eq!(pin(stack.as_ptr() as u64, 8).err(), Some(Errno::EFAULT));
        let pinned = pin(a, 8).unwrap();
        drop(p);
        // Dropped: the address no longer resolves, but the pinned memory stays usable.
        assert_eq!(pin(a, 8).err(), Some(Errno::EFAULT));
        pinned.write(0, &[9; 8]).unwrap();
        let mut out = [0u8; 8];
        pinned.read(0, &mut out).unwrap();
        assert_eq!(out, [9; 8]);
    }

    #[test]
    fn alias_sees_the_same_memory_and_outlives_the_allocation() {
        let p = UserPages::new(2 * PAGE_SIZE).unwrap();
        let a = p.alias(PAGE_SIZE - 2, 4).unwrap();
        assert_eq!(a.len(), 4);
        p.write_bytes(PAGE_SIZE - 2, &[1, 2, 3, 4]).unwrap();
        let seen: Vec<u8> = (0..4)
            .map(|i| {
                let p = a.as_ptr().wrapping_add(i);
                // SAFETY: the alias covers 4 bytes from `as_ptr`; byte atomics, no reference.
                unsafe { AtomicU8::from_ptr(p) }.load(Ordering::Relaxed)
            })
            .collect();
        assert_eq!(seen, [1, 2, 3, 4]);
        // SAFETY: as above.
        unsafe { AtomicU8::from_ptr(a.as_ptr()) }.store(9, Ordering::Relaxed);
        let mut b = [0u8; 1];
        p.read_bytes(PAGE_SIZE - 2, &mut b).unwrap();
        assert_eq!(b, [9]);
        assert_eq!(p.alias(PAGE_SIZE, 2 * PAGE_SIZE).err(), Some(Errno::EFAULT));
        drop(p);
        let last = a.as_ptr().wrapping_add(3);
        // SAFETY: inside the alias, which keeps the pages mapped after the allocation is gone.
        let v = unsafe { AtomicU8::from_ptr(last) }.load(Ordering::Relaxed);
        assert_eq!(v, 4);
    }

    #[test]
    fn copies_of_every_alignment_and_length() {
        let p = UserPages::new(PAGE_SIZE).unwrap();
        let data: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(37) ^ 0x5a).collect();
        for off in 1..9 {
            for len in 0..40 {
                p.write_bytes(0, &[0u8; 64]).unwrap();
                p.write_bytes(off, &data[..len]).unwrap();
                let mut out = vec![0u8; len + 2];
                p.read_bytes(off - 1, &mut out).unwrap();
                // The bytes before and after are untouched; the copy is exact.
                assert_eq!(out[0], 0, "offset {off}, length {len}");
                assert_eq!(out[len + 1], 0, "offset {off}, length {len}");
                assert_eq!(out[1..=len], data[..len], "offset {off}, length {len}");
            }
        }
        p.write_bytes(100, &[0xaa; 20]).unwrap();
        p.write_bytes(103, &[1, 2, 3]).unwrap();
        let mut out = [0u8; 8];
        p.read_bytes(101, &mut out).unwrap();
        assert_eq!(out, [0xaa, 0xaa, 1, 2, 3, 0xaa, 0xaa, 0xaa]);
    }

    #[test]
    fn copy_user() {
        let p = UserPages::new(1).unwrap();
        copy_to_user(p.addr() + 8, &[7, 7]).unwrap();
        let mut out = [0u8; 2];
        copy_from_user(p.addr() + 8, &mut out).unwrap();
        assert_eq!(out, [7, 7]);
        assert_eq!(
            copy_from_user(p.addr() + 4095, &mut out),
            Err(Errno::EFAULT)
        );
    }
}
