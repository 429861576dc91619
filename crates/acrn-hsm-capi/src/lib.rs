//! `acrn-hsm-capi`: a C ABI of the acrn-hsm emulator, so that a plain C device model can drive
//! the emulated `/dev/acrn_hsm` exactly as it would drive the real one.
//!
//! The header is `benches/c/acrn_hsm_emu.h`. The C side sees:
//!
//! * `acrn_emu_new(pcpus)` / `acrn_emu_free`: the machine ([`Emulator`]);
//! * `acrn_emu_open(emu)` / `acrn_emu_close`: one open `/dev/acrn_hsm` ([`EmulatedHsm`]);
//! * `acrn_emu_ioctl(file, request, arg)`: `ioctl(2)` on it, returning the result or `-errno`
//!   (the raw system-call convention). The C client passes the same `struct acrn_*` pointers
//!   and `ACRN_IOCTL_*` numbers of `<linux/acrn.h>` it would pass to the kernel;
//! * `acrn_emu_alloc_page()` / `acrn_emu_alloc_pages(len)` / `acrn_emu_free_page(ptr)`: memory
//!   the emulator can resolve as "user addresses" (`ioreq_buf`, `vma_base`): anything else is
//!   `EFAULT`, as `pin_user_pages` would answer for an unmapped address;
//! * `acrn_emu_guest_spawn(emu, vmid, json, &run)`, `acrn_emu_guest_finished(run)`,
//!   `acrn_emu_guest_join(run, &result, latencies, cap)`: a guest [`Workload`] on the VM's
//!   vCPUs, and its [`RunResult`];
//! * `acrn_emu_last_error()`: a message for the last failure on the calling thread.
//!
//! # Errors and safety at the boundary
//!
//! Functions returning `int` return `0` (or a non-negative ioctl result) on success and
//! `-errno` on failure; functions returning a pointer return `NULL` on failure. A NULL handle or
//! output pointer is `-EINVAL` (or `NULL`), never undefined behaviour. No panic crosses the
//! boundary: every entry point runs inside [`std::panic::catch_unwind`] and turns a panic into
//! `-EIO` (or `NULL`). What cannot be checked — a dangling or foreign handle, a pointer to fewer
//! bytes than the ioctl's `_IOC_SIZE` — is the caller's contract, spelled out in each function's
//! `# Safety` section.

#![cfg(target_os = "linux")]
#![warn(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ffi::{CStr, CString, c_char, c_int, c_ulong, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Mutex, MutexGuard};

use acrn_hsm::{Errno, HsmBackend, IoctlArg, UserPages};
use acrn_hsm_emulator::{EmulatedHsm, Emulator, EmulatorConfig, GuestRun, RunResult, Workload};
use acrn_uapi::ioctl as io;

/// The emulated machine (hypervisor + HSM). Opaque to C (`struct acrn_emu`).
#[derive(Debug)]
pub struct AcrnEmu {
    emu: Emulator,
}

/// One open emulated `/dev/acrn_hsm`. Opaque to C (`struct acrn_emu_file`).
#[derive(Debug)]
pub struct AcrnEmuFile {
    file: EmulatedHsm,
}

/// A guest workload running on a VM's vCPUs. Opaque to C (`struct acrn_emu_run`).
#[derive(Debug)]
pub struct AcrnEmuRun {
    run: GuestRun,
}

/// The outcome of a guest run (`struct acrn_emu_run_result`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AcrnEmuRunResult {
    /// Requests placed in a slot (PENDING), all vCPUs.
    pub issued: u64,
    /// Requests completed with post-work (COMPLETE seen, then FREE), all vCPUs.
    pub completed: u64,
    /// Reads whose value differed from their `expect`.
    pub mismatches: u64,
    /// Guest faults (`#GP` on a busy slot, stray wake-ups).
    pub faults: u64,
    /// Latencies recorded (one per completed request); at most `cap` of them were copied.
    pub latencies: u64,
    /// vCPUs of the run.
    pub vcpus: u32,
    /// vCPUs that stopped early (paused, reset, destroyed, shut down).
    pub stopped_vcpus: u32,
}

