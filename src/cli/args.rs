//! The command line: one clap subcommand per op, each accepting exactly its own options, so a
//! stray option (`eval softmax --label-smoothing 0.3`) is a usage error naming the option and
//! the op instead of being ignored.

use super::number::parse_f32;
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

pub const EXIT_CODES: &str = "\
Exit status: 0 on success; 2 for a usage or input error (bad option, unreadable or invalid \
.npy, wrong shape or dtype, a value out of range, no GPU for --device gpu), with nothing \
written; 1 for a failure at run time (GPU out of memory or lost, an output that cannot be \
written).";

/// Batched logsumexp / softmax / log-softmax, cross-entropy and the smooth surrogates on any
/// GPU wgpu reaches, with a CPU path and an f64 reference.
#[derive(Parser)]
#[command(name = "smoothmax", version, about, after_help = EXIT_CODES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// List the GPU adapters found, the one chosen, its limits and features, and the CPU
    /// kernel builds.
    Info,
    /// Evaluate an op on .npy inputs and write the results as .npy files into --out.
    #[command(after_help = EXIT_CODES)]
    Eval {
        #[command(subcommand)]
        op: EvalOp,
    },
    /// Benchmark every op on the GPU (kernel and end to end) and the CPU, beside copy / exp-map
    /// / memcpy / row-sum yardsticks measured in the same run.
    Bench(BenchArgs),
}

/// Options every `eval` op has.
#[derive(clap::Args)]
pub struct Io {
    /// Input: a .npy array [d0, ..., C] (reduced over the last axis; [B] below stands for the
    /// leading shape [d0, ...]) of float32 or float64 (read as f32), float16 (read as f16), or
    /// uint16 bf16 bit patterns with --input-dtype bf16.
    #[arg(long)]
    pub input: PathBuf,
    /// How to read --input: f32 (float32/float64 files), f16 (float16 files) or bf16 (uint16
    /// files of bf16 bit patterns, as `x.view(np.uint16)` gives for ml_dtypes' bfloat16).
    /// Default: from the file's dtype.
    #[arg(long, value_enum)]
    pub input_dtype: Option<DtypeName>,
    /// Element type of the matrix outputs (softmax, log-softmax, gradients): f32, f16
    /// (written as float16) or bf16 (written as uint16 bit patterns). Per-row values and
    /// losses are always float32.
    #[arg(long, value_enum, default_value = "f32")]
    pub output_dtype: DtypeName,
    /// Output directory (created); nothing is written there if the run fails.
    #[arg(long)]
    pub out: PathBuf,
    /// Backend; default: gpu when an adapter exists, else cpu.
    #[arg(long, value_enum)]
    pub device: Option<DeviceName>,
}

/// A temperature option (default 1).
#[derive(clap::Args)]
pub struct Temperature {
    /// Temperature T > 0 (decimal, or hexadecimal like 0x1p-149).
    #[arg(long, default_value = "1", value_parser = parse_f32, allow_hyphen_values = true)]
    pub temperature: f32,
}

/// A reduction option (default mean).
#[derive(clap::Args)]
pub struct ReductionArg {
    /// How per-row or per-element losses are combined.
    #[arg(long, value_enum, default_value = "mean")]
    pub reduction: ReductionName,
}

