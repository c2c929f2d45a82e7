//! The call design composes: for every op (row ops, cross-entropy, every surrogate) the inputs
//! may be host data or device matrices (strided ones inside a larger buffer too), the outputs
//! host arrays or device matrices, and the execution blocking, async or recorded into an
//! encoder. Same kernels, same chunks (the shapes here fit one chunk), so every mode must give
//! bit for bit the host call's result.

mod common;

use common::{gpu, logits, strided};
use ndarray::{Array1, Array2};
use smoothmax::gpu::{CrossEntropy, DeviceValue, Rows};
use smoothmax::{
    BinaryLoss, BinaryOptions, CrossEntropyOptions, ElementSmoothing, Error, Gpu,
    MultiMarginOptions, PairwiseForm, Reduction, RowOp, RowOutput, Surrogate, SurrogateOutput,
    Targets, Value,
};

const ROWS: usize = 6;
const COLS: usize = 37;

/// Bits of every number, NaN payloads included.
fn bits<'a>(v: impl IntoIterator<Item = &'a f32>) -> Vec<u32> {
    v.into_iter().map(|f| f.to_bits()).collect()
}

fn row_bits(o: &RowOutput) -> Vec<u32> {
    match o {
        RowOutput::PerRow(v) => bits(v),
        RowOutput::Matrix(m) => bits(m),
    }
}

#[test]
fn row_ops_in_every_mode() {
    let Some(g) = gpu() else { return };
    let x = logits(ROWS, COLS, 3.0, 0.0, true, 5);
    let dx = g.upload(x.view()).unwrap();
    let sx = strided(g, &x, COLS + 5, 3);
    let dev = (g.device(), g.queue());
    for op in [RowOp::LogSumExp, RowOp::Softmax, RowOp::LogSoftmax] {
        let t = 0.7;
        let host = g
            .call(Rows {
                op,
                x: x.view(),
                temperature: t,
            })
            .run()
            .unwrap();
        let want = row_bits(&host);
        let flat = |m: Array2<f32>| bits(&m);
        for (what, m) in [("device", &dx), ("strided device", &sx)] {
            let out = g
                .call(Rows {
                    op,
                    x: m,
                    temperature: t,
                })
                .run()
                .unwrap();
            assert_eq!(row_bits(&out), want, "{op:?}, {what} in, host out");
            let out = g
                .call(Rows {
                    op,
                    x: m,
                    temperature: t,
                })
                .on_device()
                .run()
                .unwrap();
            assert_eq!(
                flat(g.download(&out).unwrap()),
                want,
                "{op:?}, {what} in, device out"
            );
        }
        let out = g
            .call(Rows {
                op,
                x: x.view(),
                temperature: t,
            })
            .on_device()
            .run()
            .unwrap();
        assert_eq!(
            flat(g.download(&out).unwrap()),
            want,
            "{op:?}: host in, device out"
        );
        let out = pollster::block_on(
            g.call(Rows {
                op,
                x: &sx,
                temperature: t,
            })
            .run_async(),
        );
        assert_eq!(row_bits(&out.unwrap()), want, "{op:?}: async");
        // Recorded, host placement: read back when finished.
        let mut enc = dev.0.create_command_encoder(&Default::default());
        let rec = g
            .call(Rows {
                op,
                x: &sx,
                temperature: t,
            })
            .record(&mut enc)
            .unwrap();
        dev.1.submit([enc.finish()]);
        assert_eq!(
            row_bits(&rec.finish().unwrap()),
            want,
            "{op:?}: recorded, host out"
        );
        // Recorded into the caller's strided output matrix.
        let out_cols = if op == RowOp::LogSumExp { 1 } else { COLS };
        let target = strided(g, &Array2::zeros((ROWS, out_cols)), out_cols + 3, 1);
        let mut enc = dev.0.create_command_encoder(&Default::default());
        let rec = g
            .call(Rows {
                op,
                x: &dx,
                temperature: t,
            })
            .on_device_into(&target)
            .record(&mut enc)
            .unwrap();
        dev.1.submit([enc.finish()]);
        let out = rec.finish().unwrap();
        assert_eq!(
            flat(g.download(&out).unwrap()),
            want,
            "{op:?}: recorded into a matrix"
        );
        // A wrong output shape is refused.
        let small = g.upload(Array2::<f32>::zeros((ROWS, 2)).view()).unwrap();
        assert!(matches!(
            g.call(Rows {
                op,
                x: &dx,
                temperature: t
            })
            .on_device_into(&small)
            .run(),
            Err(Error::InvalidInput(_))
        ));
    }
}

