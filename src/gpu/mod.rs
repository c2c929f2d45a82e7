//! The GPU backend (wgpu). [`Gpu`] (engine.rs) owns the device; [`Gpu::call`] (call.rs) runs
//! any op with host or device data, blocking, async or recorded; each op family prepares its
//! kernels' inputs (rows.rs, ce.rs, surrogates/) and describes its passes over one chunk of
//! rows as a `Job`; launch/ is the one loop over chunks (pooled buffers, error scopes, uploads
//! overlapped with compute, readback). kernel/ names every kernel, its bindings and the
//! constants and uniforms it shares with Rust; split.rs cuts rows for an adapter class.
//!
//! Any shape works: rows are chunked so each chunk fits one storage binding (lavapipe allows
//! 128 MiB), long rows with few of them are split over several workgroups and merged, short
//! rows share a workgroup, and grids larger than 65535 workgroups are folded into 2-D.

mod adapter;
mod backend;
mod call;
mod ce;
mod ce_call;
mod context;
mod convert;
mod encode;
mod engine;
mod io;
mod kernel;
mod launch;
mod linear;
mod matrix;
mod pipelines;
mod pool;
mod readback;
mod rows;
mod scopes;
mod split;
mod surrogates;
mod timing;
mod yardstick;

pub use adapter::{list_adapters, AdapterSummary, GpuOptions};
pub use call::{
    Call, CrossEntropy, Device, Host, InPlace, OnDevice, OverLogits, Recorded, Rows, RowsStaged,
    SurrogateStaged,
};
pub use ce_call::{CeStaged, DeviceCrossEntropy};
pub use engine::{Gpu, GpuCounters};
pub use io::{GpuInput, Matrix};
pub use matrix::GpuMatrix;
pub use surrogates::{device_sum_bound, DeviceSurrogateOutput, DeviceValue};
pub use timing::{KernelJob, KernelTimes};
