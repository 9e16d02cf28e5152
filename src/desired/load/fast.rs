//! The fast path for user files: one pass over the YAML parser's events that builds
//! users directly, without the positioned node tree.
//!
//! It accepts only a file the positioned path would accept without a single problem,
//! and then answers exactly what that path answers (the same users, accounts, statuses,
//! bounds and positions). At the first thing it does not expect (an anchor, a tag, a
//! list where a value belongs, an unknown key, a rule that fails, a syntax error) it
//! gives up and answers `None`, and the caller reads the file the positioned way, which
//! words every problem. Error output is therefore the positioned path's by construction;
//! `proptests.rs` checks that both paths agree on every mutated folder.
//!
//! The mappings come from the byte scanner in `scan.rs` when the file is in its plain
//! subset of YAML, otherwise from the same parser the positioned path sits on
//! (`yaml_rust2`, under `marked_yaml`); either way a scalar's text and position are the
//! ones the positioned path sees.

use super::super::bounds::parse_instant;
use super::super::yaml::MAX_VALUES_PER_FILE;
use super::super::{Account, Bounds, Location, TimeBounds, User};
use super::providers::Instances;
use super::scan;
use super::users::{ACCOUNT_KEYS, USER_KEYS};
use crate::status::Status;
use std::borrow::Cow;
use std::sync::Arc;
use time::OffsetDateTime;
use yaml_rust2::parser::{Event, Parser};

/// What one user file holds: its users, and each user's name with the position of the
/// name (for the folder-wide rule that names are unique).
#[derive(Default)]
pub struct FileUsers {
    pub users: Vec<User>,
    pub names: Vec<(String, Location)>,
}

/// Reads a user file the fast way, or answers `None` when the file is anything but a
/// plainly valid one: with the byte scanner when the file is in its subset of YAML,
/// otherwise with the parser's events.
pub fn read_users(
    text: &str,
    file: &str,
    instances: &Instances,
    statuses: &[&'static str],
) -> Option<FileUsers> {
    let reader = UserReader {
        file: file.into(),
        instances,
        statuses,
    };
    reader.scanned(text).or_else(|| reader.parsed(text))
}

impl UserReader<'_> {
    /// The users of `text` read by the byte scanner, which knows only the plain subset
    /// of YAML that user files are written in.
    fn scanned(&self, text: &str) -> Option<FileUsers> {
        let mut out = FileUsers::default();
        scan::users(text, |map| {
            let (user, name) = self.user(map)?;
            out.users.push(user);
            out.names.push(name);
            Some(())
        })?;
        Some(out)
    }

    /// The users of `text` read from the YAML parser's events.
    fn parsed(&self, text: &str) -> Option<FileUsers> {
        let reader = self;
        let mut out = FileUsers::default();
        let mut events = Events {
            parser: Parser::new_from_str(text),
            values: 0,
        };
        events.expect(|e| matches!(e, Event::StreamStart))?;
        events.expect(|e| matches!(e, Event::DocumentStart))?;
        events.expect(|e| matches!(e, Event::MappingStart(0, None)))?;
        let (key, _) = events.scalar()?;
        if key != "users" {
            return None;
        }
        events.expect(|e| matches!(e, Event::SequenceStart(0, None)))?;
        loop {
            match events.next()? {
                (Event::SequenceEnd, _) => break,
                (Event::MappingStart(0, None), _) => {
                    let map = events.mapping(2)?;
                    let (user, name) = reader.user(map)?;
                    out.users.push(user);
                    out.names.push(name);
                }
                _ => return None,
            }
        }
        events.expect(|e| matches!(e, Event::MappingEnd))?;
        events.expect(|e| matches!(e, Event::DocumentEnd))?;
        events.expect(|e| matches!(e, Event::StreamEnd))?;
        Some(out)
    }
}

/// Both fast ways of reading `text`, for the differential tests: the scanner's answer
/// and the parser events' answer.
#[cfg(test)]
pub(super) fn read_users_both(
    text: &str,
    file: &str,
    instances: &Instances,
    statuses: &[&'static str],
) -> [Option<FileUsers>; 2] {
    let reader = UserReader {
        file: file.into(),
        instances,
        statuses,
    };
    [reader.scanned(text), reader.parsed(text)]
}

/// A scalar with its 1-based position, as the positioned path reports it. Its text is
/// borrowed from the file when the scanner read it, owned when the parser did.
pub(super) struct Scalar<'t> {
    pub(super) text: Cow<'t, str>,
    pub(super) line: usize,
    pub(super) column: usize,
}

