//! The HSM (real device or emulator), its VM and the emulator's guest, as JavaScript classes.
//!
//! Errors carry the errno's name as their `code` (`EINVAL`, set in [`crate::errors`]), which the
//! façade turns into an `AcrnHsmError` with `code` and `errno`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use acrn_hsm::{
    Errno, Hsm, IoEventFd, IoctlArg, IrqFd, MemMap, MmioDev, MmioRes, PciDev, PmState, PtdevIrq,
    UserPages, VDev, VcpuRegs, Vm, VmConfig,
};
use acrn_hsm_emulator::{
    Emulator, EmulatorConfig, FaultKind, InterruptEvent, RunResult, Workload, emulator_of,
};
use napi::bindgen_prelude::{AsyncTask, BigInt, Buffer, BufferSlice, Float64Array, Uint8Array};
use napi::{Env, Task};
use napi_derive::napi;

use crate::errors::{Failure, Result, coded_error, errno_error, hsm_error};

fn bigint_u64(what: &str, value: &BigInt) -> Result<u64> {
    let (signed, v, lossless) = value.get_u64();
    if signed || !lossless {
        return Err(coded_error(
            "ERR_OUT_OF_RANGE",
            &format!("{what} must be a bigint in 0..2^64-1"),
        ));
    }
    Ok(v)
}

/// The interrupts that reached a VM's guest (emulator, workload engine).
#[napi(object)]
#[derive(Debug, Default)]
pub struct IrqCountersInfo {
    /// MSIs delivered to at least one vCPU.
    pub msi: f64,
    /// Vector deliveries per vCPU.
    pub delivered: Vec<f64>,
    /// Rising edges per GSI (48).
    pub edges: Vec<f64>,
    /// Line levels per GSI.
    pub levels: Vec<bool>,
    /// Interrupts taken by `wait_irq`.
    pub taken: f64,
}

/// An interrupt the emulated hypervisor was asked to inject.
#[napi(object)]
#[derive(Debug, Default)]
pub struct InterruptInfo {
    /// `'msi'` (INJECT_MSI), `'irqfd'` (an irqfd's MSI) or `'irqline'` (SET_IRQLINE).
    #[napi(ts_type = "'msi' | 'irqfd' | 'irqline'")]
    pub kind: String,
    /// The target VM.
    pub vmid: u32,
    /// MSI address.
    pub msi_addr: Option<BigInt>,
    /// MSI data.
    pub msi_data: Option<BigInt>,
    /// The GSI (irqline).
    pub gsi: Option<u32>,
    /// The operation (irqline: ACRN's GSI_SET_HIGH 0, GSI_SET_LOW 1, GSI_RAISING_PULSE 2,
    /// GSI_FALLING_PULSE 3).
    pub op: Option<u32>,
}

impl InterruptInfo {
    fn msi(kind: &str, vmid: u16, addr: u64, data: u64) -> InterruptInfo {
        InterruptInfo {
            kind: kind.into(),
            vmid: u32::from(vmid),
            msi_addr: Some(BigInt::from(addr)),
            msi_data: Some(BigInt::from(data)),
            ..InterruptInfo::default()
        }
    }
}

/// Options of the emulated machine.
#[napi(object)]
#[derive(Debug, Default)]
pub struct EmulatorOptions {
    /// Physical CPUs of the emulated hypervisor (default 16): a VM gets one vCPU per pCPU of its affinity.
    pub pcpus: Option<u32>,
    /// VM slots for post-launched VMs (default 8).
    pub max_vms: Option<u32>,
    /// What runs the vCPUs: `'workload'` (scripted accesses, the default) or `'kvm'` (real
    /// guest code on `/dev/kvm`; RAM and a firmware image mapped with `mapRam`, the vCPU at the
    /// reset vector F000:FFF0).
    #[napi(ts_type = "'workload' | 'kvm'")]
    pub engine: Option<String>,
}

/// Page-aligned memory owned by the library: the ioreq page or guest RAM. JavaScript sees its
/// user address (for raw ioctls) and reads/writes it by copy; it stays mapped while referenced.
#[napi]
pub struct UserPage {
    pages: Arc<UserPages>,
}

#[napi]
impl UserPage {
    /// The user virtual address (what `ioreq_buf` and `vma_base` take).
    #[napi(getter)]
    pub fn address(&self) -> BigInt {
        BigInt::from(self.pages.addr())
    }

    /// Length in bytes.
    #[napi(getter)]
    pub fn length(&self) -> u32 {
        u32::try_from(self.pages.len()).unwrap_or(u32::MAX)
    }

    /// Copies `length` bytes at `offset` out.
    #[napi]
    pub fn read(&self, offset: u32, length: u32) -> Result<Buffer> {
        let mut out = vec![0u8; length as usize];
        self.pages
            .read_bytes(offset as usize, &mut out)
            .map_err(|e| errno_error("UserPage.read", e))?;
        Ok(out.into())
    }

    /// Copies `bytes` in at `offset`.
    #[napi]
    pub fn write(&self, offset: u32, bytes: Uint8Array) -> Result<()> {
        self.pages
            .write_bytes(offset as usize, &bytes)
            .map_err(|e| errno_error("UserPage.write", e))
    }

