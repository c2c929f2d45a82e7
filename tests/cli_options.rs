//! The `smoothmax` binary's command line and environment: each op's own options, every float
//! syntax, every target dtype, lying headers, exit codes, and settings read from the
//! environment.

mod common;

use common::cli::{assert_rejected, bin, eval, raw_npy, scratch};
use common::{assert_close_1d, gpu, logits};
use ndarray::ArrayD;
use ndarray_npy::{read_npy, write_npy};
use smoothmax::{Backend, Reference};
use std::path::Path;

/// Each op accepts exactly its own options: one that belongs to another op is a usage error
/// (exit 2) naming the option and the op, and nothing runs.
#[test]
fn options_of_other_ops_are_usage_errors() {
    let dir = scratch("stray");
    let x = dir.join("x.npy");
    write_npy(&x, &logits(2, 3, 1.0, 0.0, false, 1)).unwrap();
    let x = x.to_str().unwrap();
    for (op, stray) in [
        ("softmax", "--label-smoothing"),
        ("logsumexp", "--beta"),
        ("log-softmax", "--margin"),
        ("softmax", "--weight"),
        ("boltzmann-max", "--temperature"),
        ("soft-argmax", "--target"),
        ("cross-entropy", "--beta"),
        ("hinge", "--pos-weight"),
        ("smooth-f1", "--temperature"),
        ("pairwise-max", "--reduction"),
        ("multi-margin", "--z-loss"),
    ] {
        let o = bin()
            .args(["eval", op, "--input", x, "--out", "unused", stray, "1"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{op} {stray}: {err}");
        assert!(
            err.contains(&format!("unexpected argument '{stray}'"))
                && err.contains(&format!("smoothmax eval {op}")),
            "{op} {stray}: {err}"
        );
    }
    // A pairwise form's parameter that the chosen form does not take.
    for (form, stray, takes) in [
        ("acon", "--mu", "--beta"),
        ("logcosh", "--beta", "--k"),
        ("erf", "--k", "--mu"),
    ] {
        let o = bin()
            .args([
                "eval",
                "pairwise-max",
                "--input",
                x,
                "--other",
                x,
                "--form",
                form,
            ])
            .args([stray, "2", "--out", "unused"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        let want =
            format!("{stray} does not apply to pairwise-max --form {form} (it takes {takes})");
        assert!(err.contains(&want), "{err}");
        assert!(!Path::new("unused").exists());
    }
}

/// Numeric options take every float syntax Rust, Python and C print (an exponent with a sign,
/// hexadecimal floats for exact subnormals), and values f32 cannot hold are usage errors.
#[test]
fn numeric_options_take_every_printed_float_syntax() {
    let dir = scratch("numbers");
    let x = logits(2, 5, 1.0, 0.0, false, 3);
    let xp = dir.join("x.npy");
    write_npy(&xp, &x).unwrap();
    for (op, flag, value, want) in [
        ("boltzmann-max", "--beta", "-1e+30", -1e30f32),
        ("boltzmann-max", "--beta", "-0x1.8p+1", -3.0),
        ("softmax", "--temperature", "0x1p-149", f32::from_bits(1)),
        ("softmax", "--temperature", "2.5E-3", 2.5e-3),
        ("logsumexp", "--temperature", "+.5", 0.5),
    ] {
        let out = dir.join(format!("{op}-{value}"));
        let o = eval(op, &xp, &["--device", "reference", flag, value], &out);
        assert!(
            o.status.success(),
            "{op} {flag} {value}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        // The value reached the op exactly: the output equals the reference at `want`.
        let got: ArrayD<f32> = read_npy(out.join("output.npy")).unwrap();
        let expect: Vec<f32> = match op {
            "boltzmann-max" => Reference
                .boltzmann_max(x.view(), want)
                .unwrap()
                .value
                .to_vec(),
            "softmax" => Reference
                .softmax(x.view(), want)
                .unwrap()
                .iter()
                .copied()
                .collect(),
            _ => Reference.logsumexp(x.view(), want).unwrap().to_vec(),
        };
        let got: Vec<f32> = got.iter().copied().collect();
        assert_eq!(got, expect, "{op} {flag} {value}");
    }
    for (value, needle) in [
        ("1e-50", "round to 0"),
        ("1e39", "round to infinity"),
        ("1,5", "not a number"),
    ] {
        assert_rejected(
            &[
                "eval",
                "softmax",
                "--input",
                xp.to_str().unwrap(),
                "--temperature",
                value,
            ],
            &[],
            needle,
            &dir.join("bad"),
        );
    }
}

/// Class targets of every integer dtype (tokenizers hand out uint32 ids); an unsupported
/// target dtype names the accepted ones; a uint64 index beyond int64 is out of range by row.
#[test]
fn class_targets_of_every_integer_dtype() {
    let dir = scratch("dtypes");
    let x = logits(3, 4, 1.0, 0.0, false, 5);
    let xp = dir.join("x.npy");
    write_npy(&xp, &x).unwrap();
    let y = [2u8, 0, 3];
    let want = Reference
        .cross_entropy_f64(
            x.view(),
            smoothmax::Targets::classes(ndarray::arr1(&[2i64, 0, 3]).view()),
            &smoothmax::CrossEntropyOptions {
                gradient: true,
                ..Default::default()
            },
        )
        .unwrap();
    for descr in [
        "|i1", "|u1", "<i2", ">u2", "<i4", "<u4", "<i8", "<u8", ">i8",
    ] {
        let size: usize = descr[2..].parse().unwrap();
        let big = descr.starts_with('>');
        let data: Vec<u8> = y
            .iter()
            .flat_map(|&v| {
                let mut b = vec![0u8; size];
                b[if big { size - 1 } else { 0 }] = v;
                b
            })
            .collect();
        let yp = dir.join(format!("y{}.npy", &descr[1..]));
        raw_npy(&yp, descr, "(3,)", &data);
        for op in ["cross-entropy", "smooth-accuracy", "multi-margin"] {
            let out = dir.join(format!("{op}-{}", &descr[1..]));
            let o = eval(
                op,
                &xp,
                &["--device", "cpu", "--target", yp.to_str().unwrap()],
                &out,
            );
            assert!(
                o.status.success(),
                "{op} {descr}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            if op == "cross-entropy" {
                let loss: ArrayD<f32> = read_npy(out.join("loss.npy")).unwrap();
                let l = ndarray::arr1(&[loss[[]]]);
                assert_close_1d(l.view(), ndarray::arr1(&[want.reduced]).view(), 4, descr);
            }
        }
    }
    let yh = dir.join("yh.npy");
    raw_npy(&yh, "<f2", "(3,)", &[0u8; 6]);
    let huge = dir.join("yhuge.npy");
    let mut data = vec![0u8; 24];
    data[16..24].copy_from_slice(&(u64::MAX - 1).to_le_bytes());
    raw_npy(&huge, "<u8", "(3,)", &data);
    let xs = xp.to_str().unwrap();
    for (t, needle) in [
        // Float targets are probabilities of the logits' shape (float16 ones too).
        (&yh, "targets have shape [3], expected [3, 4]"),
        (&huge, "target[2] = 18446744073709551614"),
    ] {
        assert_rejected(
            &[
                "eval",
                "cross-entropy",
                "--input",
                xs,
                "--target",
                t.to_str().unwrap(),
            ],
            &[],
            needle,
            &dir.join("bad"),
        );
    }
}

/// A 200-byte file whose header claims [10^8, 10^8] float32 values (40 PB) is a one-line input
/// error, not an allocation failure and a core dump.
#[test]
fn a_lying_header_is_a_clean_error() {
    let dir = scratch("lying");
    let p = dir.join("huge.npy");
    raw_npy(&p, "<f4", "(100000000, 100000000)", &[0u8; 72]);
    assert_eq!(std::fs::metadata(&p).unwrap().len(), 200);
    assert_rejected(
        &[
            "eval",
            "softmax",
            "--device",
            "cpu",
            "--input",
            p.to_str().unwrap(),
        ],
        &[],
        "40000000000000000 bytes of data) but the file holds 72",
        &dir.join("out"),
    );
}

/// A failure after the inputs were accepted exits 1, not 2: here the output directory cannot
/// be created (its path runs through a regular file).
#[test]
fn run_time_failures_exit_one() {
    let dir = scratch("runtime");
    let xp = dir.join("x.npy");
    write_npy(&xp, &logits(2, 3, 1.0, 0.0, false, 1)).unwrap();
    let o = eval("softmax", &xp, &["--device", "cpu"], &xp.join("out"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with("smoothmax: error: cannot create") && err.lines().count() == 1,
        "{err}"
    );
}

/// On a machine without a desktop session (no XDG_RUNTIME_DIR: CI, servers, containers), a
/// GPU run prints nothing on stderr: Mesa's device-select layer used to print an error there
/// twice (see `gpu::context::headless_vulkan`).
#[test]
fn gpu_runs_without_a_runtime_dir_print_nothing_on_stderr() {
    if gpu().is_none() {
        return; // skipped loudly by gpu() (or a failure under SMOOTHMAX_REQUIRE_GPU=1)
    }
    let dir = scratch("xdg");
    let xp = dir.join("x.npy");
    write_npy(&xp, &logits(4, 9, 1.0, 0.0, false, 2)).unwrap();
    for args in [
        &["info"][..],
        &["eval", "softmax", "--device", "gpu", "--input"][..],
    ] {
        let mut c = bin();
        c.args(args).env_remove("XDG_RUNTIME_DIR");
        if args.len() > 1 {
            c.arg(&xp).arg("--out").arg(dir.join("out"));
        }
        let o = c.output().unwrap();
        assert!(o.status.success(), "{args:?}");
        assert_eq!(String::from_utf8_lossy(&o.stderr), "", "{args:?}");
    }
}

/// `smoothmax info` names the CPU build that runs: the one SMOOTHMAX_CPU_ISA asks for (CI runs
/// the suites under each), else the widest supported; an unknown name is an input error.
#[test]
fn info_names_the_cpu_build() {
    let o = bin().arg("info").output().unwrap();
    let s = String::from_utf8_lossy(&o.stdout);
    let active = smoothmax::Cpu::new().isa().unwrap();
    assert!(s.contains(&format!("cpu build: {active} (")), "{s}");
    if let Ok(want) = std::env::var("SMOOTHMAX_CPU_ISA") {
        assert_eq!(active.name(), want);
    }
    for isa in smoothmax::CpuIsa::supported() {
        let o = bin()
            .arg("info")
            .env("SMOOTHMAX_CPU_ISA", isa.name())
            .output()
            .unwrap();
        let s = String::from_utf8_lossy(&o.stdout);
        assert!(
            s.contains(&format!("cpu build: {isa} (SMOOTHMAX_CPU_ISA={isa})")),
            "{s}"
        );
    }
    let o = bin()
        .arg("info")
        .env("SMOOTHMAX_CPU_ISA", "avx9")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        err.contains("SMOOTHMAX_CPU_ISA=\"avx9\" is not valid"),
        "{err}"
    );
}

/// Settings read from the environment are checked: an unknown value is an input error naming
/// the variable (exit 2), never a silent default; `info` names the kernel layout in force.
#[test]
fn environment_settings_are_checked() {
    let dir = scratch("env");
    let xp = dir.join("x.npy");
    write_npy(&xp, &logits(2, 3, 1.0, 0.0, false, 1)).unwrap();
    let x = xp.to_str().unwrap();
    let mut cases = vec![("SMOOTHMAX_CPU_ISA", "sse9", "cpu")];
    if gpu().is_some() {
        cases.extend([
            ("SMOOTHMAX_GPU_POLICY", "fast", "gpu"),
            ("SMOOTHMAX_NO_POOL", "yes", "gpu"),
        ]);
        // Without --device too: a bad setting is reported, not a silent fallback to the CPU.
        let o = bin()
            .args(["eval", "softmax", "--input", x, "--out", "unused"])
            .env("SMOOTHMAX_GPU_POLICY", "fast")
            .output()
            .unwrap();
        assert_eq!(
            o.status.code(),
            Some(2),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        for layout in ["gpu", "cpu"] {
            let o = bin()
                .arg("info")
                .env("SMOOTHMAX_GPU_POLICY", layout)
                .output()
                .unwrap();
            let s = String::from_utf8_lossy(&o.stdout);
            assert!(s.contains(&format!("kernel layout: {layout}")), "{s}");
        }
    }
    for (var, value, dev) in cases {
        let o = bin()
            .args([
                "eval", "softmax", "--device", dev, "--input", x, "--out", "unused",
            ])
            .env(var, value)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{var}: {err}");
        assert!(
            err.contains(&format!("{var}=\"{value}\" is not valid")),
            "{var}: {err}"
        );
    }
    assert!(!Path::new("unused").exists());
}
