//! Dating events in the ruleset's zone, quickly for streams that come roughly in time order.

use chrono::{NaiveDate, NaiveTime};

use crate::rules::ruleset::WindowDay;

/// The ruleset zone's offset for the last quarter hour of UTC seen: zones change offset only
/// on quarter hours, and streams come roughly in time order, so the zone's transition table
/// is searched about once per quarter hour of events rather than once per event. The local
/// date of the last local day seen is kept too, as working it out from a day number is
/// most of the rest.
#[derive(Debug)]
pub struct LocalDates {
    quarter: i64,
    offset: i64,
    /// Local days since the Unix epoch of `date`.
    day: i64,
    date: NaiveDate,
    /// `date` as counters' windows bucket it.
    window_day: WindowDay,
}

impl Default for LocalDates {
    fn default() -> Self {
        LocalDates {
            quarter: i64::MIN,
            offset: 0,
            day: i64::MIN,
            date: NaiveDate::MIN,
            window_day: NaiveDate::MIN.into(),
        }
    }
}

impl LocalDates {
    /// The date of `at` in `zone` (also as windows bucket it) and its time of day.
    pub fn local(
        &mut self,
        zone: &chrono_tz::Tz,
        at: &chrono::DateTime<chrono::FixedOffset>,
    ) -> (NaiveDate, WindowDay, NaiveTime) {
        use chrono::{Offset, TimeZone};
        let ts = at.timestamp();
        let quarter = ts.div_euclid(900);
        if quarter != self.quarter {
            self.offset = i64::from(
                zone.offset_from_utc_datetime(&at.naive_utc())
                    .fix()
                    .local_minus_utc(),
            );
            self.quarter = quarter;
        }
        let local = ts + self.offset;
        let day = local.div_euclid(86_400);
        if day != self.day {
            match chrono::DateTime::from_timestamp(local, 0) {
                Some(d) => {
                    self.date = d.date_naive();
                    self.window_day = self.date.into();
                    self.day = day;
                }
                None => {
                    let there = at.with_timezone(zone);
                    let date = there.date_naive();
                    return (date, date.into(), there.time());
                }
            }
        }
        // Zone offsets are whole seconds, so the fraction of a second is UTC's.
        let second = u32::try_from(local.rem_euclid(86_400)).unwrap_or_default();
        let time =
            NaiveTime::from_num_seconds_from_midnight_opt(second, at.timestamp_subsec_nanos())
                .unwrap_or_else(|| at.with_timezone(zone).time());
        (self.date, self.window_day, time)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_dates_and_times_match_chrono_back_and_forth_across_midnights_and_zone_changes() {
        let zones: [chrono_tz::Tz; 3] = [
            chrono_tz::Asia::Hong_Kong,
            chrono_tz::Europe::London,
            chrono_tz::America::St_Johns,
        ];
        for zone in zones {
            let mut cache = LocalDates::default();
            // Around the end of March (London's change) and steps of odd sizes both ways.
            let mut ts = chrono::DateTime::parse_from_rfc3339("2031-03-29T20:00:00+00:00")
                .unwrap()
                .timestamp();
            for step in (0..400).map(|i| if i % 7 == 3 { -5_000 } else { 1_789 + i }) {
                ts += step;
                let offset = chrono::FixedOffset::east_opt(if step % 2 == 0 { 0 } else { 3600 });
                let nanos = u32::try_from(step.rem_euclid(1_000)).unwrap() * 1_000_000;
                let at = chrono::DateTime::from_timestamp(ts, nanos)
                    .unwrap()
                    .with_timezone(&offset.unwrap());
                let there = at.with_timezone(&zone);
                let date = there.date_naive();
                assert_eq!(
                    cache.local(&zone, &at),
                    (date, WindowDay::from(date), there.time()),
                    "{zone} {at}"
                );
            }
        }
    }
}