    /// The whole allocation as a `Buffer` without a copy (a second mapping of the same pages,
    /// kept while the buffer lives): it sees every later write, by the guest or anyone.
    #[napi(getter)]
    pub fn bytes<'env>(&self, env: &'env Env) -> Result<BufferSlice<'env>> {
        let alias = self
            .pages
            .alias(0, self.pages.len())
            .map_err(|e| errno_error("UserPage.bytes", e))?;
        crate::memory::external_buffer(env, alias)
    }

    /// Reads slot `vcpu` of an ioreq page as the protocol demands: `processed` with an acquire
    /// load first, then the rest of the 256 bytes.
    #[napi]
    pub fn read_slot(&self, vcpu: u32) -> Result<Buffer> {
        use acrn_uapi::ioreq::{SLOT_COUNT, SLOT_OFFSET_PROCESSED, SLOT_SIZE, slot_offset};
        if vcpu as usize >= SLOT_COUNT {
            return Err(coded_error("ERR_OUT_OF_RANGE", "vcpu must be in 0..15"));
        }
        let base = slot_offset(vcpu as usize);
        let state = self
            .pages
            .atomic_u32(base + SLOT_OFFSET_PROCESSED)
            .map_err(|e| errno_error("UserPage.readSlot", e))?
            .load(Ordering::Acquire);
        let mut out = vec![0u8; SLOT_SIZE];
        self.pages
            .read_bytes(base, &mut out)
            .map_err(|e| errno_error("UserPage.readSlot", e))?;
        out[SLOT_OFFSET_PROCESSED..SLOT_OFFSET_PROCESSED + 4].copy_from_slice(&state.to_le_bytes());
        Ok(out.into())
    }
}

/// Allocates `length` bytes (rounded up to whole pages) of page-aligned memory.
#[napi]
pub fn alloc_pages(length: u32) -> Result<UserPage> {
    let pages = UserPages::new(length as usize).map_err(|e| errno_error("allocPages", e))?;
    Ok(UserPage {
        pages: Arc::new(pages),
    })
}

/// An open `/dev/acrn_hsm`, real or emulated (one handle holds at most one VM).
#[napi]
pub struct HsmHandle {
    hsm: Hsm,
}

/// The arguments of `createVm`.
#[napi(object)]
pub struct CreateVmOptions {
    /// vCPUs wanted (1..16).
    pub vcpu_num: u32,
    /// The 16 uuid bytes (the hypervisor's VM name); omitted: a unique name is generated.
    pub uuid: Option<Uint8Array>,
    /// `vm_flag` (bigint).
    pub vm_flag: Option<BigInt>,
    /// `cpu_affinity` (bigint); omitted: derived from vcpuNum.
    pub cpu_affinity: Option<BigInt>,
}

#[napi]
impl HsmHandle {
    /// Opens the real device at `path`.
    #[napi(factory)]
    pub fn open(path: String) -> Result<HsmHandle> {
        let hsm = Hsm::open(&path).map_err(|err| {
            let op = format!("open {path}");
            errno_error(&op, err.errno)
        })?;
        Ok(HsmHandle { hsm })
    }

    /// A handle on a new emulated machine.
    #[napi(factory)]
    pub fn emulated(options: Option<EmulatorOptions>) -> Result<HsmHandle> {
        let o = options.unwrap_or_default();
        let mut config = EmulatorConfig::default();
        if let Some(p) = o.pcpus {
            config.pcpu_num = u8::try_from(p)
                .ok()
                .filter(|p| (1..=64).contains(p))
                .ok_or_else(|| coded_error("ERR_OUT_OF_RANGE", "pcpus must be in 1..64"))?;
        }
        if let Some(m) = o.max_vms {
            config.max_vms = u8::try_from(m)
                .ok()
                .filter(|m| (1..=64).contains(m))
                .ok_or_else(|| coded_error("ERR_OUT_OF_RANGE", "maxVms must be in 1..64"))?;
        }
        let emu = Emulator::with_config(config);
        match o.engine.as_deref() {
            None | Some("workload") => {}
            Some("kvm") => {
                let p = acrn_hsm_emulator::kvm::probe();
                if !p.usable {
                    return Err(coded_error(
                        "ERR_RUN",
                        &format!("the KVM engine cannot run here: {}", p.reason),
                    ));
                }
                emu.set_engine(acrn_hsm_emulator::Engine::Kvm);
            }
            Some(e) => {
                return Err(coded_error(
                    "ERR_INVALID_ARG",
                    &format!("engine must be 'workload' or 'kvm', got '{e}'"),
                ));
            }
        }
        Ok(HsmHandle {
            hsm: emu.open_hsm(),
        })
    }

    /// Another open file on the same machine (emulator only; a real device is opened again by path).
    #[napi]
    pub fn reopen(&self) -> Result<HsmHandle> {
        let emu = emulator_of(&self.hsm).ok_or_else(|| {
            errno_error(
                "reopen (only an emulated handle can be reopened)",
                Errno::ENODEV,
            )
        })?;
        Ok(HsmHandle {
            hsm: emu.open_hsm(),
        })
    }

    /// Whether this handle is on the emulator.
    #[napi(getter)]
    pub fn emulated_backend(&self) -> bool {
        emulator_of(&self.hsm).is_some()
    }

    /// The interrupts the emulated hypervisor was asked to inject so far (INJECT_MSI,
    /// SET_IRQLINE, irqfd signals), oldest first (`ENODEV` on the real device).
    #[napi]
    pub fn interrupts(&self) -> Result<Vec<InterruptInfo>> {
        let emu = emulator_of(&self.hsm).ok_or_else(|| errno_error("interrupts", Errno::ENODEV))?;
        Ok(emu
            .interrupts()
            .into_iter()
            .map(|e| match e {
                InterruptEvent::Msi { vmid, addr, data } => {
                    InterruptInfo::msi("msi", vmid, addr, data)
                }
                InterruptEvent::IrqfdMsi { vmid, addr, data } => {
                    InterruptInfo::msi("irqfd", vmid, addr, data)
                }
                InterruptEvent::IrqLine { vmid, gsi, op } => InterruptInfo {
                    kind: "irqline".into(),
                    vmid: u32::from(vmid),
                    gsi: Some(gsi),
                    op: Some(op),
                    ..InterruptInfo::default()
                },
            })
            .collect())
    }

