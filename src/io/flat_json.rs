//! A fast path for the common event line: one flat JSON object whose values are strings
//! without escapes, lists of such strings, or `null`. It does in one scan what serde_json's
//! generic path does per token, and says `None` for anything else (escapes, numbers, nested
//! values, malformed text), which the full parser then reads or rejects with its message. So
//! it can only ever agree with the full parser, and a test holds it to that.

use std::borrow::Cow;

use serde::de::value::Error as DeError;

use super::event_json::{parse_amount, parse_at};
use crate::model::Event;

fn ws(b: &[u8], mut i: usize) -> usize {
    while let Some(c) = b.get(i) {
        if !matches!(c, b' ' | b'\t' | b'\n' | b'\r') {
            break;
        }
        i += 1;
    }
    i
}

/// A string starting at `b[*i] == '"'` with no escape or control character; moves past it.
fn string<'a>(line: &'a str, i: &mut usize) -> Option<&'a str> {
    let b = line.as_bytes();
    if b.get(*i) != Some(&b'"') {
        return None;
    }
    let start = *i + 1;
    let rest = b.get(start..)?;
    let len = rest
        .iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
    if rest.get(len) != Some(&b'"') {
        return None;
    }
    *i = start + len + 1;
    line.get(start..start + len)
}

/// A list of strings starting at `b[*i] == '['`; moves past it.
fn strings<'a>(line: &'a str, i: &mut usize) -> Option<Vec<&'a str>> {
    let b = line.as_bytes();
    *i = ws(b, *i + 1);
    let mut out = Vec::new();
    if b.get(*i) == Some(&b']') {
        *i += 1;
        return Some(out);
    }
    loop {
        out.push(string(line, i)?);
        *i = ws(b, *i);
        match b.get(*i)? {
            b',' => *i = ws(b, *i + 1),
            b']' => {
                *i += 1;
                return Some(out);
            }
            _ => return None,
        }
    }
}

enum Value<'a> {
    Text(&'a str),
    List(Vec<&'a str>),
}

/// Parses a flat event line, or says `None` if the line needs the full parser.
pub fn parse_flat(line: &str) -> Option<Event<'_>> {
    let b = line.as_bytes();
    let mut i = ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = ws(b, i + 1);
    let (mut id, mut kind, mut at, mut customer, mut wallet) = (None, None, None, None, None);
    let (mut card_product, mut card_role, mut merchant, mut amount, mut channel) =
        (None, None, None, None, None);
    let (mut coupons, mut face_values) = (None, None);
    let mut extra = Vec::new();
    if b.get(i) == Some(&b'}') {
        return None;
    }
    loop {
        let key = string(line, &mut i)?;
        i = ws(b, i);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = ws(b, i + 1);
        let value = match b.get(i)? {
            b'"' => Value::Text(string(line, &mut i)?),
            b'[' => Value::List(strings(line, &mut i)?),
            _ => return None,
        };
        match (key, value) {
            ("id", Value::Text(v)) => id = Some(v),
            ("type", Value::Text(v)) => kind = Some(v),
            ("at", Value::Text(v)) => at = Some(v),
            ("customer", Value::Text(v)) => customer = Some(v),
            ("wallet", Value::Text(v)) => wallet = Some(v),
            ("card_product", Value::Text(v)) => card_product = Some(v),
            ("card_role", Value::Text(v)) => card_role = Some(v),
            ("merchant", Value::Text(v)) => merchant = Some(v),
            ("amount", Value::Text(v)) => amount = Some(v),
            ("channel", Value::Text(v)) => channel = Some(v),
            ("coupons", Value::List(v)) => coupons = Some(v),
            ("face_values", Value::List(v)) => face_values = Some(v),
            (
                "id" | "type" | "at" | "customer" | "wallet" | "card_product" | "card_role"
                | "merchant" | "amount" | "channel" | "coupons" | "face_values",
                _,
            ) => return None,
            (k, Value::Text(v)) => {
                extra.push((Cow::Borrowed(k), serde_json::Value::String(v.to_string())))
            }
            (k, Value::List(v)) => extra.push((
                Cow::Borrowed(k),
                serde_json::Value::Array(
                    v.into_iter()
                        .map(|s| serde_json::Value::String(s.to_string()))
                        .collect(),
                ),
            )),
        }
        i = ws(b, i);
        match b.get(i)? {
            b',' => i = ws(b, i + 1),
            b'}' => break,
            _ => return None,
        }
    }
    if ws(b, i + 1) != b.len() {
        return None;
    }
    // The full parser's own readings of amounts and times, so the two cannot disagree.
    let decimal = |field: &str, t: &str| parse_amount::<DeError>(field, t).ok();
    Some(Event {
        id: Cow::Borrowed(id?),
        kind: Cow::Borrowed(kind?),
        at: parse_at::<DeError>(at?).ok()?,
        customer: Cow::Borrowed(customer?),
        wallet: Cow::Borrowed(wallet?),
        card_product: card_product.map(Cow::Borrowed),
        card_role: card_role.map(Cow::Borrowed),
        merchant: merchant.map(Cow::Borrowed),
        amount: match amount {
            Some(a) => Some(decimal("amount", a)?),
            None => None,
        },
        channel: channel.map(Cow::Borrowed),
        coupons: coupons.map(|v| v.into_iter().map(Cow::Borrowed).collect()),
        face_values: match face_values {
            Some(v) => Some(
                v.into_iter()
                    .map(|t| decimal("face_values", t))
                    .collect::<Option<Vec<_>>>()?,
            ),
            None => None,
        },
        extra,
    })
}
