//! One row at a time: the online (max, sum) statistics and the fused softmax write.
//!
//! Statistics are accumulated in `L` independent lanes (so the loop vectorizes): per block of
//! `L` values, take the block max, rescale the lane sums if the running max grew
//! (`s ← s·e^{(m_old − m_new)/T}`, Milakov & Gimelshein 2018), then add `e^{(x − m)/T}` per
//! lane. The max is taken over raw `x` (`max(x/T) = max(x)/T`), so the exponent is
//! `(x − m)·(1/T)`: `x − m` is exact for nearby values, where `x/T` in f32 would lose
//! `ε·|x/T|`. Then `T·lse(x/T) = m + T·ln s`. Non-finite values are found by bit tests, the way
//! the GPU kernels do it.

use super::exp::exp;

/// Lanes per block: two AVX registers, four SSE registers.
const L: usize = 16;

const ABS_MASK: u32 = 0x7fff_ffff;
const INF_BITS: u32 = 0x7f80_0000;

/// The normalizer of one row: running max `m` of the finite values, `s = Σ e^{x − m}`, and
/// whether a NaN or a +inf was seen (those decide the result on their own).
#[derive(Copy, Clone, Debug)]
pub(crate) struct RowStats {
    pub m: f32,
    pub s: f32,
    pub nan: bool,
    pub pos_inf: bool,
}

impl RowStats {
    /// True when the row has a finite normalizer: no NaN, no +inf, at least one finite value.
    #[inline(always)]
    pub fn finite(&self) -> bool {
        !self.nan && !self.pos_inf && self.s > 0.0
    }

    /// `m + T · ln s`, or the table's answer for a non-finite row.
    #[inline(always)]
    pub fn logsumexp(&self, t: f32) -> f32 {
        if self.nan {
            f32::NAN
        } else if self.pos_inf {
            f32::INFINITY
        } else if self.s == 0.0 {
            f32::NEG_INFINITY
        } else {
            self.m + t * self.s.ln()
        }
    }
}

/// Folds one block of already-scaled values into the lane sums.
#[inline(always)]
fn absorb(
    v: &[f32; L],
    inv_t: f32,
    m: &mut f32,
    acc: &mut [f32; L],
    nan: &mut bool,
    pos_inf: &mut bool,
) {
    let mut any_nonfinite = false;
    for &x in v {
        any_nonfinite |= (x.to_bits() & ABS_MASK) >= INF_BITS;
    }
    let mut w = *v;
    if any_nonfinite {
        // Rare path. NaN and +inf only set flags; −inf contributes e^{−inf} = 0.
        for x in w.iter_mut() {
            let bits = x.to_bits();
            if (bits & ABS_MASK) > INF_BITS {
                *nan = true;
            } else if bits == INF_BITS {
                *pos_inf = true;
            }
            if (bits & ABS_MASK) >= INF_BITS {
                *x = f32::NEG_INFINITY;
            }
        }
    }
    // `if a > b` rather than f32::max: maxnum's NaN rules block vectorization, and NaN is
    // already out of the block.
    let mut bm = f32::MIN;
    for &x in &w {
        bm = if x > bm { x } else { bm };
    }
    if bm > *m {
        let r = exp((*m - bm) * inv_t);
        for a in acc.iter_mut() {
            *a *= r;
        }
        *m = bm;
    }
    let mm = *m;
    for (a, &x) in acc.iter_mut().zip(&w) {
        *a += exp((x - mm) * inv_t);
    }
}

/// The statistics of one row at temperature `1 / inv_t`, in one read.
#[inline(always)]
pub(crate) fn row_stats(x: &[f32], inv_t: f32) -> RowStats {
    let mut m = f32::MIN;
    let mut acc = [0.0f32; L];
    let (mut nan, mut pos_inf) = (false, false);
    let mut blocks = x.chunks_exact(L);
    for b in &mut blocks {
        let v: &[f32; L] = b.try_into().expect("chunks_exact yields L values");
        absorb(v, inv_t, &mut m, &mut acc, &mut nan, &mut pos_inf);
    }
    let tail = blocks.remainder();
    if !tail.is_empty() {
        // Pad with −inf: it contributes exactly nothing.
        let mut v = [f32::NEG_INFINITY; L];
        v[..tail.len()].copy_from_slice(tail);
        absorb(&v, inv_t, &mut m, &mut acc, &mut nan, &mut pos_inf);
    }
    // Pairwise sum of the lanes.
    let mut width = L;
    while width > 1 {
        width /= 2;
        for i in 0..width {
            acc[i] += acc[i + width];
        }
    }
    RowStats {
        m,
        s: acc[0],
        nan,
        pos_inf,
    }
}

/// Writes softmax (or log-softmax) at temperature `1 / inv_t` into `out`, given the row's
/// statistics.
#[inline(always)]
pub(crate) fn write_softmax(x: &[f32], out: &mut [f32], inv_t: f32, st: &RowStats, log: bool) {
    if !st.finite() {
        out.fill(f32::NAN);
        return;
    }
    let m = st.m;
    if log {
        let ln_s = st.s.ln();
        for (o, &v) in out.iter_mut().zip(x) {
            // (x − m)/T − ln s: exact under a large common shift, −inf stays −inf.
            *o = (v - m) * inv_t - ln_s;
        }
    } else {
        let inv_s = 1.0 / st.s;
        for (o, &v) in out.iter_mut().zip(x) {
            *o = exp((v - m) * inv_t) * inv_s;
        }
    }
}
