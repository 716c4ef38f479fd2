//! Raw rule files -> a validated, compiled `Ruleset`. The order-ambiguity check is in
//! `ordering`, the script probes in `probes`. Every problem is collected with its
//! location; a ruleset with any problem is not built.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;
use std::sync::Arc;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde_json::Value;

use super::calendar::{parse_weekday, Calendar};
use super::error::{did_you_mean, Diagnostics, SourceFile};
use super::raw::*;
use super::ruleset::*;
use super::script::{ScriptLimits, ScriptOrigin, Scripts};
use super::span::{Pos, Sp};
use crate::model::Field;

mod ordering;
mod probes;

use ordering::check_order;
use probes::probe_scripts;

/// A parsed rule file with its source.
pub struct Parsed<T> {
    pub src: SourceFile,
    pub raw: T,
}

/// The type a literal must have to be compared with an operand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Text,
    Decimal,
    Date,
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
        matches!(self, Ty::Decimal | Ty::Date | Ty::Int)
    }
    fn describe(self) -> &'static str {
        match self {
            Ty::Text => "text",
            Ty::Decimal => "a decimal string such as \"100.00\"",
            Ty::Date => "a date YYYY-MM-DD",
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

fn fact_type(kind: RawFactType) -> Ty {
    match kind {
        RawFactType::Count => Ty::Int,
        RawFactType::Date => Ty::Date,
        RawFactType::Flag => Ty::Bool,
        RawFactType::Decimal => Ty::Decimal,
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
}

impl Context<'_> {
    fn type_mask(&self, names: &[Sp<String>], src: &SourceFile, d: &mut Diagnostics) -> TypeMask {
        let mut mask = 0;
        for name in names {
            match self.event_types.iter().position(|t| *t == **name) {
                Some(i) => mask |= 1 << i,
                None => d.at_pos_with_help(
                    src,
                    name.pos(),
                    "unknown_event_type",
                    format!("unknown event type `{name}`"),
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
                None => d.at_pos_with_help(
                    src,
                    name.pos(),
                    "unknown_channel",
                    format!("unknown channel `{name}`"),
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
            d.at_pos_with_help(
                src,
                at,
                "unknown_fact",
                format!("unknown fact `{name}`; facts are declared in the manifest"),
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
            d.at_pos_with_help(
                src,
                name.pos(),
                "unknown_list",
                format!(
                    "unknown list `{}`; lists are declared in the manifest",
                    **name
                ),
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
                d.at_pos_with_help(
                    src,
                    at,
                    "unknown_field",
                    format!("unknown event field `{name}`; fields beyond the contract's are declared in the manifest's `extra_fields`"),
                    did_you_mean(name, known),
                );
            }
        }
        field
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
        d.at_pos(
            msrc,
            m.timezone.pos(),
            "unknown_timezone",
            format!(
                "unknown time zone `{}`; expected an IANA name such as `Europe/Paris`",
                m.timezone
            ),
        );
    }
    if m.events.len() > 64 || m.channels.len() > 64 {
        d.at_pos(
            msrc,
            m.events.pos(),
            "too_many",
            "at most 64 event types and 64 channels".into(),
        );
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
    };
    ctx.facts = facts(&ctx, d);
    for cal in &calendars {
        let calendar = compile_calendar(m, cal, d);
        ctx.calendars.push(calendar);
    }
    let mut scripts = Scripts::new(&script_limits(&m.script_limits));

    let mut compiled = Vec::new();
    let mut seen_ids: BTreeSet<String> = BTreeSet::new();
    for rule in &rules {
        if !seen_ids.insert(rule.raw.id.to_string()) {
            d.at_pos(
                &rule.src,
                rule.raw.id.pos(),
                "duplicate_rule_id",
                format!("rule id `{}` is used by another rule file", rule.raw.id),
            );
        }
        if let Some(r) = compile_rule(rule, &mut ctx, &mut scripts, d) {
            compiled.push(r);
        }
    }
    compiled.sort_by(|a, b| (a.phase, &a.id).cmp(&(b.phase, &b.id)));

    let tz = timezone?;
    if !d.list.is_empty() {
        return None;
    }
    check_order(&compiled, &rules, &ctx, d);
    probe_scripts(&scripts, &compiled, &ctx, d);
    if !d.list.is_empty() {
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
        compiled,
        scripts,
    ))
}

/// The manifest's event types, each with where its channel comes from.
fn event_types(m: &RawManifest, msrc: &SourceFile, d: &mut Diagnostics) -> Vec<EventType> {
    let channel =
        |name: &str, t: &RawEventType, d: &mut Diagnostics| match (&t.channel, &t.channel_field) {
            (Some(c), Some(_)) => {
                d.at_pos(
                    msrc,
                    c.pos(),
                    "conflicting_keys",
                    format!("event type `{name}` has both `channel` and `channel_field`; keep one"),
                );
                ChannelSource::None
            }
            (Some(c), None) => match m.channels.iter().position(|x| *x == **c) {
                Some(i) => ChannelSource::Fixed(i),
                None => {
                    d.at_pos_with_help(
                        msrc,
                        c.pos(),
                        "unknown_channel",
                        format!("unknown channel `{c}`"),
                        did_you_mean(c, m.channels.iter().map(String::as_str)),
                    );
                    ChannelSource::None
                }
            },
            (None, Some(f)) => ChannelSource::Field(Field::from_name(f)),
            (None, None) => ChannelSource::None,
        };
    m.events
        .iter()
        .map(|(name, t)| EventType {
            name: name.clone(),
            requires: t.requires.iter().map(|f| Field::from_name(f)).collect(),
            channel: channel(name, t, d),
        })
        .collect()
}

/// The manifest's facts, each with its slot within its scope.
fn facts(ctx: &Context, d: &mut Diagnostics) -> Vec<Fact> {
    let msrc = ctx.manifest_src;
    let mut slots: BTreeMap<bool, usize> = BTreeMap::new();
    let mut facts = Vec::new();
    for (index, (name, f)) in ctx.manifest.facts.iter().enumerate() {
        if *f.scope == RawScope::All {
            d.at_pos(
                msrc,
                f.scope.pos(),
                "bad_scope",
                format!("fact `{name}` must be kept per `customer` or per `wallet`"),
            );
        }
        // Slots count per wallet, or per customer (where a bad `all` is counted too).
        let slot = slots.entry(*f.scope == RawScope::Wallet).or_insert(0);
        let updates = f
            .updates
            .iter()
            .map(|u| fact_update(ctx, index, name, f, u, d))
            .collect();
        facts.push(Fact {
            name: name.clone(),
            clause: f.clause.clone(),
            scope: *f.scope,
            slot: *slot,
            kind: f.kind,
            snapshot: f.snapshot.clone(),
            updates,
        });
        *slot += 1;
    }
    facts
}

/// One update of fact `name` (the `index`th), checked against the fact's type.
fn fact_update(
    ctx: &Context,
    index: usize,
    name: &str,
    f: &RawFact,
    u: &Sp<RawFactUpdate>,
    d: &mut Diagnostics,
) -> FactUpdate {
    let msrc = ctx.manifest_src;
    let on = ctx.type_mask(&u.on, msrc, d);
    let needs_field = matches!(*u.op, RawFactOp::AddField | RawFactOp::SetField);
    if needs_field != u.field.is_some() {
        d.at_pos(
            msrc,
            u.op.pos(),
            "bad_update",
            format!("update of fact `{name}`: `add_field` and `set_field` need a `field`, other ops take none"),
        );
    }
    let field = u.field.as_ref().map(|f| Field::from_name(f));
    // What an event field gives a fact: the engine reads the date of `at` and the decimal
    // of `amount` or of the sum of `face_values`; nothing else updates facts.
    let gives = match field {
        Some(Field::At) => Some(RawFactType::Date),
        Some(Field::Amount | Field::FaceValues) => Some(RawFactType::Decimal),
        _ => None,
    };
    if let (Some(written), Some(field), None) = (&u.field, &field, gives) {
        d.at_pos(
            msrc,
            written.pos(),
            "bad_update",
            format!("update of fact `{name}`: field `{}` cannot update a fact; `at` gives a date, `amount` and `face_values` a decimal", field.name()),
        );
    }
    let fits = match *u.op {
        RawFactOp::Increment => f.kind == RawFactType::Count,
        RawFactOp::SetTrue | RawFactOp::SetFalse => f.kind == RawFactType::Flag,
        RawFactOp::EarliestDate | RawFactOp::LatestDate => f.kind == RawFactType::Date,
        RawFactOp::AddField => f.kind == RawFactType::Decimal && gives != Some(RawFactType::Date),
        RawFactOp::SetField => gives.is_none_or(|g| g == f.kind),
    };
    if !fits {
        d.at_pos(
            msrc,
            u.op.pos(),
            "bad_update",
            format!(
                "update `{}` does not apply to fact `{name}` of type {}",
                u.op.name(),
                format!("{:?}", f.kind).to_lowercase()
            ),
        );
    }
    FactUpdate {
        fact: index,
        on,
        op: *u.op,
        field,
    }
}

/// A working-day calendar file, named as the manifest names its path.
fn compile_calendar(m: &RawManifest, cal: &Parsed<RawCalendar>, d: &mut Diagnostics) -> Calendar {
    let id = m
        .calendars
        .iter()
        .find(|(_, path)| cal.src.path.ends_with(path.as_str()))
        .map(|(id, _)| id.clone())
        .unwrap_or_default();
    if let Some(declared) = cal.raw.id.as_ref().filter(|declared| ***declared != id) {
        d.at_pos(
            &cal.src,
            declared.pos(),
            "id_mismatch",
            format!(
                "calendar id `{declared}` differs from the manifest's name `{id}` for this file"
            ),
        );
    }
    let mut weekend = Vec::new();
    for w in &cal.raw.weekend {
        match parse_weekday(w) {
            Some(day) => weekend.push(day),
            None => d.at_pos(
                &cal.src,
                w.pos(),
                "bad_weekday",
                format!("`{w}` is not a weekday name such as `saturday`"),
            ),
        }
    }
    let mut holidays = Vec::new();
    for h in &cal.raw.holidays {
        match parse_date(&h.date) {
            Ok(day) => holidays.push(day),
            Err(e) => d.at_pos(&cal.src, h.date.pos(), "bad_date", e),
        }
    }
    Calendar::new(id, &weekend, holidays)
}

/// The sandbox's limits: the manifest's, defaults where it sets none.
fn script_limits(raw: &RawScriptLimits) -> ScriptLimits {
    let default = ScriptLimits::default();
    ScriptLimits {
        operations: raw.operations.unwrap_or(default.operations),
        call_depth: raw.call_depth.unwrap_or(default.call_depth),
        expr_depth: raw.expr_depth.unwrap_or(default.expr_depth),
        string_len: raw.string_len.unwrap_or(default.string_len),
        array_len: raw.array_len.unwrap_or(default.array_len),
        map_len: raw.map_len.unwrap_or(default.map_len),
    }
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
        d.at_pos(
            src,
            r.id.pos(),
            "id_mismatch",
            format!("rule id `{}` differs from its file name `{stem}.yaml`; a rule's id is its file name", r.id),
        );
    }
    let phase = rule_phase(r, src, ctx, d);
    let on = ctx.type_mask(&r.on, src, d);
    let kind = rule_kind(r, src, d)?;
    let rejects_allowed = matches!(kind, RuleKind::Redemption);

    let mut when = Vec::new();
    for c in &r.when {
        if let Some(condition) = compile_condition(c, src, &r.id, rejects_allowed, ctx, scripts, d)
        {
            when.push(condition);
        }
    }
    let limits = r
        .limits
        .iter()
        .map(|l| compile_limit(l, src, rejects_allowed, ctx, d))
        .collect();
    let points = r
        .points
        .as_ref()
        .and_then(|pt| compile_points(pt, src, rejects_allowed, ctx, d));
    let grant = r.grant.as_ref().map(|g| compile_grant(g, src, ctx, d));
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
        d.at_pos_with_help(
            src,
            r.phase.pos(),
            "unknown_phase",
            format!(
                "unknown phase `{}`; the manifest's phases are {:?}",
                r.phase, ctx.manifest.phases
            ),
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
                    .map(|c| (c.check, Arc::from(c.reject.as_str())))
                    .collect(),
            }))
        }
        (RawDecides::Grant, None, Some(_)) => return Some(RuleKind::Grant),
        (RawDecides::Redemption, None, Some(_)) => return Some(RuleKind::Redemption),
        (RawDecides::CouponUse, _, _) => (
            r.decides.pos(),
            "a `coupon_use` rule needs a `coupon_use` block and no `grant`",
        ),
        (_, Some(cu), _) => (cu.pos(), "a `coupon_use` block needs `decides: coupon_use`"),
        (_, None, None) => (r.id.pos(), "this rule grants nothing: add a `grant` block"),
    };
    let (at, message) = problem;
    d.at_pos(src, at, "bad_rule_shape", message.into());
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
        d.at_pos(
            src,
            reject.pos(),
            "reject_not_allowed",
            format!(
                "limit `{}`: only `decides: redemption` rules reject with a reason",
                l.name
            ),
        );
    }
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
            Err(e) => d.at_pos(src, v.pos(), "bad_decimal", e),
        }
    }
    if bounds.is_empty() {
        d.at_pos(
            src,
            l.name.pos(),
            "empty_limit",
            format!(
                "limit `{}` sets no bound: add `max_grants`, `max_coupons` or `max_value`",
                l.name
            ),
        );
    }
    Limit {
        name: l.name.to_string(),
        clause: l.clause.clone(),
        counter: ctx.counter(&l.counter),
        per: l.per,
        daily: l.window.is_some(),
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
        d.at_pos(
            src,
            pt.pos(),
            "points_not_allowed",
            "`points` apply to `decides: redemption` rules only".into(),
        );
        return None;
    }
    let fact = ctx.fact_at(&pt.balance_fact, src, d);
    if let Some(f) = fact.and_then(|f| ctx.facts.get(f)) {
        if f.kind != RawFactType::Decimal || f.scope != RawScope::Wallet {
            d.at_pos(
                src,
                pt.balance_fact.pos(),
                "bad_fact_type",
                format!(
                    "`{}` must be a decimal fact kept per wallet",
                    pt.balance_fact
                ),
            );
        }
    }
    let rate = pt.rate.as_ref().and_then(|v| {
        parse_decimal(v)
            .map_err(|e| d.at_pos(src, v.pos(), "bad_decimal", e))
            .ok()
    });
    fact.map(|balance_fact| Points {
        clause: pt.clause.clone(),
        balance_fact,
        rate,
        reject: pt.reject.as_str().into(),
    })
}

