//! The bench's table (stdout) and JSON records.

use super::Record;
use std::fmt::Write;

fn opt(v: Option<f64>, digits: usize, suffix: &str) -> String {
    v.map_or("-".into(), |v| format!("{v:.digits$}{suffix}"))
}

/// A fixed-width table, one line per record.
pub fn table(records: &[Record]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<12} {:>15} {:<10} {:>9} {:>9} {:>8} {:>7} {:>8} {:>8}",
        "op", "shape", "device", "median ms", "spread", "GB/s", "/copy", "/exp-map", "vs cpu"
    );
    for r in records {
        let _ = writeln!(
            s,
            "{:<12} {:>15} {:<10} {:>9.3} {:>9} {:>8.2} {:>7} {:>8} {:>8}",
            r.op,
            format!("{}x{}", r.rows, r.cols),
            r.device,
            r.median_ms,
            format!(
                "±{:.0}%",
                50.0 * (r.max_ms - r.min_ms) / r.median_ms.max(1e-12)
            ),
            r.gbps,
            opt(r.frac_copy.map(|v| v * 100.0), 0, "%"),
            opt(r.frac_exp_map.map(|v| v * 100.0), 0, "%"),
            opt(r.speedup_vs_cpu, 2, "x"),
        );
    }
    s
}

fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn json_num(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v}"),
        _ => "null".into(),
    }
}

/// The records as a JSON document:
/// `{"adapter": ..., "round_trip_ms": ..., "records": [{...}, ...]}`.
pub fn to_json(adapter: Option<&str>, round_trip_ms: Option<f64>, records: &[Record]) -> String {
    let mut s = format!(
        "{{\n  \"adapter\": {},\n  \"round_trip_ms\": {},\n  \"records\": [\n",
        adapter.map_or("null".into(), json_str),
        json_num(round_trip_ms)
    );
    for (i, r) in records.iter().enumerate() {
        let _ = write!(
            s,
            "    {{\"op\": {}, \"rows\": {}, \"cols\": {}, \"device\": {}, \"median_ms\": {}, \"min_ms\": {}, \
             \"max_ms\": {}, \"bytes\": {}, \"gbps\": {}, \"frac_copy\": {}, \"frac_exp_map\": {}, \
             \"speedup_vs_cpu\": {}, \"clock\": {}}}{}",
            json_str(&r.op),
            r.rows,
            r.cols,
            json_str(&r.device),
            json_num(Some(r.median_ms)),
            json_num(Some(r.min_ms)),
            json_num(Some(r.max_ms)),
            r.bytes,
            json_num(Some(r.gbps)),
            json_num(r.frac_copy),
            json_num(r.frac_exp_map),
            json_num(r.speedup_vs_cpu),
            json_str(&r.clock),
            if i + 1 < records.len() { "," } else { "" }
        );
        s.push('\n');
    }
    s.push_str("  ]\n}\n");
    s
}
