//! Access to one 256-byte `acrn_io_request` slot of a pinned ioreq page.
//!
//! Every field is read and written through atomics: `processed` with the orderings of
//! acrn-semantics §4.6 (chosen by the caller), the payload with `Relaxed` (the ordering comes from
//! the `processed` accesses around it). Never through `&`/`&mut` to plain fields: the other side
//! (the hypervisor's vCPU thread or the device model) writes the same memory concurrently.

use crate::abi::slot as off;
use crate::errno::Errno;
use crate::memory::Pinned;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// One slot: `page` is the pinned 4096-byte ioreq page, `base` the slot's offset.
#[derive(Clone, Copy)]
pub(crate) struct Slot<'a> {
    page: &'a Pinned,
    base: usize,
}

impl<'a> Slot<'a> {
    /// Slot `index` (< 16) of `page`.
    pub(crate) fn new(page: &'a Pinned, index: usize) -> Slot<'a> {
        debug_assert!(index < crate::abi::IO_REQUEST_MAX);
        Slot {
            page,
            base: index * off::SIZE,
        }
    }

    fn u32_field(&self, o: usize) -> &'a AtomicU32 {
        match self.page.atomic_u32(self.base + o) {
            Ok(a) => a,
            // The page is 4096 bytes and every offset is in range and aligned by construction.
            Err(e) => unreachable_slot(e),
        }
    }

    fn u64_field(&self, o: usize) -> &'a AtomicU64 {
        match self.page.atomic_u64(self.base + o) {
            Ok(a) => a,
            Err(e) => unreachable_slot(e),
        }
    }

    /// The page this slot is in.
    pub(crate) fn page(&self) -> &'a Pinned {
        self.page
    }

    /// `processed`.
    pub(crate) fn processed(&self) -> &'a AtomicU32 {
        self.u32_field(off::PROCESSED)
    }
    pub(crate) fn ty(&self) -> u32 {
        self.u32_field(off::TYPE).load(Ordering::Relaxed)
    }
    pub(crate) fn set_ty(&self, v: u32) {
        self.u32_field(off::TYPE).store(v, Ordering::Relaxed)
    }
    pub(crate) fn kernel_handled(&self) -> u32 {
        self.u32_field(off::KERNEL_HANDLED).load(Ordering::Relaxed)
    }
    pub(crate) fn direction(&self) -> u32 {
        self.u32_field(off::DIRECTION).load(Ordering::Relaxed)
    }
    pub(crate) fn address(&self) -> u64 {
        self.u64_field(off::ADDRESS).load(Ordering::Relaxed)
    }
    pub(crate) fn size(&self) -> u64 {
        self.u64_field(off::SIZE_FIELD).load(Ordering::Relaxed)
    }
    /// `reqs.pio_request.value` / `pci_request.value` (u32 at +88).
    pub(crate) fn value32(&self) -> u32 {
        self.u32_field(off::VALUE).load(Ordering::Relaxed)
    }
    pub(crate) fn set_value32(&self, v: u32) {
        self.u32_field(off::VALUE).store(v, Ordering::Relaxed)
    }
    /// `reqs.mmio_request.value` (u64 at +88).
    pub(crate) fn value64(&self) -> u64 {
        self.u64_field(off::VALUE).load(Ordering::Relaxed)
    }
    pub(crate) fn set_value64(&self, v: u64) {
        self.u64_field(off::VALUE).store(v, Ordering::Relaxed)
    }
    pub(crate) fn set_u32_at(&self, o: usize, v: u32) {
        self.u32_field(o).store(v, Ordering::Relaxed)
    }
}

#[cold]
fn unreachable_slot(e: Errno) -> ! {
    panic!("ioreq slot access out of the pinned page: {e}")
}

/// The pinned ioreq page as [`SlotMemory`](acrn_hsm::client::protocol::SlotMemory), for the
/// ordering points of [`super::slot_protocol`].
#[derive(Clone, Copy)]
pub(crate) struct PageSlots<'a>(pub(crate) &'a Pinned);

impl acrn_hsm::client::protocol::SlotMemory for PageSlots<'_> {
    fn load_u32(&self, slot: usize, offset: usize, order: Ordering) -> u32 {
        Slot::new(self.0, slot).u32_field(offset).load(order)
    }
    fn load_u64(&self, slot: usize, offset: usize, order: Ordering) -> u64 {
        Slot::new(self.0, slot).u64_field(offset).load(order)
    }
    fn store_u32(&self, slot: usize, offset: usize, value: u32, order: Ordering) {
        Slot::new(self.0, slot)
            .u32_field(offset)
            .store(value, order)
    }
    fn store_u64(&self, slot: usize, offset: usize, value: u64, order: Ordering) {
        Slot::new(self.0, slot)
            .u64_field(offset)
            .store(value, order)
    }
}
