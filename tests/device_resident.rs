//! Device-resident data: upload / download, an application's buffer wrapped with offset and
//! row stride, op chains that never touch the host, cross-entropy with the gradient left on
//! the device, and the checks on wrapped buffers.

mod common;

use common::app::{app_device, app_gpu, storage_buffer};

use common::{assert_ce_close, assert_close_2d, assert_lse_close, gpu, logits};
use smoothmax::gpu::{CrossEntropy, Rows};
use smoothmax::{
    Backend, CrossEntropyOptions, Error, GpuMatrix, Reduction, Reference, RowOp, Targets,
};

#[test]
fn upload_download_and_device_results_equal_the_host_path() {
    let Some(g) = gpu() else { return };
    for (rows, cols) in [(5usize, 7usize), (33, 64), (3, 30_000)] {
        let x = logits(rows, cols, 2.0, 0.0, true, 9);
        let m = g.upload(x.view()).unwrap();
        assert_eq!(m.dim(), (rows, cols));
        assert_eq!(g.download(&m).unwrap(), x);
        for op in [RowOp::LogSumExp, RowOp::Softmax, RowOp::LogSoftmax] {
            let d = g
                .download(
                    &g.call(Rows {
                        op,
                        x: &m,
                        temperature: 0.7,
                    })
                    .on_device()
                    .run()
                    .unwrap(),
                )
                .unwrap();
            match g.row_op(op, x.view(), 0.7).unwrap() {
                smoothmax::RowOutput::PerRow(v) => assert_eq!(d.column(0).to_owned(), v, "{op:?}"),
                smoothmax::RowOutput::Matrix(h) => assert_eq!(d, h, "{op:?}"),
            }
        }
    }
}

#[test]
fn an_applications_buffer_with_offset_and_stride_is_used_in_place() {
    let Some(g) = app_gpu() else { return };
    // [rows, cols] block at column `c0` of a [rows, stride] matrix that starts `pad` floats
    // into the buffer: neither the offset nor the rows are 256-byte aligned.
    for (rows, cols, stride, pad, c0) in [
        (7usize, 10usize, 13usize, 5usize, 2usize),
        (40, 64, 72, 4, 4),
        (3000, 11_000, 12_000, 3, 1),
    ] {
        let big = logits(rows, stride, 2.0, 0.0, true, rows as u64);
        let mut data = vec![f32::NAN; pad];
        data.extend(big.iter());
        let buf = storage_buffer(
            &data,
            wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
        );
        let m = GpuMatrix::from_buffer(buf, ((pad + c0) * 4) as u64, rows, cols, stride).unwrap();
        let block = big.slice(ndarray::s![.., c0..c0 + cols]).to_owned();
        assert_eq!(g.download(&m).unwrap(), block);
        let what = format!("[{rows}, {cols}] stride {stride} offset {}", (pad + c0) * 4);
        let sm = g
            .download(
                &g.call(Rows {
                    op: RowOp::Softmax,
                    x: &m,
                    temperature: 1.0,
                })
                .on_device()
                .run()
                .unwrap(),
            )
            .unwrap();
        assert_close_2d(
            sm.view(),
            Reference
                .softmax_f64(block.view(), 1.0, false)
                .unwrap()
                .view(),
            &what,
        );
        let lse = g
            .download(
                &g.call(Rows {
                    op: RowOp::LogSumExp,
                    x: &m,
                    temperature: 2.0,
                })
                .on_device()
                .run()
                .unwrap(),
            )
            .unwrap();
        assert_lse_close(
            lse.column(0),
            Reference.logsumexp_f64(block.view(), 2.0).unwrap().view(),
            cols,
            2.0,
            &what,
        );
    }
}

#[test]
fn a_chain_of_ops_stays_on_the_device() {
    let Some(g) = gpu() else { return };
    let x = logits(64, 1000, 3.0, 5.0, false, 4);
    let m = g.upload(x.view()).unwrap();
    // logsumexp of a log-softmax row is 0; nothing returns to the host until the download.
    let lsm = g
        .call(Rows {
            op: RowOp::LogSoftmax,
            x: &m,
            temperature: 1.0,
        })
        .on_device()
        .run()
        .unwrap();
    let lse = g
        .download(
            &g.call(Rows {
                op: RowOp::LogSumExp,
                x: &lsm,
                temperature: 1.0,
            })
            .on_device()
            .run()
            .unwrap(),
        )
        .unwrap();
    assert!(lse.iter().all(|v| v.abs() < 1e-4), "{lse:?}");
}

#[test]
fn cross_entropy_leaves_the_gradient_on_the_device() {
    let Some(g) = gpu() else { return };
    for (rows, cols) in [(20usize, 33usize), (4, 40_000)] {
        let x = logits(rows, cols, 2.0, 0.0, true, 7);
        let y = ndarray::Array1::from_shape_fn(rows, |i| {
            if i % 5 == 0 {
                -100
            } else {
                (i * 13 % cols) as i64
            }
        });
        let o = CrossEntropyOptions {
            gradient: true,
            label_smoothing: 0.1,
            reduction: Reduction::Sum,
            ..Default::default()
        };
        let m = g.upload(x.view()).unwrap();
        let d = g
            .call(CrossEntropy {
                logits: &m,
                targets: Targets::classes(y.view()),
                options: o.clone(),
            })
            .on_device()
            .run()
            .unwrap();
        let got = smoothmax::CrossEntropyOutput {
            loss: d.loss,
            grad: Some(g.download(&d.grad.unwrap()).unwrap()),
            lse: d.lse,
            sums: d.sums,
        };
        let want = Reference
            .cross_entropy_f64(x.view(), Targets::classes(y.view()), &o)
            .unwrap();
        assert_ce_close(
            &got,
            &want,
            cols,
            1.0,
            &format!("device ce [{rows}, {cols}]"),
        );
    }
}

