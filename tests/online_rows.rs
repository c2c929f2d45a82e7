//! The CPU's passes take each row's statistics in one read, 1024 elements at a time, raising
//! the running max block by block and rescaling the sum so far (src/cpu/rows.rs `online`,
//! `row_stats`, `softmax_row`; src/cpu/ce_stats.rs `stats_online`), softmax and the
//! cross-entropy gradient storing each run of blocks' terms against its own max. Rows here are built so that the max rises in every
//! block, by small steps and by steps that underflow the rescaling, falls, or sits in the
//! last block; −inf fills whole blocks; NaN and +inf sit in different blocks; rows span more
//! than `f32::MAX`; widths leave a partial last block and a tail shorter than a vector.
//! The read-only passes (logsumexp, the loss-only cross-entropy) of the AVX-512 and AVX2
//! builds first sum a block against the running max without reading its max
//! (`rows::online`'s guess) and keep that sum where it shows the guess held: rows here keep
//! it with terms up to `2^12` above the reference, send it back
//! (a block risen past the bound, NaN, +inf, a −inf under a linear sum) in the first block and
//! in later ones (src/cpu/guess_tests.rs counts which blocks do which on such rows).
//! Every fast backend (the CPU build under test) against the f64 reference: logsumexp,
//! softmax, log-softmax, and the cross-entropy with every option that adds a linear sum,
//! with and without the gradient.

mod common;

use common::{
    assert_ce_close, assert_close_1d, assert_lse_close, check_row_ops, fast_backends, Rng,
};
use ndarray::{Array1, Array2};
use smoothmax::{Backend, CrossEntropyOptions, Reduction, Reference, Targets};

const NEG: f32 = f32::NEG_INFINITY;

/// The widths: around one block, a partial last block, several blocks with a tail of 7.
const WIDTHS: [usize; 6] = [1023, 1024, 1025, 2047, 3000, 5127];

/// Rows shorter than a block, around the SIMD loops' groups (16 in the AVX2 build, 32 in the
/// AVX-512 one): shorter than a group (a padded copy), and longer with every kind of tail (the
/// row's last group read in place, overlapping), for the cross-entropy test.
const SHORT: [usize; 9] = [1, 5, 15, 16, 17, 31, 33, 40, 100];

/// Rows whose max moves between blocks, all finite except whole −inf blocks.
fn finite_rows(cols: usize) -> Array2<f32> {
    let mut rng = Rng(cols as u64);
    let rows: Vec<Vec<f32>> = vec![
        // Rising by a little in every element, so in every block.
        (0..cols).map(|j| j as f32 * 0.01).collect(),
        // Falling: the first block holds the max.
        (0..cols).map(|j| -(j as f32) * 0.01).collect(),
        // Rising by 50 per block: each rescaling is e^{-50}.
        (0..cols)
            .map(|j| (j / 1024) as f32 * 50.0 + rng.unit() as f32)
            .collect(),
        // Rising by 800 per block: the earlier sum underflows to 0 in the rescaling.
        (0..cols).map(|j| (j / 1024) as f32 * 800.0).collect(),
        // The max alone in the last element.
        (0..cols)
            .map(|j| {
                if j + 1 == cols {
                    30.0
                } else {
                    rng.normal() as f32
                }
            })
            .collect(),
        // Guessed and kept: values in [−4, 4), the first 32's max 3.912, block 1 risen by 3
        // (terms up to 2^4.4 against the guess, the block's sum 2^11.4), and one value 8
        // above the first 32's max in the first block (a term of 2^11.5).
        (0..cols)
            .map(|j| {
                let v = ((j * 7919 + 500) % 1000) as f32 / 125.0 - 4.0;
                if j == 500 {
                    3.912 + 8.0
                } else if (1024..2048).contains(&j) {
                    v + 3.0
                } else {
                    v
                }
            })
            .collect(),
        // A first block of −inf, then values.
        (0..cols)
            .map(|j| if j < 1024 { NEG } else { rng.normal() as f32 })
            .collect(),
        // −inf everywhere but the last element.
        (0..cols)
            .map(|j| if j + 1 == cols { -5.0 } else { NEG })
            .collect(),
        // At the fused linear loops' bound (`lin_terms::Linear::fits`: |x| + |m| ≤ 2^120): the
        // max 2^119 first, then −2^119, so t = x − m = −2^120 and a lane's partial sum of
        // these terms reaches −2^126.
        (0..cols)
            .map(|j| {
                if j == 0 {
                    2f32.powi(119)
                } else {
                    -(2f32.powi(119))
                }
            })
            .collect(),
        // Just past it: |x| + |m| = 1.5·2^120, the separate loops.
        (0..cols)
            .map(|j| {
                if j == 0 {
                    1.5 * 2f32.powi(119)
                } else {
                    -1.5 * 2f32.powi(119)
                }
            })
            .collect(),
        // Spanning 2·f32::MAX: −3e38 in the first block, +3e38 in the last.
        (0..cols)
            .map(|j| {
                if j < 1024 {
                    -3e38
                } else {
                    3e38 - j as f32 * 1e31
                }
            })
            .collect(),
    ];
    Array2::from_shape_fn((rows.len(), cols), |(i, j)| rows[i][j])
}

