//! The `tunewatch` command: parses the command line, runs it ([`tunewatch::cli::dispatch`]) and
//! maps the outcome to the exit code: 0 ok, 2 usage or config error, 1 any other failure.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

use tunewatch::cli::{Cli, dispatch};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            eprintln!("error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}
