//! The ioreq client for JavaScript device backends: native devices of the core are served on the
//! spot, requests for JavaScript devices are handed over in batches.
//!
//! One call, [`IoreqClientHandle::next`], completes the previous batch (writes the values of its
//! reads, then exactly one NOTIFY per request) and waits for the next one, which it writes into a
//! preallocated `BigUint64Array`: no allocation per request, one boundary crossing per batch.
//! `nextAsync` does the same on the libuv pool for the main thread's event loop.
//!
//! Routing uses the core's [`Dispatcher`] for everything: JavaScript devices are registered there
//! as markers, so overlap checks, range containment, unclaimed accesses (all ones) and malformed
//! requests (completed with all ones, reported as faults) follow exactly the rules of the native
//! path. When the dispatcher hands a request to a marker, the marker records it and the request
//! is deferred to JavaScript instead of being completed.
//!
//! Record layout (4 words per request), decoded by `ts/client.ts`:
//! `w0 = device | vcpu << 16 | kind << 24 | is_read << 26 | size << 32`, `w1 = offset` (register
//! for PCI), `w2 = value written`, `w3 = address` (port, GPA, or `bus << 16 | dev << 11 | func << 8`
//! for PCI).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use acrn_hsm::client::{
    AddressSpace, Bdf, Claim, Dispatcher, FaultReport, IoDevice, Kind, PageSlots, PciDevice, ones,
    protocol,
};
use acrn_hsm::devices::{
    Bar, PciFunction, RegisterFile, RegisterView, Uart16550, UartInput, UartOutput,
};
use acrn_hsm::{Errno, Vm};
use napi::bindgen_prelude::{AsyncTask, BigInt, BigUint64Array, Buffer};
use napi::{Env, Task};
use napi_derive::napi;

use crate::errors::coded_error;

/// Words per request record.
pub const RECORD_WORDS: u32 = 4;
/// Requests in a batch at most (one per ioreq slot).
pub const MAX_BATCH: u32 = 16;

/// A request a marker saw: which JavaScript device, at which offset.
#[derive(Debug, Clone, Copy)]
struct Deferred {
    device: u32,
    offset: u64,
}

type DeferredCell = Arc<Mutex<Option<Deferred>>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Stands in the dispatcher for a JavaScript device.
struct JsMarker {
    name: String,
    device: u32,
    cell: DeferredCell,
}

impl JsMarker {
    fn defer(&self, offset: u64) {
        *lock(&self.cell) = Some(Deferred {
            device: self.device,
            offset,
        });
    }
}

impl IoDevice for JsMarker {
    fn name(&self) -> &str {
        &self.name
    }
    fn read(&mut self, offset: u64, _size: u8) -> u64 {
        self.defer(offset);
        0
    }
    fn write(&mut self, offset: u64, _size: u8, _value: u64) {
        self.defer(offset);
    }
}

impl PciDevice for JsMarker {
    fn name(&self) -> &str {
        &self.name
    }
    fn cfg_read(&mut self, reg: u32, _size: u8) -> u32 {
        self.defer(u64::from(reg));
        0
    }
    fn cfg_write(&mut self, reg: u32, _size: u8, _value: u32) {
        self.defer(u64::from(reg));
    }
}

#[derive(Debug, Default)]
struct Counters {
    js: AtomicU64,
    native: AtomicU64,
    unclaimed: AtomicU64,
    faults: AtomicU64,
    notifies: AtomicU64,
    notify_errors: AtomicU64,
    batches: AtomicU64,
    max_batch: AtomicU64,
    wakeups: AtomicU64,
}

/// How the client waits for requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wake {
    /// ATTACH_IOREQ_CLIENT.
    Blocking,
    /// Spin on the page, then yield, then sleep with a growing back-off.
    Poll,
}

struct Server {
    vm: Arc<Vm>,
    mem: PageSlots,
    vcpu_num: usize,
    dispatcher: Dispatcher,
    cell: DeferredCell,
    /// Requests handed to JavaScript, awaiting their responses.
    pending: Vec<(Claim, Deferred)>,
    /// Bit i: slot i is in `pending` (still PROCESSING: not to be claimed again).
    pending_mask: u32,
    wake: Wake,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
}

fn kind_code(kind: Kind) -> u64 {
    match kind {
        Kind::Pio => 0,
        Kind::Mmio => 1,
        Kind::PciCfg => 2,
        Kind::Unknown(_) => 3,
    }
}

