//! `acrn-hsm`: the ACRN Hypervisor Service Module (`/dev/acrn_hsm`), real and emulated, behind
//! one interface.
//!
//! * [`HsmBackend`]: the raw interface, `ioctl(request, arg) -> Result<i64, Errno>`, implemented
//!   by [`sys::HsmDevice`] (the real device) and [`emulator::EmulatedHsm`].
//! * [`Hsm`] / [`Vm`]: typed methods for every ioctl, built on the raw one (kvm-ioctls style).
//! * [`UserPages`] / [`alloc_page`]: page-aligned memory owned by the library, whose addresses
//!   the emulator resolves (anything else is `EFAULT`).
//! * [`emulator`]: the hypervisor + HSM emulator, and [`emulator::Guest`] running a
//!   [`Workload`] on emulated vCPUs.
//!
//! ```
//! use acrn_hsm::{Emulator, Hsm, VmConfig};
//! let emu = Emulator::new();
//! let hsm = Hsm::emulated(&emu);
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

mod abi;
pub mod backend;
pub mod client;
pub mod demo;
pub mod devices;
pub mod emulator;
pub mod errno;
pub mod loader;
pub mod memory;
pub mod run;
mod sync;
pub mod sys;
pub mod trace;
mod vm;
pub mod workload;

pub use abi::{
    DM_OWNED_GUEST_FLAG_MASK, GUEST_FLAG_IO_COMPLETION_POLLING, GUEST_FLAG_LAPIC_PASSTHROUGH,
    GUEST_FLAG_RT, GUEST_FLAG_SECURE_WORLD_ENABLED,
};
pub use backend::{HsmBackend, IoctlArg};
pub use client::{
    ClientConfig, ClientHandle, ClientStats, Dispatcher, IoDevice, IoreqClient, PciDevice, RunExit,
    VmAction, VmControl, WakeMode, reset_vm_like_dm,
};
pub use emulator::guest_types::{Fault, FaultKind, Mismatch, RunResult, StopReason, VcpuOutcome};
pub use emulator::{
    EmulatedHsm, Emulator, EmulatorConfig, Engine, Guest, GuestExit, GuestExitKind, GuestRun,
    InterruptEvent, KvmStats, VmInfo, VmState,
};
pub use errno::Errno;
pub use memory::{PAGE_SIZE, UserPages, alloc_page};
pub use vm::{Error, Hsm, IoEventFd, IrqFd, MemMap, Result, VcpuRegs, Vm, VmConfig};
pub use workload::{Access, Op, RandomRange, Space, Workload, WorkloadError};
