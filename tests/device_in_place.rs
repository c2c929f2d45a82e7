//! Cross-entropy with the gradient written over device-resident logits: equal to the
//! out-of-place gradient for fused, split and strided rows, chunked past one binding, and at
//! any offset and row stride.

mod common;

use common::app::{app_gpu, storage_buffer};

use common::{assert_ce_close, gpu, logits};
use smoothmax::gpu::{CrossEntropy, Rows};
use smoothmax::{Backend, CrossEntropyOptions, Error, GpuMatrix, Reference, RowOp, Targets};

#[test]
fn in_place_gradient_equals_the_out_of_place_one() {
    let Some(g) = app_gpu() else { return };
    // Fused rows, split rows (few and long), a strided block inside a larger buffer.
    for (rows, cols, stride, probs) in [
        (24usize, 70usize, 70usize, false),
        (3, 40_000, 40_000, false),
        (10, 33, 40, true),
    ] {
        let x = logits(rows, cols, 2.0, 0.0, true, cols as u64);
        let y = ndarray::Array1::from_shape_fn(rows, |i| {
            if i % 4 == 3 {
                -100
            } else {
                (i * 11 % cols) as i64
            }
        });
        let mut q = ndarray::Array2::from_shape_fn((rows, cols), |(i, j)| ((i + j) % 5) as f32);
        for mut r in q.rows_mut() {
            let s = r.sum();
            r.mapv_inplace(|v| v / s);
        }
        let t = if probs {
            Targets::probabilities(q.view())
        } else {
            Targets::classes(y.view())
        };
        let w = ndarray::Array1::from_shape_fn(cols, |j| 0.5 + (j % 3) as f32);
        let o = CrossEntropyOptions {
            weight: Some(w.view()),
            label_smoothing: 0.1,
            z_loss: 1e-3,
            softcap: Some(15.0),
            gradient: true,
            ..Default::default()
        };
        let out_of_place = g
            .call(CrossEntropy {
                logits: &g.upload(x.view()).unwrap(),
                targets: t.clone(),
                options: o.clone(),
            })
            .on_device()
            .run()
            .unwrap();
        // The logits in an application buffer, `stride` floats per row.
        let mut data = vec![0.0f32; rows * stride];
        for r in 0..rows {
            data[r * stride..r * stride + cols].copy_from_slice(x.row(r).as_slice().unwrap());
        }
        let buf = storage_buffer(
            &data,
            wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
        );
        let m = GpuMatrix::from_buffer(buf, 0, rows, cols, stride).unwrap();
        let in_place = g
            .call(CrossEntropy {
                logits: &m,
                targets: t.clone(),
                options: o.clone(),
            })
            .in_place()
            .run()
            .unwrap();
        let what = format!("[{rows}, {cols}] stride {stride} probs={probs}");
        assert_eq!(in_place.loss, out_of_place.loss, "{what}: loss");
        assert_eq!(in_place.lse, out_of_place.lse, "{what}: lse");
        let g_in = g.download(&m).unwrap(); // the logits' buffer now holds the gradient
        let g_out = g.download(out_of_place.grad.as_ref().unwrap()).unwrap();
        assert_eq!(g_in, g_out, "{what}: gradient");
        // And it is the right gradient.
        let want = Reference.cross_entropy_f64(x.view(), t, &o).unwrap();
        let got = smoothmax::CrossEntropyOutput {
            loss: in_place.loss,
            grad: Some(g_in),
            lse: in_place.lse,
            sums: in_place.sums,
        };
        let unit = if probs {
            1.0 / rows as f64
        } else {
            1.0 / y
                .iter()
                .filter(|&&v| v >= 0)
                .map(|&v| w[v as usize] as f64)
                .sum::<f64>()
        };
        assert_ce_close(&got, &want, cols, unit, &what);
    }
    // In place needs the gradient.
    let m = g
        .upload(ndarray::Array2::<f32>::zeros((2, 3)).view())
        .unwrap();
    let y = ndarray::array![0i64, 1];
    assert!(matches!(
        g.call(CrossEntropy {
            logits: &m,
            targets: Targets::classes(y.view()),
            options: CrossEntropyOptions::default().clone()
        })
        .in_place()
        .run(),
        Err(Error::InvalidInput(_))
    ));
}

