//! Small helpers the kinds share: time formatting, deterministic hashes, ids, paging.

use std::time::{SystemTime, UNIX_EPOCH};

use rand::Rng;

use super::ApiRequest;

pub(super) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `2024-05-01T12:00:00Z` for unix seconds, without a date crate.
pub(super) fn rfc3339(secs: u64) -> String {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

/// A stable hash (FNV-1a) for deriving per-account details (avatars, roles) deterministically.
pub(super) fn hash(text: &str, salt: u64) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325_u64 ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Deterministically true for about one account in `n` (per `salt`).
pub(super) fn one_in(n: u64, id: &str, salt: u64) -> bool {
    hash(id, salt).is_multiple_of(n)
}

/// A random version-4 uuid.
pub(super) fn uuid(rng: &mut impl Rng) -> String {
    let mut b: [u8; 16] = rng.random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// A query parameter that must be a non-negative integer, or its default when absent.
pub(super) fn count_param(req: &ApiRequest, name: &str, default: usize) -> Result<usize, String> {
    match req.query_param(name) {
        None => Ok(default),
        Some(v) => v.trim().parse().map_err(|_| {
            format!("query parameter '{name}' must be a non-negative integer, got '{v}'")
        }),
    }
}

/// The index range of one page.
pub(super) fn page_range(total: usize, offset: usize, limit: usize) -> std::ops::Range<usize> {
    let start = offset.min(total);
    start..start.saturating_add(limit).min(total)
}

/// First and last name for display, from an account name like `anna.schmidt2@example.com`.
pub(super) fn display_names(name: &str) -> (String, String) {
    let local = name.split('@').next().unwrap_or(name);
    let mut parts = local
        .split(['.', '_', '-'])
        .map(|p| p.trim_end_matches(|c: char| c.is_ascii_digit()))
        .filter(|p| !p.is_empty())
        .map(capitalize);
    let first = parts.next().unwrap_or_else(|| local.to_string());
    let last = parts.collect::<Vec<_>>().join(" ");
    (first, last)
}

pub(super) fn capitalize(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// The account's email: the name itself when it is one, else `<name>@example.com`.
pub(super) fn email_of(name: &str) -> String {
    if name.contains('@') {
        name.to_string()
    } else {
        format!("{name}@example.com")
    }
}
