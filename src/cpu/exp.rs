//! A branch-free `exp` for f32 that LLVM vectorizes (`f32::exp` is a libm call per element).
//!
//! Cephes `expf` (S. Moshier): `exp(x) = 2^n · e^r` with `n = round(x·log2 e)` and
//! `r = x − n·ln 2` (ln 2 split in two parts so `n·C1` is exact), then a degree-6 polynomial for
//! `e^r` on `|r| ≤ ln2/2`. Max error about 1 ulp on the range used here.
//!
//! Domain: arguments are `x − max ≤ 0` in every caller. Below `LO` the result is exactly 0
//! (so `exp(−inf) = 0`, as the masked softmax needs); above `HI` it is `+inf`. NaN in gives an
//! unspecified value: callers flag NaN rows before they get here.

const LOG2E: f32 = std::f32::consts::LOG2_E;
/// `ln 2` split: `C1` = 355/512 has few mantissa bits so `n·C1` is exact for |n| < 2^9.
const C1: f32 = 355.0 / 512.0;
const C2: f32 = -2.121_944_4e-4;
/// Below this, `2^n` would be subnormal: flush to 0.
const LO: f32 = -87.336_55;
/// Above this, `2^(n+1)` overflows the exponent field.
const HI: f32 = 88.376_26;
/// `1.5 · 2^23`: adding and subtracting it rounds to the nearest integer (ties to even) with
/// two plain adds, which vectorize on SSE2 where `round` does not.
const ROUND_MAGIC: f32 = 12_582_912.0;

/// `e^x` to about 1 ulp, vectorizable; see the module docs for the domain.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let xc = x.clamp(LO, HI);
    let n = (xc * LOG2E + ROUND_MAGIC) - ROUND_MAGIC;
    let r = xc - n * C1 - n * C2;
    let r2 = r * r;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5; // Cephes: 5.0000001201e-1, which rounds to 0.5 in f32
    let e_r = p * r2 + r + 1.0;
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    let y = e_r * scale;
    if x < LO {
        0.0
    } else if x > HI {
        f32::INFINITY
    } else {
        y
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Worst relative error against f64 over a dense sweep of the domain callers use.
    #[test]
    fn matches_f64_exp_to_two_ulp() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let want = (x as f64).exp();
            let got = exp(x) as f64;
            worst = worst.max(((got - want) / want).abs());
            x += 0.000_73;
        }
        assert!(
            worst < 2.0 * f32::EPSILON as f64,
            "worst relative error {worst:e}"
        );
    }

    #[test]
    fn edges() {
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(-1000.0), 0.0);
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp(1000.0), f32::INFINITY);
    }
}
