//! Writes a large valid desired-state folder for measurements:
//! `cargo run --release --example synthetic_folder -- [--w3] DIR [USERS] [FILES]`
//! (default 100000 users in 100 files), then `roster validate DIR`. Without `--w3`, each
//! user has 2 to 5 accounts (`roster::desired::synthetic::user_file`); with it, the
//! benchmark's W3 shape: 2 accounts each, quoted ids and a quoted reason.

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: synthetic_folder [--w3] DIR [USERS] [FILES]";

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let w3 = args.first().is_some_and(|a| a == "--w3");
    if w3 {
        args.remove(0);
    }
    let mut args = args.into_iter();
    let Some(dir) = args.next().map(PathBuf::from) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let number = |arg: Option<String>, default: usize| match arg {
        None => Some(default),
        Some(text) => text.parse().ok(),
    };
    let (Some(users), Some(files)) = (number(args.next(), 100_000), number(args.next(), 100))
    else {
        eprintln!("USERS and FILES must be whole numbers");
        return ExitCode::from(2);
    };
    let written = if w3 {
        roster::desired::synthetic::write_w3_folder(&dir, users, files)
    } else {
        roster::desired::synthetic::write_folder(&dir, users, files)
    };
    match written {
        Ok(()) => {
            println!("wrote {users} users in {files} files to {}", dir.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cannot write {}: {e}", dir.display());
            ExitCode::FAILURE
        }
    }
}
