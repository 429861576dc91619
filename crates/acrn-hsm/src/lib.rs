//! `acrn-hsm`: the ACRN Hypervisor Service Module (`/dev/acrn_hsm`), real and emulated, behind
//! one interface.
//!
//! * [`HsmBackend`]: the raw interface, `ioctl(request, arg) -> Result<i64, Errno>`, implemented
//!   by [`sys::HsmDevice`] (the real device) and the emulator's `EmulatedHsm` (`acrn-hsm-emulator`).
//! * [`Hsm`] / [`Vm`]: typed methods for every ioctl, built on the raw one (kvm-ioctls style).
//! * [`UserPages`] / [`alloc_page`]: page-aligned memory owned by the library, whose addresses
//!   a backend resolves as the kernel would (anything else is `EFAULT`).
//! * [`client`]: the ioreq client (the lock-free slot scan, dispatch, NOTIFY), [`devices`] served
//!   by it, and the [`trace`] recorder.
//!
//! This crate knows no backend but the real device: the emulator (`acrn-hsm-emulator`) implements
//! [`HsmBackend`] on top of it, and applications (`acrn-hsm-tools`, the bindings) sit above both.
//!
//! ```no_run
//! use acrn_hsm::{Hsm, VmConfig};
//! let hsm = Hsm::open("/dev/acrn_hsm")?;
//! let vm = hsm.create_vm(&VmConfig { vcpu_num: 1, ..Default::default() })?;
//! vm.create_ioreq_client()?;
//! vm.start()?;
//! vm.pause()?;
//! vm.destroy()?;
//! # Ok::<(), acrn_hsm::Error>(())
//! ```

#![cfg(target_os = "linux")]
#![warn(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

use acrn_uapi::wire as abi;
pub mod backend;
pub mod client;
pub mod devices;
pub mod errno;
pub mod eventfd;
pub mod guest_memory;
pub mod loader;
pub mod memory;
pub mod pc;
pub mod sys;
pub mod trace;
mod vm;

pub use abi::{
    DM_OWNED_GUEST_FLAG_MASK, GUEST_FLAG_IO_COMPLETION_POLLING, GUEST_FLAG_LAPIC_PASSTHROUGH,
    GUEST_FLAG_RT, GUEST_FLAG_SECURE_WORLD_ENABLED,
};
pub use backend::{HsmBackend, IoctlArg};
pub use client::{
    ClientConfig, ClientHandle, ClientStats, Dispatcher, IoDevice, IoreqClient, PciDevice, RunExit,
    VmAction, VmControl, WakeMode, reset_vm_like_dm,
};
pub use errno::Errno;
pub use eventfd::EventFd;
pub use guest_memory::{GuestMemory, RangeError};
pub use memory::{Alias, PAGE_SIZE, UserPages, alloc_page};
pub use vm::{
    Error, Hsm, IoEventFd, IrqFd, MemMap, MmioDev, MmioRes, PciDev, PmState, PtdevIrq, Result,
    VDev, VcpuRegs, Vm, VmConfig,
};
