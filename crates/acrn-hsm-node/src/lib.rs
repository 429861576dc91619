//! Node.js binding of the acrn-hsm core (napi-rs v3).
//!
//! A thin layer: it converts between JavaScript values and the core's types and knows no ACRN
//! semantics of its own. Errors cross the boundary as data: the JavaScript error's `code` (and,
//! from tasks, `errno`) is set in Rust ([`errors`]); the façade only wraps it.

// napi's JS value types (Uint8Array, BigInt...) do not implement Debug, so neither can the
// objects and classes made of them.
#![allow(missing_debug_implementations)]

mod bench;
mod client;
mod decode;
mod demo;
pub mod errors;
mod hsm;
mod lane;
mod memory;
mod pc;
mod replay;
mod run;
mod trace;

pub use bench::*;
pub use client::*;
pub use decode::*;
pub use demo::*;
pub use hsm::*;
pub use lane::*;
pub use memory::*;
pub use pc::*;
pub use replay::*;
pub use run::*;
pub use trace::*;
