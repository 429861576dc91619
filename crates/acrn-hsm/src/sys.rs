//! The real `/dev/acrn_hsm` character device.
//!
//! # Choice of ioctl crate
//!
//! System calls go through **vmm-sys-util** (rust-vmm), the crate kvm-ioctls, firecracker and
//! cloud-hypervisor use for exactly this job: `ioctl`, `ioctl_with_val` and
//! `ioctl_with_mut_ptr` are thin, documented `unsafe` wrappers over `libc::ioctl` that take the
//! whole request word, which is what a *raw* interface needs (this crate forwards arbitrary
//! request numbers, including unknown ones, so that the kernel answers them). rustix's typed
//! `ioctl::Ioctl` trait wants one type per request, and nix's `ioctl_*!` macros generate one
//! function per request: both are built for the opposite use (a fixed set of known requests).
//!
//! Argument handling follows [`crate::backend`]: `Bytes` must have exactly `_IOC_SIZE(request)`
//! bytes (else `EFAULT` without a system call, so the kernel never reads past the buffer),
//! `Value` is passed through as the integer argument (a user address for pointer requests, as in
//! C), and the kernel's errno is returned unchanged.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};

use vmm_sys_util::ioctl::{ioctl_with_mut_ptr, ioctl_with_val};

use crate::backend::{ArgKind, HsmBackend, IoctlArg, classify};
use crate::errno::Errno;

/// The default device path.
pub const DEFAULT_PATH: &str = "/dev/acrn_hsm";

/// An open `/dev/acrn_hsm` (one kernel file: at most one VM).
#[derive(Debug)]
pub struct HsmDevice {
    file: File,
    path: PathBuf,
}

impl HsmDevice {
    /// Opens the device `O_RDWR | O_CLOEXEC` (as the ACRN device model does).
    pub fn open(path: impl AsRef<Path>) -> Result<HsmDevice, Errno> {
        let path = path.as_ref();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)?;
        Ok(HsmDevice {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Whether a device exists at `path` (without opening it).
    pub fn exists(path: impl AsRef<Path>) -> bool {
        path.as_ref().exists()
    }

    /// The path it was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl AsRawFd for HsmDevice {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

impl HsmBackend for HsmDevice {
    fn ioctl(&self, request: u32, mut arg: IoctlArg<'_>) -> Result<i64, Errno> {
        let ret = match classify(request, &mut arg)? {
            ArgKind::Nothing | ArgKind::Value(_) | ArgKind::Address(_) => {
                let raw = arg.as_raw();
                // SAFETY: `self.file` is an open descriptor; the argument is an integer. For a
                // pointer request given as `Value`, the integer is a user address the caller
                // chose, exactly as with C `ioctl()`: the kernel validates it with
                // copy_from_user/copy_to_user and answers EFAULT for a bad one, so no memory of
                // this process is touched except where the caller pointed. The result is checked.
                unsafe { ioctl_with_val(&self.file, request as _, raw as libc::c_ulong) }
            }
            ArgKind::Bytes(b) => {
                // SAFETY: `b` is a live, exclusively borrowed buffer of exactly
                // `_IOC_SIZE(request)` bytes (checked by `classify`), so the kernel reads and
                // writes back within it. The result is checked.
                unsafe { ioctl_with_mut_ptr(&self.file, request as _, b.as_mut_ptr()) }
            }
        };
        if ret < 0 {
            Err(Errno::last())
        } else {
            Ok(i64::from(ret))
        }
    }

    fn name(&self) -> String {
        self.path.display().to_string()
    }
}
