//! The ioreq client for JavaScript device backends: the core's [`IoreqClient`] with JavaScript
//! devices registered as *deferred* devices. Native devices of the core are served on the spot;
//! requests for JavaScript devices come out of [`IoreqClient::next_batch`] in batches.
//!
//! One call, [`client_next`] (or `nextAsync` on the libuv pool), completes the previous batch
//! and waits for the next one, which it writes into a preallocated `BigUint64Array`: no
//! allocation per request, one boundary crossing per batch. Everything else (the scan, routing,
//! unclaimed and malformed requests, NOTIFY, recording, reset/suspend) is the core's.
//!
//! Devices are added and removed through the core's [`DispatcherHandle`], whether the client
//! serves or not: the core checks each change at once and applies it before its next scan. The
//! device index in the records is the core's [`DeviceId`] (below 0xffff).
//!
//! Record layout ([`RECORD_WORDS`] words per request, decoded by `ts/client.ts` with the
//! constants of [`batchLayout`]): `w0 = device | vcpu << 16 | kind << 24 | is_read << 26 |
//! size << 32`, `w1 = offset` (register for PCI), `w2 = value written`, `w3 = address` (port,
//! GPA, or the PCI function packed as `bus << 16 | dev << 11 | func << 8`).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use acrn_hsm::Vm;
use acrn_hsm::client::{
    AddressSpace, BarHandler, Batch, Bdf, BusError, ClientConfig, ClientHandle, DeferredAt,
    DeferredRequest, DeviceId, Dispatcher, DispatcherHandle, FaultReport, IoDevice, IoreqClient,
    Kind, VmAction, WakeMode,
};
use acrn_hsm::devices::virtio::{
    CompleteError, DeferredVirtio, VirtioBlk, VirtioDevice, VirtioPci, VirtioRng, VmInterrupts,
};
use acrn_hsm::devices::{
    Bar, Msi, MsiConfig, MsiSignal, MsiSink, Msix, MsixConfig, PciFunction, RegisterFile,
    RegisterView, Uart16550, UartInput, UartOutput,
};
use acrn_hsm::trace::{TraceRecorder, TraceSetup};
use napi::bindgen_prelude::{AsyncTask, BigInt, BigUint64Array, Buffer};
use napi::{Env, Task};
use napi_derive::napi;

use crate::errors::{Failure, Result, coded_error, hsm_error};

/// Words per request record.
pub const RECORD_WORDS: u32 = 4;
/// Requests in a batch at most (one per ioreq slot).
pub const MAX_BATCH: u32 = 16;
/// Device ids fit in the 16 bits of a record; 0xffff is "no device".
const MAX_DEVICE: u32 = 0xffff;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The layout of a batch record, for the façade's decoder (one source: this file).
#[napi(object)]
#[derive(Debug)]
pub struct BatchLayout {
    /// Words per record.
    pub record_words: u32,
    /// Records per batch at most.
    pub max_batch: u32,
    /// Shift of the vCPU in word 0.
    pub vcpu_shift: u32,
    /// Shift of the kind (0 PIO, 1 MMIO, 2 PCI) in word 0.
    pub kind_shift: u32,
    /// Shift of the is-read bit in word 0.
    pub read_shift: u32,
    /// Shift of the size in word 0.
    pub size_shift: u32,
}

const VCPU_SHIFT: u32 = 16;
const KIND_SHIFT: u32 = 24;
const READ_SHIFT: u32 = 26;
const SIZE_SHIFT: u32 = 32;

/// The layout of the records `clientNext` / `nextAsync` write.
#[napi]
pub fn batch_layout() -> BatchLayout {
    BatchLayout {
        record_words: RECORD_WORDS,
        max_batch: MAX_BATCH,
        vcpu_shift: VCPU_SHIFT,
        kind_shift: KIND_SHIFT,
        read_shift: READ_SHIFT,
        size_shift: SIZE_SHIFT,
    }
}

fn kind_code(kind: Kind) -> u64 {
    match kind {
        Kind::Pio => 0,
        Kind::Mmio => 1,
        Kind::PciCfg => 2,
        Kind::Unknown(_) => 3,
    }
}

/// The serving half: the core client and the recorder being written, if any.
pub(crate) struct Server {
    client: IoreqClient,
    recorder: Option<TraceRecorder>,
}

/// Ends a server: a recording is finished, the client dropped (DESTROY_IOREQ_CLIENT).
fn close(server: &mut Option<Server>) {
    if let Some(mut s) = server.take() {
        drop(s.client.set_recorder(None));
        if let Some(r) = s.recorder.take() {
            // Nobody to report to: the records written so far stay in the file.
            let _ = r.finish();
        }
    }
}

impl Server {
    fn next(&mut self, responses: &[u64]) -> Result<Option<usize>> {
        match self.client.next_batch(responses).map_err(hsm_error)? {
            Batch::Ready(n) => Ok(Some(n)),
            Batch::Exit(_) => Ok(None),
        }
    }

    fn js_device(&self, id: DeviceId) -> u64 {
        u64::try_from(id.0)
            .ok()
            .filter(|&i| i < u64::from(MAX_DEVICE))
            .unwrap_or(u64::from(MAX_DEVICE))
    }

    /// Encodes the batch into `out` ([`RECORD_WORDS`] words per request).
    fn write_records(&self, out: &mut [u64]) {
        let words = RECORD_WORDS as usize;
        for (k, d) in self.client.batch().iter().enumerate() {
            let DeferredRequest {
                request: r,
                device,
                offset,
            } = *d;
            let w = &mut out[k * words..(k + 1) * words];
            w[0] = self.js_device(device)
                | u64::from(r.vcpu) << VCPU_SHIFT
                | kind_code(r.kind) << KIND_SHIFT
                | u64::from(r.is_read) << READ_SHIFT
                | (r.size & 0xff) << SIZE_SHIFT;
            w[1] = offset;
            w[2] = r.value;
            w[3] = match r.kind {
                Kind::PciCfg => {
                    u64::from(r.bdf.bus) << 16
                        | u64::from(r.bdf.dev) << 11
                        | u64::from(r.bdf.func) << 8
                }
                _ => r.address,
            };
        }
    }
}

/// A malformed request the client completed with all ones.
#[napi(object)]
#[derive(Debug, Clone)]
pub struct FaultInfo {
    /// The vCPU.
    pub vcpu: u32,
    /// Why (`'invalid access size 3'`, ...).
    pub reason: String,
    /// The request as found (`'MMIO read 0x... size 3'`).
    pub request: String,
}

