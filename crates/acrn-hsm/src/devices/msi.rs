//! Message signalled interrupts of a [`PciFunction`](super::PciFunction): the MSI capability
//! (id 0x05) and the MSI-X capability (id 0x11) with its table and pending bit array (PBA) in
//! a memory BAR, as the PCI Local Bus Specification 3.0 defines them.
//!
//! The registers live in a shared state (an [`Msi`] or [`Msix`] handle, cheap to clone), so
//! the device's own logic can signal a vector from any thread while the client thread serves
//! the guest's configuration and BAR accesses. Messages go to an [`MsiSink`]: the VM
//! ([`Vm::inject_msi`], implemented for [`Vm`] and `Arc<Vm>`), or a test's [`MsiLog`].
//!
//! Delivery rules (what [`Msi::signal`] and [`Msix::signal`] do):
//!
//! | state | MSI | MSI-X |
//! |---|---|---|
//! | enable bit clear | dropped ([`MsiSignal::Disabled`]) | dropped ([`MsiSignal::Disabled`]) |
//! | vector beyond the enabled count / the table | [`MsiSignal::NoSuchVector`] | [`MsiSignal::NoSuchVector`] |
//! | masked (MSI: per-vector mask bit; MSI-X: function mask or the entry's mask bit) | pending bit set ([`MsiSignal::Pending`]) | PBA bit set ([`MsiSignal::Pending`]) |
//! | otherwise | `inject_msi(address, data)`, data's low bits = vector (multiple message) | `inject_msi` of the entry's address and data |
//!
//! A pending vector is delivered exactly once, as soon as the guest unmasks it (MSI: clears its
//! mask bit; MSI-X: clears the entry's mask bit or the function mask), and its pending bit is
//! cleared. The command register's bus master bit is not checked. Messages are sent after the
//! state's lock is released (the sink may take its own locks).

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use super::pci_error::PciError;
use crate::client::IoDevice;
use crate::vm::Vm;

/// Where the messages of an [`Msi`] / [`Msix`] go: an interrupt controller.
pub trait MsiSink: Send + Sync {
    /// Sends the message `data` to `addr` (the x86 LAPIC window at 0xFEE0_0000 on a PC).
    fn inject_msi(&self, addr: u64, data: u32);
}

impl MsiSink for Vm {
    /// INJECT_MSI. A failure (the VM destroyed) loses the message, as a write to a bus that is
    /// gone would.
    fn inject_msi(&self, addr: u64, data: u32) {
        let _ = Vm::inject_msi(self, addr, u64::from(data));
    }
}

impl<T: MsiSink + ?Sized> MsiSink for Arc<T> {
    fn inject_msi(&self, addr: u64, data: u32) {
        (**self).inject_msi(addr, data);
    }
}

/// An [`MsiSink`] that keeps the messages (for tests, or a device that forwards them itself).
#[derive(Debug, Default)]
pub struct MsiLog(Mutex<Vec<(u64, u32)>>);

