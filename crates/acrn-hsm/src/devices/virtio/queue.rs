//! The split virtqueue (virtio 1.x §2.7), device side, reading and writing the rings only
//! through [`GuestMemory`]'s bounds-checked copies (never a Rust reference into guest RAM).
//!
//! Layout in guest memory, for a queue of `size` entries (a power of two, at most 32768):
//!
//! | area | alignment | bytes | content |
//! |---|---|---|---|
//! | descriptor table | 16 | `16 * size` | `{ addr: le64, len: le32, flags: le16, next: le16 }` |
//! | available ring (driver area) | 2 | `6 + 2 * size` | `flags, idx, ring[size], used_event` (le16) |
//! | used ring (device area) | 4 | `6 + 8 * size` | `flags, idx` (le16), `ring[size]` of `{ id: le32, len: le32 }`, `avail_event` (le16) |
//!
//! The guest is not trusted: every index is checked against the queue size, every chain is
//! bounded (at most `size` descriptors in the descriptor table, at most the table's entries in
//! an indirect table, §2.7.5.3.1 and §2.7.5.3.2), an indirect descriptor inside an indirect
//! table, `INDIRECT` together with `NEXT`, a device-readable buffer after a device-writable one
//! and any buffer outside RAM are errors ([`QueueError`]). The transport answers an error by
//! setting `DEVICE_NEEDS_RESET` and stops using the queue until the driver resets the device.
//!
//! Barriers, as §2.7.13 and §2.7.7 ask of the device:
//! * the available `idx` is read first, then an acquire fence, then the ring entries and
//!   descriptors it publishes ([`Queue::pop`]);
//! * a used element is written, then a release fence, then the used `idx` ([`Queue::add_used`]);
//! * between publishing the used `idx` (or `avail_event`) and reading the driver's suppression
//!   fields (`flags`, `used_event`) or re-reading the available `idx`, a full fence
//!   ([`Queue::needs_interrupt`], [`Queue::set_avail_event`]).

use std::sync::atomic::{Ordering, fence};

use crate::guest_memory::{GuestMemory, RangeError};

/// `VIRTQ_DESC_F_NEXT`: the chain continues at `next`.
pub const DESC_F_NEXT: u16 = 1;
/// `VIRTQ_DESC_F_WRITE`: the buffer is device-writable.
pub const DESC_F_WRITE: u16 = 2;
/// `VIRTQ_DESC_F_INDIRECT`: the buffer holds a table of descriptors.
pub const DESC_F_INDIRECT: u16 = 4;
/// `VIRTQ_AVAIL_F_NO_INTERRUPT`: the driver asks for no interrupt (without EVENT_IDX).
pub const AVAIL_F_NO_INTERRUPT: u16 = 1;
/// `VIRTQ_USED_F_NO_NOTIFY`: the device asks for no notification (without EVENT_IDX).
pub const USED_F_NO_NOTIFY: u16 = 1;
/// The largest queue size of a split virtqueue.
pub const MAX_QUEUE_SIZE: u16 = 32768;