/// The client's counters.
#[napi(object)]
#[derive(Debug)]
pub struct ClientCounters {
    /// Requests handed to JavaScript devices.
    pub js: f64,
    /// Requests served by native devices.
    pub native: f64,
    /// Requests nobody claimed (reads all ones).
    pub unclaimed: f64,
    /// Malformed requests (completed with all ones).
    pub faults: f64,
    /// NOTIFYs issued.
    pub notifies: f64,
    /// NOTIFYs that failed.
    pub notify_errors: f64,
    /// Batches handed to JavaScript.
    pub batches: f64,
    /// Largest batch.
    pub max_batch: f64,
    /// ATTACH wake-ups (blocking mode).
    pub wakeups: f64,
    /// Device-model style resets done.
    pub resets: f64,
}

/// Native PCI function options.
#[napi(object)]
#[derive(Debug)]
pub struct PciFunctionOptions {
    /// Vendor ID.
    pub vendor_id: u32,
    /// Device ID.
    pub device_id: u32,
    /// Class, subclass, prog-if as 0xCCSSPP.
    pub class_code: Option<u32>,
    /// BARs: `{ index, kind: 'mem32' | 'mem64' | 'io', size }`.
    pub bars: Option<Vec<PciBarOptions>>,
    /// Name for statistics.
    pub name: Option<String>,
    /// Subsystem vendor ID (0x2c, read-only; default 0).
    pub subsystem_vendor_id: Option<u32>,
    /// Subsystem ID (0x2e, read-only; default 0).
    pub subsystem_id: Option<u32>,
    /// Interrupt pin (0x3d, read-only): 1 = INTA# .. 4 = INTD#, 0 none (default).
    pub interrupt_pin: Option<u32>,
    /// An MSI capability.
    pub msi: Option<PciMsiOptions>,
    /// An MSI-X capability, its table and PBA in a memory BAR served by the core.
    pub msix: Option<PciMsixOptions>,
}

/// An MSI capability (PCI id 0x05).
#[napi(object)]
#[derive(Debug)]
pub struct PciMsiOptions {
    /// Vectors: 1, 2, 4, 8, 16 or 32 (default 1).
    pub vectors: Option<u32>,
    /// 64-bit message address (default true).
    pub addr64: Option<bool>,
    /// Per-vector mask and pending bits (default true).
    pub per_vector_mask: Option<bool>,
}

/// An MSI-X capability (PCI id 0x11).
#[napi(object)]
#[derive(Debug)]
pub struct PciMsixOptions {
    /// Table entries, 1..2048.
    pub table_size: u32,
    /// The memory BAR holding the table (not one served by JavaScript).
    pub bar: u32,
    /// The table's offset in it (multiple of 8; default 0).
    pub table_offset: Option<u32>,
    /// The BAR holding the PBA (default: the table's).
    pub pba_bar: Option<u32>,
    /// The PBA's offset in it (multiple of 8; default: right after the table, or 0 in another BAR).
    pub pba_offset: Option<u32>,
}

/// One BAR.
#[napi(object)]
#[derive(Debug)]
pub struct PciBarOptions {
    /// BAR register index (0..5).
    pub index: u32,
    /// `'mem32' | 'mem64' | 'io'`.
    pub kind: String,
    /// Size in bytes (a power of two).
    pub size: BigInt,
    /// Served by a JavaScript device once the guest programs and enables it.
    pub js: Option<bool>,
}

/// A native virtio device (modern virtio-pci).
#[napi(object)]
#[derive(Debug)]
pub struct VirtioOptions {
    /// `'blk'` (a file) or `'rng'`.
    pub kind: String,
    /// The disk image of a `'blk'` device.
    pub path: Option<String>,
    /// Attach the disk read-only.
    pub read_only: Option<bool>,
}

/// A virtio device served in JavaScript: its chains are deferred to `virtioTake`.
#[napi(object)]
pub struct JsVirtioOptions {
    /// A short name (`virtio-<name>`).
    pub name: String,
    /// The virtio device type (1..=0xffbf: 2 block, 3 console, 4 entropy...).
    pub device_type: u32,
    /// The device-type feature bits offered (the transport adds VERSION_1, INDIRECT_DESC,
    /// RING_EVENT_IDX).
    pub features: BigInt,
    /// The device configuration space image.
    pub config: Buffer,
    /// The maximum size of each queue (1 to 63 queues; sizes powers of two up to 32768).
    pub queues: Vec<u32>,
}

impl std::fmt::Debug for JsVirtioOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsVirtioOptions")
            .field("name", &self.name)
            .field("device_type", &self.device_type)
            .field("config_len", &self.config.len())
            .field("queues", &self.queues)
            .finish()
    }
}

/// One guest buffer of a deferred chain.
#[napi(object)]
#[derive(Debug)]
pub struct VirtioBuffer {
    /// Guest-physical address.
    pub gpa: BigInt,
    /// Length in bytes.
    pub len: u32,
}

/// A deferred chain for a JavaScript virtio device.
#[napi(object)]
#[derive(Debug)]
pub struct VirtioChain {
    /// The device's handle (what `addJsVirtio` returned).
    pub device: u32,
    /// The reset epoch the chain belongs to (passed back to `virtioReturnChain`).
    pub epoch: f64,
    /// The queue.
    pub queue: u32,
    /// The head descriptor index (passed back to `virtioReturnChain`).
    pub head: u32,
    /// The device-readable buffers, in chain order.
    pub readable: Vec<VirtioBuffer>,
    /// The device-writable buffers, in chain order.
    pub writable: Vec<VirtioBuffer>,
}

/// A virtio transport's state and counters.
#[napi(object)]
#[derive(Debug)]
pub struct VirtioCounters {
    /// The device status register (0x40: DEVICE_NEEDS_RESET).
    pub status: u32,
    /// The features the driver accepted.
    pub driver_features: BigInt,
    /// Queue notifications received.
    pub notifies: f64,
    /// Chains completed.
    pub chains: f64,
    /// Interrupts sent.
    pub interrupts: f64,
    /// Times it went to DEVICE_NEEDS_RESET.
    pub needs_reset: f64,
    /// Why it went there last.
    pub last_error: Option<String>,
}

