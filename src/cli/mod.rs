//! Command-line interface: argument parsing and the `info` and `eval` commands.

mod npy;

use clap::{Parser, Subcommand, ValueEnum};
use smoothmax::{Backend, Cpu, Gpu, Reference, RowOp, RowOutput};
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
    smoothmax::check_temperature(args.temperature).map_err(|e| e.to_string())?;
    let x = npy::read_matrix(&args.input)?;
    let op = match args.op {
        OpName::Logsumexp => RowOp::LogSumExp,
        OpName::Softmax => RowOp::Softmax,
        OpName::LogSoftmax => RowOp::LogSoftmax,
    };
    let b = backend(args.device)?;
    let out = b
        .row_op(op, x.view(), args.temperature)
        .map_err(|e| e.to_string())?;
    match out {
        RowOutput::PerRow(v) => npy::write_outputs(&args.out, &[("output.npy", &v)]),
        RowOutput::Matrix(m) => npy::write_outputs(&args.out, &[("output.npy", &m)]),
    }
}
