//! What a rule grants: coupons, their amounts, and when they are credited.

use super::*;

/// Which amounts a key takes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Sign {
    /// More than zero (a face value).
    Positive,
    /// Zero or more (a minimum spend).
    NotNegative,
}

impl Sign {
    /// What `value` must be instead, when this sign refuses it.
    pub(super) fn refuses(self, value: Decimal) -> Option<&'static str> {
        match self {
            Sign::Positive => (value <= Decimal::ZERO).then_some("more than zero"),
            Sign::NotNegative => (value < Decimal::ZERO).then_some("zero or more"),
        }
    }
}

/// An amount of money a rule writes, reported at its place when it is not a decimal or has
/// the wrong sign.
pub(super) fn amount(
    v: &Sp<Value>,
    src: &SourceFile,
    key: &'static str,
    sign: Sign,
    d: &mut Diagnostics,
) -> Option<Decimal> {
    let value = parse_decimal(v)
        .map_err(|e| d.at(src, v.pos(), Problem::BadDecimal(e)))
        .ok()?;
    match sign.refuses(value) {
        Some(want) => {
            let value = scalar_text(v);
            d.at(src, v.pos(), Problem::BadAmount { key, value, want });
            None
        }
        None => Some(value),
    }
}

pub(super) fn compile_grant(
    g: &Sp<RawGrant>,
    owner: &Owner,
    ctx: &Context,
    scripts: &mut Scripts,
    d: &mut Diagnostics,
) -> Grant {
    let src = owner.src;
    let coupons = compile_coupons(&g.coupons, owner, ctx, scripts, d);
    let tiers = g
        .tiers
        .iter()
        .map(|t| Tier {
            name: t.name.to_string(),
            when: compile_conditions(&t.when, owner, false, ctx, scripts, d),
            coupons: compile_coupons(&t.coupons, owner, ctx, scripts, d),
        })
        .collect();
    if g.tiers.is_empty() && g.coupons.is_empty() {
        d.at(src, g.pos(), Problem::BadRuleShape(RuleShape::EmptyGrant));
    }
    let cb = &g.credit_by;
    let mut overrides = Vec::new();
    for o in &cb.overrides {
        match (parse_date(&o.before), parse_date(&o.date)) {
            (Ok(b), Ok(dt)) => overrides.push((b, dt)),
            (Err(e), _) => d.at(src, o.before.pos(), Problem::BadDate(e)),
            (_, Err(e)) => d.at(src, o.date.pos(), Problem::BadDate(e)),
        }
    }
    if let Some(days) = &g.valid_days {
        at_most(days, "valid_days", MAX_VALID_DAYS, src, d);
    }
    if let Some(days) = g.valid_days.as_ref().filter(|v| ***v == 0) {
        let problem = Problem::BadNumber {
            key: "valid_days",
            value: "0".into(),
            reason: "leaves a coupon no day to be used; it must be at least 1",
        };
        d.at(src, days.pos(), problem);
    }
    Grant {
        clause: g.clause.clone(),
        coupons,
        tiers,
        credit_by: CreditBy {
            after: credit_after(cb, src, ctx, d),
            overrides,
        },
        valid_days: g.valid_days.as_deref().copied(),
    }
}

/// When coupons are credited: working days by a calendar, or calendar days.
pub(super) fn credit_after(
    cb: &Sp<RawCreditBy>,
    src: &SourceFile,
    ctx: &Context,
    d: &mut Diagnostics,
) -> CreditAfter {
    match (&cb.working_days_after, &cb.days_after) {
        (Some(days), None) => {
            at_most(days, "working_days_after", MAX_WORKING_DAYS_AFTER, src, d);
            let calendar = match &cb.calendar {
                Some(name) => ctx.calendar_at(name, src, d),
                None => {
                    d.at(src, cb.pos(), Problem::UnknownCalendar { name: None });
                    None
                }
            };
            CreditAfter::WorkingDays {
                days: **days,
                calendar: calendar.unwrap_or(0),
            }
        }
        (None, Some(days)) => {
            at_most(days, "days_after", MAX_DAYS_AFTER, src, d);
            CreditAfter::Days(**days)
        }
        _ => {
            d.at(src, cb.pos(), Problem::BadCreditBy);
            CreditAfter::Days(0)
        }
    }
}