/// The ioreq client of one VM (the VM's default client).
#[napi]
pub struct IoreqClientHandle {
    pub(crate) server: Arc<Mutex<Option<Server>>>,
    pub(crate) handle: ClientHandle,
    /// Adds and removes devices, serving or not.
    pub(crate) bus: DispatcherHandle,
    faults: Arc<Mutex<Vec<FaultInfo>>>,
    uarts: Vec<(UartOutput, UartInput, DeviceId)>,
    registers: Vec<(RegisterView, DeviceId)>,
    /// Where MSI / MSI-X messages go.
    pub(crate) vm: Arc<Vm>,
    /// The MSI and MSI-X capabilities of PCI functions, by the function's device id.
    msis: Vec<(u32, Msi)>,
    msixes: Vec<(u32, Msix)>,
    /// The virtio devices (native and JavaScript), by handle.
    virtio: Vec<VirtioPci>,
    /// Their PCI functions' device ids (same index).
    virtio_ids: Vec<DeviceId>,
    /// PC platforms (`addPcPlatform`), by handle.
    pub(crate) pcs: Vec<acrn_hsm::pc::PcPlatform>,
}

impl IoreqClientHandle {
    /// CREATE_IOREQ_CLIENT and an empty device table.
    pub(crate) fn create(vm: Arc<Vm>, poll: bool) -> Result<IoreqClientHandle> {
        let faults: Arc<Mutex<Vec<FaultInfo>>> = Arc::default();
        let mut dispatcher = Dispatcher::new();
        let sink = faults.clone();
        dispatcher.set_fault_hook(move |report: &FaultReport| {
            let mut q = lock(&sink);
            // Bounded: a guest that only sends garbage must not grow memory without limit.
            if q.len() < 1024 {
                q.push(FaultInfo {
                    vcpu: u32::from(report.request.vcpu),
                    reason: report.reason.to_string(),
                    request: format!(
                        "{:?} {} {:#x} size {}",
                        report.request.kind,
                        if report.request.is_read {
                            "read"
                        } else {
                            "write"
                        },
                        report.request.address,
                        report.request.size
                    ),
                });
            }
        });
        let config = ClientConfig {
            mode: if poll {
                WakeMode::poll()
            } else {
                WakeMode::Blocking
            },
            // `vm.createIoreqClient()` is also the raw CREATE_IOREQ_CLIENT of programs that run
            // their own ATTACH loop: collecting the object must not destroy their client.
            keep_on_drop: true,
            ..Default::default()
        };
        let client = IoreqClient::new(vm.clone(), dispatcher, config).map_err(hsm_error)?;
        let handle = client.handle();
        Ok(IoreqClientHandle {
            server: Arc::new(Mutex::new(Some(Server {
                client,
                recorder: None,
            }))),
            bus: handle.bus().clone(),
            handle,
            faults,
            uarts: Vec::new(),
            registers: Vec::new(),
            vm,
            msis: Vec::new(),
            msixes: Vec::new(),
            virtio: Vec::new(),
            virtio_ids: Vec::new(),
            pcs: Vec::new(),
        })
    }

    /// Recording is set up while no batch is being waited for (the server is not in use).
    fn with_server<T>(&self, f: impl FnOnce(&mut Server) -> Result<T>) -> Result<T> {
        let mut guard = self.server.try_lock().map_err(|_| {
            coded_error(
                "ERR_CLIENT_RUNNING",
                "a recording is started or stopped while the client is not serving: call record() before run()/runSync(), or stop the client first",
            )
        })?;
        let server = guard
            .as_mut()
            .ok_or_else(|| coded_error("ERR_CLIENT_CLOSED", "the client is closed"))?;
        f(server)
    }

    /// Devices come and go while the client is open, serving or not.
    pub(crate) fn check_open(&self) -> Result<()> {
        let closed =
            self.handle.is_stopped() || self.server.try_lock().is_ok_and(|guard| guard.is_none());
        if closed {
            return Err(coded_error("ERR_CLIENT_CLOSED", "the client is closed"));
        }
        Ok(())
    }

    /// A new device's id as the records carry it (refused past 0xfffe devices).
    pub(crate) fn record_id(&self, id: DeviceId) -> Result<u32> {
        match u32::try_from(id.0) {
            Ok(i) if i < MAX_DEVICE => Ok(i),
            _ => {
                let _ = self.bus.remove(id);
                Err(coded_error(
                    "ERR_RANGE",
                    "a client registers at most 65535 devices in its lifetime",
                ))
            }
        }
    }

    fn add_io(
        &mut self,
        space: AddressSpace,
        base: u64,
        len: u64,
        device: Box<dyn IoDevice>,
    ) -> Result<DeviceId> {
        self.check_open()?;
        let id = self
            .bus
            .add_range(space, base, len, device)
            .map_err(|e| coded_error("ERR_RANGE", &e.to_string()))?;
        self.record_id(id)?;
        Ok(id)
    }

    fn add_js(&mut self, at: DeferredAt, name: &str) -> Result<u32> {
        self.check_open()?;
        let id = self
            .bus
            .add_deferred(at, name)
            .map_err(|e| coded_error("ERR_RANGE", &e.to_string()))?;
        self.record_id(id)
    }
}

fn bigint_u64(what: &str, v: &BigInt) -> Result<u64> {
    let (signed, value, lossless) = v.get_u64();
    if signed || !lossless {
        return Err(coded_error(
            "ERR_OUT_OF_RANGE",
            &format!("{what} must be a bigint in 0..2^64-1"),
        ));
    }
    Ok(value)
}

fn space_of(space: &str) -> Result<AddressSpace> {
    match space {
        "pio" => Ok(AddressSpace::Pio),
        "mmio" => Ok(AddressSpace::Mmio),
        other => Err(coded_error(
            "ERR_INVALID_ARG",
            &format!("space must be 'pio' or 'mmio', got '{other}'"),
        )),
    }
}

/// A batch wait on the libuv pool (`nextAsync`).
pub struct NextTask {
    server: Arc<Mutex<Option<Server>>>,
    responses: Vec<u64>,
    /// The records, filled on the pool thread, then copied into `out_js` on the JS thread.
    out: Vec<u64>,
    /// The caller's preallocated array (64 words), reused for every batch.
    out_js: BigUint64Array,
    failure: Failure,
}

impl Task for NextTask {
    type Output = Option<usize>;
    type JsValue = i32;

    fn compute(&mut self) -> napi::Result<Option<usize>> {
        let r = self.compute_coded();
        self.failure.keep(r)
    }

    fn reject(&mut self, env: Env, err: napi::Error) -> napi::Result<Self::JsValue> {
        self.failure.reject(&env, err)
    }