/// Which amounts a key takes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sign {
    /// More than zero (a face value).
    Positive,
    /// Zero or more (a minimum spend).
    NotNegative,
}

/// An amount of money a rule writes, reported at its place when it is not a decimal or has
/// the wrong sign.
fn amount(
    v: &Sp<Value>,
    src: &SourceFile,
    key: &str,
    sign: Sign,
    d: &mut Diagnostics,
) -> Option<Decimal> {
    let value = parse_decimal(v)
        .map_err(|e| d.at_pos(src, v.pos(), "bad_decimal", e))
        .ok()?;
    let wrong = match sign {
        Sign::Positive => (value <= Decimal::ZERO).then_some("more than zero"),
        Sign::NotNegative => (value < Decimal::ZERO).then_some("zero or more"),
    };
    match wrong {
        Some(want) => {
            d.at_pos(
                src,
                v.pos(),
                "bad_amount",
                format!("`{key}: {}` must be {want}", scalar_text(v)),
            );
            None
        }
        None => Some(value),
    }
}

fn compile_grant(g: &RawGrant, src: &SourceFile, ctx: &Context, d: &mut Diagnostics) -> Grant {
    let coupons = g
        .coupons
        .iter()
        .filter_map(|c| compile_coupon(c, src, ctx, d))
        .collect();
    let cb = &g.credit_by;
    let mut overrides = Vec::new();
    for o in &cb.overrides {
        match (parse_date(&o.before), parse_date(&o.date)) {
            (Ok(b), Ok(dt)) => overrides.push((b, dt)),
            (Err(e), _) => d.at_pos(src, o.before.pos(), "bad_date", e),
            (_, Err(e)) => d.at_pos(src, o.date.pos(), "bad_date", e),
        }
    }
    if let Some(days) = g.valid_days.as_ref().filter(|v| ***v == 0) {
        d.at_pos(
            src,
            days.pos(),
            "bad_number",
            "`valid_days: 0` leaves a coupon no day to be used; it must be at least 1".into(),
        );
    }
    Grant {
        clause: g.clause.clone(),
        coupons,
        credit_by: CreditBy {
            after: credit_after(cb, src, ctx, d),
            overrides,
        },
        valid_days: g.valid_days.as_deref().copied(),
    }
}

