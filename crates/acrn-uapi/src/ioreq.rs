//! Safe, allocation-free decoding and encoding of I/O request slots and pages.
//!
//! A slot is the 256-byte [`acrn_io_request`]; the page is the 4096-byte
//! [`acrn_io_request_buffer`] of 16 slots, slot `i` belonging to vCPU `i`. This module works on
//! byte slices (a copy of a slot, or a snapshot of the page) and reads every field little-endian
//! at its offset, so it needs no `unsafe`, no alignment and no allocation, and gives the same
//! result on every host (including wasm32).
//!
//! It does **not** access live shared memory: a slot that the hypervisor may be writing must be
//! read with atomics at the `SLOT_OFFSET_*` offsets below (acquire load of `processed` first,
//! then the payload), and may then be copied and decoded here.
//!
//! # Decoding rules
//!
//! [`decode_io_request`] checks, in this order:
//!
//! 1. the buffer holds at least 256 bytes ([`DecodeError::ShortBuffer`]; only the first 256 are
//!    read);
//! 2. `processed` is a known state ([`DecodeError::UnknownState`]);
//! 3. `type` is a known request type ([`DecodeError::UnknownType`]), **in every state**: the
//!    hypervisor only ever writes PORTIO, MMIO or PCICFG there and a zeroed page reads as PORTIO,
//!    so an unknown type means the bytes are not an I/O request page;
//! 4. only if the state is not FREE: the access size is 1, 2, 4 or 8
//!    ([`DecodeError::InvalidSize`]; for port I/O too, at this layer), and `address + size - 1`
//!    does not overflow 64 bits ([`DecodeError::AddressOverflow`]; PIO and MMIO). A FREE slot
//!    holds a stale payload, which is decoded as found.
//!
//! Fields that carry no information are not decoded: `reserved0`, `reserved1`, the `reserved`
//! words of the payloads (after HSM rewrites a port access to 0xCFC-0xCFF into a PCICFG request,
//! `pci_request.reserved[1..=2]` still hold the old port), and the 4 bytes after a PIO `value`.
//! `direction` is [`Direction::Read`] if it is 0 and [`Direction::Write`] otherwise, as the
//! hypervisor and the ACRN device model test it (`direction == ACRN_IOREQ_DIR_READ`).
//! `completion_polling` and `kernel_handled` are true if nonzero.
//!
//! [`encode_io_request`] writes all 256 bytes: the fields above, and zero everywhere else. It
//! does not validate the payload, so tests can build malformed slots; for every request that
//! [`decode_io_request`] can return, `decode(encode(r)) == r`.

use core::fmt;
use core::mem::{offset_of, size_of};

use crate::bindings::{
    ACRN_IO_REQUEST_MAX, ACRN_IOREQ_DIR_READ, ACRN_IOREQ_DIR_WRITE, ACRN_IOREQ_STATE_COMPLETE,
    ACRN_IOREQ_STATE_FREE, ACRN_IOREQ_STATE_PENDING, ACRN_IOREQ_STATE_PROCESSING,
    ACRN_IOREQ_TYPE_MMIO, ACRN_IOREQ_TYPE_PCICFG, ACRN_IOREQ_TYPE_PORTIO, acrn_io_request,
    acrn_io_request_buffer, acrn_io_request_reqs, acrn_mmio_request, acrn_pci_request,
    acrn_pio_request,
};

// ---------------------------------------------------------------------------------------------
// Offsets
// ---------------------------------------------------------------------------------------------

/// Size of one slot (`sizeof(struct acrn_io_request)`, 256).
pub const SLOT_SIZE: usize = size_of::<acrn_io_request>();
/// Number of slots in the page (`ACRN_IO_REQUEST_MAX`, 16).
pub const SLOT_COUNT: usize = ACRN_IO_REQUEST_MAX;
/// Size of the page (`sizeof(struct acrn_io_request_buffer)`, 4096).
pub const PAGE_SIZE: usize = size_of::<acrn_io_request_buffer>();
/// Size of the `reqs` union (64).
pub const REQS_SIZE: usize = size_of::<acrn_io_request_reqs>();

/// Offset of `type` in a slot (0).
pub const SLOT_OFFSET_TYPE: usize = offset_of!(acrn_io_request, type_);
/// Offset of `completion_polling` in a slot (4).
pub const SLOT_OFFSET_COMPLETION_POLLING: usize = offset_of!(acrn_io_request, completion_polling);
/// Offset of the `reqs` union in a slot (64).
pub const SLOT_OFFSET_REQS: usize = offset_of!(acrn_io_request, reqs);
/// Offset of `kernel_handled` in a slot (132).
pub const SLOT_OFFSET_KERNEL_HANDLED: usize = offset_of!(acrn_io_request, kernel_handled);
/// Offset of `processed`, the slot state, in a slot (136).
pub const SLOT_OFFSET_PROCESSED: usize = offset_of!(acrn_io_request, processed);

/// Offset of `direction` (u32) in `reqs`, the same for every request type (0).
pub const REQ_OFFSET_DIRECTION: usize = offset_of!(acrn_pio_request, direction);
/// Offset of `address` (u64) in `reqs`, PIO and MMIO (8).
pub const REQ_OFFSET_ADDRESS: usize = offset_of!(acrn_pio_request, address);
/// Offset of `size` (u64) in `reqs`, the same for every request type (16).
pub const REQ_OFFSET_SIZE: usize = offset_of!(acrn_pio_request, size);
/// Offset of `value` in `reqs`, the same for every request type (24; u32 for PIO and PCICFG,
/// u64 for MMIO).
pub const REQ_OFFSET_VALUE: usize = offset_of!(acrn_pio_request, value);
/// Offset of `bus` (u32) in `reqs`, PCICFG (28).
pub const REQ_OFFSET_PCI_BUS: usize = offset_of!(acrn_pci_request, bus);
/// Offset of `dev` (u32) in `reqs`, PCICFG (32).
pub const REQ_OFFSET_PCI_DEV: usize = offset_of!(acrn_pci_request, dev);
/// Offset of `func` (u32) in `reqs`, PCICFG (36).
pub const REQ_OFFSET_PCI_FUNC: usize = offset_of!(acrn_pci_request, func);
/// Offset of `reg` (u32) in `reqs`, PCICFG (40).
pub const REQ_OFFSET_PCI_REG: usize = offset_of!(acrn_pci_request, reg);

/// Offset of `reqs.*.direction` in a slot (64).
pub const SLOT_OFFSET_DIRECTION: usize = SLOT_OFFSET_REQS + REQ_OFFSET_DIRECTION;
/// Offset of `reqs.{pio,mmio}_request.address` in a slot (72).
pub const SLOT_OFFSET_ADDRESS: usize = SLOT_OFFSET_REQS + REQ_OFFSET_ADDRESS;
/// Offset of `reqs.*.size` in a slot (80).
pub const SLOT_OFFSET_SIZE: usize = SLOT_OFFSET_REQS + REQ_OFFSET_SIZE;
/// Offset of `reqs.*.value` in a slot (88): the only bytes a client writes (for reads).
pub const SLOT_OFFSET_VALUE: usize = SLOT_OFFSET_REQS + REQ_OFFSET_VALUE;
/// Offset of `reqs.pci_request.bus` in a slot (92).
pub const SLOT_OFFSET_PCI_BUS: usize = SLOT_OFFSET_REQS + REQ_OFFSET_PCI_BUS;
/// Offset of `reqs.pci_request.dev` in a slot (96).
pub const SLOT_OFFSET_PCI_DEV: usize = SLOT_OFFSET_REQS + REQ_OFFSET_PCI_DEV;
/// Offset of `reqs.pci_request.func` in a slot (100).
pub const SLOT_OFFSET_PCI_FUNC: usize = SLOT_OFFSET_REQS + REQ_OFFSET_PCI_FUNC;
/// Offset of `reqs.pci_request.reg` in a slot (104).
pub const SLOT_OFFSET_PCI_REG: usize = SLOT_OFFSET_REQS + REQ_OFFSET_PCI_REG;

