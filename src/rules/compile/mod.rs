//! Raw rule files -> a validated, compiled `Ruleset`. The order-ambiguity check is in
//! `ordering`, the script probes in `probes`; the manifest's parts in `manifest`, conditions
//! in `conditions`, grants in `grants`. Every problem is collected with its
//! location; a ruleset with any problem is not built.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;
use std::sync::Arc;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde_json::Value;

use super::calendar::{parse_weekday, weekday_name, Calendar};
use super::error::{
    did_you_mean, Diagnostic, Diagnostics, IdMismatch, KeyConflict, NeverHolds, OperatorMisuse,
    Problem, RuleShape, SourceFile, UpdateMisuse,
};
use super::raw::*;
use super::ruleset::*;
use super::script::{ScriptLimits, ScriptOrigin, Scripts};
use super::span::{Pos, Sp};
use crate::model::Field;

mod accumulators;
mod bounds;
mod conditions;
mod expressions;
mod grants;
mod manifest;
mod ordering;
mod params;
mod probes;
mod script_names;
mod script_order;

use accumulators::*;
use bounds::*;
use conditions::*;
use expressions::*;
use grants::*;
use manifest::*;
use ordering::check_order;
use probes::probe_scripts;
use script_names::check_script_names;
use script_order::order_scripts;

// The compiled ruleset has its own types; the file shapes stop at this module.
impl From<RawScope> for Scope {
    fn from(raw: RawScope) -> Scope {
        match raw {
            RawScope::Customer => Scope::Customer,
            RawScope::Wallet => Scope::Wallet,
            RawScope::All => Scope::All,
        }
    }
}

impl From<RawFactType> for FactType {
    fn from(raw: RawFactType) -> FactType {
        match raw {
            RawFactType::Count => FactType::Count,
            RawFactType::Date => FactType::Date,
            RawFactType::Flag => FactType::Flag,
            RawFactType::Decimal => FactType::Decimal,
        }
    }
}

impl From<RawFactOp> for FactOp {
    fn from(raw: RawFactOp) -> FactOp {
        match raw {
            RawFactOp::Increment => FactOp::Increment,
            RawFactOp::SetTrue => FactOp::SetTrue,
            RawFactOp::SetFalse => FactOp::SetFalse,
            RawFactOp::EarliestDate => FactOp::EarliestDate,
            RawFactOp::LatestDate => FactOp::LatestDate,
            RawFactOp::AddField => FactOp::AddField,
            RawFactOp::SetField => FactOp::SetField,
        }
    }
}

impl From<RawCheck> for CouponCheck {
    fn from(raw: RawCheck) -> CouponCheck {
        match raw {
            RawCheck::OwnedByWallet => CouponCheck::OwnedByWallet,
            RawCheck::Unused => CouponCheck::Unused,
            RawCheck::Credited => CouponCheck::Credited,
            RawCheck::NotExpired => CouponCheck::NotExpired,
            RawCheck::ChannelAllowed => CouponCheck::ChannelAllowed,
            RawCheck::MinSpendMet => CouponCheck::MinSpendMet,
        }
    }
}

/// A parsed rule file with its source, and the script files it names, read by the loader.
pub struct Parsed<T> {
    pub src: SourceFile,
    pub raw: T,
    /// Each script file the rule file names and could be read, by its name as written.
    pub scripts: BTreeMap<String, ScriptFile>,
}

/// A script file beside a rule file, as the loader read it.
pub struct ScriptFile {
    pub path: std::path::PathBuf,
    pub text: String,
}

/// The type a literal must have to be compared with an operand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Text,
    Decimal,
    Date,
    /// A local time of day.
    Time,
    /// A weekday name, compared as text.
    Weekday,
    Int,
    Bool,
    TextList,
    DecimalList,
}

