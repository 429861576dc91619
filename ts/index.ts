/**
 * acrn-hsm: ACRN device backends in TypeScript over a Rust core.
 *
 * This entry uses the native addon. For browsers, or Node without the addon, import
 * `acrn-hsm/wasm`, which has the same decoding functions.
 */
import { makeApi, type ApiBinding } from './api.js';
import { native } from './native.js';

export type * from './public-types.js';
export { AcrnHsmError } from './errors.js';
export { NO_DEVICE, pciAddress, pciFields, Trace, TRACE_STAGES, TRACE_STAMPS } from './trace.js';
export { Guest, Hsm, SEABIOS_PATH, traceWorkload, UserPage, Vm, workloadJson } from './hsm.js';
export { EventFd, GuestMemory, GuestMemoryRangeError } from './memory.js';
export type { MemorySegment } from './memory.js';
export { IoreqClient, PcPlatform, PciFunction, RegisterFile, stopClient, Uart16550, VirtioBlk, VirtioRng } from './client.js';
export type { ClientCounters, ClientFault, Device, MsiSignal, PciDevice, ServedRequest, VirtioCounters, WakeMode } from './client.js';
export { TsVirtioBlk, TsVirtioConsole, TsVirtioRng } from './virtio/index.js';
export type { TsBlkStats, VirtioChain, VirtioDevice } from './virtio/index.js';
export { bootTestDisk, engines, runGuest } from './run.js';
export type { EnginesInfo, RunGuestOptions, RunGuestReport } from './run.js';
export type { CreateVmOptions, EmulatorOptions, Memseg, MmioDev, PciDev, PmState, PtdevIrq, RunFault, RunMismatch, RunResult, TraceWorkload, TraceWorkloadOptions, VcpuRegs, Vdev, Workload, WorkloadAccess, WorkloadOp, WorkloadPciAddress, WorkloadU64 } from './hsm.js';

const api = makeApi(() => native() as unknown as ApiBinding);

/** The ABI of `<linux/acrn.h>`: `abi.ioctl.CREATE_VM`, `abi.structs.acrn_io_request`, `abi.constants`. */
export const abi = api.decoder.abi;
export const { decodeIoRequest, decodeIoreqPage } = api.decoder;
export const { encodeIoRequest, decodeTrace, traceReport, traceReportJson, traceExportChrome, traceExportCsv, encodeTrace } = api;