    fn resolve(&mut self, _env: Env, n: Option<usize>) -> napi::Result<i32> {
        let Some(n) = n else { return Ok(-1) };
        // SAFETY: `resolve` runs on the JS thread, so no JavaScript runs while the array's
        // memory is written; the array is alive (the task holds a reference to it) and was
        // checked in `next_async` to hold 64 words, and `self.out` holds at most 16 records of
        // 4 words. (An array on a SharedArrayBuffer could be written by another thread at the
        // same time; the façade passes its own private array.)
        let dst = unsafe { self.out_js.as_mut() };
        dst[..self.out.len()].copy_from_slice(&self.out);
        Ok(i32::try_from(n).unwrap_or(i32::MAX))
    }
}

impl NextTask {
    fn compute_coded(&mut self) -> Result<Option<usize>> {
        let mut guard = lock(&self.server);
        let Some(server) = guard.as_mut() else {
            return Ok(None);
        };
        let n = server.next(&self.responses)?;
        match n {
            Some(n) => {
                self.out.resize(n * RECORD_WORDS as usize, 0);
                server.write_records(&mut self.out);
            }
            None => close(&mut guard),
        }
        Ok(n)
    }
}

#[napi]
impl IoreqClientHandle {
    /// Registers a JavaScript device on a PIO/MMIO range, serving or not; returns its device id
    /// (its index in the records).
    #[napi]
    pub fn add_js_range(
        &mut self,
        space: String,
        base: BigInt,
        len: BigInt,
        name: String,
    ) -> Result<u32> {
        let space = space_of(&space)?;
        let (base, len) = (bigint_u64("base", &base)?, bigint_u64("length", &len)?);
        self.add_js(DeferredAt::Range(space, base, len), &name)
    }

    /// Registers a JavaScript PCI function, serving or not; returns its device id.
    #[napi]
    pub fn add_js_pci(&mut self, bus: u32, device: u32, func: u32, name: String) -> Result<u32> {
        let bdf = bdf(bus, device, func)?;
        self.add_js(DeferredAt::Pci(bdf), &name)
    }

    /// Adds the core's 16550 UART at `base` (8 ports); returns its handle for `uartOutput`.
    #[napi]
    pub fn add_uart(&mut self, base: u32, name: Option<String>) -> Result<u32> {
        let mut uart = Uart16550::new();
        if let Some(n) = name {
            uart = uart.with_name(n);
        }
        let (out, input) = (uart.output(), uart.input());
        let id = self.add_io(AddressSpace::Pio, u64::from(base), 8, Box::new(uart))?;
        self.uarts.push((out, input, id));
        Ok(u32::try_from(self.uarts.len() - 1).unwrap_or(u32::MAX))
    }

    /// What the UART transmitted since the last call.
    #[napi]
    pub fn uart_take_output(&self, uart: u32) -> Result<Buffer> {
        let (out, ..) = self
            .uarts
            .get(uart as usize)
            .ok_or_else(|| coded_error("ERR_INVALID_ARG", "no such UART"))?;
        Ok(out.take().into())
    }

    /// Queues bytes for the guest to receive.
    #[napi]
    pub fn uart_push_input(&self, uart: u32, bytes: Buffer) -> Result<()> {
        let (_, input, _) = self
            .uarts
            .get(uart as usize)
            .ok_or_else(|| coded_error("ERR_INVALID_ARG", "no such UART"))?;
        input.push(&bytes);
        Ok(())
    }

    /// Adds the core's memory-backed register file; returns its handle for `registerBytes`.
    #[napi]
    pub fn add_register_file(
        &mut self,
        space: String,
        base: BigInt,
        len: u32,
        name: Option<String>,
    ) -> Result<u32> {
        let space = space_of(&space)?;
        let base = bigint_u64("base", &base)?;
        if len == 0 || len > 1 << 24 {
            return Err(coded_error(
                "ERR_OUT_OF_RANGE",
                "a register file is 1 byte to 16 MiB",
            ));
        }
        let mut regs = RegisterFile::new(len as usize);
        if let Some(n) = name {
            regs = regs.with_name(n);
        }
        let view = regs.view();
        let id = self.add_io(space, base, u64::from(len), Box::new(regs))?;
        self.registers.push((view, id));
        Ok(u32::try_from(self.registers.len() - 1).unwrap_or(u32::MAX))
    }

    /// A copy of a register file's contents.
    #[napi]
    pub fn register_bytes(&self, handle: u32) -> Result<Buffer> {
        let (view, _) = self
            .registers
            .get(handle as usize)
            .ok_or_else(|| coded_error("ERR_INVALID_ARG", "no such register file"))?;
        Ok(view.bytes().into())
    }

    /// Adds a native virtio device (modern virtio-pci, BAR 4) at `bus:device.func`, reading the
    /// VM's guest memory and interrupting through INJECT_MSI / SET_IRQLINE; returns its handle
    /// for `virtioCounters`.
    #[napi]
    pub fn add_virtio(
        &mut self,
        bus: u32,
        device: u32,
        func: u32,
        options: VirtioOptions,
    ) -> Result<u32> {
        let bdf = bdf(bus, device, func)?;
        let dev: Box<dyn VirtioDevice> = match options.kind.as_str() {
            "blk" => {
                let path = options.path.ok_or_else(|| {
                    coded_error("ERR_INVALID_ARG", "a virtio-blk device needs a path")
                })?;
                let blk =
                    VirtioBlk::open(std::path::Path::new(&path), options.read_only == Some(true))
                        .map_err(|e| coded_error("ERR_INVALID_ARG", &format!("{path}: {e}")))?;
                Box::new(blk)
            }
            "rng" => Box::new(VirtioRng::new()),
            other => {
                return Err(coded_error(
                    "ERR_INVALID_ARG",
                    &format!("virtio kind must be 'blk' or 'rng', got '{other}'"),
                ));
            }
        };
        self.check_open()?;
        let vm = self.vm.clone();
        let t = VirtioPci::new(dev, vm.clone(), Arc::new(VmInterrupts(vm)));
        let (cfg, bars) = t.clone().into_parts();
        let (id, _) = self
            .bus
            .add_pci_with_bars(bdf, cfg, bars)
            .map_err(|e| coded_error("ERR_RANGE", &e.to_string()))?;
        self.virtio.push(t);
        self.virtio_ids.push(id);
        Ok(u32::try_from(self.virtio.len() - 1).unwrap_or(u32::MAX))
    }

