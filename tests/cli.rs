//! The `smoothmax` binary: round trips on every device, and every bad input exits non-zero
//! with a one-line message and writes nothing.

mod common;

use common::cli::{assert_rejected, bin, devices, eval, raw_npy, scratch};
use common::{assert_close_1d, assert_close_2d, gpu, logits};
use ndarray::{Array1, Array2, ArrayD};
use ndarray_npy::{read_npy, write_npy};
use smoothmax::Reference;
use std::path::Path;

#[test]
fn round_trips_on_every_device() {
    let dir = scratch("roundtrip");
    let x = logits(37, 130, 3.0, 1.0, true, 11);
    let f32_in = dir.join("x32.npy");
    write_npy(&f32_in, &x).unwrap();
    let f64_in = dir.join("x64.npy");
    write_npy(&f64_in, &x.mapv(|v| v as f64)).unwrap();
    let t = 0.5f32;
    for dev in devices() {
        for input in [&f32_in, &f64_in] {
            for op in ["logsumexp", "softmax", "log-softmax"] {
                let out = dir.join(format!("{dev}-{op}"));
                let o = eval(op, input, &["--device", dev, "--temperature", "0.5"], &out);
                assert!(
                    o.status.success(),
                    "{dev} {op}: {}",
                    String::from_utf8_lossy(&o.stderr)
                );
                let what = format!("cli {dev} {op}");
                if op == "logsumexp" {
                    let got: Array1<f32> = read_npy(out.join("output.npy")).unwrap();
                    let want = Reference.logsumexp_f64(x.view(), t).unwrap();
                    common::assert_lse_close(got.view(), want.view(), 130, t, &what);
                } else {
                    let got: Array2<f32> = read_npy(out.join("output.npy")).unwrap();
                    let want = Reference
                        .softmax_f64(x.view(), t, op == "log-softmax")
                        .unwrap();
                    assert_close_2d(got.view(), want.view(), &what);
                }
            }
        }
    }
}

#[test]
fn default_device_runs() {
    let dir = scratch("default");
    let x = logits(3, 5, 1.0, 0.0, false, 1);
    let input = dir.join("x.npy");
    write_npy(&input, &x).unwrap();
    let o = eval("softmax", &input, &[], &dir.join("out"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got: Array2<f32> = read_npy(dir.join("out/output.npy")).unwrap();
    assert_eq!(got.dim(), (3, 5));
}

#[test]
fn info_lists_the_chosen_adapter() {
    let o = bin().arg("info").output().unwrap();
    assert!(o.status.success());
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(s.contains("chosen:"), "{s}");
    if let Some(g) = gpu() {
        assert!(s.contains(&g.adapter().name), "{s}");
        assert!(s.contains("max_storage_buffer_binding_size"), "{s}");
    }
}

#[test]
fn bad_inputs_exit_non_zero_with_one_line_and_write_nothing() {
    let dir = scratch("bad");
    let out = dir.join("out");
    let good = dir.join("good.npy");
    write_npy(&good, &logits(2, 3, 1.0, 0.0, false, 1)).unwrap();
    let g = good.to_str().unwrap();

    let text = dir.join("text.npy");
    std::fs::write(&text, "not an array").unwrap();
    let zero_d = dir.join("0d.npy");
    write_npy(&zero_d, &ndarray::arr0(1.0f32)).unwrap();
    let three_d = dir.join("3d.npy");
    write_npy(&three_d, &ArrayD::<f32>::zeros(vec![2, 2, 2])).unwrap();
    let ints = dir.join("ints.npy");
    write_npy(&ints, &Array2::<i32>::zeros((2, 2))).unwrap();
    let classes4 = dir.join("classes4.npy");
    write_npy(&classes4, &Array1::<i64>::zeros(4)).unwrap();
    let half = dir.join("half.npy");
    raw_npy(&half, "<f2", "(2, 2)", &[0u8; 8]);
    let truncated = dir.join("short.npy");
    raw_npy(&truncated, "<f4", "(2, 2)", &[0u8; 6]);

    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec!["eval", "softmax", "--input", "/no/such/file.npy"],
            vec![],
            "cannot open",
        ),
        (
            vec!["eval", "softmax", "--input", text.to_str().unwrap()],
            vec![],
            "not a valid .npy",
        ),
        // Every op takes any shape [d0, ..., C] (at least one axis); class targets have the
        // leading shape.
        (
            vec!["eval", "soft-argmax", "--input", zero_d.to_str().unwrap()],
            vec![],
            "0-dimensional",
        ),
        (
            vec![
                "eval",
                "smooth-accuracy",
                "--input",
                three_d.to_str().unwrap(),
                "--target",
                classes4.to_str().unwrap(),
            ],
            vec![],
            "need the leading shape [2, 2]",
        ),
        (
            vec!["eval", "softmax", "--input", zero_d.to_str().unwrap()],
            vec![],
            "0-dimensional",
        ),
        (
            vec!["eval", "softmax", "--input", ints.to_str().unwrap()],
            vec![],
            "dtype int32: expected float32, float64 or float16",
        ),
        (
            vec![
                "eval",
                "softmax",
                "--input",
                half.to_str().unwrap(),
                "--input-dtype",
                "bf16",
            ],
            vec![],
            "dtype float16, which --input-dtype bf16 does not read",
        ),
        (
            vec!["eval", "softmax", "--input", truncated.to_str().unwrap()],
            vec![],
            "(16 bytes of data) but the file holds 6",
        ),
        (
            vec!["eval", "softmax", "--input", g, "--temperature", "0"],
            vec![],
            "temperature",
        ),
        (
            vec!["eval", "softmax", "--input", g, "--temperature", "-2"],
            vec![],
            "temperature",
        ),
        (
            vec!["eval", "logsumexp", "--input", g, "--temperature", "nan"],
            vec![],
            "temperature",
        ),
        (
            vec!["eval", "logsumexp", "--input", g, "--temperature", "inf"],
            vec![],
            "temperature",
        ),
        (
            vec!["eval", "softmax", "--input", g, "--device", "gpu"],
            vec![("WGPU_ADAPTER_NAME", "no-such-adapter")],
            "no GPU adapter",
        ),
        (
            vec!["eval", "softmin", "--input", g],
            vec![],
            "unrecognized subcommand 'softmin'",
        ),
    ];
    for (args, env, needle) in cases {
        assert_rejected(&args, &env, needle, &out);
    }
}

