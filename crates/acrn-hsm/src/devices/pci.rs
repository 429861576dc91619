//! The configuration space of one PCI function (type 0 header), with BARs that size the way
//! firmware probes them: write all ones, read back the size mask.
//!
//! | reg | field | access |
//! |---|---|---|
//! | 0x00 / 0x02 | vendor / device id | read-only |
//! | 0x04 | command | bits IO, MEM, bus master, parity, SERR, INTx disable writable |
//! | 0x06 | status | read-only: bit 4 (capabilities list) set when the function has a capability |
//! | 0x08..0x0b | revision, prog-if, subclass, class | read-only |
//! | 0x0c / 0x0d | cache line size / latency timer | read-write |
//! | 0x0e | header type 0 (multi-function bit optional) | read-only |
//! | 0x10..0x27 | BAR0..BAR5 | address bits above the size writable; type bits fixed |
//! | 0x2c / 0x2e | subsystem vendor / id ([`PciFunction::with_subsystem`]) | read-only |
//! | 0x34 | capabilities pointer (0 without capabilities, else the first one's offset) | read-only |
//! | 0x3c / 0x3d | interrupt line / pin ([`PciFunction::with_interrupt_pin`]: 1 = INTA# .. 4 = INTD#) | line read-write (firmware writes the IRQ it routed), pin read-only |
//! | 0x40..0xff | capabilities, chained in the order they were added from 0x40 upward (each at a 4-byte boundary: id, next pointer, body); the rest device-specific read-write storage | per capability |
//! | 0x100.. | extended space | reads 0, writes ignored |
//!
//! Any 1/2/4-byte access at any `reg` is served byte by byte from these rules (little-endian).
//!
//! Capabilities: [`PciFunction::with_capability`] (any id, body bytes and their writable bits,
//! the header read-only), [`PciFunction::with_msi`] (an [`Msi`], id 0x05) and
//! [`PciFunction::with_msix`] (an [`Msix`], id 0x11, its table and PBA in a memory BAR of the
//! function). The registers of MSI and MSI-X live in their handles (shared with the device's
//! logic, which signals vectors through them: see [`super::msi`]); a reset of the function
//! resets them too.

use std::fmt;

use super::msi::{MSIX_CAP_LEN, Msi, Msix};
pub use super::pci_error::PciError;
use crate::client::{AddressSpace, BarWindow, PciDevice};

/// A base address register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bar {
    /// 32-bit memory BAR of `size` bytes (a power of two, at least 16).
    Mem32 {
        /// Size in bytes.
        size: u32,
        /// Prefetchable (bit 3).
        prefetchable: bool,
    },
    /// 64-bit memory BAR (uses two BAR registers) of `size` bytes (power of two, >= 16).
    Mem64 {
        /// Size in bytes.
        size: u64,
        /// Prefetchable.
        prefetchable: bool,
    },
    /// I/O BAR of `size` ports (a power of two, 4 to 256).
    Io {
        /// Size in ports.
        size: u32,
    },
}

/// Where a capability's registers are.
#[derive(Clone)]
enum CapRegs {
    /// In the function's configuration bytes, with their write mask.
    Plain,
    /// In an MSI handle.
    Msi(Msi),
    /// In an MSI-X handle.
    Msix(Msix),
}

#[derive(Clone)]
struct Cap {
    id: u8,
    off: usize,
    len: usize,
    regs: CapRegs,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct BarReg {
    /// Writable address bits.
    mask: u32,
    /// Fixed low bits (type, prefetchable, I/O).
    flags: u32,
    /// Written value.
    value: u32,
}

/// One PCI function's configuration space.
#[derive(Clone)]
pub struct PciFunction {
    name: String,
    /// The power-on header (first 256 bytes); BAR registers are in `bars`.
    initial: [u8; 256],
    cfg: [u8; 256],
    /// Writable bits of each byte outside the BARs.
    wmask: [u8; 256],
    bars: [BarReg; 6],
    bar_kinds: [Option<Bar>; 6],
    /// The capabilities, in chain order.
    caps: Vec<Cap>,
}

impl fmt::Debug for PciFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PciFunction")
            .field("name", &self.name)
            .field("vendor", &format_args!("{:#06x}", self.vendor_id()))
            .field("device", &format_args!("{:#06x}", self.device_id()))
            .field("bars", &self.bar_kinds)
            .field("capabilities", &self.capabilities())
            .finish()
    }
}

const COMMAND_WMASK: u16 = 0x0547;

impl PciFunction {
    /// A function with `vendor` and `device` ids, class 0xff (unassigned), no BARs.
    pub fn new(vendor: u16, device: u16) -> PciFunction {
        let mut cfg = [0u8; 256];
        cfg[0..2].copy_from_slice(&vendor.to_le_bytes());
        cfg[2..4].copy_from_slice(&device.to_le_bytes());
        cfg[0x0b] = 0xff;
        let mut wmask = [0u8; 256];
        wmask[4..6].copy_from_slice(&COMMAND_WMASK.to_le_bytes());
        wmask[0x0c] = 0xff;
        wmask[0x0d] = 0xff;
        wmask[0x3c] = 0xff;
        for b in &mut wmask[0x40..] {
            *b = 0xff;
        }
        PciFunction {
            name: "pci-function".into(),
            initial: cfg,
            cfg,
            wmask,
            bars: [BarReg::default(); 6],
            bar_kinds: [None; 6],
            caps: Vec::new(),
        }
    }

