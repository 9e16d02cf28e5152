//! Time bounds in user files (contract section 7): `from`, `until`, `then` and `before`
//! on a user or on an account's long form, read with their positions so that every
//! rule is reported where it is broken.

use super::yaml::{suggest, FileReader};
use super::{Bounds, TimeBounds};
use crate::model::KindSpec;
use crate::status::Status;
use marked_yaml::types::{MarkedMappingNode, MarkedScalarNode};
use marked_yaml::Span;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The bounds one mapping (a user, or an account's long form) sets itself, with the
/// nodes they came from. A value that was reported as a problem is left out, so that
/// nothing downstream reports it a second time.
#[derive(Default, Clone, Copy)]
pub struct RawBounds<'n> {
    pub from: Option<(OffsetDateTime, &'n MarkedScalarNode)>,
    pub until: Option<(OffsetDateTime, &'n MarkedScalarNode)>,
    pub then: Option<&'n MarkedScalarNode>,
    pub before: Option<&'n MarkedScalarNode>,
}

impl<'n> RawBounds<'n> {
    /// Reads and checks the bound keys of `map`; `statuses` are every status some kind
    /// accepts (whether this account's kind accepts it is checked per account).
    pub fn read(
        r: &mut FileReader,
        map: &'n MarkedMappingNode,
        what: &str,
        statuses: &[&str],
    ) -> RawBounds<'n> {
        let mut instant = |key: &str| {
            let node = r.optional(map, key, what)?;
            match parse_instant(node.as_str()) {
                Ok(at) => Some((at, node)),
                Err(why) => {
                    r.problem(node.span(), format!("'{key}' of {what}: {why}"));
                    None
                }
            }
        };
        let from = instant("from");
        let until = instant("until");
        let mut status = |key: &str| {
            let node = r.optional(map, key, what)?;
            if statuses.contains(&node.as_str()) {
                return Some(node);
            }
            let hint = suggest(node.as_str(), statuses)
                .map(|s| format!(" (did you mean '{s}'?)"))
                .unwrap_or_default();
            r.problem(
                node.span(),
                format!(
                    "unknown status '{}' in '{key}' of {what}{hint}; statuses: {}",
                    node.as_str(),
                    statuses.join(", ")
                ),
            );
            None
        };
        let then = status("then");
        let before = status("before");
        RawBounds {
            from,
            until,
            then,
            before,
        }
    }

    /// The user's bounds with this account's replacing them key by key.
    fn over(self, user: RawBounds<'n>) -> RawBounds<'n> {
        RawBounds {
            from: self.from.or(user.from),
            until: self.until.or(user.until),
            then: self.then.or(user.then),
            before: self.before.or(user.before),
        }
    }

    /// `from` must be earlier than `until`; reported at `until`.
    pub fn check_order(&self, r: &mut FileReader, what: &str) {
        if let (Some((from, from_node)), Some((until, until_node))) = (self.from, self.until) {
            if from >= until {
                r.problem(
                    until_node.span(),
                    format!(
                        "'from' ({}) of {what} must be earlier than 'until' ({})",
                        from_node.as_str(),
                        until_node.as_str()
                    ),
                );
            }
        }
    }
}

/// Where an account's effective bounds come from, for its checks and messages.
pub struct AccountBounds<'s, 'n> {
    pub own: RawBounds<'n>,
    pub user: RawBounds<'n>,
    /// The account's instance key: where an inherited value that does not fit is reported.
    pub instance: &'s Span,
    pub instance_name: &'s str,
    pub what: &'s str,
    pub user_what: &'s str,
}

impl AccountBounds<'_, '_> {
    /// Checks the rules that need both levels and the account's kind, and answers the
    /// effective bounds.
    pub fn resolve(&self, r: &mut FileReader, kind: Option<&'static KindSpec>) -> Bounds {
        let effective = self.own.over(self.user);
        if self.own.from.is_some() || self.own.until.is_some() {
            effective.check_order(r, self.what);
        }
        for (key, own, inherited, needs) in [
            (
                "then",
                self.own.then,
                self.user.then,
                effective.until.is_some(),
            ),
            (
                "before",
                self.own.before,
                self.user.before,
                effective.from.is_some(),
            ),
        ] {
            if let (Some(node), false) = (own, needs) {
                let bound = if key == "then" { "until" } else { "from" };
                r.problem(
                    node.span(),
                    format!(
                        "'{key}' of {} never takes effect: neither the account nor its user sets '{bound}'",
                        self.what
                    ),
                );
            }
            let Some((node, inherited)) = own.map(|n| (n, false)).or(inherited.map(|n| (n, true)))
            else {
                continue;
            };
            let Some(kind) = kind else { continue };
            if kind.statuses.contains(&node.as_str()) {
                continue;
            }
            let (at, origin) = if inherited {
                (self.instance, format!(" of {}", self.user_what))
            } else {
                (node.span(), String::new())
            };
            r.problem(
                at,
                format!(
                    "'{key}' status '{}'{origin} cannot be set at '{}' (kind {}); it accepts: {}",
                    node.as_str(),
                    self.instance_name,
                    kind.name,
                    kind.statuses.join(", ")
                ),
            );
        }
        let status = |node: Option<&MarkedScalarNode>| {
            node.map_or_else(Status::inactive, |n| Status::new(n.as_str()))
        };
        Bounds::from(TimeBounds {
            from: effective.from.map(|(at, _)| at),
            until: effective.until.map(|(at, _)| at),
            before: status(effective.before),
            then: status(effective.then),
        })
    }
}

/// Parses an RFC 3339 time with an explicit offset (`Z` or `+hh:mm`), answering why not
/// in words a folder's author can act on.
pub fn parse_instant(text: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(text, &Rfc3339).map_err(|error| {
        if lacks_offset(text) && text.len() >= 19 {
            format!(
                "'{}' has no UTC offset; write it with one, e.g. '{}Z' or '{}+01:00'",
                text.escape_debug(),
                text.escape_debug(),
                text.escape_debug()
            )
        } else if lacks_offset(text) {
            format!(
                "'{}' has no UTC offset; write an RFC 3339 time such as 2026-12-31T18:00:00+01:00",
                text.escape_debug()
            )
        } else {
            format!(
                "'{}' is not a valid RFC 3339 time such as 2026-12-31T18:00:00+01:00 ({error})",
                text.escape_debug()
            )
        }
    })
}

/// A date and a time of day with nothing saying which offset they are in.
fn lacks_offset(text: &str) -> bool {
    let bytes = text.as_bytes();
    let separated = matches!(bytes.get(10), Some(b'T' | b't' | b' '));
    let time_of_day = text.get(11..).unwrap_or("");
    separated
        && time_of_day.len() >= 5
        && !time_of_day.contains(['Z', 'z', '+', '-'])
        && time_of_day
            .chars()
            .all(|c| c.is_ascii_digit() || c == ':' || c == '.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_kept_and_required() {
        let at = parse_instant("2026-12-31T18:00:00+01:00").unwrap();
        assert_eq!(at.offset().whole_hours(), 1);
        assert_eq!(
            at,
            parse_instant("2026-12-31T17:00:00Z").unwrap(),
            "the same instant"
        );
        let missing = parse_instant("2026-12-31T18:00:00").unwrap_err();
        assert!(missing.contains("has no UTC offset"), "{missing}");
        let short = parse_instant("2026-12-31T18:00").unwrap_err();
        assert!(
            short.contains("has no UTC offset; write an RFC 3339 time such as"),
            "no invalid suggestion without seconds: {short}"
        );
        for impossible in [
            "2026-02-30T10:00:00Z",
            "2026-13-01T10:00:00Z",
            "2026-12-31T25:00:00Z",
        ] {
            let error = parse_instant(impossible).unwrap_err();
            assert!(error.contains("is not a valid RFC 3339 time"), "{error}");
        }
        assert!(parse_instant("2026-12-31").is_err());
        assert!(parse_instant("tomorrow").is_err());
    }
}
