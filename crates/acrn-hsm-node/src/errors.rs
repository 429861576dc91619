//! How errors cross to JavaScript: as data, set here. Every binding function fails with a
//! `CodedError`, a napi `Error` whose status is the stable code, which becomes the JavaScript
//! error's `code` (`'EINVAL'`, `'ERR_UNKNOWN_TYPE'`); the message is plain text. Tasks on the
//! libuv pool (`Failure`) reject with an `Error` built here with `code` and, for errnos,
//! `errno`. The façade (`ts/errors.ts`) only wraps them into `AcrnHsmError`, taking `errno` of a
//! synchronous error from [`errno_table`]: nothing is parsed out of a message.

use acrn_hsm::Errno;
use napi::Env;
use napi::bindgen_prelude::{JsObjectValue, ToNapiValue};
use napi_derive::napi;

/// The error of every binding function: its status is the JavaScript `code`.
pub(crate) type CodedError = napi::Error<String>;
/// The result of every binding function.
pub(crate) type Result<T> = napi::Result<T, String>;

/// The code of an errno (`"EINVAL"`; `"EUNKNOWN"` for a number the core does not name).
fn errno_code(errno: Errno) -> &'static str {
    errno.known_name().unwrap_or("EUNKNOWN")
}

/// An error with a stable code (`ERR_*`).
pub(crate) fn coded_error(code: &str, message: &str) -> CodedError {
    napi::Error::new(code.to_owned(), message)
}

/// A failed ioctl or guest operation: the errno's name as the code.
pub(crate) fn errno_error(op: &str, errno: Errno) -> CodedError {
    let text = match errno.known_name() {
        Some(_) => format!("{op}: {errno}"),
        None => format!("{op}: {errno} (errno {})", errno.0),
    };
    coded_error(errno_code(errno), &text)
}

/// A failed call of the typed API.
pub(crate) fn hsm_error(err: acrn_hsm::Error) -> CodedError {
    errno_error(err.op, err.errno)
}

/// Why a task on the libuv pool failed, kept until it rejects on the JS thread.
#[derive(Debug, Clone, Default)]
pub(crate) struct Failure(Option<(String, String, Option<i32>)>);

impl Failure {
    /// Keeps `r`'s error (if any) for [`reject`](Self::reject); napi gets a placeholder.
    pub(crate) fn keep<T>(&mut self, r: Result<T>) -> napi::Result<T> {
        r.map_err(|e| {
            let errno = Errno::from_name(&e.status).map(|n| n.0);
            self.0 = Some((e.status.clone(), e.reason.clone(), errno));
            napi::Error::from_reason(e.reason.clone())
        })
    }

    /// The rejection: an `Error` with `code` (and `errno`) set, or `err` as napi made it.
    pub(crate) fn reject<T>(&mut self, env: &Env, err: napi::Error) -> napi::Result<T> {
        let Some((code, message, errno)) = self.0.take() else {
            return Err(err);
        };
        let mut obj = env.create_error(napi::Error::from_reason(message))?;
        obj.set_named_property("code", code)?;
        if let Some(n) = errno {
            obj.set_named_property("errno", n)?;
        }
        Err(napi::Error::from(obj.into_unknown(env)?))
    }
}

/// One errno the core names.
#[napi(object)]
#[derive(Debug)]
pub struct ErrnoEntry {
    /// `"EINVAL"`.
    pub name: String,
    /// 22.
    pub errno: i32,
}

/// Every errno the core names: the façade gives a synchronous error with such a `code` its
/// `errno` from this table.
#[napi]
pub fn errno_table() -> Vec<ErrnoEntry> {
    Errno::ALL
        .iter()
        .map(|e| ErrnoEntry {
            name: e.name().to_owned(),
            errno: e.0,
        })
        .collect()
}
