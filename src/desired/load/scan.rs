//! The fastest path for user files: a scanner over bytes for the plain subset of YAML
//! that user files are written in, with no YAML parser at all.
//!
//! The subset: `users:` at the top, then a block sequence of block mappings; keys are
//! plain words; values are plain, single- or double-quoted scalars that need no
//! unescaping, flow mappings `{ a: x, b: y }` on one line, or nested block mappings;
//! comments and blank lines anywhere. Each scalar comes out with the same text and the
//! same 1-based line and column (counted in characters) as `yaml_rust2` reports, so
//! [`super::fast`] builds the very users it would build from the parser's events.
//!
//! Anything outside the subset (tabs, carriage returns, anchors, tags, aliases, block
//! scalars, multi-line or escaped scalars, `? ` keys, flow sequences, document markers,
//! a flow mapping as a list item, a value past the file's value limit...) answers
//! `None`, and the caller falls back to the event path, then to the positioned path.
//! When in doubt it declines: declining costs time, accepting wrongly would change what
//! the loader answers. `proptests.rs` checks it against the positioned path.

use super::super::yaml::MAX_VALUES_PER_FILE;
use super::fast::{Scalar, Value};
use std::borrow::Cow;

/// Reads the users of `text`, calling `each` with every user's mapping in file order.
/// `None` when the file is outside the subset, or when `each` answers `None`.
pub(super) fn users<'t>(
    text: &'t str,
    mut each: impl FnMut(Vec<(Scalar<'t>, Value<'t>)>) -> Option<()>,
) -> Option<()> {
    if !plain_characters(text) {
        return None;
    }
    let mut scan = Scanner {
        text,
        next: 0,
        number: 0,
        peeked: None,
        values: 0,
        ascii: text.is_ascii(),
    };
    // The root mapping, its key `users` and the sequence.
    scan.count(3)?;
    let root = scan.peek()?;
    if root.indent != 0 {
        return None;
    }
    scan.advance();
    let (key, after) = scan.key(root, root.start)?;
    if key.text != "users" || !scan.rest_is_empty(root, after) {
        return None;
    }
    let first = scan.peek()?;
    let dash = first.indent;
    while let Some(line) = scan.peek() {
        let bytes = text.as_bytes();
        if line.indent != dash || bytes[line.start + dash] != b'-' {
            return None;
        }
        let spaces = bytes[line.start + dash + 1..line.end]
            .iter()
            .take_while(|b| **b == b' ')
            .count();
        let at = line.start + dash + 1 + spaces;
        if spaces == 0 || at == line.end {
            return None;
        }
        scan.count(1)?;
        scan.advance();
        let map = scan.block_map(line, at, dash + 1 + spaces, 2)?;
        each(map)?;
    }
    Some(())
}

/// Whether `text` holds only characters the subset allows: no tab, no carriage return,
/// no other control character, and none of the characters YAML treats specially (the
/// byte order mark, the C1 controls, the Unicode line separators, non-characters).
fn plain_characters(text: &str) -> bool {
    let ascii_ok = text.bytes().all(|b| b == b'\n' || (b >= 0x20 && b != 0x7f));
    ascii_ok
        && (text.is_ascii()
            || !text.chars().any(|c| {
                matches!(
                    c,
                    '\u{80}'
                        ..='\u{9f}'
                            | '\u{2028}'
                            | '\u{2029}'
                            | '\u{feff}'
                            | '\u{fffe}'
                            | '\u{ffff}'
                )
            }))
}

/// One line that holds content (not blank, not only a comment).
#[derive(Clone, Copy)]
struct Line {
    /// Byte offsets of the line's start and end (the end excludes the newline).
    start: usize,
    end: usize,
    /// Leading spaces.
    indent: usize,
    /// 1-based.
    number: usize,
}

