//! Reading the body of `POST /v1/events`: one event or an array of them, each read by the
//! engine's event parser (so a request is refused whole, before anything is decided, when
//! one of its events is unreadable) and hashed in a canonical form, to tell a replay of an
//! event from another event reusing its id.

use axum::http::StatusCode;
use serde_json::value::RawValue;

use super::error::ApiError;
use crate::engine::zone::LocalDates;
use crate::engine::{EventHashes, InvalidEvent, Prepared};
use crate::io::event_json::{named_field, parse_event};
use crate::io::flat_json::{parse_flat, parse_flat_array};
use crate::model::Event;
use crate::rules::Ruleset;

/// An event of a body, with what the deciding thread would otherwise work out itself.
#[derive(Debug)]
pub struct BodyEvent<'a> {
    pub event: Event<'a>,
    /// The hash of what it says (`canonical_hash`), to tell a replay from a reused id.
    pub body_hash: [u8; 16],
    /// The hashes admitting it looks its id, customer and wallet up by: worked out here,
    /// on the request's own thread, so that the one deciding thread need not.
    pub keys: EventHashes,
}

type Events<'a> = Vec<BodyEvent<'a>>;

self_cell::self_cell!(
    /// A request's body and the events read from it, to be decided as they are.
    pub struct ParsedBody {
        owner: String,
        #[covariant]
        dependent: Events,
    }

    impl {Debug}
);

impl ParsedBody {
    /// The events, each with the hash of what it says.
    pub fn events(&self) -> &[BodyEvent<'_>] {
        self.borrow_dependent()
    }
}

/// Reads the events of a body; and whether the body was an array.
pub fn split_events(body: String, max: usize) -> Result<(ParsedBody, bool), ApiError> {
    let many = body.trim_start().starts_with('[');
    let parsed = ParsedBody::try_new(body, |text| read_events(text, many, max))?;
    Ok((parsed, many))
}

/// What `ruleset` says of each event of `body` alone (`Prepared`), worked out here on the
/// request's own thread rather than by the one deciding thread; the first event it cannot
/// decide refuses the request whole, before anything is decided.
pub fn prepare(
    ruleset: &Ruleset,
    body: &ParsedBody,
    many: bool,
) -> Result<Vec<Prepared>, ApiError> {
    let mut dates = LocalDates::default();
    body.events()
        .iter()
        .enumerate()
        .map(|(i, e)| {
            Prepared::of(ruleset, &e.event, &mut dates).map_err(|err| invalid_event(many, i, &err))
        })
        .collect()
}

/// Where in the body an event's field is: `name` for one event, `[i].name` in an array.
pub fn field(many: bool, i: usize, name: &str) -> String {
    if !many {
        name.to_string()
    } else {
        format!("[{i}].{name}")
    }
}

fn invalid_event(many: bool, i: usize, err: &InvalidEvent) -> ApiError {
    let e = ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_event",
        err.to_string(),
    );
    match err {
        InvalidEvent::UnknownType(_) => e.at(field(many, i, "type")),
        InvalidEvent::MissingField { field: f, .. } => e.at(field(many, i, f)),
        InvalidEvent::EmptyField(f) | InvalidEvent::AmountDecimals { field: f, .. } => {
            e.at(field(many, i, f))
        }
        InvalidEvent::Unchecked(_) => e,
    }
}

fn read_events(text: &str, many: bool, max: usize) -> Result<Events<'_>, ApiError> {
    // The common body, flat events within the limit, is read in one scan; any other goes
    // through serde_json, which says what is wrong with it.
    let fast = if many {
        parse_flat_array(text).filter(|events| events.len() <= max)
    } else {
        parse_flat(text).map(|event| vec![event])
    };
    let events = match fast {
        Some(events) => events,
        None => read_each(text, many, max)?,
    };
    Ok(with_hashes(events))
}

