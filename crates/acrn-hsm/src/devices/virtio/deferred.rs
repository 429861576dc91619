//! A virtio device served outside the transport (a TypeScript device): its identity, feature
//! bits, configuration bytes and queue sizes, every chain deferred.

use super::device::{Processed, VirtioDevice};
use super::queue::{DescChain, QueueError};
use crate::guest_memory::GuestMemory;

/// A device whose chains are all deferred: the transport queues them
/// ([`VirtioPci::take_deferred`](super::VirtioPci::take_deferred)) for a server that completes
/// them later with [`VirtioPci::complete`](super::VirtioPci::complete). Its configuration space
/// is a byte image (driver writes land in it).
#[derive(Debug, Clone)]
pub struct DeferredVirtio {
    name: String,
    device_type: u16,
    features: u64,
    config: Vec<u8>,
    queues: Vec<u16>,
    acked: u64,
}

impl DeferredVirtio {
    /// A device of type `device_type` offering `features` (device-type bits; the transport adds
    /// its own), with configuration image `config` and queues of these maximum sizes.
    pub fn new(
        name: impl Into<String>,
        device_type: u16,
        features: u64,
        config: Vec<u8>,
        queues: Vec<u16>,
    ) -> DeferredVirtio {
        DeferredVirtio {
            name: name.into(),
            device_type,
            features,
            config,
            queues,
            acked: 0,
        }
    }

    /// The features the driver accepted last (0 before FEATURES_OK).
    pub fn acked_features(&self) -> u64 {
        self.acked
    }

    /// Replaces the configuration image (the caller then signals a configuration change if
    /// the driver must look again).
    pub fn set_config(&mut self, config: Vec<u8>) {
        self.config = config;
    }
}

impl VirtioDevice for DeferredVirtio {
    fn name(&self) -> &str {
        &self.name
    }
    fn device_type(&self) -> u16 {
        self.device_type
    }
    fn features(&self) -> u64 {
        self.features
    }
    fn queue_max_sizes(&self) -> Vec<u16> {
        self.queues.clone()
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        for (k, b) in data.iter_mut().enumerate() {
            *b = usize::try_from(offset)
                .ok()
                .and_then(|o| o.checked_add(k))
                .and_then(|o| self.config.get(o))
                .copied()
                .unwrap_or(0);
        }
    }
    fn write_config(&mut self, offset: u64, data: &[u8]) {
        for (k, &b) in data.iter().enumerate() {
            let at = usize::try_from(offset).ok().and_then(|o| o.checked_add(k));
            if let Some(slot) = at.and_then(|o| self.config.get_mut(o)) {
                *slot = b;
            }
        }
    }
    fn replace_config(&mut self, config: &[u8]) -> bool {
        self.config = config.to_vec();
        true
    }
    fn ack_features(&mut self, features: u64) {
        self.acked = features;
    }
    fn reset(&mut self) {
        self.acked = 0;
    }
    fn process(&mut self, _: u16, _: &DescChain, _: &GuestMemory) -> Result<u32, QueueError> {
        // Never called by the transport: `submit` defers every chain.
        Err(QueueError::BadRequest(
            "a deferred device serves chains through complete()",
        ))
    }
    fn submit(&mut self, _: u16, _: &DescChain, _: &GuestMemory) -> Result<Processed, QueueError> {
        Ok(Processed::Deferred)
    }
}
