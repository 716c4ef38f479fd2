//! Timestamps, amounts and dates in the shapes events and snapshots nearly always give them
//! (`2019-12-01T00:00:21+08:00`, `…Z`, with or without a fraction of a second; `593.00`;
//! `2019-12-01`), read digit by digit. chrono's general parser was a twelfth of the reading thread and
//! rust_decimal's a thirtieth; anything outside those shapes (a lowercase `t`, a space, a
//! leap second, ten fraction digits; a sign, an exponent, nineteen digits) says `None` here
//! and goes to them, so the two can only agree.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveTime};
use rust_decimal::Decimal;

/// The number written by `N` ASCII digits.
fn number<const N: usize>(b: &[u8]) -> Option<u32> {
    let digits: &[u8; N] = b.get(..N)?.try_into().ok()?;
    digits.iter().try_fold(0u32, |n, &c| {
        c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
    })
}

/// `text` as a timestamp, when it has the common shape.
pub fn timestamp(text: &str) -> Option<DateTime<FixedOffset>> {
    match timestamp_prefix(text.as_bytes()) {
        Some((at, len)) if len == text.len() => Some(at),
        _ => None,
    }
}

std::thread_local! {
    /// The date part (`YYYY-MM-DD`) of the last timestamp read on this thread, and its date:
    /// events of a stream mostly fall on the day of the one before.
    static LAST_DATE: std::cell::Cell<([u8; 10], NaiveDate)> =
        const { std::cell::Cell::new(([0; 10], NaiveDate::MIN)) };
}

/// The date written as `YYYY-MM-DD` at the start of `b`.
fn date_part(b: &[u8]) -> Option<NaiveDate> {
    let text: [u8; 10] = b.get(..10)?.try_into().ok()?;
    let (last, date) = LAST_DATE.get();
    if last == text {
        return Some(date);
    }
    let date = NaiveDate::from_ymd_opt(
        number::<4>(b)? as i32,
        number::<2>(b.get(5..)?)?,
        number::<2>(b.get(8..)?)?,
    )?;
    LAST_DATE.set((text, date));
    Some(date)
}

/// A timestamp of the common shape at the start of `b`, and its length in bytes: every byte
/// of it is a digit or one of `-T:.+Z`, so a JSON string holding it needs no escape check.
pub fn timestamp_prefix(b: &[u8]) -> Option<(DateTime<FixedOffset>, usize)> {
    let at = |i: usize, c: u8| b.get(i) == Some(&c);
    if !(at(4, b'-') && at(7, b'-') && at(10, b'T') && at(13, b':') && at(16, b':')) {
        return None;
    }
    let date = date_part(b)?;
    let (hour, minute, second) = (
        number::<2>(b.get(11..)?)?,
        number::<2>(b.get(14..)?)?,
        number::<2>(b.get(17..)?)?,
    );
    let mut i = 19;
    let mut nano = 0;
    if at(i, b'.') {
        let digits = b.get(i + 1..)?.iter().take_while(|c| c.is_ascii_digit());
        let count = digits.clone().count();
        if !(1..=9).contains(&count) {
            return None;
        }
        nano = digits.fold(0, |n, &c| n * 10 + u32::from(c - b'0')) * 10u32.pow(9 - count as u32);
        i += 1 + count;
    }
    // A leap second (60) has chrono's own rules: leave it to chrono.
    if second > 59 {
        return None;
    }
    let local_seconds = (hour * 3600 + minute * 60 + second) as i32;
    let (offset, len) = match b.get(i..)? {
        [b'Z', ..] => (0, i + 1),
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2, ..] => {
            let hours = number::<2>(&[*h1, *h2])?;
            let minutes = number::<2>(&[*m1, *m2])?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            let seconds = (hours * 3600 + minutes * 60) as i32;
            let offset = if *sign == b'-' { -seconds } else { seconds };
            (offset, i + 6)
        }
        _ => return None,
    };
    let zone = FixedOffset::east_opt(offset)?;
    if hour > 23 || minute > 59 {
        return None;
    }
    // The offset moves the time by less than a day: the UTC date is the local date, the day
    // before or the day after, and chrono's general date arithmetic is not needed.
    let utc_seconds = local_seconds - offset;
    let (utc_date, utc_seconds) = if utc_seconds < 0 {
        (date.pred_opt()?, utc_seconds + 86_400)
    } else if utc_seconds >= 86_400 {
        (date.succ_opt()?, utc_seconds - 86_400)
    } else {
        (date, utc_seconds)
    };
    let time =
        NaiveTime::from_num_seconds_from_midnight_opt(u32::try_from(utc_seconds).ok()?, nano)?;
    Some((
        DateTime::from_naive_utc_and_offset(utc_date.and_time(time), zone),
        len,
    ))
}

