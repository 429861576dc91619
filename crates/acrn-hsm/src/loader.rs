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

/// Where [`load_bzimage`] puts things (guest-physical).
pub mod bz {
    /// The 64-bit GDT (`__BOOT_CS` 0x10, `__BOOT_DS` 0x18).
    pub const GDT: u64 = 0x500;
    /// The zero page (`struct boot_params`).
    pub const ZERO_PAGE: u64 = 0x7000;
    /// PML4; the PDPT follows, then four page directories (identity map of 4 GiB, 2 MiB pages).
    pub const PML4: u64 = 0x9000;
    /// The command line.
    pub const CMDLINE: u64 = 0x20000;
    /// The protected-mode kernel.
    pub const KERNEL: u64 = 0x100000;
}

/// What [`load_bzimage`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelImage {
    /// Boot protocol version (e.g. 0x020f).
    pub protocol: u16,
    /// Guest-physical load address of the protected-mode kernel.
    pub load_addr: u64,
    /// The 64-bit entry point (`load_addr + 0x200`).
    pub entry: u64,
    /// Where the initrd went (0: none) and its size.
    pub initrd: (u64, u64),
    /// The e820 map given to the kernel: `(addr, size, type)`.
    pub e820: Vec<(u64, u64, u32)>,
}

fn rd16(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn rd32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

/// Loads a Linux bzImage as the boot protocol (`Documentation/arch/x86/boot.rst`, ≥ 2.06)
/// describes for a 64-bit entry: the protected-mode kernel at 1 MiB, a zero page with the setup
/// header, the command line, the initrd near the top of low RAM, an e820 map of the RAM, the
/// 64-bit entry (`load_addr + 0x200`) with identity-mapped page tables, a GDT with `__BOOT_CS`
/// and `__BOOT_DS`, RSI = the zero page; sets vCPU 0's registers with SET_VCPU_REGS. No ACPI
/// or MP table is written (a kernel then finds no IOAPIC: it runs on the PIC).
pub fn load_bzimage(
    vm: &Vm,
    ram: &GuestRam,
    image: &[u8],
    initrd: Option<&[u8]>,
    cmdline: &str,
) -> Result<KernelImage> {
    let bad = |what: &'static str| mem_err(crate::Errno::EINVAL, what);
    if image.len() < 0x400 || rd16(image, 0x1fe) != 0xaa55 || &image[0x202..0x206] != b"HdrS" {
        return Err(bad("bzImage: no setup header"));
    }
    let protocol = rd16(image, 0x206);
    if protocol < 0x0206 {
        return Err(bad("bzImage: boot protocol below 2.06"));
    }
    if image[0x236] & 1 == 0 {
        return Err(bad("bzImage: no 64-bit entry (XLF_KERNEL_64)"));
    }
    let setup_sects = match image[0x1f1] {
        0 => 4,
        n => usize::from(n),
    };
    let kernel_off = (setup_sects + 1) * 512;
    if kernel_off >= image.len() {
        return Err(bad("bzImage: setup larger than the image"));
    }
    let low = ram.low_len();
    let kernel = &image[kernel_off..];
    let init_size = u64::from(rd32(image, 0x260)).max(kernel.len() as u64);
    if bz::KERNEL + init_size > low {
        return Err(mem_err(crate::Errno::ENOMEM, "bzImage: RAM too small"));
    }
    ram.write(bz::KERNEL, kernel)?;
    // The zero page: the setup header copied in place, then our fields.
    let mut zp = vec![0u8; 4096];
    let hdr_end = (0x202 + usize::from(image[0x201]))
        .min(0x290)
        .min(image.len());
    zp[0x1f1..hdr_end].copy_from_slice(&image[0x1f1..hdr_end]);
    zp[0x210] = 0xff; // type_of_loader: undefined
    zp[0x211] |= 0x01 | 0x80; // LOADED_HIGH, CAN_USE_HEAP
    zp[0x224..0x226].copy_from_slice(&0xfe00u16.to_le_bytes()); // heap_end_ptr
    let max_cmd = if protocol >= 0x0206 {
        rd32(image, 0x238) as usize
    } else {
        255
    };
    let cmd = cmdline.as_bytes();
    if cmd.len() > max_cmd {
        return Err(bad("bzImage: command line too long"));
    }
    let mut c = cmd.to_vec();
    c.push(0);
    ram.write(bz::CMDLINE, &c)?;
    zp[0x228..0x22c].copy_from_slice(&(bz::CMDLINE as u32).to_le_bytes());
    let mut placed = (0, 0);
    if let Some(rd) = initrd {
        let max = u64::from(rd32(image, 0x22c)).min(low - 1);
        let size = rd.len() as u64;
        let addr = (max + 1).saturating_sub(size) & !0xfff;
        if addr < bz::KERNEL + init_size {
            return Err(mem_err(
                crate::Errno::ENOMEM,
                "bzImage: no room for the initrd",
            ));
        }
        ram.write(addr, rd)?;
        zp[0x218..0x21c].copy_from_slice(&(addr as u32).to_le_bytes());
        zp[0x21c..0x220].copy_from_slice(&(size as u32).to_le_bytes());
        placed = (addr, size);
    }
    // e820: low RAM below the EBDA, the legacy hole, RAM from 1 MiB, RAM above 4 GiB.
    let mut e820: Vec<(u64, u64, u32)> =
        vec![(0, 0x9fc00, 1), (0x9fc00, 0x400, 2), (0xe0000, 0x20000, 2)];
    e820.push((0x10_0000, low - 0x10_0000, 1));
    if ram.high_len() > 0 {
        e820.push((1 << 32, ram.high_len(), 1));
    }
    zp[0x1e8] = e820.len() as u8;
    for (i, (a, s, t)) in e820.iter().enumerate() {
        let o = 0x2d0 + 20 * i;
        zp[o..o + 8].copy_from_slice(&a.to_le_bytes());
        zp[o + 8..o + 16].copy_from_slice(&s.to_le_bytes());
        zp[o + 16..o + 20].copy_from_slice(&t.to_le_bytes());
    }
    ram.write(bz::ZERO_PAGE, &zp)?;
    // GDT: null, null, __BOOT_CS (64-bit code), __BOOT_DS.
    let gdt: Vec<u8> = [0u64, 0, 0x00af_9b00_0000_ffff, 0x00cf_9300_0000_ffff]
        .iter()
        .flat_map(|q| q.to_le_bytes())
        .collect();
    ram.write(bz::GDT, &gdt)?;
    // Identity map of the first 4 GiB with 2 MiB pages.
    let pdpt = bz::PML4 + 0x1000;
    ram.write(bz::PML4, &(pdpt | 3).to_le_bytes())?;
    for i in 0..4u64 {
        let pd = pdpt + 0x1000 * (i + 1);
        ram.write(pdpt + 8 * i, &(pd | 3).to_le_bytes())?;
        let entries: Vec<u8> = (0..512u64)
            .flat_map(|j| (((i << 30) | (j << 21)) | 0x83).to_le_bytes())
            .collect();
        ram.write(pd, &entries)?;
    }
    let entry = bz::KERNEL + 0x200;
    let mut gprs = [0u64; 16];
    gprs[6] = bz::ZERO_PAGE; // rsi
    let regs = VcpuRegs {
        vcpu_id: 0,
        gprs,
        gdt: (31, bz::GDT),
        idt: (0, 0),
        rip: entry,
        cs_base: 0,
        cr0: 0x8000_0031,
        cr4: 0x20,
        cr3: bz::PML4,
        ia32_efer: 0x500,
        rflags: 2,
        cs_ar: 0xa09b,
        cs_limit: 0xffff_ffff,
        selectors: [0x10, 0x18, 0x18, 0x18, 0x18, 0x18, 0, 0],
    };
    vm.set_vcpu_regs(&regs)?;
    Ok(KernelImage {
        protocol,
        load_addr: bz::KERNEL,
        entry,
        initrd: placed,
        e820,
    })
}
