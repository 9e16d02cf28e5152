//! Machine-readable renderings of `roster validate`'s problems: a JSON document for
//! tools and GitHub Actions workflow commands that annotate the pull request's files.
//! Every value taken from the folder is escaped here, in one place per format.

use super::ValidateFormat;
use crate::desired::Problem;
use crate::escape;
use serde::Serialize;

/// The problems (none for a valid folder) rendered for stdout. Text goes to stderr
/// through the caller's log format, so it is not rendered here.
pub fn render(problems: &[Problem], format: ValidateFormat) -> serde_json::Result<String> {
    Ok(match format {
        ValidateFormat::Json => json_document(problems)?,
        ValidateFormat::Github => problems.iter().map(annotation).collect(),
        ValidateFormat::Text => String::new(),
    })
}

/// The JSON document, fields in this order.
#[derive(Serialize)]
struct Document<'a> {
    valid: bool,
    errors: Vec<Entry<'a>>,
}

/// One problem; `line` and `column` are null for a problem without a position (a
/// missing file, an unknown `--provider`), so every entry has the same four keys.
#[derive(Serialize)]
struct Entry<'a> {
    file: &'a str,
    line: Option<usize>,
    column: Option<usize>,
    message: &'a str,
}

/// `{"valid": bool, "errors": [{"file", "line", "column", "message"}]}`, pretty-printed.
fn json_document(problems: &[Problem]) -> serde_json::Result<String> {
    let errors = problems
        .iter()
        .map(|p| {
            let positioned = p.location.line > 0;
            Entry {
                file: &p.location.file,
                line: positioned.then_some(p.location.line),
                column: positioned.then_some(p.location.column),
                message: &p.message,
            }
        })
        .collect();
    let document = Document {
        valid: problems.is_empty(),
        errors,
    };
    let mut text = serde_json::to_string_pretty(&document)?;
    text.push('\n');
    Ok(text)
}

/// `::error file=F,line=L,col=C::message`, one line, per GitHub's workflow-command rules.
fn annotation(problem: &Problem) -> String {
    let location = &problem.location;
    let mut properties = format!("file={}", escape_property(&location.file));
    if location.line > 0 {
        properties.push_str(&format!(",line={},col={}", location.line, location.column));
    }
    format!("::error {properties}::{}\n", escape_data(&problem.message))
}

/// A command's message: `%`, CR and LF are encoded, so a value from the folder can
/// neither end the annotation nor start a second workflow command on a new line; other
/// control characters are shown escaped, as on a terminal.
fn escape_data(text: &str) -> String {
    let encoded = text
        .replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A");
    escape::text(&encoded).into_owned()
}

/// A property value: as a message, plus `:` and `,`, which would end the value.
fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::Location;
    use serde_json::json;

    fn problem(file: &str, line: usize, column: usize, message: &str) -> Problem {
        Problem {
            location: Location {
                file: file.into(),
                line,
                column,
            },
            message: message.into(),
        }
    }

    #[test]
    fn json_has_null_positions_for_problems_without_one() {
        let problems = [
            problem("d/a.yaml", 3, 7, "unknown key 'stauts'"),
            problem("d/providers.yaml", 0, 0, "file not found"),
        ];
        let value: serde_json::Value =
            serde_json::from_str(&render(&problems, ValidateFormat::Json).expect("renders"))
                .expect("json");
        assert_eq!(
            value,
            json!({"valid": false, "errors": [
                {"file": "d/a.yaml", "line": 3, "column": 7, "message": "unknown key 'stauts'"},
                {"file": "d/providers.yaml", "line": null, "column": null, "message": "file not found"},
            ]})
        );
        let valid: serde_json::Value =
            serde_json::from_str(&render(&[], ValidateFormat::Json).expect("renders"))
                .expect("json");
        assert_eq!(valid, json!({"valid": true, "errors": []}));
    }

    #[test]
    fn github_annotations_escape_data_and_properties() {
        let cases = [
            (
                problem("d/a.yaml", 14, 7, "unknown key 'stauts'"),
                "::error file=d/a.yaml,line=14,col=7::unknown key 'stauts'\n",
            ),
            (
                problem("d/providers.yaml", 0, 0, "file not found"),
                "::error file=d/providers.yaml::file not found\n",
            ),
            (
                problem("d/x,y:z%.yaml", 1, 2, "50% done\r\n::warning::forged"),
                "::error file=d/x%2Cy%3Az%25.yaml,line=1,col=2::50%25 done%0D%0A::warning::forged\n",
            ),
        ];
        for (problem, expected) in cases {
            assert_eq!(
                render(&[problem], ValidateFormat::Github).ok().as_deref(),
                Some(expected)
            );
        }
        assert_eq!(
            render(&[], ValidateFormat::Github).ok().as_deref(),
            Some("")
        );
    }
}
