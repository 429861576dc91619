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
//! bytes (else `EFAULT` without a system call, so the kernel never reads past the buffer), and
//! the kernel's errno is returned unchanged.
//!
//! # User memory the kernel would write
//!
//! `ioctl` is a safe function, so it must not let the kernel or the hypervisor write into memory
//! this process did not hand out for that purpose. Three kinds of argument name user memory: a
//! pointer request given as `Value(address)`, `acrn_vm_creation.ioreq_buf` (pinned, then written
//! by the hypervisor), `acrn_vm_memmap.vma_base` of a RAM segment (pinned and mapped into the
//! guest) and the page of VM_INTR_MONITOR. Each must lie inside a live [`crate::UserPages`]
//! allocation, exactly the rule the emulator applies; otherwise the call fails before the system
//! call with the errno the kernel gives for memory it cannot pin (`EINVAL` for `ioreq_buf`, whose
//! pin failure CREATE_VM reports as `EINVAL`; `EFAULT` for the others). A `Value` address is
//! copied in and out of that allocation around the call, so the kernel only sees a buffer of
//! exactly the request's size.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};

use vmm_sys_util::ioctl::{ioctl_with_mut_ptr, ioctl_with_val};

use crate::abi::{self, le};
use crate::backend::{ArgKind, HsmBackend, IoctlArg, classify};
use crate::errno::Errno;
use crate::memory::{self, PAGE_SIZE};

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

impl HsmDevice {
    fn ioctl_value(&self, request: u32, value: u64) -> i32 {
        // SAFETY: `self.file` is an open descriptor and the argument is an integer: either not
        // used by the request, or (VM_INTR_MONITOR) a user address checked by
        // `check_by_value_address` to lie inside memory this library allocated for it. The
        // result is checked by the caller.
        unsafe { ioctl_with_val(&self.file, request as _, value as libc::c_ulong) }
    }

    fn ioctl_bytes(&self, request: u32, bytes: &mut [u8]) -> i32 {
        // SAFETY: `bytes` is a live, exclusively borrowed buffer of exactly `_IOC_SIZE(request)`
        // bytes (checked by `classify`), so the kernel reads and writes back within it; the
        // user addresses inside it were checked by `check_embedded_addresses`. The result is
        // checked by the caller.
        unsafe { ioctl_with_mut_ptr(&self.file, request as _, bytes.as_mut_ptr()) }
    }
}

/// VM_INTR_MONITOR passes a user address by value; the kernel pins that page and the
/// hypervisor writes into it.
fn check_by_value_address(request: u32, value: u64) -> Result<(), Errno> {
    if request == abi::VM_INTR_MONITOR {
        memory::pin(value & !(PAGE_SIZE as u64 - 1), PAGE_SIZE)?;
    }
    Ok(())
}

/// How many bytes PM_GET_CPU_STATE writes back at `addr` (0 for other requests).
fn pm_write_back(request: u32, addr: u64) -> Result<usize, Errno> {
    if request != abi::PM_GET_CPU_STATE {
        return Ok(0);
    }
    let mut cmd = [0u8; 8];
    memory::copy_from_user(addr, &mut cmd)?;
    Ok(abi::pm_write_back_len(&cmd))
}

/// The user addresses inside an argument struct must be memory this library handed out.
fn check_embedded_addresses(request: u32, bytes: &[u8]) -> Result<(), Errno> {
    match request {
        abi::CREATE_VM => {
            let buf = le::u64_at(bytes, abi::vm_creation::IOREQ_BUF);
            memory::pin(buf & !(PAGE_SIZE as u64 - 1), PAGE_SIZE).map_err(|_| Errno::EINVAL)?;
        }
        abi::SET_MEMSEG if le::u32_at(bytes, abi::memmap::TYPE) == abi::MEMMAP_RAM => {
            let base = le::u64_at(bytes, abi::memmap::VMA_BASE);
            let len = le::u64_at(bytes, abi::memmap::LEN) & !(PAGE_SIZE as u64 - 1);
            let len = usize::try_from(len).map_err(|_| Errno::EFAULT)?;
            memory::pin(base, len)?;
        }
        _ => {}
    }
    Ok(())
}