impl Scalar<'_> {
    /// The text of a value the positioned path accepts as a string: not blank, not `~`.
    fn string(&self) -> Option<&str> {
        (!self.text.trim().is_empty() && self.text != "~").then_some(&*self.text)
    }
}

/// A value of a user's mapping: a scalar, or a mapping of them (at most two levels).
pub(super) enum Value<'t> {
    Scalar(Scalar<'t>),
    Map(Vec<(Scalar<'t>, Value<'t>)>),
}

impl<'t> Value<'t> {
    fn string(&self) -> Option<&Scalar<'t>> {
        match self {
            Value::Scalar(s) => s.string().map(|_| s),
            Value::Map(_) => None,
        }
    }
}

/// The value of `key` in a mapping read by [`Events::mapping`] (keys are unique there).
fn get<'m, 't>(map: &'m [(Scalar<'t>, Value<'t>)], key: &str) -> Option<&'m Value<'t>> {
    map.iter().find(|(k, _)| k.text == key).map(|(_, v)| v)
}

/// An optional string key: absent is `Some(None)`, present but not a string is `None`.
fn optional<'m, 't>(
    map: &'m [(Scalar<'t>, Value<'t>)],
    key: &str,
) -> Option<Option<&'m Scalar<'t>>> {
    match get(map, key) {
        None => Some(None),
        Some(value) => value.string().map(Some),
    }
}

/// The parser's events, with the same value count the positioned path limits a file by.
struct Events<'t> {
    parser: Parser<std::str::Chars<'t>>,
    values: usize,
}

impl Events<'_> {
    /// The next event, or `None` on a syntax error or past the value limit.
    fn next(&mut self) -> Option<(Event, yaml_rust2::scanner::Marker)> {
        let (event, marker) = self.parser.next_token().ok()?;
        if matches!(
            event,
            Event::Scalar(..)
                | Event::SequenceStart(..)
                | Event::MappingStart(..)
                | Event::Alias(..)
        ) {
            self.values += 1;
            if self.values > MAX_VALUES_PER_FILE {
                return None;
            }
        }
        Some((event, marker))
    }

    fn expect(&mut self, wanted: impl Fn(&Event) -> bool) -> Option<()> {
        let (event, _) = self.next()?;
        wanted(&event).then_some(())
    }

    /// A plain scalar (no anchor, no tag) and its position.
    fn scalar(&mut self) -> Option<(String, (usize, usize))> {
        match self.next()? {
            (Event::Scalar(text, _, 0, None), m) => Some((text, (m.line(), m.col() + 1))),
            _ => None,
        }
    }

    /// The rest of a mapping whose start was just read: scalar keys, each once, and
    /// values that are scalars or (at most `depth` more levels of) mappings.
    fn mapping(&mut self, depth: usize) -> Option<Vec<(Scalar<'static>, Value<'static>)>> {
        let mut entries: Vec<(Scalar, Value)> = Vec::new();
        loop {
            let key = match self.next()? {
                (Event::MappingEnd, _) => return Some(entries),
                (Event::Scalar(text, _, 0, None), m) => Scalar {
                    text: Cow::Owned(text),
                    line: m.line(),
                    column: m.col() + 1,
                },
                _ => return None,
            };
            if entries.iter().any(|(k, _)| k.text == key.text) {
                return None;
            }
            let value = match self.next()? {
                (Event::Scalar(text, _, 0, None), m) => Value::Scalar(Scalar {
                    text: Cow::Owned(text),
                    line: m.line(),
                    column: m.col() + 1,
                }),
                (Event::MappingStart(0, None), _) if depth > 0 => {
                    Value::Map(self.mapping(depth - 1)?)
                }
                _ => return None,
            };
            entries.push((key, value));
        }
    }
}

/// Bounds a mapping sets itself, with the text each came from (for the order rule's
/// message, which the fast path never words, and to tell set from unset).
#[derive(Clone, Copy, Default)]
struct Own<'m> {
    from: Option<OffsetDateTime>,
    until: Option<OffsetDateTime>,
    then: Option<&'m str>,
    before: Option<&'m str>,
}

impl<'m> Own<'m> {
    /// The bound keys of `map`, or `None` if one is not a valid value.
    fn read(map: &'m [(Scalar<'_>, Value<'_>)], statuses: &[&str]) -> Option<Own<'m>> {
        let instant = |key: &str| -> Option<Option<OffsetDateTime>> {
            match optional(map, key)? {
                None => Some(None),
                Some(s) => parse_instant(&s.text).ok().map(Some),
            }
        };
        let status = |key: &str| -> Option<Option<&'m str>> {
            match optional(map, key)? {
                None => Some(None),
                Some(s) => statuses.contains(&&*s.text).then_some(Some(&*s.text)),
            }
        };
        let own = Own {
            from: instant("from")?,
            until: instant("until")?,
            then: status("then")?,
            before: status("before")?,
        };
        own.in_order().then_some(own)
    }