    /// Adds a virtio device served in JavaScript (modern virtio-pci, BAR 4, the transport in
    /// the core) at `bus:device.func`; returns its handle (for `virtioCounters`,
    /// `virtioReturnChain`). Its chains are queued for [`virtio_take`](Self::virtio_take); a batch
    /// wait returns (possibly with no request) once chains were queued.
    #[napi]
    pub fn add_js_virtio(
        &mut self,
        bus: u32,
        device: u32,
        func: u32,
        options: JsVirtioOptions,
    ) -> Result<u32> {
        let bdf = bdf(bus, device, func)?;
        let device_type = u16::try_from(options.device_type)
            .ok()
            .filter(|t| (1..=0xffbf).contains(t))
            .ok_or_else(|| coded_error("ERR_OUT_OF_RANGE", "deviceType must be 1..=0xffbf"))?;
        if options.queues.is_empty() || options.queues.len() > 63 {
            return Err(coded_error(
                "ERR_OUT_OF_RANGE",
                "a virtio device has 1 to 63 queues",
            ));
        }
        let mut queues = Vec::with_capacity(options.queues.len());
        for &q in &options.queues {
            match u16::try_from(q) {
                Ok(q) if q.is_power_of_two() && q <= 32768 => queues.push(q),
                _ => {
                    return Err(coded_error(
                        "ERR_OUT_OF_RANGE",
                        "queue sizes are powers of two up to 32768",
                    ));
                }
            }
        }
        if options.config.len() > 0x1000 {
            return Err(coded_error(
                "ERR_OUT_OF_RANGE",
                "the configuration space holds at most 4096 bytes",
            ));
        }
        let features = bigint_u64("features", &options.features)?;
        self.check_open()?;
        let dev = DeferredVirtio::new(
            options.name,
            device_type,
            features,
            options.config.to_vec(),
            queues,
        );
        let vm = self.vm.clone();
        let t = VirtioPci::new(Box::new(dev), vm.clone(), Arc::new(VmInterrupts(vm)));
        let wake = self.handle.clone();
        // The notify that queued chains completes once they were handed to JavaScript (and, for
        // synchronous handlers, returned): the guest finds them used when its write returns.
        t.set_deferred_hook(Arc::new(move || wake.wake_batch_holding()));
        let (cfg, bars) = t.clone().into_parts();
        let (id, _) = self
            .bus
            .add_pci_with_bars(bdf, cfg, bars)
            .map_err(|e| coded_error("ERR_RANGE", &e.to_string()))?;
        self.virtio.push(t);
        self.virtio_ids.push(id);
        Ok(u32::try_from(self.virtio.len() - 1).unwrap_or(u32::MAX))
    }

    /// Takes the deferred chains of every JavaScript virtio device queued so far.
    #[napi]
    pub fn virtio_take(&self) -> Vec<VirtioChain> {
        let mut out = Vec::new();
        for (k, t) in self.virtio.iter().enumerate() {
            for c in t.take_deferred() {
                let (mut readable, mut writable) = (Vec::new(), Vec::new());
                for b in &c.chain.bufs {
                    let v = VirtioBuffer {
                        gpa: BigInt::from(b.addr),
                        len: b.len,
                    };
                    if b.writable {
                        writable.push(v);
                    } else {
                        readable.push(v);
                    }
                }
                out.push(VirtioChain {
                    device: u32::try_from(k).unwrap_or(u32::MAX),
                    epoch: c.epoch as f64,
                    queue: u32::from(c.queue),
                    head: u32::from(c.chain.head),
                    readable,
                    writable,
                });
            }
        }
        out
    }

    /// Completes a deferred chain with `written` bytes written into its device-writable
    /// buffers: `true` if it went to the used ring, `false` if it was dropped (a reset since,
    /// or the device needs a reset). A head not in flight (completed already) is refused.
    #[napi]
    pub fn virtio_return_chain(
        &self,
        handle: u32,
        epoch: f64,
        queue: u32,
        head: u32,
        written: u32,
    ) -> Result<bool> {
        let t = self
            .virtio
            .get(handle as usize)
            .ok_or_else(|| coded_error("ERR_INVALID_ARG", "no such virtio device"))?;
        let (queue, head) = match (u16::try_from(queue), u16::try_from(head)) {
            (Ok(q), Ok(h)) => (q, h),
            _ => return Err(coded_error("ERR_OUT_OF_RANGE", "queue and head are u16")),
        };
        t.complete(epoch as u64, queue, head, written)
            .map_err(|e: CompleteError| coded_error("ERR_VIRTIO_COMPLETE", &e.to_string()))
    }

    /// The configuration of a JavaScript virtio device changed (`config`: its new image, at
    /// most 4096 bytes): the generation moves on and, once the driver is up, a
    /// configuration-change interrupt. `false` for a native device (nothing changed).
    #[napi]
    pub fn virtio_config_changed(&self, handle: u32, config: Option<Buffer>) -> Result<bool> {
        let t = self
            .virtio
            .get(handle as usize)
            .ok_or_else(|| coded_error("ERR_INVALID_ARG", "no such virtio device"))?;
        if config.as_ref().is_some_and(|c| c.len() > 0x1000) {
            return Err(coded_error(
                "ERR_OUT_OF_RANGE",
                "the configuration space holds at most 4096 bytes",
            ));
        }
        Ok(t.config_changed(config.as_deref()))
    }

    /// The reset epoch of a virtio device (bumped by every driver or platform reset): a chain
    /// of an older epoch was dropped.
    #[napi]
    pub fn virtio_epoch(&self, handle: u32) -> Result<f64> {
        let t = self
            .virtio
            .get(handle as usize)
            .ok_or_else(|| coded_error("ERR_INVALID_ARG", "no such virtio device"))?;
        Ok(t.epoch() as f64)
    }

    /// The state and counters of a virtio device.
    #[napi]
    pub fn virtio_counters(&self, handle: u32) -> Result<VirtioCounters> {
        let t = self
            .virtio
            .get(handle as usize)
            .ok_or_else(|| coded_error("ERR_INVALID_ARG", "no such virtio device"))?;
        let st = t.stats();
        Ok(VirtioCounters {
            status: u32::from(t.status()),
            driver_features: BigInt::from(t.driver_features()),
            notifies: st.notifies as f64,
            chains: st.chains as f64,
            interrupts: st.interrupts as f64,
            needs_reset: st.needs_reset as f64,
            last_error: t.last_error().map(|e| e.to_string()),
        })
    }

