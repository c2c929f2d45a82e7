//! The cross-entropy linear sum as the SIMD exp-sum loops (avx512/, avx2/) form it beside
//! the exp-sum, in one read of the row.
//!
//! The terms are `σ·k̂_j·t_j` with `t = fma(x, h, −m·h)` the exponent's own first step, for
//! `h = 1`: `t = x − m` rounded once. As `σ` is a power of two, `σ·round(k̂·t) =
//! round(k̂·σ(x − m))`: each term is `k̂·fma(x, σ, −σm)` (the separate loops' form, avx2/'s
//! `linear_sums`) divided by `σ` exactly, and the scaling commutes with every f32 and f64
//! addition, so the sum is the one those terms would give in the same order, bit for bit,
//! wherever neither form meets a subnormal (where this one is the more exact). It costs one
//! addition per vector (a multiply and an addition with `k̂`) instead of a multiply-add and an
//! addition (and, in the AVX2 build, a second pass over the row with a finite test).
//! [`Linear::fits`] bounds the domain where `t` and the lanes' partial sums stay finite; other
//! blocks take the separate loops.

use crate::element::Element;

/// A row's linear terms for the fused loops.
pub(crate) struct Linear<'a> {
    /// `σ`, the row's scale of the linear terms (`cross_entropy::fast`).
    pub sigma: f32,
    /// `k̂` over the same columns as `x` (absent: 1).
    pub k: Option<&'a [f32]>,
}

impl Linear<'_> {
    /// Whether the fused loops take a block against the max `m` with the exponent scale `h`,
    /// given the largest `|x|`'s bits `abits` (at or above `INF_BITS` where a value is not
    /// finite): every value finite, `h = 1`, and `|x| + |m| ≤ 2^120`, so that `|t| ≤ 2^120`
    /// and a lane's partial sum of at most 64 terms (`|k̂| ≤ 1`) stays at most `2^126`. Other
    /// blocks (a −inf, logits beyond `2^119`) take the separate loops.
    pub fn fits(abits: u32, m: f32, h: f32) -> bool {
        let finite = abits < f32::INFINITY.to_bits();
        finite && h == 1.0 && f32::from_bits(abits) as f64 + (m as f64).abs() <= 2f64.powi(120)
    }

    /// `k̂` as long as the block (`n` values), when given: the loops read it unchecked.
    pub fn check_len(&self, n: usize) {
        if let Some(k) = self.k {
            assert_eq!(k.len(), n);
        }
    }

    /// The fused loops' preconditions on a block `x` with the exponent scale `h`: `k̂` as long
    /// as `x` (asserted: the loops read it unchecked), and the rest of [`Linear::fits`]'s
    /// domain (checked in debug builds).
    pub fn check<E: Element>(&self, x: &[E], h: f32) {
        self.check_len(x.len());
        debug_assert!(h == 1.0 && x.iter().all(|v| v.to_f32().is_finite()));
    }
}

#[cfg(test)]
mod tests {
    use super::Linear;

    /// The domain's edges: `|x| + |m| = 2^120` fits, the next value up does not; a
    /// non-finite block (its bits at `INF_BITS` or above) and `h ≠ 1` never do.
    #[test]
    fn fits_exactly_its_domain() {
        let p119 = 2f32.powi(119);
        let bits = |v: f32| v.to_bits() & 0x7fff_ffff;
        assert!(Linear::fits(bits(p119), p119, 1.0));
        assert!(Linear::fits(bits(p119), -p119, 1.0));
        let up = f32::from_bits(p119.to_bits() + 1);
        assert!(!Linear::fits(bits(up), p119, 1.0));
        assert!(!Linear::fits(bits(p119), up, 1.0));
        assert!(!Linear::fits(f32::INFINITY.to_bits(), 0.0, 1.0));
        assert!(!Linear::fits(bits(f32::NAN), 0.0, 1.0));
        assert!(!Linear::fits(bits(1.0), 0.0, 0.5));
        assert!(Linear::fits(bits(1.0), 0.0, 1.0));
    }
}