struct Scanner<'t> {
    text: &'t str,
    /// Byte offset of the first line not yet looked at.
    next: usize,
    /// Number of the last line looked at.
    number: usize,
    /// The next content line, once looked at; `Some(None)` at the end of the text.
    peeked: Option<Option<Line>>,
    /// Values so far, counted as the parser's events count them.
    values: usize,
    /// Whether the whole text is ASCII (a column is then a byte offset).
    ascii: bool,
}

impl<'t> Scanner<'t> {
    /// Counts `n` more values; `None` past the file's value limit (the positioned path
    /// words that problem).
    fn count(&mut self, n: usize) -> Option<()> {
        self.values += n;
        (self.values <= MAX_VALUES_PER_FILE).then_some(())
    }

    /// The next content line, without consuming it.
    fn peek(&mut self) -> Option<Line> {
        if let Some(line) = self.peeked {
            return line;
        }
        let bytes = self.text.as_bytes();
        let line = loop {
            if self.next >= bytes.len() {
                break None;
            }
            let start = self.next;
            let end = bytes[start..]
                .iter()
                .position(|b| *b == b'\n')
                .map_or(bytes.len(), |n| start + n);
            self.next = end + 1;
            self.number += 1;
            let indent = bytes[start..end].iter().take_while(|b| **b == b' ').count();
            if start + indent == end || bytes[start + indent] == b'#' {
                continue;
            }
            break Some(Line {
                start,
                end,
                indent,
                number: self.number,
            });
        };
        self.peeked = Some(line);
        line
    }

    /// Consumes the line [`Self::peek`] answered.
    fn advance(&mut self) {
        self.peeked = None;
    }

    /// The 1-based column of byte `at` of `line`, in characters.
    fn column(&self, line: Line, at: usize) -> usize {
        if self.ascii {
            return at - line.start + 1;
        }
        self.text.as_bytes()[line.start..at]
            .iter()
            .filter(|b| (**b & 0xc0) != 0x80)
            .count()
            + 1
    }

