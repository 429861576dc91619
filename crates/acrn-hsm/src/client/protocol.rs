//! The client's half of the slot protocol, generic over the memory it runs on, so that the code
//! the real client executes is the code the loom model checks (`tests/client_loom.rs`).
//!
//! acrn-semantics.md §4.7, step by step:
//!
//! 1. [`claim`] loads `processed` with **acquire** ordering before anything else of the slot and
//!    gives up unless it is PROCESSING; only then does it read `kernel_handled` (a nonzero value
//!    means the slot belongs to an in-kernel client: skipped), then `type` (HSM may have rewritten
//!    PORTIO into PCICFG), direction, address, size, and the value of writes. Every field is read
//!    through an atomic (relaxed: the acquire load orders them), never through a reference to the
//!    slot.
//! 2. [`respond`] writes only `reqs.*.value`, and only for reads (u32 for PIO and PCICFG, u64 for
//!    MMIO, at +88), consuming nothing: the [`Claim`] is still needed for NOTIFY.
//! 3. The NOTIFY itself is the caller's (an ioctl on the real client, the HSM's release store in
//!    the model); it takes the [`Claim`] by value, so each claimed request is notified at most once
//!    and a slot that was never claimed cannot be notified.

use std::sync::atomic::Ordering;

use acrn_uapi::bindings::{
    ACRN_IOREQ_DIR_READ, ACRN_IOREQ_DIR_WRITE, ACRN_IOREQ_STATE_PROCESSING, ACRN_IOREQ_TYPE_MMIO,
    ACRN_IOREQ_TYPE_PCICFG, ACRN_IOREQ_TYPE_PORTIO,
};
use acrn_uapi::ioreq::{
    SLOT_OFFSET_ADDRESS, SLOT_OFFSET_DIRECTION, SLOT_OFFSET_KERNEL_HANDLED, SLOT_OFFSET_PCI_BUS,
    SLOT_OFFSET_PCI_DEV, SLOT_OFFSET_PCI_FUNC, SLOT_OFFSET_PCI_REG, SLOT_OFFSET_PROCESSED,
    SLOT_OFFSET_SIZE, SLOT_OFFSET_TYPE, SLOT_OFFSET_VALUE,
};

/// Memory holding ioreq slots, accessed only through atomic loads and stores of naturally aligned
/// 32- and 64-bit words. `slot` is the vCPU index, `offset` a `SLOT_OFFSET_*` inside the slot.
///
/// Implemented by the live ioreq page ([`PageSlots`](super::PageSlots)) and, in the loom model,
/// by a slot made of loom atomics.
pub trait SlotMemory {
    /// Atomic 32-bit load of the word at `offset` of slot `slot`.
    fn load_u32(&self, slot: usize, offset: usize, order: Ordering) -> u32;
    /// Atomic 64-bit load.
    fn load_u64(&self, slot: usize, offset: usize, order: Ordering) -> u64;
    /// Atomic 32-bit store.
    fn store_u32(&self, slot: usize, offset: usize, value: u32, order: Ordering);
    /// Atomic 64-bit store.
    fn store_u64(&self, slot: usize, offset: usize, value: u64, order: Ordering);
}

/// The address space of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Port I/O (`ACRN_IOREQ_TYPE_PORTIO`).
    Pio,
    /// Memory-mapped I/O (`ACRN_IOREQ_TYPE_MMIO`).
    Mmio,
    /// PCI configuration space (`ACRN_IOREQ_TYPE_PCICFG`, after HSM's cf8/cfc rewrite).
    PciCfg,
    /// Anything else found in `type` (malformed).
    Unknown(u32),
}

impl Kind {
    fn from_raw(ty: u32) -> Kind {
        match ty {
            ACRN_IOREQ_TYPE_PORTIO => Kind::Pio,
            ACRN_IOREQ_TYPE_MMIO => Kind::Mmio,
            ACRN_IOREQ_TYPE_PCICFG => Kind::PciCfg,
            other => Kind::Unknown(other),
        }
    }
}

