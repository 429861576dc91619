//! The atomics the slot protocol uses, behind one facade: a later `loom` model check swaps this
//! module (e.g. `#[cfg(loom)] pub(crate) use loom::sync::atomic::...`) without touching the
//! protocol code in `emulator::slot`, `emulator::hsm` and `emulator::guest`.

pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};
