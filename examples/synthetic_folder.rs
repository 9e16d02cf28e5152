//! Writes a large valid desired-state folder for measurements:
//! `cargo run --release --example synthetic_folder -- DIR [USERS] [FILES]`
//! (default 100000 users in 100 files), then `roster validate DIR`.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next().map(PathBuf::from) else {
        eprintln!("usage: synthetic_folder DIR [USERS] [FILES]");
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
    match roster::desired::synthetic::write_folder(&dir, users, files) {
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