impl MsiLog {
    /// An empty log.
    pub fn new() -> MsiLog {
        MsiLog::default()
    }
    /// The messages sent so far (`(address, data)`, in order), emptying the log.
    pub fn take(&self) -> Vec<(u64, u32)> {
        std::mem::take(&mut *lock(&self.0))
    }
    /// How many messages are in the log.
    pub fn len(&self) -> usize {
        lock(&self.0).len()
    }
    /// Whether the log is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl MsiSink for MsiLog {
    fn inject_msi(&self, addr: u64, data: u32) {
        lock(&self.0).push((addr, data));
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a signal did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsiSignal {
    /// The message was sent.
    Delivered,
    /// The vector is masked: its pending bit is set, and it is sent when unmasked.
    Pending,
    /// The capability's enable bit is clear: nothing sent, nothing pending.
    Disabled,
    /// No such vector (beyond the vectors enabled, or the table).
    NoSuchVector,
}

type Message = (u64, u32);

fn send(sink: &dyn MsiSink, msgs: &[Message]) {
    for &(a, d) in msgs {
        sink.inject_msi(a, d);
    }
}

// ---------------------------------------------------------------------------------------------
// MSI

/// The shape of an MSI capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsiConfig {
    /// Vectors the function can use (multiple message capable): 1, 2, 4, 8, 16 or 32.
    pub vectors: u8,
    /// 64-bit message address (the upper address register exists).
    pub addr64: bool,
    /// Per-vector masking (the mask and pending registers exist).
    pub per_vector_mask: bool,
}

impl Default for MsiConfig {
    /// One vector, 64-bit address, per-vector masking.
    fn default() -> Self {
        MsiConfig {
            vectors: 1,
            addr64: true,
            per_vector_mask: true,
        }
    }
}

impl MsiConfig {
    /// Offset of the data register in the capability.
    fn data_off(&self) -> usize {
        if self.addr64 { 0x0c } else { 0x08 }
    }
    /// Offset of the mask register (valid with per-vector masking).
    fn mask_off(&self) -> usize {
        self.data_off() + 4
    }
    /// Bytes of the capability, header included.
    pub fn len(&self) -> usize {
        match (self.addr64, self.per_vector_mask) {
            (false, false) => 0x0a,
            (true, false) => 0x0e,
            (false, true) => 0x14,
            (true, true) => 0x18,
        }
    }
    /// Never: a capability has its header.
    pub fn is_empty(&self) -> bool {
        false
    }
}

struct MsiState {
    /// The capability's bytes (header included; the header bytes are the function's).
    regs: [u8; 0x18],
}

struct MsiShared {
    config: MsiConfig,
    wmask: [u8; 0x18],
    state: Mutex<MsiState>,
    sink: Arc<dyn MsiSink>,
}

/// An MSI capability (id 0x05): add it to a function with
/// [`PciFunction::with_msi`](super::PciFunction::with_msi), signal its vectors with
/// [`signal`](Self::signal). Clones share the registers.
///
/// | offset | register | writable |
/// |---|---|---|
/// | 0x02 | message control: bit 0 enable, 3:1 multiple message capable, 6:4 multiple message enable, 7 64-bit, 8 per-vector masking | bits 0 and 6:4 |
/// | 0x04 | message address (bits 1:0 zero) | bits 31:2 |
/// | 0x08 | upper address (64-bit only) | all |
/// | 0x08 / 0x0c | message data (16 bits) | all |
/// | +4 | mask bits (per-vector masking only) | one bit per capable vector |
/// | +8 | pending bits | read-only |
#[derive(Clone)]
pub struct Msi {
    inner: Arc<MsiShared>,
}

impl fmt::Debug for Msi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Msi")
            .field("config", &self.inner.config)
            .field("enabled", &self.enabled())
            .finish()
    }
}

impl Msi {
    /// An MSI capability of this shape sending to `sink`. Errors: a vector count that is not a
    /// power of two up to 32.
    pub fn new(config: MsiConfig, sink: Arc<dyn MsiSink>) -> Result<Msi, PciError> {
        if !config.vectors.is_power_of_two() || config.vectors > 32 {
            return Err(PciError::InvalidCapability(
                "MSI vectors must be 1, 2, 4, 8, 16 or 32",
            ));
        }
        let mut wmask = [0u8; 0x18];
        wmask[2] = 0x71;
        wmask[4..8].copy_from_slice(&[0xfc, 0xff, 0xff, 0xff]);
        if config.addr64 {
            wmask[8..12].fill(0xff);
        }
        let d = config.data_off();
        wmask[d..d + 2].fill(0xff);
        if config.per_vector_mask {
            let m = config.mask_off();
            let bits = if config.vectors == 32 {
                u32::MAX
            } else {
                (1u32 << config.vectors) - 1
            };
            wmask[m..m + 4].copy_from_slice(&bits.to_le_bytes());
        }
        let inner = Arc::new(MsiShared {
            config,
            wmask,
            state: Mutex::new(MsiState { regs: [0; 0x18] }),
            sink,
        });
        let msi = Msi { inner };
        msi.reset();
        Ok(msi)
    }

