//! Security properties of the device handle: opened close-on-exec (a device model that runs a
//! helper program must not leak its VM's file to it), and a permission failure reported as the
//! kernel's errno (EACCES), not as something else.
//!
//! `cargo test -p acrn-hsm --test reliability_security`

use std::os::fd::AsRawFd;
use std::process::Command;

use acrn_hsm::Errno;
use acrn_hsm::sys::HsmDevice;

fn cloexec(fd: i32) -> bool {
    // SAFETY: F_GETFD on a descriptor this test owns; no memory is passed.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    assert!(flags >= 0, "fcntl(F_GETFD)");
    flags & libc::FD_CLOEXEC != 0
}

#[test]
fn the_device_is_opened_close_on_exec() {
    let dev = HsmDevice::open("/dev/null").expect("/dev/null opens read-write");
    assert!(cloexec(dev.as_raw_fd()), "FD_CLOEXEC set on the HSM file");
    // And a program started afterwards does not inherit it.
    let path = std::env::temp_dir().join(format!("acrn-hsm-cloexec-{}", std::process::id()));
    std::fs::write(&path, b"x").expect("temp file");
    let dev = HsmDevice::open(&path).expect("a regular file opens read-write");
    assert!(cloexec(dev.as_raw_fd()));
    let out = Command::new("ls")
        .args(["-l", "/proc/self/fd/"])
        .output()
        .expect("ls");
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{listing}");
    assert!(
        !listing.contains(&*path.to_string_lossy()),
        "the child inherited the device file: {listing}"
    );
    drop(dev);
    let _ = std::fs::remove_file(&path);
}

#[test]
fn open_failures_keep_the_kernel_errno() {
    assert_eq!(
        HsmDevice::open("/nonexistent/acrn_hsm").err(),
        Some(Errno::ENOENT)
    );
    // A directory cannot be opened read-write.
    assert_eq!(HsmDevice::open("/").err(), Some(Errno(libc::EISDIR)));
}

#[test]
fn open_of_an_unreadable_device_is_eacces() {
    // EACCES needs an unprivileged user: as root (CAP_DAC_OVERRIDE) a 0600 file opens anyway.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        eprintln!(
            "skipped: running as root, which opens any file; the TypeScript test \
             (test/reliability-security.test.ts) runs this check as uid 65534"
        );
        return;
    }
    let path = std::env::temp_dir().join(format!("acrn-hsm-eacces-{}", std::process::id()));
    std::fs::write(&path, b"x").expect("temp file");
    let mut perms = std::fs::metadata(&path).expect("stat").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o000);
    std::fs::set_permissions(&path, perms).expect("chmod");
    assert_eq!(HsmDevice::open(&path).err(), Some(Errno::EACCES));
    let _ = std::fs::remove_file(&path);
}
