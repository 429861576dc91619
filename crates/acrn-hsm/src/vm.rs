//! The typed API, in the style of kvm-ioctls: [`Hsm`] is one open device (real or emulated),
//! [`Vm`] the VM it holds (like `VmFd`). Every method is built on the raw
//! [`HsmBackend::ioctl`], so the typed and raw interfaces agree by construction.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::abi::{self, le};
use crate::backend::{HsmBackend, IoctlArg};
use crate::errno::Errno;
use crate::guest_memory::GuestMemory;
use crate::memory::{UserPages, alloc_page};
use crate::sys::HsmDevice;

/// An ioctl that failed: which one, and the errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{op}: {errno}")]
pub struct Error {
    /// The operation (`"CREATE_VM"`, `"open /dev/acrn_hsm"`...).
    pub op: &'static str,
    /// The errno.
    pub errno: Errno,
}

impl Error {
    /// The errno's name (`"EINVAL"`).
    pub fn code(&self) -> &'static str {
        self.errno.name()
    }
}

/// `Result` of the typed API.
pub type Result<T> = std::result::Result<T, Error>;

fn e(op: &'static str) -> impl Fn(Errno) -> Error {
    move |errno| Error { op, errno }
}

/// The arguments of CREATE_VM.
#[derive(Debug, Clone, Default)]
pub struct VmConfig {
    /// vCPUs wanted: used to derive `cpu_affinity` (`(1 << vcpu_num) - 1`) when that is 0. The
    /// hypervisor decides: it creates one vCPU per pCPU of the affinity.
    pub vcpu_num: u16,
    /// The 16 `uuid` bytes, read by the hypervisor as the VM's name. All zero: a name unique in
    /// this process is generated (two VMs with one name collide in the hypervisor).
    pub uuid: [u8; 16],
    /// `vm_flag`, e.g. [`crate::GUEST_FLAG_IO_COMPLETION_POLLING`].
    pub vm_flag: u64,
    /// `cpu_affinity` (pCPU bitmap); 0 = derived from `vcpu_num`, or all pCPUs if that is 0 too.
    pub cpu_affinity: u64,
    /// The ioreq page; `None`: one is allocated.
    pub ioreq_page: Option<Arc<UserPages>>,
}

/// `struct acrn_vm_memmap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemMap {
    /// `ACRN_MEMMAP_RAM` (0) or `ACRN_MEMMAP_MMIO` (1).
    pub ty: u32,
    /// `ACRN_MEM_ACCESS_*` bits (and type bits, ignored by HSM).
    pub attr: u32,
    /// Guest-physical address.
    pub user_vm_pa: u64,
    /// RAM: the user address of the backing memory (`vma_base`); MMIO: `service_vm_pa`.
    pub vma_base: u64,
    /// Length in bytes.
    pub len: u64,
}

impl MemMap {
    /// The 32 bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        use abi::memmap as o;
        let mut b = [0u8; 32];
        le::put_u32(&mut b, o::TYPE, self.ty);
        le::put_u32(&mut b, o::ATTR, self.attr);
        le::put_u64(&mut b, o::USER_VM_PA, self.user_vm_pa);
        le::put_u64(&mut b, o::VMA_BASE, self.vma_base);
        le::put_u64(&mut b, o::LEN, self.len);
        b
    }
}

/// `struct acrn_vcpu_regs`: the initial state of one vCPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VcpuRegs {
    /// vCPU id.
    pub vcpu_id: u16,
    /// rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8..r15.
    pub gprs: [u64; 16],
    /// GDT (limit, base).
    pub gdt: (u16, u64),
    /// IDT (limit, base).
    pub idt: (u16, u64),
    /// rip.
    pub rip: u64,
    /// CS base.
    pub cs_base: u64,
    /// cr0.
    pub cr0: u64,
    /// cr4.
    pub cr4: u64,
    /// cr3.
    pub cr3: u64,
    /// IA32_EFER.
    pub ia32_efer: u64,
    /// rflags.
    pub rflags: u64,
    /// CS access rights.
    pub cs_ar: u32,
    /// CS limit.
    pub cs_limit: u32,
    /// cs, ss, ds, es, fs, gs, ldt, tr selectors.
    pub selectors: [u16; 8],
}

