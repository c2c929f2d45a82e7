//! The element-wise smoothings (smooth absolute value, smoothed floor) on every backend:
//! against the f64 definitions (`surrogates::smoothings`, whose gradients and bounds its unit
//! tests check against finite differences and the literal sums) on generated inputs and on
//! the edges of their range, their bounds on every backend, any shape, and bad parameters.

mod common;

use common::surrogates::*;

use common::{fast_backends, tol};
use ndarray::{Array2, ArrayD, IxDyn};
use proptest::prelude::*;
use smoothmax::surrogates::smoothings;
use smoothmax::{Backend, ElementSmoothing, Surrogate, Value};

proptest! {
    #![proptest_config(ProptestConfig {
        cases: common::proptest_cases(32),
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_backend_matches_the_definitions(
        rows in 0usize..6, cols in 1usize..70, scale in 0.01f64..50.0, seed in any::<u64>(),
        k in prop_oneof![0.001f32..1.0, 1.0f32..1000.0],
        t in prop_oneof![0.01f32..1.0, 1.0f32..4.0, 4.0f32..200.0],
    ) {
        let x = matrix(rows, cols, scale, seed);
        for op in [ElementSmoothing::Abs { k }, ElementSmoothing::Floor { t }] {
            check_all(&Surrogate::Smoothing { x: x.view(), op }, 1, op.name());
        }
    }
}

/// Values at the edges of the domain: zeros, integers and half-integers, values near 0 of
/// both signs (a tiny negative one is the floor's hardest case at large t), values past f32's
/// integer resolution, the largest finite values, infinities and NaN; with `subnormal`, also
/// subnormal values (left out against huge parameters, where k·x or t·x is of order 1 and a
/// device that flushes subnormal inputs to 0, as Vulkan allows, would rightly differ).
fn edge_values(subnormal: bool) -> Array2<f32> {
    let mut v = vec![
        0.0,
        -0.0,
        1e-7,
        1e-4,
        0.5,
        -0.5,
        1.0,
        -1.0,
        2.0,
        2.999_999_8,
        -7.25,
        1e4 + 0.25,
        16_777_217.0,
        -1e30,
        f32::MAX,
        -f32::MAX,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
    ];
    if subnormal {
        v.extend([1e-45, -3e-39]);
    }
    Array2::from_shape_fn((2, v.len()), |(i, j)| if i == 0 { v[j] } else { -v[j] })
}

#[test]
fn edges_of_the_range_match_the_definitions() {
    let tiny = f32::MIN_POSITIVE;
    for k in [tiny, 1e-20, 0.5, 1.0, 3e3, 1e20, f32::MAX] {
        let x = edge_values(k < 1e20);
        let op = ElementSmoothing::Abs { k };
        check_all(
            &Surrogate::Smoothing { x: x.view(), op },
            1,
            &format!("abs k = {k}"),
        );
    }
    let ts = [
        tiny,
        1e-20,
        0.3,
        0.999_999_9,
        1.0,
        1.000_000_1,
        4.0,
        60.0,
        1e4,
        1.5e4,
        1e7,
    ];
    for t in ts.into_iter().chain([1e20, f32::MAX]) {
        let x = edge_values(t < 1e20);
        let op = ElementSmoothing::Floor { t };
        check_all(
            &Surrogate::Smoothing { x: x.view(), op },
            1,
            &format!("floor t = {t}"),
        );
    }
}

/// The per-element values of `op` on `x` from `b`.
fn values(b: &dyn Backend, x: &Array2<f32>, op: ElementSmoothing) -> Array2<f32> {
    let r = b
        .surrogate(&Surrogate::Smoothing { x: x.view(), op })
        .unwrap();
    let Value::Matrix(v) = r.value else {
        panic!("a value per element")
    };
    v
}