    fn scalar(&self, line: Line, from: usize, to: usize, at: usize) -> Scalar<'t> {
        Scalar {
            text: Cow::Borrowed(&self.text[from..to]),
            line: line.number,
            column: self.column(line, at),
        }
    }

    /// A plain key at `at` followed by `:` and a space or the end of the line; answers
    /// the key and the offset just past the `:`.
    fn key(&self, line: Line, at: usize) -> Option<(Scalar<'t>, usize)> {
        let bytes = &self.text.as_bytes()[..line.end];
        let first = *bytes.get(at)?;
        if !(first.is_ascii_alphanumeric() || first == b'_') {
            return None;
        }
        let end = at
            + bytes[at..]
                .iter()
                .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
                .count();
        if bytes.get(end) != Some(&b':') || !matches!(bytes.get(end + 1), None | Some(b' ')) {
            return None;
        }
        Some((self.scalar(line, at, end, at), end + 1))
    }

    /// Whether the rest of `line` from `at` is only spaces and perhaps a comment that a
    /// space separates.
    fn rest_is_empty(&self, line: Line, at: usize) -> bool {
        let bytes = &self.text.as_bytes()[at..line.end];
        let spaces = bytes.iter().take_while(|b| **b == b' ').count();
        spaces == bytes.len() || (spaces > 0 && bytes[spaces] == b'#')
    }

    /// The rest of a block mapping at indentation `indent` whose first key is at byte
    /// `at` of `line` (already consumed); values may be mappings `depth` levels deep.
    fn block_map(
        &mut self,
        mut line: Line,
        mut at: usize,
        indent: usize,
        depth: usize,
    ) -> Option<Vec<(Scalar<'t>, Value<'t>)>> {
        let mut entries: Vec<(Scalar<'t>, Value<'t>)> = Vec::new();
        loop {
            let (key, value) = self.entry(line, at, indent, depth)?;
            if entries.iter().any(|(k, _)| k.text == key.text) {
                return None;
            }
            entries.push((key, value));
            match self.peek() {
                Some(next) if next.indent == indent => {
                    self.advance();
                    line = next;
                    at = next.start + indent;
                }
                Some(next) if next.indent > indent => return None,
                _ => return Some(entries),
            }
        }
    }

    /// One `key: value` entry of a block mapping at `indent`, whose key starts at `at`.
    fn entry(
        &mut self,
        line: Line,
        at: usize,
        indent: usize,
        depth: usize,
    ) -> Option<(Scalar<'t>, Value<'t>)> {
        let (key, after) = self.key(line, at)?;
        self.count(2)?;
        let bytes = self.text.as_bytes();
        let start = after
            + bytes[after..line.end]
                .iter()
                .take_while(|b| **b == b' ')
                .count();
        if self.rest_is_empty(line, after) {
            return match self.peek() {
                Some(next) if next.indent > indent => {
                    if depth == 0 || bytes[next.start + next.indent] == b'-' {
                        return None;
                    }
                    self.advance();
                    let map =
                        self.block_map(next, next.start + next.indent, next.indent, depth - 1)?;
                    Some((key, Value::Map(map)))
                }
                // A key with no value: the parser's empty scalar, at no position
                // anyone reads (an empty value is never a name or an id).
                _ => {
                    let empty = Scalar {
                        text: Cow::Borrowed(""),
                        line: line.number,
                        column: self.column(line, start),
                    };
                    Some((key, Value::Scalar(empty)))
                }
            };
        }
        if bytes[start] == b'{' {
            if depth == 0 {
                return None;
            }
            let (map, end) = self.flow_map(line, start)?;
            return self
                .rest_is_empty(line, end)
                .then_some((key, Value::Map(map)));
        }
        let (value, end) = self.block_scalar(line, start)?;
        self.rest_is_empty(line, end)
            .then_some((key, Value::Scalar(value)))
    }

    /// A scalar value in block context at byte `at` of `line`, and the offset past it.
    fn block_scalar(&self, line: Line, at: usize) -> Option<(Scalar<'t>, usize)> {
        let bytes = &self.text.as_bytes()[..line.end];
        match bytes[at] {
            b'"' | b'\'' => self.quoted(line, at),
            b if is_indicator(b) => None,
            _ => {
                let mut end = at;
                let mut i = at;
                while i < bytes.len() {
                    match bytes[i] {
                        b' ' if bytes.get(i + 1) == Some(&b'#') => break,
                        b':' if matches!(bytes.get(i + 1), None | Some(b' ')) => return None,
                        b' ' => {}
                        _ => end = i + 1,
                    }
                    i += 1;
                }
                Some((self.scalar(line, at, end, at), end))
            }
        }
    }

    /// A quoted scalar that closes on its line and needs no unescaping (no `\` in
    /// double quotes, no `''` in single quotes).
    fn quoted(&self, line: Line, at: usize) -> Option<(Scalar<'t>, usize)> {
        let bytes = &self.text.as_bytes()[..line.end];
        let quote = bytes[at];
        let close = at + 1 + bytes[at + 1..].iter().position(|b| *b == quote)?;
        if quote == b'"' && bytes[at + 1..close].contains(&b'\\') {
            return None;
        }
        if quote == b'\'' && bytes.get(close + 1) == Some(&b'\'') {
            return None;
        }
        Some((self.scalar(line, at + 1, close, at), close + 1))
    }

    /// A flow mapping `{ key: value, ... }` of scalars, closed on its line, starting at
    /// byte `at`; answers it and the offset past the `}`.
    fn flow_map(&mut self, line: Line, at: usize) -> Option<(Vec<(Scalar<'t>, Value<'t>)>, usize)> {
        let bytes = &self.text.as_bytes()[..line.end];
        let skip = |mut i: usize| {
            while bytes.get(i) == Some(&b' ') {
                i += 1;
            }
            i
        };
        let mut entries: Vec<(Scalar<'t>, Value<'t>)> = Vec::new();
        let mut i = skip(at + 1);
        if bytes.get(i) == Some(&b'}') {
            return Some((entries, i + 1));
        }
        loop {
            let (key, after) = self.key(line, i)?;
            if bytes.get(after) != Some(&b' ') {
                return None;
            }
            i = skip(after);
            let (value, end) = match *bytes.get(i)? {
                b'"' | b'\'' => self.quoted(line, i)?,
                b if is_indicator(b) => return None,
                _ => {
                    let mut end = i;
                    let mut j = i;
                    while let Some(&b) = bytes.get(j) {
                        match b {
                            b',' | b'}' => break,
                            // `:` inside a plain scalar (a time's), never before a
                            // space, an indicator or the end.
                            b':' if !matches!(
                                bytes.get(j + 1),
                                None | Some(b' ' | b',' | b'}' | b'{' | b'[' | b']')
                            ) =>
                            {
                                end = j + 1
                            }
                            b':' | b'#' | b'[' | b']' | b'{' => return None,
                            b' ' => {}
                            _ => end = j + 1,
                        }
                        j += 1;
                    }
                    (self.scalar(line, i, end, i), j)
                }
            };
            self.count(2)?;
            if entries.iter().any(|(k, _)| k.text == key.text) {
                return None;
            }
            entries.push((key, Value::Scalar(value)));
            i = skip(end);
            match bytes.get(i) {
                Some(b',') => {
                    i = skip(i + 1);
                    if bytes.get(i) == Some(&b'}') {
                        return None;
                    }
                }
                Some(b'}') => return Some((entries, i + 1)),
                _ => return None,
            }
        }
    }
}

