//! The fast CPU backend: rayon over blocks of rows, one fused pass per row (statistics in one
//! read, then the output written while the row is still in cache), a vectorizable `exp`, and
//! an AVX2 build of the same loops chosen at run time where the processor has it.

mod alloc;
mod arith;
#[cfg(target_arch = "x86_64")]
mod avx2;
mod batch;
mod ce;
mod engine;
mod exp;
mod isa;
mod lanes;
mod pointwise;
mod rows;
pub(crate) mod surrogates;

pub use engine::Cpu;
pub use exp::exp as fast_exp;
pub use isa::{CpuIsa, ISA_ENV};
