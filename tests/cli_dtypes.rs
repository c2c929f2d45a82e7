//! The CLI's element types and shapes: float16 files read as f16, uint16 bit patterns as bf16
//! (`--input-dtype bf16`), N-D inputs and targets, `--output-dtype` choosing the matrix
//! outputs' type (bf16 written as uint16 bit patterns), on every device, against the f64
//! reference on the widened inputs.

mod common;

use common::cli::{assert_rejected, devices, eval, raw_npy, scratch};
use common::typed::{assert_typed_close, random};
use ndarray::{Array2, ArrayD};
use ndarray_npy::read_npy;
use smoothmax::half::{bf16, f16};
use smoothmax::{CrossEntropyOptions, DType, Reference, Targets};
use std::path::Path;

/// The elements of a little-endian 16-bit .npy file (float16 or uint16) and its shape.
fn read16(path: &Path) -> (String, Vec<usize>, Vec<u16>) {
    let b = std::fs::read(path).unwrap();
    let hlen = u16::from_le_bytes([b[8], b[9]]) as usize;
    let h = std::str::from_utf8(&b[10..10 + hlen]).unwrap();
    let descr = h.split("'descr': '").nth(1).unwrap()[..3].to_string();
    let shape: Vec<usize> = h
        .split("'shape': (")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap()
        .split(',')
        .filter_map(|d| d.trim().parse().ok())
        .collect();
    let v = b[10 + hlen..]
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    (descr, shape, v)
}

#[test]
fn half_inputs_and_outputs_of_any_shape() {
    let dir = scratch("dtypes");
    let x: Vec<bf16> = random(2 * 3 * 5, 2.0, true, 3);
    let bits: Vec<u8> = x.iter().flat_map(|v| v.to_bits().to_le_bytes()).collect();
    let input = dir.join("x_bf16.npy");
    raw_npy(&input, "<u2", "(2, 3, 5)", &bits);
    let w = Array2::from_shape_vec((6, 5), x.iter().map(|v| v.to_f32()).collect()).unwrap();
    let want = Reference.softmax_f64(w.view(), 0.5, false).unwrap();
    let want_lse = Reference.logsumexp_f64(w.view(), 0.5).unwrap();
    for dev in devices() {
        let out = dir.join(format!("sm-{dev}"));
        let r = eval(
            "softmax",
            &input,
            &[
                "--input-dtype",
                "bf16",
                "--output-dtype",
                "bf16",
                "--temperature",
                "0.5",
                "--device",
                dev,
            ],
            &out,
        );
        assert!(
            r.status.success(),
            "{dev}: {}",
            String::from_utf8_lossy(&r.stderr)
        );
        let (descr, shape, v) = read16(&out.join("output.npy"));
        assert_eq!((descr.as_str(), shape), ("<u2", vec![2, 3, 5]), "{dev}");
        let got: Vec<f64> = v.iter().map(|&b| bf16::from_bits(b).to_f64()).collect();
        assert_typed_close(DType::BF16, &got, want.as_slice().unwrap(), 5, 1.0, dev);
        // logsumexp: f32, in the leading shape.
        let out = dir.join(format!("lse-{dev}"));
        let r = eval(
            "logsumexp",
            &input,
            &[
                "--input-dtype",
                "bf16",
                "--temperature",
                "0.5",
                "--device",
                dev,
            ],
            &out,
        );
        assert!(
            r.status.success(),
            "{dev}: {}",
            String::from_utf8_lossy(&r.stderr)
        );
        let lse: ArrayD<f32> = read_npy(out.join("output.npy")).unwrap();
        assert_eq!(lse.shape(), &[2, 3]);
        let got: Vec<f64> = lse.iter().map(|&v| v as f64).collect();
        assert_typed_close(DType::F32, &got, want_lse.as_slice().unwrap(), 5, 0.5, dev);
    }
}

#[test]
fn float16_files_and_nd_cross_entropy() {
    let dir = scratch("dtypes-ce");
    let x: Vec<f16> = random(2 * 2 * 7, 2.0, false, 4);
    let bits: Vec<u8> = x.iter().flat_map(|v| v.to_bits().to_le_bytes()).collect();
    let input = dir.join("x_f16.npy");
    raw_npy(&input, "<f2", "(2, 2, 7)", &bits);
    let y = ndarray::array![[1i64, 6], [0, 3]];
    let target = dir.join("y.npy");
    ndarray_npy::write_npy(&target, &y).unwrap();
    let w = Array2::from_shape_vec((4, 7), x.iter().map(|v| v.to_f32()).collect()).unwrap();
    let yf = y.iter().copied().collect::<ndarray::Array1<i64>>();
    let o = CrossEntropyOptions {
        gradient: true,
        ..Default::default()
    };
    let want = Reference
        .cross_entropy_f64(w.view(), Targets::classes(yf.view()), &o)
        .unwrap();
    for dev in devices() {
        let out = dir.join(format!("ce-{dev}"));
        let mut args = vec!["--device", dev];
        let r = eval(
            "cross-entropy",
            &input,
            &[
                &[
                    "--target",
                    target.to_str().unwrap(),
                    "--output-dtype",
                    "f16",
                ][..],
                &args[..],
            ]
            .concat(),
            &out,
        );
        assert!(
            r.status.success(),
            "{dev}: {}",
            String::from_utf8_lossy(&r.stderr)
        );
        let (descr, shape, v) = read16(&out.join("grad.npy"));
        assert_eq!((descr.as_str(), shape), ("<f2", vec![2, 2, 7]), "{dev}");
        let got: Vec<f64> = v.iter().map(|&b| f16::from_bits(b).to_f64()).collect();
        let wg: Vec<f64> = want.grad.as_ref().unwrap().iter().copied().collect();
        assert_typed_close(DType::F16, &got, &wg, 7, 0.25, dev);
        let lse: ArrayD<f32> = read_npy(out.join("lse.npy")).unwrap();
        assert_eq!(lse.shape(), &[2, 2]);
        // Default output type: f32, as before.
        args.extend(["--target", target.to_str().unwrap()]);
        let out2 = dir.join(format!("ce32-{dev}"));
        let r = eval("cross-entropy", &input, &args, &out2);
        assert!(r.status.success());
        let g: ArrayD<f32> = read_npy(out2.join("grad.npy")).unwrap();
        assert_eq!(g.shape(), &[2, 2, 7]);
        let got: Vec<f64> = g.iter().map(|&v| v as f64).collect();
        assert_typed_close(DType::F32, &got, &wg, 7, 0.25, dev);
    }
    // Bad shapes and types are input errors, before any work.
    let bad_y = dir.join("bad_y.npy");
    ndarray_npy::write_npy(&bad_y, &ndarray::array![1i64, 2, 3, 4]).unwrap();
    let out = dir.join("rejected");
    assert_rejected(
        &[
            "eval",
            "cross-entropy",
            "--input",
            input.to_str().unwrap(),
            "--target",
            bad_y.to_str().unwrap(),
        ],
        &[],
        "expected [2, 2]",
        &out,
    );
    let u16_input = dir.join("x_u16.npy");
    raw_npy(&u16_input, "<u2", "(2, 7)", &bits[..28]);
    assert_rejected(
        &["eval", "softmax", "--input", u16_input.to_str().unwrap()],
        &[],
        "--input-dtype bf16",
        &out,
    );
    assert_rejected(
        &[
            "eval",
            "softmax",
            "--input",
            input.to_str().unwrap(),
            "--input-dtype",
            "bf16",
        ],
        &[],
        "does not read",
        &out,
    );
}
