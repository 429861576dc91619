//! A loom model of one ioreq slot shared by the hypervisor (a vCPU), HSM (the dispatcher and
//! NOTIFY) and the userspace client, with the client's side running **the library's own code**:
//! [`protocol::claim`] and [`protocol::respond`] over a [`SlotMemory`] made of loom atomics,
//! the same functions `IoreqClient` runs over the live page.
//!
//! Three models:
//!
//! * **busy-poll client, dispatcher inline** (the emulator's shape: the upcall runs HSM's
//!   dispatcher on the vCPU thread): two requests in a row on the slot (a read, then a write), the
//!   client spinning on the page;
//! * **blocking client, HSM on its own thread**: the vCPU, HSM's dispatcher (woken by the upcall)
//!   and the client (woken through its wait queue, as ATTACH is, re-scanning after every wake-up,
//!   spurious ones included) on three threads;
//! * the first shape with the client's acquire load of `processed` **weakened to relaxed**: it
//!   must fail (`should_panic`), showing the check can fail and the acquire is what makes it pass.
//!
//! Checked in every interleaving loom explores, and for every value a relaxed load may return:
//! the client never reads a stale payload (each claimed request is exactly the one the vCPU
//! placed: type, direction, address, size, value), no response is lost (the vCPU reads back the
//! value the client wrote for its read), and every request completes exactly once (claimed once,
//! notified once, the slot FREE again before the next request; a second claim would fail the
//! payload check or hang the model).
//!
//! Runs in a plain `cargo test -p acrn-hsm --test client_loom` (no `--cfg loom` needed: loom is
//! used as a library, nothing in the crate is swapped), in about a second: preemption bounds 3
//! (inline) and 1 (three threads). Longer settings (the environment variable applies to every
//! model): `LOOM_MAX_PREEMPTIONS=3 cargo test --release -p acrn-hsm --test client_loom` (about
//! 5 s of model checking), `LOOM_MAX_PREEMPTIONS=4` (about 25 s), both passing.

use std::sync::atomic::Ordering;

use acrn_hsm::client::protocol::{self, Kind, SlotMemory};
use acrn_uapi::bindings::{
    ACRN_IOREQ_DIR_READ, ACRN_IOREQ_DIR_WRITE, ACRN_IOREQ_STATE_COMPLETE, ACRN_IOREQ_STATE_FREE,
    ACRN_IOREQ_STATE_PENDING, ACRN_IOREQ_STATE_PROCESSING, ACRN_IOREQ_TYPE_MMIO,
};
use acrn_uapi::ioreq::{
    SLOT_OFFSET_ADDRESS, SLOT_OFFSET_COMPLETION_POLLING, SLOT_OFFSET_DIRECTION,
    SLOT_OFFSET_KERNEL_HANDLED, SLOT_OFFSET_PROCESSED, SLOT_OFFSET_SIZE, SLOT_OFFSET_TYPE,
    SLOT_OFFSET_VALUE,
};
use loom::sync::Arc;
use loom::sync::atomic::{AtomicU32, AtomicU64, fence};

/// One slot: the fields the protocol touches, each a loom atomic at its ABI offset.
struct LoomSlot {
    processed: AtomicU32,
    kernel_handled: AtomicU32,
    ty: AtomicU32,
    completion_polling: AtomicU32,
    direction: AtomicU32,
    address: AtomicU64,
    size: AtomicU64,
    value: AtomicU64,
}

impl LoomSlot {
    fn new() -> LoomSlot {
        LoomSlot {
            processed: AtomicU32::new(ACRN_IOREQ_STATE_FREE),
            kernel_handled: AtomicU32::new(0),
            ty: AtomicU32::new(0),
            completion_polling: AtomicU32::new(0),
            direction: AtomicU32::new(0),
            address: AtomicU64::new(0),
            size: AtomicU64::new(0),
            value: AtomicU64::new(0),
        }
    }
    fn u32_at(&self, offset: usize) -> &AtomicU32 {
        match offset {
            SLOT_OFFSET_PROCESSED => &self.processed,
            SLOT_OFFSET_KERNEL_HANDLED => &self.kernel_handled,
            SLOT_OFFSET_TYPE => &self.ty,
            SLOT_OFFSET_COMPLETION_POLLING => &self.completion_polling,
            SLOT_OFFSET_DIRECTION => &self.direction,
            other => panic!("the model has no u32 at {other}"),
        }
    }
    fn u64_at(&self, offset: usize) -> &AtomicU64 {
        match offset {
            SLOT_OFFSET_ADDRESS => &self.address,
            SLOT_OFFSET_SIZE => &self.size,
            SLOT_OFFSET_VALUE => &self.value,
            other => panic!("the model has no u64 at {other}"),
        }
    }
}

