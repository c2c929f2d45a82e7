//! The power-mean max `(Σ x_j^p)^{1/p}` on every backend: against its f64 definition
//! (`surrogates::smoothings::power_max`, whose bounds, limit and gradient its unit tests check
//! against finite differences; tools/smoothing_check.py checks it against a literal
//! float64 evaluation outside the project) on generated rows and on the edges of its domain;
//! its bounds, limits and homogeneity on every backend; long rows; any shape; device scores
//! outside the domain; bad inputs; the CLI.

mod common;

use common::surrogates::{assert_power_close, nonneg};
use common::{assert_close_1d, fast_backends, gpu, tol};
use ndarray::{Array1, Array2, ArrayD, IxDyn};
use proptest::prelude::*;
use smoothmax::surrogates::reference::surrogate_f64;
use smoothmax::{Backend, Error, Surrogate, Value};

fn call(x: &Array2<f32>, p: f32) -> Surrogate<'_> {
    Surrogate::PowerMax { x: x.view(), p }
}

fn check_all(x: &Array2<f32>, p: f32, what: &str) {
    let want = surrogate_f64(&call(x, p)).unwrap();
    for b in fast_backends() {
        let got = b
            .surrogate(&call(x, p))
            .unwrap_or_else(|e| panic!("{what} on {}: {e}", b.name()));
        assert_power_close(&got, &want, p, &format!("{what} on {}", b.name()));
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: common::proptest_cases(32),
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_backend_matches_the_definition(
        rows in 0usize..5, cols in 1usize..300, scale in prop_oneof![1e-3f64..1.0, 1.0f64..1e3],
        p in prop_oneof![Just(1.0f32), 1.0f32..3.0, 3.0f32..100.0, 100.0f32..1e6],
        seed in any::<u64>(),
    ) {
        check_all(&nonneg(rows, cols, scale, seed), p, &format!("p = {p}"));
    }
}

/// Rows at the edges of the domain (zeros, −0, ties, subnormals, 40 decades in one row, the
/// largest finite values, a single non-zero) at powers from 1 to `f32::MAX`.
#[test]
fn edge_rows_match_the_definition() {
    let max = f32::MAX;
    let rows: [[f32; 6]; 8] = [
        [0.0; 6],
        [-0.0, 0.0, 1.0, 0.0, 0.0, 0.0],
        [5.0; 6],
        [1e-45, 3e-39, 1e-40, 0.0, 1e-45, 2e-38],
        [1e-40, 1.0, 1e30, 0.5, 1e-20, 3.0],
        [max, max, 1.0, 0.0, 1e38, 0.0],
        [0.0, 0.0, 0.0, 0.0, 0.0, 7.0],
        [
            1.0,
            1.0 - f32::EPSILON / 2.0,
            1.0 - f32::EPSILON,
            0.999,
            0.5,
            0.25,
        ],
    ];
    let x = Array2::from_shape_fn((rows.len(), 6), |(i, j)| rows[i][j]);
    let ps = [1.0, 1.0 + f32::EPSILON, 1.5, 2.0, 7.5, 1e3, 1e7, 1e30, max];
    for p in ps {
        check_all(&x, p, &format!("edge rows, p = {p}"));
    }
    // One column, and none (the max of nothing is 0).
    let one = Array2::from_shape_fn((3, 1), |(i, _)| [0.0, 2.5, 1e-44][i]);
    let none = Array2::<f32>::zeros((3, 0));
    for p in [1.0, 3.0, 1e20] {
        check_all(&one, p, &format!("C = 1, p = {p}"));
        check_all(&none, p, &format!("C = 0, p = {p}"));
        for b in fast_backends() {
            let v = b.surrogate(&call(&none, p)).unwrap().value;
            assert_eq!(v.to_vec(), vec![0.0; 3], "C = 0 on {}", b.name());
        }
    }
}

/// Ties at huge powers: the gradient of `k` tied maxima is `k^{−(p−1)/p} → 1/k`, exactly
/// where the general tolerance (which grows with `p`) says nothing, and no other entry
/// counts. (On the GPU `1/p` is subnormal above 2¹²⁶; the clamps come from the host.)
#[test]
fn ties_at_huge_powers() {
    let x = ndarray::array![[5.0f32, 5.0, 1.0, 0.0], [3.0, 3.0, 3.0, 2.999_999_8]];
    let want = [[0.5, 0.5, 0.0, 0.0], [1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0, 0.0]];
    for p in [1e30f32, 1e38, f32::MAX] {
        for b in fast_backends() {
            let (v, g) = per_row(*b, &x, p);
            let name = b.name();
            assert!(
                (v[0] - 5.0).abs() <= 4.0 * f32::EPSILON * 5.0,
                "{name}: p = {p}: {v:?}"
            );
            assert!(
                (v[1] - 3.0).abs() <= 4.0 * f32::EPSILON * 3.0,
                "{name}: p = {p}: {v:?}"
            );
            for (i, row) in want.iter().enumerate() {
                for (j, &w) in row.iter().enumerate() {
                    let got = g[[i, j]] as f64;
                    assert!(
                        (got - w).abs() <= 4.0 * f32::EPSILON as f64,
                        "{name}: p = {p}: grad [{i}, {j}] = {got}, want {w}"
                    );
                }
            }
        }
    }
}

fn per_row(b: &dyn Backend, x: &Array2<f32>, p: f32) -> (Vec<f32>, Array2<f32>) {
    let out = b.surrogate(&call(x, p)).unwrap();
    match out.value {
        Value::PerRow(v) => (v.to_vec(), out.grad),
        v => panic!("power max gave {v:?}"),
    }
}

/// On every backend, without the reference: `max ≤ f ≤ C^{1/p}·max`, `f` non-increasing in
/// `p`, the sum at `p = 1` and the max as `p → ∞`, gradients in `[0, 1]`, and Euler's
/// identity for a 1-homogeneous function, `Σ_j x_j·∂f/∂x_j = f`.
#[test]
fn bounds_limits_and_homogeneity_on_every_backend() {
    let (rows, cols) = (6, 257);
    let x = nonneg(rows, cols, 10.0, 5);
    let t = tol(cols);
    for b in fast_backends() {
        let name = b.name();
        let mut last: Option<Vec<f32>> = None;
        for p in [1.0f32, 1.5, 2.0, 4.0, 16.0, 256.0, 4096.0, 1e30] {
            let (v, g) = per_row(*b, &x, p);
            for i in 0..rows {
                let row = x.row(i);
                let m = row.iter().copied().fold(0.0, f32::max) as f64;
                let f = v[i] as f64;
                let top = (cols as f64).powf(1.0 / p as f64) * m;
                assert!(
                    f >= m * (1.0 - t) && f <= top * (1.0 + t),
                    "{name}: p = {p}, row {i}"
                );
                if let Some(prev) = &last {
                    assert!(
                        f <= prev[i] as f64 * (1.0 + t),
                        "{name}: p = {p} above the last p"
                    );
                }
                if p == 1.0 {
                    let sum: f64 = row.iter().map(|&v| v as f64).sum();
                    assert!((f - sum).abs() <= t * sum, "{name}: p = 1 is not the sum");
                }
                if p == 1e30 {
                    assert!((f - m).abs() <= t * m, "{name}: p = 1e30 is not the max");
                }
                let gi = g.row(i);
                assert!(
                    gi.iter().all(|&d| (0.0..=1.0).contains(&d)),
                    "{name}: gradient range"
                );
                let euler: f64 = gi.iter().zip(row).map(|(&d, &v)| d as f64 * v as f64).sum();
                let slack = t * (1.0 + p as f64) * f;
                assert!(
                    (euler - f).abs() <= slack,
                    "{name}: p = {p}: Σ x·g = {euler}, f = {f}"
                );
            }
            last = Some(v);
        }
    }
}

/// Rows long enough for many invocations per row, and many short rows.
#[test]
fn long_rows_and_many_rows() {
    check_all(&nonneg(3, 200_003, 2.0, 7), 3.0, "[3, 200003]");
    check_all(&nonneg(2000, 37, 2.0, 8), 50.0, "[2000, 37]");
}

#[test]
fn any_shape_on_every_backend() {
    let x = nonneg(6, 5, 1.0, 9);
    let nd = ArrayD::from_shape_vec(IxDyn(&[2, 3, 5]), x.iter().copied().collect()).unwrap();
    let want = surrogate_f64(&call(&x, 2.5)).unwrap();
    for b in fast_backends() {
        let c = Surrogate::PowerMax {
            x: smoothmax::TensorView::from(nd.view()),
            p: 2.5,
        };
        let got = b.surrogate_tensor(&c, None).unwrap();
        assert_eq!(got.value.shape(), vec![2, 3], "{}", b.name());
        let v = Array1::from(got.value.to_vec());
        assert_close_1d(
            v.view(),
            Array1::from(want.value.to_vec()).view(),
            5,
            b.name(),
        );
        assert_eq!(got.grad.shape(), &[2, 3, 5], "{}", b.name());
    }
}

/// Host scores outside the domain are errors naming the element; device scores cannot be
/// checked before the kernel, which makes such a row NaN and leaves the others exact.
#[test]
fn scores_outside_the_domain() {
    let x = ndarray::array![
        [1.0f32, 2.0, 3.0],
        [1.0, -1e-30, 0.0],
        [f32::NAN, 1.0, 0.0],
        [f32::INFINITY, 0.0, 1.0],
        [-0.0, 4.0, 0.5]
    ];
    let mut backends: Vec<&dyn Backend> = fast_backends().into_iter().copied().collect();
    backends.push(&smoothmax::Reference);
    for b in backends {
        match b.surrogate(&call(&x, 2.0)) {
            Err(Error::InvalidInput(m)) => {
                assert!(m.contains("x[1, 1] = -0.000"), "{}: {m}", b.name())
            }
            other => panic!("{}: {other:?}", b.name()),
        }
    }
    let Some(g) = gpu() else { return };
    let d = g.upload(x.view()).unwrap();
    let got = g.call(Surrogate::PowerMax { x: &d, p: 2.0 }).run().unwrap();
    let v = got.value.to_vec();
    let good = ndarray::array![[1.0f32, 2.0, 3.0], [0.0, 4.0, 0.5]];
    let want = surrogate_f64(&call(&good, 2.0)).unwrap();
    let w = want.value.to_vec();
    for (i, k) in [(0, 0), (4, 1)] {
        assert!(
            (v[i] as f64 - w[k]).abs() <= tol(3) * w[k],
            "row {i}: {} vs {}",
            v[i],
            w[k]
        );
        for (&g, &r) in got.grad.row(i).iter().zip(want.grad.row(k)) {
            assert!(
                (g as f64 - r).abs() <= tol(3) * 3.0,
                "row {i}: grad {g} vs {r}"
            );
        }
    }
    for (i, vi) in v.iter().enumerate().take(4).skip(1) {
        assert!(vi.is_nan(), "row {i}: {vi}");
        assert!(got.grad.row(i).iter().all(|g| g.is_nan()), "row {i}");
    }
}

#[test]
fn bad_powers_are_errors_on_every_backend() {
    let x = nonneg(2, 3, 1.0, 1);
    let mut backends: Vec<&dyn Backend> = fast_backends().into_iter().copied().collect();
    backends.push(&smoothmax::Reference);
    for b in backends {
        for p in [0.999, 0.0, -2.0, f32::NAN, f32::INFINITY] {
            match b.surrogate(&call(&x, p)) {
                Err(Error::InvalidInput(m)) => {
                    assert!(m.contains("p must be finite and >= 1"), "{}: {m}", b.name())
                }
                other => panic!("{} at p = {p}: {other:?}", b.name()),
            }
        }
    }
}

/// `smoothmax eval power-max` on every device against the library's reference, and its bad
/// inputs.
#[cfg(feature = "cli")]
mod cli {
    use super::common::cli::{assert_rejected, devices, eval, scratch};
    use super::common::surrogates::{assert_power_close, nonneg};
    use ndarray::{Array1, Array2, ArrayD};
    use ndarray_npy::{read_npy, write_npy};
    use smoothmax::surrogates::reference::surrogate_f64;
    use smoothmax::{Surrogate, SurrogateOutput, Value};

    #[test]
    fn power_max_on_every_device() {
        let dir = scratch("power-max");
        let x = nonneg(7, 11, 3.0, 4);
        write_npy(dir.join("x.npy"), &x).unwrap();
        write_npy(dir.join("neg.npy"), &ndarray::array![[1.0f32, -2.0]]).unwrap();
        let want = surrogate_f64(&Surrogate::PowerMax {
            x: x.view(),
            p: 4.5,
        })
        .unwrap();
        for dev in devices() {
            let out = dir.join(format!("out-{dev}"));
            let o = eval(
                "power-max",
                &dir.join("x.npy"),
                &["--p", "4.5", "--device", dev],
                &out,
            );
            assert!(
                o.status.success(),
                "{dev}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            let v: ArrayD<f32> = read_npy(out.join("output.npy")).unwrap();
            let grad: Array2<f32> = read_npy(out.join("grad.npy")).unwrap();
            assert_eq!(v.shape(), &[7], "{dev}");
            let got = SurrogateOutput {
                value: Value::PerRow(Array1::from_iter(v.iter().copied())),
                grad,
                grad_b: None,
                sums: None,
            };
            assert_power_close(&got, &want, 4.5, &format!("CLI on {dev}"));
        }
        let x = dir.join("x.npy");
        let x = x.to_str().unwrap();
        let neg = dir.join("neg.npy");
        let neg = neg.to_str().unwrap();
        let out = dir.join("bad");
        for (args, needle) in [
            (vec!["eval", "power-max", "--input", x], "--p <P>"),
            (
                vec!["eval", "power-max", "--input", x, "--p", "0.5"],
                "p must be finite and >= 1",
            ),
            (
                vec!["eval", "power-max", "--input", neg, "--p", "2"],
                "x[0, 1] = -2",
            ),
        ] {
            assert_rejected(&args, &[], needle, &out);
        }
    }
}
