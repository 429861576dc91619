//! `acrn-hsm-tools`: the applications built on the library crates: the demo
//! ([`demo::run`]), trace replay ([`replay::replay_trace`]) and the benchmark drivers
//! ([`mod@bench`]). The CLI reaches them through the bindings; no library crate knows them.

#![cfg(target_os = "linux")]
#![warn(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod bench;
pub mod boot_disk;
pub mod demo;
pub mod export;
pub mod guest_pio;
pub mod replay;
pub mod run;
pub mod virtio_blk_bench;
