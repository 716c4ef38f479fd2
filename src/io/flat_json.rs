//! A fast path for the common event line: one flat JSON object whose values are strings
//! without escapes, lists of such strings, or `null`. It does in one scan what serde_json's
//! generic path does per token, and says `None` for anything else (escapes, numbers, nested
//! values, a field given twice, malformed text), which the full parser then reads or rejects
//! with its message. So it can only ever agree with the full parser, and a test holds it to
//! that.

use std::borrow::Cow;

use serde::de::value::Error as DeError;

use chrono::{DateTime, FixedOffset};

use super::event_json::{parse_amount, parse_at};
use crate::model::digits::timestamp_prefix;
use crate::model::Event;

pub(super) fn ws(b: &[u8], mut i: usize) -> usize {
    while let Some(c) = b.get(i) {
        if !matches!(c, b' ' | b'\t' | b'\n' | b'\r') {
            break;
        }
        i += 1;
    }
    i
}

/// Flags, in each byte's high bit, the bytes of a little-endian word that are a quote, a
/// backslash or below 0x20. Borrows only carry upwards, so the lowest flag (the first byte)
/// is always a true one.
fn flags(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below = |w: u64, n: u8| w.wrapping_sub(ONES * u64::from(n)) & !w;
    (below(w ^ (ONES * u64::from(b'"')), 1)
        | below(w ^ (ONES * u64::from(b'\\')), 1)
        | below(w, 0x20))
        & HIGH
}

/// The index of the first `"`, `\\` or control character in `b`, eight bytes at a time: the
/// byte-at-a-time search was the bulk of parsing a line.
pub(super) fn special(b: &[u8]) -> Option<usize> {
    special_from(b, 0)
}

/// `special` from `b[at]` on, as an index into `b`. Inlined where strings are read: a line's
/// strings are short, so the call and the set-up of a word iterator cost as much as the search.
#[inline(always)]
fn special_from(b: &[u8], mut at: usize) -> Option<usize> {
    while let Some(word) = b.get(at..).and_then(<[u8]>::first_chunk::<8>) {
        let found = flags(u64::from_le_bytes(*word));
        if found != 0 {
            return Some(at + found.trailing_zeros() as usize / 8);
        }
        at += 8;
    }
    // The last few bytes of the text, one at a time: a call to `memcpy` to pad them into a
    // word cost more than the search.
    let tail = b.get(at..)?;
    let found = tail
        .iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
    Some(at + found)
}

/// Whether `s` goes into a JSON string as it is: no quote, backslash or control character.
pub(super) fn plain(s: &str) -> bool {
    special(s.as_bytes()).is_none()
}

/// A string starting at `b[*i] == '"'` with no escape or control character; moves past it.
#[inline]
pub(super) fn string<'a>(line: &'a str, i: &mut usize) -> Option<&'a str> {
    let b = line.as_bytes();
    if b.get(*i) != Some(&b'"') {
        return None;
    }
    let start = *i + 1;
    let end = special_from(b, start)?;
    if b.get(end) != Some(&b'"') {
        return None;
    }
    *i = end + 1;
    line.get(start..end)
}