/// Logsumexp, and softmax and log-softmax, whose statistics come from the same one read
/// (softmax scaling each run of blocks summed against one max by its own factor).
#[test]
fn row_ops_of_rows_whose_max_moves_between_blocks() {
    for cols in WIDTHS {
        let x = finite_rows(cols);
        for t in [1.0f32, 0.25, 3.0, 1e38] {
            for b in fast_backends() {
                let what = format!("{} [{cols}] T = {t}", b.name());
                check_row_ops(*b, x.view(), t, &what);
            }
        }
    }
}

/// NaN and +inf in blocks other than the first: the row is NaN whichever block holds the
/// NaN, +inf where there is no NaN, whatever finite or −inf values come before.
#[test]
fn nan_and_infinity_in_later_blocks_decide_the_row() {
    let nan = f32::NAN;
    let cols = 3000;
    let row = |special: &[(usize, f32)]| {
        let mut r: Vec<f32> = (0..cols).map(|j| (j % 13) as f32 * 0.5).collect();
        for &(p, v) in special {
            r[p] = v;
        }
        r
    };
    let cases: Vec<(Vec<f32>, f32)> = vec![
        (row(&[(5, f32::INFINITY), (2500, nan)]), nan),
        (row(&[(5, nan), (2500, f32::INFINITY)]), nan),
        (row(&[(2999, f32::INFINITY)]), f32::INFINITY),
        (row(&[(2048, nan)]), nan),
        // In the first block, past its first 32 values (from which the guess is taken).
        (row(&[(100, nan)]), nan),
        (row(&[(700, f32::INFINITY)]), f32::INFINITY),
        (
            row(&[(0, NEG), (1500, f32::INFINITY), (2999, NEG)]),
            f32::INFINITY,
        ),
    ];
    for (r, want) in cases {
        let x = Array2::from_shape_vec((1, cols), r).unwrap();
        for b in fast_backends() {
            let got = b.logsumexp(x.view(), 1.0).unwrap()[0];
            assert!(
                got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                "{}: {got}, want {want}",
                b.name()
            );
            // Softmax and log-softmax: the row's every element NaN, as the reference.
            check_row_ops(*b, x.view(), 1.0, &format!("{} special", b.name()));
            let y = Array1::from_elem(1, 3i64);
            let o = CrossEntropyOptions {
                label_smoothing: 0.1,
                reduction: Reduction::None,
                ..Default::default()
            };
            let out = b
                .cross_entropy(x.view(), Targets::classes(y.view()), &o)
                .unwrap();
            let refr = Reference
                .cross_entropy_f64(x.view(), Targets::classes(y.view()), &o)
                .unwrap();
            assert_ce_close(&out, &refr, cols, 1.0, &format!("{} ce", b.name()));
        }
    }
}