fn compile_coupons(
    list: &[Sp<RawCoupon>],
    owner: &Owner,
    ctx: &Context,
    scripts: &mut Scripts,
    d: &mut Diagnostics,
) -> Vec<Coupon> {
    list.iter()
        .filter_map(|c| {
            let when = compile_conditions(&c.when, owner, false, ctx, scripts, d);
            let template = compile_coupon(c, owner, ctx, d)?;
            Some(Coupon { when, template })
        })
        .collect()
}

/// One coupon template of a grant.
pub(super) fn compile_coupon(
    c: &Sp<RawCoupon>,
    owner: &Owner,
    ctx: &Context,
    d: &mut Diagnostics,
) -> Option<CouponTemplate> {
    let src = owner.src;
    let usable_for = ctx.channel_mask(&c.usable_for, src, d);
    let face_written = c
        .face_value
        .as_ref()
        .and_then(|v| amount_or_expr(v, owner, ctx, "face_value", Sign::Positive, d));
    let min_spend_written = c
        .min_spend
        .as_ref()
        .and_then(|v| amount_or_expr(v, owner, ctx, "min_spend", Sign::NotNegative, d));
    let computed = matches!(face_written, Some(AmountOrExpr::Expr(_)))
        || matches!(min_spend_written, Some(AmountOrExpr::Expr(_)));
    if computed && c.from_field.is_none() {
        if let Some(count) = &c.count {
            d.at(
                src,
                count.pos(),
                Problem::ConflictingKeys(KeyConflict::Count),
            );
        }
        let as_expr = |w: AmountOrExpr| match w {
            AmountOrExpr::Expr(e) => Some(e),
            AmountOrExpr::Amount(a) => Some(Expr::of_constant(a)),
        };
        return Some(CouponTemplate::Computed {
            face_value: face_written.and_then(as_expr)?,
            min_spend: min_spend_written.and_then(as_expr),
            usable_for,
        });
    }
    if let (Some(AmountOrExpr::Expr(_)), Some(v)) = (&min_spend_written, &c.min_spend) {
        let (key, value) = ("min_spend", scalar_text(v));
        let want = "a decimal with `from_field`; use `min_spend_by_face_value`";
        d.at(src, v.pos(), Problem::BadAmount { key, value, want });
    }
    let amount_of = |w: Option<AmountOrExpr>| match w {
        Some(AmountOrExpr::Amount(a)) => Some(a),
        _ => None,
    };
    let min_spend = amount_of(min_spend_written);
    match (&c.face_value, &c.from_field) {
        (Some(_), None) => {
            let face_value = amount_of(face_written).unwrap_or_default();
            if let Some(count) = &c.count {
                at_most(count, "count", MAX_COUPON_COUNT, src, d);
            }
            if let Some(by) = &c.min_spend_by_face_value {
                let conflict = KeyConflict::MinSpendByFaceValue;
                d.at(src, by.pos(), Problem::ConflictingKeys(conflict));
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
                let problem = Problem::BadFieldType {
                    key: "from_field",
                    want: "a list of decimals such as `face_values`",
                    found: field.name().to_string(),
                };
                d.at(src, at, problem);
            }
            if let Some(count) = &c.count {
                d.at(
                    src,
                    count.pos(),
                    Problem::ConflictingKeys(KeyConflict::Count),
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
            d.at(src, c.pos(), Problem::BadCoupon);
            None
        }
    }
}

/// The minimum spend of each face value of a `from_field` coupon.
pub(super) fn min_spends_by_face_value(
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
            (Err(_), _) => {
                let problem = Problem::BadDecimal(format!("`{k}` is not a decimal"));
                d.at(src, by.pos(), problem);
            }
            (_, Err(e)) => d.at(src, v.pos(), Problem::BadDecimal(e)),
        }
    }
    by_value
}