    /// The device id of a native device added by `addUart` (`kind` `'uart'`),
    /// `addRegisterFile` (`'registers'`) or `addVirtio` / `addJsVirtio` (`'virtio'`: the PCI
    /// function, whose removal removes its BAR), from the handle those returned, for
    /// `removeDevice`.
    #[napi]
    pub fn native_device_id(&self, kind: String, handle: u32) -> Result<u32> {
        let id = match kind.as_str() {
            "uart" => self.uarts.get(handle as usize).map(|u| u.2),
            "registers" => self.registers.get(handle as usize).map(|r| r.1),
            "virtio" => self.virtio_ids.get(handle as usize).copied(),
            other => {
                return Err(coded_error(
                    "ERR_INVALID_ARG",
                    &format!("kind must be 'uart', 'registers' or 'virtio', got '{other}'"),
                ));
            }
        };
        let id = id.ok_or_else(|| coded_error("ERR_INVALID_ARG", "no such device handle"))?;
        Ok(u32::try_from(id.0).unwrap_or(u32::MAX))
    }

    /// Removes device `id` (a JavaScript device, a native one, or a PCI function with its
    /// BARs), serving or not: from the core's next scan its range is unclaimed (reads all ones,
    /// writes ignored); requests already handed out complete as they were.
    #[napi]
    pub fn remove_device(&mut self, id: u32) -> Result<()> {
        self.check_open()?;
        self.bus
            .remove(DeviceId(id as usize))
            .map_err(|e| match e {
                BusError::NoSuchDevice(_) | BusError::NotRemovable { .. } => {
                    coded_error("ERR_NO_DEVICE", &e.to_string())
                }
                other => coded_error("ERR_RANGE", &other.to_string()),
            })?;
        // A removed function signals nothing any more.
        self.msis.retain(|(f, _)| *f != id);
        self.msixes.retain(|(f, _)| *f != id);
        Ok(())
    }

    /// Adds the core's PCI function (configuration space with BARs). Returns the function's
    /// device id, then the device id of each BAR with `js: true`, in order.
    #[napi]
    pub fn add_pci_function(
        &mut self,
        bus: u32,
        device: u32,
        func: u32,
        options: PciFunctionOptions,
    ) -> Result<Vec<u32>> {
        let bdf = bdf(bus, device, func)?;
        let vendor = u16::try_from(options.vendor_id)
            .map_err(|_| coded_error("ERR_OUT_OF_RANGE", "vendorId is 16 bits"))?;
        let dev_id = u16::try_from(options.device_id)
            .map_err(|_| coded_error("ERR_OUT_OF_RANGE", "deviceId is 16 bits"))?;
        let mut f = PciFunction::new(vendor, dev_id);
        if let Some(n) = options.name.clone() {
            f = f.with_name(n);
        }
        if let Some(c) = options.class_code {
            let [_, class, sub, prog] = c.to_be_bytes();
            f = f.with_class(class, sub, prog, 0);
        }
        if options.subsystem_vendor_id.is_some() || options.subsystem_id.is_some() {
            let id16 = |v: Option<u32>, what: &str| {
                u16::try_from(v.unwrap_or(0))
                    .map_err(|_| coded_error("ERR_OUT_OF_RANGE", &format!("{what} is 16 bits")))
            };
            f = f.with_subsystem(
                id16(options.subsystem_vendor_id, "subsystemVendorId")?,
                id16(options.subsystem_id, "subsystemId")?,
            );
        }
        if let Some(pin) = options.interrupt_pin {
            let pin = u8::try_from(pin)
                .ok()
                .filter(|&p| p <= 4)
                .ok_or_else(|| coded_error("ERR_OUT_OF_RANGE", "interruptPin is 0..4"))?;
            f = f.with_interrupt_pin(pin);
        }
        let fname = options
            .name
            .clone()
            .unwrap_or_else(|| "pci-function".to_owned());
        let mut js_bars = Vec::new();
        for b in options.bars.unwrap_or_default() {
            if b.js == Some(true) {
                js_bars.push(b.index as u8);
            }
            let size = bigint_u64("bar size", &b.size)?;
            let bar = match b.kind.as_str() {
                "mem32" => Bar::Mem32 {
                    size: u32::try_from(size).map_err(|_| {
                        coded_error("ERR_OUT_OF_RANGE", "a mem32 BAR is below 4 GiB")
                    })?,
                    prefetchable: false,
                },
                "mem64" => Bar::Mem64 {
                    size,
                    prefetchable: false,
                },
                "io" => Bar::Io {
                    size: u32::try_from(size).map_err(|_| {
                        coded_error("ERR_OUT_OF_RANGE", "an I/O BAR is at most 256 ports")
                    })?,
                },
                other => {
                    return Err(coded_error(
                        "ERR_INVALID_ARG",
                        &format!("BAR kind must be mem32, mem64 or io, got '{other}'"),
                    ));
                }
            };
            f = f
                .with_bar(b.index as usize, bar)
                .map_err(|e| coded_error("ERR_INVALID_ARG", &e.to_string()))?;
        }
        let invalid =
            |e: acrn_hsm::devices::PciError| coded_error("ERR_INVALID_ARG", &e.to_string());
        let sink: Arc<dyn MsiSink> = self.vm.clone();
        let msi = match options.msi {
            None => None,
            Some(m) => {
                let vectors = u8::try_from(m.vectors.unwrap_or(1))
                    .map_err(|_| coded_error("ERR_OUT_OF_RANGE", "msi.vectors is 1..32"))?;
                let msi = Msi::new(
                    MsiConfig {
                        vectors,
                        addr64: m.addr64.unwrap_or(true),
                        per_vector_mask: m.per_vector_mask.unwrap_or(true),
                    },
                    sink.clone(),
                )
                .map_err(invalid)?;
                f = f.with_msi(&msi).map_err(invalid)?;
                Some(msi)
            }
        };
        let mut native_bars: Vec<(u8, BarHandler)> = Vec::new();
        let msix = match options.msix {
            None => None,
            Some(m) => {
                let small = |v: u32, what: &str| {
                    u8::try_from(v)
                        .ok()
                        .filter(|&b| b <= 5)
                        .ok_or_else(|| coded_error("ERR_OUT_OF_RANGE", &format!("{what} is 0..5")))
                };
                let table_bar = small(m.bar, "msix.bar")?;
                let pba_bar = small(m.pba_bar.unwrap_or(m.bar), "msix.pbaBar")?;
                let table_size = u16::try_from(m.table_size)
                    .map_err(|_| coded_error("ERR_OUT_OF_RANGE", "msix.tableSize is 1..2048"))?;
                let table_offset = m.table_offset.unwrap_or(0);
                let pba_offset = m.pba_offset.unwrap_or(if pba_bar == table_bar {
                    table_offset.saturating_add(u32::from(table_size) * 16)
                } else {
                    0
                });
                if js_bars.contains(&table_bar) || js_bars.contains(&pba_bar) {
                    return Err(coded_error(
                        "ERR_INVALID_ARG",
                        "the MSI-X table and PBA BAR is served by the core: give the JavaScript device another BAR",
                    ));
                }
                let msix = Msix::new(
                    MsixConfig {
                        table_size,
                        table_bar,
                        table_offset,
                        pba_bar,
                        pba_offset,
                    },
                    sink,
                )
                .map_err(invalid)?;
                f = f.with_msix(&msix).map_err(invalid)?;
                native_bars.push((
                    table_bar,
                    BarHandler::Native(Box::new(msix.bar_device(table_bar))),
                ));
                if pba_bar != table_bar {
                    native_bars.push((
                        pba_bar,
                        BarHandler::Native(Box::new(msix.bar_device(pba_bar))),
                    ));
                }
                Some(msix)
            }
        };
        self.check_open()?;
        let range = |e: BusError| coded_error("ERR_RANGE", &e.to_string());
        let js_count = js_bars.len();
        let (fid, ids) = if js_bars.is_empty() && native_bars.is_empty() {
            let fid = self.bus.add_pci(bdf, Box::new(f)).map_err(range)?;
            (fid, Vec::new())
        } else {
            let handlers = js_bars
                .iter()
                .map(|&i| (i, BarHandler::Deferred(format!("{fname}.bar{i}"))))
                .chain(native_bars)
                .collect();
            self.bus
                .add_pci_with_bars(bdf, Box::new(f), handlers)
                .map_err(range)?
        };
        let fid = self.record_id(fid)?;
        let mut out = vec![fid];
        for &id in ids.iter().take(js_count) {
            out.push(self.record_id(id)?);
        }
        if let Some(m) = msi {
            self.msis.push((fid, m));
        }
        if let Some(m) = msix {
            self.msixes.push((fid, m));
        }
        Ok(out)
    }

