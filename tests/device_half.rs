//! f16 / bf16 matrices resident on the device: stored as half words (half the bytes), read
//! where they lie at odd offsets, odd column counts and odd row strides (rows starting
//! mid-word), outputs written in half (into a new matrix or a caller's, of either type), and
//! the cross-entropy gradient written in place over bf16 / f16 logits without touching the
//! neighbouring elements that share their words. There is no host widening on this path: the
//! kernels read and write the half words themselves.

mod common;

use common::typed::{assert_typed_close, random};
use common::{ce::grad_unit, gpu, Rng};
use ndarray::{Array1, Array2};
use smoothmax::gpu::{CrossEntropy, Rows};
use smoothmax::half::{bf16, f16};
use smoothmax::{CrossEntropyOptions, DType, Element, Gpu, GpuMatrix, Reference, RowOp, Targets};

/// `x` inside a wider device buffer of `E`: rows `stride` apart, starting `pad` elements in;
/// every other element of the buffer holds `sentinel`. Returns the matrix and the backing
/// 1-row matrix (to check the untouched elements).
fn placed<E: Element>(
    g: &Gpu,
    x: &Array2<E>,
    stride: usize,
    pad: usize,
    sentinel: E,
) -> (GpuMatrix, GpuMatrix) {
    let (rows, cols) = x.dim();
    let n = pad + rows * stride + 3;
    let mut flat = vec![sentinel; n];
    for r in 0..rows {
        for c in 0..cols {
            flat[pad + r * stride + c] = x[[r, c]];
        }
    }
    let backing = g
        .upload(Array2::from_shape_vec((1, n), flat).unwrap().view())
        .unwrap();
    assert_eq!(backing.dtype(), E::DTYPE);
    assert!(
        backing.buffer().size() <= ((n * 2) as u64).next_multiple_of(16),
        "stored as half words"
    );
    let m = GpuMatrix::from_buffer_typed(
        backing.buffer().clone(),
        (pad * 2) as u64,
        rows,
        cols,
        stride,
        E::DTYPE,
    )
    .unwrap();
    (m, backing)
}

fn row_ops_case<E: Element>(
    g: &Gpu,
    rows: usize,
    cols: usize,
    stride: usize,
    pad: usize,
    seed: u64,
) {
    let x =
        Array2::from_shape_vec((rows, cols), random::<E>(rows * cols, 3.0, true, seed)).unwrap();
    let w = x.mapv(|v| v.to_f32());
    let sentinel = E::from_f32(1234.0);
    let (m, _) = placed(g, &x, stride, pad, sentinel);
    let what = format!("{:?} [{rows}, {cols}] stride {stride} pad {pad}", E::DTYPE);
    for (op, log) in [(RowOp::Softmax, false), (RowOp::LogSoftmax, true)] {
        let want = Reference.softmax_f64(w.view(), 1.3, log).unwrap();
        // A new device matrix in the input's type.
        let out = g
            .call(Rows {
                op,
                x: &m,
                temperature: 1.3,
            })
            .on_device()
            .run()
            .unwrap();
        assert_eq!(out.dtype(), E::DTYPE, "{what}");
        let got = g.download_typed::<E>(&out).unwrap();
        let got: Vec<f64> = got.iter().map(|v| v.to_f32() as f64).collect();
        assert_typed_close(
            E::DTYPE,
            &got,
            want.as_slice().unwrap(),
            cols,
            1.0,
            &format!("{what} {op:?}"),
        );
        // Into a caller's matrix of the other half type, placed at an odd offset with an odd
        // stride: the output is written in that matrix's type, its neighbours untouched.
        let other = if E::DTYPE == DType::F16 {
            DType::BF16
        } else {
            DType::F16
        };
        let check_into = |dst: &GpuMatrix, backing: &GpuMatrix, dt: DType| {
            g.call(Rows {
                op,
                x: &m,
                temperature: 1.3,
            })
            .on_device_into(dst)
            .run()
            .unwrap();
            let got = g.download(dst).unwrap();
            let got: Vec<f64> = got.iter().map(|&v| v as f64).collect();
            assert_typed_close(
                dt,
                &got,
                want.as_slice().unwrap(),
                cols,
                1.0,
                &format!("{what} {op:?} into {dt}"),
            );
            let all = g.download(backing).unwrap();
            let inside =
                |i: usize| i >= 1 && (i - 1) % (cols + 1) < cols && (i - 1) / (cols + 1) < rows;
            for (i, &v) in all.iter().enumerate() {
                if !inside(i) {
                    assert_eq!(
                        v, -7.0,
                        "{what} {op:?} into {dt}: element {i} outside the matrix changed"
                    );
                }
            }
        };
        let zeros = Array2::<f32>::zeros((rows, cols));
        if other == DType::F16 {
            let (dst, backing) = placed(
                g,
                &zeros.mapv(f16::from_f32),
                cols + 1,
                1,
                f16::from_f32(-7.0),
            );
            check_into(&dst, &backing, DType::F16);
        } else {
            let (dst, backing) = placed(
                g,
                &zeros.mapv(bf16::from_f32),
                cols + 1,
                1,
                bf16::from_f32(-7.0),
            );
            check_into(&dst, &backing, DType::BF16);
        }
    }
    let lse = g
        .call(Rows {
            op: RowOp::LogSumExp,
            x: &m,
            temperature: 1.3,
        })
        .run()
        .unwrap();
    let want = Reference.logsumexp_f64(w.view(), 1.3).unwrap();
    let got: Vec<f64> = lse
        .into_per_row()
        .unwrap()
        .iter()
        .map(|&v| v as f64)
        .collect();
    assert_typed_close(
        DType::F32,
        &got,
        want.as_slice().unwrap(),
        cols,
        1.3,
        &format!("{what} lse"),
    );
}

