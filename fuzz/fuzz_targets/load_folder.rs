//! Loads a desired-state folder made from the fuzzer's bytes, through the same code as
//! `roster validate` (`desired::load_files` shares every rule with `desired::load`).
//!
//! Input format: files separated by the line `%%`. The first file is `providers.yaml`;
//! each later one starts with a line holding its path relative to the folder (empty:
//! `u<N>.yaml`), then its bytes. Paths are fuzzed too, so case variants (`a.YAML`),
//! hidden folders and odd names are reached.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::{Path, PathBuf};

const SEPARATOR: &[u8] = b"\n%%\n";

fn split(data: &[u8]) -> Vec<(PathBuf, Vec<u8>)> {
    let mut chunks = Vec::new();
    let mut rest = data;
    while let Some(at) = rest.windows(SEPARATOR.len()).position(|w| w == SEPARATOR) {
        chunks.push(&rest[..at]);
        rest = &rest[at + SEPARATOR.len()..];
    }
    chunks.push(rest);
    let mut files = vec![(PathBuf::from("providers.yaml"), chunks[0].to_vec())];
    for (i, chunk) in chunks.iter().enumerate().skip(1) {
        let (name, body) = match chunk.iter().position(|&b| b == b'\n') {
            Some(at) => (&chunk[..at], &chunk[at + 1..]),
            None => (&chunk[..], &[][..]),
        };
        let name = String::from_utf8_lossy(name).into_owned();
        let name = if name.is_empty() { format!("u{i}.yaml") } else { name };
        files.push((PathBuf::from(name), body.to_vec()));
    }
    files
}

fuzz_target!(|data: &[u8]| {
    let files = split(data);
    if let Err(invalid) = roster::desired::load_files(Path::new("fuzz"), files, roster::provider::specs()) {
        // Every problem renders, and names the folder or a file in it.
        for problem in &invalid.problems {
            let line = problem.to_string();
            assert!(line.starts_with("fuzz"), "{line}");
        }
    }
});