/// The forward-only cross-entropy (one read per row) against the reference, with the options
/// that add a linear sum (smoothing, with and without class weights; probability targets,
/// and signed ones: a weight below 0 would turn a padded lane's −inf term into +inf, which
/// the vector tail's `k̂ = 0` there turns into NaN, dropped by position) and without, and
/// with
/// softcap and z-loss; and the same call with the gradient (terms stored, each run of blocks'
/// against its own max, scaled by its own factor; two passes for rows of one block), so both
/// forms are held to the same reference.
#[test]
fn cross_entropy_forward_on_rows_whose_max_moves_between_blocks() {
    for cols in WIDTHS.into_iter().chain(SHORT) {
        let x = finite_rows(cols);
        let rows = x.nrows();
        let mut rng = Rng(7 + cols as u64);
        let y = Array1::from_shape_fn(rows, |i| (i * 997 % cols) as i64);
        let w = Array1::from_shape_fn(cols, |_| (0.25 + rng.unit()) as f32);
        let q = {
            let mut q = Array2::from_shape_fn((rows, cols), |_| rng.unit() as f32);
            for mut r in q.rows_mut() {
                let s: f32 = r.sum();
                r.mapv_inplace(|v| v / s);
            }
            q
        };
        let q_signed = Array2::from_shape_fn((rows, cols), |_| (rng.unit() - 0.4) as f32);
        for gradient in [false, true] {
            let base = CrossEntropyOptions {
                reduction: Reduction::None,
                gradient,
                ..Default::default()
            };
            let options = [
                ("plain", base.clone(), None),
                (
                    "smoothing",
                    CrossEntropyOptions {
                        label_smoothing: 0.1,
                        ..base.clone()
                    },
                    None,
                ),
                (
                    "smoothing + weights",
                    CrossEntropyOptions {
                        label_smoothing: 0.2,
                        weight: Some(w.view()),
                        ..base.clone()
                    },
                    None,
                ),
                ("probabilities", base.clone(), Some(&q)),
                ("signed probabilities", base.clone(), Some(&q_signed)),
                (
                    "softcap + z-loss",
                    CrossEntropyOptions {
                        softcap: Some(40.0),
                        z_loss: 1e-3,
                        label_smoothing: 0.1,
                        ..base.clone()
                    },
                    None,
                ),
            ];
            for (name, o, probs) in options {
                let t = match probs {
                    Some(q) => Targets::probabilities(q.view()),
                    None => Targets::classes(y.view()),
                };
                let want = Reference
                    .cross_entropy_f64(x.view(), t.clone(), &o)
                    .unwrap();
                for b in fast_backends() {
                    let got = b.cross_entropy(x.view(), t.clone(), &o).unwrap();
                    let what = format!("{} [{cols}] {name} gradient {gradient}", b.name());
                    assert_ce_close(&got, &want, cols, 1.0, &what);
                }
            }
        }
    }
}

/// The same rows in bf16 (a half row is loaded 32 elements at a time in an order of the
/// load's choosing, and its tail is padded): the forward-only and the gradient call with
/// smoothing against the reference on the rows as bf16 holds them.
#[test]
fn bf16_cross_entropy_on_rows_whose_max_moves_between_blocks() {
    for cols in WIDTHS {
        let x = finite_rows(cols).mapv(half::bf16::from_f32);
        let wide = x.mapv(|v| v.to_f32());
        let y = Array1::from_shape_fn(x.nrows(), |i| (i * 991 % cols) as i64);
        for gradient in [false, true] {
            let o = CrossEntropyOptions {
                label_smoothing: 0.1,
                reduction: Reduction::None,
                gradient,
                ..Default::default()
            };
            let t = Targets::classes(y.view());
            let want = Reference
                .cross_entropy_f64(wide.view(), t.clone(), &o)
                .unwrap();
            for b in fast_backends() {
                let got = b.cross_entropy(x.view(), t.clone(), &o).unwrap();
                let what = format!("{} bf16 [{cols}] gradient {gradient}", b.name());
                assert_close_1d(
                    got.lse.view(),
                    want.lse.view(),
                    cols,
                    &format!("{what}: lse"),
                );
                match &got.loss {
                    smoothmax::Loss::PerRow(l) => {
                        assert_close_1d(l.view(), want.per_row.view(), cols, &what)
                    }
                    _ => panic!("{what}: per-row loss expected"),
                }
            }
        }
    }
}

/// Every exponent form (`crate::scale`: `T < 1` halves, `T > 1`, subnormal temperatures and
/// the window where `c·log₂e` overflows f32) across blocks: rows that rise by `T` per block,
/// so every block rescales the sum by `e^{−1}` (a wrong `κ` in the rescaling shows), and rows
/// whose max sits in the first block.
#[test]
fn logsumexp_across_blocks_at_every_temperature_form() {
    let cols = 5127;
    for t in [1e-40f32, 3e-39, 0.25, 3.0, 1e30] {
        let rising = (0..cols).map(|j| ((j / 1024) as f32 + (j % 3) as f32 * 0.25) * t);
        let falling = (0..cols).map(|j| -(((j / 1024) as f32 + (j % 5) as f32 * 0.125) * t));
        let data: Vec<f32> = rising.chain(falling).collect();
        let x = Array2::from_shape_vec((2, cols), data).unwrap();
        let want = Reference.logsumexp_f64(x.view(), t).unwrap();
        for b in fast_backends() {
            let got = b.logsumexp(x.view(), t).unwrap();
            let what = format!("{} T = {t:e}", b.name());
            assert_lse_close(got.view(), want.view(), cols, t, &what);
        }
    }
}

