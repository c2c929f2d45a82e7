//! Fused linear cross-entropy on every backend against the f64 oracle of `common::linear`:
//! shapes that are multiples of no tile, many tiles and one, every option, half-precision
//! inputs, leading shapes, and the gradients against finite differences.

mod common;

use common::linear::{
    assert_loss, assert_within, inputs, oracle, out_rounding, Oracle, OutRounding, F32_OUT,
};
use common::Rng;
use ndarray::{Array1, Array2, ArrayView1, ArrayView2};
use smoothmax::linear_ce::linear_cross_entropy_tiled;
use smoothmax::{
    Backend, CrossEntropyOptions, DType, LinearCrossEntropyOutput, Reduction, Targets, Upstream,
};

/// Every backend under test, the reference included (it has its own tiled path).
fn backends() -> Vec<&'static &'static dyn Backend> {
    let mut v = common::fast_backends();
    v.push(common::sized(&smoothmax::Reference));
    v
}

fn classes(n: usize, v: usize, seed: u64, ignore_every: usize) -> Array1<i64> {
    let mut r = Rng(seed ^ 0x5eed);
    Array1::from_shape_fn(n, |i| {
        if ignore_every > 0 && i % ignore_every == ignore_every - 1 {
            -100
        } else {
            (r.next_u64() % v as u64) as i64
        }
    })
}

/// Checks one result against the oracle (gradients when asked for).
fn check(
    got: &LinearCrossEntropyOutput,
    or: &Oracle,
    o: &CrossEntropyOptions,
    out: OutRounding,
    what: &str,
) {
    assert_loss(&got.loss, or, o, &format!("{what}: loss"));
    let lse: Array1<f32> = got.lse.iter().copied().collect();
    assert_within(
        lse.view(),
        or.ce.lse.view(),
        or.lse_bound.view(),
        F32_OUT,
        &format!("{what}: lse"),
    );
    if !o.gradient {
        assert!(
            got.grad_hidden.is_none() && got.grad_weight.is_none(),
            "{what}: no gradient asked"
        );
        return;
    }
    let flat = |a: ndarray::ArrayViewD<f32>| a.iter().copied().collect::<Array1<f32>>();
    let dh = got.grad_hidden.as_ref().expect("grad_hidden").to_f32();
    let dw = got.grad_weight.as_ref().expect("grad_weight").to_f32();
    let f64flat = |a: &Array2<f64>| a.iter().copied().collect::<Array1<f64>>();
    assert_within(
        flat(dh.view()).view(),
        f64flat(&or.dh).view(),
        f64flat(&or.dh_bound).view(),
        out,
        &format!("{what}: grad_hidden"),
    );
    assert_within(
        flat(dw.view()).view(),
        f64flat(&or.dw).view(),
        f64flat(&or.dw_bound).view(),
        out,
        &format!("{what}: grad_weight"),
    );
    if let Some(db) = &got.grad_bias {
        assert_within(
            db.view(),
            or.db.view(),
            or.db_bound.view(),
            F32_OUT,
            &format!("{what}: grad_bias"),
        );
    }
}

/// Runs one case on every backend, whole and in tiles of `tile` classes.
fn run_case(
    h: ArrayView2<f32>,
    w: ArrayView2<f32>,
    b: Option<ArrayView1<f32>>,
    targets: Targets,
    o: &CrossEntropyOptions,
    tile: usize,
    what: &str,
) {
    let or = oracle(h, w, b, &targets, o);
    for be in backends() {
        let name = be.name();
        let got = be
            .linear_cross_entropy(h.into(), w.into(), b, targets.clone(), o)
            .unwrap_or_else(|e| panic!("{what} on {name}: {e}"));
        check(&got, &or, o, F32_OUT, &format!("{what} on {name}"));
        let want_db = b.is_some() && o.gradient;
        assert_eq!(
            got.grad_bias.is_some(),
            want_db,
            "{what} on {name}: grad_bias"
        );
        let got = linear_cross_entropy_tiled(*be, h.into(), w.into(), b, targets.clone(), o, tile)
            .unwrap_or_else(|e| panic!("{what} on {name}, tiles of {tile}: {e}"));
        check(
            &got,
            &or,
            o,
            F32_OUT,
            &format!("{what} on {name}, tiles of {tile}"),
        );
    }
}

