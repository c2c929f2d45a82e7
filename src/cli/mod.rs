//! Command-line interface: argument parsing and the `info` and `eval` commands.

mod npy;

use clap::{Parser, Subcommand, ValueEnum};
use smoothmax::{
    Backend, Cpu, CrossEntropyOptions, Gpu, Loss, Reduction, Reference, RowOp, RowOutput, Targets,
};
use std::path::PathBuf;

/// Batched logsumexp / softmax / log-softmax on any GPU wgpu reaches, with a CPU path and an
/// f64 reference.
#[derive(Parser)]
#[command(name = "smoothmax", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the GPU adapters found, the one chosen, its limits and features.
    Info,
    /// Evaluate an op on a .npy input and write the result as .npy files into --out.
    Eval(EvalArgs),
    /// Benchmark every op on the GPU (kernel and end to end) and the CPU, beside copy / exp-map
    /// / memcpy yardsticks measured in the same run.
    Bench(BenchArgs),
}

#[derive(clap::Args)]
struct BenchArgs {
    /// A subset that runs in well under a minute on lavapipe.
    #[arg(long)]
    quick: bool,
    /// Shape BxC (repeatable); default: 4096x32000 512x128256 8x256000 65536x1000 32x1000.
    #[arg(long = "shape", value_parser = parse_shape)]
    shapes: Vec<(usize, usize)>,
    /// Op (repeatable): logsumexp, softmax, log-softmax, ce-fwd, ce-fwd-bwd; default: all.
    #[arg(long = "op", value_parser = parse_op)]
    ops: Vec<smoothmax::bench::BenchOp>,
    /// Devices to measure.
    #[arg(long, value_enum, default_value = "all")]
    device: BenchDevice,
    /// Timed runs per measurement (median and spread reported).
    #[arg(long)]
    runs: Option<usize>,
    /// Untimed warm-up runs per measurement.
    #[arg(long)]
    warmup: Option<usize>,
    /// Write the records as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write a throughput plot (SVG).
    #[arg(long)]
    plot: Option<PathBuf>,
}

#[derive(Copy, Clone, ValueEnum, PartialEq, Eq)]
enum BenchDevice {
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

fn parse_op(s: &str) -> Result<smoothmax::bench::BenchOp, String> {
    smoothmax::bench::BenchOp::parse(s).ok_or_else(|| {
        format!("unknown op {s:?}: logsumexp, softmax, log-softmax, ce-fwd, ce-fwd-bwd")
    })
}

#[derive(Copy, Clone, ValueEnum)]
enum OpName {
    /// T·ln Σ exp(x/T) per row: output.npy has shape [B].
    Logsumexp,
    /// softmax(x/T) per row: output.npy has shape [B, C].
    Softmax,
    /// log_softmax(x/T) per row: output.npy has shape [B, C].
    LogSoftmax,
    /// Softmax cross-entropy against --target: loss.npy, grad.npy, lse.npy.
    CrossEntropy,
    /// Boltzmann operator Σ x e^{βx} / Σ e^{βx} per row (--beta): output.npy [B], grad.npy.
    BoltzmannMax,
    /// Σ_j j·softmax(x/T)_j per row: output.npy [B], grad.npy.
    SoftArgmax,
    /// mean_i softmax(x_i/T)[y_i] against int --target [B]: output.npy (0-d), grad.npy.
    SmoothAccuracy,
    /// Binary smooth F1 2Σσ(x)y / Σ(σ(x) + y) against float --target [B, C] in [0, 1]:
    /// output.npy (0-d), grad.npy.
    SmoothF1,
    /// Macro smooth F1 over classes from softmax(x/T) against int --target [B]: output.npy
    /// (0-d), grad.npy.
    SmoothF1Macro,
    /// Pairwise smooth max of --input and --other (--form, --mu or --beta): output.npy,
    /// grad.npy (d/d input), grad_b.npy (d/d other).
    PairwiseMax,
    /// Logistic loss = PyTorch's binary_cross_entropy_with_logits against float --target in
    /// [0, 1] (--weight, --pos-weight, --reduction): loss.npy, grad.npy.
    BinaryCrossEntropy,
    /// max(0, 1 − y·f) against ±1 (or 0/1) --target: loss.npy, grad.npy.
    Hinge,
    /// max(0, 1 − y·f)²: loss.npy, grad.npy.
    SquaredHinge,
    /// exp(−y·f): loss.npy, grad.npy.
    Exponential,
    /// (1 − y·f)²: loss.npy, grad.npy.
    Squared,
    /// PyTorch's MultiMarginLoss against int --target [B] (--p, --margin, --weight [C],
    /// --reduction): loss.npy, grad.npy.
    MultiMargin,
}

#[derive(Copy, Clone, ValueEnum)]
enum FormName {
    /// (a + b + (a − b)·erf(μ(a − b)))/2
    Erf,
    /// (a + b + √((a − b)² + μ²))/2
    Sqrt,
    /// (a − b)·σ(β(a − b)) + b
    Acon,
}

#[derive(Copy, Clone, ValueEnum)]
enum ReductionName {
    /// Per-row losses, shape [B].
    None,
    /// Weighted mean (0-d array).
    Mean,
    /// Sum (0-d array).
    Sum,
}

#[derive(Copy, Clone, ValueEnum, PartialEq, Eq)]
enum DeviceName {
    /// The GPU (fails if there is no adapter).
    Gpu,
    /// The multi-threaded CPU path.
    Cpu,
    /// The f64 reference (slow; for checking).
    Reference,
}

#[derive(clap::Args)]
struct EvalArgs {
    /// The op to evaluate.
    op: OpName,
    /// Input: a 2-D [B, C] .npy array of float32 or float64.
    #[arg(long)]
    input: PathBuf,
    /// Temperature T > 0.
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    temperature: f32,
    /// Backend; default: gpu when an adapter exists, else cpu.
    #[arg(long)]
    device: Option<DeviceName>,
    /// Output directory (created); nothing is written there if the run fails.
    #[arg(long)]
    out: PathBuf,