/// A list of strings starting at `b[*i] == '['`, each as `item` reads it; moves past it.
fn strings<'a, T>(
    line: &'a str,
    i: &mut usize,
    mut item: impl FnMut(&'a str) -> Option<T>,
) -> Option<Vec<T>> {
    let b = line.as_bytes();
    *i = ws(b, *i + 1);
    let mut out = Vec::new();
    if b.get(*i) == Some(&b']') {
        *i += 1;
        return Some(out);
    }
    loop {
        out.push(item(string(line, i)?)?);
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

/// The index of `at` in `FIELDS`.
const AT: usize = 2;

/// The contract's fields with the quote that closes their key, in the order lines usually
/// give them: a key is matched against the field expected next first, so the common line's
/// keys are recognized by one comparison each instead of being scanned as strings.
const FIELDS: [&[u8]; 12] = [
    b"id\"",
    b"type\"",
    b"at\"",
    b"customer\"",
    b"wallet\"",
    b"card_product\"",
    b"card_role\"",
    b"merchant\"",
    b"amount\"",
    b"channel\"",
    b"coupons\"",
    b"face_values\"",
];
/// `FIELDS` that hold a list of strings; the others hold a string.
const LISTS: std::ops::Range<usize> = 10..12;

/// Sixteen bytes of `b` from `at` as one little-endian number, zeros past its end.
fn word16(b: &[u8], at: usize) -> u128 {
    if let Some(word) = b.get(at..).and_then(|rest| rest.first_chunk::<16>()) {
        return u128::from_le_bytes(*word);
    }
    let mut bytes = [0u8; 16];
    let rest = b.get(at..).unwrap_or_default();
    let n = rest.len().min(16);
    if let (Some(to), Some(from)) = (bytes.get_mut(..n), rest.get(..n)) {
        to.copy_from_slice(from);
    }
    u128::from_le_bytes(bytes)
}

/// Each field's key as `word16` reads it, and the mask of its bytes: a key is compared in
/// one step (every name with its quote fits in sixteen bytes).
const KEY_WORDS: [(u128, u128); 12] = {
    let mut words = [(0, 0); 12];
    let mut f = 0;
    while f < FIELDS.len() {
        let name = FIELDS[f];
        let mut i = 0;
        while i < name.len() {
            words[f].0 |= (name[i] as u128) << (8 * i);
            words[f].1 |= 0xff << (8 * i);
            i += 1;
        }
        f += 1;
    }
    words
};

/// Each field as a compact line gives it, from the quote opening its key to the quote or
/// bracket opening its value (`"amount":"`, `"coupons":[`), as `word16` reads it, the mask
/// of those bytes, and their count: the field a line usually gives next is recognized, with
/// its colon and the start of its value, by one comparison.
const MEMBER_WORDS: [(u128, u128, usize); 12] = {
    let mut words = [(0, 0, 0); 12];
    let mut f = 0;
    while f < FIELDS.len() {
        let name = FIELDS[f];
        let opens = if f >= LISTS.start { b'[' } else { b'"' };
        let (word, mask) = KEY_WORDS[f];
        let n = name.len();
        words[f] = (
            (word << 8 | b'"' as u128)
                | (b':' as u128) << (8 * (n + 1))
                | (opens as u128) << (8 * (n + 2)),
            mask << 8 | 0xff | 0xffff << (8 * (n + 1)),
            n + 3,
        );
        f += 1;
    }
    words
};

/// The field whose key starts at `b[*i] == '"'`, trying `next` first; moves past the key.
fn field(b: &[u8], i: &mut usize, next: usize) -> Option<usize> {
    let key = word16(b, *i + 1);
    let is = |f: usize| {
        KEY_WORDS
            .get(f)
            .is_some_and(|&(word, mask)| key & mask == word)
    };
    let found = if is(next) {
        next
    } else {
        (0..FIELDS.len()).find(|&f| is(f))?
    };
    *i += 1 + FIELDS.get(found)?.len();
    Some(found)
}

/// Past `:` and the whitespace around it, from `b[i]`.
fn colon(b: &[u8], i: usize) -> Option<usize> {
    if b.get(i) == Some(&b':') && b.get(i + 1).is_some_and(|&c| c == b'"' || c == b'[') {
        return Some(i + 1);
    }
    let i = ws(b, i);
    (b.get(i) == Some(&b':')).then(|| ws(b, i + 1))
}

/// `at`'s value starting at `b[*i]`: read in place when it has the common shape (every
/// byte of it a digit or separator, so there is no escape to find), else its text.
fn time<'a>(line: &'a str, i: &mut usize) -> Option<Result<DateTime<FixedOffset>, &'a str>> {
    let b = line.as_bytes();
    if b.get(*i) != Some(&b'"') {
        return None;
    }
    match b.get(*i + 1..).and_then(timestamp_prefix) {
        Some((at, len)) if b.get(*i + 1 + len) == Some(&b'"') => {
            *i += len + 2;
            Some(Ok(at))
        }
        _ => string(line, i).map(Err),
    }
}

/// An unknown field's value starting at `b[*i]`, as serde_json would keep it.
fn extra_value(line: &str, i: &mut usize) -> Option<serde_json::Value> {
    let text = |s: &str| serde_json::Value::String(s.to_string());
    Some(match line.as_bytes().get(*i)? {
        b'"' => text(string(line, i)?),
        b'[' => serde_json::Value::Array(strings(line, i, |s| Some(text(s)))?),
        _ => return None,
    })
}

/// Past a member's value at `b[i]`: whether another member follows, and where (its key,
/// or the object's closing brace); `None` for anything else.
#[inline(always)]
fn after_value(b: &[u8], i: usize) -> Option<(bool, usize)> {
    // A compact line has no white space here: skip looking for it.
    let i = if matches!(b.get(i), Some(b',' | b'}')) {
        i
    } else {
        ws(b, i)
    };
    match b.get(i)? {
        b',' => Some((true, ws(b, i + 1))),
        b'}' => Some((false, i)),
        _ => None,
    }
}

/// Parses a flat event line, or says `None` if the line needs the full parser.
pub fn parse_flat(line: &str) -> Option<Event<'_>> {
    let (event, end) = parse_flat_at(line, 0)?;
    (ws(line.as_bytes(), end) == line.len()).then_some(event)
}

/// The events of a JSON array of flat events, or `None` if any of it needs the full parser
/// (a malformed array included: the full parser then says what is wrong).
pub fn parse_flat_array(text: &str) -> Option<Vec<Event<'_>>> {
    let b = text.as_bytes();
    let mut i = ws(b, 0);
    if b.get(i) != Some(&b'[') {
        return None;
    }
    let mut events = Vec::new();
    loop {
        let (event, end) = parse_flat_at(text, ws(b, i + 1))?;
        events.push(event);
        i = ws(b, end);
        match b.get(i)? {
            b',' => {}
            b']' => break,
            _ => return None,
        }
    }
    (ws(b, i + 1) == b.len()).then_some(events)
}