    /// The shape.
    pub fn config(&self) -> MsiConfig {
        self.inner.config
    }

    /// Back to the power-on state: disabled, address and data 0, nothing masked or pending.
    pub fn reset(&self) {
        let c = self.inner.config;
        let mut s = lock(&self.inner.state);
        let header = [s.regs[0], s.regs[1]];
        s.regs = [0; 0x18];
        s.regs[0..2].copy_from_slice(&header);
        let control: u16 = (u16::from(c.vectors.trailing_zeros() as u8) << 1)
            | if c.addr64 { 1 << 7 } else { 0 }
            | if c.per_vector_mask { 1 << 8 } else { 0 };
        s.regs[2..4].copy_from_slice(&control.to_le_bytes());
    }

    fn control(s: &MsiState) -> u16 {
        u16::from_le_bytes([s.regs[2], s.regs[3]])
    }

    fn u32_at(s: &MsiState, off: usize) -> u32 {
        u32::from_le_bytes([
            s.regs[off],
            s.regs[off + 1],
            s.regs[off + 2],
            s.regs[off + 3],
        ])
    }

    /// Whether the guest enabled MSI (message control bit 0).
    pub fn enabled(&self) -> bool {
        Self::control(&lock(&self.inner.state)) & 1 != 0
    }

    /// Vectors enabled by the guest (multiple message enable, at most the capable count).
    pub fn enabled_vectors(&self) -> u32 {
        Self::vectors_of(&self.inner.config, &lock(&self.inner.state))
    }

    fn vectors_of(c: &MsiConfig, s: &MsiState) -> u32 {
        let mme = u32::from((Self::control(s) >> 4) & 7);
        1 << mme.min(c.vectors.trailing_zeros())
    }

    /// The message address and data the guest programmed (data without the vector).
    pub fn message(&self) -> (u64, u16) {
        let s = lock(&self.inner.state);
        let c = &self.inner.config;
        let hi = if c.addr64 { Self::u32_at(&s, 8) } else { 0 };
        let addr = u64::from(Self::u32_at(&s, 4)) | u64::from(hi) << 32;
        let d = c.data_off();
        (addr, u16::from_le_bytes([s.regs[d], s.regs[d + 1]]))
    }

    /// The pending bits (0 without per-vector masking).
    pub fn pending(&self) -> u32 {
        let c = &self.inner.config;
        if !c.per_vector_mask {
            return 0;
        }
        Self::u32_at(&lock(&self.inner.state), c.mask_off() + 4)
    }

    fn message_for(c: &MsiConfig, s: &MsiState, vector: u32) -> Message {
        let hi = if c.addr64 { Self::u32_at(s, 8) } else { 0 };
        let addr = u64::from(Self::u32_at(s, 4)) | u64::from(hi) << 32;
        let d = c.data_off();
        let data = u32::from(u16::from_le_bytes([s.regs[d], s.regs[d + 1]]));
        let n = Self::vectors_of(c, s);
        // Multiple message: the function sets the low bits of the data to the vector.
        (addr, (data & !(n - 1)) | vector)
    }

    /// Signals vector `vector` (0 for a single-vector function); see the module's table.
    pub fn signal(&self, vector: u32) -> MsiSignal {
        let c = self.inner.config;
        let msg = {
            let mut s = lock(&self.inner.state);
            if Self::control(&s) & 1 == 0 {
                return MsiSignal::Disabled;
            }
            if vector >= Self::vectors_of(&c, &s) {
                return MsiSignal::NoSuchVector;
            }
            if c.per_vector_mask && Self::u32_at(&s, c.mask_off()) & (1 << vector) != 0 {
                let p = c.mask_off() + 4;
                let pending = Self::u32_at(&s, p) | 1 << vector;
                s.regs[p..p + 4].copy_from_slice(&pending.to_le_bytes());
                return MsiSignal::Pending;
            }
            Self::message_for(&c, &s, vector)
        };
        self.inner.sink.inject_msi(msg.0, msg.1);
        MsiSignal::Delivered
    }

