//! The C ABI called from Rust as a C program would call it.

use std::ffi::{CStr, CString};
use std::ptr::{null, null_mut};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use acrn_uapi::bindings::{
    ACRN_IOREQ_DIR_READ, ACRN_IOREQ_STATE_FREE, ACRN_IOREQ_STATE_PROCESSING, acrn_ioreq_notify,
    acrn_vm_creation,
};
use acrn_uapi::ioreq as slot;

use super::*;

/// Raw pointers handed to another thread (the C client's loop thread).
#[derive(Clone, Copy)]
struct SendPtr<T>(*const T);
// SAFETY: the pointees are only used through the thread-safe C ABI (`AcrnEmuFile` is `Sync`),
// and the tests keep them alive until the threads are joined.
unsafe impl<T> Send for SendPtr<T> {}

fn errno_of(r: c_int) -> i32 {
    -r
}

fn last_error() -> String {
    // SAFETY: `acrn_emu_last_error` returns a NUL-terminated string valid until the next call
    // on this thread; it is copied at once.
    unsafe { CStr::from_ptr(acrn_emu_last_error()) }
        .to_string_lossy()
        .into_owned()
}

/// A machine, a file and an ioreq page; a VM created through the raw ioctl.
struct Fixture {
    emu: *mut AcrnEmu,
    file: *mut AcrnEmuFile,
    page: *mut c_void,
    vmid: u16,
    vcpus: u16,
}

impl Fixture {
    fn new(vcpus: u16, vm_flag: u64) -> Fixture {
        let emu = acrn_emu_new(16);
        assert!(!emu.is_null());
        // SAFETY: `emu` is live.
        let file = unsafe { acrn_emu_open(emu) };
        assert!(!file.is_null());
        let page = acrn_emu_alloc_page();
        assert!(!page.is_null());
        assert_eq!(page as usize % 4096, 0);
        let mut cv = acrn_vm_creation {
            vm_flag,
            ioreq_buf: page as u64,
            cpu_affinity: (1u64 << vcpus) - 1,
            ..Default::default()
        };
        // SAFETY: `file` is live; `cv` is a whole `acrn_vm_creation`, readable and writable.
        let r = unsafe {
            acrn_emu_ioctl(
                file,
                c_ulong::from(io::ACRN_IOCTL_CREATE_VM),
                (&raw mut cv).cast::<c_void>(),
            )
        };
        assert_eq!(r, 0, "{}", last_error());
        assert_eq!(cv.vcpu_num, vcpus, "vcpu_num copied back");
        assert_ne!(cv.vmid, 0xffff, "vmid copied back");
        Fixture {
            emu,
            file,
            page,
            vmid: cv.vmid,
            vcpus,
        }
    }

    fn ioctl(&self, request: u32, arg: *mut c_void) -> c_int {
        // SAFETY: `self.file` is live; callers pass a NULL arg or a whole struct of the
        // command's size.
        unsafe { acrn_emu_ioctl(self.file, c_ulong::from(request), arg) }
    }

    fn word(&self, offset: usize) -> &AtomicU32 {
        // SAFETY: `offset` is inside the live 4 KiB ioreq page and 4-byte aligned; the page is
        // shared with the emulator's threads, so it is only accessed atomically.
        unsafe { AtomicU32::from_ptr(self.page.cast::<u8>().wrapping_add(offset).cast::<u32>()) }
    }

    fn dword(&self, offset: usize) -> &AtomicU64 {
        // SAFETY: as `word`, 8-byte aligned.
        unsafe { AtomicU64::from_ptr(self.page.cast::<u8>().wrapping_add(offset).cast::<u64>()) }
    }

