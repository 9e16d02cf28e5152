//! `roster-bench`: one command that measures Roster and compares every figure with its
//! lower bound or target and with two baselines. See docs/benchmarks.md.

#[path = "../bench/mod.rs"]
mod bench;

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let opts = bench::Options::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("roster-bench: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(bench::run(opts)) {
        Ok(table) => {
            let mut stdout = std::io::stdout().lock();
            if stdout
                .write_all(table.as_bytes())
                .and_then(|()| stdout.flush())
                .is_err()
            {
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("roster-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
