//! Node.js binding of the acrn-hsm core (napi-rs v3).
//!
//! A thin layer: it converts between JavaScript values and the core's types and knows no ACRN
//! semantics of its own. Errors cross the boundary as `Error`s whose message starts with the
//! stable code in brackets (`[ERR_UNKNOWN_TYPE] ...`); the TypeScript façade (`ts/errors.ts`)
//! turns that into `error.code`.

// napi's JS value types (Uint8Array, BigInt...) do not implement Debug, so neither can the
// objects and classes made of them.
#![allow(missing_debug_implementations)]

mod bench;
mod client;
mod decode;
mod demo;
mod hsm;
mod replay;
mod run;
mod trace;

pub use bench::*;
pub use client::*;
pub use decode::*;
pub use demo::*;
pub use hsm::*;
pub use replay::*;
pub use run::*;
pub use trace::*;