#[test]
fn shapes_that_no_tile_divides() {
    for &(n, d, v, tile) in &[
        (1, 1, 1, 64),
        (7, 3, 1000, 64),
        (129, 65, 1000, 192),
        (1, 1024, 1000, 320),
        (9, 64, 1000, 320),
        (7, 65, 50257, 4096),
        (2, 3, 128256, 20000),
    ] {
        let (h, w, b) = inputs(n, d, v, (n * 31 + d * 7 + v) as u64);
        let y = classes(n, v, v as u64, 0);
        for bias in [false, true] {
            let o = CrossEntropyOptions {
                gradient: true,
                ..Default::default()
            };
            let what = format!("[{n}, {d}]·[{v}, {d}]ᵀ bias {bias}");
            run_case(
                h.view(),
                w.view(),
                bias.then(|| b.view()),
                Targets::classes(y.view()),
                &o,
                tile,
                &what,
            );
        }
    }
}

#[test]
fn every_option() {
    let (n, d, v) = (37, 33, 515);
    let (h, w, b) = inputs(n, d, v, 7);
    let y = classes(n, v, 3, 5);
    let mut r = Rng(11);
    let cw = Array1::from_shape_fn(v, |_| (0.25 + r.unit() * 2.0) as f32);
    let up = Array1::from_shape_fn(n, |_| (r.normal()) as f32);
    let q = {
        let raw = Array2::from_shape_fn((n, v), |_| r.unit() as f32);
        let s = raw.sum_axis(ndarray::Axis(1));
        &raw / &s.insert_axis(ndarray::Axis(1))
    };
    let base = CrossEntropyOptions {
        gradient: true,
        ..Default::default()
    };
    let cases: Vec<(&str, CrossEntropyOptions)> = vec![
        ("mean", base.clone()),
        (
            "sum",
            CrossEntropyOptions {
                reduction: Reduction::Sum,
                ..base.clone()
            },
        ),
        (
            "none, per-row upstream",
            CrossEntropyOptions {
                reduction: Reduction::None,
                upstream: Upstream::PerRow(up.clone()),
                ..base.clone()
            },
        ),
        (
            "class weights",
            CrossEntropyOptions {
                weight: Some(cw.view()),
                ..base.clone()
            },
        ),
        (
            "label smoothing",
            CrossEntropyOptions {
                label_smoothing: 0.2,
                weight: Some(cw.view()),
                ..base.clone()
            },
        ),
        (
            "z-loss",
            CrossEntropyOptions {
                z_loss: 1e-2,
                ..base.clone()
            },
        ),
        (
            "softcap",
            CrossEntropyOptions {
                softcap: Some(1.5),
                ..base.clone()
            },
        ),
        (
            "everything",
            CrossEntropyOptions {
                weight: Some(cw.view()),
                label_smoothing: 0.1,
                z_loss: 1e-3,
                softcap: Some(3.0),
                upstream: Upstream::Scalar(0.5),
                ..base.clone()
            },
        ),
        ("forward only", CrossEntropyOptions::default()),
    ];
    for (name, o) in &cases {
        run_case(
            h.view(),
            w.view(),
            Some(b.view()),
            Targets::classes(y.view()),
            o,
            128,
            name,
        );
    }
    let o = CrossEntropyOptions {
        label_smoothing: 0.1,
        weight: Some(cw.view()),
        ..base.clone()
    };
    run_case(
        h.view(),
        w.view(),
        None,
        Targets::probabilities(q.view()),
        &o,
        100,
        "probability targets",
    );
    let y7 = y.mapv(|c| if c < 0 { 7 } else { c });
    let o = CrossEntropyOptions {
        ignore_index: Some(7),
        ..base.clone()
    };
    run_case(
        h.view(),
        w.view(),
        Some(b.view()),
        Targets::classes(y7.view()),
        &o,
        128,
        "ignore_index 7",
    );
    let y32 = y.mapv(|c| c as i32);
    run_case(
        h.view(),
        w.view(),
        None,
        Targets::classes_i32(y32.view()),
        &base,
        100,
        "i32 targets",
    );
}