    fn in_order(&self) -> bool {
        !matches!((self.from, self.until), (Some(from), Some(until)) if from >= until)
    }

    fn over(self, user: Own<'m>) -> Own<'m> {
        Own {
            from: self.from.or(user.from),
            until: self.until.or(user.until),
            then: self.then.or(user.then),
            before: self.before.or(user.before),
        }
    }
}

struct UserReader<'a> {
    file: Arc<str>,
    instances: &'a Instances,
    statuses: &'a [&'static str],
}

impl UserReader<'_> {
    fn location(&self, line: usize, column: usize) -> Location {
        Location {
            file: Arc::clone(&self.file),
            line,
            column,
        }
    }

    /// One user, with its name's position; `None` if anything about it is a problem.
    fn user(&self, map: Vec<(Scalar<'_>, Value<'_>)>) -> Option<(User, (String, Location))> {
        let first = map.first()?;
        let location = self.location(first.0.line, first.0.column);
        if map.iter().any(|(k, _)| !USER_KEYS.contains(&&*k.text)) {
            return None;
        }
        let name = get(&map, "name")?.string()?;
        let status = match optional(&map, "status")? {
            Some(s) if self.statuses.contains(&&*s.text) => Some(&*s.text),
            Some(_) => return None,
            None => None,
        };
        let reason = optional(&map, "reason")?.map(|s| s.text.to_string());
        let bounds = Own::read(&map, self.statuses)?;
        let mut accounts = Vec::new();
        match get(&map, "accounts") {
            None => {}
            Some(Value::Scalar(s)) if s.text.is_empty() || s.text == "~" => {}
            Some(Value::Scalar(_)) => return None,
            Some(Value::Map(entries)) => {
                let any_account_sets = |key: &str| {
                    entries
                        .iter()
                        .any(|(_, v)| matches!(v, Value::Map(m) if get(m, key).is_some()))
                };
                if (bounds.then.is_some() && bounds.until.is_none() && !any_account_sets("until"))
                    || (bounds.before.is_some()
                        && bounds.from.is_none()
                        && !any_account_sets("from"))
                {
                    return None;
                }
                accounts.reserve_exact(entries.len());
                for (instance, value) in entries {
                    accounts.push(self.account(instance, value, status, bounds)?);
                }
            }
        }
        let name_at = (name.text.to_string(), self.location(name.line, name.column));
        let user = User {
            name: name.text.to_string(),
            reason,
            accounts,
            location,
        };
        Some((user, name_at))
    }

    fn account(
        &self,
        instance: &Scalar<'_>,
        value: &Value<'_>,
        default_status: Option<&str>,
        user_bounds: Own,
    ) -> Option<Account> {
        let (id, own_status, own) = match value {
            Value::Map(map) => {
                if map.iter().any(|(k, _)| !ACCOUNT_KEYS.contains(&&*k.text)) {
                    return None;
                }
                (
                    get(map, "id")?.string()?,
                    optional(map, "status")?.map(|s| &*s.text),
                    Own::read(map, self.statuses)?,
                )
            }
            Value::Scalar(_) => (value.string()?, None, Own::default()),
        };
        if id.text == "." || id.text == ".." || id.text.chars().any(char::is_control) {
            return None;
        }
        let kind = (*self.instances.kinds.get(&*instance.text)?)?;
        // The kind's own name for a status it accepts: no string per account.
        let accepted = |s: &str| kind.statuses.iter().copied().find(|k| *k == s);
        let status = accepted(own_status.or(default_status)?)?;
        let effective = own.over(user_bounds);
        if (own.from.is_some() || own.until.is_some()) && !effective.in_order() {
            return None;
        }
        if (own.then.is_some() && effective.until.is_none())
            || (own.before.is_some() && effective.from.is_none())
        {
            return None;
        }
        let status_of = |s: Option<&str>| match s {
            None => Some(Status::inactive()),
            Some(s) => accepted(s).map(Status::from_static),
        };
        let bounds = Bounds::from(TimeBounds {
            from: effective.from,
            until: effective.until,
            before: status_of(effective.before)?,
            then: status_of(effective.then)?,
        });
        Some(Account {
            instance: instance.text.to_string(),
            id: id.text.to_string(),
            status: Status::from_static(status),
            bounds,
            location: self.location(id.line, id.column),
        })
    }
}