/// A −inf logit in a later block with a probability target of each sign there (the −inf
/// kinds of `ce_stats::neg_kinds`, their columns offset by the block): as in PyTorch, a zero
/// target gives `0·(−inf)` = NaN, a positive one +inf, a negative one −inf.
#[test]
fn negative_infinity_kinds_in_later_blocks() {
    let cols = 3000;
    let mut x = Array2::from_shape_fn((6, cols), |(i, j)| ((i * 13 + j * 7) % 11) as f32 * 0.5);
    let mut q = Array2::from_elem((6, cols), 1.0 / cols as f32);
    for (i, j, qv) in [
        (0, 1500, 0.0f32),
        (1, 1500, 0.01),
        (2, 1500, -0.01),
        (3, 2500, 0.02),
        // In the first block, past the 32 values the guess is taken from.
        (4, 200, 0.01),
        // In the last block's vector tail, whose other lanes are padding.
        (5, 2999, 0.01),
    ] {
        x[[i, j]] = NEG;
        q[[i, j]] = qv;
    }
    for gradient in [false, true] {
        let o = CrossEntropyOptions {
            reduction: Reduction::None,
            gradient,
            ..Default::default()
        };
        let t = Targets::probabilities(q.view());
        let want = Reference
            .cross_entropy_f64(x.view(), t.clone(), &o)
            .unwrap();
        // The cases are the ones meant: the reference gives each its kind.
        let kinds: Vec<f64> = want.per_row.iter().map(|v| v.signum()).collect();
        assert!(
            kinds[0].is_nan() && kinds[1..] == [1.0, -1.0, 1.0, 1.0, 1.0],
            "{:?}",
            want.per_row
        );
        assert!(want.per_row.iter().skip(1).all(|v| v.is_infinite()));
        for b in fast_backends() {
            let got = b.cross_entropy(x.view(), t.clone(), &o).unwrap();
            let what = format!("{} gradient {gradient}", b.name());
            assert_ce_close(&got, &want, cols, 1.0, &what);
        }
    }
}

/// The guess at its accuracy edge (src/cpu/guess_tests.rs shows these rows keep it): the first
/// 32 values at −8 (the first block's reference), one 0 (a term of `e^8`, near the kept sums'
/// bound `2^12`), the rest at −60, so that the logsumexp is near 0 and its tolerance near its
/// least; at `T = 1` and, with every value times 3, `T = 3`. The cross-entropy with smoothing
/// on the `T = 1` rows, the targets the 0 (a loss near 0) and one at −8.
#[test]
fn guessed_rows_at_the_accuracy_edge() {
    for cols in [64, 3000] {
        for t in [1.0f32, 3.0] {
            let row: Vec<f32> = (0..cols)
                .map(|j| match j {
                    0..32 => -8.0 * t,
                    40 => 0.0,
                    _ => -60.0 * t,
                })
                .collect();
            let x = Array2::from_shape_vec((2, cols), [row.clone(), row].concat()).unwrap();
            let want = Reference.logsumexp_f64(x.view(), t).unwrap();
            let y = Array1::from_vec(vec![40i64, 5]);
            let o = CrossEntropyOptions {
                label_smoothing: 0.1,
                reduction: Reduction::None,
                ..Default::default()
            };
            let ce_want = Reference
                .cross_entropy_f64(x.view(), Targets::classes(y.view()), &o)
                .unwrap();
            for b in fast_backends() {
                let what = format!("{} [{cols}] T = {t}", b.name());
                let got = b.logsumexp(x.view(), t).unwrap();
                assert_lse_close(got.view(), want.view(), cols, t, &what);
                if t == 1.0 {
                    let got = b
                        .cross_entropy(x.view(), Targets::classes(y.view()), &o)
                        .unwrap();
                    assert_ce_close(&got, &ce_want, cols, 1.0, &format!("{what} ce"));
                }
            }
        }
    }
}