impl HsmBackend for HsmDevice {
    fn ioctl(&self, request: u32, mut arg: IoctlArg<'_>) -> Result<i64, Errno> {
        let ret = match classify(request, &mut arg)? {
            ArgKind::Nothing => self.ioctl_value(request, 0),
            ArgKind::Value(v) => {
                check_by_value_address(request, v)?;
                self.ioctl_value(request, v)
            }
            ArgKind::Address(addr) => {
                // Only memory we handed out; the kernel works on a copy of exactly its size
                // (PM_GET_CPU_STATE writes back more than its 8-byte argument).
                let size = abi::ioc_size(request).max(pm_write_back(request, addr)?);
                let pinned = memory::pin(addr, size)?;
                let mut copy = vec![0u8; size];
                pinned.read(0, &mut copy)?;
                check_embedded_addresses(request, &copy)?;
                let ret = self.ioctl_bytes(request, &mut copy);
                pinned.write(0, &copy)?;
                ret
            }
            ArgKind::Bytes(b) => {
                if request == abi::PM_GET_CPU_STATE && abi::pm_write_back_len(b) > b.len() {
                    // pmcmd_ioctl copies a 48/32-byte P/C-state over the 8-byte argument.
                    return Err(Errno::EFAULT);
                }
                check_embedded_addresses(request, b)?;
                self.ioctl_bytes(request, b)
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

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod user_memory_tests {
    use super::*;
    use crate::memory::UserPages;

    /// `/dev/null` stands in for the device: any request that reaches the kernel gets `ENOTTY`,
    /// so `ENOTTY` proves the call got through and anything else that it was stopped before.
    fn null_device() -> HsmDevice {
        HsmDevice::open("/dev/null").expect("/dev/null opens")
    }

    fn creation(ioreq_buf: u64) -> [u8; 48] {
        let mut b = [0u8; 48];
        b[abi::vm_creation::IOREQ_BUF..abi::vm_creation::IOREQ_BUF + 8]
            .copy_from_slice(&ioreq_buf.to_le_bytes());
        b
    }

    fn memseg(ty: u32, vma_base: u64, len: u64) -> [u8; 32] {
        let mut b = [0u8; 32];
        b[abi::memmap::TYPE..abi::memmap::TYPE + 4].copy_from_slice(&ty.to_le_bytes());
        b[abi::memmap::VMA_BASE..abi::memmap::VMA_BASE + 8]
            .copy_from_slice(&vma_base.to_le_bytes());
        b[abi::memmap::LEN..abi::memmap::LEN + 8].copy_from_slice(&len.to_le_bytes());
        b
    }

    #[test]
    fn ioreq_buf_must_be_library_memory() {
        let dev = null_device();
        let page = UserPages::new(PAGE_SIZE).expect("page");
        let stack_var = 0u64;
        let foreign = &stack_var as *const u64 as u64;
        let mut b = creation(foreign);
        assert_eq!(
            dev.ioctl(abi::CREATE_VM, IoctlArg::Bytes(&mut b)),
            Err(Errno::EINVAL)
        );
        let mut b = creation(page.addr() + 100);
        assert_eq!(
            dev.ioctl(abi::CREATE_VM, IoctlArg::Bytes(&mut b)),
            Err(Errno::ENOTTY)
        );
    }

    #[test]
    fn ram_segments_must_be_library_memory() {
        let dev = null_device();
        let ram = UserPages::new(4 * PAGE_SIZE).expect("ram");
        let mut b = memseg(abi::MEMMAP_RAM, ram.addr(), 4 * PAGE_SIZE as u64);
        assert_eq!(
            dev.ioctl(abi::SET_MEMSEG, IoctlArg::Bytes(&mut b)),
            Err(Errno::ENOTTY)
        );
        let mut b = memseg(abi::MEMMAP_RAM, ram.addr(), 5 * PAGE_SIZE as u64);
        assert_eq!(
            dev.ioctl(abi::SET_MEMSEG, IoctlArg::Bytes(&mut b)),
            Err(Errno::EFAULT)
        );
        // MMIO segments name Service VM physical addresses, which the hypervisor validates.
        let mut b = memseg(1, 0xfe00_0000, PAGE_SIZE as u64);
        assert_eq!(
            dev.ioctl(abi::SET_MEMSEG, IoctlArg::Bytes(&mut b)),
            Err(Errno::ENOTTY)
        );
    }

    #[test]
    fn pointer_arguments_by_address_must_be_library_memory() {
        let dev = null_device();
        let stack_var = [0u8; 48];
        let foreign = stack_var.as_ptr() as u64;
        assert_eq!(
            dev.ioctl(abi::CREATE_VM, IoctlArg::Value(foreign)),
            Err(Errno::EFAULT)
        );
        assert_eq!(
            dev.ioctl(abi::VM_INTR_MONITOR, IoctlArg::Value(foreign)),
            Err(Errno::EFAULT)
        );
        let page = UserPages::new(PAGE_SIZE).expect("page");
        assert_eq!(
            dev.ioctl(abi::VM_INTR_MONITOR, IoctlArg::Value(page.addr())),
            Err(Errno::ENOTTY)
        );
        // The struct at the address is checked too: its ioreq_buf here is 0, not ours.
        assert_eq!(
            dev.ioctl(abi::CREATE_VM, IoctlArg::Value(page.addr())),
            Err(Errno::EINVAL)
        );
    }
}
