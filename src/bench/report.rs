//! The bench's table (stdout) and JSON records.

use super::config::spread;
use super::record::Record;
use std::fmt::Write;

fn opt(v: Option<f64>, digits: usize, suffix: &str) -> String {
    v.map_or("-".into(), |v| format!("{v:.digits$}{suffix}"))
}

/// A fixed-width table, one line per record.
pub fn table(records: &[Record]) -> String {
    let mut s = String::new();
    let w = records.iter().map(|r| r.op.len()).fold(12, usize::max);
    let _ = writeln!(
        s,
        "{:<w$} {:>15} {:<5} {:<10} {:>9} {:>9} {:>8} {:>7} {:>8} {:>8} {:>8}",
        "op",
        "shape",
        "type",
        "device",
        "median ms",
        "spread",
        "GB/s",
        "/copy",
        "/exp-map",
        "/row-sum",
        "vs cpu"
    );
    for r in records {
        let _ = writeln!(
            s,
            "{:<w$} {:>15} {:<5} {:<10} {:>9.3} {:>9} {:>8.2} {:>7} {:>8} {:>8} {:>8}",
            r.op,
            format!("{}x{}", r.rows, r.cols),
            r.dtype,
            r.device,
            r.median_ms,
            spread(r.min_ms, r.max_ms, r.median_ms),
            r.gbps,
            opt(r.frac_copy.map(|v| v * 100.0), 0, "%"),
            opt(r.frac_exp_map.map(|v| v * 100.0), 0, "%"),
            opt(r.frac_row_sum.map(|v| v * 100.0), 0, "%"),
            opt(r.speedup_vs_cpu, 2, "x"),
        );
    }
    s
}

/// The JSON document: `{"adapter": ..., "round_trip_ms": ..., "records": [{...}, ...]}`.
#[derive(serde::Serialize)]
struct Document<'a> {
    adapter: Option<&'a str>,
    round_trip_ms: Option<f64>,
    records: &'a [Record],
}

/// The records as a JSON document (non-finite numbers, which JSON lacks, as `null`).
pub fn to_json(
    adapter: Option<&str>,
    round_trip_ms: Option<f64>,
    records: &[Record],
) -> serde_json::Result<String> {
    let doc = Document {
        adapter,
        round_trip_ms,
        records,
    };
    serde_json::to_string_pretty(&doc).map(|s| s + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trips_and_writes_null_for_non_finite() {
        let r = Record {
            op: "softmax \"x\"".into(),
            rows: 2,
            cols: 3,
            dtype: "bf16".into(),
            device: "cpu".into(),
            median_ms: 1.5,
            min_ms: 1.0,
            max_ms: 2.0,
            bytes: 48,
            gbps: f64::NAN,
            frac_copy: Some(0.5),
            frac_exp_map: None,
            frac_row_sum: Some(0.25),
            speedup_vs_cpu: None,
            clock: "wall".into(),
        };
        let s = to_json(Some("llvmpipe"), None, std::slice::from_ref(&r)).unwrap();
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["adapter"], "llvmpipe");
        assert!(v["round_trip_ms"].is_null());
        let rec = &v["records"][0];
        assert_eq!(rec["op"], "softmax \"x\"");
        assert_eq!(rec["median_ms"], 1.5);
        assert!(rec["gbps"].is_null() && rec["frac_exp_map"].is_null());
        assert_eq!(rec["frac_copy"], 0.5);
        assert_eq!(rec["frac_row_sum"], 0.25);
    }
}