impl Ty {
    fn element(self) -> Ty {
        match self {
            Ty::TextList => Ty::Text,
            Ty::DecimalList => Ty::Decimal,
            t => t,
        }
    }
    fn is_list(self) -> bool {
        matches!(self, Ty::TextList | Ty::DecimalList)
    }
    fn is_ordered(self) -> bool {
        matches!(self, Ty::Decimal | Ty::Date | Ty::Time | Ty::Int)
    }
    fn describe(self) -> &'static str {
        match self {
            Ty::Text => "text",
            Ty::Decimal => "a decimal string such as \"100.00\"",
            Ty::Date => "a date YYYY-MM-DD",
            Ty::Time => "a time of day HH:MM or HH:MM:SS",
            Ty::Weekday => "a weekday such as saturday",
            Ty::Int => "a whole number",
            Ty::Bool => "true or false",
            Ty::TextList => "a list of text",
            Ty::DecimalList => "a list of decimals",
        }
    }
}

fn field_type(field: &Field) -> Ty {
    match field {
        Field::At => Ty::Date,
        Field::Amount => Ty::Decimal,
        Field::Coupons => Ty::TextList,
        Field::FaceValues => Ty::DecimalList,
        _ => Ty::Text,
    }
}

fn fact_type(kind: FactType) -> Ty {
    match kind {
        FactType::Count => Ty::Int,
        FactType::Date => Ty::Date,
        FactType::Flag => Ty::Bool,
        FactType::Decimal => Ty::Decimal,
    }
}

/// Text of a scalar YAML value, for messages and locating.
fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".into(),
        _ => String::new(),
    }
}

/// Parses a decimal from a YAML string or integer; floats are refused so that no binary
/// rounding reaches money.
pub(crate) fn parse_decimal(v: &Value) -> Result<Decimal, String> {
    match v {
        Value::String(s) => Decimal::from_str(s.trim()).map_err(|_| {
            format!("`{s}` is not a decimal; expected a decimal string such as \"40.00\"")
        }),
        Value::Number(n) if n.is_i64() || n.is_u64() => {
            Decimal::from_str(&n.to_string()).map_err(|e| e.to_string())
        }
        Value::Number(n) => Err(format!(
            "`{n}` is a floating-point number; write money as a string, e.g. \"{n}\""
        )),
        other => Err(format!("`{}` is not a decimal", scalar_text(other))),
    }
}

pub(crate) fn parse_date(text: &str) -> Result<NaiveDate, String> {
    crate::model::digits::date(text.trim())
        .ok_or_else(|| format!("`{text}` is not a date; expected YYYY-MM-DD"))
}

/// A local time of day as rules write it: `HH:MM` or `HH:MM:SS`.
fn parse_time(text: &str) -> Option<chrono::NaiveTime> {
    let text = text.trim();
    chrono::NaiveTime::parse_from_str(text, "%H:%M:%S")
        .or_else(|_| chrono::NaiveTime::parse_from_str(text, "%H:%M"))
        .ok()
}

fn literal(v: &Value, ty: Ty) -> Result<Literal, String> {
    let bad = || format!("`{}` is not {}", scalar_text(v), ty.element().describe());
    Ok(match ty.element() {
        Ty::Text => match v {
            Value::String(_) | Value::Number(_) | Value::Bool(_) => {
                Literal::Text(scalar_text(v).into())
            }
            _ => return Err(bad()),
        },
        Ty::Decimal => Literal::Decimal(parse_decimal(v)?),
        Ty::Date => match v {
            Value::String(s) => Literal::Date(parse_date(s)?),
            _ => return Err(bad()),
        },
        Ty::Time => match v {
            Value::String(s) => Literal::Time(parse_time(s).ok_or_else(bad)?),
            _ => return Err(bad()),
        },
        Ty::Weekday => match v {
            Value::String(s) => {
                let day = parse_weekday(s.trim()).ok_or_else(bad)?;
                Literal::Text(weekday_name(day).into())
            }
            _ => return Err(bad()),
        },
        Ty::Int => match v {
            Value::Number(n) => Literal::Int(n.as_i64().ok_or_else(bad)?),
            Value::String(s) => Literal::Int(s.trim().parse().map_err(|_| bad())?),
            _ => return Err(bad()),
        },
        Ty::Bool => match v {
            Value::Bool(b) => Literal::Bool(*b),
            _ => return Err(bad()),
        },
        Ty::TextList | Ty::DecimalList => return Err(bad()),
    })
}