/// A PCI function address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Bdf {
    /// Bus (0..=255).
    pub bus: u8,
    /// Device (0..=31).
    pub dev: u8,
    /// Function (0..=7).
    pub func: u8,
}

impl Bdf {
    /// `bus:dev.func`; `dev` and `func` are masked to 5 and 3 bits.
    pub const fn new(bus: u8, dev: u8, func: u8) -> Bdf {
        Bdf {
            bus,
            dev: dev & 0x1f,
            func: func & 7,
        }
    }
}

impl std::fmt::Display for Bdf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:02x}:{:02x}.{}", self.bus, self.dev, self.func)
    }
}

/// One request as read from a claimed slot (raw: not validated; see
/// [`Dispatcher::dispatch`](super::Dispatcher::dispatch)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// The vCPU (slot index).
    pub vcpu: u16,
    /// The address space.
    pub kind: Kind,
    /// `true` for reads (`direction == ACRN_IOREQ_DIR_READ`), as the DM tests it.
    pub is_read: bool,
    /// The raw `direction` word.
    pub direction: u32,
    /// PIO port or MMIO guest-physical address (0 for PCICFG).
    pub address: u64,
    /// `size` as found (valid: 1, 2, 4, 8; PIO and PCICFG: 1, 2, 4).
    pub size: u64,
    /// For writes: the value written (u32 for PIO/PCICFG, u64 for MMIO). 0 for reads.
    pub value: u64,
    /// PCICFG: the function.
    pub bdf: Bdf,
    /// PCICFG: the register offset (`(a & 0xfc) + ((a >> 16) & 0xf00) + (port - 0xcfc)`).
    pub reg: u32,
    /// PCICFG: raw bus/dev/func words (for validation: they are u32 in the slot).
    pub raw_bdf: (u32, u32, u32),
}

/// A request this client took from a PROCESSING slot and still owes a NOTIFY for. Not `Clone`,
/// not constructible outside this module: only [`claim`] makes one, and NOTIFY consumes it.
/// Dropping it withholds the NOTIFY (as the device model does for the request that triggers a
/// reset); the slot then stays PROCESSING until CLEAR_VM_IOREQ completes it.
///
/// So a NOTIFY for a slot the client did not claim cannot be written with the client API. The
/// legitimate path compiles:
///
/// ```
/// use acrn_hsm::client::{PageSlots, protocol};
/// fn serve(mem: &PageSlots, slot: usize) -> Option<u16> {
///     let claim = protocol::claim(mem, slot)?; // only a PROCESSING slot gives a claim
///     protocol::respond(mem, &claim, 0xff);
///     Some(protocol::release_for_notify(claim)) // the vCPU to NOTIFY, once
/// }
/// ```
///
/// A claim cannot be made up for another slot (its field is private)...
///
/// ```compile_fail
/// use acrn_hsm::client::{Claim, Request, protocol};
/// fn forge(request: Request) -> u16 {
///     protocol::release_for_notify(Claim { request })
/// }
/// ```
///
/// ...nor copied, nor released twice:
///
/// ```compile_fail
/// use acrn_hsm::client::{PageSlots, protocol};
/// fn twice(mem: &PageSlots) -> Option<(u16, u16)> {
///     let claim = protocol::claim(mem, 0)?;
///     let copy = claim.clone();
///     Some((protocol::release_for_notify(claim), protocol::release_for_notify(copy)))
/// }
/// ```
///
/// ```compile_fail
/// use acrn_hsm::client::{PageSlots, protocol};
/// fn twice(mem: &PageSlots) -> Option<(u16, u16)> {
///     let claim = protocol::claim(mem, 0)?;
///     let first = protocol::release_for_notify(claim);
///     Some((first, protocol::release_for_notify(claim)))
/// }
/// ```
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a claimed request must be NOTIFYed (or deliberately withheld)"]
pub struct Claim {
    request: Request,
}

impl Claim {
    /// The request.
    pub fn request(&self) -> &Request {
        &self.request
    }
    /// The vCPU (slot index) to NOTIFY.
    pub fn vcpu(&self) -> u16 {
        self.request.vcpu
    }
}

