//! Guest memory, zero-copy buffers and eventfds, as JavaScript values. Conversions only: the
//! map, the bounds checks and the aliases are the core's (`acrn_hsm::guest_memory`, `memory`,
//! `eventfd`).

use std::sync::{Arc, Mutex};

use acrn_hsm::{Alias, EventFd, RangeError};
use napi::bindgen_prelude::{BigInt, Buffer, BufferSlice, Uint8Array};
use napi::{Env, Task};
use napi_derive::napi;

use crate::errors::{CodedError, Failure, Result, coded_error, errno_error};

/// A `Buffer` over `alias` without a copy; the buffer owns the alias (unmapped when the buffer
/// is collected), so the memory stays mapped while JavaScript holds it.
pub(crate) fn external_buffer(env: &Env, alias: Alias) -> Result<BufferSlice<'_>> {
    let ptr = alias.as_ptr();
    let len = alias.len();
    // SAFETY: `ptr` points to `len` bytes of a mapping owned by `alias`, which the finalizer
    // owns and drops (unmapping it) only when the buffer is collected. Every alias is its own
    // mapping, so no two live external buffers share a pointer (which Node forbids). The
    // memory is shared with the guest: JavaScript sees it as the shared memory it is.
    unsafe { BufferSlice::from_external(env, ptr, len, alias, |_, a| drop(a)) }
        .map_err(|e| coded_error("ERR_NAPI", &e.reason))
}

/// The error of an access outside guest RAM: code `ERR_GPA_RANGE` (the façade throws a
/// `RangeError`), the message names the range and the nearest segment.
pub(crate) fn range_error(e: &RangeError) -> CodedError {
    coded_error("ERR_GPA_RANGE", &e.to_string())
}

/// One RAM segment of a VM.
#[napi(object)]
#[derive(Debug)]
pub struct MemorySegment {
    /// First guest-physical address.
    pub gpa: BigInt,
    /// Length in bytes.
    pub length: BigInt,
}

/// An eventfd (`new EventFd()` in the façade).
#[napi]
pub struct EventFdHandle {
    inner: Mutex<Option<Arc<EventFd>>>,
}

impl EventFdHandle {
    fn get(&self, op: &str) -> Result<Arc<EventFd>> {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| coded_error("ERR_CLOSED", &format!("{op}: the eventfd is closed")))
    }
}

#[napi]
impl EventFdHandle {
    /// A new eventfd with counter `initial` (`semaphore`: each read takes 1).
    #[napi(constructor)]
    pub fn new(initial: Option<u32>, semaphore: Option<bool>) -> Result<EventFdHandle> {
        let e = EventFd::new(initial.unwrap_or(0), semaphore.unwrap_or(false))
            .map_err(|e| errno_error("eventfd", e))?;
        Ok(EventFdHandle {
            inner: Mutex::new(Some(Arc::new(e))),
        })
    }

    /// The descriptor (-1 once closed).
    #[napi(getter)]
    pub fn fd(&self) -> i32 {
        self.get("fd").map_or(-1, |e| e.fd())
    }

    /// Adds `n` to the counter.
    #[napi]
    pub fn write(&self, n: BigInt) -> Result<()> {
        let (signed, v, lossless) = n.get_u64();
        if signed || !lossless {
            return Err(coded_error(
                "ERR_OUT_OF_RANGE",
                "n must be a bigint in 0..2^64-2",
            ));
        }
        self.get("write")?
            .write(v)
            .map_err(|e| errno_error("eventfd write", e))
    }

    /// Takes the counter; `null` when it is zero.
    #[napi]
    pub fn read(&self) -> Result<Option<BigInt>> {
        Ok(self
            .get("read")?
            .read()
            .map_err(|e| errno_error("eventfd read", e))?
            .map(BigInt::from))
    }

    /// Waits on the libuv pool until the counter is nonzero and takes it; `null` if closed.
    #[napi(ts_return_type = "Promise<bigint | null>")]
    pub fn wait(&self) -> Result<napi::bindgen_prelude::AsyncTask<EventFdWait>> {
        Ok(napi::bindgen_prelude::AsyncTask::new(EventFdWait {
            efd: self.get("wait")?,
            failure: Failure::default(),
        }))
    }

    /// Closes it (a pending `wait()` resolves with `null`); closing twice does nothing.
    #[napi]
    pub fn close(&self) {
        if let Some(e) = self.inner.lock().unwrap_or_else(|e| e.into_inner()).take() {
            e.cancel();
        }
    }
}

/// `EventFd.wait()` on the libuv pool.
pub struct EventFdWait {
    efd: Arc<EventFd>,
    failure: Failure,
}

impl Task for EventFdWait {
    type Output = Option<u64>;
    type JsValue = Option<BigInt>;

    fn compute(&mut self) -> napi::Result<Option<u64>> {
        let r = self.efd.wait().map_err(|e| errno_error("eventfd wait", e));
        self.failure.keep(r)
    }

    fn reject(&mut self, env: Env, err: napi::Error) -> napi::Result<Self::JsValue> {
        self.failure.reject(&env, err)
    }

    fn resolve(&mut self, _env: Env, output: Option<u64>) -> napi::Result<Option<BigInt>> {
        Ok(output.map(BigInt::from))
    }
}

/// Copies `length` bytes at `gpa` out of `mem`.
pub(crate) fn read(mem: &acrn_hsm::GuestMemory, gpa: u64, length: u32) -> Result<Buffer> {
    let mut out = vec![0u8; length as usize];
    mem.read(gpa, &mut out).map_err(|e| range_error(&e))?;
    Ok(out.into())
}

/// Copies `bytes` to `gpa` of `mem`.
pub(crate) fn write(mem: &acrn_hsm::GuestMemory, gpa: u64, bytes: &Uint8Array) -> Result<()> {
    mem.write(gpa, bytes).map_err(|e| range_error(&e))
}
