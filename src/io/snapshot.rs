//! The customer snapshot (`--customers`): JSONL, CSV or YAML rows of `customer`, `wallet`
//! and the columns the ruleset's facts name.

use std::borrow::Cow;
use std::path::Path;

use super::snapshot_json;
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

/// A YAML cell as the snapshot takes it: see `snapshot_json::CellSeed` for JSONL.
fn yaml_cell(v: &serde_json::Value) -> Option<SnapshotValue<'_>> {
    let text = |t: String| Some(SnapshotValue::Text(Cow::Owned(t)));
    match v {
        serde_json::Value::Null => None,
        serde_json::Value::Bool(b) => Some(SnapshotValue::Bool(*b)),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Some(SnapshotValue::Int(i)),
            None => text(n.to_string()),
        },
        serde_json::Value::String(s) => Some(SnapshotValue::Text(Cow::Borrowed(s))),
        other => text(other.to_string()),
    }
}

/// Applies rows to a state, counting them and naming the file in errors.
struct Loader<'s> {
    file: String,
    ruleset: &'s Ruleset,
    state: &'s mut State,
    skip_known: bool,
    rows: usize,
}

impl Loader<'_> {
    fn fail(&self, line: usize, message: impl Into<String>) -> SnapshotError {
        SnapshotError {
            file: self.file.clone(),
            line,
            message: message.into(),
        }
    }

    /// Applies the row of `line` whose cells `cell` gives by column name.
    fn apply_cells<'r>(
        &mut self,
        line: usize,
        cell: impl Fn(&str) -> Option<SnapshotValue<'r>>,
    ) -> Result<(), SnapshotError> {
        let (customer, wallet) = owners(&cell);
        let customer = customer.ok_or_else(|| self.fail(line, "missing `customer`"))?;
        if self.skip_known && self.state.id_of(RawScope::Customer, &customer).is_some() {
            return Ok(());
        }
        self.state
            .apply_snapshot(self.ruleset, &customer, wallet.as_deref(), cell)
            .map_err(|e| self.fail(line, e))?;
        self.rows += 1;
        Ok(())
    }
}

impl<'t> snapshot_json::Rows<'t> for Loader<'_> {
    type Error = SnapshotError;

    fn apply(
        &mut self,
        line: usize,
        row: snapshot_json::Parsed<'_, 't>,
    ) -> Result<(), SnapshotError> {
        let row = row.map_err(|e| self.fail(line, e))?;
        self.apply_cells(line, |name: &str| row.get(name))
    }

    fn ahead(&mut self, row: &snapshot_json::JsonRow<'_, 't>) {
        if let (Some(customer), wallet) = owners(&|name: &str| row.get(name)) {
            self.state.prefetch_names(&customer, wallet.as_deref());
        }
    }
}

/// The customer and wallet a row names (as non-empty text), from its cells by column name.
fn owners<'r>(
    cell: &impl Fn(&str) -> Option<SnapshotValue<'r>>,
) -> (Option<Cow<'r, str>>, Option<Cow<'r, str>>) {
    let text_of = |name: &str| match cell(name) {
        Some(SnapshotValue::Text(t)) if !t.is_empty() => Some(t),
        _ => None,
    };
    (text_of("customer"), text_of("wallet"))
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
    let mut loader = Loader {
        file: path.display().to_string(),
        ruleset,
        state,
        skip_known,
        rows: 0,
    };
    let text =
        std::fs::read_to_string(path).map_err(|e| loader.fail(0, format!("cannot read: {e}")))?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default();
    match ext {
        "csv" => {
            let mut reader = csv::Reader::from_reader(text.as_bytes());
            let header = reader
                .headers()
                .map_err(|e| loader.fail(1, e.to_string()))?
                .clone();
            for rec in reader.records() {
                let rec = rec.map_err(|e| {
                    loader.fail(e.position().map_or(0, |p| p.line() as usize), e.to_string())
                })?;
                let line = rec.position().map_or(0, |p| p.line() as usize);
                loader.apply_cells(line, |name: &str| {
                    let i = header.iter().position(|h| h.trim() == name)?;
                    rec.get(i).map(|v| SnapshotValue::Text(Cow::Borrowed(v)))
                })?;
            }
        }
        "yaml" | "yml" => {
            let rows: Vec<serde_json::Map<String, serde_json::Value>> =
                serde_saphyr::from_str(&text).map_err(|e| {
                    loader.fail(e.location().map_or(0, |l| l.line() as usize), e.to_string())
                })?;
            for (i, row) in rows.iter().enumerate() {
                loader.apply_cells(i + 1, |name: &str| row.get(name).and_then(yaml_cell))?;
            }
        }
        _ => {
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
            loader
                .state
                .expect_customers(snapshot_json::line_ends(&text));
            snapshot_json::for_each_row(&text, threads, &mut loader)?;
        }
    }
    Ok(loader.rows)
}
