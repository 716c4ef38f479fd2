//! `promo check RULES_DIR`: load and validate every rule file and script, and report every
//! problem with its file, line and column, the offending line and what was expected.

use std::io::IsTerminal;
use std::path::Path;

use super::{Exit, Paint};
use crate::rules::{load_checked, Diagnostic};

/// How `check` prints diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ErrorFormat {
    /// Located messages with the offending line and a caret (coloured on a terminal).
    Human,
    /// One JSON array of diagnostics, for tools.
    Json,
}

/// Runs `check`, printing every problem found (warnings too), or a one-line summary.
pub fn run(dir: &Path, format: ErrorFormat) -> Exit {
    let result = load_checked(dir);
    let exit = if result.is_ok() {
        Exit::Success
    } else {
        Exit::Failure
    };
    let diagnostics = match &result {
        Ok((_, warnings)) => warnings.as_slice(),
        Err(e) => e.diagnostics.as_slice(),
    };
    if format == ErrorFormat::Json {
        let list: Vec<serde_json::Value> = diagnostics.iter().map(to_json).collect();
        outln!("{}", serde_json::Value::Array(list));
        return exit;
    }
    let paint = Paint(std::io::stderr().is_terminal());
    for d in diagnostics {
        errln!("{}", render(d, &paint).trim_end());
    }
    let warnings = diagnostics
        .iter()
        .filter(|d| d.problem.is_warning())
        .count();
    match result {
        Ok((r, _)) => {
            if warnings > 0 {
                errln!("{warnings} warning(s) in {}", dir.display());
            }
            outln!(
                "ok: {} rules, {} facts, {} calendars, {} event types in {}",
                r.rules.len(),
                r.facts.len(),
                r.calendars.len(),
                r.event_types.len(),
                dir.display()
            );
        }
        Err(e) => {
            let errors = e.diagnostics.len() - warnings;
            let also = if warnings > 0 {
                format!(" and {warnings} warning(s)")
            } else {
                String::new()
            };
            errln!("{errors} error(s){also} in {}", dir.display());
        }
    }
    exit
}

fn to_json(d: &Diagnostic) -> serde_json::Value {
    serde_json::json!({
        "file": d.at.file.display().to_string(),
        "line": d.at.line,
        "column": d.at.column,
        "severity": d.severity(),
        "code": d.code(),
        "message": d.problem.to_string(),
        "help": d.help,
        "clause": d.clause,
    })
}

/// A diagnostic as an author reads it: the location and message, the line it points at with
/// a caret under the column, and the help.
pub fn render(d: &Diagnostic, paint: &Paint) -> String {
    let mut out = String::new();
    let at = &d.at;
    out += &format!("{at}: {} {}\n", paint_severity(d, paint), d.problem);
    let source_line = (at.line > 0)
        .then(|| std::fs::read_to_string(&at.file).ok())
        .flatten()
        .and_then(|text| text.lines().nth(at.line - 1).map(str::to_string));
    if let Some(line) = source_line {
        let gutter = at.line.to_string();
        out += &format!("{} | {line}\n", paint.dim(&gutter));
        let pad: String = line
            .chars()
            .take(at.column.saturating_sub(1))
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        let caret = if d.problem.is_warning() {
            paint.yellow("^")
        } else {
            paint.red("^")
        };
        out += &format!("{} | {pad}{caret}\n", " ".repeat(gutter.len()));
    }
    if let Some(help) = &d.help {
        out += &format!("  = help: {help}\n");
    }
    if let Some(clause) = &d.clause {
        out += &format!("  = note: {clause}\n");
    }
    out
}

/// `error[code]:` in red, or `warning[code]:` in yellow.
fn paint_severity(d: &Diagnostic, paint: &Paint) -> String {
    let head = format!("{}[{}]:", d.severity(), d.code());
    if d.problem.is_warning() {
        paint.yellow(&head)
    } else {
        paint.red(&head)
    }
}
