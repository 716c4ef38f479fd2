//! Working-day calendars: weekend days and holidays, from a calendar rule file.

use std::collections::BTreeSet;

use chrono::{Datelike, Days, NaiveDate, Weekday};

/// A compiled working-day calendar.
#[derive(Debug, Clone)]
pub struct Calendar {
    pub id: String,
    /// Bit `d` set when weekday `d` (Monday = 0) is a weekend day.
    weekend: u8,
    holidays: BTreeSet<NaiveDate>,
}

impl Calendar {
    /// A calendar with the given weekend days and holidays.
    pub fn new(
        id: String,
        weekend: &[Weekday],
        holidays: impl IntoIterator<Item = NaiveDate>,
    ) -> Self {
        let weekend = weekend
            .iter()
            .fold(0u8, |m, d| m | (1 << d.num_days_from_monday()));
        Calendar {
            id,
            weekend,
            holidays: holidays.into_iter().collect(),
        }
    }

    /// Whether `date` is a working day: not a weekend day, not a holiday.
    pub fn is_working_day(&self, date: NaiveDate) -> bool {
        self.weekend & (1 << date.weekday().num_days_from_monday()) == 0
            && !self.holidays.contains(&date)
    }

    /// How many days of the week are weekend days.
    pub fn weekend_days(&self) -> u32 {
        self.weekend.count_ones()
    }

    /// Whether some day of `year` is a working day.
    pub fn has_working_day_in(&self, year: i32) -> bool {
        let Some(first) = NaiveDate::from_ymd_opt(year, 1, 1) else {
            return false;
        };
        first
            .iter_days()
            .take_while(|d| d.year() == year)
            .any(|d| self.is_working_day(d))
    }

    /// The `n`th working day after `date` (`date` itself never counts). `None` only past the
    /// end of the representable calendar.
    pub fn working_days_after(&self, date: NaiveDate, n: u32) -> Option<NaiveDate> {
        let mut day = date;
        let mut left = n;
        while left > 0 {
            day = day.checked_add_days(Days::new(1))?;
            if self.is_working_day(day) {
                left -= 1;
            }
        }
        Some(day)
    }
}

/// Parses a weekday name such as `saturday` or `sat`.
pub fn parse_weekday(name: &str) -> Option<Weekday> {
    name.parse::<Weekday>().ok()
}

/// A weekday as rules and the engine spell it: `monday` to `sunday`.
pub fn weekday_name(day: Weekday) -> &'static str {
    match day {
        Weekday::Mon => "monday",
        Weekday::Tue => "tuesday",
        Weekday::Wed => "wednesday",
        Weekday::Thu => "thursday",
        Weekday::Fri => "friday",
        Weekday::Sat => "saturday",
        Weekday::Sun => "sunday",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn skips_weekends_and_holidays() {
        let cal = Calendar::new(
            "cal".into(),
            &[Weekday::Sat, Weekday::Sun],
            [d("2031-12-24"), d("2031-12-25")],
        );
        assert_eq!(
            cal.working_days_after(d("2031-12-22"), 2),
            Some(d("2031-12-26"))
        );
        assert_eq!(
            cal.working_days_after(d("2031-12-19"), 2),
            Some(d("2031-12-23"))
        );
        assert_eq!(
            cal.working_days_after(d("2031-12-20"), 0),
            Some(d("2031-12-20"))
        );
        assert!(!cal.is_working_day(d("2031-12-24")));
        assert!(cal.has_working_day_in(2031));
        assert_eq!(cal.weekend_days(), 2);
        assert!(cal.is_working_day(d("2031-12-23")));
    }
}
