//! The synchronous loop's lane (`runSync`): [`client_next`](crate::client::client_next) without
//! its per-call conversions. The lane binds a client and a buffer once, on the worker's thread;
//! each `syncLaneNext(lane)` then takes one integer: no `napi_unwrap` of the client object (a
//! private-property lookup) and no typed-array conversion, which were about 800 of the ~4,000
//! instructions one crossing added per request (callgrind, notify mode, 1 vCPU).
//!
//! The lane also holds the client's server lock from open to close (the loop is the server's
//! one user meanwhile: `record()` and a second loop get `ERR_CLIENT_RUNNING`, as while any
//! loop waits), so a request takes no lock and unlock, two locked instructions, per crossing.
//!
//! The buffer is memory of this crate shared with JavaScript as an external `Buffer` (the
//! responses, then the records, as for `clientNext`), freed when both the lane is closed and the
//! buffer is collected.

use std::cell::{RefCell, UnsafeCell};
use std::rc::Rc;
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};

use napi::Env;
use napi::bindgen_prelude::BufferSlice;
use napi_derive::napi;

use crate::client::{IoreqClientHandle, NEXT_WORDS, Server, serve_locked};
use crate::errors::{Result, coded_error};

/// The words JavaScript and this crate share (written by one side at a time: see
/// [`sync_lane_next`]).
struct LaneMemory(Box<[UnsafeCell<u64>]>);

impl LaneMemory {
    fn new() -> LaneMemory {
        LaneMemory((0..NEXT_WORDS).map(|_| UnsafeCell::new(0)).collect())
    }
    fn ptr(&self) -> *mut u64 {
        // `UnsafeCell<u64>` has the layout of `u64`.
        self.0.as_ptr().cast::<u64>().cast_mut()
    }
}

struct Lane {
    /// The server, locked while the lane is open. Declared before `_server`, so it is dropped
    /// (unlocked) before the `Arc` that keeps the mutex alive.
    guard: MutexGuard<'static, Option<Server>>,
    _server: Arc<Mutex<Option<Server>>>,
    memory: Rc<LaneMemory>,
    /// The buffer was handed out (once: one external buffer per pointer, as Node requires).
    shared: bool,
}

thread_local! {
    /// This thread's lanes, by id (`None`: closed). Per thread: a lane is used where it was
    /// opened, by the one loop that opened it.
    static LANES: RefCell<Vec<Option<Lane>>> = const { RefCell::new(Vec::new()) };
}

fn bad_lane() -> crate::errors::CodedError {
    coded_error("ERR_INVALID_ARG", "no such sync lane on this thread")
}

/// Opens a lane for `client`'s synchronous loop on this thread, locking its server until
/// [`close_sync_lane`]; returns its id. `ERR_CLIENT_RUNNING` if another loop has the server.
#[napi]
pub fn open_sync_lane(client: &IoreqClientHandle) -> Result<u32> {
    let server = client.server.clone();
    let guard = match server.try_lock() {
        Ok(g) => g,
        // A loop that panicked left the server as it was; the next loop goes on with it.
        Err(TryLockError::Poisoned(p)) => p.into_inner(),
        Err(TryLockError::WouldBlock) => {
            return Err(coded_error(
                "ERR_CLIENT_RUNNING",
                "the client is already serving: one loop (run() or runSync()) per client",
            ));
        }
    };
    // SAFETY: the guard borrows the mutex inside `server`'s allocation, which the lane keeps
    // alive in its `_server` field and drops only after the guard (field order). The lane never
    // leaves this thread (a thread-local), as a `MutexGuard` must not.
    let guard = unsafe {
        std::mem::transmute::<MutexGuard<'_, Option<Server>>, MutexGuard<'static, Option<Server>>>(
            guard,
        )
    };
    let lane = Lane {
        guard,
        _server: server,
        memory: Rc::new(LaneMemory::new()),
        shared: false,
    };
    Ok(LANES.with(|l| {
        let mut l = l.borrow_mut();
        match l.iter().position(Option::is_none) {
            Some(i) => {
                l[i] = Some(lane);
                i as u32
            }
            None => {
                l.push(Some(lane));
                (l.len() - 1) as u32
            }
        }
    }))
}

/// The lane's buffer (`maxBatch` response words, then `maxBatch * recordWords` record words),
/// once per lane.
#[napi]
pub fn sync_lane_buffer(env: &Env, lane: u32) -> Result<BufferSlice<'_>> {
    let memory = LANES.with(|l| {
        let mut l = l.borrow_mut();
        let lane = l
            .get_mut(lane as usize)
            .and_then(Option::as_mut)
            .ok_or_else(bad_lane)?;
        if lane.shared {
            return Err(coded_error(
                "ERR_INVALID_STATE",
                "the lane's buffer was already handed out",
            ));
        }
        lane.shared = true;
        Ok(lane.memory.clone())
    })?;
    let ptr = memory.ptr().cast::<u8>();
    let len = NEXT_WORDS * 8;
    // SAFETY: `ptr` points to `len` bytes owned by `memory`, which the finalizer holds (with the
    // lane, if open) until the buffer is collected; the lane hands out its buffer once, so no
    // other external buffer has this pointer. The words are aligned to 8, so the façade's
    // BigUint64Array over the buffer is aligned too.
    unsafe { BufferSlice::from_external(env, ptr, len, memory, |_, m| drop(m)) }
        .map_err(|e| coded_error("ERR_NAPI", &e.reason))
}

/// `clientNext` through the lane: answers the batch in the lane's buffer, waits for the next,
/// writes it there; the number of requests, or -1 once the client is stopped.
#[napi]
pub fn sync_lane_next(lane: u32) -> Result<i32> {
    // The lane stays borrowed while the call waits: nothing on this thread can run meanwhile
    // (the serving path calls no JavaScript), and no reference count moves per request.
    LANES.with(|l| {
        let mut l = l.borrow_mut();
        let lane = l
            .get_mut(lane as usize)
            .and_then(Option::as_mut)
            .ok_or_else(bad_lane)?;
        // SAFETY: the words are alive (the lane holds them) and only this thread touches them:
        // the lane is this thread's, and JavaScript, which also writes them through the buffer,
        // runs on this thread, which is inside this call until it returns (the façade keeps the
        // buffer private to its loop: it is never transferred to another thread).
        let words = unsafe { std::slice::from_raw_parts_mut(lane.memory.ptr(), NEXT_WORDS) };
        serve_locked(&mut lane.guard, words)
    })
}

/// Closes a lane (its buffer stays valid until collected).
#[napi]
pub fn close_sync_lane(lane: u32) {
    LANES.with(|l| {
        if let Some(slot) = l.borrow_mut().get_mut(lane as usize) {
            *slot = None;
        }
    });
}
