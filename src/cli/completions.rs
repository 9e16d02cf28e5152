//! `roster completions SHELL`: the shell completion script, generated from the same clap
//! definitions the binary parses with, so completions never drift from the flags.

use clap::CommandFactory;

/// The completion script for `shell`, for `roster` as the command name.
pub fn script(shell: clap_complete::Shell) -> Vec<u8> {
    let mut command = super::Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut command, "roster", &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap_complete::Shell;

    #[test]
    fn every_shell_completes_every_subcommand() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let text = String::from_utf8(script(shell)).unwrap();
            for command in ["validate", "plan", "apply", "run", "init", "completions"] {
                assert!(text.contains(command), "{shell}: no {command}");
            }
            assert!(text.contains("detailed-exitcode"), "{shell}: no plan flags");
        }
    }
}