/// When coupons are credited: working days by a calendar, or calendar days.
fn credit_after(
    cb: &Sp<RawCreditBy>,
    src: &SourceFile,
    ctx: &Context,
    d: &mut Diagnostics,
) -> CreditAfter {
    match (cb.working_days_after, cb.days_after) {
        (Some(days), None) => {
            let calendar = match &cb.calendar {
                Some(name) => ctx.calendars.iter().position(|c| c.id == **name).or_else(|| {
                    d.at_pos_with_help(
                        src,
                        name.pos(),
                        "unknown_calendar",
                        format!("unknown calendar `{name}`; `working_days_after` needs a calendar declared in the manifest"),
                        did_you_mean(name, ctx.calendars.iter().map(|c| c.id.as_str())),
                    );
                    None
                }),
                None => {
                    d.at_pos(
                        src,
                        cb.pos(),
                        "unknown_calendar",
                        "`working_days_after` needs a `calendar` declared in the manifest".into(),
                    );
                    None
                }
            };
            CreditAfter::WorkingDays {
                days,
                calendar: calendar.unwrap_or(0),
            }
        }
        (None, Some(days)) => CreditAfter::Days(days),
        _ => {
            d.at_pos(
                src,
                cb.pos(),
                "bad_credit_by",
                "`credit_by` needs exactly one of `working_days_after` or `days_after`".into(),
            );
            CreditAfter::Days(0)
        }
    }
}