/// A byte that, first in a scalar, makes it something other than a plain scalar (or a
/// plain scalar the subset leaves to the parser).
fn is_indicator(b: u8) -> bool {
    matches!(
        b,
        b'-' | b'?'
            | b':'
            | b','
            | b'['
            | b']'
            | b'{'
            | b'}'
            | b'#'
            | b'&'
            | b'*'
            | b'!'
            | b'|'
            | b'>'
            | b'%'
            | b'@'
            | b'`'
            | b'"'
            | b'\''
    )
}

#[cfg(test)]
mod tests {
    use super::users;
    use yaml_rust2::parser::{Event, Parser};

    /// Every user the scanner reads from `text`, flattened: `-` per user, each scalar
    /// as `text@line:column`, `{`/`}` around a nested mapping; `None` if it declines.
    /// An empty value shows no position: no reader uses it (the parser puts it at the
    /// next token, the scanner at the key's line).
    fn scanned(text: &str) -> Option<Vec<String>> {
        use super::super::fast::Value;
        fn flatten(map: &[(super::Scalar, Value)], out: &mut Vec<String>) {
            for (key, value) in map {
                out.push(format!("{}@{}:{}", key.text, key.line, key.column));
                match value {
                    Value::Scalar(s) if s.text.is_empty() => out.push("(empty)".into()),
                    Value::Scalar(s) => out.push(format!("{}@{}:{}", s.text, s.line, s.column)),
                    Value::Map(inner) => {
                        out.push("{".into());
                        flatten(inner, out);
                        out.push("}".into());
                    }
                }
            }
        }
        let mut out = Vec::new();
        users(text, |map| {
            out.push("-".into());
            flatten(&map, &mut out);
            Some(())
        })?;
        Some(out)
    }

    /// The same flattening from `yaml_rust2`'s events (the parser the other paths use),
    /// for a file of the shape `users: [mappings]`.
    fn parsed(text: &str) -> Vec<String> {
        let mut parser = Parser::new_from_str(text);
        let mut out = Vec::new();
        let mut depth = 0usize;
        let mut scalars = 0usize;
        loop {
            let (event, marker) = parser.next_token().expect("valid YAML");
            match event {
                Event::StreamEnd => return out,
                Event::MappingStart(..) => {
                    depth += 1;
                    match depth {
                        2 => out.push("-".into()),
                        3.. => out.push("{".into()),
                        _ => {}
                    }
                }
                Event::MappingEnd => {
                    if depth >= 3 {
                        out.push("}".into());
                    }
                    depth -= 1;
                }
                Event::Scalar(text, ..) => {
                    scalars += 1;
                    if scalars > 1 && text.is_empty() {
                        out.push("(empty)".into());
                    } else if scalars > 1 {
                        out.push(format!("{text}@{}:{}", marker.line(), marker.col() + 1));
                    }
                }
                _ => {}
            }
        }
    }