    /// cross-entropy: targets, int32/int64 [B] class indices or float [B, C] probabilities.
    #[arg(long)]
    target: Option<PathBuf>,
    /// cross-entropy: class weights, a float [C] array.
    #[arg(long)]
    weight: Option<PathBuf>,
    /// cross-entropy: target value of ignored rows (default -100; class targets only).
    #[arg(long, allow_negative_numbers = true)]
    ignore_index: Option<i64>,
    /// cross-entropy: label smoothing in [0, 1].
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    label_smoothing: f32,
    /// cross-entropy: reduction.
    #[arg(long, value_enum, default_value = "mean")]
    reduction: ReductionName,
    /// cross-entropy: z-loss coefficient (adds z·lse² per non-ignored row).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    z_loss: f32,
    /// cross-entropy: logit soft-capping c > 0 (logits become c·tanh(x/c)).
    #[arg(long, allow_negative_numbers = true)]
    softcap: Option<f32>,

    /// boltzmann-max, pairwise-max --form acon: the inverse temperature β.
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    beta: f32,
    /// pairwise-max --form erf|sqrt: μ > 0.
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    mu: f32,
    /// pairwise-max: which smooth max.
    #[arg(long, value_enum, default_value = "erf")]
    form: FormName,
    /// pairwise-max: the second argument, a float [B, C] .npy.
    #[arg(long)]
    other: Option<PathBuf>,
    /// binary-cross-entropy: positive-class weights, a float [C] array.
    #[arg(long)]
    pos_weight: Option<PathBuf>,
    /// multi-margin: the power, 1 or 2.
    #[arg(long, default_value_t = 1)]
    p: u32,
    /// multi-margin: the margin.
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    margin: f32,
}

/// Parses the command line and runs it; the error is a one-line message.
pub fn run() -> Result<(), String> {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if !e.use_stderr() => {
            // --help and --version: print as clap does and succeed.
            let _ = e.print();
            return Ok(());
        }
        // Usage errors become one line like every other error (clap's own adds usage text).
        Err(e) => {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            return Err(format!(
                "{} (see smoothmax --help)",
                first.trim_start_matches("error: ")
            ));
        }
    };
    match cli.command {
        Command::Info => info(),
        Command::Eval(args) => eval(args),
        Command::Bench(args) => bench(args),
    }
}

fn info() -> Result<(), String> {
    let adapters = smoothmax::gpu::list_adapters();
    if adapters.is_empty() {
        println!("adapters: none found");
    } else {
        println!("adapters:");
        for a in &adapters {
            println!(
                "  - {} ({}, {}, driver: {})",
                a.name, a.backend, a.device_type, a.driver
            );
        }
    }
    match Gpu::new() {
        Ok(g) => {
            let a = g.adapter();
            println!("chosen: {} ({}, {})", a.name, a.backend, a.device_type);
            println!("limits:");
            for (k, v) in &a.limits {
                println!("  {k}: {v}");
            }
            println!("features: {}", a.features);
            Ok(())
        }
        Err(e) => {
            println!("chosen: none ({e})");
            println!("the cpu and reference devices still work: smoothmax eval --device cpu ...");
            Ok(())
        }
    }
}