/// One coupon template of a grant.
fn compile_coupon(
    c: &Sp<RawCoupon>,
    src: &SourceFile,
    ctx: &Context,
    d: &mut Diagnostics,
) -> Option<CouponTemplate> {
    let usable_for = ctx.channel_mask(&c.usable_for, src, d);
    let min_spend = c
        .min_spend
        .as_ref()
        .and_then(|v| amount(v, src, "min_spend", Sign::NotNegative, d));
    match (&c.face_value, &c.from_field) {
        (Some(fv), None) => {
            let face_value = amount(fv, src, "face_value", Sign::Positive, d).unwrap_or_default();
            if let Some(by) = &c.min_spend_by_face_value {
                d.at_pos(
                    src,
                    by.pos(),
                    "conflicting_keys",
                    "`min_spend_by_face_value` goes with `from_field`".into(),
                );
            }
            Some(CouponTemplate::Fixed {
                face_value,
                min_spend: min_spend.unwrap_or(face_value),
                usable_for,
                count: c.count.as_deref().copied().unwrap_or(1),
            })
        }
        (None, Some(field)) => {
            let field = ctx.field_at(field, src, d);
            if field_type(&field) != Ty::DecimalList {
                let at = c.from_field.as_ref().map_or(c.pos(), |f| f.pos());
                d.at_pos(
                    src,
                    at,
                    "bad_field_type",
                    format!(
                        "`from_field` needs a list of decimals such as `face_values`, not `{}`",
                        field.name()
                    ),
                );
            }
            if let Some(count) = &c.count {
                d.at_pos(
                    src,
                    count.pos(),
                    "conflicting_keys",
                    "`count` goes with a fixed `face_value`".into(),
                );
            }
            Some(CouponTemplate::PerValue {
                field,
                min_spend,
                min_spend_by_face_value: min_spends_by_face_value(c, src, d),
                usable_for,
            })
        }
        _ => {
            d.at_pos(
                src,
                c.pos(),
                "bad_coupon",
                "a coupon has either a `face_value` or a `from_field`".into(),
            );
            None
        }
    }
}

