//! A 16550A UART, enough for a guest to print (polling LSR.THRE) and read (polling LSR.DR).
//!
//! Registers (offset from the base, usually port 0x3f8; 1-byte accesses; wider accesses read all
//! ones and are ignored, as on hardware without such a decoder):
//!
//! | off | DLAB=0 read | DLAB=0 write | DLAB=1 |
//! |---|---|---|---|
//! | 0 | RBR (pops the input queue) | THR (a byte out) | DLL |
//! | 1 | IER | IER (4 bits) | DLM |
//! | 2 | IIR | FCR | IIR / FCR |
//! | 3 | LCR (bit 7 = DLAB) | LCR | LCR |
//! | 4 | MCR | MCR (5 bits; bit 4 = loopback) | MCR |
//! | 5 | LSR: THRE and TEMT always (transmission is instant), DR when input is queued | ignored | |
//! | 6 | MSR: CTS, DSR, DCD (loopback: from MCR) | ignored | |
//! | 7 | SCR | SCR | SCR |
//!
//! Transmitted bytes go to an output buffer ([`UartOutput`]) and to an optional sink callback;
//! input is queued through [`UartInput`]. In loopback (MCR bit 4) transmitted bytes come back as
//! input instead.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::client::IoDevice;

/// LSR: data ready.
pub const LSR_DR: u8 = 0x01;
/// LSR: transmit holding register empty.
pub const LSR_THRE: u8 = 0x20;
/// LSR: transmitter empty.
pub const LSR_TEMT: u8 = 0x40;
/// LCR: divisor latch access bit.
pub const LCR_DLAB: u8 = 0x80;
/// MCR: loopback.
pub const MCR_LOOP: u8 = 0x10;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The bytes a [`Uart16550`] transmitted, shared with whoever wants to show them.
#[derive(Debug, Clone, Default)]
pub struct UartOutput(Arc<Mutex<Vec<u8>>>);

impl UartOutput {
    /// A copy of everything transmitted so far.
    pub fn bytes(&self) -> Vec<u8> {
        lock(&self.0).clone()
    }
    /// Everything transmitted so far, as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&lock(&self.0)).into_owned()
    }
    /// Takes and clears the bytes transmitted so far.
    pub fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *lock(&self.0))
    }
    /// Number of bytes transmitted (and not taken).
    pub fn len(&self) -> usize {
        lock(&self.0).len()
    }
    /// Nothing transmitted (or all taken).
    pub fn is_empty(&self) -> bool {
        lock(&self.0).is_empty()
    }
}

/// The input queue of a [`Uart16550`]: bytes pushed here are read by the guest from RBR.
#[derive(Debug, Clone, Default)]
pub struct UartInput(Arc<Mutex<VecDeque<u8>>>);

impl UartInput {
    /// Queues `bytes` for the guest.
    pub fn push(&self, bytes: &[u8]) {
        lock(&self.0).extend(bytes.iter().copied());
    }
    /// Bytes queued and not read yet.
    pub fn len(&self) -> usize {
        lock(&self.0).len()
    }
    /// No byte queued.
    pub fn is_empty(&self) -> bool {
        lock(&self.0).is_empty()
    }
}

/// A callback receiving each transmitted byte.
pub type UartSink = Box<dyn FnMut(u8) + Send>;

/// The 16550A.
pub struct Uart16550 {
    name: String,
    ier: u8,
    lcr: u8,
    mcr: u8,
    scr: u8,
    dll: u8,
    dlm: u8,
    fcr: u8,
    output: UartOutput,
    input: UartInput,
    sink: Option<UartSink>,
}

impl fmt::Debug for Uart16550 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Uart16550")
            .field("name", &self.name)
            .field("lcr", &self.lcr)
            .field("divisor", &self.divisor())
            .finish()
    }
}

impl Default for Uart16550 {
    fn default() -> Self {
        Uart16550::new()
    }
}

impl Uart16550 {
    /// A UART at power-on (divisor 12: 9600 baud; LCR 0; FIFOs off).
    pub fn new() -> Uart16550 {
        Uart16550 {
            name: "uart16550".into(),
            ier: 0,
            lcr: 0,
            mcr: 0,
            scr: 0,
            dll: 12,
            dlm: 0,
            fcr: 0,
            output: UartOutput::default(),
            input: UartInput::default(),
            sink: None,
        }
    }

    /// Renames the device (for statistics).
    pub fn with_name(mut self, name: impl Into<String>) -> Uart16550 {
        self.name = name.into();
        self
    }

    /// Also gives every transmitted byte to `sink` (called on the client thread).
    pub fn with_sink(mut self, sink: impl FnMut(u8) + Send + 'static) -> Uart16550 {
        self.sink = Some(Box::new(sink));
        self
    }

    /// The output buffer (shared).
    pub fn output(&self) -> UartOutput {
        self.output.clone()
    }

    /// The input queue (shared).
    pub fn input(&self) -> UartInput {
        self.input.clone()
    }

    /// The divisor latch (DLM:DLL).
    pub fn divisor(&self) -> u16 {
        u16::from_le_bytes([self.dll, self.dlm])
    }

    fn dlab(&self) -> bool {
        self.lcr & LCR_DLAB != 0
    }

    fn loopback(&self) -> bool {
        self.mcr & MCR_LOOP != 0
    }

    fn lsr(&self) -> u8 {
        let mut v = LSR_THRE | LSR_TEMT;
        if !self.input.is_empty() {
            v |= LSR_DR;
        }
        v
    }