#[derive(Subcommand)]
pub enum EvalOp {
    /// T·ln Σ exp(x/T) per row: output.npy has shape [B].
    Logsumexp(RowArgs),
    /// softmax(x/T) per row: output.npy has shape [B, C].
    Softmax(RowArgs),
    /// log_softmax(x/T) per row: output.npy has shape [B, C].
    LogSoftmax(RowArgs),
    /// Softmax cross-entropy against --target: loss.npy, grad.npy, lse.npy.
    CrossEntropy(CrossEntropyArgs),
    /// Cross-entropy of the logits --input·Wᵀ + bias, with --input the hidden states
    /// [..., D] and --weight-matrix W [V, D], without the logits in memory: loss.npy, lse.npy,
    /// grad_hidden.npy, grad_weight.npy (and grad_bias.npy with --bias).
    LinearCrossEntropy(LinearCrossEntropyArgs),
    /// Boltzmann operator Σ x e^{βx} / Σ e^{βx} per row: output.npy [B], grad.npy.
    BoltzmannMax(BoltzmannArgs),
    /// Σ_j j·softmax(x/T)_j per row: output.npy [B], grad.npy.
    SoftArgmax(RowArgs),
    /// mean_i softmax(x_i/T)[y_i] against class --target [B]: output.npy (0-d), grad.npy.
    SmoothAccuracy(ClassMetricArgs),
    /// Binary smooth F1 2Σσ(x)y / Σ(σ(x) + y) against float --target [B, C] in [0, 1]:
    /// output.npy (0-d), grad.npy.
    SmoothF1(LabelArgs),
    /// Macro smooth F1 over classes from softmax(x/T) against class --target [B]: output.npy
    /// (0-d), grad.npy.
    SmoothF1Macro(ClassMetricArgs),
    /// Pairwise smooth max of --input and --other: output.npy, grad.npy (d/d input),
    /// grad_b.npy (d/d other).
    PairwiseMax(PairwiseArgs),
    /// Logistic loss = PyTorch's binary_cross_entropy_with_logits against float --target in
    /// [0, 1]: loss.npy, grad.npy.
    BinaryCrossEntropy(LogisticArgs),
    /// max(0, 1 − y·f) against ±1 (or 0/1) --target: loss.npy, grad.npy.
    Hinge(MarginArgs),
    /// max(0, 1 − y·f)²: loss.npy, grad.npy.
    SquaredHinge(MarginArgs),
    /// exp(−y·f): loss.npy, grad.npy.
    Exponential(MarginArgs),
    /// (1 − y·f)²: loss.npy, grad.npy.
    Squared(MarginArgs),
    /// PyTorch's MultiMarginLoss against class --target [B]: loss.npy, grad.npy.
    MultiMargin(MultiMarginArgs),
    /// Smooth absolute value |x| + ln(1 + e^{−2k|x|})/k element-wise (any shape): output.npy,
    /// grad.npy (tanh(kx)).
    SmoothAbs(SmoothAbsArgs),
    /// Smoothed floor Σ_n (σ(t(x − n)) − [n ≤ 0]) element-wise (any shape): output.npy,
    /// grad.npy.
    SmoothFloor(SmoothFloorArgs),
    /// Power-mean max (Σ_j x_j^p)^{1/p} per row of finite x ≥ 0: output.npy [B], grad.npy
    /// ((x_j/f)^{p−1}).
    PowerMax(PowerMaxArgs),
}

#[derive(clap::Args)]
pub struct PowerMaxArgs {
    #[command(flatten)]
    pub io: Io,
    /// The power p ≥ 1, finite (the row max as p → ∞, within a factor C^{1/p} of it).
    #[arg(long, value_parser = parse_f32, allow_hyphen_values = true)]
    pub p: f32,
}

#[derive(clap::Args)]
pub struct SmoothAbsArgs {
    #[command(flatten)]
    pub io: Io,
    /// Sharpness k ≥ 2^-126, finite (within ln 2/k of |x|).
    #[arg(long, default_value = "1", value_parser = parse_f32, allow_hyphen_values = true)]
    pub k: f32,
}

#[derive(clap::Args)]
pub struct SmoothFloorArgs {
    #[command(flatten)]
    pub io: Io,
    /// Sharpness t ≥ 2^-126, finite (the floor as t → ∞, x − 1/2 as t → 0).
    #[arg(long, default_value = "10", value_parser = parse_f32, allow_hyphen_values = true)]
    pub t: f32,
}

#[derive(clap::Args)]
pub struct RowArgs {
    #[command(flatten)]
    pub io: Io,
    #[command(flatten)]
    pub t: Temperature,
}

#[derive(clap::Args)]
pub struct CrossEntropyArgs {
    #[command(flatten)]
    pub io: Io,
    /// Targets: [B] class indices of any integer dtype, or float [B, C] probabilities.
    #[arg(long)]
    pub target: PathBuf,
    /// Class weights, a float [C] array (finite, >= 0).
    #[arg(long)]
    pub weight: Option<PathBuf>,
    /// Target value of ignored rows (default -100; class targets only).
    #[arg(long, allow_hyphen_values = true)]
    pub ignore_index: Option<i64>,
    /// Label smoothing in [0, 1].
    #[arg(long, default_value = "0", value_parser = parse_f32, allow_hyphen_values = true)]
    pub label_smoothing: f32,
    #[command(flatten)]
    pub reduction: ReductionArg,
    /// z-loss coefficient (adds z·lse² per non-ignored row), finite.
    #[arg(long, default_value = "0", value_parser = parse_f32, allow_hyphen_values = true)]
    pub z_loss: f32,
    /// Logit soft-capping c > 0 (logits become c·tanh(x/c)).
    #[arg(long, value_parser = parse_f32, allow_hyphen_values = true)]
    pub softcap: Option<f32>,
}