/// The events, each with what it is hashed to: its canonical form, and the keys admitting
/// it looks up.
fn with_hashes(events: Vec<Event<'_>>) -> Events<'_> {
    let mut bytes = Vec::with_capacity(256);
    events
        .into_iter()
        .map(|event| BodyEvent {
            body_hash: canonical_hash(&event, &mut bytes),
            keys: EventHashes::of(&event),
            event,
        })
        .collect()
}

/// The events of a body, each object found by serde_json and then read.
fn read_each(text: &str, many: bool, max: usize) -> Result<Vec<Event<'_>>, ApiError> {
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, "bad_json", m);
    let raws: Vec<&RawValue> = if many {
        serde_json::from_str(text).map_err(|e| bad(format!("not a JSON array of events: {e}")))?
    } else {
        vec![serde_json::from_str(text).map_err(|e| bad(format!("not a JSON event: {e}")))?]
    };
    if raws.is_empty() {
        return Err(bad("an empty array: send at least one event".into()));
    }
    if raws.len() > max {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_events",
            format!("{} events in one request; at most {max}", raws.len()),
        ));
    }
    raws.into_iter()
        .enumerate()
        .map(|(i, raw)| parse_event(raw.get()).map_err(|m| unreadable(many, i, raw.get(), m)))
        .collect()
}

/// The error for an event the parser refused, naming the field it names.
fn unreadable(many: bool, i: usize, text: &str, message: String) -> ApiError {
    let (message, field) = if text.trim_start().starts_with('{') {
        let field = named_field(&message).map(str::to_string);
        (message, field)
    } else {
        ("an event is a JSON object".to_string(), None)
    };
    let at = match (many, field) {
        (true, Some(f)) => Some(format!("[{i}].{f}")),
        (true, None) => Some(format!("[{i}]")),
        (false, f) => f,
    };
    let e = ApiError::new(StatusCode::BAD_REQUEST, "bad_event", message);
    match at {
        Some(at) => e.at(at),
        None => e,
    }
}

/// A hash of what the event says, whatever its key order, spacing or escapes: its fields
/// as read (amounts as numbers, so `"200"` and `"200.00"` are the same amount), and its
/// extra fields by name. `bytes` is room to lay them out in (its contents are replaced).
fn canonical_hash(ev: &Event<'_>, bytes: &mut Vec<u8>) -> [u8; 16] {
    bytes.clear();
    canonical_bytes(ev, bytes);
    // One call over the bytes gives what hashing them piece by piece gave (xxh3's
    // streaming form is defined so): states keep these hashes, so they must not change.
    xxhash_rust::xxh3::xxh3_128(bytes).to_le_bytes()
}