/// Offset of slot `vcpu` in the page.
pub const fn slot_offset(vcpu: usize) -> usize {
    vcpu * SLOT_SIZE
}

const _: () = {
    assert!(SLOT_SIZE == 256 && SLOT_COUNT == 16 && PAGE_SIZE == 4096 && REQS_SIZE == 64);
    assert!(SLOT_OFFSET_TYPE == 0);
    assert!(SLOT_OFFSET_COMPLETION_POLLING == 4);
    assert!(SLOT_OFFSET_REQS == 64);
    assert!(SLOT_OFFSET_DIRECTION == 64);
    assert!(SLOT_OFFSET_ADDRESS == 72);
    assert!(SLOT_OFFSET_SIZE == 80);
    assert!(SLOT_OFFSET_VALUE == 88);
    assert!(SLOT_OFFSET_PCI_BUS == 92);
    assert!(SLOT_OFFSET_PCI_DEV == 96);
    assert!(SLOT_OFFSET_PCI_FUNC == 100);
    assert!(SLOT_OFFSET_PCI_REG == 104);
    assert!(SLOT_OFFSET_KERNEL_HANDLED == 132);
    assert!(SLOT_OFFSET_PROCESSED == 136);
    // The three payloads share direction, size and value offsets; PIO and MMIO share address.
    assert!(offset_of!(acrn_mmio_request, direction) == REQ_OFFSET_DIRECTION);
    assert!(offset_of!(acrn_pci_request, direction) == REQ_OFFSET_DIRECTION);
    assert!(offset_of!(acrn_mmio_request, address) == REQ_OFFSET_ADDRESS);
    assert!(offset_of!(acrn_mmio_request, size) == REQ_OFFSET_SIZE);
    assert!(offset_of!(acrn_pci_request, size) == REQ_OFFSET_SIZE);
    assert!(offset_of!(acrn_mmio_request, value) == REQ_OFFSET_VALUE);
    assert!(offset_of!(acrn_pci_request, value) == REQ_OFFSET_VALUE);
    assert!(SLOT_OFFSET_REQS + REQS_SIZE <= SLOT_OFFSET_KERNEL_HANDLED);
    assert!(REQ_OFFSET_PCI_REG + 4 <= REQS_SIZE);
};

// ---------------------------------------------------------------------------------------------
// Enumerations
// ---------------------------------------------------------------------------------------------

/// The state of a slot (`processed`, `ACRN_IOREQ_STATE_*`).
///
/// `FREE → PENDING → PROCESSING → COMPLETE → FREE`; FREE and COMPLETE slots belong to the
/// hypervisor, PENDING and PROCESSING ones to HSM and userspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum IoreqState {
    /// `ACRN_IOREQ_STATE_PENDING` (0).
    Pending = ACRN_IOREQ_STATE_PENDING,
    /// `ACRN_IOREQ_STATE_COMPLETE` (1).
    Complete = ACRN_IOREQ_STATE_COMPLETE,
    /// `ACRN_IOREQ_STATE_PROCESSING` (2).
    Processing = ACRN_IOREQ_STATE_PROCESSING,
    /// `ACRN_IOREQ_STATE_FREE` (3).
    Free = ACRN_IOREQ_STATE_FREE,
}

impl IoreqState {
    /// The state with this raw value, if any.
    pub const fn from_raw(raw: u32) -> Option<Self> {
        match raw {
            ACRN_IOREQ_STATE_PENDING => Some(Self::Pending),
            ACRN_IOREQ_STATE_COMPLETE => Some(Self::Complete),
            ACRN_IOREQ_STATE_PROCESSING => Some(Self::Processing),
            ACRN_IOREQ_STATE_FREE => Some(Self::Free),
            _ => None,
        }
    }

    /// The raw value (`ACRN_IOREQ_STATE_*`).
    pub const fn raw(self) -> u32 {
        self as u32
    }

    /// The C name without prefix: `"PENDING"`, `"COMPLETE"`, `"PROCESSING"` or `"FREE"`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Complete => "COMPLETE",
            Self::Processing => "PROCESSING",
            Self::Free => "FREE",
        }
    }

    /// The lower-case name the JavaScript API uses (`"pending"`, ...).
    pub const fn label(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Complete => "complete",
            Self::Processing => "processing",
            Self::Free => "free",
        }
    }
}

impl TryFrom<u32> for IoreqState {
    type Error = DecodeError;

    fn try_from(raw: u32) -> Result<Self, DecodeError> {
        Self::from_raw(raw).ok_or(DecodeError::UnknownState(raw))
    }
}

impl From<IoreqState> for u32 {
    fn from(state: IoreqState) -> u32 {
        state.raw()
    }
}

impl fmt::Display for IoreqState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The direction of an access (`ACRN_IOREQ_DIR_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Direction {
    /// `ACRN_IOREQ_DIR_READ` (0): the guest reads; the handler supplies `value`.
    Read = ACRN_IOREQ_DIR_READ,
    /// `ACRN_IOREQ_DIR_WRITE` (1): the guest writes `value`.
    Write = ACRN_IOREQ_DIR_WRITE,
}

impl Direction {
    /// The direction with this raw value, if it is exactly 0 or 1. (The decoder is more lenient:
    /// see the module documentation.)
    pub const fn from_raw(raw: u32) -> Option<Self> {
        match raw {
            ACRN_IOREQ_DIR_READ => Some(Self::Read),
            ACRN_IOREQ_DIR_WRITE => Some(Self::Write),
            _ => None,
        }
    }

    /// The raw value (`ACRN_IOREQ_DIR_*`).
    pub const fn raw(self) -> u32 {
        self as u32
    }

    /// `"READ"` or `"WRITE"`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Read => "READ",
            Self::Write => "WRITE",
        }
    }

    /// The lower-case name the JavaScript API uses (`"read"`, `"write"`).
    pub const fn label(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
        }
    }

    /// As the hypervisor and the device model read the field: 0 is a read, anything else a
    /// write.
    const fn from_raw_lenient(raw: u32) -> Self {
        if raw == ACRN_IOREQ_DIR_READ {
            Self::Read
        } else {
            Self::Write
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The type of a request (`type`, `ACRN_IOREQ_TYPE_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum IoRequestType {
    /// `ACRN_IOREQ_TYPE_PORTIO` (0).
    PortIo = ACRN_IOREQ_TYPE_PORTIO,
    /// `ACRN_IOREQ_TYPE_MMIO` (1).
    Mmio = ACRN_IOREQ_TYPE_MMIO,
    /// `ACRN_IOREQ_TYPE_PCICFG` (2).
    PciCfg = ACRN_IOREQ_TYPE_PCICFG,
}

impl IoRequestType {
    /// The type with this raw value, if any.
    pub const fn from_raw(raw: u32) -> Option<Self> {
        match raw {
            ACRN_IOREQ_TYPE_PORTIO => Some(Self::PortIo),
            ACRN_IOREQ_TYPE_MMIO => Some(Self::Mmio),
            ACRN_IOREQ_TYPE_PCICFG => Some(Self::PciCfg),
            _ => None,
        }
    }

    /// The raw value (`ACRN_IOREQ_TYPE_*`).
    pub const fn raw(self) -> u32 {
        self as u32
    }

    /// The C name without prefix: `"PORTIO"`, `"MMIO"` or `"PCICFG"`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::PortIo => "PORTIO",
            Self::Mmio => "MMIO",
            Self::PciCfg => "PCICFG",
        }
    }

    /// The short name the JavaScript API uses (`"pio"`, `"mmio"`, `"pci"`).
    pub const fn label(self) -> &'static str {
        match self {
            Self::PortIo => "pio",
            Self::Mmio => "mmio",
            Self::PciCfg => "pci",
        }
    }
}

