//! The one error type every backend returns.
//!
//! Messages name the offending row, value or limit and, where there is one, the fix.

use thiserror::Error;

/// Everything that can go wrong in smoothmax. No public function panics on bad input or on a
/// device failure; it returns one of these.
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// Temperature must be a finite number greater than zero.
    #[error("temperature must be finite and > 0, got {0}")]
    BadTemperature(f32),

    /// A shape does not fit a limit of the chosen backend.
    #[error("shape [{rows}, {cols}] is too large: {what} (limit {limit})")]
    ShapeTooLarge {
        /// Rows of the input.
        rows: usize,
        /// Columns of the input.
        cols: usize,
        /// Which limit is exceeded.
        what: &'static str,
        /// The value of that limit.
        limit: u64,
    },

    /// No GPU adapter was found (or none matched `WGPU_ADAPTER_NAME` / `WGPU_BACKEND`).
    #[error(
        "no GPU adapter found{detail}; on Linux install a software Vulkan GPU with \
         `apt-get install -y mesa-vulkan-drivers`, or use the CPU backend"
    )]
    NoAdapter {
        /// Extra context, e.g. the adapter name that was asked for.
        detail: String,
    },

    /// A device handed to smoothmax lacks a limit the kernels need.
    #[error("the device's {what} is {have}, smoothmax needs at least {need}; request it when creating the device")]
    Unsupported {
        /// The limit, in wgpu's naming.
        what: &'static str,
        /// What the device has.
        have: u64,
        /// What smoothmax needs.
        need: u64,
    },

    /// The adapter refused to create a device (e.g. a requested limit is above what it has).
    #[error("could not open the GPU device: {0}")]
    RequestDevice(String),

    /// A wgpu validation error: a bug in smoothmax or in an embedding application's use of it.
    #[error("GPU validation error: {0}")]
    Validation(String),

    /// The device could not allocate a buffer.
    #[error("GPU out of memory: {0}")]
    OutOfMemory(String),

    /// The device was lost (driver reset, GPU removed). Drop this engine and create a new one.
    #[error("GPU device lost: {0}; drop this engine and create a new one")]
    DeviceLost(String),

    /// Reading results back from the GPU failed.
    #[error("GPU readback failed: {0}")]
    Readback(String),

    /// An environment variable smoothmax reads has a value it does not accept.
    #[error("{name}={value:?} is not valid: expected {expected}")]
    Environment {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// What it accepts.
        expected: String,
    },

    /// Something asked for is not available on this machine (e.g. a CPU build the processor
    /// cannot run); the message says what is.
    #[error("not available: {0}")]
    Unavailable(String),

    /// An input value or argument is invalid; the message says which and why.
    #[error("invalid input: {0}")]
    InvalidInput(String),
}

/// Shorthand for `Result<T, smoothmax::Error>`.
pub type Result<T> = std::result::Result<T, Error>;