#[test]
fn cross_entropy_round_trips_on_every_device() {
    use smoothmax::{CrossEntropyOptions, Reduction, Targets};
    let dir = scratch("ce");
    let (rows, cols) = (23, 70);
    let x = logits(rows, cols, 3.0, 0.0, true, 12);
    let y: Array1<i64> = (0..rows)
        .map(|i| {
            if i % 5 == 0 {
                -1
            } else {
                (i * 7 % cols) as i64
            }
        })
        .collect();
    // Probability targets: rows of a softmax (a distribution per row, as the contract says).
    let mut q = x.mapv(|v| if v.is_finite() { (v * 0.1).exp() } else { 0.0 });
    for mut r in q.rows_mut() {
        let s = r.sum();
        r.mapv_inplace(|v| v / s);
    }
    let w: Array1<f32> = (0..cols).map(|j| 0.5 + (j % 3) as f32).collect();
    let (xp, yp, qp, wp) = (
        dir.join("x.npy"),
        dir.join("y.npy"),
        dir.join("q.npy"),
        dir.join("w.npy"),
    );
    write_npy(&xp, &x).unwrap();
    write_npy(&yp, &y.mapv(|v| v as i32)).unwrap();
    write_npy(&qp, &q.mapv(|v| v as f64)).unwrap();
    write_npy(&wp, &w).unwrap();
    for dev in devices() {
        for (tp, probs) in [(&yp, false), (&qp, true)] {
            for red in ["none", "mean", "sum"] {
                let out = dir.join(format!("{dev}-{probs}-{red}"));
                let mut args = vec![
                    "--device",
                    dev,
                    "--target",
                    tp.to_str().unwrap(),
                    "--weight",
                    wp.to_str().unwrap(),
                ];
                args.extend([
                    "--reduction",
                    red,
                    "--label-smoothing",
                    "0.1",
                    "--z-loss",
                    "0.01",
                    "--softcap",
                    "20",
                ]);
                if !probs {
                    args.extend(["--ignore-index", "-1"]);
                }
                let o = eval("cross-entropy", &xp, &args, &out);
                assert!(
                    o.status.success(),
                    "{dev} {red}: {}",
                    String::from_utf8_lossy(&o.stderr)
                );
                let reduction = match red {
                    "none" => Reduction::None,
                    "mean" => Reduction::Mean,
                    _ => Reduction::Sum,
                };
                let opts = CrossEntropyOptions {
                    weight: Some(w.view()),
                    ignore_index: (!probs).then_some(-1),
                    label_smoothing: 0.1,
                    reduction,
                    z_loss: 0.01,
                    softcap: Some(20.0),
                    gradient: true,
                    ..Default::default()
                };
                let t = if probs {
                    Targets::probabilities(q.view())
                } else {
                    Targets::classes(y.view())
                };
                let want = Reference.cross_entropy_f64(x.view(), t, &opts).unwrap();
                let what = format!("cli ce {dev} probs={probs} {red}");
                let loss: ArrayD<f32> = read_npy(out.join("loss.npy")).unwrap();
                if red == "none" {
                    assert_eq!(loss.shape(), &[rows]);
                    let l = loss.into_dimensionality::<ndarray::Ix1>().unwrap();
                    assert_close_1d(l.view(), want.per_row.view(), cols, &what);
                } else {
                    assert_eq!(loss.ndim(), 0, "{what}: mean/sum loss is a 0-d array");
                    let l = ndarray::arr1(&[loss[[]]]);
                    assert_close_1d(l.view(), ndarray::arr1(&[want.reduced]).view(), cols, &what);
                }
                let lse: Array1<f32> = read_npy(out.join("lse.npy")).unwrap();
                assert_close_1d(lse.view(), want.lse.view(), cols, &format!("{what} lse"));
                let grad: Array2<f32> = read_npy(out.join("grad.npy")).unwrap();
                let unit = if red == "mean" {
                    if probs {
                        rows as f64
                    } else {
                        y.iter()
                            .filter(|&&v| v >= 0)
                            .map(|&v| w[v as usize] as f64)
                            .sum()
                    }
                } else {
                    1.0
                };
                let g = grad.mapv(|v| (v as f64 * unit) as f32);
                assert_close_2d(
                    g.view(),
                    want.grad.unwrap().mapv(|v| v * unit).view(),
                    &format!("{what} grad"),
                );
            }
        }
    }
}

