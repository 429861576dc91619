//! The HSM (real device or emulator), its VM and the emulator's guest, as JavaScript classes.
//!
//! Errors carry the errno: `[EINVAL] errno=22 CREATE_VM: ...`, which the façade turns into an
//! `AcrnHsmError` with `code` and `errno`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use acrn_hsm::{
    Emulator, EmulatorConfig, Errno, Hsm, IoEventFd, IoctlArg, IrqFd, MemMap, RunResult, UserPages,
    VcpuRegs, Vm, VmConfig, Workload,
};
use napi::bindgen_prelude::{AsyncTask, BigInt, Buffer, Float64Array, Uint8Array};
use napi::{Env, Task};
use napi_derive::napi;

use crate::decode::coded_error;

fn errno_error(op: &str, errno: Errno) -> napi::Error {
    coded_error(errno.name(), &format!("errno={} {op}: {errno}", errno.0))
}

pub(crate) fn hsm_error(err: acrn_hsm::Error) -> napi::Error {
    errno_error(err.op, err.errno)
}

fn bigint_u64(what: &str, value: &BigInt) -> napi::Result<u64> {
    let (signed, v, lossless) = value.get_u64();
    if signed || !lossless {
        return Err(coded_error(
            "ERR_OUT_OF_RANGE",
            &format!("{what} must be a bigint in 0..2^64-1"),
        ));
    }
    Ok(v)
}

/// Options of the emulated machine.
#[napi(object)]
#[derive(Debug, Default)]
pub struct EmulatorOptions {
    /// Physical CPUs of the emulated hypervisor (default 16): a VM gets one vCPU per pCPU of its affinity.
    pub pcpus: Option<u32>,
    /// VM slots for post-launched VMs (default 8).
    pub max_vms: Option<u32>,
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
    pub fn read(&self, offset: u32, length: u32) -> napi::Result<Buffer> {
        let mut out = vec![0u8; length as usize];
        self.pages
            .read_bytes(offset as usize, &mut out)
            .map_err(|e| errno_error("UserPage.read", e))?;
        Ok(out.into())
    }

    /// Copies `bytes` in at `offset`.
    #[napi]
    pub fn write(&self, offset: u32, bytes: Uint8Array) -> napi::Result<()> {
        self.pages
            .write_bytes(offset as usize, &bytes)
            .map_err(|e| errno_error("UserPage.write", e))
    }