/// What the guest did wrong (or what could not be done) on a queue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// The queue size is 0, not a power of two, or above the device's maximum.
    #[error("queue size {size} invalid (maximum {max}, a power of two)")]
    BadSize {
        /// The size the driver set.
        size: u16,
        /// The device's maximum.
        max: u16,
    },
    /// A ring address is not aligned as §2.7 requires.
    #[error("{area} at {addr:#x} is misaligned")]
    Misaligned {
        /// Which area.
        area: &'static str,
        /// Its address.
        addr: u64,
    },
    /// The available index moved more than the queue size past the last entry used.
    #[error("available idx {idx} is more than {size} past {next}")]
    AvailIdx {
        /// What the driver wrote.
        idx: u16,
        /// The next entry the device expects.
        next: u16,
        /// The queue size.
        size: u16,
    },
    /// A head or `next` index outside its table.
    #[error("descriptor index {index} outside a table of {len}")]
    IndexOutOfRange {
        /// The index.
        index: u32,
        /// The table's entries.
        len: u32,
    },
    /// The chain visits more descriptors than its table holds (a loop, or too long).
    #[error("descriptor chain longer than its table ({len} entries): a loop?")]
    ChainTooLong {
        /// The table's entries.
        len: u32,
    },
    /// `INDIRECT` without the feature negotiated.
    #[error("indirect descriptor but VIRTIO_F_INDIRECT_DESC not negotiated")]
    IndirectNotNegotiated,
    /// `INDIRECT` inside an indirect table.
    #[error("indirect descriptor inside an indirect table")]
    NestedIndirect,
    /// `INDIRECT` and `NEXT` in the same descriptor.
    #[error("descriptor with both INDIRECT and NEXT")]
    IndirectWithNext,
    /// An indirect table whose length is 0, not a multiple of 16, or above 32768 entries.
    #[error("indirect table of {len} bytes")]
    IndirectLen {
        /// Its length in bytes.
        len: u32,
    },
    /// A device-readable descriptor after a device-writable one.
    #[error("device-readable descriptor after a device-writable one")]
    ReadAfterWrite,
    /// A ring, a table or a buffer outside guest RAM.
    #[error("guest memory: {0}")]
    Memory(#[from] RangeError),
    /// A request the device cannot make sense of (too short to hold its header or status).
    #[error("malformed request: {0}")]
    BadRequest(&'static str),
    /// The driver made a head available again while the device still holds it (a deferred
    /// chain not completed yet).
    #[error("descriptor head {head} made available again while still in flight")]
    HeadInFlight {
        /// The head index.
        head: u16,
    },
}

/// One guest buffer of a chain, checked to lie inside RAM when the chain was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buffer {
    /// Guest-physical address.
    pub addr: u64,
    /// Length in bytes.
    pub len: u32,
    /// Device-writable.
    pub writable: bool,
}

/// A descriptor chain taken from the available ring: its head index (what the used element
/// names) and its buffers, device-readable ones first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DescChain {
    /// The head descriptor's index in the descriptor table.
    pub head: u16,
    /// The buffers in chain order (an indirect table's buffers in its place).
    pub bufs: Vec<Buffer>,
}

impl DescChain {
    /// Total bytes of the device-readable buffers.
    pub fn readable_len(&self) -> u64 {
        self.bufs
            .iter()
            .filter(|b| !b.writable)
            .map(|b| u64::from(b.len))
            .sum()
    }

    /// Total bytes of the device-writable buffers.
    pub fn writable_len(&self) -> u64 {
        self.bufs
            .iter()
            .filter(|b| b.writable)
            .map(|b| u64::from(b.len))
            .sum()
    }

    /// Copies into `out` the device-readable bytes from `offset` (counted across the readable
    /// buffers); returns how many were copied (short at the end of the readable part).
    pub fn read_at(
        &self,
        mem: &GuestMemory,
        offset: u64,
        out: &mut [u8],
    ) -> Result<usize, RangeError> {
        let mut done = 0usize;
        let mut skip = offset;
        for b in self.bufs.iter().filter(|b| !b.writable) {
            if done == out.len() {
                break;
            }
            let len = u64::from(b.len);
            if skip >= len {
                skip -= len;
                continue;
            }
            let n = ((len - skip) as usize).min(out.len() - done);
            mem.read(b.addr.wrapping_add(skip), &mut out[done..done + n])?;
            done += n;
            skip = 0;
        }
        Ok(done)
    }

    /// Writes `data` into the device-writable bytes from `offset` (counted across the writable
    /// buffers); returns how many were written (short at the end of the writable part).
    pub fn write_at(
        &self,
        mem: &GuestMemory,
        offset: u64,
        data: &[u8],
    ) -> Result<usize, RangeError> {
        let mut done = 0usize;
        let mut skip = offset;
        for b in self.bufs.iter().filter(|b| b.writable) {
            if done == data.len() {
                break;
            }
            let len = u64::from(b.len);
            if skip >= len {
                skip -= len;
                continue;
            }
            let n = ((len - skip) as usize).min(data.len() - done);
            mem.write(b.addr.wrapping_add(skip), &data[done..done + n])?;
            done += n;
            skip = 0;
        }
        Ok(done)
    }
}