impl TryFrom<u32> for IoRequestType {
    type Error = DecodeError;

    fn try_from(raw: u32) -> Result<Self, DecodeError> {
        Self::from_raw(raw).ok_or(DecodeError::UnknownType(raw))
    }
}

impl From<IoRequestType> for u32 {
    fn from(ty: IoRequestType) -> u32 {
        ty.raw()
    }
}

impl fmt::Display for IoRequestType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

// ---------------------------------------------------------------------------------------------
// Decoded requests
// ---------------------------------------------------------------------------------------------

/// The payload of a request: the live member of the `reqs` union, selected by `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IoPayload {
    /// Port I/O (`ACRN_IOREQ_TYPE_PORTIO`, `reqs.pio_request`).
    Pio {
        /// Access direction.
        direction: Direction,
        /// I/O port (a `u64` in the ABI).
        address: u64,
        /// Access size in bytes.
        size: u64,
        /// Written value, or value returned to the guest on a read.
        value: u32,
    },
    /// Memory-mapped I/O (`ACRN_IOREQ_TYPE_MMIO`, `reqs.mmio_request`).
    Mmio {
        /// Access direction.
        direction: Direction,
        /// Guest physical address.
        address: u64,
        /// Access size in bytes.
        size: u64,
        /// Written value, or value returned to the guest on a read.
        value: u64,
    },
    /// PCI configuration space access (`ACRN_IOREQ_TYPE_PCICFG`, `reqs.pci_request`).
    PciCfg {
        /// Access direction.
        direction: Direction,
        /// Access size in bytes.
        size: u64,
        /// Written value, or value returned to the guest on a read.
        value: u32,
        /// Bus number.
        bus: u32,
        /// Device number.
        dev: u32,
        /// Function number.
        func: u32,
        /// Register offset in the configuration space.
        reg: u32,
    },
}

impl IoPayload {
    /// The request type of this payload.
    pub const fn request_type(&self) -> IoRequestType {
        match self {
            Self::Pio { .. } => IoRequestType::PortIo,
            Self::Mmio { .. } => IoRequestType::Mmio,
            Self::PciCfg { .. } => IoRequestType::PciCfg,
        }
    }

    /// The access direction.
    pub const fn direction(&self) -> Direction {
        match *self {
            Self::Pio { direction, .. }
            | Self::Mmio { direction, .. }
            | Self::PciCfg { direction, .. } => direction,
        }
    }

    /// The access size in bytes.
    pub const fn size(&self) -> u64 {
        match *self {
            Self::Pio { size, .. } | Self::Mmio { size, .. } | Self::PciCfg { size, .. } => size,
        }
    }

    /// The port (PIO) or guest physical address (MMIO); `None` for PCICFG.
    pub const fn address(&self) -> Option<u64> {
        match *self {
            Self::Pio { address, .. } | Self::Mmio { address, .. } => Some(address),
            Self::PciCfg { .. } => None,
        }
    }

    /// The value, widened to `u64`.
    pub const fn value(&self) -> u64 {
        match *self {
            Self::Pio { value, .. } | Self::PciCfg { value, .. } => value as u64,
            Self::Mmio { value, .. } => value,
        }
    }

    /// Sets the value; PIO and PCICFG keep the low 32 bits, as the slot does.
    pub const fn set_value(&mut self, new: u64) {
        match self {
            Self::Pio { value, .. } | Self::PciCfg { value, .. } => *value = new as u32,
            Self::Mmio { value, .. } => *value = new,
        }
    }

    /// Checks what [`decode_io_request`] checks for a slot that is not FREE: the size is 1, 2,
    /// 4 or 8, and (PIO, MMIO) `address + size - 1` does not overflow.
    pub const fn validate(&self) -> Result<(), DecodeError> {
        let size = self.size();
        if !matches!(size, 1 | 2 | 4 | 8) {
            return Err(DecodeError::InvalidSize(size));
        }
        if let Some(address) = self.address() {
            if address.checked_add(size - 1).is_none() {
                return Err(DecodeError::AddressOverflow { address, size });
            }
        }
        Ok(())
    }

    /// The 64 bytes of the `reqs` union for this payload, reserved bytes zero.
    pub fn encode_reqs(&self) -> [u8; REQS_SIZE] {
        let mut reqs = [0u8; REQS_SIZE];
        put_u32(&mut reqs, REQ_OFFSET_DIRECTION, self.direction().raw());
        put_u64(&mut reqs, REQ_OFFSET_SIZE, self.size());
        match *self {
            Self::Pio { address, value, .. } => {
                put_u64(&mut reqs, REQ_OFFSET_ADDRESS, address);
                put_u32(&mut reqs, REQ_OFFSET_VALUE, value);
            }
            Self::Mmio { address, value, .. } => {
                put_u64(&mut reqs, REQ_OFFSET_ADDRESS, address);
                put_u64(&mut reqs, REQ_OFFSET_VALUE, value);
            }
            Self::PciCfg {
                value,
                bus,
                dev,
                func,
                reg,
                ..
            } => {
                put_u32(&mut reqs, REQ_OFFSET_VALUE, value);
                put_u32(&mut reqs, REQ_OFFSET_PCI_BUS, bus);
                put_u32(&mut reqs, REQ_OFFSET_PCI_DEV, dev);
                put_u32(&mut reqs, REQ_OFFSET_PCI_FUNC, func);
                put_u32(&mut reqs, REQ_OFFSET_PCI_REG, reg);
            }
        }
        reqs
    }
}

/// One decoded slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IoRequest {
    /// `processed`.
    pub state: IoreqState,
    /// `completion_polling != 0`: the hypervisor polls for COMPLETE (no notification hypercall).
    pub completion_polling: bool,
    /// `kernel_handled != 0`: an in-kernel client owns the request; userspace must skip it.
    pub kernel_handled: bool,
    /// `type` and the live member of `reqs`.
    pub payload: IoPayload,
}

impl IoRequest {
    /// The request type (`type`).
    pub const fn request_type(&self) -> IoRequestType {
        self.payload.request_type()
    }
}

// ---------------------------------------------------------------------------------------------
// Flat form for language bindings
// ---------------------------------------------------------------------------------------------

/// Number of words of the flat form of a request ([`IoRequest::to_fields`]).
pub const IO_REQUEST_FIELDS: usize = 12;