/// Names shared by every rule file: what the manifest declares.
struct Context<'m> {
    manifest: &'m RawManifest,
    /// The manifest's text, where problems of its lists are reported.
    manifest_src: &'m SourceFile,
    event_types: Vec<String>,
    facts: Vec<Fact>,
    calendars: Vec<Calendar>,
    channels: Vec<String>,
    counters: Vec<String>,
    /// The manifest's accumulators by name, and whether each counts (else sums).
    accumulators: Vec<(String, bool)>,
    /// The window each counter is counted over, per owner scope, as the first limit on it
    /// said.
    windows: Vec<(usize, Scope, Window)>,
}

impl Context<'_> {
    /// The accumulator a condition or an expression names (its index, and whether it
    /// counts), reported at the name when the manifest declares none.
    fn accumulator_at(
        &self,
        name: &Sp<String>,
        src: &SourceFile,
        d: &mut Diagnostics,
    ) -> Option<(usize, bool)> {
        let found = self.accumulators.iter().position(|(n, _)| *n == **name);
        if found.is_none() {
            d.at_with_help(
                src,
                name.pos(),
                Problem::UnknownAccumulator {
                    name: name.to_string(),
                },
                did_you_mean(name, self.accumulators.iter().map(|(n, _)| n.as_str())),
            );
        }
        found.and_then(|i| Some((i, self.accumulators.get(i)?.1)))
    }

    /// The calendar a rule names, reported at the name when the manifest declares none.
    fn calendar_at(
        &self,
        name: &Sp<String>,
        src: &SourceFile,
        d: &mut Diagnostics,
    ) -> Option<usize> {
        let found = self.calendars.iter().position(|c| c.id == **name);
        if found.is_none() {
            d.at_with_help(
                src,
                name.pos(),
                Problem::UnknownCalendar {
                    name: Some(name.to_string()),
                },
                did_you_mean(name, self.calendars.iter().map(|c| c.id.as_str())),
            );
        }
        found
    }

    fn type_mask(&self, names: &[Sp<String>], src: &SourceFile, d: &mut Diagnostics) -> TypeMask {
        let mut mask = 0;
        for name in names {
            match self.event_types.iter().position(|t| *t == **name) {
                Some(i) => mask |= 1 << i,
                None => d.at_with_help(
                    src,
                    name.pos(),
                    Problem::UnknownEventType {
                        name: name.to_string(),
                    },
                    did_you_mean(name, self.event_types.iter().map(String::as_str)),
                ),
            }
        }
        mask
    }

    fn channel_mask(
        &self,
        names: &[Sp<String>],
        src: &SourceFile,
        d: &mut Diagnostics,
    ) -> ChannelMask {
        let mut mask = 0;
        for name in names {
            match self.channels.iter().position(|c| *c == **name) {
                Some(i) => mask |= 1 << i,
                None => d.at_with_help(
                    src,
                    name.pos(),
                    Problem::UnknownChannel {
                        name: name.to_string(),
                    },
                    did_you_mean(name, self.channels.iter().map(String::as_str)),
                ),
            }
        }
        mask
    }

    /// The fact a rule names, reported at the name when the manifest declares none.
    fn fact_at(&self, name: &Sp<String>, src: &SourceFile, d: &mut Diagnostics) -> Option<usize> {
        self.fact_in(name, src, name.pos(), d)
    }

    fn fact_in(&self, name: &str, src: &SourceFile, at: Pos, d: &mut Diagnostics) -> Option<usize> {
        let found = self.facts.iter().position(|f| f.name == name);
        if found.is_none() {
            d.at_with_help(
                src,
                at,
                Problem::UnknownFact {
                    name: name.to_string(),
                },
                did_you_mean(name, self.facts.iter().map(|f| f.name.as_str())),
            );
        }
        found
    }

    /// The values of the manifest's list a condition names, reported at the name when the
    /// manifest declares none.
    fn list_at(
        &self,
        name: &Sp<String>,
        src: &SourceFile,
        d: &mut Diagnostics,
    ) -> Option<&Vec<Sp<Value>>> {
        let found = self.manifest.lists.get(name.as_str());
        if found.is_none() {
            d.at_with_help(
                src,
                name.pos(),
                Problem::UnknownList {
                    name: name.to_string(),
                },
                did_you_mean(name, self.manifest.lists.keys().map(String::as_str)),
            );
        }
        found
    }

    /// The field a condition names, reported at the name when it is not known.
    fn field_at(&self, name: &Sp<String>, src: &SourceFile, d: &mut Diagnostics) -> Field {
        self.field_in(name, src, name.pos(), d)
    }

    /// The field of that name, if it is the contract's or a declared extra field.
    fn field_in(&self, name: &str, src: &SourceFile, at: Pos, d: &mut Diagnostics) -> Field {
        let field = Field::from_name(name);
        if let Field::Extra(extra) = &field {
            if !self.manifest.extra_fields.iter().any(|f| f == &**extra) {
                let known = Field::KNOWN
                    .iter()
                    .map(|(n, _)| *n)
                    .chain(self.manifest.extra_fields.iter().map(String::as_str));
                d.at_with_help(
                    src,
                    at,
                    Problem::UnknownField {
                        name: name.to_string(),
                    },
                    did_you_mean(name, known),
                );
            }
        }
        field
    }

    /// Reports a limit that counts a shared counter over another window than the limit
    /// before it: their tallies would be keyed alike (a month's and its first day's).
    fn same_window(
        &mut self,
        counter: usize,
        per: Scope,
        window: Window,
        l: &Sp<RawLimit>,
        src: &SourceFile,
        d: &mut Diagnostics,
    ) {
        match self
            .windows
            .iter()
            .find(|(c, p, _)| *c == counter && *p == per)
        {
            Some(&(_, _, first)) if first != window => {
                let at = l.window.as_ref().map_or(l.name.pos(), |w| w.pos());
                let problem = Problem::CounterWindow {
                    counter: l.counter.to_string(),
                    window: window.name(),
                    first: first.name(),
                };
                d.at(src, at, problem);
            }
            Some(_) => {}
            None => self.windows.push((counter, per, window)),
        }
    }

    fn counter(&mut self, name: &str) -> usize {
        match self.counters.iter().position(|c| c == name) {
            Some(i) => i,
            None => {
                self.counters.push(name.to_string());
                self.counters.len() - 1
            }
        }
    }
}