#[test]
fn wrapped_buffers_are_checked() {
    let Some(g) = app_gpu() else { return };
    let s = wgpu::BufferUsages::STORAGE;
    let bad = |r: Result<GpuMatrix, Error>, needle: &str| match r {
        Err(Error::InvalidInput(m)) => assert!(m.contains(needle), "{m:?} lacks {needle:?}"),
        other => panic!("expected an error with {needle:?}, got {other:?}"),
    };
    bad(
        GpuMatrix::from_buffer(storage_buffer(&[0.0; 64], s), 2, 2, 4, 4),
        "multiple of 4",
    );
    bad(
        GpuMatrix::from_buffer(storage_buffer(&[0.0; 64], s), 0, 2, 8, 4),
        "row stride 4",
    );
    bad(
        GpuMatrix::from_buffer(
            storage_buffer(&[0.0; 64], wgpu::BufferUsages::COPY_DST),
            0,
            2,
            4,
            4,
        ),
        "lacks STORAGE",
    );
    bad(
        GpuMatrix::from_buffer(storage_buffer(&[0.0; 64], s), 16, 8, 8, 8),
        "needs 272 bytes; the buffer has 256",
    );
    // Without COPY_SRC a matrix is usable by the ops but cannot be downloaded.
    let m = GpuMatrix::from_buffer(storage_buffer(&[0.0; 64], s), 0, 8, 8, 8).unwrap();
    assert!(g
        .call(Rows {
            op: RowOp::Softmax,
            x: &m,
            temperature: 1.0
        })
        .on_device()
        .run()
        .is_ok());
    assert!(matches!(g.download(&m), Err(Error::InvalidInput(_))));
}

#[test]
fn ops_recorded_into_the_applications_encoder_run_with_its_work() {
    let Some(g) = app_gpu() else { return };
    let (device, queue) = app_device();
    let (rows, cols) = (12usize, 300usize);
    let x = logits(rows, cols, 2.0, 0.0, true, 21);
    // The application fills its logits buffer by its own GPU copy, in the same encoder.
    let src = storage_buffer(
        x.as_slice().unwrap(),
        wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
    );
    let dst = storage_buffer(
        &vec![0.0; rows * cols],
        wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
    );
    let out = g
        .upload(ndarray::Array2::<f32>::zeros((rows, cols)).view())
        .unwrap();
    let y = ndarray::Array1::from_shape_fn(rows, |i| (i * 7 % cols) as i64);
    let o = CrossEntropyOptions {
        gradient: true,
        reduction: Reduction::Mean,
        ..Default::default()
    };
    let mut enc = device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
    enc.copy_buffer_to_buffer(&src, 0, &dst, 0, src.size());
    let m = GpuMatrix::from_buffer(dst, 0, rows, cols, cols).unwrap();
    let r1 = g
        .call(Rows {
            op: RowOp::LogSoftmax,
            x: &m,
            temperature: 1.0,
        })
        .on_device_into(&out)
        .record(&mut enc)
        .unwrap();
    let r2 = g
        .call(CrossEntropy {
            logits: &m,
            targets: Targets::classes(y.view()),
            options: o.clone(),
        })
        .on_device()
        .record(&mut enc)
        .unwrap();
    // Nothing ran yet: the encoder is the application's.
    queue.submit([enc.finish()]);
    assert_eq!(r1.finish().unwrap().dim(), (rows, cols));
    let lsm = g.download(&out).unwrap();
    assert_close_2d(
        lsm.view(),
        Reference.softmax_f64(x.view(), 1.0, true).unwrap().view(),
        "recorded log_softmax",
    );
    let r2 = r2.finish().unwrap();
    let got = smoothmax::CrossEntropyOutput {
        loss: r2.loss,
        grad: Some(g.download(r2.grad.as_ref().unwrap()).unwrap()),
        lse: r2.lse,
        sums: r2.sums,
    };
    let want = Reference
        .cross_entropy_f64(x.view(), Targets::classes(y.view()), &o)
        .unwrap();
    assert_ce_close(
        &got,
        &want,
        cols,
        1.0 / rows as f64,
        "recorded cross-entropy",
    );
    // A wrong output shape is refused.
    let mut enc = device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
    let small = g
        .upload(ndarray::Array2::<f32>::zeros((rows, 3)).view())
        .unwrap();
    assert!(matches!(
        g.call(Rows {
            op: RowOp::Softmax,
            x: &m,
            temperature: 1.0
        })
        .on_device_into(&small)
        .record(&mut enc),
        Err(Error::InvalidInput(_))
    ));
}