/// Index of each word of the flat form ([`IoRequest::to_fields`]).
pub mod field {
    /// `type` (`ACRN_IOREQ_TYPE_*`).
    pub const TYPE: usize = 0;
    /// `processed` (`ACRN_IOREQ_STATE_*`).
    pub const STATE: usize = 1;
    /// `direction` (`ACRN_IOREQ_DIR_*`).
    pub const DIRECTION: usize = 2;
    /// `address` (PIO, MMIO; 0 for PCICFG).
    pub const ADDRESS: usize = 3;
    /// `size`.
    pub const SIZE: usize = 4;
    /// `value` (a u32 for PIO and PCICFG).
    pub const VALUE: usize = 5;
    /// PCI `bus` (0 otherwise).
    pub const BUS: usize = 6;
    /// PCI `dev` (0 otherwise).
    pub const DEV: usize = 7;
    /// PCI `func` (0 otherwise).
    pub const FUNC: usize = 8;
    /// PCI `reg` (0 otherwise).
    pub const REG: usize = 9;
    /// `kernel_handled` (0 or 1).
    pub const KERNEL_HANDLED: usize = 10;
    /// `completion_polling` (0 or 1).
    pub const COMPLETION_POLLING: usize = 11;
}

impl IoRequest {
    /// The request as 12 `u64` words, the form the language bindings exchange (a
    /// `BigUint64Array` in JavaScript): `[type, state, direction, address, size, value, bus,
    /// dev, func, reg, kernel_handled, completion_polling]` (indices in [`field`]). Words that
    /// do not apply to the request type are 0.
    pub const fn to_fields(&self) -> [u64; IO_REQUEST_FIELDS] {
        let mut f = [0u64; IO_REQUEST_FIELDS];
        f[field::TYPE] = self.request_type().raw() as u64;
        f[field::STATE] = self.state.raw() as u64;
        f[field::DIRECTION] = self.payload.direction().raw() as u64;
        f[field::SIZE] = self.payload.size();
        f[field::VALUE] = self.payload.value();
        match self.payload {
            IoPayload::Pio { address, .. } | IoPayload::Mmio { address, .. } => {
                f[field::ADDRESS] = address;
            }
            IoPayload::PciCfg {
                bus,
                dev,
                func,
                reg,
                ..
            } => {
                f[field::BUS] = bus as u64;
                f[field::DEV] = dev as u64;
                f[field::FUNC] = func as u64;
                f[field::REG] = reg as u64;
            }
        }
        f[field::KERNEL_HANDLED] = self.kernel_handled as u64;
        f[field::COMPLETION_POLLING] = self.completion_polling as u64;
        f
    }

    /// The inverse of [`IoRequest::to_fields`].
    ///
    /// Checks that there are exactly 12 words, that type, state and direction are known, that
    /// the flags are 0 or 1, and that 32-bit members (PIO/PCICFG `value`, `bus`, `dev`, `func`,
    /// `reg`) fit. Words that do not apply to the type are ignored. The payload is **not**
    /// validated (size, overflow), like [`encode_io_request`]: use [`IoPayload::validate`].
    pub fn from_fields(fields: &[u64]) -> Result<IoRequest, FieldsError> {
        let Ok(f) = <&[u64; IO_REQUEST_FIELDS]>::try_from(fields) else {
            return Err(FieldsError::WrongLength {
                expected: IO_REQUEST_FIELDS,
                actual: fields.len(),
            });
        };
        let ty = u32::try_from(f[field::TYPE])
            .ok()
            .and_then(IoRequestType::from_raw)
            .ok_or(FieldsError::UnknownType(f[field::TYPE]))?;
        let state = u32::try_from(f[field::STATE])
            .ok()
            .and_then(IoreqState::from_raw)
            .ok_or(FieldsError::UnknownState(f[field::STATE]))?;
        let direction = u32::try_from(f[field::DIRECTION])
            .ok()
            .and_then(Direction::from_raw)
            .ok_or(FieldsError::OutOfRange {
                field: "direction",
                value: f[field::DIRECTION],
            })?;
        let word32 = |index: usize, name: &'static str| {
            u32::try_from(f[index]).map_err(|_| FieldsError::OutOfRange {
                field: name,
                value: f[index],
            })
        };
        let flag = |index: usize, name: &'static str| match f[index] {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(FieldsError::OutOfRange { field: name, value }),
        };
        let size = f[field::SIZE];
        let payload = match ty {
            IoRequestType::PortIo => IoPayload::Pio {
                direction,
                address: f[field::ADDRESS],
                size,
                value: word32(field::VALUE, "value")?,
            },
            IoRequestType::Mmio => IoPayload::Mmio {
                direction,
                address: f[field::ADDRESS],
                size,
                value: f[field::VALUE],
            },
            IoRequestType::PciCfg => IoPayload::PciCfg {
                direction,
                size,
                value: word32(field::VALUE, "value")?,
                bus: word32(field::BUS, "bus")?,
                dev: word32(field::DEV, "dev")?,
                func: word32(field::FUNC, "func")?,
                reg: word32(field::REG, "reg")?,
            },
        };
        Ok(IoRequest {
            state,
            completion_polling: flag(field::COMPLETION_POLLING, "completion_polling")?,
            kernel_handled: flag(field::KERNEL_HANDLED, "kernel_handled")?,
            payload,
        })
    }
}

/// Why [`IoRequest::from_fields`] rejected its words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldsError {
    /// Not exactly [`IO_REQUEST_FIELDS`] words (code `ERR_INVALID_ARG`).
    WrongLength {
        /// Words needed.
        expected: usize,
        /// Words given.
        actual: usize,
    },
    /// The type word is not PORTIO, MMIO or PCICFG (code `ERR_UNKNOWN_TYPE`).
    UnknownType(u64),
    /// The state word is not PENDING, COMPLETE, PROCESSING or FREE (code `ERR_UNKNOWN_STATE`).
    UnknownState(u64),
    /// A word is out of range for its member: direction not 0/1, flag not 0/1, or a 32-bit
    /// member above `u32::MAX` (code `ERR_INVALID_ARG`).
    OutOfRange {
        /// The member's name (`"direction"`, `"value"`, `"bus"`, `"kernel_handled"`, ...).
        field: &'static str,
        /// The rejected word.
        value: u64,
    },
}

impl FieldsError {
    /// A stable identifier: `"ERR_INVALID_ARG"`, `"ERR_UNKNOWN_TYPE"` or `"ERR_UNKNOWN_STATE"`.
    pub const fn code(&self) -> &'static str {
        match self {
            Self::WrongLength { .. } | Self::OutOfRange { .. } => "ERR_INVALID_ARG",
            Self::UnknownType(_) => "ERR_UNKNOWN_TYPE",
            Self::UnknownState(_) => "ERR_UNKNOWN_STATE",
        }
    }
}

impl fmt::Display for FieldsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::WrongLength { expected, actual } => {
                write!(f, "expected {expected} request words, got {actual}")
            }
            Self::UnknownType(ty) => {
                write!(
                    f,
                    "request type {ty} is not one of PORTIO(0), MMIO(1), PCICFG(2)"
                )
            }
            Self::UnknownState(state) => write!(
                f,
                "slot state {state} is not one of PENDING(0), COMPLETE(1), PROCESSING(2), FREE(3)"
            ),
            Self::OutOfRange {
                field: "direction",
                value,
            } => {
                write!(f, "direction {value} is not one of READ(0), WRITE(1)")
            }
            Self::OutOfRange {
                field: name @ ("kernel_handled" | "completion_polling"),
                value,
            } => {
                write!(f, "{name} {value} is not 0 or 1")
            }
            Self::OutOfRange { field: name, value } => {
                write!(f, "{name} {value} does not fit in 32 bits")
            }
        }
    }
}