    /// Sets the header bytes (id, next pointer) the function placed the capability with.
    pub(crate) fn set_header(&self, next: u8) {
        let mut s = lock(&self.inner.state);
        s.regs[0] = 0x05;
        s.regs[1] = next;
    }

    pub(crate) fn read_byte(&self, off: usize) -> u8 {
        if off >= self.inner.config.len() {
            return 0;
        }
        lock(&self.inner.state).regs[off]
    }

    /// A guest write of `bytes` at `off` in the capability, then the delivery of what it
    /// unmasked.
    pub(crate) fn write(&self, off: usize, bytes: &[u8]) {
        let c = self.inner.config;
        let msgs = {
            let mut s = lock(&self.inner.state);
            for (k, &v) in bytes.iter().enumerate() {
                let o = off + k;
                if o < c.len() {
                    let m = self.inner.wmask[o];
                    s.regs[o] = (s.regs[o] & !m) | (v & m);
                }
            }
            self.unmasked(&mut s)
        };
        send(&*self.inner.sink, &msgs);
    }

    /// Clears and returns the messages of pending vectors that are no longer masked.
    fn unmasked(&self, s: &mut MsiState) -> Vec<Message> {
        let c = self.inner.config;
        if !c.per_vector_mask || Self::control(s) & 1 == 0 {
            return Vec::new();
        }
        let p = c.mask_off() + 4;
        let pending = Self::u32_at(s, p);
        let ready = pending & !Self::u32_at(s, c.mask_off());
        let n = Self::vectors_of(&c, s);
        let mut msgs = Vec::new();
        let mut left = pending;
        for v in 0..n {
            if ready & (1 << v) != 0 {
                left &= !(1 << v);
                msgs.push(Self::message_for(&c, s, v));
            }
        }
        s.regs[p..p + 4].copy_from_slice(&left.to_le_bytes());
        msgs
    }
}

// ---------------------------------------------------------------------------------------------
// MSI-X

/// The shape of an MSI-X capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsixConfig {
    /// Table entries (vectors), 1 to 2048.
    pub table_size: u16,
    /// The BAR holding the table (a memory BAR of the function).
    pub table_bar: u8,
    /// The table's offset in that BAR (a multiple of 8).
    pub table_offset: u32,
    /// The BAR holding the PBA.
    pub pba_bar: u8,
    /// The PBA's offset in that BAR (a multiple of 8).
    pub pba_offset: u32,
}

impl MsixConfig {
    /// Bytes of the table (16 per entry).
    pub fn table_len(&self) -> u64 {
        u64::from(self.table_size) * 16
    }
    /// Bytes of the PBA (one bit per entry, in 64-bit words).
    pub fn pba_len(&self) -> u64 {
        u64::from(self.table_size).div_ceil(64) * 8
    }
}

/// Capability bytes, header included.
pub(crate) const MSIX_CAP_LEN: usize = 12;

struct MsixState {
    cap: [u8; MSIX_CAP_LEN],
    /// 16 bytes per entry: address low, address high, data, vector control.
    table: Vec<u8>,
    pba: Vec<u64>,
}

struct MsixShared {
    config: MsixConfig,
    state: Mutex<MsixState>,
    sink: Arc<dyn MsiSink>,
}

/// An MSI-X capability (id 0x11) with its table and PBA: add it to a function with
/// [`PciFunction::with_msix`](super::PciFunction::with_msix), serve the BAR(s) holding the
/// table and PBA with [`bar_device`](Self::bar_device) (or call [`bar_read`](Self::bar_read) /
/// [`bar_write`](Self::bar_write) from your BAR handler), signal with
/// [`signal`](Self::signal). Clones share the state.
///
/// Capability: 0x02 message control (bits 10:0 table size - 1, read-only; bit 14 function
/// mask and bit 15 enable, writable), 0x04 table offset | BIR, 0x08 PBA offset | BIR (read-only).
/// Table entry (16 bytes): address low (bits 1:0 zero), address high, data, vector control
/// (bit 0 mask, set at reset; the other bits read 0). PBA: read-only, one bit per entry.
#[derive(Clone)]
pub struct Msix {
    inner: Arc<MsixShared>,
}

