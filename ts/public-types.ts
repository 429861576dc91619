/** The types shared by every entry point (`acrn-hsm`, `acrn-hsm/wasm`). */
export type { Abi, AbiTables, StructLayout } from './abi.js';
export type { Direction, IoRequest, IoreqSlot, IoreqState, MmioRequest, PciRequest, PioRequest } from './ioreq.js';
export type {
  TraceColumns,
  TraceDevice,
  TraceGroupBy,
  TraceHeader,
  TraceHeaderInit,
  TraceIoType,
  TraceOutcome,
  TraceRecord,
  TraceRecordInit,
  TraceReport,
  TraceReportGroup,
  TraceStage,
  TraceStamp,
} from './trace.js';
