//! Identities the math guarantees, checked on every fast backend without the reference:
//! shift invariance (including +1e7 on integers), rows summing to 1, exp(log_softmax) =
//! softmax, and the smooth-max bounds max ≤ lse_T ≤ max + T·ln C, tight as T → 0.

mod common;

use common::{fast_backends, logits, tol, Rng};
use ndarray::{Array2, Axis};
use smoothmax::Backend;

/// Integer-valued logits: adding 1e7 to them is exact in f32 (|x + 1e7| < 2^24).
fn integer_logits(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
    let mut rng = Rng(seed);
    Array2::from_shape_fn((rows, cols), |_| ((rng.next_u64() % 101) as f32) - 50.0)
}

#[test]
fn per_row_shift_leaves_softmax_unchanged() {
    for b in fast_backends() {
        for cols in [7usize, 64, 1000, 30_000] {
            let x = integer_logits(6, cols, cols as u64);
            let shifts = [0.0f32, -3.0, 1e3, 1e7, -1e7, 2e6];
            let mut shifted = x.clone();
            for (mut row, &c) in shifted.axis_iter_mut(Axis(0)).zip(&shifts) {
                row.mapv_inplace(|v| v + c);
            }
            for log in [false, true] {
                let (a, s) = if log {
                    (
                        b.log_softmax(x.view(), 1.0).unwrap(),
                        b.log_softmax(shifted.view(), 1.0).unwrap(),
                    )
                } else {
                    (
                        b.softmax(x.view(), 1.0).unwrap(),
                        b.softmax(shifted.view(), 1.0).unwrap(),
                    )
                };
                for (i, (&p, &q)) in a.iter().zip(s.iter()).enumerate() {
                    let err = ((p - q).abs() as f64) / (1.0 + p.abs() as f64);
                    assert!(
                        err <= tol(cols),
                        "{} C={cols} log={log} [{i}]: {p} vs {q}",
                        b.name()
                    );
                }
            }
            // logsumexp moves by exactly the shift (up to rounding of the shifted value).
            let l0 = b.logsumexp(x.view(), 1.0).unwrap();
            let l1 = b.logsumexp(shifted.view(), 1.0).unwrap();
            for i in 0..6 {
                let want = l0[i] as f64 + shifts[i] as f64;
                let err = (l1[i] as f64 - want).abs() / (1.0 + want.abs());
                assert!(
                    err <= tol(cols),
                    "{} lse shift row {i}: {} vs {want}",
                    b.name(),
                    l1[i]
                );
            }
        }
    }
}

#[test]
fn softmax_rows_sum_to_one_and_exp_log_softmax_is_softmax() {
    for b in fast_backends() {
        for (cols, t) in [(3usize, 1.0f32), (65, 0.3), (2049, 1.0), (30_576, 4.0)] {
            let x = logits(5, cols, 4.0, 2.0, true, cols as u64);
            let p = b.softmax(x.view(), t).unwrap();
            let lp = b.log_softmax(x.view(), t).unwrap();
            for (i, row) in p.axis_iter(Axis(0)).enumerate() {
                let s: f64 = row.iter().map(|&v| v as f64).sum();
                assert!(
                    (s - 1.0).abs() <= 2.0 * tol(cols),
                    "{} C={cols} row {i} sums to {s}",
                    b.name()
                );
            }
            for ((&q, &lq), i) in p.iter().zip(lp.iter()).zip(0..) {
                let e = (lq as f64).exp();
                assert!(
                    (e - q as f64).abs() <= tol(cols) * (1.0 + e),
                    "{} C={cols} [{i}]: exp({lq}) vs {q}",
                    b.name()
                );
            }
        }
    }
}

#[test]
fn smooth_max_bounds_and_the_zero_temperature_limit() {
    for b in fast_backends() {
        let cols = 1000usize;
        let x = logits(8, cols, 3.0, 0.0, false, 99);
        let max: Vec<f64> = x
            .axis_iter(Axis(0))
            .map(|r| r.iter().fold(f64::MIN, |a, &v| a.max(v as f64)))
            .collect();
        let mut prev_gap = [f64::INFINITY; 8];
        for t in [10.0f32, 1.0, 0.1, 0.01, 0.001] {
            let lse = b.logsumexp(x.view(), t).unwrap();
            for i in 0..8 {
                let gap = lse[i] as f64 - max[i];
                let slack = tol(cols) * (1.0 + max[i].abs());
                // max ≤ lse_T ≤ max + T·ln C
                assert!(
                    gap >= -slack,
                    "{} T={t} row {i}: lse below max by {gap}",
                    b.name()
                );
                assert!(
                    gap <= t as f64 * (cols as f64).ln() + slack,
                    "{} T={t} row {i}: gap {gap}",
                    b.name()
                );
                // and the gap shrinks with T
                assert!(
                    gap <= prev_gap[i] + slack,
                    "{} T={t} row {i}: gap grew",
                    b.name()
                );
                prev_gap[i] = gap;
            }
        }
        // At T = 0.001 the smooth max is the max to within T·ln C ≈ 0.007.
        assert!(prev_gap
            .iter()
            .all(|&g| g <= 0.001 * (cols as f64).ln() + 1e-5));
    }
}