impl From<&RunResult> for AcrnEmuRunResult {
    fn from(r: &RunResult) -> Self {
        let n = |v: usize| u64::try_from(v).unwrap_or(u64::MAX);
        AcrnEmuRunResult {
            issued: r.issued,
            completed: r.completed,
            mismatches: n(r.mismatches.len()),
            faults: n(r.faults.len()),
            latencies: n(r.latencies_ns.len()),
            vcpus: u32::try_from(r.vcpus.len()).unwrap_or(u32::MAX),
            stopped_vcpus: u32::try_from(r.vcpus.iter().filter(|v| v.stopped.is_some()).count())
                .unwrap_or(u32::MAX),
        }
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_error(msg: impl Into<String>) {
    let s = msg.into().replace('\0', " ");
    let c = CString::new(s).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

fn fail(errno: Errno, what: &str) -> c_int {
    set_error(format!(
        "{what}: {} ({})",
        errno.name(),
        errno.description()
    ));
    -errno.raw()
}

/// Runs `f`, turning a panic into `on_panic` (and a message for `acrn_emu_last_error`).
fn guard<R>(on_panic: R, f: impl FnOnce() -> R) -> R {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(_) => {
            set_error("internal error: panic caught at the C boundary");
            on_panic
        }
    }
}

/// Live allocations handed to C, by address. Holding the `UserPages` keeps the memory mapped and
/// resolvable by the emulator until `acrn_emu_free_page`.
static PAGES: Mutex<BTreeMap<usize, UserPages>> = Mutex::new(BTreeMap::new());

fn pages() -> MutexGuard<'static, BTreeMap<usize, UserPages>> {
    // Single inserts/removes: a poisoned map is still consistent.
    PAGES.lock().unwrap_or_else(|e| e.into_inner())
}

/// Commands whose argument is an integer, not a pointer (`SET_IRQLINE`, `VM_INTR_MONITOR`).
fn is_by_value(request: u32) -> bool {
    acrn_uapi::wire::is_by_value(request)
}

/// Whether `request` is a command of `<linux/acrn.h>`: only for these is the argument read as a
/// struct (the one ioctl table, `acrn_uapi::wire::IOCTL_TABLE`).
fn is_known(request: u32) -> bool {
    acrn_uapi::wire::ioctl_info(request).is_some()
}

fn ioctl_result(r: Result<i64, Errno>) -> c_int {
    match r {
        Ok(v) => c_int::try_from(v).unwrap_or(c_int::MAX),
        Err(e) => fail(e, "ioctl"),
    }
}

/// Creates an emulated machine with `pcpus` physical CPUs (1..=64; a VM gets one vCPU per pCPU
/// of its `cpu_affinity`). Returns `NULL` for an out-of-range count.
///
/// Free it with [`acrn_emu_free`]. Files and runs made from it keep the machine alive on their
/// own, so the order of the frees does not matter.
#[unsafe(no_mangle)]
pub extern "C" fn acrn_emu_new(pcpus: u32) -> *mut AcrnEmu {
    guard(std::ptr::null_mut(), || {
        let Ok(pcpu_num) = u8::try_from(pcpus) else {
            set_error("acrn_emu_new: pcpus must be 1..=64");
            return std::ptr::null_mut();
        };
        if pcpu_num == 0 || pcpu_num > 64 {
            set_error("acrn_emu_new: pcpus must be 1..=64");
            return std::ptr::null_mut();
        }
        let emu = Emulator::with_config(EmulatorConfig {
            pcpu_num,
            ..EmulatorConfig::default()
        });
        Box::into_raw(Box::new(AcrnEmu { emu }))
    })
}

/// Frees a machine made by [`acrn_emu_new`]. `NULL` is a no-op.
///
/// # Safety
///
/// `emu` is `NULL` or a pointer returned by [`acrn_emu_new`] not yet freed, and no other thread
/// uses it during or after the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn acrn_emu_free(emu: *mut AcrnEmu) {
    if emu.is_null() {
        return;
    }
    // SAFETY: per the contract, `emu` came from `Box::into_raw` in `acrn_emu_new` and is freed
    // exactly once, with no other user.
    let b = unsafe { Box::from_raw(emu) };
    guard((), move || drop(b));
}

