//! The customer snapshot (`--customers`): JSONL, CSV or YAML rows of `customer`, `wallet`
//! and the columns the ruleset's facts name.

use std::borrow::Cow;
use std::path::Path;

use super::snapshot_json;
use crate::engine::state::{SnapshotSeen, SnapshotValue};
use crate::engine::State;
use crate::rules::ruleset::{FactType, Scope};
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

/// What loading a snapshot found, beyond the facts it set.
#[derive(Debug, Default)]
pub struct SnapshotLoad {
    /// Rows applied.
    pub rows: usize,
    /// Rows not applied: a value not of its fact's type, or a duplicate row of a customer
    /// or wallet that conflicts with an earlier one. Each names the file and line.
    pub rejected: Vec<SnapshotError>,
    /// Columns no fact of the ruleset declares (besides `customer` and `wallet`): ignored.
    pub undeclared: Vec<String>,
}

impl SnapshotLoad {
    /// One line per problem, for people: rejected rows, then undeclared columns.
    pub fn warnings(&self, file: &Path) -> Vec<String> {
        let mut out: Vec<String> = self
            .rejected
            .iter()
            .map(|e| format!("customer snapshot row rejected: {e}"))
            .collect();
        out.extend(self.undeclared.iter().map(|c| {
            format!(
                "{}: the column `{c}` is declared by no fact of the ruleset: ignored",
                file.display()
            )
        }));
        out
    }
}

/// Applies rows to a state, counting them and naming the file in errors.
struct Loader<'s> {
    file: String,
    ruleset: &'s Ruleset,
    state: &'s mut State,
    skip_known: bool,
    load: SnapshotLoad,
    seen: SnapshotSeen,
    /// Per fact, whether some row has its column.
    present: Vec<bool>,
    /// Every declared column was seen in some row: no more looking.
    all_present: bool,
    /// Rows read, applied or not.
    rows_seen: usize,
}

