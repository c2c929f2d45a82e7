//! The surrogates on the GPU: `dispatch` checks a call on the host (shared with the other
//! backends) and runs its kernels through the one launch path (`rows`: the row family;
//! `points`: the pointwise family; `f1`: the two-pass F1 scores); `output` finishes what the
//! kernels leave, with the batch reductions in f64 on the host.

mod dispatch;
mod f1;
mod output;
mod params;
mod points;
mod rows;

pub(crate) use dispatch::surrogate;
pub(crate) use output::{finish_device, finish_host};
pub use output::{DeviceSurrogateOutput, DeviceValue, Raw};