impl fmt::Debug for Msix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Msix")
            .field("config", &self.inner.config)
            .field("enabled", &self.enabled())
            .finish()
    }
}

const ENTRY_WMASK: [u8; 16] = [
    0xfc, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0, 0, 0,
];

impl Msix {
    /// An MSI-X capability of this shape sending to `sink`. Errors: a table size outside
    /// 1..=2048, a BAR index above 5, an offset not a multiple of 8, or the table and PBA
    /// overlapping in one BAR. (That the BARs exist and hold them is checked by
    /// [`PciFunction::with_msix`](super::PciFunction::with_msix).)
    pub fn new(config: MsixConfig, sink: Arc<dyn MsiSink>) -> Result<Msix, PciError> {
        let bad = PciError::InvalidCapability;
        if !(1..=2048).contains(&config.table_size) {
            return Err(bad("the MSI-X table has 1 to 2048 entries"));
        }
        if config.table_bar > 5 || config.pba_bar > 5 {
            return Err(bad("the MSI-X table and PBA BARs are 0..=5"));
        }
        if config.table_offset % 8 != 0 || config.pba_offset % 8 != 0 {
            return Err(bad("the MSI-X table and PBA offsets are multiples of 8"));
        }
        if config.table_bar == config.pba_bar {
            let (t, p) = (u64::from(config.table_offset), u64::from(config.pba_offset));
            if t < p + config.pba_len() && p < t + config.table_len() {
                return Err(bad("the MSI-X table and PBA overlap"));
            }
        }
        let n = usize::from(config.table_size);
        let msix = Msix {
            inner: Arc::new(MsixShared {
                config,
                state: Mutex::new(MsixState {
                    cap: [0; MSIX_CAP_LEN],
                    table: vec![0; n * 16],
                    pba: vec![0; n.div_ceil(64)],
                }),
                sink,
            }),
        };
        msix.reset();
        Ok(msix)
    }

    /// The shape.
    pub fn config(&self) -> MsixConfig {
        self.inner.config
    }

    /// Back to the power-on state: disabled, not function-masked, every entry 0 and masked,
    /// nothing pending.
    pub fn reset(&self) {
        let c = self.inner.config;
        let mut s = lock(&self.inner.state);
        let control = c.table_size - 1;
        s.cap[2..4].copy_from_slice(&control.to_le_bytes());
        s.cap[4..8].copy_from_slice(&(c.table_offset | u32::from(c.table_bar)).to_le_bytes());
        s.cap[8..12].copy_from_slice(&(c.pba_offset | u32::from(c.pba_bar)).to_le_bytes());
        s.table.fill(0);
        for e in s.table.chunks_exact_mut(16) {
            e[12] = 1;
        }
        s.pba.fill(0);
    }

    fn control(s: &MsixState) -> u16 {
        u16::from_le_bytes([s.cap[2], s.cap[3]])
    }

    /// Whether the guest enabled MSI-X (message control bit 15).
    pub fn enabled(&self) -> bool {
        Self::control(&lock(&self.inner.state)) & 0x8000 != 0
    }

    /// Whether the function mask (message control bit 14) is set.
    pub fn function_masked(&self) -> bool {
        Self::control(&lock(&self.inner.state)) & 0x4000 != 0
    }

    /// Entry `vector`'s address, data and mask bit, if the table has it.
    pub fn entry(&self, vector: u16) -> Option<(u64, u32, bool)> {
        let s = lock(&self.inner.state);
        let e = s
            .table
            .get(usize::from(vector) * 16..usize::from(vector) * 16 + 16)?;
        let w = |k: usize| u32::from_le_bytes([e[k], e[k + 1], e[k + 2], e[k + 3]]);
        Some((
            u64::from(w(0)) | u64::from(w(4)) << 32,
            w(8),
            w(12) & 1 != 0,
        ))
    }