impl Loader<'_> {
    fn fail(&self, line: usize, message: impl Into<String>) -> SnapshotError {
        SnapshotError {
            file: self.file.clone(),
            line,
            message: message.into(),
        }
    }

    /// Notes the columns a row (or a header) has that no fact declares.
    fn columns<'c>(&mut self, names: impl Iterator<Item = &'c str>) {
        for name in names {
            let declared = name == "customer"
                || name == "wallet"
                || self
                    .ruleset
                    .facts
                    .iter()
                    .any(|f| f.snapshot.as_deref() == Some(name));
            if !declared && !self.load.undeclared.iter().any(|c| c == name) {
                self.load.undeclared.push(name.to_string());
            }
        }
    }

    /// Applies the row of `line` whose cells `cell` gives by column name.
    fn apply_cells<'r>(
        &mut self,
        line: usize,
        cell: impl Fn(&str) -> Option<SnapshotValue<'r>>,
    ) -> Result<(), SnapshotError> {
        self.rows_seen += 1;
        if !self.all_present {
            for (fact, present) in self.ruleset.facts.iter().zip(&mut self.present) {
                if let Some(column) = &fact.snapshot {
                    *present = *present || cell(column).is_some();
                }
            }
            self.all_present = self.present.iter().all(|p| *p);
        }
        let (customer, wallet) = owners(&cell);
        let customer = customer.ok_or_else(|| self.fail(line, "missing `customer`"))?;
        // A kept state knows customers from before this load: their rows are older news.
        // One this load named already is a duplicate row, checked as such.
        if self.skip_known {
            if let Some(id) = self.state.id_of(Scope::Customer, &customer) {
                if self.seen.first_line(Scope::Customer, id).is_none() {
                    return Ok(());
                }
            }
        }
        match self.state.apply_snapshot(
            self.ruleset,
            &customer,
            wallet.as_deref(),
            cell,
            line,
            &mut self.seen,
        ) {
            Ok(()) => self.load.rows += 1,
            Err(e) => {
                let rejected = self.fail(line, e);
                self.load.rejected.push(rejected);
            }
        }
        Ok(())
    }

    /// The load, once every row is in: refused if a declared column that must be given
    /// is in no row.
    fn finish(self, any_rows: bool) -> Result<SnapshotLoad, SnapshotError> {
        if any_rows {
            for (fact, present) in self.ruleset.facts.iter().zip(&self.present) {
                let Some(column) = fact.snapshot.as_deref().filter(|_| !*present) else {
                    continue;
                };
                if !required_column(fact.kind) {
                    continue;
                }
                let mut message = format!(
                    "no row has the column `{column}`, from which the ruleset's fact `{}` starts; without it every customer would start with no history",
                    fact.name
                );
                if !self.load.undeclared.is_empty() {
                    message += &format!(
                        " (columns no fact declares: {})",
                        self.load
                            .undeclared
                            .iter()
                            .map(|c| format!("`{c}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
                return Err(self.fail(0, message));
            }
        }
        Ok(self.load)
    }
}

/// Whether a snapshot that has rows must give a fact's column: a count (earlier payments)
/// and a date (the first activation, empty if none) must; a flag (starting as no) and a
/// decimal (a balance, "where the bank sends it") may be left out, as the contract makes
/// such columns optional.
fn required_column(kind: FactType) -> bool {
    matches!(kind, FactType::Count | FactType::Date)
}

impl<'t> snapshot_json::Rows<'t> for Loader<'_> {
    type Error = SnapshotError;

    fn apply(
        &mut self,
        line: usize,
        row: snapshot_json::Parsed<'_, 't>,
    ) -> Result<(), SnapshotError> {
        let row = row.map_err(|e| self.fail(line, e))?;
        self.columns(row.names());
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
/// records at the start of its first stream. Returns the rows applied, the rows rejected
/// and the columns no fact declares; a snapshot with rows but without a column a count or
/// date fact starts from is refused.
pub fn load_snapshot(
    path: &Path,
    ruleset: &Ruleset,
    state: &mut State,
    skip_known: bool,
) -> Result<SnapshotLoad, SnapshotError> {
    let mut loader = Loader {
        file: path.display().to_string(),
        ruleset,
        state,
        skip_known,
        load: SnapshotLoad::default(),
        seen: SnapshotSeen::default(),
        present: ruleset.facts.iter().map(|f| f.snapshot.is_none()).collect(),
        all_present: false,
        rows_seen: 0,
    };
    let text =
        std::fs::read_to_string(path).map_err(|e| loader.fail(0, format!("cannot read: {e}")))?;
    // A byte order mark is no part of the first row, whatever the format.
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut any_rows = false;
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
            loader.columns(header.iter().map(str::trim));
            // The header names the columns, rows or not.
            for (fact, present) in ruleset.facts.iter().zip(&mut loader.present) {
                if let Some(column) = &fact.snapshot {
                    *present = *present || header.iter().any(|h| h.trim() == column);
                }
            }
            loader.all_present = true;
            any_rows = true;
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
            // Spanned rows give each row the file line it starts on, for the row errors.
            let rows: Vec<serde_saphyr::Spanned<serde_json::Map<String, serde_json::Value>>> =
                serde_saphyr::from_str(text).map_err(|e| {
                    loader.fail(e.location().map_or(0, |l| l.line() as usize), e.to_string())
                })?;
            for spanned in &rows {
                let row = &spanned.value;
                loader.columns(row.keys().map(String::as_str));
                let line = spanned.referenced.line() as usize;
                loader.apply_cells(line, |name: &str| row.get(name).and_then(yaml_cell))?;
            }
        }
        _ => {
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
            loader
                .state
                .expect_customers(snapshot_json::line_ends(text));
            snapshot_json::for_each_row(text, threads, &mut loader)?;
        }
    }
    let any_rows = any_rows || loader.rows_seen > 0;
    loader.finish(any_rows)
}