impl Server {
    /// Writes the responses of the pending batch and NOTIFYs each request exactly once.
    fn complete(&mut self, responses: &[u64]) {
        for (i, (claim, _)) in self.pending.drain(..).enumerate() {
            let r = *claim.request();
            if r.is_read {
                // A missing response (fewer values than requests) reads as all ones.
                let v = responses.get(i).copied().unwrap_or(u64::MAX) & ones(r.size);
                protocol::respond(&self.mem, &claim, v);
            }
            notify(&self.vm, claim, &self.counters);
        }
        self.pending_mask = 0;
    }

    /// One pass over the slots: native requests are completed, JavaScript ones deferred.
    fn collect(&mut self) -> usize {
        for i in 0..self.vcpu_num {
            if self.pending_mask & (1 << i) != 0 {
                continue;
            }
            let Some(c) = protocol::claim(&self.mem, i) else {
                continue;
            };
            let out = self.dispatcher.dispatch(c.request());
            match lock(&self.cell).take() {
                Some(d) => {
                    self.pending_mask |= 1 << i;
                    self.pending.push((c, d));
                    self.counters.js.fetch_add(1, Ordering::Relaxed);
                }
                None => {
                    let counter = match out.target {
                        acrn_hsm::client::Target::Device(_) => &self.counters.native,
                        acrn_hsm::client::Target::Unclaimed => &self.counters.unclaimed,
                        acrn_hsm::client::Target::Fault(_) => &self.counters.faults,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    protocol::respond(&self.mem, &c, out.value);
                    notify(&self.vm, c, &self.counters);
                }
            }
        }
        self.pending.len()
    }

    /// Completes the previous batch, then waits until JavaScript has requests to serve.
    /// `None` once the client is stopped or destroyed.
    fn next(&mut self, responses: &[u64]) -> Result<Option<usize>, napi::Error> {
        self.complete(responses);
        let mut idle: u32 = 0;
        let mut sleep = Duration::from_micros(20);
        loop {
            if self.stop.load(Ordering::Acquire) {
                return Ok(None);
            }
            let n = self.collect();
            if n > 0 {
                self.counters.batches.fetch_add(1, Ordering::Relaxed);
                self.counters
                    .max_batch
                    .fetch_max(n as u64, Ordering::Relaxed);
                return Ok(Some(n));
            }
            match self.wake {
                Wake::Blocking => match self.vm.attach_ioreq_client() {
                    Ok(()) => {
                        self.counters.wakeups.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) if e.errno == Errno::ENODEV => return Ok(None),
                    Err(e) if e.errno == Errno::EINTR => {}
                    Err(e) => return Err(crate::errors::hsm_error(e)),
                },
                Wake::Poll => {
                    idle = idle.saturating_add(1);
                    if idle <= 4096 {
                        std::hint::spin_loop();
                    } else if idle <= 4096 + 256 {
                        std::thread::yield_now();
                    } else {
                        std::thread::sleep(sleep);
                        sleep = (sleep * 2).min(Duration::from_millis(1));
                    }
                }
            }
        }
    }

    /// Encodes the pending batch into `out` (4 words per request).
    fn write_records(&self, out: &mut [u64]) {
        for (k, (c, d)) in self.pending.iter().enumerate() {
            let r = c.request();
            let w = &mut out[k * RECORD_WORDS as usize..(k + 1) * RECORD_WORDS as usize];
            w[0] = u64::from(d.device)
                | u64::from(r.vcpu) << 16
                | kind_code(r.kind) << 24
                | u64::from(r.is_read) << 26
                | (r.size & 0xff) << 32;
            w[1] = d.offset;
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

fn notify(vm: &Vm, claim: Claim, counters: &Counters) {
    let vcpu = protocol::release_for_notify(claim);
    match vm.notify_request_finish(u32::from(vcpu)) {
        Ok(()) => counters.notifies.fetch_add(1, Ordering::Relaxed),
        // The kernel stored COMPLETE before the hypercall that failed: nothing to retry.
        Err(_) => counters.notify_errors.fetch_add(1, Ordering::Relaxed),
    };
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
}

/// The ioreq client of one VM (the VM's default client).
#[napi]
pub struct IoreqClientHandle {
    server: Arc<Mutex<Option<Server>>>,
    vm: Arc<Vm>,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    faults: Arc<Mutex<Vec<FaultInfo>>>,
    uarts: Vec<(UartOutput, UartInput)>,
    registers: Vec<RegisterView>,
    js_devices: u32,
}

impl IoreqClientHandle {
    /// CREATE_IOREQ_CLIENT and an empty device table.
    pub(crate) fn create(vm: Arc<Vm>, poll: bool) -> napi::Result<IoreqClientHandle> {
        vm.create_ioreq_client().map_err(crate::errors::hsm_error)?;
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
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
        let server = Server {
            mem: PageSlots::new(vm.ioreq_page().clone()),
            vcpu_num: usize::from(vm.vcpu_num()),
            vm: vm.clone(),
            dispatcher,
            cell: Arc::default(),
            pending: Vec::with_capacity(MAX_BATCH as usize),
            pending_mask: 0,
            wake: if poll { Wake::Poll } else { Wake::Blocking },
            stop: stop.clone(),
            counters: counters.clone(),
        };
        Ok(IoreqClientHandle {
            server: Arc::new(Mutex::new(Some(server))),
            vm,
            stop,
            counters,
            faults,
            uarts: Vec::new(),
            registers: Vec::new(),
            js_devices: 0,
        })
    }

    /// Registration happens while no batch is being waited for (the server is not in use).
    fn with_server<T>(&self, f: impl FnOnce(&mut Server) -> napi::Result<T>) -> napi::Result<T> {
        let mut guard = self.server.try_lock().map_err(|_| {
            coded_error(
                "ERR_CLIENT_RUNNING",
                "devices cannot be added while the client is serving",
            )
        })?;
        let server = guard
            .as_mut()
            .ok_or_else(|| coded_error("ERR_CLIENT_CLOSED", "the client is closed"))?;
        f(server)
    }

    fn add_io(
        &mut self,
        space: AddressSpace,
        base: u64,
        len: u64,
        device: Box<dyn IoDevice>,
    ) -> napi::Result<u32> {
        self.with_server(|s| {
            let id = s
                .dispatcher
                .add_range(space, base, len, device)
                .map_err(|e| coded_error("ERR_RANGE", &e.to_string()))?;
            Ok(u32::try_from(id.0).unwrap_or(u32::MAX))
        })
    }
}

fn bigint_u64(what: &str, v: &BigInt) -> napi::Result<u64> {
    let (signed, value, lossless) = v.get_u64();
    if signed || !lossless {
        return Err(coded_error(
            "ERR_OUT_OF_RANGE",
            &format!("{what} must be a bigint in 0..2^64-1"),
        ));
    }
    Ok(value)
}

fn space_of(space: &str) -> napi::Result<AddressSpace> {
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
}

impl Task for NextTask {
    type Output = Option<usize>;
    type JsValue = i32;

    fn compute(&mut self) -> napi::Result<Option<usize>> {
        let mut guard = lock(&self.server);
        let Some(server) = guard.as_mut() else {
            return Ok(None);
        };
        let n = server.next(&self.responses)?;
        if let Some(n) = n {
            self.out.resize(n * RECORD_WORDS as usize, 0);
            server.write_records(&mut self.out);
        }
        Ok(n)
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

#[napi]
impl IoreqClientHandle {
    /// Registers a JavaScript device on a PIO/MMIO range; returns its index in the records.
    #[napi]
    pub fn add_js_range(
        &mut self,
        space: String,
        base: BigInt,
        len: BigInt,
        name: String,
    ) -> napi::Result<u32> {
        let space = space_of(&space)?;
        let (base, len) = (bigint_u64("base", &base)?, bigint_u64("length", &len)?);
        let index = self.js_devices;
        let cell = self.with_server(|s| Ok(s.cell.clone()))?;
        self.add_io(
            space,
            base,
            len,
            Box::new(JsMarker {
                name,
                device: index,
                cell,
            }),
        )?;
        self.js_devices += 1;
        Ok(index)
    }

    /// Registers a JavaScript PCI function; returns its index in the records.
    #[napi]
    pub fn add_js_pci(
        &mut self,
        bus: u32,
        device: u32,
        func: u32,
        name: String,
    ) -> napi::Result<u32> {
        let bdf = bdf(bus, device, func)?;
        let index = self.js_devices;
        self.with_server(|s| {
            let marker = JsMarker {
                name,
                device: index,
                cell: s.cell.clone(),
            };
            s.dispatcher
                .add_pci(bdf, Box::new(marker))
                .map_err(|e| coded_error("ERR_RANGE", &e.to_string()))
        })?;
        self.js_devices += 1;
        Ok(index)
    }

    /// Adds the core's 16550 UART at `base` (8 ports); returns its handle for `uartOutput`.
    #[napi]
    pub fn add_uart(&mut self, base: u32, name: Option<String>) -> napi::Result<u32> {
        let mut uart = Uart16550::new();
        if let Some(n) = name {
            uart = uart.with_name(n);
        }
        let io = (uart.output(), uart.input());
        self.add_io(AddressSpace::Pio, u64::from(base), 8, Box::new(uart))?;
        self.uarts.push(io);
        Ok(u32::try_from(self.uarts.len() - 1).unwrap_or(u32::MAX))
    }

    /// What the UART transmitted since the last call.
    #[napi]
    pub fn uart_take_output(&self, uart: u32) -> napi::Result<Buffer> {
        let (out, _) = self
            .uarts
            .get(uart as usize)
            .ok_or_else(|| coded_error("ERR_INVALID_ARG", "no such UART"))?;
        Ok(out.take().into())
    }

    /// Queues bytes for the guest to receive.
    #[napi]
    pub fn uart_push_input(&self, uart: u32, bytes: Buffer) -> napi::Result<()> {
        let (_, input) = self
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
    ) -> napi::Result<u32> {
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
        self.add_io(space, base, u64::from(len), Box::new(regs))?;
        self.registers.push(view);
        Ok(u32::try_from(self.registers.len() - 1).unwrap_or(u32::MAX))
    }

    /// A copy of a register file's contents.
    #[napi]
    pub fn register_bytes(&self, handle: u32) -> napi::Result<Buffer> {
        let view = self
            .registers
            .get(handle as usize)
            .ok_or_else(|| coded_error("ERR_INVALID_ARG", "no such register file"))?;
        Ok(view.bytes().into())
    }

    /// Adds the core's PCI function (configuration space with BARs).
    #[napi]
    pub fn add_pci_function(
        &mut self,
        bus: u32,
        device: u32,
        func: u32,
        options: PciFunctionOptions,
    ) -> napi::Result<()> {
        let bdf = bdf(bus, device, func)?;
        let vendor = u16::try_from(options.vendor_id)
            .map_err(|_| coded_error("ERR_OUT_OF_RANGE", "vendorId is 16 bits"))?;
        let dev_id = u16::try_from(options.device_id)
            .map_err(|_| coded_error("ERR_OUT_OF_RANGE", "deviceId is 16 bits"))?;
        let mut f = PciFunction::new(vendor, dev_id);
        if let Some(n) = options.name {
            f = f.with_name(n);
        }
        if let Some(c) = options.class_code {
            let [_, class, sub, prog] = c.to_be_bytes();
            f = f.with_class(class, sub, prog, 0);
        }
        for b in options.bars.unwrap_or_default() {
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
        self.with_server(|s| {
            s.dispatcher
                .add_pci(bdf, Box::new(f))
                .map_err(|e| coded_error("ERR_RANGE", &e.to_string()))
        })?;
        Ok(())
    }

    /// `next` on the libuv pool: completes the previous batch with `responses`, waits for the
    /// next, writes its records into `out` (at least 64 words, reused from batch to batch: no
    /// allocation per batch on the JS heap) and resolves to their count, or -1 once stopped.
    #[napi(ts_return_type = "Promise<number>")]
    pub fn next_async(
        &self,
        responses: &[u64],
        out: BigUint64Array,
    ) -> napi::Result<AsyncTask<NextTask>> {
        if out.len() < (MAX_BATCH * RECORD_WORDS) as usize {
            return Err(coded_error(
                "ERR_INVALID_ARG",
                "out must hold 64 words (16 requests x 4)",
            ));
        }
        Ok(AsyncTask::new(NextTask {
            server: self.server.clone(),
            responses: responses.to_vec(),
            out: Vec::with_capacity((MAX_BATCH * RECORD_WORDS) as usize),
            out_js: out,
        }))
    }

    /// Stops serving: a waiting `next` returns -1 (DESTROY_IOREQ_CLIENT wakes a blocked ATTACH).
    /// Requests handed to JavaScript and not yet completed stay PROCESSING, as in the kernel,
    /// until CLEAR_VM_IOREQ or the VM's reset or destruction.
    #[napi]
    pub fn stop(&self) -> napi::Result<()> {
        if !self.stop.swap(true, Ordering::AcqRel) {
            match self.vm.destroy_ioreq_client() {
                Ok(()) => {}
                Err(e) if e.errno == Errno::EINVAL => {}
                Err(e) => return Err(crate::errors::hsm_error(e)),
            }
        }
        Ok(())
    }

    /// A token with which another thread can stop this client (`stopClient(token)`), e.g. the
    /// main thread stopping a worker's synchronous loop.
    #[napi(getter)]
    pub fn stop_token(&self) -> u32 {
        let token = NEXT_STOP_TOKEN.fetch_add(1, Ordering::Relaxed);
        let mut tokens = lock(&STOP_TOKENS);
        tokens.retain(|(_, flag, _)| flag.strong_count() > 0);
        tokens.push((token, Arc::downgrade(&self.stop), Arc::downgrade(&self.vm)));
        token
    }

    /// Whether `stop` was called.
    #[napi(getter)]
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// The counters.
    #[napi]
    pub fn counters(&self) -> ClientCounters {
        let c = &self.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
        ClientCounters {
            js: g(&c.js),
            native: g(&c.native),
            unclaimed: g(&c.unclaimed),
            faults: g(&c.faults),
            notifies: g(&c.notifies),
            notify_errors: g(&c.notify_errors),
            batches: g(&c.batches),
            max_batch: g(&c.max_batch),
            wakeups: g(&c.wakeups),
        }
    }

    /// The malformed requests seen since the last call.
    #[napi]
    pub fn take_faults(&self) -> Vec<FaultInfo> {
        std::mem::take(&mut *lock(&self.faults))
    }
}

/// Completes the previous batch of `client` with `responses` (one value per request, in record
/// order; ignored for writes), then blocks this thread until the next batch, written into `out`
/// (at least 64 words). Returns the number of requests, or -1 once the client is stopped.
#[napi]
pub fn client_next(
    client: &IoreqClientHandle,
    responses: &[u64],
    #[napi(ts_arg_type = "BigUint64Array")] out: Option<&mut [u64]>,
) -> napi::Result<i32> {
    // `Option` only because napi-rs converts a borrowed mutable typed array through it.
    let out = out.ok_or_else(|| coded_error("ERR_INVALID_ARG", "out must be a BigUint64Array"))?;
    if out.len() < (MAX_BATCH * RECORD_WORDS) as usize {
        return Err(coded_error(
            "ERR_INVALID_ARG",
            "out must hold 64 words (16 requests x 4)",
        ));
    }
    let mut guard = client
        .server
        .try_lock()
        .map_err(|_| coded_error("ERR_CLIENT_RUNNING", "another next() is already waiting"))?;
    let Some(server) = guard.as_mut() else {
        return Ok(-1);
    };
    match server.next(responses)? {
        Some(n) => {
            server.write_records(out);
            Ok(i32::try_from(n).unwrap_or(i32::MAX))
        }
        None => Ok(-1),
    }
}

/// A stop token: the client's stop flag and its VM, both weak (the token does not keep them alive).
type StopEntry = (u32, std::sync::Weak<AtomicBool>, std::sync::Weak<Vm>);

static STOP_TOKENS: Mutex<Vec<StopEntry>> = Mutex::new(Vec::new());
static NEXT_STOP_TOKEN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);

/// Stops the client named by `token` (see `stopToken`) from any thread. Returns false if that
/// client no longer exists.
#[napi]
pub fn stop_client(token: u32) -> bool {
    let tokens = lock(&STOP_TOKENS);
    let Some((_, flag, vm)) = tokens.iter().find(|(t, _, _)| *t == token) else {
        return false;
    };
    let (Some(flag), Some(vm)) = (flag.upgrade(), vm.upgrade()) else {
        return false;
    };
    if !flag.swap(true, Ordering::AcqRel) {
        // Wakes a blocked ATTACH (ENODEV); a polling loop sees the flag.
        let _ = vm.destroy_ioreq_client();
    }
    true
}

fn bdf(bus: u32, device: u32, function: u32) -> napi::Result<Bdf> {
    if bus > 255 || device > 31 || function > 7 {
        return Err(coded_error(
            "ERR_OUT_OF_RANGE",
            "PCI address: bus 0..255, device 0..31, function 0..7",
        ));
    }
    Ok(Bdf::new(bus as u8, device as u8, function as u8))
}