#[test]
fn half_device_matrices_at_any_offset_and_stride() {
    let Some(g) = gpu() else { return };
    let mut seed = 0;
    for (rows, cols, stride, pad) in [
        (5, 7, 7, 0),
        (4, 7, 9, 1),
        (3, 32, 32, 0),
        (3, 32, 33, 3),
        (6, 64, 64, 4),
        (2, 1, 3, 1),
    ] {
        seed += 1;
        row_ops_case::<f16>(g, rows, cols, stride, pad, seed);
        row_ops_case::<bf16>(g, rows, cols, stride, pad, seed);
    }
}

fn in_place_case<E: Element>(
    g: &Gpu,
    rows: usize,
    cols: usize,
    stride: usize,
    pad: usize,
    seed: u64,
) {
    let x =
        Array2::from_shape_vec((rows, cols), random::<E>(rows * cols, 2.0, false, seed)).unwrap();
    let w = x.mapv(|v| v.to_f32());
    let mut rng = Rng(seed);
    let y: Array1<i64> = (0..rows)
        .map(|_| (rng.next_u64() % cols as u64) as i64)
        .collect();
    let o = CrossEntropyOptions {
        gradient: true,
        label_smoothing: 0.05,
        ..Default::default()
    };
    let sentinel = E::from_f32(99.0);
    let (m, backing) = placed(g, &x, stride, pad, sentinel);
    let out = g
        .call(CrossEntropy {
            logits: &m,
            targets: Targets::classes(y.view()),
            options: o.clone(),
        })
        .in_place()
        .run()
        .unwrap();
    let want = Reference
        .cross_entropy_f64(w.view(), Targets::classes(y.view()), &o)
        .unwrap();
    let what = format!(
        "{:?} in place [{rows}, {cols}] stride {stride} pad {pad}",
        E::DTYPE
    );
    assert_typed_close(
        DType::F32,
        &[out.loss.scalar().unwrap() as f64],
        &[want.reduced],
        cols,
        1.0,
        &what,
    );
    let grad = out.grad.unwrap();
    assert_eq!(grad.dtype(), E::DTYPE);
    let got = g.download_typed::<E>(&grad).unwrap();
    let got: Vec<f64> = got.iter().map(|v| v.to_f32() as f64).collect();
    let wg: Vec<f64> = want.grad.unwrap().iter().copied().collect();
    let unit = grad_unit(&Targets::classes(y.view()), None, &o, rows);
    assert_typed_close(E::DTYPE, &got, &wg, cols, unit, &format!("{what} grad"));
    // Elements between and around the rows share words with gradient elements: unchanged.
    let all = g.download_typed::<E>(&backing).unwrap();
    for (i, v) in all.iter().enumerate() {
        let inside = i >= pad && (i - pad) % stride < cols && (i - pad) / stride < rows;
        if !inside {
            assert_eq!(
                *v, sentinel,
                "{what}: element {i} outside the matrix changed"
            );
        }
    }
}

