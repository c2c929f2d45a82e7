//! `smoothmax eval linear-cross-entropy` on every device: N-D hidden states, a bias, class
//! weights and smoothing, against the f64 oracle of `common::linear`; bad inputs rejected
//! before any work.

mod common;

use common::cli::{assert_rejected, devices, eval, scratch};
use common::linear::{assert_within, oracle, F32_OUT};
use common::Rng;
use ndarray::{Array1, Array2, Array3, ArrayD};
use ndarray_npy::{read_npy, write_npy};
use smoothmax::{CrossEntropyOptions, Targets};

#[test]
fn every_device_matches_the_oracle() {
    let dir = scratch("linear");
    let (b0, s, d, v) = (3, 5, 8, 50);
    let mut r = Rng(8);
    let h = Array3::from_shape_fn((b0, s, d), |_| r.normal() as f32);
    let w = Array2::from_shape_fn((v, d), |_| (r.normal() * 0.7) as f32);
    let bias = Array1::from_shape_fn(v, |_| (r.normal() * 0.5) as f32);
    let cw = Array1::from_shape_fn(v, |j| 0.5 + (j % 5) as f32 * 0.25);
    let y = ndarray::Array2::from_shape_fn((b0, s), |(i, j)| {
        if (i + j) % 4 == 3 {
            -100
        } else {
            ((i * 17 + j * 7) % v) as i64
        }
    });
    for (name, a) in [("h", h.clone().into_dyn()), ("w", w.clone().into_dyn())] {
        write_npy(dir.join(format!("{name}.npy")), &a).unwrap();
    }
    write_npy(dir.join("b.npy"), &bias).unwrap();
    write_npy(dir.join("cw.npy"), &cw).unwrap();
    write_npy(dir.join("y.npy"), &y).unwrap();
    let p = |f: &str| dir.join(f).display().to_string();
    let o = CrossEntropyOptions {
        weight: Some(cw.view()),
        label_smoothing: 0.1,
        gradient: true,
        ..Default::default()
    };
    let h2 = h.clone().into_shape_with_order((b0 * s, d)).unwrap();
    let y1 = y.clone().into_shape_with_order(b0 * s).unwrap();
    let or = oracle(
        h2.view(),
        w.view(),
        Some(bias.view()),
        &Targets::classes(y1.view()),
        &o,
    );
    for dev in devices() {
        let out = dir.join(format!("out-{dev}"));
        let args = [
            "--target",
            &p("y.npy"),
            "--weight-matrix",
            &p("w.npy"),
            "--bias",
            &p("b.npy"),
            "--weight",
            &p("cw.npy"),
            "--label-smoothing",
            "0.1",
            "--device",
            dev,
        ];
        let o2 = eval("linear-cross-entropy", &dir.join("h.npy"), &args, &out);
        assert!(
            o2.status.success(),
            "{dev}: {}",
            String::from_utf8_lossy(&o2.stderr)
        );
        let loss: ndarray::Array0<f32> = read_npy(out.join("loss.npy")).unwrap();
        let bound = or.loss_bound.sum() / or.ce.sums.weight;
        assert!(
            (loss[()] as f64 - or.ce.reduced).abs() <= bound,
            "{dev}: loss {} vs {}",
            loss[()],
            or.ce.reduced
        );
        let lse: ndarray::Array2<f32> = read_npy(out.join("lse.npy")).unwrap();
        assert_eq!(lse.dim(), (b0, s), "{dev}: lse shape");
        let flat = |a: ArrayD<f32>| a.iter().copied().collect::<Array1<f32>>();
        let flat64 = |a: &Array2<f64>| a.iter().copied().collect::<Array1<f64>>();
        assert_within(
            flat(lse.into_dyn()).view(),
            or.ce.lse.view(),
            or.lse_bound.view(),
            F32_OUT,
            &format!("{dev}: lse"),
        );
        let gh: ArrayD<f32> = read_npy(out.join("grad_hidden.npy")).unwrap();
        assert_eq!(gh.shape(), &[b0, s, d], "{dev}: grad_hidden shape");
        assert_within(
            flat(gh).view(),
            flat64(&or.dh).view(),
            flat64(&or.dh_bound).view(),
            F32_OUT,
            &format!("{dev}: grad_hidden"),
        );
        let gw: ArrayD<f32> = read_npy(out.join("grad_weight.npy")).unwrap();
        assert_within(
            flat(gw).view(),
            flat64(&or.dw).view(),
            flat64(&or.dw_bound).view(),
            F32_OUT,
            &format!("{dev}: grad_weight"),
        );
        let gb: Array1<f32> = read_npy(out.join("grad_bias.npy")).unwrap();
        assert_within(
            gb.view(),
            or.db.view(),
            or.db_bound.view(),
            F32_OUT,
            &format!("{dev}: grad_bias"),
        );
    }
}

#[test]
fn bad_inputs_are_rejected_before_any_work() {
    let dir = scratch("linear-bad");
    write_npy(dir.join("h.npy"), &Array2::<f32>::zeros((4, 6))).unwrap();
    write_npy(dir.join("w.npy"), &Array2::<f32>::zeros((10, 5))).unwrap();
    write_npy(dir.join("w1.npy"), &Array1::<f32>::zeros(10)).unwrap();
    write_npy(dir.join("w6.npy"), &Array2::<f32>::zeros((10, 6))).unwrap();
    write_npy(dir.join("y.npy"), &Array1::<i64>::from(vec![0, 1, 2, 3])).unwrap();
    write_npy(dir.join("y10.npy"), &Array1::<i64>::from(vec![0, 1, 10, 3])).unwrap();
    write_npy(dir.join("y3.npy"), &Array1::<i64>::from(vec![0, 1, 2])).unwrap();
    let p = |f: &str| dir.join(f).display().to_string();
    let out = dir.join("out");
    let run = |w: &str, y: &str, needle: &str| {
        let args = [
            "eval",
            "linear-cross-entropy",
            "--input",
            &p("h.npy"),
            "--weight-matrix",
            &p(w),
            "--target",
            &p(y),
            "--device",
            "cpu",
        ];
        assert_rejected(&args, &[], needle, &out);
    };
    run("w.npy", "y.npy", "need D = 5");
    run("w1.npy", "y.npy", "[V, D]");
    run("w6.npy", "y10.npy", "target[2] = 10");
    run("w6.npy", "y3.npy", "expected [4]");
}