impl VcpuRegs {
    /// The 296 bytes (reserved fields zero).
    pub fn to_bytes(&self) -> [u8; 296] {
        use abi::{regs as r, vcpu_regs as o};
        let mut b = [0u8; 296];
        le::put_u16(&mut b, o::VCPU_ID, self.vcpu_id);
        let at = |off: usize| o::REGS + off;
        for (i, g) in self.gprs.iter().enumerate() {
            le::put_u64(&mut b, at(r::GPRS + 8 * i), *g);
        }
        le::put_u16(&mut b, at(r::GDT_LIMIT), self.gdt.0);
        le::put_u64(&mut b, at(r::GDT_BASE), self.gdt.1);
        le::put_u16(&mut b, at(r::IDT_LIMIT), self.idt.0);
        le::put_u64(&mut b, at(r::IDT_BASE), self.idt.1);
        for (off, v) in [
            (r::RIP, self.rip),
            (r::CS_BASE, self.cs_base),
            (r::CR0, self.cr0),
            (r::CR4, self.cr4),
            (r::CR3, self.cr3),
            (r::IA32_EFER, self.ia32_efer),
            (r::RFLAGS, self.rflags),
        ] {
            le::put_u64(&mut b, at(off), v);
        }
        le::put_u32(&mut b, at(r::CS_AR), self.cs_ar);
        le::put_u32(&mut b, at(r::CS_LIMIT), self.cs_limit);
        for (i, s) in self.selectors.iter().enumerate() {
            le::put_u16(&mut b, at(r::SELECTORS + 2 * i), *s);
        }
        b
    }
}

/// `struct acrn_ptdev_irq`: an INTx remapping for a passthrough device
/// (SET/RESET_PTDEV_INTR).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PtdevIrq {
    /// `ACRN_PTDEV_IRQ_INTX` (0), MSI (1), MSI-X (2); the hypervisor accepts only INTx.
    pub ty: u32,
    /// The bdf the guest sees (`bus << 8 | dev << 3 | func`).
    pub virt_bdf: u16,
    /// The physical bdf.
    pub phys_bdf: u16,
    /// The guest GSI (or vPIC pin).
    pub virt_pin: u32,
    /// The physical GSI.
    pub phys_pin: u32,
    /// `virt_pin` is a vPIC pin.
    pub is_pic_pin: bool,
}

impl PtdevIrq {
    /// The 20 bytes.
    pub fn to_bytes(&self) -> [u8; 20] {
        use abi::ptdev_irq as o;
        let mut b = [0u8; 20];
        le::put_u32(&mut b, o::TYPE, self.ty);
        le::put_u16(&mut b, o::VIRT_BDF, self.virt_bdf);
        le::put_u16(&mut b, o::PHYS_BDF, self.phys_bdf);
        le::put_u32(&mut b, o::VIRT_PIN, self.virt_pin);
        le::put_u32(&mut b, o::PHYS_PIN, self.phys_pin);
        le::put_u32(&mut b, o::IS_PIC_PIN, u32::from(self.is_pic_pin));
        b
    }
}

/// `struct acrn_pcidev`: a physical PCI device to pass through (ASSIGN/DEASSIGN_PCIDEV).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PciDev {
    /// Flags (`ACRN_PTDEV_QUIRK_ASSIGN` = 1: the device model keeps the config space).
    pub ty: u32,
    /// The bdf the guest sees.
    pub virt_bdf: u16,
    /// The physical bdf.
    pub phys_bdf: u16,
    /// Interrupt line.
    pub intr_line: u8,
    /// Interrupt pin.
    pub intr_pin: u8,
    /// The BARs as the guest sees them.
    pub bar: [u32; 6],
}

impl PciDev {
    /// The 36 bytes.
    pub fn to_bytes(&self) -> [u8; 36] {
        use abi::pcidev as o;
        let mut b = [0u8; 36];
        le::put_u32(&mut b, o::TYPE, self.ty);
        le::put_u16(&mut b, o::VIRT_BDF, self.virt_bdf);
        le::put_u16(&mut b, o::PHYS_BDF, self.phys_bdf);
        b[o::INTR_LINE] = self.intr_line;
        b[o::INTR_PIN] = self.intr_pin;
        for (i, v) in self.bar.iter().enumerate() {
            le::put_u32(&mut b, o::BAR + 4 * i, *v);
        }
        b
    }
}