/// One split virtqueue's device-side state: what the driver programmed through the transport
/// and the device's own indices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queue {
    /// The largest size the device offers.
    pub max_size: u16,
    /// The size the driver chose (defaults to `max_size`).
    pub size: u16,
    /// Enabled by the driver (`queue_enable`) and validated.
    pub ready: bool,
    /// Descriptor table address.
    pub desc: u64,
    /// Driver area (available ring) address.
    pub avail: u64,
    /// Device area (used ring) address.
    pub used: u64,
    /// The MSI-X vector of the queue (`0xffff`: none).
    pub msix_vector: u16,
    /// VIRTIO_F_INDIRECT_DESC negotiated.
    pub indirect: bool,
    /// VIRTIO_F_RING_EVENT_IDX negotiated.
    pub event_idx: bool,
    /// The next available entry the device takes.
    pub next_avail: u16,
    /// The next used entry the device fills (= the used idx it published last).
    pub next_used: u16,
    /// The used idx at the last interrupt decision.
    signalled_used: u16,
}

/// `VIRTIO_MSI_NO_VECTOR`.
pub const NO_VECTOR: u16 = 0xffff;

impl Queue {
    /// A queue of at most `max_size` entries, in its reset state.
    pub fn new(max_size: u16) -> Queue {
        Queue {
            max_size,
            size: max_size,
            ready: false,
            desc: 0,
            avail: 0,
            used: 0,
            msix_vector: NO_VECTOR,
            indirect: false,
            event_idx: false,
            next_avail: 0,
            next_used: 0,
            signalled_used: 0,
        }
    }

    /// Back to the reset state (the maximum size stays).
    pub fn reset(&mut self) {
        *self = Queue::new(self.max_size);
    }

    /// Checks what the driver programmed before the queue is enabled: the size, the
    /// alignments, and that the three areas lie inside RAM.
    pub fn validate(&self, mem: &GuestMemory) -> Result<(), QueueError> {
        let s = self.size;
        if s == 0 || !s.is_power_of_two() || s > self.max_size || s > MAX_QUEUE_SIZE {
            return Err(QueueError::BadSize {
                size: s,
                max: self.max_size,
            });
        }
        let s = u64::from(s);
        for (area, addr, align, len) in [
            ("descriptor table", self.desc, 16, 16 * s),
            ("available ring", self.avail, 2, 6 + 2 * s),
            ("used ring", self.used, 4, 6 + 8 * s),
        ] {
            if addr % align != 0 {
                return Err(QueueError::Misaligned { area, addr });
            }
            mem.check(addr, len)?;
        }
        Ok(())
    }

    fn read_u16(mem: &GuestMemory, gpa: u64) -> Result<u16, RangeError> {
        Ok(mem.read_le(gpa, 2)? as u16)
    }

    /// The available ring's `idx` as the driver published it.
    pub fn avail_idx(&self, mem: &GuestMemory) -> Result<u16, QueueError> {
        Ok(Self::read_u16(mem, self.avail.wrapping_add(2))?)
    }

    /// Whether the driver has published entries the device has not taken.
    pub fn has_pending(&self, mem: &GuestMemory) -> Result<bool, QueueError> {
        Ok(self.ready && self.avail_idx(mem)? != self.next_avail)
    }

    /// Takes the next available chain, `None` when the ring is empty (or the queue disabled).
    pub fn pop(&mut self, mem: &GuestMemory) -> Result<Option<DescChain>, QueueError> {
        if !self.ready {
            return Ok(None);
        }
        if self.size == 0 {
            // Only reachable by setting `ready` without `validate`.
            return Err(QueueError::BadSize {
                size: 0,
                max: self.max_size,
            });
        }
        let idx = self.avail_idx(mem)?;
        // The entries and descriptors the driver published before this idx are read after it.
        fence(Ordering::Acquire);
        let pending = idx.wrapping_sub(self.next_avail);
        if pending == 0 {
            return Ok(None);
        }
        if pending > self.size {
            return Err(QueueError::AvailIdx {
                idx,
                next: self.next_avail,
                size: self.size,
            });
        }
        // `size` is a power of two and divides 2^16: the free-running index wraps with it.
        let slot = u64::from(self.next_avail % self.size);
        let head = Self::read_u16(mem, self.avail.wrapping_add(4 + 2 * slot))?;
        let bufs = self.walk(mem, head)?;
        self.next_avail = self.next_avail.wrapping_add(1);
        Ok(Some(DescChain { head, bufs }))
    }

