//! virtio 1.x devices over the modern PCI transport, written from the virtio 1.x specification.
//!
//! * [`queue`]: the split virtqueue (descriptor chains, indirect tables, used ring, event index
//!   suppression), device side, through [`GuestMemory`](crate::guest_memory::GuestMemory) only, with a malicious driver in mind.
//! * [`VirtioPci`]: the modern virtio-pci transport (vendor 0x1af4, device 0x1040 + type, the
//!   vendor-specific capability list: common, notify, ISR, device configuration and PCI
//!   configuration access; MSI-X) in front of any [`VirtioDevice`].
//! * [`VirtioBlk`]: a block device backed by a file; [`VirtioRng`]: an entropy source.
//!
//! * [`DeferredVirtio`]: a device whose requests are served elsewhere (a TypeScript device): the
//!   transport queues its chains ([`VirtioPci::take_deferred`]) and the server completes them
//!   later, in any order ([`VirtioPci::complete`]).
//! * [`QueueNotifier`]: queue notifications through IOEVENTFD (the HSM completes the notify
//!   write itself) and a worker thread, instead of an I/O request per notification.
//!
//! A device that meets a broken ring sets `DEVICE_NEEDS_RESET` in the device status, raises a
//! configuration-change interrupt and touches the queues no more until the driver resets it.

mod blk;
mod deferred;
mod device;
mod ioeventfd;
mod pci;
pub mod queue;
mod rng;

pub use blk::VirtioBlk;
pub use deferred::DeferredVirtio;
pub use device::*;
pub use ioeventfd::{NotifierStats, QueueNotifier};
pub use pci::{
    BAR_SIZE, CAP_COMMON, CAP_DEVICE, CAP_ISR, CAP_NOTIFY, CAP_PCI_CFG, CompleteError,
    DEVICE_CFG_OFFSET, DeferredChain, ISR_OFFSET, MSIX_PBA_OFFSET, MSIX_TABLE_OFFSET, MSIX_VECTORS,
    NOTIFY_OFF_MULTIPLIER, NOTIFY_OFFSET, NotifyHook, VIRTIO_BAR, VirtioBar, VirtioPci,
    VirtioStats,
};
pub use queue::{DescChain, Queue, QueueError};
pub use rng::VirtioRng;