/// Parses the flat event object at `text[start..]` (after any white space): the event and
/// where its object ends; `None` if it needs the full parser.
fn parse_flat_at(line: &str, start: usize) -> Option<(Event<'_>, usize)> {
    let b = line.as_bytes();
    let mut i = ws(b, start);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = ws(b, i + 1);
    let mut texts: [Option<&str>; LISTS.start] = [None; LISTS.start];
    // `at` read in place, or its text when it is not of the common shape.
    let mut at: Option<Result<DateTime<FixedOffset>, &str>> = None;
    let mut coupons = None;
    let mut face_values = None;
    // The full parser's own readings of amounts and times, so the two cannot disagree.
    let decimal = |field: &str, t: &str| parse_amount::<DeError>(field, t).ok();
    let mut extra = Vec::new();
    let mut next = 0;
    let mut given = 0u16;
    loop {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        // The field expected next, written compactly; else any field, or an unknown key.
        let known = match MEMBER_WORDS.get(next) {
            Some(&(word, mask, len)) if word16(b, i) & mask == word => {
                i += len - 1;
                Some(next)
            }
            _ => match field(b, &mut i, next) {
                Some(f) => {
                    i = colon(b, i)?;
                    Some(f)
                }
                None => None,
            },
        };
        match known {
            Some(f) => {
                // A field given twice is left to the full parser, which reads (and may
                // refuse) each of its values in turn.
                if given & (1 << f) != 0 {
                    return None;
                }
                given |= 1 << f;
                next = f + 1;
                if f == AT {
                    at = Some(time(line, &mut i)?);
                } else if let Some(text) = texts.get_mut(f) {
                    *text = Some(string(line, &mut i)?);
                } else if b.get(i) != Some(&b'[') {
                    return None;
                } else if f == LISTS.start {
                    coupons = Some(strings(line, &mut i, |s| Some(Cow::Borrowed(s)))?);
                } else {
                    face_values = Some(strings(line, &mut i, |t| decimal("face_values", t))?);
                }
            }
            None => {
                let key = string(line, &mut i)?;
                i = colon(b, i)?;
                extra.push((Cow::Borrowed(key), extra_value(line, &mut i)?));
            }
        }
        let (more, at) = after_value(b, i)?;
        i = at;
        if !more {
            break;
        }
    }
    let end = i + 1;
    let [id, kind, _, customer, wallet, card_product, card_role, merchant, amount, channel] = texts;
    let event = Event {
        id: Cow::Borrowed(id?),
        kind: Cow::Borrowed(kind?),
        at: match at? {
            Ok(at) => at,
            Err(text) => parse_at::<DeError>(text).ok()?,
        },
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
        coupons,
        face_values,
        extra,
        plain: true,
    };
    Some((event, end))
}

#[cfg(test)]
mod tests {
    use super::special;

    /// The byte-at-a-time search `special` must agree with.
    fn reference(b: &[u8]) -> Option<usize> {
        b.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20)
    }

    #[test]
    fn the_word_search_finds_the_first_special_byte_wherever_it_is() {
        // Every special and boundary byte, at every offset of strings up to three words
        // long, after bytes that tempt borrows (0x00 below, 0x80 and up, 0x21, 0x5d).
        let fillers = [b'a', 0x21, 0x5d, 0x7f, 0x80, 0xc3, 0xff];
        let probes = [
            b'"', b'\\', 0x00, 0x01, 0x1f, 0x20, 0x21, 0x5b, 0x5c, 0x5d, 0x80,
        ];
        for len in 0..24 {
            for &fill in &fillers {
                let mut b = vec![fill; len];
                assert_eq!(special(&b), reference(&b), "{b:?}");
                for at in 0..len {
                    for &p in &probes {
                        b[at] = p;
                        assert_eq!(special(&b), reference(&b), "{b:?}");
                        // A second special byte further on never hides the first.
                        let last = len - 1;
                        let keep = b[last];
                        b[last] = 0;
                        assert_eq!(special(&b), reference(&b), "{b:?}");
                        b[last] = keep;
                        b[at] = fill;
                    }
                }
            }
        }
    }

    #[test]
    fn events_it_reads_are_plain_and_escaped_ones_are_left_to_the_full_parser() {
        let line = |id: &str| {
            format!("{{\"id\":\"{id}\",\"type\":\"t\",\"at\":\"2031-01-02T03:04:05Z\",\"customer\":\"C\",\"wallet\":\"W\"}}")
        };
        for id in ["E1", "é✓", "a b", "\\u0041", "q\\\"", "tab\\t"] {
            let text = line(id);
            let full: crate::model::Event<'_> = serde_json::from_str(&text).unwrap();
            // The full parser says plain when the text is, after unescaping.
            assert_eq!(full.plain, super::plain(&full.id), "{text}");
            match super::parse_flat(&text) {
                Some(ev) => {
                    assert!(ev.plain, "{text}");
                    let mut quoted = Vec::new();
                    crate::io::output::json_str(&mut quoted, &ev.id);
                    assert_eq!(quoted, format!("\"{}\"", ev.id).into_bytes(), "{text}");
                }
                None => assert!(id.contains('\\'), "{text}"),
            }
        }
    }
}