/// The backend for `--device`, or the default: GPU if one opens, else CPU with a note.
fn backend(device: Option<DeviceName>) -> Result<Box<dyn Backend>, String> {
    match device {
        Some(DeviceName::Cpu) => Ok(Box::new(Cpu::new())),
        Some(DeviceName::Reference) => Ok(Box::new(Reference)),
        Some(DeviceName::Gpu) => Gpu::new()
            .map(|g| Box::new(g) as Box<dyn Backend>)
            .map_err(|e| e.to_string()),
        None => match Gpu::new() {
            Ok(g) => Ok(Box::new(g)),
            Err(e) => {
                eprintln!("smoothmax: {e}; running on the CPU");
                Ok(Box::new(Cpu::new()))
            }
        },
    }
}

fn eval(args: EvalArgs) -> Result<(), String> {
    // Everything that can be checked before work is checked before work.
    let op = match args.op {
        OpName::Logsumexp => RowOp::LogSumExp,
        OpName::Softmax => RowOp::Softmax,
        OpName::LogSoftmax => RowOp::LogSoftmax,
        OpName::CrossEntropy => return cross_entropy(args),
        _ => return surrogate(args),
    };
    if args.target.is_some() || args.weight.is_some() {
        return Err("--target and --weight belong to cross-entropy".into());
    }
    smoothmax::check_temperature(args.temperature).map_err(|e| e.to_string())?;
    let x = npy::read_matrix(&args.input)?;
    let b = backend(args.device)?;
    let out = b
        .row_op(op, x.view(), args.temperature)
        .map_err(|e| e.to_string())?;
    match out {
        RowOutput::PerRow(v) => npy::write_outputs(&args.out, &[("output.npy", &v)]),
        RowOutput::Matrix(m) => npy::write_outputs(&args.out, &[("output.npy", &m)]),
    }
}

fn cross_entropy(args: EvalArgs) -> Result<(), String> {
    let target_path = args
        .target
        .as_ref()
        .ok_or("cross-entropy needs --target T.npy")?;
    let x = npy::read_matrix(&args.input)?;
    let targets = npy::read_targets(target_path)?;
    let weight = args
        .weight
        .as_ref()
        .map(|p| npy::read_vector(p))
        .transpose()?;
    let reduction = match args.reduction {
        ReductionName::None => Reduction::None,
        ReductionName::Mean => Reduction::Mean,
        ReductionName::Sum => Reduction::Sum,
    };
    let o = CrossEntropyOptions {
        weight: weight.as_ref().map(|w| w.view()),
        ignore_index: args.ignore_index,
        label_smoothing: args.label_smoothing,
        reduction,
        z_loss: args.z_loss,
        softcap: args.softcap,
        gradient: true,
        ..Default::default()
    };
    let t = match &targets {
        npy::TargetArray::Classes(c) => Targets::Classes(c.view()),
        npy::TargetArray::Probabilities(q) => Targets::Probabilities(q.view()),
    };
    // Validate on the host before choosing (and opening) a device.
    smoothmax::cross_entropy::validate(x.dim(), t, &o).map_err(|e| e.to_string())?;
    let b = backend(args.device)?;
    let out = b
        .cross_entropy(x.view(), t, &o)
        .map_err(|e| e.to_string())?;
    let grad = out.grad.ok_or("internal: no gradient returned")?;
    match out.loss {
        Loss::PerRow(v) => npy::write_outputs(
            &args.out,
            &[("loss.npy", &v), ("grad.npy", &grad), ("lse.npy", &out.lse)],
        ),
        Loss::Scalar(v) => npy::write_outputs(
            &args.out,
            &[
                ("loss.npy", &ndarray::arr0(v)),
                ("grad.npy", &grad),
                ("lse.npy", &out.lse),
            ],
        ),
    }
}

fn reduction_of(r: ReductionName) -> Reduction {
    match r {
        ReductionName::None => Reduction::None,
        ReductionName::Mean => Reduction::Mean,
        ReductionName::Sum => Reduction::Sum,
    }
}

