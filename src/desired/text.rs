//! From a file's bytes to text the YAML parser may see, refusing what would make the
//! parser see less (or other) than a reviewer sees: a NUL byte that silently ends the
//! file, other control characters, invalid UTF-8, a second YAML document that the
//! parser would drop. Every refusal carries its line and column.

use super::{Location, Problem};

const BOM: &str = "\u{feff}";
/// How many further forbidden characters a problem counts before it says "or more".
const MORE_COUNTED: usize = 1000;

/// Line and column (1-based, columns in characters) of byte offset `at` in `text`,
/// counting a line break the way YAML does (LF, CRLF, or a lone CR).
pub fn position(text: &str, at: usize) -> (usize, usize) {
    let mut line = 1;
    let mut column = 1;
    let mut previous = '\0';
    for c in text[..at.min(text.len())].chars() {
        match c {
            '\n' if previous == '\r' => {}
            '\n' | '\r' => {
                line += 1;
                column = 1;
            }
            _ => column += 1,
        }
        previous = c;
    }
    (line, column)
}

fn problem(file: &str, (line, column): (usize, usize), message: String) -> Problem {
    Problem {
        location: Location {
            file: file.into(),
            line,
            column,
        },
        message,
    }
}

/// A character a desired-state file may not hold, and what to call it.
fn forbidden(c: char) -> Option<&'static str> {
    match c {
        '\t' | '\n' | '\r' => None,
        '\0' => Some("a NUL byte"),
        '\u{1}'..='\u{1f}' | '\u{7f}' => Some("a control character"),
        '\u{80}'..='\u{9f}' => Some("a C1 control character"),
        '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => {
            Some("a bidirectional control character")
        }
        '\u{feff}' => Some("a byte-order mark inside the file"),
        '\u{fffe}' | '\u{ffff}' => Some("a non-character"),
        _ => None,
    }
}

/// The file's text: UTF-8, a leading byte-order mark stripped, no control characters
/// other than tab, LF and CR. Otherwise the problem, at its position.
pub fn decode<'b>(bytes: &'b [u8], file: &str) -> Result<&'b str, Problem> {
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let valid = e.valid_up_to();
            // The prefix is valid UTF-8 by definition of `valid_up_to`.
            let prefix = std::str::from_utf8(&bytes[..valid]).unwrap_or_default();
            let prefix = prefix.strip_prefix(BOM).unwrap_or(prefix);
            return Err(problem(
                file,
                position(prefix, prefix.len()),
                format!(
                    "invalid UTF-8 (byte 0x{:02X} at offset {valid}): save the file as UTF-8",
                    bytes[valid]
                ),
            ));
        }
    };
    let text = text.strip_prefix(BOM).unwrap_or(text);
    // Printable ASCII with tabs and line ends (nearly every file) holds nothing
    // forbidden; one pass over the bytes says so without decoding a character.
    if text
        .bytes()
        .all(|b| matches!(b, b' '..=b'~' | b'\t' | b'\n' | b'\r'))
    {
        return Ok(text);
    }
    let mut bad = text
        .char_indices()
        .filter_map(|(i, c)| Some((i, c, forbidden(c)?)));
    if let Some((at, c, what)) = bad.next() {
        // Counting stops at a bound, so a file of nothing but NUL bytes costs no more
        // than a few thousand characters of scanning.
        let more = bad.take(MORE_COUNTED).count();
        let more = match more {
            0 => String::new(),
            1 => " (and 1 more in this file)".to_string(),
            MORE_COUNTED => format!(" (and {MORE_COUNTED} or more in this file)"),
            n => format!(" (and {n} more in this file)"),
        };
        return Err(problem(
            file,
            position(text, at),
            format!(
                "{what} (U+{:04X}) is not allowed in a desired-state file{more}: remove it",
                c as u32
            ),
        ));
    }
    Ok(text)
}

/// True when the text holds no YAML content: only blank lines, comments and document
/// markers.
pub fn is_blank(text: &str) -> bool {
    text.lines().all(|l| {
        let l = l.trim();
        l.is_empty() || l.starts_with('#') || l == "---" || l == "..."
    })
}

/// Whether `line` is a YAML document marker (`---` or `...`) at column 1.
fn marker(line: &str, marker: &str) -> bool {
    line.strip_prefix(marker)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r']))
}

