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
                eprintln!(
                    "smoothmax: no GPU adapter ({e}); running on the CPU. For a software GPU: \
                     apt-get install -y mesa-vulkan-drivers"
                );
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
