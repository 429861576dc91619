//! How errors cross to JavaScript: an `Error` whose message starts with the stable code in
//! brackets (`[ERR_UNKNOWN_TYPE] ...`, `[EINVAL] errno=22 ...`).

use acrn_hsm::Errno;

/// An error with a stable code (`ERR_*`).
pub(crate) fn coded_error(code: &str, message: &str) -> napi::Error {
    napi::Error::from_reason(format!("[{code}] {message}"))
}

/// A failed ioctl or guest operation: the errno's name as the code, and the errno.
pub(crate) fn errno_error(op: &str, errno: Errno) -> napi::Error {
    coded_error(errno.name(), &format!("errno={} {op}: {errno}", errno.0))
}

/// A failed call of the typed API.
pub(crate) fn hsm_error(err: acrn_hsm::Error) -> napi::Error {
    errno_error(err.op, err.errno)
}