/// Compiles a manifest, its calendars and rule files into a ruleset, or returns every problem.
pub fn compile(
    manifest: Parsed<RawManifest>,
    calendars: Vec<Parsed<RawCalendar>>,
    rules: Vec<Parsed<RawRule>>,
    d: &mut Diagnostics,
) -> Option<Ruleset> {
    let m = &manifest.raw;
    let msrc = &manifest.src;
    let timezone = m.timezone.parse::<chrono_tz::Tz>().ok();
    if timezone.is_none() {
        let name = m.timezone.to_string();
        d.at(msrc, m.timezone.pos(), Problem::UnknownTimezone { name });
    }
    if m.events.len() > 64 || m.channels.len() > 64 {
        d.at(msrc, m.events.pos(), Problem::TooMany);
    }
    let compiled_types = event_types(m, msrc, d);
    let mut ctx = Context {
        manifest: m,
        manifest_src: msrc,
        event_types: m.events.keys().cloned().collect(),
        facts: Vec::new(),
        calendars: Vec::new(),
        channels: m.channels.clone(),
        counters: Vec::new(),
        accumulators: m
            .accumulators
            .iter()
            .map(|(name, a)| (name.clone(), a.sum.is_none()))
            .collect(),
        windows: Vec::new(),
    };
    ctx.facts = facts(&ctx, d);
    for cal in &calendars {
        let calendar = compile_calendar(m, cal, d);
        check_working_days(cal, &calendar, d);
        ctx.calendars.push(calendar);
    }
    check_script_limits(&m.script_limits, msrc, d);
    let mut scripts = Scripts::new(&script_limits(&m.script_limits));
    let accumulators = compile_accumulators(&mut ctx, &mut scripts, d);

    let mut compiled = Vec::new();
    let mut seen_ids: BTreeSet<String> = BTreeSet::new();
    for rule in &rules {
        if !seen_ids.insert(rule.raw.id.to_string()) {
            let id = rule.raw.id.to_string();
            d.at(
                &rule.src,
                rule.raw.id.pos(),
                Problem::DuplicateRuleId { id },
            );
        }
        if let Some(r) = compile_rule(rule, &mut ctx, &mut scripts, d) {
            compiled.push(r);
        }
    }
    compiled.sort_by(|a, b| (a.phase, &a.id).cmp(&(b.phase, &b.id)));

    let tz = timezone?;
    if d.has_errors() {
        return None;
    }
    check_order(&compiled, &rules, &ctx, d);
    probe_scripts(&scripts, &compiled, &accumulators, &ctx, d);
    if d.has_errors() {
        return None;
    }
    Some(Ruleset::new(
        m.name.clone().unwrap_or_default(),
        tz,
        m.currency.clone(),
        m.phases.clone(),
        compiled_types,
        ctx.channels,
        ctx.facts,
        ctx.calendars,
        ctx.counters,
        accumulators,
        compiled,
        scripts,
    ))
}

