//! `promo state inspect`: what a state directory holds, as text or JSON.

use std::path::PathBuf;

use super::Exit;
use crate::store::inspect::{inspect, Filter, StateView};

/// Arguments of `promo state inspect`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  promo state inspect --state state/\n  promo state inspect --state state/ --customer C42\n  promo state inspect --state state/ --wallet W42 --json\n  promo state inspect --state state/ --coupon E003:welcome-bonus:1"
)]
pub struct InspectArgs {
    /// The state directory of `promo eval --state`.
    #[arg(long, value_name = "DIR")]
    pub state: PathBuf,
    /// Only this customer's facts and counters.
    #[arg(long, value_name = "ID", conflicts_with_all = ["wallet", "coupon"])]
    pub customer: Option<String>,
    /// Only this wallet's facts, counters and coupons.
    #[arg(long, value_name = "ID", conflicts_with = "coupon")]
    pub wallet: Option<String>,
    /// Only this coupon.
    #[arg(long, value_name = "ID")]
    pub coupon: Option<String>,
    /// JSON instead of text (without a filter: everything the state holds).
    #[arg(long)]
    pub json: bool,
}

/// Runs `state inspect`.
pub fn run(args: &InspectArgs) -> Exit {
    let filter = match (&args.customer, &args.wallet, &args.coupon) {
        (Some(c), _, _) => Filter::Customer(c.clone()),
        (_, Some(w), _) => Filter::Wallet(w.clone()),
        (_, _, Some(c)) => Filter::Coupon(c.clone()),
        _ => Filter::All,
    };
    let view = match inspect(&args.state, &filter) {
        Ok(v) => v,
        Err(e) => {
            errln!("promo state inspect: {e}");
            return Exit::Error;
        }
    };
    if args.json {
        match serde_json::to_string_pretty(&view) {
            Ok(text) => outln!("{text}"),
            Err(e) => {
                errln!("promo state inspect: {e}");
                return Exit::Error;
            }
        }
        return Exit::Success;
    }
    if filter == Filter::All {
        let used = view.coupons.values().filter(|c| c.status == "used").count();
        outln!("state in {}", args.state.display());
        outln!("  customers with facts: {}", view.customers.len());
        outln!("  wallets with facts:   {}", view.wallets.len());
        outln!("  counters:             {}", view.counters.len());
        outln!(
            "  coupons:              {} ({used} used)",
            view.coupons.len()
        );
        outln!("  decided events:       {}", view.decided_events);
        for (output, record) in &view.runs {
            let complete = record
                .get("complete")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false);
            let consumed = record
                .get("consumed")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0);
            // Records written before versions were kept have none.
            let version = record
                .get("ruleset")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("not recorded");
            outln!(
                "  run -> {output}: {consumed} input lines, {}, ruleset version {version}",
                if complete {
                    "complete"
                } else {
                    "interrupted (rerun to resume)"
                }
            );
        }
        return Exit::Success;
    }
    if view.customers.is_empty()
        && view.wallets.is_empty()
        && view.coupons.is_empty()
        && view.counters.is_empty()
    {
        errln!(
            "promo state inspect: nothing known about that in {}",
            args.state.display()
        );
        return Exit::Failure;
    }
    outln!("{}", render(&view).trim_end());
    Exit::Success
}

fn render(v: &StateView) -> String {
    let mut out = String::new();
    let facts = |m: &std::collections::BTreeMap<String, String>| {
        m.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("  ")
    };
    for (id, f) in &v.customers {
        out += &format!("customer {id}\n  facts: {}\n", facts(f));
    }
    for (id, f) in &v.wallets {
        out += &format!("wallet {id}\n  facts: {}\n", facts(f));
    }
    if !v.counters.is_empty() {
        out += "counters:\n";
        out += &format!(
            "  {:<20} {:<9} {:<12} {:>6} {:>7} {:>12}\n",
            "counter", "per", "day", "grants", "coupons", "value"
        );
        for c in &v.counters {
            let day = c
                .day
                .and_then(|d| i32::try_from(d).ok())
                .and_then(chrono::NaiveDate::from_num_days_from_ce_opt)
                .map(|d| d.to_string())
                .unwrap_or_else(|| "-".into());
            out += &format!(
                "  {:<20} {:<9} {:<12} {:>6} {:>7} {:>12}\n",
                c.counter, c.per, day, c.grants, c.coupons, c.value
            );
        }
    }
    if !v.coupons.is_empty() {
        out += "coupons:\n";
        out += &format!(
            "  {:<36} {:<10} {:>8} {:>9} {:<11} {:<11} {:<7} {}\n",
            "coupon",
            "wallet",
            "value",
            "min spend",
            "credit by",
            "valid until",
            "status",
            "usable for"
        );
        for (id, c) in &v.coupons {
            out += &format!(
                "  {:<36} {:<10} {:>8} {:>9} {:<11} {:<11} {:<7} {}\n",
                id,
                c.wallet,
                c.face_value,
                c.min_spend,
                c.credit_by,
                c.valid_until.as_deref().unwrap_or("-"),
                c.status,
                c.usable_for.join(",")
            );
        }
    }
    out
}
