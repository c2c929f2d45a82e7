//! Inputs built to defeat naive f32 summation, for every op that sums a row, on every fast
//! backend, against the f64 reference and the one tolerance of tests/common.
//!
//! The probabilistic error bound behind the tolerance (Higham & Mary 2019) assumes rounding
//! errors that do not line up. They do line up when one dominant term sits in an accumulator and
//! many equal small terms are added to it: each addition of `t` just above half an ulp of the
//! accumulator rounds up by nearly half an ulp, in the same direction every time. A sum that
//! adds `n` such terms into one accumulator is then off by about `n` half-ulps, not `√n`. CI
//! once met this through a random case (`[31, 33858]`, values `1e5 + 0.01·N(0,1)`, which f32
//! rounds to a few distinct values, a spike of +20, T = 1.29: the CPU log-softmax was off by
//! 1.7% in its tail mass). Sorted rows are the other hazard of the online (max, sum) merge:
//! the running max grows at every step, so every step rescales the sum.

mod common;

use common::{assert_ce_close, assert_close_1d, assert_close_2d, check_row_ops, fast_backends};
use ndarray::{Array1, Array2};
use smoothmax::surrogates::reference::surrogate_f64;
use smoothmax::{Backend, CrossEntropyOptions, Reference, Surrogate, Targets};

/// `rows × cols` with one value `top` per row (at a column that moves with the row) and
/// every other value `top + d`, where `group` terms `e^{d/T}` add up to just above half an ulp
/// of 1 (kernels that first add 4 or 16 terms in a tree, then into a running sum, meet the
/// worst case at `group` 4 or 16).
fn dominant_and_tiny(rows: usize, cols: usize, t: f32, top: f32, group: u32) -> Array2<f32> {
    let d = (t as f64 * (1.01f64 * 2f64.powi(-24) / group as f64).ln()) as f32;
    Array2::from_shape_fn((rows, cols), |(i, j)| {
        if j == (i * 7919) % cols {
            top
        } else {
            top + d
        }
    })
}

/// Rows whose values increase (or decrease) by `step` per column from `start`.
fn sorted(rows: usize, cols: usize, start: f32, step: f32) -> Array2<f32> {
    Array2::from_shape_fn((rows, cols), |(i, j)| {
        start + step * (j as f32) + 0.001 * i as f32
    })
}

/// Cross-entropy with the target on the dominant class, plain and label-smoothed (the
/// smoothing term is a second long sum, `Σ (x_j − m)`).
fn check_ce(b: &&dyn Backend, x: &Array2<f32>, what: &str) {
    let (rows, cols) = x.dim();
    let y = Array1::from_shape_fn(rows, |i| ((i * 7919) % cols) as i64);
    for ls in [0.0f32, 0.1] {
        let o = CrossEntropyOptions {
            label_smoothing: ls,
            reduction: smoothmax::Reduction::None,
            gradient: true,
            ..Default::default()
        };
        let t = Targets::classes(y.view());
        let want = Reference
            .cross_entropy_f64(x.view(), t.clone(), &o)
            .unwrap();
        let got = b.cross_entropy(x.view(), t.clone(), &o).unwrap();
        assert_ce_close(&got, &want, cols, 1.0, &format!("{what} ls={ls}"));
    }
}

/// The softmax-weighted surrogates, whose sums are `Σ e` and `Σ g·e`: the Boltzmann operator
/// (`g = x`) and smooth accuracy (`g = [j = y]`, the target on the dominant class).
fn check_surrogates(x: &Array2<f32>, what: &str) {
    let (rows, cols) = x.dim();
    let y = Array1::from_shape_fn(rows, |i| ((i * 7919) % cols) as i64);
    let calls = [
        Surrogate::BoltzmannMax {
            x: x.view(),
            beta: 1.0,
        },
        Surrogate::SmoothAccuracy {
            logits: x.view(),
            targets: y.view(),
            temperature: 1.0,
        },
    ];
    for call in &calls {
        let want = surrogate_f64(call).unwrap();
        for b in fast_backends() {
            let got = b.surrogate(call).unwrap();
            let what = format!("{} {what} {}", b.name(), call.name());
            assert_close_1d(
                Array1::from(got.value.to_vec()).view(),
                Array1::from(want.value.to_vec()).view(),
                cols,
                &format!("{what}: value"),
            );
            assert_close_2d(got.grad.view(), want.grad.view(), &format!("{what}: grad"));
        }
    }
}

const GROUPS: [u32; 3] = [1, 4, 16];
const COLS: [usize; 4] = [1000, 4099, 33858, 131072];

#[test]
fn many_tiny_terms_beside_a_dominant_one() {
    for b in fast_backends() {
        for &cols in &COLS {
            for t in [1.0f32, 1.290_784_2, 0.3, 20.0] {
                for top in [0.0f32, 1e5] {
                    for group in GROUPS {
                        let x = dominant_and_tiny(3, cols, t, top, group);
                        let what =
                            format!("{} [3, {cols}] T={t} top={top} group={group}", b.name());
                        check_row_ops(b, x.view(), t, &what);
                        if t == 1.0 {
                            check_ce(b, &x, &what);
                        }
                    }
                }
            }
        }
    }
    for &cols in &COLS {
        for top in [0.0f32, 1e5] {
            for group in GROUPS {
                let x = dominant_and_tiny(3, cols, 1.0, top, group);
                check_surrogates(&x, &format!("[3, {cols}] top={top} group={group}"));
            }
        }
    }
}

/// Enough rows that a CPU adapter's kernels give each invocation its longest serial loop
/// (2048 vec4, one invocation per row): before the GPU loops were blocked, the Boltzmann
/// gradient here was 508 ε off with `group` 4 (tolerance 394 ε).
#[test]
fn many_tiny_terms_in_a_large_batch() {
    for group in GROUPS {
        let x = dominant_and_tiny(4096, 8192, 1.0, 0.0, group);
        let what = format!("[4096, 8192] group={group}");
        for b in fast_backends() {
            check_row_ops(b, x.view(), 1.0, &format!("{} {what}", b.name()));
            check_ce(b, &x, &format!("{} {what}", b.name()));
        }
        check_surrogates(&x, &what);
    }
    // Rising rows: an invocation's running max grows at every step, so its running sum is
    // rescaled (one exp2 rounding) at every step.
    let x = sorted(4096, 8192, -1.0, 1e-4);
    for b in fast_backends() {
        check_row_ops(
            b,
            x.view(),
            1.0,
            &format!("{} [4096, 8192] sorted", b.name()),
        );
        check_ce(b, &x, &format!("{} [4096, 8192] sorted", b.name()));
    }
}

#[test]
fn sorted_rows() {
    for b in fast_backends() {
        for &cols in &COLS {
            for (start, step) in [(0.0f32, 1e-4f32), (-3.0, 1e-3), (50.0, -1e-3), (0.0, 1e-6)] {
                let x = sorted(2, cols, start, step);
                let what = format!("{} [2, {cols}] sorted {start}+{step}j", b.name());
                check_row_ops(b, x.view(), 1.0, &what);
                check_ce(b, &x, &what);
            }
        }
    }
}