/// The minimum spend of each face value of a `from_field` coupon.
fn min_spends_by_face_value(
    c: &RawCoupon,
    src: &SourceFile,
    d: &mut Diagnostics,
) -> Vec<(Decimal, Decimal)> {
    let Some(by) = &c.min_spend_by_face_value else {
        return Vec::new();
    };
    let mut by_value = Vec::new();
    for (k, v) in by.iter() {
        match (Decimal::from_str(k.trim()), parse_decimal(v)) {
            (Ok(k), Ok(v)) => by_value.push((k, v)),
            (Err(_), _) => d.at_pos(
                src,
                by.pos(),
                "bad_decimal",
                format!("`{k}` is not a decimal"),
            ),
            (_, Err(e)) => d.at_pos(src, v.pos(), "bad_decimal", e),
        }
    }
    by_value
}

/// One named condition of `when`; its problems are tied to the clause it encodes.
#[allow(
    clippy::too_many_arguments,
    reason = "the rule's parts a condition depends on"
)]
fn compile_condition(
    c: &Sp<RawCondition>,
    src: &SourceFile,
    rule: &str,
    rejects_allowed: bool,
    ctx: &Context,
    scripts: &mut Scripts,
    d: &mut Diagnostics,
) -> Option<Condition> {
    let Some(name) = c.name.as_deref().cloned() else {
        d.at_pos(
            src,
            c.pos(),
            "missing_name",
            "every condition of `when` needs a `name`".into(),
        );
        return None;
    };
    if let (Some(reject), false) = (&c.reject, rejects_allowed) {
        d.at_pos(
            src,
            reject.pos(),
            "reject_not_allowed",
            format!("condition `{name}`: only `decides: redemption` rules reject with a reason"),
        );
    }
    let before = d.list.len();
    let test = compile_test(c, src, &name, rule, ctx, scripts, d);
    if let Some(clause) = &c.clause {
        // Tie each problem to the sentence of the terms the condition encodes.
        for diag in d.list.iter_mut().skip(before) {
            diag.clause
                .get_or_insert_with(|| format!("condition `{name}` encodes: {}", **clause));
        }
    }
    Some(Condition {
        name,
        clause: c.clause.as_deref().cloned(),
        test: test?,
        reject: c.reject.as_deref().map(|r| Arc::from(r.as_str())),
    })
}

