//! Benchmarks: every op on the GPU (kernel time on device-resident data, and end to end) and on
//! the CPU, beside yardsticks measured in the same run on the same bytes: on the GPU a copy
//! kernel and an exp-map kernel, on the CPU a multi-threaded memcpy, and on both a row sum
//! (read `B·C`, write `B`), the floor of the ops that only read their rows. Throughput counts bytes
//! read plus bytes written (compulsory traffic: each input once, each output once). The fused
//! linear cross-entropy has its own bench (`linear`): FLOP/s beside a plain matrix product,
//! and peak memory beside the materialized path.

mod config;
mod linear;
mod memory;
mod plot;
mod record;
mod report;
mod run;
mod surrogates;

pub use config::{
    bench_ce_options, bench_inputs, parallel_copy, parallel_row_sum, BenchConfig, BenchOp,
};
pub use linear::{linear_table, run_linear, LinearRecord, LINEAR_SHAPES};
pub use memory::{peak_heap, CountingAlloc};
pub use plot::write_svg;
pub use record::Record;
pub use report::{table, to_json};
pub use run::run;
pub use surrogates::{SurrogateBench, SurrogateInputs};