/// The parser reads the first YAML document of a file and drops the rest without a
/// word; a second document is therefore a problem, at its marker.
pub fn check_single_document(text: &str, file: &str) -> Result<(), Problem> {
    let mut content = false;
    let mut started = false;
    let mut ended: Option<usize> = None;
    for (index, line) in text.split('\n').enumerate() {
        let number = index + 1;
        if marker(line, "---") {
            if content || started || ended.is_some() {
                return Err(problem(
                    file,
                    (number, 1),
                    "a second YAML document starts here; a file holds one document: move it to a file of its own".to_string(),
                ));
            }
            started = true;
            content = !line[3..].trim().is_empty() && !line[3..].trim().starts_with('#');
            continue;
        }
        if marker(line, "...") {
            ended.get_or_insert(number);
            continue;
        }
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if let Some(end) = ended {
            return Err(problem(
                file,
                (end, 1),
                "the YAML document ends here but the file goes on; a file holds one document: remove the '...' line or move what follows to a file of its own".to_string(),
            ));
        }
        // A directive (`%YAML 1.2`) before the first document is not content.
        if !trimmed.starts_with('%') || content {
            content = true;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(bytes: &[u8]) -> Result<String, String> {
        decode(bytes, "f.yaml")
            .map(str::to_string)
            .map_err(|p| p.to_string())
    }

    #[test]
    fn text_rules_report_their_position() {
        let cases: &[(&str, &[u8], Result<&str, &str>)] = &[
            ("plain", b"a: 1\n", Ok("a: 1\n")),
            ("bom stripped", b"\xef\xbb\xbfa: 1\n", Ok("a: 1\n")),
            ("tabs and crlf", b"a:\t1\r\nb: 2\r\n", Ok("a:\t1\r\nb: 2\r\n")),
            (
                "nul",
                b"users:\n  - name: a\0b\n",
                Err("f.yaml:2:12: a NUL byte (U+0000) is not allowed in a desired-state file: remove it"),
            ),
            (
                "escape, counted",
                b"a\x1b\x1b\x1b",
                Err("f.yaml:1:2: a control character (U+001B) is not allowed in a desired-state file (and 2 more in this file): remove it"),
            ),
            (
                "del after crlf",
                b"a\r\nb\x7f",
                Err("f.yaml:2:2: a control character (U+007F) is not allowed in a desired-state file: remove it"),
            ),
            (
                "lone cr is a line break",
                b"a\rb\x01",
                Err("f.yaml:2:2: a control character (U+0001) is not allowed in a desired-state file: remove it"),
            ),
            (
                "invalid utf-8 after a bom and a multi-byte char",
                b"\xef\xbb\xbfname: \xc3\xa9\xff\n",
                Err("f.yaml:1:8: invalid UTF-8 (byte 0xFF at offset 11): save the file as UTF-8"),
            ),
            (
                "bidi override",
                "a: \u{202e}x".as_bytes(),
                Err("f.yaml:1:4: a bidirectional control character (U+202E) is not allowed in a desired-state file: remove it"),
            ),
        ];
        for (what, bytes, expected) in cases {
            let expected = expected.map(str::to_string).map_err(str::to_string);
            assert_eq!(decoded(bytes), expected, "{what}");
        }
    }

    #[test]
    fn a_second_document_is_found() {
        let ok = [
            "users: []\n",
            "---\nusers: []\n",
            "%YAML 1.2\n---\nusers: []\n...\n# end\n",
            "# c\n---\n# c\nusers:\n  - name: '---'\n",
        ];
        for text in ok {
            assert_eq!(check_single_document(text, "f"), Ok(()), "{text:?}");
        }
        let bad = [
            ("users: []\n---\nusers: []\n", 2),
            ("---\n---\nusers: []\n", 2),
            ("--- {users: []}\n--- {}\n", 2),
            ("users: []\n...\nusers: []\n", 2),
        ];
        for (text, line) in bad {
            let found = check_single_document(text, "f").unwrap_err();
            assert_eq!(found.location.line, line, "{text:?}");
        }
    }

    #[test]
    fn blank_means_no_content() {
        assert!(is_blank(""));
        assert!(is_blank(" \n# only a comment\n---\n\n...\n"));
        assert!(!is_blank("users: []\n"));
    }
}
