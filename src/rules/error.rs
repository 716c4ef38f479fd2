//! Located diagnostics for rule files: each names the file, line and column, a stable code,
//! and what was expected.

use std::fmt;
use std::path::{Path, PathBuf};

use super::span::Pos;

/// Every diagnostic code `check` reports, in one list: a code is stable once shipped (tools
/// and tests match on it), and `tests/it/check.rs` asserts each of them at its exact
/// file:line:col (a test fails if a code here has none).
pub const CODES: &[&str] = &[
    "ambiguous_order",
    "bad_amount",
    "bad_condition",
    "bad_coupon",
    "bad_credit_by",
    "bad_decimal",
    "bad_fact_type",
    "bad_field_type",
    "bad_literal",
    "bad_number",
    "bad_operator",
    "bad_rule_shape",
    "bad_scope",
    "bad_update",
    "bad_weekday",
    "bad_date",
    "conflicting_keys",
    "duplicate_rule_id",
    "empty_limit",
    "id_mismatch",
    "missing_name",
    "never_holds",
    "no_test",
    "not_utf8",
    "points_not_allowed",
    "reject_not_allowed",
    "script_limit",
    "script_syntax",
    "too_many",
    "unknown_calendar",
    "unknown_channel",
    "unknown_event_type",
    "unknown_fact",
    "unknown_field",
    "unknown_key",
    "unknown_list",
    "unknown_phase",
    "unknown_timezone",
    "unknown_value",
    "unreadable",
    "unreadable_script",
    "yaml",
];

/// One problem found in a rule file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    /// 1-based line; 0 when the problem is the file as a whole.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// Stable code, e.g. `unknown_fact`; tests assert on it.
    pub code: &'static str,
    pub message: String,
    pub help: Option<String>,
    /// The clause of the promotion's terms the faulty part encodes, where it names one.
    pub clause: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        write!(f, ": error[{}]: {}", self.code, self.message)?;
        if let Some(help) = &self.help {
            write!(f, " (help: {help})")?;
        }
        if let Some(clause) = &self.clause {
            write!(f, " [{clause}]")?;
        }
        Ok(())
    }
}

/// Why a ruleset could not be loaded: every problem found, not just the first.
#[derive(Debug, thiserror::Error)]
pub struct RulesetError {
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for RulesetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// A rule file's text, kept to show the line a diagnostic points at and to read a
/// scalar's source (`super::scalar`); positions come from the YAML reader, never from
/// searching this text.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
}

impl SourceFile {
    /// Line and column (1-based) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let before = self.text.get(..offset).unwrap_or(&self.text);
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, column)
    }
}

/// Collects diagnostics while a ruleset is compiled.
#[derive(Debug, Default)]
pub struct Diagnostics {
    pub list: Vec<Diagnostic>,
}

impl Diagnostics {
    /// Records a problem at a position the YAML reader gave.
    pub fn at_pos(&mut self, src: &SourceFile, at: Pos, code: &'static str, message: String) {
        self.at_pos_with_help(src, at, code, message, None);
    }

    /// Like `at_pos`, with a help line (e.g. a "did you mean").
    pub fn at_pos_with_help(
        &mut self,
        src: &SourceFile,
        at: Pos,
        code: &'static str,
        message: String,
        help: Option<String>,
    ) {
        self.push_with_help(&src.path, at.line, at.column, code, message, help);
    }

    /// Records a problem with a known position, once: a problem reached again from another
    /// place (a manifest list every rule names) is the same problem, not a new one.
    pub fn push(
        &mut self,
        file: &Path,
        line: usize,
        column: usize,
        code: &'static str,
        message: String,
    ) {
        self.push_with_help(file, line, column, code, message, None);
    }

    /// Like `push`, with a help line.
    fn push_with_help(
        &mut self,
        file: &Path,
        line: usize,
        column: usize,
        code: &'static str,
        message: String,
        help: Option<String>,
    ) {
        let diagnostic = Diagnostic {
            file: file.to_path_buf(),
            line,
            column,
            code,
            message,
            help,
            clause: None,
        };
        if !self.list.contains(&diagnostic) {
            self.list.push(diagnostic);
        }
    }

    /// Records a YAML syntax or shape error, at the error's place or, where the reader
    /// gives none, at the end of the file.
    pub fn yaml(&mut self, src: &SourceFile, err: &serde_saphyr::Error) {
        use serde_saphyr::Error as E;
        let err = err.without_snippet();
        let (line, column) = match err.location() {
            Some(l) if l.line() > 0 => (l.line() as usize, l.column() as usize),
            _ => src.line_col(src.text.trim_end().len()),
        };
        let quoted = |names: &[&str]| {
            names
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        // An unknown key or value: what the reader expected instead, with the closest.
        let unknown = match err {
            E::SerdeUnknownField {
                field, expected, ..
            } => Some(("unknown_key", "field", field, expected)),
            E::SerdeUnknownVariant {
                variant, expected, ..
            } => Some(("unknown_value", "variant", variant, expected)),
            _ => None,
        };
        match unknown {
            Some((code, what, found, expected)) => {
                let message = format!(
                    "unknown {what} `{found}`, expected one of {}",
                    quoted(expected)
                );
                let help = did_you_mean(found, expected.iter().copied());
                self.push_with_help(&src.path, line, column, code, message, help);
            }
            None => {
                // The reader appends " at line L, column C"; the location is ours to print.
                let text = err.to_string();
                let message = match text.rfind(" at line ") {
                    Some(i) => text.get(..i).unwrap_or(&text).to_string(),
                    None => text,
                };
                self.push(&src.path, line, column, "yaml", message);
            }
        }
    }
}

/// The closest of `candidates` to `word`, if close enough to be a likely typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    candidates
        .into_iter()
        .map(|c| (levenshtein(word, c), c))
        .filter(|(d, c)| *d <= (c.len().max(word.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| format!("did you mean `{c}`?"))
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev.get(j).copied().unwrap_or(0) + usize::from(ca != *cb);
            let del = prev.get(j + 1).copied().unwrap_or(0) + 1;
            let ins = cur.get(j).copied().unwrap_or(0) + 1;
            cur.push(sub.min(del).min(ins));
        }
        prev = cur;
    }
    prev.last().copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(
            did_you_mean("visit_cuont", ["visit_count", "loyalty_level"]),
            Some("did you mean `visit_count`?".into())
        );
        assert_eq!(did_you_mean("zzz", ["visit_count"]), None);
    }
}