#[test]
fn cross_entropy_bad_inputs_exit_non_zero_and_write_nothing() {
    let dir = scratch("ce-bad");
    let out = dir.join("out");
    let x = dir.join("x.npy");
    write_npy(&x, &logits(3, 4, 1.0, 0.0, false, 1)).unwrap();
    let file = |name: &str, f: &dyn Fn(&Path)| {
        let p = dir.join(name);
        f(&p);
        p.to_str().unwrap().to_string()
    };
    let y = file("y.npy", &|p| {
        write_npy(p, &ndarray::array![0i64, 3, 1]).unwrap()
    });
    let y_oob = file("y_oob.npy", &|p| {
        write_npy(p, &ndarray::array![0i64, 4, 1]).unwrap()
    });
    let y_2d = file("y2d.npy", &|p| {
        write_npy(p, &Array2::<i64>::zeros((3, 4))).unwrap()
    });
    let y_len = file("ylen.npy", &|p| {
        write_npy(p, &ndarray::array![0i32, 1]).unwrap()
    });
    let q_bad = file("qbad.npy", &|p| {
        write_npy(p, &Array2::<f32>::zeros((3, 5))).unwrap()
    });
    let q = file("q.npy", &|p| {
        write_npy(p, &Array2::<f32>::from_elem((3, 4), 0.25)).unwrap()
    });
    let w_len = file("wlen.npy", &|p| {
        write_npy(p, &Array1::<f32>::ones(3)).unwrap()
    });
    let w_neg = file("wneg.npy", &|p| {
        write_npy(p, &ndarray::array![1.0f32, -2.0, 1.0, 1.0]).unwrap()
    });
    let x_s = x.to_str().unwrap();
    let base = |t: &str| {
        vec![
            "eval".to_string(),
            "cross-entropy".into(),
            "--input".into(),
            x_s.into(),
            "--target".into(),
            t.into(),
        ]
    };
    let with = |t: &str, extra: &[&str]| {
        let mut v = base(t);
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "eval".into(),
                "cross-entropy".into(),
                "--input".into(),
                x_s.into(),
            ],
            "required arguments were not provided:\n  --target <TARGET>",
        ),
        (base(&y_oob), "target[1] = 4"),
        (base(&y_2d), "targets have shape [3, 4], expected [3]"),
        (base(&y_len), "targets have shape [2], expected [3]"),
        (base(&q_bad), "shape [3, 5]"),
        (base("/no/such/targets.npy"), "cannot open"),
        (with(&y, &["--weight", &w_len]), "weight has length 3"),
        (with(&y, &["--weight", &w_neg]), "weight[1] = -2"),
        (with(&y, &["--label-smoothing", "1.5"]), "label_smoothing"),
        (with(&y, &["--z-loss", "inf"]), "z_loss"),
        (with(&y, &["--softcap", "0"]), "softcap"),
        (with(&y, &["--softcap", "-3"]), "softcap"),
        (with(&q, &["--ignore-index", "-100"]), "ignore_index"),
        (with(&y, &["--reduction", "avg"]), "invalid value"),
        (with(&y, &["--device", "gpu"]), "no GPU adapter"),
    ];
    for (args, needle) in cases {
        let a: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        let env: Vec<(&str, &str)> = if needle == "no GPU adapter" {
            vec![("WGPU_ADAPTER_NAME", "no-such-adapter")]
        } else {
            vec![]
        };
        assert_rejected(&a, &env, needle, &out);
    }
}