#[test]
fn cross_entropy_in_every_mode() {
    let Some(g) = gpu() else { return };
    let x = logits(ROWS, COLS, 3.0, 0.0, true, 7);
    let y = Array1::from_shape_fn(ROWS, |i| if i == 2 { -100 } else { (i * 5 % COLS) as i64 });
    let w = Array1::from_shape_fn(COLS, |c| 0.5 + (c % 3) as f32);
    let o = CrossEntropyOptions {
        gradient: true,
        label_smoothing: 0.1,
        weight: Some(w.view()),
        softcap: Some(4.0),
        ..Default::default()
    };
    fn call<'a, M>(
        logits: M,
        y: &'a Array1<i64>,
        o: &CrossEntropyOptions<'a>,
    ) -> CrossEntropy<'a, 'a, M> {
        CrossEntropy {
            logits,
            targets: Targets::classes(y.view()),
            options: o.clone(),
        }
    }
    let ce = |logits| call(logits, &y, &o);
    let ce_dev = |logits| call(logits, &y, &o);
    let host = g.call(ce(x.view())).run().unwrap();
    let want = (
        host.loss.clone(),
        bits(&host.lse),
        bits(host.grad.as_ref().unwrap()),
    );
    let dev = (g.device(), g.queue());
    let sx = strided(g, &x, COLS + 2, 5);
    let out = g.call(ce_dev(&sx)).run().unwrap();
    assert_eq!(
        (out.loss, bits(&out.lse), bits(out.grad.as_ref().unwrap())),
        want
    );
    let d = g.call(ce(x.view())).on_device().run().unwrap();
    let grad = g.download(d.grad.as_ref().unwrap()).unwrap();
    assert_eq!(
        (d.loss, bits(&d.lse), bits(&grad)),
        want,
        "host in, device out"
    );
    let mut enc = dev.0.create_command_encoder(&Default::default());
    let rec = g.call(ce_dev(&sx)).record(&mut enc).unwrap();
    interfere(g, &x, &x);
    dev.1.submit([enc.finish()]);
    let out = rec.finish().unwrap();
    assert_eq!(
        (out.loss, bits(&out.lse), bits(out.grad.as_ref().unwrap())),
        want,
        "recorded"
    );
    // In place over a strided matrix, recorded: the logits become the gradient.
    let mut enc = dev.0.create_command_encoder(&Default::default());
    let rec = g.call(ce_dev(&sx)).in_place().record(&mut enc).unwrap();
    dev.1.submit([enc.finish()]);
    let d = rec.finish().unwrap();
    assert_eq!(
        (d.loss, bits(&d.lse), bits(&g.download(&sx).unwrap())),
        want,
        "in place"
    );
}

/// Calls with other parameters (other uniforms, weights and targets) on the same engine, as
/// other threads of an application may make while it holds a recorded encoder.
fn interfere(g: &Gpu, x: &Array2<f32>, b: &Array2<f32>) {
    let (rows, cols) = x.dim();
    let w = Array1::from_shape_fn(cols, |c| 1.0 + c as f32);
    let y = Array1::from_shape_fn(rows, |i| ((i + 3) % cols) as i64);
    let o = CrossEntropyOptions {
        weight: Some(w.view()),
        label_smoothing: 0.7,
        z_loss: 0.5,
        softcap: Some(0.5),
        gradient: true,
        ..Default::default()
    };
    let ce = CrossEntropy {
        logits: x.view(),
        targets: Targets::classes(y.view()),
        options: o,
    };
    g.call(ce).run().unwrap();
    let labels = b.mapv(|v| if v > 0.0 { 1.0 } else { 0.0 });
    for call in [
        Surrogate::BoltzmannMax {
            x: b.view(),
            beta: 9.0,
        },
        Surrogate::Binary {
            logits: b.view(),
            labels: labels.view(),
            loss: BinaryLoss::Logistic,
            options: BinaryOptions {
                weight: Some(labels.view()),
                pos_weight: Some(w.view()),
                reduction: Reduction::Sum,
            },
        },
        Surrogate::MultiMargin {
            logits: b.view(),
            targets: y.view(),
            options: MultiMarginOptions {
                weight: Some(w.view()),
                margin: 3.0,
                ..Default::default()
            },
        },
    ] {
        g.call(call).run().unwrap();
    }
}

