use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(roster::cli::execute(roster::cli::Cli::parse()))
}