/// One resource of an [`MmioDev`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MmioRes {
    /// Guest-physical address.
    pub user_vm_pa: u64,
    /// Host-physical address.
    pub host_pa: u64,
    /// Size (a multiple of 4 KiB; 0 = unused).
    pub size: u64,
    /// Memory type.
    pub mem_type: u64,
}

/// `struct acrn_mmiodev`: a platform MMIO device to pass through (ASSIGN/DEASSIGN_MMIODEV).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MmioDev {
    /// Name (NUL-padded).
    pub name: [u8; 8],
    /// Up to three resources.
    pub res: [MmioRes; 3],
}

impl MmioDev {
    /// The 104 bytes.
    pub fn to_bytes(&self) -> [u8; 104] {
        use abi::mmiodev as o;
        let mut b = [0u8; 104];
        b[o::NAME..o::NAME + 8].copy_from_slice(&self.name);
        for (i, r) in self.res.iter().enumerate() {
            let base = o::RES + o::RES_SIZE * i;
            le::put_u64(&mut b, base, r.user_vm_pa);
            le::put_u64(&mut b, base + 8, r.host_pa);
            le::put_u64(&mut b, base + 16, r.size);
            le::put_u64(&mut b, base + 24, r.mem_type);
        }
        b
    }
}

/// `struct acrn_vdev`: a device the hypervisor emulates (CREATE/DESTROY_VDEV), e.g. ivshmem
/// (1af4:1110), a vUART (9710:9900) or a virtual root port (8086:9d14).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VDev {
    /// Vendor id.
    pub vendor: u16,
    /// Device id.
    pub device: u16,
    /// Legacy device id (0 for PCI devices).
    pub legacy_id: u32,
    /// The bdf (PCI) the device appears at.
    pub slot: u64,
    /// I/O resource addresses.
    pub io_addr: [u32; 6],
    /// I/O resource sizes.
    pub io_size: [u32; 6],
    /// Device-specific arguments.
    pub args: [u8; 128],
}

impl Default for VDev {
    fn default() -> VDev {
        VDev {
            vendor: 0,
            device: 0,
            legacy_id: 0,
            slot: 0,
            io_addr: [0; 6],
            io_size: [0; 6],
            args: [0; 128],
        }
    }
}

impl VDev {
    /// The 192 bytes.
    pub fn to_bytes(&self) -> [u8; 192] {
        use abi::vdev as o;
        let mut b = [0u8; 192];
        le::put_u16(&mut b, o::ID, self.vendor);
        le::put_u16(&mut b, o::ID + 2, self.device);
        le::put_u32(&mut b, o::ID + 4, self.legacy_id);
        le::put_u64(&mut b, o::SLOT, self.slot);
        for i in 0..6 {
            le::put_u32(&mut b, o::IO_ADDR + 4 * i, self.io_addr[i]);
            le::put_u32(&mut b, o::IO_SIZE + 4 * i, self.io_size[i]);
        }
        b[o::ARGS..o::ARGS + 128].copy_from_slice(&self.args);
        b
    }
}

/// What PM_GET_CPU_STATE answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PmState {
    /// An unknown command type: the kernel returns 0 and writes nothing.
    None,
    /// PX_CNT or CX_CNT: the count (the low byte of the u64 written back).
    Count(u8),
    /// PX_DATA: `struct acrn_pstate_data` (core_frequency, power, transition_latency,
    /// bus_master_latency, control, status).
    PState([u64; 6]),
    /// CX_DATA: `struct acrn_cstate_data`.
    CState {
        /// `cx_reg.space_id`.
        space_id: u8,
        /// `cx_reg.address`.
        address: u64,
        /// `type`.
        ty: u8,
        /// `latency`.
        latency: u32,
        /// `power`.
        power: u64,
    },
}

/// `struct acrn_ioeventfd`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IoEventFd {
    /// The eventfd.
    pub fd: i32,
    /// `ACRN_IOEVENTFD_FLAG_*` (PIO 1, DATAMATCH 2, DEASSIGN 4).
    pub flags: u32,
    /// Start address (port or GPA).
    pub addr: u64,
    /// Length: 1, 2, 4 or 8.
    pub len: u32,
    /// Data to match (with DATAMATCH).
    pub data: u64,
}