/// The condition's operand, its type and name, or `None` when it has none or an unknown fact.
fn operand(
    c: &Sp<RawCondition>,
    src: &SourceFile,
    ctx: &Context,
    d: &mut Diagnostics,
) -> Option<(Operand, Ty, String)> {
    let list_field = |f: &Sp<String>, key: &str, want: Ty, d: &mut Diagnostics| {
        let field = ctx.field_at(f, src, d);
        let ok = match want {
            Ty::DecimalList => field_type(&field) == Ty::DecimalList,
            _ => field_type(&field).is_list(),
        };
        if !ok {
            let example = if want == Ty::DecimalList {
                "a list of decimals such as `face_values`"
            } else {
                "a list field such as `coupons`"
            };
            d.at_pos(
                src,
                f.pos(),
                "bad_field_type",
                format!("`{key}` needs {example}, not `{}`", **f),
            );
        }
        field
    };
    if let Some(f) = &c.field {
        let field = ctx.field_at(f, src, d);
        let ty = field_type(&field);
        Some((Operand::Field(field), ty, f.to_string()))
    } else if let Some(f) = &c.fact {
        let fi = ctx.fact_at(f, src, d)?;
        let ty = fact_type(ctx.facts.get(fi)?.kind);
        Some((Operand::Fact(fi), ty, f.to_string()))
    } else if let Some(f) = &c.sum_of {
        let field = list_field(f, "sum_of", Ty::DecimalList, d);
        Some((Operand::SumOf(field), Ty::Decimal, f.to_string()))
    } else if let Some(f) = &c.count_of {
        let field = list_field(f, "count_of", Ty::TextList, d);
        Some((Operand::CountOf(field), Ty::Int, f.to_string()))
    } else {
        None
    }
}

/// Where each character of an inline script is in the rule file, line by line of the
/// script; empty when the scalar's source could not be read back to the script.
fn script_lines(src: &SourceFile, text: &Sp<String>) -> Vec<Vec<Pos>> {
    let Some(positions) = text
        .offset()
        .and_then(|o| super::scalar::char_positions(&src.text, o, text))
    else {
        return Vec::new();
    };
    let mut lines = vec![Vec::new()];
    for (c, p) in text.chars().zip(positions) {
        if let Some(line) = lines.last_mut() {
            line.push(p);
        }
        if c == '\n' {
            lines.push(Vec::new());
        }
    }
    lines
}

/// A script condition, written inline or in a file beside the rule file.
fn compile_script(
    c: &Sp<RawCondition>,
    src: &SourceFile,
    name: &str,
    rule: &str,
    scripts: &mut Scripts,
    d: &mut Diagnostics,
) -> Option<Test> {
    let (text, file, at, lines) = if let Some(text) = &c.script {
        let at = text.pos();
        let lines = script_lines(src, text);
        (text.to_string(), src.path.clone(), at, lines)
    } else {
        let path = c.script_file.as_ref()?;
        let full = src
            .path
            .parent()
            .map(|p| p.join(path.as_str()))
            .unwrap_or_else(|| path.as_str().into());
        match std::fs::read_to_string(&full) {
            Ok(t) => (t, full, Pos { line: 1, column: 1 }, Vec::new()),
            Err(e) => {
                d.at_pos(
                    src,
                    path.pos(),
                    "unreadable_script",
                    format!("cannot read script `{}`: {e}", full.display()),
                );
                return None;
            }
        }
    };
    let origin = ScriptOrigin {
        file,
        first_line: at.line,
        first_column: at.column,
        lines,
        rule: rule.to_string(),
        condition: name.to_string(),
    };
    match scripts.compile(&text, origin) {
        Ok(i) => Some(Test::Script(i)),
        Err((location, message)) => {
            d.list.push(located(
                &location,
                "script_syntax",
                format!("script of condition `{name}`: {message}"),
            ));
            None
        }
    }
}

