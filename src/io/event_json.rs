//! Events from JSON lines. Strings borrow from the line unless they hold escapes; unknown
//! fields are kept as JSON values.

use std::borrow::Cow;
use std::fmt;

use chrono::DateTime;
use rust_decimal::Decimal;
use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};

use super::flat_json::plain;
use crate::model::Event;

/// A string that borrows from the input where it can.
#[derive(serde::Deserialize)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

/// Parses one JSON line into an event; the error says what is wrong and where. The common
/// flat line takes a fast path; anything else goes through serde_json.
pub fn parse_event(line: &str) -> Result<Event<'_>, String> {
    match super::flat_json::parse_flat(line) {
        Some(event) => Ok(event),
        None => parse_event_full(line),
    }
}

/// Parses one JSON line with serde_json alone: the reference the fast path must agree with.
pub fn parse_event_full(line: &str) -> Result<Event<'_>, String> {
    serde_json::from_str::<Event<'_>>(line).map_err(|e| e.to_string())
}

/// Parses a decimal amount, refusing anything but a plain decimal string: digits, with an
/// optional point and digits after it, read exactly (no sign, exponent, separator, space or
/// rounding). How many decimals the currency allows is admission's check.
pub fn parse_amount<E: de::Error>(field: &str, text: &str) -> Result<Decimal, E> {
    if let Some(amount) = crate::model::digits::amount(text) {
        return Ok(amount);
    }
    crate::model::digits::plain_amount(text).ok_or_else(|| {
        E::custom(format!(
            "bad `{field}`: `{text}` is not a decimal amount (digits, with an optional point and digits after it)"
        ))
    })
}

/// The field a parse error is about: "missing field `id`", "bad `at`: ...".
pub fn named_field(message: &str) -> Option<&str> {
    let rest = message
        .strip_prefix("missing field `")
        .or_else(|| message.strip_prefix("bad `"))?;
    rest.split('`').next().filter(|f| !f.is_empty())
}

/// Parses an RFC 3339 timestamp with its offset.
pub fn parse_at<E: de::Error>(text: &str) -> Result<chrono::DateTime<chrono::FixedOffset>, E> {
    // Values rarely have spaces around them: the common shape is tried before trimming.
    if let Some(at) = crate::model::digits::timestamp(text) {
        return Ok(at);
    }
    let text = text.trim();
    DateTime::parse_from_rfc3339(text).map_err(|_| {
        E::custom(format!(
            "bad `at`: `{text}` is not an RFC 3339 timestamp with an offset"
        ))
    })
}

impl<'de> Deserialize<'de> for Event<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(EventVisitor)
    }
}

struct EventVisitor;

impl<'de> Visitor<'de> for EventVisitor {
    type Value = Event<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an event object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Event<'de>, A::Error> {
        let mut id = None;
        let mut kind = None;
        let mut at = None;
        let mut customer = None;
        let mut wallet = None;
        let mut ev_card_product = None;
        let mut card_role = None;
        let mut merchant = None;
        let mut amount = None;
        let mut channel = None;
        let mut coupons = None;
        let mut face_values = None;
        let mut extra = Vec::new();
        let text = |t: Option<Text<'de>>| t.map(|t| t.0);
        while let Some(key) = map.next_key::<Text<'de>>()? {
            match key.0.as_ref() {
                "id" => id = text(map.next_value()?),
                "type" => kind = text(map.next_value()?),
                "at" => {
                    at = match map.next_value::<Option<Text<'de>>>()? {
                        Some(t) => Some(parse_at(&t.0)?),
                        None => None,
                    }
                }
                "customer" => customer = text(map.next_value()?),
                "wallet" => wallet = text(map.next_value()?),
                "card_product" => ev_card_product = text(map.next_value()?),
                "card_role" => card_role = text(map.next_value()?),
                "merchant" => merchant = text(map.next_value()?),
                "channel" => channel = text(map.next_value()?),
                "amount" => {
                    amount = match map.next_value::<Option<Text<'de>>>()? {
                        Some(t) => Some(parse_amount("amount", &t.0)?),
                        None => None,
                    }
                }
                "coupons" => {
                    coupons = map
                        .next_value::<Option<Vec<Text<'de>>>>()?
                        .map(|v| v.into_iter().map(|t| t.0).collect())
                }
                "face_values" => {
                    face_values = match map.next_value::<Option<Vec<Text<'de>>>>()? {
                        Some(v) => Some(
                            v.iter()
                                .map(|t| parse_amount("face_values", &t.0))
                                .collect::<Result<Vec<_>, _>>()?,
                        ),
                        None => None,
                    }
                }
                _ => extra.push((key.0, map.next_value::<serde_json::Value>()?)),
            }
        }
        let id: Cow<'de, str> = id.ok_or_else(|| de::Error::missing_field("id"))?;
        let customer: Cow<'de, str> =
            customer.ok_or_else(|| de::Error::missing_field("customer"))?;
        let wallet: Cow<'de, str> = wallet.ok_or_else(|| de::Error::missing_field("wallet"))?;
        let plain = [&id, &customer, &wallet].iter().all(|s| plain(s));
        Ok(Event {
            id,
            kind: kind.ok_or_else(|| de::Error::missing_field("type"))?,
            at: at.ok_or_else(|| de::Error::missing_field("at"))?,
            customer,
            wallet,
            card_product: ev_card_product,
            card_role,
            merchant,
            amount,
            channel,
            coupons,
            face_values,
            extra,
            plain,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn borrows_plain_strings_and_keeps_extra_fields() {
        let line = r#"{"id":"E1","type":"sale","at":"2031-03-04T10:00:00+08:00","customer":"C1","wallet":"W1","amount":"12.50","coupons":["a","b"],"mcc":"tx-9","n":3}"#;
        let ev = parse_event(line).unwrap();
        assert!(matches!(ev.id, Cow::Borrowed("E1")));
        assert_eq!(ev.amount, Some(Decimal::new(1250, 2)));
        assert_eq!(ev.coupons.as_ref().map(Vec::len), Some(2));
        assert_eq!(ev.extra.len(), 2);
        assert_eq!(
            ev.text(&crate::model::Field::from_name("mcc")),
            Some("tx-9")
        );
    }

    #[test]
    fn rejects_float_amounts_bad_dates_and_missing_fields() {
        let base = r#""type":"sale","customer":"C1","wallet":"W1""#;
        let e = parse_event(&format!(
            r#"{{"id":"E1",{base},"at":"2031-03-04T10:00:00Z","amount":12.5}}"#
        ))
        .unwrap_err();
        assert!(e.contains("invalid type"), "{e}");
        let e =
            parse_event(&format!(r#"{{"id":"E1",{base},"at":"2031-03-04 10:00"}}"#)).unwrap_err();
        assert!(e.contains("RFC 3339"), "{e}");
        let e = parse_event(&format!(r#"{{{base},"at":"2031-03-04T10:00:00Z"}}"#)).unwrap_err();
        assert!(e.contains("missing field `id`"), "{e}");
        let e = parse_event(&format!(
            r#"{{"id":"E1",{base},"at":"2031-03-04T10:00:00Z","amount":"1O"}}"#
        ))
        .unwrap_err();
        assert!(e.contains("not a decimal"), "{e}");
    }
}