/// `open("/dev/acrn_hsm")` on the emulated machine: a new file with no VM. Returns `NULL` when
/// `emu` is `NULL`.
///
/// # Safety
///
/// `emu` is `NULL` or a live pointer from [`acrn_emu_new`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn acrn_emu_open(emu: *const AcrnEmu) -> *mut AcrnEmuFile {
    // SAFETY: per the contract, `emu` is NULL or points to a live `AcrnEmu`.
    let Some(emu) = (unsafe { emu.as_ref() }) else {
        set_error("acrn_emu_open: NULL machine");
        return std::ptr::null_mut();
    };
    guard(std::ptr::null_mut(), || {
        Box::into_raw(Box::new(AcrnEmuFile {
            file: emu.emu.open(),
        }))
    })
}

/// `close()` of an emulated file: as the kernel's release, destroys the file's VM (and its
/// ioreq client) if it still has one. `NULL` is a no-op.
///
/// # Safety
///
/// `file` is `NULL` or a pointer from [`acrn_emu_open`] not yet closed, and no other thread is
/// inside [`acrn_emu_ioctl`] on it or uses it afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn acrn_emu_close(file: *mut AcrnEmuFile) {
    if file.is_null() {
        return;
    }
    // SAFETY: per the contract, `file` came from `Box::into_raw` in `acrn_emu_open` and is
    // freed exactly once, with no concurrent user.
    let b = unsafe { Box::from_raw(file) };
    guard((), move || drop(b));
}

/// `ioctl(fd, request, arg)` on an emulated file. Returns the ioctl's non-negative result, or
/// `-errno` (the raw system-call convention: `0`, `-EINVAL`, `-ENODEV`, ...).
///
/// `request` is an `ACRN_IOCTL_*` number of `<linux/acrn.h>` (truncated to 32 bits, as the
/// kernel's `unsigned int cmd`). `arg` is what `ioctl(2)` would take:
///
/// * pointer commands (`_IOW`/`_IOR`/`_IOWR` with a struct): `arg` points to the struct;
///   `_IOC_SIZE(request)` bytes are copied in, and copied back on success for `_IOR`/`_IOWR`.
///   A `NULL` `arg` is `-EFAULT`, as in the kernel;
/// * by-value commands (`SET_IRQLINE`, `VM_INTR_MONITOR`): the pointer's value is the integer;
/// * `_IO` commands: `arg` is ignored.
///
/// Addresses *inside* structs (`ioreq_buf`, `vma_base`) must lie in memory from
/// [`acrn_emu_alloc_page`]/[`acrn_emu_alloc_pages`], else `-EFAULT`/`-EINVAL` as the kernel
/// answers for memory it cannot pin. Commands outside `<linux/acrn.h>` are `-ENOTTY` and their
/// argument is not read. A `NULL` `file` is `-EINVAL`.
///
/// Several threads may be inside this function on one file at once (a device model blocks in
/// `ATTACH_IOREQ_CLIENT` on one thread and destroys the client from another).
///
/// # Safety
///
/// `file` is `NULL` or a live pointer from [`acrn_emu_open`]. For a pointer command of
/// `<linux/acrn.h>`, a non-NULL `arg` points to at least `_IOC_SIZE(request)` readable bytes,
/// writable too for `_IOR`/`_IOWR`, not modified by another thread during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn acrn_emu_ioctl(
    file: *const AcrnEmuFile,
    request: c_ulong,
    arg: *mut c_void,
) -> c_int {
    // SAFETY: per the contract, `file` is NULL or points to a live `AcrnEmuFile`.
    let Some(file) = (unsafe { file.as_ref() }) else {
        return fail(Errno::EINVAL, "acrn_emu_ioctl: NULL file");
    };
    // The kernel's `cmd` is an `unsigned int`: the upper bits of the C `unsigned long` are lost.
    let request = request as u32;
    let backend: &dyn HsmBackend = &file.file;
    if !is_known(request) {
        // Not ours: the emulator answers ENOTTY without touching the argument.
        return guard(-libc::EIO, || {
            ioctl_result(backend.ioctl(request, IoctlArg::Value(arg as u64)))
        });
    }
    if is_by_value(request) {
        return guard(-libc::EIO, || {
            ioctl_result(backend.ioctl(request, IoctlArg::Value(arg as u64)))
        });
    }
    let size = io::ioc_size(request);
    let dir = io::ioc_dir(request);
    if dir == io::IOC_NONE || size == 0 {
        return guard(-libc::EIO, || {
            ioctl_result(backend.ioctl(request, IoctlArg::None))
        });
    }
    if arg.is_null() {
        return guard(-libc::EIO, || {
            ioctl_result(backend.ioctl(request, IoctlArg::None))
        });
    }
    let mut buf = vec![0u8; size];
    // SAFETY: per the contract, `arg` points to at least `_IOC_SIZE(request)` = `size` readable
    // bytes; `buf` is a distinct allocation of `size` bytes.
    unsafe { std::ptr::copy_nonoverlapping(arg.cast_const().cast::<u8>(), buf.as_mut_ptr(), size) };
    let r = guard(Err(Errno::EIO), || {
        backend.ioctl(request, IoctlArg::Bytes(&mut buf))
    });
    if r.is_ok() && dir & io::IOC_READ != 0 {
        // SAFETY: `_IOR`/`_IOWR`: per the contract `arg` points to `size` writable bytes, not
        // overlapping `buf`.
        unsafe { std::ptr::copy_nonoverlapping(buf.as_ptr(), arg.cast::<u8>(), size) };
    }
    ioctl_result(r)
}

