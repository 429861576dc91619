//! [`HsmBackend`]: the one raw interface both the real device and the emulator implement.
//!
//! `ioctl(request, arg)` takes the whole 32-bit command word and the argument, and answers what
//! the kernel would: the ioctl's return value, or the errno. This is what lets the emulator be
//! held against the kernel request by request.
//!
//! # How the argument is interpreted
//!
//! | command kind | `IoctlArg::Bytes(b)` | `IoctlArg::Value(v)` | `IoctlArg::None` |
//! |---|---|---|---|
//! | pointer (`_IOW`/`_IOR`/`_IOWR` with a struct) | `b` is the struct: it must be exactly `_IOC_SIZE(request)` bytes; it is read, and written back for `_IOR`/`_IOWR` | `v` is a user address (as in C): the emulator resolves it inside a [`crate::UserPages`] allocation, else `EFAULT` | a NULL pointer: `EFAULT` |
//! | by value (`SET_IRQLINE`, `VM_INTR_MONITOR`) | the value is the slice's address (what C would pass) | `v` | `0` |
//! | `_IO` (no argument) | ignored | ignored | ignored |
//!
//! A `Bytes` argument whose length differs from `_IOC_SIZE(request)` fails with **`EFAULT`** on
//! both backends, before any system call: the kernel would `copy_from_user` that many bytes from
//! the pointer, reading past a shorter buffer (a fault, or garbage), and a longer one means the
//! caller used the wrong struct. Refusing it keeps the real-device backend memory safe and makes
//! the two backends agree. (The length check is skipped for commands whose dispatch fails first:
//! the emulator answers `EINVAL` before a VM exists and `ENOTTY` for unknown commands, exactly as
//! the kernel does without touching the argument.)

use crate::abi;
use crate::errno::Errno;

/// The argument of one ioctl.
#[derive(Debug)]
pub enum IoctlArg<'a> {
    /// No argument (`0` is passed).
    None,
    /// An integer argument: the value of a by-value ioctl, or a user address for a pointer ioctl.
    Value(u64),
    /// The argument struct's bytes (written back in place for `_IOR`/`_IOWR`).
    Bytes(&'a mut [u8]),
}

impl IoctlArg<'_> {
    /// The integer the C `ioctl()` would receive as its third argument.
    pub fn as_raw(&self) -> u64 {
        match self {
            IoctlArg::None => 0,
            IoctlArg::Value(v) => *v,
            IoctlArg::Bytes(b) => b.as_ptr() as u64,
        }
    }
}

/// A raw `/dev/acrn_hsm` file: one open handle, holding at most one VM.
///
/// Implemented by [`crate::sys::HsmDevice`] (the real device) and
/// the emulator's `EmulatedHsm` (crate `acrn-hsm-emulator`). Ioctls on one handle may run concurrently from several
/// threads (the kernel has no per-file lock): a device model blocks in `ATTACH_IOREQ_CLIENT` on one
/// thread and destroys the client from another.
pub trait HsmBackend: Send + Sync + std::any::Any {
    /// Issues one ioctl. Returns the ioctl's (non-negative) result, or the errno.
    fn ioctl(&self, request: u32, arg: IoctlArg<'_>) -> Result<i64, Errno>;

    /// A short name for diagnostics (`"/dev/acrn_hsm"`, `"emulator"`).
    fn name(&self) -> String;

    /// The backend as [`Any`](std::any::Any), so that a layer above can find its own backend
    /// behind an [`Hsm`](crate::Hsm) (the emulator's test hooks) without this crate knowing it.
    fn as_any(&self) -> &dyn std::any::Any;
}

/// What the raw interface makes of an argument, once normalised.
#[derive(Debug)]
pub enum ArgKind<'a, 'b> {
    /// `_IO` command: nothing.
    Nothing,
    /// By-value command: the integer.
    Value(u64),
    /// Pointer command, argument given as bytes of the right length.
    Bytes(&'b mut &'a mut [u8]),
    /// Pointer command, argument given as a user address.
    Address(u64),
}

/// Sorts `arg` by the kind of `request` (see the module docs), checking `Bytes` lengths. An ACRN
/// ioctl is sorted by the one ioctl table ([`abi::IOCTL_TABLE`]); any other number by its
/// `_IOC` bits, as the kernel's `copy_from_user` of `_IOC_SIZE` bytes would treat it.
pub fn classify<'a, 'b>(request: u32, arg: &'b mut IoctlArg<'a>) -> Result<ArgKind<'a, 'b>, Errno> {
    let size = match abi::ioctl_info(request).map(|i| i.arg) {
        Some(abi::IoctlArgKind::ByValue) => return Ok(ArgKind::Value(arg.as_raw())),
        Some(abi::IoctlArgKind::None) => return Ok(ArgKind::Nothing),
        Some(abi::IoctlArgKind::In(n) | abi::IoctlArgKind::InOut(n)) => n,
        None if abi::ioc_dir(request) == 0 || abi::ioc_size(request) == 0 => {
            return Ok(ArgKind::Nothing);
        }
        None => abi::ioc_size(request),
    };
    match arg {
        IoctlArg::None => Err(Errno::EFAULT),
        IoctlArg::Value(0) => Err(Errno::EFAULT),
        IoctlArg::Value(v) => Ok(ArgKind::Address(*v)),
        IoctlArg::Bytes(b) if b.len() != size => Err(Errno::EFAULT),
        IoctlArg::Bytes(b) => Ok(ArgKind::Bytes(b)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_checks_lengths() {
        let mut buf = [0u8; 47];
        let mut a = IoctlArg::Bytes(&mut buf);
        assert_eq!(classify(abi::CREATE_VM, &mut a).err(), Some(Errno::EFAULT));
        let mut buf = [0u8; 48];
        let mut a = IoctlArg::Bytes(&mut buf);
        assert!(matches!(
            classify(abi::CREATE_VM, &mut a),
            Ok(ArgKind::Bytes(_))
        ));
        let mut a = IoctlArg::None;
        assert_eq!(classify(abi::CREATE_VM, &mut a).err(), Some(Errno::EFAULT));
        let mut a = IoctlArg::None;
        assert!(matches!(
            classify(abi::START_VM, &mut a),
            Ok(ArgKind::Nothing)
        ));
        let mut a = IoctlArg::Value(0x1_0000_0005);
        assert!(matches!(
            classify(abi::SET_IRQLINE, &mut a),
            Ok(ArgKind::Value(0x1_0000_0005))
        ));
    }
}