#[test]
fn in_place_gradient_over_half_logits() {
    let Some(g) = gpu() else { return };
    let mut seed = 100;
    for (rows, cols, stride, pad) in [
        (6, 5, 5, 0),
        (5, 5, 7, 1),
        (4, 16, 16, 0),
        (4, 16, 17, 1),
        (3, 40, 40, 4),
    ] {
        seed += 1;
        in_place_case::<bf16>(g, rows, cols, stride, pad, seed);
        in_place_case::<f16>(g, rows, cols, stride, pad, seed);
    }
}

/// The surrogate kernels read f32: half device matrices (here at an odd offset and stride)
/// are widened on the device first, so the result is the f32 op's on the widened values,
/// exactly; host half scores through the call API likewise.
#[test]
fn surrogates_widen_half_device_matrices() {
    let Some(g) = gpu() else { return };
    let x = Array2::from_shape_vec((3, 7), random::<bf16>(21, 2.0, false, 9)).unwrap();
    let (m, _) = placed(g, &x, 9, 1, bf16::from_f32(5.0));
    let w = x.mapv(|v| v.to_f32());
    let want = g
        .call(smoothmax::Surrogate::SoftArgmax {
            x: w.view(),
            temperature: 0.8,
        })
        .run()
        .unwrap();
    let got = g
        .call(smoothmax::Surrogate::SoftArgmax {
            x: &m,
            temperature: 0.8,
        })
        .run()
        .unwrap();
    assert_eq!(got, want);
    let host = g
        .call(smoothmax::Surrogate::SoftArgmax {
            x: x.view(),
            temperature: 0.8,
        })
        .run()
        .unwrap();
    assert_eq!(host, want);
}

/// `Gpu::convert`: widening is exact, narrowing rounds as the `half` crate does (to
/// nearest-even, past f16's range to ±inf), from a matrix at an odd offset and stride.
#[test]
fn convert_between_element_types() {
    let Some(g) = gpu() else { return };
    let x = Array2::from_shape_vec((4, 5), random::<bf16>(20, 3.0, true, 11)).unwrap();
    let (m, _) = placed(g, &x, 7, 3, bf16::from_f32(0.0));
    let wide = g.convert(&m, DType::F32).unwrap();
    assert_eq!(
        g.download_typed::<f32>(&wide).unwrap(),
        x.mapv(|v| v.to_f32())
    );
    let mut big = Array2::from_shape_vec((3, 6), random::<f32>(18, 3.0, true, 12)).unwrap();
    big[[0, 1]] = 70000.0; // past f16's range: +inf
    big[[2, 5]] = 65519.0; // below the rounding boundary: 65504
    let m32 = g.upload(big.view()).unwrap();
    let h = g.convert(&m32, DType::F16).unwrap();
    let got = g.download_typed::<f16>(&h).unwrap();
    assert_eq!(got, big.mapv(f16::from_f32));
    assert_eq!((got[[0, 1]], got[[2, 5]]), (f16::INFINITY, f16::MAX));
}

