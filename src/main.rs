//! The `smoothmax` command-line tool: `info`, `eval` and `bench`. See `smoothmax --help`.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