fn compile_rule(
    p: &Parsed<RawRule>,
    ctx: &mut Context,
    scripts: &mut Scripts,
    d: &mut Diagnostics,
) -> Option<Rule> {
    let r = &p.raw;
    let src = &p.src;
    let stem = src
        .path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    if *r.id != stem {
        let mismatch = IdMismatch::Rule {
            id: r.id.to_string(),
            stem: stem.to_string(),
        };
        d.at(src, r.id.pos(), Problem::IdMismatch(mismatch));
    }
    let phase = rule_phase(r, src, ctx, d);
    let on = ctx.type_mask(&r.on, src, d);
    let kind = rule_kind(r, src, d)?;
    let rejects_allowed = matches!(kind, RuleKind::Redemption);

    let owner = Owner::rule(p);
    let mut when = compile_conditions(&r.when, &owner, rejects_allowed, ctx, scripts, d);
    order_scripts(&mut when, p, d);
    let limits: Vec<Limit> = r
        .limits
        .iter()
        .map(|l| compile_limit(l, src, rejects_allowed, ctx, d))
        .collect();
    let points = r
        .points
        .as_ref()
        .and_then(|pt| compile_points(pt, src, rejects_allowed, ctx, d));
    let grant = r
        .grant
        .as_ref()
        .map(|g| compile_grant(g, &owner, ctx, scripts, d));
    if let Some(grant) = &grant {
        check_partial_fill(r, &limits, grant, src, d);
    }
    let params = r
        .params
        .iter()
        .map(|(k, v)| (k.as_str().into(), yaml_to_dynamic(v)))
        .collect();

    Some(Rule {
        id: r.id.to_string(),
        clause: r.clause.clone(),
        phase,
        on,
        kind,
        when,
        limits,
        points,
        grant,
        params,
    })
}

/// The index of the rule's phase among the manifest's.
fn rule_phase(r: &RawRule, src: &SourceFile, ctx: &Context, d: &mut Diagnostics) -> usize {
    let found = ctx.manifest.phases.iter().position(|ph| *ph == *r.phase);
    if found.is_none() {
        d.at_with_help(
            src,
            r.phase.pos(),
            Problem::UnknownPhase {
                name: r.phase.to_string(),
                phases: ctx.manifest.phases.clone(),
            },
            did_you_mean(&r.phase, ctx.manifest.phases.iter().map(String::as_str)),
        );
    }
    found.unwrap_or(0)
}

