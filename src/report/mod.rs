//! Renderings of a plan or an apply summary: text for terminals, markdown for
//! pull-request comments, JSON for machines. Pure functions from data to a string.

mod markdown;
mod text;

pub use markdown::{apply_markdown, plan_markdown};
pub use text::{apply_text, plan_text};

use crate::apply::{ApplyReport, GuardRefusal};
use crate::plan::Plan;

/// The output format chosen with `--format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Markdown,
    Json,
}

/// Renders a plan, with the guard refusals `apply` would make, in `format`.
pub fn render_plan(plan: &Plan, guard: &[GuardRefusal], format: Format) -> String {
    match format {
        Format::Text => plan_text(plan, guard),
        Format::Markdown => plan_markdown(plan, guard),
        Format::Json => json(plan),
    }
}

/// Renders an apply summary in `format`.
pub fn render_apply(report: &ApplyReport, format: Format) -> String {
    match format {
        Format::Text => apply_text(report),
        Format::Markdown => apply_markdown(report),
        Format::Json => json(report),
    }
}

fn json<T: serde::Serialize>(value: &T) -> String {
    let mut text =
        serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    text.push('\n');
    text
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}
