//! Running the `smoothmax` binary in tests: scratch directories, hand-written .npy files and
//! the check every rejected invocation passes.

use super::gpu;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_smoothmax"))
}

/// A fresh scratch directory under the target dir (no tempfile dependency needed).
pub fn scratch(name: &str) -> PathBuf {
    let d =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub fn eval(op: &str, input: &Path, extra: &[&str], out: &Path) -> Output {
    let mut c = bin();
    c.args(["eval", op, "--input"])
        .arg(input)
        .arg("--out")
        .arg(out)
        .args(extra);
    c.output().unwrap()
}

pub fn devices() -> Vec<&'static str> {
    let mut d = vec!["cpu", "reference"];
    if gpu().is_some() {
        d.push("gpu");
    }
    d
}

/// A .npy file written by hand, for dtypes ndarray-npy will not write.
pub fn raw_npy(path: &Path, descr: &str, shape: &str, data: &[u8]) {
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

/// Runs a bad invocation: exit status 2 (usage or input error), a message naming `needle`,
/// and no --out created. smoothmax's own errors are one line (`smoothmax: error: ...`);
/// command-line errors are clap's, hints and usage line included (`error: ...`).
pub fn assert_rejected(args: &[&str], env: &[(&str, &str)], needle: &str, out: &Path) {
    let mut c = bin();
    c.args(args).arg("--out").arg(out);
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c.output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{args:?}: status, stderr {err}");
    if err.starts_with("smoothmax: error: ") {
        assert_eq!(err.lines().count(), 1, "{args:?}: one line expected: {err}");
    } else {
        assert!(err.starts_with("error: "), "{args:?}: {err}");
    }
    assert!(
        err.to_lowercase().contains(&needle.to_lowercase()),
        "{args:?}: {err:?} lacks {needle:?}"
    );
    assert!(!out.exists(), "{args:?}: wrote {}", out.display());
}