#[test]
fn half_precision_inputs() {
    // D = 70 and 72: the CPU adapter's product kernels with scalar and with vec4 loads.
    for d in [70, 72] {
        half_precision_case(d);
    }
}

fn half_precision_case(d: usize) {
    use smoothmax::half::{bf16, f16};
    let (n, v) = (19, 700);
    let (h, w, b) = inputs(n, d, v, 5);
    let y = classes(n, v, 9, 4);
    let o = CrossEntropyOptions {
        gradient: true,
        label_smoothing: 0.05,
        ..Default::default()
    };
    // The oracle sees the half values widened: the inputs are what they are.
    let hb = h.mapv(bf16::from_f32);
    let wb = w.mapv(bf16::from_f32);
    let hf = h.mapv(f16::from_f32);
    let wf = w.mapv(f16::from_f32);
    /// (name, hidden, weight, their f32 values, the gradients' rounding to their types)
    type Case<'a> = (
        &'a str,
        smoothmax::TensorView<'a>,
        smoothmax::MatrixView<'a>,
        Array2<f32>,
        Array2<f32>,
        OutRounding,
    );
    let cases: Vec<Case> = vec![
        (
            "bf16",
            hb.view().into(),
            wb.view().into(),
            hb.mapv(|x| x.to_f32()),
            wb.mapv(|x| x.to_f32()),
            out_rounding(DType::BF16),
        ),
        (
            "f16",
            hf.view().into(),
            wf.view().into(),
            hf.mapv(|x| x.to_f32()),
            wf.mapv(|x| x.to_f32()),
            out_rounding(DType::F16),
        ),
        (
            "bf16 hidden, f32 weight",
            hb.view().into(),
            w.view().into(),
            hb.mapv(|x| x.to_f32()),
            w.clone(),
            out_rounding(DType::BF16),
        ),
    ];
    for (name, ht, wt, h32, w32, u_out) in cases {
        let or = oracle(
            h32.view(),
            w32.view(),
            Some(b.view()),
            &Targets::classes(y.view()),
            &o,
        );
        for be in backends() {
            let got = linear_cross_entropy_tiled(
                *be,
                ht.clone(),
                wt.clone(),
                Some(b.view()),
                Targets::classes(y.view()),
                &o,
                128,
            )
            .unwrap();
            assert_eq!(
                got.grad_hidden.as_ref().unwrap().dtype(),
                ht.dtype(),
                "{name}: grad_hidden type"
            );
            assert_eq!(
                got.grad_weight.as_ref().unwrap().dtype(),
                wt.dtype(),
                "{name}: grad_weight type"
            );
            check(
                &got,
                &or,
                &o,
                u_out,
                &format!("{name}, D = {d}, on {}", be.name()),
            );
        }
    }
}

