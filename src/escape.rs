//! Escaping of untrusted text, one function per output format.
//!
//! Everything Roster prints that came from a file or a provider (user names, reasons,
//! account ids, statuses, provider error messages) is untrusted: a display name must never
//! forge a line in a terminal, a log or a pull-request comment. Renderers call these
//! functions at the edge where text is written, never earlier, so no caller can forget
//! and nothing is escaped twice.
//!
//! - [`text`]: terminals and logs. Control characters (C0, DEL, C1), invisible format
//!   characters (zero-width, bidi overrides and isolates, line and paragraph separators,
//!   tag characters) and the backslash are shown as Rust-style escapes (`\n`, `\u{1b}`),
//!   so one value stays on one line and shows what it really contains.
//! - [`markdown`]: GitHub-flavoured markdown inline content (table cells, headings,
//!   bold text). The [`text`] escaping first, then HTML is neutralised with entities,
//!   markdown punctuation is backslash-escaped, and the things GitHub links after
//!   rendering (`@mentions`, `#123`, `https://`, `www.`) are broken with a zero-width
//!   joiner.
//! - [`json_safe`]: JSON produced by `serde_json` (already valid) with the characters a
//!   terminal would act on written as `\uXXXX`; parsing it gives back the exact values.
//! - [`slack`]: Slack message text (webhook notifications). The [`text`] escaping
//!   first, then `&`, `<` and `>` as entities, the three characters Slack's markup uses
//!   for mentions (`<!channel>`, `<@U123>`) and links (`<https://x|label>`).
//! - [`Untrusted`]: a `Display` wrapper applying [`text`], for log fields.

use std::borrow::Cow;
use std::fmt;
use unicode_width::UnicodeWidthStr;

/// Inserted where GitHub would otherwise link text after rendering; invisible to readers.
const ZWJ: char = '\u{200d}';

/// Whether `c` would act on a terminal or be invisible to a reader, and so must be shown
/// as an escape: controls, and Unicode format characters that hide or reorder text.
fn is_hidden(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{1f}'          // C0 controls: NUL, BEL, BS, TAB, LF, CR, ESC...
        | '\u{7f}'..='\u{9f}'       // DEL and C1 controls (CSI, NEL...)
        | '\u{ad}'                  // soft hyphen
        | '\u{34f}'                 // combining grapheme joiner
        | '\u{61c}'                 // Arabic letter mark
        | '\u{115f}' | '\u{1160}' | '\u{3164}' | '\u{ffa0}' // Hangul fillers (blank)
        | '\u{17b4}' | '\u{17b5}'   // Khmer inherent vowels (invisible)
        | '\u{180b}'..='\u{180f}'   // Mongolian free variation selectors, vowel separator
        | '\u{200b}'..='\u{200f}'   // zero-width space, non-joiner, joiner, LRM, RLM
        | '\u{2028}'..='\u{202e}'   // line/paragraph separators, bidi embeddings/overrides
        | '\u{2060}'..='\u{206f}'   // word joiner, invisible operators, bidi isolates
        | '\u{feff}'                // zero-width no-break space (BOM)
        | '\u{fff9}'..='\u{fffb}'   // interlinear annotation
        | '\u{1d173}'..='\u{1d17a}' // musical formatting
        | '\u{e0000}'..='\u{e007f}' // tag characters (hidden text)
    )
}

