//! The `smoothmax` command-line tool: `info`, `eval` and `bench`. See `smoothmax --help`.

mod cli;

/// Counts heap bytes, so `smoothmax bench` can report the peak memory of a call (the system
/// allocator underneath, unchanged).
#[global_allocator]
static ALLOC: smoothmax::bench::CountingAlloc = smoothmax::bench::CountingAlloc;

fn main() -> std::process::ExitCode {
    cli::main()
}
