//! `promo simulate`: what a rule change would have granted differently over a stream.

use std::fs::File;
use std::io::{self, BufReader, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use rust_decimal::Decimal;

use super::Exit;
use crate::batch::InputFormat;
use crate::engine::State;
use crate::io::load_snapshot;
use crate::io::paths::{distinct_outputs, given, Named};
use crate::io::read::{read_csv, read_jsonl};
use crate::model::Money;
use crate::rules::{load_ruleset, Ruleset};
use crate::simulate::{rules_changed, Amount, Pair, Report, RulesChanged, Simulation};

/// Arguments of `promo simulate`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  promo simulate --rules rules-next --baseline rules --input december.jsonl --customers customers.jsonl\n  promo simulate --rules rules-next --baseline rules --input december.jsonl --json --customers-out changed.csv"
)]
pub struct SimulateArgs {
    /// The changed ruleset.
    #[arg(long, value_name = "NEW_RULES_DIR")]
    pub rules: PathBuf,
    /// The ruleset to compare with.
    #[arg(long, value_name = "OLD_RULES_DIR")]
    pub baseline: PathBuf,
    /// The events: a JSONL or CSV file, or `-` for standard input.
    #[arg(long, value_name = "FILE|-")]
    pub input: PathBuf,
    /// The customer snapshot at the start of the stream (JSONL, CSV or YAML).
    #[arg(long, value_name = "FILE")]
    pub customers: Option<PathBuf>,
    /// Input format; by default from the input's extension (`.csv`), else JSONL.
    #[arg(long, value_enum)]
    pub format: Option<InputFormat>,
    /// The report as JSON on standard output.
    #[arg(long)]
    pub json: bool,
    /// How many changed customers to list, largest change first.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Write every customer whose decisions changed to this CSV file.
    #[arg(long, value_name = "FILE")]
    pub customers_out: Option<PathBuf>,
    /// Also write the report as JSON (what --json prints) to this file, as
    /// `eval --summary-json` does, while the human report goes to standard output.
    #[arg(long, value_name = "FILE")]
    pub summary_json: Option<PathBuf>,
}

fn fatal(message: impl std::fmt::Display) -> Exit {
    errln!("promo simulate: {message}");
    Exit::Error
}

fn side<'r>(
    ruleset: &'r Ruleset,
    customers: Option<&Path>,
) -> Result<(&'r Ruleset, State), String> {
    let mut state = State::new(ruleset);
    if let Some(path) = customers {
        let load = load_snapshot(path, ruleset, &mut state, false)
            .map_err(|e| format!("bad customer snapshot: {e}"))?;
        for w in load.warnings(path) {
            errln!("promo simulate: warning: {w}");
        }
    }
    Ok((ruleset, state))
}

/// Runs `simulate`.
pub fn run(args: &SimulateArgs) -> Exit {
    let inputs = given([
        ("--input", Some(args.input.as_path())),
        ("--customers", args.customers.as_deref()),
    ]);
    let dirs = [
        Named::new("--rules", &args.rules),
        Named::new("--baseline", &args.baseline),
    ];
    let outputs = given([
        ("--customers-out", args.customers_out.as_deref()),
        ("--summary-json", args.summary_json.as_deref()),
    ]);
    if let Err(e) = distinct_outputs(&inputs, &dirs, &outputs) {
        return fatal(e);
    }
    let load = |dir: &Path| {
        load_ruleset(dir).map_err(|e| format!("invalid rules in {}:\n{e}", dir.display()))
    };
    let (new, baseline) = match (load(&args.rules), load(&args.baseline)) {
        (Ok(n), Ok(b)) => (n, b),
        (Err(e), _) | (_, Err(e)) => return fatal(e),
    };
    let sides = side(&baseline, args.customers.as_deref())
        .and_then(|b| Ok((b, side(&new, args.customers.as_deref())?)));
    let (b, n) = match sides {
        Ok(s) => s,
        Err(e) => return fatal(e),
    };
    let mut sim = Simulation::new(b, n);
    let csv = args.format.map_or_else(
        || {
            args.input
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
        },
        |f| f == InputFormat::Csv,
    );
    let input: Box<dyn io::Read> = if args.input.as_os_str() == "-" {
        Box::new(io::stdin().lock())
    } else {
        match File::open(&args.input) {
            Ok(f) => Box::new(f),
            Err(e) => return fatal(format!("cannot open {}: {e}", args.input.display())),
        }
    };
    let mut each = |_: crate::io::read::Position, unit: crate::io::read::Unit<'_>| {
        sim.unit(unit).map(|()| ControlFlow::Continue(()))
    };
    let read = if csv {
        read_csv(input, 0, &mut each)
    } else {
        read_jsonl(BufReader::with_capacity(1 << 16, input), 0, &mut each)
    };
    if let Err(e) = read {
        return fatal(e);
    }
    let changed = match rules_changed((&args.baseline, &baseline), (&args.rules, &new)) {
        Ok(c) => c,
        Err(e) => return fatal(format!("cannot compare the rule files: {e}")),
    };
    let report = sim.finish(changed);
    if let Some(path) = &args.customers_out {
        if let Err(e) = write_customers(path, &report) {
            return fatal(format!("cannot write {}: {e}", path.display()));
        }
    }
    if let Some(path) = &args.summary_json {
        let written = serde_json::to_string_pretty(&report)
            .map_err(io::Error::other)
            .and_then(|text| std::fs::write(path, text + "\n"));
        if let Err(e) = written {
            return fatal(format!("cannot write {}: {e}", path.display()));
        }
    }
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(t) => outln!("{t}"),
            Err(e) => return fatal(e),
        }
    } else {
        outln!("{}", render(&report, args.top).trim_end());
    }
    Exit::Success
}

