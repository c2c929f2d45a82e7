//! The portable row loops: `L` independent lanes that LLVM vectorizes on any target, and the
//! blocked sums every long CPU sum uses. The AVX2 build runs its intrinsic loops instead
//! (avx2/) where it can; `cpu::arith::Arith` picks.

use super::exp::{exp_with, Fma};
use crate::scale::{ExpForm, RowScale};

/// Lanes per block of the portable code (the AVX2 build uses intrinsics, see avx2/).
pub(crate) const L: usize = 16;

const ABS_MASK: u32 = 0x7fff_ffff;

/// Portable pass 1: the max of the values and the max of their `|bits|` (a row holds a
/// non-finite value iff that reaches the infinity pattern).
#[inline(always)]
pub(crate) fn max_and_abs_bits(x: &[f32]) -> (f32, u32) {
    // Lane-wise max of the values and of |bits| (an unsigned max: vpmaxud); a row holds a
    // non-finite value iff the largest |bits| reaches the infinity pattern.
    let mut mx = [f32::MIN; L];
    let mut mb = [0u32; L];
    let mut blocks = x.chunks_exact(L);
    for b in &mut blocks {
        for l in 0..L {
            let v = b[l];
            let a = v.to_bits() & ABS_MASK;
            mb[l] = if a > mb[l] { a } else { mb[l] };
            mx[l] = if v > mx[l] { v } else { mx[l] };
        }
    }
    let mut m = f32::MIN;
    let mut abits = 0u32;
    for &v in blocks.remainder() {
        abits = abits.max(v.to_bits() & ABS_MASK);
        m = if v > m { v } else { m };
    }
    for l in 0..L {
        m = if mx[l] > m { mx[l] } else { m };
        abits = abits.max(mb[l]);
    }
    (m, abits)
}

/// Pairwise sum of the lanes.
#[inline(always)]
pub(crate) fn lanes_sum(mut v: [f32; L]) -> f32 {
    let mut w = L;
    while w > 1 {
        w /= 2;
        for i in 0..w {
            v[i] += v[i + w];
        }
    }
    v[0]
}

/// Floats per block of the blocked sums: a multiple of every lane count used.
///
/// Every long sum of the CPU path (`exp_sum`, the cross-entropy linear sums) adds each block of
/// `SUM_BLOCK` floats in fresh f32 lanes and the block sums in f64. So no f32 accumulator takes
/// more than `SUM_BLOCK / 8 = 64` additions (32 in `exp_sum`'s 16 lanes), and a sum's relative
/// error stays below about `(64 + log₂ 16 + 1)·u` whatever the data. One accumulator per lane for a whole row takes
/// `C / 16` additions, and when their rounding errors line up (one dominant term, then many
/// equal terms just above half an ulp of it) it loses `C / 16` half-ulps: measured at
/// C = 33858, a log-softmax off by 1.7% of its tail mass (tests/summation.rs).
pub(crate) const SUM_BLOCK: usize = 512;

/// Portable pass 2 (and every build's path for tiny temperatures).
#[inline(always)]
pub(crate) fn exp_sum_portable<A: Fma>(x: &[f32], sc: &RowScale, store: Option<&mut [f32]>) -> f32 {
    match sc.form {
        ExpForm::Unit => exp_sum_with::<A>(x, store, |v| (v - sc.m) * sc.c),
        ExpForm::Half => exp_sum_with::<A>(x, store, |v| A::fma(v, sc.h, sc.mh) * sc.c),
        ExpForm::Tiny => exp_sum_with::<A>(x, store, |v| ((v - sc.m) * sc.h) * sc.c),
    }
}

/// Pass 2 with the exponent `z(x)`.
#[inline(always)]
fn exp_sum_with<A: Fma>(x: &[f32], store: Option<&mut [f32]>, z: impl Fn(f32) -> f32) -> f32 {
    let mut total = 0.0f64;
    match store {
        Some(out) => {
            for (x, out) in x.chunks(SUM_BLOCK).zip(out.chunks_mut(SUM_BLOCK)) {
                let mut acc = [0.0f32; L];
                let mut ob = out.chunks_exact_mut(L);
                let mut xb = x.chunks_exact(L);
                for (o, b) in (&mut ob).zip(&mut xb) {
                    for l in 0..L {
                        let e = exp_with::<A>(z(b[l]));
                        o[l] = e;
                        acc[l] += e;
                    }
                }
                for (o, &v) in ob.into_remainder().iter_mut().zip(xb.remainder()) {
                    let e = exp_with::<A>(z(v));
                    *o = e;
                    acc[0] += e;
                }
                total += lanes_sum(acc) as f64;
            }
        }
        None => {
            for x in x.chunks(SUM_BLOCK) {
                let mut acc = [0.0f32; L];
                let mut xb = x.chunks_exact(L);
                for b in &mut xb {
                    for l in 0..L {
                        acc[l] += exp_with::<A>(z(b[l]));
                    }
                }
                for &v in xb.remainder() {
                    acc[0] += exp_with::<A>(z(v));
                }
                total += lanes_sum(acc) as f64;
            }
        }
    }
    total as f32
}
