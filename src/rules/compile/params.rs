//! The types of a rule's `params` in scripts. A decimal written as a string is a decimal,
//! never a silent string: `threshold: "12.50"` compared with `event.amount` would otherwise
//! be false both ways and the rule would never fire.

use std::str::FromStr;

use rhai::Dynamic;
use rust_decimal::Decimal;

/// A string param as scripts see it: a plain decimal (`12.50`, `-3`, `0.5`: an optional
/// minus, digits with no leading zero, an optional fraction) is a `Decimal`; any other text
/// (`T00412`, `007`, `+5`, `1e3`) stays text, as codes with leading zeros are not amounts.
pub(super) fn text_param(s: &str) -> Dynamic {
    if is_plain_decimal(s) {
        if let Ok(d) = Decimal::from_str(s) {
            return Dynamic::from(d);
        }
    }
    Dynamic::from(s.to_string())
}

/// Whether a string param is a number, in scripts and expressions alike.
pub(super) fn is_plain_decimal(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    let (whole, fraction) = match digits.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (digits, None),
    };
    let all_digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    all_digits(whole)
        && (whole == "0" || !whole.starts_with('0'))
        && fraction.is_none_or(all_digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_decimals_are_decimals_other_text_stays_text() {
        for s in ["12.50", "75", "0", "0.5", "-3", "-0.25"] {
            let v = text_param(s);
            assert!(v.is::<Decimal>(), "{s}");
            assert_eq!(v.cast::<Decimal>().to_string(), s);
        }
        for s in [
            "T00412", "007", "+5", "1e3", "1.", ".5", "", "-", "12.50 ", "1_000",
        ] {
            assert!(text_param(s).is_string(), "{s}");
        }
    }
}
