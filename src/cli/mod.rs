//! Command-line interface: the `info`, `eval` and `bench` commands, and what each failure
//! exits with (2: usage or input, 1: run time; see [`args::EXIT_CODES`]).

mod args;
mod eval;
mod failure;
mod npy;
mod number;

use args::{BenchArgs, BenchDevice, Cli, Command};
use clap::Parser;
use failure::Failure;
use smoothmax::{CpuIsa, Gpu};
use std::process::ExitCode;

/// Parses the command line, runs it, prints any failure, and returns the exit status.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // clap's own rendering, hints ("a similar argument exists") and usage line
            // included; --help and --version print to stdout and exit 0.
            let _ = e.print();
            return ExitCode::from(e.exit_code().clamp(0, 255) as u8);
        }
    };
    let result = match cli.command {
        Command::Info => info(),
        Command::Eval { op } => eval::eval(op),
        Command::Bench(args) => bench(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(m)) => {
            eprintln!("smoothmax: error: {m} (see smoothmax eval <op> --help)");
            ExitCode::from(2)
        }
        Err(Failure::Input(m)) => {
            eprintln!("smoothmax: error: {m}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(m)) => {
            eprintln!("smoothmax: error: {m}");
            ExitCode::from(1)
        }
    }
}

fn info() -> Result<(), Failure> {
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
            println!("kernel layout: {}", g.kernel_layout());
        }
        // A bad setting is an error; a machine without a usable GPU is a fact to report.
        Err(e @ smoothmax::Error::Environment { .. }) => return Err(e.into()),
        Err(e) => {
            println!("chosen: none ({e})");
            println!(
                "the cpu and reference devices still work: smoothmax eval <op> --device cpu ..."
            );
        }
    }
    let supported: Vec<&str> = CpuIsa::supported().iter().map(|i| i.name()).collect();
    println!("cpu builds: {}", supported.join(" "));
    // The build `--device cpu` runs; an invalid SMOOTHMAX_CPU_ISA is an input error.
    let active = CpuIsa::from_env()?;
    let why = match std::env::var(smoothmax::cpu::ISA_ENV) {
        Ok(v) => format!("{}={v}", smoothmax::cpu::ISA_ENV),
        Err(_) => "the widest supported".into(),
    };
    println!("cpu build: {active} ({why})");
    Ok(())
}