    #[test]
    fn each_construct_reads_as_the_parser_reads_it() {
        let cases = [
            ("block", "users:\n  - name: ann\n    status: active\n"),
            ("sequence at column 1", "users:\n- name: ann\n  status: active\n"),
            ("wide dash", "users:\n  -   name: ann\n      status: active\n"),
            ("double quoted", "users:\n  - name: \"ann b\"\n    reason: \"a: b # c\"\n"),
            ("single quoted", "users:\n  - name: 'ann'\n    reason: 'it \"is\"'\n"),
            ("plain with inner marks", "users:\n  - name: a#b:c,d{e}\n    reason: x \"y\" z\n"),
            ("trailing spaces", "users:\n  - name: ann   \n    status: active  \n"),
            ("comments", "# top\nusers: # list\n  # between\n  - name: ann # who\n# anywhere\n    status: active\n"),
            ("blank lines", "\nusers:\n\n  - name: ann\n\n    status: active\n\n"),
            ("no final newline", "users:\n  - name: ann"),
            ("flow", "users:\n  - name: ann\n    accounts:\n      portal: { id: p-1, status: active }\n"),
            ("tight flow", "users:\n  - name: ann\n    accounts: {portal: p-1,helpdesk: 'h 1'}\n"),
            ("flow time", "users:\n  - accounts:\n      p: { id: x, until: 2026-12-15T18:00:00Z }\n"),
            ("empty flow", "users:\n  - name: ann\n    accounts: {}\n"),
            ("flow comment", "users:\n  - name: ann\n    accounts: { portal: \"p\" } # c\n"),
            ("nested", "users:\n  - name: ann\n    accounts:\n      portal:\n        id: p-1\n        status: active\n      helpdesk: h-1\n  - name: bob\n"),
            ("empty value", "users:\n  - name: ann\n    accounts:\n  - name: bob\n    accounts: # none\n"),
            ("non-ascii", "users:\n  - name: José Ñúñez\n    reason: \"Départ — ok\"\n    accounts: { portal: ü-1, helpdesk: 'ö' }\n"),
            ("dotted keys", "users:\n  - name: ann\n    accounts:\n      eu.portal_2-b: p\n"),
        ];
        for (what, text) in cases {
            assert_eq!(scanned(text), Some(parsed(text)), "{what}: {text}");
        }
    }