/// What the rule decides, from `decides` and the block that goes with it.
fn rule_kind(r: &RawRule, src: &SourceFile, d: &mut Diagnostics) -> Option<RuleKind> {
    let problem = match (*r.decides, &r.coupon_use, &r.grant) {
        (RawDecides::CouponUse, Some(cu), None) => {
            return Some(RuleKind::CouponUse(CouponUse {
                max_per_event: cu.max_per_event,
                too_many: cu.too_many.as_str().into(),
                checks: cu
                    .checks
                    .iter()
                    .map(|c| (c.check.into(), Arc::from(c.reject.as_str())))
                    .collect(),
            }))
        }
        (RawDecides::Grant, None, Some(_)) => return Some(RuleKind::Grant),
        (RawDecides::Redemption, None, Some(_)) => return Some(RuleKind::Redemption),
        (RawDecides::CouponUse, _, _) => (r.decides.pos(), RuleShape::CouponUseWithoutBlock),
        (_, Some(cu), _) => (cu.pos(), RuleShape::BlockWithoutCouponUse),
        (_, None, None) => (r.id.pos(), RuleShape::GrantsNothing),
    };
    let (at, shape) = problem;
    d.at(src, at, Problem::BadRuleShape(shape));
    None
}

fn compile_limit(
    l: &Sp<RawLimit>,
    src: &SourceFile,
    rejects_allowed: bool,
    ctx: &mut Context,
    d: &mut Diagnostics,
) -> Limit {
    if let (Some(reject), false) = (&l.reject, rejects_allowed) {
        let owner = format!("limit `{}`", l.name);
        d.at(src, reject.pos(), Problem::RejectNotAllowed { owner });
    }
    let window = window(l.window.as_ref(), src, d);
    let counter = ctx.counter(&l.counter);
    ctx.same_window(counter, l.per.into(), window, l, src, d);
    let mut bounds = Vec::new();
    if let Some(n) = l.max_grants {
        bounds.push(Bound::Grants(n));
    }
    if let Some(n) = l.max_coupons {
        bounds.push(Bound::Coupons(n));
    }
    if let Some(v) = &l.max_value {
        match parse_decimal(v) {
            Ok(v) => bounds.push(Bound::Value(v)),
            Err(e) => d.at(src, v.pos(), Problem::BadDecimal(e)),
        }
    }
    if bounds.is_empty() {
        let limit = l.name.to_string();
        d.at(src, l.name.pos(), Problem::EmptyLimit { limit });
    }
    Limit {
        name: l.name.to_string(),
        clause: l.clause.clone(),
        counter,
        per: l.per.into(),
        window,
        partial_fill: partial_fill(l, src, d),
        bounds,
        reject: l.reject.as_deref().map(|r| Arc::from(r.as_str())),
    }
}

fn compile_points(
    pt: &Sp<RawPoints>,
    src: &SourceFile,
    rejects_allowed: bool,
    ctx: &Context,
    d: &mut Diagnostics,
) -> Option<Points> {
    if !rejects_allowed {
        d.at(src, pt.pos(), Problem::PointsNotAllowed);
        return None;
    }
    let fact = ctx.fact_at(&pt.balance_fact, src, d);
    if let Some(f) = fact.and_then(|f| ctx.facts.get(f)) {
        if f.kind != FactType::Decimal || f.scope != Scope::Wallet {
            let fact = pt.balance_fact.to_string();
            d.at(src, pt.balance_fact.pos(), Problem::BadFactType { fact });
        }
    }
    let rate = pt.rate.as_ref().and_then(|v| {
        parse_decimal(v)
            .map_err(|e| d.at(src, v.pos(), Problem::BadDecimal(e)))
            .ok()
    });
    fact.map(|balance_fact| Points {
        clause: pt.clause.clone(),
        balance_fact,
        rate,
        reject: pt.reject.as_str().into(),
    })
}

/// A YAML parameter as a script value; numbers with a fraction and decimals written as
/// strings become decimals (`params::text_param`).
fn yaml_to_dynamic(v: &Value) -> rhai::Dynamic {
    match v {
        Value::Null => rhai::Dynamic::UNIT,
        Value::Bool(b) => (*b).into(),
        Value::Number(n) => match n.as_i64() {
            Some(i) => i.into(),
            None => {
                Decimal::from_str(&n.to_string()).map_or(rhai::Dynamic::UNIT, rhai::Dynamic::from)
            }
        },
        Value::String(s) => params::text_param(s),
        Value::Array(items) => items
            .iter()
            .map(yaml_to_dynamic)
            .collect::<rhai::Array>()
            .into(),
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| (k.as_str().into(), yaml_to_dynamic(v)))
            .collect::<rhai::Map>()
            .into(),
    }
}