#[test]
fn leading_shapes() {
    let (d, v) = (9, 130);
    let (h, w, b) = inputs(6, d, v, 21);
    let y = classes(6, v, 2, 4);
    let h3 = h.clone().into_shape_with_order((2, 3, d)).unwrap();
    let y2 = y.clone().into_shape_with_order((2, 3)).unwrap();
    let o = CrossEntropyOptions {
        gradient: true,
        reduction: Reduction::None,
        ..Default::default()
    };
    for be in backends() {
        let flat = be
            .linear_cross_entropy(
                h.view().into(),
                w.view().into(),
                Some(b.view()),
                Targets::classes(y.view()),
                &o,
            )
            .unwrap();
        let nd = be
            .linear_cross_entropy(
                h3.view().into(),
                w.view().into(),
                Some(b.view()),
                Targets::classes(y2.view()),
                &o,
            )
            .unwrap();
        assert_eq!(nd.lse.shape(), &[2, 3]);
        assert_eq!(nd.grad_hidden.as_ref().unwrap().shape(), &[2, 3, d]);
        assert_eq!(
            nd.lse.iter().collect::<Vec<_>>(),
            flat.lse.iter().collect::<Vec<_>>(),
            "{}",
            be.name()
        );
        assert_eq!(nd.grad_weight, flat.grad_weight, "{}", be.name());
    }
}

/// The oracle's chain rule against central differences of the f64 loss in `H`, `W` and `b`
/// (the cross-entropy's own gradient is checked the same way in its suites).
#[test]
fn gradients_match_finite_differences() {
    let (n, d, v) = (3, 4, 6);
    let (h, w, b) = inputs(n, d, v, 33);
    let y = classes(n, v, 1, 0);
    let cw = Array1::from_shape_fn(v, |j| 0.5 + j as f32 * 0.25);
    let o = CrossEntropyOptions {
        gradient: true,
        weight: Some(cw.view()),
        label_smoothing: 0.1,
        z_loss: 0.05,
        softcap: Some(2.0),
        ..Default::default()
    };
    let t = Targets::classes(y.view());
    let loss = |h: &Array2<f64>, w: &Array2<f64>, b: &Array1<f64>| {
        let z = h.dot(&w.t()) + b;
        smoothmax::cross_entropy::reference::cross_entropy_f64_logits(z.view(), &t, &o)
            .unwrap()
            .reduced
    };
    let (h64, w64, b64) = (
        h.mapv(|x| x as f64),
        w.mapv(|x| x as f64),
        b.mapv(|x| x as f64),
    );
    let or = oracle(h.view(), w.view(), Some(b.view()), &t, &o);
    let eps = 1e-6;
    let fd = |f: &dyn Fn(f64) -> f64| (f(eps) - f(-eps)) / (2.0 * eps);
    for i in 0..n {
        for k in 0..d {
            let g = fd(&|e| {
                let mut h2 = h64.clone();
                h2[[i, k]] += e;
                loss(&h2, &w64, &b64)
            });
            assert!(
                (g - or.dh[[i, k]]).abs() < 1e-7,
                "dH[{i},{k}]: fd {g}, chain rule {}",
                or.dh[[i, k]]
            );
        }
    }
    for j in 0..v {
        for k in 0..d {
            let g = fd(&|e| {
                let mut w2 = w64.clone();
                w2[[j, k]] += e;
                loss(&h64, &w2, &b64)
            });
            assert!(
                (g - or.dw[[j, k]]).abs() < 1e-7,
                "dW[{j},{k}]: fd {g}, chain rule {}",
                or.dw[[j, k]]
            );
        }
        let g = fd(&|e| {
            let mut b2 = b64.clone();
            b2[j] += e;
            loss(&h64, &w64, &b2)
        });
        assert!(
            (g - or.db[j]).abs() < 1e-7,
            "db[{j}]: fd {g}, chain rule {}",
            or.db[j]
        );
    }
    // And every backend agrees with that oracle at this size.
    for be in backends() {
        let got = be
            .linear_cross_entropy(
                h.view().into(),
                w.view().into(),
                Some(b.view()),
                t.clone(),
                &o,
            )
            .unwrap();
        check(
            &got,
            &or,
            &o,
            F32_OUT,
            &format!("finite-difference case on {}", be.name()),
        );
    }
}

