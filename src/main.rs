//! The `smoothmax` command-line tool: `info` and `eval`. See `smoothmax --help`.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    match cli::run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("smoothmax: error: {msg}");
            ExitCode::from(2)
        }
    }
}