/// What `canonical_hash` hashes: each field as a tag byte and, if present, its length (8
/// bytes, little-endian) and bytes.
fn canonical_bytes(ev: &Event<'_>, out: &mut Vec<u8>) {
    let text = |out: &mut Vec<u8>, tag: u8, value: Option<&[u8]>| {
        out.push(tag);
        if let Some(v) = value {
            out.extend_from_slice(&(v.len() as u64).to_le_bytes());
            out.extend_from_slice(v);
        }
    };
    let mut at = [0u8; 24];
    for (to, from) in at.chunks_exact_mut(8).zip([
        ev.at.timestamp(),
        i64::from(ev.at.timestamp_subsec_nanos()),
        i64::from(ev.at.offset().local_minus_utc()),
    ]) {
        to.copy_from_slice(&from.to_le_bytes());
    }
    let amount = |d: &rust_decimal::Decimal| d.normalize().serialize();
    text(out, 1, Some(ev.id.as_bytes()));
    text(out, 2, Some(ev.kind.as_bytes()));
    text(out, 3, Some(&at));
    text(out, 4, Some(ev.customer.as_bytes()));
    text(out, 5, Some(ev.wallet.as_bytes()));
    text(out, 6, ev.card_product.as_deref().map(str::as_bytes));
    text(out, 7, ev.card_role.as_deref().map(str::as_bytes));
    text(out, 8, ev.merchant.as_deref().map(str::as_bytes));
    text(
        out,
        9,
        ev.amount.as_ref().map(amount).as_ref().map(|a| &a[..]),
    );
    text(out, 10, ev.channel.as_deref().map(str::as_bytes));
    for c in ev.coupons.iter().flatten() {
        text(out, 11, Some(c.as_bytes()));
    }
    for f in ev.face_values.iter().flatten() {
        text(out, 12, Some(&amount(f)));
    }
    let mut extra: Vec<_> = ev.extra.iter().filter(|(_, v)| !v.is_null()).collect();
    extra.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, value) in extra {
        text(out, 13, Some(name.as_bytes()));
        // The value's JSON text, written in place, its length put before it afterwards.
        out.push(14);
        let len_at = out.len();
        out.extend_from_slice(&[0; 8]);
        let start = out.len();
        if serde_json::to_writer(&mut *out, value).is_err() {
            // Writing JSON into memory cannot fail; were it to, the value counts as empty.
            out.truncate(start);
        }
        let len = (out.len() - start) as u64;
        if let Some(slot) = out.get_mut(len_at..start) {
            slot.copy_from_slice(&len.to_le_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(body: &[u8]) -> Option<[u8; 16]> {
        let text = String::from_utf8_lossy(body).into_owned();
        split_events(text, 10)
            .ok()
            .and_then(|(e, _)| e.events().first().map(|e| e.body_hash))
    }

    const EVENT: &[u8] = br#"{"id":"e1","type":"t","at":"2031-05-06T07:08:09+08:00","customer":"c","wallet":"w","amount":"1.00","note":{"a":1}}"#;

    #[test]
    fn the_same_event_in_any_key_order_or_spacing_hashes_the_same() {
        let same = br#"{ "note" : {"a": 1}, "amount":"1.0", "wallet":"w","customer":"c",
            "at":"2031-05-06T07:08:09+08:00", "type":"t", "id":"\u0065\u0031" }"#;
        assert!(hash(EVENT).is_some());
        assert_eq!(hash(EVENT), hash(same));
    }

    #[test]
    fn hashes_are_those_states_already_keep() {
        // Worked out by the streaming hash of the first version: a state's answers keep
        // these, and a replay after an upgrade must not turn into a conflict.
        let full = br#"{"id":"E9","type":"u","at":"2020-02-15T23:59:58.250+08:00","customer":"C1","wallet":"W1","card_product":"p","card_role":"r","merchant":"M","channel":"ch","face_values":["2","5.0"],"coupons":["a:b:1","c"],"terminal":"T1","z":null,"b":[1,"x"],"n":2.5}"#;
        assert_eq!(
            hash(EVENT),
            Some([45, 81, 128, 118, 91, 209, 163, 7, 59, 58, 28, 243, 196, 26, 134, 174])
        );
        assert_eq!(
            hash(full),
            Some([205, 170, 7, 160, 181, 50, 232, 48, 246, 227, 108, 190, 117, 55, 45, 229])
        );
    }

    #[test]
    fn any_other_value_hashes_otherwise() {
        let text = std::str::from_utf8(EVENT).unwrap_or_default();
        for (from, to) in [
            ("\"1.00\"", "\"1.01\""),
            ("\"c\"", "\"c2\""),
            ("+08:00", "+09:00"),
            ("{\"a\":1}", "{\"a\":2}"),
            ("\"t\"", "\"u\""),
        ] {
            let other = text.replace(from, to);
            assert_ne!(hash(EVENT), hash(other.as_bytes()), "{from} -> {to}");
        }
    }

    /// What reading a body gave, comparably: its events and their hashes, or the error.
    type Read<'a> = Result<Vec<(Event<'a>, [u8; 16])>, (u16, String, Option<String>, String)>;

    fn read(events: Result<Events<'_>, ApiError>) -> Read<'_> {
        events
            .map(|es| es.into_iter().map(|e| (e.event, e.body_hash)).collect())
            .map_err(|e| (e.status.as_u16(), e.body.code, e.body.field, e.body.message))
    }

    #[test]
    fn a_body_read_in_one_scan_reads_as_serde_json_splits_it() {
        let flat = r#"{"id":"e1","type":"t","at":"2031-05-06T07:08:09+08:00","customer":"c","wallet":"w","amount":"1.00","tags":["x"]}"#;
        let number = r#"{"id":"e2","type":"t","at":"2031-05-06T07:08:09+08:00","customer":"c","wallet":"w","n":1}"#;
        let escaped = r#"{"id":"e\u0033","type":"t","at":"2031-05-06T07:08:09+08:00","customer":"c","wallet":"w"}"#;
        let bodies = [
            flat.to_string(),
            format!(" {flat}\n"),
            format!("{flat} {flat}"),
            format!("[{flat}]"),
            format!("[ {flat} ,\n\t{flat}\r\n]\n"),
            format!("[{flat},{number}]"),
            format!("[{escaped},{flat}]"),
            format!("[{flat},]"),
            format!("[{flat}]]"),
            format!("[{flat}] x"),
            format!("[{flat},{flat},{flat}]"),
            format!("[{flat}, 3]"),
            format!("[[{flat}]]"),
            "[]".into(),
            "[".into(),
            "{}".into(),
        ];
        let two = format!("[ {flat} ,\n\t{flat}\r\n]\n");
        assert_eq!(
            parse_flat_array(&two).map(|e| e.len()),
            Some(2),
            "read in one scan"
        );
        assert!(parse_flat_array(&format!("[{flat},{number}]")).is_none());
        for body in &bodies {
            let many = body.trim_start().starts_with('[');
            let slow = read_each(body, many, 2).map(with_hashes);
            assert_eq!(read(read_events(body, many, 2)), read(slow), "{body}");
        }
    }

    type Refusal = Option<(u16, String, Option<String>)>;

    fn refusal(body: &[u8], max: usize) -> Refusal {
        let text = String::from_utf8_lossy(body).into_owned();
        split_events(text, max)
            .err()
            .map(|e| (e.status.as_u16(), e.body.code, e.body.field))
    }

    #[test]
    fn a_body_is_one_event_or_a_bounded_non_empty_array_of_readable_events() {
        let count = |body: &[u8]| {
            split_events(String::from_utf8_lossy(body).into_owned(), 2)
                .ok()
                .map(|(e, many)| (e.events().len(), many))
        };
        let two = [EVENT, b",", EVENT].concat();
        assert_eq!(count(EVENT), Some((1, false)));
        assert_eq!(count(&[b"[", &two[..], b"]"].concat()), Some((2, true)));
        let three = [b"[", &two[..], b",", EVENT, b"]"].concat();
        assert_eq!(
            refusal(&three, 2),
            Some((413, "too_many_events".into(), None))
        );
        assert_eq!(refusal(b"[]", 5), Some((400, "bad_json".into(), None)));
        assert_eq!(refusal(b"{", 5), Some((400, "bad_json".into(), None)));
        let with_number = [b"[", EVENT, b", 3]"].concat();
        assert_eq!(
            refusal(&with_number, 5),
            Some((400, "bad_event".into(), Some("[1]".into())))
        );
    }

    #[test]
    fn an_unreadable_event_names_its_field() {
        let text = std::str::from_utf8(EVENT).unwrap_or_default();
        let no_id = text.replace("\"id\":\"e1\",", "");
        assert_eq!(
            refusal(no_id.as_bytes(), 5),
            Some((400, "bad_event".into(), Some("id".into())))
        );
        let bad_at = text.replace("2031-05-06T07:08:09+08:00", "yesterday");
        let batch = format!("[{text},{bad_at}]");
        assert_eq!(
            refusal(batch.as_bytes(), 5),
            Some((400, "bad_event".into(), Some("[1].at".into())))
        );
    }
}