    /// The raw ioctl with a pointer argument: `arg` holds the argument struct's bytes and is
    /// written back in place (what `_IOWR`/`_IOR` write back); absent for `_IO` requests.
    /// Returns the ioctl's result.
    #[napi]
    pub fn ioctl(&self, request: u32, arg: Option<&mut [u8]>) -> Result<i64> {
        let result = match arg {
            None => self.hsm.ioctl(request, IoctlArg::None),
            Some(bytes) => {
                // Work on a copy: the JS array is not touched while the (emulated) kernel runs.
                let mut copy = bytes.to_vec();
                let r = self.hsm.ioctl(request, IoctlArg::Bytes(&mut copy));
                bytes.copy_from_slice(&copy);
                r
            }
        };
        result.map_err(|errno| errno_error(&format!("ioctl {request:#x}"), errno))
    }

    /// The raw ioctl with a by-value argument (SET_IRQLINE, VM_INTR_MONITOR...).
    #[napi]
    pub fn ioctl_value(&self, request: u32, value: BigInt) -> Result<i64> {
        let v = bigint_u64("arg", &value)?;
        self.hsm
            .ioctl(request, IoctlArg::Value(v))
            .map_err(|errno| errno_error(&format!("ioctl {request:#x}"), errno))
    }

    /// CREATE_VM, with the given ioreq page or a fresh one.
    #[napi]
    pub fn create_vm(
        &self,
        options: CreateVmOptions,
        ioreq_page: Option<&UserPage>,
    ) -> Result<VmHandle> {
        let vcpu_num = u16::try_from(options.vcpu_num)
            .ok()
            .filter(|n| (1..=16).contains(n))
            .ok_or_else(|| {
                coded_error(
                    "ERR_OUT_OF_RANGE",
                    "vcpuNum must be in 1..16 (16 ioreq slots)",
                )
            })?;
        let mut uuid = [0u8; 16];
        if let Some(u) = &options.uuid {
            if u.len() != 16 {
                return Err(coded_error("ERR_INVALID_ARG", "uuid must be 16 bytes"));
            }
            uuid.copy_from_slice(u);
        }
        let config = VmConfig {
            vcpu_num,
            uuid,
            vm_flag: options
                .vm_flag
                .as_ref()
                .map(|v| bigint_u64("vmFlag", v))
                .transpose()?
                .unwrap_or(0),
            cpu_affinity: options
                .cpu_affinity
                .as_ref()
                .map(|v| bigint_u64("cpuAffinity", v))
                .transpose()?
                .unwrap_or(0),
            ioreq_page: ioreq_page.map(|p| p.pages.clone()),
        };
        let vm = self.hsm.create_vm(&config).map_err(hsm_error)?;
        Ok(VmHandle {
            vm: Arc::new(vm),
            hsm: self.hsm.clone(),
        })
    }
}

/// VMs shared with other threads (worker_threads): a token names an `Arc` of the VM, so a worker
/// can serve the VM created on the main thread.
static SHARED_VMS: std::sync::Mutex<Vec<(u32, std::sync::Weak<Vm>, Hsm)>> =
    std::sync::Mutex::new(Vec::new());
static NEXT_TOKEN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);

/// The VM of one handle.
#[napi]
pub struct VmHandle {
    vm: Arc<Vm>,
    hsm: Hsm,
}

impl VmHandle {
    /// The core's VM.
    pub(crate) fn vm(&self) -> &Arc<Vm> {
        &self.vm
    }
}

/// `struct acrn_vm_memmap` (type 0 RAM, 1 MMIO).
#[napi(object)]
#[derive(Debug)]
pub struct MemsegOptions {
    /// `ACRN_MEMMAP_RAM` (0) or `ACRN_MEMMAP_MMIO` (1).
    pub r#type: u32,
    /// `ACRN_MEM_ACCESS_*` bits.
    pub attr: u32,
    /// Guest-physical address.
    pub user_vm_pa: BigInt,
    /// RAM: `vma_base` (a user address from `allocPages`); MMIO: `service_vm_pa`.
    pub vma_base: BigInt,
    /// Length in bytes.
    pub len: BigInt,
}

impl MemsegOptions {
    fn to_memmap(&self) -> Result<MemMap> {
        Ok(MemMap {
            ty: self.r#type,
            attr: self.attr,
            user_vm_pa: bigint_u64("userVmPa", &self.user_vm_pa)?,
            vma_base: bigint_u64("vmaBase", &self.vma_base)?,
            len: bigint_u64("len", &self.len)?,
        })
    }
}

/// The initial state of one vCPU (`struct acrn_vcpu_regs`), the fields a loader sets.
#[napi(object)]
#[derive(Debug)]
pub struct VcpuRegsOptions {
    /// vCPU id.
    pub vcpu_id: u32,
    /// rip.
    pub rip: Option<BigInt>,
    /// rsp (`gprs[4]`).
    pub rsp: Option<BigInt>,
    /// cr0.
    pub cr0: Option<BigInt>,
    /// cr3.
    pub cr3: Option<BigInt>,
    /// cr4.
    pub cr4: Option<BigInt>,
    /// rflags.
    pub rflags: Option<BigInt>,
    /// CS selector.
    pub cs_sel: Option<u32>,
}