#[derive(clap::Args)]
pub struct LinearCrossEntropyArgs {
    #[command(flatten)]
    pub ce: CrossEntropyArgs,
    /// The classifier weights W [V, D] (float32/float64, float16, or uint16 bf16 bit patterns
    /// with --weight-dtype bf16).
    #[arg(long)]
    pub weight_matrix: PathBuf,
    /// How to read --weight-matrix (as --input-dtype). Default: from the file's dtype.
    #[arg(long, value_enum)]
    pub weight_dtype: Option<DtypeName>,
    /// A bias [V] (float).
    #[arg(long)]
    pub bias: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct BoltzmannArgs {
    #[command(flatten)]
    pub io: Io,
    /// Inverse temperature β, finite (any sign; 0 gives the mean).
    #[arg(long, default_value = "1", value_parser = parse_f32, allow_hyphen_values = true)]
    pub beta: f32,
}

#[derive(clap::Args)]
pub struct ClassMetricArgs {
    #[command(flatten)]
    pub io: Io,
    /// Class targets: an array of the input's leading shape [B], of any integer dtype.
    #[arg(long)]
    pub target: PathBuf,
    #[command(flatten)]
    pub t: Temperature,
}

#[derive(clap::Args)]
pub struct LabelArgs {
    #[command(flatten)]
    pub io: Io,
    /// Labels: a float array of the input's shape, in [0, 1].
    #[arg(long)]
    pub target: PathBuf,
}

#[derive(clap::Args)]
pub struct PairwiseArgs {
    #[command(flatten)]
    pub io: Io,
    /// The second argument, a .npy of the input's shape and type.
    #[arg(long)]
    pub other: PathBuf,
    /// Which smooth max.
    #[arg(long, value_enum, default_value = "erf")]
    pub form: FormName,
    /// --form erf|sqrt: μ > 0 (default 1).
    #[arg(long, value_parser = parse_f32, allow_hyphen_values = true)]
    pub mu: Option<f32>,
    /// --form acon: the sharpness β, finite (default 1).
    #[arg(long, value_parser = parse_f32, allow_hyphen_values = true)]
    pub beta: Option<f32>,
    /// --form logcosh: the sharpness k ≥ 2^-126 (default 1).
    #[arg(long, value_parser = parse_f32, allow_hyphen_values = true)]
    pub k: Option<f32>,
}

#[derive(clap::Args)]
pub struct MarginArgs {
    #[command(flatten)]
    pub io: Io,
    /// Labels ±1 (0 is read as −1), a float array of the input's shape.
    #[arg(long)]
    pub target: PathBuf,
    /// Weights, one per column: a float [C] array (finite).
    #[arg(long)]
    pub weight: Option<PathBuf>,
    #[command(flatten)]
    pub reduction: ReductionArg,
}

#[derive(clap::Args)]
pub struct LogisticArgs {
    #[command(flatten)]
    pub io: Io,
    /// Labels in [0, 1], a float array of the input's shape.
    #[arg(long)]
    pub target: PathBuf,
    /// Weights, one per column: a float [C] array (finite).
    #[arg(long)]
    pub weight: Option<PathBuf>,
    /// Positive-class weights, one per column: a float [C] array (finite, >= 0).
    #[arg(long)]
    pub pos_weight: Option<PathBuf>,
    #[command(flatten)]
    pub reduction: ReductionArg,
}

#[derive(clap::Args)]
pub struct MultiMarginArgs {
    #[command(flatten)]
    pub io: Io,
    /// Class targets: an array of the input's leading shape [B], of any integer dtype.
    #[arg(long)]
    pub target: PathBuf,
    /// The power, 1 or 2.
    #[arg(long, default_value_t = 1)]
    pub p: u32,
    /// The margin, finite.
    #[arg(long, default_value = "1", value_parser = parse_f32, allow_hyphen_values = true)]
    pub margin: f32,
    /// Class weights, a float [C] array (finite).
    #[arg(long)]
    pub weight: Option<PathBuf>,
    #[command(flatten)]
    pub reduction: ReductionArg,
}

#[derive(Copy, Clone, ValueEnum)]
pub enum FormName {
    /// (a + b + (a − b)·erf(μ(a − b)))/2
    Erf,
    /// (a + b + √((a − b)² + μ²))/2
    Sqrt,
    /// (a − b)·σ(β(a − b)) + b
    Acon,
    /// (a + b + ln(e^{k(a−b)} + e^{−k(a−b)})/k)/2
    Logcosh,
}

#[derive(Copy, Clone, ValueEnum)]
pub enum ReductionName {
    /// Per-row (or per-element) losses.
    None,
    /// Weighted mean (0-d array).
    Mean,
    /// Sum (0-d array).
    Sum,
}

#[derive(Copy, Clone, Debug, ValueEnum, PartialEq, Eq)]
pub enum DtypeName {
    F32,
    F16,
    Bf16,
}

impl DtypeName {
    pub fn dtype(self) -> smoothmax::DType {
        match self {
            DtypeName::F32 => smoothmax::DType::F32,
            DtypeName::F16 => smoothmax::DType::F16,
            DtypeName::Bf16 => smoothmax::DType::BF16,
        }
    }
}

#[derive(Copy, Clone, ValueEnum, PartialEq, Eq)]
pub enum DeviceName {
    /// The GPU (an error if there is no adapter).
    Gpu,
    /// The multi-threaded CPU path.
    Cpu,
    /// The f64 reference (slow; for checking).
    Reference,
}

#[derive(clap::Args)]
pub struct BenchArgs {
    /// A subset that runs in well under a minute on lavapipe.
    #[arg(long)]
    pub quick: bool,
    /// Shape BxC (repeatable); default: 4096x32000 512x128256 8x256000 65536x1000 32x1000.
    #[arg(long = "shape", value_parser = parse_shape)]
    pub shapes: Vec<(usize, usize)>,
    /// Op (repeatable): logsumexp, softmax, log-softmax, ce-fwd, ce-fwd-bwd (the default
    /// set), or any surrogate by its `eval` name (boltzmann-max, soft-argmax, power-max,
    /// smooth-accuracy, smooth-f1, smooth-f1-macro, multi-margin, binary-cross-entropy, hinge,
    /// squared-hinge, exponential, squared, pairwise-max, smooth-abs, smooth-floor), or
    /// linear-ce (the fused linear cross-entropy, at --linear-shape).
    #[arg(long = "op", value_parser = parse_op)]
    pub ops: Vec<OpChoice>,
    /// Shape NxDxV of --op linear-ce (repeatable): hidden states [N, D], weights [V, D];
    /// default: 2048x1024x32000 512x1024x128256.
    #[arg(long = "linear-shape", value_parser = parse_linear_shape)]
    pub linear_shapes: Vec<(usize, usize, usize)>,
    /// Element type of the inputs and matrix outputs (repeatable): f32, f16, bf16; each op
    /// and yardstick is measured in each (GB/s count the bytes of that type); default: f32.
    #[arg(long = "dtype", value_enum)]
    pub dtypes: Vec<DtypeName>,
    /// Devices to measure.
    #[arg(long, value_enum, default_value = "all")]
    pub device: BenchDevice,
    /// Timed runs per measurement (median and spread reported).
    #[arg(long)]
    pub runs: Option<usize>,
    /// Untimed warm-up runs per measurement.
    #[arg(long)]
    pub warmup: Option<usize>,
    /// Write the records as JSON to this file; `-` writes them to stdout (the table then goes
    /// to stderr).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write a throughput plot (SVG).
    #[arg(long)]
    pub plot: Option<PathBuf>,
}

#[derive(Copy, Clone, ValueEnum, PartialEq, Eq)]
pub enum BenchDevice {
    /// GPU and CPU.
    All,
    /// GPU only.
    Gpu,
    /// CPU only.
    Cpu,
}

fn parse_shape(s: &str) -> Result<(usize, usize), String> {
    let (b, c) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("shape {s:?} is not BxC"))?;
    let b: usize = b
        .trim()
        .parse()
        .map_err(|_| format!("shape {s:?}: bad B"))?;
    let c: usize = c
        .trim()
        .parse()
        .map_err(|_| format!("shape {s:?}: bad C"))?;
    if b == 0 || c == 0 {
        return Err(format!("shape {s:?}: B and C must be > 0"));
    }
    Ok((b, c))
}