    #[test]
    fn anything_outside_the_subset_is_declined() {
        let cases = [
            ("tab", "users:\n  - name:\tann\n"),
            ("carriage return", "users:\r\n  - name: ann\r\n"),
            ("control", "users:\n  - name: a\u{1}b\n"),
            ("c1 control", "users:\n  - name: a\u{85}b\n"),
            ("line separator", "users:\n  - name: a\u{2028}b\n"),
            ("anchor", "users:\n  - name: &a ann\n"),
            ("alias", "users:\n  - name: *a\n"),
            ("tag", "users:\n  - name: !x ann\n"),
            ("block scalar", "users:\n  - reason: >\n      text\n"),
            ("literal scalar", "users:\n  - reason: |\n      text\n"),
            ("multi-line plain", "users:\n  - reason: one\n      two\n"),
            (
                "multi-line quoted",
                "users:\n  - reason: \"one\n      two\"\n",
            ),
            ("escape", "users:\n  - name: \"a\\tb\"\n"),
            ("single-quote escape", "users:\n  - name: 'O''Brien'\n"),
            ("text after quote", "users:\n  - name: 'a' b\n"),
            ("comment glued to quote", "users:\n  - name: 'a'#b\n"),
            ("question key", "users:\n  - ? name\n    : ann\n"),
            ("quoted key", "users:\n  - \"name\": ann\n"),
            ("key with space", "users:\n  - full name: ann\n"),
            ("colon in value", "users:\n  - name: a: b\n"),
            ("colon at end", "users:\n  - name: ann:\n"),
            ("document start", "---\nusers:\n  - name: ann\n"),
            ("document end", "users:\n  - name: ann\n...\n"),
            ("directive", "%YAML 1.2\n---\nusers: []\n"),
            ("flow sequence", "users: []\n"),
            ("flow item", "users:\n  - { name: ann }\n"),
            ("flow list value", "users:\n  - name: [ann]\n"),
            (
                "nested flow",
                "users:\n  - accounts: { portal: { id: p } }\n",
            ),
            (
                "multi-line flow",
                "users:\n  - accounts: { portal: p,\n      helpdesk: h }\n",
            ),
            (
                "flow trailing comma",
                "users:\n  - accounts: { portal: p, }\n",
            ),
            (
                "flow empty value",
                "users:\n  - accounts: { portal: , helpdesk: h }\n",
            ),
            ("flow colon", "users:\n  - accounts: { portal: a: b }\n"),
            (
                "flow colon at the end",
                "users:\n  - accounts: { portal: a:}\n",
            ),
            ("flow glued key", "users:\n  - accounts: { portal:p }\n"),
            ("sequence value", "users:\n  - accounts:\n    - p\n"),
            (
                "nested sequence value",
                "users:\n  - accounts:\n      - p\n",
            ),
            (
                "too deep",
                "users:\n  - accounts:\n      portal:\n        id:\n          x: y\n",
            ),
            (
                "flow too deep",
                "users:\n  - accounts:\n      portal:\n        id: { x: y }\n",
            ),
            (
                "over-indented key",
                "users:\n  - name: ann\n      status: active\n",
            ),
            (
                "between indents",
                "users:\n  - accounts:\n        portal: p\n      helpdesk: h\n",
            ),
            ("duplicate key", "users:\n  - name: ann\n    name: bob\n"),
            (
                "duplicate flow key",
                "users:\n  - accounts: { p: a, p: b }\n",
            ),
            ("other top-level key", "users:\n  - name: ann\nextra: 1\n"),
            ("top-level first", "extra: 1\nusers:\n  - name: ann\n"),
            ("indented root", "  users:\n    - name: ann\n"),
            ("users with no list", "users:\n"),
            ("users scalar", "users: ann\n"),
            ("dash alone", "users:\n  -\n    name: ann\n"),
            ("dash glued", "users:\n  -name: ann\n"),
            ("nested dash", "users:\n  - - name: ann\n"),
            (
                "item at another indent",
                "users:\n  - name: ann\n - name: bob\n",
            ),
            ("plain starting with dash", "users:\n  - name: -ann\n"),
            ("plain starting with indicator", "users:\n  - name: @ann\n"),
        ];
        for (what, text) in cases {
            assert_eq!(scanned(text), None, "{what}: {text:?}");
        }
    }

    #[test]
    fn a_reader_that_declines_a_user_stops_the_scan() {
        let text = "users:\n  - name: ann\n  - name: bob\n  - name: cy\n";
        let mut seen = 0;
        let answer = users(text, |_| {
            seen += 1;
            (seen < 2).then_some(())
        });
        assert_eq!((answer, seen), (None, 2));
    }

    #[test]
    fn synthetic_files_are_in_the_subset() {
        let text = crate::desired::synthetic::user_file(3, 0, 50);
        assert_eq!(scanned(&text), Some(parsed(&text)));
        let text = crate::desired::synthetic::w3_user_file(0, 50);
        assert_eq!(scanned(&text), Some(parsed(&text)));
        let text = crate::desired::proptests::SUBSET;
        assert_eq!(scanned(text), Some(parsed(text)));
    }
}