#[test]
fn bounds_hold_on_every_backend() {
    let x = matrix(4, 300, 20.0, 5);
    for b in fast_backends() {
        for k in [0.01f32, 1.0, 50.0] {
            let op = ElementSmoothing::Abs { k };
            let v = values(b, &x, op);
            for (&f, &xv) in v.iter().zip(x.iter()) {
                let (a, slack) = (xv.abs() as f64, tol(1) * (1.0 + f.abs() as f64));
                let top = a + std::f64::consts::LN_2 / k as f64;
                assert!(
                    f as f64 >= a - slack && f as f64 <= top + slack,
                    "{}: {xv} {k}",
                    b.name()
                );
            }
        }
        for t in [2.0f32, 8.0, 40.0] {
            let op = ElementSmoothing::Floor { t };
            let v = values(b, &x, op);
            for (&f, &xv) in v.iter().zip(x.iter()) {
                let x64 = xv as f64;
                let d = (x64 - x64.round()).abs();
                let bound = (-(t as f64) * d).exp() / (1.0 - (-(t as f64)).exp());
                let slack = tol(1) * (1.0 + f.abs() as f64);
                let err = (f as f64 - x64.floor()).abs();
                assert!(err <= bound + slack, "{}: floor_{t}({xv}) = {f}", b.name());
            }
            // The step's midpoint at every integer.
            let ints = Array2::from_shape_fn((1, 9), |(_, j)| j as f32 - 4.0);
            let r = b
                .surrogate(&Surrogate::Smoothing { x: ints.view(), op })
                .unwrap();
            for (&f, &n) in r.value.to_vec().iter().zip(ints.iter()) {
                assert!(
                    (f - (n - 0.5)).abs() <= 4.0 * f32::EPSILON * (1.0 + n.abs()),
                    "{}",
                    b.name()
                );
            }
        }
    }
}

#[test]
fn any_shape_and_every_backend_with_the_reference() {
    let x = ArrayD::from_shape_fn(IxDyn(&[2, 3, 5]), |d| {
        (d[0] * 15 + d[1] * 5 + d[2]) as f32 * 0.37 - 5.0
    });
    let op = ElementSmoothing::Floor { t: 3.0 };
    for b in fast_backends()
        .into_iter()
        .chain([common::sized(&smoothmax::Reference)])
    {
        let r = b
            .surrogate_tensor(
                &Surrogate::Smoothing {
                    x: x.view().into(),
                    op,
                },
                None,
            )
            .unwrap();
        let Value::Matrix(v) = &r.value else {
            panic!("a value per element")
        };
        assert_eq!(v.shape(), &[2, 3, 5]);
        assert_eq!(r.grad.shape(), &[2, 3, 5]);
        for (&got, &xv) in v.iter().zip(x.iter()) {
            let want = smoothings::smooth_floor(xv as f64, 3.0).0;
            assert!(
                (got as f64 - want).abs() <= tol(1) * (1.0 + want.abs()),
                "{}",
                b.name()
            );
        }
    }
}

#[test]
fn the_smooth_abs_max_reaches_its_bound_at_equal_arguments() {
    let a = matrix(3, 50, 3.0, 9);
    for b in fast_backends()
        .into_iter()
        .chain([common::sized(&smoothmax::Reference)])
    {
        for k in [0.5f32, 4.0, 64.0, 4096.0] {
            let form = smoothmax::PairwiseForm::LogCosh { k };
            let r = b.pairwise_max(a.view(), a.view(), form).unwrap();
            let Value::Matrix(v) = r.value else {
                panic!("a value per element")
            };
            let top = std::f64::consts::LN_2 / (2.0 * k as f64);
            for (&f, &x) in v.iter().zip(a.iter()) {
                let err = (f as f64 - x as f64 - top).abs();
                assert!(
                    err <= 4.0 * f32::EPSILON as f64 * (1.0 + x.abs() as f64),
                    "{} {k}",
                    b.name()
                );
            }
            assert!(
                r.grad.iter().all(|&g| (g - 0.5).abs() < 1e-6),
                "{} {k}",
                b.name()
            );
        }
    }
}

#[test]
fn bad_parameters_are_errors_on_every_backend() {
    let x = Array2::<f32>::zeros((2, 2));
    let bad = [0.0, -1.0, 1e-39, f32::NAN, f32::INFINITY];
    for b in fast_backends()
        .into_iter()
        .chain([common::sized(&smoothmax::Reference)])
    {
        for v in bad {
            for (op, name) in [
                (ElementSmoothing::Abs { k: v }, "k"),
                (ElementSmoothing::Floor { t: v }, "t"),
            ] {
                let e = b
                    .surrogate(&Surrogate::Smoothing { x: x.view(), op })
                    .unwrap_err()
                    .to_string();
                assert!(
                    e.contains(&format!("{name} must be finite and >= 2^-126, got {v}")),
                    "{e}"
                );
            }
            let form = smoothmax::PairwiseForm::LogCosh { k: v };
            let e = b
                .pairwise_max(x.view(), x.view(), form)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(&format!("k must be finite and >= 2^-126, got {v}")),
                "{e}"
            );
        }
    }
}
