//! `smoothmax bench`'s machine-readable output: `--json -` puts the records, and nothing else,
//! on stdout (the human report goes to stderr), and a file gets the same document.

mod common;

use common::cli::{bin, scratch};

fn bench_args() -> [&'static str; 9] {
    [
        "bench", "--device", "cpu", "--shape", "8x16", "--op", "softmax", "--runs", "1",
    ]
}

/// The records of a CPU-only run: the memcpy yardstick and the op asked for, at the shape
/// asked for, each with a positive time.
fn check_document(text: &str) {
    let doc: serde_json::Value = serde_json::from_str(text).expect("stdout is one JSON document");
    assert!(doc["adapter"].is_null(), "{doc}");
    let records = doc["records"].as_array().expect("records array");
    let ops: Vec<&str> = records.iter().map(|r| r["op"].as_str().unwrap()).collect();
    assert_eq!(ops, ["memcpy", "softmax"]);
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
