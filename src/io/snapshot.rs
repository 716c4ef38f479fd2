//! The customer snapshot (`--customers`): JSONL, CSV or YAML rows of `customer`, `wallet`
//! and the columns the ruleset's facts name.

use std::path::Path;

use crate::engine::state::SnapshotValue;
use crate::engine::State;
use crate::rules::raw::RawScope;
use crate::rules::Ruleset;

/// A snapshot that could not be read; names the file and line.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct SnapshotError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

fn json_cell(v: &serde_json::Value) -> Option<SnapshotValue> {
    match v {
        serde_json::Value::Null => None,
        serde_json::Value::Bool(b) => Some(SnapshotValue::Bool(*b)),
        serde_json::Value::Number(n) => Some(match n.as_i64() {
            Some(i) => SnapshotValue::Int(i),
            None => SnapshotValue::Text(n.to_string()),
        }),
        serde_json::Value::String(s) => Some(SnapshotValue::Text(s.clone())),
        other => Some(SnapshotValue::Text(other.to_string())),
    }
}

/// Loads a snapshot into `state`, by the file's extension. With `skip_known`, rows of
/// customers the state already knows are left out: a kept state is newer than the bank's
/// records at the start of its first stream. Returns the number of rows applied.
pub fn load_snapshot(
    path: &Path,
    ruleset: &Ruleset,
    state: &mut State,
    skip_known: bool,
) -> Result<usize, SnapshotError> {
    let file = path.display().to_string();
    let fail = |line: usize, message: String| SnapshotError {
        file: file.clone(),
        line,
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(0, format!("cannot read: {e}")))?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default();
    let mut rows = 0;
    let mut apply =
        |line: usize, cell: &dyn Fn(&str) -> Option<SnapshotValue>| -> Result<(), SnapshotError> {
            let text_of = |name: &str| match cell(name) {
                Some(SnapshotValue::Text(t)) if !t.is_empty() => Some(t),
                _ => None,
            };
            let customer =
                text_of("customer").ok_or_else(|| fail(line, "missing `customer`".into()))?;
            let wallet = text_of("wallet");
            if skip_known && state.id_of(RawScope::Customer, &customer).is_some() {
                return Ok(());
            }
            state
                .apply_snapshot(ruleset, &customer, wallet.as_deref(), cell)
                .map_err(|e| fail(line, e))?;
            rows += 1;
            Ok(())
        };
    match ext {
        "csv" => {
            let mut reader = csv::Reader::from_reader(text.as_bytes());
            let header = reader
                .headers()
                .map_err(|e| fail(1, e.to_string()))?
                .clone();
            for rec in reader.records() {
                let rec = rec.map_err(|e| {
                    fail(e.position().map_or(0, |p| p.line() as usize), e.to_string())
                })?;
                let line = rec.position().map_or(0, |p| p.line() as usize);
                let cell = |name: &str| {
                    let i = header.iter().position(|h| h.trim() == name)?;
                    rec.get(i).map(|v| SnapshotValue::Text(v.to_string()))
                };
                apply(line, &cell)?;
            }
        }
        "yaml" | "yml" => {
            let rows: Vec<serde_json::Map<String, serde_json::Value>> = serde_yaml::from_str(&text)
                .map_err(|e| fail(e.location().map_or(0, |l| l.line()), e.to_string()))?;
            for (i, row) in rows.iter().enumerate() {
                apply(i + 1, &|name: &str| row.get(name).and_then(json_cell))?;
            }
        }
        _ => {
            for (i, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let row: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_str(line).map_err(|e| fail(i + 1, e.to_string()))?;
                apply(i + 1, &|name: &str| row.get(name).and_then(json_cell))?;
            }
        }
    }
    Ok(rows)
}
