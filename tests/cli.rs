//! The `smoothmax` binary: round trips on every device, and every bad input exits non-zero
//! with a one-line message and writes nothing.

mod common;

use common::{assert_close_1d, assert_close_2d, gpu, logits};
use ndarray::{Array1, Array2, ArrayD};
use ndarray_npy::{read_npy, write_npy};
use smoothmax::Reference;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_smoothmax"));
    // Mesa's window-system probe prints a warning to stderr when XDG_RUNTIME_DIR is unset;
    // give it one so stderr holds only what smoothmax says.
    let xdg = Path::new(env!("CARGO_TARGET_TMPDIR")).join("xdg");
    let _ = std::fs::create_dir_all(&xdg);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&xdg, std::fs::Permissions::from_mode(0o700));
    }
    c.env("XDG_RUNTIME_DIR", &xdg);
    c
}

/// A fresh scratch directory under the target dir (no tempfile dependency needed).
fn scratch(name: &str) -> PathBuf {
    let d =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn eval(op: &str, input: &Path, extra: &[&str], out: &Path) -> Output {
    let mut c = bin();
    c.args(["eval", op, "--input"])
        .arg(input)
        .arg("--out")
        .arg(out)
        .args(extra);
    c.output().unwrap()
}

fn devices() -> Vec<&'static str> {
    let mut d = vec!["cpu", "reference"];
    if gpu().is_some() {
        d.push("gpu");
    }
    d
}

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
                    assert_close_1d(got.view(), want.view(), 130, &what);
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

/// A .npy file written by hand, for dtypes ndarray-npy will not write.
fn raw_npy(path: &Path, descr: &str, shape: &str, data: &[u8]) {
    let mut dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + dict.len() + 1) % 64 != 0 {
        dict.push(' ');
    }
    dict.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    bytes.extend_from_slice(dict.as_bytes());
    bytes.extend_from_slice(data);
    std::fs::write(path, bytes).unwrap();
}

/// Runs a bad invocation: it must fail, print one line naming `needle`, and create no --out.
fn assert_rejected(args: &[&str], env: &[(&str, &str)], needle: &str, out: &Path) {
    let mut c = bin();
    c.args(args).arg("--out").arg(out);
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c.output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert!(!o.status.success(), "{args:?} succeeded");
    assert_eq!(
        lines.len(),
        1,
        "{args:?}: expected one line on stderr, got {err}"
    );
    assert!(
        lines[0].starts_with("smoothmax: error: "),
        "{args:?}: {:?}",
        lines[0]
    );
    assert!(
        lines[0].to_lowercase().contains(&needle.to_lowercase()),
        "{args:?}: {:?} lacks {needle:?}",
        lines[0]
    );
    assert!(!out.exists(), "{args:?}: wrote {}", out.display());
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
    let one_d = dir.join("1d.npy");
    write_npy(&one_d, &Array1::<f32>::zeros(4)).unwrap();
    let three_d = dir.join("3d.npy");
    write_npy(&three_d, &ArrayD::<f32>::zeros(vec![2, 2, 2])).unwrap();
    let ints = dir.join("ints.npy");
    write_npy(&ints, &Array2::<i32>::zeros((2, 2))).unwrap();
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
        (
            vec!["eval", "softmax", "--input", one_d.to_str().unwrap()],
            vec![],
            "2-D",
        ),
        (
            vec!["eval", "softmax", "--input", three_d.to_str().unwrap()],
            vec![],
            "2-D",
        ),
        (
            vec!["eval", "softmax", "--input", ints.to_str().unwrap()],
            vec![],
            "integer dtype",
        ),
        (
            vec!["eval", "softmax", "--input", half.to_str().unwrap()],
            vec![],
            "unsupported dtype",
        ),
        (
            vec!["eval", "softmax", "--input", truncated.to_str().unwrap()],
            vec![],
            "cannot read",
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
            "invalid value",
        ),
    ];
    for (args, env, needle) in cases {
        assert_rejected(&args, &env, needle, &out);
    }
}