/// `struct acrn_irqfd`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IrqFd {
    /// The eventfd.
    pub fd: i32,
    /// `ACRN_IRQFD_FLAG_DEASSIGN` (1) or 0.
    pub flags: u32,
    /// `msi.msi_addr`.
    pub msi_addr: u64,
    /// `msi.msi_data`.
    pub msi_data: u64,
}

/// One open `/dev/acrn_hsm`, real or emulated.
#[derive(Clone)]
pub struct Hsm {
    backend: Arc<dyn HsmBackend>,
}

impl fmt::Debug for Hsm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hsm")
            .field("backend", &self.backend.name())
            .finish()
    }
}

static NAME_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Hsm {
    /// Opens the real device at `path` (`/dev/acrn_hsm`). The error keeps the errno
    /// (`ENOENT` where there is no ACRN).
    pub fn open(path: impl AsRef<Path>) -> Result<Hsm> {
        let dev = HsmDevice::open(path).map_err(e("open"))?;
        Ok(Hsm {
            backend: Arc::new(dev),
        })
    }

    /// Wraps any backend (the emulator's files come this way: `Emulator::open_hsm`).
    pub fn from_backend(backend: Arc<dyn HsmBackend>) -> Hsm {
        Hsm { backend }
    }

    /// The raw interface.
    pub fn backend(&self) -> &Arc<dyn HsmBackend> {
        &self.backend
    }

    /// A raw ioctl (see [`HsmBackend::ioctl`]).
    pub fn ioctl(&self, request: u32, arg: IoctlArg<'_>) -> std::result::Result<i64, Errno> {
        self.backend.ioctl(request, arg)
    }

    /// CREATE_VM. On success the hypervisor's vmid and vCPU count are in the returned [`Vm`].
    pub fn create_vm(&self, config: &VmConfig) -> Result<Vm> {
        use abi::vm_creation as o;
        let page = match &config.ioreq_page {
            Some(p) => p.clone(),
            None => Arc::new(alloc_page().map_err(e("CREATE_VM"))?),
        };
        let mut uuid = config.uuid;
        if uuid == [0; 16] {
            let n = NAME_COUNTER.fetch_add(1, Ordering::Relaxed);
            let name = format!("hsm{}-{}", std::process::id() % 100_000, n);
            let bytes = name.as_bytes();
            let l = bytes.len().min(15);
            uuid[..l].copy_from_slice(&bytes[..l]);
        }
        let affinity = match (config.cpu_affinity, config.vcpu_num) {
            (0, 0) => 0,
            (0, n) if n >= 64 => u64::MAX,
            (0, n) => (1u64 << n) - 1,
            (a, _) => a,
        };
        let mut b = [0u8; 48];
        le::put_u16(&mut b, o::VCPU_NUM, config.vcpu_num);
        b[o::UUID..o::UUID + 16].copy_from_slice(&uuid);
        le::put_u64(&mut b, o::VM_FLAG, config.vm_flag);
        le::put_u64(&mut b, o::IOREQ_BUF, page.addr());
        le::put_u64(&mut b, o::CPU_AFFINITY, affinity);
        self.ioctl(abi::CREATE_VM, IoctlArg::Bytes(&mut b))
            .map_err(e("CREATE_VM"))?;
        Ok(Vm {
            backend: self.backend.clone(),
            vmid: le::u16_at(&b, o::VMID),
            vcpu_num: le::u16_at(&b, o::VCPU_NUM),
            ioreq_page: page,
            ram: std::sync::Mutex::new(Vec::new()),
            memory: GuestMemory::new(),
        })
    }
}

/// The VM of one [`Hsm`] handle (the kernel allows one per open file). Dropping it does nothing;
/// closing the last handle destroys the VM, as `release()` does.
pub struct Vm {
    backend: Arc<dyn HsmBackend>,
    vmid: u16,
    vcpu_num: u16,
    ioreq_page: Arc<UserPages>,
    ram: std::sync::Mutex<Vec<Arc<UserPages>>>,
    memory: GuestMemory,
}

impl fmt::Debug for Vm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vm")
            .field("vmid", &self.vmid)
            .field("vcpu_num", &self.vcpu_num)
            .finish()
    }
}

impl Vm {
    /// The vmid the hypervisor returned.
    pub fn vmid(&self) -> u16 {
        self.vmid
    }
    /// The number of vCPUs the hypervisor created.
    pub fn vcpu_num(&self) -> u16 {
        self.vcpu_num
    }
    /// The ioreq page (16 slots of 256 bytes, shared with the hypervisor).
    pub fn ioreq_page(&self) -> &Arc<UserPages> {
        &self.ioreq_page
    }
    /// The raw interface of the file holding this VM.
    pub fn backend(&self) -> &Arc<dyn HsmBackend> {
        &self.backend
    }