/// A `--op`: one of the row bench's ops, or the fused linear cross-entropy.
#[derive(Copy, Clone, Debug, PartialEq)]
pub enum OpChoice {
    Rows(smoothmax::bench::BenchOp),
    LinearCe,
}

fn parse_op(s: &str) -> Result<OpChoice, String> {
    use smoothmax::bench::BenchOp;
    if s == "linear-ce" {
        return Ok(OpChoice::LinearCe);
    }
    BenchOp::parse(s).map(OpChoice::Rows).ok_or_else(|| {
        let names: Vec<&str> = BenchOp::every().map(BenchOp::name).collect();
        format!("unknown op {s:?}: {}, linear-ce", names.join(", "))
    })
}

fn parse_linear_shape(s: &str) -> Result<(usize, usize, usize), String> {
    let dims: Vec<&str> = s.split(['x', 'X']).collect();
    let [n, d, v] = dims.as_slice() else {
        return Err(format!("linear shape {s:?} is not NxDxV"));
    };
    let num = |t: &str| -> Result<usize, String> {
        match t.trim().parse::<usize>() {
            Ok(0) | Err(_) => Err(format!(
                "linear shape {s:?}: {t:?} is not a positive integer"
            )),
            Ok(k) => Ok(k),
        }
    };
    Ok((num(n)?, num(d)?, num(v)?))
}