#[test]
fn bad_input_is_a_clear_error() {
    let (h, w, b) = inputs(4, 5, 10, 1);
    let y = classes(4, 10, 1, 0);
    let o = CrossEntropyOptions::default();
    for be in backends() {
        let wrong_d = Array2::<f32>::zeros((10, 4));
        let e = be
            .linear_cross_entropy(
                h.view().into(),
                wrong_d.view().into(),
                None,
                Targets::classes(y.view()),
                &o,
            )
            .unwrap_err();
        assert!(
            e.to_string().contains("5 features") && e.to_string().contains("4"),
            "{e}"
        );
        let short_b = b.slice(ndarray::s![..9]);
        let e = be
            .linear_cross_entropy(
                h.view().into(),
                w.view().into(),
                Some(short_b),
                Targets::classes(y.view()),
                &o,
            )
            .unwrap_err();
        assert!(e.to_string().contains("bias has length 9"), "{e}");
        let mut bad = y.clone();
        bad[2] = 10;
        let e = be
            .linear_cross_entropy(
                h.view().into(),
                w.view().into(),
                None,
                Targets::classes(bad.view()),
                &o,
            )
            .unwrap_err();
        assert!(e.to_string().contains("target[2] = 10"), "{e}");
        let e = be
            .linear_cross_entropy(
                h.view().into(),
                w.view().into(),
                None,
                Targets::classes(y.slice(ndarray::s![..3])),
                &o,
            )
            .unwrap_err();
        assert!(e.to_string().contains("shape"), "{e}");
        let e = linear_cross_entropy_tiled(
            *be,
            h.view().into(),
            w.view().into(),
            None,
            Targets::classes(y.view()),
            &o,
            0,
        )
        .unwrap_err();
        assert!(e.to_string().contains("0 classes"), "{e}");
    }
}

/// Empty dimensions and rows that all count for nothing, on every backend: N = 0, D = 0
/// (the logits are the bias), V = 0 (every row ignored), every row ignored.
#[test]
fn empty_and_all_ignored() {
    let o = CrossEntropyOptions {
        gradient: true,
        ..Default::default()
    };
    let on = CrossEntropyOptions {
        reduction: Reduction::None,
        ..o.clone()
    };
    for &(n, d, v, ignored, opts, what) in &[
        (0, 5, 10, false, &o, "N = 0"),
        (4, 0, 10, false, &o, "D = 0"),
        (4, 0, 10, false, &on, "D = 0, per row"),
        (3, 5, 0, true, &on, "V = 0"),
        (5, 6, 20, true, &o, "every row ignored, mean"),
        (5, 6, 20, true, &on, "every row ignored, per row"),
    ] {
        let (h, w, b) = inputs(n, d, v, 3);
        let y = if ignored {
            Array1::from_elem(n, -100i64)
        } else {
            classes(n, v, 1, 0)
        };
        run_case(
            h.view(),
            w.view(),
            Some(b.view()),
            Targets::classes(y.view()),
            opts,
            4,
            what,
        );
    }
}

/// On a device whose storage bindings hold 64 KiB, every product is cut into pieces along M
/// and K (the hidden states alone are 84-86 KB), and the results still meet the bound.
#[test]
fn products_cut_to_small_bindings() {
    let Some(g) = common::small_binding_gpu() else {
        return;
    };
    for d in [70, 72] {
        let (n, v) = (300, 500);
        let (h, w, b) = inputs(n, d, v, 17);
        assert!(n * d * 4 > 1 << 16);
        let y = classes(n, v, 5, 7);
        let o = CrossEntropyOptions {
            gradient: true,
            label_smoothing: 0.1,
            ..Default::default()
        };
        let t = Targets::classes(y.view());
        let or = oracle(h.view(), w.view(), Some(b.view()), &t, &o);
        let got = g
            .linear_cross_entropy(h.view().into(), w.view().into(), Some(b.view()), t, &o)
            .unwrap();
        check(&got, &or, &o, F32_OUT, &format!("64 KiB bindings, D = {d}"));
    }
}