/// The call API's `output_dtype`: an f32 softmax and an f32 gradient from bf16 device logits.
#[test]
fn call_output_dtype() {
    let Some(g) = gpu() else { return };
    let x = Array2::from_shape_vec((3, 6), random::<bf16>(18, 2.0, false, 13)).unwrap();
    let m = g.upload(x.view()).unwrap();
    let w = x.mapv(|v| v.to_f32());
    let p = g
        .call(Rows {
            op: RowOp::Softmax,
            x: &m,
            temperature: 1.0,
        })
        .output_dtype(DType::F32)
        .on_device()
        .run()
        .unwrap();
    assert_eq!(p.dtype(), DType::F32);
    let want = Reference.softmax_f64(w.view(), 1.0, false).unwrap();
    let got: Vec<f64> = g.download(&p).unwrap().iter().map(|&v| v as f64).collect();
    assert_typed_close(
        DType::F32,
        &got,
        want.as_slice().unwrap(),
        6,
        1.0,
        "softmax f32",
    );
    let y = ndarray::array![0i64, 5, 2];
    let o = CrossEntropyOptions {
        gradient: true,
        ..Default::default()
    };
    let out = g
        .call(CrossEntropy {
            logits: &m,
            targets: Targets::classes(y.view()),
            options: o.clone(),
        })
        .output_dtype(DType::F32)
        .on_device()
        .run()
        .unwrap();
    let grad = out.grad.unwrap();
    assert_eq!(grad.dtype(), DType::F32);
    let want = Reference
        .cross_entropy_f64(w.view(), Targets::classes(y.view()), &o)
        .unwrap();
    let got: Vec<f64> = g
        .download(&grad)
        .unwrap()
        .iter()
        .map(|&v| v as f64)
        .collect();
    let wg: Vec<f64> = want.grad.unwrap().iter().copied().collect();
    assert_typed_close(DType::F32, &got, &wg, 6, 1.0 / 3.0, "ce grad f32");
}

/// Logsumexp writes f32: a half matrix to write it into is an error, and so is a matrix whose
/// last word lies outside its buffer; NaN payloads convert as the `half` crate does.
#[test]
fn half_matrix_errors_and_nan_bits() {
    let Some(g) = gpu() else { return };
    let x = Array2::from_elem((2, 3), bf16::from_f32(1.0));
    let m = g.upload(x.view()).unwrap();
    let out = g
        .upload(Array2::from_elem((2, 1), f16::ZERO).view())
        .unwrap();
    let e = g
        .call(Rows {
            op: RowOp::LogSumExp,
            x: &m,
            temperature: 1.0,
        })
        .on_device_into(&out)
        .run()
        .unwrap_err();
    assert!(e.to_string().contains("logsumexp writes f32"), "{e}");
    // 16 bytes hold 8 halves; [1, 7] at offset 4 ends at byte 18, inside the fifth word.
    let e = GpuMatrix::from_buffer_typed(m.buffer().clone(), 4, 1, 7, 7, DType::F16).unwrap_err();
    assert!(e.to_string().contains("needs 20 bytes"), "{e}");
    // Quiet and signalling NaNs with payloads, both directions, against the `half` crate.
    let nans = [0x7fc0_1234u32, 0x7f80_4321, 0xffc0_0001, 0x7fbf_e000];
    let v = Array2::from_shape_fn((1, 4), |(_, j)| f32::from_bits(nans[j]));
    let h = g.convert(&g.upload(v.view()).unwrap(), DType::F16).unwrap();
    let got = g.download_typed::<f16>(&h).unwrap();
    let want: Vec<u16> = v.iter().map(|&f| f16::from_f32(f).to_bits()).collect();
    assert_eq!(got.iter().map(|h| h.to_bits()).collect::<Vec<_>>(), want);
    let back = g
        .download_typed::<f32>(&g.convert(&h, DType::F32).unwrap())
        .unwrap();
    let want: Vec<u32> = got.iter().map(|h| h.to_f32().to_bits()).collect();
    assert_eq!(back.iter().map(|f| f.to_bits()).collect::<Vec<_>>(), want);
}
