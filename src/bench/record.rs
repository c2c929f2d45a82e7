//! One line of a benchmark's results, as the table, the JSON and the plot read it.

/// One measured line.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Record {
    /// Op name, or the yardstick's (`copy`, `exp-map`, `memcpy`, `row-sum`).
    pub op: String,
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// Element type of the input and the matrix outputs (`f32`, `f16`, `bf16`).
    pub dtype: String,
    /// `gpu-kernel`, `gpu-e2e` or `cpu`.
    pub device: String,
    /// Median of the timed runs, milliseconds.
    pub median_ms: f64,
    /// Fastest run, milliseconds.
    pub min_ms: f64,
    /// Slowest run, milliseconds.
    pub max_ms: f64,
    /// Bytes read plus written.
    pub bytes: u64,
    /// `bytes / median`, GB/s (1e9 bytes).
    pub gbps: f64,
    /// Throughput as a fraction of the copy (GPU) or memcpy (CPU) yardstick's.
    pub frac_copy: Option<f64>,
    /// Throughput as a fraction of the exp-map yardstick's (GPU kernel only).
    pub frac_exp_map: Option<f64>,
    /// Throughput as a fraction of the same device's row-sum yardstick's (read `B·C`, write
    /// `B`): for the ops that only read their input (logsumexp, cross-entropy forward), whose
    /// floor that is rather than the copy's.
    pub frac_row_sum: Option<f64>,
    /// CPU median / this median (GPU lines).
    pub speedup_vs_cpu: Option<f64>,
    /// `timestamps` or `wall`.
    pub clock: String,
}
