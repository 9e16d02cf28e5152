//! Recognising a secret pasted where the folder expects the *name* of one.
//!
//! `auth:` keys hold the name of an environment variable (`*_env`) or the path of a file
//! (`*_file`). A token pasted there instead would pass a naive check (`ghp_...` is a
//! valid variable name) and then be echoed by every "variable ... is not set" message.
//! These checks find such values so the loader can refuse them without printing them.

/// Known token prefixes, and what to call a value that starts with one.
const PREFIXES: &[(&str, &str)] = &[
    ("ghp_", "a GitHub personal access token"),
    ("gho_", "a GitHub OAuth token"),
    ("ghu_", "a GitHub user-to-server token"),
    ("ghs_", "a GitHub server-to-server token"),
    ("ghr_", "a GitHub refresh token"),
    ("github_pat_", "a GitHub fine-grained access token"),
    ("glpat-", "a GitLab personal access token"),
    ("xoxb-", "a Slack bot token"),
    ("xoxp-", "a Slack user token"),
    ("xoxa-", "a Slack app token"),
    ("xapp-", "a Slack app-level token"),
    ("sk_live_", "a Stripe secret key"),
    ("sk_test_", "a Stripe secret key"),
    ("rk_live_", "a Stripe restricted key"),
    ("eyJ", "a JSON Web Token"),
    ("-----BEGIN", "a PEM key or certificate"),
];

/// The shortest run of characters that the high-entropy check looks at: real tokens
/// are 32 characters or more; names and paths seldom have runs this long without a
/// separator.
const MIN_RANDOM_RUN: usize = 24;

/// What `value` looks like when it looks like a secret, else `None`. `path_like` values
/// (a `*_file` key) are exempt from the high-entropy check once they hold a path
/// separator, since a path is what belongs there.
pub fn looks_like_secret(value: &str, path_like: bool) -> Option<&'static str> {
    let value = value.trim();
    if let Some((_, what)) = PREFIXES.iter().find(|(p, _)| value.starts_with(p)) {
        return Some(what);
    }
    if value
        .get(..7)
        .is_some_and(|start| start.eq_ignore_ascii_case("bearer "))
    {
        return Some("an HTTP Authorization header value");
    }
    if aws_key_id(value) {
        return Some("an AWS access key id");
    }
    if path_like && value.contains(['/', '\\']) {
        return None;
    }
    value
        .split(['_', '-', '.', '/', '\\', ' ', ':'])
        .any(random_looking)
        .then_some("a long random string (a token or key)")
}

/// `AKIA`/`ASIA` followed by 16 upper-case letters or digits.
fn aws_key_id(value: &str) -> bool {
    let bytes = value.as_bytes();
    (value.starts_with("AKIA") || value.starts_with("ASIA"))
        && bytes.len() >= 20
        && bytes[4..20]
            .iter()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// A run of at least [`MIN_RANDOM_RUN`] characters with the mix of a generated token:
/// digits among letters of both cases, or many digits among letters (hex), and a
/// Shannon entropy of at least 3.5 bits per character.
fn random_looking(run: &str) -> bool {
    if run.chars().count() < MIN_RANDOM_RUN {
        return false;
    }
    let count = run.chars().count() as f64;
    let digits = run.chars().filter(char::is_ascii_digit).count() as f64;
    let upper = run.chars().any(|c| c.is_ascii_uppercase());
    let lower = run.chars().any(|c| c.is_ascii_lowercase());
    let mixed = (upper && lower && digits > 0.0) || (digits / count >= 0.2 && (upper || lower));
    mixed && entropy(run) >= 3.5
}

fn entropy(run: &str) -> f64 {
    let mut counts = std::collections::HashMap::new();
    for c in run.chars() {
        *counts.entry(c).or_insert(0usize) += 1;
    }
    let n = run.chars().count() as f64;
    counts
        .values()
        .map(|&k| {
            let p = k as f64 / n;
            -p * p.log2()
        })
        .sum()
}

/// A valid environment variable name: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn valid_env_name(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A value from the file for a message, in quotes, unless it looks like a secret.
pub fn quoted(value: &str) -> String {
    match looks_like_secret(value, false) {
        Some(_) => "(not shown: it looks like a secret)".to_string(),
        None => format!("'{value}'"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_recognised_and_names_are_not() {
        let secrets = [
            "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
            "gho_x",
            "ghu_x",
            "ghs_x",
            "ghr_x",
            "github_pat_11ABCDEFG0123456789_abcdefghijkl",
            "glpat-xxxxxxxxxxxxxxxxxxxx",
            "xoxb-123-456-abc",
            "xoxp-1",
            "xoxa-2",
            "xapp-1-A0-1",
            "AKIAIOSFODNN7EXAMPLE",
            "ASIAIOSFODNN7EXAMPLE",
            "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
            "sk_test_x",
            "rk_live_x",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig",
            "Bearer abc",
            "bearer abc",
            "-----BEGIN PRIVATE KEY-----",
            "3f9a1c0e7b2d4f6a8c9e1b3d5f7a9c0e",
            "q8ZrT4mW2xYk9LpV7nB3cJ6hG1fD5sA0",
        ];
        for value in secrets {
            assert!(looks_like_secret(value, false).is_some(), "{value}");
        }
        let names = [
            "ATLAN_API_TOKEN",
            "ACRONIS_CLIENT_SECRET",
            "ASIAN_TEAM_TOKEN",
            "GITHUBTOKENFORCIPIPELINE2",
            "MY_VERY_LONG_SERVICE_ACCOUNT_TOKEN_2",
            "PortalTokenForProduction",
            "/run/secrets/3f9a1c0e7b2d4f6a8c9e1b3d5f7a9c0e",
            "secrets/helpdesk.token",
            "2489e9ad-2ee2-8e00-8ec9-32d5f69181c0",
        ];
        for value in names {
            assert_eq!(looks_like_secret(value, true), None, "{value}");
        }
        assert!(looks_like_secret("3f9a1c0e7b2d4f6a8c9e1b3d5f7a9c0e", true).is_some());
    }

    #[test]
    fn environment_variable_names() {
        assert!(valid_env_name("A_1"));
        assert!(valid_env_name("_x"));
        assert!(!valid_env_name("1A"));
        assert!(!valid_env_name("a-b"));
        assert!(!valid_env_name(""));
    }
}
