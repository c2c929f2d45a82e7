//! The bench's plot: throughput (GB/s, log scale) per op across shapes, one panel per device,
//! with the yardsticks drawn as dashed reference lines. Pure-Rust SVG (plotters). With several
//! element types measured, the plot shows the first one's lines (the table and JSON have all).

use super::record::Record;
use plotters::prelude::*;
use std::path::Path;

/// Every line's name, fixing its color.
const NAMES: [&str; 9] = [
    "copy",
    "exp-map",
    "memcpy",
    "row-sum",
    "logsumexp",
    "softmax",
    "log-softmax",
    "ce-fwd",
    "ce-fwd-bwd",
];

const COLORS: [RGBColor; 9] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(188, 189, 34),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(127, 127, 127),
    RGBColor(23, 190, 207),
];

fn panel(
    area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    title: &str,
    device: &str,
    yard: &[&str],
    records: &[Record],
    shapes: &[(usize, usize)],
) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let first = records.first().map(|r| r.dtype.as_str());
    let rs: Vec<&Record> = records
        .iter()
        .filter(|r| r.device == device && Some(r.dtype.as_str()) == first)
        .collect();
    if rs.is_empty() {
        return area
            .titled(&format!("{title}: not measured"), ("sans-serif", 16))
            .map(drop)
            .map_err(|e| err(&e));
    }
    let (lo, hi) = rs.iter().fold((f64::MAX, f64::MIN), |(a, b), r| {
        (a.min(r.gbps), b.max(r.gbps))
    });
    let shape_ix = |r: &Record| {
        shapes
            .iter()
            .position(|&s| s == (r.rows, r.cols))
            .unwrap_or(0) as f64
    };
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(
            -0.3f64..(shapes.len() as f64 - 0.7),
            (lo * 0.5..hi * 2.0).log_scale(),
        )
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_labels(shapes.len())
        .x_label_formatter(&|v| {
            let i = v.round() as usize;
            if (v - i as f64).abs() < 0.01 && i < shapes.len() {
                format!("{}x{}", shapes[i].0, shapes[i].1)
            } else {
                String::new()
            }
        })
        .y_desc("GB/s (read + written)")
        .draw()
        .map_err(|e| err(&e))?;
    let mut names: Vec<&str> = rs.iter().map(|r| r.op.as_str()).collect();
    names.dedup();
    let mut seen = Vec::new();
    for name in rs.iter().map(|r| r.op.as_str()) {
        if !seen.contains(&name) {
            seen.push(name);
        }
    }
    for name in &seen {
        // One color per name across both panels.
        let k = NAMES.iter().position(|n| n == name).unwrap_or(NAMES.len());
        let color = COLORS[k % COLORS.len()];
        let pts: Vec<(f64, f64)> = rs
            .iter()
            .filter(|r| r.op == *name)
            .map(|r| (shape_ix(r), r.gbps))
            .collect();
        let is_yard = yard.contains(name);
        let style = ShapeStyle {
            color: color.to_rgba(),
            filled: !is_yard,
            stroke_width: if is_yard { 1 } else { 2 },
        };
        if is_yard {
            chart
                .draw_series(DashedLineSeries::new(pts.clone(), 6, 4, style))
                .map_err(|e| err(&e))?
                .label(format!("{name} (yardstick)"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
        } else {
            chart
                .draw_series(LineSeries::new(pts.clone(), style))
                .map_err(|e| err(&e))?
                .label(name.to_string())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
            chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, 3, style)))
                .map_err(|e| err(&e))?;
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerLeft)
        .draw()
        .map_err(|e| err(&e))?;
    Ok(())
}

/// Writes the plot to `path` (SVG): GPU kernel time on the left, CPU on the right.
pub fn write_svg(path: &Path, adapter: Option<&str>, records: &[Record]) -> Result<(), String> {
    let mut shapes: Vec<(usize, usize)> = Vec::new();
    for r in records {
        if !shapes.contains(&(r.rows, r.cols)) {
            shapes.push((r.rows, r.cols));
        }
    }
    let root = SVGBackend::new(path, (1280, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let root = root
        .titled(
            &format!(
                "smoothmax bench: {}",
                adapter.unwrap_or("CPU only (no GPU adapter)")
            ),
            ("sans-serif", 20),
        )
        .map_err(|e| e.to_string())?;
    let (left, right) = root.split_horizontally(640);
    panel(
        &left,
        "GPU kernel time",
        "gpu-kernel",
        &["copy", "exp-map", "row-sum"],
        records,
        &shapes,
    )?;
    let cpu_yard = ["memcpy", "row-sum"];
    panel(&right, "CPU", "cpu", &cpu_yard, records, &shapes)?;
    root.present().map_err(|e| e.to_string())
}
