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

impl Money {
    /// The amount rounded to cents (commercially): whether it is below zero, its whole
    /// units, and its cents. Integers, because Decimal's own formatting was the slow part
    /// of writing a decision line.
    fn parts(&self) -> (bool, u128, u8) {
        let d = if self.0.scale() > 2 {
            self.0
                .round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero)
        } else {
            self.0
        };
        let cents = d.mantissa() * 10_i128.pow(2 - d.scale().min(2));
        let abs = cents.unsigned_abs();
        // In 64 bits when it fits, as amounts do: dividing a u128 is a library call.
        let (units, cents_part) = match u64::try_from(abs) {
            Ok(a) => (u128::from(a / 100), (a % 100) as u8),
            Err(_) => (abs / 100, (abs % 100) as u8),
        };
        (cents < 0, units, cents_part)
    }

    /// Appends the amount as `Display` prints it.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let (negative, units, cents) = self.parts();
        if negative {
            out.push(b'-');
        }
        let mut digits = itoa::Buffer::new();
        let units = match u64::try_from(units) {
            Ok(u) => digits.format(u),
            Err(_) => digits.format(units),
        };
        out.extend_from_slice(units.as_bytes());
        out.extend_from_slice(&[b'.', b'0' + cents / 10, b'0' + cents % 10]);
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (negative, units, cents) = self.parts();
        let sign = if negative { "-" } else { "" };
        write!(f, "{sign}{units}.{cents:02}")
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
            // Past 64 bits of cents, and at the edge of them.
            (
                "79228162514264337593543950335",
                "79228162514264337593543950335.00",
            ),
            ("184467440737095516.15", "184467440737095516.15"),
            ("184467440737095516.16", "184467440737095516.16"),
            ("-98765432109876543210.99", "-98765432109876543210.99"),
        ] {
            let m = Money::parse(text).unwrap();
            assert_eq!(m.to_string(), shown);
            let mut written = Vec::new();
            m.write_to(&mut written);
            assert_eq!(written, shown.as_bytes());
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
