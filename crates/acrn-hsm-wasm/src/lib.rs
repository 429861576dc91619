//! WebAssembly binding of the acrn-uapi decoder (wasm-bindgen, `wasm32-unknown-unknown`).
//!
//! The same Rust decoder as the native addon, for browsers and for Node without the addon. It
//! returns plain objects of the same shape as the addon's; the TypeScript façade normalises both.
//! Errors are JS `Error`s with their stable `code` set (as data, as from the addon).
//! Nothing here can panic on input: a panic would abort the whole wasm instance.

use acrn_uapi::ioreq::{DecodeError, IoPayload, IoRequest};
use js_sys::{Array, Object, Reflect};
use wasm_bindgen::prelude::*;

mod trace;
pub use trace::*;

/// A JavaScript `Error` with its stable `code` set (errors cross as data, as from the addon).
pub(crate) fn coded_error(code: &str, message: &str) -> JsValue {
    let e = js_sys::Error::new(message);
    // Setting a property on a fresh Error cannot fail; if it did, the code would be missing and
    // the façade would report the plain error.
    let _ = Reflect::set(&e, &JsValue::from_str("code"), &JsValue::from_str(code));
    e.into()
}

fn decode_error(err: &DecodeError) -> JsValue {
    coded_error(err.code(), &err.to_string())
}

fn set(obj: &Object, key: &str, value: impl Into<JsValue>) -> Result<(), JsValue> {
    Reflect::set(obj, &JsValue::from_str(key), &value.into()).map(|_| ())
}

fn to_js(req: &IoRequest) -> Result<JsValue, JsValue> {
    let obj = Object::new();
    let (kind, direction, size) = match req.payload {
        IoPayload::Pio {
            direction,
            address,
            size,
            value,
        } => {
            set(&obj, "address", address)?;
            set(&obj, "value", u64::from(value))?;
            ("pio", direction, size)
        }
        IoPayload::Mmio {
            direction,
            address,
            size,
            value,
        } => {
            set(&obj, "address", address)?;
            set(&obj, "value", value)?;
            ("mmio", direction, size)
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
            set(&obj, "value", u64::from(value))?;
            set(&obj, "bus", bus)?;
            set(&obj, "device", dev)?;
            set(&obj, "function", func)?;
            set(&obj, "register", reg)?;
            ("pci", direction, size)
        }
    };
    set(&obj, "type", kind)?;
    set(&obj, "state", req.state.label())?;
    set(&obj, "direction", direction.label())?;
    // Sizes of well-formed requests are 1..8; a stale FREE slot may hold anything, and f64 is
    // what a JS number can carry.
    set(&obj, "size", size as f64)?;
    set(&obj, "kernelHandled", req.kernel_handled)?;
    set(&obj, "completionPolling", req.completion_polling)?;
    Ok(obj.into())
}

/// Every struct, ioctl number and constant of `<linux/acrn.h>`, as the JSON text of `acrn-hsm abi --json`.
#[wasm_bindgen(js_name = abiJson)]
pub fn abi_json() -> String {
    acrn_uapi::layout::AbiJson.to_string()
}

/// Decodes one 256-byte `struct acrn_io_request`.
#[wasm_bindgen(js_name = decodeIoRequest)]
pub fn decode_io_request(bytes: &[u8]) -> Result<JsValue, JsValue> {
    let req = acrn_uapi::ioreq::decode_io_request(bytes).map_err(|e| decode_error(&e))?;
    to_js(&req)
}

/// Decodes a 4096-byte `struct acrn_io_request_buffer` into its 16 slots:
/// `[{slot, request}|{slot, errorCode, errorMessage}]`.
#[wasm_bindgen(js_name = decodeIoreqPage)]
pub fn decode_ioreq_page(bytes: &[u8]) -> Result<Array, JsValue> {
    let slots = acrn_uapi::ioreq::decode_ioreq_page(bytes).map_err(|e| decode_error(&e))?;
    let out = Array::new();
    for (index, decoded) in slots.iter().enumerate() {
        let entry = Object::new();
        set(&entry, "slot", index as u32)?;
        match decoded {
            Ok(req) => set(&entry, "request", to_js(req)?)?,
            Err(e) => {
                set(&entry, "errorCode", e.code())?;
                set(&entry, "errorMessage", e.to_string())?;
            }
        }
        out.push(&entry);
    }
    Ok(out)
}

/// Encodes a request, given as the 12 words of `ts/encode.ts` (`toFields`), into a fresh
/// 256-byte slot image.
#[wasm_bindgen(js_name = encodeIoRequestFields)]
pub fn encode_io_request_fields(fields: &[u64]) -> Result<Vec<u8>, JsValue> {
    let req = IoRequest::from_fields(fields).map_err(|e| coded_error(e.code(), &e.to_string()))?;
    let mut out = vec![0u8; acrn_uapi::ioreq::SLOT_SIZE];
    acrn_uapi::ioreq::encode_io_request(&req, &mut out)
        .map_err(|e| coded_error(e.code(), &e.to_string()))?;
    Ok(out)
}