/// The surrogate ops: inputs read and checked on the host, then one backend call.
fn surrogate(args: EvalArgs) -> Result<(), String> {
    use smoothmax::{BinaryLoss, BinaryOptions, MultiMarginOptions, PairwiseForm, Surrogate};
    let x = npy::read_matrix(&args.input)?;
    let needs = |what: &str| format!("{} needs --target {what}", op_name(args.op));
    let classes = || -> Result<ndarray::Array1<i64>, String> {
        let p = args
            .target
            .as_ref()
            .ok_or_else(|| needs("T.npy (int [B])"))?;
        match npy::read_targets(p)? {
            npy::TargetArray::Classes(c) => Ok(c),
            npy::TargetArray::Probabilities(_) => Err(format!(
                "{}: expected integer class targets [B]",
                p.display()
            )),
        }
    };
    let labels = || -> Result<ndarray::Array2<f32>, String> {
        let p = args
            .target
            .as_ref()
            .ok_or_else(|| needs("Y.npy (float [B, C])"))?;
        npy::read_matrix(p)
    };
    let (mut cls, mut lab, mut other) = (None, None, None);
    let binary = match args.op {
        OpName::BinaryCrossEntropy => Some(BinaryLoss::Logistic),
        OpName::Hinge => Some(BinaryLoss::Hinge),
        OpName::SquaredHinge => Some(BinaryLoss::SquaredHinge),
        OpName::Exponential => Some(BinaryLoss::Exponential),
        OpName::Squared => Some(BinaryLoss::Squared),
        _ => None,
    };
    match args.op {
        OpName::SmoothAccuracy | OpName::SmoothF1Macro | OpName::MultiMargin => {
            cls = Some(classes()?)
        }
        OpName::SmoothF1 => lab = Some(labels()?),
        OpName::PairwiseMax => {
            let p = args
                .other
                .as_ref()
                .ok_or("pairwise-max needs --other B.npy")?;
            other = Some(npy::read_matrix(p)?);
        }
        _ if binary.is_some() => lab = Some(labels()?),
        _ => {}
    }
    // Binary losses take weights broadcast to [B, C]: a [C] file is one weight per column.
    let weight_v = args
        .weight
        .as_ref()
        .map(|p| npy::read_vector(p))
        .transpose()?;
    let weight_row = weight_v
        .as_ref()
        .map(|w| w.view().insert_axis(ndarray::Axis(0)));
    let pos_weight = args
        .pos_weight
        .as_ref()
        .map(|p| npy::read_vector(p))
        .transpose()?;
    let reduction = reduction_of(args.reduction);
    let t = args.temperature;
    let call = match args.op {
        OpName::BoltzmannMax => Surrogate::BoltzmannMax {
            x: x.view(),
            beta: args.beta,
        },
        OpName::SoftArgmax => Surrogate::SoftArgmax {
            x: x.view(),
            temperature: t,
        },
        OpName::SmoothAccuracy => Surrogate::SmoothAccuracy {
            logits: x.view(),
            targets: cls.as_ref().ok_or("internal: targets")?.view(),
            temperature: t,
        },
        OpName::SmoothF1Macro => Surrogate::SmoothF1Macro {
            logits: x.view(),
            targets: cls.as_ref().ok_or("internal: targets")?.view(),
            temperature: t,
        },
        OpName::SmoothF1 => Surrogate::SmoothF1Binary {
            logits: x.view(),
            labels: lab.as_ref().ok_or("internal: labels")?.view(),
        },
        OpName::PairwiseMax => Surrogate::PairwiseMax {
            a: x.view(),
            b: other.as_ref().ok_or("internal: other")?.view(),
            form: match args.form {
                FormName::Erf => PairwiseForm::Erf { mu: args.mu },
                FormName::Sqrt => PairwiseForm::Sqrt { mu: args.mu },
                FormName::Acon => PairwiseForm::Acon { beta: args.beta },
            },
        },
        OpName::MultiMargin => Surrogate::MultiMargin {
            logits: x.view(),
            targets: cls.as_ref().ok_or("internal: targets")?.view(),
            options: MultiMarginOptions {
                p: args.p,
                margin: args.margin,
                weight: weight_v.as_ref().map(|w| w.view()),
                reduction,
            },
        },
        _ => Surrogate::Binary {
            logits: x.view(),
            labels: lab.as_ref().ok_or("internal: labels")?.view(),
            loss: binary.ok_or("internal: loss")?,
            options: BinaryOptions {
                weight: weight_row,
                pos_weight: pos_weight.as_ref().map(|w| w.view()),
                reduction,
            },
        },
    };
    // Validate on the host before choosing (and opening) a device.
    smoothmax::surrogates::validate(&call).map_err(|e| e.to_string())?;
    let b = backend(args.device)?;
    let out = b.surrogate(&call).map_err(|e| e.to_string())?;
    let is_loss = binary.is_some() || matches!(args.op, OpName::MultiMargin);
    let name = if is_loss { "loss.npy" } else { "output.npy" };
    let value: Box<dyn npy::WriteNpy> = match out.value {
        smoothmax::Value::Scalar(v) => Box::new(ndarray::arr0(v)),
        smoothmax::Value::PerRow(v) => Box::new(v),
        smoothmax::Value::Matrix(m) => Box::new(m),
    };
    let mut files: Vec<(&str, &dyn npy::WriteNpy)> =
        vec![(name, value.as_ref()), ("grad.npy", &out.grad)];
    if let Some(gb) = &out.grad_b {
        files.push(("grad_b.npy", gb));
    }
    npy::write_outputs(&args.out, &files)
}

