//! How every backend forms the exponent `κ·(x − m)` of a softmax-like sum, for every accepted
//! `κ = 1/T` (or `|β|`) and every pair of finite f32 values `x ≤ m`.
//!
//! The plain form `(x − m)·κ` keeps `x − m` exact for nearby values (the point of shifting by
//! the max), but it fails at both ends of the accepted range:
//! - `T > 1` (`κ < 1`): `x − m` overflows to −inf when the row spans more than `f32::MAX`
//!   (`[3e38, −3e38]`), although `κ·(x − m)` is finite: at `T = 1e38` that row's softmax is
//!   `[0.9975, 0.0025]`, not `[1, 0]`.
//! - `T < 1/f32::MAX` (subnormal temperatures): `κ` itself overflows, and `0·inf` is NaN.
//!
//! So the exponent is formed in one of three ways, chosen per call from `κ·fold` (`fold` is
//! `log₂ e` where the kernel evaluates `exp2`, 1 where it evaluates `exp`):
//!
//! | range | exponent | why |
//! |---|---|---|
//! | `κ < 1` | `fma(x, ½, −m/2)·2κ` | `x/2 − m/2` cannot overflow, and halving is exact: the plain form's value wherever that one is finite |
//! | `1 ≤ κ`, `κ·fold` finite | `(x − m)·κ` | the plain form; an overflowing `x − m` means `κ(x − m) < −f32::MAX`, so −inf is right |
//! | `κ·fold` overflows | `((x − m)·2⁶⁴)·(κ/2⁶⁴)` | `x − m` is exact wherever the result is not −inf (nearby values), and scaling by a power of two is exact |
//!
//! The last multiply is the only one that can overflow, and it does only where the exact
//! exponent is below `−f32::MAX`, where `e^z` is 0 anyway. Log-softmax uses the same
//! exponent without `fold`: `(x − m)/T`.

/// `2⁶⁴`.
const BIG_H: f64 = 18_446_744_073_709_551_616.0;

/// Which row of the module's table a call is in.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum ExpForm {
    /// `κ ≥ 1`: `(x − m)·c`.
    Unit,
    /// `κ < 1`: `fma(x, ½, −m/2)·c`.
    Half,
    /// `κ·fold` beyond f32: `((x − m)·2⁶⁴)·c`.
    Tiny,
}

/// The exponent's scaling for one call.
#[derive(Copy, Clone, Debug, PartialEq)]
pub(crate) struct ExpScale {
    /// ½, 1, or 2⁶⁴ (tiny temperatures).
    pub h: f32,
    /// `κ·fold/h`.
    pub c: f32,
    /// `κ/h`: the same without `fold`, for log-domain outputs.
    pub c_log: f32,
    pub form: ExpForm,
    /// `κ·fold` overflows f32 (the form is `Tiny`).
    pub tiny: bool,
}

/// [`ExpScale`] for a row whose max is `m`.
#[derive(Copy, Clone, Debug, PartialEq)]
pub(crate) struct RowScale {
    pub h: f32,
    /// `−m·h` (0 when tiny: the max is subtracted first).
    pub mh: f32,
    pub m: f32,
    pub c: f32,
    pub c_log: f32,
    pub form: ExpForm,
    pub tiny: bool,
    /// No base-2 exponent of the row (or block) falls below −126 (the CPU's
    /// `exp::bounded_row` shows it from the block's largest `|x|`), so the base-2 loops need
    /// not flush lanes below it to 0. False unless set there.
    pub no_flush: bool,
}

impl ExpScale {
    /// For `κ > 0` (finite), with `fold` = 1 or `log₂ e`.
    pub fn new(kappa: f64, fold: f64) -> Self {
        let k = kappa * fold;
        let (h, form) = if kappa < 1.0 {
            (0.5, ExpForm::Half)
        } else if (k as f32).is_finite() {
            (1.0, ExpForm::Unit)
        } else {
            (BIG_H, ExpForm::Tiny)
        };
        ExpScale {
            h: h as f32,
            c: (k / h) as f32,
            c_log: (kappa / h) as f32,
            form,
            tiny: form == ExpForm::Tiny,
        }
    }

    /// For temperature `T` (validated: finite, > 0).
    pub fn temperature(t: f32, fold: f64) -> Self {
        ExpScale::new(1.0 / t as f64, fold)
    }

    /// The scaling for a row whose max is `m`.
    #[inline(always)]
    pub fn row(&self, m: f32) -> RowScale {
        RowScale {
            h: self.h,
            mh: if self.tiny { 0.0 } else { -m * self.h },
            m,
            c: self.c,
            c_log: self.c_log,
            form: self.form,
            tiny: self.tiny,
            no_flush: false,
        }
    }
}

impl RowScale {
    /// `(x − m)·h` scaled as the table says, with the multiply-add `fma` (fused or not).
    #[inline(always)]
    pub fn shifted(&self, x: f32, fma: impl Fn(f32, f32, f32) -> f32) -> f32 {
        if self.tiny {
            (x - self.m) * self.h
        } else {
            fma(x, self.h, self.mh)
        }
    }

    /// `κ·(x − m)·fold` (−inf for `x = −inf`), with a fused multiply-add.
    #[cfg(test)]
    pub fn z(&self, x: f32) -> f32 {
        self.shifted(x, f32::mul_add) * self.c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exponent against f64 over the whole range of κ and of row values.
    #[test]
    fn exponent_is_accurate_or_correctly_minus_infinite() {
        let kappas = [
            1.0 / f32::from_bits(1) as f64,
            1.0 / 1e-40,
            1.0 / f32::MIN_POSITIVE as f64,
            1e30,
            3.0,
            1.0,
            0.37,
            1e-30,
            1.0 / f32::MAX as f64,
        ];
        let values = [
            0.0f32,
            f32::from_bits(1),
            f32::from_bits(7),
            -f32::from_bits(3),
            1e-38,
            1.0,
            1.0 + f32::EPSILON,
            -2.5,
            1e7,
            3e38,
            -3e38,
            f32::MAX,
            -f32::MAX,
        ];
        for &k in &kappas {
            let s = ExpScale::new(k, 1.0);
            for &m in &values {
                let r = s.row(m);
                for &x in values.iter().filter(|&&x| x <= m) {
                    let exact = (x as f64 - m as f64) * k;
                    let z = r.z(x) as f64;
                    if exact < -(f32::MAX as f64) {
                        assert!(z < -104.0, "κ={k:e} m={m:e} x={x:e}: {z} for {exact}");
                    } else if exact < -104.0 {
                        assert!(z < -100.0, "κ={k:e} m={m:e} x={x:e}: {z} for {exact}");
                    } else {
                        let err = (z - exact).abs();
                        assert!(
                            err <= 4.0 * f32::EPSILON as f64 * (1.0 + exact.abs()),
                            "κ={k:e} m={m:e} x={x:e}: {z} for {exact}"
                        );
                    }
                }
            }
        }
    }
}
