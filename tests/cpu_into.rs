//! The CPU path's allocation-free forms (`Cpu::softmax_into`, `log_softmax_into`,
//! `cross_entropy_into`): the same numbers as the allocating calls, bit for bit (same code,
//! different destination), and clear errors for a buffer that does not fit.

mod common;

use common::{logits, Rng};
use ndarray::{s, Array1, Array2};
use smoothmax::{Backend, Cpu, CrossEntropyOptions, Error, Reduction, Targets};

/// Bitwise equality, NaN included (`==` would fail on NaN = NaN).
fn same_bits(a: &Array2<f32>, b: &Array2<f32>) -> bool {
    a.dim() == b.dim()
        && a.iter()
            .zip(b.iter())
            .all(|(p, q)| p.to_bits() == q.to_bits())
}

#[test]
fn softmax_into_matches_softmax_bit_for_bit() {
    let cpu = Cpu::new();
    for &(rows, cols) in &[
        (0usize, 5usize),
        (3, 0),
        (1, 1),
        (7, 13),
        (33, 1000),
        (5, 40_003),
    ] {
        let mut x = logits(rows, cols, 3.0, 0.5, true, rows as u64 * 31 + cols as u64);
        if rows > 2 && cols > 2 {
            x[[1, 2]] = f32::NAN; // a NaN row and a +inf row among ordinary ones
            x[[2, 0]] = f32::INFINITY;
        }
        for t in [1.0f32, 0.25] {
            // Start from garbage: every element must be overwritten.
            let mut out = Array2::from_elem((rows, cols), 7.5f32);
            cpu.softmax_into(x.view(), t, out.view_mut()).unwrap();
            let want = cpu.softmax(x.view(), t).unwrap();
            assert!(same_bits(&out, &want), "softmax [{rows}, {cols}] T = {t}");
            let mut out = Array2::from_elem((rows, cols), 7.5f32);
            cpu.log_softmax_into(x.view(), t, out.view_mut()).unwrap();
            let want = cpu.log_softmax(x.view(), t).unwrap();
            assert!(
                same_bits(&out, &want),
                "log-softmax [{rows}, {cols}] T = {t}"
            );
        }
    }
}

#[test]
fn cross_entropy_into_matches_cross_entropy_bit_for_bit() {
    let cpu = Cpu::new();
    let (rows, cols) = (64, 1001);
    let x = logits(rows, cols, 2.0, 0.0, true, 11);
    let mut rng = Rng(12);
    let y = Array1::from_shape_fn(rows, |_| {
        if rng.unit() < 0.2 {
            -100
        } else {
            (rng.next_u64() % cols as u64) as i64
        }
    });
    let w = Array1::from_shape_fn(cols, |j| 0.5 + (j % 3) as f32);
    for (ls, weighted, reduction) in [
        (0.0f32, false, Reduction::Mean),
        (0.1, false, Reduction::Mean),
        (0.1, true, Reduction::Sum),
        (0.0, true, Reduction::None),
    ] {
        let o = CrossEntropyOptions {
            gradient: true,
            label_smoothing: ls,
            reduction,
            weight: weighted.then(|| w.view()),
            z_loss: 1e-4,
            ..Default::default()
        };
        let mut g = Array2::from_elem((rows, cols), 7.5f32);
        let got = cpu
            .cross_entropy_into(x.view(), Targets::classes(y.view()), &o, g.view_mut())
            .unwrap();
        let want = cpu
            .cross_entropy(x.view(), Targets::classes(y.view()), &o)
            .unwrap();
        let what = format!("ls {ls} weighted {weighted} {reduction:?}");
        assert_eq!(got.loss, want.loss, "{what}: loss");
        assert_eq!(got.lse, want.lse, "{what}: lse");
        assert!(
            got.grad.is_none(),
            "{what}: the gradient went into the buffer"
        );
        assert!(
            same_bits(&g, want.grad.as_ref().unwrap()),
            "{what}: gradient"
        );
    }
}

#[test]
fn buffers_that_do_not_fit_are_rejected() {
    let cpu = Cpu::new();
    let x = logits(4, 6, 1.0, 0.0, false, 3);
    let message = |e: Error| match e {
        Error::InvalidInput(m) => m,
        other => panic!("expected InvalidInput, got {other:?}"),
    };
    // Wrong shape: both shapes named.
    let mut small = Array2::<f32>::zeros((4, 5));
    let m = message(
        cpu.softmax_into(x.view(), 1.0, small.view_mut())
            .unwrap_err(),
    );
    assert!(m.contains("[4, 5]") && m.contains("[4, 6]"), "{m}");
    // Not row-major contiguous: a transposed view and a strided one.
    let mut wide = Array2::<f32>::zeros((6, 4));
    let m = message(
        cpu.log_softmax_into(x.view(), 1.0, wide.view_mut().reversed_axes())
            .unwrap_err(),
    );
    assert!(m.contains("contiguous"), "{m}");
    let mut tall = Array2::<f32>::zeros((8, 6));
    let strided = tall.slice_mut(s![..;2, ..]);
    let m = message(cpu.softmax_into(x.view(), 1.0, strided).unwrap_err());
    assert!(m.contains("contiguous"), "{m}");
    // A bad temperature is still the temperature's error.
    let mut out = Array2::<f32>::zeros((4, 6));
    assert!(cpu.softmax_into(x.view(), 0.0, out.view_mut()).is_err());
    // cross_entropy_into needs the gradient asked for, and a buffer of the logits' shape.
    let y = ndarray::array![0i64, 1, 2, 3];
    let o = CrossEntropyOptions::default();
    let m = message(
        cpu.cross_entropy_into(x.view(), Targets::classes(y.view()), &o, out.view_mut())
            .unwrap_err(),
    );
    assert!(m.contains("gradient"), "{m}");
    let o = CrossEntropyOptions {
        gradient: true,
        ..Default::default()
    };
    let m = message(
        cpu.cross_entropy_into(x.view(), Targets::classes(y.view()), &o, small.view_mut())
            .unwrap_err(),
    );
    assert!(m.contains("[4, 5]"), "{m}");
    // A bad target is still reported as such (validation runs before anything is written).
    let bad = ndarray::array![0i64, 1, 9, 3];
    assert!(cpu
        .cross_entropy_into(x.view(), Targets::classes(bad.view()), &o, out.view_mut())
        .is_err());
}
