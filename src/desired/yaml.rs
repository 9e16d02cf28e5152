//! Small helpers over `marked_yaml` nodes that turn every shape mistake into a
//! [`Problem`] with the file, line and column of the offending key or value.

use super::secrets::looks_like_secret;
use super::{Location, Problem};
use marked_yaml::types::{MarkedMappingNode, MarkedScalarNode};
use marked_yaml::{Node, Span};
use std::sync::Arc;

/// The most problems shown for one file; the rest are counted in one closing line. A
/// hostile file (`users: [a,a,a,...]`) would otherwise yield millions of them.
pub const MAX_PROBLEMS_PER_FILE: usize = 100;

/// One file being read: its display path, and the problems found so far.
pub struct FileReader<'a> {
    pub file: &'a str,
    /// `file`, shared by every location this reader makes.
    shared: Arc<str>,
    problems: &'a mut Vec<Problem>,
    reported: usize,
    hidden: usize,
}

/// How the closing line of a file with hidden problems ends, so it sorts last.
pub const HIDDEN_SUFFIX: &str = "per file)";

/// The closing line for a file whose problems were cut at [`MAX_PROBLEMS_PER_FILE`].
pub fn hidden_problems(file: &str, hidden: usize) -> Problem {
    Problem {
        location: Location {
            file: file.into(),
            ..Location::default()
        },
        message: format!(
            "{hidden} more problems in this file are not shown (at most {MAX_PROBLEMS_PER_FILE} per file)"
        ),
    }
}

impl Drop for FileReader<'_> {
    fn drop(&mut self) {
        if self.hidden > 0 {
            self.problems.push(hidden_problems(self.file, self.hidden));
        }
    }
}

impl<'a> FileReader<'a> {
    pub fn new(file: &'a str, problems: &'a mut Vec<Problem>) -> FileReader<'a> {
        FileReader {
            file,
            shared: file.into(),
            problems,
            reported: 0,
            hidden: 0,
        }
    }

    /// Problems found in this file so far, shown or not.
    pub fn count(&self) -> usize {
        self.reported + self.hidden
    }

    /// Where a node starts. A mapping's own span starts at its first value, so a
    /// mapping is located at its first key, where a reader looks for it.
    pub fn start(node: &Node) -> &Span {
        match node {
            Node::Mapping(map) => map.keys().next().map(|k| k.span()).unwrap_or(map.span()),
            other => other.span(),
        }
    }

    /// Where a mapping starts: its first key.
    pub fn map_start(map: &MarkedMappingNode) -> &Span {
        map.keys().next().map(|k| k.span()).unwrap_or(map.span())
    }

    pub fn location(&self, span: &Span) -> Location {
        let (line, column) = span
            .start()
            .map(|m| (m.line(), m.column()))
            .unwrap_or((0, 0));
        Location {
            file: Arc::clone(&self.shared),
            line,
            column,
        }
    }

    pub fn problem(&mut self, span: &Span, message: impl Into<String>) {
        if self.reported >= MAX_PROBLEMS_PER_FILE {
            self.hidden += 1;
            return;
        }
        self.reported += 1;
        let location = self.location(span);
        self.problems.push(Problem {
            location,
            message: message.into(),
        });
    }

    /// Reports every key of `map` that is not in `allowed`, with a "did you mean".
    pub fn check_keys(&mut self, map: &MarkedMappingNode, allowed: &[&str], what: &str) {
        for key in map.keys() {
            if allowed.contains(&key.as_str()) {
                continue;
            }
            if let Some(looks) = looks_like_secret(key.as_str(), false) {
                self.problem(
                    key.span(),
                    format!("unknown key in {what}: it looks like {looks}, so it is not shown; if it is a real secret, revoke it, since it is now in this file's history"),
                );
            } else {
                let hint = suggest(key.as_str(), allowed)
                    .map(|s| format!(" (did you mean '{s}'?)"))
                    .unwrap_or_else(|| format!(" (expected one of: {})", allowed.join(", ")));
                self.problem(
                    key.span(),
                    format!("unknown key '{}' in {what}{hint}", key.as_str()),
                );
            }
        }
    }

    pub fn mapping<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n MarkedMappingNode> {
        match node {
            Node::Mapping(map) => Some(map),
            other => {
                self.problem(
                    Self::start(other),
                    format!("{what} must be a mapping of keys to values"),
                );
                None
            }
        }
    }

    /// A non-empty string value.
    pub fn string<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n MarkedScalarNode> {
        match node {
            Node::Scalar(s) if !s.as_str().trim().is_empty() && s.as_str() != "~" => Some(s),
            Node::Scalar(s) => {
                self.problem(s.span(), format!("{what} is empty"));
                None
            }
            other => {
                self.problem(
                    Self::start(other),
                    format!("{what} must be a single value, not a list or mapping"),
                );
                None
            }
        }
    }

    /// A required string key of `map`; reports its absence at the mapping.
    pub fn required<'n>(
        &mut self,
        map: &'n MarkedMappingNode,
        key: &str,
        what: &str,
    ) -> Option<&'n MarkedScalarNode> {
        match map.get_node(key) {
            Some(node) => self.string(node, &format!("'{key}' of {what}")),
            None => {
                self.problem(
                    Self::map_start(map),
                    format!("{what} is missing the required key '{key}'"),
                );
                None
            }
        }
    }

    /// An optional string key of `map`.
    pub fn optional<'n>(
        &mut self,
        map: &'n MarkedMappingNode,
        key: &str,
        what: &str,
    ) -> Option<&'n MarkedScalarNode> {
        map.get_node(key)
            .and_then(|node| self.string(node, &format!("'{key}' of {what}")))
    }
}

