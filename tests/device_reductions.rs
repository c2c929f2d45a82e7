//! The GPU's batch reductions on the device (smooth accuracy, binary and macro smooth F1, the
//! mean and sum of the binary and margin losses): against the f64 reference's host sums
//! within the crate's tolerance, their `LossSums` within the device sum's stated bound, over
//! many chunks (a device whose storage binding holds 64 KiB) and at [1100, 32000] (more than
//! lavapipe's 128 MiB binding); recorded and device-resident calls bit-equal to the host
//! call on the many-chunk device; non-finite losses summed as IEEE addition does.

mod common;

use common::surrogates::{assert_matches, classes, matrix};
use common::{gpu, tol};
use ndarray::{Array1, Array2};
use smoothmax::surrogates::reference::surrogate_f64;
use smoothmax::{
    BinaryLoss, BinaryOptions, Gpu, MultiMarginOptions, Reduction, Surrogate, SurrogateOutput,
};

/// Every reduced surrogate on `x` (with labels, signs, classes and weights made from it).
struct Inputs {
    x: Array2<f32>,
    labels: Array2<f32>,
    signs: Array2<f32>,
    y: Array1<i64>,
    w: Array2<f32>,
    cw: Array1<f32>,
}

impl Inputs {
    fn new(rows: usize, cols: usize, seed: u64) -> Self {
        let x = matrix(rows, cols, 2.0, seed);
        let labels = x.mapv(|v| ((v * 7.0).sin() > 0.3) as u8 as f32);
        let signs = labels.mapv(|v| 2.0 * v - 1.0);
        let w = Array2::from_shape_fn((1, cols), |(_, j)| 0.5 + (j % 5) as f32 * 0.25);
        let cw = Array1::from_shape_fn(cols, |j| 1.0 + (j % 3) as f32);
        Inputs {
            y: classes(rows, cols, seed ^ 9),
            x,
            labels,
            signs,
            w,
            cw,
        }
    }

    fn calls(&self) -> Vec<(String, Surrogate<'_>)> {
        let x = self.x.view();
        let mut v = vec![
            (
                "smooth accuracy".to_string(),
                Surrogate::SmoothAccuracy {
                    logits: x,
                    targets: self.y.view(),
                    temperature: 0.7,
                },
            ),
            (
                "binary F1".into(),
                Surrogate::SmoothF1Binary {
                    logits: x,
                    labels: self.labels.view(),
                },
            ),
            (
                "macro F1".into(),
                Surrogate::SmoothF1Macro {
                    logits: x,
                    targets: self.y.view(),
                    temperature: 1.5,
                },
            ),
        ];
        for reduction in [Reduction::Mean, Reduction::Sum] {
            for loss in [
                BinaryLoss::Logistic,
                BinaryLoss::Hinge,
                BinaryLoss::Exponential,
            ] {
                let labels = if loss == BinaryLoss::Logistic {
                    &self.labels
                } else {
                    &self.signs
                };
                v.push((
                    format!("{} {reduction:?}", loss.name()),
                    Surrogate::Binary {
                        logits: x,
                        labels: labels.view(),
                        loss,
                        options: BinaryOptions {
                            weight: Some(self.w.view()),
                            pos_weight: None,
                            reduction,
                        },
                    },
                ));
            }
            v.push((
                format!("multi-margin {reduction:?}"),
                Surrogate::MultiMargin {
                    logits: x,
                    targets: self.y.view(),
                    options: MultiMarginOptions {
                        p: 2,
                        weight: Some(self.cw.view()),
                        reduction,
                        ..Default::default()
                    },
                },
            ));
        }
        v
    }
}

/// `got` against the reference: the crate's comparison (value, gradient, the sums' count and
/// total within the elements' tolerances added up).
fn check(got: &SurrogateOutput, want: &SurrogateOutput<f64>, n: usize, what: &str) {
    assert_matches(got, want, n, what);
}

/// The device sum of a reduced call against the f64 sum of the very f32 values it adds up
/// (the same call with `Reduction::None` on the same GPU), within the device sum's stated
/// bound alone.
fn check_device_sum(g: &Gpu, call: &Surrogate, what: &str) {
    let none = match call {
        Surrogate::Binary {
            logits,
            labels,
            loss,
            options,
        } => Surrogate::Binary {
            logits: *logits,
            labels: labels.view(),
            loss: *loss,
            options: BinaryOptions {
                reduction: Reduction::None,
                ..options.clone()
            },
        },
        Surrogate::MultiMargin {
            logits,
            targets,
            options,
        } => Surrogate::MultiMargin {
            logits: *logits,
            targets: targets.view(),
            options: MultiMarginOptions {
                reduction: Reduction::None,
                ..options.clone()
            },
        },
        _ => return,
    };
    let values = g.call(none).run().unwrap().value.to_vec();
    let exact: f64 = values.iter().map(|&v| v as f64).sum();
    let abs: f64 = values.iter().map(|&v| (v as f64).abs()).sum();
    let got = g.call(call.clone()).run().unwrap().sums.unwrap().loss;
    let bound = smoothmax::gpu::device_sum_bound(values.len(), abs);
    assert!(
        (got - exact).abs() <= bound,
        "{what}: device sum {got} vs {exact} (bound {bound:e})"
    );
}

fn bits(o: &SurrogateOutput) -> Vec<u32> {
    let mut v: Vec<u32> = o.value.to_vec().iter().map(|x| x.to_bits()).collect();
    v.extend(o.grad.iter().map(|x| x.to_bits()));
    v
}

