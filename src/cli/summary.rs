//! The summary of an `eval` run: for people on standard error, and for machines as the
//! JSON of `--summary-json` (its fields are documented in docs/summary.md).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::batch::{RuleCounts, Summary};
use crate::model::Money;

/// One rule's counts, money as the contract writes it (`"80.00"`).
#[derive(Debug, Serialize)]
pub struct RuleJson<'a> {
    pub grants: u64,
    pub granted_value: String,
    pub approvals: u64,
    pub approved_value: String,
    pub coupons_accepted: u64,
    /// Redemptions rejected, by reason code.
    pub rejects: &'a BTreeMap<String, u64>,
    /// Coupon uses rejected, by reason code.
    pub coupons_rejected: &'a BTreeMap<String, u64>,
    pub script_errors: u64,
}

impl<'a> From<&'a RuleCounts> for RuleJson<'a> {
    fn from(c: &'a RuleCounts) -> Self {
        RuleJson {
            grants: c.grants,
            granted_value: Money(c.granted_value).to_string(),
            approvals: c.approvals,
            approved_value: Money(c.approved_value).to_string(),
            coupons_accepted: c.coupons_accepted,
            rejects: &c.rejects,
            coupons_rejected: &c.coupons_rejected,
            script_errors: c.script_errors,
        }
    }
}

/// What `--summary-json` writes. Field order is the order people read it in.
#[derive(Debug, Serialize)]
pub struct SummaryJson<'a> {
    /// False when the run stopped at a checkpoint (Ctrl-C) and will resume.
    pub complete: bool,
    /// The exit status the run ends with (0, 3, or 130 when interrupted).
    pub exit_status: i32,
    /// The content hash of the rule files (`rules::ruleset_version`), as `promo serve`
    /// puts it on its decisions and the state's run record keeps it.
    pub ruleset_version: &'a str,
    pub input: String,
    /// `null` for standard output.
    pub output: Option<String>,
    /// `null` for standard error.
    pub rejects: Option<String>,
    /// The manifest's `currency`, `null` if it names none.
    pub currency: Option<&'a str>,
    pub read: u64,
    pub decided: u64,
    pub rejected: u64,
    pub duplicates: u64,
    pub blank: u64,
    pub decisions: u64,
    pub rule_errors: u64,
    pub rejected_by_code: &'a BTreeMap<String, u64>,
    /// Customer snapshot rows rejected and columns no fact declares.
    pub snapshot_warnings: usize,
    pub rules: BTreeMap<&'a str, RuleJson<'a>>,
}

/// Where a run read and wrote, as the summary names them.
pub struct Files<'a> {
    pub input: &'a Path,
    pub output: Option<&'a Path>,
    pub rejects: Option<&'a Path>,
}

impl<'a> SummaryJson<'a> {
    /// The summary of a run of `files` that counted `s`.
    pub fn new(
        s: &'a Summary,
        files: &Files<'_>,
        ruleset_version: &'a str,
        currency: Option<&'a str>,
    ) -> Self {
        let shown = |p: &Path| p.display().to_string();
        SummaryJson {
            complete: true,
            exit_status: 0,
            ruleset_version,
            input: shown(files.input),
            output: files.output.map(shown),
            rejects: files.rejects.map(shown),
            currency,
            read: s.read,
            decided: s.decided,
            rejected: s.rejected,
            duplicates: s.duplicates,
            blank: s.blank,
            decisions: s.decisions,
            rule_errors: s.rule_errors,
            rejected_by_code: &s.rejected_by,
            snapshot_warnings: 0,
            rules: s
                .rules
                .iter()
                .map(|(id, c)| (id.as_str(), RuleJson::from(c)))
                .collect(),
        }
    }

    /// Writes it to `path`, pretty, with a final line end.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let mut text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        text.push('\n');
        std::fs::write(path, text)
    }
}