/// Claims slot `slot` if it holds a request for this (the default, userspace) client:
/// `processed` acquire-loaded first and equal to PROCESSING, then `kernel_handled == 0`; then the
/// payload. `None` for any other slot: nothing but `processed` (and, for PROCESSING slots,
/// `kernel_handled`) was read.
#[inline]
pub fn claim<M: SlotMemory + ?Sized>(mem: &M, slot: usize) -> Option<Claim> {
    if mem.load_u32(slot, SLOT_OFFSET_PROCESSED, Ordering::Acquire) != ACRN_IOREQ_STATE_PROCESSING {
        return None;
    }
    if mem.load_u32(slot, SLOT_OFFSET_KERNEL_HANDLED, Ordering::Relaxed) != 0 {
        return None;
    }
    let kind = Kind::from_raw(mem.load_u32(slot, SLOT_OFFSET_TYPE, Ordering::Relaxed));
    let direction = mem.load_u32(slot, SLOT_OFFSET_DIRECTION, Ordering::Relaxed);
    let is_read = direction == ACRN_IOREQ_DIR_READ;
    let size = mem.load_u64(slot, SLOT_OFFSET_SIZE, Ordering::Relaxed);
    let mut request = Request {
        vcpu: slot as u16,
        kind,
        is_read,
        direction,
        address: 0,
        size,
        value: 0,
        bdf: Bdf::default(),
        reg: 0,
        raw_bdf: (0, 0, 0),
    };
    match kind {
        Kind::PciCfg => {
            let bus = mem.load_u32(slot, SLOT_OFFSET_PCI_BUS, Ordering::Relaxed);
            let dev = mem.load_u32(slot, SLOT_OFFSET_PCI_DEV, Ordering::Relaxed);
            let func = mem.load_u32(slot, SLOT_OFFSET_PCI_FUNC, Ordering::Relaxed);
            request.raw_bdf = (bus, dev, func);
            request.bdf = Bdf::new(bus as u8, dev as u8, func as u8);
            request.reg = mem.load_u32(slot, SLOT_OFFSET_PCI_REG, Ordering::Relaxed);
        }
        _ => request.address = mem.load_u64(slot, SLOT_OFFSET_ADDRESS, Ordering::Relaxed),
    }
    if direction == ACRN_IOREQ_DIR_WRITE {
        request.value = match kind {
            Kind::Mmio => mem.load_u64(slot, SLOT_OFFSET_VALUE, Ordering::Relaxed),
            _ => u64::from(mem.load_u32(slot, SLOT_OFFSET_VALUE, Ordering::Relaxed)),
        };
    }
    Some(Claim { request })
}

/// Writes the response of a claimed **read** into the slot: `mmio_request.value` (u64) for MMIO,
/// `pio_request.value` / `pci_request.value` (u32, truncated) for PIO and PCICFG. Does nothing for
/// writes. The store is
/// relaxed: NOTIFY's release store of COMPLETE publishes it. For a read of an unknown type the
/// whole 8-byte value field is written (the dispatcher answers those with all ones).
#[inline]
pub fn respond<M: SlotMemory + ?Sized>(mem: &M, claim: &Claim, value: u64) {
    let r = &claim.request;
    if !r.is_read {
        return;
    }
    let slot = usize::from(r.vcpu);
    match r.kind {
        Kind::Mmio => mem.store_u64(slot, SLOT_OFFSET_VALUE, value, Ordering::Relaxed),
        Kind::Pio | Kind::PciCfg => {
            mem.store_u32(slot, SLOT_OFFSET_VALUE, value as u32, Ordering::Relaxed)
        }
        // Malformed: the value field is at +88 in every payload form; the u64 store answers all
        // ones whatever the hypervisor takes the request for.
        Kind::Unknown(_) => mem.store_u64(slot, SLOT_OFFSET_VALUE, value, Ordering::Relaxed),
    }
}

/// Hands the claim over for NOTIFY: returns the vCPU to notify. The claim is consumed, so this
/// is the one way to learn the vCPU number *and* give up the right to notify it again.
#[inline]
pub fn release_for_notify(claim: Claim) -> u16 {
    claim.request.vcpu
}