/// One emulated I/O event of a guest run, as the guest saw it.
#[napi(object)]
#[derive(Debug)]
pub struct RunMismatch {
    /// vCPU.
    pub vcpu: u32,
    /// Request sequence number on that vCPU.
    pub request: f64,
    /// The access, e.g. `"pio 0x3f8 read size 1"`.
    pub access: String,
    /// Expected value.
    pub expected: BigInt,
    /// Value read.
    pub actual: BigInt,
}

/// A guest fault (#GP for a slot that was not FREE, or a stray wake-up).
#[napi(object)]
#[derive(Debug)]
pub struct RunFault {
    /// vCPU.
    pub vcpu: u32,
    /// Request sequence number on that vCPU.
    pub request: f64,
    /// `'general-protection' | 'stray-wakeup'`.
    pub kind: String,
    /// The slot state seen.
    pub state: u32,
    /// The access.
    pub access: String,
}

/// The result of a guest workload run.
#[napi(object)]
pub struct GuestRunResult {
    /// Requests the vCPUs issued.
    pub issued: f64,
    /// Requests completed (with post-work).
    pub completed: f64,
    /// Reads whose value differed from `expect`.
    pub mismatches: Vec<RunMismatch>,
    /// Guest faults.
    pub faults: Vec<RunFault>,
    /// Per-request latency, PENDING to FREE as the guest saw it, in ns.
    pub latencies_ns: Float64Array,
    /// Why each vCPU stopped early, if it did (`null` when it ran to the end).
    pub stopped: Vec<Option<String>>,
}

fn run_result_to_js(r: RunResult) -> GuestRunResult {
    GuestRunResult {
        issued: r.issued as f64,
        completed: r.completed as f64,
        mismatches: r
            .mismatches
            .into_iter()
            .map(|m| RunMismatch {
                vcpu: u32::from(m.vcpu),
                request: m.request as f64,
                access: m.access,
                expected: BigInt::from(m.expected),
                actual: BigInt::from(m.actual),
            })
            .collect(),
        faults: r
            .faults
            .into_iter()
            .map(|f| RunFault {
                vcpu: u32::from(f.vcpu),
                request: f.request as f64,
                kind: match f.kind {
                    FaultKind::GeneralProtection => "general-protection".to_owned(),
                    FaultKind::StrayWakeup => "stray-wakeup".to_owned(),
                    FaultKind::IrqTimeout => "irq-timeout".to_owned(),
                },
                state: f.state,
                access: f.access,
            })
            .collect(),
        latencies_ns: Float64Array::new(r.latencies_ns.iter().map(|&l| l as f64).collect()),
        stopped: r
            .vcpus
            .iter()
            .map(|v| v.stopped.map(|s| format!("{s:?}").to_lowercase()))
            .collect(),
    }
}

/// `struct acrn_ptdev_irq` (SET/RESET_PTDEV_INTR).
#[napi(object)]
#[derive(Debug, Default)]
pub struct PtdevIrqOptions {
    /// 0 = INTx (the only type the hypervisor accepts), 1 = MSI, 2 = MSI-X. Default 0.
    pub r#type: Option<u32>,
    /// The bdf the guest sees (`bus << 8 | dev << 3 | func`).
    pub virt_bdf: u32,
    /// The physical bdf.
    pub phys_bdf: u32,
    /// The guest GSI (or vPIC pin).
    pub virt_pin: u32,
    /// The physical GSI.
    pub phys_pin: u32,
    /// `virtPin` is a vPIC pin.
    pub is_pic_pin: Option<bool>,
}

/// `struct acrn_pcidev` (ASSIGN/DEASSIGN_PCIDEV).
#[napi(object)]
#[derive(Debug, Default)]
pub struct PciDevOptions {
    /// Flags (1 = `ACRN_PTDEV_QUIRK_ASSIGN`). Default 0.
    pub r#type: Option<u32>,
    /// The bdf the guest sees.
    pub virt_bdf: u32,
    /// The physical bdf.
    pub phys_bdf: u32,
    /// Interrupt line.
    pub intr_line: Option<u32>,
    /// Interrupt pin.
    pub intr_pin: Option<u32>,
    /// Up to six BARs.
    pub bar: Option<Vec<u32>>,
}

/// One resource of an MMIO device.
#[napi(object)]
#[derive(Debug)]
pub struct MmioResOptions {
    /// Guest-physical address.
    pub user_vm_pa: BigInt,
    /// Host-physical address.
    pub host_pa: BigInt,
    /// Size (a multiple of 4 KiB).
    pub size: BigInt,
    /// Memory type. Default 0.
    pub mem_type: Option<BigInt>,
}

/// `struct acrn_mmiodev` (ASSIGN/DEASSIGN_MMIODEV).
#[napi(object)]
#[derive(Debug)]
pub struct MmioDevOptions {
    /// Name (at most 8 bytes).
    pub name: Option<String>,
    /// Up to three resources.
    pub res: Vec<MmioResOptions>,
}

/// `struct acrn_vdev` (CREATE/DESTROY_VDEV).
#[napi(object)]
pub struct VdevOptions {
    /// Vendor id.
    pub vendor: u32,
    /// Device id.
    pub device: u32,
    /// Legacy id. Default 0.
    pub legacy_id: Option<u32>,
    /// The bdf the device appears at.
    pub slot: u32,
    /// Device-specific arguments (at most 128 bytes).
    pub args: Option<Uint8Array>,
}