    fn set_initial(&mut self, off: usize, bytes: &[u8]) {
        self.initial[off..off + bytes.len()].copy_from_slice(bytes);
        self.cfg[off..off + bytes.len()].copy_from_slice(bytes);
    }

    /// Renames the device.
    pub fn with_name(mut self, name: impl Into<String>) -> PciFunction {
        self.name = name.into();
        self
    }

    /// Class code, subclass, programming interface and revision.
    pub fn with_class(mut self, class: u8, subclass: u8, prog_if: u8, revision: u8) -> PciFunction {
        self.set_initial(8, &[revision, prog_if, subclass, class]);
        self
    }

    /// Subsystem vendor and id.
    pub fn with_subsystem(mut self, vendor: u16, id: u16) -> PciFunction {
        self.set_initial(0x2c, &vendor.to_le_bytes());
        self.set_initial(0x2e, &id.to_le_bytes());
        self
    }

    /// Interrupt pin (1 = INTA .. 4 = INTD; 0 none).
    pub fn with_interrupt_pin(mut self, pin: u8) -> PciFunction {
        self.set_initial(0x3d, &[pin]);
        self
    }

    /// Sets the multi-function bit of the header type.
    pub fn with_multifunction(mut self, on: bool) -> PciFunction {
        self.set_initial(0x0e, &[if on { 0x80 } else { 0 }]);
        self
    }

    /// Declares BAR `index`.
    pub fn with_bar(mut self, index: usize, bar: Bar) -> Result<PciFunction, PciError> {
        let wide = matches!(bar, Bar::Mem64 { .. });
        if index > 5 || (wide && index > 4) {
            return Err(PciError::NoSuchBar(index));
        }
        if self.bar_kinds[index].is_some()
            || (index > 0 && matches!(self.bar_kinds[index - 1], Some(Bar::Mem64 { .. })))
            || (wide && self.bar_kinds[index + 1].is_some())
        {
            return Err(PciError::BarTaken(index));
        }
        let bad = |size: u64| PciError::InvalidSize { index, size };
        match bar {
            Bar::Mem32 { size, prefetchable } => {
                if !size.is_power_of_two() || size < 16 {
                    return Err(bad(u64::from(size)));
                }
                self.bars[index] = BarReg {
                    mask: !(size - 1) & 0xffff_fff0,
                    flags: if prefetchable { 0x8 } else { 0 },
                    value: 0,
                };
            }
            Bar::Mem64 { size, prefetchable } => {
                if !size.is_power_of_two() || size < 16 {
                    return Err(bad(size));
                }
                let m = !(size - 1);
                self.bars[index] = BarReg {
                    mask: (m as u32) & 0xffff_fff0,
                    flags: 0x4 | if prefetchable { 0x8 } else { 0 },
                    value: 0,
                };
                self.bars[index + 1] = BarReg {
                    mask: (m >> 32) as u32,
                    flags: 0,
                    value: 0,
                };
            }
            Bar::Io { size } => {
                if !size.is_power_of_two() || !(4..=256).contains(&size) {
                    return Err(bad(u64::from(size)));
                }
                self.bars[index] = BarReg {
                    mask: !(size - 1) & 0xffff_fffc,
                    flags: 0x1,
                    value: 0,
                };
            }
        }
        self.bar_kinds[index] = Some(bar);
        Ok(self)
    }

    /// Places a capability of `len` bytes after the last one (4-byte aligned, from 0x40),
    /// chains it, and marks the capabilities list in the status register.
    fn place(&mut self, id: u8, len: usize, regs: CapRegs) -> Result<usize, PciError> {
        let off = self
            .caps
            .last()
            .map_or(0x40, |c| (c.off + c.len).next_multiple_of(4));
        if off + len > 0x100 {
            return Err(PciError::NoCapabilitySpace(len));
        }
        match self.caps.last() {
            None => self.set_initial(0x34, &[off as u8]),
            Some(prev) => match &prev.regs {
                CapRegs::Plain => {
                    let at = prev.off + 1;
                    self.set_initial(at, &[off as u8]);
                }
                CapRegs::Msi(m) => m.set_header(off as u8),
                CapRegs::Msix(m) => m.set_header(off as u8),
            },
        }
        let status = self.initial[6] | 0x10;
        self.set_initial(6, &[status]);
        // The capability's bytes (and the padding to the next boundary) are not storage.
        let end = (off + len).next_multiple_of(4).min(0x100);
        self.wmask[off..end].fill(0);
        self.set_initial(off, &[id, 0]);
        self.caps.push(Cap { id, off, len, regs });
        Ok(off)
    }

