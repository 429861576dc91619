//! The userspace ABI of the ACRN Hypervisor Service Module (`/dev/acrn_hsm`), byte-exact.
//!
//! `#![no_std]`, no dependencies, no target-specific code: it builds for Linux hosts and for
//! `wasm32-unknown-unknown` alike.
//!
//! * [`bindings`]: every struct, union and constant of `<linux/acrn.h>`, named as in C, with
//!   compile-time checks of every size, alignment and offset.
//! * [`ioctl`]: the `_IO*` encoders and every `ACRN_IOCTL_*` request number.
//! * [`layout`]: the same ABI as data tables (`STRUCTS`, `IOCTLS`, `CONSTANTS`) and as JSON,
//!   checked against gcc by `tests/conformance.rs` and `test/conformance/abi.c`.
//! * [`ioreq`]: safe, allocation-free decoding and encoding of I/O request slots and pages.
//!
//! The ABI is that of x86-64 Linux, the only platform ACRN runs on. The header exists in two
//! upstream forms (the first, Linux 5.12, and the current one); this crate follows the current
//! one, a superset of the first with identical layouts for what they share.

#![no_std]
#![warn(missing_docs)]

#[cfg(test)]
extern crate std;

pub mod bindings;
pub mod ioctl;
pub mod ioreq;
pub mod layout;
pub mod wire;

pub use ioreq::{
    DecodeError, Direction, EncodeError, FieldsError, IoPayload, IoRequest, IoRequestType,
    IoreqState, decode_io_request, decode_ioreq_page, encode_io_request,
};