    /// Follows the chain starting at `head`, bounded by each table's entries.
    fn walk(&self, mem: &GuestMemory, head: u16) -> Result<Vec<Buffer>, QueueError> {
        let mut out = Vec::new();
        let (mut table, mut entries) = (self.desc, u32::from(self.size));
        let mut index = u32::from(head);
        let mut visited = 0u32;
        let mut indirect = false;
        let mut seen_writable = false;
        loop {
            if index >= entries {
                return Err(QueueError::IndexOutOfRange {
                    index,
                    len: entries,
                });
            }
            visited += 1;
            if visited > entries {
                return Err(QueueError::ChainTooLong { len: entries });
            }
            let mut d = [0u8; 16];
            mem.read(table.wrapping_add(16 * u64::from(index)), &mut d)?;
            let addr = u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]);
            let len = u32::from_le_bytes([d[8], d[9], d[10], d[11]]);
            let flags = u16::from_le_bytes([d[12], d[13]]);
            let next = u16::from_le_bytes([d[14], d[15]]);
            if flags & DESC_F_INDIRECT != 0 {
                if !self.indirect {
                    return Err(QueueError::IndirectNotNegotiated);
                }
                if indirect {
                    return Err(QueueError::NestedIndirect);
                }
                if flags & DESC_F_NEXT != 0 {
                    return Err(QueueError::IndirectWithNext);
                }
                if len == 0 || len % 16 != 0 || len / 16 > u32::from(MAX_QUEUE_SIZE) {
                    return Err(QueueError::IndirectLen { len });
                }
                mem.check(addr, u64::from(len))?;
                indirect = true;
                table = addr;
                entries = len / 16;
                index = 0;
                visited = 0;
                continue;
            }
            let writable = flags & DESC_F_WRITE != 0;
            if !writable && seen_writable {
                return Err(QueueError::ReadAfterWrite);
            }
            seen_writable |= writable;
            mem.check(addr, u64::from(len))?;
            out.push(Buffer {
                addr,
                len,
                writable,
            });
            if flags & DESC_F_NEXT == 0 {
                return Ok(out);
            }
            index = u32::from(next);
        }
    }

    /// Returns chain `head` to the driver with `len` bytes written: the used element, a
    /// release fence, then the used idx.
    pub fn add_used(&mut self, mem: &GuestMemory, head: u16, len: u32) -> Result<(), QueueError> {
        let slot = u64::from(self.next_used % self.size.max(1));
        let elem = self.used.wrapping_add(4 + 8 * slot);
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&u32::from(head).to_le_bytes());
        b[4..].copy_from_slice(&len.to_le_bytes());
        mem.write(elem, &b)?;
        // The element is visible before the idx that publishes it.
        fence(Ordering::Release);
        self.next_used = self.next_used.wrapping_add(1);
        mem.write_le(self.used.wrapping_add(2), 2, u64::from(self.next_used))?;
        Ok(())
    }

    /// With EVENT_IDX: publishes `avail_event` (the next entry the device will take, so the
    /// driver notifies when it adds it), then a full fence before the caller re-reads the
    /// available idx.
    pub fn set_avail_event(&self, mem: &GuestMemory) -> Result<(), QueueError> {
        if self.event_idx && self.ready {
            let at = self.used.wrapping_add(4 + 8 * u64::from(self.size));
            mem.write_le(at, 2, u64::from(self.next_avail))?;
            fence(Ordering::SeqCst);
        }
        Ok(())
    }

    /// Whether the driver wants an interrupt for the used entries added since the last call:
    /// with EVENT_IDX when the used idx passed `used_event` (§2.7.10.2:
    /// `(u16)(new - used_event - 1) < (u16)(new - old)`), else unless the available ring's
    /// flags say NO_INTERRUPT.
    pub fn needs_interrupt(&mut self, mem: &GuestMemory) -> Result<bool, QueueError> {
        // The used idx is published before the driver's suppression fields are read.
        fence(Ordering::SeqCst);
        let new = self.next_used;
        let old = std::mem::replace(&mut self.signalled_used, new);
        if new == old {
            return Ok(false);
        }
        if self.event_idx {
            let ev = Self::read_u16(mem, self.avail.wrapping_add(4 + 2 * u64::from(self.size)))?;
            Ok(new.wrapping_sub(ev).wrapping_sub(1) < new.wrapping_sub(old))
        } else {
            let flags = Self::read_u16(mem, self.avail)?;
            Ok(flags & AVAIL_F_NO_INTERRUPT == 0)
        }
    }
}