    /// Whether `vector`'s PBA bit is set.
    pub fn is_pending(&self, vector: u16) -> bool {
        let s = lock(&self.inner.state);
        let v = usize::from(vector);
        s.pba.get(v / 64).is_some_and(|w| w & (1 << (v % 64)) != 0)
    }

    fn message(s: &MsixState, v: usize) -> Option<Message> {
        let e = s.table.get(v * 16..v * 16 + 16)?;
        let w = |k: usize| u32::from_le_bytes([e[k], e[k + 1], e[k + 2], e[k + 3]]);
        let control = Self::control(s);
        if control & 0x8000 == 0 || control & 0x4000 != 0 || w(12) & 1 != 0 {
            return None;
        }
        Some((u64::from(w(0)) | u64::from(w(4)) << 32, w(8)))
    }

    /// Signals vector `vector` (a table entry); see the module's table.
    pub fn signal(&self, vector: u16) -> MsiSignal {
        let v = usize::from(vector);
        let msg = {
            let mut s = lock(&self.inner.state);
            if v >= usize::from(self.inner.config.table_size) {
                return MsiSignal::NoSuchVector;
            }
            if Self::control(&s) & 0x8000 == 0 {
                return MsiSignal::Disabled;
            }
            match Self::message(&s, v) {
                Some(m) => m,
                None => {
                    s.pba[v / 64] |= 1 << (v % 64);
                    return MsiSignal::Pending;
                }
            }
        };
        self.inner.sink.inject_msi(msg.0, msg.1);
        MsiSignal::Delivered
    }

    /// Delivers (once) every pending vector that can be sent now, clearing its PBA bit.
    fn unmasked(s: &mut MsixState) -> Vec<Message> {
        let mut msgs = Vec::new();
        for w in 0..s.pba.len() {
            let mut bits = s.pba[w];
            while bits != 0 {
                let b = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let v = w * 64 + b;
                if let Some(m) = Self::message(s, v) {
                    s.pba[w] &= !(1 << b);
                    msgs.push(m);
                }
            }
        }
        msgs
    }

    pub(crate) fn set_header(&self, next: u8) {
        let mut s = lock(&self.inner.state);
        s.cap[0] = 0x11;
        s.cap[1] = next;
    }

    pub(crate) fn read_byte(&self, off: usize) -> u8 {
        lock(&self.inner.state).cap.get(off).copied().unwrap_or(0)
    }

    /// A guest configuration write of `bytes` at `off` in the capability (only byte 3, the
    /// function mask and enable bits, is writable), then the delivery of what it unmasked.
    pub(crate) fn write(&self, off: usize, bytes: &[u8]) {
        let msgs = {
            let mut s = lock(&self.inner.state);
            for (k, &v) in bytes.iter().enumerate() {
                if off + k == 3 {
                    s.cap[3] = (s.cap[3] & !0xc0) | (v & 0xc0);
                }
            }
            Self::unmasked(&mut s)
        };
        send(&*self.inner.sink, &msgs);
    }

    /// Which region of BAR `bar` byte `offset` is in: the table (byte index) or the PBA.
    fn locate(&self, bar: u8, offset: u64) -> Option<Region> {
        let c = &self.inner.config;
        if bar == c.table_bar {
            if let Some(k) = offset.checked_sub(u64::from(c.table_offset)) {
                if k < c.table_len() {
                    return Some(Region::Table(k as usize));
                }
            }
        }
        if bar == c.pba_bar {
            if let Some(k) = offset.checked_sub(u64::from(c.pba_offset)) {
                if k < c.pba_len() {
                    return Some(Region::Pba(k as usize));
                }
            }
        }
        None
    }

    /// Whether `[offset, offset + size)` of BAR `bar` touches the table or the PBA.
    pub fn covers(&self, bar: u8, offset: u64, size: u8) -> bool {
        (0..u64::from(size)).any(|k| {
            offset
                .checked_add(k)
                .is_some_and(|o| self.locate(bar, o).is_some())
        })
    }