fn op_name(op: OpName) -> String {
    op.to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_default()
}

fn bench(args: BenchArgs) -> Result<(), String> {
    use smoothmax::bench::{self, BenchConfig};
    use std::io::{IsTerminal, Write};
    let mut cfg = if args.quick {
        BenchConfig::quick()
    } else {
        BenchConfig::default()
    };
    if !args.shapes.is_empty() {
        cfg.shapes = args.shapes.clone();
    }
    if !args.ops.is_empty() {
        cfg.ops = args.ops.clone();
    }
    cfg.runs = args.runs.unwrap_or(cfg.runs).max(1);
    cfg.warmup = args.warmup.unwrap_or(cfg.warmup);
    cfg.cpu = args.device != BenchDevice::Gpu;
    let gpu = if args.device == BenchDevice::Cpu {
        None
    } else {
        match Gpu::new() {
            Ok(g) => Some(g),
            Err(e) if args.device == BenchDevice::All => {
                eprintln!("smoothmax: {e}; benchmarking the CPU only");
                None
            }
            Err(e) => return Err(e.to_string()),
        }
    };
    let adapter = gpu.as_ref().map(|g| g.adapter().name.clone());
    println!(
        "adapter: {}",
        adapter.as_deref().unwrap_or("none (CPU only)")
    );
    println!("cpu threads: {}", rayon::current_num_threads());
    let tty = std::io::stderr().is_terminal();
    let started = std::time::Instant::now();
    let mut progress = |done: usize, total: usize, what: &str| {
        // A bar on stderr for interactive runs longer than a moment.
        if tty && started.elapsed().as_secs_f64() > 1.0 {
            let width = 30;
            let filled = width * done / total.max(1);
            let bar = "#".repeat(filled) + &"-".repeat(width - filled);
            let mut e = std::io::stderr();
            let _ = write!(e, "\r[{bar}] {done}/{total} {what:<48}");
            if done == total {
                let _ = writeln!(e);
            }
            let _ = e.flush();
        }
    };
    let records = bench::run(&cfg, gpu.as_ref(), &mut progress).map_err(|e| e.to_string())?;
    print!("{}", bench::table(&records));
    // The floor under any end-to-end GPU call, to read small-shape e2e figures against.
    let round_trip_ms = match &gpu {
        Some(g) => Some(g.round_trip_seconds(21).map_err(|e| e.to_string())? * 1e3),
        None => None,
    };
    if let Some(rt) = round_trip_ms {
        println!("GPU submit-and-wait round trip (empty submission): {rt:.3} ms");
    }
    println!(
        "GB/s counts bytes read + written; /copy and /exp-map: fraction of the yardstick kernels' \
         GB/s on this adapter (cpu: of the multi-threaded memcpy); vs cpu: CPU median / this median.\n\
         gpu-kernel: device time, data already on the device; gpu-e2e: the whole call (upload, \
         compute, readback); cpu: the fast CPU path writing into a reused output buffer."
    );
    if let Some(path) = &args.json {
        std::fs::write(
            path,
            bench::to_json(adapter.as_deref(), round_trip_ms, &records),
        )
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    if let Some(path) = &args.plot {
        bench::write_svg(path, adapter.as_deref(), &records)?;
    }
    Ok(())
}