/// What PM_GET_CPU_STATE answered.
#[napi(object)]
#[derive(Debug)]
pub struct PmStateResult {
    /// `none` (unknown type), `count`, `pstate` or `cstate`.
    pub kind: String,
    /// PX_CNT / CX_CNT.
    pub count: Option<u32>,
    /// PX_DATA: core_frequency, power, transition_latency, bus_master_latency, control, status.
    pub pstate: Option<Vec<BigInt>>,
    /// CX_DATA: `type`.
    pub cstate_type: Option<u32>,
    /// CX_DATA: `latency`.
    pub latency: Option<u32>,
    /// CX_DATA: `power`.
    pub power: Option<BigInt>,
    /// CX_DATA: `cx_reg.address`.
    pub address: Option<BigInt>,
}

/// One `(physical irq, count)` pair of VM_INTR_MONITOR.
#[napi(object)]
#[derive(Debug)]
pub struct IntrCount {
    /// The physical irq.
    pub irq: BigInt,
    /// Its count.
    pub count: BigInt,
}

fn u16_of(what: &str, v: u32) -> Result<u16> {
    u16::try_from(v)
        .map_err(|_| coded_error("ERR_OUT_OF_RANGE", &format!("{what} must fit in 16 bits")))
}

fn u8_of(what: &str, v: u32) -> Result<u8> {
    u8::try_from(v)
        .map_err(|_| coded_error("ERR_OUT_OF_RANGE", &format!("{what} must fit in 8 bits")))
}

impl PtdevIrqOptions {
    fn to_irq(&self) -> Result<PtdevIrq> {
        Ok(PtdevIrq {
            ty: self.r#type.unwrap_or(0),
            virt_bdf: u16_of("virtBdf", self.virt_bdf)?,
            phys_bdf: u16_of("physBdf", self.phys_bdf)?,
            virt_pin: self.virt_pin,
            phys_pin: self.phys_pin,
            is_pic_pin: self.is_pic_pin.unwrap_or(false),
        })
    }
}

impl PciDevOptions {
    fn to_dev(&self) -> Result<PciDev> {
        let mut bar = [0u32; 6];
        let given = self.bar.as_deref().unwrap_or(&[]);
        if given.len() > 6 {
            return Err(coded_error("ERR_OUT_OF_RANGE", "at most 6 BARs"));
        }
        bar[..given.len()].copy_from_slice(given);
        Ok(PciDev {
            ty: self.r#type.unwrap_or(0),
            virt_bdf: u16_of("virtBdf", self.virt_bdf)?,
            phys_bdf: u16_of("physBdf", self.phys_bdf)?,
            intr_line: u8_of("intrLine", self.intr_line.unwrap_or(0))?,
            intr_pin: u8_of("intrPin", self.intr_pin.unwrap_or(0))?,
            bar,
        })
    }
}

impl MmioDevOptions {
    fn to_dev(&self) -> Result<MmioDev> {
        let mut d = MmioDev::default();
        if let Some(n) = &self.name {
            let b = n.as_bytes();
            if b.len() > 8 {
                return Err(coded_error("ERR_OUT_OF_RANGE", "name is at most 8 bytes"));
            }
            d.name[..b.len()].copy_from_slice(b);
        }
        if self.res.len() > 3 {
            return Err(coded_error("ERR_OUT_OF_RANGE", "at most 3 resources"));
        }
        for (i, r) in self.res.iter().enumerate() {
            d.res[i] = MmioRes {
                user_vm_pa: bigint_u64("userVmPa", &r.user_vm_pa)?,
                host_pa: bigint_u64("hostPa", &r.host_pa)?,
                size: bigint_u64("size", &r.size)?,
                mem_type: opt_u64("memType", &r.mem_type)?,
            };
        }
        Ok(d)
    }
}

impl VdevOptions {
    fn to_vdev(&self) -> Result<VDev> {
        let mut v = VDev {
            vendor: u16_of("vendor", self.vendor)?,
            device: u16_of("device", self.device)?,
            legacy_id: self.legacy_id.unwrap_or(0),
            slot: u64::from(self.slot),
            ..Default::default()
        };
        if let Some(a) = &self.args {
            if a.len() > 128 {
                return Err(coded_error("ERR_OUT_OF_RANGE", "args is at most 128 bytes"));
            }
            v.args[..a.len()].copy_from_slice(a);
        }
        Ok(v)
    }
}

/// ATTACH_IOREQ_CLIENT on the libuv pool (it blocks until a request is pending).
pub struct AttachTask {
    vm: Arc<Vm>,
    failure: Failure,
}

impl Task for AttachTask {
    type Output = ();
    type JsValue = ();

    fn compute(&mut self) -> napi::Result<()> {
        let r = self.compute_coded();
        self.failure.keep(r)
    }

    fn reject(&mut self, env: Env, err: napi::Error) -> napi::Result<Self::JsValue> {
        self.failure.reject(&env, err)
    }

    fn resolve(&mut self, _env: Env, _output: ()) -> napi::Result<()> {
        Ok(())
    }
}

impl AttachTask {
    fn compute_coded(&mut self) -> Result<()> {
        self.vm.attach_ioreq_client().map_err(hsm_error)
    }
}

/// A guest workload run on the libuv pool.
pub struct GuestTask {
    guest: Option<acrn_hsm_emulator::Guest>,
    workload: Workload,
    failure: Failure,
}