/// Allocates `len` bytes (rounded up to whole 4 KiB pages) of zeroed, page-aligned memory that
/// the emulator resolves as user memory (for `ioreq_buf`, `vma_base`, ...). Returns `NULL` for
/// `len == 0` or when the mapping fails. Free with [`acrn_emu_free_page`].
#[unsafe(no_mangle)]
pub extern "C" fn acrn_emu_alloc_pages(len: usize) -> *mut c_void {
    guard(std::ptr::null_mut(), || match UserPages::new(len) {
        Ok(p) => {
            let ptr = p.as_ptr();
            pages().insert(ptr as usize, p);
            ptr.cast::<c_void>()
        }
        Err(e) => {
            fail(e, "acrn_emu_alloc_pages");
            std::ptr::null_mut()
        }
    })
}

/// Allocates one 4 KiB page (the ioreq page a device model passes as `ioreq_buf`). See
/// [`acrn_emu_alloc_pages`].
#[unsafe(no_mangle)]
pub extern "C" fn acrn_emu_alloc_page() -> *mut c_void {
    acrn_emu_alloc_pages(acrn_hsm::PAGE_SIZE)
}

/// Frees memory from [`acrn_emu_alloc_page`]/[`acrn_emu_alloc_pages`]: the address stops
/// resolving at once; the memory is unmapped when the emulator no longer uses it (a VM still
/// holding it as its ioreq page keeps it mapped, as a pinned page outlives `munmap`). Returns
/// `-EINVAL` for `NULL` or an address that is not the start of a live allocation.
///
/// Taking the address only (never dereferencing it), this function is safe: a wrong address is
/// an error, not undefined behaviour. Do not touch the memory afterwards.
#[unsafe(no_mangle)]
pub extern "C" fn acrn_emu_free_page(ptr: *mut c_void) -> c_int {
    guard(-libc::EIO, || match pages().remove(&(ptr as usize)) {
        Some(p) => {
            drop(p);
            0
        }
        None => fail(Errno::EINVAL, "acrn_emu_free_page: not a live allocation"),
    })
}