/// The memory as the client sees it; `weak` downgrades its loads of `processed` to relaxed.
struct ClientView {
    slot: Arc<LoomSlot>,
    weak: bool,
}

impl SlotMemory for ClientView {
    fn load_u32(&self, slot: usize, offset: usize, order: Ordering) -> u32 {
        assert_eq!(slot, 0);
        let order = if self.weak && offset == SLOT_OFFSET_PROCESSED {
            Ordering::Relaxed
        } else {
            order
        };
        self.slot.u32_at(offset).load(order)
    }
    fn load_u64(&self, slot: usize, offset: usize, order: Ordering) -> u64 {
        assert_eq!(slot, 0);
        self.slot.u64_at(offset).load(order)
    }
    fn store_u32(&self, slot: usize, offset: usize, value: u32, order: Ordering) {
        assert_eq!(slot, 0);
        assert_eq!(
            offset, SLOT_OFFSET_VALUE,
            "the client writes only the value"
        );
        self.slot.u32_at(offset).store(value, order)
    }
    fn store_u64(&self, slot: usize, offset: usize, value: u64, order: Ordering) {
        assert_eq!(slot, 0);
        assert_eq!(
            offset, SLOT_OFFSET_VALUE,
            "the client writes only the value"
        );
        self.slot.u64_at(offset).store(value, order)
    }
}

/// Request `k` of the vCPU: MMIO, a read of 8 bytes at `0x1000 * (k + 1)` (k = 0) or a write of
/// `0xbeef` at `0x2000` (k = 1); the device answers a read at `a` with `a ^ 0x5a5a`.
fn request(k: u32) -> (u32, u64, u64) {
    match k {
        0 => (ACRN_IOREQ_DIR_READ, 0x1000, 0),
        _ => (ACRN_IOREQ_DIR_WRITE, 0x2000, 0xbeef),
    }
}

fn device(address: u64) -> u64 {
    address ^ 0x5a5a
}

/// The shape of one model.
#[derive(Clone, Copy)]
struct Shape {
    /// The client's acquire load of `processed` weakened to relaxed.
    weak: bool,
    /// HSM's dispatcher on its own thread (else inline on the vCPU thread, after the upcall, as
    /// the emulator runs it).
    hsm_thread: bool,
    /// Requests the vCPU makes in a row on the slot.
    requests: u32,
    /// Preemption bound unless `LOOM_MAX_PREEMPTIONS` says otherwise.
    bound: usize,
}