    /// Adds a capability with id `id` whose registers after the 2-byte header are `body`, with
    /// writable bits `writable` (byte by byte; missing bytes read-only). Its registers are plain
    /// configuration bytes: what the guest writes is kept under the mask, the rest fixed.
    pub fn with_capability(
        mut self,
        id: u8,
        body: &[u8],
        writable: &[u8],
    ) -> Result<PciFunction, PciError> {
        let off = self.place(id, 2 + body.len(), CapRegs::Plain)?;
        self.set_initial(off + 2, body);
        for (k, &m) in writable.iter().take(body.len()).enumerate() {
            self.wmask[off + 2 + k] = m;
        }
        Ok(self)
    }

    /// Adds the MSI capability `msi` (its registers are the handle's; signal through it).
    pub fn with_msi(mut self, msi: &Msi) -> Result<PciFunction, PciError> {
        if self.caps.iter().any(|c| c.id == 0x05) {
            return Err(PciError::InvalidCapability(
                "the function has an MSI capability",
            ));
        }
        let len = msi.config().len();
        self.place(0x05, len, CapRegs::Msi(msi.clone()))?;
        msi.set_header(0);
        Ok(self)
    }

    /// Adds the MSI-X capability `msix`. Its table and PBA must fit in memory BARs declared
    /// before (with [`with_bar`](Self::with_bar)); serve those BARs with
    /// [`Msix::bar_device`] (or call [`Msix::bar_read`] / [`Msix::bar_write`] from their
    /// handlers).
    pub fn with_msix(mut self, msix: &Msix) -> Result<PciFunction, PciError> {
        if self.caps.iter().any(|c| c.id == 0x11) {
            return Err(PciError::InvalidCapability(
                "the function has an MSI-X capability",
            ));
        }
        let c = msix.config();
        for (bar, off, len) in [
            (c.table_bar, c.table_offset, c.table_len()),
            (c.pba_bar, c.pba_offset, c.pba_len()),
        ] {
            let size = match self.bar_kinds[usize::from(bar)] {
                Some(Bar::Mem32 { size, .. }) => u64::from(size),
                Some(Bar::Mem64 { size, .. }) => size,
                Some(Bar::Io { .. }) => {
                    return Err(PciError::InvalidCapability(
                        "the MSI-X table and PBA are in memory BARs, not I/O BARs",
                    ));
                }
                None => {
                    return Err(PciError::InvalidCapability(
                        "the MSI-X table or PBA BAR is not declared",
                    ));
                }
            };
            if u64::from(off) + len > size {
                return Err(PciError::InvalidCapability(
                    "the MSI-X table or PBA does not fit in its BAR",
                ));
            }
        }
        self.place(0x11, MSIX_CAP_LEN, CapRegs::Msix(msix.clone()))?;
        msix.set_header(0);
        Ok(self)
    }

    /// The capabilities as `(id, offset)`, in chain order.
    pub fn capabilities(&self) -> Vec<(u8, u8)> {
        self.caps.iter().map(|c| (c.id, c.off as u8)).collect()
    }

    /// The index of the MSI or MSI-X capability holding `reg`.
    fn shared_index(&self, reg: usize) -> Option<usize> {
        self.caps.iter().position(|c| {
            !matches!(c.regs, CapRegs::Plain) && (c.off..c.off + c.len).contains(&reg)
        })
    }

    /// The MSI or MSI-X capability holding `reg`, and the offset in it.
    fn shared_at(&self, reg: usize) -> Option<(&CapRegs, usize)> {
        let c = &self.caps[self.shared_index(reg)?];
        Some((&c.regs, reg - c.off))
    }

    /// Vendor id.
    pub fn vendor_id(&self) -> u16 {
        u16::from_le_bytes([self.cfg[0], self.cfg[1]])
    }

    /// Device id.
    pub fn device_id(&self) -> u16 {
        u16::from_le_bytes([self.cfg[2], self.cfg[3]])
    }

    /// The command register.
    pub fn command(&self) -> u16 {
        u16::from_le_bytes([self.cfg[4], self.cfg[5]])
    }

    /// The address BAR `index` is programmed to (`None` for an undeclared BAR or the upper half
    /// of a 64-bit one).
    pub fn bar_address(&self, index: usize) -> Option<u64> {
        let kind = (*self.bar_kinds.get(index)?)?;
        let lo = u64::from(self.bars[index].value & self.bars[index].mask);
        Some(match kind {
            Bar::Mem64 { .. } => {
                lo | (u64::from(self.bars[index + 1].value & self.bars[index + 1].mask) << 32)
            }
            _ => lo,
        })
    }

    fn dword(&self, idx: usize) -> u32 {
        match idx {
            4..=9 => {
                let b = &self.bars[idx - 4];
                (b.value & b.mask) | b.flags
            }
            0..=63 => {
                let o = idx * 4;
                u32::from_le_bytes([
                    self.cfg[o],
                    self.cfg[o + 1],
                    self.cfg[o + 2],
                    self.cfg[o + 3],
                ])
            }
            _ => 0,
        }
    }