impl core::error::Error for FieldsError {}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// Why a slot (or a page) could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DecodeError {
    /// The buffer is shorter than a slot (256 bytes) or a page (4096 bytes).
    ShortBuffer {
        /// Bytes needed.
        expected: usize,
        /// Bytes given.
        actual: usize,
    },
    /// `type` is not PORTIO, MMIO or PCICFG.
    UnknownType(u32),
    /// `processed` is not PENDING, COMPLETE, PROCESSING or FREE.
    UnknownState(u32),
    /// The access size is not 1, 2, 4 or 8 (slot not FREE).
    InvalidSize(u64),
    /// `address + size - 1` overflows 64 bits (slot not FREE).
    AddressOverflow {
        /// Start address of the access.
        address: u64,
        /// Size of the access.
        size: u64,
    },
}

impl DecodeError {
    /// A stable identifier: `"ERR_SHORT_BUFFER"`, `"ERR_UNKNOWN_TYPE"`, `"ERR_UNKNOWN_STATE"`,
    /// `"ERR_INVALID_SIZE"` or `"ERR_ADDRESS_OVERFLOW"`.
    pub const fn code(&self) -> &'static str {
        match self {
            Self::ShortBuffer { .. } => "ERR_SHORT_BUFFER",
            Self::UnknownType(_) => "ERR_UNKNOWN_TYPE",
            Self::UnknownState(_) => "ERR_UNKNOWN_STATE",
            Self::InvalidSize(_) => "ERR_INVALID_SIZE",
            Self::AddressOverflow { .. } => "ERR_ADDRESS_OVERFLOW",
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::ShortBuffer { expected, actual } => write!(
                f,
                "buffer too short: {actual} bytes, need at least {expected}"
            ),
            Self::UnknownType(ty) => write!(
                f,
                "request type {ty} is not one of PORTIO(0), MMIO(1), PCICFG(2)"
            ),
            Self::UnknownState(state) => write!(
                f,
                "slot state {state} is not one of PENDING(0), COMPLETE(1), PROCESSING(2), FREE(3)"
            ),
            Self::InvalidSize(size) => {
                write!(f, "access size {size} is not one of 1, 2, 4, 8")
            }
            Self::AddressOverflow { address, size } => write!(
                f,
                "access of {size} bytes at {address:#x} wraps past the end of the 64-bit address space"
            ),
        }
    }
}

impl core::error::Error for DecodeError {}

/// Why a request could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EncodeError {
    /// The output buffer is shorter than a slot (256 bytes).
    ShortBuffer {
        /// Bytes needed.
        expected: usize,
        /// Bytes given.
        actual: usize,
    },
}

impl EncodeError {
    /// A stable identifier: `"ERR_SHORT_BUFFER"`.
    pub const fn code(&self) -> &'static str {
        match self {
            Self::ShortBuffer { .. } => "ERR_SHORT_BUFFER",
        }
    }
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::ShortBuffer { expected, actual } => write!(
                f,
                "output buffer too short: {actual} bytes, need at least {expected}"
            ),
        }
    }
}

impl core::error::Error for EncodeError {}

// ---------------------------------------------------------------------------------------------
// Codec
// ---------------------------------------------------------------------------------------------