fn compile_test(
    c: &Sp<RawCondition>,
    src: &SourceFile,
    name: &str,
    rule: &str,
    ctx: &Context,
    scripts: &mut Scripts,
    d: &mut Diagnostics,
) -> Option<Test> {
    let kinds = [
        c.field.is_some(),
        c.fact.is_some(),
        c.sum_of.is_some(),
        c.count_of.is_some(),
        c.all.is_some(),
        c.any.is_some(),
        c.script.is_some(),
        c.script_file.is_some(),
    ];
    if kinds.iter().filter(|x| **x).count() != 1 {
        d.at_pos(
            src,
            c.pos(),
            "bad_condition",
            format!("condition `{name}` needs exactly one of `field`, `fact`, `sum_of`, `count_of`, `all`, `any` or `script`"),
        );
        return None;
    }
    let mut sub = |list: &Vec<Sp<RawCondition>>| -> Vec<Test> {
        list.iter()
            .filter_map(|c| compile_test(c, src, name, rule, ctx, scripts, d))
            .collect()
    };
    if let Some(list) = &c.all {
        return Some(Test::All(sub(list)));
    }
    if let Some(list) = &c.any {
        return Some(Test::Any(sub(list)));
    }
    if c.script.is_some() || c.script_file.is_some() {
        return compile_script(c, src, name, rule, scripts, d);
    }
    let (operand, ty, operand_name) = operand(c, src, ctx, d)?;
    let tests = Tests {
        src,
        ty,
        operand: &operand_name,
        ctx,
    };
    let ops = tests.ops(c, d);
    if tests_named(c) == 0 {
        d.at_pos(src, c.pos(), "no_test", format!("condition `{name}` names `{operand_name}` but no test such as `eq`, `in_list` or `between`"));
        return None;
    }
    // A test already reported (a bad operator or literal) leaves the condition out.
    (ops.len() == tests_named(c)).then_some(Test::Compare { operand, ops })
}

/// How many tests a condition names (each `in_list` or `not_in_list` counts as one).
fn tests_named(c: &RawCondition) -> usize {
    [
        c.eq.is_some(),
        c.ne.is_some(),
        c.in_.is_some(),
        c.not_in.is_some(),
        c.in_list.is_some(),
        c.not_in_list.is_some(),
        c.gt.is_some(),
        c.gte.is_some(),
        c.lt.is_some(),
        c.lte.is_some(),
        c.between.is_some(),
        c.present.is_some(),
        c.not_empty.is_some(),
        c.each_in.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count()
}

/// Makes a test of a list of literals (`in`, `not_in`, `each_in`).
type MakeListOp = fn(Vec<Literal>) -> Op;

/// A written list of literals, and each of them, with their places.
type Literals = Sp<Vec<Sp<Value>>>;

/// The tests of one compare condition: its operand's name and type, to check literals against.
struct Tests<'a> {
    src: &'a SourceFile,
    ty: Ty,
    operand: &'a str,
    ctx: &'a Context<'a>,
}

