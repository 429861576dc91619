//! The errors of building a PCI function's configuration space: below both
//! [`pci`](super::PciFunction) and [`msi`](super::msi), which report them.

/// A refused [`PciFunction::with_bar`](super::PciFunction::with_bar) (or capability).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PciError {
    /// BAR index above 5 (or 5 for a 64-bit BAR, which needs two registers).
    #[error("BAR{0} does not exist (or has no room for a 64-bit BAR)")]
    NoSuchBar(usize),
    /// The register (or the upper half of a 64-bit BAR) is already used.
    #[error("BAR{0} is already used")]
    BarTaken(usize),
    /// Size not a power of two, or out of the allowed range.
    #[error("BAR{index}: invalid size {size:#x}")]
    InvalidSize {
        /// The BAR.
        index: usize,
        /// The size given.
        size: u64,
    },
    /// The capability does not fit in what is left of 0x40..0xff.
    #[error("no room for a capability of {0} bytes in configuration space 0x40..0xff")]
    NoCapabilitySpace(usize),
    /// A capability's shape is invalid (the reason says how).
    #[error("invalid capability: {0}")]
    InvalidCapability(&'static str),
}
