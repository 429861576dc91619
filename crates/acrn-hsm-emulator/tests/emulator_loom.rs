//! A loom model of the emulator's own ordering points (checklist item 18, acrn-semantics.md
//! §4.6): the hypervisor's and HSM's halves are `acrn_hsm_emulator::slot_protocol`, the very
//! functions the emulator runs on the live ioreq page (`hsm.rs` dispatch and completion,
//! `guest.rs` fill, wait and post-work), and the client's half is the library's own
//! `client::protocol::{claim, respond}`. Nothing here re-implements a side.
//!
//! Threads: the vCPU (places a read then a write; HSM's dispatcher runs inline after each
//! placement, as the emulator's upcall does; then waits for COMPLETE and frees the slot) and the
//! device model (claims, answers, and completes as NOTIFY does). Checked in every interleaving:
//! the client sees exactly the request placed (type, direction, address, size, value), the vCPU
//! reads the value the client wrote, `completion_polling` is what the HV placed, and each
//! request is claimed and completed once.
//!
//! Weakening `hsm_publish`'s release store of PROCESSING to relaxed makes both models fail
//! (checked by hand; the shipped code cannot be weakened from a test, so the standing negative
//! control is `client_loom.rs`'s third model). Weakening the COMPLETE side (`hsm_complete`'s
//! release, `hv_completed`'s acquire) is *not* caught, even with `LOOM_MAX_PREEMPTIONS=5`: loom
//! does not implement the whole C11 model (its stale-read exploration is partial), so those two
//! points rest on the functions being the ones listed in `slot_protocol`'s table. `cargo test -p acrn-hsm --test emulator_loom`
//! runs both in about 4 s in a debug build (`LOOM_MAX_PREEMPTIONS` defaults to 3 here).

use std::sync::atomic::Ordering;

use acrn_hsm::client::protocol::{self, SlotMemory};
use acrn_hsm_emulator::slot_protocol as sp;
use acrn_uapi::bindings::{
    ACRN_IOREQ_DIR_READ, ACRN_IOREQ_DIR_WRITE, ACRN_IOREQ_STATE_FREE, ACRN_IOREQ_TYPE_MMIO,
};
use acrn_uapi::ioreq::{
    SLOT_OFFSET_COMPLETION_POLLING, SLOT_OFFSET_KERNEL_HANDLED, SLOT_OFFSET_PROCESSED,
    SLOT_OFFSET_REQS, SLOT_OFFSET_TYPE,
};
use loom::sync::Arc;
use loom::sync::atomic::{AtomicU32, AtomicU64};

/// One slot: every word the protocol touches, as loom atomics (the 64-byte `reqs` as 8 words).
struct LoomSlot {
    processed: AtomicU32,
    kernel_handled: AtomicU32,
    ty: AtomicU32,
    completion_polling: AtomicU32,
    reqs: [AtomicU64; 8],
}

