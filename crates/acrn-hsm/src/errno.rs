//! [`Errno`]: the error number an ioctl fails with.
//!
//! Every failure of the raw interface, on the real device and on the emulator alike, is an errno,
//! so that the two can be held against each other request by request.

use std::fmt;

/// A Linux error number (the positive value of `errno`).
///
/// The emulator returns exactly the errno the kernel driver would; the real-device backend returns
/// whatever the kernel returned.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(pub i32);

macro_rules! errnos {
    ($($name:ident = $value:expr, $text:expr;)*) => {
        impl Errno {
            $(
                #[doc = concat!("`", stringify!($name), "`: ", $text, ".")]
                pub const $name: Errno = Errno($value);
            )*

            /// Every errno this crate names, in numeric order.
            pub const ALL: &'static [Errno] = &[$(Errno::$name),*];

            /// The errno named `name` (`"EINVAL"`), if this crate names it.
            pub fn from_name(name: &str) -> Option<Errno> {
                match name {
                    $(stringify!($name) => Some(Errno::$name),)*
                    _ => None,
                }
            }

            /// The symbolic name (`"EINVAL"`), or `None` for a number this crate does not name.
            pub fn known_name(self) -> Option<&'static str> {
                match self.0 {
                    $($value => Some(stringify!($name)),)*
                    _ => None,
                }
            }

            /// The message `strerror` gives in the C library (`"Invalid argument"`).
            pub fn description(self) -> &'static str {
                match self.0 {
                    $($value => $text,)*
                    _ => "Unknown error",
                }
            }
        }
    };
}

errnos! {
    EPERM = 1, "Operation not permitted";
    ENOENT = 2, "No such file or directory";
    ESRCH = 3, "No such process";
    EINTR = 4, "Interrupted system call";
    EIO = 5, "Input/output error";
    ENXIO = 6, "No such device or address";
    EBADF = 9, "Bad file descriptor";
    EAGAIN = 11, "Resource temporarily unavailable";
    ENOMEM = 12, "Cannot allocate memory";
    EACCES = 13, "Permission denied";
    EFAULT = 14, "Bad address";
    EBUSY = 16, "Device or resource busy";
    EEXIST = 17, "File exists";
    ENODEV = 19, "No such device";
    ENOTDIR = 20, "Not a directory";
    EISDIR = 21, "Is a directory";
    EINVAL = 22, "Invalid argument";
    ENFILE = 23, "Too many open files in system";
    EMFILE = 24, "Too many open files";
    ENOTTY = 25, "Inappropriate ioctl for device";
    ETXTBSY = 26, "Text file busy";
    ENOSPC = 28, "No space left on device";
    EROFS = 30, "Read-only file system";
    ERANGE = 34, "Numerical result out of range";
    ENAMETOOLONG = 36, "File name too long";
    ENOSYS = 38, "Function not implemented";
    ELOOP = 40, "Too many levels of symbolic links";
    ETIMEDOUT = 110, "Connection timed out";
}

impl Errno {
    /// The raw positive number.
    pub fn raw(self) -> i32 {
        self.0
    }

    /// The symbolic name (`"EINVAL"`); `"E?"` for a number this crate does not name.
    pub fn name(self) -> &'static str {
        self.known_name().unwrap_or("E?")
    }

    /// The errno of the last failed system call on this thread.
    pub fn last() -> Errno {
        Errno(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    }

    /// Maps a hypervisor / kernel return value (`-errno`) to an `Errno`: `-1` is `EPERM`.
    pub fn from_negative(ret: i64) -> Errno {
        Errno(i32::try_from(-ret).unwrap_or(i32::MAX))
    }
}

impl fmt::Display for Errno {
    /// `EINVAL (22): Invalid argument`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.name(), self.0, self.description())
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Errno({}, {})", self.name(), self.0)
    }
}

impl std::error::Error for Errno {}

impl From<std::io::Error> for Errno {
    /// The OS error number; an error without one (not from a system call) becomes `EIO`.
    fn from(e: std::io::Error) -> Errno {
        e.raw_os_error().map(Errno).unwrap_or(Errno::EIO)
    }
}

impl From<Errno> for std::io::Error {
    fn from(e: Errno) -> std::io::Error {
        std::io::Error::from_raw_os_error(e.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_display() {
        assert_eq!(Errno::EINVAL.name(), "EINVAL");
        assert_eq!(Errno::EINVAL.raw(), libc::EINVAL);
        assert_eq!(Errno::ENOTTY.raw(), libc::ENOTTY);
        assert_eq!(Errno::EFAULT.raw(), libc::EFAULT);
        assert_eq!(Errno::ENODEV.raw(), libc::ENODEV);
        assert_eq!(Errno::EEXIST.raw(), libc::EEXIST);
        assert_eq!(Errno::ENOMEM.raw(), libc::ENOMEM);
        assert_eq!(Errno::EBUSY.raw(), libc::EBUSY);
        assert_eq!(Errno::EPERM.raw(), libc::EPERM);
        assert_eq!(Errno::EINVAL.to_string(), "EINVAL (22): Invalid argument");
        assert_eq!(Errno(4242).name(), "E?");
        assert_eq!(Errno::from_negative(-1), Errno::EPERM);
    }

    #[test]
    fn from_io_error() {
        let e = std::io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(Errno::from(e), Errno::ENOENT);
        let e = std::io::Error::other("x");
        assert_eq!(Errno::from(e), Errno::EIO);
        let back: std::io::Error = Errno::EBUSY.into();
        assert_eq!(back.raw_os_error(), Some(libc::EBUSY));
    }
}