/// Starts the guest `workload_json` (the workload format of `docs/workloads.md`) on VM `vmid`'s
/// vCPUs, one thread per vCPU list, and stores the run in `*out`. Returns `0`, or `-EINVAL`
/// (NULL argument, JSON error: see [`acrn_emu_last_error`], more lists than vCPUs), `-ENOENT`
/// (no such VM), `-EPERM` (VM not running), `-EBUSY` (a workload already runs on those vCPUs).
///
/// The run must be joined with [`acrn_emu_guest_join`], which also frees it.
///
/// # Safety
///
/// `emu` is `NULL` or a live pointer from [`acrn_emu_new`]; `workload_json` is `NULL` or a
/// NUL-terminated string; `out` is `NULL` or valid for writing one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn acrn_emu_guest_spawn(
    emu: *const AcrnEmu,
    vmid: u16,
    workload_json: *const c_char,
    out: *mut *mut AcrnEmuRun,
) -> c_int {
    if out.is_null() {
        return fail(Errno::EINVAL, "acrn_emu_guest_spawn: NULL out");
    }
    // SAFETY: `out` is non-NULL and, per the contract, valid for writing one pointer.
    unsafe { out.write(std::ptr::null_mut()) };
    // SAFETY: per the contract, `emu` is NULL or points to a live `AcrnEmu`.
    let Some(emu) = (unsafe { emu.as_ref() }) else {
        return fail(Errno::EINVAL, "acrn_emu_guest_spawn: NULL machine");
    };
    if workload_json.is_null() {
        return fail(Errno::EINVAL, "acrn_emu_guest_spawn: NULL workload");
    }
    // SAFETY: non-NULL and, per the contract, NUL-terminated and live for the call.
    let json = unsafe { CStr::from_ptr(workload_json) };
    let spawned = guard(Err(-libc::EIO), || {
        let Ok(json) = json.to_str() else {
            return Err(fail(Errno::EINVAL, "workload: not UTF-8"));
        };
        let w = match Workload::from_json(json) {
            Ok(w) => w,
            Err(e) => {
                set_error(format!("workload: {e}"));
                return Err(-libc::EINVAL);
            }
        };
        let guest = emu
            .emu
            .guest(vmid)
            .map_err(|e| fail(e, "acrn_emu_guest_spawn: VM"))?;
        guest.spawn(&w).map_err(|e| fail(e, "acrn_emu_guest_spawn"))
    });
    match spawned {
        Ok(run) => {
            let p = Box::into_raw(Box::new(AcrnEmuRun { run }));
            // SAFETY: `out` is non-NULL and valid for writing one pointer (checked above).
            unsafe { out.write(p) };
            0
        }
        Err(e) => e,
    }
}

/// Whether every vCPU of the run has finished: `1`, `0`, or `-EINVAL` for `NULL`.
///
/// # Safety
///
/// `run` is `NULL` or a live pointer from [`acrn_emu_guest_spawn`] not yet joined.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn acrn_emu_guest_finished(run: *const AcrnEmuRun) -> c_int {
    // SAFETY: per the contract, `run` is NULL or points to a live `AcrnEmuRun`.
    let Some(run) = (unsafe { run.as_ref() }) else {
        return fail(Errno::EINVAL, "acrn_emu_guest_finished: NULL run");
    };
    guard(-libc::EIO, || c_int::from(run.run.is_finished()))
}

/// Waits for every vCPU of the run, frees the run, and fills `*out`. The first
/// `min(cap, out->latencies)` latencies (PENDING to FREE as the guest saw it, in ns; per vCPU in
/// completion order, vCPUs concatenated) are copied to `latencies`.
///
/// Returns `0`, or `-EINVAL` when `run` or `out` is `NULL`, or `latencies` is `NULL` with
/// `cap > 0` (the run is then left alone, so that the call can be repeated correctly).
///
/// # Safety
///
/// `run` is `NULL` or a live pointer from [`acrn_emu_guest_spawn`] not yet joined, used by no
/// other thread; `out` is `NULL` or valid for writing one `struct acrn_emu_run_result`;
/// `latencies` is `NULL` or valid for writing `cap` `uint64_t`s.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn acrn_emu_guest_join(
    run: *mut AcrnEmuRun,
    out: *mut AcrnEmuRunResult,
    latencies: *mut u64,
    cap: usize,
) -> c_int {
    if run.is_null() || out.is_null() || (latencies.is_null() && cap > 0) {
        return fail(Errno::EINVAL, "acrn_emu_guest_join: NULL argument");
    }
    // SAFETY: non-NULL; per the contract it came from `Box::into_raw` in `acrn_emu_guest_spawn`
    // and is joined (freed) exactly once.
    let run = unsafe { Box::from_raw(run) };
    let Some(result) = guard(None, move || Some(run.run.join())) else {
        return -libc::EIO;
    };
    let n = result.latencies_ns.len().min(cap);
    if n > 0 {
        // SAFETY: `latencies` is non-NULL (cap > 0 was checked) and valid for `cap >= n` u64s;
        // the source is a distinct Rust allocation of at least `n` elements.
        unsafe { std::ptr::copy_nonoverlapping(result.latencies_ns.as_ptr(), latencies, n) };
    }
    // SAFETY: `out` is non-NULL and valid for one write, per the contract.
    unsafe { out.write(AcrnEmuRunResult::from(&result)) };
    0
}

/// The message of the last failure on the calling thread (empty if none). The string is valid
/// until the next call into this library on the same thread.
#[unsafe(no_mangle)]
pub extern "C" fn acrn_emu_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

#[cfg(test)]
mod tests;