impl LoomSlot {
    fn new() -> LoomSlot {
        LoomSlot {
            processed: AtomicU32::new(ACRN_IOREQ_STATE_FREE),
            kernel_handled: AtomicU32::new(0),
            ty: AtomicU32::new(0),
            completion_polling: AtomicU32::new(0),
            reqs: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
    fn u32_at(&self, off: usize) -> &AtomicU32 {
        match off {
            SLOT_OFFSET_PROCESSED => &self.processed,
            SLOT_OFFSET_KERNEL_HANDLED => &self.kernel_handled,
            SLOT_OFFSET_TYPE => &self.ty,
            SLOT_OFFSET_COMPLETION_POLLING => &self.completion_polling,
            other => panic!("no u32 at {other}"),
        }
    }
}

/// The slot's memory; 32-bit accesses inside `reqs` (direction, and a PIO/PCI value) are the
/// low half of their word (little endian), as on the page.
struct Mem(Arc<LoomSlot>);

impl SlotMemory for Mem {
    fn load_u32(&self, slot: usize, off: usize, order: Ordering) -> u32 {
        assert_eq!(slot, 0);
        if (SLOT_OFFSET_REQS..SLOT_OFFSET_REQS + 64).contains(&off) {
            assert_eq!(off % 8, 0, "a low half");
            return self.0.reqs[(off - SLOT_OFFSET_REQS) / 8].load(order) as u32;
        }
        self.0.u32_at(off).load(order)
    }
    fn load_u64(&self, slot: usize, off: usize, order: Ordering) -> u64 {
        assert_eq!(slot, 0);
        self.0.reqs[(off - SLOT_OFFSET_REQS) / 8].load(order)
    }
    fn store_u32(&self, slot: usize, off: usize, value: u32, order: Ordering) {
        assert_eq!(slot, 0);
        if (SLOT_OFFSET_REQS..SLOT_OFFSET_REQS + 64).contains(&off) {
            // The low half of a word (a PIO value): only the client writes it, for a read it
            // claimed, so the word is not written concurrently.
            assert_eq!(off % 8, 0, "a low half");
            let w = &self.0.reqs[(off - SLOT_OFFSET_REQS) / 8];
            let old = w.load(Ordering::Relaxed);
            w.store((old & !0xffff_ffff) | u64::from(value), order);
            return;
        }
        self.0.u32_at(off).store(value, order)
    }
    fn store_u64(&self, slot: usize, off: usize, value: u64, order: Ordering) {
        assert_eq!(slot, 0);
        self.0.reqs[(off - SLOT_OFFSET_REQS) / 8].store(value, order)
    }
}

/// Request `k`: an 8-byte MMIO read at 0x1000, then a write of 0xbeef at 0x2000.
fn request(k: u64) -> [u64; 8] {
    match k {
        0 => [u64::from(ACRN_IOREQ_DIR_READ), 0x1000, 8, 0, 0, 0, 0, 0],
        _ => [
            u64::from(ACRN_IOREQ_DIR_WRITE),
            0x2000,
            8,
            0xbeef,
            0,
            0,
            0,
            0,
        ],
    }
}

fn model(polling: bool) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(3);
    }
    b.check(move || {
        let slot = Arc::new(LoomSlot::new());
        let dm_mem = Mem(slot.clone());
        let dm = loom::thread::spawn(move || {
            let mut claimed = Vec::new();
            while claimed.len() < 2 {
                // ATTACH is level-triggered and may return spuriously: re-scan.
                let Some(c) = protocol::claim(&dm_mem, 0) else {
                    loom::thread::yield_now();
                    continue;
                };
                let r = *c.request();
                if r.is_read {
                    protocol::respond(&dm_mem, &c, r.address ^ 0x5a5a);
                }
                claimed.push((r.address, r.size, r.is_read, r.value));
                let _vcpu = protocol::release_for_notify(c);
                // NOTIFY_REQUEST_FINISH: HSM's completion.
                let p = sp::hsm_complete(&dm_mem, 0);
                assert_eq!(p, polling, "completion_polling as the HV placed it");
            }
            claimed
        });
        let vcpu = Mem(slot);
        let mut read_back = Vec::new();
        for k in 0..2 {
            // acrn_insert_request: the slot is FREE (the previous request was freed below).
            assert_eq!(
                vcpu.load_u32(0, SLOT_OFFSET_PROCESSED, Ordering::Acquire),
                ACRN_IOREQ_STATE_FREE
            );
            sp::hv_place(&vcpu, 0, ACRN_IOREQ_TYPE_MMIO, &request(k), polling);
            // The upcall: HSM's dispatcher on this thread.
            assert!(sp::hsm_pending(&vcpu, 0));
            sp::hsm_publish(&vcpu, 0, false);
            while !sp::hv_completed(&vcpu, 0) {
                loom::thread::yield_now();
            }
            read_back.push(vcpu.load_u64(0, SLOT_OFFSET_REQS + 24, Ordering::Relaxed));
            sp::hv_free(&vcpu, 0);
        }
        let claimed = dm.join().expect("the device model thread");
        assert_eq!(
            claimed,
            vec![(0x1000, 8, true, 0), (0x2000, 8, false, 0xbeef)],
            "each request claimed once, as placed"
        );
        assert_eq!(read_back[0], 0x1000 ^ 0x5a5a, "the value the client wrote");
    });
}

#[test]
fn emulator_ordering_points_notification_vm() {
    model(false);
}

#[test]
fn emulator_ordering_points_polling_vm() {
    model(true);
}