    fn byte(&self, reg: usize) -> u8 {
        match self.shared_at(reg) {
            Some((CapRegs::Msi(m), off)) => m.read_byte(off),
            Some((CapRegs::Msix(m), off)) => m.read_byte(off),
            _ => (self.dword(reg / 4) >> (8 * (reg % 4))) as u8,
        }
    }

    fn write_byte(&mut self, reg: usize, v: u8) {
        match reg {
            0x10..=0x27 => {
                let b = &mut self.bars[(reg - 0x10) / 4];
                let sh = 8 * (reg % 4);
                b.value = (b.value & !(0xff << sh)) | (u32::from(v) << sh);
            }
            0..=0xff => {
                let m = self.wmask[reg];
                self.cfg[reg] = (self.cfg[reg] & !m) | (v & m);
            }
            _ => {}
        }
    }
}

impl PciDevice for PciFunction {
    fn name(&self) -> &str {
        &self.name
    }

    fn cfg_read(&mut self, reg: u32, size: u8) -> u32 {
        let reg = reg as usize;
        (0..usize::from(size.min(4))).fold(0u32, |acc, k| {
            acc | (u32::from(self.byte(reg + k)) << (8 * k))
        })
    }

    fn cfg_write(&mut self, reg: u32, size: u8, value: u32) {
        let reg = reg as usize;
        // Bytes of an MSI / MSI-X capability go to it in one write (so an unmask is acted on
        // once the whole access is in); an unaligned access may touch two capabilities.
        let mut groups: Vec<(usize, usize, Vec<u8>)> = Vec::new();
        for k in 0..usize::from(size.min(4)) {
            let b = (value >> (8 * k)) as u8;
            let r = reg + k;
            match self.shared_index(r) {
                Some(i) => match groups.last_mut() {
                    Some((gi, _, bytes)) if *gi == i => bytes.push(b),
                    _ => groups.push((i, r - self.caps[i].off, vec![b])),
                },
                None => self.write_byte(r, b),
            }
        }
        for (i, off, bytes) in groups {
            match &self.caps[i].regs {
                CapRegs::Msi(m) => m.write(off, &bytes),
                CapRegs::Msix(m) => m.write(off, &bytes),
                CapRegs::Plain => {}
            }
        }
    }

    fn reset(&mut self) {
        self.cfg = self.initial;
        for b in &mut self.bars {
            b.value = 0;
        }
        for c in &self.caps {
            match &c.regs {
                CapRegs::Plain => {}
                CapRegs::Msi(m) => m.reset(),
                CapRegs::Msix(m) => m.reset(),
            }
        }
    }