#[test]
fn many_chunks_match_the_reference_in_every_mode() {
    let Some(g) = common::small_binding_gpu() else {
        return;
    };
    // [300, 2000] floats = 2.4 MB over 64 KiB bindings: dozens of chunks (each at most 8 rows).
    let (rows, cols) = (300, 2000);
    assert!(
        rows * cols * 4 > 8 * (1 << 16),
        "the shape must need many chunks"
    );
    let inp = Inputs::new(rows, cols, 41);
    let dx = g.upload(inp.x.view()).unwrap();
    for (name, call) in inp.calls() {
        let want = surrogate_f64(&call).unwrap();
        let host = g.call(call.clone()).run().unwrap();
        check(&host, &want, rows * cols, &name);
        check_device_sum(&g, &call, &name);
        // The same call on device-resident scores, run and recorded: the same bits.
        let on_device = call.map(|_| &dx);
        let run = g.call(on_device.clone()).run().unwrap();
        assert_eq!(bits(&run), bits(&host), "{name}: device scores");
        let mut enc = g.device().create_command_encoder(&Default::default());
        let rec = g.call(on_device).on_device().record(&mut enc).unwrap();
        g.queue().submit([enc.finish()]);
        let out = rec.finish().unwrap();
        let value = match out.value {
            smoothmax::gpu::DeviceValue::Scalar(s) => s,
            v => panic!("{name}: {v:?}"),
        };
        assert_eq!(
            value.to_bits(),
            host.value.scalar().unwrap().to_bits(),
            "{name}: recorded"
        );
        assert_eq!(out.sums, host.sums, "{name}: recorded sums");
        let grad = g.download(&out.grad).unwrap();
        assert_eq!(
            grad.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            host.grad.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "{name}: recorded gradient"
        );
    }
}

#[test]
fn larger_than_one_binding_matches_the_reference() {
    let Some(g) = gpu() else { return };
    // 1100 × 32000 floats = 140.8 MB: on lavapipe (128 MiB bindings) two chunks.
    let (rows, cols) = (1100, 32_000);
    let limit = g.device().limits().max_storage_buffer_binding_size as usize;
    eprintln!(
        "binding limit {limit} bytes; input {} bytes",
        rows * cols * 4
    );
    let inp = Inputs::new(rows, cols, 43);
    for (name, call) in inp.calls() {
        if name.ends_with("Sum") && !name.starts_with("hinge") {
            continue; // (the sums ride the same path as the means; one of them suffices here)
        }
        let want = surrogate_f64(&call).unwrap();
        let got = g.call(call.clone()).run().unwrap();
        check(&got, &want, rows * cols, &name);
        if name == "hinge Mean" {
            // (One at this size: the many-chunk test checks every op's sum this way.)
            check_device_sum(g, &call, &name);
        }
    }
}

/// Non-finite losses: `+inf` (the logistic loss at `f = +inf`, `y < 1`), `−inf` (the same
/// with a negative weight), both (NaN), NaN scores: the device sums give what IEEE addition
/// of the values gives.
#[test]
fn non_finite_losses_sum_as_ieee_addition() {
    let Some(g) = gpu() else { return };
    let f = |v: &[f32]| Array2::from_shape_vec((1, v.len()), v.to_vec()).unwrap();
    let inf = f32::INFINITY;
    let cases = [
        (f(&[1.0, inf, -2.0]), f(&[1.0, 1.0, 1.0]), "+inf"),
        (f(&[1.0, inf, -2.0]), f(&[1.0, -1.0, 1.0]), "-inf"),
        (f(&[inf, inf, -2.0]), f(&[1.0, -1.0, 1.0]), "+inf and -inf"),
        (f(&[f32::NAN, 0.5, -2.0]), f(&[1.0, 1.0, 1.0]), "NaN"),
        (
            f(&[f32::MAX, f32::MAX, 0.0]),
            f(&[1e30, 1e30, 1.0]),
            "overflow",
        ),
    ];
    let y = f(&[0.0, 0.25, 1.0]);
    for (x, w, what) in &cases {
        for reduction in [Reduction::Mean, Reduction::Sum] {
            let call = Surrogate::Binary {
                logits: x.view(),
                labels: y.view(),
                loss: BinaryLoss::Logistic,
                options: BinaryOptions {
                    weight: Some(w.view()),
                    pos_weight: None,
                    reduction,
                },
            };
            let want = surrogate_f64(&call).unwrap();
            let got = g.call(call).run().unwrap();
            if *what == "sum beyond f32" {
                // The sums are scaled by 2^-32 on the device: their f64 total is finite.
                let (gs, ws) = (got.sums.unwrap().loss, want.sums.unwrap().loss);
                assert!(
                    gs.is_finite() && (gs - ws).abs() <= tol(3) * ws,
                    "{gs} vs {ws}"
                );
            }
            let (gv, wv) = (got.value.scalar().unwrap(), want.value.scalar().unwrap());
            // (A sum beyond f32 rounds to an f32 infinity, as the reference's would.)
            let same = (gv.is_nan() && wv.is_nan())
                || gv == wv as f32
                || (wv.is_finite() && (gv as f64 - wv).abs() <= tol(3) * wv.abs());
            assert!(same, "{what} {reduction:?}: got {gv}, want {wv}");
        }
    }
}