/// Every surrogate, with its scores of type `M` (host view or device matrix); `nonneg` are
/// scores the power-mean max accepts.
fn surrogates<'a, M: Copy>(
    x: M,
    b: M,
    nonneg: M,
    classes: &'a Array1<i64>,
    labels: &'a Array2<f32>,
    signs: &'a Array2<f32>,
) -> Vec<Surrogate<'a, M>> {
    let mut v = vec![
        Surrogate::BoltzmannMax { x, beta: -1.5 },
        Surrogate::PowerMax { x: nonneg, p: 3.5 },
        Surrogate::Smoothing {
            x,
            op: ElementSmoothing::Abs { k: 2.0 },
        },
        Surrogate::Smoothing {
            x,
            op: ElementSmoothing::Floor { t: 0.7 },
        },
        Surrogate::SoftArgmax {
            x,
            temperature: 0.3,
        },
        Surrogate::SmoothAccuracy {
            logits: x,
            targets: classes.view(),
            temperature: 2.0,
        },
        Surrogate::MultiMargin {
            logits: x,
            targets: classes.view(),
            options: MultiMarginOptions {
                p: 2,
                reduction: Reduction::None,
                ..Default::default()
            },
        },
        Surrogate::PairwiseMax {
            a: x,
            b,
            form: PairwiseForm::Acon { beta: 2.0 },
        },
        Surrogate::Binary {
            logits: x,
            labels: labels.view(),
            loss: BinaryLoss::Logistic,
            options: BinaryOptions::default(),
        },
        Surrogate::Binary {
            logits: x,
            labels: signs.view(),
            loss: BinaryLoss::SquaredHinge,
            options: BinaryOptions {
                reduction: Reduction::None,
                ..Default::default()
            },
        },
    ];
    v.push(Surrogate::SmoothF1Macro {
        logits: x,
        targets: classes.view(),
        temperature: 1.0,
    });
    v.push(Surrogate::SmoothF1Binary {
        logits: x,
        labels: labels.view(),
    });
    v
}

fn output_bits(o: &SurrogateOutput) -> Vec<u32> {
    let mut v = bits(&o.value.to_vec());
    v.extend(bits(&o.grad));
    v.extend(o.grad_b.iter().flat_map(bits));
    v
}

fn device_output_bits(g: &Gpu, o: &smoothmax::gpu::DeviceSurrogateOutput) -> Vec<u32> {
    let mut v = match &o.value {
        DeviceValue::Scalar(s) => bits([s]),
        DeviceValue::PerRow(r) => bits(r),
        DeviceValue::Matrix(m) => bits(&g.download(m).unwrap()),
    };
    v.extend(bits(&g.download(&o.grad).unwrap()));
    v.extend(o.grad_b.iter().flat_map(|m| bits(&g.download(m).unwrap())));
    v
}

#[test]
fn surrogates_in_every_mode() {
    let Some(g) = gpu() else { return };
    let x = logits(ROWS, COLS, 3.0, 0.0, false, 11);
    let b = logits(ROWS, COLS, 3.0, 0.5, false, 12);
    let classes = Array1::from_shape_fn(ROWS, |i| (i * 7 % COLS) as i64);
    let labels = Array2::from_shape_fn((ROWS, COLS), |(r, c)| ((r + c) % 3) as f32 / 2.0);
    let signs = labels.mapv(|v| if v > 0.4 { 1.0 } else { -1.0 });
    let a = x.mapv(f32::abs);
    let (dx, db) = (strided(g, &x, COLS + 3, 2), strided(g, &b, COLS + 1, 7));
    let da = strided(g, &a, COLS + 2, 1);
    let host = surrogates(x.view(), b.view(), a.view(), &classes, &labels, &signs);
    let device = surrogates(&dx, &db, &da, &classes, &labels, &signs);
    let dev = (g.device(), g.queue());
    for (h, d) in host.into_iter().zip(device) {
        let name = h.name();
        let want = output_bits(&g.call(h.clone()).run().unwrap());
        let got = g.call(d.clone()).run().unwrap();
        assert_eq!(output_bits(&got), want, "{name}: device in, host out");
        let got = pollster::block_on(g.call(d.clone()).run_async()).unwrap();
        assert_eq!(output_bits(&got), want, "{name}: async");
        let got = g.call(h.clone()).on_device().run().unwrap();
        assert_eq!(
            device_output_bits(g, &got),
            want,
            "{name}: host in, device out"
        );
        let got = g.call(d.clone()).on_device().run().unwrap();
        assert_eq!(
            device_output_bits(g, &got),
            want,
            "{name}: device in, device out"
        );
        // Every surrogate records, the F1 scores' two passes and sums included.
        let mut enc = dev.0.create_command_encoder(&Default::default());
        let rec = g.call(d.clone()).on_device().record(&mut enc).unwrap();
        // Other calls between recording and submitting reuse the engine's buffers: none the
        // recorded work reads may be among them.
        interfere(g, &x, &b);
        dev.1.submit([enc.finish()]);
        let got = rec.finish().unwrap();
        assert_eq!(device_output_bits(g, &got), want, "{name}: recorded");
    }
    // A value per element on the device stays there.
    let call = Surrogate::PairwiseMax {
        a: &dx,
        b: &db,
        form: PairwiseForm::Erf { mu: 3.0 },
    };
    let out = g.call(call).on_device().run().unwrap();
    assert!(matches!(out.value, DeviceValue::Matrix(_)));
    let host = g
        .call(Surrogate::PairwiseMax {
            a: x.view(),
            b: b.view(),
            form: PairwiseForm::Erf { mu: 3.0 },
        })
        .run()
        .unwrap();
    if let (DeviceValue::Matrix(m), Value::Matrix(h)) = (&out.value, &host.value) {
        assert_eq!(bits(&g.download(m).unwrap()), bits(h));
    }
}
