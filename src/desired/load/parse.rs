//! A file's bytes to a positioned YAML tree: the text checks, the value limit, and the
//! parser's errors worded with their positions.

use super::super::folder::RawFile;
use super::super::secrets::quoted;
use super::super::text;
use super::super::yaml::{past_value_limit, MAX_VALUES_PER_FILE};
use super::super::{Location, Problem};
use marked_yaml::{LoaderOptions, Node};

/// A file's text, or its problem (encoding, control characters, a second document).
pub(super) fn text_of<'b>(
    raw: &'b RawFile,
    file: &str,
    problems: &mut Vec<Problem>,
) -> Option<&'b str> {
    let checked = text::decode(&raw.bytes, file)
        .and_then(|text| text::check_single_document(text, file).map(|()| text));
    match checked {
        Ok(text) => Some(text),
        Err(problem) => {
            problems.push(problem);
            None
        }
    }
}

/// Parses one file's text (never blank: the callers say what a blank file means).
pub(super) fn parse(text: &str, file: &str, problems: &mut Vec<Problem>) -> Option<Node> {
    if let Some((line, column)) = past_value_limit(text, MAX_VALUES_PER_FILE) {
        problems.push(Problem {
            location: Location {
                file: file.into(),
                line,
                column,
            },
            message: format!("more than {MAX_VALUES_PER_FILE} YAML values in one file (the limit) from here on: split it into smaller files"),
        });
        return None;
    }
    let options = LoaderOptions::default().error_on_duplicate_keys(true);
    match marked_yaml::parse_yaml_with_options(0, text, options) {
        Ok(node) => Some(node),
        Err(error) => {
            use marked_yaml::LoadError as E;
            let (marker, message) = match &error {
                E::TopLevelMustBeMapping(m) => (
                    Some(*m),
                    "the file must be a mapping (for example `users:`)".to_string(),
                ),
                E::DuplicateKey(inner) => (
                    inner.key.span().start().copied(),
                    format!(
                        "duplicate key {} (first defined on line {})",
                        quoted(inner.key.as_str()),
                        inner.prev_key.span().start().map(|m| m.line()).unwrap_or(0)
                    ),
                ),
                E::ScanError(m, e) => (Some(*m), format!("invalid YAML: {}", e.info())),
                E::UnexpectedAnchor(m) => (
                    Some(*m),
                    "YAML anchors and aliases are not supported".to_string(),
                ),
                E::UnexpectedTag(m) => (Some(*m), "YAML tags are not supported".to_string()),
                E::MappingKeyMustBeScalar(m) => {
                    (Some(*m), "mapping keys must be plain values".to_string())
                }
                other => (None, format!("invalid YAML: {other}")),
            };
            let (line, column) = marker.map(|m| (m.line(), m.column())).unwrap_or((0, 0));
            problems.push(Problem {
                location: Location {
                    file: file.into(),
                    line,
                    column,
                },
                message,
            });
            None
        }
    }
}