impl Task for GuestTask {
    type Output = RunResult;
    type JsValue = GuestRunResult;

    fn compute(&mut self) -> napi::Result<RunResult> {
        let r = self.compute_coded();
        self.failure.keep(r)
    }

    fn reject(&mut self, env: Env, err: napi::Error) -> napi::Result<Self::JsValue> {
        self.failure.reject(&env, err)
    }

    fn resolve(&mut self, _env: Env, output: RunResult) -> napi::Result<GuestRunResult> {
        Ok(run_result_to_js(output))
    }
}

impl GuestTask {
    fn compute_coded(&mut self) -> Result<RunResult> {
        let guest = self
            .guest
            .take()
            .ok_or_else(|| coded_error("ERR_INVALID_STATE", "guest run started twice"))?;
        guest
            .run(&self.workload)
            .map_err(|e| errno_error("guest run", e))
    }
}

fn opt_u64(what: &str, v: &Option<BigInt>) -> Result<u64> {
    v.as_ref()
        .map(|v| bigint_u64(what, v))
        .transpose()
        .map(Option::unwrap_or_default)
}

#[napi]
impl VmHandle {
    /// A token another thread (a worker) can open the same VM with (`VmHandle.fromShared`).
    /// It stays valid while this VM object is alive.
    #[napi]
    pub fn share(&self) -> u32 {
        let token = NEXT_TOKEN.fetch_add(1, Ordering::Relaxed);
        let mut shared = SHARED_VMS.lock().unwrap_or_else(|e| e.into_inner());
        shared.retain(|(_, w, _)| w.strong_count() > 0);
        shared.push((token, Arc::downgrade(&self.vm), self.hsm.clone()));
        token
    }

    /// The VM another thread shared with `share()`.
    #[napi(factory)]
    pub fn from_shared(token: u32) -> Result<VmHandle> {
        let shared = SHARED_VMS.lock().unwrap_or_else(|e| e.into_inner());
        shared
            .iter()
            .find(|(t, _, _)| *t == token)
            .and_then(|(_, w, hsm)| {
                w.upgrade().map(|vm| VmHandle {
                    vm,
                    hsm: hsm.clone(),
                })
            })
            .ok_or_else(|| {
                coded_error(
                    "ERR_INVALID_ARG",
                    &format!("no shared VM with token {token}: it was destroyed or dropped, or the token is not from vm.share()"),
                )
            })
    }

    /// The hypervisor's vmid.
    #[napi(getter)]
    pub fn vmid(&self) -> u32 {
        u32::from(self.vm.vmid())
    }

    /// vCPUs the hypervisor created.
    #[napi(getter)]
    pub fn vcpu_num(&self) -> u32 {
        u32::from(self.vm.vcpu_num())
    }

    /// The ioreq page (shared with the hypervisor).
    #[napi(getter)]
    pub fn ioreq_page(&self) -> UserPage {
        UserPage {
            pages: self.vm.ioreq_page().clone(),
        }
    }

    /// START_VM.
    #[napi]
    pub fn start(&self) -> Result<()> {
        self.vm.start().map_err(hsm_error)
    }

    /// PAUSE_VM.
    #[napi]
    pub fn pause(&self) -> Result<()> {
        self.vm.pause().map_err(hsm_error)
    }

    /// RESET_VM.
    #[napi]
    pub fn reset(&self) -> Result<()> {
        self.vm.reset().map_err(hsm_error)
    }

    /// DESTROY_VM.
    #[napi]
    pub fn destroy(&self) -> Result<()> {
        self.vm.destroy().map_err(hsm_error)?;
        // A destroyed VM is no longer handed out to other threads (`fromShared`).
        let mut shared = SHARED_VMS.lock().unwrap_or_else(|e| e.into_inner());
        shared.retain(|(_, w, _)| w.upgrade().is_some_and(|vm| !Arc::ptr_eq(&vm, &self.vm)));
        Ok(())
    }

    /// SET_VCPU_REGS.
    #[napi]
    pub fn set_vcpu_regs(&self, regs: VcpuRegsOptions) -> Result<()> {
        let vcpu_id = u16::try_from(regs.vcpu_id)
            .map_err(|_| coded_error("ERR_OUT_OF_RANGE", "vcpuId must fit in 16 bits"))?;
        let mut r = VcpuRegs {
            vcpu_id,
            ..Default::default()
        };
        r.rip = opt_u64("rip", &regs.rip)?;
        r.gprs[4] = opt_u64("rsp", &regs.rsp)?;
        r.cr0 = opt_u64("cr0", &regs.cr0)?;
        r.cr3 = opt_u64("cr3", &regs.cr3)?;
        r.cr4 = opt_u64("cr4", &regs.cr4)?;
        r.rflags = opt_u64("rflags", &regs.rflags)?;
        if let Some(cs) = regs.cs_sel {
            r.selectors[0] = u16::try_from(cs)
                .map_err(|_| coded_error("ERR_OUT_OF_RANGE", "csSel must fit in 16 bits"))?;
        }
        self.vm.set_vcpu_regs(&r).map_err(hsm_error)
    }

    /// SET_MEMSEG.
    #[napi]
    pub fn set_memseg(&self, map: MemsegOptions) -> Result<()> {
        self.vm.set_memseg(&map.to_memmap()?).map_err(hsm_error)
    }

    /// UNSET_MEMSEG.
    #[napi]
    pub fn unset_memseg(&self, map: MemsegOptions) -> Result<()> {
        self.vm.unset_memseg(&map.to_memmap()?).map_err(hsm_error)
    }

