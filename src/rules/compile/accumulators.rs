//! Windows, accumulators and partial fills: what counts over time.

use super::*;

/// A limit's or an accumulator's window as written; none is the promotion period.
pub(super) fn window(w: Option<&Sp<RawWindow>>, src: &SourceFile, d: &mut Diagnostics) -> Window {
    let Some(w) = w else {
        return Window::Never;
    };
    match **w {
        RawWindow::Day => Window::Day,
        RawWindow::Week => Window::Week,
        RawWindow::Month => Window::Month,
        RawWindow::Period => Window::Never,
        RawWindow::RollingDays(n) => {
            if n == 0 {
                let problem = Problem::BadNumber {
                    key: "rolling_days",
                    value: "0".into(),
                    reason: "spans no day; it must be at least 1",
                };
                d.at(src, w.pos(), problem);
            }
            if u64::from(n) > MAX_ROLLING_DAYS {
                let (key, value, max) = ("rolling_days", u64::from(n), MAX_ROLLING_DAYS);
                d.at(src, w.pos(), Problem::TooLarge { key, value, max });
            }
            Window::Rolling(n.max(1))
        }
    }
}

/// The manifest's accumulators, each on a counter of its own (`accumulator:NAME`, a name
/// a limit's counter cannot take).
pub(super) fn compile_accumulators(
    ctx: &mut Context,
    scripts: &mut Scripts,
    d: &mut Diagnostics,
) -> Vec<Accumulator> {
    let (m, src) = (ctx.manifest, ctx.manifest_src);
    let none = BTreeMap::new();
    let no_params = BTreeMap::new();
    let mut out = Vec::new();
    for (name, a) in &m.accumulators {
        let bad = |why, at: Pos, d: &mut Diagnostics| {
            let name = name.clone();
            d.at(src, at, Problem::BadAccumulator { name, why });
        };
        let per = Scope::from(*a.per);
        if per == Scope::All {
            bad("it is kept per `customer` or per `wallet`", a.per.pos(), d);
        }
        let sum = a.sum.as_ref().map(|f| {
            let field = ctx.field_at(f, src, d);
            if !matches!(field, Field::Amount | Field::FaceValues) {
                bad("`sum` takes `amount` or `face_values`", f.pos(), d);
            }
            field
        });
        if let Some(at) = script_file_in(&a.when) {
            bad(
                "its filter cannot name a script file; write the script inline",
                at,
                d,
            );
        }
        let owner = Owner {
            src,
            id: format!("accumulator {name}"),
            scripts: &none,
            params: &no_params,
        };
        let when = compile_conditions(&a.when, &owner, false, ctx, scripts, d);
        out.push(Accumulator {
            name: name.clone(),
            id: owner.id,
            clause: a.clause.clone(),
            per,
            window: window(a.window.as_ref(), src, d),
            on: ctx.type_mask(&a.on, src, d),
            sum,
            when,
            counter: ctx.counter(&format!("{ACCUMULATOR_COUNTER}{name}")),
        });
    }
    out
}

/// The prefix of accumulators' counter names.
pub(super) const ACCUMULATOR_COUNTER: &str = "accumulator:";

/// The place of the first `script_file` among conditions, nested ones included.
fn script_file_in(conditions: &[Sp<RawCondition>]) -> Option<Pos> {
    conditions.iter().find_map(|c| {
        c.script_file.as_ref().map(|f| f.pos()).or_else(|| {
            let nested = c.all.iter().chain(c.any.iter());
            nested.filter_map(|list| script_file_in(list)).next()
        })
    })
}

/// A limit's `partial_fill`: the least a partial grant may be, when it has one.
pub(super) fn partial_fill(
    l: &Sp<RawLimit>,
    src: &SourceFile,
    d: &mut Diagnostics,
) -> Option<Decimal> {
    let bad = |why, at: Pos, d: &mut Diagnostics| {
        let limit = l.name.to_string();
        d.at(src, at, Problem::BadPartialFill { limit, why });
    };
    let fill = l.partial_fill.as_ref().filter(|f| ***f);
    match (fill, &l.partial_min) {
        (None, Some(min)) => {
            bad("`partial_min` goes with `partial_fill: true`", min.pos(), d);
            None
        }
        (None, None) => None,
        (Some(f), _) if l.max_value.is_none() => {
            bad(
                "`partial_fill` needs a `max_value` to fill up to",
                f.pos(),
                d,
            );
            None
        }
        (Some(_), None) => Some(Decimal::ZERO),
        (Some(_), Some(min)) => amount(min, src, "partial_min", Sign::NotNegative, d),
    }
}

/// A rule with a partially filled limit grants exactly one coupon, whose face value the
/// fill can lower.
pub(super) fn check_partial_fill(
    r: &RawRule,
    limits: &[Limit],
    grant: &Grant,
    src: &SourceFile,
    d: &mut Diagnostics,
) {
    let one = |coupons: &[Coupon]| match coupons {
        [c] => match c.template {
            CouponTemplate::Computed { .. } => true,
            CouponTemplate::Fixed { count, .. } => count == 1,
            CouponTemplate::PerValue { .. } => false,
        },
        _ => false,
    };
    let single = if grant.tiers.is_empty() {
        one(&grant.coupons)
    } else {
        grant.coupons.is_empty() && grant.tiers.iter().all(|t| one(&t.coupons))
    };
    for (limit, raw) in limits.iter().zip(&r.limits) {
        if limit.partial_fill.is_some() && !single {
            let at = raw.partial_fill.as_ref().map_or(raw.pos(), |f| f.pos());
            let why = "`partial_fill` needs a grant of exactly one coupon (one `face_value`, no `count`, no `from_field`)";
            let limit = limit.name.clone();
            d.at(src, at, Problem::BadPartialFill { limit, why });
        }
    }
}
