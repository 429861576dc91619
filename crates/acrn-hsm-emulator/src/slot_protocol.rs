//! The emulator's ordering points on one ioreq slot, as functions over any
//! [`SlotMemory`]: the hypervisor's and HSM's halves of
//! acrn-semantics.md §4.6. The emulator runs exactly these on the live page (`hsm.rs`,
//! `guest.rs`), and `tests/emulator_loom.rs` runs them over loom atomics, with the client's own
//! [`claim`](acrn_hsm::client::protocol::claim)/[`respond`](acrn_hsm::client::protocol::respond), so
//! the model checks the code that ships.
//!
//! | step | who | ordering | source |
//! |---|---|---|---|
//! | [`hv_place`] | HV | payload relaxed, then `processed = PENDING` release (the HV's `sfence` + plain store) | `io_req.c acrn_insert_request`, `set_io_req_state` |
//! | [`hsm_pending`] | HSM dispatcher | acquire load of `processed` | `ioreq.c acrn_ioreq_dispatch` (`smp_load_acquire`) |
//! | [`hsm_publish`] | HSM dispatcher | `kernel_handled`, then `processed = PROCESSING` release | `acrn_ioreq_dispatch` (`smp_store_release`) |
//! | [`hsm_complete`] | HSM (NOTIFY, kernel clients, CLEAR) | `completion_polling` read **before** `processed = COMPLETE` release | `ioreq.c ioreq_complete_request` |
//! | [`hv_completed`] | HV (vCPU wait) | acquire load of `processed` | `io_req.c dm_emulate_io_complete` |
//! | [`hv_free`] | HV post-work | plain store of FREE | `io_req.c complete_ioreq` |

use std::sync::atomic::Ordering;

use acrn_uapi::bindings::{
    ACRN_IOREQ_STATE_COMPLETE, ACRN_IOREQ_STATE_FREE, ACRN_IOREQ_STATE_PENDING,
    ACRN_IOREQ_STATE_PROCESSING,
};
use acrn_uapi::ioreq::{
    SLOT_OFFSET_COMPLETION_POLLING, SLOT_OFFSET_KERNEL_HANDLED, SLOT_OFFSET_PROCESSED,
    SLOT_OFFSET_REQS, SLOT_OFFSET_TYPE,
};

use acrn_hsm::client::protocol::SlotMemory;

/// The hypervisor places a request in `slot` (which it found FREE): `type`, the 64-byte `reqs`
/// as 8 words, `completion_polling = 1` for a polling VM (never 0: the HV does not write it
/// otherwise), then PENDING with release.
pub fn hv_place<M: SlotMemory + ?Sized>(
    m: &M,
    slot: usize,
    ty: u32,
    reqs: &[u64; 8],
    polling: bool,
) {
    m.store_u32(slot, SLOT_OFFSET_TYPE, ty, Ordering::Relaxed);
    for (i, w) in reqs.iter().enumerate() {
        m.store_u64(slot, SLOT_OFFSET_REQS + 8 * i, *w, Ordering::Relaxed);
    }
    if polling {
        m.store_u32(slot, SLOT_OFFSET_COMPLETION_POLLING, 1, Ordering::Relaxed);
    }
    m.store_u32(
        slot,
        SLOT_OFFSET_PROCESSED,
        ACRN_IOREQ_STATE_PENDING,
        Ordering::Release,
    );
}

/// HSM's dispatcher: is `slot` PENDING (acquire: the payload read after it is the one placed)?
pub fn hsm_pending<M: SlotMemory + ?Sized>(m: &M, slot: usize) -> bool {
    m.load_u32(slot, SLOT_OFFSET_PROCESSED, Ordering::Acquire) == ACRN_IOREQ_STATE_PENDING
}

/// HSM's dispatcher hands `slot` to a client: `kernel_handled`, then PROCESSING with release.
pub fn hsm_publish<M: SlotMemory + ?Sized>(m: &M, slot: usize, kernel_handled: bool) {
    m.store_u32(
        slot,
        SLOT_OFFSET_KERNEL_HANDLED,
        u32::from(kernel_handled),
        Ordering::Relaxed,
    );
    m.store_u32(
        slot,
        SLOT_OFFSET_PROCESSED,
        ACRN_IOREQ_STATE_PROCESSING,
        Ordering::Release,
    );
}

/// HSM completes `slot`: reads `completion_polling` first (once COMPLETE is visible the HV may
/// reuse the slot), then COMPLETE with release. Returns whether the VM polls (no notify
/// hypercall then).
pub fn hsm_complete<M: SlotMemory + ?Sized>(m: &M, slot: usize) -> bool {
    let polling = m.load_u32(slot, SLOT_OFFSET_COMPLETION_POLLING, Ordering::Relaxed) != 0;
    m.store_u32(
        slot,
        SLOT_OFFSET_PROCESSED,
        ACRN_IOREQ_STATE_COMPLETE,
        Ordering::Release,
    );
    polling
}

/// The hypervisor's wait: is `slot` COMPLETE (acquire: the value read after it is the one the
/// client wrote)?
pub fn hv_completed<M: SlotMemory + ?Sized>(m: &M, slot: usize) -> bool {
    m.load_u32(slot, SLOT_OFFSET_PROCESSED, Ordering::Acquire) == ACRN_IOREQ_STATE_COMPLETE
}

/// The hypervisor's post-work is done: FREE (a plain store).
pub fn hv_free<M: SlotMemory + ?Sized>(m: &M, slot: usize) {
    m.store_u32(
        slot,
        SLOT_OFFSET_PROCESSED,
        ACRN_IOREQ_STATE_FREE,
        Ordering::Relaxed,
    );
}