    /// Reads slot `vcpu` of an ioreq page as the protocol demands: `processed` with an acquire
    /// load first, then the rest of the 256 bytes.
    #[napi]
    pub fn read_slot(&self, vcpu: u32) -> napi::Result<Buffer> {
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
pub fn alloc_pages(length: u32) -> napi::Result<UserPage> {
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
    pub fn open(path: String) -> napi::Result<HsmHandle> {
        let hsm = Hsm::open(&path).map_err(|err| {
            let op = format!("open {path}");
            errno_error(&op, err.errno)
        })?;
        Ok(HsmHandle { hsm })
    }

    /// A handle on a new emulated machine.
    #[napi(factory)]
    pub fn emulated(options: Option<EmulatorOptions>) -> napi::Result<HsmHandle> {
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
        Ok(HsmHandle {
            hsm: Hsm::emulated(&Emulator::with_config(config)),
        })
    }

    /// Another open file on the same machine (emulator only; a real device is opened again by path).
    #[napi]
    pub fn reopen(&self) -> napi::Result<HsmHandle> {
        let emu = self.hsm.emulator().ok_or_else(|| {
            coded_error(
                "ENODEV",
                "errno=19 reopen: only an emulated handle can be reopened",
            )
        })?;
        Ok(HsmHandle {
            hsm: Hsm::emulated(emu),
        })
    }

    /// Whether this handle is on the emulator.
    #[napi(getter)]
    pub fn emulated_backend(&self) -> bool {
        self.hsm.emulator().is_some()
    }

    /// The raw ioctl with a pointer argument: `arg` holds the argument struct's bytes and is
    /// written back in place (what `_IOWR`/`_IOR` write back); absent for `_IO` requests.
    /// Returns the ioctl's result.
    #[napi]
    pub fn ioctl(&self, request: u32, arg: Option<&mut [u8]>) -> napi::Result<i64> {
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
    pub fn ioctl_value(&self, request: u32, value: BigInt) -> napi::Result<i64> {
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
    ) -> napi::Result<VmHandle> {
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
    fn to_memmap(&self) -> napi::Result<MemMap> {
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
                    acrn_hsm::FaultKind::GeneralProtection => "general-protection".to_owned(),
                    acrn_hsm::FaultKind::StrayWakeup => "stray-wakeup".to_owned(),
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

/// ATTACH_IOREQ_CLIENT on the libuv pool (it blocks until a request is pending).
pub struct AttachTask {
    vm: Arc<Vm>,
}

impl Task for AttachTask {
    type Output = ();
    type JsValue = ();

    fn compute(&mut self) -> napi::Result<()> {
        self.vm.attach_ioreq_client().map_err(hsm_error)
    }

    fn resolve(&mut self, _env: Env, _output: ()) -> napi::Result<()> {
        Ok(())
    }
}

/// A guest workload run on the libuv pool.
pub struct GuestTask {
    guest: Option<acrn_hsm::Guest>,
    workload: Workload,
}

impl Task for GuestTask {
    type Output = RunResult;
    type JsValue = GuestRunResult;

    fn compute(&mut self) -> napi::Result<RunResult> {
        let guest = self
            .guest
            .take()
            .ok_or_else(|| coded_error("ERR_INVALID_STATE", "guest run started twice"))?;
        guest
            .run(&self.workload)
            .map_err(|e| errno_error("guest run", e))
    }

    fn resolve(&mut self, _env: Env, output: RunResult) -> napi::Result<GuestRunResult> {
        Ok(run_result_to_js(output))
    }
}

fn opt_u64(what: &str, v: &Option<BigInt>) -> napi::Result<u64> {
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
    pub fn from_shared(token: u32) -> napi::Result<VmHandle> {
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
    pub fn start(&self) -> napi::Result<()> {
        self.vm.start().map_err(hsm_error)
    }

    /// PAUSE_VM.
    #[napi]
    pub fn pause(&self) -> napi::Result<()> {
        self.vm.pause().map_err(hsm_error)
    }

    /// RESET_VM.
    #[napi]
    pub fn reset(&self) -> napi::Result<()> {
        self.vm.reset().map_err(hsm_error)
    }

    /// DESTROY_VM.
    #[napi]
    pub fn destroy(&self) -> napi::Result<()> {
        self.vm.destroy().map_err(hsm_error)?;
        // A destroyed VM is no longer handed out to other threads (`fromShared`).
        let mut shared = SHARED_VMS.lock().unwrap_or_else(|e| e.into_inner());
        shared.retain(|(_, w, _)| w.upgrade().is_some_and(|vm| !Arc::ptr_eq(&vm, &self.vm)));
        Ok(())
    }

    /// SET_VCPU_REGS.
    #[napi]
    pub fn set_vcpu_regs(&self, regs: VcpuRegsOptions) -> napi::Result<()> {
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
    pub fn set_memseg(&self, map: MemsegOptions) -> napi::Result<()> {
        self.vm.set_memseg(&map.to_memmap()?).map_err(hsm_error)
    }

    /// UNSET_MEMSEG.
    #[napi]
    pub fn unset_memseg(&self, map: MemsegOptions) -> napi::Result<()> {
        self.vm.unset_memseg(&map.to_memmap()?).map_err(hsm_error)
    }

    /// Maps `memory` as guest RAM at `userVmPa` (SET_MEMSEG of type RAM) and keeps it alive.
    #[napi]
    pub fn map_ram(&self, user_vm_pa: BigInt, memory: &UserPage, attr: u32) -> napi::Result<()> {
        let pa = bigint_u64("userVmPa", &user_vm_pa)?;
        self.vm
            .map_ram(pa, memory.pages.clone(), attr)
            .map_err(hsm_error)
    }

    /// CREATE_IOREQ_CLIENT.
    #[napi]
    pub fn create_ioreq_client(&self) -> napi::Result<()> {
        self.vm.create_ioreq_client().map_err(hsm_error)
    }

    /// CREATE_IOREQ_CLIENT, returning the client that serves devices (`poll`: busy-poll the
    /// page instead of sleeping in ATTACH).
    #[napi]
    pub fn create_client(
        &self,
        poll: Option<bool>,
    ) -> napi::Result<crate::client::IoreqClientHandle> {
        crate::client::IoreqClientHandle::create(self.vm.clone(), poll.unwrap_or(false))
    }

    /// ATTACH_IOREQ_CLIENT: resolves when a request may be pending (level-triggered; re-scan
    /// after every return); rejects with ENODEV when the client is destroyed.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn attach_ioreq_client(&self) -> AsyncTask<AttachTask> {
        AsyncTask::new(AttachTask {
            vm: self.vm.clone(),
        })
    }

    /// ATTACH_IOREQ_CLIENT, blocking the calling thread (for a worker's synchronous loop).
    #[napi]
    pub fn attach_ioreq_client_sync(&self) -> napi::Result<()> {
        self.vm.attach_ioreq_client().map_err(hsm_error)
    }

    /// DESTROY_IOREQ_CLIENT.
    #[napi]
    pub fn destroy_ioreq_client(&self) -> napi::Result<()> {
        self.vm.destroy_ioreq_client().map_err(hsm_error)
    }

    /// NOTIFY_REQUEST_FINISH for `vcpu`.
    #[napi]
    pub fn notify_request_finish(&self, vcpu: u32) -> napi::Result<()> {
        self.vm.notify_request_finish(vcpu).map_err(hsm_error)
    }

    /// CLEAR_VM_IOREQ.
    #[napi]
    pub fn clear_vm_ioreq(&self) -> napi::Result<()> {
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
    ) -> napi::Result<()> {
        let args = IoEventFd {
            fd,
            flags,
            addr: bigint_u64("addr", &addr)?,
            len,
            data: bigint_u64("data", &data)?,
        };
        self.vm.ioeventfd(&args).map_err(hsm_error)
    }

    /// IRQFD.
    #[napi]
    pub fn irqfd(
        &self,
        fd: i32,
        flags: u32,
        msi_addr: BigInt,
        msi_data: BigInt,
    ) -> napi::Result<()> {
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
    pub fn inject_msi(&self, msi_addr: BigInt, msi_data: BigInt) -> napi::Result<()> {
        self.vm
            .inject_msi(
                bigint_u64("msiAddr", &msi_addr)?,
                bigint_u64("msiData", &msi_data)?,
            )
            .map_err(hsm_error)
    }

    /// SET_IRQLINE.
    #[napi]
    pub fn set_irqline(&self, gsi: u32, op: u32) -> napi::Result<()> {
        self.vm.set_irqline(gsi, op).map_err(hsm_error)
    }

    /// Runs a guest workload (JSON text of the workload format) on the emulated vCPUs; resolves
    /// when every vCPU has finished or stopped.
    #[napi(ts_return_type = "Promise<GuestRunResult>")]
    pub fn run_guest(&self, workload_json: String) -> napi::Result<AsyncTask<GuestTask>> {
        let workload = Workload::from_json(&workload_json)
            .map_err(|e| coded_error("ERR_INVALID_WORKLOAD", &e.to_string()))?;
        let guest = self.hsm.guest(&self.vm).map_err(hsm_error)?;
        Ok(AsyncTask::new(GuestTask {
            guest: Some(guest),
            workload,
        }))
    }
}