    fn iir(&self) -> u8 {
        let fifo = if self.fcr & 1 != 0 { 0xc0 } else { 0 };
        // Priority: received data (IER bit 0), then THR empty (IER bit 1); none: bit 0 set.
        let id = if self.ier & 1 != 0 && !self.input.is_empty() {
            0x04
        } else if self.ier & 2 != 0 {
            0x02
        } else {
            0x01
        };
        fifo | id
    }

    fn msr(&self) -> u8 {
        if self.loopback() {
            // DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD.
            let m = self.mcr;
            ((m & 0x02) << 3) | ((m & 0x01) << 5) | ((m & 0x04) << 4) | ((m & 0x08) << 4)
        } else {
            // CTS, DSR, DCD: a terminal is attached.
            0xb0
        }
    }

    fn transmit(&mut self, b: u8) {
        if self.loopback() {
            lock(&self.input.0).push_back(b);
            return;
        }
        lock(&self.output.0).push(b);
        if let Some(s) = self.sink.as_mut() {
            s(b);
        }
    }
}

impl IoDevice for Uart16550 {
    fn name(&self) -> &str {
        &self.name
    }

    fn read(&mut self, offset: u64, size: u8) -> u64 {
        if size != 1 {
            return crate::client::ones(u64::from(size));
        }
        let v = match offset {
            0 if self.dlab() => self.dll,
            0 => lock(&self.input.0).pop_front().unwrap_or(0),
            1 if self.dlab() => self.dlm,
            1 => self.ier,
            2 => self.iir(),
            3 => self.lcr,
            4 => self.mcr,
            5 => self.lsr(),
            6 => self.msr(),
            7 => self.scr,
            _ => 0xff,
        };
        u64::from(v)
    }

    fn write(&mut self, offset: u64, size: u8, value: u64) {
        if size != 1 {
            return;
        }
        let b = value as u8;
        match offset {
            0 if self.dlab() => self.dll = b,
            0 => self.transmit(b),
            1 if self.dlab() => self.dlm = b,
            1 => self.ier = b & 0x0f,
            2 => {
                if b & 0x02 != 0 {
                    lock(&self.input.0).clear();
                }
                self.fcr = b & 0xc9;
            }
            3 => self.lcr = b,
            4 => self.mcr = b & 0x1f,
            7 => self.scr = b,
            _ => {}
        }
    }

    fn reset(&mut self) {
        self.ier = 0;
        self.lcr = 0;
        self.mcr = 0;
        self.scr = 0;
        self.dll = 12;
        self.dlm = 0;
        self.fcr = 0;
        lock(&self.input.0).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_and_reports_line_status() {
        let mut u = Uart16550::new();
        let out = u.output();
        assert_eq!(
            u.read(5, 1) as u8 & (LSR_THRE | LSR_TEMT),
            LSR_THRE | LSR_TEMT
        );
        assert_eq!(u.read(5, 1) as u8 & LSR_DR, 0);
        for b in b"hi\n" {
            u.write(0, 1, u64::from(*b));
        }
        assert_eq!(out.text(), "hi\n");
        u.input().push(b"ok");
        assert_eq!(u.read(5, 1) as u8 & LSR_DR, LSR_DR);
        assert_eq!(u.read(0, 1), u64::from(b'o'));
        assert_eq!(u.read(0, 1), u64::from(b'k'));
        assert_eq!(u.read(5, 1) as u8 & LSR_DR, 0);
        // Wider accesses are not decoded.
        assert_eq!(u.read(5, 2), 0xffff);
    }

    #[test]
    fn dlab_selects_the_divisor_latch() {
        let mut u = Uart16550::new();
        let out = u.output();
        u.write(3, 1, 0x83); // DLAB, 8N1
        u.write(0, 1, 0x01); // DLL: 115200
        u.write(1, 1, 0x00); // DLM
        assert_eq!(u.divisor(), 1);
        assert_eq!(u.read(0, 1), 1);
        assert_eq!(u.read(1, 1), 0);
        assert!(out.is_empty(), "divisor writes are not transmitted");
        u.write(3, 1, 0x03);
        u.write(1, 1, 0xff);
        assert_eq!(u.read(1, 1), 0x0f, "IER keeps 4 bits");
        u.write(0, 1, u64::from(b'x'));
        assert_eq!(out.text(), "x");
        assert_eq!(u.divisor(), 1);
    }

    #[test]
    fn iir_scr_loopback_and_reset() {
        let mut u = Uart16550::new();
        assert_eq!(u.read(2, 1), 0x01);
        u.write(2, 1, 0x07); // FIFO on, clear both
        u.write(1, 1, 0x02); // THRE interrupt
        assert_eq!(u.read(2, 1), 0xc2);
        u.write(7, 1, 0x5a);
        assert_eq!(u.read(7, 1), 0x5a);
        u.write(4, 1, MCR_LOOP as u64 | 0x03);
        u.write(0, 1, 0x41);
        assert_eq!(u.output().len(), 0);
        assert_eq!(u.read(5, 1) as u8 & LSR_DR, LSR_DR);
        assert_eq!(u.read(0, 1), 0x41);
        assert_eq!(u.read(6, 1), 0x30, "DTR->DSR, RTS->CTS");
        u.reset();
        assert_eq!(u.read(7, 1), 0);
        assert_eq!(u.divisor(), 12);
        assert_eq!(u.read(6, 1), 0xb0);
    }
}