/// Escapes untrusted text for a terminal or a log line: the result has no control or
/// invisible character, so it cannot move the cursor, change colours, ring the bell,
/// reorder the line or start a new one. Backslashes are doubled, so `\n` in the output
/// always means a newline was there. Borrows when nothing needs escaping.
pub fn text(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| c == '\\' || is_hidden(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_hidden(c) => {
                use fmt::Write;
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Escapes untrusted text for inline GitHub-flavoured markdown (a table cell, a heading,
/// bold text; never at the start of a line). The result renders as the [`text`]
/// escaping of `s`, literally: no HTML, HTML comment, link, image, code span, emphasis,
/// math, table cell break, line break, mention or issue reference.
pub fn markdown(s: &str) -> String {
    let visible = text(s);
    let mut out = String::with_capacity(visible.len() + 16);
    let mut chars = visible.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\\' | '`' | '*' | '_' | '~' | '[' | ']' | '(' | ')' | '!' | '|' | '$' | '{' | '}'
            | '^' => {
                out.push('\\');
                out.push(c);
            }
            // GitHub links mentions and issue references in the rendered text, where a
            // backslash escape no longer exists: break them with an invisible joiner.
            '@' => {
                out.push('@');
                out.push(ZWJ);
            }
            '#' => {
                out.push_str("\\#");
                if chars.peek().is_some_and(|n| n.is_ascii_alphanumeric()) {
                    out.push(ZWJ);
                }
            }
            // Bare URLs (`https://...`) and `www.` hosts are autolinked the same way.
            ':' => {
                out.push(':');
                if chars.peek() == Some(&'/') {
                    out.push(ZWJ);
                }
            }
            '.' => {
                let tail = out.len().checked_sub(3).and_then(|at| out.get(at..));
                if tail.is_some_and(|t| t.eq_ignore_ascii_case("www")) {
                    out.push(ZWJ);
                }
                out.push('.');
            }
            c => out.push(c),
        }
    }
    out
}

/// Rewrites JSON text made by `serde_json` so that the characters [`text`] would escape
/// and `serde_json` leaves raw (DEL, C1 controls, invisible format characters; it
/// escapes the C0 controls itself) are
/// written as `\uXXXX` escapes. The document parses to exactly the same values, and
/// printing it cannot drive a terminal. Outside strings JSON is ASCII, so only string
/// contents can change.
pub fn json_safe(json: &str) -> Cow<'_, str> {
    if !json.chars().any(|c| c >= '\u{7f}' && is_hidden(c)) {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if c >= '\u{7f}' && is_hidden(c) {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                use fmt::Write;
                let _ = write!(out, "\\u{unit:04x}");
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Escapes untrusted text for the `text` of a Slack message: one line (the [`text`]
/// escaping), and `&`, `<`, `>` as the entities Slack documents, so a display name can
/// neither mention `<!channel>` or a person nor make a link.
pub fn slack(s: &str) -> String {
    let visible = text(s);
    let mut out = String::with_capacity(visible.len() + 8);
    for c in visible.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// Columns that `s` takes in a terminal once [`text`]-escaped (wide CJK characters count
/// two, combining marks none), for lining up text tables.
pub fn width(s: &str) -> usize {
    text(s).width()
}

/// Untrusted text in a log field or a `format!`: `Display` and `Debug` both print the
/// [`text`] escaping, e.g. `tracing::info!(user = %Untrusted(&name), ...)`.
#[derive(Clone, Copy)]
pub struct Untrusted<'a>(pub &'a str);

impl fmt::Display for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&text(self.0))
    }
}

impl fmt::Debug for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", text(self.0))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Forging attempts, one per trick, shared with the renderers' tests.
    pub(crate) const HOSTILE: &[&str] = &[
        "eve\x1b[2J\x1b[31mcleared screen",
        "eve\x1b]8;;https://evil.example\x07click\x1b]8;;\x07",
        "bell\x07and\x00nul",
        "carriage\rPlan: 0 changes, 99 in sync",
        "line\nPlan: 0 changes, 99 in sync, 0 blocked, 0 errors.",
        "crlf\r\n| forged | row |",
        "del\x7fc1\u{9b}31m",
        "bidi \u{202e}evil\u{202c} \u{2066}iso\u{2069}",
        "line\u{2028}separator\u{2029}paragraph",
        "zero\u{200b}width\u{feff}",
        "tag\u{e0041}\u{e0042}",
        "<!-- roster-plan -->",
        "<img src=x onerror=alert(1)>",
        "<details><summary>x</summary>",
        "[click](https://evil.example)",
        "![pixel](https://evil.example/p.png)",
        "@octocat please approve @org/team",
        "fixes #123 and GH-9",
        "see https://evil.example and www.evil.example",
        "`code` and ``` fence",
        "**bold** _em_ ~~strike~~ $x^2$",
        "pipe | breaks | cells",
        "back\\slash \\| \\n",
        "&lt;entity&gt; &#60;",
        "# heading\n- list\n> quote",
        "[^1] [!WARNING]",
    ];

    #[test]
    fn slack_text_cannot_mention_link_or_break_lines() {
        let cases = [
            ("jsmith", "jsmith"),
            ("<!channel> hi", "&lt;!channel&gt; hi"),
            ("<@U123>", "&lt;@U123&gt;"),
            (
                "<https://evil.example|click>",
                "&lt;https://evil.example|click&gt;",
            ),
            ("a &amp; b", "a &amp;amp; b"),
            ("line\n<!here>", "line\\n&lt;!here&gt;"),
            ("\u{202e}x", "\\u{202e}x"),
        ];
        for (input, expected) in cases {
            assert_eq!(slack(input), expected, "{input:?}");
        }
        for hostile in HOSTILE {
            let escaped = slack(hostile);
            assert!(!escaped.contains(['<', '>', '\n', '\r']), "{escaped}");
            assert!(escaped.chars().all(|c| !is_hidden(c)), "{escaped:?}");
        }
    }

    #[test]
    fn text_keeps_plain_text_borrowed() {
        for plain in [
            "jsmith",
            "Left the company (HR-4411)",
            "José Ñúñez",
            "李小龍",
            "🙂",
        ] {
            assert!(matches!(text(plain), Cow::Borrowed(s) if s == plain));
        }
    }

    #[test]
    fn text_shows_controls_and_invisible_characters() {
        let cases = [
            ("a\x1b[31mb", "a\\u{1b}[31mb"),
            ("a\rb", "a\\rb"),
            ("a\nb", "a\\nb"),
            ("a\tb", "a\\tb"),
            ("a\x07b\x00", "a\\u{7}b\\u{0}"),
            ("a\x7fb\u{9b}", "a\\u{7f}b\\u{9b}"),
            ("\u{202e}abc", "\\u{202e}abc"),
            ("a\u{2028}b\u{2029}", "a\\u{2028}b\\u{2029}"),
            ("a\u{200b}b", "a\\u{200b}b"),
            ("a\u{e0041}", "a\\u{e0041}"),
            ("a\\nb", "a\\\\nb"),
        ];
        for (input, expected) in cases {
            assert_eq!(text(input), expected, "{input:?}");
        }
    }

    #[test]
    fn text_output_of_every_hostile_string_is_one_inert_line() {
        for input in HOSTILE {
            let out = text(input);
            assert!(
                !out.chars().any(is_hidden),
                "{input:?} left a control: {out:?}"
            );
            assert!(!out.contains('\n') && !out.contains('\r'), "{out:?}");
        }
    }

    #[test]
    fn markdown_neutralises_every_forging_attempt() {
        for input in HOSTILE {
            let out = markdown(input);
            assert!(!out.contains('<') && !out.contains('>'), "{input:?}: {out}");
            assert!(!out.contains("]("), "{input:?}: {out}");
            assert!(!out.contains('\n') && !out.contains('\r'), "{out}");
            assert!(!out.chars().any(|c| c != ZWJ && is_hidden(c)), "{out:?}");
            assert!(!out.contains("://"), "{input:?}: {out}");
            for (i, c) in out.char_indices() {
                let escaped = count_trailing(&out[..i], '\\') % 2 == 1;
                match c {
                    '|' | '`' | '*' | '_' | '[' | ']' | '$' | '~' => {
                        assert!(escaped, "unescaped {c:?} in {out}")
                    }
                    '@' => assert_eq!(out[i + 1..].chars().next(), Some(ZWJ), "{out}"),
                    _ => {}
                }
            }
        }
    }

    fn count_trailing(s: &str, c: char) -> usize {
        s.chars().rev().take_while(|&x| x == c).count()
    }

    #[test]
    fn markdown_examples() {
        let cases = [
            ("jsmith", "jsmith"),
            ("Left (HR-1)", "Left \\(HR-1\\)"),
            ("<!-- x -->", "&lt;\\!-- x --&gt;"),
            ("[a](b)", "\\[a\\]\\(b\\)"),
            ("a|b", "a\\|b"),
            ("@bob", "@\u{200d}bob"),
            ("#12", "\\#\u{200d}12"),
            ("https://x.io", "https:\u{200d}//x.io"),
            ("WWW.x.io", "WWW\u{200d}.x.io"),
            ("a\nb", "a\\\\nb"),
            ("`x`", "\\`x\\`"),
            ("&amp;", "&amp;amp;"),
        ];
        for (input, expected) in cases {
            assert_eq!(markdown(input), expected, "{input:?}");
        }
    }

    #[test]
    fn json_safe_keeps_the_values_and_hides_nothing() {
        for input in HOSTILE {
            let json = serde_json::to_string(&serde_json::json!({ "user": input })).unwrap();
            let safe = json_safe(&json);
            assert!(
                !safe.chars().any(is_hidden),
                "{input:?} left a control: {safe:?}"
            );
            let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
            assert_eq!(back["user"], *input);
        }
        assert_eq!(json_safe("{\"a\": 1}\n"), "{\"a\": 1}\n");
    }

    #[test]
    fn width_counts_terminal_columns() {
        assert_eq!(width("jsmith"), 6);
        assert_eq!(width("李小龍"), 6);
        assert_eq!(width("e\u{301}"), 1);
        assert_eq!(width("a\nb"), 4);
    }

    #[test]
    fn untrusted_displays_escaped() {
        let name = "eve\x1b[2Jx\nforged";
        assert_eq!(Untrusted(name).to_string(), "eve\\u{1b}[2Jx\\nforged");
        assert_eq!(
            format!("{:?}", Untrusted(name)),
            "\"eve\\u{1b}[2Jx\\nforged\""
        );
    }
}