    fn io(&self, op: &'static str, request: u32) -> Result<i64> {
        self.backend.ioctl(request, IoctlArg::None).map_err(e(op))
    }

    fn bytes(&self, op: &'static str, request: u32, b: &mut [u8]) -> Result<i64> {
        self.backend
            .ioctl(request, IoctlArg::Bytes(b))
            .map_err(e(op))
    }

    /// START_VM.
    pub fn start(&self) -> Result<()> {
        self.io("START_VM", abi::START_VM).map(drop)
    }
    /// PAUSE_VM.
    pub fn pause(&self) -> Result<()> {
        self.io("PAUSE_VM", abi::PAUSE_VM).map(drop)
    }
    /// RESET_VM.
    pub fn reset(&self) -> Result<()> {
        self.io("RESET_VM", abi::RESET_VM).map(drop)
    }
    /// DESTROY_VM (the hypervisor requires the VM paused).
    pub fn destroy(&self) -> Result<()> {
        self.io("DESTROY_VM", abi::DESTROY_VM).map(drop)
    }
    /// SET_VCPU_REGS.
    pub fn set_vcpu_regs(&self, regs: &VcpuRegs) -> Result<()> {
        self.bytes("SET_VCPU_REGS", abi::SET_VCPU_REGS, &mut regs.to_bytes())
            .map(drop)
    }
    /// The VM's RAM as the device model sees it: every SET_MEMSEG of RAM whose `vma_base` is
    /// library memory ([`UserPages`], e.g. through [`Vm::map_ram`]) adds its range.
    pub fn memory(&self) -> &GuestMemory {
        &self.memory
    }
    /// SET_MEMSEG. A RAM segment of library memory joins [`Vm::memory`].
    pub fn set_memseg(&self, map: &MemMap) -> Result<()> {
        self.bytes("SET_MEMSEG", abi::SET_MEMSEG, &mut map.to_bytes())?;
        if map.ty == abi::MEMMAP_RAM {
            let len = (map.len as usize) & !(crate::PAGE_SIZE - 1);
            // Memory the library does not own (a real device model's own mmap) cannot be
            // resolved here: it stays outside the map.
            if let Ok(pin) = crate::memory::pin(map.vma_base, len) {
                let _ = self.memory.insert(map.user_vm_pa, pin);
            }
        }
        Ok(())
    }
    /// UNSET_MEMSEG (MMIO mappings only).
    pub fn unset_memseg(&self, map: &MemMap) -> Result<()> {
        self.bytes("UNSET_MEMSEG", abi::UNSET_MEMSEG, &mut map.to_bytes())
            .map(drop)
    }
    /// SET_MEMSEG of guest RAM backed by `mem` at guest-physical `user_vm_pa`; the `Vm` keeps
    /// `mem` alive.
    pub fn map_ram(&self, user_vm_pa: u64, mem: Arc<UserPages>, attr: u32) -> Result<()> {
        self.set_memseg(&MemMap {
            ty: abi::MEMMAP_RAM,
            attr,
            user_vm_pa,
            vma_base: mem.addr(),
            len: mem.len() as u64,
        })?;
        if let Ok(mut r) = self.ram.lock() {
            r.push(mem);
        }
        Ok(())
    }
    /// CREATE_IOREQ_CLIENT (the default client; `EEXIST` for a second).
    pub fn create_ioreq_client(&self) -> Result<()> {
        self.io("CREATE_IOREQ_CLIENT", abi::CREATE_IOREQ_CLIENT)
            .map(drop)
    }
    /// ATTACH_IOREQ_CLIENT: blocks until a request is pending (level-triggered; may return
    /// spuriously). `ENODEV` when there is no client or it is destroyed.
    pub fn attach_ioreq_client(&self) -> Result<()> {
        self.io("ATTACH_IOREQ_CLIENT", abi::ATTACH_IOREQ_CLIENT)
            .map(drop)
    }
    /// DESTROY_IOREQ_CLIENT.
    pub fn destroy_ioreq_client(&self) -> Result<()> {
        self.io("DESTROY_IOREQ_CLIENT", abi::DESTROY_IOREQ_CLIENT)
            .map(drop)
    }
    /// NOTIFY_REQUEST_FINISH for `vcpu`.
    pub fn notify_request_finish(&self, vcpu: u32) -> Result<()> {
        let mut b = [0u8; 8];
        le::put_u16(&mut b, abi::notify::VMID, self.vmid);
        le::put_u32(&mut b, abi::notify::VCPU, vcpu);
        self.bytes("NOTIFY_REQUEST_FINISH", abi::NOTIFY_REQUEST_FINISH, &mut b)
            .map(drop)
    }
    /// CLEAR_VM_IOREQ.
    pub fn clear_vm_ioreq(&self) -> Result<()> {
        self.io("CLEAR_VM_IOREQ", abi::CLEAR_VM_IOREQ).map(drop)
    }
    /// IOEVENTFD.
    pub fn ioeventfd(&self, args: &IoEventFd) -> Result<()> {
        use abi::ioeventfd as o;
        let mut b = [0u8; 32];
        le::put_u32(&mut b, o::FD, args.fd as u32);
        le::put_u32(&mut b, o::FLAGS, args.flags);
        le::put_u64(&mut b, o::ADDR, args.addr);
        le::put_u32(&mut b, o::LEN, args.len);
        le::put_u64(&mut b, o::DATA, args.data);
        self.bytes("IOEVENTFD", abi::IOEVENTFD, &mut b).map(drop)
    }
    /// IRQFD.
    pub fn irqfd(&self, args: &IrqFd) -> Result<()> {
        use abi::irqfd as o;
        let mut b = [0u8; 24];
        le::put_u32(&mut b, o::FD, args.fd as u32);
        le::put_u32(&mut b, o::FLAGS, args.flags);
        le::put_u64(&mut b, o::MSI_ADDR, args.msi_addr);
        le::put_u64(&mut b, o::MSI_DATA, args.msi_data);
        self.bytes("IRQFD", abi::IRQFD, &mut b).map(drop)
    }
    /// INJECT_MSI.
    pub fn inject_msi(&self, msi_addr: u64, msi_data: u64) -> Result<()> {
        let mut b = [0u8; 16];
        le::put_u64(&mut b, abi::msi::ADDR, msi_addr);
        le::put_u64(&mut b, abi::msi::DATA, msi_data);
        self.bytes("INJECT_MSI", abi::INJECT_MSI, &mut b).map(drop)
    }
    /// SET_PTDEV_INTR.
    pub fn set_ptdev_intr(&self, irq: &PtdevIrq) -> Result<()> {
        self.bytes("SET_PTDEV_INTR", abi::SET_PTDEV_INTR, &mut irq.to_bytes())
            .map(drop)
    }
    /// RESET_PTDEV_INTR.
    pub fn reset_ptdev_intr(&self, irq: &PtdevIrq) -> Result<()> {
        self.bytes(
            "RESET_PTDEV_INTR",
            abi::RESET_PTDEV_INTR,
            &mut irq.to_bytes(),
        )
        .map(drop)
    }
    /// ASSIGN_PCIDEV (the VM must be created, not started: `EINVAL`; a device the hypervisor
    /// does not have or cannot pass through: `ENODEV`).
    pub fn assign_pcidev(&self, dev: &PciDev) -> Result<()> {
        self.bytes("ASSIGN_PCIDEV", abi::ASSIGN_PCIDEV, &mut dev.to_bytes())
            .map(drop)
    }
    /// DEASSIGN_PCIDEV.
    pub fn deassign_pcidev(&self, dev: &PciDev) -> Result<()> {
        self.bytes("DEASSIGN_PCIDEV", abi::DEASSIGN_PCIDEV, &mut dev.to_bytes())
            .map(drop)
    }
    /// ASSIGN_MMIODEV.
    pub fn assign_mmiodev(&self, dev: &MmioDev) -> Result<()> {
        self.bytes("ASSIGN_MMIODEV", abi::ASSIGN_MMIODEV, &mut dev.to_bytes())
            .map(drop)
    }
    /// DEASSIGN_MMIODEV.
    pub fn deassign_mmiodev(&self, dev: &MmioDev) -> Result<()> {
        self.bytes(
            "DEASSIGN_MMIODEV",
            abi::DEASSIGN_MMIODEV,
            &mut dev.to_bytes(),
        )
        .map(drop)
    }
    /// CREATE_VDEV.
    pub fn create_vdev(&self, dev: &VDev) -> Result<()> {
        self.bytes("CREATE_VDEV", abi::CREATE_VDEV, &mut dev.to_bytes())
            .map(drop)
    }
    /// DESTROY_VDEV.
    pub fn destroy_vdev(&self, dev: &VDev) -> Result<()> {
        self.bytes("DESTROY_VDEV", abi::DESTROY_VDEV, &mut dev.to_bytes())
            .map(drop)
    }
    /// PM_GET_CPU_STATE with the raw command (`vmid << 24 | vcpu << 16 | index << 8 | type`;
    /// the hypervisor takes the VM from the command, not from this file). The argument lives
    /// in a page of its own, since the kernel writes the 32/48-byte state over it.
    pub fn pm_get_cpu_state(&self, cmd: u64) -> Result<PmState> {
        let page = alloc_page().map_err(e("PM_GET_CPU_STATE"))?;
        page.write_bytes(0, &cmd.to_le_bytes())
            .map_err(e("PM_GET_CPU_STATE"))?;
        self.backend
            .ioctl(abi::PM_GET_CPU_STATE, IoctlArg::Value(page.addr()))
            .map_err(e("PM_GET_CPU_STATE"))?;
        let mut b = [0u8; 48];
        page.read_bytes(0, &mut b).map_err(e("PM_GET_CPU_STATE"))?;
        Ok(match cmd & 0xff {
            0 | 2 => PmState::Count(b[0]),
            1 => {
                let mut v = [0u64; 6];
                for (i, x) in v.iter_mut().enumerate() {
                    *x = le::u64_at(&b, 8 * i);
                }
                PmState::PState(v)
            }
            3 => PmState::CState {
                space_id: b[0],
                address: le::u64_at(&b, 4),
                ty: b[12],
                latency: le::u32_at(&b, 16),
                power: le::u64_at(&b, 24),
            },
            _ => PmState::None,
        })
    }
    /// PM_GET_CPU_STATE of this VM: the C-state count (CX_CNT).
    pub fn cx_count(&self) -> Result<u8> {
        match self.pm_get_cpu_state((u64::from(self.vmid & 0xff) << 24) | 2)? {
            PmState::Count(n) => Ok(n),
            _ => Ok(0),
        }
    }
    /// VM_INTR_MONITOR with GET_DATA: the `(physical irq, count)` pairs the hypervisor reports
    /// for this VM's passthrough interrupts (at most 24; `buf_cnt` is written back).
    pub fn intr_monitor_data(&self) -> Result<Vec<(u64, u64)>> {
        let page = alloc_page().map_err(e("VM_INTR_MONITOR"))?;
        let mut hdr = [0u8; 8];
        le::put_u32(&mut hdr, 4, 48);
        page.write_bytes(0, &hdr).map_err(e("VM_INTR_MONITOR"))?;
        self.vm_intr_monitor(&page)?;
        let mut b = vec![0u8; 8 + 8 * 48];
        page.read_bytes(0, &mut b).map_err(e("VM_INTR_MONITOR"))?;
        let n = (le::u32_at(&b, 4) as usize).min(48) / 2;
        Ok((0..n)
            .map(|i| (le::u64_at(&b, 8 + 16 * i), le::u64_at(&b, 16 + 16 * i)))
            .collect())
    }
    /// VM_INTR_MONITOR on a page the caller prepared (`struct acrn_intr_monitor` at its start);
    /// the `Vm` does not keep the page: the kernel holds it pinned until the next call or the
    /// VM's destruction.
    pub fn vm_intr_monitor(&self, page: &UserPages) -> Result<()> {
        self.backend
            .ioctl(abi::VM_INTR_MONITOR, IoctlArg::Value(page.addr()))
            .map_err(e("VM_INTR_MONITOR"))
            .map(drop)
    }
    /// SET_IRQLINE: the by-value `{u32 gsi; u32 op}`.
    pub fn set_irqline(&self, gsi: u32, op: u32) -> Result<()> {
        let v = u64::from(gsi) | (u64::from(op) << 32);
        self.backend
            .ioctl(abi::SET_IRQLINE, IoctlArg::Value(v))
            .map_err(e("SET_IRQLINE"))
            .map(drop)
    }
}