fn write_customers(path: &Path, report: &Report) -> io::Result<()> {
    let mut w = csv::Writer::from_writer(io::BufWriter::new(File::create(path)?));
    w.write_record([
        "customer",
        "baseline_value",
        "new_value",
        "delta",
        "baseline_decisions",
        "new_decisions",
    ])?;
    for c in &report.customers_changed {
        w.write_record([
            c.customer.clone(),
            Money(c.value.baseline).to_string(),
            Money(c.value.new).to_string(),
            signed(c.delta),
            c.decisions.baseline.to_string(),
            c.decisions.new.to_string(),
        ])?;
    }
    w.flush()?;
    w.into_inner()
        .map_err(|e| io::Error::other(e.to_string()))?
        .flush()
}

fn signed(d: Decimal) -> String {
    if d.is_sign_negative() && !d.is_zero() {
        format!("-{}", Money(d.abs()))
    } else {
        format!("+{}", Money(d))
    }
}

/// A row of counts and values under both rulesets, with the differences.
fn amount_row(label: &str, p: &Pair<Amount>) -> String {
    let dc = i128::from(p.new.count) - i128::from(p.baseline.count);
    format!(
        "{:<28} {:>8} {:>14} {:>8} {:>14} {:>8} {:>14}\n",
        label,
        p.baseline.count,
        Money(p.baseline.value).to_string(),
        p.new.count,
        Money(p.new.value).to_string(),
        format!("{dc:+}"),
        signed(p.new.value - p.baseline.value)
    )
}

/// Which rules the rulesets define differently, a line each for what there is.
fn render_rules_changed(c: &RulesChanged) -> String {
    let list = |ids: &[String]| ids.join(", ");
    if c == &RulesChanged::default() {
        return "rules changed: none\n".into();
    }
    let mut out = String::new();
    for (label, ids) in [
        ("rules changed", &c.changed),
        ("rules added", &c.added),
        ("rules removed", &c.removed),
        (
            "other files changed (any rule may decide differently)",
            &c.other_files,
        ),
    ] {
        if !ids.is_empty() {
            out += &format!("{label}: {}\n", list(ids));
        }
    }
    out
}

/// The human report.
pub fn render(r: &Report, top: usize) -> String {
    let currency = r.currency.as_deref().unwrap_or("value");
    let mut out = format!(
        "{} lines read ({} blank); rejected {} / {}, duplicates {} / {} (baseline / new)\n\n",
        r.read,
        r.blank,
        r.rejected.baseline,
        r.rejected.new,
        r.duplicates.baseline,
        r.duplicates.new
    );
    out += &render_rules_changed(&r.rules_changed);
    out += &format!(
        "\n{:<28} {:>8} {:>14} {:>8} {:>14} {:>8} {:>14}\n",
        "grants and approvals", "baseline", "value", "new", "value", "delta", "value"
    );
    for (rule, p) in &r.rules {
        out += &amount_row(rule, p);
    }
    out += &amount_row(&format!("total ({currency})"), &r.total);
    out += "\nby kind\n";
    for (kind, label) in [
        ("grant", "promotion coupons (grant)"),
        ("approve", "redemptions (approve)"),
    ] {
        out += &amount_row(label, &r.by_kind.get(kind).copied().unwrap_or_default());
    }
    let changed: Vec<_> = r
        .decisions
        .iter()
        .filter(|(_, p)| p.baseline != p.new)
        .collect();
    if changed.is_empty() {
        out += "\nno decision differs\n";
    } else {
        out += &format!(
            "\ndecisions that differ in count or value ({} kinds):\n",
            changed.len()
        );
    }
    for (key, p) in changed {
        let d = i128::from(p.new.count) - i128::from(p.baseline.count);
        out += &format!(
            "  {key:<56} {:>8} -> {:<8} ({d:+})",
            p.baseline.count, p.new.count
        );
        if p.baseline.value != p.new.value {
            out += &format!(
                "  {} -> {} ({})",
                Money(p.baseline.value),
                Money(p.new.value),
                signed(p.new.value - p.baseline.value)
            );
        }
        out += "\n";
    }
    out += &format!(
        "\ncustomers whose decisions changed: {}\n",
        r.customers_changed.len()
    );
    for c in r.customers_changed.iter().take(top) {
        out += &format!(
            "  {:<16} {:>12} -> {:<12} {:>12}\n",
            c.customer,
            Money(c.value.baseline).to_string(),
            Money(c.value.new).to_string(),
            signed(c.delta)
        );
    }
    out
}