#[test]
fn chunked_device_cross_entropy_in_and_out_of_place() {
    let Some(g) = gpu() else { return };
    // 1100 x 32000 floats = 140.8 MB: more than lavapipe's 128 MiB binding, so chunked.
    let (rows, cols) = (1100usize, 32_000usize);
    let x = logits(rows, cols, 2.0, 0.0, false, 77);
    let y = ndarray::Array1::from_shape_fn(rows, |i| {
        if i % 9 == 0 {
            -100
        } else {
            (i * 7919 % cols) as i64
        }
    });
    let o = CrossEntropyOptions {
        gradient: true,
        label_smoothing: 0.1,
        ..Default::default()
    };
    let host = g
        .cross_entropy(x.view(), Targets::classes(y.view()), &o)
        .unwrap();
    let m = g.upload(x.view()).unwrap();
    let dev = g
        .call(CrossEntropy {
            logits: &m,
            targets: Targets::classes(y.view()),
            options: o.clone(),
        })
        .on_device()
        .run()
        .unwrap();
    assert_eq!(dev.loss, host.loss);
    assert_eq!(dev.lse, host.lse);
    assert_eq!(
        g.download(dev.grad.as_ref().unwrap()).unwrap(),
        host.grad.clone().unwrap()
    );
    let ip = g
        .call(CrossEntropy {
            logits: &m,
            targets: Targets::classes(y.view()),
            options: o.clone(),
        })
        .in_place()
        .run()
        .unwrap();
    assert_eq!(ip.loss, host.loss);
    assert_eq!(g.download(&m).unwrap(), host.grad.unwrap());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig {
        cases: common::proptest_cases(24),
        failure_persistence: Some(Box::new(proptest::test_runner::FileFailurePersistence::Direct(
            "tests/proptest-regressions/device_resident.txt",
        ))),
        ..proptest::prelude::ProptestConfig::default()
    })]

    /// Any 4-byte offset and any row stride: device results equal the host path on the block.
    #[test]
    fn any_offset_and_stride(
        rows in 1usize..20,
        cols in 1usize..600,
        extra in 0usize..9,
        pad in 0usize..70,
        seed: u64,
    ) {
        let Some(g) = app_gpu() else { return Ok(()) };
        let stride = cols + extra;
        let big = logits(rows, stride, 2.0, 0.0, true, seed);
        let mut data = vec![0.0f32; pad];
        data.extend(big.iter());
        let buf = storage_buffer(&data, wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST);
        let m = GpuMatrix::from_buffer(buf, (pad * 4) as u64, rows, cols, stride).unwrap();
        let block = big.slice(ndarray::s![.., ..cols]).to_owned();
        for op in [RowOp::LogSumExp, RowOp::LogSoftmax] {
            let d = g.download(&g.call(Rows { op, x: &m, temperature: 1.0 }).on_device().run().unwrap()).unwrap();
            match g.row_op(op, block.view(), 1.0).unwrap() {
                smoothmax::RowOutput::PerRow(v) => proptest::prop_assert_eq!(d.column(0).to_owned(), v),
                smoothmax::RowOutput::Matrix(h) => proptest::prop_assert_eq!(d, h),
            }
        }
        let y = ndarray::Array1::from_shape_fn(rows, |i| (i % cols) as i64);
        let o = CrossEntropyOptions { gradient: true, ..Default::default() };
        let dev = g.call(CrossEntropy { logits: &m, targets: Targets::classes(y.view()), options: o.clone() }).on_device().run().unwrap();
        let host = g.cross_entropy(block.view(), Targets::classes(y.view()), &o).unwrap();
        proptest::prop_assert_eq!(dev.loss, host.loss);
        proptest::prop_assert_eq!(g.download(dev.grad.as_ref().unwrap()).unwrap(), host.grad.unwrap());
    }
}
