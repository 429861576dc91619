//! The PC platform for TypeScript guests (`vm.loadFirmware`, `client.pcPlatform`): the core's
//! [`acrn_hsm::loader`] and [`acrn_hsm::pc::PcPlatform`], so that a firmware such as SeaBIOS
//! runs with the same machine as `acrn-hsm run` while TypeScript serves its other devices.

use acrn_hsm::loader::{self, GuestRam};
use acrn_hsm::pc::{PcOptions, PcPlatform};
use napi::bindgen_prelude::{BigInt, Buffer};
use napi_derive::napi;

use crate::client::IoreqClientHandle;
use crate::errors::{Result, coded_error, hsm_error};
use crate::hsm::VmHandle;

/// Where [`VmHandle::load_firmware`] put the RAM and the image.
#[napi(object)]
pub struct LoadedFirmware {
    /// RAM bytes from guest-physical 0.
    pub low_ram_bytes: BigInt,
    /// RAM bytes from 4 GiB.
    pub high_ram_bytes: BigInt,
    /// Where the image starts (it ends at 4 GiB).
    pub rom_base: BigInt,
}

#[napi]
impl VmHandle {
    /// Maps `ram_bytes` of RAM (from 0, the part above 3.5 GiB from 4 GiB) and the firmware
    /// `image` (a multiple of 4 KiB, at most 16 MiB) so that it ends at 4 GiB, with its last
    /// 128 KiB copied to the shadow below 1 MiB: the vCPU starts at the reset vector.
    #[napi]
    pub fn load_firmware(&self, image: Buffer, ram_bytes: BigInt) -> Result<LoadedFirmware> {
        let (signed, bytes, lossless) = ram_bytes.get_u64();
        if signed || !lossless || !(2 << 20..=64 << 30).contains(&bytes) {
            return Err(coded_error(
                "ERR_OUT_OF_RANGE",
                "ramBytes must be a bigint in 2 MiB..64 GiB",
            ));
        }
        if image.is_empty() || image.len() % 4096 != 0 || image.len() > 16 << 20 {
            return Err(coded_error(
                "ERR_INVALID_ARG",
                &format!(
                    "a firmware image is a multiple of 4096 bytes up to 16 MiB, got {} bytes",
                    image.len()
                ),
            ));
        }
        let vm = self.vm();
        let ram = GuestRam::map(vm, bytes).map_err(hsm_error)?;
        let fw = loader::load_firmware(vm, &ram, image.to_vec()).map_err(hsm_error)?;
        Ok(LoadedFirmware {
            low_ram_bytes: BigInt::from(ram.low_len()),
            high_ram_bytes: BigInt::from(ram.high_len()),
            rom_base: BigInt::from(fw.base),
        })
    }
}

/// Options of [`IoreqClientHandle::add_pc_platform`].
#[napi(object)]
#[derive(Debug, Default)]
pub struct PcPlatformOptions {
    /// fw_cfg `etc/sercon-port` = COM1 (default true): SeaBIOS prints on COM1.
    pub sercon: Option<bool>,
    /// The isa-debug-exit port (default 0xf4; 0: none).
    pub debug_exit: Option<u32>,
    /// fw_cfg `etc/boot-fail-wait` in ms (default 5000).
    pub boot_fail_wait_ms: Option<u32>,
}

/// The state of a PC platform.
#[napi(object)]
pub struct PcPlatformState {
    /// `(v << 1) | 1` once the guest wrote `v` to isa-debug-exit.
    pub exit_status: Option<i32>,
    /// Resets asked through the i8042.
    pub kbc_resets: f64,
    /// COM1 interrupt pulses sent.
    pub uart_irqs: i32,
}

#[napi]
impl IoreqClientHandle {
    /// Adds the core's PC platform (host bridge, CMOS, fw_cfg, i8042, port 0x92, 0xcf9, COM1
    /// on IRQ 4, debugcon, isa-debug-exit, the firmware shadow), shaped after the VM's RAM map;
    /// returns its handle. Serving or not.
    #[napi]
    pub fn add_pc_platform(&mut self, options: Option<PcPlatformOptions>) -> Result<u32> {
        self.check_open()?;
        let o = options.unwrap_or_default();
        let mut pc = PcOptions::from_vm(&self.vm);
        if pc.ram_below_4g < 1 << 20 {
            return Err(coded_error(
                "ERR_INVALID_STATE",
                "the VM has no RAM from guest-physical 0 covering 1 MiB: map it first (vm.loadFirmware or vm.mapRam)",
            ));
        }
        pc.sercon = o.sercon.unwrap_or(true);
        pc.debug_exit = match o.debug_exit {
            None => Some(0xf4),
            Some(0) => None,
            Some(p) => Some(u16::try_from(p).map_err(|_| {
                coded_error("ERR_OUT_OF_RANGE", "debugExit must be a port in 0..65535")
            })?),
        };
        if let Some(ms) = o.boot_fail_wait_ms {
            pc.boot_fail_wait_ms = ms;
        }
        let mut bus = self.bus.clone();
        let control = self.handle.control();
        let platform = PcPlatform::install(&mut bus, &self.vm, &control, pc)
            .map_err(|e| coded_error("ERR_RANGE", &e.to_string()))?;
        for &id in platform.device_ids() {
            self.record_id(id)?;
        }
        self.pcs.push(platform);
        Ok(u32::try_from(self.pcs.len() - 1).unwrap_or(u32::MAX))
    }

    fn pc(&self, pc: u32) -> Result<&PcPlatform> {
        self.pcs
            .get(pc as usize)
            .ok_or_else(|| coded_error("ERR_INVALID_ARG", "no such PC platform"))
    }

    /// The device ids of a PC platform's devices.
    #[napi]
    pub fn pc_device_ids(&self, pc: u32) -> Result<Vec<u32>> {
        Ok(self
            .pc(pc)?
            .device_ids()
            .iter()
            .map(|id| u32::try_from(id.0).unwrap_or(u32::MAX))
            .collect())
    }

    /// What COM1 transmitted since the last call.
    #[napi]
    pub fn pc_take_serial(&self, pc: u32) -> Result<Buffer> {
        Ok(self.pc(pc)?.serial().take().into())
    }

    /// Bytes for COM1 to receive (raises its receive interrupt).
    #[napi]
    pub fn pc_serial_input(&self, pc: u32, bytes: Buffer) -> Result<()> {
        self.pc(pc)?.serial_input(&bytes);
        Ok(())
    }

    /// Everything written to debugcon (0x402).
    #[napi]
    pub fn pc_debugcon(&self, pc: u32) -> Result<Buffer> {
        Ok(self.pc(pc)?.debugcon().into())
    }

    /// The platform's state.
    #[napi]
    pub fn pc_state(&self, pc: u32) -> Result<PcPlatformState> {
        let p = self.pc(pc)?;
        Ok(PcPlatformState {
            exit_status: p.exit_status(),
            kbc_resets: p.kbc_resets() as f64,
            uart_irqs: p.uart_irqs(),
        })
    }
}