    /// A guest read of BAR `bar` at `offset` (little-endian, any size up to 8): `Some(value)`
    /// if it touches the table or PBA (bytes outside them read 0), `None` otherwise.
    pub fn bar_read(&self, bar: u8, offset: u64, size: u8) -> Option<u64> {
        if !self.covers(bar, offset, size) {
            return None;
        }
        let s = lock(&self.inner.state);
        let mut v = 0u64;
        for k in 0..u64::from(size.min(8)) {
            let b = match offset.checked_add(k).and_then(|o| self.locate(bar, o)) {
                Some(Region::Table(i)) => s.table[i],
                Some(Region::Pba(i)) => s.pba[i / 8].to_le_bytes()[i % 8],
                None => 0,
            };
            v |= u64::from(b) << (8 * k);
        }
        Some(v)
    }

    /// A guest write of BAR `bar` at `offset`: `true` if it touched the table or PBA (the PBA
    /// is read-only; an entry's writable bits change), then the delivery of what it unmasked.
    pub fn bar_write(&self, bar: u8, offset: u64, size: u8, value: u64) -> bool {
        if !self.covers(bar, offset, size) {
            return false;
        }
        let msgs = {
            let mut s = lock(&self.inner.state);
            for k in 0..u64::from(size.min(8)) {
                if let Some(Region::Table(i)) =
                    offset.checked_add(k).and_then(|o| self.locate(bar, o))
                {
                    let m = ENTRY_WMASK[i % 16];
                    let b = (value >> (8 * k)) as u8;
                    s.table[i] = (s.table[i] & !m) | (b & m);
                }
            }
            Self::unmasked(&mut s)
        };
        send(&*self.inner.sink, &msgs);
        true
    }

    /// A handler for BAR `bar` serving the table and PBA (whichever of them it holds); other
    /// offsets read 0 and ignore writes, or go to a device given with
    /// [`MsixBar::with_fallback`].
    pub fn bar_device(&self, bar: u8) -> MsixBar {
        MsixBar {
            msix: self.clone(),
            bar,
            fallback: None,
            name: format!("msix.bar{bar}"),
        }
    }
}

enum Region {
    Table(usize),
    Pba(usize),
}

/// The [`IoDevice`] of a BAR holding an MSI-X table and/or PBA ([`Msix::bar_device`]).
pub struct MsixBar {
    msix: Msix,
    bar: u8,
    fallback: Option<Box<dyn IoDevice>>,
    name: String,
}

impl fmt::Debug for MsixBar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MsixBar")
            .field("bar", &self.bar)
            .field(
                "fallback",
                &self.fallback.as_ref().map(|d| d.name().to_string()),
            )
            .finish()
    }
}

impl MsixBar {
    /// Accesses that touch neither the table nor the PBA go to `device` (offsets relative to
    /// the BAR, as for the BAR's own handler).
    pub fn with_fallback(mut self, device: Box<dyn IoDevice>) -> MsixBar {
        self.name = format!("{}+msix", device.name());
        self.fallback = Some(device);
        self
    }
}

impl IoDevice for MsixBar {
    fn name(&self) -> &str {
        &self.name
    }
    fn read(&mut self, offset: u64, size: u8) -> u64 {
        match self.msix.bar_read(self.bar, offset, size) {
            Some(v) => v,
            None => self.fallback.as_mut().map_or(0, |d| d.read(offset, size)),
        }
    }
    fn write(&mut self, offset: u64, size: u8, value: u64) {
        if !self.msix.bar_write(self.bar, offset, size, value) {
            if let Some(d) = self.fallback.as_mut() {
                d.write(offset, size, value);
            }
        }
    }
    /// Resets the fallback device; the table is reset with the function
    /// ([`PciDevice::reset`](crate::client::PciDevice::reset)).
    fn reset(&mut self) {
        if let Some(d) = self.fallback.as_mut() {
            d.reset();
        }
    }
}
