//! The surrogates on the GPU: `dispatch` checks a call on the host (shared with the other
//! backends) and runs its kernels through the one launch path (`rows`: the row family;
//! `points`: the pointwise family; `f1`: the two-pass F1 scores); `sums` reduces a batch on
//! the device; `output` finishes what the kernels leave.

mod dispatch;
mod f1;
mod output;
mod params;
mod points;
mod rows;
mod sums;

pub(crate) use dispatch::surrogate;
pub(crate) use output::{finish_device, finish_host};
pub use output::{DeviceSurrogateOutput, DeviceValue, Raw};
pub use sums::bound as device_sum_bound;