fn bench(args: BenchArgs) -> Result<(), Failure> {
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
    let linear = args.ops.contains(&args::OpChoice::LinearCe);
    if !args.ops.is_empty() {
        cfg.ops = args
            .ops
            .iter()
            .filter_map(|o| match o {
                args::OpChoice::Rows(op) => Some(*op),
                args::OpChoice::LinearCe => None,
            })
            .collect();
    }
    if !args.dtypes.is_empty() {
        cfg.dtypes = args.dtypes.iter().map(|d| d.dtype()).collect();
        cfg.dtypes.dedup();
    }
    cfg.runs = args.runs.unwrap_or(cfg.runs).max(1);
    cfg.warmup = args.warmup.unwrap_or(cfg.warmup);
    cfg.cpu = args.device != BenchDevice::Gpu;
    let gpu = if args.device == BenchDevice::Cpu {
        None
    } else {
        match Gpu::new() {
            Ok(g) => Some(g),
            Err(e @ smoothmax::Error::NoAdapter { .. }) if args.device == BenchDevice::All => {
                eprintln!("smoothmax: {e}; benchmarking the CPU only");
                None
            }
            Err(e) => return Err(e.into()),
        }
    };
    let adapter = gpu.as_ref().map(|g| g.adapter().name.clone());
    // `--json -`: the JSON alone on stdout (for a pipe), the human report on stderr.
    let json_stdout = args.json.as_deref() == Some(std::path::Path::new("-"));
    let mut human: Box<dyn Write> = if json_stdout {
        Box::new(std::io::stderr())
    } else {
        Box::new(std::io::stdout())
    };
    let out = |e: std::io::Error| Failure::Runtime(format!("cannot write the report: {e}"));
    writeln!(
        human,
        "adapter: {}",
        adapter.as_deref().unwrap_or("none (CPU only)")
    )
    .map_err(out)?;
    // The CPU kernel build (`SMOOTHMAX_CPU_ISA`, else the widest), which the CPU lines and
    // yardsticks run, so a report says which. An invalid choice fails the CPU calls themselves
    // with its own error; the header only says there is none.
    let build = CpuIsa::from_env().map_or("none (SMOOTHMAX_CPU_ISA invalid)", CpuIsa::name);
    writeln!(
        human,
        "cpu threads: {}, cpu build: {build}",
        rayon::current_num_threads()
    )
    .map_err(out)?;
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
    if linear {
        let shapes = if args.linear_shapes.is_empty() {
            bench::LINEAR_SHAPES.to_vec()
        } else {
            args.linear_shapes.clone()
        };
        let runs = (cfg.warmup, cfg.runs);
        let lines = bench::run_linear(
            &shapes,
            &cfg.dtypes,
            runs,
            cfg.cpu,
            gpu.as_ref(),
            &mut progress,
        )?;
        write!(human, "{}", bench::linear_table(&lines)).map_err(out)?;
        writeln!(
            human,
            "GFLOP/s count 2NVD forward and 6NVD forward+backward (the fused backward's \
             recomputed logits not counted); /matmul: of the plain product H·Wᵀ on the same \
             device (cpu: gemm into [N, V]; gpu: the same kernels, tile by tile); vs mat.: time \
             over the materialized path (gemm, cross-entropy on [N, V] logits, gemm for dH and \
             dW); extra MB: cpu peak heap beyond inputs and results, gpu the largest buffer the \
             call created; logits MB: N·V·4, what the materialized path holds before its \
             gradient (as much again with it)."
        )
        .map_err(out)?;
        if cfg.ops.is_empty() {
            if let Some(path) = &args.json {
                let json = serde_json::to_string_pretty(&lines)
                    .map_err(|e| Failure::Runtime(format!("cannot encode the records: {e}")))?;
                if json_stdout {
                    std::io::stdout().write_all(json.as_bytes()).map_err(out)?;
                } else {
                    std::fs::write(path, json).map_err(|e| {
                        Failure::Runtime(format!("cannot write {}: {e}", path.display()))
                    })?;
                }
            }
            return Ok(());
        }
    }
    let records = bench::run(&cfg, gpu.as_ref(), &mut progress)?;
    write!(human, "{}", bench::table(&records)).map_err(out)?;
    // The floor under any end-to-end GPU call, to read small-shape e2e figures against.
    let round_trip_ms = match &gpu {
        Some(g) => Some(g.round_trip_seconds(21)? * 1e3),
        None => None,
    };
    if let Some(rt) = round_trip_ms {
        writeln!(
            human,
            "GPU submit-and-wait round trip (empty submission): {rt:.3} ms"
        )
        .map_err(out)?;
    }
    writeln!(
        human,
        "GB/s counts bytes read + written; /copy and /exp-map: fraction of the yardstick kernels' \
         GB/s on this adapter (cpu: of the multi-threaded memcpy); /row-sum: the ops that only \
         read their rows (logsumexp, ce-fwd) as a fraction of the row-sum yardstick's GB/s \
         (read B*C, write B) on the same device; vs cpu: CPU median / this median.\n\
         gpu-kernel: device time, data already on the device; gpu-e2e: the whole call (upload, \
         compute, readback); cpu: the fast CPU path writing into a reused output buffer (the \
         surrogates, value and gradient, allocate theirs per call)."
    )
    .map_err(out)?;
    if let Some(path) = &args.json {
        let json = bench::to_json(adapter.as_deref(), round_trip_ms, &records)
            .map_err(|e| Failure::Runtime(format!("cannot encode the records: {e}")))?;
        if json_stdout {
            std::io::stdout().write_all(json.as_bytes()).map_err(out)?;
        } else {
            std::fs::write(path, json)
                .map_err(|e| Failure::Runtime(format!("cannot write {}: {e}", path.display())))?;
        }
    }
    if let Some(path) = &args.plot {
        bench::write_svg(path, adapter.as_deref(), &records).map_err(Failure::Runtime)?;
    }
    Ok(())
}