    /// Each declared BAR whose space the command register enables (bit 0 I/O, bit 1 memory)
    /// and whose address is programmed: not 0, and not the all-ones of a sizing probe still
    /// in the register.
    fn bar_windows(&self) -> Vec<BarWindow> {
        let cmd = self.command();
        let mut out = Vec::new();
        for (i, kind) in self.bar_kinds.iter().enumerate() {
            let Some(kind) = *kind else { continue };
            let (space, size, enabled, sizing) = match kind {
                Bar::Mem32 { size, .. } => (
                    AddressSpace::Mmio,
                    u64::from(size),
                    cmd & 2 != 0,
                    self.bars[i].value == u32::MAX,
                ),
                Bar::Mem64 { size, .. } => (
                    AddressSpace::Mmio,
                    size,
                    cmd & 2 != 0,
                    self.bars[i].value == u32::MAX || self.bars[i + 1].value == u32::MAX,
                ),
                Bar::Io { size } => (
                    AddressSpace::Pio,
                    u64::from(size),
                    cmd & 1 != 0,
                    self.bars[i].value == u32::MAX,
                ),
            };
            match self.bar_address(i) {
                Some(base) if enabled && !sizing && base != 0 => out.push(BarWindow {
                    index: i as u8,
                    space,
                    base,
                    size,
                }),
                _ => {}
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev() -> PciFunction {
        PciFunction::new(0x8086, 0x1234)
            .with_class(0x02, 0x00, 0x00, 0x01)
            .with_interrupt_pin(1)
            .with_bar(
                0,
                Bar::Mem32 {
                    size: 0x1000,
                    prefetchable: false,
                },
            )
            .and_then(|d| d.with_bar(1, Bar::Io { size: 0x20 }))
            .and_then(|d| {
                d.with_bar(
                    2,
                    Bar::Mem64 {
                        size: 0x1_0000_0000,
                        prefetchable: true,
                    },
                )
            })
            .expect("valid BARs")
    }

    #[test]
    fn ids_class_header() {
        let mut d = dev();
        assert_eq!(d.cfg_read(0, 4), 0x1234_8086);
        assert_eq!(d.cfg_read(0, 2), 0x8086);
        assert_eq!(d.cfg_read(2, 2), 0x1234);
        assert_eq!(d.cfg_read(1, 1), 0x80);
        assert_eq!(d.cfg_read(8, 4), 0x0200_0001);
        assert_eq!(d.cfg_read(0x0e, 1), 0);
        assert_eq!(d.cfg_read(0x3d, 1), 1);
        // Read-only ids.
        d.cfg_write(0, 4, 0);
        assert_eq!(d.cfg_read(0, 4), 0x1234_8086);
        // Command: only the writable bits.
        d.cfg_write(4, 2, 0xffff);
        assert_eq!(d.cfg_read(4, 2), u32::from(COMMAND_WMASK));
        assert_eq!(d.cfg_read(6, 2), 0, "status stays 0");
        // Device-specific storage and the extended space.
        d.cfg_write(0x40, 4, 0xcafe_f00d);
        assert_eq!(d.cfg_read(0x40, 4), 0xcafe_f00d);
        d.cfg_write(0x200, 4, 0x1234);
        assert_eq!(d.cfg_read(0x200, 4), 0);
        d.cfg_write(0x3c, 1, 0x0b);
        assert_eq!(d.cfg_read(0x3c, 2), 0x010b);
    }

    #[test]
    fn bar_sizing() {
        let mut d = dev();
        // BAR0: 4 KiB 32-bit memory.
        assert_eq!(d.cfg_read(0x10, 4), 0);
        d.cfg_write(0x10, 4, 0xffff_ffff);
        assert_eq!(d.cfg_read(0x10, 4), 0xffff_f000);
        d.cfg_write(0x10, 4, 0xfebf_0000);
        assert_eq!(d.cfg_read(0x10, 4), 0xfebf_0000);
        assert_eq!(d.bar_address(0), Some(0xfebf_0000));
        // BAR1: 32 ports of I/O, bit 0 set.
        d.cfg_write(0x14, 4, 0xffff_ffff);
        assert_eq!(d.cfg_read(0x14, 4), 0xffff_ffe1);
        d.cfg_write(0x14, 4, 0xc000);
        assert_eq!(d.cfg_read(0x14, 4), 0xc001);
        // BAR2/3: 4 GiB 64-bit prefetchable.
        assert_eq!(d.cfg_read(0x18, 4), 0xc);
        d.cfg_write(0x18, 4, 0xffff_ffff);
        d.cfg_write(0x1c, 4, 0xffff_ffff);
        assert_eq!(d.cfg_read(0x18, 4), 0x0000_000c);
        assert_eq!(d.cfg_read(0x1c, 4), 0xffff_ffff);
        d.cfg_write(0x1c, 4, 0x8);
        assert_eq!(d.bar_address(2), Some(0x8_0000_0000));
        assert_eq!(d.bar_address(3), None);
        // Unused BARs read 0 whatever is written.
        d.cfg_write(0x24, 4, 0xffff_ffff);
        assert_eq!(d.cfg_read(0x24, 4), 0);
        // Byte writes into a BAR.
        d.cfg_write(0x13, 1, 0xfa);
        assert_eq!(d.cfg_read(0x10, 4), 0xfabf_0000);
        d.reset();
        assert_eq!(d.cfg_read(0x10, 4), 0);
        assert_eq!(d.cfg_read(4, 2), 0);
        assert_eq!(d.cfg_read(0x40, 4), 0);
    }

    #[test]
    fn bar_declarations_are_checked() {
        let d = || PciFunction::new(1, 2);
        assert_eq!(
            d().with_bar(6, Bar::Io { size: 4 }).err(),
            Some(PciError::NoSuchBar(6))
        );
        assert_eq!(
            d().with_bar(
                5,
                Bar::Mem64 {
                    size: 16,
                    prefetchable: false
                }
            )
            .err(),
            Some(PciError::NoSuchBar(5))
        );
        assert!(matches!(
            d().with_bar(
                0,
                Bar::Mem32 {
                    size: 0x1001,
                    prefetchable: false
                }
            ),
            Err(PciError::InvalidSize { index: 0, .. })
        ));
        let wide = d()
            .with_bar(
                0,
                Bar::Mem64 {
                    size: 16,
                    prefetchable: false,
                },
            )
            .expect("ok");
        assert_eq!(
            wide.with_bar(1, Bar::Io { size: 4 }).err(),
            Some(PciError::BarTaken(1))
        );
    }

    use crate::client::IoDevice;
    use crate::devices::msi::{MsiConfig, MsiLog, MsiSignal, MsixConfig};
    use std::sync::Arc;

    const TABLE_AT: u32 = 0x800;

    /// A function with a vendor capability, MSI (4 vectors, 64-bit, masking) and MSI-X (8
    /// entries: table in BAR0 at 0x800, PBA in BAR0 at 0xc00).
    fn with_caps() -> (PciFunction, Msi, Msix, Arc<MsiLog>) {
        let log = Arc::new(MsiLog::new());
        let msi = Msi::new(
            MsiConfig {
                vectors: 4,
                addr64: true,
                per_vector_mask: true,
            },
            log.clone(),
        )
        .unwrap();
        let msix = Msix::new(
            MsixConfig {
                table_size: 8,
                table_bar: 0,
                table_offset: TABLE_AT,
                pba_bar: 0,
                pba_offset: 0xc00,
            },
            log.clone(),
        )
        .unwrap();
        let f = PciFunction::new(0x1af4, 0x1041)
            .with_subsystem(0x1af4, 0x0001)
            .with_interrupt_pin(2)
            .with_bar(
                0,
                Bar::Mem32 {
                    size: 0x1000,
                    prefetchable: false,
                },
            )
            .and_then(|f| f.with_capability(0x09, &[0x10, 0x20, 0x30], &[0x00, 0xff, 0x0f]))
            .and_then(|f| f.with_msi(&msi))
            .and_then(|f| f.with_msix(&msix))
            .unwrap();
        (f, msi, msix, log)
    }

    #[test]
    fn the_capability_chain_walks_from_0x34() {
        let (mut f, ..) = with_caps();
        assert_eq!(f.cfg_read(6, 2) & 0x10, 0x10, "status: capabilities list");
        let mut at = f.cfg_read(0x34, 1);
        let mut seen = Vec::new();
        while at != 0 {
            assert_eq!(at % 4, 0, "capabilities are dword aligned");
            assert!(at >= 0x40);
            seen.push((f.cfg_read(at, 1), at));
            at = f.cfg_read(at + 1, 1);
            assert!(seen.len() < 48, "the chain ends");
        }
        assert_eq!(seen, vec![(0x09, 0x40), (0x05, 0x48), (0x11, 0x60)]);
        assert_eq!(
            f.capabilities(),
            vec![(0x09, 0x40), (0x05, 0x48), (0x11, 0x60)]
        );
        // MSI 64-bit with masking: control = 64-bit | per-vector | MMC 2 (4 vectors).
        assert_eq!(f.cfg_read(0x4a, 2), 0x0184);
        // MSI-X: table size - 1, table offset | BIR, PBA offset | BIR.
        assert_eq!(f.cfg_read(0x60, 4), 0x0007_0011);
        assert_eq!(f.cfg_read(0x64, 4), TABLE_AT);
        assert_eq!(f.cfg_read(0x68, 4), 0xc00);
        // A function without capabilities says so.
        let mut plain = PciFunction::new(1, 2);
        assert_eq!(plain.cfg_read(6, 2), 0);
        assert_eq!(plain.cfg_read(0x34, 1), 0);
        // The subsystem ids and the interrupt pin read back, the line is the firmware's.
        assert_eq!(f.cfg_read(0x2c, 4), 0x0001_1af4);
        assert_eq!(f.cfg_read(0x3c, 2), 0x0200);
        f.cfg_write(0x3c, 2, 0xffff);
        assert_eq!(f.cfg_read(0x3c, 2), 0x02ff, "line writable, pin fixed");
        f.cfg_write(0x2c, 4, 0);
        assert_eq!(f.cfg_read(0x2c, 4), 0x0001_1af4);
    }

    #[test]
    fn capability_registers_keep_their_read_only_bits() {
        let (mut f, msi, msix, _) = with_caps();
        // Headers, status and the pointer are read-only.
        f.cfg_write(0x34, 1, 0x80);
        f.cfg_write(0x40, 2, 0xffff);
        f.cfg_write(0x48, 2, 0xffff);
        f.cfg_write(0x60, 2, 0);
        f.cfg_write(6, 2, 0);
        assert_eq!(f.cfg_read(0x34, 1), 0x40);
        assert_eq!(f.cfg_read(0x40, 2), 0x4809);
        assert_eq!(f.cfg_read(0x48, 2), 0x6005);
        assert_eq!(f.cfg_read(0x60, 2), 0x0011);
        assert_eq!(f.cfg_read(6, 2) & 0x10, 0x10);
        // The vendor capability: body byte 0 fixed, byte 1 writable, byte 2 low nibble.
        f.cfg_write(0x42, 4, 0xffff_ffff);
        assert_eq!(f.cfg_read(0x42, 1), 0x10);
        assert_eq!(f.cfg_read(0x43, 1), 0xff);
        assert_eq!(f.cfg_read(0x44, 1), 0x3f);
        // MSI control: only enable and multiple message enable.
        f.cfg_write(0x4a, 2, 0xffff);
        assert_eq!(f.cfg_read(0x4a, 2), 0x0184 | 0x71);
        assert!(msi.enabled());
        assert_eq!(msi.enabled_vectors(), 4, "MME 7 is capped at the capable 4");
        // The address's low 2 bits are 0; upper address and data are writable.
        f.cfg_write(0x4c, 4, 0xffff_ffff);
        f.cfg_write(0x50, 4, 0x1234_5678);
        f.cfg_write(0x54, 4, 0xffff_ffff);
        assert_eq!(f.cfg_read(0x4c, 4), 0xffff_fffc);
        assert_eq!(f.cfg_read(0x50, 4), 0x1234_5678);
        assert_eq!(f.cfg_read(0x54, 4), 0xffff, "data is 16 bits");
        // Mask bits only for the 4 vectors; pending is read-only.
        f.cfg_write(0x58, 4, 0xffff_ffff);
        f.cfg_write(0x5c, 4, 0xffff_ffff);
        assert_eq!(f.cfg_read(0x58, 4), 0xf);
        assert_eq!(f.cfg_read(0x5c, 4), 0);
        // MSI-X: table size, offsets fixed; bits 14 and 15 writable.
        f.cfg_write(0x60, 4, 0xffff_ffff);
        f.cfg_write(0x64, 4, 0);
        f.cfg_write(0x68, 4, 0);
        assert_eq!(f.cfg_read(0x62, 2), 0xc007);
        assert_eq!(f.cfg_read(0x64, 4), TABLE_AT);
        assert_eq!(f.cfg_read(0x68, 4), 0xc00);
        assert!(msix.enabled() && msix.function_masked());
        // Past the capabilities: device-specific storage again.
        f.cfg_write(0x70, 4, 0xdead_beef);
        assert_eq!(f.cfg_read(0x70, 4), 0xdead_beef);
        // A reset restores everything.
        f.reset();
        assert!(!msi.enabled() && !msix.enabled());
        assert_eq!(f.cfg_read(0x4a, 2), 0x0184);
        assert_eq!(f.cfg_read(0x4c, 4), 0);
        assert_eq!(f.cfg_read(0x62, 2), 0x0007);
        assert_eq!(f.cfg_read(0x43, 1), 0x20);
        assert_eq!(f.cfg_read(0x48, 2), 0x6005, "the chain survives the reset");
    }

    #[test]
    fn msi_delivers_masks_and_delivers_a_pending_vector_once_on_unmask() {
        let (mut f, msi, _, log) = with_caps();
        assert_eq!(msi.signal(0), MsiSignal::Disabled);
        f.cfg_write(0x4c, 4, 0xfee0_1000);
        f.cfg_write(0x50, 4, 0);
        f.cfg_write(0x54, 2, 0x40);
        // Enable with 4 vectors (MME = 2).
        f.cfg_write(0x4a, 2, 0x21);
        assert_eq!(msi.signal(0), MsiSignal::Delivered);
        assert_eq!(msi.signal(3), MsiSignal::Delivered);
        assert_eq!(msi.signal(4), MsiSignal::NoSuchVector);
        assert_eq!(log.take(), vec![(0xfee0_1000, 0x40), (0xfee0_1000, 0x43)]);
        // Mask vector 1: its signal is held pending.
        f.cfg_write(0x58, 4, 0b10);
        assert_eq!(msi.signal(1), MsiSignal::Pending);
        assert_eq!(msi.signal(1), MsiSignal::Pending, "one pending bit");
        assert_eq!(f.cfg_read(0x5c, 4), 0b10);
        assert!(log.is_empty());
        // Unmasking vector 0 (still masked: 1) delivers nothing.
        f.cfg_write(0x58, 4, 0b10);
        assert!(log.is_empty());
        f.cfg_write(0x58, 4, 0);
        assert_eq!(log.take(), vec![(0xfee0_1000, 0x41)]);
        assert_eq!(f.cfg_read(0x5c, 4), 0);
        f.cfg_write(0x58, 4, 0);
        assert!(log.is_empty(), "delivered exactly once");
        // A 32-bit function with one vector and no masking.
        let log32 = Arc::new(MsiLog::new());
        let one = Msi::new(
            MsiConfig {
                vectors: 1,
                addr64: false,
                per_vector_mask: false,
            },
            log32.clone(),
        )
        .unwrap();
        let mut g = PciFunction::new(1, 2).with_msi(&one).unwrap();
        assert_eq!(g.cfg_read(0x40, 4), 0x0000_0005);
        g.cfg_write(0x44, 4, 0xfee0_0000);
        g.cfg_write(0x48, 2, 0x31);
        g.cfg_write(0x42, 2, 0x71);
        assert_eq!(one.enabled_vectors(), 1);
        assert_eq!(one.signal(0), MsiSignal::Delivered);
        assert_eq!(one.signal(1), MsiSignal::NoSuchVector);
        assert_eq!(log32.take(), vec![(0xfee0_0000, 0x31)]);
        assert_eq!(one.message(), (0xfee0_0000, 0x31));
        assert!(
            Msi::new(
                MsiConfig {
                    vectors: 3,
                    ..MsiConfig::default()
                },
                log32
            )
            .is_err()
        );
    }

    #[test]
    fn the_msix_table_and_pba_are_served_through_the_bar() {
        let (mut f, _, msix, log) = with_caps();
        let mut bar = msix.bar_device(0);
        let entry = |k: u64| u64::from(TABLE_AT) + 16 * k;
        // Power-on: every entry masked.
        assert_eq!(bar.read(entry(3) + 12, 4), 1);
        assert_eq!(msix.signal(3), MsiSignal::Disabled);
        // Program entry 3 (a qword write of the address, then data, then unmask).
        bar.write(entry(3), 8, 0x0000_0001_fee0_2003);
        bar.write(entry(3) + 8, 4, 0x4045);
        assert_eq!(
            bar.read(entry(3), 8),
            0x0000_0001_fee0_2000,
            "bits 1:0 are 0"
        );
        assert_eq!(bar.read(entry(3) + 8, 4), 0x4045);
        bar.write(entry(3) + 12, 4, 0xffff_fffe);
        assert_eq!(
            bar.read(entry(3) + 12, 4),
            0,
            "only the mask bit is writable"
        );
        // Enabled but function-masked: pending in the PBA.
        f.cfg_write(0x62, 2, 0xc000);
        assert_eq!(msix.signal(3), MsiSignal::Pending);
        assert_eq!(bar.read(0xc00, 8), 1 << 3);
        bar.write(0xc00, 8, 0);
        assert_eq!(bar.read(0xc00, 8), 1 << 3, "the PBA is read-only");
        assert!(log.is_empty());
        // Clearing the function mask delivers it, once.
        f.cfg_write(0x62, 2, 0x8000);
        assert_eq!(log.take(), vec![(0x1_fee0_2000, 0x4045)]);
        assert_eq!(bar.read(0xc00, 8), 0);
        f.cfg_write(0x62, 2, 0x8000);
        assert!(log.is_empty());
        // Enabled and unmasked: delivered at once.
        assert_eq!(msix.signal(3), MsiSignal::Delivered);
        assert_eq!(log.take().len(), 1);
        // The entry's own mask.
        bar.write(entry(3) + 12, 4, 1);
        assert_eq!(msix.signal(3), MsiSignal::Pending);
        assert!(msix.is_pending(3));
        assert_eq!(bar.read(0xc00, 4), 1 << 3);
        bar.write(entry(3) + 12, 4, 0);
        assert_eq!(log.take(), vec![(0x1_fee0_2000, 0x4045)]);
        assert!(!msix.is_pending(3));
        // Entry 0 is still masked: pending, not delivered by entry 3's unmask.
        assert_eq!(msix.signal(0), MsiSignal::Pending);
        bar.write(entry(3) + 12, 4, 0);
        assert!(log.is_empty());
        // Bounds: vector 8 does not exist; past the table reads 0 and ignores writes.
        assert_eq!(msix.signal(8), MsiSignal::NoSuchVector);
        assert_eq!(msix.entry(8), None);
        assert_eq!(bar.read(entry(8), 4), 0);
        bar.write(entry(8), 4, 0x1234);
        assert_eq!(bar.read(entry(8), 4), 0);
        // An access straddling the table's end: the bytes inside count, the rest read 0.
        bar.write(entry(7) + 12, 8, 0xffff_ffff_0000_0000);
        assert_eq!(bar.read(entry(7) + 12, 8), 0);
        assert_eq!(bar.read(0xfff, 1), 0);
        assert_eq!(bar.read(u64::MAX, 8), 0, "no overflow");
        assert_eq!(
            msix.bar_read(1, u64::from(TABLE_AT), 4),
            None,
            "another BAR"
        );
        // A reset masks every entry again and drops the pending bits.
        f.reset();
        assert_eq!(bar.read(entry(3) + 12, 4), 1);
        assert!(!msix.is_pending(0));
        assert_eq!(msix.entry(3), Some((0, 0, true)));
    }

    #[test]
    fn capability_shapes_are_checked() {
        let log: Arc<MsiLog> = Arc::new(MsiLog::new());
        let cfg = |table_bar, table_offset, table_size| MsixConfig {
            table_size,
            table_bar,
            table_offset,
            pba_bar: table_bar,
            pba_offset: 0,
        };
        assert!(Msix::new(cfg(0, 0x100, 0), log.clone()).is_err());
        assert!(Msix::new(cfg(0, 0x100, 2049), log.clone()).is_err());
        assert!(Msix::new(cfg(6, 0x100, 1), log.clone()).is_err());
        assert!(Msix::new(cfg(0, 0x104, 1), log.clone()).is_err());
        assert!(
            Msix::new(cfg(0, 0, 1), log.clone()).is_err(),
            "table over the PBA"
        );
        let m = Msix::new(cfg(0, 0x100, 64), log.clone()).unwrap();
        let f = || PciFunction::new(1, 2);
        assert!(f().with_msix(&m).is_err(), "BAR0 not declared");
        let io = f().with_bar(0, Bar::Io { size: 0x100 }).unwrap();
        assert!(io.with_msix(&m).is_err(), "an I/O BAR");
        let small = f()
            .with_bar(
                0,
                Bar::Mem32 {
                    size: 0x400,
                    prefetchable: false,
                },
            )
            .unwrap();
        assert!(small.with_msix(&m).is_err(), "0x100 + 64 * 16 > 0x400");
        // 0xc0 bytes of capabilities at most.
        let mut g = f();
        for _ in 0..6 {
            g = g.with_capability(0x09, &[0; 30], &[]).unwrap();
        }
        assert_eq!(
            g.with_capability(0x09, &[0; 30], &[]).err(),
            Some(PciError::NoCapabilitySpace(32))
        );
    }
}
