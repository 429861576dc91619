//! The ABI tables and the I/O-request decoder, as JavaScript values.

use acrn_uapi::ioreq::{self, DecodeError, IoPayload, IoRequest};
use napi::bindgen_prelude::{BigInt, BigUint64Array, Uint8Array};
use napi_derive::napi;

use crate::errors::{CodedError, Result, coded_error};

/// Turns a core decode error into a JS `Error` carrying its stable code.
fn decode_error(err: &DecodeError) -> CodedError {
    coded_error(err.code(), &err.to_string())
}

/// Every struct, ioctl number and constant of `<linux/acrn.h>`, as the JSON text of `acrn-hsm abi --json`.
#[napi]
pub fn abi_json() -> String {
    acrn_uapi::layout::AbiJson.to_string()
}

/// One decoded `struct acrn_io_request`. `u64` quantities are `bigint`; PCI requests carry their
/// bus/device/function/register instead of an address.
#[napi(object)]
#[derive(Debug)]
pub struct DecodedIoRequest {
    /// `'pio' | 'mmio' | 'pci'`.
    #[napi(ts_type = "'pio' | 'mmio' | 'pci'")]
    pub r#type: String,
    /// `'pending' | 'complete' | 'processing' | 'free'`.
    #[napi(ts_type = "'pending' | 'complete' | 'processing' | 'free'")]
    pub state: String,
    /// `'read' | 'write'`.
    #[napi(ts_type = "'read' | 'write'")]
    pub direction: String,
    /// Port or guest-physical address (absent for PCI requests).
    pub address: Option<BigInt>,
    /// Access size in bytes.
    pub size: f64,
    /// The value written, or the value returned for a completed read.
    pub value: BigInt,
    /// PCI bus (PCI requests only).
    pub bus: Option<u32>,
    /// PCI device (PCI requests only).
    pub device: Option<u32>,
    /// PCI function (PCI requests only).
    pub function: Option<u32>,
    /// PCI configuration register offset (PCI requests only).
    pub register: Option<u32>,
    /// The slot belongs to an in-kernel ioreq client.
    pub kernel_handled: bool,
    /// The hypervisor polls for completion (no notify hypercall).
    pub completion_polling: bool,
}

/// One slot of a decoded page: the request, or why it could not be decoded.
#[napi(object)]
#[derive(Debug)]
pub struct DecodedSlot {
    /// Slot index, which is the vCPU id.
    pub slot: u32,
    /// The decoded request, when the slot is well formed.
    pub request: Option<DecodedIoRequest>,
    /// Stable error code when it is not (`ERR_UNKNOWN_TYPE`, ...).
    pub error_code: Option<String>,
    /// Human-readable reason when it is not.
    pub error_message: Option<String>,
}

fn to_js(req: &IoRequest) -> DecodedIoRequest {
    let mut out = DecodedIoRequest {
        r#type: String::new(),
        state: req.state.label().to_owned(),
        direction: String::new(),
        address: None,
        size: 0.0,
        value: BigInt::from(0u64),
        bus: None,
        device: None,
        function: None,
        register: None,
        kernel_handled: req.kernel_handled,
        completion_polling: req.completion_polling,
    };
    match req.payload {
        IoPayload::Pio {
            direction,
            address,
            size,
            value,
        } => {
            out.r#type = "pio".to_owned();
            out.direction = direction.label().to_owned();
            out.address = Some(BigInt::from(address));
            out.size = size as f64;
            out.value = BigInt::from(u64::from(value));
        }
        IoPayload::Mmio {
            direction,
            address,
            size,
            value,
        } => {
            out.r#type = "mmio".to_owned();
            out.direction = direction.label().to_owned();
            out.address = Some(BigInt::from(address));
            out.size = size as f64;
            out.value = BigInt::from(value);
        }
        IoPayload::PciCfg {
            direction,
            size,
            value,
            bus,
            dev,
            func,
            reg,
        } => {
            out.r#type = "pci".to_owned();
            out.direction = direction.label().to_owned();
            out.size = size as f64;
            out.value = BigInt::from(u64::from(value));
            out.bus = Some(bus);
            out.device = Some(dev);
            out.function = Some(func);
            out.register = Some(reg);
        }
    }
    out
}

/// Decodes one 256-byte `struct acrn_io_request`.
#[napi]
pub fn decode_io_request(bytes: Uint8Array) -> Result<DecodedIoRequest> {
    ioreq::decode_io_request(&bytes)
        .map(|req| to_js(&req))
        .map_err(|e| decode_error(&e))
}

/// Decodes a 4096-byte `struct acrn_io_request_buffer` into its 16 slots.
#[napi]
pub fn decode_ioreq_page(bytes: Uint8Array) -> Result<Vec<DecodedSlot>> {
    let slots = ioreq::decode_ioreq_page(&bytes).map_err(|e| decode_error(&e))?;
    Ok(slots
        .iter()
        .enumerate()
        .map(|(slot, decoded)| {
            let slot = u32::try_from(slot).unwrap_or(u32::MAX);
            match decoded {
                Ok(req) => DecodedSlot {
                    slot,
                    request: Some(to_js(req)),
                    error_code: None,
                    error_message: None,
                },
                Err(e) => DecodedSlot {
                    slot,
                    request: None,
                    error_code: Some(e.code().to_owned()),
                    error_message: Some(e.to_string()),
                },
            }
        })
        .collect())
}

/// Encodes a request, given as the 12 words of `ts/encode.ts` (`toFields`), into a fresh
/// 256-byte slot image.
#[napi]
pub fn encode_io_request_fields(fields: BigUint64Array) -> Result<Uint8Array> {
    let req = IoRequest::from_fields(&fields).map_err(|e| coded_error(e.code(), &e.to_string()))?;
    let mut out = vec![0u8; acrn_uapi::ioreq::SLOT_SIZE];
    ioreq::encode_io_request(&req, &mut out).map_err(|e| coded_error(e.code(), &e.to_string()))?;
    Ok(Uint8Array::from(out))
}
