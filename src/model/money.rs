//! `Money`: a decimal amount of the ruleset's currency, parsed from strings and printed with
//! two decimals.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;

/// An amount of money. Parsed only from decimal strings, never from floats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money(pub Decimal);

impl Money {
    /// Parses a decimal string such as `"12"` or `"12.30"`.
    pub fn parse(text: &str) -> Result<Self, rust_decimal::Error> {
        Decimal::from_str(text.trim()).map(Money)
    }
}

/// The sum of amounts, saturating at the largest decimal: amounts come from input, and an
/// overflowing sum must not take the process down.
pub fn total<'a>(amounts: impl IntoIterator<Item = &'a Decimal>) -> Decimal {
    amounts
        .into_iter()
        .fold(Decimal::ZERO, |sum, a| sum.saturating_add(*a))
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Commercial rounding to cents, then whole units and cents as integers: a decision
        // line prints several amounts, and Decimal's own formatting is the slow part of it.
        let d = if self.0.scale() > 2 {
            self.0
                .round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero)
        } else {
            self.0
        };
        let cents = d.mantissa() * 10_i128.pow(2 - d.scale().min(2));
        let sign = if cents < 0 { "-" } else { "" };
        let cents = cents.unsigned_abs();
        write!(f, "{sign}{}.{:02}", cents / 100, cents % 100)
    }
}

impl From<Decimal> for Money {
    fn from(d: Decimal) -> Self {
        Money(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_two_decimals_and_round_trips() {
        for (text, shown) in [
            ("7", "7.00"),
            ("0.5", "0.50"),
            ("1234.50", "1234.50"),
            ("51.999", "52.00"),
            ("-1.5", "-1.50"),
            ("-0.004", "0.00"),
            ("0.125", "0.13"),
        ] {
            let m = Money::parse(text).unwrap();
            assert_eq!(m.to_string(), shown);
        }
        let m = Money::parse("123.45").unwrap();
        assert_eq!(Money::parse(&m.to_string()).unwrap(), m);
    }

    #[test]
    fn totals_saturate_instead_of_overflowing() {
        let huge = [Decimal::MAX, Decimal::MAX];
        assert_eq!(total(&huge), Decimal::MAX);
        assert_eq!(total(&[Decimal::ONE, Decimal::TWO]), Decimal::from(3));
    }

    #[test]
    fn rejects_non_numbers() {
        assert!(Money::parse("12,5").is_err());
        assert!(Money::parse("").is_err());
    }
}