    /// The device model's loop (`vm_loop`): ATTACH, scan, emulate, NOTIFY; until `-ENODEV`.
    /// Reads return `0x1000 + address`. Returns the number of requests handled.
    fn dm_loop(&self) -> u64 {
        let mut handled = 0;
        loop {
            let r = self.ioctl(io::ACRN_IOCTL_ATTACH_IOREQ_CLIENT, null_mut());
            if r == -libc::ENODEV {
                return handled;
            }
            assert!(r >= 0, "ATTACH: {r}");
            for i in 0..usize::from(self.vcpus) {
                let base = slot::slot_offset(i);
                if self
                    .word(base + slot::SLOT_OFFSET_PROCESSED)
                    .load(Ordering::Acquire)
                    != ACRN_IOREQ_STATE_PROCESSING
                    || self
                        .word(base + slot::SLOT_OFFSET_KERNEL_HANDLED)
                        .load(Ordering::Relaxed)
                        != 0
                {
                    continue;
                }
                let dir = self
                    .word(base + slot::SLOT_OFFSET_DIRECTION)
                    .load(Ordering::Relaxed);
                let addr = self
                    .dword(base + slot::SLOT_OFFSET_ADDRESS)
                    .load(Ordering::Relaxed);
                if dir == ACRN_IOREQ_DIR_READ {
                    self.dword(base + slot::SLOT_OFFSET_VALUE)
                        .store(0x1000 + addr, Ordering::Relaxed);
                }
                let mut n = acrn_ioreq_notify {
                    vmid: self.vmid,
                    reserved: 0,
                    vcpu: i as u32,
                };
                let r = self.ioctl(
                    io::ACRN_IOCTL_NOTIFY_REQUEST_FINISH,
                    (&raw mut n).cast::<c_void>(),
                );
                assert_eq!(r, 0);
                handled += 1;
            }
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // SAFETY: every handle is live and no other thread uses them any more.
        unsafe { acrn_emu_close(self.file) };
        assert_eq!(acrn_emu_free_page(self.page), 0);
        // SAFETY: as above.
        unsafe { acrn_emu_free(self.emu) };
    }
}

fn workload(vcpus: u16, reads: u32) -> CString {
    let lists: Vec<String> = (0..vcpus)
        .map(|v| {
            let port = 0x500 + u32::from(v);
            format!(
                r#"[{{"repeat": {reads}, "ops": [{{"pio": {port}, "size": 2, "read": true, "expect": {}}},
                    {{"pio": {port}, "size": 1, "write": 7}}]}}]"#,
                (0x1000 + port) & 0xffff
            )
        })
        .collect();
    CString::new(format!(r#"{{"vcpus": [{}]}}"#, lists.join(","))).unwrap()
}

fn run_end_to_end(vm_flag: u64) {
    let f = Fixture::new(4, vm_flag);
    assert_eq!(f.ioctl(io::ACRN_IOCTL_CREATE_IOREQ_CLIENT, null_mut()), 0);
    assert_eq!(f.ioctl(io::ACRN_IOCTL_START_VM, null_mut()), 0);
    let fp = SendPtr(&raw const f);
    let client = std::thread::spawn(move || {
        let fp = fp;
        // SAFETY: the fixture outlives this thread (joined below, before `f` drops).
        let f = unsafe { &*fp.0 };
        f.dm_loop()
    });
    let mut run = null_mut();
    let json = workload(4, 200);
    // SAFETY: live machine, NUL-terminated JSON, `run` writable.
    let r = unsafe { acrn_emu_guest_spawn(f.emu, f.vmid, json.as_ptr(), &raw mut run) };
    assert_eq!(r, 0, "{}", last_error());
    let mut res = AcrnEmuRunResult::default();
    let mut lat = vec![0u64; 2000];
    // SAFETY: `run` is live and joined once; `res` and `lat` are writable (cap = len).
    let r = unsafe { acrn_emu_guest_join(run, &raw mut res, lat.as_mut_ptr(), lat.len()) };
    assert_eq!(r, 0);
    assert_eq!(f.ioctl(io::ACRN_IOCTL_DESTROY_IOREQ_CLIENT, null_mut()), 0);
    let handled = client.join().unwrap();
    assert_eq!(res.issued, 1600);
    assert_eq!(res.completed, 1600);
    assert_eq!(res.mismatches, 0);
    assert_eq!(res.faults, 0);
    assert_eq!(res.vcpus, 4);
    assert_eq!(res.stopped_vcpus, 0);
    assert_eq!(res.latencies, 1600);
    assert_eq!(handled, 1600);
    assert!(lat[..1600].iter().all(|&l| l > 0), "every latency copied");
    for i in 0..4 {
        assert_eq!(
            f.word(slot::slot_offset(i) + slot::SLOT_OFFSET_PROCESSED)
                .load(Ordering::Acquire),
            ACRN_IOREQ_STATE_FREE
        );
    }
    assert_eq!(f.ioctl(io::ACRN_IOCTL_PAUSE_VM, null_mut()), 0);
    assert_eq!(f.ioctl(io::ACRN_IOCTL_DESTROY_VM, null_mut()), 0);
}

#[test]
fn dm_loop_through_the_c_abi_notify_mode() {
    run_end_to_end(0);
}

#[test]
fn dm_loop_through_the_c_abi_polling_mode() {
    run_end_to_end(acrn_hsm::GUEST_FLAG_IO_COMPLETION_POLLING);
}

#[test]
fn wrong_expectations_are_reported_as_mismatches() {
    let f = Fixture::new(1, 0);
    assert_eq!(f.ioctl(io::ACRN_IOCTL_CREATE_IOREQ_CLIENT, null_mut()), 0);
    assert_eq!(f.ioctl(io::ACRN_IOCTL_START_VM, null_mut()), 0);
    let fp = SendPtr(&raw const f);
    let client = std::thread::spawn(move || {
        let fp = fp;
        // SAFETY: the fixture outlives this thread.
        f_loop(unsafe { &*fp.0 })
    });
    fn f_loop(f: &Fixture) -> u64 {
        f.dm_loop()
    }
    // The device answers 0x1000 + 0x60 = 0x1060; expect something else.
    let json = CString::new(r#"{"vcpus": [[{"pio": 96, "size": 2, "read": true, "expect": 1}]]}"#)
        .unwrap();
    let mut run = null_mut();
    // SAFETY: live machine, NUL-terminated JSON, `run` writable.
    let r = unsafe { acrn_emu_guest_spawn(f.emu, f.vmid, json.as_ptr(), &raw mut run) };
    assert_eq!(r, 0);
    let mut res = AcrnEmuRunResult::default();
    // SAFETY: `run` live; no latency buffer (cap 0).
    let r = unsafe { acrn_emu_guest_join(run, &raw mut res, null_mut(), 0) };
    assert_eq!(r, 0);
    assert_eq!(f.ioctl(io::ACRN_IOCTL_DESTROY_IOREQ_CLIENT, null_mut()), 0);
    assert_eq!(client.join().unwrap(), 1);
    assert_eq!((res.issued, res.completed, res.mismatches), (1, 1, 1));
    assert_eq!(res.latencies, 1);
}

#[test]
fn destroying_the_client_ends_a_blocked_attach_with_enodev() {
    let f = Fixture::new(1, 0);
    assert_eq!(f.ioctl(io::ACRN_IOCTL_CREATE_IOREQ_CLIENT, null_mut()), 0);
    let fp = SendPtr(&raw const f);
    let t = std::thread::spawn(move || {
        let fp = fp;
        // SAFETY: the fixture outlives this thread.
        let f = unsafe { &*fp.0 };
        f.ioctl(io::ACRN_IOCTL_ATTACH_IOREQ_CLIENT, null_mut())
    });
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert_eq!(f.ioctl(io::ACRN_IOCTL_DESTROY_IOREQ_CLIENT, null_mut()), 0);
    assert_eq!(errno_of(t.join().unwrap()), libc::ENODEV);
    // No client any more: ATTACH fails at once.
    assert_eq!(
        errno_of(f.ioctl(io::ACRN_IOCTL_ATTACH_IOREQ_CLIENT, null_mut())),
        libc::ENODEV
    );
}

#[test]
fn null_and_bad_arguments_are_errors_not_crashes() {
    assert!(acrn_emu_new(0).is_null());
    assert!(acrn_emu_new(65).is_null());
    assert!(!last_error().is_empty());
    // SAFETY (all blocks below): NULL handles and pointers are allowed and rejected.
    // SAFETY: see above.
    assert!(unsafe { acrn_emu_open(null()) }.is_null());
    assert_eq!(
        // SAFETY: see above.
        errno_of(unsafe {
            acrn_emu_ioctl(null(), c_ulong::from(io::ACRN_IOCTL_START_VM), null_mut())
        }),
        libc::EINVAL
    );
    // SAFETY: see above.
    unsafe { acrn_emu_close(null_mut()) };
    // SAFETY: see above.
    unsafe { acrn_emu_free(null_mut()) };
    // SAFETY: see above.
    let r = errno_of(unsafe { acrn_emu_guest_finished(null()) });
    assert_eq!(r, libc::EINVAL);
    let mut res = AcrnEmuRunResult::default();
    // SAFETY: see above.
    let r = errno_of(unsafe { acrn_emu_guest_join(null_mut(), &raw mut res, null_mut(), 0) });
    assert_eq!(r, libc::EINVAL);
    assert_eq!(errno_of(acrn_emu_free_page(null_mut())), libc::EINVAL);
    assert!(acrn_emu_alloc_pages(0).is_null());

    let emu = acrn_emu_new(4);
    // SAFETY: `emu` is live.
    let file = unsafe { acrn_emu_open(emu) };
    let ioctl = |req: u32, arg: *mut c_void| {
        // SAFETY: `file` is live; args are NULL, by-value, or whole structs.
        unsafe { acrn_emu_ioctl(file, c_ulong::from(req), arg) }
    };
    // No VM yet: everything but CREATE_VM is EINVAL, as in the kernel.
    assert_eq!(
        errno_of(ioctl(io::ACRN_IOCTL_START_VM, null_mut())),
        libc::EINVAL
    );
    // Pointer command with a NULL pointer: EFAULT, as copy_from_user.
    assert_eq!(
        errno_of(ioctl(io::ACRN_IOCTL_CREATE_VM, null_mut())),
        libc::EFAULT
    );
    // Not an ACRN command, no VM: EINVAL (the kernel checks the VM first); the argument, a
    // wild pointer, is not touched.
    assert_eq!(
        errno_of(ioctl(0xdead_beef, 0x10 as *mut c_void)),
        libc::EINVAL
    );
    // An ioreq_buf the emulator cannot pin (stack memory): CREATE_VM fails with EINVAL.
    let stack = [0u8; 8192];
    let mut cv = acrn_vm_creation {
        ioreq_buf: (stack.as_ptr() as u64 + 4095) & !4095,
        cpu_affinity: 1,
        ..Default::default()
    };
    assert_eq!(
        errno_of(ioctl(
            io::ACRN_IOCTL_CREATE_VM,
            (&raw mut cv).cast::<c_void>()
        )),
        libc::EINVAL
    );
    // Guest on a VM that does not exist; bad JSON; NULL out.
    let json = CString::new(r#"{"vcpus": [[]]}"#).unwrap();
    let bad = CString::new(r#"{"vcpus": [[{"pio": 1, "size": 3, "read": true}]]}"#).unwrap();
    let mut run = null_mut();
    let spawn = |json: *const c_char, out: *mut *mut AcrnEmuRun| {
        // SAFETY: live machine; `json` is NULL or NUL-terminated; `out` is NULL or writable.
        errno_of(unsafe { acrn_emu_guest_spawn(emu, 7, json, out) })
    };
    assert_eq!(spawn(json.as_ptr(), &raw mut run), libc::ENOENT);
    assert!(run.is_null());
    assert_eq!(spawn(bad.as_ptr(), &raw mut run), libc::EINVAL);
    assert!(last_error().contains("size"), "{}", last_error());
    assert_eq!(spawn(json.as_ptr(), null_mut()), libc::EINVAL);
    assert_eq!(spawn(null(), &raw mut run), libc::EINVAL);
    // SAFETY: live handles, not used afterwards.
    unsafe { acrn_emu_close(file) };
    // SAFETY: as above.
    unsafe { acrn_emu_free(emu) };
}

#[test]
fn pages_are_freed_once_and_resolve_while_live() {
    let p = acrn_emu_alloc_pages(5000);
    assert!(!p.is_null());
    // SAFETY: 8192 bytes were mapped (5000 rounded up to pages); only this thread uses them.
    unsafe { p.cast::<u8>().wrapping_add(8191).write(0xaa) };
    // SAFETY: as above.
    assert_eq!(unsafe { p.cast::<u8>().wrapping_add(8191).read() }, 0xaa);
    assert_eq!(
        errno_of(acrn_emu_free_page(p.cast::<u8>().wrapping_add(4096).cast())),
        libc::EINVAL
    );
    assert_eq!(acrn_emu_free_page(p), 0);
    assert_eq!(errno_of(acrn_emu_free_page(p)), libc::EINVAL);
}

#[test]
fn guest_spawn_needs_a_running_vm_and_reports_finish() {
    let f = Fixture::new(2, acrn_hsm::GUEST_FLAG_IO_COMPLETION_POLLING);
    let json = CString::new(r#"{"vcpus": [[], []]}"#).unwrap();
    let mut run = null_mut();
    // SAFETY: live machine, NUL-terminated JSON, `run` writable.
    let r = errno_of(unsafe { acrn_emu_guest_spawn(f.emu, f.vmid, json.as_ptr(), &raw mut run) });
    assert_eq!(r, libc::EPERM);
    // With a VM: an unknown command is ENOTTY, its (wild) argument untouched.
    assert_eq!(
        errno_of(f.ioctl(0xdead_beef, 0x10 as *mut c_void)),
        libc::ENOTTY
    );
    assert_eq!(f.ioctl(io::ACRN_IOCTL_START_VM, null_mut()), 0);
    let three = CString::new(r#"{"vcpus": [[], [], []]}"#).unwrap();
    // SAFETY: as above.
    let r = errno_of(unsafe { acrn_emu_guest_spawn(f.emu, f.vmid, three.as_ptr(), &raw mut run) });
    assert_eq!(r, libc::EINVAL);
    // SAFETY: as above.
    let r = unsafe { acrn_emu_guest_spawn(f.emu, f.vmid, json.as_ptr(), &raw mut run) };
    assert_eq!(r, 0);
    // Empty lists: finished almost at once.
    let t0 = std::time::Instant::now();
    // SAFETY: `run` is live until joined below.
    while unsafe { acrn_emu_guest_finished(run) } == 0 {
        assert!(t0.elapsed().as_secs() < 10);
        std::thread::yield_now();
    }
    let mut res = AcrnEmuRunResult {
        issued: 99,
        ..Default::default()
    };
    // SAFETY: `run` live, joined once.
    let r = unsafe { acrn_emu_guest_join(run, &raw mut res, null_mut(), 0) };
    assert_eq!(r, 0);
    assert_eq!(
        res,
        AcrnEmuRunResult {
            vcpus: 2,
            ..Default::default()
        }
    );
}