/// `text` as a `%Y-%m-%d` date, as chrono reads that format: the common ten-byte shape
/// directly, anything else by chrono (a format string is parsed on every call there).
pub fn date(text: &str) -> Option<NaiveDate> {
    let b = text.as_bytes();
    if b.len() == 10 && b.get(4) == Some(&b'-') && b.get(7) == Some(&b'-') {
        if let (Some(year), Some(month), Some(day)) = (
            number::<4>(b),
            b.get(5..).and_then(number::<2>),
            b.get(8..).and_then(number::<2>),
        ) {
            return NaiveDate::from_ymd_opt(year as i32, month, day);
        }
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()
}

/// `text` as a decimal, when it is digits with at most one point between digits, eighteen
/// digits at most: the mantissa fits an `i64`, and the scale is the digits after the point,
/// as rust_decimal keeps it.
pub fn amount(text: &str) -> Option<Decimal> {
    let b = text.as_bytes();
    if b.is_empty() || b.len() > 19 {
        return None;
    }
    let (mut mantissa, mut point) = (0i64, None);
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'0'..=b'9' => mantissa = mantissa.checked_mul(10)?.checked_add(i64::from(c - b'0'))?,
            b'.' if point.is_none() && i > 0 && i + 1 < b.len() => point = Some(i),
            _ => return None,
        }
    }
    let scale = point.map_or(0, |p| b.len() - p - 1);
    // Eighteen digits at most, as the fast path promises.
    if b.len() - usize::from(point.is_some()) > 18 {
        return None;
    }
    Some(Decimal::new(mantissa, scale as u32))
}

