use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = roster::cli::Cli::parse();
    match roster::cli::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(1)
        }
    }
}
