//! The most each number of a rule file may be. Past these a number `check` would otherwise
//! accept takes the process down or stalls it: a coupon `count` is allocated per event, a
//! credit date is found by walking days one by one, a script's depth is the native stack's.
//! Each maximum is far above any promotion's need and is documented in docs/check.md.

use super::*;

/// Coupons one grant may issue per event.
pub(super) const MAX_COUPON_COUNT: u64 = 100;
/// Days a rolling window may span (ten years): a tally sums one counter per day of it.
pub(super) const MAX_ROLLING_DAYS: u64 = 3_660;
/// Working days a credit date may be after the event (about four years of working days).
pub(super) const MAX_WORKING_DAYS_AFTER: u64 = 1_000;
/// Calendar days a credit date may be after the event (ten years).
pub(super) const MAX_DAYS_AFTER: u64 = 3_660;
/// Days a coupon may stay valid (ten years).
pub(super) const MAX_VALID_DAYS: u64 = 3_660;
/// A script run's operations: ten times the default, as each event may pay them all.
pub(super) const MAX_OPERATIONS: u64 = 1_000_000;
/// Nested function calls of a script: each is native stack.
pub(super) const MAX_CALL_DEPTH: u64 = 64;
/// Nested expressions of a script: each is native stack when it is parsed.
pub(super) const MAX_EXPR_DEPTH: u64 = 128;
/// Characters of a script's text, items of its arrays, entries of its maps.
pub(super) const MAX_SCRIPT_SIZE: u64 = 1_000_000;

/// Whether `value` of `key` is at most `max`; reports it at `at` when it is more.
pub(super) fn at_most<T: Copy + TryInto<u64>>(
    value: &Sp<T>,
    key: &'static str,
    max: u64,
    src: &SourceFile,
    d: &mut Diagnostics,
) -> bool {
    let value_u64 = (**value).try_into().unwrap_or(u64::MAX);
    if value_u64 <= max {
        return true;
    }
    let problem = Problem::TooLarge {
        key,
        value: value_u64,
        max,
    };
    d.at(src, value.pos(), problem);
    false
}

/// The manifest's script limits, each at most its maximum.
pub(super) fn check_script_limits(raw: &RawScriptLimits, src: &SourceFile, d: &mut Diagnostics) {
    let sizes = [
        (&raw.call_depth, "call_depth", MAX_CALL_DEPTH),
        (&raw.expr_depth, "expr_depth", MAX_EXPR_DEPTH),
        (&raw.string_len, "string_len", MAX_SCRIPT_SIZE),
        (&raw.array_len, "array_len", MAX_SCRIPT_SIZE),
        (&raw.map_len, "map_len", MAX_SCRIPT_SIZE),
    ];
    for (value, key, max) in sizes {
        if let Some(v) = value {
            at_most(v, key, max, src, d);
        }
    }
    if let Some(v) = &raw.operations {
        at_most(v, "operations", MAX_OPERATIONS, src, d);
    }
}

/// Reports a calendar that has no working day: a weekend of all seven days, or a year its
/// holidays fill (every other day being a weekend day). Working days would then be looked
/// for day by day until the end of the calendar's dates.
pub(super) fn check_working_days(
    cal: &Parsed<RawCalendar>,
    calendar: &Calendar,
    d: &mut Diagnostics,
) {
    let all_week = calendar.weekend_days() == 7;
    if all_week {
        let at = cal.raw.weekend.first().map_or(Pos::default(), |w| w.pos());
        let problem = Problem::NoWorkingDay {
            calendar: calendar.id.clone(),
            year: None,
        };
        d.at(&cal.src, at, problem);
        return;
    }
    let mut reported = BTreeSet::new();
    for h in &cal.raw.holidays {
        let Ok(day) = parse_date(&h.date) else {
            continue;
        };
        let year = chrono::Datelike::year(&day);
        if !reported.contains(&year) && !calendar.has_working_day_in(year) {
            reported.insert(year);
            let problem = Problem::NoWorkingDay {
                calendar: calendar.id.clone(),
                year: Some(year),
            };
            d.at(&cal.src, h.date.pos(), problem);
        }
    }
}
