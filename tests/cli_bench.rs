//! `smoothmax bench`'s machine-readable output: `--json -` puts the records, and nothing else,
//! on stdout (the human report goes to stderr), and a file gets the same document.

mod common;

use common::cli::{bin, scratch};

fn bench_args() -> [&'static str; 9] {
    [
        "bench", "--device", "cpu", "--shape", "8x16", "--op", "softmax", "--runs", "1",
    ]
}

/// Runs `smoothmax <args> --json -` (which must succeed) and gives its records as
/// `(op, key, bytes)`, `key` naming the field the caller groups by; `check` sees each record.
fn records(
    args: &[&str],
    key: &str,
    check: impl Fn(&serde_json::Value),
) -> Vec<(String, String, u64)> {
    let out = bin().args(args).args(["--json", "-"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    doc["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            check(r);
            let s = |k: &str| r[k].as_str().unwrap().to_string();
            (s("op"), s(key), r["bytes"].as_u64().unwrap())
        })
        .collect()
}

/// `(op, key, bytes)` triples as `records` gives them.
fn owned(want: &[(&str, &str, u64)]) -> Vec<(String, String, u64)> {
    want.iter()
        .map(|(o, d, b)| (o.to_string(), d.to_string(), *b))
        .collect()
}

/// The records of a CPU-only run: the memcpy and row-sum yardsticks and the op asked for, at
/// the shape asked for, each with a positive time; softmax writes its rows, so it is not put
/// against the read-only yardstick.
fn check_document(text: &str) {
    let doc: serde_json::Value = serde_json::from_str(text).expect("stdout is one JSON document");
    assert!(doc["adapter"].is_null(), "{doc}");
    let records = doc["records"].as_array().expect("records array");
    let ops: Vec<&str> = records.iter().map(|r| r["op"].as_str().unwrap()).collect();
    assert_eq!(ops, ["memcpy", "row-sum", "softmax"]);
    assert!(records[2]["frac_row_sum"].is_null(), "{doc}");
    assert!(records[2]["frac_copy"].as_f64().unwrap() > 0.0, "{doc}");
    for r in records {
        assert_eq!(
            (r["rows"].as_u64(), r["cols"].as_u64()),
            (Some(8), Some(16))
        );
        assert_eq!(r["device"], "cpu");
        assert!(r["median_ms"].as_f64().unwrap() > 0.0, "{r}");
    }
}

#[test]
fn json_to_stdout_holds_only_the_records() {
    let out = bin()
        .args(bench_args())
        .args(["--json", "-"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    check_document(&String::from_utf8(out.stdout).unwrap());
    // The table went to stderr instead.
    assert!(String::from_utf8_lossy(&out.stderr).contains("softmax"));
}

#[test]
fn json_to_a_file_is_the_same_document() {
    let path = scratch("bench-json").join("bench.json");
    let out = bin()
        .args(bench_args())
        .arg("--json")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    check_document(&std::fs::read_to_string(&path).unwrap());
    assert!(String::from_utf8_lossy(&out.stdout).contains("softmax"));
}

/// `--dtype` (repeatable): every record carries its type, and the bytes counted are that
/// type's (softmax of [8, 16] reads and writes 128 elements: 1024 bytes in f32, 512 in bf16
/// and f16; the memcpy yardstick moves the same; the row-sum yardstick reads the 128
/// elements and writes 8 f32 sums).
#[test]
fn dtype_runs_each_type_and_counts_its_bytes() {
    let args: Vec<&str> = bench_args()
        .into_iter()
        .chain(["--dtype", "f32", "--dtype", "bf16", "--dtype", "f16"])
        .collect();
    let seen = records(&args, "dtype", |_| {});
    let want = owned(&[
        ("memcpy", "f32", 1024),
        ("row-sum", "f32", 512 + 32),
        ("softmax", "f32", 1024),
        ("memcpy", "bf16", 512),
        ("row-sum", "bf16", 256 + 32),
        ("softmax", "bf16", 512),
        ("memcpy", "f16", 512),
        ("row-sum", "f16", 256 + 32),
        ("softmax", "f16", 512),
    ]);
    assert_eq!(seen, want);
}

/// The GPU lines in a half type: the copy and exp-map yardsticks and the op's kernel and end
/// to end times, each record of type bf16 with bf16 bytes (the kernels read and write half
/// words; timing runs them on device-resident bf16 data).
#[test]
fn gpu_lines_in_bf16() {
    if common::gpu().is_none() {
        return;
    }
    let args = [
        "bench",
        "--device",
        "gpu",
        "--shape",
        "8x16",
        "--op",
        "ce-fwd-bwd",
        "--runs",
        "1",
        "--dtype",
        "bf16",
    ];
    let seen = records(&args, "device", |r| assert_eq!(r["dtype"], "bf16", "{r}"));
    // ce-fwd-bwd: 2-byte logits and gradient, 8-byte targets, 8 bytes (loss, lse) per row.
    let ce = 2 * 128 + 8 * 8 + 2 * 128 + 8 * 8;
    let want = owned(&[
        ("copy", "gpu-kernel", 512),
        ("exp-map", "gpu-kernel", 512),
        ("row-sum", "gpu-kernel", 256 + 32),
        ("ce-fwd-bwd", "gpu-kernel", ce),
        ("ce-fwd-bwd", "gpu-e2e", ce),
    ]);
    assert_eq!(seen, want);
}

/// Every surrogate through `--op` by its `eval` name, on the CPU and (with an adapter) the
/// GPU's kernel and end-to-end lines, with its compulsory bytes at [8, 16] in f32 (n = 128
/// elements, B = 8 rows): the scores read once, gradients written in the scores' type,
/// labels as f32, class targets as 8-byte integers, per-row values as f32.
#[test]
fn every_surrogate_op_with_its_bytes() {
    let (n, b) = (128u64, 8u64);
    let ops: [(&str, u64); 15] = [
        ("boltzmann-max", 4 * n + 4 * n + 4 * b),
        ("soft-argmax", 4 * n + 4 * n + 4 * b),
        ("power-max", 4 * n + 4 * n + 4 * b),
        ("smooth-accuracy", 4 * n + 8 * b + 4 * n),
        ("smooth-f1", 4 * n + 4 * n + 4 * n),
        ("smooth-f1-macro", 4 * n + 8 * b + 4 * n),
        ("multi-margin", 4 * n + 8 * b + 4 * n),
        ("binary-cross-entropy", 4 * n + 4 * n + 4 * n),
        ("hinge", 4 * n + 4 * n + 4 * n),
        ("squared-hinge", 4 * n + 4 * n + 4 * n),
        ("exponential", 4 * n + 4 * n + 4 * n),
        ("squared", 4 * n + 4 * n + 4 * n),
        ("pairwise-max", 2 * 4 * n + 3 * 4 * n),
        ("smooth-abs", 4 * n + 2 * 4 * n),
        ("smooth-floor", 4 * n + 2 * 4 * n),
    ];
    let mut args = vec!["bench", "--shape", "8x16", "--runs", "1", "--warmup", "0"];
    for (op, _) in &ops {
        args.extend(["--op", op]);
    }
    let seen = records(&args, "device", |_| {});
    let devices: &[&str] = if common::gpu().is_some() {
        &["cpu", "gpu-kernel", "gpu-e2e"]
    } else {
        &["cpu"]
    };
    let mut want: Vec<(&str, &str, u64)> = Vec::new();
    if common::gpu().is_some() {
        want.extend([
            ("copy", "gpu-kernel", 1024),
            ("exp-map", "gpu-kernel", 1024),
            ("row-sum", "gpu-kernel", 512 + 32),
        ]);
    }
    want.push(("memcpy", "cpu", 1024));
    want.push(("row-sum", "cpu", 512 + 32));
    for (op, bytes) in ops {
        for d in devices {
            want.push((op, d, bytes));
        }
    }
    assert_eq!(seen, owned(&want));
    // A misspelt op is a usage error listing the names.
    let out = bin().args(["bench", "--op", "power_max"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown op \"power_max\"") && err.contains("power-max"),
        "{err}"
    );
}

/// The read-only ops (logsumexp, cross-entropy forward) are put against the row-sum
/// yardstick of their own device, measured in the same run: `frac_row_sum` is their GB/s over
/// the yardstick's; the ops that write rows are not.
#[test]
fn read_only_ops_are_put_against_the_row_sum() {
    let mut args = vec!["bench", "--shape", "8x16", "--runs", "1", "--warmup", "0"];
    for op in ["logsumexp", "ce-fwd", "ce-fwd-bwd"] {
        args.extend(["--op", op]);
    }
    let out = bin().args(&args).args(["--json", "-"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let records = doc["records"].as_array().unwrap();
    let stick = |device: &str| {
        records
            .iter()
            .find(|r| r["op"] == "row-sum" && r["device"] == device)
            .map(|r| r["gbps"].as_f64().unwrap())
    };
    let mut checked = 0;
    for r in records {
        let (op, device) = (r["op"].as_str().unwrap(), r["device"].as_str().unwrap());
        let frac = r["frac_row_sum"].as_f64();
        match (op, device) {
            ("logsumexp" | "ce-fwd", "cpu" | "gpu-kernel") => {
                let want = r["gbps"].as_f64().unwrap() / stick(device).expect("yardstick");
                let got = frac.expect("read-only op against the row sum");
                assert!((got - want).abs() <= 1e-12 * want, "{r}");
                checked += 1;
            }
            _ => assert!(frac.is_none(), "{r}"),
        }
    }
    assert_eq!(checked, if common::gpu().is_some() { 4 } else { 2 });
}

/// The report names the CPU kernel build its CPU lines ran: the one `SMOOTHMAX_CPU_ISA`
/// picks, else the widest this processor runs.
#[test]
fn report_names_the_cpu_build() {
    let header = |isa: Option<&str>| {
        let mut cmd = bin();
        cmd.args(bench_args()).args(["--warmup", "0"]);
        cmd.env_remove("SMOOTHMAX_CPU_ISA");
        if let Some(isa) = isa {
            cmd.env("SMOOTHMAX_CPU_ISA", isa);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let line = text.lines().find(|l| l.starts_with("cpu threads:"));
        line.expect("a cpu threads line").to_string()
    };
    assert!(header(Some("baseline")).ends_with("cpu build: baseline"));
    let widest = smoothmax::CpuIsa::supported()[0].name();
    assert!(
        header(None).ends_with(&format!("cpu build: {widest}")),
        "{widest}"
    );
}
