//! Every row of the non-finite table in the crate docs, on every backend (reference included),
//! at several row lengths so each case also runs through the vec4, scalar, fused and split
//! kernels. Expected values are PyTorch's results, written out by hand here.

mod common;

use common::fast_backends;
use ndarray::Array2;
use smoothmax::{Backend, Reference};

const NEG: f32 = f32::NEG_INFINITY;
const POS: f32 = f32::INFINITY;
const NAN: f32 = f32::NAN;

/// What a case expects; `Finite` rows are checked against the reference separately.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// logsumexp −inf, softmax and log-softmax NaN everywhere.
    AllNegInf,
    /// logsumexp +inf, the rest NaN.
    PosInf,
    /// NaN everywhere.
    Nan,
    /// Finite logsumexp; exactly 0 / −inf at the −inf positions.
    SomeNegInf,
}

fn all_backends() -> Vec<&'static &'static dyn Backend> {
    let mut v = fast_backends();
    v.push(common::sized(&Reference));
    v
}

/// Builds a row of length `cols` (filler `fill`) with `special` written at `positions`.
fn row(cols: usize, fill: f32, special: &[(usize, f32)]) -> Vec<f32> {
    let mut r: Vec<f32> = (0..cols).map(|j| fill + (j % 7) as f32 * 0.25).collect();
    for &(p, v) in special {
        r[p % cols] = v;
    }
    r
}

fn cases(cols: usize) -> Vec<(Vec<f32>, Expect, &'static str)> {
    let last = cols - 1;
    let mid = cols / 2;
    let some_neg = if cols >= 3 {
        vec![(0, NEG), (last, NEG)]
    } else {
        vec![(0, NEG)]
    };
    vec![
        (vec![NEG; cols], Expect::AllNegInf, "all -inf"),
        // −inf at both ends when there is room for a finite value between them.
        (row(cols, 0.0, &some_neg), Expect::SomeNegInf, "some -inf"),
        (row(cols, 0.0, &[(mid, POS)]), Expect::PosInf, "one +inf"),
        (
            row(cols, 0.0, &[(0, POS), (last, NEG)]),
            Expect::PosInf,
            "+inf and -inf",
        ),
        (vec![POS; cols], Expect::PosInf, "all +inf"),
        (row(cols, 0.0, &[(last, NAN)]), Expect::Nan, "one NaN"),
        (
            row(cols, 0.0, &[(0, NAN), (mid, POS)]),
            Expect::Nan,
            "NaN and +inf",
        ),
        (
            row(cols, 0.0, &[(0, NEG), (mid, NAN)]),
            Expect::Nan,
            "NaN and -inf",
        ),
    ]
}

#[test]
fn non_finite_table_rows() {
    for b in all_backends() {
        // 1 and 2: scalar tails; 8: vec4; 4099: scalar, several lanes; 40000 (with B = 1):
        // split over several workgroups per row.
        for cols in [1usize, 2, 8, 4099, 40_000] {
            for (values, expect, name) in cases(cols) {
                if cols == 1 && name.contains(" and ") | matches!(expect, Expect::SomeNegInf) {
                    continue; // a 1-element row holds only one special value
                }
                let x = Array2::from_shape_vec((1, cols), values.clone()).unwrap();
                let what = format!("{} C={cols} {name}", b.name());
                let lse = b.logsumexp(x.view(), 1.0).unwrap()[0];
                let sm = b.softmax(x.view(), 1.0).unwrap();
                let lsm = b.log_softmax(x.view(), 1.0).unwrap();
                match expect {
                    Expect::AllNegInf | Expect::PosInf | Expect::Nan => {
                        match expect {
                            Expect::AllNegInf => assert_eq!(lse, NEG, "{what}: logsumexp"),
                            Expect::PosInf => assert_eq!(lse, POS, "{what}: logsumexp"),
                            _ => assert!(lse.is_nan(), "{what}: logsumexp {lse}"),
                        }
                        assert!(sm.iter().all(|v| v.is_nan()), "{what}: softmax not all NaN");
                        assert!(
                            lsm.iter().all(|v| v.is_nan()),
                            "{what}: log_softmax not all NaN"
                        );
                    }
                    Expect::SomeNegInf => {
                        assert!(lse.is_finite(), "{what}: logsumexp {lse}");
                        for (j, &v) in values.iter().enumerate() {
                            if v == NEG {
                                assert_eq!(sm[[0, j]], 0.0, "{what}: softmax[{j}]");
                                assert_eq!(lsm[[0, j]], NEG, "{what}: log_softmax[{j}]");
                            } else {
                                assert!(
                                    sm[[0, j]] > 0.0 && lsm[[0, j]].is_finite(),
                                    "{what}: [{j}]"
                                );
                            }
                        }
                        let total: f64 = sm.iter().map(|&v| v as f64).sum();
                        assert!(
                            (total - 1.0).abs() < 1e-4,
                            "{what}: softmax sums to {total}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn empty_rows_and_empty_batches() {
    for b in all_backends() {
        let x = Array2::<f32>::zeros((5, 0));
        assert!(
            b.logsumexp(x.view(), 1.0)
                .unwrap()
                .iter()
                .all(|&v| v == NEG),
            "{}",
            b.name()
        );
        assert_eq!(b.softmax(x.view(), 1.0).unwrap().dim(), (5, 0));
        assert_eq!(b.log_softmax(x.view(), 2.0).unwrap().dim(), (5, 0));
        let x = Array2::<f32>::zeros((0, 9));
        assert_eq!(b.logsumexp(x.view(), 1.0).unwrap().len(), 0);
        assert_eq!(b.softmax(x.view(), 1.0).unwrap().dim(), (0, 9));
    }
}

#[test]
fn huge_finite_values() {
    for b in all_backends() {
        for cols_pad in [0usize, 6] {
            // (1e30, 0) padded with −inf to reach the vec4 path too.
            let mut v = vec![1e30f32, 0.0];
            v.extend(std::iter::repeat_n(NEG, cols_pad));
            let x = Array2::from_shape_vec((1, v.len()), v).unwrap();
            let what = format!("{} (1e30, 0) + {cols_pad} -inf", b.name());
            assert_eq!(b.logsumexp(x.view(), 1.0).unwrap()[0], 1e30, "{what}");
            let sm = b.softmax(x.view(), 1.0).unwrap();
            assert_eq!((sm[[0, 0]], sm[[0, 1]]), (1.0, 0.0), "{what}");
            let lsm = b.log_softmax(x.view(), 1.0).unwrap();
            assert_eq!((lsm[[0, 0]], lsm[[0, 1]]), (0.0, -1e30), "{what}");
            // The extremes of f32 stay finite too.
            let x = ndarray::array![[f32::MAX, f32::MAX, -f32::MAX]];
            let lse = b.logsumexp(x.view(), 1.0).unwrap()[0];
            assert_eq!(lse, f32::MAX, "{} f32::MAX row", b.name());
        }
    }
}

#[test]
fn bad_temperatures_are_errors() {
    let x = ndarray::array![[1.0f32, 2.0]];
    for b in all_backends() {
        for t in [0.0f32, -1.0, NAN, POS, NEG] {
            let e = b.softmax(x.view(), t).unwrap_err();
            assert!(
                matches!(e, smoothmax::Error::BadTemperature(_)),
                "{}: T={t}: {e}",
                b.name()
            );
            assert!(b.logsumexp(x.view(), t).is_err());
        }
    }
}
