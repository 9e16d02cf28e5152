use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let code = match roster::cli::Cli::try_parse() {
        Ok(cli) => roster::cli::execute(cli),
        Err(usage) => roster::cli::usage_error(&usage),
    };
    ExitCode::from(code)
}
