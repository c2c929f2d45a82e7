//! The fast CPU backend: rayon over blocks of rows, one fused pass per row (statistics in one
//! read, then the output written while the row is still in cache), a vectorizable `exp`, and
//! AVX-512 and AVX2 builds of the same loops chosen at run time where the processor has them
//! (isa.rs; arith.rs says which loops each build runs). Rows of f16 / bf16 are read in their
//! own type: widened in registers by the AVX-512 loops, a block at a time on the stack by the
//! others, never as a separate pass over the matrix.

mod alloc;
mod arith;
#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod batch;
mod ce;
mod ce_stats;
mod engine;
mod exp;
#[cfg(all(test, target_arch = "x86_64"))]
mod guess_tests;
mod isa;
mod lanes;
mod lin_terms;
mod linear;
mod pointwise;
mod rows;
pub(crate) mod surrogates;

// The bench's row-sum yardstick splits rows as the kernels do.
#[cfg(feature = "cli")]
pub(crate) use batch::ELEMS_PER_TASK;
pub use engine::Cpu;
pub use exp::exp as fast_exp;
pub use isa::{CpuIsa, ISA_ENV};