    /// Signals MSI vector `vector` of the PCI function `id` (as `addPciFunction` returned it):
    /// `'delivered'`, `'pending'` (masked: sent when the guest unmasks it), `'disabled'` (the
    /// guest has not enabled MSI) or `'no-such-vector'`.
    #[napi]
    pub fn signal_msi(&self, id: u32, vector: u32) -> Result<String> {
        let (_, msi) = self.msis.iter().find(|(f, _)| *f == id).ok_or_else(|| {
            coded_error("ERR_NO_DEVICE", "that PCI function has no MSI capability")
        })?;
        Ok(signal_name(msi.signal(vector)))
    }

    /// Signals MSI-X vector `vector` (a table entry) of the PCI function `id`; the same answers
    /// as `signalMsi` (`'pending'`: the function or the entry is masked, the PBA bit is set).
    #[napi]
    pub fn signal_msix(&self, id: u32, vector: u32) -> Result<String> {
        let (_, msix) = self.msixes.iter().find(|(f, _)| *f == id).ok_or_else(|| {
            coded_error("ERR_NO_DEVICE", "that PCI function has no MSI-X capability")
        })?;
        let v = u16::try_from(vector).unwrap_or(u16::MAX);
        Ok(signal_name(msix.signal(v)))
    }

    /// Answers the batch the last `next`/`nextAsync` handed out with `responses` now, on this
    /// thread (the asynchronous loop then waits with `nextAsync([])`): the vCPUs resume without
    /// waiting for a libuv thread to wake. Nothing to do once the client is closed.
    #[napi]
    pub fn answer_batch(&self, responses: &[u64]) -> Result<()> {
        let mut guard = self.server.try_lock().map_err(|_| {
            coded_error(
                "ERR_CLIENT_RUNNING",
                "answerBatch while a wait is in progress: answer before the next nextAsync",
            )
        })?;
        match guard.as_mut() {
            Some(server) => server.client.complete(responses).map_err(hsm_error),
            None => Ok(()),
        }
    }

    /// `next` on the libuv pool: completes the previous batch with `responses`, waits for the
    /// next, writes its records into `out` (at least 64 words, reused from batch to batch: no
    /// allocation per batch on the JS heap) and resolves to their count, or -1 once stopped.
    #[napi(ts_return_type = "Promise<number>")]
    pub fn next_async(
        &self,
        responses: &[u64],
        out: BigUint64Array,
    ) -> Result<AsyncTask<NextTask>> {
        if out.len() < (MAX_BATCH * RECORD_WORDS) as usize {
            return Err(coded_error(
                "ERR_INVALID_ARG",
                "out must hold 64 words (16 requests x 4)",
            ));
        }
        Ok(AsyncTask::new(NextTask {
            failure: Failure::default(),
            server: self.server.clone(),
            responses: responses.to_vec(),
            out: Vec::with_capacity((MAX_BATCH * RECORD_WORDS) as usize),
            out_js: out,
        }))
    }

    /// Stops serving: a waiting `next` returns -1 (DESTROY_IOREQ_CLIENT wakes a blocked ATTACH).
    /// Requests handed to JavaScript and not yet completed stay PROCESSING, as in the kernel,
    /// until CLEAR_VM_IOREQ or the VM's reset or destruction. A recording in progress is
    /// finished.
    #[napi]
    pub fn stop(&self) -> Result<()> {
        self.handle.stop_and_destroy();
        // Not serving: drop the client now (its DESTROY_IOREQ_CLIENT, in poll mode too), so the
        // VM can get a new one at once. A loop waiting in `next` drops it when it returns.
        if let Ok(mut guard) = self.server.try_lock() {
            close(&mut guard);
        }
        Ok(())
    }

    /// A token with which another thread can stop this client (`stopClient(token)`), e.g. the
    /// main thread stopping a worker's synchronous loop.
    #[napi(getter)]
    pub fn stop_token(&self) -> u32 {
        let token = NEXT_STOP_TOKEN.fetch_add(1, Ordering::Relaxed);
        let mut tokens = lock(&STOP_TOKENS);
        // Tokens of clients that ended serving are no longer needed.
        tokens.retain(|(_, h)| !h.is_stopped() || h.is_running());
        tokens.push((token, self.handle.clone()));
        token
    }

    /// Whether `stop` was called.
    #[napi(getter)]
    pub fn stopped(&self) -> bool {
        self.handle.is_stopped()
    }

    /// The counters.
    #[napi]
    pub fn counters(&self) -> ClientCounters {
        let s = self.handle.stats();
        let f = |v: u64| v as f64;
        ClientCounters {
            js: f(s.deferred),
            native: f(s.handled() - s.unclaimed - s.faults),
            unclaimed: f(s.unclaimed),
            faults: f(s.faults),
            notifies: f(s.notifies),
            notify_errors: f(s.notify_errors),
            batches: f(s.batches),
            max_batch: f(s.max_batch),
            wakeups: f(s.wakeups),
            resets: f(s.resets),
        }
    }