/// `text` as a decimal when it is a plain decimal string (digits, with an optional point
/// between digits) that `Decimal` holds exactly; `None` for anything else: a sign, an
/// exponent, separators, spaces, more digits than `Decimal` keeps (it would round them) or
/// a value past its range.
pub fn plain_amount(text: &str) -> Option<Decimal> {
    let b = text.as_bytes();
    let point = b.iter().position(|&c| c == b'.');
    let (int, frac) = match point {
        Some(p) => (b.get(..p)?, b.get(p + 1..)?),
        None => (b, &b""[..]),
    };
    let digits = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_digit);
    if !digits(int) || (point.is_some() && !digits(frac)) {
        return None;
    }
    let d = Decimal::from_str_exact(text).ok()?;
    (d.scale() as usize == frac.len()).then_some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_read_as_chrono_reads_them() {
        for t in [
            "2019-12-01",
            "2020-02-29",
            "2019-02-29",
            "2019-13-01",
            "2019-00-10",
            "0000-01-01",
            "9999-12-31",
            "2019-1-5",
            "2019-01-5",
            "+2019-01-05",
            "2019/01/05",
            "2019-01-05 ",
            "x019-01-05",
            "",
            "12019-01-05",
            "2019-12-01T00:00:00Z",
        ] {
            assert_eq!(
                date(t),
                NaiveDate::parse_from_str(t, "%Y-%m-%d").ok(),
                "{t}"
            );
        }
    }

    #[test]
    fn amounts_read_as_rust_decimal_reads_them() {
        let answered = [
            "0",
            "7",
            "593.00",
            "50.99",
            "007.50",
            "0.000000000000001",
            "123456789012345678",
            "12345678901234567.8",
            "1.5",
            "160.00",
        ];
        let deferred = [
            "",
            ".",
            ".5",
            "5.",
            "-1.00",
            "+1",
            "1e3",
            "1_000",
            " 1.00",
            "1.00 ",
            "1.2.3",
            "1234567890123456789",
            "12345678901234567.89",
            "١٢",
            "0x10",
        ];
        for t in answered {
            let ours = amount(t).unwrap_or_else(|| panic!("{t} went to rust_decimal"));
            let theirs: Decimal = t.parse().unwrap();
            assert_eq!(ours.to_string(), theirs.to_string(), "{t}");
            assert_eq!(ours.scale(), theirs.scale(), "{t}");
        }
        for t in deferred {
            assert_eq!(amount(t), None, "{t}");
        }
    }

    #[test]
    fn plain_amounts_are_digits_with_an_optional_point_read_exactly() {
        for (t, ok) in [
            ("0", true),
            ("175", true),
            ("007.50", true),
            ("1234567890123456789.25", true),
            ("159.9999999999999999999999999999", false),
            ("99999999999999999999999999999999", false),
            ("-5", false),
            ("+200", false),
            ("1e3", false),
            ("1.6e2", false),
            ("1_6_0", false),
            (".5", false),
            ("200.", false),
            (" 175 ", false),
            ("1.2.3", false),
            ("", false),
            (".", false),
            ("١٢", false),
        ] {
            let got = plain_amount(t);
            assert_eq!(got.is_some(), ok, "{t}: {got:?}");
            if let Some(d) = got {
                let theirs: Decimal = t.parse().unwrap();
                assert_eq!((d, d.scale()), (theirs, theirs.scale()), "{t}");
            }
        }
    }

    #[test]
    fn agrees_with_chrono_wherever_it_answers() {
        let texts: Vec<String> = [
            "2019-12-01T00:00:21+08:00",
            "2019-11-30T16:03:05Z",
            "2020-02-29T23:59:59-00:00",
            "2019-02-29T10:00:00Z",
            "2019-12-01T24:00:00Z",
            "2019-12-01T23:60:00Z",
            "2019-12-01T23:59:60Z",
            "2019-12-01T23:59:59.5+05:30",
            "2019-12-01T23:59:59.123456789-09:45",
            "2019-12-01T23:59:59.1234567891Z",
            "2019-12-01T23:59:59.Z",
            "2019-12-01t23:59:59Z",
            "2019-12-01 23:59:59Z",
            "2019-12-01T23:59:59z",
            "2019-12-01T23:59:59+24:00",
            "2019-12-01T23:59:59+23:59",
            "2019-12-01T23:59:59+08:60",
            "2019-12-01T23:59:59+0800",
            "2019-12-01T23:59:59",
            "2019-12-01T23:59:59+08:00 ",
            "0000-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59-01:00",
            "2019-13-01T00:00:00Z",
            "2019-00-10T00:00:00Z",
            "20x9-12-01T00:00:00Z",
            "2019-12-01T0a:00:00Z",
            "+2019-12-01T00:00:00Z",
            "",
        ]
        .map(String::from)
        .to_vec();
        let mut answered = 0;
        for t in &texts {
            let chrono = DateTime::parse_from_rfc3339(t).ok();
            if let Some(fast) = timestamp(t) {
                answered += 1;
                assert_eq!(Some(fast), chrono, "{t}");
                assert_eq!(Some(*fast.offset()), chrono.map(|c| *c.offset()), "{t}");
            }
        }
        assert_eq!(answered, 8);
        // In the common shape it answers exactly when chrono does: every month's last days,
        // offsets either side of zero, with and without fractions.
        for month in 1..=12 {
            for day in [28, 29, 30, 31] {
                for (time, sign, fraction) in [
                    ("12:34:56", '+', ".7"),
                    ("12:34:56", '-', ""),
                    ("12:34:56", '+', ".000000001"),
                    ("00:00:00", '+', ""),
                    ("00:00:00", '-', ".5"),
                    ("23:59:59", '-', ".999999999"),
                    ("23:59:59", '+', ""),
                    ("24:00:00", '+', ""),
                ] {
                    let t = format!(
                        "2024-{month:02}-{day:02}T{time}{fraction}{sign}{:02}:{:02}",
                        month * 2 - 1,
                        day + month
                    );
                    let chrono = DateTime::parse_from_rfc3339(&t).ok();
                    assert_eq!(timestamp(&t), chrono, "{t}");
                    assert_eq!(
                        timestamp(&t).map(|f| *f.offset()),
                        chrono.map(|c| *c.offset())
                    );
                }
            }
        }
    }

    #[test]
    fn the_last_date_read_is_remembered_without_changing_any_answer() {
        // Alternating days, an impossible date between two readings of the same day, and
        // the same text as a prefix of a longer string.
        let texts = [
            "2031-01-02T03:04:05Z",
            "2031-01-02T23:59:59+08:00",
            "2031-01-03T00:00:00-01:00",
            "2031-01-02T12:00:00Z",
            "2031-02-29T12:00:00Z",
            "2031-01-02T12:00:00Z",
            "2031-02-28T12:00:00Z",
        ];
        for t in texts.iter().chain(texts.iter().rev()) {
            assert_eq!(timestamp(t), DateTime::parse_from_rfc3339(t).ok(), "{t}");
            let quoted = format!("{t}\",\"customer\"");
            let prefix = timestamp_prefix(quoted.as_bytes());
            assert_eq!(prefix.map(|(at, _)| at), timestamp(t), "{t}");
            assert!(prefix.is_none_or(|(_, len)| len == t.len()), "{t}");
        }
    }
}