/// The most YAML values (scalars, lists, mappings) one file may hold. Parsed, each costs
/// a few hundred bytes, so this bounds a file's memory whatever its shape; a 16 MiB
/// file of ordinary users holds about 1.7 million.
pub const MAX_VALUES_PER_FILE: usize = 2_000_000;

/// Counts the values of `text` with the streaming parser (no tree is built) and answers
/// the line and column of the first value past `limit`. Syntax errors stop the count;
/// the full parse reports them.
pub fn past_value_limit(text: &str, limit: usize) -> Option<(usize, usize)> {
    use yaml_rust2::parser::{Event, Parser};
    let mut parser = Parser::new_from_str(text);
    let mut count = 0usize;
    loop {
        match parser.next_token() {
            Ok((Event::StreamEnd, _)) | Err(_) => return None,
            Ok((
                Event::Scalar(..)
                | Event::SequenceStart(..)
                | Event::MappingStart(..)
                | Event::Alias(..),
                marker,
            )) => {
                count += 1;
                if count > limit {
                    return Some((marker.line(), marker.col() + 1));
                }
            }
            Ok(_) => {}
        }
    }
}

/// The closest allowed word to a misspelt one, if it is close enough to be a typo.
pub fn suggest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), *c))
        .filter(|(distance, c)| *distance <= 2.max(c.len() / 4) && *distance < c.len())
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::{past_value_limit, suggest};

    #[test]
    fn values_are_counted_up_to_the_limit() {
        assert_eq!(past_value_limit("a: [1, 2]\n", 5), None);
        // mapping, a, list, 1, 2: the fifth value is '2' on line 2.
        assert_eq!(past_value_limit("a:\n  [1,  2]\n", 4), Some((2, 8)));
        assert_eq!(past_value_limit("a: [1, 2", 1), Some((1, 1)));
    }

    #[test]
    fn suggests_close_words_only() {
        let keys = ["name", "status", "reason", "accounts"];
        assert_eq!(suggest("stauts", &keys), Some("status"));
        assert_eq!(suggest("acounts", &keys), Some("accounts"));
        assert_eq!(suggest("nmae", &keys), Some("name"));
        assert_eq!(suggest("department", &keys), None);
    }
}
