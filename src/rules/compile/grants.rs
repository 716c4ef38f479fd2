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

/// An amount of money a rule writes, reported at its place when it is not a decimal or has
/// the wrong sign.
pub(super) fn amount(
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

pub(super) fn compile_grant(
    g: &RawGrant,
    src: &SourceFile,
    ctx: &Context,
    d: &mut Diagnostics,
) -> Grant {
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
pub(super) fn credit_after(
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
pub(super) fn compile_coupon(
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
