//! Script probes: every script run on a few probe events at load, so that one that breaks
//! the sandbox's limits on ordinary input fails the ruleset rather than every event.

use super::*;
use crate::rules::script::absent_fact;

/// Runs every script on a few probe events, so that one that breaks the sandbox's limits on
/// ordinary input (an endless loop, runaway recursion) fails the ruleset at load rather than
/// every event at run time: rules' conditions and accumulators' filters alike.
pub(super) fn probe_scripts(
    scripts: &Scripts,
    rules: &[Rule],
    accumulators: &[Accumulator],
    ctx: &Context,
    d: &mut Diagnostics,
) {
    let no_params = rhai::Map::new();
    let rules = rules.iter().map(|r| Subject {
        on: r.on,
        params: &r.params,
        conditions: conditions_of(r).collect(),
    });
    let filters = accumulators.iter().map(|a| Subject {
        on: a.on,
        params: &no_params,
        conditions: a.when.iter().collect(),
    });
    for subject in rules.chain(filters) {
        probe_subject(scripts, &subject, ctx, d);
    }
    // What the probes printed is no event's: the first event decided must not show it.
    crate::rules::script::take_printed(|_| {});
}

/// What scripts run for: a rule, or an accumulator's filter.
struct Subject<'a> {
    /// The event types it decides or counts.
    on: TypeMask,
    params: &'a rhai::Map,
    conditions: Vec<&'a Condition>,
}

fn probe_subject(scripts: &Scripts, subject: &Subject, ctx: &Context, d: &mut Diagnostics) {
    let mut indexes = Vec::new();
    for c in &subject.conditions {
        collect_scripts(&c.test, &mut indexes);
    }
    for index in indexes {
        probe_history(scripts, index, subject, ctx, d);
        for amount in [0_i64, 100, 1_000_000] {
            let (event, facts) = probe_event(subject.on, ctx, amount);
            if let Err(e) = scripts.run_condition(index, event, facts, subject.params) {
                if e.exceeded_limit {
                    let problem = Problem::ScriptLimit {
                        condition: e.condition,
                        rule: e.rule,
                        amount,
                        message: e.message,
                    };
                    d.push(Diagnostic::new(e.at, problem));
                    break;
                }
            }
        }
    }
}

/// Every condition of a rule: its own, and those of its grant's tiers and coupons.
fn conditions_of(rule: &Rule) -> impl Iterator<Item = &Condition> {
    let grant = rule.grant.iter();
    let tiers = grant.clone().flat_map(|g| &g.tiers);
    let coupons = grant
        .flat_map(|g| &g.coupons)
        .chain(tiers.clone().flat_map(|t| &t.coupons));
    rule.when
        .iter()
        .chain(tiers.flat_map(|t| &t.when))
        .chain(coupons.flat_map(|c| &c.when))
}

/// Runs a script for a customer with no history (every fact absent, as scripts read it): a
/// script that fails there and not for a customer with some history (`facts.total +
/// event.amount` with no default) would fail on every customer's first event. A script that
/// fails either way is not reported: the probe event's made-up values may be the cause.
fn probe_history(
    scripts: &Scripts,
    index: usize,
    subject: &Subject,
    ctx: &Context,
    d: &mut Diagnostics,
) {
    let (event, facts) = probe_event(subject.on, ctx, 100);
    let Err(e) = scripts.run_condition(index, event.clone(), facts, subject.params) else {
        return;
    };
    if e.exceeded_limit {
        return;
    }
    if scripts
        .run_condition(index, event, history_facts(ctx), subject.params)
        .is_ok()
    {
        let problem = Problem::ScriptNoHistory {
            condition: e.condition,
            rule: e.rule,
            message: e.message,
        };
        d.push(Diagnostic {
            help: Some("a fact with no value reads as 0 (a count or decimal), false (a flag) or () (a date): test `facts.x == ()` before using a date".into()),
            ..Diagnostic::new(e.at, problem)
        });
    }
}

/// Facts of a customer with some history: each has a value.
fn history_facts(ctx: &Context) -> rhai::Map {
    ctx.facts
        .iter()
        .map(|f| {
            let v = match f.kind {
                FactType::Count => rhai::Dynamic::from(1_i64),
                FactType::Flag => rhai::Dynamic::TRUE,
                FactType::Decimal => rhai::Dynamic::from(Decimal::ONE),
                FactType::Date => rhai::Dynamic::from("2000-01-02".to_string()),
            };
            (f.name.as_str().into(), v)
        })
        .collect()
}

fn collect_scripts(t: &Test, out: &mut Vec<usize>) {
    match t {
        Test::Script(i) => out.push(*i),
        Test::All(ts) | Test::Any(ts) => ts.iter().for_each(|t| collect_scripts(t, out)),
        Test::Compare { .. } => {}
    }
}

/// A probe event of the first event type of `on` with every contract field set, and facts
/// at their starting values.
fn probe_event(on: TypeMask, ctx: &Context, amount: i64) -> (rhai::Map, rhai::Map) {
    let kind = ctx
        .event_types
        .iter()
        .enumerate()
        .find(|(i, _)| on & (1 << i) != 0)
        .map(|(_, t)| t.clone())
        .unwrap_or_default();
    let text = |s: &str| rhai::Dynamic::from(s.to_string());
    let mut event = rhai::Map::new();
    for (k, v) in [
        ("id", "probe"),
        ("type", kind.as_str()),
        ("at", "2000-01-03T12:00:00+00:00"),
        ("date", "2000-01-03"),
        ("customer", "probe"),
        ("wallet", "probe"),
        ("card_product", "probe"),
        ("card_role", "probe"),
        ("merchant", "probe"),
        (
            "channel",
            ctx.channels.first().map_or("probe", String::as_str),
        ),
    ] {
        event.insert(k.into(), text(v));
    }
    event.insert("amount".into(), rhai::Dynamic::from(Decimal::from(amount)));
    event.insert("coupons".into(), vec![text("probe")].into());
    event.insert(
        "face_values".into(),
        vec![rhai::Dynamic::from(Decimal::from(amount))].into(),
    );
    let facts = ctx
        .facts
        .iter()
        .map(|f| (f.name.as_str().into(), absent_fact(f.kind)))
        .collect();
    (event, facts)
}
