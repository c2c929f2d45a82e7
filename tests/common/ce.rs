//! Shared support of the cross-entropy suites: generated targets and weights, the gradient's
//! unit, the comparison of every fast backend with the f64 reference.

use super::{assert_ce_close, fast_backends, Rng};
use ndarray::{Array1, Array2};
use smoothmax::{Backend, CrossEntropyOptions, Reduction, Reference, Targets, Upstream};

pub fn classes(rows: usize, cols: usize, ignore_frac: f64, ignore: i64, seed: u64) -> Array1<i64> {
    let mut rng = Rng(seed);
    Array1::from_shape_fn(rows, |_| {
        if rng.unit() < ignore_frac {
            ignore
        } else {
            (rng.next_u64() % cols as u64) as i64
        }
    })
}

pub fn probs(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
    let mut rng = Rng(seed);
    let mut q = Array2::from_shape_fn((rows, cols), |_| rng.unit().powi(3) as f32);
    for mut r in q.rows_mut() {
        let s: f32 = r.sum();
        r.mapv_inplace(|v| v / s);
    }
    q
}

pub fn weights(cols: usize, seed: u64) -> Array1<f32> {
    let mut rng = Rng(seed);
    Array1::from_shape_fn(cols, |_| (rng.unit() * 2.0) as f32)
}

/// The mean's 1/D for class targets (Σ w[y] over non-ignored rows), or 1/B for probabilities:
/// gradients are compared at unit scale.
pub fn grad_unit(
    t: &Targets,
    w: Option<&Array1<f32>>,
    o: &CrossEntropyOptions,
    rows: usize,
) -> f64 {
    if o.reduction != Reduction::Mean {
        return 1.0;
    }
    let d = match t {
        Targets::Classes(y) => y
            .iter()
            .filter(|&&v| v != o.effective_ignore_index())
            .map(|&v| w.map_or(1.0, |w| w[v as usize] as f64))
            .sum(),
        _ => rows as f64,
    };
    if d > 0.0 {
        1.0 / d
    } else {
        1.0
    }
}

pub fn check(x: &Array2<f32>, t: Targets, o: &CrossEntropyOptions, what: &str) {
    let want = Reference.cross_entropy_f64(x.view(), t.clone(), o).unwrap();
    let unit = grad_unit(&t, None, o, x.nrows());
    for b in fast_backends() {
        let got = b.cross_entropy(x.view(), t.clone(), o).unwrap();
        assert_ce_close(
            &got,
            &want,
            x.ncols(),
            unit,
            &format!("{} {what}", b.name()),
        );
    }
}

pub fn all_backends() -> Vec<&'static &'static dyn Backend> {
    let mut v = fast_backends();
    v.push(super::sized(&Reference));
    v
}

/// The cross-entropy option sets the streaming and sharding suites run, each with its name
/// and whether it takes probability targets: every option, alone or with the others that
/// interact with it, and every reduction and kind of upstream gradient. "ignore 3" ignores
/// through a valid class: run it on targets whose ignored rows hold 3 ([`ignoring_3`]).
pub fn option_sets<'a>(
    w: &'a Array1<f32>,
    up: &Array1<f32>,
) -> Vec<(&'static str, bool, CrossEntropyOptions<'a>)> {
    let d = || CrossEntropyOptions {
        gradient: true,
        ..Default::default()
    };
    let wv = Some(w.view());
    let per_row = || Upstream::PerRow(up.clone());
    let o = |f: &dyn Fn(&mut CrossEntropyOptions<'a>)| {
        let mut o = d();
        f(&mut o);
        o
    };
    vec![
        ("plain", false, d()),
        ("weights", false, o(&|o| o.weight = wv)),
        ("ignore 3", false, o(&|o| o.ignore_index = Some(3))),
        (
            "smoothing",
            false,
            o(&|o| (o.label_smoothing, o.weight) = (0.2, wv)),
        ),
        ("z-loss", false, o(&|o| o.z_loss = 1e-2)),
        (
            "z-loss sum",
            false,
            o(&|o| (o.z_loss, o.reduction) = (0.1, Reduction::Sum)),
        ),
        (
            "softcap",
            false,
            o(&|o| (o.softcap, o.label_smoothing, o.z_loss) = (Some(4.0), 0.1, 1e-3)),
        ),
        (
            "none",
            false,
            o(&|o| (o.reduction, o.upstream) = (Reduction::None, per_row())),
        ),
        (
            "upstream",
            false,
            o(&|o| o.upstream = Upstream::Scalar(-2.5)),
        ),
        (
            "probs",
            true,
            o(&|o| (o.label_smoothing, o.z_loss) = (0.1, 1e-2)),
        ),
        (
            "probs weighted",
            true,
            o(&|o| (o.weight, o.softcap) = (wv, Some(6.0))),
        ),
        (
            "probs none",
            true,
            o(&|o| {
                (o.reduction, o.upstream, o.label_smoothing) = (Reduction::None, per_row(), 0.3)
            }),
        ),
    ]
}

/// `y` with its ignored rows (−100) holding class 3 instead, for the "ignore 3" set.
pub fn ignoring_3(y: &Array1<i64>) -> Array1<i64> {
    y.mapv(|v| if v == -100 { 3 } else { v })
}