    /// The malformed requests seen since the last call.
    #[napi]
    pub fn take_faults(&self) -> Vec<FaultInfo> {
        std::mem::take(&mut *lock(&self.faults))
    }

    /// Asks for a reset (`'reset'`), suspend (`'suspend'`) or power-off (`'poweroff'`) as the
    /// device model does them, from a JavaScript handler: the NOTIFYs of the batch being
    /// handled are withheld, then PAUSE, CLEAR_VM_IOREQ, (reset:) device reset, RESET, START.
    /// After a suspend or power-off the next `next` returns -1.
    #[napi]
    pub fn request_vm_action(&self, action: String) -> Result<()> {
        let a = match action.as_str() {
            "reset" => VmAction::Reset,
            "suspend" => VmAction::Suspend,
            "poweroff" => VmAction::PowerOff,
            other => {
                return Err(coded_error(
                    "ERR_INVALID_ARG",
                    &format!("action must be 'reset', 'suspend' or 'poweroff', got '{other}'"),
                ));
            }
        };
        self.handle.control().request(a);
        Ok(())
    }

    /// Records every request this client serves into a trace file at `path` (format of
    /// docs/trace-format.md), with the devices registered so far in its header. Client-side
    /// stamps only (processing to notify), as on a real device.
    #[napi]
    pub fn start_recording(&self, path: String, name: Option<String>) -> Result<()> {
        self.with_server(|s| {
            if s.recorder.is_some() {
                return Err(coded_error("ERR_RECORDING", "already recording"));
            }
            let vm = s.client.vm().clone();
            let setup = TraceSetup::new(
                &name.unwrap_or_else(|| format!("vmid {}", vm.vmid())),
                vm.vmid(),
                vm.vcpu_num(),
                false,
                s.client.dispatcher_mut().trace_devices(),
            );
            let rec = TraceRecorder::create(&path, &setup)
                .map_err(|e| coded_error("ERR_RECORDING", &format!("{path}: {e}")))?;
            s.client.set_recorder(Some(rec.client()));
            s.recorder = Some(rec);
            Ok(())
        })
    }

    /// Finishes the recording; resolves to the number of records written (0 if none).
    #[napi]
    pub fn stop_recording(&self) -> Result<f64> {
        self.with_server(|s| {
            drop(s.client.set_recorder(None));
            match s.recorder.take() {
                None => Ok(0.0),
                Some(r) => r
                    .finish()
                    .map(|sum| sum.records as f64)
                    .map_err(|e| coded_error("ERR_RECORDING", &e.to_string())),
            }
        })
    }
}

/// Completes the previous batch of `client` and blocks this thread until the next one, through
/// one buffer (one typed-array conversion per call): its first `maxBatch` words are the
/// responses to the previous batch (one value per request, in record order; ignored for
/// writes), the next `maxBatch * recordWords` words receive the records of the new batch.
/// Returns the number of requests, or -1 once the client is stopped. (`runSync` uses the
/// cheaper `syncLaneNext`, the same through a buffer bound once.)
#[napi]
pub fn client_next(
    client: &IoreqClientHandle,
    #[napi(ts_arg_type = "BigUint64Array")] buf: Option<&mut [u64]>,
) -> Result<i32> {
    // `Option` only because napi-rs converts a borrowed mutable typed array through it.
    let buf = buf.ok_or_else(|| coded_error("ERR_INVALID_ARG", "buf must be a BigUint64Array"))?;
    serve_next(&client.server, buf)
}

/// Words of the buffer of [`client_next`] and of a sync lane: the responses, then the records.
pub(crate) const NEXT_WORDS: usize = MAX_BATCH as usize * (1 + RECORD_WORDS as usize);

/// The body of [`client_next`]: answer the batch in `buf`, wait, write the next one into it.
pub(crate) fn serve_next(server: &Mutex<Option<Server>>, buf: &mut [u64]) -> Result<i32> {
    let mut guard = server.try_lock().map_err(|_| {
        coded_error(
            "ERR_CLIENT_RUNNING",
            "another next() is already waiting: one loop (run() or runSync()) per client",
        )
    })?;
    serve_locked(&mut guard, buf)
}

/// [`serve_next`] with the server already locked (the sync lane holds the lock while open).
pub(crate) fn serve_locked(guard: &mut Option<Server>, buf: &mut [u64]) -> Result<i32> {
    let batch = MAX_BATCH as usize;
    if buf.len() < NEXT_WORDS {
        return Err(coded_error(
            "ERR_INVALID_ARG",
            &format!(
                "buf must hold {NEXT_WORDS} words ({batch} responses, then {batch} records x {RECORD_WORDS})"
            ),
        ));
    }
    let (responses, out) = buf.split_at_mut(batch);
    let Some(server) = guard.as_mut() else {
        return Ok(-1);
    };
    match server.next(responses)? {
        Some(n) => {
            server.write_records(out);
            Ok(i32::try_from(n).unwrap_or(i32::MAX))
        }
        None => {
            close(guard);
            Ok(-1)
        }
    }
}

/// A stop token and the handle it stops.
type StopEntry = (u32, ClientHandle);

static STOP_TOKENS: Mutex<Vec<StopEntry>> = Mutex::new(Vec::new());
static NEXT_STOP_TOKEN: AtomicU32 = AtomicU32::new(1);

/// Stops the client named by `token` (see `stopToken`) from any thread. Returns false if that
/// client no longer exists.
#[napi]
pub fn stop_client(token: u32) -> bool {
    let tokens = lock(&STOP_TOKENS);
    let Some(i) = tokens.iter().position(|(t, _)| *t == token) else {
        return false;
    };
    // Wakes a blocked ATTACH (ENODEV); a polling loop sees the flag.
    tokens[i].1.stop_and_destroy();
    true
}

fn signal_name(s: MsiSignal) -> String {
    match s {
        MsiSignal::Delivered => "delivered",
        MsiSignal::Pending => "pending",
        MsiSignal::Disabled => "disabled",
        MsiSignal::NoSuchVector => "no-such-vector",
    }
    .to_owned()
}

fn bdf(bus: u32, device: u32, function: u32) -> Result<Bdf> {
    if bus > 255 || device > 31 || function > 7 {
        return Err(coded_error(
            "ERR_OUT_OF_RANGE",
            "PCI address: bus 0..255, device 0..31, function 0..7",
        ));
    }
    Ok(Bdf::new(bus as u8, device as u8, function as u8))
}
