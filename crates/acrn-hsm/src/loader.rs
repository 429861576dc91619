//! Loaders, as the ACRN device model's `sw_load` does (`devicemodel/core/sw_load_*.c`): guest RAM
//! allocated by the library and mapped with SET_MEMSEG, then
//!
//! * [`load_firmware`]: a BIOS image (e.g. SeaBIOS's `bios.bin`) mapped just below 4 GiB, so its
//!   reset vector is at 0xFFFFFFF0, and its last 128 KiB copied to 0xE0000–0xFFFFF of RAM (where
//!   a PC's chipset aliases the ROM at reset); the vCPU starts at the architectural reset state;
//! * [`load_raw`]: a raw binary at a guest-physical address, with initial registers (the kernel's
//!   `samples/acrn/vm-sample.c` payload style).
//!
//! [`GuestRam`] is the RAM layout: one segment from 0 up to 3 GiB, the rest above 4 GiB.

use std::sync::Arc;

use crate::memory::UserPages;
use crate::vm::{Error, Result, VcpuRegs, Vm};

/// Where RAM below 4 GiB ends at most (the PCI hole starts here).
pub const LOW_RAM_END: u64 = 0xc000_0000;
/// The firmware shadow below 1 MiB.
pub const SHADOW_BASE: u64 = 0xe0000;
/// Its size.
pub const SHADOW_SIZE: usize = 128 * 1024;

/// `ACRN_MEM_ACCESS_RWX`.
const RWX: u32 = 0x7;

/// The guest's RAM: the segments mapped with SET_MEMSEG.
#[derive(Debug, Clone)]
pub struct GuestRam {
    /// RAM from guest-physical 0.
    pub low: Arc<UserPages>,
    /// RAM from 4 GiB, if any.
    pub high: Option<Arc<UserPages>>,
}

impl GuestRam {
    /// Allocates `bytes` of RAM (rounded up to 4 KiB) and maps it into `vm`.
    pub fn map(vm: &Vm, bytes: u64) -> Result<GuestRam> {
        let bytes = bytes.div_ceil(4096) * 4096;
        let low_len = bytes.min(LOW_RAM_END);
        let low = Arc::new(UserPages::new(low_len as usize).map_err(|e| mem_err(e, "RAM"))?);
        vm.map_ram(0, low.clone(), RWX)?;
        let high = if bytes > low_len {
            let h = Arc::new(
                UserPages::new((bytes - low_len) as usize).map_err(|e| mem_err(e, "high RAM"))?,
            );
            vm.map_ram(1 << 32, h.clone(), RWX)?;
            Some(h)
        } else {
            None
        };
        Ok(GuestRam { low, high })
    }

    /// Bytes below 4 GiB.
    pub fn low_len(&self) -> u64 {
        self.low.len() as u64
    }

    /// Bytes above 4 GiB.
    pub fn high_len(&self) -> u64 {
        self.high.as_ref().map_or(0, |h| h.len() as u64)
    }

    /// Writes `data` at guest-physical `gpa` (low RAM).
    pub fn write(&self, gpa: u64, data: &[u8]) -> Result<()> {
        self.low
            .write_bytes(gpa as usize, data)
            .map_err(|e| mem_err(e, "guest RAM write"))
    }
}

fn mem_err(errno: crate::Errno, what: &'static str) -> Error {
    Error { op: what, errno }
}

/// A firmware image loaded: its ROM mapping (kept alive) and the image.
#[derive(Debug, Clone)]
pub struct Firmware {
    /// The ROM pages mapped below 4 GiB.
    pub rom: Arc<UserPages>,
    /// The image as loaded.
    pub image: Arc<Vec<u8>>,
    /// Guest-physical base of the ROM.
    pub base: u64,
}

impl Firmware {
    /// The last (up to) 128 KiB of the image: what sits at [`SHADOW_BASE`].
    pub fn shadow(&self) -> Arc<Vec<u8>> {
        let n = self.image.len().min(SHADOW_SIZE);
        Arc::new(self.image[self.image.len() - n..].to_vec())
    }
}

/// Maps `image` (a multiple of 4 KiB, at most 16 MiB) so that it ends at 4 GiB, and copies its
/// last 128 KiB to the RAM shadow at 0xE0000 (`ram` must cover 1 MiB). No SET_VCPU_REGS: the
/// vCPU starts at the reset vector (CS base 0xFFFF0000, IP 0xFFF0).
pub fn load_firmware(vm: &Vm, ram: &GuestRam, image: Vec<u8>) -> Result<Firmware> {
    let len = image.len();
    if len == 0 || len % 4096 != 0 || len > 16 << 20 {
        return Err(mem_err(crate::Errno::EINVAL, "firmware size"));
    }
    if ram.low_len() < 1 << 20 {
        return Err(mem_err(crate::Errno::EINVAL, "RAM below 1 MiB"));
    }
    let rom = Arc::new(UserPages::new(len).map_err(|e| mem_err(e, "firmware ROM"))?);
    rom.write_bytes(0, &image)
        .map_err(|e| mem_err(e, "firmware ROM"))?;
    let base = (1u64 << 32) - len as u64;
    vm.map_ram(base, rom.clone(), 0x5)?;
    let fw = Firmware {
        rom,
        image: Arc::new(image),
        base,
    };
    let shadow = fw.shadow();
    ram.write(0x10_0000 - shadow.len() as u64, &shadow)?;
    Ok(fw)
}

/// Copies a raw binary to guest-physical `addr` and sets vCPU 0's registers to `regs`.
pub fn load_raw(vm: &Vm, ram: &GuestRam, addr: u64, payload: &[u8], regs: &VcpuRegs) -> Result<()> {
    ram.write(addr, payload)?;
    vm.set_vcpu_regs(regs)
}

/// The initial registers of a real-mode payload at `addr` (< 1 MiB): CS:IP = `addr >> 4 : 0`
/// encoded as ACRN's `vm-sample.c` does (CS base, limit 0xFFFF, access rights 0x9F, CR0 = ET|NE).
pub fn real_mode_regs(addr: u64) -> VcpuRegs {
    VcpuRegs {
        rip: addr & 0xffff,
        cs_base: addr & !0xffff,
        selectors: [((addr & !0xffff) >> 4) as u16, 0, 0, 0, 0, 0, 0, 0],
        cr0: 0x30,
        cs_ar: 0x9f,
        cs_limit: 0xffff,
        rflags: 2,
        ..Default::default()
    }
}