// The offsets passed to these helpers are constants of this module, each checked above to leave
// room for the field inside the array, so the indexing cannot fail.
fn get_u32<const N: usize>(b: &[u8; N], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

fn get_u64<const N: usize>(b: &[u8; N], off: usize) -> u64 {
    let lo = get_u32(b, off) as u64;
    let hi = get_u32(b, off + 4) as u64;
    lo | (hi << 32)
}

fn put_u32<const N: usize>(b: &mut [u8; N], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64<const N: usize>(b: &mut [u8; N], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

/// Reads the payload of type `ty` from the `reqs` union starting at `base` in `b`, unvalidated.
fn read_payload<const N: usize>(ty: IoRequestType, b: &[u8; N], base: usize) -> IoPayload {
    let direction = Direction::from_raw_lenient(get_u32(b, base + REQ_OFFSET_DIRECTION));
    let size = get_u64(b, base + REQ_OFFSET_SIZE);
    match ty {
        IoRequestType::PortIo => IoPayload::Pio {
            direction,
            address: get_u64(b, base + REQ_OFFSET_ADDRESS),
            size,
            value: get_u32(b, base + REQ_OFFSET_VALUE),
        },
        IoRequestType::Mmio => IoPayload::Mmio {
            direction,
            address: get_u64(b, base + REQ_OFFSET_ADDRESS),
            size,
            value: get_u64(b, base + REQ_OFFSET_VALUE),
        },
        IoRequestType::PciCfg => IoPayload::PciCfg {
            direction,
            size,
            value: get_u32(b, base + REQ_OFFSET_VALUE),
            bus: get_u32(b, base + REQ_OFFSET_PCI_BUS),
            dev: get_u32(b, base + REQ_OFFSET_PCI_DEV),
            func: get_u32(b, base + REQ_OFFSET_PCI_FUNC),
            reg: get_u32(b, base + REQ_OFFSET_PCI_REG),
        },
    }
}

/// Decodes and validates a payload from the raw `type` and the 64 bytes of `reqs` (for a
/// request that is not FREE, e.g. one just observed PROCESSING).
pub fn decode_payload(ty: u32, reqs: &[u8; REQS_SIZE]) -> Result<IoPayload, DecodeError> {
    let ty = IoRequestType::try_from(ty)?;
    let payload = read_payload(ty, reqs, 0);
    payload.validate()?;
    Ok(payload)
}

/// Decodes one slot; see the module documentation for the checks.
pub fn decode_slot(slot: &[u8; SLOT_SIZE]) -> Result<IoRequest, DecodeError> {
    let state = IoreqState::try_from(get_u32(slot, SLOT_OFFSET_PROCESSED))?;
    let ty = IoRequestType::try_from(get_u32(slot, SLOT_OFFSET_TYPE))?;
    let payload = read_payload(ty, slot, SLOT_OFFSET_REQS);
    if state != IoreqState::Free {
        payload.validate()?;
    }
    Ok(IoRequest {
        state,
        completion_polling: get_u32(slot, SLOT_OFFSET_COMPLETION_POLLING) != 0,
        kernel_handled: get_u32(slot, SLOT_OFFSET_KERNEL_HANDLED) != 0,
        payload,
    })
}

/// Decodes the slot in the first 256 bytes of `buf` (longer buffers are fine).
pub fn decode_io_request(buf: &[u8]) -> Result<IoRequest, DecodeError> {
    match buf.first_chunk::<SLOT_SIZE>() {
        Some(slot) => decode_slot(slot),
        None => Err(DecodeError::ShortBuffer {
            expected: SLOT_SIZE,
            actual: buf.len(),
        }),
    }
}

/// Decodes the 16 slots of the page in the first 4096 bytes of `buf`.
///
/// The outer error is only [`DecodeError::ShortBuffer`]; each slot is decoded independently,
/// so one bad slot does not hide the others. Slot `i` is vCPU `i`'s.
pub fn decode_ioreq_page(
    buf: &[u8],
) -> Result<[Result<IoRequest, DecodeError>; SLOT_COUNT], DecodeError> {
    let Some(page) = buf.first_chunk::<PAGE_SIZE>() else {
        return Err(DecodeError::ShortBuffer {
            expected: PAGE_SIZE,
            actual: buf.len(),
        });
    };
    Ok(core::array::from_fn(|i| {
        decode_io_request(&page[slot_offset(i)..])
    }))
}

/// Encodes `req` into a 256-byte slot: every field of [`IoRequest`] at its offset, zero
/// everywhere else (reserved fields, padding, unused payload bytes).
pub fn encode_slot(req: &IoRequest, slot: &mut [u8; SLOT_SIZE]) {
    slot.fill(0);
    put_u32(slot, SLOT_OFFSET_TYPE, req.request_type().raw());
    put_u32(
        slot,
        SLOT_OFFSET_COMPLETION_POLLING,
        u32::from(req.completion_polling),
    );
    slot[SLOT_OFFSET_REQS..SLOT_OFFSET_REQS + REQS_SIZE]
        .copy_from_slice(&req.payload.encode_reqs());
    put_u32(
        slot,
        SLOT_OFFSET_KERNEL_HANDLED,
        u32::from(req.kernel_handled),
    );
    put_u32(slot, SLOT_OFFSET_PROCESSED, req.state.raw());
}

/// Encodes `req` into the first 256 bytes of `buf` (see [`encode_slot`]); bytes after the first
/// 256 are left alone.
pub fn encode_io_request(req: &IoRequest, buf: &mut [u8]) -> Result<(), EncodeError> {
    let actual = buf.len();
    match buf.first_chunk_mut::<SLOT_SIZE>() {
        Some(slot) => {
            encode_slot(req, slot);
            Ok(())
        }
        None => Err(EncodeError::ShortBuffer {
            expected: SLOT_SIZE,
            actual,
        }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::string::ToString;

    /// xorshift64* (Vigna): a tiny deterministic PRNG for the property tests.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.0 = x;
            x.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn pick<T: Copy>(&mut self, items: &[T]) -> T {
            items[self.below(items.len() as u64) as usize]
        }
        fn bool(&mut self) -> bool {
            self.next() & 1 == 1
        }
        /// Random u64 with a bias towards edge values.
        fn edgy_u64(&mut self) -> u64 {
            match self.below(4) {
                0 => self.pick(&[0, 1, u64::MAX, u64::MAX - 7, 0xCF8, 0xFEE0_0000]),
                1 => self.below(0x1_0000),
                _ => self.next(),
            }
        }
    }

    const STATES: [IoreqState; 4] = [
        IoreqState::Pending,
        IoreqState::Complete,
        IoreqState::Processing,
        IoreqState::Free,
    ];
    const SIZES: [u64; 4] = [1, 2, 4, 8];

    fn random_valid(rng: &mut Rng) -> IoRequest {
        let direction = if rng.bool() {
            Direction::Read
        } else {
            Direction::Write
        };
        let size = rng.pick(&SIZES);
        let address = rng.edgy_u64().min(u64::MAX - (size - 1));
        let payload = match rng.below(3) {
            0 => IoPayload::Pio {
                direction,
                address,
                size,
                value: rng.next() as u32,
            },
            1 => IoPayload::Mmio {
                direction,
                address,
                size,
                value: rng.next(),
            },
            _ => IoPayload::PciCfg {
                direction,
                size,
                value: rng.next() as u32,
                bus: rng.next() as u32,
                dev: rng.below(32) as u32,
                func: rng.below(8) as u32,
                reg: rng.next() as u32,
            },
        };
        IoRequest {
            state: rng.pick(&STATES),
            completion_polling: rng.bool(),
            kernel_handled: rng.bool(),
            payload,
        }
    }

    fn encoded(req: &IoRequest) -> [u8; SLOT_SIZE] {
        let mut slot = [0u8; SLOT_SIZE];
        encode_slot(req, &mut slot);
        slot
    }

    #[test]
    fn round_trip_random_valid_requests() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut seen = [[false; 3]; 4];
        for _ in 0..20_000 {
            let req = random_valid(&mut rng);
            seen[req.state.raw() as usize][req.request_type().raw() as usize] = true;
            let mut buf = [0xA5u8; SLOT_SIZE + 3];
            encode_io_request(&req, &mut buf).unwrap();
            assert_eq!(&buf[SLOT_SIZE..], &[0xA5; 3], "wrote past the slot");
            assert_eq!(decode_io_request(&buf), Ok(req));
        }
        assert!(
            seen.iter().flatten().all(|s| *s),
            "generator missed a state/type pair"
        );
    }

    #[test]
    fn encode_zeroes_everything_else() {
        let mut rng = Rng(42);
        for _ in 0..2_000 {
            let req = random_valid(&mut rng);
            let mut slot = [0xFFu8; SLOT_SIZE];
            encode_slot(&req, &mut slot);
            let mut used = [false; SLOT_SIZE];
            let mut mark = |off: usize, len: usize| used[off..off + len].fill(true);
            mark(SLOT_OFFSET_TYPE, 4);
            mark(SLOT_OFFSET_COMPLETION_POLLING, 4);
            mark(SLOT_OFFSET_DIRECTION, 4);
            mark(SLOT_OFFSET_SIZE, 8);
            mark(SLOT_OFFSET_KERNEL_HANDLED, 4);
            mark(SLOT_OFFSET_PROCESSED, 4);
            match req.payload {
                IoPayload::Pio { .. } => {
                    mark(SLOT_OFFSET_ADDRESS, 8);
                    mark(SLOT_OFFSET_VALUE, 4);
                }
                IoPayload::Mmio { .. } => {
                    mark(SLOT_OFFSET_ADDRESS, 8);
                    mark(SLOT_OFFSET_VALUE, 8);
                }
                IoPayload::PciCfg { .. } => mark(SLOT_OFFSET_VALUE, 20),
            }
            for (i, b) in slot.iter().enumerate() {
                if !used[i] {
                    assert_eq!(*b, 0, "byte {i} not zeroed for {req:?}");
                }
            }
        }
    }

    #[test]
    fn decoding_random_bytes_never_panics() {
        let mut rng = Rng(7);
        let mut oks = 0;
        for round in 0..50_000 {
            let mut slot = [0u8; SLOT_SIZE];
            for chunk in slot.chunks_mut(8) {
                chunk.copy_from_slice(&rng.next().to_le_bytes());
            }
            // Half the time steer state/type/size into range to reach the deeper checks.
            if round % 2 == 0 {
                slot[SLOT_OFFSET_PROCESSED..][..4]
                    .copy_from_slice(&(rng.below(4) as u32).to_le_bytes());
                slot[SLOT_OFFSET_TYPE..][..4].copy_from_slice(&(rng.below(3) as u32).to_le_bytes());
                if rng.bool() {
                    slot[SLOT_OFFSET_SIZE..][..8].copy_from_slice(&rng.pick(&SIZES).to_le_bytes());
                }
            }
            let len = if round % 97 == 0 {
                rng.below(SLOT_SIZE as u64) as usize
            } else {
                SLOT_SIZE
            };
            match decode_io_request(&slot[..len]) {
                Ok(req) => {
                    oks += 1;
                    // Idempotent: the canonical encoding decodes to the same request.
                    assert_eq!(decode_slot(&encoded(&req)), Ok(req));
                    assert!(req.state == IoreqState::Free || req.payload.validate().is_ok());
                }
                Err(e) => assert!(!e.code().is_empty() && !e.to_string().is_empty()),
            }
        }
        assert!(oks > 1_000, "only {oks} random slots decoded");
    }

    /// A slot written byte by byte, independently of the encoder.
    #[test]
    fn decodes_hand_built_mmio_read() {
        let mut slot = [0u8; SLOT_SIZE];
        slot[0] = 1; // type = MMIO
        slot[4] = 1; // completion_polling
        slot[72..80].copy_from_slice(&0xFEE0_0030u64.to_le_bytes()); // address
        slot[80] = 4; // size
        slot[88..96].copy_from_slice(&0x1122_3344_5566_7788u64.to_le_bytes()); // value
        slot[136] = 2; // PROCESSING
        let req = decode_io_request(&slot).unwrap();
        assert_eq!(
            req,
            IoRequest {
                state: IoreqState::Processing,
                completion_polling: true,
                kernel_handled: false,
                payload: IoPayload::Mmio {
                    direction: Direction::Read,
                    address: 0xFEE0_0030,
                    size: 4,
                    value: 0x1122_3344_5566_7788,
                },
            }
        );
        assert_eq!(req.payload.address(), Some(0xFEE0_0030));
        assert_eq!(req.payload.value(), 0x1122_3344_5566_7788);
    }

    #[test]
    fn decodes_hand_built_pci_write_after_cf8_rewrite() {
        let mut slot = [0u8; SLOT_SIZE];
        slot[0] = 2; // PCICFG
        slot[64] = 1; // write
        slot[72..80].copy_from_slice(&0xCFEu64.to_le_bytes()); // reserved[1..2] = old port
        slot[80] = 2; // size
        slot[88..92].copy_from_slice(&0xBEEFu32.to_le_bytes());
        slot[92] = 3; // bus
        slot[96] = 31; // dev
        slot[100] = 7; // func
        slot[104..108].copy_from_slice(&0x106u32.to_le_bytes()); // reg
        slot[132] = 1; // kernel_handled
        slot[136] = 2;
        let req = decode_io_request(&slot).unwrap();
        assert_eq!(
            req.payload,
            IoPayload::PciCfg {
                direction: Direction::Write,
                size: 2,
                value: 0xBEEF,
                bus: 3,
                dev: 31,
                func: 7,
                reg: 0x106,
            }
        );
        assert!(req.kernel_handled);
        assert_eq!(req.payload.address(), None);
        // The stale port is not kept: re-encoding zeroes it.
        assert_eq!(&encoded(&req)[72..80], &[0; 8]);
    }

    #[test]
    fn errors_and_messages() {
        let short = decode_io_request(&[0u8; 255]);
        assert_eq!(
            short,
            Err(DecodeError::ShortBuffer {
                expected: 256,
                actual: 255
            })
        );
        assert_eq!(short.unwrap_err().code(), "ERR_SHORT_BUFFER");
        assert_eq!(
            short.unwrap_err().to_string(),
            "buffer too short: 255 bytes, need at least 256"
        );

        let mut slot = [0u8; SLOT_SIZE];
        slot[136] = 7;
        let e = decode_slot(&slot).unwrap_err();
        assert_eq!(e, DecodeError::UnknownState(7));
        assert_eq!(e.code(), "ERR_UNKNOWN_STATE");
        assert_eq!(
            e.to_string(),
            "slot state 7 is not one of PENDING(0), COMPLETE(1), PROCESSING(2), FREE(3)"
        );

        // State is checked before type.
        slot[0] = 3;
        assert_eq!(decode_slot(&slot), Err(DecodeError::UnknownState(7)));
        slot[136] = 0;
        let e = decode_slot(&slot).unwrap_err();
        assert_eq!(e, DecodeError::UnknownType(3));
        assert_eq!(e.code(), "ERR_UNKNOWN_TYPE");
        assert_eq!(
            e.to_string(),
            "request type 3 is not one of PORTIO(0), MMIO(1), PCICFG(2)"
        );
        // ... in every state, FREE included.
        slot[136] = 3;
        assert_eq!(decode_slot(&slot), Err(DecodeError::UnknownType(3)));

        // Size 0 (a zeroed PENDING slot) is invalid.
        let mut slot = [0u8; SLOT_SIZE];
        let e = decode_slot(&slot).unwrap_err();
        assert_eq!(e, DecodeError::InvalidSize(0));
        assert_eq!(e.code(), "ERR_INVALID_SIZE");
        assert_eq!(e.to_string(), "access size 0 is not one of 1, 2, 4, 8");
        slot[80] = 3;
        assert_eq!(decode_slot(&slot), Err(DecodeError::InvalidSize(3)));
        slot[80] = 16;
        assert_eq!(decode_slot(&slot), Err(DecodeError::InvalidSize(16)));
        slot[80] = 8;
        assert!(decode_slot(&slot).is_ok());
        // PCI requests are size-checked too.
        slot[0] = 2;
        slot[80] = 5;
        assert_eq!(decode_slot(&slot), Err(DecodeError::InvalidSize(5)));

        // Overflow: the last byte of the access must be addressable.
        let mut slot = [0u8; SLOT_SIZE];
        slot[0] = 1;
        slot[136] = 2;
        slot[72..80].copy_from_slice(&u64::MAX.to_le_bytes());
        slot[80] = 1;
        assert!(decode_slot(&slot).is_ok());
        slot[80] = 2;
        let e = decode_slot(&slot).unwrap_err();
        assert_eq!(
            e,
            DecodeError::AddressOverflow {
                address: u64::MAX,
                size: 2
            }
        );
        assert_eq!(e.code(), "ERR_ADDRESS_OVERFLOW");
        assert_eq!(
            e.to_string(),
            "access of 2 bytes at 0xffffffffffffffff wraps past the end of the 64-bit address space"
        );
        slot[72..80].copy_from_slice(&(u64::MAX - 7).to_le_bytes());
        slot[80] = 8;
        assert!(decode_slot(&slot).is_ok());
    }

    #[test]
    fn free_slot_payload_is_not_validated() {
        let mut slot = [0u8; SLOT_SIZE];
        slot[0] = 1;
        slot[72..80].copy_from_slice(&u64::MAX.to_le_bytes());
        slot[80] = 3;
        slot[136] = 3;
        let req = decode_slot(&slot).unwrap();
        assert_eq!(req.state, IoreqState::Free);
        assert_eq!(req.payload.size(), 3);
        assert_eq!(req.payload.validate(), Err(DecodeError::InvalidSize(3)));
        // Same bytes in any other state are rejected.
        for state in 0..3 {
            slot[136] = state;
            assert_eq!(decode_slot(&slot), Err(DecodeError::InvalidSize(3)));
        }
    }

    #[test]
    fn direction_zero_is_read_anything_else_write() {
        let mut slot = [0u8; SLOT_SIZE];
        slot[80] = 1;
        slot[136] = 2;
        for (raw, want) in [
            (0u32, Direction::Read),
            (1, Direction::Write),
            (5, Direction::Write),
        ] {
            slot[64..68].copy_from_slice(&raw.to_le_bytes());
            assert_eq!(decode_slot(&slot).unwrap().payload.direction(), want);
        }
        assert_eq!(Direction::from_raw(5), None);
    }

    #[test]
    fn nonzero_flags_are_true() {
        let mut slot = [0u8; SLOT_SIZE];
        slot[80] = 4;
        slot[136] = 1;
        slot[7] = 0x80; // completion_polling = 0x8000_0000
        slot[133] = 1; // kernel_handled = 0x100
        let req = decode_slot(&slot).unwrap();
        assert!(req.completion_polling && req.kernel_handled);
    }

    #[test]
    fn page_decoding() {
        assert_eq!(
            decode_ioreq_page(&[0u8; 4095]).map(|_| ()),
            Err(DecodeError::ShortBuffer {
                expected: 4096,
                actual: 4095
            })
        );
        let mut rng = Rng(99);
        let mut page = [0u8; PAGE_SIZE + 1];
        let mut want = [None; SLOT_COUNT];
        for (i, w) in want.iter_mut().enumerate() {
            if i % 3 == 0 {
                continue; // zeroed PENDING slot: InvalidSize(0)
            }
            let req = random_valid(&mut rng);
            encode_io_request(&req, &mut page[slot_offset(i)..]).unwrap();
            *w = Some(req);
        }
        page[slot_offset(4) + SLOT_OFFSET_PROCESSED] = 9;
        want[4] = None;
        let slots = decode_ioreq_page(&page).unwrap();
        for (i, got) in slots.iter().enumerate() {
            match (i, want[i]) {
                (4, _) => assert_eq!(*got, Err(DecodeError::UnknownState(9))),
                (_, Some(req)) => assert_eq!(*got, Ok(req), "slot {i}"),
                (_, None) => assert_eq!(*got, Err(DecodeError::InvalidSize(0)), "slot {i}"),
            }
        }
    }

    #[test]
    fn decode_payload_validates() {
        let req = IoPayload::Pio {
            direction: Direction::Read,
            address: 0x3F8,
            size: 1,
            value: 0,
        };
        assert_eq!(decode_payload(0, &req.encode_reqs()), Ok(req));
        assert_eq!(
            decode_payload(9, &req.encode_reqs()),
            Err(DecodeError::UnknownType(9))
        );
        let bad = IoPayload::Pio {
            direction: Direction::Read,
            address: 0x3F8,
            size: 3,
            value: 0,
        };
        assert_eq!(
            decode_payload(0, &bad.encode_reqs()),
            Err(DecodeError::InvalidSize(3))
        );
    }

    #[test]
    fn set_value_truncates_like_the_slot() {
        let mut p = IoPayload::Pio {
            direction: Direction::Read,
            address: 0x60,
            size: 4,
            value: 0,
        };
        p.set_value(0x1_2345_6789);
        assert_eq!(p.value(), 0x2345_6789);
        let mut m = IoPayload::Mmio {
            direction: Direction::Read,
            address: 0,
            size: 8,
            value: 0,
        };
        m.set_value(u64::MAX);
        assert_eq!(m.value(), u64::MAX);
    }

    #[test]
    fn encode_short_buffer() {
        let req = IoRequest {
            state: IoreqState::Free,
            completion_polling: false,
            kernel_handled: false,
            payload: IoPayload::Mmio {
                direction: Direction::Write,
                address: 0,
                size: 8,
                value: 1,
            },
        };
        let mut buf = [0u8; 100];
        let e = encode_io_request(&req, &mut buf).unwrap_err();
        assert_eq!(
            e,
            EncodeError::ShortBuffer {
                expected: 256,
                actual: 100
            }
        );
        assert_eq!(e.code(), "ERR_SHORT_BUFFER");
        assert_eq!(buf, [0u8; 100]);
    }

    #[test]
    fn fields_round_trip() {
        let mut rng = Rng(0xF1E1D5);
        for _ in 0..5_000 {
            let req = random_valid(&mut rng);
            let f = req.to_fields();
            assert_eq!(IoRequest::from_fields(&f), Ok(req));
            assert_eq!(f[field::TYPE], u64::from(req.request_type().raw()));
            assert_eq!(f[field::STATE], u64::from(req.state.raw()));
            assert_eq!(f[field::SIZE], req.payload.size());
        }
    }

    #[test]
    fn fields_layout_and_errors() {
        let pci = IoRequest {
            state: IoreqState::Processing,
            completion_polling: true,
            kernel_handled: false,
            payload: IoPayload::PciCfg {
                direction: Direction::Write,
                size: 4,
                value: 0xdead_beef,
                bus: 1,
                dev: 2,
                func: 3,
                reg: 0x40,
            },
        };
        assert_eq!(
            pci.to_fields(),
            [2, 2, 1, 0, 4, 0xdead_beef, 1, 2, 3, 0x40, 0, 1]
        );

        let good = [1u64, 3, 0, 0x1000, 8, u64::MAX, 0, 0, 0, 0, 1, 0];
        assert!(IoRequest::from_fields(&good).is_ok());
        let with = |i: usize, v: u64| {
            let mut f = good;
            f[i] = v;
            IoRequest::from_fields(&f)
        };
        let e = IoRequest::from_fields(&good[..11]).unwrap_err();
        assert_eq!(
            e,
            FieldsError::WrongLength {
                expected: 12,
                actual: 11
            }
        );
        assert_eq!(e.code(), "ERR_INVALID_ARG");
        assert_eq!(e.to_string(), "expected 12 request words, got 11");
        let e = with(field::TYPE, 1 << 32).unwrap_err();
        assert_eq!(e, FieldsError::UnknownType(1 << 32));
        assert_eq!(e.code(), "ERR_UNKNOWN_TYPE");
        let e = with(field::STATE, 4).unwrap_err();
        assert_eq!(e.code(), "ERR_UNKNOWN_STATE");
        assert_eq!(
            e.to_string(),
            "slot state 4 is not one of PENDING(0), COMPLETE(1), PROCESSING(2), FREE(3)"
        );
        let e = with(field::DIRECTION, 2).unwrap_err();
        assert_eq!(e.to_string(), "direction 2 is not one of READ(0), WRITE(1)");
        assert_eq!(e.code(), "ERR_INVALID_ARG");
        let e = with(field::KERNEL_HANDLED, 2).unwrap_err();
        assert_eq!(e.to_string(), "kernel_handled 2 is not 0 or 1");
        // MMIO value is 64-bit, PIO value 32-bit.
        let e = with(field::TYPE, 0).unwrap_err();
        assert_eq!(
            e,
            FieldsError::OutOfRange {
                field: "value",
                value: u64::MAX
            }
        );
        assert_eq!(
            e.to_string(),
            "value 18446744073709551615 does not fit in 32 bits"
        );
        // Words that do not apply are ignored; the payload is not validated.
        assert!(with(field::BUS, u64::MAX).is_ok());
        assert_eq!(with(field::SIZE, 3).map(|r| r.payload.size()), Ok(3));
    }

    #[test]
    fn enum_names_and_raw_values() {
        for s in STATES {
            assert_eq!(IoreqState::from_raw(s.raw()), Some(s));
            assert_eq!(IoreqState::try_from(s.raw()), Ok(s));
        }
        assert_eq!(IoreqState::Pending.raw(), 0);
        assert_eq!(IoreqState::Complete.raw(), 1);
        assert_eq!(IoreqState::Processing.raw(), 2);
        assert_eq!(IoreqState::Free.raw(), 3);
        assert_eq!(IoreqState::from_raw(4), None);
        assert_eq!(IoreqState::Processing.to_string(), "PROCESSING");
        assert_eq!(IoRequestType::from_raw(2), Some(IoRequestType::PciCfg));
        assert_eq!(IoRequestType::PortIo.to_string(), "PORTIO");
        assert_eq!(IoRequestType::try_from(3), Err(DecodeError::UnknownType(3)));
        assert_eq!(Direction::Write.raw(), 1);
        assert_eq!(u32::from(IoreqState::Free), 3);
    }
}