    /// Maps `memory` as guest RAM at `userVmPa` (SET_MEMSEG of type RAM) and keeps it alive.
    #[napi]
    pub fn map_ram(&self, user_vm_pa: BigInt, memory: &UserPage, attr: u32) -> Result<()> {
        let pa = bigint_u64("userVmPa", &user_vm_pa)?;
        self.vm
            .map_ram(pa, memory.pages.clone(), attr)
            .map_err(hsm_error)
    }

    /// CREATE_IOREQ_CLIENT.
    #[napi]
    pub fn create_ioreq_client(&self) -> Result<()> {
        self.vm.create_ioreq_client().map_err(hsm_error)
    }

    /// CREATE_IOREQ_CLIENT, returning the client that serves devices (`poll`: busy-poll the
    /// page instead of sleeping in ATTACH).
    #[napi]
    pub fn create_client(&self, poll: Option<bool>) -> Result<crate::client::IoreqClientHandle> {
        crate::client::IoreqClientHandle::create(self.vm.clone(), poll.unwrap_or(false))
    }

    /// ATTACH_IOREQ_CLIENT: resolves when a request may be pending (level-triggered; re-scan
    /// after every return); rejects with ENODEV when the client is destroyed.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn attach_ioreq_client(&self) -> AsyncTask<AttachTask> {
        AsyncTask::new(AttachTask {
            failure: Failure::default(),
            vm: self.vm.clone(),
        })
    }

    /// ATTACH_IOREQ_CLIENT, blocking the calling thread (for a worker's synchronous loop).
    #[napi]
    pub fn attach_ioreq_client_sync(&self) -> Result<()> {
        self.vm.attach_ioreq_client().map_err(hsm_error)
    }

    /// DESTROY_IOREQ_CLIENT.
    #[napi]
    pub fn destroy_ioreq_client(&self) -> Result<()> {
        self.vm.destroy_ioreq_client().map_err(hsm_error)
    }

    /// NOTIFY_REQUEST_FINISH for `vcpu`.
    #[napi]
    pub fn notify_request_finish(&self, vcpu: u32) -> Result<()> {
        self.vm.notify_request_finish(vcpu).map_err(hsm_error)
    }

    /// CLEAR_VM_IOREQ.
    #[napi]
    pub fn clear_vm_ioreq(&self) -> Result<()> {
        self.vm.clear_vm_ioreq().map_err(hsm_error)
    }

    /// IOEVENTFD.
    #[napi]
    pub fn ioeventfd(
        &self,
        fd: i32,
        flags: u32,
        addr: BigInt,
        len: u32,
        data: BigInt,
    ) -> Result<()> {
        let args = IoEventFd {
            fd,
            flags,
            addr: bigint_u64("addr", &addr)?,
            len,
            data: bigint_u64("data", &data)?,
        };
        self.vm.ioeventfd(&args).map_err(hsm_error)
    }

    /// Copies `length` bytes of guest RAM at `gpa` (across adjacent segments too).
    #[napi]
    pub fn memory_read(&self, gpa: BigInt, length: u32) -> Result<Buffer> {
        crate::memory::read(self.vm.memory(), bigint_u64("gpa", &gpa)?, length)
    }

    /// Copies `bytes` into guest RAM at `gpa`.
    #[napi]
    pub fn memory_write(&self, gpa: BigInt, bytes: Uint8Array) -> Result<()> {
        crate::memory::write(self.vm.memory(), bigint_u64("gpa", &gpa)?, &bytes)
    }

    /// A zero-copy `Buffer` over `[gpa, gpa + length)` of one RAM segment, which keeps the
    /// memory mapped while it lives.
    #[napi]
    pub fn memory_view<'env>(
        &self,
        env: &'env Env,
        gpa: BigInt,
        length: u32,
    ) -> Result<BufferSlice<'env>> {
        let alias = self
            .vm
            .memory()
            .view(bigint_u64("gpa", &gpa)?, length as usize)
            .map_err(|e| crate::memory::range_error(&e))?;
        crate::memory::external_buffer(env, alias)
    }

    /// The RAM segments, sorted by GPA.
    #[napi]
    pub fn memory_segments(&self) -> Vec<crate::memory::MemorySegment> {
        self.vm
            .memory()
            .segments()
            .into_iter()
            .map(|(g, l)| crate::memory::MemorySegment {
                gpa: BigInt::from(g),
                length: BigInt::from(l),
            })
            .collect()
    }

    /// The interrupts that reached this VM's guest on the emulator (`ENODEV` on the real
    /// device): MSIs delivered, edges per GSI, interrupts a `wait_irq` took.
    #[napi]
    pub fn irq_counters(&self) -> Result<IrqCountersInfo> {
        let emu =
            emulator_of(&self.hsm).ok_or_else(|| errno_error("irqCounters", Errno::ENODEV))?;
        let c = emu
            .irq_counters(self.vm.vmid())
            .ok_or_else(|| errno_error("irqCounters", Errno::ENOTTY))?;
        Ok(IrqCountersInfo {
            msi: c.msi as f64,
            delivered: c.delivered.iter().map(|&n| n as f64).collect(),
            edges: c.edges.iter().map(|&n| n as f64).collect(),
            levels: c.levels,
            taken: c.taken as f64,
        })
    }

    /// IRQFD.
    #[napi]
    pub fn irqfd(&self, fd: i32, flags: u32, msi_addr: BigInt, msi_data: BigInt) -> Result<()> {
        let args = IrqFd {
            fd,
            flags,
            msi_addr: bigint_u64("msiAddr", &msi_addr)?,
            msi_data: bigint_u64("msiData", &msi_data)?,
        };
        self.vm.irqfd(&args).map_err(hsm_error)
    }

    /// INJECT_MSI.
    #[napi]
    pub fn inject_msi(&self, msi_addr: BigInt, msi_data: BigInt) -> Result<()> {
        self.vm
            .inject_msi(
                bigint_u64("msiAddr", &msi_addr)?,
                bigint_u64("msiData", &msi_data)?,
            )
            .map_err(hsm_error)
    }

    /// SET_IRQLINE.
    #[napi]
    pub fn set_irqline(&self, gsi: u32, op: u32) -> Result<()> {
        self.vm.set_irqline(gsi, op).map_err(hsm_error)
    }

    /// SET_PTDEV_INTR.
    #[napi]
    pub fn set_ptdev_intr(&self, irq: PtdevIrqOptions) -> Result<()> {
        self.vm.set_ptdev_intr(&irq.to_irq()?).map_err(hsm_error)
    }

    /// RESET_PTDEV_INTR.
    #[napi]
    pub fn reset_ptdev_intr(&self, irq: PtdevIrqOptions) -> Result<()> {
        self.vm.reset_ptdev_intr(&irq.to_irq()?).map_err(hsm_error)
    }

    /// ASSIGN_PCIDEV.
    #[napi]
    pub fn assign_pcidev(&self, dev: PciDevOptions) -> Result<()> {
        self.vm.assign_pcidev(&dev.to_dev()?).map_err(hsm_error)
    }

    /// DEASSIGN_PCIDEV.
    #[napi]
    pub fn deassign_pcidev(&self, dev: PciDevOptions) -> Result<()> {
        self.vm.deassign_pcidev(&dev.to_dev()?).map_err(hsm_error)
    }

    /// ASSIGN_MMIODEV.
    #[napi]
    pub fn assign_mmiodev(&self, dev: MmioDevOptions) -> Result<()> {
        self.vm.assign_mmiodev(&dev.to_dev()?).map_err(hsm_error)
    }

    /// DEASSIGN_MMIODEV.
    #[napi]
    pub fn deassign_mmiodev(&self, dev: MmioDevOptions) -> Result<()> {
        self.vm.deassign_mmiodev(&dev.to_dev()?).map_err(hsm_error)
    }

    /// CREATE_VDEV.
    #[napi]
    pub fn create_vdev(&self, dev: VdevOptions) -> Result<()> {
        self.vm.create_vdev(&dev.to_vdev()?).map_err(hsm_error)
    }

    /// DESTROY_VDEV.
    #[napi]
    pub fn destroy_vdev(&self, dev: VdevOptions) -> Result<()> {
        self.vm.destroy_vdev(&dev.to_vdev()?).map_err(hsm_error)
    }

    /// PM_GET_CPU_STATE with the raw command (`vmid << 24 | vcpu << 16 | index << 8 | type`).
    #[napi]
    pub fn pm_get_cpu_state(&self, cmd: BigInt) -> Result<PmStateResult> {
        let st = self
            .vm
            .pm_get_cpu_state(bigint_u64("cmd", &cmd)?)
            .map_err(hsm_error)?;
        let mut r = PmStateResult {
            kind: String::new(),
            count: None,
            pstate: None,
            cstate_type: None,
            latency: None,
            power: None,
            address: None,
        };
        match st {
            PmState::None => r.kind = "none".into(),
            PmState::Count(n) => {
                r.kind = "count".into();
                r.count = Some(u32::from(n));
            }
            PmState::PState(v) => {
                r.kind = "pstate".into();
                r.pstate = Some(v.iter().map(|&x| BigInt::from(x)).collect());
            }
            PmState::CState {
                address,
                ty,
                latency,
                power,
                ..
            } => {
                r.kind = "cstate".into();
                r.cstate_type = Some(u32::from(ty));
                r.latency = Some(latency);
                r.power = Some(BigInt::from(power));
                r.address = Some(BigInt::from(address));
            }
        }
        Ok(r)
    }

    /// VM_INTR_MONITOR with GET_DATA: the `(irq, count)` pairs of the VM's passthrough
    /// interrupts.
    #[napi]
    pub fn intr_monitor_data(&self) -> Result<Vec<IntrCount>> {
        Ok(self
            .vm
            .intr_monitor_data()
            .map_err(hsm_error)?
            .into_iter()
            .map(|(irq, count)| IntrCount {
                irq: BigInt::from(irq),
                count: BigInt::from(count),
            })
            .collect())
    }

    /// Runs a guest workload (JSON text of the workload format) on the emulated vCPUs; resolves
    /// when every vCPU has finished or stopped.
    #[napi(ts_return_type = "Promise<GuestRunResult>")]
    pub fn run_guest(&self, workload_json: String) -> Result<AsyncTask<GuestTask>> {
        let workload = Workload::from_json(&workload_json)
            .map_err(|e| coded_error("ERR_INVALID_WORKLOAD", &e.to_string()))?;
        let emu = emulator_of(&self.hsm).ok_or_else(|| errno_error("guest", Errno::ENODEV))?;
        let guest = emu
            .guest(self.vm.vmid())
            .map_err(|e| errno_error("guest", e))?;
        Ok(AsyncTask::new(GuestTask {
            failure: Failure::default(),
            guest: Some(guest),
            workload,
        }))
    }
}