impl Tests<'_> {
    /// Whether `op` applies to the operand; reports at `at` when it does not.
    fn applies(&self, op: &str, at: Pos, d: &mut Diagnostics) -> bool {
        let (ty, needle) = (self.ty, self.operand);
        let problem = if ty.is_list() && !matches!(op, "each_in" | "not_empty") {
            Some(format!("`{op}` does not apply to the list `{needle}`; use `each_in`, `not_empty` or `count_of`"))
        } else if matches!(op, "gt" | "gte" | "lt" | "lte" | "between") && !ty.is_ordered() {
            Some(format!(
                "`{op}` needs a number or a date, and `{needle}` is {}",
                ty.describe()
            ))
        } else if matches!(op, "each_in" | "not_empty") && !ty.is_list() {
            Some(format!(
                "`{op}` applies to list fields, and `{needle}` is {}",
                ty.describe()
            ))
        } else {
            None
        };
        if let Some(message) = &problem {
            d.at_pos(self.src, at, "bad_operator", message.clone());
        }
        problem.is_none()
    }

    /// A literal of the operand's type, or a `bad_literal` at `at`.
    fn literal(&self, v: &Value, at: Pos, d: &mut Diagnostics) -> Option<Literal> {
        literal(v, self.ty)
            .map_err(|e| {
                let message = format!(
                    "{e} (`{}` is compared as {})",
                    self.operand,
                    self.ty.element().describe()
                );
                d.at_pos(self.src, at, "bad_literal", message);
            })
            .ok()
    }

    /// Reports a test that no value passes: the rule it belongs to could never decide.
    fn never_holds(&self, at: Pos, message: String, d: &mut Diagnostics) {
        d.at_pos_with_help(
            self.src,
            at,
            "never_holds",
            message,
            Some(
                "check the values against the terms; a rule that can never decide is a mistake"
                    .into(),
            ),
        );
    }

    /// The literals of a written list, each checked at its own place.
    fn literals(&self, vs: &[Sp<Value>], d: &mut Diagnostics) -> Option<Vec<Literal>> {
        let out: Vec<Literal> = vs
            .iter()
            .filter_map(|v| self.literal(v, v.pos(), d))
            .collect();
        (out.len() == vs.len()).then_some(out)
    }

    /// The literals of the manifest's list a condition names. A value of the list that is
    /// not of the operand's type is reported once, at its line of the manifest, however
    /// many conditions name the list.
    fn named_list(&self, l: &Sp<String>, d: &mut Diagnostics) -> Option<Vec<Literal>> {
        let vs = self.ctx.list_at(l, self.src, d)?;
        let in_manifest = Tests {
            src: self.ctx.manifest_src,
            ..*self
        };
        let out: Vec<Literal> = vs
            .iter()
            .filter_map(|v| in_manifest.literal(v, v.pos(), d))
            .collect();
        (out.len() == vs.len()).then_some(out)
    }

    fn ops(&self, c: &RawCondition, d: &mut Diagnostics) -> Vec<Op> {
        let mut ops = Vec::new();
        let mut one =
            |v: &Option<Sp<Value>>, op: &str, make: fn(Literal) -> Op, d: &mut Diagnostics| {
                if let Some(v) = v {
                    if self.applies(op, v.pos(), d) {
                        ops.extend(self.literal(v, v.pos(), d).map(make));
                    }
                }
            };
        one(&c.eq, "eq", Op::Eq, d);
        one(&c.ne, "ne", Op::Ne, d);
        one(&c.gt, "gt", Op::Gt, d);
        one(&c.gte, "gte", Op::Gte, d);
        one(&c.lt, "lt", Op::Lt, d);
        one(&c.lte, "lte", Op::Lte, d);
        let lists: [(&Option<Literals>, &str, MakeListOp); 3] = [
            (&c.in_, "in", Op::In),
            (&c.not_in, "not_in", Op::NotIn),
            (&c.each_in, "each_in", Op::EachIn),
        ];
        for (vs, op, make) in lists {
            if let Some(vs) = vs {
                if op == "in" && vs.is_empty() {
                    let message = "`in: []` lists no value, so the condition never holds".into();
                    self.never_holds(vs.pos(), message, d);
                } else if self.applies(op, vs.pos(), d) {
                    ops.extend(self.literals(vs, d).map(make));
                }
            }
        }
        let named: [(&Option<Sp<String>>, &str, MakeListOp); 2] = [
            (&c.in_list, "in_list", Op::In),
            (&c.not_in_list, "not_in_list", Op::NotIn),
        ];
        for (l, op, make) in named {
            if let Some(l) = l {
                if self.applies(op, l.pos(), d) {
                    ops.extend(self.named_list(l, d).map(make));
                }
            }
        }
        if let Some((a, b)) = &c.between {
            if self.applies("between", a.pos(), d) {
                let (lo, hi) = (self.literal(a, a.pos(), d), self.literal(b, b.pos(), d));
                if let (Some(lo), Some(hi)) = (lo, hi) {
                    if lo.order(&hi) == Some(std::cmp::Ordering::Greater) {
                        let message = format!("`between: [{}, {}]` is empty: its first bound is after its second, so the condition never holds", scalar_text(a), scalar_text(b));
                        self.never_holds(a.pos(), message, d);
                    } else {
                        ops.push(Op::Between(lo, hi));
                    }
                }
            }
        }
        if let Some(p) = &c.present {
            ops.push(Op::Present(**p));
        }
        if let Some(n) = &c.not_empty {
            if self.applies("not_empty", n.pos(), d) {
                ops.push(Op::NotEmpty(**n));
            }
        }
        ops
    }
}

fn located(location: &str, code: &'static str, message: String) -> super::error::Diagnostic {
    // `location` is `file:line:col`; the file part may itself hold colons.
    let mut parts = location.rsplitn(3, ':');
    let column = parts.next().and_then(|c| c.parse().ok()).unwrap_or(0);
    let line = parts.next().and_then(|l| l.parse().ok()).unwrap_or(0);
    let file = parts.next().unwrap_or(location);
    super::error::Diagnostic {
        file: file.into(),
        line,
        column,
        code,
        message,
        help: None,
        clause: None,
    }
}

/// A YAML parameter as a script value; numbers with a fraction become decimals.
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
        Value::String(s) => s.clone().into(),
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