fn model(shape: Shape) {
    let Shape {
        weak,
        hsm_thread,
        requests,
        bound,
    } = shape;
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(bound);
    }
    // Spin-waits (with yield_now) take many branches per execution.
    b.max_branches = b.max_branches.max(20_000);
    b.check(move || {
        let slot = Arc::new(LoomSlot::new());

        // HSM: the dispatcher (acrn_ioreq_dispatch) for this slot, woken by the upcall (the HSM
        // vector; a loom Notify, so the model does not spin here).
        let upcall = Arc::new(loom::sync::Notify::new());
        // The client's wait queue (ATTACH): rung by HSM after PROCESSING in the 3-thread shape.
        let wq = Arc::new(loom::sync::Notify::new());
        let hsm = hsm_thread.then(|| {
            let s = slot.clone();
            let upcall = upcall.clone();
            let wq = wq.clone();
            loom::thread::spawn(move || {
                for _ in 0..requests {
                    // Notify may wake spuriously (loom models it): re-check, as the real
                    // dispatcher scans again on every upcall.
                    while s.processed.load(Ordering::Acquire) != ACRN_IOREQ_STATE_PENDING {
                        upcall.wait();
                    }
                    dispatch(&s);
                    wq.notify();
                }
            })
        });

        // The client: the library's claim/respond, then NOTIFY (HSM's ioreq_complete_request:
        // read completion_polling, release-store COMPLETE).
        let client = {
            let view = ClientView {
                slot: slot.clone(),
                weak,
            };
            let wq = wq.clone();
            loom::thread::spawn(move || {
                let mut claimed = 0;
                while claimed < requests {
                    let Some(claim) = protocol::claim(&view, 0) else {
                        if hsm_thread {
                            // Blocking mode: ATTACH, then scan again (wake-ups may be spurious).
                            wq.wait();
                        } else {
                            // Busy-poll mode.
                            loom::thread::yield_now();
                        }
                        continue;
                    };
                    let r = *claim.request();
                    let (dir, addr, value) = request(claimed);
                    assert_eq!(r.kind, Kind::Mmio, "stale type in request {claimed}");
                    assert_eq!(r.direction, dir, "stale direction in request {claimed}");
                    assert_eq!(r.address, addr, "stale address in request {claimed}");
                    assert_eq!(r.size, 8, "stale size in request {claimed}");
                    assert_eq!(r.value, value, "stale value in request {claimed}");
                    protocol::respond(&view, &claim, device(r.address));
                    let vcpu = protocol::release_for_notify(claim);
                    assert_eq!(vcpu, 0);
                    let _polling = view.slot.completion_polling.load(Ordering::Relaxed);
                    view.slot
                        .processed
                        .store(ACRN_IOREQ_STATE_COMPLETE, Ordering::Release);
                    claimed += 1;
                }
            })
        };

        // The hypervisor on vCPU 0: fill, barrier, PENDING; wait for COMPLETE; post-work; FREE.
        for k in 0..requests {
            let (dir, addr, value) = request(k);
            assert_eq!(
                slot.processed.load(Ordering::Acquire),
                ACRN_IOREQ_STATE_FREE,
                "slot not FREE for request {k}: it would be #GP"
            );
            slot.ty.store(ACRN_IOREQ_TYPE_MMIO, Ordering::Relaxed);
            slot.direction.store(dir, Ordering::Relaxed);
            slot.address.store(addr, Ordering::Relaxed);
            slot.size.store(8, Ordering::Relaxed);
            slot.value.store(value, Ordering::Relaxed);
            fence(Ordering::Release);
            slot.processed
                .store(ACRN_IOREQ_STATE_PENDING, Ordering::Release);
            if hsm_thread {
                upcall.notify();
            } else {
                // The upcall runs the dispatcher inline.
                assert_eq!(
                    slot.processed.load(Ordering::Acquire),
                    ACRN_IOREQ_STATE_PENDING
                );
                dispatch(&slot);
            }
            while slot.processed.load(Ordering::Acquire) != ACRN_IOREQ_STATE_COMPLETE {
                loom::thread::yield_now();
            }
            if dir == ACRN_IOREQ_DIR_READ {
                assert_eq!(
                    slot.value.load(Ordering::Relaxed),
                    device(addr),
                    "response of request {k} lost"
                );
            }
            slot.processed
                .store(ACRN_IOREQ_STATE_FREE, Ordering::Relaxed);
        }
        if let Some(h) = hsm {
            h.join().expect("hsm");
        }
        client.join().expect("client");
    });
}

/// HSM's `acrn_ioreq_dispatch` after its acquire load saw PENDING: `kernel_handled = 0` (the
/// default client), release-store PROCESSING.
fn dispatch(s: &LoomSlot) {
    s.kernel_handled.store(0, Ordering::Relaxed);
    s.processed
        .store(ACRN_IOREQ_STATE_PROCESSING, Ordering::Release);
}

#[test]
fn two_requests_in_a_row_inline_dispatch() {
    model(Shape {
        weak: false,
        hsm_thread: false,
        requests: 2,
        bound: 3,
    });
}

#[test]
fn one_request_hypervisor_hsm_and_client_on_three_threads() {
    model(Shape {
        weak: false,
        hsm_thread: true,
        requests: 1,
        bound: 1,
    });
}

#[test]
#[should_panic(expected = "stale")]
fn a_relaxed_load_of_processed_reads_stale_payloads() {
    model(Shape {
        weak: true,
        hsm_thread: false,
        requests: 1,
        bound: 2,
    });
}
