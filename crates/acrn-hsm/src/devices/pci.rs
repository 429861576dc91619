//! The configuration space of one PCI function (type 0 header), with BARs that size the way
//! firmware probes them: write all ones, read back the size mask.
//!
//! | reg | field | access |
//! |---|---|---|
//! | 0x00 / 0x02 | vendor / device id | read-only |
//! | 0x04 | command | bits IO, MEM, bus master, parity, SERR, INTx disable writable |
//! | 0x06 | status | read-only 0 (no capabilities) |
//! | 0x08..0x0b | revision, prog-if, subclass, class | read-only |
//! | 0x0c / 0x0d | cache line size / latency timer | read-write |
//! | 0x0e | header type 0 (multi-function bit optional) | read-only |
//! | 0x10..0x27 | BAR0..BAR5 | address bits above the size writable; type bits fixed |
//! | 0x2c / 0x2e | subsystem vendor / id | read-only |
//! | 0x3c / 0x3d | interrupt line / pin | line read-write, pin read-only |
//! | 0x40..0xff | device-specific | read-write storage |
//! | 0x100.. | extended space | reads 0, writes ignored |
//!
//! Any 1/2/4-byte access at any `reg` is served byte by byte from these rules (little-endian).

use std::fmt;

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

/// A refused [`PciFunction::with_bar`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PciError {
    /// BAR index above 5 (or 5 for a 64-bit BAR, which needs two registers).
    #[error("BAR{0} does not exist (or has no room for a 64-bit BAR)")]
    NoSuchBar(usize),
    /// The register (or the upper half of a 64-bit BAR) is already used.
    #[error("BAR{0} is already used")]
    BarTaken(usize),
    /// Size not a power of two, or out of the allowed range.
    #[error("BAR{index}: invalid size {size:#x}")]
    InvalidSize {
        /// The BAR.
        index: usize,
        /// The size given.
        size: u64,
    },
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
}

impl fmt::Debug for PciFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PciFunction")
            .field("name", &self.name)
            .field("vendor", &format_args!("{:#06x}", self.vendor_id()))
            .field("device", &format_args!("{:#06x}", self.device_id()))
            .field("bars", &self.bar_kinds)
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
        (self.dword(reg / 4) >> (8 * (reg % 4))) as u8
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
        for k in 0..usize::from(size.min(4)) {
            self.write_byte(reg + k, (value >> (8 * k)) as u8);
        }
    }

    fn reset(&mut self) {
        self.cfg = self.initial;
        for b in &mut self.bars {
            b.value = 0;
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
}
